//! The collection service the proxy calls: answers beacons, and reads identification
//! parameters and cookies on page requests. Turns each into `Set-Cookie` values and stored
//! events; never waits on the store except for the one thing that needs an answer from it
//! (the contact of a form's e-mail address), and then only for a bounded time.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::beacon::{self, Beacon, BeaconKind, Rejection};
use super::client_ip::truncate;
use super::rate_limit::RateLimiter;
use super::tracker::Tracker;
use super::user_agent::UserAgents;
use super::visitor::{Identities, Signals, Visitor};
use crate::config::{Durability, Settings, Site};
use crate::identity::{self, unix_now, Keys, SMLINK_PARAM, SMX_PARAM};
use crate::metrics::Metrics;
use crate::route::Router;
use crate::store::{Ack, Event, EventKind, EventQueue, Store};

/// How long a beacon waits for its event to be committed (`store.durability: strict`) before
/// it is answered 503. Longer than SQLite's busy timeout, so a briefly locked file still gets
/// its answer from the writer rather than from this bound.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a beacon's event waits for room in a full queue before it is dropped: a few of
/// the writer's commits (a batch of 2,000 events commits in tens of milliseconds), so a burst
/// faster than the store is slowed rather than lost, while beacons cannot pile up for long.
/// A failing store's full queue drops at once (see [`EventQueue::enqueue`]).
const ROOM_PATIENCE: Duration = Duration::from_millis(250);

/// Characters of the `User-Agent` kept on an event.
const MAX_STORED_UA: usize = 512;

/// The query parameter of mailing links: the contact's UUID.
pub const SMCLIENT_PARAM: &str = "smclient";

/// How long a form beacon waits for the store to find or create the contact.
const CONTACT_TIMEOUT: Duration = Duration::from_secs(2);

/// Link tokens for sibling sites live this long (the protocol's maximum).
const LINK_TTL_SECS: u64 = identity::SITE_LINK_MAX_TTL_SECS;

/// What the proxy knows about the client of one request.
pub struct Client<'a> {
    pub site: &'a Arc<Site>,
    /// The `Host` the client asked for (port included).
    pub host: &'a str,
    pub https: bool,
    /// The client's address (behind trusted proxies: the forwarded one).
    pub ip: IpAddr,
    pub user_agent: Option<&'a str>,
    /// `Cookie` header values.
    pub cookies: Vec<&'a [u8]>,
    pub gpc: bool,
    pub dnt: bool,
}

/// A beacon request, besides its client.
pub struct BeaconRequest<'a> {
    pub method: &'a http::Method,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub body: &'a [u8],
    /// The body was over `collect.max_body_kib` (and was not read).
    pub body_too_large: bool,
}

/// The answer to a beacon.
#[derive(Debug)]
pub struct BeaconAnswer {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub set_cookies: Vec<String>,
}

impl BeaconAnswer {
    fn no_content(set_cookies: Vec<String>) -> Self {
        BeaconAnswer {
            status: 204,
            content_type: None,
            body: Vec::new(),
            set_cookies,
        }
    }

    fn refused(r: Rejection) -> Self {
        BeaconAnswer {
            status: r.status,
            content_type: Some("text/plain; charset=utf-8"),
            body: format!("{}\n", r.reason).into_bytes(),
            set_cookies: Vec::new(),
        }
    }
}

/// What a page request needs: cookies on its response, or a redirect that removes the
/// identification parameters from the address bar.
#[derive(Debug, Default)]
pub struct PageAnswer {
    pub set_cookies: Vec<String>,
    /// `Location` of a `302` to send instead of proxying.
    pub redirect: Option<String>,
}

