//! The `Host`-like authority (`shop.test`, `shop.test:8080`, `[::1]:3000`) of an `Origin` or
//! `Referer` header, which the collect endpoint compares with the site's hosts.
//!
//! The reference is the URL parser: the authority of `Url::parse(value)` when it is an http(s)
//! URL with a host, lower-cased, with `:port` only for a port other than the scheme's default.
//! Parsing costs a few microseconds per beacon (allocation, IDNA mapping of the host), and
//! almost every beacon's `Origin` is already what the parser would print — a browser
//! serialises it so — so [`plain_origin`] recognises that shape by looking at its bytes and
//! answers without parsing. It is deliberately narrow: whatever it does not recognise (upper
//! case, punycode, numbers that the parser reads as IPv4, userinfo, a path, odd ports) goes to
//! the parser, and the test at the bottom checks that both give the same answer.

use std::borrow::Cow;

use url::Url;

/// The authority of an http(s) `Origin` or `Referer` value; `None` when it is not an http(s)
/// URL with a host.
pub fn header_authority(value: &str) -> Option<Cow<'_, str>> {
    let value = value.trim();
    if let Some(authority) = plain_origin(value) {
        return Some(Cow::Borrowed(authority));
    }
    let url = Url::parse(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    authority(&url).map(Cow::Owned)
}

/// What a `Host` header for `url` would carry: the lower-cased host, plus `:port` when the
/// port is not the scheme's default (the parser already drops a default one).
pub fn authority(url: &Url) -> Option<String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())?
        .to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// `http://` or `https://`, a host the parser would print unchanged, and an optional port,
/// nothing else (an `Origin` has no path). Returns the authority as a slice of `value`: the
/// host, or host and port unless the port is the scheme's default. `None` means "not sure":
/// ask the parser.
fn plain_origin(value: &str) -> Option<&str> {
    let (rest, default_port) = if let Some(rest) = value.strip_prefix("https://") {
        (rest, 443)
    } else {
        (value.strip_prefix("http://")?, 80)
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if !plain_host(host) {
        return None;
    }
    match port {
        None => Some(host),
        Some(digits) => match plain_port(digits)? {
            p if p == default_port => Some(host),
            _ => Some(rest),
        },
    }
}

/// Lower-case ASCII labels of letters, digits and inner hyphens, which the host parser's IDNA
/// mapping leaves as they are — except what it reads as an IPv4 address: a last label of
/// digits or `0x…` makes the whole host a number, printed in canonical dotted form, so only
/// an address already in that form is taken.
fn plain_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    // `xn--` labels are punycode, which the parser validates; `--` elsewhere is harmless but
    // rare, so it goes to the parser too rather than reasoning about it here.
    if !labels_ok || host.as_bytes().windows(2).any(|w| w == b"--") {
        return false;
    }
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.starts_with("0x") {
        return false;
    }
    if last.bytes().all(|c| c.is_ascii_digit()) {
        return canonical_ipv4(host);
    }
    true
}

/// Four decimal numbers 0–255 without leading zeros.
fn canonical_ipv4(host: &str) -> bool {
    let mut count = 0;
    for part in host.split('.') {
        count += 1;
        let canonical = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|c| c.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
            && part.parse::<u16>().is_ok_and(|n| n <= 255);
        if !canonical {
            return false;
        }
    }
    count == 4
}

/// 1–5 digits without a leading zero, at most 65535.
fn plain_port(digits: &str) -> Option<u16> {
    let b = digits.as_bytes();
    if b.is_empty() || b.len() > 5 || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The parser's answer, the reference the shortcut must match.
    fn parsed(value: &str) -> Option<String> {
        let url = Url::parse(value.trim()).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        authority(&url)
    }

    #[test]
    fn browser_origins_take_the_shortcut() {
        for (origin, expected) in [
            ("https://shop.test", "shop.test"),
            ("http://127.0.0.1", "127.0.0.1"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("https://www.shop-example.co.uk", "www.shop-example.co.uk"),
            ("https://shop.test:443", "shop.test"),
            ("http://shop.test:80", "shop.test"),
            ("http://shop.test:443", "shop.test:443"),
            ("https://a1.b2.c3d", "a1.b2.c3d"),
        ] {
            assert_eq!(plain_origin(origin), Some(expected), "{origin}");
            assert_eq!(parsed(origin).as_deref(), Some(expected), "{origin}");
        }
    }

    #[test]
    fn anything_unusual_goes_to_the_parser() {
        for origin in [
            "https://Shop.Test",
            "https://xn--bcher-kva.example",
            "http://127.1",
            "http://0x7f.0.0.1",
            "http://127.000.0.1",
            "http://256.0.0.1",
            "http://shop.test.",
            "http://shop..test",
            "http://-shop.test",
            "http://shop.test:080",
            "http://shop.test:",
            "http://shop.test:99999",
            "http://shop.test/",
            "http://user@shop.test",
            "http://[::1]:3000",
            "http://foo.123",
            "ftp://shop.test",
            "null",
            "",
        ] {
            assert_eq!(plain_origin(origin), None, "{origin}");
        }
        // ...and still get the parser's answer.
        assert_eq!(
            header_authority("https://Shop.Test:8080").as_deref(),
            Some("shop.test:8080")
        );
        assert_eq!(
            header_authority("http://[::1]:3000/x").as_deref(),
            Some("[::1]:3000")
        );
        assert_eq!(
            header_authority("http://127.1").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(header_authority("ftp://shop.test"), None);
        assert_eq!(header_authority("http://foo.123"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Built from the pieces the shortcut looks at (and their near misses), so most cases
        /// land near its edges.
        #[test]
        fn the_shortcut_agrees_with_the_parser(
            scheme in prop::sample::select(vec!["http://", "https://", "HTTP://", "ws://"]),
            labels in prop::collection::vec(
                prop::sample::select(vec![
                    "shop", "a", "0", "1", "01", "255", "256", "0x7f", "xn--bcher-kva",
                    "a-b", "a--b", "-a", "a-", "Shop", "", "ß", "9x", "x9", "1e",
                ]),
                1..5,
            ),
            port in prop::sample::select(vec![
                "", ":", ":80", ":443", ":8080", ":080", ":0", ":65535", ":65536", ":1a",
            ]),
            tail in prop::sample::select(vec!["", "/", "/x?y", " ", "#f"]),
        ) {
            let value = format!("{scheme}{}{port}{tail}", labels.join("."));
            prop_assert_eq!(header_authority(&value).map(Cow::into_owned), parsed(&value));
        }

        /// Hosts of numbers only, where the parser's IPv4 reading decides.
        #[test]
        fn numeric_hosts_agree_with_the_parser(
            labels in prop::collection::vec(
                prop::sample::select(vec![
                    "0", "1", "00", "01", "9", "10", "127", "255", "256", "300", "4294967295",
                    "0x7f", "0x", "08", "1e", "a",
                ]),
                1..6,
            ),
            port in prop::sample::select(vec!["", ":80", ":8080"]),
        ) {
            let value = format!("http://{}{port}", labels.join("."));
            prop_assert_eq!(header_authority(&value).map(Cow::into_owned), parsed(&value));
        }
    }
}
