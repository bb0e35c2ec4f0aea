//! Hostile input against the real binary: path escapes, FTP bounce, data theft, oversized and
//! garbage lines, vanishing clients, timeouts and resource limits. After each, the server must
//! still serve a fresh client end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Ctrl, Options, TestServer, assert_transfer_start, connect_from, files_in, first_line,
    free_port_range, opts, pseudo_random, read_all, reset, temp_files, wait_for,
};

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

/// The server process's pid, found by its config path on the command line.
fn server_pid(server: &TestServer) -> Option<u32> {
    let needle = server.dir.path().join("ferroftp.toml");
    let needle = needle.to_str().unwrap().as_bytes();
    for e in std::fs::read_dir("/proc").ok()? {
        let e = e.ok()?;
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if cmd.windows(needle.len()).any(|w| w == needle) {
                return Some(pid);
            }
        }
    }
    None
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A server whose root has `pub.txt`, with a sibling directory `outside/` (next to the root,
/// not under it) holding `secret.txt`.
fn server_with_outside(o: Options) -> TestServer {
    let server = TestServer::with(o);
    std::fs::write(server.root.join("pub.txt"), b"public").unwrap();
    let outside = server.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"TOP SECRET").unwrap();
    std::fs::write(server.dir.path().join("secret.txt"), b"TOP SECRET").unwrap();
    server
}

// ---------------------------------------------------------------------------------------------
// Path escapes
// ---------------------------------------------------------------------------------------------

