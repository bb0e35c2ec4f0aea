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
    idle: Option<(std::fs::File, Vec<u8>)>,
    /// The write in flight: it gives back the file, its buffer and the result.
    pending: Option<tokio::task::JoinHandle<Written>>,
}

/// What a write on the blocking pool gives back: the file, its buffer and the result.
type Written = (std::fs::File, Vec<u8>, io::Result<()>);

impl FileWriter {
    /// A writer to `file` at its current position.
    pub(crate) fn new(file: std::fs::File) -> Self {
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
    pub(crate) async fn finish(mut self) -> (io::Result<()>, Option<std::fs::File>, Vec<u8>) {
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

/// [`receive`] for TYPE I into a [`FileWriter`]. Progress counts bytes as they arrive.
pub(crate) async fn receive_binary<R>(
    src: &mut R,
    tls: bool,
    dst: &mut FileWriter,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<Ending, CopyError>
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
                dst.hand_off().await.map_err(CopyError::Local)?;
                continue;
            }
            Event::Read(Ok(0)) if tls => return Ok(Ending::CloseNotify),
            Event::Read(Ok(0)) => return Ok(Ending::Eof),
            Event::Read(Ok(n)) => n,
            // rustls reports a TCP close without close_notify this way.
            Event::Read(Err(e)) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Ending::Truncated);
            }
            Event::Read(Err(e)) => return Err(CopyError::Network(e)),
        };
        stall_deadline = tokio::time::Instant::now() + stall;
        progress.fetch_add(n as u64, Ordering::Relaxed);
        if dst.filling.len() >= UPLOAD_CHUNK {
            dst.hand_off().await.map_err(CopyError::Local)?;
        } else if !waiting {
            flush
                .as_mut()
                .reset(tokio::time::Instant::now() + FLUSH_AFTER);
        }
    }
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
    file: &std::fs::File,
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
        let mut writer = FileWriter::new(file);
        let receiving = receive_binary(
            &mut server,
            false,
            &mut writer,
            &progress,
            Duration::from_secs(5),
        );
        let ((), ending) = tokio::join!(sender, receiving);
        assert_eq!(ending.unwrap(), Ending::Eof);
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
