//! Replies and small rules used by several command groups. `feat_reply`, `help_reply` and
//! `allowed_before_login` (proto's verb table takes them over) and `fs_reply` and
//! `storage_failure_reply` (storage's) moved here verbatim from `server/session.rs`.

use ferroftp_proto::command::VERBS;
use ferroftp_proto::listing::{Facts, FileKind};
use ferroftp_proto::{Command, MlstFacts, Reply};
use tracing::warn;

use crate::auth::{Permission, Permissions};
use crate::config::ListenerMode;
use crate::storage::{Entry, EntryKind, StorageError};

/// Whether `cmd` may run before login (session set-up, not file access).
pub fn allowed_before_login(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::User(_)
            | Command::Pass(_)
            | Command::Acct(_)
            | Command::Quit
            | Command::Rein
            | Command::Feat
            | Command::Syst
            | Command::Help(_)
            | Command::Noop
            | Command::Opts(_)
            | Command::Auth(_)
            | Command::Pbsz(_)
            | Command::Prot(_)
            | Command::Ccc
            | Command::Stat(None)
            | Command::Abor
    )
}

/// Refuses a path argument with a CR or LF in it (501): such a name would travel raw in NLST
/// and in replies, where a line end forges the lines after it.
pub(crate) fn check_line_ends(arg: &str) -> Result<(), Reply> {
    if arg.contains(['\r', '\n']) {
        return Err(Reply::new(
            501,
            "Path names may not contain CR or LF characters",
        ));
    }
    Ok(())
}

pub(crate) fn facts<'a>(e: &'a Entry, perm: &'a str) -> Facts<'a> {
    Facts {
        name: &e.name,
        kind: match e.kind {
            EntryKind::File => FileKind::File,
            EntryKind::Dir => FileKind::Dir,
            EntryKind::Symlink => FileKind::Symlink,
            EntryKind::Other => FileKind::Other,
        },
        size: e.size,
        modified: e.modified,
        mode: e.mode,
        nlink: e.nlink,
        perm,
    }
}

/// The RFC 3659 `perm` fact: what this user may do with an entry.
pub(crate) fn perm_fact(perms: Permissions, kind: EntryKind) -> String {
    use Permission::*;
    let letters: &[(Permission, char)] = if kind == EntryKind::Dir {
        &[
            (List, 'l'),
            (Write, 'c'),
            (Mkdir, 'm'),
            (Delete, 'p'),
            (Rmdir, 'd'),
            (Rename, 'f'),
        ]
    } else {
        &[
            (Read, 'r'),
            (Write, 'w'),
            (Append, 'a'),
            (Delete, 'd'),
            (Rename, 'f'),
        ]
    };
    // Entering a directory (CWD) needs no permission.
    let enter = (kind == EntryKind::Dir).then_some('e');
    enter
        .into_iter()
        .chain(
            letters
                .iter()
                .filter(|(p, _)| perms.has(*p))
                .map(|&(_, c)| c),
        )
        .collect()
}

pub(crate) fn is_anonymous_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

pub(crate) fn permission_verb(p: Permission) -> &'static str {
    match p {
        Permission::List => "list directories",
        Permission::Read => "download files",
        Permission::Write => "upload or change files",
        Permission::Append => "append to or resume files",
        Permission::Delete => "delete files",
        Permission::Rename => "rename",
        Permission::Mkdir => "create directories",
        Permission::Rmdir => "remove directories",
    }
}

/// The reply for a failed file operation on `shown` (the path as the client wrote it, so no
/// host path is ever revealed).
pub fn fs_reply(shown: &str, e: &StorageError) -> Reply {
    match e {
        StorageError::InvalidName => Reply::new(553, format!("{shown}: {e}")),
        StorageError::NoSpace => Reply::new(452, format!("{shown}: {e}")),
        StorageError::InvalidOffset => Reply::new(554, format!("{shown}: {e}")),
        StorageError::Escape => {
            warn!(path = %shown, "refused a path that leads outside the home directory");
            Reply::new(550, format!("{shown}: {e}"))
        }
        StorageError::Io(io) => {
            warn!(path = %shown, error = %io, "local file error");
            Reply::new(451, format!("{shown}: local error"))
        }
        _ => Reply::new(550, format!("{shown}: {e}")),
    }
}

/// The reply for a transfer that failed on the server's side (the disk, not the network).
pub fn storage_failure_reply(e: &StorageError) -> Reply {
    match e {
        StorageError::NoSpace => Reply::new(452, "Transfer failed: no space left on the server"),
        other => Reply::new(451, format!("Transfer failed: local error ({other})")),
    }
}

/// The FEAT reply (RFC 2389) for a listener in `mode`, with the MLST facts in force.
pub fn feat_reply(mlst: MlstFacts, mode: ListenerMode) -> Reply {
    let tls: &[&str] = match mode {
        ListenerMode::Plain => &[],
        ListenerMode::Explicit => &["AUTH TLS", "PBSZ", "PROT"],
        ListenerMode::Implicit => &["PBSZ", "PROT"],
    };
    let mut features = vec![
        "EPRT".to_string(),
        "EPSV".to_string(),
        "MDTM".to_string(),
        "MFMT".to_string(),
        format!("MLST {}", mlst.render(true)),
        "PASV".to_string(),
        "REST STREAM".to_string(),
        "SIZE".to_string(),
        "TVFS".to_string(),
        "UTF8".to_string(),
    ];
    features.extend(tls.iter().map(|f| f.to_string()));
    features.sort();
    Reply::multi(211, "Features:", features, "End")
}

/// The HELP reply: every verb, or whether `topic` is one.
pub fn help_reply(topic: Option<&str>) -> Reply {
    match topic {
        None => {
            let lines: Vec<String> = VERBS.chunks(10).map(|c| c.join(" ")).collect();
            Reply::multi(
                214,
                "The following commands are recognized:",
                lines,
                "Help OK",
            )
        }
        Some(t) if VERBS.contains(&t) => Reply::new(
            214,
            format!("{t} is supported; see RFC 959, 2389, 2428 and 3659"),
        ),
        Some(t) => Reply::new(502, format!("Unknown command {t}")),
    }
}
