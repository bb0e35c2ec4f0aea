#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use super::*;

fn vp(s: &str) -> VPath {
    VPath::resolve(&VPath::root(), s).unwrap()
}

/// A temp dir holding `home/` (opened as the LocalFs) and a sibling `outside/` with content.
struct Fixture {
    _tmp: TempDir,
    home: PathBuf,
    outside: PathBuf,
    fs: LocalFs,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let outside = tmp.path().join("outside");
    fs::create_dir(&home).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"top secret").unwrap();
    fs::create_dir(outside.join("sub")).unwrap();
    let fs = LocalFs::open(&home).unwrap();
    Fixture {
        _tmp: tmp,
        home,
        outside,
        fs,
    }
}

/// Everything observable about a tree: paths, kinds, contents, modes, mtimes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u32, SystemTime, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let md = fs::symlink_metadata(&dir).unwrap();
        out.insert(
            dir.clone(),
            (
                "dir".into(),
                md.permissions().mode(),
                md.modified().unwrap(),
                vec![],
            ),
        );
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                stack.push(path);
            } else {
                let content = if md.is_file() {
                    fs::read(&path).unwrap()
                } else {
                    vec![]
                };
                out.insert(
                    path,
                    (
                        format!("{:?}", md.file_type()),
                        md.permissions().mode(),
                        md.modified().unwrap(),
                        content,
                    ),
                );
            }
        }
    }
    out
}

/// Names in a host directory, unfiltered.
fn raw_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

/// A FIFO at `path` (with no writer: opening it for reading would wait for one).
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn read_all(mut f: fs::File) -> Vec<u8> {
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    buf
}

/// Whether this process bypasses file permission checks (root / CAP_DAC_OVERRIDE).
fn permission_checks_bypassed(dir: &Path) -> bool {
    let probe = dir.join("probe-readonly");
    fs::write(&probe, b"x").unwrap();
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o444)).unwrap();
    let bypassed = fs::OpenOptions::new().write(true).open(&probe).is_ok();
    fs::remove_file(&probe).unwrap();
    bypassed
}

// ---------------------------------------------------------------------------------------------
// VPath

#[test]
fn resolve_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("/", "..", "/"),
        ("/a/b", "..", "/a"),
        ("/a/b", "../..", "/"),
        ("/a/b", "../../../..", "/"),
        ("/", "../../etc/passwd", "/etc/passwd"),
        ("/srv/ftp", "../../etc/passwd", "/etc/passwd"),
        ("/d", "/../x", "/x"),
        ("/", "a/./b//c/", "/a/b/c"),
        ("/", "a/..", "/"),
        ("/q", "a/..", "/q"),
        ("/q", "", "/q"),
        ("/q", ".", "/q"),
        ("/q", "/", "/"),
        ("/q", "//", "/"),
        ("/q", "///a///", "/a"),
        ("/q", "r/s", "/q/r/s"),
        ("/q", "/r/s", "/r/s"),
        ("/", "...", "/..."),
        ("/", "..a/a..", "/..a/a.."),
        ("/", "%2e%2e", "/%2e%2e"),
        ("/", "%2e%2e/%2f/..%2f", "/%2e%2e/%2f/..%2f"),
        ("/", "a\\..\\b", "/a\\..\\b"),
        ("/", "..\\..\\etc", "/..\\..\\etc"),
        ("/", "my file .txt", "/my file .txt"),
        (
            "/données",
            "日本語/ファイル 1.txt",
            "/données/日本語/ファイル 1.txt",
        ),
        ("/", " ", "/ "),
    ];
    for (cwd, arg, want) in cases {
        let cwd = vp(cwd);
        let got = VPath::resolve(&cwd, arg).unwrap();
        assert_eq!(got.as_str(), *want, "resolve({cwd}, {arg:?})");
        assert_eq!(got.to_string(), *want);
    }
}

