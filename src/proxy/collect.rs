//! The proxy's side of first-party collection: answers the tracker and collect paths itself
//! (never proxied), and runs page navigations past the collector for identity cookies.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{header_str, request_host, RequestCtx, Smproxy};
use crate::collect::collector::{BeaconAnswer, BeaconRequest, Client, PageAnswer};
use crate::config::{Settings, Site};

/// What `request_filter` should do after the collection looked at a request.
pub enum Handled {
    /// Answered here; do not proxy.
    Done,
    /// Proxy it.
    Proxy,
}

impl Smproxy {
    /// The tracker, a beacon, or a page navigation carrying identity.
    pub(super) async fn collect_phase(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        site: &std::sync::Arc<Site>,
    ) -> Result<Handled> {
        let path = session.req_header().uri.path();
        if path == self.settings.tracker_path {
            self.answer_tracker(session).await?;
            return Ok(Handled::Done);
        }
        if path == self.settings.collect_path {
            self.answer_beacon(session, site).await?;
            return Ok(Handled::Done);
        }
        let req = session.req_header();
        let navigation = (req.method == http::Method::GET || req.method == http::Method::HEAD)
            && is_navigation(req);
        if !navigation {
            return Ok(Handled::Proxy);
        }
        let page = {
            let client = self.client(session, site);
            let req = session.req_header();
            self.collector
                .page(&client, req.uri.path(), req.uri.query())
        };
        match page {
            PageAnswer {
                redirect: Some(location),
                set_cookies,
            } => {
                let mut h = ResponseHeader::build(302, Some(4))?;
                h.insert_header(header::LOCATION, location)?;
                h.insert_header(header::CACHE_CONTROL, "no-store")?;
                h.insert_header(header::CONTENT_LENGTH, "0")?;
                for c in set_cookies {
                    h.append_header(header::SET_COOKIE, c)?;
                }
                session.write_response_header(Box::new(h), true).await?;
                Ok(Handled::Done)
            }
            PageAnswer { set_cookies, .. } => {
                ctx.set_cookies = set_cookies;
                Ok(Handled::Proxy)
            }
        }
    }

    /// What is known about the client of this request.
    pub(super) fn client<'a>(
        &self,
        session: &'a Session,
        site: &'a std::sync::Arc<Site>,
    ) -> Client<'a> {
        let req = session.req_header();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let host = request_host(req).unwrap_or("");
        client(&self.settings, site, &req, peer, tls, host)
    }

    async fn answer_tracker(&self, session: &mut Session) -> Result<()> {
        let req = session.req_header();
        let a = self.collector.tracker().answer(
            &req.method,
            req.uri.query(),
            header_str(req, "if-none-match"),
            header_str(req, "accept-encoding"),
        );
        // Without the case map (names go out in lower case, as in HTTP/2): this answer and the
        // beacon's are the most frequent ones smproxy makes itself, and the map costs an
        // allocation and a second header map per header.
        let mut h = ResponseHeader::build_no_case(a.status, Some(a.headers.len()))?;
        for (name, value) in a.headers {
            h.insert_header(name, value)?;
        }
        let head_only = req.method == http::Method::HEAD || a.body.is_empty();
        session
            .write_response_header(Box::new(h), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(a.body), true).await?;
        }
        Ok(())
    }

    async fn answer_beacon(
        &self,
        session: &mut Session,
        site: &std::sync::Arc<Site>,
    ) -> Result<()> {
        let limit = self.settings.collect.max_body_bytes;
        let (body, too_large) = if session.req_header().method == http::Method::POST {
            read_capped(session, limit, self.settings.timeouts.read).await?
        } else {
            (Vec::new(), false)
        };
        let answer = {
            let client = self.client(session, site);
            let req = session.req_header();
            let r = BeaconRequest {
                method: &req.method,
                query: req.uri.query(),
                content_type: header_str(req, "content-type"),
                origin: header_str(req, "origin"),
                referer: header_str(req, "referer"),
                body: &body,
                body_too_large: too_large,
            };
            self.collector.beacon(&client, &r).await
        };
        if too_large {
            // The rest of the body was not read: the connection cannot carry another request.
            session.set_keepalive(None);
        }
        write_beacon_answer(session, answer).await
    }
}

/// The request headers the collection reads: Pingora's, or those of a request answered
/// before Pingora (`shortcut.rs`). Values outside visible ASCII read as absent in both.
pub(super) trait Headers<'a> {
    /// The first value of `name`.
    fn first(&self, name: &str) -> Option<&'a str>;
    /// Every value of `name`, in order.
    fn all(&self, name: &'static str) -> impl Iterator<Item = &'a [u8]>;
}

