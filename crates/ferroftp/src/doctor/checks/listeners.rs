//! The listeners: can each bind its address, or is a ferroftp (or something else) already
//! there; what a failed bind means.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use super::{Host, exposed};
use crate::config::{Config, ListenerConfig, ListenerMode, TlsPolicy};
use crate::doctor::client::greeting;
use crate::doctor::{Check, Level, Report};

/// How long a server that already listens may take to answer doctor's probe.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to reach a server listening on `bind`: the address itself, or loopback for the
/// wildcard addresses (IPv4 loopback too for `[::]`, which takes IPv4 as well).
pub(super) fn probe_addrs(bind: SocketAddr) -> Vec<SocketAddr> {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, bind.port()))]
        }
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            SocketAddr::from((Ipv6Addr::LOCALHOST, bind.port())),
            SocketAddr::from((Ipv4Addr::LOCALHOST, bind.port())),
        ],
        _ => vec![bind],
    }
}

/// Who answers on a listener's port that doctor could not bind.
pub(super) enum Occupant {
    /// A ferroftp with this configuration's greeting: the greeting, as sent.
    Ferroftp(String),
    /// Another FTP server (or another greeting): its greeting.
    OtherFtp(String),
    /// Nothing recognisable.
    Unknown,
}

/// Connect to the port of `l` and read the greeting, as a client would (over TLS from the
/// first byte on an implicit listener, after a PROXY header where loopback is a trusted
/// proxy).
pub(super) fn occupant(config: &Config, l: &ListenerConfig) -> Occupant {
    for addr in probe_addrs(l.bind) {
        let proxy_header = l.proxy_protocol
            && config
                .proxy
                .trusted
                .iter()
                .any(|net| net.contains(&addr.ip()));
        let Ok((code, text)) = greeting(
            addr,
            l.mode == ListenerMode::Implicit,
            proxy_header,
            PROBE_TIMEOUT,
        ) else {
            continue;
        };
        let shown = format!("{code} {}", text.lines().next().unwrap_or(""));
        let ours = config.greeting.lines().map(str::trim).collect::<Vec<_>>();
        let theirs = text.lines().map(str::trim).collect::<Vec<_>>();
        return match code {
            220 if ours == theirs => Occupant::Ferroftp(shown),
            220 => Occupant::OtherFtp(shown),
            // 421 (full, banned) and the like: it may be ferroftp, but it does not say.
            _ => Occupant::Unknown,
        };
    }
    Occupant::Unknown
}

