//! The smproxy binary as a child process, for what an in-process server cannot show: `kill -9`,
//! and the process's own file descriptors and memory in `/proc`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_addr, html_response, Origin, TempDir};

/// A running smproxy with one site (`hosts: ["*"]`) and its SQLite file in a temporary
/// directory. Killed when dropped.
pub struct Binary {
    pub child: Child,
    pub listen: String,
    pub admin: String,
    pub db: PathBuf,
    _dir: TempDir,
    _origin: Option<Origin>,
}

/// The admin token of [`Binary`] proxies.
pub const BINARY_ADMIN_TOKEN: &str = "binary-test-admin-token-0123";

impl Binary {
    /// In front of a small built-in HTML origin; `extra` is appended to the YAML and may add
    /// keys under `store:` (it follows the `sqlite` line) or top-level keys after that.
    pub fn start(extra: &str) -> Binary {
        let origin = Origin::respond(|_| html_response(b"<html><head></head></html>"));
        let upstream = origin.addr.to_string();
        Binary::start_with(&upstream, Some(origin), extra)
    }

    pub fn start_with(upstream: &str, origin: Option<Origin>, extra: &str) -> Binary {
        let dir = TempDir::new("binary");
        let db = dir.0.join("events.db");
        let (listen, admin) = (free_addr(), free_addr());
        let config = dir.0.join("smproxy.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: \"{listen}\"\nclient_id: \"testclient\"\nthreads: 2\n\
sites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"{upstream}\"\n\
admin:\n  listen: \"{admin}\"\n  token: \"{BINARY_ADMIN_TOKEN}\"\n\
cookies:\n  secret: \"binary-test-secret-0123456789abcdef\"\n\
store:\n  sqlite: \"{}\"\n{extra}",
                db.display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_smproxy"))
            .arg("-c")
            .arg(&config)
            .env("RUST_LOG", "error")
            .spawn()
            .expect("start smproxy");
        let deadline = Instant::now() + Duration::from_secs(30);
        for a in [&listen, &admin] {
            while TcpStream::connect(a).is_err() {
                assert!(Instant::now() < deadline, "smproxy never listened on {a}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Binary {
            child,
            listen,
            admin,
            db,
            _dir: dir,
            _origin: origin,
        }
    }

    /// SIGKILL: no handler runs, nothing is flushed. Waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
    }

    /// Open file descriptors of the process (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
