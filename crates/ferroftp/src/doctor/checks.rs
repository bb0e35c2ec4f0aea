//! `ferroftp doctor` without `--connect`: the configuration against this host.

use std::io;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::client::greeting;
use super::{Check, Level, Report, firewall_rules};
use crate::auth::{AuthError, Permission, UserDb};
use crate::config::{Config, ListenerConfig, ListenerMode, TlsPolicy};
use crate::tls::{self, Tls, TlsError};

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
    let running = listeners(config, &host, r);
    passive(config, &host, running, r);
    certificate(config, r);
    files(config, r);
    super::state::writable_state(config, r);
    management(config, &host, r);
    limits(config, r);
    r.section("Firewall rules to open");
    r.note(&firewall_rules(config));
}

/// How long a server that already listens may take to answer doctor's probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to reach a server listening on `bind`: the address itself, or loopback for the
/// wildcard addresses (IPv4 loopback too for `[::]`, which takes IPv4 as well).
fn probe_addrs(bind: SocketAddr) -> Vec<SocketAddr> {
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
enum Occupant {
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
fn occupant(config: &Config, l: &ListenerConfig) -> Occupant {
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
fn listeners(config: &Config, host: &Host, r: &mut Report) -> bool {
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

fn bind_failure(
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

fn passive(config: &Config, host: &Host, running: bool, r: &mut Report) {
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
fn outbound_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

fn is_local(ip: Ipv4Addr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

fn passive_address(config: &Config, any_exposed: bool, r: &mut Report) {
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

fn certificate(config: &Config, r: &mut Report) {
    r.section("TLS certificate");
    if !config.listeners.iter().any(|l| l.mode.offers_tls()) {
        r.add(Check::new(
            Level::Ok,
            "no listener offers TLS: no certificate needed",
        ));
        return;
    }
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        r.add(
            Check::new(
                Level::Warn,
                "no tls.cert / tls.key: a self-signed certificate is generated at each start; clients will not trust it (and it changes at every restart)",
            )
            .fix("a certificate from your CA (e.g. Let's Encrypt) in tls.cert and tls.key; for development: ferroftp cert --self-signed --host NAME --out DIR"),
        );
        return;
    };
    key_permissions(key, r);
    let loaded = match tls::load_pair(cert, key) {
        Ok(loaded) => loaded,
        Err(e) => {
            let fix = match &e {
                TlsError::Validity { .. } => {
                    "renew the certificate (ferroftp picks up new files without a restart)"
                }
                TlsError::Mismatch { .. } => {
                    "tls.key must be the private key of the certificate in tls.cert (check that both files come from the same issuance)"
                }
                TlsError::Read { .. } => {
                    "check the path, and that the service's user may read the file"
                }
                _ => "tls.cert: PEM certificates, leaf first; tls.key: its PEM private key",
            };
            r.add(Check::new(Level::Fail, format!("{e}")).fix(fix));
            return;
        }
    };
    let left = loaded
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let days = left.as_secs() / 86400;
    let summary = format!(
        "certificate {}: for {}; expires {} (in {days} days); SHA-256 {}",
        cert.display(),
        loaded.names.join(", "),
        tls::http_date(loaded.not_after),
        loaded.fingerprint
    );
    if days < EXPIRY_WARNING_DAYS {
        r.add(
            Check::new(
                Level::Warn,
                format!("{summary}: expires in less than {EXPIRY_WARNING_DAYS} days"),
            )
            .fix("renew it (ferroftp picks up new files without a restart)"),
        );
    } else {
        r.add(Check::new(Level::Ok, summary));
    }
    if let Some(leaf) = loaded.key.cert.first() {
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
            if parsed.issuer().as_raw() == parsed.subject().as_raw() {
                r.add(
                    Check::new(
                        Level::Warn,
                        format!(
                            "certificate {} is self-signed: clients refuse it unless given it (curl --cacert, ferroftp doctor --ca) or told to skip verification",
                            cert.display()
                        ),
                    )
                    .fix("fine for testing; for real clients use a certificate from a CA they trust"),
                );
            }
        }
    }
    if let Some(name) = &config.passive.address {
        if name.parse::<IpAddr>().is_err() && !loaded.names.iter().any(|n| name_matches(n, name)) {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "certificate {} is not for {name:?} (passive.address), the name clients probably use; it is for {}",
                        cert.display(),
                        loaded.names.join(", ")
                    ),
                )
                .fix(format!("get a certificate that names {name}")),
            );
        }
    }
    if config.tls.client_ca.is_some() {
        match Tls::new(&config.tls) {
            Ok(_) => r.add(Check::new(Level::Ok, "tls.client_ca loads")),
            Err(e) => r.add(Check::new(Level::Fail, format!("{e}")).fix(
                "tls.client_ca: a PEM file with the CA certificates that sign client certificates",
            )),
        }
    }
}

/// A certificate name (possibly `*.example.org`) against a host name, case-insensitively.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(base) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == base),
        None => pattern == name,
    }
}

fn key_permissions(key: &Path, r: &mut Report) {
    // load_pair says why the file cannot be read.
    let _ = secret_file_mode(
        key,
        "key",
        "the private key",
        "replace the server's identity",
        Recipe::RootGroup,
        r,
    );
}

/// The name of user or group `id` in `/etc/passwd` or `/etc/group` (`name:x:id:...`), or the
/// number when it has none there (NSS-only names are not looked up: no libc call).
fn id_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// What a mode lets others than the owner do to a secret file: the level and the words.
/// Owner-only (0600, the README's users file: ferroftp:ferroftp) and group-readable (0640,
/// its config and TLS key: root:ferroftp, so the service reads them through its group) are fine; group-writable and world-readable are not;
/// world-writable fails. `group` names the file's group; `secret` is what reading reveals,
/// `change` what changing it allows.
fn mode_verdict(mode: u32, group: &str, secret: &str, change: &str) -> (Level, String) {
    let mut level = Level::Ok;
    let mut problems: Vec<String> = Vec::new();
    if mode & 0o002 != 0 {
        level = Level::Fail;
        problems.push(format!("every local user can change it (and so {change})"));
    } else if mode & 0o020 != 0 {
        level = Level::Warn;
        problems.push(format!(
            "members of group {group} can change it (and so {change})"
        ));
    }
    if mode & 0o004 != 0 {
        level = level.max(Level::Warn);
        problems.push(format!("every local user can read {secret}"));
    }
    if !problems.is_empty() {
        return (level, problems.join("; "));
    }
    let text = if mode & 0o040 != 0 {
        format!("readable by its owner and group {group} only (fine)")
    } else {
        "only its owner can read it".to_owned()
    };
    (Level::Ok, text)
}

/// Who should own a secret file, as README's table in "Running on ports 21 and 990" gives it
/// for that file: the fix doctor suggests.
#[derive(Clone, Copy)]
enum Recipe {
    /// The service's own, 0600: the users file (which the server rewrites) and the admin token.
    ServiceOwned,
    /// Root's, read by the service through its group, 0640: the TLS key (and the config).
    RootGroup,
}

impl Recipe {
    /// The commands that give `p` this recipe's owner and mode, and the alternative.
    fn fix(self, what: &str, p: &str) -> String {
        match self {
            Self::ServiceOwned => format!(
                "chown ferroftp:ferroftp {p} && chmod 600 {p} (the README's recipe for the {what}: the service's own)"
            ),
            Self::RootGroup => format!(
                "chown root:ferroftp {p} && chmod 640 {p} (the README's recipe for the {what}: root's, read by the service through its group), or chmod 600 {p} owned by the service's user"
            ),
        }
    }
}

/// OK, WARN or FAIL for the mode of a file that only the service should read: `what` names
/// it, `secret` says what others could read and `change` what changing it allows (see
/// [`mode_verdict`]); a fix names `recipe`. An error (the file cannot be read) is the caller's
/// to report.
fn secret_file_mode(
    path: &Path,
    what: &str,
    secret: &str,
    change: &str,
    recipe: Recipe,
    r: &mut Report,
) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let (owner, group) = (
        id_name("/etc/passwd", meta.uid()),
        id_name("/etc/group", meta.gid()),
    );
    let (level, verdict) = mode_verdict(mode, &group, secret, change);
    let text = format!(
        "{what} {} has mode {mode:04o} (owner {owner}, group {group}): {verdict}",
        path.display()
    );
    let mut check = Check::new(level, text);
    if level != Level::Ok {
        check = check.fix(recipe.fix(what, &path.display().to_string()));
    }
    r.add(check);
    Ok(())
}