#[test]
fn dot_dot_absolute_and_encoded_paths_stay_in_the_home() {
    let mut server = server_with_outside(Options::default());
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for arg in [
        "..",
        "../..",
        "/../..",
        "../../../../../../..",
        "/..",
        "./../.",
        "..//..//",
    ] {
        let (code, text) = c.cmd(&format!("CWD {arg}"));
        assert!(code == 250 || code == 550, "CWD {arg} -> {code} {text}");
        assert_eq!(
            c.cmd_ok("PWD", 257),
            "\"/\" is the current directory",
            "after CWD {arg}"
        );
    }
    c.cmd_ok("CDUP", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
    for arg in [
        "../secret.txt",
        "../outside/secret.txt",
        "../../../../../../../etc/passwd",
        "/etc/passwd",
        "/../secret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2fsecret.txt",
        "..%2fsecret.txt",
        "..\\secret.txt",
        "..\\..\\etc\\passwd",
        "pub.txt/../../secret.txt",
    ] {
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(&format!("RETR {arg}"));
        assert_eq!(code, 550, "RETR {arg} -> {code} {text}");
        assert!(
            !text.contains(server.dir.path().to_str().unwrap()),
            "host path leaked: {text}"
        );
        let (code, text) = c.cmd(&format!("SIZE {arg}"));
        assert_eq!(code, 550, "SIZE {arg} -> {code} {text}");
        let (code, text) = c.cmd(&format!("MDTM {arg}"));
        assert_eq!(code, 550, "MDTM {arg} -> {code} {text}");
    }
    // `..` from a subdirectory climbs to the home, never past it.
    c.cmd_ok("MKD sub", 257);
    c.cmd_ok("CWD sub", 250);
    assert_eq!(c.retr("../pub.txt"), b"public");
    assert_eq!(c.retr("../../../pub.txt"), b"public");
    c.cmd_ok("CWD /", 250);
    // Listing `..` lists the home.
    let nlst: BTreeSet<String> = c.list("NLST ..").lines().map(str::to_owned).collect();
    assert!(
        !nlst
            .iter()
            .any(|n| n.contains("secret") || n.contains("outside")),
        "{nlst:?}"
    );
    let list = c.list("LIST ../..");
    assert!(
        !list.contains("secret") && !list.contains("outside"),
        "{list}"
    );
    // Writes through `..` land inside the home (or are refused), never outside.
    c.stor("../escaped.txt", b"x");
    c.cmd_ok("MKD ../../escaped-dir", 257);
    assert!(!server.dir.path().join("escaped.txt").exists());
    assert!(!server.dir.path().join("escaped-dir").exists());
    assert!(server.root.join("escaped.txt").exists());
    assert!(server.root.join("escaped-dir").is_dir());
    c.cmd_ok("DELE ../secret.txt", 550);
    c.cmd_ok("RNFR ../secret.txt", 550);
    c.cmd_ok("RNFR pub.txt", 350);
    c.cmd_ok("RNTO ../../stolen.txt", 250);
    assert!(!server.dir.path().join("stolen.txt").exists());
    assert!(server.root.join("stolen.txt").exists());
    // `%2e%2e` is a literal name.
    c.cmd_ok("MKD %2e%2e", 257);
    assert!(server.root.join("%2e%2e").is_dir());
    c.cmd_ok("CWD %2e%2e", 250);
    assert_eq!(c.cmd_ok("PWD", 257), "\"/%2e%2e\" is the current directory");
    c.cmd_ok("CWD /", 250);
    assert_eq!(
        std::fs::read(server.dir.path().join("secret.txt")).unwrap(),
        b"TOP SECRET"
    );
    server.assert_still_serving();
}

#[test]
fn symlinks_leading_outside_are_not_followed() {
    let mut server = server_with_outside(Options::default());
    let outside = server.dir.path().join("outside");
    std::os::unix::fs::symlink("/etc", server.root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../outside", server.root.join("sib")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), server.root.join("abs-secret")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", server.root.join("rel-secret")).unwrap();
    // Dangling links whose targets would be created outside.
    std::os::unix::fs::symlink(
        "../outside/created-rel.txt",
        server.root.join("dangling-rel"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.join("created-abs.txt"),
        server.root.join("dangling-abs"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../outside/newdir-rel", server.root.join("dangling-dir")).unwrap();
    // A link that stays inside the home works.
    std::os::unix::fs::symlink("pub.txt", server.root.join("inside-link")).unwrap();
    let secret_mode = std::fs::metadata(outside.join("secret.txt"))
        .unwrap()
        .mode();
    let secret_mtime = std::fs::metadata(outside.join("secret.txt"))
        .unwrap()
        .mtime();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.retr("inside-link"), b"public");

    for arg in [
        "etc/passwd",
        "/etc/passwd",
        "etc/hostname",
        "sib/secret.txt",
        "/sib/secret.txt",
        "abs-secret",
        "rel-secret",
    ] {
        // (/etc/passwd here means home/etc/passwd, through the link.)
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(&format!("RETR {arg}"));
        assert_eq!(code, 550, "RETR {arg} -> {code} {text}");
        for cmd in ["SIZE", "MDTM", "MLST"] {
            let (code, text) = c.cmd(&format!("{cmd} {arg}"));
            assert_eq!(code, 550, "{cmd} {arg} -> {code} {text}");
        }
    }
    for dir in ["etc", "sib", "/etc", "sib/"] {
        let (code, text) = c.cmd(&format!("CWD {dir}"));
        assert_eq!(code, 550, "CWD {dir} -> {code} {text}");
        assert_eq!(c.cmd_ok("PWD", 257), "\"/\" is the current directory");
        // Listing through the link: refused, or at least nothing from outside.
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(&format!("NLST {dir}"));
        if code == 150 || code == 125 {
            panic!("NLST {dir} was allowed through a link leading outside: {text}");
        }
        assert_eq!(code, 550, "NLST {dir} -> {code} {text}");
        let (code, text) = c.cmd(&format!("STAT {dir}"));
        assert!(
            code == 550 || !(text.contains("passwd") || text.contains("secret")),
            "STAT {dir} -> {code} {text}"
        );
    }
    // The root listing shows the links, without following them.
    let list = c.list("LIST");
    assert!(
        !list.contains("passwd") && !list.contains("TOP SECRET"),
        "{list}"
    );

    // Writes through the links are refused and nothing appears outside.
    for cmd in ["MKD sib/newdir", "MKD etc/ftp-was-here", "XMKD sib/a"] {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 550, "{cmd} -> {code} {text}");
    }
    assert!(!outside.join("newdir").exists());
    assert!(!outside.join("a").exists());
    assert!(!Path::new("/etc/ftp-was-here").exists());
    for target in [
        "sib/new.txt",
        "sib/secret.txt",
        "abs-secret/x",
        "etc/ftp-was-here.txt",
    ] {
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(&format!("STOR {target}"));
        assert!(
            code != 150 && code != 125,
            "STOR {target} was allowed through a link: {code} {text}"
        );
        assert!((500..600).contains(&code), "STOR {target} -> {code} {text}");
    }
    c.cmd_ok("PASV", 227);
    let (code, text) = c.cmd("APPE sib/secret.txt");
    assert!(
        (500..600).contains(&code),
        "APPE through a link -> {code} {text}"
    );
    for cmd in [
        "DELE sib/secret.txt",
        "RNFR sib/secret.txt",
        "SITE CHMOD 777 sib/secret.txt",
        "SITE CHMOD 777 abs-secret",
        "MFMT 20000101000000 sib/secret.txt",
        "MFMT 20000101000000 rel-secret",
    ] {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 550, "{cmd} -> {code} {text}");
    }
    // Uploads to dangling links leading outside: never create the outside target.
    for target in ["dangling-rel", "dangling-abs"] {
        c.cmd_ok("PASV", 227);
        let (code, text) = c.cmd(&format!("APPE {target}"));
        assert!(
            code != 150 && code != 125,
            "APPE {target} (dangling link leading outside) was allowed: {code} {text}"
        );
        let data = c.pasv_connect();
        let (code, _) = c.cmd(&format!("STOR {target}"));
        if code == 150 || code == 125 {
            // Allowed only if the link itself is replaced by a file in the home.
            let mut data = data;
            data.write_all(b"data").unwrap();
            drop(data);
            c.cmd_ok_reply(226);
            let md = std::fs::symlink_metadata(server.root.join(target)).unwrap();
            assert!(md.is_file(), "STOR {target} wrote through the link");
        }
    }
    c.cmd_ok("MKD dangling-dir", 550);
    assert!(!outside.join("created-rel.txt").exists());
    assert!(!outside.join("created-abs.txt").exists());
    assert!(!outside.join("newdir-rel").exists());
    c.cmd_ok("RNFR pub.txt", 350);
    let (code, text) = c.cmd("RNTO sib/stolen.txt");
    assert_eq!(code, 550, "RNTO through a link -> {code} {text}");
    assert!(server.root.join("pub.txt").exists());
    assert!(!outside.join("stolen.txt").exists());
    assert!(!outside.join("new.txt").exists());
    // The outside file is untouched.
    let md = std::fs::metadata(outside.join("secret.txt")).unwrap();
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"TOP SECRET"
    );
    assert_eq!(md.mode(), secret_mode);
    assert_eq!(md.mtime(), secret_mtime);
    assert_eq!(
        files_in(&outside),
        BTreeSet::from(["secret.txt".to_string()])
    );
    server.assert_still_serving();
}

