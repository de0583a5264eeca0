//! Where events and contacts are kept: the [`Store`] contract that every backend (the embedded
//! SQLite file now, PostgreSQL for a fleet later) implements, and the background writer that
//! feeds it without the request path ever waiting on I/O.
//!
//! Reading order: [`event`] (what is stored), this file (the contract), [`sqlite`] (the schema
//! and the default backend), [`writer`] (the bounded queue and the batching thread),
//! [`postgres`] (the same contract on a database shared by a fleet of instances).

pub mod event;
pub mod postgres;
mod postgres_conn;
mod postgres_reports;
pub mod reports;
mod sessions;
pub mod sqlite;
mod sqlite_reopen;
mod sqlite_reports;
pub mod writer;

use std::fmt;
use std::path::PathBuf;

pub use event::{Event, EventKind, UnknownEventKind};
pub use postgres::PostgresStore;
pub use reports::Reports;
pub use sqlite::SqliteStore;
pub use writer::{Ack, AckError, EventQueue, EventWriter, WriterConfig, WriterStats};

/// How long a visitor may be inactive before their next event starts a new session: 30 minutes,
/// the convention of web analytics. See [`Store::insert_batch`] for the whole rule.
pub const SESSION_IDLE_MS: i64 = 30 * 60 * 1000;

/// A contact's id: an opaque string, a UUID v4 created by the store for a new email or the
/// vendor's contact UUID carried by a mailing or personal link. A newtype so a contact id is
/// not confused with a visitor id, which is a string of the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactId(pub String);

impl ContactId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ContactId> for String {
    fn from(id: ContactId) -> String {
        id.0
    }
}

/// Why a store operation failed. Backend errors keep their source so logs say what the
/// database said; callers mostly only need "failed, retry later".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the directory for the store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema migration {version} failed: {source}")]
    Migration {
        version: u32,
        source: rusqlite::Error,
    },
    /// The file was migrated by a newer smproxy; refusing to run avoids writing rows the newer
    /// schema does not expect (downgrade after an upgrade).
    #[error("the store's schema version {found} is newer than this smproxy supports ({supported}); upgrade smproxy")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("not a valid email address")]
    InvalidEmail,
    /// A report request the store refuses, e.g. a time series of more buckets than
    /// [`reports::MAX_BUCKETS`].
    #[error("invalid report request: {0}")]
    InvalidRequest(String),
    /// A backend that is down or refusing work (network store, test doubles).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// What PostgreSQL (or the connection to it) said; never includes the password.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("schema migration {version} failed: {source}")]
    PostgresMigration {
        version: u32,
        source: ::postgres::Error,
    },
}

