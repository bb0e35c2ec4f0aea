//! The configuration: one TOML file (every key is optional and documented with its default in
//! `ferroftp.example.toml`), then command-line flags on top. Validation names the key and why.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::Permissions;

mod parse;
pub mod reference;

pub use crate::policy::{SyncPolicy, TlsPolicy};
pub use parse::{log_filter, net as parse_net, socket_addr as parse_socket_addr};

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

/// Load balancers in front of the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Networks whose connections to a `proxy_protocol` listener (and to the passive ports of
    /// its sessions) must start with a PROXY header; connections from elsewhere are taken as
    /// they come, and a header from them is never believed.
    #[serde(deserialize_with = "parse::nets")]
    pub trusted: Vec<ipnet::IpNet>,
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

/// Password checking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// After a successful login with a legacy hash (bcrypt, SHA-512/SHA-256/MD5-crypt, as
    /// moved from another server), hash the password with argon2id and write that to the users
    /// file in place of the old hash.
    pub rehash_to_argon2: bool,
    /// Accept absolute homes outside `root` (in the users file and through the admin API).
    /// Off by default: a home is what a user can read, and one typed or sent wrong (`/etc`)
    /// would expose the system. Relative homes stay under the root either way.
    pub allow_homes_outside_root: bool,
}

impl Default for AuthConfig {
    /// On: the legacy hashes are much cheaper to crack than argon2id if the file ever leaks
    /// (MD5-crypt especially), and users cannot be made to change their passwords; the
    /// rewrite is atomic and keeps the file's comments. A server that cannot write the file
    /// logs a warning and the login goes on.
    fn default() -> Self {
        Self {
            rehash_to_argon2: true,
            allow_homes_outside_root: false,
        }
    }
}

/// How uploads reach the disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// When a finished upload is flushed to disk before its 226: `always`, `replacements`
    /// (uploads that replace or change an existing file) or `never`.
    pub fsync: SyncPolicy,
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

/// One listening socket for control connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port, e.g. `"0.0.0.0:21"` or `"[::]:21"`.
    #[serde(deserialize_with = "parse::addr")]
    pub bind: SocketAddr,
    /// How the listener speaks: `plain`, `explicit` (AUTH TLS) or `implicit` (TLS from the
    /// first byte).
    #[serde(default)]
    pub mode: ListenerMode,
    /// When TLS is required on this listener: `optional`, `login` or `login_and_data`.
    #[serde(default)]
    pub tls_policy: TlsPolicy,
    /// A TLS data connection must resume the TLS session of its own control connection.
    #[serde(default = "yes")]
    pub require_session_reuse: bool,
    /// Connections from `proxy.trusted` networks start with a PROXY protocol (v1 or v2)
    /// header that carries the real client address.
    #[serde(default)]
    pub proxy_protocol: bool,
}

fn yes() -> bool {
    true
}

impl ListenerConfig {
    /// A listener on `bind` in `mode` with the default policies.
    pub fn new(bind: SocketAddr, mode: ListenerMode) -> Self {
        Self {
            bind,
            mode,
            tls_policy: TlsPolicy::Optional,
            require_session_reuse: true,
            proxy_protocol: false,
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self::new(
            SocketAddr::from(([127, 0, 0, 1], 2121)),
            ListenerMode::Explicit,
        )
    }
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Plain FTP; AUTH TLS is refused.
    Plain,
    /// FTP with AUTH TLS (RFC 4217) on the normal control port.
    #[default]
    Explicit,
    /// TLS from the first byte (by convention port 990, data from 989).
    Implicit,
}

impl ListenerMode {
    /// Whether this listener offers TLS at all.
    pub fn offers_tls(self) -> bool {
        self != Self::Plain
    }
}

impl ListenerMode {
    /// The name as the config file spells it (`explicit`), used in logs, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Explicit => "explicit",
            Self::Implicit => "implicit",
        }
    }
    /// The name for people (`explicit FTPS`), in the plain start-up lines.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Explicit => "explicit FTPS",
            Self::Implicit => "implicit FTPS",
        }
    }
}

/// The config spelling, so that log fields match the file.
impl fmt::Display for ListenerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Certificates and TLS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first; absent = a self-signed certificate
    /// generated at start (for trying things out, not for production).
    pub cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: Option<PathBuf>,
    /// Seconds a client may take to complete a TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds between checks of the certificate files for changes (0 = only on SIGHUP).
    pub reload_check_secs: u64,
    /// Refuse a TLS upload that ends without the client's close_notify (it may be truncated).
    pub require_close_notify: bool,
    /// PEM file of CA certificates that client certificates are verified against; absent = no
    /// client certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            handshake_timeout_secs: 10,
            reload_check_secs: 10,
            require_close_notify: true,
            client_ca: None,
        }
    }
}