/// Checks the listeners; whether a ferroftp with this configuration already serves them.
pub(super) fn listeners(config: &Config, host: &Host, r: &mut Report) -> bool {
    r.section("Listeners");
    let mut running = false;
    // Kept open until all are checked, so that listeners of this configuration that collide
    // with each other (0.0.0.0:21 and the dual-stack [::]:21) show up too.
    let mut held: Vec<(SocketAddr, TcpListener)> = Vec::new();
    for l in &config.listeners {
        let name = format!("listener {} ({})", l.bind, l.mode);
        let port = l.bind.port();
        if port == 0 {
            r.add(
                Check::new(
                    Level::Warn,
                    format!("{name}: port 0 makes the OS pick a new port at each start, so neither clients nor firewall rules can know it"),
                )
                .fix("set a fixed port in listener.bind / --listen, e.g. 0.0.0.0:21 or 0.0.0.0:2121"),
            );
            continue;
        }
        let privileged = port < host.unprivileged_start;
        match TcpListener::bind(l.bind) {
            Ok(socket) => {
                held.push((l.bind, socket));
                let text = if privileged {
                    format!(
                        "{name}: the port can be bound (port {port} is privileged, below {}: this check ran as uid {}; the service needs root or CAP_NET_BIND_SERVICE too)",
                        host.unprivileged_start, host.uid
                    )
                } else {
                    format!("{name}: the port can be bound")
                };
                r.add(Check::new(Level::Ok, text));
            }
            Err(e) => {
                let sibling = held
                    .iter()
                    .any(|(a, _)| a.port() == port && a.is_ipv4() != l.bind.is_ipv4());
                let found = if e.kind() == io::ErrorKind::AddrInUse && !sibling {
                    occupant(config, l)
                } else {
                    Occupant::Unknown
                };
                let failure =
                    || bind_failure(&name, "listener.bind / --listen", l.bind, &e, &held, host);
                match found {
                    Occupant::Ferroftp(greeting) => {
                        running = true;
                        r.add(Check::new(
                            Level::Ok,
                            format!(
                                "{name}: port {port} is in use by a running ferroftp with this configuration's greeting (it answered \"{greeting}\")"
                            ),
                        ));
                    }
                    Occupant::OtherFtp(greeting) => {
                        let mut check = failure();
                        check.text = format!(
                            "{name}: port {port} is already in use by an FTP server that greets \"{greeting}\", not with this configuration's greeting (\"220 {}\"): another server, or ferroftp with another configuration",
                            config.greeting.lines().next().unwrap_or("")
                        );
                        r.add(check);
                    }
                    Occupant::Unknown => r.add(failure()),
                }
            }
        }
    }
    for l in &config.listeners {
        let name = format!("listener {}", l.bind);
        let check = match (l.mode, exposed(l)) {
            (ListenerMode::Plain, true) => Check::new(
                Level::Warn,
                format!("{name} is plain FTP: passwords and files cross the network in clear"),
            )
            .fix("mode = \"explicit\" (AUTH TLS) with tls.cert and tls.key, and tls_policy = \"login\""),
            (ListenerMode::Plain, false) => Check::new(
                Level::Ok,
                format!("{name} is plain FTP on loopback only: passwords never leave this host"),
            ),
            (ListenerMode::Explicit, true) if l.tls_policy == TlsPolicy::Optional => Check::new(
                Level::Warn,
                format!(
                    "{name} offers TLS (AUTH TLS) but does not require it: clients may still send passwords in clear"
                ),
            )
            .fix("tls_policy = \"login\" (or \"login_and_data\") in this [[listener]]"),
            (mode, _) => Check::new(
                Level::Ok,
                format!(
                    "{name}: {mode}, tls_policy \"{}\"",
                    l.tls_policy.as_str()
                ),
            ),
        };
        r.add(check);
    }
    running
}

pub(super) fn bind_failure(
    name: &str,
    key: &str,
    bind: SocketAddr,
    e: &io::Error,
    held: &[(SocketAddr, TcpListener)],
    host: &Host,
) -> Check {
    let port = bind.port();
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            let alt = match port {
                21 => 2121,
                990 => 9990,
                p => p + 8000,
            };
            Check::new(
                Level::Fail,
                format!(
                    "{name}: cannot bind port {port}: it is privileged (below {}) and uid {} may not bind it ({e})",
                    host.unprivileged_start, host.uid
                ),
            )
            .fix(format!(
                "give the binary the right: sudo setcap cap_net_bind_service=+ep {}",
                host.exe
            ))
            .fix("or under systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE (with User=) in [Service]")
            .fix(format!(
                "or listen on {alt} and redirect {port} to it: nft add rule ip nat prerouting tcp dport {port} redirect to :{alt} (iptables -t nat -A PREROUTING -p tcp --dport {port} -j REDIRECT --to-ports {alt})"
            ))
        }
        io::ErrorKind::AddrInUse => {
            let sibling = held
                .iter()
                .find(|(a, _)| a.port() == port && a.is_ipv4() != bind.is_ipv4());
            match sibling {
                Some((other, _)) => Check::new(
                    Level::Fail,
                    format!(
                        "{name}: port {port} collides with listener {other} of this configuration: on Linux [::]:{port} takes IPv4 too (dual stack)"
                    ),
                )
                .fix(format!("keep only [::]:{port} (it serves both IPv4 and IPv6)")),
                None => Check::new(
                    Level::Fail,
                    format!(
                        "{name}: port {port} is already in use on {}, and what listens there does not answer as this configuration's ferroftp would",
                        bind.ip()
                    ),
                )
                .fix(format!("see who holds it: ss -ltnp 'sport = :{port}'"))
                .fix(format!("stop that process, or choose another port ({key})")),
            }
        }
        io::ErrorKind::AddrNotAvailable => Check::new(
            Level::Fail,
            format!("{name}: {} is not an address of this host ({e})", bind.ip()),
        )
        .fix("use one of this host's addresses (ip -brief address) or 0.0.0.0 / [::]"),
        _ => Check::new(Level::Fail, format!("{name}: cannot bind: {e}")),
    }
}
