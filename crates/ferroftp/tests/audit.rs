//! Regression tests for the findings of the outside audit of the control and data sessions
//! (issue 10): each drives the real binary over loopback and would fail on the code the audit
//! looked at. Memory is read from /proc/<server pid>/status (VmHWM, the peak), never timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::{Ctrl, Options, TestServer, bin, free_port_range, port_arg};

/// A server whose only user, `u`, has exactly `perms`, logging at info (a flood of bad lines
/// would fill the debug log).
fn server_for(perms: &[&str], config: &str) -> TestServer {
    let list = perms
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    TestServer::with_wrapper(
        Options {
            users: vec![("u".into(), "pw".into(), format!("permissions = [{list}]"))],
            config: config.into(),
            ..Default::default()
        },
        &["env".into(), "RUST_LOG=info".into(), bin().into()],
        |_, _| {},
    )
}

/// A number in KiB from /proc/PID/status ("VmHWM", "VmRSS").
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The final reply of a transfer command that may have started (150) first.
fn transfer_result(c: &mut Ctrl, line: &str) -> (u16, String) {
    let (code, text) = c.cmd(line);
    if code == 150 || code == 125 {
        c.reply()
    } else {
        (code, text)
    }
}

/// Audit item 1: after a transfer's network error the server looked for a queued ABOR by
/// reading the control connection until it would block, queueing every line: megabytes of
/// empty lines became hundreds of megabytes of queue. Every read of the control connection now
/// stops at the queue's limit, so the flood is read no faster than it is answered.
#[test]
fn a_control_flood_after_a_failed_transfer_keeps_the_servers_memory_bounded() {
    const FLOOD: usize = 2 << 20;
    let server = server_for(&["list", "read"], "");
    std::fs::File::create(server.root.join("big"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut c = server.connect();
    c.login("u", "pw");
    c.cmd_ok("TYPE I", 200);
    // A download the client never reads: it stalls once the socket buffers are full.
    let data = c.pasv_connect();
    c.cmd_ok("RETR big", 150);
    let before = status_kib(server.pid(), "VmHWM");

    let mut writer = c.stream.try_clone().unwrap();
    let (full_tx, full_rx) = mpsc::channel();
    let flooder = std::thread::spawn(move || {
        let flood = vec![b'\n'; FLOOD];
        // Fill the connection until the server stops reading (its queue is full)...
        writer.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < FLOOD {
            match writer.write(&flood[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("flood: {e}"),
            }
        }
        // (The flag is shared with the reader's descriptor: blocking again before the
        // reader starts.)
        writer.set_nonblocking(false).unwrap();
        full_tx.send(()).unwrap();
        // ...then keep pushing the rest while the server handles the transfer's failure.
        writer.write_all(&flood[sent..]).unwrap();
        writer.write_all(b"NOOP\r\n").unwrap();
    });
    full_rx.recv().unwrap();
    // Reset the data connection: the transfer fails with a network error.
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);

    // Every line is answered, in order, and nothing is lost: the 426 of the transfer, a 500
    // per empty line, then the NOOP's 200.
    let (mut failed, mut empty) = (0usize, 0usize);
    loop {
        let Some((code, text)) = c.next_reply().unwrap() else {
            panic!("connection closed after {empty} empty-line replies");
        };
        match code {
            426 => failed += 1,
            500 => empty += 1,
            200 => break,
            other => panic!("unexpected reply {other} {text}"),
        }
    }
    flooder.join().unwrap();
    assert_eq!(failed, 1);
    assert_eq!(empty, FLOOD);
    let after = status_kib(server.pid(), "VmHWM");
    eprintln!("peak memory: {before} KiB before the flood, {after} KiB after");
    // 2 MiB of empty lines queued at once cost about 50 MiB; bounded, they cost nothing.
    let grew = after.saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "the server's peak memory grew by {grew} KiB during a {FLOOD}-byte control flood"
    );
}

/// Found with the flaky `protocol::transfers_need_a_data_connection`: an active connection
/// from the very port it targets reaches its own socket (a TCP simultaneous open), and the
/// transfer "succeeded" into the void. `source_port_below_listener` binds the port below the
/// listener's, so PORT to that port makes it happen every time.
#[test]
fn an_active_data_connection_that_reaches_itself_fails_with_425() {
    // A listener port whose port below is free, for the server to listen on. Both below the
    // ephemeral range: probed free and released inside it, either could be given to another
    // test's outgoing connection before the server binds it.
    let port = free_port_range(2) + 1;
    let server = TestServer::with(Options {
        listen: Some(format!("127.0.0.1:{port}")),
        config: "[active]\nsource_port_below_listener = true\n".into(),
        ..Default::default()
    });
    let mut c = server.login();
    let target = SocketAddr::from(([127, 0, 0, 1], port - 1));
    c.cmd_ok(&format!("PORT {}", port_arg(target)), 200);
    let (code, text) = transfer_result(&mut c, "LIST");
    assert_eq!(
        code, 425,
        "LIST over a self-connected data connection: {code} {text}"
    );
    c.cmd_ok("NOOP", 200);
    server.wait_for_log("reached itself", 10);
}

/// Mode bits of a file, without the type.
fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A whole upload: PASV, the command (which must start), the bytes, and its final reply.
fn upload(c: &mut Ctrl, line: &str, bytes: &[u8]) -> (u16, String) {
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd(line);
    if code != 150 && code != 125 {
        return (code, text);
    }
    data.write_all(bytes).unwrap();
    drop(data);
    c.reply()
}

/// Audit item 3: `SITE CHMOD 6777 prog` made a setuid and setgid program of the service
/// account. The special bits are refused, and the file stays as it was.
#[test]
fn site_chmod_refuses_setuid_setgid_and_sticky() {
    let server = server_for(&["list", "read", "write"], "");
    let prog = server.root.join("prog");
    std::fs::write(&prog, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = server.login();
    for mode in ["6777", "4755", "2755", "1777", "7777"] {
        let (code, text) = c.cmd(&format!("SITE CHMOD {mode} prog"));
        assert_eq!(code, 550, "SITE CHMOD {mode}: {text}");
        assert_eq!(mode_of(&prog), 0o755, "SITE CHMOD {mode} changed the file");
    }
    c.cmd_ok("SITE CHMOD 777 prog", 200);
    assert_eq!(mode_of(&prog), 0o777);
}

/// Audit item 4: an account with list, read and rename replaced a file's contents by renaming
/// another file onto it. Replacing needs the write permission, like overwriting.
#[test]
fn renaming_onto_an_existing_name_needs_the_write_permission() {
    let server = server_for(&["list", "read", "rename"], "");
    std::fs::write(server.root.join("a"), b"a's data").unwrap();
    std::fs::write(server.root.join("b"), b"b's data").unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    std::fs::create_dir(server.root.join("e")).unwrap();
    let mut c = server.login();
    for (from, to) in [("a", "b"), ("d", "e")] {
        c.cmd_ok(&format!("RNFR {from}"), 350);
        let (code, text) = c.cmd(&format!("RNTO {to}"));
        assert_eq!(code, 550, "RNFR {from} + RNTO {to}: {text}");
    }
    assert_eq!(std::fs::read(server.root.join("a")).unwrap(), b"a's data");
    assert_eq!(std::fs::read(server.root.join("b")).unwrap(), b"b's data");
    assert!(server.root.join("d").is_dir() && server.root.join("e").is_dir());
    // Renaming to a free name is what the permission is for.
    c.cmd_ok("RNFR a", 350);
    c.cmd_ok("RNTO c", 250);
    assert_eq!(std::fs::read(server.root.join("c")).unwrap(), b"a's data");

    // With write, renaming onto an existing file replaces it, as before.
    let server = server_for(&["list", "read", "rename", "write"], "");
    std::fs::write(server.root.join("a"), b"a's data").unwrap();
    std::fs::write(server.root.join("b"), b"b's data").unwrap();
    let mut c = server.login();
    c.cmd_ok("RNFR a", 350);
    c.cmd_ok("RNTO b", 250);
    assert_eq!(std::fs::read(server.root.join("b")).unwrap(), b"a's data");
}

/// Audit item 4: with list and append only, REST 1 + STOR cut a file to one byte. An
/// append-only account may resume only at the end of a file, and only ever adds bytes.
#[test]
fn an_append_only_account_never_overwrites_or_truncates() {
    let server = server_for(&["list", "append"], "");
    let f = server.root.join("f");
    std::fs::write(&f, b"0123456789").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for (rest, verb) in [(1, "STOR"), (0, "STOR"), (9, "STOR"), (1, "APPE")] {
        c.cmd_ok(&format!("REST {rest}"), 350);
        let (code, text) = upload(&mut c, &format!("{verb} f"), b"X");
        assert_eq!(code, 550, "REST {rest} + {verb}: {text}");
        assert_eq!(
            std::fs::read(&f).unwrap(),
            b"0123456789",
            "REST {rest} + {verb}"
        );
    }
    // Resuming at the end adds bytes, as does APPE.
    c.cmd_ok("REST 10", 350);
    assert_eq!(upload(&mut c, "STOR f", b"AB").0, 226);
    assert_eq!(upload(&mut c, "APPE f", b"CD").0, 226);
    assert_eq!(std::fs::read(&f).unwrap(), b"0123456789ABCD");

    // With write, REST + STOR still rewrites from the offset.
    let server = server_for(&["list", "read", "write"], "");
    let f = server.root.join("f");
    std::fs::write(&f, b"0123456789").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    c.cmd_ok("REST 4", 350);
    assert_eq!(upload(&mut c, "STOR f", b"x").0, 226);
    assert_eq!(std::fs::read(&f).unwrap(), b"0123x");
}

/// Audit item 9: a REIN every second kept a session that never logged in alive forever. The
/// login deadline runs from the connection.
#[test]
fn rein_does_not_extend_the_time_to_log_in() {
    let server = server_for(&["list"], "[limits]\nlogin_timeout_secs = 1\n");
    let mut c = server.connect();
    // Far more REINs than fit in the login period; the session must end among them.
    for _ in 0..40 {
        let _ = c.stream.write_all(b"REIN\r\n");
        let (code, text) = c.reply();
        if code == 421 {
            assert!(text.contains("not logged in"), "{text}");
            assert!(c.is_closed());
            return;
        }
        assert_eq!(code, 220, "{text}");
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("REIN kept an unauthenticated session alive past the login timeout");
}

/// Audit item 11: a hard link in the home to a file outside it let APPE, REST + STOR, SITE
/// CHMOD and MFMT change that file. In-place changes refuse files with other hard links; STOR
/// replaces the link itself, and reading it is the administrator's choice (README, Security).
#[test]
fn in_place_changes_refuse_a_hard_linked_file() {
    let server = server_for(&["list", "read", "write", "append"], "");
    let outside = server.dir.path().join("outside");
    std::fs::write(&outside, b"not yours").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::hard_link(&outside, server.root.join("link")).unwrap();
    let mtime = std::fs::metadata(&outside).unwrap().modified().unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let (code, text) = upload(&mut c, "APPE link", b"appended");
    assert_eq!(code, 550, "APPE: {text}");
    c.cmd_ok("REST 3", 350);
    let (code, text) = upload(&mut c, "STOR link", b"over");
    assert_eq!(code, 550, "REST + STOR: {text}");
    let (code, text) = c.cmd("SITE CHMOD 666 link");
    assert_eq!(code, 550, "SITE CHMOD: {text}");
    let (code, text) = c.cmd("MFMT 20000101000000 link");
    assert_eq!(code, 550, "MFMT: {text}");
    assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
    assert_eq!(mode_of(&outside), 0o644);
    assert_eq!(
        std::fs::metadata(&outside).unwrap().modified().unwrap(),
        mtime
    );
    // Reading works; STOR replaces the link, not the file behind it.
    assert_eq!(c.retr("link"), b"not yours");
    assert_eq!(upload(&mut c, "STOR link", b"mine").0, 226);
    assert_eq!(std::fs::read(server.root.join("link")).unwrap(), b"mine");
    assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
}

/// SITE CHMOD checked the link count by path and then changed the mode by path again: a name
/// swapped in between (another session's RNTO; here a thread renaming in the root, which is
/// faster) let it change a hard-linked file outside the home. The check and the change now
/// go through one opened handle.
#[test]
fn site_chmod_never_reaches_a_hard_linked_file_swapped_in_meanwhile() {
    let server = server_for(&["list", "read", "write"], "");
    let outside = server.dir.path().join("outside");
    std::fs::write(&outside, b"not yours").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&outside, server.root.join("link")).unwrap();
    std::fs::write(server.root.join("plain"), b"mine").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (root, stop) = (server.root.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // `t` names the plain file, then nothing, then the hard link, then nothing.
                let _ = std::fs::rename(root.join("plain"), root.join("t"));
                let _ = std::fs::rename(root.join("t"), root.join("plain"));
                let _ = std::fs::rename(root.join("link"), root.join("t"));
                let _ = std::fs::rename(root.join("t"), root.join("link"));
            }
        })
    };
    let mut c = server.login();
    for _ in 0..5000 {
        let (code, text) = c.cmd("SITE CHMOD 666 t");
        assert!(code == 200 || code == 550, "SITE CHMOD: {code} {text}");
        if mode_of(&outside) != 0o600 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(mode_of(&outside), 0o600, "the outside file's mode changed");
    c.cmd_ok("NOOP", 200);
}

