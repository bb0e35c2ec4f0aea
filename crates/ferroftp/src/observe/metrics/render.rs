//! The Prometheus text exposition format (version 0.0.4): [`Metrics::render`] and the helpers
//! that write its families, samples and labels.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use crate::config::ListenerMode;

use super::{Direction, ListenerStats, LoginMethod, Metrics, Snapshot, TransferResult, VERBS};

impl Metrics {
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
