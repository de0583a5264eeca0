//! One variant of `benches/inject.rs`, run a fixed number of times over the corpus and nothing
//! else, for instruction counts that do not depend on what else the machine is doing:
//!
//! ```sh
//! cargo bench --bench inject_count --no-run    # prints the binary's path
//! perf stat -e instructions:u target/release/deps/inject_count-* injector 16384 10
//! valgrind --tool=callgrind target/release/deps/inject_count-* injector 16384 1
//! ```
//!
//! Arguments: `copy`, `lol_html`, `injector` or `injector_parsing_everything`; the chunk size;
//! the number of passes over the corpus. Prints the bytes of input per pass. The difference of
//! two counts (say 10 passes and 0) is the cost of the passes alone.

use std::sync::Arc;

use lol_html::send::{HtmlRewriter, Settings};
use smproxy::collect::tracker::Tracker;
use smproxy::config::{Duplicates, Position};
use smproxy::inject::charset::{rewriting_encoding, Charset};
use smproxy::inject::injector::{rewrite_all, rewrite_all_parsing_everything};
use smproxy::inject::InjectorOptions;
use smproxy::snippet::Snippet;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let variant = args.first().map(String::as_str).unwrap_or("injector");
    let chunk: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16 * 1024);
    let passes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = std::env::var_os("SMPROXY_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pages")
        });
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    paths.sort();
    let pages: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let snippet = Snippet::new(
        "benchclient",
        &Tracker::new("/_sm/collect").src("/_sm/sm.js"),
    );
    let opts = InjectorOptions {
        snippet: Arc::from(snippet.html()),
        position: Position::HeadEnd,
        duplicates: Duplicates::Remove,
        tracker_path: Arc::from("/_sm/sm.js"),
        client_id: Arc::from("benchclient"),
        charset: Charset::Undeclared,
        max_buffer_bytes: 1024 * 1024,
    };
    let mut out_bytes = 0usize;
    for _ in 0..passes {
        for page in &pages {
            out_bytes += match variant {
                "copy" => {
                    let mut out = Vec::with_capacity(page.len());
                    for c in page.chunks(chunk) {
                        out.extend_from_slice(std::hint::black_box(c));
                    }
                    out.len()
                }
                "lol_html" => {
                    let mut out = Vec::with_capacity(page.len());
                    let settings = Settings::new_send()
                        .with_strict(false)
                        .with_encoding(rewriting_encoding());
                    let mut rw = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
                    for c in page.chunks(chunk) {
                        rw.write(c).unwrap();
                    }
                    rw.end().unwrap();
                    out.len()
                }
                "injector" => rewrite_all(opts.clone(), page, chunk).0.len(),
                "injector_parsing_everything" => {
                    rewrite_all_parsing_everything(opts.clone(), page, chunk)
                        .0
                        .len()
                }
                other => panic!("unknown variant {other}"),
            };
        }
    }
    let input: usize = pages.iter().map(Vec::len).sum();
    println!(
        "{variant} chunk={chunk} passes={passes} input_bytes_per_pass={input} out={out_bytes}"
    );
}
