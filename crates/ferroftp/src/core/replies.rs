//! Replies and small rules used by several command groups: FEAT, HELP and the before-login
//! rule come from proto's verb table; storage errors map to replies here.

use ferroftp_proto::listing::{Facts, FileKind};
use ferroftp_proto::verbs::{self, TlsOffer};
use ferroftp_proto::{Command, MlstFacts, Reply};
use tracing::warn;

use crate::auth::{Permission, Permissions};
use crate::config::ListenerMode;
use crate::storage::{Entry, EntryKind, StorageError};

/// Whether `cmd` may run before login (session set-up, not file access): the verb table's
/// rule (STAT only without a path).
pub fn allowed_before_login(cmd: &Command) -> bool {
    cmd.allowed_before_login()
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
        // Refused before anything changed: the command exists, this storage cannot do it.
        StorageError::Unsupported(_) => Reply::new(502, format!("{shown}: {e}")),
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
        StorageError::Unsupported(_) => Reply::new(502, format!("Transfer failed: {e}")),
        other => Reply::new(451, format!("Transfer failed: local error ({other})")),
    }
}

/// The FEAT reply (RFC 2389) for a listener in `mode`, with the MLST facts in force, from
/// the verb table.
pub fn feat_reply(mlst: MlstFacts, mode: ListenerMode) -> Reply {
    let tls = match mode {
        ListenerMode::Plain => TlsOffer::None,
        ListenerMode::Explicit => TlsOffer::Explicit,
        ListenerMode::Implicit => TlsOffer::Implicit,
    };
    verbs::feat_reply(mlst, tls)
}

/// The HELP reply, from the verb table: every verb, or whether `topic` is one.
pub fn help_reply(topic: Option<&str>) -> Reply {
    verbs::help_reply(topic)
}