#[test]
fn resolve_rejects() {
    let root = VPath::root();
    for arg in ["a\0b", "\0", "/x/\0/.."] {
        assert!(
            matches!(VPath::resolve(&root, arg), Err(StorageError::InvalidName)),
            "{arg:?}"
        );
    }
    // Too long an argument, even if it would normalize to something short.
    let long = "a/".repeat(MAX_PATH_LEN / 2) + "b";
    assert!(long.len() > MAX_PATH_LEN);
    assert!(matches!(
        VPath::resolve(&root, &long),
        Err(StorageError::InvalidName)
    ));
    let long = "/".repeat(MAX_PATH_LEN + 1);
    assert!(matches!(
        VPath::resolve(&root, &long),
        Err(StorageError::InvalidName)
    ));
    // Exactly at the limit is fine.
    let ok = "/".repeat(MAX_PATH_LEN);
    assert_eq!(VPath::resolve(&root, &ok).unwrap(), root);
    // Too deep.
    let deep = "a/".repeat(MAX_DEPTH + 1);
    assert!(matches!(
        VPath::resolve(&root, &deep),
        Err(StorageError::InvalidName)
    ));
    let max = "a/".repeat(MAX_DEPTH);
    let max = VPath::resolve(&root, &max).unwrap();
    assert!(matches!(
        VPath::resolve(&max, "b"),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(max.join("b"), Err(StorageError::InvalidName)));
    // Depth counts the result, not the way there.
    let wander = "a/".repeat(300) + &"../".repeat(100);
    assert_eq!(
        VPath::resolve(&root, &wander).unwrap().segments().count(),
        200
    );
    // cwd + argument together too long.
    let cwd = VPath::resolve(&root, &"x".repeat(3000)).unwrap();
    assert!(matches!(
        VPath::resolve(&cwd, &"y".repeat(2000)),
        Err(StorageError::InvalidName)
    ));
}

#[test]
fn vpath_accessors() {
    let root = VPath::root();
    assert!(root.is_root());
    assert_eq!(root.as_str(), "/");
    assert_eq!(root.parent(), None);
    assert_eq!(root.file_name(), None);
    assert_eq!(root.relative(), Path::new("."));

    let p = vp("/a/b c/d");
    assert!(!p.is_root());
    assert_eq!(p.file_name(), Some("d"));
    assert_eq!(p.parent().unwrap().as_str(), "/a/b c");
    assert_eq!(p.parent().unwrap().parent().unwrap().as_str(), "/a");
    assert_eq!(vp("/a").parent().unwrap(), root);
    assert_eq!(p.relative(), Path::new("a/b c/d"));
    assert!(!p.relative().is_absolute());

    assert_eq!(root.join("x").unwrap().as_str(), "/x");
    assert_eq!(p.join("e.txt").unwrap().as_str(), "/a/b c/d/e.txt");
    for bad in ["", ".", "..", "a/b", "/", "a\0"] {
        assert!(
            matches!(p.join(bad), Err(StorageError::InvalidName)),
            "{bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn io_error_classification() {
    let raw = |code| StorageError::from(io::Error::from_raw_os_error(code));
    assert!(matches!(raw(2), StorageError::NotFound));
    assert!(matches!(raw(13), StorageError::PermissionDenied));
    assert!(matches!(raw(1), StorageError::PermissionDenied));
    assert!(matches!(raw(30), StorageError::PermissionDenied)); // EROFS
    assert!(matches!(raw(17), StorageError::AlreadyExists));
    assert!(matches!(raw(20), StorageError::NotADirectory));
    assert!(matches!(raw(21), StorageError::IsADirectory));
    assert!(matches!(raw(39), StorageError::DirectoryNotEmpty));
    assert!(matches!(raw(28), StorageError::NoSpace));
    assert!(matches!(raw(122), StorageError::NoSpace)); // EDQUOT
    assert!(matches!(raw(40), StorageError::Escape)); // ELOOP
    assert!(matches!(raw(36), StorageError::InvalidName)); // ENAMETOOLONG
    assert!(matches!(raw(18), StorageError::Io(_))); // EXDEV: a cross-device rename
    assert!(matches!(raw(5), StorageError::Io(_))); // EIO
    let escape = io::Error::new(
        io::ErrorKind::PermissionDenied,
        "a path led outside of the filesystem",
    );
    assert!(matches!(StorageError::from(escape), StorageError::Escape));

    assert_eq!(
        StorageError::NotFound.to_string(),
        "No such file or directory"
    );
    assert_eq!(
        StorageError::Escape.to_string(),
        "Path is outside the home directory"
    );
    assert_eq!(
        StorageError::InvalidOffset.to_string(),
        "Restart offset is beyond the end of the file"
    );
    assert_eq!(
        raw(5).to_string(),
        io::Error::from_raw_os_error(5).to_string()
    );
}

#[test]
fn thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<LocalFs>();
    send_sync::<VPath>();
    send_sync::<StorageError>();
    send::<Upload>();
}

// ---------------------------------------------------------------------------------------------
// Confinement

#[test]
fn escaping_symlinks_are_refused_and_outside_untouched() {
    let fx = fixture();
    let before = snapshot(&fx.outside);
    symlink("/etc", fx.home.join("etc")).unwrap();
    symlink("../outside", fx.home.join("out")).unwrap();
    symlink(fx.outside.join("secret"), fx.home.join("abs-secret")).unwrap();
    symlink("../outside/secret", fx.home.join("rel-secret")).unwrap();
    symlink("../outside/newfile", fx.home.join("dangling-out")).unwrap();
    fs::create_dir(fx.home.join("sub")).unwrap();
    symlink("../../outside", fx.home.join("sub/up")).unwrap();
    fs::write(fx.home.join("mine"), b"mine").unwrap();
    let home_fs = &fx.fs;

    let escape = |what: &str, r: Result<(), StorageError>| {
        assert!(matches!(r, Err(StorageError::Escape)), "{what}: {r:?}");
    };
    escape("metadata /etc", home_fs.metadata(&vp("/etc")).map(drop));
    escape(
        "metadata /etc/passwd",
        home_fs.metadata(&vp("/etc/passwd")).map(drop),
    );
    escape(
        "metadata /out/secret",
        home_fs.metadata(&vp("/out/secret")).map(drop),
    );
    escape(
        "metadata /sub/up",
        home_fs.metadata(&vp("/sub/up")).map(drop),
    );
    escape(
        "open_read /etc/passwd",
        home_fs.open_read(&vp("/etc/passwd"), 0).map(drop),
    );
    escape(
        "open_read /abs-secret",
        home_fs.open_read(&vp("/abs-secret"), 0).map(drop),
    );
    escape(
        "open_read /rel-secret",
        home_fs.open_read(&vp("/rel-secret"), 0).map(drop),
    );
    escape(
        "open_read /out/secret",
        home_fs.open_read(&vp("/out/secret"), 0).map(drop),
    );
    escape("list /etc", home_fs.list(&vp("/etc")).map(drop));
    escape("list /out", home_fs.list(&vp("/out")).map(drop));
    escape("list /sub/up", home_fs.list(&vp("/sub/up")).map(drop));
    assert!(!home_fs.is_dir(&vp("/etc")));
    assert!(!home_fs.is_dir(&vp("/out")));
    for mode in [WriteMode::Replace, WriteMode::Append, WriteMode::At(0)] {
        for target in [
            "/out/new",
            "/out/secret",
            "/sub/up/new",
            "/etc/ferroftp-test",
        ] {
            escape(
                &format!("create_upload {target} {mode:?}"),
                home_fs.create_upload(&vp(target), mode).map(drop),
            );
        }
    }
    for mode in [WriteMode::Append, WriteMode::At(0), WriteMode::At(3)] {
        for target in ["/abs-secret", "/rel-secret", "/dangling-out"] {
            escape(
                &format!("create_upload {target} {mode:?}"),
                home_fs.create_upload(&vp(target), mode).map(drop),
            );
        }
    }
    escape(
        "create_unique /out",
        home_fs.create_unique(&vp("/out"), "x").map(drop),
    );
    escape("mkdir /out/d", home_fs.mkdir(&vp("/out/d")));
    escape("mkdir /sub/up/d", home_fs.mkdir(&vp("/sub/up/d")));
    escape("rmdir /out/sub", home_fs.rmdir(&vp("/out/sub")));
    escape(
        "remove_file /out/secret",
        home_fs.remove_file(&vp("/out/secret")),
    );
    escape(
        "rename into",
        home_fs.rename(&vp("/mine"), &vp("/out/mine")),
    );
    escape(
        "rename out of",
        home_fs.rename(&vp("/out/secret"), &vp("/stolen")),
    );
    escape(
        "set_mode /rel-secret",
        home_fs.set_mode(&vp("/rel-secret"), 0o777),
    );
    escape("set_mode /out", home_fs.set_mode(&vp("/out"), 0o777));
    escape(
        "set_mode /out/secret",
        home_fs.set_mode(&vp("/out/secret"), 0o777),
    );
    let epoch = SystemTime::UNIX_EPOCH;
    escape(
        "set_modified /abs-secret",
        home_fs.set_modified(&vp("/abs-secret"), epoch),
    );
    escape(
        "set_modified /out",
        home_fs.set_modified(&vp("/out"), epoch),
    );

    // The links themselves are listed, unfollowed.
    let listing = home_fs.list(&VPath::root()).unwrap();
    for name in ["etc", "out", "abs-secret", "rel-secret", "dangling-out"] {
        let entry = listing.iter().find(|e| e.name == name).unwrap();
        assert_eq!(entry.kind, EntryKind::Symlink, "{name}");
    }
    let sub = home_fs.list(&vp("/sub")).unwrap();
    assert_eq!(sub[0].kind, EntryKind::Symlink);

    // Replacing a link (STOR) or removing it acts on the link inside the home.
    let mut up = home_fs
        .create_upload(&vp("/rel-secret"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"replaced the link").unwrap();
    up.commit().unwrap();
    assert!(
        fs::symlink_metadata(fx.home.join("rel-secret"))
            .unwrap()
            .is_file()
    );
    home_fs.remove_file(&vp("/abs-secret")).unwrap();
    home_fs.rename(&vp("/out"), &vp("/renamed-link")).unwrap();

    assert_eq!(snapshot(&fx.outside), before, "outside was modified");
    assert!(!fx.outside.join("newfile").exists());
}

#[test]
fn symlinks_inside_home_work() {
    let fx = fixture();
    fs::create_dir(fx.home.join("real")).unwrap();
    fs::write(fx.home.join("real/file.txt"), b"hello").unwrap();
    symlink("real", fx.home.join("lnk")).unwrap();
    fs::create_dir(fx.home.join("deep")).unwrap();
    symlink("../real/file.txt", fx.home.join("deep/up")).unwrap();
    symlink("nowhere", fx.home.join("dangling")).unwrap();
    let home_fs = &fx.fs;

    let md = home_fs.metadata(&vp("/lnk")).unwrap();
    assert_eq!(md.kind, EntryKind::Dir);
    assert_eq!(md.name, "lnk");
    assert!(home_fs.is_dir(&vp("/lnk")));
    assert_eq!(names(&home_fs.list(&vp("/lnk")).unwrap()), ["file.txt"]);
    let (f, len) = home_fs.open_read(&vp("/deep/up"), 0).unwrap();
    assert_eq!(len, 5);
    assert_eq!(read_all(f), b"hello");
    let (f, _) = home_fs.open_read(&vp("/lnk/file.txt"), 1).unwrap();
    assert_eq!(read_all(f), b"ello");

    // Listing follows the in-home link from the home, even though it climbs out of /deep.
    let deep = home_fs.list(&vp("/deep")).unwrap();
    assert_eq!(deep.len(), 1);
    assert_eq!(deep[0].kind, EntryKind::File);
    assert_eq!(deep[0].size, 5);
    let root = home_fs.list(&VPath::root()).unwrap();
    let kind = |n: &str| root.iter().find(|e| e.name == n).unwrap().kind;
    assert_eq!(kind("lnk"), EntryKind::Dir);
    assert_eq!(kind("dangling"), EntryKind::Symlink);
    assert!(matches!(
        home_fs.metadata(&vp("/dangling")),
        Err(StorageError::NotFound)
    ));

    // Uploads through a symlinked directory stay inside.
    let mut up = home_fs
        .create_upload(&vp("/lnk/new.txt"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"via link").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("real/new.txt")).unwrap(), b"via link");
    let mut up = home_fs
        .create_upload(&vp("/deep/up"), WriteMode::Append)
        .unwrap();
    up.file().write_all(b"!").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("real/file.txt")).unwrap(), b"hello!");
}

