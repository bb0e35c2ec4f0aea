//! The harness itself works: the server starts, greets, logs in and lists.
mod common;

#[test]
fn the_server_starts_and_serves_a_listing() {
    let mut server = common::TestServer::start();
    std::fs::write(server.root.join("a.txt"), b"abc").unwrap();
    let mut c = server.login();
    assert_eq!(c.retr("a.txt"), b"abc");
    server.assert_still_serving();
}
