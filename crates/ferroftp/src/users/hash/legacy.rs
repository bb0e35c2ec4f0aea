//! Password hashes written by other servers, accepted so that accounts move to ferroftp
//! without a password reset: bcrypt (`$2a$`, `$2b$`, `$2y$`) and crypt(3)'s SHA-512-crypt
//! (`$6$`), SHA-256-crypt (`$5$`, both with an optional `rounds=N$`) and MD5-crypt (`$1$`).
//!
//! Parsing here is strict (the shapes that glibc, libxcrypt, OpenBSD and crypt_blowfish
//! write), so that a typo is refused when the users file is loaded rather than making an
//! account that can never log in. Every comparison of a computed hash with a stored one is
//! constant-time.

use md5::{Digest, Md5};
use sha_crypt::{Sha256Params, Sha512Params};
use subtle::ConstantTimeEq;

/// crypt(3)'s base-64 alphabet (also bcrypt's characters, in another order).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-crypt's rounds when the hash names none.
pub(super) const SHA_CRYPT_DEFAULT_ROUNDS: u32 = 5000;
const SHA_CRYPT_MIN_ROUNDS: u32 = 1000;
const SHA_CRYPT_MAX_ROUNDS: u32 = 999_999_999;
/// Longer passwords never match a SHA-crypt or MD5-crypt hash. SHA-crypt's work grows with the
/// square of the password's length (a 64 KiB PASS would cost seconds of CPU, one of 1 MiB an
/// hour), and nobody types a password this long; bcrypt reads 72 bytes at most anyway.
pub(super) const MAX_CRYPT_PASSWORD: usize = 1024;
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;

/// A parsed legacy hash; borrows the hash string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Legacy<'a> {
    /// `$2b$NN$` + 22 characters of salt and 31 of hash (the whole string is kept: the bcrypt
    /// crate parses it again).
    Bcrypt { cost: u32, full: &'a str },
    /// `$6$` or `$5$`, `rounds=N$` (optional), salt, `$`, hash.
    ShaCrypt {
        sha512: bool,
        rounds: u32,
        salt: &'a str,
        hash: &'a str,
    },
    /// `$1$`, salt (up to 8 characters), `$`, hash.
    Md5Crypt { salt: &'a str, hash: &'a str },
}

/// What a legacy hash costs to check, to make a dummy that costs the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::users) enum LegacyCost {
    /// bcrypt with this cost (2^cost rounds).
    Bcrypt(u32),
    /// SHA-512-crypt with this many rounds.
    Sha512(u32),
    /// SHA-256-crypt with this many rounds.
    Sha256(u32),
    /// MD5-crypt (always 1000 rounds).
    Md5,
}

impl Legacy<'_> {
    /// The scheme's name, as the users file and the logs call it.
    pub(super) fn scheme(&self) -> super::HashScheme {
        match self {
            Legacy::Bcrypt { .. } => super::HashScheme::Bcrypt,
            Legacy::ShaCrypt { sha512: true, .. } => super::HashScheme::Sha512Crypt,
            Legacy::ShaCrypt { sha512: false, .. } => super::HashScheme::Sha256Crypt,
            Legacy::Md5Crypt { .. } => super::HashScheme::Md5Crypt,
        }
    }

    pub(super) fn cost(&self) -> LegacyCost {
        match *self {
            Legacy::Bcrypt { cost, .. } => LegacyCost::Bcrypt(cost),
            Legacy::ShaCrypt {
                sha512: true,
                rounds,
                ..
            } => LegacyCost::Sha512(rounds),
            Legacy::ShaCrypt {
                sha512: false,
                rounds,
                ..
            } => LegacyCost::Sha256(rounds),
            Legacy::Md5Crypt { .. } => LegacyCost::Md5,
        }
    }

    /// Whether `password` matches. Deliberately slow, like argon2: call it off the async
    /// workers.
    pub(super) fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_CRYPT_PASSWORD && !matches!(self, Legacy::Bcrypt { .. }) {
            return false;
        }
        match *self {
            // bcrypt::verify compares in constant time.
            Legacy::Bcrypt { full, .. } => bcrypt::verify(password, full).unwrap_or(false),
            Legacy::ShaCrypt {
                sha512,
                rounds,
                salt,
                hash,
            } => sha_crypt_b64(sha512, password.as_bytes(), salt.as_bytes(), rounds)
                .is_some_and(|computed| bool::from(computed.as_bytes().ct_eq(hash.as_bytes()))),
            Legacy::Md5Crypt { salt, hash } => {
                let computed = md5_crypt(password.as_bytes(), salt.as_bytes());
                bool::from(computed.as_slice().ct_eq(hash.as_bytes()))
            }
        }
    }
}

