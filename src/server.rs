//! Assembles the process: the store and its event writer, one Pingora `Server` with the public
//! proxy and the admin listener. Used by `smproxy -c`, by `smproxy demo` and by the tests.

use std::sync::Arc;

use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::collect::collector::Collector;
use crate::config::{Durability, Secret, Settings};
use crate::conn::{ConnApp, ConnLimits};
use crate::identity::Keys;
use crate::metrics::Metrics;
use crate::proxy::Smproxy;
use crate::store::{EventWriter, PostgresStore, Reports, SqliteStore, Store, WriterConfig};

/// A built process, ready to run.
pub struct Built {
    pub server: Server,
    pub metrics: Arc<Metrics>,
    /// Drains events into `store`; flushed after the server stops.
    pub writer: EventWriter,
    pub store: Arc<dyn Store>,
}

impl Built {
    /// Runs until a shutdown signal, then writes every accepted event before exiting.
    pub fn run_forever(self) -> ! {
        self.server.run(RunArgs::default());
        let stats = self.writer.shutdown();
        tracing::info!(
            written = stats.written,
            dropped = stats.dropped,
            abandoned = stats.abandoned,
            "event writer flushed"
        );
        std::process::exit(0)
    }
}

/// The signing keys: the configured ones, or a random key for this process only.
fn keys(settings: &Settings) -> anyhow::Result<Keys> {
    if settings.cookies.secrets.is_empty() {
        tracing::warn!(
            "no cookies.secret configured: signed cookies use a random key and will not survive a restart"
        );
        let random: String = (0..2)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        return Ok(Keys::new(&[Secret::new(random)])?);
    }
    Ok(Keys::new(&settings.cookies.secrets)?)
}

/// Pingora process options that smproxy's own CLI passes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessOptions {
    /// Take over the listening sockets of a running instance (`-u`).
    pub upgrade: bool,
    /// In-process use (tests): no grace period, so shutdown is immediate.
    pub no_grace: bool,
}

/// A file-name-safe tag of the first public listen address.
fn instance_tag(settings: &Settings) -> String {
    let first = settings
        .listen
        .first()
        .map(String::as_str)
        .unwrap_or("default");
    first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A plain-HTTP listening endpoint without Pingora's 64 KiB per-connection read buffer.
///
/// Without TLS that buffer saves no system calls (request heads are read into the session's
/// own buffer, bodies in 64 KiB reads), but every keep-alive connection holds it while idle:
/// 64 MB per 1,000 connections. The small write buffer stays: it joins a chunk's header and
/// data into one write.
fn plain_listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
}

/// Idle keep-alive connections to the origins that each proxy thread keeps for reuse
/// (Pingora's default is 128).
///
/// A request that finds no idle connection opens a new one, and a connection handed back to a
/// full pool is closed: with more requests in flight than the pool holds, a share of them pays
/// a TCP connect and close on both sides (with 1,000 clients on one thread, 8 % of the
/// requests did, steady state). Idle pooled connections cost a socket and a small task each,
/// and close after `timeouts.idle`.
const UPSTREAM_KEEPALIVE_POOL: usize = 4096;

/// How long clients may take to send a request head and may stay idle between requests.
fn conn_limits(settings: &Settings) -> ConnLimits {
    ConnLimits {
        request_header: settings.timeouts.request_header,
        keepalive: settings.timeouts.keepalive,
    }
}

/// The configured store, as the writer's and the admin's view of it.
fn open_store(settings: &Settings) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Reports>)> {
    if let Some(config) = &settings.postgres {
        // The error says what PostgreSQL or the network said; the URL (which may hold the
        // password) is not repeated.
        let pg = Arc::new(
            PostgresStore::connect_with_pool_size(config.clone(), settings.postgres_pool_size)
                .map_err(|e| anyhow::anyhow!("store.postgres: {e}"))?,
        );
        return Ok((pg.clone(), pg));
    }
    let sqlite = Arc::new(
        SqliteStore::open(&settings.sqlite_path)
            .map_err(|e| anyhow::anyhow!("store.sqlite {}: {e}", settings.sqlite_path))?,
    );
    if settings.durability == Durability::Strict {
        sqlite
            .sync_every_commit()
            .map_err(|e| anyhow::anyhow!("store.durability strict: {e}"))?;
    }
    Ok((sqlite.clone(), sqlite))
}

/// Opens the store, starts the writer and builds the server with its services.
pub fn build(settings: Arc<Settings>, opts: ProcessOptions) -> anyhow::Result<Built> {
    let keys = keys(&settings)?;
    let (store, reports) = open_store(&settings)?;
    let writer = EventWriter::start(
        store.clone(),
        WriterConfig {
            capacity: settings.collect.queue_capacity,
            ..WriterConfig::default()
        },
    )?;

    let conf = ServerConf {
        threads: settings.threads,
        upstream_keepalive_pool_size: UPSTREAM_KEEPALIVE_POOL,
        grace_period_seconds: Some(if opts.no_grace {
            0
        } else {
            settings.grace_period.as_secs()
        }),
        graceful_shutdown_timeout_seconds: Some(if opts.no_grace {
            0
        } else {
            settings.grace_period.as_secs() + 5
        }),
        // Per listen address, so two instances on one machine never share them.
        upgrade_sock: format!("/tmp/smproxy-{}.upgrade.sock", instance_tag(&settings)),
        pid_file: format!("/tmp/smproxy-{}.pid", instance_tag(&settings)),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: false,
        nocapture: false,
        test: false,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new(settings.sites.iter().map(|s| s.name.clone())));
    let _ = metrics.queue.set(writer.queue());
    let collector = Arc::new(Collector::new(
        settings.clone(),
        keys.clone(),
        writer.queue(),
        store.clone(),
        metrics.clone(),
    ));

    let app = Smproxy::new(settings.clone(), metrics.clone(), collector);
    let checks = crate::origins::health::HealthChecks::new(&settings, &app.pools());
    let limits = conn_limits(&settings);
    let shortcut = app.shortcut();
    let proxy_app = pingora::proxy::http_proxy(&server.configuration, app);
    let mut proxy = Service::new(
        "smproxy public".to_string(),
        ConnApp::new(proxy_app, limits, metrics.conn.clone()).with_shortcut(shortcut),
    );
    for addr in &settings.listen {
        proxy.add_listener(plain_listener(addr));
    }
    if !settings.listen_tls.is_empty() {
        let resolver = Arc::new(crate::tls::SniResolver::load(&settings.sites)?);
        for addr in &settings.listen_tls {
            let tls = crate::tls::listener::settings(resolver.clone())?;
            proxy.add_tls_with_settings(addr, None, tls);
        }
        server.add_service(crate::tls::reload::service(resolver));
    }
    server.add_service(proxy);
    if !checks.is_empty() {
        server.add_service(crate::origins::health::service(checks));
    }

    let admin_app = AdminApp::with_store(
        settings.clone(),
        metrics.clone(),
        store.clone(),
        reports,
        keys,
    )?;
    let mut admin = Service::new(
        "smproxy admin".to_string(),
        ConnApp::new(admin_app, limits, metrics.conn.clone()),
    );
    admin.add_tcp(&settings.admin.listen);
    server.add_service(admin);
    server.add_service(crate::admin::retention_service(
        store.clone(),
        settings.retention_days,
    ));

    Ok(Built {
        server,
        metrics,
        writer,
        store,
    })
}
