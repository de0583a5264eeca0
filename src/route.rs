//! Host → site: which configured site answers a request, from its `Host` (or `:authority`).
//!
//! Precedence: an exact name, then the longest matching `*.suffix`, then `*`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{HostPattern, Site};

pub struct Router {
    exact: HashMap<String, Arc<Site>>,
    /// (".shop.example", site), longest suffix first.
    suffixes: Vec<(String, Arc<Site>)>,
    any: Option<Arc<Site>>,
}

impl Router {
    pub fn new(sites: &[Arc<Site>]) -> Self {
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut any = None;
        for site in sites {
            for h in &site.hosts {
                match h {
                    HostPattern::Exact(n) => {
                        exact.insert(n.clone(), site.clone());
                    }
                    HostPattern::Suffix(s) => suffixes.push((s.clone(), site.clone())),
                    HostPattern::Any => any = Some(site.clone()),
                }
            }
        }
        suffixes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Router {
            exact,
            suffixes,
            any,
        }
    }

    /// The site for a raw `Host` value (any case, optional port, optional trailing dot).
    pub fn route(&self, host: &str) -> Option<&Arc<Site>> {
        let name = normalize_host(host);
        if let Some(s) = self.exact.get(name.as_str()) {
            return Some(s);
        }
        for (suffix, site) in &self.suffixes {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                return Some(site);
            }
        }
        self.any.as_ref()
    }
}

/// Lower-cased host name without port or trailing dot; IPv6 literals keep their brackets.
/// (One normalisation for routing and for cookie domains, so both agree on what a host is.)
pub fn normalize_host(host: &str) -> String {
    crate::identity::domain::normalize_host(host).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origins, Upstream};

    fn site(name: &str, hosts: Vec<HostPattern>) -> Arc<Site> {
        let upstream = Upstream {
            authority: "127.0.0.1:1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            sni: String::new(),
            verify: true,
        };
        Arc::new(Site {
            index: 0,
            name: name.into(),
            hosts,
            upstream: upstream.clone(),
            origins: Origins::single(upstream),
            tls: None,
        })
    }

    #[test]
    fn exact_then_longest_suffix_then_any() {
        let r = Router::new(&[
            site(
                "shop",
                vec![
                    HostPattern::Exact("shop.example".into()),
                    HostPattern::Suffix(".shop.example".into()),
                ],
            ),
            site("eu", vec![HostPattern::Suffix(".eu.shop.example".into())]),
            site("rest", vec![HostPattern::Any]),
        ]);
        assert_eq!(r.route("shop.example").unwrap().name, "shop");
        assert_eq!(r.route("SHOP.example:8080").unwrap().name, "shop");
        assert_eq!(r.route("shop.example.").unwrap().name, "shop");
        assert_eq!(r.route("www.shop.example").unwrap().name, "shop");
        assert_eq!(r.route("a.eu.shop.example").unwrap().name, "eu");
        assert_eq!(r.route("eu.shop.example").unwrap().name, "shop");
        assert_eq!(r.route("other.example").unwrap().name, "rest");
        assert_eq!(r.route("").unwrap().name, "rest");
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(&[site(
            "shop",
            vec![HostPattern::Suffix(".shop.example".into())],
        )]);
        assert!(r.route("shop.example").is_none());
        assert!(r.route("evilshop.example").is_none());
        assert!(r.route("x.shop.example").is_some());
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }
}
