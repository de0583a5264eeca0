//! Checks the user's file and builds [`Settings`]. Every problem is reported at once as
//! `field.path: reason`; the document itself is never echoed (it holds secrets).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::collection::{CollectSettings, CollectionFile, ConsentSettings, CookieSettings};
use super::file::{FileConfig, SiteFile};
use super::secret::Secret;

/// One problem in the configuration, located by its field path (`sites[0].upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// All the problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    HeadEnd,
    BodyEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    Remove,
    Keep,
}

/// A host name pattern of `sites[].hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `shop.example`
    Exact(String),
    /// `*.shop.example`: any subdomain (not `shop.example` itself); holds `.shop.example`.
    Suffix(String),
    /// `*`
    Any,
}

/// A path pattern of `inject.exclude_paths`: literal text with `*` matching any run of
/// characters (including `/`). `/admin/*` excludes everything under `/admin/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    parts: Vec<String>,
    raw: String,
}

impl PathPattern {
    pub fn new(raw: &str) -> Self {
        PathPattern {
            parts: raw.split('*').map(str::to_owned).collect(),
            raw: raw.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Matches the whole path (without the query string).
    pub fn matches(&self, path: &str) -> bool {
        let parts = &self.parts;
        if parts.len() == 1 {
            return path == parts[0];
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if !path.starts_with(first.as_str()) || path.len() < first.len() + last.len() {
            return false;
        }
        if !path.ends_with(last.as_str()) {
            return false;
        }
        let mut rest = &path[first.len()..path.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Where a site's requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// As written in the file, for logs and errors.
    pub authority: String,
    /// Resolved at start-up (Pingora's peers take an address, and a failing lookup must stop
    /// the start, not a request).
    pub addr: SocketAddr,
    pub tls: bool,
    pub sni: String,
    pub verify: bool,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub index: usize,
    pub name: String,
    pub hosts: Vec<HostPattern>,
    /// The first origin (the only one for most sites).
    pub upstream: Upstream,
    /// Every origin (`upstream` first) and how they share the load.
    pub origins: Origins,
    /// HTTPS termination for this site's hosts.
    pub tls: Option<SiteTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    Tcp,
    /// `GET path`; 2xx or 3xx is healthy.
    Http {
        path: String,
    },
}

/// Active health checks of a site's origins.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A site's origins and the policies that spread requests over them.
#[derive(Debug, Clone)]
pub struct Origins {
    pub list: Vec<Upstream>,
    pub balance: Balance,
    pub health_check: Option<HealthCheck>,
    /// Consecutive failed requests that eject an origin (0: never).
    pub eject_after_failures: u32,
    pub eject_for: Duration,
    /// Extra attempts of an idempotent request whose connection failed.
    pub retries: u32,
}

impl Origins {
    /// One origin, the defaults for everything else.
    pub fn single(upstream: Upstream) -> Self {
        Origins {
            list: vec![upstream],
            balance: Balance::RoundRobin,
            health_check: None,
            eject_after_failures: DEFAULT_EJECT_FAILURES,
            eject_for: DEFAULT_EJECT_FOR,
            retries: DEFAULT_RETRIES,
        }
    }
}

pub const DEFAULT_EJECT_FAILURES: u32 = 3;
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRIES: u32 = 1;

/// A site's certificate and HTTPS policies.
#[derive(Debug, Clone)]
pub struct SiteTls {
    pub cert: String,
    pub key: String,
    pub redirect_http: bool,
    /// `Strict-Transport-Security` value, when enabled.
    pub hsts: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub format: LogFormat,
    pub access: bool,
}

#[derive(Debug, Clone)]
pub struct InjectSettings {
    pub enabled: bool,
    pub position: Position,
    pub duplicates: Duplicates,
    pub exclude_paths: Vec<PathPattern>,
    pub max_buffer_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: String,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
    /// Client side: the whole request head must arrive within this.
    pub request_header: Duration,
    /// Client side: an idle keep-alive connection is closed after this.
    pub keepalive: Duration,
}

/// When a beacon is acknowledged (`store.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `204` as soon as the event is queued: the fastest answer; a crash (`kill -9`, power
    /// loss) loses what was queued but not yet committed.
    #[default]
    Relaxed,
    /// `204` only after the event's batch is committed (and synced); `503` when the store
    /// fails, so the tracker can send it again. No acknowledged event is lost.
    Strict,
}

/// Everything the proxy needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<String>,
    pub client_id: String,
    pub threads: usize,
    pub sites: Vec<Arc<Site>>,
    pub inject: InjectSettings,
    pub tracker_path: String,
    pub collect_path: String,
    pub admin: AdminSettings,
    pub cookies: CookieSettings,
    pub consent: ConsentSettings,
    pub collect: CollectSettings,
    pub sqlite_path: String,
    /// `store.postgres`, with the password from `store.password_env` if given: the store is
    /// this database instead of the SQLite file. `Debug` redacts the password.
    pub postgres: Option<postgres::Config>,
    /// `store.pool_size`: PostgreSQL connections of this instance.
    pub postgres_pool_size: u32,
    /// Days events are kept (older ones are deleted daily); 0 = forever.
    pub retention_days: u32,
    pub durability: Durability,
    pub timeouts: Timeouts,
    pub grace_period: Duration,
    /// HTTPS listeners (certificates from the sites' `tls`).
    pub listen_tls: Vec<String>,
    pub log: LogSettings,
}

/// Reads and checks a configuration file.
pub fn load_file(path: &Path) -> Result<Settings, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: "(file)".into(),
            reason: format!("cannot read {}: {}", path.display(), e.kind()),
        }])
    })?;
    parse_str(&text)
}

