//! Moving from another server: users whose hashes are bcrypt or crypt(3) (SHA-512, SHA-256,
//! MD5) log in; with `auth.rehash_to_argon2` their hash becomes argon2id in the users file;
//! `ferroftp import-users` brings accounts from ProFTPD, Pure-FTPd and passwd+shadow files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Ctrl, Options, TestServer, bin, run};

// Hashes made with `openssl passwd` and Python's crypt module (libxcrypt); the password of each
// is its user's name followed by "-pw".
const ALICE_MD5: &str = "$1$Ab3dE6gH$bTn7qJl7GNT1xXtxpDAWB1";
const BOB_SHA512: &str = "$6$bobsaltbobsalt12$lab.aVHrkqr8xB5Lesf.gBBTlyirzi4iSRJXLBiWZw71g12QveLBAU7vcFSy4jykfl7MvZV6VezR15/aRK0JZ/";
const CAROL_BCRYPT: &str = "$2b$05$CarolSaltCarolSaltCareNveiyKdSda/yYKeG7KONPgtKNQ5fBfu";
const DAVE_SHA256: &str = "$5$rounds=2000$davesalt$vboKMRXzn2fjEKsZ1aD41vgpJsI41vNfnaQFDNEiTl0";
const ERIN_BCRYPT_2A: &str = "$2a$04$ErinSaltErinSaltErinSOwAgHnS3xJxl4AlVDWBxiE2D8zm2YTGK";
const FRANK_SHA512: &str = "$6$rounds=1000$franksalt$zCrntBoz8/.O3cHoUkVKfxhg8uIf/.AGNcin2NUqR1UQ9MdbWWx2lzmhBQ2EayYHNLxu4LzXPbnQVjqf1u96d0";

const ALL_HASHES: [&str; 6] = [
    ALICE_MD5,
    BOB_SHA512,
    CAROL_BCRYPT,
    DAVE_SHA256,
    ERIN_BCRYPT_2A,
    FRANK_SHA512,
];

