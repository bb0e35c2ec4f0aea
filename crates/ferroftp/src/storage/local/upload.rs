//! Uploads to the local file system: temp-file-and-rename for STOR, in place for APPE,
//! REST+STOR and STOU.

use std::fs::File;
use std::io::{Seek, Write};

use cap_std::fs::Dir;

use super::StorageError;
use crate::storage::SyncPolicy;

/// Prefix of the temporary files that hold a STOR upload until it is committed.
const TEMP_PREFIX: &str = ".ferroftp-upload.";
/// Suffix of those temporary files.
const TEMP_SUFFIX: &str = ".part";

/// Whether `name` is in the namespace of in-progress upload temp files
/// (`.ferroftp-upload.*`): hidden from listings and refused as a path segment.
pub fn is_internal_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// A fresh random temp file name, `.ferroftp-upload.<32 hex digits>.part`.
pub(super) fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:032x}{TEMP_SUFFIX}", rand::random::<u128>())
}

/// How an in-place upload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InPlaceMode {
    /// O_APPEND: every write lands at the end.
    Append,
    /// Positioned writes from `start` (REST + STOR, STOU).
    At,
}

#[derive(Debug)]
enum State {
    /// Writing to `temp` in `dir`; commit renames it to `target` in the same `dir`.
    Temp {
        dir: Dir,
        temp: String,
        target: String,
    },
    /// Writing straight to the target from `start`; `original_len` is its length before
    /// (`None`: this upload created it).
    InPlace {
        mode: InPlaceMode,
        start: u64,
        original_len: Option<u64>,
    },
    /// Committed (or its temp already cleaned up).
    Done,
}

/// The file that a committed upload replaced, still open. Freeing the blocks and cached pages
/// of a big file takes a while (about 0.1 s per 512 MiB on ext4); it happens when the last
/// handle goes, which would be inside the rename. Holding this moves it to when it is dropped,
/// so that the caller can answer the client first. Holds nothing when nothing was replaced.
#[derive(Debug, Default)]
#[must_use = "dropping it frees the replaced file's blocks now: drop it where that may take time"]
pub struct Replaced(Option<std::os::fd::OwnedFd>);

impl Replaced {
    /// The replaced file's inode number, while it is held.
    #[cfg(test)]
    pub(crate) fn inode(&self) -> Option<u64> {
        let fd = self.0.as_ref()?;
        rustix::fs::fstat(fd).ok().map(|st| st.st_ino)
    }
}

/// An upload in progress. Write to [`LocalUpload::file`], then [`LocalUpload::commit`]; dropping it
/// without committing aborts (see the module documentation for what stays on disk).
#[derive(Debug)]
pub struct LocalUpload {
    file: File,
    state: State,
    /// Whether committing changes a file that existed before (so it must reach the disk
    /// before the client is told, or a crash could cost the old content).
    replaces: bool,
    /// Bytes received but not yet written, see [`LocalUpload::defer_write`].
    unwritten: Vec<u8>,
}

impl LocalUpload {
    pub(super) fn temp(file: File, dir: Dir, temp: String, target: String, replaces: bool) -> Self {
        LocalUpload {
            file,
            state: State::Temp { dir, temp, target },
            replaces,
            unwritten: Vec::new(),
        }
    }

    pub(super) fn in_place(
        file: File,
        mode: InPlaceMode,
        start: u64,
        original_len: Option<u64>,
    ) -> Self {
        LocalUpload {
            file,
            state: State::InPlace {
                mode,
                start,
                original_len,
            },
            replaces: original_len.is_some(),
            unwritten: Vec::new(),
        }
    }

    /// Where the data written so far ends, for a positioned in-place upload.
    fn written_end(&mut self) -> Option<u64> {
        match self.state {
            State::InPlace {
                mode: InPlaceMode::At,
                ..
            } => self.file.stream_position().ok(),
            _ => None,
        }
    }

    /// Undo an in-place upload as far as possible (for data that cannot be trusted, such as a
    /// TLS upload cut off without close_notify). Appended bytes, and bytes written past the old
    /// end, are removed; bytes that overwrote old content cannot be restored, so the file then
    /// ends where the new data ends. Returns whether the file is as it was.
    pub fn roll_back(mut self) -> bool {
        let State::InPlace {
            mode,
            start,
            original_len,
        } = self.state
        else {
            // Temp-file uploads are undone by dropping them.
            return true;
        };
        self.state = State::Done;
        // Untrusted bytes that never reached the file need no undoing.
        self.unwritten = Vec::new();
        let restored = match (mode, original_len) {
            (_, None) => self.file.set_len(0).is_ok(),
            (InPlaceMode::Append, Some(len)) => self.file.set_len(len).is_ok(),
            (InPlaceMode::At, Some(len)) => {
                let end = self.file.stream_position().unwrap_or(start);
                if start >= len || end == start {
                    self.file.set_len(len).is_ok()
                } else {
                    let _ = self.file.set_len(end);
                    false
                }
            }
        };
        let _ = self.file.sync_data();
        restored
    }

    /// Hands over the last bytes of the upload, to be written at the file's position by
    /// [`LocalUpload::commit_with`] (or, for an in-place upload, when it is abandoned, like the bytes
    /// before them) instead of now: the caller already makes a blocking call for the commit,
    /// and a small upload then costs one trip to the blocking pool instead of two.
    /// [`LocalUpload::roll_back`] drops them.
    pub fn defer_write(&mut self, bytes: Vec<u8>) {
        self.unwritten.extend_from_slice(&bytes);
        if self.unwritten.len() == bytes.len() {
            // Nothing was queued before: keep the caller's buffer rather than the copy.
            self.unwritten = bytes;
        }
    }

