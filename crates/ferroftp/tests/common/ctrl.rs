//! A raw control connection that reads whole replies with proto's client-side codec, and the
//! raw TCP helpers tests use around it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw control connection that reads whole replies (multi-line aware).
pub struct Ctrl {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Ctrl {
    /// Connect to `addr` and assert its 220 greeting.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::greeted(TcpStream::connect(addr).unwrap())
    }

    /// A client on an already connected control stream, after asserting its 220 greeting.
    pub fn greeted(stream: TcpStream) -> Self {
        let mut c = Self::over(stream);
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// A client on an already connected control stream, its greeting unread.
    pub fn over(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Send bytes as they are (no CRLF added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read one reply: (code, all text lines joined by '\n'; the last line of a multi-line
    /// reply keeps its code, `211 End`). Read with proto's client-side codec, line by line
    /// from `reader`, so that nothing after the reply is taken from it; panics on a closed
    /// connection, on bytes that are not a reply, and on text that is not UTF-8.
    pub fn reply(&mut self) -> (u16, String) {
        match self.next_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("the connection closed before a whole reply"),
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    /// Like [`Ctrl::reply`], but `Ok(None)` when the connection is closed before a whole
    /// reply, and the read error (a timeout, say) as it is.
    pub fn next_reply(&mut self) -> std::io::Result<Option<(u16, String)>> {
        let mut raw = Vec::new();
        loop {
            let start = raw.len();
            if self.reader.read_until(b'\n', &mut raw)? == 0 {
                return Ok(None);
            }
            // Only a line that starts with a code can end a reply: the rest need no decoding
            // (which keeps a long STAT listing linear).
            let line = &raw[start..];
            if start > 0 && !(line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit)) {
                continue;
            }
            match ferroftp_proto::Reply::decode(&raw) {
                Ok(Some((reply, used))) => {
                    assert_eq!(used, raw.len(), "a reply ends at a line end");
                    std::str::from_utf8(&raw).unwrap_or_else(|e| {
                        panic!("reply not UTF-8 ({e}): {:?}", String::from_utf8_lossy(&raw))
                    });
                    return Ok(Some(reply_text(reply)));
                }
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Whether the server has closed the connection (reads to EOF, with the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Send `line` with CRLF and read its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Send and assert the code; returns the text.
    pub fn cmd_ok(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line} -> {got} {text}");
        text
    }

    /// USER and PASS, asserting 331 then 230.
    pub fn login(&mut self, user: &str, password: &str) {
        self.cmd_ok(&format!("USER {user}"), 331);
        self.cmd_ok(&format!("PASS {password}"), 230);
    }

    /// PASV and connect to the announced address.
    pub fn pasv_connect(&mut self) -> TcpStream {
        let text = self.cmd_ok("PASV", 227);
        let addr = ferroftp_proto::addr::parse_pasv_reply(&text).expect("227 address");
        TcpStream::connect(addr).unwrap()
    }

    /// EPSV and connect to the announced port on the control connection's host.
    pub fn epsv_connect(&mut self) -> TcpStream {
        let text = self.cmd_ok("EPSV", 229);
        let port: u16 = text.split('|').nth(3).unwrap().parse().unwrap();
        let ip = self.stream.peer_addr().unwrap().ip();
        TcpStream::connect((ip, port)).unwrap()
    }

    /// A full RETR over passive mode: returns the bytes.
    pub fn retr(&mut self, path: &str) -> Vec<u8> {
        let data = self.pasv_connect();
        let (code, text) = self.cmd(&format!("RETR {path}"));
        assert!(code == 150 || code == 125, "RETR {path} -> {code} {text}");
        let bytes = read_all(data);
        self.cmd_ok_reply(226);
        bytes
    }

    /// A full STOR over passive mode.
    pub fn stor(&mut self, path: &str, bytes: &[u8]) {
        let mut data = self.pasv_connect();
        let (code, text) = self.cmd(&format!("STOR {path}"));
        assert!(code == 150 || code == 125, "STOR {path} -> {code} {text}");
        data.write_all(bytes).unwrap();
        drop(data);
        self.cmd_ok_reply(226);
    }

    /// A listing command over passive mode: returns the text.
    pub fn list(&mut self, line: &str) -> String {
        let data = self.pasv_connect();
        let (code, text) = self.cmd(line);
        assert!(code == 150 || code == 125, "{line} -> {code} {text}");
        let bytes = read_all(data);
        self.cmd_ok_reply(226);
        String::from_utf8(bytes).unwrap()
    }

    /// Read a reply and assert its code; returns the text.
    pub fn cmd_ok_reply(&mut self, code: u16) -> String {
        let (got, text) = self.reply();
        assert_eq!(got, code, "expected {code}, got {got} {text}");
        text
    }
}

/// A reply as the tests read it: the first line's text, then each further line whole (the
/// last with its code), trailing blanks trimmed, joined by '\n'.
fn reply_text(reply: ferroftp_proto::Reply) -> (u16, String) {
    let n = reply.lines.len();
    let text = reply
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i > 0 && i + 1 == n {
                format!("{} {l}", reply.code).trim_end().to_string()
            } else {
                l.trim_end().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (reply.code, text)
}

/// Read a data connection to its end (20 s read timeout).
pub fn read_all(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}
/// A TCP connection to `to` from `from` (an address of 127.0.0.0/8, so that tests can act as
/// many clients on loopback).
pub fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(10))?;
    Ok(sock.into())
}

/// Close with RST instead of FIN.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// The first line the server sends on a fresh connection, raw (no 220 assumed; empty if none
/// within 10 s).
pub fn first_line(s: &TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

/// Assert a transfer started: 150 or 125.
pub fn assert_transfer_start(code: u16, text: &str, what: &str) {
    assert!(
        code == 150 || code == 125,
        "{what}: expected 150/125, got {code} {text}"
    );
}

/// The PORT argument (`h1,h2,h3,h4,p1,p2`) for an IPv4 address.
pub fn port_arg(addr: SocketAddr) -> String {
    let SocketAddr::V4(a) = addr else {
        panic!("not v4")
    };
    ferroftp_proto::addr::format_port(a)
}
