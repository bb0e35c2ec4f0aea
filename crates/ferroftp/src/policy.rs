//! Policy types that the configuration, the users and TLS share: a leaf module that imports
//! none of them, so that dependencies run one way (config → policy ← users, tls → policy).
//!
//! Here: a user's [`Permission`]s and their set, [`Permissions`]; how much TLS a listener or a
//! user insists on, [`TlsPolicy`]; when uploads are flushed to disk, [`SyncPolicy`]; and
//! certificate fingerprints, [`Fingerprint`]. `tests::layering` checks that the module stays
//! a leaf, and the rest of the crate's layering.

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
mod tests;