#[test]
fn links_created_or_swapped_in_after_login_do_not_escape() {
    // A link created on disk after login (the session's view is not a stale snapshot).
    let mut server = server_with_outside(Options::default());
    let mut c = server.login();
    c.cmd_ok("MKD d", 257);
    c.cmd_ok("CWD d", 250);
    std::os::unix::fs::symlink("../../outside", server.root.join("d/up")).unwrap();
    c.cmd_ok("CWD up", 550);
    c.cmd_ok("PASV", 227);
    c.cmd_ok("RETR up/secret.txt", 550);
    // Swap the directory we are in for a link pointing outside.
    std::fs::rename(server.root.join("d"), server.root.join("d-old")).unwrap();
    std::os::unix::fs::symlink(server.dir.path().join("outside"), server.root.join("d")).unwrap();
    c.cmd_ok("PASV", 227);
    let (code, text) = c.cmd("RETR secret.txt");
    assert_eq!(
        code, 550,
        "RETR in a cwd swapped for an escaping link -> {code} {text}"
    );
    c.cmd_ok("PASV", 227);
    let (code, text) = c.cmd("LIST");
    assert!(
        code != 150 && code != 125,
        "LIST of a swapped cwd: {code} {text}"
    );
    server.assert_still_serving();
}

#[test]
fn nul_bytes_and_overlong_paths_are_refused() {
    let mut server = TestServer::start();
    let mut c = server.login();
    c.send_raw(b"MKD a\0b\r\n");
    let (code, text) = c.reply();
    assert!(
        code == 553 || code == 501 || code == 550,
        "MKD with NUL -> {code} {text}"
    );
    c.send_raw(b"CWD \0\r\n");
    let (code, text) = c.reply();
    assert!((500..600).contains(&code), "CWD NUL -> {code} {text}");
    assert!(
        files_in(&server.root).is_empty(),
        "{:?}",
        files_in(&server.root)
    );
    // Long names and deep paths.
    let long = "n".repeat(300);
    let (code, text) = c.cmd(&format!("MKD {long}"));
    assert!(
        (500..600).contains(&code),
        "MKD 300-byte name -> {code} {text}"
    );
    let deep = vec!["d"; 1000].join("/");
    let (code, text) = c.cmd(&format!("MKD {deep}"));
    assert!((500..600).contains(&code), "MKD 1000 deep -> {code} {text}");
    let (code, text) = c.cmd(&format!("CWD {}", "a/".repeat(1500)));
    assert!(
        (500..600).contains(&code),
        "CWD 3000 bytes -> {code} {text}"
    );
    c.cmd_ok("NOOP", 200);
    server.assert_still_serving();
}

