//! `ferroftp passwd`: add a user, or change a password.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use ferroftp::users::{self, HashParams, UserDirectory, UsersFile};

use crate::homes::{HomeCheckArgs, check_new_homes, home_note};

#[derive(Args, Debug)]
pub(crate) struct PasswdArgs {
    /// The users file to change (created if missing).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
    /// The user's home directory: relative to the server root, which it must not climb out
    /// of; or absolute, under the root unless auth.allow_homes_outside_root = true. Checked
    /// against the configuration (-c); without one, an absolute home needs
    /// --allow-home-outside-root.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// argon2id memory cost in KiB.
    #[arg(long, value_name = "KIB", default_value_t = HashParams::default().memory_kib)]
    argon2_memory: u32,
    /// argon2id iterations.
    #[arg(long, value_name = "N", default_value_t = HashParams::default().iterations)]
    argon2_iterations: u32,
}

/// `ferroftp passwd`: add the user or set its password (and home).
pub(crate) fn passwd(args: PasswdArgs) -> anyhow::Result<()> {
    // Before the password is asked for: a refused home writes nothing.
    check_new_homes(&args.check, &[(&args.name, args.home.as_deref())])?;
    if std::io::stdin().is_terminal() {
        eprintln!("New password for {}:", args.name);
    }
    let password = users::read_new_password()?;
    let params = HashParams {
        memory_kib: args.argon2_memory,
        iterations: args.argon2_iterations,
        ..HashParams::default()
    };
    let hash = users::hash_password(&password, params)?;
    let created = UsersFile::for_editing(&args.users).set_password(
        &args.name,
        &hash,
        args.home.as_deref(),
    )?;
    let what = if created { "added" } else { "updated" };
    eprintln!(
        "ferroftp: user {} {what} in {}",
        args.name,
        args.users.display()
    );
    home_note(&args.name, args.home.as_deref());
    Ok(())
}
