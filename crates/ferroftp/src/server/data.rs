//! Data connections: the passive port allocator, accepting with the peer check, connecting out
//! for active mode, and the byte-moving loops of a transfer.
//!
//! A passive port is a resource like a file descriptor: a [`PassiveListener`] holds it and gives
//! it back when dropped, whatever path the session takes (used, timed out, replaced by another
//! PASV, or the session ending). The session owns the listener until a transfer takes it, so
//! every release is a plain synchronous drop, never left to a background task.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroftp_proto::ascii;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::stream::Stream;
use crate::config::PortRange;
use crate::storage::local::LocalFile;
use crate::storage::{ReadStream, UploadFile};

/// Hands out passive ports from the configured range, the port released longest ago first,
/// skipping ports in use by this server or held by another process.
///
/// Why that order: a port whose download we sent keeps the finished connections in TIME_WAIT
/// for a minute, and every `bind` of it (SO_REUSEADDR) walks them in the kernel's bind hash.
/// The port that has rested longest has the fewest left. A port that another process holds
/// goes to the back of the queue, so it costs one failed `bind` per turn through the range,
/// not one per PASV.
#[derive(Debug)]
pub(crate) struct PassivePorts {
    range: Option<PortRange>,
    state: Mutex<PortState>,
}

#[derive(Debug, Default)]
struct PortState {
    /// Ports not held by a session, the one released longest ago at the front.
    free: VecDeque<u16>,
    /// Ports held by sessions.
    held: usize,
}

impl PassivePorts {
    /// An allocator over `range` (`None`: let the OS pick any free port).
    pub(crate) fn new(range: Option<PortRange>) -> Arc<Self> {
        Arc::new(Self {
            range,
            state: Mutex::new(PortState {
                free: range
                    .map(|r| (r.low..=r.high).collect())
                    .unwrap_or_default(),
                held: 0,
            }),
        })
    }

    /// Ports currently held by sessions.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PortState> {
        // A panic while holding this lock cannot leave the state inconsistent (every change
        // is a single push or pop with its count), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listen on a free port of the range at `ip`.
    pub(crate) fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<PassiveListener> {
        let Some(range) = self.range else {
            let listener = listen(SocketAddr::new(ip, 0))?;
            let port = listener.local_addr()?.port();
            return Ok(PassiveListener {
                listener,
                port,
                owner: None,
                _counted: None,
            });
        };
        // Each free port at most once: those that fail go to the back, behind the ones not
        // tried yet.
        let tries = self.lock().free.len();
        for _ in 0..tries {
            let Some(port) = self.lock().free.pop_front() else {
                break;
            };
            // The lock is not held during the bind: other sessions take other ports meanwhile.
            match listen(SocketAddr::new(ip, port)) {
                Ok(listener) => {
                    self.lock().held += 1;
                    return Ok(PassiveListener {
                        listener,
                        port,
                        owner: Some(Arc::clone(self)),
                        _counted: None,
                    });
                }
                Err(e) => {
                    self.lock().free.push_back(port);
                    // Held by another process (or not bindable at all): try the next one.
                    tracing::debug!(port, error = %e, "passive port unavailable, skipping");
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port in the passive range {range}"),
        ))
    }

    /// Take back a port a listener held: it is the last to be handed out again.
    fn release(&self, port: u16) {
        let mut st = self.lock();
        st.held = st.held.saturating_sub(1);
        st.free.push_back(port);
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Data connections end in TIME_WAIT on our side; without SO_REUSEADDR the port could not be
    // listened on again for a minute and the range would drain. (It still refuses a port that
    // another socket is listening on.)
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(16)
}

/// A listening passive port; the port returns to the pool when this is dropped.
#[derive(Debug)]
pub(crate) struct PassiveListener {
    listener: TcpListener,
    port: u16,
    owner: Option<Arc<PassivePorts>>,
    /// Counted in `ferroftp_passive_ports_in_use` while it lives.
    _counted: Option<crate::observe::metrics::PassivePortHeld>,
}

impl PassiveListener {
    /// The port listened on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Count this port in the metrics for as long as it is held.
    pub(crate) fn counted(mut self, held: crate::observe::metrics::PassivePortHeld) -> Self {
        self._counted = Some(held);
        self
    }

    /// Accept the client's data connection: the first connection from `expected_ip` wins; one
    /// from any other address is closed and logged (unless `allow_foreign`). Gives up after
    /// `timeout`. The port is released when this returns, whatever the result.
    ///
    /// Behind a load balancer (`proxies`: its networks), a connection from it starts with a
    /// PROXY header, and the client address it carries is what is checked.
    pub(crate) async fn accept(
        self,
        expected_ip: IpAddr,
        allow_foreign: bool,
        timeout: Duration,
        proxies: Option<Arc<Vec<ipnet::IpNet>>>,
    ) -> io::Result<TcpStream> {
        tokio::time::timeout(
            timeout,
            self.accept_from(
                expected_ip,
                allow_foreign,
                proxies.as_deref().map(Vec::as_slice),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no data connection within {} s", timeout.as_secs()),
            ))
        })
    }

    async fn accept_from(
        &self,
        expected: IpAddr,
        allow_foreign: bool,
        proxies: Option<&[ipnet::IpNet]>,
    ) -> io::Result<TcpStream> {
        loop {
            let (mut stream, mut peer) = self.listener.accept().await?;
            if proxies.is_some_and(|n| super::proxy::trusted(peer.ip().to_canonical(), n)) {
                match super::proxy::read_header(&mut stream, peer, Duration::from_secs(5)).await {
                    Ok(client) => peer = client,
                    Err(e) => {
                        tracing::warn!(port = self.port, proxy = %peer, error = %e, "dropped a passive data connection from the proxy without a valid PROXY header");
                        continue;
                    }
                }
            }
            if allow_foreign || peer.ip().to_canonical() == expected.to_canonical() {
                return Ok(stream);
            }
            tracing::warn!(
                port = self.port,
                from = %peer,
                expected = %expected,
                "refused a passive data connection from another address than the client's (possible data theft)"
            );
        }
    }
}

