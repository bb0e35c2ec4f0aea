//! Helpers shared by the users module's tests.

use super::UserDb;
use super::hash::{HashParams, HashScheme, VERIFIED_HASHES, hash_password};

/// Cheap parameters so tests that hash many passwords stay fast.
pub(crate) const CHEAP: HashParams = HashParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

/// `password` hashed with [`CHEAP`].
pub(crate) fn hash(password: &str) -> String {
    hash_password(password, CHEAP).expect("hashing")
}

/// The hashes verified on this thread since the last call.
pub(crate) fn take_verified() -> Vec<String> {
    VERIFIED_HASHES.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

/// A users file of `(name, hash, more keys)`.
pub(crate) fn users_file(users: &[(&str, &str, &str)]) -> String {
    users
        .iter()
        .map(|(name, hash, extra)| {
            format!("[[user]]\nname = {name:?}\npassword = {hash:?}\n{extra}\n")
        })
        .collect()
}

/// Why `text` is not a valid users file.
pub(crate) fn parse_err(text: &str) -> String {
    UserDb::parse(text, "/x/users.toml")
        .expect_err("parse should fail")
        .to_string()
}

/// "hunter2" in every legacy scheme (openssl passwd -1/-5/-6, libxcrypt for bcrypt).
pub(crate) const LEGACY: [(&str, HashScheme); 4] = [
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
