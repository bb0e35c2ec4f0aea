//! Control-connection input, byte by byte: framing (`line::take_line`), the command parser
//! (`command::parse`), error replies (`ParseError::to_reply`, `Reply::render`) and the address
//! and time codecs the parser uses, plus the client-side `Reply::parse`.
//!
//! Input: the first byte picks the line-length limit, the rest is what a client sends.
#![no_main]

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferroftp_proto::command;
use ferroftp_proto::line::{self, LineTooLong};
use ferroftp_proto::verbs::{self, TlsOffer};
use ferroftp_proto::{
    Command, EpsvArg, MlstFacts, OptsCommand, ParseError, ProtLevel, Reply, SiteCommand,
    TransferType, Verb, addr, listing,
};
use libfuzzer_sys::fuzz_target;

mod coverage;

mod common;
use common::known_issue;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, stream)) = data.split_first() else {
        return;
    };
    // Mostly small limits, so that the boundary is hit often; 255 means the server's default.
    let max_len = if limit == 255 {
        4096
    } else {
        usize::from(limit)
    };
    check_framing_and_commands(stream, max_len);
    check_client_side_parsers(stream);
});

/// Feed `stream` to `take_line` as the server does, and check every line it yields against a
/// straightforward model of the framing rules; then parse each line.
fn check_framing_and_commands(stream: &[u8], max_len: usize) {
    let mut buf = stream.to_vec();
    loop {
        let before = buf.clone();
        match line::take_line(&mut buf, max_len) {
            Ok(Some(line)) => {
                let lf = before
                    .iter()
                    .position(|&b| b == b'\n')
                    .expect("a line was taken without a LF in the buffer");
                assert!(
                    lf < max_len,
                    "line of {} bytes over the limit {max_len}",
                    lf + 1
                );
                assert_eq!(buf, before[lf + 1..], "take_line consumed the wrong bytes");
                let mut raw = &before[..lf];
                if raw.last() == Some(&b'\r') {
                    raw = &raw[..raw.len() - 1];
                }
                assert_eq!(
                    line,
                    line::strip_telnet(raw),
                    "line differs from its raw bytes"
                );
                assert!(!line.contains(&b'\n'), "a line holds a LF");
                if !raw.contains(&0xFF) {
                    assert_eq!(line, raw, "no IAC, but the line was changed");
                }
                assert!(line.len() <= raw.len());
                check_command(&line);
            }
            Ok(None) => {
                assert_eq!(buf, before, "take_line consumed bytes without a line");
                assert!(
                    !buf.contains(&b'\n'),
                    "a complete line was left in the buffer"
                );
                assert!(
                    buf.len() < max_len,
                    "an over-long partial line was accepted"
                );
                return;
            }
            Err(LineTooLong { limit }) => {
                assert_eq!(limit, max_len);
                assert_eq!(buf, before, "take_line consumed bytes on error");
                let too_long = match buf.iter().position(|&b| b == b'\n') {
                    Some(lf) => lf >= max_len,
                    None => buf.len() >= max_len,
                };
                assert!(too_long, "LineTooLong for a line within the limit");
                return;
            }
        }
    }
}

/// Parse one line; an error must become a well-formed reply, a command must survive being
/// written back out as a control line and parsed again.
fn check_command(line: &[u8]) {
    match command::parse(line) {
        Err(e) => {
            check_known_verb_error(&e, line);
            let reply = e.to_reply();
            assert!(
                (400..600).contains(&reply.code),
                "parse error {e:?} maps to non-error code {}",
                reply.code
            );
            check_rendered(&reply);
        }
        Ok(cmd) => {
            check_command_invariants(&cmd, line);
            if let Command::Mfmt(t, _) = &cmd {
                if pre_epoch_fraction(*t) && known_issue("timeval-pre-epoch") {
                    return; // cannot be written back exactly (see check_timeval)
                }
            }
            let again = render_command(&cmd);
            match command::parse(again.as_bytes()) {
                Ok(back) => assert_eq!(
                    back, cmd,
                    "parse(render(cmd)) != cmd; line {line:?}, rendered {again:?}"
                ),
                Err(e) => panic!("rendered {cmd:?} as {again:?}, which does not parse: {e:?}"),
            }
        }
    }
}

