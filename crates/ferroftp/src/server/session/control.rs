//! The control connection: lines in, replies out, the command loop and its timers, and the
//! effect loop that carries out what the core decides.

use super::*;

impl Session {
    /// Show the admin API what changed: user, TLS, PROT, last command, the transfer. Called
    /// once per turn of the command loop; strings are copied only when they change.
    pub(super) fn publish(&self) {
        let user = self.core.user();
        let tls = self.ctrl.tls_state();
        let prot_private = self.core.tls().data_private();
        let last_activity = self.core.last_activity();
        self.handle.publish(|state| {
            if state.user.as_deref() != user {
                state.user = user.map(str::to_owned);
            }
            if state.tls.is_none() {
                if let Some(conn) = tls {
                    let version = conn
                        .protocol_version()
                        .map_or_else(String::new, |v| format!("{v:?}"));
                    let suite = conn
                        .negotiated_cipher_suite()
                        .map_or_else(String::new, |s| format!("{:?}", s.suite()));
                    state.tls = Some((version, suite));
                }
            } else if tls.is_none() {
                // REIN or CCC would drop it; neither keeps TLS state.
                state.tls = None;
            }
            state.prot_private = prot_private;
            state.last_activity = last_activity;
            match (&self.transfer, &state.transfer) {
                (None, None) => {}
                (None, Some(_)) => state.transfer = None,
                (Some(r), Some(t)) if Arc::ptr_eq(&r.progress, &t.progress) => {}
                (Some(r), _) => {
                    let started_at = SystemTime::now()
                        .checked_sub(r.started.elapsed())
                        .unwrap_or_else(SystemTime::now);
                    state.transfer = Some(TransferState {
                        verb: r.kind.verb(),
                        path: self.transfer_target().0.to_string(),
                        direction: Direction::of_verb(r.kind.verb()).as_str(),
                        total: self.transfer_target().1,
                        started_at,
                        progress: Arc::clone(&r.progress),
                    });
                }
            }
        });
    }

