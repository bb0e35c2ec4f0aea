//! Transfers: opening their source, running them in the background, their end.

use super::*;

impl Job {
    pub(super) fn into_upload(self) -> Option<Upload> {
        match self {
            Job::Receive(file, mut upload) => {
                // Not yet written to; the std file is only needed for commit or abort.
                drop(file);
                let _ = upload.take_file();
                Some(upload)
            }
            Job::Send(_) => None,
        }
    }
}

/// How long to wait for the client's close after our close_notify before answering anyway.
pub(super) const TLS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn wait_transfer(running: &mut Option<Running>) -> Outcome {
    match running {
        Some(r) => match (&mut r.handle).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "transfer task failed");
                Outcome {
                    result: Err(TransferError::Copy(CopyError::Local(io::Error::other(
                        "internal error in the transfer",
                    )))),
                    upload: None,
                }
            }
        },
        None => std::future::pending().await,
    }
}

pub(super) fn log_transfer(
    running: &Running,
    path: &VPath,
    bytes: u64,
    elapsed: std::time::Duration,
    result: &str,
) {
    let direction = Direction::of_verb(running.kind.verb()).as_str();
    info!(
        verb = running.kind.verb().name(),
        direction,
        path = %path,
        bytes,
        duration_ms = elapsed.as_millis() as u64,
        io = running.io,
        result,
        "transfer"
    );
}

