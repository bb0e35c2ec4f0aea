//! Directory listings of the local back-end, read a batch at a time.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use cap_std::fs::Dir;

use super::entry_from_metadata;
use super::upload::is_internal_name;
use crate::storage::vpath::is_valid_segment;
use crate::storage::{Entry, EntryKind, StorageError, VPath};

/// A directory being read (see [`LocalFs::read_dir`]). Send, so batches can be read on a
/// blocking thread while the async side sends the previous one.
pub struct LocalDirStream {
    pub(super) entries: Entries,
    pub(super) root: Arc<Dir>,
    pub(super) path: VPath,
    /// Only names this accepts are returned (and only they cost a `stat`).
    pub(super) keep: Option<NameFilter>,
}

/// Where a [`LocalDirStream`] reads its entries from.
pub(super) enum Entries {
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

/// Which names a [`LocalDirStream`] returns (see [`LocalDirStream::matching`]).
pub(crate) type NameFilter = Box<dyn Fn(&str) -> bool + Send>;

impl std::fmt::Debug for LocalDirStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDirStream")
            .field("path", &self.path)
            .field("names_only", &matches!(self.entries, Entries::Names { .. }))
            .field("filtered", &self.keep.is_some())
            .finish_non_exhaustive()
    }
}

impl LocalDirStream {
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
            batch.push(entry_from_metadata(name, &md));
        }
        Ok(batch)
    }
}

/// Entries a directory stream with metadata reads per batch for [`LocalDirStream::for_each_name`].
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
