//! Test harness: runs the real `ferroftp` binary on an ephemeral loopback port with a temporary
//! root ([`server`]), a small raw control-connection client for checking exact replies
//! ([`ctrl`]), free loopback ports ([`ports`]), TLS clients ([`tls`]) and small helpers ([`util`]). Every test binary
//! has `mod common;` and uses what it needs, as `common::X`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

/// The raw control-connection client.
pub mod ctrl;
/// Free loopback ports.
pub mod ports;
/// The server under test.
pub mod server;
/// TLS clients.
pub mod tls;
/// Small helpers.
pub mod util;

// Not every binary uses every module.
#[allow(unused_imports)]
pub use ctrl::*;
#[allow(unused_imports)]
pub use ports::*;
#[allow(unused_imports)]
pub use server::*;
#[allow(unused_imports)]
pub use tls::*;
#[allow(unused_imports)]
pub use util::*;
