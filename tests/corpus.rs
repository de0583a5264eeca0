//! The real pages of the corpus: through the running proxy, and through the injector at random
//! chunk sizes. Each must come out as the input with exactly one snippet before its anchor.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use smproxy::config::{Duplicates, Position};
use smproxy::inject::charset::Charset;
use smproxy::inject::injector::rewrite_all;
use smproxy::inject::InjectorOptions;

#[test]
fn every_corpus_page_through_the_proxy_gets_exactly_one_snippet() {
    let pages = Arc::new(corpus_pages());
    let by_path: Arc<HashMap<String, Vec<u8>>> = Arc::new(
        pages
            .iter()
            .map(|(n, b)| (format!("/{n}"), b.clone()))
            .collect(),
    );
    let origin = Origin::respond(move |req| match by_path.get(&req.path) {
        Some(body) => html_response(body),
        None => http_response("404 Not Found", &[], b""),
    });
    let proxy = Proxy::start(&origin.addr, "");
    let snippet = snippet();
    let mut anchors: HashMap<&str, usize> = HashMap::new();
    for (name, input) in pages.iter() {
        let r = proxy.get(&format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert!(
            r.header("content-length").is_none(),
            "{name}: stale Content-Length"
        );
        *anchors
            .entry(assert_injected_once(input, &r.body, &snippet, name))
            .or_default() += 1;
    }
    let m = proxy.metrics_text();
    let injected: u64 = m
        .lines()
        .filter(|l| l.starts_with("smproxy_pages_injected_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        injected as usize,
        pages.len(),
        "every page counted as injected"
    );
    eprintln!("anchors over {} corpus pages: {anchors:?}", pages.len());
}

fn opts(snippet: &str) -> InjectorOptions {
    InjectorOptions {
        snippet: Arc::from(snippet),
        position: Position::HeadEnd,
        duplicates: Duplicates::Remove,
        tracker_path: Arc::from("/_sm/sm.js"),
        client_id: Arc::from("testclient"),
        charset: Charset::Undeclared,
        max_buffer_bytes: 1 << 20,
    }
}

#[test]
fn every_corpus_page_at_random_chunk_sizes_gives_the_same_output() {
    let snippet = snippet();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for (name, input) in corpus_pages() {
        let (whole, outcome) = rewrite_all(opts(&snippet), &input, input.len());
        assert_injected_once(&input, &whole, &snippet, &name);
        assert!(outcome.failure.is_none(), "{name}: {:?}", outcome.failure);
        // Random cut points, different for every page and round.
        for round in 0..3 {
            let mut inj = smproxy::inject::Injector::new(opts(&snippet));
            let mut out = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let max = if round == 0 { 16 } else { 4096 };
                let n = rng.usize(1..=max).min(rest.len());
                out.extend_from_slice(&inj.write(bytes::Bytes::copy_from_slice(&rest[..n])));
                rest = &rest[n..];
            }
            out.extend_from_slice(&inj.finish());
            assert!(
                out == whole,
                "{name}: round {round} differs from the whole-input rewrite"
            );
        }
    }
}

/// Codes and look-alikes put at random places of the corpus pages (inside tags, scripts,
/// comments, attribute values as it falls): the injector with its fast path after `</head>`
/// must give the page and the outcome that parsing every byte gives, in any chunking.
#[test]
fn codes_at_random_places_give_what_parsing_everything_gives() {
    use smproxy::inject::injector::rewrite_all_parsing_everything;
    const INSERTS: [&str; 9] = [
        "<script>var _smid = 'other'; w['SalesmanagoObject'] = r;</script>",
        "<script>var _smid = \"testclient\";</script>",
        "<script src=\"https://cdn.example/static/sm.js\"></script>",
        "<SCRIPT SRC='/_sm/sm.js?v=1' async></SCRIPT>",
        "<script type=\"text/javascript\">if (window._smid) {}</script>",
        "<!-- <script>var _smid='c';</script> -->",
        "<svg><script>var _smid = 's';</script></svg>",
        "_smid",
        "<script>",
    ];
    let snippet = snippet();
    let seeds: u64 = std::env::var("SMPROXY_STRESS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pages = corpus_pages();
    let mut restarted_pages = 0;
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(0xfa57 + seed);
        for (name, page) in &pages {
            let mut input = page.clone();
            let inserts = rng.usize(1..=3);
            for _ in 0..inserts {
                let at = rng.usize(..=input.len());
                let what = INSERTS[rng.usize(..INSERTS.len())];
                input.splice(at..at, what.bytes());
            }
            for dup in [Duplicates::Remove, Duplicates::Keep] {
                let mut o = opts(&snippet);
                o.duplicates = dup;
                let (expected, outcome) =
                    rewrite_all_parsing_everything(o.clone(), &input, input.len());
                for round in 0..3 {
                    let size = match round {
                        0 => input.len(),
                        1 => rng.usize(1..=4096),
                        _ => rng.usize(1..=64),
                    };
                    let (out, oc) = rewrite_all(o.clone(), &input, size);
                    assert!(
                        out == expected,
                        "{name}: {dup:?}, chunks of {size}: not what parsing everything gives"
                    );
                    assert_eq!(oc, outcome, "{name}: {dup:?}, chunks of {size}");
                }
                if outcome.duplicates_removed + outcome.duplicates_kept > 0 {
                    restarted_pages += 1;
                }
            }
        }
    }
    assert!(
        restarted_pages > 100,
        "codes found on {restarted_pages} pages"
    );
}
