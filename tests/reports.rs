//! The [`Reports`] of both stores (SQLite and PostgreSQL, each test body runs on both, see
//! `backend`) against a model: a seeded generator produces a few days of traffic
//! (several sites, returning visitors, sessions split by long pauses, robots, events without
//! a visitor, engagement, UTM tags, referrers, companies, contacts identified by form, by the
//! vendor's id and by mailing links, cross-site identities, a shared computer), stores it
//! through `insert_batch`, and every report is compared with figures computed here from the
//! generated list alone, following the definitions in `store::reports` (sessions included:
//! the model applies the 30-minute rule itself).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use smproxy::store::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Erased, Filter,
    Point, Row, SiteSeen, Stats, TimelineEntry, COMPANY_PAGES, MAX_BUCKETS,
};
use smproxy::store::{Event, EventKind, Reports, SqliteStore, Store, StoreError, SESSION_IDLE_MS};

#[macro_use]
mod backend;
use backend::{AnyStore, Backend, TestDb};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2025-01-01T00:00:00Z.
const START: i64 = 1_735_689_600_000;
const DAYS: i64 = 3;
const SITES: [&str; 3] = ["shop", "blog", "docs"];
const COMPANIES: [&str; 5] = ["ACME", "Globex", "Initech", "Umbrella", "Żabka"];

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Identity {
    Anonymous,
    /// Fills a form: a contact with an email, created before the traffic, identified once.
    Form(String),
    /// Recognised by a linker token: a vendor's id, identified once.
    Linker(String),
    /// Only ever arrives through mailing links: page views carrying the vendor's id, no link.
    Mailing(String),
}

struct Person {
    n: usize,
    smids: Option<String>,
    company: Option<&'static str>,
    browser: (&'static str, &'static str, &'static str),
    identity: Identity,
    identified: bool,
}

const BROWSERS: [(&str, &str, &str); 4] = [
    ("Chrome", "Windows 10", "pc"),
    ("Safari", "iPhone", "smartphone"),
    ("Firefox", "Linux", "pc"),
    ("Chrome", "Android", "tablet"),
];

/// External referrers (some in forms the host extraction must handle) and one that is another
/// of the generated sites, which is a referral too.
const REFERRERS: [&str; 7] = [
    "https://www.google.com/search?q=smproxy",
    "https://www.google.com/",
    "https://news.example/item#top",
    "https://user@blog.partner.example:8443/post?id=3",
    "android-app://com.google.android.gm/",
    "https://docs.example/guide",
    "https://WWW.Bing.com?q=x",
];

struct Scenario {
    /// What is inserted, in insertion order.
    events: Vec<Event>,
    /// Contacts created by `upsert_contact_by_email`: id, email, time.
    emailed: Vec<(String, String, i64)>,
}

struct Gen {
    rng: fastrand::Rng,
    events: Vec<Event>,
    vendor_ids: usize,
}

impl Gen {
    fn page(&mut self, site: &str) -> (String, String) {
        // Low page numbers are more popular, so breakdowns have clear leaders and some ties.
        let n = (self.rng.f64().powi(2) * 12.0) as usize;
        let path = if n == 0 {
            "/".to_owned()
        } else {
            format!("/p/{n}")
        };
        (
            format!("https://{site}.example{path}?x={}", self.rng.u8(..)),
            path,
        )
    }

    fn vendor_id(&mut self) -> String {
        self.vendor_ids += 1;
        format!("VENDOR-Abc-{:03}", self.vendor_ids)
    }

    /// One visit: page views with engagement and the odd other event; `gap` makes one pause
    /// in the middle longer than the session timeout (or exactly as long).
    fn visit(&mut self, p: &mut Person, start: i64, bot: bool, no_id: bool) {
        let site = if bot && self.rng.u8(..4) == 0 {
            "botsite"
        } else {
            SITES[self.rng.usize(..SITES.len())]
        };
        let visitor = if bot {
            Some(format!("bot-{}", p.n))
        } else if no_id {
            None
        } else {
            Some(format!("v{}-{site}", p.n))
        };
        let views = 1 + (self.rng.f64().powi(2) * 6.0) as usize;
        let pause_at = (self.rng.u8(..5) == 0).then(|| self.rng.usize(1..views.max(2)));
        let mailing = match (&p.identity, bot || no_id) {
            (Identity::Mailing(id), false) if self.rng.bool() => Some(id.clone()),
            _ => None,
        };
        // (campaign, source, medium); empty strings are "no value" too.
        let utm: Option<(&str, &str, &str)> = if mailing.is_some() {
            Some(("mailing-jan", "newsletter", "email"))
        } else {
            match self.rng.u8(..12) {
                0 => Some(("spring", "ads", "cpc")),
                1 => Some(("Spring", "facebook", "social")),
                2 => Some(("spring", "facebook", "")),
                3 => Some(("", "", "")),
                _ => None,
            }
        };
        let identify_at = match (&p.identity, p.identified, bot || no_id) {
            (Identity::Form(_) | Identity::Linker(_), false, false) if self.rng.bool() => {
                Some(self.rng.usize(..views))
            }
            _ => None,
        };
        let mut ts = start;
        let mut previous: Option<String> = match self.rng.u8(..3) {
            0 => None,
            _ => Some(REFERRERS[self.rng.usize(..REFERRERS.len())].to_owned()),
        };
        for i in 0..views {
            if pause_at == Some(i) {
                ts += if self.rng.bool() {
                    SESSION_IDLE_MS
                } else {
                    SESSION_IDLE_MS + self.rng.i64(1..2 * HOUR)
                };
            }
            let (url, path) = self.page(site);
            let mut e = Event::new(EventKind::Pageview, ts, site, url.clone(), path);
            e.visitor_id = visitor.clone();
            e.smids = if bot || no_id { None } else { p.smids.clone() };
            e.referrer = previous.replace(url);
            e.title = Some(format!("Title of {}", e.path));
            e.is_bot = bot;
            e.company = p.company.map(str::to_owned);
            if bot {
                e.browser = Some("Googlebot".into());
                e.os = Some("UNKNOWN".into());
                e.device = Some("crawler".into());
            } else if self.rng.u8(..10) > 0 {
                e.browser = Some(p.browser.0.into());
                e.os = Some(p.browser.1.into());
                e.device = Some(p.browser.2.into());
            }
            e.user_agent = Some(format!("Mozilla/5.0 ({})", p.browser.0));
            e.language = Some("pl-PL".into());
            e.screen = Some("1280x800".into());
            e.ip_truncated = Some("192.0.2.0".into());
            if i == 0 {
                e.utm_campaign = utm.map(|u| u.0.to_owned());
                e.utm_source = utm.map(|u| u.1.to_owned());
                e.utm_medium = utm.map(|u| u.2.to_owned());
                e.contact_id = mailing.clone();
            }
            let pageview = e.clone();
            self.events.push(e);
            ts += self.rng.i64(1..20_000);
            if identify_at == Some(i) {
                let contact = match &p.identity {
                    Identity::Form(id) | Identity::Linker(id) => id.clone(),
                    _ => unreachable!(),
                };
                let mut id = pageview.clone();
                id.kind = EventKind::Identify;
                id.ts_ms = ts;
                id.contact_id = Some(contact);
                id.identify_source = Some(
                    if matches!(p.identity, Identity::Form(_)) {
                        "form"
                    } else {
                        "linker"
                    }
                    .into(),
                );
                id.utm_campaign = None;
                self.events.push(id);
                p.identified = true;
                ts += self.rng.i64(1..20_000);
            }
            if self.rng.u8(..10) < 6 {
                let mut g = pageview.clone();
                g.kind = EventKind::Engagement;
                g.ts_ms = ts;
                g.engaged_ms = Some(self.rng.i64(500..90_000));
                g.contact_id = None;
                self.events.push(g);
                ts += self.rng.i64(1..20_000);
            }
            match self.rng.u8(..20) {
                0 => {
                    let mut c = pageview.clone();
                    c.kind = EventKind::Custom;
                    c.ts_ms = ts;
                    c.name = Some("add_to_cart".into());
                    c.props_json = Some(r#"{"sku":"A-1"}"#.into());
                    c.contact_id = None;
                    self.events.push(c);
                    ts += self.rng.i64(1..20_000);
                }
                1 => {
                    let mut o = pageview.clone();
                    o.kind = EventKind::OutboundClick;
                    o.ts_ms = ts;
                    o.url = "https://elsewhere.example/".into();
                    o.contact_id = None;
                    self.events.push(o);
                    ts += self.rng.i64(1..20_000);
                }
                _ => {}
            }
            ts += self.rng.i64(5_000..6 * MINUTE);
        }
    }
}

fn scenario(store: &impl Store) -> Scenario {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(7),
        events: Vec::new(),
        vendor_ids: 0,
    };
    let mut emailed = Vec::new();
    let mut people: Vec<Person> = Vec::new();
    for n in 0..45 {
        let identity = match g.rng.u8(..10) {
            0..=1 => {
                let email = format!("Person{n}@Firma{}.pl", n % 4);
                let at = START - g.rng.i64(1..DAY);
                let id = store.upsert_contact_by_email(&email, at).unwrap().0;
                emailed.push((id.clone(), email.to_lowercase(), at));
                Identity::Form(id)
            }
            2 => Identity::Linker(g.vendor_id()),
            3 => Identity::Mailing(g.vendor_id()),
            _ => Identity::Anonymous,
        };
        people.push(Person {
            n,
            smids: (g.rng.u8(..10) < 7).then(|| format!("smids-{n}")),
            // The first people, who visit most, cover every company.
            company: (g.rng.u8(..10) < 3 || n < COMPANIES.len())
                .then(|| COMPANIES[n % COMPANIES.len()]),
            browser: BROWSERS[g.rng.usize(..BROWSERS.len())],
            identity,
            identified: false,
        });
    }
    // A contact who never visits, and one who registers by email only after the traffic.
    let lonely = store
        .upsert_contact_by_email("lonely@example.com", START + DAYS * DAY)
        .unwrap()
        .0;
    emailed.push((lonely, "lonely@example.com".into(), START + DAYS * DAY));

