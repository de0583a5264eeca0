//! Test helpers: a real origin on a loopback port (port 0), smproxy started in-process on
//! reserved ports, and a raw HTTP/1.x client that shows exactly what the proxy sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod binary;
pub mod browser;
pub mod tls;

use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Req, &mut TcpStream) + Send + Sync;

/// An HTTP origin on 127.0.0.1:0; each connection is served by `handler` on its own thread,
/// which writes the raw response (so tests control framing, timing and bytes exactly).
pub struct Origin {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl Origin {
    pub fn start(handler: impl Fn(&Req, &mut TcpStream) + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let reqs = requests.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut stream) = conn else { continue };
                let handler = handler.clone();
                let reqs = reqs.clone();
                thread::spawn(move || {
                    if let Some(req) = read_request(&mut stream) {
                        reqs.lock().unwrap().push(req.clone());
                        handler(&req, &mut stream);
                    }
                });
            }
        });
        Origin { addr, requests }
    }

    /// An origin that answers every request with `response(req)` (raw bytes) and closes.
    pub fn respond(response: impl Fn(&Req) -> Vec<u8> + Send + Sync + 'static) -> Origin {
        Origin::start(move |req, s| {
            let _ = s.write_all(&response(req));
        })
    }

    pub fn last_request(&self) -> Req {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the origin received no request")
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Req> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).ok()? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Req {
        method,
        path,
        headers,
    })
}

/// A complete response with `Content-Length` and `Connection: close`.
pub fn http_response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn html_response(body: &[u8]) -> Vec<u8> {
    http_response(
        "200 OK",
        &[("Content-Type", "text/html; charset=utf-8")],
        body,
    )
}

/// A free loopback address (the listener is closed, the port reused by the proxy).
///
/// The kernel may hand the port of a listener just closed to the next bind, so two calls in
/// a row (a public and an admin address) could return the same port: ports already handed
/// out by this process are skipped.
pub fn free_addr() -> String {
    static HANDED_OUT: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut seen = HANDED_OUT.lock().unwrap();
        if seen
            .get_or_insert_with(Default::default)
            .insert(addr.port())
        {
            return addr.to_string();
        }
    }
}

struct ChannelSignal(Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for ChannelSignal {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().unwrap().take();
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// smproxy running in this process.
pub struct Proxy {
    pub addr: String,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server_thread: Option<thread::JoinHandle<()>>,
    writer: Option<smproxy::store::EventWriter>,
    pub metrics: Arc<smproxy::metrics::Metrics>,
    /// The admin token the test configured (`None` when `extra` chose its own).
    pub admin_token: Option<String>,
    /// The SQLite file the proxy stores events in (a fresh temporary directory per proxy).
    pub db_path: PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "smproxy-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin token of test proxies.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The cookie secret of test proxies (two proxies with it accept each other's cookies).
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123";

impl Proxy {
    /// Starts smproxy with one site (`hosts: ["*"]`) in front of `origin`, plus `extra` YAML
    /// (top-level keys other than listen, client_id, sites, admin.listen).
    pub fn start(origin: &SocketAddr, extra: &str) -> Proxy {
        let sites =
            format!("sites:\n  - name: test\n    hosts: [\"*\"]\n    upstream: \"{origin}\"\n");
        Proxy::start_with_sites(&sites, extra)
    }

    pub fn start_with_sites(sites_yaml: &str, extra: &str) -> Proxy {
        let addr = free_addr();
        let admin = free_addr();
        let dir = TempDir::new("proxy");
        let db_path = dir.0.join("events.db");
        let mut yaml =
            format!("listen: \"{addr}\"\nclient_id: \"testclient\"\n{sites_yaml}{extra}\n");
        if !extra.contains("store:") {
            yaml.push_str(&format!("store:\n  sqlite: \"{}\"\n", db_path.display()));
        }
        if !extra.contains("cookies:") {
            yaml.push_str(&format!("cookies:\n  secret: \"{TEST_SECRET}\"\n"));
        }
        // The admin listener always needs a token: the test's own, unless `extra` sets one.
        let token_line = if extra.contains("token") {
            String::new()
        } else {
            format!("  token: \"{TEST_ADMIN_TOKEN}\"\n")
        };
        let yaml = if extra.contains("admin:") {
            yaml.replace(
                "admin:\n",
                &format!("admin:\n  listen: \"{admin}\"\n{token_line}"),
            )
        } else {
            format!("{yaml}admin:\n  listen: \"{admin}\"\n{token_line}")
        };
        let admin_token = (!token_line.is_empty()).then(|| TEST_ADMIN_TOKEN.to_string());
        let settings = smproxy::config::parse_str(&yaml)
            .unwrap_or_else(|e| panic!("test config:\n{e}\n{yaml}"));
        let opts = smproxy::server::ProcessOptions {
            no_grace: true,
            ..Default::default()
        };
        let built = smproxy::server::build(Arc::new(settings), opts).expect("build server");
        let (server, metrics, writer) = (built.server, built.metrics, built.writer);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut phase = server.watch_execution_phase();
        let server_thread = thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(ChannelSignal(Mutex::new(Some(rx)))),
            });
        });
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                while let Ok(p) = phase.recv().await {
                    if matches!(p, pingora::server::ExecutionPhase::Running) {
                        let _ = ready_tx.send(());
                        return;
                    }
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("smproxy did not reach Running");
        let p = Proxy {
            addr,
            admin,
            stop: Some(tx),
            server_thread: Some(server_thread),
            writer: Some(writer),
            metrics,
            admin_token,
            db_path,
            _dir: dir,
        };
        p.wait_accepting();
        p
    }

    /// Services start listening right after the Running phase; wait until they accept.
    fn wait_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for a in [&self.addr, &self.admin] {
            while TcpStream::connect(a.as_str()).is_err() {
                assert!(Instant::now() < deadline, "{a} never accepted");
                thread::yield_now();
            }
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(&self.addr, "GET", path, &[])
    }

    /// `GET path` on the admin listener with the test's token.
    pub fn admin_get(&self, path: &str) -> Resp {
        let token = self.admin_token.clone().unwrap_or_default();
        let bearer = format!("Bearer {token}");
        request(&self.admin, "GET", path, &[("Authorization", &bearer)])
    }

    pub fn metrics_text(&self) -> String {
        let r = self.admin_get("/metrics");
        String::from_utf8(r.body).unwrap()
    }
}

