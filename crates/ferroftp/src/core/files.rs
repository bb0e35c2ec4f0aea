//! Navigation, file operations and information about files: CWD, MKD, RMD, DELE, RNFR, RNTO,
//! SIZE, MDTM, MFMT, SITE CHMOD, MLST, STAT with a path. The core checks the permission and
//! resolves the path; the driver runs the storage operation; the core answers.

use std::time::SystemTime;

use ferroftp_proto::listing;
use ferroftp_proto::reply::quote_path;
use ferroftp_proto::{Reply, TransferType};
use tracing::info;

use super::replies::{facts, perm_fact, permission_verb};
use super::state::{FileCmd, Pending};
use super::{Effect, Output, Session, StorageDone, StorageOp, done, fs_reply};
use crate::auth::Permission;
use crate::storage::{EntryKind, StorageError};

/// In TYPE A, SIZE reads the file to count its size on the wire: not for files above this.
const ASCII_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

impl Session {
    fn storage(&mut self, cmd: FileCmd, shown: String, op: StorageOp) -> Output {
        self.pending = Some(Pending::Storage { cmd, shown });
        Output::effect(Effect::Storage(op))
    }

    pub(super) fn cmd_cwd(&mut self, arg: String) -> Output {
        done((|| {
            self.logged_in()?;
            let path = self.resolve(&arg)?;
            let op = StorageOp::Metadata(path.clone());
            Ok(self.storage(FileCmd::Cwd(path), arg, op))
        })())
    }

