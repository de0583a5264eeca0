//! Per-client beacon rate limit (the collect endpoint's `429`), in bounded memory.
//!
//! Each client address has a token bucket: it holds up to `burst` tokens, refills at
//! `per_minute / 60` tokens per second, and every beacon takes one. An IPv6 client is keyed by
//! its /64, because one host (or one home router) is handed a whole /64 and could otherwise
//! rotate through its addresses; an IPv4 client by its full address.
//!
//! The buckets live in a fixed number of shards, each behind its own mutex, so worker threads
//! seldom wait on each other. At most [`MAX_CLIENTS`] clients are tracked. When a shard is full,
//! buckets that have refilled completely are dropped (a full bucket is the same as no bucket);
//! when that frees nothing, the new client is let through untracked. Failing open is deliberate:
//! the limit protects the store from floods, and with the table full of active clients it is
//! better to count a few beacons too many than to turn away visitors that did nothing wrong.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most clients tracked at once, over all shards.
pub const MAX_CLIENTS: usize = 100_000;

const SHARDS: usize = 16;

/// How often a full shard may be swept for idle buckets. A sweep walks the whole shard under
/// its lock; under a flood from many addresses every request would otherwise pay for one.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A client as the limiter counts it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => ClientKey::V4(a.to_bits()),
            IpAddr::V6(a) => ClientKey::V6((a.to_bits() >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn tokens_at(&self, now: Instant, rate: Rate) -> f64 {
        // Threads may pass slightly older instants than the last update; that is no refill.
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate.per_second).min(rate.burst)
    }

    /// Refills up to `now` and takes a token if there is one.
    fn take(&mut self, now: Instant, rate: Rate) -> bool {
        self.tokens = self.tokens_at(now, rate);
        self.updated = self.updated.max(now);
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        allowed
    }
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<ClientKey, Bucket>,
    last_sweep: Option<Instant>,
}

impl Shard {
    fn allow(&mut self, key: ClientKey, now: Instant, rate: Rate, capacity: usize) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(now, rate);
        }
        if self.buckets.len() >= capacity && !self.make_room(now, rate, capacity) {
            return true;
        }
        let mut bucket = Bucket {
            tokens: rate.burst,
            updated: now,
        };
        let allowed = bucket.take(now, rate);
        self.buckets.insert(key, bucket);
        allowed
    }

    /// Drops the buckets that are full again (at most once per [`SWEEP_INTERVAL`]); true when
    /// there is then room for one more.
    fn make_room(&mut self, now: Instant, rate: Rate, capacity: usize) -> bool {
        let recent = self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_INTERVAL);
        if recent {
            return false;
        }
        self.last_sweep = Some(now);
        self.buckets
            .retain(|_, bucket| bucket.tokens_at(now, rate) < rate.burst);
        self.buckets.len() < capacity
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    /// `None`: unlimited.
    rate: Option<Rate>,
    shards: Box<[Mutex<Shard>]>,
    /// Most buckets per shard; the shards together hold at most the configured maximum.
    per_shard: usize,
    hasher: RandomState,
}

impl RateLimiter {
    /// `per_minute` beacons per client address on average, bursts up to `burst`.
    ///
    /// `per_minute == 0` means unlimited. A `burst` of 0 is taken as 1, since with no room for
    /// a single beacon nothing would ever pass.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_max_clients(per_minute, burst, MAX_CLIENTS)
    }

    /// As [`RateLimiter::new`], tracking at most `max_clients` clients instead of
    /// [`MAX_CLIENTS`] (0 tracks none, so allows everything).
    pub fn with_max_clients(per_minute: u32, burst: u32, max_clients: usize) -> Self {
        let rate = (per_minute > 0).then(|| Rate {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
        });
        // More shards than clients would leave shards of size 0; the total stays within the cap.
        let shard_count = SHARDS.min(max_clients).max(1);
        RateLimiter {
            rate,
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            per_shard: max_clients / shard_count,
            hasher: RandomState::new(),
        }
    }

    /// Takes one token for `client`; false when the client is over its rate.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let key = ClientKey::of(client);
        self.shard(key).allow(key, now, rate, self.per_shard)
    }

    /// The number of clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).buckets.len()).sum()
    }

    fn shard(&self, key: ClientKey) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

