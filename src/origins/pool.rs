//! Choosing an origin for a request, and remembering how the origins behave.
//!
//! An origin is *available* when its active health check (if any) says it is up and it is not
//! ejected. Ejection is passive: `eject_after_failures` failed requests in a row take an origin
//! out for `eject_for`; after that it gets traffic again and one more failure ejects it again.
//! When no origin is available, every one not yet tried by the request is a candidate: trying
//! an origin that may be down beats refusing the request.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::prelude::HttpPeer;

use crate::config::{Balance, Origins, Settings, Site, Timeouts, Upstream};

/// One origin and what is known about it.
pub struct Origin {
    pub upstream: Upstream,
    pub peer: HttpPeer,
    /// Requests being proxied to it now (least-connections).
    active: AtomicUsize,
    /// Failed requests in a row.
    failures: AtomicU32,
    /// Milliseconds since the pool's epoch until which it is ejected (0: not ejected).
    ejected_until: AtomicU64,
    /// The active health check's verdict (true without checks).
    healthy: AtomicBool,
}

impl Origin {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, up: bool) {
        self.healthy.store(up, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// The origins of one site.
pub struct Pool {
    pub site: String,
    pub origins: Vec<Origin>,
    balance: Balance,
    eject_after_failures: u32,
    eject_for: Duration,
    pub retries: u32,
    next: AtomicUsize,
    epoch: Instant,
}

impl Pool {
    pub fn new(site: &Site, timeouts: &Timeouts) -> Pool {
        let o: &Origins = &site.origins;
        Pool {
            site: site.name.clone(),
            origins: o
                .list
                .iter()
                .map(|u| Origin {
                    upstream: u.clone(),
                    peer: peer_for(u, timeouts),
                    active: AtomicUsize::new(0),
                    failures: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            balance: o.balance,
            eject_after_failures: o.eject_after_failures,
            eject_for: o.eject_for,
            retries: o.retries,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn available(&self, i: usize, now: u64) -> bool {
        let o = &self.origins[i];
        o.is_healthy() && o.ejected_until.load(Ordering::Relaxed) <= now
    }

    /// The origin for the next attempt of a request that already tried `tried` (a bit set of
    /// origin indexes); `None` when every origin was tried.
    pub fn select(&self, tried: u64) -> Option<usize> {
        let n = self.origins.len();
        let untried = |i: &usize| *i >= 64 || tried & (1 << i) == 0;
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n).map(|k| (start + k) % n).filter(untried);
        let mut candidates: Vec<usize> =
            order.clone().filter(|&i| self.available(i, now)).collect();
        if candidates.is_empty() {
            candidates = order.collect();
        }
        match self.balance {
            Balance::RoundRobin => candidates.first().copied(),
            // The first of the least busy, in round-robin order, so ties still rotate.
            Balance::LeastConnections => candidates
                .iter()
                .copied()
                .min_by_key(|&i| self.origins[i].active()),
        }
    }

    /// Whether some origin is left for a request that tried `tried`.
    pub fn has_untried(&self, tried: u64) -> bool {
        (0..self.origins.len()).any(|i| i >= 64 || tried & (1 << i) == 0)
    }

    /// A request starts using origin `i`.
    pub fn acquire(&self, i: usize) {
        self.origins[i].active.fetch_add(1, Ordering::Relaxed);
    }

    /// A request stops using origin `i`.
    pub fn release(&self, i: usize) {
        let _ = self.origins[i]
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| a.checked_sub(1));
    }

    /// Origin `i` answered: its run of failures ends.
    pub fn succeeded(&self, i: usize) {
        self.origins[i].failures.store(0, Ordering::Relaxed);
    }

    /// A request to origin `i` failed (no connection, or the connection broke); returns
    /// whether that ejected it.
    pub fn failed(&self, i: usize) -> bool {
        let o = &self.origins[i];
        let run = o.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.eject_after_failures == 0 || run < self.eject_after_failures {
            return false;
        }
        o.failures.store(0, Ordering::Relaxed);
        let until = self.now_ms() + self.eject_for.as_millis() as u64;
        o.ejected_until.store(until.max(1), Ordering::Relaxed);
        tracing::warn!(
            site = %self.site,
            origin = %o.upstream.authority,
            seconds = self.eject_for.as_secs_f64(),
            "origin ejected after failed requests"
        );
        true
    }

    /// Whether origin `i` is ejected now.
    pub fn is_ejected(&self, i: usize) -> bool {
        self.origins[i].ejected_until.load(Ordering::Relaxed) > self.now_ms()
    }
}

/// The pools of all sites, by site index.
pub struct Pools(pub Vec<Arc<Pool>>);

impl Pools {
    pub fn new(settings: &Settings) -> Pools {
        Pools(
            settings
                .sites
                .iter()
                .map(|s| Arc::new(Pool::new(s, &settings.timeouts)))
                .collect(),
        )
    }
}

/// The Pingora peer of an origin: its address, TLS and timeouts. Keep-alive connections are
/// pooled by Pingora per peer, so each origin keeps its own.
pub fn peer_for(up: &Upstream, t: &Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(up.addr, up.tls, up.sni.clone());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if up.tls && !up.verify {
        peer.options.verify_cert = false;
        peer.options.verify_hostname = false;
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, balance: Balance, eject_after: u32) -> Pool {
        let list: Vec<Upstream> = (0..n)
            .map(|i| Upstream {
                authority: format!("127.0.0.1:{}", 1000 + i),
                addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                tls: false,
                sni: String::new(),
                verify: true,
            })
            .collect();
        let mut origins = Origins::single(list[0].clone());
        origins.list = list;
        origins.balance = balance;
        origins.eject_after_failures = eject_after;
        origins.eject_for = Duration::from_secs(60);
        let site = Site {
            index: 0,
            name: "s".into(),
            hosts: vec![],
            upstream: origins.list[0].clone(),
            origins,
            tls: None,
        };
        let t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            write: Duration::from_secs(1),
            idle: Duration::from_secs(1),
            request_header: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
        };
        Pool::new(&site, &t)
    }

    #[test]
    fn round_robin_rotates_and_skips_the_unhealthy() {
        let p = pool(3, Balance::RoundRobin, 0);
        let picks: Vec<_> = (0..6).map(|_| p.select(0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        p.origins[1].set_healthy(false);
        let picks: Vec<_> = (0..4).map(|_| p.select(0).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn tried_origins_are_not_chosen_again() {
        let p = pool(2, Balance::RoundRobin, 0);
        let first = p.select(0).unwrap();
        let second = p.select(1 << first).unwrap();
        assert_ne!(first, second);
        assert_eq!(p.select(0b11), None);
    }

    #[test]
    fn when_all_are_down_they_are_still_tried() {
        let p = pool(2, Balance::RoundRobin, 0);
        p.origins[0].set_healthy(false);
        p.origins[1].set_healthy(false);
        assert!(p.select(0).is_some());
    }

    #[test]
    fn least_connections_prefers_the_idle_origin() {
        let p = pool(3, Balance::LeastConnections, 0);
        p.acquire(0);
        p.acquire(0);
        p.acquire(1);
        for _ in 0..5 {
            assert_eq!(p.select(0), Some(2));
        }
        p.acquire(2);
        p.acquire(2);
        assert_eq!(p.select(0), Some(1));
        p.release(0);
        p.release(0);
        p.release(0); // one too many does not underflow
        assert_eq!(p.select(0), Some(0));
    }

    #[test]
    fn failures_in_a_row_eject_and_a_success_resets_the_run() {
        let p = pool(2, Balance::RoundRobin, 2);
        assert!(!p.failed(0));
        p.succeeded(0);
        assert!(!p.failed(0));
        assert!(!p.is_ejected(0));
        assert!(p.failed(0));
        assert!(p.is_ejected(0));
        for _ in 0..4 {
            assert_eq!(p.select(0), Some(1));
        }
    }
}