/// Parses and checks a YAML document, with secrets taken from the process environment.
pub fn parse_str(text: &str) -> Result<Settings, ConfigErrors> {
    parse_with_env(text, &|name| std::env::var(name).ok())
}

pub(super) fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigErrors> {
    let file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." || path.is_empty() {
                "(document)".to_string()
            } else {
                path
            };
            let reason = redact_serde_message(&path, &e.into_inner().to_string());
            ConfigErrors(vec![ConfigError { path, reason }])
        })?
    };
    Checker {
        errors: Vec::new(),
        env,
    }
    .check(file)
}

/// serde's type errors quote the offending value (`invalid type: string "..."`, an integer in
/// full), which may be a secret put under the wrong key: keep only what was expected. The YAML
/// parser also prefixes the field path, which the caller prints already.
fn redact_serde_message(path: &str, msg: &str) -> String {
    let msg = msg
        .strip_prefix(path)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg);
    for (prefix, kind) in [
        ("invalid type:", "invalid type"),
        ("invalid value:", "invalid value"),
        ("invalid length", "invalid length"),
    ] {
        if msg.starts_with(prefix) {
            return match msg.find(", expected ") {
                Some(i) => format!("{kind}, expected {}", &msg[i + ", expected ".len()..]),
                None => kind.to_string(),
            };
        }
    }
    msg.to_string()
}

pub(super) struct Checker<'a> {
    errors: Vec<ConfigError>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Thirteen months: a year of data plus the month to compare it with.
