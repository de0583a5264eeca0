//! The admin listener: health and readiness, Prometheus metrics, the JSON/CSV API (install
//! status, analytics, contacts, companies) and the dashboard, a set of server-rendered HTML
//! pages that work without JavaScript. Never routed from the public listener.
//!
//! Reading order: [`routes`] (every route), this file (access control and dispatch), [`api`]
//! and [`pages`] (the handlers), then the helpers: [`auth`], [`params`], [`time`], [`csv`],
//! [`html`], [`chart`], [`status`], [`respond`]; [`retention`] is the daily clean-up task.
//!
//! Access: everything except `/healthz`, `/login` and the stylesheet needs the admin token, as
//! a bearer header or through a dashboard session (see [`auth`]). Without a token: API and
//! tool routes answer `401`, dashboard pages redirect to `/login`.
//!
//! Store and report calls are synchronous, so they run on Tokio's blocking pool, with a time
//! limit ([`QUERY_TIMEOUT`]) after which the client gets a `503`.
//!
//! The API is described by `openapi.json` in this directory, served at `/api/openapi.json`.

pub mod api;
pub mod auth;
pub mod chart;
pub mod csv;
pub mod html;
pub mod pages;
pub mod params;
pub mod respond;
pub mod retention;
pub mod routes;
pub mod status;
pub mod time;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub use auth::{constant_time_eq, token_file_path};
pub use retention::{retention_service, Retention};

use crate::config::{Secret, Settings};
use crate::identity::Keys;
use crate::metrics::Metrics;
use crate::store::{Reports, Store, StoreError};
use params::Query;
use respond::ApiError;
use routes::{Id, Kind, Match};

/// Largest request body read (forms and JSON are tiny).
pub const MAX_BODY: usize = 64 * 1024;
/// Bytes of an oversized body read and dropped before answering `413`.
pub const DRAIN_LIMIT: usize = 1024 * 1024;
/// How long a store or report call may take before the client gets `503`.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the store's ping.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The stylesheet of the dashboard.
const STYLE: &str = include_str!("style.css");

/// A request as the admin handlers see it (independent of Pingora, so it is easy to test).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The peer's address (never a forwarded header: the admin listener is not meant to be
    /// proxied).
    pub client: Option<IpAddr>,
}

impl Request {
    pub fn get(path_and_query: &str) -> Request {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path_and_query.to_string(), None),
        };
        Request {
            method: Method::GET,
            path,
            query,
            headers: HeaderMap::new(),
            body: Vec::new(),
            client: None,
        }
    }
}

/// How the request was authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer,
    Session { id: String, csrf: String },
}

impl Auth {
    /// The CSRF token to put in forms (none for bearer requests, which need none).
    pub fn csrf(&self) -> Option<&str> {
        match self {
            Auth::Bearer => None,
            Auth::Session { csrf, .. } => Some(csrf),
        }
    }
}

/// One authenticated request being handled.
pub struct Ctx {
    pub req: Request,
    pub query: Query,
    /// The `{id}` of the route.
    pub param: Option<String>,
    pub auth: Auth,
    pub now_ms: i64,
}

impl Ctx {
    pub fn id(&self) -> &str {
        self.param.as_deref().unwrap_or("")
    }

    /// A field of an `application/x-www-form-urlencoded` body.
    pub fn form(&self, name: &str) -> Option<String> {
        form_field(&self.req.body, name)
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The admin application with its store: every route. Served through [`AdminApp`].
pub struct Admin {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    reports: Arc<dyn Reports>,
    keys: Arc<Keys>,
    token: Secret,
    /// Where the generated token was written (none when the token is configured).
    token_file: Option<std::path::PathBuf>,
    sessions: auth::Sessions,
    failures: auth::FailureLimiter,
}

impl Admin {
    /// Builds the admin application. `keys` sign personal links (the same keys as the
    /// collector's, so the proxy accepts the links). Without `admin.token` in `settings`, a
    /// random token is generated and written to [`token_file_path`] of the SQLite path (mode
    /// 0600); only the file's path is logged. Fails when that file cannot be written.
    pub fn new(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        reports: Arc<dyn Reports>,
        keys: Keys,
    ) -> anyhow::Result<Admin> {
        let (token, token_file) = match &settings.admin.token {
            Some(t) => (t.clone(), None),
            None => {
                let path = token_file_path(&settings.sqlite_path);
                let token = auth::write_generated_token(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "admin: cannot write the generated admin token to {}: {e}",
                        path.display()
                    )
                })?;
                tracing::warn!(
                    file = %path.display(),
                    "no admin.token configured: a random admin token for this run was written to the file (readable by this user only)"
                );
                (token, Some(path))
            }
        };
        Ok(Admin {
            settings,
            metrics,
            store,
            reports,
            keys: Arc::new(keys),
            token,
            token_file,
            sessions: auth::Sessions::default(),
            failures: auth::FailureLimiter::new(auth::FAILURES_PER_MINUTE),
        })
    }

