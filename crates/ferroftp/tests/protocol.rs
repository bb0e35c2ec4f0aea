//! Protocol conformance over a raw control connection against the real binary: every command's
//! exact reply code and key text, aliases, pipelining, transfers and their side effects on disk,
//! ABOR/STAT mid-transfer, IPv6, permissions and the passive port range.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{
    Ctrl, Options, TestServer, assert_transfer_start, files_in, free_port_range, opts, port_arg,
    pseudo_random, read_all,
};

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

const BIG: u64 = 50 << 20;

/// Assert that no reply arrives on the control connection for `d`.
fn assert_silent(c: &mut Ctrl, d: Duration) {
    assert!(
        c.reader.buffer().is_empty(),
        "unexpected reply already buffered: {:?}",
        String::from_utf8_lossy(c.reader.buffer())
    );
    c.stream.set_read_timeout(Some(d)).unwrap();
    let res = c.reader.fill_buf().map(|b| b.to_vec());
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match res {
        Ok(b) if b.is_empty() => panic!("control connection closed unexpectedly"),
        Ok(b) => panic!("unexpected reply: {:?}", String::from_utf8_lossy(&b)),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "read error: {e}"
        ),
    }
}

/// Read a data connection to its end, tolerating a reset: (bytes read).
fn drain(mut s: TcpStream) -> usize {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

fn epsv_port(text: &str) -> u16 {
    let start = text
        .find("(|||")
        .unwrap_or_else(|| panic!("229 format: {text}"));
    let rest = &text[start + 4..];
    let end = rest
        .find("|)")
        .unwrap_or_else(|| panic!("229 format: {text}"));
    rest[..end].parse().unwrap()
}

fn pasv_port(text: &str) -> u16 {
    ferroftp_proto::addr::parse_pasv_reply(text)
        .unwrap_or_else(|| panic!("227 format: {text}"))
        .port()
}

fn make_big(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(BIG).unwrap();
}

/// Recursive snapshot of a directory: relative path -> (is_dir, content, mode, mtime).
type Snapshot = BTreeMap<String, (bool, Vec<u8>, u32, i64)>;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                out.insert(rel, (true, Vec::new(), md.mode(), md.mtime()));
                walk(base, &p, out);
            } else {
                let content = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, (false, content, md.mode(), md.mtime()));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Login and access control
// ---------------------------------------------------------------------------------------------

#[test]
fn login_replies() {
    let server = TestServer::start();
    let mut c = server.connect();
    // PASS without USER.
    c.cmd_ok("PASS whatever", 503);
    // USER gets the same 331 whether or not the user exists.
    let known = c.cmd_ok(&format!("USER {}", server.user), 331);
    let (code, text) = c.cmd("PASS wrong-password");
    assert_eq!(code, 530);
    assert!(text.contains("Login incorrect"), "{text}");
    let unknown = c.cmd_ok("USER nosuchuser", 331);
    assert_eq!(
        known.replace(&server.user, "NAME"),
        unknown.replace("nosuchuser", "NAME"),
        "USER must not reveal whether a user exists"
    );
    c.cmd_ok("PASS x", 530);
    c.cmd_ok(&format!("USER {}", server.user), 331);
    // Third failure is the limit (3): 421 and close.
    let (code, text) = c.cmd("PASS wrong-again");
    assert_eq!(code, 421, "{text}");
    assert!(c.is_closed());

    let mut c = server.connect();
    c.cmd_ok(&format!("USER {}", server.user), 331);
    c.cmd_ok(&format!("PASS {}", server.password), 230);
    c.cmd_ok("PWD", 257);
}

#[test]
fn commands_before_login() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.connect();
    for cmd in [
        "CWD /",
        "CDUP",
        "PWD",
        "XPWD",
        "MKD x",
        "RMD x",
        "DELE a.txt",
        "RNFR a.txt",
        "RNTO b",
        "TYPE I",
        "MODE S",
        "STRU F",
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|51210|",
        "LIST",
        "NLST",
        "MLSD",
        "MLST a.txt",
        "RETR a.txt",
        "STOR b.txt",
        "APPE b.txt",
        "STOU",
        "REST 0",
        "SIZE a.txt",
        "MDTM a.txt",
        "MFMT 20200101000000 a.txt",
        "STAT a.txt",
        "ALLO 10",
        "SITE HELP",
        "SITE CHMOD 600 a.txt",
    ] {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 530, "{cmd} before login -> {code} {text}");
    }
    // Allowed before login.
    for (cmd, code) in [
        ("FEAT", 211),
        ("SYST", 215),
        ("HELP", 214),
        ("NOOP", 200),
        ("OPTS UTF8 ON", 200),
        ("AUTH GSSAPI", 504),
        ("PBSZ 0", 503),
        ("PROT P", 503),
        ("CCC", 533),
        ("STAT", 211),
        ("ABOR", 225),
        ("ACCT x", 202),
    ] {
        c.cmd_ok(cmd, code);
    }
    // An unknown verb is 500 even before login.
    c.cmd_ok("FOO", 500);
    // Nothing changed on disk.
    assert_eq!(
        files_in(&server.root),
        BTreeSet::from(["a.txt".to_string()])
    );
    // Still possible to log in afterwards.
    c.login(&server.user, &server.password);
}

#[test]
fn quit_and_rein() {
    let server = TestServer::start();
    let mut c = server.login();
    c.cmd_ok("EPSV ALL", 200);
    let (code, _) = c.cmd("REIN");
    assert_eq!(code, 220);
    c.cmd_ok("PWD", 530);
    c.login(&server.user, &server.password);
    c.cmd_ok("PWD", 257);
    // REIN also resets EPSV ALL.
    c.cmd_ok("PASV", 227);
    c.cmd_ok("QUIT", 221);
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Syntax and unsupported things
// ---------------------------------------------------------------------------------------------

#[test]
fn error_reply_codes() {
    let server = TestServer::start();
    let mut c = server.login();
    for (cmd, code) in [
        ("FOO", 500),
        ("XYZZY arg", 500),
        ("SITE EXEC ls", 500),
        ("SMNT /x", 502),
        ("LANG en", 502),
        ("CWD", 501),
        ("MKD", 501),
        ("RETR", 501),
        ("TYPE", 501),
        ("TYPE X", 501),
        ("TYPE E", 504),
        ("TYPE A T", 504),
        ("TYPE L 7", 504),
        ("MODE B", 504),
        ("MODE C", 504),
        ("MODE X", 501),
        ("STRU R", 504),
        ("STRU P", 504),
        ("STRU X", 501),
        ("EPSV 3", 522),
        ("EPSV x", 501),
        ("EPRT |3|1.2.3.4|5000|", 522),
        ("EPRT garbage", 501),
        ("PORT 1,2,3", 501),
        ("PORT 300,1,1,1,1,1", 501),
        ("REST abc", 501),
        ("REST -5", 501),
        ("MFMT 2020 a", 501),
        ("SITE CHMOD 999 a", 501),
        ("OPTS", 501),
        ("OPTS FOO BAR", 501),
        ("FEAT x", 501),
        ("SYST x", 501),
        ("PROT Z", 501),
        ("PBSZ x", 501),
        // And the accepted forms.
        ("TYPE A", 200),
        ("TYPE A N", 200),
        ("TYPE I", 200),
        ("TYPE L 8", 200),
        ("MODE S", 200),
        ("STRU F", 200),
        ("NOOP", 200),
    ] {
        let (got, text) = c.cmd(cmd);
        assert_eq!(got, code, "{cmd} -> {got} {text}");
    }
    // Still a working session.
    c.cmd_ok("PWD", 257);
}

#[test]
fn verbs_are_case_insensitive() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.connect();
    c.cmd_ok(&format!("user {}", server.user), 331);
    c.cmd_ok(&format!("pAsS {}", server.password), 230);
    c.cmd_ok("noop", 200);
    c.cmd_ok("Syst", 215);
    c.cmd_ok("pwd", 257);
    c.cmd_ok("mkd sub", 257);
    c.cmd_ok("cwd sub", 250);
    c.cmd_ok("cdup", 250);
    c.cmd_ok("type i", 200);
    assert_eq!(c.cmd_ok("size a.txt", 213), "3");
    c.cmd_ok("xRmD sub", 250);
    let data = c.pasv_connect();
    let (code, text) = c.cmd("retr a.txt");
    assert_transfer_start(code, &text, "retr");
    assert_eq!(read_all(data), b"abc");
    c.cmd_ok_reply(226);
    c.cmd_ok("quit", 221);
}

