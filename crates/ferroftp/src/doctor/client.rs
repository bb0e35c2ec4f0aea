//! `ferroftp doctor --connect`: a small blocking FTP client that walks through what a transfer
//! needs (connect, greeting, TLS, login, PASV, EPSV, upload, download) and says which step
//! failed and why it probably did.
//!
//! TLS data connections resume the control connection's TLS session, as ferroftp requires: one
//! `rustls::ClientConfig` (and so one session store) serves the control connection and every
//! data connection, all under the same server name.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind,
    RootCertStore, SignatureScheme, StreamOwned,
};

use super::checks::is_private;
use super::{Check, Level, Report};

/// Where system CA bundles usually are (Debian/Ubuntu, Fedora/RHEL, Alpine/BSD).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Size of the file sent and fetched back.
const PROBE_BYTES: usize = 64 * 1024;

/// What `--connect` was asked to do.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The server's host name or IP address, as given (also the TLS server name).
    pub host: String,
    /// The control port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The password (read from stdin, never from the command line).
    pub password: String,
    /// Test FTPS only, and fail if AUTH TLS is refused.
    pub tls: bool,
    /// Implicit FTPS: TLS from the first byte.
    pub implicit: bool,
    /// Do not verify the server's certificate.
    pub insecure: bool,
    /// CA certificates (PEM) to verify the server's certificate against, instead of the
    /// system's.
    pub ca: Option<PathBuf>,
    /// The time each step (connect, each reply, each data connection) may take.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// Split `HOST:PORT` (`[v6]:PORT` for IPv6 addresses).
    pub fn parse_target(target: &str) -> Result<(String, u16), String> {
        let bad = || format!("{target:?} is not HOST:PORT (e.g. ftp.example.org:21, [::1]:2121)");
        let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(':') && host.parse::<IpAddr>().is_err() {
            return Err(bad());
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(bad)?;
        Ok((host.to_owned(), port))
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn ms(since: Instant) -> String {
    format!("{} ms", since.elapsed().as_millis())
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// What went wrong with a network read or write, for messages.
fn describe_io(e: &io::Error, timeout: Duration) -> String {
    if timed_out(e) {
        format!("no answer within {}", secs(timeout))
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "the server closed the connection".into()
    } else {
        e.to_string()
    }
}

/// What went wrong with a TCP connect, for messages.
fn describe_connect(e: &io::Error, timeout: Duration) -> String {
    if timed_out(e) {
        format!("timed out after {}", secs(timeout))
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        "was refused".into()
    } else {
        format!("failed ({e})")
    }
}

// ---- TLS ----

/// What the client trusts, when it verifies at all.
#[derive(Debug)]
struct Trust {
    /// The certificates given with `--ca`: a server that presents one of them, byte for byte,
    /// as its own is trusted as it is (pinning), as curl and lftp trust it. A self-signed
    /// certificate made with `openssl req -x509` is marked CA:TRUE, which the CA path below
    /// refuses as a server certificate.
    pinned: Vec<CertificateDer<'static>>,
    /// Everything else: a chain to one of the CAs (none when `--ca` holds no usable CA).
    webpki: Option<Arc<WebPkiServerVerifier>>,
}

/// Verifies the server's certificate (or, with `--insecure`, only the handshake signatures)
/// and keeps the certificate for the report.
#[derive(Debug)]
struct Verifier {
    /// None with `--insecure`.
    trust: Option<Trust>,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    /// Whether the last certificate was trusted because `--ca` holds it (for the report).
    pinned_hit: Arc<AtomicBool>,
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
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
    pinned_hit: Arc<AtomicBool>,
    /// Where the trusted CAs came from, for messages.
    trust: String,
    /// Whether `--ca` was given (for the advice on failures).
    ca_given: bool,
}

impl TlsClient {
    fn new(opts: &ConnectOptions) -> Result<Self, Check> {
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
    fn handshake(
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
    fn describe_certificate(&self) -> String {
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
    fn handshake_failure(&self, what: &str, e: &io::Error, opts: &ConnectOptions) -> Check {
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

/// A name as webpki reports it (`DnsName("a.example")`, `IpAddress(192.0.2.1)`), as people
/// write it.
fn plain_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// A certificate the client refused, in plain words: why, and what to do.
fn certificate_problem(e: &CertificateError, host: &str, ca_given: bool) -> (String, String) {
    let not_trusted = if ca_given {
        "give --ca the server's own certificate (it is then trusted as it is, even when self-signed) or the CA that signed it; or --insecure to skip verification"
    } else {
        "give --ca FILE (the server's own certificate, or the CA that signed it), or --insecure to skip verification"
    };
    let reissue = "make a new certificate on the server (tls.cert and tls.key; they are reloaded without a restart), e.g. ferroftp cert --self-signed --host NAME, or from your CA";
    let (why, fix): (String, &str) = match e {
        CertificateError::UnknownIssuer => (
            if ca_given {
                "the certificate is neither the one given with --ca nor signed by a CA in it".into()
            } else {
                "the certificate is not signed by a CA this client trusts (self-signed, or a private CA)".into()
            },
            not_trusted,
        ),
        CertificateError::BadSignature => (
            "the certificate's signature does not match the CA it names as issuer (another CA with the same name, or a damaged certificate)".into(),
            "check that --ca holds the CA that really signed it, and that tls.cert on the server holds the leaf first, then its intermediates",
        ),
        CertificateError::NotValidForName => (
            format!("the certificate is not for {host:?}"),
            "connect with a name the certificate has, or get one for this name (--insecure skips the check)",
        ),
        CertificateError::NotValidForNameContext { presented, .. } => (
            format!(
                "the certificate is not for {host:?}: it is for {}",
                if presented.is_empty() {
                    "no name at all (no subjectAltName)".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|n| plain_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            "connect with a name the certificate has, or get one for this name (--insecure skips the check)",
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            "the server's certificate has expired".into(),
            "renew it on the server (tls.cert; it is reloaded without a restart)",
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "the server's certificate is not valid yet: its start date is in the future".into(),
            "check the clocks of this host and the server (timedatectl), or wait until the certificate's start date",
        ),
        CertificateError::BadEncoding => (
            "the server's certificate cannot be read (malformed)".into(),
            reissue,
        ),
        CertificateError::UnhandledCriticalExtension => (
            "the certificate has an extension marked critical that this client does not know".into(),
            reissue,
        ),
        // rustls still returns the deprecated form for some webpki errors.
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            "the certificate is signed with an algorithm this client refuses (such as SHA-1 or MD5)".into(),
            "re-issue it signed with SHA-256 (RSA 2048 bits or more, or ECDSA P-256)",
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            "the certificate is not meant for TLS servers (its extended key usage lacks serverAuth)".into(),
            "re-issue it with extendedKeyUsage = serverAuth (or without an extendedKeyUsage)",
        ),
        CertificateError::Revoked => (
            "the server's certificate has been revoked by its CA".into(),
            "get a new certificate from the CA",
        ),
        CertificateError::UnknownRevocationStatus
        | CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => (
            "whether the certificate is revoked cannot be told".into(),
            "check the CA's revocation list, or get a new certificate",
        ),
        CertificateError::InvalidOcspResponse => (
            "the OCSP status the server sent with its certificate is invalid".into(),
            "check the OCSP stapling set up in front of the server",
        ),
        CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => (
                "the server's certificate is a CA certificate (basicConstraints CA:TRUE, what openssl req -x509 makes by default), which clients accept as the server's own only when given exactly that certificate".into(),
                if ca_given {
                    "give --ca the server's own certificate (this one is not in the --ca file), or re-create it as a server certificate: openssl req -x509 ... -addext basicConstraints=critical,CA:FALSE, or ferroftp cert --self-signed --host NAME"
                } else {
                    "give --ca the server's own certificate (it is then trusted as it is), or re-create it as a server certificate: openssl req -x509 ... -addext basicConstraints=critical,CA:FALSE, or ferroftp cert --self-signed --host NAME"
                },
            ),
            Some(webpki::Error::EndEntityUsedAsCa) => (
                "a certificate in the server's chain signs another one but is not a CA certificate (basicConstraints CA:FALSE)".into(),
                "tls.cert on the server: the server's certificate first, then the intermediates of its CA, in order",
            ),
            Some(
                webpki::Error::PathLenConstraintViolated
                | webpki::Error::NameConstraintViolation
                | webpki::Error::MaximumPathDepthExceeded,
            ) => (
                "the chain breaks a limit its CA set (path length or name constraints)".into(),
                "get a certificate the CA may issue for this name",
            ),
            Some(webpki::Error::UnsupportedCertVersion) => (
                "the server's certificate is not an X.509 version 3 certificate".into(),
                reissue,
            ),
            Some(e) => (
                format!("the certificate was refused (webpki: {e})"),
                "check the certificate chain on the server (tls.cert: leaf first, then intermediates)",
            ),
            None => (
                format!("the certificate was refused ({other})"),
                "check the certificate chain on the server (tls.cert: leaf first, then intermediates)",
            ),
        },
        CertificateError::ApplicationVerificationFailure => (
            "the certificate was refused by this client".into(),
            not_trusted,
        ),
        _ => (
            format!("the certificate was refused ({e})"),
            "check the certificate chain on the server (tls.cert: leaf first, then intermediates)",
        ),
    };
    (why, fix.to_owned())
}

/// A TLS failure other than the certificate, in plain words: why, and what to do.
fn tls_problem(e: &rustls::Error, implicit: bool) -> (String, String) {
    let (why, fix) = match e {
        rustls::Error::AlertReceived(alert) => (
            format!("the server ended the handshake with the alert {alert:?}"),
            "see the server's log for its side (a TLS version or cipher in common, tls.min_version)",
        ),
        rustls::Error::PeerIncompatible(_) => (
            format!("the server and this client have no TLS version or cipher in common ({e})"),
            "the server offers only what this client refuses (TLS 1.2 and 1.3 with modern ciphers are supported)",
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => (
            format!("the server did not answer in TLS ({e})"),
            if implicit {
                "is this port implicit FTPS? For explicit FTPS (AUTH TLS, usually port 21) drop --implicit"
            } else {
                "is something other than ferroftp answering on this port?"
            },
        ),
        _ => (
            e.to_string(),
            if implicit {
                "is this port implicit FTPS? For explicit FTPS (AUTH TLS, usually port 21) drop --implicit"
            } else {
                "see the server's log for its side of the handshake"
            },
        ),
    };
    (why, fix.to_owned())
}

// ---- connections ----

/// A plain or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }

    /// Read to the end. For TLS, whether the server ended with close_notify.
    fn read_all(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Conn::Plain(s) => s.read_to_end(out).map(|_| true),
            Conn::Tls(t) => match t.read_to_end(out) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// End an upload: TLS close_notify (the server refuses uploads without it), then FIN.
    fn finish(&mut self) -> io::Result<()> {
        if let Conn::Tls(t) = self {
            t.conn.send_close_notify();
            while t.conn.wants_write() {
                t.conn.write_tls(&mut t.sock)?;
            }
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => t.flush(),
        }
    }
}

/// A reply as the checks read it: its code and its lines joined by newlines (the code and
/// the separator of the first and last line left out, trailing blanks trimmed).
struct Reply {
    code: u16,
    text: String,
}

impl From<ferroftp_proto::Reply> for Reply {
    fn from(reply: ferroftp_proto::Reply) -> Self {
        let lines: Vec<&str> = reply.lines.iter().map(|l| l.trim_end()).collect();
        Self {
            code: reply.code,
            text: lines.join("\n"),
        }
    }
}

/// The longest reply read before giving up on the server (a greeting banner or FEAT is a few
/// hundred bytes).
const MAX_REPLY: usize = 64 * 1024;

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Multi-line replies: the first line is enough for a message.
        write!(
            f,
            "{} {}",
            self.code,
            self.text.lines().next().unwrap_or("")
        )
    }
}

/// The control connection.
struct Control {
    conn: Option<Conn>,
    buf: Vec<u8>,
    peer: SocketAddr,
}

impl Control {
    fn conn(&mut self) -> io::Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
    }

    /// The next reply, read with proto's client-side codec; bytes after it stay buffered.
    fn reply(&mut self) -> io::Result<Reply> {
        loop {
            match ferroftp_proto::Reply::decode(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(Reply::from(reply));
                }
                Ok(None) if self.buf.len() > MAX_REPLY => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut chunk = [0u8; 4096];
            let n = self.conn()?.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        let conn = self.conn()?;
        conn.write_all(format!("{line}\r\n").as_bytes())?;
        conn.flush()
    }

    fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(line)?;
        self.reply()
    }

    /// Replace the plain connection by a TLS one (after 234).
    fn upgrade(&mut self, tls: &TlsClient) -> io::Result<()> {
        if !self.buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server sent more after 234, before the TLS handshake",
            ));
        }
        match self.conn.take() {
            Some(Conn::Plain(tcp)) => {
                self.conn = Some(Conn::Tls(Box::new(tls.handshake(tcp)?)));
                Ok(())
            }
            other => {
                self.conn = other;
                Err(io::Error::other("already TLS"))
            }
        }
    }
}

/// Whether `addr` completes a TLS handshake (the certificate not verified): an implicit FTPS
/// port, which waits for the client's hello before it says anything.
fn speaks_tls(addr: SocketAddr, timeout: Duration) -> bool {
    let (Ok(tls), Ok(tcp)) = (TlsClient::unverified(addr.ip()), connect_tcp(addr, timeout)) else {
        return false;
    };
    match tls.handshake(tcp) {
        Ok(_) => true,
        // The server answered in TLS, only to refuse something (a client certificate, say).
        Err(e) => matches!(
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::AlertReceived(_))
        ),
    }
}

/// The greeting of the FTP server at `addr` (over TLS from the first byte when `implicit`,
/// the certificate not verified; after a PROXY header when `proxy_header`): its code and its
/// lines after the code; then QUIT. For recognising a
/// server that already runs.
pub(super) fn greeting(
    addr: SocketAddr,
    implicit: bool,
    proxy_header: bool,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut tcp = connect_tcp(addr, timeout)?;
    if proxy_header {
        // A listener behind a trusted proxy expects its header first; UNKNOWN: a health check.
        tcp.write_all(b"PROXY UNKNOWN\r\n")?;
    }
    let conn = if implicit {
        let tls = TlsClient::unverified(addr.ip()).map_err(|c| io::Error::other(c.text))?;
        Conn::Tls(Box::new(tls.handshake(tcp)?))
    } else {
        Conn::Plain(tcp)
    };
    let mut ctrl = Control {
        conn: Some(conn),
        buf: Vec::new(),
        peer: addr,
    };
    let reply = ctrl.reply()?;
    // Politeness; the answer does not matter.
    let _ = ctrl.cmd("QUIT");
    Ok((reply.code, reply.text))
}

fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

// ---- one session ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    Explicit,
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passive {
    Pasv,
    Epsv,
}

impl Passive {
    fn name(self) -> &'static str {
        match self {
            Passive::Pasv => "PASV",
            Passive::Epsv => "EPSV",
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    connected: bool,
    /// The server sent its 220 greeting (what FEAT said is known only then).
    greeted: bool,
    auth_tls_offered: bool,
    login_failed: bool,
    tls_required: bool,
}

struct Session<'a> {
    opts: &'a ConnectOptions,
    tls: Option<&'a TlsClient>,
    security: Security,
    ctrl: Control,
    prot_p: bool,
}

/// Connect to the first address of `host` that answers; a FAIL check if none does.
fn reach(opts: &ConnectOptions) -> Result<(TcpStream, SocketAddr, Instant), Check> {
    let target = format!("{}:{}", opts.host, opts.port);
    let addrs: Vec<SocketAddr> = (opts.host.as_str(), opts.port)
        .to_socket_addrs()
        .map_err(|e| {
            Check::new(
                Level::Fail,
                format!("server unreachable: cannot resolve {:?}: {e}", opts.host),
            )
            .fix("check the host name (DNS), or give the IP address")
        })?
        .collect();
    let mut failures = Vec::new();
    let mut refused_only = true;
    for addr in addrs {
        let start = Instant::now();
        match connect_tcp(addr, opts.timeout) {
            Ok(s) => return Ok((s, addr, start)),
            Err(e) => {
                refused_only &= e.kind() == io::ErrorKind::ConnectionRefused;
                failures.push(format!(
                    "connecting to {addr} {}",
                    describe_connect(&e, opts.timeout)
                ));
            }
        }
    }
    let check = Check::new(
        Level::Fail,
        format!("server unreachable at {target}: {}", failures.join("; ")),
    );
    Err(if refused_only {
        check
            .fix("nothing listens there: is ferroftp running, on this address and port (listener.bind / --listen)? A firewall REJECT rule looks the same")
    } else {
        check.fix("a firewall drops the packets, or the host is down or unroutable: open the control port (ferroftp doctor --config FILE prints the rules)")
    })
}

fn run_session(
    opts: &ConnectOptions,
    security: Security,
    tls: Option<&TlsClient>,
    r: &mut Report,
) -> Outcome {
    let mut outcome = Outcome::default();
    r.section(match security {
        Security::Plain => "Plain FTP session",
        Security::Explicit => "FTPS session (AUTH TLS, PROT P)",
        Security::Implicit => "Implicit FTPS session (PROT P)",
    });
    let (tcp, peer, start) = match reach(opts) {
        Ok(x) => x,
        Err(check) => {
            r.add(check);
            return outcome;
        }
    };
    outcome.connected = true;
    let mut s = Session {
        opts,
        tls,
        security,
        ctrl: Control {
            conn: Some(Conn::Plain(tcp)),
            buf: Vec::new(),
            peer,
        },
        prot_p: false,
    };
    if let Err(check) = s.run(start, &mut outcome, r) {
        r.add(check);
    }
    // Politeness; the answer does not matter.
    let _ = s.ctrl.cmd("QUIT");
    outcome
}

type Step<T> = Result<T, Check>;

impl<'a> Session<'a> {
    fn fail(&self, text: impl Into<String>) -> Check {
        Check::new(Level::Fail, text)
    }

    /// A command whose failure to get any reply ends the session.
    /// A command and its reply; when the control connection fails, it is dropped (later
    /// steps are skipped) and the failure is a FAIL check.
    fn cmd(&mut self, line: &str) -> Step<Reply> {
        // Never show the password.
        let verb = line.split(' ').next().unwrap_or(line).to_owned();
        let result = self.ctrl.cmd(line);
        result.map_err(|e| self.control_failed(&verb, &e))
    }

    fn reply(&mut self, after: &str) -> Step<Reply> {
        let result = self.ctrl.reply();
        result.map_err(|e| self.control_failed(after, &e))
    }

    fn control_failed(&mut self, what: &str, e: &io::Error) -> Check {
        self.ctrl.conn = None;
        self.fail(format!(
            "{what}: the control connection failed: {}",
            describe_io(e, self.opts.timeout)
        ))
    }

    fn tls(&self) -> Step<&'a TlsClient> {
        self.tls
            .ok_or_else(|| self.fail("TLS is not set up (see above)"))
    }

    fn run(&mut self, start: Instant, outcome: &mut Outcome, r: &mut Report) -> Step<()> {
        let peer = self.ctrl.peer;
        if self.security == Security::Implicit {
            let tls = self.tls()?;
            let Some(Conn::Plain(tcp)) = self.ctrl.conn.take() else {
                return Err(self.fail("internal: no connection"));
            };
            match tls.handshake(tcp) {
                Ok(t) => {
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "TLS from the first byte: {}; {}",
                            tls_summary(&t.conn),
                            tls.describe_certificate()
                        ),
                    ));
                    self.ctrl.conn = Some(Conn::Tls(Box::new(t)));
                }
                Err(e) => {
                    return Err(tls.handshake_failure(
                        "implicit TLS handshake failed",
                        &e,
                        self.opts,
                    ));
                }
            }
        }
        let greeting = self.ctrl.reply().map_err(|e| {
            let timeout = self.opts.timeout;
            let check = self.fail(format!(
                "connected to {peer}, but no FTP greeting: {}",
                describe_io(&e, timeout)
            ));
            // An implicit FTPS port waits for the client's TLS hello and says nothing: try one.
            match self.security {
                Security::Implicit => check,
                _ if timed_out(&e) && speaks_tls(peer, timeout) => self
                    .fail(format!(
                        "connected to {peer}, but no FTP greeting within {}: this port speaks implicit FTPS (TLS from the first byte; a TLS handshake on it succeeded)",
                        secs(timeout)
                    ))
                    .fix("add --implicit (with --ca FILE or --insecure, as for any FTPS)"),
                _ => check.fix("is this an FTP server? For implicit FTPS (TLS from the first byte, usually port 990) add --implicit"),
            }
        })?;
        match greeting.code {
            220 => {
                outcome.greeted = true;
                r.add(Check::new(
                    Level::Ok,
                    format!("connected to {peer}: {greeting} ({})", ms(start)),
                ));
            }
            421 => {
                return Err(self.fail(format!("connected to {peer}, but the server refused the session: {greeting}"))
                    .fix("too many sessions (limits.max_sessions, max_sessions_per_ip), or this address is banned after failed logins (bans; bans.allow for trusted networks)"));
            }
            _ => {
                return Err(self.fail(format!(
                    "connected to {peer}, but the greeting is {greeting}, not 220"
                )));
            }
        }
        let feat = self.cmd("FEAT")?;
        outcome.auth_tls_offered = feat.code == 211
            && feat
                .text
                .lines()
                .any(|l| l.trim().eq_ignore_ascii_case("AUTH TLS"));
        if self.security == Security::Explicit {
            let tls = self.tls()?;
            let auth = self.cmd("AUTH TLS")?;
            if auth.code != 234 {
                return Err(self.fail(format!("AUTH TLS refused: {auth}")).fix(
                    "the listener does not offer TLS (mode = \"plain\" or --no-tls); if it is implicit FTPS, use --implicit",
                ));
            }
            let started = Instant::now();
            match self.ctrl.upgrade(tls) {
                Ok(()) => {
                    let summary = match self.ctrl.conn.as_ref() {
                        Some(Conn::Tls(t)) => tls_summary(&t.conn),
                        _ => String::new(),
                    };
                    r.add(Check::new(
                        Level::Ok,
                        format!(
                            "AUTH TLS: {summary} ({}); {}",
                            ms(started),
                            tls.describe_certificate()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(tls.handshake_failure("AUTH TLS handshake failed", &e, self.opts));
                }
            }
        }
        self.login(outcome, r)?;
        if self.security != Security::Plain {
            let pbsz = self.cmd("PBSZ 0")?;
            let prot = self.cmd("PROT P")?;
            if pbsz.code != 200 || prot.code != 200 {
                return Err(self.fail(format!("PBSZ 0 / PROT P refused: {pbsz} / {prot}")));
            }
            self.prot_p = true;
        }
        let ty = self.cmd("TYPE I")?;
        if ty.code != 200 {
            return Err(self.fail(format!("TYPE I refused: {ty}")));
        }
        let mut working = Vec::new();
        for mode in [Passive::Pasv, Passive::Epsv] {
            let (ok, checks) = self.listing(mode);
            if ok {
                working.push(mode);
            }
            for c in checks {
                r.add(c);
            }
            if self.ctrl.conn.is_none() {
                return Ok(());
            }
        }
        if working == [Passive::Epsv] {
            r.add(Check::new(
                Level::Warn,
                "EPSV works but PASV does not: clients that use EPSV (curl, lftp, FileZilla) are fine; PASV-only clients, and NAT gateways that rewrite PASV, are not",
            ));
        }
        match working.last() {
            Some(&mode) => {
                let check = match self.round_trip(mode) {
                    Ok(c) | Err(c) => c,
                };
                r.add(check);
            }
            None => r.add(
                self.fail("upload/download round trip skipped: no passive data connection worked"),
            ),
        }
        Ok(())
    }

    fn login(&mut self, outcome: &mut Outcome, r: &mut Report) -> Step<()> {
        let user = self.opts.user.clone();
        let started = Instant::now();
        let reply = self.cmd(&format!("USER {user}"))?;
        let reply = match reply.code {
            331 => self.cmd(&format!("PASS {}", self.opts.password))?,
            230 | 232 | 530 => reply,
            _ => return Err(self.fail(format!("USER {user} refused: {reply}"))),
        };
        match reply.code {
            230 | 232 => {
                r.add(Check::new(
                    Level::Ok,
                    format!("logged in as {user}: {reply} ({})", ms(started)),
                ));
                if self.security == Security::Plain && !self.ctrl.peer.ip().is_loopback() {
                    r.add(
                        Check::new(
                            Level::Warn,
                            "the password crossed the network in clear (plain FTP)",
                        )
                        .fix("use --tls to test FTPS only; require TLS with tls_policy = \"login\" on the listener"),
                    );
                }
                Ok(())
            }
            // The listener's or the user's tls_policy: as configured, so not a failure when
            // FTPS is tested next.
            530 if reply.text.contains("TLS") && self.security == Security::Plain => {
                outcome.tls_required = true;
                Err(Check::new(
                    Level::Ok,
                    format!("plain login refused, TLS is required: {reply}"),
                ))
            }
            530 if reply.text.contains("home directory") => Err(self
                .fail(format!("login refused for {user}: {reply}"))
                .fix("the user's home directory is missing or unreadable on the server (ferroftp doctor --config FILE checks the homes)")),
            530 => {
                outcome.login_failed = true;
                Err(self.fail(format!("login failed for {user}: {reply}")).fix(
                    "wrong user name or password, or a disabled user (users file); repeated failures slow replies and ban the address (bans)",
                ))
            }
            _ => Err(self.fail(format!("login failed for {user}: {reply}"))),
        }
    }

    /// Ask for a passive port and connect to it.
    fn open_passive(&mut self, mode: Passive) -> Result<(Conn, String, Vec<Check>), Vec<Check>> {
        let timeout = self.opts.timeout;
        let peer = self.ctrl.peer;
        let mut notes = Vec::new();
        let (target, announced) = match mode {
            Passive::Pasv => {
                let reply = self.cmd("PASV").map_err(|c| vec![c])?;
                if reply.code != 227 {
                    let level = if peer.is_ipv6() {
                        Level::Warn
                    } else {
                        Level::Fail
                    };
                    let mut check = Check::new(level, format!("PASV refused: {reply}"));
                    check = if peer.is_ipv6() {
                        check.fix("PASV is IPv4 only; over IPv6 clients use EPSV")
                    } else {
                        check.fix("425: the passive range is exhausted (passive.ports too small for the sessions at once) or passive.address does not resolve; see the server's log")
                    };
                    return Err(vec![check]);
                }
                let Some(addr) = ferroftp_proto::addr::parse_pasv_reply(&reply.text) else {
                    return Err(vec![
                        self.fail(format!("PASV: cannot read the address in {reply}")),
                    ]);
                };
                let addr = SocketAddr::V4(addr);
                if addr.ip() != peer.ip() {
                    let ip = match addr.ip() {
                        IpAddr::V4(ip) => ip,
                        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
                    };
                    if is_private(ip) || ip.is_loopback() {
                        notes.push(
                            Check::new(
                                Level::Warn,
                                format!(
                                    "227 announced a private address ({}) different from the one you connected to ({}): clients outside that network cannot follow it",
                                    addr.ip(),
                                    peer.ip()
                                ),
                            )
                            .fix("set passive.address to the address clients reach (behind NAT: the public address or name)"),
                        );
                    }
                }
                (addr, format!("227 announced {addr}"))
            }
            Passive::Epsv => {
                let reply = self.cmd("EPSV").map_err(|c| vec![c])?;
                if reply.code != 229 {
                    return Err(vec![self.fail(format!("EPSV refused: {reply}"))]);
                }
                let Some(port) = epsv_port(&reply.text) else {
                    return Err(vec![
                        self.fail(format!("EPSV: cannot read the port in {reply}")),
                    ]);
                };
                let addr = SocketAddr::new(peer.ip(), port);
                (addr, format!("229 announced port {port}"))
            }
        };
        match connect_tcp(target, timeout) {
            Ok(tcp) => Ok((Conn::Plain(tcp), announced, notes)),
            Err(e) => {
                let name = mode.name();
                let mut text = format!(
                    "{name} answered {target} but connecting to it {}: the passive range is not open in the firewall",
                    describe_connect(&e, timeout)
                );
                let mut check = if mode == Passive::Pasv {
                    text.push_str(
                        ", or the announced address is private or wrong — set passive.address",
                    );
                    if target.ip() != peer.ip() {
                        text.push_str(&format!(
                            " (it differs from {}, the address you connected to)",
                            peer.ip()
                        ));
                    }
                    Check::new(Level::Fail, text)
                        .fix("set passive.address to the address clients reach (behind NAT: the public one)")
                } else {
                    text.push_str(", or not forwarded to the server (NAT)");
                    Check::new(Level::Fail, text)
                };
                check = check.fix("open passive.ports in the firewall (ferroftp doctor --config FILE prints the rules)");
                notes.push(check);
                Err(notes)
            }
        }
    }

    /// After the 150: the TLS handshake on the data connection, when PROT P is on.
    fn protect(&mut self, data: Conn) -> Step<(Conn, &'static str)> {
        if !self.prot_p {
            return Ok((data, ""));
        }
        let tls = self.tls()?;
        let Conn::Plain(tcp) = data else {
            return Ok((data, ""));
        };
        match tls.handshake(tcp) {
            Ok(t) => {
                let resumed = if t.conn.handshake_kind() == Some(HandshakeKind::Resumed) {
                    "; TLS resumed the control connection's session"
                } else {
                    "; TLS did a full handshake (not resumed)"
                };
                Ok((Conn::Tls(Box::new(t)), resumed))
            }
            Err(e) => {
                let check =
                    tls.handshake_failure("data connection TLS handshake failed", &e, self.opts);
                // The server says why (522) on the control connection.
                match self.ctrl.reply() {
                    Ok(reply) => Err(self.explain_transfer_reply(&reply).unwrap_or(check)),
                    Err(_) => Err(check),
                }
            }
        }
    }

    /// A failed transfer's final reply as a check with the likely cause.
    fn explain_transfer_reply(&self, reply: &Reply) -> Option<Check> {
        let check = match reply.code {
            200..=299 => return None,
            522 => self.fail(format!("the data connection was refused with 522: session reuse ({reply})"))
                .fix("the data connection must resume the control connection's TLS session (require_session_reuse); this client does, so see the server's log"),
            521 => self.fail(format!("the transfer needs PROT P: {reply}")),
            425 => self.fail(format!("no data connection: {reply}"))
                .fix("the server waited limits.data_timeout_secs for the data connection, or refused it from another address (passive.allow_foreign_ip)"),
            426 => self.fail(format!("the transfer broke off: {reply}")),
            _ => self.fail(format!("transfer failed: {reply}")),
        };
        Some(check)
    }

    /// A listing over `mode`: whether it worked, and what there is to say about it.
    fn listing(&mut self, mode: Passive) -> (bool, Vec<Check>) {
        let name = mode.name();
        let started = Instant::now();
        let (data, announced, mut notes) = match self.open_passive(mode) {
            Ok(x) => x,
            Err(notes) => return (false, notes),
        };
        match self.list_over(data) {
            Ok((lines, resumed)) => {
                notes.insert(
                    0,
                    Check::new(
                        Level::Ok,
                        format!(
                            "{name} listing: {announced}, connected, LIST gave {lines} lines{resumed} ({})",
                            ms(started)
                        ),
                    ),
                );
                (true, notes)
            }
            Err(check) => {
                notes.push(check);
                (false, notes)
            }
        }
    }

    /// LIST over an open data connection: the number of lines, and how TLS went.
    fn list_over(&mut self, data: Conn) -> Step<(usize, &'static str)> {
        let reply = self.cmd("LIST")?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("LIST: {reply}"))));
        }
        let (mut data, resumed) = self.protect(data)?;
        let mut listing = Vec::new();
        let read = data.read_all(&mut listing);
        drop(data);
        let end = self.reply("after LIST")?;
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        read.map_err(|e| self.fail(format!("LIST: reading the data connection failed: {e}")))?;
        let lines = listing
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        Ok((lines, resumed))
    }

    /// Upload a random file into a new directory, download it, compare, remove both.
    fn round_trip(&mut self, mode: Passive) -> Step<Check> {
        let started = Instant::now();
        let mut rng = rand::thread_rng();
        let dir = format!("ferroftp-doctor-{:08x}", rng.next_u32());
        let file = format!("{dir}/probe.bin");
        let mut sent = vec![0u8; PROBE_BYTES];
        rng.fill_bytes(&mut sent);
        let mkd = self.cmd(&format!("MKD {dir}"))?;
        if mkd.code != 257 {
            return Err(Check::new(
                Level::Warn,
                format!("round trip not run: MKD {dir} refused: {mkd}"),
            )
            .fix("the user may not create directories or write here (permissions mkdir, write); fine for a read-only user"));
        }
        let result = self.upload_download(mode, &file, &sent);
        let dele = self.cmd(&format!("DELE {file}"));
        let rmd = self.cmd(&format!("RMD {dir}"));
        let check = result?;
        let cleaned = matches!((&dele, &rmd), (Ok(d), Ok(r)) if d.code == 250 && r.code == 250);
        if !cleaned {
            let what = |r: &Step<Reply>| match r {
                Ok(reply) => reply.to_string(),
                Err(c) => c.text.clone(),
            };
            return Ok(Check::new(
                Level::Warn,
                format!(
                    "{}; but removing the test files failed: DELE {}, RMD {}",
                    check.text,
                    what(&dele),
                    what(&rmd)
                ),
            )
            .fix(format!("remove {dir} by hand")));
        }
        Ok(Check::new(
            check.level,
            format!("{}; removed again ({})", check.text, ms(started)),
        ))
    }

    fn upload_download(&mut self, mode: Passive, file: &str, sent: &[u8]) -> Step<Check> {
        let name = mode.name();
        let one = |notes: Vec<Check>| {
            notes
                .into_iter()
                .last()
                .unwrap_or_else(|| Check::new(Level::Fail, "no data connection"))
        };
        // Upload.
        let (data, _, _) = self.open_passive(mode).map_err(one)?;
        let reply = self.cmd(&format!("STOR {file}"))?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("upload refused: STOR {file}: {reply}")))
                .fix("the user may need the write permission"));
        }
        let (mut data, _) = self.protect(data)?;
        let wrote = data.write_all(sent).and_then(|()| data.finish());
        let end = self.reply("after STOR")?;
        drop(data);
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        if let Err(e) = wrote {
            return Err(self.fail(format!("upload: writing the data connection failed: {e}")));
        }
        // Download.
        let (data, _, _) = self.open_passive(mode).map_err(one)?;
        let reply = self.cmd(&format!("RETR {file}"))?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("download refused: RETR {file}: {reply}"))));
        }
        let (mut data, resumed) = self.protect(data)?;
        let mut got = Vec::with_capacity(sent.len());
        let read = data.read_all(&mut got);
        drop(data);
        let end = self.reply("after RETR")?;
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        let clean_end = read
            .map_err(|e| self.fail(format!("download: reading the data connection failed: {e}")))?;
        let digest = |b: &[u8]| crate::tls::fingerprint(b);
        if got != sent {
            return Err(self
                .fail(format!(
                    "round trip over {name}: the downloaded file differs from the uploaded one ({} bytes back of {}, SHA-256 {} vs {})",
                    got.len(),
                    sent.len(),
                    digest(&got),
                    digest(sent)
                ))
                .fix("see the server's log for the two transfers"));
        }
        let note = if clean_end {
            ""
        } else {
            " (the download ended without TLS close_notify)"
        };
        Ok(Check::new(
            Level::Ok,
            format!(
                "round trip over {name}: uploaded and downloaded {} random bytes in {file}, SHA-256 identical{resumed}{note}",
                sent.len()
            ),
        ))
    }
}

