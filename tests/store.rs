//! The event store and its background writer against a real SQLite file: nothing lost on a
//! clean shutdown, migrations, identity linking, retention, and the queue's drop and retry
//! behaviour made deterministic with store wrappers (no sleeps as synchronisation).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smproxy::store::{
    ContactId, Event, EventKind, EventWriter, SqliteStore, Store, StoreError, WriterConfig,
};

/// A unique directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "smproxy-store-{name}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("events.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    }
}

/// Reads a column straight from the file, independent of the Store API.
fn contact_ids(db: &Path, visitor: &str) -> Vec<Option<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT contact_id FROM events WHERE visitor_id = ?1 ORDER BY ts_ms")
        .unwrap();
    stmt.query_map([visitor], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
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
    inner: SqliteStore,
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
    inner: SqliteStore,
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

#[test]
fn events_from_several_threads_are_all_written_by_shutdown() {
    const THREADS: usize = 5;
    const PER_THREAD: usize = 1_000;
    let dir = TempDir::new("threads");
    let store = Arc::new(SqliteStore::open(dir.db()).unwrap());
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

#[test]
fn dropping_the_writer_also_flushes() {
    let dir = TempDir::new("drop");
    let store = Arc::new(SqliteStore::open(dir.db()).unwrap());
    let writer = EventWriter::start(store.clone(), WriterConfig::default()).unwrap();
    let queue = writer.queue();
    for ts in 0..100 {
        assert!(queue.try_enqueue(pageview("shop", None, ts)));
    }
    drop(writer);
    assert_eq!(store.count_events(None).unwrap(), 100);
}

#[test]
fn reopening_applies_migrations_once_and_keeps_data() {
    let dir = TempDir::new("migrate");
    let latest = SqliteStore::latest_schema_version();
    {
        let store = SqliteStore::open(dir.db()).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest);
        store.insert_batch(&[pageview("shop", None, 1)]).unwrap();
    }
    let applied_at = |db: &Path| -> Vec<(u32, i64)> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = applied_at(&dir.db());
    assert_eq!(before.len(), latest as usize);

    for _ in 0..2 {
        let store = SqliteStore::open(dir.db()).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest);
        assert_eq!(store.count_events(None).unwrap(), 1);
        store.ping().unwrap();
    }
    assert_eq!(applied_at(&dir.db()), before, "no migration ran twice");

    let mode: String = rusqlite::Connection::open(dir.db())
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_file_from_a_newer_version_is_refused() {
    let dir = TempDir::new("newer");
    drop(SqliteStore::open(dir.db()).unwrap());
    rusqlite::Connection::open(dir.db())
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
            [],
        )
        .unwrap();
    assert!(matches!(
        SqliteStore::open(dir.db()),
        Err(StoreError::SchemaTooNew { found: 9999, .. })
    ));
}

#[test]
fn open_creates_missing_directories() {
    let dir = TempDir::new("mkdir");
    let db = dir.0.join("a/b/events.db");
    SqliteStore::open(&db).unwrap().ping().unwrap();
    assert!(db.exists());
}

#[test]
fn same_contact_for_differently_written_email() {
    let dir = TempDir::new("contact");
    let store = SqliteStore::open(dir.db()).unwrap();
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

    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let row: (String, i64, i64) = conn
        .query_row(
            "SELECT email, first_seen, last_seen FROM contacts WHERE id = ?1",
            [a.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, ("a@example.com".to_owned(), 1, 2));
}

#[test]
fn link_visitor_attaches_earlier_anonymous_events() {
    let dir = TempDir::new("link");
    let store = SqliteStore::open(dir.db()).unwrap();
    store
        .insert_batch(&[
            pageview("shop", Some("v1"), 10),
            pageview("shop", Some("v1"), 20),
            pageview("shop", Some("v2"), 30),
        ])
        .unwrap();
    assert_eq!(contact_ids(&dir.db(), "v1"), vec![None, None]);

    let contact = store.upsert_contact_by_email("jan@firma.pl", 40).unwrap();
    assert_eq!(store.link_visitor("v1", &contact, 40).unwrap(), 2);
    let linked = Some(contact.as_str().to_owned());
    assert_eq!(
        contact_ids(&dir.db(), "v1"),
        vec![linked.clone(), linked.clone()]
    );
    assert_eq!(
        contact_ids(&dir.db(), "v2"),
        vec![None],
        "other visitors untouched"
    );

    // Linking again is harmless, and later events of the visitor join the contact too.
    assert_eq!(store.link_visitor("v1", &contact, 50).unwrap(), 0);
    store
        .insert_batch(&[pageview("shop", Some("v1"), 60)])
        .unwrap();
    assert_eq!(contact_ids(&dir.db(), "v1"), vec![linked.clone(); 3]);
}

#[test]
fn identify_event_through_the_writer_links_the_visitor() {
    let dir = TempDir::new("identify");
    let store = Arc::new(SqliteStore::open(dir.db()).unwrap());
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
    assert_eq!(contact_ids(&dir.db(), "v1"), vec![linked.clone(), linked]);
}

#[test]
fn delete_older_than_removes_only_old_events() {
    let dir = TempDir::new("retention");
    let store = SqliteStore::open(dir.db()).unwrap();
    let events: Vec<Event> = (0..10).map(|ts| pageview("shop", None, ts * 100)).collect();
    store.insert_batch(&events).unwrap();
    assert_eq!(store.delete_older_than(500).unwrap(), 5); // 0..=400
    assert_eq!(store.count_events(None).unwrap(), 5);
    assert_eq!(store.delete_older_than(500).unwrap(), 0);
    assert_eq!(store.delete_older_than(i64::MAX).unwrap(), 5);
    assert_eq!(store.count_events(Some("shop")).unwrap(), 0);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let dir = TempDir::new("full");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let store = Arc::new(GatedStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
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

#[test]
fn a_store_that_recovers_within_the_retry_bound_loses_nothing() {
    let dir = TempDir::new("flaky");
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
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

#[test]
fn a_store_failing_beyond_the_bound_abandons_and_counts() {
    let dir = TempDir::new("broken");
    let store = Arc::new(FlakyStore {
        inner: SqliteStore::open(dir.db()).unwrap(),
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
