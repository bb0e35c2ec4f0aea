//! Where users' files live: the [`Storage`] trait that sessions and the data path use, and
//! its back-ends.
//!
//! - [`local`]: the local file system, confined to each user's home (the default, and the
//!   only back-end shipped so far). It also offers the zero-copy fast paths: its open files
//!   ([`local::LocalFile`]) reach the data path through [`ReadStream::local_file`] and
//!   [`UploadFile::local_file`], for sendfile, splice and the transfer threads.
//! - Another back-end (an object store, a database) implements [`Storage`] and
//!   [`StorageBackend`], and is handed to [`crate::Server::with_storage`].
//!
//! The shape is an object store's as much as a file system's:
//! - a listing is a stream ([`DirStream`]), never a whole directory in memory;
//! - a read is ranged ([`Storage::open_read`] at an offset, with the size);
//! - a write is a stream that is committed (visible whole, atomically) or aborted (nothing
//!   left): [`Upload`], made by [`Storage::create_upload`];
//! - what a back-end cannot do (rename, append, resuming in place, permission bits) it refuses
//!   with [`StorageError::Unsupported`] before anything changes, so the client gets a clear
//!   reply instead of a half-done operation; [`Storage::capabilities`] says so in advance.
//!
//! Every method blocks; call them from `spawn_blocking`.

mod blocking;
#[cfg(test)]
mod boundary_tests;
mod error;
pub mod local;
mod stream;
mod vpath;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub use error::StorageError;
pub use local::{LocalFs, Replaced, creatable_home, is_internal_name};
pub use stream::{
    AsyncReadStream, AsyncUploadFile, DirStream, ReadStream, Upload, UploadFile, UploadSink,
};
pub use vpath::{MAX_DEPTH, MAX_PATH_LEN, VPath};

/// What a directory entry is (after following a symlink that stays inside the home).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink that is dangling or leads outside the home (not followed).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// Metadata of one file or directory, as shown to the client.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The last path segment (`"/"` for the home itself).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, if the back-end knows it.
    pub modified: Option<SystemTime>,
    /// Unix permission and type bits, like `st_mode`.
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
}

/// How an upload treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: write to a temp file, atomically replace the target on commit.
    Replace,
    /// APPE: append to the target in place (created if missing).
    Append,
    /// REST + STOR: write from the offset, in place; the file ends where the upload ends.
    At(u64),
    /// REST + STOR or APPE for an account that may only append: the offset must be the file's
    /// length ([`StorageError::WouldOverwrite`] before it), and the upload appends, so no
    /// existing byte ever changes.
    AppendAt(u64),
}

pub use crate::policy::SyncPolicy;

/// What a back-end can do beyond reading, listing, whole-file uploads and deleting, which
/// every back-end does. An operation it cannot do gives [`StorageError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Rename files and directories (RNFR/RNTO).
    pub rename: bool,
    /// Add to an existing file (APPE, and REST + STOR at its end).
    pub append: bool,
    /// Write into an existing file at an offset (REST + STOR).
    pub write_at: bool,
    /// Set permission bits (SITE CHMOD).
    pub set_mode: bool,
    /// Set modification times (MFMT, SITE UTIME).
    pub set_modified: bool,
}

impl Capabilities {
    /// Everything (the local file system).
    pub const ALL: Self = Self {
        rename: true,
        append: true,
        write_at: true,
        set_mode: true,
        set_modified: true,
    };
}

/// The storage of one user's home: what a session reads, lists and writes through. Paths are
/// [`VPath`]s, already normalized and confined to the home; a back-end must keep every
/// operation inside it.
///
/// All methods block (call them from `spawn_blocking`). Errors are typed so that each maps to
/// one FTP reply; an operation the back-end cannot do is [`StorageError::Unsupported`], given
/// before anything changes.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// What this back-end can do; the default is everything.
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// Metadata of `p`.
    fn metadata(&self, p: &VPath) -> Result<Entry, StorageError>;

    /// Whether `p` is a directory.
    fn is_dir(&self, p: &VPath) -> bool {
        self.metadata(p).is_ok_and(|e| e.kind == EntryKind::Dir)
    }

    /// The entries of directory `p` as a stream, a batch at a time (never `.` or `..`).
    fn read_dir(&self, p: &VPath) -> Result<DirStream, StorageError>;

    /// Like [`Storage::read_dir`] when only names are wanted (NLST): a back-end may leave the
    /// metadata out (kind [`EntryKind::Other`], size 0) where that saves work.
    fn read_dir_names(&self, p: &VPath) -> Result<DirStream, StorageError> {
        self.read_dir(p)
    }

    /// The entries of directory `p`, sorted by name, all at once (small directories, tests).
    fn list(&self, p: &VPath) -> Result<Vec<Entry>, StorageError> {
        let mut stream = self.read_dir(p)?;
        let mut entries = Vec::new();
        loop {
            let batch = stream.next_batch(1024)?;
            if batch.is_empty() {
                break;
            }
            entries.extend(batch);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Opens regular file `p` for reading from `offset` (a ranged read); returns the stream and
    /// the file's whole length. [`StorageError::InvalidOffset`] if `offset` is past the end.
    fn open_read(&self, p: &VPath, offset: u64) -> Result<(ReadStream, u64), StorageError>;

    /// Starts an upload to `p` (see [`WriteMode`]): nothing is visible until
    /// [`Upload::commit_with`]; dropping the upload aborts it.
    fn create_upload(&self, p: &VPath, mode: WriteMode) -> Result<Upload, StorageError>;

    /// STOU: an upload to a fresh name in `dir` made from `hint`; returns its path.
    fn create_unique(&self, dir: &VPath, hint: &str) -> Result<(VPath, Upload), StorageError>;

    /// Creates directory `p` (its parent must exist).
    fn mkdir(&self, p: &VPath) -> Result<(), StorageError>;

    /// Removes empty directory `p`; never the home itself.
    fn rmdir(&self, p: &VPath) -> Result<(), StorageError>;

    /// Removes non-directory `p`.
    fn remove_file(&self, p: &VPath) -> Result<(), StorageError>;

    /// Renames `from` to `to`, replacing what is at `to` like `rename(2)`.
    fn rename(&self, from: &VPath, to: &VPath) -> Result<(), StorageError>;

    /// Like [`Storage::rename`], but an existing `to` gives [`StorageError::AlreadyExists`].
    fn rename_no_replace(&self, from: &VPath, to: &VPath) -> Result<(), StorageError>;

    /// Sets the modification time of `p` (MFMT / SITE UTIME).
    fn set_modified(&self, p: &VPath, t: SystemTime) -> Result<(), StorageError>;

    /// Sets the permission bits (`0o777` at most) of `p` (SITE CHMOD).
    fn set_mode(&self, p: &VPath, mode: u32) -> Result<(), StorageError>;
}

/// Opens the [`Storage`] of each user who logs in: held by the server, so that the back-end
/// can be chosen (the local file system by default, another one in tests or later).
pub trait StorageBackend: Send + Sync + std::fmt::Debug {
    /// The storage of `user`, whose home is `home` (an absolute path below or beside the
    /// server's `root`, as the configuration resolved it). BLOCKING.
    fn open_home(
        &self,
        user: &str,
        home: &Path,
        root: &Path,
    ) -> Result<Arc<dyn Storage>, StorageError>;
}
