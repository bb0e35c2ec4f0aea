//! `[[listener]]` (where control connections are accepted, and how) and `[proxy]` (the load
//! balancers whose PROXY headers are believed).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, TlsPolicy, invalid, parse};

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

/// The listeners: at least one, no address twice, TLS policies only where TLS is offered, and
/// PROXY headers only with the proxies' networks listed.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    if config.listeners.is_empty() {
        return Err(invalid("listener", "at least one listener is needed"));
    }
    for (i, l) in config.listeners.iter().enumerate() {
        // Port 0 (the OS picks) can be listed any number of times.
        if l.bind.port() != 0 && config.listeners[..i].iter().any(|o| o.bind == l.bind) {
            return Err(invalid(
                "listener.bind",
                format!("{} is listed twice", l.bind),
            ));
        }
    }
    for l in &config.listeners {
        if !l.mode.offers_tls() && l.tls_policy != TlsPolicy::Optional {
            return Err(invalid(
                "listener.tls_policy",
                format!(
                    "listener {} is plain (no TLS) but its tls_policy requires TLS",
                    l.bind
                ),
            ));
        }
    }
    if let Some(l) = config.listeners.iter().find(|l| l.proxy_protocol) {
        if config.proxy.trusted.is_empty() {
            return Err(invalid(
                "proxy.trusted",
                format!(
                    "listener {} has proxy_protocol = true, so the proxies' networks must be listed (--proxy-protocol-from)",
                    l.bind
                ),
            ));
        }
    }
    Ok(())
}