fn tls_summary(conn: &ClientConnection) -> String {
    let version = conn.protocol_version().map_or_else(
        || "?".to_owned(),
        |v| format!("{v:?}").replace("TLSv1_", "TLS 1."),
    );
    let suite = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    format!("{version}, {suite}")
}

/// The port in an EPSV reply: `Entering Extended Passive Mode (|||6446|)`.
fn epsv_port(text: &str) -> Option<u16> {
    let inner = text.split_once('(')?.1.split_once(')')?.0;
    let delim = inner.chars().next()?;
    inner.split(delim).nth(3)?.parse().ok()
}

/// Run the client checks against the server in `opts`, adding to `r`.
pub fn connect(opts: &ConnectOptions, r: &mut Report) {
    r.section(&format!(
        "ferroftp doctor: connecting to {}:{} as {} (each step may take {})",
        opts.host,
        opts.port,
        opts.user,
        secs(opts.timeout)
    ));
    let tls = TlsClient::new(opts);
    let wants_tls = opts.tls || opts.implicit;
    let tls = match tls {
        Ok(t) => Some(t),
        Err(check) => {
            let check = if wants_tls {
                check
            } else {
                Check::new(
                    Level::Warn,
                    format!("{}: the FTPS session is skipped", check.text),
                )
                .fix("give --ca FILE, or --insecure")
            };
            r.add(check);
            if wants_tls {
                return;
            }
            None
        }
    };
    if opts.implicit {
        run_session(opts, Security::Implicit, tls.as_ref(), r);
    } else if opts.tls {
        run_session(opts, Security::Explicit, tls.as_ref(), r);
    } else {
        let plain = run_session(opts, Security::Plain, tls.as_ref(), r);
        if plain.greeted && !plain.login_failed {
            if plain.auth_tls_offered {
                if tls.is_some() {
                    run_session(opts, Security::Explicit, tls.as_ref(), r);
                }
            } else if plain.tls_required {
                r.add(
                    Check::new(
                        Level::Fail,
                        "TLS is required for login, but FEAT does not offer AUTH TLS",
                    )
                    .fix("if this port is implicit FTPS, use --implicit"),
                );
            } else {
                r.section("FTPS");
                r.add(
                    Check::new(
                        Level::Warn,
                        "the server does not offer AUTH TLS (FEAT): FTPS not tested, and passwords go in clear",
                    )
                    .fix("mode = \"explicit\" on the listener, with tls.cert and tls.key"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(
            ConnectOptions::parse_target("ftp.example.org:21"),
            Ok(("ftp.example.org".into(), 21))
        );
        assert_eq!(
            ConnectOptions::parse_target("[::1]:2121"),
            Ok(("::1".into(), 2121))
        );
        assert!(ConnectOptions::parse_target("ftp.example.org").is_err());
        assert!(ConnectOptions::parse_target("host:0").is_err());
        assert!(ConnectOptions::parse_target(":21").is_err());
    }

    #[test]
    fn every_certificate_error_is_told_in_plain_words_with_a_fix() {
        use rustls::OtherError;
        let other = |e: webpki::Error| CertificateError::Other(OtherError(Arc::new(e)));
        #[allow(deprecated)]
        let errors = vec![
            CertificateError::BadEncoding,
            CertificateError::Expired,
            CertificateError::NotValidYet,
            CertificateError::Revoked,
            CertificateError::UnhandledCriticalExtension,
            CertificateError::UnknownIssuer,
            CertificateError::UnknownRevocationStatus,
            CertificateError::ExpiredRevocationList,
            CertificateError::BadSignature,
            CertificateError::UnsupportedSignatureAlgorithm,
            CertificateError::NotValidForName,
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("ftp.example.org").unwrap(),
                presented: vec!["DnsName(\"other.example.org\")".into()],
            },
            CertificateError::InvalidPurpose,
            CertificateError::InvalidOcspResponse,
            CertificateError::ApplicationVerificationFailure,
            other(webpki::Error::CaUsedAsEndEntity),
            other(webpki::Error::EndEntityUsedAsCa),
            other(webpki::Error::PathLenConstraintViolated),
            other(webpki::Error::UnsupportedCertVersion),
        ];
        for e in errors {
            for ca_given in [false, true] {
                let (why, fix) = certificate_problem(&e, "ftp.example.org", ca_given);
                assert!(
                    !why.contains("Other")
                        && !why.contains("Error")
                        && !why.contains('{')
                        && !why.contains("DnsName"),
                    "{e:?}: {why}"
                );
                assert!(fix.len() > 20, "{e:?}: {fix}");
            }
        }
        let named = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("ftp.example.org").unwrap(),
            presented: vec![
                "DnsName(\"other.example.org\")".into(),
                "IpAddress(192.0.2.1)".into(),
            ],
        };
        let (why, _) = certificate_problem(&named, "ftp.example.org", true);
        assert!(
            why.ends_with("it is for other.example.org, 192.0.2.1"),
            "{why}"
        );
        let (why, fix) =
            certificate_problem(&other(webpki::Error::CaUsedAsEndEntity), "localhost", false);
        assert!(why.contains("CA:TRUE"), "{why}");
        assert!(fix.contains("--ca") && fix.contains("CA:FALSE"), "{fix}");
    }

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

    #[test]
    fn the_epsv_port_is_read_from_the_reply() {
        assert_eq!(
            epsv_port("Entering Extended Passive Mode (|||50001|)"),
            Some(50001)
        );
        assert_eq!(epsv_port("Entering Extended Passive Mode (!!!7!)"), Some(7));
        assert_eq!(epsv_port("no port here"), None);
    }
}