/// The verb part of a control line: everything before the first space.
fn verb_of(line: &[u8]) -> &[u8] {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    &line[..verb_end]
}

/// A line whose verb is in the table is never an unknown command (SITE's unknown subcommands
/// are their own "unknown command").
fn check_known_verb_error(e: &ParseError, line: &[u8]) {
    let Some(verb) = Verb::from_bytes(verb_of(line)) else {
        return;
    };
    match e {
        ParseError::Unknown(sub) if verb == Verb::Site => {
            assert!(sub.starts_with("SITE "), "{line:?}: {e:?}")
        }
        ParseError::Unknown(_) | ParseError::NotImplemented(_) | ParseError::Empty => {
            panic!("{line:?} names {verb}, but parsed as {e:?}")
        }
        _ => {}
    }
}

fn check_command_invariants(cmd: &Command, line: &[u8]) {
    // The table's verb for the line's verb is the command's verb, and its rules answer.
    let verb = Verb::from_bytes(verb_of(line));
    assert_eq!(
        verb,
        Some(cmd.verb()),
        "{line:?} parsed to {cmd:?}, whose verb differs"
    );
    let _ = cmd.allowed_before_login();
    match cmd {
        Command::Port(a) => {
            assert_eq!(addr::parse_port(&addr::format_port(*a)), Ok(*a));
            assert_eq!(addr::parse_pasv_reply(&addr::pasv_reply_text(*a)), Some(*a));
        }
        Command::Eprt(a) => {
            assert_ne!(a.port(), 0, "EPRT accepted port 0");
            assert_eq!(addr::parse_eprt(&addr::format_eprt(*a)), Ok(*a));
        }
        Command::Mfmt(t, path) => {
            assert!(!path.is_empty());
            check_timeval(*t);
        }
        // The client's topic goes into the HELP reply, which must stay one reply.
        Command::Help(topic) => check_rendered(&verbs::help_reply(topic.as_deref())),
        Command::Opts(OptsCommand::Mlst(facts)) => {
            check_rendered(&verbs::feat_reply(*facts, TlsOffer::Explicit));
            assert_eq!(MlstFacts::parse(&facts.render(false)), *facts);
            assert_eq!(
                MlstFacts::parse(&facts.render(true).replace('*', "")).kind,
                true
            );
        }
        Command::Cwd(p)
        | Command::Mkd(p)
        | Command::Rmd(p)
        | Command::Dele(p)
        | Command::Rnfr(p)
        | Command::Rnto(p)
        | Command::Retr(p)
        | Command::Stor(p)
        | Command::Appe(p)
        | Command::Size(p)
        | Command::Mdtm(p) => assert!(!p.is_empty(), "{cmd:?} with an empty path"),
        _ => {}
    }
}

/// MFMT times are written back by MDTM and MLSx `modify=`: whole seconds, rounded down.
fn check_timeval(t: SystemTime) {
    let text = listing::format_timeval(t);
    assert_eq!(text.len(), 14, "time-val {text:?} is not YYYYMMDDHHMMSS");
    let back = listing::parse_timeval(&text).expect("format_timeval output does not parse");
    let floor = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            UNIX_EPOCH - Duration::from_secs(whole)
        }
    };
    if back != floor && pre_epoch_fraction(t) && known_issue("timeval-pre-epoch") {
        // Known: before 1970 the fraction is cut toward zero, one second late.
        assert_eq!(back, floor + Duration::from_secs(1));
        return;
    }
    assert_eq!(
        back, floor,
        "format_timeval({t:?}) = {text}, which is not the time rounded down to the second"
    );
}

/// Before 1970 and not on a whole second.
fn pre_epoch_fraction(t: SystemTime) -> bool {
    t.duration_since(UNIX_EPOCH)
        .is_err_and(|e| e.duration().subsec_nanos() != 0)
}

