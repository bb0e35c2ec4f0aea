//! Interoperability with lftp: mirroring whole trees both ways (passive and active), `--only-newer`
//! (which relies on exact modification times from MLSD or MDTM), file management commands and
//! resumed transfers. Trees are compared file by file, byte for byte.
//!
//! lftp must be installed; a missing lftp fails these tests (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    TestServer, assert_same_tree, log_count, mtime_secs, pseudo_random, q, same, snapshot,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings that keep lftp quick, quiet and predictable: no TLS attempt, no long retry loops,
/// no silent fallback from passive to active mode.
const SETTINGS: &str = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; \
    set net:reconnect-interval-base 1; set xfer:clobber on; set cmd:fail-exit yes; \
    set ftp:auto-passive-mode no";

/// Run `lftp -c "<settings>; open ...; <script>"`; returns (success, stdout, stderr).
fn lftp(server: &TestServer, passive: bool, script: &str) -> (bool, String, String) {
    let which = Command::new("sh")
        .args(["-c", "command -v lftp"])
        .output()
        .unwrap();
    assert!(
        which.status.success(),
        "lftp is not installed: these interoperability tests need it (apt-get install lftp)"
    );
    let full = format!(
        "{SETTINGS}; set ftp:passive-mode {}; open -u {},{} ftp://127.0.0.1:{}; {script}",
        if passive { "on" } else { "off" },
        server.user,
        server.password,
        server.port()
    );
    // lftp keeps history and caches under $HOME: give it a private one.
    let home = server.dir.path().join("lftp-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("timeout")
        .args(["120", "lftp", "-c", &full])
        .env("HOME", &home)
        .env_remove("LFTP_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lftp_ok(server: &TestServer, passive: bool, script: &str) -> String {
    let (ok, out, err) = lftp(server, passive, script);
    assert!(ok, "lftp `{script}` failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

fn transfers(server: &TestServer, verb: &str) -> usize {
    log_count(server, &format!("transfer verb=\"{verb}\""))
}

/// An old, whole-second time, so that anything written later is clearly newer.
fn old_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

/// Build a tree of 50 files: empty, 1 byte, 100 KB, 2 MB and many small ones, spread over nested
/// directories (one of them empty), with spaces and UTF-8 in names. All mtimes set to `old_time`.
/// Returns (files, non-empty files): lftp creates empty files without a RETR.
fn make_tree(base: &Path) -> (usize, usize) {
    let dirs = [
        "",
        "docs",
        "docs/sub dir",
        "docs/sub dir/deeper",
        "donn\u{e9}es \u{e9}t\u{e9}",
        "donn\u{e9}es \u{e9}t\u{e9}/\u{65e5}\u{672c}",
        "x/y/z",
    ];
    std::fs::create_dir_all(base.join("empty dir")).unwrap();
    for d in dirs {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("zero.bin".into(), Vec::new()),
        ("one.bin".into(), vec![0x42]),
        ("hundred k.bin".into(), pseudo_random(100 * 1024, 1)),
        (
            "docs/sub dir/two mb.bin".into(),
            pseudo_random(2 * 1024 * 1024, 2),
        ),
        (
            "donn\u{e9}es \u{e9}t\u{e9}/r\u{e9}sum\u{e9}.txt".into(),
            "caf\u{e9}\r\nna\u{ef}ve\n".into(),
        ),
        (
            "donn\u{e9}es \u{e9}t\u{e9}/\u{65e5}\u{672c}/\u{30d5}\u{30a1}\u{30a4}\u{30eb}.dat"
                .into(),
            pseudo_random(777, 3),
        ),
    ];
    for i in 0..44 {
        let dir = dirs[i % dirs.len()];
        let size = (i * 7919) % 20_000;
        let name = if i % 3 == 0 {
            format!("file {i:02}.bin")
        } else {
            format!("f{i:02}.dat")
        };
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        files.push((path, pseudo_random(size, 100 + i as u64)));
    }
    for (path, data) in &files {
        let p = base.join(path);
        std::fs::write(&p, data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old_time())
            .unwrap();
    }
    (
        files.len(),
        files.iter().filter(|(_, d)| !d.is_empty()).count(),
    )
}

#[test]
fn lftp_mirror_download_passive() {
    let mut server = TestServer::start();
    let (files, n) = make_tree(&server.root);
    assert_eq!((files, n), (50, 48));
    let local = server.dir.path().join("mirror");
    lftp_ok(
        &server,
        true,
        &format!("mirror --parallel=3 / {}", q(&local)),
    );
    assert_same_tree(&local, &server.root);
    assert_eq!(transfers(&server, "RETR"), n, "one RETR per file");
    assert_eq!(
        log_count(&server, "command=Port") + log_count(&server, "command=Eprt"),
        0
    );
    // lftp copied the modification times it was told.
    assert_eq!(
        mtime_secs(&local.join("docs/sub dir/two mb.bin")),
        mtime_secs(&server.root.join("docs/sub dir/two mb.bin"))
    );
    server.assert_still_serving();
}

#[test]
fn lftp_mirror_upload_passive() {
    let mut server = TestServer::start();
    let local = server.dir.path().join("src");
    let (n, _) = make_tree(&local);
    lftp_ok(&server, true, &format!("mirror -R {} /up", q(&local)));
    assert_same_tree(&server.root.join("up"), &local);
    assert_eq!(transfers(&server, "STOR"), n, "one STOR per file");
    // No temporary upload files left anywhere.
    assert_eq!(
        snapshot(&server.root.join("up")).len(),
        snapshot(&local).len()
    );
    // lftp set the remote modification time after each upload (MFMT); check one.
    assert_eq!(
        mtime_secs(&server.root.join("up/hundred k.bin")),
        mtime_secs(&local.join("hundred k.bin"))
    );
    server.assert_still_serving();
}

#[test]
fn lftp_mirror_both_ways_active_mode() {
    let mut server = TestServer::start();
    let src = server.dir.path().join("src");
    let (files, n) = make_tree(&src);
    lftp_ok(&server, false, &format!("mirror -R {} /tree", q(&src)));
    assert_same_tree(&server.root.join("tree"), &src);
    let back = server.dir.path().join("back");
    lftp_ok(&server, false, &format!("mirror /tree {}", q(&back)));
    assert_same_tree(&back, &src);
    assert_eq!(transfers(&server, "STOR"), files);
    assert_eq!(transfers(&server, "RETR"), n);
    assert!(log_count(&server, "command=Port") + log_count(&server, "command=Eprt") >= files + n);
    assert_eq!(
        log_count(&server, "command=Pasv") + log_count(&server, "command=Epsv"),
        0,
        "lftp fell back to passive"
    );
    server.assert_still_serving();
}

#[test]
fn lftp_mirror_only_newer_uses_exact_times() {
    let mut server = TestServer::start();
    let (files, n) = make_tree(&server.root);
    let local = server.dir.path().join("m");
    // With MLSD (the default) and with LIST + MDTM.
    for (round, mlsd) in [(0usize, "on"), (1, "off")] {
        let script = format!(
            "set ftp:use-mlsd {mlsd}; mirror --only-newer / {}",
            q(&local)
        );
        lftp_ok(&server, true, &script);
        if round == 0 {
            assert_same_tree(&local, &server.root);
            assert_eq!(transfers(&server, "RETR"), n);
        }
        // A second run has nothing to do.
        lftp_ok(&server, true, &script);
        assert_eq!(
            transfers(&server, "RETR"),
            n,
            "`mirror --only-newer` (use-mlsd {mlsd}) transferred again"
        );
    }
    assert!(
        log_count(&server, "command=Mlsd") > 0,
        "lftp did not use MLSD"
    );
    assert!(
        log_count(&server, "command=Mdtm") > 0,
        "lftp did not use MDTM without MLSD"
    );
    assert_eq!(
        mtime_secs(&local.join("one.bin")),
        mtime_secs(&server.root.join("one.bin"))
    );
    assert_eq!(mtime_secs(&local.join("one.bin")), 1_600_000_000);

    // Change one file on the server: exactly that one is fetched again.
    std::fs::write(server.root.join("docs/f01.dat"), b"changed on the server").unwrap();
    lftp_ok(
        &server,
        true,
        &format!("mirror --only-newer / {}", q(&local)),
    );
    assert_eq!(transfers(&server, "RETR"), n + 1);
    assert_eq!(
        std::fs::read(local.join("docs/f01.dat")).unwrap(),
        b"changed on the server"
    );
    assert_same_tree(&local, &server.root);

    // Reverse: mirror -R twice; the second uploads nothing (the first set times with MFMT).
    let up = server.dir.path().join("up");
    make_tree(&up);
    lftp_ok(
        &server,
        true,
        &format!("mirror -R --only-newer {} /r", q(&up)),
    );
    assert_eq!(transfers(&server, "STOR"), files);
    lftp_ok(
        &server,
        true,
        &format!("mirror -R --only-newer {} /r", q(&up)),
    );
    assert_eq!(
        transfers(&server, "STOR"),
        files,
        "`mirror -R --only-newer` uploaded again"
    );
    assert_same_tree(&server.root.join("r"), &up);
    server.assert_still_serving();
}

#[test]
fn lftp_file_management_commands() {
    let mut server = TestServer::start();
    std::fs::create_dir(server.root.join("d")).unwrap();
    std::fs::write(server.root.join("d/a file.txt"), b"12345").unwrap();
    std::fs::write(server.root.join("d/b.txt"), b"b").unwrap();
    std::fs::write(server.root.join("gone.txt"), b"g").unwrap();

    let out = lftp_ok(&server, true, "cls -l d/");
    let line = out
        .lines()
        .find(|l| l.ends_with("a file.txt"))
        .unwrap_or_else(|| panic!("cls -l:\n{out}"));
    assert!(
        line.starts_with("-rw") && line.contains(" 5 "),
        "cls -l line: {line}"
    );
    assert!(out.lines().any(|l| l.ends_with("b.txt")), "{out}");

    lftp_ok(&server, true, "rm gone.txt");
    assert!(!server.root.join("gone.txt").exists());
    lftp_ok(
        &server,
        true,
        "mv \"d/a file.txt\" \"d/renamed \u{e9}.txt\"",
    );
    assert!(!server.root.join("d/a file.txt").exists());
    assert_eq!(
        std::fs::read(server.root.join("d/renamed \u{e9}.txt")).unwrap(),
        b"12345"
    );
    lftp_ok(&server, true, "mkdir -p \"p/q r/s\"");
    assert!(server.root.join("p/q r/s").is_dir());
    lftp_ok(&server, true, "rmdir \"p/q r/s\"");
    assert!(!server.root.join("p/q r/s").exists() && server.root.join("p/q r").is_dir());

    // chmod: SITE CHMOD changes the mode on disk.
    lftp_ok(&server, true, "chmod 600 d/b.txt");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.root.join("d/b.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "mode after chmod 600: {mode:o}");
    assert!(log_count(&server, "mode=\"600\"") == 1 || log_count(&server, "op=\"chmod\"") == 1);
    lftp_ok(&server, true, "chmod 644 d/b.txt");
    let mode = std::fs::metadata(server.root.join("d/b.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);

    // Failures are reported: removing a missing file, rmdir of a non-empty directory.
    let (ok, _, _) = lftp(&server, true, "rm nothing-here");
    assert!(!ok, "rm of a missing file succeeded");
    let (ok, _, _) = lftp(&server, true, "rmdir d");
    assert!(!ok, "rmdir of a non-empty directory succeeded");
    assert!(server.root.join("d/b.txt").exists());
    // `rm -r` removes a whole tree.
    lftp_ok(&server, true, "rm -r p");
    assert!(!server.root.join("p").exists());
    server.assert_still_serving();
}

#[test]
fn lftp_resumes_get_and_put() {
    let mut server = TestServer::start();
    let data = pseudo_random(1_200_000, 9);
    std::fs::write(server.root.join("big.bin"), &data).unwrap();

    // get -c: the local file holds the first part.
    let local = server.dir.path().join("big.part");
    std::fs::write(&local, &data[..400_000]).unwrap();
    lftp_ok(&server, true, &format!("get -c big.bin -o {}", q(&local)));
    same(&std::fs::read(&local).unwrap(), &data, "get -c result");
    assert_eq!(
        log_count(&server, "command=Rest(400000)"),
        1,
        "get -c should send REST 400000"
    );

    // put -c: the server holds the first part; lftp sends SIZE, then REST + STOR.
    let full = server.dir.path().join("full.bin");
    std::fs::write(&full, &data).unwrap();
    std::fs::write(server.root.join("up.bin"), &data[..654_321]).unwrap();
    lftp_ok(&server, true, &format!("put -c {} -o up.bin", q(&full)));
    assert_eq!(
        std::fs::read(server.root.join("up.bin")).unwrap(),
        data,
        "put -c result"
    );
    assert_eq!(
        log_count(&server, "command=Rest(654321)"),
        1,
        "put -c should send REST 654321"
    );
    let stor = server
        .log()
        .lines()
        .rfind(|l| l.contains("transfer verb=\"STOR\""))
        .unwrap()
        .to_string();
    assert!(
        stor.contains(&format!("bytes={}", data.len() - 654_321)),
        "only the tail was sent: {stor}"
    );

    // Active mode resume both ways.
    std::fs::write(&local, &data[..1000]).unwrap();
    lftp_ok(&server, false, &format!("get -c big.bin -o {}", q(&local)));
    same(&std::fs::read(&local).unwrap(), &data, "active get -c");
    std::fs::write(server.root.join("up2.bin"), &data[..1]).unwrap();
    lftp_ok(&server, false, &format!("put -c {} -o up2.bin", q(&full)));
    assert_eq!(
        std::fs::read(server.root.join("up2.bin")).unwrap(),
        data,
        "active put -c"
    );
    server.assert_still_serving();
}

#[test]
fn lftp_mlsd_listing() {
    let mut server = TestServer::start();
    std::fs::create_dir(server.root.join("sub dir")).unwrap();
    std::fs::write(
        server.root.join("exact size.bin"),
        pseudo_random(123_457, 4),
    )
    .unwrap();
    std::fs::write(server.root.join("\u{e9}l\u{e8}ve.txt"), b"x").unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(server.root.join("exact size.bin"))
        .unwrap();
    f.set_modified(old_time()).unwrap();

    let out = lftp_ok(&server, true, "set ftp:use-mlsd on; cls -l");
    assert_eq!(
        log_count(&server, "command=Mlsd"),
        1,
        "cls should have used MLSD"
    );
    assert_eq!(log_count(&server, "command=List"), 0);
    let line = out
        .lines()
        .find(|l| l.ends_with("exact size.bin"))
        .unwrap_or_else(|| panic!("cls:\n{out}"));
    assert!(line.contains(" 123457 "), "size from MLSD: {line}");
    assert!(
        out.lines().any(|l| l.ends_with("\u{e9}l\u{e8}ve.txt")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('d') && l.ends_with("sub dir/")),
        "{out}"
    );

    // Full timestamp precision: MLSD's modify fact carries the seconds.
    let listing = lftp_ok(
        &server,
        true,
        "set ftp:use-mlsd on; cls -l --time-style=+%s \"exact size.bin\"",
    );
    assert!(
        listing.contains(" 1600000000 "),
        "mtime from MLSD with seconds: {listing}"
    );
    // And the plain `ls` (raw LIST) still works.
    let raw = lftp_ok(&server, true, "ls");
    assert!(
        raw.lines()
            .any(|l| l.ends_with("exact size.bin") && l.contains("123457")),
        "{raw}"
    );
    server.assert_still_serving();
}

/// README's Quick start: the client lines after "Connect with any client", run as written
/// against `serve` with no options (the generated user, a self-signed certificate), the
/// printed password and the test's port put in.
#[test]
fn the_readme_quick_start_client_lines_work_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("Connect with any client")
        .expect("the Quick start");
    let block = readme[start..]
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    assert!(block.contains("lftp") && block.contains("curl"), "{block}");
    let server = TestServer::start();
    let script = block
        .replace("PASSWORD", &server.password)
        .replace("2121", &server.port().to_string());
    let cwd = server.dir.path().join("client");
    std::fs::create_dir(&cwd).unwrap();
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(&cwd)
        .env("HOME", &cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Quick start lines failed:\n{err}");
    assert!(!err.contains("NOT trusted"), "{err}");
    assert_eq!(
        std::fs::read(server.root.join("copy.txt")).unwrap(),
        b"hello\n"
    );
}
