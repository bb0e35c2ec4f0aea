//! The connections: plain or TLS, the control connection that reads replies with proto's
//! client-side codec, and the greeting probe `ferroftp doctor --config` uses.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use super::tls::TlsClient;

/// A plain or TLS connection.
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }

    /// Read to the end. For TLS, whether the server ended with close_notify.
    pub(super) fn read_all(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
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
    pub(super) fn finish(&mut self) -> io::Result<()> {
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
pub(super) struct Reply {
    pub(super) code: u16,
    pub(super) text: String,
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
pub(super) const MAX_REPLY: usize = 64 * 1024;

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
pub(super) struct Control {
    pub(super) conn: Option<Conn>,
    pub(super) buf: Vec<u8>,
    pub(super) peer: SocketAddr,
}

impl Control {
    pub(super) fn conn(&mut self) -> io::Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
    }

    /// The next reply, read with proto's client-side codec; bytes after it stay buffered.
    pub(super) fn reply(&mut self) -> io::Result<Reply> {
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

    pub(super) fn send(&mut self, line: &str) -> io::Result<()> {
        let conn = self.conn()?;
        conn.write_all(format!("{line}\r\n").as_bytes())?;
        conn.flush()
    }

    pub(super) fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(line)?;
        self.reply()
    }

    /// Replace the plain connection by a TLS one (after 234).
    pub(super) fn upgrade(&mut self, tls: &TlsClient) -> io::Result<()> {
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
pub(super) fn speaks_tls(addr: SocketAddr, timeout: Duration) -> bool {
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
pub(in crate::doctor) fn greeting(
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

pub(super) fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}
