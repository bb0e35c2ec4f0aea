//! The streams a [`super::Storage`] hands out: listings ([`DirStream`]), reads
//! ([`ReadStream`]) and uploads ([`Upload`], written through an [`UploadFile`]).
//!
//! Each is the local back-end's own type (matched statically, so its fast paths cost nothing)
//! or a boxed stream of another back-end. The data path asks for the local file with
//! `local_file()`; when there is none it moves plain bytes, on the blocking pool
//! ([`AsyncReadStream`], [`AsyncUploadFile`]) or on a transfer thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::blocking::Blocking;
use super::local::{self, AsyncLocalFile, LocalDirStream, LocalFile, LocalUpload};
use super::vpath::is_valid_segment;
use super::{Entry, Replaced, StorageError, SyncPolicy};

// ---- listings ----

/// A directory being read, a batch at a time, so that a huge directory is never held in memory
/// at once. Send, so batches can be read on a blocking thread while the previous one is sent.
pub struct DirStream(DirInner);

enum DirInner {
    Local(LocalDirStream),
    Entries {
        entries: Box<dyn Iterator<Item = Result<Entry, StorageError>> + Send>,
        keep: Option<super::local::NameFilter>,
    },
}

impl fmt::Debug for DirStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            DirInner::Local(d) => d.fmt(f),
            DirInner::Entries { keep, .. } => f
                .debug_struct("DirStream")
                .field("filtered", &keep.is_some())
                .finish_non_exhaustive(),
        }
    }
}

impl From<LocalDirStream> for DirStream {
    fn from(d: LocalDirStream) -> Self {
        Self(DirInner::Local(d))
    }
}

impl DirStream {
    /// A listing of another back-end, from its entries as it reads them (a page of an object
    /// store's listing at a time, say). Names that are not one valid path segment (`.`, `..`,
    /// with `/`, NUL, CR or LF) are skipped.
    pub fn from_entries(
        entries: impl Iterator<Item = Result<Entry, StorageError>> + Send + 'static,
    ) -> Self {
        Self(DirInner::Entries {
            entries: Box::new(entries),
            keep: None,
        })
    }

    /// Only entries whose name `keep` accepts (a glob pattern): the rest are skipped as they
    /// are read, so a pattern over a huge directory holds no more than a batch at a time.
    pub fn matching(self, keep: impl Fn(&str) -> bool + Send + 'static) -> Self {
        match self.0 {
            DirInner::Local(d) => Self(DirInner::Local(d.matching(keep))),
            DirInner::Entries { entries, .. } => Self(DirInner::Entries {
                entries,
                keep: Some(Box::new(keep)),
            }),
        }
    }

    /// Calls `each` with the next names (NLST); 0 means the end, otherwise how many entries
    /// were read (names skipped included).
    pub fn for_each_name(&mut self, mut each: impl FnMut(&str)) -> Result<usize, StorageError> {
        match &mut self.0 {
            DirInner::Local(d) => d.for_each_name(each),
            DirInner::Entries { .. } => {
                let batch = self.next_batch(NAMES_BATCH)?;
                batch.iter().for_each(|e| each(&e.name));
                Ok(batch.len())
            }
        }
    }

    /// Up to `max` more entries; an empty batch means the end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Entry>, StorageError> {
        match &mut self.0 {
            DirInner::Local(d) => d.next_batch(max),
            DirInner::Entries { entries, keep } => {
                let mut batch = Vec::with_capacity(max.min(1024));
                while batch.len() < max {
                    let Some(entry) = entries.next() else {
                        break;
                    };
                    let entry = entry?;
                    // A name the client could not address, or one that would forge lines in
                    // NLST (CR, LF), is never listed, whatever the back-end holds.
                    if !is_valid_segment(&entry.name) {
                        continue;
                    }
                    if keep.as_ref().is_none_or(|keep| keep(&entry.name)) {
                        batch.push(entry);
                    }
                }
                Ok(batch)
            }
        }
    }
}

/// Entries another back-end's listing reads per [`DirStream::for_each_name`].
const NAMES_BATCH: usize = 512;

// ---- reads ----

/// A file opened for reading at an offset ([`super::Storage::open_read`]).
pub struct ReadStream(ReadInner);

enum ReadInner {
    Local(LocalFile),
    Reader(Box<dyn Read + Send>),
}

