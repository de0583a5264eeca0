//! The life of a client connection around Pingora's HTTP app: a total deadline for each
//! request head (slow-header clients are cut off), an idle keep-alive timeout, and idle
//! connections that hold a few hundred bytes instead of a whole request future.
//!
//! `app` decides when a request starts and hands it to Pingora; `stream` times the head as
//! Pingora reads it; `head_end` finds where a head ends; `outbox` holds a response head for
//! its body's write; `shortcut` answers plain requests the app claims before Pingora does;
//! `counters` counts the connections the limits closed and the requests answered early.

mod app;
mod counters;
mod head_end;
mod outbox;
pub mod shortcut;
mod stream;

pub use app::{ConnApp, ConnLimits};
pub use counters::ConnCounters;
pub use head_end::HeadEnd;
pub use shortcut::Shortcut;
pub use stream::ConnStream;
