//! Prometheus metrics: counters and gauges kept in atomics, rendered in the text exposition
//! format, and the axum router that serves them on their own listener (`metrics.listen`,
//! `--metrics-listen`) through the serve loop the admin API uses ([`crate::http`]):
//! `GET /metrics` and nothing else.
//!
//! Everything a session touches is a relaxed atomic add on a fixed slot; the only lock is the
//! short list of listeners, taken once per accepted connection. A session holds one `Arc` (to
//! its listener's counters) and nothing else.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferroftp_proto::Verb;
use tokio::net::TcpListener;

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

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self, snap: Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        family(
            o,
            "ferroftp_sessions_open",
            "gauge",
            "Control connections open now, by listener.",
        );
        let listeners: Vec<Arc<ListenerStats>> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for l in &listeners {
            let labels = listener_labels(l);
            sample(
                o,
                "ferroftp_sessions_open",
                &labels,
                l.open.load(Ordering::Relaxed).max(0),
            );
        }
        family(
            o,
            "ferroftp_sessions_total",
            "counter",
            "Control connections accepted (past the ban and session limits), by listener.",
        );
        for l in &listeners {
            sample(
                o,
                "ferroftp_sessions_total",
                &listener_labels(l),
                l.total.get(),
            );
        }
        family(
            o,
            "ferroftp_connections_refused_total",
            "counter",
            "Connections turned away at accept: banned address, or a session limit reached.",
        );
        for (reason, c) in ["banned", "limit"].iter().zip(&self.refused) {
            sample(
                o,
                "ferroftp_connections_refused_total",
                &format!("reason=\"{reason}\""),
                c.get(),
            );
        }
        family(
            o,
            "ferroftp_logins_total",
            "counter",
            "Logins by result and method (failed logins are always USER/PASS: method=\"password\").",
        );
        for (m, c) in LoginMethod::ALL.iter().zip(&self.logins_ok) {
            sample(
                o,
                "ferroftp_logins_total",
                &format!("result=\"ok\",method=\"{}\"", m.as_str()),
                c.get(),
            );
        }
        sample(
            o,
            "ferroftp_logins_total",
            "result=\"failed\",method=\"password\"",
            self.logins_failed.get(),
        );
        family(
            o,
            "ferroftp_transfer_bytes_total",
            "counter",
            "Bytes moved over data connections, counted when each transfer ends.",
        );
        for (d, row) in Direction::ALL.iter().zip(&self.bytes) {
            for (tls, c) in ["false", "true"].iter().zip(row) {
                sample(
                    o,
                    "ferroftp_transfer_bytes_total",
                    &format!("direction=\"{}\",tls=\"{tls}\"", d.as_str()),
                    c.get(),
                );
            }
        }
        family(
            o,
            "ferroftp_transfers_total",
            "counter",
            "Transfers (files and listings) by verb and how they ended.",
        );
        for (verb, row) in VERBS.iter().zip(&self.transfers) {
            for (r, c) in TransferResult::ALL.iter().zip(row) {
                sample(
                    o,
                    "ferroftp_transfers_total",
                    &format!("verb=\"{}\",result=\"{}\"", verb.name(), r.as_str()),
                    c.get(),
                );
            }
        }
        family(
            o,
            "ferroftp_passive_ports_in_use",
            "gauge",
            "Passive data ports listening now (PASV/EPSV awaiting or serving a transfer).",
        );
        sample(
            o,
            "ferroftp_passive_ports_in_use",
            "",
            self.passive_ports.load(Ordering::Relaxed).max(0),
        );
        family(
            o,
            "ferroftp_bans_active",
            "gauge",
            "Client addresses banned now for failed logins.",
        );
        sample(o, "ferroftp_bans_active", "", snap.bans_active);
        family(
            o,
            "ferroftp_bans_total",
            "counter",
            "Bans imposed for failed logins.",
        );
        sample(o, "ferroftp_bans_total", "", self.bans.get());
        family(
            o,
            "ferroftp_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out, by connection.",
        );
        for (conn, c) in ["control", "data"].iter().zip(&self.tls_failures) {
            sample(
                o,
                "ferroftp_tls_handshake_failures_total",
                &format!("connection=\"{conn}\""),
                c.get(),
            );
        }
        family(
            o,
            "ferroftp_xferlog_dropped_total",
            "counter",
            "Transfer-log lines lost: the writer's queue was full or the file could not be written.",
        );
        sample(
            o,
            "ferroftp_xferlog_dropped_total",
            "",
            self.xferlog_dropped.get(),
        );
        family(
            o,
            "ferroftp_build_info",
            "gauge",
            "Always 1; the version in a label.",
        );
        sample(
            o,
            "ferroftp_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
            1,
        );
        family(
            o,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let _ = writeln!(o, "process_start_time_seconds {started:.3}");
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn listener_labels(l: &ListenerStats) -> String {
    let mode = match l.mode {
        ListenerMode::Plain => "plain",
        ListenerMode::Explicit => "explicit",
        ListenerMode::Implicit => "implicit",
    };
    format!(
        "listener=\"{}\",mode=\"{mode}\"",
        escape(&l.addr.to_string())
    )
}

/// A label value, escaped as the exposition format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Bind the metrics listener, naming the key on failure.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::error::BindError> {
    crate::error::bind(addr, "metrics.listen").await
}

/// What each scraper may take, no more than the hand-written server this replaced allowed:
/// 8 connections at once (more wait in the accept queue), 10 s for the request and the answer,
/// 8 KiB of request head (more is a 431), one request per connection.
const LIMITS: crate::http::Limits = crate::http::Limits {
    name: "metrics",
    connections: 8,
    header_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(10),
    max_head: 8 * 1024,
    keep_alive: false,
    title_case_headers: true,
};

