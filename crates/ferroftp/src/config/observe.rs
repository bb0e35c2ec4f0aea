//! `[log]`, `[metrics]` and `[admin]`: what the server tells, and to whom.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, invalid, log_filter, parse};

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `ferroftp=debug,warn`, ... (`RUST_LOG` overrides it).
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A transfer log in the xferlog(5) format of wu-ftpd and ProFTPD; absent = none.
    pub xferlog: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            xferlog: None,
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Prometheus metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics` over HTTP, e.g. `"127.0.0.1:9021"`; absent = no metrics
    /// listener.
    #[serde(deserialize_with = "parse::opt_addr")]
    pub listen: Option<SocketAddr>,
}

/// The admin HTTP API: sessions, bans, users, reload and status, as JSON over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where to serve the API, e.g. `"127.0.0.1:9022"`; absent = no admin API.
    #[serde(deserialize_with = "parse::opt_addr")]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token (its contents, trimmed); required with `listen`.
    pub token_file: Option<PathBuf>,
    /// Allow `listen` on an address other than loopback. Off by default: the API is plain
    /// HTTP, so the token would cross the network unencrypted.
    pub allow_remote: bool,
}

/// The metrics and admin listeners on addresses of their own, the admin API on loopback
/// with a token unless told otherwise, and the log settings usable.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    if let Some(addr) = config.metrics.listen {
        if addr.port() != 0 && config.listeners.iter().any(|l| l.bind == addr) {
            return Err(invalid(
                "metrics.listen",
                format!("{addr} is also an FTP listener"),
            ));
        }
    }
    if let Some(addr) = config.admin.listen {
        if addr.port() != 0 && config.listeners.iter().any(|l| l.bind == addr) {
            return Err(invalid(
                "admin.listen",
                format!("{addr} is also an FTP listener"),
            ));
        }
        if addr.port() != 0 && config.metrics.listen == Some(addr) {
            return Err(invalid(
                "admin.listen",
                format!("{addr} is also the metrics listener"),
            ));
        }
        if !addr.ip().to_canonical().is_loopback() && !config.admin.allow_remote {
            return Err(invalid(
                "admin.listen",
                format!(
                    "{addr} is not a loopback address: the admin API is plain HTTP, so its token would cross the network unencrypted; listen on 127.0.0.1 or ::1 (reach it through SSH or a TLS proxy), or set admin.allow_remote = true"
                ),
            ));
        }
        match &config.admin.token_file {
            None => {
                return Err(invalid(
                    "admin.token_file",
                    "admin.listen is set, so a file with the bearer token is needed (--admin-token-file)",
                ));
            }
            Some(p) if p.as_os_str().is_empty() => {
                return Err(invalid("admin.token_file", "must be a file path"));
            }
            Some(_) => {}
        }
    }
    if config
        .log
        .xferlog
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err(invalid("log.xferlog", "must be a file path"));
    }
    if let Err(reason) = log_filter(&config.log.level) {
        return Err(invalid("log.level", reason));
    }
    Ok(())
}
