//! The beacon wire format (see the table in `collect/mod.rs`): parsing and validating one
//! beacon from a POST body or a GET pixel's query string. Pure: no I/O, no Pingora types.

use url::Url;

/// What the tracker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconKind {
    Pageview,
    Engagement,
    Event,
    Outbound,
    Form,
    Consent,
    Link,
}

/// A validated beacon. Strings are within their limits and free of control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub kind: BeaconKind,
    /// The page, parsed (absolute http or https).
    pub url: Url,
    pub referrer: Option<String>,
    pub title: Option<String>,
    pub screen: Option<String>,
    pub lang: Option<String>,
    pub engaged_ms: Option<i64>,
    pub name: Option<String>,
    /// `props` re-serialised as compact JSON.
    pub props_json: Option<String>,
    pub target: Option<String>,
    /// As sent, trimmed (normalising is the store's job).
    pub email: Option<String>,
    pub fields: Vec<String>,
    pub consent: Option<bool>,
    /// Lower-cased host names, deduplicated.
    pub hosts: Vec<String>,
}

/// Why a beacon was refused: the HTTP status and a short reason for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

/// Parses a POST body. `content_type` is the raw header.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Beacon, Rejection> {
    let _ = (content_type, body);
    todo!()
}

/// Parses a GET pixel's query string (without `?`); `url` defaults to `referer`.
pub fn parse_query(query: &str, referer: Option<&str>) -> Result<Beacon, Rejection> {
    let _ = (query, referer);
    todo!()
}

/// `Origin` (or, without it, `Referer`) must name a host that `is_site_host` accepts.
pub fn check_origin(
    origin: Option<&str>,
    referer: Option<&str>,
    is_site_host: impl Fn(&str) -> bool,
) -> Result<(), Rejection> {
    let _ = (origin, referer, is_site_host);
    todo!()
}

/// A transparent 1×1 GIF, the answer to the pixel.
pub const PIXEL_GIF: &[u8] = &[];
