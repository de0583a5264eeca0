//! Who may use the admin listener.
//!
//! - **Bearer token**: `Authorization: Bearer <token>`, compared in constant time. For scripts
//!   and Prometheus; no CSRF token needed (a browser never adds this header by itself).
//! - **Session cookie**: `POST /login` with the token as a form field opens a server-side
//!   session: a random 256-bit id in an `HttpOnly; SameSite=Strict; Path=/` cookie, valid for
//!   [`SESSION_TTL`]. The cookie cannot be `Secure`: the admin listener speaks plain HTTP (on
//!   loopback by default; put it behind a TLS terminator, or an SSH tunnel, when it must be
//!   reached from elsewhere). Every session has its own random CSRF token, which POST and
//!   DELETE requests authenticated by the cookie must send back (form field `csrf` or header
//!   `X-CSRF-Token`).
//! - **Brute force**: failed attempts (a wrong token at `POST /login` or in a bearer header)
//!   are limited per client address to [`FAILURES_PER_MINUTE`] a minute; beyond that every
//!   token attempt from that address is answered `429` without being checked, until the budget
//!   refills.
//! - **No configured token** (allowed only on loopback): a random token is generated at each
//!   start and written, readable by the owner only, next to the SQLite file
//!   ([`token_file_path`]); only the file's path is logged.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::Secret;

/// How long a dashboard session lasts (not extended by use).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; beyond it the oldest is dropped.
pub const MAX_SESSIONS: usize = 1000;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "smadmin";
/// Failed token attempts allowed per client address and minute.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// Client addresses tracked by the failure limiter at once.
const MAX_TRACKED: usize = 10_000;

/// Compares without returning early, so the time taken does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// 256 random bits as 64 hex digits (from the operating system's generator, through UUID v4).
pub fn random_hex() -> String {
    let mut h = Sha256::new();
    for _ in 0..3 {
        h.update(uuid::Uuid::new_v4().as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The token given in `Authorization: Bearer <token>` (scheme case-insensitive), `Some("")`
/// for another scheme or a malformed header, `None` without the header.
pub fn bearer(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?;
    let v = v.to_str().unwrap_or("");
    let token = match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => "",
    };
    Some(token.to_string())
}

struct Session {
    expires: Instant,
    created: Instant,
    csrf: String,
}

/// The open dashboard sessions, keyed by the SHA-256 of their id (a lookup never compares the
/// id itself, and a memory dump does not reveal usable ids).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session; returns its id and CSRF token.
    pub fn create(&self, now: Instant) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key(&id),
            Session {
                expires: now + SESSION_TTL,
                created: now,
                csrf: csrf.clone(),
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, id: &str, now: Instant) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(id);
        match map.get(&k) {
            Some(s) if s.expires > now => Some(s.csrf.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(id));
    }
}

/// The `Set-Cookie` value opening a session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value removing the session cookie.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Counts failed token attempts per client address (a token bucket: [`FAILURES_PER_MINUTE`]
/// deep, refilled at that rate).
pub struct FailureLimiter {
    per_minute: u32,
    map: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32) -> Self {
        FailureLimiter {
            per_minute: per_minute.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn budget(&self, entry: Option<&(f64, Instant)>, now: Instant) -> f64 {
        let cap = f64::from(self.per_minute);
        match entry {
            None => cap,
            Some((left, at)) => {
                let refill = now.saturating_duration_since(*at).as_secs_f64() * cap / 60.0;
                (left + refill).min(cap)
            }
        }
    }

    /// True when `ip` has used up its failures: the attempt must not even be checked.
    pub fn blocked(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let Some(ip) = ip else { return false };
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.budget(map.get(&ip), now) < 1.0
    }

    /// Records a failed attempt from `ip`.
    pub fn fail(&self, ip: Option<IpAddr>, now: Instant) {
        let Some(ip) = ip else { return };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let left = self.budget(map.get(&ip), now);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let cap = f64::from(self.per_minute);
            map.retain(|_, e| {
                let refill = now.saturating_duration_since(e.1).as_secs_f64() * cap / 60.0;
                e.0 + refill < cap
            });
            if map.len() >= MAX_TRACKED {
                // Full of addresses that are all failing: keep the newest picture instead.
                map.clear();
            }
        }
        map.insert(ip, ((left - 1.0).max(0.0), now));
    }
}

/// Where the generated admin token of a store is written: `<sqlite path>.admin-token`.
pub fn token_file_path(sqlite_path: &str) -> PathBuf {
    PathBuf::from(format!("{sqlite_path}.admin-token"))
}

/// Generates a random admin token and writes it to `path` (mode 0600, replacing an older
/// file; a symbolic link at `path` is replaced, never followed).
pub fn write_generated_token(path: &Path) -> std::io::Result<Secret> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let token = random_hex();
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(Secret::new(token))
}

/// A `next=` target after login: a path of this listener only (no scheme, host or `//`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some(""));
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.create(t0);
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(s.csrf(&id, t0).as_deref(), Some(csrf.as_str()));
        assert_eq!(s.csrf("nope", t0), None);
        assert_eq!(s.csrf(&id, t0 + SESSION_TTL), None);
        let (id2, _) = s.create(t0);
        s.remove(&id2);
        assert_eq!(s.csrf(&id2, t0), None);
    }

    #[test]
    fn session_count_is_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (first, _) = s.create(t0);
        for i in 1..=MAX_SESSIONS {
            s.create(t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(s.csrf(&first, t0), None);
        assert_eq!(s.map.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn failures_are_limited_per_address_and_refill() {
        let l = FailureLimiter::new(10);
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(!l.blocked(a, t0));
            l.fail(a, t0);
        }
        assert!(l.blocked(a, t0));
        assert!(!l.blocked(b, t0));
        assert!(!l.blocked(a, t0 + Duration::from_secs(6)));
        assert!(!l.blocked(None, t0));
    }

    #[test]
    fn generated_token_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("smproxy-admin-token-{}", random_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = token_file_path(dir.join("x.db").to_str().unwrap());
        assert!(path.ends_with("x.db.admin-token"));
        let t1 = write_generated_token(&path).unwrap();
        let t2 = write_generated_token(&path).unwrap();
        assert_ne!(t1.expose(), t2.expose());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), t2.expose());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn next_targets_stay_on_this_listener() {
        assert_eq!(safe_next(Some("/contacts?x=1")), "/contacts?x=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "x"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