    for _ in 0..520 {
        // Returning visitors: a squared uniform number favours the first people.
        let p = (g.rng.f64().powi(2) * people.len() as f64) as usize;
        let start = START + g.rng.i64(0..DAYS * DAY - 3 * HOUR);
        let bot = g.rng.u8(..100) < 8;
        let no_id = !bot && g.rng.u8(..100) < 8;
        g.visit(&mut people[p], start, bot, no_id);
    }
    // A robot working for a company, so that company has only robot traffic.
    let mut robot = Person {
        n: 99,
        smids: None,
        company: Some("RoboCorp"),
        browser: BROWSERS[0],
        identity: Identity::Anonymous,
        identified: false,
    };
    g.visit(&mut robot, START + DAY, true, false);

    // A shared computer: one browser (visitor and smids) used by two people, who identify one
    // after the other, then anonymous visits on another site with the same smids.
    let (x, y) = (g.vendor_id(), g.vendor_id());
    let shared = |kind, ts, site: &str, contact: Option<&String>| {
        let mut e = Event::new(
            kind,
            ts,
            site,
            format!("https://{site}.example/shared"),
            "/shared",
        );
        e.visitor_id = Some(format!("shared-{site}"));
        e.smids = Some("smids-shared".into());
        e.contact_id = contact.cloned();
        e.company = Some("Initech".into());
        e
    };
    let t = START + 2 * DAY + 7 * HOUR;
    g.events.extend([
        shared(EventKind::Pageview, t, "shop", None),
        shared(EventKind::Identify, t + 1_000, "shop", Some(&x)),
        shared(EventKind::Pageview, t + 2_000, "shop", None),
        shared(EventKind::Identify, t + 3 * HOUR, "shop", Some(&y)),
        shared(EventKind::Pageview, t + 3 * HOUR + 1_000, "shop", None),
        shared(EventKind::Pageview, t + 4 * HOUR, "docs", None),
    ]);