/// Parse `hash` if it starts like one of the legacy schemes (`$2`, `$5$`, `$6$`, `$1$`):
/// `None` if it does not, `Some(Err(reason))` if it does but is malformed. The reason never
/// quotes the string.
pub(super) fn parse(hash: &str) -> Option<Result<Legacy<'_>, String>> {
    if let Some(rest) = hash.strip_prefix("$2") {
        return Some(parse_bcrypt(hash, rest));
    }
    if let Some(rest) = hash.strip_prefix("$6$") {
        return Some(parse_sha_crypt(true, rest));
    }
    if let Some(rest) = hash.strip_prefix("$5$") {
        return Some(parse_sha_crypt(false, rest));
    }
    if let Some(rest) = hash.strip_prefix("$1$") {
        return Some(parse_md5_crypt(rest));
    }
    None
}

/// The name of a hash scheme that other servers write but ferroftp does not verify, if `hash`
/// looks like one: for a message that says more than "invalid".
pub(super) fn unsupported(hash: &str) -> Option<&'static str> {
    const PREFIXES: [(&str, &str); 7] = [
        ("$y$", "yescrypt ($y$)"),
        ("$gy$", "gost-yescrypt ($gy$)"),
        ("$7$", "scrypt ($7$)"),
        ("$apr1$", "Apache MD5 ($apr1$)"),
        ("$sha1$", "SHA-1-crypt ($sha1$)"),
        ("$md5", "Sun MD5 ($md5$)"),
        ("$3$", "NT-hash ($3$)"),
    ];
    if let Some((_, name)) = PREFIXES.iter().find(|(p, _)| hash.starts_with(p)) {
        return Some(name);
    }
    if hash.len() == 20
        && hash.starts_with('_')
        && hash.bytes().skip(1).all(|b| CRYPT_ALPHABET.contains(&b))
    {
        return Some("BSDi extended DES crypt");
    }
    if hash.len() == 13 && hash.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
        return Some("traditional DES crypt");
    }
    None
}

fn parse_bcrypt<'a>(full: &'a str, after_2: &str) -> Result<Legacy<'a>, String> {
    const SHAPE: &str = "a bcrypt hash is \"$2b$\" (or $2a$, $2y$), a two-digit cost, \"$\" and 53 characters of salt and hash";
    let variant = after_2.chars().next();
    match variant {
        Some('a' | 'b' | 'y') => {}
        Some('x') => {
            return Err(
                "bcrypt variant \"$2x$\" (hashes made by a buggy crypt_blowfish) is not supported"
                    .to_owned(),
            );
        }
        _ => return Err(format!("malformed bcrypt hash: {SHAPE}")),
    }
    let parts: bcrypt::HashParts = full
        .parse()
        .map_err(|_| format!("malformed bcrypt hash: {SHAPE}"))?;
    let cost = parts.get_cost();
    if !(BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is out of range ({BCRYPT_MIN_COST} to {BCRYPT_MAX_COST})"
        ));
    }
    Ok(Legacy::Bcrypt { cost, full })
}

fn parse_sha_crypt(sha512: bool, rest: &str) -> Result<Legacy<'_>, String> {
    let (name, tag, hash_len) = if sha512 {
        ("SHA-512-crypt", "$6$", 86)
    } else {
        ("SHA-256-crypt", "$5$", 43)
    };
    let shape = format!(
        "a {name} hash is \"{tag}\", optionally \"rounds=N$\", a salt of up to 16 characters, \"$\" and {hash_len} characters of hash"
    );
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r
                .split_once('$')
                .ok_or_else(|| format!("malformed {name} hash: {shape}"))?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("malformed {name} hash: rounds=N needs a number"));
            }
            let rounds = n
                .parse::<u32>()
                .ok()
                .filter(|r| (SHA_CRYPT_MIN_ROUNDS..=SHA_CRYPT_MAX_ROUNDS).contains(r))
                .ok_or_else(|| {
                    format!(
                        "{name} rounds must be {SHA_CRYPT_MIN_ROUNDS} to {SHA_CRYPT_MAX_ROUNDS}"
                    )
                })?;
            (rounds, rest)
        }
        None => (SHA_CRYPT_DEFAULT_ROUNDS, rest),
    };
    let (salt, hash) = rest
        .split_once('$')
        .ok_or_else(|| format!("malformed {name} hash: {shape}"))?;
    if salt.len() > 16 || !salt_is_clean(salt) || !is_crypt_b64(hash, hash_len) {
        return Err(format!("malformed {name} hash: {shape}"));
    }
    Ok(Legacy::ShaCrypt {
        sha512,
        rounds,
        salt,
        hash,
    })
}

