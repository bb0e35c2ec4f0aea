//! The command line: help, check-config, passwd and serve's start-up behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ctrl, Options, TestServer, bin, run, run_with_input};

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

fn ferroftp(args: &[&str]) -> (bool, String, String) {
    run(Command::new(bin()).args(args))
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `cmd` expecting it to exit by itself within `within`; (success, stdout, stderr).
fn run_with_deadline(cmd: &mut Command, within: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), out, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ferroftp passwd --users FILE NAME` with `password` on stdin (cheap argon2 unless `real`).
fn passwd(users: &Path, name: &str, password: &str, cheap: bool) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["passwd", "--users"]).arg(users).arg(name);
    if cheap {
        cmd.args(["--argon2-memory", "1024", "--argon2-iterations", "1"]);
    }
    let out = run_with_input(&mut cmd, format!("{password}\n").as_bytes());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many (uncommented) argon2id hashes a users file holds.
fn hashes(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("\"$argon2id$"))
        .count()
}

fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    run(Command::new(bin()).arg("check-config").arg(&path))
}

/// Start `serve` with `args` in `cwd`; wait for the listening line. Returns the process, the
/// address and all stdout lines seen so far. `Err(stderr)` if it exits first.
fn start_serve(cwd: &Path, args: &[&str]) -> Result<(Running, SocketAddr, Vec<String>), String> {
    let mut child = Command::new(bin())
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(|a| a.parse::<SocketAddr>().unwrap());
                seen.push(line);
                if let Some(addr) = addr {
                    std::thread::spawn(move || for _ in lines {});
                    std::thread::spawn(move || {
                        let mut sink = Vec::new();
                        let _ = stderr.read_to_end(&mut sink);
                    });
                    return Ok((running, addr, seen));
                }
            }
            _ => {
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                return Err(err);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------------------------

#[test]
fn help_lists_the_commands_and_flags() {
    let (ok, out, err) = ferroftp(&["--help"]);
    assert!(ok, "{err}");
    for word in ["serve", "passwd", "check-config"] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
    let (ok, out, err) = ferroftp(&["serve", "--help"]);
    assert!(ok, "{err}");
    for flag in [
        "--config",
        "--root",
        "--listen",
        "--passive-ports",
        "--passive-address",
        "--users",
        "--anonymous",
    ] {
        assert!(out.contains(flag), "serve --help lacks {flag}:\n{out}");
    }
    let (ok, out, _) = ferroftp(&["passwd", "--help"]);
    assert!(ok);
    assert!(out.contains("--users"), "{out}");
    let (ok, out, _) = ferroftp(&["check-config", "--help"]);
    assert!(ok);
    assert!(out.to_lowercase().contains("config"), "{out}");
    let (ok, out, _) = ferroftp(&["--version"]);
    assert!(ok);
    assert!(out.starts_with("ferroftp "), "{out}");
    // No subcommand / unknown subcommand: usage error.
    let (ok, _, err) = ferroftp(&[]);
    assert!(!ok);
    assert!(err.contains("Usage"), "{err}");
    let (ok, _, err) = ferroftp(&["frobnicate"]);
    assert!(!ok);
    assert!(err.contains("frobnicate"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------------

#[test]
fn check_config_prints_the_effective_configuration() {
    // The root must exist, as for serve.
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let (ok, out, err) = check_config(&format!(
        "root = {root:?}\n[passive]\nports = \"50000-50010\"\n[limits]\nidle_timeout_secs = 60\n",
    ));
    assert!(ok, "{err}");
    assert!(err.contains("valid"), "{err}");
    let value: toml::Value =
        toml::from_str(&out).unwrap_or_else(|e| panic!("not TOML: {e}\n{out}"));
    assert_eq!(value["root"].as_str(), Some(root));
    assert_eq!(value["passive"]["ports"].as_str(), Some("50000-50010"));
    assert_eq!(value["limits"]["idle_timeout_secs"].as_integer(), Some(60));
    // Defaults are filled in.
    assert_eq!(value["limits"]["max_line_length"].as_integer(), Some(4096));
    assert_eq!(value["limits"]["max_login_failures"].as_integer(), Some(3));
    assert_eq!(value["active"]["allow_foreign_ip"].as_bool(), Some(false));
    assert_eq!(value["anonymous"]["enabled"].as_bool(), Some(false));
    assert_eq!(
        value["listener"][0]["bind"].as_str(),
        Some("127.0.0.1:2121")
    );
    // The output is itself a valid configuration that says the same.
    let (ok, again, err) = check_config(&out);
    assert!(ok, "{err}");
    assert_eq!(again, out);

    // An empty file is valid (every key is optional).
    let (ok, _, err) = check_config("");
    assert!(ok, "{err}");
    // The example file is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ferroftp.example.toml");
    if example.exists() {
        let (ok, _, err) = run(Command::new(bin()).arg("check-config").arg(&example));
        assert!(ok, "{err}");
    }
}

#[test]
fn check_config_rejects_bad_files_naming_the_key_and_the_reason() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown top-level key",
            "bogus = 1\n",
            &["bogus", "unknown"],
        ),
        (
            "unknown nested key",
            "[passive]\nport = \"1-2\"\n",
            &["port", "unknown"],
        ),
        (
            "unknown table",
            "[tsl]\ncert = \"x\"\n",
            &["tsl", "unknown"],
        ),
        (
            "backwards port range",
            "[passive]\nports = \"9-3\"\n",
            &["ports", "backwards"],
        ),
        (
            "not a port range",
            "[passive]\nports = \"abc\"\n",
            &["ports", "LOW-HIGH"],
        ),
        (
            "port zero",
            "[passive]\nports = \"0-5\"\n",
            &["ports", "port number"],
        ),
        (
            "port too big",
            "[passive]\nports = \"1-70000\"\n",
            &["ports", "port number"],
        ),
        (
            "zero idle timeout",
            "[limits]\nidle_timeout_secs = 0\n",
            &["limits.idle_timeout_secs", "greater than 0"],
        ),
        (
            "zero login timeout",
            "[limits]\nlogin_timeout_secs = 0\n",
            &["limits.login_timeout_secs", "greater than 0"],
        ),
        (
            "zero data timeout",
            "[limits]\ndata_timeout_secs = 0\n",
            &["limits.data_timeout_secs", "greater than 0"],
        ),
        (
            "zero sessions",
            "[limits]\nmax_sessions = 0\n",
            &["limits.max_sessions", "greater than 0"],
        ),
        (
            "tiny line limit",
            "[limits]\nmax_line_length = 10\n",
            &["limits.max_line_length", "512"],
        ),
        (
            "zero login failures",
            "[limits]\nmax_login_failures = 0\n",
            &["limits.max_login_failures", "at least 1"],
        ),
        (
            "negative timeout",
            "[limits]\nidle_timeout_secs = -1\n",
            &["idle_timeout_secs"],
        ),
        (
            "wrong type",
            "[limits]\nidle_timeout_secs = \"soon\"\n",
            &["idle_timeout_secs"],
        ),
        (
            "bad listener address",
            "[[listener]]\nbind = \"nonsense\"\n",
            &["bind", "address"],
        ),
        (
            "listener without port",
            "[[listener]]\nbind = \"127.0.0.1\"\n",
            &["bind"],
        ),
        (
            "unknown listener mode",
            "[[listener]]\nbind = \"127.0.0.1:21\"\nmode = \"quantum\"\n",
            &["mode", "quantum"],
        ),
        (
            "duplicate listener",
            "[[listener]]\nbind = \"127.0.0.1:21\"\n[[listener]]\nbind = \"127.0.0.1:21\"\n",
            &["listener.bind", "twice"],
        ),
        ("no listener", "listener = []\n", &["listener"]),
        (
            "unknown permission",
            "[anonymous]\npermissions = [\"list\", \"fly\"]\n",
            &["fly", "permission"],
        ),
        (
            "IPv6 passive address",
            "[passive]\naddress = \"::1\"\n",
            &["passive.address", "IPv4"],
        ),
        (
            "bad passive address",
            "[passive]\naddress = \"not a host\"\n",
            &["passive.address"],
        ),
        (
            "bad log format",
            "[log]\nformat = \"xml\"\n",
            &["format", "xml"],
        ),
        ("bad log level", "[log]\nlevel = \"[[[\"\n", &["log.level"]),
        ("not TOML", "root = \n", &["line 1"]),
    ];
    for (what, text, words) in cases {
        let (ok, out, err) = check_config(text);
        assert!(!ok, "{what}: accepted:\n{text}\n{out}");
        for word in *words {
            assert!(
                err.contains(word),
                "{what}: message should mention {word:?}:\n{err}"
            );
        }
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    // A missing file.
    let (ok, _, err) = ferroftp(&["check-config", "/nonexistent/ferroftp.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/ferroftp.toml"), "{err}");
    // A users file that does not exist.
    let (ok, _, err) = check_config("users_file = \"/nonexistent/users.toml\"\n");
    assert!(!ok);
    assert!(err.contains("/nonexistent/users.toml"), "{err}");
}

/// check-config with `-c FILE`, in `cwd`: (exit code, stdout, stderr).
fn check_config_c(cwd: &Path, text: &str) -> (i32, String, String) {
    let path = cwd.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin())
        .current_dir(cwd)
        .args(["check-config", "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_takes_the_file_with_c_or_config_as_serve_does_or_as_an_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "greeting = \"hi\"\n").unwrap();
    let p = path.to_str().unwrap();
    for args in [
        vec!["check-config", "-c", p],
        vec!["check-config", "--config", p],
        vec!["check-config", p],
    ] {
        let (ok, out, err) = ferroftp(&args);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("greeting = \"hi\""), "{args:?}: {out}");
    }
    // Neither, or both: a usage error (exit 2) that says what is missing.
    let out = Command::new(bin()).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = Command::new(bin())
        .args(["check-config", p, "-c", p])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// What check-config calls valid, serve starts with: both refuse a missing root, a users file
/// or certificate that does not load, and an admin token file that is missing; neither
/// creates anything.
#[test]
fn check_config_refuses_what_serve_refuses_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let root_line = format!("root = {:?}\n", root.to_str().unwrap());
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    let cases = [
        ("missing root", format!("root = {m:?}\n"), "root"),
        (
            "missing users file",
            format!("{root_line}users_file = {:?}\n", format!("{m}/users.toml")),
            "users.toml",
        ),
        (
            "missing certificate",
            format!(
                "{root_line}[tls]\ncert = {:?}\nkey = {:?}\n",
                format!("{m}/cert.pem"),
                format!("{m}/key.pem")
            ),
            "cert.pem",
        ),
        (
            "missing admin token",
            format!(
                "{root_line}[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
                format!("{m}/admin.token")
            ),
            "admin.token",
        ),
    ];
    // Homes the server refuses as it binds: a user's home outside the root, an anonymous home
    // holding a user's home, a missing anonymous home other than the default.
    let outside = dir.path().join("outside-users.toml");
    std::fs::write(
        &outside,
        format!("[[user]]\nname = \"joe\"\npassword = {CHEAP_HASH:?}\nhome = \"/etc\"\n"),
    )
    .unwrap();
    let in_pub = dir.path().join("pub-users.toml");
    std::fs::write(
        &in_pub,
        format!("[[user]]\nname = \"ann\"\npassword = {CHEAP_HASH:?}\nhome = \"pub/ann\"\n"),
    )
    .unwrap();
    let home_cases = [
        (
            "home outside the root",
            format!("{root_line}users_file = {:?}\n", outside.to_str().unwrap()),
            "auth.allow_homes_outside_root",
        ),
        (
            "anonymous home holding a user's home",
            format!(
                "{root_line}users_file = {:?}\n[anonymous]\nenabled = true\n",
                in_pub.to_str().unwrap()
            ),
            "anonymous.home",
        ),
        (
            "missing anonymous home",
            format!("{root_line}[anonymous]\nenabled = true\nhome = \"incoming\"\n"),
            "anonymous.home",
        ),
    ];
    for (what, text, needle) in cases.iter().chain(&home_cases) {
        let (code, _, err) = check_config_c(dir.path(), text);
        assert_eq!(code, 1, "{what}: check-config accepted it:\n{text}\n{err}");
        assert!(err.contains(needle), "{what}: {err}");
        // serve refuses the same file, before listening.
        let cfg = dir.path().join("c.toml");
        let (ok, _, serve_err) = run_with_deadline(
            Command::new(bin())
                .current_dir(dir.path())
                .args(["serve", "--listen", "127.0.0.1:0", "-c"])
                .arg(&cfg),
            Duration::from_secs(20),
        );
        assert!(!ok, "{what}: serve started");
        assert!(serve_err.contains(needle), "{what}: {serve_err}");
    }
    assert!(!missing.exists(), "check-config created something");
    // The default anonymous home, missing, is made by serve: check-config accepts it and
    // creates nothing.
    let (code, _, err) = check_config_c(
        dir.path(),
        &format!("{root_line}[anonymous]\nenabled = true\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!root.join("pub").exists(), "check-config created pub");
    // The default root may be missing: serve creates it; check-config only says so.
    let (code, _, err) = check_config_c(dir.path(), "");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("will be created"), "{err}");
    assert!(
        !dir.path().join("ftp-root").exists(),
        "check-config created ./ftp-root"
    );
}

/// Each error names the key (as a dotted path) and says what to write, in the words of the
/// config file rather than of the parser.
#[test]
fn config_errors_name_the_key_and_say_what_to_write_instead() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "log level typo",
            "[log]\nlevel = \"inf\"\n",
            &[
                "log.level",
                "`inf`",
                "trace, debug, info, warn, error, off",
                "did you mean `info`",
            ],
        ),
        (
            "log level typo in a directive",
            "[log]\nlevel = \"ferroftp=verbose\"\n",
            &["log.level", "`verbose`", "trace, debug"],
        ),
        (
            "number in quotes",
            "[limits]\nmax_sessions = \"1000\"\n",
            &[
                "limits.max_sessions",
                "expected a number",
                "\"1000\"",
                "write it without quotes",
            ],
        ),
        (
            "prefix too long",
            "[bans]\nallow = [\"10.0.0.0/33\"]\n",
            &["bans.allow", "prefix length 33 is more than 32"],
        ),
        (
            "host bits set",
            "[bans]\nallow = [\"10.0.0.1/8\"]\n",
            &["bans.allow", "host bits", "`10.0.0.0/8`"],
        ),
        (
            "host bits set in proxy.trusted",
            "[proxy]\ntrusted = [\"192.168.1.1/24\"]\n",
            &["proxy.trusted", "`192.168.1.0/24`"],
        ),
        (
            "bare word for a boolean",
            "[active]\nenabled = yes\n",
            &["active.enabled", "`yes`", "write true or false"],
        ),
        (
            "bare word for a string",
            "[log]\nformat = json\n",
            &["log.format", "in quotes"],
        ),
        (
            "port too big",
            "[[listener]]\nbind = \"0.0.0.0:99999\"\n",
            &["listener[0].bind", "port 99999 is more than 65535"],
        ),
        (
            "host name for an address",
            "[metrics]\nlisten = \"localhost:9021\"\n",
            &["metrics.listen", "not an IP address"],
        ),
        (
            "misspelled key",
            "[limits]\nmax_sesions = 5\n",
            &["limits.max_sesions", "did you mean `max_sessions`"],
        ),
        (
            "misspelled table",
            "[tsl]\ncert = \"x\"\n",
            &["tsl", "did you mean `tls`"],
        ),
        (
            "misspelled value",
            "[[listener]]\nbind = \"127.0.0.1:21\"\nmode = \"explict\"\n",
            &[
                "listener[0].mode",
                "plain, explicit, implicit",
                "did you mean `explicit`",
            ],
        ),
        (
            "negative number",
            "[limits]\nidle_timeout_secs = -1\n",
            &["limits.idle_timeout_secs", "0 or more"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, words) in cases {
        let (code, out, err) = check_config_c(dir.path(), text);
        assert_eq!(code, 1, "{what}: accepted:\n{text}\n{out}{err}");
        for word in *words {
            assert!(err.contains(word), "{what}: no {word:?} in:\n{err}");
        }
        // Not the parser's words.
        for jargon in [
            "expected usize",
            "invalid IP address syntax",
            "invalid socket address syntax",
            "expected `\"`",
        ] {
            assert!(!err.contains(jargon), "{what}: {jargon:?} in:\n{err}");
        }
    }
    // The flags that take the same values say the same (a usage error, before anything starts).
    for (flag, value, needle) in [
        ("--ban-allow", "10.0.0.1/8", "`10.0.0.0/8`"),
        (
            "--proxy-protocol-from",
            "10.0.0.0/33",
            "prefix length 33 is more than 32",
        ),
        ("--listen", "0.0.0.0:99999", "port 99999 is more than 65535"),
    ] {
        let out = Command::new(bin())
            .args(["serve", flag, value])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(needle) && err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn config_example_prints_the_annotated_example_and_check_config_accepts_it() {
    let (ok, out, err) = ferroftp(&["config", "--example"]);
    assert!(ok, "{err}");
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ferroftp.example.toml"),
    )
    .unwrap();
    assert_eq!(out, file);
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check_config_c(dir.path(), &out);
    assert_eq!(code, 0, "{err}");
    // Without --example there is nothing to print: a usage error.
    let out = Command::new(bin()).arg("config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// With --log-format json every start-up line on stdout is a JSON object (the generated
/// password and the listening address included, which the harness reads from it), and the
/// log's fields spell the listener mode and TLS policy as the config file does.
#[test]
fn a_misspelled_rust_log_is_ignored_with_a_warning_and_failed_logins_are_still_logged() {
    // `inf` is not a level: EnvFilter would take it as a target name and log nothing else.
    let server = TestServer::with(Options {
        env: vec![("RUST_LOG".into(), "inf".into())],
        ..Options::default()
    });
    server.wait_for_log("ignoring RUST_LOG", 10);
    let mut c = server.connect();
    c.cmd_ok("USER ferro", 331);
    assert_eq!(c.cmd("PASS wrong").0, 530);
    let log = server.wait_for_log("login failed", 10);
    assert!(log.contains("did you mean `info`"), "{log}");
}

#[test]
fn json_log_format_makes_the_start_up_lines_json_and_fields_use_the_config_spelling() {
    let server = TestServer::with(Options {
        args: vec!["--log-format".into(), "json".into()],
        ..Options::default()
    });
    let mut listening = 0;
    for line in server.banner.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line not JSON ({e}): {line}"));
        if v["event"] == "listening" {
            listening += 1;
            assert_eq!(v["address"], server.addr.to_string());
            assert_eq!(v["mode"], "explicit");
            assert_eq!(v["tls_policy"], "optional");
        }
    }
    assert_eq!(listening, 1, "{}", server.banner);
    assert!(
        server.banner.contains("\"generated_user\""),
        "{}",
        server.banner
    );
    // The harness found the password in the JSON: the generated user logs in.
    let mut c = server.connect();
    c.login(&server.user, &server.password);
    c.cmd_ok("QUIT", 221);
    let log = server.wait_for_log("\"listening\"", 10);
    let line = log
        .lines()
        .find(|l| l.contains("\"message\":\"listening\""))
        .unwrap_or_else(|| panic!("no listening event:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["mode"], "explicit", "{line}");
    assert_eq!(v["fields"]["tls_policy"], "optional", "{line}");
    let opened = log
        .lines()
        .find(|l| l.contains("session opened"))
        .unwrap_or_else(|| panic!("no session opened:\n{log}"));
    assert!(opened.contains("\"mode\":\"explicit\""), "{opened}");
}

// ---------------------------------------------------------------------------------------------
// passwd
// ---------------------------------------------------------------------------------------------

#[test]
fn passwd_creates_and_updates_the_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let password = "correct horse battery staple";
    let (ok, out, err) = passwd(&users, "alice", password, false);
    assert!(ok, "{err}");
    assert!(!out.contains(password) && !err.contains(password));
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("alice"), "{text}");
    assert_eq!(hashes(&text), 1, "{text}");
    assert!(
        !text.contains(password),
        "the password is in the users file"
    );
    assert_eq!(
        std::fs::metadata(&users).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Loading it works.
    let (ok, _, err) = check_config(&format!("users_file = {:?}\n", users.to_str().unwrap()));
    assert!(ok, "{err}");
    assert!(err.contains("1 user"), "{err}");

    // A second run updates the hash; the user is not duplicated.
    let (ok, _, err) = passwd(&users, "alice", "new password", false);
    assert!(ok, "{err}");
    assert!(err.contains("updated"), "{err}");
    let text2 = std::fs::read_to_string(&users).unwrap();
    assert_ne!(text, text2);
    assert_eq!(hashes(&text2), 1, "{text2}");
    assert_eq!(
        std::fs::metadata(&users).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Another user is added next to it.
    let (ok, _, err) = passwd(&users, "bob", "bobs password", true);
    assert!(ok, "{err}");
    assert!(err.contains("added"), "{err}");
    let text3 = std::fs::read_to_string(&users).unwrap();
    assert_eq!(hashes(&text3), 2, "{text3}");
    // No temporary files left next to it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // The server accepts the new password only.
    let server = TestServer::with(Options {
        config: format!("users_file = {:?}\n", users.to_str().unwrap()),
        ..Default::default()
    });
    let mut c = Ctrl::connect(server.addr);
    c.cmd_ok("USER alice", 331);
    c.cmd_ok(&format!("PASS {password}"), 530);
    c.cmd_ok("USER alice", 331);
    c.cmd_ok("PASS new password", 230);
    let mut c = Ctrl::connect(server.addr);
    c.login("bob", "bobs password");
    // The password never reached the server log.
    let log = server.log();
    assert!(
        !log.contains("new password") && !log.contains(password),
        "{log}"
    );
}

#[test]
fn passwd_never_takes_the_password_in_argv() {
    let (_, out, _) = ferroftp(&["passwd", "--help"]);
    assert!(!out.to_lowercase().contains("--password"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let users_s = users.to_str().unwrap();
    // Extra positional or a --password flag: usage error, nothing written.
    let (ok, _, _) = ferroftp(&["passwd", "--users", users_s, "alice", "hunter2"]);
    assert!(!ok);
    let (ok, _, _) = ferroftp(&[
        "passwd",
        "--users",
        users_s,
        "alice",
        "--password",
        "hunter2",
    ]);
    assert!(!ok);
    assert!(!users.exists());
    // An empty password on stdin is refused.
    let (ok, _, err) = passwd(&users, "alice", "", true);
    assert!(!ok, "an empty password was accepted");
    assert!(err.to_lowercase().contains("empty"), "{err}");
    assert!(!users.exists());
    // Stdin closed without a line at all.
    let (ok, _, _) = run(Command::new(bin()).args(["passwd", "--users", users_s, "alice"]));
    assert!(!ok);
    assert!(!users.exists());
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

#[test]
fn serve_refuses_a_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-root");
    let (ok, _, err) = run_with_deadline(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(&missing),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(!missing.exists(), "a configured root must not be created");
    // Same through the config file.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("root = {:?}\n", missing.to_str().unwrap())).unwrap();
    let (ok, _, err) = run_with_deadline(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn serve_refuses_bad_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("r")).unwrap();
    let root = dir.path().join("r");
    let root = root.to_str().unwrap();
    let deadline = Duration::from_secs(20);
    let (ok, _, err) = run_with_deadline(
        Command::new(bin()).args(["serve", "--root", root, "--passive-ports", "9-3"]),
        deadline,
    );
    assert!(!ok);
    assert!(
        err.contains("--passive-ports") && err.contains("backwards"),
        "{err}"
    );
    let (ok, _, err) = run_with_deadline(
        Command::new(bin()).args(["serve", "--root", root, "--listen", "nonsense"]),
        deadline,
    );
    assert!(!ok);
    assert!(err.contains("--listen"), "{err}");
    let (ok, _, err) = run_with_deadline(
        Command::new(bin()).args([
            "serve",
            "--root",
            root,
            "--listen",
            "127.0.0.1:0",
            "--passive-address",
            "::1",
        ]),
        deadline,
    );
    assert!(!ok);
    assert!(err.contains("passive.address"), "{err}");
    let (ok, _, err) = run_with_deadline(
        Command::new(bin()).args([
            "serve",
            "--root",
            root,
            "--listen",
            "127.0.0.1:0",
            "--users",
            "/nonexistent/users.toml",
        ]),
        deadline,
    );
    assert!(!ok);
    assert!(err.contains("/nonexistent/users.toml"), "{err}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[limits]\nidle_timeout = 5\n").unwrap();
    let (ok, _, err) = run_with_deadline(
        Command::new(bin())
            .args([
                "serve",
                "--root",
                root,
                "--listen",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&cfg),
        deadline,
    );
    assert!(!ok);
    assert!(err.contains("idle_timeout"), "{err}");
    // A listen address that is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = run_with_deadline(
        Command::new(bin()).args(["serve", "--root", root, "--listen", &addr]),
        deadline,
    );
    assert!(!ok);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn serve_without_config_creates_ftp_root_and_prints_the_password() {
    let cwd = tempfile::tempdir().unwrap();
    let (server, addr, lines) =
        start_serve(cwd.path(), &["--listen", "127.0.0.1:0"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cwd.path().join("ftp-root").is_dir(),
        "./ftp-root not created"
    );
    let all = lines.join("\n");
    assert!(all.contains("user: ferro"), "{all}");
    let password = all
        .split("password: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no password line: {all}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(password.len() >= 12, "weak generated password {password:?}");
    std::fs::write(cwd.path().join("ftp-root/hello.txt"), b"hi").unwrap();
    let mut c = Ctrl::connect(addr);
    c.login("ferro", &password);
    assert_eq!(c.retr("hello.txt"), b"hi");
    c.cmd_ok("QUIT", 221);
    drop(server);

    // A second run in the same directory reuses ./ftp-root and makes a new password.
    let (_server2, addr2, lines2) =
        start_serve(cwd.path(), &["--listen", "127.0.0.1:0"]).unwrap_or_else(|e| panic!("{e}"));
    let all2 = lines2.join("\n");
    assert!(!all2.contains(&password), "the same password twice");
    assert!(cwd.path().join("ftp-root/hello.txt").exists());
    let mut c = Ctrl::connect(addr2);
    c.cmd_ok("USER ferro", 331);
    c.cmd_ok(&format!("PASS {password}"), 530);
}

#[test]
fn serve_with_no_arguments_listens_on_2121() {
    if TcpListener::bind("127.0.0.1:2121").is_err() {
        eprintln!("SKIPPED serve_with_no_arguments_listens_on_2121: 127.0.0.1:2121 is busy");
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    match start_serve(cwd.path(), &[]) {
        Ok((_server, addr, lines)) => {
            assert_eq!(addr, "127.0.0.1:2121".parse::<SocketAddr>().unwrap());
            assert!(cwd.path().join("ftp-root").is_dir());
            assert!(lines.join("\n").contains("password: "), "{lines:?}");
        }
        Err(e) if e.contains("2121") && e.contains("cannot listen") => {
            eprintln!("SKIPPED serve_with_no_arguments_listens_on_2121: port taken meanwhile: {e}");
        }
        Err(e) => panic!("serve with no arguments failed: {e}"),
    }
}

#[test]
fn the_passive_address_comes_from_the_flag_then_the_environment_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferroftp.toml");
    std::fs::write(&config, "[passive]\naddress = \"192.0.2.1\"\n").unwrap();
    let announced = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(["doctor", "--config"]).arg(&config);
        if let Some(a) = flag {
            cmd.args(["--passive-address", a]);
        }
        match env {
            Some(a) => cmd.env("FERROFTP_PASSIVE_ADDRESS", a),
            None => cmd.env_remove("FERROFTP_PASSIVE_ADDRESS"),
        };
        let (_, out, err) = run(&mut cmd);
        let text = format!("{out}{err}");
        let line = text
            .lines()
            .find(|l| l.contains("passive.address 1") || l.contains("passive.address 2"))
            .unwrap_or_else(|| panic!("no passive.address check:\n{text}"))
            .to_owned();
        line.split_whitespace()
            .skip_while(|w| *w != "passive.address")
            .nth(1)
            .unwrap()
            .trim_end_matches(',')
            .to_owned()
    };
    assert_eq!(announced(None, None), "192.0.2.1");
    assert_eq!(announced(Some(""), None), "192.0.2.1", "empty means unset");
    assert_eq!(announced(Some("203.0.113.7"), None), "203.0.113.7");
    assert_eq!(
        announced(Some("203.0.113.7"), Some("198.51.100.9")),
        "198.51.100.9"
    );
    // `doctor --connect` takes no configuration: the variable must not clash with it.
    let out = run_with_input(
        Command::new(bin())
            .args([
                "doctor",
                "--connect",
                "127.0.0.1:1",
                "--user",
                "x",
                "--timeout",
                "1",
            ])
            .env("FERROFTP_PASSIVE_ADDRESS", "203.0.113.7"),
        b"pw\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("server unreachable"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn user_commands_list_show_change_disable_and_delete_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let f = users.to_str().unwrap();
    assert!(passwd(&users, "alice", "alice-pw", true).0);
    let (ok, _, err) = passwd(&users, "bob", "bob-pw", true);
    assert!(ok, "{err}");
    let (ok, out, err) = ferroftp(&["user", "list", "--users", f]);
    assert!(ok, "{err}");
    assert!(out.contains("alice") && out.contains("bob"), "{out}");
    assert!(!out.contains("$argon2"), "{out}");
    let (ok, _, err) = ferroftp(&[
        "user",
        "set",
        "--users",
        f,
        "bob",
        "--permissions",
        "list,read",
        "--tls-policy",
        "login",
        "--home",
        "bob",
    ]);
    assert!(ok, "{err}");
    // The home cannot be made here: the command says who makes it.
    assert!(err.contains("first login"), "{err}");
    let (ok, out, err) = ferroftp(&["user", "show", "--users", f, "bob"]);
    assert!(ok, "{err}");
    assert!(out.contains("list,read") && out.contains("login"), "{out}");
    // The file as the server loads it.
    let text = std::fs::read_to_string(&users).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let bob = table["user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"].as_str() == Some("bob"))
        .unwrap()
        .clone();
    assert_eq!(bob["permissions"].as_array().unwrap().len(), 2, "{text}");
    assert_eq!(bob["tls_policy"].as_str(), Some("login"), "{text}");
    assert_eq!(bob["home"].as_str(), Some("bob"), "{text}");

    assert!(ferroftp(&["user", "disable", "--users", f, "bob"]).0);
    assert!(
        std::fs::read_to_string(&users)
            .unwrap()
            .contains("disabled = true")
    );
    assert!(ferroftp(&["user", "enable", "--users", f, "bob"]).0);
    assert!(
        std::fs::read_to_string(&users)
            .unwrap()
            .contains("disabled = false")
    );
    // Unknown users and bad values change nothing.
    let before = std::fs::read_to_string(&users).unwrap();
    assert!(!ferroftp(&["user", "delete", "--users", f, "nobody"]).0);
    assert!(!ferroftp(&["user", "set", "--users", f, "bob", "--permissions", "fly"]).0);
    assert!(!ferroftp(&["user", "set", "--users", f, "bob"]).0);
    assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    let (ok, _, err) = ferroftp(&["user", "delete", "--users", f, "alice"]);
    assert!(ok, "{err}");
    let (_, out, _) = ferroftp(&["user", "list", "--users", f]);
    assert!(!out.contains("alice") && out.contains("bob"), "{out}");
}

/// A cheap argon2id hash (of "pw", made by `ferroftp passwd`) for users files written by hand.
const CHEAP_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$/Ussk2dHwx3c1MMKFuURxA$Ye5vD+Bkc6+5uy1q7wQmmlZZoq47YlQh26O6Gu/kyGc";

/// `passwd` and `user set` check a home as the server will when it loads the users file
/// (which it refuses whole, so a bad entry would stop the next reload or start): against the
/// configuration given with -c, or, without one, refusing an absolute home unless
/// --allow-home-outside-root. A refused home writes nothing; the file stays one the server
/// loads, and serves.
#[test]
fn user_commands_refuse_a_home_the_server_would_refuse_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let users = dir.path().join("users.toml");
    let u = users.to_str().unwrap();
    let config = dir.path().join("ferroftp.toml");
    let cfg = config.to_str().unwrap();
    let write_config = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "root = {:?}\nusers_file = {u:?}\n{extra}",
                root.to_str().unwrap()
            ),
        )
        .unwrap();
    };
    write_config("");
    let passwd_c = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args([
            "passwd",
            "--argon2-memory",
            "1024",
            "--argon2-iterations",
            "1",
        ])
        .args(["--users", u])
        .args(args);
        let out = run_with_input(&mut cmd, b"pw\n");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for home in ["/etc", "/home/joe"] {
        let (ok, err) = passwd_c(&["-c", cfg, "joe", "--home", home]);
        assert!(!ok, "{home}: {err}");
        for needle in ["\"joe\"", home, "auth.allow_homes_outside_root"] {
            assert!(err.contains(needle), "{home}: {needle}: {err}");
        }
        assert!(!users.exists(), "{home}: the users file was written");
        // Without a configuration an absolute home cannot be checked: refused too.
        let (ok, err) = passwd_c(&["joe", "--home", home]);
        assert!(
            !ok && err.contains(home) && err.contains("-c FILE"),
            "{err}"
        );
        assert!(!users.exists(), "{home}: the users file was written");
    }
    // Under the root, absolute or relative: written.
    let under = root.join("joe");
    let (ok, err) = passwd_c(&["-c", cfg, "joe", "--home", under.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, err) = passwd_c(&["ann", "--home", "ann"]);
    assert!(ok, "{err}");
    let before = std::fs::read_to_string(&users).unwrap();

    // user set: the same check, and the file is left as it was.
    let set = |args: &[&str]| {
        let (ok, _, err) = ferroftp(&[&["user", "set", "--users", u][..], args].concat());
        (ok, err)
    };
    let (ok, err) = set(&["-c", cfg, "ann", "--home", "/etc"]);
    assert!(
        !ok && err.contains("\"ann\"") && err.contains("auth.allow_homes_outside_root"),
        "{err}"
    );
    let (ok, err) = set(&["ann", "--home", "/etc"]);
    assert!(!ok && err.contains("-c FILE"), "{err}");
    // With anonymous logins, a home inside the anonymous home is refused.
    write_config("[anonymous]\nenabled = true\n");
    let (ok, err) = set(&["-c", cfg, "ann", "--home", "pub/x"]);
    assert!(
        !ok && err.contains("anonymous.home") && err.contains("\"ann\""),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    // The explicit loosening, in the configuration or (without one) on the command line.
    write_config("[auth]\nallow_homes_outside_root = true\n");
    let (ok, err) = set(&["-c", cfg, "ann", "--home", "/tmp"]);
    assert!(ok, "{err}");
    let (ok, err) = set(&["ann", "--home", "/var/tmp", "--allow-home-outside-root"]);
    assert!(ok, "{err}");
    let (ok, err) = set(&["-c", cfg, "ann", "--home", "ann"]);
    assert!(ok, "{err}");
    // Changes without a home are not checked.
    let (ok, err) = set(&["ann", "--permissions", "all"]);
    assert!(ok, "{err}");

    // The file is one the server (default settings) loads, and serves.
    write_config("");
    let (code, _, err) = check_config_c(dir.path(), &std::fs::read_to_string(&config).unwrap());
    assert_eq!(code, 0, "{err}");
    let (_server, addr, _) = start_serve(dir.path(), &["-c", cfg, "--listen", "127.0.0.1:0"])
        .unwrap_or_else(|e| panic!("{e}"));
    for name in ["joe", "ann"] {
        Ctrl::connect(addr).login(name, "pw");
    }
}
