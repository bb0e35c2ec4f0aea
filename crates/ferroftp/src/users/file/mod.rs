//! The users file: the embedded default [`UserDirectory`]. Lookups and password checks answer
//! from the users loaded from it ([`UserDb`]); edits rewrite the file, and the server takes
//! them in at its next reload.
//!
//! - `parse.rs`: the format: `[[user]]` tables, validated key by key.
//! - `edit.rs`: creating, changing and deleting users with `toml_edit`, comments kept.
//! - `write.rs`: locking, the atomic rewrite, the file's owner, group and mode kept.

mod edit;
mod parse;
mod write;

use std::io;
use std::path::{Path, PathBuf};

pub use edit::{
    EditMode, UserChange, UserUpdate, delete_user, edit_user, upgrade_hash, upsert_user,
    upsert_users,
};
pub use parse::check_user_name;
pub(super) use parse::parse_raw;

use super::{AuthError, HashParams, Refusal, Upgrade, User, UserDb, UserDirectory};

/// A users file and the users loaded from it.
#[derive(Debug, Clone)]
pub struct UsersFile {
    path: PathBuf,
    users: UserDb,
}

impl UsersFile {
    /// The users file at `path`, with `users` as loaded from it (by [`UserDb::load`]).
    pub fn new(path: impl Into<PathBuf>, users: UserDb) -> Self {
        UsersFile {
            path: path.into(),
            users,
        }
    }

    /// Load the users file at `path`. A missing or empty file has no users (yet): the first
    /// edit creates it, as `ferroftp passwd` does. BLOCKING (file I/O, and the dummy hash
    /// that unknown users are checked against is made here).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let users = match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => UserDb::empty(),
            Ok(text) => UserDb::parse(&text, &path.display().to_string())?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => UserDb::empty(),
            Err(error) => return Err(AuthError::Read { path, error }),
        };
        Ok(UsersFile { path, users })
    }

    /// The users file at `path` for edits only, as the command line makes them: nothing is
    /// loaded (lookups find no one), and each edit reads the file under its lock, so a
    /// missing or unreadable file is reported by the edit itself.
    pub fn for_editing(path: impl Into<PathBuf>) -> Self {
        UsersFile::new(path, UserDb::empty())
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users as loaded (edits since then are not in them).
    pub fn users(&self) -> &UserDb {
        &self.users
    }
}

impl UserDirectory for UsersFile {
    fn describe(&self) -> String {
        format!("users file {}", self.path.display())
    }

    fn get(&self, name: &str) -> Option<User> {
        self.users.get(name).cloned()
    }

    fn check(&self, name: &str, password: &str) -> Result<User, Refusal> {
        self.users.check(name, password)
    }

    fn verify_cost(&self, name: &str) -> u64 {
        self.users.verify_cost(name)
    }

    fn len(&self) -> usize {
        self.users.len()
    }

    fn list(&self) -> Result<Vec<User>, AuthError> {
        Ok(self.users.users().cloned().collect())
    }

    fn writable(&self) -> bool {
        true
    }

    fn create(&self, name: &str, change: &UserChange<'_>) -> Result<(), AuthError> {
        edit_user(&self.path, name, change, EditMode::Create).map(drop)
    }

    fn update(&self, name: &str, change: &UserChange<'_>) -> Result<(), AuthError> {
        edit_user(&self.path, name, change, EditMode::Update).map(drop)
    }

    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        home: Option<&Path>,
    ) -> Result<bool, AuthError> {
        upsert_user(&self.path, name, password_hash, home)
    }

    fn import(&self, updates: &[UserUpdate<'_>]) -> Result<Vec<bool>, AuthError> {
        upsert_users(&self.path, updates)
    }

    fn delete(&self, name: &str) -> Result<(), AuthError> {
        delete_user(&self.path, name)
    }

    fn upgrade_hash(
        &self,
        user: &User,
        password: &str,
        params: HashParams,
    ) -> Result<Upgrade, AuthError> {
        upgrade_hash(&self.path, user, password, params)
    }
}

#[cfg(test)]
mod tests;
