//! The security review, over real HTTP against the whole server (public proxy, admin listener,
//! SQLite store): the admin side is closed without its token and never reachable from the
//! public listener; forged, expired, replayed and retired-key cookies and link tokens are
//! refused; `X-Forwarded-For` is believed only from trusted peers; visitor input cannot put a
//! line break or a huge value into a response header; beacons are rate-limited per client
//! address; every visitor-supplied value reaches the dashboard escaped.
//!
//! (No secret in logs, errors or `Debug`: `tests/secrets.rs`, which runs the real binary.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{html_response, http_response, request, request_body, Origin, Proxy, Resp};
use smproxy::admin::routes::{Kind, ROUTES};
use smproxy::config::Secret;
use smproxy::identity::{self, Keys, Uuid};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36";
const NAV: [(&str, &str); 2] = [("Accept", "text/html"), ("User-Agent", UA)];
const CONTACT: &str = "6f1c1a0e-3b7d-4c55-9a51-0d2b7f0c9e11";
const KEY_NEW: &str = "security-key-new-0123456789abcdef0123456";
const KEY_OLD: &str = "security-key-old-0123456789abcdef0123456";

fn keys(secrets: &[&str]) -> Keys {
    let s: Vec<Secret> = secrets.iter().map(|k| Secret::new((*k).into())).collect();
    Keys::new(&s).unwrap()
}

fn contact() -> Uuid {
    Uuid::parse_str(CONTACT).unwrap()
}

fn now() -> u64 {
    identity::unix_now()
}

/// An origin that names the path it was asked for, as plain text (never injected).
fn echo_origin() -> Origin {
    Origin::respond(|req| {
        let body = format!("origin saw {} {}", req.method, req.path);
        http_response("200 OK", &[("Content-Type", "text/plain")], body.as_bytes())
    })
}

fn page_origin() -> Origin {
    Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"))
}

fn beacon(addr: &str, json: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![
        ("Origin", "http://test.example"),
        ("Content-Type", "text/plain;charset=UTF-8"),
        ("User-Agent", UA),
    ];
    for (k, v) in extra {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        headers.push((k, v));
    }
    request_body(addr, "POST", "/_sm/collect", &headers, json.as_bytes())
}

const PAGEVIEW: &str = r#"{"type":"pageview","url":"http://test.example/a"}"#;

