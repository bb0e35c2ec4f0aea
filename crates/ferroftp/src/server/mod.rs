//! The server: listeners, the session table and its limits, and the shared state that every
//! session reads. Each control connection runs as one task ([`session`]); data connections
//! and transfers live in [`data`].

mod data;
mod guard;
mod session;
mod stream;

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

use crate::auth::UserDb;
use crate::config::{Config, ListenerConfig};
use crate::tls::Tls;

/// State shared by all sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) root: PathBuf,
    pub(crate) users: UserDb,
    pub(crate) ports: Arc<data::PassivePorts>,
    pub(crate) sessions: SessionTable,
    /// Bounds the argon2 verifications running at once, so that a login storm cannot take
    /// every blocking thread and all the memory (each costs ~19 MiB).
    pub(crate) hash_pool: Semaphore,
    /// Certificates and TLS configuration; `None` when no listener offers TLS.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Failed-login counts and bans.
    pub(crate) guard: guard::Guard,
    /// Home directories open now, shared between sessions.
    pub(crate) homes: crate::storage::HomeCache,
    /// Cancelled when the server starts shutting down: idle sessions close at once.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Cancelled when the shutdown grace period is over: running transfers are cut off.
    pub(crate) closing: tokio_util::sync::CancellationToken,
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
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionPermit, Refusal> {
        let limits = &self.config.limits;
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

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(TcpListener, ListenerConfig)>,
}

impl Server {
    /// Bind every listener of `config`; fails before serving anything if one cannot be bound.
    pub async fn bind(
        config: Config,
        users: UserDb,
        tls: Option<Arc<Tls>>,
    ) -> anyhow::Result<Self> {
        let root = std::path::absolute(&config.root)?;
        if tls.is_none() {
            if let Some(l) = config.listeners.iter().find(|l| l.mode.offers_tls()) {
                anyhow::bail!(
                    "listener {} ({}) needs TLS, but no TLS configuration was given",
                    l.bind,
                    l.mode
                );
            }
        }
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let listener = TcpListener::bind(l.bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {} (listener.bind): {e}", l.bind))?;
            listeners.push((listener, l.clone()));
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shared = Arc::new(Shared {
            ports: data::PassivePorts::new(config.passive.ports),
            root,
            users,
            sessions: SessionTable::default(),
            hash_pool: Semaphore::new(workers),
            tls,
            guard: guard::Guard::new(config.bans.clone()),
            homes: crate::storage::HomeCache::default(),
            stopping: tokio_util::sync::CancellationToken::new(),
            closing: tokio_util::sync::CancellationToken::new(),
            next_id: AtomicU64::new(1),
            config,
        });
        Ok(Self { shared, listeners })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serve until `shutdown` completes; then stop accepting and give running sessions up to
    /// `drain` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>, drain: Duration) {
        let mut accept_loops = JoinSet::new();
        let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for (listener, cfg) in self.listeners {
            let shared = Arc::clone(&self.shared);
            let sessions = Arc::clone(&sessions);
            accept_loops.spawn(accept_loop(listener, cfg, shared, sessions));
        }
        shutdown.await;
        accept_loops.abort_all();
        self.shared.stopping.cancel();
        tracing::info!(
            sessions = self.shared.sessions.total(),
            grace_secs = drain.as_secs(),
            "shutting down: no new connections; idle sessions closed, running transfers may finish"
        );
        let mut sessions = sessions.lock().await;
        let drained = tokio::time::timeout(drain, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                sessions = self.shared.sessions.total(),
                "transfers still running after {} s: cutting them off (unfinished uploads are discarded)",
                drain.as_secs()
            );
            // Each session cleans up, tells its client (426, 421) and logs; a few seconds for
            // that, then whatever is left is dropped.
            self.shared.closing.cancel();
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
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: ListenerConfig,
    shared: Arc<Shared>,
    sessions: Arc<tokio::sync::Mutex<JoinSet<()>>>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => {
                backoff = Duration::from_millis(5);
                conn
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning, and let sessions end meanwhile.
                tracing::error!(listener = %cfg.bind, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let listener_cfg = cfg.clone();
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
        set.spawn(handle_connection(stream, peer, shared, listener_cfg));
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    listener: ListenerConfig,
) {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // Banned addresses are turned away before anything else is spent on them.
    if let Some(left) = shared.guard.banned(peer.ip(), std::time::Instant::now()) {
        tracing::debug!(%peer, left_secs = left.as_secs(), "connection from a banned address refused");
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
    let permit = match shared.admit(peer.ip()) {
        Ok(p) => p,
        Err(refusal) => {
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
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = prepare_control_socket(&stream) {
        tracing::debug!(%peer, error = %e, "cannot set control socket options");
    }
    // Its own task, so that a panic (a bug, never expected) ends this session alone and is
    // reported at once, with the session it happened in.
    let session = AbortOnDrop(tokio::spawn(session::run(
        stream, peer, id, shared, listener, permit,
    )));
    if let Err(e) = session.wait().await {
        if e.is_panic() {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(id, %peer, panic = %message, "BUG: a session panicked; it was closed, the server goes on");
        }
    }
}

/// A task that is aborted when this handle is dropped (when the task awaiting it is aborted).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Control sockets keep Telnet "urgent" bytes in line: clients send ABOR as
/// `IAC IP IAC DM ABOR` with MSG_OOB, and without this the kernel would remove a byte of it.
fn prepare_control_socket(stream: &TcpStream) -> io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    sock.set_out_of_band_inline(true)?;
    // Replies are small: a modest send buffer keeps kernel memory per session low, and a
    // client that stops reading is noticed (and dropped at the idle timeout) after kilobytes,
    // not after megabytes of autotuned buffer.
    sock.set_send_buffer_size(CONTROL_SEND_BUFFER)?;
    stream.set_nodelay(true)
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
