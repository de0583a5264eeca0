//! Host names: normalisation and the registrable domain (`Domain=` of shared cookies).
//!
//! The registrable domain ("eTLD+1") comes from the Public Suffix List via the `psl` crate:
//! `shop.example.co.uk` → `example.co.uk`, `a.b.github.io` → `b.github.io`. IP addresses,
//! `localhost`, single-label hosts, public suffixes themselves and anything that is not a
//! plain DNS name get `None`, which means "set a host-only cookie".

use std::net::IpAddr;

/// Lower-cases `host` and strips a `:port` and one trailing dot. An IPv6 literal keeps its
/// brackets (`[::1]:8080` → `[::1]`). `None` when nothing is left.
///
/// This does not validate the characters; [`registrable_domain`] does.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        match host.rsplit_once(':') {
            // a single colon followed by a port (a bare IPv6 address has several colons)
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        None
    } else {
        Some(host.to_ascii_lowercase())
    }
}

/// True when `host` (already normalised or not) is an IPv4 or IPv6 address.
pub fn is_ip_address(host: &str) -> bool {
    let Some(h) = normalize_host(host) else {
        return false;
    };
    let bare = h
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(&h);
    bare.parse::<IpAddr>().is_ok()
}

/// A plain DNS name: labels of `[a-z0-9_-]`, none empty, at most 253 characters in all.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// The registrable domain of `host` (any case, with or without port or trailing dot), or
/// `None` for IP addresses, `localhost`, single-label hosts, public suffixes and names that are
/// not plain ASCII DNS names.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = normalize_host(host)?;
    if is_ip_address(&host) || !host.contains('.') || !is_dns_name(&host) {
        return None;
    }
    psl::domain_str(&host).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(
            normalize_host("Shop.Example.COM").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            normalize_host("shop.example:8443").as_deref(),
            Some("shop.example")
        );
        assert_eq!(
            normalize_host("shop.example.").as_deref(),
            Some("shop.example")
        );
        assert_eq!(
            normalize_host("shop.example.:80").as_deref(),
            Some("shop.example")
        );
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("::1").as_deref(), Some("::1"));
        assert_eq!(normalize_host("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host(" a.b ").as_deref(), Some("a.b"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("."), None);
        assert_eq!(normalize_host(":80"), None);
        assert_eq!(normalize_host("[::1"), None);
    }

    #[test]
    fn registrable_domains() {
        let cases = [
            ("shop.example.co.uk", Some("example.co.uk")),
            ("example.co.uk", Some("example.co.uk")),
            ("a.b.github.io", Some("b.github.io")),
            ("www.example.com", Some("example.com")),
            ("WWW.Example.COM:8443", Some("example.com")),
            ("www.example.com.", Some("example.com")),
            ("example.com", Some("example.com")),
            ("deep.sub.shop.example", Some("shop.example")),
        ];
        for (host, want) in cases {
            assert_eq!(registrable_domain(host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn no_registrable_domain() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "::1",
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "intranet",
            "co.uk",
            "github.io",
            "com",
            "",
            "a..b.com",
            ".example.com",
            "exa mple.com",
            "ex;ample.com",
            "example.com\r\nX: y",
            "пример.рф",
            "a,b.com",
        ] {
            assert_eq!(registrable_domain(host), None, "{host:?}");
        }
    }

    #[test]
    fn ip_detection() {
        assert!(is_ip_address("10.0.0.1"));
        assert!(is_ip_address("[2001:db8::1]:80"));
        assert!(is_ip_address("::1"));
        assert!(!is_ip_address("example.com"));
        assert!(!is_ip_address(""));
    }

    #[test]
    fn hostile_hosts_never_panic() {
        let huge = "a.".repeat(10_000);
        for host in [
            huge.as_str(),
            "[",
            "]",
            "[]",
            "[]:",
            ":::::",
            "é:80",
            "\u{0}",
        ] {
            let _ = normalize_host(host);
            let _ = registrable_domain(host);
            let _ = is_ip_address(host);
        }
        assert_eq!(registrable_domain(&huge), None);
    }
}
