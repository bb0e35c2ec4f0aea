//! Reloads: the configuration and users loaded again and put in force whole or not at all
//! (listeners kept, started, stopped; side listeners moved), and the certificate files
//! watched and read again.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::homes::prepare_homes;
use super::lifecycle::{bind_listener, check_tls};
use super::listeners::{Listeners, RunningListener};
use super::{Live, Loader, Shared, admin, data};
use crate::error::BindError;
use crate::observe::metrics;
use crate::tls::Tls;

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
pub(super) async fn reload(
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
pub(super) async fn watch_certificates(shared: Arc<Shared>) {
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
