//! FTPS security policies and failure modes, against the real binary: data connections bound
//! to their control session, TLS policies per listener and per user, refused protocol
//! versions, live certificate reload, clear start-up errors, hostile handshakes, STARTTLS
//! command injection, truncated uploads and client certificates.
//!
//! TLS clients are Python's `ssl` (OpenSSL), driven step by step through
//! `tests/py/tlspol_agent.py` so that each test here reads as the protocol exchange it checks;
//! old protocol versions are also probed with hand-made ClientHellos. Positive interoperability
//! with real clients lives in `tls_clients.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ctrl, Options, TestServer, bin, is_root, log_count, pseudo_random};

// ---------------------------------------------------------------------------------------------
// The Python TLS client

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// One answer of the agent: a TOML table, plus the raw line for failure messages.
struct R {
    table: toml::Table,
    raw: String,
}

impl R {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key)
    }
    fn str(&self, key: &str) -> &str {
        self.get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.raw))
    }
    fn opt_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(toml::Value::as_str)
    }
    fn int(&self, key: &str) -> i64 {
        self.get(key)
            .and_then(toml::Value::as_integer)
            .unwrap_or_else(|| panic!("no integer {key:?} in {}", self.raw))
    }
    fn bool(&self, key: &str) -> bool {
        self.get(key)
            .and_then(toml::Value::as_bool)
            .unwrap_or_else(|| panic!("no boolean {key:?} in {}", self.raw))
    }
    fn code(&self) -> i64 {
        self.int("code")
    }
    fn text(&self) -> &str {
        self.str("text")
    }
    /// Bytes sent as hex.
    fn bytes(&self, key: &str) -> Vec<u8> {
        unhex(self.str(key))
    }
    fn error(&self) -> Option<&str> {
        self.opt_str("error")
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running `tlspol_agent.py`; each call is one request line and one answer line.
struct Agent {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// Every exchange so far, for failure messages.
    transcript: Vec<String>,
}

impl Agent {
    fn new() -> Self {
        let mut child = Command::new("timeout")
            .arg("120")
            .arg("python3")
            .arg(script("tlspol_agent.py"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            input,
            output,
            transcript: Vec::new(),
        }
    }

    fn call(&mut self, fields: &[&str]) -> R {
        let request = fields.join("\t");
        assert!(!request.contains('\n'));
        writeln!(self.input, "{request}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        let n = self.output.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "the agent died at {request:?}; so far:\n{}",
            self.transcript.join("\n")
        );
        let raw = line.trim_end().to_string();
        let short = |s: &str| match s.char_indices().nth(300) {
            Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
            None => s.to_string(),
        };
        self.transcript
            .push(format!("> {}\n< {}", short(&request), short(&raw)));
        let doc: toml::Table = toml::from_str(&format!("r = {raw}"))
            .unwrap_or_else(|e| panic!("bad answer {raw:?}: {e}"));
        let table = doc["r"].as_table().unwrap().clone();
        R { table, raw }
    }

    /// A call that must not fail in the agent.
    fn call_ok(&mut self, fields: &[&str]) -> R {
        let r = self.call(fields);
        if let Some(e) = r.error() {
            panic!(
                "{fields:?} failed: {e}\n{}",
                r.opt_str("trace").unwrap_or_default()
            );
        }
        r
    }

    /// An SSL context: `opts` like `min=1.2`, `max=1.2`, `cert=...`, `key=...`.
    fn ctx(&mut self, name: &str, opts: &[&str]) {
        let mut f = vec!["ctx", name];
        f.extend_from_slice(opts);
        self.call_ok(&f);
    }

    /// A plain control connection, greeted.
    fn connect(&mut self, id: &str, addr: SocketAddr) -> R {
        let port = addr.port().to_string();
        let r = self.call_ok(&["connect", id, &port]);
        assert_eq!(r.code(), 220, "{}", r.raw);
        r
    }

    /// An implicit FTPS control connection; the answer holds the error if TLS failed.
    fn connect_tls(&mut self, id: &str, addr: SocketAddr, ctx: &str) -> R {
        let port = addr.port().to_string();
        let tls = format!("tls={ctx}");
        self.call(&["connect", id, &port, &tls])
    }

    /// AUTH TLS and the handshake, which must succeed.
    fn auth(&mut self, id: &str, ctx: &str) -> R {
        let r = self.call_ok(&["auth", id, ctx]);
        assert_eq!(r.code(), 234, "{}", r.raw);
        r
    }

    fn cmd(&mut self, id: &str, line: &str) -> R {
        self.call_ok(&["cmd", id, line])
    }

    /// A command whose reply must have `code`; returns the reply.
    fn expect(&mut self, id: &str, line: &str, code: i64) -> R {
        let r = self.cmd(id, line);
        assert_eq!(
            r.code(),
            code,
            "{line} -> {}\n{}",
            r.raw,
            self.transcript.join("\n")
        );
        r
    }

    fn login(&mut self, id: &str, user: &str, password: &str) {
        self.expect(id, &format!("USER {user}"), 331);
        self.expect(id, &format!("PASS {password}"), 230);
    }

    /// Explicit FTPS up to PROT P: connect, AUTH TLS, log in, PBSZ 0, PROT P, TYPE I.
    fn ftps_session(&mut self, id: &str, addr: SocketAddr, ctx: &str, user: &str, pw: &str) {
        self.connect(id, addr);
        self.auth(id, ctx);
        self.login(id, user, pw);
        self.expect(id, "PBSZ 0", 200);
        self.expect(id, "PROT P", 200);
        self.expect(id, "TYPE I", 200);
    }

    /// One transfer over passive mode; `opts` like `data=plain`, `session=fresh`,
    /// `close=abrupt`.
    fn xfer(&mut self, id: &str, verb: &str, path: &str, payload: &[u8], opts: &[&str]) -> R {
        let path = format!("path={path}");
        let payload = format!("hex={}", hex(payload));
        let mut f = vec!["xfer", id, verb, &path, &payload];
        f.extend_from_slice(opts);
        self.call_ok(&f)
    }

    fn fingerprint(&mut self, id: &str) -> String {
        self.call_ok(&["info", id]).str("fingerprint").to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- agent transcript ----\n{}", self.transcript.join("\n"));
        }
    }
}

/// Run `tlspol_ftplib.py PORT USER PASS ROOT MODE`, which must print OK.
fn ftplib(addr: SocketAddr, root: &Path, mode: &str) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(script("tlspol_ftplib.py"))
        .args([&addr.port().to_string(), "alice", "alicepw"])
        .arg(root)
        .arg(mode)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "tlspol_ftplib.py {mode} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------------------------
// Servers, certificates, logs

/// A certificate made with `ferroftp cert` in `dir`: (cert, key, the SHA-256 it printed).
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, String) {
    let out = Command::new(bin())
        .args(["cert", "--self-signed", "--host", "127.0.0.1", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ferroftp cert: {stdout}");
    let fp = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256:"))
        .unwrap_or_else(|| panic!("no SHA-256 line in {stdout}"))
        .trim()
        .to_string();
    assert_eq!(fp.len(), 95, "{fp}");
    (dir.join("cert.pem"), dir.join("key.pem"), fp)
}

fn listener(mode: &str, extra: &str) -> String {
    format!("[[listener]]\nbind = \"127.0.0.1:0\"\nmode = \"{mode}\"\n{extra}\n")
}

/// A `[tls]` table with a 2 s handshake timeout unless `extra` sets one.
fn tls_table(cert: &Path, key: &Path, extra: &str) -> String {
    let timeout = if extra.contains("handshake_timeout_secs") {
        ""
    } else {
        "handshake_timeout_secs = 2\n"
    };
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{timeout}{extra}\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    )
}

/// A server with the given listeners and `[tls]` extras, its certificate in its own temp dir
/// (returned so it lives as long as the server), and the users alice/alicepw plus `users`.
fn server(
    listeners: &[(&str, &str)],
    tls_extra: &str,
    users: &[(&str, &str, &str)],
) -> (TestServer, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = make_cert(certs.path());
    let mut config: String = listeners.iter().map(|(m, e)| listener(m, e)).collect();
    config.push_str(&tls_table(&cert, &key, tls_extra));
    let mut all = vec![("alice".to_string(), "alicepw".to_string(), String::new())];
    all.extend(
        users
            .iter()
            .map(|(u, p, e)| (u.to_string(), p.to_string(), e.to_string())),
    );
    let server = TestServer::with(Options {
        config,
        listen: Some(String::new()),
        listeners: listeners.len(),
        users: all,
        ..Options::default()
    });
    (server, certs)
}

/// Wait until `needle` appears in at least `n` log lines.
fn wait_for_count(server: &TestServer, needle: &str, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while log_count(server, needle) < n {
        assert!(
            Instant::now() < deadline,
            "log never showed {needle:?} {n} times; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log lines containing `needle`, joined.
fn log_lines(server: &TestServer, needle: &str) -> String {
    server
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Replace a file's contents in one step (write a sibling, rename it over).
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Data connections are bound to their own control session

#[test]
fn stock_ftplib_is_refused_a_resuming_ftplib_works_and_reuse_can_be_turned_off() {
    let (server, _certs) = server(
        &[
            ("explicit", ""),
            ("explicit", "require_session_reuse = false"),
        ],
        "",
        &[],
    );
    let bound = server.addrs[0];
    let unbound = server.addrs[1];

    // Stock FTP_TLS does a full handshake on each data connection: 522, no data, no file.
    let out = ftplib(bound, &server.root, "stock-refused");
    assert!(out.contains("RETR refused: 522") && out.contains("STOR refused: 522"));
    let why = log_lines(&server, "refused a TLS data connection that is not bound");
    assert!(
        why.contains("did a full TLS handshake instead of resuming"),
        "the log must say why: {why:?}"
    );
    assert!(!server.root.join("stock.bin").exists());

    // Resuming the control connection's session is what the server asks for.
    ftplib(bound, &server.root, "reusing-ok");
    // A listener with require_session_reuse = false takes stock ftplib.
    ftplib(unbound, &server.root, "stock-ok");
}

#[test]
fn a_data_connection_resuming_another_clients_session_is_refused() {
    let (server, _certs) = server(&[("explicit", "")], "", &[]);
    let addr = server.addr;
    let secret = pseudo_random(50_000, 7);
    std::fs::write(server.root.join("secret.bin"), &secret).unwrap();
    let mut agent = Agent::new();
    for version in ["1.2", "1.3"] {
        let ctx = format!("c{version}");
        let (min, max) = (format!("min={version}"), format!("max={version}"));
        agent.ctx(&ctx, &[&min, &max]);
        let (a, b) = (format!("a{version}"), format!("b{version}"));
        agent.ftps_session(&a, addr, &ctx, "alice", "alicepw");
        agent.ftps_session(&b, addr, &ctx, "alice", "alicepw");

        // A's own data connection resumes A's session and works.
        let r = agent.xfer(&a, "RETR", "secret.bin", b"", &["pasv=EPSV"]);
        assert_eq!(r.code(), 226, "{}", r.raw);
        assert!(r.bytes("data") == secret, "A's own download differs");
        assert_eq!(r.str("data_version"), format!("TLSv{version}"));

        // B's data connection presents A's session: refused before any byte of the file.
        let before = log_count(&server, "refused a TLS data connection that is not bound");
        let r = agent.xfer(&b, "RETR", "secret.bin", b"", &[&format!("session={a}")]);
        assert_eq!(r.int("prelim_code"), 150, "{}", r.raw);
        assert_eq!(r.code(), 522, "TLS {version}: {}", r.raw);
        assert!(
            r.bytes("data").is_empty(),
            "TLS {version}: file data leaked"
        );
        assert_eq!(r.opt_str("data_version"), Some(&*format!("TLSv{version}")));
        wait_for_count(
            &server,
            "refused a TLS data connection that is not bound",
            before + 1,
            5,
        );

        // The same for an upload: no file appears.
        let name = format!("stolen{version}.bin");
        let r = agent.xfer(&b, "STOR", &name, &secret, &[&format!("session={a}")]);
        assert_eq!(r.code(), 522, "TLS {version}: {}", r.raw);
        assert!(!server.root.join(&name).exists(), "{name} was written");

        // B itself is fine: its own session resumes.
        let r = agent.xfer(&b, "RETR", "secret.bin", b"", &[]);
        assert_eq!(r.code(), 226, "{}", r.raw);
        assert!(r.bytes("data") == secret);
        assert!(r.bool("data_reused"));
    }
    server.wait_for_log("did a full TLS handshake instead of resuming", 5);
}

// ---------------------------------------------------------------------------------------------
// 2. Plaintext data after PROT P

/// The reply that ended a transfer: the refusal instead of 150, or the reply after it.
fn final_code(r: &R) -> i64 {
    match r.int("prelim_code") {
        c if c >= 200 => c,
        _ => r.code(),
    }
}

#[test]
fn a_plaintext_data_connection_after_prot_p_is_refused() {
    let (mut server, _certs) = server(&[("explicit", "")], "", &[]);
    std::fs::write(server.root.join("keep.txt"), b"original contents\n").unwrap();
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.ftps_session("s", server.addr, "c", "alice", "alicepw");

    // Upload over plain TCP onto an existing file and onto a new name.
    for name in ["keep.txt", "new.txt"] {
        let r = agent.xfer("s", "STOR", name, b"PLAINTEXT OVERWRITE\n", &["data=plain"]);
        let code = final_code(&r);
        assert!(
            code == 522 || code == 425,
            "plain STOR {name} after PROT P must be refused: {}",
            r.raw
        );
    }
    assert_eq!(
        std::fs::read(server.root.join("keep.txt")).unwrap(),
        b"original contents\n"
    );
    assert!(!server.root.join("new.txt").exists());

    // Download over plain TCP: the file must not arrive in clear.
    let r = agent.xfer("s", "RETR", "keep.txt", b"", &["data=plain"]);
    let code = final_code(&r);
    assert!(code == 522 || code == 425, "{}", r.raw);
    let got = r.bytes("data");
    assert!(
        !String::from_utf8_lossy(&got).contains("original"),
        "the file went out in clear: {got:?}"
    );
    server.wait_for_log("TLS handshake on the data connection failed", 5);

    // The session and the server go on.
    agent.expect("s", "NOOP", 200);
    let r = agent.xfer("s", "RETR", "keep.txt", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
    assert_eq!(r.bytes("data"), b"original contents\n");
    assert!(server.is_running());
}

// ---------------------------------------------------------------------------------------------
// 3. TLS policies

#[test]
fn login_policy_refuses_user_before_auth_tls() {
    let (server, _certs) = server(&[("explicit", "tls_policy = \"login\"")], "", &[]);
    let mut c = Ctrl::connect(server.addr);
    for user in ["alice", "nobody"] {
        let (code, text) = c.cmd(&format!("USER {user}"));
        assert_eq!(code, 530, "USER before AUTH: {code} {text}");
        assert!(
            text.contains("TLS"),
            "the 530 should say TLS is needed: {text}"
        );
    }
    // A PASS cannot sneak in either.
    let (code, _) = c.cmd("PASS alicepw");
    assert_ne!(code, 230);
    let (code, _) = c.cmd("PWD");
    assert_eq!(code, 530);

    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.connect("s", server.addr);
    agent.auth("s", "c");
    agent.login("s", "alice", "alicepw");
    // "login" does not force protected data.
    agent.expect("s", "PBSZ 0", 200);
    agent.expect("s", "PROT C", 200);
    let r = agent.xfer("s", "LIST", "", b"", &["data=plain"]);
    assert_eq!(r.code(), 226, "{}", r.raw);
}

#[test]
fn login_and_data_policy_requires_prot_p() {
    let (server, _certs) = server(&[("explicit", "tls_policy = \"login_and_data\"")], "", &[]);
    std::fs::write(server.root.join("f.txt"), b"data\n").unwrap();
    let mut c = Ctrl::connect(server.addr);
    assert_eq!(c.cmd("USER alice").0, 530);

    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.connect("s", server.addr);
    agent.auth("s", "c");
    agent.login("s", "alice", "alicepw");
    // No PROT at all yet: transfers are refused before any data connection is used.
    let r = agent.xfer("s", "RETR", "f.txt", b"", &["data=plain"]);
    assert_eq!(r.int("prelim_code"), 521, "{}", r.raw);
    agent.expect("s", "PBSZ 0", 200);
    let r = agent.expect("s", "PROT C", 534);
    assert!(r.text().contains("PROT P"), "{}", r.raw);
    let r = agent.xfer("s", "STOR", "up.txt", b"x", &["data=plain"]);
    assert_eq!(r.int("prelim_code"), 521, "{}", r.raw);
    assert!(!server.root.join("up.txt").exists());
    let r = agent.xfer("s", "LIST", "", b"", &["data=plain"]);
    assert_eq!(r.int("prelim_code"), 521, "{}", r.raw);

    agent.expect("s", "PROT P", 200);
    let r = agent.xfer("s", "RETR", "f.txt", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
    assert_eq!(r.bytes("data"), b"data\r\n");
    let r = agent.xfer("s", "STOR", "up.txt", b"uploaded", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
    assert_eq!(
        std::fs::read(server.root.join("up.txt")).unwrap(),
        b"uploaded"
    );
}

#[test]
fn a_users_own_tls_policy_applies_on_an_optional_listener() {
    let (server, _certs) = server(
        &[("explicit", "")],
        "",
        &[
            ("tina", "tinapw", "tls_policy = \"login\""),
            ("dora", "dorapw", "tls_policy = \"login_and_data\""),
        ],
    );
    std::fs::write(server.root.join("f.txt"), b"data\n").unwrap();
    // Over plain FTP: alice may log in, tina and dora may not (even with the right password).
    let mut c = Ctrl::connect(server.addr);
    c.login("alice", "alicepw");
    for (user, pw) in [("tina", "tinapw"), ("dora", "dorapw")] {
        let mut c = Ctrl::connect(server.addr);
        c.cmd_ok(&format!("USER {user}"), 331);
        let (code, text) = c.cmd(&format!("PASS {pw}"));
        assert_eq!(code, 530, "{user} over plain FTP: {code} {text}");
        assert!(text.contains("TLS"), "{text}");
        assert_eq!(c.cmd("PWD").0, 530, "{user} must not be logged in");
    }
    wait_for_count(&server, "login refused: the account requires TLS", 2, 5);

    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.connect("t", server.addr);
    agent.auth("t", "c");
    agent.login("t", "tina", "tinapw");
    // tina's "login" leaves data protection to her.
    agent.expect("t", "PBSZ 0", 200);
    let r = agent.xfer("t", "RETR", "f.txt", b"", &["data=plain"]);
    assert_eq!(r.code(), 226, "{}", r.raw);

    agent.connect("d", server.addr);
    agent.auth("d", "c");
    agent.login("d", "dora", "dorapw");
    let r = agent.xfer("d", "RETR", "f.txt", b"", &["data=plain"]);
    assert_eq!(r.int("prelim_code"), 521, "dora without PROT P: {}", r.raw);
    agent.expect("d", "PBSZ 0", 200);
    agent.expect("d", "PROT C", 534);
    agent.expect("d", "PROT P", 200);
    let r = agent.xfer("d", "RETR", "f.txt", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
}

#[test]
fn security_commands_follow_rfc_4217_and_plain_listeners_offer_no_tls() {
    let (server, _certs) = server(&[("explicit", ""), ("plain", "")], "", &[]);
    let (explicit, plain) = (server.addrs[0], server.addrs[1]);

    // FEAT: AUTH TLS, PBSZ and PROT on the explicit listener only.
    let feat_lines = |addr| {
        let mut c = Ctrl::connect(addr);
        let text = c.cmd_ok("FEAT", 211);
        text.lines()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    let feats = feat_lines(explicit);
    for f in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(
            feats.iter().any(|l| l == f),
            "explicit FEAT lacks {f}: {feats:?}"
        );
    }
    let feats = feat_lines(plain);
    for f in ["AUTH", "PBSZ", "PROT"] {
        assert!(
            !feats.iter().any(|l| l.starts_with(f)),
            "plain FEAT offers {f}: {feats:?}"
        );
    }

    // A plain listener refuses AUTH TLS (the server does have TLS for its other listener).
    let mut c = Ctrl::connect(plain);
    for mech in ["TLS", "SSL"] {
        let (code, text) = c.cmd(&format!("AUTH {mech}"));
        assert_eq!(code, 502, "AUTH {mech} on a plain listener: {text}");
    }
    c.login("alice", "alicepw");

    // Before AUTH: PBSZ and PROT are out of sequence.
    let mut c = Ctrl::connect(explicit);
    assert_eq!(c.cmd("PBSZ 0").0, 503);
    assert_eq!(c.cmd("PROT P").0, 503);
    assert_eq!(c.cmd("AUTH KERBEROS_V4").0, 504);

    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.connect("s", explicit);
    agent.auth("s", "c");
    agent.expect("s", "PROT P", 503); // PBSZ first
    agent.expect("s", "PBSZ 0", 200);
    agent.expect("s", "PROT S", 536);
    agent.expect("s", "PROT E", 536);
    agent.expect("s", "CCC", 534);
    agent.expect("s", "AUTH TLS", 503);
    // Still TLS and usable after all of that.
    agent.login("s", "alice", "alicepw");
    agent.expect("s", "PROT P", 200);
    let r = agent.xfer("s", "LIST", "", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
}

// ---------------------------------------------------------------------------------------------
// 4. Protocol versions

/// A ClientHello offering only `version` (no supported_versions extension), with the
/// signature_algorithms extension so that the version is what the server judges.
fn client_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(version.to_be_bytes());
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 5] = [0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f];
    body.extend(u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null only
    let mut ext: Vec<u8> = Vec::new();
    ext.extend([
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    ext.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    body.extend(u16::try_from(ext.len()).unwrap().to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01];
    hs.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16];
    record.extend(version.min(0x0301).to_be_bytes());
    record.extend(u16::try_from(hs.len()).unwrap().to_be_bytes());
    record.extend(hs);
    record
}

/// Send a ClientHello on `stream` and return the first record header and body the server
/// answers with (up to 7 bytes).
fn hello_answer(mut stream: TcpStream, version: u16) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&client_hello(version)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    while got.len() < 7 {
        match stream.read(&mut buf[..7 - got.len()]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn sslv3_tls10_and_tls11_are_refused_by_the_server() {
    let (server, _certs) = server(&[("explicit", ""), ("implicit", "")], "", &[]);
    let (explicit, implicit) = (server.addrs[0], server.addrs[1]);

    // Hand-made hellos: the same hello at TLS 1.2 gets a ServerHello, so what is refused below
    // is the version alone; the refusal is a fatal protocol_version alert (70) from the server.
    let ok = hello_answer(TcpStream::connect(implicit).unwrap(), 0x0303);
    assert_eq!(
        ok.first(),
        Some(&0x16),
        "TLS 1.2 hello not answered: {ok:?}"
    );
    for (name, version) in [("SSLv3", 0x0300), ("TLS 1.0", 0x0301), ("TLS 1.1", 0x0302)] {
        let got = hello_answer(TcpStream::connect(implicit).unwrap(), version);
        assert!(
            got.len() == 7 && got[0] == 0x15 && got[5] == 2 && got[6] == 70,
            "implicit, {name}: expected a fatal protocol_version alert, got {got:?}"
        );
        let mut c = Ctrl::connect(explicit);
        c.cmd_ok("AUTH TLS", 234);
        let got = hello_answer(c.stream.try_clone().unwrap(), version);
        assert!(
            got.len() == 7 && got[0] == 0x15 && got[5] == 2 && got[6] == 70,
            "explicit, {name}: expected a fatal protocol_version alert, got {got:?}"
        );
    }
    wait_for_count(&server, "Tls12NotOffered", 6, 5);

    // Real OpenSSL clients limited to TLS 1.0 or 1.1 get a fatal alert from the server (the
    // error names an alert received, not a local refusal).
    let mut agent = Agent::new();
    for v in ["1.0", "1.1"] {
        let (min, max) = (format!("min={v}"), format!("max={v}"));
        agent.ctx(v, &[&min, &max, "ciphers=DEFAULT:@SECLEVEL=0"]);
        let r = agent.connect_tls(&format!("old{v}"), implicit, v);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("TLS {v} accepted: {}", r.raw));
        assert!(e.to_lowercase().contains("alert"), "TLS {v}: {e}");
        agent.connect(&format!("old{v}x"), explicit);
        let r = agent.call(&["auth", &format!("old{v}x"), v]);
        assert_eq!(r.code(), 234);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("TLS {v} accepted: {}", r.raw));
        assert!(e.to_lowercase().contains("alert"), "TLS {v}: {e}");
    }
    // The server goes on: TLS 1.2 and 1.3 clients on both listeners.
    for v in ["1.2", "1.3"] {
        let (min, max) = (format!("min={v}"), format!("max={v}"));
        let ctx = format!("new{v}");
        agent.ctx(&ctx, &[&min, &max]);
        let r = agent.connect_tls(&format!("i{v}"), implicit, &ctx);
        assert_eq!(
            r.opt_str("version"),
            Some(&*format!("TLSv{v}")),
            "{}",
            r.raw
        );
        agent.login(&format!("i{v}"), "alice", "alicepw");
        agent.ftps_session(&format!("e{v}"), explicit, &ctx, "alice", "alicepw");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Live certificates

#[test]
fn sighup_reloads_the_certificate_keeps_old_sessions_and_refuses_bad_pairs() {
    let certs = tempfile::tempdir().unwrap();
    let dir = |n: &str| {
        let d = certs.path().join(n);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let (a_cert, a_key, a_fp) = make_cert(&dir("a"));
    let (b_cert, b_key, b_fp) = make_cert(&dir("b"));
    assert_ne!(a_fp, b_fp);
    let live = dir("live");
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(&a_cert, &cert).unwrap();
    std::fs::copy(&a_key, &key).unwrap();
    let server = TestServer::with(Options {
        config: listener("explicit", "") + &tls_table(&cert, &key, "reload_check_secs = 0"),
        listen: Some(String::new()),
        users: vec![("alice".into(), "alicepw".into(), String::new())],
        ..Options::default()
    });
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.ftps_session("old", server.addr, "c", "alice", "alicepw");
    assert_eq!(agent.fingerprint("old"), a_fp);

    // Swap in B and signal.
    replace_file(&cert, &std::fs::read(&b_cert).unwrap());
    replace_file(&key, &std::fs::read(&b_key).unwrap());
    server.signal("HUP");
    server.wait_for_log("TLS certificate reloaded", 10);
    assert!(log_lines(&server, "TLS certificate reloaded").contains(&b_fp));
    agent.connect("new", server.addr);
    let r = agent.auth("new", "c");
    assert_eq!(r.str("fingerprint"), b_fp, "a new client must see B");

    // The session opened under A keeps working, data connections included.
    let payload = pseudo_random(40_000, 5);
    let r = agent.xfer("old", "STOR", "after.bin", &payload, &[]);
    assert_eq!(
        r.code(),
        226,
        "old session upload after the swap: {}",
        r.raw
    );
    let r = agent.xfer("old", "RETR", "after.bin", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
    assert!(r.bytes("data") == payload);
    assert_eq!(agent.fingerprint("old"), a_fp);

    // A key that belongs to another certificate: rejected, B stays.
    replace_file(&key, &std::fs::read(&a_key).unwrap());
    server.signal("HUP");
    wait_for_count(&server, "TLS certificate reload rejected", 1, 10);
    let line = log_lines(&server, "TLS certificate reload rejected");
    assert!(line.contains("does not match"), "{line}");
    assert!(line.contains(key.to_str().unwrap()), "{line}");
    agent.connect("n2", server.addr);
    assert_eq!(agent.auth("n2", "c").str("fingerprint"), b_fp);

    // Garbage: rejected too, B stays.
    replace_file(&cert, b"this is not a certificate\n");
    replace_file(&key, &std::fs::read(&b_key).unwrap());
    server.signal("HUP");
    wait_for_count(&server, "TLS certificate reload rejected", 2, 10);
    let line = log_lines(&server, "TLS certificate reload rejected");
    assert!(line.contains("no certificate found"), "{line}");
    agent.connect("n3", server.addr);
    assert_eq!(agent.auth("n3", "c").str("fingerprint"), b_fp);
    agent.expect("old", "NOOP", 200);
    assert!(log_lines(&server, "ERROR").contains("TLS certificate reload rejected"));
}

#[test]
fn changed_certificate_files_are_picked_up_without_a_signal() {
    let certs = tempfile::tempdir().unwrap();
    let dir = |n: &str| {
        let d = certs.path().join(n);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let (a_cert, a_key, a_fp) = make_cert(&dir("a"));
    let (b_cert, b_key, b_fp) = make_cert(&dir("b"));
    let live = dir("live");
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    std::fs::copy(&a_cert, &cert).unwrap();
    std::fs::copy(&a_key, &key).unwrap();
    let server = TestServer::with(Options {
        config: listener("implicit", "") + &tls_table(&cert, &key, "reload_check_secs = 1"),
        listen: Some(String::new()),
        users: vec![("alice".into(), "alicepw".into(), String::new())],
        ..Options::default()
    });
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    let r = agent.connect_tls("old", server.addr, "c");
    assert_eq!(r.str("fingerprint"), a_fp, "{}", r.raw);
    agent.login("old", "alice", "alicepw");

    replace_file(&key, &std::fs::read(&b_key).unwrap());
    replace_file(&cert, &std::fs::read(&b_cert).unwrap());
    server.wait_for_log("TLS certificate reloaded", 10);
    let line = log_lines(&server, "TLS certificate reloaded");
    assert!(
        line.contains("the certificate files changed") && line.contains(&b_fp),
        "{line}"
    );
    let r = agent.connect_tls("new", server.addr, "c");
    assert_eq!(r.str("fingerprint"), b_fp, "{}", r.raw);
    let r = agent.xfer("old", "LIST", "", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
}

// ---------------------------------------------------------------------------------------------
// 6. Clear failures at start

/// Run the binary to its exit (it must exit within 10 s): (exit code, stdout, stderr).
fn run_to_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ferroftp {args:?} did not exit; it is serving:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A certificate valid from `not_before` to `not_after` (year, month, day) and its key, PEM.
fn dated_cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A configuration `serve` and `check-config` must refuse, and what they must say.
struct BadStart {
    name: &'static str,
    cert: PathBuf,
    key: PathBuf,
    /// More `[tls]` keys.
    extra: String,
    /// The file the error must name.
    file: PathBuf,
    /// What else the error must say.
    says: &'static [&'static str],
}

#[test]
fn unusable_certificates_stop_the_server_with_the_file_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = d.join("root");
    std::fs::create_dir(&root).unwrap();
    let (good_cert, good_key, _) = make_cert(&d.join("good"));
    let (_, other_key, _) = make_cert(&d.join("other"));
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (expired_cert, expired_key) = dated_cert((2019, 1, 1), (2020, 6, 30));
    let (future_cert, future_key) = dated_cert((2090, 1, 1), (2091, 1, 1));
    let expired_cert = write("expired.pem", &expired_cert);
    let expired_key = write("expired.key", &expired_key);
    let future_cert = write("future.pem", &future_cert);
    let future_key = write("future.key", &future_key);
    let garbage = write("garbage.pem", "hello, I am not PEM\n");
    let missing = d.join("missing").join("cert.pem");
    let no_key = d.join("nokey.pem");
    let no_ca = d.join("no-such-ca.pem");
    let unreadable = d.join("unreadable.pem");
    std::fs::copy(&good_cert, &unreadable).unwrap();

    let case = |name, cert: &Path, key: &Path, file: &Path, says| BadStart {
        name,
        cert: cert.to_owned(),
        key: key.to_owned(),
        extra: String::new(),
        file: file.to_owned(),
        says,
    };
    let mut cases = vec![
        case(
            "missing cert",
            &missing,
            &good_key,
            &missing,
            &["cannot read certificate file", "No such file"],
        ),
        case(
            "missing key",
            &good_cert,
            &no_key,
            &no_key,
            &["cannot read key file", "No such file"],
        ),
        case(
            "expired",
            &expired_cert,
            &expired_key,
            &expired_cert,
            &["expired on 2020-06-30"],
        ),
        case(
            "not yet valid",
            &future_cert,
            &future_key,
            &future_cert,
            &["not valid before 2090-01-01"],
        ),
        case(
            "mismatched key",
            &good_cert,
            &other_key,
            &other_key,
            &["does not match"],
        ),
        case(
            "garbage cert",
            &garbage,
            &good_key,
            &garbage,
            &["no certificate found"],
        ),
        BadStart {
            extra: format!("client_ca = {:?}", no_ca.to_str().unwrap()),
            ..case(
                "missing client CA",
                &good_cert,
                &good_key,
                &no_ca,
                &["cannot read client CA file", "No such file"],
            )
        },
    ];
    if is_root() {
        eprintln!("running as root: chmod 000 does not stop reads; unreadable case skipped");
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
        cases.push(case(
            "unreadable cert",
            &unreadable,
            &good_key,
            &unreadable,
            &["cannot read certificate file", "Permission denied"],
        ));
    }

    for BadStart {
        name,
        cert,
        key,
        extra,
        file,
        says,
    } in &cases
    {
        let config = write(
            "ferroftp.toml",
            &format!(
                "root = {:?}\n{}{}",
                root.to_str().unwrap(),
                listener("explicit", ""),
                tls_table(cert, key, extra)
            ),
        );
        let file = file.to_str().unwrap();
        let (code, stdout, stderr) =
            run_to_exit(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()]);
        assert!(
            code.is_some_and(|c| c != 0),
            "{name}: serve exited with {code:?}\n{stdout}{stderr}"
        );
        assert!(
            !stdout.contains("listening on"),
            "{name}: it listened: {stdout}"
        );
        assert!(
            stderr.contains(file),
            "{name}: serve does not name {file}:\n{stderr}"
        );
        for s in *says {
            assert!(stderr.contains(s), "{name}: serve lacks {s:?}:\n{stderr}");
        }

        let (code, _, stderr) = run_to_exit(&["check-config".as_ref(), config.as_os_str()]);
        assert!(
            code.is_some_and(|c| c != 0),
            "{name}: check-config exited with {code:?}\n{stderr}"
        );
        assert!(
            stderr.contains(file),
            "{name}: check-config does not name {file}:\n{stderr}"
        );
        for s in *says {
            assert!(
                stderr.contains(s),
                "{name}: check-config lacks {s:?}:\n{stderr}"
            );
        }
    }

    // The good pair passes both.
    let config = write(
        "ferroftp.toml",
        &format!(
            "root = {:?}\n{}{}",
            root.to_str().unwrap(),
            listener("explicit", ""),
            tls_table(&good_cert, &good_key, "")
        ),
    );
    let (code, _, stderr) = run_to_exit(&["check-config".as_ref(), config.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn cert_writes_a_private_key_only_its_owner_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let fresh = tmp.path().join("fresh");
    let (cert, key, fp) = make_cert(&fresh);
    assert_eq!(mode(&key), 0o600, "new key.pem");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // The printed fingerprint is the certificate's, as OpenSSL computes it.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let openssl = String::from_utf8_lossy(&out.stdout);
    let theirs = openssl.trim().rsplit('=').next().unwrap().to_uppercase();
    assert_eq!(theirs, fp, "{openssl}");

    // An existing, world-readable key.pem is made private when overwritten.
    let old = tmp.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("key.pem"), "old key\n").unwrap();
    std::fs::set_permissions(old.join("key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, key, _) = make_cert(&old);
    assert_eq!(mode(&key), 0o600, "overwritten key.pem");
    assert!(!std::fs::read_to_string(&key).unwrap().contains("old key"));
}

// ---------------------------------------------------------------------------------------------
// 7. Handshake trouble

#[test]
fn stalled_garbage_and_aborted_handshakes_are_dropped_and_logged() {
    let (server, _certs) = server(
        &[("explicit", ""), ("implicit", "")],
        "handshake_timeout_secs = 1",
        &[],
    );
    let (explicit, implicit) = (server.addrs[0], server.addrs[1]);
    let failed = "TLS handshake failed on the implicit FTPS listener";

    // A client that connects and says nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(implicit).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut ctrl_silent = Ctrl::connect(explicit);
    ctrl_silent.cmd_ok("AUTH TLS", 234);

    // Meanwhile other clients are served.
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    let r = agent.connect_tls("busy", implicit, "c");
    assert_eq!(r.code(), 220, "{}", r.raw);
    agent.login("busy", "alice", "alicepw");
    let r = agent.xfer("busy", "LIST", "", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);

    let mut buf = [0u8; 64];
    let closed = match silent.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    let waited = started.elapsed();
    assert!(closed, "the silent client was not dropped");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "dropped after {waited:?}, expected about 1 s"
    );
    assert!(
        ctrl_silent.is_closed(),
        "the silent AUTH TLS client was not dropped"
    );
    wait_for_count(
        &server,
        "TLS handshake on the control connection failed",
        1,
        5,
    );
    wait_for_count(&server, failed, 1, 5);
    assert!(log_lines(&server, failed).contains("not completed within 1 s"));
    assert!(
        log_lines(&server, "TLS handshake on the control connection failed")
            .contains("not completed within 1 s")
    );

    // Garbage instead of a ClientHello.
    let before = log_count(&server, failed);
    let mut g = TcpStream::connect(implicit).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: ftp\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = g.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("220"),
        "garbage got a greeting: {answer:?}"
    );
    wait_for_count(&server, failed, before + 1, 5);
    let last = log_lines(&server, failed);
    let last = last.lines().last().unwrap();
    assert!(
        last.contains("reason=") && !last.contains("not completed"),
        "the garbage client's log line should say why: {last}"
    );

    // A client that closes in the middle of its ClientHello.
    let before = log_count(&server, failed);
    let hello = client_hello(0x0303);
    let mut h = TcpStream::connect(implicit).unwrap();
    h.write_all(&hello[..hello.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(h);
    wait_for_count(&server, failed, before + 1, 5);
    let last = log_lines(&server, failed);
    let last = last.lines().last().unwrap();
    assert!(
        last.contains("reason=") && !last.contains("not completed"),
        "the aborted handshake's log line should say why: {last}"
    );

    // And the server goes on, on both listeners.
    let r = agent.connect_tls("after", implicit, "c");
    assert_eq!(r.code(), 220, "{}", r.raw);
    agent.login("after", "alice", "alicepw");
    agent.ftps_session("after2", explicit, "c", "alice", "alicepw");
    let r = agent.xfer("after2", "LIST", "", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
}

// ---------------------------------------------------------------------------------------------
// 8. STARTTLS command injection

#[test]
fn commands_pipelined_after_auth_tls_are_discarded() {
    let (server, _certs) = server(&[("explicit", "")], "", &[]);
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.connect("s", server.addr);
    // One plaintext write: AUTH TLS and, behind it, a login an attacker could have injected.
    let injected = hex(b"AUTH TLS\r\nUSER alice\r\nPASS alicepw\r\n");
    agent.call_ok(&["send", "s", &format!("hex={injected}")]);
    let r = agent.call_ok(&["reply", "s"]);
    assert_eq!(r.code(), 234, "{}", r.raw);
    let r = agent.call_ok(&["starttls", "s", "c"]);
    assert!(
        r.opt_str("leftover").is_none(),
        "plaintext after 234: {}",
        r.raw
    );
    // Neither USER nor PASS ran: no queued replies, not logged in, no USER pending.
    agent.expect("s", "PWD", 530);
    agent.expect("s", "PASS alicepw", 503);
    server.wait_for_log("discarded plaintext commands", 5);
    assert!(!server.log().contains("login ok"), "the injected login ran");
    // The connection is a normal TLS session.
    agent.login("s", "alice", "alicepw");
}

// ---------------------------------------------------------------------------------------------
// 9. Uploads that end without close_notify

#[test]
fn an_upload_without_close_notify_is_refused_and_leaves_the_file_alone() {
    let (server, _certs) = server(&[("explicit", "")], "", &[]);
    let keep = server.root.join("keep.bin");
    let payload = pseudo_random(100_000, 3);
    let mut agent = Agent::new();
    for v in ["1.2", "1.3"] {
        let (min, max) = (format!("min={v}"), format!("max={v}"));
        agent.ctx(v, &[&min, &max]);
        agent.ftps_session(v, server.addr, v, "alice", "alicepw");
        std::fs::write(&keep, b"original").unwrap();

        let r = agent.xfer(v, "STOR", "keep.bin", &payload, &["close=abrupt"]);
        assert_eq!(r.str("data_version"), format!("TLSv{v}"));
        assert_eq!(r.code(), 426, "TLS {v}: {}", r.raw);
        assert!(r.text().contains("close_notify"), "{}", r.raw);
        assert_eq!(std::fs::read(&keep).unwrap(), b"original", "TLS {v}");
        let fresh = format!("fresh{v}.bin");
        let r = agent.xfer(v, "STOR", &fresh, &payload, &["close=abrupt"]);
        assert_eq!(r.code(), 426, "TLS {v}: {}", r.raw);
        assert!(
            !server.root.join(&fresh).exists(),
            "TLS {v}: a truncated upload was kept"
        );

        // The same upload ended properly is stored.
        let r = agent.xfer(v, "STOR", "keep.bin", &payload, &[]);
        assert_eq!(r.code(), 226, "TLS {v}: {}", r.raw);
        assert!(std::fs::read(&keep).unwrap() == payload, "TLS {v}");
    }
    wait_for_count(&server, "truncated: no TLS close_notify", 4, 5);
}

/// A big TLS upload moves to a thread of its own after its first buffer; there too, an upload
/// cut without close_notify is refused and leaves the old file (or no file) behind, and one
/// ended properly (the thread answers the close_notify) arrives byte for byte.
#[test]
fn a_big_tls_upload_on_its_own_thread_needs_close_notify() {
    let (server, _certs) = server(&[("explicit", "")], "", &[]);
    let keep = server.root.join("keep.bin");
    let payload = pseudo_random(4 << 20, 13);
    let mut agent = Agent::new();
    for v in ["1.2", "1.3"] {
        let (min, max) = (format!("min={v}"), format!("max={v}"));
        agent.ctx(v, &[&min, &max]);
        agent.ftps_session(v, server.addr, v, "alice", "alicepw");
        std::fs::write(&keep, b"original").unwrap();
        let r = agent.xfer(v, "STOR", "keep.bin", &payload, &["close=abrupt"]);
        assert_eq!(r.code(), 426, "TLS {v}: {}", r.raw);
        assert!(r.text().contains("close_notify"), "{}", r.raw);
        assert_eq!(std::fs::read(&keep).unwrap(), b"original", "TLS {v}");
        let fresh = format!("fresh{v}.bin");
        let r = agent.xfer(v, "STOR", &fresh, &payload, &["close=abrupt"]);
        assert_eq!(r.code(), 426, "TLS {v}: {}", r.raw);
        assert!(!server.root.join(&fresh).exists(), "TLS {v}: kept");
        let r = agent.xfer(v, "STOR", "keep.bin", &payload, &[]);
        assert_eq!(r.code(), 226, "TLS {v}: {}", r.raw);
        assert!(std::fs::read(&keep).unwrap() == payload, "TLS {v}");
    }
    assert_eq!(
        log_count(&server, "receiving the rest on its own thread"),
        6,
        "every upload of this test is big enough for the thread"
    );
    wait_for_count(&server, "truncated: no TLS close_notify", 4, 5);
}

/// APPE and REST+STOR write into the target itself. A refused upload (522: nothing received)
/// leaves it exactly as it was; a truncated one (426: no close_notify) is rolled back to the
/// old file when the new bytes only extended it (APPE, REST at the end), and when they
/// overwrote old bytes the reply says so and the file holds the prefix plus what arrived.
#[test]
fn a_refused_append_or_restart_leaves_the_file_alone() {
    let (server, _certs) = server(&[("explicit", "")], "", &[]);
    let target = server.root.join("log.bin");
    let mut agent = Agent::new();
    agent.ctx("c", &[]);
    agent.ftps_session("s", server.addr, "c", "alice", "alicepw");
    for (what, rest) in [("APPE", None), ("REST 8 + STOR", Some("REST 8"))] {
        std::fs::write(&target, b"original").unwrap();
        let verb = match rest {
            Some(line) => {
                agent.expect("s", line, 350);
                "STOR"
            }
            None => "APPE",
        };
        let r = agent.xfer("s", verb, "log.bin", b"TRUNCATED?", &["close=abrupt"]);
        assert_eq!(r.code(), 426, "{what}: {}", r.raw);
        assert!(r.raw.contains("unchanged"), "{what}: {}", r.raw);
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(&target).unwrap()),
            "original",
            "{what}"
        );
    }
    // Bytes that overwrote the old content cannot come back; the client is told. (The last
    // bytes of an upload wait in memory until it ends, and a truncated one drops them unwritten;
    // this upload is large enough, several write buffers, that some of it reaches the file.)
    std::fs::write(&target, b"original").unwrap();
    agent.expect("s", "REST 4", 350);
    let payload = pseudo_random(3 << 20, 9);
    let r = agent.xfer("s", "STOR", "log.bin", &payload, &["close=abrupt"]);
    assert_eq!(r.code(), 426, "{}", r.raw);
    assert!(r.raw.contains("could not be undone"), "{}", r.raw);
    let stored = std::fs::read(&target).unwrap();
    assert!(
        stored.len() > 8 && stored.len() <= 4 + payload.len(),
        "{} bytes",
        stored.len()
    );
    assert!(
        stored[..4] == *b"orig" && stored[4..] == payload[..stored.len() - 4],
        "the old head, then a prefix of the new data"
    );
    // Refused outright (522): nothing was received, so nothing may change; REST must not have
    // cut the file down to its offset.
    for (what, opts) in [
        ("REST 4 + STOR, full handshake", "session=fresh"),
        ("REST 4 + STOR, plaintext", "data=plain"),
    ] {
        std::fs::write(&target, b"original").unwrap();
        agent.expect("s", "REST 4", 350);
        let r = agent.xfer("s", "STOR", "log.bin", b"TRUNCATED?", &[opts]);
        assert_eq!(r.code(), 522, "{what}: {}", r.raw);
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(&target).unwrap()),
            "original",
            "{what}"
        );
    }
}

#[test]
fn without_require_close_notify_the_upload_is_kept_with_a_warning() {
    let (server, _certs) = server(&[("explicit", "")], "require_close_notify = false", &[]);
    let keep = server.root.join("keep.bin");
    let mut agent = Agent::new();
    for (i, v) in ["1.2", "1.3"].into_iter().enumerate() {
        let (min, max) = (format!("min={v}"), format!("max={v}"));
        agent.ctx(v, &[&min, &max]);
        agent.ftps_session(v, server.addr, v, "alice", "alicepw");
        std::fs::write(&keep, b"original").unwrap();
        let payload = pseudo_random(100_000, 4 + i as u64);
        let r = agent.xfer(v, "STOR", "keep.bin", &payload, &["close=abrupt"]);
        assert_eq!(r.code(), 226, "TLS {v}: {}", r.raw);
        assert!(std::fs::read(&keep).unwrap() == payload, "TLS {v}");
    }
    wait_for_count(
        &server,
        "TLS upload ended without close_notify; accepted",
        2,
        5,
    );
    assert!(
        log_lines(&server, "TLS upload ended without close_notify; accepted")
            .lines()
            .all(|l| l.contains("WARN")),
        "not logged as a warning"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Client certificates

/// A CA, and two client certificates it signed: (CA PEM, [(cert PEM, key PEM, fingerprint)]).
fn client_pki() -> (String, Vec<(String, String, String)>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "ferroftp test client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let clients = ["client one", "client two"]
        .iter()
        .map(|cn| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, *cn);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
            let fp = sha256_fingerprint(cert.der());
            (cert.pem(), key.serialize_pem(), fp)
        })
        .collect();
    (ca_cert.pem(), clients)
}

#[test]
fn a_listed_client_certificate_logs_in_without_a_password() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, clients) = client_pki();
    let put = |name: &str, text: &str| {
        let p = pki.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ca_path = put("ca.pem", &ca);
    let (c1, k1) = (put("c1.pem", &clients[0].0), put("k1.pem", &clients[0].1));
    let (c2, k2) = (put("c2.pem", &clients[1].0), put("k2.pem", &clients[1].1));
    // Written the way people paste it: lower case, no colons.
    let listed = clients[0].2.replace(':', "").to_lowercase();
    let (server, _certs) = server(
        &[("explicit", "")],
        &format!("client_ca = {ca_path:?}"),
        &[(
            "certy",
            "certypw",
            &format!("client_cert_sha256 = [\"{listed}\"]"),
        )],
    );
    let mut agent = Agent::new();
    agent.ctx("one", &[&format!("cert={c1}"), &format!("key={k1}")]);
    agent.ctx("two", &[&format!("cert={c2}"), &format!("key={k2}")]);
    agent.ctx("none", &[]);

    // The listed certificate: USER alone logs in (232), and the session works.
    agent.connect("s1", server.addr);
    agent.auth("s1", "one");
    let r = agent.expect("s1", "USER certy", 232);
    assert!(r.text().contains("certy"), "{}", r.raw);
    agent.expect("s1", "PWD", 257);
    agent.expect("s1", "PBSZ 0", 200);
    agent.expect("s1", "PROT P", 200);
    let r = agent.xfer("s1", "LIST", "", b"", &[]);
    assert_eq!(r.code(), 226, "{}", r.raw);
    server.wait_for_log("method=\"client certificate\"", 5);
    // It maps to certy only.
    agent.connect("s1b", server.addr);
    agent.auth("s1b", "one");
    agent.expect("s1b", "USER alice", 331);
    agent.expect("s1b", "PASS alicepw", 230);

    // Another certificate from the same CA, not listed: the password is needed.
    agent.connect("s2", server.addr);
    agent.auth("s2", "two");
    agent.expect("s2", "USER certy", 331);
    agent.expect("s2", "PWD", 530);
    agent.expect("s2", "USER certy", 331);
    agent.expect("s2", "PASS certypw", 230);

    // No certificate at all: the password, and a wrong one fails.
    agent.connect("s3", server.addr);
    agent.auth("s3", "none");
    agent.expect("s3", "USER certy", 331);
    agent.expect("s3", "PASS wrong", 530);
    // Over plain FTP there is no certificate either.
    let mut c = Ctrl::connect(server.addr);
    c.cmd_ok("USER certy", 331);
}
