//! Editing a users file: users created, changed and deleted with `toml_edit`, so that other
//! users, comments and layout stay as they were; every result is validated before it is
//! written (see `write.rs` for how).

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, TableLike, Value};

use super::parse::{RawUser, check_name, describe_toml_error, parse_raw};
use super::write;
use crate::policy::TlsPolicy;
use crate::policy::{Permission, Permissions};
use crate::users::hash::{HashParams, HashScheme, check_hash, hash_password};
use crate::users::home::check_home;
use crate::users::{AuthError, Upgrade, User};

/// Header written at the top of users files that [`upsert_user`] creates.
const FILE_HEADER: &str = "\
# ferroftp users file. Manage with `ferroftp passwd --users FILE NAME [--home DIR]`;
# bring accounts from ProFTPD, Pure-FTPd or /etc/shadow with `ferroftp import-users`.
#
# [[user]]
# name = \"alice\"
# password = \"$argon2id$v=19$m=19456,t=2,p=1$...\"  # argon2id PHC string; set it with `ferroftp passwd`
#                           # also accepted, from other servers: bcrypt ($2b$, $2a$, $2y$), SHA-512-crypt ($6$),
#                           # SHA-256-crypt ($5$) and MD5-crypt ($1$); re-hashed to argon2id at the next login
#                           # when the server's auth.rehash_to_argon2 is on
# home = \"alice\"            # optional: relative to the server root (or absolute, under it; elsewhere only
#                           # with the server's auth.allow_homes_outside_root); absent = the server root
# permissions = [\"list\", \"read\", \"write\", \"append\", \"delete\", \"rename\", \"mkdir\", \"rmdir\"]  # optional; absent or \"all\" = all
# disabled = false          # optional
# tls_policy = \"optional\"   # optional: \"optional\", \"login\" (TLS to log in) or \"login_and_data\" (and PROT P)
# client_cert_sha256 = []   # optional: fingerprints of client certificates that log this user in without a password
";

/// One account for [`upsert_users`] to add or update.
#[derive(Clone, Copy)]
pub struct UserUpdate<'a> {
    /// The user name.
    pub name: &'a str,
    /// The password hash: argon2 PHC, bcrypt or crypt(3) (checked as the users file checks it).
    pub password_hash: &'a str,
    /// `Some` = set the home; `None` = keep the existing one (or none for a new user).
    pub home: Option<&'a Path>,
    /// `Some(true)` = set `disabled = true`; `Some(false)` = enable the user (an existing
    /// `disabled` key becomes `false`; a new user gets no key); `None` = leave it as it is.
    pub disabled: Option<bool>,
}

impl fmt::Debug for UserUpdate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserUpdate")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("home", &self.home)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// Add or update a user in a users file (creating the file if missing), keeping other users, comments and layout.
///
/// The existing file must be a valid users file; it is edited with `toml_edit`. The user's
/// `password` (and `home`, when `home` is `Some`) is replaced in place, or the user is appended
/// (a new `[[user]]` table, or an inline table if the file lists users in an inline array), so
/// comments and layout survive. The result is validated again before anything is written. The
/// file is written atomically (temporary file in the same directory + rename) keeping the
/// file's owner, group and mode (less access for others; a new file: 0o600, owned like its
/// directory); a symlink is followed and its target replaced. Writers are serialised, in this process and
/// with other ferroftp processes (`passwd`, `import-users`, a server upgrading a hash), by an
/// advisory lock on the file's directory.
///
/// `home`: `Some` = set it; `None` = keep the existing one (or absent for a new user).
/// Returns whether the user was created (`true`) or updated (`false`).
pub fn upsert_user(
    path: &Path,
    name: &str,
    password_hash: &str,
    home: Option<&Path>,
) -> Result<bool, AuthError> {
    let created = upsert_users(
        path,
        &[UserUpdate {
            name,
            password_hash,
            home,
            disabled: None,
        }],
    )?;
    Ok(created.first().copied().unwrap_or(false))
}

/// Add or update several users at once, as [`upsert_user`] does one: a single atomic write, so
/// either every update is in the file or none is. Returns, for each update in order, whether
/// the user was created.
pub fn upsert_users(path: &Path, updates: &[UserUpdate<'_>]) -> Result<Vec<bool>, AuthError> {
    let mut homes = Vec::with_capacity(updates.len());
    for u in updates {
        check_name(u.name).map_err(|reason| AuthError::InvalidName {
            name: u.name.to_owned(),
            reason,
        })?;
        check_hash(u.password_hash).map_err(AuthError::InvalidHash)?;
        homes.push(u.home.map(home_str).transpose()?);
    }
    let created = edit_users_file(path, |doc, _| {
        Ok(Some(
            updates
                .iter()
                .zip(&homes)
                .map(|(u, home)| {
                    let change = UserChange {
                        password_hash: Some(u.password_hash),
                        disabled: u.disabled,
                        ..UserChange::default()
                    };
                    edit_users_document(doc, u.name, &change, *home)
                })
                .collect(),
        ))
    })?;
    Ok(created.unwrap_or_default())
}

/// A home directory as the users file stores it.
fn home_str(h: &Path) -> Result<&str, AuthError> {
    let s = h.to_str().ok_or_else(|| AuthError::InvalidHome {
        path: h.to_owned(),
        reason: "not valid UTF-8",
    })?;
    check_home(s).map_err(|reason| AuthError::InvalidHome {
        path: h.to_owned(),
        reason,
    })?;
    Ok(s)
}

/// What [`edit_user`] sets; `None` keeps a key as it is (or absent, for a new user).
#[derive(Debug, Clone, Copy, Default)]
pub struct UserChange<'a> {
    /// The password hash (required for a new user): argon2 PHC, bcrypt or crypt(3).
    pub password_hash: Option<&'a str>,
    /// The home directory: absolute, or relative to the server root.
    pub home: Option<&'a Path>,
    /// What the user may do.
    pub permissions: Option<Permissions>,
    /// `Some(true)` = set `disabled = true`; `Some(false)` = enable the user (an existing
    /// `disabled` key becomes `false`; a new user gets no key); `None` = leave it as it is.
    pub disabled: Option<bool>,
    /// The user's own TLS policy.
    pub tls_policy: Option<TlsPolicy>,
}