    // Stored in time order (stable, so equal times keep generation order) and in batches of
    // irregular size, so session state crosses batches.
    g.events.sort_by_key(|e| e.ts_ms);
    Scenario {
        events: g.events,
        emailed,
    }
}

fn insert(store: &impl Store, events: &[Event]) {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut rest = events;
    while !rest.is_empty() {
        let n = rng.usize(1..=150).min(rest.len());
        assert_eq!(store.insert_batch(&rest[..n]).unwrap(), n);
        rest = &rest[n..];
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Stored {
    /// The row id: events are inserted one by one into a fresh table, so 1, 2, 3, ...
    id: i64,
    e: Event,
    /// After inheritance from a linked visitor and attachment by a later identify event.
    contact: Option<String>,
    /// (visitor, n-th session of that visitor).
    session: Option<(String, u32)>,
}

#[derive(Clone)]
struct Model {
    events: Vec<Stored>,
    /// visitor -> (contact, linked_at).
    links: BTreeMap<String, (String, i64)>,
    /// id -> (email, first_seen, last_seen).
    contacts: BTreeMap<String, (Option<String>, i64, i64)>,
    /// name -> (first_seen, last_seen).
    companies: BTreeMap<String, (i64, i64)>,
}

impl Model {
    fn new(s: &Scenario) -> Self {
        let mut m = Model {
            events: Vec::new(),
            links: BTreeMap::new(),
            contacts: BTreeMap::new(),
            companies: BTreeMap::new(),
        };
        for (id, email, at) in &s.emailed {
            m.contacts
                .insert(id.clone(), (Some(email.clone()), *at, *at));
        }
        let mut sessions: HashMap<String, (u32, i64)> = HashMap::new();
        for (i, e) in s.events.iter().enumerate() {
            let session = e.visitor_id.as_ref().map(|v| {
                let state = sessions
                    .entry(v.clone())
                    .and_modify(|(n, last)| {
                        if e.ts_ms - *last > SESSION_IDLE_MS {
                            *n += 1;
                            *last = e.ts_ms;
                        } else {
                            *last = (*last).max(e.ts_ms);
                        }
                    })
                    .or_insert((0, e.ts_ms));
                (v.clone(), state.0)
            });
            let inherited = e
                .visitor_id
                .as_ref()
                .and_then(|v| m.links.get(v))
                .map(|(c, _)| c.clone());
            m.events.push(Stored {
                id: i as i64 + 1,
                e: e.clone(),
                contact: e.contact_id.clone().or(inherited),
                session,
            });
            if let Some(c) = &e.contact_id {
                m.contacts
                    .entry(c.clone())
                    .and_modify(|(_, first, last)| {
                        *first = (*first).min(e.ts_ms);
                        *last = (*last).max(e.ts_ms);
                    })
                    .or_insert((None, e.ts_ms, e.ts_ms));
                if let (EventKind::Identify, Some(v)) = (e.kind, &e.visitor_id) {
                    m.links.insert(v.clone(), (c.clone(), e.ts_ms));
                    for s in m.events.iter_mut() {
                        if s.e.visitor_id.as_ref() == Some(v) && s.contact.is_none() {
                            s.contact = Some(c.clone());
                        }
                    }
                }
            }
            if let Some(company) = &e.company {
                m.companies
                    .entry(company.clone())
                    .and_modify(|(first, last)| {
                        *first = (*first).min(e.ts_ms);
                        *last = (*last).max(e.ts_ms);
                    })
                    .or_insert((e.ts_ms, e.ts_ms));
            }
        }
        m
    }

    fn counted<'a>(&'a self, f: &'a Filter) -> impl Iterator<Item = &'a Stored> + 'a {
        self.events.iter().filter(move |s| {
            !s.e.is_bot
                && f.site.as_ref().is_none_or(|site| &s.e.site == site)
                && f.from_ms <= s.e.ts_ms
                && s.e.ts_ms < f.to_ms
        })
    }

    fn stats(&self, f: &Filter) -> Stats {
        let mut pageviews = 0;
        let mut visitors = HashSet::new();
        let mut sessions = HashSet::new();
        let mut contacts = HashSet::new();
        let mut engaged = 0i64;
        let mut views: HashMap<&(String, u32), i64> = HashMap::new();
        for s in self.counted(f) {
            if s.e.kind == EventKind::Pageview {
                pageviews += 1;
                if let Some(session) = &s.session {
                    *views.entry(session).or_default() += 1;
                }
            }
            if s.e.kind == EventKind::Engagement {
                engaged += s.e.engaged_ms.unwrap_or(0);
            }
            visitors.extend(s.e.visitor_id.clone());
            sessions.extend(s.session.clone());
            contacts.extend(s.contact.clone());
        }
        let viewed = views.len() as i64;
        let bounced = views.values().filter(|&&n| n == 1).count() as i64;
        let in_sessions: i64 = views.values().sum();
        let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Stats {
            pageviews,
            visitors: visitors.len() as u64,
            sessions: sessions.len() as u64,
            views_per_session: ratio(in_sessions, viewed),
            bounce_rate: ratio(bounced, viewed),
            mean_engaged_ms: ratio(engaged, viewed),
            contacts: contacts.len() as u64,
        }
    }

    fn timeseries(&self, f: &Filter, bucket: Bucket) -> Vec<Point> {
        let size = bucket.millis();
        let mut points = Vec::new();
        let mut start = f.from_ms.div_euclid(size) * size;
        while start < f.to_ms {
            let (mut pageviews, mut visitors) = (0, HashSet::new());
            for s in self.counted(f) {
                if start <= s.e.ts_ms && s.e.ts_ms < start + size {
                    pageviews += u64::from(s.e.kind == EventKind::Pageview);
                    visitors.extend(s.e.visitor_id.clone());
                }
            }
            points.push(Point {
                ts_ms: start,
                pageviews,
                visitors: visitors.len() as u64,
            });
            start += size;
        }
        points
    }

    fn breakdown(&self, f: &Filter, d: Dimension, limit: usize) -> Vec<Row> {
        let pageviews: Vec<&Stored> = self
            .counted(f)
            .filter(|s| s.e.kind == EventKind::Pageview)
            .collect();
        // (key, visitor) per counted page view, or per session for entry and exit pages.
        let keyed: Vec<(String, Option<String>)> = match d {
            Dimension::EntryPages | Dimension::ExitPages => {
                let mut by_session: BTreeMap<&(String, u32), Vec<&Stored>> = BTreeMap::new();
                for s in &pageviews {
                    if let Some(session) = &s.session {
                        by_session.entry(session).or_default().push(s);
                    }
                }
                by_session
                    .values()
                    .map(|views| {
                        let pick = if d == Dimension::EntryPages {
                            views.iter().min_by_key(|s| (s.e.ts_ms, s.id))
                        } else {
                            views.iter().max_by_key(|s| (s.e.ts_ms, s.id))
                        };
                        let s = pick.unwrap();
                        (s.e.path.clone(), s.e.visitor_id.clone())
                    })
                    .collect()
            }
            _ => pageviews
                .iter()
                .filter_map(|s| key(d, &s.e).map(|k| (k, s.e.visitor_id.clone())))
                .collect(),
        };
        let mut groups: BTreeMap<String, (u64, HashSet<String>)> = BTreeMap::new();
        for (k, visitor) in keyed {
            if k.is_empty() {
                continue;
            }
            let g = groups.entry(k).or_default();
            g.0 += 1;
            g.1.extend(visitor);
        }
        let mut rows: Vec<Row> = groups
            .into_iter()
            .map(|(key, (pageviews, visitors))| Row {
                key,
                pageviews,
                visitors: visitors.len() as u64,
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.pageviews, b.visitors)
                .cmp(&(a.pageviews, a.visitors))
                .then_with(|| a.key.cmp(&b.key))
        });
        rows.truncate(limit);
        rows
    }

    fn live_visitors(&self, site: Option<&str>, now: i64) -> u64 {
        let visitors: HashSet<&String> = self
            .events
            .iter()
            .filter(|s| !s.e.is_bot && site.is_none_or(|site| s.e.site == site))
            .filter(|s| now - 5 * MINUTE <= s.e.ts_ms && s.e.ts_ms <= now)
            .filter_map(|s| s.e.visitor_id.as_ref())
            .collect();
        visitors.len() as u64
    }

    fn sites_seen(&self) -> Vec<SiteSeen> {
        let mut sites: BTreeMap<&str, SiteSeen> = BTreeMap::new();
        for s in self.events.iter().filter(|s| !s.e.is_bot) {
            let seen = sites.entry(&s.e.site).or_insert(SiteSeen {
                site: s.e.site.clone(),
                first_seen_ms: s.e.ts_ms,
                last_seen_ms: s.e.ts_ms,
                events: 0,
            });
            seen.first_seen_ms = seen.first_seen_ms.min(s.e.ts_ms);
            seen.last_seen_ms = seen.last_seen_ms.max(s.e.ts_ms);
            seen.events += 1;
        }
        sites.into_values().collect()
    }

    /// The contact's events as `Reports::contact` defines them, bots included.
    fn their(&self, contact: &str) -> Vec<&Stored> {
        let seeds: HashSet<&String> = self
            .events
            .iter()
            .filter(|s| s.contact.as_deref() == Some(contact))
            .filter_map(|s| s.e.smids.as_ref())
            .collect();
        self.events
            .iter()
            .filter(|s| match &s.contact {
                Some(c) => c == contact,
                None => {
                    s.e.visitor_id
                        .as_ref()
                        .and_then(|v| self.links.get(v))
                        .is_some_and(|(c, _)| c == contact)
                        || s.e.smids.as_ref().is_some_and(|m| seeds.contains(m))
                }
            })
            .collect()
    }

    fn summary(&self, id: &str) -> ContactSummary {
        let (email, first, last) = self.contacts[id].clone();
        ContactSummary {
            id: id.to_owned(),
            email,
            first_seen_ms: first,
            last_seen_ms: last,
            pageviews: self
                .their(id)
                .iter()
                .filter(|s| !s.e.is_bot && s.e.kind == EventKind::Pageview)
                .count() as u64,
        }
    }

    fn contacts(&self, search: Option<&str>, limit: usize, offset: usize) -> Vec<ContactSummary> {
        let search = search.map(str::to_lowercase);
        let mut found: Vec<ContactSummary> = self
            .contacts
            .iter()
            .filter(|(id, (email, _, _))| match &search {
                None => true,
                Some(s) => {
                    id.to_lowercase().contains(s.as_str())
                        || email.as_ref().is_some_and(|e| e.contains(s.as_str()))
                }
            })
            .map(|(id, _)| self.summary(id))
            .collect();
        found.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        found.into_iter().skip(offset).take(limit).collect()
    }

    fn contact(&self, id: &str, timeline_limit: usize) -> Option<ContactCard> {
        self.contacts.get(id)?;
        let mut events: Vec<&Stored> = self.their(id).into_iter().filter(|s| !s.e.is_bot).collect();
        let sites: BTreeSet<String> = events.iter().map(|s| s.e.site.clone()).collect();
        let sessions: HashSet<&(String, u32)> =
            events.iter().filter_map(|s| s.session.as_ref()).collect();
        let campaigns: BTreeSet<String> = events
            .iter()
            .filter_map(|s| s.e.utm_campaign.clone())
            .filter(|c| !c.is_empty())
            .collect();
        let mut companies: BTreeMap<&String, usize> = BTreeMap::new();
        for s in &events {
            if let Some(c) = s.e.company.as_ref().filter(|c| !c.is_empty()) {
                *companies.entry(c).or_default() += 1;
            }
        }
        // Most frequent; the BTreeMap iterates alphabetically and max_by_key keeps the last
        // maximum, so iterate in reverse to keep the first name among equals.
        let company = companies
            .iter()
            .rev()
            .max_by_key(|(_, n)| **n)
            .map(|(c, _)| (*c).clone());
        events.sort_by_key(|s| std::cmp::Reverse((s.e.ts_ms, s.id)));
        Some(ContactCard {
            summary: self.summary(id),
            sites: sites.into_iter().collect(),
            sessions: sessions.len() as u64,
            engaged_ms: events
                .iter()
                .filter(|s| s.e.kind == EventKind::Engagement)
                .map(|s| s.e.engaged_ms.unwrap_or(0))
                .sum(),
            campaigns: campaigns.into_iter().collect(),
            company,
            timeline: events
                .iter()
                .take(timeline_limit)
                .map(|s| timeline(s))
                .collect(),
        })
    }

    fn companies(&self, f: &Filter, limit: usize) -> Vec<(String, u64, u64)> {
        let mut by: BTreeMap<&String, (HashSet<&String>, u64)> = BTreeMap::new();
        for s in self.counted(f) {
            if let Some(c) = s.e.company.as_ref().filter(|c| !c.is_empty()) {
                let g = by.entry(c).or_default();
                g.0.extend(s.e.visitor_id.as_ref());
                g.1 += u64::from(s.e.kind == EventKind::Pageview);
            }
        }
        let mut rows: Vec<(String, u64, u64)> = by
            .into_iter()
            .map(|(c, (v, pv))| (c.clone(), v.len() as u64, pv))
            .collect();
        rows.sort_by(|a, b| (b.1, b.2).cmp(&(a.1, a.2)).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(limit);
        rows
    }

    fn company(
        &self,
        name: &str,
        f: &Filter,
        timeline_limit: usize,
    ) -> (u64, u64, Vec<ContactSummary>, Vec<Row>, Vec<TimelineEntry>) {
        let mut of = self.clone();
        of.events.retain(|s| s.e.company.as_deref() == Some(name));
        let mut events: Vec<&Stored> = of.counted(f).collect();
        let visitors: HashSet<&String> = events
            .iter()
            .filter_map(|s| s.e.visitor_id.as_ref())
            .collect();
        let pageviews = events
            .iter()
            .filter(|s| s.e.kind == EventKind::Pageview)
            .count() as u64;
        let ids: BTreeSet<&String> = events.iter().filter_map(|s| s.contact.as_ref()).collect();
        let mut contacts: Vec<ContactSummary> = ids.iter().map(|id| self.summary(id)).collect();
        contacts.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        events.sort_by_key(|s| std::cmp::Reverse((s.e.ts_ms, s.id)));
        (
            visitors.len() as u64,
            pageviews,
            contacts,
            of.breakdown(f, Dimension::Pages, COMPANY_PAGES),
            events
                .iter()
                .take(timeline_limit)
                .map(|s| timeline(s))
                .collect(),
        )
    }

    fn erase(&mut self, id: &str) -> Erased {
        let gone: HashSet<i64> = self.their(id).iter().map(|s| s.id).collect();
        let before = self.links.len();
        self.links.retain(|_, (c, _)| c != id);
        let visitor_links = (before - self.links.len()) as u64;
        self.events.retain(|s| !gone.contains(&s.id));
        let contacts = u64::from(self.contacts.remove(id).is_some());
        Erased {
            contacts,
            events: gone.len() as u64,
            visitor_links,
        }
    }
}

/// The value a plain dimension groups a page view by (the model's own reading of the
/// definitions: the referrer's host through the `url` crate).
fn key(d: Dimension, e: &Event) -> Option<String> {
    match d {
        Dimension::Pages => Some(e.path.clone()),
        Dimension::UtmSource => e.utm_source.clone(),
        Dimension::UtmMedium => e.utm_medium.clone(),
        Dimension::UtmCampaign => e.utm_campaign.clone(),
        Dimension::Browsers => e.browser.clone(),
        Dimension::Os => e.os.clone(),
        Dimension::Devices => e.device.clone(),
        Dimension::Companies => e.company.clone(),
        Dimension::Sites => Some(e.site.clone()),
        Dimension::Referrers => {
            let host = |u: &str| {
                let u = url::Url::parse(u).ok()?;
                let host = u.host_str()?.to_lowercase();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            };
            let referrer = host(e.referrer.as_deref()?)?;
            (Some(&referrer) != host(&e.url).as_ref()).then_some(referrer)
        }
        Dimension::EntryPages | Dimension::ExitPages => unreachable!(),
    }
}

fn timeline(s: &Stored) -> TimelineEntry {
    TimelineEntry {
        ts_ms: s.e.ts_ms,
        kind: s.e.kind.as_str().to_owned(),
        site: s.e.site.clone(),
        url: s.e.url.clone(),
        path: s.e.path.clone(),
        title: s.e.title.clone(),
        referrer: s.e.referrer.clone(),
        engaged_ms: s.e.engaged_ms,
        name: s.e.name.clone(),
        props_json: s.e.props_json.clone(),
        utm_campaign: s.e.utm_campaign.clone(),
        identify_source: s.e.identify_source.clone(),
        // Session ids are random: only whether there is one is compared.
        session_id: s.session.as_ref().map(|_| "*".to_owned()),
    }
}

/// Timeline entries with `*` for their random session ids, as the model writes them.
fn without_sessions(entries: &[TimelineEntry]) -> Vec<TimelineEntry> {
    entries
        .iter()
        .map(|t| TimelineEntry {
            session_id: t.session_id.as_ref().map(|_| "*".to_owned()),
            ..t.clone()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

struct Fixture {
    // Dropped after the store (fields drop in order), which may hold connections to it.
    store: AnyStore,
    db: TestDb,
    model: Model,
}

fn fixture(backend: Backend, name: &str) -> Fixture {
    let db = TestDb::new(backend, name);
    let store = db.open();
    let s = scenario(&store);
    insert(&store, &s.events);
    let model = Model::new(&s);
    Fixture { store, db, model }
}

fn filter(site: Option<&str>, from_ms: i64, to_ms: i64) -> Filter {
    Filter {
        site: site.map(str::to_owned),
        from_ms,
        to_ms,
    }
}

/// Whole range, all sites; one site over an unaligned part of the range; another site over
/// everything; a range with no events; an empty range.
fn filters() -> Vec<Filter> {
    vec![
        filter(None, START, START + DAYS * DAY),
        filter(
            Some("shop"),
            START + DAY + 30 * MINUTE + 17,
            START + 2 * DAY + 5 * HOUR,
        ),
        filter(Some("blog"), START - DAY, START + 10 * DAY),
        filter(None, START - 3 * DAY, START - DAY + 1),
        filter(Some("docs"), START + DAY, START + DAY),
    ]
}

fn count(db: &TestDb, sql: &str, param: &str) -> i64 {
    db.count(sql, &[param])
}

/// The scenario has what the reports must handle, so a comparison with the model means
/// something.
fn the_scenario_covers_every_case(backend: Backend) {
    let fx = fixture(backend, "scenario");
    let model = &fx.model;
    let e = &model.events;
    let has = |p: &dyn Fn(&Stored) -> bool| e.iter().filter(|s| p(s)).count();
    assert!(e.len() > 2_000, "{} events", e.len());
    assert!(has(&|s| s.e.is_bot) > 50);
    assert!(has(&|s| s.e.visitor_id.is_none()) > 50);
    assert!(has(&|s| s.e.kind == EventKind::Identify) >= 5);
    assert!(has(&|s| s.e.kind == EventKind::Engagement) > 500);
    assert!(has(&|s| s.e.contact_id.is_some() && s.e.kind == EventKind::Pageview) >= 3);
    // Attached by a later identify, or inherited from the link.
    assert!(has(&|s| s.contact.is_some() && s.e.contact_id.is_none()) > 20);
    // Attributed to a contact only through their cross-site identity.
    let via_smids: usize = model
        .contacts
        .keys()
        .map(|c| {
            model
                .their(c)
                .iter()
                .filter(|s| s.contact.is_none())
                .count()
        })
        .sum();
    assert!(via_smids > 20, "{via_smids}");
    // Sessions split by a pause, and visitors with more than one session.
    let splits = e
        .iter()
        .filter(|s| s.session.as_ref().is_some_and(|(_, n)| *n > 0))
        .count();
    assert!(splits > 100);
    let stats = model.stats(&filters()[0]);
    assert!(stats.sessions > 200 && stats.bounce_rate > 0.1 && stats.bounce_rate < 0.9);
    for d in Dimension::ALL {
        assert!(
            model.breakdown(&filters()[0], d, usize::MAX).len() >= 3,
            "{d:?}"
        );
    }
    assert!(model.contacts.values().any(|(email, _, _)| email.is_none()));
    assert!(
        model
            .contacts
            .values()
            .filter(|(email, _, _)| email.is_some())
            .count()
            >= 5
    );
}

fn stats_match_the_model(backend: Backend) {
    let fx = fixture(backend, "stats");
    let (store, model) = (&fx.store, &fx.model);
    for f in filters() {
        assert_eq!(store.stats(&f).unwrap(), model.stats(&f), "{f:?}");
    }
    // Robots are not counted at all: a site only robots visit has nothing.
    let bots = filter(Some("botsite"), START, START + DAYS * DAY);
    assert_eq!(store.stats(&bots).unwrap(), Stats::default());
    assert!(store.count_events(Some("botsite")).unwrap() > 0);
}

fn timeseries_match_the_model_with_every_bucket(backend: Backend) {
    let fx = fixture(backend, "timeseries");
    let (store, model) = (&fx.store, &fx.model);
    for f in filters() {
        for bucket in [Bucket::Hour, Bucket::Day] {
            let got = store.timeseries(&f, bucket).unwrap();
            assert_eq!(got, model.timeseries(&f, bucket), "{f:?} {bucket:?}");
            for p in &got {
                assert_eq!(p.ts_ms % bucket.millis(), 0);
            }
        }
    }
    let all = &filters()[0];
    assert_eq!(store.timeseries(all, Bucket::Hour).unwrap().len(), 72);
    assert_eq!(store.timeseries(all, Bucket::Day).unwrap().len(), 3);
    // The unaligned range starts in the bucket containing `from`, ends in the one of `to - 1`.
    let part = store.timeseries(&filters()[1], Bucket::Hour).unwrap();
    assert_eq!(part.first().unwrap().ts_ms, START + DAY);
    assert_eq!(part.last().unwrap().ts_ms, START + 2 * DAY + 4 * HOUR);
    assert!(store
        .timeseries(&filters()[4], Bucket::Hour)
        .unwrap()
        .is_empty());
}

fn timeseries_refuse_absurd_ranges_without_panicking(backend: Backend) {
    let db = TestDb::new(backend, "absurd");
    let store = db.open();
    let too_long = filter(None, 0, (MAX_BUCKETS as i64 + 1) * HOUR);
    assert!(matches!(
        store.timeseries(&too_long, Bucket::Hour),
        Err(StoreError::InvalidRequest(_))
    ));
    let just_fits = filter(None, 0, MAX_BUCKETS as i64 * HOUR);
    assert_eq!(
        store.timeseries(&just_fits, Bucket::Hour).unwrap().len(),
        MAX_BUCKETS
    );
    for (from, to) in [
        (i64::MIN, i64::MAX),
        (i64::MIN, i64::MIN + 1),
        (i64::MAX - 1, i64::MAX),
    ] {
        let _ = store.timeseries(&filter(None, from, to), Bucket::Day);
    }
    let negative = store
        .timeseries(&filter(None, -DAY - 1, 0), Bucket::Day)
        .unwrap();
    assert_eq!(
        negative.iter().map(|p| p.ts_ms).collect::<Vec<_>>(),
        [-2 * DAY, -DAY]
    );
}

fn every_breakdown_matches_the_model(backend: Backend) {
    let fx = fixture(backend, "breakdown");
    let (store, model) = (&fx.store, &fx.model);
    for f in filters() {
        for d in Dimension::ALL {
            for limit in [0, 1, 5, usize::MAX] {
                assert_eq!(
                    store.breakdown(&f, d, limit).unwrap(),
                    model.breakdown(&f, d, limit),
                    "{f:?} {d:?} {limit}"
                );
            }
        }
    }
    // Spot checks of the definitions themselves, beyond agreeing with the model.
    let all = &filters()[0];
    let referrers = store
        .breakdown(all, Dimension::Referrers, usize::MAX)
        .unwrap();
    let hosts: Vec<&str> = referrers.iter().map(|r| r.key.as_str()).collect();
    for host in [
        "www.google.com",
        "blog.partner.example:8443",
        "www.bing.com",
        "com.google.android.gm",
    ] {
        assert!(hosts.contains(&host), "{host} in {hosts:?}");
    }
    // Internal navigation is no referral, but another of the sites is.
    assert!(!hosts.contains(&"shop.example"));
    assert!(hosts.contains(&"docs.example"));
    let campaigns = store
        .breakdown(all, Dimension::UtmCampaign, usize::MAX)
        .unwrap();
    assert!(campaigns.iter().all(|r| !r.key.is_empty()));
    assert!(
        campaigns.iter().any(|r| r.key == "Spring") && campaigns.iter().any(|r| r.key == "spring")
    );
    let devices = store
        .breakdown(all, Dimension::Devices, usize::MAX)
        .unwrap();
    assert!(devices.iter().all(|r| r.key != "crawler"));
    let entries: u64 = store
        .breakdown(all, Dimension::EntryPages, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.pageviews)
        .sum();
    let exits: u64 = store
        .breakdown(all, Dimension::ExitPages, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.pageviews)
        .sum();
    assert_eq!(entries, exits);
    assert!(entries <= store.stats(all).unwrap().sessions);
}

fn live_visitors_and_sites_seen_match_the_model(backend: Backend) {
    let fx = fixture(backend, "live");
    let (store, model) = (&fx.store, &fx.model);
    let mut nows: Vec<i64> = model
        .events
        .iter()
        .step_by(97)
        .flat_map(|s| {
            [
                s.e.ts_ms,
                s.e.ts_ms + 5 * MINUTE,
                s.e.ts_ms + 5 * MINUTE + 1,
                s.e.ts_ms - 1,
            ]
        })
        .collect();
    nows.push(START - DAY);
    let mut busy = 0;
    for now in nows {
        for site in [None, Some("shop"), Some("docs"), Some("botsite")] {
            let want = model.live_visitors(site, now);
            assert_eq!(
                store.live_visitors(site, now).unwrap(),
                want,
                "{site:?} {now}"
            );
            busy += usize::from(want > 0);
        }
    }
    assert!(busy > 40, "{busy}");

    let seen = store.sites_seen().unwrap();
    assert_eq!(seen, model.sites_seen());
    assert_eq!(
        seen.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(),
        ["blog", "docs", "shop"]
    );
}

fn contact_search_and_cards_match_the_model(backend: Backend) {
    let fx = fixture(backend, "contacts");
    let (store, model) = (&fx.store, &fx.model);
    for search in [
        None,
        Some(""),
        Some("FIRMA1"),
        Some("person1"),
        Some("vendor-abc-00"),
        Some("@"),
        Some("nobody"),
    ] {
        for (limit, offset) in [(usize::MAX, 0), (3, 0), (3, 2), (0, 0), (5, 1000)] {
            assert_eq!(
                store.contacts(search, limit, offset).unwrap(),
                model.contacts(search, limit, offset),
                "{search:?} {limit} {offset}"
            );
        }
    }
    let all = store.contacts(None, usize::MAX, 0).unwrap();
    assert_eq!(all.len(), model.contacts.len());
    assert!(all
        .windows(2)
        .all(|w| w[0].last_seen_ms >= w[1].last_seen_ms));
    assert!(
        store
            .contacts(Some("VENDOR-abc"), usize::MAX, 0)
            .unwrap()
            .len()
            >= 3
    );

    let mut with_smids_events = 0;
    for id in model.contacts.keys() {
        for limit in [0, 3, usize::MAX] {
            let got = store.contact(id, limit).unwrap().unwrap();
            let want = model.contact(id, limit).unwrap();
            assert_eq!(
                ContactCard {
                    timeline: without_sessions(&got.timeline),
                    ..got.clone()
                },
                want,
                "{id} {limit}"
            );
        }
        with_smids_events += usize::from(model.their(id).iter().any(|s| s.contact.is_none()));
    }
    assert!(with_smids_events >= 3);
    assert_eq!(store.contact("no-such-contact", 10).unwrap(), None);
}

/// Two people on one browser: each card has only their own attributed events, plus the
/// anonymous ones of that browser's cross-site identity.
fn a_shared_computer_keeps_two_histories(backend: Backend) {
    let fx = fixture(backend, "shared");
    let (store, model) = (&fx.store, &fx.model);
    let shared: Vec<&Stored> = model
        .events
        .iter()
        .filter(|s| s.e.smids.as_deref() == Some("smids-shared"))
        .collect();
    let x = shared[1].e.contact_id.clone().unwrap();
    let y = shared[3].e.contact_id.clone().unwrap();
    let cx = store.contact(&x, 100).unwrap().unwrap();
    let cy = store.contact(&y, 100).unwrap().unwrap();
    let paths = |c: &ContactCard| {
        c.timeline
            .iter()
            .map(|t| (t.ts_ms, t.kind.clone()))
            .collect::<Vec<_>>()
    };
    let t = shared[0].e.ts_ms;
    assert_eq!(
        paths(&cx),
        [
            (t + 4 * HOUR, "pageview".to_owned()),
            (t + 2_000, "pageview".to_owned()),
            (t + 1_000, "identify".to_owned()),
            (t, "pageview".to_owned()),
        ]
    );
    assert_eq!(
        paths(&cy),
        [
            (t + 4 * HOUR, "pageview".to_owned()),
            (t + 3 * HOUR + 1_000, "pageview".to_owned()),
            (t + 3 * HOUR, "identify".to_owned()),
        ]
    );
    assert_eq!(cx.sites, ["docs", "shop"]);
    assert_eq!(cx.company.as_deref(), Some("Initech"));
}

fn export_has_every_row_and_column(backend: Backend) {
    let fx = fixture(backend, "export");
    let (store, model) = (&fx.store, &fx.model);
    const EVENT_COLUMNS: [&str; 28] = [
        "id",
        "kind",
        "ts_ms",
        "site",
        "visitor_id",
        "contact_id",
        "smids",
        "session_id",
        "url",
        "path",
        "title",
        "referrer",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "screen",
        "language",
        "user_agent",
        "is_bot",
        "ip_truncated",
        "company",
        "engaged_ms",
        "name",
        "props_json",
        "identify_source",
        "browser",
        "os",
        "device",
    ];
    let mut linked = 0;
    for (id, (email, first, last)) in &model.contacts {
        let x = store.export_contact(id).unwrap().unwrap();
        let mut keys: Vec<&String> = x.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["contact", "events", "visitor_links"]);
        assert_eq!(
            x["contact"],
            serde_json::json!({"id": id, "email": email, "first_seen": first, "last_seen": last})
        );
        let links: Vec<serde_json::Value> = model
            .links
            .iter()
            .filter(|(_, (c, _))| c == id)
            .map(|(v, (c, at))| serde_json::json!({"visitor_id": v, "contact_id": c, "linked_at": at}))
            .collect();
        linked += links.len();
        assert_eq!(x["visitor_links"], serde_json::Value::Array(links));

        let mut their = model.their(id);
        their.sort_by_key(|s| (s.e.ts_ms, s.id));
        let events = x["events"].as_array().unwrap();
        assert_eq!(events.len(), their.len(), "{id}");
        for (got, s) in events.iter().zip(their) {
            let got = got.as_object().unwrap();
            let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut want_keys = EVENT_COLUMNS.to_vec();
            want_keys.sort_unstable();
            assert_eq!(keys, want_keys);
            let e = &s.e;
            let want = serde_json::json!({
                "id": s.id, "kind": e.kind.as_str(), "ts_ms": e.ts_ms, "site": e.site,
                "visitor_id": e.visitor_id, "contact_id": s.contact, "smids": e.smids,
                "session_id": got["session_id"], "url": e.url, "path": e.path, "title": e.title,
                "referrer": e.referrer, "utm_source": e.utm_source, "utm_medium": e.utm_medium,
                "utm_campaign": e.utm_campaign, "screen": e.screen, "language": e.language,
                "user_agent": e.user_agent, "is_bot": i64::from(e.is_bot),
                "ip_truncated": e.ip_truncated, "company": e.company,
                "engaged_ms": e.engaged_ms, "name": e.name, "props_json": e.props_json,
                "identify_source": e.identify_source, "browser": e.browser, "os": e.os,
                "device": e.device,
            });
            assert_eq!(serde_json::Value::Object(got.clone()), want);
            assert_eq!(got["session_id"].is_string(), e.visitor_id.is_some());
        }
    }
    assert!(linked >= 5);
    assert_eq!(store.export_contact("no-such-contact").unwrap(), None);
}

fn erase_removes_everything_about_one_contact_and_nothing_else(backend: Backend) {
    let mut fx = fixture(backend, "erase");
    let (store, db) = (&fx.store, &fx.db);
    let model = &mut fx.model;
    // The contacts with the most to erase: attributed events, links and smids events; and
    // one of the shared computer, whose companion must keep their attributed events.
    let mut ids: Vec<String> = model.contacts.keys().cloned().collect();
    ids.sort_by_key(|id| std::cmp::Reverse(model.their(id).len()));
    let shared_x = model
        .events
        .iter()
        .find(|s| s.e.smids.as_deref() == Some("smids-shared") && s.e.kind == EventKind::Identify)
        .and_then(|s| s.e.contact_id.clone())
        .unwrap();
    let mut victims = vec![ids[0].clone(), ids[1].clone()];
    if !victims.contains(&shared_x) {
        victims.push(shared_x);
    }
    let events_before = store.count_events(None).unwrap();
    let mut erased_events = 0;
    for id in &victims {
        let visitors: BTreeSet<String> = model
            .links
            .iter()
            .filter(|(_, (c, _))| c == id)
            .map(|(v, _)| v.clone())
            .chain(
                model
                    .their(id)
                    .iter()
                    .filter_map(|s| s.e.visitor_id.clone()),
            )
            .collect();
        let want = model.erase(id);
        assert!(want.events > 0 && want.contacts == 1, "{want:?}");
        assert_eq!(store.erase_contact(id).unwrap(), want, "{id}");
        erased_events += want.events;

        assert_eq!(store.contact(id, 10).unwrap(), None);
        assert_eq!(store.export_contact(id).unwrap(), None);
        assert!(store.contacts(Some(id), 10, 0).unwrap().is_empty());
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM contacts WHERE id = $1", id),
            0
        );
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM events WHERE contact_id = $1", id),
            0
        );
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM visitor_contacts WHERE contact_id = $1",
                id
            ),
            0
        );
        // What is left of the visitors (their current sessions included: the session of
        // their latest event) is what the model keeps.
        for v in &visitors {
            let kept = model
                .events
                .iter()
                .filter(|s| s.e.visitor_id.as_deref() == Some(v.as_str()))
                .count();
            assert_eq!(
                count(db, "SELECT COUNT(*) FROM events WHERE visitor_id = $1", v),
                kept as i64,
                "{v}"
            );
        }
        // Erasing again finds nothing.
        assert_eq!(store.erase_contact(id).unwrap(), Erased::default());
    }
    assert_eq!(
        store.count_events(None).unwrap(),
        events_before - erased_events
    );
    assert_eq!(store.count_events(None).unwrap(), model.events.len() as u64);

