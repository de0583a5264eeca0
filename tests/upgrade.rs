//! Zero-downtime upgrade and graceful shutdown of the real binary: under a keep-alive load, a
//! new `smproxy -u` takes over the listening sockets and the old one gets SIGQUIT, with no
//! failed request; SIGTERM lets an in-flight request finish within the grace period.
//!
//! Counting rule of the load: a request fails when it gets no complete `200`, except the case
//! every HTTP client handles by sending again (RFC 9112 §9.3.1): a kept-alive connection that
//! the server closed before any byte of the answer. Those are counted apart as reconnects.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_addr, html_response, Origin, TempDir};

/// A running smproxy process, killed if the test fails before it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, upgrade: bool, log: &Path) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smproxy"));
    cmd.arg("-c").arg(config).env("SMPROXY_LOG", "info");
    if upgrade {
        cmd.arg("-u");
    }
    let log = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    Running(cmd.spawn().expect("start smproxy"))
}

fn signal(p: &Running, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.0.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn wait_exit(p: &mut Running, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "smproxy did not exit in {within:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_accepting(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never accepted");
        thread::sleep(Duration::from_millis(20));
    }
}

fn config(dir: &Path, listen: &str, origin: &str, access: bool) -> std::path::PathBuf {
    let path = dir.join("smproxy.yaml");
    let yaml = format!(
        "listen: \"{listen}\"\nclient_id: \"testclient\"\nthreads: 2\ngrace_period_seconds: 3\n\
sites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"{origin}\"\n\
admin:\n  listen: \"{admin}\"\n  token: \"{token}\"\ncookies:\n  secret: \"{secret}\"\n\
store:\n  sqlite: \"{db}\"\nlog:\n  format: json\n  access: {access}\n",
        admin = free_addr(),
        token = common::TEST_ADMIN_TOKEN,
        secret = common::TEST_SECRET,
        db = dir.join("events.db").display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

enum Outcome {
    /// A complete answer; `reusable` unless it said `Connection: close`.
    Ok {
        reusable: bool,
    },
    /// The kept-alive connection was closed before any byte of the answer.
    Closed,
    Failed(String),
}

/// One keep-alive `GET /` and its whole answer (Content-Length or chunked).
fn one_request(r: &mut BufReader<TcpStream>) -> Outcome {
    let req = b"GET / HTTP/1.1\r\nHost: test.example\r\nAccept: text/html\r\n\r\n";
    if r.get_mut().write_all(req).is_err() {
        return Outcome::Closed;
    }
    let mut status = String::new();
    match r.read_line(&mut status) {
        Ok(0) | Err(_) => return Outcome::Closed,
        Ok(_) => {}
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Outcome::Failed(status);
    }
    let (mut len, mut chunked, mut close) = (None, false, false);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return Outcome::Failed("headers cut".into());
        }
        let l = l.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
        close |= l.starts_with("connection:") && l.contains("close");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).unwrap_or(0) == 0 {
                return Outcome::Failed("body cut".into());
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            if r.read_exact(&mut chunk).is_err() {
                return Outcome::Failed("body cut".into());
            }
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        if r.read_exact(&mut body).is_err() {
            return Outcome::Failed("body cut".into());
        }
    }
    if !String::from_utf8_lossy(&body).contains("_smid") {
        return Outcome::Failed("page without the monitoring code".into());
    }
    Outcome::Ok { reusable: !close }
}

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    reconnects: AtomicUsize,
    failed: AtomicUsize,
}

fn load(addr: String, stop: Arc<AtomicBool>, stats: Arc<Load>) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let fresh = conn.is_none();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(&addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    BufReader::new(s)
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("connect failed: {e}");
                    continue;
                }
            },
        };
        match one_request(&mut c) {
            Outcome::Ok { reusable } => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                conn = reusable.then_some(c);
            }
            Outcome::Closed if !fresh => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Closed => {
                // A fresh connection closed before answering is a failed request: the server
                // accepted it, so it owes it an answer even while it shuts down.
                stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("fresh connection closed without an answer");
            }
            Outcome::Failed(why) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("request failed: {why}");
            }
        }
    }
}

