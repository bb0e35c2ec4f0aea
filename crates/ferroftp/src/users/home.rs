//! Home directories: where a user's home is, checked against the server root.

use std::fs;
use std::path::{Path, PathBuf};

use super::UserDb;

/// Check a home directory string. A relative home is resolved from the server root and must
/// stay under it, whatever the root is.
pub(super) fn check_home(home: &str) -> Result<(), &'static str> {
    if home.is_empty() {
        Err("must not be empty (leave it out for the server root)")
    } else if home.contains('\0') {
        Err("must not contain NUL characters")
    } else if normalize(Path::new(home)).is_none() {
        Err("a relative home must stay under the server root (too many `..`)")
    } else {
        Ok(())
    }
}

/// `path` with `.` and `..` taken out without looking at the disk; `None` when a relative path
/// climbs above where it starts. (`/..` is `/`, as the kernel takes it.)
fn normalize(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !path.is_absolute() {
                    return None;
                }
            }
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
        }
    }
    Some(out)
}

/// The directory a home names, checked against the server root: `None` is the root itself, a
/// relative home is taken from the root and must stay under it, and an absolute home must be
/// under the root unless `outside_ok` (`auth.allow_homes_outside_root`). A home that exists
/// is also checked after following its symbolic links, so a link cannot lead out of the
/// root either. `root` should be absolute. The error says why, for a message that names the
/// user and the key.
pub fn resolve_home(root: &Path, home: Option<&Path>, outside_ok: bool) -> Result<PathBuf, String> {
    let root = normalize(root).unwrap_or_else(|| root.to_owned());
    let Some(home) = home else {
        return Ok(root);
    };
    let relative = !home.is_absolute();
    let path = normalize(&root.join(home))
        .filter(|p| !relative || p.starts_with(&root))
        .ok_or_else(|| {
            format!(
                "{}: a relative home must stay under the server root {}",
                home.display(),
                root.display()
            )
        })?;
    if relative || outside_ok {
        if relative && !outside_ok {
            check_real_path(&root, &path)?;
        }
        return Ok(path);
    }
    if !path.starts_with(&root) {
        return Err(format!(
            "{} is outside the server root {}; homes outside the root need auth.allow_homes_outside_root = true",
            path.display(),
            root.display()
        ));
    }
    check_real_path(&root, &path)?;
    Ok(path)
}

/// Refuse a home under the root that leads out of it through a symbolic link.
fn check_real_path(root: &Path, path: &Path) -> Result<(), String> {
    if let (Ok(real), Ok(real_root)) = (fs::canonicalize(path), fs::canonicalize(root)) {
        if !real.starts_with(&real_root) {
            return Err(format!(
                "{} leads (through a symbolic link) to {}, outside the server root; homes outside the root need auth.allow_homes_outside_root = true",
                path.display(),
                real.display()
            ));
        }
    }
    Ok(())
}

/// Check the homes of `users` and of anonymous logins (`anonymous`: the configured anonymous
/// home, when anonymous logins are on) against `root`, as [`resolve_home`] does, and refuse an
/// anonymous home that is, or contains, a user's home: anonymous users could read that
/// user's files. `origin` names the users file in messages.
pub fn check_homes(
    root: &Path,
    users: &UserDb,
    anonymous: Option<&Path>,
    outside_ok: bool,
    origin: &str,
) -> Result<(), String> {
    let mut homes = Vec::with_capacity(users.len());
    for user in users.users() {
        let home = resolve_home(root, user.home.as_deref(), outside_ok)
            .map_err(|why| format!("{origin}: user {:?}: home: {why}", user.name))?;
        homes.push((user, home));
    }
    let Some(anonymous) = anonymous else {
        return Ok(());
    };
    let anon = resolve_home(root, Some(anonymous), outside_ok)
        .map_err(|why| format!("config key `anonymous.home`: {why}"))?;
    // Compared as they are on disk where they exist (symbolic links followed), else as written.
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let anon_real = real(&anon);
    for (user, home) in &homes {
        if real(home).starts_with(&anon_real) || home.starts_with(&anon) {
            return Err(format!(
                "config key `anonymous.home`: {} contains the home of user {:?} ({}), so anonymous users could read that user's files; give anonymous logins a directory of their own (the default is \"pub\" under the root)",
                anon.display(),
                user.name,
                home.display()
            ));
        }
    }
    Ok(())
}