/// A place that keeps events and contacts.
///
/// Methods are synchronous because SQLite is; the [`EventWriter`] calls them from its own
/// thread, and async callers (admin API, `/readyz`) should use `tokio::task::spawn_blocking`.
/// Object-safe, so the process holds an `Arc<dyn Store>` chosen by configuration.
/// Timestamps are milliseconds since the Unix epoch.
pub trait Store: Send + Sync {
    /// Stores all `events` atomically (all or none, so the writer can retry a failed batch
    /// without duplicating rows) and returns how many were stored.
    ///
    /// Besides the rows, it keeps identity consistent within the same transaction:
    /// - an event without `contact_id` whose visitor is already linked gets that contact;
    /// - an event whose `contact_id` the store does not know yet creates that contact without
    ///   an email (`first_seen` = `last_seen` = the event's `ts_ms`): a mailing link or a signed
    ///   personal link identifies a contact by the vendor's id alone, and profiles must still
    ///   list every contact; a known contact's `last_seen` moves forward instead (and its
    ///   `first_seen` back, for an event older than it);
    /// - an [`EventKind::Identify`] event with both `visitor_id` and `contact_id` links the
    ///   visitor as [`Store::link_visitor`] does, so identification needs no extra call;
    /// - `company` is recorded in the companies table.
    ///
    /// It also assigns sessions, because the tracker sends events without one. Every backend
    /// implements the same rule (`store::sessions`), with no state but the stored events, so
    /// it survives restarts and holds for every proxy writing to the store. A visitor's
    /// *latest event* is its stored event with the greatest `ts_ms`, the last stored among
    /// equal times; its session is the visitor's current session:
    /// - an event that carries a `session_id` keeps it (only the API and imports send one,
    ///   beacons never); it still counts as the visitor's latest event when it is, so the
    ///   visitor's next events continue that session;
    /// - an event without `visitor_id` (no cookie consent) keeps `session_id` empty;
    /// - otherwise the event continues the session of the visitor's latest event, unless the
    ///   visitor has none, that event has no session (stored before sessions were assigned),
    ///   or the event is more than [`SESSION_IDLE_MS`] after it (`ts_ms - latest >
    ///   SESSION_IDLE_MS`); then it starts a new session with a fresh id (a UUID string in the
    ///   time-ordered v7 layout, see [`crate::identity::time_ordered_uuid`]). A late event,
    ///   older than the latest one, joins the current session and does not replace the latest;
    /// - within one batch, each visitor's events are taken in `ts_ms` order (a stable sort, so
    ///   equal times keep batch order), each as if the ones before it were stored, not in batch
    ///   order: beacons from several tabs or proxy threads reach the queue slightly out of
    ///   order, and a session must not split because of that. Rows are still stored in batch
    ///   order.
    ///
    /// Deleting events (retention, [`Reports::erase_contact`]) deletes the session state with
    /// them: a visitor whose events are all gone starts a new session.
    fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError>;

    /// Returns the contact with this email, creating it if new (and moving `last_seen` to
    /// `now_ms` if it existed). The email is normalized here with [`normalize_email`], so
    /// `"A@Example.com "` and `"a@example.com"` are one contact; invalid input is
    /// [`StoreError::InvalidEmail`].
    fn upsert_contact_by_email(&self, email: &str, now_ms: i64) -> Result<ContactId, StoreError>;

    /// Records that `visitor_id` is `contact_id` and attaches the visitor's earlier anonymous
    /// events (those with no contact yet) to the contact; returns how many events it attached.
    /// Events already attributed to another contact keep it: a shared computer must not merge
    /// two people's histories. A `contact_id` the store does not know yet creates that contact
    /// without an email, as in [`Store::insert_batch`] (`first_seen` = `last_seen` = `now_ms`);
    /// a known contact is left as it is.
    fn link_visitor(
        &self,
        visitor_id: &str,
        contact_id: &ContactId,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Number of stored events, for one site or all.
    fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError>;

    /// Cheap round trip proving the store answers (for `/readyz`).
    fn ping(&self) -> Result<(), StoreError>;

    /// Retention: deletes events with `ts_ms` strictly before `cutoff_ms`; returns how many.
    /// Contacts are kept: they are the customer's data, not traffic logs.
    fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}

/// The canonical form of an email address, or `None` if it is not one.
///
/// Trims whitespace and lower-cases the whole address. Lower-casing the local part is not what
/// RFC 5321 promises, but it is what every mail provider in practice does, and two contacts for
/// `Jan@x.pl` and `jan@x.pl` would be worse. Validation is deliberately basic (one `@`, non-empty
/// local part, a domain with a dot not at either end, no whitespace, at most 254 characters): the
/// goal is to reject junk from forms, not to be a full address parser.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 {
        return None;
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.contains('@') {
        return None;
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return None;
    }
    Some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_email_trims_and_lowercases() {
        assert_eq!(
            normalize_email("  A@Example.com \n").as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            normalize_email("jan.kowalski+news@sub.firma.pl").as_deref(),
            Some("jan.kowalski+news@sub.firma.pl")
        );
    }

    #[test]
    fn normalize_email_rejects_junk() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "a@.com",
            "a@example.",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert_eq!(normalize_email(&long), None);
        assert!(normalize_email(&long[1..]).is_some());
    }
}