/// Whether a ferroftp admin API (`admin`) or metrics endpoint answers on `addr`: its
/// OpenAPI document (served without the token) or metrics named `ferroftp_`.
fn http_is_ferroftp(bind: SocketAddr, admin: bool) -> bool {
    let (path, marker) = if admin {
        ("/api/v1/openapi.json", "ferroftp admin API")
    } else {
        ("/metrics", "ferroftp_")
    };
    probe_addrs(bind).into_iter().any(|addr| {
        let answer = (|| -> io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            s.set_write_timeout(Some(PROBE_TIMEOUT))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut body = Vec::new();
            s.take(1 << 20).read_to_end(&mut body)?;
            Ok(String::from_utf8_lossy(&body).into_owned())
        })();
        answer.is_ok_and(|a| a.starts_with("HTTP/1.1 200") && a.contains(marker))
    })
}

/// The admin API and the metrics listener: each can be bound, and neither is open to the
/// network without the administrator having asked for it.
fn management(config: &Config, host: &Host, r: &mut Report) {
    if config.admin.listen.is_none() && config.metrics.listen.is_none() {
        return;
    }
    r.section("Admin API and metrics");
    for (what, addr) in [
        ("admin API (admin.listen)", config.admin.listen),
        ("metrics (metrics.listen)", config.metrics.listen),
    ] {
        let Some(addr) = addr else { continue };
        let admin = what.starts_with("admin");
        match TcpListener::bind(addr) {
            Ok(_) => r.add(Check::new(
                Level::Ok,
                format!("{what} {addr}: the port can be bound"),
            )),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && http_is_ferroftp(addr, admin) => {
                r.add(Check::new(
                    Level::Ok,
                    format!(
                        "{what} {addr}: the port is in use by a running ferroftp (it answered {})",
                        if admin {
                            "GET /api/v1/openapi.json"
                        } else {
                            "GET /metrics"
                        }
                    ),
                ));
            }
            Err(e) => r.add(bind_failure(
                &format!("{what} {addr}"),
                if admin {
                    "admin.listen / --admin-listen"
                } else {
                    "metrics.listen / --metrics-listen"
                },
                addr,
                &e,
                &[],
                host,
            )),
        }
        if !addr.ip().is_loopback() {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "{what} {addr} is not on loopback: it is plain HTTP, so {} cross the network in clear",
                        if admin {
                            "the bearer token and every answer"
                        } else {
                            "the metrics (without any authentication)"
                        }
                    ),
                )
                .fix(format!(
                    "listen on 127.0.0.1 and reach it through SSH (ssh -L {port}:127.0.0.1:{port} host) or a TLS proxy, or allow only the management network in the firewall",
                    port = addr.port()
                )),
            );
        }
    }
    if let (Some(_), Some(token)) = (config.admin.listen, config.admin.token_file.as_ref()) {
        if let Err(e) = secret_file_mode(
            token,
            "admin token",
            "the token, which grants everything the admin API can do",
            "set a token of their own at the next reload",
            Recipe::ServiceOwned,
            r,
        ) {
            r.add(
                Check::new(
                    Level::Fail,
                    format!(
                        "admin token {}: {e}: the server will not start",
                        token.display()
                    ),
                )
                .fix("create it: umask 077; openssl rand -hex 32 > FILE (admin.token_file)"),
            );
        }
    }
}

