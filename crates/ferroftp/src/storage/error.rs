//! The storage error type and the mapping from OS errors to it.

use std::io;

/// Why a storage operation failed. The `Display` text is short enough for an FTP reply.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The path (or a directory on the way) does not exist.
    #[error("No such file or directory")]
    NotFound,
    /// The OS refused the operation (permissions, read-only file system, the home root...).
    #[error("Permission denied")]
    PermissionDenied,
    /// The target already exists.
    #[error("File exists")]
    AlreadyExists,
    /// A directory was required.
    #[error("Not a directory")]
    NotADirectory,
    /// A non-directory was required.
    #[error("Is a directory")]
    IsADirectory,
    /// The directory still has entries.
    #[error("Directory not empty")]
    DirectoryNotEmpty,
    /// A bad path or name (NUL, too long, too deep, `..` where a name is needed, internal name...).
    #[error("Invalid file name")]
    InvalidName,
    /// A symlink or path that would leave the home, or that cannot be resolved safely (loop).
    #[error("Path is outside the home directory")]
    Escape,
    /// ENOSPC or EDQUOT.
    #[error("No space left on device")]
    NoSpace,
    /// A regular file with more than one hard link, which an in-place change would write
    /// through to every other name of it (possibly outside the home).
    #[error("File has other hard links; it cannot be changed in place")]
    HardLinked,
    /// A restart offset before the end of the file, where only appending is allowed.
    #[error("Restart offset is before the end of the file, and writing there would overwrite")]
    WouldOverwrite,
    /// A restart offset beyond the end of the file.
    #[error("Restart offset is beyond the end of the file")]
    InvalidOffset,
    /// The back-end cannot do this at all (rename or append on an object store, say); refused
    /// before anything changed. Names the operation, e.g. `"rename"`.
    #[error("{0} is not supported by this storage")]
    Unsupported(&'static str),
    /// Any other I/O error.
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// The message cap-std puts in the error it returns for an escape attempt.
const CAP_STD_ESCAPE_MESSAGE: &str = "a path led outside of the filesystem";

/// Classifies an I/O error into the typed variants; `?` on an `io::Result` therefore never
/// produces `Io` for a condition that has its own variant.
impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> Self {
        use io::ErrorKind as K;
        // cap-std reports escapes as a PermissionDenied error without an errno.
        if err.raw_os_error().is_none()
            && err.kind() == K::PermissionDenied
            && err.to_string().contains(CAP_STD_ESCAPE_MESSAGE)
        {
            return StorageError::Escape;
        }
        match err.kind() {
            K::NotFound => return StorageError::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => return StorageError::PermissionDenied,
            K::AlreadyExists => return StorageError::AlreadyExists,
            K::NotADirectory => return StorageError::NotADirectory,
            K::IsADirectory => return StorageError::IsADirectory,
            K::DirectoryNotEmpty => return StorageError::DirectoryNotEmpty,
            K::StorageFull | K::QuotaExceeded => return StorageError::NoSpace,
            _ => {}
        }
        match err.raw_os_error() {
            // ErrorKind::FilesystemLoop and InvalidFilename are not stable yet.
            Some(libc::ELOOP) => StorageError::Escape,
            Some(libc::ENAMETOOLONG) => StorageError::InvalidName,
            _ => StorageError::Io(err),
        }
    }
}
