//! Security (RFC 2228, RFC 4217): AUTH, PBSZ, PROT.

use ferroftp_proto::{ProtLevel, Reply};
use tracing::info;

use super::state::Pending;
use super::{CloseReason, Effect, Event, Output, Prot, Session, TlsMechanism, TlsState};

impl Session {
    pub(super) fn cmd_auth(&mut self, mechanism: &str) -> Output {
        if !self.settings.mode.offers_tls() {
            return Output::reply(Reply::new(502, "TLS is not offered on this listener"));
        }
        if self.tls.is_tls() {
            return Output::reply(Reply::new(503, "The control connection is already TLS"));
        }
        let m = match mechanism {
            "TLS" => TlsMechanism::Tls,
            "TLS-C" => TlsMechanism::TlsC,
            "SSL" => TlsMechanism::Ssl,
            "TLS-P" => TlsMechanism::TlsP,
            _ => {
                return Output::reply(Reply::new(
                    504,
                    format!("AUTH {mechanism} is not supported; use AUTH TLS"),
                ));
            }
        };
        self.pending = Some(Pending::Tls(m));
        Output::effect(Effect::PrepareTls(m))
    }

    pub(super) fn tls_prepared(&mut self, m: TlsMechanism, event: Event) -> Output {
        match event {
            Event::TlsReady => {
                self.pending = Some(Pending::Tls(m));
                Output::reply_then(
                    Reply::new(
                        234,
                        format!("AUTH {} ok; start the TLS handshake", m.as_str()),
                    ),
                    Effect::Handshake(m),
                )
            }
            Event::TlsUnavailable { configured: true } => {
                Output::reply(Reply::new(431, "TLS is unavailable on the server just now"))
            }
            _ => Output::reply(Reply::new(502, "TLS is not offered on this listener")),
        }
    }

    pub(super) fn tls_done(&mut self, m: TlsMechanism, event: Event) -> Output {
        match event {
            Event::TlsEstablished(version) => {
                // A USER sent in the clear does not carry over.
                if matches!(self.login, super::LoginState::UserGiven(_)) {
                    self.login = super::LoginState::LoggedOut;
                }
                // AUTH SSL and TLS-P come from the days before PROT: data is protected.
                self.tls = if m.protects_data() {
                    TlsState::Pbsz(version, Prot::Private)
                } else {
                    TlsState::Tls(version)
                };
                info!(mechanism = m.as_str(), "control connection is now TLS");
                Output::default()
            }
            Event::NotPlain => Output::effect(Effect::Close(CloseReason::NotPlain)),
            _ => Output::effect(Effect::Close(CloseReason::TlsHandshakeFailed)),
        }
    }

    pub(super) fn cmd_pbsz(&mut self) -> Reply {
        match self.tls {
            TlsState::None => {
                return Reply::new(
                    503,
                    "PBSZ needs a TLS control connection: send AUTH TLS first",
                );
            }
            TlsState::Tls(v) => self.tls = TlsState::Pbsz(v, Prot::Clear),
            TlsState::Pbsz(..) => {}
        }
        // RFC 4217 §8: with TLS the buffer size is always 0.
        Reply::new(200, "PBSZ=0")
    }

    pub(super) fn cmd_prot(&mut self, level: ProtLevel) -> Reply {
        let version = match self.tls {
            TlsState::None => {
                return Reply::new(
                    503,
                    "PROT needs a TLS control connection: send AUTH TLS first",
                );
            }
            TlsState::Tls(_) => return Reply::new(503, "Send PBSZ 0 before PROT"),
            TlsState::Pbsz(v, _) => v,
        };
        match level {
            ProtLevel::Private => {
                self.tls = TlsState::Pbsz(version, Prot::Private);
                Reply::new(200, "PROT P ok: data connections are protected by TLS")
            }
            ProtLevel::Clear if self.data_tls_required() => Reply::new(
                534,
                "PROT C refused: this server requires protected data connections (PROT P)",
            ),
            ProtLevel::Clear => {
                self.tls = TlsState::Pbsz(version, Prot::Clear);
                Reply::new(200, "PROT C ok: data connections are not protected")
            }
            ProtLevel::Safe | ProtLevel::Confidential => {
                Reply::new(536, "Only PROT P and PROT C are supported")
            }
        }
    }

    /// Refuse a transfer whose data connection would be clear when policy forbids it.
    pub(super) fn check_data_protection(&self) -> Result<(), Reply> {
        if self.data_tls_required() && !self.tls.data_private() {
            return Err(Reply::new(
                521,
                "Data connections must be protected on this server: send PBSZ 0 and PROT P",
            ));
        }
        Ok(())
    }
}
