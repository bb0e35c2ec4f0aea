//! Transfers: RETR, STOR, APPE, STOU, LIST, NLST, MLSD; REST for the next one only; STAT and
//! ABOR while one runs; the replies at its end.

use std::time::Instant;

use ferroftp_proto::{Reply, TransferType};

use super::replies::check_line_ends;
use super::state::{Pending, Running};
use super::{
    Activity, CloseReason, DataSetup, Effect, Event, Output, Session, TransferEnd, TransferKind,
    TransferSource, done, fs_reply, storage_failure_reply,
};
use crate::auth::Permission;
use crate::storage::{StorageError, WriteMode};

impl Session {
    fn prepare(
        &mut self,
        kind: TransferKind,
        shown: String,
        offset: u64,
        src: TransferSource,
    ) -> Output {
        self.pending = Some(Pending::Transfer {
            kind,
            shown,
            offset,
        });
        Output::effect(Effect::PrepareTransfer(kind, src))
    }

    /// Refuse an upload that has no data connection set up before it touches any file: a
    /// refused REST+STOR must not truncate, a refused APPE or STOU must not create.
    fn require_data_setup(&self) -> Result<(), Reply> {
        self.check_data_protection()?;
        match self.data {
            DataSetup::None => Err(no_data_setup()),
            _ => Ok(()),
        }
    }

    pub(super) fn cmd_retr(&mut self, arg: String) -> Output {
        done((|| {
            self.need(Permission::Read)?;
            let path = self.resolve(&arg)?;
            let offset = std::mem::take(&mut self.rest);
            let src = TransferSource::Read { path, offset };
            Ok(self.prepare(TransferKind::Retr, arg, offset, src))
        })())
    }

    pub(super) fn cmd_store(&mut self, arg: String, append: bool) -> Output {
        done((|| {
            let offset = std::mem::take(&mut self.rest);
            let kind = if append {
                TransferKind::Appe
            } else {
                TransferKind::Stor
            };
            let may_write = self.logged_in()?.perms.has(Permission::Write);
            let (mode, perm) = match (append, offset) {
                (false, 0) => (WriteMode::Replace, Permission::Write),
                (true, 0) => (WriteMode::Append, Permission::Append),
                // Writing at an offset overwrites what follows it and cuts the old tail: that
                // is the write permission's.
                (_, n) if may_write => (WriteMode::At(n), Permission::Write),
                // An append-only account may resume at the end, which only adds bytes.
                (_, n) => (WriteMode::AppendAt(n), Permission::Append),
            };
            self.need(perm)?;
            let path = self.resolve(&arg)?;
            if path.is_root() {
                return Err(Reply::new(553, "Cannot store over the home directory"));
            }
            match mode {
                WriteMode::Append | WriteMode::AppendAt(_) => {
                    Self::supports(self.storage.append, "appending", &arg)?;
                }
                WriteMode::At(_) => {
                    Self::supports(self.storage.write_at, "resuming an upload", &arg)?;
                }
                WriteMode::Replace => {}
            }
            self.require_data_setup()?;
            Ok(self.prepare(kind, arg, offset, TransferSource::Write { path, mode }))
        })())
    }

