//! The users file's format: parsing and validating `[[user]]` tables.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;

use crate::policy::Permissions;
use crate::policy::{Fingerprint, TlsPolicy};
use crate::users::hash::check_hash;
use crate::users::home::check_home;
use crate::users::user::HashString;
use crate::users::{AuthError, User};

/// Check a user name as the users file does: why it is not acceptable, if it is not.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    check_name(name)
}

/// Check a user name: non-empty, no whitespace, no control characters.
pub(in crate::users) fn check_name(name: &str) -> Result<(), &'static str> {
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
pub(in crate::users) struct RawUser {
    /// The user name.
    pub(in crate::users) name: String,
    /// The password hash.
    pub(in crate::users) password: String,
    home: Option<String>,
    permissions: Option<Permissions>,
    disabled: Option<bool>,
    tls_policy: Option<TlsPolicy>,
    client_certs: Vec<Fingerprint>,
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
                        .and_then(|s| s.parse::<Fingerprint>().ok())
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

    /// The user as the server sees it: absent keys take their defaults.
    pub(in crate::users) fn into_user(self) -> User {
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
pub(in crate::users) fn parse_raw(text: &str, origin: &str) -> Result<Vec<RawUser>, AuthError> {
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
pub(in crate::users) fn describe_toml_error(
    text: &str,
    message: &str,
    span: Option<Range<usize>>,
) -> String {
    let message = message.trim_end();
    let Some(before) = span.and_then(|span| text.get(..span.start)) else {
        return message.to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests;
