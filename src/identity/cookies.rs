//! `Set-Cookie` values for the proxy's first-party cookies, and reading a cookie from the
//! request's `Cookie` header(s).
//!
//! Every cookie gets `Path=/` and `SameSite=Lax`; `Secure` when the client connection is
//! HTTPS; `HttpOnly` unless it must be readable by page scripts; `Max-Age` in days (rolling:
//! the proxy sets it again on later responses); `Domain=` the registrable domain of the host
//! so that subdomains share it, or no `Domain` (host-only) for IP addresses, `localhost` and
//! single-label hosts. Nothing that could break out of the header (CR, LF, `;`, `,`, controls,
//! spaces, quotes, non-ASCII) is ever written: such input is an error.

use std::fmt::Write;

use super::domain::registrable_domain;

/// The anonymous visitor id cookie (UUID v4, set only when consent allows).
pub const SMUUID: &str = "smuuid";
/// The identified contact cookie (signed).
pub const SMCLIENT: &str = "smclient";
/// The cross-site identity cookie (signed).
pub const SMIDS: &str = "smids";
/// The query parameter carrying a sibling-site link token.
pub const SMX_PARAM: &str = "_smx";
/// The query parameter carrying a personal link token.
pub const SMLINK_PARAM: &str = "smlink";

/// Default lifetime of the cookies, in days.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 395;
/// Longest accepted cookie value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// Why a `Set-Cookie` value was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("invalid cookie name")]
    InvalidName,
    #[error("invalid cookie value")]
    InvalidValue,
    #[error("invalid cookie domain")]
    InvalidDomain,
}

/// The attributes of a cookie besides its name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    /// The client connection is HTTPS: add `Secure`.
    pub https: bool,
    /// Page scripts must read it: leave out `HttpOnly`.
    pub js_readable: bool,
    /// `Max-Age` in days.
    pub max_age_days: u32,
    /// `Domain=`; `None` for a host-only cookie.
    pub domain: Option<String>,
}

impl Default for CookieAttrs {
    /// Host-only, not `Secure`, `HttpOnly`, [`DEFAULT_MAX_AGE_DAYS`].
    fn default() -> Self {
        CookieAttrs {
            https: false,
            js_readable: false,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            domain: None,
        }
    }
}

impl CookieAttrs {
    /// The defaults for a request to `host` (the `Host` header or URI authority, port allowed):
    /// `Domain` is its registrable domain when it has one.
    pub fn for_host(host: &str, https: bool) -> Self {
        CookieAttrs {
            https,
            domain: registrable_domain(host),
            ..CookieAttrs::default()
        }
    }

    /// The same attributes, readable (or not) by page scripts.
    pub fn js_readable(mut self, yes: bool) -> Self {
        self.js_readable = yes;
        self
    }

    /// The same attributes with another lifetime.
    pub fn max_age_days(mut self, days: u32) -> Self {
        self.max_age_days = days;
        self
    }
}

/// RFC 6265 `token`: visible ASCII except separators.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// RFC 6265 `cookie-octet`s: visible ASCII except `"`, `,`, `;` and `\`.
fn valid_value(value: &str) -> bool {
    value.len() <= MAX_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

/// A host name: `[A-Za-z0-9._-]`, at least one character.
fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn build(
    name: &str,
    value: &str,
    max_age_secs: u64,
    attrs: &CookieAttrs,
) -> Result<String, CookieError> {
    if !valid_name(name) {
        return Err(CookieError::InvalidName);
    }
    if !valid_value(value) {
        return Err(CookieError::InvalidValue);
    }
    let domain = attrs.domain.as_deref();
    if domain.is_some_and(|d| !valid_domain(d)) {
        return Err(CookieError::InvalidDomain);
    }
    // One allocation of the right size: the answer to every first visit carries two or three
    // of these.
    let mut out =
        String::with_capacity(name.len() + value.len() + domain.map_or(0, |d| d.len() + 9) + 80);
    for part in [name, "=", value, "; Path=/"] {
        out.push_str(part);
    }
    if let Some(domain) = domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    // Writing into a String cannot fail.
    let _ = write!(out, "; Max-Age={max_age_secs}; SameSite=Lax");
    if attrs.https {
        out.push_str("; Secure");
    }
    if !attrs.js_readable {
        out.push_str("; HttpOnly");
    }
    Ok(out)
}

/// A `Set-Cookie` header value setting `name` to `value`.
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs) -> Result<String, CookieError> {
    build(name, value, u64::from(attrs.max_age_days) * 86_400, attrs)
}

