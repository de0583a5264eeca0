//! Who is really asking: the client address behind trusted reverse proxies, whether the
//! client's connection was HTTPS, and the truncated address that is stored.

use std::net::IpAddr;

use ipnet::IpNet;

/// The `trusted_proxies` list: peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs or bare addresses; the error is (index, reason).
    pub fn parse(list: &[String]) -> Result<Self, (usize, String)> {
        let _ = list;
        todo!()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let _ = ip;
        todo!()
    }

    /// The client address: `peer`, or when `peer` is trusted, the right-most address of the
    /// `X-Forwarded-For` values that is not itself a trusted proxy.
    pub fn client_ip<'a>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let _ = (peer, xff.into_iter());
        todo!()
    }

    /// The client used HTTPS according to a trusted peer's `X-Forwarded-Proto`.
    pub fn forwarded_https(&self, peer: IpAddr, proto: Option<&str>) -> bool {
        let _ = (peer, proto);
        todo!()
    }
}

/// The address with its host part zeroed, as text (`203.0.113.0`, `2001:db8:1::`).
pub fn truncate(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    let _ = (ip, v4_prefix, v6_prefix);
    todo!()
}