impl Drop for PassiveListener {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            owner.release(self.port);
        }
    }
}

/// Open an active-mode data connection to `target`, from the control connection's local IP
/// (and from `source_port`, when one is configured).
pub(crate) async fn connect_active(
    local_ip: IpAddr,
    target: SocketAddr,
    timeout: Duration,
    source_port: Option<u16>,
) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let local_ip = match (local_ip.to_canonical(), target.ip()) {
        (ip @ IpAddr::V4(_), IpAddr::V4(_)) | (ip @ IpAddr::V6(_), IpAddr::V6(_)) => Some(ip),
        _ => None,
    };
    if let Some(port) = source_port {
        // Many data connections share the source port (each to another client port): the
        // connections differ by their other end, which SO_REUSEADDR allows.
        socket.set_reuseaddr(true)?;
        let ip = local_ip.unwrap_or_else(|| match target {
            SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        socket.bind(SocketAddr::new(ip, port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot use source port {port} for the data connection: {e}"),
            )
        })?;
    } else if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {target} took over {} s", timeout.as_secs()),
            ))
        })?;
    refuse_self_connect(stream)
}

/// A connection whose two ends are one socket is no connection: TCP lets a socket reach itself
/// when it connects from the very port it targets (a simultaneous open), which happens when the
/// client names a closed port that the kernel then picks as our source port, or the port that
/// `source_port_below_listener` binds. The transfer would "succeed" into the void.
fn refuse_self_connect(stream: TcpStream) -> io::Result<TcpStream> {
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    if local == peer {
        tracing::warn!(addr = %peer, "active data connection reached itself (TCP self-connect); treated as refused");
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("nothing listens on {peer}"),
        ));
    }
    Ok(stream)
}

/// Why a running transfer stopped early.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The data connection failed or stalled.
    Network(io::Error),
    /// The local file failed.
    Local(io::Error),
}

const BUF_SIZE: usize = 128 * 1024;
/// Bytes read from a file at a time when it is sent through user space (TLS, TYPE A).
pub(crate) const FILE_READ_SIZE: usize = 512 * 1024;

/// Send a file (or any reader) over the data connection, converting to CRLF in TYPE A.
pub(crate) async fn send<R, W>(
    mut src: R,
    dst: &mut W,
    ascii_mode: bool,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<(), CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FILE_READ_SIZE];
    let mut converted = Vec::new();
    let mut conv = ascii::ToNetwork::default();
    loop {
        let n = src.read(&mut buf).await.map_err(CopyError::Local)?;
        if n == 0 {
            break;
        }
        let out: &[u8] = if ascii_mode {
            converted.clear();
            conv.convert(&buf[..n], &mut converted);
            &converted
        } else {
            &buf[..n]
        };
        with_stall_timeout(stall, dst.write_all(out))
            .await
            .map_err(CopyError::Network)?;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    with_stall_timeout(stall, dst.shutdown())
        .await
        .map_err(CopyError::Network)
}

/// How the client ended an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Plain TCP end of stream.
    Eof,
    /// TLS close_notify: the client says the data is complete.
    CloseNotify,
    /// TLS connection closed without close_notify: the data may be cut short.
    Truncated,
}

/// Receive a file from the data connection until the client closes it, converting CRLF to LF
/// in TYPE A. `tls` says whether `src` is a TLS stream (which ends with close_notify).
pub(crate) async fn receive<R, W>(
    src: &mut R,
    tls: bool,
    dst: &mut W,
    ascii_mode: bool,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<Ending, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut converted = Vec::new();
    let mut conv = ascii::FromNetwork::default();
    let ending = loop {
        let n = match with_stall_timeout(stall, src.read(&mut buf)).await {
            Ok(0) if tls => break Ending::CloseNotify,
            Ok(0) => break Ending::Eof,
            Ok(n) => n,
            // rustls reports a TCP close without close_notify this way.
            Err(e) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {
                break Ending::Truncated;
            }
            Err(e) => return Err(CopyError::Network(e)),
        };
        let out: &[u8] = if ascii_mode {
            converted.clear();
            conv.convert(&buf[..n], &mut converted);
            &converted
        } else {
            &buf[..n]
        };
        dst.write_all(out).await.map_err(CopyError::Local)?;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    };
    if ascii_mode {
        converted.clear();
        conv.finish(&mut converted);
        dst.write_all(&converted).await.map_err(CopyError::Local)?;
    }
    dst.flush().await.map_err(CopyError::Local)?;
    Ok(ending)
}

/// Bytes of a binary upload gathered from the socket before they are handed to the disk in one
/// blocking write. Each hand-off costs a trip to the blocking pool (thread wake-ups on both
/// sides), so larger chunks mean less CPU per GB; a fast upload holds two of them.
pub(crate) const UPLOAD_CHUNK: usize = 1024 * 1024;
/// The first size of an upload buffer. It doubles up to [`UPLOAD_CHUNK`] only while it fills
/// faster than it is flushed, so small and slow uploads (most of them, with many at once)
/// never hold the full size.
const UPLOAD_FIRST: usize = 64 * 1024;

/// Writes an upload to a file on the blocking pool in [`UPLOAD_CHUNK`]-sized pieces, one write
/// in flight at a time, so that the next piece is read from the socket while the previous one
/// goes to disk.
///
/// Unlike `tokio::fs::File` it never copies: the socket is read straight into the buffer that
/// is then moved to the blocking thread, and there is one trip to the blocking pool per
/// [`UPLOAD_CHUNK`] instead of one per socket read. The buffer being filled lives here, not in
/// the copy future, so an aborted copy loses nothing that arrived; and [`FileWriter::finish`]
/// waits for the write in flight, so the file is never committed or rolled back under a write.
#[derive(Debug)]
pub(crate) struct FileWriter {
    /// Bytes received and not yet handed to a write.
    filling: Vec<u8>,
    /// The file and a spare buffer, when no write is in flight.
    idle: Option<(UploadFile, Vec<u8>)>,
    /// The write in flight: it gives back the file, its buffer and the result.
    pending: Option<tokio::task::JoinHandle<Written>>,
}

