//! The admin listener over real HTTP: a Pingora server with only the admin service, in front of
//! a real SQLite store (contacts, readiness) and a fixed in-test `Reports` whose values are
//! hostile on purpose (markup in titles and names, spreadsheet formulas in page paths).
//! Access control on every route, the login form and its session cookie, CSRF, the login rate
//! limit, parameter validation, CSV exports, HTML escaping and the security headers.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use serde_json::Value;

use common::{free_addr, request, request_body, Resp, TempDir};
use smproxy::admin::routes::{Kind, ROUTES};
use smproxy::admin::AdminApp;
use smproxy::config::Secret;
use smproxy::identity::Keys;
use smproxy::metrics::Metrics;
use smproxy::store::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Erased, Filter,
    Point, Reports, Row, SiteSeen, Stats, TimelineEntry,
};
use smproxy::store::{ContactId, Event, SqliteStore, Store, StoreError};

const TOKEN: &str = "admin-test-token-0123456789";
const SECRET: &str = "admin-test-secret-admin-test-secret-0123";
/// The contact the fake reports know.
const C1: &str = "0b8e4c2a-5d1f-4e6b-9a3c-2f1e0d9c8b7a";
const XSS: &str = "<img src=x onerror=alert(1)>";
const XSS_ESCAPED: &str = "&lt;img src=x onerror=alert(1)&gt;";
const FORMULA: &str = "=cmd|' /C calc'!A0";

// ---- a fixed report store --------------------------------------------------------------

struct FakeReports;

fn entry(ts_ms: i64) -> TimelineEntry {
    TimelineEntry {
        ts_ms,
        kind: "pageview".into(),
        site: "shop".into(),
        url: "javascript:alert(1)//".into(),
        path: "/\"><script>alert(2)</script>".into(),
        title: Some(XSS.into()),
        referrer: Some("https://ref.example/?q=<b>".into()),
        engaged_ms: None,
        name: None,
        props_json: Some("{\"a\":1}".into()),
        utm_campaign: Some("spring".into()),
        identify_source: None,
        session_id: Some("s1".into()),
    }
}

fn summary() -> ContactSummary {
    ContactSummary {
        id: C1.into(),
        email: Some("<b>jan</b>@example.com".into()),
        first_seen_ms: 1_700_000_000_000,
        last_seen_ms: 1_700_000_100_000,
        pageviews: 7,
    }
}

fn company() -> CompanySummary {
    CompanySummary {
        id: 1,
        name: "<script>alert(3)</script> GmbH".into(),
        first_seen_ms: 1_700_000_000_000,
        last_seen_ms: 1_700_000_100_000,
        visitors: 2,
        pageviews: 9,
    }
}

impl Reports for FakeReports {
    fn stats(&self, _f: &Filter) -> Result<Stats, StoreError> {
        Ok(Stats {
            pageviews: 12,
            visitors: 5,
            sessions: 6,
            views_per_session: 2.0,
            bounce_rate: 0.5,
            mean_engaged_ms: 30_000.0,
            contacts: 1,
        })
    }

    fn timeseries(&self, f: &Filter, bucket: Bucket) -> Result<Vec<Point>, StoreError> {
        let step = bucket.millis();
        let start = f.from_ms.div_euclid(step) * step;
        Ok((0..)
            .map(|i| start + i * step)
            .take_while(|t| *t < f.to_ms)
            .enumerate()
            .map(|(i, ts_ms)| Point {
                ts_ms,
                pageviews: i as u64 % 5,
                visitors: i as u64 % 3,
            })
            .collect())
    }

    fn breakdown(&self, _f: &Filter, _d: Dimension, limit: usize) -> Result<Vec<Row>, StoreError> {
        let rows = [(XSS, 10, 4), (FORMULA, 3, 2), ("/plain", 1, 1)];
        Ok(rows
            .iter()
            .take(limit)
            .map(|(k, p, v)| Row {
                key: k.to_string(),
                pageviews: *p,
                visitors: *v,
            })
            .collect())
    }

    fn live_visitors(&self, _site: Option<&str>, _now_ms: i64) -> Result<u64, StoreError> {
        Ok(2)
    }

