//! Who is really asking: the client address behind trusted reverse proxies, whether the
//! client's connection was HTTPS, and the truncated address that is stored.
//!
//! `X-Forwarded-For` is only believed when the connection comes from a trusted proxy, and then
//! only as far as the chain of trusted proxies reaches: everything left of the first untrusted
//! hop was written by the client (or whoever it claims to be) and may be forged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::company::parse_net;

/// The `trusted_proxies` list: peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs or bare addresses; the error is (index, reason).
    ///
    /// A bare address is a /32 or /128. A CIDR with host bits set (`10.0.0.1/8`) is accepted
    /// as its network (`10.0.0.0/8`). The reason does not repeat the entry.
    pub fn parse(list: &[String]) -> Result<Self, (usize, String)> {
        let nets = list
            .iter()
            .enumerate()
            .map(|(index, entry)| parse_net(entry).map_err(|reason| (index, reason)))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a
    /// dual-stack socket reports an IPv4 peer) matches the IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address: `peer`, or when `peer` is trusted, the right-most address of the
    /// `X-Forwarded-For` values that is not itself a trusted proxy.
    ///
    /// The values of several headers are read as one list, in order. Ports are dropped
    /// (`203.0.113.7:4711`, `[2001:db8::1]:443`) and empty elements skipped. An element that is
    /// not an address (`unknown`, garbage) ends the walk: the answer is then the last trusted
    /// hop, the one that appended it, since anything further left cannot be vouched for. When
    /// every element is a trusted proxy the left-most one is the client. IPv4-mapped IPv6
    /// addresses are returned as IPv4.
    pub fn client_ip<'a>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let values: Vec<&str> = xff.into_iter().collect();
        let hops = values
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty());
        let mut last_trusted = peer;
        for hop in hops {
            match parse_hop(hop) {
                Some(ip) if self.contains(ip) => last_trusted = ip,
                Some(ip) => return ip,
                None => break,
            }
        }
        last_trusted
    }

    /// The client used HTTPS according to a trusted peer's `X-Forwarded-Proto`.
    ///
    /// Of a comma-separated value the last element counts: it is the one the nearest proxy (the
    /// trusted peer) appended, while elements before it may come from further away. With a
    /// single proxy there is only one element.
    pub fn forwarded_https(&self, peer: IpAddr, proto: Option<&str>) -> bool {
        let Some(proto) = proto else {
            return false;
        };
        let nearest = proto.rsplit(',').next().unwrap_or_default().trim();
        self.contains(peer) && nearest.eq_ignore_ascii_case("https")
    }
}

/// One `X-Forwarded-For` element as an address, without its port if it has one.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The address with its host part zeroed, as text (`203.0.113.0`, `2001:db8:1::`).
///
/// An IPv4-mapped IPv6 address is truncated as IPv4 with `v4_prefix`. Prefixes longer than the
/// address (over 32 or 128) keep the whole address.
pub fn truncate(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => truncate_v4(a, v4_prefix).to_string(),
        IpAddr::V6(a) => truncate_v6(a, v6_prefix).to_string(),
    }
}

fn truncate_v4(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Net::new(a, prefix.min(32)).map_or(a, |n| n.network())
}

