//! Findings of the outside audit on logins, homes and the admin listener, each checked against
//! the real binary over loopback: anonymous users kept out of users' homes, homes kept under
//! the root, the admin API's connection cap and header timeout, bans that hold for sessions
//! opened before them, parallel logins from one address, a user name sprayed from many
//! addresses, a disabled user's right password answered like a wrong one, and control
//! characters from clients escaped in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ctrl, Options, TestServer, bin, run_with_input};

/// Start `serve` with `config` (a root is made for it in `dir`) and expect it to refuse:
/// its stderr.
fn refused_start(dir: &Path, config: &str) -> String {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let path = dir.join("refused.toml");
    std::fs::write(
        &path,
        format!("root = {:?}\n{config}", root.to_str().unwrap()),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(!status.success(), "exited 0: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A users file in `dir` (made if missing) with one user per (name, extra TOML lines).
fn users_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("users.toml");
    for (name, extra) in users {
        common::add_user_with(&path, name, "pw", extra);
    }
    path
}

/// A control connection from `source` (an address of 127.0.0.0/8), greeted.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> Ctrl {
    let mut c = dial_from(source, server);
    assert_eq!(c.reply().0, 220);
    c
}

/// A control connection from `source` (an address of 127.0.0.0/8), its greeting unread.
fn dial_from(source: Ipv4Addr, server: SocketAddr) -> Ctrl {
    Ctrl::over(common::connect_from(source, server).unwrap())
}

#[test]
fn anonymous_users_get_a_home_of_their_own_and_never_a_users_home() {
    let server = TestServer::with(Options {
        users: vec![("alice".into(), "alice-pw".into(), "home = \"alice\"".into())],
        args: vec!["--anonymous".into()],
        ..Options::default()
    });
    std::fs::create_dir(server.root.join("alice")).unwrap();
    std::fs::write(server.root.join("alice/private.txt"), b"alice's").unwrap();
    assert!(
        server.root.join("pub").is_dir(),
        "ROOT/pub is made at start"
    );
    std::fs::write(server.root.join("pub/readme.txt"), b"public").unwrap();
    let mut anon = server.connect();
    anon.login("anonymous", "guest@example.org");
    anon.cmd_ok("TYPE I", 200);
    assert_eq!(anon.retr("readme.txt"), b"public");
    for path in [
        "alice/private.txt",
        "/alice/private.txt",
        "../alice/private.txt",
    ] {
        anon.cmd("PASV");
        let (code, text) = anon.cmd(&format!("RETR {path}"));
        assert_eq!(code, 550, "RETR {path}: {code} {text}");
    }
    let mut alice = server.connect();
    alice.login("alice", "alice-pw");
    alice.cmd_ok("TYPE I", 200);
    assert_eq!(alice.retr("private.txt"), b"alice's");

    // An anonymous home that holds a user's home (or is the root) is refused at start...
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("bob", "home = \"pub/bob\"")]);
    let users_line = format!("users_file = {:?}\n", users.to_str().unwrap());
    let err = refused_start(
        dir.path(),
        &format!("{users_line}[anonymous]\nenabled = true\n"),
    );
    assert!(
        err.contains("anonymous.home") && err.contains("\"bob\""),
        "{err}"
    );
    let carol_dir = tempfile::tempdir().unwrap();
    let users = users_file(carol_dir.path(), &[("carol", "")]);
    let err = refused_start(
        dir.path(),
        &format!(
            "users_file = {:?}\n[anonymous]\nenabled = true\nhome = \".\"\n",
            users.to_str().unwrap()
        ),
    );
    assert!(
        err.contains("anonymous.home") && err.contains("\"carol\""),
        "{err}"
    );
    // ...and at a reload, which leaves the previous users in force.
    let users_path = server.dir.path().join("users.toml");
    let text = std::fs::read_to_string(&users_path).unwrap();
    std::fs::write(
        &users_path,
        text.replace("home = \"alice\"", "home = \"pub/alice\""),
    )
    .unwrap();
    server.signal("HUP");
    let log = server.wait_for_log("reload refused", 20);
    assert!(log.contains("anonymous.home"), "{log}");
    let mut alice = server.connect();
    alice.login("alice", "alice-pw");
    alice.cmd_ok("TYPE I", 200);
    assert_eq!(alice.retr("private.txt"), b"alice's");
}

