//! The local file system back-end, the default [`Storage`]: each session is confined to one
//! home directory.
//!
//! # Confinement
//! Every access goes through a [`cap_std::fs::Dir`] opened on the home once per session
//! ([`LocalFs::open`]); paths are handed to it relative to that handle, never joined onto a host
//! path. cap-std resolves every component beneath the home (with `openat2(RESOLVE_BENEATH)` or
//! an equivalent manual walk), so neither a client argument (`..`, absolute, `%2e%2e` which is
//! just a name) nor a symlink on disk can reach anything outside it:
//! - client arguments are first normalized lexically into a [`VPath`] (`..` never climbs
//!   above `/`);
//! - a symlink is followed only while its target stays inside the home; one that would leave it
//!   (including any absolute target, even one that happens to point back into the home) yields
//!   [`StorageError::Escape`], as does a symlink loop;
//! - [`LocalFs::list`] shows dangling or escaping symlinks as [`EntryKind::Symlink`] without
//!   following them;
//! - operations on the last component that do not follow symlinks (remove, rename) act on the
//!   link itself, which is inside the home;
//! - names in the upload temp namespace ([`is_internal_name`]) are hidden from listings and
//!   refused as a path segment ([`StorageError::InvalidName`]);
//! - only regular files and directories are opened: a FIFO, socket or device node in the home
//!   is refused with [`StorageError::PermissionDenied`] (checked before opening and again on
//!   the opened handle);
//! - a hard link is the file itself, wherever its other names are: a regular file with more
//!   than one link is never changed in place (in-place uploads, [`LocalFs::set_mode`],
//!   [`LocalFs::set_modified`] give [`StorageError::HardLinked`]); replacing it
//!   ([`WriteMode::Replace`], rename) only changes the name in the home;
//! - names with CR or LF are invalid ([`VPath::resolve`] refuses them, listings skip them).
//!
//! # Uploads
//! [`LocalFs::create_upload`] returns an [`LocalUpload`]; [`LocalUpload::commit`] `fsync`s the data.
//! What an interrupted upload (dropped or [`LocalUpload::abort`]ed without commit, or a failed
//! commit) leaves on disk depends on the [`WriteMode`]:
//! - [`WriteMode::Replace`] (STOR) writes to `.ferroftp-upload.<random hex>.part`, created
//!   exclusively in the target's directory, and commit renames it over the target atomically.
//!   Interrupted: the temp file is removed and the target (if any) is byte-identical to before.
//!   Only a crash of the whole process can leave a temp file behind; it stays hidden.
//!   The new file keeps the permission bits of the file it replaces, and replacing a file the
//!   user could not write is refused. A symlink at the target is replaced, not written through.
//! - [`WriteMode::Append`] (APPE) writes to the target itself. Interrupted: what was written
//!   stays (the client is resuming); nothing written, nothing changed.
//! - [`WriteMode::At`] (REST + STOR) writes in place from the offset; commit cuts the file
//!   where the upload ends. [`WriteMode::AppendAt`] is its form for accounts that may only
//!   append: the offset must be the file's end, and it appends like APPE. Interrupted: the file is the prefix up to the offset plus what
//!   was written (never a mix with the old tail); if nothing was written, it is unchanged.
//! - [`LocalUpload::roll_back`] undoes an in-place upload whose data cannot be trusted, as far as
//!   possible (everything but bytes that overwrote old content).
//! - [`LocalFs::create_unique`] (STOU) creates a fresh file exclusively and writes in place.
//!   Interrupted: the partial file stays under its unique name (the client was told the name
//!   and may resume it); the server may [`LocalFs::remove_file`] it if it prefers.
//!
//! All methods block; call them from `spawn_blocking`.

mod dir;
mod home;
pub(super) mod upload;
mod write;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use std::os::unix::fs::PermissionsExt as _;

use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions};

