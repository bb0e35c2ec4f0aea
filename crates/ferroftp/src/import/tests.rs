//! Tests of reading other servers' accounts.

use super::*;
use crate::users::{UserDb, UsersFile};

const SHA512: &str = "$6$saltsaltsaltsalt$dJX0KuyM7nCXuBPN.nYtdrJDotQEB1rFBumzix6FHzliKxLBinGY49pMJNvCoNf9fHmNyZ1IgX/glbcKhuXoh.";
const MD5: &str = "$1$saltsalt$ZliGyAN3DciDHEkDboonh/";
const BCRYPT: &str = "$2y$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write");
    p
}

#[test]
fn proftpd_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "# ftpasswd file\n\
         alice:{SHA512}:1001:1001:Alice:/srv/ftp/alice/:/bin/false\n\
         \n\
         bob:!{MD5}:1002:1002::/srv/ftp/bob:/sbin/nologin\n\
         carol:*:1003:1003::/srv/ftp/carol:/bin/false\n\
         dave:$y$j9T$abc$def:1004:1004::/srv/ftp/dave:/bin/false\n\
         erin:{BCRYPT}:1005:1005::relative:/bin/false\n\
         alice:{MD5}:1001:1001::/elsewhere:/bin/false\n"
    );
    let path = write(dir.path(), "ftpd.passwd", &text);
    let found = read_accounts(&Source::ProFtpd(path.clone()), Options::default()).expect("read");
    let names: Vec<_> = found.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    let alice = &found.accounts[0];
    assert_eq!(alice.password_hash(), SHA512);
    assert_eq!(alice.scheme, HashScheme::Sha512Crypt);
    assert_eq!(alice.home, Path::new("/srv/ftp/alice"));
    assert!(!alice.disabled);
    assert_eq!(alice.origin, format!("{} line 2", path.display()));
    let bob = &found.accounts[1];
    assert_eq!(bob.password_hash(), MD5);
    assert!(bob.disabled);
    assert!(bob.notes[0].contains("locked"), "{:?}", bob.notes);

    let skipped: Vec<_> = found
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(
        skipped[0].1.contains("line 5: it has no password hash"),
        "{skipped:?}"
    );
    assert!(
        skipped[1]
            .1
            .contains("line 6: yescrypt ($y$) hashes are not supported"),
        "{skipped:?}"
    );
    assert!(
        skipped[2]
            .1
            .contains("line 7: its home \"relative\" is not an absolute path"),
        "{skipped:?}"
    );
    assert!(
        skipped[3]
            .1
            .contains("line 8: a second entry for this user (line 2 was imported)"),
        "{skipped:?}"
    );
    let debug = format!("{found:?}");
    for h in [SHA512, MD5, BCRYPT, "$y$j9T$abc$def"] {
        assert!(!debug.contains(h), "{debug}");
        assert!(!skipped.iter().any(|(_, r)| r.contains(h)));
    }

    // Named users only, in the order given; unknown names are reported.
    let names = ["bob".to_owned(), "nobody".to_owned(), "bob".to_owned()];
    let found = read_accounts(
        &Source::ProFtpd(path.clone()),
        Options {
            names: &names,
            home_root: Some(Path::new("/data")),
        },
    )
    .expect("read");
    assert_eq!(found.accounts.len(), 1);
    assert_eq!(found.accounts[0].home, Path::new("/data/bob"));
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].name, "nobody");
    assert!(found.skipped[0].reason.starts_with("not found in "));
}

#[test]
fn malformed_lines_name_file_and_line_without_the_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "ftpd.passwd",
        &format!("alice:{SHA512}:1:1::/a:/bin/sh\nbob:{MD5}:1:1:/b\n"),
    );
    let err = read_accounts(&Source::ProFtpd(path.clone()), Options::default())
        .expect_err("malformed")
        .to_string();
    assert!(
        err.starts_with(&format!("{}: line 2: expected 7 fields", path.display())),
        "{err}"
    );
    assert!(!err.contains(MD5), "{err}");

    let path = write(dir.path(), "pure", &format!("alice:{SHA512}:1:1:\n"));
    let err = read_accounts(&Source::PureFtpd(path), Options::default())
        .expect_err("malformed")
        .to_string();
    assert!(err.contains("line 1: expected at least 6 fields"), "{err}");
}

