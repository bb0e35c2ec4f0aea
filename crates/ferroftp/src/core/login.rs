//! Access: USER, PASS (and the TLS client certificate login), REIN, and what a reload does to
//! the logged-in account.

use std::time::Instant;

use ferroftp_proto::{MlstFacts, Reply, TransferType};
use tracing::{info, warn};

use super::replies::is_anonymous_name;
use super::state::{Account, Pending};
use super::{
    AccountUpdate, Activity, CloseReason, DataPolicy, DataSetup, Effect, LoginMethod, LoginState,
    Output, PreCheckRefusal, Session,
};
use crate::config::TlsPolicy;
use crate::storage::{Capabilities, VPath};

impl Session {
    /// Back to the state right after the greeting (the control connection's TLS stays).
    pub(super) fn reinitialize(&mut self, now: Instant) {
        if matches!(self.login, LoginState::LoggedIn { .. }) {
            // A user who logged in gets a fresh login period to log in again; without a login,
            // REIN must not restart the clock (a REIN a second would keep a session forever).
            self.connected_at = now;
        }
        self.login = LoginState::LoggedOut;
        self.cwd = VPath::root();
        self.ty = TransferType::Ascii;
        self.rest = 0;
        self.rnfr = None;
        self.data_policy = DataPolicy::Any;
        self.mlst = MlstFacts::default();
        self.data = DataSetup::None;
        debug_assert!(matches!(self.activity, Activity::Idle));
    }

    pub(super) fn cmd_user(&mut self, name: String, now: Instant) -> Output {
        if self.tls.is_tls() {
            // A verified client certificate may log the user in at once.
            self.pending = Some(Pending::Certificate(name.clone()));
            return Output::effect(Effect::CheckCertificate { name });
        }
        self.user_given(name, now)
    }

    pub(super) fn certificate_checked(
        &mut self,
        name: String,
        user: Option<Account>,
        now: Instant,
    ) -> Output {
        let Some(account) = user else {
            return self.user_given(name, now);
        };
        if matches!(self.login, LoginState::LoggedIn { .. }) {
            self.reinitialize(now);
        }
        let ok = Reply::new(
            232,
            format!(
                "User {} logged in, authorized by the TLS client certificate",
                account.name
            ),
        );
        self.open_home(account, LoginMethod::Certificate, ok)
    }

    fn user_given(&mut self, name: String, now: Instant) -> Output {
        if matches!(self.login, LoginState::LoggedIn { .. }) {
            // A new USER starts a new login (RFC 959 allows changing users).
            self.reinitialize(now);
        }
        if self.settings.tls_policy.login() && !self.tls.is_tls() {
            self.login = LoginState::LoggedOut;
            return Output::reply(Reply::new(
                530,
                "This server requires TLS for login: send AUTH TLS first (use FTPS)",
            ));
        }
        let anonymous = is_anonymous_name(&name) && self.settings.anonymous.is_some();
        let reply = if anonymous {
            Reply::new(
                331,
                "Anonymous login ok; send your e-mail address as password",
            )
        } else {
            // The same reply whether or not the user exists.
            Reply::new(331, format!("Password required for {name}"))
        };
        self.login = LoginState::UserGiven(name);
        Output::reply(reply)
    }

    pub(super) fn cmd_pass(&mut self, password: String) -> Output {
        let name = match std::mem::replace(&mut self.login, LoginState::LoggedOut) {
            LoginState::UserGiven(name) => name,
            other => {
                self.login = other;
                return Output::reply(Reply::new(503, "Send USER first"));
            }
        };
        if let (true, Some(perms)) = (is_anonymous_name(&name), self.settings.anonymous) {
            let account = Account {
                name,
                perms,
                tls_policy: TlsPolicy::Optional,
            };
            return self.open_home(
                account,
                LoginMethod::Anonymous,
                Reply::new(230, "Login successful"),
            );
        }
        self.pending = Some(Pending::Password);
        Output::effect(Effect::VerifyPassword { name, password })
    }

