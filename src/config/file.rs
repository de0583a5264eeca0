//! The user's YAML file, as written: every key, its default, and nothing else.
//!
//! These structs only describe the document (`deny_unknown_fields` everywhere, so a typo is an
//! error, not a silently ignored key). Checking values and turning them into what the proxy uses
//! is `validate.rs`'s job.

use serde::Deserialize;

/// `listen:` accepts one address or a list of them.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::One("127.0.0.1:8080".into())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: OneOrMany,
    pub client_id: Option<String>,
    /// Worker threads of the public proxy service.
    pub threads: Option<usize>,
    #[serde(default)]
    pub sites: Vec<SiteFile>,
    #[serde(default)]
    pub inject: InjectFile,
    #[serde(default)]
    pub tracker: PathFile,
    #[serde(default)]
    pub collect: CollectFile,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub cookies: CookiesFile,
    #[serde(default)]
    pub store: StoreFile,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub consent: ConsentFile,
    #[serde(default)]
    pub identify: IdentifyFile,
    /// Reverse proxies in front of smproxy whose `X-Forwarded-For`/`-Proto` are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub privacy: PrivacyFile,
    #[serde(default)]
    pub companies: CompaniesFile,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub grace_period_seconds: Option<u64>,
    /// HTTPS listener(s); certificates come from `sites[].tls`.
    pub listen_tls: Option<OneOrMany>,
    #[serde(default)]
    pub log: LogFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    pub name: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// One origin, or a list of them sharing the load.
    pub upstream: Option<OneOrMany>,
    #[serde(default)]
    pub upstream_tls: bool,
    pub upstream_sni: Option<String>,
    /// Verify the origin's certificate (HTTPS origins). Opt out only for self-signed origins.
    pub upstream_verify: Option<bool>,
    /// round_robin | least_connections (with several origins).
    pub balance: Option<String>,
    pub health_check: Option<HealthCheckFile>,
    pub passive_ejection: Option<PassiveEjectionFile>,
    /// Extra attempts for idempotent requests whose connection to an origin failed.
    pub retries: Option<u32>,
    pub tls: Option<SiteTlsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// tcp | http
    pub kind: Option<String>,
    /// The path an `http` check requests (2xx or 3xx is healthy).
    pub path: Option<String>,
    pub interval_seconds: Option<f64>,
    pub timeout_seconds: Option<f64>,
    /// Consecutive successes that bring an origin back.
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that take an origin out.
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveEjectionFile {
    /// Consecutive failed requests that eject an origin.
    pub failures: Option<u32>,
    /// How long an ejected origin gets no traffic.
    pub eject_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteTlsFile {
    /// PEM certificate chain (leaf first).
    pub cert: Option<String>,
    /// PEM private key.
    pub key: Option<String>,
    /// Answer plain-HTTP requests with `301` to the same URL over HTTPS.
    pub redirect_http: Option<bool>,
    /// `Strict-Transport-Security` max-age on HTTPS answers; 0 or absent: no header.
    pub hsts_max_age_seconds: Option<u64>,
    pub hsts_include_subdomains: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// text | json
    pub format: Option<String>,
    /// One line per request (target `access`).
    pub access: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InjectFile {
    pub enabled: Option<bool>,
    pub position: Option<String>,
    pub duplicates: Option<String>,
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// Upper bound of the HTML parser's buffers for one response, in KiB.
    pub max_buffer_kib: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PathFile {
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CookiesFile {
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// Key rotation: the first signs, all verify.
    pub secrets: Option<Vec<String>>,
    pub secrets_env: Option<Vec<String>>,
    pub js_readable: Option<bool>,
    pub max_age_days: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CollectFile {
    pub path: Option<String>,
    pub max_body_kib: Option<usize>,
    /// Beacons per minute per client address; 0 = unlimited.
    pub rate_per_minute: Option<u32>,
    pub rate_burst: Option<u32>,
    /// Events waiting for the store; beyond it new events are dropped (and counted).
    pub queue_capacity: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsentFile {
    pub mode: Option<String>,
    /// A consent manager's cookie whose presence (or `cookie_value`) grants consent.
    pub cookie: Option<String>,
    pub cookie_value: Option<String>,
    pub respect_dnt: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IdentifyFile {
    /// Redirect to the URL without `smclient`/`smlink` after reading them.
    pub strip_params: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    #[serde(default)]
    pub ip_truncate: IpTruncateFile,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IpTruncateFile {
    pub ipv4: Option<u8>,
    pub ipv6: Option<u8>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CompaniesFile {
    #[serde(default)]
    pub networks: Vec<CompanyNetFile>,
    pub csv: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyNetFile {
    pub cidr: String,
    pub name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub sqlite: Option<String>,
    /// A PostgreSQL URL (`postgres://user@host:port/db`): a database shared by a fleet.
    pub postgres: Option<String>,
    /// The environment variable holding the PostgreSQL password (instead of the URL).
    pub password_env: Option<String>,
    /// PostgreSQL connections per instance (default 8).
    pub pool_size: Option<u32>,
    /// Days events are kept; 0 = forever.
    pub retention_days: Option<u32>,
    /// `relaxed` (default): a beacon is answered once queued. `strict`: once committed.
    pub durability: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Seconds to establish a TCP (and TLS) connection to the origin.
    pub connect: Option<f64>,
    /// Seconds to wait for the origin's response headers, and between body reads.
    pub read: Option<f64>,
    /// Seconds to wait for the origin to accept request bytes.
    pub write: Option<f64>,
    /// Seconds an idle upstream keep-alive connection is kept in the pool.
    pub idle: Option<f64>,
    /// Seconds a client has to send a request's headers: from connecting for the first
    /// request, from its first byte for later ones on a keep-alive connection.
    pub request_header: Option<f64>,
    /// Seconds a client's keep-alive connection may wait idle for its next request.
    pub keepalive: Option<f64>,
}
