//! The event store and its background writer against a real SQLite file and a real PostgreSQL
//! database (each test body runs on both, see `backend`): nothing lost on a clean shutdown, migrations, identity linking, contacts known only by id, sessions,
//! retention, and the queue's drop and retry behaviour made deterministic with store wrappers
//! (no sleeps as synchronisation).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smproxy::store::{
    ContactId, Event, EventKind, EventWriter, PostgresStore, SqliteStore, Store, StoreError,
    WriterConfig, SESSION_IDLE_MS,
};

#[macro_use]
mod backend;
use backend::{AnyStore, Backend, TestDb};

fn pageview(site: &str, visitor: Option<&str>, ts_ms: i64) -> Event {
    Event {
        visitor_id: visitor.map(str::to_owned),
        title: Some("Home".into()),
        user_agent: Some("Mozilla/5.0".into()),
        ..Event::new(
            EventKind::Pageview,
            ts_ms,
            site,
            format!("https://{site}.example/?utm_source=x"),
            "/",
        )
    }
}

fn fast_retries(capacity: usize, max_retries: u32) -> WriterConfig {
    WriterConfig {
        capacity,
        batch_size: 64,
        max_retries,
        retry_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..WriterConfig::default()
    }
}

/// Reads a column straight from the database, independent of the Store API.
fn contact_ids(db: &TestDb, visitor: &str) -> Vec<Option<String>> {
    db.rows(
        "SELECT contact_id FROM events WHERE visitor_id = $1 ORDER BY ts_ms",
        &[visitor],
    )
    .iter()
    .map(|r| r[0].text())
    .collect()
}

/// Delegates everything to a real store; only `insert_batch` is interposed.
macro_rules! delegate_store {
    ($ty:ty) => {
        impl Store for $ty {
            fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError> {
                self.before_insert()?;
                self.inner.insert_batch(events)
            }
            fn upsert_contact_by_email(
                &self,
                email: &str,
                now_ms: i64,
            ) -> Result<ContactId, StoreError> {
                self.inner.upsert_contact_by_email(email, now_ms)
            }
            fn link_visitor(
                &self,
                visitor_id: &str,
                contact_id: &ContactId,
                now_ms: i64,
            ) -> Result<u64, StoreError> {
                self.inner.link_visitor(visitor_id, contact_id, now_ms)
            }
            fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError> {
                self.inner.count_events(site)
            }
            fn ping(&self) -> Result<(), StoreError> {
                self.inner.ping()
            }
            fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
                self.inner.delete_older_than(cutoff_ms)
            }
        }
    };
}

/// Each insert announces itself on `entered`, then waits until the test drops the release
/// sender: the writer is provably busy while the test fills the queue.
struct GatedStore {
    inner: AnyStore,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl GatedStore {
    fn before_insert(&self) -> Result<(), StoreError> {
        let _ = self.entered.lock().unwrap().send(());
        // Err once the test drops the sender: from then on every insert goes straight through.
        let _ = self.release.lock().unwrap().recv();
        Ok(())
    }
}
delegate_store!(GatedStore);

/// Fails the first `failures` inserts, then behaves.
struct FlakyStore {
    inner: AnyStore,
    failures: AtomicU32,
}

impl FlakyStore {
    fn before_insert(&self) -> Result<(), StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}
delegate_store!(FlakyStore);

fn events_from_several_threads_are_all_written_by_shutdown(backend: Backend) {
    const THREADS: usize = 5;
    const PER_THREAD: usize = 1_000;
    let db = TestDb::new(backend, "threads");
    let store = Arc::new(db.open());
    let writer = EventWriter::start(store.clone(), WriterConfig::default()).unwrap();

    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let queue = writer.queue();
            scope.spawn(move || {
                let site = if t % 2 == 0 { "shop" } else { "blog" };
                for i in 0..PER_THREAD {
                    let ts = (t * PER_THREAD + i) as i64;
                    assert!(queue.try_enqueue(pageview(site, Some("v"), ts)));
                }
            });
        }
    });
    let queue = writer.queue();
    let stats = writer.shutdown();

    let n = (THREADS * PER_THREAD) as u64;
    assert_eq!(stats.enqueued, n);
    assert_eq!(stats.written, n);
    assert_eq!(
        (stats.dropped, stats.abandoned, stats.write_errors),
        (0, 0, 0)
    );
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(store.count_events(None).unwrap(), n);
    assert_eq!(
        store.count_events(Some("shop")).unwrap(),
        3 * PER_THREAD as u64
    );
    assert_eq!(
        store.count_events(Some("blog")).unwrap(),
        2 * PER_THREAD as u64
    );
    // After shutdown the queue refuses, and says so.
    assert!(queue.is_closed());
    assert!(!queue.try_enqueue(pageview("shop", None, 0)));
    assert_eq!(queue.dropped(), 1);
}

fn dropping_the_writer_also_flushes(backend: Backend) {
    let db = TestDb::new(backend, "drop");
    let store = Arc::new(db.open());
    let writer = EventWriter::start(store.clone(), WriterConfig::default()).unwrap();
    let queue = writer.queue();
    for ts in 0..100 {
        assert!(queue.try_enqueue(pageview("shop", None, ts)));
    }
    drop(writer);
    assert_eq!(store.count_events(None).unwrap(), 100);
}

