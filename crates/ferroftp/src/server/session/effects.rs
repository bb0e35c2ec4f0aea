//! Carrying out the core's effects: the dispatch of each effect, passive ports, active
//! connections and file operations.

use super::*;

/// The address PASV announces to this client: the first `passive.announce` rule for its
/// network, else `passive.address`, else the address it connected to.
pub(super) async fn announce_address(
    live: &Live,
    shared: &Shared,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<std::net::Ipv4Addr, PassiveFailure> {
    let cfg = &live.config.passive;
    let client = peer.ip();
    let wanted = cfg
        .announce
        .iter()
        .find(|r| r.from.iter().any(|n| n.contains(&client)))
        .map(|r| r.address.as_str())
        .or(cfg.address.as_deref());
    let ip = match wanted {
        Some(name) => {
            let every = std::time::Duration::from_secs(cfg.resolve_every_secs);
            shared.announced.resolve(name, every).await.map_err(|e| {
                tracing::error!(address = %name, error = %e, "cannot resolve the passive address");
                PassiveFailure::Unresolvable
            })?
        }
        None => match local.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => return Err(PassiveFailure::Ipv6Local),
        },
    };
    if is_internal(IpAddr::V4(ip)) && !is_internal(client) {
        shared.announced.warn_once(ip, client);
    }
    Ok(ip)
}

