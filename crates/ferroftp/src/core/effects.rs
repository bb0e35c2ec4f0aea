//! What the core asks the driver to do (effects), what the driver tells it back (events), and
//! the typed names of transfers and session ends.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Instant, SystemTime};

use ferroftp_proto::Reply;
use ferroftp_proto::verbs::Verb;

use super::state::{Account, DataSetup};
use crate::storage::{Capabilities, Entry, StorageError, VPath, WriteMode};

/// The kinds of transfer over a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// RETR: a file to the client.
    Retr,
    /// STOR: a file from the client, replacing (or, after REST, resuming) the old one.
    Stor,
    /// APPE: a file from the client, appended.
    Appe,
    /// STOU: a file from the client under a new unique name.
    Stou,
    /// LIST: a directory listing in `ls -l` form.
    List,
    /// NLST: names only.
    Nlst,
    /// MLSD: machine-readable facts (RFC 3659).
    Mlsd,
}

impl TransferKind {
    /// The verb, as the logs, the metrics and the admin API name it.
    pub fn verb(self) -> Verb {
        match self {
            Self::Retr => Verb::Retr,
            Self::Stor => Verb::Stor,
            Self::Appe => Verb::Appe,
            Self::Stou => Verb::Stou,
            Self::List => Verb::List,
            Self::Nlst => Verb::Nlst,
            Self::Mlsd => Verb::Mlsd,
        }
    }

    /// Whether the client sends the bytes.
    pub fn is_upload(self) -> bool {
        matches!(self, Self::Stor | Self::Appe | Self::Stou)
    }

    /// Whether it is a listing (LIST, NLST, MLSD).
    pub fn is_listing(self) -> bool {
        matches!(self, Self::List | Self::Nlst | Self::Mlsd)
    }
}

/// Why a session ended; `as_str` is the `reason` of the "session closed" log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is stopping.
    Shutdown,
    /// An administrator closed the session (admin API).
    Kicked,
    /// The client closed the control connection.
    ClientClosed,
    /// The client went away before the greeting was sent.
    GoneBeforeGreeting,
    /// A reply could not be written.
    WriteFailed,
    /// A control line over the limit.
    LineTooLong,
    /// The client vanished while a transfer ran.
    GoneDuringTransfer,
    /// The client vanished at the end of an upload.
    GoneDuringUpload,
    /// No command within the idle timeout.
    IdleTimeout,
    /// Not logged in within the login timeout.
    LoginTimeout,
    /// A reload turned anonymous access off while an anonymous user was logged in.
    AnonymousTurnedOff,
    /// A reload removed or disabled the logged-in account.
    AccountDisabled,
    /// AUTH found a control connection that was not plain (cannot happen).
    NotPlain,
    /// The TLS handshake of the control connection failed.
    TlsHandshakeFailed,
    /// QUIT.
    ClientQuit,
    /// Banned after failed logins.
    AddressBanned,
    /// Too many failed logins in this session.
    TooManyFailedLogins,
    /// Too many failed logins for the user name (from anywhere).
    UserNameThrottled,
    /// The password checks in flight from the address did not end in time.
    ChecksDidNotEnd,
}

impl CloseReason {
    /// The log and metric text (unchanged from the `&'static str` reasons it replaces).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "server shutting down",
            Self::Kicked => "closed by an administrator",
            Self::ClientClosed => "client closed the control connection",
            Self::GoneBeforeGreeting => "client gone before the greeting",
            Self::WriteFailed => "control connection write failed",
            Self::LineTooLong => "control line too long",
            Self::GoneDuringTransfer => "client gone during a transfer",
            Self::GoneDuringUpload => "client gone during an upload",
            Self::IdleTimeout => "idle timeout",
            Self::LoginTimeout => "login timeout",
            Self::AnonymousTurnedOff => "anonymous access turned off by a reload",
            Self::AccountDisabled => "account disabled by a reload",
            Self::NotPlain => "internal error: control connection not plain",
            Self::TlsHandshakeFailed => "TLS handshake failed",
            Self::ClientQuit => "client quit",
            Self::AddressBanned => "address banned",
            Self::TooManyFailedLogins => "too many failed logins",
            Self::UserNameThrottled => "user name throttled",
            Self::ChecksDidNotEnd => "password checks from the address did not end in time",
        }
    }
}

