//! TYPE A (RFC 959 §3.1.1.1): text goes over the wire with CRLF line ends. Files are stored
//! with Unix LF ends, so downloads turn a bare LF into CRLF and uploads turn CRLF into LF.
//! Both directions work chunk by chunk and carry one byte of state across chunk boundaries.

/// Converts stored text to network text: every LF not already preceded by CR becomes CRLF.
#[derive(Debug, Default, Clone)]
pub struct ToNetwork {
    last_was_cr: bool,
}

impl ToNetwork {
    /// Convert one chunk, appending to `out`.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16);
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_was_cr = b == b'\r';
        }
    }
}

/// Converts network text to stored text: CRLF becomes LF; a CR not followed by LF is kept.
#[derive(Debug, Default, Clone)]
pub struct FromNetwork {
    pending_cr: bool,
}

impl FromNetwork {
    /// Convert one chunk, appending to `out`.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Flush a CR that ended the last chunk (at the end of the transfer).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// The size of `input` as TYPE A would send it.
pub fn network_size(input: &[u8], last_was_cr: &mut bool) -> u64 {
    let mut n = 0u64;
    for &b in input {
        n += 1;
        if b == b'\n' && !*last_was_cr {
            n += 1;
        }
        *last_was_cr = b == b'\r';
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_net(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = ToNetwork::default();
        let mut out = Vec::new();
        for ch in chunks {
            c.convert(ch, &mut out);
        }
        out
    }

    #[test]
    fn converts_both_ways_across_chunk_boundaries() {
        assert_eq!(to_net(&[b"a\nb\r\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_net(&[b"a\r", b"\nb"]), b"a\r\nb");
        let mut c = FromNetwork::default();
        let mut out = Vec::new();
        c.convert(b"a\r", &mut out);
        c.convert(b"\nb\rc\r", &mut out);
        c.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\r");
    }

    proptest! {
        #[test]
        fn text_without_cr_round_trips(text in prop::collection::vec(any::<u8>().prop_filter("no CR", |b| *b != b'\r'), 0..500), split in 0usize..500) {
            let split = split.min(text.len());
            let net = to_net(&[&text[..split], &text[split..]]);
            let mut last = false;
            prop_assert_eq!(network_size(&text, &mut last), net.len() as u64);
            let mut back = Vec::new();
            let mut c = FromNetwork::default();
            let cut = split.min(net.len());
            c.convert(&net[..cut], &mut back);
            c.convert(&net[cut..], &mut back);
            c.finish(&mut back);
            prop_assert_eq!(back, text);
        }
    }
}
