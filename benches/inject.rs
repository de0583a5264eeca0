//! Injection throughput on the real pages of the corpus, fed in 1 KiB and 16 KiB chunks as a
//! proxy receives them. Three rows per chunk size, so the cost of each layer reads directly:
//! - `copy`: the chunks copied to an output buffer (the floor of any body filter);
//! - `lol_html`: lol_html's streaming parser with no handlers (the cost of parsing at all);
//! - `injector`: smproxy's [`Injector`] (parsing up to `</head>`, script scanning, injection,
//!   then the fast path for the rest of the page);
//! - `injector_parsing_everything`: the same injector with lol_html parsing every byte (what
//!   the fast path saves).
//!
//! Results are bytes of input per second over the whole corpus. Run with `cargo bench`;
//! `SMPROXY_CORPUS` points at another directory of `.html` files.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use lol_html::send::{HtmlRewriter, Settings};
use smproxy::collect::tracker::Tracker;
use smproxy::config::{Duplicates, Position};
use smproxy::inject::charset::{rewriting_encoding, Charset};
use smproxy::inject::injector::{rewrite_all, rewrite_all_parsing_everything};
use smproxy::inject::InjectorOptions;
use smproxy::snippet::Snippet;

const CHUNKS: [usize; 2] = [1024, 16 * 1024];

fn corpus_dir() -> PathBuf {
    std::env::var_os("SMPROXY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pages"))
}

fn corpus_pages() -> Vec<Vec<u8>> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "corpus not found at {} ({e}): set SMPROXY_CORPUS (`.ci/run` fetches it)",
            dir.display()
        )
    });
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    paths.sort();
    let pages: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(!pages.is_empty(), "no .html files in {}", dir.display());
    pages
}

fn options() -> InjectorOptions {
    let snippet = Snippet::new(
        "benchclient",
        &Tracker::new("/_sm/collect").src("/_sm/sm.js"),
    );
    InjectorOptions {
        snippet: Arc::from(snippet.html()),
        position: Position::HeadEnd,
        duplicates: Duplicates::Remove,
        tracker_path: Arc::from("/_sm/sm.js"),
        client_id: Arc::from("benchclient"),
        charset: Charset::Undeclared,
        max_buffer_bytes: 1024 * 1024,
    }
}

fn copy(page: &[u8], chunk: usize) -> usize {
    let mut out = Vec::with_capacity(page.len());
    for c in page.chunks(chunk) {
        out.extend_from_slice(black_box(c));
    }
    black_box(&out).len()
}

fn lol_html_only(page: &[u8], chunk: usize) -> usize {
    let mut out = Vec::with_capacity(page.len());
    {
        // The same parser settings as the injector, without its handlers.
        let settings = Settings::new_send()
            .with_strict(false)
            .with_encoding(rewriting_encoding());
        let mut rw = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
        for c in page.chunks(chunk) {
            rw.write(c).expect("lol_html write");
        }
        rw.end().expect("lol_html end");
    }
    black_box(&out).len()
}

fn inject(c: &mut Criterion) {
    let pages = corpus_pages();
    let total: u64 = pages.iter().map(|p| p.len() as u64).sum();
    let opts = options();

    for chunk in CHUNKS {
        let mut group = c.benchmark_group(format!("corpus_{}k_chunks", chunk / 1024));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes(total));

        group.bench_function(BenchmarkId::from_parameter("copy"), |b| {
            b.iter(|| pages.iter().map(|p| copy(p, chunk)).sum::<usize>())
        });
        group.bench_function(BenchmarkId::from_parameter("lol_html"), |b| {
            b.iter(|| pages.iter().map(|p| lol_html_only(p, chunk)).sum::<usize>())
        });
        group.bench_function(BenchmarkId::from_parameter("injector"), |b| {
            b.iter(|| {
                pages
                    .iter()
                    .map(|p| rewrite_all(opts.clone(), p, chunk).0.len())
                    .sum::<usize>()
            })
        });
        group.bench_function(
            BenchmarkId::from_parameter("injector_parsing_everything"),
            |b| {
                b.iter(|| {
                    pages
                        .iter()
                        .map(|p| {
                            rewrite_all_parsing_everything(opts.clone(), p, chunk)
                                .0
                                .len()
                        })
                        .sum::<usize>()
                })
            },
        );
        group.finish();
    }
}

criterion_group!(benches, inject);
criterion_main!(benches);
