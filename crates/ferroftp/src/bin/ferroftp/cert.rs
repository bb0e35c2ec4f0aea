//! `ferroftp cert`: a self-signed certificate and key for development.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ferroftp::tls;

#[derive(Args, Debug)]
pub(crate) struct CertArgs {
    /// Make a self-signed certificate (the only kind on offer).
    #[arg(long, required = true)]
    self_signed: bool,
    /// Host name or IP address the certificate is for; repeat for several.
    #[arg(long, value_name = "NAME", required = true)]
    host: Vec<String>,
    /// Directory to write cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days of validity.
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u32,
}

/// `ferroftp cert --self-signed`: write cert.pem and key.pem, and say how to use them.
pub(crate) fn cert(args: CertArgs) -> anyhow::Result<()> {
    debug_assert!(args.self_signed);
    let (cert, key) = tls::self_signed(&args.host, args.days)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, key.as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    let loaded = tls::load_pair(&cert_path, &key_path)?;
    println!("certificate: {}", cert_path.display());
    println!("key:         {} (mode 0600)", key_path.display());
    println!("names:       {}", loaded.names.join(", "));
    println!("expires:     {}", tls::http_date(loaded.not_after));
    println!("SHA-256:     {}", loaded.fingerprint);
    println!(
        "use with:    ferroftp serve --tls-cert {} --tls-key {}",
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

/// Write a file only its owner can read, whatever the umask.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}
