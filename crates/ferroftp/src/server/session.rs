//! One control connection: the command loop, session state and the command handlers.
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
use ferroftp_proto::listing::{self, Facts, FileKind};
use ferroftp_proto::reply::quote_path;
use ferroftp_proto::verbs::{self, TlsOffer, Verb};
use ferroftp_proto::{
    Command, EpsvArg, MlstFacts, OptsCommand, ProtLevel, Reply, SiteCommand, TransferType, addr,
};
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
use crate::auth::{self, HashParams, Permission, Permissions, Refusal, Upgrade, User};
use crate::config::{ListenerConfig, ListenerMode, TlsPolicy};
use crate::observe::metrics::{Direction, LoginMethod, Metrics, TlsConnection, TransferResult};
use crate::storage::{
    self, Entry, EntryKind, ReadStream, Storage, StorageError, Upload, UploadFile, VPath, WriteMode,
};
use crate::tls::{DataDirection, SessionTls};

/// argon2 work (KiB times passes) small enough to verify on the async worker itself: about
/// 50 µs, less than handing it to a blocking thread and back. The default cost (19456 × 2)
/// always goes to the bounded blocking pool.
const INLINE_HASH_COST: u64 = 64;

/// Why a session ends when the server shuts down.
const SHUTDOWN: &str = "server shutting down";

/// Why a session ends when an administrator closes it (the admin API).
const KICKED: &str = "closed by an administrator";

/// Why a session ends when the client closes the control connection.
const CLIENT_CLOSED: &str = "client closed the control connection";

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
                _ = handle.kicked() => Err(KICKED.to_string()),
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
            session.tls = Some(tls);
            session.pbsz = true;
            session.prot_private = true;
        }
        let reason = session.serve().await;
        let user = session.login.as_ref().map(|l| l.name.clone());
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

struct Login {
    name: String,
    fs: Arc<dyn Storage>,
    perms: Permissions,
    /// The user's own TLS policy (the listener's applies as well).
    tls_policy: TlsPolicy,
    /// The home directory on disk, for the transfer log's file names.
    home: std::path::PathBuf,
    /// How the user logged in.
    method: LoginMethod,
}

/// Who is logging in, before the home directory is opened.
struct Account {
    name: String,
    perms: Permissions,
    tls_policy: TlsPolicy,
}

/// TLS handshake of an implicit FTPS connection, before the greeting.
async fn implicit_handshake(
    tcp: TcpStream,
    live: &Live,
    metrics: &Metrics,
) -> Result<(Stream, Option<SessionTls>), String> {
    let tls = live
        .tls
        .as_ref()
        .ok_or_else(|| "TLS is not configured".to_string())?;
    let session = tls.session().map_err(|e| e.to_string())?;
    let stream = stream::accept_tls(tcp, session.control_config(), tls.handshake_timeout, |c| {
        session.stamp_control(c)
    })
    .await
    .map_err(|e| {
        metrics.tls_handshake_failed(TlsConnection::Control);
        e.to_string()
    })?;
    log_handshake("control", &stream);
    Ok((Stream::Tls(Box::new(stream)), Some(session)))
}

fn log_handshake(what: &'static str, stream: &tokio_rustls::server::TlsStream<TcpStream>) {
    let conn = stream.get_ref().1;
    debug!(
        connection = what,
        version = ?conn.protocol_version(),
        suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
        handshake = ?conn.handshake_kind(),
        "TLS established"
    );
}

enum DataSetup {
    None,
    /// Listening; the port is released at `expires` if no transfer has taken it by then.
    Passive {
        listener: PassiveListener,
        expires: Instant,
    },
    Active(SocketAddr),
}

impl DataSetup {
    fn passive_expiry(&self) -> Option<Instant> {
        match self {
            Self::Passive { expires, .. } => Some(*expires),
            _ => None,
        }
    }
}

