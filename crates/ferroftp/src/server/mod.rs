//! The server: listeners, the session table and its limits, and the shared state that every
//! session reads. Each control connection runs as one task ([`session`]); data connections
//! and transfers live in [`data`].

mod admin;
mod data;
mod error;
mod guard;
mod proxy;
mod registry;
mod session;
mod stream;

use futures_util::FutureExt as _;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use admin::TokenError;
pub use error::StartError;

use crate::config::{Config, ListenerConfig, ListenerMode};
use crate::error::BindError;
use crate::observe::metrics::{self, ListenerStats, Metrics};
use crate::observe::xferlog::Xferlog;
use crate::tls::Tls;
use crate::users::{UserDb, UserDirectory};

/// What a reload replaces, all at once: sessions take a fresh snapshot before each command.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) config: Config,
    pub(crate) root: PathBuf,
    /// Where the users come from: the users file loaded at start or at the last reload (or
    /// this run's generated user), behind the trait that other sources implement too.
    pub(crate) users: Arc<dyn UserDirectory>,
    pub(crate) ports: Arc<data::PassivePorts>,
    /// Certificates and TLS configuration; `None` when no listener offers TLS.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Counts reloads, so that a session notices its user may have changed.
    pub(crate) generation: u64,
    /// Users whose legacy hash an upgrade to argon2id was started for since these users were
    /// loaded: one attempt each (a users file the server cannot write is not retried at every
    /// login, and an upgraded one is not read again before it is reloaded).
    pub(crate) rehashed: Mutex<std::collections::HashSet<String>>,
    /// The admin API's bearer token (`admin.token_file`), when the API is on.
    pub(crate) admin_token: Option<Arc<admin::Token>>,
}

/// State shared by all sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    live: std::sync::RwLock<Arc<Live>>,
    pub(crate) sessions: SessionTable,
    /// Bounds the argon2 verifications running at once, so that a login storm cannot take
    /// every blocking thread and all the memory (each costs ~19 MiB).
    pub(crate) hash_pool: Semaphore,
    /// Failed-login counts and bans.
    pub(crate) guard: Arc<guard::Guard>,
    /// Opens each user's storage at login (the local file system unless
    /// [`Server::with_storage`] chose another back-end).
    pub(crate) storage: Arc<dyn crate::storage::StorageBackend>,
    /// Passive addresses looked up, and whether a private one was announced to the internet.
    pub(crate) announced: Announced,
    /// Cancelled when the server starts shutting down: idle sessions close at once.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Cancelled when the shutdown grace period is over: running transfers are cut off.
    pub(crate) closing: tokio_util::sync::CancellationToken,
    /// Counters and gauges for `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
    /// The xferlog(5) transfer log, if kept.
    pub(crate) xferlog: Xferlog,
    /// The sessions open now, for the admin API.
    pub(crate) registry: Arc<registry::Registry>,
    /// The FTP listeners serving now: bound address and mode.
    listening: Mutex<Vec<(SocketAddr, ListenerMode)>>,
    /// The configuration generation, sent on each reload: idle sessions wake up to take the
    /// new configuration (a disabled user is logged out at once, not at its next command).
    pub(crate) reloaded: tokio::sync::watch::Sender<u64>,
    next_id: AtomicU64,
}

/// Host names of passive addresses, resolved and kept for a while (dynamic DNS changes are
/// picked up when the entry is older than `passive.resolve_every_secs`).
#[derive(Debug, Default)]
pub(crate) struct Announced {
    resolved: Mutex<HashMap<String, (std::net::Ipv4Addr, std::time::Instant)>>,
    warned: std::sync::atomic::AtomicBool,
}