pub struct Collector {
    identities: Identities,
    tracker: Tracker,
    agents: UserAgents,
    rate: RateLimiter,
    router: Router,
    queue: EventQueue,
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl Collector {
    pub fn new(
        settings: Arc<Settings>,
        keys: Keys,
        queue: EventQueue,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let c = &settings.collect;
        Collector {
            identities: Identities::new(keys, settings.cookies.clone(), settings.consent.clone()),
            tracker: Tracker::new(&settings.collect_path),
            agents: UserAgents::new(),
            rate: RateLimiter::new(c.rate_per_minute, c.rate_burst),
            router: Router::new(&settings.sites),
            queue,
            store,
            settings,
            metrics,
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    fn same_site(&self, site: &Site, authority: &str) -> bool {
        self.router
            .route(authority)
            .is_some_and(|s| s.index == site.index)
    }

    fn signals(&self, c: &Client) -> Signals {
        Signals {
            gpc: c.gpc,
            dnt: c.dnt,
            bot: self.agents.is_bot(c.user_agent),
        }
    }

    /// Answers `GET`/`POST {collect.path}`.
    pub async fn beacon(&self, c: &Client<'_>, r: &BeaconRequest<'_>) -> BeaconAnswer {
        let counters = &self.metrics.site(c.site.index).collect;
        let answer = self.beacon_inner(c, r).await;
        if answer.status >= 400 {
            counters.reject(answer.status);
        }
        answer
    }

    async fn beacon_inner(&self, c: &Client<'_>, r: &BeaconRequest<'_>) -> BeaconAnswer {
        let pixel = *r.method == http::Method::GET || *r.method == http::Method::HEAD;
        if !pixel && *r.method != http::Method::POST {
            return BeaconAnswer::refused(Rejection {
                status: 405,
                reason: "use POST (or GET for the pixel)",
            });
        }
        if !self.rate.allow(c.ip, Instant::now()) {
            return BeaconAnswer::refused(Rejection {
                status: 429,
                reason: "too many beacons",
            });
        }
        let parsed = if pixel {
            // An <img> sends no Origin; its Referer is the page, checked below as its URL.
            beacon::parse_query(r.query.unwrap_or(""), r.referer)
        } else if r.body_too_large || r.body.len() > self.settings.collect.max_body_bytes {
            Err(Rejection {
                status: 413,
                reason: "body too large",
            })
        } else {
            beacon::check_origin(r.origin, r.referer, |h| self.same_site(c.site, h))
                .and_then(|()| beacon::parse_body(r.content_type, r.body))
        };
        let b = match parsed {
            Ok(b) => b,
            Err(rej) => return BeaconAnswer::refused(rej),
        };
        if !self.same_site(c.site, &b.page_authority()) {
            return BeaconAnswer::refused(Rejection {
                status: 403,
                reason: "url: not a page of this site",
            });
        }
        let mut answer = self.accept(c, &b).await;
        if pixel && answer.status < 300 {
            answer.status = 200;
            answer.content_type = Some("image/gif");
            answer.body = beacon::PIXEL_GIF.to_vec();
        }
        answer
    }

    async fn accept(&self, c: &Client<'_>, b: &Beacon) -> BeaconAnswer {
        let counters = &self.metrics.site(c.site.index).collect;
        counters.beacon(kind_name(b.kind));
        let signals = self.signals(c);
        if signals.bot {
            counters
                .bots
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut v = self.identities.read(c.cookies.iter().copied());
        counters
            .cookies_rejected
            .fetch_add(u64::from(v.rejected), std::sync::atomic::Ordering::Relaxed);
        let now = unix_now();
        let mut cookies = Vec::new();

        if b.kind == BeaconKind::Consent {
            let granted = b.consent == Some(true);
            let was_storing = self.identities.may_store(&v, signals);
            cookies.extend(
                self.identities
                    .answer_consent(&mut v, granted, c.host, c.https),
            );
            if granted && self.identities.allowed(&v, signals) {
                cookies.extend(self.identities.ensure(&mut v, c.host, c.https, false, now));
            }
            // The page view sent before this answer was dropped: the tracker sends it again
            // (only then, so a returning visitor's consent call does not count a view twice).
            if !was_storing && self.identities.may_store(&v, signals) {
                return BeaconAnswer {
                    status: 200,
                    content_type: Some("application/json"),
                    body: br#"{"resend":true}"#.to_vec(),
                    set_cookies: cookies,
                };
            }
            return BeaconAnswer::no_content(cookies);
        }
        if !self.identities.may_store(&v, signals) {
            counters
                .no_consent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return BeaconAnswer::no_content(
                self.identities.forget_if_present(&v, c.host, c.https),
            );
        }
        let allowed = self.identities.allowed(&v, signals);
        let mut pending = Pending::new(self.settings.durability);
        if allowed {
            let roll = b.kind == BeaconKind::Pageview;
            pending.new_visitor = v.visitor_id.is_none();
            cookies.extend(self.identities.ensure(&mut v, c.host, c.https, roll, now));
        } else {
            cookies.extend(self.identities.forget_if_present(&v, c.host, c.https));
            v = Visitor::default();
        }

        let mut unavailable = false;
        if b.kind == BeaconKind::Form && allowed {
            if let Some(email) = &b.email {
                match self.contact_for(email).await {
                    Ok(Some(contact)) => {
                        cookies.extend(
                            self.identities
                                .identify(&mut v, contact, c.host, c.https, now),
                        );
                        let e = self.identify_event(c, &v, signals, b.url.as_str(), "form");
                        pending.enqueue(&self.queue, e).await;
                        counters.identify("form");
                    }
                    Ok(None) => {} // not an address: the form still counts below
                    Err(()) => unavailable = true,
                }
            }
        }
        if let Some(e) = self.event_from(c, &v, signals, b) {
            pending.enqueue(&self.queue, e).await;
        }
        if !unavailable && !pending.committed().await {
            self.queue.count_ack_failure();
            let mut a = BeaconAnswer::refused(Rejection {
                status: 503,
                reason: "event not stored; send it again",
            });
            a.set_cookies = cookies;
            return a;
        }
        if unavailable {
            let mut a = BeaconAnswer::refused(Rejection {
                status: 503,
                reason: "contact store unavailable",
            });
            a.set_cookies = cookies;
            return a;
        }
        let links = if allowed && matches!(b.kind, BeaconKind::Pageview | BeaconKind::Link) {
            self.link_tokens(c, &v, &b.hosts, now)
        } else {
            Vec::new()
        };
        if links.is_empty() {
            return BeaconAnswer::no_content(cookies);
        }
        let map: serde_json::Map<String, serde_json::Value> = links
            .into_iter()
            .map(|(h, t)| (h, serde_json::Value::String(t)))
            .collect();
        BeaconAnswer {
            status: 200,
            content_type: Some("application/json"),
            body: serde_json::to_vec(&serde_json::json!({ "links": map })).unwrap_or_default(),
            set_cookies: cookies,
        }
    }

    /// The contact for a form's address: `Ok(None)` for junk, `Err` when the store failed or
    /// took too long (it runs on a blocking thread, so no proxy thread waits on I/O).
    async fn contact_for(&self, email: &str) -> Result<Option<Uuid>, ()> {
        let Some(email) = crate::store::normalize_email(email) else {
            return Ok(None);
        };
        let store = self.store.clone();
        let now_ms = now_ms();
        let job =
            tokio::task::spawn_blocking(move || store.upsert_contact_by_email(&email, now_ms));
        match tokio::time::timeout(CONTACT_TIMEOUT, job).await {
            Ok(Ok(Ok(id))) => Uuid::try_parse(id.as_str()).map(Some).map_err(|_| ()),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "cannot record the contact of a form");
                Err(())
            }
            _ => {
                tracing::warn!("the contact store did not answer in time");
                Err(())
            }
        }
    }

    /// `_smx` tokens for the hosts on the page that belong to another configured site.
    fn link_tokens(
        &self,
        c: &Client,
        v: &Visitor,
        hosts: &[String],
        now: u64,
    ) -> Vec<(String, String)> {
        let Some((ids, contact)) = v.ids else {
            return Vec::new();
        };
        let contact = v.contact.or(contact);
        hosts
            .iter()
            .filter(|h| {
                self.router
                    .route(h)
                    .is_some_and(|s| s.index != c.site.index)
            })
            .map(|h| {
                let t = identity::issue_site_link(
                    self.identities.keys(),
                    ids,
                    contact,
                    h,
                    now,
                    LINK_TTL_SECS,
                );
                (h.clone(), t)
            })
            .collect()
    }

    /// Reads the identification parameters and cookies of a page navigation.
    pub fn page(&self, c: &Client<'_>, path: &str, query: Option<&str>) -> PageAnswer {
        let counters = &self.metrics.site(c.site.index).collect;
        let signals = self.signals(c);
        if signals.bot {
            counters
                .bots
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return PageAnswer::default();
        }
        let mut v = self.identities.read(c.cookies.iter().copied());
        counters
            .cookies_rejected
            .fetch_add(u64::from(v.rejected), std::sync::atomic::Ordering::Relaxed);
        let params = IdParams::read(query);
        let allowed = self.identities.allowed(&v, signals);
        let now = unix_now();
        let mut out = PageAnswer::default();
        if !allowed {
            out.set_cookies = self.identities.forget_if_present(&v, c.host, c.https);
        } else {
            out.set_cookies = self.identities.ensure(&mut v, c.host, c.https, false, now);
            let keys = self.identities.keys();
            let mut source = None;
            if let Some(token) = &params.smx {
                match identity::verify_site_link(keys, token, c.host, now) {
                    Ok(claims) => {
                        out.set_cookies.extend(self.identities.adopt(
                            &mut v,
                            claims.ids_id,
                            claims.contact_id,
                            c.host,
                            c.https,
                            now,
                        ));
                        source = claims.contact_id.map(|_| "linker");
                    }
                    Err(e) => tracing::debug!(error = e.as_str(), "ignored an _smx token"),
                }
            }
            if let Some(token) = &params.smlink {
                match identity::verify_personal_link(keys, token, now) {
                    Ok(claims) => {
                        out.set_cookies.extend(self.identities.identify(
                            &mut v,
                            claims.contact_id,
                            c.host,
                            c.https,
                            now,
                        ));
                        source = Some("personal_link");
                    }
                    Err(e) => tracing::debug!(error = e.as_str(), "ignored an smlink token"),
                }
            }
            if let Some(contact) = params
                .smclient
                .as_deref()
                .and_then(|s| Uuid::try_parse(s).ok())
            {
                out.set_cookies.extend(
                    self.identities
                        .identify(&mut v, contact, c.host, c.https, now),
                );
                source = Some("email_link");
            }
            if let Some(source) = source {
                counters.identify(source);
                let url = format!(
                    "{}://{}{}",
                    if c.https { "https" } else { "http" },
                    c.host,
                    path
                );
                self.enqueue(self.identify_event(c, &v, signals, &url, source));
            }
        }
        let strip = params.smx.is_some()
            || (self.settings.collect.strip_params
                && (params.smclient.is_some() || params.smlink.is_some()));
        if strip {
            out.redirect = clean_location(path, params.rest.as_deref());
        }
        out
    }

    fn enqueue(&self, e: Event) {
        // A full queue drops and counts (the writer's `dropped`); the visitor never waits.
        let _ = self.queue.try_enqueue(e);
    }

    fn base_event(
        &self,
        kind: EventKind,
        c: &Client,
        v: &Visitor,
        s: Signals,
        url: &url::Url,
    ) -> Event {
        let mut e = Event::new(
            kind,
            now_ms(),
            c.site.name.clone(),
            url.as_str(),
            url.path(),
        );
        e.visitor_id = v.visitor_id.clone();
        e.contact_id = v.contact_text();
        e.smids = v.ids_text();
        e.user_agent = c
            .user_agent
            .map(|ua| match ua.char_indices().nth(MAX_STORED_UA) {
                Some((end, _)) => ua[..end].to_owned(),
                None => ua.to_owned(),
            });
        if c.user_agent.is_some() {
            let agent = self.agents.lookup(c.user_agent);
            e.browser.clone_from(&agent.browser);
            e.os.clone_from(&agent.os);
            e.device.clone_from(&agent.device);
        }
        e.is_bot = s.bot;
        let cs = &self.settings.collect;
        e.ip_truncated = Some(truncate(c.ip, cs.ipv4_prefix, cs.ipv6_prefix));
        e.company = cs.companies.lookup(c.ip).map(str::to_owned);
        e
    }

    fn identify_event(
        &self,
        c: &Client,
        v: &Visitor,
        s: Signals,
        url: &str,
        source: &str,
    ) -> Event {
        let parsed = url::Url::parse(url)
            .unwrap_or_else(|_| url::Url::parse("http://invalid/").expect("static URL"));
        let mut e = self.base_event(EventKind::Identify, c, v, s, &parsed);
        e.identify_source = Some(source.to_string());
        e
    }

    fn event_from(&self, c: &Client, v: &Visitor, s: Signals, b: &Beacon) -> Option<Event> {
        let kind = match b.kind {
            BeaconKind::Pageview => EventKind::Pageview,
            BeaconKind::Engagement => EventKind::Engagement,
            BeaconKind::Event => EventKind::Custom,
            BeaconKind::Outbound => EventKind::OutboundClick,
            BeaconKind::Form => EventKind::Form,
            BeaconKind::Consent | BeaconKind::Link => return None,
        };
        let mut e = self.base_event(kind, c, v, s, &b.url);
        match b.kind {
            BeaconKind::Pageview => {
                e.title = b.title.clone();
                e.referrer = b.referrer.clone();
                e.screen = b.screen.clone();
                e.language = b.lang.clone();
                e.utm_source = b.utm("utm_source");
                e.utm_medium = b.utm("utm_medium");
                e.utm_campaign = b.utm("utm_campaign");
            }
            BeaconKind::Engagement => e.engaged_ms = b.engaged_ms,
            BeaconKind::Event => {
                e.name = b.name.clone();
                e.props_json = b.props_json.clone();
            }
            BeaconKind::Outbound => {
                // The event's URL is the link target; its path stays the page's.
                e.url = b.target.clone().unwrap_or_default();
            }
            BeaconKind::Form => {
                e.props_json =
                    serde_json::to_string(&serde_json::json!({ "fields": b.fields })).ok();
            }
            BeaconKind::Consent | BeaconKind::Link => {}
        }
        Some(e)
    }
}

/// Longest `Location` written when identification parameters are stripped. A longer URL is
/// served as it is (the visitor is identified all the same): echoing a huge request target
/// into a response header would let a crafted link produce answers that clients and caches
/// refuse.
pub const MAX_LOCATION: usize = 8 * 1024;

/// The same-origin URL without the identification parameters, or `None` when it would be
/// longer than [`MAX_LOCATION`]. A path that starts with `//` or `/\` would be read by a
/// browser as another host (a protocol-relative URL: an open redirect); `/.` in front keeps it
/// a path on this host (`/.//x` resolves to the path `//x`).
pub fn clean_location(path: &str, rest: Option<&str>) -> Option<String> {
    let prefix = if path.starts_with("//") || path.starts_with("/\\") {
        "/."
    } else {
        ""
    };
    let location = match rest {
        Some(q) if !q.is_empty() => format!("{prefix}{path}?{q}"),
        _ => format!("{prefix}{path}"),
    };
    (location.len() <= MAX_LOCATION).then_some(location)
}

/// The identification parameters of a page URL, and the query without them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdParams {
    pub smclient: Option<String>,
    pub smlink: Option<String>,
    pub smx: Option<String>,
    /// The rest of the query, re-encoded, when any parameter was found.
    pub rest: Option<String>,
}

impl IdParams {
    pub fn read(query: Option<&str>) -> IdParams {
        let Some(q) = query else {
            return IdParams::default();
        };
        // Cheap test first: almost no page request carries one.
        if !(q.contains(SMCLIENT_PARAM) || q.contains(SMLINK_PARAM) || q.contains(SMX_PARAM)) {
            return IdParams::default();
        }
        let mut p = IdParams::default();
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        let mut found = false;
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                SMCLIENT_PARAM => p.smclient = Some(v.into_owned()),
                SMLINK_PARAM => p.smlink = Some(v.into_owned()),
                SMX_PARAM => p.smx = Some(v.into_owned()),
                _ => {
                    rest.append_pair(&k, &v);
                    continue;
                }
            }
            found = true;
        }
        if found {
            p.rest = Some(rest.finish());
        }
        p
    }
}