use super::{
    DirStream, Entry, EntryKind, ReadStream, Storage, StorageError, Upload, VPath, WriteMode,
};
#[cfg(test)]
use super::{MAX_DEPTH, MAX_PATH_LEN, SyncPolicy};

pub use dir::LocalDirStream;
pub(crate) use dir::NameFilter;
pub use home::{HomeCache, LocalBackend, creatable_home, create_missing_home};
pub use upload::{LocalUpload, Replaced, is_internal_name};

/// An open file of the local back-end, handed to the data path for its fast paths (sendfile,
/// splice, `pread` on a transfer thread). Only this back-end makes one; see
/// [`super::ReadStream::local_file`] and [`super::UploadFile::local_file`].
pub type LocalFile = File;

/// A [`LocalFile`] read or written from async code (through the blocking pool).
pub type AsyncLocalFile = tokio::fs::File;

/// `file` for async code, moving `chunk` bytes per trip to the blocking pool at most (0:
/// tokio's default).
pub(crate) fn async_file(file: LocalFile, chunk: usize) -> AsyncLocalFile {
    let mut file = AsyncLocalFile::from_std(file);
    if chunk > 0 {
        file.set_max_buf_size(chunk);
    }
    file
}

/// Creates the directory `path` (the default anonymous home, made at start when missing).
pub fn create_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir(path)
}

/// The [`Entry`] of `name` with metadata `md`.
pub(super) fn entry_from_metadata(name: String, md: &Metadata) -> Entry {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    Entry {
        name,
        kind,
        size: md.len(),
        modified: md.modified().ok().map(|t| t.into_std()),
        mode: md.mode(),
        nlink: md.nlink(),
    }
}

/// How many numbered candidates [`LocalFs::create_unique`] tries before random suffixes.
const UNIQUE_NUMBERED_TRIES: u32 = 999;
/// How many random-suffix candidates it tries after that.
const UNIQUE_RANDOM_TRIES: u32 = 16;

/// A user's home, opened once per session. Cheap to clone (the handle is shared); Send + Sync.
#[derive(Debug, Clone)]
pub struct LocalFs {
    root: Arc<Dir>,
    /// (device, inode) of `root`, taken at open: an open directory's never changes, and a
    /// login that finds this home in the [`HomeCache`] then costs one `stat`, not two.
    identity: Option<(u64, u64)>,
}

impl LocalFs {
    /// Opens the home directory `home`, which must exist.
    pub fn open(home: &Path) -> Result<Self, StorageError> {
        use cap_std::fs::MetadataExt;
        let root = Dir::open_ambient_dir(home, cap_std::ambient_authority())?;
        let identity = root.dir_metadata().ok().map(|md| (md.dev(), md.ino()));
        Ok(LocalFs {
            root: Arc::new(root),
            identity,
        })
    }

    /// The (device, inode) of the home itself, to tell whether a path still names it.
    pub fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Metadata of `p`, following symlinks that stay inside the home.
    pub fn metadata(&self, p: &VPath) -> Result<Entry, StorageError> {
        check_not_internal(p)?;
        let md = self.root.metadata(p.relative())?;
        let name = p.file_name().unwrap_or("/").to_owned();
        Ok(entry_from_metadata(name, &md))
    }

    /// Whether `p` is (or is a symlink inside the home to) a directory.
    pub fn is_dir(&self, p: &VPath) -> bool {
        self.metadata(p).is_ok_and(|e| e.kind == EntryKind::Dir)
    }

    /// The entries of directory `p`, sorted by name, without `.`, `..` or upload temp files.
    ///
    /// A symlink whose target is inside the home shows the target's kind and size; a dangling
    /// or escaping one is listed as [`EntryKind::Symlink`]. Names that are not UTF-8 are
    /// skipped (the client could not address them).
    pub fn list(&self, p: &VPath) -> Result<Vec<Entry>, StorageError> {
        // The trait's own: every back-end lists a whole directory the same way.
        <Self as Storage>::list(self, p)
    }