/// Whether `ip` can only be reached from inside some network: private, loopback, link-local,
/// carrier-grade NAT or unique-local.
pub(super) fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl Session {
    pub(super) async fn carry_out(&mut self, effect: Effect, scratch: &mut Scratch) -> Step {
        match effect {
            Effect::CheckCertificate { name } => {
                let user = self.certificate_user(&name).map(|user| {
                    scratch.found = Some(FoundHome::Configured(user.home.clone()));
                    Account {
                        name: user.name,
                        perms: user.permissions,
                        tls_policy: user.tls_policy,
                    }
                });
                Step::Event(Event::Certificate(user))
            }
            Effect::VerifyPassword { name, password } => {
                Step::Event(self.verify_password(name, password, scratch).await)
            }
            Effect::OpenHome { account, method } => Step::Event(Event::HomeOpened(
                self.open_home(account, method, scratch).await,
            )),
            Effect::PrepareTls(_) => {
                Step::Event(match self.live.tls.as_ref().map(|t| t.session()) {
                    Some(Ok(session)) => {
                        scratch.tls_ready = Some(session);
                        Event::TlsReady
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot set up TLS for a session");
                        Event::TlsUnavailable { configured: true }
                    }
                    None => Event::TlsUnavailable { configured: false },
                })
            }
            Effect::Handshake(_) => Step::Event(self.handshake(scratch).await),
            Effect::OpenPassive(kind) => Step::Event(self.open_passive(kind).await),
            Effect::Storage(op) => Step::Event(Event::Storage(self.storage(op).await)),
            Effect::PrepareTransfer(kind, source) => {
                Step::Event(self.prepare_transfer(kind, source, scratch).await)
            }
            Effect::StartTransfer {
                kind,
                data,
                protected,
            } => match self.start_transfer(kind, data, protected, scratch) {
                Some(event) => Step::Event(event),
                None => Step::Done,
            },
            Effect::DiscardTransfer => {
                scratch.prepared = None;
                Step::Done
            }
            Effect::AbortTransfer => {
                if let Some(running) = &self.transfer {
                    running.cancel.cancel();
                }
                Step::Done
            }
            Effect::TransferStatus => Step::Event(Event::TransferProgress {
                bytes: self
                    .transfer
                    .as_ref()
                    .map_or(0, |r| r.progress.load(Ordering::Relaxed)),
                now: Instant::now(),
            }),
            Effect::Close(reason) => Step::Close(reason),
        }
    }

    // ---- access ----

    pub(super) async fn open_passive(&mut self, kind: PassiveKind) -> Event {
        let announce = match kind {
            PassiveKind::Pasv => match announce_address(
                &Arc::clone(&self.live),
                &Arc::clone(&self.shared),
                self.core.peer(),
                self.core.local(),
            )
            .await
            {
                Ok(ip) => Some(ip),
                Err(why) => return Event::PassiveFailed(why),
            },
            PassiveKind::Epsv => None,
        };
        // A new PASV replaces the old one, whose port is released right here.
        self.passive = None;
        let listener = match self.live.ports.bind(self.core.local().ip()) {
            Ok(l) => l.counted(self.shared.metrics.passive_port()),
            Err(e) => {
                tracing::error!(error = %e, "cannot open a passive port");
                return Event::PassiveFailed(PassiveFailure::Bind(e.to_string()));
            }
        };
        let local_port = listener.port();
        debug!(port = local_port, "passive port open");
        self.passive = Some(listener);
        let port = self.announced_port(local_port);
        Event::PassiveOpened {
            local_port,
            port,
            pasv: announce.map(|ip| std::net::SocketAddrV4::new(ip, port)),
        }
    }

    /// The port a client is told for passive port `port` (NAT gateways may forward another
    /// range to ours: `passive.announce_ports`).
    pub(super) fn announced_port(&self, port: u16) -> u16 {
        let cfg = &self.live.config.passive;
        match (cfg.ports, cfg.announce_ports) {
            (Some(ours), Some(theirs)) if port >= ours.low => {
                theirs.low.saturating_add(port - ours.low)
            }
            _ => port,
        }
    }

    /// The data connection the core's set-up names: accept on the passive port, or connect out.
    pub(super) fn data_connection(&mut self, data: DataSetup) -> Option<ConnectFuture> {
        match data {
            DataSetup::None => None,
            DataSetup::Passive { .. } => {
                let listener = self.passive.take()?;
                let cfg = &self.live.config;
                let proxies = self
                    .listener
                    .proxy_protocol
                    .then(|| Arc::new(cfg.proxy.trusted.clone()));
                Some(Box::pin(listener.accept(
                    self.core.peer().ip(),
                    cfg.passive.allow_foreign_ip,
                    cfg.limits.data_timeout(),
                    proxies,
                )))
            }
            DataSetup::Active(target) => {
                let local_ip = self.core.local().ip();
                let timeout = self.live.config.limits.data_timeout();
                // 20 for 21, 989 for 990: what classic firewall rules expect.
                let source_port = self
                    .live
                    .config
                    .active
                    .source_port_below_listener
                    .then(|| self.core.local().port().saturating_sub(1));
                Some(Box::pin(data::connect_active(
                    local_ip,
                    target,
                    timeout,
                    source_port,
                )))
            }
        }
    }

    // ---- storage ----

    pub(super) fn fs(&self) -> Result<Arc<dyn Storage>, StorageError> {
        self.home
            .as_ref()
            .map(|h| Arc::clone(&h.fs))
            .ok_or(StorageError::PermissionDenied)
    }

    /// Run a file command's storage operation on a blocking thread.
    pub(super) async fn storage(&mut self, op: StorageOp) -> Result<StorageDone, StorageError> {
        let fs = self.fs()?;
        match op {
            StorageOp::Metadata(p) => blocking(move || fs.metadata(&p))
                .await
                .map(StorageDone::Entry),
            StorageOp::Mkdir(p) => blocking(move || fs.mkdir(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::Rmdir(p) => blocking(move || fs.rmdir(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::RemoveFile(p) => blocking(move || fs.remove_file(&p))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::Rename { from, to, replace } => blocking(move || {
                if replace {
                    fs.rename(&from, &to)
                } else {
                    fs.rename_no_replace(&from, &to)
                }
            })
            .await
            .map(|()| StorageDone::Done),
            StorageOp::AsciiSize(p) => blocking(move || {
                let (file, _) = fs.open_read(&p, 0)?;
                ascii_size(file).map_err(StorageError::from)
            })
            .await
            .map(StorageDone::Size),
            StorageOp::SetModified(p, time) => blocking(move || fs.set_modified(&p, time))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::SetMode(p, mode) => blocking(move || fs.set_mode(&p, mode))
                .await
                .map(|()| StorageDone::Done),
            StorageOp::StatListing { cwd, arg } => {
                let perms = self
                    .core
                    .account()
                    .map_or(Permissions::NONE, |(a, _)| a.perms);
                let reply = stat_listing(fs, &cwd, &arg, perms)
                    .await
                    .unwrap_or_else(|r| r);
                Ok(StorageDone::Reply(reply))
            }
        }
    }

    // ---- transfers ----
}
