//! Interoperability with curl, a real third-party FTP client: every test runs the `curl` binary
//! against its own server and checks the bytes on disk (or what curl wrote), not only curl's
//! exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, TestServer, log_count, path_str, pseudo_random};
use std::process::{Command, Output, Stdio};

/// Run curl with the server's credentials (if `auth`) plus `args`.
fn curl_with(server: &TestServer, auth: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--connect-timeout", "10", "--max-time", "60"]);
    if auth {
        cmd.arg("-u")
            .arg(format!("{}:{}", server.user, server.password));
    }
    cmd.args(args);
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"))
}

/// curl logged in as the server's user; panics (with curl's stderr) unless it succeeds.
fn curl_ok(server: &TestServer, args: &[&str]) -> Vec<u8> {
    let out = curl_with(server, true, args);
    assert!(
        out.status.success(),
        "curl {args:?} failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Percent-encode a path for an ftp:// URL (keeps '/').
fn enc(path: &str) -> String {
    let mut s = String::new();
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The `bytes=` of every logged transfer with this verb, in order.
fn logged_transfer_bytes(server: &TestServer, verb: &str) -> Vec<u64> {
    let tag = format!("transfer verb=\"{verb}\"");
    server
        .log()
        .lines()
        .filter(|l| l.contains(&tag))
        .map(|l| {
            let rest = l
                .split(" bytes=")
                .nth(1)
                .expect("bytes= in transfer log line");
            rest.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect()
}

fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first differing byte at offset {i}");
    }
}

#[test]
fn curl_downloads_a_3mb_binary_file_byte_exact() {
    let mut server = TestServer::start();
    let data = pseudo_random(3 * 1024 * 1024 + 17, 0xC0FFEE);
    std::fs::write(server.root.join("big.bin"), &data).unwrap();
    let out = server.dir.path().join("big.out");
    curl_ok(&server, &["-o", path_str(&out), &server.url("big.bin")]);
    assert_same_bytes(&std::fs::read(&out).unwrap(), &data, "downloaded big.bin");
    // The same over stdout, and the server logged the full byte count twice.
    let stdout = curl_ok(&server, &[&server.url("big.bin")]);
    assert_same_bytes(&stdout, &data, "big.bin on stdout");
    assert_eq!(
        logged_transfer_bytes(&server, "RETR"),
        vec![data.len() as u64; 2]
    );
    server.assert_still_serving();
}

#[test]
fn curl_uploads_a_binary_file_byte_exact() {
    let mut server = TestServer::start();
    let data = pseudo_random(1024 * 1024 + 3, 7);
    let local = server.dir.path().join("up.bin");
    std::fs::write(&local, &data).unwrap();
    curl_ok(&server, &["-T", path_str(&local), &server.url("up.bin")]);
    assert_same_bytes(
        &std::fs::read(server.root.join("up.bin")).unwrap(),
        &data,
        "uploaded up.bin",
    );
    // Uploading to a directory URL keeps the local name; overwriting replaces the content.
    std::fs::create_dir(server.root.join("d")).unwrap();
    std::fs::write(
        server.root.join("d/up.bin"),
        b"old content that is longer than nothing",
    )
    .unwrap();
    let small = pseudo_random(10, 8);
    std::fs::write(&local, &small).unwrap();
    curl_ok(&server, &["-T", path_str(&local), &server.url("d/")]);
    assert_same_bytes(
        &std::fs::read(server.root.join("d/up.bin")).unwrap(),
        &small,
        "d/up.bin on disk",
    );
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(server.root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["up.bin"], "unexpected files in d/");
    // Empty files both ways.
    let empty = server.dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    curl_ok(
        &server,
        &["-T", path_str(&empty), &server.url("d/empty.bin")],
    );
    assert_eq!(std::fs::read(server.root.join("d/empty.bin")).unwrap(), b"");
    assert!(curl_ok(&server, &[&server.url("d/empty.bin")]).is_empty());
    server.assert_still_serving();
}

#[test]
fn curl_lists_directories_with_list_and_nlst() {
    let mut server = TestServer::start();
    let dir = server.root.join("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("alpha.txt"), b"12345").unwrap();
    std::fs::write(dir.join("with space.bin"), b"").unwrap();
    std::fs::write(dir.join("caf\u{e9}.txt"), b"x").unwrap();
    let listing = String::from_utf8(curl_ok(&server, &[&server.url("dir/")])).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "LIST output:\n{listing}");
    let line_for = |name: &str| {
        *lines
            .iter()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} missing from LIST:\n{listing}"))
    };
    assert!(line_for("alpha.txt").starts_with('-'), "{listing}");
    assert!(
        line_for("alpha.txt").contains(" 5 "),
        "size of alpha.txt:\n{listing}"
    );
    assert!(line_for("sub").starts_with('d'), "{listing}");
    line_for("with space.bin");
    line_for("caf\u{e9}.txt");

    let nlst = String::from_utf8(curl_ok(&server, &["--list-only", &server.url("dir/")])).unwrap();
    let mut names: Vec<&str> = nlst.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["alpha.txt", "caf\u{e9}.txt", "sub", "with space.bin"],
        "NLST:\n{nlst:?}"
    );
    server.assert_still_serving();
}

#[test]
fn curl_creates_missing_directories_on_upload() {
    let mut server = TestServer::start();
    let local = server.dir.path().join("f.bin");
    let data = pseudo_random(5000, 3);
    std::fs::write(&local, &data).unwrap();
    // Without --ftp-create-dirs the CWD into the missing directory fails.
    let out = curl_with(
        &server,
        true,
        &["-T", path_str(&local), &server.url("new/nested/deep/f.bin")],
    );
    assert!(
        !out.status.success(),
        "upload into a missing directory should fail"
    );
    assert!(!server.root.join("new").exists());
    // multicwd (the default) creates every missing level with one MKD each.
    let url = server.url("new/nested%20dir/deep/f.bin");
    curl_ok(
        &server,
        &["--ftp-create-dirs", "-T", path_str(&local), &url],
    );
    assert_eq!(
        std::fs::read(server.root.join("new/nested dir/deep/f.bin")).unwrap(),
        data
    );
    // singlecwd sends one MKD of the whole path, which creates the last level only (MKD is not
    // `mkdir -p`), so give it an existing parent.
    std::fs::create_dir_all(server.root.join("s/a b")).unwrap();
    let url = server.url("s/a%20b/c/f.bin");
    curl_ok(
        &server,
        &[
            "--ftp-create-dirs",
            "--ftp-method",
            "singlecwd",
            "-T",
            path_str(&local),
            &url,
        ],
    );
    assert_eq!(
        std::fs::read(server.root.join("s/a b/c/f.bin")).unwrap(),
        data
    );
    // Existing directories are fine too (MKD fails, the CWD then works).
    curl_ok(
        &server,
        &[
            "--ftp-create-dirs",
            "-T",
            path_str(&local),
            &server.url("new/g.bin"),
        ],
    );
    assert_same_bytes(
        &std::fs::read(server.root.join("new/g.bin")).unwrap(),
        &data,
        "new/g.bin on disk",
    );
    server.assert_still_serving();
}

#[test]
fn curl_active_mode_download_and_upload() {
    let mut server = TestServer::start();
    let data = pseudo_random(700_000, 11);
    std::fs::write(server.root.join("a.bin"), &data).unwrap();
    let local = server.dir.path().join("u.bin");
    std::fs::write(&local, pseudo_random(300_000, 12)).unwrap();

    // `-P -`: the control connection's own address; curl tries EPRT first.
    let got = curl_ok(&server, &["-P", "-", &server.url("a.bin")]);
    assert_same_bytes(&got, &data, "active (EPRT) download");
    assert!(
        log_count(&server, "command=Eprt") >= 1,
        "curl -P - should have used EPRT"
    );
    curl_ok(
        &server,
        &[
            "-P",
            "127.0.0.1",
            "-T",
            path_str(&local),
            &server.url("u1.bin"),
        ],
    );
    assert_eq!(
        std::fs::read(server.root.join("u1.bin")).unwrap(),
        std::fs::read(&local).unwrap()
    );

    // Plain PORT.
    let ports_before = log_count(&server, "command=Port");
    let got = curl_ok(
        &server,
        &["-P", "127.0.0.1", "--disable-eprt", &server.url("a.bin")],
    );
    assert_same_bytes(&got, &data, "active (PORT) download");
    curl_ok(
        &server,
        &[
            "-P",
            "-",
            "--disable-eprt",
            "-T",
            path_str(&local),
            &server.url("u2.bin"),
        ],
    );
    assert_eq!(
        std::fs::read(server.root.join("u2.bin")).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_eq!(
        log_count(&server, "command=Port") - ports_before,
        2,
        "curl --disable-eprt should use PORT"
    );
    // Active listing too.
    let nlst = String::from_utf8(curl_ok(
        &server,
        &["-P", "-", "--list-only", &server.url("")],
    ))
    .unwrap();
    let mut names: Vec<&str> = nlst.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["a.bin", "u1.bin", "u2.bin"]);
    assert!(!server.log().contains("command=Pasv") && !server.log().contains("command=Epsv"));
    server.assert_still_serving();
}

#[test]
fn curl_passive_mode_variants_epsv_pasv() {
    let mut server = TestServer::start();
    let data = pseudo_random(200_000, 21);
    std::fs::write(server.root.join("p.bin"), &data).unwrap();
    let local = server.dir.path().join("l.bin");
    std::fs::write(&local, &data[..150_000]).unwrap();

    // Default: EPSV.
    assert_same_bytes(
        &curl_ok(&server, &[&server.url("p.bin")]),
        &data,
        "EPSV download",
    );
    assert_eq!(log_count(&server, "command=Epsv"), 1);
    assert_eq!(log_count(&server, "command=Pasv"), 0);
    // --ftp-pasv is the default too.
    assert_same_bytes(
        &curl_ok(&server, &["--ftp-pasv", &server.url("p.bin")]),
        &data,
        "--ftp-pasv",
    );
    assert_eq!(log_count(&server, "command=Epsv"), 2);
    // --disable-epsv: PASV, whose 227 address curl must be able to use.
    assert_same_bytes(
        &curl_ok(&server, &["--disable-epsv", &server.url("p.bin")]),
        &data,
        "PASV download",
    );
    curl_ok(
        &server,
        &[
            "--disable-epsv",
            "-T",
            path_str(&local),
            &server.url("pasv-up.bin"),
        ],
    );
    assert_eq!(
        std::fs::read(server.root.join("pasv-up.bin")).unwrap(),
        &data[..150_000]
    );
    assert_eq!(log_count(&server, "command=Pasv"), 2);
    // --ftp-skip-pasv-ip: curl ignores the 227 address and uses the control host.
    assert_same_bytes(
        &curl_ok(
            &server,
            &["--disable-epsv", "--ftp-skip-pasv-ip", &server.url("p.bin")],
        ),
        &data,
        "PASV skip-ip download",
    );
    server.assert_still_serving();
}

#[test]
fn curl_resumes_downloads_with_rest() {
    let mut server = TestServer::start();
    let data = pseudo_random(2_000_000, 31);
    std::fs::write(server.root.join("r.bin"), &data).unwrap();

    // `-C -`: curl looks at the local file's size and sends REST with it.
    let local = server.dir.path().join("r.part");
    std::fs::write(&local, &data[..777_777]).unwrap();
    curl_ok(
        &server,
        &["-C", "-", "-o", path_str(&local), &server.url("r.bin")],
    );
    assert_same_bytes(&std::fs::read(&local).unwrap(), &data, "resumed download");
    assert_eq!(
        log_count(&server, "command=Rest(777777)"),
        1,
        "curl -C - should send REST 777777"
    );
    assert_eq!(
        logged_transfer_bytes(&server, "RETR"),
        vec![(data.len() - 777_777) as u64]
    );

    // `-C offset` to stdout: only the tail.
    let tail = curl_ok(&server, &["-C", "1999000", &server.url("r.bin")]);
    assert_same_bytes(&tail, &data[1_999_000..], "tail from offset 1999000");

    // A byte range (REST + ABOR after the range) leaves the session usable.
    let range = curl_ok(&server, &["-r", "100-199", &server.url("r.bin")]);
    assert_same_bytes(&range, &data[100..200], "range 100-199");
    server.assert_still_serving();
}

#[test]
fn curl_resumes_uploads_with_size_and_appe() {
    let mut server = TestServer::start();
    let data = pseudo_random(1_500_000, 41);
    let local = server.dir.path().join("full.bin");
    std::fs::write(&local, &data).unwrap();
    // The server holds a partial upload.
    std::fs::write(server.root.join("u.bin"), &data[..600_001]).unwrap();
    curl_ok(
        &server,
        &["-C", "-", "-T", path_str(&local), &server.url("u.bin")],
    );
    assert_same_bytes(
        &std::fs::read(server.root.join("u.bin")).unwrap(),
        &data,
        "resumed upload",
    );
    assert!(
        log_count(&server, "command=Size(\"u.bin\")") >= 1,
        "curl should ask SIZE"
    );
    assert_eq!(
        log_count(&server, "command=Appe(\"u.bin\")"),
        1,
        "curl should APPE"
    );
    assert_eq!(
        logged_transfer_bytes(&server, "APPE"),
        vec![(data.len() - 600_001) as u64]
    );

    // Explicit offset: curl skips that much of the local file and appends the rest.
    std::fs::write(server.root.join("v.bin"), &data[..1000]).unwrap();
    curl_ok(
        &server,
        &["-C", "1000", "-T", path_str(&local), &server.url("v.bin")],
    );
    assert_same_bytes(
        &std::fs::read(server.root.join("v.bin")).unwrap(),
        &data,
        "upload resumed at 1000",
    );

    // `--append` onto an existing file.
    let tail = server.dir.path().join("tail.bin");
    std::fs::write(&tail, b"-tail").unwrap();
    std::fs::write(server.root.join("w.txt"), b"head").unwrap();
    curl_ok(
        &server,
        &["--append", "-T", path_str(&tail), &server.url("w.txt")],
    );
    assert_eq!(
        std::fs::read(server.root.join("w.txt")).unwrap(),
        b"head-tail"
    );
    server.assert_still_serving();
}

#[test]
fn curl_ftp_methods_for_nested_paths() {
    let mut server = TestServer::start();
    std::fs::create_dir_all(server.root.join("a/b/c")).unwrap();
    let data = pseudo_random(12_345, 51);
    std::fs::write(server.root.join("a/b/c/file.bin"), &data).unwrap();
    let local = server.dir.path().join("l.bin");
    std::fs::write(&local, b"uploaded").unwrap();

    for (method, needle) in [
        ("multicwd", "command=Cwd(\"c\")"),
        ("singlecwd", "command=Cwd(\"a/b/c\")"),
        ("nocwd", "command=Retr(\"a/b/c/file.bin\")"),
    ] {
        let got = curl_ok(
            &server,
            &["--ftp-method", method, &server.url("a/b/c/file.bin")],
        );
        assert_same_bytes(&got, &data, method);
        assert_eq!(
            log_count(&server, needle),
            1,
            "{method}: expected `{needle}` in the log"
        );
        let name = format!("up-{method}.txt");
        curl_ok(
            &server,
            &[
                "--ftp-method",
                method,
                "-T",
                path_str(&local),
                &server.url(&format!("a/b/{name}")),
            ],
        );
        assert_eq!(
            std::fs::read(server.root.join("a/b").join(&name)).unwrap(),
            b"uploaded",
            "{method}"
        );
        let nlst = String::from_utf8(curl_ok(
            &server,
            &["--ftp-method", method, "-l", &server.url("a/b/c/")],
        ))
        .unwrap();
        // NLST of a directory argument may name the entries with or without that prefix.
        let names: Vec<&str> = nlst
            .lines()
            .map(|l| l.strip_prefix("a/b/c/").unwrap_or(l))
            .collect();
        assert_eq!(names, ["file.bin"], "{method} NLST: {nlst:?}");
    }
    // A path with a missing directory fails in every method.
    for method in ["multicwd", "singlecwd", "nocwd"] {
        let out = curl_with(
            &server,
            true,
            &["--ftp-method", method, &server.url("a/nope/file.bin")],
        );
        assert!(
            !out.status.success(),
            "{method}: download from a missing dir should fail"
        );
    }
    server.assert_still_serving();
}

#[test]
fn curl_handles_names_with_spaces_and_utf8() {
    let mut server = TestServer::start();
    let name = "my file \u{e9}t\u{e9} \u{65e5}\u{672c}.txt";
    let data = pseudo_random(4096, 61);
    std::fs::create_dir(server.root.join("r\u{e9}pertoire x")).unwrap();
    std::fs::write(server.root.join("r\u{e9}pertoire x").join(name), &data).unwrap();
    let url = server.url(&enc(&format!("r\u{e9}pertoire x/{name}")));
    assert!(url.contains("%20") && url.contains("%C3%A9"), "{url}");
    assert_same_bytes(&curl_ok(&server, &[&url]), &data, "UTF-8 download");
    for method in ["multicwd", "singlecwd", "nocwd"] {
        assert_same_bytes(
            &curl_ok(&server, &["--ftp-method", method, &url]),
            &data,
            method,
        );
    }

    let local = server.dir.path().join("l.bin");
    std::fs::write(&local, "na\u{ef}ve").unwrap();
    let up = "new d\u{e9}j\u{e0} vu.txt";
    curl_ok(
        &server,
        &[
            "-T",
            path_str(&local),
            &server.url(&enc(&format!("r\u{e9}pertoire x/{up}"))),
        ],
    );
    assert_eq!(
        std::fs::read(server.root.join("r\u{e9}pertoire x").join(up)).unwrap(),
        b"na\xc3\xafve".to_vec()
    );
    let nlst = String::from_utf8(curl_ok(
        &server,
        &["-l", &server.url(&enc("r\u{e9}pertoire x/"))],
    ))
    .unwrap();
    let mut names: Vec<&str> = nlst.lines().collect();
    names.sort_unstable();
    let mut want = vec![name, up];
    want.sort_unstable();
    assert_eq!(names, want);
    server.assert_still_serving();
}

#[test]
fn curl_quote_commands_delete_and_rename() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("x"), b"x").unwrap();
    std::fs::write(server.root.join("a"), b"content of a").unwrap();
    std::fs::write(server.root.join("keep"), b"k").unwrap();
    // Before the transfer: DELE x, then the listing no longer has it.
    let nlst =
        String::from_utf8(curl_ok(&server, &["-l", "-Q", "DELE x", &server.url("")])).unwrap();
    assert!(!server.root.join("x").exists(), "DELE x did not delete");
    assert!(
        !nlst.lines().any(|l| l == "x"),
        "listing after DELE still shows x: {nlst}"
    );
    // After the transfer: RNFR/RNTO.
    curl_ok(
        &server,
        &["-l", "-Q", "-RNFR a", "-Q", "-RNTO b", &server.url("")],
    );
    assert!(!server.root.join("a").exists());
    assert_eq!(
        std::fs::read(server.root.join("b")).unwrap(),
        b"content of a"
    );
    // MKD / RMD via quote, with no transfer at all (-I: headers only).
    curl_ok(&server, &["-I", "-Q", "MKD made", &server.url("")]);
    assert!(server.root.join("made").is_dir());
    curl_ok(&server, &["-I", "-Q", "RMD made", &server.url("")]);
    assert!(!server.root.join("made").exists());
    // A failing quote command makes curl fail with CURLE_QUOTE_ERROR (21).
    let out = curl_with(
        &server,
        true,
        &["-l", "-Q", "DELE does-not-exist", &server.url("")],
    );
    assert_eq!(
        out.status.code(),
        Some(21),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SITE CHMOD as a quote command changes the mode on disk.
    curl_ok(
        &server,
        &["-I", "-Q", "SITE CHMOD 640 keep", &server.url("")],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.root.join("keep"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o640,
        "mode after SITE CHMOD 640: {:o}",
        mode & 0o777
    );
    // '*' prefix: failure ignored.
    curl_ok(
        &server,
        &["-l", "-Q", "*DELE does-not-exist", &server.url("")],
    );
    assert!(server.root.join("keep").exists());
    server.assert_still_serving();
}

#[test]
fn curl_ascii_mode_converts_line_ends() {
    let mut server = TestServer::start();
    // Download: stored LF, sent CRLF (curl turns it back into LF on Unix).
    let text = b"line one\nline two\n\nlast line without newline";
    std::fs::write(server.root.join("t.txt"), text).unwrap();
    let lf_count = text.iter().filter(|&&b| b == b'\n').count();
    let want_wire = text.len() + lf_count;
    for args in [vec!["--use-ascii"], vec![]] {
        let url = if args.is_empty() {
            server.url("t.txt;type=A")
        } else {
            server.url("t.txt")
        };
        let mut a: Vec<&str> = args.clone();
        a.extend(["-w", "\n%{size_download}", &url]);
        let out = curl_ok(&server, &a);
        let s = String::from_utf8(out).unwrap();
        let (body, size) = s.rsplit_once('\n').unwrap();
        assert_eq!(
            size.parse::<usize>().unwrap(),
            want_wire,
            "bytes on the wire (CRLF) for {args:?}"
        );
        assert_eq!(
            body.as_bytes(),
            text,
            "curl's converted-back text for {args:?}"
        );
    }
    assert_eq!(
        log_count(&server, "command=Type(Ascii"),
        2,
        "curl should have sent TYPE A twice"
    );
    // The same file in binary is byte-exact.
    assert_eq!(curl_ok(&server, &[&server.url("t.txt")]), text);

    // Upload: curl in ASCII mode sends LF as CRLF; the server stores LF.
    let local = server.dir.path().join("u.txt");
    let up = b"alpha\nbeta\n\ngamma\n";
    std::fs::write(&local, up).unwrap();
    curl_ok(
        &server,
        &["--use-ascii", "-T", path_str(&local), &server.url("u.txt")],
    );
    assert_eq!(
        std::fs::read(server.root.join("u.txt")).unwrap(),
        up,
        "TYPE A upload stored on disk"
    );
    curl_ok(
        &server,
        &["-T", path_str(&local), &server.url("u2.txt;type=a")],
    );
    assert_eq!(
        std::fs::read(server.root.join("u2.txt")).unwrap(),
        up,
        ";type=a upload stored on disk"
    );
    let stor = logged_transfer_bytes(&server, "STOR");
    let crlf_len = (up.len() + up.iter().filter(|&&b| b == b'\n').count()) as u64;
    assert_eq!(stor, vec![crlf_len, crlf_len], "the wire carried CRLF");
    // `--crlf` in binary mode is not converted back by the server.
    curl_ok(
        &server,
        &["--crlf", "-T", path_str(&local), &server.url("u3.txt")],
    );
    assert_eq!(
        std::fs::read(server.root.join("u3.txt")).unwrap(),
        b"alpha\r\nbeta\r\n\r\ngamma\r\n"
    );
    server.assert_still_serving();
}

#[test]
fn curl_wrong_password_fails_with_67() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("secret"), b"s").unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-u"])
        .arg(format!("{}:not-the-password", server.user))
        .arg(server.url("secret"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(67),
        "curl exit for a wrong password; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // An unknown user is refused the same way, and an upload attempt does nothing.
    let local = server.dir.path().join("l");
    std::fs::write(&local, b"l").unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-u", "nobody:nothing", "-T"])
        .arg(&local)
        .arg(server.url("planted"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(67));
    assert!(!server.root.join("planted").exists());
    assert!(server.log().contains("login failed"));
    // And the right password still works afterwards.
    assert_eq!(curl_ok(&server, &[&server.url("secret")]), b"s");
    server.assert_still_serving();
}

#[test]
fn curl_anonymous_can_download_but_not_upload() {
    let mut server = TestServer::with(Options {
        args: vec!["--anonymous".into()],
        ..Options::default()
    });
    let data = pseudo_random(100_000, 71);
    // Anonymous users get ROOT/pub (made at start), with pub/ in it to list.
    std::fs::create_dir(server.root.join("pub/pub")).unwrap();
    std::fs::write(server.root.join("pub/pub/file.bin"), &data).unwrap();
    // curl without -u logs in as anonymous.
    let out = curl_with(&server, false, &[&server.url("pub/file.bin")]);
    assert!(
        out.status.success(),
        "anonymous download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_bytes(&out.stdout, &data, "anonymous download");
    // USER ftp too.
    let out = curl_with(
        &server,
        false,
        &["-u", "ftp:me@example.com", &server.url("pub/file.bin")],
    );
    assert!(out.status.success());
    assert_same_bytes(&out.stdout, &data, "ftp user download");
    let out = curl_with(&server, false, &["-l", &server.url("pub/")]);
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["file.bin"]
    );

    // Uploads, overwrites, appends, deletes and mkdir are refused.
    let local = server.dir.path().join("l.bin");
    std::fs::write(&local, b"evil").unwrap();
    let out = curl_with(
        &server,
        false,
        &["-T", path_str(&local), &server.url("pub/new.bin")],
    );
    assert!(!out.status.success(), "anonymous upload succeeded");
    assert_eq!(out.status.code(), Some(25), "expected CURLE_UPLOAD_FAILED");
    assert!(!server.root.join("pub/pub/new.bin").exists());
    let out = curl_with(
        &server,
        false,
        &["-T", path_str(&local), &server.url("pub/file.bin")],
    );
    assert!(!out.status.success());
    let out = curl_with(
        &server,
        false,
        &[
            "--append",
            "-T",
            path_str(&local),
            &server.url("pub/file.bin"),
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(server.root.join("pub/pub/file.bin")).unwrap(),
        data,
        "anonymous changed a file"
    );
    let out = curl_with(
        &server,
        false,
        &["-l", "-Q", "DELE pub/file.bin", &server.url("")],
    );
    assert_eq!(out.status.code(), Some(21));
    let out = curl_with(&server, false, &["-l", "-Q", "MKD x", &server.url("")]);
    assert_eq!(out.status.code(), Some(21));
    assert!(server.root.join("pub/pub/file.bin").exists() && !server.root.join("pub/x").exists());
    server.assert_still_serving();
}
