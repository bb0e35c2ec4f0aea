//! The FTP session core: the rules of the protocol with no I/O and no clock.
//!
//! In the manner of quinn-proto, a [`Session`] takes a parsed command (or a parse error) and
//! the events its driver reports (a password checked, a TLS handshake done, a storage
//! operation's result, a transfer's end, a timer), and answers with an [`Output`]: the replies
//! to send and at most one [`Effect`] for the driver to carry out, whose result comes back as
//! an [`Event`]. Time comes in as an argument. The tokio driver (`server::session`) owns the
//! sockets, TLS, the file system and the timers, and decides nothing this module decides.
//!
//! The rules here: the login sequence (USER, PASS, ACCT, REIN, the TLS client certificate
//! login), what is allowed before login and under the TLS policies, AUTH, PBSZ before PROT,
//! RNFR directly before RNTO, REST for the next transfer only, TYPE/MODE/STRU, PASV, EPSV (ALL),
//! PORT and EPRT, ABOR and STAT during a transfer (other commands wait for its end), path
//! resolution against the working directory, permissions, and every reply's code and text.

mod data;
pub mod effects;
mod files;
mod info;
mod login;
pub(crate) mod replies;
mod security;
pub mod state;
#[cfg(test)]
mod tests;
mod transfer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferroftp_proto::ParseError;
use ferroftp_proto::reply::quote_path;
use ferroftp_proto::{Command, MlstFacts, OptsCommand, Reply, SiteCommand, TransferType};

pub use effects::{
    AccountUpdate, CloseReason, Effect, Event, LoginMethod, Output, PassiveFailure, PassiveKind,
    PreCheckRefusal, StorageDone, StorageOp, TlsMechanism, TlsVersion, TransferEnd, TransferKind,
    TransferSource,
};
pub use replies::{allowed_before_login, feat_reply, fs_reply, help_reply, storage_failure_reply};
pub use state::{Account, Activity, DataPolicy, DataSetup, LoginState, Prot, Running, TlsState};
pub use transfer::{is_abor_line, runs_during_transfer};

use crate::auth::Permissions;
use crate::config::{ActiveConfig, ListenerMode, TlsPolicy};
use crate::storage::{Capabilities, StorageError, VPath};
use state::Pending;

/// The configuration the rules read; the driver gives a fresh copy after a reload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How the listener speaks (plain, explicit or implicit FTPS).
    pub mode: ListenerMode,
    /// The listener's TLS policy.
    pub tls_policy: TlsPolicy,
    /// The permissions of anonymous logins, when they are enabled.
    pub anonymous: Option<Permissions>,
    /// Failed logins after which the session ends.
    pub max_login_failures: u32,
    /// The idle timeout, in seconds.
    pub idle_timeout_secs: u64,
    /// The time to log in, in seconds.
    pub login_timeout_secs: u64,
    /// How long a passive port waits for its transfer.
    pub data_timeout: Duration,
    /// PORT and EPRT rules.
    pub active: ActiveConfig,
}

impl Settings {
    /// Reasonable values for tests and fuzzing: plain, anonymous off, the default limits.
    pub fn plain() -> Self {
        Self {
            mode: ListenerMode::Plain,
            tls_policy: TlsPolicy::Optional,
            anonymous: None,
            max_login_failures: 3,
            idle_timeout_secs: 300,
            login_timeout_secs: 60,
            data_timeout: Duration::from_secs(30),
            active: ActiveConfig::default(),
        }
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
}

/// One control connection's FTP state machine.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    peer: SocketAddr,
    local: SocketAddr,
    login: LoginState,
    tls: TlsState,
    data: DataSetup,
    data_policy: DataPolicy,
    activity: Activity,
    cwd: VPath,
    ty: TransferType,
    rest: u64,
    rnfr: Option<VPath>,
    mlst: MlstFacts,
    failed_logins: u32,
    /// What the logged-in user's storage can do: a command it cannot carry out is refused
    /// (502) before any effect, instead of failing half-way.
    storage: Capabilities,
    connected_at: Instant,
    last_activity: Instant,
    /// The command waiting for an effect's result.
    pending: Option<Pending>,
}

impl Session {
    /// A session that just connected at `now` (plain; see [`Session::implicit_tls`]).
    pub fn new(settings: Settings, peer: SocketAddr, local: SocketAddr, now: Instant) -> Self {
        Self {
            settings,
            peer,
            local,
            login: LoginState::LoggedOut,
            tls: TlsState::None,
            data: DataSetup::None,
            data_policy: DataPolicy::Any,
            activity: Activity::Idle,
            cwd: VPath::root(),
            ty: TransferType::Ascii,
            rest: 0,
            rnfr: None,
            mlst: MlstFacts::default(),
            failed_logins: 0,
            storage: Capabilities::ALL,
            connected_at: now,
            last_activity: now,
            pending: None,
        }
    }