#[test]
fn special_files_and_symlink_loops_do_not_hang_the_session() {
    let mut server = TestServer::start();
    std::os::unix::fs::symlink("loop2", server.root.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", server.root.join("loop2")).unwrap();
    std::os::unix::fs::symlink("self", server.root.join("self")).unwrap();
    std::os::unix::fs::symlink("nowhere", server.root.join("dangling")).unwrap();
    let have_fifo = Command::new("mkfifo")
        .arg(server.root.join("fifo"))
        .status()
        .is_ok_and(|s| s.success());
    if !have_fifo {
        eprintln!("note: mkfifo unavailable; FIFO cases skipped");
    }
    let mut c = server.login();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    c.cmd_ok("TYPE I", 200);
    let mut names = vec!["loop1", "self", "dangling"];
    if have_fifo {
        names.push("fifo");
    }
    for name in names {
        c.cmd_ok(&format!("CWD {name}"), 550);
        // (APPE through a dangling link inside the home may create its target: allowed.)
        let cmds: &[&str] = if name == "dangling" {
            &["RETR"]
        } else {
            &["RETR", "APPE"]
        };
        for cmd in cmds {
            c.cmd_ok("PASV", 227);
            let (code, text) = c.cmd(&format!("{cmd} {name}"));
            assert!((500..600).contains(&code), "{cmd} {name} -> {code} {text}");
        }
        c.cmd_ok("PASV", 227);
        c.cmd_ok("REST 1", 350);
        let (code, text) = c.cmd(&format!("STOR {name}"));
        assert!(
            (500..600).contains(&code),
            "REST 1 + STOR {name} -> {code} {text}"
        );
        c.cmd_ok(&format!("SIZE {name}"), 550);
        c.cmd_ok("NOOP", 200);
    }
    // Listing the directory still works and shows them without following.
    let nlst = c.list("NLST");
    assert!(
        nlst.contains("loop1") && nlst.contains("dangling"),
        "{nlst}"
    );
    let list = c.list("LIST");
    assert!(list.contains("loop1"), "{list}");
    let mlsd = c.list("MLSD");
    assert!(mlsd.contains(" self\r\n"), "{mlsd}");
    server.assert_still_serving();
}

#[test]
fn names_with_line_breaks_cannot_inject_replies() {
    let mut server = TestServer::start();
    // Names on disk with CR/LF in them, shown on the control connection by STAT.
    std::fs::write(server.root.join("evil\r\n213 End\r\n"), b"x").unwrap();
    std::fs::write(server.root.join("evil2\n230 Logged in"), b"x").unwrap();
    let mut c = server.login();
    let stat = c.cmd_ok("STAT /", 213);
    let lines: Vec<&str> = stat.lines().collect();
    for l in &lines[..lines.len() - 1] {
        assert!(
            !l.starts_with("213 ") && !l.starts_with("230 "),
            "injected reply line {l:?} in {stat:?}"
        );
    }
    assert_eq!(
        c.cmd("NOOP").0,
        200,
        "control connection out of step after STAT"
    );
    // Arguments with a bare CR: refused as a path name (501), never echoed raw.
    let (code, text) = c.cmd("RETR x\r230 Logged in");
    assert_eq!(code, 501, "{text}");
    let (code, text) = c.cmd("USER a\r331 x\r230 welcome");
    assert_eq!(code, 331, "{text}");
    assert_eq!(
        c.cmd("PWD").0,
        530,
        "out of step, or logged in by an injected line"
    );
    server.assert_still_serving();
}

// ---------------------------------------------------------------------------------------------
// Data connections: bounce and theft
// ---------------------------------------------------------------------------------------------

#[test]
fn port_to_another_host_or_a_privileged_port_is_refused() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let victim = TcpListener::bind("127.0.0.2:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let vport = victim.local_addr().unwrap().port();
    let mut c = server.login();
    let [p1, p2] = vport.to_be_bytes();
    for cmd in [
        format!("PORT 127,0,0,2,{p1},{p2}"),
        format!("EPRT |1|127.0.0.2|{vport}|"),
        format!("PORT 192,168,0,1,{p1},{p2}"),
        "PORT 127,0,0,1,0,80".to_string(),
        "PORT 127,0,0,1,0,25".to_string(),
        "EPRT |1|127.0.0.1|80|".to_string(),
        "EPRT |1|127.0.0.1|1023|".to_string(),
        "PORT 0,0,0,0,200,10".to_string(),
        "PORT 255,255,255,255,200,10".to_string(),
    ] {
        let (code, text) = c.cmd(&cmd);
        assert_eq!(code, 504, "{cmd} -> {code} {text}");
        // Nothing is set up, so a transfer is refused without connecting anywhere.
        let (code, text) = c.cmd("RETR a.txt");
        assert_eq!(code, 425, "RETR after refused {cmd} -> {code} {text}");
    }
    std::thread::sleep(Duration::from_millis(300));
    match victim.accept() {
        Ok((_, peer)) => panic!("the server connected to the bounce target from {peer}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
    }
    server.assert_still_serving();
}

#[test]
fn a_passive_connection_from_another_ip_is_refused() {
    let mut server = TestServer::start();
    let content = pseudo_random(300_000, 11);
    std::fs::write(server.root.join("a.bin"), &content).unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let text = c.cmd_ok("PASV", 227);
    let addr = ferroftp_proto::addr::parse_pasv_reply(&text).unwrap();
    // The thief connects first, from 127.0.0.2.
    let mut thief = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr.into()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let data = TcpStream::connect(addr).unwrap();
    let (code, text) = c.cmd("RETR a.bin");
    assert_transfer_start(code, &text, "RETR");
    assert_eq!(read_all(data), content, "the legitimate client's transfer");
    c.cmd_ok_reply(226);
    // The thief got nothing.
    thief
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut stolen = Vec::new();
    let _ = thief.read_to_end(&mut stolen);
    assert!(stolen.is_empty(), "the thief got {} bytes", stolen.len());

    // EPSV, and an upload: the thief connects after the STOR.
    let text = c.cmd_ok("EPSV", 229);
    let port: u16 = text.split('|').nth(3).unwrap().parse().unwrap();
    let (code, text) = c.cmd("STOR up.bin");
    assert_transfer_start(code, &text, "STOR");
    if let Ok(mut thief) = connect_from(
        Ipv4Addr::new(127, 0, 0, 2),
        (Ipv4Addr::LOCALHOST, port).into(),
    ) {
        let _ = thief.write_all(b"EVIL DATA");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut data = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    data.write_all(b"good data").unwrap();
    drop(data);
    c.cmd_ok_reply(226);
    assert_eq!(
        std::fs::read(server.root.join("up.bin")).unwrap(),
        b"good data"
    );
    server.assert_still_serving();
}

// ---------------------------------------------------------------------------------------------
// Oversized and garbage input
// ---------------------------------------------------------------------------------------------

#[test]
fn a_huge_line_without_newline_gets_500_and_close() {
    let mut server = TestServer::start();
    let pid = server_pid(&server);
    let mut c = server.connect();
    c.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // 100 KB, no newline.
    let _ = c.stream.write_all(&vec![b'A'; 100 * 1024]);
    let (code, text) = c.reply();
    assert_eq!(code, 500, "{text}");
    assert!(c.is_closed());

    // Keep sending without a newline: the server must close rather than buffer it all.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b'B'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    eprintln!("bytes accepted before the server closed: {sent}");
    assert!(
        sent < 32 << 20,
        "the server accepted {sent} bytes of a single line without closing"
    );
    // A long line with a newline.
    let mut c = server.connect();
    c.send_raw(format!("NOOP {}\r\n", "x".repeat(5000)).as_bytes());
    let (code, text) = c.reply();
    assert_eq!(code, 500, "{text}");
    assert!(c.is_closed());
    // A line of exactly the limit minus the line end is fine... and a long path argument just
    // under the limit does not close the connection.
    let mut c = server.login();
    let (code, text) = c.cmd(&format!("CWD {}", "y".repeat(3000)));
    assert!(code == 550 || code == 553, "{code} {text}");
    c.cmd_ok("NOOP", 200);

    // (Measured after a login: an argon2 verification alone takes 19 MiB.)
    if let Some((pid, before)) = pid.and_then(|p| Some((p, rss_kib(p)?))) {
        // Several connections at once spraying garbage without newlines.
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                    let chunk = vec![b'C'; 64 * 1024];
                    for _ in 0..64 {
                        if s.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let after = rss_kib(pid).unwrap_or(0);
        eprintln!("server RSS: {before} KiB before, {after} KiB after the garbage spray");
        assert!(
            after < before + 32 * 1024,
            "server RSS grew from {before} KiB to {after} KiB"
        );
    } else {
        eprintln!("note: server pid/RSS not found; memory growth not measured");
    }
    server.assert_still_serving();
}

#[test]
fn binary_garbage_nul_bytes_and_invalid_utf8() {
    let mut server = TestServer::start();
    let mut c = server.login();
    for line in [
        &b"\x00\x01\x02\x03"[..],
        b"\x00",
        b"NOOP\x00",
        b"\x80\x81\x82\x83 foo",
        b"CWD \xc3\x28",
        b"MKD \xff\xff\xfe",
        b"USER \xe2\x82",
        b"RETR \xed\xa0\x80",
        b"\xef\xbb\xbfNOOP",
        b"   ",
        b"",
        b"\t\t",
        b"NO OP",
        b"VERYLONGVERBNAME",
        b"N\xc3\xb6OP",
    ] {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        c.send_raw(&bytes);
        let (code, text) = c.reply();
        assert!(
            (500..=553).contains(&code),
            "{:?} -> {code} {text}",
            String::from_utf8_lossy(line)
        );
    }
    c.cmd_ok("NOOP", 200);
    assert!(files_in(&server.root).is_empty());

    // Pseudo-random garbage lines, pipelined: one 5xx per line, then the session still works.
    let garbage = pseudo_random(64 * 1024, 42);
    let mut lines = 0;
    let mut batch = Vec::new();
    for chunk in garbage.chunks(173) {
        let mut l: Vec<u8> = chunk
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b'.' } else { b })
            .collect();
        l.extend_from_slice(b"\r\n");
        batch.extend_from_slice(&l);
        lines += 1;
    }
    c.send_raw(&batch);
    for i in 0..lines {
        let (code, text) = c.reply();
        assert!(
            (500..600).contains(&code),
            "garbage line {i} -> {code} {text}"
        );
    }
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("PWD", 257);
    server.assert_still_serving();
}

#[test]
fn telnet_iac_sequences() {
    let mut server = TestServer::start();
    let mut c = server.login();
    for (bytes, code) in [
        (&b"\xff\xf4\xff\xf2NOOP\r\n"[..], 200u16), // IAC IP IAC DM
        (b"\xff\xfb\x01NOOP\r\n", 200),             // IAC WILL ECHO
        (b"\xff\xfd\x03NO\xff\xf1OP\r\n", 200),     // IAC DO x, IAC NOP inside
        (b"NOOP\xff\r\n", 200),                     // a trailing lone IAC
        (b"\xff\xf4\xff\xf2ABOR\r\n", 225),
        (b"\xff\r\n", 500),
        (b"\xff\xff\r\n", 500),      // IAC IAC = a literal 0xFF
        (b"\xff\xfe\r\n", 500),      // truncated negotiation
        (b"MKD \xff\xffx\r\n", 501), // 0xFF is not UTF-8
    ] {
        c.send_raw(bytes);
        let (got, text) = c.reply();
        assert_eq!(got, code, "{bytes:?} -> {got} {text}");
    }
    // Many IAC bytes.
    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.extend_from_slice(b"\xff\xf1");
    }
    flood.extend_from_slice(b"NOOP\r\n");
    c.send_raw(&flood);
    let (code, text) = c.reply();
    assert!(code == 200 || code == 500, "IAC flood -> {code} {text}");
    c.cmd_ok("NOOP", 200);
    server.assert_still_serving();
}

// ---------------------------------------------------------------------------------------------
// Vanishing clients
// ---------------------------------------------------------------------------------------------

/// Start `STOR name` and send `part` of the new content; returns the control and data sockets.
fn start_partial_upload(server: &TestServer, name: &str, part: &[u8]) -> (Ctrl, TcpStream) {
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd(&format!("STOR {name}"));
    assert_transfer_start(code, &text, "STOR");
    data.write_all(part).unwrap();
    data.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (c, data)
}

#[test]
fn a_client_vanishing_mid_upload_leaves_the_old_file_intact() {
    let mut server = TestServer::start();
    let original = pseudo_random(1 << 20, 1);
    let path = server.root.join("keep.bin");
    std::fs::write(&path, &original).unwrap();
    let new_content = pseudo_random(1 << 20, 2);

    // 1. The control connection goes first, then the data connection (FIN).
    let (c, data) = start_partial_upload(&server, "keep.bin", &new_content[..300_000]);
    assert_eq!(
        temp_files(&server.root).len(),
        1,
        "the upload should go to a temp file"
    );
    // Meanwhile another session does not see the temp file.
    {
        let mut other = server.login();
        let nlst = other.list("NLST");
        assert!(!nlst.contains(".ferroftp-upload"), "{nlst}");
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    drop(data);
    wait_for("the temp file to go", Duration::from_secs(10), || {
        temp_files(&server.root).is_empty()
    });
    assert!(
        std::fs::read(&path).unwrap() == original,
        "keep.bin changed"
    );
    server.assert_still_serving();

    // 2. The data connection is reset (RST) while the control connection stays: 426.
    let (mut c, data) = start_partial_upload(&server, "keep.bin", &new_content[..300_000]);
    reset(data);
    let (code, text) = c.reply();
    assert!(
        code == 426 || code == 451,
        "after a reset upload: {code} {text}"
    );
    c.cmd_ok("NOOP", 200);
    wait_for("the temp file to go", Duration::from_secs(10), || {
        temp_files(&server.root).is_empty()
    });
    assert!(
        std::fs::read(&path).unwrap() == original,
        "keep.bin changed"
    );

    // 3. Both reset at once.
    let (c, data) = start_partial_upload(&server, "keep.bin", &new_content[..500_000]);
    reset(c.stream.try_clone().unwrap());
    drop(c);
    reset(data);
    wait_for("the temp file to go", Duration::from_secs(10), || {
        temp_files(&server.root).is_empty()
    });
    assert!(
        std::fs::read(&path).unwrap() == original,
        "keep.bin changed"
    );

    // 4. A new file: nothing at all is left.
    let (c, data) = start_partial_upload(&server, "new.bin", &new_content[..100_000]);
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    drop(data);
    wait_for("the temp file to go", Duration::from_secs(10), || {
        temp_files(&server.root).is_empty()
    });
    server.assert_still_serving();
    assert_eq!(
        files_in(&server.root),
        BTreeSet::from(["keep.bin".to_string()])
    );
    assert!(
        std::fs::read(&path).unwrap() == original,
        "keep.bin changed"
    );
}

#[test]
fn a_client_vanishing_mid_download() {
    let mut server = TestServer::start();
    let f = std::fs::File::create(server.root.join("big.bin")).unwrap();
    f.set_len(50 << 20).unwrap();
    drop(f);
    for variant in 0..3 {
        let mut c = server.login();
        c.cmd_ok("TYPE I", 200);
        let mut data = c.pasv_connect();
        let (code, text) = c.cmd("RETR big.bin");
        assert_transfer_start(code, &text, "RETR");
        let mut buf = vec![0u8; 100_000];
        data.read_exact(&mut buf).unwrap();
        match variant {
            0 => {
                drop(c);
                drop(data);
            }
            1 => {
                reset(data);
                let (code, text) = c.reply();
                assert_eq!(code, 426, "after a reset download: {text}");
                c.cmd_ok("NOOP", 200);
            }
            _ => {
                reset(c.stream.try_clone().unwrap());
                drop(c);
                reset(data);
            }
        }
    }
    server.assert_still_serving();
    // The file is untouched and can still be downloaded whole.
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    assert_eq!(c.retr("big.bin").len(), 50 << 20);
}

// ---------------------------------------------------------------------------------------------
// Timeouts and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn a_stalled_data_connection_times_out() {
    let mut server = TestServer::with(opts("[limits]\nidle_timeout_secs = 1\n"));
    let f = std::fs::File::create(server.root.join("big.bin")).unwrap();
    f.set_len(50 << 20).unwrap();
    drop(f);
    // A download the client never reads.
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let data = c.pasv_connect();
    let started = Instant::now();
    let (code, text) = c.cmd("RETR big.bin");
    assert_transfer_start(code, &text, "RETR");
    let (code, text) = c.reply();
    assert_eq!(code, 426, "stalled download: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(data);
    // An upload that never sends a byte.
    let mut c = server.login();
    let data = c.pasv_connect();
    let (code, text) = c.cmd("STOR silent.bin");
    assert_transfer_start(code, &text, "STOR");
    let (code, text) = c.reply();
    assert_eq!(code, 426, "stalled upload: {text}");
    drop(data);
    wait_for("no temp file", Duration::from_secs(5), || {
        temp_files(&server.root).is_empty()
    });
    assert!(!server.root.join("silent.bin").exists());
    server.assert_still_serving();
}

#[test]
fn login_timeout() {
    let mut server = TestServer::with(opts(
        "[limits]\nlogin_timeout_secs = 1\nidle_timeout_secs = 30\n",
    ));
    // Silent client.
    let started = Instant::now();
    let mut c = server.connect();
    let (code, text) = c.reply();
    assert_eq!(code, 421, "{text}");
    assert!(c.is_closed());
    let e = started.elapsed();
    assert!(
        e >= Duration::from_millis(800) && e < Duration::from_secs(6),
        "{e:?}"
    );

    // USER then nothing.
    let mut c = server.connect();
    c.cmd_ok("USER someone", 331);
    let (code, _) = c.reply();
    assert_eq!(code, 421);
    assert!(c.is_closed());

    // NOOPs do not extend the login time.
    let started = Instant::now();
    let mut c = server.connect();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no login timeout despite NOOPs"
        );
        c.send_raw(b"NOOP\r\n");
        let (code, text) = c.reply();
        if code == 421 {
            break;
        }
        assert_eq!(code, 200, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.is_closed());
    // Logged-in sessions are not subject to it.
    let mut c = server.login();
    std::thread::sleep(Duration::from_millis(1500));
    c.cmd_ok("NOOP", 200);
    server.assert_still_serving();
}

#[test]
fn idle_timeout() {
    let mut server = TestServer::with(opts("[limits]\nidle_timeout_secs = 1\n"));
    let started = Instant::now();
    let mut c = server.login();
    let (code, text) = c.reply();
    assert_eq!(code, 421, "{text}");
    assert!(c.is_closed());
    let e = started.elapsed();
    assert!(
        e >= Duration::from_millis(800) && e < Duration::from_secs(6),
        "{e:?}"
    );
    // Activity keeps a session alive.
    let mut c = server.login();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        c.cmd_ok("NOOP", 200);
    }
    // A pending PASV does not keep it alive.
    c.cmd_ok("PASV", 227);
    let (code, _) = c.reply();
    assert_eq!(code, 421);
    server.assert_still_serving();
}

