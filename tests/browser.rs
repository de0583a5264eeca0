//! End to end in a real browser: headless chromium loads pages through smproxy, the injected
//! tracker runs, its beacons come back to the proxy, and the SQLite file shows what was stored.

mod common;

use std::sync::{Arc, OnceLock};

use common::browser::{eventually, Browser};
use common::{html_response, Origin, Proxy};
use rusqlite::OptionalExtension;

/// The test site's pages. `{blog}` becomes the sibling site's base URL.
fn page(path: &str, blog: &str) -> String {
    let title = match path {
        "/a" => "Page A",
        "/b" => "Page B",
        _ => "Other page",
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
<h1>{title}</h1>\
<a id=\"next\" href=\"/b\">next</a> <a id=\"blog\" href=\"{blog}/landing\">blog</a>\
<form id=\"signup\" action=\"/thanks\" method=\"post\" onsubmit=\"event.preventDefault()\">\
<input type=\"email\" name=\"email\" id=\"email\"><input type=\"password\" name=\"pw\" id=\"pw\">\
<button id=\"go\" type=\"submit\">go</button></form>\
<button id=\"spa\" onclick=\"history.pushState({{}}, '', '/spa-page')\">spa</button>\
</body></html>"
    )
}

struct Fixture {
    proxy: Proxy,
    _origin: Origin,
    port: u16,
}

impl Fixture {
    /// Two sites on one proxy, `shop.test` and `blog.test`, in front of one origin.
    fn start(extra: &str) -> Fixture {
        let blog_base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let base = blog_base.clone();
        let origin = Origin::respond(move |req| {
            let path = req.path.split('?').next().unwrap_or("/");
            html_response(page(path, base.get().map_or("", String::as_str)).as_bytes())
        });
        let sites = format!(
            "sites:\n  - name: shop\n    hosts: [\"shop.test\"]\n    upstream: \"{o}\"\n  - name: blog\n    hosts: [\"blog.test\"]\n    upstream: \"{o}\"\n",
            o = origin.addr
        );
        let proxy = Proxy::start_with_sites(&sites, extra);
        let port: u16 = proxy.addr.rsplit(':').next().unwrap().parse().unwrap();
        blog_base.set(format!("http://blog.test:{port}")).unwrap();
        Fixture {
            proxy,
            _origin: origin,
            port,
        }
    }

    fn shop(&self, path: &str) -> String {
        format!("http://shop.test:{}{path}", self.port)
    }

    fn blog(&self, path: &str) -> String {
        format!("http://blog.test:{}{path}", self.port)
    }

