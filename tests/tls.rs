//! HTTPS termination: certificates chosen by SNI (one of them shared by two sites), HTTP/2 and
//! HTTP/1.1 by ALPN both getting the injected page, the plain-HTTP redirect, HSTS, and
//! certificates reloaded in place.

mod common;

use std::time::{Duration, Instant};

use common::tls::{connect, get_h1, get_h2, negotiated, TestCa};
use common::{free_addr, html_response, request, snippet, Origin, Proxy, TempDir};

/// An origin whose page names the Host it was asked for.
fn origin() -> Origin {
    Origin::respond(|req| {
        let host = req.header("host").unwrap_or("?").to_string();
        html_response(
            format!("<html><head><title>{host}</title></head><body>page of {host}</body></html>")
                .as_bytes(),
        )
    })
}

struct Edge {
    proxy: Proxy,
    https: String,
    ca: TestCa,
    a_der: rustls::pki_types::CertificateDer<'static>,
    bc_der: rustls::pki_types::CertificateDer<'static>,
    _origin: Origin,
    _dir: TempDir,
}

/// Three sites: `a.example` with its own certificate, redirect and HSTS; `b.example` and
/// `c.example` sharing one certificate, without redirect.
fn edge() -> Edge {
    let dir = TempDir::new("tls");
    let ca = TestCa::new();
    let a = ca.issue(&dir.0, "a", &["a.example"]);
    let bc = ca.issue(&dir.0, "bc", &["b.example", "c.example"]);
    let origin = origin();
    let o = origin.addr;
    let site = |name: &str, cert: &common::tls::IssuedCert, more: &str| {
        format!(
            "  - name: {name}\n    hosts: [\"{name}.example\"]\n    upstream: \"{o}\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n{more}",
            cert.cert_path.display(),
            cert.key_path.display()
        )
    };
    let sites = format!(
        "sites:\n{}{}{}",
        site(
            "a",
            &a,
            "      redirect_http: true\n      hsts_max_age_seconds: 600\n"
        ),
        site("b", &bc, ""),
        site("c", &bc, ""),
    );
    let https = free_addr();
    let proxy = Proxy::start_with_sites(&sites, &format!("listen_tls: \"{https}\"\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&https).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTPS listener never accepted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Edge {
        proxy,
        https,
        a_der: a.der,
        bc_der: bc.der,
        ca,
        _origin: origin,
        _dir: dir,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn each_name_gets_its_certificate_and_both_protocols_get_the_injected_page() {
    let e = edge();
    let ca = e.ca.der();
    rt().block_on(async {
        for (host, der) in [
            ("a.example", &e.a_der),
            ("b.example", &e.bc_der),
            ("c.example", &e.bc_der),
        ] {
            // HTTP/1.1 (the only protocol offered).
            let s = connect(&e.https, host, &ca, &[b"http/1.1"]).await.unwrap();
            let (cert, alpn) = negotiated(&s);
            assert_eq!(cert.as_ref(), Some(der), "{host}: wrong certificate");
            assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
            let r = get_h1(s, host, "/").await;
            assert_eq!(r.status, 200, "{host}");
            let body = r.text();
            assert!(body.contains(&format!("page of {host}")), "{host}: {body}");
            assert_eq!(body.matches(&snippet()).count(), 1, "{host}: {body}");

            // HTTP/2 preferred by ALPN.
            let s = connect(&e.https, host, &ca, &[b"h2", b"http/1.1"])
                .await
                .unwrap();
            let (cert, alpn) = negotiated(&s);
            assert_eq!(
                cert.as_ref(),
                Some(der),
                "{host}: wrong certificate over h2"
            );
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{host}: h2 not chosen");
            let (status, _, body) = get_h2(s, host, "/").await;
            let body = String::from_utf8(body).unwrap();
            assert_eq!(status, 200, "{host}");
            assert!(body.contains(&format!("page of {host}")), "{host}: {body}");
            assert_eq!(body.matches(&snippet()).count(), 1, "{host}: {body}");
        }
    });
}

#[test]
fn a_certificate_for_another_name_is_refused_by_the_client() {
    let e = edge();
    let ca = e.ca.der();
    rt().block_on(async {
        // No site has this name: the first site's certificate is presented, which does not
        // name it, so a verifying client refuses the handshake (and no other site leaks).
        let err = connect(&e.https, "other.example", &ca, &[b"http/1.1"])
            .await
            .expect_err("a certificate for other.example should not exist");
        assert!(
            err.to_string().contains("certificate"),
            "unexpected error: {err}"
        );
    });
}

#[test]
fn plain_http_is_redirected_where_the_site_asks_for_it() {
    let e = edge();
    let port = e.https.rsplit(':').next().unwrap();
    let r = request(
        &e.proxy.addr,
        "GET",
        "/shop/item?id=7&x=a%20b",
        &[("Host", "a.example:8080")],
    );
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://a.example:{port}/shop/item?id=7&x=a%20b").as_str())
    );
    let r = request(&e.proxy.addr, "POST", "/form", &[("Host", "a.example")]);
    assert_eq!(r.status, 308, "a POST keeps its method");
    // HSTS is only sent over HTTPS; b has no redirect and is served over plain HTTP.
    let r = request(&e.proxy.addr, "GET", "/", &[("Host", "b.example")]);
    assert_eq!(r.status, 200);
    assert!(r.header("strict-transport-security").is_none());
    assert_eq!(r.text().matches(&snippet()).count(), 1);
}

#[test]
fn hsts_is_sent_over_https_for_the_sites_that_ask() {
    let e = edge();
    let ca = e.ca.der();
    rt().block_on(async {
        let s = connect(&e.https, "a.example", &ca, &[b"h2"]).await.unwrap();
        let (_, headers, _) = get_h2(s, "a.example", "/").await;
        assert_eq!(
            headers
                .get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=600")
        );
        let s = connect(&e.https, "b.example", &ca, &[b"http/1.1"])
            .await
            .unwrap();
        let r = get_h1(s, "b.example", "/").await;
        assert!(r.header("strict-transport-security").is_none());
    });
}

#[test]
fn certificates_reload_in_place_and_a_broken_file_keeps_the_old_one() {
    let dir = TempDir::new("reload");
    let ca = TestCa::new();
    let first = ca.issue(&dir.0, "site", &["r.example"]);
    let yaml = format!(
        "client_id: abc\nlisten_tls: \"127.0.0.1:1\"\nsites:\n  - name: r\n    hosts: [\"r.example\"]\n    upstream: \"127.0.0.1:1\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n",
        first.cert_path.display(),
        first.key_path.display()
    );
    let settings = smproxy::config::parse_str(&yaml).unwrap();
    let resolver = smproxy::tls::SniResolver::load(&settings.sites).unwrap();
    let served =
        |r: &smproxy::tls::SniResolver| r.for_name(Some("r.example")).unwrap().cert[0].clone();
    assert_eq!(served(&resolver), first.der);

    // A renewed certificate written over the same files.
    let renewed = ca.issue(&dir.0, "site", &["r.example"]);
    assert_ne!(renewed.der, first.der);
    assert_eq!(
        served(&resolver),
        first.der,
        "nothing changes before a reload"
    );
    resolver.reload().unwrap();
    assert_eq!(served(&resolver), renewed.der);

    // A half-written key: the reload fails and the renewed certificate stays in use.
    std::fs::write(&renewed.key_path, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    assert!(resolver.reload().is_err());
    assert_eq!(served(&resolver), renewed.der);
}
