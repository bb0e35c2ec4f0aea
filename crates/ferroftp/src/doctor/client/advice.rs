//! A refused certificate or a failed TLS handshake, told in plain words with what to do.

use rustls::CertificateError;

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
pub(super) fn certificate_problem(
    e: &CertificateError,
    host: &str,
    ca_given: bool,
) -> (String, String) {
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
pub(super) fn tls_problem(e: &rustls::Error, implicit: bool) -> (String, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

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
}