    /// Changes how many failed token attempts a client address may make per minute (default
    /// [`auth::FAILURES_PER_MINUTE`]).
    pub fn with_failure_limit(mut self, per_minute: u32) -> Self {
        self.failures = auth::FailureLimiter::new(per_minute);
        self
    }

    /// The file holding the generated token, when none was configured.
    pub fn token_file(&self) -> Option<&std::path::Path> {
        self.token_file.as_deref()
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response<Vec<u8>> {
        let head = req.method == Method::HEAD;
        let mut r = respond::finish(self.dispatch(req).await);
        if head {
            r.body_mut().clear();
        }
        r
    }

    async fn dispatch(&self, req: Request) -> Response<Vec<u8>> {
        let (route, param) = match routes::find(req.method.as_str(), &req.path) {
            Match::Found { route, param } => (Some(route), param),
            _ => (None, None),
        };
        let kind = route
            .map(|r| r.kind)
            .unwrap_or(if req.path.starts_with("/api/") {
                Kind::Api
            } else {
                Kind::Ops
            });
        if let Some(r) = route.filter(|r| r.kind == Kind::Public) {
            return self.public(r.id, req).await;
        }

        let auth = match self.authenticate(&req) {
            Ok(a) => a,
            Err(AuthError::Limited) => return too_many_attempts(),
            Err(AuthError::Missing | AuthError::Wrong) => {
                return if kind == Kind::Page && req.method == Method::GET {
                    let mut next = req.path.clone();
                    if let Some(q) = &req.query {
                        next.push('?');
                        next.push_str(q);
                    }
                    let target: String = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("next", &next)
                        .finish();
                    respond::redirect(&format!("/login?{target}"))
                } else {
                    unauthorized(kind)
                };
            }
        };

        let Some(route) = route else {
            return match routes::find(req.method.as_str(), &req.path) {
                Match::WrongMethod { allow } => {
                    let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                        .to_json();
                    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                        r.headers_mut().insert(header::ALLOW, v);
                    }
                    r
                }
                _ if kind == Kind::Api || req.method != Method::GET => {
                    ApiError::not_found("no such route").to_json()
                }
                _ => ApiError::not_found("no such page").to_html(auth.csrf()),
            };
        };

        // A cookie is sent by the browser on its own: state changes need proof that the
        // request comes from one of our forms (or a script that read the token).
        if let Auth::Session { csrf, .. } = &auth {
            if req.method != Method::GET && req.method != Method::HEAD {
                let given = req
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| form_field(&req.body, "csrf"))
                    .unwrap_or_default();
                if !constant_time_eq(given.as_bytes(), csrf.as_bytes()) {
                    let e = ApiError::new(
                        StatusCode::FORBIDDEN,
                        "missing or wrong CSRF token: reload the page and try again",
                    );
                    return if route.kind == Kind::Page {
                        e.to_html(Some(csrf))
                    } else {
                        e.to_json()
                    };
                }
            }
        }

