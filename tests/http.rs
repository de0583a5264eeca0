//! HTTP behaviour of the running proxy against real origins on loopback ports: compression,
//! framing, statuses, content types, CSP, request filters, headers both ways, routing, origin
//! failures, HTTPS origins and the admin listener.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const PAGE: &[u8] =
    b"<!doctype html><html><head><title>t</title></head><body><p>hello</p></body></html>";
const HTML: (&str, &str) = ("Content-Type", "text/html; charset=utf-8");

fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    use flate2::{write::GzEncoder, write::ZlibEncoder, Compression};
    match coding {
        "gzip" => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("unknown coding {other}"),
    }
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap(),
        "deflate" => flate2::read::ZlibDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        "zstd" => return zstd::decode_all(data).unwrap(),
        other => panic!("unknown coding {other}"),
    };
    out
}

/// Sends `raw` as is and returns every byte the proxy sent back.
fn raw_exchange(addr: &str, raw: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Polls the metrics until `line` is there (counters of the logging phase may land just after
/// the client has its response), then returns the text for the assertion.
fn metrics_with(proxy: &Proxy, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = proxy.metrics_text();
        if m.lines().any(|l| l == line) || Instant::now() > deadline {
            return m;
        }
        thread::yield_now();
    }
}

fn assert_metric(proxy: &Proxy, line: &str) {
    let m = metrics_with(proxy, line);
    assert!(
        m.lines().any(|l| l == line),
        "metric `{line}` missing:\n{m}"
    );
}

fn has_snippet(body: &[u8]) -> bool {
    String::from_utf8_lossy(body).contains("testclient")
}

fn site_yaml(entries: &[(&str, &str, &str)]) -> String {
    let mut y = String::from("sites:\n");
    for (name, host, upstream) in entries {
        y.push_str(&format!(
            "  - name: {name}\n    hosts: [\"{host}\"]\n    upstream: \"{upstream}\"\n"
        ));
    }
    y
}

#[test]
fn compressed_origins_are_decoded_injected_and_reencoded() {
    let origin = Origin::respond(|req| {
        let c = &req.path[1..];
        http_response("200 OK", &[HTML, ("Content-Encoding", c)], &encode(c, PAGE))
    });
    let proxy = Proxy::start(&origin.addr, "");
    let snippet = snippet();
    for c in ["gzip", "br", "zstd", "deflate"] {
        let path = format!("/{c}");
        let r = request(
            &proxy.addr,
            "GET",
            &path,
            &[("Accept-Encoding", "gzip, deflate, br, zstd")],
        );
        assert_eq!(r.status, 200, "{c}");
        assert_eq!(r.header("content-encoding"), Some(c), "{c}");
        let vary = r.header_all("vary").join(",").to_ascii_lowercase();
        assert!(vary.contains("accept-encoding"), "{c}: Vary {vary:?}");
        let body = decode(c, &r.body);
        assert_eq!(assert_injected_once(PAGE, &body, &snippet, c), "head");

        let r = request(&proxy.addr, "GET", &path, &[]);
        assert_eq!(r.status, 200, "{c} identity");
        assert_eq!(r.header("content-encoding"), None, "{c} identity");
        let vary = r.header_all("vary").join(",").to_ascii_lowercase();
        assert!(
            vary.contains("accept-encoding"),
            "{c} identity: Vary {vary:?}"
        );
        assert_eq!(assert_injected_once(PAGE, &r.body, &snippet, c), "head");
    }
}

#[test]
fn every_origin_framing_is_injected_once_without_content_length() {
    let origin = Origin::start(|req, s| {
        let _ = s.set_nodelay(true);
        match req.path.as_str() {
            "/length" => {
                let _ = s.write_all(&html_response(PAGE));
            }
            "/chunked" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                let _ = s.write_all(head.as_bytes());
                let at = PAGE.windows(7).position(|w| w == b"</head>").unwrap() + 4; // "</he" | "ad>"
                let parts = [
                    &PAGE[..10],
                    &PAGE[10..at],
                    &PAGE[at..at + 5],
                    &PAGE[at + 5..],
                ];
                assert!(parts[1].ends_with(b"</he") && parts[2].starts_with(b"ad>"));
                for part in parts {
                    let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
                    chunk.extend_from_slice(part);
                    chunk.extend_from_slice(b"\r\n");
                    let _ = s.write_all(&chunk);
                    let _ = s.flush();
                }
                let _ = s.write_all(b"0\r\n\r\n");
            }
            _ => {
                let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
                out.extend_from_slice(PAGE);
                let _ = s.write_all(&out);
            }
        }
    });
    let proxy = Proxy::start(&origin.addr, "");
    let snippet = snippet();
    for path in ["/length", "/chunked", "/close"] {
        let r = proxy.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-length").is_none(),
            "{path}: stale Content-Length"
        );
        assert_eq!(assert_injected_once(PAGE, &r.body, &snippet, path), "head");
    }
    for path in ["/length", "/chunked", "/close"] {
        let r = request_version(&proxy.addr, "GET", path, &[], "HTTP/1.0");
        assert_eq!(r.status, 200, "HTTP/1.0 {path}");
        assert!(
            r.header("transfer-encoding").is_none(),
            "HTTP/1.0 {path}: {:?}",
            r.headers
        );
        assert!(!r.chunked);
        assert_eq!(assert_injected_once(PAGE, &r.body, &snippet, path), "head");
    }
}

