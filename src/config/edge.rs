//! Checks of the edge settings: a site's origins and their policies (`sites[].upstream` as one
//! address or a list, `balance`, `health_check`, `passive_ejection`, `retries`), its HTTPS
//! (`sites[].tls`, whose files are loaded and checked here so `--check` catches them), the
//! HTTPS listeners (`listen_tls`) and logging (`log`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use super::file::{LogFile, OneOrMany, SiteFile, SiteTlsFile};
use super::validate::{
    split_host_port, Balance, Checker, HealthCheck, HealthCheckKind, HostPattern, LogFormat,
    LogSettings, Origins, Site, SiteTls, Upstream, DEFAULT_EJECT_FAILURES, DEFAULT_EJECT_FOR,
    DEFAULT_RETRIES,
};

impl Checker<'_> {
    /// The site's origins, or `None` after reporting why not.
    pub(super) fn origins(&mut self, i: usize, s: &SiteFile) -> Option<Origins> {
        let before = self.error_count();
        let at = |field: &str| format!("sites[{i}].{field}");
        let raw: Vec<(String, String)> = match &s.upstream {
            None => vec![],
            Some(OneOrMany::One(u)) => vec![(at("upstream"), u.clone())],
            Some(OneOrMany::Many(list)) => list
                .iter()
                .enumerate()
                .map(|(j, u)| (format!("sites[{i}].upstream[{j}]"), u.clone()))
                .collect(),
        };
        if raw.is_empty() || raw.iter().all(|(_, u)| u.is_empty()) {
            self.err(
                at("upstream"),
                "is required: host:port of the origin, or a list of them",
            );
        }
        if !s.upstream_tls && s.upstream_verify.is_some() {
            self.err(
                at("upstream_verify"),
                "only applies with upstream_tls: true",
            );
        }
        let mut list = Vec::new();
        for (path, authority) in raw {
            if authority.is_empty() {
                self.err(path, "is required: host:port of the origin");
                continue;
            }
            if let Some(addr) = self.resolve(&path, &authority) {
                let sni = s.upstream_sni.clone().unwrap_or_else(|| {
                    split_host_port(&authority)
                        .map(|(h, _)| h.to_string())
                        .unwrap_or_default()
                });
                list.push(Upstream {
                    authority,
                    addr,
                    tls: s.upstream_tls,
                    sni,
                    verify: s.upstream_verify.unwrap_or(true),
                });
            }
        }

        let balance = match s.balance.as_deref() {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_connections") => Balance::LeastConnections,
            Some(other) => {
                self.err(
                    at("balance"),
                    format!("'{other}' is not one of round_robin, least_connections"),
                );
                Balance::RoundRobin
            }
        };
        let health_check = s.health_check.as_ref().map(|h| {
            let kind = match (h.kind.as_deref(), &h.path) {
                (None | Some("tcp"), None) => HealthCheckKind::Tcp,
                (Some("tcp"), Some(_)) => {
                    self.err(at("health_check.path"), "only applies with kind: http");
                    HealthCheckKind::Tcp
                }
                (None | Some("http"), Some(p)) => {
                    if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        self.err(
                            at("health_check.path"),
                            "must be an absolute path without spaces (e.g. /healthz)",
                        );
                    }
                    HealthCheckKind::Http { path: p.clone() }
                }
                (Some("http"), None) => HealthCheckKind::Http { path: "/".into() },
                (Some(other), _) => {
                    self.err(
                        at("health_check.kind"),
                        format!("'{other}' is not one of tcp, http"),
                    );
                    HealthCheckKind::Tcp
                }
            };
            let interval = self.seconds(
                &at("health_check.interval_seconds"),
                h.interval_seconds,
                5.0,
            );
            let timeout = self.seconds(&at("health_check.timeout_seconds"), h.timeout_seconds, 2.0);
            let healthy_threshold = self.count(
                &at("health_check.healthy_threshold"),
                h.healthy_threshold,
                2,
            );
            let unhealthy_threshold = self.count(
                &at("health_check.unhealthy_threshold"),
                h.unhealthy_threshold,
                3,
            );
            HealthCheck {
                kind,
                interval,
                timeout,
                healthy_threshold,
                unhealthy_threshold,
            }
        });
        let (eject_after_failures, eject_for) = match &s.passive_ejection {
            None => (DEFAULT_EJECT_FAILURES, DEFAULT_EJECT_FOR),
            Some(p) => {
                let failures = p.failures.unwrap_or(DEFAULT_EJECT_FAILURES);
                if failures > 1000 {
                    self.err(
                        at("passive_ejection.failures"),
                        "must be between 0 (never eject) and 1000",
                    );
                }
                let eject = self.seconds(
                    &at("passive_ejection.eject_seconds"),
                    p.eject_seconds,
                    DEFAULT_EJECT_FOR.as_secs_f64(),
                );
                (failures, eject)
            }
        };
        let retries = s.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > 10 {
            self.err(at("retries"), "must be between 0 and 10");
        }
        if self.error_count() > before || list.is_empty() {
            return None;
        }
        Some(Origins {
            list,
            balance,
            health_check,
            eject_after_failures,
            eject_for,
            retries,
        })
    }

    fn resolve(&mut self, path: &str, authority: &str) -> Option<SocketAddr> {
        let Some((host, port)) = split_host_port(authority) else {
            self.err(path, format!("'{authority}' is not host:port"));
            return None;
        };
        match (host, port).to_socket_addrs() {
            Ok(mut addrs) => {
                let a = addrs.next();
                if a.is_none() {
                    self.err(path, format!("'{authority}' resolves to no address"));
                }
                a
            }
            Err(e) => {
                self.err(path, format!("cannot resolve '{authority}': {e}"));
                None
            }
        }
    }

    fn count(&mut self, field: &str, value: Option<u32>, default: u32) -> u32 {
        let v = value.unwrap_or(default);
        if !(1..=100).contains(&v) {
            self.err(field, "must be between 1 and 100");
            return default;
        }
        v
    }

    /// The site's HTTPS settings; the files are loaded and checked now.
    pub(super) fn site_tls(
        &mut self,
        i: usize,
        t: &SiteTlsFile,
        hosts: &[HostPattern],
    ) -> Option<SiteTls> {
        let at = |field: &str| format!("sites[{i}].tls.{field}");
        let cert = t.cert.clone().unwrap_or_default();
        let key = t.key.clone().unwrap_or_default();
        if cert.is_empty() {
            self.err(at("cert"), "is required: the PEM certificate chain file");
        }
        if key.is_empty() {
            self.err(at("key"), "is required: the PEM private key file");
        }
        if cert.is_empty() || key.is_empty() {
            return None;
        }
        match crate::tls::certs::load(&cert, &key) {
            Err(e) => {
                let field = if e.is_about_key(&key) { "key" } else { "cert" };
                self.err(at(field), e.to_string());
                return None;
            }
            Ok(ck) => {
                for (j, h) in hosts.iter().enumerate() {
                    // A wildcard host is covered when any of its subdomains is.
                    let probe = match h {
                        HostPattern::Exact(n) => n.clone(),
                        HostPattern::Suffix(s) => format!("smproxy-check{s}"),
                        HostPattern::Any => continue,
                    };
                    if !crate::tls::certs::covers(&ck, &probe) {
                        self.err(
                            format!("sites[{i}].hosts[{j}]"),
                            format!("not covered by the certificate in sites[{i}].tls.cert"),
                        );
                    }
                }
            }
        }
        let hsts = match t.hsts_max_age_seconds {
            None | Some(0) => {
                if t.hsts_include_subdomains.is_some() {
                    self.err(
                        at("hsts_include_subdomains"),
                        "only applies with hsts_max_age_seconds",
                    );
                }
                None
            }
            Some(age) => Some(if t.hsts_include_subdomains.unwrap_or(false) {
                format!("max-age={age}; includeSubDomains")
            } else {
                format!("max-age={age}")
            }),
        };
        Some(SiteTls {
            cert,
            key,
            redirect_http: t.redirect_http.unwrap_or(false),
            hsts,
        })
    }

    /// The HTTPS listeners; they need at least one site with a certificate, and the reverse.
    pub(super) fn listen_tls(
        &mut self,
        raw: Option<&OneOrMany>,
        listen: &[String],
        admin: &str,
        sites: &[Arc<Site>],
    ) -> Vec<String> {
        let list = raw.map(OneOrMany::to_vec).unwrap_or_default();
        let path = |j: usize| match raw {
            Some(OneOrMany::Many(_)) => format!("listen_tls[{j}]"),
            _ => "listen_tls".to_string(),
        };
        for (j, addr) in list.iter().enumerate() {
            if addr.parse::<SocketAddr>().is_err() {
                self.err(path(j), format!("'{addr}' is not an IP:port address"));
            } else if listen.contains(addr) || addr == admin {
                self.err(
                    path(j),
                    format!("'{addr}' is already used by another listener"),
                );
            }
        }
        let with_tls = sites.iter().find(|s| s.tls.is_some());
        if !list.is_empty() && with_tls.is_none() {
            self.err(
                "listen_tls",
                "no site has a certificate (sites[].tls.cert and key)",
            );
        }
        if list.is_empty() {
            if let Some(s) = with_tls {
                self.err(
                    format!("sites[{}].tls", s.index),
                    "needs an HTTPS listener (listen_tls)",
                );
            }
        }
        list
    }

    pub(super) fn log(&mut self, l: &LogFile) -> LogSettings {
        let format = match l.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.err("log.format", format!("'{other}' is not one of text, json"));
                LogFormat::Text
            }
        };
        LogSettings {
            format,
            access: l.access.unwrap_or(false),
        }
    }
}

