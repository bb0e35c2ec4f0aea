//! Virtual users: where they come from ([`UserDirectory`]), the users file that is the
//! embedded default ([`UsersFile`]), argon2id password hashes ([`hash`]) and homes.
//!
//! Users are not system accounts. The users file holds them in TOML, one `[[user]]` table each:
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$...."  # PHC string, set with `ferroftp passwd`
//!                           # (or bcrypt, SHA-512/SHA-256/MD5-crypt moved from another server)
//! home = "/srv/ftp/alice"   # optional: relative to the server root, or absolute (under it, see resolve_home); absent = the root
//! permissions = ["list", "read", "write", "append", "delete", "rename", "mkdir", "rmdir"]  # optional; absent = all
//! disabled = false          # optional
//! ```
//!
//! The map:
//! - [`UserDirectory`]: the trait the server asks (look up, verify a password or a client
//!   certificate, list, edit where the source allows it). A PostgreSQL or LDAP directory is a
//!   new implementation of it.
//! - [`UserDb`] (`db.rs`): a set of users in memory, checked in constant-ish time whether or
//!   not the user exists; a read-only directory on its own (the generated user of a run
//!   without a users file).
//! - [`UsersFile`] (`file/`): the users file: [`UserDb`] loaded from it, and edits written
//!   back to it (`parse.rs`: format and validation; `edit.rs`: `toml_edit` edits keeping
//!   comments; `write.rs`: locking and the atomic rewrite keeping owner, group and mode).
//! - [`hash`]: argon2id hashing and verification, the legacy schemes (bcrypt, crypt(3)) and
//!   what a verification costs.
//! - `home.rs`: homes checked against the server root; `password.rs`: reading and generating
//!   passwords for the command line.
//!
//! Passwords never appear in error messages; neither do password hashes.

mod db;
mod error;
mod file;
pub mod hash;
mod home;
mod password;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
mod user;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::policy::Fingerprint;

pub use db::UserDb;
pub use error::AuthError;
pub use file::{
    EditMode, UserChange, UserUpdate, UsersFile, check_user_name, delete_user, edit_user,
    upgrade_hash, upsert_user, upsert_users,
};
pub use hash::{HashParams, HashScheme, check_password_hash, hash_password};
pub use home::{check_homes, resolve_home};
pub use password::{generate_password, read_new_password};
pub use user::User;

/// Where users come from: looks a user up, checks a password or a client certificate, lists
/// the users and, where the source allows it, creates, changes and deletes them.
///
/// The users file ([`UsersFile`]) is the first implementation and the embedded default; a
/// set in memory ([`UserDb`]) is a read-only one. A directory over PostgreSQL or LDAP
/// implements the same methods.
///
/// Which calls may block: [`check`](Self::check), [`list`](Self::list),
/// [`upgrade_hash`](Self::upgrade_hash) and the edits may take long (deliberately slow hashes,
/// file or network I/O): the server calls them from `spawn_blocking`. [`get`](Self::get),
/// [`verify_cost`](Self::verify_cost), [`certificate_user`](Self::certificate_user) and
/// [`len`](Self::len) run on the async workers and must answer at once (from memory, or a
/// back-end's cache).
///
/// Edits go to the source; the server takes them in at its next reload (the admin API
/// reloads after each edit). A source that cannot be edited answers every edit with
/// [`AuthError::ReadOnly`], which is what the provided methods do.
pub trait UserDirectory: fmt::Debug + Send + Sync {
    /// What the users come from, for logs and messages (`users file /etc/ferroftp/users.toml`).
    fn describe(&self) -> String;

    /// The user called `name` (disabled users included), if any. Must not block for long.
    /// A back-end that cannot answer answers `None`: the session then refuses or logs out.
    fn get(&self, name: &str) -> Option<User>;

    /// Check `password` for `name`: the user, or why not. BLOCKING and deliberately slow.
    /// Unknown and disabled users must cost what a wrong password costs, so that the time
    /// taken does not tell whether a name exists.
    fn check(&self, name: &str, password: &str) -> Result<User, Refusal>;

