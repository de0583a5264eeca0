//! A site's origins: which one a request goes to (`pool`: round-robin or least-connections over
//! the origins that are up, passive ejection after failed requests) and whether they are up
//! (`health`: active TCP or HTTP checks in the background).

pub mod health;
pub mod pool;

pub use pool::{Pool, Pools};