// ---------------------------------------------------------------------------------------------
// Navigation and file operations
// ---------------------------------------------------------------------------------------------

#[test]
fn navigation_and_aliases() {
    let server = TestServer::start();
    let mut c = server.login();
    assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
    assert_eq!(c.cmd_ok("MKD a", 257), "\"/a\" created");
    assert!(server.root.join("a").is_dir());
    assert!(c.cmd_ok("XMKD a/b", 257).starts_with("\"/a/b\""));
    assert!(server.root.join("a/b").is_dir());
    c.cmd_ok("CWD a", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/a\" is the current directory");
    c.cmd_ok("XCWD b", 250);
    assert_eq!(c.cmd_ok("XPWD", 257), "\"/a/b\" is the current directory");
    c.cmd_ok("CDUP", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/a\" is the current directory");
    c.cmd_ok("XCUP", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
    // CDUP at the root stays at the root.
    c.cmd_ok("CDUP", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
    // MKD with a relative path inside a cwd is quoted as an absolute path.
    c.cmd_ok("CWD /a", 250);
    assert_eq!(c.cmd_ok("MKD c", 257), "\"/a/c\" created");
    c.cmd_ok("CWD /", 250);
    // Errors.
    c.cmd_ok("CWD nonexistent", 550);
    std::fs::write(server.root.join("f.txt"), b"x").unwrap();
    c.cmd_ok("CWD f.txt", 550);
    c.cmd_ok("MKD a", 550);
    c.cmd_ok("RMD nonexistent", 550);
    c.cmd_ok("DELE nonexistent", 550);
    // RMD of a non-empty directory fails and leaves it.
    c.cmd_ok("RMD a", 550);
    assert!(server.root.join("a/b").is_dir());
    c.cmd_ok("XRMD a/b", 250);
    c.cmd_ok("RMD a/c", 250);
    c.cmd_ok("RMD a", 250);
    assert!(!server.root.join("a").exists());
    c.cmd_ok("DELE f.txt", 250);
    assert!(!server.root.join("f.txt").exists());
}

#[test]
fn pwd_and_mkd_double_embedded_quotes() {
    let server = TestServer::start();
    let mut c = server.login();
    assert_eq!(
        c.cmd_ok("MKD say \"hi\"", 257),
        "\"/say \"\"hi\"\"\" created"
    );
    assert!(server.root.join("say \"hi\"").is_dir());
    c.cmd_ok("CWD say \"hi\"", 250);
    assert_eq!(
        c.cmd_ok("PWD", 257),
        "\"/say \"\"hi\"\"\" is the current directory"
    );
}

#[test]
fn paths_with_spaces_utf8_and_leading_spaces() {
    let server = TestServer::start();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let names = [
        "my file.txt",
        "ünïcødé ☃ 日本語.txt",
        " leading space.txt",
        "  two leading.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        c.stor(name, format!("content {i}").as_bytes());
        assert_eq!(
            std::fs::read(server.root.join(name)).unwrap(),
            format!("content {i}").as_bytes(),
            "{name:?} on disk"
        );
        assert_eq!(c.retr(name), format!("content {i}").as_bytes());
        assert_eq!(c.cmd_ok(&format!("SIZE {name}"), 213), "9");
    }
    let nlst: BTreeSet<String> = c.list("NLST").lines().map(str::to_owned).collect();
    for name in names {
        assert!(nlst.contains(name), "NLST lacks {name:?}: {nlst:?}");
    }
    assert_eq!(
        c.cmd_ok("MKD dir with spaces ☃", 257),
        "\"/dir with spaces ☃\" created"
    );
    c.cmd_ok("CWD dir with spaces ☃", 250);
    assert_eq!(
        c.cmd_ok("PWD", 257),
        "\"/dir with spaces ☃\" is the current directory"
    );
    c.cmd_ok("CWD /", 250);
    c.cmd_ok("RNFR my file.txt", 350);
    c.cmd_ok("RNTO dir with spaces ☃/renamed ☃.txt", 250);
    assert_eq!(
        std::fs::read(server.root.join("dir with spaces ☃/renamed ☃.txt")).unwrap(),
        b"content 0"
    );
    let mlsd = c.list("MLSD dir with spaces ☃");
    assert!(mlsd.contains(" renamed ☃.txt\r\n"), "{mlsd:?}");
}

#[test]
fn rename_semantics() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"A").unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    let mut c = server.login();
    // RNTO without RNFR.
    c.cmd_ok("RNTO b.txt", 503);
    // RNFR of something missing.
    c.cmd_ok("RNFR missing.txt", 550);
    c.cmd_ok("RNTO b.txt", 503);
    // RNFR, RNTO.
    assert_eq!(c.cmd("RNFR a.txt").0, 350);
    assert_eq!(c.cmd("RNTO b.txt").0, 250);
    assert!(!server.root.join("a.txt").exists());
    assert_eq!(std::fs::read(server.root.join("b.txt")).unwrap(), b"A");
    // The RNFR is used up.
    c.cmd_ok("RNTO c.txt", 503);
    // RNFR, another command, RNTO: 503 and nothing renamed.
    c.cmd_ok("RNFR b.txt", 350);
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("RNTO c.txt", 503);
    assert!(server.root.join("b.txt").exists());
    assert!(!server.root.join("c.txt").exists());
    // A bad command in between also cancels it.
    c.cmd_ok("RNFR b.txt", 350);
    c.cmd_ok("FOO", 500);
    c.cmd_ok("RNTO c.txt", 503);
    assert!(server.root.join("b.txt").exists());
    // Directories rename too, and into a subdirectory.
    c.cmd_ok("RNFR d", 350);
    c.cmd_ok("RNTO e", 250);
    assert!(server.root.join("e").is_dir());
    c.cmd_ok("RNFR b.txt", 350);
    c.cmd_ok("RNTO e/b.txt", 250);
    assert_eq!(std::fs::read(server.root.join("e/b.txt")).unwrap(), b"A");
    // The home itself cannot be renamed.
    c.cmd_ok("RNFR /", 550);
}

