//! `ferroftp doctor`: configuration checks against this host, and `--connect` against a real
//! running server. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Options, TestServer, add_user, bin, code_and_text, dev_cert, free_port, free_port_range,
    lines_with, run_with_input,
};

/// Run `ferroftp doctor ARGS` with `stdin`; (exit code, stdout + stderr). Panics if it takes
/// longer than `within`.
fn doctor(args: &[&str], stdin: &str, within: Duration) -> (i32, String) {
    let started = Instant::now();
    let out = run_with_input(
        Command::new(bin()).arg("doctor").args(args),
        stdin.as_bytes(),
    );
    let (code, text) = code_and_text(&out);
    assert!(
        started.elapsed() < within,
        "doctor took {:?}:\n{text}",
        started.elapsed()
    );
    (code, text)
}

/// A passive range of `n` ports that are free now: (first, last).
fn free_range(n: u16) -> (u16, u16) {
    let low = free_port_range(n);
    (low, low + n - 1)
}

/// A configuration directory: a root, a users file, a development certificate, and a
/// config file with `extra` appended (the listener is added by `write`).
struct Setup {
    dir: tempfile::TempDir,
    root: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    users: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tls = dir.path().join("tls");
        let (cert, key) = dev_cert(&tls, &["localhost", "127.0.0.1"]);
        let users = dir.path().join("users.toml");
        add_user(&users, "alice", "alice-password", None);
        Self {
            dir,
            root,
            cert,
            key,
            users,
        }
    }

    /// Write a config with one explicit-FTPS listener on 127.0.0.1:`port` and `extra`.
    fn write(&self, port: u16, extra: &str) -> PathBuf {
        let path = self.dir.path().join("ferroftp.toml");
        let text = format!(
            "root = {root:?}\nusers_file = {users:?}\n{extra}\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n",
            root = self.root.to_str().unwrap(),
            users = self.users.to_str().unwrap(),
            cert = self.cert.to_str().unwrap(),
            key = self.key.to_str().unwrap(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn check(config: &Path) -> (i32, String) {
    doctor(
        &["--config", config.to_str().unwrap()],
        "",
        Duration::from_secs(30),
    )
}

// ---------------------------------------------------------------------------------------------
// Configuration checks
// ---------------------------------------------------------------------------------------------

#[test]
fn a_good_config_passes_and_gets_firewall_rules_with_its_ports() {
    let s = Setup::new();
    let port = free_port();
    let (low, high) = free_range(10);
    let config = s.write(
        port,
        &format!("[passive]\nports = \"{low}-{high}\"\n[limits]\nmax_sessions = 10\n"),
    );
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL "), "{out}");
    assert!(
        !lines_with(&out, "OK", &format!("listener 127.0.0.1:{port}")).is_empty(),
        "{out}"
    );
    assert!(!lines_with(&out, "OK", "certificate").is_empty(), "{out}");
    assert!(!lines_with(&out, "OK", "key ").is_empty(), "{out}");
    assert!(
        out.contains(&format!(
            "nft add rule inet filter input tcp dport {port} ct state new accept"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "nft add rule inet filter input tcp dport {low}-{high} ct state new accept"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "iptables -A INPUT -p tcp --dport {low}:{high} -m conntrack --ctstate NEW -j ACCEPT"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "firewall-cmd --permanent --add-port={port}/tcp --add-port={low}-{high}/tcp\n  firewall-cmd --reload\n"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("ufw allow {port}/tcp\n")), "{out}");
    assert!(
        out.contains(&format!("ufw allow {low}:{high}/tcp\n")),
        "{out}"
    );
    assert!(out.contains("cannot see inside TLS"), "{out}");
    assert!(out.contains("Summary: "), "{out}");
}

#[test]
fn active_mode_rules_use_the_port_below_the_listener_when_configured() {
    let s = Setup::new();
    let port = free_port();
    let below = port - 1;
    // Default: an ephemeral source port, no rule keyed on a source port.
    let (code, out) = check(&s.write(port, ""));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from an ephemeral source port"), "{out}");
    assert!(!out.contains("tcp sport"), "{out}");

    let (code, out) = check(&s.write(port, "[active]\nsource_port_below_listener = true\n"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("from an ephemeral source port"), "{out}");
    assert!(
        out.contains(&format!(
            "nft add rule inet filter output tcp sport {below} tcp dport 1024-65535 ct state new accept"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "iptables -A OUTPUT -p tcp --sport {below} --dport 1024:65535 -m conntrack --ctstate NEW -j ACCEPT"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "ufw allow out proto tcp from any port {below} to any port 1024:65535\n"
        )),
        "{out}"
    );
}

#[test]
fn a_port_in_use_fails_naming_the_port() {
    let s = Setup::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = s.write(port, "");
    let (code, out) = check(&config);
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", &format!("port {port} is already in use"));
    assert!(!fails.is_empty(), "{out}");
    assert!(
        out.contains(&format!("ss -ltnp 'sport = :{port}'")),
        "{out}"
    );
    drop(taken);
}

#[test]
fn a_running_ferroftp_on_the_configured_ports_is_recognised_not_failed() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = dev_cert(certs.path(), &["localhost", "127.0.0.1"]);
    let token = certs.path().join("admin.token");
    std::fs::write(&token, "a-long-enough-admin-token-for-the-test\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Every port from one block below the ephemeral range, so that no test's outgoing
    // connection lands on one of them; if something else takes one of the passive ports
    // anyway before this test holds it, the whole check is repeated on another block.
    let mut tries = 0;
    let (server, path, explicit, implicit) = loop {
        tries += 1;
        assert!(tries <= 5, "no block of ports stayed free");
        let base = free_port_range(9);
        let (explicit, implicit, admin, metrics) = (base, base + 1, base + 2, base + 3);
        let (low, high) = (base + 4, base + 8);
        let config = format!(
            "[[listener]]\nbind = \"127.0.0.1:{explicit}\"\ntls_policy = \"login\"\n\
             [[listener]]\nbind = \"127.0.0.1:{implicit}\"\nmode = \"implicit\"\n\
             [passive]\nports = \"{low}-{high}\"\n[limits]\nmax_sessions = 5\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = {token:?}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n",
            token = token.to_str().unwrap(),
            cert = cert.to_str().unwrap(),
            key = key.to_str().unwrap(),
        );
        #[allow(clippy::needless_update)]
        let server = TestServer::with(Options {
            users: vec![("alice".into(), "alice-password".into(), String::new())],
            listen: Some(String::new()),
            config,
            listeners: 2,
            ..Default::default()
        });
        let path = server.dir.path().join("ferroftp.toml");
        let (code, out) = check(&path);
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("FAIL "), "{out}");
        for port in [explicit, implicit] {
            assert!(
                !lines_with(&out, "OK", &format!("listener 127.0.0.1:{port} (")).is_empty(),
                "{out}"
            );
        }
        for addr in [
            format!("admin API (admin.listen) 127.0.0.1:{admin}"),
            format!("metrics (metrics.listen) 127.0.0.1:{metrics}"),
        ] {
            assert!(!lines_with(&out, "OK", &addr).is_empty(), "{out}");
        }

        // Every passive port busy while it runs (its transfers, or someone else): a warning
        // with the way to see who holds them, not a failure.
        let Ok(held) = (low..=high)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let (code, out) = check(&path);
        assert_eq!(code, 0, "{out}");
        assert!(
            lines_with(
                &out,
                "WARN",
                &format!("passive.ports {low}-{high}: 5 ports, 0 free")
            )
            .len()
                == 1,
            "{out}"
        );
        drop(held);
        break (server, path, explicit, implicit);
    };

    // Another greeting is another server (or another configuration): still a FAIL.
    let text = std::fs::read_to_string(&path).unwrap();
    let other = server.dir.path().join("other.toml");
    std::fs::write(&other, format!("greeting = \"someone else\"\n{text}")).unwrap();
    let (code, out) = check(&other);
    assert_eq!(code, 1, "{out}");
    for port in [explicit, implicit] {
        assert!(
            lines_with(&out, "FAIL", &format!("listener 127.0.0.1:{port} ("))
                .iter()
                .any(|l| l.contains("220 ferroftp ready")),
            "{out}"
        );
    }
}

#[test]
fn an_expired_or_mismatched_certificate_fails_naming_the_file() {
    let s = Setup::new();
    let port = free_port();

    // Expired: made with rcgen, valid from 60 days ago until yesterday.
    let expired_dir = s.dir.path().join("expired");
    std::fs::create_dir(&expired_dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(60);
    params.not_after = now - time::Duration::days(1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (expired_dir.join("cert.pem"), expired_dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = s.write(port, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(s.cert.to_str().unwrap(), cert_path.to_str().unwrap())
        .replace(s.key.to_str().unwrap(), key_path.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let (code, out) = check(&config);
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", cert_path.to_str().unwrap());
    assert!(fails.iter().any(|l| l.contains("expired")), "{out}");

    // Mismatched: the certificate of one pair with the key of another.
    let other = dev_cert(&s.dir.path().join("other"), &["localhost"]);
    let config = s.write(port, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(s.key.to_str().unwrap(), other.1.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let (code, out) = check(&config);
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", "does not match");
    assert!(
        fails
            .iter()
            .any(|l| l.contains(s.cert.to_str().unwrap()) && l.contains(other.1.to_str().unwrap())),
        "{out}"
    );
}

#[test]
fn a_tiny_passive_range_with_a_large_session_limit_warns() {
    let s = Setup::new();
    let port = free_port();
    let (low, high) = free_range(2);
    let config = s.write(
        port,
        &format!("[passive]\nports = \"{low}-{high}\"\n[limits]\nmax_sessions = 500\n"),
    );
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    let warns = lines_with(
        &out,
        "WARN",
        &format!("passive.ports {low}-{high} holds 2 ports"),
    );
    assert!(
        warns
            .iter()
            .any(|l| l.contains("max_sessions is 500") && l.contains("425")),
        "{out}"
    );
}

#[test]
fn a_world_readable_key_warns() {
    let s = Setup::new();
    std::fs::set_permissions(&s.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = s.write(free_port(), "");
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    let warns = lines_with(&out, "WARN", s.key.to_str().unwrap());
    assert!(warns.iter().any(|l| l.contains("0644")), "{out}");
    assert!(
        out.contains(&format!("chmod 600 {}", s.key.display())),
        "{out}"
    );
}

#[test]
fn group_readable_secret_files_are_the_recipe_and_world_readable_ones_warn() {
    // Readable by the service's group (0640) is fine for both (the README's recipe for the
    // key; the users file's is the service's own, 0600).
    let s = Setup::new();
    for f in [&s.users, &s.key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    let config = s.write(free_port(), "");
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    for f in [&s.users, &s.key] {
        let f = f.to_str().unwrap();
        assert!(
            lines_with(&out, "WARN", f).is_empty() && lines_with(&out, "FAIL", f).is_empty(),
            "{out}"
        );
        assert!(
            lines_with(&out, "OK", f).iter().any(|l| l.contains("0640")),
            "{out}"
        );
    }

    // Every local user may read the users file: a warning that says so; writable by all: FAIL.
    std::fs::set_permissions(&s.users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    let warns = lines_with(&out, "WARN", s.users.to_str().unwrap());
    assert!(
        warns
            .iter()
            .any(|l| l.contains("0644") && l.contains("every local user")),
        "{out}"
    );
    // The fix is the README's recipe for that file: the users file is the service's own, the
    // key root's with the service's group.
    std::fs::set_permissions(&s.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, out) = check(&config);
    let (users, key) = (s.users.to_str().unwrap(), s.key.to_str().unwrap());
    assert!(
        out.contains(&format!(
            "fix: chown ferroftp:ferroftp {users} && chmod 600 {users}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "fix: chown root:ferroftp {key} && chmod 640 {key}"
        )),
        "{out}"
    );
    assert!(!out.contains(&format!("root:ferroftp {users}")), "{out}");
    std::fs::set_permissions(&s.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&s.users, std::fs::Permissions::from_mode(0o646)).unwrap();
    let (code, out) = check(&config);
    assert_eq!(code, 1, "{out}");
    assert!(
        !lines_with(&out, "FAIL", s.users.to_str().unwrap()).is_empty(),
        "{out}"
    );
}

/// Doctor looks for a home where the server puts it: `a/../b` is root/b, which the server
/// creates at the first login; doctor says so of root/b (it used to look at root/a/../b and
/// say nothing).
#[test]
fn a_home_is_checked_where_the_server_puts_it() {
    let s = Setup::new();
    add_user(&s.users, "bob", "bob-password", Some(Path::new("a/../b")));
    let config = s.write(free_port(), "");
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    let b = s.root.join("b");
    let lines = lines_with(&out, "OK", b.to_str().unwrap());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("(user bob)") && l.contains("does not exist yet")),
        "{out}"
    );
    assert!(!out.contains("a/../b"), "{out}");
}

#[test]
fn the_admin_api_and_metrics_are_checked_bound_exposed_and_token_mode() {
    let s = Setup::new();
    let token = s.dir.path().join("admin.token");
    std::fs::write(&token, "secret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The admin port is taken by someone else; metrics listen on every address.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap();
    // The other ports from below the ephemeral range, where `taken`'s cannot be: a CI run once
    // saw free_port() hand out the taken port again, and the config was refused as two
    // listeners on one address instead of checked.
    let metrics = free_port_range(1);
    let extra = format!(
        "[admin]\nlisten = \"{admin}\"\ntoken_file = {token:?}\n[metrics]\nlisten = \"0.0.0.0:{metrics}\"\n",
        token = token.to_str().unwrap()
    );
    let config = s.write(free_port_range(1), &extra);
    let (code, out) = check(&config);
    assert_eq!(code, 1, "the admin port in use is a FAIL:\n{out}");
    assert!(
        !lines_with(&out, "FAIL", &format!("admin API (admin.listen) {admin}")).is_empty(),
        "{out}"
    );
    let token_warn = lines_with(&out, "WARN", "admin token");
    assert!(token_warn.iter().any(|l| l.contains("0644")), "{out}");
    assert!(
        out.contains(&format!("chmod 600 {}", token.display())),
        "{out}"
    );
    assert!(
        !lines_with(
            &out,
            "WARN",
            &format!("metrics (metrics.listen) 0.0.0.0:{metrics} is not on loopback")
        )
        .is_empty(),
        "{out}"
    );

    // Fixed: the port free, the token private, metrics on loopback: no complaint left.
    drop(taken);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = extra.replace(
        &format!("0.0.0.0:{metrics}"),
        &format!("127.0.0.1:{metrics}"),
    );
    let config = s.write(free_port(), &extra);
    let (code, out) = check(&config);
    assert_eq!(code, 0, "{out}");
    assert!(!lines_with(&out, "OK", "admin token").is_empty(), "{out}");
    for needle in ["admin", "metrics"] {
        assert!(
            lines_with(&out, "WARN", needle).is_empty()
                && lines_with(&out, "FAIL", needle).is_empty(),
            "{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// --connect
// ---------------------------------------------------------------------------------------------

fn alice_server(args: Vec<String>, config: &str, listeners: usize) -> TestServer {
    TestServer::with(Options {
        users: vec![("alice".into(), "alice-password".into(), String::new())],
        args,
        config: config.into(),
        listeners,
        ..Default::default()
    })
}

/// A server with the user alice, a development certificate for localhost and 127.0.0.1
/// (in the returned directory, as `cert.pem`/`key.pem`) and the `[[listener]]` tables of
/// `listeners_toml`, `listeners` of them.
fn tls_server(listeners_toml: &str, listeners: usize) -> (tempfile::TempDir, TestServer) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = dev_cert(certs.path(), &["localhost", "127.0.0.1"]);
    let server = TestServer::with(Options {
        users: vec![("alice".into(), "alice-password".into(), String::new())],
        args: vec![
            "--tls-cert".into(),
            cert.to_str().unwrap().into(),
            "--tls-key".into(),
            key.to_str().unwrap().into(),
        ],
        listen: Some(String::new()),
        config: listeners_toml.into(),
        listeners,
        ..Default::default()
    });
    (certs, server)
}

fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ferroftp-doctor"))
        .collect()
}

#[test]
fn connect_works_plain_and_with_tls() {
    // Explicit FTPS, implicit FTPS, and explicit FTPS that requires TLS for login.
    let (certs, server) = tls_server(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nmode = \"implicit\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\ntls_policy = \"login\"\n",
        3,
    );
    let cert = certs.path().join("cert.pem");
    let target = server.addrs[0].to_string();

    // Plain, then FTPS (AUTH TLS), verifying the server against its certificate.
    let (code, out) = doctor(
        &[
            "--connect",
            &target,
            "--user",
            "alice",
            "--ca",
            cert.to_str().unwrap(),
        ],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Plain FTP session"), "{out}");
    assert!(out.contains("FTPS session (AUTH TLS, PROT P)"), "{out}");
    assert_eq!(lines_with(&out, "OK", "PASV listing").len(), 2, "{out}");
    assert_eq!(lines_with(&out, "OK", "EPSV listing").len(), 2, "{out}");
    let trips = lines_with(&out, "OK", "round trip over EPSV");
    assert_eq!(trips.len(), 2, "{out}");
    assert!(
        trips.iter().all(|l| l.contains("SHA-256 identical")),
        "{out}"
    );
    assert!(
        out.contains("TLS resumed the control connection's session"),
        "{out}"
    );
    assert!(
        !out.contains("alice-password"),
        "the password is never shown:\n{out}"
    );
    assert!(
        leftovers(&server.root).is_empty(),
        "{:?}",
        leftovers(&server.root)
    );

    // Implicit FTPS, without verification.
    let (code, out) = doctor(
        &[
            "--connect",
            &server.addrs[1].to_string(),
            "--user",
            "alice",
            "--implicit",
            "--insecure",
        ],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Implicit FTPS session"), "{out}");
    assert!(
        !lines_with(&out, "OK", "round trip over EPSV").is_empty(),
        "{out}"
    );

    // TLS required for login: the plain login is refused as configured, and FTPS works.
    let (code, out) = doctor(
        &[
            "--connect",
            &server.addrs[2].to_string(),
            "--user",
            "alice",
            "--ca",
            cert.to_str().unwrap(),
        ],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        !lines_with(&out, "OK", "plain login refused, TLS is required").is_empty(),
        "{out}"
    );
    assert!(
        !lines_with(&out, "OK", "round trip over EPSV").is_empty(),
        "{out}"
    );

    // Without --ca or --insecure the self-signed certificate is not trusted, and doctor says so.
    let (code, out) = doctor(
        &["--connect", &target, "--user", "alice", "--tls"],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--ca FILE") && out.contains("FAIL"), "{out}");
}

/// A self-signed certificate made the common way, `openssl req -x509`, which marks it CA:TRUE:
/// (cert.pem, key.pem) in `dir`.
fn openssl_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .output()
        .expect("openssl must be installed for this test");
    assert!(out.status.success(), "{out:?}");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl req -x509 is expected to mark the certificate CA:TRUE"
    );
    (cert, key)
}

#[test]
fn connect_trusts_an_openssl_self_signed_certificate_given_with_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_cert(&dir.path().join("server"), "localhost");
    let server = alice_server(
        vec![
            "--tls-cert".into(),
            cert.to_str().unwrap().into(),
            "--tls-key".into(),
            key.to_str().unwrap().into(),
        ],
        "",
        1,
    );
    let target = server.addr.to_string();
    // The server's own certificate, as curl --cacert and lftp's ssl:ca-file take it.
    let (code, out) = doctor(
        &[
            "--connect",
            &target,
            "--user",
            "alice",
            "--tls",
            "--ca",
            cert.to_str().unwrap(),
        ],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{out}");
    assert!(!lines_with(&out, "OK", "AUTH TLS: TLS").is_empty(), "{out}");
    assert!(
        !lines_with(&out, "OK", "round trip over EPSV").is_empty(),
        "{out}"
    );

    // Another certificate of the same kind: refused, in plain words, with the way out.
    let (other, _) = openssl_cert(&dir.path().join("other"), "other");
    let (code, out) = doctor(
        &[
            "--connect",
            &target,
            "--user",
            "alice",
            "--tls",
            "--ca",
            other.to_str().unwrap(),
        ],
        "alice-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", "AUTH TLS handshake failed");
    assert!(!fails.is_empty(), "{out}");
    assert!(
        !out.contains("OtherError") && !out.contains("CaUsedAsEndEntity"),
        "no raw rustls error:\n{out}"
    );
    assert!(out.contains("fix: ") && out.contains("--ca"), "{out}");
}

#[test]
fn connect_to_an_implicit_port_without_implicit_says_to_use_it() {
    let (_certs, server) = tls_server(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nmode = \"implicit\"\n",
        1,
    );
    let target = server.addr.to_string();
    for extra in [None, Some("--tls")] {
        let mut args = vec!["--connect", &target, "--user", "alice", "--timeout", "2"];
        args.extend(extra);
        let (code, out) = doctor(&args, "alice-password\n", Duration::from_secs(60));
        assert_eq!(code, 1, "{out}");
        let fails = lines_with(&out, "FAIL", "no FTP greeting");
        assert!(fails.iter().any(|l| l.contains("implicit FTPS")), "{out}");
        assert!(out.contains("fix: add --implicit"), "{out}");
        // The greeting never came, so nothing is known about AUTH TLS.
        assert!(!out.contains("does not offer AUTH TLS"), "{out}");
        assert_eq!(
            lines_with(&out, "WARN", "").len() + lines_with(&out, "FAIL", "").len(),
            2,
            "one FAIL, repeated in the summary:\n{out}"
        );
    }
}

#[test]
fn connect_with_a_wrong_password_says_the_login_failed() {
    let server = alice_server(vec!["--no-tls".into()], "", 1);
    let (code, out) = doctor(
        &["--connect", &server.addr.to_string(), "--user", "alice"],
        "not-the-password\n",
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        !lines_with(&out, "FAIL", "login failed for alice: 530").is_empty(),
        "{out}"
    );
    assert!(out.contains("wrong user name or password"), "{out}");
}

#[test]
fn connect_blames_pasv_when_the_announced_address_is_unreachable() {
    let server = alice_server(
        vec!["--no-tls".into()],
        "[passive]\naddress = \"192.0.2.1\"\n",
        1,
    );
    let (code, out) = doctor(
        &[
            "--connect",
            &server.addr.to_string(),
            "--user",
            "alice",
            "--timeout",
            "2",
        ],
        "alice-password\n",
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", "PASV answered 192.0.2.1:");
    assert!(
        fails
            .iter()
            .any(|l| l.contains("firewall") && l.contains("passive.address")),
        "{out}"
    );
    // EPSV needs no address: it works, and the round trip goes over it.
    assert!(!lines_with(&out, "OK", "EPSV listing").is_empty(), "{out}");
    assert!(
        !lines_with(&out, "OK", "round trip over EPSV").is_empty(),
        "{out}"
    );
    assert!(
        !lines_with(&out, "WARN", "EPSV works but PASV does not").is_empty(),
        "{out}"
    );
}

#[test]
fn connect_to_a_closed_port_says_the_server_is_unreachable() {
    let port = free_port();
    let (code, out) = doctor(
        &["--connect", &format!("127.0.0.1:{port}"), "--user", "alice"],
        "whatever\n",
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{out}");
    let fails = lines_with(&out, "FAIL", "server unreachable");
    assert!(fails.iter().any(|l| l.contains("refused")), "{out}");
    assert!(out.contains("is ferroftp running"), "{out}");
}