/// How a login was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// USER and PASS.
    Password,
    /// A TLS client certificate listed for the user.
    Certificate,
    /// USER anonymous / ftp.
    Anonymous,
}

/// The AUTH mechanisms that start TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMechanism {
    /// `AUTH TLS` or `AUTH TLS-C`.
    Tls,
    /// `AUTH TLS-C` (named as sent, for the 234 text).
    TlsC,
    /// `AUTH SSL`: data protected from the start.
    Ssl,
    /// `AUTH TLS-P`: data protected from the start.
    TlsP,
}

impl TlsMechanism {
    /// The mechanism as the client wrote it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "TLS",
            Self::TlsC => "TLS-C",
            Self::Ssl => "SSL",
            Self::TlsP => "TLS-P",
        }
    }

    /// The mechanisms from before PROT, which protect data connections at once.
    pub fn protects_data(self) -> bool {
        matches!(self, Self::Ssl | Self::TlsP)
    }
}

/// The TLS version of the control connection, for STAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.3.
    V1_3,
    /// TLS 1.2.
    V1_2,
    /// Another (or unknown) version.
    Other,
}

/// Which passive command asked for a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveKind {
    /// PASV: an IPv4 address and a port.
    Pasv,
    /// EPSV: a port only.
    Epsv,
}

/// A file-system operation the core needs done, on a path already resolved and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOp {
    /// What the path is (CWD, RNFR, MDTM, MLST, SIZE).
    Metadata(VPath),
    /// MKD.
    Mkdir(VPath),
    /// RMD.
    Rmdir(VPath),
    /// DELE.
    RemoveFile(VPath),
    /// RNTO; `replace` whether an existing target may be replaced.
    Rename {
        /// The RNFR path.
        from: VPath,
        /// The RNTO path.
        to: VPath,
        /// The account may overwrite.
        replace: bool,
    },
    /// SIZE in TYPE A: the size the file has on the wire.
    AsciiSize(VPath),
    /// MFMT.
    SetModified(VPath, SystemTime),
    /// SITE CHMOD.
    SetMode(VPath, u32),
    /// STAT with a path: the listing on the control connection (the driver lists, `arg` as
    /// the client wrote it, from `cwd`).
    StatListing {
        /// The working directory.
        cwd: VPath,
        /// The argument.
        arg: String,
    },
}

/// What a storage operation gave back.
#[derive(Debug)]
pub enum StorageDone {
    /// Done, nothing to report.
    Done,
    /// The entry asked for.
    Entry(Entry),
    /// A size.
    Size(u64),
    /// A reply the driver's listing code made (STAT path).
    Reply(Reply),
}

/// What a transfer needs opened in storage before its data connection is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferSource {
    /// RETR: open `path` for reading at `offset`.
    Read {
        /// The file.
        path: VPath,
        /// Where to start (REST).
        offset: u64,
    },
    /// STOR/APPE: create the upload of `path` in `mode`.
    Write {
        /// The file.
        path: VPath,
        /// Replace, append, or write at an offset.
        mode: WriteMode,
    },
    /// STOU: a new file in `dir`, named after `hint`.
    Unique {
        /// The directory.
        dir: VPath,
        /// The name to start from.
        hint: String,
    },
    /// LIST, NLST, MLSD of `arg` (as sent) from `cwd`.
    Listing {
        /// The working directory.
        cwd: VPath,
        /// The argument, if any.
        arg: Option<String>,
    },
}

