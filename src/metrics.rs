//! Counters of what the proxy did, per site, rendered in Prometheus' text format for the admin
//! listener's `/metrics` (and read by the status API).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::inject::{Anchor, Outcome, Skip};

#[derive(Default)]
pub struct SiteCounters {
    pub injected_head: AtomicU64,
    pub injected_body: AtomicU64,
    pub injected_document_end: AtomicU64,
    pub already_tagged: AtomicU64,
    pub duplicates_removed: AtomicU64,
    pub duplicates_kept: AtomicU64,
    pub rewrite_failed: AtomicU64,
    pub skipped: [AtomicU64; Skip::ALL.len()],
    pub upstream_errors: AtomicU64,
    /// Codes in origin pages that set another client ID than ours.
    pub foreign_client_id: AtomicU64,
    pub collect: CollectCounters,
}

/// Beacon kinds as counted (the `type` field of the protocol).
pub const BEACON_KINDS: [&str; 7] = [
    "pageview",
    "engagement",
    "event",
    "outbound",
    "form",
    "consent",
    "link",
];
/// Statuses the collect endpoint refuses with.
pub const REJECT_STATUSES: [u16; 7] = [400, 403, 405, 413, 415, 429, 503];
/// How a visitor was identified.
pub const IDENTIFY_SOURCES: [&str; 4] = ["form", "email_link", "personal_link", "linker"];

/// What the first-party collection did for one site.
#[derive(Default)]
pub struct CollectCounters {
    pub beacons: [AtomicU64; BEACON_KINDS.len()],
    pub rejected: [AtomicU64; REJECT_STATUSES.len()],
    /// Beacons and pages from robots (kept apart from visitors).
    pub bots: AtomicU64,
    /// Identity cookies that failed verification (forged, tampered, unknown key).
    pub cookies_rejected: AtomicU64,
    /// Events not stored because consent was missing or refused.
    pub no_consent: AtomicU64,
    pub identified: [AtomicU64; IDENTIFY_SOURCES.len()],
}

impl CollectCounters {
    pub fn beacon(&self, kind: &str) {
        if let Some(i) = BEACON_KINDS.iter().position(|k| *k == kind) {
            self.beacons[i].fetch_add(1, Relaxed);
        }
    }

    pub fn reject(&self, status: u16) {
        if let Some(i) = REJECT_STATUSES.iter().position(|s| *s == status) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn identify(&self, source: &str) {
        if let Some(i) = IDENTIFY_SOURCES.iter().position(|s| *s == source) {
            self.identified[i].fetch_add(1, Relaxed);
        }
    }
}

impl SiteCounters {
    pub fn pages_injected(&self) -> u64 {
        self.injected_head.load(Relaxed)
            + self.injected_body.load(Relaxed)
            + self.injected_document_end.load(Relaxed)
    }

    pub fn skip(&self, why: Skip) {
        self.skipped[why.index()].fetch_add(1, Relaxed);
    }

    /// Records the outcome of one rewritten document.
    pub fn record(&self, o: &Outcome) {
        match o.injected {
            Some(Anchor::HeadEnd) => self.injected_head.fetch_add(1, Relaxed),
            Some(Anchor::BodyEnd) => self.injected_body.fetch_add(1, Relaxed),
            Some(Anchor::DocumentEnd) => self.injected_document_end.fetch_add(1, Relaxed),
            None => 0,
        };
        if o.already_tagged {
            self.already_tagged.fetch_add(1, Relaxed);
        }
        self.duplicates_removed
            .fetch_add(u64::from(o.duplicates_removed), Relaxed);
        self.duplicates_kept
            .fetch_add(u64::from(o.duplicates_kept), Relaxed);
        if o.failure.is_some() {
            self.rewrite_failed.fetch_add(1, Relaxed);
        }
        self.foreign_client_id
            .fetch_add(u64::from(o.foreign_client_ids), Relaxed);
        if o.unsupported_charset {
            self.skip(Skip::Charset);
        }
    }
}

pub struct Metrics {
    pub sites: Vec<(String, SiteCounters)>,
    /// Requests whose Host matched no site (answered 421).
    pub unrouted: AtomicU64,
    /// The event queue, once the writer runs: its counters are rendered too.
    pub queue: std::sync::OnceLock<crate::store::EventQueue>,
    /// Client connections closed by `timeouts.request_header` / `timeouts.keepalive`.
    pub conn: std::sync::Arc<crate::conn::ConnCounters>,
}

impl Metrics {
    pub fn new(site_names: impl IntoIterator<Item = String>) -> Self {
        Metrics {
            sites: site_names
                .into_iter()
                .map(|n| (n, SiteCounters::default()))
                .collect(),
            unrouted: AtomicU64::new(0),
            queue: std::sync::OnceLock::new(),
            conn: Default::default(),
        }
    }

