//! The `ferroftp` command: serve, manage users, check a configuration.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ferroftp::auth::{self, HashParams, User, UserDb};
use ferroftp::config::{
    Config, ListenerConfig, ListenerMode, LogFormat, PortRange, TlsPolicy, parse_net,
    parse_socket_addr,
};
use ferroftp::tls::{self, Tls};
use ferroftp::{Server, observe};

/// What the options do not say, as (section, [(term, text)]): the end of `ferroftp --help` and
/// sections of ferroftp(1).
const EXTRA_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "FILES",
        &[
            (
                "/etc/ferroftp/ferroftp.toml",
                "The configuration (serve -c, check-config -c). ferroftp.toml(5) documents every key with its default; ferroftp config --example prints the same as an annotated file to start from.",
            ),
            (
                "users file (key users_file)",
                "TOML with argon2id hashes (bcrypt and crypt(3) ones moved from other servers are accepted), written by ferroftp passwd, ferroftp import-users, ferroftp user and the admin API (each keeps its owner, group and mode); under systemd /var/lib/ferroftp/users.toml, as the server rewrites it.",
            ),
        ],
    ),
    (
        "SIGNALS",
        &[
            (
                "SIGHUP",
                "Reload the configuration, the users file and the certificates without dropping sessions; a configuration that does not load is refused whole and the old one stays.",
            ),
            (
                "SIGTERM, SIGINT",
                "Stop accepting, close idle sessions, let transfers finish for up to limits.shutdown_grace_secs (30 s), then stop.",
            ),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            (
                "RUST_LOG",
                "Log filter, overriding log.level: info, debug, ferroftp=debug,warn, ...",
            ),
            ("NO_COLOR", "No colours in the text log."),
            (
                PASSIVE_ADDRESS_ENV,
                "The address PASV announces (passive.address), for containers; --passive-address wins over it, and it over the configuration file.",
            ),
        ],
    ),
    (
        "EXIT STATUS",
        &[
            ("0", "Success."),
            (
                "1",
                "An error (serve: a configuration, users file, certificate or address that does not load or bind), or a doctor check that FAILed.",
            ),
        ],
    ),
];

/// The environment variable that sets passive.address (below --passive-address).
const PASSIVE_ADDRESS_ENV: &str = "FERROFTP_PASSIVE_ADDRESS";

/// [`EXTRA_SECTIONS`] as plain text for `--help`.
fn extra_help() -> String {
    let mut out = String::new();
    for (title, items) in EXTRA_SECTIONS {
        out.push_str(&format!("{title}:\n"));
        for (term, text) in *items {
            out.push_str(&format!("  {term}\n      {text}\n"));
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// Text for roff: hyphens as \- (so that man does not break or convert them), backslashes
/// escaped, and a line never starts as a request.
fn roff(text: &str) -> String {
    format!("\\&{}", text.replace('\\', "\\e").replace('-', "\\-"))
}

/// [`EXTRA_SECTIONS`] as man(7) sections.
fn extra_roff() -> String {
    let mut out = String::new();
    for (title, items) in EXTRA_SECTIONS {
        out.push_str(&format!(".SH \"{title}\"\n"));
        for (term, text) in *items {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)));
        }
    }
    out
}

/// A secure, fast FTP server.
#[derive(Parser, Debug)]
#[command(name = "ferroftp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server. With no options: serves ./ftp-root on 127.0.0.1:2121 with a generated user.
    Serve(Box<ServeArgs>),
    /// Add a user to a users file, or change a user's password (read from the terminal or stdin).
    Passwd(PasswdArgs),
    /// List, show, change, disable, enable or delete users in a users file.
    #[command(subcommand)]
    User(UserCmd),
    /// Add accounts from ProFTPD, Pure-FTPd or /etc/passwd+/etc/shadow to a users file,
    /// keeping their password hashes and homes.
    ImportUsers(ImportArgs),
    /// Validate a configuration file as `serve` does before it binds (root, users file,
    /// certificates, admin token) and print the effective configuration.
    CheckConfig(CheckArgs),
    /// Print the annotated example configuration: every key with its default and meaning.
    Config(ConfigArgs),
    /// Make a TLS certificate and key for development.
    Cert(CertArgs),
    /// Check a configuration against this host (ports, passive range and address, certificate,
    /// permissions) and print the firewall rules it needs; with --connect, test a running server
    /// as a client. Changes nothing; exits 1 when a check FAILs.
    Doctor(Box<DoctorArgs>),
    /// Write man pages generated from this command line: ferroftp.1 and one page per
    /// subcommand (ferroftp-serve.1, ...), and the configuration reference ferroftp.toml.5
    /// (from the annotated example that `ferroftp config --example` prints).
    Man(ManArgs),
}

