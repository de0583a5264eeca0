//! The store backends the store and report tests run against: a fresh SQLite file, or a fresh
//! database on the PostgreSQL server named by `SMPROXY_TEST_POSTGRES` (`.ci/run` starts one
//! and exports it), one per test so tests run in parallel. Raw SQL reads for assertions work
//! on both (`$1` placeholders, which SQLite also numbers in order).
//!
//! Without `SMPROXY_TEST_POSTGRES` the PostgreSQL tests fail, saying so: a missing server must
//! not look like a pass.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use smproxy::store::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Erased, Filter,
    Point, Row, SiteSeen, Stats,
};
use smproxy::store::{ContactId, Event, PostgresStore, Reports, SqliteStore, Store, StoreError};

/// The environment variable with the URL of a PostgreSQL server where the tests may create
/// databases, e.g. `postgres://smproxy@127.0.0.1:55432/postgres`.
pub const PG_ENV: &str = "SMPROXY_TEST_POSTGRES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server's URL, or a failing test that says how to get one.
pub fn pg_admin_url() -> String {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{PG_ENV} is not set: the PostgreSQL store tests need a server where they may \
             create databases, e.g. {PG_ENV}=postgres://smproxy@127.0.0.1:55432/postgres \
             (.ci/run starts one and sets it)"
        ),
    }
}

/// The URL of another database on the same server.
fn with_dbname(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

fn admin_client() -> postgres::Client {
    let url = pg_admin_url();
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV}: {e}"))
}

/// One test's database: a file in a temporary directory, or a PostgreSQL database that is
/// dropped afterwards.
pub struct TestDb {
    pub backend: Backend,
    dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn new(backend: Backend, name: &str) -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let dir = std::env::temp_dir().join(format!("smproxy-test-{name}-{unique}"));
        let pg_name = (backend == Backend::Postgres).then(|| {
            let db = format!("smproxy_t_{}", uuid::Uuid::new_v4().simple());
            admin_client()
                .batch_execute(&format!("CREATE DATABASE \"{db}\""))
                .unwrap_or_else(|e| panic!("CREATE DATABASE on {PG_ENV}: {e}"));
            db
        });
        // Only now: a failed CREATE DATABASE panics before there is a `TestDb` to clean up.
        std::fs::create_dir_all(&dir).unwrap();
        TestDb {
            backend,
            dir,
            pg_name,
        }
    }

    /// The SQLite file (its directory exists; the file is created by the store).
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("events.db")
    }

    /// A scratch directory of the test, removed afterwards.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The PostgreSQL URL of this test's database.
    pub fn pg_url(&self) -> String {
        with_dbname(
            &pg_admin_url(),
            self.pg_name.as_deref().expect("a PostgreSQL test database"),
        )
    }

    pub fn pg_config(&self) -> postgres::Config {
        self.pg_url().parse().expect("a PostgreSQL URL")
    }

    /// The `store:` section of a proxy configuration for this database.
    pub fn store_yaml(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("store:\n  sqlite: \"{}\"\n", self.sqlite_path().display()),
            Backend::Postgres => format!("store:\n  postgres: \"{}\"\n", self.pg_url()),
        }
    }

    /// Opens (and migrates) the store.
    pub fn open(&self) -> AnyStore {
        match self.backend {
            Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(self.sqlite_path()).unwrap()),
            Backend::Postgres => {
                AnyStore::Postgres(PostgresStore::connect(self.pg_config()).unwrap())
            }
        }
    }

    /// Every row of `sql`, each column as a [`Val`].
    pub fn rows(&self, sql: &str, params: &[&str]) -> Vec<Vec<Val>> {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map(rusqlite::params_from_iter(params), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Val::Null,
                                rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Val::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                other => panic!("unexpected SQLite value {other:?}"),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            Backend::Postgres => {
                let mut client =
                    postgres::Client::connect(&self.pg_url(), postgres::NoTls).unwrap();
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                client
                    .query(sql, &params)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                use postgres::types::Type;
                                let t = r.columns()[i].type_().clone();
                                if t == Type::INT8 {
                                    r.get::<_, Option<i64>>(i).map_or(Val::Null, Val::Int)
                                } else if t == Type::INT4 {
                                    r.get::<_, Option<i32>>(i)
                                        .map_or(Val::Null, |v| Val::Int(v.into()))
                                } else if t == Type::TEXT || t == Type::VARCHAR || t == Type::NAME {
                                    r.get::<_, Option<String>>(i).map_or(Val::Null, Val::Text)
                                } else {
                                    panic!("unexpected PostgreSQL type {t} in {sql}")
                                }
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// The single integer `sql` returns.
    pub fn count(&self, sql: &str, params: &[&str]) -> i64 {
        match self.rows(sql, params).as_slice() {
            [row] => row[0].int(),
            other => panic!("{sql}: expected one row, got {}", other.len()),
        }
    }

    /// Runs statements (schema changes or writes made behind the store's back).
    pub fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.sqlite_path())
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Backend::Postgres => postgres::Client::connect(&self.pg_url(), postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(db) = &self.pg_name {
            // FORCE: the test's pool may still hold connections.
            if let Ok(mut c) = postgres::Client::connect(&pg_admin_url(), postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
            }
        }
    }
}

/// A column value read by [`TestDb::rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(v) => *v,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Text(t) => Some(t.clone()),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Either store, with both traits, so a test body is written once.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn insert_batch(&self, events: &[Event]) -> Result<usize, StoreError> {
        each!(self, s => s.insert_batch(events))
    }
    fn upsert_contact_by_email(&self, email: &str, now_ms: i64) -> Result<ContactId, StoreError> {
        each!(self, s => s.upsert_contact_by_email(email, now_ms))
    }
    fn link_visitor(
        &self,
        visitor_id: &str,
        contact_id: &ContactId,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.link_visitor(visitor_id, contact_id, now_ms))
    }
    fn count_events(&self, site: Option<&str>) -> Result<u64, StoreError> {
        each!(self, s => s.count_events(site))
    }
    fn ping(&self) -> Result<(), StoreError> {
        each!(self, s => s.ping())
    }
    fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        each!(self, s => s.delete_older_than(cutoff_ms))
    }
}

