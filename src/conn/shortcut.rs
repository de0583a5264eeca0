//! Requests answered before Pingora's request handling starts.
//!
//! A beacon is a small, complete request whose answer smproxy makes itself: Pingora's session
//! (its boxed request future, header maps, the proxy phases) costs more than reading it. When
//! the bytes that woke an idle connection hold one whole HTTP/1.1 request with plain framing,
//! and the app's [`Shortcut`] claims its method and path, the shortcut answers it here.
//!
//! Anything else goes to Pingora untouched, so a shortcut only ever sees plain requests: a head
//! or body that did not arrive in one read, a second (pipelined) request behind the first,
//! `Transfer-Encoding`, `Expect`, `Upgrade`, a `Connection` other than `keep-alive` or `close`,
//! no or more than one `Host`, a `Host` with userinfo, other than one plain `Content-Length`,
//! a target not in origin form, HTTP/1.0, or more headers than [`MAX_HEADERS`]. Pingora then
//! answers as it always does (including every 400 it gives to broken framing).

use std::net::IpAddr;

use async_trait::async_trait;

/// Headers a request may have to be answered here (Pingora takes up to 256).
pub const MAX_HEADERS: usize = 48;

/// One whole request, as read from the connection.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path of the target, without its query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The one `Host` header.
    pub host: &'a str,
    /// `Connection: close`: the connection closes after the answer.
    pub close: bool,
    pub body: &'a [u8],
    headers: &'a [httparse::Header<'a>],
    /// The client's address (`None` on a Unix socket).
    pub peer: Option<IpAddr>,
    pub tls: bool,
}

impl<'a> Request<'a> {
    /// The first value of header `name`, if it is visible ASCII (as `HeaderValue::to_str`
    /// requires, so both paths read the same headers the same way).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| visible_ascii(h.value))
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// What an app answers before Pingora.
#[async_trait]
pub trait Shortcut: Send + Sync {
    /// Whether requests with this method and path may be answered here (a cheap test made
    /// before the request is checked further).
    fn claims(&self, method: &str, path: &str) -> bool;

    /// The whole answer (head and body) to `req`, or `None` to leave the request to Pingora.
    /// Its `Connection` header says `close` when `req.close` (the connection then closes).
    async fn answer(&self, req: &Request<'_>) -> Option<Vec<u8>>;
}

/// The method and path (without query) of the request line `buf` starts with, if it has
/// arrived; a quick look, not a check.
pub fn method_and_path(buf: &[u8]) -> Option<(&str, &str)> {
    // Asked of every request on a connection with a shortcut, pages included: memchr's
    // vector scan, not a byte loop, over a target that is often long.
    let line = &buf[..buf.len().min(512)];
    let sp = memchr::memchr(b' ', &line[..line.len().min(8)])?;
    let rest = &line[sp + 1..];
    let end = memchr::memchr2(b' ', b'?', rest)?;
    let method = std::str::from_utf8(&line[..sp]).ok()?;
    let path = std::str::from_utf8(&rest[..end]).ok()?;
    Some((method, path))
}

/// `buf` read as exactly one whole request with plain framing, or `None` (see the module
/// documentation). `headers` is the parser's scratch space.
pub fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [httparse::Header<'a>; MAX_HEADERS],
    peer: Option<IpAddr>,
    tls: bool,
) -> Option<Request<'a>> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    if req.version != Some(1) {
        return None;
    }
    let method = req.method?;
    let target = req.path?;
    if !target.starts_with('/') || http::uri::PathAndQuery::try_from(target).is_err() {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let headers: &'a [httparse::Header<'a>] = req.headers;
    let mut host = None;
    let mut length = None;
    let mut close = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() || h.value.contains(&b'@') {
                return None;
            }
            host = Some(visible_ascii(h.value)?);
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return None;
            }
            length = Some(plain_length(h.value)?);
        } else if name.eq_ignore_ascii_case("connection") {
            let value = visible_ascii(h.value)?.trim();
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if !value.eq_ignore_ascii_case("keep-alive") {
                return None;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return None;
        }
    }
    let body = &buf[head_len..];
    if body.len() != length.unwrap_or(0) {
        return None;
    }
    Some(Request {
        method,
        path,
        query,
        host: host?,
        close,
        body,
        headers,
        peer,
        tls,
    })
}