/// Makes the body of a scrape.
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `GET /metrics` on `listener` until the task is aborted; `render` makes the body.
pub(crate) async fn serve(listener: TcpListener, render: Render) {
    let stop = tokio_util::sync::CancellationToken::new();
    crate::http::serve(listener, router(render), LIMITS, stop).await;
}

/// `GET` (and `HEAD`) of `/metrics` (a query string is ignored); 405 for another method
/// there, 404 elsewhere. Requests that are not HTTP/1 get hyper's 400.
fn router(render: Render) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(scrape).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(render)
}

async fn scrape(State(render): State<Render>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()).into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "Only GET (and HEAD) are allowed on /metrics\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found: try /metrics\n").into_response()
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// One request to a metrics listener serving "body": the raw answer, read to its end
    /// (the server closes each connection after one answer).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn requests_are_routed_by_method_and_path() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(|| "body\n".to_owned())));
        let r = |req: &'static str| exchange(addr, req.as_bytes());
        let status = |answer: &str| answer.split(' ').nth(1).unwrap_or_default().to_owned();
        for req in [
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /metrics?x=1 HTTP/1.0\r\n\r\n",
            "GET http://h:9/metrics HTTP/1.1\r\n\r\n",
        ] {
            let answer = r(req).await;
            // HTTP/1.0 for a 1.0 request.
            assert_eq!(status(&answer), "200", "{answer}");
            assert!(
                answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
                "{answer}"
            );
            assert!(answer.contains("\r\nContent-Length: 5\r\n"), "{answer}");
            assert!(answer.ends_with("\r\n\r\nbody\n"), "{answer}");
        }
        let head = r("HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&head), "200");
        assert!(
            head.contains("\r\nContent-Length: 5\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let post = r("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(status(&post), "405");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        assert!(
            post.ends_with("Only GET (and HEAD) are allowed on /metrics\n"),
            "{post}"
        );
        for req in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET /metricsx HTTP/1.1\r\n\r\n",
            "POST /other HTTP/1.1\r\n\r\n",
        ] {
            let answer = r(req).await;
            assert_eq!(status(&answer), "404", "{req}");
            assert!(answer.ends_with("Not found: try /metrics\n"), "{answer}");
        }
        for req in [
            "GET /metrics\r\n\r\n",
            "GET /metrics SPDY/3\r\n\r\n",
            "\u{1}\r\n\r\n",
        ] {
            assert_eq!(status(&r(req).await), "400", "{req:?}");
        }
        // A request head over 8 KiB is refused.
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(&exchange(addr, big.as_bytes()).await), "431");
        server.abort();
    }

    #[test]
    fn every_family_has_help_and_type_and_fixed_series_start_at_zero() {
        let m = Arc::new(Metrics::default());
        let l = m.listener("127.0.0.1:21".parse().unwrap(), ListenerMode::Explicit);
        let open = l.open();
        m.login_ok(LoginMethod::Anonymous);
        m.login_failed();
        m.transfer(Verb::Retr, true, 10, TransferResult::Ok);
        m.transfer(Verb::Stor, false, 5, TransferResult::Aborted);
        m.transfer(Verb::List, false, 7, TransferResult::Failed);
        let held = m.passive_port();
        let text = m.render(Snapshot { bans_active: 2 });
        for line in [
            "ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"explicit\"} 1",
            "ferroftp_sessions_total{listener=\"127.0.0.1:21\",mode=\"explicit\"} 1",
            "ferroftp_logins_total{result=\"ok\",method=\"anonymous\"} 1",
            "ferroftp_logins_total{result=\"ok\",method=\"password\"} 0",
            "ferroftp_logins_total{result=\"failed\",method=\"password\"} 1",
            "ferroftp_transfer_bytes_total{direction=\"download\",tls=\"true\"} 10",
            "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"} 5",
            "ferroftp_transfer_bytes_total{direction=\"listing\",tls=\"false\"} 7",
            "ferroftp_transfers_total{verb=\"RETR\",result=\"ok\"} 1",
            "ferroftp_transfers_total{verb=\"STOR\",result=\"aborted\"} 1",
            "ferroftp_transfers_total{verb=\"LIST\",result=\"failed\"} 1",
            "ferroftp_transfers_total{verb=\"MLSD\",result=\"ok\"} 0",
            "ferroftp_passive_ports_in_use 1",
            "ferroftp_bans_active 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        drop((open, held));
        let text = m.render(Snapshot::default());
        assert!(
            text.contains("ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"explicit\"} 0")
        );
        assert!(text.contains("ferroftp_passive_ports_in_use 0\n"));
        // Every sample belongs to a family announced with HELP and TYPE just before.
        let mut announced = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(announced.contains(name), "{name} has no TYPE");
            }
        }
        assert_eq!(
            text.matches("# HELP ").count(),
            text.matches("# TYPE ").count()
        );
    }

    #[test]
    fn counters_are_exact_under_concurrency() {
        let m = Arc::new(Metrics::default());
        let l = m.listener("127.0.0.1:21".parse().unwrap(), ListenerMode::Plain);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = Arc::clone(&m);
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let _open = l.open();
                        let _port = m.passive_port();
                        m.transfer(Verb::Stor, false, 3, TransferResult::Ok);
                        m.login_failed();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(Snapshot::default());
        for line in [
            "ferroftp_sessions_total{listener=\"127.0.0.1:21\",mode=\"plain\"} 80000",
            "ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"plain\"} 0",
            "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"} 240000",
            "ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"} 80000",
            "ferroftp_logins_total{result=\"failed\",method=\"password\"} 80000",
            "ferroftp_passive_ports_in_use 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
