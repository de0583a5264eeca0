//! Clients that misbehave, against the real binary: headers that stop (408) or trickle in a
//! byte at a time (cut off at `timeouts.request_header`, on the first request and on a later
//! one of a kept-alive connection, while a slow body is not), idle keep-alive connections
//! (closed after `timeouts.keepalive`), clients that leave in the middle of a streamed page
//! (the process's descriptors and memory, read from `/proc`, return to their baseline), and
//! 10,000 connections held open at once.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::{Binary, BINARY_ADMIN_TOKEN};
use common::tls::{self, TestCa};
use common::{Origin, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `cond` every 50 ms for up to `limit`; the proxy closes sockets on its own schedule.
fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One complete `GET path` with `Connection: close`; the status and body.
fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let r = common::request(addr, "GET", path, &[]);
    (r.status, r.body)
}

/// Client limits of the proxies in these tests: short, so that each test takes seconds.
const LIMITS: &str = "timeouts:\n  request_header: 2\n  keepalive: 3\n";
const HEADER_DEADLINE: Duration = Duration::from_secs(2);
const KEEPALIVE: Duration = Duration::from_secs(3);

/// A request head that takes over a minute at one byte a second.
const SLOW_HEAD: &[u8] =
    b"GET /_sm/sm.js HTTP/1.1\r\nHost: test.example\r\nX-Slow: 0123456789abcdef\r\n\r\n";

/// A complete request for the tracker script (a `Content-Length` answer), kept alive.
const TRACKER: &[u8] = b"GET /_sm/sm.js HTTP/1.1\r\nHost: test.example\r\n\r\n";

/// What a slow client saw.
struct Trickled {
    /// Bytes of the head sent before the proxy closed the connection.
    sent: usize,
    /// Bytes the proxy sent back.
    answer: Vec<u8>,
    /// From the first byte sent to the close being seen.
    open_for: Duration,
}

/// Sends `head` one byte a second (each second spent waiting for an answer) until the proxy
/// closes the connection or the head is complete. `started`: when the proxy's deadline can have
/// started at the earliest (before `connect` for a first request: the proxy may accept the
/// connection before `connect` returns to the client).
fn trickle(s: &mut TcpStream, head: &[u8], started: Instant) -> Trickled {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let done = |sent, answer| Trickled {
        sent,
        answer,
        open_for: started.elapsed(),
    };
    for (i, byte) in head.iter().enumerate() {
        if s.write_all(&[*byte]).is_err() {
            return done(i, answer);
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) => return done(i + 1, answer),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => return done(i + 1, answer),
            }
        }
    }
    done(head.len(), answer)
}

/// The proxy cut the slow head off, no earlier than the deadline, with a 408 or nothing.
fn assert_cut_off(what: &str, t: &Trickled) {
    assert!(
        t.sent < SLOW_HEAD.len(),
        "{what}: the whole head was trickled in {:?} and the connection is still open",
        t.open_for
    );
    assert!(
        t.open_for >= HEADER_DEADLINE,
        "{what}: closed after {:?}, before the {HEADER_DEADLINE:?} deadline",
        t.open_for
    );
    let answer = String::from_utf8_lossy(&t.answer);
    assert!(
        t.answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
        "{what}: unexpected answer {answer}"
    );
}

/// `smproxy_client_connections_closed_total{limit="LIMIT"}` from the admin listener.
fn closed_by(p: &Binary, limit: &str) -> u64 {
    let bearer = format!("Bearer {BINARY_ADMIN_TOKEN}");
    let r = common::request(&p.admin, "GET", "/metrics", &[("Authorization", &bearer)]);
    let text = r.text();
    let line = format!("smproxy_client_connections_closed_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in /metrics:\n{text}"))
}

#[test]
fn a_head_that_stops_gets_408_and_does_not_block_others() {
    let p = Binary::start(LIMITS);
    // Half a request, then silence.
    let mut slow = TcpStream::connect(&p.listen).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: test.example\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Many such connections do not keep anyone else out.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(&p.listen).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: te").unwrap();
            s
        })
        .collect();
    let (status, body) = get(&p.listen, "/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("_smid"));
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "unfinished headers were answered with {answer:?}"
    );
    assert!(answer.contains("Connection: close"), "{answer}");
    drop(idle);
    assert_eq!(get(&p.listen, "/").0, 200);
}

#[test]
fn a_trickled_head_is_cut_off_at_the_deadline_while_others_are_served() {
    let p = Binary::start(LIMITS);
    // One byte a second, on the public and on the admin listener.
    let slow: Vec<_> = [p.listen.clone(), p.admin.clone()]
        .into_iter()
        .map(|addr| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut s = TcpStream::connect(&addr).unwrap();
                trickle(&mut s, SLOW_HEAD, started)
            })
        })
        .collect();
    // Meanwhile other clients are served, on new connections and on a kept-alive one.
    let mut kept = TcpStream::connect(&p.listen).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut served = 0;
    while slow.iter().any(|t| !t.is_finished()) {
        let (status, body) = get(&p.listen, "/");
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("_smid"));
        kept.write_all(TRACKER).unwrap();
        assert_eq!(read_one_response(&mut kept), Ok(200));
        served += 1;
    }
    assert!(served > 0);
    for (t, what) in slow.into_iter().zip(["public listener", "admin listener"]) {
        assert_cut_off(what, &t.join().unwrap());
    }
    assert!(closed_by(&p, "request_header") >= 2);
}

