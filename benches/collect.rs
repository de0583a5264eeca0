//! The per-beacon work of the collect endpoint that does not touch the network or the store:
//! - `parse_body`: parsing and validating a typical page-view beacon, as the tracker sends it;
//! - `issue_client` / `verify_client`: signing and verifying the `smclient` cookie, which a
//!   page view reads and, for a new visitor, writes.
//!
//! Results are operations per second. Run with `cargo bench --bench collect`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smproxy::collect::beacon::parse_body;
use smproxy::config::Secret;
use smproxy::identity::keys::Keys;
use smproxy::identity::token::{issue_client, verify_client};
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

criterion_group!(benches, collect);
criterion_main!(benches);
