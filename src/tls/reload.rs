//! Certificate reload on SIGHUP, as a Pingora background service (so it stops with the
//! server). New handshakes get the new certificates; open connections keep theirs.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use tokio::signal::unix::{signal, SignalKind};

use super::SniResolver;

pub struct CertReload {
    resolver: Arc<SniResolver>,
}

#[async_trait]
impl BackgroundService for CertReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: certificates will not reload");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => match self.resolver.reload() {
                    Ok(n) => tracing::info!(sites = n, "certificates reloaded"),
                    // The old certificates stay in use: a half-written file must not take
                    // HTTPS down.
                    Err(e) => tracing::error!(error = %e, "certificate reload failed; keeping the current certificates"),
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

pub fn service(resolver: Arc<SniResolver>) -> GenBackgroundService<CertReload> {
    background_service("smproxy certificate reload", CertReload { resolver })
}
