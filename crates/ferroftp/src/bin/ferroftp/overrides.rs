//! The flags `serve` and `doctor` share, put on top of the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use ferroftp::config::{
    Config, ListenerConfig, ListenerMode, LogFormat, PortRange, TlsPolicy, parse_net,
    parse_socket_addr,
};

/// The environment variable that sets passive.address (below --passive-address).
pub(crate) const PASSIVE_ADDRESS_ENV: &str = "FERROFTP_PASSIVE_ADDRESS";

#[derive(Args, Debug, Clone)]
pub(crate) struct Overrides {
    /// Directory to serve: the home of users without their own (key `root`; default
    /// ./ftp-root, created if missing; a configured root must exist).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Address to listen on for FTP with AUTH TLS (explicit FTPS); repeat for several (key
    /// listener.bind with mode = "explicit"). With --listen or --implicit-listen, these replace
    /// the config's [[listener]] tables. Default: 127.0.0.1:2121 (loopback only; 0.0.0.0:21 to
    /// serve the network).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    listen: Vec<SocketAddr>,
    /// Address for implicit FTPS (TLS from the first byte; by convention port 990); repeatable
    /// (key listener.bind with mode = "implicit"). Default: none.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    implicit_listen: Vec<SocketAddr>,
    /// No TLS: listeners speak plain FTP only, AUTH TLS is refused (key listener.mode =
    /// "plain" on every listener, and tls_policy = "optional"). Default: TLS offered.
    #[arg(long)]
    no_tls: bool,
    /// TLS certificate chain (PEM, leaf first; key tls.cert). Default: a self-signed
    /// certificate made at each start, which clients will not trust.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM; key tls.key), readable by the server's user only.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Passive (PASV/EPSV) port range, inclusive, e.g. 50000-50100 (key passive.ports). Open
    /// it in the firewall. Default: any free port the OS picks, which a firewall cannot open.
    #[arg(long, value_name = "LOW-HIGH")]
    passive_ports: Option<PortRange>,
    /// Address announced in PASV replies, for servers behind NAT: an IPv4 address or a host
    /// name looked up again every passive.resolve_every_secs (60 s) (key passive.address).
    /// Default: the address the client connected to; also FERROFTP_PASSIVE_ADDRESS. EPSV needs
    /// no address.
    #[arg(long, value_name = "IP|HOSTNAME")]
    passive_address: Option<String>,
    /// Users file (TOML with argon2id, bcrypt or crypt(3) hashes; key users_file); manage it
    /// with `ferroftp passwd` and `ferroftp import-users`. Default: one user for this run,
    /// with a generated password printed at start.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Allow anonymous logins (USER anonymous or ftp), read-only unless [anonymous]
    /// permissions says otherwise (key anonymous.enabled). Default: refused.
    #[arg(long)]
    anonymous: bool,
    /// A network never banned for failed logins, e.g. 10.0.0.0/8; repeatable (key bans.allow;
    /// adds to the file's list).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    ban_allow: Vec<ipnet::IpNet>,
    /// A load balancer network allowed to send PROXY protocol headers; repeatable (key
    /// proxy.trusted, added to the file's list). Turns the PROXY protocol on for every listener
    /// (key listener.proxy_protocol).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    proxy_protocol_from: Vec<ipnet::IpNet>,
    /// Log format on stderr: text for people, json (one object per line) for collectors
    /// (key log.format); with json the start-up lines on stdout (generated password,
    /// addresses) are JSON objects too. Default: text.
    #[arg(long, value_name = "text|json")]
    log_format: Option<LogFormatArg>,
    /// Serve Prometheus metrics (GET /metrics) over plain HTTP on this address, e.g.
    /// 127.0.0.1:9021 (key metrics.listen). Default: off.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    metrics_listen: Option<SocketAddr>,
    /// Serve the admin HTTP API on this address (loopback unless admin.allow_remote), e.g.
    /// 127.0.0.1:9022 (key admin.listen); needs --admin-token-file (or admin.token_file).
    /// Default: off.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    admin_listen: Option<SocketAddr>,
    /// The file holding the admin API's bearer token, mode 0600 (key admin.token_file).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

/// The configuration file (or the defaults) with the flags on top, validated.
pub(crate) fn effective_config(file: Option<&Path>, o: Overrides) -> anyhow::Result<Config> {
    let mut config = match file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(root) = o.root {
        config.root = root;
    }
    if !o.listen.is_empty() || !o.implicit_listen.is_empty() {
        let mode = if o.no_tls {
            ListenerMode::Plain
        } else {
            ListenerMode::Explicit
        };
        config.listeners = o
            .listen
            .into_iter()
            .map(|bind| ListenerConfig::new(bind, mode))
            .chain(
                o.implicit_listen
                    .into_iter()
                    .map(|bind| ListenerConfig::new(bind, ListenerMode::Implicit)),
            )
            .collect();
    } else if o.no_tls {
        for l in &mut config.listeners {
            l.mode = ListenerMode::Plain;
            l.tls_policy = TlsPolicy::Optional;
        }
    }
    if o.no_tls
        && config
            .listeners
            .iter()
            .any(|l| l.mode == ListenerMode::Implicit)
    {
        bail!("--no-tls cannot be combined with implicit FTPS listeners");
    }
    if let (Some(cert), Some(key)) = (o.tls_cert, o.tls_key) {
        config.tls.cert = Some(cert);
        config.tls.key = Some(key);
    }
    if let Some(ports) = o.passive_ports {
        config.passive.ports = Some(ports);
    }
    // Flag, then environment (containers), then the file. Not clap's `env`: an environment
    // value would count as a given flag and clash with `doctor --connect`.
    let env_address = std::env::var(PASSIVE_ADDRESS_ENV)
        .ok()
        .filter(|a| !a.trim().is_empty());
    if let Some(addr) = o.passive_address.or(env_address) {
        config.passive.address = Some(addr);
    }
    if let Some(users) = o.users {
        config.users_file = Some(users);
    }
    if o.anonymous {
        config.anonymous.enabled = true;
    }
    config.bans.allow.extend(o.ban_allow);
    if !o.proxy_protocol_from.is_empty() {
        config.proxy.trusted.extend(o.proxy_protocol_from);
        for l in &mut config.listeners {
            l.proxy_protocol = true;
        }
    }
    match o.log_format {
        Some(LogFormatArg::Text) => config.log.format = LogFormat::Text,
        Some(LogFormatArg::Json) => config.log.format = LogFormat::Json,
        None => {}
    }
    if let Some(addr) = o.metrics_listen {
        config.metrics.listen = Some(addr);
    }
    if let Some(addr) = o.admin_listen {
        config.admin.listen = Some(addr);
    }
    if let Some(file) = o.admin_token_file {
        config.admin.token_file = Some(file);
    }
    config.validate()?;
    Ok(config)
}