/// Write a command as a client would send it (the inverse of `command::parse`).
fn render_command(cmd: &Command) -> String {
    // An argument that is empty after trimming still has to be present for some verbs.
    let nonempty = |s: &str| {
        if s.is_empty() {
            " ".to_owned()
        } else {
            s.to_owned()
        }
    };
    match cmd {
        Command::User(s) => format!("USER {s}"),
        Command::Pass(s) => format!("PASS {s}"),
        Command::Acct(s) => format!("ACCT {s}"),
        Command::Quit => "QUIT".into(),
        Command::Rein => "REIN".into(),
        Command::Cwd(p) => format!("CWD {p}"),
        Command::Cdup => "CDUP".into(),
        Command::Pwd => "PWD".into(),
        Command::Mkd(p) => format!("MKD {p}"),
        Command::Rmd(p) => format!("RMD {p}"),
        Command::Dele(p) => format!("DELE {p}"),
        Command::Rnfr(p) => format!("RNFR {p}"),
        Command::Rnto(p) => format!("RNTO {p}"),
        Command::Type(TransferType::Ascii) => "TYPE A".into(),
        Command::Type(TransferType::Image) => "TYPE I".into(),
        Command::Mode(_) => "MODE S".into(),
        Command::Stru(_) => "STRU F".into(),
        Command::Pasv => "PASV".into(),
        Command::Epsv(EpsvArg::Any) => "EPSV".into(),
        Command::Epsv(EpsvArg::All) => "EPSV ALL".into(),
        Command::Epsv(EpsvArg::Protocol(n)) => format!("EPSV {n}"),
        Command::Port(a) => format!("PORT {}", addr::format_port(*a)),
        Command::Eprt(a) => format!("EPRT {}", addr::format_eprt(*a)),
        Command::List(p) => format!("LIST {}", p.as_deref().unwrap_or("")),
        Command::Nlst(p) => format!("NLST {}", p.as_deref().unwrap_or("")),
        Command::Mlsd(p) => format!("MLSD {}", p.as_deref().unwrap_or("")),
        Command::Mlst(p) => format!("MLST {}", p.as_deref().unwrap_or("")),
        Command::Retr(p) => format!("RETR {p}"),
        Command::Stor(p) => format!("STOR {p}"),
        Command::Stou(p) => format!("STOU {}", p.as_deref().unwrap_or("")),
        Command::Appe(p) => format!("APPE {p}"),
        Command::Rest(n) => format!("REST {n}"),
        Command::Abor => "ABOR".into(),
        Command::Size(p) => format!("SIZE {p}"),
        Command::Mdtm(p) => format!("MDTM {p}"),
        Command::Mfmt(t, p) => {
            let nanos = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_else(|e| (1_000_000_000 - e.duration().subsec_nanos()) % 1_000_000_000);
            let frac = if nanos == 0 {
                String::new()
            } else {
                format!(".{nanos:09}")
            };
            format!("MFMT {}{frac} {p}", listing::format_timeval(*t))
        }
        Command::Feat => "FEAT".into(),
        Command::Opts(OptsCommand::Utf8(on)) => {
            format!("OPTS UTF8 {}", if *on { "ON" } else { "OFF" })
        }
        Command::Opts(OptsCommand::Mlst(f)) => format!("OPTS MLST {}", f.render(false)),
        Command::Syst => "SYST".into(),
        Command::Stat(p) => format!("STAT {}", p.as_deref().unwrap_or("")),
        Command::Help(t) => match t {
            Some(t) => format!("HELP {}", nonempty(t)),
            None => "HELP".into(),
        },
        Command::Noop => "NOOP".into(),
        Command::Allo => "ALLO".into(),
        Command::Site(SiteCommand::Help) => "SITE HELP".into(),
        Command::Site(SiteCommand::Chmod(mode, p)) => format!("SITE CHMOD {mode:o} {p}"),
        Command::Auth(m) => format!("AUTH {}", nonempty(m)),
        Command::Pbsz(n) => format!("PBSZ {n}"),
        Command::Prot(level) => format!(
            "PROT {}",
            match level {
                ProtLevel::Clear => "C",
                ProtLevel::Safe => "S",
                ProtLevel::Confidential => "E",
                ProtLevel::Private => "P",
            }
        ),
        Command::Ccc => "CCC".into(),
    }
}

