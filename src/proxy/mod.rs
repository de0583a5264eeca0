//! The public proxy: Pingora's phases, each handing off to the module that does the work.
//!
//! | phase | job |
//! |---|---|
//! | (before Pingora) | plain beacons and tracker requests (`shortcut.rs`) |
//! | `request_filter` | route by Host (421 when no site); plain HTTP → HTTPS redirect (`edge.rs`); the tracker and collect paths and the identity of page navigations (`collect.rs`); decide whether the page may be injected |
//! | `upstream_peer` | one of the site's origins (`origins::Pool`) |
//! | `fail_to_connect` | passive ejection; retry an idempotent request on another origin |
//! | `upstream_request_filter` | `X-Forwarded-*`; ask for `identity` when the answer may be injected |
//! | `upstream_response_filter` | decide on the response; fix its headers; set up the body pipeline |
//! | `response_filter` | identity cookies; HSTS; HTTP/1.0 clients: close-delimited body instead of chunked |
//! | `response_body_filter` | stream the body through decode → inject → encode |
//! | `fail_to_proxy` | 502/504 pages |
//! | `logging` | counters, one log line per failed rewrite, the access log |

mod access;
mod body;
mod collect;
mod edge;
mod errors;
pub mod headers;
mod shortcut;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;

use crate::codec::{self, Coding, Decoder, Encoder};
use crate::collect::collector::Collector;
use crate::config::{Settings, Site};
use crate::conn::ConnStream;
use crate::inject::{self, charset, csp, decide, Injector, InjectorOptions, Skip};
use crate::metrics::Metrics;
use crate::origins::Pool;
use crate::route::Router;
use crate::snippet::Snippet;
use body::BodyRewrite;

/// The proxy service: shared, read-only after start-up.
pub struct Smproxy {
    settings: Arc<Settings>,
    router: Router,
    pools: Vec<Arc<Pool>>,
    /// The HTTPS port for redirects (`None`: 443).
    https_port: Option<u16>,
    snippet: Snippet,
    snippet_html: Arc<str>,
    tracker_path: Arc<str>,
    metrics: Arc<Metrics>,
    collector: Arc<Collector>,
}

/// Per-request state. `Send + Sync` as Pingora requires: the rewriter (only `Send`) sits
/// behind a `Mutex` that is reached with `get_mut`, never locked.
#[derive(Default)]
pub struct RequestCtx {
    site: Option<Arc<Site>>,
    /// `Ok` while the request may still get an injected answer.
    check: Option<Result<(), Skip>>,
    accept_encoding: Option<String>,
    body: Option<Mutex<BodyRewrite>>,
    body_failed: bool,
    /// Identity cookies for the answer to a page navigation.
    set_cookies: Vec<String>,
    /// The origin of the current attempt (released in `logging`).
    origin: Option<usize>,
    /// Origins this request tried (bit set).
    tried: u64,
    /// Attempts that failed to connect.
    failed_connects: u32,
    started: Option<std::time::Instant>,
}

impl Smproxy {
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>, collector: Arc<Collector>) -> Self {
        let tracker_src = collector.tracker().src(&settings.tracker_path);
        let snippet = Snippet::new(&settings.client_id, &tracker_src);
        let pools = crate::origins::Pools::new(&settings).0;
        Smproxy {
            router: Router::new(&settings.sites),
            pools,
            https_port: crate::config::https_port(&settings.listen_tls),
            snippet_html: Arc::from(snippet.html()),
            snippet,
            tracker_path: Arc::from(settings.tracker_path.as_str()),
            settings,
            metrics,
            collector,
        }
    }

    /// What answers beacons and the tracker before Pingora, for [`crate::conn::ConnApp`].
    pub fn shortcut(&self) -> Arc<dyn crate::conn::Shortcut> {
        Arc::new(shortcut::CollectShortcut {
            settings: self.settings.clone(),
            router: Router::new(&self.settings.sites),
            collector: self.collector.clone(),
        })
    }

    /// The sites' origin pools, by site index (shared with the health checks).
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.clone()
    }

    fn injector_for(&self, resp: &ResponseHeader, cs: charset::Charset) -> Injector {
        let csp_name = header::CONTENT_SECURITY_POLICY;
        let snippet = match csp::script_nonce(headers::all_values(&resp.headers, &csp_name)) {
            Some(nonce) => Arc::from(self.snippet.html_with_nonce(&nonce)),
            None => self.snippet_html.clone(),
        };
        Injector::new(InjectorOptions {
            snippet,
            position: self.settings.inject.position,
            duplicates: self.settings.inject.duplicates,
            tracker_path: self.tracker_path.clone(),
            client_id: Arc::from(self.settings.client_id.as_str()),
            charset: cs,
            max_buffer_bytes: self.settings.inject.max_buffer_bytes,
        })
    }
}

fn header_str<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The Host of a request: the `Host` header (HTTP/1.1), or the URI's authority (HTTP/2).
fn request_host(req: &RequestHeader) -> Option<&str> {
    header_str(req, "host").or_else(|| req.uri.host())
}

