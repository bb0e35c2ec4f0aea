//! The passive range and the address announced in 227: free ports, NAT, what clients can
//! reach.

use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpListener, ToSocketAddrs, UdpSocket};

use super::{Host, exposed, is_private};
use crate::config::Config;
use crate::doctor::{Check, Level, Report};

pub(super) fn passive(config: &Config, host: &Host, running: bool, r: &mut Report) {
    r.section("Passive mode (PASV/EPSV)");
    let any_exposed = config.listeners.iter().any(exposed);
    let max_sessions = config.limits.max_sessions;
    match config.passive.ports {
        None if any_exposed => r.add(
            Check::new(
                Level::Warn,
                "passive.ports is unset: PASV/EPSV listen on any port the OS picks, which a firewall cannot open narrowly",
            )
            .fix("passive.ports = \"50000-50100\" (and open that range, see the rules below)"),
        ),
        None => r.add(Check::new(
            Level::Ok,
            "passive.ports is unset: any free port (fine on loopback)",
        )),
        Some(range) => {
            // Passive ports are bound on the address the control connection came in on.
            let ip = config
                .listeners
                .iter()
                .map(|l| l.bind.ip())
                .find(IpAddr::is_ipv4)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let (mut free, mut busy, mut denied) = (0usize, 0usize, 0usize);
            for port in range.low..=range.high {
                match TcpListener::bind((ip, port)) {
                    Ok(_) => free += 1,
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied += 1,
                    Err(_) => busy += 1,
                }
            }
            let summary = format!(
                "passive.ports {range}: {} ports, {free} free on {ip} now, {busy} in use",
                range.len()
            );
            if denied > 0 {
                r.add(
                    Check::new(
                        Level::Fail,
                        format!(
                            "{summary}, {denied} privileged (below {}) and not bindable by uid {}",
                            host.unprivileged_start, host.uid
                        ),
                    )
                    .fix("use ports from 1024 up, e.g. passive.ports = \"50000-50100\""),
                );
            } else if free == 0 && running {
                r.add(
                    Check::new(
                        Level::Warn,
                        format!("{summary}: the running ferroftp holds them for that many transfers, or other processes do; then new PASV/EPSV answer 425"),
                    )
                    .fix(format!("see who holds them: ss -ltnp 'sport >= :{} and sport <= :{}'", range.low, range.high)),
                );
            } else if free == 0 {
                r.add(
                    Check::new(
                        Level::Fail,
                        format!("{summary}: PASV/EPSV would answer 425 (if ferroftp itself holds them, it is serving that many transfers)"),
                    )
                    .fix("choose a range other processes do not use"),
                );
            } else if busy > 0 && running {
                r.add(Check::new(
                    Level::Ok,
                    format!("{summary} (the running ferroftp's transfers hold passive ports while they last; busy ports are skipped)"),
                ));
            } else if busy > 0 {
                r.add(Check::new(
                    Level::Warn,
                    format!("{summary} (held by other processes, or by a running ferroftp; busy ports are skipped)"),
                ));
            } else {
                r.add(Check::new(Level::Ok, summary));
            }
            if let Some(l) = config
                .listeners
                .iter()
                .find(|l| (range.low..=range.high).contains(&l.bind.port()))
            {
                r.add(
                    Check::new(
                        Level::Warn,
                        format!(
                            "the control port of listener {} lies inside passive.ports {range}",
                            l.bind
                        ),
                    )
                    .fix("keep the passive range apart from the control ports"),
                );
            }
            if range.len() < max_sessions {
                r.add(
                    Check::new(
                        Level::Warn,
                        format!(
                            "passive.ports {range} holds {} ports but limits.max_sessions is {max_sessions}: each session holds at most one passive port at a time, so beyond {} transfers (or listings) at once PASV/EPSV answer 425",
                            range.len(),
                            range.len()
                        ),
                    )
                    .fix(format!(
                        "widen the range to {max_sessions} ports (e.g. passive.ports = \"{}-{}\"), or lower limits.max_sessions to the transfers you expect at once",
                        range.low,
                        (usize::from(range.low) + max_sessions - 1).min(65535)
                    )),
                );
            } else {
                r.add(Check::new(
                    Level::Ok,
                    format!(
                        "passive.ports {range} holds {} ports, enough for limits.max_sessions = {max_sessions} (one passive port per session at a time)",
                        range.len()
                    ),
                ));
            }
        }
    }
    passive_address(config, any_exposed, r);
}

/// The address this host uses to reach the internet (no packet is sent), if it has a route.
pub(super) fn outbound_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

