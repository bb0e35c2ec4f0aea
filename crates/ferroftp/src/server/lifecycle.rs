//! The [`Server`]: bind every listener (failing before serving anything), run the accept loops
//! and the side listeners, do the reloads asked for, and shut down: stop accepting, let
//! running transfers drain, then cut off what is left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::homes::prepare_homes;
use super::listeners::Listeners;
use super::reload::{reload, watch_certificates};
use super::{Announced, Live, SessionTable, Shared, StartError, TokenError, admin, data, guard};
use crate::config::{Config, ListenerConfig};
use crate::error::BindError;
use crate::observe::metrics::{self, Metrics};
use crate::observe::xferlog::Xferlog;
use crate::tls::Tls;
use crate::users::UserDb;

/// Loads the configuration and the users again, for a reload: the file, with the command
/// line's overrides on top, as at start.
///
/// The error is the whole explanation as one text (the caller flattens its causes into it):
/// a refused reload shows it as it is.
pub type Loader = Box<
    dyn Fn() -> Result<(Config, UserDb), Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// A bound, not yet running server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(TcpListener, ListenerConfig)>,
    /// The metrics listener (`metrics.listen`), if any.
    metrics_listener: Option<TcpListener>,
    /// The admin API listener (`admin.listen`), if any.
    admin_listener: Option<TcpListener>,
    loader: Option<Arc<Loader>>,
    reloads: (
        tokio::sync::mpsc::Sender<ReloadRequest>,
        tokio::sync::mpsc::Receiver<ReloadRequest>,
    ),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// A reload asked for, and where to say how it went.
type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// Asks a running server to reload its configuration (as SIGHUP does).
#[derive(Debug, Clone)]
pub struct ReloadHandle(tokio::sync::mpsc::Sender<ReloadRequest>);

impl ReloadHandle {
    /// Reload; the summary of what changed, or why the new configuration was refused (the
    /// old one then stays in force, whole).
    pub async fn reload(&self) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the server is shutting down".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the server is shutting down".to_string()))
    }
}

/// Check the admin API's token file as `serve` would read it (readable, not empty; a warning
/// is logged if others may read it).
pub fn check_admin_token(path: &std::path::Path) -> Result<(), TokenError> {
    admin::load_token(path).map(|_| ())
}

/// Bind `l`, naming the key and the reason on failure.
pub(super) async fn bind_listener(l: &ListenerConfig) -> Result<TcpListener, BindError> {
    crate::error::bind(l.bind, "listener.bind").await
}

/// Check that active data connections can come from the port below `listener`'s, as
/// `active.source_port_below_listener` asks.
fn check_source_port(listener: &TcpListener) -> Result<(), StartError> {
    let local = listener.local_addr()?;
    let port = local.port().saturating_sub(1);
    let probe = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    probe.set_reuseaddr(true)?;
    probe.bind(SocketAddr::new(local.ip(), port)).map_err(|error| {
        let hint = if port < 1024 && error.kind() == io::ErrorKind::PermissionDenied {
            " (ports below 1024 need CAP_NET_BIND_SERVICE: `setcap cap_net_bind_service=+ep /usr/local/bin/ferroftp`, or AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit)"
        } else {
            ""
        };
        StartError::SourcePort {
            port,
            listener: local,
            error,
            hint,
        }
    })?;
    Ok(())
}

/// Check that TLS is there for every listener that needs it.
pub(super) fn check_tls(config: &Config, tls: Option<&Arc<Tls>>) -> Result<(), StartError> {
    if tls.is_none() {
        if let Some(l) = config.listeners.iter().find(|l| l.mode.offers_tls()) {
            return Err(StartError::NoTls {
                bind: l.bind,
                mode: l.mode,
            });
        }
    }
    Ok(())
}