#[test]
fn a_trickled_second_request_on_a_keep_alive_connection_is_cut_off() {
    let p = Binary::start(LIMITS);
    let mut s = TcpStream::connect(&p.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(TRACKER).unwrap();
    assert_eq!(read_one_response(&mut s), Ok(200));
    // Idle for half the keep-alive timeout: the next head's deadline starts at its first
    // byte, not when the connection became idle.
    std::thread::sleep(KEEPALIVE / 2);
    // This head's deadline starts when its first byte arrives.
    let t = trickle(&mut s, SLOW_HEAD, Instant::now());
    assert_cut_off("second request", &t);
}

/// An origin that reads a request's `Content-Length` body and answers `got N bytes: BODY`.
fn body_echo_origin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let text = format!("got {length} bytes: {}", String::from_utf8_lossy(&body));
                let mut w = conn;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    addr
}

#[test]
fn a_slow_request_body_is_not_cut_by_the_header_deadline() {
    let upstream = body_echo_origin();
    let p = Binary::start_with(&upstream, None, LIMITS);
    let mut s = TcpStream::connect(&p.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = b"abcdef";
    s.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: test.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // One byte a second: the body takes three times the header deadline.
    for byte in body {
        std::thread::sleep(Duration::from_secs(1));
        s.write_all(&[*byte]).unwrap();
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("got 6 bytes: abcdef"), "{answer}");
}

/// Reads until the proxy closes the connection; what it sent and how long since `from`.
fn wait_for_close(s: &mut TcpStream, from: Instant) -> (Vec<u8>, Duration) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e}"),
    }
    (got, from.elapsed())
}

#[test]
fn idle_connections_are_closed_after_the_keep_alive_timeout() {
    let p = Binary::start(LIMITS);
    let mut s = TcpStream::connect(&p.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Requests within the timeout of each other keep the connection.
    let mut last_sent = Instant::now();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(KEEPALIVE / 3);
        }
        // The proxy's idle clock starts once it has answered, which is after this.
        last_sent = Instant::now();
        s.write_all(TRACKER).unwrap();
        assert_eq!(read_one_response(&mut s), Ok(200), "request {i}");
    }
    // Then, idle, it is closed without a word once the timeout has passed.
    let (got, idle) = wait_for_close(&mut s, last_sent);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(idle >= KEEPALIVE, "closed {idle:?} after the last request");

    // A connection that never sends anything is closed at the header deadline (which the
    // proxy may start before `connect` returns here, never before it is called).
    let connecting = Instant::now();
    let mut silent = TcpStream::connect(&p.listen).unwrap();
    let (got, open) = wait_for_close(&mut silent, connecting);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(open >= HEADER_DEADLINE, "closed after {open:?}");
    assert_eq!(closed_by(&p, "keepalive"), 1);
    assert_eq!(closed_by(&p, "request_header"), 1);
}

#[test]
fn a_trickled_head_over_tls_is_cut_off_and_http2_is_unaffected() {
    let dir = common::TempDir::new("tls-slow");
    let ca = TestCa::new();
    let cert = ca.issue(&dir.0, "a", &["a.example"]);
    let origin = Origin::respond(|_| common::html_response(b"<html><head></head></html>"));
    let https = common::free_addr();
    let sites = format!(
        "sites:\n  - name: a\n    hosts: [\"a.example\"]\n    upstream: \"{}\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n",
        origin.addr,
        cert.cert_path.display(),
        cert.key_path.display()
    );
    let _proxy = Proxy::start_with_sites(&sites, &format!("listen_tls: \"{https}\"\n{LIMITS}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&https).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTPS listener never accepted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let ca = ca.der();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // HTTP/1.1 over TLS, one byte a second. The clock starts before the handshake: the
        // proxy may finish it (and start the deadline) before `connect` returns here.
        let started = Instant::now();
        let mut s = tls::connect(&https, "a.example", &ca, &[b"http/1.1"])
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut sent = 0;
        let mut buf = [0u8; 1024];
        'trickle: for byte in SLOW_HEAD {
            if s.write_all(&[*byte]).await.is_err() || s.flush().await.is_err() {
                break;
            }
            sent += 1;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Err(_) => break,
                    Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                    Ok(_) => break 'trickle,
                }
            }
        }
        assert_cut_off(
            "HTTPS",
            &Trickled {
                sent,
                answer,
                open_for: started.elapsed(),
            },
        );

        // HTTP/2 on the same listener is Pingora's own handling, untouched.
        let s = tls::connect(&https, "a.example", &ca, &[b"h2"])
            .await
            .unwrap();
        let (status, _, body) = tls::get_h2(s, "a.example", "/").await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("_smid"));
    });
}

