//! Configuration: the user's YAML file (`file`), checked and turned into the [`Settings`] the
//! proxy runs with (`validate`). Only `Settings` reaches the rest of the program.

mod collection;
mod edge;
mod file;
mod secret;
mod store;
mod validate;

pub use collection::{CollectSettings, ConsentMode, ConsentSettings, CookieSettings};
pub use edge::https_port;
pub use secret::Secret;
pub use validate::{
    load_file, parse_str, AdminSettings, Balance, ConfigError, ConfigErrors, Duplicates,
    Durability, HealthCheck, HealthCheckKind, HostPattern, InjectSettings, LogFormat, LogSettings,
    Origins, PathPattern, Position, Settings, Site, SiteTls, Timeouts, Upstream,
};