    /// The entries of directory `p` as they come from the file system, a batch at a time, so
    /// that a huge directory is never held in memory at once. Same filtering as [`Self::list`].
    pub fn read_dir(&self, p: &VPath) -> Result<LocalDirStream, StorageError> {
        check_not_internal(p)?;
        let dir = self.root.open_dir(p.relative())?;
        Ok(LocalDirStream {
            entries: dir::Entries::Full(dir.entries()?),
            root: Arc::clone(&self.root),
            path: p.clone(),
            keep: None,
        })
    }

    /// Like [`Self::read_dir`], but only the names are wanted (NLST): entries come without
    /// metadata (kind [`EntryKind::Other`], size 0), which saves a `stat` per entry.
    pub fn read_dir_names(&self, p: &VPath) -> Result<LocalDirStream, StorageError> {
        check_not_internal(p)?;
        let dir = self.root.open_dir(p.relative())?;
        // cap-std's handle may be an O_PATH one; `.` of it, opened for reading, is the same
        // directory.
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(LocalDirStream {
            entries: dir::Entries::Names {
                dir,
                buf: Vec::new(),
                carry: Vec::new(),
            },
            root: Arc::clone(&self.root),
            path: p.clone(),
            keep: None,
        })
    }

    /// Opens regular file `p` for download, positioned at `offset`; returns it and its length.
    ///
    /// [`StorageError::InvalidOffset`] if `offset` is beyond the end of the file.
    pub fn open_read(&self, p: &VPath, offset: u64) -> Result<(File, u64), StorageError> {
        check_not_internal(p)?;
        // One open and one fstat: O_NONBLOCK lets a FIFO (whose plain open would wait for a
        // writer) open at once so that the fstat can refuse it, and it changes nothing for a
        // regular file. (A stat by name before the open cost three more calls per download
        // and could be raced anyway.)
        let mut file = self.open_nonblocking(p, false, 0).map_err(|e| {
            // A socket cannot be opened at all: refused like the other special files.
            if e.raw_os_error() == Some(libc::ENXIO) {
                StorageError::PermissionDenied
            } else {
                e.into()
            }
        })?;
        let len = check_regular_file(&file)?;
        if offset > len {
            return Err(StorageError::InvalidOffset);
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok((file, len))
    }

    /// Creates directory `p` (its parent must exist).
    pub fn mkdir(&self, p: &VPath) -> Result<(), StorageError> {
        check_not_internal(p)?;
        if p.is_root() {
            return Err(StorageError::AlreadyExists);
        }
        Ok(self.root.create_dir(p.relative())?)
    }

    /// Removes empty directory `p`; never the home itself.
    pub fn rmdir(&self, p: &VPath) -> Result<(), StorageError> {
        check_not_internal(p)?;
        if p.is_root() {
            return Err(StorageError::PermissionDenied);
        }
        Ok(self.root.remove_dir(p.relative())?)
    }

    /// Removes non-directory `p` (a symlink itself, not its target).
    pub fn remove_file(&self, p: &VPath) -> Result<(), StorageError> {
        check_not_internal(p)?;
        if p.is_root() {
            return Err(StorageError::IsADirectory);
        }
        Ok(self.root.remove_file(p.relative())?)
    }

    /// Renames `from` to `to`, replacing a file (or empty directory) at `to` like `rename(2)`.
    ///
    /// Refuses the home itself ([`StorageError::PermissionDenied`]) and moving a directory into
    /// itself ([`StorageError::InvalidName`]).
    pub fn rename(&self, from: &VPath, to: &VPath) -> Result<(), StorageError> {
        self.rename_with(from, to, true)
    }

    /// Like [`Self::rename`], but never replaces anything at `to`: an existing name there gives
    /// [`StorageError::AlreadyExists`] and nothing changes (for accounts that may rename but
    /// not overwrite). Atomic (`renameat2` with `RENAME_NOREPLACE`) where the file system
    /// supports it.
    pub fn rename_no_replace(&self, from: &VPath, to: &VPath) -> Result<(), StorageError> {
        self.rename_with(from, to, false)
    }

    fn rename_with(&self, from: &VPath, to: &VPath, replace: bool) -> Result<(), StorageError> {
        check_not_internal(from)?;
        check_not_internal(to)?;
        if from.is_root() || to.is_root() {
            return Err(StorageError::PermissionDenied);
        }
        if to
            .as_str()
            .strip_prefix(from.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(StorageError::InvalidName);
        }
        if !replace {
            return self.rename_exclusive(from, to);
        }
        match self.root.rename(from.relative(), &self.root, to.relative()) {
            Ok(()) => Ok(()),
            // EINVAL: moving a directory beneath itself by way of a symlink.
            Err(err) if err.kind() == io::ErrorKind::InvalidInput => Err(StorageError::InvalidName),
            Err(err) => Err(err.into()),
        }
    }

    /// `rename_no_replace` proper: both parents are opened beneath the home (cap-std), and the
    /// rename names one component in each, so nothing is resolved outside the home.
    fn rename_exclusive(&self, from: &VPath, to: &VPath) -> Result<(), StorageError> {
        let (Some(from_parent), Some(from_name), Some(to_parent), Some(to_name)) =
            (from.parent(), from.file_name(), to.parent(), to.file_name())
        else {
            return Err(StorageError::PermissionDenied);
        };
        let from_dir = self.root.open_dir(from_parent.relative())?;
        let to_dir = self.root.open_dir(to_parent.relative())?;
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        match rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags) {
            Ok(()) => Ok(()),
            // A file system without RENAME_NOREPLACE (EINVAL also means a directory moved
            // beneath itself, which the lexical check above catches but a symlink may hide):
            // look, then rename. Only another local process could race the look.
            Err(rustix::io::Errno::INVAL) => {
                match to_dir.symlink_metadata(to_name) {
                    Ok(_) => return Err(StorageError::AlreadyExists),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err.into()),
                }
                match from_dir.rename(from_name, &to_dir, to_name) {
                    Ok(()) => Ok(()),
                    Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                        Err(StorageError::InvalidName)
                    }
                    Err(err) => Err(err.into()),
                }
            }
            Err(errno) => Err(io::Error::from(errno).into()),
        }
    }

    /// Sets the modification time of file or directory `p` (MFMT / SITE UTIME).
    pub fn set_modified(&self, p: &VPath, t: SystemTime) -> Result<(), StorageError> {
        check_not_internal(p)?;
        let md = self.root.metadata(p.relative())?;
        if !md.is_dir() {
            check_regular(&md)?;
        }
        // Opening for reading works for directories too; fall back to writing for a file the
        // user may write but not read. Neither changes the file.
        let mut opts = OpenOptions::new();
        let file = match self.root.open_with(p.relative(), opts.read(true)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied && md.is_file() => {
                let mut opts = OpenOptions::new();
                self.root.open_with(p.relative(), opts.write(true))?
            }
            Err(err) => return Err(err.into()),
        };
        let file = file.into_std();
        let md = file.metadata()?;
        if md.is_file() {
            check_single_link(&md)?;
        } else if !md.is_dir() {
            return Err(StorageError::PermissionDenied);
        }
        Ok(file.set_modified(t)?)
    }

    /// Sets the permission bits of `p` (SITE CHMOD). Only the `0o777` bits of `mode` are
    /// used: setuid, setgid and sticky are never set (the files belong to the service account).
    /// A regular file with other hard links is refused ([`StorageError::HardLinked`]), and
    /// anything but a regular file or a directory is refused
    /// ([`StorageError::PermissionDenied`]).
    ///
    /// The target is opened once and the type, the link count and the change all go through
    /// that handle: checking by path and then changing by path again would let another session
    /// rename a hard-linked outside file into place in between.
    pub fn set_mode(&self, p: &VPath, mode: u32) -> Result<(), StorageError> {
        check_not_internal(p)?;
        let (file, path_only) = self.open_for_mode_change(p)?;
        change_mode(&file, path_only, mode)
    }

    /// Opens `p` (confined like every other access) for [`LocalFs::set_mode`]: for reading,
    /// else for writing, else (a file the owner may neither read nor write, which its owner may
    /// still chmod) as an `O_PATH` handle, reported by the `true`. Non-blocking, so a FIFO
    /// swapped in cannot hang the open; it is refused afterwards on the handle.
    fn open_for_mode_change(&self, p: &VPath) -> Result<(File, bool), StorageError> {
        let open = |write: bool, extra: i32| self.open_nonblocking(p, write, extra);
        // EACCES only: cap-std reports an escape as PermissionDenied without an errno.
        let denied = |err: &io::Error| err.raw_os_error() == Some(libc::EACCES);
        match open(false, 0) {
            Ok(file) => return Ok((file, false)),
            Err(err) if denied(&err) => {}
            Err(err) => return Err(err.into()),
        }
        match open(true, 0) {
            Ok(file) => return Ok((file, false)),
            // A directory cannot be opened for writing.
            Err(err) if denied(&err) || err.raw_os_error() == Some(libc::EISDIR) => {}
            Err(err) => return Err(err.into()),
        }
        Ok((open(false, libc::O_PATH)?, true))
    }

    /// Opens `p` for reading or writing with `O_NONBLOCK | O_NOCTTY` and `extra` flags, or
    /// with `O_PATH` alone if `extra` has it (openat2 refuses `O_PATH` with other flags).
    fn open_nonblocking(&self, p: &VPath, write: bool, extra: i32) -> io::Result<File> {
        use cap_std::fs::OpenOptionsExt as _;
        let flags = if extra & libc::O_PATH != 0 {
            libc::O_PATH
        } else {
            libc::O_NONBLOCK | libc::O_NOCTTY | extra
        };
        let mut opts = OpenOptions::new();
        opts.read(!write).write(write).custom_flags(flags);
        Ok(self.root.open_with(p.relative(), &opts)?.into_std())
    }
}