/// What a write on the blocking pool gives back: the file, its buffer and the result.
type Written = (UploadFile, Vec<u8>, io::Result<()>);

impl FileWriter {
    /// A writer to `file` at its current position.
    pub(crate) fn new(file: UploadFile) -> Self {
        Self {
            filling: Vec::new(),
            idle: Some((file, Vec::new())),
            pending: None,
        }
    }

    /// Make room in the buffer being filled for the next read, growing it as
    /// [`UPLOAD_FIRST`] says. (Left to itself, reading into a full `Vec` grows it by 64 bytes.)
    fn make_room(&mut self) {
        let (len, cap) = (self.filling.len(), self.filling.capacity());
        if len == cap {
            let want = (cap * 2).clamp(UPLOAD_FIRST, UPLOAD_CHUNK);
            self.filling.reserve_exact(want - len);
        }
    }

    /// Wait for the write in flight, if any. Cancel-safe: the handle stays until it completes.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(handle) = self.pending.as_mut() {
            let joined = handle.await;
            self.pending = None;
            let (file, mut buf, result) = joined.map_err(|e| io::Error::other(e.to_string()))?;
            buf.clear();
            self.idle = Some((file, buf));
            result?;
        }
        Ok(())
    }

    /// Start writing the filled buffer (once the previous write is done) and start filling
    /// the spare one. Cancel-safe. An error is that of the previous write.
    async fn hand_off(&mut self) -> io::Result<()> {
        self.settle().await?;
        let (mut file, spare) = self.idle.take().ok_or_else(lost_file)?;
        let buf = std::mem::replace(&mut self.filling, spare);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let result = file.write_all(&buf);
            (file, buf, result)
        }));
        Ok(())
    }

    /// Wait for the write in flight and give back the file with the bytes received but not yet
    /// written (the caller writes them in the same blocking call as its commit, which saves a
    /// trip to the blocking pool: a small upload never makes one here). The error is that of
    /// the last write; the file is `None` only if a write task panicked.
    pub(crate) async fn finish(mut self) -> (io::Result<()>, Option<UploadFile>, Vec<u8>) {
        let result = self.settle().await;
        (result, self.idle.take().map(|(file, _)| file), self.filling)
    }
}

fn lost_file() -> io::Error {
    io::Error::other("the upload file was lost in a failed write")
}

/// How long received bytes may wait in a [`FileWriter`]'s buffer for it to fill before they
/// are written anyway. A fast upload fills a chunk in about a millisecond and never waits; a
/// slow or paused one still has what arrived on disk promptly (visible in the temp file, kept
/// by an interrupted in-place upload), as with a write per read.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// How the async part of a binary upload stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The client ended the upload.
    Ended(Ending),
    /// The upload proved big and fast (see [`receive_binary`]): the rest is for
    /// [`receive_on_thread`].
    Big,
}

/// [`receive`] for TYPE I into a [`FileWriter`]. Progress counts bytes as they arrive.
///
/// With `promote_at`, stops with [`Received::Big`] once that many bytes have arrived before
/// the end and before any of them had to be flushed for waiting: an upload that fills its first
/// buffer that fast is a bulk transfer, better served by a thread of its own.
pub(crate) async fn receive_binary<R>(
    src: &mut R,
    tls: bool,
    dst: &mut FileWriter,
    progress: &AtomicU64,
    stall: Duration,
    promote_at: Option<usize>,
) -> Result<Received, CopyError>
where
    R: AsyncRead + Unpin,
{
    /// What woke the loop.
    enum Event {
        Read(io::Result<usize>),
        Flush,
    }
    // One timer for the whole upload, re-armed when bytes start waiting in an empty buffer.
    let flush = tokio::time::sleep(FLUSH_AFTER);
    tokio::pin!(flush);
    let mut stall_deadline = tokio::time::Instant::now() + stall;
    // Whether a write has been handed off: then the upload is not proving fast.
    let mut flushed = false;
    loop {
        let waiting = !dst.filling.is_empty();
        dst.make_room();
        // `read_buf` fills the spare capacity without zeroing it first. It is cancel-safe:
        // when the flush timer wins, no data was read.
        let read = tokio::time::timeout_at(stall_deadline, src.read_buf(&mut dst.filling));
        let event = tokio::select! {
            biased;
            r = read => Event::Read(r.unwrap_or_else(|_| Err(stalled(stall)))),
            () = &mut flush, if waiting => Event::Flush,
        };
        let n = match event {
            Event::Flush => {
                flushed = true;
                dst.hand_off().await.map_err(CopyError::Local)?;
                continue;
            }
            Event::Read(Ok(0)) if tls => return Ok(Received::Ended(Ending::CloseNotify)),
            Event::Read(Ok(0)) => return Ok(Received::Ended(Ending::Eof)),
            Event::Read(Ok(n)) => n,
            // rustls reports a TCP close without close_notify this way.
            Event::Read(Err(e)) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Received::Ended(Ending::Truncated));
            }
            Event::Read(Err(e)) => return Err(CopyError::Network(e)),
        };
        stall_deadline = tokio::time::Instant::now() + stall;
        progress.fetch_add(n as u64, Ordering::Relaxed);
        if !flushed && promote_at.is_some_and(|at| dst.filling.len() >= at) {
            return Ok(Received::Big);
        }
        if dst.filling.len() >= UPLOAD_CHUNK {
            flushed = true;
            dst.hand_off().await.map_err(CopyError::Local)?;
        } else if !waiting {
            flush
                .as_mut()
                .reset(tokio::time::Instant::now() + FLUSH_AFTER);
        }
    }
}

