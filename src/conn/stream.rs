//! One client connection's transport as Pingora's HTTP/1 session uses it: the total deadline
//! for the request head being read, the bytes that woke an idle connection, handed back
//! first, and small writes held to leave with the next ([`Outbox`]).
//!
//! Both are kept off the common path: the bytes that end an idle wait are the read Pingora
//! would have made (one `recv` per request, not two), and the deadline's timer is registered
//! only when a head does not arrive in one piece. (Registering a timer that expires before
//! every other one wakes Tokio's driver through its eventfd: a system call per request.)

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::counters::ConnCounters;
use super::head_end::HeadEnd;
use super::outbox::Outbox;
use super::shortcut::{self, Shortcut};

/// The answer to a head that did not arrive in time (RFC 9110 §15.5.9); the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How much one idle wait reads: Pingora's first read of a head asks for as much.
const FIRST_READ: usize = 4096;

/// A client connection with a deadline for the request head currently being read.
///
/// Reads fail with `TimedOut` once the deadline has passed before the head's blank line was
/// read; from then on Pingora treats the connection as broken and shuts it down or drops it,
/// either of which sends the 408 first. The deadline is lifted at the end of the head (and by any write, which means an
/// answer is under way), so request bodies and upgraded connections are never cut by it.
pub struct ConnStream {
    inner: Stream,
    /// The first bytes of the next request, read while the connection waited idle, and how
    /// many of them have been handed on (empty, with no allocation, between requests).
    replay: Vec<u8>,
    replayed: usize,
    /// Set while a request head is being read.
    deadline: Option<Instant>,
    /// The deadline's timer, made the first time a head read has to wait, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    head: HeadEnd,
    /// The deadline passed while part of a head had been read.
    timed_out: bool,
    /// What is left to send of the 408 (only what the socket takes at once: a client that
    /// does not read is not waited for).
    answer: &'static [u8],
    /// Written bytes not yet given to the socket (a response head waiting for its body).
    out: Outbox,
    /// The next flush leaves what is held for the write after it (see
    /// [`ConnStream::hold_head_for_body`]). Atomic only because the proxy reaches the stream
    /// through a shared reference.
    hold_flush: AtomicBool,
    counters: Arc<ConnCounters>,
}

impl ConnStream {
    pub fn new(inner: Stream, counters: Arc<ConnCounters>) -> ConnStream {
        ConnStream {
            inner,
            replay: Vec::new(),
            replayed: 0,
            deadline: None,
            timer: None,
            head: HeadEnd::default(),
            timed_out: false,
            answer: &[],
            out: Outbox::default(),
            hold_flush: AtomicBool::new(false),
            counters,
        }
    }

    /// Starts timing a request head: it must be complete by `at`.
    pub fn arm(&mut self, at: Instant) {
        *self.hold_flush.get_mut() = false;
        self.head = HeadEnd::default();
        self.deadline = Some(at);
    }

    /// Keeps the response head about to be written for the first body write, through the
    /// flush Pingora makes after a head without `Content-Length` (a rewritten page): the head
    /// then leaves in the body's `writev` instead of a send of its own. Only for a body that
    /// follows at once; the head waits for its first bytes.
    pub fn hold_head_for_body(&self) {
        self.hold_flush.store(true, Ordering::Relaxed);
    }

