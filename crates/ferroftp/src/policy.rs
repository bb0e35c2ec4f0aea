//! Policy types that the configuration, the users and TLS share: a leaf module that imports
//! none of them, so that dependencies run one way (config → policy ← users).
//!
//! Here: a user's [`Permission`]s and their set, [`Permissions`].

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_serde_round_trip() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
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
}