#[derive(Args, Debug)]
struct ManArgs {
    /// Directory to write the pages into (created if missing), e.g. /usr/local/share/man/man1.
    /// ferroftp.toml.5 goes into the man5 directory beside a directory named man1, else into
    /// DIR too.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Configuration file (TOML); `ferroftp config --example` prints every key with its
    /// default, and ferroftp.toml(5) documents them. Flags override it (no config key: this is
    /// the file). Default: none (the built-in defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args, Debug, Clone)]
struct Overrides {
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

/// The configuration the user commands check homes against when no `-c` is given and it
/// exists: the one the packaged service runs with.
const DEFAULT_CONFIG: &str = "/etc/ferroftp/ferroftp.toml";

/// How `passwd`, `user set` and `import-users` check a home before they write it, so that a
/// running server does not refuse the users file at its next reload.
#[derive(Args, Debug, Clone)]
struct HomeCheckArgs {
    /// The server's configuration file: each home written is checked against its root,
    /// auth.allow_homes_outside_root and anonymous.home, as the server checks the users file
    /// at start and reload. Default: /etc/ferroftp/ferroftp.toml if it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// With no configuration (no -c, no /etc/ferroftp/ferroftp.toml): accept an absolute home,
    /// which cannot be checked without the server's root. The server refuses it unless it is
    /// under its root or auth.allow_homes_outside_root = true.
    #[arg(long, conflicts_with = "config")]
    allow_home_outside_root: bool,
}

#[derive(Args, Debug)]
struct PasswdArgs {
    /// The users file to change (created if missing).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
    /// The user's home directory: relative to the server root, which it must not climb out
    /// of; or absolute, under the root unless auth.allow_homes_outside_root = true. Checked
    /// against the configuration (-c); without one, an absolute home needs
    /// --allow-home-outside-root.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// argon2id memory cost in KiB.
    #[arg(long, value_name = "KIB", default_value_t = HashParams::default().memory_kib)]
    argon2_memory: u32,
    /// argon2id iterations.
    #[arg(long, value_name = "N", default_value_t = HashParams::default().iterations)]
    argon2_iterations: u32,
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// List the users: name, home, permissions, TLS policy, hash scheme, disabled.
    List(UsersFileArg),
    /// Show one user (never the password hash).
    Show(UserNameArgs),
    /// Change a user: home, permissions, TLS policy, or (--password) the password, read from
    /// the terminal or stdin as passwd does.
    Set(UserSetArgs),
    /// Disable a user: it cannot log in; a running server logs its sessions out at the next
    /// reload.
    Disable(UserNameArgs),
    /// Enable a disabled user.
    Enable(UserNameArgs),
    /// Delete a user from the users file; a running server logs its sessions out at the next
    /// reload.
    Delete(UserNameArgs),
}

#[derive(Args, Debug)]
struct UsersFileArg {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
}

#[derive(Args, Debug)]
struct UserNameArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["home", "permissions", "tls_policy", "password"])))]
struct UserSetArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
    /// The home directory: relative to the server root, which it must not climb out of; or
    /// absolute, under the root unless auth.allow_homes_outside_root = true. Checked against
    /// the configuration (-c); without one, an absolute home needs --allow-home-outside-root.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// What the user may do: all, none, or names separated by commas from list, read, write,
    /// append, delete, rename, mkdir, rmdir.
    #[arg(long, value_name = "LIST")]
    permissions: Option<auth::Permissions>,
    /// How much TLS the user must use.
    #[arg(long, value_name = "POLICY")]
    tls_policy: Option<TlsPolicyArg>,
    /// Set a new password, read from the terminal (twice) or one line of stdin.
    #[arg(long)]
    password: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TlsPolicyArg {
    /// TLS if the client asks for it.
    Optional,
    /// USER and PASS only over TLS.
    Login,
    /// Login over TLS, and every data connection protected (PROT P).
    LoginAndData,
}

impl From<TlsPolicyArg> for TlsPolicy {
    fn from(p: TlsPolicyArg) -> Self {
        match p {
            TlsPolicyArg::Optional => TlsPolicy::Optional,
            TlsPolicyArg::Login => TlsPolicy::Login,
            TlsPolicyArg::LoginAndData => TlsPolicy::LoginAndData,
        }
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["proftpd", "pureftpd", "system"])))]
struct ImportArgs {
    /// The users file to add the accounts to (created if missing); accounts already in it are
    /// updated (password, home, disabled), everything else in it is kept.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// Read a ProFTPD AuthUserFile (user:hash:uid:gid:gecos:home:shell).
    #[arg(long, value_name = "AUTHUSERFILE")]
    proftpd: Option<PathBuf>,
    /// Read a Pure-FTPd pureftpd.passwd (as pure-pw writes it).
    #[arg(long, value_name = "PUREFTPD.PASSWD")]
    pureftpd: Option<PathBuf>,
    /// Read the system's accounts: homes from --passwd, hashes from --shadow. Only the users
    /// named on the command line.
    #[arg(long)]
    system: bool,
    /// The passwd file for --system.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/passwd",
        requires = "system"
    )]
    passwd: PathBuf,
    /// The shadow file for --system.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/shadow",
        requires = "system"
    )]
    shadow: PathBuf,
    /// Put each home at DIR/NAME instead of the home the source file gives (for data moved
    /// to a new place). DIR may be relative to the server root, which it must not climb out
    /// of. Every home is checked (-c) before anything is written.
    #[arg(long, value_name = "DIR")]
    home_root: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// Import only these users (required with --system); without names, every account of the
    /// file.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
