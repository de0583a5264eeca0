//! Keep-alive connections to the origin: with more requests in flight than Pingora's default
//! pool holds (128 per thread), the connections they used are all kept and reused, so a
//! second wave of the same size opens none.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use common::{request, Proxy};

/// Requests in flight at once: more than Pingora's default pool of 128 idle connections.
const WAVE: usize = 160;

/// A keep-alive origin that holds every request until `WAVE` of them are in flight (so the
/// proxy must use `WAVE` connections at once), then answers them all; it counts the
/// connections it accepted.
struct KeepAliveOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

/// Requests waiting for the wave to fill, and the number of waves released so far.
type Gate = Arc<(Mutex<(usize, usize)>, Condvar)>;

impl KeepAliveOrigin {
    fn start() -> KeepAliveOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let gate: Gate = Arc::new((Mutex::new((0, 0)), Condvar::new()));
        let counter = accepted.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                thread::spawn(move || serve(stream, &gate));
            }
        });
        KeepAliveOrigin { addr, accepted }
    }
}

/// Serves requests on one connection until the proxy closes it.
fn serve(stream: TcpStream, gate: &Gate) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone origin stream"));
    let mut out = stream;
    loop {
        // The request head (GETs only: no body to read).
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => {}
            }
        }
        wait_for_wave(gate);
        let body = b"<html><head></head><body>pooled</body></html>";
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body).is_err() {
            return;
        }
    }
}

/// Blocks until `WAVE` requests are waiting (or 20 s passed, so a broken proxy fails the
/// assertions instead of hanging the test).
fn wait_for_wave(gate: &Gate) {
    let (lock, cvar) = &**gate;
    let mut state = lock.lock().unwrap();
    let wave = state.1;
    state.0 += 1;
    if state.0 == WAVE {
        state.0 = 0;
        state.1 += 1;
        cvar.notify_all();
        return;
    }
    let _ = cvar
        .wait_timeout_while(state, Duration::from_secs(20), |s| s.1 == wave)
        .unwrap();
}

/// `WAVE` clients at once, each on its own connection; every answer must be the origin's.
fn wave(proxy: &Proxy) {
    let clients: Vec<_> = (0..WAVE)
        .map(|i| {
            let addr = proxy.addr.clone();
            thread::spawn(move || request(&addr, "GET", &format!("/p{i}"), &[]))
        })
        .collect();
    for c in clients {
        let resp = c.join().expect("client thread");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "<html><head></head><body>pooled</body></html>");
    }
}

#[test]
fn a_second_wave_of_concurrent_requests_reuses_every_origin_connection() {
    let origin = KeepAliveOrigin::start();
    // One proxy thread: the pool limit is per thread.
    let proxy = Proxy::start(&origin.addr, "threads: 1\n");
    wave(&proxy);
    assert_eq!(
        origin.accepted.load(Ordering::SeqCst),
        WAVE,
        "the first wave needs one origin connection per request in flight"
    );
    // Pingora hands an origin connection back to its pool after the last byte of the answer
    // went to the client, so a client can see its answer a moment before that: give the
    // proxy that moment (the assertion is about reuse, not about timing).
    thread::sleep(Duration::from_millis(300));
    wave(&proxy);
    assert_eq!(
        origin.accepted.load(Ordering::SeqCst),
        WAVE,
        "the second wave opened new origin connections: idle ones were closed, not pooled"
    );
}