fn parse_md5_crypt(rest: &str) -> Result<Legacy<'_>, String> {
    const SHAPE: &str = "an MD5-crypt hash is \"$1$\", a salt of up to 8 characters, \"$\" and 22 characters of hash";
    let (salt, hash) = rest
        .split_once('$')
        .ok_or_else(|| format!("malformed MD5-crypt hash: {SHAPE}"))?;
    if salt.len() > 8 || !salt_is_clean(salt) || !is_crypt_b64(hash, 22) {
        return Err(format!("malformed MD5-crypt hash: {SHAPE}"));
    }
    Ok(Legacy::Md5Crypt { salt, hash })
}

/// A crypt(3) salt: printable ASCII without `$` and `:` (what crypt implementations accept).
fn salt_is_clean(salt: &str) -> bool {
    salt.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'$' && b != b':')
}

fn is_crypt_b64(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| CRYPT_ALPHABET.contains(&b))
}

/// SHA-crypt's encoded output for `password`, `salt` and `rounds`.
fn sha_crypt_b64(sha512: bool, password: &[u8], salt: &[u8], rounds: u32) -> Option<String> {
    let rounds = usize::try_from(rounds).ok()?;
    if sha512 {
        let params = Sha512Params::new(rounds).ok()?;
        sha_crypt::sha512_crypt_b64(password, salt, &params).ok()
    } else {
        let params = Sha256Params::new(rounds).ok()?;
        sha_crypt::sha256_crypt_b64(password, salt, &params).ok()
    }
}

/// MD5-crypt (Poul-Henning Kamp's FreeBSD algorithm, as in glibc and libxcrypt): the 22
/// characters after the salt. `salt` must already be at most 8 bytes without `$`.
fn md5_crypt(password: &[u8], salt: &[u8]) -> [u8; 22] {
    const MAGIC: &[u8] = b"$1$";
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    // One byte per bit of the length: a zero byte for each set bit, the first password byte
    // for each clear one (the original's "weird" step, kept for compatibility).
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        n >>= 1;
    }
    let mut digest = ctx.finalize();
    for i in 0..1000 {
        let mut round = Md5::new();
        if i % 2 == 1 {
            round.update(password);
        } else {
            round.update(digest);
        }
        if i % 3 != 0 {
            round.update(salt);
        }
        if i % 7 != 0 {
            round.update(password);
        }
        if i % 2 == 1 {
            round.update(digest);
        } else {
            round.update(password);
        }
        digest = round.finalize();
    }
    let d = digest;
    let mut out = [0u8; 22];
    let groups = [
        (d[0], d[6], d[12]),
        (d[1], d[7], d[13]),
        (d[2], d[8], d[14]),
        (d[3], d[9], d[15]),
        (d[4], d[10], d[5]),
    ];
    for (i, (a, b, c)) in groups.into_iter().enumerate() {
        let v = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        encode_b64(v, &mut out[i * 4..i * 4 + 4]);
    }
    encode_b64(u32::from(d[11]), &mut out[20..22]);
    out
}

/// crypt(3)'s base 64: six bits at a time, least significant first.
fn encode_b64(mut v: u32, out: &mut [u8]) {
    for o in out {
        *o = CRYPT_ALPHABET[(v & 0x3f) as usize];
        v >>= 6;
    }
}