#[test]
fn failed_logins_close_the_connection_after_the_limit() {
    let mut server = TestServer::with(opts("[limits]\nmax_login_failures = 2\n"));
    let mut c = server.connect();
    c.cmd_ok(&format!("USER {}", server.user), 331);
    c.cmd_ok("PASS nope", 530);
    c.cmd_ok("USER nobody", 331);
    let (code, text) = c.cmd("PASS nope");
    assert_eq!(code, 421, "{text}");
    assert!(c.is_closed());
    // Per session: a new connection may log in.
    let mut c = server.connect();
    c.cmd_ok(&format!("USER {}", server.user), 331);
    c.cmd_ok("PASS nope", 530);
    c.cmd_ok(&format!("USER {}", server.user), 331);
    c.cmd_ok(&format!("PASS {}", server.password), 230);
    // A pipelined burst of guesses stops at the limit.
    let mut c = server.connect();
    let mut burst = String::new();
    for i in 0..50 {
        burst.push_str(&format!("USER {}\r\nPASS guess{i}\r\n", server.user));
    }
    let _ = c.stream.write_all(burst.as_bytes());
    let mut codes = Vec::new();
    while let Ok(Some((code, _))) = c.next_reply() {
        codes.push(code.to_string());
    }
    assert_eq!(codes, ["331", "530", "331", "421"], "{codes:?}");
    server.assert_still_serving();
}