#[test]
fn head_no_content_not_modified_and_redirects_pass_through() {
    let origin = Origin::respond(|req| {
        match req.path.as_str() {
        "/head" => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            PAGE.len()
        )
        .into_bytes(),
        "/204" => b"HTTP/1.1 204 No Content\r\nX-Origin: yes\r\nConnection: close\r\n\r\n".to_vec(),
        "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_vec(),
        _ => http_response("302 Found", &[HTML, ("Location", "/elsewhere")], PAGE),
    }
    });
    let proxy = Proxy::start(&origin.addr, "");

    let raw = raw_exchange(
        &proxy.addr,
        "HEAD /head HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n",
    );
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&raw[end..], b"", "HEAD answered with a body");
    let r = parse_response(&raw, true);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(PAGE.len().to_string().as_str())
    );
    assert_eq!(origin.last_request().method, "HEAD");

    let r = proxy.get("/204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-origin"), Some("yes"));
    assert!(r.body.is_empty());

    let r = request(&proxy.addr, "GET", "/304", &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));
    assert!(r.body.is_empty());

    let r = proxy.get("/302");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/elsewhere"));
    assert_eq!(r.body, PAGE);
}

#[test]
fn range_answer_206_passes_through_untouched() {
    let origin = Origin::respond(|_| {
        let range = format!("bytes 0-10/{}", PAGE.len());
        http_response(
            "206 Partial Content",
            &[HTML, ("Content-Range", &range)],
            &PAGE[..11],
        )
    });
    let proxy = Proxy::start(&origin.addr, "");
    let r = request(&proxy.addr, "GET", "/", &[("Range", "bytes=0-10")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-10/{}", PAGE.len()).as_str())
    );
    assert_eq!(r.body, &PAGE[..11]);
    assert_eq!(origin.last_request().header("range"), Some("bytes=0-10"));
}

#[test]
fn conditional_range_for_a_page_gets_the_whole_injected_page() {
    let origin = Origin::respond(|req| {
        if req.header("range").is_some() {
            http_response(
                "206 Partial Content",
                &[HTML, ("Content-Range", "bytes 0-10/999")],
                &PAGE[..11],
            )
        } else {
            http_response(
                "200 OK",
                &[HTML, ("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT")],
                PAGE,
            )
        }
    });
    let proxy = Proxy::start(&origin.addr, "");
    let r = request(
        &proxy.addr,
        "GET",
        "/",
        &[
            ("Range", "bytes=0-10"),
            ("If-Range", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_injected_once(PAGE, &r.body, &snippet(), "if-range");
    let seen = origin.last_request();
    assert_eq!(seen.header("range"), None);
    assert_eq!(seen.header("if-range"), None);
}

#[test]
fn content_types_and_charsets() {
    const JSON: &[u8] = b"{\"html\":\"<html><head></head><body></body></html>\"}";
    const LATIN: &[u8] = b"<html><head><title>Caf\xe9</title></head><body>na\xefve \x80 \xe9t\xe9 \xff</body></html>";
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "<html><head><title>t</title></head><body>x</body></html>"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let utf16_page = utf16.clone();
    let origin = Origin::respond(move |req| match req.path.as_str() {
        "/json" => http_response("200 OK", &[("Content-Type", "application/json")], JSON),
        "/xhtml" => http_response("200 OK", &[("Content-Type", "application/xhtml+xml")], PAGE),
        "/latin" => http_response(
            "200 OK",
            &[("Content-Type", "text/html; charset=windows-1252")],
            LATIN,
        ),
        _ => http_response(
            "200 OK",
            &[("Content-Type", "text/html; charset=utf-16le")],
            &utf16_page,
        ),
    });
    let proxy = Proxy::start(&origin.addr, "");
    let snippet = snippet();

    assert_eq!(proxy.get("/json").body, JSON);
    assert_eq!(
        assert_injected_once(PAGE, &proxy.get("/xhtml").body, &snippet, "xhtml"),
        "head"
    );
    assert_eq!(
        assert_injected_once(LATIN, &proxy.get("/latin").body, &snippet, "windows-1252"),
        "head"
    );
    let r = proxy.get("/utf16");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, utf16);
    assert_metric(
        &proxy,
        "smproxy_pages_skipped_total{site=\"test\",reason=\"charset\"} 1",
    );
}

#[test]
fn csp_nonce_is_copied_to_the_injected_script() {
    let origin = Origin::respond(|req| {
        let csp = (
            "Content-Security-Policy",
            "script-src 'nonce-abc123' 'strict-dynamic'",
        );
        match req.path.as_str() {
            "/csp" => http_response("200 OK", &[HTML, csp], PAGE),
            _ => html_response(PAGE),
        }
    });
    let proxy = Proxy::start(&origin.addr, "");
    let plain = snippet();
    let with_nonce = plain.replacen("<script>", "<script nonce=\"abc123\">", 1);
    assert_ne!(plain, with_nonce);
    let r = proxy.get("/csp");
    assert_eq!(
        assert_injected_once(PAGE, &r.body, &with_nonce, "csp"),
        "head"
    );
    let r = proxy.get("/plain");
    assert_eq!(
        assert_injected_once(PAGE, &r.body, &plain, "no csp"),
        "head"
    );
    assert!(!r.text().contains("<script nonce"), "{}", r.text());
}

#[test]
fn fetch_dest_and_excluded_paths_are_not_injected() {
    let origin = Origin::respond(|_| html_response(PAGE));
    let proxy = Proxy::start(&origin.addr, "inject:\n  exclude_paths: [\"/admin/*\"]\n");
    let snippet = snippet();
    let r = request(&proxy.addr, "GET", "/", &[("Sec-Fetch-Dest", "empty")]);
    assert_eq!(r.body, PAGE);
    let r = request(&proxy.addr, "GET", "/", &[("Sec-Fetch-Dest", "document")]);
    assert_eq!(
        assert_injected_once(PAGE, &r.body, &snippet, "document"),
        "head"
    );
    assert_eq!(proxy.get("/admin/x").body, PAGE);
    assert_eq!(
        assert_injected_once(PAGE, &proxy.get("/x").body, &snippet, "/x"),
        "head"
    );
}

#[test]
fn rewritten_page_keeps_cookies_weakens_etag_drops_accept_ranges() {
    let origin = Origin::respond(|_| {
        http_response(
            "200 OK",
            &[
                HTML,
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; HttpOnly"),
                ("Set-Cookie", "c=3"),
                ("ETag", "\"v1\""),
                ("Accept-Ranges", "bytes"),
            ],
            PAGE,
        )
    });
    let proxy = Proxy::start(&origin.addr, "");
    let r = proxy.get("/");
    assert_injected_once(PAGE, &r.body, &snippet(), "page");
    assert_eq!(
        r.header_all("set-cookie"),
        ["a=1; Path=/", "b=2; HttpOnly", "c=3"]
    );
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert!(r.header("accept-ranges").is_none());
}

#[test]
fn error_pages_are_injected() {
    let origin = Origin::respond(|req| match req.path.as_str() {
        "/404" => http_response("404 Not Found", &[HTML], PAGE),
        _ => http_response("500 Internal Server Error", &[HTML], PAGE),
    });
    let proxy = Proxy::start(&origin.addr, "");
    for (path, status) in [("/404", 404), ("/500", 500)] {
        let r = proxy.get(path);
        assert_eq!(r.status, status);
        assert_eq!(
            assert_injected_once(PAGE, &r.body, &snippet(), path),
            "head"
        );
    }
}

const CODE: &str = "<script>var _smid = \"x\";</script>";

fn double_tagged() -> String {
    format!("<html><head>{CODE}</head><body><p>x</p>{CODE}</body></html>")
}

#[test]
fn duplicate_vendor_code_is_removed_by_default() {
    let origin = Origin::respond(|_| html_response(double_tagged().as_bytes()));
    let proxy = Proxy::start(&origin.addr, "");
    let input = double_tagged();
    let out = proxy.get("/").text();
    assert_eq!(out.matches("_smid").count(), 1, "{out}");
    let head = &input[..input.find("</head>").unwrap()];
    assert!(out.starts_with(head), "the first code is kept: {out}");
    assert!(!has_snippet(out.as_bytes()), "nothing injected: {out}");
    assert_metric(&proxy, "smproxy_duplicates_removed_total{site=\"test\"} 1");
}

#[test]
fn duplicate_vendor_code_is_kept_when_configured() {
    let origin = Origin::respond(|_| html_response(double_tagged().as_bytes()));
    let proxy = Proxy::start(&origin.addr, "inject:\n  duplicates: keep\n");
    let out = proxy.get("/").text();
    assert_eq!(out, double_tagged());
}

#[test]
fn origin_sees_forwarding_headers_and_identity_encoding() {
    let origin = Origin::respond(|_| html_response(PAGE));
    let proxy = Proxy::start(&origin.addr, "");

    let ae = ("Accept-Encoding", "gzip, br");
    request(
        &proxy.addr,
        "GET",
        "/",
        &[("Host", "shop.example"), ("Accept", "text/html"), ae],
    );
    let seen = origin.last_request();
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("host"), Some("shop.example"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("shop.example"));

    request(&proxy.addr, "GET", "/", &[("X-Forwarded-For", "1.2.3.4")]);
    assert_eq!(
        origin.last_request().header("x-forwarded-for"),
        Some("1.2.3.4, 127.0.0.1")
    );

    request(
        &proxy.addr,
        "GET",
        "/app.js",
        &[("Sec-Fetch-Dest", "script"), ae],
    );
    assert_eq!(
        origin.last_request().header("accept-encoding"),
        Some("gzip, br")
    );
}

#[test]
fn unknown_host_gets_421() {
    let origin = Origin::respond(|_| html_response(PAGE));
    let proxy = Proxy::start_with_sites(
        &site_yaml(&[("test", "shop.example", &origin.addr.to_string())]),
        "",
    );
    let r = request(&proxy.addr, "GET", "/", &[("Host", "other.example")]);
    assert_eq!(r.status, 421);
    assert!(!r.body.is_empty() && r.body.len() < 1024, "{}", r.text());
    assert!(r.text().contains("421"));
    assert!(origin.requests.lock().unwrap().is_empty());
    let r = request(&proxy.addr, "GET", "/", &[("Host", "shop.example")]);
    assert_eq!(r.status, 200);
    assert_injected_once(PAGE, &r.body, &snippet(), "shop.example");
}

#[test]
fn origin_down_gets_502_and_other_sites_keep_working() {
    let origin = Origin::respond(|_| html_response(PAGE));
    let dead = free_addr();
    let sites = site_yaml(&[
        ("down", "down.example", &dead),
        ("test", "up.example", &origin.addr.to_string()),
    ]);
    let proxy = Proxy::start_with_sites(&sites, "");
    let r = request(&proxy.addr, "GET", "/", &[("Host", "down.example")]);
    assert_eq!(r.status, 502);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(r.text().contains("502"), "{}", r.text());
    let r = request(&proxy.addr, "GET", "/", &[("Host", "up.example")]);
    assert_eq!(r.status, 200);
    assert_injected_once(PAGE, &r.body, &snippet(), "up.example");
    let r = request(&proxy.addr, "GET", "/", &[("Host", "down.example")]);
    assert_eq!(r.status, 502);
}

#[test]
fn silent_origin_gets_504() {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let origin = Origin::start(move |_, _| {
        // Holds the connection open, answering nothing, until the test ends (tx dropped).
        let _ = rx.lock().unwrap().recv();
    });
    let proxy = Proxy::start(&origin.addr, "timeouts:\n  read: 0.5\n");
    let started = Instant::now();
    let r = proxy.get("/");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(tx);
}

/// An HTTPS origin with a self-signed certificate for `localhost`, answering every request
/// with `html_response(PAGE)`.
fn tls_origin() -> SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            let config = config.clone();
            thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return, // handshake refused or connection closed
                    }
                }
                let _ = tls.write_all(&html_response(PAGE));
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

#[test]
fn https_origin_with_and_without_verification() {
    let addr = tls_origin();
    let site = |name: &str, host: &str, verify: &str| {
        format!(
            "  - name: {name}\n    hosts: [\"{host}\"]\n    upstream: \"{addr}\"\n    upstream_tls: true\n    upstream_sni: \"localhost\"\n{verify}"
        )
    };
    let sites = format!(
        "sites:\n{}{}",
        site("test", "insecure.example", "    upstream_verify: false\n"),
        site("verified", "verified.example", "")
    );
    let proxy = Proxy::start_with_sites(&sites, "");
    let r = request(&proxy.addr, "GET", "/", &[("Host", "insecure.example")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        assert_injected_once(PAGE, &r.body, &snippet(), "https"),
        "head"
    );
    let r = request(&proxy.addr, "GET", "/", &[("Host", "verified.example")]);
    assert_eq!(
        r.status,
        502,
        "a self-signed certificate must be refused: {}",
        r.text()
    );
}

#[test]
fn admin_health_and_metrics_token() {
    let origin = Origin::respond(|_| html_response(PAGE));
    let open = Proxy::start(&origin.addr, "");
    assert_eq!(request(&open.admin, "GET", "/healthz", &[]).status, 200);

    let token = "0123456789abcdef0123";
    let proxy = Proxy::start(&origin.addr, &format!("admin:\n  token: \"{token}\"\n"));
    assert_eq!(request(&proxy.admin, "GET", "/healthz", &[]).status, 200);
    assert_eq!(request(&proxy.admin, "GET", "/metrics", &[]).status, 401);
    let wrong = request(
        &proxy.admin,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer 0123456789abcdef0124")],
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {token}");
    let ok = request(
        &proxy.admin,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
    );
    assert_eq!(ok.status, 200);
    assert!(
        ok.text().contains("smproxy_pages_injected_total"),
        "{}",
        ok.text()
    );
}
