//! `ferroftp doctor`: what the server writes besides the FTP root, checked as the user doctor
//! runs as (run it as the service's user, as the README's recipe does, for the service's view).

use std::path::Path;

use rustix::fs::{Access, access};

use super::{Check, Level, Report};
use crate::config::Config;

/// The users file's directory must let the server's user create files when the server edits
/// the users file (a hash upgraded at login, users changed through the admin API): every edit
/// writes a temporary file there and renames it over the users file. Likewise the transfer
/// log's directory, for the file logrotate's `create` leaves and the reopen on SIGHUP.
pub(super) fn writable_state(config: &Config, r: &mut Report) {
    let uid = rustix::process::geteuid().as_raw();
    let mut writers = Vec::new();
    if config.auth.rehash_to_argon2 {
        writers.push("auth.rehash_to_argon2 (hashes upgraded at login)");
    }
    if config.admin.listen.is_some() {
        writers.push("the admin API (admin.listen) changing users");
    }
    let users_dir = config
        .users_file
        .as_deref()
        .filter(|_| !writers.is_empty())
        .map(parent);
    let log_dir = config.log.xferlog.as_deref().map(parent);
    if users_dir.is_none() && log_dir.is_none() {
        return;
    }
    r.section("Files the server writes");
    if let Some(dir) = users_dir {
        let why = format!(
            "the users file is rewritten there by {}",
            writers.join(" and ")
        );
        check_dir(dir, uid, &why, r);
    }
    if let Some(dir) = log_dir {
        check_dir(
            dir,
            uid,
            "the transfer log (log.xferlog) is created there and reopened on SIGHUP",
            r,
        );
    }
}

/// The directory of `file` (`.` for a bare name).
fn parent(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn check_dir(dir: &Path, uid: u32, why: &str, r: &mut Report) {
    match access(dir, Access::WRITE_OK | Access::EXEC_OK) {
        // Root may write anywhere: that says nothing about the service's user.
        Ok(()) if uid == 0 => r.add(Check::new(
            Level::Ok,
            format!(
                "{} is writable by root ({why}); the server writes it as its own user: run doctor as that user to check (setpriv --reuid=ferroftp --regid=ferroftp --init-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service ferroftp doctor ...)",
                dir.display()
            ),
        )),
        Ok(()) => r.add(Check::new(
            Level::Ok,
            format!("{} is writable by uid {uid}: {why}", dir.display()),
        )),
        Err(e) => r.add(
            Check::new(
                Level::Fail,
                format!(
                    "{} is not writable by uid {uid} ({}): {why}, and that fails",
                    dir.display(),
                    std::io::Error::from(e)
                ),
            )
            .fix(format!(
                "make {} owned by the service's user (chown ferroftp:ferroftp; systemd: StateDirectory=/LogsDirectory=), or turn off what writes there",
                dir.display()
            )),
        ),
    }
}

/// For a missing home: whether the server will create it at the first login (inside `root`,
/// no `..`, the nearest existing parent writable by this user); the check to report, or
/// `None` when the server will not try (the home is the administrator's to create).
pub(super) fn missing_home(root: &Path, home: &Path, who: &str) -> Option<Check> {
    crate::storage::creatable_home(root, home)?;
    let mut parent = home.parent()?;
    while !parent.exists() {
        parent = parent.parent()?;
    }
    let uid = rustix::process::geteuid().as_raw();
    Some(match access(parent, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Check::new(
            Level::Ok,
            format!(
                "home {} ({who}) does not exist yet: the server creates it at the first login (mode 0750)",
                home.display()
            ),
        ),
        Err(e) => Check::new(
            Level::Fail,
            format!(
                "home {} ({who}) does not exist, and the server (as uid {uid}) cannot create it: {} is not writable ({}): login is refused (530)",
                home.display(),
                parent.display(),
                std::io::Error::from(e)
            ),
        )
        .fix(format!(
            "mkdir -p {} and chown it to the service's user",
            home.display()
        )),
    })
}