    // Everyone else is as the model (with those events gone) says, attributed events intact.
    for id in model.contacts.keys() {
        let got = store.contact(id, usize::MAX).unwrap().unwrap();
        let want = model.contact(id, usize::MAX).unwrap();
        assert_eq!(
            ContactCard {
                timeline: without_sessions(&got.timeline),
                ..got
            },
            want,
            "{id}"
        );
        let attributed = model
            .events
            .iter()
            .filter(|s| s.contact.as_ref() == Some(id))
            .count();
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM events WHERE contact_id = $1", id),
            attributed as i64
        );
    }
    assert_eq!(
        store.contacts(None, usize::MAX, 0).unwrap(),
        model.contacts(None, usize::MAX, 0)
    );
    for f in filters() {
        assert_eq!(store.stats(&f).unwrap(), model.stats(&f));
    }
}

fn companies_and_company_cards_match_the_model(backend: Backend) {
    let fx = fixture(backend, "companies");
    let (store, model) = (&fx.store, &fx.model);
    let mut ids: BTreeMap<String, i64> = BTreeMap::new();
    for f in filters() {
        for limit in [0, 2, usize::MAX] {
            let got = store.companies(&f, limit).unwrap();
            let want = model.companies(&f, limit);
            assert_eq!(
                got.iter()
                    .map(|c| (c.name.clone(), c.visitors, c.pageviews))
                    .collect::<Vec<_>>(),
                want,
                "{f:?} {limit}"
            );
            for c in got {
                let (first, last) = model.companies[&c.name];
                assert_eq!((c.first_seen_ms, c.last_seen_ms), (first, last));
                assert_eq!(*ids.entry(c.name.clone()).or_insert(c.id), c.id);
            }
        }
    }
    // Every company with real traffic was listed; the robots' company never is.
    assert_eq!(ids.keys().cloned().collect::<Vec<_>>(), {
        let mut names: Vec<String> = COMPANIES.iter().map(|c| c.to_string()).collect();
        names.sort();
        names
    });
    assert!(model.companies.contains_key("RoboCorp"));

    let mut with_contacts = 0;
    for (name, &id) in &ids {
        for f in filters() {
            for limit in [0, 4, usize::MAX] {
                let got: CompanyCard = store.company(id, &f, limit).unwrap().unwrap();
                let (visitors, pageviews, contacts, pages, timeline) =
                    model.company(name, &f, limit);
                let (first, last) = model.companies[name];
                assert_eq!(
                    got.summary,
                    CompanySummary {
                        id,
                        name: name.clone(),
                        first_seen_ms: first,
                        last_seen_ms: last,
                        visitors,
                        pageviews,
                    }
                );
                assert_eq!(got.contacts, contacts, "{name} {f:?}");
                assert_eq!(got.pages, pages, "{name} {f:?}");
                assert_eq!(
                    without_sessions(&got.timeline),
                    timeline,
                    "{name} {f:?} {limit}"
                );
                with_contacts += usize::from(!got.contacts.is_empty());
            }
        }
    }
    assert!(with_contacts > 3);
    assert_eq!(store.company(-1, &filters()[0], 10).unwrap(), None);
}