/// `sudo ferroftp passwd` creating the users file in `root:ferroftp 0750 /etc/ferroftp` made
/// it `root:ferroftp 0600`, which the service (reading through its group) could not read. A
/// new file in a directory shared with exactly its group is now 0640; elsewhere still 0600.
#[test]
fn a_new_users_file_in_a_directory_shared_with_its_group_is_group_readable() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("etc-ferroftp");
    let private = tmp.path().join("private");
    for (dir, mode) in [(&shared, 0o750), (&private, 0o755)] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    common::add_user(&private.join("users.toml"), "alice", "pw", None);
    assert_eq!(mode_of(&private.join("users.toml")), 0o600);
    // As root (the usual `sudo ferroftp passwd`), with a group that is not root's own; only
    // root can give the directory one.
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&shared, Some(0), Some(54329)).unwrap();
        common::add_user(&shared.join("users.toml"), "alice", "pw", None);
        let m = std::fs::metadata(shared.join("users.toml")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 54329, 0o640));
    }
}

/// Audit item 11: `MKD a\rb` was accepted, and the name went raw into NLST, where a line end
/// forges lines. CR and LF are refused in every path argument and nothing changes.
#[test]
fn path_names_with_cr_or_lf_are_refused() {
    let server = server_for(&["list", "read", "write", "mkdir", "rename"], "");
    std::fs::write(server.root.join("x"), b"x").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for line in ["MKD a\rb", "MKD a\rb/\r", "SITE CHMOD 644 x\r"] {
        c.send_raw(format!("{line}\r\n").as_bytes());
        let (code, text) = c.reply();
        assert_eq!(code, 501, "{line:?}: {text}");
    }
    c.cmd_ok("RNFR x", 350);
    let (code, text) = c.cmd("RNTO y\r226 forged");
    assert_eq!(code, 501, "RNTO: {text}");
    let (code, text) = upload(&mut c, "STOR z\r", b"z");
    assert_eq!(code, 501, "STOR: {text}");
    let names: Vec<_> = std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["x"]);
    assert_eq!(c.list("NLST"), "x\r\n");
}