// ---------------------------------------------------------------------------------------------
// Data connection set-up
// ---------------------------------------------------------------------------------------------

#[test]
fn pasv_and_epsv_reply_formats() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    let text = c.cmd_ok("PASV", 227);
    assert!(
        text.starts_with("Entering Passive Mode (127,0,0,1,"),
        "227 text: {text}"
    );
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let nums: Vec<u16> = inner.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(nums.len(), 6, "{text}");
    assert!(nums.iter().all(|&n| n <= 255));
    let port = nums[4] * 256 + nums[5];
    let data = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (code, text) = c.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    assert_eq!(read_all(data), b"abc");
    c.cmd_ok_reply(226);

    for cmd in ["EPSV", "EPSV 1", "epsv"] {
        let text = c.cmd_ok(cmd, 229);
        assert!(
            text.starts_with("Entering Extended Passive Mode (|||") && text.ends_with("|)"),
            "229 text: {text}"
        );
        let port = epsv_port(&text);
        let data = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (code, text) = c.cmd("RETR a.txt");
        assert_transfer_start(code, &text, "RETR");
        assert_eq!(read_all(data), b"abc");
        c.cmd_ok_reply(226);
    }
    // The IPv6 protocol on an IPv4 control connection.
    let text = c.cmd_ok("EPSV 2", 522);
    assert!(
        text.contains('1'),
        "522 should name the supported protocol: {text}"
    );
}

#[test]
fn epsv_all_forbids_other_data_commands() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    c.cmd_ok("EPSV ALL", 200);
    c.cmd_ok("PASV", 503);
    c.cmd_ok("PORT 127,0,0,1,200,10", 503);
    c.cmd_ok("EPRT |1|127.0.0.1|51210|", 503);
    let data = c.epsv_connect();
    let (code, text) = c.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    assert_eq!(read_all(data), b"abc");
    c.cmd_ok_reply(226);
    c.cmd_ok("PASV", 503);
}

#[test]
fn active_mode_port_and_eprt() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"active!").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);

    // PORT + RETR.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = c.cmd_ok(&format!("PORT {}", port_arg(l.local_addr().unwrap())), 200);
    assert!(!text.is_empty());
    let (code, text) = c.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer.ip(), server.addr.ip());
    assert_eq!(read_all(s), b"active!");
    c.cmd_ok_reply(226);

    // EPRT + STOR.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    c.cmd_ok(&format!("EPRT |1|127.0.0.1|{port}|"), 200);
    let (code, text) = c.cmd("STOR up.txt");
    assert_transfer_start(code, &text, "STOR");
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"uploaded actively").unwrap();
    drop(s);
    c.cmd_ok_reply(226);
    assert_eq!(
        std::fs::read(server.root.join("up.txt")).unwrap(),
        b"uploaded actively"
    );

    // EPRT with another delimiter (RFC 2428 allows any).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    c.cmd_ok(&format!("EPRT !1!127.0.0.1!{port}!"), 200);
    let (code, text) = c.cmd("LIST");
    assert_transfer_start(code, &text, "LIST");
    let (s, _) = l.accept().unwrap();
    let listing = String::from_utf8(read_all(s)).unwrap();
    assert!(listing.contains("a.txt"), "{listing}");
    c.cmd_ok_reply(226);

    // Foreign IP and privileged ports are refused.
    c.cmd_ok("PORT 127,0,0,2,200,10", 504);
    c.cmd_ok("PORT 10,1,2,3,200,10", 504);
    c.cmd_ok("PORT 127,0,0,1,0,21", 504);
    c.cmd_ok("PORT 127,0,0,1,3,255", 504);
    c.cmd_ok("EPRT |1|127.0.0.2|51210|", 504);
    c.cmd_ok("EPRT |1|127.0.0.1|80|", 504);
    c.cmd_ok("EPRT |2|::1|51210|", 504);
    // The refused PORT did not replace the data setup: nothing is set up.
    c.cmd_ok("LIST", 425);
}

#[test]
fn transfers_need_a_data_connection() {
    let server = TestServer::with(opts("[limits]\ndata_timeout_secs = 1\n"));
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    // No PASV/PORT first: 425 straight away.
    for cmd in [
        "RETR a.txt",
        "LIST",
        "NLST",
        "MLSD",
        "STOR b.txt",
        "APPE b.txt",
        "STOU",
    ] {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 425, "{cmd} -> {code} {text}");
    }
    // The data connection never comes (passive): 150 then 425 after the data timeout.
    c.cmd_ok("PASV", 227);
    let started = Instant::now();
    let (code, text) = c.cmd("RETR a.txt");
    let code = if code == 150 || code == 125 {
        c.reply().0
    } else {
        code
    };
    assert_eq!(code, 425, "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Active to a port where nobody listens: 425. The port stays bound (without listen) for
    // the whole test, so connecting to it is refused and the kernel can never hand it to the
    // server as its own source port, which would let the server's socket reach itself.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = closed.local_addr().unwrap().as_socket().unwrap().port();
    c.cmd_ok(
        &format!(
            "PORT {}",
            port_arg(SocketAddr::from(([127, 0, 0, 1], port)))
        ),
        200,
    );
    let (code, _) = c.cmd("LIST");
    let code = if code == 150 || code == 125 {
        c.reply().0
    } else {
        code
    };
    assert_eq!(code, 425);
    c.cmd_ok("NOOP", 200);
    drop(closed);
}

/// A transfer command refused with 425 (no PASV/PORT first) must not touch the disk.
#[test]
fn a_refused_upload_leaves_nothing_on_disk() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    for cmd in ["STOR b.txt", "APPE c.txt", "STOU", "STOU d.txt"] {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 425, "{cmd} -> {code} {text}");
        assert_eq!(
            files_in(&server.root),
            BTreeSet::from(["a.txt".to_string()]),
            "{cmd} refused with 425 but left a file behind"
        );
    }
}

/// REST + STOR refused with 425 (no PASV/PORT first) must not truncate the existing file.
#[test]
fn a_refused_resumed_upload_does_not_truncate_the_file() {
    let server = TestServer::start();
    let path = server.root.join("t.bin");
    std::fs::write(&path, b"0123456789").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    c.cmd_ok("REST 4", 350);
    let (code, text) = c.cmd("STOR t.bin");
    assert_eq!(code, 425, "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"0123456789",
        "REST 4 + STOR refused with 425 changed the file"
    );
}