impl<'a> Headers<'a> for &'a RequestHeader {
    fn first(&self, name: &str) -> Option<&'a str> {
        header_str(self, name)
    }

    fn all(&self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.headers.get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// What is known about a client from its request: `peer` is the connection's address
/// (`None`: not an IP socket), `tls` whether the connection is.
pub(super) fn client<'a>(
    settings: &Settings,
    site: &'a std::sync::Arc<Site>,
    headers: &impl Headers<'a>,
    peer: Option<IpAddr>,
    tls: bool,
    host: &'a str,
) -> Client<'a> {
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let trusted = &settings.collect.trusted_proxies;
    let xff = headers
        .all("x-forwarded-for")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    let ip = trusted.client_ip(peer, xff);
    let https = tls || trusted.forwarded_https(peer, headers.first("x-forwarded-proto"));
    Client {
        site,
        host,
        https,
        ip,
        user_agent: headers.first("user-agent"),
        cookies: headers.all("cookie").collect(),
        gpc: headers.first("sec-gpc").is_some_and(|v| v.trim() == "1"),
        dnt: headers.first("dnt").is_some_and(|v| v.trim() == "1"),
    }
}

/// The request body, or `true` as soon as it is known to exceed `limit` (from
/// `Content-Length`, or while reading), without reading everything a hostile client sends.
async fn read_capped(
    session: &mut Session,
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, bool)> {
    let declared = header_str(session.req_header(), "content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Ok((Vec::new(), true));
    }
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(timeout, session.read_request_body())
            .await
            .map_err(|_| Error::explain(ErrorType::ReadTimedout, "reading a beacon body"))??;
        let Some(chunk) = chunk else {
            return Ok((body, false));
        };
        if body.len() + chunk.len() > limit {
            return Ok((Vec::new(), true));
        }
        body.extend_from_slice(&chunk);
    }
}

async fn write_beacon_answer(session: &mut Session, a: BeaconAnswer) -> Result<()> {
    let headers = beacon_headers(&a);
    // Without the case map, like the tracker's answer (see `answer_tracker`).
    let mut h = ResponseHeader::build_no_case(a.status, Some(headers.len()))?;
    for (name, value) in headers {
        h.append_header(name, value.into_owned())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD || a.body.is_empty();
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(a.body)), true)
            .await?;
    }
    Ok(())
}

/// The headers of a beacon's answer, in order (Pingora adds `date` and `connection`).
pub(super) fn beacon_headers(a: &BeaconAnswer) -> Vec<(&'static str, Cow<'_, str>)> {
    let mut h = Vec::with_capacity(4 + a.set_cookies.len());
    h.push(("cache-control", Cow::Borrowed("no-store")));
    h.push(("x-content-type-options", Cow::Borrowed("nosniff")));
    if let Some(ct) = a.content_type {
        h.push(("content-type", Cow::Borrowed(ct)));
    }
    if a.status != 204 {
        h.push(("content-length", Cow::Owned(a.body.len().to_string())));
    }
    for c in &a.set_cookies {
        h.push(("set-cookie", Cow::Borrowed(c.as_str())));
    }
    h
}

/// A top-level page load: `Sec-Fetch-Dest: document` when the browser says, else an `Accept`
/// that asks for HTML (older browsers, simple clients).
fn is_navigation(req: &RequestHeader) -> bool {
    match header_str(req, "sec-fetch-dest") {
        Some(dest) => dest == "document",
        None => header_str(req, "accept")
            .is_some_and(|a| a.contains("text/html") || a.contains("application/xhtml+xml")),
    }
}

/// Cookies added to a proxied answer. A response that sets one visitor's identifier must not
/// be stored by a shared cache and handed to others: it becomes `private`.
pub fn add_cookies(resp: &mut ResponseHeader, cookies: &[String]) -> Result<()> {
    if cookies.is_empty() {
        return Ok(());
    }
    for c in cookies {
        resp.append_header(header::SET_COOKIE, c.as_str())?;
    }
    let cc = resp
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !cc.contains("no-store") && !cc.contains("private") {
        let kept: Vec<&str> = cc
            .split(',')
            .map(str::trim)
            .filter(|d| {
                let d = d.to_ascii_lowercase();
                !d.is_empty() && d != "public" && !d.starts_with("s-maxage")
            })
            .collect();
        let value = std::iter::once("private")
            .chain(kept)
            .collect::<Vec<_>>()
            .join(", ");
        resp.insert_header(header::CACHE_CONTROL, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_make_a_shared_answer_private() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("cache-control", "public, max-age=600, s-maxage=3600")
            .unwrap();
        add_cookies(&mut r, &["a=1".into(), "b=2".into()]).unwrap();
        assert_eq!(r.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(
            r.headers.get("cache-control").unwrap(),
            "private, max-age=600"
        );
        let mut r = ResponseHeader::build(200, None).unwrap();
        add_cookies(&mut r, &["a=1".into()]).unwrap();
        assert_eq!(r.headers.get("cache-control").unwrap(), "private");
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("cache-control", "no-store").unwrap();
        add_cookies(&mut r, &["a=1".into()]).unwrap();
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    }
}