    /// What [`check`](Self::check) costs for `name`, in KiB-passes of argon2 (memory times
    /// iterations); the server checks cheap ones inline and the others on a blocking thread.
    /// `u64::MAX` (the default): always on a blocking thread.
    fn verify_cost(&self, _name: &str) -> u64 {
        u64::MAX
    }

    /// The user that a verified TLS client certificate with SHA-256 `fingerprint` logs in as
    /// `name` without a password: the user, if enabled and the fingerprint is one of theirs.
    fn certificate_user(&self, name: &str, fingerprint: &Fingerprint) -> Option<User> {
        self.get(name)
            .filter(|u| !u.disabled && u.client_certs.contains(fingerprint))
    }

    /// Number of users (disabled users included). Must not block for long.
    fn len(&self) -> usize;

    /// Whether there are no users.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every user, sorted by name. May block.
    fn list(&self) -> Result<Vec<User>, AuthError>;

    /// Whether users can be created, changed and deleted here.
    fn writable(&self) -> bool {
        false
    }

    /// Create user `name` (`change.password_hash` is required); an existing one is
    /// [`AuthError::UserExists`]. May block.
    fn create(&self, name: &str, change: &UserChange<'_>) -> Result<(), AuthError> {
        let _ = (name, change);
        Err(read_only(self))
    }

    /// Change the keys `change` gives of user `name`; a missing one is
    /// [`AuthError::NoSuchUser`]. May block.
    fn update(&self, name: &str, change: &UserChange<'_>) -> Result<(), AuthError> {
        let _ = (name, change);
        Err(read_only(self))
    }

    /// Set the password hash (and the home, when `Some`) of user `name`, creating the user
    /// if missing, as `ferroftp passwd` does. Returns whether the user was created. May block.
    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        home: Option<&Path>,
    ) -> Result<bool, AuthError> {
        let _ = (name, password_hash, home);
        Err(read_only(self))
    }

    /// Create or update several users at once, all or none (`ferroftp import-users`).
    /// Returns, for each update in order, whether the user was created. May block.
    fn import(&self, updates: &[UserUpdate<'_>]) -> Result<Vec<bool>, AuthError> {
        let _ = updates;
        Err(read_only(self))
    }

    /// Delete user `name`; a missing one is [`AuthError::NoSuchUser`]. May block.
    fn delete(&self, name: &str) -> Result<(), AuthError> {
        let _ = name;
        Err(read_only(self))
    }

    /// After `password` was verified for `user`: replace a legacy hash (bcrypt, crypt(3)) by
    /// an argon2id one with `params`, if the source still holds the hash that was verified.
    /// BLOCKING and slow. The default, for sources that keep no hashes of their own or cannot
    /// be written: [`Upgrade::Unchanged`].
    fn upgrade_hash(
        &self,
        user: &User,
        password: &str,
        params: HashParams,
    ) -> Result<Upgrade, AuthError> {
        let _ = (user, password, params);
        Ok(Upgrade::Unchanged)
    }
}

/// The error of an edit that `directory` cannot make.
fn read_only<D: UserDirectory + ?Sized>(directory: &D) -> AuthError {
    AuthError::ReadOnly {
        directory: directory.describe(),
    }
}

/// The directory for users loaded at start or at a reload: the users file at `users_file`
/// when one is configured (edits go there), else `users` alone, read-only (the generated
/// user of a run without a users file).
pub fn directory(users_file: Option<&Path>, users: UserDb) -> Arc<dyn UserDirectory> {
    match users_file {
        Some(path) => Arc::new(UsersFile::new(path, users)),
        None => Arc::new(users),
    }
}

/// Why [`UserDirectory::check`] refused a login. The client is told neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An unknown user or a wrong password.
    Incorrect,
    /// The right password for a disabled user.
    Disabled,
}

/// What [`upgrade_hash`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The user's hash of this scheme was replaced by an argon2id one in the file.
    Upgraded(HashScheme),
    /// Nothing was written: the hash is argon2 already, or the file no longer holds the hash
    /// that was verified (the user was changed, upgraded or removed since it was loaded).
    Unchanged,
}
