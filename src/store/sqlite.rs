//! The embedded store: one SQLite file, zero set-up, opened with versioned migrations.
//!
//! # Schema
//!
//! As it is after all migrations; comments say which migration added what. A file is migrated
//! forward on open, each migration in its own transaction (see [`SqliteStore::open`]).
//!
//! ```sql
//! -- Which migrations this file has had; re-opening applies only the missing ones.
//! CREATE TABLE schema_migrations (
//!     version    INTEGER PRIMARY KEY,
//!     applied_at INTEGER NOT NULL            -- ms since the Unix epoch
//! );
//!
//! -- (1) One row per beacon. Columns mirror `store::Event`; kinds are text
//! -- ('pageview', 'engagement', 'identify', 'custom', 'outbound_click', 'form').
//! CREATE TABLE events (
//!     id              INTEGER PRIMARY KEY,
//!     kind            TEXT    NOT NULL,
//!     ts_ms           INTEGER NOT NULL,
//!     site            TEXT    NOT NULL,
//!     visitor_id      TEXT,                  -- smuuid
//!     contact_id      TEXT,                  -- also filled later by link_visitor
//!     smids           TEXT,
//!     session_id      TEXT,                  -- assigned since (2), see Store::insert_batch
//!     url             TEXT    NOT NULL,
//!     path            TEXT    NOT NULL,
//!     title           TEXT,
//!     referrer        TEXT,
//!     utm_source      TEXT,
//!     utm_medium      TEXT,
//!     utm_campaign    TEXT,
//!     screen          TEXT,
//!     language        TEXT,
//!     user_agent      TEXT,
//!     is_bot          INTEGER NOT NULL DEFAULT 0,
//!     ip_truncated    TEXT,
//!     company         TEXT,
//!     engaged_ms      INTEGER,
//!     name            TEXT,                  -- custom event name
//!     props_json      TEXT,
//!     identify_source TEXT,
//!     browser         TEXT,                  -- (3) parsed from user_agent on receipt
//!     os              TEXT,                  -- (3)
//!     device          TEXT                   -- (3) pc, smartphone, tablet, crawler, ...
//! );
//! -- (3) Reports (measured with benches/analytics.rs; (1)'s events_site_ts is dropped, this
//! -- first index replaces it):
//! CREATE INDEX events_site_bot_ts      ON events (site, is_bot, ts_ms);       -- one site, any
//! --     kind, a period (stats, time series, companies); install status per site
//! CREATE INDEX events_site_bot_kind_ts ON events (site, is_bot, kind, ts_ms); -- one site's
//! --     page views in a period (breakdowns, bounce, entry and exit pages)
//! CREATE INDEX events_ts               ON events (ts_ms);    -- all sites, a period; retention
//! -- Look-ups of one id or company. (1) created events_visitor ON events (visitor_id) and
//! -- events_contact, (3) the others, over every event; (6) made them partial: the events
//! -- without a value (most events have no contact, no company, and no visitor without cookie
//! -- consent) get no entry. (7) replaced events_visitor with events_visitor_ts.
//! CREATE INDEX events_visitor_ts ON events (visitor_id, ts_ms) WHERE visitor_id IS NOT NULL;
//! --     linking, visitor profiles, a visitor's latest event (its current session)
//! CREATE INDEX events_contact    ON events (contact_id)     WHERE contact_id IS NOT NULL;
//! --     contact profiles
//! CREATE INDEX events_smids      ON events (smids)          WHERE smids IS NOT NULL;
//! --     a contact's cross-site events
//! CREATE INDEX events_company_ts ON events (company, ts_ms) WHERE company IS NOT NULL;
//! --     company cards
//! -- (2) created events_session ON events (session_id); (5) dropped it: no query looks
//! -- events up by session, and it cost an index page written per event.
//!
//! -- (1) Identified people. (2) rebuilt the table to make `email` nullable: a contact known
//! -- only by the vendor's id (mailing link, personal link) has no email. UNIQUE still holds
//! -- for emails; any number of rows may have NULL.
//! CREATE TABLE contacts (
//!     id         TEXT PRIMARY KEY,           -- UUID v4 (ours, or the vendor's)
//!     email      TEXT UNIQUE,                -- normalized (trimmed, lower-case); NULL since (2)
//!     first_seen INTEGER NOT NULL,
//!     last_seen  INTEGER NOT NULL
//! );
//!
//! -- (1) Which contact an anonymous visitor turned out to be (latest link wins).
//! CREATE TABLE visitor_contacts (
//!     visitor_id TEXT PRIMARY KEY,
//!     contact_id TEXT NOT NULL,
//!     linked_at  INTEGER NOT NULL
//! );
//! CREATE INDEX visitor_contacts_contact ON visitor_contacts (contact_id);
//!
//! -- (1) Companies seen in events (B2B profiles).
//! CREATE TABLE companies (
//!     id         INTEGER PRIMARY KEY,
//!     name       TEXT    NOT NULL UNIQUE,
//!     first_seen INTEGER NOT NULL,
//!     last_seen  INTEGER NOT NULL
//! );
//!
//! -- (2) created visitor_sessions (visitor_id, session_id, last_ts_ms), each visitor's current
//! -- session; (7) dropped it: the session of a visitor's latest event is its current one.
//! ```
//!
//! Events stored before migration 2 keep a NULL `session_id`; a visitor whose latest event is
//! one of them starts a new session with its next event. Events stored before migration 3
//! keep NULL `browser`, `os` and `device`.
//!
//! The file runs in WAL mode with `synchronous=NORMAL`: readers (the dashboard) never block the
//! writer, and a power cut can lose at most the last few committed batches but never corrupts
//! the file, which is the right trade for analytics events.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior, MAIN_DB};

