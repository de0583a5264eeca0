//! The access log: one `tracing` event per request under the target `access`, so the JSON log
//! format turns it into one JSON line with named fields. The query string is left out: it can
//! carry identity tokens (`smclient`, `smlink`).

use std::net::IpAddr;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::Error;

use crate::config::Site;

/// One request's line, from Pingora's session or a request answered before Pingora.
pub struct Line<'a> {
    pub client: Option<IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub version: http::Version,
    pub tls: bool,
    /// 0 when no answer was written.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: usize,
    pub site: &'a str,
    pub origin: &'a str,
    pub started: Option<Instant>,
    pub error: &'a str,
}

impl Line<'_> {
    pub fn write(&self) {
        tracing::info!(
            target: "access",
            client = %self.client.map(|ip| ip.to_string()).unwrap_or_default(),
            method = %self.method,
            host = self.host,
            path = self.path,
            version = ?self.version,
            tls = self.tls,
            status = self.status,
            bytes = self.bytes,
            site = self.site,
            origin = self.origin,
            ms = self.started.map_or(0, |t| t.elapsed().as_millis() as u64),
            error = self.error,
            "request"
        );
    }
}

pub fn log(
    session: &Session,
    site: Option<&Site>,
    origin: Option<&str>,
    started: Option<Instant>,
    error: Option<&Error>,
) {
    let req = session.req_header();
    Line {
        client: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        method: req.method.as_str(),
        host: super::request_host(req).unwrap_or(""),
        path: req.uri.path(),
        version: req.version,
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        status: session.response_written().map_or(0, |r| r.status.as_u16()),
        bytes: session.body_bytes_sent(),
        site: site.map_or("", |s| s.name.as_str()),
        origin: origin.unwrap_or(""),
        started,
        error: error.map(|e| e.etype().as_str()).unwrap_or(""),
    }
    .write();
}
