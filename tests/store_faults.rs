//! The store failing under a running proxy: the disk fills up (a real tmpfs of a few MiB),
//! another process holds the database's write lock, or the file is read-only (its tmpfs
//! remounted `ro`). Pages keep being served and injected, beacons keep getting 204 (503 with
//! `store.durability: strict`), drops and errors show in `/metrics`, `/readyz` says degraded,
//! and writing resumes when the fault clears.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_injected_once, html_response, request_body, snippet, Origin, Proxy, TempDir};

const PAGE: &[u8] = b"<!doctype html><html><head><title>shop</title></head><body>hi</body></html>";

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped. Needs root (CI
/// runs as root): a machine where it cannot mount fails the test, it does not skip it.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs { dir },
            Ok(o) => panic!(
                "cannot mount a {size} tmpfs at {} (this test fills a real disk and needs root, \
as in CI): {}",
                dir.0.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8) for the disk-full test: {e}"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// `mount -o remount,MODE`: `ro` or `rw`. The kernel refuses `ro` (EBUSY) while any file
    /// on it is open for writing.
    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.dir.0)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "remount {mode} {}: {}",
            self.dir.0.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the proxy's threads may still hold the files for a moment.
        let _ = Command::new("umount").arg("-l").arg(&self.dir.0).status();
    }
}

/// Fills the filesystem holding `path` until it refuses another byte.
fn fill_disk(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler file");
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).and_then(|()| f.sync_all()).is_err() {
            break;
        }
    }
    // Also the last few bytes a block write could not take.
    while f.write_all(&[0u8]).is_ok() && f.sync_all().is_ok() {}
}

fn start(db: &Path, extra: &str) -> (Proxy, Origin) {
    let origin = Origin::respond(|_| html_response(PAGE));
    let extra = format!(
        "store:\n  sqlite: \"{}\"\n{extra}collect:\n  rate_per_minute: 0\n  queue_capacity: 100\n",
        db.display()
    );
    (Proxy::start(&origin.addr, &extra), origin)
}

/// A page view whose title and URL make its row a few KiB, so a handful of them need new
/// pages in the file (and its write-ahead log).
fn beacon(p: &Proxy, name: &str) -> u16 {
    let pad = "x".repeat(1500);
    let body = format!(
        r#"{{"type":"pageview","url":"http://test.example/{name}?p={pad}","title":"{}"}}"#,
        "t".repeat(500)
    );
    request_body(
        &p.addr,
        "POST",
        "/_sm/collect",
        &[
            ("Origin", "http://test.example"),
            ("Content-Type", "text/plain"),
        ],
        body.as_bytes(),
    )
    .status
}

fn stored(db: &Path, name: &str) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE path = ?1",
            [format!("/{name}")],
            |r| r.get(0),
        )
        .unwrap();
    n > 0
}

/// Rows whose path starts with `/{prefix}`.
fn stored_like(db: &Path, prefix: &str) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM events WHERE path LIKE ?1",
        [format!("/{prefix}%")],
        |r| r.get(0),
    )
    .unwrap()
}

