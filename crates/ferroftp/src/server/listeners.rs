//! The accept loops: each FTP listener's, which admits a connection (or refuses it: banned,
//! too many sessions) and runs its session; and the set of listeners running, with the
//! metrics and admin API listeners beside them.

use futures_util::FutureExt as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Refusal, ReloadHandle, Shared, admin, proxy, session};
use crate::config::ListenerConfig;
use crate::observe::metrics::{self, ListenerStats};

/// The accept loops running, with the settings each serves new connections with.
pub(super) struct Listeners {
    pub(super) running: Vec<RunningListener>,
    /// The metrics server: the configured address and its task.
    pub(super) metrics: Option<(Option<SocketAddr>, tokio::task::JoinHandle<()>)>,
    /// The admin API server: the configured address and the server.
    pub(super) admin: Option<(Option<SocketAddr>, admin::AdminServer)>,
    /// Given to the admin API, to reload.
    pub(super) reload: ReloadHandle,
}

pub(super) struct RunningListener {
    /// The address bound (the real port when configured as 0).
    pub(super) local: Option<SocketAddr>,
    pub(super) cfg: ListenerConfig,
    pub(super) settings: tokio::sync::watch::Sender<ListenerConfig>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Listeners {
    pub(super) fn start(
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
    pub(super) fn publish(&self, shared: &Shared) {
        let now = self
            .running
            .iter()
            .map(|r| (r.local.unwrap_or(r.cfg.bind), r.cfg.mode))
            .collect();
        *shared.listening.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Serve the admin API on `listener` (configured as `configured`); stop any running first.
    pub(super) fn start_admin(
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

    pub(super) fn stop_all(&mut self) {
        for r in self.running.drain(..) {
            r.task.abort();
        }
    }

    /// Serve the metrics on `listener` (configured as `configured`), replacing any running.
    pub(super) fn start_metrics(
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
    pub(super) fn stop_metrics(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let (_, task) = self.metrics.take()?;
        task.abort();
        Some(task)
    }

    /// For each configured listener, the running one it continues: the same configured
    /// address (`127.0.0.1:0` continues a listener configured as `127.0.0.1:0`), each running
    /// listener used at most once.
    pub(super) fn matches(&self, wanted: &[ListenerConfig]) -> Vec<Option<usize>> {
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