impl fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.local_file().is_some();
        f.debug_struct("ReadStream")
            .field("local", &local)
            .finish_non_exhaustive()
    }
}

impl ReadStream {
    /// A read of the local back-end: `file` positioned at the offset asked for.
    pub(crate) fn local(file: LocalFile) -> Self {
        Self(ReadInner::Local(file))
    }

    /// A read of another back-end: `reader` gives the bytes from the offset asked for on.
    pub fn from_reader(reader: impl Read + Send + 'static) -> Self {
        Self(ReadInner::Reader(Box::new(reader)))
    }

    /// The local file, for the zero-copy paths (sendfile, `pread` on a thread); `None` for
    /// other back-ends, whose bytes go through [`Read`].
    pub fn local_file(&self) -> Option<&LocalFile> {
        match &self.0 {
            ReadInner::Local(f) => Some(f),
            ReadInner::Reader(_) => None,
        }
    }

    /// Reads the next bytes for a transfer that started at `start` and has moved `offset -
    /// start` bytes: the local file with `pread` at `offset` (its position untouched), other
    /// streams in order.
    pub fn read_from(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &mut self.0 {
            ReadInner::Local(f) => std::os::unix::fs::FileExt::read_at(f, buf, offset),
            ReadInner::Reader(r) => r.read(buf),
        }
    }

    /// An async reader of the stream for the data path, reading `chunk` bytes per trip to the
    /// blocking pool.
    pub fn into_async(self, chunk: usize) -> AsyncReadStream {
        match self.0 {
            ReadInner::Local(f) => {
                AsyncReadStream(AsyncReadInner::Local(local::async_file(f, chunk)))
            }
            ReadInner::Reader(r) => {
                AsyncReadStream(AsyncReadInner::Reader(Blocking::new(r, chunk)))
            }
        }
    }
}

impl Read for ReadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            ReadInner::Local(f) => f.read(buf),
            ReadInner::Reader(r) => r.read(buf),
        }
    }
}

/// A [`ReadStream`] read from async code (see [`ReadStream::into_async`]).
#[derive(Debug)]
pub struct AsyncReadStream(AsyncReadInner);

#[derive(Debug)]
enum AsyncReadInner {
    Local(AsyncLocalFile),
    Reader(Blocking<Box<dyn Read + Send>>),
}

impl AsyncRead for AsyncReadStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            AsyncReadInner::Local(f) => Pin::new(f).poll_read(cx, out),
            AsyncReadInner::Reader(r) => r.poll_read(cx, out),
        }
    }
}

// ---- uploads ----

/// Where an upload's bytes are written: a handle to the same upload as its [`Upload`] (like a
/// duplicated descriptor), from [`Upload::take_file`].
pub struct UploadFile(UploadFileInner);

enum UploadFileInner {
    Local(LocalFile),
    Writer(Box<dyn Write + Send>),
}

impl fmt::Debug for UploadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.local_file().is_some();
        f.debug_struct("UploadFile")
            .field("local", &local)
            .finish_non_exhaustive()
    }
}

impl UploadFile {
    /// The local back-end's file.
    pub(crate) fn local(file: LocalFile) -> Self {
        Self(UploadFileInner::Local(file))
    }

    /// Another back-end's writer of the upload.
    pub fn from_writer(writer: impl Write + Send + 'static) -> Self {
        Self(UploadFileInner::Writer(Box::new(writer)))
    }

    /// The local file, for the fast paths (splice, writeback hints); `None` for other
    /// back-ends.
    pub fn local_file(&self) -> Option<&LocalFile> {
        match &self.0 {
            UploadFileInner::Local(f) => Some(f),
            UploadFileInner::Writer(_) => None,
        }
    }

    /// [`UploadFile::local_file`], to write to.
    pub fn local_file_mut(&mut self) -> Option<&mut LocalFile> {
        match &mut self.0 {
            UploadFileInner::Local(f) => Some(f),
            UploadFileInner::Writer(_) => None,
        }
    }

    /// An async writer of the upload for the data path; [`AsyncUploadFile::into_inner`] gives
    /// the handle back once every write has landed.
    pub fn into_async(self) -> AsyncUploadFile {
        match self.0 {
            UploadFileInner::Local(f) => {
                AsyncUploadFile(AsyncUploadInner::Local(local::async_file(f, 0)))
            }
            UploadFileInner::Writer(w) => {
                AsyncUploadFile(AsyncUploadInner::Writer(Blocking::new(w, 0)))
            }
        }
    }
}

