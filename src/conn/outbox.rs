//! Small writes to a client held back so that they leave with what follows them.
//!
//! Pingora writes a response head on its own and then the body. Its socket buffer holds one
//! segment (1,460 bytes), so a head followed by a body larger than that went out as two system
//! calls and two segments, the head's alone; every response paid for a second send (and, on
//! loopback, the receiving side's processing of a second segment). Held here instead, the head
//! leaves in the same `writev` as the body, or at the next flush if no body follows.
//!
//! Nothing waits longer than it did before: Pingora flushes after every body write and after a
//! head that has no body, and it never relied on a write reaching the socket unflushed (the
//! socket buffer held small writes until a flush as well).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// Writes that together stay within this many bytes are held.
pub const HOLD: usize = 4096;

/// At most this many slices go to one `writev`: the held bytes and the first of a write's
/// (a chunk of a chunked body is three: size line, data, CRLF).
const SLICES: usize = 8;

/// The bytes accepted from the writer and not yet given to the socket.
#[derive(Debug, Default)]
pub struct Outbox {
    held: Vec<u8>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Writes `bufs` to `inner`, after what is held; returns how many bytes of `bufs` were
    /// taken (held or sent), as `AsyncWrite::poll_write_vectored` does.
    pub fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.held.len() + total <= HOLD {
            for b in bufs {
                self.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        while !self.held.is_empty() {
            let held = self.held.len();
            let mut slices = [IoSlice::new(&[]); SLICES];
            slices[0] = IoSlice::new(&self.held);
            let n = 1 + bufs.len().min(SLICES - 1);
            slices[1..n].copy_from_slice(&bufs[..n - 1]);
            let sent = ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &slices[..n]))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if sent < held {
                self.held.drain(..sent);
                continue;
            }
            self.held.clear();
            if sent > held {
                return Poll::Ready(Ok(sent - held));
            }
        }
        Pin::new(inner).poll_write_vectored(cx, bufs)
    }

    /// Gives everything held to `inner` (which may buffer it until its own flush).
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let sent = ready!(Pin::new(&mut *inner).poll_write(cx, &self.held))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..sent);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A writer that records what each call was given, taking at most `limit` bytes per call
    /// (a socket whose buffer is nearly full), or nothing while `blocked`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
        limit: Option<usize>,
        blocked: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.blocked {
                return Poll::Pending;
            }
            let mut call: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            call.truncate(this.limit.unwrap_or(usize::MAX));
            let n = call.len();
            this.calls.push(call);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// Writes all of `bufs` the way `write_all_buf` would; returns what the writer got.
    fn write_all(out: &mut Outbox, w: &mut Recorder, mut data: Vec<Vec<u8>>) {
        while data.iter().any(|d| !d.is_empty()) {
            let slices: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
            let Poll::Ready(n) = out.poll_write(w, &mut cx(), &slices) else {
                panic!("the writer is not blocked");
            };
            let mut n = n.expect("write");
            assert!(n > 0);
            for d in data.iter_mut() {
                let k = n.min(d.len());
                d.drain(..k);
                n -= k;
            }
        }
    }

    #[test]
    fn a_head_leaves_with_the_body_that_follows_in_one_call() {
        let (mut out, mut w) = (Outbox::default(), Recorder::default());
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let body = vec![b'x'; 10_000];
        write_all(&mut out, &mut w, vec![head.clone()]);
        assert!(w.calls.is_empty(), "the head waits");
        write_all(
            &mut out,
            &mut w,
            vec![b"2710\r\n".to_vec(), body.clone(), b"\r\n".to_vec()],
        );
        assert_eq!(w.calls.len(), 1);
        assert_eq!(
            w.calls[0],
            [head, b"2710\r\n".to_vec(), body, b"\r\n".to_vec()].concat()
        );
        assert!(out.is_empty());
    }

    #[test]
    fn small_writes_wait_for_the_flush_and_keep_their_order() {
        let (mut out, mut w) = (Outbox::default(), Recorder::default());
        write_all(
            &mut out,
            &mut w,
            vec![b"HTTP/1.1 204 No Content\r\n".to_vec()],
        );
        write_all(&mut out, &mut w, vec![b"a: b\r\n\r\n".to_vec()]);
        assert!(w.calls.is_empty());
        assert!(out.poll_send(&mut w, &mut cx()).is_ready());
        assert_eq!(
            w.calls,
            [b"HTTP/1.1 204 No Content\r\na: b\r\n\r\n".to_vec()]
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_socket_that_takes_a_few_bytes_at_a_time_gets_every_byte_once_in_order() {
        for limit in [1, 3, 7, 19, 64, 4095, 4097] {
            let (mut out, mut w) = (Outbox::default(), Recorder::default());
            w.limit = Some(limit);
            let head: Vec<u8> = (0..100u8).collect();
            let body: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
            write_all(&mut out, &mut w, vec![head.clone()]);
            write_all(
                &mut out,
                &mut w,
                vec![body[..10].to_vec(), body[10..].to_vec()],
            );
            write_all(&mut out, &mut w, vec![b"end".to_vec()]);
            assert!(out.poll_send(&mut w, &mut cx()).is_ready());
            assert_eq!(
                w.calls.concat(),
                [head, body, b"end".to_vec()].concat(),
                "{limit}"
            );
        }
    }

    #[test]
    fn a_blocked_socket_keeps_the_held_bytes_for_the_next_try() {
        let (mut out, mut w) = (Outbox::default(), Recorder::default());
        write_all(&mut out, &mut w, vec![b"head".to_vec()]);
        w.blocked = true;
        let body = vec![b'y'; HOLD];
        assert!(out
            .poll_write(&mut w, &mut cx(), &[IoSlice::new(&body)])
            .is_pending());
        assert!(out.poll_send(&mut w, &mut cx()).is_pending());
        w.blocked = false;
        write_all(&mut out, &mut w, vec![body.clone()]);
        assert_eq!(w.calls, [[b"head".to_vec(), body].concat()]);
    }
}