/// An origin that streams an HTML page of `Connection: close` chunks without end (a slow,
/// large page), so the client can leave mid-stream.
fn streaming_origin() -> Origin {
    Origin::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        let head = b"<html><head><title>stream</title></head><body>";
        let _ = write!(s, "{:X}\r\n", head.len());
        let _ = s.write_all(head);
        let _ = s.write_all(b"\r\n");
        let line = [b'y'; 16 * 1024];
        loop {
            let frame = format!("{:X}\r\n", line.len());
            if s.write_all(frame.as_bytes()).is_err()
                || s.write_all(&line).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
    })
}

/// Starts `GET /` through the proxy, reads `bytes` of the streamed answer and leaves.
fn read_part_and_leave(addr: &str, bytes: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test.example\r\n\r\n")
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    while got < bytes {
        let n = s.read(&mut buf).expect("the page streams");
        assert!(n > 0, "the stream ended early");
        got += n;
    }
    // Dropped here: the client is gone mid-stream.
}

#[test]
fn clients_leaving_mid_stream_leak_no_connection_or_memory() {
    let origin = streaming_origin();
    let upstream = origin.addr.to_string();
    let p = Binary::start_with(&upstream, Some(origin), "");
    // Warm up (thread pools, buffers, the SQLite connection), then take the baseline.
    for _ in 0..20 {
        read_part_and_leave(&p.listen, 256 * 1024);
    }
    let fds_idle = |p: &Binary| p.open_fds();
    let mut baseline_fds = 0;
    eventually(
        "warm-up connections closed",
        Duration::from_secs(30),
        || {
            let a = fds_idle(&p);
            std::thread::sleep(Duration::from_millis(200));
            baseline_fds = fds_idle(&p);
            a == baseline_fds
        },
    );
    let baseline_rss = p.rss_kib();

    let rounds = 300;
    for _ in 0..rounds {
        read_part_and_leave(&p.listen, 256 * 1024);
    }
    // Every client and origin socket of those requests is closed again...
    eventually(
        "descriptors back to the baseline",
        Duration::from_secs(30),
        || p.open_fds() <= baseline_fds,
    );
    // ...and memory is back near where it was: 300 abandoned streams of 256 KiB each did
    // not stay behind (a leak of one 16 KiB buffer each would already be 4.7 MiB).
    let rss = p.rss_kib();
    println!(
        "fds {baseline_fds} -> {}, rss {baseline_rss} KiB -> {rss} KiB after {rounds} abandoned streams",
        p.open_fds()
    );
    assert!(
        rss < baseline_rss + 4 * 1024,
        "RSS grew from {baseline_rss} KiB to {rss} KiB"
    );
    assert_eq!(get(&p.listen, "/_sm/sm.js").0, 200);
}

/// Raises this process's open-file limit to its hard limit, or to `needed` if that is higher
/// (the proxy started after inherits it). `prlimit` from util-linux,
/// because the crate forbids `unsafe` and std has no setrlimit.
fn raise_nofile(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX); // "unlimited"
                              // Raising the hard limit too needs root (CAP_SYS_RESOURCE), as in CI.
    let target = hard.clamp(needed, 1 << 20);
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{target}"))
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "cannot raise RLIMIT_NOFILE to {target} (the hard limit is {hard}; raising it needs root): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[test]
fn ten_thousand_connections_are_held_and_served() {
    const N: usize = 10_000;
    // The test and the proxy are two processes, each holding one end of every connection.
    raise_nofile(N as u64 + 1_000);
    // Every connection is opened before the first request is sent: on a loaded machine that
    // can take longer than the default header deadline, which would rightly close them.
    let p = Binary::start("timeouts:\n  request_header: 600\n");
    let request = b"GET /_sm/sm.js HTTP/1.1\r\nHost: test.example\r\n\r\n";
    let mut conns: Vec<TcpStream> = Vec::with_capacity(N);
    for i in 0..N {
        let s = TcpStream::connect(&p.listen)
            .unwrap_or_else(|e| panic!("connection {i} of {N} refused: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        conns.push(s);
    }
    // Every connection is open at once; each asks twice, so the second answer proves the
    // proxy kept the connection (keep-alive) rather than serving and dropping it.
    for round in 0..2 {
        for s in &mut conns {
            s.write_all(request).unwrap();
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let status = read_one_response(s)
                .unwrap_or_else(|e| panic!("round {round}, connection {i}: {e}"));
            assert_eq!(status, 200, "round {round}, connection {i}");
        }
    }
    assert!(p.open_fds() >= N, "the proxy holds every connection");
    println!("{N} connections held, proxy RSS {} KiB", p.rss_kib());
}

/// Reads one response with a `Content-Length` body; its status.
fn read_one_response(s: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err("closed before the headers ended".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("no status")?;
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or("no content-length")?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(status)
}