fn truncate_v6(a: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    Ipv6Net::new(a, prefix.min(128)).map_or(a, |n| n.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&list).unwrap()
    }

    #[test]
    fn parse_entries_and_errors() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "172.16.0.1/12"]);
        assert!(p.contains(ip("10.255.0.1")));
        assert!(p.contains(ip("192.0.2.1")));
        assert!(!p.contains(ip("192.0.2.2")));
        assert!(p.contains(ip("2001:db8:abcd::1")));
        // Host bits are dropped: 172.16.0.1/12 is 172.16.0.0/12.
        assert!(p.contains(ip("172.31.255.255")));

        let list = vec!["10.0.0.0/8".to_string(), "secret-garbage".to_string()];
        let (index, reason) = TrustedProxies::parse(&list).unwrap_err();
        assert_eq!(index, 1);
        assert!(!reason.contains("secret"), "{reason}");
        let list = vec!["10.0.0.0/40".to_string()];
        assert_eq!(TrustedProxies::parse(&list).unwrap_err().0, 0);
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn mapped_peer_matches_v4_net() {
        let p = proxies(&["10.0.0.0/8"]);
        assert!(p.contains(ip("::ffff:10.0.0.1")));
        assert!(!p.contains(ip("::ffff:11.0.0.1")));
        assert!(!p.contains(ip("::10.0.0.1")));
    }

    #[test]
    fn untrusted_peer_xff_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("198.51.100.9");
        assert_eq!(p.client_ip(peer, ["1.2.3.4"]), peer);
        assert_eq!(TrustedProxies::default().client_ip(peer, ["1.2.3.4"]), peer);
        assert_eq!(
            p.client_ip(ip("::ffff:198.51.100.9"), ["1.2.3.4"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn trusted_peer_without_xff_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), []), ip("10.0.0.1"));
        assert_eq!(p.client_ip(ip("10.0.0.1"), [""]), ip("10.0.0.1"));
    }

    #[test]
    fn single_proxy_takes_right_most() {
        let p = proxies(&["10.0.0.0/8"]);
        // The client claimed 1.2.3.4; the proxy appended what it saw.
        let got = p.client_ip(ip("10.0.0.1"), ["1.2.3.4, 203.0.113.7"]);
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn chain_of_proxies() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.0/24"]);
        let xff = ["6.6.6.6, 203.0.113.7, 192.0.2.10", "10.1.1.1"];
        assert_eq!(p.client_ip(ip("10.0.0.1"), xff), ip("203.0.113.7"));
        // Same chain in one header.
        let xff = ["6.6.6.6,203.0.113.7,192.0.2.10,10.1.1.1"];
        assert_eq!(p.client_ip(ip("10.0.0.1"), xff), ip("203.0.113.7"));
    }

    #[test]
    fn all_trusted_gives_left_most() {
        let p = proxies(&["10.0.0.0/8"]);
        let got = p.client_ip(ip("10.0.0.1"), ["10.0.0.3, 10.0.0.2"]);
        assert_eq!(got, ip("10.0.0.3"));
    }

    #[test]
    fn garbage_stops_at_last_trusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(p.client_ip(peer, ["1.2.3.4, unknown"]), peer);
        assert_eq!(p.client_ip(peer, ["1.2.3.4, <script>"]), peer);
        let got = p.client_ip(peer, ["1.2.3.4, unknown, 10.0.0.2"]);
        assert_eq!(got, ip("10.0.0.2"));
        assert_eq!(p.client_ip(peer, ["1.2.3.4:x"]), peer);
        assert_eq!(p.client_ip(peer, ["[1.2.3.4]"]), peer);
    }

    #[test]
    fn empty_elements_skipped() {
        let p = proxies(&["10.0.0.0/8"]);
        let got = p.client_ip(ip("10.0.0.1"), ["203.0.113.7, ,", ""]);
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn ports_are_stripped() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(p.client_ip(peer, ["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(p.client_ip(peer, ["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(p.client_ip(peer, ["[2001:db8::1]"]), ip("2001:db8::1"));
        let got = p.client_ip(peer, ["203.0.113.7, 10.0.0.9:80"]);
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn ipv6_chain() {
        let p = proxies(&["2001:db8:ffff::/48", "fd00::1"]);
        let got = p.client_ip(ip("fd00::1"), ["2001:db8::7, 2001:db8:ffff::2"]);
        assert_eq!(got, ip("2001:db8::7"));
    }

    #[test]
    fn mapped_addresses_come_back_as_v4() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("::ffff:10.0.0.1");
        assert_eq!(p.client_ip(peer, ["::ffff:203.0.113.7"]), ip("203.0.113.7"));
        // A trusted hop written as mapped v6 is still trusted.
        let got = p.client_ip(peer, ["203.0.113.7, ::ffff:10.0.0.2"]);
        assert_eq!(got, ip("203.0.113.7"));
        assert_eq!(p.client_ip(peer, []), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_https_only_from_trusted_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        let trusted = ip("10.0.0.1");
        assert!(p.forwarded_https(trusted, Some("https")));
        assert!(p.forwarded_https(trusted, Some(" HTTPS ")));
        assert!(p.forwarded_https(ip("::ffff:10.0.0.1"), Some("https")));
        assert!(!p.forwarded_https(trusted, Some("http")));
        assert!(!p.forwarded_https(trusted, None));
        assert!(!p.forwarded_https(trusted, Some("")));
        assert!(!p.forwarded_https(ip("198.51.100.1"), Some("https")));
        // The nearest proxy's value is the last one.
        assert!(p.forwarded_https(trusted, Some("http, https")));
        assert!(!p.forwarded_https(trusted, Some("https, http")));
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate(ip("203.0.113.77"), 24, 48), "203.0.113.0");
        assert_eq!(truncate(ip("203.0.113.77"), 16, 48), "203.0.0.0");
        assert_eq!(truncate(ip("203.0.113.77"), 32, 128), "203.0.113.77");
        assert_eq!(truncate(ip("203.0.113.77"), 0, 0), "0.0.0.0");
        assert_eq!(truncate(ip("203.0.113.77"), 40, 48), "203.0.113.77");
        assert_eq!(truncate(ip("2001:db8:1:2:3::4"), 24, 48), "2001:db8:1::");
        assert_eq!(truncate(ip("2001:db8:1:2:3::4"), 24, 32), "2001:db8::");
        assert_eq!(truncate(ip("2001:db8:1:2:3::4"), 24, 0), "::");
        assert_eq!(
            truncate(ip("2001:db8:1:2:3::4"), 24, 128),
            "2001:db8:1:2:3::4"
        );
        assert_eq!(truncate(ip("::ffff:203.0.113.77"), 24, 48), "203.0.113.0");
    }
}
