//! [`UserDb`]: users in memory, and the constant-ish time password check.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

#[cfg(doc)]
use super::UsersFile;
use super::hash::{Cost, HashParams, dummy_hash, dummy_hash_for, hash_cost, verify_hash};
use super::user::HashString;
use super::{AuthError, Refusal, User, UserDirectory, file};

/// A set of users in memory, as loaded from a users file (or made for a run without one).
/// Cheap to clone (an `Arc` inside): it is shared by all sessions. On its own, a read-only
/// [`UserDirectory`]; [`UsersFile`] is one that edits the file it was loaded from.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: Arc<BTreeMap<String, User>>,
    /// What unknown and disabled users are checked against: a hash with the parameters most
    /// users have, so that they cost the same as a real user's wrong password.
    dummy: Option<Arc<str>>,
}

impl UserDb {
    /// A database with no users.
    pub fn empty() -> Self {
        UserDb::default()
    }

    /// Read and validate a users file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = fs::read_to_string(path).map_err(|error| AuthError::Read {
            path: path.to_owned(),
            error,
        })?;
        // The dummy hash is made here, so the first failed login is not slower than later ones.
        UserDb::parse(&text, &path.display().to_string())
    }

    /// Parse and validate users-file text; `origin` (the file name) is used in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthError> {
        let users = file::parse_raw(text, origin)?
            .into_iter()
            .map(|raw| (raw.name.clone(), raw.into_user()))
            .collect();
        let mut db = UserDb {
            users: Arc::new(users),
            dummy: None,
        };
        db.refresh_dummy();
        Ok(db)
    }

    /// Pick the dummy hash's scheme and parameters: those most users have (argon2id with the
    /// default parameters if none), so that an unknown user costs what most real ones cost
    /// whether the file holds argon2 hashes or legacy ones moved from another server.
    fn refresh_dummy(&mut self) {
        let mut counts: Vec<(Cost, usize)> = Vec::new();
        for user in self.users.values() {
            if let Some(c) = hash_cost(&user.password_hash.0) {
                match counts.iter_mut().find(|(d, _)| *d == c) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((c, 1)),
                }
            }
        }
        let cost = counts
            .iter()
            .max_by_key(|(_, n)| *n)
            .map_or(Cost::Argon2(HashParams::default()), |(c, _)| *c);
        self.dummy = Some(dummy_hash_for(cost));
    }

    /// Add (or replace) a user with the given PHC hash; used for the generated default user.
    ///
    /// The hash is not validated here; a user with an unusable hash simply cannot log in.
    #[must_use]
    pub fn with_user(mut self, mut user: User, password_hash: String) -> Self {
        user.password_hash = HashString(password_hash);
        Arc::make_mut(&mut self.users).insert(user.name.clone(), user);
        self.refresh_dummy();
        self
    }

    /// The user called `name`, if any (including disabled users).
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, by name (including disabled users).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Number of users (including disabled users).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// What checking a password for `name` costs, in KiB-passes of argon2 (memory times
    /// iterations): the user's own hash, or the dummy's for unknown users.
    /// `u64::MAX` for bcrypt and crypt(3) hashes (and unusable ones): they are never cheap
    /// enough to check on an async worker.
    pub fn verify_cost(&self, name: &str) -> u64 {
        let hash = match self.users.get(name) {
            Some(user) => user.password_hash.0.as_str(),
            None => self.dummy.as_deref().unwrap_or_else(|| dummy_hash()),
        };
        match hash_cost(hash) {
            Some(Cost::Argon2(p)) => {
                u64::from(p.memory_kib).saturating_mul(u64::from(p.iterations))
            }
            _ => u64::MAX,
        }
    }

    /// Check a password. BLOCKING and deliberately slow (argon2, bcrypt, crypt(3)): the server
    /// calls it inside spawn_blocking.
    ///
    /// Returns the user on success; `None` for an unknown user, a disabled user, or a wrong
    /// password. Unknown users are checked against a dummy hash of the scheme and with the
    /// parameters most users in the file have, so they cost the same time as a wrong password
    /// (exactly so when all users share them, as `ferroftp passwd` makes them).
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        self.check(name, password).ok()
    }

    /// [`UserDb::verify`], telling why a login is refused. A disabled user's password is
    /// checked against the user's own hash (the same cost as any user's), so that the server
    /// can log that the right password was refused because the account is disabled.
    /// BLOCKING, like `verify`.
    pub fn check(&self, name: &str, password: &str) -> Result<User, Refusal> {
        match self.users.get(name) {
            Some(user) => match (verify_hash(&user.password_hash.0, password), user.disabled) {
                (true, false) => Ok(user.clone()),
                (true, true) => Err(Refusal::Disabled),
                (false, _) => Err(Refusal::Incorrect),
            },
            None => {
                match &self.dummy {
                    Some(dummy) => verify_hash(dummy, password),
                    None => verify_hash(dummy_hash(), password),
                };
                Err(Refusal::Incorrect)
            }
        }
    }
}

/// The users in memory alone: a read-only directory (the generated user of a run without a
/// users file, tests).
impl UserDirectory for UserDb {
    fn describe(&self) -> String {
        "the users in memory (no users file is configured: users_file / --users)".to_owned()
    }

    fn get(&self, name: &str) -> Option<User> {
        UserDb::get(self, name).cloned()
    }

    fn check(&self, name: &str, password: &str) -> Result<User, Refusal> {
        UserDb::check(self, name, password)
    }

    fn verify_cost(&self, name: &str) -> u64 {
        UserDb::verify_cost(self, name)
    }

    fn len(&self) -> usize {
        UserDb::len(self)
    }

    fn list(&self) -> Result<Vec<User>, AuthError> {
        Ok(self.users().cloned().collect())
    }
}
