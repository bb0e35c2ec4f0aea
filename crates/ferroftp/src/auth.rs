//! Virtual users: the users file, argon2id password hashes and per-user permissions.
//!
//! Users are not system accounts. They live in a TOML users file, one `[[user]]` table each:
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
//! [`UserDb`] is the loaded, validated file; [`UserDb::verify`] checks a password in constant-ish
//! time whether or not the user exists. [`upsert_user`] edits the file for `ferroftp passwd`,
//! [`upsert_users`] for `ferroftp import-users`, [`edit_user`] for the admin API, and
//! [`upgrade_hash`] replaces a legacy hash (bcrypt, crypt(3)) by an argon2id one after a
//! successful login.
//! Passwords never appear in error messages; neither do password hashes.

mod legacy;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use serde::Deserialize;

use crate::policy::TlsPolicy;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, TableLike, Value};

pub use crate::policy::{Permission, Permissions};

/// A password hash string; `Debug` redacts it so a logged `User` never leaks it.
#[derive(Clone, Default)]
struct HashString(String);

impl fmt::Debug for HashString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The kind of a password hash in the users file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashScheme {
    /// argon2 (argon2id, as `ferroftp passwd` writes; argon2i and argon2d verify too).
    Argon2,
    /// bcrypt: `$2b$`, `$2a$` or `$2y$`.
    Bcrypt,
    /// crypt(3) SHA-512-crypt: `$6$`.
    Sha512Crypt,
    /// crypt(3) SHA-256-crypt: `$5$`.
    Sha256Crypt,
    /// crypt(3) MD5-crypt: `$1$`.
    Md5Crypt,
}

impl HashScheme {
    /// The name used in logs and reports: `argon2`, `bcrypt`, `sha512-crypt`, `sha256-crypt`
    /// or `md5-crypt`.
    pub const fn name(self) -> &'static str {
        match self {
            HashScheme::Argon2 => "argon2",
            HashScheme::Bcrypt => "bcrypt",
            HashScheme::Sha512Crypt => "sha512-crypt",
            HashScheme::Sha256Crypt => "sha256-crypt",
            HashScheme::Md5Crypt => "md5-crypt",
        }
    }

    /// The scheme of `hash`, if it is a well-formed hash that ferroftp verifies.
    pub fn of(hash: &str) -> Option<HashScheme> {
        check_password_hash(hash).ok()
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A user as loaded from the users file.
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
    pub client_certs: Vec<String>,
    password_hash: HashString,
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
        matches!(legacy::parse(&self.password_hash.0), Some(Ok(_)))
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory cost in KiB (argon2 `m`).
    pub memory_kib: u32,
    /// Number of passes (argon2 `t`).
    pub iterations: u32,
    /// Degree of parallelism, in lanes (argon2 `p`).
    pub parallelism: u32,
}

impl Default for HashParams {
    /// 19456 KiB (19 MiB), 2 iterations, 1 lane: OWASP's recommended minimum for argon2id
    /// (Password Storage Cheat Sheet).
    fn default() -> Self {
        HashParams {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

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
}

/// Hash `password` with argon2id and a random salt (OsRng); returns the PHC string.
pub fn hash_password(password: &str, params: HashParams) -> Result<String, AuthError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(AuthError::HashParams)?;
    let mut salt = [0u8; 16];
    OsRng.try_fill_bytes(&mut salt).map_err(AuthError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(AuthError::Hash)?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(AuthError::Hash)?;
    Ok(hash.to_string())
}

/// Password verified against the dummy hash; its value is irrelevant.
const DUMMY_PASSWORD: &str = "ferroftp timing-equalisation dummy password";

/// Used only if hashing the dummy password fails (the OS RNG failing): `DUMMY_PASSWORD` hashed with
/// the default parameters. A test checks it still matches `HashParams::default()`.
const FALLBACK_DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZmVycm9mdHBkdW1teXNhbHQ$B+KaAPYYWIo9yAcOe27JQa0nK6XdqwIEOIl2mClFJF0";

/// The hash verified for unknown and disabled users, so they cost the same as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(DUMMY_PASSWORD, HashParams::default())
            .unwrap_or_else(|_| FALLBACK_DUMMY_HASH.to_owned())
    })
}

#[cfg(test)]
thread_local! {
    /// Every hash `verify_hash` ran argon2 against on this thread, for the timing tests.
    static VERIFIED_HASHES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Check `password` against `hash` (argon2, or a legacy bcrypt or crypt(3) hash). An
/// unparsable hash (only possible via [`UserDb::with_user`]) is replaced by the argon2 dummy
/// hash, so that it costs a verification all the same.
fn verify_hash(hash: &str, password: &str) -> bool {
    if let Some(Ok(legacy)) = legacy::parse(hash) {
        let ok = legacy.verify(password);
        #[cfg(test)]
        VERIFIED_HASHES.with(|v| v.borrow_mut().push(hash.to_owned()));
        return ok;
    }
    let (parsed, genuine) = match PasswordHash::new(hash) {
        Ok(parsed) => (parsed, true),
        Err(_) => match PasswordHash::new(dummy_hash()) {
            Ok(parsed) => (parsed, false),
            Err(_) => return false,
        },
    };
    let ok = SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        argon2_matches(&parsed, password.as_bytes(), &mut scratch)
    });
    #[cfg(test)]
    VERIFIED_HASHES.with(|v| v.borrow_mut().push(parsed.to_string()));
    genuine && ok
}

