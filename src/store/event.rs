//! The event model: one row of visitor behaviour, as the collect endpoint hands it to the writer
//! and as every store persists it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened. Stored as the lower-case snake_case name from [`EventKind::as_str`], so a
/// SQL reader (and the PostgreSQL store) sees readable text rather than a number that depends
/// on the order of this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page was viewed (the tracker's first beacon on every page).
    Pageview,
    /// The visitor stayed on a page; `engaged_ms` says for how long (sent when the page is hidden).
    Engagement,
    /// The visitor became a known contact (form with an email, mailing link, linker token);
    /// `contact_id` and usually `identify_source` are set. Storing one links the visitor.
    Identify,
    /// A site-defined event (`sm('event', name, props)`); `name` and `props_json` are set.
    Custom,
    /// A click on a link to another site; `url` is the link target.
    OutboundClick,
    /// A form was submitted (whether or not it carried an email).
    Form,
}

impl EventKind {
    /// Every kind, in declaration order (handy for dashboards and tests).
    pub const ALL: [EventKind; 6] = [
        EventKind::Pageview,
        EventKind::Engagement,
        EventKind::Identify,
        EventKind::Custom,
        EventKind::OutboundClick,
        EventKind::Form,
    ];

    /// The stable name used in storage and in the collect API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Pageview => "pageview",
            EventKind::Engagement => "engagement",
            EventKind::Identify => "identify",
            EventKind::Custom => "custom",
            EventKind::OutboundClick => "outbound_click",
            EventKind::Form => "form",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was none of [`EventKind::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

/// One event. Everything the request path knows is resolved before enqueueing (identity from
/// cookies, bot flag, truncated IP), so the writer only copies it into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When the proxy received the beacon, in milliseconds since the Unix epoch (the proxy's
    /// clock, not the browser's, which can be wrong or forged).
    pub ts_ms: i64,
    /// The configured site name (`sites[].name`), not the Host header, so all of a site's
    /// hosts count together.
    pub site: String,
    /// The anonymous visitor (`smuuid` cookie); `None` when consent did not allow the cookie.
    pub visitor_id: Option<String>,
    /// The identified contact (verified `smclient` cookie, mailing or personal link, or the
    /// contact created by this event). When `None` but the visitor is already linked, the store
    /// fills it in; an id the store does not know yet becomes a contact without an email.
    pub contact_id: Option<String>,
    /// The cross-site identity (verified `smids` cookie).
    pub smids: Option<String>,
    /// The visit this event belongs to. The tracker sends none: the store assigns one to every
    /// event with a `visitor_id`, a new session after [`super::SESSION_IDLE_MS`] of inactivity
    /// (see [`super::Store::insert_batch`]). An event that arrives with one keeps it, and the
    /// visitor's next events continue it if it is the visitor's latest.
    pub session_id: Option<String>,
    /// The full page URL as the browser reported it (for `OutboundClick`: the link target).
    pub url: String,
    /// The path of the page, without the query string (what analytics group by).
    pub path: String,
    /// `document.title`.
    pub title: Option<String>,
    /// `document.referrer`; `None` when empty.
    pub referrer: Option<String>,
    /// `utm_source` from the page URL.
    pub utm_source: Option<String>,
    /// `utm_medium` from the page URL.
    pub utm_medium: Option<String>,
    /// `utm_campaign` from the page URL.
    pub utm_campaign: Option<String>,
    /// Screen size as `WIDTHxHEIGHT`.
    pub screen: Option<String>,
    /// `navigator.language`, e.g. `pl-PL`.
    pub language: Option<String>,
    /// The request's `User-Agent`.
    pub user_agent: Option<String>,
    /// Browser family parsed from the user agent when the event was received (`Chrome`).
    pub browser: Option<String>,
    /// Operating system parsed from the user agent (`Windows 10`, `iOS`).
    pub os: Option<String>,
    /// Device category parsed from the user agent: `pc`, `smartphone`, `mobilephone`,
    /// `tablet`, `appliance`, `crawler` or `unknown`.
    pub device: Option<String>,
    /// The request looked automated (user agent or behaviour); kept rather than dropped so
    /// the count of filtered traffic stays visible, and excluded from analytics by default.
    pub is_bot: bool,
    /// The client IP with the host part zeroed (IPv4 /24, IPv6 /48), never the full address,
    /// so the store holds no personal IP data.
    pub ip_truncated: Option<String>,
    /// The visitor's company (B2B), when an IP-to-company lookup knew it.
    pub company: Option<String>,
    /// For `Engagement`: time the page was visible, in milliseconds.
    pub engaged_ms: Option<i64>,
    /// For `Custom`: the event name.
    pub name: Option<String>,
    /// For `Custom` (and `Form`, field names only): properties as a JSON object, kept as text
    /// because the store never queries inside it.
    pub props_json: Option<String>,
    /// For `Identify`: how the contact was recognised, e.g. `form`, `email_link`, `linker`.
    pub identify_source: Option<String>,
    /// The first event of a visitor whose `visitor_id` was created by the request that sent
    /// it: no store can hold an event or a contact link for that id yet, so a store may skip
    /// looking them up. Only the first event queued for the new id carries it (a later one
    /// may reach the store after the first is written). Not stored; `false` is always
    /// correct, only slower.
    #[serde(skip)]
    pub new_visitor: bool,
}

impl Event {
    /// An event with the required fields set and every optional one empty; fill the rest with
    /// struct update syntax or by assigning fields.
    pub fn new(
        kind: EventKind,
        ts_ms: i64,
        site: impl Into<String>,
        url: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Event {
            kind,
            ts_ms,
            site: site.into(),
            visitor_id: None,
            contact_id: None,
            smids: None,
            session_id: None,
            url: url.into(),
            path: path.into(),
            title: None,
            referrer: None,
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            screen: None,
            language: None,
            user_agent: None,
            browser: None,
            os: None,
            device: None,
            is_bot: false,
            ip_truncated: None,
            company: None,
            engaged_ms: None,
            name: None,
            props_json: None,
            identify_source: None,
            new_visitor: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("PageView".parse::<EventKind>().is_err());
    }

    #[test]
    fn new_leaves_optional_fields_empty() {
        let e = Event::new(EventKind::Pageview, 1, "shop", "https://s/a?b", "/a");
        assert_eq!(e.site, "shop");
        assert_eq!(e.path, "/a");
        assert!(e.visitor_id.is_none() && e.contact_id.is_none() && !e.is_bot);
    }
}
