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