/// The events of one beacon on their way to the writer, and, with strict durability, the
/// acknowledgements its answer waits for.
struct Pending {
    durability: Durability,
    acks: Vec<Ack>,
    refused: bool,
    /// The visitor id was created by this beacon: its first event says so (see
    /// [`Event::new_visitor`]).
    new_visitor: bool,
}

impl Pending {
    fn new(durability: Durability) -> Self {
        Pending {
            durability,
            acks: Vec::new(),
            refused: false,
            new_visitor: false,
        }
    }

    /// Marks the first event queued for a visitor created by this beacon, and only that one.
    fn mark_new_visitor(&mut self, e: &mut Event) {
        e.new_visitor = std::mem::take(&mut self.new_visitor) && e.visitor_id.is_some();
    }

    async fn enqueue(&mut self, queue: &EventQueue, mut e: Event) {
        self.mark_new_visitor(&mut e);
        match self.durability {
            // A full queue is waited on for a while, then drops and counts (the writer's
            // `delayed` and `dropped`); no visitor waits for a beacon's answer.
            Durability::Relaxed => {
                let _ = queue.enqueue(e, ROOM_PATIENCE).await;
            }
            Durability::Strict => match queue.enqueue_acked(e, ROOM_PATIENCE).await {
                Some(ack) => self.acks.push(ack),
                None => self.refused = true,
            },
        }
    }

