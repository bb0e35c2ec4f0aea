//! `[tls]`: certificates and TLS settings shared by every TLS listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Certificates and TLS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first; absent = a self-signed certificate
    /// generated at start (for trying things out, not for production).
    pub cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: Option<PathBuf>,
    /// Seconds a client may take to complete a TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds between checks of the certificate files for changes (0 = only on SIGHUP).
    pub reload_check_secs: u64,
    /// Refuse a TLS upload that ends without the client's close_notify (it may be truncated).
    pub require_close_notify: bool,
    /// PEM file of CA certificates that client certificates are verified against; absent = no
    /// client certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            handshake_timeout_secs: 10,
            reload_check_secs: 10,
            require_close_notify: true,
            client_ca: None,
        }
    }
}

impl TlsConfig {
    /// The handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

impl TlsConfig {
    /// A certificate needs its key and a key its certificate.
    pub(super) fn check_pair(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(invalid(
                "tls.key",
                "tls.cert is set, so tls.key is needed too",
            )),
            (None, Some(_)) => Err(invalid(
                "tls.cert",
                "tls.key is set, so tls.cert is needed too",
            )),
            _ => Ok(()),
        }
    }

    /// A handshake must be given some time.
    pub(super) fn check_timeouts(&self) -> Result<(), ConfigError> {
        if self.handshake_timeout_secs == 0 {
            return Err(invalid(
                "tls.handshake_timeout_secs",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}