impl Proxy {
    /// Graceful shutdown as in production: the server stops, then the writer stores every
    /// accepted event. Returns the writer's final counters.
    pub fn shutdown(&mut self) -> smproxy::store::WriterStats {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.server_thread.take() {
            let _ = t.join();
        }
        self.writer.take().map(|w| w.shutdown()).unwrap_or_default()
    }

    /// Waits until the writer has stored everything enqueued so far.
    pub fn flush(&self) {
        let Some(q) = self.writer.as_ref().map(|w| w.queue()) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = q.stats();
            if s.queue_depth == 0 && s.written + s.abandoned >= s.enqueued {
                return;
            }
            assert!(Instant::now() < deadline, "writer did not catch up: {s:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a read-only query on the proxy's SQLite file (after [`Proxy::flush`]).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.db_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the proxy's store")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.writer.take() {
            // Joining the server first would wait for its runtimes; the writer only needs to
            // stop taking events, which it does on its own.
            if let Some(t) = self.server_thread.take() {
                let _ = t.join();
            }
            w.shutdown();
        }
    }
}

/// A response as the client received it; `body` is de-chunked, not decompressed.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_version(addr, method, path, headers, "HTTP/1.1")
}

/// A request with a body (`Content-Length` set). The body is written from another thread and
/// write errors are ignored, so a proxy that answers early (413) and closes is observed as it
/// behaves, not as a client-side broken pipe.
pub fn request_body(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: test.example\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut w = s.try_clone().unwrap();
    let body = body.to_vec();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("read response: {e}"),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    parse_response(&raw, method == "HEAD")
}

pub fn request_version(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    version: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} {version}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: test.example\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw, method == "HEAD")
}

pub fn parse_response(raw: &[u8], head: bool) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block")
        + 4;
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut sp = status_line.split_whitespace();
    let version = sp.next().unwrap().to_string();
    let status: u16 = sp.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let rest = &raw[end..];
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        version,
        headers,
        body,
        chunked,
    }
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The snippet smproxy injects for the test configuration (client ID `testclient`).
pub fn snippet() -> String {
    let tracker = smproxy::collect::tracker::Tracker::new("/_sm/collect");
    smproxy::snippet::Snippet::new("testclient", &tracker.src("/_sm/sm.js"))
        .html()
        .to_string()
}

/// The corpus of real pages: `$SMPROXY_CORPUS`, or `../shared/corpus/pages` next to the repo.
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("SMPROXY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pages")
        });
    assert!(
        dir.is_dir(),
        "corpus not found at {}: set SMPROXY_CORPUS (`.ci/run` fetches it with `npm pack htmlparser-benchmark@1.1.3`)",
        dir.display()
    );
    dir
}

pub fn corpus_pages() -> Vec<(String, Vec<u8>)> {
    let mut pages: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    pages.sort();
    assert!(
        pages.len() >= 100,
        "expected the full corpus, found {} pages",
        pages.len()
    );
    pages
}

/// Checks that `out` is `input` with `snippet` inserted once, right before `</head>`, `</body>`
/// (either case) or at the end; returns the anchor seen.
pub fn assert_injected_once(input: &[u8], out: &[u8], snippet: &str, what: &str) -> &'static str {
    let s = snippet.as_bytes();
    let positions: Vec<usize> = out
        .windows(s.len())
        .enumerate()
        .filter(|(_, w)| *w == s)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        positions.len(),
        1,
        "{what}: snippet found {} times",
        positions.len()
    );
    let at = positions[0];
    let mut without = out[..at].to_vec();
    without.extend_from_slice(&out[at + s.len()..]);
    assert!(
        without == input,
        "{what}: output is not the input plus the snippet"
    );
    let after = &out[at + s.len()..];
    let lower: Vec<u8> = after
        .iter()
        .take(7)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    if lower.starts_with(b"</head>") {
        "head"
    } else if lower.starts_with(b"</body>") {
        "body"
    } else if after.is_empty() {
        "end"
    } else {
        panic!(
            "{what}: snippet is not before an anchor: {:?}",
            String::from_utf8_lossy(&after[..after.len().min(40)])
        )
    }
}
