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

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{HandshakeKind, RootCertStore, ServerConfig, ServerConnection};

use crate::config::TlsConfig;
use crate::policy::Fingerprint;

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

/// A loaded certificate chain with its key and what the log and `doctor` say about it.
#[derive(Clone)]
pub struct LoadedCert {
    /// The chain and signing key, as rustls uses them.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate (displayed as `AB:CD:...`).
    pub fingerprint: Fingerprint,
    /// The leaf's subject names (DNS and IP SANs, else the CN).
    pub names: Vec<String>,
    /// When the leaf expires.
    pub not_after: SystemTime,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("fingerprint", &self.fingerprint)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a DER certificate, as upper-case hex pairs joined by colons (the text of
/// [`Fingerprint::of_der`], for callers that still compare strings).
pub fn fingerprint(der: &[u8]) -> String {
    Fingerprint::of_der(der).to_string()
}

/// Normalise a fingerprint as written by people (any case, with or without colons): the text
/// of a parsed [`Fingerprint`], for callers that still keep strings.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    s.parse::<Fingerprint>().ok().map(|f| f.to_string())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

/// Load and check a certificate chain and its key from PEM files.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    let cert_pem = read("certificate file (tls.cert)", cert_path)?;
    let key_pem = read("key file (tls.key)", key_path)?;
    load_pair_pem(&cert_pem, &key_pem, cert_path, key_path)
}

/// Check a certificate chain and key given as PEM text; the paths are only for messages.
pub fn load_pair_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, TlsError> {
    let invalid = |what, reason: &str| TlsError::Invalid {
        what,
        path: if what == "key file" {
            key_path.to_owned()
        } else {
            cert_path.to_owned()
        },
        reason: reason.to_owned(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("certificate file", &format!("bad PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(
            "certificate file",
            "no certificate found (expected -----BEGIN CERTIFICATE-----)",
        ));
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        invalid(
            "key file",
            &format!("no private key found (PKCS#8, PKCS#1 RSA or SEC1 EC PEM expected): {e}"),
        )
    })?;
    let info = describe(leaf).map_err(|reason| invalid("certificate file", &reason))?;
    let now = SystemTime::now();
    if now > info.not_after {
        return Err(TlsError::Validity {
            path: cert_path.to_owned(),
            reason: format!("expired on {}", http_date(info.not_after)),
        });
    }
    if now < info.not_before {
        return Err(TlsError::Validity {
            path: cert_path.to_owned(),
            reason: format!("not valid before {}", http_date(info.not_before)),
        });
    }
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid("key file", &format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    })?;
    Ok(LoadedCert {
        fingerprint: Fingerprint::of_der(leaf.as_ref()),
        key: Arc::new(certified),
        names: info.names,
        not_after: info.not_after,
    })
}

struct CertInfo {
    names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the first certificate cannot be parsed: {e}"))?;
    let to_time = |t: i64| {
        let secs = u64::try_from(t).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => {
                        let b: [u8; 4] = (*ip).try_into().unwrap_or_default();
                        names.push(std::net::Ipv4Addr::from(b).to_string());
                    }
                    16 => {
                        let b: [u8; 16] = (*ip).try_into().unwrap_or_default();
                        names.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    Ok(CertInfo {
        names,
        not_before: to_time(validity.not_before.timestamp()),
        not_after: to_time(validity.not_after.timestamp()),
    })
}

/// A date for messages, e.g. `2026-11-30 08:00:00 UTC`.
pub fn http_date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A new self-signed certificate and key for `hosts` (DNS names or IP addresses), valid from
/// yesterday for `days` days, as PEM `(certificate, key)`.
pub fn self_signed(hosts: &[String], days: u32) -> Result<(String, String), TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(err)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let cn = hosts.first().map_or("ferroftp", String::as_str);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "ferroftp self-signed");
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
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

/// What a TLS data connection is for: tickets are sent only where the client reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    /// Server to client (RETR, LIST, NLST, MLSD).
    Download,
    /// Client to server (STOR, APPE, STOU).
    Upload,
}

