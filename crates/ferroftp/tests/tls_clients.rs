//! FTPS with real clients nobody here wrote: curl and Python's ftplib (OpenSSL), lftp (GnuTLS)
//! and suppaftp (rustls). Every server here has a development certificate for `localhost` and
//! `127.0.0.1`, an explicit listener (AUTH TLS) and an implicit one, and every client verifies
//! the certificate against exactly that file, host name included.
//!
//! Each test checks three things: what the client says, the bytes on disk, and the server log
//! (run with RUST_LOG=debug), which must show every control connection as TLS and every data
//! connection as a TLS handshake that resumed its own control connection's session. A server
//! that sent data in the clear, or took a full handshake on a data connection, fails them.
//!
//! The refusals (non-resumed or foreign sessions, TLS policies, certificate reload) are tested
//! elsewhere; this file is about the clients that should work, plus two things only a run of
//! real transfers shows: a rustls client's long run of uploads, and a stranger who was refused
//! once trying again with what the refusal gave it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Options, TestServer, assert_same_tree, log_count, names_in, path_str, pseudo_random, q,
    rustls_client, same, script_path,
};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use suppaftp::types::FileType;
use suppaftp::{RustlsConnector, RustlsFtpStream};

// ---- the server ----

/// A server with a development certificate, an explicit and an implicit FTPS listener.
struct Ftps {
    server: TestServer,
    /// The server's certificate: the only thing clients are told to trust.
    ca: PathBuf,
    /// A different self-signed certificate for 127.0.0.1, which clients must not accept.
    other_ca: PathBuf,
    _certs: tempfile::TempDir,
}

impl Ftps {
    fn start() -> Self {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) =
            common::dev_cert(&certs.path().join("server"), &["localhost", "127.0.0.1"]);
        let (other_ca, _) = common::dev_cert(&certs.path().join("other"), &["127.0.0.1"]);
        let server = TestServer::with(Options {
            args: vec![
                "--tls-cert".into(),
                cert.to_str().unwrap().into(),
                "--tls-key".into(),
                key.to_str().unwrap().into(),
                "--implicit-listen".into(),
                "127.0.0.1:0".into(),
            ],
            listeners: 2,
            ..Options::default()
        });
        let banner = &server.banner;
        assert!(
            banner.contains(&format!("listening on {} (explicit FTPS)", server.addrs[0]))
                && banner.contains(&format!("listening on {} (implicit FTPS)", server.addrs[1])),
            "listeners: {banner}"
        );
        Self {
            server,
            ca: cert,
            other_ca,
            _certs: certs,
        }
    }

    fn explicit(&self) -> SocketAddr {
        self.server.addrs[0]
    }

    fn implicit(&self) -> SocketAddr {
        self.server.addrs[1]
    }
}

// ---- what the server log says about TLS ----

/// One session's TLS and transfers, from the server log.
#[derive(Debug, Default)]
struct SessionLog {
    /// "explicit" or "implicit", as the config file spells it.
    mode: String,
    /// Whether the client sent AUTH.
    auth: bool,
    /// (version, handshake) of the control connection's TLS, e.g. ("TLSv1_3", "Full").
    control: Vec<(String, String)>,
    /// (version, handshake) of every TLS data connection.
    data: Vec<(String, String)>,
    /// (verb, result) of every transfer, including one cut short by the session's end.
    transfers: Vec<(String, String)>,
    /// The active- and passive-mode commands sent.
    port_cmds: usize,
    pasv_cmds: usize,
}

/// The value of `key=` in a log line: up to the next space, or a whole "quoted string";
/// `Some(...)` is unwrapped.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    Some(
        value
            .strip_prefix("Some(")
            .and_then(|v| v.strip_suffix(')'))
            .unwrap_or(value),
    )
}

/// Every session in the log, by id.
fn sessions(server: &TestServer) -> BTreeMap<u64, SessionLog> {
    let mut out: BTreeMap<u64, SessionLog> = BTreeMap::new();
    for line in server.log().lines() {
        let Some(rest) = line.split("session{id=").nth(1) else {
            continue;
        };
        let id: u64 = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let s = out.entry(id).or_default();
        if line.contains(": session opened ") {
            s.mode = line.split(" mode=").nth(1).unwrap_or("").to_string();
        } else if line.contains("command=Auth(") {
            s.auth = true;
        } else if line.contains(": TLS established ") {
            let entry = (
                field(line, "version").unwrap().to_string(),
                field(line, "handshake").unwrap().to_string(),
            );
            match field(line, "connection") {
                Some("control") => s.control.push(entry),
                Some("data") => s.data.push(entry),
                other => panic!("unknown TLS connection {other:?}: {line}"),
            }
        } else if line.contains(": transfer verb=")
            || line.contains(": transfer ended by session close verb=")
        {
            s.transfers.push((
                field(line, "verb").unwrap().to_string(),
                field(line, "result").unwrap().to_string(),
            ));
        } else if line.contains("command=Port(") || line.contains("command=Eprt(") {
            s.port_cmds += 1;
        } else if line.contains("command=Pasv") || line.contains("command=Epsv(") {
            s.pasv_cmds += 1;
        }
    }
    out
}

