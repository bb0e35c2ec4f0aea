//! Interoperability with suppaftp (the sync, no-TLS client of the Rust ecosystem): its own
//! reply parsing, PASV/EPSV/active data connections, listing parsers (POSIX LIST and MLSD), REST,
//! APPE, ABOR, and what ends up on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, log_count, pseudo_random, same, set_mtime};
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};
use suppaftp::list::File;
use suppaftp::types::{FileType, FormatControl};
use suppaftp::{FtpError, FtpStream, Mode, Status};

fn connect(server: &TestServer) -> FtpStream {
    let mut ftp = FtpStream::connect_timeout(server.addr, Duration::from_secs(10)).unwrap();
    ftp.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    ftp.login(server.user.as_str(), server.password.as_str())
        .unwrap();
    ftp
}

/// Connected and switched to binary: the FTP default type is ASCII (RFC 959), which the server
/// honours, and suppaftp does not switch by itself.
fn connect_binary(server: &TestServer) -> FtpStream {
    let mut ftp = connect(server);
    ftp.transfer_type(FileType::Binary).unwrap();
    ftp
}

/// The status of a refused command.
fn refused<T: std::fmt::Debug>(r: Result<T, FtpError>) -> Status {
    match r {
        Err(FtpError::UnexpectedResponse(resp)) => resp.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn suppaftp_files_and_directories() {
    let mut server = TestServer::start();
    let mut ftp = connect_binary(&server);
    assert!(ftp.get_welcome_msg().unwrap().starts_with("220"));
    assert_eq!(ftp.pwd().unwrap(), "/");

    ftp.mkdir("d").unwrap();
    assert!(server.root.join("d").is_dir());
    assert_eq!(refused(ftp.mkdir("d")), Status::FileUnavailable);
    ftp.cwd("d").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/d");
    ftp.mkdir("\u{e9}t\u{e9} 2").unwrap();
    assert!(server.root.join("d/\u{e9}t\u{e9} 2").is_dir());
    ftp.cdup().unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/");
    assert_eq!(refused(ftp.cwd("missing")), Status::FileUnavailable);

    // Upload and download, byte-exact.
    let data = pseudo_random(600_000, 1);
    let written = ftp
        .put_file("d/up.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    assert_eq!(written, data.len() as u64);
    same(
        &std::fs::read(server.root.join("d/up.bin")).unwrap(),
        &data,
        "d/up.bin on disk",
    );
    same(
        &ftp.retr_as_buffer("d/up.bin").unwrap().into_inner(),
        &data,
        "RETR d/up.bin",
    );
    // Streamed download via the closure API.
    let got = ftp
        .retr("d/up.bin", |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map_err(FtpError::ConnectionError)?;
            Ok(v)
        })
        .unwrap();
    same(&got, &data, "RETR d/up.bin with the closure API");
    assert_eq!(
        refused(ftp.retr_as_buffer("d/none.bin")),
        Status::FileUnavailable
    );

    // SIZE / MDTM.
    assert_eq!(ftp.size("d/up.bin").unwrap(), data.len());
    set_mtime(&server.root.join("d/up.bin"), 1_600_000_000);
    assert_eq!(
        ftp.mdtm("d/up.bin").unwrap().to_string(),
        "2020-09-13 12:26:40"
    );
    assert_eq!(refused(ftp.size("d/none.bin")), Status::FileUnavailable);

    // Rename and delete.
    ftp.rename("d/up.bin", "d/moved file.bin").unwrap();
    assert!(!server.root.join("d/up.bin").exists());
    same(
        &std::fs::read(server.root.join("d/moved file.bin")).unwrap(),
        &data,
        "d/moved file.bin on disk",
    );
    ftp.rm("d/moved file.bin").unwrap();
    assert!(!server.root.join("d/moved file.bin").exists());
    assert_eq!(refused(ftp.rm("d/moved file.bin")), Status::FileUnavailable);
    assert_eq!(
        refused(ftp.rmdir("d")),
        Status::FileUnavailable,
        "RMD of a non-empty directory"
    );
    ftp.rmdir("d/\u{e9}t\u{e9} 2").unwrap();
    ftp.rmdir("d").unwrap();
    assert!(!server.root.join("d").exists());

    // SITE CHMOD.
    std::fs::write(server.root.join("m.txt"), b"m").unwrap();
    ftp.site("CHMOD 600 m.txt").unwrap();
    let mode = std::fs::metadata(server.root.join("m.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    ftp.noop().unwrap();
    ftp.quit().unwrap();
    server.assert_still_serving();
}

#[test]
fn suppaftp_listings_parse() {
    let mut server = TestServer::start();
    std::fs::create_dir(server.root.join("sub dir")).unwrap();
    std::fs::write(server.root.join("file one.bin"), pseudo_random(4321, 2)).unwrap();
    std::fs::write(server.root.join("caf\u{e9}.txt"), b"").unwrap();
    set_mtime(&server.root.join("file one.bin"), 1_600_000_000);
    let mut ftp = connect(&server);

    let list = ftp.list(None).unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    let files: Vec<File> = list
        .iter()
        .map(|l| File::from_posix_line(l).unwrap_or_else(|e| panic!("{l:?}: {e:?}")))
        .collect();
    let one = files
        .iter()
        .find(|f| f.name() == "file one.bin")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(one.is_file());
    assert_eq!(one.size(), 4321);
    let sub = files.iter().find(|f| f.name() == "sub dir").unwrap();
    assert!(sub.is_directory());
    assert!(
        files
            .iter()
            .any(|f| f.name() == "caf\u{e9}.txt" && f.size() == 0)
    );

    let mut nlst = ftp.nlst(None).unwrap();
    nlst.sort();
    assert_eq!(nlst, ["caf\u{e9}.txt", "file one.bin", "sub dir"]);
    assert!(ftp.nlst(Some("sub dir")).unwrap().is_empty());

    let mlsd = ftp.mlsd(None).unwrap();
    let entries: Vec<File> = mlsd
        .iter()
        .map(|l| File::from_mlsx_line(l).unwrap_or_else(|e| panic!("{l:?}: {e:?}")))
        .filter(|f| f.name() != "." && f.name() != "..")
        .collect();
    assert_eq!(entries.len(), 3, "{mlsd:?}");
    let one = entries
        .iter()
        .find(|f| f.name() == "file one.bin")
        .unwrap_or_else(|| panic!("{mlsd:?}"));
    assert_eq!(one.size(), 4321);
    assert!(one.is_file());
    assert_eq!(
        one.modified(),
        UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        "modify fact"
    );
    assert!(
        entries
            .iter()
            .find(|f| f.name() == "sub dir")
            .unwrap()
            .is_directory()
    );

    let mlst = ftp.mlst(Some("file one.bin")).unwrap();
    let f = File::from_mlsx_line(&mlst).unwrap_or_else(|e| panic!("{mlst:?}: {e:?}"));
    assert_eq!(f.size(), 4321);
    assert!(f.name().ends_with("file one.bin"), "{mlst:?}");

    let feat = ftp.feat().unwrap();
    for key in ["MDTM", "SIZE", "MLST", "EPSV", "UTF8", "REST"] {
        assert!(feat.contains_key(key), "FEAT lacks {key}: {feat:?}");
    }
    assert_eq!(feat["REST"].as_deref(), Some("STREAM"));
    ftp.opts("UTF8", Some("ON")).unwrap();
    ftp.quit().unwrap();
    server.assert_still_serving();
}

#[test]
fn suppaftp_ascii_and_binary_types() {
    let mut server = TestServer::start();
    std::fs::write(server.root.join("lf.txt"), b"one\ntwo\n\nthree").unwrap();
    let mut ftp = connect(&server);
    ftp.transfer_type(FileType::Ascii(FormatControl::Default))
        .unwrap();
    // suppaftp does no conversion itself: these are the wire bytes.
    assert_eq!(
        ftp.retr_as_buffer("lf.txt").unwrap().into_inner(),
        b"one\r\ntwo\r\n\r\nthree"
    );
    ftp.put_file(
        "crlf.txt",
        &mut Cursor::new(b"a\r\nb\r\n\r\nc\r\n".to_vec()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(server.root.join("crlf.txt")).unwrap(),
        b"a\nb\n\nc\n"
    );
    // A lone CR is data, not a line end.
    ftp.put_file("cr.txt", &mut Cursor::new(b"x\ry\r\n".to_vec()))
        .unwrap();
    assert_eq!(
        std::fs::read(server.root.join("cr.txt")).unwrap(),
        b"x\ry\n"
    );

    ftp.transfer_type(FileType::Binary).unwrap();
    assert_eq!(
        ftp.retr_as_buffer("lf.txt").unwrap().into_inner(),
        b"one\ntwo\n\nthree"
    );
    let crlf = b"a\r\nb\r\n".to_vec();
    ftp.put_file("bin.txt", &mut Cursor::new(crlf.clone()))
        .unwrap();
    same(
        &std::fs::read(server.root.join("bin.txt")).unwrap(),
        &crlf,
        "bin.txt on disk",
    );
    ftp.transfer_type(FileType::Image).unwrap();
    let data = pseudo_random(100_000, 3);
    ftp.put_file("img.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    same(
        &std::fs::read(server.root.join("img.bin")).unwrap(),
        &data,
        "img.bin on disk",
    );
    // TYPE L 8 is binary too.
    ftp.transfer_type(FileType::Local(8)).unwrap();
    same(
        &ftp.retr_as_buffer("img.bin").unwrap().into_inner(),
        &data,
        "RETR img.bin",
    );
    ftp.quit().unwrap();
    server.assert_still_serving();
}

#[test]
fn suppaftp_active_and_extended_passive_modes() {
    let mut server = TestServer::start();
    let data = pseudo_random(900_000, 4);
    std::fs::write(server.root.join("src.bin"), &data).unwrap();

    // Active (PORT): suppaftp listens, the server connects back.
    let mut ftp = connect(&server).active_mode(Duration::from_secs(10));
    ftp.transfer_type(FileType::Binary).unwrap();
    same(
        &ftp.retr_as_buffer("src.bin").unwrap().into_inner(),
        &data,
        "RETR src.bin",
    );
    ftp.put_file("active.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    same(
        &std::fs::read(server.root.join("active.bin")).unwrap(),
        &data,
        "active.bin on disk",
    );
    let mut names = ftp.nlst(None).unwrap();
    names.sort();
    assert_eq!(names, ["active.bin", "src.bin"]);
    assert_eq!(ftp.list(None).unwrap().len(), 2);
    ftp.quit().unwrap();
    assert_eq!(log_count(&server, "command=Port"), 4);
    assert_eq!(log_count(&server, "command=Pasv"), 0);

    // EPSV.
    let mut ftp = connect(&server);
    ftp.set_mode(Mode::ExtendedPassive);
    ftp.transfer_type(FileType::Binary).unwrap();
    same(
        &ftp.retr_as_buffer("src.bin").unwrap().into_inner(),
        &data,
        "RETR src.bin",
    );
    ftp.put_file("epsv.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    same(
        &std::fs::read(server.root.join("epsv.bin")).unwrap(),
        &data,
        "epsv.bin on disk",
    );
    assert_eq!(
        ftp.mlsd(None)
            .unwrap()
            .iter()
            .filter(|l| l.contains("type=file"))
            .count(),
        3
    );
    // And PASV (the default) on the same session.
    ftp.set_mode(Mode::Passive);
    same(
        &ftp.retr_as_buffer("epsv.bin").unwrap().into_inner(),
        &data,
        "RETR epsv.bin",
    );
    ftp.quit().unwrap();
    assert_eq!(log_count(&server, "command=Epsv"), 3);
    assert_eq!(log_count(&server, "command=Pasv"), 1);
    server.assert_still_serving();
}

#[test]
fn suppaftp_resume_append_and_abort() {
    let mut server = TestServer::start();
    let data = pseudo_random(1_000_000, 5);
    std::fs::write(server.root.join("src.bin"), &data).unwrap();
    let mut ftp = connect_binary(&server);

    // REST + RETR.
    ftp.resume_transfer(123_456).unwrap();
    same(
        &ftp.retr_as_buffer("src.bin").unwrap().into_inner(),
        &data[123_456..],
        "RETR src.bin",
    );
    // The offset applies once only.
    same(
        &ftp.retr_as_buffer("src.bin").unwrap().into_inner(),
        &data,
        "RETR src.bin",
    );

    // REST + STOR continues a partial upload in place.
    ftp.put_file("part.bin", &mut Cursor::new(data[..400_000].to_vec()))
        .unwrap();
    ftp.resume_transfer(400_000).unwrap();
    ftp.put_file("part.bin", &mut Cursor::new(data[400_000..].to_vec()))
        .unwrap();
    same(
        &std::fs::read(server.root.join("part.bin")).unwrap(),
        &data,
        "part.bin on disk",
    );

    // APPE.
    ftp.append_file("app.bin", &mut Cursor::new(b"first ".to_vec()))
        .unwrap();
    ftp.append_file("app.bin", &mut Cursor::new(b"second".to_vec()))
        .unwrap();
    assert_eq!(
        std::fs::read(server.root.join("app.bin")).unwrap(),
        b"first second"
    );

    // ABOR during a long download (a sparse 64 MiB file): 426 then 226, and the session goes on.
    let huge = std::fs::File::create(server.root.join("huge.bin")).unwrap();
    huge.set_len(64 * 1024 * 1024).unwrap();
    let mut stream = ftp.retr_as_stream("huge.bin").unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 256 * 1024 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "data connection closed early");
        got += n;
    }
    ftp.abort(stream).unwrap();
    ftp.noop().unwrap();
    same(
        &ftp.retr_as_buffer("src.bin").unwrap().into_inner(),
        &data,
        "RETR src.bin",
    );
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("transfer verb=\"RETR\"") && l.contains("huge.bin"))
        .unwrap()
        .to_string();
    assert!(line.contains("aborted"), "{line}");

    // ABOR of an upload while its data connection is still open: the existing file stays as
    // it was (uploads go to a temporary file that is only renamed into place on success).
    std::fs::write(server.root.join("keep.bin"), b"original").unwrap();
    let mut up = ftp.put_with_stream("keep.bin").unwrap();
    up.write_all(b"partial new content").unwrap();
    up.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ftp.abort(Cursor::new(Vec::new())).unwrap();
    drop(up);
    ftp.noop().unwrap();
    assert_eq!(
        std::fs::read(server.root.join("keep.bin")).unwrap(),
        b"original"
    );
    let names: Vec<_> = std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        5,
        "a temporary file was left behind: {names:?}"
    );
    ftp.quit().unwrap();
    server.assert_still_serving();
}

#[test]
fn suppaftp_wrong_password_is_refused() {
    let mut server = TestServer::start();
    let mut ftp = FtpStream::connect(server.addr).unwrap();
    assert_eq!(
        refused(ftp.login(server.user.as_str(), "wrong")),
        Status::NotLoggedIn
    );
    assert_eq!(refused(ftp.pwd()), Status::NotLoggedIn);
    ftp.login(server.user.as_str(), server.password.as_str())
        .unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/");
    ftp.quit().unwrap();
    server.assert_still_serving();
}
