//! Drives each HTTP/1 client connection between requests instead of Pingora: the connection
//! waits for its next request in a small future of its own, and only when the first byte
//! arrives is Pingora's request handling (a boxed future of about 15 KB, plus the head buffer)
//! started; a request's head must then be complete within `timeouts.request_header`.
//!
//! Pingora 0.9's own loop keeps that whole future alive while a keep-alive connection is idle,
//! bounds a head only per read (a client trickling a byte at a time is never cut off) and,
//! once a request said nothing about keep-alive, waits for the next request forever.
//! HTTP/2 (ALPN `h2`) connections are multiplexed and left to Pingora as they are.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::time::Instant;

use super::counters::ConnCounters;
use super::shortcut::Shortcut;
use super::stream::ConnStream;

/// How long a client connection may take, as configured under `timeouts`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From the start of the connection (after the TLS handshake) to the end of the first
    /// request head, and from the first byte of each later request to the end of its head
    /// (nginx's `client_header_timeout`).
    pub request_header: Duration,
    /// How long a connection may wait idle for its next request (nginx's `keepalive_timeout`).
    pub keepalive: Duration,
}

/// An HTTP app (the proxy, the admin listener) served with [`ConnLimits`].
pub struct ConnApp<A> {
    app: Arc<A>,
    limits: ConnLimits,
    counters: Arc<ConnCounters>,
    shortcut: Option<Arc<dyn Shortcut>>,
}

impl<A: HttpServerApp> ConnApp<A> {
    pub fn new(app: A, limits: ConnLimits, counters: Arc<ConnCounters>) -> ConnApp<A> {
        ConnApp {
            app: Arc::new(app),
            limits,
            counters,
            shortcut: None,
        }
    }

    /// Lets `shortcut` answer the requests it claims before Pingora (see [`super::shortcut`]).
    /// Not with a `keepalive_request_limit`: only Pingora's sessions count toward it.
    pub fn with_shortcut(mut self, shortcut: Arc<dyn Shortcut>) -> ConnApp<A> {
        let limited = self
            .app
            .server_options()
            .is_some_and(|o| o.keepalive_request_limit.is_some());
        if !limited {
            self.shortcut = Some(shortcut);
        }
        self
    }
}

/// Why a connection stopped waiting for its next request.
enum Wait {
    Request,
    /// The client closed it, or the server is shutting down.
    Closed,
    TimedOut,
}

impl<A: HttpServerApp + Send + Sync + 'static> ConnApp<A> {
    /// Whether Pingora's own handling is needed: HTTP/2 (by ALPN or cleartext preface, if the
    /// app allows it) and custom protocols.
    fn leave_to_pingora(&self, stream: &Stream) -> bool {
        let options = self.app.server_options();
        let h2c = options.is_some_and(|o| o.h2c) && stream.get_ssl_digest().is_none();
        let custom = options.is_some_and(|o| o.force_custom);
        h2c || custom
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2) | Some(ALPN::Custom(_))
            )
    }

    /// One HTTP/1 connection, request after request, until it closes or times out.
    async fn serve_h1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut conn = Box::new(ConnStream::new(stream, self.counters.clone()));
        let mut shutdown = shutdown.clone();
        // The first head is timed from the start of the connection, the way a client that
        // connects and stays silent is timed.
        let mut head_deadline = Instant::now() + self.limits.request_header;
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let idle_until = if first {
                head_deadline
            } else {
                Instant::now() + self.limits.keepalive
            };
            // A connection the server accepted gets its first request answered even when a
            // shutdown (or an upgrade's hand-over) starts meanwhile: its client has no reason
            // to expect a close before any answer, and must not see one. Only connections
            // idle between requests are closed at once.
            let watch = (!first).then_some(&mut shutdown);
            match wait_for_request(&mut conn, idle_until, watch).await {
                Wait::Request => {}
                Wait::Closed => return,
                Wait::TimedOut => {
                    if first {
                        self.counters.header_timeout();
                    } else {
                        self.counters.idle_close();
                    }
                    return;
                }
            }
            if let Some(shortcut) = self.shortcut.as_deref() {
                // Not once a shutdown started: Pingora's session then answers with
                // `Connection: close`.
                if conn.claimed_by(shortcut) && !*shutdown.borrow() {
                    // Boxed: the parser's state would otherwise grow every idle connection's
                    // future.
                    match Box::pin(conn.answer_with(shortcut)).await {
                        Ok(None) => {}
                        Ok(Some(close)) => {
                            if close {
                                let _ = tokio::io::AsyncWriteExt::shutdown(&mut *conn).await;
                                return;
                            }
                            first = false;
                            continue;
                        }
                        Err(_) => return,
                    }
                }
            }
            if !first {
                head_deadline = Instant::now() + self.limits.request_header;
            }
            conn.arm(head_deadline);

            let mut session = ServerSession::new_http1(conn);
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                // What Pingora sets up for a connection's first session.
                None if first => {
                    session.set_keepalive(Some(self.limits.keepalive.as_secs().max(1)));
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
                None => {}
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let Some(reused) = self.app.process_new_http(session, &shutdown).await else {
                return;
            };
            let (stream, settings) = reused.consume();
            // The stream handed back is the one given: unwrap it rather than wrap it again.
            conn = match stream.into_any().downcast::<ConnStream>() {
                Ok(conn) => conn,
                Err(_) => {
                    tracing::error!("a reused connection came back as another stream type");
                    return;
                }
            };
            persistent = settings;
            first = false;
        }
    }
}

/// Waits for the first byte of the next request, at most until `until`. With `shutdown`
/// given, an idle connection is closed as soon as the server starts shutting down, not kept
/// through the grace period.
async fn wait_for_request(
    conn: &mut ConnStream,
    until: Instant,
    shutdown: Option<&mut ShutdownWatch>,
) -> Wait {
    let timer = tokio::time::sleep_until(until);
    tokio::pin!(timer);
    let Some(shutdown) = shutdown else {
        return tokio::select! {
            biased;
            arrived = conn.wait_for_request() => arrived_as_wait(arrived),
            _ = &mut timer => Wait::TimedOut,
        };
    };
    let mut watching = true;
    loop {
        if watching && *shutdown.borrow() {
            return Wait::Closed;
        }
        tokio::select! {
            biased;
            arrived = conn.wait_for_request() => return arrived_as_wait(arrived),
            _ = &mut timer => return Wait::TimedOut,
            // A closed channel means no shutdown will ever be announced: stop watching it.
            changed = shutdown.changed(), if watching => watching = changed.is_ok(),
        }
    }
}

fn arrived_as_wait(arrived: std::io::Result<bool>) -> Wait {
    if matches!(arrived, Ok(true)) {
        Wait::Request
    } else {
        Wait::Closed
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ConnApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.leave_to_pingora(&stream) {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        self.serve_h1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}
