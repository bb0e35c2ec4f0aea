//! Data connection set-up: PASV, EPSV (and EPSV ALL), PORT, EPRT, and ABOR with no transfer.

use std::net::SocketAddr;
use std::time::Instant;

use ferroftp_proto::{EpsvArg, Reply, addr};
use tracing::warn;

use super::effects::canonical;
use super::state::Pending;
use super::{DataPolicy, DataSetup, Effect, Event, Output, PassiveFailure, PassiveKind, Session};

impl Session {
    pub(super) fn cmd_pasv(&mut self) -> Output {
        if self.data_policy == DataPolicy::EpsvOnly {
            return Output::reply(Reply::new(503, "PASV is not allowed after EPSV ALL"));
        }
        if self.peer.is_ipv6() {
            // The data connection would come from the client's IPv4 address, not the one this
            // control connection has: it could never be matched to this session.
            return Output::reply(Reply::new(
                425,
                "PASV announces IPv4 addresses only, and this connection is IPv6: use EPSV",
            ));
        }
        self.pending = Some(Pending::Passive(PassiveKind::Pasv));
        Output::effect(Effect::OpenPassive(PassiveKind::Pasv))
    }

    pub(super) fn cmd_epsv(&mut self, arg: EpsvArg) -> Output {
        let family = addr::protocol_number(self.local.ip());
        match arg {
            EpsvArg::All => {
                self.data_policy = DataPolicy::EpsvOnly;
                return Output::reply(Reply::new(200, "EPSV ALL accepted: only EPSV from now on"));
            }
            EpsvArg::Protocol(p) if p != family => {
                return Output::reply(Reply::new(
                    522,
                    format!("Network protocol not supported, use ({family})"),
                ));
            }
            _ => {}
        }
        self.pending = Some(Pending::Passive(PassiveKind::Epsv));
        Output::effect(Effect::OpenPassive(PassiveKind::Epsv))
    }

    pub(super) fn passive_done(&mut self, kind: PassiveKind, event: Event, now: Instant) -> Output {
        match event {
            Event::PassiveOpened {
                local_port,
                port,
                pasv,
            } => {
                self.data = DataSetup::Passive {
                    port: local_port,
                    expires: now + self.settings.data_timeout,
                };
                Output::reply(match (kind, pasv) {
                    (PassiveKind::Pasv, Some(a)) => Reply::new(227, addr::pasv_reply_text(a)),
                    _ => Reply::new(229, addr::epsv_reply_text(port)),
                })
            }
            Event::PassiveFailed(why) => Output::reply(match why {
                PassiveFailure::Unresolvable => Reply::new(
                    425,
                    "Cannot open passive connection: the server's passive address does not resolve",
                ),
                PassiveFailure::Ipv6Local => {
                    Reply::new(425, "PASV cannot announce an IPv6 address; use EPSV")
                }
                PassiveFailure::Bind(e) => {
                    // A new PASV replaces the old one, whose port is released first.
                    self.data = DataSetup::None;
                    Reply::new(425, format!("Cannot open passive connection: {e}"))
                }
            }),
            _ => Output::reply(Reply::new(451, "Local error in processing")),
        }
    }

    pub(super) fn cmd_active(&mut self, target: SocketAddr, verb: &str) -> Output {
        let cfg = &self.settings.active;
        if self.data_policy == DataPolicy::EpsvOnly {
            return Output::reply(Reply::new(
                503,
                format!("{verb} is not allowed after EPSV ALL"),
            ));
        }
        if !cfg.enabled {
            return Output::reply(Reply::new(
                504,
                "Active mode is disabled on this server; use PASV or EPSV",
            ));
        }
        let target = canonical(target);
        if !cfg.allow_foreign_ip && target.ip() != self.peer.ip() {
            warn!(%target, "refused an active connection to another host (FTP bounce, RFC 2577)");
            return Output::reply(Reply::new(
                504,
                format!(
                    "{verb} refused: the data connection must go to your own address {}",
                    self.peer.ip()
                ),
            ));
        }
        if !cfg.allow_privileged_ports && target.port() < 1024 {
            warn!(%target, "refused an active connection to a privileged port (RFC 2577)");
            return Output::reply(Reply::new(
                504,
                format!("{verb} refused: ports below 1024 are not allowed"),
            ));
        }
        self.data = DataSetup::Active(target);
        Output::reply(Reply::new(200, format!("{verb} command successful")))
    }

    pub(super) fn cmd_abor_idle(&mut self) -> Output {
        Output::reply(match std::mem::replace(&mut self.data, DataSetup::None) {
            DataSetup::None => Reply::new(225, "No transfer to abort"),
            _ => Reply::new(226, "Data connection closed"),
        })
    }
}
