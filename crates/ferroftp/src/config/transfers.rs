//! `[passive]`, `[active]` and `[uploads]`: how data connections are made and how uploads
//! reach the disk; and the `"LOW-HIGH"` port ranges they use.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, SyncPolicy, invalid, parse};

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

/// How uploads reach the disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// When a finished upload is flushed to disk before its 226: `always`, `replacements`
    /// (uploads that replace or change an existing file) or `never`.
    pub fsync: SyncPolicy,
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

impl PassiveConfig {
    /// Announced ports map one to one onto listening ports; announced addresses are ones PASV
    /// can carry.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let (Some(ports), Some(announced)) = (self.ports, self.announce_ports) {
            if ports.len() != announced.len() {
                return Err(invalid(
                    "passive.announce_ports",
                    "must be as large as passive.ports (each listening port maps to one announced port)",
                ));
            }
        } else if self.announce_ports.is_some() {
            return Err(invalid(
                "passive.announce_ports",
                "needs passive.ports to map from",
            ));
        }
        for rule in &self.announce {
            if rule.from.is_empty() {
                return Err(invalid(
                    "passive.announce.from",
                    "list at least one client network",
                ));
            }
            if let Err(reason) = check_announce_address(&rule.address) {
                return Err(invalid("passive.announce.address", reason));
            }
        }
        if let Some(addr) = &self.address {
            if let Ok(ip) = addr.parse::<IpAddr>() {
                if ip.is_ipv6() {
                    return Err(invalid(
                        "passive.address",
                        "PASV can only announce an IPv4 address (IPv6 clients use EPSV, which needs none)",
                    ));
                }
            } else if addr.is_empty() || addr.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(invalid(
                    "passive.address",
                    "must be an IPv4 address or a host name",
                ));
            }
        }
        Ok(())
    }
}
