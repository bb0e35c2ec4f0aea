//! The [`Storage`] seam: a conformance suite that the local file system and an in-memory
//! back-end (written for tests, `storage_backends/memory.rs`) both pass, and a server started
//! in-process on the in-memory back-end, driven by suppaftp over real sockets: what a back-end
//! cannot do (rename, append) gets a clear reply and leaves the file as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "storage_backends/memory.rs"]
mod memory;

use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferroftp::auth::{HashParams, User, UserDb};
use ferroftp::config::{Config, ListenerConfig, ListenerMode};
use ferroftp::storage::{LocalFs, Storage, StorageError, VPath, WriteMode};
use memory::{MemoryBackend, MemoryFs};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream};

fn vp(s: &str) -> VPath {
    VPath::resolve(&VPath::root(), s).unwrap()
}

/// Uploads `data` to `path` and commits it.
fn put(fs: &dyn Storage, path: &str, data: &[u8]) {
    let mut upload = fs.create_upload(&vp(path), WriteMode::Replace).unwrap();
    upload.take_file().unwrap().write_all(data).unwrap();
    upload.commit().unwrap();
}

/// The content of `path` from `offset`, and the file's length.
fn get(fs: &dyn Storage, path: &str, offset: u64) -> (Vec<u8>, u64) {
    let (mut stream, len) = fs.open_read(&vp(path), offset).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    (out, len)
}

fn names(fs: &dyn Storage, path: &str) -> Vec<String> {
    fs.list(&vp(path))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// What every back-end must do the same way.
fn conformance(fs: &dyn Storage) {
    // A committed write becomes visible whole, and only then.
    let mut upload = fs.create_upload(&vp("/a.txt"), WriteMode::Replace).unwrap();
    upload.take_file().unwrap().write_all(b"hello").unwrap();
    upload.defer_write(b", world".to_vec());
    assert!(matches!(
        fs.metadata(&vp("/a.txt")),
        Err(StorageError::NotFound)
    ));
    assert!(
        names(fs, "/").is_empty(),
        "an upload is invisible until committed"
    );
    upload.commit().unwrap();
    assert_eq!(get(fs, "/a.txt", 0), (b"hello, world".to_vec(), 12));
    assert_eq!(fs.metadata(&vp("/a.txt")).unwrap().size, 12);

    // An aborted write leaves nothing: no new file, and a replaced one untouched.
    let mut upload = fs.create_upload(&vp("/b.txt"), WriteMode::Replace).unwrap();
    upload.take_file().unwrap().write_all(b"partial").unwrap();
    upload.abort();
    let mut upload = fs.create_upload(&vp("/a.txt"), WriteMode::Replace).unwrap();
    upload
        .take_file()
        .unwrap()
        .write_all(b"XXXXXXXXXXXXXXXXXXXX")
        .unwrap();
    drop(upload);
    assert!(matches!(
        fs.metadata(&vp("/b.txt")),
        Err(StorageError::NotFound)
    ));
    assert_eq!(names(fs, "/"), ["a.txt"]);
    assert_eq!(get(fs, "/a.txt", 0).0, b"hello, world");

    // Ranged reads: from an offset, with the whole length; past the end is refused.
    assert_eq!(get(fs, "/a.txt", 7), (b"world".to_vec(), 12));
    assert_eq!(get(fs, "/a.txt", 12), (Vec::new(), 12));
    assert!(matches!(
        fs.open_read(&vp("/a.txt"), 13),
        Err(StorageError::InvalidOffset)
    ));
    assert!(matches!(
        fs.open_read(&vp("/nope"), 0),
        Err(StorageError::NotFound)
    ));

    // A listing is a stream: every entry once, in batches no bigger than asked.
    fs.mkdir(&vp("/d")).unwrap();
    for i in 0..23 {
        put(fs, &format!("/d/f{i:02}"), format!("{i}").as_bytes());
    }
    fs.mkdir(&vp("/d/sub")).unwrap();
    let mut stream = fs.read_dir(&vp("/d")).unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = stream.next_batch(5).unwrap();
        assert!(batch.len() <= 5);
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.into_iter().map(|e| (e.name, e.kind)));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen.len(), 24);
    assert_eq!(seen[0].0, "f00");
    assert_eq!(
        seen[23],
        ("sub".to_owned(), ferroftp::storage::EntryKind::Dir)
    );
    // Filtered while read, names only.
    let mut stream = fs
        .read_dir_names(&vp("/d"))
        .unwrap()
        .matching(|n| n.starts_with("f1"));
    let mut matched = Vec::new();
    while stream
        .for_each_name(|n| matched.push(n.to_owned()))
        .unwrap()
        > 0
    {}
    matched.sort();
    assert_eq!(
        matched,
        (10..20).map(|i| format!("f{i}")).collect::<Vec<_>>()
    );
    assert!(matches!(
        fs.read_dir(&vp("/a.txt")),
        Err(StorageError::NotADirectory)
    ));

    // Directories and removal.
    assert!(matches!(
        fs.rmdir(&vp("/d")),
        Err(StorageError::DirectoryNotEmpty)
    ));
    fs.rmdir(&vp("/d/sub")).unwrap();
    fs.remove_file(&vp("/d/f00")).unwrap();
    assert!(matches!(
        fs.remove_file(&vp("/d/f00")),
        Err(StorageError::NotFound)
    ));
    assert!(fs.is_dir(&vp("/d")) && !fs.is_dir(&vp("/a.txt")));

    // What the back-end says it cannot do, it refuses before changing anything.
    let caps = fs.capabilities();
    let before = names(fs, "/");
    match fs.rename(&vp("/a.txt"), &vp("/renamed.txt")) {
        Err(StorageError::Unsupported(_)) => assert!(!caps.rename),
        Ok(()) => {
            assert!(caps.rename);
            fs.rename(&vp("/renamed.txt"), &vp("/a.txt")).unwrap();
        }
        Err(e) => panic!("rename failed: {e}"),
    }
    match fs.create_upload(&vp("/a.txt"), WriteMode::Append) {
        Err(StorageError::Unsupported(_)) => assert!(!caps.append),
        Ok(upload) => {
            assert!(caps.append);
            upload.abort();
        }
        Err(e) => panic!("append failed: {e}"),
    }
    assert_eq!(names(fs, "/"), before);
    assert_eq!(get(fs, "/a.txt", 0).0, b"hello, world");
}

