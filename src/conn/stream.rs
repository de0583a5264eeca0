//! One client connection's transport as Pingora's HTTP/1 session reads it: the total deadline
//! for the request head being read, and the byte that woke an idle connection, handed back
//! first.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::counters::ConnCounters;
use super::head_end::HeadEnd;

/// The answer to a head that did not arrive in time (RFC 9110 §15.5.9); the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A client connection with a deadline for the request head currently being read.
///
/// Reads fail with `TimedOut` once the deadline has passed before the head's blank line was
/// read; from then on Pingora treats the connection as broken and shuts it down or drops it,
/// either of which sends the 408 first. The deadline is lifted at the end of the head (and by any write, which means an
/// answer is under way), so request bodies and upgraded connections are never cut by it.
pub struct ConnStream {
    inner: Stream,
    /// The first byte of the next request, read while the connection waited idle.
    replay: Option<u8>,
    /// Set while a request head is being read.
    deadline: Option<Pin<Box<Sleep>>>,
    head: HeadEnd,
    /// The deadline passed while part of a head had been read.
    timed_out: bool,
    /// What is left to send of the 408 (only what the socket takes at once: a client that
    /// does not read is not waited for).
    answer: &'static [u8],
    counters: Arc<ConnCounters>,
}

impl ConnStream {
    pub fn new(inner: Stream, counters: Arc<ConnCounters>) -> ConnStream {
        ConnStream {
            inner,
            replay: None,
            deadline: None,
            head: HeadEnd::default(),
            timed_out: false,
            answer: &[],
            counters,
        }
    }

    /// Starts timing a request head: it must be complete by `at`.
    pub fn arm(&mut self, at: Instant) {
        self.head = HeadEnd::default();
        self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
    }

    /// Waits until the next request's first byte arrives: `Ok(false)` when the client closed
    /// the connection instead. The byte is kept and read again first. Cancel-safe: dropping
    /// the future before it finishes loses nothing.
    pub async fn wait_for_request(&mut self) -> io::Result<bool> {
        if self.replay.is_some() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        if self.inner.read(&mut byte).await? == 0 {
            return Ok(false);
        }
        self.replay = Some(byte[0]);
        Ok(true)
    }

    fn expire(&mut self) -> io::Error {
        self.deadline = None;
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
            .field(
                "head_deadline",
                &self.deadline.as_ref().map(|d| d.deadline()),
            )
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
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(this.expire()));
            }
        }
        let start = buf.filled().len();
        let replayed = match this.replay {
            Some(_) if buf.remaining() == 0 => return Poll::Ready(Ok(())),
            Some(byte) => {
                buf.put_slice(&[byte]);
                this.replay = None;
                true
            }
            None => false,
        };
        // Whatever else is already there comes along with the replayed byte, so the parser
        // does not run once per byte; if nothing is, the byte alone is the answer (a read
        // error comes back on the next read).
        let result = match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending | Poll::Ready(Err(_)) if replayed => Poll::Ready(Ok(())),
            other => other,
        };
        if this.deadline.is_some()
            && matches!(result, Poll::Ready(Ok(())))
            && this.head.feed(&buf.filled()[start..]).is_some()
        {
            this.deadline = None;
        }
        result
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
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.deadline = None;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Pingora shuts a session's stream down after a failed head read: when the deadline was
    /// the cause, the client learns why before the connection closes (the inner stream's
    /// shutdown flushes it).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.send_answer(cx);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for ConnStream {
    /// Apps that drop the stream after a failed read instead of shutting it down (the admin
    /// listener) send the 408 too: the plain TCP stream flushes what it buffered when dropped.
    fn drop(&mut self) {
        self.send_answer(&mut Context::from_waker(Waker::noop()));
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
