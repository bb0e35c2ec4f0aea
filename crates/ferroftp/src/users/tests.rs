//! Tests of hashing, the users in memory, homes and passwords.

use std::fs;
use std::path::{Path, PathBuf};

use argon2::Params;
use argon2::password_hash::PasswordHash;

use super::hash::*;
use super::home::check_home;
use super::password::{PASSWORD_ALPHABET, read_password_line};
use super::test_util::*;
use super::*;
use crate::policy::Permissions;

#[test]
fn hash_and_verify_round_trip() {
    let h = hash_password("correct horse", HashParams::default()).expect("hash");
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    let db = UserDb::empty().with_user(User::new("alice"), h);
    let user = db.verify("alice", "correct horse").expect("verified");
    assert_eq!(user.name, "alice");
    assert_eq!(user.permissions, Permissions::ALL);
    // Salts are random.
    assert_ne!(hash("x"), hash("x"));
}

#[test]
fn wrong_password_unknown_and_disabled_users_are_rejected() {
    let h = hash("secret");
    let text = users_file(&[("alice", &h, ""), ("bob", &h, "disabled = true")]);
    let db = UserDb::parse(&text, "users.toml").expect("parse");
    assert!(db.verify("alice", "secret").is_some());
    assert!(db.verify("alice", "Secret").is_none());
    assert!(db.verify("alice", "").is_none());
    assert!(db.verify("carol", "secret").is_none());
    assert!(db.verify("bob", "secret").is_none());
    assert!(db.verify("ALICE", "secret").is_none());
    assert!(db.get("bob").expect("bob").disabled);
}

#[test]
fn every_failure_runs_one_argon2_verification() {
    let h = hash("secret");
    let text = users_file(&[("alice", &h, ""), ("bob", &h, "disabled = true")]);
    let db = UserDb::parse(&text, "users.toml").expect("parse");
    take_verified();

    assert!(db.verify("alice", "wrong").is_none());
    assert_eq!(take_verified(), vec![h.clone()]);

    // Unknown users are verified against a dummy hash instead, one with the users' own
    // parameters, so that they cost the same.
    let dummy = dummy_hash_for(Cost::Argon2(CHEAP)).to_string();
    assert_eq!(hash_params(&dummy), Some(CHEAP));
    assert!(db.verify("nobody", "wrong").is_none());
    assert_eq!(take_verified(), vec![dummy.clone()]);
    // A disabled user against its own hash, so that the server can tell (and log) that
    // the right password was refused.
    assert!(db.verify("bob", "secret").is_none());
    assert_eq!(take_verified(), vec![h.clone()]);
    assert_eq!(db.check("bob", "secret").unwrap_err(), Refusal::Disabled);
    assert_eq!(db.check("bob", "wrong").unwrap_err(), Refusal::Incorrect);
    take_verified();

    // A user whose hash is unusable also pays for one verification.
    let db = db.with_user(User::new("broken"), "not a hash".to_owned());
    assert!(db.verify("broken", "not a hash").is_none());
    assert_eq!(take_verified(), vec![dummy_hash().to_owned()]);
}

#[test]
fn dummy_hash_uses_default_parameters() {
    let defaults = HashParams::default();
    for h in [dummy_hash(), FALLBACK_DUMMY_HASH] {
        let parsed = PasswordHash::new(h).expect("dummy parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).expect("params");
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (
                defaults.memory_kib,
                defaults.iterations,
                defaults.parallelism
            )
        );
        assert!(verify_hash(h, DUMMY_PASSWORD));
    }
}

