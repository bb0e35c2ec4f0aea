//! `ferroftp check-config` (a file checked as `serve` checks it) and `ferroftp config
//! --example`.

use std::path::{Path, PathBuf};

use clap::Args;
use ferroftp::config::Config;
use ferroftp::tls;

use crate::preflight::{Preflight, preflight};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "config"])))]
pub(crate) struct CheckArgs {
    /// The configuration file to check.
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// The configuration file to check, as for `serve` and `doctor`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct ConfigArgs {
    /// Print the annotated example configuration (ferroftp.example.toml): every key, its
    /// default and what it does. Save it as a starting point and check it with check-config.
    #[arg(long, required = true)]
    pub(crate) example: bool,
}

/// `ferroftp check-config`: load the file and run [`preflight`], the checks `serve` makes
/// before it binds; print the effective configuration on stdout and what was found on stderr.
pub(crate) fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    let Preflight { users, tls } = preflight(&config, true)?;
    if let (Some(users), Some(path)) = (users, &config.users_file) {
        eprintln!(
            "ferroftp: users file {}: {} users",
            path.display(),
            users.len()
        );
    }
    if let Some(tls) = tls {
        if tls.is_generated() {
            eprintln!(
                "ferroftp: warning: TLS listeners without tls.cert: a self-signed certificate will be generated at each start"
            );
        } else if let Some(cert) = &config.tls.cert {
            let loaded = tls.current();
            eprintln!(
                "ferroftp: TLS certificate {}: {} (expires {}, SHA-256 {})",
                cert.display(),
                loaded.names.join(", "),
                tls::http_date(loaded.not_after),
                loaded.fingerprint
            );
        }
    }
    if let (Some(_), Some(token)) = (config.admin.listen, &config.admin.token_file) {
        eprintln!("ferroftp: admin token file {}: OK", token.display());
    }
    if !config.root.is_dir() {
        eprintln!(
            "ferroftp: root {} will be created at the first start",
            config.root.display()
        );
    }
    print!("{}", config.to_toml());
    eprintln!("ferroftp: {} is valid", file.display());
    Ok(())
}