#[test]
fn homes_outside_the_root_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // Relative homes that climb out of the root: refused whatever the opt-in says, naming
    // the user and the key.
    for (home, allow) in [("../..", false), ("a/../../etc", true)] {
        let users = users_file(
            &dir.path().join(format!("rel-{allow}")),
            &[("mallory", &format!("home = {home:?}"))],
        );
        let err = refused_start(
            dir.path(),
            &format!(
                "users_file = {:?}\n[auth]\nallow_homes_outside_root = {allow}\n",
                users.to_str().unwrap()
            ),
        );
        assert!(
            err.contains("user \"mallory\": home:") && err.contains("server root"),
            "{home}: {err}"
        );
    }
    // An absolute home outside the root: refused, unless allowed.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("elsewhere.txt"), b"outside").unwrap();
    let abs = users_file(
        &dir.path().join("abs"),
        &[(
            "olga",
            &format!("home = {:?}", outside.path().to_str().unwrap()),
        )],
    );
    let err = refused_start(
        dir.path(),
        &format!("users_file = {:?}\n", abs.to_str().unwrap()),
    );
    assert!(
        err.contains("user \"olga\": home:") && err.contains("allow_homes_outside_root"),
        "{err}"
    );
    // doctor says so too.
    let config = dir.path().join("doctor.toml");
    std::fs::write(
        &config,
        format!(
            "root = {:?}\nusers_file = {:?}\n",
            dir.path().join("root").to_str().unwrap(),
            abs.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run_with_input(
        Command::new(bin())
            .args(["doctor", "--config"])
            .arg(&config),
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        common::lines_with(&text, "FAIL", "user \"olga\": home:")
            .iter()
            .any(|l| l.contains("refuses to start")),
        "{text}"
    );
    let text = std::fs::read_to_string(&abs).unwrap();
    let server = TestServer::with(Options {
        config: format!(
            "users_file = {:?}\n[auth]\nallow_homes_outside_root = true\n",
            abs.to_str().unwrap()
        ),
        ..Options::default()
    });
    assert_eq!(std::fs::read_to_string(&abs).unwrap(), text);
    let mut c = server.connect();
    c.login("olga", "pw");
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.retr("elsewhere.txt"), b"outside");

    // `ferroftp passwd` refuses a relative home that leaves the root, writing nothing.
    let file = dir.path().join("passwd-users.toml");
    let mut cmd = Command::new(bin());
    cmd.args(["passwd", "--users"]).arg(&file).arg("eve");
    cmd.args(["--argon2-memory", "1024", "--argon2-iterations", "1"]);
    cmd.args(["--home", "../../../etc"]);
    let out = run_with_input(&mut cmd, b"pw\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!file.exists());
}

/// The admin API on a free port, with a users file: (server, admin address, token dir).
fn admin_server(extra: &str) -> (TestServer, SocketAddr, tempfile::TempDir) {
    let tokens = tempfile::tempdir().unwrap();
    let token = tokens.path().join("admin.token");
    std::fs::write(&token, "audit-admin-token-0123456789abcdef\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = TestServer::with(Options {
        config: format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{extra}",
            token.to_str().unwrap()
        ),
        users: vec![("alice".into(), "alice-pw".into(), String::new())],
        ..Options::default()
    });
    let addr = server
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("ferroftp: admin API on http://"))
        .and_then(|rest| rest.strip_suffix("/api/v1/"))
        .unwrap()
        .parse()
        .unwrap();
    (server, addr, tokens)
}

/// One request over a fresh connection: the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} /api/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer audit-admin-token-0123456789abcdef\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {out:?}"));
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