/// One control session's TLS configurations, sharing a session cache and ticket key that
/// no other session can use.
///
/// Only the control connection mints resumable sessions that everyone trusts: its TLS 1.2
/// session ids and tickets, and its TLS 1.3 tickets, which carry the session's control token.
/// Data connections never create a TLS 1.2 session (their cache is read-only and their ticket
/// key issues no TLS 1.2 tickets), so a stranger's full handshake leaves it nothing to resume.
/// TLS 1.3 download connections hand out tickets too (rustls clients use each ticket once),
/// stamped with a token of that connection alone; the token is trusted only once the
/// connection has been accepted, so a ticket a refused stranger obtained is worth nothing.
#[derive(Clone)]
pub struct SessionTls {
    control: Arc<ServerConfig>,
    download: Arc<ServerConfig>,
    upload: Arc<ServerConfig>,
    control_token: Token,
    granted: Arc<std::sync::Mutex<std::collections::VecDeque<Token>>>,
}

/// The random value a session stamps into the tickets it issues.
pub type Token = [u8; 16];

impl fmt::Debug for SessionTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionTls")
    }
}

/// TLS 1.3 tickets the control connection hands out: rustls clients use each ticket once and
/// keep at most eight, so that many uploads in a row can resume (each download adds one).
const CONTROL_TICKETS: usize = 8;

/// TLS 1.3 tickets each download data connection hands out: one to replace the ticket the
/// download itself used, one for an upload (which gets none of its own).
const DOWNLOAD_TICKETS: usize = 2;

/// Download tokens remembered; older tickets are long gone from any client's cache.
const GRANTED_TOKENS: usize = 32;

fn new_token() -> Token {
    let mut token = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut token);
    token
}

/// A view of the session cache that can be read but never written: data connections resume
/// the control connection's TLS 1.2 sessions but create none.
#[derive(Debug)]
struct ReadOnlyCache(Arc<ServerSessionMemoryCache>);

impl rustls::server::StoresServerSessions for ReadOnlyCache {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        false
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.take(key)
    }
    fn can_cache(&self) -> bool {
        false
    }
}

/// Which tickets a data connection's ticket key issues; it opens all of the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Issue {
    /// None (TLS 1.2 then sends an empty ticket, which RFC 5077 allows).
    Nothing,
    /// TLS 1.3 tickets only, which carry a token; never TLS 1.2 ones, which cannot.
    Tls13Only,
}

#[derive(Debug)]
struct DataTicketer {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    issue: Issue,
}

/// The protocol version inside a rustls session value (the plaintext of a ticket): a flag and
/// an optional length-prefixed server name come first. `None` if it cannot be read.
fn ticket_version(plain: &[u8]) -> Option<u16> {
    let rest = match plain.first()? {
        0 => plain.get(1..)?,
        1 => {
            let len = usize::from(*plain.get(1)?);
            plain.get(2 + len..)?
        }
        _ => return None,
    };
    Some(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]))
}

impl rustls::server::ProducesTickets for DataTicketer {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // Fails closed: if the layout is ever not what we expect, no ticket is issued.
        match self.issue {
            Issue::Tls13Only if ticket_version(plain) == Some(0x0304) => self.inner.encrypt(plain),
            _ => None,
        }
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher)
    }
}