/// Whether [`edit_user`] may create the user, change an existing one, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditMode {
    /// Create the user, or change it if it exists.
    Upsert,
    /// Create the user; an existing one is an error ([`AuthError::UserExists`]).
    Create,
    /// Change an existing user; a missing one is an error ([`AuthError::NoSuchUser`]).
    Update,
}

/// Create or change user `name` in a users file as [`upsert_user`] does (comments and layout
/// kept, validated before writing, written atomically keeping owner, group and mode), with
/// more keys.
/// Returns whether the user was created.
pub fn edit_user(
    path: &Path,
    name: &str,
    change: &UserChange<'_>,
    mode: EditMode,
) -> Result<bool, AuthError> {
    check_name(name).map_err(|reason| AuthError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    if let Some(hash) = change.password_hash {
        check_hash(hash).map_err(AuthError::InvalidHash)?;
    }
    let home = change.home.map(home_str).transpose()?;
    let created = edit_users_file(path, |doc, users| {
        let exists = users.iter().any(|u| u.name == name);
        match (mode, exists) {
            (EditMode::Create, true) => Err(AuthError::UserExists {
                name: name.to_owned(),
            }),
            (EditMode::Update, false) => Err(AuthError::NoSuchUser {
                name: name.to_owned(),
            }),
            (_, false) if change.password_hash.is_none() => Err(AuthError::InvalidHash(
                "a new user needs a password".to_owned(),
            )),
            _ => Ok(Some(edit_users_document(doc, name, change, home))),
        }
    })?;
    Ok(created.unwrap_or(false))
}

/// Remove user `name` from a users file, keeping everything else (other users, comments) as
/// [`edit_user`] does; a missing user is an error ([`AuthError::NoSuchUser`]).
pub fn delete_user(path: &Path, name: &str) -> Result<(), AuthError> {
    let removed = edit_users_file(path, |doc, users| {
        if !users.iter().any(|u| u.name == name) {
            return Err(AuthError::NoSuchUser {
                name: name.to_owned(),
            });
        }
        let is_named = |t: &dyn TableLike| t.get("name").and_then(Item::as_str) == Some(name);
        match doc.get_mut("user") {
            Some(Item::ArrayOfTables(tables)) => tables.retain(|t| !is_named(t)),
            Some(Item::Value(Value::Array(array))) => {
                array.retain(|v| v.as_inline_table().is_none_or(|t| !is_named(t)));
            }
            _ => {}
        }
        Ok(Some(()))
    })?;
    debug_assert!(removed.is_some());
    Ok(())
}

/// After `password` was verified for `user`: if the user's hash is a legacy one (bcrypt,
/// crypt(3)), hash the password with argon2id and `params` and put that in the users file at
/// `path` in place of the old hash, keeping everything else as [`upsert_user`] does.
///
/// BLOCKING and deliberately slow (argon2, file I/O). Only if the file still holds the very
/// hash that was verified: a password changed with `ferroftp passwd` meanwhile is never
/// overwritten. The server's users in memory are not changed: the new hash is in force from
/// the next reload or restart, and the old one keeps verifying until then.
pub fn upgrade_hash(
    path: &Path,
    user: &User,
    password: &str,
    params: HashParams,
) -> Result<Upgrade, AuthError> {
    let old = user.password_hash.0.as_str();
    let scheme = match check_hash(old) {
        Ok(HashScheme::Argon2) | Err(_) => return Ok(Upgrade::Unchanged),
        Ok(scheme) => scheme,
    };
    let written = edit_users_file(path, |doc, users| {
        let current = users.iter().find(|u| u.name == user.name);
        if current.is_none_or(|u| u.password != old) {
            return Ok(None);
        }
        let hash = hash_password(password, params)?;
        let change = UserChange {
            password_hash: Some(&hash),
            ..UserChange::default()
        };
        edit_users_document(doc, &user.name, &change, None);
        Ok(Some(()))
    })?;
    Ok(match written {
        Some(()) => Upgrade::Upgraded(scheme),
        None => Upgrade::Unchanged,
    })
}

/// Read the users file at `path` (missing or empty: a new file), let `edit` change the
/// document, validate the result and write it atomically. `edit` gets the document and the
/// users as they are now; `Ok(None)` from it writes nothing.
pub(super) fn edit_users_file<R>(
    path: &Path,
    edit: impl FnOnce(&mut DocumentMut, &[RawUser]) -> Result<Option<R>, AuthError>,
) -> Result<Option<R>, AuthError> {
    let _serial = write::EDIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let target = write::resolve_symlink(path);
    let _locked = write::lock_directory(&target);
    let origin = path.display().to_string();
    let (mut doc, users) = match fs::read_to_string(&target) {
        Ok(text) if !text.trim().is_empty() => {
            let users = parse_raw(&text, &origin)?;
            let doc = text.parse::<DocumentMut>().map_err(|e| AuthError::Syntax {
                origin: origin.clone(),
                message: describe_toml_error(&text, e.message(), e.span()),
            })?;
            (doc, users)
        }
        Ok(_) => (DocumentMut::new(), Vec::new()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => (DocumentMut::new(), Vec::new()),
        Err(error) => {
            return Err(AuthError::Read {
                path: path.to_owned(),
                error,
            });
        }
    };
    let Some(result) = edit(&mut doc, &users)? else {
        return Ok(None);
    };
    let text = doc.to_string();
    parse_raw(&text, &origin)?;
    write::write_atomic(&target, &text).map_err(|error| AuthError::Write {
        path: path.to_owned(),
        error,
    })?;
    Ok(Some(result))
}

/// The keys of `change` other than `disabled` as TOML values, in the order they are written.
fn change_values(change: &UserChange<'_>, home: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    if let Some(hash) = change.password_hash {
        out.push(("password", Value::from(hash)));
    }
    if let Some(home) = home {
        out.push(("home", Value::from(home)));
    }
    if let Some(perms) = change.permissions {
        out.push((
            "permissions",
            Value::Array(perms.iter().map(Permission::name).collect()),
        ));
    }
    if let Some(policy) = change.tls_policy {
        out.push(("tls_policy", Value::from(policy.as_str())));
    }
    out
}

/// Set the keys of `change` on user `name` in a valid users file, appending the user if
/// missing; returns whether it was appended.
fn edit_users_document(
    doc: &mut DocumentMut,
    name: &str,
    change: &UserChange<'_>,
    home: Option<&str>,
) -> bool {
    let values = change_values(change, home);
    let is_named = |t: &dyn TableLike| t.get("name").and_then(Item::as_str) == Some(name);
    let existing: Option<&mut dyn TableLike> = match doc.get_mut("user") {
        Some(Item::ArrayOfTables(tables)) => tables
            .iter_mut()
            .find(|t| is_named(*t))
            .map(|t| t as &mut dyn TableLike),
        Some(Item::Value(Value::Array(array))) => array
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| is_named(*t))
            .map(|t| t as &mut dyn TableLike),
        // `UserDb::parse` has checked that `user` is absent or one of the above.
        _ => None,
    };
    if let Some(user) = existing {
        for (key, value) in values {
            set_value(user, key, value);
        }
        match change.disabled {
            Some(true) => set_value(user, "disabled", true.into()),
            Some(false) if user.contains_key("disabled") => {
                set_value(user, "disabled", false.into());
            }
            _ => {}
        }
        return false;
    }

    let mut user = InlineTable::new();
    user.insert("name", name.into());
    for (key, value) in values {
        user.insert(key, value);
    }
    if change.disabled == Some(true) {
        user.insert("disabled", true.into());
    }
    match doc.get_mut("user") {
        Some(Item::ArrayOfTables(tables)) => tables.push(user.into_table()),
        Some(Item::Value(Value::Array(array))) => {
            // Put the new entry on its own line if the one before it is (without its comments).
            let mut user = Value::InlineTable(user);
            let last_prefix = array.iter().last().and_then(|v| v.decor().prefix());
            if let Some((_, indent)) = last_prefix
                .and_then(|p| p.as_str())
                .and_then(|p| p.rsplit_once('\n'))
            {
                user.decor_mut().set_prefix(format!("\n{indent}"));
            }
            array.push_formatted(user);
        }
        _ => {
            // No users yet, so the file holds nothing but comments: keep them above the first
            // user, or start a new file with the header.
            let comments = doc.trailing().as_str().unwrap_or_default().trim_end();
            let header = if comments.is_empty() {
                FILE_HEADER.trim_end()
            } else {
                comments
            };
            let mut table = user.into_table();
            table.decor_mut().set_prefix(format!("{header}\n\n"));
            doc.set_trailing("");
            doc.insert(
                "user",
                Item::ArrayOfTables(ArrayOfTables::from_iter([table])),
            );
        }
    }
    true
}

/// Set `key` to `new`, keeping the key's and the old value's comments and spacing.
fn set_value(table: &mut dyn TableLike, key: &str, new: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) => {
            let decor = value.decor().clone();
            *value = new;
            *value.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(new));
        }
    }
}

#[cfg(test)]
mod tests;
