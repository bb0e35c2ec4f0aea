//! Tests of editing users files: layout, validation, locking, owner, group and mode kept.

use std::fs;
use std::path::Path;

use super::super::write::{lock_directory, new_file_mode};
use super::*;
use crate::users::UserDb;
use crate::users::test_util::*;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn upsert_creates_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h = hash("one");
    assert!(upsert_user(&path, "alice", &h, Some(Path::new("alice"))).expect("create"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# ferroftp users file."), "{text}");
    let db = UserDb::load(&path).expect("load");
    assert_eq!(db.len(), 1);
    let alice = db.verify("alice", "one").expect("alice");
    assert_eq!(alice.home.as_deref(), Some(Path::new("alice")));
    assert_eq!(alice.permissions, Permissions::ALL);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    // No temporary files left behind.
    assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
}

#[test]
fn upsert_updates_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let (h1, h2, h3) = (hash("one"), hash("two"), hash("three"));
    let original = format!(
        "# my users\n\n[[user]]\nname = \"alice\"  # the boss\npassword = \"{h1}\"\n\
         home = \"/srv/alice\"\npermissions = [\"list\", \"read\"]\n\n\
         # bob is read-only\n[[user]]\nname = \"bob\"\npassword = \"{h1}\"\ndisabled = true\n"
    );
    fs::write(&path, &original).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    // Password changes, home kept when None, comments and other users untouched.
    assert!(!upsert_user(&path, "alice", &h2, None).expect("update"));
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text, original.replacen(&h1, &h2, 1));
    // The group keeps its access; others lose theirs (the file holds hashes).
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o640);
    let db = UserDb::load(&path).expect("load");
    assert!(db.verify("alice", "one").is_none());
    let alice = db.verify("alice", "two").expect("alice");
    assert_eq!(alice.home.as_deref(), Some(Path::new("/srv/alice")));
    assert_eq!(alice.permissions, Permissions::READ_ONLY);
    let bob = db.get("bob").expect("bob");
    assert!(bob.disabled);

    // Home replaced when Some; added when the user had none.
    assert!(!upsert_user(&path, "alice", &h2, Some(Path::new("/srv/a2"))).expect("home"));
    assert!(!upsert_user(&path, "bob", &h3, Some(Path::new("bob"))).expect("bob home"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("# the boss") && text.contains("# bob is read-only"),
        "{text}"
    );
    let db = UserDb::load(&path).expect("load");
    assert_eq!(
        db.get("alice").expect("alice").home.as_deref(),
        Some(Path::new("/srv/a2"))
    );
    let bob = db.get("bob").expect("bob");
    assert_eq!(bob.home.as_deref(), Some(Path::new("bob")));
    assert!(bob.disabled);
    assert!(db.verify("alice", "two").is_some());

    // A new user is appended; existing ones are untouched.
    let before = fs::read_to_string(&path).expect("read");
    assert!(upsert_user(&path, "carol", &h3, None).expect("carol"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.starts_with(&before), "{text}");
    let db = UserDb::load(&path).expect("load");
    assert_eq!(db.len(), 3);
    assert!(db.verify("carol", "three").is_some());
    assert_eq!(db.get("carol").expect("carol").home, None);
    assert!(db.verify("alice", "two").is_some());
    assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
}

#[cfg(unix)]
#[test]
fn edits_keep_the_files_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    upsert_user(&path, "alice", &hash("one"), None).expect("create");
    let root = rustix::process::geteuid().is_root();
    // Root can give the file away, as an administrator's chown does.
    let (uid, gid) = if root {
        (54321, 54322)
    } else {
        let m = fs::metadata(&path).expect("meta");
        (m.uid(), m.gid())
    };
    if root {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    upsert_user(&path, "bob", &hash("two"), None).expect("add");
    edit_user(
        &path,
        "alice",
        &UserChange {
            disabled: Some(true),
            ..UserChange::default()
        },
        EditMode::Update,
    )
    .expect("edit");
    let m = fs::metadata(&path).expect("meta");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o640));
    // A new file belongs to the directory's owner and group.
    if root {
        let sub = dir.path().join("state");
        fs::create_dir(&sub).expect("mkdir");
        std::os::unix::fs::chown(&sub, Some(uid), Some(gid)).expect("chown");
        let new = sub.join("users.toml");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).expect("chmod");
        upsert_user(&new, "carol", &hash("three"), None).expect("create");
        let m = fs::metadata(&new).expect("meta");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o600));
    }
}