impl Write for UploadFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            UploadFileInner::Local(f) => f.write(buf),
            UploadFileInner::Writer(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            UploadFileInner::Local(f) => f.write_all(buf),
            UploadFileInner::Writer(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            UploadFileInner::Local(f) => f.flush(),
            UploadFileInner::Writer(w) => w.flush(),
        }
    }
}

/// An [`UploadFile`] written from async code (see [`UploadFile::into_async`]).
#[derive(Debug)]
pub struct AsyncUploadFile(AsyncUploadInner);

#[derive(Debug)]
enum AsyncUploadInner {
    Local(AsyncLocalFile),
    Writer(Blocking<Box<dyn Write + Send>>),
}

impl AsyncUploadFile {
    /// Waits for the write in flight, then gives back the handle; `None` if it was lost (a
    /// write task panicked).
    pub async fn into_inner(self) -> Option<UploadFile> {
        match self.0 {
            AsyncUploadInner::Local(f) => Some(UploadFile::local(f.into_std().await)),
            AsyncUploadInner::Writer(mut w) => {
                let _ = std::future::poll_fn(|cx| w.poll_settle(cx)).await;
                w.into_inner()
                    .map(|w| UploadFile(UploadFileInner::Writer(w)))
            }
        }
    }
}

impl AsyncWrite for AsyncUploadFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            AsyncUploadInner::Local(f) => Pin::new(f).poll_write(cx, buf),
            AsyncUploadInner::Writer(w) => w.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            AsyncUploadInner::Local(f) => Pin::new(f).poll_flush(cx),
            AsyncUploadInner::Writer(w) => w.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            AsyncUploadInner::Local(f) => Pin::new(f).poll_shutdown(cx),
            AsyncUploadInner::Writer(w) => w.poll_flush(cx),
        }
    }
}

/// Another back-end's upload in progress: written through [`UploadSink::writer`], made
/// visible whole by [`UploadSink::commit`]. Dropped without a commit, it must leave nothing.
pub trait UploadSink: Send + fmt::Debug {
    /// A handle to write the upload's bytes through; every handle writes the same upload, in
    /// order.
    fn writer(&mut self) -> io::Result<Box<dyn Write + Send>>;

    /// Makes the upload visible whole (atomically); on error nothing is visible.
    fn commit(self: Box<Self>, policy: SyncPolicy) -> Result<(), StorageError>;

    /// Whether [`UploadSink::commit`] with `policy` waits for the data to be durable.
    fn will_sync(&self, _policy: SyncPolicy) -> bool {
        false
    }
}

/// An upload in progress. Write to it through [`Upload::take_file`], then
/// [`Upload::commit_with`]; dropping it without committing aborts it. (What an interrupted
/// upload leaves is the back-end's to say: see [`super::local`] for the local file system.)
#[derive(Debug)]
pub struct Upload(UploadInner);

#[derive(Debug)]
enum UploadInner {
    Local(LocalUpload),
    Sink {
        sink: Box<dyn UploadSink>,
        /// Bytes handed over by [`Upload::defer_write`], not yet written.
        unwritten: Vec<u8>,
    },
}

impl From<LocalUpload> for Upload {
    fn from(upload: LocalUpload) -> Self {
        Self(UploadInner::Local(upload))
    }
}

impl Upload {
    /// Another back-end's upload.
    pub fn from_sink(sink: impl UploadSink + 'static) -> Self {
        Self(UploadInner::Sink {
            sink: Box::new(sink),
            unwritten: Vec::new(),
        })
    }

    /// Undoes the upload as far as possible (data that cannot be trusted, such as a TLS
    /// upload cut off without close_notify); returns whether the target is as it was.
    pub fn roll_back(self) -> bool {
        match self.0 {
            UploadInner::Local(u) => u.roll_back(),
            // Nothing of an uncommitted sink is visible.
            UploadInner::Sink { .. } => true,
        }
    }

