//! Beacons and the tracker answered before Pingora (see [`crate::conn::shortcut`]): the same
//! collector calls, the same answer bytes and the same access log line as the proxy's
//! `request_filter` path, without a Pingora session per beacon.
//!
//! Anything the proxy would answer differently from a plain answer is left to it: a Host no
//! site serves (421, counted), a site that redirects plain HTTP to HTTPS, a body over
//! `collect.max_body_kib` (413, then the connection closes), a tracker answer other than
//! 200 or 304.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::access;
use super::collect::{self, Headers};
use crate::collect::collector::{BeaconRequest, Collector};
use crate::config::Settings;
use crate::conn::shortcut::{Request, Shortcut};
use crate::route::Router;

/// The collection's shortcut: shares the proxy's settings, routes and collector.
pub struct CollectShortcut {
    pub(super) settings: Arc<Settings>,
    pub(super) router: Router,
    pub(super) collector: Arc<Collector>,
}

impl<'a> Headers<'a> for &Request<'a> {
    fn first(&self, name: &str) -> Option<&'a str> {
        self.header(name)
    }

    fn all(&self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.header_all(name)
    }
}

#[async_trait]
impl Shortcut for CollectShortcut {
    fn claims(&self, method: &str, path: &str) -> bool {
        let read = matches!(method, "GET" | "HEAD");
        (path == self.settings.collect_path && (read || method == "POST"))
            || (path == self.settings.tracker_path && read)
    }

    async fn answer(&self, req: &Request<'_>) -> Option<Vec<u8>> {
        let started = Instant::now();
        let site = self.router.route(req.host)?;
        let client = collect::client(&self.settings, site, &req, req.peer, req.tls, req.host);
        if site.tls.as_ref().is_some_and(|t| t.redirect_http) && !client.https {
            return None;
        }
        let head_only = req.method == "HEAD";
        let (status, answer, body_len) = if req.path == self.settings.tracker_path {
            let a = self.collector.tracker().answer(
                &method(req.method),
                req.query,
                req.header("if-none-match"),
                req.header("accept-encoding"),
            );
            if a.status != 200 && a.status != 304 {
                return None;
            }
            let headers = a.headers.iter().map(|(n, v)| (*n, v.as_str()));
            let body = if head_only { &[][..] } else { &a.body[..] };
            (
                a.status,
                answer(a.status, headers, body, req.close),
                body.len(),
            )
        } else {
            if req.body.len() > self.settings.collect.max_body_bytes {
                return None;
            }
            let r = BeaconRequest {
                method: &method(req.method),
                query: req.query,
                content_type: req.header("content-type"),
                origin: req.header("origin"),
                referer: req.header("referer"),
                body: if req.method == "POST" { req.body } else { &[] },
                body_too_large: false,
            };
            let a = self.collector.beacon(&client, &r).await;
            let headers = collect::beacon_headers(&a);
            let headers = headers.iter().map(|(n, v)| (*n, v.as_ref()));
            let body = if head_only { &[][..] } else { &a.body[..] };
            (
                a.status,
                answer(a.status, headers, body, req.close),
                body.len(),
            )
        };
        if self.settings.log.access {
            access_line(req, req.peer, &site.name, status, body_len, started).write();
        }
        Some(answer)
    }
}

fn access_line<'a>(
    req: &'a Request<'_>,
    peer: Option<IpAddr>,
    site: &'a str,
    status: u16,
    bytes: usize,
    started: Instant,
) -> access::Line<'a> {
    access::Line {
        client: peer,
        method: req.method,
        host: req.host,
        path: req.path,
        version: http::Version::HTTP_11,
        tls: req.tls,
        status,
        bytes,
        site,
        origin: "",
        started: Some(started),
        error: "",
    }
}

fn method(m: &str) -> http::Method {
    match m {
        "POST" => http::Method::POST,
        "HEAD" => http::Method::HEAD,
        _ => http::Method::GET,
    }
}

/// An answer as Pingora's HTTP/1.1 session writes it: status line, the headers as given
/// (names as [`wire_name`] gives them), then `date` and `connection`, the blank line and the body.
fn answer<'h>(
    status: u16,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let date = pingora::protocols::http::date::get_cached_date();
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut line = |name: &str, value: &[u8]| {
        out.extend_from_slice(wire_name(name).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        line(name, value.as_bytes());
    }
    line("date", date.as_bytes());
    line("connection", if close { b"close" } else { b"keep-alive" });
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A header name as Pingora writes it without a case map: the common ones in title case.
fn wire_name(name: &str) -> &str {
    match name {
        "accept-ranges" => "Accept-Ranges",
        "age" => "Age",
        "cache-control" => "Cache-Control",
        "connection" => "Connection",
        "content-type" => "Content-Type",
        "content-encoding" => "Content-Encoding",
        "content-length" => "Content-Length",
        "date" => "Date",
        "transfer-encoding" => "Transfer-Encoding",
        "host" => "Host",
        "server" => "Server",
        "set-cookie" => "Set-Cookie",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_framed_like_pingoras() {
        let out = answer(
            204,
            [("cache-control", "no-store"), ("set-cookie", "a=1")].into_iter(),
            b"",
            false,
        );
        let text = String::from_utf8(out).unwrap();
        let (head, rest) = text.split_once("Date: ").unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\nSet-Cookie: a=1\r\n"
        );
        assert!(
            rest.ends_with(" GMT\r\nConnection: keep-alive\r\n\r\n"),
            "{rest}"
        );
        let out = answer(200, [("etag", "\"1\"")].into_iter(), b"js", true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\netag: \"1\"\r\nDate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nConnection: close\r\n\r\njs"),
            "{text}"
        );
    }
}