fn reopening_applies_migrations_once_and_keeps_data(backend: Backend) {
    let db = TestDb::new(backend, "migrate");
    let latest = latest_schema_version(backend);
    {
        let store = db.open();
        assert_eq!(schema_version(&store), latest);
        store.insert_batch(&[pageview("shop", None, 1)]).unwrap();
    }
    let applied_at = |db: &TestDb| -> Vec<(i64, i64)> {
        db.rows(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .iter()
        .map(|r| (r[0].int(), r[1].int()))
        .collect()
    };
    let before = applied_at(&db);
    // SQLite went through every version but 4, which is PostgreSQL's alone (batch keys);
    // PostgreSQL starts at version 3 (see its module).
    let first = if backend == Backend::Sqlite { 1 } else { 3 };
    let versions: Vec<i64> = before.iter().map(|(v, _)| *v).collect();
    let expected: Vec<i64> = (first..=i64::from(latest))
        .filter(|&v| backend == Backend::Postgres || v != 4)
        .collect();
    assert_eq!(versions, expected);

    for _ in 0..2 {
        let store = db.open();
        assert_eq!(schema_version(&store), latest);
        assert_eq!(store.count_events(None).unwrap(), 1);
        store.ping().unwrap();
    }
    assert_eq!(applied_at(&db), before, "no migration ran twice");

    if backend == Backend::Sqlite {
        let mode: String = rusqlite::Connection::open(db.sqlite_path())
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

fn latest_schema_version(backend: Backend) -> u32 {
    match backend {
        Backend::Sqlite => SqliteStore::latest_schema_version(),
        Backend::Postgres => PostgresStore::latest_schema_version(),
    }
}

fn schema_version(store: &AnyStore) -> u32 {
    match store {
        AnyStore::Sqlite(s) => s.schema_version().unwrap(),
        AnyStore::Postgres(s) => s.schema_version().unwrap(),
    }
}

/// Opens the store without unwrapping, for tests of refusals.
fn try_open(db: &TestDb) -> Result<AnyStore, StoreError> {
    match db.backend {
        Backend::Sqlite => SqliteStore::open(db.sqlite_path()).map(AnyStore::Sqlite),
        Backend::Postgres => PostgresStore::connect(db.pg_config()).map(AnyStore::Postgres),
    }
}

fn a_file_from_a_newer_version_is_refused(backend: Backend) {
    let db = TestDb::new(backend, "newer");
    drop(db.open());
    db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)");
    assert!(matches!(
        try_open(&db),
        Err(StoreError::SchemaTooNew { found: 9999, .. })
    ));
}

#[test]
fn open_creates_missing_directories() {
    let dir = TestDb::new(Backend::Sqlite, "mkdir");
    let db = dir.dir().join("a/b/events.db");
    SqliteStore::open(&db).unwrap().ping().unwrap();
    assert!(db.exists());
}

fn same_contact_for_differently_written_email(backend: Backend) {
    let db = TestDb::new(backend, "contact");
    let store = db.open();
    let a = store.upsert_contact_by_email("A@Example.com ", 1).unwrap();
    let b = store.upsert_contact_by_email("a@example.com", 2).unwrap();
    let c = store
        .upsert_contact_by_email("other@example.com", 3)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(matches!(
        store.upsert_contact_by_email("nope", 4),
        Err(StoreError::InvalidEmail)
    ));

    assert_eq!(
        contact_row(&db, a.as_str()),
        Some((Some("a@example.com".to_owned()), 1, 2))
    );
}

fn link_visitor_attaches_earlier_anonymous_events(backend: Backend) {
    let db = TestDb::new(backend, "link");
    let store = db.open();
    store
        .insert_batch(&[
            pageview("shop", Some("v1"), 10),
            pageview("shop", Some("v1"), 20),
            pageview("shop", Some("v2"), 30),
        ])
        .unwrap();
    assert_eq!(contact_ids(&db, "v1"), vec![None, None]);

    let contact = store.upsert_contact_by_email("jan@firma.pl", 40).unwrap();
    assert_eq!(store.link_visitor("v1", &contact, 40).unwrap(), 2);
    let linked = Some(contact.as_str().to_owned());
    assert_eq!(contact_ids(&db, "v1"), vec![linked.clone(), linked.clone()]);
    assert_eq!(
        contact_ids(&db, "v2"),
        vec![None],
        "other visitors untouched"
    );

    // Linking again is harmless, and later events of the visitor join the contact too.
    assert_eq!(store.link_visitor("v1", &contact, 50).unwrap(), 0);
    store
        .insert_batch(&[pageview("shop", Some("v1"), 60)])
        .unwrap();
    assert_eq!(contact_ids(&db, "v1"), vec![linked.clone(); 3]);
}

fn identify_event_through_the_writer_links_the_visitor(backend: Backend) {
    let db = TestDb::new(backend, "identify");
    let store = Arc::new(db.open());
    let contact = store.upsert_contact_by_email("jan@firma.pl", 1).unwrap();
    let writer = EventWriter::start(store.clone(), WriterConfig::default()).unwrap();
    let queue = writer.queue();
    assert!(queue.try_enqueue(pageview("shop", Some("v1"), 10)));
    assert!(queue.try_enqueue(Event {
        visitor_id: Some("v1".into()),
        contact_id: Some(contact.as_str().into()),
        identify_source: Some("form".into()),
        ..Event::new(
            EventKind::Identify,
            20,
            "shop",
            "https://shop.example/f",
            "/f"
        )
    }));
    writer.shutdown();
    let linked = Some(contact.as_str().to_owned());
    assert_eq!(contact_ids(&db, "v1"), vec![linked.clone(), linked]);
}

fn delete_older_than_removes_only_old_events(backend: Backend) {
    let db = TestDb::new(backend, "retention");
    let store = db.open();
    let events: Vec<Event> = (0..10).map(|ts| pageview("shop", None, ts * 100)).collect();
    store.insert_batch(&events).unwrap();
    assert_eq!(store.delete_older_than(500).unwrap(), 5); // 0..=400
    assert_eq!(store.count_events(None).unwrap(), 5);
    assert_eq!(store.delete_older_than(500).unwrap(), 0);
    assert_eq!(store.delete_older_than(i64::MAX).unwrap(), 5);
    assert_eq!(store.count_events(Some("shop")).unwrap(), 0);
}

fn a_full_queue_drops_and_counts(backend: Backend) {
    let db = TestDb::new(backend, "full");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let store = Arc::new(GatedStore {
        inner: db.open(),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let writer = EventWriter::start(store.clone(), fast_retries(4, 0)).unwrap();
    let queue = writer.queue();
    assert_eq!(queue.capacity(), 4);

    // The writer takes the first event and blocks inside insert_batch with an empty queue.
    assert!(queue.try_enqueue(pageview("shop", None, 0)));
    entered_rx.recv().unwrap();
    assert_eq!(queue.queue_depth(), 0);

    let accepted: Vec<bool> = (1..=7)
        .map(|ts| queue.try_enqueue(pageview("shop", None, ts)))
        .collect();
    assert_eq!(accepted, [true, true, true, true, false, false, false]);
    assert_eq!(queue.dropped(), 3);
    assert_eq!(queue.enqueued(), 5);
    assert_eq!(queue.queue_depth(), 4);

    drop(release_tx);
    let stats = writer.shutdown();
    assert_eq!(stats.written, 5);
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(store.count_events(None).unwrap(), 5);
}

fn a_store_that_recovers_within_the_retry_bound_loses_nothing(backend: Backend) {
    let db = TestDb::new(backend, "flaky");
    let store = Arc::new(FlakyStore {
        inner: db.open(),
        failures: AtomicU32::new(3),
    });
    let writer = EventWriter::start(store.clone(), fast_retries(1_000, 5)).unwrap();
    let queue = writer.queue();
    for ts in 0..500 {
        assert!(queue.try_enqueue(pageview("shop", None, ts)));
    }
    let stats = writer.shutdown();
    assert_eq!(stats.write_errors, 3);
    assert_eq!((stats.written, stats.abandoned, stats.dropped), (500, 0, 0));
    assert_eq!(store.count_events(None).unwrap(), 500);
}

fn a_store_failing_beyond_the_bound_abandons_and_counts(backend: Backend) {
    let db = TestDb::new(backend, "broken");
    let store = Arc::new(FlakyStore {
        inner: db.open(),
        failures: AtomicU32::new(u32::MAX),
    });
    let writer = EventWriter::start(store.clone(), fast_retries(1_000, 2)).unwrap();
    let queue = writer.queue();
    for ts in 0..100 {
        assert!(queue.try_enqueue(pageview("shop", None, ts)));
    }
    let stats = writer.shutdown();
    assert_eq!(stats.enqueued, stats.written + stats.abandoned);
    assert_eq!((stats.written, stats.abandoned), (0, 100));
    // Every batch was tried once and retried twice.
    assert!(stats.write_errors >= 3 && stats.write_errors % 3 == 0);
    assert_eq!(store.count_events(None).unwrap(), 0);
}

const MIN: i64 = 60 * 1000;

/// `(session_id, ts_ms)` of a visitor's events, in time order.
fn sessions(db: &TestDb, visitor: &str) -> Vec<(Option<String>, i64)> {
    db.rows(
        "SELECT session_id, ts_ms FROM events WHERE visitor_id = $1 ORDER BY ts_ms, id",
        &[visitor],
    )
    .iter()
    .map(|r| (r[0].text(), r[1].int()))
    .collect()
}

/// Just the session ids of a visitor's events, in time order; each must be set.
fn session_ids(db: &TestDb, visitor: &str) -> Vec<String> {
    sessions(db, visitor)
        .into_iter()
        .map(|(s, ts)| s.unwrap_or_else(|| panic!("event at {ts} of {visitor} has no session")))
        .collect()
}

/// `(email, first_seen, last_seen)` of a contact, or `None` if there is no such row.
fn contact_row(db: &TestDb, id: &str) -> Option<(Option<String>, i64, i64)> {
    db.rows(
        "SELECT email, first_seen, last_seen FROM contacts WHERE id = $1",
        &[id],
    )
    .first()
    .map(|r| (r[0].text(), r[1].int(), r[2].int()))
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.count(sql, &[])
}

/// The SQLite file itself, for the SQLite-only tests.
fn open_db(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

fn identify(visitor: Option<&str>, contact: &str, ts_ms: i64) -> Event {
    Event {
        visitor_id: visitor.map(str::to_owned),
        contact_id: Some(contact.to_owned()),
        identify_source: Some("email_link".into()),
        ..Event::new(
            EventKind::Identify,
            ts_ms,
            "shop",
            "https://shop.example/?smclient=x",
            "/",
        )
    }
}

#[test]
fn a_version_1_file_migrates_to_2_and_keeps_its_rows() {
    let db = TestDb::new(Backend::Sqlite, "v1");
    let (a, b);
    {
        let store = SqliteStore::open_at_version(db.sqlite_path(), 1).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        a = store.upsert_contact_by_email("a@firma.pl", 10).unwrap();
        b = store.upsert_contact_by_email("b@firma.pl", 20).unwrap();
        store.upsert_contact_by_email("a@firma.pl", 30).unwrap();
    }
    {
        // Really the version 1 schema: no email-less contacts, no session table.
        let conn = open_db(&db.sqlite_path());
        assert!(conn
            .execute(
                "INSERT INTO contacts (id, email, first_seen, last_seen) VALUES ('x', NULL, 1, 1)",
                [],
            )
            .is_err());
        assert!(conn.prepare("SELECT * FROM visitor_sessions").is_err());
        conn.execute(
            "INSERT INTO events (kind, ts_ms, site, visitor_id, contact_id, url, path)
             VALUES ('pageview', 5, 'shop', 'v1', ?1, 'https://shop.example/', '/')",
            [a.as_str()],
        )
        .unwrap();
    }

    let store = SqliteStore::open(db.sqlite_path()).unwrap();
    // Migrated through 2 to the latest version.
    assert!(SqliteStore::latest_schema_version() >= 2);
    assert_eq!(
        store.schema_version().unwrap(),
        SqliteStore::latest_schema_version()
    );
    let versions: Vec<u32> = {
        let conn = open_db(&db.sqlite_path());
        let mut stmt = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // Every migration SQLite has; 4 is PostgreSQL's alone (batch keys).
    assert_eq!(versions, [1, 2, 3, 5, 6, 7]);
    assert_eq!(SqliteStore::latest_schema_version(), 7);

    // Contacts and events survive the rebuild unchanged.
    assert_eq!(
        contact_row(&db, a.as_str()),
        Some((Some("a@firma.pl".into()), 10, 30))
    );
    assert_eq!(
        contact_row(&db, b.as_str()),
        Some((Some("b@firma.pl".into()), 20, 20))
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 2);
    assert_eq!(store.count_events(None).unwrap(), 1);
    assert_eq!(contact_ids(&db, "v1"), vec![Some(a.0.clone())]);
    assert_eq!(sessions(&db, "v1"), vec![(None, 5)]);
    // The visitor's latest event has no session: the next one starts a session.
    store
        .insert_batch(&[pageview("shop", Some("v1"), 6)])
        .unwrap();
    assert!(sessions(&db, "v1")[1].0.is_some());

    // Emails are still unique, and the upsert by email still finds the old row.
    assert_eq!(store.upsert_contact_by_email(" A@Firma.pl", 40).unwrap(), a);
    assert!(open_db(&db.sqlite_path())
        .execute(
            "INSERT INTO contacts (id, email, first_seen, last_seen) VALUES ('dup', 'b@firma.pl', 1, 1)",
            [],
        )
        .is_err());
    // Now contacts without email fit, and sessions are assigned.
    store
        .insert_batch(&[
            identify(Some("v2"), "vendor-1", 50),
            identify(Some("v3"), "vendor-2", 60),
        ])
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM contacts WHERE email IS NULL"),
        2
    );
    assert_eq!(session_ids(&db, "v2").len(), 1);

    let conn = open_db(&db.sqlite_path());
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let objects = |kind: &str| -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = ?1 ORDER BY name")
            .unwrap();
        stmt.query_map([kind], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let tables = objects("table");
    assert!(tables.contains(&"contacts".to_owned()));
    // Created by migration 2, dropped by 7 (the latest event says the session).
    assert!(!tables.contains(&"visitor_sessions".to_owned()));
    assert!(!tables.contains(&"contacts_new".to_owned()));
    // Created by migration 2, dropped by 5 (no query looks events up by session).
    assert!(!objects("index").contains(&"events_session".to_owned()));
    assert!(objects("index").contains(&"events_visitor_ts".to_owned()));
    assert!(!objects("index").contains(&"events_visitor".to_owned()));
}

#[test]
fn a_file_migrated_step_by_step_matches_a_new_one() {
    let dir = TestDb::new(Backend::Sqlite, "steps");
    let stepped = dir.dir().join("stepped.db");
    drop(SqliteStore::open_at_version(&stepped, 1).unwrap());
    drop(SqliteStore::open(&stepped).unwrap());
    drop(SqliteStore::open(dir.sqlite_path()).unwrap());
    let schema = |db: &Path| -> Vec<(String, String, Option<String>)> {
        let conn = open_db(db);
        let mut stmt = conn
            .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(schema(&stepped), schema(&dir.sqlite_path()));
}

fn identify_with_an_unknown_contact_id_creates_a_contact_without_email(backend: Backend) {
    let db = TestDb::new(backend, "unknown-contact");
    let store = db.open();
    let vendor = "3f2b8c1e-0d4a-4c55-9a57-2f7f0c6a1b10";
    store
        .insert_batch(&[
            pageview("shop", Some("v1"), 90),
            identify(Some("v1"), vendor, 100),
        ])
        .unwrap();
    assert_eq!(contact_row(&db, vendor), Some((None, 100, 100)));
    // The identify linked the visitor, attaching the earlier anonymous pageview.
    let linked = Some(vendor.to_owned());
    assert_eq!(contact_ids(&db, "v1"), vec![linked.clone(); 2]);

    // Later events of the contact move last_seen (and an older one first_seen); still one row.
    let mut later = pageview("shop", Some("v1"), 300);
    later.contact_id = Some(vendor.into());
    let mut older = pageview("shop", None, 40);
    older.contact_id = Some(vendor.into());
    store.insert_batch(&[later, older]).unwrap();
    assert_eq!(contact_row(&db, vendor), Some((None, 40, 300)));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 1);

    // Any event kind with an unknown contact creates it, with or without a visitor.
    let mut custom = Event::new(EventKind::Custom, 7, "shop", "https://shop.example/", "/");
    custom.contact_id = Some("vendor-2".into());
    store.insert_batch(&[custom]).unwrap();
    assert_eq!(contact_row(&db, "vendor-2"), Some((None, 7, 7)));
}

fn events_of_a_known_contact_keep_its_email(backend: Backend) {
    let db = TestDb::new(backend, "known-contact");
    let store = db.open();
    let c = store.upsert_contact_by_email("jan@firma.pl", 100).unwrap();
    store
        .insert_batch(&[identify(Some("v1"), c.as_str(), 200)])
        .unwrap();
    assert_eq!(
        contact_row(&db, c.as_str()),
        Some((Some("jan@firma.pl".into()), 100, 200))
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 1);
}

fn link_visitor_creates_an_unknown_contact(backend: Backend) {
    let db = TestDb::new(backend, "link-unknown");
    let store = db.open();
    store
        .insert_batch(&[pageview("shop", Some("v1"), 10)])
        .unwrap();
    let vendor = ContactId("vendor-9".into());
    assert_eq!(store.link_visitor("v1", &vendor, 50).unwrap(), 1);
    assert_eq!(contact_row(&db, "vendor-9"), Some((None, 50, 50)));
    // Linking again leaves the contact as it is.
    assert_eq!(store.link_visitor("v2", &vendor, 60).unwrap(), 0);
    assert_eq!(contact_row(&db, "vendor-9"), Some((None, 50, 50)));
    assert_eq!(contact_ids(&db, "v1"), vec![Some("vendor-9".into())]);
}

fn contacts_without_email_coexist_with_each_other_and_with_emails(backend: Backend) {
    let db = TestDb::new(backend, "null-emails");
    let store = db.open();
    let c = store.upsert_contact_by_email("jan@firma.pl", 1).unwrap();
    store
        .insert_batch(&[identify(Some("v1"), "vendor-a", 2)])
        .unwrap();
    store
        .insert_batch(&[identify(Some("v2"), "vendor-b", 3)])
        .unwrap();
    store
        .link_visitor("v3", &ContactId("vendor-c".into()), 4)
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM contacts WHERE email IS NULL"),
        3
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 4);
    assert_eq!(store.upsert_contact_by_email("jan@firma.pl", 5).unwrap(), c);
}

fn sessions_split_after_thirty_minutes_of_inactivity(backend: Backend) {
    let db = TestDb::new(backend, "sessions");
    let store = db.open();
    let t0 = 1_700_000_000_000;
    store
        .insert_batch(&[
            pageview("shop", Some("v"), t0),
            pageview("shop", Some("v"), t0 + 10 * MIN),
            pageview("shop", Some("v"), t0 + 20 * MIN),
            pageview("shop", Some("v"), t0 + 51 * MIN), // 31 min after the previous
            pageview("shop", Some("v"), t0 + 61 * MIN),
        ])
        .unwrap();
    let s = session_ids(&db, "v");
    assert_eq!(s.len(), 5);
    assert!(s[0] == s[1] && s[1] == s[2], "{s:?}");
    assert_ne!(s[2], s[3]);
    assert_eq!(s[3], s[4]);
    for id in [&s[0], &s[3]] {
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "time-ordered");
        assert_eq!(&parsed.hyphenated().to_string(), id);
    }
    // The next batch continues from the latest event (61 min), not from the session's start.
    store
        .insert_batch(&[pageview("shop", Some("v"), t0 + 61 * MIN + SESSION_IDLE_MS)])
        .unwrap();
    assert_eq!(session_ids(&db, "v")[5], s[4]);
}

fn exactly_thirty_minutes_still_continues_the_session(backend: Backend) {
    let db = TestDb::new(backend, "boundary");
    let store = db.open();
    store
        .insert_batch(&[
            pageview("shop", Some("v"), 0),
            pageview("shop", Some("v"), SESSION_IDLE_MS),
            pageview("shop", Some("v"), 2 * SESSION_IDLE_MS + 1),
        ])
        .unwrap();
    let s = session_ids(&db, "v");
    assert_eq!(s[0], s[1]);
    assert_ne!(s[1], s[2]);
}

fn two_visitors_have_different_sessions(backend: Backend) {
    let db = TestDb::new(backend, "two-visitors");
    let store = db.open();
    store
        .insert_batch(&[
            pageview("shop", Some("v1"), 100),
            pageview("shop", Some("v2"), 100),
            pageview("shop", Some("v1"), 200),
            pageview("blog", Some("v2"), 300),
        ])
        .unwrap();
    let (s1, s2) = (session_ids(&db, "v1"), session_ids(&db, "v2"));
    assert_eq!(s1[0], s1[1]);
    assert_eq!(s2[0], s2[1]);
    assert_ne!(s1[0], s2[0]);
}

fn out_of_order_events_in_one_batch_are_assigned_in_time_order(backend: Backend) {
    let db = TestDb::new(backend, "out-of-order");
    let store = db.open();
    store
        .insert_batch(&[
            // v1 in time order is 0, 25, 50 min: one session (batch order would split it).
            pageview("shop", Some("v1"), 0),
            pageview("shop", Some("v2"), 100 * MIN),
            pageview("shop", Some("v1"), 50 * MIN),
            // v2 in time order is 0, 100 min: two sessions (batch order would merge them).
            pageview("shop", Some("v2"), 0),
            pageview("shop", Some("v1"), 25 * MIN),
        ])
        .unwrap();
    let s1 = session_ids(&db, "v1");
    assert_eq!(s1.len(), 3);
    assert!(s1.iter().all(|s| *s == s1[0]), "{s1:?}");
    let s2 = session_ids(&db, "v2");
    assert_eq!(s2.len(), 2);
    assert_ne!(s2[0], s2[1]);
    // Rows are still stored in batch order.
    let ts_by_id: Vec<i64> = db
        .rows("SELECT ts_ms FROM events ORDER BY id", &[])
        .iter()
        .map(|r| r[0].int())
        .collect();
    assert_eq!(ts_by_id, [0, 100 * MIN, 50 * MIN, 0, 25 * MIN]);
    // The next batch continues from each visitor's latest event in time, not in batch order.
    store
        .insert_batch(&[
            pageview("shop", Some("v1"), 50 * MIN + SESSION_IDLE_MS),
            pageview("shop", Some("v2"), 100 * MIN + SESSION_IDLE_MS),
        ])
        .unwrap();
    assert_eq!(session_ids(&db, "v1")[3], s1[0]);
    assert_eq!(session_ids(&db, "v2")[2], s2[1]);
}

/// Only the API and imports send a `session_id`: it is kept, and as the visitor's latest
/// event it is the session the visitor's next events continue.
fn an_explicit_session_id_is_kept_and_continued_while_latest(backend: Backend) {
    let db = TestDb::new(backend, "explicit");
    let store = db.open();
    let explicit = |ts_ms: i64, id: &str| Event {
        session_id: Some(id.to_owned()),
        ..pageview("shop", Some("v"), ts_ms)
    };
    store
        .insert_batch(&[pageview("shop", Some("v"), 0)])
        .unwrap();
    store.insert_batch(&[explicit(5 * MIN, "tab-1")]).unwrap();
    store
        .insert_batch(&[
            pageview("shop", Some("v"), 10 * MIN),
            // Older than the latest event: kept, but not continued.
            explicit(MIN, "old"),
            pageview("shop", Some("v"), 12 * MIN),
        ])
        .unwrap();
    let s: Vec<Option<String>> = sessions(&db, "v").into_iter().map(|(s, _)| s).collect();
    let assigned = s[0].clone().unwrap();
    assert_ne!(assigned, "tab-1");
    assert_eq!(
        s,
        [
            Some(assigned),
            Some("old".to_owned()),
            Some("tab-1".to_owned()),
            Some("tab-1".to_owned()),
            Some("tab-1".to_owned())
        ]
    );
    // A visitor with only explicit sessions in a batch gets nothing assigned.
    store.insert_batch(&[explicit(20 * MIN, "tab-2")]).unwrap();
    assert_eq!(
        sessions(&db, "v").last().unwrap().0.as_deref(),
        Some("tab-2")
    );
}

fn events_without_a_visitor_have_no_session(backend: Backend) {
    let db = TestDb::new(backend, "no-visitor");
    let store = db.open();
    store
        .insert_batch(&[pageview("shop", None, 10), pageview("shop", None, 20)])
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM events WHERE session_id IS NULL"),
        2
    );
}

fn sessions_continue_across_batches_and_reopening(backend: Backend) {
    let db = TestDb::new(backend, "session-reopen");
    {
        let store = db.open();
        store
            .insert_batch(&[pageview("shop", Some("v"), 0)])
            .unwrap();
        store
            .insert_batch(&[pageview("shop", Some("v"), 10 * MIN)])
            .unwrap();
    }
    {
        let store = db.open();
        store
            .insert_batch(&[pageview("shop", Some("v"), 20 * MIN)])
            .unwrap();
        store
            .insert_batch(&[pageview("shop", Some("v"), 60 * MIN)])
            .unwrap();
        // A late event, older than the visitor's latest, joins the current session.
        store
            .insert_batch(&[pageview("shop", Some("v"), 15 * MIN)])
            .unwrap();
    }
    let s: Vec<(String, i64)> = sessions(&db, "v")
        .into_iter()
        .map(|(s, ts)| (s.unwrap(), ts / MIN))
        .collect();
    let ts: Vec<i64> = s.iter().map(|(_, ts)| *ts).collect();
    assert_eq!(ts, [0, 10, 15, 20, 60]);
    let (first, second) = (&s[0].0, &s[4].0);
    assert_ne!(first, second);
    assert_eq!(s[1].0, *first);
    assert_eq!(s[3].0, *first);
    assert_eq!(s[2].0, *second, "late event joins the current session");
    // The latest event is still the one at 60 min: the late event did not replace it.
    db.open()
        .insert_batch(&[pageview("shop", Some("v"), 60 * MIN + SESSION_IDLE_MS)])
        .unwrap();
    assert_eq!(session_ids(&db, "v")[5], *second);
}

/// A visitor's session is its latest event's: deleting the events (retention here) leaves no
/// session behind, and the visitor's next event starts a new one.
fn sessions_go_with_their_events(backend: Backend) {
    let db = TestDb::new(backend, "session-retention");
    let store = db.open();
    store
        .insert_batch(&[
            pageview("shop", Some("v"), 0),
            pageview("shop", Some("v"), 10 * MIN),
        ])
        .unwrap();
    let first = session_ids(&db, "v")[0].clone();
    assert_eq!(store.delete_older_than(11 * MIN).unwrap(), 2);
    store
        .insert_batch(&[pageview("shop", Some("v"), 20 * MIN)])
        .unwrap();
    let next = session_ids(&db, "v");
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], first);
}

fn sessions_are_assigned_through_the_writer(backend: Backend) {
    let db = TestDb::new(backend, "session-writer");
    let store = Arc::new(db.open());
    let writer = EventWriter::start(store.clone(), WriterConfig::default()).unwrap();
    let queue = writer.queue();
    for i in 0..50 {
        assert!(queue.try_enqueue(pageview("shop", Some("v"), i * MIN)));
    }
    assert!(queue.try_enqueue(pageview("shop", Some("v"), 200 * MIN)));
    writer.shutdown();
    let s = session_ids(&db, "v");
    assert_eq!(s.len(), 51);
    assert!(s[..50].iter().all(|id| *id == s[0]));
    assert_ne!(s[50], s[0]);
}

fn a_failed_batch_leaves_no_contacts_or_sessions_behind(backend: Backend) {
    let db = TestDb::new(backend, "atomic");
    let store = db.open();
    // A row the database refuses, in the middle of the batch.
    db.execute(match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.path = '/boom'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'boom'; END $$;
             CREATE TRIGGER boom BEFORE INSERT ON events
             FOR EACH ROW WHEN (NEW.path = '/boom') EXECUTE FUNCTION boom();"
        }
    });
    let mut bad = pageview("shop", Some("v2"), 30);
    bad.path = "/boom".into();
    let batch = [
        identify(Some("v1"), "vendor-1", 10),
        pageview("shop", Some("v1"), 20),
        bad,
    ];
    assert!(store.insert_batch(&batch).is_err());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events"), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM visitor_contacts"), 0);

    // The retry after the problem is gone stores everything once.
    db.execute(match backend {
        Backend::Sqlite => "DROP TRIGGER boom",
        Backend::Postgres => "DROP TRIGGER boom ON events",
    });
    assert_eq!(store.insert_batch(&batch).unwrap(), 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events"), 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts"), 1);
    let s = session_ids(&db, "v1");
    assert_eq!(s[0], s[1]);
}

