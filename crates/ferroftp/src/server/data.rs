//! Data connections: the passive port allocator, accepting with the peer check, connecting out
//! for active mode; the byte-moving loops of a transfer are in [`copy`] (async) and [`thread`]
//! (on threads of their own).
//!
//! A passive port is a resource like a file descriptor: a [`PassiveListener`] holds it and gives
//! it back when dropped, whatever path the session takes (used, timed out, replaced by another
//! PASV, or the session ending). The session owns the listener until a transfer takes it, so
//! every release is a plain synchronous drop, never left to a background task.

mod copy;
#[cfg(test)]
mod tests;
mod thread;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::PortRange;

#[cfg(test)]
use copy::UPLOAD_CHUNK;
pub(crate) use copy::{
    CopyError, Ending, FILE_READ_SIZE, FileWriter, Received, drain_until_closed, finish, receive,
    receive_binary, send, sendfile, write_chunk,
};
pub(crate) use thread::{
    BIG_DOWNLOAD, BIG_UPLOAD, OnThread, ThreadEnd, TransferEnd, receive_on_thread,
    send_tls_on_thread, thread_slot,
};

/// Hands out passive ports from the configured range, the port released longest ago first,
/// skipping ports in use by this server or held by another process.
///
/// Why that order: a port whose download we sent keeps the finished connections in TIME_WAIT
/// for a minute, and every `bind` of it (SO_REUSEADDR) walks them in the kernel's bind hash.
/// The port that has rested longest has the fewest left. A port that another process holds
/// goes to the back of the queue, so it costs one failed `bind` per turn through the range,
/// not one per PASV.
#[derive(Debug)]
pub(crate) struct PassivePorts {
    range: Option<PortRange>,
    state: Mutex<PortState>,
}

#[derive(Debug, Default)]
struct PortState {
    /// Ports not held by a session, the one released longest ago at the front.
    free: VecDeque<u16>,
    /// Ports held by sessions.
    held: usize,
}

impl PassivePorts {
    /// An allocator over `range` (`None`: let the OS pick any free port).
    pub(crate) fn new(range: Option<PortRange>) -> Arc<Self> {
        Arc::new(Self {
            range,
            state: Mutex::new(PortState {
                free: range
                    .map(|r| (r.low..=r.high).collect())
                    .unwrap_or_default(),
                held: 0,
            }),
        })
    }

    /// Ports currently held by sessions.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PortState> {
        // A panic while holding this lock cannot leave the state inconsistent (every change
        // is a single push or pop with its count), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listen on a free port of the range at `ip`.
    pub(crate) fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<PassiveListener> {
        let Some(range) = self.range else {
            let listener = listen(SocketAddr::new(ip, 0))?;
            let port = listener.local_addr()?.port();
            return Ok(PassiveListener {
                listener,
                port,
                owner: None,
                _counted: None,
            });
        };
        // Each free port at most once: those that fail go to the back, behind the ones not
        // tried yet.
        let tries = self.lock().free.len();
        for _ in 0..tries {
            let Some(port) = self.lock().free.pop_front() else {
                break;
            };
            // The lock is not held during the bind: other sessions take other ports meanwhile.
            match listen(SocketAddr::new(ip, port)) {
                Ok(listener) => {
                    self.lock().held += 1;
                    return Ok(PassiveListener {
                        listener,
                        port,
                        owner: Some(Arc::clone(self)),
                        _counted: None,
                    });
                }
                Err(e) => {
                    self.lock().free.push_back(port);
                    // Held by another process (or not bindable at all): try the next one.
                    tracing::debug!(port, error = %e, "passive port unavailable, skipping");
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port in the passive range {range}"),
        ))
    }

    /// Take back a port a listener held: it is the last to be handed out again.
    fn release(&self, port: u16) {
        let mut st = self.lock();
        st.held = st.held.saturating_sub(1);
        st.free.push_back(port);
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Data connections end in TIME_WAIT on our side; without SO_REUSEADDR the port could not be
    // listened on again for a minute and the range would drain. (It still refuses a port that
    // another socket is listening on.)
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(16)
}

/// A listening passive port; the port returns to the pool when this is dropped.
#[derive(Debug)]
pub(crate) struct PassiveListener {
    listener: TcpListener,
    port: u16,
    owner: Option<Arc<PassivePorts>>,
    /// Counted in `ferroftp_passive_ports_in_use` while it lives.
    _counted: Option<crate::observe::metrics::PassivePortHeld>,
}

impl PassiveListener {
    /// The port listened on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Count this port in the metrics for as long as it is held.
    pub(crate) fn counted(mut self, held: crate::observe::metrics::PassivePortHeld) -> Self {
        self._counted = Some(held);
        self
    }

    /// Accept the client's data connection: the first connection from `expected_ip` wins; one
    /// from any other address is closed and logged (unless `allow_foreign`). Gives up after
    /// `timeout`. The port is released when this returns, whatever the result.
    ///
    /// Behind a load balancer (`proxies`: its networks), a connection from it starts with a
    /// PROXY header, and the client address it carries is what is checked.
    pub(crate) async fn accept(
        self,
        expected_ip: IpAddr,
        allow_foreign: bool,
        timeout: Duration,
        proxies: Option<Arc<Vec<ipnet::IpNet>>>,
    ) -> io::Result<TcpStream> {
        tokio::time::timeout(
            timeout,
            self.accept_from(
                expected_ip,
                allow_foreign,
                proxies.as_deref().map(Vec::as_slice),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no data connection within {} s", timeout.as_secs()),
            ))
        })
    }