use super::sessions::{self, Latest};
use super::sqlite_reopen::{self, Reopen};
use super::{normalize_email, ContactId, Event, EventKind, Store, StoreError};

/// How long a statement waits for another connection's lock (the dashboard reading, a second
/// process on the same file) before failing with SQLITE_BUSY; the writer retries after that.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations, in order. Append only: a released migration is never edited, because
/// files in the field already ran it. Each runs in its own transaction with its version row.
/// Version 4 exists only in PostgreSQL (see `postgres.rs`): versions are shared between the
/// backends, so a migration has the same number in both.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, MIGRATION_1),
    (2, MIGRATION_2),
    (3, MIGRATION_3),
    (5, MIGRATION_5),
    (6, MIGRATION_6),
    (7, MIGRATION_7),
];

const MIGRATION_1: &str = "
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    ts_ms           INTEGER NOT NULL,
    site            TEXT    NOT NULL,
    visitor_id      TEXT,
    contact_id      TEXT,
    smids           TEXT,
    session_id      TEXT,
    url             TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    title           TEXT,
    referrer        TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    screen          TEXT,
    language        TEXT,
    user_agent      TEXT,
    is_bot          INTEGER NOT NULL DEFAULT 0,
    ip_truncated    TEXT,
    company         TEXT,
    engaged_ms      INTEGER,
    name            TEXT,
    props_json      TEXT,
    identify_source TEXT
);
CREATE INDEX events_site_ts ON events (site, ts_ms);
CREATE INDEX events_visitor ON events (visitor_id);
CREATE INDEX events_contact ON events (contact_id);

CREATE TABLE contacts (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);

CREATE TABLE visitor_contacts (
    visitor_id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL,
    linked_at  INTEGER NOT NULL
);
CREATE INDEX visitor_contacts_contact ON visitor_contacts (contact_id);