#[test]
fn special_files_are_not_opened() {
    let fx = fixture();
    let _sock = std::os::unix::net::UnixListener::bind(fx.home.join("sock")).unwrap();
    let home_fs = &fx.fs;
    assert_eq!(
        home_fs.metadata(&vp("/sock")).unwrap().kind,
        EntryKind::Other
    );
    assert_eq!(
        home_fs.list(&VPath::root()).unwrap()[0].kind,
        EntryKind::Other
    );
    assert!(matches!(
        home_fs.open_read(&vp("/sock"), 0),
        Err(StorageError::PermissionDenied)
    ));
    for mode in [WriteMode::Append, WriteMode::At(0)] {
        assert!(matches!(
            home_fs.create_upload(&vp("/sock"), mode),
            Err(StorageError::PermissionDenied)
        ));
    }
    assert!(matches!(
        home_fs.set_modified(&vp("/sock"), SystemTime::UNIX_EPOCH),
        Err(StorageError::PermissionDenied)
    ));
}

#[test]
fn internal_names_are_refused() {
    let fx = fixture();
    let home_fs = &fx.fs;
    assert!(is_internal_name(".ferroftp-upload.0123abcd.part"));
    assert!(is_internal_name(&upload::temp_name()));
    assert!(!is_internal_name("ferroftp-upload.x.part"));
    assert!(!is_internal_name("file.part"));
    let internal = vp("/.ferroftp-upload.0123.part");
    fs::write(fx.home.join(".ferroftp-upload.0123.part"), b"x").unwrap();
    for mode in [WriteMode::Replace, WriteMode::Append, WriteMode::At(0)] {
        assert!(matches!(
            home_fs.create_upload(&internal, mode),
            Err(StorageError::InvalidName)
        ));
    }
    assert!(matches!(
        home_fs.metadata(&internal),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.open_read(&internal, 0),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.remove_file(&internal),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.mkdir(&vp("/.ferroftp-upload.d")),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.rename(&internal, &vp("/visible")),
        Err(StorageError::InvalidName)
    ));
    fs::write(fx.home.join("visible"), b"v").unwrap();
    assert!(matches!(
        home_fs.rename(&vp("/visible"), &vp("/.ferroftp-upload.1.part")),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.create_unique(&VPath::root(), ".ferroftp-upload.2"),
        Err(StorageError::InvalidName)
    ));
    assert_eq!(names(&home_fs.list(&VPath::root()).unwrap()), ["visible"]);
}

