//! Writing a users file safely: one writer at a time (in this process and across ferroftp
//! processes), an atomic rewrite, and the file's owner, group and mode kept.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serialises this process's edits of users files (the server's hash upgrades may run at
/// once), so that none is lost to another's read-modify-write.
pub(super) static EDIT_LOCK: Mutex<()> = Mutex::new(());

/// An exclusive advisory lock (flock) on the directory of `file`, held until dropped: other
/// ferroftp processes editing a users file there (`passwd` while the server upgrades a hash)
/// wait for it, so that neither undoes the other's change. The directory, not the file, since
/// each edit replaces the file by renaming a new one over it. Best effort: `None` where the
/// directory cannot be opened or locked.
pub(super) fn lock_directory(file: &Path) -> Option<fs::File> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let handle = fs::File::open(dir).ok()?;
    #[cfg(unix)]
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(handle)
}

/// `path`, or the file it links to if it is a symlink that resolves.
pub(super) fn resolve_symlink(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

/// Write `text` to `path` atomically: a temporary file in the same directory, fsync, rename.
///
/// The new file keeps the owner, group and mode of the file it replaces (`passwd` run as root
/// must not turn a `ferroftp:ferroftp 0640` file into `root:root 0600` the service cannot read).
/// A new file is mode 0o600 and belongs to the directory's owner and group, so that root
/// creating it in the service's state directory leaves it readable by the service.
pub(super) fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    keep_ownership(file.as_file(), path, dir)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // Make the rename durable; not all platforms or file systems support syncing a directory.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Give the temporary `file` that will replace `path` the owner, group and permission bits of
/// `path`, less any access for others. A new file takes the owner and group of `dir`, and the
/// mode [`new_file_mode`] gives: 0o640 when the writer owns `dir` and shares it with exactly a
/// group that is not the writer's own (`sudo ferroftp passwd` in `root:ferroftp 0750
/// /etc/ferroftp`: the service reads through that group), else 0o600 (`ferroftp:ferroftp
/// 0750`: the owner is the reader). Others never get access.
///
/// Only root may give a file away: an unprivileged writer (the server upgrading a hash) keeps
/// the group if it is one of its own, and otherwise becomes the owner of the new file, which
/// is the user that had to be able to read it anyway. The mode is always kept.
#[cfg(unix)]
fn keep_ownership(file: &fs::File, path: &Path, dir: &Path) -> io::Result<()> {
    use rustix::fs::{Gid, Uid, fchown};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (mode, owner) = match fs::metadata(path) {
        // Never access for others: the file holds password hashes.
        Ok(meta) => (meta.mode() & 0o770, Some((meta.uid(), meta.gid()))),
        Err(_) => match fs::metadata(dir) {
            Ok(meta) => {
                let writer = (
                    rustix::process::geteuid().as_raw(),
                    rustix::process::getegid().as_raw(),
                );
                let mode = new_file_mode(meta.mode(), (meta.uid(), meta.gid()), writer);
                (mode, Some((meta.uid(), meta.gid())))
            }
            Err(_) => (0o600, None),
        },
    };
    if let Some((uid, gid)) = owner {
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        if fchown(file, Some(uid), Some(gid)).is_err() {
            let _ = fchown(file, None, Some(gid));
        }
    }
    // After chown, which may clear set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// The mode of a new users file in a directory of mode `dir_mode` owned by `dir_owner` (uid,
/// gid), written by `writer` (effective uid, gid): 0o640 when the writer owns the directory,
/// the directory gives its group read and search and others nothing, and that group is not the
/// writer's own (so it is there for someone else, the service, to read through); else 0o600.
#[cfg(unix)]
pub(super) fn new_file_mode(dir_mode: u32, dir_owner: (u32, u32), writer: (u32, u32)) -> u32 {
    let shared_with_its_group = dir_mode & 0o057 == 0o050;
    if shared_with_its_group && dir_owner.0 == writer.0 && dir_owner.1 != writer.1 {
        0o640
    } else {
        0o600
    }
}
