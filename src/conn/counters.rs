//! What the client connection limits and the shortcut did, shown on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Connections closed by the limits of [`super::ConnLimits`].
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// A request head not complete within `timeouts.request_header` (including connections
    /// that sent nothing at all).
    pub header_timeouts: AtomicU64,
    /// Keep-alive connections idle for `timeouts.keepalive`.
    pub idle_closed: AtomicU64,
    /// Requests answered by the app's [`super::Shortcut`] before Pingora.
    pub answered_early: AtomicU64,
}

impl ConnCounters {
    pub(super) fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Relaxed);
    }

    pub(super) fn idle_close(&self) {
        self.idle_closed.fetch_add(1, Relaxed);
    }

    pub(super) fn answered_early(&self) {
        self.answered_early.fetch_add(1, Relaxed);
    }
}