/// The indexes on columns that most events leave empty have no entries for those events
/// (migration 6): an anonymous page view pays for none of them.
fn indexes_on_optional_columns_leave_out_empty_values(backend: Backend) {
    let db = TestDb::new(backend, "partial-indexes");
    drop(db.open());
    let sql = match backend {
        Backend::Sqlite => "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1",
        Backend::Postgres => "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
    };
    for (index, column) in [
        ("events_visitor_ts", "visitor_id"),
        ("events_contact", "contact_id"),
        ("events_smids", "smids"),
        ("events_company_ts", "company"),
    ] {
        let def = db.rows(sql, &[index])[0][0].text().unwrap();
        let partial = format!("WHERE {column} IS NOT NULL");
        assert!(
            def.replace(['(', ')'], "").ends_with(&partial),
            "{index}: {def}"
        );
    }
}

both_backends!(
    indexes_on_optional_columns_leave_out_empty_values,
    events_from_several_threads_are_all_written_by_shutdown,
    dropping_the_writer_also_flushes,
    reopening_applies_migrations_once_and_keeps_data,
    a_file_from_a_newer_version_is_refused,
    same_contact_for_differently_written_email,
    link_visitor_attaches_earlier_anonymous_events,
    identify_event_through_the_writer_links_the_visitor,
    delete_older_than_removes_only_old_events,
    a_full_queue_drops_and_counts,
    a_store_that_recovers_within_the_retry_bound_loses_nothing,
    a_store_failing_beyond_the_bound_abandons_and_counts,
    identify_with_an_unknown_contact_id_creates_a_contact_without_email,
    events_of_a_known_contact_keep_its_email,
    link_visitor_creates_an_unknown_contact,
    contacts_without_email_coexist_with_each_other_and_with_emails,
    sessions_split_after_thirty_minutes_of_inactivity,
    exactly_thirty_minutes_still_continues_the_session,
    two_visitors_have_different_sessions,
    out_of_order_events_in_one_batch_are_assigned_in_time_order,
    an_explicit_session_id_is_kept_and_continued_while_latest,
    events_without_a_visitor_have_no_session,
    sessions_continue_across_batches_and_reopening,
    sessions_go_with_their_events,
    sessions_are_assigned_through_the_writer,
    a_failed_batch_leaves_no_contacts_or_sessions_behind,
);

