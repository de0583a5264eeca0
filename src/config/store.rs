//! Checks the `store` section's choice of database: `store.postgres` (a URL) with its
//! password from the URL or from `store.password_env`, and its `store.pool_size`, instead of
//! the default SQLite file.

use std::str::FromStr;

use super::file::StoreFile;
use super::validate::Checker;
use crate::store::postgres::DEFAULT_POOL_SIZE;

/// Most connections one instance may open: PostgreSQL's default `max_connections` is 100
/// for the whole fleet.
const MAX_POOL_SIZE: u32 = 100;

impl Checker<'_> {
    /// `store.pool_size`, default [`DEFAULT_POOL_SIZE`]: at least 2, so that the event writer
    /// never waits for a dashboard query's connection.
    pub(super) fn pool_size(&mut self, store: &StoreFile) -> u32 {
        let Some(n) = store.pool_size else {
            return DEFAULT_POOL_SIZE;
        };
        if store.postgres.is_none() {
            self.err("store.pool_size", "only used with store.postgres");
        } else if !(2..=MAX_POOL_SIZE).contains(&n) {
            self.err(
                "store.pool_size",
                format!("must be between 2 and {MAX_POOL_SIZE}"),
            );
        }
        n.clamp(2, MAX_POOL_SIZE)
    }

    /// The PostgreSQL connection settings, or `None` for SQLite. Errors name the field and
    /// never repeat the URL, which may hold a password.
    pub(super) fn postgres(&mut self, store: &StoreFile) -> Option<postgres::Config> {
        let Some(url) = &store.postgres else {
            if store.password_env.is_some() {
                self.err("store.password_env", "only used with store.postgres");
            }
            return None;
        };
        if store.sqlite.is_some() {
            self.err(
                "store.postgres",
                "set either store.sqlite or store.postgres, not both",
            );
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            self.err(
                "store.postgres",
                "must be a URL like postgres://user@host:5432/database",
            );
            return None;
        }
        let mut config = match postgres::Config::from_str(url) {
            Ok(c) => c,
            Err(e) => {
                // The parser's reason, never the value (it may hold a password).
                self.err("store.postgres", format!("not a valid PostgreSQL URL: {e}"));
                return None;
            }
        };
        if config.get_hosts().is_empty() {
            self.err("store.postgres", "the URL names no host");
        }
        if config.get_user().is_none() {
            self.err(
                "store.postgres",
                "the URL names no user (postgres://user@host/db)",
            );
        }
        if config.get_dbname().is_none() {
            self.err(
                "store.postgres",
                "the URL names no database (postgres://user@host/db)",
            );
        }
        if let Some(name) = &store.password_env {
            if config.get_password().is_some() {
                self.err(
                    "store.password_env",
                    "the URL in store.postgres already has a password; use one or the other",
                );
            }
            match (self.env)(name) {
                Some(password) if !password.is_empty() => {
                    config.password(password);
                }
                _ => self.err(
                    "store.password_env",
                    format!("environment variable {name} is not set"),
                ),
            }
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::parse_with_env;
    use super::super::{ConfigErrors, Settings};

    const MINIMAL: &str =
        "client_id: abc\nsites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"127.0.0.1:1\"\n";

    fn parse(store: &str) -> Result<Settings, ConfigErrors> {
        parse_with_env(&format!("{MINIMAL}store:\n{store}"), &|name| {
            (name == "PGPASS").then(|| "s3cret-pw".to_string())
        })
    }

    fn only_error(store: &str) -> (String, String) {
        let errs = parse(store).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        (errs[0].path.clone(), errs[0].reason.clone())
    }

    #[test]
    fn sqlite_is_the_default() {
        assert!(parse("  retention_days: 1\n").unwrap().postgres.is_none());
    }

    #[test]
    fn a_url_with_the_password_from_the_environment() {
        let s =
            parse("  postgres: postgres://sm@db.internal:6543/events\n  password_env: PGPASS\n")
                .unwrap();
        let pg = s.postgres.clone().unwrap();
        assert_eq!(pg.get_user(), Some("sm"));
        assert_eq!(pg.get_dbname(), Some("events"));
        assert_eq!(pg.get_ports(), [6543]);
        assert_eq!(pg.get_password(), Some(&b"s3cret-pw"[..]));
        // Neither the settings nor the connection config print it.
        assert!(!format!("{s:?}").contains("s3cret-pw"));
    }

    #[test]
    fn a_password_in_the_url_is_never_printed() {
        let s = parse("  postgres: 'postgres://sm:hunter2@127.0.0.1/events'\n").unwrap();
        assert_eq!(
            s.postgres.as_ref().unwrap().get_password(),
            Some(&b"hunter2"[..])
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let errs = parse("  postgres: 'postgres://sm:hunter2@127.0.0.1:99999/events'\n")
            .unwrap_err()
            .to_string();
        assert!(errs.contains("store.postgres"), "{errs}");
        assert!(!errs.contains("hunter2"), "{errs}");
    }

    #[test]
    fn the_pool_size_defaults_to_8_and_is_checked() {
        let s = parse("  postgres: postgres://sm@h/db\n").unwrap();
        assert_eq!(s.postgres_pool_size, 8);
        let s = parse("  postgres: postgres://sm@h/db\n  pool_size: 20\n").unwrap();
        assert_eq!(s.postgres_pool_size, 20);
        for (yaml, reason) in [
            (
                "  postgres: postgres://sm@h/db\n  pool_size: 1\n",
                "between 2 and 100",
            ),
            (
                "  postgres: postgres://sm@h/db\n  pool_size: 101\n",
                "between 2 and 100",
            ),
            ("  pool_size: 4\n", "only used with store.postgres"),
        ] {
            let (path, why) = only_error(yaml);
            assert_eq!(path, "store.pool_size", "{yaml}");
            assert!(why.contains(reason), "{yaml}: {why}");
        }
        let errs = parse("  postgres: postgres://sm@h/db\n  pool_size: -3\n")
            .unwrap_err()
            .to_string();
        assert!(errs.contains("store.pool_size"), "{errs}");
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (
                "  password_env: PGPASS\n",
                "store.password_env",
                "only used",
            ),
            (
                "  sqlite: a.db\n  postgres: postgres://sm@h/db\n",
                "store.postgres",
                "not both",
            ),
            (
                "  postgres: mysql://sm@h/db\n",
                "store.postgres",
                "must be a URL",
            ),
            (
                "  postgres: postgres://sm@h:port/db\n",
                "store.postgres",
                "not a valid PostgreSQL URL",
            ),
            (
                "  postgres: postgres://sm@h\n",
                "store.postgres",
                "no database",
            ),
            ("  postgres: postgres://h/db\n", "store.postgres", "no user"),
            (
                "  postgres: postgres://sm@h/db\n  password_env: NOPE\n",
                "store.password_env",
                "NOPE is not set",
            ),
            (
                "  postgres: 'postgres://sm:pw@h/db'\n  password_env: PGPASS\n",
                "store.password_env",
                "already has a password",
            ),
        ];
        for (yaml, field, reason) in cases {
            let (path, why) = only_error(yaml);
            assert_eq!(path, field, "{yaml}");
            assert!(why.contains(reason), "{yaml}: {why}");
        }
    }
}
