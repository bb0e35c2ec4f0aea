//! Tests of the users file's format.

use crate::policy::Permissions;
use crate::users::test_util::*;
use crate::users::*;

#[test]
fn parse_full_user() {
    let h = hash("pw");
    let text = format!(
        "# comment\n[[user]]\nname = \"alice\"\npassword = \"{h}\"\nhome = \"/srv/ftp/alice\"\n\
         permissions = [\"list\", \"read\"]\ndisabled = false\n\n\
         [[user]]\nname = \"bob\"\npassword = \"{h}\"\npermissions = \"all\"\n\n\
         [[user]]\nname = \"carol\"\npassword = \"{h}\"\npermissions = []\n"
    );
    let db = UserDb::parse(&text, "users.toml").expect("parse");
    assert_eq!(db.len(), 3);
    let alice = db.get("alice").expect("alice");
    assert_eq!(alice.home.as_deref(), Some(Path::new("/srv/ftp/alice")));
    assert_eq!(alice.permissions, Permissions::READ_ONLY);
    assert!(!alice.disabled);
    assert_eq!(db.get("bob").expect("bob").permissions, Permissions::ALL);
    assert_eq!(db.get("bob").expect("bob").home, None);
    assert_eq!(
        db.get("carol").expect("carol").permissions,
        Permissions::NONE
    );
    assert!(UserDb::parse("", "x").expect("empty").is_empty());
    assert!(UserDb::parse("# nothing\n", "x").expect("empty").is_empty());
}

#[test]
fn parse_errors_name_user_and_key() {
    let h = hash("pw");
    let err = parse_err(&users_file(&[(
        "bob",
        &h,
        "permissions = [\"list\", \"exec\"]",
    )]));
    assert_eq!(
        err,
        "users file /x/users.toml: user \"bob\": permissions: unknown permission \"exec\" \
         (expected one of list, read, write, append, delete, rename, mkdir, rmdir)"
    );

    let err = parse_err(&users_file(&[("bob", &h, "shell = \"/bin/sh\"")]));
    assert_eq!(
        err,
        "users file /x/users.toml: user \"bob\": unknown key \"shell\" \
         (expected one of name, password, home, permissions, disabled, tls_policy, client_cert_sha256)"
    );

    let err = parse_err(&users_file(&[
        ("bob", &h, ""),
        ("alice", &h, ""),
        ("bob", &h, ""),
    ]));
    assert!(err.contains("user \"bob\": duplicate user name"), "{err}");
    assert!(err.contains("user #3 and user #1"), "{err}");

    let err = parse_err(&users_file(&[("bob", "hunter2", "")]));
    assert!(
        err.starts_with("users file /x/users.toml: user \"bob\": password: "),
        "{err}"
    );
    assert!(err.contains("not a valid PHC string"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");

    // A bcrypt hash with one character too few.
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMU";
    let err = parse_err(&users_file(&[("bob", bcrypt, "")]));
    assert!(
        err.contains("user \"bob\": password: malformed bcrypt hash: "),
        "{err}"
    );
    assert!(!err.contains(bcrypt), "{err}");

    let scrypt =
        "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
    let err = parse_err(&users_file(&[("bob", scrypt, "")]));
    assert!(
        err.contains("user \"bob\": password: hash algorithm \"scrypt\" is not supported"),
        "{err}"
    );
    let yescrypt = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";
    let err = parse_err(&users_file(&[("bob", yescrypt, "")]));
    assert!(
        err.contains(
            "user \"bob\": password: yescrypt ($y$) hashes are not supported: set a new \
             password with `ferroftp passwd`; expected an argon2id PHC string"
        ),
        "{err}"
    );
    assert!(!err.contains(yescrypt), "{err}");

    let err = parse_err(&users_file(&[("", &h, "")]));
    assert!(err.contains("user #1: name: must not be empty"), "{err}");
    let err = parse_err(&users_file(&[("bo b", &h, "")]));
    assert!(
        err.contains("user #1: name: must not contain whitespace"),
        "{err}"
    );
    let err = parse_err(&format!(
        "[[user]]\nname = \"bo\\u0007b\"\npassword = \"{h}\"\n"
    ));
    assert!(
        err.contains("user #1: name: must not contain control characters"),
        "{err}"
    );

    let err = parse_err("[[user]]\nname = \"bob\"\n");
    assert!(
        err.contains("user \"bob\": missing required key \"password\""),
        "{err}"
    );
    let err = parse_err(&users_file(&[("bob", &h, "disabled = \"yes\"")]));
    assert!(
        err.contains("user \"bob\": disabled: expected true or false, found string"),
        "{err}"
    );
    let err = parse_err(&users_file(&[("bob", &h, "home = 3")]));
    assert!(
        err.contains("user \"bob\": home: expected a string, found integer"),
        "{err}"
    );
    let err = parse_err(&users_file(&[("bob", &h, "home = \"\"")]));
    assert!(
        err.contains("user \"bob\": home: must not be empty"),
        "{err}"
    );
    let err = parse_err(&users_file(&[("bob", &h, "permissions = \"read\"")]));
    assert!(
        err.contains("user \"bob\": permissions: expected a list"),
        "{err}"
    );
}

#[test]
fn syntax_errors_have_position_but_no_source_excerpt() {
    let err = parse_err("[[user]]\nname = \"bob\"\npassword = \"hunter2\n");
    assert!(
        err.starts_with("users file /x/users.toml: line 3, column "),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "source excerpt leaked: {err}");

    let err = parse_err("[[users]]\nname = \"bob\"\n");
    assert!(
        err.starts_with("users file /x/users.toml: line 1, column 3: "),
        "{err}"
    );
    assert!(err.contains("users"), "{err}");
}
