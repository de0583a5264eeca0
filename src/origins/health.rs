//! Active health checks: every `interval`, each origin of a site with `health_check` gets a TCP
//! connect or an HTTP `GET path` (2xx or 3xx is healthy); `unhealthy_threshold` failures in a
//! row take it out of rotation, `healthy_threshold` successes in a row bring it back. Runs as a
//! Pingora background service, so it stops with the server.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};

use super::pool::{Origin, Pool};
use crate::config::{HealthCheck, HealthCheckKind, Settings};

pub struct HealthChecks {
    /// (pool, its check) for every site that has one.
    checked: Vec<(Arc<Pool>, HealthCheck)>,
}

impl HealthChecks {
    pub fn new(settings: &Settings, pools: &[Arc<Pool>]) -> Self {
        HealthChecks {
            checked: settings
                .sites
                .iter()
                .zip(pools)
                .filter_map(|(s, p)| s.origins.health_check.clone().map(|h| (p.clone(), h)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }
}

/// One check of one origin.
async fn probe(origin: &Origin, check: &HealthCheck) -> Result<(), String> {
    let mut peer = origin.peer.clone();
    peer.options.connection_timeout = Some(check.timeout);
    peer.options.total_connection_timeout = Some(check.timeout);
    peer.options.read_timeout = Some(check.timeout);
    peer.options.write_timeout = Some(check.timeout);
    let work = async {
        match &check.kind {
            HealthCheckKind::Tcp => TransportConnector::new(None)
                .new_stream(&peer)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            HealthCheckKind::Http { path } => http_probe(&peer, origin, path).await,
        }
    };
    match tokio::time::timeout(check.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

async fn http_probe(
    peer: &pingora::prelude::HttpPeer,
    origin: &Origin,
    path: &str,
) -> Result<(), String> {
    let connector = Connector::new(None);
    let (mut session, _) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
    let host = if origin.upstream.sni.is_empty() {
        origin.upstream.authority.clone()
    } else {
        origin.upstream.sni.clone()
    };
    req.insert_header("host", host).map_err(|e| e.to_string())?;
    req.insert_header("user-agent", "smproxy-health-check")
        .map_err(|e| e.to_string())?;
    req.insert_header("connection", "close")
        .map_err(|e| e.to_string())?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| e.to_string())?;
    session
        .finish_request_body()
        .await
        .map_err(|e| e.to_string())?;
    session
        .read_response_header()
        .await
        .map_err(|e| e.to_string())?;
    let status = session
        .response_header()
        .map(|r| r.status.as_u16())
        .unwrap_or(0);
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Checks one origin forever, flipping its health at the thresholds.
async fn watch(pool: Arc<Pool>, i: usize, check: HealthCheck) {
    let origin = &pool.origins[i];
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match probe(origin, &check).await {
            Ok(()) => {
                fail_run = 0;
                ok_run = ok_run.saturating_add(1);
                if !origin.is_healthy() && ok_run >= check.healthy_threshold {
                    origin.set_healthy(true);
                    tracing::info!(site = %pool.site, origin = %origin.upstream.authority, "origin healthy again");
                }
            }
            Err(why) => {
                ok_run = 0;
                fail_run = fail_run.saturating_add(1);
                if origin.is_healthy() && fail_run >= check.unhealthy_threshold {
                    origin.set_healthy(false);
                    tracing::warn!(site = %pool.site, origin = %origin.upstream.authority, error = %why, "origin failed its health check");
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for (pool, check) in &self.checked {
            for i in 0..pool.origins.len() {
                tasks.spawn(watch(pool.clone(), i, check.clone()));
            }
        }
        let _ = shutdown.changed().await;
        tasks.abort_all();
    }
}

pub fn service(checks: HealthChecks) -> GenBackgroundService<HealthChecks> {
    background_service("smproxy health checks", checks)
}
