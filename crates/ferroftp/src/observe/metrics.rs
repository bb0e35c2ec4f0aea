//! Prometheus metrics: counters and gauges kept in atomics, rendered in the text exposition
//! format, and the axum router that serves them on their own listener (`metrics.listen`,
//! `--metrics-listen`) through the serve loop the admin API uses ([`crate::http`]):
//! `GET /metrics` and nothing else.
//!
//! Everything a session touches is a relaxed atomic add on a fixed slot; the only lock is the
//! short list of listeners, taken once per accepted connection. A session holds one `Arc` (to
//! its listener's counters) and nothing else.
//!
//! This file holds the counters and what sessions call to bump them;
//! `metrics/render.rs` writes them out as text, `metrics/listener.rs` serves them over HTTP,
//! and `metrics/tests.rs` holds the unit tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ferroftp_proto::Verb;

use crate::config::ListenerMode;

/// How a login was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginMethod {
    /// USER and PASS against the users file.
    Password,
    /// A TLS client certificate listed for the user.
    Certificate,
    /// USER anonymous / ftp.
    Anonymous,
}

impl LoginMethod {
    const ALL: [Self; 3] = [Self::Password, Self::Certificate, Self::Anonymous];

    /// The label value (and the `method` of the "login ok" log line).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Certificate => "certificate",
            Self::Anonymous => "anonymous",
        }
    }
}

/// Which way a transfer's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// STOR, APPE, STOU.
    Upload,
    /// RETR.
    Download,
    /// LIST, NLST, MLSD.
    Listing,
}

impl Direction {
    const ALL: [Self; 3] = [Self::Upload, Self::Download, Self::Listing];

    /// The direction of a transfer verb.
    pub(crate) fn of_verb(verb: Verb) -> Self {
        match verb {
            Verb::Stor | Verb::Appe | Verb::Stou => Self::Upload,
            Verb::Retr => Self::Download,
            _ => Self::Listing,
        }
    }

    /// The label value (and the `direction` of the "transfer" log line).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
            Self::Listing => "listing",
        }
    }
}

/// How a transfer ended, for `ferroftp_transfers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferResult {
    /// Completed (226).
    Ok,
    /// Stopped by ABOR, or by the client or the server going away mid-transfer.
    Aborted,
    /// Anything else: no data connection, a network or disk error, a refused TLS data
    /// connection, a truncated TLS upload, a file that shrank.
    Failed,
}

impl TransferResult {
    const ALL: [Self; 3] = [Self::Ok, Self::Aborted, Self::Failed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
        }
    }
}

/// Which connection a TLS handshake was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsConnection {
    /// AUTH TLS, or an implicit FTPS connection.
    Control,
    /// A protected (PROT P) data connection.
    Data,
}

/// Why a connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address is banned.
    Banned,
    /// `limits.max_sessions` or `limits.max_sessions_per_ip`.
    Limit,
}

/// The transfer verbs, in label order; the label is the verb's name (`Verb::name`).
const VERBS: [Verb; 7] = [
    Verb::Retr,
    Verb::Stor,
    Verb::Appe,
    Verb::Stou,
    Verb::List,
    Verb::Nlst,
    Verb::Mlsd,
];

/// A counter: only ever goes up.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The sessions of one listener (its bound address and mode).
#[derive(Debug)]
pub(crate) struct ListenerStats {
    addr: SocketAddr,
    mode: ListenerMode,
    open: AtomicI64,
    total: Counter,
}

impl ListenerStats {
    /// Count a session opened on this listener; it counts as open until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> SessionOpen {
        self.total.add(1);
        self.open.fetch_add(1, Ordering::Relaxed);
        SessionOpen(Arc::clone(self))
    }

    /// The mode these counters are labelled with.
    pub(crate) fn mode(&self) -> ListenerMode {
        self.mode
    }
}

/// A session counted as open; dropping it counts it closed.
#[derive(Debug)]
pub(crate) struct SessionOpen(Arc<ListenerStats>);

