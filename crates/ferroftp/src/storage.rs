//! The local file system back-end: each session is confined to one home directory.
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
//! [`LocalFs::create_upload`] returns an [`Upload`]; [`Upload::commit`] `fsync`s the data.
//! What an interrupted upload (dropped or [`Upload::abort`]ed without commit, or a failed
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
//! - [`Upload::roll_back`] undoes an in-place upload whose data cannot be trusted, as far as
//!   possible (everything but bytes that overwrote old content).
//! - [`LocalFs::create_unique`] (STOU) creates a fresh file exclusively and writes in place.
//!   Interrupted: the partial file stays under its unique name (the client was told the name
//!   and may resume it); the server may [`LocalFs::remove_file`] it if it prefers.
//!
//! All methods block; call them from `spawn_blocking`.

mod error;
mod upload;
mod vpath;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use std::os::unix::fs::PermissionsExt as _;

use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions, Permissions};

pub use error::StorageError;
use upload::InPlaceMode;
pub use upload::{Replaced, SyncPolicy, Upload, WriteMode, is_internal_name};
pub use vpath::{MAX_DEPTH, MAX_PATH_LEN, VPath};

use vpath::is_valid_segment;

/// How many numbered candidates [`LocalFs::create_unique`] tries before random suffixes.
const UNIQUE_NUMBERED_TRIES: u32 = 999;
/// How many random-suffix candidates it tries after that.
const UNIQUE_RANDOM_TRIES: u32 = 16;

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
    /// Last modification time, if the platform reports it.
    pub modified: Option<SystemTime>,
    /// Unix permission and type bits, like `st_mode`.
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
}

impl Entry {
    fn from_metadata(name: String, md: &Metadata) -> Self {
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
}

/// Open homes shared by the sessions that use them, so that a thousand sessions of one user
/// hold one directory handle, not a thousand. A handle is reused only while the path still
/// names the same directory (a home moved and recreated gets a fresh handle).
#[derive(Debug, Default)]
pub struct HomeCache {
    open: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<LocalFs>>>,
}

impl HomeCache {
    /// The open home at `path`, shared if another session has it open. BLOCKING (a stat, and
    /// an open the first time).
    pub fn open(&self, path: &Path) -> Result<Arc<LocalFs>, StorageError> {
        if let Some(fs) = self.cached(path) {
            return Ok(fs);
        }
        let lock = || self.open.lock().unwrap_or_else(|p| p.into_inner());
        let fs = Arc::new(LocalFs::open(path)?);
        let mut open = lock();
        // Forget homes nobody uses any more, now and then, so the map stays small.
        if open.len() >= 64 && open.len().is_power_of_two() {
            open.retain(|_, w| w.strong_count() > 0);
        }
        open.insert(path.to_owned(), Arc::downgrade(&fs));
        Ok(fs)
    }
}

impl HomeCache {
    /// The home at `path` if a session has it open and the path still names it. BLOCKING (a
    /// `stat` of the path, slow on a slow mount).
    pub fn cached(&self, path: &Path) -> Option<Arc<LocalFs>> {
        use std::os::unix::fs::MetadataExt;
        let fs = {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            open.get(path).and_then(std::sync::Weak::upgrade)?
        };
        let here = std::fs::metadata(path).ok()?;
        (fs.identity() == Some((here.dev(), here.ino()))).then_some(fs)
    }
}

/// The part of `home` below `root` when the server may create it there: strictly inside,
/// plain names only (no `..` or `.`); `None` for a home that is the administrator's to create.
pub fn creatable_home<'a>(root: &Path, home: &'a Path) -> Option<&'a Path> {
    use std::path::Component;
    let relative = home.strip_prefix(root).ok()?;
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !relative.as_os_str().is_empty()).then_some(relative)
}

/// Create a user's missing home `home` if it lies inside `root`: mode 0o750, owned by the
/// server's user (the process creating it), so that `passwd` or the admin API adding a user
/// is enough. BLOCKING. Returns whether it was created.
///
/// Only below `root`, and through a handle on `root` that refuses to follow a symlink out of
/// it; a home elsewhere (or with `..`) is the administrator's to create. Parents are created
/// as needed (with the process's umask).
pub fn create_missing_home(root: &Path, home: &Path) -> io::Result<bool> {
    // The usual case, without opening the root: the home is there.
    if std::fs::symlink_metadata(home).is_ok() {
        return Ok(false);
    }
    let Some(relative) = creatable_home(root, home) else {
        return Ok(false);
    };
    let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    match dir.symlink_metadata(relative) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
        dir.create_dir_all(parent)?;
    }
    dir.create_dir(relative)?;
    dir.set_permissions(
        relative,
        Permissions::from_std(std::fs::Permissions::from_mode(0o750)),
    )?;
    Ok(true)
}

