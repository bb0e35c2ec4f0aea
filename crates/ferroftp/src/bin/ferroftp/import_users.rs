//! `ferroftp import-users`: accounts from ProFTPD, Pure-FTPd or the system, hashes and homes
//! kept.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use ferroftp::users::UsersFile;

use crate::homes::{HomeCheckArgs, check_new_homes};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["proftpd", "pureftpd", "system"])))]
pub(crate) struct ImportArgs {
    /// The users file to add the accounts to (created if missing); accounts already in it are
    /// updated (password, home, disabled), everything else in it is kept.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// Read a ProFTPD AuthUserFile (user:hash:uid:gid:gecos:home:shell).
    #[arg(long, value_name = "AUTHUSERFILE")]
    proftpd: Option<PathBuf>,
    /// Read a Pure-FTPd pureftpd.passwd (as pure-pw writes it).
    #[arg(long, value_name = "PUREFTPD.PASSWD")]
    pureftpd: Option<PathBuf>,
    /// Read the system's accounts: homes from --passwd, hashes from --shadow. Only the users
    /// named on the command line.
    #[arg(long)]
    system: bool,
    /// The passwd file for --system.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/passwd",
        requires = "system"
    )]
    passwd: PathBuf,
    /// The shadow file for --system.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/shadow",
        requires = "system"
    )]
    shadow: PathBuf,
    /// Put each home at DIR/NAME instead of the home the source file gives (for data moved
    /// to a new place). DIR may be relative to the server root, which it must not climb out
    /// of. Every home is checked (-c) before anything is written.
    #[arg(long, value_name = "DIR")]
    home_root: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// Import only these users (required with --system); without names, every account of the
    /// file.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

/// `ferroftp import-users`: read the accounts, write those that can be imported in one atomic
/// edit of the users file, and report on each (never a hash). Fails (after writing the others)
/// when an account asked for, or found in the file, could not be imported.
pub(crate) fn import_users(args: ImportArgs) -> anyhow::Result<()> {
    use ferroftp::import::{self, Options, Source};
    let source = match (args.proftpd, args.pureftpd) {
        (Some(path), _) => Source::ProFtpd(path),
        (None, Some(path)) => Source::PureFtpd(path),
        (None, None) => Source::System {
            passwd: args.passwd,
            shadow: args.shadow,
        },
    };
    let found = import::read_accounts(
        &source,
        Options {
            names: &args.names,
            home_root: args.home_root.as_deref(),
        },
    )?;
    let homes: Vec<(&str, Option<&Path>)> = found
        .accounts
        .iter()
        .map(|a| (a.name.as_str(), Some(a.home.as_path())))
        .collect();
    check_new_homes(&args.check, &homes)?;
    let created = found.write_to(&UsersFile::for_editing(&args.users))?;
    for (account, created) in found.accounts.iter().zip(&created) {
        println!(
            "{}: {} ({}, home {}{})",
            account.name,
            if *created { "added" } else { "updated" },
            account.scheme,
            account.home.display(),
            if account.disabled { ", disabled" } else { "" },
        );
        for note in &account.notes {
            println!("{}:   {note}", account.name);
        }
    }
    for skipped in &found.skipped {
        println!("{}: skipped: {}", skipped.name, skipped.reason);
    }
    let added = created.iter().filter(|c| **c).count();
    eprintln!(
        "ferroftp: {} -> {}: {added} added, {} updated, {} skipped",
        source.path().display(),
        args.users.display(),
        created.len() - added,
        found.skipped.len()
    );
    if !created.is_empty() {
        eprintln!(
            "ferroftp: note: missing homes under the server's root are created at each user's first login (mode 0750, owned by the server's user); homes outside it (only with auth.allow_homes_outside_root = true) must be created by you"
        );
        eprintln!(
            "ferroftp: the imported users log in with their old passwords; with \
             auth.rehash_to_argon2 (on by default) each hash becomes argon2id at the user's next login"
        );
    }
    if !found.skipped.is_empty() {
        bail!(
            "{} account(s) not imported (see above)",
            found.skipped.len()
        );
    }
    if created.is_empty() {
        bail!("no accounts found in {}", source.path().display());
    }
    Ok(())
}