#[test]
fn session_limits_refuse_with_421_at_connect() {
    let mut server = TestServer::with(opts(
        "[limits]\nmax_sessions_per_ip = 2\nmax_sessions = 3\n",
    ));
    let a = server.connect();
    let b = server.connect();
    // Third from the same IP.
    let s = TcpStream::connect(server.addr).unwrap();
    let line = first_line(&s);
    assert!(
        line.starts_with("421"),
        "third session from one IP got {line:?}"
    );
    // From another IP: allowed (per-IP limit), and it is the third in total.
    let other = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr).unwrap();
    assert!(first_line(&other).starts_with("220"));
    // A fourth from yet another IP: over the total.
    let s = connect_from(Ipv4Addr::new(127, 0, 0, 3), server.addr).unwrap();
    let line = first_line(&s);
    assert!(
        line.starts_with("421"),
        "fourth session in total got {line:?}"
    );
    // Closing sessions frees their places.
    drop(a);
    drop(other);
    wait_for("a free session slot", Duration::from_secs(5), || {
        first_line(&TcpStream::connect(server.addr).unwrap()).starts_with("220")
    });
    drop(b);
    std::thread::sleep(Duration::from_millis(500));
    server.assert_still_serving();
}

#[test]
fn rapid_pasv_does_not_leak_ports() {
    let low = free_port_range(5);
    let high = low + 4;
    let mut server = TestServer::with(opts(&format!("[passive]\nports = \"{low}-{high}\"\n")));
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    for i in 0..200 {
        let (code, text) = c.cmd(if i % 3 == 0 { "EPSV" } else { "PASV" });
        assert!(code == 227 || code == 229, "PASV #{i} -> {code} {text}");
    }
    drop(c);
    // Sessions that PASV and vanish, one after the other.
    for i in 0..60 {
        let mut s = server.login();
        let (code, text) = s.cmd("PASV");
        assert_eq!(code, 227, "session {i}: {text}");
        if i % 2 == 0 {
            s.cmd_ok("QUIT", 221);
        }
    }
    // All five ports can be held at once again.
    wait_for("all 5 ports free", Duration::from_secs(10), || {
        let mut sessions: Vec<Ctrl> = (0..5).map(|_| server.login()).collect();
        sessions.iter_mut().all(|s| s.cmd("PASV").0 == 227)
    });
    server.assert_still_serving();
}