impl Reports for AnyStore {
    fn stats(&self, f: &Filter) -> Result<Stats, StoreError> {
        each!(self, s => s.stats(f))
    }
    fn timeseries(&self, f: &Filter, bucket: Bucket) -> Result<Vec<Point>, StoreError> {
        each!(self, s => s.timeseries(f, bucket))
    }
    fn breakdown(&self, f: &Filter, d: Dimension, limit: usize) -> Result<Vec<Row>, StoreError> {
        each!(self, s => s.breakdown(f, d, limit))
    }
    fn live_visitors(&self, site: Option<&str>, now_ms: i64) -> Result<u64, StoreError> {
        each!(self, s => s.live_visitors(site, now_ms))
    }
    fn sites_seen(&self) -> Result<Vec<SiteSeen>, StoreError> {
        each!(self, s => s.sites_seen())
    }
    fn contacts(
        &self,
        search: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ContactSummary>, StoreError> {
        each!(self, s => s.contacts(search, limit, offset))
    }
    fn contact(&self, id: &str, timeline_limit: usize) -> Result<Option<ContactCard>, StoreError> {
        each!(self, s => s.contact(id, timeline_limit))
    }
    fn export_contact(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        each!(self, s => s.export_contact(id))
    }
    fn erase_contact(&self, id: &str) -> Result<Erased, StoreError> {
        each!(self, s => s.erase_contact(id))
    }
    fn companies(&self, f: &Filter, limit: usize) -> Result<Vec<CompanySummary>, StoreError> {
        each!(self, s => s.companies(f, limit))
    }
    fn company(
        &self,
        id: i64,
        f: &Filter,
        timeline_limit: usize,
    ) -> Result<Option<CompanyCard>, StoreError> {
        each!(self, s => s.company(id, f, timeline_limit))
    }
}

/// Makes each named `fn name(backend: Backend)` two tests, `name::sqlite` and
/// `name::postgres`, so one body checks both stores.
#[allow(unused_macros)] // tests/fleet.rs runs on PostgreSQL only
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::backend::Backend::Sqlite)
                }

                #[test]
                fn postgres() {
                    super::$name($crate::backend::Backend::Postgres)
                }
            }
        )*
    };
}

/// A PostgreSQL server of the test's own (for stopping and restarting it without disturbing
/// other tests): `initdb` into a temporary directory and `pg_ctl` on a free loopback port, as
/// the `postgres` user when the tests run as root (initdb refuses root). The binaries come
/// from `SMPROXY_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub struct PrivateServer {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        let bin = std::env::var_os("SMPROXY_TEST_PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|e| Some(e.ok()?.path().join("bin")))
                    .filter(|p| p.join("pg_ctl").exists())
                    .collect();
                dirs.sort_by_key(|p| {
                    p.parent()
                        .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                        .unwrap_or(0)
                });
                dirs.pop()
            })
            .expect(
                "no PostgreSQL binaries: install Debian's postgresql or set SMPROXY_TEST_PG_BIN",
            );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "smproxy-test-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let server = PrivateServer { dir, bin, port };
        if server.as_root() {
            let ok = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&server.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL directory to the postgres user");
        }
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "smproxy",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        server
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://smproxy@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://smproxy@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=100",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut, as in a restart).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let path = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&path).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