/// Audit item 11: STAT before login showed the server's own address.
#[test]
fn stat_before_login_does_not_show_the_servers_address() {
    let server = server_for(&["list"], "");
    let mut c = server.connect();
    let text = c.cmd_ok("STAT", 211);
    let local = c.stream.peer_addr().unwrap();
    assert!(!text.contains(&local.to_string()), "{text}");
    assert!(!text.contains(&local.port().to_string()), "{text}");
    assert!(text.contains("Not logged in"), "{text}");
    // Once logged in, STAT says where the session is connected.
    c.login("u", "pw");
    let text = c.cmd_ok("STAT", 211);
    assert!(text.contains(&local.to_string()), "{text}");
}

/// Audit item 7: `LIST dir/*` read and sorted the whole directory before sending a byte, so a
/// few parallel glob listings of a huge directory took hundreds of megabytes. Matches are now
/// streamed like a plain listing. Eight glob listings of a 60,000-entry directory are held
/// open at once (the client reads nothing until all have started), and the server's peak
/// memory must not grow with the directory.
#[test]
fn glob_listings_of_a_huge_directory_keep_the_servers_memory_bounded() {
    const ENTRIES: usize = 60_000;
    const LISTINGS: usize = 8;
    let server = server_for(&["list", "read"], "");
    let dir = server.root.join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..ENTRIES {
        std::fs::File::create(dir.join(format!("entry-with-a-longish-name-{i:06}.dat"))).unwrap();
    }
    let before = status_kib(server.pid(), "VmHWM");
    let mut open = Vec::new();
    for _ in 0..LISTINGS {
        let mut c = server.connect();
        c.login("u", "pw");
        let data = c.pasv_connect();
        c.cmd_ok("LIST big/entry-*", 150);
        open.push((c, data));
    }
    let during = status_kib(server.pid(), "VmHWM");
    // Every listing is complete (and nothing matching is a 550, as before).
    for (mut c, data) in open {
        let text = common::read_all(data);
        assert_eq!(
            text.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            ENTRIES
        );
        c.cmd_ok_reply(226);
        let (code, _) = transfer_result(&mut c, "NLST big/nothing-*");
        assert_eq!(code, 550);
    }
    let grew = during.saturating_sub(before);
    eprintln!("peak memory: {before} KiB before the listings, {during} KiB with them open");
    assert!(
        grew < 24 * 1024,
        "{LISTINGS} glob listings of {ENTRIES} entries grew the server's peak memory by {grew} KiB"
    );
}
