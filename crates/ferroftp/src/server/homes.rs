//! Home directories checked against the root (and the anonymous home), at start, at each
//! reload, and by the commands that write a users file; the default anonymous home made.

use std::path::PathBuf;

use crate::config::Config;
use crate::users::UserDb;

/// Check the homes of `users` (and that no anonymous home holds one) against the root of
/// `config`, as loading them would: what the user commands (`passwd`, `user set`,
/// `import-users`) check before they write a users file. The error names the user, the
/// home and the key `auth.allow_homes_outside_root`.
pub fn check_user_homes(config: &Config, users: &UserDb) -> Result<(), String> {
    let root = std::path::absolute(&config.root).map_err(|e| format!("root: {e}"))?;
    check_homes_under(config, &root, users)
}

/// [`check_user_homes`] with the root already made absolute.
fn check_homes_under(
    config: &Config,
    root: &std::path::Path,
    users: &UserDb,
) -> Result<(), String> {
    let origin = config.users_file.as_ref().map_or_else(
        || "users".to_owned(),
        |p| format!("users file {}", p.display()),
    );
    let anon = &config.anonymous;
    crate::users::check_homes(
        root,
        users,
        anon.enabled.then_some(anon.home.as_path()),
        config.auth.allow_homes_outside_root,
        &origin,
    )
}

/// Everything [`Server::bind`](super::Server::bind) and a reload check about homes, creating nothing: the homes of
/// `users` and of anonymous logins against the root, and that the anonymous home is a
/// directory (or is the default one, missing, which the server makes). `check-config` runs
/// it so that a file it calls valid is one `serve` accepts. Returns the anonymous home to
/// create, if any.
pub fn check_homes(config: &Config, users: &UserDb) -> Result<Option<PathBuf>, String> {
    let root = std::path::absolute(&config.root).map_err(|e| format!("root: {e}"))?;
    check_homes_under(config, &root, users)?;
    let anon = &config.anonymous;
    if !anon.enabled {
        return Ok(None);
    }
    let home = crate::users::resolve_home(
        &root,
        Some(&anon.home),
        config.auth.allow_homes_outside_root,
    )
    .map_err(|why| format!("config key `anonymous.home`: {why}"))?;
    if home.is_dir() {
        return Ok(None);
    }
    if anon.home == std::path::Path::new(crate::config::DEFAULT_ANONYMOUS_HOME) && !home.exists() {
        return Ok(Some(home));
    }
    Err(format!(
        "config key `anonymous.home`: {} is not a directory; create it, or leave the key out for \"pub\" under the root",
        home.display()
    ))
}

/// [`check_homes`] before homes are put in force, at start and at each reload; the default
/// anonymous home is made when missing.
pub(super) fn prepare_homes(config: &Config, users: &UserDb) -> Result<(), String> {
    if let Some(home) = check_homes(config, users)? {
        crate::storage::local::create_dir(&home).map_err(|e| {
            format!(
                "cannot create the anonymous home {} (anonymous.home): {e}",
                home.display()
            )
        })?;
        tracing::info!(home = %home.display(), "created the anonymous home");
    }
    Ok(())
}
