//! Tests of the users file as a [`UserDirectory`]: what the server and the admin API see.

use crate::policy::Fingerprint;
use std::fs;
use std::sync::Arc;

use super::*;
use crate::policy::Permissions;
use crate::users::directory;
use crate::users::test_util::{CHEAP, hash, users_file};

/// A users file with alice (read-only, enabled, one client certificate) and bob (disabled).
fn sample(dir: &Path) -> PathBuf {
    let path = dir.join("users.toml");
    let h = hash("secret");
    let cert = "AB:".repeat(31) + "AB";
    let text = users_file(&[
        (
            "alice",
            &h,
            &format!("permissions = [\"list\", \"read\"]\nclient_cert_sha256 = [{cert:?}]"),
        ),
        ("bob", &h, "disabled = true"),
    ]);
    fs::write(&path, text).expect("write");
    path
}

#[test]
fn the_users_file_looks_users_up_and_checks_passwords_and_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sample(dir.path());
    let users: Arc<dyn UserDirectory> = Arc::new(UsersFile::open(&path).expect("open"));

    assert_eq!(users.describe(), format!("users file {}", path.display()));
    assert_eq!(users.len(), 2);
    let alice = users.get("alice").expect("alice");
    assert_eq!(alice.permissions, Permissions::READ_ONLY);
    assert!(users.get("bob").expect("bob").disabled);
    assert!(users.get("carol").is_none());
    let names: Vec<String> = users
        .list()
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    assert_eq!(users.check("alice", "secret").expect("right").name, "alice");
    assert_eq!(
        users.check("alice", "wrong").unwrap_err(),
        Refusal::Incorrect
    );
    assert_eq!(users.check("bob", "secret").unwrap_err(), Refusal::Disabled);
    assert_eq!(
        users.check("carol", "secret").unwrap_err(),
        Refusal::Incorrect
    );
    // The cheap test parameters, for a known and for an unknown user alike.
    let cheap = u64::from(CHEAP.memory_kib) * u64::from(CHEAP.iterations);
    assert_eq!(users.verify_cost("alice"), cheap);
    assert_eq!(users.verify_cost("carol"), cheap);

    // The users file holds this one with colons; the same bytes come in from a handshake.
    let cert: Fingerprint = "ab".repeat(32).parse().expect("a fingerprint");
    let other: Fingerprint = "CD".repeat(32).parse().expect("a fingerprint");
    assert_eq!(
        users.certificate_user("alice", &cert).map(|u| u.name),
        Some("alice".to_owned())
    );
    assert!(users.certificate_user("alice", &other).is_none());
    assert!(users.certificate_user("bob", &cert).is_none());
    assert!(users.certificate_user("carol", &cert).is_none());
}

#[test]
fn the_users_file_edits_the_file_and_a_reload_sees_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sample(dir.path());
    let users = UsersFile::open(&path).expect("open");
    assert!(users.writable());

    let h = hash("carol-pw");
    let change = UserChange {
        password_hash: Some(&h),
        permissions: Some(Permissions::NONE),
        ..UserChange::default()
    };
    users.create("carol", &change).expect("create");
    assert!(matches!(
        users.create("carol", &change),
        Err(AuthError::UserExists { .. })
    ));
    // Edits go to the file; the users loaded before stay as they were until a reload.
    assert!(users.get("carol").is_none());
    let reloaded = UsersFile::open(&path).expect("reload");
    assert_eq!(
        reloaded
            .check("carol", "carol-pw")
            .expect("carol")
            .permissions,
        Permissions::NONE
    );

    let enable = UserChange {
        disabled: Some(false),
        ..UserChange::default()
    };
    users.update("bob", &enable).expect("enable bob");
    assert!(matches!(
        users.update("dave", &enable),
        Err(AuthError::NoSuchUser { .. })
    ));
    assert!(
        !users
            .set_password("alice", &hash("new"), None)
            .expect("alice")
    );
    assert!(
        users
            .set_password("erin", &hash("erin"), Some(Path::new("erin")))
            .expect("erin")
    );
    users.delete("carol").expect("delete");
    assert!(matches!(
        users.delete("carol"),
        Err(AuthError::NoSuchUser { .. })
    ));
    let created = users
        .import(&[UserUpdate {
            name: "frank",
            password_hash: &hash("frank"),
            home: None,
            disabled: Some(true),
        }])
        .expect("import");
    assert_eq!(created, [true]);

    let reloaded = UsersFile::open(&path).expect("reload");
    let names: Vec<String> = reloaded
        .list()
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob", "erin", "frank"]);
    assert!(reloaded.check("bob", "secret").is_ok());
    assert!(reloaded.check("alice", "new").is_ok());
    assert_eq!(
        reloaded.get("erin").expect("erin").home.as_deref(),
        Some(Path::new("erin"))
    );
    assert_eq!(
        reloaded.check("frank", "frank").unwrap_err(),
        Refusal::Disabled
    );
}

#[test]
fn a_missing_users_file_opens_empty_and_the_first_edit_creates_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.toml");
    let users = UsersFile::open(&path).expect("open");
    assert!(users.is_empty());
    assert!(
        users
            .set_password("alice", &hash("pw"), None)
            .expect("create")
    );
    assert!(
        UsersFile::open(&path)
            .expect("reopen")
            .check("alice", "pw")
            .is_ok()
    );
    fs::write(&path, "[[user]]\nname = 1\n").expect("write");
    assert!(matches!(
        UsersFile::open(&path),
        Err(AuthError::Invalid { .. })
    ));
}

#[test]
fn users_in_memory_refuse_every_edit_as_read_only() {
    let db = UserDb::empty().with_user(User::new("ferro"), hash("pw"));
    let users = directory(None, db);
    assert!(!users.writable());
    assert!(users.check("ferro", "pw").is_ok());
    let h = hash("x");
    let change = UserChange {
        password_hash: Some(&h),
        ..UserChange::default()
    };
    let refusals = [
        users.create("bob", &change),
        users.update("ferro", &change),
        users.delete("ferro"),
        users.set_password("ferro", &h, None).map(drop),
        users.import(&[]).map(drop),
    ];
    for refused in refusals {
        let e = refused.expect_err("read-only");
        assert!(matches!(e, AuthError::ReadOnly { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains("users_file") && message.contains("read-only"),
            "{message}"
        );
    }
    let ferro = users.get("ferro").expect("ferro");
    assert_eq!(
        users.upgrade_hash(&ferro, "pw", CHEAP).expect("upgrade"),
        Upgrade::Unchanged
    );
}

#[test]
fn a_configured_users_file_is_a_writable_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sample(dir.path());
    let users = directory(Some(&path), UserDb::load(&path).expect("load"));
    assert!(users.writable());
    assert!(users.describe().contains("users.toml"));
    assert!(users.check("alice", "secret").is_ok());
    // A legacy hash is upgraded through the directory.
    let legacy = crate::users::test_util::LEGACY[0].0;
    fs::write(&path, users_file(&[("old", legacy, "")])).expect("write");
    let users = directory(Some(&path), UserDb::load(&path).expect("load"));
    let old = users.check("old", "hunter2").expect("legacy verifies");
    assert!(matches!(
        users.upgrade_hash(&old, "hunter2", CHEAP).expect("upgrade"),
        Upgrade::Upgraded(_)
    ));
    let now = UserDb::load(&path).expect("load");
    assert_eq!(
        now.get("old").and_then(User::hash_scheme),
        Some(crate::users::HashScheme::Argon2)
    );
}