fn count(p: &Proxy, sql: &str) -> i64 {
    p.flush();
    p.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn metric(p: &Proxy, prefix: &str) -> u64 {
    p.metrics_text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The value a browser keeps from the `Set-Cookie`s for `name` in a response (the last one).
fn cookie_value<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.header_all("set-cookie")
        .into_iter()
        .filter_map(|c| c.split(';').next())
        .rev()
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
}

// ---- the admin side --------------------------------------------------------------------

/// Every admin route with its `{id}` filled in.
fn admin_paths() -> Vec<(&'static str, String, Kind)> {
    ROUTES
        .iter()
        .map(|r| (r.method, r.pattern.replace("{id}", CONTACT), r.kind))
        .collect()
}

#[test]
fn admin_paths_on_the_public_listener_go_to_the_origin() {
    let origin = echo_origin();
    let p = Proxy::start(&origin.addr, "");
    let bearer = format!("Bearer {}", common::TEST_ADMIN_TOKEN);
    let admin_host = p.admin.clone();
    let mut checked = 0;
    for (method, path, _) in admin_paths() {
        for headers in [
            vec![],
            vec![("Authorization", bearer.as_str())],
            vec![
                ("Authorization", bearer.as_str()),
                ("Host", admin_host.as_str()),
            ],
        ] {
            let r = if method == "GET" {
                request(&p.addr, method, &path, &headers)
            } else {
                request_body(&p.addr, method, &path, &headers, b"token=x")
            };
            assert_eq!(r.status, 200, "{method} {path} {headers:?}");
            assert_eq!(
                r.text(),
                format!("origin saw {method} {path}"),
                "{method} {path} was not answered by the origin"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * 25, "{checked}");
    // The origin got them all, token included: the proxy has no admin route to hide them from.
    assert_eq!(origin.requests.lock().unwrap().len(), checked);
}

#[test]
fn the_admin_listener_is_closed_without_the_right_token() {
    let origin = echo_origin();
    let p = Proxy::start(&origin.addr, "");
    // The right token opens them (the control that makes the refusals below mean something);
    // first, since after 10 failed attempts even the right token gets 429 for a minute.
    assert_eq!(p.admin_get("/api/status").status, 200);
    assert_eq!(p.admin_get("/").status, 200);
    let token = common::TEST_ADMIN_TOKEN;
    let mut plain_refusals = 0;
    let wrong = [
        String::new(),
        "Bearer ".to_string(),
        format!("Bearer {}", &token[..token.len() - 1]),
        format!("Bearer {token}x"),
        format!("Bearer {}", token.to_uppercase()),
        format!("Basic {token}"),
        format!("Bearer  {token} trailing"),
    ];
    for auth in &wrong {
        for (method, path, kind) in admin_paths() {
            if kind == Kind::Public {
                continue;
            }
            let headers: Vec<(&str, &str)> = if auth.is_empty() {
                vec![]
            } else {
                vec![("Authorization", auth.as_str())]
            };
            let r = if method == "GET" {
                request(&p.admin, method, &path, &headers)
            } else {
                request_body(&p.admin, method, &path, &headers, b"")
            };
            let refused = match (kind, method) {
                (Kind::Page, "GET") => {
                    r.status == 303
                        && r.header("location")
                            .is_some_and(|l| l.starts_with("/login?next="))
                }
                _ => r.status == 401,
            };
            if refused {
                plain_refusals += 1;
            } else {
                // After 10 failed attempts the address is limited: still refused.
                assert_eq!(
                    r.status, 429,
                    "{auth:?}: {method} {path} answered {}",
                    r.status
                );
            }
            assert!(
                !r.text().contains("smproxy_") && !r.text().contains("\"contacts\""),
                "{auth:?}: {method} {path} leaked data"
            );
        }
    }
    assert!(plain_refusals >= 10, "{plain_refusals}");
}

// ---- cookies and link tokens -----------------------------------------------------------

fn cookie_proxy(secrets: &[&str]) -> (Proxy, Origin) {
    let origin = page_origin();
    let list = secrets
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let p = Proxy::start(
        &origin.addr,
        &format!("cookies:\n  secrets: [{list}]\ncollect:\n  rate_per_minute: 0\n"),
    );
    (p, origin)
}

#[test]
fn forged_tampered_and_retired_key_cookies_are_refused_and_replaced() {
    let (p, _origin) = cookie_proxy(&[KEY_NEW]);
    let t = now();
    let genuine = identity::issue_client(&keys(&[KEY_NEW]), contact(), t);
    let mut tampered = genuine.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bad = [
        (
            "retired key",
            identity::issue_client(&keys(&[KEY_OLD]), contact(), t),
        ),
        (
            "foreign key",
            identity::issue_client(&keys(&["x".repeat(40).as_str()]), contact(), t),
        ),
        ("tampered", tampered),
        (
            "another purpose",
            identity::issue_ids(&keys(&[KEY_NEW]), contact(), Some(contact()), t),
        ),
        ("bare contact id", CONTACT.to_string()),
        ("oversized", "A".repeat(5000)),
    ];
    for (i, (what, value)) in bad.iter().enumerate() {
        let cookie = format!("smclient={value}");
        let r = beacon(&p.addr, PAGEVIEW, &[("Cookie", &cookie)]);
        assert_eq!(r.status, 204, "{what}");
        // Not believed: the event has no contact, and the bad cookie is deleted.
        assert_eq!(
            count(
                &p,
                "SELECT count(*) FROM events WHERE contact_id IS NOT NULL"
            ),
            0,
            "{what}: the contact was believed"
        );
        assert_eq!(
            cookie_value(&r, "smclient"),
            Some(""),
            "{what}: not deleted"
        );
        assert_eq!(
            metric(&p, "smproxy_cookies_rejected_total"),
            i as u64 + 1,
            "{what}: not counted"
        );
    }
    // The genuine cookie is believed (so the refusals above are about the cookie, not setup).
    let r = beacon(
        &p.addr,
        PAGEVIEW,
        &[("Cookie", &format!("smclient={genuine}"))],
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM events WHERE contact_id='{CONTACT}'")
        ),
        1
    );
}

#[test]
fn a_rotated_key_still_verifies_until_it_is_retired() {
    let old = identity::issue_client(&keys(&[KEY_OLD]), contact(), now());
    let cookie = format!("smclient={old}");
    let (rotated, _o1) = cookie_proxy(&[KEY_NEW, KEY_OLD]);
    let r = beacon(&rotated.addr, PAGEVIEW, &[("Cookie", &cookie)]);
    assert_eq!(r.status, 204);
    assert_eq!(
        count(
            &rotated,
            &format!("SELECT count(*) FROM events WHERE contact_id='{CONTACT}'")
        ),
        1
    );
    assert_eq!(metric(&rotated, "smproxy_cookies_rejected_total"), 0);
    // Re-signed with the new key when the cookies roll.
    let page = request(
        &rotated.addr,
        "GET",
        "/",
        &[
            ("Accept", "text/html"),
            ("User-Agent", UA),
            ("Cookie", &cookie),
        ],
    );
    assert_eq!(page.status, 200);

    let (retired, _o2) = cookie_proxy(&[KEY_NEW]);
    let r = beacon(&retired.addr, PAGEVIEW, &[("Cookie", &cookie)]);
    assert_eq!(r.status, 204);
    assert_eq!(
        count(
            &retired,
            "SELECT count(*) FROM events WHERE contact_id IS NOT NULL"
        ),
        0
    );
    assert_eq!(metric(&retired, "smproxy_cookies_rejected_total"), 1);
}

fn identifications(p: &Proxy) -> i64 {
    count(p, "SELECT count(*) FROM events WHERE kind='identify'")
}

#[test]
fn sibling_link_tokens_forged_expired_replayed_or_retired_are_refused() {
    let (p, _origin) = cookie_proxy(&[KEY_NEW]);
    let ids = Uuid::new_v4();
    let t = now();
    let k = keys(&[KEY_NEW]);
    let refused = [
        (
            "another host",
            identity::issue_site_link(&k, ids, Some(contact()), "other.example", t, 120),
        ),
        (
            "expired",
            identity::issue_site_link(&k, ids, Some(contact()), "test.example", t - 300, 120),
        ),
        (
            "retired key",
            identity::issue_site_link(
                &keys(&[KEY_OLD]),
                ids,
                Some(contact()),
                "test.example",
                t,
                120,
            ),
        ),
        (
            "a personal link as _smx",
            identity::issue_personal_link(&k, contact(), t, None),
        ),
        (
            "forged",
            format!(
                "{}x",
                identity::issue_site_link(&k, ids, Some(contact()), "test.example", t, 120)
            ),
        ),
    ];
    for (what, token) in &refused {
        let r = request(&p.addr, "GET", &format!("/landing?_smx={token}&q=1"), &NAV);
        // The parameter is always stripped, but nothing is adopted.
        assert_eq!(r.status, 302, "{what}");
        assert_eq!(r.header("location"), Some("/landing?q=1"), "{what}");
        if let Some(v) = cookie_value(&r, "smids") {
            let claims = identity::verify_ids(&k, v).expect("our own smids");
            assert_ne!(
                claims.ids_id, ids,
                "{what}: the link's identity was adopted"
            );
            assert_eq!(claims.contact_id, None, "{what}");
        }
        assert_eq!(cookie_value(&r, "smclient"), None, "{what}");
        assert_eq!(identifications(&p), 0, "{what}: identified");
    }
    // Control: the genuine token on its own host is adopted.
    let good = identity::issue_site_link(&k, ids, Some(contact()), "test.example", t, 120);
    let r = request(&p.addr, "GET", &format!("/landing?_smx={good}"), &NAV);
    assert_eq!(r.status, 302);
    let claims = identity::verify_ids(&k, cookie_value(&r, "smids").unwrap()).unwrap();
    assert_eq!(claims.ids_id, ids);
    assert_eq!(identifications(&p), 1);
}

#[test]
fn personal_links_forged_expired_or_retired_are_refused() {
    let (p, _origin) = cookie_proxy(&[KEY_NEW]);
    let t = now();
    let k = keys(&[KEY_NEW]);
    let refused = [
        (
            "expired",
            identity::issue_personal_link(&k, contact(), t - 100, Some(t - 1)),
        ),
        (
            "retired key",
            identity::issue_personal_link(&keys(&[KEY_OLD]), contact(), t, None),
        ),
        (
            "an smclient value",
            identity::issue_client(&k, contact(), t),
        ),
        ("garbage", "not-a-token".to_string()),
    ];
    for (what, token) in &refused {
        let r = request(&p.addr, "GET", &format!("/?smlink={token}"), &NAV);
        assert_eq!(r.status, 302, "{what}");
        assert_eq!(cookie_value(&r, "smclient"), None, "{what}");
        assert_eq!(identifications(&p), 0, "{what}: identified");
    }
    let good = identity::issue_personal_link(&k, contact(), t, Some(t + 3600));
    let r = request(&p.addr, "GET", &format!("/?smlink={good}"), &NAV);
    assert_eq!(r.status, 302);
    let v = cookie_value(&r, "smclient").expect("identified");
    assert_eq!(
        identity::verify_client(&k, v).unwrap().contact_id,
        contact()
    );
    assert_eq!(identifications(&p), 1);
}

// ---- client address --------------------------------------------------------------------

#[test]
fn forwarded_for_from_an_untrusted_peer_neither_escapes_the_rate_limit_nor_reaches_the_origin_alone(
) {
    let origin = echo_origin();
    let p = Proxy::start(
        &origin.addr,
        "collect:\n  rate_per_minute: 60\n  rate_burst: 2\n",
    );
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            let xff = format!("198.51.100.{i}");
            beacon(&p.addr, PAGEVIEW, &[("X-Forwarded-For", &xff)]).status
        })
        .collect();
    assert_eq!(
        statuses,
        [204, 204, 429, 429],
        "a forged X-Forwarded-For made a new client"
    );
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM events WHERE ip_truncated='127.0.0.0'"
        ),
        2
    );
    // The origin can rely on the last entry: the real peer, appended by the proxy.
    let r = request(&p.addr, "GET", "/x", &[("X-Forwarded-For", "198.51.100.7")]);
    assert_eq!(r.status, 200);
    let xff = origin
        .last_request()
        .header("x-forwarded-for")
        .unwrap()
        .to_string();
    assert_eq!(xff.rsplit(',').next().unwrap().trim(), "127.0.0.1", "{xff}");
}