/// A users file with these (name, hash) users and a comment, in a directory of its own.
fn users_file(users: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let mut text = String::from("# moved from the old server\n");
    for (name, hash) in users {
        text.push_str(&format!(
            "\n[[user]]\nname = {name:?}  # {name}'s account\npassword = {hash:?}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A server on `users`, with failed logins neither slowed nor banned from loopback.
fn server(users: &Path, extra: &str) -> TestServer {
    // The imported homes are absolute, beside the root.
    let auth = "[auth]\nallow_homes_outside_root = true\n";
    let extra = if extra.contains("[auth]\n") {
        extra.replace("[auth]\n", auth)
    } else {
        format!("{extra}\n{auth}")
    };
    TestServer::with(Options {
        config: format!(
            "users_file = {:?}\n{extra}\n[bans]\nallow = [\"127.0.0.0/8\"]\n",
            users.to_str().unwrap()
        ),
        ..Options::default()
    })
}

fn login_reply(server: &TestServer, user: &str, password: &str) -> (u16, String) {
    let mut c = server.connect();
    c.cmd_ok(&format!("USER {user}"), 331);
    c.cmd(&format!("PASS {password}"))
}

fn assert_logs_in(server: &TestServer, user: &str) -> Ctrl {
    let mut c = server.connect();
    c.login(user, &format!("{user}-pw"));
    c.cmd_ok("PWD", 257);
    c
}

/// The `password` of `user` in a users file.
fn hash_in(users: &Path, user: &str) -> String {
    let text = std::fs::read_to_string(users).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["user"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"].as_str() == Some(user))
        .unwrap_or_else(|| panic!("no {user} in {text}"))["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn bcrypt_and_crypt_hashes_log_in_and_wrong_passwords_get_the_same_reply() {
    let (_dir, users) = users_file(&[
        ("alice", ALICE_MD5),
        ("bob", BOB_SHA512),
        ("carol", CAROL_BCRYPT),
        ("dave", DAVE_SHA256),
        ("erin", ERIN_BCRYPT_2A),
        ("frank", FRANK_SHA512),
    ]);
    let before = std::fs::read_to_string(&users).unwrap();
    let mut server = server(&users, "[auth]\nrehash_to_argon2 = false");
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let mut c = assert_logs_in(&server, user);
        assert!(c.list("LIST").is_empty());
        c.cmd_ok("QUIT", 221);
    }
    // A wrong password, an unknown user and another user's password: one reply for all.
    let refused = login_reply(&server, "alice", "wrong-pw");
    assert_eq!(refused, (530, "Login incorrect".to_owned()));
    for (user, password) in [
        ("bob", "alice-pw"),
        ("carol", "carol-PW"),
        ("dave", ""),
        ("nobody", "alice-pw"),
        ("erin", "erin-pw "),
    ] {
        assert_eq!(login_reply(&server, user, password), refused, "{user}");
    }
    let log = server.log();
    assert!(log.contains("user=alice failures=1"), "{log}");
    for secret in ["alice-pw", "wrong-pw", "carol-PW"] {
        assert!(!log.contains(secret), "password in the log:\n{log}");
    }
    assert!(!log.contains("upgraded"), "{log}");
    // Off: the file is left alone.
    assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    assert_still_serving_as(&mut server, "bob", "bob-pw");
}

#[test]
fn rehash_rewrites_the_file_to_argon2id_and_logins_go_on_across_reload_and_restart() {
    let (_dir, users) = users_file(&[
        ("alice", ALICE_MD5),
        ("bob", BOB_SHA512),
        ("carol", CAROL_BCRYPT),
    ]);
    // auth.rehash_to_argon2 is on by default.
    let server1 = server(&users, "");
    let _alice = assert_logs_in(&server1, "alice");
    let log = server1.wait_for_log("password hash upgraded to argon2id", 20);
    assert!(log.contains("from=md5-crypt"), "{log}");
    let upgraded = hash_in(&users, "alice");
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.starts_with("# moved from the old server\n"), "{text}");
    assert!(
        text.contains("name = \"alice\"  # alice's account"),
        "{text}"
    );
    assert_eq!(hash_in(&users, "bob"), BOB_SHA512);
    assert_eq!(hash_in(&users, "carol"), CAROL_BCRYPT);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The rewrite keeps the owner's (and the group's) access, never others' (the file
        // holds hashes).
        let mode = std::fs::metadata(&users).unwrap().permissions().mode();
        assert_eq!((mode & 0o700, mode & 0o007), (0o600, 0), "{mode:o}");
    }

    // Until a reload the server goes on with the old hash, and upgrades a user only once.
    let _again = assert_logs_in(&server1, "alice");
    let _carol = assert_logs_in(&server1, "carol");
    let log = server1.wait_for_log("from=bcrypt", 20);
    assert_eq!(log.matches("password hash upgraded").count(), 2, "{log}");
    assert!(hash_in(&users, "carol").starts_with("$argon2id$"));
    assert_eq!(hash_in(&users, "alice"), upgraded);
    assert_eq!(
        login_reply(&server1, "alice", "wrong-pw"),
        (530, "Login incorrect".to_owned())
    );

    // A reload reads the argon2id hashes; the passwords are the same.
    server1.reloaded(1);
    let _alice = assert_logs_in(&server1, "alice");
    let _carol = assert_logs_in(&server1, "carol");
    assert_eq!(
        login_reply(&server1, "carol", "alice-pw"),
        (530, "Login incorrect".to_owned())
    );
    let log = server1.log();
    assert!(
        !log.contains("alice-pw") && !log.contains("carol-pw"),
        "{log}"
    );
    drop(server1);

    // So does a restart; bob, never logged in, still has his old hash and gets it upgraded.
    let server2 = server(&users, "");
    let _alice = assert_logs_in(&server2, "alice");
    let _bob = assert_logs_in(&server2, "bob");
    let log = server2.wait_for_log("from=sha512-crypt", 20);
    assert_eq!(log.matches("password hash upgraded").count(), 1, "{log}");
    assert!(hash_in(&users, "bob").starts_with("$argon2id$"));
    assert_eq!(hash_in(&users, "alice"), upgraded);
}

#[test]
fn rehash_never_overwrites_a_password_changed_since_the_file_was_loaded() {
    let (_dir, users) = users_file(&[("alice", ALICE_MD5), ("bob", BOB_SHA512)]);
    let server = server(&users, "");
    // The administrator sets a new password for alice; the server has not reloaded yet.
    common::add_user(&users, "alice", "brand-new", None);
    let changed = hash_in(&users, "alice");
    let _alice = assert_logs_in(&server, "alice");
    let _bob = assert_logs_in(&server, "bob");
    server.wait_for_log("from=sha512-crypt", 20);
    server.wait_for_log("no longer holds the hash that was checked", 20);
    assert_eq!(hash_in(&users, "alice"), changed);
    server.reloaded(1);
    let mut c = server.connect();
    c.login("alice", "brand-new");
    let _bob = assert_logs_in(&server, "bob");
}

// ---------------------------------------------------------------------------------------------
// import-users
// ---------------------------------------------------------------------------------------------

/// `ferroftp import-users ARGS`; without `-c`, with `--allow-home-outside-root`, as the homes
/// these tests import are absolute, beside the root (the servers here allow that).
fn import(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("import-users").args(args);
    if !args.contains(&"-c") {
        cmd.arg("--allow-home-outside-root");
    }
    let (ok, out, err) = run(&mut cmd);
    for hash in ALL_HASHES {
        assert!(
            !out.contains(hash) && !err.contains(hash),
            "a hash was printed:\n{out}\n{err}"
        );
    }
    (ok, out, err)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_users_from_proftpd_pureftpd_and_shadow_then_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let homes = d.join("homes");
    for h in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        std::fs::create_dir_all(homes.join(h)).unwrap();
        std::fs::write(homes.join(h).join(format!("{h}.txt")), h).unwrap();
    }
    let users = d.join("users.toml");
    // Someone already there, with settings of their own that an import must keep.
    std::fs::write(
        &users,
        format!(
            "# ours\n[[user]]\nname = \"alice\"\npassword = \"{FRANK_SHA512}\"\n\
             permissions = [\"list\", \"read\"]  # read-only\n"
        ),
    )
    .unwrap();

    // ProFTPD: alice (MD5), bob (SHA-512, locked with ftpasswd --lock), a user without a
    // password, and one whose yescrypt hash ferroftp cannot verify.
    let proftpd = d.join("ftpd.passwd");
    std::fs::write(
        &proftpd,
        format!(
            "alice:{ALICE_MD5}:1001:1001:Alice:{}/:/bin/false\n\
             bob:!{BOB_SHA512}:1002:1002::{}:/bin/false\n\
             nopw:*:1003:1003::/tmp:/bin/false\n\
             yes:$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7:1004:1004::/tmp:/bin/false\n",
            s(&homes.join("alice")),
            s(&homes.join("bob"))
        ),
    )
    .unwrap();
    let (ok, out, err) = import(&["--users", s(&users), "--proftpd", s(&proftpd)]);
    assert!(!ok, "skipped accounts make it fail:\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "alice: updated (md5-crypt, home {})",
            s(&homes.join("alice"))
        ),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            "bob: added (sha512-crypt, home {}, disabled)",
            s(&homes.join("bob"))
        ),
        "{out}"
    );
    assert!(
        lines[2].starts_with("bob:   disabled: the password is locked"),
        "{out}"
    );
    assert!(
        lines[3].starts_with(&format!("nopw: skipped: {} line 3: ", s(&proftpd))),
        "{out}"
    );
    assert!(
        lines[4].starts_with(&format!("yes: skipped: {} line 4: yescrypt", s(&proftpd))),
        "{out}"
    );
    assert!(err.contains("1 added, 1 updated, 2 skipped"), "{err}");
    assert!(err.contains("2 account(s) not imported"), "{err}");
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.starts_with("# ours\n")
            && text.contains("permissions = [\"list\", \"read\"]  # read-only"),
        "{text}"
    );

    // Pure-FTPd: carol (bcrypt, confined with pure-pw -d), dave (SHA-256 with rounds=); only
    // the named ones.
    let pure = d.join("pureftpd.passwd");
    std::fs::write(
        &pure,
        format!(
            "carol:{CAROL_BCRYPT}:2001:2001:Carol:{}/./::::::::::::\n\
             dave:{DAVE_SHA256}:2001:2001::{}/./::::::::5242880::::\n\
             zed:{ERIN_BCRYPT_2A}:2001:2001::/nowhere/./::::::::::::\n",
            s(&homes.join("carol")),
            s(&homes.join("dave"))
        ),
    )
    .unwrap();
    let (ok, out, err) = import(&[
        "--users",
        s(&users),
        "--pureftpd",
        s(&pure),
        "carol",
        "dave",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        out,
        format!(
            "carol: added (bcrypt, home {})\ndave: added (sha256-crypt, home {})\n",
            s(&homes.join("carol")),
            s(&homes.join("dave"))
        )
    );

    // passwd + shadow (copies in the temporary directory): erin and frank, with homes under
    // --home-root; root is in the files but not asked for.
    let passwd = d.join("passwd");
    let shadow = d.join("shadow");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/bash\n\
         erin:x:1000:1000:Erin:/home/erin:/bin/bash\n\
         frank:x:1001:1001:Frank:/home/frank:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        &shadow,
        format!(
            "root:{ALICE_MD5}:19000:0:99999:7:::\n\
             erin:{ERIN_BCRYPT_2A}:19000:0:99999:7:::\n\
             frank:{FRANK_SHA512}:19000:0:99999:7:::\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = import(&[
        "--users",
        s(&users),
        "--system",
        "--passwd",
        s(&passwd),
        "--shadow",
        s(&shadow),
    ]);
    assert!(
        !ok && err.contains("--system imports only the users named"),
        "{out}\n{err}"
    );
    let (ok, out, err) = import(&[
        "--users",
        s(&users),
        "--system",
        "--passwd",
        s(&passwd),
        "--shadow",
        s(&shadow),
        "--home-root",
        s(&homes),
        "erin",
        "frank",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "frank: added (sha512-crypt, home {})",
            s(&homes.join("frank"))
        )),
        "{out}"
    );
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(!text.contains("root"), "{text}");

    // A malformed line: the file and the line, nothing written.
    let broken = d.join("broken.passwd");
    std::fs::write(
        &broken,
        format!("x:{ALICE_MD5}:1:1::/a:/bin/sh\ny:{ALICE_MD5}:1\n"),
    )
    .unwrap();
    let (ok, _, err) = import(&["--users", s(&users), "--proftpd", s(&broken)]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{}: line 2: expected 7 fields", s(&broken))),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&users).unwrap(), text);

    // Everyone imported logs in with their old password, confined to their home; bob is
    // disabled; alice kept her read-only permissions.
    let server = server(&users, "[auth]\nrehash_to_argon2 = false");
    for user in ["alice", "carol", "dave", "erin", "frank"] {
        let mut c = assert_logs_in(&server, user);
        assert_eq!(c.retr(&format!("{user}.txt")), user.as_bytes(), "{user}");
        c.cmd_ok("QUIT", 221);
    }
    assert_eq!(
        login_reply(&server, "bob", "bob-pw"),
        (530, "Login incorrect".to_owned())
    );
    let mut alice = assert_logs_in(&server, "alice");
    let (code, _) = alice.cmd("MKD new");
    assert_eq!(code, 550);
}

