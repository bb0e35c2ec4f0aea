//! `ferroftp user ...`: list, show, change, disable, enable or delete users.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ferroftp::policy::TlsPolicy;
use ferroftp::users::{self, HashParams, UserDb, UserDirectory, UsersFile};

use crate::homes::{HomeCheckArgs, check_new_homes, home_note, reload_note};

#[derive(Subcommand, Debug)]
pub(crate) enum UserCmd {
    /// List the users: name, home, permissions, TLS policy, hash scheme, disabled.
    List(UsersFileArg),
    /// Show one user (never the password hash).
    Show(UserNameArgs),
    /// Change a user: home, permissions, TLS policy, or (--password) the password, read from
    /// the terminal or stdin as passwd does.
    Set(UserSetArgs),
    /// Disable a user: it cannot log in; a running server logs its sessions out at the next
    /// reload.
    Disable(UserNameArgs),
    /// Enable a disabled user.
    Enable(UserNameArgs),
    /// Delete a user from the users file; a running server logs its sessions out at the next
    /// reload.
    Delete(UserNameArgs),
}

#[derive(Args, Debug)]
pub(crate) struct UsersFileArg {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct UserNameArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["home", "permissions", "tls_policy", "password"])))]
pub(crate) struct UserSetArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user name.
    name: String,
    /// The home directory: relative to the server root, which it must not climb out of; or
    /// absolute, under the root unless auth.allow_homes_outside_root = true. Checked against
    /// the configuration (-c); without one, an absolute home needs --allow-home-outside-root.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(flatten)]
    check: HomeCheckArgs,
    /// What the user may do: all, none, or names separated by commas from list, read, write,
    /// append, delete, rename, mkdir, rmdir.
    #[arg(long, value_name = "LIST")]
    permissions: Option<ferroftp::policy::Permissions>,
    /// How much TLS the user must use.
    #[arg(long, value_name = "POLICY")]
    tls_policy: Option<TlsPolicyArg>,
    /// Set a new password, read from the terminal (twice) or one line of stdin.
    #[arg(long)]
    password: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TlsPolicyArg {
    /// TLS if the client asks for it.
    Optional,
    /// USER and PASS only over TLS.
    Login,
    /// Login over TLS, and every data connection protected (PROT P).
    LoginAndData,
}

impl From<TlsPolicyArg> for TlsPolicy {
    fn from(p: TlsPolicyArg) -> Self {
        match p {
            TlsPolicyArg::Optional => TlsPolicy::Optional,
            TlsPolicyArg::Login => TlsPolicy::Login,
            TlsPolicyArg::LoginAndData => TlsPolicy::LoginAndData,
        }
    }
}

/// `ferroftp user ...`.
pub(crate) fn user(cmd: UserCmd) -> anyhow::Result<()> {
    use users::UserChange;
    let (users, name, change) = match cmd {
        UserCmd::List(args) => {
            let mut users = UsersFile::new(&args.users, UserDb::load(&args.users)?).list()?;
            users.sort_by(|a, b| a.name.cmp(&b.name));
            println!("NAME\tHOME\tPERMISSIONS\tTLS\tHASH\tDISABLED");
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    u.name,
                    u.home
                        .as_ref()
                        .map_or_else(|| "(root)".into(), |h| h.display().to_string()),
                    u.permissions,
                    u.tls_policy.as_str(),
                    u.hash_scheme().map_or("?", |s| s.name()),
                    if u.disabled { "yes" } else { "no" },
                );
            }
            return Ok(());
        }
        UserCmd::Show(args) => {
            let u = UsersFile::new(&args.users, UserDb::load(&args.users)?)
                .get(&args.name)
                .with_context(|| format!("no user {:?} in {}", args.name, args.users.display()))?;
            println!("name:        {}", u.name);
            println!(
                "home:        {}",
                u.home
                    .as_ref()
                    .map_or_else(|| "(the server root)".into(), |h| h.display().to_string())
            );
            println!("permissions: {}", u.permissions);
            println!("tls_policy:  {}", u.tls_policy.as_str());
            println!("hash:        {}", u.hash_scheme().map_or("?", |s| s.name()));
            println!("disabled:    {}", u.disabled);
            println!("client certificates: {}", u.client_certs.len());
            return Ok(());
        }
        UserCmd::Delete(args) => {
            UsersFile::for_editing(&args.users).delete(&args.name)?;
            eprintln!(
                "ferroftp: user {} deleted from {}",
                args.name,
                args.users.display()
            );
            reload_note();
            return Ok(());
        }
        UserCmd::Disable(args) => (args.users, args.name, (Some(true), None)),
        UserCmd::Enable(args) => (args.users, args.name, (Some(false), None)),
        UserCmd::Set(args) => {
            check_new_homes(&args.check, &[(&args.name, args.home.as_deref())])?;
            (
                args.users,
                args.name,
                (
                    None,
                    Some((args.home, args.permissions, args.tls_policy, args.password)),
                ),
            )
        }
    };
    let (disabled, set) = change;
    let (home, permissions, tls_policy, password) = set.unwrap_or((None, None, None, false));
    let hash = if password {
        if std::io::stdin().is_terminal() {
            eprintln!("New password for {name}:");
        }
        Some(users::hash_password(
            &users::read_new_password()?,
            HashParams::default(),
        )?)
    } else {
        None
    };
    let change = UserChange {
        password_hash: hash.as_deref(),
        home: home.as_deref(),
        permissions,
        disabled,
        tls_policy: tls_policy.map(TlsPolicy::from),
    };
    UsersFile::for_editing(&users).update(&name, &change)?;
    let what = match disabled {
        Some(true) => "disabled",
        Some(false) => "enabled",
        None => "changed",
    };
    eprintln!("ferroftp: user {name} {what} in {}", users.display());
    home_note(&name, home.as_deref());
    reload_note();
    Ok(())
}