impl TlsConfig {
    /// The handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// Passive mode settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    /// The port range to listen on, `"LOW-HIGH"`; absent = any free port the OS picks.
    pub ports: Option<PortRange>,
    /// The address announced in PASV replies: an IPv4 address or a host name (resolved at
    /// each PASV); absent = the address the client connected to.
    pub address: Option<String>,
    /// Accept a passive data connection from an IP other than the control connection's. Off by
    /// default: on, anyone who guesses the port can steal the transfer.
    pub allow_foreign_ip: bool,
    /// Seconds a resolved `address` host name is used before it is looked up again (dynamic
    /// DNS).
    pub resolve_every_secs: u64,
    /// Ports announced instead of `ports`, for a NAT gateway that forwards a different range
    /// to them (same size; port N of `ports` is announced as the N-th of this range).
    pub announce_ports: Option<PortRange>,
    /// Other addresses for clients from some networks (the first that matches), e.g. the
    /// private address for clients on the LAN and the public one (`address`) for the rest.
    pub announce: Vec<AnnounceRule>,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            ports: None,
            address: None,
            allow_foreign_ip: false,
            resolve_every_secs: 60,
            announce_ports: None,
            announce: Vec::new(),
        }
    }
}

/// The address announced to clients from some networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRule {
    /// Client networks, e.g. `["10.0.0.0/8", "192.168.0.0/16"]`.
    #[serde(deserialize_with = "parse::nets")]
    pub from: Vec<ipnet::IpNet>,
    /// The IPv4 address or host name to announce to them.
    pub address: String,
}

/// Active mode settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveConfig {
    /// Allow PORT and EPRT at all.
    pub enabled: bool,
    /// Allow PORT/EPRT to an address other than the client's own (the FTP bounce attack,
    /// RFC 2577). Off by default.
    pub allow_foreign_ip: bool,
    /// Allow PORT/EPRT to ports below 1024 (RFC 2577). Off by default.
    pub allow_privileged_ports: bool,
    /// Open active data connections from the port just below the listener's (20 for 21, 989
    /// for 990), as classic firewall rules expect. Below 1024 that needs CAP_NET_BIND_SERVICE.
    pub source_port_below_listener: bool,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_foreign_ip: false,
            allow_privileged_ports: false,
            source_port_below_listener: false,
        }
    }
}

/// The anonymous home unless one is configured, under the root.
pub const DEFAULT_ANONYMOUS_HOME: &str = "pub";

/// Anonymous access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Accept USER anonymous / USER ftp with any password.
    pub enabled: bool,
    /// The anonymous home, relative to `root` (or absolute, under it): a directory of its
    /// own, never one that holds a user's home. The default, `pub`, is created at start when
    /// missing; any other must exist.
    pub home: PathBuf,
    /// What anonymous users may do; read-only by default.
    pub permissions: Permissions,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            home: PathBuf::from(DEFAULT_ANONYMOUS_HOME),
            permissions: Permissions::READ_ONLY,
        }
    }
}

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

