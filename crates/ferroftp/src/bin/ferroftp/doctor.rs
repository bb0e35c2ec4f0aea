//! `ferroftp doctor`: check a configuration against this host, or a running server as a
//! client.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::overrides::{Overrides, effective_config};

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
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

/// `ferroftp doctor`: print the checklist; exit 1 when something FAILs.
pub(crate) fn doctor(args: DoctorArgs) -> ExitCode {
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
