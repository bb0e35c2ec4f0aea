//! The client's TLS: what it trusts (`--ca`, pinned, or the system's CAs), the verifier that
//! keeps the server's certificate for the report, and one `ClientConfig` for the control and
//! every data connection, so that data connections resume the control connection's session.

use std::io;
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

use super::advice::{certificate_problem, tls_problem};
use super::{ConnectOptions, describe_io};
use crate::doctor::{Check, Level};

/// Where system CA bundles usually are (Debian/Ubuntu, Fedora/RHEL, Alpine/BSD).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What the client trusts, when it verifies at all.
#[derive(Debug)]
struct Trust {
    /// The certificates given with `--ca`: a server that presents one of them, byte for byte,
    /// as its own is trusted as it is (pinning), as curl and lftp trust it. A self-signed
    /// certificate made with `openssl req -x509` is marked CA:TRUE, which the CA path below
    /// refuses as a server certificate.
    pub(super) pinned: Vec<CertificateDer<'static>>,
    /// Everything else: a chain to one of the CAs (none when `--ca` holds no usable CA).
    pub(super) webpki: Option<Arc<WebPkiServerVerifier>>,
}

/// Verifies the server's certificate (or, with `--insecure`, only the handshake signatures)
/// and keeps the certificate for the report.
#[derive(Debug)]
struct Verifier {
    /// None with `--insecure`.
    pub(super) trust: Option<Trust>,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    /// Whether the last certificate was trusted because `--ca` holds it (for the report).
    pub(super) pinned_hit: Arc<AtomicBool>,
}

impl Verifier {
    /// A certificate given with `--ca` as the server's own: still only for its names and its
    /// validity period, as any client checks.
    fn verify_pinned(
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| CertificateError::BadEncoding)?;
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if now_secs < validity.not_before.timestamp() {
            return Err(CertificateError::NotValidYet.into());
        }
        if now_secs > validity.not_after.timestamp() {
            return Err(CertificateError::Expired.into());
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(end_entity.clone().into_owned());
        self.pinned_hit.store(false, Ordering::Relaxed);
        let Some(trust) = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        if trust
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            Self::verify_pinned(end_entity, server_name, now)?;
            self.pinned_hit.store(true, Ordering::Relaxed);
            return Ok(ServerCertVerified::assertion());
        }
        match &trust.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(CertificateError::UnknownIssuer.into()),
        }
    }

    // The handshake signatures are checked in every case (pinned or not, and with
    // --insecure too): the server must hold the key of the certificate it shows.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client's TLS configuration, shared by the control and data connections so that data
/// connections resume the control connection's session.
pub(super) struct TlsClient {
    pub(super) config: Arc<ClientConfig>,
    pub(super) name: ServerName<'static>,
    pub(super) seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    pub(super) pinned_hit: Arc<AtomicBool>,
    /// Where the trusted CAs came from, for messages.
    pub(super) trust: String,
    /// Whether `--ca` was given (for the advice on failures).
    pub(super) ca_given: bool,
}

