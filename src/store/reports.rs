//! The read side of the store: what the admin API and dashboard ask of it (install status,
//! visitor analytics, contact and company profiles, data-protection export and erase).
//!
//! Every backend implements [`Reports`] with the same definitions, written down here once:
//!
//! - Only events with `is_bot = 0` count, everywhere (robots are counted by the metrics); the
//!   one exception is [`Reports::export_contact`], which returns every stored row.
//! - A **visitor** is a distinct `visitor_id` among the events counted, of any kind; events
//!   without one (no consent for an id, GPC) count as page views but not as visitors or
//!   sessions.
//! - A **session** is a distinct `session_id` among the events counted, of any kind (assigned
//!   on insert: 30 minutes of inactivity).
//! - **Bounce rate**: sessions with exactly one page view ÷ sessions with at least one.
//! - **Views per session**: page views that belong to a session ÷ sessions with at least one
//!   page view (0 when there are none), i.e. the mean number of pages a visit sees.
//! - **Mean engaged time**: the sum of `engaged_ms` of engagement events ÷ the number of
//!   sessions that have at least one page view (0 when there are none).
//! - **Entry / exit page**: the path of a session's first / last page view (by `ts_ms`, ties
//!   in insertion order) among the page views counted, so within the range.
//! - Ranges are half-open: `from_ms <= ts_ms < to_ms`.
//! - NULL and the empty string both mean "no value".
//! - Text values in results are as stored (visitor-supplied): the caller escapes them. The
//!   one derived value is the referrer host of [`Dimension::Referrers`].

use serde::Serialize;

use super::StoreError;

/// Which events a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// A site name; `None` for all sites.
    pub site: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The headline figures of a [`Filter`], as defined at the top of this module.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Stats {
    pub pageviews: u64,
    pub visitors: u64,
    pub sessions: u64,
    pub views_per_session: f64,
    /// 0.0 to 1.0.
    pub bounce_rate: f64,
    pub mean_engaged_ms: f64,
    /// Identified contacts seen in the range: distinct `contact_id` of the events counted.
    pub contacts: u64,
}

/// The most buckets a time series returns (a leap year of hours fits); a longer series is
/// [`StoreError::InvalidRequest`].
pub const MAX_BUCKETS: usize = 10_000;

/// How far back [`Reports::live_visitors`] looks: 5 minutes.
pub const LIVE_WINDOW_MS: i64 = 5 * 60 * 1000;

/// How many top pages a [`CompanyCard`] lists.
pub const COMPANY_PAGES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// One bucket of a time series; every bucket of the range is present (zeros included), UTC.
/// The first bucket is the one containing `from_ms` (only events from `from_ms` on count in
/// it), the last the one containing `to_ms - 1`; an empty range has none. `pageviews` are the
/// bucket's page views, `visitors` its distinct visitors (of any event kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Start of the bucket, ms since the epoch (a multiple of the bucket size).
    pub ts_ms: i64,
    pub pageviews: u64,
    pub visitors: u64,
}

/// What a breakdown groups page views by: the column of that name (`path` for pages,
/// `browser`, `os`, `device`, `company`, `site`, `utm_*`), except
/// - entry / exit pages: the path of each session's first / last page view;
/// - referrers: the host (with port, if any) of the page view's `referrer`, lower-case, and
///   only when it differs from the host of the page's own `url`: following a link within the
///   site is not a referral, and full referrer URLs would split one source into many rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Pages,
    EntryPages,
    ExitPages,
    Referrers,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    Browsers,
    Os,
    Devices,
    Companies,
    Sites,
}

impl Dimension {
    pub const ALL: [Dimension; 12] = [
        Dimension::Pages,
        Dimension::EntryPages,
        Dimension::ExitPages,
        Dimension::Referrers,
        Dimension::UtmSource,
        Dimension::UtmMedium,
        Dimension::UtmCampaign,
        Dimension::Browsers,
        Dimension::Os,
        Dimension::Devices,
        Dimension::Companies,
        Dimension::Sites,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Pages => "pages",
            Dimension::EntryPages => "entry_pages",
            Dimension::ExitPages => "exit_pages",
            Dimension::Referrers => "referrers",
            Dimension::UtmSource => "utm_source",
            Dimension::UtmMedium => "utm_medium",
            Dimension::UtmCampaign => "utm_campaign",
            Dimension::Browsers => "browsers",
            Dimension::Os => "os",
            Dimension::Devices => "devices",
            Dimension::Companies => "companies",
            Dimension::Sites => "sites",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One row of a breakdown: page views with this value, and distinct visitors among them.
/// Rows are ordered by page views, then visitors, descending, then key ascending. Page views
/// with no value for the dimension (no referrer, no UTM source, ...) are left out; for entry and
/// exit pages, `pageviews` counts sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub key: String,
    pub pageviews: u64,
    pub visitors: u64,
}

/// A site's install status from the stored events (real browsers only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteSeen {
    pub site: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub events: u64,
}

