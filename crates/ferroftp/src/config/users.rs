//! `[auth]` (password checking, where homes may be) and `[anonymous]` (anonymous logins).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Permissions, invalid};

/// Password checking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// After a successful login with a legacy hash (bcrypt, SHA-512/SHA-256/MD5-crypt, as
    /// moved from another server), hash the password with argon2id and write that to the users
    /// file in place of the old hash.
    pub rehash_to_argon2: bool,
    /// Accept absolute homes outside `root` (in the users file and through the admin API).
    /// Off by default: a home is what a user can read, and one typed or sent wrong (`/etc`)
    /// would expose the system. Relative homes stay under the root either way.
    pub allow_homes_outside_root: bool,
}

impl Default for AuthConfig {
    /// On: the legacy hashes are much cheaper to crack than argon2id if the file ever leaks
    /// (MD5-crypt especially), and users cannot be made to change their passwords; the
    /// rewrite is atomic and keeps the file's comments. A server that cannot write the file
    /// logs a warning and the login goes on.
    fn default() -> Self {
        Self {
            rehash_to_argon2: true,
            allow_homes_outside_root: false,
        }
    }
}

/// The anonymous home unless one is configured, under the root.
pub const DEFAULT_ANONYMOUS_HOME: &str = "pub";

/// Anonymous access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Accept USER anonymous / USER ftp with any password.
    pub enabled: bool,
    /// The anonymous home, relative to `root` (or absolute, under it): a directory of its
    /// own, never one that holds a user's home. The default, `pub`, is created at start when
    /// missing; any other must exist.
    pub home: PathBuf,
    /// What anonymous users may do; read-only by default.
    pub permissions: Permissions,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            home: PathBuf::from(DEFAULT_ANONYMOUS_HOME),
            permissions: Permissions::READ_ONLY,
        }
    }
}

impl AnonymousConfig {
    /// The anonymous home must name a directory.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.home.as_os_str().is_empty() {
            return Err(invalid(
                "anonymous.home",
                "must name a directory (the default is \"pub\" under the root)",
            ));
        }
        Ok(())
    }
}