thread_local! {
    /// argon2's working memory, kept per thread and reused. Allocating and freeing it for
    /// every login (megabytes at a time, between the small long-lived allocations of
    /// sessions) fragments the heap so badly that each login costs the server ~150 KiB for
    /// good; reused, it costs nothing after the first.
    static SCRATCH: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` hashes to `hash` (any argon2 variant), using `scratch` as the memory.
fn argon2_matches(
    hash: &PasswordHash<'_>,
    password: &[u8],
    scratch: &mut Vec<argon2::Block>,
) -> bool {
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if scratch.len() < need {
        scratch.resize(need, argon2::Block::default());
    }
    let Some(memory) = scratch.get_mut(..need) else {
        return false;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, memory)
        .is_ok()
        // `Output`'s equality is constant-time.
        && argon2::password_hash::Output::new(out).is_ok_and(|computed| computed == expected)
}

/// What the users file accepts in `password`, for error messages.
const EXPECTED_HASH: &str = "expected an argon2id PHC string such as \
    \"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>\" (set it with `ferroftp passwd`), or a hash \
    moved from another server: bcrypt ($2b$, $2a$, $2y$), SHA-512-crypt ($6$), SHA-256-crypt \
    ($5$) or MD5-crypt ($1$)";

/// Check that `hash` is a hash ferroftp can verify against: an argon2 PHC string, or a
/// well-formed bcrypt, SHA-512-crypt, SHA-256-crypt or MD5-crypt hash. The error says what is
/// wrong and what is accepted, and never contains the string itself: it might be a plaintext
/// password pasted in the wrong place.
fn check_hash(hash: &str) -> Result<HashScheme, String> {
    check_password_hash(hash).map_err(|reason| format!("{reason}; {EXPECTED_HASH}"))
}

/// The scheme of `hash` if it can go in a users file's `password`, or in a few words why not
/// (never quoting it): malformed, or a scheme ferroftp does not verify (such as yescrypt).
pub fn check_password_hash(hash: &str) -> Result<HashScheme, String> {
    if let Some(parsed) = legacy::parse(hash) {
        return parsed.map(|l| l.scheme());
    }
    if let Some(name) = legacy::unsupported(hash) {
        return Err(format!(
            "{name} hashes are not supported: set a new password with `ferroftp passwd`"
        ));
    }
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a valid PHC string ({e})"))?;
    Algorithm::try_from(parsed.algorithm).map_err(|_| {
        format!(
            "hash algorithm {:?} is not supported",
            parsed.algorithm.as_str()
        )
    })?;
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|_| format!("unsupported argon2 version {version}"))?;
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("PHC string has no salt or no hash".to_owned());
    }
    Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters ({e})"))?;
    Ok(HashScheme::Argon2)
}

/// Check a user name as the users file does: why it is not acceptable, if it is not.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    check_name(name)
}

/// Check a user name: non-empty, no whitespace, no control characters.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else if name.chars().any(char::is_whitespace) {
        Err("must not contain whitespace")
    } else {
        Ok(())
    }
}

/// Check a home directory string. A relative home is resolved from the server root and must
/// stay under it, whatever the root is.
fn check_home(home: &str) -> Result<(), &'static str> {
    if home.is_empty() {
        Err("must not be empty (leave it out for the server root)")
    } else if home.contains('\0') {
        Err("must not contain NUL characters")
    } else if normalize(Path::new(home)).is_none() {
        Err("a relative home must stay under the server root (too many `..`)")
    } else {
        Ok(())
    }
}

/// `path` with `.` and `..` taken out without looking at the disk; `None` when a relative path
/// climbs above where it starts. (`/..` is `/`, as the kernel takes it.)
fn normalize(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !path.is_absolute() {
                    return None;
                }
            }
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
        }
    }
    Some(out)
}

/// The directory a home names, checked against the server root: `None` is the root itself, a
/// relative home is taken from the root and must stay under it, and an absolute home must be
/// under the root unless `outside_ok` (`auth.allow_homes_outside_root`). A home that exists
/// is also checked after following its symbolic links, so a link cannot lead out of the
/// root either. `root` should be absolute. The error says why, for a message that names the
/// user and the key.
pub fn resolve_home(root: &Path, home: Option<&Path>, outside_ok: bool) -> Result<PathBuf, String> {
    let root = normalize(root).unwrap_or_else(|| root.to_owned());
    let Some(home) = home else {
        return Ok(root);
    };
    let relative = !home.is_absolute();
    let path = normalize(&root.join(home))
        .filter(|p| !relative || p.starts_with(&root))
        .ok_or_else(|| {
            format!(
                "{}: a relative home must stay under the server root {}",
                home.display(),
                root.display()
            )
        })?;
    if relative || outside_ok {
        if relative && !outside_ok {
            check_real_path(&root, &path)?;
        }
        return Ok(path);
    }
    if !path.starts_with(&root) {
        return Err(format!(
            "{} is outside the server root {}; homes outside the root need auth.allow_homes_outside_root = true",
            path.display(),
            root.display()
        ));
    }
    check_real_path(&root, &path)?;
    Ok(path)
}

/// Refuse a home under the root that leads out of it through a symbolic link.
fn check_real_path(root: &Path, path: &Path) -> Result<(), String> {
    if let (Ok(real), Ok(real_root)) = (fs::canonicalize(path), fs::canonicalize(root)) {
        if !real.starts_with(&real_root) {
            return Err(format!(
                "{} leads (through a symbolic link) to {}, outside the server root; homes outside the root need auth.allow_homes_outside_root = true",
                path.display(),
                real.display()
            ));
        }
    }
    Ok(())
}

/// Check the homes of `users` and of anonymous logins (`anonymous`: the configured anonymous
/// home, when anonymous logins are on) against `root`, as [`resolve_home`] does, and refuse an
/// anonymous home that is, or contains, a user's home: anonymous users could read that
/// user's files. `origin` names the users file in messages.
pub fn check_homes(
    root: &Path,
    users: &UserDb,
    anonymous: Option<&Path>,
    outside_ok: bool,
    origin: &str,
) -> Result<(), String> {
    let mut homes = Vec::with_capacity(users.len());
    for user in users.users() {
        let home = resolve_home(root, user.home.as_deref(), outside_ok)
            .map_err(|why| format!("{origin}: user {:?}: home: {why}", user.name))?;
        homes.push((user, home));
    }
    let Some(anonymous) = anonymous else {
        return Ok(());
    };
    let anon = resolve_home(root, Some(anonymous), outside_ok)
        .map_err(|why| format!("config key `anonymous.home`: {why}"))?;
    // Compared as they are on disk where they exist (symbolic links followed), else as written.
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let anon_real = real(&anon);
    for (user, home) in &homes {
        if real(home).starts_with(&anon_real) || home.starts_with(&anon) {
            return Err(format!(
                "config key `anonymous.home`: {} contains the home of user {:?} ({}), so anonymous users could read that user's files; give anonymous logins a directory of their own (the default is \"pub\" under the root)",
                anon.display(),
                user.name,
                home.display()
            ));
        }
    }
    Ok(())
}

/// The set of users. Cheap to clone (wrap in Arc internally) — it's shared by all sessions.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: Arc<BTreeMap<String, User>>,
    /// What unknown and disabled users are checked against: a hash with the parameters most
    /// users have, so that they cost the same as a real user's wrong password.
    dummy: Option<Arc<str>>,
}

/// The argon2 parameters of a PHC hash string, if it is one.
fn hash_params(hash: &str) -> Option<HashParams> {
    let parsed = PasswordHash::new(hash).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    Some(HashParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    })
}

/// What checking a hash costs: its scheme and parameters. Hashes with the same cost take the
/// same time to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    Argon2(HashParams),
    Legacy(legacy::LegacyCost),
}

/// The cost of checking `hash`, if it is a hash ferroftp verifies.
fn hash_cost(hash: &str) -> Option<Cost> {
    match legacy::parse(hash) {
        Some(parsed) => parsed.ok().map(|l| Cost::Legacy(l.cost())),
        None => hash_params(hash).map(Cost::Argon2),
    }
}

/// The dummy hash for `cost`, made once per cost.
fn dummy_hash_for(cost: Cost) -> Arc<str> {
    type Cache = std::sync::Mutex<Vec<(Cost, Arc<str>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, h)) = cache.iter().find(|(c, _)| *c == cost) {
        return Arc::clone(h);
    }
    let made = match cost {
        Cost::Argon2(params) if params == HashParams::default() => Some(dummy_hash().to_owned()),
        Cost::Argon2(params) => hash_password(DUMMY_PASSWORD, params).ok(),
        Cost::Legacy(cost) => legacy::make(cost, DUMMY_PASSWORD),
    };
    let hash: Arc<str> = made.map_or_else(|| dummy_hash().into(), Into::into);
    cache.push((cost, Arc::clone(&hash)));
    hash
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
        let users = parse_raw(text, origin)?
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

/// Why [`UserDb::check`] refused a login. The client is told neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An unknown user or a wrong password.
    Incorrect,
    /// The right password for a disabled user.
    Disabled,
}

/// Keys allowed in a `[[user]]` table.
const USER_KEYS: [&str; 7] = [
    "name",
    "password",
    "home",
    "permissions",
    "disabled",
    "tls_policy",
    "client_cert_sha256",
];

/// Top level of the users file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<toml::Table>,
}

/// One validated user exactly as written in the file (absent optional keys stay absent).
#[derive(Debug)]
struct RawUser {
    name: String,
    password: String,
    home: Option<String>,
    permissions: Option<Permissions>,
    disabled: Option<bool>,
    tls_policy: Option<TlsPolicy>,
    client_certs: Vec<String>,
}

impl RawUser {
    /// Validate one `[[user]]` table; `index` is 1-based. Errors start with the user's label.
    fn from_table(table: &toml::Table, index: usize) -> Result<RawUser, String> {
        let label = match table.get("name").and_then(toml::Value::as_str) {
            Some(name) if check_name(name).is_ok() => format!("user {name:?}"),
            _ => format!("user #{index}"),
        };
        if let Some(key) = table.keys().find(|k| !USER_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "{label}: unknown key {key:?} (expected one of {})",
                USER_KEYS.join(", ")
            ));
        }
        let string = |key: &str| -> Result<Option<String>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!(
                    "{label}: {key}: expected a string, found {}",
                    other.type_str()
                )),
            }
        };
        let required = |key: &str| -> Result<String, String> {
            string(key)?.ok_or_else(|| format!("{label}: missing required key {key:?}"))
        };

        let name = required("name")?;
        check_name(&name).map_err(|reason| format!("{label}: name: {reason}"))?;
        let password = required("password")?;
        check_hash(&password).map_err(|reason| format!("{label}: password: {reason}"))?;
        let home = string("home")?;
        if let Some(home) = &home {
            check_home(home).map_err(|reason| format!("{label}: home: {reason}"))?;
        }
        let permissions = table
            .get("permissions")
            .map(|value| {
                value
                    .clone()
                    .try_into::<Permissions>()
                    .map_err(|e| format!("{label}: permissions: {}", e.message()))
            })
            .transpose()?;
        let disabled = match table.get("disabled") {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(other) => {
                return Err(format!(
                    "{label}: disabled: expected true or false, found {}",
                    other.type_str()
                ));
            }
        };
        let tls_policy = table
            .get("tls_policy")
            .map(|value| {
                value.clone().try_into::<TlsPolicy>().map_err(|_| {
                    format!("{label}: tls_policy: expected \"optional\", \"login\" or \"login_and_data\"")
                })
            })
            .transpose()?;
        let client_certs = match table.get("client_cert_sha256") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(crate::tls::normalize_fingerprint)
                        .ok_or_else(|| {
                            format!("{label}: client_cert_sha256: each entry must be a SHA-256 fingerprint (64 hex digits, colons optional)")
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "{label}: client_cert_sha256: expected a list of fingerprints, found {}",
                    other.type_str()
                ));
            }
        };
        Ok(RawUser {
            name,
            password,
            home,
            permissions,
            disabled,
            tls_policy,
            client_certs,
        })
    }

    fn into_user(self) -> User {
        User {
            name: self.name,
            home: self.home.map(PathBuf::from),
            permissions: self.permissions.unwrap_or(Permissions::ALL),
            disabled: self.disabled.unwrap_or(false),
            tls_policy: self.tls_policy.unwrap_or_default(),
            client_certs: self.client_certs,
            password_hash: HashString(self.password),
        }
    }
}

/// Parse and validate users-file text into the users as written.
fn parse_raw(text: &str, origin: &str) -> Result<Vec<RawUser>, AuthError> {
    let file: RawFile = toml::from_str(text).map_err(|e| AuthError::Syntax {
        origin: origin.to_owned(),
        message: describe_toml_error(text, e.message(), e.span()),
    })?;
    let invalid = |message: String| AuthError::Invalid {
        origin: origin.to_owned(),
        message,
    };
    let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut users = Vec::with_capacity(file.user.len());
    for (i, table) in file.user.iter().enumerate() {
        let user = RawUser::from_table(table, i + 1).map_err(invalid)?;
        if let Some(first) = first_index.insert(user.name.clone(), i + 1) {
            return Err(invalid(format!(
                "user {:?}: duplicate user name (user #{} and user #{first} have the same name)",
                user.name,
                i + 1
            )));
        }
        users.push(user);
    }
    Ok(users)
}

/// `line L, column C: message` for a toml error at `span`, without toml's source excerpt (which
/// could show a secret on the offending line).
fn describe_toml_error(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let message = message.trim_end();
    let Some(before) = span.and_then(|span| text.get(..span.start)) else {
        return message.to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

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

/// What [`upgrade_hash`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The user's hash of this scheme was replaced by an argon2id one in the file.
    Upgraded(HashScheme),
    /// Nothing was written: the hash is argon2 already, or the file no longer holds the hash
    /// that was verified (the user was changed, upgraded or removed since it was loaded).
    Unchanged,
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

/// Serialises this process's edits of users files (the server's hash upgrades may run at
/// once), so that none is lost to another's read-modify-write.
static EDIT_LOCK: Mutex<()> = Mutex::new(());

/// An exclusive advisory lock (flock) on the directory of `file`, held until dropped: other
/// ferroftp processes editing a users file there (`passwd` while the server upgrades a hash)
/// wait for it, so that neither undoes the other's change. The directory, not the file, since
/// each edit replaces the file by renaming a new one over it. Best effort: `None` where the
/// directory cannot be opened or locked.
fn lock_directory(file: &Path) -> Option<fs::File> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let handle = fs::File::open(dir).ok()?;
    #[cfg(unix)]
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(handle)
}

/// Read the users file at `path` (missing or empty: a new file), let `edit` change the
/// document, validate the result and write it atomically. `edit` gets the document and the
/// users as they are now; `Ok(None)` from it writes nothing.
fn edit_users_file<R>(
    path: &Path,
    edit: impl FnOnce(&mut DocumentMut, &[RawUser]) -> Result<Option<R>, AuthError>,
) -> Result<Option<R>, AuthError> {
    let _serial = EDIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let target = resolve_symlink(path);
    let _locked = lock_directory(&target);
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
    write_atomic(&target, &text).map_err(|error| AuthError::Write {
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

/// `path`, or the file it links to if it is a symlink that resolves.
fn resolve_symlink(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

/// Write `text` to `path` atomically: a temporary file in the same directory, fsync, rename.
///
/// The new file keeps the owner, group and mode of the file it replaces (`passwd` run as root
/// must not turn a `ferroftp:ferroftp 0640` file into `root:root 0600` the service cannot read).
/// A new file is mode 0o600 and belongs to the directory's owner and group, so that root
/// creating it in the service's state directory leaves it readable by the service.
fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    keep_ownership(file.as_file(), path, dir)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // Make the rename durable; not all platforms or file systems support syncing a directory.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Give the temporary `file` that will replace `path` the owner, group and permission bits of
/// `path`, less any access for others. A new file takes the owner and group of `dir`, and the
/// mode [`new_file_mode`] gives: 0o640 when the writer owns `dir` and shares it with exactly a
/// group that is not the writer's own (`sudo ferroftp passwd` in `root:ferroftp 0750
/// /etc/ferroftp`: the service reads through that group), else 0o600 (`ferroftp:ferroftp
/// 0750`: the owner is the reader). Others never get access.
///
/// Only root may give a file away: an unprivileged writer (the server upgrading a hash) keeps
/// the group if it is one of its own, and otherwise becomes the owner of the new file, which
/// is the user that had to be able to read it anyway. The mode is always kept.
#[cfg(unix)]
fn keep_ownership(file: &fs::File, path: &Path, dir: &Path) -> io::Result<()> {
    use rustix::fs::{Gid, Uid, fchown};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (mode, owner) = match fs::metadata(path) {
        // Never access for others: the file holds password hashes.
        Ok(meta) => (meta.mode() & 0o770, Some((meta.uid(), meta.gid()))),
        Err(_) => match fs::metadata(dir) {
            Ok(meta) => {
                let writer = (
                    rustix::process::geteuid().as_raw(),
                    rustix::process::getegid().as_raw(),
                );
                let mode = new_file_mode(meta.mode(), (meta.uid(), meta.gid()), writer);
                (mode, Some((meta.uid(), meta.gid())))
            }
            Err(_) => (0o600, None),
        },
    };
    if let Some((uid, gid)) = owner {
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        if fchown(file, Some(uid), Some(gid)).is_err() {
            let _ = fchown(file, None, Some(gid));
        }
    }
    // After chown, which may clear set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// The mode of a new users file in a directory of mode `dir_mode` owned by `dir_owner` (uid,
/// gid), written by `writer` (effective uid, gid): 0o640 when the writer owns the directory,
/// the directory gives its group read and search and others nothing, and that group is not the
/// writer's own (so it is there for someone else, the service, to read through); else 0o600.
#[cfg(unix)]
fn new_file_mode(dir_mode: u32, dir_owner: (u32, u32), writer: (u32, u32)) -> u32 {
    let shared_with_its_group = dir_mode & 0o057 == 0o050;
    if shared_with_its_group && dir_owner.0 == writer.0 && dir_owner.1 != writer.1 {
        0o640
    } else {
        0o600
    }
}

/// Read a new password for `ferroftp passwd`: prompted twice on a terminal, else one line of stdin.
///
/// On a terminal (stdin is a TTY) the password is read without echo, twice, and both must match.
/// Otherwise one line is read from stdin and its line ending (`\n` or `\r\n`) removed.
/// An empty password is refused.
pub fn read_new_password() -> Result<String, AuthError> {
    let password = if io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("New password: ").map_err(AuthError::ReadPassword)?;
        if first.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let second =
            rpassword::prompt_password("Retype new password: ").map_err(AuthError::ReadPassword)?;
        if first != second {
            return Err(AuthError::PasswordMismatch);
        }
        first
    } else {
        read_password_line(&mut io::stdin().lock())?
    };
    if password.is_empty() {
        return Err(AuthError::EmptyPassword);
    }
    Ok(password)
}

/// One line from `reader` without its line ending.
fn read_password_line(reader: &mut impl BufRead) -> Result<String, AuthError> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(AuthError::ReadPassword)?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// Characters of generated passwords: alphanumerics without look-alikes (0 O o 1 l I).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Length of generated passwords (about 116 bits of entropy).
const GENERATED_PASSWORD_LEN: usize = 20;

/// A random password for the generated default user: 20 chars from an unambiguous alphanumeric alphabet, OsRng.
pub fn generate_password() -> String {
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[OsRng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so tests that hash many passwords stay fast.
    const CHEAP: HashParams = HashParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    fn hash(password: &str) -> String {
        hash_password(password, CHEAP).expect("hashing")
    }

    fn take_verified() -> Vec<String> {
        VERIFIED_HASHES.with(|v| std::mem::take(&mut *v.borrow_mut()))
    }

    fn users_file(users: &[(&str, &str, &str)]) -> String {
        users
            .iter()
            .map(|(name, hash, extra)| {
                format!("[[user]]\nname = {name:?}\npassword = {hash:?}\n{extra}\n")
            })
            .collect()
    }

    fn parse_err(text: &str) -> String {
        UserDb::parse(text, "/x/users.toml")
            .expect_err("parse should fail")
            .to_string()
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let h = hash_password("correct horse", HashParams::default()).expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let db = UserDb::empty().with_user(User::new("alice"), h);
        let user = db.verify("alice", "correct horse").expect("verified");
        assert_eq!(user.name, "alice");
        assert_eq!(user.permissions, Permissions::ALL);
        // Salts are random.
        assert_ne!(hash("x"), hash("x"));
    }

    #[test]
    fn wrong_password_unknown_and_disabled_users_are_rejected() {
        let h = hash("secret");
        let text = users_file(&[("alice", &h, ""), ("bob", &h, "disabled = true")]);
        let db = UserDb::parse(&text, "users.toml").expect("parse");
        assert!(db.verify("alice", "secret").is_some());
        assert!(db.verify("alice", "Secret").is_none());
        assert!(db.verify("alice", "").is_none());
        assert!(db.verify("carol", "secret").is_none());
        assert!(db.verify("bob", "secret").is_none());
        assert!(db.verify("ALICE", "secret").is_none());
        assert!(db.get("bob").expect("bob").disabled);
    }

    #[test]
    fn every_failure_runs_one_argon2_verification() {
        let h = hash("secret");
        let text = users_file(&[("alice", &h, ""), ("bob", &h, "disabled = true")]);
        let db = UserDb::parse(&text, "users.toml").expect("parse");
        take_verified();

        assert!(db.verify("alice", "wrong").is_none());
        assert_eq!(take_verified(), vec![h.clone()]);

        // Unknown users are verified against a dummy hash instead, one with the users' own
        // parameters, so that they cost the same.
        let dummy = dummy_hash_for(Cost::Argon2(CHEAP)).to_string();
        assert_eq!(hash_params(&dummy), Some(CHEAP));
        assert!(db.verify("nobody", "wrong").is_none());
        assert_eq!(take_verified(), vec![dummy.clone()]);
        // A disabled user against its own hash, so that the server can tell (and log) that
        // the right password was refused.
        assert!(db.verify("bob", "secret").is_none());
        assert_eq!(take_verified(), vec![h.clone()]);
        assert_eq!(db.check("bob", "secret").unwrap_err(), Refusal::Disabled);
        assert_eq!(db.check("bob", "wrong").unwrap_err(), Refusal::Incorrect);
        take_verified();

        // A user whose hash is unusable also pays for one verification.
        let db = db.with_user(User::new("broken"), "not a hash".to_owned());
        assert!(db.verify("broken", "not a hash").is_none());
        assert_eq!(take_verified(), vec![dummy_hash().to_owned()]);
    }

    #[test]
    fn dummy_hash_uses_default_parameters() {
        let defaults = HashParams::default();
        for h in [dummy_hash(), FALLBACK_DUMMY_HASH] {
            let parsed = PasswordHash::new(h).expect("dummy parses");
            assert_eq!(parsed.algorithm.as_str(), "argon2id");
            let params = Params::try_from(&parsed).expect("params");
            assert_eq!(
                (params.m_cost(), params.t_cost(), params.p_cost()),
                (
                    defaults.memory_kib,
                    defaults.iterations,
                    defaults.parallelism
                )
            );
            assert!(verify_hash(h, DUMMY_PASSWORD));
        }
    }

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

        let scrypt = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
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

    #[test]
    fn permissions_serde_round_trip() {
        #[derive(serde::Serialize, Deserialize, Debug, PartialEq)]
        struct Doc {
            p: Permissions,
        }
        for set in [
            Permissions::NONE,
            Permissions::READ_ONLY,
            Permissions::ALL,
            [Permission::Write, Permission::Rmdir].into_iter().collect(),
        ] {
            let text = toml::to_string(&Doc { p: set }).expect("serialize");
            assert_eq!(
                toml::from_str::<Doc>(&text).expect("deserialize"),
                Doc { p: set },
                "{text}"
            );
        }
        assert_eq!(
            toml::to_string(&Doc {
                p: Permissions::READ_ONLY
            })
            .expect("serialize"),
            "p = [\"list\", \"read\"]\n"
        );
        assert_eq!(
            toml::from_str::<Doc>("p = \"all\"").expect("all").p,
            Permissions::ALL
        );
        assert_eq!(
            toml::from_str::<Doc>("p = [\"read\", \"read\", \"list\"]")
                .expect("dups")
                .p,
            Permissions::READ_ONLY
        );
        assert!(toml::from_str::<Doc>("p = \"none\"").is_err());
        assert!(toml::from_str::<Doc>("p = [\"exec\"]").is_err());
        assert!(toml::from_str::<Doc>("p = [1]").is_err());

        assert_eq!(Permissions::READ_ONLY.to_string(), "list,read");
        assert_eq!(Permissions::NONE.to_string(), "none");
        assert_eq!(Permissions::ALL.iter().count(), 8);
        assert!(
            Permissions::NONE
                .with(Permission::Mkdir)
                .has(Permission::Mkdir)
        );
        assert!(!Permissions::READ_ONLY.has(Permission::Write));
    }

    #[test]
    fn user_debug_redacts_hash() {
        let h = hash("pw");
        let db = UserDb::empty().with_user(User::new("alice"), h.clone());
        let debug = format!("{:?} {:?}", db.get("alice"), db);
        assert!(!debug.contains(&h), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn hash_password_rejects_bad_params() {
        let bad = HashParams {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(
            hash_password("x", bad),
            Err(AuthError::HashParams(_))
        ));
    }

    #[cfg(unix)]
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

    /// "hunter2" in every legacy scheme (openssl passwd -1/-5/-6, libxcrypt for bcrypt).
    const LEGACY: [(&str, HashScheme); 4] = [
        (
            "$2y$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
            HashScheme::Bcrypt,
        ),
        (
            "$6$saltsaltsaltsalt$dJX0KuyM7nCXuBPN.nYtdrJDotQEB1rFBumzix6FHzliKxLBinGY49pMJNvCoNf9fHmNyZ1IgX/glbcKhuXoh.",
            HashScheme::Sha512Crypt,
        ),
        (
            "$5$saltsaltsaltsalt$LTm0e1epoLCOhH8WjaKAzYHFbzuOTFXssEJnxJiG5YC",
            HashScheme::Sha256Crypt,
        ),
        ("$1$saltsalt$ZliGyAN3DciDHEkDboonh/", HashScheme::Md5Crypt),
    ];

    #[test]
    fn legacy_hashes_load_verify_and_report_their_scheme() {
        let users: Vec<(String, &str, &str)> = LEGACY
            .iter()
            .map(|(h, scheme)| (scheme.name().replace('-', "_"), *h, ""))
            .collect();
        let users: Vec<(&str, &str, &str)> =
            users.iter().map(|(n, h, e)| (n.as_str(), *h, *e)).collect();
        let db = UserDb::parse(&users_file(&users), "users.toml").expect("parse");
        for ((name, _, _), (_, scheme)) in users.iter().zip(LEGACY) {
            let user = db.verify(name, "hunter2").expect(name);
            assert_eq!(user.hash_scheme(), Some(scheme));
            assert!(user.has_legacy_hash(), "{name}");
            assert!(db.verify(name, "hunter3").is_none(), "{name}");
            assert!(db.verify(name, "").is_none(), "{name}");
            // Never cheap enough for an async worker.
            assert_eq!(db.verify_cost(name), u64::MAX, "{name}");
        }
        assert_eq!(db.verify_cost("nobody"), u64::MAX);
        let argon2 = UserDb::empty().with_user(User::new("a"), hash("x"));
        assert_eq!(
            argon2.get("a").expect("a").hash_scheme(),
            Some(HashScheme::Argon2)
        );
        assert!(!argon2.get("a").expect("a").has_legacy_hash());
        let junk = UserDb::empty().with_user(User::new("b"), "junk".into());
        assert_eq!(junk.get("b").expect("b").hash_scheme(), None);
        assert!(!junk.get("b").expect("b").has_legacy_hash());
        let bad_md5 = UserDb::empty().with_user(User::new("c"), "$1$x".into());
        assert!(!bad_md5.get("c").expect("c").has_legacy_hash());
    }

    #[test]
    fn unknown_users_cost_what_most_users_cost_whatever_the_scheme() {
        let sha_a = LEGACY[1].0;
        let sha_b = "$6$ab$n1ZV1VHJ6c8pUb5bJY49CQ7dhZcLkJSe3OPi.galQW1AxmyKB5TOcbVyXUc1uwJLO0e3IGBcaTzJwgy67.KMN.";
        let h = hash("secret");
        let text = users_file(&[
            ("alice", sha_a, ""),
            ("bob", sha_b, ""),
            ("carol", &h, ""),
            ("dave", sha_a, "disabled = true"),
        ]);
        let db = UserDb::parse(&text, "users.toml").expect("parse");
        take_verified();
        assert!(db.verify("nobody", "hunter2").is_none());
        let verified = take_verified();
        assert_eq!(verified.len(), 1);
        // A SHA-512-crypt dummy with the users' 5000 rounds, not an argon2 one.
        assert_eq!(
            hash_cost(&verified[0]),
            Some(Cost::Legacy(legacy::LegacyCost::Sha512(5000)))
        );
        assert!(db.verify("dave", "hunter2").is_none());
        assert_eq!(take_verified(), vec![sha_a.to_owned()]);
        assert!(db.verify("alice", "wrong").is_none());
        assert_eq!(take_verified(), vec![sha_a.to_owned()]);

        // Mostly bcrypt of cost 4: a bcrypt dummy of cost 4.
        let bc = LEGACY[0].0;
        let db = UserDb::parse(
            &users_file(&[("a", bc, ""), ("b", bc, ""), ("c", &h, "")]),
            "users.toml",
        )
        .expect("parse");
        assert!(db.verify("nobody", "x").is_none());
        let verified = take_verified();
        assert_eq!(
            hash_cost(&verified[0]),
            Some(Cost::Legacy(legacy::LegacyCost::Bcrypt(4)))
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

    #[test]
    fn read_password_line_strips_line_ending() {
        let read = |input: &[u8]| read_password_line(&mut &input[..]).expect("read");
        assert_eq!(read(b"pass word\r\nnext\n"), "pass word");
        assert_eq!(read(b"pw\n"), "pw");
        assert_eq!(read(b"pw"), "pw");
        assert_eq!(read(b" pw \n"), " pw ");
        assert_eq!(read(b""), "");
        assert!(read_password_line(&mut &b"\xff\n"[..]).is_err());
    }

    #[test]
    fn generated_passwords_are_long_and_unambiguous() {
        let a = generate_password();
        assert_eq!(a.chars().count(), 20);
        assert!(a.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)), "{a}");
        assert_ne!(a, generate_password());
        for c in "0O1lIo".bytes() {
            assert!(!PASSWORD_ALPHABET.contains(&c));
        }
        let many: String = (0..50).map(|_| generate_password()).collect();
        assert!(many.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn homes_stay_under_the_root_unless_allowed() {
        let root = Path::new("/srv/ftp");
        let ok = |h: &str, out: bool| resolve_home(root, Some(Path::new(h)), out);
        assert_eq!(resolve_home(root, None, false).unwrap(), root);
        assert_eq!(ok("alice", false).unwrap(), Path::new("/srv/ftp/alice"));
        assert_eq!(ok("a/../b/./c", false).unwrap(), Path::new("/srv/ftp/b/c"));
        assert_eq!(ok("/srv/ftp/x/", false).unwrap(), Path::new("/srv/ftp/x"));
        for bad in ["../../../etc", "a/../../x", ".."] {
            let e = ok(bad, true).unwrap_err();
            assert!(e.contains("must stay under the server root"), "{bad}: {e}");
        }
        let e = ok("/etc", false).unwrap_err();
        assert!(e.contains("auth.allow_homes_outside_root"), "{e}");
        assert!(ok("/srv/ftp/../../etc", false).is_err());
        assert!(
            ok("/srv/ftpx", false).is_err(),
            "a sibling is not under the root"
        );
        assert_eq!(ok("/etc", true).unwrap(), Path::new("/etc"));
        assert!(check_home("../x").is_err());
        assert!(check_home("a/../b").is_ok());
    }

    #[test]
    fn a_home_that_links_out_of_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        let e = resolve_home(&root, Some(Path::new("etc")), false).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(resolve_home(&root, Some(Path::new("etc")), true).is_ok());
    }

    #[test]
    fn the_anonymous_home_must_not_hold_a_users_home() {
        let root = Path::new("/srv/ftp");
        let db = |home: Option<&str>| {
            let mut u = User::new("bob");
            u.home = home.map(PathBuf::from);
            UserDb::empty().with_user(u, hash("pw"))
        };
        let pubd = Some(Path::new("pub"));
        assert!(check_homes(root, &db(Some("bob")), pubd, false, "users").is_ok());
        assert!(check_homes(root, &db(None), pubd, false, "users").is_ok());
        let e = check_homes(root, &db(Some("pub/bob")), pubd, false, "users").unwrap_err();
        assert!(e.contains("anonymous.home") && e.contains("\"bob\""), "{e}");
        let e =
            check_homes(root, &db(Some("bob")), Some(Path::new(".")), false, "users").unwrap_err();
        assert!(e.contains("anonymous users could read"), "{e}");
        let e = check_homes(root, &db(Some("/etc")), None, false, "users file u.toml").unwrap_err();
        assert!(
            e.starts_with("users file u.toml: user \"bob\": home: "),
            "{e}"
        );
    }
}
