//! The byte-moving loops of a transfer on the async side: downloads (sendfile for a local
//! file over plain TCP, else through user space), uploads through a [`FileWriter`], TYPE A
//! conversion.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroftp_proto::ascii;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::stream::Stream;
use crate::storage::UploadFile;
use crate::storage::local::LocalFile;

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
    /// [`receive_on_thread`](super::thread::receive_on_thread).
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

pub(super) async fn with_stall_timeout<T>(
    stall: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(stall, fut)
        .await
        .unwrap_or_else(|_| Err(stalled(stall)))
}

pub(super) fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no data moved for {} s", stall.as_secs()),
    )
}