/// Several instances starting at once on a new database: one applies the migrations under the
/// advisory lock, the others wait and find them done.
#[test]
fn postgres_instances_starting_together_migrate_once() {
    let db = TestDb::new(Backend::Postgres, "pg-concurrent-migrate");
    let config = db.pg_config();
    let stores: Vec<PostgresStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let config = config.clone();
                s.spawn(move || PostgresStore::connect(config).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in &stores {
        assert_eq!(
            store.schema_version().unwrap(),
            PostgresStore::latest_schema_version()
        );
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM schema_migrations"),
        MIGRATIONS_IN_POSTGRES
    );
    stores[0]
        .insert_batch(&[pageview("shop", None, 1)])
        .unwrap();
    assert_eq!(stores[5].count_events(None).unwrap(), 1);
}

/// PostgreSQL's migrations so far: version 3 (the schema), 4 (batch keys), 5 (no
/// `events_session`), 6 (partial indexes) and 7 (no `visitor_sessions`).
const MIGRATIONS_IN_POSTGRES: i64 = 5;

/// Two instances writing the same visitors at the same time: each visitor still gets one
/// session (the per-visitor lock serialises them), and an identification written by one
/// instance attaches the events the other one wrote.
#[test]
fn two_postgres_instances_share_sessions_and_links() {
    let db = TestDb::new(Backend::Postgres, "pg-two-writers");
    let a = Arc::new(PostgresStore::connect(db.pg_config()).unwrap());
    let b = Arc::new(PostgresStore::connect(db.pg_config()).unwrap());
    const VISITORS: i64 = 20;
    const ROUNDS: i64 = 30;
    std::thread::scope(|s| {
        for (n, store) in [&a, &b].into_iter().enumerate() {
            s.spawn(move || {
                for round in 0..ROUNDS {
                    // Every batch touches every visitor, in a different order per instance.
                    let mut batch: Vec<Event> = (0..VISITORS)
                        .map(|v| {
                            let ts = 1_000_000 + round * 1_000 + n as i64;
                            pageview("shop", Some(&format!("v{v}")), ts)
                        })
                        .collect();
                    if n == 1 {
                        batch.reverse();
                    }
                    store.insert_batch(&batch).unwrap();
                }
            });
        }
    });
    for v in 0..VISITORS {
        let s = session_ids(&db, &format!("v{v}"));
        assert_eq!(s.len(), 2 * ROUNDS as usize);
        assert!(s.iter().all(|id| *id == s[0]), "v{v}: {s:?}");
    }

    b.insert_batch(&[identify(Some("v3"), "vendor-x", 2_000_000)])
        .unwrap();
    assert_eq!(
        contact_ids(&db, "v3"),
        vec![Some("vendor-x".to_owned()); 2 * ROUNDS as usize + 1]
    );
    a.insert_batch(&[pageview("shop", Some("v3"), 2_000_001)])
        .unwrap();
    assert_eq!(
        contact_ids(&db, "v3").last().unwrap().as_deref(),
        Some("vendor-x")
    );
}

/// PostgreSQL can serve the store's look-ups of one visitor, contact, cross-site id or company
/// from the indexes that leave out events without a value (migrations 6 and 7): with
/// sequential scans switched off, a plan that could not use them would still scan the table.
#[test]
fn postgres_look_ups_use_the_partial_indexes() {
    let db = TestDb::new(Backend::Postgres, "pg-plans");
    drop(db.open());
    let mut client = db.pg_config().connect(postgres::NoTls).unwrap();
    client.batch_execute("SET enable_seqscan = off").unwrap();
    let mut plan = |sql: &str| -> String {
        let rows = client.query(&format!("EXPLAIN {sql}"), &[&"x"]).unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (sql, index) in [
        // A visitor's latest event (its current session), newest first without a sort.
        (
            "SELECT session_id, ts_ms FROM events WHERE visitor_id = $1
             ORDER BY ts_ms DESC, id DESC LIMIT 1",
            "events_visitor_ts",
        ),
        (
            "UPDATE events SET contact_id = $1 WHERE visitor_id = $1 AND contact_id IS NULL",
            "events_visitor_ts",
        ),
        (
            "SELECT id FROM events WHERE contact_id = $1",
            "events_contact",
        ),
        (
            "SELECT id FROM events WHERE contact_id IS NULL AND smids IN (
                 SELECT smids FROM events WHERE contact_id = $1 AND smids IS NOT NULL)",
            "events_smids",
        ),
        (
            "SELECT count(*) FROM events WHERE company = $1 AND ts_ms >= 0 AND ts_ms < 10",
            "events_company_ts",
        ),
    ] {
        let p = plan(sql);
        assert!(p.contains(index), "{sql}\n{p}");
        assert!(!p.contains("Seq Scan on events"), "{sql}\n{p}");
        assert!(!p.contains("Sort"), "{sql}\n{p}");
    }
}