#[test]
fn pureftpd_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "joe:{BCRYPT}:2001:2001::/home/ftpusers/joe/./::::::::::::\n\
         ann:{SHA512}:2001:2001:Ann:/home/ftpusers/./ann/::::::::::::\n\
         roam:{MD5}:2001:2001::/home/roam::::::::::::\n\
         root:{MD5}:2001:2001::/./::::::::::::\n\
         s:$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D:2001:2001::/x/./::::::::::::\n"
    );
    let path = write(dir.path(), "pureftpd.passwd", &text);
    let found = read_accounts(&Source::PureFtpd(path), Options::default()).expect("read");
    let got: Vec<_> = found
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), a.home.to_str().expect("utf-8"), a.scheme))
        .collect();
    assert_eq!(
        got,
        [
            ("joe", "/home/ftpusers/joe", HashScheme::Bcrypt),
            ("ann", "/home/ftpusers", HashScheme::Sha512Crypt),
            ("roam", "/home/roam", HashScheme::Md5Crypt),
            ("root", "/", HashScheme::Md5Crypt),
        ]
    );
    assert!(found.accounts[0].notes.is_empty());
    assert!(found.accounts[1].notes[0].contains("started this user in \"ann\""));
    assert!(found.accounts[2].notes[0].contains("did not confine"));
    assert!(found.accounts[3].notes[0].contains("whole file system"));
    assert_eq!(found.skipped.len(), 1);
    assert!(
        found.skipped[0]
            .reason
            .contains("scrypt ($7$) hashes are not supported")
    );
}

#[test]
fn system_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = write(
        dir.path(),
        "passwd",
        "root:x:0:0:root:/root:/bin/bash\n\
         alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
         bob:x:1001:1001::/home/bob:/bin/bash\n\
         old:x:1002:1002::/home/old:/bin/bash\n\
         nosh:x:1003:1003::/home/nosh:/bin/bash\n\
         empty:x:1004:1004::/home/empty:/bin/bash\n\
         legacy:$1$saltsalt$ZliGyAN3DciDHEkDboonh/:1005:1005::/home/legacy:/bin/sh\n",
    );
    let shadow = write(
        dir.path(),
        "shadow",
        &format!(
            "root:{SHA512}:19000:0:99999:7:::\n\
             alice:{SHA512}:19000:0:99999:7:::\n\
             bob:!!:19000:0:99999:7:::\n\
             old:{MD5}:19000:0:99999:7::1:\n\
             empty::19000:0:99999:7:::\n"
        ),
    );
    let source = Source::System {
        passwd: passwd.clone(),
        shadow: shadow.clone(),
    };
    assert!(matches!(
        read_accounts(&source, Options::default()),
        Err(ImportError::Usage(_))
    ));
    let names: Vec<String> = ["alice", "bob", "old", "nosh", "empty", "legacy", "nobody"]
        .map(String::from)
        .into();
    let found = read_accounts(
        &source,
        Options {
            names: &names,
            home_root: None,
        },
    )
    .expect("read");
    let got: Vec<_> = found
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), a.disabled, a.scheme))
        .collect();
    assert_eq!(
        got,
        [
            ("alice", false, HashScheme::Sha512Crypt),
            ("old", true, HashScheme::Md5Crypt),
            ("legacy", false, HashScheme::Md5Crypt),
        ]
    );
    assert_eq!(found.accounts[0].home, Path::new("/home/alice"));
    assert!(
        found.accounts[1].notes[0].contains("expired on 1970-01-02"),
        "{:?}",
        found.accounts[1].notes
    );
    let skipped: Vec<_> = found.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["bob", "nosh", "empty", "nobody"]);
    assert!(
        found.skipped[1].reason.contains("no entry"),
        "{:?}",
        found.skipped
    );
    assert!(
        found.skipped[2]
            .reason
            .contains("empty (no password at all)"),
        "{:?}",
        found.skipped
    );
}

#[test]
fn found_accounts_are_written_to_a_directory_all_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = write(
        dir.path(),
        "ftpd.passwd",
        &format!(
            "alice:{SHA512}:1000:1000::/srv/ftp/alice:/bin/false\nbob:!{MD5}:1001:1001::/srv/ftp/bob:/bin/false\n"
        ),
    );
    let found = read_accounts(
        &Source::ProFtpd(passwd),
        Options {
            names: &[],
            home_root: None,
        },
    )
    .expect("read");
    let path = dir.path().join("users.toml");
    let users = UsersFile::open(&path).expect("open");
    assert_eq!(found.write_to(&users).expect("write"), [true, true]);
    assert_eq!(found.write_to(&users).expect("again"), [false, false]);
    let db = UserDb::load(&path).expect("load");
    assert!(db.verify("alice", "hunter2").is_some());
    assert!(db.get("bob").expect("bob").disabled);
    // Nothing found: nothing written, not even to a directory that cannot be edited.
    assert!(
        Found::default()
            .write_to(&UserDb::empty())
            .expect("nothing")
            .is_empty()
    );
    let refused = found.write_to(&UserDb::empty()).expect_err("read-only");
    assert!(
        matches!(refused, crate::users::AuthError::ReadOnly { .. }),
        "{refused}"
    );
}