#[test]
fn rest_stor_beyond_the_end_is_refused() {
    let server = TestServer::start();
    let path = server.root.join("t.bin");
    std::fs::write(&path, b"0123456789").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    c.cmd_ok("PASV", 227);
    c.cmd_ok("REST 11", 350);
    let (code, text) = c.cmd("STOR t.bin");
    assert!(
        (550..=554).contains(&code),
        "REST past the end + STOR -> {code} {text}"
    );
    c.cmd_ok("REST 1000000000000", 350);
    let (code, text) = c.cmd("STOR t.bin");
    assert!(
        (550..=554).contains(&code),
        "REST 1 TB + STOR -> {code} {text}"
    );
    c.cmd_ok("REST 5", 350);
    let (code, text) = c.cmd("STOR missing.bin");
    assert!(
        (550..=554).contains(&code),
        "REST + STOR of a missing file -> {code} {text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    assert!(!server.root.join("missing.bin").exists());
    assert!(std::fs::metadata(&path).unwrap().len() == 10);
}

#[test]
fn transfers_of_the_wrong_kind_of_entry() {
    let server = TestServer::start();
    std::fs::create_dir(server.root.join("d")).unwrap();
    std::fs::write(server.root.join("f"), b"x").unwrap();
    let mut c = server.login();
    for cmd in [
        "RETR d",
        "STOR d",
        "APPE d",
        "RETR /",
        "STOR /",
        "RETR missing",
        "STOR nodir/x",
    ] {
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(cmd);
        assert!((550..=553).contains(&code), "{cmd} -> {code} {text}");
    }
    c.cmd_ok("DELE d", 550);
    c.cmd_ok("RMD f", 550);
    c.cmd_ok("MKD f/sub", 550);
    assert!(server.root.join("d").is_dir());
    assert_eq!(std::fs::read(server.root.join("f")).unwrap(), b"x");
}

// ---------------------------------------------------------------------------------------------
// Listings and information
// ---------------------------------------------------------------------------------------------

#[test]
fn list_nlst_mlsd() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    std::fs::write(server.root.join("b.bin"), vec![0u8; 1234]).unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    std::fs::write(server.root.join("d/inner.txt"), b"x").unwrap();
    let mut c = server.login();

    let list = c.list("LIST");
    assert!(list.ends_with("\r\n"), "{list:?}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    let line_for = |name: &str| {
        *lines
            .iter()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no {name} in {list}"))
    };
    assert!(line_for("a.txt").starts_with('-'));
    assert!(line_for("d").starts_with('d'));
    assert!(
        line_for("b.bin").contains(" 1234 "),
        "{}",
        line_for("b.bin")
    );
    // `ls` options are ignored.
    let list_la = c.list("LIST -la");
    assert!(list_la.contains(" a.txt"), "{list_la}");

    let nlst: BTreeSet<String> = c.list("NLST").lines().map(str::to_owned).collect();
    assert_eq!(
        nlst,
        ["a.txt", "b.bin", "d"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    let nlst_d = c.list("NLST d");
    assert_eq!(nlst_d.trim_end(), "d/inner.txt");

    let mlsd = c.list("MLSD");
    let entries: BTreeMap<String, String> = mlsd
        .lines()
        .map(|l| {
            let (facts, name) = l.split_once(' ').unwrap();
            (name.to_owned(), facts.to_ascii_lowercase())
        })
        .collect();
    assert!(entries["a.txt"].contains("type=file;"), "{mlsd}");
    assert!(entries["a.txt"].contains("size=3;"), "{mlsd}");
    assert!(entries["b.bin"].contains("size=1234;"), "{mlsd}");
    assert!(entries["d"].contains("type=dir;"), "{mlsd}");
    assert!(entries["a.txt"].contains("modify="), "{mlsd}");
    let mlsd_d = c.list("MLSD d");
    assert!(
        mlsd_d.contains("type=file;") && mlsd_d.contains(" inner.txt\r\n"),
        "{mlsd_d}"
    );

    // LIST of a file lists just it.
    let one = c.list("LIST a.txt");
    assert_eq!(one.lines().count(), 1);
    assert!(one.contains("a.txt"));

    // MLSD on a file: 501 (before any 150).
    c.cmd_ok("PASV", 227);
    c.cmd_ok("MLSD a.txt", 501);
    // LIST of something missing: 550.
    c.cmd_ok("PASV", 227);
    c.cmd_ok("LIST nonexistent", 550);
}

/// A directory far bigger than one read of it (5,000 names, several `getdents` buffers and
/// listing batches): NLST, bare, of the path and through a pattern, gives every visible name
/// exactly once, and never an upload temp name, a name with a line end or one not in UTF-8.
#[test]
fn nlst_of_a_big_directory_lists_every_visible_name_once() {
    use std::os::unix::ffi::OsStrExt as _;
    let server = TestServer::start();
    let big = server.root.join("big");
    std::fs::create_dir(&big).unwrap();
    let names: Vec<String> = (0..5000).map(|i| format!("f-{i:04}")).collect();
    for name in &names {
        std::fs::write(big.join(name), b"").unwrap();
    }
    for i in 0..20 {
        let temp = format!(".ferroftp-upload.{i:032x}.part");
        std::fs::write(big.join(temp), b"partial").unwrap();
    }
    std::fs::write(big.join("f-evil\r\n227 forged"), b"").unwrap();
    std::fs::write(big.join(std::ffi::OsStr::from_bytes(b"f-latin1-\xe9")), b"").unwrap();
    let mut c = server.login();
    let listed = |text: &str, prefix: &str| -> BTreeSet<String> {
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                l.strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{l}"))
                    .to_owned()
            })
            .collect();
        let set: BTreeSet<String> = lines.iter().cloned().collect();
        assert_eq!(set.len(), lines.len(), "a name listed twice");
        set
    };
    let all: BTreeSet<String> = names.iter().cloned().collect();

    assert_eq!(listed(&c.list("NLST big"), "big/"), all);
    c.cmd_ok("CWD big", 250);
    assert_eq!(listed(&c.list("NLST"), ""), all);
    // 1,000 matches: more than are sorted, so streamed as the directory gives them.
    let ones: BTreeSet<String> = names
        .iter()
        .filter(|n| n.starts_with("f-1"))
        .cloned()
        .collect();
    assert_eq!(listed(&c.list("NLST f-1*"), ""), ones);
    // A few matches: sorted.
    let few = c.list("NLST f-4?9?");
    let few: Vec<&str> = few.lines().collect();
    let mut sorted = few.clone();
    sorted.sort_unstable();
    assert_eq!(few.len(), 100);
    assert_eq!(few, sorted);
    // LIST reads the same names (with their metadata).
    assert_eq!(c.list("LIST").lines().count(), names.len());
}

#[test]
fn mlst_facts_and_opts() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    let mut c = server.login();
    let text = c.cmd_ok("MLST a.txt", 250);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let fact_line = lines[1];
    assert!(
        fact_line.starts_with(' '),
        "fact line must start with a space: {fact_line:?}"
    );
    assert!(!fact_line.starts_with("  "));
    let (facts, name) = fact_line[1..].split_once(' ').unwrap();
    assert_eq!(name, "/a.txt");
    let facts = facts.to_ascii_lowercase();
    assert!(facts.contains("type=file;"), "{facts}");
    assert!(facts.contains("size=3;"), "{facts}");
    let modify = facts
        .split(';')
        .find_map(|f| f.strip_prefix("modify="))
        .unwrap_or_else(|| panic!("no modify fact: {facts}"));
    assert!(
        modify.len() >= 14 && modify[..14].bytes().all(|b| b.is_ascii_digit()),
        "{modify}"
    );
    assert!(facts.contains("perm="), "{facts}");

    let text = c.cmd_ok("MLST d", 250);
    assert!(text.to_ascii_lowercase().contains("type=dir;"), "{text}");
    let text = c.cmd_ok("MLST", 250);
    assert!(text.lines().nth(1).unwrap().ends_with(" /"), "{text}");
    c.cmd_ok("MLST missing", 550);

    // OPTS MLST selects facts (in canonical order in the reply).
    assert_eq!(c.cmd_ok("OPTS MLST size;type", 200), "MLST OPTS type;size;");
    let text = c.cmd_ok("MLST a.txt", 250);
    let facts = text.lines().nth(1).unwrap().to_ascii_lowercase();
    assert!(
        facts.contains("type=file;") && facts.contains("size=3;"),
        "{facts}"
    );
    assert!(
        !facts.contains("modify=") && !facts.contains("perm="),
        "{facts}"
    );
    // Unknown facts are ignored.
    assert_eq!(
        c.cmd_ok("OPTS MLST bogus;modify;", 200),
        "MLST OPTS modify;"
    );
}

