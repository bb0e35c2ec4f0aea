//! The session's state, as enums: who is logged in, how the control connection is protected,
//! how the next data connection is set up, and what runs now.

use std::net::SocketAddr;
use std::time::Instant;

use super::effects::{LoginMethod, PassiveKind, TlsMechanism, TlsVersion, TransferKind};
use crate::auth::Permissions;
use crate::config::TlsPolicy;
use crate::storage::VPath;
use ferroftp_proto::Reply;

/// Who is logging in or logged in, before and after the home is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// What the account may do.
    pub perms: Permissions,
    /// The account's own TLS policy (the listener's applies as well).
    pub tls_policy: TlsPolicy,
}

/// The login sequence (RFC 959 §4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    /// Nobody: USER first.
    LoggedOut,
    /// USER was accepted; PASS next.
    UserGiven(String),
    /// Logged in.
    LoggedIn {
        /// The account.
        account: Account,
        /// How.
        method: LoginMethod,
    },
}

/// Whether data connections are protected (PROT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// PROT C.
    Clear,
    /// PROT P.
    Private,
}

/// How the control connection is protected (RFC 4217).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    /// Plain.
    None,
    /// TLS, no PBSZ yet.
    Tls(TlsVersion),
    /// TLS and PBSZ; PROT chooses the data connections' protection.
    Pbsz(TlsVersion, Prot),
}

impl TlsState {
    /// Whether the control connection is TLS.
    pub fn is_tls(self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether data connections are TLS (PROT P).
    pub fn data_private(self) -> bool {
        matches!(self, Self::Pbsz(_, Prot::Private))
    }
}

/// How the next data connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSetup {
    /// Not set up: PASV, EPSV, PORT or EPRT first.
    None,
    /// Listening on `port` (the driver holds the socket) until `expires`.
    Passive {
        /// The local port.
        port: u16,
        /// When it is released if no transfer took it.
        expires: Instant,
    },
    /// Connect out to this address.
    Active(SocketAddr),
}

/// Which data set-up commands are allowed (RFC 2428 §4: EPSV ALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPolicy {
    /// Any of PASV, EPSV, PORT, EPRT.
    Any,
    /// After EPSV ALL: EPSV only.
    EpsvOnly,
}

/// A transfer under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// What it is.
    pub kind: TransferKind,
    /// The path as the client sees it.
    pub path: VPath,
    /// Bytes to send, when known.
    pub total: Option<u64>,
    /// When it started.
    pub started: Instant,
    /// ABOR arrived while it ran (it may have ended on its own meanwhile).
    pub abort_requested: bool,
}

/// What the session is doing between commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Waiting for a command.
    Idle,
    /// A transfer runs: only ABOR and STAT are answered, other commands wait.
    Transfer(Running),
}

/// What an effect's answer is for: the command that waits for it.
#[derive(Debug)]
pub(crate) enum Pending {
    /// USER over TLS, waiting for the certificate lookup.
    Certificate(String),
    /// PASS, waiting for the check.
    Password,
    /// The home being opened; the reply to send once it is.
    Home {
        account: Account,
        method: LoginMethod,
        ok: Reply,
    },
    /// AUTH, waiting for TLS to be ready, then for the handshake.
    Tls(TlsMechanism),
    /// PASV or EPSV.
    Passive(PassiveKind),
    /// A file command; `shown` is its argument as the client wrote it.
    Storage { cmd: FileCmd, shown: String },
    /// A transfer command, waiting for its source to open; `shown` names it in an error
    /// reply, `offset` is REST's (for the append-only refusal).
    Transfer {
        kind: TransferKind,
        shown: String,
        offset: u64,
    },
    /// STAT during a transfer.
    Progress,
}

/// The file commands answered after a storage operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileCmd {
    Cwd(VPath),
    Mkd(VPath),
    /// RMD, DELE: the log's operation and the reply text.
    Simple(&'static str, &'static str, VPath),
    Rnfr(VPath),
    Rnto {
        from: VPath,
        to: VPath,
        replace: bool,
    },
    /// SIZE; `ascii` while the first step (the metadata) runs in TYPE A.
    Size {
        path: VPath,
        ascii: bool,
    },
    Mdtm,
    Mfmt(std::time::SystemTime),
    Chmod(VPath, u32),
    Mlst(VPath),
    StatPath,
}
