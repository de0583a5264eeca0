//! Per-client beacon rate limit (the collect endpoint's `429`), in bounded memory.

use std::net::IpAddr;
use std::time::Instant;

pub struct RateLimiter {}

impl RateLimiter {
    /// `per_minute` beacons per client address on average, bursts up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let _ = (per_minute, burst);
        todo!()
    }

    /// Takes one token for `client`; false when the client is over its rate.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let _ = (client, now);
        todo!()
    }
}