    pub(super) async fn serve(&mut self) -> CloseReason {
        let greeting = Reply::new(220, self.live.config.greeting.clone());
        if self.send(greeting).await.is_err() {
            return CloseReason::GoneBeforeGreeting;
        }
        loop {
            if let Some(reason) = self.refresh_live().await {
                return self.close(reason).await;
            }
            if self.handle.is_kicked() {
                return self.close(CloseReason::Kicked).await;
            }
            while let Some(line) = self.next_runnable_line() {
                // Boxed: the state of the biggest command (a login, a transfer's start, an
                // AUTH) is held only while a command runs, not by every idle session.
                match Box::pin(self.dispatch(&line)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Close(reason)) => return self.close(reason).await,
                    Err(_) => return self.close(CloseReason::WriteFailed).await,
                }
            }
            // An over-long line ends the session, but only after the commands that came
            // before it have been answered.
            if let Some(limit) = self.too_long {
                if self.transfer.is_none() && self.lines.is_empty() {
                    let text = format!("Command line too long (the limit is {limit} bytes)");
                    warn!(limit, "control line too long; closing");
                    let _ = self.send(Reply::new(500, text)).await;
                    return self.close(CloseReason::LineTooLong).await;
                }
            }
            // About to wait: the admin API sees the state after the commands just run.
            self.publish();
            let may_read = self.lines.len() < MAX_QUEUED_LINES && self.too_long.is_none();
            // Poll before waiting: take what the socket holds without trusting tokio's
            // readiness (see `read_now`).
            if may_read {
                match self.input_now() {
                    Some(true) => continue,
                    Some(false) => return self.close(CloseReason::ClientClosed).await,
                    None => {}
                }
            }
            // An idle session keeps no input buffers: thousands of them wait at once.
            if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
                self.inbuf = Vec::new();
            }
            if self.lines.is_empty() && self.lines.capacity() > 0 {
                self.lines = VecDeque::new();
            }
            let deadline = self.core.deadline();
            let passive_expiry = self.core.passive_expiry();
            let far = Instant::now() + std::time::Duration::from_secs(86_400);
            tokio::select! {
                read = self.ctrl.read_into(&mut self.inbuf), if may_read => {
                    match read {
                        Ok(0) | Err(_) => return self.close(CloseReason::ClientClosed).await,
                        Ok(_) => self.split_lines(),
                    }
                }
                outcome = wait_transfer(&mut self.transfer), if self.transfer.is_some() => {
                    if let Err(_) | Ok(Flow::Close(_)) = self.finish_transfer(outcome).await {
                        return self.close(CloseReason::GoneDuringTransfer).await;
                    }
                }
                _ = tokio::time::sleep_until(passive_expiry.unwrap_or(far).into()), if passive_expiry.is_some() => {
                    debug!("passive port released: no transfer within the data timeout");
                    self.passive = None;
                    self.core.event(Event::PassiveExpired, Instant::now());
                }
                // Shutting down: idle sessions go at once, transfers when the grace period ends.
                _ = self.shared.stopping.cancelled(), if self.transfer.is_none() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                _ = self.shared.closing.cancelled(), if self.transfer.is_some() => {
                    return self.close(CloseReason::Shutdown).await;
                }
                // An administrator closes the session, whatever it is doing.
                _ = self.handle.kicked() => {
                    return self.close(CloseReason::Kicked).await;
                }
                // A reload: the loop takes the new configuration (and logs out a user who was
                // disabled or removed) before waiting again.
                Ok(()) = self.reloaded.changed() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(far).into()), if self.transfer.is_none() && deadline.is_some() => {
                    let out = self.core.timeout();
                    let reason = self.answer_and_end(out).await.unwrap_or(CloseReason::IdleTimeout);
                    return self.close(reason).await;
                }
            }
        }
    }

    /// Take the configuration in force now. After a reload a logged-in user is checked
    /// against the new users (the core decides what it means). `Some(reason)` to end.
    pub(super) async fn refresh_live(&mut self) -> Option<CloseReason> {
        let live = self.shared.live();
        if live.generation == self.live.generation {
            return None;
        }
        self.live = live;
        self.core.set_settings(settings(&self.live, &self.listener));
        let name = self.core.user()?;
        let update = if is_anonymous_name(name) && self.live.users.get(name).is_none() {
            let anon = &self.live.config.anonymous;
            if anon.enabled {
                AccountUpdate::Anonymous(anon.permissions)
            } else {
                AccountUpdate::AnonymousOff
            }
        } else {
            match self.live.users.get(name) {
                Some(user) if !user.disabled => {
                    AccountUpdate::Kept(user.permissions, user.tls_policy)
                }
                _ => AccountUpdate::Gone,
            }
        };
        let out = self.core.event(Event::Reloaded(update), Instant::now());
        self.answer_and_end(out).await
    }

    /// Send the replies of an output whose only possible effect is the end (a timeout, a
    /// reload): the client may be gone, the session ends all the same.
    pub(super) async fn answer_and_end(&mut self, mut out: Output) -> Option<CloseReason> {
        for reply in out.replies.drain() {
            let _ = self.send(reply).await;
        }
        match out.effect {
            Some(Effect::Close(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Queue what the control connection holds now, without waiting: `Some(true)` when
    /// something was read, `Some(false)` when the client closed it, `None` when nothing is there.
    /// Not async, so that its buffer is never part of the session's future.
    pub(super) fn input_now(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 512];
        match self.read_now(&mut chunk) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Ok(0) | Err(_) => Some(false),
            Ok(n) => {
                self.ingest(chunk.get(..n).unwrap_or_default());
                Some(true)
            }
        }
    }

    /// End the session: cancel a transfer (an unfinished upload is discarded by its drop).
    pub(super) fn close(
        &mut self,
        reason: CloseReason,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CloseReason> + Send + '_>> {
        // Boxed, as dispatch: an idle session's future need not have room for its ending.
        Box::pin(self.close_now(reason))
    }

    pub(super) async fn close_now(&mut self, reason: CloseReason) -> CloseReason {
        if let Some(mut running) = self.transfer.take() {
            running.cancel.cancel();
            if let Ok(outcome) = (&mut running.handle).await {
                if let Some(upload) = outcome.upload {
                    let _ = blocking(move || {
                        upload.abort();
                        Ok(())
                    })
                    .await;
                }
            }
            let bytes = running.progress.load(Ordering::Relaxed);
            info!(
                verb = running.kind.verb().name(),
                path = %self.transfer_target().0,
                bytes,
                result = "aborted",
                "transfer ended by session close"
            );
            self.account_transfer(
                &running,
                bytes,
                running.started.elapsed(),
                TransferResult::Aborted,
                true,
            );
            // The transfer is cleaned up; now the client may hear about it.
            let why = match reason {
                CloseReason::Shutdown => Some("the server is shutting down"),
                CloseReason::Kicked => Some("the session was closed by an administrator"),
                _ => None,
            };
            if let Some(why) = why {
                let _ = self
                    .send(Reply::new(
                        426,
                        format!("Transfer aborted: {why}; the data is incomplete"),
                    ))
                    .await;
            }
        }
        let goodbye = match reason {
            CloseReason::Shutdown => Some("Server shutting down; please reconnect later"),
            CloseReason::Kicked => Some("Session closed by an administrator"),
            _ => None,
        };
        if let Some(text) = goodbye {
            let _ = self.send(Reply::new(421, text)).await;
        }
        // A TLS close_notify waits for the peer to take it; a client that stopped reading
        // must not keep the session (and its place in the limits) alive.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.ctrl.shutdown()).await;
        // Closing with unread input makes the kernel send a reset, which can destroy the last
        // reply before the client reads it: take what the client still sends, briefly (a
        // little time and a few kilobytes, so a flood cannot hold the session).
        let mut sink = [0u8; 512];
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            let mut left = 64 * 1024usize;
            while let Ok(n) = self.ctrl.read(&mut sink).await {
                if n == 0 || n >= left {
                    break;
                }
                left -= n;
            }
        })
        .await;
        reason
    }

    /// Take bytes read from the control connection. Callers read only while the queue has
    /// room, a chunk at a time, so the input buffer stays within a line plus a chunk.
    pub(super) fn ingest(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        self.split_lines();
    }

    /// Move complete lines from the input buffer to the queue, never past
    /// [`MAX_QUEUED_LINES`]: a chunk of 1,000 empty lines must not become 1,000 queued lines.
    /// The rest waits in the buffer (which the loop does not add to while the queue is full).
    pub(super) fn split_lines(&mut self) {
        if self.too_long.is_some() {
            // The front of the buffer is the over-long line; nothing after it runs.
            return;
        }
        let max = self.live.config.limits.max_line_length;
        while self.lines.len() < MAX_QUEUED_LINES {
            match line::take_line(&mut self.inbuf, max) {
                Ok(Some(line)) => self.lines.push_back(line),
                Ok(None) => break,
                Err(LineTooLong { limit }) => {
                    // Answered once the lines before it have run (see `serve`).
                    self.too_long = Some(limit);
                    break;
                }
            }
        }
    }

    /// The next line to run: anything when idle; during a transfer only ABOR or a bare STAT
    /// (from anywhere in the queue, since they are meant to overtake).
    pub(super) fn next_runnable_line(&mut self) -> Option<Vec<u8>> {
        // Lines that waited in the buffer while the queue was full.
        self.split_lines();
        if self.transfer.is_none() {
            return self.lines.pop_front();
        }
        let pos = self
            .lines
            .iter()
            .position(|l| core::runs_during_transfer(l))?;
        self.lines.remove(pos)
    }

    /// Remove an ABOR the client has already sent (read now, without waiting); whether there
    /// was one.
    pub(super) fn take_queued_abor(&mut self) -> bool {
        if self.client_gone() {
            return false;
        }
        let pos = self.lines.iter().position(|l| core::is_abor_line(l));
        pos.and_then(|p| self.lines.remove(p)).is_some()
    }

    /// Send a reply. A client that stops reading cannot hold the session forever: the write
    /// gives up after the idle timeout.
    pub(super) async fn send(&mut self, reply: Reply) -> io::Result<()> {
        debug!(code = reply.code, text = %reply.lines.join(" | "), "reply");
        let limit = self.live.config.limits.idle_timeout();
        match tokio::time::timeout(limit, self.ctrl.write_all(&reply.render())).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its replies",
            )),
        }
    }

    /// Read what the control connection holds right now (see [`Stream::read_now`]).
    pub(super) fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ctrl.read_now(buf)
    }

    /// Whether the client has closed the control connection, without waiting; bytes that are
    /// waiting are kept as commands. It reads only while the queue has room, like the command
    /// loop: a client that floods the control connection is read no faster than it is served
    /// (a full queue cannot tell a closed connection, so it counts as not gone; the loop sees
    /// the close once it has run the queued commands).
    pub(super) fn client_gone(&mut self) -> bool {
        let mut buf = [0u8; 512];
        while self.lines.len() < MAX_QUEUED_LINES && self.too_long.is_none() {
            match self.read_now(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.ingest(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }

    pub(super) async fn dispatch(&mut self, raw: &[u8]) -> io::Result<Flow> {
        let parsed = command::parse(raw);
        match &parsed {
            Err(e) => debug!(error = %e, "bad command"),
            Ok(Command::Pass(_)) => debug!("command PASS ****"),
            Ok(other) => debug!(command = ?other, "command"),
        }
        let out = self.core.command(parsed, Instant::now());
        self.drive(out).await
    }

    /// Send the core's replies and carry out its effects, feeding each result back, until it
    /// has nothing more to do.
    pub(super) async fn drive(&mut self, mut out: Output) -> io::Result<Flow> {
        let mut scratch = Scratch::default();
        loop {
            if !matches!(out.effect, Some(Effect::StartTransfer { .. })) {
                self.follow_core();
            }
            for reply in out.replies.drain() {
                self.send(reply).await?;
            }
            let Some(effect) = out.effect.take() else {
                return Ok(Flow::Continue);
            };
            match self.carry_out(effect, &mut scratch).await {
                Step::Event(event) => out = self.core.event(event, Instant::now()),
                Step::Done => return Ok(Flow::Continue),
                Step::Close(reason) => return Ok(Flow::Close(reason)),
            }
        }
    }

    /// Drop what the core's state no longer stands for: the home once logged out, the passive
    /// port once it is no longer the data set-up.
    pub(super) fn follow_core(&mut self) {
        if self.core.user().is_none() {
            self.home = None;
        }
        if !matches!(self.core.data(), DataSetup::Passive { .. }) {
            self.passive = None;
        }
    }
}
