//! Certificates: loading a PEM pair and checking it (key matches, within its validity),
//! what the log and `doctor` say about it (fingerprint, names, expiry), and generating a
//! self-signed pair.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::policy::Fingerprint;

use super::{TlsError, provider};

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

pub(super) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
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