CREATE TABLE companies (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
";

/// Contacts known only by id, and sessions.
///
/// SQLite cannot drop a NOT NULL constraint, so `contacts` is rebuilt (create the new table,
/// copy, drop the old one, rename). It has no indexes of its own beyond those of its PRIMARY KEY
/// and UNIQUE constraints, which the new definition recreates, and no table, view or trigger
/// refers to it, so nothing else needs rebuilding (and `foreign_keys`, which cannot be switched
/// inside the migration's transaction, does not matter).
const MIGRATION_2: &str = "
CREATE TABLE contacts_new (
    id         TEXT PRIMARY KEY,
    email      TEXT UNIQUE,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
INSERT INTO contacts_new (id, email, first_seen, last_seen)
    SELECT id, email, first_seen, last_seen FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;

CREATE TABLE visitor_sessions (
    visitor_id TEXT PRIMARY KEY,
    session_id TEXT    NOT NULL,
    last_ts_ms INTEGER NOT NULL
);
CREATE INDEX events_session ON events (session_id);
";

/// User-agent details for the reports, and the indexes the reports need.
///
/// Events stored before it keep NULL `browser`, `os` and `device` (the raw `user_agent` is
/// still there). The indexes were chosen by measuring the report queries over one million
/// events (`benches/analytics.rs`, 30-day ranges); the schema at the top of this file says
/// what each one serves. `events_site_ts` gives way to the same index with `is_bot` after
/// `site`: every report filters on both, and install status counts a site's real events from
/// the index alone.
const MIGRATION_3: &str = "
ALTER TABLE events ADD COLUMN browser TEXT;
ALTER TABLE events ADD COLUMN os TEXT;
ALTER TABLE events ADD COLUMN device TEXT;

DROP INDEX events_site_ts;
CREATE INDEX events_site_bot_ts      ON events (site, is_bot, ts_ms);
CREATE INDEX events_site_bot_kind_ts ON events (site, is_bot, kind, ts_ms);
CREATE INDEX events_ts               ON events (ts_ms);
CREATE INDEX events_smids            ON events (smids);
CREATE INDEX events_company_ts       ON events (company, ts_ms);
";

/// Fewer pages written per event: `events_session` goes. No report looks events up by
/// session (they group the events of a period by it, and the period's index finds those rows);
/// every event added an entry to it, one more index page written per event in the beacon
/// benchmark. The same migration in PostgreSQL.
const MIGRATION_5: &str = "DROP INDEX IF EXISTS events_session;";

/// Fewer index entries per event: the indexes on columns that are empty on most events
/// (`visitor_id` without cookie consent, `contact_id` and `smids` for anonymous visitors,
/// `company` without an IP-to-company match) leave those events out, so an anonymous page view
/// no longer inserts an entry for nothing into each of them. Every query that used them looks
/// up a value (`col = ?`, `col IN (...)`), which implies `col IS NOT NULL`, so SQLite still
/// uses them (checked with EXPLAIN QUERY PLAN in `sqlite_reports`' tests); the look-ups of
/// `contact_id IS NULL` never used `events_contact` (see `THEIR_EVENTS` there). The same
/// migration in PostgreSQL.
const MIGRATION_6: &str = "
DROP INDEX events_visitor;
DROP INDEX events_contact;
DROP INDEX events_smids;
DROP INDEX events_company_ts;
CREATE INDEX events_visitor    ON events (visitor_id)     WHERE visitor_id IS NOT NULL;
CREATE INDEX events_contact    ON events (contact_id)     WHERE contact_id IS NOT NULL;
CREATE INDEX events_smids      ON events (smids)          WHERE smids IS NOT NULL;
CREATE INDEX events_company_ts ON events (company, ts_ms) WHERE company IS NOT NULL;
";

/// No session table: a visitor's current session is the session of its latest event (see
/// `store::sessions`), found through the visitor index, which gains `ts_ms` for that (the row
/// id that SQLite appends to every index entry orders equal times). `visitor_sessions` cost a
/// page written per event, at a random place for every new visitor. The same migration in
/// PostgreSQL.
const MIGRATION_7: &str = "
DROP INDEX events_visitor;
CREATE INDEX events_visitor_ts ON events (visitor_id, ts_ms) WHERE visitor_id IS NOT NULL;
DROP TABLE visitor_sessions;
";

/// A visitor without a contact on the event inherits its linked contact, so events sent after
/// identification by a browser that lost the `smclient` cookie still land on the profile.
const INSERT_EVENT: &str = "
INSERT INTO events (
    kind, ts_ms, site, visitor_id, contact_id, smids, session_id, url, path, title, referrer,
    utm_source, utm_medium, utm_campaign, screen, language, user_agent, is_bot, ip_truncated,
    company, engaged_ms, name, props_json, identify_source, browser, os, device
) VALUES (
    ?1, ?2, ?3, ?4,
    COALESCE(?5, (SELECT contact_id FROM visitor_contacts WHERE visitor_id = ?4)),
    ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
    ?25, ?26, ?27
)";

/// [`INSERT_EVENT`] for the first event of a visitor created by its own beacon
/// ([`Event::new_visitor`]): no link to a contact can exist yet, so the lookup is skipped.
const INSERT_NEW_VISITOR_EVENT: &str = "
INSERT INTO events (
    kind, ts_ms, site, visitor_id, contact_id, smids, session_id, url, path, title, referrer,
    utm_source, utm_medium, utm_campaign, screen, language, user_agent, is_bot, ip_truncated,
    company, engaged_ms, name, props_json, identify_source, browser, os, device
) VALUES (
    ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
    ?21, ?22, ?23, ?24, ?25, ?26, ?27
)";

const UPSERT_COMPANY: &str = "
INSERT INTO companies (name, first_seen, last_seen) VALUES (?1, ?2, ?2)
ON CONFLICT (name) DO UPDATE SET
    first_seen = min(first_seen, excluded.first_seen),
    last_seen  = max(last_seen, excluded.last_seen)";

/// An event's contact: created without an email if the id is new, else `last_seen` moves.
/// `first_seen` takes the minimum so a contact created by a batch whose events are out of
/// order still starts at its earliest event.
const UPSERT_EVENT_CONTACT: &str = "
INSERT INTO contacts (id, email, first_seen, last_seen) VALUES (?1, NULL, ?2, ?2)
ON CONFLICT (id) DO UPDATE SET
    first_seen = min(first_seen, excluded.first_seen),
    last_seen  = max(last_seen, excluded.last_seen)";

/// `link_visitor`'s contact: created without an email if new, otherwise left alone.
const ENSURE_CONTACT: &str =
    "INSERT OR IGNORE INTO contacts (id, email, first_seen, last_seen) VALUES (?1, NULL, ?2, ?2)";

/// A visitor's latest event (see `store::sessions`): the last entry of the visitor in
/// `events_visitor_ts`, whose order ends with the row id, so the last stored of equal times.
const SELECT_LATEST_EVENT: &str = "
SELECT session_id, ts_ms FROM events WHERE visitor_id = ?1 ORDER BY ts_ms DESC, id DESC LIMIT 1";

/// The SQLite [`Store`]. One writing connection behind a mutex: SQLite allows one writer at a
/// time anyway, and the only frequent caller is the single writer thread.
///
/// Reports ([`super::Reports`]) read through separate read-only connections when the file is
/// in WAL mode, so a slow dashboard query never holds up the event writer (in WAL mode
/// readers and the writer do not block each other; each read sees the last commit before it
/// started). Those connections are opened on demand and a few (`IDLE_READERS`) are kept for
/// reuse, so concurrent dashboard requests run in parallel. An in-memory store, or a file
/// that refused WAL mode (where a reader would block commits anyway), reads through the
/// writing connection instead.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The file, to reopen the writing connection when it turns out read-only (see
    /// [`sqlite_reopen`]); `None` in memory.
    path: Option<PathBuf>,
    /// Whether and when to reopen; locked only while `conn` is.
    reopen: Mutex<Reopen>,
    /// `synchronous=FULL` was asked for, so a reopened connection gets it too.
    sync_full: AtomicBool,
    /// The file to open read-only connections on; `None` to read through `conn`.
    reader_path: Option<PathBuf>,
    /// Idle read-only connections (with their prepared statements cached).
    readers: Mutex<Vec<Connection>>,
}

/// Read-only connections kept open between reports; more are opened when more reports run
/// at once, and closed after.
const IDLE_READERS: usize = 4;

/// Prepared statements kept per connection: the reports use a few dozen distinct queries.
const STATEMENT_CACHE: usize = 64;

/// Page cache of the writing connection, in KiB (SQLite's default is 2 MiB). Every event
/// inserts into the indexes on visitor, session and cross-site ids, whose keys are random, so
/// each event touches a different leaf page of each: with the default cache those pages are
/// read back from the file on almost every insert (a third of the writer's time in the beacon
/// benchmark). 32 MiB holds the interior pages and the recently touched leaves of a busy
/// file; it is memory only when used.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// WAL pages after which a commit copies the log back into the file (SQLite's default is
/// 1,000, 4 MiB). A batch of a few hundred events already writes more than that, so the
/// default checkpoints after every batch, each time copying and syncing every page again; a
/// page changed by several batches between two checkpoints is copied once. 8,192 pages is a
/// 32 MiB log at most between checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8192;

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory, sets WAL mode,
    /// `synchronous=NORMAL` and a busy timeout, then applies the migrations it has not had yet.
    ///
    /// An existing file that cannot be written (a read-only mount, another owner) does not
    /// stop the proxy: the store opens without a writing connection, every write fails (so
    /// events queue, then are dropped and counted) and the file is reopened with a backoff
    /// until it is writable (see [`sqlite_reopen`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        match Self::connect(path)
            .and_then(|(conn, wal)| Self::setup(conn, wal.then(|| path.to_path_buf())))
        {
            Ok(mut store) => {
                store.path = Some(path.to_path_buf());
                Ok(store)
            }
            Err(e) if sqlite_reopen::is_read_only_fault(&e) && path.is_file() => {
                tracing::error!(path = %path.display(), error = %e,
                    "the store's file cannot be written; serving without storing events until it can");
                Self::read_only_stand_in(path)
            }
            Err(e) => Err(e),
        }
    }

    /// A store whose writing connection is an empty in-memory database that refuses writes,
    /// marked for reopening the real file. Reports read the file itself (and fail while it
    /// cannot be opened).
    fn read_only_stand_in(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::setup(Connection::open_in_memory()?, Some(path.to_path_buf()))?;
        store.lock().pragma_update(None, "query_only", true)?;
        store.path = Some(path.to_path_buf());
        store.reopen = Mutex::new(Reopen::new(true));
        Ok(store)
    }

    /// Like [`SqliteStore::open`], but applies migrations only up to `version`: for tests of
    /// upgrading a file made by an older release. Only methods whose SQL that version already
    /// supports work on the result.
    #[doc(hidden)]
    pub fn open_at_version(path: impl AsRef<Path>, version: u32) -> Result<Self, StoreError> {
        let (conn, wal) = Self::connect(path.as_ref())?;
        Self::setup_to(conn, version, wal.then(|| path.as_ref().to_path_buf()))
    }

    /// The connection and whether it runs in WAL mode.
    fn connect(path: &Path) -> Result<(Connection, bool), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // journal_mode answers with the mode actually set; a file on a filesystem without
        // shared memory can refuse WAL, and then the default rollback journal still works.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        let wal = mode.eq_ignore_ascii_case("wal");
        if !wal {
            tracing::warn!(path = %path.display(), %mode, "SQLite refused WAL mode; continuing");
        }
        Ok((conn, wal))
    }

    /// A private in-memory database (tests, `smproxy demo` without a file).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    fn setup(conn: Connection, reader_path: Option<PathBuf>) -> Result<Self, StoreError> {
        Self::setup_to(conn, Self::latest_schema_version(), reader_path)
    }

    fn setup_to(
        mut conn: Connection,
        target: u32,
        reader_path: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        configure(&mut conn, target, false)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: None,
            reopen: Mutex::new(Reopen::new(false)),
            sync_full: AtomicBool::new(false),
            reader_path,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// `synchronous=FULL`: every commit is synced to disk before it returns, so a committed
    /// batch survives a power cut too, not only a crash of the process. For
    /// `store.durability: strict`, where a commit is a promise made to the visitor; group
    /// commit keeps the cost at one sync per batch.
    pub fn sync_every_commit(&self) -> Result<(), StoreError> {
        self.sync_full.store(true, Ordering::Relaxed);
        self.lock().pragma_update(None, "synchronous", "FULL")?;
        Ok(())
    }

    /// The highest migration applied to this file.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(current_version(&self.lock())?)
    }

    /// The highest migration this build knows.
    pub fn latest_schema_version() -> u32 {
        MIGRATIONS.last().map_or(0, |(v, _)| *v)
    }

    /// The writing connection, reopened first if it cannot write and a reopen is due.
    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done work: an open rusqlite
        // Transaction rolls back when dropped during unwinding, so the connection is usable.
        let mut conn = lock_ignoring_poison(&self.conn);
        self.recover(&mut conn);
        conn
    }

    /// Whether the writing connection cannot write now (it is waiting to be reopened).
    pub fn is_read_only(&self) -> bool {
        lock_ignoring_poison(&self.reopen).is_stale()
    }

    /// Replaces a writing connection that cannot write (read-only, or the stand-in of
    /// [`SqliteStore::open`]) by a new one on the file, if the backoff allows. A failed attempt
    /// leaves the old connection, whose writes keep failing, and waits longer next time.
    fn recover(&self, conn: &mut Connection) {
        let Some(path) = &self.path else {
            return; // in memory: nothing to reopen, and reopening would lose everything
        };
        let mut reopen = lock_ignoring_poison(&self.reopen);
        if !reopen.is_stale() && conn.is_readonly(MAIN_DB).unwrap_or(false) {
            tracing::warn!(path = %path.display(), "the store's writing connection is read-only");
            reopen.mark_stale();
        }
        let now = Instant::now();
        if !reopen.due(now) {
            return;
        }
        match self.reopen_writer(path) {
            Ok(fresh) => {
                *conn = fresh;
                reopen.succeeded();
                tracing::info!(path = %path.display(), "the store's file is writable again");
            }
            Err(e) => {
                let retry_in = reopen.failed(now);
                tracing::warn!(path = %path.display(), error = %e, ?retry_in,
                    "the store's file is still not writable");
            }
        }
    }

    /// A new writing connection on `path`, set up as at open (migrations included, in case
    /// the store started before it could apply them); an error if it still cannot write.
    fn reopen_writer(&self, path: &Path) -> Result<Connection, StoreError> {
        let (mut conn, _wal) = Self::connect(path)?;
        configure(
            &mut conn,
            Self::latest_schema_version(),
            self.sync_full.load(Ordering::Relaxed),
        )?;
        if conn.is_readonly(MAIN_DB)? {
            return Err(sqlite_reopen::still_read_only());
        }
        Ok(conn)
    }

    /// A connection for reports: an idle read-only one, a new one, or the writing connection
    /// when the store has no separate readers (see [`SqliteStore`]).
    pub(super) fn reader(&self) -> Result<ReadConn<'_>, StoreError> {
        let Some(path) = &self.reader_path else {
            return Ok(ReadConn::Shared(self.lock()));
        };
        if let Some(conn) = lock_ignoring_poison(&self.readers).pop() {
            return Ok(ReadConn::Pooled(self, Some(conn)));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(ReadConn::Pooled(self, Some(conn)))
    }
}

