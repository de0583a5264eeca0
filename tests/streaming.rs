//! Streaming: the client sees the first bytes while the origin is still sending, and a 100 MB
//! page goes through in flat memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:X}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn open(proxy: &Proxy, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(&proxy.addr).unwrap();
    // A failure guard only: the test waits for data, never for time.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

#[test]
fn first_bytes_reach_the_client_before_the_origin_finishes() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let origin = Origin::start(move |_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&chunk(
            b"<html><head><title>slow</title></head><body><p id=\"first\">first</p>",
        ));
        let _ = s.flush();
        // The rest only comes once the client has seen the first part.
        let _ = release_rx.lock().unwrap().recv();
        let _ = s.write_all(&chunk(b"<p>rest</p></body></html>"));
        let _ = s.write_all(b"0\r\n\r\n");
    });
    let proxy = Proxy::start(&origin.addr, "");
    let mut s = open(&proxy, "/");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first</p>") {
        let n = s
            .read(&mut buf)
            .expect("first bytes must arrive while the origin is still sending");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let so_far = String::from_utf8_lossy(&got).into_owned();
    assert!(
        so_far.contains(&snippet()),
        "the snippet went out with the first part"
    );
    assert!(!so_far.contains("rest"));
    release_tx.send(()).unwrap();
    s.read_to_end(&mut got).unwrap();
    let r = parse_response(&got, false);
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("<p>rest</p></body></html>"));
    assert_eq!(r.text().matches("var _smid").count(), 1);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_100_mb_page_streams_in_flat_memory() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let origin = Origin::start(|_req, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&chunk(b"<html><head><title>big</title></head><body>"));
        let para = b"<p>The quick brown fox jumps over the lazy dog, again and again.</p>\n";
        let block: Vec<u8> = para.iter().copied().cycle().take(64 * 1024).collect();
        let mut sent = 0;
        while sent < TOTAL {
            if s.write_all(&chunk(&block)).is_err() {
                return;
            }
            sent += block.len();
        }
        let _ = s.write_all(&chunk(b"</body></html>"));
        let _ = s.write_all(b"0\r\n\r\n");
    });
    let proxy = Proxy::start(&origin.addr, "");
    // Warm up allocator pools and the connection machinery before taking the baseline.
    let _ = proxy.get("/warm-up");
    let baseline = rss_kib();
    let mut s = open(&proxy, "/big");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut peak = baseline;
    let mut snippets = 0;
    let needle = b"var _smid";
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        carry.extend_from_slice(&buf[..n]);
        snippets += memchr::memmem::find_iter(&carry, needle).count();
        let keep = carry.len().min(needle.len() - 1);
        carry.drain(..carry.len() - keep);
        if total % (8 << 20) < n {
            peak = peak.max(rss_kib());
        }
    }
    peak = peak.max(rss_kib());
    assert!(total > TOTAL, "the whole page arrived ({total} bytes)");
    assert_eq!(snippets, 1);
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    eprintln!(
        "RSS baseline {} MiB, peak {} MiB while streaming 100 MiB",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 48,
        "memory grew by {growth_mib} MiB while streaming a 100 MiB page"
    );
}