#[test]
fn a_new_file_in_a_directory_shared_with_its_group_is_readable_by_that_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // /etc/ferroftp as packaged: root:ferroftp 0750. The service reads the users file
    // through the group, so a 0600 file there would lock it out.
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("etc-ferroftp");
    fs::create_dir(&sub).expect("mkdir");
    // Only root can give the directory a group that is not its own.
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&sub, Some(0), Some(54323)).expect("chown");
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o750)).expect("chmod");
        let path = sub.join("users.toml");
        upsert_user(&path, "alice", &hash("one"), None).expect("create");
        let m = fs::metadata(&path).expect("meta");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 54323, 0o640));
    }
    // The rule itself. Root writing in root:ferroftp (995) 0750: the group reads.
    assert_eq!(new_file_mode(0o750, (0, 995), (0, 0)), 0o640);
    assert_eq!(new_file_mode(0o2770, (0, 995), (0, 0)), 0o640);
    // Others may enter, or the group may not read: 0600.
    assert_eq!(new_file_mode(0o755, (0, 995), (0, 0)), 0o600);
    assert_eq!(new_file_mode(0o751, (0, 995), (0, 0)), 0o600);
    assert_eq!(new_file_mode(0o710, (0, 995), (0, 0)), 0o600);
    assert_eq!(new_file_mode(0o700, (0, 995), (0, 0)), 0o600);
    // Root writing in the service's own ferroftp:ferroftp 0750: the owner reads, 0600.
    assert_eq!(new_file_mode(0o750, (999, 995), (0, 0)), 0o600);
    // The writer's own group: nobody else to share with.
    assert_eq!(new_file_mode(0o750, (999, 995), (999, 995)), 0o600);
    // An administrator's alice:ferroftp 0750, written by alice: the group reads.
    assert_eq!(new_file_mode(0o750, (1000, 995), (1000, 1000)), 0o640);
}

#[test]
fn delete_user_removes_only_that_user_and_keeps_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h = hash("one");
    fs::write(
        &path,
        format!(
            "# my users\n[[user]]\nname = \"alice\"\npassword = \"{h}\"\n\n\
             # bob\n[[user]]\nname = \"bob\"\npassword = \"{h}\"\n"
        ),
    )
    .expect("write");
    delete_user(&path, "alice").expect("delete");
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("# bob") && !text.contains("alice"), "{text}");
    let db = UserDb::load(&path).expect("load");
    assert_eq!(db.len(), 1);
    assert!(matches!(
        delete_user(&path, "alice"),
        Err(AuthError::NoSuchUser { .. })
    ));
    // Users in an inline array.
    fs::write(
        &path,
        format!("user = [\n  {{ name = \"a\", password = \"{h}\" }},\n  {{ name = \"b\", password = \"{h}\" }},\n]\n"),
    )
    .expect("write");
    delete_user(&path, "b").expect("delete");
    let db = UserDb::load(&path).expect("load");
    assert!(db.get("a").is_some() && db.get("b").is_none());
}

#[test]
fn upsert_rewrites_files_it_cannot_edit_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h1 = hash("one");
    let original = format!(
        "# header kept\nuser = [\n  {{ name = \"alice\", password = \"{h1}\", permissions = \"all\" }},\n  \
         {{ name = \"bob\", password = \"{h1}\", disabled = true }},\n]\n"
    );
    fs::write(&path, &original).expect("write");
    let h2 = hash("two");
    assert!(!upsert_user(&path, "alice", &h2, Some(Path::new("/a"))).expect("update"));
    assert!(upsert_user(&path, "carol", &h2, None).expect("create"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# header kept\n"), "{text}");
    let db = UserDb::load(&path).expect("load");
    assert_eq!(db.len(), 3);
    let alice = db.verify("alice", "two").expect("alice");
    assert_eq!(alice.home.as_deref(), Some(Path::new("/a")));
    assert_eq!(alice.permissions, Permissions::ALL);
    assert!(db.get("bob").expect("bob").disabled);
    assert!(db.verify("carol", "two").is_some());
}

#[test]
fn upsert_adds_home_after_a_final_line_without_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let (h1, h2) = (hash("one"), hash("two"));
    fs::write(
        &path,
        format!("[[user]]\nname = \"alice\"\npassword = \"{h1}\""),
    )
    .expect("write");
    assert!(!upsert_user(&path, "alice", &h2, Some(Path::new("/a"))).expect("update"));
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        format!("[[user]]\nname = \"alice\"\npassword = \"{h2}\"\nhome = \"/a\"\n")
    );
}

