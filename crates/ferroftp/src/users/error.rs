//! The errors of loading, checking and editing users.

use std::io;
use std::path::PathBuf;

#[cfg(doc)]
use super::{UserDirectory, edit_user, upsert_user};

/// Errors from loading or editing users files, hashing, and reading passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The users file could not be read.
    #[error("cannot read users file {}: {error}", path.display())]
    Read {
        /// The users file.
        path: PathBuf,
        /// The underlying I/O error.
        error: io::Error,
    },
    /// The users file could not be written.
    #[error("cannot write users file {}: {error}", path.display())]
    Write {
        /// The users file.
        path: PathBuf,
        /// The underlying I/O error.
        error: io::Error,
    },
    /// The users file is not valid TOML (message includes line and column).
    #[error("users file {origin}: {message}")]
    Syntax {
        /// File name the text came from.
        origin: String,
        /// What is wrong, starting with `line L, column C:` when known.
        message: String,
    },
    /// The users file is valid TOML but not a valid users file.
    #[error("users file {origin}: {message}")]
    Invalid {
        /// File name the text came from.
        origin: String,
        /// What is wrong, starting with the user (`user "bob"` or `user #3`) and key.
        message: String,
    },
    /// A user name given to [`upsert_user`] is not acceptable.
    #[error("invalid user name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// [`edit_user`] was to create a user that exists.
    #[error("user {name:?} already exists")]
    UserExists {
        /// The user name.
        name: String,
    },
    /// [`edit_user`] was to change a user that does not exist.
    #[error("no user {name:?} in the users file")]
    NoSuchUser {
        /// The user name.
        name: String,
    },
    /// A password hash given to [`upsert_user`] is not one that ferroftp verifies.
    #[error("invalid password hash: {0}")]
    InvalidHash(String),
    /// A home directory given to [`upsert_user`] cannot be stored in the users file.
    #[error("invalid home directory {}: {reason}", path.display())]
    InvalidHome {
        /// The rejected path.
        path: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The argon2 cost parameters are out of range.
    #[error("invalid argon2 parameters: {0}")]
    HashParams(argon2::Error),
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(rand::Error),
    /// Reading a new password from the terminal or stdin failed.
    #[error("cannot read password: {0}")]
    ReadPassword(io::Error),
    /// The two passwords typed at the terminal differ.
    #[error("passwords do not match")]
    PasswordMismatch,
    /// An empty password was given.
    #[error("empty password refused")]
    EmptyPassword,
    /// The users come from a source that cannot be edited (see [`UserDirectory::writable`]).
    #[error("{directory} is read-only: users cannot be changed at run time")]
    ReadOnly {
        /// What the users come from ([`UserDirectory::describe`]).
        directory: String,
    },
}