    pub(super) fn cmd_mkd(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::Mkdir)?;
            let path = self.resolve(&arg)?;
            let op = StorageOp::Mkdir(path.clone());
            Ok(self.storage(FileCmd::Mkd(path), arg, op))
        })())
    }

    /// RMD (`dir`) or DELE.
    pub(super) fn cmd_simple(&mut self, arg: String, dir: bool) -> Output {
        let (perm, text) = if dir {
            (Permission::Rmdir, "Directory removed")
        } else {
            (Permission::Delete, "File deleted")
        };
        done((|| {
            self.need(perm)?;
            let path = self.resolve(&arg)?;
            let op = if dir {
                StorageOp::Rmdir(path.clone())
            } else {
                StorageOp::RemoveFile(path.clone())
            };
            Ok(self.storage(FileCmd::Simple(permission_verb(perm), text, path), arg, op))
        })())
    }

    pub(super) fn cmd_rnfr(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::Rename)?;
            let path = self.resolve(&arg)?;
            if path.is_root() {
                return Err(Reply::new(550, "The home directory cannot be renamed"));
            }
            // Refused at RNFR, not only at RNTO: the client learns at once, before it asks.
            Self::supports(self.storage.rename, "rename", &arg)?;
            let op = StorageOp::Metadata(path.clone());
            Ok(self.storage(FileCmd::Rnfr(path), arg, op))
        })())
    }

    pub(super) fn cmd_rnto(&mut self, from: Option<crate::storage::VPath>, arg: String) -> Output {
        let Some(from) = from else {
            return Output::reply(Reply::new(503, "Send RNFR first"));
        };
        done((|| {
            // Renaming onto an existing name destroys what was there, like overwriting it.
            let replace = self.need(Permission::Rename)?.perms.has(Permission::Write);
            let to = self.resolve(&arg)?;
            let op = StorageOp::Rename {
                from: from.clone(),
                to: to.clone(),
                replace,
            };
            Ok(self.storage(FileCmd::Rnto { from, to, replace }, arg, op))
        })())
    }

    pub(super) fn cmd_size(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::List)?;
            let path = self.resolve(&arg)?;
            let ascii = self.ty == TransferType::Ascii;
            let op = StorageOp::Metadata(path.clone());
            Ok(self.storage(FileCmd::Size { path, ascii }, arg, op))
        })())
    }

    pub(super) fn cmd_mdtm(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::List)?;
            let path = self.resolve(&arg)?;
            Ok(self.storage(FileCmd::Mdtm, arg, StorageOp::Metadata(path)))
        })())
    }

    pub(super) fn cmd_mfmt(&mut self, time: SystemTime, arg: String) -> Output {
        done((|| {
            self.need(Permission::Write)?;
            let path = self.resolve(&arg)?;
            Self::supports(
                self.storage.set_modified,
                "setting a modification time",
                &arg,
            )?;
            Ok(self.storage(FileCmd::Mfmt(time), arg, StorageOp::SetModified(path, time)))
        })())
    }

    pub(super) fn cmd_chmod(&mut self, mode: u32, arg: String) -> Output {
        done((|| {
            self.need(Permission::Write)?;
            let path = self.resolve(&arg)?;
            if mode & !0o777 != 0 {
                // Set on a file of the service account, setuid or setgid would hand its
                // rights to whoever runs the file.
                return Err(Reply::new(
                    550,
                    format!(
                        "SITE CHMOD {mode:o} refused: the setuid, setgid and sticky bits (7000) cannot be set; use a mode of 777 or less"
                    ),
                ));
            }
            Self::supports(self.storage.set_mode, "chmod", &arg)?;
            let op = StorageOp::SetMode(path.clone(), mode);
            Ok(self.storage(FileCmd::Chmod(path, mode), arg, op))
        })())
    }

    pub(super) fn cmd_mlst(&mut self, arg: Option<String>) -> Output {
        done((|| {
            self.need(Permission::List)?;
            let shown = arg.unwrap_or_else(|| ".".to_owned());
            let path = self.resolve(&shown)?;
            let op = StorageOp::Metadata(path.clone());
            Ok(self.storage(FileCmd::Mlst(path), shown, op))
        })())
    }

    pub(super) fn cmd_stat_path(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::List)?;
            let op = StorageOp::StatListing {
                cwd: self.cwd.clone(),
                arg: arg.clone(),
            };
            Ok(self.storage(FileCmd::StatPath, arg, op))
        })())
    }

    /// The answer to a file command once its storage operation is done.
    pub(super) fn storage_done(
        &mut self,
        cmd: FileCmd,
        shown: String,
        result: Result<StorageDone, StorageError>,
    ) -> Output {
        let arg = shown.as_str();
        let done = match (cmd, result) {
            (FileCmd::Rnto { replace: false, .. }, Err(StorageError::AlreadyExists)) => {
                return Output::reply(Reply::new(
                    550,
                    format!(
                        "{arg}: already exists; renaming onto an existing name needs the write permission"
                    ),
                ));
            }
            (_, Err(e)) => return Output::reply(fs_reply(arg, &e)),
            (cmd, Ok(d)) => (cmd, d),
        };
        let reply = match done {
            (FileCmd::Cwd(path), StorageDone::Entry(entry)) => {
                if entry.kind != EntryKind::Dir {
                    return Output::reply(Reply::new(550, format!("{arg}: Not a directory")));
                }
                let reply = Reply::new(250, format!("Directory changed to {path}"));
                self.cwd = path;
                reply
            }
            (FileCmd::Mkd(path), _) => {
                info!(op = "mkdir", path = %path, "file operation");
                Reply::new(257, format!("{} created", quote_path(path.as_str())))
            }
            (FileCmd::Simple(op, text, path), _) => {
                info!(op, path = %path, "file operation");
                Reply::new(250, text)
            }
            (FileCmd::Rnfr(path), _) => {
                self.rnfr = Some(path);
                Reply::new(350, "Ready for RNTO")
            }
            (FileCmd::Rnto { from, to, .. }, _) => {
                info!(op = "rename", from = %from, to = %to, "file operation");
                Reply::new(250, "Rename successful")
            }
            (FileCmd::Size { path, ascii }, StorageDone::Entry(entry)) => {
                if entry.kind != EntryKind::File {
                    return Output::reply(Reply::new(550, format!("{arg}: not a regular file")));
                }
                if !ascii {
                    return Output::reply(Reply::new(213, entry.size.to_string()));
                }
                // In TYPE A the size is what would be sent (RFC 3659 §4), which takes a read.
                if entry.size > ASCII_SIZE_LIMIT {
                    return Output::reply(Reply::new(
                        550,
                        "SIZE in ASCII mode is not offered for files this large; use TYPE I",
                    ));
                }
                let op = StorageOp::AsciiSize(path.clone());
                let cmd = FileCmd::Size { path, ascii: false };
                return self.storage(cmd, shown, op);
            }
            (FileCmd::Size { .. }, StorageDone::Size(size)) => Reply::new(213, size.to_string()),
            (FileCmd::Mdtm, StorageDone::Entry(entry)) => match entry.modified {
                Some(modified) => Reply::new(213, listing::format_timeval(modified)),
                None => Reply::new(550, format!("{arg}: modification time unknown")),
            },
            (FileCmd::Mfmt(time), _) => Reply::new(
                213,
                format!("Modify={}; {arg}", listing::format_timeval(time)),
            ),
            (FileCmd::Chmod(path, mode), _) => {
                info!(op = "chmod", path = %path, mode = format!("{mode:o}"), "file operation");
                Reply::new(200, "SITE CHMOD command successful")
            }
            (FileCmd::Mlst(path), StorageDone::Entry(entry)) => {
                let perms = match self.logged_in() {
                    Ok(a) => a.perms,
                    Err(r) => return Output::reply(r),
                };
                let perm = perm_fact(perms, entry.kind);
                let mut f = facts(&entry, &perm);
                let full = path.to_string();
                f.name = &full;
                let line = listing::mlsx_line(&f, self.mlst);
                Reply::multi(250, format!("Listing {path}"), [line], "End")
            }
            (FileCmd::StatPath, StorageDone::Reply(r)) => r,
            // A result of the wrong shape: a driver bug.
            _ => Reply::new(451, "Local error in processing"),
        };
        Output::reply(reply)
    }
}