/// The writing connection's settings, then the migrations up to `target`.
fn configure(conn: &mut Connection, target: u32, sync_full: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let sync = if sync_full { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync)?;
    // A negative cache_size is in KiB rather than pages.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(conn, target)
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection lent to a report; a pooled one goes back to the idle list when dropped.
pub(super) enum ReadConn<'a> {
    Pooled(&'a SqliteStore, Option<Connection>),
    Shared(MutexGuard<'a, Connection>),
}

impl Deref for ReadConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            ReadConn::Pooled(_, conn) => conn.as_ref().expect("present until dropped"),
            ReadConn::Shared(guard) => guard,
        }
    }
}

impl DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            ReadConn::Pooled(_, conn) => conn.as_mut().expect("present until dropped"),
            ReadConn::Shared(guard) => guard,
        }
    }
}

impl Drop for ReadConn<'_> {
    fn drop(&mut self) {
        if let ReadConn::Pooled(store, conn) = self {
            // A connection dropped while a report unwinds may still be inside a read
            // transaction; closing it is simpler than checking.
            let Some(conn) = conn.take().filter(|c| c.is_autocommit()) else {
                return;
            };
            let mut idle = lock_ignoring_poison(&store.readers);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn current_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}

/// Applies the missing migrations up to `target`. `BEGIN IMMEDIATE` takes the write lock
/// before reading the version, so two processes opening a new file at once cannot both run
/// migration 1.
fn migrate(conn: &mut Connection, target: u32) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let supported = SqliteStore::latest_schema_version();
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= target) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = current_version(&tx)?;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        if found >= version {
            continue;
        }
        tx.execute_batch(sql)
            .and_then(|()| {
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, now_ms()],
                )
            })
            .map_err(|source| StoreError::Migration { version, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { version, source })?;
        tracing::info!(version, "applied store migration");
    }
    // Also covers a file with no pending migration but a newer version than we know.
    let found = current_version(conn)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(())
}