// ---------------------------------------------------------------------------------------------
// Uploads

#[test]
fn replace_commit_replaces_content() {
    let fx = fixture();
    fs::write(fx.home.join("f.txt"), b"old content that is longer").unwrap();
    let mut up = fx
        .fs
        .create_upload(&vp("/f.txt"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"new").unwrap();
    // Not visible before commit.
    assert_eq!(
        fs::read(fx.home.join("f.txt")).unwrap(),
        b"old content that is longer"
    );
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("f.txt")).unwrap(), b"new");
    assert_eq!(raw_names(&fx.home), ["f.txt"]);

    // A new file.
    let mut up = fx
        .fs
        .create_upload(&vp("/g.txt"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"fresh").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("g.txt")).unwrap(), b"fresh");
    assert_eq!(raw_names(&fx.home), ["f.txt", "g.txt"]);
}

#[test]
fn replace_drop_keeps_old_file_and_no_temp() {
    let fx = fixture();
    let old: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    fs::write(fx.home.join("f.bin"), &old).unwrap();
    {
        let mut up = fx
            .fs
            .create_upload(&vp("/f.bin"), WriteMode::Replace)
            .unwrap();
        up.file().write_all(b"partial").unwrap();
        // The temp file is in the same directory while the upload runs...
        let raw = raw_names(&fx.home);
        assert_eq!(raw.len(), 2);
        assert!(
            raw.iter()
                .any(|n| n.starts_with(".ferroftp-upload.") && n.ends_with(".part"))
        );
        // ...but hidden from listings.
        assert_eq!(names(&fx.fs.list(&VPath::root()).unwrap()), ["f.bin"]);
    }
    assert_eq!(fs::read(fx.home.join("f.bin")).unwrap(), old);
    assert_eq!(raw_names(&fx.home), ["f.bin"]);

    let mut up = fx
        .fs
        .create_upload(&vp("/f.bin"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"partial").unwrap();
    up.abort();
    assert_eq!(fs::read(fx.home.join("f.bin")).unwrap(), old);
    assert_eq!(raw_names(&fx.home), ["f.bin"]);

    // Dropped upload of a new file leaves nothing.
    drop(
        fx.fs
            .create_upload(&vp("/new"), WriteMode::Replace)
            .unwrap(),
    );
    assert_eq!(raw_names(&fx.home), ["f.bin"]);
}

#[test]
fn replace_targets() {
    let fx = fixture();
    fs::create_dir(fx.home.join("d")).unwrap();
    symlink("d", fx.home.join("dlink")).unwrap();
    let err = |p: &str| fx.fs.create_upload(&vp(p), WriteMode::Replace).err();
    assert!(matches!(err("/d"), Some(StorageError::IsADirectory)));
    assert!(matches!(err("/dlink"), Some(StorageError::IsADirectory)));
    assert!(matches!(err("/"), Some(StorageError::IsADirectory)));
    assert!(matches!(err("/missing/f"), Some(StorageError::NotFound)));
    fs::write(fx.home.join("file"), b"x").unwrap();
    assert!(matches!(err("/file/f"), Some(StorageError::NotADirectory)));
    assert_eq!(raw_names(&fx.home), ["d", "dlink", "file"]);
    assert!(raw_names(&fx.home.join("d")).is_empty());

    // The permission bits of a replaced file are kept.
    fs::set_permissions(fx.home.join("file"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut up = fx
        .fs
        .create_upload(&vp("/file"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"y").unwrap();
    up.commit().unwrap();
    let md = fs::metadata(fx.home.join("file")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);

    // A file the user may not write is not replaced (unless we are root).
    if !permission_checks_bypassed(&fx.home) {
        fs::set_permissions(fx.home.join("file"), fs::Permissions::from_mode(0o444)).unwrap();
        assert!(matches!(err("/file"), Some(StorageError::PermissionDenied)));
        assert_eq!(fs::read(fx.home.join("file")).unwrap(), b"y");
    }
}

#[test]
fn take_and_put_file() {
    let fx = fixture();
    let mut up = fx.fs.create_upload(&vp("/t"), WriteMode::Replace).unwrap();
    let mut f = up.take_file().unwrap();
    f.write_all(b"through the taken handle").unwrap();
    up.put_file(f);
    up.file().write_all(b"!").unwrap();
    up.commit().unwrap();
    assert_eq!(
        fs::read(fx.home.join("t")).unwrap(),
        b"through the taken handle!"
    );
}

#[test]
fn append_semantics() {
    let fx = fixture();
    fs::write(fx.home.join("a"), b"abc").unwrap();
    let mut up = fx.fs.create_upload(&vp("/a"), WriteMode::Append).unwrap();
    up.file().write_all(b"def").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("a")).unwrap(), b"abcdef");

    // Interrupted: what was written stays.
    let mut up = fx.fs.create_upload(&vp("/a"), WriteMode::Append).unwrap();
    up.file().write_all(b"gh").unwrap();
    drop(up);
    assert_eq!(fs::read(fx.home.join("a")).unwrap(), b"abcdefgh");

    // Created when missing.
    let mut up = fx.fs.create_upload(&vp("/b"), WriteMode::Append).unwrap();
    up.file().write_all(b"new").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("b")).unwrap(), b"new");

    fs::create_dir(fx.home.join("d")).unwrap();
    assert!(matches!(
        fx.fs.create_upload(&vp("/d"), WriteMode::Append),
        Err(StorageError::IsADirectory)
    ));
    assert!(matches!(
        fx.fs.create_upload(&vp("/nope/x"), WriteMode::Append),
        Err(StorageError::NotFound)
    ));
    assert_eq!(raw_names(&fx.home), ["a", "b", "d"]);
}

