//! ferroftp: a secure, fast FTP server.
//!
//! A map of the crate (the protocol itself, without I/O, is the `ferroftp-proto` crate; the
//! layers and the effect loop are drawn in docs/ARCHITECTURE.md):
//! - [`core`]: the FTP session as a state machine without I/O: commands and events in, replies
//!   and typed effects out.
//! - [`server`]: listeners, and the tokio driver of each session (one task per control
//!   connection) that carries out the core's effects: sockets, TLS, timers, transfers.
//! - [`storage`]: the [`storage::Storage`] trait users' files are reached through, and its
//!   local back-end (each home confined, atomic uploads, sendfile/splice).
//! - [`users`]: virtual users behind the [`users::UserDirectory`] trait, the users file as its
//!   default, argon2id hashes (and bcrypt and crypt(3) ones moved from other servers); [`auth`]
//!   keeps their old paths.
//! - [`policy`]: the policy types config, users and TLS share (permissions, TLS and sync
//!   policies, certificate fingerprints); a leaf that imports nothing from the crate.
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`tls`]: FTPS certificates, live reload, and data connections bound to their control session.
//! - [`observe`]: logging set-up, metrics and the transfer log.
//! - [`import`]: accounts from ProFTPD, Pure-FTPd and /etc/shadow for `ferroftp import-users`.
//! - [`doctor`]: `ferroftp doctor`: checks of a configuration, and of a running server as a client.
//! - [`error`]: errors more than one module returns (an address that cannot be listened on).
#![deny(unsafe_code)]

pub mod auth;
pub mod config;
pub mod core;
pub mod doctor;
pub mod error;
mod http;
pub mod import;
pub mod observe;
pub mod policy;
pub mod server;
pub mod storage;
pub mod tls;
pub mod users;

pub use server::Server;
