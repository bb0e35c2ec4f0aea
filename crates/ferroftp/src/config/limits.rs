//! `[limits]` (sessions, lines and time) and `[bans]` (brute-force protection).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, parse};

/// Limits; breaking one gets a reply and a closed connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest control line in bytes, including the line end.
    pub max_line_length: usize,
    /// Seconds a session may sit without a command (and a transfer without moving a byte).
    pub idle_timeout_secs: u64,
    /// Seconds from USER to a successful PASS before the connection is closed.
    pub login_timeout_secs: u64,
    /// Seconds to wait for a data connection to be opened.
    pub data_timeout_secs: u64,
    /// Sessions at once, in total.
    pub max_sessions: usize,
    /// Sessions at once from one IP address.
    pub max_sessions_per_ip: usize,
    /// Failed logins in one session before it is closed.
    pub max_login_failures: u32,
    /// Seconds running transfers get to finish after SIGTERM before they are cut off.
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_line_length: 4096,
            idle_timeout_secs: 300,
            login_timeout_secs: 60,
            data_timeout_secs: 30,
            max_sessions: 1000,
            max_sessions_per_ip: 32,
            max_login_failures: 3,
            shutdown_grace_secs: 30,
        }
    }
}

impl LimitsConfig {
    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    /// The login timeout as a duration.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
    /// The data-connection timeout as a duration.
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs)
    }
    /// The shutdown grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Brute-force protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanConfig {
    /// Count failed logins and ban addresses that fail too often.
    pub enabled: bool,
    /// Failed logins from one IP address within `window_secs` that get it banned.
    pub max_failures: u32,
    /// The window, in seconds, over which failures are counted.
    pub window_secs: u64,
    /// Seconds of the first ban; each later ban of the same address lasts `escalation` times
    /// longer, up to `max_ban_secs`.
    pub ban_secs: u64,
    /// Factor by which each repeated ban of one address grows.
    pub escalation: u32,
    /// The longest ban, in seconds.
    pub max_ban_secs: u64,
    /// Milliseconds a failed login's reply is held back per earlier failure (from that address
    /// or for that user name, whichever is more), up to `max_delay_ms`.
    pub delay_ms: u64,
    /// The longest a failed login's reply is held back.
    pub max_delay_ms: u64,
    /// Networks that are never banned or slowed, e.g. `["10.0.0.0/8", "::1/128"]`.
    #[serde(deserialize_with = "parse::nets")]
    pub allow: Vec<ipnet::IpNet>,
    /// IPv6 clients are counted and banned per network of this many bits (one host usually
    /// has a whole /64 to pick addresses from).
    pub ipv6_prefix: u8,
    /// Once a user name failed `max_failures` times in the window (from any addresses), its
    /// passwords are checked at most once per this many milliseconds across all sessions,
    /// except from addresses it logged in from before; 0 = no such limit.
    pub user_interval_ms: u64,
}

impl Default for BanConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 10,
            window_secs: 600,
            ban_secs: 60,
            escalation: 4,
            max_ban_secs: 86400,
            delay_ms: 500,
            max_delay_ms: 4000,
            allow: Vec::new(),
            ipv6_prefix: 64,
            user_interval_ms: 2000,
        }
    }
}

impl LimitsConfig {
    /// Every limit above 0, and lines long enough for real paths.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 6] = [
            ("limits.max_line_length", self.max_line_length as u64),
            ("limits.idle_timeout_secs", self.idle_timeout_secs),
            ("limits.login_timeout_secs", self.login_timeout_secs),
            ("limits.data_timeout_secs", self.data_timeout_secs),
            ("limits.max_sessions", self.max_sessions as u64),
            (
                "limits.max_sessions_per_ip",
                self.max_sessions_per_ip as u64,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.max_line_length < 512 {
            return Err(invalid(
                "limits.max_line_length",
                "must be at least 512 (RFC 959 paths and RFC 2640 UTF-8 names need room)",
            ));
        }
        Ok(())
    }

    /// At least one login attempt per session. Checked apart from [`Self::check`], after
    /// `anonymous.home`, so that errors come in the order they always came in.
    pub(super) fn check_login_failures(&self) -> Result<(), ConfigError> {
        if self.max_login_failures == 0 {
            return Err(invalid("limits.max_login_failures", "must be at least 1"));
        }
        Ok(())
    }
}

impl BanConfig {
    /// When bans are on: counts and times above 0, bans that grow, and an IPv6 prefix that
    /// groups one client's addresses without lumping whole providers together.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, v) in [
            ("bans.max_failures", u64::from(self.max_failures)),
            ("bans.window_secs", self.window_secs),
            ("bans.ban_secs", self.ban_secs),
            ("bans.escalation", u64::from(self.escalation)),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.max_ban_secs < self.ban_secs {
            return Err(invalid(
                "bans.max_ban_secs",
                "must be at least bans.ban_secs",
            ));
        }
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(invalid(
                "bans.ipv6_prefix",
                "must be between 16 and 128 (64 counts each /64 network as one client)",
            ));
        }
        Ok(())
    }
}
