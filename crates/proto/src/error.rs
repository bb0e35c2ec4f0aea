//! Why a control line is not a command this server can run, and the reply each reason gets.

use crate::reply::Reply;

/// Why a line is not a command this server can run; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An empty line.
    #[error("empty command line")]
    Empty,
    /// A verb this server does not know (500).
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A known verb that is not implemented (502).
    #[error("command {0} not implemented")]
    NotImplemented(String),
    /// Bad or missing arguments (501).
    #[error("{0}")]
    Syntax(String),
    /// A valid argument this server does not support (504).
    #[error("{0}")]
    UnsupportedParameter(String),
    /// EPRT/EPSV with a network protocol other than 1 or 2 (522).
    #[error("network protocol not supported")]
    UnsupportedProtocol,
}

impl ParseError {
    /// The reply to send for this error.
    pub fn to_reply(&self) -> Reply {
        match self {
            Self::Empty => Reply::new(500, "Empty command line"),
            Self::Unknown(verb) => Reply::new(500, format!("Unknown command '{verb}'")),
            Self::NotImplemented(verb) => Reply::new(502, format!("{verb} is not implemented")),
            Self::Syntax(msg) => Reply::new(501, msg.clone()),
            Self::UnsupportedParameter(msg) => Reply::new(504, msg.clone()),
            Self::UnsupportedProtocol => {
                Reply::new(522, "Network protocol not supported, use (1,2)")
            }
        }
    }
}