    /// Rows of `sql` (one text column) once the writer has caught up.
    fn texts(&self, sql: &str) -> Vec<Option<String>> {
        self.proxy.flush();
        let db = self.proxy.db();
        let mut st = db.prepare(sql).unwrap();
        st.query_map([], |r| r.get::<_, Option<String>>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn count(&self, sql: &str) -> i64 {
        self.proxy.flush();
        self.proxy.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Waits until a page view of `path` (on `site`) is stored; returns its row id.
    async fn pageview(&self, site: &str, path: &str) -> i64 {
        let sql = format!(
            "SELECT id FROM events WHERE kind='pageview' AND site='{site}' AND path='{path}' ORDER BY id DESC LIMIT 1"
        );
        eventually(&format!("a page view of {site}{path}"), || {
            self.proxy.flush();
            self.proxy
                .db()
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .optional()
                .unwrap()
        })
        .await
    }

    fn metric(&self, line_prefix: &str) -> u64 {
        let text = self.proxy.metrics_text();
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

fn event_text(f: &Fixture, id: i64, column: &str) -> Option<String> {
    f.texts(&format!("SELECT {column} FROM events WHERE id={id}"))
        .pop()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_counts_page_views_with_the_right_cookie() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    b.goto(&f.shop("/a?utm_source=news")).await;
    let first = f.pageview("shop", "/a").await;

    // The tracker ran once: one monitoring code, one tracker script, one page view.
    let codes = b
        .js("return [...document.scripts].filter(s => s.text.includes(\"_smid\")).length")
        .await;
    assert_eq!(codes, 1);
    let trackers = b
        .js("return document.querySelectorAll('script[src*=\"/_sm/sm.js\"]').length")
        .await;
    assert_eq!(trackers, 1);
    assert_eq!(
        f.count("SELECT count(*) FROM events WHERE kind='pageview'"),
        1
    );
    assert_eq!(event_text(&f, first, "site").as_deref(), Some("shop"));
    assert_eq!(
        event_text(&f, first, "url"),
        Some(f.shop("/a?utm_source=news"))
    );
    assert_eq!(event_text(&f, first, "title").as_deref(), Some("Page A"));
    assert_eq!(event_text(&f, first, "utm_source").as_deref(), Some("news"));
    assert_eq!(event_text(&f, first, "referrer"), None);

    let smuuid = b.wait_cookie("smuuid").await;
    assert_eq!(smuuid.value().len(), 36);
    assert_eq!(smuuid.path(), Some("/"));
    assert_eq!(smuuid.http_only(), Some(true));
    assert_eq!(smuuid.secure(), Some(false), "plain HTTP: not Secure");
    assert_eq!(
        smuuid.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax")
    );
    assert_eq!(
        smuuid.domain().map(|d| d.trim_start_matches('.')),
        Some("shop.test")
    );
    assert_eq!(
        event_text(&f, first, "visitor_id").as_deref(),
        Some(smuuid.value())
    );

    // A link to the next page: a second page view, referred by the first.
    b.client
        .find(fantoccini::Locator::Id("next"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let second = f.pageview("shop", "/b").await;
    assert_eq!(
        event_text(&f, second, "referrer"),
        Some(f.shop("/a?utm_source=news"))
    );

    // A pushState navigation (single-page app) is a page view too.
    b.client
        .find(fantoccini::Locator::Id("spa"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let third = f.pageview("shop", "/spa-page").await;
    assert_eq!(event_text(&f, third, "referrer"), Some(f.shop("/b")));
    assert_eq!(
        f.count(&format!(
            "SELECT count(DISTINCT visitor_id) FROM events WHERE visitor_id = '{}'",
            smuuid.value()
        )),
        1
    );
    assert_eq!(
        f.count("SELECT count(DISTINCT session_id) FROM events WHERE kind='pageview'"),
        1,
        "one visit"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_an_email_identifies_the_visitor_and_their_past() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    b.goto(&f.shop("/a")).await;
    let anonymous = f.pageview("shop", "/a").await;
    assert_eq!(event_text(&f, anonymous, "contact_id"), None);
    let visitor = b.wait_cookie("smuuid").await.value().to_string();

    b.client
        .find(fantoccini::Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("Jan.Kowalski@Example.com")
        .await
        .unwrap();
    b.client
        .find(fantoccini::Locator::Id("pw"))
        .await
        .unwrap()
        .send_keys("hunter2-secret")
        .await
        .unwrap();
    b.client
        .find(fantoccini::Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let smclient = b.wait_cookie("smclient").await;
    assert_eq!(smclient.http_only(), Some(true));

    let contact = eventually("the contact", || {
        f.texts("SELECT id FROM contacts WHERE email='jan.kowalski@example.com'")
            .pop()
            .flatten()
    })
    .await;
    // The earlier anonymous page view now belongs to the contact.
    eventually("the past joined to the contact", || {
        (event_text(&f, anonymous, "contact_id").as_deref() == Some(contact.as_str())).then_some(())
    })
    .await;
    assert_eq!(
        f.texts(&format!(
            "SELECT identify_source FROM events WHERE kind='identify' AND visitor_id='{visitor}'"
        )),
        vec![Some("form".to_string())]
    );
    // Field names are kept, the password field's not even that, its value never.
    let form = f.texts("SELECT props_json FROM events WHERE kind='form'");
    let props = form[0].clone().unwrap();
    assert!(props.contains("email") && !props.contains("pw"), "{props}");
    let everything = f.texts("SELECT coalesce(props_json,'') || coalesce(url,'') FROM events");
    assert!(
        everything.iter().flatten().all(|t| !t.contains("hunter2")),
        "a password reached the store"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailing_link_sets_smclient_and_leaves_a_clean_address() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    let contact = "0f8fad5b-d9cb-469f-a165-70867728950e";
    b.goto(&f.shop(&format!("/a?smclient={contact}&ref=mail")))
        .await;
    assert_eq!(b.url().await, f.shop("/a?ref=mail"));
    b.wait_cookie("smclient").await;
    let view = f.pageview("shop", "/a").await;
    assert_eq!(event_text(&f, view, "contact_id").as_deref(), Some(contact));
    assert_eq!(
        f.texts("SELECT identify_source FROM events WHERE kind='identify'"),
        vec![Some("email_link".to_string())]
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM contacts WHERE id='{contact}'"
        )),
        1
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_to_a_sibling_site_carries_the_identity() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    let contact = "5b6e2f8c-3a1d-4e7f-9b2c-8d4a6e1f0c3b";
    b.goto(&f.shop(&format!("/a?smclient={contact}"))).await;
    f.pageview("shop", "/a").await;
    let shop_ids = f
        .texts("SELECT smids FROM events WHERE site='shop' AND kind='pageview'")
        .pop()
        .flatten()
        .expect("smids on the shop's page view");
    // The page view's answer (sent as the event was queued) gave the tracker a token for
    // blog.test; give the browser a moment to read it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    b.client
        .find(fantoccini::Locator::Id("blog"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let landing = f.pageview("blog", "/landing").await;
    let url = b.url().await;
    assert_eq!(url, f.blog("/landing"), "_smx left the address bar");
    assert!(b.cookie("smids").await.is_some());
    assert!(b.cookie("smclient").await.is_some());
    assert_eq!(
        event_text(&f, landing, "contact_id").as_deref(),
        Some(contact)
    );
    assert_eq!(event_text(&f, landing, "smids"), Some(shop_ids));
    assert_eq!(
        f.texts("SELECT identify_source FROM events WHERE kind='identify' AND site='blog'"),
        vec![Some("linker".to_string())]
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_consent_required_nothing_is_set_or_stored_before_consent() {
    let f = Fixture::start("consent:\n  mode: required\n");
    let b = Browser::start().await;
    b.goto(&f.shop("/a")).await;
    eventually("the tracker's page view beacon", || {
        (f.metric("smproxy_events_without_consent_total{site=\"shop\"}") >= 1).then_some(())
    })
    .await;
    assert!(b.cookies().await.is_empty(), "{:?}", b.cookies().await);
    assert_eq!(f.count("SELECT count(*) FROM events"), 0);

    b.js("sm('consent', true); return 1").await;
    let smuuid = b.wait_cookie("smuuid").await;
    let view = f.pageview("shop", "/a").await;
    assert_eq!(
        event_text(&f, view, "visitor_id").as_deref(),
        Some(smuuid.value())
    );
    assert_eq!(b.cookie("smconsent").await.unwrap().value(), "1");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_privacy_control_sets_no_identifier() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    b.cdp("Network.enable", serde_json::json!({})).await;
    b.cdp(
        "Network.setExtraHTTPHeaders",
        serde_json::json!({ "headers": { "Sec-GPC": "1" } }),
    )
    .await;
    b.goto(&f.shop("/a")).await;
    let view = f.pageview("shop", "/a").await;
    assert!(b.cookies().await.is_empty(), "{:?}", b.cookies().await);
    // Counted, but anonymously.
    assert_eq!(event_text(&f, view, "visitor_id"), None);
    assert_eq!(event_text(&f, view, "smids"), None);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_smclient_is_ignored() {
    let f = Fixture::start("");
    let b = Browser::start().await;
    b.goto(&f.shop("/b")).await;
    f.pageview("shop", "/b").await;
    let forged = "AQIAAAAA8I_a1dnLRp-hZXCGdyiVDgAAAABoZWxsby4.c2lnbmF0dXJlLXRoYXQtaXMtbm90LXZhbGlk";
    b.cdp(
        "Network.setCookie",
        serde_json::json!({ "name": "smclient", "value": forged, "url": f.shop("/"), "path": "/" }),
    )
    .await;
    b.goto(&f.shop("/a")).await;
    let view = f.pageview("shop", "/a").await;
    assert_eq!(event_text(&f, view, "contact_id"), None);
    assert_eq!(f.count("SELECT count(*) FROM contacts"), 0);
    assert!(f.metric("smproxy_cookies_rejected_total{site=\"shop\"}") >= 1);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_browsers_are_counted_as_robots_not_visitors() {
    let f = Fixture::start("");
    let b = Browser::start_with_ua(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
    )
    .await;
    b.goto(&f.shop("/a")).await;
    let view = f.pageview("shop", "/a").await;
    assert_eq!(
        event_text(&f, view, "CAST(is_bot AS TEXT)").as_deref(),
        Some("1")
    );
    assert_eq!(event_text(&f, view, "visitor_id"), None);
    assert!(b.cookies().await.is_empty());
    assert!(f.metric("smproxy_bot_requests_total{site=\"shop\"}") >= 1);
    b.close().await;
}
