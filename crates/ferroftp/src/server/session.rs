//! One control connection: the tokio driver of the session core ([`crate::core`]).
//!
//! The core decides every reply and what is to be done; this driver owns the control stream
//! (lines in, replies out: `control`), carries out the core's effects and reports their results
//! as events (`effects`, `login`, `tls`), runs transfers on the data connections (`transfer`,
//! `listings`) and keeps the timers the core names.
//!
//! The loop reads the control connection even while a transfer runs, so that ABOR and STAT are
//! answered mid-transfer; other commands that arrive during a transfer wait in a short queue and
//! are answered in order afterwards, as pipelining clients expect.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use ferroftp_proto::command;
use ferroftp_proto::line::{self, LineTooLong};
use ferroftp_proto::listing;
use ferroftp_proto::{Command, MlstFacts, Reply, TransferType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::data::{self, CopyError, PassiveListener};
use super::guard::Admission;
use super::registry::{SessionHandle, TransferState};
use super::stream::{self, Stream};
use super::{Live, SessionPermit, Shared};
use crate::auth::{self, HashParams, Permissions, Refusal, Upgrade, User};
use crate::config::{ListenerConfig, ListenerMode};
use crate::core::fs_reply;
use crate::core::replies::{check_line_ends, facts, is_anonymous_name, perm_fact};
use crate::core::{
    self, Account, AccountUpdate, CloseReason, DataSetup, Effect, Event, Output, PassiveFailure,
    PassiveKind, PreCheckRefusal, StorageDone, StorageOp, TlsVersion, TransferEnd, TransferKind,
    TransferSource,
};
use crate::observe::metrics::{Direction, LoginMethod, Metrics, TlsConnection, TransferResult};
use crate::storage::{
    self, Entry, EntryKind, ReadStream, Storage, StorageError, Upload, UploadFile, VPath,
};
use crate::tls::{DataDirection, SessionTls};

mod control;
mod effects;
mod listings;
mod login;
mod tls;
mod transfer;

use listings::{ascii_size, send_listing, stat_listing};
use tls::{implicit_handshake, open_data_tls};
use transfer::wait_transfer;

/// argon2 work (KiB times passes) small enough to verify on the async worker itself: about
/// 50 µs, less than handing it to a blocking thread and back. The default cost (19456 × 2)
/// always goes to the bounded blocking pool.
const INLINE_HASH_COST: u64 = 64;

/// Lines read ahead while a transfer runs; past this the connection is not read until the
/// transfer ends (back-pressure instead of unbounded buffering).
const MAX_QUEUED_LINES: usize = 16;

/// Serve one control connection to the end.
pub(crate) async fn run(
    stream: TcpStream,
    (peer, local): (SocketAddr, SocketAddr),
    id: u64,
    shared: Arc<Shared>,
    listener: ListenerConfig,
    permit: SessionPermit,
    handle: Arc<SessionHandle>,
) {
    let span = tracing::info_span!("session", id, %peer, user = tracing::field::Empty);
    async move {
        info!(local = %local, mode = %listener.mode, "session opened");
        let started = Instant::now();
        let (ctrl, tls) = if listener.mode == ListenerMode::Implicit {
            let live = shared.live();
            let handshake = tokio::select! {
                r = implicit_handshake(stream, &live, &shared.metrics) => r,
                _ = handle.kicked() => Err(CloseReason::Kicked.as_str().to_string()),
            };
            match handshake {
                Ok(pair) => pair,
                Err(reason) => {
                    warn!(%reason, "TLS handshake failed on the implicit FTPS listener; connection closed");
                    info!(reason = "TLS handshake failed", user = "-", duration_ms = started.elapsed().as_millis() as u64, "session closed");
                    drop(permit);
                    return;
                }
            }
        } else {
            (Stream::Plain(stream), None)
        };
        let mut session = Session::new(ctrl, peer, local, shared, listener, handle);
        if let Some(tls) = tls {
            // Implicit FTPS: protected from the start, data connections included (the
            // convention of port 990); PBSZ and PROT are accepted but not needed.
            let version = session.ctrl.tls_state().map_or(TlsVersion::Other, tls_version);
            session.core.implicit_tls(version);
            session.tls = Some(tls);
        }
        let reason = session.serve().await.as_str();
        let user = session.core.user().map(str::to_owned);
        info!(
            reason,
            user = user.as_deref().unwrap_or("-"),
            duration_ms = started.elapsed().as_millis() as u64,
            "session closed"
        );
        drop(permit);
    }
    .instrument(span)
    .await;
}

struct Running {
    handle: JoinHandle<Outcome>,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
    kind: TransferKind,
    started: Instant,
    /// How the bytes move, for the log: `sendfile`, `tls` or `copy`.
    io: &'static str,
    /// TYPE I (else TYPE A), for the transfer log.
    binary: bool,
}

enum Job {
    Send(SendSource),
    Receive(UploadFile, Upload),
}

enum SendSource {
    /// A file, its starting offset and the bytes left in it.
    File(ReadStream, u64, u64),
    Listing(ListSource, LineFormat),
}

/// What a listing sends: entries already read, or a directory read as it is sent.
enum ListSource {
    Entries(Vec<Entry>),
    Dir(storage::DirStream),
    /// The first batch of a directory, already read, then the rest of it.
    Continued(Vec<Entry>, storage::DirStream),
}

/// How a listing's lines are written.
#[derive(Clone)]
struct LineFormat {
    style: ListStyle,
    perms: Permissions,
    mlst: MlstFacts,
    prefix: String,
    now: SystemTime,
}

/// The lines of a listing, made a chunk at a time on a blocking thread (reading the directory
/// as they go) while the previous chunk is being sent.
struct ListingLines {
    fmt: LineFormat,
    /// Entries read and not yet written.
    entries: std::vec::IntoIter<Entry>,
    /// The directory still to read, if any.
    dir: Option<storage::DirStream>,
    /// Whether the next read of `dir` is its first (a directory read whole in it is sorted).
    first_read: bool,
}

/// A directory with up to this many entries is listed sorted by name; a bigger one is streamed
/// in the order the file system gives, so that memory stays bounded whatever its size.
const SORTED_LISTING_LIMIT: usize = 1000;

/// Entries read per batch when streaming a big directory.
const LISTING_BATCH: usize = 512;

/// Bytes of listing gathered before they are written to the data connection.
const LISTING_CHUNK: usize = 64 * 1024;

/// Lines a `STAT path` reply holds at most (it travels on the control connection).
const STAT_LISTING_LIMIT: usize = 10_000;

struct Outcome {
    result: Result<(), TransferError>,
    upload: Option<Upload>,
}

enum TransferError {
    DataConnection(io::Error),
    /// The TLS side of the data connection failed or was refused (522).
    DataTls(String),
    /// A TLS upload ended without close_notify while that is required.
    Truncated,
    Copy(CopyError),
    Aborted,
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Close(CloseReason),
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// How a transfer's data connection is protected.
struct DataTls {
    session: SessionTls,
    direction: DataDirection,
    handshake_timeout: std::time::Duration,
    require_reuse: bool,
    require_close_notify: bool,
    /// Where a failed handshake is counted.
    metrics: Arc<Metrics>,
}

/// The logged-in user's storage and home directory (while the core says someone is logged in).
struct Home {
    fs: Arc<dyn Storage>,
    /// The home directory on disk, for the transfer log's file names.
    path: std::path::PathBuf,
}

/// The home a password or certificate check found, for the `OpenHome` that follows.
enum FoundHome {
    /// Resolved and opened in the same trip as the password check.
    Landed(Landing),
    /// The account's configured home, still to open.
    Configured(Option<std::path::PathBuf>),
}

/// What one command's effects hand on to the next effect of the same command: kept in the
/// effect loop's (boxed) future, not in every idle session.
#[derive(Default)]
struct Scratch {
    /// AUTH: the TLS set-up made ready before the 234.
    tls_ready: Option<SessionTls>,
    /// The home a password or certificate check found.
    found: Option<FoundHome>,
    /// What a transfer reads or writes, opened and waiting for its data connection.
    prepared: Option<Job>,
}

/// What carrying out an effect leads to.
enum Step {
    Event(Event),
    Done,
    Close(CloseReason),
}

/// The tokio driver of one control connection: it owns the sockets, TLS, the storage handle,
/// the transfers and the timers, carries out the core's effects and reports back.
struct Session {
    ctrl: Stream,
    listener: ListenerConfig,
    /// The rules: what each command does and answers.
    core: core::Session,
    /// Set once the control connection is TLS.
    tls: Option<SessionTls>,
    /// A line over the limit arrived (the limit); the session ends once the lines before it ran.
    too_long: Option<usize>,
    inbuf: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    shared: Arc<Shared>,
    /// The configuration and users in force, taken afresh before each command.
    live: Arc<Live>,
    home: Option<Home>,
    /// The passive port the core's `DataSetup::Passive` stands for.
    passive: Option<PassiveListener>,
    transfer: Option<Running>,
    /// What the admin API sees of this session, and its way to close it.
    handle: Arc<SessionHandle>,
    /// Changes at each reload, so that an idle session takes the new configuration at once.
    reloaded: tokio::sync::watch::Receiver<u64>,
}

/// The core's settings from the configuration in force.
fn settings(live: &Live, listener: &ListenerConfig) -> core::Settings {
    let cfg = &live.config;
    core::Settings {
        mode: listener.mode,
        tls_policy: listener.tls_policy,
        anonymous: cfg.anonymous.enabled.then_some(cfg.anonymous.permissions),
        max_login_failures: cfg.limits.max_login_failures,
        idle_timeout_secs: cfg.limits.idle_timeout_secs,
        login_timeout_secs: cfg.limits.login_timeout_secs,
        data_timeout: cfg.limits.data_timeout(),
        active: cfg.active.clone(),
    }
}

fn tls_version(conn: &rustls::ServerConnection) -> TlsVersion {
    match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::V1_3,
        Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::V1_2,
        _ => TlsVersion::Other,
    }
}

fn metrics_method(m: core::LoginMethod) -> LoginMethod {
    match m {
        core::LoginMethod::Password => LoginMethod::Password,
        core::LoginMethod::Certificate => LoginMethod::Certificate,
        core::LoginMethod::Anonymous => LoginMethod::Anonymous,
    }
}

impl Session {
    /// The running transfer's path and size, as the core keeps them (not copied per transfer).
    fn transfer_target(&self) -> (&VPath, Option<u64>) {
        static ROOT: std::sync::OnceLock<VPath> = std::sync::OnceLock::new();
        match self.core.activity() {
            core::Activity::Transfer(r) => (&r.path, r.total),
            core::Activity::Idle => (ROOT.get_or_init(VPath::root), None),
        }
    }

    fn new(
        ctrl: Stream,
        peer: SocketAddr,
        local: SocketAddr,
        shared: Arc<Shared>,
        listener: ListenerConfig,
        handle: Arc<SessionHandle>,
    ) -> Self {
        let live = shared.live();
        let core = core::Session::new(settings(&live, &listener), peer, local, Instant::now());
        Self {
            ctrl,
            listener,
            core,
            tls: None,
            too_long: None,
            inbuf: Vec::new(),
            lines: VecDeque::new(),
            live,
            reloaded: shared.reloaded.subscribe(),
            shared,
            home: None,
            passive: None,
            transfer: None,
            handle,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStyle {
    List,
    Nlst,
    Mlsd,
}

/// What a listing command shows: the entries, the path listed, and for NLST of a path the
/// prefix each name gets (so that `NLST dir` answers `dir/a`, as clients' mget expects).
struct Listing {
    path: VPath,
    source: ListSource,
    prefix: String,
}

/// After a successful login with a legacy hash (bcrypt, crypt(3)) and with
/// `auth.rehash_to_argon2` on: replace the hash in the users file by an argon2id one, in the
/// background, once per user and load of the users file. The hashing waits for a place in the
/// bounded hash pool and runs on a blocking thread, so that neither the login's reply nor the
/// async workers wait for it. The server's users in memory stay as they are (the old hash
/// still verifies); the next reload or restart reads the new one.
/// Where a login lands: the home directory resolved, and opened or why not; `Err` when the
/// home is not allowed.
type Landing = Result<(std::path::PathBuf, Result<Arc<dyn Storage>, StorageError>), String>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Io(io::Error::other(e.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::listings::is_glob;
    use super::*;
    use crate::core::allowed_before_login;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, Fut>(_: impl FnOnce(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every idle session is a task waiting in `serve`: the state of a command (`dispatch`:
    /// a login, the start of a transfer, AUTH) is boxed while it runs, so that it is not part
    /// of every session's future.
    #[test]
    fn an_idle_sessions_future_holds_no_commands_state() {
        let serve = future_size(|s: &mut Session| s.serve());
        let dispatch = future_size(|s: &mut Session| async move { s.dispatch(b"NOOP").await });
        assert!(
            serve < dispatch,
            "serve's future ({serve} B) holds dispatch's ({dispatch} B) inline"
        );
    }

    #[test]
    fn perm_fact_follows_the_users_permissions() {
        assert_eq!(perm_fact(Permissions::ALL, EntryKind::File), "rwadf");
        assert_eq!(perm_fact(Permissions::ALL, EntryKind::Dir), "elcmpdf");
        assert_eq!(perm_fact(Permissions::READ_ONLY, EntryKind::File), "r");
        assert_eq!(perm_fact(Permissions::READ_ONLY, EntryKind::Dir), "el");
        assert_eq!(perm_fact(Permissions::NONE, EntryKind::Dir), "e");
    }

    #[test]
    fn only_session_set_up_commands_run_before_login() {
        assert!(allowed_before_login(&Command::Feat));
        assert!(allowed_before_login(&Command::User("a".into())));
        assert!(!allowed_before_login(&Command::List(None)));
        assert!(!allowed_before_login(&Command::Retr("x".into())));
        assert!(!allowed_before_login(&Command::Stat(Some("/".into()))));
        assert!(!allowed_before_login(&Command::Pasv));
    }

    #[test]
    fn globs_are_recognised_in_the_last_component_only() {
        assert!(is_glob("*.txt"));
        assert!(is_glob("dir/file?.log"));
        assert!(!is_glob("we*ird/name"));
        assert!(!is_glob("plain.txt"));
    }

    #[test]
    fn storage_errors_map_to_distinct_replies() {
        assert_eq!(fs_reply("x", &StorageError::NotFound).code, 550);
        assert_eq!(fs_reply("x", &StorageError::InvalidName).code, 553);
        assert_eq!(fs_reply("x", &StorageError::NoSpace).code, 452);
        assert_eq!(fs_reply("x", &StorageError::InvalidOffset).code, 554);
        let io = StorageError::Io(io::Error::other("/secret/host/path"));
        let reply = fs_reply("x", &io);
        assert_eq!(reply.code, 451);
        assert!(
            !reply.lines.join(" ").contains("/secret"),
            "host paths never reach the client"
        );
    }
}
