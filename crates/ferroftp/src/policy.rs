//! The policy types that configuration, users and TLS share: plain data with no dependency on
//! any of them, so that `config`, `auth` and `tls` can all use them without importing each
//! other (a leaf: it imports nothing from the crate, which `tests::policy_is_a_leaf` checks).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission a user may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// List directories (`LIST`, `NLST`, `MLSD`, `MLST`, `STAT path`).
    List,
    /// Download files (`RETR`, `SIZE`, `MDTM`).
    Read,
    /// Upload files, creating or overwriting them (`STOR`, `STOU`, `REST` + `STOR`), and
    /// anything else that replaces or changes existing data or metadata (`RNTO` onto an
    /// existing name, `SITE CHMOD`, `MFMT`).
    Write,
    /// Append to files (`APPE`, and `REST` + `STOR` exactly at the end): only ever adds bytes.
    Append,
    /// Delete files (`DELE`).
    Delete,
    /// Rename files and directories (`RNFR`/`RNTO`).
    Rename,
    /// Create directories (`MKD`).
    Mkdir,
    /// Remove directories (`RMD`).
    Rmdir,
}

impl Permission {
    /// Every permission, in canonical order.
    const EVERY: [Permission; 8] = [
        Permission::List,
        Permission::Read,
        Permission::Write,
        Permission::Append,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
        Permission::Rmdir,
    ];

    /// The lowercase name used in the users file.
    pub const fn name(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Append => "append",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
            Permission::Rmdir => "rmdir",
        }
    }

    fn from_name(name: &str) -> Option<Permission> {
        Permission::EVERY.into_iter().find(|p| p.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of permissions (a small bitset, Copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions(u16);

impl Permissions {
    /// Every permission.
    pub const ALL: Permissions = Permissions(
        Permission::List.bit()
            | Permission::Read.bit()
            | Permission::Write.bit()
            | Permission::Append.bit()
            | Permission::Delete.bit()
            | Permission::Rename.bit()
            | Permission::Mkdir.bit()
            | Permission::Rmdir.bit(),
    );
    /// List and read: a download-only user.
    pub const READ_ONLY: Permissions = Permissions(Permission::List.bit() | Permission::Read.bit());
    /// No permission at all.
    pub const NONE: Permissions = Permissions(0);

    /// Whether `p` is in the set.
    pub const fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The set with `p` added.
    #[must_use]
    pub const fn with(self, p: Permission) -> Self {
        Permissions(self.0 | p.bit())
    }

    /// The permissions in the set, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::EVERY.into_iter().filter(move |p| self.has(*p))
    }
}

impl Default for Permissions {
    /// All permissions, as for a user without a `permissions` key.
    fn default() -> Self {
        Permissions::ALL
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

impl fmt::Display for Permissions {
    /// Comma-separated names, e.g. `list,read,write`; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Permissions::NONE {
            return f.write_str("none");
        }
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(p.name())?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Permissions {
    type Err = String;

    /// `all`, `none`, or permission names separated by commas (`list,read`), as on a command
    /// line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => return Ok(Permissions::ALL),
            "none" => return Ok(Permissions::NONE),
            _ => {}
        }
        s.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| {
                Permission::from_name(name).ok_or_else(|| {
                    format!(
                        "unknown permission {name:?} (expected all, or some of {} separated by commas)",
                        Permission::EVERY.map(Permission::name).join(", ")
                    )
                })
            })
            .collect()
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.iter().count()))?;
        for p in self.iter() {
            seq.serialize_element(p.name())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PermissionsVisitor;

        impl<'de> Visitor<'de> for PermissionsVisitor {
            type Value = Permissions;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of permission names or \"all\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Permissions, E> {
                if v == "all" {
                    Ok(Permissions::ALL)
                } else {
                    Err(E::custom(format_args!(
                        "expected a list of permission names or \"all\", found the string {v:?}"
                    )))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Permissions, A::Error> {
                let mut set = Permissions::NONE;
                while let Some(name) = seq.next_element::<String>()? {
                    let p = Permission::from_name(&name).ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "unknown permission {name:?} (expected one of {})",
                            Permission::EVERY.map(Permission::name).join(", ")
                        ))
                    })?;
                    set = set.with(p);
                }
                Ok(set)
            }
        }

        deserializer.deserialize_any(PermissionsVisitor)
    }
}

/// How much TLS a listener or a user insists on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsPolicy {
    /// TLS if the client asks for it.
    #[default]
    Optional,
    /// USER and PASS only over TLS.
    Login,
    /// Login over TLS, and every data connection protected (PROT P).
    LoginAndData,
}