impl TlsClient {
    pub(super) fn new(opts: &ConnectOptions) -> Result<Self, Check> {
        let name = ServerName::try_from(opts.host.clone()).map_err(|e| {
            Check::new(
                Level::Fail,
                format!("{:?} cannot be a TLS server name: {e}", opts.host),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (trust, described) = if opts.insecure {
            (None, "not verified (--insecure)".to_owned())
        } else {
            let (trust, described) = Self::trust(opts, &provider)?;
            (Some(trust), described)
        };
        Self::build(name, trust, described, opts.ca.is_some(), provider)
    }

    /// A client that verifies nothing but the handshake signatures: enough to see whether a
    /// port speaks TLS and to read what comes after.
    pub(super) fn unverified(host: IpAddr) -> Result<Self, Check> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Self::build(
            ServerName::IpAddress(host.into()),
            None,
            "not verified".into(),
            false,
            provider,
        )
    }

    /// The certificates to trust: `--ca` (each one also pinned), or the system's CAs.
    fn trust(
        opts: &ConnectOptions,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Trust, String), Check> {
        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        let files: Vec<PathBuf> = match &opts.ca {
            Some(ca) => vec![ca.clone()],
            None => SYSTEM_CA_FILES
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .take(1)
                .collect(),
        };
        for file in &files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .map_err(|e| {
                    Check::new(
                        Level::Fail,
                        format!("cannot read CA file {}: {e}", file.display()),
                    )
                })?
                .filter_map(Result::ok)
                .collect();
            if opts.ca.is_some() {
                pinned.extend(certs.iter().cloned());
            }
            roots.add_parsable_certificates(certs);
        }
        if roots.is_empty() && pinned.is_empty() {
            let what = match &opts.ca {
                Some(ca) => format!("no certificate found in {}", ca.display()),
                None => format!(
                    "no system CA certificates found ({})",
                    SYSTEM_CA_FILES.join(", ")
                ),
            };
            return Err(Check::new(Level::Fail, what)
                .fix("give --ca FILE (the server's certificate or its CA, PEM), or --insecure"));
        }
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .map_err(|e| Check::new(Level::Fail, format!("CA certificates: {e}")))?,
            )
        };
        let files = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok((Trust { pinned, webpki }, format!("trusting {files}")))
    }

    fn build(
        name: ServerName<'static>,
        trust: Option<Trust>,
        described: String,
        ca_given: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Check> {
        let seen = Arc::new(Mutex::new(None));
        let pinned_hit = Arc::new(AtomicBool::new(false));
        let verifier = Verifier {
            trust,
            provider: Arc::clone(&provider),
            seen: Arc::clone(&seen),
            pinned_hit: Arc::clone(&pinned_hit),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Check::new(Level::Fail, format!("TLS client: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            name,
            seen,
            pinned_hit,
            trust: described,
            ca_given,
        })
    }

    /// A TLS handshake over `tcp`.
    pub(super) fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, io::Error> {
        let conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// What the server's certificate says, for the report.
    pub(super) fn describe_certificate(&self) -> String {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(der) = seen else {
            return "no certificate seen".into();
        };
        let fingerprint = crate::tls::fingerprint(der.as_ref());
        let trust = if self.pinned_hit.load(Ordering::Relaxed) {
            format!(
                "{} (the very certificate given with --ca: trusted as it is)",
                self.trust
            )
        } else {
            self.trust.clone()
        };
        match x509_parser::parse_x509_certificate(der.as_ref()) {
            Ok((_, cert)) => {
                let mut names: Vec<String> = Vec::new();
                if let Ok(Some(san)) = cert.subject_alternative_name() {
                    for n in &san.value.general_names {
                        match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => {
                                names.push((*d).to_owned());
                            }
                            x509_parser::extensions::GeneralName::IPAddress(b) => {
                                let ip = match b.len() {
                                    4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                                    16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                                    _ => None,
                                };
                                names.extend(ip.map(|ip| ip.to_string()));
                            }
                            _ => {}
                        }
                    }
                }
                if names.is_empty() {
                    names.push(cert.subject().to_string());
                }
                let expires = cert.validity().not_after.timestamp();
                let expires = std::time::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(expires).unwrap_or(0));
                format!(
                    "certificate for {}, expires {}, SHA-256 {fingerprint}, {}",
                    names.join(", "),
                    crate::tls::http_date(expires),
                    trust
                )
            }
            Err(_) => format!("certificate SHA-256 {fingerprint}, {trust}"),
        }
    }

    /// A failed handshake as a check, with the likely cause.
    pub(super) fn handshake_failure(
        &self,
        what: &str,
        e: &io::Error,
        opts: &ConnectOptions,
    ) -> Check {
        let tls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let cert = self.describe_certificate();
        match tls_error {
            Some(rustls::Error::InvalidCertificate(ce)) => {
                let (why, fix) = certificate_problem(ce, &opts.host, self.ca_given);
                Check::new(Level::Fail, format!("{what}: {why}; {cert}")).fix(fix)
            }
            Some(other) => {
                let (why, fix) = tls_problem(other, opts.implicit);
                Check::new(Level::Fail, format!("{what}: {why}")).fix(fix)
            }
            None => Check::new(
                Level::Fail,
                format!("{what}: {}", describe_io(e, opts.timeout)),
            )
            .fix(if opts.implicit {
                "is this port implicit FTPS? For explicit FTPS (AUTH TLS) drop --implicit"
            } else {
                "see the server's log (tls.handshake_timeout_secs, certificate problems)"
            }),
        }
    }
}

pub(super) fn tls_summary(conn: &ClientConnection) -> String {
    let version = conn.protocol_version().map_or_else(
        || "?".to_owned(),
        |v| format!("{v:?}").replace("TLSv1_", "TLS 1."),
    );
    let suite = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    format!("{version}, {suite}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate marked CA:TRUE, as `openssl req -x509` makes it, for `names`.
    fn ca_marked_cert(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verifier(pinned: Vec<CertificateDer<'static>>) -> Verifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(pinned.iter().cloned());
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .unwrap();
        Verifier {
            trust: Some(Trust {
                pinned,
                webpki: Some(webpki),
            }),
            provider,
            seen: Arc::default(),
            pinned_hit: Arc::default(),
        }
    }

    #[test]
    fn a_certificate_given_with_ca_is_trusted_as_it_is_but_only_for_its_names() {
        let cert = ca_marked_cert(&["localhost"]);
        let v = verifier(vec![cert.clone()]);
        let verify = |v: &Verifier, cert: &CertificateDer<'_>, name: &str| {
            v.verify_server_cert(
                cert,
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        assert!(verify(&v, &cert, "localhost").is_ok());
        assert!(v.pinned_hit.load(Ordering::Relaxed));
        assert!(matches!(
            verify(&v, &cert, "ftp.example.org"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ));
        // Another CA-marked certificate is not pinned: the CA path refuses it.
        let other = ca_marked_cert(&["localhost"]);
        assert!(verify(&v, &other, "localhost").is_err());
        assert!(!v.pinned_hit.load(Ordering::Relaxed));
    }
}