/// The trait is the inherent methods: the session calls them through `dyn Storage`; the
/// storage tests call them on [`LocalFs`] itself, with the local types.
impl Storage for LocalFs {
    fn metadata(&self, p: &VPath) -> Result<Entry, StorageError> {
        LocalFs::metadata(self, p)
    }

    fn is_dir(&self, p: &VPath) -> bool {
        LocalFs::is_dir(self, p)
    }

    fn read_dir(&self, p: &VPath) -> Result<DirStream, StorageError> {
        LocalFs::read_dir(self, p).map(DirStream::from)
    }

    fn read_dir_names(&self, p: &VPath) -> Result<DirStream, StorageError> {
        LocalFs::read_dir_names(self, p).map(DirStream::from)
    }

    fn open_read(&self, p: &VPath, offset: u64) -> Result<(ReadStream, u64), StorageError> {
        LocalFs::open_read(self, p, offset).map(|(file, len)| (ReadStream::local(file), len))
    }

    fn create_upload(&self, p: &VPath, mode: WriteMode) -> Result<Upload, StorageError> {
        LocalFs::create_upload(self, p, mode).map(Upload::from)
    }

    fn create_unique(&self, dir: &VPath, hint: &str) -> Result<(VPath, Upload), StorageError> {
        LocalFs::create_unique(self, dir, hint).map(|(path, upload)| (path, Upload::from(upload)))
    }

