//! Regression tests for the findings of the outside audit of the control and data sessions
//! (issue 10): each drives the real binary over loopback and would fail on the code the audit
//! looked at. Memory is read from /proc/<server pid>/status (VmHWM, the peak), never timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use common::{Ctrl, Options, TestServer, bin};

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

fn port_arg(addr: SocketAddr) -> String {
    let SocketAddr::V4(a) = addr else {
        panic!("not v4")
    };
    ferroftp_proto::addr::format_port(a)
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
        full_tx.send(()).unwrap();
        // ...then keep pushing the rest while the server handles the transfer's failure.
        writer.set_nonblocking(false).unwrap();
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
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = c.reader.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "connection closed after {empty} empty-line replies");
        match &line[..3] {
            b"426" => failed += 1,
            b"500" => empty += 1,
            b"200" => break,
            other => panic!("unexpected reply {:?}", String::from_utf8_lossy(other)),
        }
    }
    flooder.join().unwrap();
    assert_eq!(failed, 1);
    assert_eq!(empty, FLOOD);
    let after = status_kib(server.pid(), "VmHWM");
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
    // A listener port whose port below is free, for the server to listen on.
    let port = loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port > 1025 && TcpListener::bind(("127.0.0.1", port - 1)).is_ok() {
            break port;
        }
    };
    let server = TestServer::with(Options {
        listen: Some(format!("127.0.0.1:{port}")),
        config: "[active]\nsource_port_below_listener = true\n".into(),
        ..Default::default()
    });
    let mut c = server.login();
    let target = SocketAddr::from(([127, 0, 0, 1], port - 1));
    c.cmd_ok(&format!("PORT {}", port_arg(target)), 200);
    let (code, text) = transfer_result(&mut c, "LIST");
    assert_eq!(code, 425, "LIST over a self-connected data connection: {code} {text}");
    c.cmd_ok("NOOP", 200);
    server.wait_for_log("reached itself", 10);
}
