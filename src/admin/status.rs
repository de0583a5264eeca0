//! Install status per configured site: has the monitoring code been seen working (events from
//! real browsers in the store), and what the proxy counted while injecting it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::time;
use crate::config::{HostPattern, Settings};
use crate::inject::Skip;
use crate::metrics::{Metrics, SiteCounters};
use crate::store::reports::SiteSeen;

/// The alert of a site whose code has not been seen yet.
pub const NOT_DETECTED: &str = "monitoring code not detected yet";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SiteStatus {
    pub name: String,
    pub hosts: Vec<String>,
    pub detected: bool,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// `last_seen` in ms, for the dashboard.
    #[serde(skip)]
    pub last_seen_ms: Option<i64>,
    pub pages_injected: u64,
    pub pages_already_tagged: u64,
    pub duplicates_removed: u64,
    pub duplicates_kept: u64,
    pub rewrite_failures: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub alert: Option<&'static str>,
    pub warnings: Vec<String>,
}

pub fn host_text(h: &HostPattern) -> String {
    match h {
        HostPattern::Exact(name) => name.clone(),
        HostPattern::Suffix(suffix) => format!("*{suffix}"),
        HostPattern::Any => "*".to_string(),
    }
}

/// Pages that carried a monitoring code with another client id.
fn foreign_client_id(c: &SiteCounters) -> u64 {
    c.foreign_client_id
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The status of every configured site, in configuration order.
pub fn sites(settings: &Settings, metrics: &Metrics, seen: &[SiteSeen]) -> Vec<SiteStatus> {
    settings
        .sites
        .iter()
        .map(|site| {
            let seen = seen.iter().find(|s| s.site == site.name && s.events > 0);
            let counters = metrics
                .sites
                .iter()
                .find(|(n, _)| *n == site.name)
                .map(|(_, c)| c);
            let load = |f: fn(&SiteCounters) -> u64| counters.map_or(0, f);
            let skipped: BTreeMap<&'static str, u64> = Skip::ALL
                .iter()
                .map(|s| {
                    (
                        s.label(),
                        counters.map_or(0, |c| c.skipped[s.index()].load(Relaxed)),
                    )
                })
                .collect();
            let rewrite_failures = load(|c| c.rewrite_failed.load(Relaxed));
            let duplicates_kept = load(|c| c.duplicates_kept.load(Relaxed));
            let foreign = load(foreign_client_id);
            let mut warnings = Vec::new();
            if foreign > 0 {
                warnings.push(format!(
                    "{foreign} page(s) from the origin carried a monitoring code with another client id"
                ));
            }
            if duplicates_kept > 0 {
                warnings.push(format!(
                    "{duplicates_kept} page(s) kept a second monitoring code"
                ));
            }
            if rewrite_failures > 0 {
                warnings.push(format!(
                    "{rewrite_failures} page(s) could not be rewritten and were passed through without the code"
                ));
            }
            for (reason, what) in [
                (Skip::Charset, "an unsupported character set (UTF-16)"),
                (Skip::ContentEncoding, "an unsupported content encoding"),
            ] {
                let n = skipped.get(reason.label()).copied().unwrap_or(0);
                if n > 0 {
                    warnings.push(format!("{n} HTML page(s) were served without the code because of {what}"));
                }
            }
            SiteStatus {
                name: site.name.clone(),
                hosts: site.hosts.iter().map(host_text).collect(),
                detected: seen.is_some(),
                first_seen: seen.map(|s| time::iso(s.first_seen_ms)),
                last_seen: seen.map(|s| time::iso(s.last_seen_ms)),
                last_seen_ms: seen.map(|s| s.last_seen_ms),
                pages_injected: load(SiteCounters::pages_injected),
                pages_already_tagged: load(|c| c.already_tagged.load(Relaxed)),
                duplicates_removed: load(|c| c.duplicates_removed.load(Relaxed)),
                duplicates_kept,
                rewrite_failures,
                skipped,
                alert: if seen.is_some() { None } else { Some(NOT_DETECTED) },
                warnings,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::{Anchor, Outcome};

    #[test]
    fn detected_sites_and_warnings() {
        let settings = crate::config::parse_str(
            "client_id: abc\nsites:\n  - name: shop\n    hosts: ['shop.example', '*.shop.example']\n    upstream: '127.0.0.1:1'\n  - name: blog\n    hosts: ['*']\n    upstream: '127.0.0.1:2'\n",
        )
        .unwrap();
        let metrics = Metrics::new(["shop".to_string(), "blog".to_string()]);
        metrics.site(0).record(&Outcome {
            injected: Some(Anchor::HeadEnd),
            duplicates_kept: 1,
            ..Default::default()
        });
        metrics.site(1).skip(Skip::ContentEncoding);
        let seen = [SiteSeen {
            site: "shop".into(),
            first_seen_ms: 0,
            last_seen_ms: 1000,
            events: 3,
        }];
        let st = sites(&settings, &metrics, &seen);
        assert_eq!(st[0].hosts, ["shop.example", "*.shop.example"]);
        assert!(st[0].detected);
        assert_eq!(st[0].first_seen.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(st[0].last_seen.as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(st[0].alert, None);
        assert_eq!(st[0].pages_injected, 1);
        assert_eq!(st[0].warnings.len(), 1, "{:?}", st[0].warnings);
        assert!(!st[1].detected);
        assert_eq!(st[1].alert, Some(NOT_DETECTED));
        assert_eq!(st[1].hosts, ["*"]);
        assert_eq!(st[1].skipped["content_encoding"], 1);
        assert_eq!(st[1].skipped.len(), Skip::ALL.len());
        assert_eq!(st[1].warnings.len(), 1, "{:?}", st[1].warnings);
    }
}