/// RFC 3659 §7.9.2: after OPTS MLST, FEAT marks the facts now selected with `*`.
#[test]
fn feat_marks_the_facts_selected_by_opts_mlst() {
    let server = TestServer::start();
    let mut c = server.login();
    let feat = c.cmd_ok("FEAT", 211);
    let mlst = feat.lines().find(|l| l.starts_with(" MLST ")).unwrap();
    assert!(mlst.contains("type*;") && mlst.contains("size*;"), "{mlst}");
    assert_eq!(c.cmd_ok("OPTS MLST modify;", 200), "MLST OPTS modify;");
    let feat = c.cmd_ok("FEAT", 211);
    let mlst = feat.lines().find(|l| l.starts_with(" MLST ")).unwrap();
    assert!(
        mlst.contains("modify*;") && mlst.contains("type;") && !mlst.contains("type*"),
        "after OPTS MLST modify; FEAT should mark only modify: {mlst}"
    );
}

#[test]
fn size_mdtm_mfmt() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"line1\nline2\n").unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.cmd_ok("SIZE a.txt", 213), "12");
    c.cmd_ok("SIZE d", 550);
    c.cmd_ok("SIZE missing", 550);
    // In TYPE A, SIZE is the size on the wire (RFC 3659 §4): LF becomes CRLF.
    c.cmd_ok("TYPE A", 200);
    assert_eq!(c.cmd_ok("SIZE a.txt", 213), "14");
    c.cmd_ok("TYPE I", 200);

    let mdtm = c.cmd_ok("MDTM a.txt", 213);
    assert_eq!(mdtm.len(), 14, "{mdtm}");
    assert!(mdtm.bytes().all(|b| b.is_ascii_digit()), "{mdtm}");
    c.cmd_ok("MDTM missing", 550);

    // MFMT sets the time; MDTM and the disk agree.
    assert_eq!(
        c.cmd_ok("MFMT 20200102030405 a.txt", 213),
        "Modify=20200102030405; a.txt"
    );
    assert_eq!(c.cmd_ok("MDTM a.txt", 213), "20200102030405");
    let mtime = std::fs::metadata(server.root.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        1_577_934_245
    );
    // MLST agrees too.
    let mlst = c.cmd_ok("MLST a.txt", 250);
    assert!(mlst.contains("modify=20200102030405"), "{mlst}");
    c.cmd_ok("MFMT 20200102030405 missing", 550);
    c.cmd_ok("MFMT 20201399000000 a.txt", 501);
}

#[test]
fn feat_syst_help_stat_and_misc() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    let feat = c.cmd_ok("FEAT", 211);
    let lines: Vec<&str> = feat.lines().collect();
    assert!(lines.len() >= 3);
    assert_eq!(*lines.last().unwrap(), "211 End");
    let features: BTreeSet<&str> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| {
            assert!(
                l.starts_with(' '),
                "feature line must start with a space: {l:?}"
            );
            l.trim()
        })
        .collect();
    for f in [
        "EPRT",
        "EPSV",
        "MDTM",
        "MFMT",
        "PASV",
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
    ] {
        assert!(features.contains(f), "FEAT lacks {f}: {feat}");
    }
    assert!(
        features
            .iter()
            .any(|f| f.starts_with("MLST ") && f.contains("type")),
        "{feat}"
    );

    c.cmd_ok("OPTS UTF8 ON", 200);
    c.cmd_ok("OPTS utf8 on", 200);
    assert_eq!(c.cmd_ok("SYST", 215), "UNIX Type: L8");

    let stat = c.cmd_ok("STAT", 211);
    assert!(stat.lines().count() >= 3, "STAT must be multi-line: {stat}");
    assert!(stat.contains(&server.user), "{stat}");
    let stat = c.cmd_ok("STAT a.txt", 213);
    assert!(
        stat.lines().count() >= 3,
        "STAT path must be multi-line: {stat}"
    );
    assert!(stat.contains(" a.txt"), "{stat}");
    let stat = c.cmd_ok("STAT /", 213);
    assert!(stat.contains(" a.txt"), "{stat}");
    c.cmd_ok("STAT missing", 550);

    let help = c.cmd_ok("HELP", 214);
    assert!(help.lines().count() >= 3, "{help}");
    assert!(help.contains("RETR") && help.contains("EPSV"), "{help}");
    c.cmd_ok("HELP RETR", 214);
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("ALLO 1000", 202);
    c.cmd_ok("ALLO", 202);
    c.cmd_ok("ACCT whatever", 202);
    let site = c.cmd_ok("SITE HELP", 214);
    assert!(site.contains("CHMOD"), "{site}");
    // Security commands before AUTH TLS (the TLS suites test AUTH itself).
    c.cmd_ok("AUTH KERBEROS_V4", 504);
    c.cmd_ok("PBSZ 0", 503);
    c.cmd_ok("PROT P", 503);
    c.cmd_ok("PROT C", 503);
    c.cmd_ok("CCC", 533);
    c.cmd_ok("ABOR", 225);
    let rest = c.cmd_ok("REST 100", 350);
    assert!(rest.contains("100"), "{rest}");
    c.cmd_ok("REST 0", 350);
}

#[test]
fn site_chmod_changes_the_mode() {
    let server = TestServer::start();
    let path = server.root.join("f.txt");
    std::fs::write(&path, b"abc").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = server.login();
    c.cmd_ok("SITE CHMOD 600 f.txt", 200);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    c.cmd_ok("site chmod 0640 f.txt", 200);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    c.cmd_ok("SITE CHMOD 644 missing", 550);
    c.cmd_ok("SITE CHMOD 644", 501);
}

// ---------------------------------------------------------------------------------------------
// Transfers and their effect on disk
// ---------------------------------------------------------------------------------------------

#[test]
fn rest_then_retr_resumes() {
    let server = TestServer::start();
    let content = pseudo_random(100_000, 7);
    std::fs::write(server.root.join("r.bin"), &content).unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    c.cmd_ok("REST 40000", 350);
    assert_eq!(c.retr("r.bin"), &content[40_000..]);
    // The offset is used once.
    assert_eq!(c.retr("r.bin"), content);
    // REST at the end: nothing.
    c.cmd_ok("REST 100000", 350);
    assert_eq!(c.retr("r.bin"), b"");
    // REST beyond the end is refused (and not stuck).
    c.cmd_ok("PASV", 227);
    c.cmd_ok("REST 100001", 350);
    let (code, text) = c.cmd("RETR r.bin");
    assert!(
        (500..600).contains(&code),
        "REST past the end -> {code} {text}"
    );
    assert_eq!(c.retr("r.bin"), content);
}