/// Bytes a plain binary upload must bring before its end, without pausing, to move to a
/// thread of its own ([`receive_on_thread`]); smaller uploads keep the single trip to the
/// blocking pool of their commit.
pub(crate) const BIG_UPLOAD: usize = 256 * 1024;
/// Bytes a binary TLS download must send to run on a thread of its own
/// ([`send_tls_on_thread`]): starting a thread costs more than all of a small file's transfer,
/// which stays on the session's async path.
pub(crate) const BIG_DOWNLOAD: u64 = 256 * 1024;
/// The buffer of an upload thread: each `recv` fills it and one `write` empties it, so it is
/// sized to stay in the L2 cache between the two copies (a larger one lets the data fall out
/// of the cache before it is written; the cost the old 1 MiB hand-off paid).
const THREAD_BUF: usize = 128 * 1024;
/// Transfer threads (big uploads, TLS downloads) that may run at once; a transfer beyond them
/// stays on the async path (slower, never refused), so many concurrent transfers cannot
/// exhaust threads.
const TRANSFER_THREADS: usize = 64;
/// Stack of a transfer thread: it only loops over `recv`/`pread`, rustls and `write` with
/// heap buffers.
const THREAD_STACK: usize = 128 * 1024;
/// How often an upload whose data must reach the disk before its 226 (synced at its commit, or
/// renamed over a file: see [`crate::storage::Upload::writes_back_early`]) starts the writeback
/// of what it wrote, so that the commit waits only for the tail instead of the whole file.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

static THREAD_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(TRANSFER_THREADS);

/// A slot for a transfer thread, if one is free (see [`TRANSFER_THREADS`]).
pub(crate) fn thread_slot() -> Option<tokio::sync::SemaphorePermit<'static>> {
    THREAD_SLOTS.try_acquire().ok()
}

/// What every transfer on a thread of its own needs from the session.
#[derive(Debug)]
pub(crate) struct OnThread<'a> {
    /// Bytes moved so far (STAT), counted as they arrive or leave.
    pub(crate) progress: Arc<AtomicU64>,
    /// The stall timeout, set as the socket's timeouts.
    pub(crate) stall: Duration,
    /// The transfer's cancel token (ABOR, the session ending).
    pub(crate) cancel: &'a tokio_util::sync::CancellationToken,
    /// The thread's slot, from [`thread_slot`].
    pub(crate) slot: tokio::sync::SemaphorePermit<'static>,
}

/// How an upload on its own thread stopped.
#[derive(Debug)]
pub(crate) enum ThreadEnd {
    /// The client ended it.
    Ended(Ending),
    /// The network or the file failed.
    Failed(CopyError),
    /// The transfer was cancelled (ABOR, the session ending).
    Aborted,
}

/// Receive the rest of a big plain binary upload on a thread of its own: blocking `recv` into
/// a cache-sized buffer, then `write` to the file, with no hand-off between threads per chunk
/// (what Pure-FTPd and vsftpd do, one process per session). `first` (the bytes already
/// received) is written first.
///
/// The thread keeps the session's guarantees: the stall timeout is the socket's receive
/// timeout; progress counts bytes as they arrive; `cancel` shuts the socket down under the
/// thread (a duplicate descriptor stays here for it) and waits for the thread to stop, so the
/// file comes back only once nothing writes to it any more. With `writeback` (the commit will
/// sync the file or rename it over another), writeback of the written data starts every
/// [`WRITEBACK_EVERY`] bytes.
pub(crate) async fn receive_on_thread(
    tcp: TcpStream,
    tls: Option<rustls::ServerConnection>,
    file: UploadFile,
    first: Vec<u8>,
    writeback: bool,
    run: OnThread<'_>,
) -> (ThreadEnd, Option<UploadFile>) {
    let OnThread {
        progress,
        stall,
        cancel,
        slot,
    } = run;
    let (sock, killer) = match blocking_socket(tcp, stall) {
        Ok(s) => s,
        Err(e) => return (ThreadEnd::Failed(CopyError::Network(e)), Some(file)),
    };
    // The closure owns the file; if the thread cannot start, it comes back through this.
    let handed = Arc::new(Mutex::new(Some((file, first))));
    let work = {
        let handed = Arc::clone(&handed);
        move || {
            let taken = handed.lock().unwrap_or_else(|p| p.into_inner()).take();
            let (mut file, first) = taken?;
            let result = match tls {
                None => receive_blocking(&sock, &mut file, &first, &progress, stall, writeback),
                Some(conn) => receive_tls_blocking(
                    &sock, conn, &mut file, &first, &progress, stall, writeback,
                ),
            };
            Some((result, file))
        }
    };
    let ran = run_on_thread(killer, cancel, work).await;
    drop(slot);
    match ran {
        Ok((Some((_, file)), true)) => (ThreadEnd::Aborted, Some(file)),
        Ok((Some((Ok(ending), file)), false)) => (ThreadEnd::Ended(ending), Some(file)),
        Ok((Some((Err(e), file)), false)) => (ThreadEnd::Failed(e), Some(file)),
        Ok((None, _)) | Err(_) => {
            let back = handed.lock().unwrap_or_else(|p| p.into_inner()).take();
            let e = ran
                .err()
                .unwrap_or_else(|| io::Error::other("the upload was lost"));
            match back {
                // The thread never started, so not a byte of `first` was written: write it
                // here, then report the failure as local (the server could not take it).
                Some((mut file, first)) => {
                    use std::io::Write;
                    let _ = file.write_all(&first);
                    (ThreadEnd::Failed(CopyError::Local(e)), Some(file))
                }
                None => (ThreadEnd::Failed(CopyError::Local(e)), None),
            }
        }
    }
}