/// A directory being read (see [`LocalFs::read_dir`]). Send, so batches can be read on a
/// blocking thread while the async side sends the previous one.
pub struct DirStream {
    entries: Entries,
    root: Arc<Dir>,
    path: VPath,
    /// Only names this accepts are returned (and only they cost a `stat`).
    keep: Option<NameFilter>,
}

/// Where a [`DirStream`] reads its entries from.
enum Entries {
    /// With metadata (LIST, MLSD): cap-std's iterator, whose entries `stat` beside their
    /// directory.
    Full(cap_std::fs::ReadDir),
    /// Names only (NLST): `getdents64` straight into a buffer kept for the whole listing, so
    /// that a name costs no allocation until it is accepted (cap-std's iterator allocates two
    /// copies of every name and takes a lock per entry).
    Names {
        dir: OwnedFd,
        /// Empty until the first read; its spare capacity is the `getdents64` buffer.
        buf: Vec<u8>,
        /// Names accepted from the last buffer beyond the batch that asked for them: a buffer
        /// is always used up (seeking back into it would make ext4 rebuild its hash tree).
        carry: Vec<Entry>,
    },
}

/// Bytes of directory entries one `getdents64` call returns at most (NLST), as glibc's
/// `readdir` buffer.
const DIRENT_BUF: usize = 32 * 1024;

/// Which names a [`DirStream`] returns (see [`DirStream::matching`]).
type NameFilter = Box<dyn Fn(&str) -> bool + Send>;

impl std::fmt::Debug for DirStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStream")
            .field("path", &self.path)
            .field("names_only", &matches!(self.entries, Entries::Names { .. }))
            .field("filtered", &self.keep.is_some())
            .finish_non_exhaustive()
    }
}

impl DirStream {
    /// Only entries whose name `keep` accepts (a glob pattern): the rest are skipped as they
    /// are read, so a pattern over a huge directory holds no more than a batch at a time.
    pub fn matching(mut self, keep: impl Fn(&str) -> bool + Send + 'static) -> Self {
        self.keep = Some(Box::new(keep));
        self
    }

    /// Calls `each` with the next names (those the `NLST` of a big directory sends, without
    /// an [`Entry`] or a copy per name); 0 means the end, otherwise how many directory entries
    /// were read (names skipped included). Reads at most one `getdents64` buffer at a time.
    pub fn for_each_name(&mut self, mut each: impl FnMut(&str)) -> Result<usize, StorageError> {
        let (dir, buf, carry) = match &mut self.entries {
            Entries::Names { dir, buf, carry } => (dir, buf, carry),
            Entries::Full(_) => {
                let batch = self.next_batch(LISTING_NAMES_BATCH)?;
                batch.iter().for_each(|e| each(&e.name));
                return Ok(batch.len());
            }
        };
        if !carry.is_empty() {
            let n = carry.len();
            carry.drain(..).for_each(|e| each(&e.name));
            return Ok(n);
        }
        if buf.capacity() == 0 {
            buf.reserve_exact(DIRENT_BUF);
        }
        let keep = self.keep.as_deref();
        let mut raw = rustix::fs::RawDir::new(&*dir, buf.spare_capacity_mut());
        let mut read = 0;
        loop {
            if read > 0 && raw.is_buffer_empty() {
                return Ok(read);
            }
            let Some(dirent) = raw.next() else {
                return Ok(read);
            };
            let dirent = dirent.map_err(io::Error::from)?;
            read += 1;
            if let Ok(name) = dirent.file_name().to_str() {
                if is_listed(name, keep) {
                    each(name);
                }
            }
        }
    }

    /// Up to `max` more entries; an empty batch means the end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Entry>, StorageError> {
        let mut batch = Vec::with_capacity(max.min(1024));
        let entries = match &mut self.entries {
            Entries::Full(entries) => entries,
            Entries::Names { dir, buf, carry } => {
                let taken = carry.len().min(max);
                batch.extend(carry.drain(..taken));
                next_names(dir, buf, self.keep.as_deref(), max, &mut batch, carry)?;
                return Ok(batch);
            }
        };
        while batch.len() < max {
            let Some(dir_entry) = entries.next() else {
                break;
            };
            let dir_entry = dir_entry?;
            let Ok(name) = dir_entry.file_name().into_string() else {
                continue;
            };
            if !is_valid_segment(&name) || is_internal_name(&name) {
                continue;
            }
            if self.keep.as_ref().is_some_and(|keep| !keep(&name)) {
                continue;
            }
            let md = match dir_entry.metadata() {
                Ok(md) => md,
                // Removed since the directory was read.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            };
            let md = if md.file_type().is_symlink() {
                // Follow it from the home, not from the directory, so links to elsewhere in
                // the home work.
                self.path
                    .join(&name)
                    .ok()
                    .and_then(|child| self.root.metadata(child.relative()).ok())
                    .unwrap_or(md)
            } else {
                md
            };
            batch.push(Entry::from_metadata(name, &md));
        }
        Ok(batch)
    }
}