/// Whether the client is likely navigating to a page (so asking the origin for an
/// uncompressed body costs nothing that the page does not need anyway).
fn wants_document(req: &RequestHeader) -> bool {
    if header_str(req, "sec-fetch-dest").is_some() {
        return true; // check_request already required "document"
    }
    match header_str(req, "accept") {
        None => true,
        Some(a) => a.contains("text/html") || a.contains("application/xhtml+xml"),
    }
}

async fn respond(
    session: &mut Session,
    page: pingora::Result<(Box<ResponseHeader>, Bytes)>,
) -> Result<()> {
    let (h, body) = page?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(h, head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Smproxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// Routes the request; answers 421 itself when no site serves the Host.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let Some(site) = self.router.route(request_host(req).unwrap_or("")) else {
            self.metrics
                .unrouted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            respond(session, errors::misdirected()).await?;
            return Ok(true);
        };
        ctx.site = Some(site.clone());
        ctx.started = Some(std::time::Instant::now());
        let site = site.clone();
        if site.tls.as_ref().is_some_and(|t| t.redirect_http) && !self.client(session, &site).https
        {
            let req = session.req_header();
            let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let location =
                edge::https_location(request_host(req).unwrap_or(""), path, self.https_port);
            let method = req.method.clone();
            respond(session, edge::redirect(&method, &location)).await?;
            return Ok(true);
        }
        if let collect::Handled::Done = self.collect_phase(session, ctx, &site).await? {
            return Ok(true);
        }
        let upgrade = session.is_upgrade_req();
        let req = session.req_header();
        ctx.check = Some(decide::check_request(
            self.settings.inject.enabled,
            &req.method,
            req.uri.path(),
            header_str(req, "sec-fetch-dest"),
            upgrade,
            &self.settings.inject.exclude_paths,
        ));
        ctx.accept_encoding = header_str(req, "accept-encoding").map(str::to_owned);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let site = ctx
            .site
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request without a site"))?;
        let pool = &self.pools[site.index];
        if let Some(previous) = ctx.origin.take() {
            pool.release(previous); // a retry: the last attempt is over
        }
        let i = pool.select(ctx.tried).ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                "every origin of the site was tried",
            )
        })?;
        if i < 64 {
            ctx.tried |= 1 << i;
        }
        pool.acquire(i);
        ctx.origin = Some(i);
        Ok(Box::new(pool.origins[i].peer.clone()))
    }

    /// No connection to the origin: it counts towards ejecting it, and an idempotent request
    /// (nothing was sent yet) is tried on another origin, up to the site's `retries`.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let (Some(site), Some(i)) = (&ctx.site, ctx.origin.take()) else {
            return e;
        };
        let pool = &self.pools[site.index];
        pool.release(i);
        pool.failed(i);
        ctx.failed_connects += 1;
        let idempotent = session.req_header().method.is_idempotent();
        let another = pool.has_untried(ctx.tried);
        e.set_retry(idempotent && another && ctx.failed_connects <= pool.retries);
        e
    }

    /// Forwarding headers; `Accept-Encoding: identity` for requests whose answer may be
    /// injected (the rewriter needs plain HTML; decoding would cost more than it saves).
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        let https = match &ctx.site {
            Some(site) => self.client(session, site).https,
            None => session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        };
        let host = request_host(session.req_header()).map(str::to_owned);
        headers::forwarded(upstream, client_ip, https, host.as_deref())?;
        if matches!(ctx.check, Some(Ok(()))) && wants_document(session.req_header()) {
            upstream.insert_header(header::ACCEPT_ENCODING, "identity")?;
            // A conditional range (`If-Range`) resumes a copy the client already has, which,
            // for a page, is the injected one: a part of the origin's bytes would not fit it.
            // Ask for the whole page instead (ignoring Range is always allowed).
            if upstream.headers.contains_key(header::IF_RANGE) {
                upstream.remove_header(&header::IF_RANGE);
                upstream.remove_header(&header::RANGE);
            }
        }
        Ok(())
    }

    /// Decides whether this response is rewritten and prepares its headers and body pipeline.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(site) = ctx.site.clone() else {
            return Ok(());
        };
        if let Some(i) = ctx.origin {
            self.pools[site.index].succeeded(i);
        }
        if resp.status.is_informational() {
            return Ok(());
        }
        let counters = self.metrics.site(site.index);
        let content_type = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let decision = ctx
            .check
            .unwrap_or(Err(Skip::Method))
            .and_then(|_| decide::check_status(resp.status))
            .and_then(|_| decide::check_content_type(content_type))
            .and_then(
                |_| match charset::from_content_type(content_type.unwrap_or("")) {
                    charset::Charset::Unsupported => Err(Skip::Charset),
                    cs => Ok(cs),
                },
            )
            .and_then(|cs| {
                let ce = resp
                    .headers
                    .get(header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                Coding::parse(ce)
                    .map(|c| (cs, c))
                    .map_err(|_| Skip::ContentEncoding)
            });
        let (cs, origin_coding) = match decision {
            Ok(d) => d,
            Err(skip) => {
                counters.skip(skip);
                return Ok(());
            }
        };

        let decoder = match origin_coding.map(Decoder::new).transpose() {
            Ok(d) => d,
            Err(_) => {
                counters.skip(Skip::ContentEncoding);
                return Ok(());
            }
        };
        // Encode again only in the origin's coding, and only if the client takes it.
        let out_coding = origin_coding.filter(|c| {
            ctx.accept_encoding
                .as_deref()
                .is_some_and(|ae| codec::accepts(ae, *c))
        });
        let encoder = match out_coding.map(Encoder::new).transpose() {
            Ok(e) => e,
            Err(_) => {
                counters.skip(Skip::ContentEncoding);
                return Ok(());
            }
        };
        let injector = self.injector_for(resp, cs);
        headers::for_rewritten_page(resp, out_coding.map(Coding::token), origin_coding.is_some())?;
        ctx.body = Some(Mutex::new(BodyRewrite::new(decoder, injector, encoder)));
        Ok(())
    }

    /// HTTP/1.0 clients cannot decode chunked bodies, yet Pingora frames every response without
    /// `Content-Length` as chunked (a rewritten page has none): send those close-delimited.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        collect::add_cookies(resp, &ctx.set_cookies)?;
        if let Some(hsts) = ctx
            .site
            .as_ref()
            .and_then(|s| s.tls.as_ref()?.hsts.as_ref())
        {
            if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
                resp.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts.as_str())?;
            }
        }
        let version = session.req_header().version;
        if version == http::Version::HTTP_10 || version == http::Version::HTTP_09 {
            headers::for_http10_client(resp);
        }
        if ctx.body.is_some() {
            // Pingora flushes a head without `Content-Length` on its own; a rewritten page's
            // first bytes follow at once, so the head waits to leave in their `writev`.
            let conn = session
                .stream()
                .and_then(|s| s.as_any().downcast_ref::<ConnStream>());
            if let Some(conn) = conn {
                conn.hold_head_for_body();
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        let Some(rw) = ctx.body.as_mut() else {
            return Ok(None);
        };
        let rw = rw.get_mut().unwrap_or_else(|e| e.into_inner());
        let input = body.take().unwrap_or_default();
        match rw.process(input, end_of_stream) {
            Ok(out) => {
                *body = (!out.is_empty()).then_some(out);
                Ok(None)
            }
            Err(e) => {
                // The origin's compressed body is corrupt: nothing valid can follow. End the
                // response as broken rather than send garbage.
                ctx.body_failed = true;
                Error::e_explain(ErrorType::InternalError, format!("rewriting the body: {e}"))
            }
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &pingora::ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => 502,
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if let Some(site) = &ctx.site {
            if e.esource() == &pingora::ErrorSource::Upstream {
                if let Some(i) = ctx.origin {
                    self.pools[site.index].failed(i);
                }
            }
            if code == 502 || code == 504 {
                self.metrics
                    .site(site.index)
                    .upstream_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        // Once the response has started, only closing the connection can tell the client.
        if code > 0 && session.response_written().is_none() {
            let page = match code {
                502 => errors::bad_gateway(),
                504 => errors::gateway_timeout(),
                c => errors::page(c, "Error", "The request could not be completed."),
            };
            if let Err(err) = respond(session, page).await {
                tracing::debug!(error = %err, "could not send the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that goes away mid-response is routine at the edge (a closed tab, a load
    /// generator stopping): not an error of the proxy or the origin, so not logged as one.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.esource() == &pingora::ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed
                    | ErrorType::ReadError
                    | ErrorType::WriteError
                    | ErrorType::ReadTimedout
                    | ErrorType::WriteTimedout
            )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let (Some(site), Some(i)) = (&ctx.site, ctx.origin) {
            self.pools[site.index].release(i);
        }
        if self.settings.log.access {
            let origin = ctx
                .site
                .as_ref()
                .zip(ctx.origin)
                .map(|(s, i)| self.pools[s.index].origins[i].upstream.authority.as_str());
            access::log(session, ctx.site.as_deref(), origin, ctx.started, e);
        }
        let (Some(site), Some(rw)) = (&ctx.site, ctx.body.as_mut()) else {
            return;
        };
        let outcome = rw.get_mut().unwrap_or_else(|e| e.into_inner()).outcome();
        self.metrics.site(site.index).record(&outcome);
        let failure = outcome
            .failure
            .as_deref()
            .or(ctx.body_failed.then_some("corrupt compressed body"));
        if let Some(why) = failure {
            if ctx.body_failed && outcome.failure.is_none() {
                self.metrics
                    .site(site.index)
                    .rewrite_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::warn!(
                site = %site.name,
                path = %session.req_header().uri.path(),
                error = %why,
                "page passed through unchanged after a rewriting failure"
            );
        }
    }
}

/// Re-exported for the admin listener and tests.
pub use inject::Outcome;
