//! Origins that misbehave, as real TCP servers on loopback ports: refused connections, resets
//! before and during the body, stalls, a body that never ends, bytes that are not HTTP. Each
//! gets its expected answer, and the same proxy keeps serving a healthy site right after.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use common::{assert_injected_once, free_addr, html_response, request, snippet, Origin, Proxy};

const PAGE: &[u8] = b"<!doctype html><html><head><title>ok</title></head><body>fine</body></html>";

/// A proxy with the faulty origin under `bad.example` and a healthy one under `good.example`,
/// and `timeouts.read` of half a second so stalls end quickly.
struct Rig {
    proxy: Proxy,
    _good: Origin,
}

impl Rig {
    fn new(bad_upstream: &str) -> Rig {
        let good = Origin::respond(|_| html_response(PAGE));
        let sites = format!(
            "sites:\n  - name: bad\n    hosts: [\"bad.example\"]\n    upstream: \"{bad_upstream}\"\n  \
- name: good\n    hosts: [\"good.example\"]\n    upstream: \"{}\"\n",
            good.addr
        );
        let proxy = Proxy::start_with_sites(&sites, "timeouts:\n  read: 0.5\n  connect: 1\n");
        Rig { proxy, _good: good }
    }

    fn get_bad(&self) -> common::Resp {
        request(&self.proxy.addr, "GET", "/", &[("Host", "bad.example")])
    }

    /// The raw bytes a client receives for `GET /` on the faulty site, read until the proxy
    /// closes the connection (a 30 s read timeout turns a hang into a failure).
    fn raw_bad(&self) -> Vec<u8> {
        let mut s = TcpStream::connect(&self.proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: bad.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return raw,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return raw,
                Err(e) => panic!("the client's response hung or failed: {e}"),
            }
        }
    }

    /// The healthy site answers normally (the fault did not take the proxy down).
    fn assert_still_serving(&self) {
        let r = request(&self.proxy.addr, "GET", "/", &[("Host", "good.example")]);
        assert_eq!(r.status, 200);
        assert_injected_once(PAGE, &r.body, &snippet(), "healthy site after a fault");
    }

    fn upstream_errors(&self) -> u64 {
        let text = self.proxy.metrics_text();
        text.lines()
            .find(|l| l.starts_with("smproxy_upstream_errors_total{site=\"bad\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no upstream error counter for site bad:\n{text}"))
    }
}

/// Closes `s` with a TCP reset (SO_LINGER 0) instead of an orderly FIN.
fn reset(s: TcpStream) {
    let s = socket2::Socket::from(s);
    s.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    drop(s);
}

fn is_error_page(r: &common::Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(r.text().contains(&status.to_string()), "{}", r.text());
}

#[test]
fn connection_refused_is_502() {
    let rig = Rig::new(&free_addr());
    is_error_page(&rig.get_bad(), 502);
    rig.assert_still_serving();
    assert_eq!(rig.upstream_errors(), 1);
}

#[test]
fn reset_before_the_headers_is_502() {
    let origin = Origin::start(|_, s| reset(s.try_clone().unwrap()));
    let rig = Rig::new(&origin.addr.to_string());
    is_error_page(&rig.get_bad(), 502);
    rig.assert_still_serving();
    is_error_page(&rig.get_bad(), 502);
}

