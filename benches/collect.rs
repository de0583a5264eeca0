//! The per-beacon work of the collect endpoint that does not touch the network or the store:
//! - `parse_body`: parsing and validating a typical page-view beacon, as the tracker sends it;
//! - `issue_client` / `verify_client`: signing and verifying the `smclient` cookie, which a
//!   page view reads and, for a new visitor, writes.
//!
//! - `store`: the event writer's side of a beacon: one batch of 500 first-visit page views
//!   (the beacon workload of `benches/load.sh`) written by `SqliteStore::insert_batch` into a
//!   real file that already holds 100,000 such events, with the ids made as the proxy makes
//!   them (`smuuid` a random UUID v4, `smids` time-ordered), each event marked as its new
//!   visitor's first, as the collector marks it, and, for comparison, unmarked (the store
//!   then looks up a latest event and a contact link that cannot exist). For instruction
//!   counts and WAL frames per event, see `benches/store_count.rs`.
//!
//! Results are operations (for `store`: events) per second. Run with
//! `cargo bench --bench collect`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smproxy::collect::beacon::parse_body;
use smproxy::config::Secret;
use smproxy::identity::keys::Keys;
use smproxy::identity::time_ordered_uuid;
use smproxy::identity::token::{issue_client, verify_client};
use smproxy::store::{Event, EventKind, SqliteStore, Store};
use uuid::Uuid;

/// A page view as the tracker builds it (url, referrer, title, screen, hosts, lang).
const PAGEVIEW: &str = r#"{"type":"pageview","url":"https://shop.example.com/products/garden/hoses?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale","referrer":"https://www.google.com/","title":"Garden hoses and fittings \u2013 Shop Example","screen":"1920x1080","hosts":["blog.example.com","help.example.com"],"lang":"pl-PL"}"#;

fn keys() -> Keys {
    Keys::new(&[
        Secret::new("a-signing-secret-of-the-benchmark-0123456789".into()),
        Secret::new("an-older-secret-still-accepted-0123456789ab".into()),
    ])
    .expect("valid keys")
}

fn collect(c: &mut Criterion) {
    let mut group = c.benchmark_group("collect");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let content_type = Some("text/plain;charset=UTF-8");
    assert!(parse_body(content_type, PAGEVIEW.as_bytes()).is_ok());
    group.bench_function("parse_body_pageview", |b| {
        b.iter(|| parse_body(black_box(content_type), black_box(PAGEVIEW.as_bytes())))
    });

    let keys = keys();
    let contact = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let now = 1_790_000_000;
    group.bench_function("issue_client", |b| {
        b.iter(|| issue_client(&keys, black_box(contact), black_box(now)))
    });
    let token = issue_client(&keys, contact, now);
    assert!(verify_client(&keys, &token).is_ok());
    group.bench_function("verify_client", |b| {
        b.iter(|| verify_client(&keys, black_box(&token)))
    });
    group.finish();
}

/// Events per written batch (the writer's `batch_size` under load).
const BATCH: usize = 500;

/// Events in the file before measuring: enough that the id indexes are far larger than the
/// pages one batch touches.
const PREFILL: usize = 100_000;

/// A first-visit page view as the collector builds it for the load benchmark's beacon.
fn first_visit(ts_ms: i64, marked: bool) -> Event {
    let mut e = Event::new(
        EventKind::Pageview,
        ts_ms,
        "bench",
        "http://127.0.0.1/p/page.html",
        "/p/page.html",
    );
    e.visitor_id = Some(smproxy::identity::new_visitor_id());
    e.smids = Some(time_ordered_uuid().hyphenated().to_string());
    e.new_visitor = marked;
    e.title = Some("A page".into());
    e.screen = Some("1920x1080".into());
    e.language = Some("en-GB".into());
    e.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36".into());
    e.browser = Some("Chrome".into());
    e.os = Some("Linux".into());
    e.device = Some("pc".into());
    e.ip_truncated = Some("127.0.0.0".into());
    e
}

fn batch(first_ts: &mut i64, marked: bool) -> Vec<Event> {
    (0..BATCH)
        .map(|_| {
            *first_ts += 1;
            first_visit(*first_ts, marked)
        })
        .collect()
}

fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, marked) in [("marked", true), ("unmarked", false)] {
        let dir =
            std::env::temp_dir().join(format!("smproxy-bench-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(dir.join("events.db")).expect("a store in the temp dir");
        let mut ts = 1_790_000_000_000_i64;
        for _ in 0..PREFILL / BATCH {
            store
                .insert_batch(&batch(&mut ts, marked))
                .expect("prefill");
        }
        group.bench_function(format!("insert_batch_500_first_visits_{name}"), |b| {
            b.iter_batched(
                || batch(&mut ts, marked),
                |events| store.insert_batch(&events).expect("insert"),
                criterion::BatchSize::PerIteration,
            )
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, collect, store);
criterion_main!(benches);
