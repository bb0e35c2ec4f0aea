//! The data connection checks: PASV and EPSV, the TLS of a data connection, a listing, and an
//! upload/download round trip of a random file.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::RngCore;
use rustls::HandshakeKind;

use super::control::{Conn, Reply, connect_tcp};
use super::session::{Passive, Session, Step};
use super::{PROBE_BYTES, describe_connect, ms};
use crate::doctor::checks::is_private;
use crate::doctor::{Check, Level};

impl Session<'_> {
    /// Ask for a passive port and connect to it.
    pub(super) fn open_passive(
        &mut self,
        mode: Passive,
    ) -> Result<(Conn, String, Vec<Check>), Vec<Check>> {
        let timeout = self.opts.timeout;
        let peer = self.ctrl.peer;
        let mut notes = Vec::new();
        let (target, announced) = match mode {
            Passive::Pasv => {
                let reply = self.cmd("PASV").map_err(|c| vec![c])?;
                if reply.code != 227 {
                    let level = if peer.is_ipv6() {
                        Level::Warn
                    } else {
                        Level::Fail
                    };
                    let mut check = Check::new(level, format!("PASV refused: {reply}"));
                    check = if peer.is_ipv6() {
                        check.fix("PASV is IPv4 only; over IPv6 clients use EPSV")
                    } else {
                        check.fix("425: the passive range is exhausted (passive.ports too small for the sessions at once) or passive.address does not resolve; see the server's log")
                    };
                    return Err(vec![check]);
                }
                let Some(addr) = ferroftp_proto::addr::parse_pasv_reply(&reply.text) else {
                    return Err(vec![
                        self.fail(format!("PASV: cannot read the address in {reply}")),
                    ]);
                };
                let addr = SocketAddr::V4(addr);
                if addr.ip() != peer.ip() {
                    let ip = match addr.ip() {
                        IpAddr::V4(ip) => ip,
                        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
                    };
                    if is_private(ip) || ip.is_loopback() {
                        notes.push(
                            Check::new(
                                Level::Warn,
                                format!(
                                    "227 announced a private address ({}) different from the one you connected to ({}): clients outside that network cannot follow it",
                                    addr.ip(),
                                    peer.ip()
                                ),
                            )
                            .fix("set passive.address to the address clients reach (behind NAT: the public address or name)"),
                        );
                    }
                }
                (addr, format!("227 announced {addr}"))
            }
            Passive::Epsv => {
                let reply = self.cmd("EPSV").map_err(|c| vec![c])?;
                if reply.code != 229 {
                    return Err(vec![self.fail(format!("EPSV refused: {reply}"))]);
                }
                let Some(port) = epsv_port(&reply.text) else {
                    return Err(vec![
                        self.fail(format!("EPSV: cannot read the port in {reply}")),
                    ]);
                };
                let addr = SocketAddr::new(peer.ip(), port);
                (addr, format!("229 announced port {port}"))
            }
        };
        match connect_tcp(target, timeout) {
            Ok(tcp) => Ok((Conn::Plain(tcp), announced, notes)),
            Err(e) => {
                let name = mode.name();
                let mut text = format!(
                    "{name} answered {target} but connecting to it {}: the passive range is not open in the firewall",
                    describe_connect(&e, timeout)
                );
                let mut check = if mode == Passive::Pasv {
                    text.push_str(
                        ", or the announced address is private or wrong — set passive.address",
                    );
                    if target.ip() != peer.ip() {
                        text.push_str(&format!(
                            " (it differs from {}, the address you connected to)",
                            peer.ip()
                        ));
                    }
                    Check::new(Level::Fail, text)
                        .fix("set passive.address to the address clients reach (behind NAT: the public one)")
                } else {
                    text.push_str(", or not forwarded to the server (NAT)");
                    Check::new(Level::Fail, text)
                };
                check = check.fix("open passive.ports in the firewall (ferroftp doctor --config FILE prints the rules)");
                notes.push(check);
                Err(notes)
            }
        }
    }

    /// After the 150: the TLS handshake on the data connection, when PROT P is on.
    pub(super) fn protect(&mut self, data: Conn) -> Step<(Conn, &'static str)> {
        if !self.prot_p {
            return Ok((data, ""));
        }
        let tls = self.tls()?;
        let Conn::Plain(tcp) = data else {
            return Ok((data, ""));
        };
        match tls.handshake(tcp) {
            Ok(t) => {
                let resumed = if t.conn.handshake_kind() == Some(HandshakeKind::Resumed) {
                    "; TLS resumed the control connection's session"
                } else {
                    "; TLS did a full handshake (not resumed)"
                };
                Ok((Conn::Tls(Box::new(t)), resumed))
            }
            Err(e) => {
                let check =
                    tls.handshake_failure("data connection TLS handshake failed", &e, self.opts);
                // The server says why (522) on the control connection.
                match self.ctrl.reply() {
                    Ok(reply) => Err(self.explain_transfer_reply(&reply).unwrap_or(check)),
                    Err(_) => Err(check),
                }
            }
        }
    }

    /// A failed transfer's final reply as a check with the likely cause.
    pub(super) fn explain_transfer_reply(&self, reply: &Reply) -> Option<Check> {
        let check = match reply.code {
            200..=299 => return None,
            522 => self.fail(format!("the data connection was refused with 522: session reuse ({reply})"))
                .fix("the data connection must resume the control connection's TLS session (require_session_reuse); this client does, so see the server's log"),
            521 => self.fail(format!("the transfer needs PROT P: {reply}")),
            425 => self.fail(format!("no data connection: {reply}"))
                .fix("the server waited limits.data_timeout_secs for the data connection, or refused it from another address (passive.allow_foreign_ip)"),
            426 => self.fail(format!("the transfer broke off: {reply}")),
            _ => self.fail(format!("transfer failed: {reply}")),
        };
        Some(check)
    }

    /// A listing over `mode`: whether it worked, and what there is to say about it.
    pub(super) fn listing(&mut self, mode: Passive) -> (bool, Vec<Check>) {
        let name = mode.name();
        let started = Instant::now();
        let (data, announced, mut notes) = match self.open_passive(mode) {
            Ok(x) => x,
            Err(notes) => return (false, notes),
        };
        match self.list_over(data) {
            Ok((lines, resumed)) => {
                notes.insert(
                    0,
                    Check::new(
                        Level::Ok,
                        format!(
                            "{name} listing: {announced}, connected, LIST gave {lines} lines{resumed} ({})",
                            ms(started)
                        ),
                    ),
                );
                (true, notes)
            }
            Err(check) => {
                notes.push(check);
                (false, notes)
            }
        }
    }

    /// LIST over an open data connection: the number of lines, and how TLS went.
    pub(super) fn list_over(&mut self, data: Conn) -> Step<(usize, &'static str)> {
        let reply = self.cmd("LIST")?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("LIST: {reply}"))));
        }
        let (mut data, resumed) = self.protect(data)?;
        let mut listing = Vec::new();
        let read = data.read_all(&mut listing);
        drop(data);
        let end = self.reply("after LIST")?;
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        read.map_err(|e| self.fail(format!("LIST: reading the data connection failed: {e}")))?;
        let lines = listing
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        Ok((lines, resumed))
    }

    /// Upload a random file into a new directory, download it, compare, remove both.
    pub(super) fn round_trip(&mut self, mode: Passive) -> Step<Check> {
        let started = Instant::now();
        let mut rng = rand::thread_rng();
        let dir = format!("ferroftp-doctor-{:08x}", rng.next_u32());
        let file = format!("{dir}/probe.bin");
        let mut sent = vec![0u8; PROBE_BYTES];
        rng.fill_bytes(&mut sent);
        let mkd = self.cmd(&format!("MKD {dir}"))?;
        if mkd.code != 257 {
            return Err(Check::new(
                Level::Warn,
                format!("round trip not run: MKD {dir} refused: {mkd}"),
            )
            .fix("the user may not create directories or write here (permissions mkdir, write); fine for a read-only user"));
        }
        let result = self.upload_download(mode, &file, &sent);
        let dele = self.cmd(&format!("DELE {file}"));
        let rmd = self.cmd(&format!("RMD {dir}"));
        let check = result?;
        let cleaned = matches!((&dele, &rmd), (Ok(d), Ok(r)) if d.code == 250 && r.code == 250);
        if !cleaned {
            let what = |r: &Step<Reply>| match r {
                Ok(reply) => reply.to_string(),
                Err(c) => c.text.clone(),
            };
            return Ok(Check::new(
                Level::Warn,
                format!(
                    "{}; but removing the test files failed: DELE {}, RMD {}",
                    check.text,
                    what(&dele),
                    what(&rmd)
                ),
            )
            .fix(format!("remove {dir} by hand")));
        }
        Ok(Check::new(
            check.level,
            format!("{}; removed again ({})", check.text, ms(started)),
        ))
    }

    pub(super) fn upload_download(
        &mut self,
        mode: Passive,
        file: &str,
        sent: &[u8],
    ) -> Step<Check> {
        let name = mode.name();
        let one = |notes: Vec<Check>| {
            notes
                .into_iter()
                .last()
                .unwrap_or_else(|| Check::new(Level::Fail, "no data connection"))
        };
        // Upload.
        let (data, _, _) = self.open_passive(mode).map_err(one)?;
        let reply = self.cmd(&format!("STOR {file}"))?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("upload refused: STOR {file}: {reply}")))
                .fix("the user may need the write permission"));
        }
        let (mut data, _) = self.protect(data)?;
        let wrote = data.write_all(sent).and_then(|()| data.finish());
        let end = self.reply("after STOR")?;
        drop(data);
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        if let Err(e) = wrote {
            return Err(self.fail(format!("upload: writing the data connection failed: {e}")));
        }
        // Download.
        let (data, _, _) = self.open_passive(mode).map_err(one)?;
        let reply = self.cmd(&format!("RETR {file}"))?;
        if reply.code != 150 && reply.code != 125 {
            return Err(self
                .explain_transfer_reply(&reply)
                .unwrap_or_else(|| self.fail(format!("download refused: RETR {file}: {reply}"))));
        }
        let (mut data, resumed) = self.protect(data)?;
        let mut got = Vec::with_capacity(sent.len());
        let read = data.read_all(&mut got);
        drop(data);
        let end = self.reply("after RETR")?;
        if let Some(check) = self.explain_transfer_reply(&end) {
            return Err(check);
        }
        let clean_end = read
            .map_err(|e| self.fail(format!("download: reading the data connection failed: {e}")))?;
        let digest = |b: &[u8]| crate::tls::fingerprint(b);
        if got != sent {
            return Err(self
                .fail(format!(
                    "round trip over {name}: the downloaded file differs from the uploaded one ({} bytes back of {}, SHA-256 {} vs {})",
                    got.len(),
                    sent.len(),
                    digest(&got),
                    digest(sent)
                ))
                .fix("see the server's log for the two transfers"));
        }
        let note = if clean_end {
            ""
        } else {
            " (the download ended without TLS close_notify)"
        };
        Ok(Check::new(
            Level::Ok,
            format!(
                "round trip over {name}: uploaded and downloaded {} random bytes in {file}, SHA-256 identical{resumed}{note}",
                sent.len()
            ),
        ))
    }
}

/// The port in an EPSV reply: `Entering Extended Passive Mode (|||6446|)`.
pub(super) fn epsv_port(text: &str) -> Option<u16> {
    let inner = text.split_once('(')?.1.split_once(')')?.0;
    let delim = inner.chars().next()?;
    inner.split(delim).nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epsv_port_is_read_from_the_reply() {
        assert_eq!(
            epsv_port("Entering Extended Passive Mode (|||50001|)"),
            Some(50001)
        );
        assert_eq!(epsv_port("Entering Extended Passive Mode (!!!7!)"), Some(7));
        assert_eq!(epsv_port("no port here"), None);
    }
}
