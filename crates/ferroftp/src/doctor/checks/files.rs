//! The files the server reads and writes: root, homes, users file, logs.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::secrets::{Recipe, secret_file_mode};
use crate::auth::{AuthError, Permission, UserDb};
use crate::config::Config;
use crate::doctor::{Check, Level, Report};

pub(super) fn files(config: &Config, r: &mut Report) {
    r.section("Files and directories");
    let root = &config.root;
    let root_ok = match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => {
            r.add(
                Check::new(
                    Level::Fail,
                    format!("root {} is not a directory", root.display()),
                )
                .fix("root (or --root) must name a directory"),
            );
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && *root == Config::default().root => {
            r.add(Check::new(
                Level::Warn,
                format!(
                    "root {} does not exist yet: serve creates this default at start",
                    root.display()
                ),
            ));
            false
        }
        Err(e) => {
            r.add(
                Check::new(Level::Fail, format!("root {}: {e}", root.display()))
                    .fix("create it (mkdir -p), or set root / --root to the directory to serve"),
            );
            false
        }
    };
    // Homes as the server computes them: from the absolute root, with `..` resolved.
    let abs_root = std::path::absolute(root).unwrap_or_else(|_| root.clone());
    let outside_ok = config.auth.allow_homes_outside_root;
    let mut homes: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut add_home = |path: PathBuf, who: String| match homes.iter_mut().find(|(p, _)| *p == path)
    {
        Some((_, names)) => names.push(who),
        None => homes.push((path, vec![who])),
    };
    match &config.users_file {
        None => r.add(
            Check::new(
                Level::Warn,
                "no users_file: serve makes one user, ferro, with a new random password at each start",
            )
            .fix("ferroftp passwd --users /var/lib/ferroftp/users.toml NAME, then users_file = that file"),
        ),
        Some(path) => {
            // UserDb::load says why the file cannot be read.
            let _ = secret_file_mode(
                path,
                "users file",
                "the password hashes (and try to crack them offline)",
                "add themselves as users",
                Recipe::ServiceOwned,
                r,
            );
            match UserDb::load(path) {
                Ok(db) => {
                    let disabled = db.users().filter(|u| u.disabled).count();
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "users file {}: {} user{} ({disabled} disabled)",
                            path.display(),
                            db.len(),
                            if db.len() == 1 { "" } else { "s" }
                        ),
                    ));
                    // What serve checks at start: homes under the root, anonymous apart.
                    if let Err(why) = crate::server::check_user_homes(config, &db) {
                        r.add(Check::new(Level::Fail, format!("{why}: serve refuses to start")).fix(
                            "give the home relative to the root (or under it), or set auth.allow_homes_outside_root = true for absolute homes elsewhere; give anonymous.home a directory of its own",
                        ));
                    }
                    // The directory the server uses, as it computes it (`a/../b` is root/b);
                    // a home it refuses was reported just above.
                    for user in db.users().filter(|u| !u.disabled) {
                        if let Ok(home) = crate::auth::resolve_home(&abs_root, user.home.as_deref(), outside_ok) {
                            add_home(home, format!("user {}", user.name));
                        }
                    }
                }
                Err(e) => {
                    let fix = if matches!(e, AuthError::Read { .. }) {
                        "check the path, and that the service's user may read the file"
                    } else {
                        "fix the users file (ferroftp passwd rewrites entries safely)"
                    };
                    r.add(Check::new(Level::Fail, format!("{e}")).fix(fix));
                }
            }
        }
    }
    if config.users_file.is_none() {
        add_home(abs_root.clone(), "the generated user".into());
    }
    if config.anonymous.enabled {
        let anon = &config.anonymous;
        if let Ok(home) = crate::auth::resolve_home(&abs_root, Some(&anon.home), outside_ok) {
            add_home(home, "anonymous".into());
        }
        let writes: Vec<&str> = anon
            .permissions
            .iter()
            .filter(|p| !matches!(p, Permission::List | Permission::Read))
            .map(|p| p.name())
            .collect();
        if !writes.is_empty() {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "anonymous logins are on and may {}: anyone can change files",
                        writes.join(", ")
                    ),
                )
                .fix("anonymous.permissions = [\"list\", \"read\"] unless this is an upload drop on purpose"),
            );
        }
    }
    for (home, who) in homes {
        if home == *root && !root_ok {
            continue;
        }
        let who = who.join(", ");
        match std::fs::metadata(&home) {
            Ok(m) if !m.is_dir() => r.add(
                Check::new(
                    Level::Fail,
                    format!("home {} ({who}) is not a directory: login is refused", home.display()),
                )
                .fix("make it a directory, or change the home (users file `home`, anonymous.home)"),
            ),
            Ok(m) if m.mode() & 0o002 != 0 => r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "home {} ({who}) is world-writable (mode {:04o}): any local user can change what is served",
                        home.display(),
                        m.mode() & 0o7777
                    ),
                )
                .fix(format!("chmod o-w {}", home.display())),
            ),
            Ok(m) => r.add(Check::new(
                Level::Ok,
                format!(
                    "home {} ({who}): directory, mode {:04o}",
                    home.display(),
                    m.mode() & 0o7777
                ),
            )),
            // Missing inside the root: the server creates it at the first login.
            Err(e) if e.kind() == io::ErrorKind::NotFound && home.starts_with(&abs_root) && home != abs_root => {
                if let Some(check) = crate::doctor::state::missing_home(&abs_root, &home, &who) {
                    r.add(check);
                }
            }
            Err(e) => r.add(
                Check::new(
                    Level::Fail,
                    format!("home {} ({who}): {e}: login is refused (530)", home.display()),
                )
                .fix(format!(
                    "mkdir -p {} (owned by the service's user), or change the home (users file `home`, anonymous.home)",
                    home.display()
                )),
            ),
        }
    }
}
