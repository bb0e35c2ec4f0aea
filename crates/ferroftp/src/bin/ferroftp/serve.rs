//! `ferroftp serve`: load and check everything, bind, announce, serve until a signal; SIGHUP
//! reloads.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ferroftp::auth::{self, HashParams, User, UserDb};
use ferroftp::config::{Config, LogFormat};
use ferroftp::{Server, observe};

use crate::overrides::{Overrides, effective_config};
use crate::preflight::{Preflight, preflight};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML); `ferroftp config --example` prints every key with its
    /// default, and ferroftp.toml(5) documents them. Flags override it (no config key: this is
    /// the file). Default: none (the built-in defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

/// Start-up lines on stdout (the generated password, the addresses): plain text, or one JSON
/// object a line with `--log-format json`, so that a collector reading stdout gets JSON only.
struct Announce {
    json: bool,
}

impl Announce {
    /// Print `text`, or `fields` (with `"event": event`) as JSON.
    fn say(&self, text: &str, event: &str, fields: serde_json::Value) {
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("event".into(), event.into());
            if let serde_json::Value::Object(fields) = fields {
                object.extend(fields);
            }
            println!("{}", serde_json::Value::Object(object));
        } else {
            println!("{text}");
        }
    }
}

/// `ferroftp serve`: run until SIGTERM or SIGINT.
pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(args.config.as_deref(), args.overrides.clone())?;
    observe::init(&config.log);
    let say = Announce {
        json: config.log.format == LogFormat::Json,
    };
    let Preflight { users, tls } = preflight(&config, false)?;
    let users = match users {
        Some(users) => users,
        None => {
            let password = auth::generate_password();
            let hash = auth::hash_password(&password, HashParams::default())?;
            say.say(
                &format!(
                    "ferroftp: no users file given; this run has one user:\nferroftp:   user: ferro   password: {password}"
                ),
                "generated_user",
                serde_json::json!({ "user": "ferro", "password": password }),
            );
            UserDb::empty().with_user(User::new("ferro"), hash)
        }
    };
    if let Some(tls) = tls.as_ref().filter(|t| t.is_generated()) {
        let fingerprint = tls.current().fingerprint;
        say.say(
            &format!(
                "ferroftp: no TLS certificate configured: using a self-signed one made for this run (SHA-256 {fingerprint})"
            ),
            "self_signed_certificate",
            serde_json::json!({ "sha256": fingerprint }),
        );
    }
    let open_files = raise_open_files_limit();
    let needed = config.limits.max_sessions.saturating_mul(4) as u64 + 64;
    if open_files.is_some_and(|n| n < needed) {
        tracing::warn!(
            open_files,
            max_sessions = config.limits.max_sessions,
            "the open-files limit may be too low for limits.max_sessions (each session can hold 4); raise it (ulimit -n, LimitNOFILE=) or lower max_sessions"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // A reload reads the same sources again: the config file with these flags on top, and
    // the users file (or keeps this run's generated user).
    let generated = config.users_file.is_none().then(|| users.clone());
    let (file, overrides) = (args.config.clone(), args.overrides.clone());
    let load = move || -> anyhow::Result<(Config, UserDb)> {
        let config = effective_config(file.as_deref(), overrides.clone())?;
        let users = match (&config.users_file, &generated) {
            (Some(path), _) => UserDb::load(path)?,
            (None, Some(users)) => users.clone(),
            (None, None) => UserDb::empty(),
        };
        Ok((config, users))
    };
    // The library takes the explanation as one text: the causes flattened as `{:#}` shows
    // them, as a refused reload has always reported them.
    let loader: ferroftp::server::Loader =
        Box::new(move || load().map_err(|e| format!("{e:#}").into()));
    runtime.block_on(async move {
        // Before anything says "listening": a SIGHUP must never find the default action
        // (which would end the process).
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let server = Server::bind(config.clone(), users, tls.clone())
            .await?
            .with_loader(loader);
        if let Some(addr) = server.metrics_addr() {
            let url = format!("http://{addr}/metrics");
            say.say(
                &format!("ferroftp: metrics on {url}"),
                "metrics",
                serde_json::json!({ "address": addr.to_string(), "url": url }),
            );
            tracing::info!(%addr, "serving metrics at /metrics");
        }
        if let Some(addr) = server.admin_addr() {
            let url = format!("http://{addr}/api/v1/");
            say.say(
                &format!("ferroftp: admin API on {url}"),
                "admin_api",
                serde_json::json!({ "address": addr.to_string(), "url": url }),
            );
            tracing::info!(%addr, "serving the admin API");
        }
        for (addr, l) in server.local_addrs().iter().zip(&config.listeners) {
            say.say(
                &format!("ferroftp: listening on {addr} ({})", l.mode.describe()),
                "listening",
                serde_json::json!({
                    "address": addr.to_string(),
                    "mode": l.mode.as_str(),
                    "tls_policy": l.tls_policy.as_str(),
                }),
            );
            tracing::info!(%addr, mode = %l.mode, tls_policy = %l.tls_policy, root = %config.root.display(), "listening");
        }
        match hup {
            Ok(hup) => {
                tokio::spawn(reload_on_sighup(hup, server.reload_handle()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP: no reloads on signal"),
        }
        server
            .run(shutdown_signal(), config.limits.shutdown_grace())
            .await;
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Raise the soft limit on open files to the hard limit: each session may hold a control
/// connection, a passive listener, a data connection and a file.
/// Returns the limit in force (`None`: unlimited).
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    let target = limit.maximum.unwrap_or(1 << 20);
    if target <= soft {
        tracing::info!(open_files = soft, "open-files limit");
        return Some(soft);
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    ) {
        Ok(()) => {
            tracing::info!(from = soft, to = target, "raised the open-files limit");
            Some(target)
        }
        Err(e) => {
            tracing::warn!(soft, error = %e, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

/// SIGHUP: reload the configuration, the users and the certificates (the server logs how it
/// went).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    handle: ferroftp::server::ReloadHandle,
) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let _ = handle.reload().await;
    }
}

/// SIGTERM or SIGINT (Ctrl-C): time to drain and stop.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use crate::Cli;

    /// The config key a help text names: the word after "key " (backticks and punctuation off).
    fn keys_named(help: &str) -> Vec<String> {
        help.split("key ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|w| w.trim_matches(|c: char| "`;,().".contains(c)).to_owned())
            .collect()
    }

    #[test]
    fn every_serve_flag_names_its_config_key_or_says_it_has_none() {
        let known = ferroftp::config::reference::keys(ferroftp::config::EXAMPLE);
        let mut cmd = Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand("serve").expect("serve exists").clone();
        let header: String = ferroftp::config::EXAMPLE
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let mut checked = 0;
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            checked += 1;
            if help.contains("no config key") {
                continue;
            }
            let named = keys_named(&help);
            assert!(
                named.iter().any(|k| known.contains(k)),
                "--{long}: its help names no config key of ferroftp.example.toml (found {named:?}):\n{help}"
            );
            assert!(
                header.contains(&format!("--{long}")),
                "--{long} overrides a key but the example file's list of flags lacks it"
            );
        }
        assert!(checked >= 17, "only {checked} flags seen");
    }
}
