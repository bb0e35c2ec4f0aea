//! A connection that is plain TCP or TLS over TCP, for control and data connections alike.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Plain TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Not encrypted.
    Plain(TcpStream),
    /// Encrypted (server side).
    Tls(Box<TlsStream<TcpStream>>),
    /// Taken away for the TLS handshake after AUTH; any I/O fails.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is being upgraded to TLS",
    )
}

impl Stream {
    /// Take the plain TCP connection out (for a TLS upgrade), leaving `Detached`.
    pub(crate) fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Self::Detached) {
            Self::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Whether the stream is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The TLS connection state, if encrypted.
    pub(crate) fn tls_state(&self) -> Option<&rustls::ServerConnection> {
        match self {
            Self::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// Read what is available right now without waiting (`WouldBlock` if nothing is).
    ///
    /// Plain TCP is read from the socket directly, bypassing tokio's readiness cache: clients
    /// send ABOR as TCP urgent data, and with SO_OOBINLINE a read stops at the urgent mark;
    /// tokio takes that short read for "drained" and would wait for a packet that may never
    /// come. Under TLS there is no urgent data, and one poll with a no-op waker suffices.
    pub(crate) fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => {
                use std::io::Read;
                let sock = socket2::SockRef::from(&*s);
                (&*sock).read(buf)
            }
            Self::Tls(s) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut **s).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Self::Detached => Err(detached()),
        }
    }
}

/// Bytes a control connection read takes at most.
const CONTROL_READ: usize = 512;

impl Stream {
    /// Waits for input and appends up to [`CONTROL_READ`] bytes of it to `into`; `Ok(0)` at
    /// the end of the stream. On plain TCP nothing is allocated while waiting (an idle session
    /// holds no read buffer, only its socket's readiness); TLS reads into `into` itself.
    pub(crate) async fn read_into(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self {
            Self::Plain(s) => loop {
                s.readable().await?;
                // Declared after the wait: not part of the future while it waits.
                let mut chunk = [0u8; CONTROL_READ];
                match s.try_read(&mut chunk) {
                    Ok(n) => {
                        into.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        return Ok(n);
                    }
                    // Stale readiness (the socket was drained by `read_now`): cleared, wait.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
            Self::Tls(s) => {
                into.reserve(CONTROL_READ);
                (&mut **s).take(CONTROL_READ as u64).read_buf(into).await
            }
            Self::Detached => Err(detached()),
        }
    }
}

/// Run a TLS server handshake on `tcp` within `timeout`; `prepare` sees the connection first.
pub(crate) async fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
    prepare: impl FnOnce(&mut rustls::ServerConnection),
) -> io::Result<TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept_with(tcp, prepare)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not completed within {} s", timeout.as_secs()),
        )),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Self::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Detached => false,
        }
    }
}
