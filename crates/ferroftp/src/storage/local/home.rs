//! Homes of the local back-end: opened once and shared, created when missing, and the
//! [`LocalBackend`] that the server opens them with.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use cap_std::fs::{Dir, Permissions};
use tracing::{info, warn};

use super::LocalFs;
use crate::storage::{Storage, StorageBackend, StorageError};

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

/// The local file system as the server's [`StorageBackend`] (the default): each user's home is
/// a directory, created when missing below the root and shared between the sessions of a user.
#[derive(Debug, Default)]
pub struct LocalBackend {
    homes: HomeCache,
}

impl StorageBackend for LocalBackend {
    fn open_home(
        &self,
        user: &str,
        home: &Path,
        root: &Path,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        if let Some(fs) = self.homes.cached(home) {
            return Ok(fs);
        }
        // A user added by passwd, import-users or the admin API has no home yet.
        match create_missing_home(root, home) {
            Ok(true) => {
                info!(%user, home = %home.display(), "created the missing home directory (mode 0750)");
            }
            Ok(false) => {}
            Err(e) => {
                warn!(%user, home = %home.display(), error = %e, "cannot create the missing home directory");
            }
        }
        Ok(self.homes.open(home)?)
    }
}