/// Attaches a visitor's anonymous events to a contact (through `events_visitor_ts`).
const ATTACH_EVENTS: &str =
    "UPDATE events SET contact_id = ?2 WHERE visitor_id = ?1 AND contact_id IS NULL";

/// Shared by `link_visitor` and identify events inside `insert_batch`, so both paths link the
/// same way within whatever transaction the caller holds.
fn link(
    conn: &Connection,
    visitor_id: &str,
    contact_id: &str,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "INSERT INTO visitor_contacts (visitor_id, contact_id, linked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (visitor_id) DO UPDATE SET
             contact_id = excluded.contact_id, linked_at = excluded.linked_at",
    )?
    .execute(params![visitor_id, contact_id, now_ms])?;
    let attached = conn
        .prepare_cached(ATTACH_EVENTS)?
        .execute(params![visitor_id, contact_id])?;
    Ok(attached as u64)
}

/// Assigns a session to each event of the batch that has a visitor but no session (see
/// `store::sessions`), reading the visitors' latest events within the caller's transaction.
/// Returns the assigned id per event index. A new visitor's look-up is skipped there (a
/// B-tree descent at a random place per new visitor, most of the beacons of first visits).
fn assign_sessions(conn: &Connection, events: &[Event]) -> rusqlite::Result<Vec<Option<String>>> {
    let mut select = conn.prepare_cached(SELECT_LATEST_EVENT)?;
    sessions::assign(events, |visitor| {
        select
            .query_row([visitor], |r| {
                Ok(Latest {
                    session_id: r.get(0)?,
                    ts_ms: r.get(1)?,
                })
            })
            .optional()
    })
}