    /// Waits until the next request's first bytes arrive: `Ok(false)` when the client closed
    /// the connection instead. What arrived is kept and read again first. Cancel-safe:
    /// dropping the future before it finishes loses nothing.
    pub async fn wait_for_request(&mut self) -> io::Result<bool> {
        if self.replayed < self.replay.len() {
            return Ok(true);
        }
        std::future::poll_fn(|cx| {
            // On the stack of one poll only: an idle connection's future holds no buffer.
            let mut first = [0u8; FIRST_READ];
            let mut buf = ReadBuf::new(&mut first);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(false));
            }
            self.replay = buf.filled().to_vec();
            self.replayed = 0;
            Poll::Ready(Ok(true))
        })
        .await
    }

    /// Whether the bytes held from the idle wait start with a request line whose method and
    /// path `shortcut` claims (no more than the request line is looked at).
    pub fn claimed_by(&self, shortcut: &dyn Shortcut) -> bool {
        shortcut::method_and_path(&self.replay[self.replayed..])
            .is_some_and(|(method, path)| shortcut.claims(method, path))
    }

    /// Answers the request held from the idle wait with `shortcut`, if it is one whole request
    /// with plain framing that the shortcut takes: `Ok(None)` when it is left to Pingora
    /// (nothing was consumed or written), `Ok(Some(close))` once answered, `close` telling
    /// that the connection must close now.
    pub async fn answer_with(&mut self, shortcut: &dyn Shortcut) -> io::Result<Option<bool>> {
        let peer = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let tls = self.inner.get_ssl_digest().is_some();
        let (answer, close) = {
            let mut headers = [httparse::EMPTY_HEADER; shortcut::MAX_HEADERS];
            let pending = &self.replay[self.replayed..];
            let Some(req) = shortcut::parse(pending, &mut headers, peer, tls) else {
                return Ok(None);
            };
            let Some(answer) = shortcut.answer(&req).await else {
                return Ok(None);
            };
            (answer, req.close)
        };
        self.replay = Vec::new();
        self.replayed = 0;
        // Counted before it leaves: a client that reads `/metrics` after the answer sees it.
        self.counters.answered_early();
        self.inner.write_all(&answer).await?;
        self.inner.flush().await?;
        Ok(Some(close))
    }

    /// Hands on as much of the replayed bytes as `buf` takes.
    fn replay_into(&mut self, buf: &mut ReadBuf<'_>) {
        let rest = &self.replay[self.replayed..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.replayed += n;
        if self.replayed == self.replay.len() {
            self.replay = Vec::new();
            self.replayed = 0;
        }
    }

    /// Whether the head deadline has passed; when the read has to wait, the timer is set to
    /// wake this task at the deadline.
    fn deadline_passed(&mut self, cx: Option<&mut Context<'_>>) -> bool {
        let Some(at) = self.deadline else {
            return false;
        };
        let Some(cx) = cx else {
            return Instant::now() >= at;
        };
        let timer = match self.timer.as_mut() {
            Some(timer) => {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        timer.as_mut().poll(cx).is_ready()
    }

    fn expire(&mut self) -> io::Error {
        self.deadline = None;
        self.timer = None;
        self.timed_out = true;
        self.answer = REQUEST_TIMEOUT;
        self.counters.header_timeout();
        io::Error::new(io::ErrorKind::TimedOut, "request header deadline passed")
    }

    /// Writes as much of the pending 408 as the socket takes now; the rest is dropped.
    fn send_answer(&mut self, cx: &mut Context<'_>) {
        while !self.answer.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, self.answer) {
                Poll::Ready(Ok(n)) if n > 0 => self.answer = &self.answer[n..],
                _ => self.answer = &[],
            }
        }
    }
}

impl fmt::Debug for ConnStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnStream")
            .field("inner", &self.inner)
            .field("head_deadline", &self.deadline)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::TimedOut)));
        }
        let start = buf.filled().len();
        if this.replayed < this.replay.len() {
            // Bytes that arrived before the deadline was set count as in time.
            this.replay_into(buf);
        } else {
            if this.deadline_passed(None) {
                return Poll::Ready(Err(this.expire()));
            }
            let read = Pin::new(&mut this.inner).poll_read(cx, buf);
            if read.is_pending() && this.deadline_passed(Some(cx)) {
                return Poll::Ready(Err(this.expire()));
            }
            ready!(read)?;
        }
        if this.deadline.is_some() && this.head.feed(&buf.filled()[start..]).is_some() {
            this.deadline = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // An answer is being written, so the head was complete (whatever the scanner saw).
        this.deadline = None;
        this.out
            .poll_write(&mut this.inner, cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.deadline = None;
        this.out.poll_write(&mut this.inner, cx, bufs)
    }

    /// Slices are taken together with the held bytes, whatever the socket under does.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(this.hold_flush.get_mut()) && !this.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(this.out.poll_send(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Pingora shuts a session's stream down after a failed head read: when the deadline was
    /// the cause, the client learns why before the connection closes (the inner stream's
    /// shutdown flushes it).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_send(&mut this.inner, cx))?;
        this.send_answer(cx);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for ConnStream {
    /// Apps that drop the stream after a failed read instead of shutting it down (the admin
    /// listener) send the 408 too: the plain TCP stream flushes what it buffered when dropped.
    fn drop(&mut self) {
        let cx = &mut Context::from_waker(Waker::noop());
        // Whatever was written and not flushed, as the socket's own buffer would send it.
        let _ = self.out.poll_send(&mut self.inner, cx);
        self.send_answer(cx);
    }
}

#[async_trait]
impl Shutdown for ConnStream {
    /// As Pingora's own streams do: the `AsyncWrite` shutdown, errors ignored.
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(self).await;
    }
}