#[test]
fn edit_user_creates_only_new_users_and_changes_only_existing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h = hash("one");
    fs::write(
        &path,
        format!("# keep me\n[[user]]\nname = \"alice\" # the boss\npassword = \"{h}\"\n"),
    )
    .expect("write");
    let new = UserChange {
        password_hash: Some(&h),
        permissions: Some(Permissions::READ_ONLY),
        tls_policy: Some(TlsPolicy::Login),
        ..UserChange::default()
    };
    assert!(matches!(
        edit_user(&path, "alice", &new, EditMode::Create),
        Err(AuthError::UserExists { .. })
    ));
    assert!(edit_user(&path, "bob", &new, EditMode::Create).expect("create"));
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    assert!(matches!(
        edit_user(&path, "carol", &disable, EditMode::Update),
        Err(AuthError::NoSuchUser { .. })
    ));
    assert!(!edit_user(&path, "alice", &disable, EditMode::Update).expect("disable"));
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.starts_with("# keep me\n") && text.contains("# the boss"),
        "{text}"
    );
    let db = UserDb::parse(&text, "test").expect("valid");
    let (alice, bob) = (db.get("alice").expect("alice"), db.get("bob").expect("bob"));
    assert!(alice.disabled && alice.permissions == Permissions::ALL);
    assert!(!bob.disabled && bob.permissions == Permissions::READ_ONLY);
    assert_eq!(bob.tls_policy, TlsPolicy::Login);
    // A new user needs a password.
    assert!(edit_user(&path, "dave", &disable, EditMode::Upsert).is_err());
}

#[test]
fn upsert_refuses_bad_input_and_invalid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h = hash("one");
    assert!(matches!(
        upsert_user(&path, "a b", &h, None),
        Err(AuthError::InvalidName { .. })
    ));
    let err = upsert_user(&path, "alice", "hunter2", None).expect_err("bad hash");
    assert!(matches!(err, AuthError::InvalidHash(_)));
    assert!(!err.to_string().contains("hunter2"));
    assert!(!path.exists());

    let broken = "[[user]]\nname = \"alice\"\npassword = \"x\"\n";
    fs::write(&path, broken).expect("write");
    assert!(matches!(
        upsert_user(&path, "bob", &h, None),
        Err(AuthError::Invalid { .. })
    ));
    assert_eq!(fs::read_to_string(&path).expect("read"), broken);
}