#[test]
fn rest_stor_and_appe() {
    let server = TestServer::start();
    let path = server.root.join("f.bin");
    std::fs::write(&path, b"0123456789").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    // REST + STOR writes from the offset.
    c.cmd_ok("REST 4", 350);
    c.stor("f.bin", b"XY");
    assert_eq!(std::fs::read(&path).unwrap(), b"0123XY");
    // APPE appends.
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("APPE f.bin");
    assert_transfer_start(code, &text, "APPE");
    data.write_all(b"-appended").unwrap();
    drop(data);
    c.cmd_ok_reply(226);
    assert_eq!(std::fs::read(&path).unwrap(), b"0123XY-appended");
    // APPE to a new file creates it.
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("APPE new.bin");
    assert_transfer_start(code, &text, "APPE");
    data.write_all(b"fresh").unwrap();
    drop(data);
    c.cmd_ok_reply(226);
    assert_eq!(
        std::fs::read(server.root.join("new.bin")).unwrap(),
        b"fresh"
    );
    // A plain STOR replaces.
    c.stor("f.bin", b"replaced");
    assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
    // A resumed large upload in two halves.
    let content = pseudo_random(300_000, 3);
    c.stor("big.bin", &content[..123_456]);
    c.cmd_ok("REST 123456", 350);
    c.stor("big.bin", &content[123_456..]);
    assert_eq!(std::fs::read(server.root.join("big.bin")).unwrap(), content);
}

#[test]
fn stou_creates_a_new_file() {
    let server = TestServer::start();
    std::fs::write(server.root.join("x.txt"), b"original").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let before = files_in(&server.root);
    for (arg, body) in [("STOU", &b"one"[..]), ("STOU x.txt", &b"two"[..])] {
        let mut data = c.pasv_connect();
        let (code, text) = c.cmd(arg);
        assert_transfer_start(code, &text, arg);
        let name = text
            .split("FILE: ")
            .nth(1)
            .unwrap_or_else(|| panic!("150 for STOU must name the file (FILE: name): {text}"))
            .trim()
            .to_owned();
        data.write_all(body).unwrap();
        drop(data);
        c.cmd_ok_reply(226);
        assert_ne!(name, "x.txt");
        assert_eq!(
            std::fs::read(server.root.join(&name)).unwrap(),
            body,
            "{name}"
        );
    }
    assert_eq!(files_in(&server.root).len(), before.len() + 2);
    assert_eq!(
        std::fs::read(server.root.join("x.txt")).unwrap(),
        b"original"
    );
}

#[test]
fn type_a_converts_line_ends_both_ways() {
    let server = TestServer::start();
    std::fs::write(server.root.join("unix.txt"), b"one\ntwo\n\nthree").unwrap();
    let mut c = server.login();
    // The default type is ASCII (RFC 959); set it explicitly anyway.
    c.cmd_ok("TYPE A", 200);
    assert_eq!(c.retr("unix.txt"), b"one\r\ntwo\r\n\r\nthree");
    c.stor("up.txt", b"alpha\r\nbeta\r\n");
    assert_eq!(
        std::fs::read(server.root.join("up.txt")).unwrap(),
        b"alpha\nbeta\n"
    );
    // TYPE I leaves bytes alone both ways.
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.retr("unix.txt"), b"one\ntwo\n\nthree");
    c.stor("raw.txt", b"alpha\r\nbeta\r\n");
    assert_eq!(
        std::fs::read(server.root.join("raw.txt")).unwrap(),
        b"alpha\r\nbeta\r\n"
    );
}

