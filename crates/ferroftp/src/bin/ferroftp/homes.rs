//! The check of a home before `passwd`, `user set` or `import-users` writes it, and the notes
//! those commands print after a change.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use ferroftp::auth::{User, UserDb};
use ferroftp::config::Config;

/// The configuration the user commands check homes against when no `-c` is given and it
/// exists: the one the packaged service runs with.
const DEFAULT_CONFIG: &str = "/etc/ferroftp/ferroftp.toml";

/// How `passwd`, `user set` and `import-users` check a home before they write it, so that a
/// running server does not refuse the users file at its next reload.
#[derive(Args, Debug, Clone)]
pub(crate) struct HomeCheckArgs {
    /// The server's configuration file: each home written is checked against its root,
    /// auth.allow_homes_outside_root and anonymous.home, as the server checks the users file
    /// at start and reload. Default: /etc/ferroftp/ferroftp.toml if it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// With no configuration (no -c, no /etc/ferroftp/ferroftp.toml): accept an absolute home,
    /// which cannot be checked without the server's root. The server refuses it unless it is
    /// under its root or auth.allow_homes_outside_root = true.
    #[arg(long, conflicts_with = "config")]
    allow_home_outside_root: bool,
}

/// The configuration to check homes against: `-c`, else [`DEFAULT_CONFIG`] if it exists.
fn home_check_config(args: &HomeCheckArgs) -> anyhow::Result<Option<(PathBuf, Config)>> {
    let path = match &args.config {
        Some(path) => path.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(None),
    };
    let config = Config::load(&path)
        .with_context(|| format!("cannot check the homes against {}", path.display()))?;
    Ok(Some((path, config)))
}

/// Refuse, before anything is written, a home (user name, home) the server would refuse when
/// it loads the users file (at its next start or reload, which would then fail whole): checked
/// as the server checks it, against the configuration of [`home_check_config`]. Without one,
/// only a relative home (already kept under the root by the users-file edit) passes, or an
/// absolute one with `--allow-home-outside-root`. Every refused home is named.
pub(crate) fn check_new_homes(
    args: &HomeCheckArgs,
    homes: &[(&str, Option<&Path>)],
) -> anyhow::Result<()> {
    let homes: Vec<(&str, &Path)> = homes
        .iter()
        .filter_map(|(name, home)| home.map(|h| (*name, h)))
        .collect();
    if homes.is_empty() {
        return Ok(());
    }
    let mut refused = Vec::new();
    match home_check_config(args)? {
        Some((path, config)) => {
            for (name, home) in &homes {
                let mut user = User::new(*name);
                user.home = Some(home.to_path_buf());
                let users = UserDb::empty().with_user(user, String::new());
                if let Err(why) = ferroftp::server::check_user_homes(&config, &users) {
                    refused.push(why);
                }
            }
            if !refused.is_empty() {
                bail!(
                    "{}\nthe server would refuse the users file with this (checked against {}); nothing was written",
                    refused.join("\n"),
                    path.display()
                );
            }
        }
        None if args.allow_home_outside_root => {}
        None => {
            for (name, home) in homes.iter().filter(|(_, h)| h.is_absolute()) {
                refused.push(format!(
                    "user {name:?}: home {}: an absolute home can only be checked against the server's root, and there is no configuration to read it from",
                    home.display()
                ));
            }
            if !refused.is_empty() {
                bail!(
                    "{}\ngive the server's configuration with -c FILE ({DEFAULT_CONFIG} does not exist), or a home relative to the server's root, or --allow-home-outside-root if the home is under the root or the server sets auth.allow_homes_outside_root = true (the server refuses the whole users file otherwise); nothing was written",
                    refused.join("\n")
                );
            }
        }
    }
    Ok(())
}

/// What a user added or given a home by a command should know: the command cannot create
/// the home (run as root it would be root's), the server creates a missing one inside its root
/// at the first login.
pub(crate) fn home_note(name: &str, home: Option<&Path>) {
    let text = match home {
        None => return,
        Some(h) if h.is_absolute() && h.is_dir() => return,
        Some(h) if h.is_absolute() => format!(
            "home {} does not exist yet: the server creates it at {name}'s first login (mode 0750, owned by the server's user) when it is under the server's root; a home outside the root (auth.allow_homes_outside_root = true) must be created by you",
            h.display()
        ),
        Some(h) => format!(
            "home {} is relative to the server's root: if missing, the server creates it at {name}'s first login (mode 0750, owned by the server's user)",
            h.display()
        ),
    };
    eprintln!("ferroftp: note: {text}");
}

/// The reminder after a change to a users file that a running server reads at reload.
pub(crate) fn reload_note() {
    eprintln!(
        "ferroftp: a running server puts this in force at its next reload (SIGHUP, systemctl reload ferroftp, or POST /api/v1/reload)"
    );
}
