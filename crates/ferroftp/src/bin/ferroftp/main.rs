//! The `ferroftp` command: serve, manage users, check a configuration. The clap wiring is
//! here; each subcommand lives in its own module, and `anyhow` only in this binary (the
//! library's errors are typed).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cert;
mod check_config;
mod doctor;
mod homes;
mod import_users;
mod man;
mod overrides;
mod passwd;
mod preflight;
mod serve;
mod user;

use cert::CertArgs;
use check_config::{CheckArgs, ConfigArgs, check_config};
use doctor::{DoctorArgs, doctor};
use import_users::{ImportArgs, import_users};
use man::{ManArgs, extra_help, man};
use passwd::{PasswdArgs, passwd};
use serve::{ServeArgs, serve};
use user::{UserCmd, user};

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
        Cmd::Cert(args) => cert::cert(args),
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
