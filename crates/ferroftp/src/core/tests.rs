//! Unit and property tests of the core, without sockets.
