//! No secret in logs, errors or `Debug`: the real binary runs with known cookie keys and admin
//! token (from the environment, as in production) at the `debug` log level, is exercised on
//! every path that logs (pages, beacons, bad and forged input, link tokens, the admin API with
//! wrong and right tokens, the login form, a refused configuration), and its whole output is
//! searched for the secrets and for the credentials it handed out.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{html_response, request, request_body, Origin, TempDir};
use smproxy::config::Secret;
use smproxy::identity::{self, Keys, Uuid};

const TOKEN: &str = "Adm1nT0ken-never-in-a-log-7f3a9c";
const KEY_NEW: &str = "CookieKeyNew-never-in-a-log-0123456789abcdef";
const KEY_OLD: &str = "CookieKeyOld-never-in-a-log-0123456789abcdef";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36";

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn smproxy() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smproxy"));
    c.env("SMPROXY_ADMIN_TOKEN", TOKEN)
        .env("SMPROXY_KEY_NEW", KEY_NEW)
        .env("SMPROXY_KEY_OLD", KEY_OLD)
        .env("SMPROXY_LOG", "debug");
    c
}

/// Everything a run printed, for the searches below.
fn assert_no_secret(output: &str, credentials: &[String]) {
    for secret in [TOKEN, KEY_NEW, KEY_OLD] {
        assert!(
            !output.contains(secret),
            "a secret is in the output:\n{output}"
        );
    }
    for c in credentials {
        assert!(
            !output.contains(c.as_str()),
            "a credential ({c}) is in the output:\n{output}"
        );
    }
}