pub const DEFAULT_RETENTION_DAYS: u32 = 395;
/// A hundred years: anything longer is a typo.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl Checker<'_> {
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn check(mut self, f: FileConfig) -> Result<Settings, ConfigErrors> {
        let listen = f.listen.to_vec();
        if listen.is_empty() {
            self.err("listen", "at least one address is needed");
        }
        for (i, addr) in listen.iter().enumerate() {
            let path = if matches!(f.listen, super::file::OneOrMany::One(_)) {
                "listen".to_string()
            } else {
                format!("listen[{i}]")
            };
            if addr.parse::<SocketAddr>().is_err() {
                self.err(path, format!("'{addr}' is not an IP:port address"));
            }
        }

        let client_id = match f.client_id {
            None => {
                self.err("client_id", "is required (the monitoring code's client ID)");
                String::new()
            }
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    self.err("client_id", "must be 1 to 64 characters of A-Z a-z 0-9 _ -");
                }
                id
            }
        };

        // One worker thread per core by default: Pingora's own default of 1 leaves all but one
        // core idle on an edge machine.
        let threads = f
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 || threads > 1024 {
            self.err("threads", "must be between 1 and 1024");
        }

        if f.sites.is_empty() {
            self.err("sites", "at least one site is needed");
        }
        let mut sites = Vec::new();
        let mut seen_names: Vec<String> = Vec::new();
        let mut seen_hosts: Vec<(HostPattern, String)> = Vec::new();
        for (i, site) in f.sites.into_iter().enumerate() {
            if let Some(s) = self.site(i, site, &mut seen_names, &mut seen_hosts) {
                sites.push(Arc::new(s));
            }
        }

        let position = match f.inject.position.as_deref() {
            None | Some("head_end") => Position::HeadEnd,
            Some("body_end") => Position::BodyEnd,
            Some(other) => {
                self.err(
                    "inject.position",
                    format!("'{other}' is not one of head_end, body_end"),
                );
                Position::HeadEnd
            }
        };
        let duplicates = match f.inject.duplicates.as_deref() {
            None | Some("remove") => Duplicates::Remove,
            Some("keep") => Duplicates::Keep,
            Some(other) => {
                self.err(
                    "inject.duplicates",
                    format!("'{other}' is not one of remove, keep"),
                );
                Duplicates::Remove
            }
        };
        let mut exclude_paths = Vec::new();
        for (i, p) in f.inject.exclude_paths.iter().enumerate() {
            if !p.starts_with('/') && !p.starts_with('*') {
                self.err(
                    format!("inject.exclude_paths[{i}]"),
                    "must start with / (or *)",
                );
            }
            exclude_paths.push(PathPattern::new(p));
        }
        let max_buffer_kib = f.inject.max_buffer_kib.unwrap_or(1024);
        if !(16..=1024 * 1024).contains(&max_buffer_kib) {
            self.err("inject.max_buffer_kib", "must be between 16 and 1048576");
        }

        let tracker_path = self.first_party_path("tracker.path", f.tracker.path, "/_sm/sm.js");
        let collect_path =
            self.first_party_path("collect.path", f.collect.path.clone(), "/_sm/collect");
        if tracker_path == collect_path {
            self.err("collect.path", "must differ from tracker.path");
        }

        let admin_listen = f
            .admin
            .listen
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let admin_addr = admin_listen.parse::<SocketAddr>();
        if admin_addr.is_err() {
            self.err(
                "admin.listen",
                format!("'{admin_listen}' is not an IP:port address"),
            );
        }
        let token = self.secret("admin", "token", f.admin.token, f.admin.token_env);
        if let (Ok(addr), None) = (&admin_addr, &token) {
            if !addr.ip().is_loopback() {
                self.err(
                    "admin.token",
                    "a token (admin.token or admin.token_env) is required when admin.listen is not a loopback address",
                );
            }
        }
        if let Some(t) = &token {
            if t.expose().len() < 16 {
                self.err("admin.token", "must be at least 16 characters");
            }
        }
        if admin_addr.is_ok() && listen.contains(&admin_listen) {
            self.err("admin.listen", "must differ from the public listen address");
        }

        let collection = self.collection(CollectionFile {
            cookies: f.cookies,
            consent: f.consent,
            collect: f.collect,
            identify: f.identify,
            trusted_proxies: f.trusted_proxies,
            privacy: f.privacy,
            companies: f.companies,
        });

        let postgres = self.postgres(&f.store);
        let postgres_pool_size = self.pool_size(&f.store);
        let sqlite_path = f.store.sqlite.unwrap_or_else(|| "smproxy.db".to_string());
        if sqlite_path.is_empty() {
            self.err("store.sqlite", "must not be empty");
        }
        let retention_days = f.store.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if retention_days > MAX_RETENTION_DAYS {
            self.err(
                "store.retention_days",
                format!("must be between 0 (keep forever) and {MAX_RETENTION_DAYS}"),
            );
        }

        let durability = match f.store.durability.as_deref() {
            None | Some("relaxed") => Durability::Relaxed,
            Some("strict") => Durability::Strict,
            Some(_) => {
                self.err("store.durability", "must be strict or relaxed");
                Durability::Relaxed
            }
        };

        let timeouts = Timeouts {
            connect: self.seconds("timeouts.connect", f.timeouts.connect, 5.0),
            read: self.seconds("timeouts.read", f.timeouts.read, 60.0),
            write: self.seconds("timeouts.write", f.timeouts.write, 60.0),
            idle: self.seconds("timeouts.idle", f.timeouts.idle, 60.0),
            request_header: self.seconds(
                "timeouts.request_header",
                f.timeouts.request_header,
                20.0,
            ),
            keepalive: self.seconds("timeouts.keepalive", f.timeouts.keepalive, 60.0),
        };
        let grace_period = Duration::from_secs(f.grace_period_seconds.unwrap_or(10));
        let listen_tls = self.listen_tls(f.listen_tls.as_ref(), &listen, &admin_listen, &sites);
        let log = self.log(&f.log);

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(Settings {
            listen,
            client_id,
            threads,
            sites,
            inject: InjectSettings {
                enabled: f.inject.enabled.unwrap_or(true),
                position,
                duplicates,
                exclude_paths,
                max_buffer_bytes: max_buffer_kib * 1024,
            },
            tracker_path,
            collect_path,
            admin: AdminSettings {
                listen: admin_listen,
                token,
            },
            cookies: collection.cookies,
            consent: collection.consent,
            collect: collection.collect,
            sqlite_path,
            postgres,
            postgres_pool_size,
            retention_days,
            durability,
            timeouts,
            grace_period,
            listen_tls,
            log,
        })
    }

    fn site(
        &mut self,
        i: usize,
        s: SiteFile,
        seen_names: &mut Vec<String>,
        seen_hosts: &mut Vec<(HostPattern, String)>,
    ) -> Option<Site> {
        let at = |field: &str| format!("sites[{i}].{field}");
        let errors_before = self.errors.len();
        let name = s.name.clone().unwrap_or_default();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            self.err(
                at("name"),
                "is required: 1 to 64 characters of A-Z a-z 0-9 . _ -",
            );
        } else if seen_names.contains(&name) {
            self.err(at("name"), format!("'{name}' is used by another site"));
        }
        seen_names.push(name.clone());

        if s.hosts.is_empty() {
            self.err(at("hosts"), "at least one host name (or \"*\") is needed");
        }
        let mut hosts = Vec::new();
        for (j, h) in s.hosts.iter().enumerate() {
            let path = format!("sites[{i}].hosts[{j}]");
            match parse_host_pattern(h) {
                Ok(p) => {
                    if let Some((_, other)) = seen_hosts.iter().find(|(q, _)| *q == p) {
                        self.err(path, format!("'{h}' is already used by site '{other}'"));
                    } else {
                        seen_hosts.push((p.clone(), name.clone()));
                        hosts.push(p);
                    }
                }
                Err(reason) => self.err(path, reason),
            }
        }

        let origins = self.origins(i, &s);
        let tls = s.tls.as_ref().and_then(|t| self.site_tls(i, t, &hosts));

        if self.errors.len() > errors_before {
            return None;
        }
        let origins = origins?;
        Some(Site {
            index: i,
            name,
            hosts,
            upstream: origins.list.first()?.clone(),
            origins,
            tls,
        })
    }

    fn first_party_path(&mut self, field: &str, value: Option<String>, default: &str) -> String {
        let p = value.unwrap_or_else(|| default.to_string());
        let ok = p.starts_with('/')
            && p.len() > 1
            && p.len() <= 128
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b));
        if !ok {
            self.err(
                field,
                "must be an absolute path of A-Z a-z 0-9 / . _ - ~ (e.g. /_sm/sm.js)",
            );
        }
        p
    }

    pub(super) fn secret(
        &mut self,
        section: &str,
        key: &str,
        inline: Option<String>,
        env_name: Option<String>,
    ) -> Option<Secret> {
        match (inline, env_name) {
            (Some(_), Some(_)) => {
                self.err(
                    format!("{section}.{key}_env"),
                    format!("set either {key} or {key}_env, not both"),
                );
                None
            }
            (Some(v), None) => Some(Secret::new(v)),
            (None, Some(name)) => match (self.env)(&name) {
                Some(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    self.err(
                        format!("{section}.{key}_env"),
                        format!("environment variable {name} is not set"),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    pub(super) fn seconds(&mut self, field: &str, value: Option<f64>, default: f64) -> Duration {
        let v = value.unwrap_or(default);
        if !(v > 0.0 && v <= 86_400.0) {
            self.err(field, "must be a number of seconds between 0 and 86400");
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(v)
    }
}

/// `host:port`, `[v6]:port`; the port is required (an origin has no implicit scheme here).
pub(super) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port))
}

fn parse_host_pattern(raw: &str) -> Result<HostPattern, String> {
    let h = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    let (wild, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, h.clone()),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!(
            "'{raw}' is not a host name, '*.' followed by a host name, or '*' (no port, no scheme)"
        ));
    }
    Ok(if wild {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigErrors> {
        parse_with_env(text, &|name| {
            (name == "GOOD_TOKEN").then(|| "0123456789abcdef0123".to_string())
        })
    }

    const MINIMAL: &str =
        "client_id: abc\nsites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"127.0.0.1:1\"\n";

    #[test]
    fn minimal_file_gets_working_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:8080"]);
        assert_eq!(
            s.threads,
            std::thread::available_parallelism().unwrap().get()
        );
        assert_eq!(s.inject.position, Position::HeadEnd);
        assert_eq!(s.inject.duplicates, Duplicates::Remove);
        assert_eq!(s.tracker_path, "/_sm/sm.js");
        assert_eq!(s.admin.listen, "127.0.0.1:9090");
        assert_eq!(s.sites[0].hosts, vec![HostPattern::Any]);
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let text = "client_id: 'bad id!'\nsites:\n  - name: s\n    hosts: ['bad host:80']\n    upstream: 'nope'\ninject:\n  position: middle\n";
        let errs = parse(text).unwrap_err().0;
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "client_id",
                "sites[0].hosts[0]",
                "sites[0].upstream",
                "inject.position"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let errs = parse(&format!("{MINIMAL}inject:\n  positon: head_end\n"))
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "inject.positon");
        assert!(
            errs[0].reason.contains("unknown field `positon`"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn wrong_types_do_not_echo_values() {
        let errs = parse(&format!("{MINIMAL}cookies: 'supersecretvalue'\n"))
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "cookies");
        assert!(
            !errs[0].reason.contains("supersecretvalue"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn public_admin_needs_a_token() {
        let text = format!("{MINIMAL}admin:\n  listen: '0.0.0.0:9090'\n");
        let errs = parse(&text).unwrap_err().0;
        assert_eq!(errs[0].path, "admin.token");
        let ok = format!("{MINIMAL}admin:\n  listen: '0.0.0.0:9090'\n  token_env: GOOD_TOKEN\n");
        assert!(parse(&ok).is_ok());
        let missing = format!("{MINIMAL}admin:\n  token_env: MISSING_TOKEN_VAR\n");
        assert_eq!(parse(&missing).unwrap_err().0[0].path, "admin.token_env");
    }

    #[test]
    fn retention_days() {
        assert_eq!(parse(MINIMAL).unwrap().retention_days, 395);
        let keep = parse(&format!("{MINIMAL}store:\n  retention_days: 0\n")).unwrap();
        assert_eq!(keep.retention_days, 0);
        let errs = parse(&format!("{MINIMAL}store:\n  retention_days: 40000\n"))
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "store.retention_days");
        let strict = parse(&format!("{MINIMAL}store:\n  durability: strict\n")).unwrap();
        assert_eq!(strict.durability, Durability::Strict);
        let errs = parse(&format!("{MINIMAL}store:\n  durability: always\n"))
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "store.durability");
        let errs = parse(&format!("{MINIMAL}store:\n  retention_days: -1\n"))
            .unwrap_err()
            .0;
        assert_eq!(errs[0].path, "store.retention_days");
    }

    #[test]
    fn unresolvable_upstream_is_named() {
        let text = "client_id: abc\nsites:\n  - name: s\n    hosts: ['a.example']\n    upstream: 'no-such-host.invalid:80'\n";
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs[0].path, "sites[0].upstream");
        assert!(
            errs[0].reason.contains("cannot resolve"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn duplicate_hosts_across_sites_are_rejected() {
        let text = "client_id: abc\nsites:\n  - name: a\n    hosts: ['x.example']\n    upstream: '127.0.0.1:1'\n  - name: b\n    hosts: ['X.example.']\n    upstream: '127.0.0.1:2'\n";
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs[0].path, "sites[1].hosts[0]");
    }

    #[test]
    fn path_patterns() {
        let p = PathPattern::new("/admin/*");
        assert!(p.matches("/admin/"));
        assert!(p.matches("/admin/users/1"));
        assert!(!p.matches("/admin"));
        assert!(!p.matches("/x/admin/"));
        let q = PathPattern::new("*.pdf");
        assert!(q.matches("/a/b.pdf"));
        assert!(!q.matches("/a/b.pdfx"));
        let r = PathPattern::new("/a/*/c/*");
        assert!(r.matches("/a/b/c/d"));
        assert!(!r.matches("/a/b/d"));
        assert!(PathPattern::new("/exact").matches("/exact"));
        assert!(!PathPattern::new("/exact").matches("/exact/"));
    }

    #[test]
    fn redaction_keeps_the_shape() {
        assert_eq!(
            redact_serde_message("x", "invalid type: string \"s3cr3t\", expected a map"),
            "invalid type, expected a map"
        );
        assert_eq!(
            redact_serde_message(
                "cookies",
                "cookies: invalid type: integer `1234567`, expected struct X"
            ),
            "invalid type, expected struct X"
        );
        assert_eq!(
            redact_serde_message("a", "unknown field `b`"),
            "unknown field `b`"
        );
    }

    #[test]
    fn client_timeouts_have_defaults_and_named_errors() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.timeouts.request_header, Duration::from_secs(20));
        assert_eq!(s.timeouts.keepalive, Duration::from_secs(60));
        let set = parse(&format!(
            "{MINIMAL}timeouts:\n  request_header: 2.5\n  keepalive: 5\n"
        ))
        .unwrap();
        assert_eq!(set.timeouts.request_header, Duration::from_millis(2500));
        assert_eq!(set.timeouts.keepalive, Duration::from_secs(5));
        let errs = parse(&format!(
            "{MINIMAL}timeouts:\n  request_header: 0\n  keepalive: -1\n"
        ))
        .unwrap_err()
        .0;
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["timeouts.request_header", "timeouts.keepalive"]);
        assert!(errs[0].reason.contains("seconds"), "{}", errs[0].reason);
    }
}