/// A panic while holding the lock cannot leave a bucket half-updated in a harmful way (the
/// worst is one token miscounted), so a poisoned shard is used as is rather than failing
/// every later beacon.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn burst_then_denied() {
        let limiter = RateLimiter::new(60, 3);
        let t = Instant::now();
        let client = ip("203.0.113.7");
        assert!(limiter.allow(client, t));
        assert!(limiter.allow(client, t));
        assert!(limiter.allow(client, t));
        assert!(!limiter.allow(client, t));
        assert!(!limiter.allow(client, t));
    }

    #[test]
    fn refills_over_time() {
        // 60 a minute = one token a second.
        let limiter = RateLimiter::new(60, 2);
        let t = Instant::now();
        let client = ip("203.0.113.7");
        assert!(limiter.allow(client, t));
        assert!(limiter.allow(client, t));
        assert!(!limiter.allow(client, t));
        assert!(!limiter.allow(client, t + secs(0.5)));
        assert!(limiter.allow(client, t + secs(1.0)));
        assert!(!limiter.allow(client, t + secs(1.0)));
        // A long pause refills only up to the burst.
        let later = t + secs(3600.0);
        assert!(limiter.allow(client, later));
        assert!(limiter.allow(client, later));
        assert!(!limiter.allow(client, later));
    }

    #[test]
    fn older_instant_is_no_refill() {
        let limiter = RateLimiter::new(60, 1);
        let t = Instant::now() + secs(10.0);
        let client = ip("203.0.113.7");
        assert!(limiter.allow(client, t));
        assert!(!limiter.allow(client, t - secs(5.0)));
        assert!(!limiter.allow(client, t + secs(0.5)));
        assert!(limiter.allow(client, t + secs(1.0)));
    }

    #[test]
    fn clients_are_independent() {
        let limiter = RateLimiter::new(60, 1);
        let t = Instant::now();
        assert!(limiter.allow(ip("203.0.113.7"), t));
        assert!(!limiter.allow(ip("203.0.113.7"), t));
        assert!(limiter.allow(ip("203.0.113.8"), t));
        assert!(limiter.allow(ip("2001:db8::1"), t));
    }

    #[test]
    fn v6_same_slash64_shares_a_bucket() {
        let limiter = RateLimiter::new(60, 2);
        let t = Instant::now();
        assert!(limiter.allow(ip("2001:db8:1:2::1"), t));
        assert!(limiter.allow(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t));
        assert!(!limiter.allow(ip("2001:db8:1:2::99"), t));
        assert!(limiter.allow(ip("2001:db8:1:3::1"), t));
    }

    #[test]
    fn mapped_v6_is_the_v4_client() {
        let limiter = RateLimiter::new(60, 1);
        let t = Instant::now();
        assert!(limiter.allow(ip("203.0.113.7"), t));
        assert!(!limiter.allow(ip("::ffff:203.0.113.7"), t));
    }

    #[test]
    fn zero_per_minute_is_unlimited() {
        let limiter = RateLimiter::new(0, 1);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.allow(ip("203.0.113.7"), t));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn zero_burst_still_lets_one_through() {
        let limiter = RateLimiter::new(60, 0);
        let t = Instant::now();
        assert!(limiter.allow(ip("203.0.113.7"), t));
        assert!(!limiter.allow(ip("203.0.113.7"), t));
    }

    #[test]
    fn memory_cap_respected() {
        let limiter = RateLimiter::with_max_clients(60, 5, 32);
        let t = Instant::now();
        for i in 0..1000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from_bits(0xc000_0000 + i));
            assert!(limiter.allow(client, t), "first beacon of a client");
            assert!(limiter.tracked() <= 32);
        }
        assert!(limiter.tracked() > 0);
    }

    #[test]
    fn default_cap_is_max_clients() {
        let limiter = RateLimiter::new(60, 1);
        assert_eq!(limiter.per_shard * limiter.shards.len(), MAX_CLIENTS);
    }

    #[test]
    fn full_table_fails_open_then_drops_idle_buckets() {
        // One shard with room for one client.
        let limiter = RateLimiter::with_max_clients(60, 1, 1);
        let t = Instant::now();
        let a = ip("203.0.113.1");
        let b = ip("203.0.113.2");
        assert!(limiter.allow(a, t));
        assert!(!limiter.allow(a, t));
        // No room and `a` is not idle: `b` passes untracked, however often it asks.
        for _ in 0..10 {
            assert!(limiter.allow(b, t));
        }
        assert_eq!(limiter.tracked(), 1);
        // A second later `a` has refilled; its bucket makes way for `b`'s.
        let later = t + secs(1.0);
        assert!(limiter.allow(b, later));
        assert!(!limiter.allow(b, later));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn no_clients_tracked_allows_all() {
        let limiter = RateLimiter::with_max_clients(60, 1, 0);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(limiter.allow(ip("203.0.113.7"), t));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RateLimiter>();

        let limiter = RateLimiter::new(60, 100);
        let t = Instant::now();
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .filter(|_| limiter.allow(ip("203.0.113.7"), t))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 100);
    }
}