#[test]
fn beacons_are_limited_per_client_address_behind_a_trusted_proxy() {
    let origin = page_origin();
    let p = Proxy::start(
        &origin.addr,
        "trusted_proxies: [\"127.0.0.1\"]\ncollect:\n  rate_per_minute: 60\n  rate_burst: 2\n",
    );
    let send = |ip: &str| beacon(&p.addr, PAGEVIEW, &[("X-Forwarded-For", ip)]).status;
    assert_eq!(send("203.0.113.1"), 204);
    assert_eq!(send("203.0.113.1"), 204);
    let over = beacon(&p.addr, PAGEVIEW, &[("X-Forwarded-For", "203.0.113.1")]);
    assert_eq!(over.status, 429);
    assert_eq!(over.header("cache-control"), Some("no-store"));
    // Another client behind the same proxy is not punished for the first one.
    assert_eq!(send("203.0.113.2"), 204);
    assert_eq!(send("203.0.113.2"), 204);
    assert_eq!(send("203.0.113.2"), 429);
    assert_eq!(
        metric(
            &p,
            "smproxy_beacons_rejected_total{site=\"test\",status=\"429\"}"
        ),
        2
    );
    assert_eq!(count(&p, "SELECT count(*) FROM events"), 4);
}

// ---- response headers ------------------------------------------------------------------

