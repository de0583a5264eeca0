//! Dashboard queries ([`Reports`]) over one million events in a SQLite file.
//!
//! The data: 90 days of generated traffic on five sites of unequal size (40 % of it on
//! `shop`), about 45,000 people with a visitor id per site they visit, sessions of one to a
//! dozen page views with engagement events, referrers and UTM tags on entry pages, browsers,
//! companies for a fifth of the people, identified contacts (with emails) for 4 % and a
//! cross-site identity for 60 %, 3 % robots and 5 % of sessions without consent for an id.
//! Every query covers the last 30 days, for the `shop` site (`site/…`) and for all sites
//! (`all/…`).
//!
//! The file is `smproxy-bench-analytics-<version>.db` in the temp directory; it is filled on
//! the first run (about a minute, through `insert_batch` in batches of 5,000) and reused
//! while it holds exactly [`EVENTS`] events. `SMPROXY_BENCH_DB` points at another file.
//!
//! With `SMPROXY_BENCH_POSTGRES=postgres://user@host/db` the same queries run on the
//! PostgreSQL store instead (group `analytics_pg`): the database is filled the same way when
//! it is empty, reused while it holds exactly [`EVENTS`] events, and refused otherwise.
//!
//! `cargo bench --bench analytics -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use smproxy::store::reports::{Bucket, Dimension, Filter};
use smproxy::store::{Event, EventKind, PostgresStore, Reports, SqliteStore, Store};

const EVENTS: usize = 1_000_000;
const BATCH: usize = 5_000;
const DAY: i64 = 86_400_000;
/// 2025-01-01T00:00:00Z.
const START: i64 = 1_735_689_600_000;
const DAYS: i64 = 90;
const PEOPLE: usize = 45_000;
const SITES: [(&str, u32); 5] = [
    ("shop", 40),
    ("blog", 25),
    ("docs", 15),
    ("app", 12),
    ("corp", 8),
];
const REFERRERS: [&str; 8] = [
    "https://www.google.com/",
    "https://www.bing.com/search?q=x",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/item?id=1",
    "https://www.linkedin.com/feed/",
    "https://t.co/abc",
    "android-app://com.google.android.gm/",
    "https://partner.example/links",
];
const BROWSERS: [(&str, &str, &str); 6] = [
    ("Chrome", "Windows 10", "pc"),
    ("Chrome", "Android", "smartphone"),
    ("Safari", "iPhone", "smartphone"),
    ("Safari", "Mac OSX", "pc"),
    ("Firefox", "Linux", "pc"),
    ("Edge", "Windows 10", "pc"),
];

fn db_path() -> PathBuf {
    std::env::var_os("SMPROXY_BENCH_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "smproxy-bench-analytics-{}.db",
                SqliteStore::latest_schema_version()
            ))
        })
}

struct Person {
    smids: Option<String>,
    contact: Option<String>,
    company: Option<String>,
    browser: usize,
    /// Has sent its identify event (on its first session).
    identified: bool,
}

fn pick_site(rng: &mut fastrand::Rng) -> &'static str {
    let mut n = rng.u32(0..100);
    for (site, weight) in SITES {
        if n < weight {
            return site;
        }
        n -= weight;
    }
    SITES[0].0
}

