//! Transfers on a thread of their own: big plain uploads (splice into a local file) and TLS
//! uploads and downloads, with blocking sockets and no hand-off between threads per chunk.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::copy::{CopyError, Ending, stalled};
use crate::storage::local::LocalFile;
use crate::storage::{ReadStream, UploadFile};

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