/// A `Set-Cookie` header value deleting `name` (empty value, `Max-Age=0`). Pass the same
/// attributes as when it was set: a cookie is only replaced by one with the same `Domain`.
pub fn delete_cookie(name: &str, attrs: &CookieAttrs) -> Result<String, CookieError> {
    build(name, "", 0, attrs)
}

/// The value of the first cookie called `name` in the `Cookie` header value(s), in order.
///
/// Tolerant: empty pairs, pairs without `=`, extra whitespace and other cookies' odd bytes are
/// skipped; surrounding double quotes are removed from the value. A value that is not UTF-8 is
/// skipped. Accepts anything that yields `&[u8]`-like items: `&str`, `&[u8]`,
/// `&http::HeaderValue` (e.g. `headers.get_all(http::header::COOKIE)`).
pub fn read_cookie<'a, I, T>(headers: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a T>,
    T: AsRef<[u8]> + ?Sized + 'a,
{
    let name = name.as_bytes();
    for header in headers {
        for pair in header.as_ref().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != name {
                continue;
            }
            let mut value = pair[eq + 1..].trim_ascii();
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            if let Ok(v) = std::str::from_utf8(value) {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_shared_domain_cookie() {
        let attrs = CookieAttrs::for_host("shop.example.co.uk:443", true);
        assert_eq!(
            set_cookie("smclient", "abc.def", &attrs).unwrap(),
            "smclient=abc.def; Path=/; Domain=example.co.uk; Max-Age=34128000; SameSite=Lax; Secure; HttpOnly"
        );
    }

    #[test]
    fn http_js_readable_cookie() {
        let attrs = CookieAttrs::for_host("www.Example.com", false).js_readable(true);
        assert_eq!(
            set_cookie("smuuid", "0f8fad5b-d9cb-469f-a165-70867728950e", &attrs).unwrap(),
            "smuuid=0f8fad5b-d9cb-469f-a165-70867728950e; Path=/; Domain=example.com; Max-Age=34128000; SameSite=Lax"
        );
    }

    #[test]
    fn custom_max_age() {
        let attrs = CookieAttrs::for_host("example.com", true).max_age_days(1);
        assert_eq!(
            set_cookie("smids", "x", &attrs).unwrap(),
            "smids=x; Path=/; Domain=example.com; Max-Age=86400; SameSite=Lax; Secure; HttpOnly"
        );
    }

    #[test]
    fn host_only_for_ip_localhost_and_single_label() {
        for host in [
            "127.0.0.1:8080",
            "[::1]:8443",
            "localhost",
            "localhost:8080",
            "intranet",
        ] {
            let attrs = CookieAttrs::for_host(host, false);
            assert_eq!(attrs.domain, None, "{host}");
            assert_eq!(
                set_cookie("smuuid", "v", &attrs).unwrap(),
                "smuuid=v; Path=/; Max-Age=34128000; SameSite=Lax; HttpOnly",
                "{host}"
            );
        }
    }

    #[test]
    fn deletion_cookie() {
        let attrs = CookieAttrs::for_host("a.b.github.io", true);
        assert_eq!(
            delete_cookie("smclient", &attrs).unwrap(),
            "smclient=; Path=/; Domain=b.github.io; Max-Age=0; SameSite=Lax; Secure; HttpOnly"
        );
        assert_eq!(
            delete_cookie("smuuid", &CookieAttrs::default()).unwrap(),
            "smuuid=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly"
        );
    }

    #[test]
    fn default_attrs() {
        let a = CookieAttrs::default();
        assert_eq!(a.max_age_days, 395);
        assert!(!a.https && !a.js_readable && a.domain.is_none());
    }

    #[test]
    fn rejects_header_injection() {
        let attrs = CookieAttrs::default();
        for value in [
            "a\r\nSet-Cookie: evil=1",
            "a\nb",
            "a\rb",
            "a;Domain=evil.com",
            "a,b",
            "a b",
            "\"quoted\"",
            "back\\slash",
            "tab\t",
            "nul\0",
            "é",
        ] {
            assert_eq!(
                set_cookie("smuuid", value, &attrs),
                Err(CookieError::InvalidValue),
                "{value:?}"
            );
        }
        assert_eq!(
            set_cookie("smuuid", &"a".repeat(MAX_VALUE_LEN + 1), &attrs),
            Err(CookieError::InvalidValue)
        );
        for name in ["", "a=b", "a;b", "a b", "a\r\n", "a,b", "é"] {
            assert_eq!(
                set_cookie(name, "v", &attrs),
                Err(CookieError::InvalidName),
                "{name:?}"
            );
            assert_eq!(delete_cookie(name, &attrs), Err(CookieError::InvalidName));
        }
        for domain in ["", "evil.com; Secure", "a\r\nb", "a,b", "a b", "é.com"] {
            let attrs = CookieAttrs {
                domain: Some(domain.into()),
                ..CookieAttrs::default()
            };
            assert_eq!(
                set_cookie("smuuid", "v", &attrs),
                Err(CookieError::InvalidDomain),
                "{domain:?}"
            );
            assert_eq!(
                delete_cookie("smuuid", &attrs),
                Err(CookieError::InvalidDomain)
            );
        }
    }

    #[test]
    fn hostile_host_header_gives_host_only_cookie() {
        let attrs = CookieAttrs::for_host("evil.com\r\nX: y;a.example.com", true);
        assert_eq!(attrs.domain, None);
        assert!(set_cookie("smuuid", "v", &attrs).is_ok());
    }

    #[test]
    fn reads_cookies() {
        let h = ["a=1; smclient=tok.sig; b=2"];
        assert_eq!(read_cookie(h, "smclient"), Some("tok.sig"));
        assert_eq!(read_cookie(h, "a"), Some("1"));
        assert_eq!(read_cookie(h, "b"), Some("2"));
        assert_eq!(read_cookie(h, "c"), None);
        assert_eq!(read_cookie(h, "smclien"), None);
        assert_eq!(read_cookie(h, "SMCLIENT"), None);
    }

    #[test]
    fn reads_across_headers_first_match_wins() {
        let h = ["x=1", "smids=first; smids=second", "smids=third"];
        assert_eq!(read_cookie(h, "smids"), Some("first"));
        assert_eq!(read_cookie(h, "x"), Some("1"));
        let h = ["x=1", "y=2; smids=later"];
        assert_eq!(read_cookie(h, "smids"), Some("later"));
        let none: [&str; 0] = [];
        assert_eq!(read_cookie(none, "x"), None);
    }

    #[test]
    fn tolerant_parsing() {
        let h = [";;  ; junk ;  smuuid =  \"abc\"  ;=v; novalue; ;a=b=c; empty="];
        assert_eq!(read_cookie(h, "smuuid"), Some("abc"));
        assert_eq!(read_cookie(h, "a"), Some("b=c"));
        assert_eq!(read_cookie(h, "empty"), Some(""));
        assert_eq!(read_cookie(h, "novalue"), None);
        assert_eq!(read_cookie(h, "junk"), None);
        assert_eq!(read_cookie(h, ""), Some("v"));
        assert_eq!(read_cookie(["q=\""], "q"), Some("\""));
    }

    #[test]
    fn reads_bytes_and_header_values() {
        // non-UTF-8 bytes elsewhere in the header do not hide our cookie
        let raw: &[u8] = b"bad=\xff\xfe; smuuid=ok";
        assert_eq!(read_cookie([raw], "smuuid"), Some("ok"));
        assert_eq!(read_cookie([raw], "bad"), None);
        // a non-UTF-8 value is skipped and a later one used
        let raw2: &[u8] = b"k=\xff; k=good";
        assert_eq!(read_cookie([raw2], "k"), Some("good"));

        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1".parse().unwrap());
        headers.append(http::header::COOKIE, "smclient=v2".parse().unwrap());
        assert_eq!(
            read_cookie(headers.get_all(http::header::COOKIE), "smclient"),
            Some("v2")
        );
    }

    #[test]
    fn round_trip_set_then_read() {
        let attrs = CookieAttrs::for_host("example.com", true);
        let set = set_cookie("smids", "p.s", &attrs).unwrap();
        let pair = set.split(';').next().unwrap();
        assert_eq!(read_cookie([pair], "smids"), Some("p.s"));
    }

    #[test]
    fn hostile_cookie_headers_never_panic() {
        let huge = "a=b;".repeat(50_000);
        let many_eq = "=".repeat(10_000);
        let inputs: Vec<&[u8]> = vec![
            b"",
            b";",
            b"=",
            b"\"",
            b"=\"",
            b"\xff\xff=\xff",
            huge.as_bytes(),
            many_eq.as_bytes(),
            "ñ=ü; 😀=😀".as_bytes(),
        ];
        for h in &inputs {
            let _ = read_cookie([*h], "a");
            let _ = read_cookie([*h], "");
            let _ = read_cookie([*h], "😀");
        }
        assert_eq!(read_cookie(["ñ=ü; 😀=😀".as_bytes()], "😀"), Some("😀"));
    }
}