        let ctx = Ctx {
            query: Query::parse(req.query.as_deref()),
            req,
            param,
            auth,
            now_ms: time::now_ms(),
        };
        let result = match route.kind {
            Kind::Page => self.page(route.id, &ctx).await,
            _ => self.api(route.id, &ctx).await,
        };
        match result {
            Ok(r) => r,
            Err(e) if route.kind == Kind::Page => e.to_html(ctx.auth.csrf()),
            Err(e) if route.kind == Kind::Ops => {
                respond::text(e.status, &format!("{}\n", e.message))
            }
            Err(e) => e.to_json(),
        }
    }

    fn authenticate(&self, req: &Request) -> Result<Auth, AuthError> {
        let now = Instant::now();
        if let Some(given) = auth::bearer(&req.headers) {
            if self.failures.blocked(req.client, now) {
                return Err(AuthError::Limited);
            }
            if constant_time_eq(given.as_bytes(), self.token.expose().as_bytes()) {
                return Ok(Auth::Bearer);
            }
            self.failures.fail(req.client, now);
            return Err(AuthError::Wrong);
        }
        let id =
            crate::identity::read_cookie(req.headers.get_all(header::COOKIE), auth::SESSION_COOKIE);
        if let Some(id) = id {
            if let Some(csrf) = self.sessions.csrf(id, now) {
                return Ok(Auth::Session {
                    id: id.to_string(),
                    csrf,
                });
            }
        }
        Err(AuthError::Missing)
    }

    /// Routes that need no token.
    async fn public(&self, id: Id, req: Request) -> Response<Vec<u8>> {
        match id {
            Id::Healthz => respond::text(StatusCode::OK, "ok\n"),
            Id::Style => {
                let mut r = respond::body(
                    StatusCode::OK,
                    "text/css; charset=utf-8",
                    STYLE.as_bytes().to_vec(),
                );
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=300"),
                );
                r
            }
            Id::LoginPage => {
                let q = Query::parse(req.query.as_deref());
                if self.authenticate(&req).is_ok() {
                    return respond::redirect(&auth::safe_next(q.get("next")));
                }
                self.login_page(StatusCode::OK, q.get("next"), None)
            }
            Id::Login => self.login(req),
            _ => ApiError::not_found("no such route").to_json(),
        }
    }

    fn login(&self, req: Request) -> Response<Vec<u8>> {
        let now = Instant::now();
        let next = form_field(&req.body, "next");
        if self.failures.blocked(req.client, now) {
            let mut r = self.login_page(
                StatusCode::TOO_MANY_REQUESTS,
                next.as_deref(),
                Some("Too many failed attempts from your address. Wait a minute and try again."),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return r;
        }
        let given = form_field(&req.body, "token").unwrap_or_default();
        if !constant_time_eq(given.trim().as_bytes(), self.token.expose().as_bytes()) {
            self.failures.fail(req.client, now);
            return self.login_page(
                StatusCode::UNAUTHORIZED,
                next.as_deref(),
                Some("That is not the admin token."),
            );
        }
        let (id, _csrf) = self.sessions.create(now);
        let mut r = respond::redirect(&auth::safe_next(next.as_deref()));
        if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&id)) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    fn login_page(
        &self,
        status: StatusCode,
        next: Option<&str>,
        error: Option<&str>,
    ) -> Response<Vec<u8>> {
        let mut b = html::Html::new();
        b.raw("<section class=\"login\"><h1>Log in</h1>");
        if let Some(e) = error {
            b.raw("<p class=\"alert\" role=\"alert\">")
                .text(e)
                .raw("</p>");
        }
        b.raw("<form method=\"post\" action=\"/login\">")
            .raw("<label for=\"token\">Admin token</label>")
            .raw("<input id=\"token\" type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus>")
            .raw("<input type=\"hidden\" name=\"next\"")
            .attr("value", &auth::safe_next(next))
            .raw("><button type=\"submit\">Log in</button></form>");
        b.raw("<p class=\"hint\">The token is <code>admin.token</code> (or the variable named by <code>admin.token_env</code>) of the configuration.");
        if let Some(path) = &self.token_file {
            b.raw(" None is configured, so one was generated at start-up: it is in ")
                .raw("<code>")
                .text(&path.display().to_string())
                .raw("</code>.");
        }
        b.raw("</p></section>");
        respond::html(status, html::page("Log in", html::Nav::None, None, &b))
    }

    /// Runs a store or report call on the blocking pool, with [`QUERY_TIMEOUT`].
    pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match tokio::time::timeout(QUERY_TIMEOUT, tokio::task::spawn_blocking(f)).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(StoreError::InvalidEmail))) => {
                Err(ApiError::bad("email", "not a valid email address"))
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "admin: store call failed");
                Err(ApiError::unavailable())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "admin: store task failed");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                ))
            }
            Err(_) => {
                tracing::warn!("admin: store call timed out");
                Err(ApiError::unavailable())
            }
        }
    }

    /// `/readyz`: the store answers its ping within [`READY_TIMEOUT`] and the event writer's
    /// latest write succeeded. A store that answers reads but refuses writes (disk full, a
    /// read-only file, a lock held elsewhere) is degraded: pages are still served, but events
    /// pile up in the queue and then are dropped.
    async fn ready(&self) -> Response<Vec<u8>> {
        if let Some(q) = self.metrics.queue.get().filter(|q| q.is_failing()) {
            return respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "degraded: store writes are failing ({} events queued, {} dropped)\n",
                    q.queue_depth(),
                    q.dropped() + q.abandoned()
                ),
            );
        }
        let store = self.store.clone();
        let ping = tokio::task::spawn_blocking(move || store.ping());
        match tokio::time::timeout(READY_TIMEOUT, ping).await {
            Ok(Ok(Ok(()))) => respond::text(StatusCode::OK, "ready\n"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "readyz: the store failed its ping");
                respond::text(StatusCode::SERVICE_UNAVAILABLE, "store not ready\n")
            }
            _ => respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "store not ready (no answer)\n",
            ),
        }
    }

    /// `POST /logout`: ends the session.
    fn logout(&self, ctx: &Ctx) -> Response<Vec<u8>> {
        if let Auth::Session { id, .. } = &ctx.auth {
            self.sessions.remove(id);
        }
        let mut r = respond::redirect("/login");
        if let Ok(v) = HeaderValue::from_str(&auth::clear_session_cookie()) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

enum AuthError {
    Missing,
    Wrong,
    Limited,
}

fn unauthorized(kind: Kind) -> Response<Vec<u8>> {
    let msg = "unauthorized: send Authorization: Bearer <admin token>, or log in at /login";
    let mut r = if kind == Kind::Api {
        ApiError::new(StatusCode::UNAUTHORIZED, msg).to_json()
    } else {
        respond::text(StatusCode::UNAUTHORIZED, &format!("{msg}\n"))
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn too_many_attempts() -> Response<Vec<u8>> {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed token attempts from this address; wait a minute",
    )
    .to_json();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

/// Reads the request body, at most [`MAX_BODY`] bytes; `None` when it is larger or unreadable.
/// A larger body is still read (and dropped) up to [`DRAIN_LIMIT`], so the client receives the
/// `413` instead of a connection reset.
async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut seen = 0usize;
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                seen += chunk.len();
                if seen > DRAIN_LIMIT {
                    return None;
                }
                if seen <= MAX_BODY {
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) if seen <= MAX_BODY => return Some(body),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The admin listener's Pingora application.
pub struct AdminApp(Box<Admin>);

impl AdminApp {
    /// The whole admin side: API, dashboard, `/readyz`, `/metrics`. See [`Admin::new`] for the
    /// arguments and the generated token.
    pub fn with_store(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        reports: Arc<dyn Reports>,
        keys: Keys,
    ) -> anyhow::Result<AdminApp> {
        Ok(AdminApp(Box::new(Admin::new(
            settings, metrics, store, reports, keys,
        )?)))
    }

    /// See [`Admin::with_failure_limit`].
    pub fn with_failure_limit(self, per_minute: u32) -> Self {
        AdminApp(Box::new(self.0.with_failure_limit(per_minute)))
    }

    /// See [`Admin::token_file`].
    pub fn token_file(&self) -> Option<&std::path::Path> {
        self.0.token_file()
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response<Vec<u8>> {
        self.0.handle(req).await
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let h = session.req_header();
        let mut req = Request {
            method: h.method.clone(),
            path: h.uri.path().to_string(),
            query: h.uri.query().map(str::to_owned),
            headers: h.headers.clone(),
            body: Vec::new(),
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_canonical()),
        };
        match read_body(session).await {
            Some(body) => req.body = body,
            None => {
                session.set_keepalive(None);
                return respond::finish(
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large or unreadable",
                    )
                    .to_json(),
                );
            }
        }
        self.handle(req).await
    }
}
