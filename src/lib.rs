//! smproxy: an edge reverse proxy that injects one marketing-automation monitoring code into
//! every HTML page it serves.
//!
//! Reading order: `server` (how the process is assembled), `proxy` (Pingora's phases, each
//! handing off to a module), then `inject`, `route`, `codec`, `config`.

pub mod admin;
pub mod codec;
pub mod collect;
pub mod config;
pub mod conn;
pub mod demo;
pub mod identity;
pub mod inject;
pub mod metrics;
pub mod origins;
pub mod proxy;
pub mod route;
pub mod server;
pub mod snippet;
pub mod store;
pub mod tls;