#[test]
fn the_local_back_end_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let fs = LocalFs::open(dir.path()).unwrap();
    conformance(&fs);
}

#[test]
fn the_in_memory_back_end_passes_the_conformance_suite() {
    let fs = MemoryFs::default();
    assert!(!fs.capabilities().rename && !fs.capabilities().append);
    conformance(&fs);
}

/// A server on the in-memory back-end, run in-process on a runtime of its own.
struct InProcess {
    addr: SocketAddr,
    /// The server's certificate (PEM), when it offers TLS.
    cert: Option<std::path::PathBuf>,
    fs: MemoryFs,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl InProcess {
    fn start() -> Self {
        Self::with_mode(ListenerMode::Plain)
    }

    /// With explicit FTPS (AUTH TLS) and a self-signed certificate.
    fn start_tls() -> Self {
        Self::with_mode(ListenerMode::Explicit)
    }

    fn with_mode(mode: ListenerMode) -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut tls_config = ferroftp::config::TlsConfig::default();
        let mut cert = None;
        if mode.offers_tls() {
            let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
            let (pem, key) = ferroftp::tls::self_signed(&hosts, 2).unwrap();
            let (cert_path, key_path) = (root.path().join("cert.pem"), root.path().join("key.pem"));
            std::fs::write(&cert_path, pem).unwrap();
            std::fs::write(&key_path, key).unwrap();
            tls_config.cert = Some(cert_path.clone());
            tls_config.key = Some(key_path);
            cert = Some(cert_path);
        }
        let tls = cert
            .as_ref()
            .map(|_| Arc::new(ferroftp::tls::Tls::new(&tls_config).unwrap()));
        let config = Config {
            root: root.path().to_owned(),
            listeners: vec![ListenerConfig::new("127.0.0.1:0".parse().unwrap(), mode)],
            tls: tls_config,
            ..Config::default()
        };
        let cheap = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hash = ferroftp::auth::hash_password("secret", cheap).unwrap();
        let users = UserDb::empty().with_user(User::new("alice"), hash);
        let fs = MemoryFs::default();
        let backend = Arc::new(MemoryBackend(fs.clone()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime
            .block_on(ferroftp::Server::bind(config, users, tls))
            .unwrap()
            .with_storage(backend);
        let addr = server.local_addrs()[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(server.run(
                async {
                    let _ = stopped.await;
                },
                Duration::from_secs(1),
            ));
        });
        Self {
            addr,
            cert,
            fs,
            stop: Some(stop),
            thread: Some(thread),
            _root: root,
        }
    }

    fn login(&self) -> FtpStream {
        let mut ftp = FtpStream::connect_timeout(self.addr, Duration::from_secs(10)).unwrap();
        ftp.get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        ftp.login("alice", "secret").unwrap();
        ftp.transfer_type(FileType::Binary).unwrap();
        ftp
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reply to a refused command: its code and text.
fn refusal<T: std::fmt::Debug>(r: Result<T, FtpError>) -> (u32, String) {
    match r {
        Err(FtpError::UnexpectedResponse(resp)) => (
            resp.status.code(),
            String::from_utf8_lossy(&resp.body).into_owned(),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn rename_and_append_on_a_back_end_without_them_get_a_clear_reply_and_change_nothing() {
    let server = InProcess::start();
    server.fs.seed("/keep.txt", b"original content\n");
    let mut ftp = server.login();
    let listing = ftp.list(None).unwrap();
    let paths = server.fs.paths();

    // RNFR is refused at once (the session knows what the storage cannot do), so the client
    // never gets as far as RNTO, and nothing moved.
    let (code, text) = refusal(ftp.rename("keep.txt", "moved.txt"));
    assert_eq!(code, 502, "{text}");
    assert!(
        text.contains("rename is not supported by this storage"),
        "{text}"
    );

    // APPE is refused before the transfer starts; the session stays usable.
    let (code, text) = refusal(ftp.append_file("keep.txt", &mut Cursor::new(b"more".to_vec())));
    assert_eq!(code, 502, "{text}");
    assert!(
        text.contains("appending is not supported by this storage"),
        "{text}"
    );
    // Resuming an upload in place as well.
    ftp.resume_transfer(4).unwrap();
    let (code, text) = refusal(ftp.put_file("keep.txt", &mut Cursor::new(b"tail".to_vec())));
    assert_eq!(code, 502, "{text}");

    // The file and the listing are as they were.
    assert_eq!(
        server.fs.content("/keep.txt").unwrap(),
        b"original content\n"
    );
    assert_eq!(server.fs.paths(), paths);
    assert_eq!(ftp.list(None).unwrap(), listing);
    let got = ftp.retr_as_buffer("keep.txt").unwrap().into_inner();
    assert_eq!(got, b"original content\n");
    ftp.quit().unwrap();
}

#[test]
fn uploads_and_downloads_go_through_another_back_end_as_plain_byte_streams() {
    let server = InProcess::start();
    let mut ftp = server.login();
    // Big enough to move to a transfer thread on the way up, and to take many reads down.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    ftp.put_file("big.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    assert!(
        server.fs.content("/big.bin").unwrap() == data,
        "stored bytes differ"
    );
    let got = ftp.retr_as_buffer("big.bin").unwrap().into_inner();
    assert!(got == data, "downloaded bytes differ");
    // A ranged read.
    ftp.resume_transfer(3 * 1024 * 1024).unwrap();
    let tail = ftp.retr_as_buffer("big.bin").unwrap().into_inner();
    assert_eq!(tail, data[3 * 1024 * 1024..]);

    // TYPE A converts on the way in and out, through the same streams.
    ftp.transfer_type(FileType::Ascii(suppaftp::types::FormatControl::Default))
        .unwrap();
    ftp.put_file("text.txt", &mut Cursor::new(b"one\r\ntwo\r\n".to_vec()))
        .unwrap();
    assert_eq!(server.fs.content("/text.txt").unwrap(), b"one\ntwo\n");
    let got = ftp.retr_as_buffer("text.txt").unwrap().into_inner();
    assert_eq!(got, b"one\r\ntwo\r\n");

    // Directories, listings, deletion.
    ftp.mkdir("d").unwrap();
    ftp.transfer_type(FileType::Binary).unwrap();
    ftp.put_file("d/x", &mut Cursor::new(b"x".to_vec()))
        .unwrap();
    let names = ftp.nlst(Some("d")).unwrap();
    assert_eq!(names, ["d/x"]);
    ftp.rm("d/x").unwrap();
    ftp.rmdir("d").unwrap();
    let mut names = ftp.nlst(None).unwrap();
    names.sort();
    assert_eq!(names, ["big.bin", "text.txt"]);
    ftp.quit().unwrap();
}

#[test]
fn tls_uploads_and_downloads_of_another_back_end_move_its_bytes_without_a_local_file() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let server = InProcess::start_tls();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert.as_ref().unwrap()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let ftp =
        suppaftp::RustlsFtpStream::connect_timeout(server.addr, Duration::from_secs(10)).unwrap();
    ftp.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let connector = suppaftp::RustlsConnector::from(Arc::new(client));
    let mut ftp = ftp.into_secure(connector, "127.0.0.1").unwrap();
    ftp.login("alice", "secret").unwrap();
    ftp.transfer_type(FileType::Binary).unwrap();
    // Well past the size at which a TLS download, and a fast upload, may move to a thread of
    // their own (which then reads or writes the stream, not a local file).
    let data: Vec<u8> = (0..2 * 1024 * 1024 + 5)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    ftp.put_file("tls.bin", &mut Cursor::new(data.clone()))
        .unwrap();
    assert!(
        server.fs.content("/tls.bin").unwrap() == data,
        "stored bytes differ"
    );
    let got = ftp.retr_as_buffer("tls.bin").unwrap().into_inner();
    assert!(got == data, "downloaded bytes differ");
    ftp.resume_transfer(1024 * 1024).unwrap();
    let tail = ftp.retr_as_buffer("tls.bin").unwrap().into_inner();
    assert!(tail == data[1024 * 1024..], "the ranged download differs");
    // Refusals are the same under TLS.
    let (code, _) = refusal(ftp.rename("tls.bin", "moved.bin"));
    assert_eq!(code, 502);
    assert!(server.fs.content("/tls.bin").unwrap() == data);
    ftp.quit().unwrap();
}