/// A rendered reply: CRLF-terminated lines, the first and last `DDD-`/`DDD ` with the reply's
/// code, no CR or LF inside a line, and no middle line that a client would take for the end.
fn check_rendered(reply: &Reply) {
    let bytes = reply.render();
    assert!(
        bytes.ends_with(b"\r\n"),
        "reply does not end in CRLF: {bytes:?}"
    );
    let text = &bytes[..bytes.len() - 2];
    let lines: Vec<&[u8]> = split_crlf(text);
    let code = format!("{:03}", reply.code);
    assert_eq!(
        code.len(),
        3,
        "reply code {} is not three digits",
        reply.code
    );
    for (i, l) in lines.iter().enumerate() {
        assert!(
            !l.contains(&b'\r') && !l.contains(&b'\n'),
            "bare CR or LF inside reply line {l:?}"
        );
        let first = i == 0;
        let last = i + 1 == lines.len();
        if first || last {
            assert!(
                l.starts_with(code.as_bytes()),
                "reply line {l:?} lacks code {code}"
            );
            let sep = l.get(3).copied();
            let want = if last { b' ' } else { b'-' };
            assert_eq!(sep, Some(want), "reply line {l:?}: wrong separator");
        } else {
            assert!(
                !(l.len() >= 3 && l[..3].iter().all(u8::is_ascii_digit)),
                "middle line {l:?} starts like a reply code"
            );
        }
    }
    let (parsed, used) = Reply::parse(&bytes).expect("a rendered reply does not parse");
    assert_eq!(used, bytes.len());
    assert_eq!(parsed.code, reply.code);
}

fn split_crlf(mut text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some(i) = text.windows(2).position(|w| w == b"\r\n") {
        out.push(&text[..i]);
        text = &text[i + 2..];
    }
    out.push(text);
    out
}

/// The parsers a client uses (and the server's own PORT/EPRT parsers) on arbitrary text.
fn check_client_side_parsers(stream: &[u8]) {
    if let Some((reply, used)) = Reply::parse(stream) {
        assert!(used > 0 && used <= stream.len());
        assert!(stream[..used].ends_with(b"\r\n"));
        assert!(
            reply.code < 1000,
            "Reply::parse code {} from {stream:?}",
            reply.code
        );
        assert!(!reply.lines.is_empty());
    }
    let text = String::from_utf8_lossy(stream);
    if let Ok(a) = addr::parse_port(&text) {
        round_trip_port(a);
    }
    if let Some(a) = addr::parse_pasv_reply(&text) {
        round_trip_port(a);
    }
    match addr::parse_eprt(&text) {
        Ok(a) => {
            assert_ne!(a.port(), 0);
            assert_eq!(addr::parse_eprt(&addr::format_eprt(a)), Ok(a));
            assert!(matches!(addr::protocol_number(a.ip()), 1 | 2));
        }
        Err(e) => check_rendered(&e.to_reply()),
    }
    if let Some(t) = listing::parse_timeval(&text) {
        check_timeval(t);
    }
    // Replies built from client text (file names in 550s, the 257 of MKD) must stay one reply.
    let name = text.into_owned();
    check_rendered(&Reply::new(
        550,
        format!("{name}: No such file or directory"),
    ));
    check_rendered(&Reply::new(
        257,
        format!("{} created", ferroftp_proto::reply::quote_path(&name)),
    ));
    check_rendered(&Reply::multi(
        211,
        "Status",
        name.split('\n').map(str::to_owned),
        "End",
    ));
}

fn round_trip_port(a: SocketAddrV4) {
    assert_eq!(addr::parse_port(&addr::format_port(a)), Ok(a));
    assert_eq!(addr::parse_pasv_reply(&addr::pasv_reply_text(a)), Some(a));
    let _ = SocketAddr::V4(a);
}