#[test]
fn upgrade_under_load_fails_no_request() {
    let origin = Origin::respond(|_| {
        html_response(b"<html><head><title>t</title></head><body>page</body></html>")
    });
    let dir = TempDir::new("upgrade");
    let listen = free_addr();
    let cfg = config(&dir.0, &listen, &origin.addr.to_string(), false);
    let mut old = start(&cfg, false, &dir.0.join("old.log"));
    wait_accepting(&listen);

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Load::default());
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (a, s, st) = (listen.clone(), stop.clone(), stats.clone());
            thread::spawn(move || load(a, s, st))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let before = stats.ok.load(Ordering::Relaxed);
    assert!(before > 0, "the load never got an answer");

    // The new process waits for the sockets; the old one hands them over on SIGQUIT.
    let mut new = start(&cfg, true, &dir.0.join("new.log"));
    thread::sleep(Duration::from_millis(500));
    signal(&old, "QUIT");
    let st = wait_exit(&mut old, Duration::from_secs(15));
    assert!(st.success(), "the old process exited with {st:?}");
    let at_handover = stats.ok.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, reconnects, failed) = (
        stats.ok.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
    );
    eprintln!("upgrade under load: {ok} ok, {reconnects} reconnects, {failed} failed");
    let new_log = std::fs::read_to_string(dir.0.join("new.log")).unwrap_or_default();
    assert_eq!(
        failed, 0,
        "failed requests during the upgrade; new process log:\n{new_log}"
    );
    assert!(
        ok > at_handover,
        "the new process answered nothing after the old one left"
    );
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process is not running:\n{new_log}"
    );
    signal(&new, "TERM");
    assert!(wait_exit(&mut new, Duration::from_secs(15)).success());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let origin = Origin::start(|_, s| {
        thread::sleep(Duration::from_millis(1200));
        let _ = s.write_all(&html_response(
            b"<html><head></head><body>slow page</body></html>",
        ));
    });
    let dir = TempDir::new("graceful");
    let listen = free_addr();
    let cfg = config(&dir.0, &listen, &origin.addr.to_string(), true);
    let mut p = start(&cfg, false, &dir.0.join("p.log"));
    wait_accepting(&listen);
    let addr = listen.clone();
    let in_flight =
        thread::spawn(move || common::request(&addr, "GET", "/slow?smclient=secret", &[]));
    thread::sleep(Duration::from_millis(300));
    signal(&p, "TERM");
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("slow page"));
    // Exits within the grace period (3 s) plus the shutdown timeout, having flushed events.
    let st = wait_exit(&mut p, Duration::from_secs(15));
    assert!(st.success(), "{st:?}");
    let log = std::fs::read_to_string(dir.0.join("p.log")).unwrap();
    assert!(log.contains("event writer flushed"), "{log}");
    // log.format: json: every line is one JSON object; log.access: one line for the request,
    // without its query string.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let access: Vec<_> = lines.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 1, "{log}");
    assert_eq!(access[0]["path"], "/slow");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["method"], "GET");
    assert!(!log.contains("secret"), "{log}");
}

#[test]
fn a_connection_accepted_before_shutdown_gets_its_first_request_answered() {
    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>late</body></html>"));
    let dir = TempDir::new("accepted");
    let listen = free_addr();
    let cfg = config(&dir.0, &listen, &origin.addr.to_string(), false);
    let mut p = start(&cfg, false, &dir.0.join("p.log"));
    wait_accepting(&listen);
    // Connected (and accepted) but silent when the shutdown starts, the way a browser's
    // preconnected socket is.
    let silent = TcpStream::connect(&listen).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut silent = BufReader::new(silent);
    thread::sleep(Duration::from_millis(300));
    signal(&p, "TERM");
    thread::sleep(Duration::from_millis(300));
    match one_request(&mut silent) {
        // Answered, and told not to come back: the server is going away.
        Outcome::Ok { reusable } => assert!(!reusable, "kept alive during a shutdown"),
        Outcome::Closed => panic!("closed without an answer"),
        Outcome::Failed(why) => panic!("{why}"),
    }
    assert!(wait_exit(&mut p, Duration::from_secs(15)).success());
}

#[test]
fn sighup_reloads_certificates_and_keeps_open_connections() {
    use common::tls::{connect, negotiated, TestCa};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = Origin::respond(|_| html_response(b"<html><head></head><body>p</body></html>"));
    let dir = TempDir::new("sighup");
    let ca = TestCa::new();
    let first = ca.issue(&dir.0, "site", &["r.example"]);
    let (listen, https) = (free_addr(), free_addr());
    let cfg = config(&dir.0, &listen, &origin.addr.to_string(), false);
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace(
        "    upstream:",
        &format!(
            "    tls:\n      cert: \"{}\"\n      key: \"{}\"\n    upstream:",
            first.cert_path.display(),
            first.key_path.display()
        ),
    );
    std::fs::write(&cfg, format!("{yaml}listen_tls: \"{https}\"\n")).unwrap();
    let mut p = start(&cfg, false, &dir.0.join("p.log"));
    wait_accepting(&https);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut open = connect(&https, "r.example", &ca.der(), &[b"http/1.1"])
            .await
            .unwrap();
        assert_eq!(negotiated(&open).0, Some(first.der.clone()));

        let renewed = ca.issue(&dir.0, "site", &["r.example"]);
        signal(&p, "HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = connect(&https, "r.example", &ca.der(), &[b"http/1.1"])
                .await
                .unwrap();
            if negotiated(&s).0 == Some(renewed.der.clone()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the renewed certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The connection opened before the reload still works.
        open.write_all(b"GET / HTTP/1.1\r\nHost: r.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = open.read_to_end(&mut raw).await;
        assert!(
            raw.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    });
    assert!(
        p.0.try_wait().unwrap().is_none(),
        "SIGHUP stopped the process"
    );
    signal(&p, "TERM");
    assert!(wait_exit(&mut p, Duration::from_secs(15)).success());
}