/// Reports read through their own connection: an open write transaction on the file (another
/// process, or the writer in the middle of a batch) neither blocks them nor shows them
/// uncommitted rows.
fn reports_read_committed_data_while_a_write_is_open(backend: Backend) {
    let fx = fixture(backend, "concurrent");
    let (store, model, db) = (&fx.store, &fx.model, &fx.db);
    let all = filters()[0].clone();
    let before = store.stats(&all).unwrap();
    // Another connection inserts a row and keeps its transaction open.
    let late = "INSERT INTO events (kind, ts_ms, site, visitor_id, url, path)
                VALUES ('pageview', $1, 'shop', 'late', 'https://shop.example/', '/')";
    let commit: Box<dyn FnOnce()> = match backend {
        Backend::Sqlite => {
            let other = rusqlite::Connection::open(db.sqlite_path()).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            other.execute(late, [START + 10]).unwrap();
            Box::new(move || other.execute_batch("COMMIT").unwrap())
        }
        Backend::Postgres => {
            let mut other = postgres::Client::connect(&db.pg_url(), postgres::NoTls).unwrap();
            other.batch_execute("BEGIN").unwrap();
            other.execute(late, &[&(START + 10)]).unwrap();
            Box::new(move || other.batch_execute("COMMIT").unwrap())
        }
    };
    assert_eq!(store.stats(&all).unwrap(), before);
    assert_eq!(before, model.stats(&all));
    commit();
    assert_eq!(store.stats(&all).unwrap().pageviews, before.pageviews + 1);
}