/// A `Content-Length` of digits only, short enough to be a real length.
fn plain_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &str, check: impl FnOnce(Option<Request<'_>>)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        check(parse(raw.as_bytes(), &mut headers, None, false));
    }

    const BEACON: &str = "POST /_sm/collect?x=1 HTTP/1.1\r\nHost: a.example\r\nCookie: a=1\r\nCookie: b=2\r\nContent-Length: 2\r\n\r\n{}";

    #[test]
    fn a_plain_request_is_read_whole() {
        read(BEACON, |r| {
            let r = r.expect("a plain beacon");
            assert_eq!(
                (r.method, r.path, r.query, r.host, r.close, r.body),
                (
                    "POST",
                    "/_sm/collect",
                    Some("x=1"),
                    "a.example",
                    false,
                    &b"{}"[..]
                )
            );
            assert_eq!(r.header("COOKIE"), Some("a=1"));
            assert_eq!(
                r.header_all("cookie").collect::<Vec<_>>(),
                [&b"a=1"[..], b"b=2"]
            );
            assert_eq!(r.header("origin"), None);
        });
        read(
            "GET /_sm/sm.js HTTP/1.1\r\nhost: a.example\r\nconnection: Close\r\n\r\n",
            |r| {
                let r = r.expect("a plain GET");
                assert!(r.close);
                assert!(r.body.is_empty());
            },
        );
    }

    #[test]
    fn the_request_line_is_looked_at_without_parsing_the_head() {
        fn look(raw: &str) -> Option<(&str, &str)> {
            method_and_path(raw.as_bytes())
        }
        assert_eq!(look("GET /a?b=1 HTTP/1.1\r\n"), Some(("GET", "/a")));
        assert_eq!(
            look("POST /_sm/collect HTTP/1.1"),
            Some(("POST", "/_sm/collect"))
        );
        assert_eq!(look("GET /a"), None, "the target has not ended yet");
        assert_eq!(look("NOTAMETHOD /a HTTP/1.1"), None);
        assert_eq!(look(""), None);
    }

    #[test]
    fn anything_but_plain_framing_is_left_to_pingora() {
        let with = |from: &str, to: &str| BEACON.replacen(from, to, 1);
        let cases = [
            // Not all here, or more than one request.
            BEACON[..BEACON.len() - 1].to_string(),
            BEACON[..40].to_string(),
            format!("{BEACON}GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            // Framing Pingora handles its own way.
            with("Content-Length: 2", "Transfer-Encoding: chunked"),
            with(
                "Content-Length: 2",
                "Content-Length: 2\r\nContent-Length: 2",
            ),
            with("Content-Length: 2", "Content-Length: +2"),
            with("Content-Length: 2", "Content-Length: 2, 2"),
            with("Cookie: a=1", "Expect: 100-continue"),
            with("Cookie: a=1", "Upgrade: websocket"),
            with("Cookie: a=1", "Connection: keep-alive, Upgrade"),
            with("HTTP/1.1", "HTTP/1.0"),
            // The authority.
            with("Host: a.example\r\n", ""),
            with("Host: a.example", "Host: a.example\r\nHost: b.example"),
            with("Host: a.example", "Host: u@a.example"),
            with("/_sm/collect", "http://a.example/_sm/collect"),
            with("/_sm/collect", "*"),
            // Not a request httparse takes.
            with("Cookie: a=1", "Cookie a=1"),
            format!(
                "POST /_sm/collect HTTP/1.1\r\nHost: a.example\r\n{}\r\n",
                "X: y\r\n".repeat(MAX_HEADERS)
            ),
        ];
        for raw in cases {
            read(&raw, |r| assert!(r.is_none(), "taken: {raw:?}"));
        }
    }

    #[test]
    fn header_values_outside_visible_ascii_read_as_absent() {
        read(
            &BEACON.replacen("Cookie: a=1", "User-Agent: caf\u{e9}", 1),
            |r| {
                let r = r.expect("still plain framing");
                assert_eq!(r.header("user-agent"), None);
            },
        );
    }
}
