//! The certificate for a TLS handshake, chosen by the client's SNI from the sites' host
//! patterns (exact name, then the longest `*.suffix`, then the first site's certificate for
//! clients that send no name or one no site has). The table is swapped whole on reload, so a
//! handshake always sees one consistent set and open connections are untouched.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::{self, CertError};
use crate::config::{HostPattern, Site};
use crate::route::normalize_host;

/// The certificate files of one site, with the hosts they serve.
#[derive(Clone)]
struct SiteCert {
    hosts: Vec<HostPattern>,
    cert: String,
    key: String,
}

#[derive(Default)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (".shop.example", cert), longest suffix first.
    suffixes: Vec<(String, Arc<CertifiedKey>)>,
    /// For `*` sites, clients without SNI, and unknown names.
    fallback: Option<Arc<CertifiedKey>>,
}

/// A reloadable SNI → certificate table, used as the rustls certificate resolver.
pub struct SniResolver {
    sites: Vec<SiteCert>,
    table: ArcSwap<Table>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("sites", &self.sites.len())
            .finish()
    }
}

impl SniResolver {
    /// Loads the certificate of every site that has one.
    pub fn load(sites: &[Arc<Site>]) -> Result<Self, CertError> {
        let sites: Vec<SiteCert> = sites
            .iter()
            .filter_map(|s| {
                s.tls.as_ref().map(|t| SiteCert {
                    hosts: s.hosts.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                })
            })
            .collect();
        let table = build(&sites)?;
        Ok(SniResolver {
            sites,
            table: ArcSwap::from_pointee(table),
        })
    }

    /// Reads every certificate file again; on any error the current table stays.
    pub fn reload(&self) -> Result<usize, CertError> {
        let table = build(&self.sites)?;
        self.table.store(Arc::new(table));
        Ok(self.sites.len())
    }

    /// The certificate a client asking for `name` gets.
    pub fn for_name(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        if let Some(name) = name.map(normalize_host) {
            if let Some(ck) = table.exact.get(&name) {
                return Some(ck.clone());
            }
            for (suffix, ck) in &table.suffixes {
                if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                    return Some(ck.clone());
                }
            }
        }
        table.fallback.clone()
    }
}

/// Loads each distinct file pair once (one certificate may serve several sites).
fn build(sites: &[SiteCert]) -> Result<Table, CertError> {
    let mut loaded: HashMap<(String, String), Arc<CertifiedKey>> = HashMap::new();
    let mut table = Table::default();
    for s in sites {
        let pair = (s.cert.clone(), s.key.clone());
        let ck = match loaded.get(&pair) {
            Some(ck) => ck.clone(),
            None => {
                let ck = certs::load(&s.cert, &s.key)?;
                loaded.insert(pair, ck.clone());
                ck
            }
        };
        for h in &s.hosts {
            match h {
                HostPattern::Exact(n) => {
                    table.exact.entry(n.clone()).or_insert_with(|| ck.clone());
                }
                HostPattern::Suffix(sfx) => table.suffixes.push((sfx.clone(), ck.clone())),
                HostPattern::Any => table.fallback = Some(ck.clone()),
            }
        }
        if table.fallback.is_none() {
            table.fallback = Some(ck);
        }
    }
    table
        .suffixes
        .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
    Ok(table)
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(client_hello.server_name())
    }
}
