//! The command line as a user runs it: `smproxy --check -c FILE` on the sample configurations
//! and on broken files, and `smproxy` without arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const ADMIN_TOKEN: &str = "cli-test-admin-token-0123456789";
const SECRET: &str = "cli-test-cookie-secret-0123456789abcdef";

/// The built binary, with the secrets that `conf/smproxy.yaml` names in the environment.
fn smproxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smproxy"));
    cmd.env("SMPROXY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SMPROXY_SECRET", SECRET)
        .env("SMPROXY_LOG", "warn");
    cmd
}

fn check(path: &Path) -> Output {
    smproxy()
        .arg("--check")
        .arg("-c")
        .arg(path)
        .output()
        .expect("run smproxy")
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(name)
}

/// Everything the process printed.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A file under the system temp dir with a name no other test (or test run) uses; removed on
/// drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "smproxy-cli-{}-{}-{}.yaml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("write temp config");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn sample_configurations_pass_the_check() {
    for name in ["minimal.yaml", "smproxy.yaml"] {
        let out = check(&sample(name));
        assert!(
            out.status.success(),
            "{name}: {:?}\n{}",
            out.status,
            printed(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("ok"),
            "{name}: {}",
            printed(&out)
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_field_path() {
    let file = TempFile::new(
        "client_id: 'not a valid id!'\n\
sites:\n  - name: shop\n    hosts: ['shop.example']\n    upstream: 'no port here'\n\
inject:\n  position: middle\n",
    );
    let out = check(&file.0);
    assert!(!out.status.success(), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in ["client_id", "sites[0].upstream", "inject.position"] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("{path}: "))),
            "no `{path}: reason` line in:\n{stderr}"
        );
    }
}

#[test]
fn unknown_key_is_reported_with_its_path() {
    let file = TempFile::new(
        "client_id: abc\nsites:\n  - name: s\n    hosts: ['*']\n    upstream: '127.0.0.1:1'\n\
inject:\n  positon: head_end\n",
    );
    let out = check(&file.0);
    assert!(!out.status.success(), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("inject.positon: ") && l.contains("unknown field")),
        "{stderr}"
    );
}

#[test]
fn a_secret_under_a_wrong_type_key_is_never_echoed() {
    let value = "supersecretvalue-xyz";
    let file = TempFile::new(&format!(
        "client_id: abc\nsites:\n  - name: s\n    hosts: ['*']\n    upstream: '127.0.0.1:1'\n\
cookies: \"{value}\"\n"
    ));
    let out = check(&file.0);
    assert!(!out.status.success(), "{}", printed(&out));
    let all = printed(&out);
    assert!(
        all.lines().any(|l| l.starts_with("cookies: ")),
        "the problem should be located at `cookies`:\n{all}"
    );
    assert!(!all.contains(value), "the value was echoed:\n{all}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let path = std::env::temp_dir().join(format!(
        "smproxy-cli-missing-{}-does-not-exist.yaml",
        std::process::id()
    ));
    let out = check(&path);
    assert!(!out.status.success(), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains(&*path.to_string_lossy()), "{stderr}");
}

#[test]
fn no_arguments_prints_a_hint_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_smproxy"))
        .output()
        .expect("run smproxy");
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("-c FILE"), "{stderr}");
    assert!(stderr.contains("smproxy demo"), "{stderr}");
}

mod common;

/// The real process: beacons accepted before SIGTERM are all in the SQLite file after it exits.
#[test]
fn sigterm_stores_every_accepted_event_before_exiting() {
    let origin = common::Origin::respond(|_| common::html_response(b"<html><head></head></html>"));
    let dir = common::TempDir::new("cli-sigterm");
    let db = dir.0.join("events.db");
    let (listen, admin) = (common::free_addr(), common::free_addr());
    let config = TempFile::new(&format!(
        "listen: \"{listen}\"\nclient_id: \"cli\"\ngrace_period_seconds: 1\n\
sites:\n  - name: s\n    hosts: [\"*\"]\n    upstream: \"{}\"\n\
admin:\n  listen: \"{admin}\"\nstore:\n  sqlite: \"{}\"\ncookies:\n  secret_env: SMPROXY_SECRET\n\
collect:\n  rate_per_minute: 0\n",
        origin.addr,
        db.display()
    ));
    let mut child = smproxy()
        .arg("-c")
        .arg(&config.0)
        .spawn()
        .expect("start smproxy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "smproxy never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let n = 100;
    for i in 0..n {
        let body = format!(r#"{{"type":"event","url":"http://test.example/","name":"n{i}"}}"#);
        let r = common::request_body(
            &listen,
            "POST",
            "/_sm/collect",
            &[
                ("Origin", "http://test.example"),
                ("Content-Type", "text/plain"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for smproxy");
    assert!(status.success(), "{status}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(DISTINCT name) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, n);
}

#[test]
fn check_validates_certificates_and_keys_with_their_field_paths() {
    let dir = std::env::temp_dir().join(format!("smproxy-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, names: &[&str]| {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    };
    let (shop_crt, shop_key) = write("shop", &["shop.example"]);
    let (_, other_key) = write("other", &["other.example"]);
    let site = |i: usize, host: &str, cert: &str, key: &str| {
        format!(
            "  - name: s{i}\n    hosts: ['{host}']\n    upstream: '127.0.0.1:1'\n    tls:\n      cert: '{cert}'\n      key: '{key}'\n"
        )
    };
    let good = TempFile::new(&format!(
        "client_id: abc\nlisten_tls: '127.0.0.1:8443'\nsites:\n{}",
        site(0, "shop.example", &shop_crt, &shop_key)
    ));
    let out = check(&good.0);
    assert!(out.status.success(), "{}", printed(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 with a valid certificate"),
        "{}",
        printed(&out)
    );

    let bad = TempFile::new(&format!(
        "client_id: abc\nlisten_tls: '127.0.0.1:8443'\nsites:\n{}{}{}",
        site(0, "shop.example", &shop_crt, &other_key),
        site(1, "www.example", &shop_crt, &shop_key),
        site(2, "x.example", "/nonexistent/x.crt", &shop_key),
    ));
    let out = check(&bad.0);
    assert!(!out.status.success(), "{}", printed(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (path, says) in [
        ("sites[0].tls.key", "does not belong to the certificate"),
        ("sites[1].hosts[0]", "not covered by the certificate"),
        ("sites[2].tls.cert", "cannot read /nonexistent/x.crt"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{path}: ")) && l.contains(says)),
            "no `{path}: ...{says}...` line in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