impl SessionTls {
    fn new(base: &Arc<ServerConfig>) -> Result<Self, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let cache = ServerSessionMemoryCache::new(16);
        let with = |storage: Arc<dyn rustls::server::StoresServerSessions>,
                    ticketer: Arc<dyn rustls::server::ProducesTickets>,
                    tickets: usize| {
            let mut c = ServerConfig::clone(base);
            c.session_storage = storage;
            c.ticketer = ticketer;
            c.send_tls13_tickets = tickets;
            Arc::new(c)
        };
        let read_only: Arc<dyn rustls::server::StoresServerSessions> =
            Arc::new(ReadOnlyCache(Arc::clone(&cache)));
        let data_ticketer = |issue| -> Arc<dyn rustls::server::ProducesTickets> {
            Arc::new(DataTicketer {
                inner: Arc::clone(&ticketer),
                issue,
            })
        };
        Ok(Self {
            download: with(
                Arc::clone(&read_only),
                data_ticketer(Issue::Tls13Only),
                DOWNLOAD_TICKETS,
            ),
            upload: with(read_only, data_ticketer(Issue::Nothing), 0),
            control: with(cache, Arc::clone(&ticketer), CONTROL_TICKETS),
            control_token: new_token(),
            granted: Arc::default(),
        })
    }

    /// The configuration for the control connection.
    pub fn control_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.control)
    }

    /// Stamp the control connection's future tickets (call before its handshake).
    pub fn stamp_control(&self, conn: &mut ServerConnection) {
        conn.set_resumption_data(&self.control_token);
    }

    /// The configuration for a data connection, and the token its tickets carry (stamp it
    /// with [`ServerConnection::set_resumption_data`] before the handshake, and [`grant`] it
    /// once the connection is accepted).
    ///
    /// [`grant`]: Self::grant
    pub fn data_config(&self, direction: DataDirection) -> (Arc<ServerConfig>, Token) {
        let config = match direction {
            DataDirection::Download => &self.download,
            DataDirection::Upload => &self.upload,
        };
        (Arc::clone(config), new_token())
    }

    /// Trust the tickets of an accepted data connection from now on.
    pub fn grant(&self, token: Token) {
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        if granted.len() >= GRANTED_TOKENS {
            granted.pop_front();
        }
        granted.push_back(token);
    }

    /// Whether a data connection's handshake resumed this session; the reason if not.
    pub fn check_reuse(&self, conn: &ServerConnection) -> Result<(), &'static str> {
        if conn.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(
                "the data connection did a full TLS handshake instead of resuming the control connection's session (clients that cannot resume need require_session_reuse = false; a rustls-based client that made 8 uploads in a row under TLS 1.3 has used up its tickets)",
            );
        }
        // TLS 1.3 tickets carry a token. TLS 1.2 resumption carries none, and can only have
        // come from this session's control connection (data connections mint no TLS 1.2
        // sessions).
        match conn.received_resumption_data() {
            Some(data) if data == self.control_token => Ok(()),
            Some(data) => {
                let granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
                if granted.iter().any(|t| t[..] == *data) {
                    Ok(())
                } else {
                    Err(
                        "the data connection resumed a TLS session that this control connection never vouched for (another client's, or one from a refused connection)",
                    )
                }
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_generated_pair_loads_and_names_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["ftp.example.org".into(), "127.0.0.1".into()], 30).unwrap();
        let c = write(dir.path(), "c.pem", &cert);
        let k = write(dir.path(), "k.pem", &key);
        let loaded = load_pair(&c, &k).unwrap();
        assert_eq!(loaded.names, ["ftp.example.org", "127.0.0.1"]);
        assert_eq!(loaded.fingerprint.to_string().len(), 95);
        let left = loaded.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(29 * 86400) && left < Duration::from_secs(31 * 86400));
    }

    #[test]
    fn bad_files_are_named_with_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["a".into()], 30).unwrap();
        let (_, other_key) = self_signed(&["b".into()], 30).unwrap();
        let c = write(dir.path(), "c.pem", &cert);
        let k = write(dir.path(), "k.pem", &key);
        let k2 = write(dir.path(), "k2.pem", &other_key);
        let junk = write(dir.path(), "junk.pem", "hello\n");

        let e = load_pair(&dir.path().join("missing.pem"), &k)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("certificate file"),
            "{e}"
        );
        let e = load_pair(&c, &k2).unwrap_err().to_string();
        assert!(e.contains("does not match") && e.contains("k2.pem"), "{e}");
        let e = load_pair(&junk, &k).unwrap_err().to_string();
        assert!(
            e.contains("junk.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = load_pair(&c, &junk).unwrap_err().to_string();
        assert!(e.contains("junk.pem") && e.contains("private key"), "{e}");
    }

    #[test]
    fn an_expired_certificate_is_refused_with_its_date() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_500_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let p = Path::new("old.pem");
        let e = load_pair_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), p, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("old.pem") && e.contains("expired on 2020-09-13"),
            "{e}"
        );
    }

    /// Run a handshake (and the tickets after it) between two in-memory connections.
    fn pump(client: &mut rustls::ClientConnection, server: &mut ServerConnection) {
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                server.read_tls(&mut &buf[..]).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                client.read_tls(&mut &buf[..]).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
    }

    fn client_config(
        tls: &Tls,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(tls.current().key.cert[0].clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    fn connect(
        client: &Arc<rustls::ClientConfig>,
        config: Arc<ServerConfig>,
        token: &[u8],
    ) -> ServerConnection {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = ServerConnection::new(config).unwrap();
        s.set_resumption_data(token);
        pump(&mut c, &mut s);
        s
    }

    #[test]
    fn data_connections_resume_only_sessions_their_control_connection_vouched_for() {
        let tls = Tls::new(&TlsConfig::default()).unwrap();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let session = tls.session().unwrap();
            let owner = client_config(&tls, version);
            let control = connect(&owner, session.control_config(), &session.control_token);
            assert_eq!(control.handshake_kind(), Some(HandshakeKind::Full));
            // The owner's downloads and uploads resume, again and again.
            for direction in [
                DataDirection::Download,
                DataDirection::Upload,
                DataDirection::Download,
            ] {
                let (config, token) = session.data_config(direction);
                let data = connect(&owner, config, &token);
                assert_eq!(
                    session.check_reuse(&data),
                    Ok(()),
                    "{version:?} {direction:?}"
                );
                session.grant(token);
            }
            // A stranger (its own client, no session) is refused, and whatever its refused
            // connections leave it with, the next attempt is refused too.
            let stranger = client_config(&tls, version);
            for round in 0..3 {
                for direction in [DataDirection::Download, DataDirection::Upload] {
                    let (config, token) = session.data_config(direction);
                    let data = connect(&stranger, config, &token);
                    assert!(
                        session.check_reuse(&data).is_err(),
                        "{version:?} {direction:?} round {round}: stranger accepted"
                    );
                }
            }
            // Another session's client cannot get in with its own resumable session either.
            let other = tls.session().unwrap();
            let other_client = client_config(&tls, version);
            connect(&other_client, other.control_config(), &other.control_token);
            let (config, token) = session.data_config(DataDirection::Download);
            let data = connect(&other_client, config, &token);
            assert!(
                session.check_reuse(&data).is_err(),
                "{version:?}: other session accepted"
            );
        }
    }

    #[test]
    fn the_ticket_layout_is_read_as_rustls_writes_it() {
        assert_eq!(ticket_version(&[0, 0x03, 0x04, 0x13]), Some(0x0304));
        assert_eq!(
            ticket_version(&[1, 3, b'a', b'b', b'c', 0x03, 0x03]),
            Some(0x0303)
        );
        assert_eq!(ticket_version(&[1, 9, b'a']), None);
        assert_eq!(ticket_version(&[2, 3, 4]), None);
        assert_eq!(ticket_version(&[]), None);
    }

    #[test]
    fn fingerprints_are_normalised() {
        let f = "ab".repeat(32);
        let n = normalize_fingerprint(&f).unwrap();
        assert!(n.starts_with("AB:AB:") && n.len() == 95);
        assert_eq!(normalize_fingerprint(&n), Some(n.clone()));
        assert_eq!(normalize_fingerprint("abc"), None);
    }
}
