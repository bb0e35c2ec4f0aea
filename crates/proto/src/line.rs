//! Control-connection framing: lines end in LF (CRLF per RFC 959; a bare LF is accepted), are at
//! most a configured length, and may carry Telnet IAC sequences that must not reach the parser.

/// The line was longer than the configured limit before any line end was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("control line longer than {limit} bytes")]
pub struct LineTooLong {
    /// The limit that was exceeded.
    pub limit: usize,
}

/// Take one complete line from the front of `buf`, without its line ending and with Telnet
/// sequences removed. `Ok(None)` means more bytes are needed.
///
/// `max_len` includes the line end. A buffer holding `max_len` bytes with no line end is an error: the caller replies and
/// closes rather than buffering without bound.
pub fn take_line(buf: &mut Vec<u8>, max_len: usize) -> Result<Option<Vec<u8>>, LineTooLong> {
    // `max_len` counts the whole line including its end: the LF at `pos` is byte `pos + 1`.
    match buf.iter().position(|&b| b == b'\n') {
        Some(pos) if pos < max_len => {
            let mut line: Vec<u8> = buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(Some(strip_telnet(&line)))
        }
        Some(_) => Err(LineTooLong { limit: max_len }),
        None if buf.len() >= max_len => Err(LineTooLong { limit: max_len }),
        None => Ok(None),
    }
}

const IAC: u8 = 0xFF;
const WILL: u8 = 0xFB;
const DONT: u8 = 0xFE;

/// Remove Telnet IAC sequences (RFC 854): `IAC IAC` is a literal 0xFF, option negotiation
/// (`IAC WILL|WONT|DO|DONT opt`) is dropped whole, and any other `IAC x` (such as the
/// `IAC IP IAC DM` that clients send before ABOR) is dropped.
pub fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(&cmd) if (WILL..=DONT).contains(&cmd) => i += 3,
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_crlf_and_bare_lf_lines_in_order() {
        let mut buf = b"USER a\r\nPASS b\nNOOP".to_vec();
        assert_eq!(take_line(&mut buf, 100), Ok(Some(b"USER a".to_vec())));
        assert_eq!(take_line(&mut buf, 100), Ok(Some(b"PASS b".to_vec())));
        assert_eq!(take_line(&mut buf, 100), Ok(None));
        assert_eq!(buf, b"NOOP");
    }

    #[test]
    fn refuses_a_line_over_the_limit_even_without_newline() {
        let mut buf = vec![b'a'; 20];
        assert_eq!(take_line(&mut buf, 10), Err(LineTooLong { limit: 10 }));
        let mut buf = b"0123456789ABCDEF\r\n".to_vec();
        assert!(take_line(&mut buf, 10).is_err());
    }

    #[test]
    fn the_limit_counts_the_line_end() {
        let mut buf = b"NOOP    \r\n".to_vec();
        assert_eq!(take_line(&mut buf, 10), Ok(Some(b"NOOP    ".to_vec())));
        let mut buf = b"NOOP     \r\n".to_vec();
        assert!(take_line(&mut buf, 10).is_err());
        let mut buf = b"NOOP     \r".to_vec();
        assert!(
            take_line(&mut buf, 10).is_err(),
            "10 bytes and no LF yet cannot end within 10"
        );
        let mut buf = b"NOOP    \r".to_vec();
        assert_eq!(take_line(&mut buf, 10), Ok(None));
    }

    #[test]
    fn strips_the_telnet_interrupt_before_abor() {
        let mut buf = b"\xff\xf4\xff\xf2ABOR\r\n".to_vec();
        assert_eq!(take_line(&mut buf, 100), Ok(Some(b"ABOR".to_vec())));
        assert_eq!(
            strip_telnet(b"a\xff\xffb\xff\xfb\x01c"),
            b"a\xffbc".to_vec()
        );
    }
}
