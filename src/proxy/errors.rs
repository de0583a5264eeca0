//! The short pages smproxy answers itself when it cannot proxy: unknown host (421), origin
//! unreachable (502) or too slow (504).

use bytes::Bytes;
use pingora::http::ResponseHeader;

/// A small HTML error page; never cached, never injected.
pub fn page(status: u16, title: &str, text: &str) -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    let body = Bytes::from(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\
<body><h1>{status} {title}</h1><p>{text}</p></body></html>\n"
    ));
    let mut h = ResponseHeader::build(status, Some(4))?;
    h.insert_header("content-type", "text/html; charset=utf-8")?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-content-type-options", "nosniff")?;
    Ok((Box::new(h), body))
}

pub fn misdirected() -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    page(
        421,
        "Misdirected Request",
        "This proxy serves no site under this host name. Check the address, or add the host to a site's hosts list.",
    )
}

pub fn bad_gateway() -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    page(
        502,
        "Bad Gateway",
        "The site's server could not be reached. Please try again in a moment.",
    )
}

pub fn gateway_timeout() -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
    page(
        504,
        "Gateway Timeout",
        "The site's server took too long to answer. Please try again in a moment.",
    )
}