impl Store for SqliteStore {
    fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let sessions = assign_sessions(&tx, events)?;
            let mut insert_linked = tx.prepare_cached(INSERT_EVENT)?;
            let mut insert_new = tx.prepare_cached(INSERT_NEW_VISITOR_EVENT)?;
            let mut upsert_company = tx.prepare_cached(UPSERT_COMPANY)?;
            let mut upsert_contact = tx.prepare_cached(UPSERT_EVENT_CONTACT)?;
            for (e, assigned) in events.iter().zip(&sessions) {
                let insert = if e.new_visitor {
                    &mut insert_new
                } else {
                    &mut insert_linked
                };
                insert.execute(params![
                    e.kind.as_str(),
                    e.ts_ms,
                    e.site,
                    e.visitor_id,
                    e.contact_id,
                    e.smids,
                    e.session_id.as_deref().or(assigned.as_deref()),
                    e.url,
                    e.path,
                    e.title,
                    e.referrer,
                    e.utm_source,
                    e.utm_medium,
                    e.utm_campaign,
                    e.screen,
                    e.language,
                    e.user_agent,
                    e.is_bot,
                    e.ip_truncated,
                    e.company,
                    e.engaged_ms,
                    e.name,
                    e.props_json,
                    e.identify_source,
                    e.browser,
                    e.os,
                    e.device,
                ])?;
                if let Some(company) = &e.company {
                    upsert_company.execute(params![company, e.ts_ms])?;
                }
                if let Some(contact) = &e.contact_id {
                    upsert_contact.execute(params![contact, e.ts_ms])?;
                    if let (EventKind::Identify, Some(visitor)) = (e.kind, &e.visitor_id) {
                        link(&tx, visitor, contact, e.ts_ms)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(events.len())
    }

    fn upsert_contact_by_email(&self, email: &str, now_ms: i64) -> Result<ContactId, StoreError> {
        let email = normalize_email(email).ok_or(StoreError::InvalidEmail)?;
        let conn = self.lock();
        // One statement, so concurrent upserts of the same email (two proxies on one file)
        // cannot both insert; RETURNING gives the existing id on conflict.
        let id: String = conn
            .prepare_cached(
                "INSERT INTO contacts (id, email, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (email) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)
                 RETURNING id",
            )?
            .query_row(
                params![uuid::Uuid::new_v4().to_string(), email, now_ms],
                |r| r.get(0),
            )?;
        Ok(ContactId(id))
    }

    fn link_visitor(
        &self,
        visitor_id: &str,
        contact_id: &ContactId,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(ENSURE_CONTACT)?
            .execute(params![contact_id.as_str(), now_ms])?;
        let attached = link(&tx, visitor_id, contact_id.as_str(), now_ms)?;
        tx.commit()?;
        Ok(attached)
    }

    fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n: i64 = match site {
            Some(site) => conn
                .prepare_cached("SELECT COUNT(*) FROM events WHERE site = ?1")?
                .query_row([site], |r| r.get(0))?,
            None => conn
                .prepare_cached("SELECT COUNT(*) FROM events")?
                .query_row([], |r| r.get(0))?,
        };
        Ok(n.max(0) as u64)
    }

    fn ping(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        // The stand-in connection answers, but the store is not ready while it cannot write.
        if self.is_read_only() {
            return Err(sqlite_reopen::still_read_only());
        }
        let one: Option<i64> = conn.query_row("SELECT 1", [], |r| r.get(0)).optional()?;
        match one {
            Some(1) => Ok(()),
            _ => Err(StoreError::Unavailable("SELECT 1 returned no row".into())),
        }
    }

    fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        // Uses events_ts, which the reports over all sites need anyway.
        let deleted = self
            .lock()
            .execute("DELETE FROM events WHERE ts_ms < ?1", [cutoff_ms])?;
        Ok(deleted as u64)
    }
}