/// A hash of `password` with the given cost and a fixed salt: the dummy that unknown users
/// are checked against when most users in a file have this kind of hash.
pub(super) fn make(cost: LegacyCost, password: &str) -> Option<String> {
    const SALT: &str = "ferroftpdummy";
    match cost {
        LegacyCost::Bcrypt(cost) => {
            let salt = *b"ferroftp-dummy!!";
            bcrypt::hash_with_salt(password, cost, salt)
                .ok()
                .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
        }
        LegacyCost::Sha512(rounds) | LegacyCost::Sha256(rounds) => {
            let sha512 = matches!(cost, LegacyCost::Sha512(_));
            let hash = sha_crypt_b64(sha512, password.as_bytes(), SALT.as_bytes(), rounds)?;
            let tag = if sha512 { 6 } else { 5 };
            Some(format!("${tag}$rounds={rounds}${SALT}${hash}"))
        }
        LegacyCost::Md5 => {
            let salt = &SALT[..8];
            let hash = md5_crypt(password.as_bytes(), salt.as_bytes());
            Some(format!(
                "$1${salt}${}",
                String::from_utf8_lossy(&hash).into_owned()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (password, hash) pairs made with `openssl passwd -1/-5/-6` and Python's `crypt`
    /// (libxcrypt) for bcrypt, fixed here so that the tests need no tool.
    const VECTORS: &[(&str, &str)] = &[
        // openssl passwd -1 -salt saltsalt hunter2
        ("hunter2", "$1$saltsalt$ZliGyAN3DciDHEkDboonh/"),
        // openssl passwd -5 -salt saltsaltsaltsalt hunter2
        (
            "hunter2",
            "$5$saltsaltsaltsalt$LTm0e1epoLCOhH8WjaKAzYHFbzuOTFXssEJnxJiG5YC",
        ),
        // openssl passwd -6 -salt saltsaltsaltsalt hunter2
        (
            "hunter2",
            "$6$saltsaltsaltsalt$dJX0KuyM7nCXuBPN.nYtdrJDotQEB1rFBumzix6FHzliKxLBinGY49pMJNvCoNf9fHmNyZ1IgX/glbcKhuXoh.",
        ),
        // Drepper's SHA-crypt specification, with rounds= (and a salt cut to 16 characters)
        (
            "Hello world!",
            "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
        ),
        (
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        // OpenBSD's and crypt_blowfish's test vectors
        (
            "U*U",
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        ),
        (
            "",
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy",
        ),
        // Python's crypt (libxcrypt): $2y$ and $2b$ are the same computation
        (
            "hunter2",
            "$2y$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
        ),
        (
            "hunter2",
            "$2b$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
        ),
        // openssl passwd -1 -salt '' '' ; long and non-ASCII passwords (libxcrypt)
        ("", "$1$$qRPK7m23GJusamGpoGLby/"),
        (
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "$1$12345678$/5NxtAT.Xg3Y9ShvNINWT1",
        ),
        ("pässwörd", "$1$12345678$mQ1/t.WwP76MO4VquZEL.0"),
        // openssl passwd -6 -salt ab (a password of several SHA-512 blocks)
        (
            "a long password that is longer than sixty-four bytes, to use several blocks, yes",
            "$6$ab$n1ZV1VHJ6c8pUb5bJY49CQ7dhZcLkJSe3OPi.galQW1AxmyKB5TOcbVyXUc1uwJLO0e3IGBcaTzJwgy67.KMN.",
        ),
    ];

    #[test]
    fn known_vectors_verify_and_near_misses_do_not() {
        for (password, hash) in VECTORS {
            let parsed = parse(hash).expect("legacy").expect("well formed");
            assert!(parsed.verify(password), "{hash}");
            assert!(!parsed.verify(&format!("{password}x")), "{hash}");
            if let Some((last, _)) = password.char_indices().last() {
                assert!(!parsed.verify(&password[..last]), "{hash}");
            }
        }
    }

    /// `openssl passwd FLAG -salt SALT` for `password` (given on stdin, so that it may be
    /// empty); `None` without openssl.
    fn openssl_passwd(flag: &str, salt: &str, password: &str) -> Option<String> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("openssl")
            .args(["passwd", flag, "-salt", salt, "-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        child
            .stdin
            .take()?
            .write_all(format!("{password}\n").as_bytes())
            .ok()?;
        let out = child.wait_with_output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Hashes made now by the real tools, where the machine has them: openssl for MD5-crypt
    /// and SHA-crypt, Python's crypt module (libxcrypt) for bcrypt.
    #[test]
    fn hashes_made_by_real_tools_verify() {
        let salt = format!("{:08x}", std::process::id());
        let long = "long".repeat(40);
        let passwords = ["hunter2", "", "p\u{e4}ss w\u{f6}rd:with$odd/chars", &long];
        let mut checked = 0;
        for password in passwords {
            for flag in ["-1", "-5", "-6"] {
                // (openssl 3.0 prints "<NULL>" for an empty password with -5 and -6.)
                let Some(hash) =
                    openssl_passwd(flag, &salt, password).filter(|h| h.starts_with('$'))
                else {
                    continue;
                };
                let parsed = parse(&hash).expect("legacy").expect(&hash);
                assert!(parsed.verify(password), "{flag} {hash}");
                assert!(!parsed.verify("wrong"), "{flag} {hash}");
                checked += 1;
            }
        }
        let script = "import crypt, sys\nprint(crypt.crypt(sys.argv[1], '$2b$04$' + sys.argv[2]))";
        for password in ["hunter2", "x"] {
            let out = std::process::Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    script,
                    password,
                    "abcdefghijklmnopqrstuu",
                ])
                .output();
            let Ok(out) = out else { continue };
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && hash.starts_with("$2b$") {
                let parsed = parse(&hash).expect("legacy").expect(&hash);
                assert!(parsed.verify(password), "{hash}");
                assert!(!parsed.verify("wrong"), "{hash}");
                checked += 1;
            }
        }
        eprintln!("checked {checked} hashes made by openssl and python3");
    }

    #[test]
    fn over_long_passwords_never_match_a_crypt_hash() {
        let long = "x".repeat(MAX_CRYPT_PASSWORD + 1);
        for cost in [LegacyCost::Sha512(1000), LegacyCost::Md5] {
            let h = make(cost, &long).expect("made");
            let parsed = parse(&h).expect("legacy").expect("valid");
            let start = std::time::Instant::now();
            assert!(!parsed.verify(&long), "{h}");
            assert!(start.elapsed() < std::time::Duration::from_millis(50));
            let fits = &long[..MAX_CRYPT_PASSWORD];
            let h = make(cost, fits).expect("made");
            assert!(parse(&h).expect("legacy").expect("valid").verify(fits));
        }
        // bcrypt only reads the first 72 bytes, as every implementation does.
        let h = make(LegacyCost::Bcrypt(4), &long).expect("made");
        assert!(parse(&h).expect("legacy").expect("valid").verify(&long));
    }

    #[test]
    fn schemes_and_costs() {
        let p = |h: &'static str| parse(h).expect("legacy").expect("valid");
        assert_eq!(p(VECTORS[0].1).cost(), LegacyCost::Md5);
        assert_eq!(p(VECTORS[1].1).cost(), LegacyCost::Sha256(5000));
        assert_eq!(p(VECTORS[2].1).cost(), LegacyCost::Sha512(5000));
        assert_eq!(p(VECTORS[4].1).cost(), LegacyCost::Sha512(10000));
        assert_eq!(p(VECTORS[5].1).cost(), LegacyCost::Bcrypt(5));
        assert_eq!(p(VECTORS[5].1).scheme(), super::super::HashScheme::Bcrypt);
    }

    #[test]
    fn malformed_hashes_are_refused_without_quoting_them() {
        for bad in [
            "$1$saltsalt9$qjXMvbEw8oGL.6mLuVvH7.",
            "$1$saltsalt$qjXMvbEw8oGL.6mLuVvH7",
            "$1$saltsalt",
            "$5$salt$short",
            "$6$rounds=999$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
            "$6$rounds=abc$salt$x",
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe",
            "$2a$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2c$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        ] {
            let err = parse(bad).expect("legacy prefix").expect_err(bad);
            assert!(!err.contains(bad), "{err}");
        }
        assert!(parse("$argon2id$v=19$m=1,t=1,p=1$x$y").is_none());
        assert!(parse("$y$j9T$salt$hash").is_none());
        assert!(parse("hunter2").is_none());
    }

    #[test]
    fn dummies_verify_and_have_the_cost_asked_for() {
        for cost in [
            LegacyCost::Bcrypt(4),
            LegacyCost::Sha512(1000),
            LegacyCost::Sha256(5000),
            LegacyCost::Md5,
        ] {
            let h = make(cost, "pw").expect("made");
            let parsed = parse(&h).expect("legacy").expect("valid");
            assert_eq!(parsed.cost(), cost, "{h}");
            assert!(parsed.verify("pw"), "{h}");
        }
    }
}