#[test]
fn internal_upload_names_are_refused_and_hidden() {
    let server = TestServer::start();
    let hidden = ".ferroftp-upload.0123456789abcdef0123456789abcdef.part";
    std::fs::write(server.root.join(hidden), b"secret partial").unwrap();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    for cmd in [
        format!("RETR {hidden}"),
        format!("SIZE {hidden}"),
        format!("DELE {hidden}"),
        format!("RNFR {hidden}"),
        "MKD .ferroftp-upload.x.part".to_string(),
        "RNFR a.txt".to_string(),
    ] {
        let (code, text) = c.cmd(&cmd);
        if cmd == "RNFR a.txt" {
            assert_eq!(code, 350);
            let (code, text) = c.cmd("RNTO .ferroftp-upload.y.part");
            assert_eq!(code, 553, "RNTO to an internal name -> {code} {text}");
        } else {
            assert_eq!(code, 553, "{cmd} -> {code} {text}");
        }
    }
    c.cmd_ok("PASV", 227);
    c.cmd_ok("STOR .ferroftp-upload.z.part", 553);
    let nlst = c.list("NLST");
    assert!(!nlst.contains(".ferroftp-upload"), "{nlst}");
    let list = c.list("LIST");
    assert!(!list.contains(".ferroftp-upload"), "{list}");
    assert_eq!(
        std::fs::read(server.root.join(hidden)).unwrap(),
        b"secret partial"
    );
    assert!(server.root.join("a.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// Pipelining and commands during transfers
// ---------------------------------------------------------------------------------------------

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.connect();
    c.send_raw(
        format!(
            "USER {}\r\nPASS {}\r\nNOOP\r\nPWD\r\nSYST\r\nTYPE I\r\nFOO\r\nSIZE a.txt\r\nMKD p\r\nCWD p\r\nPWD\r\nFEAT\r\nNOOP\r\n",
            server.user, server.password
        )
        .as_bytes(),
    );
    let expected = [
        331, 230, 200, 257, 215, 200, 500, 213, 257, 250, 257, 211, 200,
    ];
    for (i, code) in expected.iter().enumerate() {
        let (got, text) = c.reply();
        assert_eq!(got, *code, "reply {i}: {text}");
    }
    // Bare LF line ends are accepted too.
    c.send_raw(b"NOOP\nPWD\n");
    assert_eq!(c.reply().0, 200);
    assert_eq!(c.reply(), (257, "\"/p\" is the current directory".into()));
    // A pipelined transfer: PASV, RETR, NOOP in one write.
    c.send_raw(b"PASV\r\n");
    let text = c.cmd_ok_reply(227);
    let data = TcpStream::connect(ferroftp_proto::addr::parse_pasv_reply(&text).unwrap()).unwrap();
    c.send_raw(b"RETR /a.txt\r\nNOOP\r\nPWD\r\n");
    let (code, text) = c.reply();
    assert_transfer_start(code, &text, "RETR");
    assert_eq!(read_all(data), b"abc");
    assert_eq!(c.reply().0, 226);
    assert_eq!(c.reply().0, 200);
    assert_eq!(c.reply().0, 257);
}

#[test]
fn commands_during_a_transfer_are_answered_after_it() {
    let server = TestServer::start();
    make_big(&server.root.join("big.bin"));
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    let mut head = vec![0u8; 64 * 1024];
    data.read_exact(&mut head).unwrap();
    // The transfer is stuck on our unread data socket: NOOP and PWD must wait.
    c.send_raw(b"NOOP\r\nPWD\r\n");
    assert_silent(&mut c, Duration::from_millis(500));
    let rest = drain(data);
    assert_eq!((rest + head.len()) as u64, BIG);
    assert_eq!(c.reply().0, 226);
    assert_eq!(c.reply().0, 200);
    assert_eq!(c.reply().0, 257);
}

#[test]
fn stat_and_abor_during_a_download() {
    let server = TestServer::start();
    make_big(&server.root.join("big.bin"));
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    let mut head = vec![0u8; 64 * 1024];
    data.read_exact(&mut head).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stat = c.cmd_ok("STAT", 213);
    assert!(stat.contains(&BIG.to_string()), "STAT mid-transfer: {stat}");
    let moved: u64 = stat
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .find(|&n| n > 0 && n < BIG)
        .unwrap_or_else(|| panic!("no byte count in {stat}"));
    assert!(moved >= head.len() as u64, "{stat}");
    // ABOR: 426 then 226, and the data stops.
    c.send_raw(b"ABOR\r\n");
    let (code, text) = c.reply();
    assert_eq!(code, 426, "{text}");
    let (code, text) = c.reply();
    assert_eq!(code, 226, "{text}");
    let got = drain(data) + head.len();
    assert!((got as u64) < BIG, "the transfer did not stop");
    // The session goes on.
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("ABOR", 225);
    assert_eq!(c.retr("big.bin").len() as u64, BIG);
}

#[test]
fn telnet_style_abor_during_a_download() {
    let server = TestServer::start();
    make_big(&server.root.join("big.bin"));
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    let mut head = vec![0u8; 1024];
    data.read_exact(&mut head).unwrap();
    // What ftp(1) sends: IAC IP, IAC DM, ABOR.
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n");
    assert_eq!(c.reply().0, 426);
    assert_eq!(c.reply().0, 226);
    assert!((drain(data) as u64) < BIG);
    c.cmd_ok("NOOP", 200);
}

#[test]
fn abor_during_an_upload_discards_it() {
    let server = TestServer::start();
    std::fs::write(server.root.join("keep.bin"), b"keep me").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for target in ["new.bin", "keep.bin"] {
        let mut data = c.pasv_connect();
        let (code, text) = c.cmd(&format!("STOR {target}"));
        assert_transfer_start(code, &text, "STOR");
        data.write_all(&pseudo_random(200_000, 9)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let stat = c.cmd_ok("STAT", 213);
        assert!(stat.contains("STOR"), "{stat}");
        c.send_raw(b"ABOR\r\n");
        assert_eq!(c.reply().0, 426);
        assert_eq!(c.reply().0, 226);
        drop(data);
        c.cmd_ok("NOOP", 200);
    }
    assert_eq!(
        files_in(&server.root),
        BTreeSet::from(["keep.bin".to_string()])
    );
    assert_eq!(
        std::fs::read(server.root.join("keep.bin")).unwrap(),
        b"keep me"
    );
}

#[test]
fn quit_during_a_transfer_waits_for_it() {
    let server = TestServer::start();
    make_big(&server.root.join("big.bin"));
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let data = c.pasv_connect();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    c.send_raw(b"QUIT\r\n");
    assert_silent(&mut c, Duration::from_millis(300));
    assert_eq!(drain(data) as u64, BIG, "QUIT cut the transfer short");
    assert_eq!(c.reply().0, 226);
    assert_eq!(c.reply().0, 221);
    assert!(c.is_closed());
}

#[test]
fn many_commands_queued_during_a_transfer_are_all_answered() {
    let server = TestServer::start();
    make_big(&server.root.join("big.bin"));
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    let mut head = vec![0u8; 1024];
    data.read_exact(&mut head).unwrap();
    // More lines than the server queues: it stops reading (back-pressure), loses none.
    let mut burst = String::new();
    for i in 0..60 {
        burst.push_str(if i % 2 == 0 { "NOOP\r\n" } else { "PWD\r\n" });
    }
    c.send_raw(burst.as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!((drain(data) + head.len()) as u64, BIG);
    assert_eq!(c.reply().0, 226);
    for i in 0..60 {
        let (code, text) = c.reply();
        assert_eq!(
            code,
            if i % 2 == 0 { 200 } else { 257 },
            "queued reply {i}: {text}"
        );
    }
    c.cmd_ok("NOOP", 200);
}

#[test]
fn abor_and_stat_while_waiting_for_the_data_connection() {
    let server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    c.cmd_ok("PASV", 227);
    let (code, text) = c.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    let stat = c.cmd_ok("STAT", 213);
    assert!(stat.contains("RETR"), "{stat}");
    c.send_raw(b"ABOR\r\n");
    assert_eq!(c.reply().0, 426);
    assert_eq!(c.reply().0, 226);
    assert_eq!(c.retr("a.txt"), b"abc");
}

// ---------------------------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv6_epsv_and_eprt() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        eprintln!("SKIPPED ipv6_epsv_and_eprt: cannot bind [::1]: {e}");
        return;
    }
    let server = TestServer::with(Options {
        listen: Some("[::1]:0".into()),
        ..Default::default()
    });
    assert!(server.addr.is_ipv6());
    std::fs::write(server.root.join("a.txt"), b"over ipv6").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    // EPSV and EPSV 2.
    for cmd in ["EPSV", "EPSV 2"] {
        let text = c.cmd_ok(cmd, 229);
        let port = epsv_port(&text);
        let data = TcpStream::connect(("::1", port)).unwrap();
        let (code, text) = c.cmd("RETR a.txt");
        assert_transfer_start(code, &text, "RETR");
        assert_eq!(read_all(data), b"over ipv6");
        c.cmd_ok_reply(226);
    }
    c.cmd_ok("EPSV 1", 522);
    // PASV cannot express an IPv6 address.
    let (code, text) = c.cmd("PASV");
    assert_ne!(code, 227, "PASV on IPv6 announced {text}");
    // EPRT |2|::1|port|.
    let l = TcpListener::bind("[::1]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    c.cmd_ok(&format!("EPRT |2|::1|{port}|"), 200);
    let (code, text) = c.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    let (s, peer) = l.accept().unwrap();
    assert!(peer.is_ipv6());
    assert_eq!(read_all(s), b"over ipv6");
    c.cmd_ok_reply(226);
    // An IPv4 target from an IPv6 client is a foreign address.
    c.cmd_ok("EPRT |1|127.0.0.1|51210|", 504);
    c.cmd_ok("EPRT |2|::1|80|", 504);
    c.cmd_ok("PORT 127,0,0,1,200,10", 504);
}

// ---------------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------------

fn assert_read_only_session(c: &mut Ctrl, root: &Path) {
    let before = snapshot(root);
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.retr("f.txt"), b"readable");
    assert!(c.list("LIST").contains("f.txt"));
    c.cmd_ok("CWD d", 250);
    c.cmd_ok("CWD /", 250);
    for cmd in [
        "STOR f.txt",
        "STOR new.txt",
        "APPE f.txt",
        "STOU",
        "DELE f.txt",
        "MKD newdir",
        "XMKD newdir",
        "RMD d",
        "XRMD d",
        "RNFR f.txt",
        "SITE CHMOD 777 f.txt",
        "MFMT 20000101000000 f.txt",
    ] {
        // Both without and with a data connection set up.
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 550, "{cmd} -> {code} {text}");
        assert!(
            text.to_ascii_lowercase().contains("permission denied"),
            "{cmd}: the refusal should say why: {text}"
        );
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 550, "{cmd} (after PASV) -> {code} {text}");
    }
    c.cmd_ok("REST 3", 350);
    c.cmd_ok("PASV", 227);
    c.cmd_ok("STOR f.txt", 550);
    c.cmd_ok("RNTO x.txt", 503);
    assert_eq!(snapshot(root), before, "a read-only user changed the disk");
}

