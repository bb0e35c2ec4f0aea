//! Live reload on SIGHUP: users, permissions, listeners and bans change without dropping
//! sessions or transfers in flight; a bad new configuration is refused whole and the old one
//! stays.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::Duration;

use common::{Options, TestServer, add_user};

fn server(config: &str) -> TestServer {
    TestServer::with(Options {
        config: config.into(),
        users: vec![
            ("alice".into(), "alicepw".into(), String::new()),
            ("bob".into(), "bobpw".into(), String::new()),
        ],
        ..Options::default()
    })
}

fn config_path(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("ferroftp.toml")
}

fn users_path(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("users.toml")
}

#[test]
fn a_new_user_can_log_in_after_sighup_and_sessions_stay_up() {
    let mut server = server("");
    let mut alice = server.connect();
    alice.login("alice", "alicepw");
    let mut c = server.connect();
    c.cmd_ok("USER carol", 331);
    c.cmd_ok("PASS carolpw", 530);

    add_user(&users_path(&server), "carol", "carolpw", None);
    let line = server.reload(1);
    assert!(line.contains("3 users"), "{line}");

    let mut c = server.connect();
    c.login("carol", "carolpw");
    // The session opened before the reload goes on.
    alice.cmd_ok("PWD", 257);
    assert!(alice.list("LIST").is_empty());
    server.assert_still_serving();
}

#[test]
fn changed_permissions_apply_to_open_sessions_and_a_disabled_user_is_logged_out() {
    let mut server = server("");
    std::fs::write(server.root.join("f.txt"), b"data").unwrap();
    let mut alice = server.connect();
    alice.login("alice", "alicepw");
    let mut bob = server.connect();
    bob.login("bob", "bobpw");
    alice.cmd_ok("MKD before", 257);

    // alice becomes read-only, bob is disabled.
    let users = users_path(&server);
    let text = std::fs::read_to_string(&users).unwrap();
    // (Lines that start with the key: the file's header comment shows an example user.)
    let text = text.replacen(
        "\nname = \"alice\"",
        "\nname = \"alice\"\npermissions = [\"list\", \"read\"]",
        1,
    );
    let text = text.replacen("\nname = \"bob\"", "\nname = \"bob\"\ndisabled = true", 1);
    std::fs::write(&users, text).unwrap();
    server.reload(1);

    let (code, text) = alice.cmd("MKD after");
    assert_eq!(code, 550, "{text}");
    assert!(!server.root.join("after").exists());
    assert_eq!(alice.retr("f.txt"), b"data");
    let (code, text) = bob.cmd("PWD");
    assert_eq!(code, 421, "{text}");
    assert!(bob.is_closed());
    let mut again = server.connect();
    again.cmd_ok("USER bob", 331);
    again.cmd_ok("PASS bobpw", 530);
    server.assert_still_serving();
}

#[test]
fn a_bad_configuration_is_refused_whole_and_the_old_one_stays() {
    let mut server = server("[limits]\nidle_timeout_secs = 300\n");
    let config = config_path(&server);
    let good = std::fs::read_to_string(&config).unwrap();

    // A bad value: refused, with the key named.
    std::fs::write(
        &config,
        good.replace("idle_timeout_secs = 300", "idle_timeout_secs = 0"),
    )
    .unwrap();
    let line = server.reload(1);
    assert!(
        line.contains("reload refused") && line.contains("limits.idle_timeout_secs"),
        "{line}"
    );
    // A broken users file: refused too, nothing changes.
    std::fs::write(&config, &good).unwrap();
    let users = users_path(&server);
    let users_text = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, "[[user]]\nname = \n").unwrap();
    let line = server.reload(2);
    assert!(
        line.contains("reload refused") && line.contains("users"),
        "{line}"
    );
    let mut c = server.connect();
    c.login("alice", "alicepw");
    std::fs::write(&users, users_text).unwrap();
    let line = server.reload(3);
    assert!(line.contains("configuration reloaded"), "{line}");
    server.assert_still_serving();
}

