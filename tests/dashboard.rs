//! The dashboard in a real browser: real visits go through the proxy into the SQLite file, then
//! headless chromium logs in to the admin listener and looks at what the owner would see.

mod common;

use common::browser::{eventually, Browser};
use common::{html_response, Origin, Proxy, TEST_ADMIN_TOKEN};
use fantoccini::Locator;

/// A page whose title is markup: the dashboard must show it as text and run nothing.
const HOSTILE_TITLE: &str = "<img src=x onerror=\"document.title='pwned'\">";

fn hostile_page() -> Vec<u8> {
    let escaped = HOSTILE_TITLE
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    html_response(
        format!("<!doctype html><html><head><title>{escaped}</title></head><body><p>hi</p></body></html>")
            .as_bytes(),
    )
}

async fn log_in(b: &Browser, admin: &str) {
    b.goto(&format!("http://{admin}/login")).await;
    b.client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TEST_ADMIN_TOKEN)
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_real_visits_safely() {
    let origin = Origin::respond(|_| hostile_page());
    let sites = format!(
        "sites:\n  - name: shop\n    hosts: [\"shop.test\"]\n    upstream: \"{}\"\n",
        origin.addr
    );
    let proxy = Proxy::start_with_sites(&sites, "");
    let port = proxy.addr.rsplit(':').next().unwrap().to_string();
    let contact = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    let b = Browser::start().await;
    for path in ["/one", "/two", &format!("/three?smclient={contact}")] {
        b.goto(&format!("http://shop.test:{port}{path}")).await;
    }
    eventually("three stored page views", || {
        proxy.flush();
        let n: i64 = proxy
            .db()
            .query_row(
                "SELECT count(*) FROM events WHERE kind='pageview'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (n >= 3).then_some(())
    })
    .await;

    // Without logging in, the dashboard sends the browser to the login form.
    b.goto(&format!("http://{}/", proxy.admin)).await;
    assert!(b.url().await.contains("/login"), "{}", b.url().await);
    log_in(&b, &proxy.admin).await;
    b.goto(&format!("http://{}/", proxy.admin)).await;
    let text = b.js("return document.body.innerText").await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("shop"), "{text}");
    assert!(
        !text.contains("not detected yet"),
        "the code was seen: {text}"
    );
    let chart_marks = b
        .js("return document.querySelectorAll('svg.chart rect.bar').length")
        .await;
    assert!(chart_marks.as_u64().unwrap_or(0) >= 1, "{chart_marks}");
    let chart_height = b
        .js("return document.querySelector('svg.chart').getBoundingClientRect().height")
        .await;
    assert!(chart_height.as_f64().unwrap_or(0.0) > 50.0);
    assert!(b.screenshot_colours().await > 8, "the screenshot is blank");

    // The contact card shows the hostile title as text; nothing in it ran or loaded.
    b.goto(&format!("http://{}/contacts/{contact}", proxy.admin))
        .await;
    let card = b.js("return document.body.innerText").await;
    assert!(
        card.as_str().unwrap_or_default().contains(HOSTILE_TITLE),
        "{card}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('img').length").await,
        0
    );
    assert_ne!(b.js("return document.title").await, "pwned");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    b.close().await;
}
