//! Per-session TLS state: each control session's own session cache, ticket key and tokens,
//! which bind its data connections to it (see the module docs of [`crate::tls`]).

use std::fmt;
use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use rustls::{HandshakeKind, ServerConfig, ServerConnection};

use super::TlsError;

/// What a TLS data connection is for: tickets are sent only where the client reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    /// Server to client (RETR, LIST, NLST, MLSD).
    Download,
    /// Client to server (STOR, APPE, STOU).
    Upload,
}

/// One control session's TLS configurations, sharing a session cache and ticket key that
/// no other session can use.
///
/// Only the control connection mints resumable sessions that everyone trusts: its TLS 1.2
/// session ids and tickets, and its TLS 1.3 tickets, which carry the session's control token.
/// Data connections never create a TLS 1.2 session (their cache is read-only and their ticket
/// key issues no TLS 1.2 tickets), so a stranger's full handshake leaves it nothing to resume.
/// TLS 1.3 download connections hand out tickets too (rustls clients use each ticket once),
/// stamped with a token of that connection alone; the token is trusted only once the
/// connection has been accepted, so a ticket a refused stranger obtained is worth nothing.
#[derive(Clone)]
pub struct SessionTls {
    control: Arc<ServerConfig>,
    download: Arc<ServerConfig>,
    upload: Arc<ServerConfig>,
    pub(super) control_token: Token,
    granted: Arc<std::sync::Mutex<std::collections::VecDeque<Token>>>,
}

/// The random value a session stamps into the tickets it issues.
pub type Token = [u8; 16];

impl fmt::Debug for SessionTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionTls")
    }
}

/// TLS 1.3 tickets the control connection hands out: rustls clients use each ticket once and
/// keep at most eight, so that many uploads in a row can resume (each download adds one).
const CONTROL_TICKETS: usize = 8;

/// TLS 1.3 tickets each download data connection hands out: one to replace the ticket the
/// download itself used, one for an upload (which gets none of its own).
const DOWNLOAD_TICKETS: usize = 2;

/// Download tokens remembered; older tickets are long gone from any client's cache.
const GRANTED_TOKENS: usize = 32;

fn new_token() -> Token {
    let mut token = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut token);
    token
}

/// A view of the session cache that can be read but never written: data connections resume
/// the control connection's TLS 1.2 sessions but create none.
#[derive(Debug)]
struct ReadOnlyCache(Arc<ServerSessionMemoryCache>);

impl rustls::server::StoresServerSessions for ReadOnlyCache {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        false
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.take(key)
    }
    fn can_cache(&self) -> bool {
        false
    }
}

/// Which tickets a data connection's ticket key issues; it opens all of the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Issue {
    /// None (TLS 1.2 then sends an empty ticket, which RFC 5077 allows).
    Nothing,
    /// TLS 1.3 tickets only, which carry a token; never TLS 1.2 ones, which cannot.
    Tls13Only,
}

#[derive(Debug)]
struct DataTicketer {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    issue: Issue,
}

/// The protocol version inside a rustls session value (the plaintext of a ticket): a flag and
/// an optional length-prefixed server name come first. `None` if it cannot be read.
pub(super) fn ticket_version(plain: &[u8]) -> Option<u16> {
    let rest = match plain.first()? {
        0 => plain.get(1..)?,
        1 => {
            let len = usize::from(*plain.get(1)?);
            plain.get(2 + len..)?
        }
        _ => return None,
    };
    Some(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]))
}

impl rustls::server::ProducesTickets for DataTicketer {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // Fails closed: if the layout is ever not what we expect, no ticket is issued.
        match self.issue {
            Issue::Tls13Only if ticket_version(plain) == Some(0x0304) => self.inner.encrypt(plain),
            _ => None,
        }
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher)
    }
}

impl SessionTls {
    pub(super) fn new(base: &Arc<ServerConfig>) -> Result<Self, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let cache = ServerSessionMemoryCache::new(16);
        let with = |storage: Arc<dyn rustls::server::StoresServerSessions>,
                    ticketer: Arc<dyn rustls::server::ProducesTickets>,
                    tickets: usize| {
            let mut c = ServerConfig::clone(base);
            c.session_storage = storage;
            c.ticketer = ticketer;
            c.send_tls13_tickets = tickets;
            Arc::new(c)
        };
        let read_only: Arc<dyn rustls::server::StoresServerSessions> =
            Arc::new(ReadOnlyCache(Arc::clone(&cache)));
        let data_ticketer = |issue| -> Arc<dyn rustls::server::ProducesTickets> {
            Arc::new(DataTicketer {
                inner: Arc::clone(&ticketer),
                issue,
            })
        };
        Ok(Self {
            download: with(
                Arc::clone(&read_only),
                data_ticketer(Issue::Tls13Only),
                DOWNLOAD_TICKETS,
            ),
            upload: with(read_only, data_ticketer(Issue::Nothing), 0),
            control: with(cache, Arc::clone(&ticketer), CONTROL_TICKETS),
            control_token: new_token(),
            granted: Arc::default(),
        })
    }

    /// The configuration for the control connection.
    pub fn control_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.control)
    }

    /// Stamp the control connection's future tickets (call before its handshake).
    pub fn stamp_control(&self, conn: &mut ServerConnection) {
        conn.set_resumption_data(&self.control_token);
    }

    /// The configuration for a data connection, and the token its tickets carry (stamp it
    /// with [`ServerConnection::set_resumption_data`] before the handshake, and [`grant`] it
    /// once the connection is accepted).
    ///
    /// [`grant`]: Self::grant
    pub fn data_config(&self, direction: DataDirection) -> (Arc<ServerConfig>, Token) {
        let config = match direction {
            DataDirection::Download => &self.download,
            DataDirection::Upload => &self.upload,
        };
        (Arc::clone(config), new_token())
    }

    /// Trust the tickets of an accepted data connection from now on.
    pub fn grant(&self, token: Token) {
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        if granted.len() >= GRANTED_TOKENS {
            granted.pop_front();
        }
        granted.push_back(token);
    }

    /// Whether a data connection's handshake resumed this session; the reason if not.
    pub fn check_reuse(&self, conn: &ServerConnection) -> Result<(), &'static str> {
        if conn.handshake_kind() != Some(HandshakeKind::Resumed) {
            return Err(
                "the data connection did a full TLS handshake instead of resuming the control connection's session (clients that cannot resume need require_session_reuse = false; a rustls-based client that made 8 uploads in a row under TLS 1.3 has used up its tickets)",
            );
        }
        // TLS 1.3 tickets carry a token. TLS 1.2 resumption carries none, and can only have
        // come from this session's control connection (data connections mint no TLS 1.2
        // sessions).
        match conn.received_resumption_data() {
            Some(data) if data == self.control_token => Ok(()),
            Some(data) => {
                let granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
                if granted.iter().any(|t| t[..] == *data) {
                    Ok(())
                } else {
                    Err(
                        "the data connection resumed a TLS session that this control connection never vouched for (another client's, or one from a refused connection)",
                    )
                }
            }
            None => Ok(()),
        }
    }
}