impl Server {
    /// Bind every listener of `config`; fails before serving anything if one cannot be bound.
    pub async fn bind(
        config: Config,
        users: UserDb,
        tls: Option<Arc<Tls>>,
    ) -> Result<Self, StartError> {
        let root = std::path::absolute(&config.root)?;
        prepare_homes(&config, &users).map_err(StartError::Homes)?;
        check_tls(&config, tls.as_ref())?;
        let mut listeners = Vec::new();
        for l in &config.listeners {
            listeners.push((bind_listener(l).await?, l.clone()));
        }
        if config.active.source_port_below_listener {
            for (listener, _) in &listeners {
                check_source_port(listener)?;
            }
        }
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let (admin_listener, admin_token) = match (config.admin.listen, &config.admin.token_file) {
            (Some(addr), Some(file)) => {
                let token = admin::load_token(file)?;
                (Some(admin::bind(addr).await?), Some(Arc::new(token)))
            }
            _ => (None, None),
        };
        let metrics = Arc::new(Metrics::default());
        let xferlog = Xferlog::new(config.log.xferlog.as_deref(), &metrics)?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shared = Arc::new(Shared {
            live: std::sync::RwLock::new(Arc::new(Live {
                ports: data::PassivePorts::new(config.passive.ports),
                root,
                users: crate::users::directory(config.users_file.as_deref(), users),
                tls,
                generation: 0,
                rehashed: Mutex::default(),
                admin_token,
                config: config.clone(),
            })),
            sessions: SessionTable::default(),
            hash_pool: Semaphore::new(workers),
            guard: Arc::new(guard::Guard::new(config.bans.clone())),
            storage: Arc::new(crate::storage::local::LocalBackend::default()),
            announced: Announced::default(),
            stopping: tokio_util::sync::CancellationToken::new(),
            closing: tokio_util::sync::CancellationToken::new(),
            metrics,
            xferlog,
            registry: Arc::default(),
            listening: Mutex::default(),
            reloaded: tokio::sync::watch::Sender::new(0),
            next_id: AtomicU64::new(1),
        });
        Ok(Self {
            shared,
            listeners,
            metrics_listener,
            admin_listener,
            loader: None,
            reloads: tokio::sync::mpsc::channel(4),
        })
    }

    /// How to load the configuration again on reload (without it, reloads only re-read the
    /// certificate files).
    pub fn with_loader(mut self, loader: Loader) -> Self {
        self.loader = Some(Arc::new(loader));
        self
    }

    /// Serve users' files from `backend` instead of the local file system (tests, and other
    /// back-ends to come). Call it before [`Server::run`].
    pub fn with_storage(mut self, backend: Arc<dyn crate::storage::StorageBackend>) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.storage = backend,
            // Not reached: nothing shares the state before `run`.
            None => tracing::error!("the storage back-end cannot change once the server runs"),
        }
        self
    }

    /// A handle to ask the running server for a reload.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reloads.0.clone())
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// The address the metrics are served on, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The address the admin API is served on, if it is.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` completes; then stop accepting and give running sessions up to
    /// `drain` to finish. Reloads asked for meanwhile (see [`Server::reload_handle`]) are done
    /// between connections, without dropping any session.
    pub async fn run(self, shutdown: impl Future<Output = ()>, drain: Duration) {
        let Server {
            shared,
            listeners,
            metrics_listener,
            admin_listener,
            loader,
            reloads: (keep, mut requests),
        } = self;
        let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let mut accepting = Listeners {
            running: Vec::new(),
            metrics: None,
            admin: None,
            // The admin API asks for reloads like SIGHUP does.
            reload: ReloadHandle(keep),
        };
        for (listener, cfg) in listeners {
            accepting.start(listener, cfg, &shared, &sessions);
        }
        accepting.publish(&shared);
        if let Some(listener) = metrics_listener {
            accepting.start_metrics(listener, shared.live().config.metrics.listen, &shared);
        }
        if let Some(listener) = admin_listener {
            accepting.start_admin(listener, shared.live().config.admin.listen, &shared);
        }
        let watcher = tokio::spawn(watch_certificates(Arc::clone(&shared)));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(reply) = requests.recv() => {
                    let result = reload(&shared, loader.as_deref(), &mut accepting, &sessions).await;
                    match &result {
                        Ok(summary) => tracing::info!(%summary, "configuration reloaded"),
                        Err(reason) => {
                            tracing::error!(%reason, "reload refused; the previous configuration stays in force");
                            // Rotated logs are let go of all the same.
                            shared.xferlog.reopen();
                        }
                    }
                    let _ = reply.send(result);
                }
            }
        }
        accepting.stop_all();
        if let Some((_, admin)) = accepting.admin.take() {
            admin.abort();
        }
        watcher.abort();
        let shared = &shared;
        shared.stopping.cancel();
        tracing::info!(
            sessions = shared.sessions.total(),
            grace_secs = drain.as_secs(),
            "shutting down: no new connections; idle sessions closed, running transfers may finish"
        );
        let mut sessions = sessions.lock().await;
        let drained = tokio::time::timeout(drain, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        // Every session has ended (or is dropped just below) before the transfer log closes.
        let finish = |shared: &Arc<Shared>| {
            let shared = Arc::clone(shared);
            tokio::task::spawn_blocking(move || shared.xferlog.close(Duration::from_secs(2)))
        };
        if drained.is_err() {
            tracing::warn!(
                sessions = shared.sessions.total(),
                "transfers still running after {} s: cutting them off (unfinished uploads are discarded)",
                drain.as_secs()
            );
            // Each session cleans up, tells its client (426, 421) and logs; a few seconds for
            // that, then whatever is left is dropped.
            shared.closing.cancel();
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                while sessions.join_next().await.is_some() {}
            })
            .await;
            if closed.is_err() {
                tracing::warn!("sessions did not close in time: dropping them");
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
            }
        }
        accepting.stop_metrics();
        let _ = finish(shared).await;
    }
}