    /// Writes the bytes queued by [`LocalUpload::defer_write`] now (commit does it too), so that the
    /// caller can tell a failed write of the data from a failed commit.
    pub fn write_deferred(&mut self) -> std::io::Result<()> {
        self.write_unwritten()
    }

    fn write_unwritten(&mut self) -> std::io::Result<()> {
        let bytes = std::mem::take(&mut self.unwritten);
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(&bytes)
    }

    /// The file to write the uploaded bytes to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// An independent handle to the same open file (a `dup`: it shares the file offset), e.g.
    /// to convert into a `tokio::fs::File`. `None` only if the descriptor cannot be duplicated.
    ///
    /// Flush any async wrapper before [`LocalUpload::commit`]; the upload keeps its own handle,
    /// so giving the file back with [`LocalUpload::put_file`] is optional.
    pub fn take_file(&mut self) -> Option<File> {
        self.file.try_clone().ok()
    }

    /// Hands back a handle obtained from [`LocalUpload::take_file`] (it is closed; the upload's own
    /// handle refers to the same open file).
    pub fn put_file(&mut self, f: File) {
        drop(f);
    }

    /// Completes the upload: syncs the data, and for [`WriteMode::Replace`](crate::storage::WriteMode::Replace) atomically renames
    /// the temp file over the target. On error the target is unchanged (Replace) and the temp
    /// file is removed.
    pub fn commit(self) -> Result<(), StorageError> {
        self.commit_with(SyncPolicy::Always).map(drop)
    }

    /// Whether [`LocalUpload::commit_with`] with `policy` flushes the file to disk (so that writing
    /// it can start its writeback early).
    pub fn will_sync(&self, policy: SyncPolicy) -> bool {
        match policy {
            SyncPolicy::Always => true,
            SyncPolicy::Replacements => self.replaces,
            SyncPolicy::Never => false,
        }
    }

    /// Whether the data should start going to disk while it arrives: when the commit will sync
    /// it, and when the commit renames it over an existing file even unsynced, because ext4
    /// (`auto_da_alloc`) then writes the new data back inside the rename itself, which would
    /// hold the 226 for the whole file instead of its tail.
    pub fn writes_back_early(&self, policy: SyncPolicy) -> bool {
        self.will_sync(policy) || (self.replaces && matches!(self.state, State::Temp { .. }))
    }

    /// [`LocalUpload::commit`], flushing to disk as `policy` says. Gives back the file it replaced,
    /// if any, still open: see [`Replaced`].
    pub fn commit_with(mut self, policy: SyncPolicy) -> Result<Replaced, StorageError> {
        let sync = self.will_sync(policy);
        self.write_unwritten()?;
        // REST + STOR replaces everything from the offset: the old tail goes.
        if let Some(end) = self.written_end() {
            self.file.set_len(end)?;
        }
        self.state_done_if_in_place();
        if sync {
            self.file.sync_data()?;
        }
        let mut replaced = Replaced::default();
        if let State::Temp { dir, temp, target } = std::mem::replace(&mut self.state, State::Done) {
            if self.replaces {
                // `target` is one name in `dir`, and NOFOLLOW keeps a link from being followed.
                use rustix::fs::{Mode, OFlags};
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                replaced.0 = rustix::fs::openat(&dir, target.as_str(), flags, Mode::empty()).ok();
            }
            if let Err(err) = dir.rename(&temp, &dir, &target) {
                // Best effort: nothing more can be done about a temp file that will not go.
                let _ = dir.remove_file(&temp);
                return Err(err.into());
            }
            // Persist the rename itself. Best effort: some file systems refuse to fsync a
            // directory, and the data is already safe either way.
            // (`dir` is an O_PATH handle, which cannot be synced, so open the directory itself.)
            if sync {
                if let Ok(d) = dir.open(".") {
                    let _ = d.sync_all();
                }
            }
        }
        Ok(replaced)
    }

    fn state_done_if_in_place(&mut self) {
        if matches!(self.state, State::InPlace { .. }) {
            self.state = State::Done;
        }
    }

    /// Abandons the upload; the same as dropping it.
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if matches!(self.state, State::InPlace { .. }) {
            // An abandoned in-place upload keeps what arrived (ready to resume), the deferred
            // bytes included. Best effort, like the rest of an abort.
            let _ = self.write_unwritten();
        }
        match &self.state {
            State::Temp { dir, temp, .. } => {
                // Best effort: a leftover temp file is hidden from listings and holds no
                // one's data.
                let _ = dir.remove_file(temp);
            }
            State::InPlace {
                mode: InPlaceMode::At,
                start,
                ..
            } => {
                // Interrupted REST + STOR: keep what arrived, ready to resume, and cut the old
                // tail after it, so the file never mixes new and old bytes. If nothing arrived,
                // the file is left exactly as it was.
                let start = *start;
                if let Ok(end) = self.file.stream_position() {
                    if end > start {
                        let _ = self.file.set_len(end);
                    }
                }
            }
            State::InPlace { .. } | State::Done => {}
        }
    }
}
