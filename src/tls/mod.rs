//! HTTPS termination: certificate files (`certs`), the choice of a certificate by SNI with
//! reloading (`sni`), the HTTPS listeners with HTTP/2 by ALPN (`listener`), and the reload on
//! SIGHUP (`reload`).

pub mod certs;
pub mod listener;
pub mod reload;
pub mod sni;

pub use sni::SniResolver;