#[test]
fn no_secret_or_credential_reaches_the_logs() {
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>hi</body></html>"));
    let dir = TempDir::new("secrets");
    let (listen, admin) = (common::free_addr(), common::free_addr());
    let config = write(
        &dir,
        "smproxy.yaml",
        &format!(
            "listen: \"{listen}\"\nclient_id: \"sec\"\ngrace_period_seconds: 1\n\
sites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"{}\"\n\
admin:\n  listen: \"{admin}\"\n  token_env: SMPROXY_ADMIN_TOKEN\n\
cookies:\n  secrets_env: [SMPROXY_KEY_NEW, SMPROXY_KEY_OLD]\n\
store:\n  sqlite: \"{}\"\ncollect:\n  rate_per_minute: 60\n  rate_burst: 5\n",
            origin.addr,
            dir.0.join("events.db").display()
        ),
    );
    let mut child = smproxy()
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smproxy");
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in [&listen, &admin] {
        while std::net::TcpStream::connect(a.as_str()).is_err() {
            assert!(Instant::now() < deadline, "smproxy never listened on {a}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let keys = Keys::new(&[Secret::new(KEY_NEW.into())]).unwrap();
    let contact = Uuid::new_v4();
    let now = identity::unix_now();
    let mut credentials = Vec::new();
    let nav = [("Accept", "text/html"), ("User-Agent", UA)];

    // Pages, with genuine, forged and expired identity.
    let page = request(&listen, "GET", "/", &nav);
    assert_eq!(page.status, 200);
    for c in page.header_all("set-cookie") {
        let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
        credentials.push(value.to_string());
    }
    let smlink = identity::issue_personal_link(&keys, contact, now, None);
    let smx = identity::issue_site_link(&keys, contact, Some(contact), "test.example", now, 120);
    let expired = identity::issue_site_link(&keys, contact, None, "test.example", now - 500, 120);
    let forged = identity::issue_client(
        &Keys::new(&[Secret::new("f".repeat(40))]).unwrap(),
        contact,
        now,
    );
    for path in [
        format!("/?smlink={smlink}"),
        format!("/?_smx={smx}"),
        format!("/?_smx={expired}"),
        format!("/?smlink={forged}"),
        format!("/?smclient={contact}"),
    ] {
        let r = request(&listen, "GET", &path, &nav);
        assert_eq!(r.status, 302, "{path}");
    }
    let r = request(
        &listen,
        "GET",
        "/",
        &[
            ("Accept", "text/html"),
            ("User-Agent", UA),
            ("Cookie", &format!("smclient={forged}; smids=junk")),
        ],
    );
    assert_eq!(r.status, 200);
    credentials.extend([smlink.clone(), smx.clone()]);

    // Beacons: good, malformed, too many.
    let beacon = |body: &str| {
        request_body(
            &listen,
            "POST",
            "/_sm/collect",
            &[
                ("Origin", "http://test.example"),
                ("Content-Type", "text/plain"),
                ("User-Agent", UA),
            ],
            body.as_bytes(),
        )
        .status
    };
    assert_eq!(
        beacon(r#"{"type":"pageview","url":"http://test.example/"}"#),
        204
    );
    assert_eq!(beacon("{not json"), 400);
    let statuses: Vec<u16> = (0..8)
        .map(|_| beacon(r#"{"type":"pageview","url":"http://test.example/"}"#))
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let form = format!(
        r#"{{"type":"form","url":"http://test.example/","email":"{}@example.com"}}"#,
        "secretive.person"
    );
    let _ = beacon(&form);

    // The admin side: no token, wrong tokens, the login form, then the right token.
    assert_eq!(request(&admin, "GET", "/api/status", &[]).status, 401);
    let near = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(
        request(&admin, "GET", "/api/status", &[("Authorization", &near)]).status,
        401
    );
    let login = request_body(
        &admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}&next=%2F").as_bytes(),
    );
    assert_eq!(login.status, 303);
    if let Some(c) = login.header("set-cookie") {
        credentials.push(
            c.split(';')
                .next()
                .unwrap()
                .split_once('=')
                .unwrap()
                .1
                .to_string(),
        );
    }
    let bearer = format!("Bearer {TOKEN}");
    let made = request_body(
        &admin,
        "POST",
        "/api/contacts",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        br#"{"email":"made@example.com"}"#,
    );
    assert!(made.status == 200 || made.status == 201, "{}", made.text());
    let link: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    if let Some(l) = link["link"]
        .as_str()
        .and_then(|l| l.split("smlink=").nth(1))
    {
        credentials.push(l.to_string());
    }
    assert_eq!(
        request(&admin, "GET", "/metrics", &[("Authorization", &bearer)]).status,
        200
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut output = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    assert!(child.wait().unwrap().success());
    // The run did log (so the search means something).
    assert!(output.lines().count() >= 3, "{output}");
    assert_no_secret(&output, &credentials);
}

#[test]
fn configuration_errors_never_show_a_secret() {
    let dir = TempDir::new("secrets-check");
    // Under 16 characters: too short for a token or a key.
    let short = "Sh0rt-s3cr3t";
    for (name, cookies) in [
        (
            "short inline key",
            format!("cookies:\n  secret: \"{short}\"\n"),
        ),
        (
            "inline key and env",
            format!("cookies:\n  secret: \"{KEY_NEW}\"\n  secret_env: SMPROXY_KEY_NEW\n"),
        ),
        (
            "key where a list goes",
            format!("cookies:\n  secrets: \"{KEY_NEW}\"\n"),
        ),
        (
            "token as a number key",
            format!("admin:\n  token: [\"{TOKEN}\"]\n"),
        ),
        (
            "short token",
            format!("admin:\n  token: \"{short}\"\n  listen: \"0.0.0.0:9\"\n"),
        ),
    ] {
        let config = write(
            &dir,
            "bad.yaml",
            &format!(
                "client_id: c\nsites:\n  - name: s\n    hosts: ['*']\n    upstream: '127.0.0.1:1'\n{cookies}"
            ),
        );
        let out = smproxy()
            .env("SMPROXY_KEY_NEW", short)
            .args(["--check", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{name}: accepted\n{all}");
        assert!(
            all.contains("cookies") || all.contains("admin"),
            "{name}: {all}"
        );
        for secret in [short, KEY_NEW, TOKEN] {
            assert!(
                !all.contains(secret),
                "{name}: the error shows a secret:\n{all}"
            );
        }
    }
}

#[test]
fn debug_of_the_loaded_configuration_shows_no_secret() {
    let yaml = format!(
        "client_id: c\nsites:\n  - name: s\n    hosts: ['*']\n    upstream: '127.0.0.1:1'\n\
admin:\n  token: \"{TOKEN}\"\ncookies:\n  secrets: [\"{KEY_NEW}\", \"{KEY_OLD}\"]\n"
    );
    let settings = smproxy::config::parse_str(&yaml).expect("valid");
    for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
        for secret in [TOKEN, KEY_NEW, KEY_OLD] {
            assert!(!shown.contains(secret), "Debug shows a secret:\n{shown}");
        }
        assert!(shown.contains("redacted"), "{shown}");
    }
    let keys = Keys::new(&[Secret::new(KEY_NEW.into())]).unwrap();
    assert!(!format!("{keys:?}").contains(KEY_NEW));
}
