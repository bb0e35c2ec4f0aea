//! Interoperability with Python's ftplib: each test prepares files, runs one script from
//! `tests/py/` (`python3 SCRIPT HOST PORT USER PASS ROOT`, which checks replies and bytes and
//! exits non-zero on the first failure), then checks the disk itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Options, TestServer, log_count, mtime_secs, pseudo_random, same, script_path, set_mtime,
};
use std::process::{Command, Stdio};

/// Run a script against the server and assert it succeeded; returns its stdout.
fn run_script(server: &TestServer, host: &str, script: &str) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(script_path(script))
        .args([
            host,
            &server.port().to_string(),
            &server.user,
            &server.password,
        ])
        .arg(&server.root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("OK"),
        "{script} did not finish: {stdout}"
    );
    stdout
}

#[test]
fn ftplib_session_basics() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"hello\nworld\n").unwrap();
    std::fs::write(server.root.join("b c.txt"), b"").unwrap();
    std::fs::create_dir(server.root.join("dir one")).unwrap();
    run_script(&server, "127.0.0.1", "session_basics.py");
    // What the script did, seen on disk.
    let mut names: Vec<String> = std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir two", "new dir", "renamed \u{e9}.txt"]);
    assert_eq!(
        std::fs::read(server.root.join("renamed \u{e9}.txt")).unwrap(),
        b"hello\nworld\n"
    );
    assert_eq!(
        std::fs::read_dir(server.root.join("new dir"))
            .unwrap()
            .count(),
        0
    );
    assert!(log_count(&server, "command=Quit") == 1);
    server.assert_still_serving();
}

#[test]
fn ftplib_binary_ascii_rest_appe_and_active_transfers() {
    let mut server = TestServer::start();
    let src = pseudo_random(1_500_000, 0xF7);
    std::fs::write(server.root.join("src.bin"), &src).unwrap();
    std::fs::write(server.root.join("lf.txt"), b"alpha\nbeta\n\ngamma\n").unwrap();
    run_script(&server, "127.0.0.1", "transfers.py");
    for name in ["copy.bin", "part.bin", "active.bin"] {
        assert!(
            std::fs::read(server.root.join(name)).unwrap() == src,
            "{name} differs from src.bin"
        );
    }
    let app = std::fs::read(server.root.join("app.bin")).unwrap();
    assert!(
        app.len() == 2 * src.len() && app[..src.len()] == src[..] && app[src.len()..] == src[..]
    );
    assert_eq!(
        std::fs::read(server.root.join("text.txt")).unwrap(),
        b"one\ntwo\n\nthree\n"
    );
    assert_eq!(
        std::fs::read(server.root.join("split.txt")).unwrap(),
        b"a\nb\nc\n"
    );
    assert_eq!(
        std::fs::read(server.root.join("active.txt")).unwrap(),
        b"x\ny\n"
    );
    // The active half really was active.
    assert!(
        log_count(&server, "command=Port") >= 5,
        "ftplib set_pasv(False) should send PORT"
    );
    same(
        &std::fs::read(server.root.join("src.bin")).unwrap(),
        &src,
        "the source changed",
    );
    server.assert_still_serving();
}

#[test]
fn ftplib_mlsd_mdtm_mfmt() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("m.bin"), pseudo_random(12345, 5)).unwrap();
    set_mtime(&server.root.join("m.bin"), 1_600_000_000);
    std::fs::create_dir(server.root.join("sub dir")).unwrap();
    run_script(&server, "127.0.0.1", "mlsd_times.py");
    // 2021-01-02T03:04:05Z
    assert_eq!(mtime_secs(&server.root.join("m.bin")), 1_609_556_645);
    server.assert_still_serving();
}

#[test]
fn ftplib_abort_during_a_long_download_keeps_the_session() {
    let mut server = TestServer::start();
    run_script(&server, "127.0.0.1", "abort.py");
    let aborted = server
        .log()
        .lines()
        .filter(|l| l.contains("transfer verb=\"RETR\"") && l.contains("huge.bin"))
        .map(|l| l.to_string())
        .collect::<Vec<_>>();
    assert_eq!(aborted.len(), 2, "two aborted downloads: {aborted:?}");
    for l in &aborted {
        assert!(
            !l.contains("result=\"ok\""),
            "the 64 MiB download was not cut short: {l}"
        );
    }
    server.assert_still_serving();
}

#[test]
fn ftplib_over_ipv6_uses_epsv_and_eprt() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: IPv6 loopback (::1) is not available on this machine");
        return;
    }
    let mut server = TestServer::with(Options {
        listen: Some("[::1]:0".into()),
        ..Options::default()
    });
    assert!(server.addr.is_ipv6());
    let data = pseudo_random(400_000, 6);
    std::fs::write(server.root.join("v6.bin"), &data).unwrap();
    run_script(&server, "::1", "ipv6.py");
    same(
        &std::fs::read(server.root.join("v6-up.bin")).unwrap(),
        &data,
        "v6-up.bin on disk",
    );
    same(
        &std::fs::read(server.root.join("v6-active.bin")).unwrap(),
        &data,
        "v6-active.bin on disk",
    );
    assert!(log_count(&server, "command=Epsv") >= 4);
    assert_eq!(log_count(&server, "command=Eprt"), 2);
    assert!(server.is_running());
}