    /// Hands over the last bytes of the upload, written by [`Upload::commit_with`] (one trip
    /// to the blocking pool for both) or [`Upload::write_deferred`].
    pub fn defer_write(&mut self, bytes: Vec<u8>) {
        match &mut self.0 {
            UploadInner::Local(u) => u.defer_write(bytes),
            UploadInner::Sink { unwritten, .. } => {
                if unwritten.is_empty() {
                    *unwritten = bytes;
                } else {
                    unwritten.extend_from_slice(&bytes);
                }
            }
        }
    }

    /// Writes the bytes queued by [`Upload::defer_write`] now, so that a failed write of the
    /// data can be told from a failed commit.
    pub fn write_deferred(&mut self) -> io::Result<()> {
        match &mut self.0 {
            UploadInner::Local(u) => u.write_deferred(),
            UploadInner::Sink { sink, unwritten } => {
                let bytes = std::mem::take(unwritten);
                if bytes.is_empty() {
                    return Ok(());
                }
                sink.writer()?.write_all(&bytes)
            }
        }
    }

    /// A handle to write the upload through (for the local back-end, a duplicate of its
    /// file). `None` only if none can be made.
    pub fn take_file(&mut self) -> Option<UploadFile> {
        match &mut self.0 {
            UploadInner::Local(u) => u.take_file().map(UploadFile::local),
            UploadInner::Sink { sink, .. } => sink
                .writer()
                .ok()
                .map(|w| UploadFile(UploadFileInner::Writer(w))),
        }
    }

    /// Hands back a handle from [`Upload::take_file`] (it is closed).
    pub fn put_file(&mut self, file: UploadFile) {
        drop(file);
    }

    /// Whether [`Upload::commit_with`] with `policy` flushes the data to durable storage.
    pub fn will_sync(&self, policy: SyncPolicy) -> bool {
        match &self.0 {
            UploadInner::Local(u) => u.will_sync(policy),
            UploadInner::Sink { sink, .. } => sink.will_sync(policy),
        }
    }

    /// Whether the data should start going to disk while it arrives (see
    /// [`LocalUpload::writes_back_early`]); never for other back-ends.
    pub fn writes_back_early(&self, policy: SyncPolicy) -> bool {
        match &self.0 {
            UploadInner::Local(u) => u.writes_back_early(policy),
            UploadInner::Sink { .. } => false,
        }
    }

    /// Completes the upload, syncing as `policy` says; gives back what it replaced, still
    /// open (see [`Replaced`]). On error nothing changed that the mode did not allow.
    pub fn commit_with(mut self, policy: SyncPolicy) -> Result<Replaced, StorageError> {
        if let UploadInner::Local(u) = self.0 {
            return u.commit_with(policy);
        }
        self.write_deferred()?;
        match self.0 {
            UploadInner::Local(u) => u.commit_with(policy),
            UploadInner::Sink { sink, .. } => sink.commit(policy).map(|()| Replaced::default()),
        }
    }

    /// [`Upload::commit_with`] with [`SyncPolicy::Always`].
    pub fn commit(self) -> Result<(), StorageError> {
        self.commit_with(SyncPolicy::Always).map(drop)
    }

    /// Abandons the upload; the same as dropping it.
    pub fn abort(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EntryKind;

    fn entry(name: &str) -> Result<Entry, StorageError> {
        Ok(Entry {
            name: name.to_owned(),
            kind: EntryKind::File,
            size: 0,
            modified: None,
            mode: 0o100_644,
            nlink: 1,
        })
    }

    #[test]
    fn another_back_ends_listing_never_shows_a_name_that_could_forge_lines_or_paths() {
        let names = [
            "ok",
            "two\r\n226 forged",
            "..",
            ".",
            "a/b",
            "nul\0",
            "",
            "also ok",
        ];
        let mut stream = DirStream::from_entries(names.map(entry).into_iter());
        let mut seen = Vec::new();
        while stream
            .for_each_name(|n| seen.push(n.to_owned()))
            .unwrap_or(0)
            > 0
        {}
        assert_eq!(seen, ["ok", "also ok"]);
    }

    #[test]
    fn another_back_ends_listing_is_filtered_and_batched() {
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let entries = names.into_iter().map(|n| entry(&n)).collect::<Vec<_>>();
        let mut stream =
            DirStream::from_entries(entries.into_iter()).matching(|n| n != "f3" && n != "f7");
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let batch = stream.next_batch(3).ok()?;
            (!batch.is_empty()).then_some(batch.len())
        })
        .collect();
        assert_eq!(sizes, [3, 3, 2]);
    }
}
