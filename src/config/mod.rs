//! Configuration: the user's YAML file (`file`), checked and turned into the [`Settings`] the
//! proxy runs with (`validate`). Only `Settings` reaches the rest of the program.

mod collection;
mod file;
mod secret;
mod store;
mod validate;

pub use collection::{CollectSettings, ConsentMode, ConsentSettings, CookieSettings};
pub use secret::Secret;
pub use validate::{
    load_file, parse_str, AdminSettings, ConfigError, ConfigErrors, Duplicates, HostPattern,
    InjectSettings, PathPattern, Position, Settings, Site, Timeouts, Upstream,
};