    fn mkdir(&self, p: &VPath) -> Result<(), StorageError> {
        LocalFs::mkdir(self, p)
    }

    fn rmdir(&self, p: &VPath) -> Result<(), StorageError> {
        LocalFs::rmdir(self, p)
    }

    fn remove_file(&self, p: &VPath) -> Result<(), StorageError> {
        LocalFs::remove_file(self, p)
    }

    fn rename(&self, from: &VPath, to: &VPath) -> Result<(), StorageError> {
        LocalFs::rename(self, from, to)
    }

    fn rename_no_replace(&self, from: &VPath, to: &VPath) -> Result<(), StorageError> {
        LocalFs::rename_no_replace(self, from, to)
    }

    fn set_modified(&self, p: &VPath, t: SystemTime) -> Result<(), StorageError> {
        LocalFs::set_modified(self, p, t)
    }

    fn set_mode(&self, p: &VPath, mode: u32) -> Result<(), StorageError> {
        LocalFs::set_mode(self, p, mode)
    }
}

/// The second half of [`LocalFs::set_mode`]: checks the opened `file` (`path_only`: an
/// `O_PATH` handle) and changes its mode through it.
fn change_mode(file: &File, path_only: bool, mode: u32) -> Result<(), StorageError> {
    let md = file.metadata()?;
    if md.is_file() {
        check_single_link(&md)?;
    } else if !md.is_dir() {
        return Err(StorageError::PermissionDenied);
    }
    let perm = std::fs::Permissions::from_mode(mode & 0o777);
    if path_only {
        // `fchmod` refuses an `O_PATH` handle; its `/proc/self/fd` entry names exactly the
        // opened inode, whatever happens to the name in the home meanwhile.
        use std::os::fd::AsRawFd as _;
        std::fs::set_permissions(format!("/proc/self/fd/{}", file.as_raw_fd()), perm)?;
    } else {
        // `fchmod` on the handle.
        file.set_permissions(perm)?;
    }
    Ok(())
}

