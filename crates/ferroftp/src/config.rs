//! The configuration: one TOML file (every key is optional and documented with its default in
//! `ferroftp.example.toml`), then command-line flags on top. Validation names the key and why.
//!
//! One file per section, each with its types and its checks: `listeners` (`[[listener]]`,
//! `[proxy]`), `transfers` (`[passive]`, `[active]`, `[uploads]`), `tls` (`[tls]`),
//! `users` (`[auth]`, `[anonymous]`), `limits` (`[limits]`, `[bans]`), `observe`
//! (`[log]`, `[metrics]`, `[admin]`); `parse` reads the TOML with errors people can act on.
//! Every type is re-exported here, where the rest of the crate names it. The module uses
//! nothing of the crate but the [`policy`](crate::policy) leaf.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::policy::{Permissions, SyncPolicy, TlsPolicy};

mod limits;
mod listeners;
mod observe;
mod parse;
pub mod reference;
mod tls;
mod transfers;
mod users;

pub use limits::{BanConfig, LimitsConfig};
pub use listeners::{ListenerConfig, ListenerMode, ProxyConfig};
pub use observe::{AdminConfig, LogConfig, LogFormat, MetricsConfig};
pub use parse::{log_filter, net as parse_net, socket_addr as parse_socket_addr};
pub use tls::TlsConfig;
pub use transfers::{ActiveConfig, AnnounceRule, PassiveConfig, PortRange, UploadsConfig};
pub use users::{AnonymousConfig, AuthConfig, DEFAULT_ANONYMOUS_HOME};

/// The annotated example configuration: every key with its default and what it does. `ferroftp
/// config --example` prints it and `ferroftp man` turns it into ferroftp.toml(5).
pub const EXAMPLE: &str = include_str!("../../../ferroftp.example.toml");

/// The whole configuration of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The directory served; users without their own `home` are confined to it.
    pub root: PathBuf,
    /// The users file (TOML, argon2id hashes). Without one, `serve` makes one user and prints
    /// its password.
    pub users_file: Option<PathBuf>,
    /// Password checking: what happens to legacy hashes.
    pub auth: AuthConfig,
    /// The text after `220 ` in the greeting.
    pub greeting: String,
    /// Where to accept control connections.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Passive data connections (PASV, EPSV).
    pub passive: PassiveConfig,
    /// Active data connections (PORT, EPRT).
    pub active: ActiveConfig,
    /// Anonymous logins (USER anonymous / ftp).
    pub anonymous: AnonymousConfig,
    /// Limits on sessions, lines and time.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// FTPS: certificates and TLS settings shared by every TLS listener.
    pub tls: TlsConfig,
    /// Brute-force protection: slowed replies and escalating bans.
    pub bans: BanConfig,
    /// How uploads reach the disk.
    pub uploads: UploadsConfig,
    /// Load balancers that send PROXY protocol headers.
    pub proxy: ProxyConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// The admin HTTP API.
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("./ftp-root"),
            users_file: None,
            auth: AuthConfig::default(),
            greeting: "ferroftp ready".into(),
            listeners: vec![ListenerConfig::default()],
            passive: PassiveConfig::default(),
            active: ActiveConfig::default(),
            anonymous: AnonymousConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            bans: BanConfig::default(),
            uploads: UploadsConfig::default(),
            proxy: ProxyConfig::default(),
            metrics: MetricsConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// A configuration that cannot be used, with the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// A well-formed but unusable value of `key`, and why.
fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text (not yet validated); the error names the key, the line and what to
    /// write instead.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        parse::config(text)
    }

    /// Check the values that the types alone cannot, section by section; the first problem
    /// is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The order is the order in which a file with several mistakes has always been told
        // them, one at a time (hence the two halves of tls and of limits).
        listeners::check(self)?;
        self.tls.check_pair()?;
        self.bans.check()?;
        self.tls.check_timeouts()?;
        self.passive.check()?;
        self.limits.check()?;
        self.anonymous.check()?;
        self.limits.check_login_failures()?;
        observe::check(self)
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