/// Like `assert_still_serving`, for a server without a generated user.
fn assert_still_serving_as(server: &mut TestServer, user: &str, password: &str) {
    assert!(server.is_running(), "server died; log:\n{}", server.log());
    let mut c = server.connect();
    c.login(user, password);
    c.cmd_ok("NOOP", 200);
    c.cmd_ok("QUIT", 221);
}

/// README's `import-users --system`: the system homes (/home/NAME) are outside the server's
/// root, which the server refuses (the whole users file, at its next reload or start). The
/// import checks every home first, as the server would, and writes nothing; with the homes
/// under the root it goes in, and the running server reloads the file and serves it.
#[test]
fn import_users_refuses_homes_outside_the_root_before_writing_and_the_server_keeps_reloading() {
    let (dir, users) = users_file(&[("bob", BOB_SHA512)]);
    let d = dir.path();
    // Default settings: homes stay under the root.
    let server = TestServer::with(Options {
        config: format!(
            "users_file = {:?}\n[bans]\nallow = [\"127.0.0.0/8\"]\n",
            s(&users)
        ),
        ..Options::default()
    });
    let config = d.join("ferroftp.toml");
    std::fs::write(
        &config,
        format!(
            "root = {:?}\nusers_file = {:?}\n",
            s(&server.root),
            s(&users)
        ),
    )
    .unwrap();
    let passwd = d.join("passwd");
    let shadow = d.join("shadow");
    std::fs::write(&passwd, "frank:x:1001:1001:Frank:/home/frank:/bin/bash\n").unwrap();
    std::fs::write(
        &shadow,
        format!("frank:{FRANK_SHA512}:19000:0:99999:7:::\n"),
    )
    .unwrap();
    let before = std::fs::read_to_string(&users).unwrap();
    let source = [
        "--users",
        s(&users),
        "--system",
        "--passwd",
        s(&passwd),
        "--shadow",
        s(&shadow),
        "frank",
    ];
    // With the server's configuration: refused, naming the user, the home and the key.
    let mut with_config = vec!["-c", s(&config)];
    with_config.extend(source);
    let (ok, out, err) = import(&with_config);
    assert!(!ok, "{out}\n{err}");
    for needle in ["\"frank\"", "/home/frank", "auth.allow_homes_outside_root"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // Without one, an absolute home cannot be checked against the root: refused as well.
    let (ok, out, err) = run(Command::new(bin()).arg("import-users").args(source));
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains("/home/frank") && err.contains("-c FILE"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&users).unwrap(), before);
    server.reloaded(1);
    assert_logs_in(&server, "bob");
    // Under the root: imported; the server reloads the file and frank logs in.
    with_config.extend(["--home-root", "homes"]);
    let (ok, out, err) = import(&with_config);
    assert!(ok, "{out}\n{err}");
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.log().matches("configuration reloaded").count() < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = server.log();
    assert_eq!(
        log.matches("configuration reloaded").count(),
        2,
        "a reload was refused:\n{log}"
    );
    assert_logs_in(&server, "frank");
}