#[test]
fn listeners_are_added_and_removed_without_dropping_sessions() {
    // The listener comes from the config file, so that a reload can change it.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let first = format!("[[listener]]\nbind = \"127.0.0.1:{port}\"\nmode = \"plain\"\n");
    let mut server = TestServer::with(Options {
        config: first.clone(),
        listen: Some(String::new()),
        users: vec![("alice".into(), "alicepw".into(), String::new())],
        ..Options::default()
    });
    let mut alice = server.connect();
    alice.login("alice", "alicepw");

    let second = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let config = config_path(&server);
    let text = std::fs::read_to_string(&config).unwrap();
    let both = format!("{text}[[listener]]\nbind = \"127.0.0.1:{second}\"\nmode = \"explicit\"\n");
    std::fs::write(&config, &both).unwrap();
    let line = server.reload(1);
    assert!(line.contains("1 started"), "{line}");
    let mut c = common::Ctrl::connect(([127, 0, 0, 1], second).into());
    c.login("alice", "alicepw");
    let feat = c.cmd_ok("FEAT", 211);
    assert!(
        feat.contains("AUTH TLS"),
        "the new listener is explicit FTPS: {feat}"
    );

    // Drop the first listener: new connections to it are refused, the session on it lives.
    let only_second = both.replace(&first, "");
    std::fs::write(&config, only_second).unwrap();
    let line = server.reload(2);
    assert!(line.contains("1 stopped"), "{line}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    alice.cmd_ok("NOOP", 200);
    server.addr = ([127, 0, 0, 1], second).into();
    server.assert_still_serving();
}

/// `n` consecutive ports free on loopback now, not overlapping `avoid`'s `n`.
fn free_range(n: u16, avoid: Option<u16>) -> u16 {
    loop {
        let base = common::free_port_range(n);
        if !avoid.is_some_and(|a| base < a + n && a < base + n) {
            return base;
        }
    }
}

fn pasv_port(c: &mut common::Ctrl) -> (u16, std::net::TcpStream) {
    let text = c.cmd_ok("PASV", 227);
    let addr = ferroftp_proto::addr::parse_pasv_reply(&text).expect("227 address");
    (addr.port(), std::net::TcpStream::connect(addr).unwrap())
}

#[test]
fn transfers_running_across_a_reload_finish_intact_and_the_next_pasv_uses_the_new_range() {
    use std::io::{Read, Write};
    const N: u16 = 4;
    let old = free_range(N, None);
    let new = free_range(N, Some(old));
    let mut server = server(&format!("[passive]\nports = \"{old}-{}\"\n", old + N - 1));
    // Large enough that the download cannot sit whole in the socket buffers.
    let big = common::pseudo_random(32 << 20, 11);
    std::fs::write(server.root.join("big.bin"), &big).unwrap();
    let upload = common::pseudo_random(16 << 20, 12);

    // A download, started and read only in part: the server is blocked sending.
    let mut down = server.connect();
    down.login("alice", "alicepw");
    down.cmd_ok("TYPE I", 200);
    let (port, mut data) = pasv_port(&mut down);
    assert!((old..old + N).contains(&port), "{port}");
    let (code, text) = down.cmd("RETR big.bin");
    assert_eq!(code, 150, "{text}");
    data.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = vec![0u8; 1 << 20];
    data.read_exact(&mut got).unwrap();

    // An upload, half sent.
    let mut up = server.connect();
    up.login("bob", "bobpw");
    up.cmd_ok("TYPE I", 200);
    let (_, mut up_data) = pasv_port(&mut up);
    let (code, text) = up.cmd("STOR up.bin");
    assert_eq!(code, 150, "{text}");
    let half = upload.len() / 2;
    up_data.write_all(&upload[..half]).unwrap();

    // New passive range and a new user, in force mid-transfer.
    let config = config_path(&server);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("ports = \"{old}-{}\"", old + N - 1),
            &format!("ports = \"{new}-{}\"", new + N - 1),
        ),
    )
    .unwrap();
    add_user(&users_path(&server), "carol", "carolpw", None);
    let line = server.reload(1);
    assert!(
        line.contains("configuration reloaded") && line.contains("3 users"),
        "{line}"
    );

    // Both transfers finish, byte for byte.
    data.read_to_end(&mut got).unwrap();
    drop(data);
    down.cmd_ok_reply(226);
    assert!(got.len() == big.len() && got == big, "download corrupted");
    up_data.write_all(&upload[half..]).unwrap();
    drop(up_data);
    up.cmd_ok_reply(226);
    let stored = std::fs::read(server.root.join("up.bin")).unwrap();
    assert!(
        stored == upload,
        "upload corrupted ({} bytes)",
        stored.len()
    );

    // The reload really happened mid-transfer: both transfers ended after it.
    let log = server.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
    };
    let reloaded = at("configuration reloaded");
    assert!(reloaded < at("transfer verb=\"RETR\""), "{log}");
    assert!(reloaded < at("transfer verb=\"STOR\""), "{log}");

    // The same sessions go on, and their next PASV comes from the new range.
    for c in [&mut down, &mut up] {
        let (port, data) = pasv_port(c);
        assert!(
            (new..new + N).contains(&port),
            "PASV port {port} after reload"
        );
        let (code, text) = c.cmd("NLST");
        assert_eq!(code, 150, "{text}");
        let names = String::from_utf8(common::read_all(data)).unwrap();
        c.cmd_ok_reply(226);
        assert!(
            names.contains("big.bin") && names.contains("up.bin"),
            "{names}"
        );
    }
    let mut carol = server.connect();
    carol.login("carol", "carolpw");
    carol.cmd_ok("TYPE I", 200);
    assert!(carol.retr("up.bin") == upload);
    server.assert_still_serving();
}

/// A typo in `[log] level` (`inf`) would have EnvFilter take it as a module name and silence
/// every line, failed logins included; a reload with one is refused whole, naming the key,
/// the bad value and the allowed levels, and the server goes on logging.
#[test]
fn a_misspelled_log_level_is_refused_at_reload_and_logging_goes_on() {
    let mut server = server("[log]\nlevel = \"info\"\n");
    let config = config_path(&server);
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("level = \"info\"", "level = \"inf\"")).unwrap();
    let line = server.reload(1);
    assert!(
        line.contains("reload refused")
            && line.contains("log.level")
            && line.contains("`inf`")
            && line.contains("trace, debug, info, warn, error, off"),
        "{line}"
    );
    let mut c = server.connect();
    c.cmd_ok("USER alice", 331);
    c.cmd_ok("PASS wrong", 530);
    server.wait_for_log("login failed", 10);
    server.assert_still_serving();
}
