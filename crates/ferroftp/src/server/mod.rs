//! The server: listeners, the session table and its limits, and the shared state that every
//! session reads. Each control connection runs as one task ([`session`]); data connections
//! and transfers live in [`data`].
//!
//! This file holds the shared state ([`Shared`], what a reload replaces as one [`Live`]) and
//! the session table; the rest lives beside it: [`lifecycle`] (the [`Server`]: bind, run,
//! shut down and drain), [`listeners`] (accept loops, admitting or refusing a connection,
//! the side listeners), [`reload`] (reloading the configuration and the certificates),
//! [`homes`] (checking and preparing home directories) and [`announced`] (passive
//! addresses resolved).

mod admin;
mod announced;
mod data;
mod error;
mod guard;
mod homes;
mod lifecycle;
mod listeners;
mod proxy;
mod registry;
mod reload;
mod session;
mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub use admin::TokenError;
pub use error::StartError;
pub use homes::{check_homes, check_user_homes};
pub use lifecycle::{Loader, ReloadHandle, Server, check_admin_token};

pub(crate) use announced::Announced;

use crate::config::{Config, ListenerMode};
use crate::observe::metrics::{self, Metrics};
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