/// Run `work` (blocking on a socket that `killer` duplicates) on a new thread. `cancel` marks
/// the run aborted and shuts the socket down, which wakes a blocking `recv` (it returns 0) or
/// `send` (it fails); this waits for `work` to return in every case, so whatever it holds is
/// free again when this returns. Gives back its result and whether it was cancelled; an error
/// if no thread could start (`work` is then dropped unrun) or it panicked.
async fn run_on_thread<T: Send + 'static>(
    killer: std::net::TcpStream,
    cancel: &tokio_util::sync::CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<(T, bool)> {
    use std::sync::atomic::AtomicU8;
    /// The thread is running `work`.
    const RUNNING: u8 = 0;
    /// `work` returned before any cancel: its result stands, even if an ABOR follows at once.
    const FINISHED: u8 = 1;
    /// Cancelled while `work` ran: the socket was shut down under it, so its result (a `recv`
    /// that saw 0 looks like the client's end) means "aborted".
    const CANCELLED: u8 = 2;
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let on_thread = Arc::clone(&state);
    std::thread::Builder::new()
        .name("ferroftp-xfer".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let result = work();
            let _ =
                on_thread.compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire);
            let _ = tx.send(result);
        })?;
    let joined = tokio::select! {
        r = &mut rx => r,
        () = cancel.cancelled() => {
            // Only a transfer still running is cut; one that just ended keeps its result
            // (the session then answers its 226 and the ABOR's).
            if state
                .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let _ = killer.shutdown(std::net::Shutdown::Both);
            }
            rx.await
        }
    };
    let aborted = state.load(Ordering::Acquire) == CANCELLED;
    joined
        .map(|t| (t, aborted))
        .map_err(|_| io::Error::other("the transfer thread stopped without a result"))
}

/// Send `len` bytes of `file` from `offset` over a TLS data connection on a thread of its own:
/// `pread` into a cache-sized buffer, encrypt it into rustls' records, and give them to the
/// socket in one `writev` per buffer; then close_notify, and wait (at most `close_wait`) for
/// the client's, so that nothing is closed under data it has yet to read. Stops early without
/// error if the file turns out shorter (the caller compares the count). Progress counts bytes
/// as they leave; `cancel` (ABOR) shuts the socket down under the thread, as for uploads.
pub(crate) async fn send_tls_on_thread(
    tcp: TcpStream,
    mut conn: rustls::ServerConnection,
    mut file: ReadStream,
    (offset, len): (u64, u64),
    close_wait: Duration,
    run: OnThread<'_>,
) -> Result<(), TransferEnd> {
    let OnThread {
        progress,
        stall,
        cancel,
        slot,
    } = run;
    let (sock, killer) =
        blocking_socket(tcp, stall).map_err(|e| TransferEnd::Failed(CopyError::Network(e)))?;
    let work = move || {
        let sent = send_tls_blocking(&sock, &mut conn, &mut file, offset, len, &progress, stall);
        if sent.is_ok() {
            // The client's close_notify (or its close) ends the wait; best effort.
            let _ = sock.set_read_timeout(Some(close_wait).filter(|d| !d.is_zero()));
            drain_tls_blocking(&sock, &mut conn);
        }
        sent
    };
    let ran = run_on_thread(killer, cancel, work).await;
    drop(slot);
    match ran {
        Ok((_, true)) => Err(TransferEnd::Aborted),
        Ok((Ok(()), false)) => Ok(()),
        Ok((Err(e), false)) => Err(TransferEnd::Failed(e)),
        Err(e) => Err(TransferEnd::Failed(CopyError::Local(e))),
    }
}

/// How a transfer on its own thread failed.
#[derive(Debug)]
pub(crate) enum TransferEnd {
    /// The network or the file failed.
    Failed(CopyError),
    /// The transfer was cancelled (ABOR, the session ending).
    Aborted,
}

/// A failed call on a transfer thread's blocking socket: its timeout (SO_RCVTIMEO or
/// SO_SNDTIMEO) running out is a stall.
fn socket_failed(e: io::Error, stall: Duration) -> CopyError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CopyError::Network(stalled(stall)),
        _ => CopyError::Network(e),
    }
}

/// The data connection as a blocking socket with the stall timeout on both directions, and a
/// duplicate of it for cancelling.
fn blocking_socket(
    tcp: TcpStream,
    stall: Duration,
) -> io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let sock = tcp.into_std()?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(stall).filter(|d| !d.is_zero()))?;
    sock.set_write_timeout(Some(stall).filter(|d| !d.is_zero()))?;
    let killer = sock.try_clone()?;
    Ok((sock, killer))
}

/// Plaintext read from the file and handed to rustls at a time by [`send_tls_on_thread`].
const TLS_SEND_CHUNK: usize = 256 * 1024;

/// The loop of [`send_tls_on_thread`].
fn send_tls_blocking(
    sock: &std::net::TcpStream,
    conn: &mut rustls::ServerConnection,
    file: &mut ReadStream,
    mut offset: u64,
    len: u64,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<(), CopyError> {
    use std::io::Write;
    // One chunk's records fit, so that a chunk is encrypted in one go.
    conn.set_buffer_limit(Some(2 * TLS_SEND_CHUNK));
    let mut buf = vec![0u8; TLS_SEND_CHUNK];
    let end = offset.saturating_add(len);
    let stalled_or = |e| socket_failed(e, stall);
    while offset < end {
        let want = usize::try_from(end - offset).map_or(buf.len(), |n| n.min(buf.len()));
        let n = match file.read_from(&mut buf[..want], offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Local(e)),
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let took = conn.writer().write(data).map_err(CopyError::Network)?;
            data = &data[took..];
            while conn.wants_write() {
                conn.write_tls(&mut &*sock).map_err(stalled_or)?;
            }
        }
        offset += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut &*sock).map_err(stalled_or)?;
    }
    // The TCP half-close after close_notify, as the async stream's shutdown does.
    let _ = sock.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Read (and drop) what the client still sends until its close_notify, its close or the
/// socket's read timeout.
fn drain_tls_blocking(sock: &std::net::TcpStream, conn: &mut rustls::ServerConnection) {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        match conn.read_tls(&mut &*sock) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if conn.process_new_packets().is_err() {
            return;
        }
    }
}

