//! The admin listener: `/healthz` (open, for load balancers) and `/metrics` (Prometheus),
//! token-protected when a token is configured. Never routed from the public listener.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::Settings;
use crate::metrics::Metrics;

pub struct AdminApp {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl AdminApp {
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Self {
        AdminApp { settings, metrics }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.settings.admin.token else {
            return true;
        };
        let given = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }
}

/// Compares without returning early, so the time taken does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if path == "/healthz" {
            return text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n");
        }
        if !self.authorized(session) {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "unauthorized: send Authorization: Bearer <admin token>\n",
            );
            r.headers_mut()
                .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
            return r;
        }
        match path.as_str() {
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