/// What the core asks the driver to do; the driver answers with the [`Event`] named.
#[derive(Debug)]
pub enum Effect {
    /// Find the user a verified TLS client certificate logs in as `name` (→ `Certificate`).
    CheckCertificate {
        /// The USER argument.
        name: String,
    },
    /// Check `password` for `name`, with the ban and throttling rules (→ `PasswordChecked`,
    /// `LoginRefused`).
    VerifyPassword {
        /// The user.
        name: String,
        /// The password.
        password: String,
    },
    /// Open the home of the account being logged in (→ `HomeOpened`).
    OpenHome {
        /// Who.
        account: Account,
        /// How they proved it.
        method: LoginMethod,
    },
    /// Check that TLS can be offered now (→ `TlsReady` or `TlsUnavailable`).
    PrepareTls(TlsMechanism),
    /// The 234 is out: run the handshake (→ `TlsEstablished` or `TlsFailed`).
    Handshake(TlsMechanism),
    /// Open a passive port (→ `PassiveOpened` or `PassiveFailed`).
    OpenPassive(PassiveKind),
    /// Run a storage operation (→ `Storage`).
    Storage(StorageOp),
    /// Open what a transfer reads or writes (→ `TransferPrepared` or `Storage(Err)`).
    PrepareTransfer(TransferKind, TransferSource),
    /// Send the 150 (already among the replies) and run the prepared transfer over `data`
    /// (→ `TransferEnded`, later).
    StartTransfer {
        /// The kind.
        kind: TransferKind,
        /// The data connection to open: passive (the port the driver holds) or active.
        data: DataSetup,
        /// Whether the data connection is TLS (PROT P).
        protected: bool,
    },
    /// Drop the transfer the driver prepared (it was refused after all).
    DiscardTransfer,
    /// Stop the running transfer; its end comes as `TransferEnded`.
    AbortTransfer,
    /// Report the running transfer's progress (→ `TransferProgress`).
    TransferStatus,
    /// End the session (the replies before it are sent first).
    Close(CloseReason),
}

/// What the driver tells the core.
#[derive(Debug)]
pub enum Event {
    /// The certificate lookup: the account it logs in, if any.
    Certificate(Option<Account>),
    /// The password was right.
    PasswordAccepted(Account),
    /// The password was wrong (or the account is disabled); `banned` when this failure banned
    /// the address (its duration in seconds).
    PasswordRejected {
        /// The ban it caused, in seconds.
        banned: Option<u64>,
    },
    /// The guard would not let the password be checked.
    LoginRefused(PreCheckRefusal),
    /// The home was opened, with what its storage can do (`None`: it could not be opened).
    HomeOpened(Option<Capabilities>),
    /// TLS can be offered.
    TlsReady,
    /// TLS cannot be offered: configured but failing (`true`) or not configured.
    TlsUnavailable {
        /// TLS is configured but its set-up failed.
        configured: bool,
    },
    /// The control connection is TLS now.
    TlsEstablished(TlsVersion),
    /// The handshake failed.
    TlsFailed,
    /// The control connection was not plain when AUTH came (cannot happen).
    NotPlain,
    /// A passive port is open: the port clients are told, and for PASV the address.
    PassiveOpened {
        /// The port bound.
        local_port: u16,
        /// The port announced (NAT may map it).
        port: u16,
        /// PASV's address and port.
        pasv: Option<SocketAddrV4>,
    },
    /// No passive port.
    PassiveFailed(PassiveFailure),
    /// A storage operation's result.
    Storage(Result<StorageDone, StorageError>),
    /// What a transfer opened: bytes to send when known, and the path (STOU's new name).
    TransferPrepared {
        /// Bytes to send (RETR).
        total: Option<u64>,
        /// The path as the client sees it.
        path: VPath,
    },
    /// A transfer's source could not be made ready for another reason (its reply).
    TransferRefused(Reply),
    /// The running transfer has moved `bytes` so far.
    TransferProgress {
        /// Bytes so far.
        bytes: u64,
        /// The time now.
        now: Instant,
    },
    /// The running transfer ended.
    TransferEnded(TransferEnd),
    /// The passive port's time is up.
    PassiveExpired,
    /// A reload changed the account of the logged-in user.
    Reloaded(AccountUpdate),
}

