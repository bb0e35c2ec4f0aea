//! Uploads in progress: temp-file-and-rename for STOR, in place for APPE, REST+STOR and STOU.

use std::fs::File;

use cap_std::fs::Dir;

use super::StorageError;

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

/// How an upload treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: write to a temp file, atomically replace the target on commit.
    Replace,
    /// APPE: append to the target in place (created if missing).
    Append,
    /// REST + STOR: truncate the target to the offset and write from there, in place.
    At(u64),
}

#[derive(Debug)]
enum State {
    /// Writing to `temp` in `dir`; commit renames it to `target` in the same `dir`.
    Temp {
        dir: Dir,
        temp: String,
        target: String,
    },
    /// Writing straight to the target; nothing to undo.
    InPlace,
    /// Committed (or its temp already cleaned up).
    Done,
}

/// An upload in progress. Write to [`Upload::file`], then [`Upload::commit`]; dropping it
/// without committing aborts (see the module documentation for what stays on disk).
#[derive(Debug)]
pub struct Upload {
    file: File,
    state: State,
}

impl Upload {
    pub(super) fn temp(file: File, dir: Dir, temp: String, target: String) -> Self {
        Upload {
            file,
            state: State::Temp { dir, temp, target },
        }
    }

    pub(super) fn in_place(file: File) -> Self {
        Upload {
            file,
            state: State::InPlace,
        }
    }

    /// The file to write the uploaded bytes to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// An independent handle to the same open file (a `dup`: it shares the file offset), e.g.
    /// to convert into a `tokio::fs::File`. `None` only if the descriptor cannot be duplicated.
    ///
    /// Flush any async wrapper before [`Upload::commit`]; the upload keeps its own handle,
    /// so giving the file back with [`Upload::put_file`] is optional.
    pub fn take_file(&mut self) -> Option<File> {
        self.file.try_clone().ok()
    }

    /// Hands back a handle obtained from [`Upload::take_file`] (it is closed; the upload's own
    /// handle refers to the same open file).
    pub fn put_file(&mut self, f: File) {
        drop(f);
    }

    /// Completes the upload: syncs the data, and for [`WriteMode::Replace`] atomically renames
    /// the temp file over the target. On error the target is unchanged (Replace) and the temp
    /// file is removed.
    pub fn commit(mut self) -> Result<(), StorageError> {
        self.file.sync_data()?;
        if let State::Temp { dir, temp, target } = std::mem::replace(&mut self.state, State::Done) {
            if let Err(err) = dir.rename(&temp, &dir, &target) {
                // Best effort: nothing more can be done about a temp file that will not go.
                let _ = dir.remove_file(&temp);
                return Err(err.into());
            }
            // Persist the rename itself. Best effort: some file systems refuse to fsync a
            // directory, and the data is already safe either way.
            // (`dir` is an O_PATH handle, which cannot be synced, so open the directory itself.)
            if let Ok(d) = dir.open(".") {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Abandons the upload; the same as dropping it.
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let State::Temp { dir, temp, .. } = &self.state {
            // Best effort: a leftover temp file is hidden from listings and holds no one's data.
            let _ = dir.remove_file(temp);
        }
    }
}