impl Session {
    /// Open what a transfer reads or writes; it waits in `prepared` for its data connection.
    pub(super) async fn prepare_transfer(
        &mut self,
        kind: TransferKind,
        source: TransferSource,
        scratch: &mut Scratch,
    ) -> Event {
        let fs = match self.fs() {
            Ok(fs) => fs,
            Err(e) => return Event::Storage(Err(e)),
        };
        match source {
            TransferSource::Read { path, offset } => {
                let p = path.clone();
                match blocking(move || fs.open_read(&p, offset)).await {
                    Ok((file, len)) => {
                        let total = len - offset;
                        scratch.prepared = Some(Job::Send(SendSource::File(file, offset, total)));
                        Event::TransferPrepared {
                            total: Some(total),
                            path,
                        }
                    }
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Write { path, mode } => {
                let p = path.clone();
                match blocking(move || fs.create_upload(&p, mode)).await {
                    Ok(upload) => self.prepared_upload(upload, path, scratch),
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Unique { dir, hint } => {
                match blocking(move || fs.create_unique(&dir, &hint)).await {
                    Ok((path, upload)) => self.prepared_upload(upload, path, scratch),
                    Err(e) => Event::Storage(Err(e)),
                }
            }
            TransferSource::Listing { cwd, arg } => {
                let style = match kind {
                    TransferKind::Nlst => ListStyle::Nlst,
                    TransferKind::Mlsd => ListStyle::Mlsd,
                    _ => ListStyle::List,
                };
                let perms = self
                    .core
                    .account()
                    .map_or(Permissions::NONE, |(a, _)| a.perms);
                match Listing::gather(fs, &cwd, arg.as_deref(), style).await {
                    Ok(target) => {
                        let fmt = LineFormat {
                            style,
                            perms,
                            mlst: self.core.mlst(),
                            prefix: target.prefix,
                            now: SystemTime::now(),
                        };
                        scratch.prepared = Some(Job::Send(SendSource::Listing(target.source, fmt)));
                        Event::TransferPrepared {
                            total: None,
                            path: target.path,
                        }
                    }
                    Err(reply) => Event::TransferRefused(reply),
                }
            }
        }
    }

    pub(super) fn prepared_upload(
        &mut self,
        mut upload: Upload,
        path: VPath,
        scratch: &mut Scratch,
    ) -> Event {
        match upload.take_file() {
            Some(file) => {
                scratch.prepared = Some(Job::Receive(file, upload));
                Event::TransferPrepared { total: None, path }
            }
            None => Event::TransferRefused(Reply::new(451, "Local error: upload has no file")),
        }
    }

    /// Run the prepared transfer over the data connection in the background (its 150 is out).
    pub(super) fn start_transfer(
        &mut self,
        kind: TransferKind,
        data: DataSetup,
        protected: bool,
        scratch: &mut Scratch,
    ) -> Option<Event> {
        let (Some(job), Some(connect)) = (scratch.prepared.take(), self.data_connection(data))
        else {
            // The core and the driver disagree about the set-up: a bug, answered all the same.
            return Some(Event::TransferEnded(TransferEnd::NoDataConnection(
                "no data connection is set up".to_string(),
            )));
        };
        let binary = self.core.transfer_type() == TransferType::Image;
        let direction = match job {
            Job::Send(_) => DataDirection::Download,
            Job::Receive(..) => DataDirection::Upload,
        };
        let protection = self.data_tls(direction, protected);
        let io = match (&job, &protection) {
            (_, Some(_)) => "tls",
            (Job::Send(SendSource::File(f, ..)), None) if binary && f.local_file().is_some() => {
                "sendfile"
            }
            _ => "copy",
        };
        let cancel = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let ascii_mode = !binary;
        let stall = self.live.config.limits.idle_timeout();
        let policy = self.live.config.uploads.fsync;
        let task_cancel = cancel.clone();
        let task_progress = Arc::clone(&progress);
        let handle = tokio::spawn(
            async move {
                let open = async {
                    let tcp = connect.await.map_err(TransferError::DataConnection)?;
                    let _ = tcp.set_nodelay(true);
                    match &protection {
                        Some(p) => open_data_tls(tcp, p).await,
                        None => Ok(Stream::Plain(tcp)),
                    }
                };
                let mut stream = match tokio::select! {
                    c = open => c,
                    _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                } {
                    Ok(s) => s,
                    Err(e) => return Outcome { result: Err(e), upload: job.into_upload() },
                };
                let mut send_slot = match &job {
                    Job::Send(SendSource::File(_, _, len)) if !ascii_mode && stream.is_tls() && *len >= data::BIG_DOWNLOAD => data::thread_slot(),
                    _ => None,
                };
                match job {
                    // A big binary TLS download of a file runs on a thread of its own (if one is free).
                    Job::Send(SendSource::File(f, offset, len)) if send_slot.is_some() => {
                        let result = match (send_slot.take(), std::mem::replace(&mut stream, Stream::Detached)) {
                            (Some(slot), Stream::Tls(tls)) => {
                                let (tcp, conn) = tls.into_inner();
                                debug!("TLS download: sending on its own thread");
                                data::send_tls_on_thread(
                                    tcp,
                                    conn,
                                    f,
                                    (offset, len),
                                    TLS_CLOSE_WAIT,
                                    data::OnThread { progress: Arc::clone(&task_progress), stall, cancel: &task_cancel, slot },
                                )
                                .await
                                .map_err(|e| match e {
                                    data::TransferEnd::Failed(e) => TransferError::Copy(e),
                                    data::TransferEnd::Aborted => TransferError::Aborted,
                                })
                            }
                            // Not reached: the slot is taken only for a TLS stream.
                            _ => Err(TransferError::Copy(CopyError::Local(io::Error::other(
                                "the TLS download could not move to its thread",
                            )))),
                        };
                        Outcome { result, upload: None }
                    }
                    Job::Send(source) => {
                        let copy = async {
                            match source {
                                SendSource::File(f, offset, len) => match (&mut stream, f.local_file()) {
                                    // Binary over plain TCP from a local file: zero-copy.
                                    (Stream::Plain(tcp), Some(file)) if !ascii_mode => {
                                        match data::sendfile(file, offset, len, tcp, &task_progress, stall).await {
                                            Ok(()) => data::finish(&mut stream, stall).await,
                                            Err(e) => Err(e),
                                        }
                                    }
                                    _ => {
                                        // Fewer, larger trips to the blocking thread that reads.
                                        let f = f.into_async(data::FILE_READ_SIZE);
                                        data::send(f, &mut stream, ascii_mode, &task_progress, stall).await
                                    }
                                },
                                SendSource::Listing(src, fmt) => send_listing(src, fmt, &mut stream, &task_progress, stall).await,
                            }
                        };
                        let result = tokio::select! {
                            r = copy => r.map_err(TransferError::Copy),
                            _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                        };
                        if result.is_ok() && stream.is_tls() {
                            // Our close_notify is out; wait for the client's before the 226, so
                            // that nothing is closed under data the client has yet to read.
                            tokio::select! {
                                _ = data::drain_until_closed(&mut stream, TLS_CLOSE_WAIT) => {}
                                _ = task_cancel.cancelled() => {}
                            }
                        }
                        Outcome { result, upload: None }
                    }
                    Job::Receive(file, mut upload) => {
                        let tls = stream.is_tls();
                        let (result, file) = if ascii_mode {
                            let mut file = file.into_async();
                            let copy = data::receive(&mut stream, tls, &mut file, true, &task_progress, stall);
                            let result = tokio::select! {
                                r = copy => r.map_err(TransferError::Copy),
                                _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                            };
                            // Wait for tokio's in-flight write to land before the file goes
                            // back to the upload for commit or abort.
                            let _ = file.flush().await;
                            (result, file.into_inner().await)
                        } else {
                            // A big upload moves to a thread of its own if one is free (the slot is
                            // taken only then: slow uploads, which stay here, hold none).
                            let mut slot = None;
                            let mut writer = data::FileWriter::new(file);
                            let copy = async {
                                let first = data::receive_binary(&mut stream, tls, &mut writer, &task_progress, stall, Some(data::BIG_UPLOAD));
                                match first.await? {
                                    data::Received::Big => match data::thread_slot() {
                                        Some(s) => {
                                            slot = Some(s);
                                            Ok(data::Received::Big)
                                        }
                                        // Every transfer thread is busy: the rest is received here.
                                        None => data::receive_binary(&mut stream, tls, &mut writer, &task_progress, stall, None).await,
                                    },
                                    ended => Ok(ended),
                                }
                            };
                            let result = tokio::select! {
                                r = copy => r.map_err(TransferError::Copy),
                                _ = task_cancel.cancelled() => Err(TransferError::Aborted),
                            };
                            // Likewise: the write in flight (even of an aborted copy) lands first.
                            // What is left is written with the commit (or the abort); after a
                            // failed write it is dropped, as the file would have a hole before it.
                            let (written, file, rest) = writer.finish().await;
                            let taken = match (&result, &written, &file, &slot) {
                                (Ok(data::Received::Big), Ok(()), Some(_), Some(_)) => {
                                    match std::mem::replace(&mut stream, Stream::Detached) {
                                        Stream::Plain(tcp) => Some((tcp, None)),
                                        Stream::Tls(tls) => {
                                            let (tcp, conn) = tls.into_inner();
                                            Some((tcp, Some(conn)))
                                        }
                                        Stream::Detached => None,
                                    }
                                }
                                _ => None,
                            };
                            match (result, written, file, slot, taken) {
                                (Ok(data::Received::Big), Ok(()), Some(file), Some(slot), Some((tcp, conn))) => {
                                    let writeback = upload.writes_back_early(policy);
                                    debug!(writeback, "big upload: receiving the rest on its own thread");
                                    let (end, file) = data::receive_on_thread(
                                        tcp,
                                        conn,
                                        file,
                                        rest,
                                        writeback,
                                        data::OnThread { progress: Arc::clone(&task_progress), stall, cancel: &task_cancel, slot },
                                    )
                                    .await;
                                    let result = match end {
                                        data::ThreadEnd::Ended(e) => Ok(e),
                                        data::ThreadEnd::Failed(e) => Err(TransferError::Copy(e)),
                                        data::ThreadEnd::Aborted => Err(TransferError::Aborted),
                                    };
                                    (result, file)
                                }
                                (result, written, file, _, _) => {
                                    let result = match (result, written) {
                                        (r @ Err(TransferError::Copy(CopyError::Local(_))), _) => r,
                                        (r, Ok(())) => {
                                            upload.defer_write(rest);
                                            r
                                        }
                                        (Ok(_), Err(e)) => Err(TransferError::Copy(CopyError::Local(e))),
                                        (r, Err(_)) => r,
                                    };
                                    // Only an upload with a thread slot is promoted, so `Big` cannot
                                    // stay here; if it did, the upload is not complete.
                                    let result = result.and_then(|r| match r {
                                        data::Received::Ended(e) => Ok(e),
                                        data::Received::Big => Err(TransferError::Copy(CopyError::Local(
                                            io::Error::other("the upload could not move to its thread"),
                                        ))),
                                    });
                                    (result, file)
                                }
                            }
                        };
                        let result = match result {
                            Ok(data::Ending::CloseNotify) => {
                                // Answer the client's close_notify with ours; it may be gone. (An
                                // upload thread answered it itself and kept the connection.)
                                if !matches!(stream, Stream::Detached) {
                                    let _ = tokio::time::timeout(TLS_CLOSE_WAIT, stream.shutdown()).await;
                                }
                                Ok(())
                            }
                            Ok(data::Ending::Eof) => Ok(()),
                            Ok(data::Ending::Truncated) => match &protection {
                                Some(p) if p.require_close_notify => Err(TransferError::Truncated),
                                _ => {
                                    warn!("TLS upload ended without close_notify; accepted (tls.require_close_notify = false)");
                                    Ok(())
                                }
                            },
                            Err(e) => Err(e),
                        };
                        if let Some(file) = file {
                            upload.put_file(file);
                        }
                        Outcome { result, upload: Some(upload) }
                    }
                }
            }
            .in_current_span(),
        );
        self.transfer = Some(Running {
            handle,
            cancel,
            progress,
            kind,
            started: Instant::now(),
            io,
            binary,
        });
        None
    }

    pub(super) async fn finish_transfer(&mut self, outcome: Outcome) -> io::Result<Flow> {
        let Some(running) = self.transfer.take() else {
            return Ok(Flow::Continue);
        };
        let bytes = running.progress.load(Ordering::Relaxed);
        let elapsed = running.started.elapsed();
        let mut outcome = outcome;
        let mut result = std::mem::replace(&mut outcome.result, Ok(()));
        if let Err(TransferError::Copy(CopyError::Network(_))) = &result {
            // Clients abort by sending ABOR and then closing the data connection; the close
            // can be seen first. An ABOR received or waiting means the client ended it on
            // purpose.
            if self.core.abort_requested() || self.take_queued_abor() {
                result = Err(TransferError::Aborted);
            }
        }
        // How it ended for the metrics and the transfer log; a transfer that moved its bytes
        // can still fail after (its upload not committed, its file shrank): see the reply.
        let (class, connected) = match &result {
            Ok(()) => (TransferResult::Ok, true),
            Err(TransferError::Aborted) => (TransferResult::Aborted, true),
            Err(TransferError::DataConnection(_) | TransferError::DataTls(_)) => {
                (TransferResult::Failed, false)
            }
            Err(_) => (TransferResult::Failed, true),
        };
        // The file a committed upload replaced: freed after the reply (see `Replaced`).
        let mut replaced = None;
        let (end, result): (TransferEnd, String) = match result {
            Ok(()) => match outcome.upload.take() {
                Some(upload) => {
                    if self.client_gone() {
                        // The data connection ended but so did the control connection: the
                        // client was killed or lost, and the upload may be incomplete.
                        let _ = blocking(move || {
                            upload.abort();
                            Ok(())
                        })
                        .await;
                        log_transfer(
                            &running,
                            self.transfer_target().0,
                            bytes,
                            elapsed,
                            "aborted: client gone",
                        );
                        self.account_transfer(
                            &running,
                            bytes,
                            elapsed,
                            TransferResult::Aborted,
                            true,
                        );
                        let out = self.core.event(
                            Event::TransferEnded(TransferEnd::ClientGone),
                            Instant::now(),
                        );
                        // Boxed: the effect loop is not part of every idle session's future.
                        return Box::pin(self.drive(out)).await;
                    }
                    let policy = self.live.config.uploads.fsync;
                    // The last bytes and the commit in one trip to the blocking pool; a failed
                    // write of the data is reported as during the transfer.
                    let done = blocking(move || {
                        let mut upload = upload;
                        match upload.write_deferred() {
                            Ok(()) => upload.commit_with(policy).map(Ok),
                            // Dropping the upload cleans it up like any failed one.
                            Err(e) => Ok(Err(e)),
                        }
                    });
                    match done.await {
                        Ok(Ok(old)) => {
                            replaced = Some(old);
                            (TransferEnd::Complete, "ok".into())
                        }
                        Ok(Err(e)) => {
                            let e = StorageError::from(e);
                            let log = format!("local error: {e}");
                            (TransferEnd::Local(e), log)
                        }
                        Err(e) => {
                            let log = format!("failed: {e}");
                            (TransferEnd::Local(e), log)
                        }
                    }
                }
                // A file cut short while it was being sent: the client must not think it whole.
                None if running.kind == TransferKind::Retr
                    && self.transfer_target().1.is_some_and(|t| bytes < t) =>
                {
                    let total = self.transfer_target().1.unwrap_or_default();
                    (
                        TransferEnd::Shrank { bytes, total },
                        format!("incomplete: file shrank to {bytes} of {total} bytes"),
                    )
                }
                None => (TransferEnd::Complete, "ok".into()),
            },
            Err(TransferError::Aborted) => (TransferEnd::Aborted, "aborted by client".into()),
            Err(TransferError::DataConnection(e)) => (
                TransferEnd::NoDataConnection(e.to_string()),
                format!("no data connection: {e}"),
            ),
            Err(TransferError::Truncated) => {
                // Replace uploads vanish with their temp file; in-place ones are undone.
                let restored = match outcome.upload.take() {
                    Some(upload) => blocking(move || Ok(upload.roll_back()))
                        .await
                        .unwrap_or(false),
                    None => true,
                };
                (
                    TransferEnd::Truncated { restored },
                    "truncated: no TLS close_notify".into(),
                )
            }
            Err(TransferError::DataTls(reason)) => {
                let log = format!("TLS data connection refused: {reason}");
                (TransferEnd::DataTls(reason), log)
            }
            Err(TransferError::Copy(CopyError::Network(e))) => (
                TransferEnd::Network(e.to_string()),
                format!("network error: {e}"),
            ),
            Err(TransferError::Copy(CopyError::Local(e))) => {
                let e = StorageError::from(e);
                let log = format!("local error: {e}");
                (TransferEnd::Local(e), log)
            }
        };
        // Moved its bytes but failed after (not committed, shrank): a failure.
        let class = match end {
            TransferEnd::Shrank { .. } | TransferEnd::Local(_) if class == TransferResult::Ok => {
                TransferResult::Failed
            }
            _ => class,
        };
        log_transfer(&running, self.transfer_target().0, bytes, elapsed, &result);
        self.account_transfer(&running, bytes, elapsed, class, connected);
        // A failed upload is cleaned up (temp file gone, space freed) before the client hears.
        if let Some(upload) = outcome.upload.take() {
            let _ = blocking(move || {
                upload.abort();
                Ok(())
            })
            .await;
        }
        let out = self.core.event(Event::TransferEnded(end), Instant::now());
        let sent = Box::pin(self.drive(out)).await;
        if let Some(old) = replaced {
            // Freeing a big file's blocks takes a while: not on an async worker.
            drop(tokio::task::spawn_blocking(move || drop(old)));
        }
        sent
    }

    /// Count a finished transfer in the metrics and, for a file whose data connection opened,
    /// write its transfer-log line.
    pub(super) fn account_transfer(
        &self,
        running: &Running,
        bytes: u64,
        elapsed: std::time::Duration,
        class: TransferResult,
        connected: bool,
    ) {
        let metrics = &self.shared.metrics;
        metrics.transfer(running.kind.verb(), running.io == "tls", bytes, class);
        let direction = Direction::of_verb(running.kind.verb());
        if !connected || direction == Direction::Listing || !self.shared.xferlog.enabled() {
            return;
        }
        let (Some(home), Some((account, method))) = (&self.home, self.core.account()) else {
            return;
        };
        let relative = self.transfer_target().0.as_str().trim_start_matches('/');
        let path = if relative.is_empty() {
            home.path.clone()
        } else {
            home.path.join(relative)
        };
        let line = crate::observe::xferlog::Entry {
            elapsed,
            remote: self.core.peer().ip(),
            bytes,
            path: &path,
            binary: running.binary,
            incoming: direction == Direction::Upload,
            anonymous: method == core::LoginMethod::Anonymous,
            user: &account.name,
            tls: self.tls.is_some(),
            complete: class == TransferResult::Ok,
        }
        .line(chrono::Local::now());
        self.shared.xferlog.write(line, metrics);
    }
}
