//! Injection of the monitoring code into HTML responses: which responses (`decide`), how to
//! recognise a code already in the page (`detect`), the page's charset (`charset`) and CSP
//! nonce (`csp`), and the streaming rewriter itself (`injector`).

mod attr;
pub mod charset;
pub mod csp;
pub mod decide;
pub mod detect;
mod head;
pub mod injector;
mod tail;

pub use decide::Skip;
pub use injector::{Anchor, Injector, InjectorOptions, Outcome};