#[test]
fn rolling_back_undoes_appends_and_writes_past_the_old_end() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"original").unwrap();
    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::Append).unwrap();
    up.file().write_all(b"+junk").unwrap();
    assert!(up.roll_back());
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"original");

    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::At(8)).unwrap();
    up.file().write_all(b"+junk").unwrap();
    assert!(up.roll_back());
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"original");

    // Bytes that overwrote old content cannot come back: the file ends with the new data.
    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::At(4)).unwrap();
    up.file().write_all(b"XY").unwrap();
    assert!(!up.roll_back());
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"origXY");
}

#[test]
fn at_offset_semantics() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"hello world").unwrap();
    // Nothing changes until data arrives: an upload abandoned before any byte (a refused data
    // connection) leaves the file alone.
    let up = fx.fs.create_upload(&vp("/f"), WriteMode::At(5)).unwrap();
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"hello world");
    drop(up);
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"hello world");
    // Interrupted after some bytes: the prefix plus what arrived, never the old tail after it.
    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::At(5)).unwrap();
    up.file().write_all(b"XY").unwrap();
    drop(up);
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"helloXY");

    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::At(7)).unwrap();
    up.file().write_all(b"Z").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"helloXYZ");

    // Offset == length is a plain append point.
    let mut up = fx.fs.create_upload(&vp("/f"), WriteMode::At(8)).unwrap();
    up.file().write_all(b"!").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"helloXYZ!");

    // Beyond the end: refused, file untouched.
    assert!(matches!(
        fx.fs.create_upload(&vp("/f"), WriteMode::At(100)),
        Err(StorageError::InvalidOffset)
    ));
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"helloXYZ!");

    // Missing file: created at 0, refused past 0 (and not created).
    assert!(matches!(
        fx.fs.create_upload(&vp("/g"), WriteMode::At(3)),
        Err(StorageError::InvalidOffset)
    ));
    assert!(!fx.home.join("g").exists());
    let mut up = fx.fs.create_upload(&vp("/g"), WriteMode::At(0)).unwrap();
    up.file().write_all(b"g").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("g")).unwrap(), b"g");
    assert!(matches!(
        fx.fs.create_upload(&vp("/nope/g"), WriteMode::At(3)),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        fx.fs.create_upload(&vp("/nope/g"), WriteMode::At(0)),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn open_read_offsets() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"hello world").unwrap();
    let (f, len) = fx.fs.open_read(&vp("/f"), 6).unwrap();
    assert_eq!(len, 11);
    assert_eq!(read_all(f), b"world");
    let (f, len) = fx.fs.open_read(&vp("/f"), 11).unwrap();
    assert_eq!(len, 11);
    assert!(read_all(f).is_empty());
    assert!(matches!(
        fx.fs.open_read(&vp("/f"), 12),
        Err(StorageError::InvalidOffset)
    ));
    assert!(matches!(
        fx.fs.open_read(&vp("/"), 0),
        Err(StorageError::IsADirectory)
    ));
    assert!(matches!(
        fx.fs.open_read(&vp("/nope"), 0),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        fx.fs.open_read(&vp("/f/x"), 0),
        Err(StorageError::NotADirectory)
    ));
}

#[test]
fn create_unique_picks_fresh_names() {
    let fx = fixture();
    let root = VPath::root();
    let (p, mut up) = fx.fs.create_unique(&root, "file.txt").unwrap();
    assert_eq!(p.as_str(), "/file.txt");
    up.file().write_all(b"one").unwrap();
    up.commit().unwrap();
    let (p, up) = fx.fs.create_unique(&root, "file.txt").unwrap();
    assert_eq!(p.as_str(), "/file.txt.1");
    drop(up); // in place: the (empty) file stays
    symlink("nowhere", fx.home.join("file.txt.2")).unwrap();
    let (p, mut up) = fx.fs.create_unique(&root, "file.txt").unwrap();
    assert_eq!(p.as_str(), "/file.txt.3");
    up.file().write_all(b"three").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("file.txt")).unwrap(), b"one");
    assert_eq!(fs::read(fx.home.join("file.txt.3")).unwrap(), b"three");
    assert!(!fx.home.join("nowhere").exists());
    assert_eq!(
        raw_names(&fx.home),
        ["file.txt", "file.txt.1", "file.txt.2", "file.txt.3"]
    );

    fs::create_dir(fx.home.join("sub")).unwrap();
    let (p, _up) = fx.fs.create_unique(&vp("/sub"), "file.txt").unwrap();
    assert_eq!(p.as_str(), "/sub/file.txt");
    for bad in ["", "..", "a/b"] {
        assert!(matches!(
            fx.fs.create_unique(&root, bad),
            Err(StorageError::InvalidName)
        ));
    }
    assert!(matches!(
        fx.fs.create_unique(&vp("/missing"), "x"),
        Err(StorageError::NotFound)
    ));
}