/// The port HTTPS answers on, for redirects (`None`: the default 443).
pub fn https_port(listen_tls: &[String]) -> Option<u16> {
    let port = listen_tls.first()?.parse::<SocketAddr>().ok()?.port();
    (port != 443).then_some(port)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, Balance, HealthCheckKind};

    fn errors(text: &str) -> Vec<String> {
        parse_str(text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const SITE: &str = "client_id: abc\nsites:\n  - name: s\n    hosts: ['a.example']\n";

    #[test]
    fn a_list_of_origins_with_its_policies() {
        let s = parse_str(&format!(
            "{SITE}    upstream: ['127.0.0.1:1', '127.0.0.1:2']\n    balance: least_connections\n    health_check:\n      path: /hz\n    retries: 2\n"
        ))
        .unwrap();
        let o = &s.sites[0].origins;
        assert_eq!(o.list.len(), 2);
        assert_eq!(s.sites[0].upstream.authority, "127.0.0.1:1");
        assert_eq!(o.balance, Balance::LeastConnections);
        let hc = o.health_check.as_ref().unwrap();
        assert_eq!(hc.kind, HealthCheckKind::Http { path: "/hz".into() });
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
        assert_eq!(o.retries, 2);
    }

    #[test]
    fn origin_problems_are_named_by_position() {
        let e = errors(&format!(
            "{SITE}    upstream: ['127.0.0.1:1', 'nope']\n    balance: random\n    health_check:\n      kind: udp\n      unhealthy_threshold: 0\n    retries: 11\n"
        ));
        assert_eq!(
            e,
            [
                "sites[0].upstream[1]: 'nope' is not host:port",
                "sites[0].balance: 'random' is not one of round_robin, least_connections",
                "sites[0].health_check.kind: 'udp' is not one of tcp, http",
                "sites[0].health_check.unhealthy_threshold: must be between 1 and 100",
                "sites[0].retries: must be between 0 and 10",
            ]
        );
    }

    #[test]
    fn https_needs_both_a_listener_and_a_certificate() {
        let e = errors(&format!(
            "{SITE}    upstream: '127.0.0.1:1'\nlisten_tls: '127.0.0.1:8443'\n"
        ));
        assert_eq!(
            e,
            ["listen_tls: no site has a certificate (sites[].tls.cert and key)"]
        );
        let e = errors(&format!(
            "{SITE}    upstream: '127.0.0.1:1'\n    tls:\n      redirect_http: true\n"
        ));
        assert_eq!(
            e,
            [
                "sites[0].tls.cert: is required: the PEM certificate chain file",
                "sites[0].tls.key: is required: the PEM private key file",
            ]
        );
        let e = errors(&format!(
            "{SITE}    upstream: '127.0.0.1:1'\nlisten_tls: '127.0.0.1:8080'\nlog:\n  format: xml\n"
        ));
        assert!(
            e.contains(
                &"listen_tls: '127.0.0.1:8080' is already used by another listener".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"log.format: 'xml' is not one of text, json".to_string()),
            "{e:?}"
        );
    }
}
