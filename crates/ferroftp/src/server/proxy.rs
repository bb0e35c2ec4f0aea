//! PROXY protocol (v1 text and v2 binary, as HAProxy and cloud load balancers send it): the
//! real client address of a connection that arrives through a load balancer.
//!
//! Only connections from trusted networks are asked for a header; from anywhere else a header
//! would be a lie anyone could tell. Exactly the header is read, never a byte of what follows
//! it (the client's first command, or a TLS ClientHello).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::HeaderResult;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v2 header accepted (a v1 header is at most 107 bytes); load balancers send a
/// few dozen bytes, with TLVs a few hundred.
const MAX_HEADER: usize = 1024;

/// Whether `ip` is one of the proxies trusted to send PROXY headers.
pub(crate) fn trusted(ip: IpAddr, networks: &[ipnet::IpNet]) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

/// Read the PROXY header at the start of `stream` within `timeout`, and return the client
/// address it carries. A LOCAL header (a health check) or one without addresses yields
/// `peer`, the proxy itself. A connection without a valid header is an error.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<SocketAddr> {
    tokio::time::timeout(timeout, read_header_now(stream, peer))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no PROXY protocol header in time",
            ))
        })
}

async fn read_header_now(stream: &mut TcpStream, peer: SocketAddr) -> io::Result<SocketAddr> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    // Read exactly the header, never a byte past it: both versions are at least 15 bytes,
    // v1 ends at CRLF (at most 107 bytes), v2 says its length in bytes 15-16.
    let mut header = vec![0u8; 8];
    stream.read_exact(&mut header).await?;
    if header.starts_with(b"PROXY ") {
        let mut byte = [0u8; 1];
        while !header.ends_with(b"\r\n") {
            if header.len() >= 107 {
                return Err(invalid("PROXY v1 header too long".into()));
            }
            stream.read_exact(&mut byte).await?;
            header.push(byte[0]);
        }
    } else if header.starts_with(b"\r\n\r\n\0\r\nQ") {
        header.resize(16, 0);
        stream
            .read_exact(header.get_mut(8..).unwrap_or_default())
            .await?;
        let len = usize::from(u16::from_be_bytes([
            header.get(14).copied().unwrap_or(0),
            header.get(15).copied().unwrap_or(0),
        ]));
        if 16 + len > MAX_HEADER {
            return Err(invalid("PROXY v2 header too long".into()));
        }
        header.resize(16 + len, 0);
        stream
            .read_exact(header.get_mut(16..).unwrap_or_default())
            .await?;
    } else {
        return Err(invalid(
            "no PROXY protocol header (is this listener really behind the proxy?)".into(),
        ));
    }
    let source = match HeaderResult::parse(&header) {
        HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
            }
            ppp::v1::Addresses::Tcp6(a) => {
                SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
            }
            ppp::v1::Addresses::Unknown => peer,
        },
        HeaderResult::V2(Ok(h)) => match (h.command, h.addresses) {
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
            }
            // LOCAL (health checks) and unix or unspecified addresses: the proxy itself.
            _ => peer,
        },
        HeaderResult::V1(Err(e)) => return Err(invalid(format!("bad PROXY v1 header: {e}"))),
        HeaderResult::V2(Err(e)) => return Err(invalid(format!("bad PROXY v2 header: {e}"))),
    };
    Ok(SocketAddr::new(source.ip().to_canonical(), source.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    #[tokio::test]
    async fn a_v1_header_gives_the_client_and_leaves_the_first_command() {
        let (mut c, mut s) = pair().await;
        c.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 21\r\nUSER x\r\n")
            .await
            .unwrap();
        let got = read_header(&mut s, PEER, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(got, "203.0.113.7:40000".parse().unwrap());
        let mut rest = [0u8; 8];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"USER x\r\n");
    }

    #[tokio::test]
    async fn a_v2_header_in_two_pieces_is_read_whole() {
        let (mut c, mut s) = pair().await;
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1]);
        header.extend_from_slice(&[0x9c, 0x40, 0, 21]);
        c.write_all(&header[..10]).await.unwrap();
        let reader = tokio::spawn(async move {
            let got = read_header(&mut s, PEER, Duration::from_secs(2)).await;
            let mut rest = [0u8; 4];
            s.read_exact(&mut rest).await.unwrap();
            (got, rest)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.write_all(&header[10..]).await.unwrap();
        c.write_all(b"NOOP").await.unwrap();
        let (got, rest) = reader.await.unwrap();
        assert_eq!(got.unwrap(), "198.51.100.9:40000".parse().unwrap());
        assert_eq!(&rest, b"NOOP");
    }

    #[tokio::test]
    async fn garbage_or_silence_is_an_error() {
        let (mut c, mut s) = pair().await;
        c.write_all(b"USER alice\r\n").await.unwrap();
        assert!(
            read_header(&mut s, PEER, Duration::from_secs(2))
                .await
                .is_err()
        );
        let (_c, mut s) = pair().await;
        let e = read_header(&mut s, PEER, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn trust_follows_the_networks() {
        let nets = ["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(trusted("::1".parse().unwrap(), &nets));
        assert!(!trusted("192.0.2.1".parse().unwrap(), &nets));
    }
}