/// Assert that every session that moved data did it over TLS: one TLS control connection, and
/// one TLS data connection per transfer, each resuming the control session with the same
/// version (`version`, e.g. "TLSv1_3", if given). Returns the sessions that moved data.
fn assert_all_tls(
    server: &TestServer,
    sessions: &BTreeMap<u64, SessionLog>,
    version: Option<&str>,
) -> usize {
    let mut checked = 0;
    for (id, s) in sessions.iter().filter(|(_, s)| !s.transfers.is_empty()) {
        let ctx = || format!("session {id}: {s:?}");
        assert_eq!(s.control.len(), 1, "one TLS control connection; {}", ctx());
        let (ctl_version, ctl_handshake) = &s.control[0];
        assert_eq!(ctl_handshake, "Full", "{}", ctx());
        if let Some(v) = version {
            assert_eq!(ctl_version, v, "control TLS version; {}", ctx());
        }
        assert_eq!(
            s.data.len(),
            s.transfers.len(),
            "one TLS data connection per transfer; {}",
            ctx()
        );
        for (v, handshake) in &s.data {
            assert_eq!(
                handshake,
                "Resumed",
                "data connection not resumed; {}",
                ctx()
            );
            assert_eq!(v, ctl_version, "data TLS version; {}", ctx());
        }
        checked += 1;
    }
    let log = server.log();
    for bad in [
        "refused a TLS data connection",
        "TLS handshake on the data connection failed",
    ] {
        assert!(!log.contains(bad), "the server log has {bad:?}");
    }
    checked
}

/// The sessions with an id above `after`.
fn sessions_after(server: &TestServer, after: u64) -> BTreeMap<u64, SessionLog> {
    sessions(server).split_off(&(after + 1))
}

fn last_session(server: &TestServer) -> u64 {
    sessions(server).keys().next_back().copied().unwrap_or(0)
}

// ---- curl ----

/// curl over TLS, verifying the server against `ca`; `-v` so that its TLS lines can be checked.
fn curl(ftps: &Ftps, args: &[&str]) -> Output {
    let s = &ftps.server;
    Command::new("curl")
        .args(["-sS", "-v", "--connect-timeout", "10", "--max-time", "60"])
        .arg("--cacert")
        .arg(&ftps.ca)
        .arg("-u")
        .arg(format!("{}:{}", s.user, s.password))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"))
}

/// curl, which must succeed and report `version` (e.g. "TLSv1.3") for every TLS connection it
/// made (control and data: at least two). Returns stdout.
fn curl_ok(ftps: &Ftps, version: &str, args: &[&str]) -> Vec<u8> {
    let out = curl(ftps, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "curl {args:?} failed with {:?}: {err}",
        out.status.code()
    );
    let tls: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("SSL connection using "))
        .collect();
    assert!(
        tls.len() >= 2 && tls.iter().all(|l| l.contains(&format!("using {version} "))),
        "curl {args:?}: expected {version} on the control and data connections: {tls:?}"
    );
    out.stdout
}