    /// Whether every event is committed (always, in relaxed mode: nothing is awaited).
    async fn committed(self) -> bool {
        if self.refused {
            return false;
        }
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        for ack in self.acks {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(Ok(()))) => {}
                _ => return false,
            }
        }
        true
    }
}

fn kind_name(k: BeaconKind) -> &'static str {
    match k {
        BeaconKind::Pageview => "pageview",
        BeaconKind::Engagement => "engagement",
        BeaconKind::Event => "event",
        BeaconKind::Outbound => "outbound",
        BeaconKind::Form => "form",
        BeaconKind::Consent => "consent",
        BeaconKind::Link => "link",
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_event_of_a_new_visitor_is_marked() {
        let event = |visitor: Option<&str>| Event {
            visitor_id: visitor.map(str::to_owned),
            ..Event::new(EventKind::Form, 1, "shop", "https://s/", "/")
        };
        let mut pending = Pending::new(Durability::Relaxed);
        pending.new_visitor = true;
        let (mut first, mut second) = (event(Some("v")), event(Some("v")));
        pending.mark_new_visitor(&mut first);
        pending.mark_new_visitor(&mut second);
        assert!(first.new_visitor);
        assert!(!second.new_visitor);
        // A returning visitor's events, and events without a visitor, are never marked.
        let mut returning = event(Some("v"));
        Pending::new(Durability::Relaxed).mark_new_visitor(&mut returning);
        assert!(!returning.new_visitor);
        let mut pending = Pending::new(Durability::Relaxed);
        pending.new_visitor = true;
        let mut anonymous = event(None);
        pending.mark_new_visitor(&mut anonymous);
        assert!(!anonymous.new_visitor);
    }

    #[test]
    fn clean_locations_stay_on_this_host_and_are_bounded() {
        assert_eq!(clean_location("/a", Some("b=1")).as_deref(), Some("/a?b=1"));
        assert_eq!(clean_location("/a", Some("")).as_deref(), Some("/a"));
        assert_eq!(clean_location("/", None).as_deref(), Some("/"));
        let base = url::Url::parse("https://shop.example/").unwrap();
        for path in ["//evil.example/x", "/\\evil.example/x", "///evil.example"] {
            let location = clean_location(path, Some("q=1")).unwrap();
            let target = base.join(&location).unwrap();
            assert_eq!(
                target.host_str(),
                Some("shop.example"),
                "{path} -> {location}"
            );
        }
        let long = "x".repeat(MAX_LOCATION);
        assert_eq!(clean_location("/", Some(&long)), None);
        assert!(clean_location(&format!("/{}", &long[1..]), None).is_some());
    }

    #[test]
    fn id_params_are_found_and_removed() {
        assert_eq!(IdParams::read(None), IdParams::default());
        assert_eq!(IdParams::read(Some("a=1&b=2")), IdParams::default());
        let p = IdParams::read(Some(
            "a=1&smclient=0f8fad5b-d9cb-469f-a165-70867728950e&b=x%20y",
        ));
        assert_eq!(
            p.smclient.as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(p.rest.as_deref(), Some("a=1&b=x+y"));
        let p = IdParams::read(Some("_smx=tok"));
        assert_eq!(p.smx.as_deref(), Some("tok"));
        assert_eq!(p.rest.as_deref(), Some(""));
        // A parameter whose name only contains ours is not ours.
        assert_eq!(IdParams::read(Some("xsmclient=1")).rest, None);
    }
}