/// A line of the contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactSummary {
    pub id: String,
    pub email: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub pageviews: u64,
}

/// One event as a profile timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub ts_ms: i64,
    pub kind: String,
    pub site: String,
    pub url: String,
    pub path: String,
    pub title: Option<String>,
    pub referrer: Option<String>,
    pub engaged_ms: Option<i64>,
    pub name: Option<String>,
    pub props_json: Option<String>,
    pub utm_campaign: Option<String>,
    pub identify_source: Option<String>,
    pub session_id: Option<String>,
}

/// Everything known about a contact, from "their events" (see [`Reports::contact`]) of real
/// browsers, all time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactCard {
    pub summary: ContactSummary,
    /// Distinct site names, alphabetical.
    pub sites: Vec<String>,
    pub sessions: u64,
    pub engaged_ms: i64,
    /// Distinct non-empty `utm_campaign` values, alphabetical.
    pub campaigns: Vec<String>,
    /// The most frequent company of their events (ties: alphabetically first).
    pub company: Option<String>,
    /// Newest first, at most `timeline_limit` entries.
    pub timeline: Vec<TimelineEntry>,
}

/// A company seen in the range: its row in the companies table (`first_seen_ms` and
/// `last_seen_ms` are all time, any traffic), with the distinct visitors (of any event kind)
/// and the page views of its events in the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanySummary {
    pub id: i64,
    pub name: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub visitors: u64,
    pub pageviews: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyCard {
    pub summary: CompanySummary,
    /// Identified contacts among its visitors: the distinct `contact_id` of its events in the
    /// range, most recently seen first (their summaries are all time, as in the contact list).
    pub contacts: Vec<ContactSummary>,
    /// Top pages of the company's page views in the range (a `Pages` breakdown), at most
    /// [`COMPANY_PAGES`].
    pub pages: Vec<Row>,
    /// Newest first, at most `timeline_limit` entries.
    pub timeline: Vec<TimelineEntry>,
}

/// What erasing a contact removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Erased {
    pub contacts: u64,
    pub events: u64,
    pub visitor_links: u64,
}

/// The read side every store offers. Synchronous like [`super::Store`]: async callers use
/// `spawn_blocking`.
pub trait Reports: Send + Sync {
    fn stats(&self, f: &Filter) -> Result<Stats, StoreError>;
    /// Page views and visitors per hour or day; see [`Point`]. At most [`MAX_BUCKETS`].
    fn timeseries(&self, f: &Filter, bucket: Bucket) -> Result<Vec<Point>, StoreError>;
    /// The top `limit` values of a dimension; see [`Dimension`] and [`Row`].
    fn breakdown(&self, f: &Filter, d: Dimension, limit: usize) -> Result<Vec<Row>, StoreError>;
    /// Distinct visitors with an event in `[now_ms - 5 min, now_ms]` (both ends included).
    fn live_visitors(&self, site: Option<&str>, now_ms: i64) -> Result<u64, StoreError>;
    /// First and last event of real browsers, per site that has any, by site name.
    fn sites_seen(&self) -> Result<Vec<SiteSeen>, StoreError>;
    /// Contacts whose e-mail or id contains `search` (case-insensitive; all when `None`),
    /// most recently seen first (`last_seen`, then id). `pageviews` counts the page views
    /// among their events (see [`Reports::contact`]), all time.
    fn contacts(
        &self,
        search: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ContactSummary>, StoreError>;
    /// The contact's card, or `None` if there is no such contact.
    ///
    /// "Their events" are the events with their `contact_id`, plus events attributed to no
    /// contact that come from a visitor linked to them or that carry the cross-site identity
    /// (`smids`) of one of their events: the same person on other sites. Events attributed to
    /// another contact are never theirs, even from the same browser (a shared computer must
    /// not merge two people's histories). The card, the export and the erasure all use this
    /// one set.
    fn contact(&self, id: &str, timeline_limit: usize) -> Result<Option<ContactCard>, StoreError>;
    /// Every stored row about the contact, bots included, as JSON:
    /// `{"contact": {..}, "visitor_links": [..], "events": [..]}`, each row an object with
    /// every column of its table; links by visitor id, events oldest first. `None` if there
    /// is no such contact.
    fn export_contact(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError>;
    /// Deletes the contact, their visitor links, all their events (as in
    /// [`Reports::contact`], bots included) and the current-session rows of their visitors.
    /// Atomic; returns how many rows of each kind it deleted.
    fn erase_contact(&self, id: &str) -> Result<Erased, StoreError>;
    /// Companies with events in the range, most visitors first (then page views, then name).
    fn companies(&self, f: &Filter, limit: usize) -> Result<Vec<CompanySummary>, StoreError>;
    /// A company's card over the range, or `None` if there is no company with this id.
    fn company(
        &self,
        id: i64,
        f: &Filter,
        timeline_limit: usize,
    ) -> Result<Option<CompanyCard>, StoreError>;
}
