//! Where events and contacts are kept: the [`Store`] contract that every backend (the embedded
//! SQLite file now, PostgreSQL for a fleet later) implements, and the background writer that
//! feeds it without the request path ever waiting on I/O.
//!
//! Reading order: [`event`] (what is stored), this file (the contract), [`sqlite`] (the schema
//! and the default backend), [`writer`] (the bounded queue and the batching thread).

pub mod event;
pub mod sqlite;
pub mod writer;

use std::fmt;
use std::path::PathBuf;

pub use event::{Event, EventKind, UnknownEventKind};
pub use sqlite::SqliteStore;
pub use writer::{EventQueue, EventWriter, WriterConfig, WriterStats};

/// A contact's id: an opaque string (a UUID v4 from the SQLite store). A newtype so a contact id
/// is not confused with a visitor id, which is a string of the same shape.
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
    /// A backend that is down or refusing work (network store, test doubles).
    #[error("store unavailable: {0}")]
    Unavailable(String),
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
    /// - an [`EventKind::Identify`] event with both `visitor_id` and `contact_id` links the
    ///   visitor as [`Store::link_visitor`] does, so identification needs no extra call;
    /// - `company` is recorded in the companies table, and a known contact's `last_seen` moves.
    fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError>;

    /// Returns the contact with this email, creating it if new (and moving `last_seen` to
    /// `now_ms` if it existed). The email is normalized here with [`normalize_email`], so
    /// `"A@Example.com "` and `"a@example.com"` are one contact; invalid input is
    /// [`StoreError::InvalidEmail`].
    fn upsert_contact_by_email(&self, email: &str, now_ms: i64) -> Result<ContactId, StoreError>;

    /// Records that `visitor_id` is `contact_id` and attaches the visitor's earlier anonymous
    /// events (those with no contact yet) to the contact; returns how many events it attached.
    /// Events already attributed to another contact keep it: a shared computer must not merge
    /// two people's histories.
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