    pub fn site(&self, index: usize) -> &SiteCounters {
        &self.sites[index].1
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut family = |name: &str, help: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        family(
            "smproxy_pages_injected_total",
            "HTML pages that received the monitoring code, by anchor.",
            &mut self.sites.iter().flat_map(|(n, c)| {
                [
                    (
                        format!("site=\"{n}\",anchor=\"head_end\""),
                        c.injected_head.load(Relaxed),
                    ),
                    (
                        format!("site=\"{n}\",anchor=\"body_end\""),
                        c.injected_body.load(Relaxed),
                    ),
                    (
                        format!("site=\"{n}\",anchor=\"document_end\""),
                        c.injected_document_end.load(Relaxed),
                    ),
                ]
            }),
        );
        family(
            "smproxy_pages_already_tagged_total",
            "HTML pages that already carried a monitoring code (nothing injected).",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.already_tagged.load(Relaxed))),
        );
        family(
            "smproxy_duplicates_removed_total",
            "Monitoring codes removed because another came first.",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.duplicates_removed.load(Relaxed))),
        );
        family(
            "smproxy_duplicates_kept_total",
            "Second monitoring codes left in place (duplicates: keep).",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.duplicates_kept.load(Relaxed))),
        );
        family(
            "smproxy_rewrite_failures_total",
            "Pages whose rewriting failed; the rest of the page was passed through unchanged.",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.rewrite_failed.load(Relaxed))),
        );
        family(
            "smproxy_pages_skipped_total",
            "Responses passed through without injection, by reason.",
            &mut self.sites.iter().flat_map(|(n, c)| {
                Skip::ALL.iter().map(move |s| {
                    (
                        format!("site=\"{n}\",reason=\"{}\"", s.label()),
                        c.skipped[s.index()].load(Relaxed),
                    )
                })
            }),
        );
        family(
            "smproxy_foreign_client_id_total",
            "Monitoring codes in origin pages that set another client ID.",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.foreign_client_id.load(Relaxed))),
        );
        family(
            "smproxy_upstream_errors_total",
            "Requests answered 502/504 because the origin failed.",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.upstream_errors.load(Relaxed))),
        );
        family(
            "smproxy_beacons_total",
            "Beacons accepted by the collect endpoint, by type.",
            &mut self.sites.iter().flat_map(|(n, c)| {
                BEACON_KINDS.iter().enumerate().map(move |(i, k)| {
                    (
                        format!("site=\"{n}\",type=\"{k}\""),
                        c.collect.beacons[i].load(Relaxed),
                    )
                })
            }),
        );
        family(
            "smproxy_beacons_rejected_total",
            "Beacons refused by the collect endpoint, by status.",
            &mut self.sites.iter().flat_map(|(n, c)| {
                REJECT_STATUSES.iter().enumerate().map(move |(i, s)| {
                    (
                        format!("site=\"{n}\",status=\"{s}\""),
                        c.collect.rejected[i].load(Relaxed),
                    )
                })
            }),
        );
        family(
            "smproxy_bot_requests_total",
            "Page views and beacons from robots (not counted as visitors).",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.collect.bots.load(Relaxed))),
        );
        family(
            "smproxy_cookies_rejected_total",
            "Identity cookies that failed verification (ignored and replaced).",
            &mut self.sites.iter().map(|(n, c)| {
                (
                    format!("site=\"{n}\""),
                    c.collect.cookies_rejected.load(Relaxed),
                )
            }),
        );
        family(
            "smproxy_events_without_consent_total",
            "Events not stored because consent was missing or refused.",
            &mut self
                .sites
                .iter()
                .map(|(n, c)| (format!("site=\"{n}\""), c.collect.no_consent.load(Relaxed))),
        );
        family(
            "smproxy_identifications_total",
            "Visitors identified as contacts, by source.",
            &mut self.sites.iter().flat_map(|(n, c)| {
                IDENTIFY_SOURCES.iter().enumerate().map(move |(i, s)| {
                    (
                        format!("site=\"{n}\",source=\"{s}\""),
                        c.collect.identified[i].load(Relaxed),
                    )
                })
            }),
        );
        family(
            "smproxy_client_connections_closed_total",
            "Client connections closed by a limit: request_header (a head not complete in time; 408 if part of it came), keepalive (idle between requests).",
            &mut [
                ("limit=\"request_header\"", &self.conn.header_timeouts),
                ("limit=\"keepalive\"", &self.conn.idle_closed),
            ]
            .into_iter()
            .map(|(l, v)| (l.to_string(), v.load(Relaxed))),
        );
        family(
            "smproxy_requests_answered_early_total",
            "Requests answered before Pingora's request handling: beacons and tracker requests complete in one read, with plain framing.",
            &mut std::iter::once((String::new(), self.conn.answered_early.load(Relaxed))),
        );
        if let Some(q) = self.queue.get() {
            let st = q.stats();
            let _ = write!(
                out,
                "# HELP smproxy_events_enqueued_total Events handed to the store's writer.\n\
# TYPE smproxy_events_enqueued_total counter\nsmproxy_events_enqueued_total {}\n\
# HELP smproxy_events_dropped_total Events dropped because the writer's queue was full (a beacon's after waiting for room) or closing.\n\
# TYPE smproxy_events_dropped_total counter\nsmproxy_events_dropped_total {}\n\
# HELP smproxy_events_delayed_total Beacon events that found the writer's queue full and waited for room.\n\
# TYPE smproxy_events_delayed_total counter\nsmproxy_events_delayed_total {}\n\
# HELP smproxy_events_written_total Events stored.\n\
# TYPE smproxy_events_written_total counter\nsmproxy_events_written_total {}\n\
# HELP smproxy_store_errors_total Failed store writes (the batch is retried).\n\
# TYPE smproxy_store_errors_total counter\nsmproxy_store_errors_total {}\n\
# HELP smproxy_event_queue_depth Events waiting for the store.\n\
# TYPE smproxy_event_queue_depth gauge\nsmproxy_event_queue_depth {}\n\
# HELP smproxy_store_write_seconds Time the store took to commit a batch of events.\n\
# TYPE smproxy_store_write_seconds summary\nsmproxy_store_write_seconds_sum {}\n\
smproxy_store_write_seconds_count {}\n\
# HELP smproxy_events_abandoned_total Queued events given up after the store kept failing.\n\
# TYPE smproxy_events_abandoned_total counter\nsmproxy_events_abandoned_total {}\n\
# HELP smproxy_beacons_unconfirmed_total Beacons answered 503 because their events could not be committed (store.durability: strict).\n\
# TYPE smproxy_beacons_unconfirmed_total counter\nsmproxy_beacons_unconfirmed_total {}\n\
# HELP smproxy_store_write_failing 1 while the latest store write failed (no success since).\n\
# TYPE smproxy_store_write_failing gauge\nsmproxy_store_write_failing {}\n",
                st.enqueued,
                st.dropped,
                st.delayed,
                st.written,
                st.write_errors,
                st.queue_depth,
                st.batch_micros as f64 / 1e6,
                st.batches,
                st.abandoned,
                st.ack_failures,
                u8::from(st.failing)
            );
        }
        let _ = writeln!(
            out,
            "# HELP smproxy_unrouted_requests_total Requests whose Host matched no site (421).\n\
# TYPE smproxy_unrouted_requests_total counter\nsmproxy_unrouted_requests_total {}",
            self.unrouted.load(Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_per_site() {
        let m = Metrics::new(["shop".to_string()]);
        m.site(0).record(&Outcome {
            injected: Some(Anchor::HeadEnd),
            duplicates_removed: 2,
            ..Default::default()
        });
        m.site(0).skip(Skip::NotHtml);
        let text = m.render();
        assert!(text.contains("smproxy_pages_injected_total{site=\"shop\",anchor=\"head_end\"} 1"));
        assert!(text.contains("smproxy_duplicates_removed_total{site=\"shop\"} 2"));
        assert!(text.contains("smproxy_pages_skipped_total{site=\"shop\",reason=\"not_html\"} 1"));
        assert_eq!(m.site(0).pages_injected(), 1);
    }
}