// ---------------------------------------------------------------------------------------------
// Directory operations and metadata

#[test]
fn mkdir_rmdir_remove() {
    let fx = fixture();
    let home_fs = &fx.fs;
    home_fs.mkdir(&vp("/d")).unwrap();
    assert!(fx.home.join("d").is_dir());
    assert!(home_fs.is_dir(&vp("/d")));
    assert!(matches!(
        home_fs.mkdir(&vp("/d")),
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        home_fs.mkdir(&vp("/")),
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        home_fs.mkdir(&vp("/x/y")),
        Err(StorageError::NotFound)
    ));
    home_fs.mkdir(&vp("/d/e")).unwrap();
    assert!(matches!(
        home_fs.rmdir(&vp("/d")),
        Err(StorageError::DirectoryNotEmpty)
    ));
    assert!(fx.home.join("d/e").is_dir());
    assert!(matches!(
        home_fs.remove_file(&vp("/d")),
        Err(StorageError::IsADirectory)
    ));
    assert!(matches!(
        home_fs.remove_file(&vp("/")),
        Err(StorageError::IsADirectory)
    ));
    assert!(matches!(
        home_fs.rmdir(&vp("/")),
        Err(StorageError::PermissionDenied)
    ));
    assert!(fx.home.is_dir());
    home_fs.rmdir(&vp("/d/e")).unwrap();
    home_fs.rmdir(&vp("/d")).unwrap();
    assert!(!fx.home.join("d").exists());
    assert!(matches!(
        home_fs.rmdir(&vp("/d")),
        Err(StorageError::NotFound)
    ));

    fs::write(fx.home.join("f"), b"x").unwrap();
    assert!(matches!(
        home_fs.rmdir(&vp("/f")),
        Err(StorageError::NotADirectory)
    ));
    home_fs.remove_file(&vp("/f")).unwrap();
    assert!(!fx.home.join("f").exists());
    assert!(matches!(
        home_fs.remove_file(&vp("/f")),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn rename_semantics() {
    let fx = fixture();
    let home_fs = &fx.fs;
    fs::write(fx.home.join("a"), b"A").unwrap();
    fs::create_dir_all(fx.home.join("d/inner")).unwrap();
    home_fs.rename(&vp("/a"), &vp("/d/b")).unwrap();
    assert!(!fx.home.join("a").exists());
    assert_eq!(fs::read(fx.home.join("d/b")).unwrap(), b"A");
    home_fs.rename(&vp("/d"), &vp("/e")).unwrap();
    assert!(fx.home.join("e/inner").is_dir());

    assert!(matches!(
        home_fs.rename(&vp("/e"), &vp("/e/inner/x")),
        Err(StorageError::InvalidName)
    ));
    assert!(matches!(
        home_fs.rename(&vp("/e"), &vp("/e/x")),
        Err(StorageError::InvalidName)
    ));
    // Through a symlink the kernel catches it.
    symlink("e/inner", fx.home.join("inlink")).unwrap();
    assert!(matches!(
        home_fs.rename(&vp("/e"), &vp("/inlink/x")),
        Err(StorageError::InvalidName)
    ));
    assert!(fx.home.join("e/inner").is_dir());
    // A sibling sharing a prefix is not "inside".
    home_fs.rename(&vp("/e"), &vp("/e2")).unwrap();
    home_fs.rename(&vp("/e2"), &vp("/e")).unwrap();

    assert!(matches!(
        home_fs.rename(&vp("/"), &vp("/x")),
        Err(StorageError::PermissionDenied)
    ));
    assert!(matches!(
        home_fs.rename(&vp("/e/b"), &vp("/")),
        Err(StorageError::PermissionDenied)
    ));
    assert!(matches!(
        home_fs.rename(&vp("/nope"), &vp("/x")),
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        home_fs.rename(&vp("/e/b"), &vp("/e/inner")),
        Err(StorageError::IsADirectory)
    ));
    assert_eq!(fs::read(fx.home.join("e/b")).unwrap(), b"A");
}

#[test]
fn metadata_and_list() {
    let fx = fixture();
    fs::write(fx.home.join("b.txt"), b"12345").unwrap();
    fs::create_dir(fx.home.join("a")).unwrap();
    fs::write(fx.home.join("C"), b"").unwrap();
    let home_fs = &fx.fs;

    let root = home_fs.metadata(&VPath::root()).unwrap();
    assert_eq!(root.name, "/");
    assert_eq!(root.kind, EntryKind::Dir);
    let b = home_fs.metadata(&vp("/b.txt")).unwrap();
    assert_eq!(
        (b.name.as_str(), b.kind, b.size),
        ("b.txt", EntryKind::File, 5)
    );
    assert_eq!(b.mode & 0o170000, 0o100000);
    assert_eq!(b.nlink, 1);
    assert!(b.modified.is_some());
    assert!(matches!(
        home_fs.metadata(&vp("/zzz")),
        Err(StorageError::NotFound)
    ));

    let entries = home_fs.list(&VPath::root()).unwrap();
    assert_eq!(names(&entries), ["C", "a", "b.txt"]);
    assert_eq!(entries[1].kind, EntryKind::Dir);
    assert_eq!(entries[1].mode & 0o170000, 0o040000);
    assert_eq!(entries[2].size, 5);
    assert!(home_fs.list(&vp("/a")).unwrap().is_empty());
    assert!(matches!(
        home_fs.list(&vp("/b.txt")),
        Err(StorageError::NotADirectory)
    ));
    assert!(matches!(
        home_fs.list(&vp("/zzz")),
        Err(StorageError::NotFound)
    ));
    assert!(!home_fs.is_dir(&vp("/b.txt")));
    assert!(home_fs.is_dir(&VPath::root()));
}

#[test]
fn set_modified_round_trip() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"x").unwrap();
    fs::create_dir(fx.home.join("d")).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fx.fs.set_modified(&vp("/f"), t).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("f")).unwrap().modified().unwrap(),
        t
    );
    assert_eq!(fx.fs.metadata(&vp("/f")).unwrap().modified, Some(t));
    let t2 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    fx.fs.set_modified(&vp("/d"), t2).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("d")).unwrap().modified().unwrap(),
        t2
    );
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"x");
    assert!(matches!(
        fx.fs.set_modified(&vp("/nope"), t),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn set_mode_round_trip() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"x").unwrap();
    fs::create_dir(fx.home.join("d")).unwrap();
    fx.fs.set_mode(&vp("/f"), 0o640).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
    assert_eq!(fx.fs.metadata(&vp("/f")).unwrap().mode & 0o7777, 0o640);
    // Type bits, setuid, setgid and sticky are never set.
    fx.fs.set_mode(&vp("/f"), 0o177_604).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("f"))
            .unwrap()
            .permissions()
            .mode(),
        0o100_604
    );
    fx.fs.set_mode(&vp("/d"), 0o750).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert!(matches!(
        fx.fs.set_mode(&vp("/nope"), 0o600),
        Err(StorageError::NotFound)
    ));
}

