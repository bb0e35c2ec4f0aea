//! FTPS: certificates (loaded, checked, reloaded live), the rustls configuration, and the
//! per-session TLS state that binds data connections to their control connection.
//!
//! **Binding data connections.** Every TLS control session gets its own session cache and its
//! own ticket key. Its data connections are accepted with those, so a data connection can only
//! resume a TLS session that this control connection established: a full handshake, or a
//! session (id or ticket) from any other client, shows up as "not resumed" and is refused.
//! TLS 1.3 tickets additionally carry a random per-session token that is checked on resumption.
//!
//! **Nothing after the handshake on uploads.** A TLS 1.3 server usually sends session tickets
//! right after the handshake. On an upload the client never reads them, and when it closes
//! the data connection with them unread its kernel answers with a reset, which can destroy
//! upload data the server has not read yet. Upload data connections therefore get no tickets;
//! downloads get one (the client reads it with the data), which rustls-based clients need
//! because they use each TLS 1.3 ticket only once.
//!
//! This file holds the errors, the crypto provider, the certificate slot and [`Tls`] itself;
//! `tls/cert.rs` loads, checks and generates certificates, `tls/session.rs` holds the
//! per-session state ([`SessionTls`]), and `tls/tests.rs` the unit tests.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsConfig;

mod cert;
mod session;

use cert::read;

pub use cert::{
    LoadedCert, fingerprint, http_date, load_pair, load_pair_pem, normalize_fingerprint,
    self_signed,
};
pub use session::{DataDirection, SessionTls, Token};

/// Why a certificate, key or CA file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {path}: {error}")]
    Read {
        /// Which file it is ("certificate file", "key file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file holds no usable PEM item of the right kind.
    #[error("{what} {path}: {reason}")]
    Invalid {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate is outside its validity period.
    #[error("certificate {path}: {reason}")]
    Validity {
        /// The file.
        path: PathBuf,
        /// Expired or not yet valid, with the date.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("the key in {key} does not match the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider: ring, with rustls' defaults (TLS 1.2 and 1.3, ECDHE, AEAD suites only).
///
/// The server picks the suite, AES-128-GCM first: as safe as AES-256-GCM for TLS, and about a
/// quarter cheaper per byte, which is what bulk transfers spend their CPU on.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// Hands rustls the current certificate; swapped in place on reload, so running sessions
/// keep going and new handshakes see the new one.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl CertSlot {
    fn get(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A verifier for client certificates signed by the CAs in `ca`; clients without one may
/// still connect (and log in with a password).
fn client_verifier(
    ca: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what: "client CA file (tls.client_ca)",
        path: ca.to_owned(),
        reason,
    };
    let pem = read("client CA file (tls.client_ca)", ca)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("no certificate found".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(e.to_string()))
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Generated,
}

/// The server's TLS state: the current certificate, the shared rustls configuration, and
/// what reloading needs.
#[derive(Debug)]
pub struct Tls {
    slot: Arc<CertSlot>,
    base: Arc<ServerConfig>,
    source: Source,
    current: RwLock<LoadedCert>,
    /// How long a client may take over a handshake.
    pub handshake_timeout: Duration,
    /// Refuse TLS uploads that end without close_notify.
    pub require_close_notify: bool,
}

impl Tls {
    /// Load the configured certificate (or generate a self-signed one) and build the rustls
    /// configuration; errors name the file and the problem.
    pub fn new(cfg: &TlsConfig) -> Result<Self, TlsError> {
        let (loaded, source) = match (&cfg.cert, &cfg.key) {
            (Some(cert), Some(key)) => (
                load_pair(cert, key)?,
                Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            ),
            _ => {
                let hosts = vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ];
                let (cert, key) = self_signed(&hosts, 365)?;
                let here = Path::new("<generated>");
                (
                    load_pair_pem(cert.as_bytes(), key.as_bytes(), here, here)?,
                    Source::Generated,
                )
            }
        };
        let slot = Arc::new(CertSlot(RwLock::new(Arc::clone(&loaded.key))));
        let verifier = match &cfg.client_ca {
            Some(ca) => Some(client_verifier(ca)?),
            None => None,
        };
        let build = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            let builder =
                ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(Arc::clone(v)),
                None => builder.with_no_client_auth(),
            };
            let mut config =
                builder.with_cert_resolver(Arc::clone(&slot) as Arc<dyn ResolvesServerCert>);
            config.ignore_client_order = true;
            // Per-session caches and ticketers replace these in `SessionTls`; the bases keep
            // none, so that nothing can be resumed across sessions by accident.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            Ok::<_, TlsError>(Arc::new(config))
        };
        let base = build(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        Ok(Self {
            slot,
            base,
            source,
            current: RwLock::new(loaded),
            handshake_timeout: cfg.handshake_timeout(),
            require_close_notify: cfg.require_close_notify,
        })
    }

    /// The certificate in use now.
    pub fn current(&self) -> LoadedCert {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the certificate was generated at start rather than loaded from files.
    pub fn is_generated(&self) -> bool {
        matches!(self.source, Source::Generated)
    }

    /// The certificate and key files, if the certificate comes from files.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        match &self.source {
            Source::Files { cert, key } => Some((cert, key)),
            Source::Generated => None,
        }
    }

    /// Load the certificate files again. On success new handshakes use the new pair (running
    /// sessions are untouched); on failure the old pair stays and the error is returned.
    pub fn reload(&self) -> Result<Option<LoadedCert>, TlsError> {
        let Source::Files { cert, key } = &self.source else {
            return Ok(None);
        };
        let loaded = load_pair(cert, key)?;
        // The whole chain counts: a fixed intermediate is a change even with the same leaf.
        if loaded.key.cert == self.current().key.cert {
            return Ok(None);
        }
        self.slot.set(Arc::clone(&loaded.key));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.clone();
        Ok(Some(loaded))
    }

    /// Fresh TLS state for one control session.
    pub fn session(&self) -> Result<SessionTls, TlsError> {
        SessionTls::new(&self.base)
    }
}

/// The modification times of the certificate and key files.
pub type FilesStamp = (Option<SystemTime>, Option<SystemTime>);

/// The modification times of the certificate files, to notice a change on disk.
pub fn files_stamp(tls: &Tls) -> Option<FilesStamp> {
    let (cert, key) = tls.files()?;
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((mtime(cert), mtime(key)))
}

#[cfg(test)]
mod tests;
