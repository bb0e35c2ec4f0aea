//! Passive addresses given as host names, resolved and kept (see [`Announced`]).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Host names of passive addresses, resolved and kept for a while (dynamic DNS changes are
/// picked up when the entry is older than `passive.resolve_every_secs`).
#[derive(Debug, Default)]
pub(crate) struct Announced {
    resolved: Mutex<HashMap<String, (std::net::Ipv4Addr, std::time::Instant)>>,
    warned: std::sync::atomic::AtomicBool,
}

impl Announced {
    /// The IPv4 address of `name` (an address or a host name), looked up again when the last
    /// answer is older than `every`; if a lookup fails, the last answer goes on being used.
    pub(crate) async fn resolve(
        &self,
        name: &str,
        every: Duration,
    ) -> io::Result<std::net::Ipv4Addr> {
        if let Ok(ip) = name.parse() {
            return Ok(ip);
        }
        let lock = || self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let cached = lock().get(name).copied();
        if let Some((ip, at)) = cached {
            if at.elapsed() < every {
                return Ok(ip);
            }
        }
        let looked_up = tokio::net::lookup_host((name, 0))
            .await
            .and_then(|mut addrs| {
                addrs
                    .find_map(|a| match a.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address"))
            });
        match (looked_up, cached) {
            (Ok(ip), old) => {
                if old.is_some_and(|(o, _)| o != ip) {
                    tracing::info!(address = name, from = %old.map(|(o, _)| o).unwrap_or(ip), to = %ip, "the passive address changed");
                }
                lock().insert(name.to_owned(), (ip, std::time::Instant::now()));
                Ok(ip)
            }
            (Err(e), Some((ip, _))) => {
                tracing::warn!(address = name, error = %e, last = %ip, "cannot resolve the passive address again; using the last answer");
                Ok(ip)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Log, once per run, that a private address is being announced to a public client.
    pub(crate) fn warn_once(&self, announced: std::net::Ipv4Addr, client: IpAddr) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(%announced, %client, "PASV announced a private or loopback address to a client on the internet: it cannot connect; set passive.address to the public address (or a [[passive.announce]] rule); EPSV needs none");
        }
    }
}