#[test]
fn open_requires_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        LocalFs::open(&tmp.path().join("missing")),
        Err(StorageError::NotFound)
    ));
    fs::write(tmp.path().join("file"), b"").unwrap();
    assert!(matches!(
        LocalFs::open(&tmp.path().join("file")),
        Err(StorageError::NotADirectory)
    ));
    // Clones share the handle and both work.
    let a = LocalFs::open(tmp.path()).unwrap();
    let b = a.clone();
    a.mkdir(&vp("/x")).unwrap();
    assert!(b.is_dir(&vp("/x")));
}

#[test]
fn in_place_changes_refuse_a_file_with_other_hard_links() {
    let fx = fixture();
    // A hard link in the home to a file outside it.
    fs::hard_link(fx.outside.join("secret"), fx.home.join("link")).unwrap();
    let before = fs::metadata(fx.outside.join("secret")).unwrap();
    for mode in [WriteMode::Append, WriteMode::At(3), WriteMode::AppendAt(10)] {
        assert!(
            matches!(
                fx.fs.create_upload(&vp("/link"), mode),
                Err(StorageError::HardLinked)
            ),
            "{mode:?}"
        );
    }
    assert!(matches!(
        fx.fs.set_mode(&vp("/link"), 0o666),
        Err(StorageError::HardLinked)
    ));
    assert!(matches!(
        fx.fs.set_modified(&vp("/link"), SystemTime::UNIX_EPOCH),
        Err(StorageError::HardLinked)
    ));
    let after = fs::metadata(fx.outside.join("secret")).unwrap();
    assert_eq!(fs::read(fx.outside.join("secret")).unwrap(), b"top secret");
    assert_eq!(before.permissions().mode(), after.permissions().mode());
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    // STOR replaces the link (temp file and rename) and never writes through.
    let mut up = fx
        .fs
        .create_upload(&vp("/link"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"new").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("link")).unwrap(), b"new");
    assert_eq!(fs::read(fx.outside.join("secret")).unwrap(), b"top secret");
}

#[test]
fn append_at_only_resumes_at_the_end() {
    let fx = fixture();
    fs::write(fx.home.join("f"), b"12345").unwrap();
    assert!(matches!(
        fx.fs.create_upload(&vp("/f"), WriteMode::AppendAt(1)),
        Err(StorageError::WouldOverwrite)
    ));
    assert!(matches!(
        fx.fs.create_upload(&vp("/f"), WriteMode::AppendAt(6)),
        Err(StorageError::InvalidOffset)
    ));
    assert!(matches!(
        fx.fs.create_upload(&vp("/g"), WriteMode::AppendAt(1)),
        Err(StorageError::InvalidOffset)
    ));
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"12345");
    let mut up = fx
        .fs
        .create_upload(&vp("/f"), WriteMode::AppendAt(5))
        .unwrap();
    up.file().write_all(b"67").unwrap();
    up.commit().unwrap();
    assert_eq!(fs::read(fx.home.join("f")).unwrap(), b"1234567");
}

