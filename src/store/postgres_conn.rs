//! The connections of the PostgreSQL store's pool, and the one thread where they are closed.
//!
//! The sync [`postgres::Client`] drives its socket with a private Tokio runtime, and its `Drop`
//! closes the connection by blocking on that runtime. Blocking on a runtime from a thread that
//! is driving async tasks panics ("Cannot start a runtime from within a runtime"), and the
//! client's own runtime then panics again while unwinding, which aborts the process.
//!
//! The pool drops a connection wherever its last handle happens to go: the idle connections
//! go with the pool, so with the last `Arc` of the store, and at shutdown that can be a
//! Pingora service (the retention job, the collector) dropped by its runtime's worker thread;
//! a connection found broken after a database restart goes with the thread that noticed. So a
//! [`Conn`] is never closed where it is dropped: its client is handed to one closer thread,
//! which does the blocking close. Queries still run on the caller's thread, which must not be
//! an async one (the writer's own thread, or `spawn_blocking`, as [`super::Store`] says).

use std::ops::{Deref, DerefMut};
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;

use postgres::{Client, Config, NoTls};

/// A pooled connection: a [`Client`] that is closed on the closer thread when dropped.
pub struct Conn(Option<Client>);

impl Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Only `Drop` takes the client out.
        self.0.as_ref().expect("a live connection")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("a live connection")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            close_elsewhere(client);
        }
    }
}

/// The closer thread's queue, started with the first connection closed.
fn closer() -> Option<&'static Sender<Client>> {
    static CLOSER: OnceLock<Option<Sender<Client>>> = OnceLock::new();
    CLOSER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Client>();
            std::thread::Builder::new()
                .name("smproxy-pg-close".into())
                .spawn(move || {
                    for client in rx {
                        // Terminate message and socket shutdown; a connection that is already
                        // gone just fails, which is what closing it meant.
                        let _ = client.close();
                    }
                })
                .map_err(
                    |e| tracing::error!(error = %e, "cannot start the PostgreSQL closer thread"),
                )
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

fn close_elsewhere(client: Client) {
    let refused = match closer() {
        Some(tx) => tx.send(client).err().map(|e| e.0),
        None => Some(client),
    };
    if let Some(client) = refused {
        // Only if the closer thread could not start: leaking one socket (the server ends it
        // when it notices) is better than closing it here and maybe aborting the process.
        std::mem::forget(client);
    }
}

/// Opens and checks [`Conn`]s for the [`r2d2`] pool.
pub struct Manager {
    config: Config,
}

impl Manager {
    pub fn new(config: Config) -> Self {
        Manager { config }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        self.config.connect(NoTls).map(|c| Conn(Some(c)))
    }

    /// An empty round trip: a connection that died with a restarted database fails it and is
    /// replaced before a query fails on it.
    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_closed()
    }
}