    fn sites_seen(&self) -> Result<Vec<SiteSeen>, StoreError> {
        Ok(vec![SiteSeen {
            site: "shop".into(),
            first_seen_ms: 1_700_000_000_000,
            last_seen_ms: 1_700_000_100_000,
            events: 10,
        }])
    }

    fn contacts(
        &self,
        search: Option<&str>,
        _limit: usize,
        offset: usize,
    ) -> Result<Vec<ContactSummary>, StoreError> {
        let all = vec![summary()];
        Ok(all
            .into_iter()
            .skip(offset)
            .filter(|c| search.is_none_or(|s| c.email.as_deref().unwrap_or("").contains(s)))
            .collect())
    }

    fn contact(&self, id: &str, timeline_limit: usize) -> Result<Option<ContactCard>, StoreError> {
        if id != C1 {
            return Ok(None);
        }
        Ok(Some(ContactCard {
            summary: summary(),
            sites: vec!["shop".into()],
            sessions: 2,
            engaged_ms: 42_000,
            campaigns: vec!["<i>spring</i>".into()],
            company: Some(company().name),
            timeline: (0..3)
                .map(|i| entry(1_700_000_000_000 + i))
                .take(timeline_limit)
                .collect(),
        }))
    }

    fn export_contact(&self, id: &str) -> Result<Option<Value>, StoreError> {
        Ok((id == C1).then(|| serde_json::json!({ "contact": { "id": C1 }, "events": [] })))
    }

    fn erase_contact(&self, id: &str) -> Result<Erased, StoreError> {
        Ok(if id == C1 {
            Erased {
                contacts: 1,
                events: 3,
                visitor_links: 1,
            }
        } else {
            Erased::default()
        })
    }

    fn companies(&self, _f: &Filter, _limit: usize) -> Result<Vec<CompanySummary>, StoreError> {
        Ok(vec![company()])
    }

    fn company(
        &self,
        id: i64,
        _f: &Filter,
        timeline_limit: usize,
    ) -> Result<Option<CompanyCard>, StoreError> {
        if id != 1 {
            return Ok(None);
        }
        Ok(Some(CompanyCard {
            summary: company(),
            contacts: vec![summary()],
            pages: vec![Row {
                key: XSS.into(),
                pageviews: 3,
                visitors: 1,
            }],
            timeline: (0..2).map(entry).take(timeline_limit).collect(),
        }))
    }
}

/// A store that is down.
struct DownStore;

