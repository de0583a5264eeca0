//! Beacons and the tracker answered before Pingora: byte for byte the answer Pingora's path
//! gives to the same request, the same events stored, and every request that is not plain
//! left to Pingora. Which path answered is read from `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{html_response, parse_response, Origin, Proxy};

const SITES: &str =
    "sites:\n  - name: shop\n    hosts: [\"test.example\"]\n    upstream: \"ORIGIN\"\n";

const PAGEVIEW: &str =
    r#"{"type":"pageview","url":"http://test.example/shoes","title":"Shoes","lang":"pl-PL"}"#;

fn start() -> (Proxy, Origin) {
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let sites = SITES.replace("ORIGIN", &origin.addr.to_string());
    (Proxy::start_with_sites(&sites, ""), origin)
}

fn answered_early(p: &Proxy) -> u64 {
    p.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("smproxy_requests_answered_early_total{} "))
        .expect("the counter is on /metrics")
        .parse()
        .unwrap()
}

/// A request's bytes, with `Connection: close`.
fn raw(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: test.example\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// Sends `request` in one write, or split at `split` with a pause between the parts (the
/// connection's first read then holds only part of it), and reads the answer to the end.
fn send(p: &Proxy, request: &[u8], split: Option<usize>) -> Vec<u8> {
    let mut s = TcpStream::connect(&p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    match split {
        None => s.write_all(request).unwrap(),
        Some(at) => {
            s.write_all(&request[..at]).unwrap();
            thread::sleep(Duration::from_millis(150));
            s.write_all(&request[at..]).unwrap();
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The answer with what depends on the second it was made blanked: the `date` value and
/// the sealed `smids` token (it carries its issue time).
fn normalized(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.lines()
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date: ") {
                "date: -".to_string()
            } else if let Some(rest) = l.strip_prefix("Set-Cookie: smids=") {
                let attributes = rest.split_once(';').map_or("", |(_, a)| a);
                format!("Set-Cookie: smids=-;{attributes}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `request` whole (answered early) and split (answered by Pingora): the answers must
/// be the same bytes (but for [`normalized`]'s blanks). Returns the early answer.
fn both_ways(p: &Proxy, request: &[u8], split: usize) -> Vec<u8> {
    let before = answered_early(p);
    let early = send(p, request, None);
    assert_eq!(answered_early(p), before + 1, "answered early");
    let late = send(p, request, Some(split));
    assert_eq!(answered_early(p), before + 1, "answered by Pingora");
    assert_eq!(normalized(&early), normalized(&late));
    early
}

fn cookie_pair(answer: &common::Resp, name: &str) -> String {
    let c = answer
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} set: {answer:?}"));
    c.split(';').next().unwrap().to_string()
}

#[test]
fn beacons_answered_early_are_the_bytes_pingora_sends() {
    let (p, _origin) = start();
    let base = [
        ("Origin", "http://test.example"),
        ("Content-Type", "text/plain;charset=UTF-8"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        ),
    ];
    // A first visit: new identifiers (random, so not compared), answered early.
    let before = answered_early(&p);
    let first = send(&p, &raw("POST", "/_sm/collect", &base, PAGEVIEW), None);
    assert_eq!(answered_early(&p), before + 1);
    let first = parse_response(&first, false);
    assert_eq!(first.status, 204);
    let cookies = format!(
        "{}; {}",
        cookie_pair(&first, "smuuid"),
        cookie_pair(&first, "smids")
    );

    // A returning visitor, whose answer is the same both ways.
    let mut headers = base.to_vec();
    headers.push(("Cookie", &cookies));
    let request = raw("POST", "/_sm/collect", &headers, PAGEVIEW);
    let split = request.len() - PAGEVIEW.len() / 2;
    let answer = parse_response(&both_ways(&p, &request, split), false);
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("cache-control"), Some("no-store"));

    // A refusal, with its body, and the pixel (a GET with the beacon in the query).
    let bad = raw("POST", "/_sm/collect", &headers, "{\"type\":");
    let refused = parse_response(&both_ways(&p, &bad, bad.len() - 3), false);
    assert_eq!(refused.status, 400);
    assert!(!refused.body.is_empty());
    let pixel = raw(
        "GET",
        "/_sm/collect?type=pageview&url=http%3A%2F%2Ftest.example%2Fpixel",
        &headers,
        "",
    );
    both_ways(&p, &pixel, 20);

    // Every accepted beacon was stored, whichever path took it: 1 + 2 + 2 (the pixel's
    // pair stores its page view like the POST's).
    p.flush();
    let stored: i64 = p
        .db()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 5);
}

#[test]
fn the_tracker_answered_early_is_the_bytes_pingora_sends() {
    let (p, _origin) = start();
    let gzip = raw("GET", "/_sm/sm.js", &[("Accept-Encoding", "gzip")], "");
    let answer = parse_response(&both_ways(&p, &gzip, 10), false);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    let etag = answer.header("etag").unwrap().to_string();
    both_ways(&p, &raw("GET", "/_sm/sm.js?v=1", &[], ""), 10);
    both_ways(&p, &raw("HEAD", "/_sm/sm.js", &[], ""), 10);
    let again = raw(
        "GET",
        "/_sm/sm.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
        "",
    );
    assert_eq!(
        parse_response(&both_ways(&p, &again, 10), false).status,
        304
    );
}

#[test]
fn requests_that_are_not_plain_are_left_to_pingora() {
    let (p, _origin) = start();
    let before = answered_early(&p);
    let chunked = format!(
        "POST /_sm/collect HTTP/1.1\r\nHost: test.example\r\nOrigin: http://test.example\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{PAGEVIEW}\r\n0\r\n\r\n",
        PAGEVIEW.len()
    );
    let cases: [(&[u8], u16); 4] = [
        (chunked.as_bytes(), 204),
        // No site for this Host: Pingora's 421, counted there.
        (
            b"GET /_sm/sm.js HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
            421,
        ),
        (
            b"GET /_sm/sm.js HTTP/1.0\r\nHost: test.example\r\n\r\n",
            200,
        ),
        // Not the collection's path or method.
        (&raw("PUT", "/_sm/collect", &[], ""), 405),
    ];
    for (request, status) in cases {
        let answer = parse_response(&send(&p, request, None), false);
        assert_eq!(
            answer.status,
            status,
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(answered_early(&p), before);
}

#[test]
fn a_connection_goes_on_after_an_early_answer() {
    let (p, _origin) = start();
    let before = answered_early(&p);
    let mut s = TcpStream::connect(&p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let beacon = format!(
        "POST /_sm/collect HTTP/1.1\r\nHost: test.example\r\nOrigin: http://test.example\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{PAGEVIEW}",
        PAGEVIEW.len()
    );
    for _ in 0..2 {
        s.write_all(beacon.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 204 "), "{head}");
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{head}");
    }
    assert_eq!(answered_early(&p), before + 2);
    // Then a page, through Pingora, on the same connection.
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let page = parse_response(&rest, false);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/_sm/sm.js"), "{}", page.text());
    assert_eq!(answered_early(&p), before + 2);
}
