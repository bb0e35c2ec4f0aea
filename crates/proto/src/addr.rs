//! Data-connection addresses: PORT and PASV (RFC 959 §4.1.2, `h1,h2,h3,h4,p1,p2`) and EPRT and
//! EPSV (RFC 2428, `|proto|addr|port|`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use crate::error::ParseError;

/// Parse a PORT argument, `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &str) -> Result<SocketAddrV4, ParseError> {
    let bad = || ParseError::Syntax("PORT needs h1,h2,h3,h4,p1,p2 with numbers 0-255".into());
    let mut nums = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for n in nums.iter_mut() {
        let part = parts.next().ok_or_else(bad)?.trim();
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        *n = part.parse().map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    Ok(SocketAddrV4::new(ip, port))
}

/// Render an IPv4 address and port as `h1,h2,h3,h4,p1,p2` (the PORT argument and PASV reply).
pub fn format_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// The text of a 227 reply announcing `addr`.
pub fn pasv_reply_text(addr: SocketAddrV4) -> String {
    format!("Entering Passive Mode ({})", format_port(addr))
}

/// The text of a 229 reply announcing `port`.
pub fn epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Parse an EPRT argument, `<d>proto<d>addr<d>port<d>` where `d` is any printable ASCII
/// delimiter (RFC 2428 §2). Protocols other than 1 (IPv4) and 2 (IPv6) get the 522 error.
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::Syntax("EPRT needs |proto|address|port|".into());
    let arg = arg.trim();
    let delim = arg.chars().next().ok_or_else(bad)?;
    if !(33..=126).contains(&(delim as u32)) || delim.is_ascii_digit() {
        return Err(bad());
    }
    let fields: Vec<&str> = arg.split(delim).collect();
    // A leading and a trailing delimiter around three fields give five pieces.
    let [empty_a, proto, host, port, empty_b] = fields.as_slice() else {
        return Err(bad());
    };
    if !empty_a.is_empty() || !empty_b.is_empty() {
        return Err(bad());
    }
    let port: u16 = parse_decimal(port).ok_or_else(bad)?;
    if port == 0 {
        return Err(bad());
    }
    let ip: IpAddr = match *proto {
        "1" => IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| bad())?),
        "2" => IpAddr::V6(host.parse::<Ipv6Addr>().map_err(|_| bad())?),
        _ => return Err(ParseError::UnsupportedProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Render an EPRT argument for `addr`.
pub fn format_eprt(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("|1|{ip}|{}|", addr.port()),
        IpAddr::V6(ip) => format!("|2|{ip}|{}|", addr.port()),
    }
}

/// The RFC 2428 protocol number of an address family: 1 for IPv4, 2 for IPv6.
pub fn protocol_number(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 1,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 1,
        IpAddr::V6(_) => 2,
    }
}

/// Parse the `(h1,h2,h3,h4,p1,p2)` of a 227 reply text, as a client does.
pub fn parse_pasv_reply(text: &str) -> Option<SocketAddrV4> {
    let start = text.find('(')?;
    let end = text[start..].find(')')? + start;
    parse_port(&text[start + 1..end]).ok()
}

fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_examples() {
        assert_eq!(
            parse_port("132,235,1,2,24,131").ok(),
            Some("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("|1|132.235.1.2|6275|").ok(),
            Some("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("|2|1080::8:800:200C:417A|5282|").ok(),
            Some("[1080::8:800:200C:417A]:5282".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("!1!10.0.0.1!21!").ok(),
            Some("10.0.0.1:21".parse().unwrap())
        );
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "1,2,3,4,5",
            "1,2,3,4,5,6,7",
            "256,1,1,1,1,1",
            "a,b,c,d,e,f",
            "1,2,3,4,5,-6",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        for bad in [
            "",
            "|1|1.2.3.4|0|",
            "|1|::1|21|",
            "|2|1.2.3.4|21|",
            "|1|1.2.3.4|70000|",
            "1|1.2.3.4|21|",
        ] {
            assert!(parse_eprt(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_eprt("|3|1.2.3.4|21|"),
            Err(ParseError::UnsupportedProtocol)
        );
    }

    proptest! {
        #[test]
        fn port_round_trips(ip in any::<u32>(), port in any::<u16>()) {
            let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(parse_port(&format_port(addr)).ok(), Some(addr));
            prop_assert_eq!(parse_pasv_reply(&pasv_reply_text(addr)), Some(addr));
        }

        #[test]
        fn eprt_round_trips(v6 in any::<u128>(), v4 in any::<u32>(), port in 1u16..) {
            for ip in [IpAddr::V6(Ipv6Addr::from(v6)), IpAddr::V4(Ipv4Addr::from(v4))] {
                let addr = SocketAddr::new(ip, port);
                prop_assert_eq!(parse_eprt(&format_eprt(addr)).ok(), Some(addr));
            }
        }

        #[test]
        fn address_parsers_never_panic(s in "\\PC{0,60}") {
            let _ = parse_port(&s);
            let _ = parse_eprt(&s);
            let _ = parse_pasv_reply(&s);
        }
    }
}