/// Why the guard refused to check a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreCheckRefusal {
    /// The address is banned for this many seconds.
    Banned(u64),
    /// Too many failures for the user name.
    UserBusy,
    /// The checks in flight from the address did not end in time.
    AddressBusy,
}

/// Why no passive port was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveFailure {
    /// The configured passive address does not resolve (the old set-up stays).
    Unresolvable,
    /// PASV on a listener with an IPv6 address and no address to announce (the old set-up
    /// stays).
    Ipv6Local,
    /// No port could be bound (the old set-up is gone).
    Bind(String),
}

/// What a reload did to the logged-in account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountUpdate {
    /// Still there, with these permissions and TLS policy.
    Kept(crate::auth::Permissions, crate::config::TlsPolicy),
    /// An anonymous login, still allowed, with these permissions.
    Anonymous(crate::auth::Permissions),
    /// Anonymous access was turned off.
    AnonymousOff,
    /// Removed or disabled.
    Gone,
}

/// How a transfer ended, as the driver saw it.
#[derive(Debug)]
pub enum TransferEnd {
    /// All bytes moved (an upload committed).
    Complete,
    /// A download moved fewer bytes than the file had when it was opened.
    Shrank {
        /// Bytes sent.
        bytes: u64,
        /// Bytes the file had.
        total: u64,
    },
    /// ABOR, or the client closed the data connection around an ABOR.
    Aborted,
    /// The data connection could not be opened.
    NoDataConnection(String),
    /// The data connection's TLS failed or was refused.
    DataTls(String),
    /// A TLS upload ended without close_notify; whether the file could be restored.
    Truncated {
        /// The file is as it was.
        restored: bool,
    },
    /// The data connection failed.
    Network(String),
    /// A local error (read, write, commit).
    Local(StorageError),
    /// The client went away at the end of an upload (discarded, session ends).
    ClientGone,
}

/// What the driver should send and do after one command or event.
#[derive(Debug, Default)]
pub struct Output {
    /// Replies, in order (at most three; kept inline: no allocation per command).
    pub replies: Replies,
    /// What to do once the replies are out.
    pub effect: Option<Effect>,
}

/// Up to three replies, inline.
#[derive(Debug, Default)]
pub struct Replies([Option<Reply>; 3]);

impl Replies {
    /// Add a reply (a fourth would be dropped; no step makes more than three).
    pub fn push(&mut self, r: Reply) {
        if let Some(slot) = self.0.iter_mut().find(|s| s.is_none()) {
            *slot = Some(r);
        } else {
            debug_assert!(false, "more than three replies in one step");
        }
    }

    /// The replies in order, taking them out.
    pub fn drain(&mut self) -> impl Iterator<Item = Reply> + '_ {
        self.0.iter_mut().filter_map(Option::take)
    }

    /// The replies in order.
    pub fn iter(&self) -> impl Iterator<Item = &Reply> {
        self.0.iter().flatten()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl Output {
    /// One reply, nothing else.
    pub fn reply(r: Reply) -> Self {
        let mut o = Self::default();
        o.replies.push(r);
        o
    }

    /// Only an effect.
    pub fn effect(e: Effect) -> Self {
        Self {
            replies: Replies::default(),
            effect: Some(e),
        }
    }

    /// A reply, then an effect.
    pub fn reply_then(r: Reply, e: Effect) -> Self {
        let mut o = Self::reply(r);
        o.effect = Some(e);
        o
    }

    /// A reply, then the end of the session.
    pub fn close(r: Reply, why: CloseReason) -> Self {
        Self::reply_then(r, Effect::Close(why))
    }
}

/// An active-mode target, canonical (an IPv4-mapped IPv6 address as IPv4).
pub(crate) fn canonical(target: SocketAddr) -> SocketAddr {
    SocketAddr::new(target.ip().to_canonical(), target.port())
}
