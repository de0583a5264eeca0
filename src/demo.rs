//! `smproxy demo`: a built-in sample origin, the proxy in front of it and the admin listener,
//! all on loopback, no configuration needed.

use std::net::TcpListener;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;

/// The demo's client ID (any valid ID works; this one is the documentation's example).
pub const DEMO_CLIENT_ID: &str = "95o3qh61adymeazk";

/// The sample origin's pages: one per case the proxy handles.
pub struct SampleOrigin;

const HOME: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>smproxy demo shop</title>
<script>var note = "a '</head>' inside a script is not the end of the head";</script>
</head>
<body>
<h1>smproxy demo shop</h1>
<p>This page comes from the sample origin, which knows nothing about monitoring codes.
View the source: one monitoring code was added right before <code>&lt;/head&gt;</code>.</p>
<ul>
<li><a href="/no-tags">A page with no head or body tags</a> (the code goes at the end)</li>
<li><a href="/form">A newsletter form</a></li>
<li><a href="/double">A page that already carries the code twice</a> (the second one is removed)</li>
<li><a href="/data.json">JSON that mentions &lt;/head&gt;</a> (not HTML: untouched)</li>
<li><a href="/missing">A 404 page</a> (error pages get the code too)</li>
</ul>
</body>
</html>
"#;

const NO_TAGS: &str = "<!doctype html><title>No head, no body</title><p>Legal HTML without head or body tags. The code is appended at the end of the document.\n";

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Newsletter</title></head>
<body>
<h1>Newsletter</h1>
<form method="post" action="/form">
<label>E-mail <input type="email" name="email" required></label>
<label>Password (never read by the tracker) <input type="password" name="password"></label>
<button type="submit">Subscribe</button>
</form>
</body></html>
"#;

const DOUBLE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pasted twice</title>
<script type="text/javascript">
var _smid = "95o3qh61adymeazk";
(function(w, r, a, sm, s ) {
w['SalesmanagoObject'] = r;
w[r] = w[r] || function () {( w[r].q = w[r].q || [] ).push(arguments)};
sm = document.createElement('script'); sm.type = 'text/javascript'; sm.async = true; sm.src = a;
s = document.getElementsByTagName('script')[0];
s.parentNode.insertBefore(sm, s);
})(window, 'sm', '/_sm/sm.js');
</script>
</head>
<body>
<p>The template pasted the monitoring code in the head and again before the end of the body.
The proxy keeps the first and removes the second.</p>
<script type="text/javascript">
var _smid = "95o3qh61adymeazk";
(function(w, r, a, sm, s ) {
w['SalesmanagoObject'] = r;
w[r] = w[r] || function () {( w[r].q = w[r].q || [] ).push(arguments)};
})(window, 'sm', '/_sm/sm.js');
</script>
</body></html>
"#;

fn page(status: StatusCode, content_type: &str, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body.as_bytes().to_vec())
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for SampleOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let html = "text/html; charset=utf-8";
        match session.req_header().uri.path() {
            "/" => page(StatusCode::OK, html, HOME),
            "/no-tags" => page(StatusCode::OK, html, NO_TAGS),
            "/form" => page(StatusCode::OK, html, FORM),
            "/double" => page(StatusCode::OK, html, DOUBLE),
            "/data.json" => page(StatusCode::OK, "application/json", "{\"html\": \"</head>\"}\n"),
            _ => page(
                StatusCode::NOT_FOUND,
                html,
                "<!doctype html><html><head><title>Not found</title></head><body><h1>Not found</h1></body></html>\n",
            ),
        }
    }
}

/// The sample origin as a Pingora service on `addr`.
pub fn origin_service(addr: &str) -> Service<SampleOrigin> {
    let mut s = Service::new("smproxy demo origin".to_string(), SampleOrigin);
    s.add_tcp(addr);
    s
}

/// `preferred` if it is free, otherwise any free loopback port.
pub fn free_addr(preferred: u16) -> std::io::Result<String> {
    if TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(format!("127.0.0.1:{preferred}"));
    }
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// The demo's configuration, in the same YAML a user would write.
pub fn demo_yaml(listen: &str, admin: &str, origin: &str) -> String {
    format!(
        "listen: \"{listen}\"\nclient_id: \"{DEMO_CLIENT_ID}\"\nsites:\n  - name: demo\n    hosts: [\"*\"]\n    upstream: \"{origin}\"\n\
admin:\n  listen: \"{admin}\"\nstore:\n  sqlite: \"smproxy-demo.db\"\n"
    )
}

/// Runs the demo until interrupted.
pub fn run() -> anyhow::Result<()> {
    let listen = free_addr(8080)?;
    let admin = free_addr(9090)?;
    let origin = free_addr(8081)?;
    let settings = crate::config::parse_str(&demo_yaml(&listen, &admin, &origin))
        .map_err(|e| anyhow::anyhow!("demo configuration: {e}"))?;
    let mut built = crate::server::build(Arc::new(settings), Default::default())?;
    built.server.add_service(origin_service(&origin));
    println!("smproxy demo is running (Ctrl-C to stop)\n");
    println!("  site through the proxy:  http://{listen}/");
    println!("  the same origin, direct: http://{origin}/   (compare the page source)");
    println!("  dashboard:               http://{admin}/login");
    println!("  admin token (to log in): in the file smproxy-demo.db.admin-token");
    println!("  health:                  http://{admin}/healthz\n");
    println!("  try: curl -s http://{listen}/ | grep -c _smid");
    println!("  then open the site in a browser, submit the form, and look at the dashboard");
    built.run_forever()
}