impl Announced {
    /// The IPv4 address of `name` (an address or a host name), looked up again when the last
    /// answer is older than `every`; if a lookup fails, the last answer goes on being used.
    pub(crate) async fn resolve(
        &self,
        name: &str,
        every: Duration,
    ) -> io::Result<std::net::Ipv4Addr> {
        if let Ok(ip) = name.parse() {
            return Ok(ip);
        }
        let lock = || self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let cached = lock().get(name).copied();
        if let Some((ip, at)) = cached {
            if at.elapsed() < every {
                return Ok(ip);
            }
        }
        let looked_up = tokio::net::lookup_host((name, 0))
            .await
            .and_then(|mut addrs| {
                addrs
                    .find_map(|a| match a.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address"))
            });
        match (looked_up, cached) {
            (Ok(ip), old) => {
                if old.is_some_and(|(o, _)| o != ip) {
                    tracing::info!(address = name, from = %old.map(|(o, _)| o).unwrap_or(ip), to = %ip, "the passive address changed");
                }
                lock().insert(name.to_owned(), (ip, std::time::Instant::now()));
                Ok(ip)
            }
            (Err(e), Some((ip, _))) => {
                tracing::warn!(address = name, error = %e, last = %ip, "cannot resolve the passive address again; using the last answer");
                Ok(ip)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Log, once per run, that a private address is being announced to a public client.
    pub(crate) fn warn_once(&self, announced: std::net::Ipv4Addr, client: IpAddr) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(%announced, %client, "PASV announced a private or loopback address to a client on the internet: it cannot connect; set passive.address to the public address (or a [[passive.announce]] rule); EPSV needs none");
        }
    }
}

/// Counts sessions in total and per client IP.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A place in the session table; freed on drop.
#[derive(Debug)]
pub(crate) struct SessionPermit {
    shared: Arc<Shared>,
    ip: IpAddr,
    /// Counted in its listener's open sessions until dropped.
    _open: Option<metrics::SessionOpen>,
}

/// Why a connection was turned away.
enum Refusal {
    Total(usize),
    PerIp(usize),
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions open now.
    pub(crate) fn total(&self) -> usize {
        self.lock().values().sum()
    }
}

impl Shared {
    /// The configuration, users and TLS state in force now.
    pub(crate) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_live(&self, live: Live) {
        let generation = live.generation;
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        self.reloaded.send_replace(generation);
    }

    /// The FTP listeners serving now: bound address and mode.
    pub(crate) fn listening(&self) -> Vec<(SocketAddr, ListenerMode)> {
        self.listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionPermit, Refusal> {
        let live = self.live();
        let limits = &live.config.limits;
        let mut table = self.sessions.lock();
        let total: usize = table.values().sum();
        if total >= limits.max_sessions {
            return Err(Refusal::Total(limits.max_sessions));
        }
        let n = table.entry(ip).or_insert(0);
        if *n >= limits.max_sessions_per_ip {
            return Err(Refusal::PerIp(limits.max_sessions_per_ip));
        }
        *n += 1;
        Ok(SessionPermit {
            shared: Arc::clone(self),
            ip,
            _open: None,
        })
    }

    /// The metrics as the exposition text, with the values read at scrape time.
    fn render_metrics(&self) -> String {
        self.metrics.render(metrics::Snapshot {
            bans_active: self.guard.active_bans(std::time::Instant::now()),
        })
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut table = self.shared.sessions.lock();
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Live {
    /// The directory a user's (or anonymous) `home` names, checked against the root.
    pub(crate) fn home_dir(&self, home: Option<&std::path::Path>) -> Result<PathBuf, String> {
        crate::users::resolve_home(&self.root, home, self.config.auth.allow_homes_outside_root)
    }

    /// Whether user `name` may be given `home`, as loading the users file would check.
    pub(crate) fn check_new_home(
        &self,
        name: &str,
        home: Option<&std::path::Path>,
    ) -> Result<(), String> {
        let mut user = crate::users::User::new(name);
        user.home = home.map(std::path::Path::to_owned);
        let users = UserDb::empty().with_user(user, String::new());
        let anon = &self.config.anonymous;
        crate::users::check_homes(
            &self.root,
            &users,
            anon.enabled.then_some(anon.home.as_path()),
            self.config.auth.allow_homes_outside_root,
            "users",
        )
    }
}

/// Check the homes of `users` (and that no anonymous home holds one) against the root of
/// `config`, as loading them would: what the user commands (`passwd`, `user set`,
/// `import-users`) check before they write a users file. The error names the user, the
/// home and the key `auth.allow_homes_outside_root`.
pub fn check_user_homes(config: &Config, users: &UserDb) -> Result<(), String> {
    let root = std::path::absolute(&config.root).map_err(|e| format!("root: {e}"))?;
    check_homes_under(config, &root, users)
}

/// [`check_user_homes`] with the root already made absolute.
fn check_homes_under(
    config: &Config,
    root: &std::path::Path,
    users: &UserDb,
) -> Result<(), String> {
    let origin = config.users_file.as_ref().map_or_else(
        || "users".to_owned(),
        |p| format!("users file {}", p.display()),
    );
    let anon = &config.anonymous;
    crate::users::check_homes(
        root,
        users,
        anon.enabled.then_some(anon.home.as_path()),
        config.auth.allow_homes_outside_root,
        &origin,
    )
}

/// Everything [`Server::bind`] and a reload check about homes, creating nothing: the homes of
/// `users` and of anonymous logins against the root, and that the anonymous home is a
/// directory (or is the default one, missing, which the server makes). `check-config` runs
/// it so that a file it calls valid is one `serve` accepts. Returns the anonymous home to
/// create, if any.
pub fn check_homes(config: &Config, users: &UserDb) -> Result<Option<PathBuf>, String> {
    let root = std::path::absolute(&config.root).map_err(|e| format!("root: {e}"))?;
    check_homes_under(config, &root, users)?;
    let anon = &config.anonymous;
    if !anon.enabled {
        return Ok(None);
    }
    let home = crate::users::resolve_home(
        &root,
        Some(&anon.home),
        config.auth.allow_homes_outside_root,
    )
    .map_err(|why| format!("config key `anonymous.home`: {why}"))?;
    if home.is_dir() {
        return Ok(None);
    }
    if anon.home == std::path::Path::new(crate::config::DEFAULT_ANONYMOUS_HOME) && !home.exists() {
        return Ok(Some(home));
    }
    Err(format!(
        "config key `anonymous.home`: {} is not a directory; create it, or leave the key out for \"pub\" under the root",
        home.display()
    ))
}

/// [`check_homes`] before homes are put in force, at start and at each reload; the default
/// anonymous home is made when missing.
fn prepare_homes(config: &Config, users: &UserDb) -> Result<(), String> {
    if let Some(home) = check_homes(config, users)? {
        crate::storage::local::create_dir(&home).map_err(|e| {
            format!(
                "cannot create the anonymous home {} (anonymous.home): {e}",
                home.display()
            )
        })?;
        tracing::info!(home = %home.display(), "created the anonymous home");
    }
    Ok(())
}

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
async fn bind_listener(l: &ListenerConfig) -> Result<TcpListener, BindError> {
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
fn check_tls(config: &Config, tls: Option<&Arc<Tls>>) -> Result<(), StartError> {
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

/// The accept loops running, with the settings each serves new connections with.
struct Listeners {
    running: Vec<RunningListener>,
    /// The metrics server: the configured address and its task.
    metrics: Option<(Option<SocketAddr>, tokio::task::JoinHandle<()>)>,
    /// The admin API server: the configured address and the server.
    admin: Option<(Option<SocketAddr>, admin::AdminServer)>,
    /// Given to the admin API, to reload.
    reload: ReloadHandle,
}

struct RunningListener {
    /// The address bound (the real port when configured as 0).
    local: Option<SocketAddr>,
    cfg: ListenerConfig,
    settings: tokio::sync::watch::Sender<ListenerConfig>,
    task: tokio::task::JoinHandle<()>,
}

impl Listeners {
    fn start(
        &mut self,
        listener: TcpListener,
        cfg: ListenerConfig,
        shared: &Arc<Shared>,
        sessions: &Arc<tokio::sync::Mutex<JoinSet<()>>>,
    ) {
        let (settings, watch) = tokio::sync::watch::channel(cfg.clone());
        let local = listener.local_addr().ok();
        let task = tokio::spawn(accept_loop(
            listener,
            watch,
            Arc::clone(shared),
            Arc::clone(sessions),
        ));
        self.running.push(RunningListener {
            local,
            cfg,
            settings,
            task,
        });
    }

    /// Show the listeners serving now in the shared state (for the admin API's status).
    fn publish(&self, shared: &Shared) {
        let now = self
            .running
            .iter()
            .map(|r| (r.local.unwrap_or(r.cfg.bind), r.cfg.mode))
            .collect();
        *shared.listening.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Serve the admin API on `listener` (configured as `configured`); stop any running first.
    fn start_admin(
        &mut self,
        listener: TcpListener,
        configured: Option<SocketAddr>,
        shared: &Arc<Shared>,
    ) {
        if let Some((_, old)) = self.admin.take() {
            old.abort();
        }
        let server = admin::spawn(listener, Arc::clone(shared), self.reload.clone());
        self.admin = Some((configured, server));
    }

    fn stop_all(&mut self) {
        for r in self.running.drain(..) {
            r.task.abort();
        }
    }

    /// Serve the metrics on `listener` (configured as `configured`), replacing any running.
    fn start_metrics(
        &mut self,
        listener: TcpListener,
        configured: Option<SocketAddr>,
        shared: &Arc<Shared>,
    ) {
        self.stop_metrics();
        let shared = Arc::clone(shared);
        let render: Arc<dyn Fn() -> String + Send + Sync> =
            Arc::new(move || shared.render_metrics());
        let task = tokio::spawn(metrics::serve(listener, render));
        self.metrics = Some((configured, task));
    }

    /// Stop the metrics server; the returned task ends (and its socket closes) when awaited.
    fn stop_metrics(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let (_, task) = self.metrics.take()?;
        task.abort();
        Some(task)
    }

    /// For each configured listener, the running one it continues: the same configured
    /// address (`127.0.0.1:0` continues a listener configured as `127.0.0.1:0`), each running
    /// listener used at most once.
    fn matches(&self, wanted: &[ListenerConfig]) -> Vec<Option<usize>> {
        let mut used = vec![false; self.running.len()];
        wanted
            .iter()
            .map(|l| {
                let i = self.running.iter().enumerate().position(|(i, r)| {
                    !used.get(i).copied().unwrap_or(true) && r.cfg.bind == l.bind
                })?;
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
                Some(i)
            })
            .collect()
    }
}

/// What a reload does to a side listener (metrics, admin API) configured at `wanted` and
/// running at `running`: `None` leaves it, `Some(Some(socket))` moves it to the new socket
/// (bound here, so that an address that cannot be bound refuses the reload before anything
/// changes), `Some(None)` stops it.
async fn side_listener_change<F, Fut>(
    wanted: Option<SocketAddr>,
    running: Option<SocketAddr>,
    bind: F,
) -> Result<Option<Option<TcpListener>>, String>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = Result<TcpListener, BindError>>,
{
    Ok(match wanted {
        Some(addr) if Some(addr) != running => {
            Some(Some(bind(addr).await.map_err(|e| e.to_string())?))
        }
        Some(_) => None,
        None if running.is_some() => Some(None),
        None => None,
    })
}

/// Load the configuration again and put it in force, or refuse it whole.
async fn reload(
    shared: &Arc<Shared>,
    loader: Option<&Loader>,
    accepting: &mut Listeners,
    sessions: &Arc<tokio::sync::Mutex<JoinSet<()>>>,
) -> Result<String, String> {
    let old = shared.live();
    let Some(loader) = loader else {
        // Nothing to load the configuration from: only the certificate files.
        return match &old.tls {
            Some(tls) => reload_certificate(tls, "reload").map_err(|e| e.to_string()),
            None => Ok("nothing to reload".into()),
        };
    };
    let (config, users) = loader().map_err(|e| e.to_string())?;
    let root = std::path::absolute(&config.root).map_err(|e| format!("root: {e}"))?;
    prepare_homes(&config, &users)?;
    // TLS: the same settings keep the same state, with the certificate files read again;
    // new settings build it anew (and must load).
    let tls_wanted = config.listeners.iter().any(|l| l.mode.offers_tls());
    let mut notes = Vec::new();
    let tls = match (&old.tls, tls_wanted) {
        (_, false) => None,
        (Some(tls), true) if old.config.tls == config.tls => {
            notes.push(reload_certificate(tls, "reload").map_err(|e| e.to_string())?);
            Some(Arc::clone(tls))
        }
        (_, true) => {
            let tls = Tls::new(&config.tls).map_err(|e| format!("TLS: {e}"))?;
            notes.push("TLS settings changed".to_string());
            Some(Arc::new(tls))
        }
    };
    check_tls(&config, tls.as_ref()).map_err(|e| e.to_string())?;
    // New addresses are bound before anything changes: one that cannot be had refuses the
    // whole reload.
    let matches = accepting.matches(&config.listeners);
    let mut added = Vec::new();
    for (l, m) in config.listeners.iter().zip(&matches) {
        if m.is_none() {
            added.push((
                bind_listener(l).await.map_err(|e| e.to_string())?,
                l.clone(),
            ));
        }
    }
    // The metrics listener moves only if its address changed.
    let running_metrics = accepting.metrics.as_ref().and_then(|(addr, _)| *addr);
    let new_metrics =
        side_listener_change(config.metrics.listen, running_metrics, metrics::bind).await?;
    // The admin API: its token file is read again; the listener moves only if its address
    // changed.
    let admin_token = match (config.admin.listen, &config.admin.token_file) {
        (Some(_), Some(file)) => Some(Arc::new(
            admin::load_token(file).map_err(|e| e.to_string())?,
        )),
        _ => None,
    };
    let running_admin = accepting.admin.as_ref().and_then(|(addr, _)| *addr);
    let new_admin = side_listener_change(config.admin.listen, running_admin, admin::bind).await?;
    // The transfer log last: the same file is opened again (logrotate), a new one opened.
    shared
        .xferlog
        .set_path(config.log.xferlog.as_deref(), &shared.metrics)
        .map_err(|e| e.to_string())?;
    // From here on nothing can fail. Addresses that stay keep their socket (and their
    // sessions); their new settings apply to new connections.
    let mut stopped = 0;
    let mut changed = 0;
    let mut running: Vec<Option<RunningListener>> = std::mem::take(&mut accepting.running)
        .into_iter()
        .map(Some)
        .collect();
    for (l, m) in config.listeners.iter().zip(&matches) {
        if let Some(mut r) = m.and_then(|i| running.get_mut(i).and_then(Option::take)) {
            if *l != r.cfg {
                changed += 1;
                r.cfg = l.clone();
                let _ = r.settings.send(l.clone());
            }
            accepting.running.push(r);
        }
    }
    for r in running.into_iter().flatten() {
        r.task.abort();
        // Wait until the task is gone and its socket closed: when the reload is reported
        // done, the port is free (to bind elsewhere) and refuses connections.
        let _ = r.task.await;
        stopped += 1;
    }
    let ports = if old.config.passive.ports == config.passive.ports {
        Arc::clone(&old.ports)
    } else {
        data::PassivePorts::new(config.passive.ports)
    };
    shared.guard.set_config(config.bans.clone());
    let summary = format!(
        "{} users; listeners: {} kept ({} with new settings), {} started, {} stopped; passive ports {}{}",
        users.len(),
        accepting.running.len(),
        changed,
        added.len(),
        stopped,
        config
            .passive
            .ports
            .map_or_else(|| "any".to_string(), |r| r.to_string()),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    );
    let users = crate::users::directory(config.users_file.as_deref(), users);
    shared.set_live(Live {
        config,
        root,
        users,
        ports,
        tls,
        generation: old.generation + 1,
        rehashed: Mutex::default(),
        admin_token,
    });
    accepting.publish(shared);
    for (listener, cfg) in added {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, mode = %cfg.mode, "listening");
        }
        accepting.start(listener, cfg, shared, sessions);
    }
    match new_metrics {
        Some(Some(listener)) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics at /metrics");
            }
            let configured = shared.live().config.metrics.listen;
            accepting.start_metrics(listener, configured, shared);
        }
        Some(None) => {
            if let Some(task) = accepting.stop_metrics() {
                let _ = task.await;
            }
            tracing::info!("metrics listener stopped");
        }
        None => {}
    }
    match new_admin {
        Some(Some(listener)) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving the admin API");
            }
            let old = accepting.admin.take();
            let configured = shared.live().config.admin.listen;
            accepting.start_admin(listener, configured, shared);
            if let Some((_, old)) = old {
                // Not awaited to the end: this reload may have been asked for through it.
                tokio::spawn(old.stop());
            }
        }
        Some(None) => {
            if let Some((_, old)) = accepting.admin.take() {
                tokio::spawn(old.stop());
            }
            tracing::info!("admin API stopped");
        }
        None => {}
    }
    Ok(summary)
}

/// Notice changed certificate files (checked every `tls.reload_check_secs`; 0 = never) and
/// load them; a bad new pair is logged and the old one stays in use.
async fn watch_certificates(shared: Arc<Shared>) {
    let mut watched: Option<(Arc<Tls>, Option<crate::tls::FilesStamp>)> = shared
        .live()
        .tls
        .as_ref()
        .map(|tls| (Arc::clone(tls), crate::tls::files_stamp(tls)));
    loop {
        let every = shared.live().config.tls.reload_check_secs;
        tokio::time::sleep(Duration::from_secs(if every == 0 { 60 } else { every })).await;
        let live = shared.live();
        let Some(tls) = live
            .tls
            .as_ref()
            .filter(|_| live.config.tls.reload_check_secs > 0)
        else {
            watched = None;
            continue;
        };
        let stamp = crate::tls::files_stamp(tls);
        match &watched {
            Some((t, old)) if Arc::ptr_eq(t, tls) && *old != stamp => {
                let tls = Arc::clone(tls);
                tracing::debug!("the certificate files changed");
                // It logs the outcome itself.
                let _ = tokio::task::spawn_blocking(move || {
                    reload_certificate(&tls, "the certificate files changed")
                })
                .await;
            }
            _ => {}
        }
        watched = Some((Arc::clone(tls), stamp));
    }
}

/// Read the certificate files again, and log what happened; a short note of it.
fn reload_certificate(tls: &Tls, trigger: &str) -> Result<String, crate::tls::TlsError> {
    match tls.reload() {
        Ok(Some(new)) => {
            tracing::info!(
                trigger,
                fingerprint = %new.fingerprint,
                names = ?new.names,
                expires = %crate::tls::http_date(new.not_after),
                "TLS certificate reloaded; new connections use it"
            );
            Ok(format!(
                "TLS certificate replaced (SHA-256 {})",
                new.fingerprint
            ))
        }
        Ok(None) => Ok("TLS certificate unchanged".to_string()),
        Err(e) => {
            tracing::error!(trigger, error = %e, "TLS certificate reload rejected; still using the previous certificate");
            Err(e)
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    settings: tokio::sync::watch::Receiver<ListenerConfig>,
    shared: Arc<Shared>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
) {
    let mut backoff = Duration::from_millis(5);
    // Set once on the listening socket, the control options are inherited by every accepted
    // connection (Linux copies them at accept): three system calls fewer per connection.
    // Elsewhere, or if setting them fails here, each connection sets its own.
    let inherited = cfg!(target_os = "linux") && prepare_control_socket(&listener).is_ok();
    // This listener's session counters, by the address it is bound to (made again if a reload
    // changes its mode).
    let local = listener.local_addr().ok();
    let mut stats: Option<Arc<ListenerStats>> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => {
                backoff = Duration::from_millis(5);
                conn
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning, and let sessions end meanwhile.
                tracing::error!(listener = %settings.borrow().bind, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let listener_cfg = settings.borrow().clone();
        let counters = match &stats {
            Some(s) if s.mode() == listener_cfg.mode => Arc::clone(s),
            _ => {
                let addr = local.unwrap_or(listener_cfg.bind);
                let s = shared.metrics.listener(addr, listener_cfg.mode);
                stats = Some(Arc::clone(&s));
                s
            }
        };
        let shared = Arc::clone(&shared);
        let mut set = sessions.lock().await;
        // Reap finished sessions so the set does not grow with every connection ever made.
        while let Some(done) = set.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    // tokio caught it: only that session ended. It is a bug all the same.
                    tracing::error!(error = %e, "a session task panicked");
                }
            }
        }
        set.spawn(handle_connection(
            stream,
            peer,
            shared,
            listener_cfg,
            counters,
            inherited,
        ));
    }
}

async fn handle_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    listener: ListenerConfig,
    counters: Arc<ListenerStats>,
    options_inherited: bool,
) {
    let mut peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if listener.proxy_protocol {
        let live = shared.live();
        if proxy::trusted(peer.ip(), &live.config.proxy.trusted) {
            let timeout = live.config.tls.handshake_timeout();
            match proxy::read_header(&mut stream, peer, timeout).await {
                Ok(client) => {
                    tracing::debug!(proxy = %peer, %client, "PROXY protocol header");
                    peer = client;
                }
                Err(e) => {
                    tracing::warn!(proxy = %peer, error = %e, "dropped a connection from a trusted proxy without a valid PROXY header");
                    return;
                }
            }
        }
    }
    // Banned addresses are turned away before anything else is spent on them.
    if let Some(left) = shared.guard.banned(peer.ip(), std::time::Instant::now()) {
        tracing::debug!(%peer, left_secs = left.as_secs(), "connection from a banned address refused");
        shared.metrics.refused(metrics::Refusal::Banned);
        refuse(
            stream,
            &format!(
                "Too many failed logins from your address; try again in {} s",
                left.as_secs().max(1)
            ),
        )
        .await;
        return;
    }
    let mut permit = match shared.admit(peer.ip()) {
        Ok(p) => p,
        Err(refusal) => {
            shared.metrics.refused(metrics::Refusal::Limit);
            let text = match refusal {
                Refusal::Total(n) => {
                    format!("Too many connections (the server allows {n}); try later")
                }
                Refusal::PerIp(n) => {
                    format!("Too many connections from your address (at most {n}); try later")
                }
            };
            tracing::warn!(%peer, reason = %text, "connection refused");
            refuse(stream, &text).await;
            return;
        }
    };
    permit._open = Some(counters.open());
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if !options_inherited {
        if let Err(e) = prepare_control_socket(&stream) {
            tracing::debug!(%peer, error = %e, "cannot set control socket options");
        }
    }
    // Asked once here, for the registry and the session (passive replies use it).
    let local = match stream.local_addr() {
        Ok(a) => SocketAddr::new(a.ip().to_canonical(), a.port()),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection gone before the greeting");
            return;
        }
    };
    // Listed for the admin API until this function ends, however the session ends.
    let registration = shared.registry.register(id, peer, local, listener.mode);
    let handle = Arc::clone(registration.handle());
    // A panic (a bug, never expected) is caught where it happens, so that it ends this session
    // alone and is reported at once, with the session it happened in. Caught in this task
    // rather than by a task of its own: a second task per connection cost a spawn, a wake and
    // its memory for every login. Boxed: the session's state is held once, not moved.
    // Unwind safety: after a panic the session future is never polled again, only dropped, as
    // tokio does with a task that panicked.
    let mut wait = Box::pin(
        std::panic::AssertUnwindSafe(session::run(
            stream,
            (peer, local),
            id,
            shared,
            listener,
            permit,
            Arc::clone(&handle),
        ))
        .catch_unwind(),
    );
    let ended = tokio::select! {
        ended = &mut wait => ended,
        // A kicked session closes itself (421, transfer cleaned up); one that cannot (a
        // client that does not read, a handshake in progress) is dropped after a while.
        _ = handle.kicked() => match tokio::time::timeout(KICK_GRACE, &mut wait).await {
            Ok(ended) => ended,
            Err(_) => {
                tracing::warn!(id, %peer, "a session closed by an administrator did not end in time: dropped");
                return;
            }
        },
    };
    drop(registration);
    if let Err(panic) = ended {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(id, %peer, panic = %message, "BUG: a session panicked; it was closed, the server goes on");
    }
}

/// How long a kicked session may take to say goodbye and clean up before it is dropped.
const KICK_GRACE: Duration = Duration::from_secs(5);

/// Control sockets keep Telnet "urgent" bytes in line: clients send ABOR as
/// `IAC IP IAC DM ABOR` with MSG_OOB, and without this the kernel would remove a byte of it.
/// Set on a control connection, or on the listening socket for all its connections.
fn prepare_control_socket<S: std::os::fd::AsFd>(socket: &S) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    sock.set_out_of_band_inline(true)?;
    // Replies are small: a modest send buffer keeps kernel memory per session low, and a
    // client that stops reading is noticed (and dropped at the idle timeout) after kilobytes,
    // not after megabytes of autotuned buffer.
    sock.set_send_buffer_size(CONTROL_SEND_BUFFER)?;
    sock.set_nodelay(true)
}

/// SO_SNDBUF of control connections (the kernel doubles it).
const CONTROL_SEND_BUFFER: usize = 64 * 1024;

async fn refuse(mut stream: TcpStream, text: &str) {
    use tokio::io::AsyncWriteExt;
    let reply = ferroftp_proto::Reply::new(421, text).render();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