#[test]
fn reset_mid_body_ends_the_clients_response_as_broken() {
    // An HTML page (rewritten, so chunked to the client) and a binary file (Content-Length
    // passed through): both must end without their terminator, not hang, not look complete.
    for (ctype, path) in [
        ("text/html", "/page"),
        ("application/octet-stream", "/file"),
    ] {
        let origin = Origin::start(move |_, s| {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: 100000\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(b"<html><head><title>x</title></head><body>");
            let _ = s.write_all(&[b'a'; 20_000]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(50));
            reset(s.try_clone().unwrap());
        });
        let rig = Rig::new(&origin.addr.to_string());
        let raw = rig.raw_bad();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {:.200}", text);
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &raw[end..];
        if text.contains("Content-Length: 100000") || text.contains("content-length: 100000") {
            assert!(
                body.len() < 100_000,
                "{path}: a truncated body looks complete"
            );
        } else {
            assert!(
                text.to_ascii_lowercase()
                    .contains("transfer-encoding: chunked"),
                "{path}: {:.300}",
                text
            );
            assert!(
                !body.ends_with(b"0\r\n\r\n"),
                "{path}: a truncated chunked body was terminated as complete"
            );
        }
        rig.assert_still_serving();
    }
}

#[test]
fn headers_too_slow_is_504_after_the_read_timeout() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let origin = Origin::start(move |_, s| {
        // Half a status line, then nothing until the test ends.
        let _ = s.write_all(b"HTTP/1.1 200");
        let _ = rx.lock().unwrap().recv();
    });
    let rig = Rig::new(&origin.addr.to_string());
    is_error_page(&rig.get_bad(), 504);
    rig.assert_still_serving();
    assert_eq!(rig.upstream_errors(), 1);
    drop(tx);
}

#[test]
fn a_body_that_stalls_is_cut_off_after_the_read_timeout() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let origin = Origin::start(move |_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n\
1A\r\n<html><head></head><body>\r\n",
        );
        let _ = s.flush();
        let _ = rx.lock().unwrap().recv();
    });
    let rig = Rig::new(&origin.addr.to_string());
    // Returns (the proxy closed the connection) instead of hanging: the stall hit the read
    // timeout; the chunked body is left unterminated so the client knows it is incomplete.
    let raw = rig.raw_bad();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{:.200}", text);
    assert!(!raw.ends_with(b"0\r\n\r\n"), "{text}");
    rig.assert_still_serving();
    drop(tx);
}

#[test]
fn a_never_ending_body_streams_and_stops_when_the_client_leaves() {
    let (gone_tx, gone_rx) = mpsc::channel::<usize>();
    let gone_tx = Mutex::new(gone_tx);
    let origin = Origin::start(move |_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let head = b"<html><head><title>feed</title></head><body>";
        let _ = write!(s, "{:X}\r\n", head.len());
        let _ = s.write_all(head);
        let _ = s.write_all(b"\r\n");
        let line = [b'x'; 8192];
        let mut sent = 0usize;
        // Forever, until the proxy stops reading (the write fails).
        loop {
            let chunk = format!("{:X}\r\n", line.len());
            if s.write_all(chunk.as_bytes()).is_err()
                || s.write_all(&line).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                let _ = gone_tx.lock().unwrap().send(sent);
                return;
            }
            sent += line.len();
        }
    });
    let rig = Rig::new(&origin.addr.to_string());
    let mut s = TcpStream::connect(&rig.proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: bad.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while got.len() < 4 << 20 {
        let n = s.read(&mut buf).expect("the endless body keeps streaming");
        assert!(n > 0, "the proxy ended an endless body");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("_smid").count(), 1, "injected once, early");
    drop(s);
    // The proxy stops pulling from the origin once its client is gone: the origin's writes
    // fail (its socket buffers fill and the proxy closes the upstream connection).
    let sent = gone_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the proxy kept reading the endless body after the client left");
    assert!(sent >= 4 << 20);
    rig.assert_still_serving();
}

#[test]
fn an_invalid_response_is_502() {
    for garbage in [
        &b"this is not HTTP at all\r\n\r\n"[..],
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\nhello",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
    ] {
        let origin = Origin::respond(move |_| garbage.to_vec());
        let rig = Rig::new(&origin.addr.to_string());
        let r = rig.get_bad();
        assert_eq!(
            r.status,
            502,
            "{:?}: {}",
            String::from_utf8_lossy(garbage),
            r.text()
        );
        rig.assert_still_serving();
    }
}