/// The config spelling (`login_and_data`), so that log fields match the file.
impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TlsPolicy {
    /// The name as the config file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Login => "login",
            Self::LoginAndData => "login_and_data",
        }
    }
    /// Whether login needs a TLS control connection.
    pub fn login(self) -> bool {
        self >= Self::Login
    }
    /// Whether data connections must be protected.
    pub fn data(self) -> bool {
        self == Self::LoginAndData
    }
}

/// When a committed upload is flushed to disk (`fsync`) before the client gets its 226.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Every upload.
    Always,
    /// Uploads that replace or change an existing file: a crash can then never cost old
    /// data. New files reach the disk on the kernel's schedule.
    #[default]
    Replacements,
    /// Never: the kernel decides (what most FTP servers do).
    Never,
}

/// A SHA-256 certificate fingerprint (of a TLS client or server certificate). Parsing
/// normalises what people write (any case, colons optional), so that two spellings of one
/// fingerprint compare equal; it displays as upper-case hex pairs joined by colons
/// (`AB:CD:...`), as `openssl x509 -fingerprint -sha256` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a SHA-256 fingerprint (64 hex digits, colons optional)")]
pub struct FingerprintError;

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// 64 hex digits in any case, with or without colons anywhere between them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0; 32];
        let mut digits = s.bytes().filter(|&b| b != b':');
        for byte in &mut bytes {
            let (Some(hi), Some(lo)) = (digits.next(), digits.next()) else {
                return Err(FingerprintError);
            };
            *byte = (hex_value(hi).ok_or(FingerprintError)? << 4)
                | hex_value(lo).ok_or(FingerprintError)?;
        }
        match digits.next() {
            None => Ok(Self(bytes)),
            Some(_) => Err(FingerprintError),
        }
    }
}

