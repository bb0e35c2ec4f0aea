//! Password hashes: argon2id hashing (the default for every new hash), verification of argon2
//! and of the legacy schemes moved from other servers (bcrypt, crypt(3), in `legacy`), and
//! what a verification costs, so that unknown users can be made to cost the same.

mod legacy;

use std::fmt;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rand::rngs::OsRng;

use super::AuthError;
#[cfg(doc)]
use super::UserDb;

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
pub(super) const DUMMY_PASSWORD: &str = "ferroftp timing-equalisation dummy password";

/// Used only if hashing the dummy password fails (the OS RNG failing): `DUMMY_PASSWORD` hashed with
/// the default parameters. A test checks it still matches `HashParams::default()`.
pub(super) const FALLBACK_DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZmVycm9mdHBkdW1teXNhbHQ$B+KaAPYYWIo9yAcOe27JQa0nK6XdqwIEOIl2mClFJF0";

/// The hash verified for unknown and disabled users, so they cost the same as a wrong password.
pub(super) fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(DUMMY_PASSWORD, HashParams::default())
            .unwrap_or_else(|_| FALLBACK_DUMMY_HASH.to_owned())
    })
}

#[cfg(test)]
thread_local! {
    /// Every hash `verify_hash` ran argon2 against on this thread, for the timing tests.
    pub(super) static VERIFIED_HASHES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Check `password` against `hash` (argon2, or a legacy bcrypt or crypt(3) hash). An
/// unparsable hash (only possible via [`UserDb::with_user`]) is replaced by the argon2 dummy
/// hash, so that it costs a verification all the same.
pub(super) fn verify_hash(hash: &str, password: &str) -> bool {
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
pub(super) fn check_hash(hash: &str) -> Result<HashScheme, String> {
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

/// The argon2 parameters of a PHC hash string, if it is one.
pub(super) fn hash_params(hash: &str) -> Option<HashParams> {
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
pub(super) enum Cost {
    /// argon2 with these parameters.
    Argon2(HashParams),
    /// A legacy scheme and its cost.
    Legacy(legacy::LegacyCost),
}

/// The cost of checking `hash`, if it is a hash ferroftp verifies.
pub(super) fn hash_cost(hash: &str) -> Option<Cost> {
    match legacy::parse(hash) {
        Some(parsed) => parsed.ok().map(|l| Cost::Legacy(l.cost())),
        None => hash_params(hash).map(Cost::Argon2),
    }
}

/// The dummy hash for `cost`, made once per cost.
pub(super) fn dummy_hash_for(cost: Cost) -> Arc<str> {
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

/// Whether `hash` is a well-formed legacy hash (bcrypt, crypt(3)): one to re-hash to argon2id.
/// Cheap: an argon2 string is told by its prefix.
pub(super) fn is_legacy(hash: &str) -> bool {
    matches!(legacy::parse(hash), Some(Ok(_)))
}

#[cfg(test)]
pub(super) use legacy::LegacyCost;