    /// Implicit FTPS: protected from the start, data connections included (the convention of
    /// port 990); PBSZ and PROT are accepted but not needed.
    pub fn implicit_tls(&mut self, version: TlsVersion) {
        self.tls = TlsState::Pbsz(version, Prot::Private);
    }

    /// Take the configuration in force after a reload.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The address the client connected to.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Who is logged in.
    pub fn login(&self) -> &LoginState {
        &self.login
    }

    /// The logged-in user's name.
    pub fn user(&self) -> Option<&str> {
        match &self.login {
            LoginState::LoggedIn { account, .. } => Some(&account.name),
            _ => None,
        }
    }

    /// The logged-in account and how it logged in.
    pub fn account(&self) -> Option<(&Account, LoginMethod)> {
        match &self.login {
            LoginState::LoggedIn { account, method } => Some((account, *method)),
            _ => None,
        }
    }

    /// The control connection's protection.
    pub fn tls(&self) -> TlsState {
        self.tls
    }

    /// The data connection set-up.
    pub fn data(&self) -> DataSetup {
        self.data
    }

    /// The data set-up commands allowed.
    pub fn data_policy(&self) -> DataPolicy {
        self.data_policy
    }

    /// What runs now.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The working directory.
    pub fn cwd(&self) -> &VPath {
        &self.cwd
    }

    /// TYPE.
    pub fn transfer_type(&self) -> TransferType {
        self.ty
    }

    /// The facts MLSx replies carry.
    pub fn mlst(&self) -> MlstFacts {
        self.mlst
    }

    /// The REST offset waiting for the next transfer.
    pub fn rest(&self) -> u64 {
        self.rest
    }

    /// Failed logins so far in this session.
    pub fn failed_logins(&self) -> u32 {
        self.failed_logins
    }

    /// Whether an effect's result is awaited.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// When the last command (or the end of the last transfer) came.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// When the session times out if nothing happens (none while a transfer runs).
    pub fn deadline(&self) -> Option<Instant> {
        if matches!(self.activity, Activity::Transfer(_)) {
            return None;
        }
        let idle = self.last_activity + self.settings.idle_timeout();
        Some(match self.login {
            LoginState::LoggedIn { .. } => idle,
            _ => (self.connected_at + self.settings.login_timeout()).min(idle),
        })
    }

    /// Until when a password check may wait for a place (the time to log in).
    pub fn login_deadline(&self) -> Instant {
        self.connected_at + self.settings.login_timeout()
    }

    /// When the passive port is released if no transfer takes it.
    pub fn passive_expiry(&self) -> Option<Instant> {
        match self.data {
            DataSetup::Passive { expires, .. } => Some(expires),
            _ => None,
        }
    }

    /// The deadline passed: 421 and the end.
    pub fn timeout(&mut self) -> Output {
        let s = &self.settings;
        // Which limit ran out: idle (also before login) or the time to log in.
        let idle = matches!(self.login, LoginState::LoggedIn { .. })
            || self.deadline() == Some(self.last_activity + s.idle_timeout());
        if idle {
            let text = format!(
                "Timeout: no command for {} s; closing control connection",
                s.idle_timeout_secs
            );
            Output::close(Reply::new(421, text), CloseReason::IdleTimeout)
        } else {
            let text = format!(
                "Timeout: not logged in within {} s; closing control connection",
                s.login_timeout_secs
            );
            Output::close(Reply::new(421, text), CloseReason::LoginTimeout)
        }
    }