/// The value of one ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `AB:CD:...`: upper-case hex pairs joined by colons.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// As displayed, so that a logged fingerprint reads as in the users file.
impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// As a string, `AB:CD:...`.
impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From a string in any of the forms [`FromStr`] accepts.
impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise_on_parse() {
        let lower: Fingerprint = "ab".repeat(32).parse().unwrap();
        let text = lower.to_string();
        assert!(text.starts_with("AB:AB:") && text.len() == 95, "{text}");
        assert_eq!(text.parse::<Fingerprint>(), Ok(lower));
        let mixed = format!("aB{}", "Ab".repeat(31));
        assert_eq!(mixed.parse::<Fingerprint>(), Ok(lower));
        // Colons anywhere, as some tools group digits differently.
        let grouped = format!("abab:{}", "ab".repeat(30));
        assert_eq!(grouped.parse::<Fingerprint>(), Ok(lower));
    }

    #[test]
    fn fingerprints_refuse_wrong_lengths_and_non_hex() {
        for bad in [
            "",
            "abc",
            &"ab".repeat(31),
            &"ab".repeat(33),
            &format!("{}a", "ab".repeat(32)),
            &format!("{}zz", "ab".repeat(31)),
            &format!("{} ", "ab".repeat(32)),
            &format!("+b{}", "ab".repeat(31)),
            "é".repeat(32).as_str(),
        ] {
            assert_eq!(bad.parse::<Fingerprint>(), Err(FingerprintError), "{bad:?}");
        }
        assert_eq!(
            FingerprintError.to_string(),
            "must be a SHA-256 fingerprint (64 hex digits, colons optional)"
        );
    }

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_der() {
        // SHA-256 of the empty input, a known vector.
        assert_eq!(
            Fingerprint::of_der(b"").to_string(),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn fingerprints_round_trip_through_serde() {
        let f = Fingerprint::of_der(b"certificate");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, format!("\"{f}\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), f);
        assert!(serde_json::from_str::<Fingerprint>("\"abc\"").is_err());
    }

    #[test]
    fn tls_policies_order_and_spell_as_the_config_file() {
        assert!(
            TlsPolicy::Optional < TlsPolicy::Login && TlsPolicy::Login < TlsPolicy::LoginAndData
        );
        assert!(
            !TlsPolicy::Optional.login() && TlsPolicy::Login.login() && !TlsPolicy::Login.data()
        );
        assert!(TlsPolicy::LoginAndData.login() && TlsPolicy::LoginAndData.data());
        assert_eq!(TlsPolicy::LoginAndData.to_string(), "login_and_data");
        assert_eq!(SyncPolicy::default(), SyncPolicy::Replacements);
    }
}

/// The crate's layering, read from its sources: which module may use which (`crate::x` paths
/// on code lines), so that a leaf stays a leaf and no import circle comes back.
#[cfg(test)]
mod layering {
    use std::path::{Path, PathBuf};

    /// The `.rs` files under `dir`, recursively.
    fn sources(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// The files of module `name`: `src/name.rs` and everything under `src/name/` (at least
    /// one, or the module was renamed and the test would check nothing).
    fn module(name: &str) -> Vec<PathBuf> {
        let file = src().join(format!("{name}.rs"));
        let mut files: Vec<PathBuf> = file.is_file().then_some(file).into_iter().collect();
        let dir = src().join(name);
        if dir.is_dir() {
            files.extend(sources(&dir));
        }
        assert!(!files.is_empty(), "no module {name}");
        files
    }

    /// Every `crate::a::b` path on a code line of `files` (comments left out), as
    /// (file:line, path).
    fn crate_paths(files: &[PathBuf]) -> Vec<(String, String)> {
        // Spelled in two pieces so that this file's own text is no match.
        let needle = ["crate", "::"].concat();
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (at, _) in code.match_indices(&needle) {
                    // `$crate::` and `ferroftp_proto::...crate::` are not this crate's paths.
                    if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                        continue;
                    }
                    let rest = &code[at + needle.len()..];
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                        .collect();
                    out.push((format!("{}:{}", file.display(), n + 1), path));
                }
            }
        }
        out
    }

    /// The paths of `files` that start with none of `allowed`.
    fn outside(files: &[PathBuf], allowed: &[&str]) -> Vec<(String, String)> {
        crate_paths(files)
            .into_iter()
            .filter(|(_, path)| !allowed.iter().any(|a| path.starts_with(a)))
            .collect()
    }

    #[test]
    fn the_scan_finds_crate_paths() {
        // The server uses config and auth: if the scan saw nothing there, it saw nothing.
        let server = crate_paths(&module("server"));
        assert!(
            server.iter().any(|(_, p)| p.starts_with("config::")),
            "{server:?}"
        );
        assert!(
            server.iter().any(|(_, p)| p.starts_with("auth::")),
            "{server:?}"
        );
    }

    #[test]
    fn policy_is_a_leaf() {
        let used = crate_paths(&module("policy"));
        assert!(
            used.is_empty(),
            "policy must import nothing from the crate: {used:?}"
        );
    }

    #[test]
    fn the_shared_error_module_is_a_leaf() {
        let used = crate_paths(&module("error"));
        assert!(
            used.is_empty(),
            "error must import nothing from the crate: {used:?}"
        );
    }

    #[test]
    fn config_uses_only_the_policy_leaf() {
        let used = outside(&module("config"), &["config::", "policy::"]);
        assert!(
            used.is_empty(),
            "config must not use auth, tls, server, ...: {used:?}"
        );
    }

    #[test]
    fn tls_uses_only_policy_and_the_tls_settings() {
        // The settings it is given are plain data; nothing of config's parsing or checks.
        let used = outside(&module("tls"), &["tls::", "policy::", "config::TlsConfig"]);
        assert!(
            used.is_empty(),
            "tls must not use auth, server, ...: {used:?}"
        );
    }

    #[test]
    fn the_modules_form_no_circle() {
        use std::collections::{BTreeMap, BTreeSet};
        let bin = src().join("bin");
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in sources(&src()).into_iter().filter(|f| !f.starts_with(&bin)) {
            let Ok(rel) = file.strip_prefix(src()) else {
                continue;
            };
            let top = rel
                .iter()
                .next()
                .and_then(|c| c.to_str())
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            for (_, path) in crate_paths(std::slice::from_ref(&file)) {
                let used = path.split("::").next().unwrap_or("").to_owned();
                if !used.is_empty() && used != top {
                    uses.entry(top.clone()).or_default().insert(used);
                }
            }
        }
        assert!(uses.contains_key("server"), "{uses:?}");
        // From each module, follow the uses: coming back to it is a circle.
        for start in uses.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = uses[start].iter().collect();
            while let Some(m) = todo.pop() {
                assert!(m != start, "{start} uses itself through others: {uses:?}");
                if seen.insert(m) {
                    todo.extend(uses.get(m).into_iter().flatten());
                }
            }
        }
    }

    #[test]
    fn errors_are_typed_outside_the_binary() {
        let bin = src().join("bin");
        let found: Vec<String> = sources(&src())
            .into_iter()
            .filter(|f| !f.starts_with(&bin))
            .flat_map(|f| {
                let text = std::fs::read_to_string(&f).unwrap();
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains(&["any", "how"].concat()))
                    .map(|(n, _)| format!("{}:{}", f.display(), n + 1))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            found.is_empty(),
            "the library's errors are typed (thiserror): {found:?}"
        );
    }
}