// Active mode (PORT/EPRT) with TLS is not tried with curl: Debian 12's curl 7.88.1 cannot do
// active-mode FTPS at all ("sa_addr inet_ntop() failed", curl issue #10666, fixed in 8.0).
// lftp and ftplib cover active mode with TLS below.
#[test]
fn curl_uploads_downloads_and_lists_over_explicit_and_implicit_ftps_with_tls_1_2_and_1_3() {
    let mut ftps = Ftps::start();
    let data = pseudo_random(3 * 1024 * 1024 + 5, 0xF7F5);
    let local = ftps.server.dir.path().join("local.bin");
    std::fs::write(&local, &data).unwrap();
    let out = ftps.server.dir.path().join("out.bin");
    let mut names = Vec::new();
    for (listener, addr) in [("explicit", ftps.explicit()), ("implicit", ftps.implicit())] {
        for (version, log_version, flags) in [
            ("TLSv1.2", "TLSv1_2", &["--tls-max", "1.2"][..]),
            ("TLSv1.3", "TLSv1_3", &["--tlsv1.3"][..]),
        ] {
            let what = format!("{listener} {version}");
            let before = last_session(&ftps.server);
            // Explicit: ftp:// with --ssl-reqd (AUTH, PBSZ 0, PROT P); implicit: ftps://.
            let base = match listener {
                "explicit" => format!("ftp://127.0.0.1:{}/", addr.port()),
                _ => format!("ftps://127.0.0.1:{}/", addr.port()),
            };
            let with = |extra: &[&str]| -> Vec<String> {
                let mut v: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                if listener == "explicit" {
                    v.push("--ssl-reqd".into());
                }
                v.extend(extra.iter().map(|s| s.to_string()));
                v
            };
            let run = |extra: &[&str]| {
                let args = with(extra);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                curl_ok(&ftps, version, &args)
            };
            let name = format!("{listener}-{version}.bin");
            names.push(name.clone());
            let url = format!("{base}{name}");
            run(&["-T", path_str(&local), &url]);
            same(
                &std::fs::read(ftps.server.root.join(&name)).unwrap(),
                &data,
                &format!("{what}: uploaded {name} on disk"),
            );
            let _ = std::fs::remove_file(&out);
            run(&["-o", path_str(&out), &url]);
            same(
                &std::fs::read(&out).unwrap(),
                &data,
                &format!("{what}: downloaded {name}"),
            );
            let listing = String::from_utf8(run(&[&base])).unwrap();
            let line = listing
                .lines()
                .find(|l| l.ends_with(&format!(" {name}")))
                .unwrap_or_else(|| panic!("{what}: {name} missing from LIST:\n{listing}"));
            assert!(
                line.starts_with('-') && line.contains(&format!(" {} ", data.len())),
                "{what}: LIST line {line:?}"
            );
            let nlst = String::from_utf8(run(&["--list-only", &base])).unwrap();
            let mut got: Vec<&str> = nlst.lines().collect();
            got.sort_unstable();
            let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
            want.sort_unstable();
            assert_eq!(got, want, "{what}: NLST");

            // The server's side: four sessions of this listener, each over TLS of this version
            // with one resumed TLS data connection.
            let new = sessions_after(&ftps.server, before);
            assert_eq!(new.len(), 4, "{what}: four curl sessions: {new:?}");
            assert_eq!(assert_all_tls(&ftps.server, &new, Some(log_version)), 4);
            for s in new.values() {
                assert_eq!(s.mode, *listener, "{what}: {s:?}");
                assert_eq!(s.auth, listener == "explicit", "{what}: AUTH sent? {s:?}");
                assert_eq!(s.transfers.len(), 1, "{what}: {s:?}");
                assert_eq!(s.transfers[0].1, "ok", "{what}: {s:?}");
                assert_eq!(s.port_cmds, 0, "{what}: {s:?}");
            }
        }
    }
    assert_eq!(names_in(&ftps.server.root).len(), 4, "leftover files");
    ftps.server.assert_still_serving();
}

// ---- lftp ----

