//! HTTPS policies of a site at the edge: the plain-HTTP → HTTPS redirect and HSTS.

use bytes::Bytes;
use pingora::http::ResponseHeader;

/// The HTTPS URL of a request: same host (without its port), path and query; the HTTPS port
/// only when it is not 443.
pub fn https_location(host: &str, path_and_query: &str, https_port: Option<u16>) -> String {
    let name = crate::route::normalize_host(host);
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    match https_port {
        Some(p) => format!("https://{name}:{p}{path}"),
        None => format!("https://{name}{path}"),
    }
}

/// The redirect answer: `301` for GET and HEAD; `308` for other methods, which must be
/// repeated with the same method and body (a browser turns a `301` POST into a GET).
pub fn redirect(
    method: &http::Method,
    location: &str,
) -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    let status = if method == http::Method::GET || method == http::Method::HEAD {
        301
    } else {
        308
    };
    let mut h = ResponseHeader::build(status, Some(3))?;
    h.insert_header("location", location)?;
    h.insert_header("content-length", "0")?;
    h.insert_header("cache-control", "no-store")?;
    Ok((Box::new(h), Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_keeps_path_and_query_and_drops_the_http_port() {
        assert_eq!(
            https_location("Shop.Example:8080", "/a/b?x=1&y=2", None),
            "https://shop.example/a/b?x=1&y=2"
        );
        assert_eq!(
            https_location("shop.example", "/", Some(8443)),
            "https://shop.example:8443/"
        );
        assert_eq!(
            https_location("shop.example", "*", None),
            "https://shop.example/"
        );
    }

    #[test]
    fn redirect_status_follows_the_method() {
        let (h, _) = redirect(&http::Method::GET, "https://a/").unwrap();
        assert_eq!(h.status, 301);
        let (h, _) = redirect(&http::Method::POST, "https://a/").unwrap();
        assert_eq!(h.status, 308);
    }
}
