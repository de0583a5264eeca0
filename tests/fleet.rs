//! Fleet mode: two smproxy instances with one cookie secret on one PostgreSQL database behave
//! as one. A visitor identified through a form on instance A and seen later on instance B has
//! one profile with both visits, and every instance's dashboard shows the same numbers. A
//! database restart under beacon load crashes nothing, writing resumes by itself, and every
//! beacon is either stored or counted as lost.
//!
//! Needs `SMPROXY_TEST_POSTGRES` (see `backend`) and PostgreSQL's `initdb`/`pg_ctl` for the
//! restart test's own server.

mod backend;
mod common;

use backend::{Backend, PrivateServer, TestDb};
use common::{html_response, request_body, Origin, Proxy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smproxy::store::{PostgresStore, Store};

use serde_json::Value;

const SITE: &str =
    "sites:\n  - name: shop\n    hosts: [\"test.example\"]\n    upstream: \"ORIGIN\"\n";

fn beacon(p: &Proxy, json: &str, cookie: Option<&str>) -> common::Resp {
    let mut headers = vec![
        ("Origin", "http://test.example"),
        ("Content-Type", "text/plain;charset=UTF-8"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        ),
    ];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    let r = request_body(&p.addr, "POST", "/_sm/collect", &headers, json.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    r
}

/// The cookies a response set, as a `Cookie` header, merged over `jar`.
fn jar_after(jar: &str, r: &common::Resp) -> String {
    let mut cookies: Vec<(String, String)> = jar
        .split("; ")
        .filter(|c| !c.is_empty())
        .filter_map(|c| c.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for set in r.header_all("set-cookie") {
        let pair = set.split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        cookies.retain(|(name, _)| name != k);
        cookies.push((k.to_owned(), v.to_owned()));
    }
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn json(p: &Proxy, path: &str) -> Value {
    let r = p.admin_get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn pageview(path: &str) -> String {
    format!(r#"{{"type":"pageview","url":"http://test.example{path}","title":"T"}}"#)
}

#[test]
fn two_instances_on_one_database_share_visitors_contacts_and_numbers() {
    let db = TestDb::new(Backend::Postgres, "fleet");
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let sites = SITE.replace("ORIGIN", &origin.addr.to_string());
    // Same cookie secret (the test default) and the same database on both.
    let a = Proxy::start_with_sites(&sites, &db.store_yaml());
    let b = Proxy::start_with_sites(&sites, &db.store_yaml());

    // On A: a page view, then a form with an email, which identifies the visitor.
    let first = beacon(&a, &pageview("/shoes"), None);
    let jar = jar_after("", &first);
    assert!(jar.contains("smuuid="), "{jar}");
    let form = beacon(
        &a,
        r#"{"type":"form","url":"http://test.example/contact","email":"Jan@Firma.pl","fields":["email"]}"#,
        Some(&jar),
    );
    let jar = jar_after(&jar, &form);
    assert!(jar.contains("smclient="), "{jar}");
    a.flush();

    // Later on B, with the cookies A set: B verifies them with the shared secret.
    let later = beacon(&b, &pageview("/checkout"), Some(&jar));
    assert!(
        later
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with(&format!("smuuid={}", cookie(&jar, "smuuid")))),
        "B kept the visitor id"
    );
    // Someone else, on B only.
    beacon(&b, &pageview("/"), None);
    b.flush();

    // One contact, the same from both instances, with both visits.
    let contacts_a = json(&a, "/api/contacts");
    assert_eq!(contacts_a, json(&b, "/api/contacts"));
    let list = contacts_a["contacts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{contacts_a}");
    assert_eq!(list[0]["email"], "jan@firma.pl");
    assert_eq!(list[0]["pageviews"], 2, "{contacts_a}");
    let id = list[0]["id"].as_str().unwrap();
    let card = json(&b, &format!("/api/contacts/{id}"));
    assert_eq!(card, json(&a, &format!("/api/contacts/{id}")));
    let paths: Vec<&str> = card["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "pageview")
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/checkout", "/shoes"], "{card}");
    assert_eq!(
        card["sessions"], 1,
        "one visit across both instances: {card}"
    );

    // Every instance shows the same numbers.
    for path in [
        "/api/stats?site=shop",
        "/api/breakdown?dimension=pages",
        "/api/timeseries",
        "/api/status",
    ] {
        let (ja, jb) = (json(&a, path), json(&b, path));
        assert_eq!(ja, jb, "{path}");
    }
    let stats = json(&a, "/api/stats?site=shop");
    assert_eq!(stats["pageviews"], 3, "{stats}");
    assert_eq!(stats["visitors"], 2, "{stats}");
    assert_eq!(stats["sessions"], 2, "{stats}");
    assert_eq!(stats["contacts"], 1, "{stats}");
}

fn cookie<'a>(jar: &'a str, name: &str) -> &'a str {
    jar.split("; ")
        .find_map(|c| c.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {jar}"))
}

/// Two instances under beacon load while their database stops and starts again: neither
/// process goes down, pages are still served, the writers resume by themselves, and what is
/// missing from the database is exactly what `/metrics` counts as dropped (queue full);
/// nothing is abandoned, because the writer's retries outlast a restart.
#[test]
fn a_database_restart_under_load_loses_only_what_is_counted() {
    let server = PrivateServer::start();
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let sites = SITE.replace("ORIGIN", &origin.addr.to_string());
    // No rate limit (all beacons come from one address), and a small queue so the outage
    // fills it.
    let extra = format!(
        "store:\n  postgres: \"{}\"\ncollect:\n  rate_per_minute: 0\n  queue_capacity: 2000\n",
        server.url()
    );
    let mut a = Proxy::start_with_sites(&sites, &extra);
    let mut b = Proxy::start_with_sites(&sites, &extra);

    let acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (mut written_before, mut written_at_restart) = (0, 0);
    std::thread::scope(|s| {
        for (n, p) in [&a, &b, &a, &b].into_iter().enumerate() {
            let (acked, stop) = (&acked, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = pageview(&format!("/load/{n}/{i}"));
                    // A new visitor every time: no cookie, so the load spreads over visitors.
                    beacon(p, &body, None);
                    acked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        // Load first, then the outage under load, then load again while the writers recover.
        wait_until(|| acked.load(Ordering::Relaxed) >= 1_000);
        written_before = metric(&a, "events_written_total") + metric(&b, "events_written_total");
        server.stop();
        let down = acked.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
        wait_until(|| acked.load(Ordering::Relaxed) >= down + 1_000);
        // The outage reached both writers.
        wait_until(|| metric(&a, "store_errors_total") > 0 && metric(&b, "store_errors_total") > 0);
        server.start_again();
        written_at_restart =
            metric(&a, "events_written_total") + metric(&b, "events_written_total");
        let up = acked.load(Ordering::Relaxed);
        wait_until(|| acked.load(Ordering::Relaxed) >= up + 1_000);
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.load(Ordering::Relaxed);
    assert!(written_before > 0, "writing had started before the restart");

    // Both processes are alive and well: pages are served, and the writers drain the queue
    // and report healthy again by themselves.
    for p in [&a, &b] {
        let page = p.get("/after-the-restart");
        assert_eq!(page.status, 200);
        assert!(page.text().contains("_smid"), "{}", page.text());
        wait_until(|| {
            metric(p, "events_enqueued_total")
                == metric(p, "events_written_total") + metric(p, "events_abandoned_total")
        });
        let ready = p.admin_get("/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
    }
    let written = metric(&a, "events_written_total") + metric(&b, "events_written_total");
    assert!(
        written > written_at_restart,
        "writing resumed after the restart"
    );

    // Exact accounting from /metrics: every acknowledged beacon is a row or a counted drop.
    let dropped = metric(&a, "events_dropped_total") + metric(&b, "events_dropped_total");
    let abandoned = metric(&a, "events_abandoned_total") + metric(&b, "events_abandoned_total");
    let stored = count_events(&server);
    eprintln!(
        "restart under load: {acked} acknowledged, {stored} stored, {dropped} dropped, \
         {abandoned} abandoned, {written_before} written before the outage"
    );
    assert_eq!(abandoned, 0, "the retries outlast a restart");
    assert_eq!(stored, written);
    assert_eq!(acked - stored, dropped, "every missing beacon is counted");

    // A clean shutdown agrees, and closes every connection (on the closer thread: dropping
    // the last pool handle on a runtime thread used to abort the process).
    let (sa, sb) = (a.shutdown(), b.shutdown());
    assert_eq!(sa.enqueued + sa.dropped + sb.enqueued + sb.dropped, acked);
    assert_eq!(sa.written + sb.written, stored);
    wait_until(|| smproxy_connections(&server.url()) == 0);
}

/// Connections are closed on a thread of their own: dropping the last handle of a connected
/// store inside async code, as a Pingora service does at shutdown, neither panics (the sync
/// client blocks on its own runtime to close) nor leaves connections open.
#[test]
fn a_store_dropped_inside_async_code_closes_its_connections() {
    let db = TestDb::new(Backend::Postgres, "drop");
    let store = Arc::new(PostgresStore::connect(db.pg_config()).unwrap());
    // Queries from a few threads at once leave connections idle in the pool.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| store.count_events(None).unwrap());
        }
    });
    assert!(smproxy_connections(&db.pg_url()) >= 1);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dropped = runtime.block_on(async { tokio::spawn(async move { drop(store) }).await });
    assert!(dropped.is_ok(), "dropping the store panicked: {dropped:?}");
    wait_until(|| smproxy_connections(&db.pg_url()) == 0);
}

/// Connections of smproxy stores (their `application_name`) to the database of `url`.
fn smproxy_connections(url: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'smproxy' AND datname = current_database()",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A counter of `/metrics`, without its `smproxy_` prefix.
fn metric(p: &Proxy, name: &str) -> u64 {
    let line = format!("smproxy_{name} ");
    p.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no smproxy_{name} in /metrics"))
}

/// Waits for `done`; the limit only stops a hung test.
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rows in the private server's `events` table.
fn count_events(server: &PrivateServer) -> u64 {
    let mut c = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    n as u64
}
