//! `ferroftp doctor --connect`: a small blocking FTP client that walks through what a transfer
//! needs (connect, greeting, TLS, login, PASV, EPSV, upload, download) and says which step
//! failed and why it probably did.
//!
//! TLS data connections resume the control connection's TLS session, as ferroftp requires: one
//! `rustls::ClientConfig` (and so one session store) serves the control connection and every
//! data connection, all under the same server name.

mod advice;
mod control;
mod data;
mod session;
mod tls;

pub(super) use control::greeting;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::doctor::{Check, Level, Report};
use session::{Security, run_session};
use tls::TlsClient;

/// Size of the file sent and fetched back.
const PROBE_BYTES: usize = 64 * 1024;

/// What `--connect` was asked to do.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server's host name or IP address, as given (also the TLS server name).
    pub host: String,
    /// The control port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The password (read from stdin, never from the command line).
    pub password: String,
    /// Test FTPS only, and fail if AUTH TLS is refused.
    pub tls: bool,
    /// Implicit FTPS: TLS from the first byte.
    pub implicit: bool,
    /// Do not verify the server's certificate.
    pub insecure: bool,
    /// CA certificates (PEM) to verify the server's certificate against, instead of the
    /// system's.
    pub ca: Option<PathBuf>,
    /// The time each step (connect, each reply, each data connection) may take.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// Split `HOST:PORT` (`[v6]:PORT` for IPv6 addresses).
    pub fn parse_target(target: &str) -> Result<(String, u16), String> {
        let bad = || format!("{target:?} is not HOST:PORT (e.g. ftp.example.org:21, [::1]:2121)");
        let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(':') && host.parse::<IpAddr>().is_err() {
            return Err(bad());
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(bad)?;
        Ok((host.to_owned(), port))
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn ms(since: Instant) -> String {
    format!("{} ms", since.elapsed().as_millis())
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// What went wrong with a network read or write, for messages.
fn describe_io(e: &io::Error, timeout: Duration) -> String {
    if timed_out(e) {
        format!("no answer within {}", secs(timeout))
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "the server closed the connection".into()
    } else {
        e.to_string()
    }
}

/// What went wrong with a TCP connect, for messages.
fn describe_connect(e: &io::Error, timeout: Duration) -> String {
    if timed_out(e) {
        format!("timed out after {}", secs(timeout))
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        "was refused".into()
    } else {
        format!("failed ({e})")
    }
}

/// Run the client checks against the server in `opts`, adding to `r`.
pub fn connect(opts: &ConnectOptions, r: &mut Report) {
    r.section(&format!(
        "ferroftp doctor: connecting to {}:{} as {} (each step may take {})",
        opts.host,
        opts.port,
        opts.user,
        secs(opts.timeout)
    ));
    let tls = TlsClient::new(opts);
    let wants_tls = opts.tls || opts.implicit;
    let tls = match tls {
        Ok(t) => Some(t),
        Err(check) => {
            let check = if wants_tls {
                check
            } else {
                Check::new(
                    Level::Warn,
                    format!("{}: the FTPS session is skipped", check.text),
                )
                .fix("give --ca FILE, or --insecure")
            };
            r.add(check);
            if wants_tls {
                return;
            }
            None
        }
    };
    if opts.implicit {
        run_session(opts, Security::Implicit, tls.as_ref(), r);
    } else if opts.tls {
        run_session(opts, Security::Explicit, tls.as_ref(), r);
    } else {
        let plain = run_session(opts, Security::Plain, tls.as_ref(), r);
        if plain.greeted && !plain.login_failed {
            if plain.auth_tls_offered {
                if tls.is_some() {
                    run_session(opts, Security::Explicit, tls.as_ref(), r);
                }
            } else if plain.tls_required {
                r.add(
                    Check::new(
                        Level::Fail,
                        "TLS is required for login, but FEAT does not offer AUTH TLS",
                    )
                    .fix("if this port is implicit FTPS, use --implicit"),
                );
            } else {
                r.section("FTPS");
                r.add(
                    Check::new(
                        Level::Warn,
                        "the server does not offer AUTH TLS (FEAT): FTPS not tested, and passwords go in clear",
                    )
                    .fix("mode = \"explicit\" on the listener, with tls.cert and tls.key"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(
            ConnectOptions::parse_target("ftp.example.org:21"),
            Ok(("ftp.example.org".into(), 21))
        );
        assert_eq!(
            ConnectOptions::parse_target("[::1]:2121"),
            Ok(("::1".into(), 2121))
        );
        assert!(ConnectOptions::parse_target("ftp.example.org").is_err());
        assert!(ConnectOptions::parse_target("host:0").is_err());
        assert!(ConnectOptions::parse_target(":21").is_err());
    }
}