#[test]
fn an_in_memory_store_reports_too() {
    let store = SqliteStore::open_in_memory().unwrap();
    let s = scenario(&store);
    insert(&store, &s.events);
    let model = Model::new(&s);
    for f in filters() {
        assert_eq!(store.stats(&f).unwrap(), model.stats(&f));
        assert_eq!(
            store.breakdown(&f, Dimension::EntryPages, 5).unwrap(),
            model.breakdown(&f, Dimension::EntryPages, 5)
        );
    }
}

/// A file of schema version 2 (events without browser, os and device) gains the columns and
/// keeps its rows; new events fill them.
#[test]
fn a_version_2_file_migrates_to_3() {
    let dir = TestDb::new(Backend::Sqlite, "v2");
    {
        let store = SqliteStore::open_at_version(dir.sqlite_path(), 2).unwrap();
        assert_eq!(store.schema_version().unwrap(), 2);
        let conn = rusqlite::Connection::open(dir.sqlite_path()).unwrap();
        assert!(conn.prepare("SELECT browser FROM events").is_err());
        conn.execute(
            "INSERT INTO events (kind, ts_ms, site, visitor_id, session_id, url, path)
             VALUES ('pageview', ?1, 'shop', 'v1', 's1', 'https://shop.example/', '/')",
            [START],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.sqlite_path()).unwrap();
    assert!(SqliteStore::latest_schema_version() >= 3);
    assert_eq!(
        store.schema_version().unwrap(),
        SqliteStore::latest_schema_version()
    );
    let mut e = Event::new(
        EventKind::Pageview,
        START + 1,
        "shop",
        "https://shop.example/a",
        "/a",
    );
    e.visitor_id = Some("v2".into());
    e.browser = Some("Firefox".into());
    e.os = Some("Linux".into());
    e.device = Some("pc".into());
    store.insert_batch(&[e]).unwrap();
    let f = filter(None, START, START + 2);
    assert_eq!(
        store.breakdown(&f, Dimension::Browsers, 10).unwrap(),
        [Row {
            key: "Firefox".into(),
            pageviews: 1,
            visitors: 1
        }]
    );
    assert_eq!(store.stats(&f).unwrap().pageviews, 2);
    assert_eq!(store.breakdown(&f, Dimension::Pages, 10).unwrap().len(), 2);
    let conn = rusqlite::Connection::open(dir.sqlite_path()).unwrap();
    let nulls: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE browser IS NULL AND os IS NULL AND device IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 1);
}

both_backends!(
    the_scenario_covers_every_case,
    stats_match_the_model,
    timeseries_match_the_model_with_every_bucket,
    every_breakdown_matches_the_model,
    live_visitors_and_sites_seen_match_the_model,
    contact_search_and_cards_match_the_model,
    a_shared_computer_keeps_two_histories,
    export_has_every_row_and_column,
    erase_removes_everything_about_one_contact_and_nothing_else,
    companies_and_company_cards_match_the_model,
    reports_read_committed_data_while_a_write_is_open,
    timeseries_refuse_absurd_ranges_without_panicking,
);
