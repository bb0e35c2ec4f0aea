//! A user as a directory hands it to the server.

use std::fmt;
use std::path::PathBuf;

use super::hash::{self, HashScheme};
#[cfg(doc)]
use super::{UserDb, resolve_home, upgrade_hash};
use crate::policy::Permissions;
use crate::policy::{Fingerprint, TlsPolicy};

/// A password hash string; `Debug` redacts it so a logged `User` never leaks it.
#[derive(Clone, Default)]
pub(crate) struct HashString(pub(crate) String);

impl fmt::Debug for HashString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user as a [`UserDirectory`](super::UserDirectory) hands it to the server.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name (non-empty, no whitespace or control characters).
    pub name: String,
    /// Home directory: relative to the server root, or absolute; `None` = the server root.
    /// It must stay under the root (see [`resolve_home`]).
    pub home: Option<PathBuf>,
    /// What the user may do.
    pub permissions: Permissions,
    /// A disabled user cannot log in.
    pub disabled: bool,
    /// How much TLS this user must use (the listener's policy applies as well).
    pub tls_policy: TlsPolicy,
    /// SHA-256 fingerprints (`AB:CD:...`) of client certificates that log this user in
    /// without a password.
    pub client_certs: Vec<Fingerprint>,
    pub(crate) password_hash: HashString,
}

impl User {
    /// A user with no home (the server root), all permissions, enabled; the password hash is set by [`UserDb::with_user`].
    pub fn new(name: impl Into<String>) -> Self {
        User {
            name: name.into(),
            home: None,
            permissions: Permissions::ALL,
            disabled: false,
            tls_policy: TlsPolicy::Optional,
            client_certs: Vec::new(),
            password_hash: HashString::default(),
        }
    }

    /// The kind of the user's password hash (`None`: unusable, possible only for users added
    /// with [`UserDb::with_user`]). Anything but argon2 is a legacy hash that
    /// [`upgrade_hash`] can replace.
    pub fn hash_scheme(&self) -> Option<HashScheme> {
        HashScheme::of(&self.password_hash.0)
    }

    /// Whether the password hash is a well-formed legacy one (bcrypt, crypt(3)): one to
    /// re-hash to argon2id. Cheaper than [`User::hash_scheme`]: an argon2 string is told by
    /// its prefix, not parsed again at every login.
    pub fn has_legacy_hash(&self) -> bool {
        hash::is_legacy(&self.password_hash.0)
    }
}