struct CertArgs {
    /// Make a self-signed certificate (the only kind on offer).
    #[arg(long, required = true)]
    self_signed: bool,
    /// Host name or IP address the certificate is for; repeat for several.
    #[arg(long, value_name = "NAME", required = true)]
    host: Vec<String>,
    /// Directory to write cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days of validity.
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u32,
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// Configuration file (TOML) to check, as for `serve`; the same flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Instead of checking a configuration, log in to a running server and try a listing over
    /// PASV and EPSV and an upload/download round trip, plain and with TLS. The password is read
    /// from stdin.
    #[arg(long, value_name = "HOST:PORT", requires = "user", conflicts_with_all = ["config", "Overrides"])]
    connect: Option<String>,
    /// The user to log in as (with --connect).
    #[arg(long, value_name = "NAME", requires = "connect")]
    user: Option<String>,
    /// Test FTPS only: AUTH TLS is required (with --connect).
    #[arg(long, requires = "connect", conflicts_with = "implicit")]
    tls: bool,
    /// Implicit FTPS: TLS from the first byte (with --connect).
    #[arg(long, requires = "connect")]
    implicit: bool,
    /// Do not verify the server's certificate (with --connect).
    #[arg(long, requires = "connect", conflicts_with = "ca")]
    insecure: bool,
    /// Verify the server's certificate against these CA certificates (PEM; the server's own
    /// certificate for a self-signed one) instead of the system's (with --connect).
    #[arg(long, value_name = "FILE", requires = "connect")]
    ca: Option<PathBuf>,
    /// Seconds each step (connect, a reply, a data connection) may take (with --connect).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "config"])))]
struct CheckArgs {
    /// The configuration file to check.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The configuration file to check, as for `serve` and `doctor`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// Print the annotated example configuration (ferroftp.example.toml): every key, its
    /// default and what it does. Save it as a starting point and check it with check-config.
    #[arg(long, required = true)]
    example: bool,
}

fn main() -> ExitCode {
    let matches = Cli::command().after_long_help(extra_help()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Cmd::Doctor(args) => return doctor(*args),
        Cmd::Serve(args) => serve(*args),
        Cmd::Passwd(args) => passwd(args),
        Cmd::User(cmd) => user(cmd),
        Cmd::ImportUsers(args) => import_users(args),
        Cmd::CheckConfig(args) => match args.file.or(args.config) {
            Some(file) => check_config(&file),
            None => Err(anyhow::anyhow!("check-config needs a FILE (or -c FILE)")),
        },
        Cmd::Config(args) => {
            debug_assert!(args.example);
            print!("{}", ferroftp::config::EXAMPLE);
            Ok(())
        }
        Cmd::Cert(args) => cert(args),
        Cmd::Man(args) => man(&args.out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferroftp: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn effective_config(file: Option<&Path>, o: Overrides) -> anyhow::Result<Config> {
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

/// What `serve` needs before it binds, made by [`preflight`].
struct Preflight {
    /// The users file's accounts; `None` without a users file.
    users: Option<UserDb>,
    /// The certificate (loaded or generated) when a listener offers TLS.
    tls: Option<Arc<Tls>>,
}

/// Everything `serve` checks before it binds, shared with `check-config` so that a file
/// check-config calls valid starts: the root exists (or is the default one, which can be
/// created), the users file loads, the homes of its users and of anonymous logins are where
/// the server accepts them (`server::check_homes`, which serve runs again as it binds), the
/// certificates load, the admin token file is usable. `check_only` creates nothing. (The config itself, listener addresses included, is checked
/// when it is loaded.)
fn preflight(config: &Config, check_only: bool) -> anyhow::Result<Preflight> {
    prepare_root(&config.root, !check_only)?;
    let users = match &config.users_file {
        Some(path) => Some(UserDb::load(path)?),
        None => None,
    };
    ferroftp::server::check_homes(config, users.as_ref().unwrap_or(&UserDb::empty()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let tls = start_tls(config)?;
    if let (Some(_), Some(token)) = (config.admin.listen, &config.admin.token_file) {
        ferroftp::server::check_admin_token(token).context("key admin.token_file")?;
    }
    Ok(Preflight { users, tls })
}

/// Start-up lines on stdout (the generated password, the addresses): plain text, or one JSON
/// object a line with `--log-format json`, so that a collector reading stdout gets JSON only.
struct Announce {
    json: bool,
}

impl Announce {
    /// Print `text`, or `fields` (with `"event": event`) as JSON.
    fn say(&self, text: &str, event: &str, fields: serde_json::Value) {
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("event".into(), event.into());
            if let serde_json::Value::Object(fields) = fields {
                object.extend(fields);
            }
            println!("{}", serde_json::Value::Object(object));
        } else {
            println!("{text}");
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(args.config.as_deref(), args.overrides.clone())?;
    observe::init(&config.log);
    let say = Announce {
        json: config.log.format == LogFormat::Json,
    };
    let Preflight { users, tls } = preflight(&config, false)?;
    let users = match users {
        Some(users) => users,
        None => {
            let password = auth::generate_password();
            let hash = auth::hash_password(&password, HashParams::default())?;
            say.say(
                &format!(
                    "ferroftp: no users file given; this run has one user:\nferroftp:   user: ferro   password: {password}"
                ),
                "generated_user",
                serde_json::json!({ "user": "ferro", "password": password }),
            );
            UserDb::empty().with_user(User::new("ferro"), hash)
        }
    };
    if let Some(tls) = tls.as_ref().filter(|t| t.is_generated()) {
        let fingerprint = tls.current().fingerprint;
        say.say(
            &format!(
                "ferroftp: no TLS certificate configured: using a self-signed one made for this run (SHA-256 {fingerprint})"
            ),
            "self_signed_certificate",
            serde_json::json!({ "sha256": fingerprint }),
        );
    }
    let open_files = raise_open_files_limit();
    let needed = config.limits.max_sessions.saturating_mul(4) as u64 + 64;
    if open_files.is_some_and(|n| n < needed) {
        tracing::warn!(
            open_files,
            max_sessions = config.limits.max_sessions,
            "the open-files limit may be too low for limits.max_sessions (each session can hold 4); raise it (ulimit -n, LimitNOFILE=) or lower max_sessions"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A reload reads the same sources again: the config file with these flags on top, and
    // the users file (or keeps this run's generated user).
    let generated = config.users_file.is_none().then(|| users.clone());
    let (file, overrides) = (args.config.clone(), args.overrides.clone());
    let load = move || -> anyhow::Result<(Config, UserDb)> {
        let config = effective_config(file.as_deref(), overrides.clone())?;
        let users = match (&config.users_file, &generated) {
            (Some(path), _) => UserDb::load(path)?,
            (None, Some(users)) => users.clone(),
            (None, None) => UserDb::empty(),
        };
        Ok((config, users))
    };
    // The library takes the explanation as one text: the causes flattened as `{:#}` shows
    // them, as a refused reload has always reported them.
    let loader: ferroftp::server::Loader =
        Box::new(move || load().map_err(|e| format!("{e:#}").into()));
    runtime.block_on(async move {
        // Before anything says "listening": a SIGHUP must never find the default action
        // (which would end the process).
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let server = Server::bind(config.clone(), users, tls.clone())
            .await?
            .with_loader(loader);
        if let Some(addr) = server.metrics_addr() {
            let url = format!("http://{addr}/metrics");
            say.say(
                &format!("ferroftp: metrics on {url}"),
                "metrics",
                serde_json::json!({ "address": addr.to_string(), "url": url }),
            );
            tracing::info!(%addr, "serving metrics at /metrics");
        }
        if let Some(addr) = server.admin_addr() {
            let url = format!("http://{addr}/api/v1/");
            say.say(
                &format!("ferroftp: admin API on {url}"),
                "admin_api",
                serde_json::json!({ "address": addr.to_string(), "url": url }),
            );
            tracing::info!(%addr, "serving the admin API");
        }
        for (addr, l) in server.local_addrs().iter().zip(&config.listeners) {
            say.say(
                &format!("ferroftp: listening on {addr} ({})", l.mode.describe()),
                "listening",
                serde_json::json!({
                    "address": addr.to_string(),
                    "mode": l.mode.as_str(),
                    "tls_policy": l.tls_policy.as_str(),
                }),
            );
            tracing::info!(%addr, mode = %l.mode, tls_policy = %l.tls_policy, root = %config.root.display(), "listening");
        }
        match hup {
            Ok(hup) => {
                tokio::spawn(reload_on_sighup(hup, server.reload_handle()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP: no reloads on signal"),
        }
        server
            .run(shutdown_signal(), config.limits.shutdown_grace())
            .await;
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Raise the soft limit on open files to the hard limit: each session may hold a control
/// connection, a passive listener, a data connection and a file.
/// Returns the limit in force (`None`: unlimited).
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    let target = limit.maximum.unwrap_or(1 << 20);
    if target <= soft {
        tracing::info!(open_files = soft, "open-files limit");
        return Some(soft);
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    ) {
        Ok(()) => {
            tracing::info!(from = soft, to = target, "raised the open-files limit");
            Some(target)
        }
        Err(e) => {
            tracing::warn!(soft, error = %e, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

/// Load the certificate (or make a self-signed one) when a listener offers TLS.
fn start_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    if !config.listeners.iter().any(|l| l.mode.offers_tls()) {
        return Ok(None);
    }
    let tls = Tls::new(&config.tls).context("cannot set up TLS")?;
    // kTLS would let the kernel encrypt (and sendfile) TLS data; it needs the kernel's "tls"
    // ULP. Not used yet: say which path TLS data takes.
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    if ulps.split_whitespace().any(|u| u == "tls") {
        tracing::info!(
            "kernel TLS (kTLS) is available but not used: TLS data is encrypted by rustls in user space"
        );
    } else {
        tracing::info!(
            "kernel TLS (kTLS) is not available (no \"tls\" in /proc/sys/net/ipv4/tcp_available_ulp): TLS data is encrypted by rustls in user space"
        );
    }
    let cert = tls.current();
    if tls.is_generated() {
        tracing::warn!(
            fingerprint = %cert.fingerprint,
            "no TLS certificate configured (tls.cert / --tls-cert): serving FTPS with a self-signed certificate generated for this run; clients will not trust it"
        );
    } else {
        let left = cert
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tracing::info!(
            fingerprint = %cert.fingerprint,
            names = ?cert.names,
            expires = %tls::http_date(cert.not_after),
            "TLS certificate loaded"
        );
        if left < Duration::from_secs(30 * 86400) {
            tracing::warn!(
                expires = %tls::http_date(cert.not_after),
                "the TLS certificate expires in less than 30 days"
            );
        }
    }
    Ok(Some(Arc::new(tls)))
}

/// The default root is created on first run; a configured one must exist (a typo should not
/// silently serve an empty new directory). With `create` false (check-config) a missing
/// default root only needs a directory to be made in.
fn prepare_root(root: &Path, create: bool) -> anyhow::Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    if root == Config::default().root {
        if !create {
            let parent = std::path::absolute(root)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if !parent.is_dir() {
                bail!(
                    "root directory {} does not exist and cannot be created: {} is not a directory (key `root` / --root)",
                    root.display(),
                    parent.display()
                );
            }
            return Ok(());
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the root directory {}", root.display()))?;
        tracing::info!(root = %root.display(), "created the root directory");
        return Ok(());
    }
    bail!(
        "root directory {} does not exist (key `root` / --root)",
        root.display()
    )
}

/// SIGHUP: reload the configuration, the users and the certificates (the server logs how it
/// went).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    handle: ferroftp::server::ReloadHandle,
) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let _ = handle.reload().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

fn passwd(args: PasswdArgs) -> anyhow::Result<()> {
    // Before the password is asked for: a refused home writes nothing.
    check_new_homes(&args.check, &[(&args.name, args.home.as_deref())])?;
    if std::io::stdin().is_terminal() {
        eprintln!("New password for {}:", args.name);
    }
    let password = auth::read_new_password()?;
    let params = HashParams {
        memory_kib: args.argon2_memory,
        iterations: args.argon2_iterations,
        ..HashParams::default()
    };
    let hash = auth::hash_password(&password, params)?;
    let created = auth::upsert_user(&args.users, &args.name, &hash, args.home.as_deref())?;
    let what = if created { "added" } else { "updated" };
    eprintln!(
        "ferroftp: user {} {what} in {}",
        args.name,
        args.users.display()
    );
    home_note(&args.name, args.home.as_deref());
    Ok(())
}

/// The configuration to check homes against: `-c`, else [`DEFAULT_CONFIG`] if it exists.
fn home_check_config(args: &HomeCheckArgs) -> anyhow::Result<Option<(PathBuf, Config)>> {
    let path = match &args.config {
        Some(path) => path.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(None),
    };
    let config = Config::load(&path)
        .with_context(|| format!("cannot check the homes against {}", path.display()))?;
    Ok(Some((path, config)))
}

/// Refuse, before anything is written, a home (user name, home) the server would refuse when
/// it loads the users file (at its next start or reload, which would then fail whole): checked
/// as the server checks it, against the configuration of [`home_check_config`]. Without one,
/// only a relative home (already kept under the root by the users-file edit) passes, or an
/// absolute one with `--allow-home-outside-root`. Every refused home is named.
fn check_new_homes(args: &HomeCheckArgs, homes: &[(&str, Option<&Path>)]) -> anyhow::Result<()> {
    let homes: Vec<(&str, &Path)> = homes
        .iter()
        .filter_map(|(name, home)| home.map(|h| (*name, h)))
        .collect();
    if homes.is_empty() {
        return Ok(());
    }
    let mut refused = Vec::new();
    match home_check_config(args)? {
        Some((path, config)) => {
            for (name, home) in &homes {
                let mut user = User::new(*name);
                user.home = Some(home.to_path_buf());
                let users = UserDb::empty().with_user(user, String::new());
                if let Err(why) = ferroftp::server::check_user_homes(&config, &users) {
                    refused.push(why);
                }
            }
            if !refused.is_empty() {
                bail!(
                    "{}\nthe server would refuse the users file with this (checked against {}); nothing was written",
                    refused.join("\n"),
                    path.display()
                );
            }
        }
        None if args.allow_home_outside_root => {}
        None => {
            for (name, home) in homes.iter().filter(|(_, h)| h.is_absolute()) {
                refused.push(format!(
                    "user {name:?}: home {}: an absolute home can only be checked against the server's root, and there is no configuration to read it from",
                    home.display()
                ));
            }
            if !refused.is_empty() {
                bail!(
                    "{}\ngive the server's configuration with -c FILE ({DEFAULT_CONFIG} does not exist), or a home relative to the server's root, or --allow-home-outside-root if the home is under the root or the server sets auth.allow_homes_outside_root = true (the server refuses the whole users file otherwise); nothing was written",
                    refused.join("\n")
                );
            }
        }
    }
    Ok(())
}

/// What a user added or given a home by a command should know: the command cannot create
/// the home (run as root it would be root's), the server creates a missing one inside its root
/// at the first login.
fn home_note(name: &str, home: Option<&Path>) {
    let text = match home {
        None => return,
        Some(h) if h.is_absolute() && h.is_dir() => return,
        Some(h) if h.is_absolute() => format!(
            "home {} does not exist yet: the server creates it at {name}'s first login (mode 0750, owned by the server's user) when it is under the server's root; a home outside the root (auth.allow_homes_outside_root = true) must be created by you",
            h.display()
        ),
        Some(h) => format!(
            "home {} is relative to the server's root: if missing, the server creates it at {name}'s first login (mode 0750, owned by the server's user)",
            h.display()
        ),
    };
    eprintln!("ferroftp: note: {text}");
}

/// The reminder after a change to a users file that a running server reads at reload.
fn reload_note() {
    eprintln!(
        "ferroftp: a running server puts this in force at its next reload (SIGHUP, systemctl reload ferroftp, or POST /api/v1/reload)"
    );
}

/// `ferroftp user ...`.
fn user(cmd: UserCmd) -> anyhow::Result<()> {
    use auth::{EditMode, UserChange};
    let (users, name, change) = match cmd {
        UserCmd::List(args) => {
            let db = UserDb::load(&args.users)?;
            let mut users: Vec<&User> = db.users().collect();
            users.sort_by(|a, b| a.name.cmp(&b.name));
            println!("NAME\tHOME\tPERMISSIONS\tTLS\tHASH\tDISABLED");
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    u.name,
                    u.home
                        .as_ref()
                        .map_or_else(|| "(root)".into(), |h| h.display().to_string()),
                    u.permissions,
                    u.tls_policy.as_str(),
                    u.hash_scheme().map_or("?", |s| s.name()),
                    if u.disabled { "yes" } else { "no" },
                );
            }
            return Ok(());
        }
        UserCmd::Show(args) => {
            let db = UserDb::load(&args.users)?;
            let u = db
                .get(&args.name)
                .with_context(|| format!("no user {:?} in {}", args.name, args.users.display()))?;
            println!("name:        {}", u.name);
            println!(
                "home:        {}",
                u.home
                    .as_ref()
                    .map_or_else(|| "(the server root)".into(), |h| h.display().to_string())
            );
            println!("permissions: {}", u.permissions);
            println!("tls_policy:  {}", u.tls_policy.as_str());
            println!("hash:        {}", u.hash_scheme().map_or("?", |s| s.name()));
            println!("disabled:    {}", u.disabled);
            println!("client certificates: {}", u.client_certs.len());
            return Ok(());
        }
        UserCmd::Delete(args) => {
            auth::delete_user(&args.users, &args.name)?;
            eprintln!(
                "ferroftp: user {} deleted from {}",
                args.name,
                args.users.display()
            );
            reload_note();
            return Ok(());
        }
        UserCmd::Disable(args) => (args.users, args.name, (Some(true), None)),
        UserCmd::Enable(args) => (args.users, args.name, (Some(false), None)),
        UserCmd::Set(args) => {
            check_new_homes(&args.check, &[(&args.name, args.home.as_deref())])?;
            (
                args.users,
                args.name,
                (
                    None,
                    Some((args.home, args.permissions, args.tls_policy, args.password)),
                ),
            )
        }
    };
    let (disabled, set) = change;
    let (home, permissions, tls_policy, password) = set.unwrap_or((None, None, None, false));
    let hash = if password {
        if std::io::stdin().is_terminal() {
            eprintln!("New password for {name}:");
        }
        Some(auth::hash_password(
            &auth::read_new_password()?,
            HashParams::default(),
        )?)
    } else {
        None
    };
    let change = UserChange {
        password_hash: hash.as_deref(),
        home: home.as_deref(),
        permissions,
        disabled,
        tls_policy: tls_policy.map(TlsPolicy::from),
    };
    auth::edit_user(&users, &name, &change, EditMode::Update)?;
    let what = match disabled {
        Some(true) => "disabled",
        Some(false) => "enabled",
        None => "changed",
    };
    eprintln!("ferroftp: user {name} {what} in {}", users.display());
    home_note(&name, home.as_deref());
    reload_note();
    Ok(())
}

/// `ferroftp import-users`: read the accounts, write those that can be imported in one atomic
/// edit of the users file, and report on each (never a hash). Fails (after writing the others)
/// when an account asked for, or found in the file, could not be imported.
fn import_users(args: ImportArgs) -> anyhow::Result<()> {
    use ferroftp::import::{self, Options, Source};
    let source = match (args.proftpd, args.pureftpd) {
        (Some(path), _) => Source::ProFtpd(path),
        (None, Some(path)) => Source::PureFtpd(path),
        (None, None) => Source::System {
            passwd: args.passwd,
            shadow: args.shadow,
        },
    };
    let found = import::read_accounts(
        &source,
        Options {
            names: &args.names,
            home_root: args.home_root.as_deref(),
        },
    )?;
    let homes: Vec<(&str, Option<&Path>)> = found
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), Some(a.home.as_path())))
        .collect();
    check_new_homes(&args.check, &homes)?;
    let updates: Vec<auth::UserUpdate<'_>> = found
        .accounts
        .iter()
        .map(|a| auth::UserUpdate {
            name: &a.name,
            password_hash: a.password_hash(),
            home: Some(&a.home),
            disabled: Some(a.disabled),
        })
        .collect();
    let created = if updates.is_empty() {
        Vec::new()
    } else {
        auth::upsert_users(&args.users, &updates)?
    };
    for (account, created) in found.accounts.iter().zip(&created) {
        println!(
            "{}: {} ({}, home {}{})",
            account.name,
            if *created { "added" } else { "updated" },
            account.scheme,
            account.home.display(),
            if account.disabled { ", disabled" } else { "" },
        );
        for note in &account.notes {
            println!("{}:   {note}", account.name);
        }
    }
    for skipped in &found.skipped {
        println!("{}: skipped: {}", skipped.name, skipped.reason);
    }
    let added = created.iter().filter(|c| **c).count();
    eprintln!(
        "ferroftp: {} -> {}: {added} added, {} updated, {} skipped",
        source.path().display(),
        args.users.display(),
        created.len() - added,
        found.skipped.len()
    );
    if !created.is_empty() {
        eprintln!(
            "ferroftp: note: missing homes under the server's root are created at each user's first login (mode 0750, owned by the server's user); homes outside it (only with auth.allow_homes_outside_root = true) must be created by you"
        );
        eprintln!(
            "ferroftp: the imported users log in with their old passwords; with \
             auth.rehash_to_argon2 (on by default) each hash becomes argon2id at the user's next login"
        );
    }
    if !found.skipped.is_empty() {
        bail!(
            "{} account(s) not imported (see above)",
            found.skipped.len()
        );
    }
    if created.is_empty() {
        bail!("no accounts found in {}", source.path().display());
    }
    Ok(())
}

fn cert(args: CertArgs) -> anyhow::Result<()> {
    debug_assert!(args.self_signed);
    let (cert, key) = tls::self_signed(&args.host, args.days)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, key.as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    let loaded = tls::load_pair(&cert_path, &key_path)?;
    println!("certificate: {}", cert_path.display());
    println!("key:         {} (mode 0600)", key_path.display());
    println!("names:       {}", loaded.names.join(", "));
    println!("expires:     {}", tls::http_date(loaded.not_after));
    println!("SHA-256:     {}", loaded.fingerprint);
    println!(
        "use with:    ferroftp serve --tls-cert {} --tls-key {}",
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

/// `ferroftp man`: one page for the command and one per subcommand, so that `man
/// ferroftp-serve` works as packagers expect.
fn man(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // build() gives subcommands their full names (ferroftp-serve), which the pages take as
    // title and file name.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_man_pages(cmd, out)?;
    // The configuration reference, from the same annotated example `config --example` prints;
    // beside man1 in man5, where man looks for section 5.
    let dir = match (out.file_name(), out.parent()) {
        (Some(name), Some(parent)) if name == "man1" => parent.join("man5"),
        _ => out.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("ferroftp.toml.5");
    let page =
        ferroftp::config::reference::man_page(ferroftp::config::EXAMPLE, env!("CARGO_PKG_VERSION"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

fn write_man_pages(cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    let context = || format!("cannot write a man page into {}", out.display());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub.clone(), out)?;
    }
    let top = cmd.get_name() == "ferroftp";
    let man = clap_mangen::Man::new(cmd);
    let path = out.join(man.get_filename());
    if top {
        // ferroftp(1) also gets FILES, SIGNALS, ENVIRONMENT and EXIT STATUS.
        let mut page = Vec::new();
        man.render_title(&mut page).with_context(context)?;
        man.render_name_section(&mut page).with_context(context)?;
        man.render_synopsis_section(&mut page)
            .with_context(context)?;
        man.render_description_section(&mut page)
            .with_context(context)?;
        man.render_options_section(&mut page)
            .with_context(context)?;
        man.render_subcommands_section(&mut page)
            .with_context(context)?;
        page.extend_from_slice(extra_roff().as_bytes());
        man.render_version_section(&mut page)
            .with_context(context)?;
        std::fs::write(&path, page).with_context(context)?;
    } else {
        man.generate_to(out).with_context(context)?;
    }
    println!("{}", path.display());
    Ok(())
}

/// Write a file only its owner can read, whatever the umask.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

/// `ferroftp doctor`: print the checklist; exit 1 when something FAILs.
fn doctor(args: DoctorArgs) -> ExitCode {
    use ferroftp::doctor::{self, Check, ConnectOptions, Level, Report};
    let mut report = Report::printing();
    match args.connect {
        Some(target) => {
            let (host, port) = match ConnectOptions::parse_target(&target) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ferroftp: error: --connect: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let user = args.user.unwrap_or_default();
            let password = match read_password(&user) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ferroftp: error: cannot read the password from stdin: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = ConnectOptions {
                host,
                port,
                user,
                password,
                tls: args.tls,
                implicit: args.implicit,
                insecure: args.insecure,
                ca: args.ca,
                timeout: Duration::from_secs(args.timeout.max(1)),
            };
            doctor::connect(&opts, &mut report);
        }
        None => {
            let source = match &args.config {
                Some(path) => format!("configuration {}", path.display()),
                None => "the default configuration (no --config)".to_owned(),
            };
            match effective_config(args.config.as_deref(), args.overrides) {
                Ok(config) => doctor::check_config(&config, &source, &mut report),
                Err(e) => {
                    report.section(&format!("ferroftp doctor: {source}"));
                    report.add(
                        Check::new(Level::Fail, format!("{e:#}"))
                            .fix("ferroftp check-config FILE shows the same error; ferroftp.example.toml documents every key"),
                    );
                }
            }
        }
    }
    report.summarize();
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The password for `doctor --connect`: from the terminal without echo, or one line of stdin.
fn read_password(user: &str) -> std::io::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {user}: "));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// `ferroftp check-config`: load the file and run [`preflight`], the checks `serve` makes
/// before it binds; print the effective configuration on stdout and what was found on stderr.
fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let Preflight { users, tls } = preflight(&config, true)?;
    if let (Some(users), Some(path)) = (users, &config.users_file) {
        eprintln!(
            "ferroftp: users file {}: {} users",
            path.display(),
            users.len()
        );
    }
    if let Some(tls) = tls {
        if tls.is_generated() {
            eprintln!(
                "ferroftp: warning: TLS listeners without tls.cert: a self-signed certificate will be generated at each start"
            );
        } else if let Some(cert) = &config.tls.cert {
            let loaded = tls.current();
            eprintln!(
                "ferroftp: TLS certificate {}: {} (expires {}, SHA-256 {})",
                cert.display(),
                loaded.names.join(", "),
                tls::http_date(loaded.not_after),
                loaded.fingerprint
            );
        }
    }
    if let (Some(_), Some(token)) = (config.admin.listen, &config.admin.token_file) {
        eprintln!("ferroftp: admin token file {}: OK", token.display());
    }
    if !config.root.is_dir() {
        eprintln!(
            "ferroftp: root {} will be created at the first start",
            config.root.display()
        );
    }
    print!("{}", config.to_toml());
    eprintln!("ferroftp: {} is valid", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config key a help text names: the word after "key " (backticks and punctuation off).
    fn keys_named(help: &str) -> Vec<String> {
        help.split("key ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|w| w.trim_matches(|c: char| "`;,().".contains(c)).to_owned())
            .collect()
    }

    #[test]
    fn every_serve_flag_names_its_config_key_or_says_it_has_none() {
        let known = ferroftp::config::reference::keys(ferroftp::config::EXAMPLE);
        let mut cmd = Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand("serve").expect("serve exists").clone();
        let header: String = ferroftp::config::EXAMPLE
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut checked = 0;
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            checked += 1;
            if help.contains("no config key") {
                continue;
            }
            let named = keys_named(&help);
            assert!(
                named.iter().any(|k| known.contains(k)),
                "--{long}: its help names no config key of ferroftp.example.toml (found {named:?}):\n{help}"
            );
            assert!(
                header.contains(&format!("--{long}")),
                "--{long} overrides a key but the example file's list of flags lacks it"
            );
        }
        assert!(checked >= 17, "only {checked} flags seen");
    }
}