/// Each PASV replaces the previous offer, whose port must be free again at once (the spec:
/// released after use, timeout, new PASV or disconnect). With a one-port range, every pipelined
/// PASV needs the port its predecessor just gave up.
#[test]
fn pipelined_pasv_releases_each_replaced_port_at_once() {
    let low = free_port_range(1);
    let mut server = TestServer::with(opts(&format!("[passive]\nports = \"{low}-{low}\"\n")));
    let mut c = server.login();
    c.send_raw("PASV\r\n".repeat(100).as_bytes());
    let mut failures = Vec::new();
    for i in 0..100 {
        let (code, text) = c.reply();
        if code != 227 {
            failures.push(format!("#{i}: {code} {text}"));
        }
    }
    // Not a permanent leak: a PASV a moment later works.
    std::thread::sleep(Duration::from_millis(100));
    let (later, _) = c.cmd("PASV");
    assert!(
        failures.is_empty(),
        "{} of 100 pipelined PASV failed with a one-port range, first: {} \
         (a PASV 100 ms later got {later})",
        failures.len(),
        failures[0]
    );
    // ABOR drops the pending passive port before replying, so the one port is free again.
    c.cmd_ok("ABOR", 226);
    server.assert_still_serving();
}

#[test]
fn many_connect_disconnect_cycles() {
    let mut server = TestServer::with(opts("[limits]\nmax_sessions_per_ip = 4\n"));
    for i in 0..300 {
        let s = TcpStream::connect(server.addr).unwrap();
        if i % 3 == 0 {
            reset(s);
        }
    }
    for i in 0..100 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let line = first_line(&s);
        if line.starts_with("220") {
            let _ = s.write_all(b"USER x\r\nPASS y\r\n");
        }
        if i % 2 == 0 {
            reset(s);
        }
    }
    // The per-IP count must come back to zero: four sessions at once are allowed again.
    wait_for("4 concurrent sessions", Duration::from_secs(10), || {
        let conns: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        conns.iter().all(|s| first_line(s).starts_with("220"))
    });
    std::thread::sleep(Duration::from_millis(300));
    server.assert_still_serving();
}

/// `limits.max_line_length` is "the longest control line in bytes, including the line end".
#[test]
fn a_configured_line_limit_is_enforced_exactly() {
    let mut server = TestServer::with(opts("[limits]\nmax_line_length = 512\n"));
    // Exactly 512 bytes with CRLF: accepted.
    let mut c = server.login();
    let line = format!("NOOP {}\r\n", " ".repeat(512 - 7));
    assert_eq!(line.len(), 512);
    c.send_raw(line.as_bytes());
    assert_eq!(c.reply().0, 200);
    // A 300-byte path argument is fine too.
    let (code, _) = c.cmd(&format!("CWD {}", "z".repeat(300)));
    assert!(code == 550 || code == 553);
    c.cmd_ok("NOOP", 200);
    // 513 bytes with CRLF: over the limit.
    let mut c = server.login();
    let line = format!("NOOP {}\r\n", " ".repeat(513 - 7));
    assert_eq!(line.len(), 513);
    c.send_raw(line.as_bytes());
    let (code, text) = c.reply();
    assert_eq!(code, 500, "a 513-byte line with limit 512: {text}");
    assert!(c.is_closed());
    // 600 bytes: certainly over.
    let mut c = server.login();
    c.send_raw(format!("NOOP {}\r\n", " ".repeat(593)).as_bytes());
    let (code, text) = c.reply();
    assert_eq!(code, 500, "{text}");
    assert!(c.is_closed());
    server.assert_still_serving();
}