#[test]
fn a_read_only_user_cannot_change_anything() {
    let server = TestServer::with(Options {
        users: vec![(
            "reader".into(),
            "reader-pw".into(),
            "permissions = [\"list\", \"read\"]".into(),
        )],
        ..Default::default()
    });
    std::fs::write(server.root.join("f.txt"), b"readable").unwrap();
    std::fs::create_dir(server.root.join("d")).unwrap();
    let mut c = server.login();
    assert_read_only_session(&mut c, &server.root);
    // The MLST perm fact shows it.
    let mlst = c.cmd_ok("MLST f.txt", 250);
    let perm = mlst
        .split(';')
        .find_map(|f| f.trim().strip_prefix("perm="))
        .unwrap_or_else(|| panic!("{mlst}"));
    assert!(
        perm.contains('r') && !perm.contains('w') && !perm.contains('d'),
        "{mlst}"
    );
}

#[test]
fn anonymous_is_read_only_and_off_by_default() {
    let server = TestServer::start();
    let mut c = server.connect();
    c.cmd_ok("USER anonymous", 331);
    c.cmd_ok("PASS guest@example.com", 530);

    let server = TestServer::with(Options {
        args: vec!["--anonymous".into()],
        ..Default::default()
    });
    // Anonymous users get ROOT/pub, made at start.
    let public = server.root.join("pub");
    std::fs::write(public.join("f.txt"), b"readable").unwrap();
    std::fs::create_dir(public.join("d")).unwrap();
    for name in ["anonymous", "ftp", "ANONYMOUS"] {
        let mut c = server.connect();
        c.cmd_ok(&format!("USER {name}"), 331);
        c.cmd_ok("PASS guest@example.com", 230);
        assert_read_only_session(&mut c, &public);
    }
    // The real user still has full rights.
    let mut c = server.login();
    c.stor("w.txt", b"w");
    assert!(server.root.join("w.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// Passive port range
// ---------------------------------------------------------------------------------------------

#[test]
fn passive_ports_come_from_the_range_and_recycle() {
    let low = free_port_range(4);
    let high = low + 3;
    let held_port = low + 1;
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, held_port)).unwrap();
    let server = TestServer::with(opts(&format!("[passive]\nports = \"{low}-{high}\"\n")));
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    let mut seen = BTreeSet::new();
    // Many PASV in a row (each replaces the last): always 227, never the held port.
    for i in 0..40 {
        let (code, text) = c.cmd(if i % 2 == 0 { "PASV" } else { "EPSV" });
        assert!(code == 227 || code == 229, "PASV #{i}: {code} {text}");
        let port = if code == 227 {
            pasv_port(&text)
        } else {
            epsv_port(&text)
        };
        assert!(
            (low..=high).contains(&port),
            "port {port} outside {low}-{high}"
        );
        assert_ne!(
            port, held_port,
            "the port held by another process was handed out"
        );
        seen.insert(port);
    }
    assert_eq!(seen.len(), 3, "ports used: {seen:?}");
    // With transfers: the ports are released after use.
    for i in 0..30 {
        let data = c.pasv_connect();
        let port = data.peer_addr().unwrap().port();
        assert!((low..=high).contains(&port) && port != held_port);
        let (code, text) = c.cmd("RETR a.txt");
        assert_transfer_start(code, &text, &format!("RETR #{i}"));
        assert_eq!(read_all(data), b"abc");
        c.cmd_ok_reply(226);
    }
    drop(held);
}

#[test]
fn a_one_port_range_is_reused_at_once_under_many_transfers() {
    // Every download leaves the port's finished connection in TIME_WAIT on the server's side
    // (the server closes first); the next PASV must still get the same port, at once.
    let low = free_port_range(1);
    let server = TestServer::with(opts(&format!("[passive]\nports = \"{low}-{low}\"\n")));
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(server.root.join("a.bin"), &body).unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for i in 0..40 {
        if i % 2 == 0 {
            assert_eq!(c.retr("a.bin"), body, "RETR #{i}");
        } else {
            c.stor(&format!("up{i}.bin"), &body[..i]);
            assert_eq!(
                std::fs::read(server.root.join(format!("up{i}.bin"))).unwrap(),
                &body[..i]
            );
        }
    }
    let port = pasv_port(&c.cmd_ok("PASV", 227));
    assert_eq!(port, low);
}

#[test]
fn passive_ports_are_released_on_disconnect_and_exhaustion_is_425() {
    let low = free_port_range(3);
    let high = low + 2;
    let server = TestServer::with(opts(&format!("[passive]\nports = \"{low}-{high}\"\n")));
    let mut sessions: Vec<Ctrl> = (0..3).map(|_| server.login()).collect();
    let mut ports = BTreeSet::new();
    for s in &mut sessions {
        ports.insert(pasv_port(&s.cmd_ok("PASV", 227)));
    }
    assert_eq!(ports, (low..=high).collect());
    // All three are held: a fourth session gets 425.
    let mut d = server.login();
    let (code, text) = d.cmd("PASV");
    assert_eq!(code, 425, "{text}");
    // A session that disconnects gives its port back.
    let mut first = sessions.remove(0);
    first.cmd_ok("QUIT", 221);
    assert!(first.is_closed());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, text) = d.cmd("PASV");
        if code == 227 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "port not released after QUIT: {code} {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Same for a session that just vanishes.
    drop(sessions.remove(0));
    let mut e = server.login();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, text) = e.cmd("PASV");
        if code == 227 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "port not released after a vanished client: {code} {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unused_passive_port_is_released_after_the_data_timeout() {
    let low = free_port_range(1);
    let server = TestServer::with(opts(&format!(
        "[passive]\nports = \"{low}-{low}\"\n[limits]\ndata_timeout_secs = 1\n"
    )));
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut a = server.login();
    let mut b = server.login();
    assert_eq!(pasv_port(&a.cmd_ok("PASV", 227)), low);
    b.cmd_ok("PASV", 425);
    std::thread::sleep(Duration::from_millis(1800));
    let text = b.cmd_ok("PASV", 227);
    assert_eq!(pasv_port(&text), low);
    // a's offer is gone: its transfer cannot use it.
    let (code, _) = a.cmd("RETR a.txt");
    let code = if code == 150 || code == 125 {
        a.reply().0
    } else {
        code
    };
    assert_eq!(code, 425);
    // b's works, repeatedly on the single port.
    let data = TcpStream::connect((Ipv4Addr::LOCALHOST, low)).unwrap();
    let (code, text) = b.cmd("RETR a.txt");
    assert_transfer_start(code, &text, "RETR");
    assert_eq!(read_all(data), b"abc");
    b.cmd_ok_reply(226);
    for _ in 0..10 {
        assert_eq!(b.retr("a.txt"), b"abc");
    }
}