impl Drop for SessionOpen {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A passive port counted as in use; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct PassivePortHeld(Arc<Metrics>);

impl Drop for PassivePortHeld {
    fn drop(&mut self) {
        self.0.passive_ports.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every metric of one server.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: SystemTime,
    listeners: Mutex<Vec<Arc<ListenerStats>>>,
    /// Indexed by [`LoginMethod`].
    logins_ok: [Counter; 3],
    logins_failed: Counter,
    /// Indexed by [`Direction`], then TLS (0 = plain, 1 = TLS).
    bytes: [[Counter; 2]; 3],
    /// Indexed by verb (see [`VERBS`]), then [`TransferResult`].
    transfers: [[Counter; 3]; VERBS.len()],
    passive_ports: AtomicI64,
    bans: Counter,
    /// Control, data.
    tls_failures: [Counter; 2],
    /// Banned, limit.
    refused: [Counter; 2],
    xferlog_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: SystemTime::now(),
            listeners: Mutex::default(),
            logins_ok: Default::default(),
            logins_failed: Counter::default(),
            bytes: Default::default(),
            transfers: Default::default(),
            passive_ports: AtomicI64::new(0),
            bans: Counter::default(),
            tls_failures: Default::default(),
            refused: Default::default(),
            xferlog_dropped: Counter::default(),
        }
    }
}

/// Values read elsewhere at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    /// Addresses banned now.
    pub(crate) bans_active: usize,
}

impl Metrics {
    /// The counters of the listener bound to `addr` in `mode` (made on first use; a listener
    /// that goes away keeps its series, with no sessions open).
    pub(crate) fn listener(&self, addr: SocketAddr, mode: ListenerMode) -> Arc<ListenerStats> {
        let mut list = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = list.iter().find(|s| s.addr == addr && s.mode == mode) {
            return Arc::clone(s);
        }
        let stats = Arc::new(ListenerStats {
            addr,
            mode,
            open: AtomicI64::new(0),
            total: Counter::default(),
        });
        list.push(Arc::clone(&stats));
        stats
    }

    /// A successful login.
    pub(crate) fn login_ok(&self, method: LoginMethod) {
        let i = LoginMethod::ALL
            .iter()
            .position(|m| *m == method)
            .unwrap_or(0);
        if let Some(c) = self.logins_ok.get(i) {
            c.add(1);
        }
    }

    /// A failed login (a wrong user name or password).
    pub(crate) fn login_failed(&self) {
        self.logins_failed.add(1);
    }

    /// A transfer that ended, with the bytes it moved.
    pub(crate) fn transfer(&self, verb: Verb, tls: bool, bytes: u64, result: TransferResult) {
        let dir = Direction::of_verb(verb);
        let d = Direction::ALL.iter().position(|x| *x == dir).unwrap_or(0);
        if let Some(c) = self.bytes.get(d).and_then(|row| row.get(usize::from(tls))) {
            c.add(bytes);
        }
        let r = TransferResult::ALL
            .iter()
            .position(|x| *x == result)
            .unwrap_or(0);
        if let Some(c) = VERBS
            .iter()
            .position(|v| *v == verb)
            .and_then(|v| self.transfers.get(v))
            .and_then(|row| row.get(r))
        {
            c.add(1);
        }
    }

    /// Passive ports held by sessions now.
    pub(crate) fn passive_ports_in_use(&self) -> u64 {
        u64::try_from(self.passive_ports.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// When the server started.
    pub(crate) fn started(&self) -> SystemTime {
        self.started
    }

    /// Count a passive port as in use until the guard is dropped.
    pub(crate) fn passive_port(self: &Arc<Self>) -> PassivePortHeld {
        self.passive_ports.fetch_add(1, Ordering::Relaxed);
        PassivePortHeld(Arc::clone(self))
    }

    /// An address was banned.
    pub(crate) fn banned(&self) {
        self.bans.add(1);
    }

    /// A TLS handshake failed (or timed out).
    pub(crate) fn tls_handshake_failed(&self, connection: TlsConnection) {
        self.tls_failures[match connection {
            TlsConnection::Control => 0,
            TlsConnection::Data => 1,
        }]
        .add(1);
    }

    /// A connection turned away at accept.
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[match why {
            Refusal::Banned => 0,
            Refusal::Limit => 1,
        }]
        .add(1);
    }

    /// A transfer-log line that could not be written (queue full or write error).
    pub(crate) fn xferlog_dropped(&self) {
        self.xferlog_dropped.add(1);
    }
}

mod listener;
mod render;

pub(crate) use listener::{bind, serve};

#[cfg(test)]
mod tests;
