//! Header edits of the proxy: forwarding headers toward the origin, and the response headers a
//! rewritten page needs (its length and digests change, its validators become weak).

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

/// Headers describing the exact bytes of the origin's body; wrong once the page is rewritten.
const BODY_EXACT: [&str; 6] = [
    "content-length",
    "content-md5",
    "digest",
    "repr-digest",
    "content-digest",
    "accept-ranges",
];

/// Sets `X-Forwarded-For` (appended to what is already there), `-Proto` and `-Host`.
pub fn forwarded(
    req: &mut RequestHeader,
    client_ip: Option<String>,
    https: bool,
    host: Option<&str>,
) -> pingora::Result<()> {
    if let Some(ip) = client_ip {
        let value = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        req.insert_header("x-forwarded-for", value)?;
    }
    req.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    if let Some(h) = host {
        req.insert_header("x-forwarded-host", h)?;
    }
    Ok(())
}

/// A strong `ETag` made weak: the rewritten body is semantically, not byte-for-byte, the
/// origin's.
pub fn weaken_etag(value: &[u8]) -> Option<Vec<u8>> {
    if value.starts_with(b"W/") {
        return None;
    }
    let mut v = b"W/".to_vec();
    v.extend_from_slice(value);
    Some(v)
}

/// Edits the response headers of a page that is about to be rewritten.
pub fn for_rewritten_page(
    resp: &mut ResponseHeader,
    content_encoding: Option<&'static str>,
    vary_encoding: bool,
) -> pingora::Result<()> {
    for name in BODY_EXACT {
        resp.remove_header(name);
    }
    if let Some(etag) = resp
        .headers
        .get(header::ETAG)
        .and_then(|v| weaken_etag(v.as_bytes()))
    {
        if let Ok(v) = HeaderValue::from_bytes(&etag) {
            resp.insert_header(header::ETAG, v)?;
        }
    }
    match content_encoding {
        Some(c) => resp.insert_header(header::CONTENT_ENCODING, c)?,
        None => {
            resp.remove_header(&header::CONTENT_ENCODING);
        }
    }
    if vary_encoding {
        let has = resp
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*");
        if !has {
            resp.append_header(header::VARY, "Accept-Encoding")?;
        }
    }
    Ok(())
}

/// Framing for an HTTP/1.0 client: no `Transfer-Encoding` (it does not know chunked); without
/// it the body is close-delimited, so a `Content-Length` left by a chunked origin must go too.
pub fn for_http10_client(resp: &mut ResponseHeader) {
    if resp.remove_header(&header::TRANSFER_ENCODING).is_some() {
        resp.remove_header(&header::CONTENT_LENGTH);
    }
}

/// All values of a header, as text.
pub fn all_values<'a>(
    headers: &'a http::HeaderMap,
    name: &'a HeaderName,
) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(weaken_etag(b"\"abc\"").unwrap(), b"W/\"abc\"");
        assert_eq!(weaken_etag(b"W/\"abc\""), None);
    }

    #[test]
    fn http10_client_gets_no_chunked_framing() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("transfer-encoding", "chunked").unwrap();
        r.insert_header("content-length", "10").unwrap();
        for_http10_client(&mut r);
        assert!(r.headers.get("transfer-encoding").is_none());
        assert!(r.headers.get("content-length").is_none());
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-length", "10").unwrap();
        for_http10_client(&mut r);
        assert_eq!(r.headers.get("content-length").unwrap(), "10");
    }

    #[test]
    fn rewritten_page_headers() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-length", "10").unwrap();
        r.insert_header("accept-ranges", "bytes").unwrap();
        r.insert_header("etag", "\"x\"").unwrap();
        r.insert_header("content-encoding", "br").unwrap();
        r.append_header("set-cookie", "a=1").unwrap();
        r.append_header("set-cookie", "b=2").unwrap();
        r.insert_header("vary", "Cookie").unwrap();
        for_rewritten_page(&mut r, Some("gzip"), true).unwrap();
        assert!(r.headers.get("content-length").is_none());
        assert!(r.headers.get("accept-ranges").is_none());
        assert_eq!(r.headers.get("etag").unwrap(), "W/\"x\"");
        assert_eq!(r.headers.get("content-encoding").unwrap(), "gzip");
        assert_eq!(r.headers.get_all("set-cookie").iter().count(), 2);
        let vary: Vec<_> = r
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["Cookie", "Accept-Encoding"]);
    }
}
