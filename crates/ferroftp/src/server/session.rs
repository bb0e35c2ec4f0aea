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
use crate::storage::{self, Entry, EntryKind, LocalFs, StorageError, Upload, VPath};
use crate::tls::{DataDirection, SessionTls};

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

struct Running {
    handle: JoinHandle<Outcome>,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
    kind: TransferKind,
    path: VPath,
    total: Option<u64>,
    started: Instant,
    /// How the bytes move, for the log: `sendfile`, `tls` or `copy`.
    io: &'static str,
    /// TYPE I (else TYPE A), for the transfer log.
    binary: bool,
}

enum Job {
    Send(SendSource),
    Receive(std::fs::File, Upload),
}

enum SendSource {
    /// A file, its starting offset and the bytes left in it.
    File(std::fs::File, u64, u64),
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
    fs: Arc<LocalFs>,
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
    /// AUTH: the TLS set-up made ready before the 234.
    tls_ready: Option<SessionTls>,
    /// A line over the limit arrived (the limit); the session ends once the lines before it ran.
    too_long: Option<usize>,
    inbuf: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    /// The configuration and users in force, taken afresh before each command.
    live: Arc<Live>,
    home: Option<Home>,
    found: Option<FoundHome>,
    /// The passive port the core's `DataSetup::Passive` stands for.
    passive: Option<PassiveListener>,
    /// What a transfer reads or writes, opened and waiting for its data connection.
    prepared: Option<Job>,
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
            tls_ready: None,
            too_long: None,
            inbuf: Vec::new(),
            lines: VecDeque::new(),
            peer,
            local,
            live,
            reloaded: shared.reloaded.subscribe(),
            shared,
            home: None,
            found: None,
            passive: None,
            prepared: None,
            transfer: None,
            handle,
        }
    }

    /// Show the admin API what changed: user, TLS, PROT, last command, the transfer. Called
    /// once per turn of the command loop; strings are copied only when they change.
    fn publish(&self) {
        let user = self.core.user();
        let tls = self.ctrl.tls_state();
        let prot_private = self.core.tls().data_private();
        let last_activity = self.core.last_activity();
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
            state.prot_private = prot_private;
            state.last_activity = last_activity;
            match (&self.transfer, &state.transfer) {
                (None, None) => {}
                (None, Some(_)) => state.transfer = None,
                (Some(r), Some(t)) if Arc::ptr_eq(&r.progress, &t.progress) => {}
                (Some(r), _) => {
                    let started_at = SystemTime::now()
                        .checked_sub(r.started.elapsed())
                        .unwrap_or_else(SystemTime::now);
                    state.transfer = Some(TransferState {
                        verb: r.kind.verb(),
                        path: r.path.to_string(),
                        direction: Direction::of_verb(r.kind.verb()).as_str(),
                        total: r.total,
                        started_at,
                        progress: Arc::clone(&r.progress),
                    });
                }
            }
        });
    }

    async fn serve(&mut self) -> CloseReason {
        let greeting = Reply::new(220, self.live.config.greeting.clone());
        if self.send(greeting).await.is_err() {
            return CloseReason::GoneBeforeGreeting;
        }
        loop {
            if let Some(reason) = self.refresh_live().await {
                return self.close(reason).await;
            }
            if self.handle.is_kicked() {
                return self.close(CloseReason::Kicked).await;
            }
            while let Some(line) = self.next_runnable_line() {
                // Boxed: the state of the biggest command (a login, a transfer's start, an
                // AUTH) is held only while a command runs, not by every idle session.
                match Box::pin(self.dispatch(&line)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Close(reason)) => return self.close(reason).await,
                    Err(_) => return self.close(CloseReason::WriteFailed).await,
                }
            }
            // An over-long line ends the session, but only after the commands that came
            // before it have been answered.
            if let Some(limit) = self.too_long {
                if self.transfer.is_none() && self.lines.is_empty() {
                    let text = format!("Command line too long (the limit is {limit} bytes)");
                    warn!(limit, "control line too long; closing");
                    let _ = self.send(Reply::new(500, text)).await;
                    return self.close(CloseReason::LineTooLong).await;
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
                    Some(false) => return self.close(CloseReason::ClientClosed).await,
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
            let deadline = self.core.deadline();
            let passive_expiry = self.core.passive_expiry();
            let far = Instant::now() + std::time::Duration::from_secs(86_400);
            tokio::select! {
                read = self.ctrl.read_into(&mut self.inbuf), if may_read => {
                    match read {
                        Ok(0) | Err(_) => return self.close(CloseReason::ClientClosed).await,
                        Ok(_) => self.split_lines(),
                    }
                }
                outcome = wait_transfer(&mut self.transfer), if self.transfer.is_some() => {
                    if let Err(_) | Ok(Flow::Close(_)) = self.finish_transfer(outcome).await {
                        return self.close(CloseReason::GoneDuringTransfer).await;
                    }
                }
                _ = tokio::time::sleep_until(passive_expiry.unwrap_or(far).into()), if passive_expiry.is_some() => {
                    debug!("passive port released: no transfer within the data timeout");
                    self.passive = None;
                    self.core.event(Event::PassiveExpired, Instant::now());
                }
                // Shutting down: idle sessions go at once, transfers when the grace period ends.
                _ = self.shared.stopping.cancelled(), if self.transfer.is_none() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                _ = self.shared.closing.cancelled(), if self.transfer.is_some() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                // An administrator closes the session, whatever it is doing.
                _ = self.handle.kicked() => {
                    return self.close(CloseReason::Kicked).await;
                }
                // A reload: the loop takes the new configuration (and logs out a user who was
                // disabled or removed) before waiting again.
                Ok(()) = self.reloaded.changed() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(far).into()), if self.transfer.is_none() && deadline.is_some() => {
                    let out = self.core.timeout();
                    let reason = self.answer_and_end(out).await.unwrap_or(CloseReason::IdleTimeout);
                    return self.close(reason).await;
                }
            }
        }
    }

    /// Take the configuration in force now. After a reload a logged-in user is checked
    /// against the new users (the core decides what it means). `Some(reason)` to end.
    async fn refresh_live(&mut self) -> Option<CloseReason> {
        let live = self.shared.live();
        if live.generation == self.live.generation {
            return None;
        }
        self.live = live;
        self.core.set_settings(settings(&self.live, &self.listener));
        let name = self.core.user()?;
        let update = if is_anonymous_name(name) && self.live.users.get(name).is_none() {
            let anon = &self.live.config.anonymous;
            if anon.enabled {
                AccountUpdate::Anonymous(anon.permissions)
            } else {
                AccountUpdate::AnonymousOff
            }
        } else {
            match self.live.users.get(name) {
                Some(user) if !user.disabled => {
                    AccountUpdate::Kept(user.permissions, user.tls_policy)
                }
                _ => AccountUpdate::Gone,
            }
        };
        let out = self.core.event(Event::Reloaded(update), Instant::now());
        self.answer_and_end(out).await
    }

    /// Send the replies of an output whose only possible effect is the end (a timeout, a
    /// reload): the client may be gone, the session ends all the same.
    async fn answer_and_end(&mut self, mut out: Output) -> Option<CloseReason> {
        for reply in out.replies.drain() {
            let _ = self.send(reply).await;
        }
        match out.effect {
            Some(Effect::Close(reason)) => Some(reason),
            _ => None,
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
        reason: CloseReason,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CloseReason> + Send + '_>> {
        // Boxed, as dispatch: an idle session's future need not have room for its ending.
        Box::pin(self.close_now(reason))
    }

    async fn close_now(&mut self, reason: CloseReason) -> CloseReason {
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
                verb = running.kind.verb(),
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
                CloseReason::Shutdown => Some("the server is shutting down"),
                CloseReason::Kicked => Some("the session was closed by an administrator"),
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
            CloseReason::Shutdown => Some("Server shutting down; please reconnect later"),
            CloseReason::Kicked => Some("Session closed by an administrator"),
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
        let parsed = command::parse(raw);
        match &parsed {
            Err(e) => debug!(error = %e, "bad command"),
            Ok(Command::Pass(_)) => debug!("command PASS ****"),
            Ok(other) => debug!(command = ?other, "command"),
        }
        let out = self.core.command(parsed, Instant::now());
        self.drive(out).await
    }

    /// Send the core's replies and carry out its effects, feeding each result back, until it
    /// has nothing more to do.
    async fn drive(&mut self, mut out: Output) -> io::Result<Flow> {
        loop {
            if !matches!(out.effect, Some(Effect::StartTransfer { .. })) {
                self.follow_core();
            }
            for reply in out.replies.drain() {
                self.send(reply).await?;
            }
            let Some(effect) = out.effect.take() else {
                return Ok(Flow::Continue);
            };
            match self.carry_out(effect).await {
                Step::Event(event) => out = self.core.event(event, Instant::now()),
                Step::Done => return Ok(Flow::Continue),
                Step::Close(reason) => return Ok(Flow::Close(reason)),
            }
        }
    }

    /// Drop what the core's state no longer stands for: the home once logged out, the passive
    /// port once it is no longer the data set-up.
    fn follow_core(&mut self) {
        if self.core.user().is_none() {
            self.home = None;
        }
        if !matches!(self.core.data(), DataSetup::Passive { .. }) {
            self.passive = None;
        }
    }

    async fn carry_out(&mut self, effect: Effect) -> Step {
        match effect {
            Effect::CheckCertificate { name } => {
                let user = self.certificate_user(&name).map(|user| {
                    self.found = Some(FoundHome::Configured(user.home.clone()));
                    Account {
                        name: user.name,
                        perms: user.permissions,
                        tls_policy: user.tls_policy,
                    }
                });
                Step::Event(Event::Certificate(user))
            }
            Effect::VerifyPassword { name, password } => {
                Step::Event(self.verify_password(name, password).await)
            }
            Effect::OpenHome { account, method } => {
                Step::Event(Event::HomeOpened(self.open_home(account, method).await))
            }
            Effect::PrepareTls(_) => {
                Step::Event(match self.live.tls.as_ref().map(|t| t.session()) {
                    Some(Ok(session)) => {
                        self.tls_ready = Some(session);
                        Event::TlsReady
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot set up TLS for a session");
                        Event::TlsUnavailable { configured: true }
                    }
                    None => Event::TlsUnavailable { configured: false },
                })
            }
            Effect::Handshake(_) => Step::Event(self.handshake().await),
            Effect::OpenPassive(kind) => Step::Event(self.open_passive(kind).await),
            Effect::Storage(op) => Step::Event(Event::Storage(self.storage(op).await)),
            Effect::PrepareTransfer(kind, source) => {
                Step::Event(self.prepare_transfer(kind, source).await)
            }
            Effect::StartTransfer {
                kind,
                data,
                protected,
            } => match self.start_transfer(kind, data, protected) {
                Some(event) => Step::Event(event),
                None => Step::Done,
            },
            Effect::DiscardTransfer => {
                self.prepared = None;
                Step::Done
            }
            Effect::AbortTransfer => {
                if let Some(running) = &self.transfer {
                    running.cancel.cancel();
                }
                Step::Done
            }
            Effect::TransferStatus => Step::Event(Event::TransferProgress {
                bytes: self
                    .transfer
                    .as_ref()
                    .map_or(0, |r| r.progress.load(Ordering::Relaxed)),
                now: Instant::now(),
            }),
            Effect::Close(reason) => Step::Close(reason),
        }
    }

    // ---- access ----

    /// PASS for a user (anonymous logins do not come here): the ban and throttling rules, the
    /// hash check (off the async workers when it is slow), the failure bookkeeping.
    async fn verify_password(&mut self, name: String, password: String) -> Event {
        let shared = Arc::clone(&self.shared);
        let live = Arc::clone(&self.live);
        // The ban is checked before every password check, not only at connect: sessions
        // opened before a ban must not go on guessing. An address whose checks in flight
        // fill its allowance waits for one to end, up to the time left to log in.
        let deadline = self.core.login_deadline();
        let mut ticket = match shared
            .guard
            .admit_waiting(self.peer.ip(), &name, deadline.into())
            .await
        {
            Admission::Verify { ticket, wait } => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Some(ticket)
            }
            refused => {
                let (why, reason) = match refused {
                    Admission::Banned(left) => {
                        (PreCheckRefusal::Banned(left.as_secs()), "address banned")
                    }
                    Admission::UserBusy => (PreCheckRefusal::UserBusy, "user name throttled"),
                    Admission::AddressBusy | Admission::Verify { .. } => (
                        PreCheckRefusal::AddressBusy,
                        "password checks from the address did not end in time",
                    ),
                };
                warn!(ip = %self.peer.ip(), user = %name, reason, "login refused before the password check");
                return Event::LoginRefused(why);
            }
        };
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
                    if let Some(landing) = found {
                        self.found = Some(FoundHome::Landed(landing));
                    }
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
                if !matches!(self.found, Some(FoundHome::Landed(_))) {
                    self.found = Some(FoundHome::Configured(user.home.clone()));
                }
                Event::PasswordAccepted(Account {
                    name: user.name,
                    perms: user.permissions,
                    tls_policy: user.tls_policy,
                })
            }
            Err(refusal) => {
                shared.metrics.login_failed();
                if refusal == Refusal::Disabled {
                    // The right password for a disabled account: a line of its own for the
                    // administrator, and otherwise a failure like any other (counted, held
                    // back, banned, and the fail2ban line below), so that nothing the client
                    // sees tells that the password was right, which would be worth knowing
                    // once the account is enabled again.
                    warn!(ip = %self.peer.ip(), user = %name, "login refused: user disabled");
                }
                // The line fail2ban matches (contrib/fail2ban): keep its shape. The client's
                // address comes first, before the user name that the client chose.
                let failures = self.core.failed_logins() + 1;
                warn!(ip = %self.peer.ip(), user = %name, failures, "login failed");
                let verdict =
                    shared
                        .guard
                        .failure(self.peer.ip(), &name, std::time::Instant::now());
                // Counted as a failure now: no longer as a check in progress.
                drop(ticket);
                if let Some(ban) = verdict.banned {
                    shared.metrics.banned();
                    warn!(ip = %self.peer.ip(), ban_secs = ban.as_secs(), "address banned after repeated failed logins");
                    return Event::PasswordRejected {
                        banned: Some(ban.as_secs()),
                    };
                }
                // Slower replies as failures pile up; the same for existing and unknown users.
                tokio::time::sleep(verdict.delay).await;
                Event::PasswordRejected { banned: None }
            }
        }
    }

    /// Open the home directory of the account being logged in: resolved against the root and
    /// refused when not allowed (outside the root; the users were checked when loaded, so
    /// this is defence in depth). Resolving (symbolic links followed), the cache check,
    /// creating a missing home and opening it all touch the file system, so they run together
    /// on one blocking thread: a slow mount must not stall an async worker at every login.
    async fn open_home(&mut self, account: Account, method: core::LoginMethod) -> bool {
        let found = match (method, self.found.take()) {
            (core::LoginMethod::Anonymous, _) => {
                FoundHome::Configured(Some(self.live.config.anonymous.home.clone()))
            }
            (_, Some(found)) => found,
            (_, None) => FoundHome::Configured(None),
        };
        let landing = match found {
            FoundHome::Landed(landing) => landing,
            FoundHome::Configured(home) => {
                let shared = Arc::clone(&self.shared);
                let live = Arc::clone(&self.live);
                let user = account.name.clone();
                tokio::task::spawn_blocking(move || land(&shared, &live, &user, home.as_deref()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the home lookup failed: {e}")))
            }
        };
        let (home, opened) = match landing {
            Ok(found) => found,
            Err(reason) => {
                tracing::error!(user = %account.name, %reason, "login refused: home directory not allowed");
                return false;
            }
        };
        match opened {
            Ok(fs) => {
                tracing::Span::current().record("user", account.name.as_str());
                let method = metrics_method(method);
                let how = match method {
                    LoginMethod::Certificate => "client certificate",
                    other => other.as_str(),
                };
                info!(user = %account.name, home = %home.display(), permissions = %account.perms, method = how, "login ok");
                self.shared.metrics.login_ok(method);
                self.home = Some(Home { fs, path: home });
                true
            }
            Err(e) => {
                tracing::error!(user = %account.name, home = %home.display(), error = %e, "home directory unavailable");
                false
            }
        }
    }

    /// The user a verified TLS client certificate logs in as, if it maps to `name`.
    fn certificate_user(&self, name: &str) -> Option<crate::auth::User> {
        let conn = self.ctrl.tls_state()?;
        let leaf = conn.peer_certificates()?.first()?;
        let fingerprint = crate::tls::fingerprint(leaf.as_ref());
        let user = self.live.users.get(name)?;
        (!user.disabled && user.client_certs.contains(&fingerprint)).then(|| user.clone())
    }

    // ---- security ----

    /// The 234 is out: turn the control connection into TLS.
    async fn handshake(&mut self) -> Event {
        let Some(session) = self.tls_ready.take() else {
            return Event::NotPlain;
        };
        // Anything the client sent after AUTH and before the handshake is plaintext that an
        // attacker could have injected; it must never run as if it came over TLS.
        if !self.lines.is_empty() || !self.inbuf.is_empty() {
            warn!("discarded plaintext commands pipelined after AUTH");
            self.lines.clear();
            self.inbuf.clear();
        }
        let Some(tcp) = self.ctrl.take_plain() else {
            return Event::NotPlain;
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
                let version = tls_version(s.get_ref().1);
                self.ctrl = Stream::Tls(Box::new(s));
                self.tls = Some(session);
                Event::TlsEstablished(version)
            }
            Err(e) => {
                self.shared
                    .metrics
                    .tls_handshake_failed(TlsConnection::Control);
                warn!(error = %e, "TLS handshake on the control connection failed");
                Event::TlsFailed
            }
        }
    }

    // ---- data connection set-up ----

    async fn open_passive(&mut self, kind: PassiveKind) -> Event {
        let announce = match kind {
            PassiveKind::Pasv => match announce_address(
                &Arc::clone(&self.live),
                &Arc::clone(&self.shared),
                self.peer,
                self.local,
            )
            .await
            {
                Ok(ip) => Some(ip),
                Err(why) => return Event::PassiveFailed(why),
            },
            PassiveKind::Epsv => None,
        };
        // A new PASV replaces the old one, whose port is released right here.
        self.passive = None;
        let listener = match self.live.ports.bind(self.local.ip()) {
            Ok(l) => l.counted(self.shared.metrics.passive_port()),
            Err(e) => {
                tracing::error!(error = %e, "cannot open a passive port");
                return Event::PassiveFailed(PassiveFailure::Bind(e.to_string()));
            }
        };
        let local_port = listener.port();
        debug!(port = local_port, "passive port open");
        self.passive = Some(listener);
        let port = self.announced_port(local_port);
        Event::PassiveOpened {
            local_port,
            port,
            pasv: announce.map(|ip| std::net::SocketAddrV4::new(ip, port)),
        }
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

    /// The data connection the core's set-up names: accept on the passive port, or connect out.
    fn data_connection(&mut self, data: DataSetup) -> Option<ConnectFuture> {
        match data {
            DataSetup::None => None,
            DataSetup::Passive { .. } => {
                let listener = self.passive.take()?;
                let cfg = &self.live.config;
                let proxies = self
                    .listener
                    .proxy_protocol
                    .then(|| Arc::new(cfg.proxy.trusted.clone()));
                Some(Box::pin(listener.accept(
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
                Some(Box::pin(data::connect_active(
                    local_ip,
                    target,
                    timeout,
                    source_port,
                )))
            }
        }
    }

    // ---- storage ----

    fn fs(&self) -> Result<Arc<LocalFs>, StorageError> {
        self.home
            .as_ref()
            .map(|h| Arc::clone(&h.fs))
            .ok_or(StorageError::PermissionDenied)
    }

    /// Run a file command's storage operation on a blocking thread.
    async fn storage(&mut self, op: StorageOp) -> Result<StorageDone, StorageError> {
        let fs = self.fs()?;
        match op {
            StorageOp::Metadata(p) => blocking(move || fs.metadata(&p))
                .await
                .map(StorageDone::Entry),
            StorageOp::Mkdir(p) => blocking(move || fs.mkdir(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::Rmdir(p) => blocking(move || fs.rmdir(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::RemoveFile(p) => blocking(move || fs.remove_file(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::Rename { from, to, replace } => blocking(move || {
                if replace {
                    fs.rename(&from, &to)
                } else {
                    fs.rename_no_replace(&from, &to)
                }
            })
            .await
            .map(|()| StorageDone::Done),
            StorageOp::AsciiSize(p) => blocking(move || {
                let (file, _) = fs.open_read(&p, 0)?;
                ascii_size(file).map_err(StorageError::from)
            })
            .await
            .map(StorageDone::Size),
            StorageOp::SetModified(p, time) => blocking(move || fs.set_modified(&p, time))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::SetMode(p, mode) => blocking(move || fs.set_mode(&p, mode))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::StatListing { cwd, arg } => {
                let perms = self
                    .core
                    .account()
                    .map_or(Permissions::NONE, |(a, _)| a.perms);
                let reply = stat_listing(fs, &cwd, &arg, perms)
                    .await
                    .unwrap_or_else(|r| r);
                Ok(StorageDone::Reply(reply))
            }
        }
    }

    // ---- transfers ----

    /// Open what a transfer reads or writes; it waits in `prepared` for its data connection.
    async fn prepare_transfer(&mut self, kind: TransferKind, source: TransferSource) -> Event {
        let fs = match self.fs() {
            Ok(fs) => fs,
            Err(e) => return Event::Storage(Err(e)),
        };
        match source {
            TransferSource::Read { path, offset } => {
                let p = path.clone();
                match blocking(move || fs.open_read(&p, offset)).await {
                    Ok((file, len)) => {
                        let total = len - offset;
                        self.prepared = Some(Job::Send(SendSource::File(file, offset, total)));
                        Event::TransferPrepared {
                            total: Some(total),
                            path,
                        }
                    }
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Write { path, mode } => {
                let p = path.clone();
                match blocking(move || fs.create_upload(&p, mode)).await {
                    Ok(upload) => self.prepared_upload(upload, path),
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Unique { dir, hint } => {
                match blocking(move || fs.create_unique(&dir, &hint)).await {
                    Ok((path, upload)) => self.prepared_upload(upload, path),
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Listing { cwd, arg } => {
                let style = match kind {
                    TransferKind::Nlst => ListStyle::Nlst,
                    TransferKind::Mlsd => ListStyle::Mlsd,
                    _ => ListStyle::List,
                };
                let perms = self
                    .core
                    .account()
                    .map_or(Permissions::NONE, |(a, _)| a.perms);
                match Listing::gather(fs, &cwd, arg.as_deref(), style).await {
                    Ok(target) => {
                        let fmt = LineFormat {
                            style,
                            perms,
                            mlst: self.core.mlst(),
                            prefix: target.prefix,
                            now: SystemTime::now(),
                        };
                        self.prepared = Some(Job::Send(SendSource::Listing(target.source, fmt)));
                        Event::TransferPrepared {
                            total: None,
                            path: target.path,
                        }
                    }
                    Err(reply) => Event::TransferRefused(reply),
                }
            }
        }
    }

    fn prepared_upload(&mut self, mut upload: Upload, path: VPath) -> Event {
        match upload.take_file() {
            Some(file) => {
                self.prepared = Some(Job::Receive(file, upload));
                Event::TransferPrepared { total: None, path }
            }
            None => Event::TransferRefused(Reply::new(451, "Local error: upload has no file")),
        }
    }

    /// How this transfer's data connection is protected, from PROT and the listener.
    fn data_tls(&self, direction: DataDirection, protected: bool) -> Option<DataTls> {
        let session = self.tls.as_ref().filter(|_| protected)?;
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

    /// Run the prepared transfer over the data connection in the background (its 150 is out).
    fn start_transfer(
        &mut self,
        kind: TransferKind,
        data: DataSetup,
        protected: bool,
    ) -> Option<Event> {
        let (Some(job), Some(connect)) = (self.prepared.take(), self.data_connection(data)) else {
            // The core and the driver disagree about the set-up: a bug, answered all the same.
            return Some(Event::TransferEnded(TransferEnd::NoDataConnection(
                "no data connection is set up".to_string(),
            )));
        };
        let (path, total) = match self.core.activity() {
            core::Activity::Transfer(r) => (r.path.clone(), r.total),
            core::Activity::Idle => (VPath::root(), None),
        };
        let binary = self.core.transfer_type() == TransferType::Image;
        let direction = match job {
            Job::Send(_) => DataDirection::Download,
            Job::Receive(..) => DataDirection::Upload,
        };
        let protection = self.data_tls(direction, protected);
        let io = match (&job, &protection) {
            (_, Some(_)) => "tls",
            (Job::Send(SendSource::File(..)), None) if binary => "sendfile",
            _ => "copy",
        };
        let cancel = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let ascii_mode = !binary;
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
                                SendSource::File(f, offset, len) => match &mut stream {
                                    // Binary over plain TCP: zero-copy.
                                    Stream::Plain(tcp) if !ascii_mode => {
                                        match data::sendfile(&f, offset, len, tcp, &task_progress, stall).await {
                                            Ok(()) => data::finish(&mut stream, stall).await,
                                            Err(e) => Err(e),
                                        }
                                    }
                                    _ => {
                                        let mut f = tokio::fs::File::from_std(f);
                                        // Fewer, larger trips to the blocking thread that reads.
                                        f.set_max_buf_size(data::FILE_READ_SIZE);
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
                            let mut file = tokio::fs::File::from_std(file);
                            let copy = data::receive(&mut stream, tls, &mut file, true, &task_progress, stall);
                            let result = tokio::select! {
                                r = copy => r.map_err(TransferError::Copy),
                                _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                            };
                            // Wait for tokio's in-flight write to land before the file goes
                            // back to the upload for commit or abort.
                            let _ = file.flush().await;
                            (result, Some(file.into_std().await))
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
            kind,
            path,
            total,
            started: Instant::now(),
            io,
            binary,
        });
        None
    }

    async fn finish_transfer(&mut self, outcome: Outcome) -> io::Result<Flow> {
        let Some(running) = self.transfer.take() else {
            return Ok(Flow::Continue);
        };
        let bytes = running.progress.load(Ordering::Relaxed);
        let elapsed = running.started.elapsed();
        let mut outcome = outcome;
        let mut result = std::mem::replace(&mut outcome.result, Ok(()));
        if let Err(TransferError::Copy(CopyError::Network(_))) = &result {
            // Clients abort by sending ABOR and then closing the data connection; the close
            // can be seen first. An ABOR received or waiting means the client ended it on
            // purpose.
            if self.core.abort_requested() || self.take_queued_abor() {
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
        let (end, result): (TransferEnd, String) = match result {
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
                        let out = self.core.event(
                            Event::TransferEnded(TransferEnd::ClientGone),
                            Instant::now(),
                        );
                        // Boxed: the effect loop is not part of every idle session's future.
                        return Box::pin(self.drive(out)).await;
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
                            (TransferEnd::Complete, "ok".into())
                        }
                        Ok(Err(e)) => {
                            let e = StorageError::from(e);
                            let log = format!("local error: {e}");
                            (TransferEnd::Local(e), log)
                        }
                        Err(e) => {
                            let log = format!("failed: {e}");
                            (TransferEnd::Local(e), log)
                        }
                    }
                }
                // A file cut short while it was being sent: the client must not think it whole.
                None if running.kind == TransferKind::Retr
                    && running.total.is_some_and(|t| bytes < t) =>
                {
                    let total = running.total.unwrap_or_default();
                    (
                        TransferEnd::Shrank { bytes, total },
                        format!("incomplete: file shrank to {bytes} of {total} bytes"),
                    )
                }
                None => (TransferEnd::Complete, "ok".into()),
            },
            Err(TransferError::Aborted) => (TransferEnd::Aborted, "aborted by client".into()),
            Err(TransferError::DataConnection(e)) => (
                TransferEnd::NoDataConnection(e.to_string()),
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
                (
                    TransferEnd::Truncated { restored },
                    "truncated: no TLS close_notify".into(),
                )
            }
            Err(TransferError::DataTls(reason)) => {
                let log = format!("TLS data connection refused: {reason}");
                (TransferEnd::DataTls(reason), log)
            }
            Err(TransferError::Copy(CopyError::Network(e))) => (
                TransferEnd::Network(e.to_string()),
                format!("network error: {e}"),
            ),
            Err(TransferError::Copy(CopyError::Local(e))) => {
                let e = StorageError::from(e);
                let log = format!("local error: {e}");
                (TransferEnd::Local(e), log)
            }
        };
        // Moved its bytes but failed after (not committed, shrank): a failure.
        let class = match end {
            TransferEnd::Shrank { .. } | TransferEnd::Local(_) if class == TransferResult::Ok => {
                TransferResult::Failed
            }
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
        let out = self.core.event(Event::TransferEnded(end), Instant::now());
        let sent = Box::pin(self.drive(out)).await;
        if let Some(old) = replaced {
            // Freeing a big file's blocks takes a while: not on an async worker.
            drop(tokio::task::spawn_blocking(move || drop(old)));
        }
        sent
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
        metrics.transfer(running.kind.verb(), running.io == "tls", bytes, class);
        let direction = Direction::of_verb(running.kind.verb());
        if !connected || direction == Direction::Listing || !self.shared.xferlog.enabled() {
            return;
        }
        let (Some(home), Some((account, method))) = (&self.home, self.core.account()) else {
            return;
        };
        let relative = running.path.as_str().trim_start_matches('/');
        let path = if relative.is_empty() {
            home.path.clone()
        } else {
            home.path.join(relative)
        };
        let line = crate::observe::xferlog::Entry {
            elapsed,
            remote: self.peer.ip(),
            bytes,
            path: &path,
            binary: running.binary,
            incoming: direction == Direction::Upload,
            anonymous: method == core::LoginMethod::Anonymous,
            user: &account.name,
            tls: self.tls.is_some(),
            complete: class == TransferResult::Ok,
        }
        .line(chrono::Local::now());
        self.shared.xferlog.write(line, metrics);
    }
}

/// The address PASV announces to this client: the first `passive.announce` rule for its
/// network, else `passive.address`, else the address it connected to.
async fn announce_address(
    live: &Live,
    shared: &Shared,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<std::net::Ipv4Addr, PassiveFailure> {
    let cfg = &live.config.passive;
    let client = peer.ip();
    let wanted = cfg
        .announce
        .iter()
        .find(|r| r.from.iter().any(|n| n.contains(&client)))
        .map(|r| r.address.as_str())
        .or(cfg.address.as_deref());
    let ip = match wanted {
        Some(name) => {
            let every = std::time::Duration::from_secs(cfg.resolve_every_secs);
            shared.announced.resolve(name, every).await.map_err(|e| {
                tracing::error!(address = %name, error = %e, "cannot resolve the passive address");
                PassiveFailure::Unresolvable
            })?
        }
        None => match local.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => return Err(PassiveFailure::Ipv6Local),
        },
    };
    if is_internal(IpAddr::V4(ip)) && !is_internal(client) {
        shared.announced.warn_once(ip, client);
    }
    Ok(ip)
}

/// STAT with a path: the listing on the control connection (a huge directory cut short).
async fn stat_listing(
    fs: Arc<LocalFs>,
    cwd: &VPath,
    arg: &str,
    perms: Permissions,
) -> Result<Reply, Reply> {
    let result = async {
        let target = Listing::gather(fs, cwd, Some(arg), ListStyle::List).await?;
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
    result
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
    let direction = Direction::of_verb(running.kind.verb()).as_str();
    info!(
        verb = running.kind.verb(),
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

/// What a listing command shows: the entries, the path listed, and for NLST of a path the
/// prefix each name gets (so that `NLST dir` answers `dir/a`, as clients' mget expects).
struct Listing {
    path: VPath,
    source: ListSource,
    prefix: String,
}

impl Listing {
    async fn gather(
        fs: Arc<LocalFs>,
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
        fs: Arc<LocalFs>,
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

fn is_glob(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    last.contains(['*', '?', '['])
}

fn ascii_size(mut file: std::fs::File) -> io::Result<u64> {
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

/// After a successful login with a legacy hash (bcrypt, crypt(3)) and with
/// `auth.rehash_to_argon2` on: replace the hash in the users file by an argon2id one, in the
/// background, once per user and load of the users file. The hashing waits for a place in the
/// bounded hash pool and runs on a blocking thread, so that neither the login's reply nor the
/// async workers wait for it. The server's users in memory stay as they are (the old hash
/// still verifies); the next reload or restart reads the new one.
/// Where a login lands: the home directory resolved, and opened or why not; `Err` when the
/// home is not allowed.
type Landing = Result<(std::path::PathBuf, Result<Arc<LocalFs>, StorageError>), String>;

/// Resolves `user`'s home (`None`: the root), creates it when missing (a user added by passwd,
/// import-users or the admin API has none yet) and opens it, or takes it from the cache of open
/// homes. Blocks: runs on a blocking thread.
fn land(shared: &Shared, live: &Live, user: &str, home: Option<&std::path::Path>) -> Landing {
    let home = live.home_dir(home)?;
    if let Some(fs) = shared.homes.cached(&home) {
        return Ok((home, Ok(fs)));
    }
    match crate::storage::create_missing_home(&live.root, &home) {
        Ok(true) => {
            info!(%user, home = %home.display(), "created the missing home directory (mode 0750)");
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(%user, home = %home.display(), error = %e, "cannot create the missing home directory");
        }
    }
    let opened = shared.homes.open(&home);
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

#[cfg(test)]
mod tests {
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