#[test]
fn the_admin_api_refuses_homes_outside_the_root() {
    let (server, addr, _tokens) = admin_server("");
    let users = server.dir.path().join("users.toml");
    let before = std::fs::read_to_string(&users).unwrap();
    for home in ["../../../etc", "/etc"] {
        let (code, body) = http(
            addr,
            "POST",
            "/users",
            &format!(r#"{{"name":"mallory","password":"pw","home":"{home}"}}"#),
        );
        assert_eq!(code, 400, "{home}: {body}");
        assert_eq!(std::fs::read_to_string(&users).unwrap(), before, "{home}");
    }
    let (code, body) = http(
        addr,
        "POST",
        "/users",
        r#"{"name":"carol","password":"pw","home":"carol"}"#,
    );
    assert_eq!(code, 201, "{body}");
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn the_admin_api_caps_connections_and_closes_half_sent_requests() {
    let (server, addr, _tokens) = admin_server("");
    let before = open_fds(server.pid());
    // Many requests whose head never ends (no more than fit in the accept queue: past it the
    // kernel drops the SYNs and the client retries for a long time).
    let mut held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = open_fds(server.pid());
    assert!(
        during <= before + 16 + 4,
        "{before} descriptors before, {during} with 100 half-sent requests"
    );
    // The server closes those it accepted, once their header time is up.
    let first = held.first_mut().unwrap();
    let mut buf = [0u8; 512];
    let closed = first.read(&mut buf).is_ok();
    assert!(closed, "the first half-sent request was never closed");
    drop(held);
    // Then the API answers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _) = http(addr, "GET", "/status", "");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "status: {code}");
    }
}

#[test]
fn a_ban_holds_for_sessions_opened_before_it() {
    const MAX: usize = 5;
    let server = TestServer::with(Options {
        users: vec![("alice".into(), "alice-pw".into(), String::new())],
        config: format!(
            "[bans]\nmax_failures = {MAX}\ndelay_ms = 0\n[limits]\nmax_login_failures = 100\n"
        ),
        ..Options::default()
    });
    let mut sessions: Vec<Ctrl> = (0..24)
        .map(|_| {
            let mut c = server.connect();
            c.cmd_ok("USER alice", 331);
            c
        })
        .collect();
    // All at once, then one by one on whatever is still open (a 421 closes).
    for c in &mut sessions {
        c.send_raw(b"PASS wrong\r\n");
    }
    let mut answers = Vec::new();
    let mut open = Vec::new();
    for c in &mut sessions {
        let code = c.reply().0;
        answers.push(code);
        open.push(code == 530);
    }
    for _ in 0..3 {
        for (c, open) in sessions.iter_mut().zip(&mut open) {
            if *open {
                c.cmd_ok("USER alice", 331);
                let code = c.cmd("PASS wrong").0;
                answers.push(code);
                *open = code == 530;
            }
        }
    }
    let checked = answers.iter().filter(|c| **c == 530).count();
    assert!(
        checked < MAX,
        "{checked} wrong passwords answered 530: {answers:?}"
    );
    let log = server.log();
    let verified = log.lines().filter(|l| l.contains("login failed")).count();
    assert!(
        verified <= MAX,
        "{verified} password checks failed against max_failures = {MAX}"
    );
    assert!(
        answers.iter().all(|c| *c == 530 || *c == 421),
        "{answers:?}"
    );
}

#[test]
fn parallel_logins_from_one_address_with_the_right_password_all_get_in() {
    // Default bans: more sessions than bans.max_failures (10), all logging in at once from
    // one address, as rclone, lftp's mirror -P or an office's NAT do. Checks waiting for the
    // hash pool are no failures: none is refused.
    const SESSIONS: usize = 24;
    let server = TestServer::with(Options {
        users: vec![("alice".into(), "alice-pw".into(), String::new())],
        ..Options::default()
    });
    let mut sessions: Vec<Ctrl> = (0..SESSIONS)
        .map(|_| {
            let mut c = server.connect();
            c.cmd_ok("USER alice", 331);
            c
        })
        .collect();
    for c in &mut sessions {
        c.send_raw(b"PASS alice-pw\r\n");
    }
    let answers: Vec<(u16, String)> = sessions.iter_mut().map(|c| c.reply()).collect();
    assert!(answers.iter().all(|(code, _)| *code == 230), "{answers:?}");
    for c in &mut sessions {
        c.cmd_ok("PWD", 257);
    }
    let log = server.log();
    assert!(!log.contains("login refused"), "{log}");
}

#[test]
fn a_user_name_sprayed_from_many_addresses_is_throttled_but_its_owner_gets_in() {
    let server = TestServer::with(Options {
        users: vec![("alice".into(), "alice-pw".into(), String::new())],
        config: "[bans]\nmax_failures = 3\ndelay_ms = 0\nuser_interval_ms = 600000\nmax_delay_ms = 1000\n"
            .into(),
        ..Options::default()
    });
    // alice logs in from 127.0.0.1 before the attack.
    let mut own = server.connect();
    own.login("alice", "alice-pw");
    own.cmd_ok("QUIT", 221);
    // One wrong password from each of 8 addresses: none reaches the address limit.
    let mut answers = Vec::new();
    for last in 2..10u8 {
        let mut c = connect_from(Ipv4Addr::new(127, 0, 0, last), server.addr);
        c.cmd_ok("USER alice", 331);
        answers.push(c.cmd("PASS wrong").0);
    }
    let checked = answers.iter().filter(|c| **c == 530).count();
    assert!(
        checked <= 4,
        "{checked} of 8 wrong passwords checked: {answers:?}"
    );
    assert!(answers.contains(&421), "{answers:?}");
    // alice, from where she logged in before, is not locked out.
    let mut own = server.connect();
    own.login("alice", "alice-pw");
}

#[test]
fn a_disabled_users_right_password_is_answered_and_counted_like_a_wrong_one() {
    const MAX: usize = 3;
    let server = TestServer::with(Options {
        users: vec![
            ("alice".into(), "alice-pw".into(), String::new()),
            ("bob".into(), "bob-pw".into(), "disabled = true".into()),
        ],
        config: format!(
            "[bans]\nmax_failures = {MAX}\ndelay_ms = 0\n[limits]\nmax_login_failures = 100\n"
        ),
        ..Options::default()
    });
    // bob's right password from one address, a wrong one from another: the same answers,
    // and both addresses banned after the same number of tries.
    let mut seen = Vec::new();
    for (last, password) in [(2, "bob-pw"), (3, "wrong")] {
        let source = Ipv4Addr::new(127, 0, 0, last);
        let mut c = connect_from(source, server.addr);
        let mut answers = Vec::new();
        for _ in 0..MAX {
            c.cmd_ok("USER bob", 331);
            answers.push(c.cmd(&format!("PASS {password}")));
        }
        // A new connection: refused at connect (its text counts the seconds left).
        let (code, _) = dial_from(source, server.addr).reply();
        answers.push((code, String::new()));
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1], "bob's right password vs a wrong one");
    assert_eq!(
        seen[0].iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        [530, 530, 421, 421],
        "{seen:?}"
    );
    // The administrator sees which was which; fail2ban counts both alike.
    let log = server.log();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        lines("login refused: user disabled ip=127.0.0.2 user=bob"),
        MAX,
        "{log}"
    );
    assert_eq!(
        lines("login refused: user disabled ip=127.0.0.3"),
        0,
        "{log}"
    );
    assert_eq!(lines("login failed ip=127.0.0.2 user=bob"), MAX, "{log}");
    assert_eq!(lines("login failed ip=127.0.0.3 user=bob"), MAX, "{log}");
    // Others are not affected.
    let mut c = server.connect();
    c.login("alice", "alice-pw");
}

