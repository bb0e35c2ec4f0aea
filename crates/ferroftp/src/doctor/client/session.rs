//! One session against the server: reach it, read the greeting, AUTH TLS or implicit TLS,
//! log in, PBSZ/PROT, TYPE I, then the data checks; each step a check in the report.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Instant;

use super::control::{Conn, Control, Reply, connect_tcp, speaks_tls};
use super::tls::{TlsClient, tls_summary};
use super::{ConnectOptions, describe_connect, describe_io, ms, secs, timed_out};
use crate::doctor::{Check, Level, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Security {
    Plain,
    Explicit,
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Passive {
    Pasv,
    Epsv,
}

impl Passive {
    pub(super) fn name(self) -> &'static str {
        match self {
            Passive::Pasv => "PASV",
            Passive::Epsv => "EPSV",
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) connected: bool,
    /// The server sent its 220 greeting (what FEAT said is known only then).
    pub(super) greeted: bool,
    pub(super) auth_tls_offered: bool,
    pub(super) login_failed: bool,
    pub(super) tls_required: bool,
}

pub(super) struct Session<'a> {
    pub(super) opts: &'a ConnectOptions,
    pub(super) tls: Option<&'a TlsClient>,
    pub(super) security: Security,
    pub(super) ctrl: Control,
    pub(super) prot_p: bool,
}

/// Connect to the first address of `host` that answers; a FAIL check if none does.
pub(super) fn reach(opts: &ConnectOptions) -> Result<(TcpStream, SocketAddr, Instant), Check> {
    let target = format!("{}:{}", opts.host, opts.port);
    let addrs: Vec<SocketAddr> = (opts.host.as_str(), opts.port)
        .to_socket_addrs()
        .map_err(|e| {
            Check::new(
                Level::Fail,
                format!("server unreachable: cannot resolve {:?}: {e}", opts.host),
            )
            .fix("check the host name (DNS), or give the IP address")
        })?
        .collect();
    let mut failures = Vec::new();
    let mut refused_only = true;
    for addr in addrs {
        let start = Instant::now();
        match connect_tcp(addr, opts.timeout) {
            Ok(s) => return Ok((s, addr, start)),
            Err(e) => {
                refused_only &= e.kind() == io::ErrorKind::ConnectionRefused;
                failures.push(format!(
                    "connecting to {addr} {}",
                    describe_connect(&e, opts.timeout)
                ));
            }
        }
    }
    let check = Check::new(
        Level::Fail,
        format!("server unreachable at {target}: {}", failures.join("; ")),
    );
    Err(if refused_only {
        check
            .fix("nothing listens there: is ferroftp running, on this address and port (listener.bind / --listen)? A firewall REJECT rule looks the same")
    } else {
        check.fix("a firewall drops the packets, or the host is down or unroutable: open the control port (ferroftp doctor --config FILE prints the rules)")
    })
}

pub(super) fn run_session(
    opts: &ConnectOptions,
    security: Security,
    tls: Option<&TlsClient>,
    r: &mut Report,
) -> Outcome {
    let mut outcome = Outcome::default();
    r.section(match security {
        Security::Plain => "Plain FTP session",
        Security::Explicit => "FTPS session (AUTH TLS, PROT P)",
        Security::Implicit => "Implicit FTPS session (PROT P)",
    });
    let (tcp, peer, start) = match reach(opts) {
        Ok(x) => x,
        Err(check) => {
            r.add(check);
            return outcome;
        }
    };
    outcome.connected = true;
    let mut s = Session {
        opts,
        tls,
        security,
        ctrl: Control {
            conn: Some(Conn::Plain(tcp)),
            buf: Vec::new(),
            peer,
        },
        prot_p: false,
    };
    if let Err(check) = s.run(start, &mut outcome, r) {
        r.add(check);
    }
    // Politeness; the answer does not matter.
    let _ = s.ctrl.cmd("QUIT");
    outcome
}

pub(super) type Step<T> = Result<T, Check>;

impl<'a> Session<'a> {
    pub(super) fn fail(&self, text: impl Into<String>) -> Check {
        Check::new(Level::Fail, text)
    }

    /// A command whose failure to get any reply ends the session.
    /// A command and its reply; when the control connection fails, it is dropped (later
    /// steps are skipped) and the failure is a FAIL check.
    pub(super) fn cmd(&mut self, line: &str) -> Step<Reply> {
        // Never show the password.
        let verb = line.split(' ').next().unwrap_or(line).to_owned();
        let result = self.ctrl.cmd(line);
        result.map_err(|e| self.control_failed(&verb, &e))
    }

    pub(super) fn reply(&mut self, after: &str) -> Step<Reply> {
        let result = self.ctrl.reply();
        result.map_err(|e| self.control_failed(after, &e))
    }

    pub(super) fn control_failed(&mut self, what: &str, e: &io::Error) -> Check {
        self.ctrl.conn = None;
        self.fail(format!(
            "{what}: the control connection failed: {}",
            describe_io(e, self.opts.timeout)
        ))
    }

    pub(super) fn tls(&self) -> Step<&'a TlsClient> {
        self.tls
            .ok_or_else(|| self.fail("TLS is not set up (see above)"))
    }

    pub(super) fn run(
        &mut self,
        start: Instant,
        outcome: &mut Outcome,
        r: &mut Report,
    ) -> Step<()> {
        let peer = self.ctrl.peer;
        if self.security == Security::Implicit {
            let tls = self.tls()?;
            let Some(Conn::Plain(tcp)) = self.ctrl.conn.take() else {
                return Err(self.fail("internal: no connection"));
            };
            match tls.handshake(tcp) {
                Ok(t) => {
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "TLS from the first byte: {}; {}",
                            tls_summary(&t.conn),
                            tls.describe_certificate()
                        ),
                    ));
                    self.ctrl.conn = Some(Conn::Tls(Box::new(t)));
                }
                Err(e) => {
                    return Err(tls.handshake_failure(
                        "implicit TLS handshake failed",
                        &e,
                        self.opts,
                    ));
                }
            }
        }
        let greeting = self.ctrl.reply().map_err(|e| {
            let timeout = self.opts.timeout;
            let check = self.fail(format!(
                "connected to {peer}, but no FTP greeting: {}",
                describe_io(&e, timeout)
            ));
            // An implicit FTPS port waits for the client's TLS hello and says nothing: try one.
            match self.security {
                Security::Implicit => check,
                _ if timed_out(&e) && speaks_tls(peer, timeout) => self
                    .fail(format!(
                        "connected to {peer}, but no FTP greeting within {}: this port speaks implicit FTPS (TLS from the first byte; a TLS handshake on it succeeded)",
                        secs(timeout)
                    ))
                    .fix("add --implicit (with --ca FILE or --insecure, as for any FTPS)"),
                _ => check.fix("is this an FTP server? For implicit FTPS (TLS from the first byte, usually port 990) add --implicit"),
            }
        })?;
        match greeting.code {
            220 => {
                outcome.greeted = true;
                r.add(Check::new(
                    Level::Ok,
                    format!("connected to {peer}: {greeting} ({})", ms(start)),
                ));
            }
            421 => {
                return Err(self.fail(format!("connected to {peer}, but the server refused the session: {greeting}"))
                    .fix("too many sessions (limits.max_sessions, max_sessions_per_ip), or this address is banned after failed logins (bans; bans.allow for trusted networks)"));
            }
            _ => {
                return Err(self.fail(format!(
                    "connected to {peer}, but the greeting is {greeting}, not 220"
                )));
            }
        }
        let feat = self.cmd("FEAT")?;
        outcome.auth_tls_offered = feat.code == 211
            && feat
                .text
                .lines()
                .any(|l| l.trim().eq_ignore_ascii_case("AUTH TLS"));
        if self.security == Security::Explicit {
            let tls = self.tls()?;
            let auth = self.cmd("AUTH TLS")?;
            if auth.code != 234 {
                return Err(self.fail(format!("AUTH TLS refused: {auth}")).fix(
                    "the listener does not offer TLS (mode = \"plain\" or --no-tls); if it is implicit FTPS, use --implicit",
                ));
            }
            let started = Instant::now();
            match self.ctrl.upgrade(tls) {
                Ok(()) => {
                    let summary = match self.ctrl.conn.as_ref() {
                        Some(Conn::Tls(t)) => tls_summary(&t.conn),
                        _ => String::new(),
                    };
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "AUTH TLS: {summary} ({}); {}",
                            ms(started),
                            tls.describe_certificate()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(tls.handshake_failure("AUTH TLS handshake failed", &e, self.opts));
                }
            }
        }
        self.login(outcome, r)?;
        if self.security != Security::Plain {
            let pbsz = self.cmd("PBSZ 0")?;
            let prot = self.cmd("PROT P")?;
            if pbsz.code != 200 || prot.code != 200 {
                return Err(self.fail(format!("PBSZ 0 / PROT P refused: {pbsz} / {prot}")));
            }
            self.prot_p = true;
        }
        let ty = self.cmd("TYPE I")?;
        if ty.code != 200 {
            return Err(self.fail(format!("TYPE I refused: {ty}")));
        }
        let mut working = Vec::new();
        for mode in [Passive::Pasv, Passive::Epsv] {
            let (ok, checks) = self.listing(mode);
            if ok {
                working.push(mode);
            }
            for c in checks {
                r.add(c);
            }
            if self.ctrl.conn.is_none() {
                return Ok(());
            }
        }
        if working == [Passive::Epsv] {
            r.add(Check::new(
                Level::Warn,
                "EPSV works but PASV does not: clients that use EPSV (curl, lftp, FileZilla) are fine; PASV-only clients, and NAT gateways that rewrite PASV, are not",
            ));
        }
        match working.last() {
            Some(&mode) => {
                let check = match self.round_trip(mode) {
                    Ok(c) | Err(c) => c,
                };
                r.add(check);
            }
            None => r.add(
                self.fail("upload/download round trip skipped: no passive data connection worked"),
            ),
        }
        Ok(())
    }

    pub(super) fn login(&mut self, outcome: &mut Outcome, r: &mut Report) -> Step<()> {
        let user = self.opts.user.clone();
        let started = Instant::now();
        let reply = self.cmd(&format!("USER {user}"))?;
        let reply = match reply.code {
            331 => self.cmd(&format!("PASS {}", self.opts.password))?,
            230 | 232 | 530 => reply,
            _ => return Err(self.fail(format!("USER {user} refused: {reply}"))),
        };
        match reply.code {
            230 | 232 => {
                r.add(Check::new(
                    Level::Ok,
                    format!("logged in as {user}: {reply} ({})", ms(started)),
                ));
                if self.security == Security::Plain && !self.ctrl.peer.ip().is_loopback() {
                    r.add(
                        Check::new(
                            Level::Warn,
                            "the password crossed the network in clear (plain FTP)",
                        )
                        .fix("use --tls to test FTPS only; require TLS with tls_policy = \"login\" on the listener"),
                    );
                }
                Ok(())
            }
            // The listener's or the user's tls_policy: as configured, so not a failure when
            // FTPS is tested next.
            530 if reply.text.contains("TLS") && self.security == Security::Plain => {
                outcome.tls_required = true;
                Err(Check::new(
                    Level::Ok,
                    format!("plain login refused, TLS is required: {reply}"),
                ))
            }
            530 if reply.text.contains("home directory") => Err(self
                .fail(format!("login refused for {user}: {reply}"))
                .fix("the user's home directory is missing or unreadable on the server (ferroftp doctor --config FILE checks the homes)")),
            530 => {
                outcome.login_failed = true;
                Err(self.fail(format!("login failed for {user}: {reply}")).fix(
                    "wrong user name or password, or a disabled user (users file); repeated failures slow replies and ban the address (bans)",
                ))
            }
            _ => Err(self.fail(format!("login failed for {user}: {reply}"))),
        }
    }
}
