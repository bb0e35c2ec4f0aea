//! What `serve` checks before it binds, and `check-config` with it: the root, the users file,
//! the homes, the certificates, the admin token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferroftp::auth::UserDb;
use ferroftp::config::Config;
use ferroftp::tls::{self, Tls};

/// What `serve` needs before it binds, made by [`preflight`].
pub(crate) struct Preflight {
    /// The users file's accounts; `None` without a users file.
    pub(crate) users: Option<UserDb>,
    /// The certificate (loaded or generated) when a listener offers TLS.
    pub(crate) tls: Option<Arc<Tls>>,
}

/// Everything `serve` checks before it binds, shared with `check-config` so that a file
/// check-config calls valid starts: the root exists (or is the default one, which can be
/// created), the users file loads, the homes of its users and of anonymous logins are where
/// the server accepts them (`server::check_homes`, which serve runs again as it binds), the
/// certificates load, the admin token file is usable. `check_only` creates nothing. (The config itself, listener addresses included, is checked
/// when it is loaded.)
pub(crate) fn preflight(config: &Config, check_only: bool) -> anyhow::Result<Preflight> {
    prepare_root(&config.root, !check_only)?;
    let users = match &config.users_file {
        Some(path) => Some(UserDb::load(path)?),
        None => None,
    };
    ferroftp::server::check_homes(config, users.as_ref().unwrap_or(&UserDb::empty()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let tls = start_tls(config)?;
    if let (Some(_), Some(token)) = (config.admin.listen, &config.admin.token_file) {
        ferroftp::server::check_admin_token(token).context("key admin.token_file")?;
    }
    Ok(Preflight { users, tls })
}

/// Load the certificate (or make a self-signed one) when a listener offers TLS.
fn start_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    if !config.listeners.iter().any(|l| l.mode.offers_tls()) {
        return Ok(None);
    }
    let tls = Tls::new(&config.tls).context("cannot set up TLS")?;
    // kTLS would let the kernel encrypt (and sendfile) TLS data; it needs the kernel's "tls"
    // ULP. Not used yet: say which path TLS data takes.
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    if ulps.split_whitespace().any(|u| u == "tls") {
        tracing::info!(
            "kernel TLS (kTLS) is available but not used: TLS data is encrypted by rustls in user space"
        );
    } else {
        tracing::info!(
            "kernel TLS (kTLS) is not available (no \"tls\" in /proc/sys/net/ipv4/tcp_available_ulp): TLS data is encrypted by rustls in user space"
        );
    }
    let cert = tls.current();
    if tls.is_generated() {
        tracing::warn!(
            fingerprint = %cert.fingerprint,
            "no TLS certificate configured (tls.cert / --tls-cert): serving FTPS with a self-signed certificate generated for this run; clients will not trust it"
        );
    } else {
        let left = cert
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tracing::info!(
            fingerprint = %cert.fingerprint,
            names = ?cert.names,
            expires = %tls::http_date(cert.not_after),
            "TLS certificate loaded"
        );
        if left < Duration::from_secs(30 * 86400) {
            tracing::warn!(
                expires = %tls::http_date(cert.not_after),
                "the TLS certificate expires in less than 30 days"
            );
        }
    }
    Ok(Some(Arc::new(tls)))
}

/// The default root is created on first run; a configured one must exist (a typo should not
/// silently serve an empty new directory). With `create` false (check-config) a missing
/// default root only needs a directory to be made in.
fn prepare_root(root: &Path, create: bool) -> anyhow::Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    if root == Config::default().root {
        if !create {
            let parent = std::path::absolute(root)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if !parent.is_dir() {
                bail!(
                    "root directory {} does not exist and cannot be created: {} is not a directory (key `root` / --root)",
                    root.display(),
                    parent.display()
                );
            }
            return Ok(());
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the root directory {}", root.display()))?;
        tracing::info!(root = %root.display(), "created the root directory");
        return Ok(());
    }
    bail!(
        "root directory {} does not exist (key `root` / --root)",
        root.display()
    )
}
