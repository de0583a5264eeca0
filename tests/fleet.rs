//! Fleet mode: two smproxy instances with one cookie secret on one PostgreSQL database behave
//! as one. A visitor identified through a form on instance A and seen later on instance B has
//! one profile with both visits, and every instance's dashboard shows the same numbers.

mod backend;
mod common;

use backend::{Backend, TestDb};
use common::{html_response, request_body, Origin, Proxy};
use serde_json::Value;

const SITE: &str =
    "sites:\n  - name: shop\n    hosts: [\"test.example\"]\n    upstream: \"ORIGIN\"\n";

fn beacon(p: &Proxy, json: &str, cookie: Option<&str>) -> common::Resp {
    let mut headers = vec![
        ("Origin", "http://test.example"),
        ("Content-Type", "text/plain;charset=UTF-8"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        ),
    ];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    let r = request_body(&p.addr, "POST", "/_sm/collect", &headers, json.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    r
}

/// The cookies a response set, as a `Cookie` header, merged over `jar`.
fn jar_after(jar: &str, r: &common::Resp) -> String {
    let mut cookies: Vec<(String, String)> = jar
        .split("; ")
        .filter(|c| !c.is_empty())
        .filter_map(|c| c.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for set in r.header_all("set-cookie") {
        let pair = set.split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        cookies.retain(|(name, _)| name != k);
        cookies.push((k.to_owned(), v.to_owned()));
    }
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn json(p: &Proxy, path: &str) -> Value {
    let r = p.admin_get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn pageview(path: &str) -> String {
    format!(r#"{{"type":"pageview","url":"http://test.example{path}","title":"T"}}"#)
}

#[test]
fn two_instances_on_one_database_share_visitors_contacts_and_numbers() {
    let db = TestDb::new(Backend::Postgres, "fleet");
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let sites = SITE.replace("ORIGIN", &origin.addr.to_string());
    // Same cookie secret (the test default) and the same database on both.
    let a = Proxy::start_with_sites(&sites, &db.store_yaml());
    let b = Proxy::start_with_sites(&sites, &db.store_yaml());

    // On A: a page view, then a form with an email, which identifies the visitor.
    let first = beacon(&a, &pageview("/shoes"), None);
    let jar = jar_after("", &first);
    assert!(jar.contains("smuuid="), "{jar}");
    let form = beacon(
        &a,
        r#"{"type":"form","url":"http://test.example/contact","email":"Jan@Firma.pl","fields":["email"]}"#,
        Some(&jar),
    );
    let jar = jar_after(&jar, &form);
    assert!(jar.contains("smclient="), "{jar}");
    a.flush();

    // Later on B, with the cookies A set: B verifies them with the shared secret.
    let later = beacon(&b, &pageview("/checkout"), Some(&jar));
    assert!(
        later
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with(&format!("smuuid={}", cookie(&jar, "smuuid")))),
        "B kept the visitor id"
    );
    // Someone else, on B only.
    beacon(&b, &pageview("/"), None);
    b.flush();

    // One contact, the same from both instances, with both visits.
    let contacts_a = json(&a, "/api/contacts");
    assert_eq!(contacts_a, json(&b, "/api/contacts"));
    let list = contacts_a["contacts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{contacts_a}");
    assert_eq!(list[0]["email"], "jan@firma.pl");
    assert_eq!(list[0]["pageviews"], 2, "{contacts_a}");
    let id = list[0]["id"].as_str().unwrap();
    let card = json(&b, &format!("/api/contacts/{id}"));
    assert_eq!(card, json(&a, &format!("/api/contacts/{id}")));
    let paths: Vec<&str> = card["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "pageview")
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/checkout", "/shoes"], "{card}");
    assert_eq!(
        card["sessions"], 1,
        "one visit across both instances: {card}"
    );

    // Every instance shows the same numbers.
    for path in [
        "/api/stats?site=shop",
        "/api/breakdown?dimension=pages",
        "/api/timeseries",
        "/api/status",
    ] {
        let (ja, jb) = (json(&a, path), json(&b, path));
        assert_eq!(ja, jb, "{path}");
    }
    let stats = json(&a, "/api/stats?site=shop");
    assert_eq!(stats["pageviews"], 3, "{stats}");
    assert_eq!(stats["visitors"], 2, "{stats}");
    assert_eq!(stats["sessions"], 2, "{stats}");
    assert_eq!(stats["contacts"], 1, "{stats}");
}

fn cookie<'a>(jar: &'a str, name: &str) -> &'a str {
    jar.split("; ")
        .find_map(|c| c.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {jar}"))
}