struct Running {
    handle: JoinHandle<Outcome>,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
    verb: Verb,
    path: VPath,
    total: Option<u64>,
    started: Instant,
    /// ABOR arrived while the transfer ran (it may have ended on its own meanwhile).
    abort_requested: bool,
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

impl LineFormat {
    fn push(&self, e: &Entry, out: &mut Vec<u8>) {
        let line = match self.style {
            ListStyle::List => {
                listing::list_line(&facts(e, &perm_fact(self.perms, e.kind)), self.now)
            }
            ListStyle::Mlsd => {
                listing::mlsx_line(&facts(e, &perm_fact(self.perms, e.kind)), self.mlst)
            }
            ListStyle::Nlst => {
                // Names only: no line to build.
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend_from_slice(e.name.as_bytes());
                out.extend_from_slice(b"\r\n");
                return;
            }
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
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

impl ListingLines {
    fn new(source: ListSource, fmt: LineFormat) -> Self {
        let (entries, dir, first_read) = match source {
            ListSource::Entries(entries) => (entries, None, false),
            ListSource::Dir(dir) => (Vec::new(), Some(dir), true),
            ListSource::Continued(first, dir) => (first, Some(dir), false),
        };
        Self {
            fmt,
            entries: entries.into_iter(),
            dir,
            first_read,
        }
    }

    /// Appends lines to `out` until it holds [`LISTING_CHUNK`] bytes or the listing ends (then
    /// `dir` is `None` and `entries` empty). Blocks: runs on a blocking thread.
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<(), StorageError> {
        loop {
            for e in self.entries.by_ref() {
                self.fmt.push(&e, out);
                if out.len() >= LISTING_CHUNK {
                    return Ok(());
                }
            }
            let Some(dir) = self.dir.as_mut() else {
                return Ok(());
            };
            if self.fmt.style == ListStyle::Nlst && !self.first_read {
                // Streaming names: each goes straight into the output.
                let prefix = self.fmt.prefix.as_bytes();
                let read = dir.for_each_name(|name| {
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"\r\n");
                })?;
                if read == 0 {
                    self.dir = None;
                    return Ok(());
                }
                if out.len() >= LISTING_CHUNK {
                    return Ok(());
                }
                continue;
            }
            let max = if self.first_read {
                SORTED_LISTING_LIMIT
            } else {
                LISTING_BATCH
            };
            let mut batch = dir.next_batch(max)?;
            if batch.is_empty() {
                self.dir = None;
                return Ok(());
            }
            if self.first_read && batch.len() < max {
                // The whole directory is in hand: list it sorted, like ls.
                batch.sort_by(|a, b| a.name.cmp(&b.name));
            }
            self.first_read = false;
            self.entries = batch.into_iter();
        }
    }

    fn done(&self) -> bool {
        self.dir.is_none() && self.entries.len() == 0
    }
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

/// Send a listing. Its lines are made on a blocking thread a chunk ahead of the one being
/// written, so reading the directory and sending overlap and each thread trip carries a
/// [`LISTING_CHUNK`] of lines.
async fn send_listing(
    source: ListSource,
    fmt: LineFormat,
    dst: &mut Stream,
    progress: &AtomicU64,
    stall: std::time::Duration,
) -> Result<(), CopyError> {
    let fill = |mut lines: ListingLines, mut out: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let filled = lines.fill(&mut out);
            (lines, out, filled)
        })
    };
    let mut lines = ListingLines::new(source, fmt);
    let mut spare = Vec::with_capacity(LISTING_CHUNK);
    if lines.dir.is_none() {
        // Entries in hand (a file, a small glob): nothing blocks, no thread trip.
        while !lines.done() {
            lines
                .fill(&mut spare)
                .map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
            data::write_chunk(dst, &mut spare, progress, stall).await?;
        }
        return data::finish(dst, stall).await;
    }
    let mut next = fill(lines, Vec::with_capacity(LISTING_CHUNK));
    loop {
        let (lines, mut out, filled) = next
            .await
            .map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
        filled.map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
        if lines.done() {
            data::write_chunk(dst, &mut out, progress, stall).await?;
            break;
        }
        next = fill(lines, std::mem::take(&mut spare));
        data::write_chunk(dst, &mut out, progress, stall).await?;
        spare = out;
    }
    data::finish(dst, stall).await
}

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
    Close(&'static str),
}

/// The refusal of a transfer command, or, when the transfer started (its replies come from the
/// transfer itself), return from dispatch.
macro_rules! refused_or_started {
    ($handler:expr) => {
        match $handler {
            Ok(()) => return Ok(Flow::Continue),
            Err(refusal) => refusal,
        }
    };
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

struct Session {
    ctrl: Stream,
    listener: ListenerConfig,
    /// Set once the control connection is TLS.
    tls: Option<SessionTls>,
    /// PBSZ received (after AUTH).
    pbsz: bool,
    /// PROT P: data connections are TLS.
    prot_private: bool,
    /// A line over the limit arrived (the limit); the session ends once the lines before it ran.
    too_long: Option<usize>,
    inbuf: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    /// The configuration and users in force, taken afresh before each command.
    live: Arc<Live>,
    pending_user: Option<String>,
    login: Option<Login>,
    failed_logins: u32,
    cwd: VPath,
    ty: TransferType,
    rest: u64,
    rnfr: Option<VPath>,
    epsv_all: bool,
    mlst: MlstFacts,
    data: DataSetup,
    transfer: Option<Running>,
    last_activity: Instant,
    connected_at: Instant,
    /// What the admin API sees of this session, and its way to close it.
    handle: Arc<SessionHandle>,
    /// Changes at each reload, so that an idle session takes the new configuration at once.
    reloaded: tokio::sync::watch::Receiver<u64>,
}

impl Session {
    fn new(
        ctrl: Stream,
        peer: SocketAddr,
        local: SocketAddr,
        shared: Arc<Shared>,
        listener: ListenerConfig,
        handle: Arc<SessionHandle>,
    ) -> Self {
        let now = Instant::now();
        Self {
            ctrl,
            listener,
            tls: None,
            pbsz: false,
            prot_private: false,
            too_long: None,
            inbuf: Vec::new(),
            lines: VecDeque::new(),
            peer,
            local,
            live: shared.live(),
            reloaded: shared.reloaded.subscribe(),
            shared,
            pending_user: None,
            login: None,
            failed_logins: 0,
            cwd: VPath::root(),
            ty: TransferType::Ascii,
            rest: 0,
            rnfr: None,
            epsv_all: false,
            mlst: MlstFacts::default(),
            data: DataSetup::None,
            transfer: None,
            last_activity: now,
            connected_at: now,
            handle,
        }
    }

    /// Show the admin API what changed: user, TLS, PROT, last command, the transfer. Called
    /// once per turn of the command loop; strings are copied only when they change.
    fn publish(&self) {
        let user = self.login.as_ref().map(|l| l.name.as_str());
        let tls = self.ctrl.tls_state();
        self.handle.publish(|state| {
            if state.user.as_deref() != user {
                state.user = user.map(str::to_owned);
            }
            if state.tls.is_none() {
                if let Some(conn) = tls {
                    let version = conn
                        .protocol_version()
                        .map_or_else(String::new, |v| format!("{v:?}"));
                    let suite = conn
                        .negotiated_cipher_suite()
                        .map_or_else(String::new, |s| format!("{:?}", s.suite()));
                    state.tls = Some((version, suite));
                }
            } else if tls.is_none() {
                // REIN or CCC would drop it; neither keeps TLS state.
                state.tls = None;
            }
            state.prot_private = self.prot_private;
            state.last_activity = self.last_activity;
            match (&self.transfer, &state.transfer) {
                (None, None) => {}
                (None, Some(_)) => state.transfer = None,
                (Some(r), Some(t)) if Arc::ptr_eq(&r.progress, &t.progress) => {}
                (Some(r), _) => {
                    let started_at = SystemTime::now()
                        .checked_sub(r.started.elapsed())
                        .unwrap_or_else(SystemTime::now);
                    state.transfer = Some(TransferState {
                        verb: r.verb,
                        path: r.path.to_string(),
                        direction: Direction::of_verb(r.verb).as_str(),
                        total: r.total,
                        started_at,
                        progress: Arc::clone(&r.progress),
                    });
                }
            }
        });
    }

    async fn serve(&mut self) -> &'static str {
        let greeting = Reply::new(220, self.live.config.greeting.clone());
        if self.send(greeting).await.is_err() {
            return "client gone before the greeting";
        }
        loop {
            if let Some(reason) = self.refresh_live().await {
                return self.close(reason).await;
            }
            if self.handle.is_kicked() {
                return self.close(KICKED).await;
            }
            while let Some(line) = self.next_runnable_line() {
                self.last_activity = Instant::now();
                // Boxed: the state of the biggest command (a login, a transfer's start, an
                // AUTH) is held only while a command runs, not by every idle session.
                match Box::pin(self.dispatch(&line)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Close(reason)) => return self.close(reason).await,
                    Err(_) => return self.close("control connection write failed").await,
                }
            }
            // An over-long line ends the session, but only after the commands that came
            // before it have been answered.
            if let Some(limit) = self.too_long {
                if self.transfer.is_none() && self.lines.is_empty() {
                    let text = format!("Command line too long (the limit is {limit} bytes)");
                    warn!(limit, "control line too long; closing");
                    let _ = self.send(Reply::new(500, text)).await;
                    return self.close("control line too long").await;
                }
            }
            // About to wait: the admin API sees the state after the commands just run.
            self.publish();
            let may_read = self.lines.len() < MAX_QUEUED_LINES && self.too_long.is_none();
            // Poll before waiting: take what the socket holds without trusting tokio's
            // readiness (see `read_now`).
            if may_read {
                match self.input_now() {
                    Some(true) => continue,
                    Some(false) => return self.close(CLIENT_CLOSED).await,
                    None => {}
                }
            }
            // An idle session keeps no input buffers: thousands of them wait at once.
            if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
                self.inbuf = Vec::new();
            }
            if self.lines.is_empty() && self.lines.capacity() > 0 {
                self.lines = VecDeque::new();
            }
            let limits = &self.live.config.limits;
            let deadline = if self.login.is_some() {
                self.last_activity + limits.idle_timeout()
            } else {
                (self.connected_at + limits.login_timeout())
                    .min(self.last_activity + limits.idle_timeout())
            };
            let passive_expiry = self.data.passive_expiry();
            tokio::select! {
                read = self.ctrl.read_into(&mut self.inbuf), if may_read => {
                    match read {
                        Ok(0) | Err(_) => return self.close(CLIENT_CLOSED).await,
                        Ok(_) => self.split_lines(),
                    }
                }
                outcome = wait_transfer(&mut self.transfer), if self.transfer.is_some() => {
                    // A transfer is activity: the idle clock starts when it ends.
                    self.last_activity = Instant::now();
                    if let Err(_) | Ok(Flow::Close(_)) = self.finish_transfer(outcome).await {
                        return self.close("client gone during a transfer").await;
                    }
                }
                _ = tokio::time::sleep_until(passive_expiry.unwrap_or(deadline).into()), if passive_expiry.is_some() => {
                    debug!("passive port released: no transfer within the data timeout");
                    self.data = DataSetup::None;
                }
                // Shutting down: idle sessions go at once, transfers when the grace period ends.
                _ = self.shared.stopping.cancelled(), if self.transfer.is_none() => {
                    return self.close(SHUTDOWN).await;
                }
                _ = self.shared.closing.cancelled(), if self.transfer.is_some() => {
                    return self.close(SHUTDOWN).await;
                }
                // An administrator closes the session, whatever it is doing.
                _ = self.handle.kicked() => {
                    return self.close(KICKED).await;
                }
                // A reload: the loop takes the new configuration (and logs out a user who was
                // disabled or removed) before waiting again.
                Ok(()) = self.reloaded.changed() => {}
                _ = tokio::time::sleep_until(deadline.into()), if self.transfer.is_none() => {
                    // Which limit ran out: idle (also before login) or the time to log in.
                    let idle = self.login.is_some() || deadline == self.last_activity + limits.idle_timeout();
                    let text = if idle {
                        format!("Timeout: no command for {} s; closing control connection", limits.idle_timeout_secs)
                    } else {
                        format!("Timeout: not logged in within {} s; closing control connection", limits.login_timeout_secs)
                    };
                    let _ = self.send(Reply::new(421, text)).await;
                    return self.close(if idle { "idle timeout" } else { "login timeout" }).await;
                }
            }
        }
    }

    /// Take the configuration in force now. After a reload a logged-in user is checked
    /// against the new users: new permissions and TLS policy apply from the next command, and
    /// a user who was removed or disabled is logged out (421). `Some(reason)` to end.
    async fn refresh_live(&mut self) -> Option<&'static str> {
        let live = self.shared.live();
        if live.generation == self.live.generation {
            return None;
        }
        self.live = live;
        let Some(login) = &mut self.login else {
            return None;
        };
        if is_anonymous_name(&login.name) && self.live.users.get(&login.name).is_none() {
            let anon = &self.live.config.anonymous;
            if !anon.enabled {
                let _ = self
                    .send(Reply::new(421, "Anonymous access was turned off; closing"))
                    .await;
                return Some("anonymous access turned off by a reload");
            }
            login.perms = anon.permissions;
            return None;
        }
        match self.live.users.get(&login.name) {
            Some(user) if !user.disabled => {
                if user.permissions != login.perms || user.tls_policy != login.tls_policy {
                    info!(user = %login.name, permissions = %user.permissions, "permissions changed by a reload");
                }
                login.perms = user.permissions;
                login.tls_policy = user.tls_policy;
                None
            }
            _ => {
                warn!(user = %login.name, "account removed or disabled by a reload: logging out");
                let _ = self
                    .send(Reply::new(421, "Your account was disabled; closing"))
                    .await;
                Some("account disabled by a reload")
            }
        }
    }

    /// Queue what the control connection holds now, without waiting: `Some(true)` when
    /// something was read, `Some(false)` when the client closed it, `None` when nothing is there.
    /// Not async, so that its buffer is never part of the session's future.
    fn input_now(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 512];
        match self.read_now(&mut chunk) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Ok(0) | Err(_) => Some(false),
            Ok(n) => {
                self.ingest(chunk.get(..n).unwrap_or_default());
                Some(true)
            }
        }
    }

    /// End the session: cancel a transfer (an unfinished upload is discarded by its drop).
    fn close(
        &mut self,
        reason: &'static str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = &'static str> + Send + '_>> {
        // Boxed, as dispatch: an idle session's future need not have room for its ending.
        Box::pin(self.close_now(reason))
    }

    async fn close_now(&mut self, reason: &'static str) -> &'static str {
        if let Some(mut running) = self.transfer.take() {
            running.cancel.cancel();
            if let Ok(outcome) = (&mut running.handle).await {
                if let Some(upload) = outcome.upload {
                    let _ = blocking(move || {
                        upload.abort();
                        Ok(())
                    })
                    .await;
                }
            }
            let bytes = running.progress.load(Ordering::Relaxed);
            info!(
                verb = running.verb.name(),
                path = %running.path,
                bytes,
                result = "aborted",
                "transfer ended by session close"
            );
            self.account_transfer(
                &running,
                bytes,
                running.started.elapsed(),
                TransferResult::Aborted,
                true,
            );
            // The transfer is cleaned up; now the client may hear about it.
            let why = match reason {
                SHUTDOWN => Some("the server is shutting down"),
                KICKED => Some("the session was closed by an administrator"),
                _ => None,
            };
            if let Some(why) = why {
                let _ = self
                    .send(Reply::new(
                        426,
                        format!("Transfer aborted: {why}; the data is incomplete"),
                    ))
                    .await;
            }
        }
        let goodbye = match reason {
            SHUTDOWN => Some("Server shutting down; please reconnect later"),
            KICKED => Some("Session closed by an administrator"),
            _ => None,
        };
        if let Some(text) = goodbye {
            let _ = self.send(Reply::new(421, text)).await;
        }
        // A TLS close_notify waits for the peer to take it; a client that stopped reading
        // must not keep the session (and its place in the limits) alive.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.ctrl.shutdown()).await;
        // Closing with unread input makes the kernel send a reset, which can destroy the last
        // reply before the client reads it: take what the client still sends, briefly (a
        // little time and a few kilobytes, so a flood cannot hold the session).
        let mut sink = [0u8; 512];
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            let mut left = 64 * 1024usize;
            while let Ok(n) = self.ctrl.read(&mut sink).await {
                if n == 0 || n >= left {
                    break;
                }
                left -= n;
            }
        })
        .await;
        reason
    }

    /// Take bytes read from the control connection. Callers read only while the queue has
    /// room, a chunk at a time, so the input buffer stays within a line plus a chunk.
    fn ingest(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        self.split_lines();
    }

    /// Move complete lines from the input buffer to the queue, never past
    /// [`MAX_QUEUED_LINES`]: a chunk of 1,000 empty lines must not become 1,000 queued lines.
    /// The rest waits in the buffer (which the loop does not add to while the queue is full).
    fn split_lines(&mut self) {
        if self.too_long.is_some() {
            // The front of the buffer is the over-long line; nothing after it runs.
            return;
        }
        let max = self.live.config.limits.max_line_length;
        while self.lines.len() < MAX_QUEUED_LINES {
            match line::take_line(&mut self.inbuf, max) {
                Ok(Some(line)) => self.lines.push_back(line),
                Ok(None) => break,
                Err(LineTooLong { limit }) => {
                    // Answered once the lines before it have run (see `serve`).
                    self.too_long = Some(limit);
                    break;
                }
            }
        }
    }

    /// The next line to run: anything when idle; during a transfer only ABOR or a bare STAT
    /// (from anywhere in the queue, since they are meant to overtake).
    fn next_runnable_line(&mut self) -> Option<Vec<u8>> {
        // Lines that waited in the buffer while the queue was full.
        self.split_lines();
        if self.transfer.is_none() {
            return self.lines.pop_front();
        }
        let pos = self.lines.iter().position(|l| {
            let upper = l.to_ascii_uppercase();
            let trimmed = upper.trim_ascii_end();
            trimmed == b"ABOR" || trimmed == b"STAT"
        })?;
        self.lines.remove(pos)
    }

    /// Remove an ABOR the client has already sent (read now, without waiting); whether there
    /// was one.
    fn take_queued_abor(&mut self) -> bool {
        if self.client_gone() {
            return false;
        }
        let pos = self.lines.iter().position(|l| {
            let upper = l.to_ascii_uppercase();
            upper.trim_ascii() == b"ABOR"
        });
        pos.and_then(|p| self.lines.remove(p)).is_some()
    }

    /// Send a reply. A client that stops reading cannot hold the session forever: the write
    /// gives up after the idle timeout.
    async fn send(&mut self, reply: Reply) -> io::Result<()> {
        debug!(code = reply.code, text = %reply.lines.join(" | "), "reply");
        let limit = self.live.config.limits.idle_timeout();
        match tokio::time::timeout(limit, self.ctrl.write_all(&reply.render())).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its replies",
            )),
        }
    }

    /// Read what the control connection holds right now (see [`Stream::read_now`]).
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ctrl.read_now(buf)
    }

    /// Whether the client has closed the control connection, without waiting; bytes that are
    /// waiting are kept as commands. It reads only while the queue has room, like the command
    /// loop: a client that floods the control connection is read no faster than it is served
    /// (a full queue cannot tell a closed connection, so it counts as not gone; the loop sees
    /// the close once it has run the queued commands).
    fn client_gone(&mut self) -> bool {
        let mut buf = [0u8; 512];
        while self.lines.len() < MAX_QUEUED_LINES && self.too_long.is_none() {
            match self.read_now(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.ingest(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }

    async fn dispatch(&mut self, raw: &[u8]) -> io::Result<Flow> {
        let cmd = match command::parse(raw) {
            Ok(cmd) => cmd,
            Err(e) => {
                debug!(error = %e, "bad command");
                self.rnfr = None;
                self.send(e.to_reply()).await?;
                return Ok(Flow::Continue);
            }
        };
        match &cmd {
            Command::Pass(_) => debug!("command PASS ****"),
            other => debug!(command = ?other, "command"),
        }
        // RNTO must follow RNFR directly (RFC 959 §4.1.3).
        let rnfr = self.rnfr.take();
        if self.transfer.is_some() {
            let reply = match cmd {
                Command::Abor => {
                    if let Some(running) = &mut self.transfer {
                        running.cancel.cancel();
                        running.abort_requested = true;
                    }
                    // The 426 and 226 are sent when the transfer task has stopped.
                    return Ok(Flow::Continue);
                }
                _ => self.status_during_transfer(),
            };
            self.send(reply).await?;
            return Ok(Flow::Continue);
        }
        if self.login.is_none() && !allowed_before_login(&cmd) {
            self.send(Reply::new(530, "Please log in with USER and PASS first"))
                .await?;
            return Ok(Flow::Continue);
        }
        let reply = match cmd {
            Command::User(name) => {
                if let Some(user) = self.certificate_user(&name) {
                    if self.login.is_some() {
                        self.reinitialize();
                    }
                    let home = user.home.clone();
                    let login = Account {
                        name: user.name.clone(),
                        perms: user.permissions,
                        tls_policy: user.tls_policy,
                    };
                    let ok = Reply::new(
                        232,
                        format!(
                            "User {} logged in, authorized by the TLS client certificate",
                            user.name
                        ),
                    );
                    return self.enter(login, home, ok, LoginMethod::Certificate).await;
                }
                self.cmd_user(name)
            }
            Command::Pass(password) => return self.cmd_pass(password).await,
            Command::Acct(_) => Reply::new(202, "ACCT not needed on this server"),
            Command::Quit => {
                self.send(Reply::new(221, "Goodbye")).await?;
                return Ok(Flow::Close("client quit"));
            }
            Command::Rein => {
                self.reinitialize();
                Reply::new(220, "Session reset; ready for a new user")
            }
            Command::Cwd(arg) => self.cmd_cwd(&arg).await,
            Command::Cdup => self.cmd_cwd("..").await,
            Command::Pwd => Reply::new(
                257,
                format!("{} is the current directory", quote_path(self.cwd.as_str())),
            ),
            Command::Mkd(arg) => self.cmd_mkd(&arg).await,
            Command::Rmd(arg) => {
                self.simple_fs_op(&arg, Permission::Rmdir, "Directory removed", |fs, p| {
                    fs.rmdir(p)
                })
                .await
            }
            Command::Dele(arg) => {
                self.simple_fs_op(&arg, Permission::Delete, "File deleted", |fs, p| {
                    fs.remove_file(p)
                })
                .await
            }
            Command::Rnfr(arg) => self.cmd_rnfr(&arg).await,
            Command::Rnto(arg) => self.cmd_rnto(rnfr, &arg).await,
            Command::Type(ty) => {
                self.ty = ty;
                match ty {
                    TransferType::Ascii => {
                        Reply::new(200, "Type set to A (text, CRLF on the wire)")
                    }
                    TransferType::Image => Reply::new(200, "Type set to I (binary)"),
                }
            }
            Command::Mode(_) => Reply::new(200, "Mode set to S (stream)"),
            Command::Stru(_) => Reply::new(200, "Structure set to F (file)"),
            Command::Pasv => self.cmd_pasv().await,
            Command::Epsv(arg) => self.cmd_epsv(arg),
            Command::Port(target) => self.cmd_active(SocketAddr::V4(target), "PORT"),
            Command::Eprt(target) => self.cmd_active(target, "EPRT"),
            // Transfer commands reply 150 themselves when they start, and the final reply comes
            // when the transfer ends; only a refusal is answered here.
            Command::List(arg) => refused_or_started!(self.cmd_list(arg, ListStyle::List).await),
            Command::Nlst(arg) => refused_or_started!(self.cmd_list(arg, ListStyle::Nlst).await),
            Command::Mlsd(arg) => refused_or_started!(self.cmd_list(arg, ListStyle::Mlsd).await),
            Command::Retr(arg) => refused_or_started!(self.cmd_retr(&arg).await),
            Command::Stor(arg) => refused_or_started!(self.cmd_store(&arg, false).await),
            Command::Appe(arg) => refused_or_started!(self.cmd_store(&arg, true).await),
            Command::Stou(hint) => refused_or_started!(self.cmd_stou(hint).await),
            Command::Mlst(arg) => self.cmd_mlst(arg).await,
            Command::Rest(offset) => {
                self.rest = offset;
                Reply::new(
                    350,
                    format!("Restarting at {offset}; send RETR, STOR or APPE"),
                )
            }
            Command::Abor => self.cmd_abor_idle(),
            Command::Size(arg) => self.cmd_size(&arg).await,
            Command::Mdtm(arg) => self.cmd_mdtm(&arg).await,
            Command::Mfmt(time, arg) => self.cmd_mfmt(time, &arg).await,
            Command::Feat => feat_reply(self.mlst, self.listener.mode),
            Command::Opts(OptsCommand::Utf8(true)) => Reply::new(200, "UTF8 is always on"),
            Command::Opts(OptsCommand::Utf8(false)) => {
                Reply::new(504, "UTF8 cannot be turned off: names are UTF-8 (RFC 2640)")
            }
            Command::Opts(OptsCommand::Mlst(facts)) => {
                self.mlst = facts;
                Reply::new(200, format!("MLST OPTS {}", facts.render(false)))
            }
            Command::Syst => Reply::new(215, "UNIX Type: L8"),
            Command::Stat(None) => self.status_reply(),
            Command::Stat(Some(arg)) => self.cmd_stat_path(&arg).await,
            Command::Help(topic) => help_reply(topic.as_deref()),
            Command::Noop => Reply::new(200, "NOOP ok"),
            Command::Allo => Reply::new(202, "No storage allocation necessary"),
            Command::Site(SiteCommand::Help) => Reply::multi(
                214,
                "SITE commands:",
                ["CHMOD <octal mode> <path>".to_string(), "HELP".to_string()],
                "End of SITE help",
            ),
            Command::Site(SiteCommand::Chmod(mode, arg)) => self.cmd_chmod(mode, &arg).await,
            Command::Auth(mechanism) => return self.cmd_auth(&mechanism).await,
            Command::Pbsz(_) => self.cmd_pbsz(),
            Command::Prot(level) => self.cmd_prot(level),
            Command::Ccc => match self.tls {
                Some(_) => Reply::new(
                    534,
                    "CCC refused: the control connection stays encrypted on this server",
                ),
                None => Reply::new(533, "The control connection is not protected"),
            },
        };
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    fn reinitialize(&mut self) {
        if self.login.is_some() {
            // A user who logged in gets a fresh login period to log in again; without a login,
            // REIN must not restart the clock (a REIN a second would keep a session forever).
            self.connected_at = Instant::now();
        }
        self.pending_user = None;
        self.login = None;
        self.cwd = VPath::root();
        self.ty = TransferType::Ascii;
        self.rest = 0;
        self.rnfr = None;
        self.epsv_all = false;
        self.mlst = MlstFacts::default();
        self.data = DataSetup::None;
    }

    // ---- security (RFC 2228, RFC 4217) ----

    async fn cmd_auth(&mut self, mechanism: &str) -> io::Result<Flow> {
        let reply = match mechanism {
            _ if !self.listener.mode.offers_tls() => {
                Reply::new(502, "TLS is not offered on this listener")
            }
            _ if self.tls.is_some() => Reply::new(503, "The control connection is already TLS"),
            "TLS" | "TLS-C" | "SSL" | "TLS-P" => {
                match self.live.tls.as_ref().map(|t| t.session()) {
                    Some(Ok(session)) => return self.start_tls(mechanism, session).await,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot set up TLS for a session");
                        Reply::new(431, "TLS is unavailable on the server just now")
                    }
                    None => Reply::new(502, "TLS is not offered on this listener"),
                }
            }
            _ => Reply::new(
                504,
                format!("AUTH {mechanism} is not supported; use AUTH TLS"),
            ),
        };
        self.send(reply).await?;
        Ok(Flow::Continue)
    }

    /// Reply 234 and turn the control connection into TLS.
    async fn start_tls(&mut self, mechanism: &str, session: SessionTls) -> io::Result<Flow> {
        self.send(Reply::new(
            234,
            format!("AUTH {mechanism} ok; start the TLS handshake"),
        ))
        .await?;
        // Anything the client sent after AUTH and before the handshake is plaintext that an
        // attacker could have injected; it must never run as if it came over TLS.
        if !self.lines.is_empty() || !self.inbuf.is_empty() {
            warn!("discarded plaintext commands pipelined after AUTH");
            self.lines.clear();
            self.inbuf.clear();
        }
        let Some(tcp) = self.ctrl.take_plain() else {
            return Ok(Flow::Close("internal error: control connection not plain"));
        };
        let timeout = self
            .live
            .tls
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |t| t.handshake_timeout);
        let handshake = stream::accept_tls(tcp, session.control_config(), timeout, |c| {
            session.stamp_control(c)
        });
        match handshake.await {
            Ok(s) => {
                log_handshake("control", &s);
                self.ctrl = Stream::Tls(Box::new(s));
                self.tls = Some(session);
                self.pending_user = None;
                // AUTH SSL and TLS-P come from the days before PROT: data is protected.
                if matches!(mechanism, "SSL" | "TLS-P") {
                    self.pbsz = true;
                    self.prot_private = true;
                }
                info!(mechanism, "control connection is now TLS");
                Ok(Flow::Continue)
            }
            Err(e) => {
                self.shared
                    .metrics
                    .tls_handshake_failed(TlsConnection::Control);
                warn!(error = %e, "TLS handshake on the control connection failed");
                Ok(Flow::Close("TLS handshake failed"))
            }
        }
    }

    fn cmd_pbsz(&mut self) -> Reply {
        if self.tls.is_none() {
            return Reply::new(
                503,
                "PBSZ needs a TLS control connection: send AUTH TLS first",
            );
        }
        self.pbsz = true;
        // RFC 4217 §8: with TLS the buffer size is always 0.
        Reply::new(200, "PBSZ=0")
    }

    fn cmd_prot(&mut self, level: ProtLevel) -> Reply {
        if self.tls.is_none() {
            return Reply::new(
                503,
                "PROT needs a TLS control connection: send AUTH TLS first",
            );
        }
        if !self.pbsz {
            return Reply::new(503, "Send PBSZ 0 before PROT");
        }
        match level {
            ProtLevel::Private => {
                self.prot_private = true;
                Reply::new(200, "PROT P ok: data connections are protected by TLS")
            }
            ProtLevel::Clear if self.data_tls_required() => Reply::new(
                534,
                "PROT C refused: this server requires protected data connections (PROT P)",
            ),
            ProtLevel::Clear => {
                self.prot_private = false;
                Reply::new(200, "PROT C ok: data connections are not protected")
            }
            ProtLevel::Safe | ProtLevel::Confidential => {
                Reply::new(536, "Only PROT P and PROT C are supported")
            }
        }
    }

    /// The TLS policy in force: the listener's, raised by the user's once logged in.
    fn tls_policy(&self) -> TlsPolicy {
        let user = self
            .login
            .as_ref()
            .map_or(TlsPolicy::Optional, |l| l.tls_policy);
        self.listener.tls_policy.max(user)
    }

    fn data_tls_required(&self) -> bool {
        self.tls_policy().data()
    }

    /// Refuse a transfer whose data connection would be clear when policy forbids it.
    fn check_data_protection(&self) -> Result<(), Reply> {
        if self.data_tls_required() && !self.prot_private {
            return Err(Reply::new(
                521,
                "Data connections must be protected on this server: send PBSZ 0 and PROT P",
            ));
        }
        Ok(())
    }

    // ---- access ----

    fn cmd_user(&mut self, name: String) -> Reply {
        if self.login.is_some() {
            // A new USER starts a new login (RFC 959 allows changing users).
            self.reinitialize();
        }
        if self.listener.tls_policy.login() && self.tls.is_none() {
            self.pending_user = None;
            return Reply::new(
                530,
                "This server requires TLS for login: send AUTH TLS first (use FTPS)",
            );
        }
        let anonymous = is_anonymous_name(&name) && self.live.config.anonymous.enabled;
        self.pending_user = Some(name.clone());
        if anonymous {
            Reply::new(
                331,
                "Anonymous login ok; send your e-mail address as password",
            )
        } else {
            // The same reply whether or not the user exists.
            Reply::new(331, format!("Password required for {name}"))
        }
    }

    async fn cmd_pass(&mut self, password: String) -> io::Result<Flow> {
        let Some(name) = self.pending_user.take() else {
            self.send(Reply::new(503, "Send USER first")).await?;
            return Ok(Flow::Continue);
        };
        let shared = Arc::clone(&self.shared);
        let live = Arc::clone(&self.live);
        let anon_cfg = &live.config.anonymous;
        let anonymous = is_anonymous_name(&name) && anon_cfg.enabled;
        let mut ticket = None;
        let mut refusal = Refusal::Incorrect;
        // The home, when the password check already opened it.
        let mut landing = None;
        let login = if anonymous {
            let home = Some(anon_cfg.home.clone());
            Some((
                name.clone(),
                home,
                anon_cfg.permissions,
                TlsPolicy::Optional,
            ))
        } else {
            // The ban is checked before every password check, not only at connect: sessions
            // opened before a ban must not go on guessing. An address whose checks in flight
            // fill its allowance waits for one to end, up to the time left to log in.
            let deadline = self.connected_at + live.config.limits.login_timeout();
            match shared
                .guard
                .admit_waiting(self.peer.ip(), &name, deadline.into())
                .await
            {
                Admission::Verify { ticket: t, wait } => {
                    ticket = Some(t);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                refused => return self.refuse_password_check(refused, &name).await,
            }
            let users = live.users.clone();
            let user_name = name.clone();
            let checked = if users.verify_cost(&name) <= INLINE_HASH_COST {
                // Hashes this cheap (tens of microseconds) cost less than the trip to a
                // blocking thread.
                users
                    .check(&user_name, &password)
                    .map(|user| (user, password))
            } else {
                // argon2, bcrypt and crypt(3) are deliberately slow: off the async workers, a
                // bounded number at once. A right password's home is opened in the same trip
                // (one thread hand-off per login, not two), unless the login is refused anyway
                // for want of TLS.
                let (shared2, live2) = (Arc::clone(&shared), Arc::clone(&live));
                let has_tls = self.tls.is_some();
                match shared.hash_pool.acquire().await {
                    Ok(_permit) => tokio::task::spawn_blocking(move || {
                        let user = users.check(&user_name, &password)?;
                        let found = (has_tls || !user.tls_policy.login())
                            .then(|| land(&shared2, &live2, &user.name, user.home.as_deref()));
                        Ok((user, password, found))
                    })
                    .await
                    .unwrap_or(Err(Refusal::Incorrect))
                    .map(|(user, password, found)| {
                        landing = found;
                        (user, password)
                    }),
                    Err(_) => Err(Refusal::Incorrect),
                }
            };
            match checked {
                Ok((user, password)) => {
                    shared
                        .guard
                        .success(self.peer.ip(), &user.name, std::time::Instant::now());
                    // The check is over: the next one from this address may start.
                    drop(ticket.take());
                    maybe_rehash(&shared, &live, &user, password);
                    let home = user.home.clone();
                    Some((user.name.clone(), home, user.permissions, user.tls_policy))
                }
                Err(why) => {
                    refusal = why;
                    None
                }
            }
        };
        let Some((user_name, home, perms, tls_policy)) = login else {
            self.failed_logins += 1;
            shared.metrics.login_failed();
            if refusal == Refusal::Disabled {
                // The right password for a disabled account: a line of its own for the
                // administrator, and otherwise a failure like any other (counted, held back,
                // banned, and the fail2ban line below), so that nothing the client sees tells
                // that the password was right, which would be worth knowing once the account
                // is enabled again.
                warn!(ip = %self.peer.ip(), user = %name, "login refused: user disabled");
            }
            // The line fail2ban matches (contrib/fail2ban): keep its shape. The client's address
            // comes first, before the user name that the client chose.
            warn!(ip = %self.peer.ip(), user = %name, failures = self.failed_logins, "login failed");
            let verdict = shared
                .guard
                .failure(self.peer.ip(), &name, std::time::Instant::now());
            // Counted as a failure now: no longer as a check in progress.
            drop(ticket);
            if let Some(ban) = verdict.banned {
                shared.metrics.banned();
                warn!(ip = %self.peer.ip(), ban_secs = ban.as_secs(), "address banned after repeated failed logins");
                self.send(Reply::new(
                    421,
                    format!(
                        "Too many failed logins from your address; banned for {} s",
                        ban.as_secs()
                    ),
                ))
                .await?;
                return Ok(Flow::Close("address banned"));
            }
            // Slower replies as failures pile up; the same for existing and unknown users.
            tokio::time::sleep(verdict.delay).await;
            return self.answer_failed_login(&live).await;
        };
        if tls_policy.login() && self.tls.is_none() {
            warn!(user = %user_name, "login refused: the account requires TLS");
            self.send(Reply::new(
                530,
                "This account requires TLS: reconnect and send AUTH TLS before logging in",
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        let account = Account {
            name: user_name,
            perms,
            tls_policy,
        };
        let method = if anonymous {
            LoginMethod::Anonymous
        } else {
            LoginMethod::Password
        };
        let ok = Reply::new(230, "Login successful");
        match landing {
            Some(landing) => self.enter_landed(account, landing, ok, method).await,
            None => self.enter(account, home, ok, method).await,
        }
    }

    /// The answer to a refused password: 530, or 421 and the end once the session has
    /// failed `limits.max_login_failures` times.
    async fn answer_failed_login(&mut self, live: &Live) -> io::Result<Flow> {
        if self.failed_logins >= live.config.limits.max_login_failures {
            self.send(Reply::new(
                421,
                "Too many failed logins; closing control connection",
            ))
            .await?;
            return Ok(Flow::Close("too many failed logins"));
        }
        self.send(Reply::new(530, "Login incorrect")).await?;
        Ok(Flow::Continue)
    }

    /// A password the guard would not let be checked: 421 and the end of the session.
    async fn refuse_password_check(&mut self, refused: Admission, name: &str) -> io::Result<Flow> {
        let (text, reason) = match refused {
            Admission::Banned(left) => (
                format!(
                    "Too many failed logins from your address; banned for {} s",
                    left.as_secs().max(1)
                ),
                "address banned",
            ),
            Admission::UserBusy => (
                "Too many failed logins for this user name; try again later".to_string(),
                "user name throttled",
            ),
            // Only when the checks in flight did not end before the time to log in ran out.
            Admission::AddressBusy | Admission::Verify { .. } => (
                "Too many logins in progress from your address; try again later".to_string(),
                "password checks from the address did not end in time",
            ),
        };
        warn!(ip = %self.peer.ip(), user = %name, reason, "login refused before the password check");
        self.send(Reply::new(421, text)).await?;
        Ok(Flow::Close(reason))
    }

    /// Open the home directory and start the logged-in session, answering with `ok`. `home` is
    /// the account's configured home (`None`: the root). It is resolved against the root here
    /// and refused when not allowed (outside the root): the users were checked when loaded, so
    /// this is defence in depth. Resolving (symbolic links followed), the cache check, creating
    /// a missing home and opening it all touch the file system, so they run together on one
    /// blocking thread: a slow mount must not stall an async worker at every login.
    async fn enter(
        &mut self,
        login: Account,
        home: Option<std::path::PathBuf>,
        ok: Reply,
        method: LoginMethod,
    ) -> io::Result<Flow> {
        let shared = Arc::clone(&self.shared);
        let live = Arc::clone(&self.live);
        let user = login.name.clone();
        let landing =
            tokio::task::spawn_blocking(move || land(&shared, &live, &user, home.as_deref()))
                .await
                .unwrap_or_else(|e| Err(format!("the home lookup failed: {e}")));
        self.enter_landed(login, landing, ok, method).await
    }

    /// The rest of [`Self::enter`], once the home is resolved and opened (or not).
    async fn enter_landed(
        &mut self,
        login: Account,
        landing: Landing,
        ok: Reply,
        method: LoginMethod,
    ) -> io::Result<Flow> {
        let (home, opened) = match landing {
            Ok(found) => found,
            Err(reason) => {
                tracing::error!(user = %login.name, %reason, "login refused: home directory not allowed");
                self.send(Reply::new(530, "Login refused: home directory unavailable"))
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        let home_path = home.clone();
        match opened {
            Ok(fs) => {
                tracing::Span::current().record("user", login.name.as_str());
                let how = match method {
                    LoginMethod::Certificate => "client certificate",
                    other => other.as_str(),
                };
                info!(user = %login.name, home = %home_path.display(), permissions = %login.perms, method = how, "login ok");
                self.shared.metrics.login_ok(method);
                self.login = Some(Login {
                    name: login.name,
                    fs,
                    perms: login.perms,
                    tls_policy: login.tls_policy,
                    home: home_path,
                    method,
                });
                self.cwd = VPath::root();
                self.send(ok).await?;
            }
            Err(e) => {
                tracing::error!(user = %login.name, home = %home.display(), error = %e, "home directory unavailable");
                self.send(Reply::new(530, "Login refused: home directory unavailable"))
                    .await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The user a verified TLS client certificate logs in as, if it maps to `name`.
    fn certificate_user(&self, name: &str) -> Option<crate::auth::User> {
        let conn = self.ctrl.tls_state()?;
        let leaf = conn.peer_certificates()?.first()?;
        let fingerprint = crate::policy::Fingerprint::of_der(leaf.as_ref());
        self.live.users.certificate_user(name, &fingerprint)
    }

    // ---- helpers ----

    fn login(&self) -> Result<&Login, Reply> {
        self.login
            .as_ref()
            .ok_or_else(|| Reply::new(530, "Please log in with USER and PASS first"))
    }

    fn need(&self, perm: Permission) -> Result<Arc<dyn Storage>, Reply> {
        let login = self.login()?;
        if login.perms.has(perm) {
            Ok(Arc::clone(&login.fs))
        } else {
            Err(Reply::new(
                550,
                format!(
                    "Permission denied: this account may not {}",
                    permission_verb(perm)
                ),
            ))
        }
    }

    fn resolve(&self, arg: &str) -> Result<VPath, Reply> {
        check_line_ends(arg)?;
        let path = VPath::resolve(&self.cwd, arg).map_err(|e| fs_reply(arg, &e))?;
        if path.file_name().is_some_and(storage::is_internal_name) {
            return Err(Reply::new(553, format!("{arg}: file name not allowed")));
        }
        Ok(path)
    }

    async fn simple_fs_op(
        &mut self,
        arg: &str,
        perm: Permission,
        done: &'static str,
        op: impl FnOnce(&dyn Storage, &VPath) -> Result<(), StorageError> + Send + 'static,
    ) -> Reply {
        let result = async {
            let fs = self.need(perm)?;
            let path = self.resolve(arg)?;
            let p = path.clone();
            blocking(move || op(&*fs, &p))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            info!(op = permission_verb(perm), path = %path, "file operation");
            Ok::<_, Reply>(Reply::new(250, done))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    // ---- navigation ----

    async fn cmd_cwd(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = Arc::clone(&self.login()?.fs);
            let path = self.resolve(arg)?;
            let p = path.clone();
            let entry = blocking(move || fs.metadata(&p))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            if entry.kind != EntryKind::Dir {
                return Err(Reply::new(550, format!("{arg}: Not a directory")));
            }
            let reply = Reply::new(250, format!("Directory changed to {path}"));
            self.cwd = path;
            Ok(reply)
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_mkd(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::Mkdir)?;
            let path = self.resolve(arg)?;
            let p = path.clone();
            blocking(move || fs.mkdir(&p))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            info!(op = "mkdir", path = %path, "file operation");
            Ok::<_, Reply>(Reply::new(
                257,
                format!("{} created", quote_path(path.as_str())),
            ))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_rnfr(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::Rename)?;
            let path = self.resolve(arg)?;
            if path.is_root() {
                return Err(Reply::new(550, "The home directory cannot be renamed"));
            }
            let p = path.clone();
            blocking(move || fs.metadata(&p))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            self.rnfr = Some(path);
            Ok(Reply::new(350, "Ready for RNTO"))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_rnto(&mut self, from: Option<VPath>, arg: &str) -> Reply {
        let Some(from) = from else {
            return Reply::new(503, "Send RNFR first");
        };
        let result = async {
            let fs = self.need(Permission::Rename)?;
            let to = self.resolve(arg)?;
            // Renaming onto an existing name destroys what was there, like overwriting it.
            let may_replace = self.login()?.perms.has(Permission::Write);
            let (f, t) = (from.clone(), to.clone());
            blocking(move || {
                if may_replace {
                    fs.rename(&f, &t)
                } else {
                    fs.rename_no_replace(&f, &t)
                }
            })
            .await
            .map_err(|e| match e {
                StorageError::AlreadyExists if !may_replace => Reply::new(
                    550,
                    format!(
                        "{arg}: already exists; renaming onto an existing name needs the write permission"
                    ),
                ),
                e => fs_reply(arg, &e),
            })?;
            info!(op = "rename", from = %from, to = %to, "file operation");
            Ok::<_, Reply>(Reply::new(250, "Rename successful"))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    // ---- data connection set-up ----

    async fn cmd_pasv(&mut self) -> Reply {
        if self.epsv_all {
            return Reply::new(503, "PASV is not allowed after EPSV ALL");
        }
        if self.peer.is_ipv6() {
            // The data connection would come from the client's IPv4 address, not the one this
            // control connection has: it could never be matched to this session.
            return Reply::new(
                425,
                "PASV announces IPv4 addresses only, and this connection is IPv6: use EPSV",
            );
        }
        let announce = match self.announce_address().await {
            Ok(ip) => ip,
            Err(reply) => return reply,
        };
        match self.open_passive() {
            Ok(port) => Reply::new(
                227,
                addr::pasv_reply_text(std::net::SocketAddrV4::new(
                    announce,
                    self.announced_port(port),
                )),
            ),
            Err(reply) => reply,
        }
    }

    /// The address PASV announces to this client: the first `passive.announce` rule for its
    /// network, else `passive.address`, else the address it connected to.
    async fn announce_address(&self) -> Result<std::net::Ipv4Addr, Reply> {
        let cfg = &self.live.config.passive;
        let client = self.peer.ip();
        let wanted = cfg
            .announce
            .iter()
            .find(|r| r.from.iter().any(|n| n.contains(&client)))
            .map(|r| r.address.as_str())
            .or(cfg.address.as_deref());
        let ip = match wanted {
            Some(name) => {
                let every = std::time::Duration::from_secs(cfg.resolve_every_secs);
                self.shared
                    .announced
                    .resolve(name, every)
                    .await
                    .map_err(|e| {
                        tracing::error!(address = %name, error = %e, "cannot resolve the passive address");
                        Reply::new(
                            425,
                            "Cannot open passive connection: the server's passive address does not resolve",
                        )
                    })?
            }
            None => match self.local.ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => {
                    return Err(Reply::new(
                        425,
                        "PASV cannot announce an IPv6 address; use EPSV",
                    ));
                }
            },
        };
        if is_internal(IpAddr::V4(ip)) && !is_internal(client) {
            self.shared.announced.warn_once(ip, client);
        }
        Ok(ip)
    }

    /// The port a client is told for passive port `port` (NAT gateways may forward another
    /// range to ours: `passive.announce_ports`).
    fn announced_port(&self, port: u16) -> u16 {
        let cfg = &self.live.config.passive;
        match (cfg.ports, cfg.announce_ports) {
            (Some(ours), Some(theirs)) if port >= ours.low => {
                theirs.low.saturating_add(port - ours.low)
            }
            _ => port,
        }
    }

    fn cmd_epsv(&mut self, arg: EpsvArg) -> Reply {
        let family = addr::protocol_number(self.local.ip());
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Reply::new(200, "EPSV ALL accepted: only EPSV from now on");
            }
            EpsvArg::Protocol(p) if p != family => {
                return Reply::new(
                    522,
                    format!("Network protocol not supported, use ({family})"),
                );
            }
            _ => {}
        }
        match self.open_passive() {
            Ok(port) => Reply::new(229, addr::epsv_reply_text(self.announced_port(port))),
            Err(reply) => reply,
        }
    }

    fn open_passive(&mut self) -> Result<u16, Reply> {
        // A new PASV replaces the old one, whose port is released right here.
        self.data = DataSetup::None;
        let cfg = &self.live.config;
        let listener = self
            .live
            .ports
            .bind(self.local.ip())
            .map_err(|e| {
                tracing::error!(error = %e, "cannot open a passive port");
                Reply::new(425, format!("Cannot open passive connection: {e}"))
            })?
            .counted(self.shared.metrics.passive_port());
        let port = listener.port();
        debug!(port, "passive port open");
        self.data = DataSetup::Passive {
            listener,
            expires: Instant::now() + cfg.limits.data_timeout(),
        };
        Ok(port)
    }

    fn cmd_active(&mut self, target: SocketAddr, verb: &str) -> Reply {
        let cfg = &self.live.config.active;
        if self.epsv_all {
            return Reply::new(503, format!("{verb} is not allowed after EPSV ALL"));
        }
        if !cfg.enabled {
            return Reply::new(
                504,
                "Active mode is disabled on this server; use PASV or EPSV",
            );
        }
        let target = SocketAddr::new(target.ip().to_canonical(), target.port());
        if !cfg.allow_foreign_ip && target.ip() != self.peer.ip() {
            warn!(%target, "refused an active connection to another host (FTP bounce, RFC 2577)");
            return Reply::new(
                504,
                format!(
                    "{verb} refused: the data connection must go to your own address {}",
                    self.peer.ip()
                ),
            );
        }
        if !cfg.allow_privileged_ports && target.port() < 1024 {
            warn!(%target, "refused an active connection to a privileged port (RFC 2577)");
            return Reply::new(
                504,
                format!("{verb} refused: ports below 1024 are not allowed"),
            );
        }
        self.data = DataSetup::Active(target);
        Reply::new(200, format!("{verb} command successful"))
    }

    /// Refuse an upload that has no data connection set up before it touches any file: a
    /// refused REST+STOR must not truncate, a refused APPE or STOU must not create.
    fn require_data_setup(&self) -> Result<(), Reply> {
        self.check_data_protection()?;
        match self.data {
            DataSetup::None => Err(Reply::new(425, "Use PASV, EPSV, PORT or EPRT first")),
            _ => Ok(()),
        }
    }

    fn take_data_connection(&mut self) -> Result<ConnectFuture, Reply> {
        self.check_data_protection()?;
        match std::mem::replace(&mut self.data, DataSetup::None) {
            DataSetup::None => Err(Reply::new(425, "Use PASV, EPSV, PORT or EPRT first")),
            DataSetup::Passive { listener, .. } => {
                let cfg = &self.live.config;
                let proxies = self
                    .listener
                    .proxy_protocol
                    .then(|| Arc::new(cfg.proxy.trusted.clone()));
                Ok(Box::pin(listener.accept(
                    self.peer.ip(),
                    cfg.passive.allow_foreign_ip,
                    cfg.limits.data_timeout(),
                    proxies,
                )))
            }
            DataSetup::Active(target) => {
                let local_ip = self.local.ip();
                let timeout = self.live.config.limits.data_timeout();
                // 20 for 21, 989 for 990: what classic firewall rules expect.
                let source_port = self
                    .live
                    .config
                    .active
                    .source_port_below_listener
                    .then(|| self.local.port().saturating_sub(1));
                Ok(Box::pin(data::connect_active(
                    local_ip,
                    target,
                    timeout,
                    source_port,
                )))
            }
        }
    }

    // ---- transfers ----

    /// How this transfer's data connection is protected, from PROT and the listener.
    fn data_tls(&self, direction: DataDirection) -> Option<DataTls> {
        let session = self.tls.as_ref().filter(|_| self.prot_private)?;
        let tls = self.live.tls.as_ref()?;
        Some(DataTls {
            session: session.clone(),
            direction,
            handshake_timeout: tls.handshake_timeout,
            require_reuse: self.listener.require_session_reuse,
            require_close_notify: tls.require_close_notify,
            metrics: Arc::clone(&self.shared.metrics),
        })
    }

    /// Send the 150 and run `job` over the data connection in the background.
    async fn start_transfer(
        &mut self,
        connect: ConnectFuture,
        opening: String,
        job: Job,
        verb: Verb,
        path: VPath,
        total: Option<u64>,
    ) -> Result<(), Reply> {
        let direction = match job {
            Job::Send(_) => DataDirection::Download,
            Job::Receive(..) => DataDirection::Upload,
        };
        let protection = self.data_tls(direction);
        let io = match (&job, &protection) {
            (_, Some(_)) => "tls",
            (Job::Send(SendSource::File(f, ..)), None)
                if self.ty == TransferType::Image && f.local_file().is_some() =>
            {
                "sendfile"
            }
            _ => "copy",
        };
        if self.send(Reply::new(150, opening)).await.is_err() {
            return Err(Reply::new(426, "Control connection failed"));
        }
        let cancel = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let ascii_mode = self.ty == TransferType::Ascii;
        let stall = self.live.config.limits.idle_timeout();
        let policy = self.live.config.uploads.fsync;
        let task_cancel = cancel.clone();
        let task_progress = Arc::clone(&progress);
        let handle = tokio::spawn(
            async move {
                let open = async {
                    let tcp = connect.await.map_err(TransferError::DataConnection)?;
                    let _ = tcp.set_nodelay(true);
                    match &protection {
                        Some(p) => open_data_tls(tcp, p).await,
                        None => Ok(Stream::Plain(tcp)),
                    }
                };
                let mut stream = match tokio::select! {
                    c = open => c,
                    _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                } {
                    Ok(s) => s,
                    Err(e) => return Outcome { result: Err(e), upload: job.into_upload() },
                };
                let mut send_slot = match &job {
                    Job::Send(SendSource::File(_, _, len)) if !ascii_mode && stream.is_tls() && *len >= data::BIG_DOWNLOAD => data::thread_slot(),
                    _ => None,
                };
                match job {
                    // A big binary TLS download of a file runs on a thread of its own (if one is free).
                    Job::Send(SendSource::File(f, offset, len)) if send_slot.is_some() => {
                        let result = match (send_slot.take(), std::mem::replace(&mut stream, Stream::Detached)) {
                            (Some(slot), Stream::Tls(tls)) => {
                                let (tcp, conn) = tls.into_inner();
                                debug!("TLS download: sending on its own thread");
                                data::send_tls_on_thread(
                                    tcp,
                                    conn,
                                    f,
                                    (offset, len),
                                    TLS_CLOSE_WAIT,
                                    data::OnThread { progress: Arc::clone(&task_progress), stall, cancel: &task_cancel, slot },
                                )
                                .await
                                .map_err(|e| match e {
                                    data::TransferEnd::Failed(e) => TransferError::Copy(e),
                                    data::TransferEnd::Aborted => TransferError::Aborted,
                                })
                            }
                            // Not reached: the slot is taken only for a TLS stream.
                            _ => Err(TransferError::Copy(CopyError::Local(io::Error::other(
                                "the TLS download could not move to its thread",
                            )))),
                        };
                        Outcome { result, upload: None }
                    }
                    Job::Send(source) => {
                        let copy = async {
                            match source {
                                SendSource::File(f, offset, len) => match (&mut stream, f.local_file()) {
                                    // Binary over plain TCP from a local file: zero-copy.
                                    (Stream::Plain(tcp), Some(file)) if !ascii_mode => {
                                        match data::sendfile(file, offset, len, tcp, &task_progress, stall).await {
                                            Ok(()) => data::finish(&mut stream, stall).await,
                                            Err(e) => Err(e),
                                        }
                                    }
                                    _ => {
                                        // Fewer, larger trips to the blocking thread that reads.
                                        let f = f.into_async(data::FILE_READ_SIZE);
                                        data::send(f, &mut stream, ascii_mode, &task_progress, stall).await
                                    }
                                },
                                SendSource::Listing(src, fmt) => send_listing(src, fmt, &mut stream, &task_progress, stall).await,
                            }
                        };
                        let result = tokio::select! {
                            r = copy => r.map_err(TransferError::Copy),
                            _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                        };
                        if result.is_ok() && stream.is_tls() {
                            // Our close_notify is out; wait for the client's before the 226, so
                            // that nothing is closed under data the client has yet to read.
                            tokio::select! {
                                _ = data::drain_until_closed(&mut stream, TLS_CLOSE_WAIT) => {}
                                _ = task_cancel.cancelled() => {}
                            }
                        }
                        Outcome { result, upload: None }
                    }
                    Job::Receive(file, mut upload) => {
                        let tls = stream.is_tls();
                        let (result, file) = if ascii_mode {
                            let mut file = file.into_async();
                            let copy = data::receive(&mut stream, tls, &mut file, true, &task_progress, stall);
                            let result = tokio::select! {
                                r = copy => r.map_err(TransferError::Copy),
                                _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                            };
                            // Wait for tokio's in-flight write to land before the file goes
                            // back to the upload for commit or abort.
                            let _ = file.flush().await;
                            (result, file.into_inner().await)
                        } else {
                            // A big upload moves to a thread of its own if one is free (the slot is
                            // taken only then: slow uploads, which stay here, hold none).
                            let mut slot = None;
                            let mut writer = data::FileWriter::new(file);
                            let copy = async {
                                let first = data::receive_binary(&mut stream, tls, &mut writer, &task_progress, stall, Some(data::BIG_UPLOAD));
                                match first.await? {
                                    data::Received::Big => match data::thread_slot() {
                                        Some(s) => {
                                            slot = Some(s);
                                            Ok(data::Received::Big)
                                        }
                                        // Every transfer thread is busy: the rest is received here.
                                        None => data::receive_binary(&mut stream, tls, &mut writer, &task_progress, stall, None).await,
                                    },
                                    ended => Ok(ended),
                                }
                            };
                            let result = tokio::select! {
                                r = copy => r.map_err(TransferError::Copy),
                                _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                            };
                            // Likewise: the write in flight (even of an aborted copy) lands first.
                            // What is left is written with the commit (or the abort); after a
                            // failed write it is dropped, as the file would have a hole before it.
                            let (written, file, rest) = writer.finish().await;
                            let taken = match (&result, &written, &file, &slot) {
                                (Ok(data::Received::Big), Ok(()), Some(_), Some(_)) => {
                                    match std::mem::replace(&mut stream, Stream::Detached) {
                                        Stream::Plain(tcp) => Some((tcp, None)),
                                        Stream::Tls(tls) => {
                                            let (tcp, conn) = tls.into_inner();
                                            Some((tcp, Some(conn)))
                                        }
                                        Stream::Detached => None,
                                    }
                                }
                                _ => None,
                            };
                            match (result, written, file, slot, taken) {
                                (Ok(data::Received::Big), Ok(()), Some(file), Some(slot), Some((tcp, conn))) => {
                                    let writeback = upload.writes_back_early(policy);
                                    debug!(writeback, "big upload: receiving the rest on its own thread");
                                    let (end, file) = data::receive_on_thread(
                                        tcp,
                                        conn,
                                        file,
                                        rest,
                                        writeback,
                                        data::OnThread { progress: Arc::clone(&task_progress), stall, cancel: &task_cancel, slot },
                                    )
                                    .await;
                                    let result = match end {
                                        data::ThreadEnd::Ended(e) => Ok(e),
                                        data::ThreadEnd::Failed(e) => Err(TransferError::Copy(e)),
                                        data::ThreadEnd::Aborted => Err(TransferError::Aborted),
                                    };
                                    (result, file)
                                }
                                (result, written, file, _, _) => {
                                    let result = match (result, written) {
                                        (r @ Err(TransferError::Copy(CopyError::Local(_))), _) => r,
                                        (r, Ok(())) => {
                                            upload.defer_write(rest);
                                            r
                                        }
                                        (Ok(_), Err(e)) => Err(TransferError::Copy(CopyError::Local(e))),
                                        (r, Err(_)) => r,
                                    };
                                    // Only an upload with a thread slot is promoted, so `Big` cannot
                                    // stay here; if it did, the upload is not complete.
                                    let result = result.and_then(|r| match r {
                                        data::Received::Ended(e) => Ok(e),
                                        data::Received::Big => Err(TransferError::Copy(CopyError::Local(
                                            io::Error::other("the upload could not move to its thread"),
                                        ))),
                                    });
                                    (result, file)
                                }
                            }
                        };
                        let result = match result {
                            Ok(data::Ending::CloseNotify) => {
                                // Answer the client's close_notify with ours; it may be gone. (An
                                // upload thread answered it itself and kept the connection.)
                                if !matches!(stream, Stream::Detached) {
                                    let _ = tokio::time::timeout(TLS_CLOSE_WAIT, stream.shutdown()).await;
                                }
                                Ok(())
                            }
                            Ok(data::Ending::Eof) => Ok(()),
                            Ok(data::Ending::Truncated) => match &protection {
                                Some(p) if p.require_close_notify => Err(TransferError::Truncated),
                                _ => {
                                    warn!("TLS upload ended without close_notify; accepted (tls.require_close_notify = false)");
                                    Ok(())
                                }
                            },
                            Err(e) => Err(e),
                        };
                        if let Some(file) = file {
                            upload.put_file(file);
                        }
                        Outcome { result, upload: Some(upload) }
                    }
                }
            }
            .in_current_span(),
        );
        self.transfer = Some(Running {
            handle,
            cancel,
            progress,
            verb,
            path,
            total,
            started: Instant::now(),
            abort_requested: false,
            io,
            binary: self.ty == TransferType::Image,
        });
        Ok(())
    }

    async fn finish_transfer(&mut self, outcome: Outcome) -> io::Result<Flow> {
        let Some(running) = self.transfer.take() else {
            return Ok(Flow::Continue);
        };
        let bytes = running.progress.load(Ordering::Relaxed);
        let elapsed = running.started.elapsed();
        let mut outcome = outcome;
        let mut result = std::mem::replace(&mut outcome.result, Ok(()));
        let abort_requested = running.abort_requested;
        if let Err(TransferError::Copy(CopyError::Network(_))) = &result {
            // Clients abort by sending ABOR and then closing the data connection; the close
            // can be seen first. An ABOR received or waiting means the client ended it on
            // purpose.
            if abort_requested || self.take_queued_abor() {
                result = Err(TransferError::Aborted);
            }
        }
        // How it ended for the metrics and the transfer log; a transfer that moved its bytes
        // can still fail after (its upload not committed, its file shrank): see the reply.
        let (class, connected) = match &result {
            Ok(()) => (TransferResult::Ok, true),
            Err(TransferError::Aborted) => (TransferResult::Aborted, true),
            Err(TransferError::DataConnection(_) | TransferError::DataTls(_)) => {
                (TransferResult::Failed, false)
            }
            Err(_) => (TransferResult::Failed, true),
        };
        // The file a committed upload replaced: freed after the reply (see `Replaced`).
        let mut replaced = None;
        let (mut replies, result): (Vec<Reply>, String) = match result {
            Ok(()) => match outcome.upload.take() {
                Some(upload) => {
                    if self.client_gone() {
                        // The data connection ended but so did the control connection: the
                        // client was killed or lost, and the upload may be incomplete.
                        let _ = blocking(move || {
                            upload.abort();
                            Ok(())
                        })
                        .await;
                        log_transfer(&running, bytes, elapsed, "aborted: client gone");
                        self.account_transfer(
                            &running,
                            bytes,
                            elapsed,
                            TransferResult::Aborted,
                            true,
                        );
                        return Ok(Flow::Close("client gone during an upload"));
                    }
                    let policy = self.live.config.uploads.fsync;
                    // The last bytes and the commit in one trip to the blocking pool; a failed
                    // write of the data is reported as during the transfer.
                    let done = blocking(move || {
                        let mut upload = upload;
                        match upload.write_deferred() {
                            Ok(()) => upload.commit_with(policy).map(Ok),
                            // Dropping the upload cleans it up like any failed one.
                            Err(e) => Ok(Err(e)),
                        }
                    });
                    match done.await {
                        Ok(Ok(old)) => {
                            replaced = Some(old);
                            (vec![Reply::new(226, "Transfer complete")], "ok".into())
                        }
                        Ok(Err(e)) => {
                            let e = StorageError::from(e);
                            (vec![storage_failure_reply(&e)], format!("local error: {e}"))
                        }
                        Err(e) => (vec![storage_failure_reply(&e)], format!("failed: {e}")),
                    }
                }
                // A file cut short while it was being sent: the client must not think it whole.
                None if running.verb == Verb::Retr && running.total.is_some_and(|t| bytes < t) => {
                    let total = running.total.unwrap_or_default();
                    (
                        vec![Reply::new(
                            451,
                            format!(
                                "Transfer incomplete: the file shrank while it was being sent ({bytes} of {total} bytes)"
                            ),
                        )],
                        format!("incomplete: file shrank to {bytes} of {total} bytes"),
                    )
                }
                None => (vec![Reply::new(226, "Transfer complete")], "ok".into()),
            },
            Err(TransferError::Aborted) => (
                vec![
                    Reply::new(426, "Transfer aborted; data connection closed"),
                    Reply::new(226, "ABOR command successful"),
                ],
                "aborted by client".into(),
            ),
            Err(TransferError::DataConnection(e)) => (
                vec![Reply::new(425, format!("Cannot open data connection: {e}"))],
                format!("no data connection: {e}"),
            ),
            Err(TransferError::Truncated) => {
                // Replace uploads vanish with their temp file; in-place ones are undone.
                let restored = match outcome.upload.take() {
                    Some(upload) => blocking(move || Ok(upload.roll_back()))
                        .await
                        .unwrap_or(false),
                    None => true,
                };
                let text = if restored {
                    "Upload refused: the data connection closed without TLS close_notify, so the data may be truncated; the file is unchanged"
                } else {
                    "Upload refused: the data connection closed without TLS close_notify, so the data may be truncated; bytes that overwrote the file could not be undone"
                };
                (
                    vec![Reply::new(426, text)],
                    "truncated: no TLS close_notify".into(),
                )
            }
            Err(TransferError::DataTls(reason)) => (
                vec![Reply::new(
                    522,
                    format!("Data connection refused: {reason}"),
                )],
                format!("TLS data connection refused: {reason}"),
            ),
            Err(TransferError::Copy(CopyError::Network(e))) => (
                vec![Reply::new(
                    426,
                    format!("Data connection failed ({e}); transfer aborted"),
                )],
                format!("network error: {e}"),
            ),
            Err(TransferError::Copy(CopyError::Local(e))) => {
                let e = StorageError::from(e);
                (vec![storage_failure_reply(&e)], format!("local error: {e}"))
            }
        };
        let class = match replies.first() {
            Some(r) if class == TransferResult::Ok && r.code != 226 => TransferResult::Failed,
            _ => class,
        };
        log_transfer(&running, bytes, elapsed, &result);
        self.account_transfer(&running, bytes, elapsed, class, connected);
        // A failed upload is cleaned up (temp file gone, space freed) before the client hears.
        if let Some(upload) = outcome.upload.take() {
            let _ = blocking(move || {
                upload.abort();
                Ok(())
            })
            .await;
        }
        if abort_requested && replies.first().is_some_and(|r| r.code == 226) {
            // The transfer finished before the ABOR could stop it: its 226, then the ABOR's.
            replies.push(Reply::new(
                226,
                "ABOR command successful; the transfer had completed",
            ));
        }
        let mut sent = Ok(());
        for reply in replies.drain(..) {
            sent = self.send(reply).await;
            if sent.is_err() {
                break;
            }
        }
        if let Some(old) = replaced {
            // Freeing a big file's blocks takes a while: not on an async worker.
            drop(tokio::task::spawn_blocking(move || drop(old)));
        }
        sent?;
        Ok(Flow::Continue)
    }

    /// Count a finished transfer in the metrics and, for a file whose data connection opened,
    /// write its transfer-log line.
    fn account_transfer(
        &self,
        running: &Running,
        bytes: u64,
        elapsed: std::time::Duration,
        class: TransferResult,
        connected: bool,
    ) {
        let metrics = &self.shared.metrics;
        metrics.transfer(running.verb, running.io == "tls", bytes, class);
        let direction = Direction::of_verb(running.verb);
        if !connected || direction == Direction::Listing || !self.shared.xferlog.enabled() {
            return;
        }
        let Some(login) = &self.login else {
            return;
        };
        let relative = running.path.as_str().trim_start_matches('/');
        let path = if relative.is_empty() {
            login.home.clone()
        } else {
            login.home.join(relative)
        };
        let line = crate::observe::xferlog::Entry {
            elapsed,
            remote: self.peer.ip(),
            bytes,
            path: &path,
            binary: running.binary,
            incoming: direction == Direction::Upload,
            anonymous: login.method == LoginMethod::Anonymous,
            user: &login.name,
            tls: self.tls.is_some(),
            complete: class == TransferResult::Ok,
        }
        .line(chrono::Local::now());
        self.shared.xferlog.write(line, metrics);
    }

    fn status_during_transfer(&self) -> Reply {
        let Some(running) = &self.transfer else {
            return Reply::new(211, "No transfer in progress");
        };
        let bytes = running.progress.load(Ordering::Relaxed);
        let of = running
            .total
            .map(|t| format!(" of {t}"))
            .unwrap_or_default();
        Reply::new(
            213,
            format!(
                "Status: {} {}: {bytes}{of} bytes transferred in {} s",
                running.verb,
                running.path,
                running.started.elapsed().as_secs()
            ),
        )
    }

    fn cmd_abor_idle(&mut self) -> Reply {
        match std::mem::replace(&mut self.data, DataSetup::None) {
            DataSetup::None => Reply::new(225, "No transfer to abort"),
            _ => Reply::new(226, "Data connection closed"),
        }
    }

    async fn cmd_retr(&mut self, arg: &str) -> Result<(), Reply> {
        async {
            let fs = self.need(Permission::Read)?;
            let path = self.resolve(arg)?;
            let offset = std::mem::take(&mut self.rest);
            let p = path.clone();
            let (file, len) = blocking(move || fs.open_read(&p, offset))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            let connect = self.take_data_connection()?;
            let mode = if self.ty == TransferType::Ascii {
                "ASCII"
            } else {
                "BINARY"
            };
            let opening = format!(
                "Opening {mode} mode data connection for {path} ({} bytes)",
                len - offset
            );
            self.start_transfer(
                connect,
                opening,
                Job::Send(SendSource::File(file, offset, len - offset)),
                Verb::Retr,
                path,
                Some(len - offset),
            )
            .await
        }
        .await
    }

    async fn cmd_store(&mut self, arg: &str, append: bool) -> Result<(), Reply> {
        async {
            let offset = std::mem::take(&mut self.rest);
            let verb = if append { Verb::Appe } else { Verb::Stor };
            let may_write = self.login()?.perms.has(Permission::Write);
            let (mode, perm) = match (append, offset) {
                (false, 0) => (WriteMode::Replace, Permission::Write),
                (true, 0) => (WriteMode::Append, Permission::Append),
                // Writing at an offset overwrites what follows it and cuts the old tail: that
                // is the write permission's.
                (_, n) if may_write => (WriteMode::At(n), Permission::Write),
                // An append-only account may resume at the end, which only adds bytes.
                (_, n) => (WriteMode::AppendAt(n), Permission::Append),
            };
            let fs = self.need(perm)?;
            let path = self.resolve(arg)?;
            if path.is_root() {
                return Err(Reply::new(553, "Cannot store over the home directory"));
            }
            self.require_data_setup()?;
            let p = path.clone();
            let mut upload = blocking(move || fs.create_upload(&p, mode))
                .await
                .map_err(|e| match e {
                    StorageError::WouldOverwrite => Reply::new(
                        550,
                        format!(
                            "{arg}: REST {offset} is before the end of the file, and this account may only append (overwriting needs the write permission)"
                        ),
                    ),
                    e => fs_reply(arg, &e),
                })?;
            let connect = self.take_data_connection()?;
            let file = upload
                .take_file()
                .ok_or_else(|| Reply::new(451, "Local error: upload has no file"))?;
            let opening = format!("Ok to send data for {path}");
            self.start_transfer(
                connect,
                opening,
                Job::Receive(file, upload),
                verb,
                path,
                None,
            )
            .await
        }
        .await
    }

    async fn cmd_stou(&mut self, hint: Option<String>) -> Result<(), Reply> {
        async {
            let fs = self.need(Permission::Write)?;
            if let Some(h) = &hint {
                check_line_ends(h)?;
            }
            self.require_data_setup()?;
            self.rest = 0;
            let hint = hint
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty() && !h.contains('/'))
                .unwrap_or("ftp-upload")
                .to_owned();
            let dir = self.cwd.clone();
            let (path, mut upload) = blocking(move || fs.create_unique(&dir, &hint))
                .await
                .map_err(|e| fs_reply("STOU", &e))?;
            let connect = self.take_data_connection()?;
            let file = upload
                .take_file()
                .ok_or_else(|| Reply::new(451, "Local error: upload has no file"))?;
            let name = path.file_name().unwrap_or_default().to_owned();
            self.start_transfer(
                connect,
                format!("FILE: {name}"),
                Job::Receive(file, upload),
                Verb::Stou,
                path,
                None,
            )
            .await
        }
        .await
    }

    // ---- listings ----

    async fn cmd_list(&mut self, arg: Option<String>, style: ListStyle) -> Result<(), Reply> {
        async {
            let fs = self.need(Permission::List)?;
            let perms = self.login()?.perms;
            let target = Listing::gather(fs, &self.cwd, arg.as_deref(), style).await?;
            let fmt = LineFormat {
                style,
                perms,
                mlst: self.mlst,
                prefix: target.prefix,
                now: SystemTime::now(),
            };
            let connect = self.take_data_connection()?;
            let verb = style.verb();
            self.start_transfer(
                connect,
                format!("Here comes the listing of {}", target.path),
                Job::Send(SendSource::Listing(target.source, fmt)),
                verb,
                target.path,
                None,
            )
            .await
        }
        .await
    }

    async fn cmd_mlst(&mut self, arg: Option<String>) -> Reply {
        let result = async {
            let fs = self.need(Permission::List)?;
            let perms = self.login()?.perms;
            let shown = arg.as_deref().unwrap_or(".");
            let path = self.resolve(shown)?;
            let p = path.clone();
            let entry = blocking(move || fs.metadata(&p))
                .await
                .map_err(|e| fs_reply(shown, &e))?;
            let perm = perm_fact(perms, entry.kind);
            let mut f = facts(&entry, &perm);
            let full = path.to_string();
            f.name = &full;
            let line = listing::mlsx_line(&f, self.mlst);
            Ok::<_, Reply>(Reply::multi(250, format!("Listing {path}"), [line], "End"))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_stat_path(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::List)?;
            let perms = self.login()?.perms;
            let target = Listing::gather(fs, &self.cwd, Some(arg), ListStyle::List).await?;
            let now = SystemTime::now();
            // The reply travels on the control connection: a huge directory is cut short.
            let (first, dir) = match target.source {
                ListSource::Entries(v) => (v, None),
                ListSource::Dir(d) => (Vec::new(), Some(d)),
                ListSource::Continued(v, d) => (v, Some(d)),
            };
            let (mut entries, more) = match dir {
                None => (first, false),
                Some(mut d) => blocking(move || {
                    let mut batch = first;
                    let room = STAT_LISTING_LIMIT.saturating_sub(batch.len());
                    batch.extend(d.next_batch(room)?);
                    let more = !d.next_batch(1)?.is_empty();
                    Ok((batch, more))
                })
                .await
                .map_err(|e| fs_reply(arg, &e))?,
            };
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let mut lines: Vec<String> = entries
                .iter()
                .map(|e| listing::list_line(&facts(e, &perm_fact(perms, e.kind)), now))
                .collect();
            if more {
                lines.push(format!(
                    "(only the first {STAT_LISTING_LIMIT} entries are shown; use LIST for all)"
                ));
            }
            Ok::<_, Reply>(Reply::multi(
                213,
                format!("Status of {}:", target.path),
                lines,
                "End of status",
            ))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    // ---- information ----

    async fn cmd_size(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::List)?;
            let path = self.resolve(arg)?;
            let ascii_mode = self.ty == TransferType::Ascii;
            let p = path.clone();
            let fs2 = Arc::clone(&fs);
            let entry = blocking(move || fs2.metadata(&p))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            if entry.kind != EntryKind::File {
                return Err(Reply::new(550, format!("{arg}: not a regular file")));
            }
            if !ascii_mode {
                return Ok(Reply::new(213, entry.size.to_string()));
            }
            // In TYPE A the size is what would be sent (RFC 3659 §4), which takes a read.
            if entry.size > ASCII_SIZE_LIMIT {
                return Err(Reply::new(
                    550,
                    "SIZE in ASCII mode is not offered for files this large; use TYPE I",
                ));
            }
            let size = blocking(move || {
                let (file, _) = fs.open_read(&path, 0)?;
                ascii_size(file).map_err(StorageError::from)
            })
            .await
            .map_err(|e| fs_reply(arg, &e))?;
            Ok(Reply::new(213, size.to_string()))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_mdtm(&mut self, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::List)?;
            let path = self.resolve(arg)?;
            let entry = blocking(move || fs.metadata(&path))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            let modified = entry
                .modified
                .ok_or_else(|| Reply::new(550, format!("{arg}: modification time unknown")))?;
            Ok::<_, Reply>(Reply::new(213, listing::format_timeval(modified)))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_mfmt(&mut self, time: SystemTime, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::Write)?;
            let path = self.resolve(arg)?;
            let p = path.clone();
            blocking(move || fs.set_modified(&p, time))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            Ok::<_, Reply>(Reply::new(
                213,
                format!("Modify={}; {arg}", listing::format_timeval(time)),
            ))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    async fn cmd_chmod(&mut self, mode: u32, arg: &str) -> Reply {
        let result = async {
            let fs = self.need(Permission::Write)?;
            let path = self.resolve(arg)?;
            if mode & !0o777 != 0 {
                // Set on a file of the service account, setuid or setgid would hand its
                // rights to whoever runs the file.
                return Err(Reply::new(
                    550,
                    format!(
                        "SITE CHMOD {mode:o} refused: the setuid, setgid and sticky bits (7000) cannot be set; use a mode of 777 or less"
                    ),
                ));
            }
            let p = path.clone();
            blocking(move || fs.set_mode(&p, mode))
                .await
                .map_err(|e| fs_reply(arg, &e))?;
            info!(op = "chmod", path = %path, mode = format!("{mode:o}"), "file operation");
            Ok::<_, Reply>(Reply::new(200, "SITE CHMOD command successful"))
        }
        .await;
        result.unwrap_or_else(|r| r)
    }

    fn status_reply(&self) -> Reply {
        let mut body = Vec::new();
        match &self.login {
            Some(l) => {
                body.push(format!("Connected to {} from {}", self.local, self.peer));
                body.push(format!("Logged in as {}", l.name));
            }
            // The server's own address (maybe a private one behind NAT) is for users only.
            None => body.push("Not logged in".to_string()),
        }
        let ty = match self.ty {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        body.push(format!(
            "TYPE: {ty}; STRUcture: File; transfer MODE: Stream"
        ));
        body.push(match self.ctrl.tls_state() {
            Some(conn) => format!(
                "Control connection: {}; data connections: {}",
                match conn.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
                    _ => "TLS",
                },
                if self.prot_private {
                    "protected (PROT P)"
                } else {
                    "clear (PROT C)"
                }
            ),
            None => "Control connection: not encrypted".to_string(),
        });
        body.push(match &self.data {
            DataSetup::None => "No data connection".to_string(),
            DataSetup::Passive { listener, .. } => {
                format!("Passive mode: waiting on port {}", listener.port())
            }
            DataSetup::Active(t) => format!("Active mode: will connect to {t}"),
        });
        body.push(format!(
            "Idle timeout: {} s",
            self.live.config.limits.idle_timeout_secs
        ));
        Reply::multi(211, "ferroftp status:", body, "End of status")
    }
}

impl Job {
    fn into_upload(self) -> Option<Upload> {
        match self {
            Job::Receive(file, mut upload) => {
                // Not yet written to; the std file is only needed for commit or abort.
                drop(file);
                let _ = upload.take_file();
                Some(upload)
            }
            Job::Send(_) => None,
        }
    }
}

/// How long to wait for the client's close after our close_notify before answering anyway.
const TLS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS handshake of a data connection, refused unless it resumes the control session.
async fn open_data_tls(tcp: TcpStream, p: &DataTls) -> Result<Stream, TransferError> {
    let (config, token) = p.session.data_config(p.direction);
    let tls = match stream::accept_tls(tcp, config, p.handshake_timeout, |c| {
        c.set_resumption_data(&token)
    })
    .await
    {
        Ok(tls) => tls,
        Err(e) => {
            p.metrics.tls_handshake_failed(TlsConnection::Data);
            warn!(error = %e, "TLS handshake on the data connection failed (is the client using PROT P?)");
            return Err(TransferError::DataTls(format!("TLS handshake failed: {e}")));
        }
    };
    log_handshake("data", &tls);
    if p.require_reuse {
        if let Err(why) = p.session.check_reuse(tls.get_ref().1) {
            warn!(
                reason = why,
                "refused a TLS data connection that is not bound to this session"
            );
            // Say goodbye properly, so the client sees a closed connection rather than an error.
            let mut tls = tls;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tls.shutdown()).await;
            return Err(TransferError::DataTls(format!(
                "{why}; the client must reuse the control connection's TLS session"
            )));
        }
    }
    p.session.grant(token);
    Ok(Stream::Tls(Box::new(tls)))
}

async fn wait_transfer(running: &mut Option<Running>) -> Outcome {
    match running {
        Some(r) => match (&mut r.handle).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "transfer task failed");
                Outcome {
                    result: Err(TransferError::Copy(CopyError::Local(io::Error::other(
                        "internal error in the transfer",
                    )))),
                    upload: None,
                }
            }
        },
        None => std::future::pending().await,
    }
}

fn log_transfer(running: &Running, bytes: u64, elapsed: std::time::Duration, result: &str) {
    let direction = Direction::of_verb(running.verb).as_str();
    info!(
        verb = running.verb.name(),
        direction,
        path = %running.path,
        bytes,
        duration_ms = elapsed.as_millis() as u64,
        io = running.io,
        result,
        "transfer"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStyle {
    List,
    Nlst,
    Mlsd,
}

impl ListStyle {
    fn verb(self) -> Verb {
        match self {
            Self::List => Verb::List,
            Self::Nlst => Verb::Nlst,
            Self::Mlsd => Verb::Mlsd,
        }
    }
}

/// What a listing command shows: the entries, the path listed, and for NLST of a path the
/// prefix each name gets (so that `NLST dir` answers `dir/a`, as clients' mget expects).
struct Listing {
    path: VPath,
    source: ListSource,
    prefix: String,
}

impl Listing {
    async fn gather(
        fs: Arc<dyn Storage>,
        cwd: &VPath,
        arg: Option<&str>,
        style: ListStyle,
    ) -> Result<Self, Reply> {
        let shown = arg.unwrap_or(".");
        check_line_ends(shown)?;
        let path = VPath::resolve(cwd, shown).map_err(|e| fs_reply(shown, &e))?;
        let prefix = match arg {
            Some(a) if style == ListStyle::Nlst => format!("{}/", a.trim_end_matches('/')),
            _ => String::new(),
        };
        let p = path.clone();
        let fs2 = Arc::clone(&fs);
        let names_only = style == ListStyle::Nlst;
        // What the path is and, for a directory, the directory opened: one thread trip.
        let found = blocking(move || {
            let entry = fs2.metadata(&p)?;
            if entry.kind != EntryKind::Dir {
                return Ok(Err(entry));
            }
            let dir = if names_only {
                fs2.read_dir_names(&p)
            } else {
                fs2.read_dir(&p)
            };
            dir.map(Ok)
        })
        .await;
        match found {
            Ok(Ok(dir)) => Ok(Self {
                path,
                source: ListSource::Dir(dir),
                prefix,
            }),
            Ok(Err(mut entry)) => {
                if style == ListStyle::Mlsd {
                    return Err(Reply::new(
                        501,
                        format!("{shown}: not a directory (use MLST)"),
                    ));
                }
                // A file lists as itself, under the name the client gave.
                entry.name = if style == ListStyle::Nlst {
                    shown.to_owned()
                } else {
                    entry.name
                };
                Ok(Self {
                    path,
                    source: ListSource::Entries(vec![entry]),
                    prefix: String::new(),
                })
            }
            Err(StorageError::NotFound) if is_glob(shown) => {
                Self::gather_glob(fs, cwd, shown, style == ListStyle::Nlst).await
            }
            Err(e) => Err(fs_reply(shown, &e)),
        }
    }

    /// `LIST *.txt`, `NLST dir/*.log`: a pattern in the last component, as `mget` sends.
    /// Matches are streamed like a plain listing: up to [`SORTED_LISTING_LIMIT`] of them are
    /// listed sorted, more in the order the directory gives (memory stays bounded).
    async fn gather_glob(
        fs: Arc<dyn Storage>,
        cwd: &VPath,
        shown: &str,
        nlst: bool,
    ) -> Result<Self, Reply> {
        let (dir_part, pattern) = match shown.rfind('/') {
            Some(i) => (&shown[..=i], &shown[i + 1..]),
            None => ("", shown),
        };
        let pat = glob::Pattern::new(pattern)
            .map_err(|_| Reply::new(501, format!("{shown}: bad pattern")))?;
        let dir = VPath::resolve(cwd, if dir_part.is_empty() { "." } else { dir_part })
            .map_err(|e| fs_reply(shown, &e))?;
        let d = dir.clone();
        // The first batch is read now: no match at all is a 550, not an empty listing.
        let (first, stream) = blocking(move || {
            let stream = if nlst {
                fs.read_dir_names(&d)?
            } else {
                fs.read_dir(&d)?
            };
            let mut stream = stream.matching(move |name| pat.matches(name));
            let first = stream.next_batch(SORTED_LISTING_LIMIT)?;
            Ok((first, stream))
        })
        .await
        .map_err(|e| fs_reply(shown, &e))?;
        if first.is_empty() {
            return Err(Reply::new(
                550,
                format!("{shown}: No such file or directory"),
            ));
        }
        let source = if first.len() < SORTED_LISTING_LIMIT {
            // Every match is in hand.
            let mut first = first;
            first.sort_by(|a, b| a.name.cmp(&b.name));
            ListSource::Entries(first)
        } else {
            ListSource::Continued(first, stream)
        };
        let prefix = if nlst {
            dir_part.to_owned()
        } else {
            String::new()
        };
        Ok(Self {
            path: dir,
            source,
            prefix,
        })
    }
}

/// Refuses a path argument with a CR or LF in it (501): such a name would travel raw in NLST
/// and in replies, where a line end forges the lines after it.
fn check_line_ends(arg: &str) -> Result<(), Reply> {
    if arg.contains(['\r', '\n']) {
        return Err(Reply::new(
            501,
            "Path names may not contain CR or LF characters",
        ));
    }
    Ok(())
}

fn is_glob(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    last.contains(['*', '?', '['])
}

fn facts<'a>(e: &'a Entry, perm: &'a str) -> Facts<'a> {
    Facts {
        name: &e.name,
        kind: match e.kind {
            EntryKind::File => FileKind::File,
            EntryKind::Dir => FileKind::Dir,
            EntryKind::Symlink => FileKind::Symlink,
            EntryKind::Other => FileKind::Other,
        },
        size: e.size,
        modified: e.modified,
        mode: e.mode,
        nlink: e.nlink,
        perm,
    }
}

/// The RFC 3659 `perm` fact: what this user may do with an entry.
fn perm_fact(perms: Permissions, kind: EntryKind) -> String {
    use Permission::*;
    let letters: &[(Permission, char)] = if kind == EntryKind::Dir {
        &[
            (List, 'l'),
            (Write, 'c'),
            (Mkdir, 'm'),
            (Delete, 'p'),
            (Rmdir, 'd'),
            (Rename, 'f'),
        ]
    } else {
        &[
            (Read, 'r'),
            (Write, 'w'),
            (Append, 'a'),
            (Delete, 'd'),
            (Rename, 'f'),
        ]
    };
    // Entering a directory (CWD) needs no permission.
    let enter = (kind == EntryKind::Dir).then_some('e');
    enter
        .into_iter()
        .chain(
            letters
                .iter()
                .filter(|(p, _)| perms.has(*p))
                .map(|&(_, c)| c),
        )
        .collect()
}

const ASCII_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

fn ascii_size(mut file: ReadStream) -> io::Result<u64> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_cr = false;
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += ferroftp_proto::ascii::network_size(&buf[..n], &mut last_cr);
    }
}

/// Whether `cmd` may run before login: the verb table's rule (`ferroftp_proto::verbs`).
fn allowed_before_login(cmd: &Command) -> bool {
    cmd.allowed_before_login()
}

/// Whether `ip` can only be reached from inside some network: private, loopback, link-local,
/// carrier-grade NAT or unique-local.
fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_anonymous_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

fn permission_verb(p: Permission) -> &'static str {
    match p {
        Permission::List => "list directories",
        Permission::Read => "download files",
        Permission::Write => "upload or change files",
        Permission::Append => "append to or resume files",
        Permission::Delete => "delete files",
        Permission::Rename => "rename",
        Permission::Mkdir => "create directories",
        Permission::Rmdir => "remove directories",
    }
}

/// The reply for a failed file operation on `shown` (the path as the client wrote it, so no
/// host path is ever revealed).
fn fs_reply(shown: &str, e: &StorageError) -> Reply {
    match e {
        StorageError::InvalidName => Reply::new(553, format!("{shown}: {e}")),
        StorageError::NoSpace => Reply::new(452, format!("{shown}: {e}")),
        StorageError::InvalidOffset => Reply::new(554, format!("{shown}: {e}")),
        // Refused before anything changed: the command exists, this storage cannot do it.
        StorageError::Unsupported(_) => Reply::new(502, format!("{shown}: {e}")),
        StorageError::Escape => {
            warn!(path = %shown, "refused a path that leads outside the home directory");
            Reply::new(550, format!("{shown}: {e}"))
        }
        StorageError::Io(io) => {
            warn!(path = %shown, error = %io, "local file error");
            Reply::new(451, format!("{shown}: local error"))
        }
        _ => Reply::new(550, format!("{shown}: {e}")),
    }
}

fn storage_failure_reply(e: &StorageError) -> Reply {
    match e {
        StorageError::NoSpace => Reply::new(452, "Transfer failed: no space left on the server"),
        StorageError::Unsupported(_) => Reply::new(502, format!("Transfer failed: {e}")),
        other => Reply::new(451, format!("Transfer failed: local error ({other})")),
    }
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

/// Resolves `user`'s home (`None`: the root) and opens it with the server's storage back-end
/// (the local one creates a missing home below the root, and shares open homes). Blocks: runs
/// on a blocking thread.
fn land(shared: &Shared, live: &Live, user: &str, home: Option<&std::path::Path>) -> Landing {
    let home = live.home_dir(home)?;
    let opened = shared.storage.open_home(user, &home, &live.root);
    Ok((home, opened))
}

fn maybe_rehash(shared: &Arc<Shared>, live: &Live, user: &User, password: String) {
    let legacy = user.has_legacy_hash();
    let Some(path) = live.config.users_file.clone() else {
        return;
    };
    if !legacy || !live.config.auth.rehash_to_argon2 {
        return;
    }
    let first = live
        .rehashed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.name.clone());
    if !first {
        return;
    }
    let shared = Arc::clone(shared);
    let user = user.clone();
    let task = async move {
        let Ok(_permit) = shared.hash_pool.acquire().await else {
            return;
        };
        let name = user.name.clone();
        let file = path.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            auth::upgrade_hash(&path, &user, &password, HashParams::default())
        })
        .await;
        match outcome {
            Ok(Ok(Upgrade::Upgraded(from))) => info!(
                user = %name,
                from = %from,
                file = %file.display(),
                "password hash upgraded to argon2id in the users file (in force from the next reload or restart)"
            ),
            Ok(Ok(Upgrade::Unchanged)) => debug!(
                user = %name,
                "password hash not upgraded: the users file no longer holds the hash that was checked"
            ),
            Ok(Err(e)) => warn!(
                user = %name,
                error = %e,
                "cannot upgrade the password hash to argon2id (auth.rehash_to_argon2); the old hash stays in use. The server's user must be able to create files in the users file's directory (ferroftp doctor checks it)"
            ),
            Err(e) => warn!(user = %name, error = %e, "the password hash upgrade failed"),
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Io(io::Error::other(e.to_string()))))
}

/// The FEAT reply, from the verb table, for this session's MLST facts and listener.
fn feat_reply(mlst: MlstFacts, mode: ListenerMode) -> Reply {
    let tls = match mode {
        ListenerMode::Plain => TlsOffer::None,
        ListenerMode::Explicit => TlsOffer::Explicit,
        ListenerMode::Implicit => TlsOffer::Implicit,
    };
    verbs::feat_reply(mlst, tls)
}

/// The HELP reply, from the verb table.
fn help_reply(topic: Option<&str>) -> Reply {
    verbs::help_reply(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

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
