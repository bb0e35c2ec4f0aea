//! The FTP protocol without I/O.
//!
//! A map of the crate:
//! - [`line`](mod@line): framing of the control connection (CRLF lines, length limit, Telnet escapes).
//! - [`command`]: one control line → a typed [`Command`], or a [`ParseError`] that knows its reply code.
//! - [`error`]: [`ParseError`], why a line is not a command, and the reply each reason gets.
//! - [`verbs`]: the verb table: one entry per verb drives parsing, HELP, FEAT, the
//!   before-login rule and the metrics and log labels.
//! - [`reply`]: [`Reply`] codes and their single- and multi-line rendering (RFC 959 §4.2).
//! - [`addr`]: PORT/PASV (RFC 959) and EPRT/EPSV (RFC 2428) address encodings.
//! - [`listing`]: `LIST` lines in Unix `ls -l` style, MLSx facts (RFC 3659) and timestamps.
//! - [`ascii`]: TYPE A line-ending translation in both directions, chunk by chunk.
//!
//! Imports run one way (a unit test checks it): `command` uses `verbs`, `addr`, `listing` and
//! `error`; `verbs` uses `listing` and `reply`; nothing uses `command`.
//!
//! Nothing here touches a socket, a file or a clock: time is passed in, so everything is
//! deterministic and property-tested.
#![forbid(unsafe_code)]

pub mod addr;
pub mod ascii;
pub mod command;
pub mod error;
pub mod line;
pub mod listing;
pub mod reply;
pub mod verbs;

pub use command::{
    Command, EpsvArg, FileStructure, OptsCommand, ProtLevel, SiteCommand, TransferMode,
    TransferType,
};
pub use error::ParseError;
pub use listing::MlstFacts;
pub use reply::Reply;
pub use verbs::Verb;

#[cfg(test)]
mod layering;
