//! Getting the SQLite writing connection back after its file was read-only.
//!
//! SQLite opens a file it may not write (a read-only mount, a file owned by another user) as a
//! read-only connection, and that connection stays read-only for good: every write fails with
//! `SQLITE_READONLY` even after the file is writable again (measured: a tmpfs remounted `ro`,
//! then `rw`; a new connection writes at once, the old one never does). A write-ahead-logged
//! file on a read-only mount cannot be opened at all (`SQLITE_CANTOPEN`: no `-shm` file can be
//! made). Either way only a new connection gets writing back, so the store replaces a
//! read-only writing connection by reopening the file, no more often than this backoff allows
//! while the file stays read-only.
//!
//! What this does not cover: a connection that was writable when opened keeps its open file
//! descriptors, so `chmod`, `chattr +i` or a `ro` bind mount later do not affect it, and the
//! kernel refuses to remount a filesystem read-only while a file on it is open for writing
//! (`EBUSY`). The fault therefore reaches a running proxy only through a (re)start or through
//! a reopen, which is where this module acts.

use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use super::StoreError;

/// First wait before reopening again after a reopen failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two reopening attempts: the writer's own retries are at most 5 s
/// apart, so writing resumes within about 10 s of the file becoming writable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the writing connection must be replaced, and when to try next.
#[derive(Debug)]
pub(super) struct Reopen {
    /// The writing connection cannot write (read-only, or a stand-in opened at start).
    stale: bool,
    next_try: Instant,
    backoff: Duration,
}

impl Reopen {
    /// `stale`: the store starts without a usable writing connection.
    pub(super) fn new(stale: bool) -> Reopen {
        Reopen {
            stale,
            next_try: Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }

    pub(super) fn is_stale(&self) -> bool {
        self.stale
    }

    /// Marks the connection unusable; the next attempt may run at once if none failed lately.
    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Whether a reopening attempt may run at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.stale && now >= self.next_try
    }

    /// The attempt at `now` failed: wait longer before the next one. Returns the wait.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.backoff;
        self.next_try = now + wait;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// A writable connection is in place again.
    pub(super) fn succeeded(&mut self) {
        self.stale = false;
        self.backoff = FIRST_BACKOFF;
    }
}

/// An error of opening the file that a read-only file or mount explains, so the store may
/// start without writing and reopen later (rather than keep the whole proxy down).
pub(super) fn is_read_only_fault(err: &StoreError) -> bool {
    let sqlite = match err {
        StoreError::Sqlite(e) => e,
        StoreError::Migration { source, .. } => source,
        _ => return false,
    };
    matches!(
        sqlite.sqlite_error_code(),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
    )
}

/// The error a reopened connection that still cannot write is reported as.
pub(super) fn still_read_only() -> StoreError {
    StoreError::Unavailable("the SQLite file is read-only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets_after_success() {
        let mut r = Reopen::new(false);
        let t0 = Instant::now();
        assert!(!r.due(t0), "a healthy connection is not reopened");
        r.mark_stale();
        assert!(r.due(t0));
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            let wait = r.failed(now);
            assert!(!r.due(now), "not again before the backoff");
            now += wait;
            assert!(r.due(now));
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        r.succeeded();
        assert!(!r.is_stale() && !r.due(now));
        r.mark_stale();
        assert_eq!(r.failed(now), FIRST_BACKOFF);
    }

    #[test]
    fn read_only_and_cannot_open_are_read_only_faults() {
        let fail = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        let ro = fail(rusqlite::ffi::SQLITE_READONLY);
        assert!(is_read_only_fault(&StoreError::Sqlite(ro)));
        assert!(is_read_only_fault(&StoreError::Sqlite(fail(
            rusqlite::ffi::SQLITE_CANTOPEN
        ))));
        assert!(is_read_only_fault(&StoreError::Migration {
            version: 1,
            source: fail(rusqlite::ffi::SQLITE_READONLY),
        }));
        assert!(!is_read_only_fault(&StoreError::Sqlite(fail(
            rusqlite::ffi::SQLITE_BUSY
        ))));
        assert!(!is_read_only_fault(&StoreError::Sqlite(fail(
            rusqlite::ffi::SQLITE_CORRUPT
        ))));
        assert!(!is_read_only_fault(&StoreError::InvalidEmail));
    }
}