/// One session's events (not yet in time order with the others).
fn session(rng: &mut fastrand::Rng, people: &mut [Person], p: usize, out: &mut Vec<Event>) {
    let site = pick_site(rng);
    let bot = rng.u32(0..100) < 3;
    let anonymous = rng.u32(0..100) < 5;
    let visitor = (!anonymous).then(|| format!("v{p:05}-{site}"));
    let person = &mut people[p];
    let (browser, os, device) = if bot {
        ("Googlebot", "UNKNOWN", "crawler")
    } else {
        BROWSERS[person.browser]
    };
    let mut ts = START + rng.i64(0..DAYS * DAY);
    let views = 1 + (rng.f64().powi(2) * 12.0) as usize;
    let referrer = (rng.u32(0..2) == 0).then(|| REFERRERS[rng.usize(..REFERRERS.len())]);
    let campaign = (rng.u32(0..100) < 15).then(|| format!("spring-{}", rng.u32(0..6)));
    let mut previous: Option<String> = referrer.map(str::to_owned);
    for i in 0..views {
        // Popular pages first: a squared uniform number favours low page numbers.
        let page = (rng.f64().powi(2) * 200.0) as usize;
        let path = format!("/p/{page}");
        let url = format!("https://{site}.example{path}");
        let mut e = Event::new(EventKind::Pageview, ts, site, url.clone(), path);
        e.visitor_id = visitor.clone();
        e.smids = person.smids.clone().filter(|_| !anonymous);
        e.referrer = previous.replace(url);
        e.title = Some(format!("Page {page}"));
        if i == 0 {
            e.utm_campaign = campaign.clone();
            e.utm_source = campaign.as_ref().map(|_| "newsletter".to_owned());
            e.utm_medium = campaign.as_ref().map(|_| "email".to_owned());
        }
        e.user_agent = Some(format!("Mozilla/5.0 ({browser})"));
        e.browser = Some(browser.to_owned());
        e.os = Some(os.to_owned());
        e.device = Some(device.to_owned());
        e.is_bot = bot;
        e.company = person.company.clone();
        e.ip_truncated = Some("192.0.2.0".to_owned());
        e.language = Some("pl-PL".to_owned());
        e.screen = Some("1920x1080".to_owned());
        if i == 0 && !anonymous && !bot && !person.identified {
            if let Some(contact) = &person.contact {
                let mut id = e.clone();
                id.kind = EventKind::Identify;
                id.contact_id = Some(contact.clone());
                id.identify_source = Some("form".to_owned());
                id.ts_ms += 1;
                out.push(id);
                person.identified = true;
            }
        }
        if rng.u32(0..100) < 70 {
            let mut g = e.clone();
            g.kind = EventKind::Engagement;
            g.engaged_ms = Some(rng.i64(1_000..120_000));
            g.ts_ms += rng.i64(2..180_000);
            out.push(g);
        }
        if rng.u32(0..100) < 5 {
            let mut c = e.clone();
            c.kind = EventKind::Custom;
            c.name = Some("add_to_cart".to_owned());
            c.props_json = Some(r#"{"sku":"A1"}"#.to_owned());
            c.ts_ms += 1_000;
            out.push(c);
        }
        out.push(e);
        ts += rng.i64(5_000..300_000);
    }
}

/// Either store.
trait Db: Store + Reports {}
impl<T: Store + Reports> Db for T {}

/// The bench group's name and the store: PostgreSQL if `SMPROXY_BENCH_POSTGRES` names a
/// database, else the SQLite file.
fn store() -> (&'static str, Box<dyn Db>) {
    if let Some(url) = std::env::var("SMPROXY_BENCH_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let store = PostgresStore::connect(url.parse().expect("a PostgreSQL URL"))
            .expect("connect to SMPROXY_BENCH_POSTGRES");
        match store.count_events(None).expect("count events") {
            0 => {
                fill(&store, "SMPROXY_BENCH_POSTGRES");
                // Fresh statistics, so the planner sees the filled table.
                postgres::Client::connect(&url, postgres::NoTls)
                    .and_then(|mut c| c.batch_execute("VACUUM ANALYZE"))
                    .expect("VACUUM ANALYZE");
            }
            n if n == EVENTS as u64 => {}
            n => panic!("SMPROXY_BENCH_POSTGRES holds {n} events: use an empty database"),
        }
        return ("analytics_pg", Box::new(store));
    }
    ("analytics", Box::new(sqlite_store()))
}

/// Opens the bench file, filling it first unless it already holds [`EVENTS`] events.
fn sqlite_store() -> SqliteStore {
    let path = db_path();
    if let Ok(store) = SqliteStore::open(&path) {
        if store.count_events(None).ok() == Some(EVENTS as u64) {
            return store;
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let store = SqliteStore::open(&path).expect("open the bench store");
    fill(&store, &path.display().to_string());
    store
}

/// Generates the traffic and stores it.
fn fill(store: &dyn Db, name: &str) {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(20250101);
    let mut people: Vec<Person> = (0..PEOPLE)
        .map(|i| Person {
            smids: (rng.u32(0..100) < 60).then(|| format!("smids-{i:05}")),
            contact: (rng.u32(0..100) < 4).then(|| {
                store
                    .upsert_contact_by_email(&format!("person{i:05}@firma{}.pl", i % 97), START)
                    .expect("contact")
                    .0
            }),
            company: (rng.u32(0..100) < 20).then(|| format!("Company {}", rng.u32(0..400))),
            browser: rng.usize(..BROWSERS.len()),
            identified: false,
        })
        .collect();
    let mut events = Vec::with_capacity(EVENTS + 64);
    while events.len() < EVENTS {
        // Some people come back often: squared uniform again.
        let p = (rng.f64().powi(2) * PEOPLE as f64) as usize;
        session(&mut rng, &mut people, p, &mut events);
    }
    events.truncate(EVENTS);
    events.sort_by_key(|e| e.ts_ms);
    for batch in events.chunks(BATCH) {
        store.insert_batch(batch).expect("insert");
    }
    eprintln!(
        "filled {name} with {EVENTS} events in {:.1?}",
        started.elapsed()
    );
}

fn bench(c: &mut Criterion) {
    let (group, store) = store();
    let to = START + DAYS * DAY;
    let from = to - 30 * DAY;
    let filters = [
        (
            "site",
            Filter {
                site: Some("shop".into()),
                from_ms: from,
                to_ms: to,
            },
        ),
        (
            "all",
            Filter {
                site: None,
                from_ms: from,
                to_ms: to,
            },
        ),
    ];
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for (scope, f) in &filters {
        g.bench_function(format!("{scope}/stats"), |b| {
            b.iter(|| black_box(store.stats(f).unwrap()))
        });
        g.bench_function(format!("{scope}/timeseries_day"), |b| {
            b.iter(|| black_box(store.timeseries(f, Bucket::Day).unwrap()))
        });
        for d in Dimension::ALL {
            g.bench_function(format!("{scope}/breakdown/{}", d.as_str()), |b| {
                b.iter(|| black_box(store.breakdown(f, d, 10).unwrap()))
            });
        }
        g.bench_function(format!("{scope}/companies"), |b| {
            b.iter(|| black_box(store.companies(f, 50).unwrap()))
        });
        // The last five minutes of the generated traffic.
        g.bench_function(format!("{scope}/live_visitors"), |b| {
            b.iter(|| black_box(store.live_visitors(f.site.as_deref(), f.to_ms).unwrap()))
        });
    }
    // The install status page: every site's first and last event and its count.
    g.bench_function("sites_seen", |b| {
        b.iter(|| black_box(store.sites_seen().unwrap()))
    });
    g.bench_function("contacts_search", |b| {
        b.iter(|| black_box(store.contacts(Some("firma1"), 50, 0).unwrap()))
    });
    // The contact with the most page views: the heaviest card.
    let busiest = store
        .contacts(None, usize::MAX, 0)
        .unwrap()
        .into_iter()
        .max_by_key(|c| c.pageviews)
        .expect("contacts were generated");
    g.bench_function("contact_card", |b| {
        b.iter(|| black_box(store.contact(&busiest.id, 50).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
