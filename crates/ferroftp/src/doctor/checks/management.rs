//! The admin API and metrics listeners.

use std::io;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use super::Host;
use super::listeners::{PROBE_TIMEOUT, bind_failure, probe_addrs};
use super::secrets::{Recipe, secret_file_mode};
use crate::config::Config;
use crate::doctor::{Check, Level, Report};

/// Whether a ferroftp admin API (`admin`) or metrics endpoint answers on `addr`: its
/// OpenAPI document (served without the token) or metrics named `ferroftp_`.
pub(super) fn http_is_ferroftp(bind: SocketAddr, admin: bool) -> bool {
    let (path, marker) = if admin {
        ("/api/v1/openapi.json", "ferroftp admin API")
    } else {
        ("/metrics", "ferroftp_")
    };
    probe_addrs(bind).into_iter().any(|addr| {
        let answer = (|| -> io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            s.set_write_timeout(Some(PROBE_TIMEOUT))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut body = Vec::new();
            s.take(1 << 20).read_to_end(&mut body)?;
            Ok(String::from_utf8_lossy(&body).into_owned())
        })();
        answer.is_ok_and(|a| a.starts_with("HTTP/1.1 200") && a.contains(marker))
    })
}

/// The admin API and the metrics listener: each can be bound, and neither is open to the
/// network without the administrator having asked for it.
pub(super) fn management(config: &Config, host: &Host, r: &mut Report) {
    if config.admin.listen.is_none() && config.metrics.listen.is_none() {
        return;
    }
    r.section("Admin API and metrics");
    for (what, addr) in [
        ("admin API (admin.listen)", config.admin.listen),
        ("metrics (metrics.listen)", config.metrics.listen),
    ] {
        let Some(addr) = addr else { continue };
        let admin = what.starts_with("admin");
        match TcpListener::bind(addr) {
            Ok(_) => r.add(Check::new(
                Level::Ok,
                format!("{what} {addr}: the port can be bound"),
            )),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && http_is_ferroftp(addr, admin) => {
                r.add(Check::new(
                    Level::Ok,
                    format!(
                        "{what} {addr}: the port is in use by a running ferroftp (it answered {})",
                        if admin {
                            "GET /api/v1/openapi.json"
                        } else {
                            "GET /metrics"
                        }
                    ),
                ));
            }
            Err(e) => r.add(bind_failure(
                &format!("{what} {addr}"),
                if admin {
                    "admin.listen / --admin-listen"
                } else {
                    "metrics.listen / --metrics-listen"
                },
                addr,
                &e,
                &[],
                host,
            )),
        }
        if !addr.ip().is_loopback() {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "{what} {addr} is not on loopback: it is plain HTTP, so {} cross the network in clear",
                        if admin {
                            "the bearer token and every answer"
                        } else {
                            "the metrics (without any authentication)"
                        }
                    ),
                )
                .fix(format!(
                    "listen on 127.0.0.1 and reach it through SSH (ssh -L {port}:127.0.0.1:{port} host) or a TLS proxy, or allow only the management network in the firewall",
                    port = addr.port()
                )),
            );
        }
    }
    if let (Some(_), Some(token)) = (config.admin.listen, config.admin.token_file.as_ref()) {
        if let Err(e) = secret_file_mode(
            token,
            "admin token",
            "the token, which grants everything the admin API can do",
            "set a token of their own at the next reload",
            Recipe::ServiceOwned,
            r,
        ) {
            r.add(
                Check::new(
                    Level::Fail,
                    format!(
                        "admin token {}: {e}: the server will not start",
                        token.display()
                    ),
                )
                .fix("create it: umask 077; openssl rand -hex 32 > FILE (admin.token_file)"),
            );
        }
    }
}
