//! `ferroftp doctor` without `--connect`: the configuration against this host.

mod files;
mod listeners;
mod management;
mod passive;
mod secrets;

use std::net::Ipv4Addr;

use super::{Check, Level, Report, firewall_rules};
use crate::config::{Config, ListenerConfig};

/// Certificates that expire sooner than this get a warning.
const EXPIRY_WARNING_DAYS: u64 = 30;

/// What the checks need to know about this host.
struct Host {
    /// The first port that needs no privilege (net.ipv4.ip_unprivileged_port_start).
    unprivileged_start: u16,
    uid: u32,
    exe: String,
}

impl Host {
    fn probe() -> Self {
        let unprivileged_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1024);
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/usr/local/bin/ferroftp".into());
        Self {
            unprivileged_start,
            uid: rustix::process::getuid().as_raw(),
            exe,
        }
    }
}

/// Private (RFC 1918), shared (carrier-grade NAT, RFC 6598) or link-local: not reachable
/// from the internet.
pub(super) fn is_private(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
}

fn exposed(l: &ListenerConfig) -> bool {
    !l.bind.ip().is_loopback()
}

/// Check `config` (described as `source` in the heading) against this host, adding to `r`.
pub fn check_config(config: &Config, source: &str, r: &mut Report) {
    let host = Host::probe();
    r.section(&format!(
        "ferroftp doctor: {source} (checked as uid {}; run it as the service's user for the same view)",
        host.uid
    ));
    let running = listeners::listeners(config, &host, r);
    passive::passive(config, &host, running, r);
    secrets::certificate(config, r);
    files::files(config, r);
    super::state::writable_state(config, r);
    management::management(config, &host, r);
    limits(config, r);
    r.section("Firewall rules to open");
    r.note(&firewall_rules(config));
}

fn limits(config: &Config, r: &mut Report) {
    r.section("Limits");
    use rustix::process::{Resource, getrlimit};
    let needed = config.limits.max_sessions.saturating_mul(4) as u64 + 64;
    // serve raises the soft limit to the hard one.
    match getrlimit(Resource::Nofile).maximum {
        Some(hard) if hard < needed => r.add(
            Check::new(
                Level::Warn,
                format!(
                    "open-files limit {hard} is too low for limits.max_sessions = {} (each session can hold 4 files; {needed} needed)",
                    config.limits.max_sessions
                ),
            )
            .fix("raise it (LimitNOFILE= under systemd, ulimit -n), or lower limits.max_sessions"),
        ),
        hard => r.add(Check::new(
            Level::Ok,
            format!(
                "open-files limit {} is enough for limits.max_sessions = {}",
                hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string()),
                config.limits.max_sessions
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_include_cgnat_and_link_local() {
        for ip in [
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "169.254.1.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "100.128.0.1", "127.0.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
