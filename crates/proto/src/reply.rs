//! Replies: a three-digit code and one or more lines of text (RFC 959 §4.2).

use std::fmt;

/// A reply to send on the control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (100..=599).
    pub code: u16,
    /// The text lines; more than one makes a multi-line reply.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply: `first` opens it (`code-first`), `last` closes it (`code last`), and
    /// `body` goes between, each body line indented by one space as RFC 2389 and 3659 show.
    pub fn multi(
        code: u16,
        first: impl Into<String>,
        body: impl IntoIterator<Item = String>,
        last: impl Into<String>,
    ) -> Self {
        let mut lines = vec![first.into()];
        lines.extend(body.into_iter().map(|l| format!(" {l}")));
        lines.push(last.into());
        Self { code, lines }
    }

    /// Whether this reply is a positive preliminary, completion or intermediate reply.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The bytes to send. Each line has CR and LF replaced so that no text (a file name, say)
    /// can end a reply early or forge another one.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.render_into(&mut out);
        out
    }

    /// Append the rendered reply to `out`.
    pub fn render_into(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let clean = sanitize(text);
            let last = i + 1 == n;
            if i == 0 || last {
                let sep = if last { ' ' } else { '-' };
                out.extend_from_slice(format!("{:03}{sep}{clean}\r\n", self.code).as_bytes());
            } else {
                // A middle line that starts like "123 " would end the reply for a client;
                // RFC 959 asks for it to be indented.
                if starts_like_code(&clean) {
                    out.push(b' ');
                }
                out.extend_from_slice(clean.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Parse one complete reply from the front of `input`, as a client would: returns the reply
    /// and how many bytes it used, or `None` if `input` does not yet hold a complete reply or
    /// does not start with one ([`Reply::decode`] tells the two apart).
    pub fn parse(input: &[u8]) -> Option<(Reply, usize)> {
        Self::decode(input).ok().flatten()
    }

    /// Read one reply from the front of `input`, as a client reads a control connection:
    /// `Ok(Some((reply, used)))` when a complete reply is there, `Ok(None)` when more bytes are
    /// needed, and an error when what is there cannot be a reply (a first line without a code
    /// 100-599 and a space or `-` after it, or a line ended by a bare LF), so that a client
    /// stops waiting instead of reading on. Lines end with CRLF; text that is not UTF-8 (a
    /// file name in another encoding) is kept with replacement characters.
    pub fn decode(input: &[u8]) -> Result<Option<(Reply, usize)>, NotAReply> {
        let mut used = 0;
        let mut lines = Vec::new();
        let mut code: Option<u16> = None;
        while let Some(lf) = input
            .get(used..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            let raw = input.get(used..used + lf).unwrap_or_default();
            used += lf + 1;
            let Some(bytes) = raw.strip_suffix(b"\r") else {
                return Err(NotAReply::new(raw));
            };
            let line = String::from_utf8_lossy(bytes);
            match code {
                None => {
                    let c = bytes
                        .get(..3)
                        .filter(|d| d.iter().all(u8::is_ascii_digit))
                        .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u16>().ok())
                        .filter(|c| (100..600).contains(c))
                        .ok_or_else(|| NotAReply::new(bytes))?;
                    let text = line.get(4..).unwrap_or("").to_string();
                    match bytes.get(3) {
                        Some(b' ') | None => return Ok(Some((Reply::new(c, text), used))),
                        Some(b'-') => {
                            code = Some(c);
                            lines.push(text);
                        }
                        Some(_) => return Err(NotAReply::new(bytes)),
                    }
                }
                Some(c) => {
                    let end = format!("{c:03}");
                    if line == end || line.starts_with(&format!("{end} ")) {
                        lines.push(line.get(4..).unwrap_or("").to_string());
                        return Ok(Some((Reply { code: c, lines }, used)));
                    }
                    lines.push(line.into_owned());
                }
            }
        }
        Ok(None)
    }
}

/// Bytes on a control connection that cannot be an FTP reply (from [`Reply::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAReply {
    /// The offending line, without its line end, lossily decoded and cut to 80 characters.
    pub line: String,
}

impl NotAReply {
    fn new(raw: &[u8]) -> Self {
        Self {
            line: String::from_utf8_lossy(raw).chars().take(80).collect(),
        }
    }
}

impl fmt::Display for NotAReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an FTP reply: {:?}", self.line)
    }
}

impl std::error::Error for NotAReply {}

fn sanitize(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn starts_like_code(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit)
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" | "))
    }
}

/// Quote a path for a 257 reply: wrapped in double quotes, embedded quotes doubled (RFC 959 §7).
pub fn quote_path(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_single_and_multi_line_replies() {
        assert_eq!(Reply::new(200, "OK").render(), b"200 OK\r\n");
        let r = Reply::multi(211, "Features:", ["UTF8".to_string()], "End");
        assert_eq!(r.render(), b"211-Features:\r\n UTF8\r\n211 End\r\n");
    }

    #[test]
    fn a_file_name_cannot_inject_a_reply() {
        let r = Reply::new(550, "x\r\n230 Logged in");
        assert_eq!(r.render(), b"550 x  230 Logged in\r\n");
    }

    #[test]
    fn decode_reads_one_reply_and_tells_garbage_from_a_partial_reply() {
        let two = b"211-Features:\r\n UTF8\r\n211 End\r\n200 next\r\n";
        let (r, used) = Reply::decode(two).unwrap().unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.lines, ["Features:", " UTF8", "End"]);
        assert_eq!(&two[used..], b"200 next\r\n");
        assert_eq!(Reply::decode(b"211-Features:\r\n UTF8\r\n"), Ok(None));
        assert_eq!(Reply::decode(b"220"), Ok(None));
        let bad = |b: &[u8]| Reply::decode(b).unwrap_err().line;
        assert_eq!(bad(b"SSH-2.0-OpenSSH_9.6\r\n"), "SSH-2.0-OpenSSH_9.6");
        assert_eq!(bad(b"220 bare LF\n"), "220 bare LF");
        assert_eq!(bad(b"999 no such code\r\n"), "999 no such code");
        assert_eq!(bad(b"220x\r\n"), "220x");
        // Text in another encoding than UTF-8 is kept, and a later reply does not matter.
        let (r, _) = Reply::decode(b"550 caf\xe9: No such file\r\n\xff")
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, ["caf\u{fffd}: No such file"]);
    }

    #[test]
    fn quotes_paths_with_quotes() {
        assert_eq!(quote_path("/a \"b\""), "\"/a \"\"b\"\"\"");
    }

    proptest! {
        #[test]
        fn render_then_parse_round_trips(code in 100u16..600, lines in prop::collection::vec("[ -~]{0,40}", 1..5)) {
            let reply = Reply { code, lines: lines.clone() };
            let bytes = reply.render();
            let (parsed, used) = Reply::parse(&bytes).expect("complete reply");
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(parsed.code, code);
            prop_assert_eq!(parsed.lines.len(), lines.len());
            prop_assert_eq!(parsed.lines.first().map(|s| s.as_str()), lines.first().map(|s| s.as_str()));
        }

        #[test]
        fn decode_needs_more_bytes_for_any_cut_of_a_reply(code in 100u16..600, lines in prop::collection::vec("[ -~]{0,40}", 1..5), cut in 0usize..400) {
            let bytes = Reply { code, lines }.render();
            let cut = cut.min(bytes.len() - 1);
            prop_assert_eq!(Reply::decode(&bytes[..cut]), Ok(None));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Reply::parse(&bytes);
        }
    }
}