/// Refuses paths with a segment in the upload temp namespace.
fn check_not_internal(p: &VPath) -> Result<(), StorageError> {
    if p.segments().any(is_internal_name) {
        return Err(StorageError::InvalidName);
    }
    Ok(())
}

/// Only regular files may be opened for data: a directory is `IsADirectory`, anything else
/// (FIFO, socket, device) `PermissionDenied`.
fn check_regular(md: &Metadata) -> Result<(), StorageError> {
    if md.is_dir() {
        Err(StorageError::IsADirectory)
    } else if md.is_file() {
        Ok(())
    } else {
        Err(StorageError::PermissionDenied)
    }
}

/// [`check_regular_file`] for a file about to be changed in place (APPE, REST + STOR): one
/// with other hard links is refused, as writing it would change every other name of it, and
/// one of them may be outside the home. Returns the length.
fn check_in_place_file(file: &File) -> Result<u64, StorageError> {
    let len = check_regular_file(file)?;
    check_single_link(&file.metadata()?)?;
    Ok(len)
}

/// Refuses a regular file with more than one hard link (see [`StorageError::HardLinked`]).
fn check_single_link(md: &impl HardLinks) -> Result<(), StorageError> {
    if md.links() > 1 {
        return Err(StorageError::HardLinked);
    }
    Ok(())
}

/// The link count of either kind of metadata.
trait HardLinks {
    fn links(&self) -> u64;
}

impl HardLinks for Metadata {
    fn links(&self) -> u64 {
        self.nlink()
    }
}

impl HardLinks for std::fs::Metadata {
    fn links(&self) -> u64 {
        std::os::unix::fs::MetadataExt::nlink(self)
    }
}

/// [`check_regular`] on an opened handle (closes the check-then-open race); returns the length.
fn check_regular_file(file: &File) -> Result<u64, StorageError> {
    let md = file.metadata()?;
    if md.is_dir() {
        Err(StorageError::IsADirectory)
    } else if md.is_file() {
        Ok(md.len())
    } else {
        Err(StorageError::PermissionDenied)
    }
}