    pub(super) fn cmd_stou(&mut self, hint: Option<String>) -> Output {
        done((|| {
            self.need(Permission::Write)?;
            if let Some(h) = &hint {
                check_line_ends(h)?;
            }
            self.require_data_setup()?;
            self.rest = 0;
            let hint = hint
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty() && !h.contains('/'))
                .unwrap_or("ftp-upload")
                .to_owned();
            let dir = self.cwd.clone();
            let src = TransferSource::Unique { dir, hint };
            Ok(self.prepare(TransferKind::Stou, "STOU".to_owned(), 0, src))
        })())
    }

    pub(super) fn cmd_list(&mut self, arg: Option<String>, kind: TransferKind) -> Output {
        done((|| {
            self.need(Permission::List)?;
            let cwd = self.cwd.clone();
            let shown = arg.clone().unwrap_or_default();
            Ok(self.prepare(kind, shown, 0, TransferSource::Listing { cwd, arg }))
        })())
    }

    /// The source is open (or not): take the data connection and start, or refuse.
    pub(super) fn transfer_prepared(
        &mut self,
        kind: TransferKind,
        shown: &str,
        offset: u64,
        event: Event,
        now: Instant,
    ) -> Output {
        let (total, path) = match event {
            Event::TransferPrepared { total, path } => (total, path),
            Event::Storage(Err(StorageError::WouldOverwrite))
                if matches!(kind, TransferKind::Stor | TransferKind::Appe) =>
            {
                return Output::reply(Reply::new(
                    550,
                    format!(
                        "{shown}: REST {offset} is before the end of the file, and this account may only append (overwriting needs the write permission)"
                    ),
                ));
            }
            Event::Storage(Err(e)) => return Output::reply(fs_reply(shown, &e)),
            Event::TransferRefused(r) => return Output::reply(r),
            _ => return Output::reply(Reply::new(451, "Local error in processing")),
        };
        if let Err(refusal) = self.check_data_protection() {
            return Output::reply_then(refusal, Effect::DiscardTransfer);
        }
        let data = std::mem::replace(&mut self.data, DataSetup::None);
        if data == DataSetup::None {
            return Output::reply_then(no_data_setup(), Effect::DiscardTransfer);
        }
        let opening = match kind {
            TransferKind::Retr => {
                let mode = if self.ty == TransferType::Ascii {
                    "ASCII"
                } else {
                    "BINARY"
                };
                format!(
                    "Opening {mode} mode data connection for {path} ({} bytes)",
                    total.unwrap_or_default()
                )
            }
            TransferKind::Stor | TransferKind::Appe => format!("Ok to send data for {path}"),
            TransferKind::Stou => format!("FILE: {}", path.file_name().unwrap_or_default()),
            TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
                format!("Here comes the listing of {path}")
            }
        };
        self.activity = Activity::Transfer(Running {
            kind,
            path,
            total,
            started: now,
            abort_requested: false,
        });
        Output::reply_then(
            Reply::new(150, opening),
            Effect::StartTransfer {
                kind,
                data,
                protected: self.tls.data_private(),
            },
        )
    }

    /// Whether ABOR came while the running transfer ran.
    pub fn abort_requested(&self) -> bool {
        matches!(&self.activity, Activity::Transfer(r) if r.abort_requested)
    }

    pub(super) fn status_during_transfer(&self, bytes: u64, now: Instant) -> Reply {
        let Activity::Transfer(running) = &self.activity else {
            return Reply::new(211, "No transfer in progress");
        };
        let of = running
            .total
            .map(|t| format!(" of {t}"))
            .unwrap_or_default();
        Reply::new(
            213,
            format!(
                "Status: {} {}: {bytes}{of} bytes transferred in {} s",
                running.kind.verb(),
                running.path,
                now.saturating_duration_since(running.started).as_secs()
            ),
        )
    }

    /// The replies at a transfer's end.
    pub(super) fn transfer_ended(&mut self, end: TransferEnd, now: Instant) -> Output {
        let running = match std::mem::replace(&mut self.activity, Activity::Idle) {
            Activity::Transfer(r) => r,
            Activity::Idle => return Output::default(),
        };
        // A transfer is activity: the idle clock starts when it ends.
        self.last_activity = now;
        let mut out = Output::default();
        match end {
            TransferEnd::Complete => out.replies.push(Reply::new(226, "Transfer complete")),
            TransferEnd::Shrank { bytes, total } => out.replies.push(Reply::new(
                451,
                format!(
                    "Transfer incomplete: the file shrank while it was being sent ({bytes} of {total} bytes)"
                ),
            )),
            TransferEnd::Aborted => {
                out.replies
                    .push(Reply::new(426, "Transfer aborted; data connection closed"));
                out.replies.push(Reply::new(226, "ABOR command successful"));
            }
            TransferEnd::NoDataConnection(e) => out
                .replies
                .push(Reply::new(425, format!("Cannot open data connection: {e}"))),
            TransferEnd::Truncated { restored } => out.replies.push(Reply::new(
                426,
                if restored {
                    "Upload refused: the data connection closed without TLS close_notify, so the data may be truncated; the file is unchanged"
                } else {
                    "Upload refused: the data connection closed without TLS close_notify, so the data may be truncated; bytes that overwrote the file could not be undone"
                },
            )),
            TransferEnd::DataTls(reason) => out
                .replies
                .push(Reply::new(522, format!("Data connection refused: {reason}"))),
            TransferEnd::Network(e) => out.replies.push(Reply::new(
                426,
                format!("Data connection failed ({e}); transfer aborted"),
            )),
            TransferEnd::Local(e) => out.replies.push(storage_failure_reply(&e)),
            TransferEnd::ClientGone => {
                out.effect = Some(Effect::Close(CloseReason::GoneDuringUpload));
                return out;
            }
        }
        if running.abort_requested && out.replies.iter().next().is_some_and(|r| r.code == 226) {
            // The transfer finished before the ABOR could stop it: its 226, then the ABOR's.
            out.replies.push(Reply::new(
                226,
                "ABOR command successful; the transfer had completed",
            ));
        }
        out
    }
}

/// Whether a control line that waits in the queue runs while a transfer is under way: only a
/// bare ABOR or STAT, which overtake the lines before them; the others wait for the end of the
/// transfer and then run in order, as pipelining clients expect.
pub fn runs_during_transfer(line: &[u8]) -> bool {
    let verb = line.trim_ascii_end();
    verb.eq_ignore_ascii_case(b"ABOR") || verb.eq_ignore_ascii_case(b"STAT")
}

/// Whether a line is ABOR: one already sent when the data connection fails means the client
/// ended the transfer on purpose.
pub fn is_abor_line(line: &[u8]) -> bool {
    line.trim_ascii().eq_ignore_ascii_case(b"ABOR")
}

fn no_data_setup() -> Reply {
    Reply::new(425, "Use PASV, EPSV, PORT or EPRT first")
}