/// The loop of [`receive_on_thread`].
fn receive_blocking(
    sock: &std::net::TcpStream,
    file: &mut UploadFile,
    first: &[u8],
    progress: &AtomicU64,
    stall: Duration,
    writeback: bool,
) -> Result<Ending, CopyError> {
    use std::io::Read;
    let mut written = Writeback::after(file, first, writeback)?;
    // Only into a local file: other back-ends take their bytes through `write`.
    if let Some(local) = file.local_file_mut() {
        if let Some(pipe) = splice_pipe(local) {
            return splice_to_file(sock, local, &pipe, progress, stall, |file, n| {
                written.wrote(file, n);
            });
        }
    }
    let mut buf = vec![0u8; THREAD_BUF];
    loop {
        let n = match (&mut &*sock).read(&mut buf) {
            Ok(0) => return Ok(Ending::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(socket_failed(e, stall)),
        };
        progress.fetch_add(n as u64, Ordering::Relaxed);
        std::io::Write::write_all(file, &buf[..n]).map_err(CopyError::Local)?;
        written.wrote_to(file, n);
    }
}

/// The pipe of [`splice_to_file`]: as much as the socket can hand over in one call.
const SPLICE_PIPE: usize = 1024 * 1024;

/// A pipe to splice an upload through into `file`, or `None` where splice cannot write
/// (a file opened for appending) or no pipe can be had.
fn splice_pipe(file: &LocalFile) -> Option<(rustix::fd::OwnedFd, rustix::fd::OwnedFd)> {
    let flags = rustix::fs::fcntl_getfl(file).ok()?;
    if flags.contains(rustix::fs::OFlags::APPEND) {
        return None;
    }
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    // Best effort: the default size (64 KiB) works, with more calls.
    let _ = rustix::pipe::fcntl_setpipe_size(&w, SPLICE_PIPE);
    Some((r, w))
}

/// The loop of [`receive_blocking`] without a copy through user space: splice moves the
/// socket's pages into a pipe, and from the pipe into the file's page cache. `wrote` is told
/// of every piece written.
fn splice_to_file(
    sock: &std::net::TcpStream,
    file: &mut LocalFile,
    (r, w): &(rustix::fd::OwnedFd, rustix::fd::OwnedFd),
    progress: &AtomicU64,
    stall: Duration,
    mut wrote: impl FnMut(&LocalFile, usize),
) -> Result<Ending, CopyError> {
    use rustix::io::Errno;
    use rustix::pipe::{SpliceFlags, splice};
    loop {
        let n = match splice(sock, None, w, None, SPLICE_PIPE, SpliceFlags::MOVE) {
            Ok(0) => return Ok(Ending::Eof),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            // SO_RCVTIMEO ran out.
            Err(Errno::AGAIN) => return Err(CopyError::Network(stalled(stall))),
            Err(e) => return Err(CopyError::Network(e.into())),
        };
        progress.fetch_add(n as u64, Ordering::Relaxed);
        let mut left = n;
        while left > 0 {
            match splice(r, None, &*file, None, left, SpliceFlags::MOVE) {
                Ok(0) => return Err(CopyError::Local(io::ErrorKind::WriteZero.into())),
                Ok(m) => left -= m,
                Err(Errno::INTR) => {}
                Err(e) => return Err(CopyError::Local(e.into())),
            }
        }
        wrote(file, n);
    }
}

/// Starts the writeback of an upload's data every [`WRITEBACK_EVERY`] bytes, when it is on.
struct Writeback {
    on: bool,
    /// Where the upload's data starts in its file (in-place uploads start past 0).
    start: u64,
    /// Bytes written since the last start.
    unsynced: u64,
}

impl Writeback {
    /// Writes `first` (the bytes received before the thread) to `file`, and counts from there.
    fn after(file: &mut UploadFile, first: &[u8], on: bool) -> Result<Self, CopyError> {
        use std::io::{Seek, Write};
        file.write_all(first).map_err(CopyError::Local)?;
        // Writeback is a hint to the local file system; other back-ends have no pages to
        // write back.
        let on = on && file.local_file().is_some();
        let start = match file.local_file_mut() {
            Some(local) if on => local
                .stream_position()
                .map_or(0, |p| p.saturating_sub(first.len() as u64)),
            _ => 0,
        };
        Ok(Self {
            on,
            start,
            unsynced: first.len() as u64,
        })
    }

    /// `n` more bytes are in `file`.
    fn wrote(&mut self, file: &LocalFile, n: usize) {
        self.unsynced += n as u64;
        if self.on && self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
            start_writeback(file, self.start);
        }
    }

    /// [`Writeback::wrote`] for any upload file (only a local one is written back).
    fn wrote_to(&mut self, file: &UploadFile, n: usize) {
        if let Some(local) = file.local_file() {
            self.wrote(local, n);
        }
    }
}

/// Ciphertext read from the socket at a time by a TLS upload thread. rustls reads records
/// 4 KiB at a time; this buffer in front of the socket turns that into one `recv` per 256 KiB.
const TLS_READ_BUF: usize = 256 * 1024;

/// [`receive_blocking`] through TLS: the thread drives rustls itself, so that one `recv` feeds
/// many records and one `write` takes many records' plaintext. Ends like the async path:
/// close_notify (answered with ours), or [`Ending::Truncated`] when TCP closes without it.
fn receive_tls_blocking(
    sock: &std::net::TcpStream,
    mut conn: rustls::ServerConnection,
    file: &mut UploadFile,
    first: &[u8],
    progress: &AtomicU64,
    stall: Duration,
    writeback: bool,
) -> Result<Ending, CopyError> {
    use std::io::Read;
    let mut written = Writeback::after(file, first, writeback)?;
    let mut rd = io::BufReader::with_capacity(TLS_READ_BUF, sock);
    let mut buf = vec![0u8; THREAD_BUF];
    let mut filled = 0;
    let flush = |buf: &[u8], written: &mut Writeback, file: &mut UploadFile| {
        std::io::Write::write_all(file, buf).map_err(CopyError::Local)?;
        written.wrote_to(file, buf.len());
        Ok::<(), CopyError>(())
    };
    loop {
        match conn.reader().read(&mut buf[filled..]) {
            Ok(0) => {
                flush(&buf[..filled], &mut written, file)?;
                // Answer the client's close_notify with ours; it may be gone.
                conn.send_close_notify();
                while conn.wants_write() {
                    if conn.write_tls(&mut &*sock).is_err() {
                        break;
                    }
                }
                return Ok(Ending::CloseNotify);
            }
            Ok(n) => {
                progress.fetch_add(n as u64, Ordering::Relaxed);
                filled += n;
                if filled == buf.len() {
                    flush(&buf, &mut written, file)?;
                    filled = 0;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // TCP closed without close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                flush(&buf[..filled], &mut written, file)?;
                return Ok(Ending::Truncated);
            }
            Err(e) => return Err(CopyError::Network(e)),
        }
        // No plaintext left: before waiting on the network, write what is held.
        if rd.buffer().is_empty() && filled > 0 {
            flush(&buf[..filled], &mut written, file)?;
            filled = 0;
        }
        match conn.read_tls(&mut rd) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(socket_failed(e, stall)),
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the client why (the alert is queued), best effort.
            let _ = conn.write_tls(&mut &*sock);
            return Err(CopyError::Network(io::Error::new(
                io::ErrorKind::InvalidData,
                e,
            )));
        }
        while conn.wants_write() {
            conn.write_tls(&mut &*sock).map_err(CopyError::Network)?;
        }
    }
}