/// An inclusive port range, written `"LOW-HIGH"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }
    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range LOW-HIGH, like 50000-50100"))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{p:?} is not a port number 1-65535"))
        };
        let (low, high) = (parse(lo)?, parse(hi)?);
        if low > high {
            return Err(format!(
                "the range {s:?} is backwards (LOW must be <= HIGH)"
            ));
        }
        Ok(Self { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `addr` can be announced in PASV: an IPv4 address or a host name.
fn check_announce_address(addr: &str) -> Result<(), &'static str> {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Ok(()),
        Ok(IpAddr::V6(_)) => {
            Err("PASV can only announce an IPv4 address (IPv6 clients use EPSV, which needs none)")
        }
        Err(_) if addr.is_empty() || addr.contains(|c: char| c.is_whitespace() || c == '/') => {
            Err("must be an IPv4 address or a host name")
        }
        Err(_) => Ok(()),
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

    /// Check the values that the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.listeners.is_empty() {
            return invalid("listener", "at least one listener is needed");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            // Port 0 (the OS picks) can be listed any number of times.
            if l.bind.port() != 0 && self.listeners[..i].iter().any(|o| o.bind == l.bind) {
                return Err(ConfigError::Invalid {
                    key: "listener.bind",
                    reason: format!("{} is listed twice", l.bind),
                });
            }
        }
        for l in &self.listeners {
            if !l.mode.offers_tls() && l.tls_policy != TlsPolicy::Optional {
                return Err(ConfigError::Invalid {
                    key: "listener.tls_policy",
                    reason: format!(
                        "listener {} is plain (no TLS) but its tls_policy requires TLS",
                        l.bind
                    ),
                });
            }
        }
        if let Some(l) = self.listeners.iter().find(|l| l.proxy_protocol) {
            if self.proxy.trusted.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "proxy.trusted",
                    reason: format!(
                        "listener {} has proxy_protocol = true, so the proxies' networks must be listed (--proxy-protocol-from)",
                        l.bind
                    ),
                });
            }
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return invalid("tls.key", "tls.cert is set, so tls.key is needed too");
            }
            (None, Some(_)) => {
                return invalid("tls.cert", "tls.key is set, so tls.cert is needed too");
            }
            _ => {}
        }
        let b = &self.bans;
        if b.enabled {
            for (key, v) in [
                ("bans.max_failures", u64::from(b.max_failures)),
                ("bans.window_secs", b.window_secs),
                ("bans.ban_secs", b.ban_secs),
                ("bans.escalation", u64::from(b.escalation)),
            ] {
                if v == 0 {
                    return invalid(key, "must be greater than 0");
                }
            }
            if b.max_ban_secs < b.ban_secs {
                return invalid("bans.max_ban_secs", "must be at least bans.ban_secs");
            }
            if !(16..=128).contains(&b.ipv6_prefix) {
                return invalid(
                    "bans.ipv6_prefix",
                    "must be between 16 and 128 (64 counts each /64 network as one client)",
                );
            }
        }
        if self.tls.handshake_timeout_secs == 0 {
            return invalid("tls.handshake_timeout_secs", "must be greater than 0");
        }
        if let (Some(ports), Some(announced)) = (self.passive.ports, self.passive.announce_ports) {
            if ports.len() != announced.len() {
                return invalid(
                    "passive.announce_ports",
                    "must be as large as passive.ports (each listening port maps to one announced port)",
                );
            }
        } else if self.passive.announce_ports.is_some() {
            return invalid("passive.announce_ports", "needs passive.ports to map from");
        }
        for rule in &self.passive.announce {
            if rule.from.is_empty() {
                return invalid("passive.announce.from", "list at least one client network");
            }
            if let Err(reason) = check_announce_address(&rule.address) {
                return Err(ConfigError::Invalid {
                    key: "passive.announce.address",
                    reason: reason.to_owned(),
                });
            }
        }
        if let Some(addr) = &self.passive.address {
            if let Ok(ip) = addr.parse::<IpAddr>() {
                if ip.is_ipv6() {
                    return invalid(
                        "passive.address",
                        "PASV can only announce an IPv4 address (IPv6 clients use EPSV, which needs none)",
                    );
                }
            } else if addr.is_empty() || addr.contains(|c: char| c.is_whitespace() || c == '/') {
                return invalid("passive.address", "must be an IPv4 address or a host name");
            }
        }
        let l = &self.limits;
        let positive: [(&'static str, u64); 6] = [
            ("limits.max_line_length", l.max_line_length as u64),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.login_timeout_secs", l.login_timeout_secs),
            ("limits.data_timeout_secs", l.data_timeout_secs),
            ("limits.max_sessions", l.max_sessions as u64),
            ("limits.max_sessions_per_ip", l.max_sessions_per_ip as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return invalid(key, "must be greater than 0");
            }
        }
        if l.max_line_length < 512 {
            return invalid(
                "limits.max_line_length",
                "must be at least 512 (RFC 959 paths and RFC 2640 UTF-8 names need room)",
            );
        }
        if self.anonymous.home.as_os_str().is_empty() {
            return invalid(
                "anonymous.home",
                "must name a directory (the default is \"pub\" under the root)",
            );
        }
        if l.max_login_failures == 0 {
            return invalid("limits.max_login_failures", "must be at least 1");
        }
        if let Some(addr) = self.metrics.listen {
            if addr.port() != 0 && self.listeners.iter().any(|l| l.bind == addr) {
                return Err(ConfigError::Invalid {
                    key: "metrics.listen",
                    reason: format!("{addr} is also an FTP listener"),
                });
            }
        }
        if let Some(addr) = self.admin.listen {
            if addr.port() != 0 && self.listeners.iter().any(|l| l.bind == addr) {
                return Err(ConfigError::Invalid {
                    key: "admin.listen",
                    reason: format!("{addr} is also an FTP listener"),
                });
            }
            if addr.port() != 0 && self.metrics.listen == Some(addr) {
                return Err(ConfigError::Invalid {
                    key: "admin.listen",
                    reason: format!("{addr} is also the metrics listener"),
                });
            }
            if !addr.ip().to_canonical().is_loopback() && !self.admin.allow_remote {
                return Err(ConfigError::Invalid {
                    key: "admin.listen",
                    reason: format!(
                        "{addr} is not a loopback address: the admin API is plain HTTP, so its token would cross the network unencrypted; listen on 127.0.0.1 or ::1 (reach it through SSH or a TLS proxy), or set admin.allow_remote = true"
                    ),
                });
            }
            match &self.admin.token_file {
                None => {
                    return invalid(
                        "admin.token_file",
                        "admin.listen is set, so a file with the bearer token is needed (--admin-token-file)",
                    );
                }
                Some(p) if p.as_os_str().is_empty() => {
                    return invalid("admin.token_file", "must be a file path");
                }
                Some(_) => {}
            }
        }
        if self
            .log
            .xferlog
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("log.xferlog", "must be a file path");
        }
        if let Err(reason) = log_filter(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                reason,
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let c = Config::from_toml(text)?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn an_empty_file_gives_the_safe_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:2121");
        assert!(!c.anonymous.enabled);
        assert!(!c.passive.allow_foreign_ip && !c.active.allow_foreign_ip);
        assert!(!c.active.allow_privileged_ports);
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let e = parse("[passive]\nports = \"9-3\"\n").unwrap_err();
        assert!(e.contains("ports") && e.contains("backwards"), "{e}");
        let e = parse("[limits]\nidle_timeout_secs = 0\n").unwrap_err();
        assert!(e.contains("limits.idle_timeout_secs"), "{e}");
        let e = parse("[passive]\nport = \"1-2\"\n").unwrap_err();
        assert!(
            e.contains("unknown key `port`") && e.contains("`ports`"),
            "{e}"
        );
        let e = parse("[[listener]]\nbind = \"nonsense\"\n").unwrap_err();
        assert!(e.contains("bind"), "{e}");
        let e = parse("[passive]\naddress = \"::1\"\n").unwrap_err();
        assert!(e.contains("passive.address"), "{e}");
        let e = parse("[anonymous]\npermissions = [\"fly\"]\n").unwrap_err();
        assert!(e.contains("fly"), "{e}");
    }

    #[test]
    fn the_admin_api_needs_a_token_and_stays_on_loopback_unless_told() {
        let e = parse("[admin]\nlisten = \"127.0.0.1:9022\"\n").unwrap_err();
        assert!(e.contains("admin.token_file"), "{e}");
        let e = parse("[admin]\nlisten = \"0.0.0.0:9022\"\ntoken_file = \"/t\"\n").unwrap_err();
        assert!(
            e.contains("admin.listen") && e.contains("allow_remote"),
            "{e}"
        );
        parse("[admin]\nlisten = \"0.0.0.0:9022\"\ntoken_file = \"/t\"\nallow_remote = true\n")
            .unwrap();
        parse("[admin]\nlisten = \"[::1]:9022\"\ntoken_file = \"/t\"\n").unwrap();
        parse("[admin]\nlisten = \"[::ffff:127.0.0.1]:9022\"\ntoken_file = \"/t\"\n").unwrap();
        assert!(parse("").unwrap().admin.listen.is_none());
    }

    #[test]
    fn the_effective_config_round_trips() {
        let c = parse("root = \"/srv\"\n[passive]\nports = \"50000-50010\"\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(
            again.passive.ports,
            Some(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(again.root, PathBuf::from("/srv"));
    }

    #[test]
    fn ban_and_home_keys_are_validated() {
        let e = parse("[bans]\nipv6_prefix = 8\n").unwrap_err();
        assert!(e.to_string().contains("bans.ipv6_prefix"), "{e}");
        assert!(parse("[bans]\nipv6_prefix = 128\nuser_interval_ms = 0\n").is_ok());
        let e = parse("[anonymous]\nhome = \"\"\n").unwrap_err();
        assert!(e.to_string().contains("anonymous.home"), "{e}");
        let c = parse("[auth]\nallow_homes_outside_root = true\n").unwrap();
        assert!(c.auth.allow_homes_outside_root);
        assert!(!Config::default().auth.allow_homes_outside_root);
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../../ferroftp.example.toml");
        let example = parse(text).unwrap();
        assert_eq!(example.to_toml(), Config::default().to_toml());
    }
}