impl Store for DownStore {
    fn insert_batch(&self, _events: &[Event]) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn upsert_contact_by_email(&self, _email: &str, _now: i64) -> Result<ContactId, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn link_visitor(&self, _v: &str, _c: &ContactId, _now: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn count_events(&self, _site: Option<&str>) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn delete_older_than(&self, _cutoff_ms: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

// ---- the admin service on a loopback port ----------------------------------------------

struct ChannelSignal(Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for ChannelSignal {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().unwrap().take();
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        ShutdownSignal::FastShutdown
    }
}

struct Options {
    token: Option<&'static str>,
    down: bool,
    failures_per_minute: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: Some(TOKEN),
            down: false,
            failures_per_minute: 1000,
        }
    }
}

struct Admin {
    addr: String,
    keys: Keys,
    token_file: Option<PathBuf>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    dir: TempDir,
}

impl Admin {
    fn start(o: Options) -> Admin {
        let addr = free_addr();
        let dir = TempDir::new("admin");
        let db = dir.0.join("events.db");
        let mut yaml = format!(
            "client_id: testclient\nsites:\n  - name: shop\n    hosts: ['shop.example', '*.shop.example']\n    upstream: '127.0.0.1:1'\n  - name: blog\n    hosts: ['blog.example']\n    upstream: '127.0.0.1:2'\nstore:\n  sqlite: '{}'\nadmin:\n  listen: '{addr}'\n",
            db.display()
        );
        if let Some(t) = o.token {
            yaml.push_str(&format!("  token: '{t}'\n"));
        }
        let settings = Arc::new(smproxy::config::parse_str(&yaml).unwrap());
        let metrics = Arc::new(Metrics::new(settings.sites.iter().map(|s| s.name.clone())));
        let store: Arc<dyn Store> = if o.down {
            Arc::new(DownStore)
        } else {
            Arc::new(SqliteStore::open(&db).unwrap())
        };
        let keys = || Keys::new(&[Secret::new(SECRET.into())]).unwrap();
        let app = AdminApp::with_store(settings, metrics, store, Arc::new(FakeReports), keys())
            .unwrap()
            .with_failure_limit(o.failures_per_minute);
        let token_file = app.token_file().map(|p| p.to_path_buf());

        let tag = addr.replace(['.', ':'], "_");
        let conf = ServerConf {
            threads: 1,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(0),
            upgrade_sock: format!("/tmp/smproxy-admin-test-{tag}.sock"),
            pid_file: format!("/tmp/smproxy-admin-test-{tag}.pid"),
            ..ServerConf::default()
        };
        let opt = Opt {
            upgrade: false,
            daemon: false,
            nocapture: false,
            test: false,
            conf: None,
        };
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        server.bootstrap();
        let mut service = Service::new("smproxy admin".to_string(), app);
        service.add_tcp(&addr);
        server.add_service(service);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(ChannelSignal(Mutex::new(Some(rx)))),
            });
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "admin never accepted");
            thread::sleep(Duration::from_millis(5));
        }
        Admin {
            addr,
            keys: keys(),
            token_file,
            stop: Some(tx),
            thread: Some(thread),
            dir,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(&self.addr, "GET", path, headers)
    }

    fn bearer(&self, method: &str, path: &str) -> Resp {
        let auth = format!("Bearer {TOKEN}");
        request(&self.addr, method, path, &[("Authorization", &auth)])
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        request_body(&self.addr, method, path, headers, body.as_bytes())
    }

    /// Logs in with the form; returns the `Cookie` header value and the session's CSRF token.
    fn login(&self) -> (String, String) {
        let body = format!("token={TOKEN}&next=%2Fcontacts");
        let r = self.send(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        );
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/contacts"));
        let set = r
            .header("set-cookie")
            .expect("a session cookie")
            .to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let page = self.get("/", &[("Cookie", &cookie)]);
        assert_eq!(page.status, 200, "{}", page.text());
        (cookie, csrf_of(&page.text()))
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field")
        + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

fn json(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// Every route with its `{id}` filled in.
fn concrete(pattern: &str) -> String {
    if pattern.starts_with("/companies") || pattern.starts_with("/api/companies") {
        pattern.replace("{id}", "1")
    } else {
        pattern.replace("{id}", C1)
    }
}

// ---- access ----------------------------------------------------------------------------

#[test]
fn without_a_token_every_route_but_health_is_closed() {
    let admin = Admin::start(Options::default());
    assert_eq!(admin.get("/healthz", &[]).status, 200);
    assert_eq!(admin.get("/static/style.css", &[]).status, 200);
    assert_eq!(admin.get("/login", &[]).status, 200);
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.kind != Kind::Public) {
        let path = concrete(route.pattern);
        let r = if route.method == "GET" {
            admin.get(&path, &[])
        } else {
            admin.send(route.method, &path, &[], "")
        };
        if route.kind == Kind::Page && route.method == "GET" {
            assert_eq!(r.status, 303, "{} {path}", route.method);
            assert!(
                r.header("location").unwrap().starts_with("/login?next=%2F"),
                "{:?}",
                r.header("location")
            );
        } else {
            assert_eq!(r.status, 401, "{} {path}: {}", route.method, r.text());
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
        if route.kind == Kind::Api {
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(json(&r)["error"].is_string());
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked}");
    // Unknown paths do not reveal whether they exist.
    assert_eq!(admin.get("/api/nope", &[]).status, 401);
    assert_eq!(admin.get("/nope", &[]).status, 401);
    // A cookie that is no session is no access.
    let forged = admin.get("/api/status", &[("Cookie", "smadmin=0123456789abcdef")]);
    assert_eq!(forged.status, 401);
}

#[test]
fn a_wrong_token_is_refused_on_every_route() {
    let admin = Admin::start(Options::default());
    for auth in [
        "Bearer admin-test-token-0123456788",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        format!("bearer {TOKEN}x").as_str(),
    ] {
        for route in ROUTES.iter().filter(|r| r.kind != Kind::Public) {
            let path = concrete(route.pattern);
            let r = admin.send(route.method, &path, &[("Authorization", auth)], "");
            if route.kind == Kind::Page && route.method == "GET" {
                assert_eq!(r.status, 303, "{auth}: {} {path}", route.method);
            } else {
                assert_eq!(r.status, 401, "{auth}: {} {path}", route.method);
            }
        }
    }
}

#[test]
fn the_token_opens_every_read_route() {
    let admin = Admin::start(Options::default());
    for route in ROUTES
        .iter()
        .filter(|r| r.method == "GET" && r.pattern != "/login")
    {
        let path = concrete(route.pattern);
        let path = if path == "/api/breakdown" {
            "/api/breakdown?dimension=pages".to_string()
        } else {
            path
        };
        let r = admin.bearer("GET", &path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        for (name, value) in [
            ("content-security-policy", smproxy::admin::respond::CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(r.header(name), Some(value), "{name} on {path}");
        }
    }
    let metrics = admin.bearer("GET", "/metrics");
    assert!(metrics.text().contains("smproxy_pages_injected_total"));
    assert_eq!(admin.bearer("GET", "/readyz").text(), "ready\n");
    // The scheme is case-insensitive.
    let lower = format!("bearer {TOKEN}");
    assert_eq!(
        admin.get("/api/live", &[("Authorization", &lower)]).status,
        200
    );
    // HEAD works where GET does, without a body.
    let head = request(&admin.addr, "HEAD", "/healthz", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Known path, other method.
    let put = admin.bearer("PUT", "/api/contacts/x");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, DELETE, HEAD"));
    assert_eq!(admin.bearer("GET", "/api/nope").status, 404);
}

#[test]
fn the_login_form_opens_a_session_until_logout() {
    let admin = Admin::start(Options::default());
    let page = admin.get("/login?next=%2Fcompanies", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"token\""));
    assert!(page.text().contains("value=\"/companies\""));

    let wrong = admin.send(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=nope",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    // An open redirect through `next` is refused.
    let r = admin.send(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}&next=%2F%2Fevil.example%2F"),
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(set.starts_with("smadmin="), "{set}");

    let (cookie, csrf) = admin.login();
    assert_eq!(csrf.len(), 64);
    for path in ["/", "/contacts", "/api/status", "/metrics", "/readyz"] {
        let r = admin.get(path, &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "{path}");
    }
    // Logged in, the login page sends you on.
    let again = admin.get("/login?next=%2Fcontacts", &[("Cookie", &cookie)]);
    assert_eq!(again.status, 303);
    assert_eq!(again.header("location"), Some("/contacts"));

    // Logging out needs the CSRF token too, then the cookie is worthless.
    let no_csrf = admin.send("POST", "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(no_csrf.status, 403);
    let out = admin.send(
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    );
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(admin.get("/api/status", &[("Cookie", &cookie)]).status, 401);
    assert_eq!(admin.get("/", &[("Cookie", &cookie)]).status, 303);
}

#[test]
fn cookie_sessions_need_the_csrf_token_to_change_anything() {
    let admin = Admin::start(Options::default());
    let (cookie, csrf) = admin.login();
    let delete = format!("/api/contacts/{C1}");
    assert_eq!(
        admin
            .send("DELETE", &delete, &[("Cookie", &cookie)], "")
            .status,
        403
    );
    let wrong = admin.send(
        "DELETE",
        &delete,
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", "0".repeat(64).as_str()),
        ],
        "",
    );
    assert_eq!(wrong.status, 403);
    let ok = admin.send(
        "DELETE",
        &delete,
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(json(&ok)["erased"]["events"], 3);

    let body = "{\"email\":\"csrf@example.com\"}";
    let json_ct = ("Content-Type", "application/json");
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/contacts",
                &[("Cookie", &cookie), json_ct],
                body
            )
            .status,
        403
    );
    let created = admin.send(
        "POST",
        "/api/contacts",
        &[("Cookie", &cookie), json_ct, ("X-CSRF-Token", &csrf)],
        body,
    );
    assert_eq!(created.status, 201, "{}", created.text());

    // Dashboard forms carry the token as a field.
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let erase = format!("/contacts/{C1}/erase");
    let no = admin.send("POST", &erase, &[("Cookie", &cookie), form], "confirm=yes");
    assert_eq!(no.status, 403);
    assert!(no.text().contains("CSRF"));
    let unconfirmed = admin.send(
        "POST",
        &erase,
        &[("Cookie", &cookie), form],
        &format!("csrf={csrf}"),
    );
    assert_eq!(unconfirmed.status, 400);
    let yes = admin.send(
        "POST",
        &erase,
        &[("Cookie", &cookie), form],
        &format!("csrf={csrf}&confirm=yes"),
    );
    assert_eq!(yes.status, 303);
    assert_eq!(yes.header("location"), Some("/contacts?erased=3"));
    let list = admin.get("/contacts?erased=3", &[("Cookie", &cookie)]);
    assert!(list.text().contains("with 3 event(s)"));

    let link = admin.send(
        "POST",
        &format!("/contacts/{C1}/link"),
        &[("Cookie", &cookie), form],
        &format!("csrf={csrf}&expires_days=30"),
    );
    assert_eq!(link.status, 200, "{}", link.text());
    assert!(link.text().contains("?smlink="));
    assert!(link.text().contains("https://shop.example/?smlink="));

    // A bearer token needs no CSRF token: browsers never add that header themselves.
    let auth = format!("Bearer {TOKEN}");
    let r = admin.send("DELETE", &delete, &[("Authorization", &auth)], "");
    assert_eq!(r.status, 200);
}

#[test]
fn failed_token_attempts_are_limited_per_address() {
    let admin = Admin::start(Options {
        failures_per_minute: 10,
        ..Options::default()
    });
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for i in 0..10 {
        let r = admin.send("POST", "/login", &[form], &format!("token=guess{i}"));
        assert_eq!(r.status, 401, "attempt {i}");
    }
    // Now even the right token is not checked.
    let r = admin.send("POST", "/login", &[form], &format!("token={TOKEN}"));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert!(r.header("set-cookie").is_none());
    let r = admin.bearer("GET", "/api/status");
    assert_eq!(r.status, 429);
    // Requests without any token are not attempts.
    assert_eq!(admin.get("/api/status", &[]).status, 401);
    assert_eq!(admin.get("/healthz", &[]).status, 200);
}

#[test]
fn wrong_bearer_tokens_count_as_failed_attempts() {
    let admin = Admin::start(Options {
        failures_per_minute: 3,
        ..Options::default()
    });
    for _ in 0..3 {
        let r = admin.get("/metrics", &[("Authorization", "Bearer wrong-token-wrong")]);
        assert_eq!(r.status, 401);
    }
    assert_eq!(admin.bearer("GET", "/metrics").status, 429);
}

#[test]
fn without_a_configured_token_one_is_generated_into_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let admin = Admin::start(Options {
        token: None,
        ..Options::default()
    });
    let path = admin.token_file.clone().expect("a generated token file");
    assert_eq!(path, admin.dir.0.join("events.db.admin-token"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.len() >= 32);
    assert_eq!(admin.get("/metrics", &[]).status, 401);
    assert_eq!(admin.get("/api/status", &[]).status, 401);
    let auth = format!("Bearer {token}");
    assert_eq!(
        admin.get("/api/status", &[("Authorization", &auth)]).status,
        200
    );
    // The login page says where the token is.
    assert!(admin
        .get("/login", &[])
        .text()
        .contains("events.db.admin-token"));
}

#[test]
fn readyz_follows_the_store() {
    let admin = Admin::start(Options {
        down: true,
        ..Options::default()
    });
    let r = admin.bearer("GET", "/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(admin.get("/healthz", &[]).status, 200);
    // Store failures are 503 with a JSON error, not a crash.
    let r = request_body(
        &admin.addr,
        "POST",
        "/api/contacts",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"{\"email\":\"a@example.com\"}",
    );
    assert_eq!(r.status, 503);
    assert!(json(&r)["error"].is_string());
}

// ---- the API ---------------------------------------------------------------------------

#[test]
fn bad_parameters_are_400_naming_the_parameter() {
    let admin = Admin::start(Options::default());
    for (path, status, parameter) in [
        ("/api/stats?from=yesterday", 400, Some("from")),
        ("/api/stats?to=2026-02-30", 400, Some("to")),
        (
            "/api/stats?from=2026-03-02&to=2026-03-01",
            400,
            Some("from"),
        ),
        ("/api/stats?site=nope", 404, Some("site")),
        ("/api/stats?format=xml", 400, Some("format")),
        ("/api/stats?sitee=shop", 400, Some("sitee")),
        ("/api/stats?site=shop&site=blog", 400, Some("site")),
        ("/api/timeseries?bucket=minute", 400, Some("bucket")),
        (
            "/api/timeseries?from=2000-01-01&to=2026-01-01&bucket=hour",
            400,
            Some("bucket"),
        ),
        ("/api/breakdown", 400, Some("dimension")),
        ("/api/breakdown?dimension=planets", 400, Some("dimension")),
        ("/api/breakdown?dimension=pages&limit=0", 400, Some("limit")),
        (
            "/api/breakdown?dimension=pages&limit=1001",
            400,
            Some("limit"),
        ),
        ("/api/live?site=nope", 404, Some("site")),
        ("/api/contacts?limit=abc", 400, Some("limit")),
        ("/api/contacts?offset=-1", 400, Some("offset")),
        ("/api/contacts/nobody", 404, None),
        ("/api/contacts/nobody/export", 404, None),
        ("/api/contacts/nobody/link", 404, None),
        (
            "/api/contacts/0b8e4c2a-5d1f-4e6b-9a3c-2f1e0d9c8b7a/link?expires_days=0",
            400,
            Some("expires_days"),
        ),
        ("/api/companies/abc", 404, None),
        ("/api/companies/2", 404, None),
        ("/api/companies?limit=5000", 400, Some("limit")),
        ("/api/status?x=1", 400, Some("x")),
    ] {
        let r = admin.bearer("GET", path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let v = json(&r);
        assert!(v["error"].is_string(), "{path}");
        assert_eq!(v["parameter"].as_str(), parameter, "{path}: {v}");
    }
    let delete = admin.bearer("DELETE", "/api/contacts/nobody");
    assert_eq!(delete.status, 404);

    let auth = format!("Bearer {TOKEN}");
    for (body, parameter) in [
        ("not json", "body"),
        ("{\"mail\":\"a@example.com\"}", "body"),
        ("{\"email\":\"not-an-email\"}", "email"),
        (
            "{\"email\":\"a@example.com\",\"expires_days\":0}",
            "expires_days",
        ),
    ] {
        let r = admin.send("POST", "/api/contacts", &[("Authorization", &auth)], body);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(json(&r)["parameter"], parameter, "{body}");
    }
}

#[test]
fn analytics_answer_json_with_iso_times() {
    let admin = Admin::start(Options::default());
    let stats = json(&admin.bearer("GET", "/api/stats?site=shop&from=2026-03-01&to=2026-03-01"));
    assert_eq!(stats["pageviews"], 12);
    assert_eq!(stats["visitors"], 5);
    assert_eq!(stats["sessions"], 6);
    assert_eq!(stats["site"], "shop");
    assert_eq!(stats["from"], "2026-03-01T00:00:00Z");
    assert_eq!(stats["to"], "2026-03-02T00:00:00Z");

    let ts = json(&admin.bearer("GET", "/api/timeseries?from=2026-03-01&to=2026-03-02"));
    assert_eq!(ts["bucket"], "hour");
    assert_eq!(ts["points"].as_array().unwrap().len(), 48);
    assert_eq!(ts["points"][1]["ts"], "2026-03-01T01:00:00Z");
    let days = json(&admin.bearer(
        "GET",
        "/api/timeseries?from=2026-03-01T00:00:00%2B01:00&to=2026-03-08&bucket=day",
    ));
    assert_eq!(days["from"], "2026-02-28T23:00:00Z");

    let b = json(&admin.bearer("GET", "/api/breakdown?dimension=referrers&limit=2"));
    assert_eq!(b["dimension"], "referrers");
    assert_eq!(b["rows"].as_array().unwrap().len(), 2);
    assert_eq!(b["rows"][0]["key"], XSS);

    let live = json(&admin.bearer("GET", "/api/live?site=blog"));
    assert_eq!(live["visitors"], 2);
    assert_eq!(live["window_seconds"], 300);

    let status = json(&admin.bearer("GET", "/api/status"));
    let sites = status["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    assert_eq!(sites[0]["name"], "shop");
    assert_eq!(
        sites[0]["hosts"],
        serde_json::json!(["shop.example", "*.shop.example"])
    );
    assert_eq!(sites[0]["detected"], true);
    assert_eq!(sites[0]["first_seen"], "2023-11-14T22:13:20Z");
    assert_eq!(sites[0]["alert"], Value::Null);
    assert_eq!(sites[1]["detected"], false);
    assert_eq!(sites[1]["first_seen"], Value::Null);
    assert_eq!(sites[1]["alert"], "monitoring code not detected yet");
    assert!(sites[1]["skipped"]["not_html"].is_u64());
    assert!(sites[1]["warnings"].is_array());

    let contacts = json(&admin.bearer("GET", "/api/contacts?search=jan&limit=10"));
    assert_eq!(contacts["contacts"][0]["id"], C1);
    assert_eq!(
        contacts["contacts"][0]["first_seen"],
        "2023-11-14T22:13:20Z"
    );
    let card = json(&admin.bearer("GET", &format!("/api/contacts/{C1}?timeline_limit=2")));
    assert_eq!(card["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(card["timeline"][0]["props"]["a"], 1);
    assert_eq!(card["sites"], serde_json::json!(["shop"]));

    let companies = json(&admin.bearer("GET", "/api/companies"));
    assert_eq!(companies["companies"][0]["id"], 1);
    let company = json(&admin.bearer("GET", "/api/companies/1?site=shop"));
    assert_eq!(company["contacts"][0]["id"], C1);
    assert_eq!(company["site"], "shop");

    let openapi = json(&admin.bearer("GET", "/api/openapi.json"));
    assert_eq!(openapi["openapi"], "3.1.0");
}

#[test]
fn contacts_are_created_with_a_personal_link_that_verifies() {
    let admin = Admin::start(Options::default());
    let auth = format!("Bearer {TOKEN}");
    let r = admin.send(
        "POST",
        "/api/contacts",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        "{\"email\":\" New@Example.com \"}",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = json(&r);
    assert_eq!(v["email"], "new@example.com");
    assert_eq!(v["expires_at"], Value::Null);
    let id = v["id"].as_str().unwrap().to_string();
    let link = v["personal_link"].as_str().unwrap();
    let token = link.strip_prefix("?smlink=").expect("a ?smlink= link");
    let claims =
        smproxy::identity::verify_personal_link(&admin.keys, token, smproxy::identity::unix_now())
            .expect("the link verifies with the proxy's keys");
    assert_eq!(claims.contact_id.to_string(), id);
    assert_eq!(claims.expires_at, None);

    // The same e-mail is the same contact.
    let again = admin.send(
        "POST",
        "/api/contacts",
        &[("Authorization", &auth)],
        "{\"email\":\"new@example.com\",\"expires_days\":30}",
    );
    let again = json(&again);
    assert_eq!(again["id"], id.as_str());
    assert!(again["expires_at"].is_string());

    // A fresh link for a known contact, with an expiry.
    let l = json(&admin.bearer("GET", &format!("/api/contacts/{C1}/link?expires_days=7")));
    let token = l["personal_link"]
        .as_str()
        .unwrap()
        .strip_prefix("?smlink=")
        .unwrap();
    let claims =
        smproxy::identity::verify_personal_link(&admin.keys, token, smproxy::identity::unix_now())
            .unwrap();
    assert_eq!(claims.contact_id.to_string(), C1);
    let exp = claims.expires_at.unwrap();
    assert!(exp.abs_diff(smproxy::identity::unix_now() + 7 * 86_400) < 60);
}

#[test]
fn exports_are_downloads() {
    let admin = Admin::start(Options::default());
    let r = admin.bearer("GET", &format!("/api/contacts/{C1}/export"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"contact-{C1}.json\"").as_str())
    );
    assert_eq!(json(&r)["contact"]["id"], C1);
}

#[test]
fn csv_exports_are_quoted_and_defuse_formulas() {
    let admin = Admin::start(Options::default());
    let r = admin.bearer("GET", "/api/breakdown?dimension=pages&format=csv");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"breakdown-pages.csv\"")
    );
    assert_eq!(
        r.text(),
        "\"pages\",\"pageviews\",\"visitors\"\r\n\"<img src=x onerror=alert(1)>\",10,4\r\n\"'=cmd|' /C calc'!A0\",3,2\r\n\"/plain\",1,1\r\n"
    );
    // `Accept: text/csv` asks for the same.
    let auth = format!("Bearer {TOKEN}");
    let r = admin.get(
        "/api/breakdown?dimension=pages",
        &[("Authorization", &auth), ("Accept", "text/csv")],
    );
    assert!(r.text().contains("\"'=cmd|' /C calc'!A0\""));
    for (path, first_line) in [
        (
            "/api/stats?format=csv",
            "\"site\",\"from\",\"to\",\"pageviews\"",
        ),
        (
            "/api/timeseries?format=csv",
            "\"ts\",\"pageviews\",\"visitors\"",
        ),
        ("/api/live?format=csv", "\"site\",\"visitors\""),
        ("/api/contacts?format=csv", "\"id\",\"email\""),
        ("/api/companies?format=csv", "\"id\",\"name\""),
        ("/api/status?format=csv", "\"name\",\"hosts\",\"detected\""),
    ] {
        let r = admin.bearer("GET", path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().starts_with(first_line), "{path}: {}", r.text());
        assert!(r.text().ends_with("\r\n"), "{path}");
    }
    let companies = admin.bearer("GET", "/api/companies?format=csv").text();
    assert!(
        companies.contains("\"<script>alert(3)</script> GmbH\""),
        "{companies}"
    );
}

// ---- the dashboard ---------------------------------------------------------------------

#[test]
fn dashboard_pages_escape_every_stored_value() {
    let admin = Admin::start(Options::default());
    let (cookie, _csrf) = admin.login();
    for path in [
        "/".to_string(),
        "/?site=shop&from=2026-03-01&to=2026-03-01".to_string(),
        "/breakdown?dimension=referrers".to_string(),
        "/contacts".to_string(),
        "/contacts?search=%3Cscript%3E".to_string(),
        format!("/contacts/{C1}"),
        "/companies".to_string(),
        "/companies/1".to_string(),
    ] {
        let r = admin.get(&path, &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
        );
        let html = r.text();
        assert!(html.starts_with("<!DOCTYPE html>"), "{path}");
        assert!(!html.contains("<img"), "{path}: unescaped markup");
        assert!(!html.contains("<script"), "{path}: a script element");
        assert!(!html.contains("<b>"), "{path}: unescaped markup");
        assert!(!html.contains("style="), "{path}: inline style");
        assert!(!html.contains("javascript:alert"), "{path}: a stored URL");
        assert!(html.contains("/static/style.css"), "{path}");
    }
    let overview = admin.get("/", &[("Cookie", &cookie)]).text();
    assert!(overview.contains(XSS_ESCAPED));
    assert!(overview.contains("monitoring code not detected yet"));
    assert!(overview.contains("<svg class=\"chart\""));
    let contact = admin
        .get(&format!("/contacts/{C1}"), &[("Cookie", &cookie)])
        .text();
    assert!(contact.contains(XSS_ESCAPED), "the title is shown as text");
    assert!(contact.contains("&lt;b&gt;jan&lt;/b&gt;@example.com"));
    assert!(contact.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(contact.contains(&format!("action=\"/contacts/{C1}/erase\"")));
    let company = admin.get("/companies/1", &[("Cookie", &cookie)]).text();
    assert!(company.contains("&lt;script&gt;alert(3)&lt;/script&gt; GmbH"));

    let css = admin.get("/static/style.css", &[]);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    // Bad filters are an HTML error page, not a crash.
    let bad = admin.get("/?from=nope", &[("Cookie", &cookie)]);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("<code>from</code>"));
    let unknown = admin.get("/?site=%3Cx%3E", &[("Cookie", &cookie)]);
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("&lt;x&gt;"));
    assert_eq!(
        admin.get("/contacts/nobody", &[("Cookie", &cookie)]).status,
        404
    );
}

#[test]
fn oversized_bodies_are_refused() {
    let admin = Admin::start(Options::default());
    let auth = format!("Bearer {TOKEN}");
    let body = "x".repeat(70 * 1024);
    let r = admin.send("POST", "/api/contacts", &[("Authorization", &auth)], &body);
    assert_eq!(r.status, 413);
}
