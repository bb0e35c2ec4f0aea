//! The sessions open now, for the admin API: who is connected, what each is doing, and a way
//! to close one.
//!
//! Each session publishes its state into its [`SessionHandle`] when it changes (at most once
//! per control-connection event, one uncontended lock); transfer progress is the transfer's own
//! atomic byte counter, shared, so moving data costs nothing extra. Entries leave the registry
//! when their [`Registration`] is dropped, so a session that ends in any way, a panic
//! included, is never listed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use ferroftp_proto::Verb;
use tokio_util::sync::CancellationToken;

use crate::config::ListenerMode;

/// All open sessions, by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<BTreeMap<u64, Arc<SessionHandle>>>,
}

/// One open session as the admin API sees it.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// The session id (as in the log).
    pub(crate) id: u64,
    /// The client (after a PROXY protocol header, the real client).
    pub(crate) peer: SocketAddr,
    /// The server address the client connected to.
    pub(crate) local: SocketAddr,
    /// The listener's mode.
    pub(crate) mode: ListenerMode,
    /// When the connection was accepted.
    pub(crate) connected_at: SystemTime,
    state: Mutex<SessionState>,
    /// Cancelled to close the session (an administrator's kick).
    kick: CancellationToken,
}

/// What a session publishes as it goes.
#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    /// The logged-in user.
    pub(crate) user: Option<String>,
    /// TLS on the control connection: (protocol version, cipher suite).
    pub(crate) tls: Option<(String, String)>,
    /// PROT P: data connections are TLS.
    pub(crate) prot_private: bool,
    /// The last command.
    pub(crate) last_activity: Instant,
    /// The transfer running now.
    pub(crate) transfer: Option<TransferState>,
}

/// A running transfer.
#[derive(Debug, Clone)]
pub(crate) struct TransferState {
    /// RETR, STOR, APPE, STOU, LIST, NLST, MLSD.
    pub(crate) verb: Verb,
    /// The path as the client sees it.
    pub(crate) path: String,
    /// `download`, `upload` or `listing`.
    pub(crate) direction: &'static str,
    /// Bytes to send, when known (downloads).
    pub(crate) total: Option<u64>,
    /// When the transfer started.
    pub(crate) started_at: SystemTime,
    /// Bytes moved so far: the transfer's own counter.
    pub(crate) progress: Arc<AtomicU64>,
}

impl TransferState {
    /// Bytes moved so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// A session's place in the registry; dropping it removes the session.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    handle: Arc<SessionHandle>,
}

impl Registration {
    /// The session's handle.
    pub(crate) fn handle(&self) -> &Arc<SessionHandle> {
        &self.handle
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.handle.id);
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<SessionHandle>>> {
        // Inserts and removals leave the map consistent, so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a new session; it is listed until the returned registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        mode: ListenerMode,
    ) -> Registration {
        let handle = Arc::new(SessionHandle {
            id,
            peer,
            local,
            mode,
            connected_at: SystemTime::now(),
            state: Mutex::new(SessionState {
                user: None,
                tls: None,
                prot_private: false,
                last_activity: Instant::now(),
                transfer: None,
            }),
            kick: CancellationToken::new(),
        });
        self.lock().insert(id, Arc::clone(&handle));
        Registration {
            registry: Arc::clone(self),
            handle,
        }
    }

    /// Every open session, by id.
    pub(crate) fn list(&self) -> Vec<Arc<SessionHandle>> {
        self.lock().values().cloned().collect()
    }

    /// One session.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<SessionHandle>> {
        self.lock().get(&id).cloned()
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl SessionHandle {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of what the session published last.
    pub(crate) fn state(&self) -> SessionState {
        self.lock().clone()
    }

    /// Change what the session publishes.
    pub(crate) fn publish(&self, f: impl FnOnce(&mut SessionState)) {
        f(&mut self.lock());
    }

    /// Ask the session to close (421 to the client; a running transfer is aborted).
    pub(crate) fn kick(&self) {
        self.kick.cancel();
    }

    /// Completes when the session has been asked to close.
    pub(crate) fn kicked(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.kick.cancelled()
    }

    /// Whether the session has been asked to close.
    pub(crate) fn is_kicked(&self) -> bool {
        self.kick.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_leave_the_registry_when_their_registration_drops() {
        let reg = Arc::new(Registry::default());
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let a = reg.register(1, addr, addr, ListenerMode::Plain);
        let b = reg.register(2, addr, addr, ListenerMode::Explicit);
        assert_eq!(reg.len(), 2);
        a.handle().publish(|s| s.user = Some("alice".into()));
        assert_eq!(
            reg.get(1).and_then(|h| h.state().user).as_deref(),
            Some("alice")
        );
        // A panicking session drops its registration while unwinding.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = b;
            panic!("session bug");
        }));
        assert!(caught.is_err());
        assert!(reg.get(2).is_none());
        drop(a);
        assert_eq!(reg.len(), 0);
    }
}
