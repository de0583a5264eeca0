//! The access log: one `tracing` event per request under the target `access`, so the JSON log
//! format turns it into one JSON line with named fields. The query string is left out: it can
//! carry identity tokens (`smclient`, `smlink`).

use std::time::Instant;

use pingora::proxy::Session;
use pingora::Error;

use crate::config::Site;

pub fn log(
    session: &Session,
    site: Option<&Site>,
    origin: Option<&str>,
    started: Option<Instant>,
    error: Option<&Error>,
) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    tracing::info!(
        target: "access",
        client = %client,
        method = %req.method,
        host = super::request_host(req).unwrap_or(""),
        path = req.uri.path(),
        version = ?req.version,
        tls,
        status,
        bytes = session.body_bytes_sent(),
        site = site.map_or("", |s| s.name.as_str()),
        origin = origin.unwrap_or(""),
        ms = started.map_or(0, |t| t.elapsed().as_millis() as u64),
        error = error.map(|e| e.etype().as_str()).unwrap_or(""),
        "request"
    );
}
