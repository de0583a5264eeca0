//! Checks the sections about collecting visits — `cookies`, `consent`, `identify`, `collect`
//! limits, `trusted_proxies`, `privacy`, `companies` — and builds their settings.

use std::path::Path;
use std::sync::Arc;

use super::file::{
    CollectFile, CompaniesFile, ConsentFile, CookiesFile, IdentifyFile, PrivacyFile,
};
use super::secret::Secret;
use super::validate::Checker;
use crate::collect::client_ip::TrustedProxies;
use crate::collect::company::{self, CompanyMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentMode {
    /// Visitors are counted and recognised unless they opt out (GPC, a refusal).
    None,
    /// Nothing is set or stored until the visitor consents.
    Required,
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// HMAC keys, the first signs and all verify. Empty: a random key made at start-up (signed
    /// cookies then do not survive a restart, and a fleet would not agree: warned about).
    pub secrets: Vec<Secret>,
    pub js_readable: bool,
    pub max_age_days: u32,
}

#[derive(Debug, Clone)]
pub struct ConsentSettings {
    pub mode: ConsentMode,
    pub cookie: Option<String>,
    pub cookie_value: Option<String>,
    pub respect_dnt: bool,
}

#[derive(Debug, Clone)]
pub struct CollectSettings {
    pub max_body_bytes: usize,
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    pub queue_capacity: usize,
    /// Redirect to the URL without `smclient`/`smlink` once read (`_smx` is always removed).
    pub strip_params: bool,
    pub trusted_proxies: TrustedProxies,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub companies: Arc<CompanyMap>,
}

/// The sections of the file that [`Checker::collection`] reads.
pub(super) struct CollectionFile {
    pub cookies: CookiesFile,
    pub consent: ConsentFile,
    pub collect: CollectFile,
    pub identify: IdentifyFile,
    pub trusted_proxies: Vec<String>,
    pub privacy: PrivacyFile,
    pub companies: CompaniesFile,
}

/// What [`Checker::collection`] builds.
pub struct Collection {
    pub cookies: CookieSettings,
    pub consent: ConsentSettings,
    pub collect: CollectSettings,
}

/// The longest cookie name/value a consent setting may name (RFC 6265 token characters).
const MAX_COOKIE_NAME: usize = 128;

impl Checker<'_> {
    pub(super) fn collection(&mut self, f: CollectionFile) -> Collection {
        let cookies = self.cookies(f.cookies);
        let consent = self.consent(f.consent);
        let collect = self.collect_limits(
            f.collect,
            f.identify,
            &f.trusted_proxies,
            f.privacy,
            f.companies,
        );
        Collection {
            cookies,
            consent,
            collect,
        }
    }

    fn cookies(&mut self, c: CookiesFile) -> CookieSettings {
        let single = self.secret("cookies", "secret", c.secret, c.secret_env);
        let mut secrets: Vec<Secret> = Vec::new();
        match (c.secrets, c.secrets_env) {
            (Some(_), Some(_)) => self.err(
                "cookies.secrets_env",
                "set either secrets or secrets_env, not both",
            ),
            (Some(list), None) => secrets.extend(list.into_iter().map(Secret::new)),
            (None, Some(names)) => {
                for (i, name) in names.iter().enumerate() {
                    match (self.env)(name) {
                        Some(v) if !v.is_empty() => secrets.push(Secret::new(v)),
                        _ => self.err(
                            format!("cookies.secrets_env[{i}]"),
                            format!("environment variable {name} is not set"),
                        ),
                    }
                }
            }
            (None, None) => {}
        }
        if single.is_some() && !secrets.is_empty() {
            self.err(
                "cookies.secrets",
                "set either secret/secret_env or secrets/secrets_env, not both",
            );
        }
        let field = if single.is_some() {
            "cookies.secret"
        } else {
            "cookies.secrets"
        };
        secrets.extend(single);
        for (i, s) in secrets.iter().enumerate() {
            if s.expose().len() < crate::identity::keys::MIN_KEY_LEN {
                let at = if field == "cookies.secret" {
                    field.to_string()
                } else {
                    format!("{field}[{i}]")
                };
                self.err(at, "must be at least 32 characters");
            }
        }
        let max_age_days = c
            .max_age_days
            .unwrap_or(crate::identity::DEFAULT_MAX_AGE_DAYS);
        if !(1..=400).contains(&max_age_days) {
            // Browsers cap cookie lifetimes at 400 days; more would only be truncated.
            self.err("cookies.max_age_days", "must be between 1 and 400");
        }
        CookieSettings {
            secrets,
            js_readable: c.js_readable.unwrap_or(false),
            max_age_days,
        }
    }

    fn consent(&mut self, c: ConsentFile) -> ConsentSettings {
        let mode = match c.mode.as_deref() {
            None | Some("none") => ConsentMode::None,
            Some("required") => ConsentMode::Required,
            Some(other) => {
                self.err(
                    "consent.mode",
                    format!("'{other}' is not one of none, required"),
                );
                ConsentMode::None
            }
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_COOKIE_NAME
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        };
        if let Some(name) = &c.cookie {
            if !token(name) {
                self.err(
                    "consent.cookie",
                    "must be a cookie name (letters, digits, - _ . etc.)",
                );
            }
        }
        if let Some(v) = &c.cookie_value {
            if c.cookie.is_none() {
                self.err("consent.cookie_value", "only applies with consent.cookie");
            } else if v.is_empty()
                || v.len() > MAX_COOKIE_NAME
                || v.bytes()
                    .any(|b| !b.is_ascii_graphic() || b == b';' || b == b',')
            {
                self.err(
                    "consent.cookie_value",
                    "must be a cookie value without spaces, ; or ,",
                );
            }
        }
        ConsentSettings {
            mode,
            cookie: c.cookie,
            cookie_value: c.cookie_value,
            respect_dnt: c.respect_dnt.unwrap_or(false),
        }
    }

    fn collect_limits(
        &mut self,
        c: CollectFile,
        identify: IdentifyFile,
        trusted_proxies: &[String],
        privacy: PrivacyFile,
        companies: CompaniesFile,
    ) -> CollectSettings {
        let max_body_kib = c.max_body_kib.unwrap_or(16);
        if !(1..=16).contains(&max_body_kib) {
            self.err("collect.max_body_kib", "must be between 1 and 16");
        }
        let rate_per_minute = c.rate_per_minute.unwrap_or(120);
        let rate_burst = c.rate_burst.unwrap_or(60);
        if rate_per_minute > 0 && rate_burst == 0 {
            self.err(
                "collect.rate_burst",
                "must be at least 1 when rate_per_minute is set",
            );
        }
        let queue_capacity = c.queue_capacity.unwrap_or(10_000);
        if !(100..=10_000_000).contains(&queue_capacity) {
            self.err("collect.queue_capacity", "must be between 100 and 10000000");
        }
        let trusted_proxies = match TrustedProxies::parse(trusted_proxies) {
            Ok(t) => t,
            Err((i, reason)) => {
                self.err(format!("trusted_proxies[{i}]"), reason);
                TrustedProxies::default()
            }
        };
        let ipv4_prefix = privacy.ip_truncate.ipv4.unwrap_or(24);
        if ipv4_prefix > 32 {
            self.err(
                "privacy.ip_truncate.ipv4",
                "must be a prefix length from 0 to 32",
            );
        }
        let ipv6_prefix = privacy.ip_truncate.ipv6.unwrap_or(48);
        if ipv6_prefix > 128 {
            self.err(
                "privacy.ip_truncate.ipv6",
                "must be a prefix length from 0 to 128",
            );
        }
        let companies = self.companies(companies);
        CollectSettings {
            max_body_bytes: max_body_kib * 1024,
            rate_per_minute,
            rate_burst,
            queue_capacity,
            strip_params: identify.strip_params.unwrap_or(true),
            trusted_proxies,
            ipv4_prefix: ipv4_prefix.min(32),
            ipv6_prefix: ipv6_prefix.min(128),
            companies: Arc::new(companies),
        }
    }

    fn companies(&mut self, c: CompaniesFile) -> CompanyMap {
        let mut entries = Vec::new();
        for (i, n) in c.networks.into_iter().enumerate() {
            let name = match company::validate_company(&n.name) {
                Ok(name) => name.to_string(),
                Err(reason) => {
                    self.err(format!("companies.networks[{i}].name"), reason);
                    continue;
                }
            };
            match company::parse_net(&n.cidr) {
                Ok(net) => entries.push((net, name)),
                Err(reason) => self.err(format!("companies.networks[{i}].cidr"), reason),
            }
        }
        if let Some(path) = c.csv {
            match company::load_csv(Path::new(&path)) {
                Ok(more) => entries.extend(more),
                Err(e) => self.err("companies.csv", format!("{path}: {e}")),
            }
        }
        CompanyMap::new(entries)
    }
}