/// Start writing the dirty pages of `file` from `start` to the disk, without waiting for them.
///
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` has no safe wrapper; `POSIX_FADV_DONTNEED` does
/// the same first (Linux starts writeback of the range's dirty pages, `WB_SYNC_NONE`), then
/// drops the pages already written back: those of an upload being synced are not read again
/// soon, and the page cache keeps room for what is. Best effort: a failure only means the
/// final sync waits longer.
fn start_writeback(file: &LocalFile, start: u64) {
    let _ = rustix::fs::fadvise(file, start, None, rustix::fs::Advice::DontNeed);
}

/// After our side is shut down, read (and drop) whatever comes until the client closes too,
/// or `limit` passes.
pub(crate) async fn drain_until_closed(stream: &mut Stream, limit: Duration) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Send `len` bytes of `file` from `offset` over a plain TCP connection with sendfile(2): the
/// kernel moves page-cache pages to the socket without a copy through user space. Stops early
/// (without error) if the file turns out shorter; the caller compares the count.
pub(crate) async fn sendfile(
    file: &LocalFile,
    mut offset: u64,
    len: u64,
    dst: &TcpStream,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<(), CopyError> {
    use tokio::io::Interest;
    /// Bytes asked of one sendfile call: large enough to keep the socket busy, small enough to
    /// update progress (and notice ABOR) often.
    const CHUNK: u64 = 4 * 1024 * 1024;
    let end = offset.saturating_add(len);
    let mut first = true;
    while offset < end {
        let want = usize::try_from((end - offset).min(CHUNK)).unwrap_or(1 << 20);
        // The first ask goes straight to the kernel: a new data connection has room in its
        // send buffer, but tokio learns that only from the event loop's next turn, which would
        // cost every small download a wake-up. (Only the first: a loop that never waits would
        // never let ABOR in. A `WouldBlock` falls through to the wait below.)
        let direct = if std::mem::take(&mut first) {
            match rustix::fs::sendfile(dst, file, Some(&mut offset), want) {
                Err(rustix::io::Errno::AGAIN) => None,
                r => Some(r.map_err(io::Error::from)),
            }
        } else {
            None
        };
        let sent = match direct {
            Some(r) => r,
            None => {
                with_stall_timeout(
                    stall,
                    dst.async_io(Interest::WRITABLE, || {
                        rustix::fs::sendfile(dst, file, Some(&mut offset), want)
                            .map_err(io::Error::from)
                    }),
                )
                .await
            }
        };
        match sent {
            Ok(0) => break,
            Ok(n) => {
                progress.fetch_add(n as u64, Ordering::Relaxed);
            }
            // The file, not the network: report it as local.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EOVERFLOW)) => {
                return Err(CopyError::Local(e));
            }
            Err(e) => return Err(CopyError::Network(e)),
        }
    }
    Ok(())
}

/// Write `buf` (if not empty) to the data connection and clear it.
pub(crate) async fn write_chunk<W: AsyncWrite + Unpin>(
    dst: &mut W,
    buf: &mut Vec<u8>,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<(), CopyError> {
    if buf.is_empty() {
        return Ok(());
    }
    with_stall_timeout(stall, dst.write_all(buf))
        .await
        .map_err(CopyError::Network)?;
    progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
    buf.clear();
    Ok(())
}

/// End the sending side of a data connection (TLS: close_notify, then FIN).
pub(crate) async fn finish<W: AsyncWrite + Unpin>(
    dst: &mut W,
    stall: Duration,
) -> Result<(), CopyError> {
    with_stall_timeout(stall, dst.shutdown())
        .await
        .map_err(CopyError::Network)
}

async fn with_stall_timeout<T>(
    stall: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(stall, fut)
        .await
        .unwrap_or_else(|_| Err(stalled(stall)))
}

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data moved for {} s", stall.as_secs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_data_connection_that_reached_itself_is_refused() {
        // Connecting from the port it targets: the kernel joins the socket to itself.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(LO, 0)).unwrap();
        let me = socket.local_addr().unwrap();
        let stream = socket.connect(me).await.unwrap();
        assert_eq!(stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        let err = refuse_self_connect(stream).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // Through connect_active, with the source port it is told to use (a fresh port: the
        // one above lingers after its close).
        let fresh = std::net::TcpListener::bind(SocketAddr::new(LO, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let err = connect_active(LO, fresh, Duration::from_secs(5), Some(fresh.port()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }

    fn free_range(n: u16) -> PortRange {
        // Find n consecutive free ports by probing; good enough for a test on loopback.
        for base in (40000u16..60000).step_by(97) {
            let ok = (base..base + n).all(|p| std::net::TcpListener::bind((LO, p)).is_ok());
            if ok {
                return PortRange {
                    low: base,
                    high: base + n - 1,
                };
            }
        }
        panic!("no free range");
    }

    #[tokio::test]
    async fn ports_are_released_on_drop_and_busy_ports_skipped() {
        let range = free_range(3);
        let ports = PassivePorts::new(Some(range));
        // Another process (here: a plain socket) holds the middle port.
        let _held = std::net::TcpListener::bind((LO, range.low + 1)).unwrap();
        let a = ports.bind(LO).unwrap();
        let b = ports.bind(LO).unwrap();
        assert_eq!(a.port(), range.low);
        assert_eq!(
            b.port(),
            range.high,
            "the held port is skipped, not an error"
        );
        assert_eq!(ports.in_use(), 2);
        assert!(ports.bind(LO).is_err(), "range exhausted");
        drop(a);
        assert_eq!(ports.in_use(), 1);
        let c = ports.bind(LO).unwrap();
        assert_eq!(c.port(), range.low);
    }

    #[tokio::test]
    async fn the_port_released_longest_ago_is_handed_out_first() {
        let range = free_range(4);
        let ports = PassivePorts::new(Some(range));
        let [a, b, c] = [(); 3].map(|()| ports.bind(LO).unwrap());
        let (pa, pb, pc) = (a.port(), b.port(), c.port());
        assert_eq!((pa, pb, pc), (range.low, range.low + 1, range.low + 2));
        // Released out of order: b, then a.
        drop(b);
        drop(a);
        let d = ports.bind(LO).unwrap();
        assert_eq!(d.port(), range.high, "the never-used port first");
        let e = ports.bind(LO).unwrap();
        assert_eq!(e.port(), pb, "then the one released first");
        let f = ports.bind(LO).unwrap();
        assert_eq!(f.port(), pa);
        assert!(ports.bind(LO).is_err(), "all four held");
        drop((c, d, e, f));
        assert_eq!(ports.in_use(), 0);
        // Every port of the range is handed out again, each once, before any repeats.
        let mut seen: Vec<u16> = (0..4).map(|_| ports.bind(LO).unwrap().port()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    #[tokio::test]
    async fn a_port_held_elsewhere_is_tried_once_per_turn_not_on_every_bind() {
        let range = free_range(3);
        let ports = PassivePorts::new(Some(range));
        let held = std::net::TcpListener::bind((LO, range.low)).unwrap();
        // The first bind finds it held and puts it at the back...
        let first = ports.bind(LO).unwrap();
        assert_eq!(first.port(), range.low + 1);
        drop(first);
        // ...so the next ones take the other ports, and it is tried again only after them.
        let second = ports.bind(LO).unwrap();
        assert_eq!(second.port(), range.high);
        drop(second);
        drop(held);
        let third = ports.bind(LO).unwrap();
        assert_eq!(
            third.port(),
            range.low,
            "freed by the other process: usable again"
        );
    }

    #[tokio::test]
    async fn a_timed_out_accept_releases_its_port() {
        let ports = PassivePorts::new(Some(free_range(1)));
        let listener = ports.bind(LO).unwrap();
        assert_eq!(ports.in_use(), 1);
        let err = listener
            .accept(LO, false, Duration::from_millis(50), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(ports.in_use(), 0);
    }

    #[tokio::test]
    async fn a_replaced_listener_frees_its_port_at_once() {
        let range = free_range(1);
        let ports = PassivePorts::new(Some(range));
        let first = ports.bind(LO).unwrap();
        drop(first);
        // No yield in between: the port must be free for the very next bind.
        let second = ports.bind(LO).unwrap();
        assert_eq!(second.port(), range.low);
    }

    #[tokio::test]
    async fn a_connection_from_another_address_is_refused() {
        let ports = PassivePorts::new(None);
        let listener = ports.bind(LO).unwrap();
        let port = listener.port();
        let pending = tokio::spawn(listener.accept(LO, false, Duration::from_secs(5), None));
        // 127.0.0.2 is a different client address on loopback.
        let thief = TcpSocket::new_v4().unwrap();
        thief
            .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
            .unwrap();
        let mut thief = thief.connect(SocketAddr::new(LO, port)).await.unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            thief.read(&mut byte).await.unwrap_or(0),
            0,
            "the thief is disconnected"
        );
        let _owner = TcpStream::connect((LO, port)).await.unwrap();
        let conn = pending.await.unwrap().unwrap();
        assert_eq!(conn.peer_addr().unwrap().ip(), LO);
    }

    #[tokio::test]
    async fn binary_receive_keeps_every_byte_and_flushes_a_paused_upload() {
        let path = std::env::temp_dir().join(format!(
            "ferroftp-filewriter-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let file = std::fs::File::create(&path).unwrap();
        let data: Vec<u8> = (0..3 * UPLOAD_CHUNK + 1234)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let sender = {
            let (path, data) = (path.clone(), data.clone());
            async move {
                client.write_all(&data[..1000]).await.unwrap();
                // The client pauses: what arrived reaches the file without waiting for more.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while std::fs::metadata(&path).unwrap().len() < 1000 {
                    assert!(std::time::Instant::now() < deadline, "not flushed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                client.write_all(&data[1000..]).await.unwrap();
            }
        };
        let progress = AtomicU64::new(0);
        let mut writer = FileWriter::new(UploadFile::local(file));
        let receiving = receive_binary(
            &mut server,
            false,
            &mut writer,
            &progress,
            Duration::from_secs(5),
            None,
        );
        let ((), ending) = tokio::join!(sender, receiving);
        assert_eq!(ending.unwrap(), Received::Ended(Ending::Eof));
        let (written, file, rest) = writer.finish().await;
        written.unwrap();
        std::io::Write::write_all(&mut file.unwrap(), &rest).unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
        let stored = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(stored == data, "the file differs from what was sent");
    }

    #[tokio::test]
    async fn ascii_send_and_receive_convert_line_ends() {
        let progress = AtomicU64::new(0);
        let mut wire = Vec::new();
        send(
            &b"a\nb\n"[..],
            &mut wire,
            true,
            &progress,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(wire, b"a\r\nb\r\n");
        let mut stored = Vec::new();
        receive(
            &mut &wire[..],
            false,
            &mut stored,
            true,
            &progress,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(stored, b"a\nb\n");
    }
}
