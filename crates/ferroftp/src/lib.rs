//! ferroftp: a secure, fast FTP server.
//!
//! A map of the crate (the protocol itself, without I/O, is the `ferroftp-proto` crate):
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`auth`]: virtual users with argon2id hashes (and bcrypt and crypt(3) ones moved from
//!   other servers) and per-user permissions.
//! - [`import`]: accounts from ProFTPD, Pure-FTPd and /etc/shadow for `ferroftp import-users`.
//! - [`storage`]: each user's home on the local filesystem, confined and with atomic uploads.
//! - [`server`]: listeners, sessions (one task per control connection) and data connections.
//! - [`tls`]: FTPS certificates, live reload, and data connections bound to their control session.
//! - [`observe`]: logging set-up.
//! - [`doctor`]: `ferroftp doctor`: checks of a configuration, and of a running server as a client.
#![deny(unsafe_code)]

pub mod auth;
pub mod config;
pub mod doctor;
mod http;
pub mod import;
pub mod observe;
pub mod server;
pub mod storage;
pub mod tls;

pub use server::Server;
