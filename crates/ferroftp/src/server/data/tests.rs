#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::storage::UploadFile;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn a_data_connection_that_reached_itself_is_refused() {
    // Connecting from the port it targets: the kernel joins the socket to itself.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(LO, 0)).unwrap();
    let me = socket.local_addr().unwrap();
    let stream = socket.connect(me).await.unwrap();
    assert_eq!(stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    let err = refuse_self_connect(stream).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // Through connect_active, with the source port it is told to use (a fresh port: the
    // one above lingers after its close).
    let fresh = std::net::TcpListener::bind(SocketAddr::new(LO, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let err = connect_active(LO, fresh, Duration::from_secs(5), Some(fresh.port()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

fn free_range(n: u16) -> PortRange {
    // Find n consecutive free ports by probing; good enough for a test on loopback.
    for base in (40000u16..60000).step_by(97) {
        let ok = (base..base + n).all(|p| std::net::TcpListener::bind((LO, p)).is_ok());
        if ok {
            return PortRange {
                low: base,
                high: base + n - 1,
            };
        }
    }
    panic!("no free range");
}

#[tokio::test]
async fn ports_are_released_on_drop_and_busy_ports_skipped() {
    let range = free_range(3);
    let ports = PassivePorts::new(Some(range));
    // Another process (here: a plain socket) holds the middle port.
    let _held = std::net::TcpListener::bind((LO, range.low + 1)).unwrap();
    let a = ports.bind(LO).unwrap();
    let b = ports.bind(LO).unwrap();
    assert_eq!(a.port(), range.low);
    assert_eq!(
        b.port(),
        range.high,
        "the held port is skipped, not an error"
    );
    assert_eq!(ports.in_use(), 2);
    assert!(ports.bind(LO).is_err(), "range exhausted");
    drop(a);
    assert_eq!(ports.in_use(), 1);
    let c = ports.bind(LO).unwrap();
    assert_eq!(c.port(), range.low);
}

#[tokio::test]
async fn the_port_released_longest_ago_is_handed_out_first() {
    let range = free_range(4);
    let ports = PassivePorts::new(Some(range));
    let [a, b, c] = [(); 3].map(|()| ports.bind(LO).unwrap());
    let (pa, pb, pc) = (a.port(), b.port(), c.port());
    assert_eq!((pa, pb, pc), (range.low, range.low + 1, range.low + 2));
    // Released out of order: b, then a.
    drop(b);
    drop(a);
    let d = ports.bind(LO).unwrap();
    assert_eq!(d.port(), range.high, "the never-used port first");
    let e = ports.bind(LO).unwrap();
    assert_eq!(e.port(), pb, "then the one released first");
    let f = ports.bind(LO).unwrap();
    assert_eq!(f.port(), pa);
    assert!(ports.bind(LO).is_err(), "all four held");
    drop((c, d, e, f));
    assert_eq!(ports.in_use(), 0);
    // Every port of the range is handed out again, each once, before any repeats.
    let mut seen: Vec<u16> = (0..4).map(|_| ports.bind(LO).unwrap().port()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[tokio::test]
async fn a_port_held_elsewhere_is_tried_once_per_turn_not_on_every_bind() {
    let range = free_range(3);
    let ports = PassivePorts::new(Some(range));
    let held = std::net::TcpListener::bind((LO, range.low)).unwrap();
    // The first bind finds it held and puts it at the back...
    let first = ports.bind(LO).unwrap();
    assert_eq!(first.port(), range.low + 1);
    drop(first);
    // ...so the next ones take the other ports, and it is tried again only after them.
    let second = ports.bind(LO).unwrap();
    assert_eq!(second.port(), range.high);
    drop(second);
    drop(held);
    let third = ports.bind(LO).unwrap();
    assert_eq!(
        third.port(),
        range.low,
        "freed by the other process: usable again"
    );
}

#[tokio::test]
async fn a_timed_out_accept_releases_its_port() {
    let ports = PassivePorts::new(Some(free_range(1)));
    let listener = ports.bind(LO).unwrap();
    assert_eq!(ports.in_use(), 1);
    let err = listener
        .accept(LO, false, Duration::from_millis(50), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(ports.in_use(), 0);
}

#[tokio::test]
async fn a_replaced_listener_frees_its_port_at_once() {
    let range = free_range(1);
    let ports = PassivePorts::new(Some(range));
    let first = ports.bind(LO).unwrap();
    drop(first);
    // No yield in between: the port must be free for the very next bind.
    let second = ports.bind(LO).unwrap();
    assert_eq!(second.port(), range.low);
}

#[tokio::test]
async fn a_connection_from_another_address_is_refused() {
    let ports = PassivePorts::new(None);
    let listener = ports.bind(LO).unwrap();
    let port = listener.port();
    let pending = tokio::spawn(listener.accept(LO, false, Duration::from_secs(5), None));
    // 127.0.0.2 is a different client address on loopback.
    let thief = TcpSocket::new_v4().unwrap();
    thief
        .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
        .unwrap();
    let mut thief = thief.connect(SocketAddr::new(LO, port)).await.unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        thief.read(&mut byte).await.unwrap_or(0),
        0,
        "the thief is disconnected"
    );
    let _owner = TcpStream::connect((LO, port)).await.unwrap();
    let conn = pending.await.unwrap().unwrap();
    assert_eq!(conn.peer_addr().unwrap().ip(), LO);
}

#[tokio::test]
async fn binary_receive_keeps_every_byte_and_flushes_a_paused_upload() {
    let path = std::env::temp_dir().join(format!(
        "ferroftp-filewriter-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = std::fs::File::create(&path).unwrap();
    let data: Vec<u8> = (0..3 * UPLOAD_CHUNK + 1234)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let sender = {
        let (path, data) = (path.clone(), data.clone());
        async move {
            client.write_all(&data[..1000]).await.unwrap();
            // The client pauses: what arrived reaches the file without waiting for more.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::fs::metadata(&path).unwrap().len() < 1000 {
                assert!(std::time::Instant::now() < deadline, "not flushed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client.write_all(&data[1000..]).await.unwrap();
        }
    };
    let progress = AtomicU64::new(0);
    let mut writer = FileWriter::new(UploadFile::local(file));
    let receiving = receive_binary(
        &mut server,
        false,
        &mut writer,
        &progress,
        Duration::from_secs(5),
        None,
    );
    let ((), ending) = tokio::join!(sender, receiving);
    assert_eq!(ending.unwrap(), Received::Ended(Ending::Eof));
    let (written, file, rest) = writer.finish().await;
    written.unwrap();
    std::io::Write::write_all(&mut file.unwrap(), &rest).unwrap();
    assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
    let stored = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(stored == data, "the file differs from what was sent");
}

#[tokio::test]
async fn ascii_send_and_receive_convert_line_ends() {
    let progress = AtomicU64::new(0);
    let mut wire = Vec::new();
    send(
        &b"a\nb\n"[..],
        &mut wire,
        true,
        &progress,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(wire, b"a\r\nb\r\n");
    let mut stored = Vec::new();
    receive(
        &mut &wire[..],
        false,
        &mut stored,
        true,
        &progress,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(stored, b"a\nb\n");
}