/// Sends raw bytes and returns the raw answer (or what came before the connection closed).
fn raw_exchange(addr: &str, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The header block of a raw answer, as lines.
fn header_lines(raw: &[u8]) -> Vec<String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end])
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

/// No header smuggled in, none huge, none carrying a stray control character.
fn assert_clean_headers(raw: &[u8], what: &str) {
    let lines = header_lines(raw);
    assert!(
        !lines.is_empty() && lines[0].starts_with("HTTP/1."),
        "{what}: {lines:?}"
    );
    for l in &lines[1..] {
        let lower = l.to_ascii_lowercase();
        assert!(!lower.starts_with("x-evil"), "{what}: header smuggled: {l}");
        assert!(!lower.contains("evil=1"), "{what}: cookie smuggled: {l}");
        assert!(l.len() <= 4096, "{what}: a {}-byte header line", l.len());
        assert!(
            !l.bytes().any(|b| b.is_ascii_control() && b != b'\t'),
            "{what}: control byte in {l:?}"
        );
    }
}

#[test]
fn visitor_input_cannot_put_line_breaks_or_huge_values_into_response_headers() {
    let origin = page_origin();
    let p = Proxy::start(&origin.addr, "");
    let uuid = CONTACT;
    let cases: Vec<(&str, String)> = vec![
        (
            "encoded CR/LF in the query of a stripped link",
            format!("GET /?smclient={uuid}&a=%0d%0aX-Evil:%201%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "encoded CR/LF in the path of a stripped link",
            format!("GET /a%0d%0aX-Evil:%201?smclient={uuid} HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "raw LF in the request target",
            format!("GET /?smclient={uuid}&a=\nX-Evil: 1 HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "cookie attributes in the Host header",
            format!("GET / HTTP/1.1\r\nHost: test.example;Domain=evil.example;evil=1\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "a huge stripped link",
            format!("GET /?smclient={uuid}&a={} HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n", "x".repeat(60_000)),
        ),
        (
            "a huge cookie",
            format!("GET / HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nCookie: smids={}; smuuid={}\r\nConnection: close\r\n\r\n", "A".repeat(30_000), "b".repeat(5_000)),
        ),
        (
            "a huge Host",
            format!("GET / HTTP/1.1\r\nHost: {}.example\r\nAccept: text/html\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n", "h".repeat(20_000)),
        ),
    ];
    for (what, raw) in &cases {
        let answer = raw_exchange(&p.addr, raw.as_bytes());
        if answer.is_empty() {
            continue; // refused by closing: nothing reached a header
        }
        assert_clean_headers(&answer, what);
        let lines = header_lines(&answer);
        for l in lines
            .iter()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        {
            let attrs: Vec<&str> = l.split(';').skip(1).map(str::trim).collect();
            for a in attrs {
                let name = a.split('=').next().unwrap().to_ascii_lowercase();
                assert!(
                    ["path", "domain", "max-age", "samesite", "httponly", "secure"]
                        .contains(&name.as_str()),
                    "{what}: unexpected cookie attribute {a:?} in {l}"
                );
                if name == "domain" {
                    assert!(!a.contains("evil"), "{what}: {l}");
                }
            }
        }
    }
    // A protocol-relative path in a stripped link is no open redirect: the browser stays on
    // this host.
    let base = url::Url::parse("http://test.example/").unwrap();
    for (path, kept) in [
        ("//evil.example/x", "//evil.example/x"),
        ("/\\evil.example/", "//evil.example/"),
    ] {
        let r = request(&p.addr, "GET", &format!("{path}?smclient={uuid}"), &NAV);
        assert_eq!(r.status, 302, "{path}");
        let location = r.header("location").unwrap();
        let target = base.join(location).unwrap();
        assert_eq!(
            target.host_str(),
            Some("test.example"),
            "open redirect: {location}"
        );
        assert_eq!(target.path(), kept, "{location}");
    }
}

// ---- the dashboard ---------------------------------------------------------------------

#[test]
fn every_visitor_supplied_value_reaches_the_dashboard_escaped() {
    let origin = page_origin();
    let company = "<script>alert('co')</script> \\\"Q\\\" GmbH";
    let p = Proxy::start(
        &origin.addr,
        &format!(
            "trusted_proxies: [\"127.0.0.1\"]\ncompanies:\n  networks:\n    - cidr: \"203.0.113.0/24\"\n      name: \"{company}\"\n"
        ),
    );
    let xff = [("X-Forwarded-For", "203.0.113.9")];
    let hostile_title =
        r#"<script>alert('title')</script> "quoted" 'single' & <img src=x onerror=alert(1)>"#;
    let pageview = serde_json::json!({
        "type": "pageview",
        "url": "http://test.example/p/<script>?utm_source=<script>alert('src')</script>&utm_medium=\"><b>m</b>&utm_campaign=x\" onmouseover=\"alert(1)",
        "title": hostile_title,
        "referrer": "https://ref.example/<script>alert('ref')</script>?q=\"><b>r</b>",
        "lang": "pl-PL",
        "screen": "1x1",
    })
    .to_string();
    let r = beacon(&p.addr, &pageview, &xff);
    assert_eq!(r.status, 204);
    let cookie = r
        .header_all("set-cookie")
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let event = serde_json::json!({
        "type": "event",
        "url": "http://test.example/p",
        "name": "<script>alert('event')</script>",
        "props": {"<b>k</b>": "<script>alert('prop')</script>\""},
    })
    .to_string();
    assert_eq!(
        beacon(&p.addr, &event, &[("Cookie", &cookie), xff[0]]).status,
        204
    );
    let form = serde_json::json!({
        "type": "form",
        "url": "http://test.example/p",
        "email": "<script>alert('mail')</script>\"@evil.example",
        "fields": ["<b>email</b>"],
    })
    .to_string();
    let r = beacon(&p.addr, &form, &[("Cookie", &cookie), xff[0]]);
    assert_eq!(r.status, 204, "{}", r.text());
    p.flush();
    let contact: String = p
        .db()
        .query_row("SELECT id FROM contacts", [], |r| r.get(0))
        .expect("the form made a contact");
    assert!(count(&p, "SELECT count(*) FROM events WHERE company IS NOT NULL") >= 1);

    let mut pages = vec![
        "/".to_string(),
        "/contacts".to_string(),
        "/contacts?search=%3Cscript%3E".to_string(),
        format!("/contacts/{contact}"),
        "/companies".to_string(),
        "/companies/1".to_string(),
    ];
    for d in [
        "pages",
        "entry_pages",
        "exit_pages",
        "referrers",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "browsers",
        "os",
        "devices",
        "companies",
        "sites",
    ] {
        pages.push(format!("/breakdown?dimension={d}"));
    }
    let mut all = String::new();
    for path in &pages {
        let r = p.admin_get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let html = r.text();
        // Markup or a quote that ends an attribute; escaped text such as `onerror=` is harmless.
        for raw in ["<script", "<b>", "<img", "\" onmouseover=\""] {
            assert!(!html.contains(raw), "{path}: unescaped {raw:?}");
        }
        all.push_str(&html);
    }
    // The values were shown (escaped), not dropped: otherwise the test would prove nothing.
    for shown in [
        "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;",
        "&lt;script&gt;alert(&#39;src&#39;)&lt;/script&gt;",
        "&lt;script&gt;alert(&#39;co&#39;)&lt;/script&gt;",
        "&lt;script&gt;alert(&#39;mail&#39;)&lt;/script&gt;",
        "&lt;script&gt;alert(&#39;event&#39;)&lt;/script&gt;",
        "&quot;&gt;&lt;b&gt;m&lt;/b&gt;",
    ] {
        assert!(all.contains(shown), "{shown} is not on any dashboard page");
    }
}