#[cfg(unix)]
#[test]
fn upsert_follows_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real.toml");
    let link = dir.path().join("users.toml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    fs::write(&real, "").expect("write");
    assert!(upsert_user(&link, "alice", &hash("one"), None).expect("create"));
    assert!(
        fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert!(
        UserDb::load(&real)
            .expect("load")
            .verify("alice", "one")
            .is_some()
    );
}

#[test]
fn upsert_users_writes_all_at_once_and_sets_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let h = hash("one");
    fs::write(
        &path,
        format!(
            "[[user]]\nname = \"alice\"\npassword = \"{h}\"\ndisabled = true  # on leave\n\n\
             [[user]]\nname = \"bob\"\npassword = \"{h}\"\n"
        ),
    )
    .expect("write");
    let (md5, sha) = (LEGACY[3].0, LEGACY[1].0);
    let update = |name, password_hash, disabled| UserUpdate {
        name,
        password_hash,
        home: Some(Path::new("/srv/x")),
        disabled,
    };
    let created = upsert_users(
        &path,
        &[
            update("alice", md5, Some(false)),
            update("bob", sha, Some(false)),
            update("carol", md5, Some(true)),
            update("dave", sha, Some(false)),
        ],
    )
    .expect("upsert");
    assert_eq!(created, [false, false, true, true]);
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("disabled = false  # on leave"), "{text}");
    assert_eq!(text.matches("disabled").count(), 2, "{text}");
    let db = UserDb::load(&path).expect("load");
    assert!(db.verify("alice", "hunter2").is_some());
    assert!(db.verify("bob", "hunter2").is_some());
    assert!(db.get("carol").expect("carol").disabled);
    assert!(db.verify("dave", "hunter2").is_some());
    assert_eq!(
        db.get("dave").expect("dave").home.as_deref(),
        Some(Path::new("/srv/x"))
    );

    // One bad entry: nothing is written.
    let before = fs::read_to_string(&path).expect("read");
    let err = upsert_users(
        &path,
        &[update("erin", md5, None), update("fay", "$1$x", None)],
    )
    .expect_err("bad hash");
    assert!(matches!(err, AuthError::InvalidHash(_)), "{err}");
    assert_eq!(fs::read_to_string(&path).expect("read"), before);
    assert!(!format!("{:?}", update("x", md5, None)).contains(md5));
}

#[test]
fn upgrade_hash_replaces_only_the_hash_that_was_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    let md5 = LEGACY[3].0;
    let h = hash("other");
    let original = format!(
        "# my users\n[[user]]\nname = \"alice\"  # from proftpd\npassword = \"{md5}\"  # old\n\
         home = \"/srv/alice\"\n\n[[user]]\nname = \"bob\"\npassword = \"{h}\"\n\n\
         [[user]]\nname = \"carol\"\npassword = \"{md5}\"\n"
    );
    fs::write(&path, &original).expect("write");
    let db = UserDb::load(&path).expect("load");
    let alice = db.verify("alice", "hunter2").expect("alice");
    let upgraded = upgrade_hash(&path, &alice, "hunter2", CHEAP).expect("upgrade");
    assert_eq!(upgraded, Upgrade::Upgraded(HashScheme::Md5Crypt));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# my users\n"), "{text}");
    assert!(
        text.contains("# from proftpd") && text.contains("  # old"),
        "{text}"
    );
    assert_eq!(text.matches(md5).count(), 1, "carol keeps hers: {text}");
    let again = UserDb::load(&path).expect("load");
    let alice2 = again.verify("alice", "hunter2").expect("new hash verifies");
    assert_eq!(alice2.hash_scheme(), Some(HashScheme::Argon2));
    assert_eq!(alice2.home.as_deref(), Some(Path::new("/srv/alice")));
    assert!(again.verify("carol", "hunter2").is_some());

    // The stale user (still holding the MD5 hash) changes nothing now.
    assert_eq!(
        upgrade_hash(&path, &alice, "hunter2", CHEAP).expect("stale"),
        Upgrade::Unchanged
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
    // Nor does an argon2 user.
    let bob = again.verify("bob", "other").expect("bob");
    assert_eq!(
        upgrade_hash(&path, &bob, "other", CHEAP).expect("argon2"),
        Upgrade::Unchanged
    );
    // Nor a user whose password was changed in the file since it was loaded.
    let carol = db.verify("carol", "hunter2").expect("carol");
    upsert_user(&path, "carol", &hash("changed"), None).expect("passwd");
    let changed = fs::read_to_string(&path).expect("read");
    assert_eq!(
        upgrade_hash(&path, &carol, "hunter2", CHEAP).expect("changed"),
        Upgrade::Unchanged
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), changed);
    assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
}

#[cfg(unix)]
#[test]
fn edits_wait_for_the_lock_on_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    // As another process would hold it (flock conflicts between open files, even in one
    // process).
    let held = lock_directory(&path).expect("locked");
    let h = hash("one");
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || upsert_user(&path, "alice", &h, None))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!writer.is_finished());
    assert!(!path.exists());
    drop(held);
    assert!(writer.join().expect("join").expect("upsert"));
    assert!(
        UserDb::load(&path)
            .expect("load")
            .verify("alice", "one")
            .is_some()
    );
}