    pub(super) fn password_accepted(&mut self, account: Account) -> Output {
        if account.tls_policy.login() && !self.tls.is_tls() {
            warn!(user = %account.name, "login refused: the account requires TLS");
            return Output::reply(Reply::new(
                530,
                "This account requires TLS: reconnect and send AUTH TLS before logging in",
            ));
        }
        self.open_home(
            account,
            LoginMethod::Password,
            Reply::new(230, "Login successful"),
        )
    }

    /// A wrong password: 421 and the end when it banned the address or the session has
    /// failed too often, else 530.
    pub(super) fn password_rejected(&mut self, banned: Option<u64>) -> Output {
        self.failed_logins += 1;
        if let Some(secs) = banned {
            return Output::close(
                Reply::new(
                    421,
                    format!("Too many failed logins from your address; banned for {secs} s"),
                ),
                CloseReason::AddressBanned,
            );
        }
        if self.failed_logins >= self.settings.max_login_failures {
            return Output::close(
                Reply::new(421, "Too many failed logins; closing control connection"),
                CloseReason::TooManyFailedLogins,
            );
        }
        Output::reply(Reply::new(530, "Login incorrect"))
    }

    /// The guard would not let the password be checked: 421 and the end.
    pub(super) fn login_refused(&mut self, why: PreCheckRefusal) -> Output {
        let (text, reason) = match why {
            PreCheckRefusal::Banned(left) => (
                format!(
                    "Too many failed logins from your address; banned for {} s",
                    left.max(1)
                ),
                CloseReason::AddressBanned,
            ),
            PreCheckRefusal::UserBusy => (
                "Too many failed logins for this user name; try again later".to_string(),
                CloseReason::UserNameThrottled,
            ),
            // Only when the checks in flight did not end before the time to log in ran out.
            PreCheckRefusal::AddressBusy => (
                "Too many logins in progress from your address; try again later".to_string(),
                CloseReason::ChecksDidNotEnd,
            ),
        };
        Output::close(Reply::new(421, text), reason)
    }

    fn open_home(&mut self, account: Account, method: LoginMethod, ok: Reply) -> Output {
        self.pending = Some(Pending::Home {
            account: account.clone(),
            method,
            ok,
        });
        Output::effect(Effect::OpenHome { account, method })
    }

    pub(super) fn home_opened(
        &mut self,
        account: Account,
        method: LoginMethod,
        ok: Reply,
        opened: Option<Capabilities>,
    ) -> Output {
        let Some(storage) = opened else {
            return Output::reply(Reply::new(530, "Login refused: home directory unavailable"));
        };
        self.storage = storage;
        self.login = LoginState::LoggedIn { account, method };
        self.cwd = VPath::root();
        Output::reply(ok)
    }

    /// After a reload: new permissions and TLS policy apply from the next command; a user who
    /// was removed or disabled is logged out (421).
    pub(super) fn reloaded(&mut self, update: AccountUpdate) -> Output {
        let LoginState::LoggedIn { account, .. } = &mut self.login else {
            return Output::default();
        };
        match update {
            AccountUpdate::Kept(perms, tls_policy) => {
                if perms != account.perms || tls_policy != account.tls_policy {
                    info!(user = %account.name, permissions = %perms, "permissions changed by a reload");
                }
                account.perms = perms;
                account.tls_policy = tls_policy;
                Output::default()
            }
            AccountUpdate::Anonymous(perms) => {
                account.perms = perms;
                Output::default()
            }
            AccountUpdate::AnonymousOff => Output::close(
                Reply::new(421, "Anonymous access was turned off; closing"),
                CloseReason::AnonymousTurnedOff,
            ),
            AccountUpdate::Gone => {
                warn!(user = %account.name, "account removed or disabled by a reload: logging out");
                Output::close(
                    Reply::new(421, "Your account was disabled; closing"),
                    CloseReason::AccountDisabled,
                )
            }
        }
    }
}