fn files(config: &Config, r: &mut Report) {
    r.section("Files and directories");
    let root = &config.root;
    let root_ok = match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => {
            r.add(
                Check::new(
                    Level::Fail,
                    format!("root {} is not a directory", root.display()),
                )
                .fix("root (or --root) must name a directory"),
            );
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && *root == Config::default().root => {
            r.add(Check::new(
                Level::Warn,
                format!(
                    "root {} does not exist yet: serve creates this default at start",
                    root.display()
                ),
            ));
            false
        }
        Err(e) => {
            r.add(
                Check::new(Level::Fail, format!("root {}: {e}", root.display()))
                    .fix("create it (mkdir -p), or set root / --root to the directory to serve"),
            );
            false
        }
    };
    // Homes as the server computes them: from the absolute root, with `..` resolved.
    let abs_root = std::path::absolute(root).unwrap_or_else(|_| root.clone());
    let outside_ok = config.auth.allow_homes_outside_root;
    let mut homes: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut add_home = |path: PathBuf, who: String| match homes.iter_mut().find(|(p, _)| *p == path)
    {
        Some((_, names)) => names.push(who),
        None => homes.push((path, vec![who])),
    };
    match &config.users_file {
        None => r.add(
            Check::new(
                Level::Warn,
                "no users_file: serve makes one user, ferro, with a new random password at each start",
            )
            .fix("ferroftp passwd --users /var/lib/ferroftp/users.toml NAME, then users_file = that file"),
        ),
        Some(path) => {
            // UserDb::load says why the file cannot be read.
            let _ = secret_file_mode(
                path,
                "users file",
                "the password hashes (and try to crack them offline)",
                "add themselves as users",
                Recipe::ServiceOwned,
                r,
            );
            match UserDb::load(path) {
                Ok(db) => {
                    let disabled = db.users().filter(|u| u.disabled).count();
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "users file {}: {} user{} ({disabled} disabled)",
                            path.display(),
                            db.len(),
                            if db.len() == 1 { "" } else { "s" }
                        ),
                    ));
                    // What serve checks at start: homes under the root, anonymous apart.
                    if let Err(why) = crate::server::check_user_homes(config, &db) {
                        r.add(Check::new(Level::Fail, format!("{why}: serve refuses to start")).fix(
                            "give the home relative to the root (or under it), or set auth.allow_homes_outside_root = true for absolute homes elsewhere; give anonymous.home a directory of its own",
                        ));
                    }
                    // The directory the server uses, as it computes it (`a/../b` is root/b);
                    // a home it refuses was reported just above.
                    for user in db.users().filter(|u| !u.disabled) {
                        if let Ok(home) = crate::auth::resolve_home(&abs_root, user.home.as_deref(), outside_ok) {
                            add_home(home, format!("user {}", user.name));
                        }
                    }
                }
                Err(e) => {
                    let fix = if matches!(e, AuthError::Read { .. }) {
                        "check the path, and that the service's user may read the file"
                    } else {
                        "fix the users file (ferroftp passwd rewrites entries safely)"
                    };
                    r.add(Check::new(Level::Fail, format!("{e}")).fix(fix));
                }
            }
        }
    }
    if config.users_file.is_none() {
        add_home(abs_root.clone(), "the generated user".into());
    }
    if config.anonymous.enabled {
        let anon = &config.anonymous;
        if let Ok(home) = crate::auth::resolve_home(&abs_root, Some(&anon.home), outside_ok) {
            add_home(home, "anonymous".into());
        }
        let writes: Vec<&str> = anon
            .permissions
            .iter()
            .filter(|p| !matches!(p, Permission::List | Permission::Read))
            .map(|p| p.name())
            .collect();
        if !writes.is_empty() {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "anonymous logins are on and may {}: anyone can change files",
                        writes.join(", ")
                    ),
                )
                .fix("anonymous.permissions = [\"list\", \"read\"] unless this is an upload drop on purpose"),
            );
        }
    }
    for (home, who) in homes {
        if home == *root && !root_ok {
            continue;
        }
        let who = who.join(", ");
        match std::fs::metadata(&home) {
            Ok(m) if !m.is_dir() => r.add(
                Check::new(
                    Level::Fail,
                    format!("home {} ({who}) is not a directory: login is refused", home.display()),
                )
                .fix("make it a directory, or change the home (users file `home`, anonymous.home)"),
            ),
            Ok(m) if m.mode() & 0o002 != 0 => r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "home {} ({who}) is world-writable (mode {:04o}): any local user can change what is served",
                        home.display(),
                        m.mode() & 0o7777
                    ),
                )
                .fix(format!("chmod o-w {}", home.display())),
            ),
            Ok(m) => r.add(Check::new(
                Level::Ok,
                format!(
                    "home {} ({who}): directory, mode {:04o}",
                    home.display(),
                    m.mode() & 0o7777
                ),
            )),
            // Missing inside the root: the server creates it at the first login.
            Err(e) if e.kind() == io::ErrorKind::NotFound && home.starts_with(&abs_root) && home != abs_root => {
                if let Some(check) = super::state::missing_home(&abs_root, &home, &who) {
                    r.add(check);
                }
            }
            Err(e) => r.add(
                Check::new(
                    Level::Fail,
                    format!("home {} ({who}): {e}: login is refused (530)", home.display()),
                )
                .fix(format!(
                    "mkdir -p {} (owned by the service's user), or change the home (users file `home`, anonymous.home)",
                    home.display()
                )),
            ),
        }
    }
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

    #[test]
    fn group_readable_is_fine_and_world_readable_or_writable_is_not() {
        let v = |mode| mode_verdict(mode, "ferroftp", "the secret", "do harm");
        assert_eq!(v(0o600).0, Level::Ok);
        assert_eq!(v(0o400).0, Level::Ok);
        let (level, text) = v(0o640);
        assert_eq!(level, Level::Ok);
        assert!(text.contains("group ferroftp"), "{text}");
        let (level, text) = v(0o644);
        assert_eq!(level, Level::Warn);
        assert!(
            text.contains("every local user can read the secret"),
            "{text}"
        );
        let (level, text) = v(0o660);
        assert_eq!(level, Level::Warn);
        assert!(
            text.contains("members of group ferroftp can change it"),
            "{text}"
        );
        let (level, text) = v(0o666);
        assert_eq!(level, Level::Fail);
        assert!(
            text.contains("every local user can change it (and so do harm)")
                && text.contains("every local user can read the secret"),
            "{text}"
        );
    }

    #[test]
    fn certificate_names_match_like_clients_do() {
        assert!(name_matches("ftp.example.org", "FTP.example.org"));
        assert!(name_matches("*.example.org", "ftp.example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("ftp.example.org", "example.org"));
    }
}