/// lftp with FTPS forced for login and data and the server certificate verified against
/// `ca`; `open_url` is the `open` target. Returns (success, stdout, stderr).
fn lftp(ftps: &Ftps, ca: &Path, open_url: &str, script: &str) -> (bool, String, String) {
    let s = &ftps.server;
    let full = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; \
         set ssl:verify-certificate yes; set ssl:check-hostname yes; set ssl:ca-file \"{}\"; \
         set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; \
         set xfer:clobber on; set cmd:fail-exit yes; set ftp:auto-passive-mode no; \
         open -u {},{} {open_url}; {script}",
        path_str(ca),
        s.user,
        s.password,
    );
    // lftp keeps history and caches under $HOME: give it a private one.
    let home = s.dir.path().join("lftp-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("timeout")
        .args(["60", "lftp", "-c", &full])
        .env("HOME", &home)
        .env_remove("LFTP_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run lftp (is it installed?): {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lftp_ok(ftps: &Ftps, open_url: &str, script: &str) -> String {
    let (ok, out, err) = lftp(ftps, &ftps.ca, open_url, script);
    assert!(ok, "lftp `{script}` failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// A small tree: nested directories (one empty), a binary file, names with spaces and UTF-8.
/// Returns the number of files.
fn make_tree(base: &Path) -> usize {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("binary.bin", pseudo_random(300_000, 1)),
        (
            "sub dir/deeper/\u{e9}t\u{e9} \u{fc}ber.txt",
            "caf\u{e9}\r\n".into(),
        ),
        (
            "donn\u{e9}es/\u{65e5}\u{672c}/\u{30d5}\u{30a1}\u{30a4}\u{30eb} name.dat",
            pseudo_random(5_000, 2),
        ),
        ("sub dir/one byte", vec![0x42]),
    ];
    std::fs::create_dir_all(base.join("empty dir")).unwrap();
    for (path, data) in &files {
        let p = base.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files.len()
}

#[test]
fn lftp_mirrors_a_tree_both_ways_over_verified_ftps_passive_and_active() {
    let mut ftps = Ftps::start();
    let src = ftps.server.dir.path().join("src");
    let files = make_tree(&src);
    let explicit = format!("ftp://127.0.0.1:{}", ftps.explicit().port());
    for (mode, passive) in [("passive", "on"), ("active", "off")] {
        let before = last_session(&ftps.server);
        let remote = format!("/up-{mode}");
        let back = ftps.server.dir.path().join(format!("back-{mode}"));
        lftp_ok(
            &ftps,
            &explicit,
            &format!(
                "set ftp:passive-mode {passive}; mirror -R {} {remote}; mirror {remote} {}",
                q(&src),
                q(&back)
            ),
        );
        assert_same_tree(&ftps.server.root.join(&remote[1..]), &src);
        assert_same_tree(&back, &src);

        let new = sessions_after(&ftps.server, before);
        assert!(assert_all_tls(&ftps.server, &new, None) >= 1, "{new:?}");
        let count = |verb: &str| {
            new.values()
                .flat_map(|s| &s.transfers)
                .filter(|(v, r)| v == verb && r == "ok")
                .count()
        };
        assert_eq!(count("STOR"), files, "{mode}: one STOR per file: {new:?}");
        assert_eq!(count("RETR"), files, "{mode}: one RETR per file: {new:?}");
        assert!(new.values().all(|s| s.auth), "{mode}: AUTH TLS: {new:?}");
        let (ports, pasvs): (usize, usize) = new
            .values()
            .fold((0, 0), |(a, b), s| (a + s.port_cmds, b + s.pasv_cmds));
        if passive == "on" {
            assert_eq!(ports, 0, "{mode}: {new:?}");
            assert!(pasvs >= 2 * files, "{mode}: {new:?}");
        } else {
            assert_eq!(pasvs, 0, "{mode}: lftp fell back to passive: {new:?}");
            assert!(ports >= 2 * files, "{mode}: {new:?}");
        }
    }

    // Implicit FTPS (ftps://) with lftp too: a listing and a download.
    let before = last_session(&ftps.server);
    let implicit = format!("ftps://127.0.0.1:{}", ftps.implicit().port());
    let got = ftps.server.dir.path().join("implicit.bin");
    let listing = lftp_ok(
        &ftps,
        &implicit,
        &format!("cls up-passive; get up-passive/binary.bin -o {}", q(&got)),
    );
    assert!(listing.contains("binary.bin"), "{listing}");
    same(
        &std::fs::read(&got).unwrap(),
        &std::fs::read(src.join("binary.bin")).unwrap(),
        "binary.bin over implicit FTPS",
    );
    let new = sessions_after(&ftps.server, before);
    assert_eq!(assert_all_tls(&ftps.server, &new, None), 1, "{new:?}");
    assert!(new.values().all(|s| s.mode == "implicit" && !s.auth));
    ftps.server.assert_still_serving();
}

#[test]
fn lftp_verifies_the_certificate_and_refuses_one_from_another_ca() {
    let mut ftps = Ftps::start();
    std::fs::write(ftps.server.root.join("secret.txt"), b"not for strangers").unwrap();
    let explicit = format!("ftp://127.0.0.1:{}", ftps.explicit().port());
    let local = ftps.server.dir.path().join("got.txt");
    let script = format!("get secret.txt -o {}", q(&local));
    // The right CA: fine.
    let (ok, out, err) = lftp(&ftps, &ftps.ca, &explicit, &script);
    assert!(ok, "with the server's own certificate as CA: {out}{err}");
    assert_eq!(std::fs::read(&local).unwrap(), b"not for strangers");
    std::fs::remove_file(&local).unwrap();
    let logins = log_count(&ftps.server, "login ok");
    assert_eq!(logins, 1);

    // Another CA (a certificate for the same 127.0.0.1, but not the server's): lftp stops
    // at the handshake, before the password is sent.
    let (ok, out, err) = lftp(&ftps, &ftps.other_ca, &explicit, &script);
    assert!(
        !ok,
        "lftp accepted a certificate it cannot verify: {out}{err}"
    );
    assert!(
        err.contains("Certificate verification") && err.contains("NOT trusted"),
        "lftp's error: {err}"
    );
    assert!(!local.exists());
    assert_eq!(
        log_count(&ftps.server, "login ok"),
        logins,
        "logged in anyway"
    );
    assert_eq!(
        log_count(&ftps.server, "command PASS"),
        logins,
        "password sent"
    );
    // Implicit FTPS likewise.
    let implicit = format!("ftps://127.0.0.1:{}", ftps.implicit().port());
    let (ok, out, err) = lftp(&ftps, &ftps.other_ca, &implicit, &script);
    assert!(
        !ok,
        "implicit: lftp accepted a certificate it cannot verify: {out}{err}"
    );
    assert!(err.contains("NOT trusted"), "lftp's error: {err}");
    assert_eq!(
        log_count(&ftps.server, "command PASS"),
        logins,
        "password sent"
    );
    ftps.server.assert_still_serving();
}

// ---- Python's ftplib ----

/// Run a scenario of tests/py/tls_ftplib.py against `addr`; asserts it succeeded.
fn ftplib(ftps: &Ftps, scenario: &str, addr: SocketAddr) -> String {
    let s = &ftps.server;
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(script_path("tls_ftplib.py"))
        .args([
            scenario,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &s.user,
            &s.password,
        ])
        .arg(&s.root)
        .arg(&ftps.ca)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "tls_ftplib.py {scenario} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
    );
    stdout
}

/// Binary TLS downloads and big TLS uploads run on a thread of their own; ABOR stops such a
/// download at once (426, 226) and the session goes on, with both kinds of transfer whole.
#[test]
fn ftplib_abort_during_a_tls_download_on_its_thread_keeps_the_session() {
    let mut ftps = Ftps::start();
    let src = pseudo_random(3 << 20, 0xAB);
    std::fs::write(ftps.server.root.join("src.bin"), &src).unwrap();
    ftplib(&ftps, "abort", ftps.explicit());
    let log = ftps.server.log();
    let aborted = log
        .lines()
        .filter(|l| l.contains("transfer verb=\"RETR\"") && l.contains("huge.bin"))
        .collect::<Vec<_>>();
    assert_eq!(aborted.len(), 2, "two aborted downloads: {aborted:?}");
    assert!(
        aborted.iter().all(|l| !l.contains("result=\"ok\"")),
        "the 64 MiB download was not cut short: {aborted:?}"
    );
    // 2 aborted + 2 whole downloads, 2 uploads on the thread.
    assert_eq!(log.matches("sending on its own thread").count(), 4);
    assert_eq!(
        log.matches("receiving the rest on its own thread").count(),
        2
    );
    ftps.server.assert_still_serving();
}

#[test]
fn ftplib_with_session_reuse_transfers_passive_and_active_over_tls_1_2_and_1_3() {
    let mut ftps = Ftps::start();
    let src = pseudo_random(700_001, 0xF7);
    std::fs::write(ftps.server.root.join("src.bin"), &src).unwrap();
    ftplib(&ftps, "transfers", ftps.explicit());
    for name in [
        "pasv-tls12.bin",
        "port-tls12.bin",
        "pasv-tls13.bin",
        "port-tls13.bin",
    ] {
        same(
            &std::fs::read(ftps.server.root.join(name)).unwrap(),
            &src,
            name,
        );
    }
    let all = sessions(&ftps.server);
    assert_eq!(assert_all_tls(&ftps.server, &all, None), 4);
    // In script order: TLS 1.2 passive, active, then TLS 1.3 passive, active; 4 transfers each.
    let seen: Vec<(&str, bool, usize)> = all
        .values()
        .map(|s| {
            (
                s.control[0].0.as_str(),
                s.port_cmds > 0 && s.pasv_cmds == 0,
                s.transfers.len(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("TLSv1_2", false, 4),
            ("TLSv1_2", true, 4),
            ("TLSv1_3", false, 4),
            ("TLSv1_3", true, 4)
        ]
    );
    ftps.server.assert_still_serving();
}

/// The 4 KiB file number `i` of the `many` scenario: a SHA-256 chain from the decimal index.
fn small(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut block = i.to_string().into_bytes();
    while out.len() < 4096 {
        block = ring::digest::digest(&ring::digest::SHA256, &block)
            .as_ref()
            .to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(4096);
    out
}

#[test]
fn ftplib_resumes_the_session_on_every_one_of_many_small_transfers() {
    let mut ftps = Ftps::start();
    ftplib(&ftps, "many", ftps.explicit());
    for (dir, n) in [("many13", 50), ("many12", 20)] {
        let names = names_in(&ftps.server.root.join(dir));
        assert_eq!(names.len(), n, "{dir}: {names:?}");
        for i in 0..n {
            same(
                &std::fs::read(ftps.server.root.join(dir).join(format!("f{i:02}.bin"))).unwrap(),
                &small(i),
                &format!("{dir}/f{i:02}.bin"),
            );
        }
    }
    let all = sessions(&ftps.server);
    assert_eq!(assert_all_tls(&ftps.server, &all, None), 2);
    let per_session: Vec<(&str, usize)> = all
        .values()
        .map(|s| (s.control[0].0.as_str(), s.data.len()))
        .collect();
    assert_eq!(per_session, [("TLSv1_3", 101), ("TLSv1_2", 41)]);
    ftps.server.assert_still_serving();
}

#[test]
fn ftplib_over_implicit_ftps_is_protected_without_pbsz_or_prot() {
    let mut ftps = Ftps::start();
    let src = pseudo_random(500_000, 0x1A);
    std::fs::write(ftps.server.root.join("src.bin"), &src).unwrap();
    ftplib(&ftps, "implicit", ftps.implicit());
    for name in ["imp-pasv.bin", "imp-port.bin"] {
        same(
            &std::fs::read(ftps.server.root.join(name)).unwrap(),
            &src,
            name,
        );
    }
    let all = sessions(&ftps.server);
    assert_eq!(assert_all_tls(&ftps.server, &all, None), 2);
    for s in all.values() {
        assert_eq!(s.mode, "implicit");
        assert!(!s.auth, "{s:?}");
        assert_eq!(s.transfers.len(), 4, "{s:?}");
    }
    assert_eq!(log_count(&ftps.server, "command=Prot("), 0);
    assert_eq!(log_count(&ftps.server, "command=Pbsz("), 0);
    let modes: Vec<(usize, usize)> = all.values().map(|s| (s.pasv_cmds, s.port_cmds)).collect();
    assert_eq!(modes, [(4, 0), (0, 4)], "passive then active");
    ftps.server.assert_still_serving();
}

// ---- suppaftp (rustls) ----

/// AUTH TLS (suppaftp then sends PBSZ 0 and PROT P), login, binary.
fn suppaftp_login(
    ftps: &Ftps,
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> suppaftp::FtpResult<RustlsFtpStream> {
    let ftp = RustlsFtpStream::connect_timeout(ftps.explicit(), Duration::from_secs(10))?;
    ftp.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let connector = RustlsConnector::from(rustls_client(ca, versions));
    let mut ftp = ftp.into_secure(connector, "127.0.0.1")?;
    ftp.login(ftps.server.user.as_str(), ftps.server.password.as_str())?;
    ftp.transfer_type(FileType::Binary)?;
    Ok(ftp)
}

#[test]
fn suppaftp_with_rustls_logs_in_over_auth_tls_and_transfers_with_prot_p() {
    let mut ftps = Ftps::start();
    // A client that trusts another certificate gets nowhere.
    match suppaftp_login(&ftps, &ftps.other_ca, rustls::ALL_VERSIONS) {
        Err(e) => assert!(e.to_string().contains("certificate"), "{e}"),
        Ok(_) => panic!("a certificate from another CA was accepted"),
    }
    assert_eq!(log_count(&ftps.server, "command PASS"), 0);

    let mut ftp = suppaftp_login(&ftps, &ftps.ca, rustls::DEFAULT_VERSIONS).unwrap();
    let data = pseudo_random(1024 * 1024, 0x5A);
    ftp.put_file("up.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    same(
        &std::fs::read(ftps.server.root.join("up.bin")).unwrap(),
        &data,
        "up.bin on disk",
    );
    same(
        &ftp.retr_as_buffer("up.bin").unwrap().into_inner(),
        &data,
        "RETR up.bin",
    );
    let list = ftp.list(None).unwrap();
    assert!(
        list.len() == 1 && list[0].ends_with(" up.bin") && list[0].contains(" 1048576 "),
        "{list:?}"
    );
    assert_eq!(ftp.nlst(None).unwrap(), ["up.bin"]);
    let mlsd = ftp.mlsd(None).unwrap();
    assert!(
        mlsd.iter()
            .any(|l| l.contains("size=1048576;") && l.ends_with(" up.bin")),
        "{mlsd:?}"
    );
    ftp.quit().unwrap();

    let all = sessions(&ftps.server);
    assert_eq!(assert_all_tls(&ftps.server, &all, Some("TLSv1_3")), 1);
    let s = all.values().find(|s| !s.transfers.is_empty()).unwrap();
    assert!(s.auth);
    let verbs: Vec<&str> = s.transfers.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(verbs, ["STOR", "RETR", "LIST", "NLST", "MLSD"]);
    assert!(s.transfers.iter().all(|(_, r)| r == "ok"), "{s:?}");
    ftps.server.assert_still_serving();
}

/// A run of `n` uploads in a fresh session, then downloads and uploads in turn; every failure
/// is returned (with the server's 522 reasons), not panicked on, so both TLS versions are seen.
fn upload_run(
    ftps: &Ftps,
    version: &'static rustls::SupportedProtocolVersion,
    dir: &str,
    n: usize,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut ftp = suppaftp_login(ftps, &ftps.ca, &[version]).unwrap();
    ftp.mkdir(dir).unwrap();
    ftp.cwd(dir).unwrap();
    let content = |i: usize| pseudo_random(10_000 + i, i as u64);
    for i in 0..n {
        let name = format!("u{i:02}.bin");
        match ftp.put_file(&name, &mut Cursor::new(content(i))) {
            Ok(_) => same(
                &std::fs::read(ftps.server.root.join(dir).join(&name)).unwrap(),
                &content(i),
                &name,
            ),
            Err(e) => failures.push(format!("upload {} of {n} in a row: {e}", i + 1)),
        }
    }
    for i in 0..4 {
        let name = format!("u{i:02}.bin");
        match ftp.retr_as_buffer(&name) {
            Ok(got) => same(&got.into_inner(), &content(i), &name),
            Err(e) => failures.push(format!("then download {name}: {e}")),
        }
        if let Err(e) = ftp.put_file(format!("again-{name}"), &mut Cursor::new(vec![7; 100])) {
            failures.push(format!("then upload again-{name}: {e}"));
        }
    }
    ftp.quit().unwrap();
    failures
}

/// rustls clients use each TLS 1.3 ticket only once (and keep at most 8 per server). The server
/// hands out 8 tickets on the control connection and 2 on each download, none on uploads (a
/// ticket a client never reads makes its kernel reset the connection on close, destroying
/// upload data in flight). So under TLS 1.3 a rustls client has 8 data connections in hand,
/// and each download pays for itself and one upload: 7 uploads in a row, then downloads and
/// uploads in turn, all resume. (TLS 1.2 sessions are reusable without limit.)
#[test]
fn suppaftp_with_rustls_keeps_resuming_through_a_long_run_of_uploads() {
    let mut ftps = Ftps::start();
    let n = 7;
    let mut report = Vec::new();
    for (version, dir) in [
        (&rustls::version::TLS13, "tls13"),
        (&rustls::version::TLS12, "tls12"),
    ] {
        for f in upload_run(&ftps, version, dir, n) {
            report.push(format!("{dir}: {f}"));
        }
    }
    let log = ftps.server.log();
    let server_side: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("refused a TLS data connection") || l.contains("handshake=Some(Full)")
        })
        .collect();
    assert!(
        report.is_empty(),
        "a rustls client could not keep resuming its session:\n{}\nserver log:\n{}",
        report.join("\n"),
        server_side.join("\n")
    );
    let all = sessions(&ftps.server);
    let versions: Vec<&str> = all
        .values()
        .filter(|s| !s.transfers.is_empty())
        .map(|s| s.control[0].0.as_str())
        .collect();
    assert_eq!(versions, ["TLSv1_3", "TLSv1_2"]);
    assert_eq!(assert_all_tls(&ftps.server, &all, None), 2);
    for dir in ["tls13", "tls12"] {
        assert_eq!(names_in(&ftps.server.root.join(dir)).len(), n + 4, "{dir}");
    }
    ftps.server.assert_still_serving();
}

// ---- interrupted uploads ----

#[test]
fn a_tls_upload_cut_off_without_close_notify_leaves_the_existing_file_untouched() {
    let mut ftps = Ftps::start();
    let original = pseudo_random(20_000, 0x0123);
    let keep = ftps.server.root.join("keep.bin");
    std::fs::write(&keep, &original).unwrap();

    // ftplib: the data connection dropped mid-upload with a FIN, then with a RST, both without
    // close_notify; the control connection lives on and gets 426 each time.
    ftplib(&ftps, "interrupted", ftps.explicit());
    same(
        &std::fs::read(&keep).unwrap(),
        &original,
        "keep.bin after ftplib",
    );
    let results: Vec<String> = sessions(&ftps.server)
        .values()
        .flat_map(|s| s.transfers.clone())
        .filter(|(v, _)| v == "STOR")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0], "truncated: no TLS close_notify");
    assert!(results[1].starts_with("network error"), "{results:?}");

    // curl killed (SIGKILL) in the middle of a slow 3 MB upload: both its connections just
    // drop, with no close_notify.
    let local = ftps.server.dir.path().join("big.bin");
    std::fs::write(&local, pseudo_random(3 * 1024 * 1024, 0x4567)).unwrap();
    let mut child = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--limit-rate", "256k", "--cacert"])
        .arg(&ftps.ca)
        .arg("-u")
        .arg(format!("{}:{}", ftps.server.user, ftps.server.password))
        .arg("-T")
        .arg(&local)
        .arg(format!(
            "ftp://127.0.0.1:{}/keep.bin",
            ftps.explicit().port()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the upload's temporary file holds some data: the transfer is under way.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let partial = std::fs::read_dir(&ftps.server.root)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".ferroftp-upload.")
            })
            .map(|e| e.metadata().unwrap().len())
            .max();
        if partial.is_some_and(|n| n >= 100_000) {
            break;
        }
        assert!(Instant::now() < deadline, "the curl upload never got going");
        assert!(child.try_wait().unwrap().is_none(), "curl ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices (through the data connection's end, or the control connection's if it
    // sees that first), logs the upload as failed and removes the temporary file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stor = loop {
        let stors: Vec<(String, String)> = sessions(&ftps.server)
            .values()
            .flat_map(|s| s.transfers.clone())
            .filter(|(v, _)| v == "STOR")
            .collect();
        if stors.len() == 3 && names_in(&ftps.server.root) == ["keep.bin"] {
            break stors[2].1.clone();
        }
        assert!(
            Instant::now() < deadline,
            "after killing curl: {stors:?}, files {:?}",
            names_in(&ftps.server.root),
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(stor, "ok", "the cut-off upload was committed");
    same(
        &std::fs::read(&keep).unwrap(),
        &original,
        "keep.bin after curl was killed",
    );
    let all = sessions(&ftps.server);
    assert_eq!(assert_all_tls(&ftps.server, &all, None), 2);
    ftps.server.assert_still_serving();
}

// ---- session binding holds for every attempt ----

/// Data connections are bound to their control session so that a stranger who wins the race for
/// a passive port cannot take the transfer (it gets 522). The refusal must not leave the stranger
/// with a TLS session it can resume on the next data connection: here it tries, on an upload (to
/// replace a file) and a download (to read one), after being refused on either, with TLS 1.3 and
/// TLS 1.2. The victim is ftplib, the stranger another OpenSSL client on the same IP.
#[test]
fn a_stranger_refused_on_a_data_connection_cannot_resume_its_way_into_the_next_one() {
    let mut ftps = Ftps::start();
    let target = b"the victim's own content\n";
    std::fs::write(ftps.server.root.join("secret.txt"), b"top secret\n").unwrap();
    std::fs::write(ftps.server.root.join("target.txt"), target).unwrap();
    ftplib(&ftps, "stranger", ftps.explicit());
    assert_eq!(
        std::fs::read(ftps.server.root.join("target.txt")).unwrap(),
        target
    );
    // Nothing was transferred: every data connection was the stranger's.
    let all = sessions(&ftps.server);
    let done: Vec<_> = all
        .values()
        .flat_map(|s| &s.transfers)
        .filter(|(_, r)| r == "ok")
        .collect();
    assert!(done.is_empty(), "transfers went through: {done:?}");
    assert_eq!(names_in(&ftps.server.root), ["secret.txt", "target.txt"]);
    ftps.server.assert_still_serving();
}

/// Run the openssl CLI in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An RSA certificate issued by an intermediate CA (chain file: leaf then intermediate; key in
/// the old PKCS#1 "RSA PRIVATE KEY" form) works with a client that only trusts the root.
#[test]
fn an_rsa_certificate_with_an_intermediate_chain_is_served_whole() {
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    std::fs::write(
        d.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Test Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "int.key",
            "-out",
            "int.csr",
            "-subj",
            "/CN=Test Intermediate",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "int.pem",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.p8",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
        ],
    );
    openssl(
        d,
        &["rsa", "-in", "leaf.p8", "-out", "leaf.key", "-traditional"],
    );
    let key = std::fs::read_to_string(d.join("leaf.key")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{key}");
    let chain = std::fs::read_to_string(d.join("leaf.pem")).unwrap()
        + &std::fs::read_to_string(d.join("int.pem")).unwrap();
    std::fs::write(d.join("chain.pem"), chain).unwrap();

    let mut server = TestServer::with(Options {
        args: vec![
            "--tls-cert".into(),
            path_str(&d.join("chain.pem")).into(),
            "--tls-key".into(),
            path_str(&d.join("leaf.key")).into(),
        ],
        ..Options::default()
    });
    let data = pseudo_random(200_000, 77);
    std::fs::write(server.root.join("rsa.bin"), &data).unwrap();
    let url = format!("ftp://127.0.0.1:{}/rsa.bin", server.port());
    let out = Command::new("curl")
        .args(["-sS", "-v", "--ssl-reqd", "--max-time", "30", "--cacert"])
        .arg(d.join("root.pem"))
        .arg("-u")
        .arg(format!("{}:{}", server.user, server.password))
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {err}");
    same(&out.stdout, &data, "rsa.bin over a verified RSA chain");
    assert!(
        err.contains("issuer: CN=Test Intermediate") && err.contains("SSL certificate verify ok"),
        "{err}"
    );
    // Without the intermediate in the file the same client cannot verify the server.
    std::fs::copy(d.join("leaf.pem"), d.join("chain.pem")).unwrap();
    server.signal("HUP");
    server.wait_for_log("TLS certificate reloaded", 10);
    let out = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--max-time", "30", "--cacert"])
        .arg(d.join("root.pem"))
        .arg("-u")
        .arg(format!("{}:{}", server.user, server.password))
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a leaf without its chain was trusted"
    );
    server.assert_still_serving();
}
