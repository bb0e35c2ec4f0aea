//! Uploads into the local file system: where each [`WriteMode`] writes (see the module
//! documentation of [`super`] for what an interrupted upload leaves).

use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt as _;

use cap_std::fs::{MetadataExt, OpenOptions};

use super::upload::{self, InPlaceMode, LocalUpload, is_internal_name};
use super::{
    LocalFs, UNIQUE_NUMBERED_TRIES, UNIQUE_RANDOM_TRIES, check_in_place_file, check_not_internal,
    check_regular,
};
use crate::storage::vpath::is_valid_segment;
use crate::storage::{EntryKind, StorageError, VPath, WriteMode};

impl LocalFs {
    /// Starts an upload to `p`; see [`WriteMode`] and the module documentation.
    ///
    /// The parent directory must exist ([`StorageError::NotFound`] otherwise); a directory at
    /// `p` gives [`StorageError::IsADirectory`]; [`WriteMode::At`] beyond the end of the file
    /// (or past 0 on a missing file) gives [`StorageError::InvalidOffset`].
    pub fn create_upload(&self, p: &VPath, mode: WriteMode) -> Result<LocalUpload, StorageError> {
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
                Ok(LocalUpload::in_place(
                    file,
                    InPlaceMode::Append,
                    len,
                    Some(len),
                ))
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
                    std::cmp::Ordering::Equal => Ok(LocalUpload::in_place(
                        file,
                        InPlaceMode::Append,
                        len,
                        Some(len),
                    )),
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
                Ok(LocalUpload::in_place(
                    file,
                    InPlaceMode::At,
                    offset,
                    Some(len),
                ))
            }
        }
    }

    /// STOR: a temp file next to the target, renamed over it on commit.
    fn create_replace(
        &self,
        p: &VPath,
        parent: &VPath,
        name: &str,
    ) -> Result<LocalUpload, StorageError> {
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
        let mut upload = LocalUpload::temp(file, dir, temp, name.to_owned(), replaces);
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
    pub fn create_unique(
        &self,
        dir: &VPath,
        hint: &str,
    ) -> Result<(VPath, LocalUpload), StorageError> {
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
                    let upload = LocalUpload::in_place(file.into_std(), InPlaceMode::At, 0, None);
                    return Ok((path, upload));
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(StorageError::AlreadyExists)
    }
}