    /// Handle one command line, parsed (or not), that arrived at `now`.
    pub fn command(&mut self, parsed: Result<Command, ParseError>, now: Instant) -> Output {
        debug_assert!(
            self.pending.is_none(),
            "a command while an effect is pending"
        );
        self.pending = None;
        self.last_activity = now;
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                self.rnfr = None;
                return Output::reply(e.to_reply());
            }
        };
        // RNTO must follow RNFR directly (RFC 959 §4.1.3).
        let rnfr = self.rnfr.take();
        if let Activity::Transfer(running) = &mut self.activity {
            return match cmd {
                Command::Abor => {
                    // The 426 and 226 are sent when the transfer has stopped.
                    running.abort_requested = true;
                    Output::effect(Effect::AbortTransfer)
                }
                _ => {
                    self.pending = Some(Pending::Progress);
                    Output::effect(Effect::TransferStatus)
                }
            };
        }
        if !matches!(self.login, LoginState::LoggedIn { .. }) && !allowed_before_login(&cmd) {
            return Output::reply(not_logged_in());
        }
        match cmd {
            Command::User(name) => self.cmd_user(name, now),
            Command::Pass(password) => self.cmd_pass(password),
            Command::Acct(_) => Output::reply(Reply::new(202, "ACCT not needed on this server")),
            Command::Quit => Output::close(Reply::new(221, "Goodbye"), CloseReason::ClientQuit),
            Command::Rein => {
                self.reinitialize(now);
                Output::reply(Reply::new(220, "Session reset; ready for a new user"))
            }
            Command::Cwd(arg) => self.cmd_cwd(arg),
            Command::Cdup => self.cmd_cwd("..".to_owned()),
            Command::Pwd => Output::reply(Reply::new(
                257,
                format!("{} is the current directory", quote_path(self.cwd.as_str())),
            )),
            Command::Mkd(arg) => self.cmd_mkd(arg),
            Command::Rmd(arg) => self.cmd_simple(arg, true),
            Command::Dele(arg) => self.cmd_simple(arg, false),
            Command::Rnfr(arg) => self.cmd_rnfr(arg),
            Command::Rnto(arg) => self.cmd_rnto(rnfr, arg),
            Command::Type(ty) => {
                self.ty = ty;
                Output::reply(match ty {
                    TransferType::Ascii => {
                        Reply::new(200, "Type set to A (text, CRLF on the wire)")
                    }
                    TransferType::Image => Reply::new(200, "Type set to I (binary)"),
                })
            }
            Command::Mode(_) => Output::reply(Reply::new(200, "Mode set to S (stream)")),
            Command::Stru(_) => Output::reply(Reply::new(200, "Structure set to F (file)")),
            Command::Pasv => self.cmd_pasv(),
            Command::Epsv(arg) => self.cmd_epsv(arg),
            Command::Port(target) => self.cmd_active(SocketAddr::V4(target), "PORT"),
            Command::Eprt(target) => self.cmd_active(target, "EPRT"),
            Command::List(arg) => self.cmd_list(arg, TransferKind::List),
            Command::Nlst(arg) => self.cmd_list(arg, TransferKind::Nlst),
            Command::Mlsd(arg) => self.cmd_list(arg, TransferKind::Mlsd),
            Command::Retr(arg) => self.cmd_retr(arg),
            Command::Stor(arg) => self.cmd_store(arg, false),
            Command::Appe(arg) => self.cmd_store(arg, true),
            Command::Stou(hint) => self.cmd_stou(hint),
            Command::Mlst(arg) => self.cmd_mlst(arg),
            Command::Rest(offset) => {
                self.rest = offset;
                Output::reply(Reply::new(
                    350,
                    format!("Restarting at {offset}; send RETR, STOR or APPE"),
                ))
            }
            Command::Abor => self.cmd_abor_idle(),
            Command::Size(arg) => self.cmd_size(arg),
            Command::Mdtm(arg) => self.cmd_mdtm(arg),
            Command::Mfmt(time, arg) => self.cmd_mfmt(time, arg),
            Command::Feat => Output::reply(feat_reply(self.mlst, self.settings.mode)),
            Command::Opts(OptsCommand::Utf8(true)) => {
                Output::reply(Reply::new(200, "UTF8 is always on"))
            }
            Command::Opts(OptsCommand::Utf8(false)) => Output::reply(Reply::new(
                504,
                "UTF8 cannot be turned off: names are UTF-8 (RFC 2640)",
            )),
            Command::Opts(OptsCommand::Mlst(facts)) => {
                self.mlst = facts;
                Output::reply(Reply::new(
                    200,
                    format!("MLST OPTS {}", facts.render(false)),
                ))
            }
            Command::Syst => Output::reply(Reply::new(215, "UNIX Type: L8")),
            Command::Stat(None) => Output::reply(self.status_reply()),
            Command::Stat(Some(arg)) => self.cmd_stat_path(arg),
            Command::Help(topic) => Output::reply(help_reply(topic.as_deref())),
            Command::Noop => Output::reply(Reply::new(200, "NOOP ok")),
            Command::Allo => Output::reply(Reply::new(202, "No storage allocation necessary")),
            Command::Site(SiteCommand::Help) => Output::reply(Reply::multi(
                214,
                "SITE commands:",
                ["CHMOD <octal mode> <path>".to_string(), "HELP".to_string()],
                "End of SITE help",
            )),
            Command::Site(SiteCommand::Chmod(mode, arg)) => self.cmd_chmod(mode, arg),
            Command::Auth(mechanism) => self.cmd_auth(&mechanism),
            Command::Pbsz(_) => Output::reply(self.cmd_pbsz()),
            Command::Prot(level) => Output::reply(self.cmd_prot(level)),
            Command::Ccc => Output::reply(if self.tls.is_tls() {
                Reply::new(
                    534,
                    "CCC refused: the control connection stays encrypted on this server",
                )
            } else {
                Reply::new(533, "The control connection is not protected")
            }),
        }
    }

    /// Handle the driver's report on the effect it carried out (or a timer, a transfer's end,
    /// a reload), at `now`.
    pub fn event(&mut self, event: Event, now: Instant) -> Output {
        match event {
            Event::PassiveExpired => {
                if matches!(self.data, DataSetup::Passive { .. }) {
                    self.data = DataSetup::None;
                }
                Output::default()
            }
            Event::Reloaded(update) => self.reloaded(update),
            Event::TransferEnded(end) => self.transfer_ended(end, now),
            event => match self.pending.take() {
                Some(pending) => self.resume(pending, event, now),
                // An answer nobody asked for: a driver bug, not the client's doing.
                None => Output::default(),
            },
        }
    }

    fn resume(&mut self, pending: Pending, event: Event, now: Instant) -> Output {
        match (pending, event) {
            (Pending::Certificate(name), Event::Certificate(user)) => {
                self.certificate_checked(name, user, now)
            }
            (Pending::Password, Event::PasswordAccepted(account)) => {
                self.password_accepted(account)
            }
            (Pending::Password, Event::PasswordRejected { banned }) => {
                self.password_rejected(banned)
            }
            (Pending::Password, Event::LoginRefused(why)) => self.login_refused(why),
            (
                Pending::Home {
                    account,
                    method,
                    ok,
                },
                Event::HomeOpened(opened),
            ) => self.home_opened(account, method, ok, opened),
            (Pending::Tls(m), e @ (Event::TlsReady | Event::TlsUnavailable { .. })) => {
                self.tls_prepared(m, e)
            }
            (
                Pending::Tls(m),
                e @ (Event::TlsEstablished(_) | Event::TlsFailed | Event::NotPlain),
            ) => self.tls_done(m, e),
            (
                Pending::Passive(kind),
                e @ (Event::PassiveOpened { .. } | Event::PassiveFailed(_)),
            ) => self.passive_done(kind, e, now),
            (Pending::Storage { cmd, shown }, Event::Storage(result)) => {
                self.storage_done(cmd, shown, result)
            }
            (
                Pending::Transfer {
                    kind,
                    shown,
                    offset,
                },
                e,
            ) => self.transfer_prepared(kind, &shown, offset, e, now),
            (Pending::Progress, Event::TransferProgress { bytes, now }) => {
                Output::reply(self.status_during_transfer(bytes, now))
            }
            // A mismatched answer is a driver bug; the command gets a reply all the same.
            (_, _) => Output::reply(Reply::new(451, "Local error in processing")),
        }
    }

    /// The logged-in account, or 530.
    fn logged_in(&self) -> Result<&Account, Reply> {
        match &self.login {
            LoginState::LoggedIn { account, .. } => Ok(account),
            _ => Err(not_logged_in()),
        }
    }

    /// The logged-in account if it holds `perm`, else 530 or 550.
    /// Refuses (502) what the user's storage cannot do (`supported` false), naming the
    /// operation as the storage would.
    fn supports(supported: bool, what: &'static str, shown: &str) -> Result<(), Reply> {
        if supported {
            Ok(())
        } else {
            Err(replies::fs_reply(shown, &StorageError::Unsupported(what)))
        }
    }

    fn need(&self, perm: crate::auth::Permission) -> Result<&Account, Reply> {
        let account = self.logged_in()?;
        if account.perms.has(perm) {
            Ok(account)
        } else {
            Err(Reply::new(
                550,
                format!(
                    "Permission denied: this account may not {}",
                    replies::permission_verb(perm)
                ),
            ))
        }
    }

    /// `arg` resolved against the working directory, refused when it names an internal file.
    fn resolve(&self, arg: &str) -> Result<VPath, Reply> {
        replies::check_line_ends(arg)?;
        let path = VPath::resolve(&self.cwd, arg).map_err(|e| fs_reply(arg, &e))?;
        if path
            .file_name()
            .is_some_and(crate::storage::is_internal_name)
        {
            return Err(Reply::new(553, format!("{arg}: file name not allowed")));
        }
        Ok(path)
    }

    /// The TLS policy in force: the listener's, raised by the user's once logged in.
    fn tls_policy(&self) -> TlsPolicy {
        let user = match &self.login {
            LoginState::LoggedIn { account, .. } => account.tls_policy,
            _ => TlsPolicy::Optional,
        };
        self.settings.tls_policy.max(user)
    }

    fn data_tls_required(&self) -> bool {
        self.tls_policy().data()
    }
}

fn not_logged_in() -> Reply {
    Reply::new(530, "Please log in with USER and PASS first")
}

/// Either a reply or what to do next.
fn done(r: Result<Output, Reply>) -> Output {
    r.unwrap_or_else(Output::reply)
}
