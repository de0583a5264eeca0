//! The tracker and collect paths over real HTTP: smproxy answers them itself, validates every
//! beacon, sets the cookies, and stores exactly what it accepted (checked in the SQLite file).

mod common;

use common::{html_response, request, request_body, Origin, Proxy};

const SITE: &str = "sites:\n  - name: shop\n    hosts: [\"test.example\", \"www.test.example\"]\n    upstream: \"ORIGIN\"\n";

fn start(extra: &str) -> (Proxy, Origin) {
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let sites = SITE.replace("ORIGIN", &origin.addr.to_string());
    (Proxy::start_with_sites(&sites, extra), origin)
}

fn beacon(p: &Proxy, json: &str, extra_headers: &[(&str, &str)]) -> common::Resp {
    let mut headers = vec![
        ("Origin", "http://test.example"),
        ("Content-Type", "text/plain;charset=UTF-8"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        ),
    ];
    for (k, v) in extra_headers {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        headers.push((k, v));
    }
    request_body(&p.addr, "POST", "/_sm/collect", &headers, json.as_bytes())
}

fn count(p: &Proxy, sql: &str) -> i64 {
    p.flush();
    p.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn text(p: &Proxy, sql: &str) -> Option<String> {
    p.flush();
    p.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

const PAGEVIEW: &str = r#"{"type":"pageview","url":"http://test.example/shoes?utm_source=mail","title":"Shoes","referrer":"https://search.example/?q=shoes","screen":"1920x1080","lang":"pl-PL"}"#;

#[test]
fn the_tracker_is_served_first_party_with_long_caching() {
    let (p, origin) = start("");
    let page = p.get("/");
    let text = page.text();
    let src = text
        .split("'/_sm/sm.js?v=")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the snippet loads a versioned tracker");
    let r = request(
        &p.addr,
        "GET",
        &format!("/_sm/sm.js?v={src}"),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let etag = r.header("etag").expect("an ETag").to_string();
    let again = request(
        &p.addr,
        "GET",
        &format!("/_sm/sm.js?v={src}"),
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let plain = request(&p.addr, "GET", "/_sm/sm.js", &[]);
    assert_eq!(plain.status, 200);
    assert!(String::from_utf8_lossy(&plain.body).contains("\"/_sm/collect\""));
    assert_eq!(plain.header("cache-control"), Some("public, max-age=300"));
    // Only the page went to the origin.
    let paths: Vec<String> = origin
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/"]);
}

#[test]
fn a_page_view_beacon_is_stored_and_sets_the_cookies() {
    let (p, origin) = start("");
    let r = beacon(&p, PAGEVIEW, &[]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookies = r.header_all("set-cookie");
    let smuuid = cookies
        .iter()
        .find(|c| c.starts_with("smuuid="))
        .expect("smuuid set");
    assert!(
        smuuid.contains("; Path=/; Domain=test.example; Max-Age=34128000; SameSite=Lax; HttpOnly"),
        "{smuuid}"
    );
    assert!(!smuuid.contains("Secure"));
    assert!(cookies.iter().any(|c| c.starts_with("smids=")));
    let visitor = &smuuid["smuuid=".len()..smuuid.find(';').unwrap()];

    assert_eq!(count(&p, "SELECT count(*) FROM events"), 1);
    let row: (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = {
        p.flush();
        p.db()
            .query_row(
                "SELECT site, url, path, title, referrer, utm_source, screen, visitor_id FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
            )
            .unwrap()
    };
    assert_eq!(row.0, "shop");
    assert_eq!(row.1, "http://test.example/shoes?utm_source=mail");
    assert_eq!(row.2, "/shoes");
    assert_eq!(row.3, "Shoes");
    assert_eq!(row.4, "https://search.example/?q=shoes");
    assert_eq!(row.5, "mail");
    assert_eq!(row.6, "1920x1080");
    assert_eq!(row.7, visitor);
    assert_eq!(
        text(&p, "SELECT ip_truncated FROM events").as_deref(),
        Some("127.0.0.0")
    );
    assert!(
        origin.requests.lock().unwrap().is_empty(),
        "a beacon reached the origin"
    );

    // The same visitor again: the cookies roll, the id stays.
    let again = beacon(&p, PAGEVIEW, &[("Cookie", &format!("smuuid={visitor}"))]);
    assert_eq!(again.status, 204);
    assert!(again
        .header_all("set-cookie")
        .iter()
        .any(|c| c.starts_with(&format!("smuuid={visitor};"))));
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM events WHERE visitor_id='{visitor}'")
        ),
        2
    );
}

#[test]
fn every_bad_beacon_gets_its_status_and_stores_nothing() {
    let (p, _origin) = start("");
    let long_title = format!(
        r#"{{"type":"pageview","url":"http://test.example/","title":"{}"}}"#,
        "x".repeat(600)
    );
    let mut invalid_utf8 = br#"{"type":"pageview","url":"http://test.example/","title":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}"#);
    let huge = format!(
        r#"{{"type":"pageview","url":"http://test.example/","title":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    // (what, body, headers to override, expected status)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("invalid JSON", b"{not json".to_vec(), vec![], 400),
        ("not an object", b"[1,2]".to_vec(), vec![], 400),
        (
            "wrong type",
            br#"{"type":"pageview","url":5}"#.to_vec(),
            vec![],
            400,
        ),
        (
            "unknown type",
            br#"{"type":"sell","url":"http://test.example/"}"#.to_vec(),
            vec![],
            400,
        ),
        ("over-long field", long_title.into_bytes(), vec![], 400),
        ("invalid UTF-8", invalid_utf8, vec![], 400),
        (
            "another site's URL",
            br#"{"type":"pageview","url":"http://other.example/"}"#.to_vec(),
            vec![],
            403,
        ),
        (
            "a foreign Origin",
            PAGEVIEW.as_bytes().to_vec(),
            vec![("Origin", "https://evil.example")],
            403,
        ),
        ("1 MB body", huge.into_bytes(), vec![], 413),
        (
            "wrong content type",
            PAGEVIEW.as_bytes().to_vec(),
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            415,
        ),
    ];
    for (what, body, headers, status) in cases {
        let mut all = vec![
            ("Origin", "http://test.example"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ];
        for (k, v) in headers {
            all.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            all.push((k, v));
        }
        let r = request_body(&p.addr, "POST", "/_sm/collect", &all, &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "{what}");
        assert!(!r.text().is_empty(), "{what}: a short reason is given");
    }
    let put = request_body(&p.addr, "PUT", "/_sm/collect", &[], b"{}");
    assert_eq!(put.status, 405);
    let bad_pixel = request(
        &p.addr,
        "GET",
        "/_sm/collect?type=form&url=http%3A%2F%2Ftest.example%2F",
        &[],
    );
    assert_eq!(bad_pixel.status, 400);
    assert_eq!(count(&p, "SELECT count(*) FROM events"), 0);
    assert!(p
        .metrics_text()
        .contains("smproxy_beacons_rejected_total{site=\"shop\",status=\"413\"} 1"));
    // The proxy keeps serving.
    assert_eq!(p.get("/").status, 200);
    assert_eq!(beacon(&p, PAGEVIEW, &[]).status, 204);
    assert_eq!(count(&p, "SELECT count(*) FROM events"), 1);
}

#[test]
fn the_pixel_counts_pages_without_scripts() {
    let (p, _origin) = start("");
    let r = request(
        &p.addr,
        "GET",
        "/_sm/collect",
        &[
            ("Referer", "http://www.test.example/no-js"),
            ("User-Agent", "Mozilla/5.0 Firefox/140.0"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert!(r.body.starts_with(b"GIF89a"));
    assert_eq!(
        text(&p, "SELECT url FROM events").as_deref(),
        Some("http://www.test.example/no-js")
    );
}

#[test]
fn beacons_over_the_rate_limit_get_429() {
    let (p, _origin) = start("collect:\n  rate_per_minute: 60\n  rate_burst: 3\n");
    let statuses: Vec<u16> = (0..5).map(|_| beacon(&p, PAGEVIEW, &[]).status).collect();
    assert_eq!(statuses, [204, 204, 204, 429, 429]);
    assert_eq!(count(&p, "SELECT count(*) FROM events"), 3);
}

#[test]
fn robots_are_stored_apart_and_get_no_cookie() {
    let (p, _origin) = start("");
    let r = beacon(
        &p,
        PAGEVIEW,
        &[(
            "User-Agent",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        )],
    );
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM events WHERE is_bot=1 AND visitor_id IS NULL"
        ),
        1
    );
    assert!(p
        .metrics_text()
        .contains("smproxy_bot_requests_total{site=\"shop\"} 1"));
}

#[test]
fn client_address_and_company_come_from_trusted_proxies_only() {
    let extra = "trusted_proxies: [\"127.0.0.1\"]\ncompanies:\n  networks:\n    - cidr: \"203.0.113.0/24\"\n      name: \"Acme S.A.\"\n";
    let (p, _origin) = start(extra);
    assert_eq!(
        beacon(
            &p,
            PAGEVIEW,
            &[("X-Forwarded-For", "198.51.100.9, 203.0.113.77")]
        )
        .status,
        204
    );
    assert_eq!(
        text(&p, "SELECT ip_truncated FROM events").as_deref(),
        Some("203.0.113.0")
    );
    assert_eq!(
        text(&p, "SELECT company FROM events").as_deref(),
        Some("Acme S.A.")
    );
    assert_eq!(
        count(&p, "SELECT count(*) FROM companies WHERE name='Acme S.A.'"),
        1
    );
    // HTTPS at the trusted proxy: the cookies are Secure.
    let r = beacon(&p, PAGEVIEW, &[("X-Forwarded-Proto", "https")]);
    assert!(r
        .header_all("set-cookie")
        .iter()
        .all(|c| c.contains("; Secure")));

    // Without trust, a forged header changes nothing.
    let (q, _o) = start(
        "companies:\n  networks:\n    - cidr: \"203.0.113.0/24\"\n      name: \"Acme S.A.\"\n",
    );
    assert_eq!(
        beacon(
            &q,
            PAGEVIEW,
            &[
                ("X-Forwarded-For", "203.0.113.77"),
                ("X-Forwarded-Proto", "https")
            ]
        )
        .status,
        204
    );
    assert_eq!(
        text(&q, "SELECT ip_truncated FROM events").as_deref(),
        Some("127.0.0.0")
    );
    assert_eq!(text(&q, "SELECT company FROM events"), None);
}

#[test]
fn a_mailing_link_redirects_to_the_clean_address_with_the_cookie() {
    let (p, origin) = start("");
    let contact = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let r = request(
        &p.addr,
        "GET",
        &format!("/offer?a=1&smclient={contact}"),
        &[
            ("Accept", "text/html"),
            ("User-Agent", "Mozilla/5.0 Firefox/140.0"),
        ],
    );
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/offer?a=1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let cookies = r.header_all("set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("smclient=")),
        "{cookies:?}"
    );
    assert!(cookies.iter().any(|c| c.starts_with("smuuid=")));
    assert!(origin.requests.lock().unwrap().is_empty());
    assert_eq!(
        text(&p, "SELECT contact_id FROM events WHERE kind='identify'").as_deref(),
        Some(contact)
    );
    // A first page view without parameters gets smuuid on the page itself, made private.
    let page = request(
        &p.addr,
        "GET",
        "/",
        &[
            ("Accept", "text/html"),
            ("User-Agent", "Mozilla/5.0 Firefox/140.0"),
        ],
    );
    assert_eq!(page.status, 200);
    assert!(page
        .header_all("set-cookie")
        .iter()
        .any(|c| c.starts_with("smuuid=")));
    assert_eq!(page.header("cache-control"), Some("private"));
}

#[test]
fn every_accepted_beacon_is_stored_across_a_graceful_shutdown() {
    let (mut p, _origin) = start("collect:\n  rate_per_minute: 0\n");
    let n = 300;
    for i in 0..n {
        let body = format!(r#"{{"type":"event","url":"http://test.example/","name":"e{i}"}}"#);
        assert_eq!(beacon(&p, &body, &[]).status, 204);
    }
    let stats = p.shutdown();
    assert_eq!(stats.enqueued, n);
    assert_eq!(stats.written, n);
    assert_eq!(stats.dropped, 0);
    let db = rusqlite::Connection::open(&p.db_path).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT count(DISTINCT name) FROM events WHERE kind='custom'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, n as i64);
}

#[test]
fn the_admin_api_counts_what_the_beacons_stored() {
    let (p, _origin) = start("");
    // Two visitors: three page views and one page view.
    let first = beacon(&p, PAGEVIEW, &[]);
    let cookies: Vec<String> = first
        .header_all("set-cookie")
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .collect();
    let jar = cookies.join("; ");
    for _ in 0..2 {
        assert_eq!(beacon(&p, PAGEVIEW, &[("Cookie", &jar)]).status, 204);
    }
    assert_eq!(beacon(&p, PAGEVIEW, &[]).status, 204);
    p.flush();
    let r = p.admin_get("/api/stats?site=shop");
    assert_eq!(r.status, 200, "{}", r.text());
    let stats: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(stats["pageviews"], 4, "{stats}");
    assert_eq!(stats["visitors"], 2, "{stats}");
    assert_eq!(stats["sessions"], 2, "{stats}");
    let status = p.admin_get("/api/status");
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["sites"][0]["detected"], true, "{status}");
    // Without the token, nothing.
    assert_eq!(request(&p.admin, "GET", "/api/stats", &[]).status, 401);
    // The store's write latency is exported.
    let m = p.metrics_text();
    let batches: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("smproxy_store_write_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("write latency count");
    assert!(batches >= 1, "{m}");
}
