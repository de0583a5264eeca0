//! Assembles the process: one Pingora `Server` with the public proxy and the admin listener.
//! Used by `smproxy -c`, by `smproxy demo` and by the integration tests.

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::proxy::Smproxy;

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

/// Builds the server with its services; `run` or `run_forever` starts it.
pub fn build(
    settings: Arc<Settings>,
    opts: ProcessOptions,
) -> anyhow::Result<(Server, Arc<Metrics>)> {
    let conf = ServerConf {
        threads: settings.threads,
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

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Smproxy::new(settings.clone(), metrics.clone()),
        "smproxy public",
    );
    for addr in &settings.listen {
        proxy.add_tcp(addr);
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "smproxy admin".to_string(),
        AdminApp::new(settings.clone(), metrics.clone()),
    );
    admin.add_tcp(&settings.admin.listen);
    server.add_service(admin);

    Ok((server, metrics))
}