pub(super) fn is_local(ip: Ipv4Addr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

pub(super) fn passive_address(config: &Config, any_exposed: bool, r: &mut Report) {
    let set_it = "set passive.address (or --passive-address) to the public address or a host name that resolves to it; EPSV needs no address";
    let Some(name) = &config.passive.address else {
        if !any_exposed {
            r.add(Check::new(
                Level::Ok,
                "passive.address is unset: PASV announces the address the client connected to (loopback here)",
            ));
            return;
        }
        for l in config.listeners.iter().filter(|l| exposed(l)) {
            let announced = match l.bind.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => outbound_ipv4().map(|ip| (ip, true)),
                IpAddr::V4(ip) => Some((ip, false)),
                IpAddr::V6(ip) if ip.is_unspecified() => outbound_ipv4().map(|ip| (ip, true)),
                IpAddr::V6(_) => {
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "listener {}: IPv6 clients use EPSV, which needs no address",
                            l.bind
                        ),
                    ));
                    continue;
                }
            };
            match announced {
                Some((ip, guessed)) if is_private(ip) => {
                    let how = if guessed {
                        format!("this host's outgoing address is {ip} (private), which PASV announces to clients that connect to it")
                    } else {
                        format!("PASV announces {ip} (private)")
                    };
                    r.add(
                        Check::new(
                            Level::Warn,
                            format!(
                                "listener {}: passive.address is unset and {how}: fine on that network, but clients from the internet (through NAT) are told an address they cannot reach",
                                l.bind
                            ),
                        )
                        .fix(set_it),
                    );
                }
                Some((ip, _)) => r.add(Check::new(
                    Level::Ok,
                    format!(
                        "listener {}: passive.address is unset: PASV announces the address the client connected to ({ip} is public)",
                        l.bind
                    ),
                )),
                None => r.add(Check::new(
                    Level::Ok,
                    format!(
                        "listener {}: passive.address is unset: PASV announces the address the client connected to",
                        l.bind
                    ),
                )),
            }
        }
        return;
    };
    let resolved: io::Result<Vec<Ipv4Addr>> = match name.parse::<Ipv4Addr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => (name.as_str(), 0).to_socket_addrs().map(|addrs| {
            addrs
                .filter_map(|a| match a.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                })
                .collect()
        }),
    };
    let ip = match resolved {
        Err(e) => {
            r.add(
                Check::new(
                    Level::Fail,
                    format!("passive.address {name:?} does not resolve ({e}): PASV answers 425"),
                )
                .fix("fix the DNS name, or give the IPv4 address"),
            );
            return;
        }
        Ok(ips) => match ips.first() {
            Some(ip) => *ip,
            None => {
                r.add(
                    Check::new(
                        Level::Fail,
                        format!(
                            "passive.address {name:?} has no IPv4 address (PASV can only announce IPv4): PASV answers 425"
                        ),
                    )
                    .fix("give a name with an A record, or the IPv4 address"),
                );
                return;
            }
        },
    };
    let what = if name.parse::<Ipv4Addr>().is_ok() {
        format!("passive.address {ip}")
    } else {
        format!("passive.address {name:?} resolves to {ip}")
    };
    let local = if is_local(ip) {
        "an address of this host"
    } else {
        "not an address of this host: fine behind NAT if the control port and passive.ports are forwarded here"
    };
    let public_listeners: Vec<String> = config
        .listeners
        .iter()
        .filter(|l| match l.bind.ip() {
            IpAddr::V4(a) => a.is_unspecified() || !(a.is_loopback() || is_private(a)),
            IpAddr::V6(a) => !a.is_loopback(),
        })
        .map(|l| l.bind.to_string())
        .collect();
    if ip.is_loopback() && any_exposed {
        r.add(
            Check::new(
                Level::Fail,
                format!(
                    "{what}, a loopback address, announced to every client: clients on other hosts would connect to themselves"
                ),
            )
            .fix(set_it),
        );
    } else if (is_private(ip) || ip.is_loopback()) && !public_listeners.is_empty() {
        r.add(
            Check::new(
                Level::Warn,
                format!(
                    "{what} ({}, {local}) is announced to clients coming from the internet too (listeners {})",
                    if ip.is_loopback() { "loopback" } else { "private" },
                    public_listeners.join(", ")
                ),
            )
            .fix("fine if every client is on that network; otherwise set the public address"),
        );
    } else {
        r.add(Check::new(Level::Ok, format!("{what}, {local}")));
    }
}
