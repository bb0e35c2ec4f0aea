//! TLS clients for the tests: a rustls configuration that trusts the test certificate, and a
//! suppaftp FTPS session on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{RustlsConnector, RustlsFtpStream};

/// A rustls client configuration that trusts exactly the certificates in `ca` (PEM), for the
/// given TLS versions (`rustls::DEFAULT_VERSIONS`: 1.3 and 1.2).
pub fn rustls_client(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// AUTH TLS (suppaftp then sends PBSZ 0 and PROT P), login, TYPE I, verifying the server
/// against `ca`.
pub fn ftps_login(addr: SocketAddr, ca: &Path, user: &str, password: &str) -> RustlsFtpStream {
    let ftp = RustlsFtpStream::connect_timeout(addr, Duration::from_secs(10)).unwrap();
    ftp.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let connector = RustlsConnector::from(rustls_client(ca, rustls::DEFAULT_VERSIONS));
    let mut ftp = ftp.into_secure(connector, "127.0.0.1").unwrap();
    ftp.login(user, password).unwrap();
    ftp.transfer_type(FileType::Binary).unwrap();
    ftp
}