/// SQLite's plan for `sql` (parameters left unbound), one line per step.
#[cfg(test)]
pub(super) fn query_plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let mut rows = stmt.raw_query();
    let mut steps = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        steps.push(row.get::<_, String>(3).unwrap());
    }
    steps.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SESSION_IDLE_MS;

    fn pageview(visitor: Option<&str>, ts_ms: i64) -> Event {
        Event {
            visitor_id: visitor.map(str::to_owned),
            ..Event::new(
                EventKind::Pageview,
                ts_ms,
                "shop",
                "https://shop.example/",
                "/",
            )
        }
    }

    fn contact_of(store: &SqliteStore, ts_ms: i64) -> Option<String> {
        store
            .lock()
            .query_row(
                "SELECT contact_id FROM events WHERE ts_ms = ?1",
                [ts_ms],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn in_memory_migrates_to_latest() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            SqliteStore::latest_schema_version()
        );
        store.ping().unwrap();
        assert_eq!(store.count_events(None).unwrap(), 0);
    }

    #[test]
    fn identify_event_links_and_later_events_inherit() {
        let store = SqliteStore::open_in_memory().unwrap();
        let contact = store.upsert_contact_by_email("jan@firma.pl", 5).unwrap();
        let identify = Event {
            visitor_id: Some("v1".into()),
            contact_id: Some(contact.0.clone()),
            identify_source: Some("form".into()),
            ..Event::new(
                EventKind::Identify,
                20,
                "shop",
                "https://shop.example/f",
                "/f",
            )
        };
        let batch = [pageview(Some("v1"), 10), identify, pageview(Some("v1"), 30)];
        assert_eq!(store.insert_batch(&batch).unwrap(), 3);
        for ts in [10, 20, 30] {
            assert_eq!(contact_of(&store, ts).as_deref(), Some(contact.as_str()));
        }
        // A different visitor stays anonymous.
        store.insert_batch(&[pageview(Some("v2"), 40)]).unwrap();
        assert_eq!(contact_of(&store, 40), None);
    }

    #[test]
    fn link_keeps_events_of_another_contact() {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = store.upsert_contact_by_email("a@x.pl", 1).unwrap();
        let b = store.upsert_contact_by_email("b@x.pl", 1).unwrap();
        let mut e = pageview(Some("v"), 10);
        e.contact_id = Some(a.0.clone());
        store.insert_batch(&[e, pageview(Some("v"), 11)]).unwrap();
        assert_eq!(store.link_visitor("v", &b, 12).unwrap(), 1);
        assert_eq!(contact_of(&store, 10).as_deref(), Some(a.as_str()));
        assert_eq!(contact_of(&store, 11).as_deref(), Some(b.as_str()));
    }

    #[test]
    fn companies_and_contact_last_seen_follow_events() {
        let store = SqliteStore::open_in_memory().unwrap();
        let c = store.upsert_contact_by_email("a@x.pl", 1).unwrap();
        let mut e = pageview(None, 50);
        e.company = Some("ACME".into());
        e.contact_id = Some(c.0.clone());
        let mut older = e.clone();
        older.ts_ms = 7;
        store.insert_batch(&[e, older]).unwrap();
        let conn = store.lock();
        let (first, last): (i64, i64) = conn
            .query_row(
                "SELECT first_seen, last_seen FROM companies WHERE name = 'ACME'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((first, last), (7, 50));
        let seen: i64 = conn
            .query_row(
                "SELECT last_seen FROM contacts WHERE id = ?1",
                [&c.0],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seen, 50);
    }

    fn session_of(store: &SqliteStore, ts_ms: i64) -> Option<String> {
        store
            .lock()
            .query_row(
                "SELECT session_id FROM events WHERE ts_ms = ?1",
                [ts_ms],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn in_memory_store_assigns_sessions_and_accepts_contacts_without_email() {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut e = pageview(Some("v"), 1);
        e.contact_id = Some("vendor".into());
        store
            .insert_batch(&[e, pageview(Some("v"), 2), pageview(None, 3)])
            .unwrap();
        assert!(session_of(&store, 1).is_some());
        assert_eq!(session_of(&store, 1), session_of(&store, 2));
        assert_eq!(session_of(&store, 3), None);
        let email: Option<String> = store
            .lock()
            .query_row("SELECT email FROM contacts WHERE id = 'vendor'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(email, None);
    }

    #[test]
    fn a_new_visitors_first_event_starts_the_session_its_later_events_continue() {
        let store = SqliteStore::open_in_memory().unwrap();
        let contact = store.upsert_contact_by_email("nowy@firma.pl", 1).unwrap();
        // The first beacon of a new visitor: a form with an address (identify, then form).
        let mut identify = pageview(Some("v"), 10);
        identify.kind = EventKind::Identify;
        identify.contact_id = Some(contact.0.clone());
        identify.new_visitor = true;
        let mut other = pageview(Some("w"), 11);
        other.new_visitor = true;
        store.insert_batch(&[identify, other]).unwrap();
        // Later batches: the session goes on, and the link found at the first event holds.
        store.insert_batch(&[pageview(Some("v"), 20)]).unwrap();
        let later = 20 + SESSION_IDLE_MS + 1;
        store
            .insert_batch(&[pageview(Some("v"), later), pageview(Some("w"), 30)])
            .unwrap();
        assert!(session_of(&store, 10).is_some());
        assert_eq!(session_of(&store, 10), session_of(&store, 20));
        assert_ne!(session_of(&store, 10), session_of(&store, later));
        assert_eq!(session_of(&store, 11), session_of(&store, 30));
        assert_ne!(session_of(&store, 10), session_of(&store, 11));
        assert_eq!(contact_of(&store, 20).as_deref(), Some(contact.as_str()));
        assert_eq!(contact_of(&store, 11), None);
        // Each visitor's latest event is where the next one continues.
        store
            .insert_batch(&[pageview(Some("v"), later + 1), pageview(Some("w"), 31)])
            .unwrap();
        assert_eq!(session_of(&store, later + 1), session_of(&store, later));
        assert_eq!(session_of(&store, 31), session_of(&store, 30));
    }

    #[test]
    fn session_assignment_survives_extreme_timestamps() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .insert_batch(&[pageview(Some("v"), i64::MAX), pageview(Some("v"), i64::MIN)])
            .unwrap();
        // In time order: MIN starts a session, MAX is far later and starts another.
        assert_ne!(session_of(&store, i64::MIN), session_of(&store, i64::MAX));
        // A later batch with an event far older than the latest joins the current session.
        store.insert_batch(&[pageview(Some("v"), 0)]).unwrap();
        assert_eq!(session_of(&store, 0), session_of(&store, i64::MAX));
    }

    /// A report takes a read-only connection of its own: it runs while the writing
    /// connection is busy, and the connection goes back to a bounded idle list.
    #[test]
    fn reports_do_not_wait_for_the_writing_connection() {
        use crate::store::reports::{Filter, Reports};
        use std::sync::mpsc;

        let dir = std::env::temp_dir().join(format!(
            "smproxy-sqlite-readers-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let store = SqliteStore::open(dir.join("events.db")).unwrap();
        store.insert_batch(&[pageview(Some("v"), 10)]).unwrap();
        let f = Filter {
            site: None,
            from_ms: 0,
            to_ms: 100,
        };
        std::thread::scope(|s| {
            // Inside the scope, so a failing assertion releases it before the scope joins.
            let writer = store.lock();
            let (tx, rx) = mpsc::channel();
            for _ in 0..IDLE_READERS + 2 {
                let tx = tx.clone();
                let (store, f) = (&store, &f);
                s.spawn(move || tx.send(store.stats(f).map(|s| s.pageviews)));
            }
            for _ in 0..IDLE_READERS + 2 {
                let got = rx.recv_timeout(Duration::from_secs(20));
                assert_eq!(got.expect("a report waited for the writer").unwrap(), 1);
            }
            drop(writer);
        });
        let idle = store.readers.lock().unwrap().len();
        assert!((1..=IDLE_READERS).contains(&idle), "{idle}");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_in_memory_store_reports_through_its_one_connection() {
        use crate::store::reports::{Filter, Reports};
        let store = SqliteStore::open_in_memory().unwrap();
        store.insert_batch(&[pageview(Some("v"), 10)]).unwrap();
        let f = Filter {
            site: None,
            from_ms: 0,
            to_ms: 100,
        };
        assert_eq!(store.stats(&f).unwrap().visitors, 1);
        assert!(store.readers.lock().unwrap().is_empty());
    }

    /// A writing connection that cannot write (as one opened while the file was read-only
    /// stays) is replaced by a new connection on the file at the next write, which succeeds.
    #[test]
    fn a_read_only_writing_connection_is_reopened() {
        let dir = std::env::temp_dir().join(format!(
            "smproxy-sqlite-reopen-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let path = dir.join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        store.sync_every_commit().unwrap();
        store.insert_batch(&[pageview(Some("v"), 1)]).unwrap();
        let read_only = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY);
        *lock_ignoring_poison(&store.conn) = read_only.unwrap();

        store.insert_batch(&[pageview(Some("v"), 2)]).unwrap();
        assert!(!store.is_read_only());
        assert_eq!(store.count_events(None).unwrap(), 2);
        // The reopened connection keeps the settings asked for before.
        let sync: i64 = store
            .lock()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_in_memory_store_is_never_reopened() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.insert_batch(&[pageview(Some("v"), 1)]).unwrap();
        store
            .lock()
            .pragma_update(None, "query_only", true)
            .unwrap();
        assert!(store.insert_batch(&[pageview(Some("v"), 2)]).is_err());
        store
            .lock()
            .pragma_update(None, "query_only", false)
            .unwrap();
        assert_eq!(store.count_events(None).unwrap(), 1, "the same database");
    }

    /// Linking and the session look-up find the visitor's events through the visitor index
    /// (which leaves out events without a visitor), the latest one without sorting.
    #[test]
    fn visitor_look_ups_use_the_visitor_index() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = store.lock();
        let plan = query_plan(&conn, ATTACH_EVENTS);
        assert!(plan.contains("INDEX events_visitor_ts "), "{plan}");
        let plan = query_plan(&conn, SELECT_LATEST_EVENT);
        assert!(plan.contains("INDEX events_visitor_ts "), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn rejects_invalid_email() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert!(matches!(
            store.upsert_contact_by_email("not an email", 1),
            Err(StoreError::InvalidEmail)
        ));
    }
}