/// Entries a directory stream with metadata reads per batch for [`DirStream::for_each_name`].
const LISTING_NAMES_BATCH: usize = 512;

/// Whether a name read from a directory is listed: a valid name, not an upload temp file, and
/// one the stream's filter accepts.
fn is_listed(name: &str, keep: Option<&(dyn Fn(&str) -> bool + Send)>) -> bool {
    is_valid_segment(name) && !is_internal_name(name) && keep.is_none_or(|keep| keep(name))
}

/// Reads names of `dir` into `batch` until it holds `max`, and the rest of the buffer then in
/// hand into `carry` (see [`Entries::Names`]).
fn next_names(
    dir: &OwnedFd,
    buf: &mut Vec<u8>,
    keep: Option<&(dyn Fn(&str) -> bool + Send)>,
    max: usize,
    batch: &mut Vec<Entry>,
    carry: &mut Vec<Entry>,
) -> Result<(), StorageError> {
    if batch.len() >= max {
        return Ok(());
    }
    if buf.capacity() == 0 {
        buf.reserve_exact(DIRENT_BUF);
    }
    let mut raw = rustix::fs::RawDir::new(dir, buf.spare_capacity_mut());
    loop {
        let full = batch.len() >= max;
        if full && raw.is_buffer_empty() {
            return Ok(());
        }
        let Some(dirent) = raw.next() else {
            return Ok(());
        };
        let dirent = dirent.map_err(io::Error::from)?;
        let Ok(name) = dirent.file_name().to_str() else {
            continue;
        };
        if !is_listed(name, keep) {
            continue;
        }
        let entry = Entry {
            name: name.to_owned(),
            kind: EntryKind::Other,
            size: 0,
            modified: None,
            mode: 0,
            nlink: 0,
        };
        if full {
            carry.push(entry);
        } else {
            batch.push(entry);
        }
    }
}

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
        Ok(Entry::from_metadata(name, &md))
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

    /// The entries of directory `p` as they come from the file system, a batch at a time, so
    /// that a huge directory is never held in memory at once. Same filtering as [`Self::list`].
    pub fn read_dir(&self, p: &VPath) -> Result<DirStream, StorageError> {
        check_not_internal(p)?;
        let dir = self.root.open_dir(p.relative())?;
        Ok(DirStream {
            entries: Entries::Full(dir.entries()?),
            root: Arc::clone(&self.root),
            path: p.clone(),
            keep: None,
        })
    }

    /// Like [`Self::read_dir`], but only the names are wanted (NLST): entries come without
    /// metadata (kind [`EntryKind::Other`], size 0), which saves a `stat` per entry.
    pub fn read_dir_names(&self, p: &VPath) -> Result<DirStream, StorageError> {
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
        Ok(DirStream {
            entries: Entries::Names {
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

    /// Starts an upload to `p`; see [`WriteMode`] and the module documentation.
    ///
    /// The parent directory must exist ([`StorageError::NotFound`] otherwise); a directory at
    /// `p` gives [`StorageError::IsADirectory`]; [`WriteMode::At`] beyond the end of the file
    /// (or past 0 on a missing file) gives [`StorageError::InvalidOffset`].
    pub fn create_upload(&self, p: &VPath, mode: WriteMode) -> Result<Upload, StorageError> {
        check_not_internal(p)?;
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Err(StorageError::IsADirectory);
        };
        match mode {
            WriteMode::Replace => self.create_replace(p, &parent, name),
            WriteMode::Append => {
                self.check_write_target(p)?;
                let mut opts = OpenOptions::new();
                opts.append(true).create(true);
                let file = self.root.open_with(p.relative(), &opts)?.into_std();
                let len = check_in_place_file(&file)?;
                Ok(Upload::in_place(file, InPlaceMode::Append, len, Some(len)))
            }
            WriteMode::AppendAt(offset) => {
                if !self.check_write_target(p)? {
                    return match self.metadata(&parent)?.kind {
                        EntryKind::Dir => Err(StorageError::InvalidOffset),
                        _ => Err(StorageError::NotADirectory),
                    };
                }
                let mut opts = OpenOptions::new();
                opts.append(true);
                let file = self.root.open_with(p.relative(), &opts)?.into_std();
                let len = check_in_place_file(&file)?;
                match offset.cmp(&len) {
                    std::cmp::Ordering::Equal => {
                        Ok(Upload::in_place(file, InPlaceMode::Append, len, Some(len)))
                    }
                    std::cmp::Ordering::Less => Err(StorageError::WouldOverwrite),
                    std::cmp::Ordering::Greater => Err(StorageError::InvalidOffset),
                }
            }
            WriteMode::At(offset) => {
                if !self.check_write_target(p)? && offset > 0 {
                    // Nothing to resume; but report a missing parent as such.
                    return match self.metadata(&parent)?.kind {
                        EntryKind::Dir => Err(StorageError::InvalidOffset),
                        _ => Err(StorageError::NotADirectory),
                    };
                }
                let mut opts = OpenOptions::new();
                opts.write(true).create(offset == 0);
                let mut file = self.root.open_with(p.relative(), &opts)?.into_std();
                let len = check_in_place_file(&file)?;
                if offset > len {
                    return Err(StorageError::InvalidOffset);
                }
                // Nothing is cut yet: a refused or empty transfer must leave the file alone.
                file.seek(SeekFrom::Start(offset))?;
                Ok(Upload::in_place(file, InPlaceMode::At, offset, Some(len)))
            }
        }
    }

    /// STOR: a temp file next to the target, renamed over it on commit.
    fn create_replace(
        &self,
        p: &VPath,
        parent: &VPath,
        name: &str,
    ) -> Result<Upload, StorageError> {
        let dir = self.root.open_dir(parent.relative())?;
        let mut keep_mode = None;
        match dir.symlink_metadata(name) {
            Ok(md) if md.is_dir() => return Err(StorageError::IsADirectory),
            Ok(md) if md.is_symlink() => {
                if self.root.metadata(p.relative()).is_ok_and(|t| t.is_dir()) {
                    return Err(StorageError::IsADirectory);
                }
            }
            Ok(md) if md.is_file() => {
                // Replacing must be allowed only where overwriting would be: the user must be
                // able to write the existing file. Opening without truncation changes nothing.
                let mut opts = OpenOptions::new();
                opts.write(true);
                drop(dir.open_with(name, &opts)?);
                keep_mode = Some(md.mode() & 0o777);
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let mut attempts = 0;
        let (temp, file) = loop {
            let temp = upload::temp_name();
            match dir.open_with(&temp, &opts) {
                Ok(file) => break (temp, file.into_std()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                    attempts += 1;
                }
                Err(err) => return Err(err.into()),
            }
        };
        // From here on, dropping `upload` removes the temp file.
        let replaces = keep_mode.is_some();
        let mut upload = Upload::temp(file, dir, temp, name.to_owned(), replaces);
        if let Some(mode) = keep_mode {
            upload
                .file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(upload)
    }

    /// Checks an in-place upload target: `Ok(true)` if it exists (a regular file), `Ok(false)`
    /// if it does not; a directory or special file is refused.
    fn check_write_target(&self, p: &VPath) -> Result<bool, StorageError> {
        match self.root.metadata(p.relative()) {
            Ok(md) => check_regular(&md).map(|()| true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// STOU: creates a file named `hint` in `dir`, or `hint.1`, `hint.2`, ... if taken, and
    /// returns its path with an in-place upload.
    pub fn create_unique(&self, dir: &VPath, hint: &str) -> Result<(VPath, Upload), StorageError> {
        check_not_internal(dir)?;
        if !is_valid_segment(hint) || is_internal_name(hint) {
            return Err(StorageError::InvalidName);
        }
        let handle = self.root.open_dir(dir.relative())?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let numbered = (0..=UNIQUE_NUMBERED_TRIES).map(|i| match i {
            0 => hint.to_owned(),
            i => format!("{hint}.{i}"),
        });
        let random =
            (0..UNIQUE_RANDOM_TRIES).map(|_| format!("{hint}.{:08x}", rand::random::<u32>()));
        for name in numbered.chain(random) {
            let path = dir.join(&name)?;
            // `create_new` never follows a symlink, so an existing link of that name is "taken".
            match handle.open_with(&name, &opts) {
                Ok(file) => {
                    let upload = Upload::in_place(file.into_std(), InPlaceMode::At, 0, None);
                    return Ok((path, upload));
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(StorageError::AlreadyExists)
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
