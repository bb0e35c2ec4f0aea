//! Unit tests of [`crate::tls`]: loading and checking certificates, and how data connections
//! resume only sessions their control connection vouched for.

use rustls::{HandshakeKind, ServerConnection};

use super::session::ticket_version;
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