#[test]
fn user_debug_redacts_hash() {
    let h = hash("pw");
    let db = UserDb::empty().with_user(User::new("alice"), h.clone());
    let debug = format!("{:?} {:?}", db.get("alice"), db);
    assert!(!debug.contains(&h), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn hash_password_rejects_bad_params() {
    let bad = HashParams {
        memory_kib: 1,
        iterations: 1,
        parallelism: 1,
    };
    assert!(matches!(
        hash_password("x", bad),
        Err(AuthError::HashParams(_))
    ));
}

#[cfg(unix)]
#[test]
fn legacy_hashes_load_verify_and_report_their_scheme() {
    let users: Vec<(String, &str, &str)> = LEGACY
        .iter()
        .map(|(h, scheme)| (scheme.name().replace('-', "_"), *h, ""))
        .collect();
    let users: Vec<(&str, &str, &str)> =
        users.iter().map(|(n, h, e)| (n.as_str(), *h, *e)).collect();
    let db = UserDb::parse(&users_file(&users), "users.toml").expect("parse");
    for ((name, _, _), (_, scheme)) in users.iter().zip(LEGACY) {
        let user = db.verify(name, "hunter2").expect(name);
        assert_eq!(user.hash_scheme(), Some(scheme));
        assert!(user.has_legacy_hash(), "{name}");
        assert!(db.verify(name, "hunter3").is_none(), "{name}");
        assert!(db.verify(name, "").is_none(), "{name}");
        // Never cheap enough for an async worker.
        assert_eq!(db.verify_cost(name), u64::MAX, "{name}");
    }
    assert_eq!(db.verify_cost("nobody"), u64::MAX);
    let argon2 = UserDb::empty().with_user(User::new("a"), hash("x"));
    assert_eq!(
        argon2.get("a").expect("a").hash_scheme(),
        Some(HashScheme::Argon2)
    );
    assert!(!argon2.get("a").expect("a").has_legacy_hash());
    let junk = UserDb::empty().with_user(User::new("b"), "junk".into());
    assert_eq!(junk.get("b").expect("b").hash_scheme(), None);
    assert!(!junk.get("b").expect("b").has_legacy_hash());
    let bad_md5 = UserDb::empty().with_user(User::new("c"), "$1$x".into());
    assert!(!bad_md5.get("c").expect("c").has_legacy_hash());
}

#[test]
fn unknown_users_cost_what_most_users_cost_whatever_the_scheme() {
    let sha_a = LEGACY[1].0;
    let sha_b = "$6$ab$n1ZV1VHJ6c8pUb5bJY49CQ7dhZcLkJSe3OPi.galQW1AxmyKB5TOcbVyXUc1uwJLO0e3IGBcaTzJwgy67.KMN.";
    let h = hash("secret");
    let text = users_file(&[
        ("alice", sha_a, ""),
        ("bob", sha_b, ""),
        ("carol", &h, ""),
        ("dave", sha_a, "disabled = true"),
    ]);
    let db = UserDb::parse(&text, "users.toml").expect("parse");
    take_verified();
    assert!(db.verify("nobody", "hunter2").is_none());
    let verified = take_verified();
    assert_eq!(verified.len(), 1);
    // A SHA-512-crypt dummy with the users' 5000 rounds, not an argon2 one.
    assert_eq!(
        hash_cost(&verified[0]),
        Some(Cost::Legacy(LegacyCost::Sha512(5000)))
    );
    assert!(db.verify("dave", "hunter2").is_none());
    assert_eq!(take_verified(), vec![sha_a.to_owned()]);
    assert!(db.verify("alice", "wrong").is_none());
    assert_eq!(take_verified(), vec![sha_a.to_owned()]);

    // Mostly bcrypt of cost 4: a bcrypt dummy of cost 4.
    let bc = LEGACY[0].0;
    let db = UserDb::parse(
        &users_file(&[("a", bc, ""), ("b", bc, ""), ("c", &h, "")]),
        "users.toml",
    )
    .expect("parse");
    assert!(db.verify("nobody", "x").is_none());
    let verified = take_verified();
    assert_eq!(
        hash_cost(&verified[0]),
        Some(Cost::Legacy(LegacyCost::Bcrypt(4)))
    );
}

#[test]
fn read_password_line_strips_line_ending() {
    let read = |input: &[u8]| read_password_line(&mut &input[..]).expect("read");
    assert_eq!(read(b"pass word\r\nnext\n"), "pass word");
    assert_eq!(read(b"pw\n"), "pw");
    assert_eq!(read(b"pw"), "pw");
    assert_eq!(read(b" pw \n"), " pw ");
    assert_eq!(read(b""), "");
    assert!(read_password_line(&mut &b"\xff\n"[..]).is_err());
}

#[test]
fn generated_passwords_are_long_and_unambiguous() {
    let a = generate_password();
    assert_eq!(a.chars().count(), 20);
    assert!(a.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)), "{a}");
    assert_ne!(a, generate_password());
    for c in "0O1lIo".bytes() {
        assert!(!PASSWORD_ALPHABET.contains(&c));
    }
    let many: String = (0..50).map(|_| generate_password()).collect();
    assert!(many.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn homes_stay_under_the_root_unless_allowed() {
    let root = Path::new("/srv/ftp");
    let ok = |h: &str, out: bool| resolve_home(root, Some(Path::new(h)), out);
    assert_eq!(resolve_home(root, None, false).unwrap(), root);
    assert_eq!(ok("alice", false).unwrap(), Path::new("/srv/ftp/alice"));
    assert_eq!(ok("a/../b/./c", false).unwrap(), Path::new("/srv/ftp/b/c"));
    assert_eq!(ok("/srv/ftp/x/", false).unwrap(), Path::new("/srv/ftp/x"));
    for bad in ["../../../etc", "a/../../x", ".."] {
        let e = ok(bad, true).unwrap_err();
        assert!(e.contains("must stay under the server root"), "{bad}: {e}");
    }
    let e = ok("/etc", false).unwrap_err();
    assert!(e.contains("auth.allow_homes_outside_root"), "{e}");
    assert!(ok("/srv/ftp/../../etc", false).is_err());
    assert!(
        ok("/srv/ftpx", false).is_err(),
        "a sibling is not under the root"
    );
    assert_eq!(ok("/etc", true).unwrap(), Path::new("/etc"));
    assert!(check_home("../x").is_err());
    assert!(check_home("a/../b").is_ok());
}

#[test]
fn a_home_that_links_out_of_the_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    let e = resolve_home(&root, Some(Path::new("etc")), false).unwrap_err();
    assert!(e.contains("symbolic link"), "{e}");
    assert!(resolve_home(&root, Some(Path::new("etc")), true).is_ok());
}

#[test]
fn the_anonymous_home_must_not_hold_a_users_home() {
    let root = Path::new("/srv/ftp");
    let db = |home: Option<&str>| {
        let mut u = User::new("bob");
        u.home = home.map(PathBuf::from);
        UserDb::empty().with_user(u, hash("pw"))
    };
    let pubd = Some(Path::new("pub"));
    assert!(check_homes(root, &db(Some("bob")), pubd, false, "users").is_ok());
    assert!(check_homes(root, &db(None), pubd, false, "users").is_ok());
    let e = check_homes(root, &db(Some("pub/bob")), pubd, false, "users").unwrap_err();
    assert!(e.contains("anonymous.home") && e.contains("\"bob\""), "{e}");
    let e = check_homes(root, &db(Some("bob")), Some(Path::new(".")), false, "users").unwrap_err();
    assert!(e.contains("anonymous users could read"), "{e}");
    let e = check_homes(root, &db(Some("/etc")), None, false, "users file u.toml").unwrap_err();
    assert!(
        e.starts_with("users file u.toml: user \"bob\": home: "),
        "{e}"
    );
}

/// The least a back-end implements: lookups and checks, nothing else.
#[derive(Debug)]
struct Minimal(UserDb);

impl UserDirectory for Minimal {
    fn describe(&self) -> String {
        "a minimal directory".to_owned()
    }

    fn get(&self, name: &str) -> Option<User> {
        self.0.get(name).cloned()
    }

    fn check(&self, name: &str, password: &str) -> Result<User, Refusal> {
        self.0.check(name, password)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn list(&self) -> Result<Vec<User>, AuthError> {
        Ok(self.0.users().cloned().collect())
    }
}

#[test]
fn a_new_directory_gets_safe_defaults_for_what_it_does_not_implement() {
    let cert: crate::policy::Fingerprint =
        ("01:".repeat(31) + "01").parse().expect("a fingerprint");
    let mut alice = User::new("alice");
    alice.client_certs = vec![cert];
    let mut bob = alice.clone();
    bob.name = "bob".to_owned();
    bob.disabled = true;
    let users: Box<dyn UserDirectory> = Box::new(Minimal(
        UserDb::empty()
            .with_user(alice, hash("a"))
            .with_user(bob, hash("b")),
    ));
    // Always checked on a blocking thread.
    assert_eq!(users.verify_cost("alice"), u64::MAX);
    assert!(!users.writable() && !users.is_empty());
    // A certificate logs in only an enabled user that lists it.
    assert!(users.certificate_user("alice", &cert).is_some());
    assert!(
        users
            .certificate_user("alice", &"02".repeat(32).parse().expect("a fingerprint"))
            .is_none()
    );
    assert!(users.certificate_user("bob", &cert).is_none());
    assert!(users.certificate_user("nobody", &cert).is_none());
    // Edits are refused, naming the directory; nothing to upgrade.
    let e = users.delete("alice").expect_err("read-only");
    assert_eq!(
        e.to_string(),
        "a minimal directory is read-only: users cannot be changed at run time"
    );
    let alice = users.check("alice", "a").expect("alice");
    assert_eq!(
        users.upgrade_hash(&alice, "a", CHEAP).expect("upgrade"),
        Upgrade::Unchanged
    );
}