#[test]
fn control_characters_from_clients_never_reach_the_log_raw() {
    for format in ["text", "json"] {
        let server = TestServer::with(Options {
            config: format!("[log]\nformat = \"{format}\"\n"),
            ..Options::default()
        });
        let mut c = server.connect();
        c.send_raw(b"USER ev\x1b[31mil\rfake ip=6.6.6.6\r\n");
        assert_eq!(c.reply().0, 331);
        c.send_raw(b"PASS x\r\n");
        assert_eq!(c.reply().0, 530);
        c.login(&server.user, &server.password);
        c.send_raw(b"CWD /no\x1b]0;title\x07where\r\n");
        assert_eq!(c.reply().0, 550);
        c.send_raw(b"SITE \x1b[2J\x08\x7f\r\n");
        c.reply();
        c.cmd_ok("QUIT", 221);
        server.wait_for_log("login failed", 10);
        let log = std::fs::read(&server.log_path).unwrap();
        for byte in [0x1b, b'\r', 0x07, 0x08, 0x7f] {
            assert!(
                !log.contains(&byte),
                "{format}: raw byte {byte:#x} in the log:\n{}",
                String::from_utf8_lossy(&log)
            );
        }
        let text = String::from_utf8_lossy(&log);
        assert!(
            !text.lines().any(|l| l.starts_with("fake ip=")),
            "{format}: a forged line:\n{text}"
        );
    }
}