#[test]
fn rename_no_replace_keeps_an_existing_target() {
    let fx = fixture();
    fs::write(fx.home.join("a"), b"a").unwrap();
    fs::write(fx.home.join("b"), b"b").unwrap();
    fs::create_dir(fx.home.join("d")).unwrap();
    fs::create_dir(fx.home.join("e")).unwrap();
    assert!(matches!(
        fx.fs.rename_no_replace(&vp("/a"), &vp("/b")),
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        fx.fs.rename_no_replace(&vp("/d"), &vp("/e")),
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(fs::read(fx.home.join("a")).unwrap(), b"a");
    assert_eq!(fs::read(fx.home.join("b")).unwrap(), b"b");
    // A free name works, across directories too.
    fx.fs.rename_no_replace(&vp("/a"), &vp("/d/c")).unwrap();
    assert_eq!(fs::read(fx.home.join("d/c")).unwrap(), b"a");
    // The same confinement as rename.
    assert!(matches!(
        fx.fs.rename_no_replace(&vp("/d"), &vp("/d/x")),
        Err(StorageError::InvalidName)
    ));
    symlink(&fx.outside, fx.home.join("out")).unwrap();
    assert!(fx.fs.rename_no_replace(&vp("/b"), &vp("/out/b")).is_err());
    assert!(!fx.outside.join("b").exists());
}

#[test]
fn names_with_line_ends_are_refused_and_hidden() {
    let fx = fixture();
    for bad in ["a\rb", "a\nb", "dir/x\r"] {
        assert!(matches!(
            VPath::resolve(&VPath::root(), bad),
            Err(StorageError::InvalidName)
        ));
    }
    fs::write(fx.home.join("ok"), b"").unwrap();
    fs::write(fx.home.join("forged\r\n226 x"), b"").unwrap();
    let names: Vec<String> = fx
        .fs
        .list(&vp("/"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["ok"]);
}

#[test]
fn set_mode_checks_and_changes_one_handle_while_names_are_swapped() {
    // Another session swaps (RNTO) a hard link to an outside file with a plain file under the
    // same name as fast as it can; SITE CHMOD must never reach the outside file. Checking the
    // link count by path and then chmodding by path again loses this race within a few
    // hundred tries.
    let fx = fixture();
    let secret = fx.outside.join("secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::hard_link(&secret, fx.home.join("link")).unwrap();
    fs::write(fx.home.join("plain"), b"x").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (home, stop) = (fx.home.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Swap the names `t` and `link`/`plain` back and forth: `t` is the target.
                let _ = fs::rename(home.join("plain"), home.join("t"));
                let _ = fs::rename(home.join("t"), home.join("plain"));
                let _ = fs::rename(home.join("link"), home.join("t"));
                let _ = fs::rename(home.join("t"), home.join("link"));
            }
        })
    };
    for _ in 0..5000 {
        match fx.fs.set_mode(&vp("/t"), 0o666) {
            Ok(()) | Err(StorageError::HardLinked | StorageError::NotFound) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

#[test]
fn open_read_refuses_a_fifo_without_blocking_and_starts_at_the_offset() {
    let fx = fixture();
    // No writer: a plain open for reading would wait for one forever.
    mkfifo(&fx.home.join("fifo"));
    assert!(matches!(
        fx.fs.open_read(&vp("/fifo"), 0),
        Err(StorageError::PermissionDenied)
    ));
    // Through a symlink too.
    symlink("fifo", fx.home.join("to-fifo")).unwrap();
    assert!(matches!(
        fx.fs.open_read(&vp("/to-fifo"), 0),
        Err(StorageError::PermissionDenied)
    ));
    fs::write(fx.home.join("f"), b"0123456789").unwrap();
    let (f, len) = fx.fs.open_read(&vp("/f"), 0).unwrap();
    assert_eq!((len, read_all(f)), (10, b"0123456789".to_vec()));
    let (f, _) = fx.fs.open_read(&vp("/f"), 4).unwrap();
    assert_eq!(read_all(f), b"456789");
}

#[test]
fn set_mode_refuses_special_files_without_blocking_and_changes_unreadable_files() {
    let fx = fixture();
    // A FIFO with no writer: opening it for reading would block without O_NONBLOCK.
    mkfifo(&fx.home.join("fifo"));
    assert!(matches!(
        fx.fs.set_mode(&vp("/fifo"), 0o600),
        Err(StorageError::PermissionDenied)
    ));
    // A file with no permission bits can still be given some by its owner.
    fs::write(fx.home.join("locked"), b"x").unwrap();
    fs::set_permissions(fx.home.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fx.fs.set_mode(&vp("/locked"), 0o640).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("locked"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
    // A symlink inside the home is followed to its target, as before.
    symlink("locked", fx.home.join("ln")).unwrap();
    fx.fs.set_mode(&vp("/ln"), 0o600).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("locked"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
}

#[test]
fn set_mode_through_a_path_only_handle_checks_links_and_changes_the_file() {
    // The fallback for a file its owner may neither read nor write (tests run as root, so
    // set_mode itself never needs it here).
    let fx = fixture();
    fs::write(fx.home.join("f"), b"x").unwrap();
    let file = fx
        .fs
        .open_nonblocking(&vp("/f"), false, libc::O_PATH)
        .unwrap();
    change_mode(&file, true, 0o4751).unwrap();
    assert_eq!(
        fs::metadata(fx.home.join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o751
    );
    fs::hard_link(fx.outside.join("secret"), fx.home.join("link")).unwrap();
    let file = fx
        .fs
        .open_nonblocking(&vp("/link"), false, libc::O_PATH)
        .unwrap();
    assert!(matches!(
        change_mode(&file, true, 0o666),
        Err(StorageError::HardLinked)
    ));
    assert!(matches!(
        fx.fs
            .open_nonblocking(&vp("/rel-secret"), false, libc::O_PATH)
            .map(drop)
            .map_err(StorageError::from),
        Err(StorageError::Escape | StorageError::NotFound)
    ));
}

#[test]
fn a_replacement_hands_back_the_old_file_to_free_after_the_reply() {
    use std::os::unix::fs::MetadataExt;
    let fx = fixture();
    fs::write(fx.home.join("f.bin"), b"old content").unwrap();
    let old_inode = fs::metadata(fx.home.join("f.bin")).unwrap().ino();
    let mut up = fx
        .fs
        .create_upload(&vp("/f.bin"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"new").unwrap();
    let replaced = up.commit_with(SyncPolicy::Never).unwrap();
    // The name already holds the new file; the old one lives on only in the handle.
    assert_eq!(fs::read(fx.home.join("f.bin")).unwrap(), b"new");
    assert_ne!(
        fs::metadata(fx.home.join("f.bin")).unwrap().ino(),
        old_inode
    );
    assert_eq!(replaced.inode(), Some(old_inode));
    drop(replaced);

    // A new name replaced nothing.
    let mut up = fx
        .fs
        .create_upload(&vp("/g.bin"), WriteMode::Replace)
        .unwrap();
    up.file().write_all(b"fresh").unwrap();
    assert_eq!(up.commit_with(SyncPolicy::Never).unwrap().inode(), None);
}