// ---------------------------------------------------------------------------------------------
// Big uploads on their own thread
// ---------------------------------------------------------------------------------------------

/// The server's log line when an upload moves to its own thread.
const ON_THREAD: &str = "receiving the rest on its own thread";

fn threaded_uploads(server: &TestServer) -> usize {
    server.log().matches(ON_THREAD).count()
}

/// The largest number in a STAT reply (the bytes moved so far).
fn stat_bytes(stat: &str) -> u64 {
    stat.split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_big_overwrite_on_its_own_thread_is_byte_identical_and_counts_progress() {
    // fsync = "replacements" (the default): the overwrite is synced before the 226, and its
    // writeback starts during the upload.
    let mut server = TestServer::start();
    std::fs::write(server.root.join("keep.bin"), b"old content").unwrap();
    let body = pseudo_random(24 << 20, 41);
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("STOR keep.bin");
    assert_transfer_start(code, &text, "STOR");
    let half = body.len() / 2;
    data.write_all(&body[..half]).unwrap();
    wait_for("the upload on its thread", Duration::from_secs(20), || {
        threaded_uploads(&server) == 1
    });
    // STAT mid-transfer sees the bytes the thread received.
    wait_for("progress in STAT", Duration::from_secs(20), || {
        let stat = c.cmd_ok("STAT", 213);
        assert!(stat.contains("STOR"), "{stat}");
        stat_bytes(&stat) >= half as u64
    });
    // Until the commit, the old file is untouched.
    assert_eq!(
        std::fs::read(server.root.join("keep.bin")).unwrap(),
        b"old content"
    );
    data.write_all(&body[half..]).unwrap();
    drop(data);
    let (code, text) = c.reply();
    assert_eq!(code, 226, "{text}");
    assert!(
        std::fs::read(server.root.join("keep.bin")).unwrap() == body,
        "the stored file differs from what was sent"
    );
    assert!(temp_files(&server.root).is_empty());
    // And it reads back whole.
    assert!(c.retr("keep.bin") == body);
    server.assert_still_serving();
}

#[test]
fn abor_of_a_big_upload_on_its_own_thread_leaves_no_temp_file() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("keep.bin"), b"keep me").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    for (i, target) in ["new.bin", "keep.bin"].into_iter().enumerate() {
        let mut data = c.pasv_connect();
        let (code, text) = c.cmd(&format!("STOR {target}"));
        assert_transfer_start(code, &text, "STOR");
        // Big enough to move to the thread; then the client keeps the connection open.
        data.write_all(&pseudo_random(4 << 20, 7)).unwrap();
        wait_for("the upload on its thread", Duration::from_secs(20), || {
            threaded_uploads(&server) == i + 1
        });
        c.send_raw(b"ABOR\r\n");
        let (code, text) = c.reply();
        assert_eq!(code, 426, "{text}");
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
    server.assert_still_serving();
}

#[test]
fn a_big_upload_that_stalls_on_its_own_thread_times_out_and_is_discarded() {
    let mut server = TestServer::with(opts("[limits]\nidle_timeout_secs = 1\n"));
    std::fs::write(server.root.join("keep.bin"), b"keep me").unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("STOR keep.bin");
    assert_transfer_start(code, &text, "STOR");
    data.write_all(&pseudo_random(2 << 20, 8)).unwrap();
    // Then nothing more, and the connection stays open.
    let (code, text) = c.reply();
    assert_eq!(code, 426, "stalled upload: {text}");
    assert_eq!(threaded_uploads(&server), 1);
    drop(data);
    wait_for("no temp file", Duration::from_secs(5), || {
        temp_files(&server.root).is_empty()
    });
    assert_eq!(
        std::fs::read(server.root.join("keep.bin")).unwrap(),
        b"keep me"
    );
    server.assert_still_serving();
}

#[test]
fn big_appends_and_resumed_uploads_on_their_own_thread_land_at_the_right_offset() {
    // APPE writes to a file opened for appending (recv -> write on the thread); REST + STOR
    // writes from the offset (spliced on the thread) and cuts the old tail.
    let mut server = TestServer::start();
    let head = pseudo_random(1000, 1);
    let body = pseudo_random(3 << 20, 2);
    std::fs::write(server.root.join("appe.bin"), &head).unwrap();
    let mut old = pseudo_random(5 << 20, 3);
    std::fs::write(server.root.join("rest.bin"), &old).unwrap();
    let mut c = server.login();
    c.cmd_ok("TYPE I", 200);
    let mut data = c.pasv_connect();
    let (code, text) = c.cmd("APPE appe.bin");
    assert_transfer_start(code, &text, "APPE");
    data.write_all(&body).unwrap();
    drop(data);
    assert_eq!(c.reply().0, 226);
    let mut data = c.pasv_connect();
    c.cmd_ok("REST 1000", 350);
    let (code, text) = c.cmd("STOR rest.bin");
    assert_transfer_start(code, &text, "STOR");
    data.write_all(&body).unwrap();
    drop(data);
    assert_eq!(c.reply().0, 226);
    assert_eq!(threaded_uploads(&server), 2);
    let mut appended = head.clone();
    appended.extend_from_slice(&body);
    assert!(std::fs::read(server.root.join("appe.bin")).unwrap() == appended);
    old.truncate(1000);
    old.extend_from_slice(&body);
    assert!(std::fs::read(server.root.join("rest.bin")).unwrap() == old);
    server.assert_still_serving();
}
