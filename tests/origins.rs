//! Origin pools: round-robin and least-connections, an origin that stops (no failed GET, its
//! traffic moves to the live one) and comes back (it gets traffic again), active HTTP health
//! checks, and retries only for idempotent requests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{html_response, http_response, request, Proxy};

/// An origin on a fixed loopback port that can be stopped (its port then refuses connections)
/// and started again on the same port.
struct Backend {
    addr: SocketAddr,
    name: &'static str,
    /// Page requests it answered.
    served: Arc<AtomicUsize>,
    /// Whether `/healthz` answers 200 (else 503).
    healthy: Arc<AtomicBool>,
    /// Requests to `/hold` wait until this channel gets a message.
    hold: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut b = Backend {
            addr: listener.local_addr().unwrap(),
            name,
            served: Arc::new(AtomicUsize::new(0)),
            healthy: Arc::new(AtomicBool::new(true)),
            hold: Arc::new(Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        b.run(listener);
        b
    }

    fn run(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (name, served, healthy, hold, stop) = (
            self.name,
            self.served.clone(),
            self.healthy.clone(),
            self.hold.clone(),
            self.stop.clone(),
        );
        self.thread = Some(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (served, healthy, hold) =
                            (served.clone(), healthy.clone(), hold.clone());
                        thread::spawn(move || serve(s, name, &served, &healthy, &hold));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        }));
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn restart(&mut self) {
        self.stop.store(false, Ordering::Relaxed);
        let listener = TcpListener::bind(self.addr).expect("rebind the origin's port");
        self.run(listener);
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut s: TcpStream,
    name: &str,
    served: &AtomicUsize,
    healthy: &AtomicBool,
    hold: &Mutex<Option<mpsc::Receiver<()>>>,
) {
    s.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    // A TCP health check connects and closes without a request.
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 || l.trim_end().is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let resp = if path == "/healthz" {
        if healthy.load(Ordering::Relaxed) {
            http_response("200 OK", &[], b"ok")
        } else {
            http_response("503 Service Unavailable", &[], b"down")
        }
    } else {
        if path == "/hold" {
            let rx = hold.lock().unwrap().take();
            if let Some(rx) = rx {
                let _ = rx.recv_timeout(Duration::from_secs(30));
            }
        }
        served.fetch_add(1, Ordering::Relaxed);
        html_response(format!("<html><head></head><body>origin {name}</body></html>").as_bytes())
    };
    let _ = s.write_all(&resp);
}

fn proxy(backends: &[&Backend], site_extra: &str) -> Proxy {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    let sites = format!(
        "sites:\n  - name: pool\n    hosts: [\"*\"]\n    upstream: [{}]\n{site_extra}",
        list.join(", ")
    );
    Proxy::start_with_sites(&sites, "timeouts:\n  connect: 1\n")
}

fn get(p: &Proxy, path: &str) -> (u16, String) {
    let r = request(&p.addr, "GET", path, &[]);
    let body = r.text();
    (r.status, body)
}

/// Sends GETs until `cond` holds (each must succeed); panics after 15 s.
fn until(p: &Proxy, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        let (status, body) = get(p, "/");
        assert_eq!(status, 200, "{body}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn round_robin_spreads_requests_over_every_origin() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let p = proxy(&[&a, &b], "");
    for _ in 0..10 {
        assert_eq!(get(&p, "/").0, 200);
    }
    assert_eq!((a.served(), b.served()), (5, 5));
}

#[test]
fn a_stopped_origin_loses_its_traffic_without_a_failed_get_and_gets_it_back() {
    let (a, mut b) = (Backend::start("a"), Backend::start("b"));
    let p = proxy(
        &[&a, &b],
        "    health_check:\n      kind: tcp\n      interval_seconds: 0.1\n      timeout_seconds: 0.5\n      healthy_threshold: 1\n      unhealthy_threshold: 1\n    passive_ejection:\n      failures: 1\n      eject_seconds: 0.2\n",
    );
    for _ in 0..6 {
        assert_eq!(get(&p, "/").0, 200);
    }
    assert!(a.served() > 0 && b.served() > 0);

    b.stop();
    let before = a.served();
    for i in 0..40 {
        let (status, body) = get(&p, &format!("/page/{i}"));
        assert_eq!(
            status, 200,
            "GET {i} failed while an origin was down: {body}"
        );
        assert!(body.contains("origin a"), "{body}");
    }
    assert_eq!(a.served() - before, 40);

    b.restart();
    let back = b.served();
    until(&p, "the restarted origin gets traffic", || {
        b.served() > back
    });
}

#[test]
fn an_origin_failing_its_http_health_check_gets_no_traffic_until_it_passes() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let p = proxy(
        &[&a, &b],
        "    health_check:\n      kind: http\n      path: /healthz\n      interval_seconds: 0.05\n      healthy_threshold: 2\n      unhealthy_threshold: 2\n",
    );
    b.healthy.store(false, Ordering::Relaxed);
    // Wait for the check to take b out: 10 GETs in a row on a alone.
    let mut run = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while run < 10 {
        assert!(Instant::now() < deadline, "b was never taken out");
        let n = b.served();
        assert_eq!(get(&p, "/").0, 200);
        run = if b.served() == n { run + 1 } else { 0 };
    }
    // b still accepts connections and answers pages: only its health check keeps it out.
    b.healthy.store(true, Ordering::Relaxed);
    let back = b.served();
    until(&p, "b back after passing its check", || b.served() > back);
}

#[test]
fn least_connections_avoids_the_busy_origin() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let (release_a, rx_a) = mpsc::channel();
    let (release_b, rx_b) = mpsc::channel();
    *a.hold.lock().unwrap() = Some(rx_a);
    *b.hold.lock().unwrap() = Some(rx_b);
    let p = proxy(&[&a, &b], "    balance: least_connections\n");
    let addr = p.addr.clone();
    let held = thread::spawn(move || request(&addr, "GET", "/hold", &[]).text());
    // Wait until the held request reached one of the origins.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.hold.lock().unwrap().is_some() && b.hold.lock().unwrap().is_some() {
        assert!(Instant::now() < deadline, "the held request never arrived");
        thread::sleep(Duration::from_millis(5));
    }
    let busy_is_a = a.hold.lock().unwrap().is_none();
    let (busy, idle) = if busy_is_a { (&a, &b) } else { (&b, &a) };
    let (busy_before, idle_before) = (busy.served(), idle.served());
    for _ in 0..8 {
        assert_eq!(get(&p, "/").0, 200);
    }
    assert_eq!(
        idle.served() - idle_before,
        8,
        "every request avoided the busy origin"
    );
    assert_eq!(busy.served(), busy_before);
    let _ = release_a.send(());
    let _ = release_b.send(());
    assert!(held.join().unwrap().contains("origin"));
}

#[test]
fn only_idempotent_requests_are_retried_on_another_origin() {
    let (a, mut b) = (Backend::start("a"), Backend::start("b"));
    // No health check and no ejection: round-robin keeps choosing the stopped origin.
    let p = proxy(
        &[&a, &b],
        "    passive_ejection:\n      failures: 0\n    retries: 1\n",
    );
    b.stop();
    for i in 0..10 {
        let (status, body) = get(&p, "/");
        assert_eq!(
            status, 200,
            "GET {i} was not retried on the live origin: {body}"
        );
    }
    // Round-robin alternates: every other POST meets the stopped origin and is not retried.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(common::request_body(&p.addr, "POST", "/form", &[], b"x=1").status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
}