impl UniqueID for ConnStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ConnStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ConnStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ConnStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ConnStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Peeking is not offered (the default): a replayed byte would be missed by the inner stream's
/// peek, and HTTP/1 sessions never peek.
impl Peek for ConnStream {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::outbox::HOLD;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A `ConnStream` over a real loopback connection, and the client's end.
    async fn pair() -> (ConnStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let inner: Stream = Box::new(L4Stream::from(server));
        (ConnStream::new(inner, Arc::default()), client)
    }

    #[tokio::test]
    async fn what_ended_the_wait_is_read_first_in_order_then_the_socket() {
        let (mut conn, mut client) = pair().await;
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(head).await.unwrap();
        assert!(conn.wait_for_request().await.unwrap());
        // Waiting again before reading does not read (or lose) anything.
        assert!(conn.wait_for_request().await.unwrap());
        conn.arm(Instant::now() + Duration::from_secs(30));
        let mut got = Vec::new();
        let mut small = [0u8; 5];
        while got.len() < head.len() {
            let n = conn.read(&mut small).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, head);
        assert!(
            conn.replay.capacity() == 0,
            "the replay buffer is freed once handed on"
        );
        client.write_all(b"body").await.unwrap();
        let n = conn.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"body");
    }

    #[tokio::test]
    async fn a_closed_connection_ends_the_wait_with_false() {
        let (mut conn, client) = pair().await;
        drop(client);
        assert!(!conn.wait_for_request().await.unwrap());
    }

    #[tokio::test]
    async fn bytes_already_there_count_as_in_time_and_a_wait_past_the_deadline_fails() {
        let (mut conn, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(conn.wait_for_request().await.unwrap());
        conn.arm(Instant::now() + Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(80)).await;
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        // The rest of the head never comes: the read that waits for it fails at once.
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            conn.counters
                .header_timeouts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn a_head_read_that_waits_is_woken_at_the_deadline() {
        let (mut conn, mut client) = pair().await;
        client.write_all(b"G").await.unwrap();
        assert!(conn.wait_for_request().await.unwrap());
        conn.arm(Instant::now() + Duration::from_millis(100));
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
        let started = Instant::now();
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        // The client is told why.
        drop(conn);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, REQUEST_TIMEOUT);
    }

    /// Reads exactly `n` bytes from the client's end.
    async fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_flushed_head_is_sent_unless_held_for_its_body() {
        let (mut conn, mut client) = pair().await;
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        conn.write_all(head).await.unwrap();
        assert!(!conn.out.is_empty(), "a small write waits");
        conn.flush().await.unwrap();
        assert!(conn.out.is_empty(), "and a flush sends it");
        assert_eq!(read_n(&mut client, head.len()).await, head);

        // Held: the flush after the head leaves it for the body's write.
        conn.hold_head_for_body();
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        conn.write_all(head).await.unwrap();
        conn.flush().await.unwrap();
        assert!(
            !conn.out.is_empty(),
            "the held head waits through one flush"
        );
        let body = vec![b'b'; 3 * HOLD];
        conn.write_all(&body).await.unwrap();
        assert!(conn.out.is_empty(), "and leaves with the body");
        conn.flush().await.unwrap();
        let got = read_n(&mut client, head.len() + body.len()).await;
        assert_eq!(got, [&head[..], &body].concat());
    }

    #[tokio::test]
    async fn a_hold_lasts_one_flush_and_not_past_the_next_request() {
        let (mut conn, mut client) = pair().await;
        conn.hold_head_for_body();
        conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        conn.flush().await.unwrap();
        assert!(conn.out.is_empty(), "the second flush sends");
        read_n(&mut client, 27).await;

        conn.hold_head_for_body();
        conn.arm(Instant::now() + Duration::from_secs(30));
        conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        assert!(conn.out.is_empty(), "a new request starts without the hold");
        read_n(&mut client, 27).await;
    }
}