fn metric(p: &Proxy, name: &str) -> u64 {
    let text = p.metrics_text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Polls `cond` (every 50 ms, up to `limit`): the writer's retries run on their own clock.
fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn page_is_injected(p: &Proxy) {
    let r = p.get("/");
    assert_eq!(r.status, 200);
    assert_injected_once(PAGE, &r.body, &snippet(), "page during a store fault");
}

/// After the fault clears: the writer's next retry (at most `max_backoff`, 5 s, away)
/// succeeds, `/readyz` is ready again, the queue drains, and new events are stored.
fn recovers(p: &Proxy, db: &Path) {
    eventually("/readyz ready again", Duration::from_secs(30), || {
        readyz(p).0 == 200
    });
    p.flush();
    assert_eq!(beacon(p, "after"), 204);
    p.flush();
    assert!(stored(db, "after"), "writing did not resume");
}

fn readyz(p: &Proxy) -> (u16, String) {
    let r = p.admin_get("/readyz");
    (r.status, r.text())
}

#[test]
fn disk_full_degrades_then_recovers() {
    let disk = Tmpfs::mount("8m");
    let db = disk.path("events.db");
    let (p, _origin) = start(&db, "");
    assert_eq!(beacon(&p, "before"), 204);
    p.flush();
    assert!(stored(&db, "before"));
    assert_eq!(readyz(&p).0, 200);

    fill_disk(&disk.path("filler"));
    // More beacons than the queue holds: every one is still answered 204 at once.
    for i in 0..300 {
        assert_eq!(
            beacon(&p, &format!("full{i}")),
            204,
            "beacon {i} on a full disk"
        );
    }
    page_is_injected(&p);
    eventually("/readyz degraded", Duration::from_secs(30), || {
        let (status, text) = readyz(&p);
        status == 503 && text.starts_with("degraded")
    });
    assert!(metric(&p, "smproxy_store_errors_total") > 0);
    assert!(
        metric(&p, "smproxy_events_dropped_total") > 0,
        "the full queue drops"
    );
    assert_eq!(metric(&p, "smproxy_store_write_failing"), 1);

    std::fs::remove_file(disk.path("filler")).unwrap();
    recovers(&p, &db);
    assert_eq!(metric(&p, "smproxy_store_write_failing"), 0);
    page_is_injected(&p);
}

/// Holds the write lock of the database from another connection until dropped.
struct Locker(rusqlite::Connection);

impl Locker {
    fn lock(db: &Path) -> Locker {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");
        Locker(conn)
    }

    fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

#[test]
fn a_locked_database_degrades_then_recovers() {
    let dir = TempDir::new("locked");
    let db = dir.0.join("events.db");
    let (p, _origin) = start(&db, "");
    assert_eq!(beacon(&p, "before"), 204);
    p.flush();

    let locker = Locker::lock(&db);
    for i in 0..200 {
        assert_eq!(beacon(&p, &format!("locked{i}")), 204);
    }
    page_is_injected(&p);
    // SQLite waits its busy timeout (5 s) before the writer sees the failure.
    eventually("/readyz degraded", Duration::from_secs(30), || {
        let (status, text) = readyz(&p);
        status == 503 && text.starts_with("degraded")
    });
    assert!(metric(&p, "smproxy_store_errors_total") > 0);
    assert!(metric(&p, "smproxy_events_dropped_total") > 0);

    locker.release();
    recovers(&p, &db);
    // What the queue held through the fault was written, not lost.
    assert!(stored(&db, "locked0"));
}

#[test]
fn strict_durability_answers_503_while_the_store_fails() {
    let dir = TempDir::new("strict-locked");
    let db = dir.0.join("events.db");
    let (p, _origin) = start(&db, "  durability: strict\n");
    assert_eq!(beacon(&p, "before"), 204);
    // Acknowledged means committed: no flush needed.
    assert!(stored(&db, "before"));

    let locker = Locker::lock(&db);
    assert_eq!(
        beacon(&p, "locked"),
        503,
        "not committed, so not acknowledged"
    );
    assert_eq!(metric(&p, "smproxy_beacons_unconfirmed_total"), 1);
    page_is_injected(&p);
    locker.release();

    assert_eq!(beacon(&p, "after"), 204);
    assert!(stored(&db, "after"));
}

/// The file cannot be written when the proxy starts (its filesystem is mounted read-only:
/// a running connection keeps its open file and would not notice a later `chmod` or remount,
/// and the kernel refuses to remount while the file is open for writing, so the fault meets
/// the store when it opens the file). SQLite cannot even open a write-ahead-logged file on a
/// read-only mount, and a connection opened while the file was read-only stays read-only
/// after it is writable again; the store reopens it.
#[test]
fn a_read_only_store_degrades_then_recovers() {
    let disk = Tmpfs::mount("16m");
    let db = disk.path("events.db");
    {
        // A store made and closed by an earlier run, so nothing holds the file open.
        let store = smproxy::store::SqliteStore::open(&db).unwrap();
        let e = smproxy::store::Event::new(
            smproxy::store::EventKind::Pageview,
            1,
            "test",
            "http://test.example/earlier",
            "/earlier",
        );
        assert_eq!(
            smproxy::store::Store::insert_batch(&store, &[e]).unwrap(),
            1
        );
    }
    disk.remount("ro");

    let (p, _origin) = start(&db, "");
    page_is_injected(&p);
    let (status, text) = readyz(&p);
    assert_eq!((status, text.as_str()), (503, "store not ready\n"));
    // More beacons than the queue holds: every one is still answered 204 at once.
    for i in 0..300 {
        assert_eq!(
            beacon(&p, &format!("ro{i}")),
            204,
            "beacon {i} on a read-only store"
        );
    }
    page_is_injected(&p);
    eventually("/readyz degraded", Duration::from_secs(30), || {
        let (status, text) = readyz(&p);
        status == 503 && text.starts_with("degraded")
    });
    assert!(metric(&p, "smproxy_store_errors_total") > 0);
    let dropped = metric(&p, "smproxy_events_dropped_total");
    assert!(dropped > 0, "the full queue drops");
    assert_eq!(metric(&p, "smproxy_store_write_failing"), 1);
    assert_eq!(metric(&p, "smproxy_events_written_total"), 0);

    disk.remount("rw");
    eventually("/readyz ready again", Duration::from_secs(30), || {
        readyz(&p).0 == 200
    });
    p.flush();
    // Every beacon was stored, or counted as dropped at the door or abandoned after retries.
    let abandoned = metric(&p, "smproxy_events_abandoned_total");
    assert_eq!(stored_like(&db, "ro") + dropped + abandoned, 300);
    assert!(
        stored_like(&db, "ro") > 0,
        "what the queue held was written"
    );
    assert_eq!(beacon(&p, "after"), 204);
    p.flush();
    assert!(stored(&db, "after"), "writing did not resume");
    assert!(stored(&db, "earlier"), "the same file, not a new one");
    assert_eq!(metric(&p, "smproxy_store_write_failing"), 0);
    page_is_injected(&p);
}