    async fn accept_from(
        &self,
        expected: IpAddr,
        allow_foreign: bool,
        proxies: Option<&[ipnet::IpNet]>,
    ) -> io::Result<TcpStream> {
        loop {
            let (mut stream, mut peer) = self.listener.accept().await?;
            if proxies.is_some_and(|n| super::proxy::trusted(peer.ip().to_canonical(), n)) {
                match super::proxy::read_header(&mut stream, peer, Duration::from_secs(5)).await {
                    Ok(client) => peer = client,
                    Err(e) => {
                        tracing::warn!(port = self.port, proxy = %peer, error = %e, "dropped a passive data connection from the proxy without a valid PROXY header");
                        continue;
                    }
                }
            }
            if allow_foreign || peer.ip().to_canonical() == expected.to_canonical() {
                return Ok(stream);
            }
            tracing::warn!(
                port = self.port,
                from = %peer,
                expected = %expected,
                "refused a passive data connection from another address than the client's (possible data theft)"
            );
        }
    }
}

impl Drop for PassiveListener {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            owner.release(self.port);
        }
    }
}

/// Open an active-mode data connection to `target`, from the control connection's local IP
/// (and from `source_port`, when one is configured).
pub(crate) async fn connect_active(
    local_ip: IpAddr,
    target: SocketAddr,
    timeout: Duration,
    source_port: Option<u16>,
) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let local_ip = match (local_ip.to_canonical(), target.ip()) {
        (ip @ IpAddr::V4(_), IpAddr::V4(_)) | (ip @ IpAddr::V6(_), IpAddr::V6(_)) => Some(ip),
        _ => None,
    };
    if let Some(port) = source_port {
        // Many data connections share the source port (each to another client port): the
        // connections differ by their other end, which SO_REUSEADDR allows.
        socket.set_reuseaddr(true)?;
        let ip = local_ip.unwrap_or_else(|| match target {
            SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        socket.bind(SocketAddr::new(ip, port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot use source port {port} for the data connection: {e}"),
            )
        })?;
    } else if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(target))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {target} took over {} s", timeout.as_secs()),
            ))
        })?;
    refuse_self_connect(stream)
}

/// A connection whose two ends are one socket is no connection: TCP lets a socket reach itself
/// when it connects from the very port it targets (a simultaneous open), which happens when the
/// client names a closed port that the kernel then picks as our source port, or the port that
/// `source_port_below_listener` binds. The transfer would "succeed" into the void.
fn refuse_self_connect(stream: TcpStream) -> io::Result<TcpStream> {
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    if local == peer {
        tracing::warn!(addr = %peer, "active data connection reached itself (TCP self-connect); treated as refused");
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("nothing listens on {peer}"),
        ));
    }
    Ok(stream)
}
