//! ferroftp: a secure, fast FTP server.
//!
//! A map of the crate (the protocol itself, without I/O, is the `ferroftp-proto` crate):
//! - [`config`]: the TOML configuration, its defaults and validation.
//! - [`users`]: virtual users behind the [`users::UserDirectory`] trait, the users file as its
//!   default, argon2id hashes (and bcrypt and crypt(3) ones moved from other servers); [`auth`]
//!   keeps their old paths.
//! - [`error`]: errors more than one module returns (an address that cannot be listened on).
//! - [`import`]: accounts from ProFTPD, Pure-FTPd and /etc/shadow for `ferroftp import-users`.
//! - [`policy`]: the policy types config, users and TLS share (permissions, TLS and sync
//!   policies, certificate fingerprints); a leaf that imports nothing from the crate.
//! - [`storage`]: each user's home on the local filesystem, confined and with atomic uploads.
//! - [`server`]: listeners, sessions (one task per control connection) and data connections.
//! - [`tls`]: FTPS certificates, live reload, and data connections bound to their control session.
//! - [`observe`]: logging set-up.
//! - [`doctor`]: `ferroftp doctor`: checks of a configuration, and of a running server as a client.
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
