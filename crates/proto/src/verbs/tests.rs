use super::*;
use crate::command::{self, Command};
use crate::error::ParseError;
use proptest::prelude::*;

/// One command of every variant, so that a new variant without a verb fails to compile here
/// (the match in `every_command_variant`) and is then checked against the table.
fn one_of_each() -> Vec<Command> {
    use crate::command::*;
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    let v4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2121);
    vec![
        Command::User("u".into()),
        Command::Pass("p".into()),
        Command::Acct("a".into()),
        Command::Quit,
        Command::Rein,
        Command::Cwd("d".into()),
        Command::Cdup,
        Command::Pwd,
        Command::Mkd("d".into()),
        Command::Rmd("d".into()),
        Command::Dele("f".into()),
        Command::Rnfr("f".into()),
        Command::Rnto("g".into()),
        Command::Type(TransferType::Image),
        Command::Mode(TransferMode::Stream),
        Command::Stru(FileStructure::File),
        Command::Pasv,
        Command::Epsv(EpsvArg::Any),
        Command::Port(v4),
        Command::Eprt(SocketAddr::V4(v4)),
        Command::List(None),
        Command::Nlst(None),
        Command::Mlsd(None),
        Command::Mlst(None),
        Command::Retr("f".into()),
        Command::Stor("f".into()),
        Command::Stou(None),
        Command::Appe("f".into()),
        Command::Rest(1),
        Command::Abor,
        Command::Size("f".into()),
        Command::Mdtm("f".into()),
        Command::Mfmt(std::time::UNIX_EPOCH, "f".into()),
        Command::Feat,
        Command::Opts(OptsCommand::Utf8(true)),
        Command::Syst,
        Command::Stat(None),
        Command::Help(None),
        Command::Noop,
        Command::Allo,
        Command::Site(SiteCommand::Help),
        Command::Auth("TLS".into()),
        Command::Pbsz(0),
        Command::Prot(ProtLevel::Private),
        Command::Ccc,
    ]
}

/// Exhaustive on purpose: a new `Command` variant must be added to [`one_of_each`] too.
fn every_command_variant(cmd: &Command) {
    match cmd {
        Command::User(_)
        | Command::Pass(_)
        | Command::Acct(_)
        | Command::Quit
        | Command::Rein
        | Command::Cwd(_)
        | Command::Cdup
        | Command::Pwd
        | Command::Mkd(_)
        | Command::Rmd(_)
        | Command::Dele(_)
        | Command::Rnfr(_)
        | Command::Rnto(_)
        | Command::Type(_)
        | Command::Mode(_)
        | Command::Stru(_)
        | Command::Pasv
        | Command::Epsv(_)
        | Command::Port(_)
        | Command::Eprt(_)
        | Command::List(_)
        | Command::Nlst(_)
        | Command::Mlsd(_)
        | Command::Mlst(_)
        | Command::Retr(_)
        | Command::Stor(_)
        | Command::Stou(_)
        | Command::Appe(_)
        | Command::Rest(_)
        | Command::Abor
        | Command::Size(_)
        | Command::Mdtm(_)
        | Command::Mfmt(..)
        | Command::Feat
        | Command::Opts(_)
        | Command::Syst
        | Command::Stat(_)
        | Command::Help(_)
        | Command::Noop
        | Command::Allo
        | Command::Site(_)
        | Command::Auth(_)
        | Command::Pbsz(_)
        | Command::Prot(_)
        | Command::Ccc => {}
    }
}

#[test]
fn every_verb_round_trips_through_its_name_and_aliases() {
    for &verb in Verb::ALL {
        let info = verb.info();
        assert_eq!(info.verb, verb);
        assert_eq!(verb.name(), info.name);
        assert_eq!(verb.to_string(), info.name);
        assert_eq!(Verb::from_name(verb.name()), Some(verb));
        assert_eq!(
            Verb::from_name(&verb.name().to_ascii_lowercase()),
            Some(verb)
        );
        for alias in info.aliases {
            assert_eq!(Verb::from_name(alias), Some(verb), "alias {alias}");
        }
        assert!(
            info.syntax.starts_with(info.name),
            "{verb}: syntax {:?} does not start with the verb",
            info.syntax
        );
    }
    assert_eq!(Verb::from_name("SMNT"), None);
    assert_eq!(Verb::from_name(""), None);
    assert_eq!(Verb::from_name("RETRX"), None);
    assert_eq!(Verb::from_name("CWDCWDCWD"), None);
    // Packed keys pad with zeros: a NUL or other non-letter must not complete a shorter name.
    assert_eq!(Verb::from_bytes(b"CWD\0"), None);
    assert_eq!(Verb::from_bytes(b"CW"), None);
    assert_eq!(Verb::from_bytes(b"pWd"), Some(Verb::Pwd));
    assert_eq!(Verb::from_bytes("RETR".as_bytes()), Some(Verb::Retr));
}

#[test]
fn the_table_is_in_alphabetical_order_without_duplicates() {
    let names: Vec<&str> = Verb::ALL.iter().map(|v| v.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
    let mut all: Vec<&str> = NAMES.to_vec();
    all.dedup();
    assert_eq!(all.len(), NAME_COUNT, "a name or alias is given twice");
    for n in NOT_IMPLEMENTED {
        assert!(!NAMES.contains(n), "{n} is both implemented and not");
    }
}

#[test]
fn help_lists_every_name_and_alias_ten_to_a_line() {
    let help = help_reply(None);
    assert_eq!(help.code, 214);
    let listed: Vec<&str> = help.lines[1..help.lines.len() - 1]
        .iter()
        .flat_map(|l| l.split_whitespace())
        .collect();
    let mut expected: Vec<&str> = Verb::ALL
        .iter()
        .flat_map(|v| std::iter::once(v.name()).chain(v.info().aliases.iter().copied()))
        .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert_eq!(help.lines.len(), 2 + NAME_COUNT.div_ceil(10));
    for &verb in Verb::ALL {
        assert_eq!(help_reply(Some(verb.name())).code, 214, "HELP {verb}");
    }
    assert_eq!(help_reply(Some("XCWD")).code, 214);
    assert_eq!(help_reply(Some("SMNT")).code, 502);
    assert_eq!(help_reply(Some("")).code, 502);
}

/// The HELP reply as the server sent it before the table existed, byte for byte.
#[test]
fn help_text_is_unchanged() {
    let help = String::from_utf8(help_reply(None).render()).unwrap_or_default();
    assert_eq!(
        help,
        "214-The following commands are recognized:\r\n \
         ABOR ACCT ALLO APPE AUTH CCC CDUP CWD DELE EPRT\r\n \
         EPSV FEAT HELP LIST MDTM MFMT MKD MLSD MLST MODE\r\n \
         NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT\r\n \
         REIN REST RETR RMD RNFR RNTO SITE SIZE STAT STOR\r\n \
         STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD\r\n\
         214 Help OK\r\n"
    );
    assert_eq!(
        help_reply(Some("RETR")).render(),
        b"214 RETR is supported; see RFC 959, 2389, 2428 and 3659\r\n"
    );
    assert_eq!(
        help_reply(Some("FOO")).render(),
        b"502 Unknown command FOO\r\n"
    );
}

#[test]
fn feat_lists_exactly_the_feature_verbs() {
    let mlst = MlstFacts::default();
    for tls in [TlsOffer::None, TlsOffer::Explicit, TlsOffer::Implicit] {
        let lines = features(mlst, tls);
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "FEAT is sorted");
        for &verb in Verb::ALL {
            let announced = lines.iter().any(|l| match verb.info().feature {
                Feature::None => false,
                Feature::Always(s) | Feature::WithAuth(s) | Feature::WithTls(s) => l == s,
                Feature::MlstFacts => l.starts_with("MLST "),
            });
            let expected = match verb.info().feature {
                Feature::None => false,
                Feature::Always(_) | Feature::MlstFacts => true,
                Feature::WithAuth(_) => tls == TlsOffer::Explicit,
                Feature::WithTls(_) => tls != TlsOffer::None,
            };
            assert_eq!(announced, expected, "{verb} in FEAT with {tls:?}");
        }
        let from_verbs = Verb::ALL
            .iter()
            .filter(|v| v.feat_line(mlst, tls).is_some())
            .count();
        assert_eq!(lines.len(), from_verbs + SERVER_FEATURES.len());
    }
}

/// The FEAT reply as the server sent it before the table existed, byte for byte.
#[test]
fn feat_text_is_unchanged() {
    let feat =
        |tls| String::from_utf8(feat_reply(MlstFacts::default(), tls).render()).unwrap_or_default();
    let common = [
        "EPRT",
        "EPSV",
        "MDTM",
        "MFMT",
        "MLST type*;size*;modify*;perm*;unix.mode;",
        "PASV",
    ];
    let tail = ["REST STREAM", "SIZE", "TVFS", "UTF8"];
    let render = |lines: Vec<&str>| {
        let mut s = String::from("211-Features:\r\n");
        for l in lines {
            s.push_str(&format!(" {l}\r\n"));
        }
        s.push_str("211 End\r\n");
        s
    };
    let plain: Vec<&str> = common.iter().chain(&tail).copied().collect();
    assert_eq!(feat(TlsOffer::None), render(plain));
    let mut explicit = vec!["AUTH TLS"];
    explicit.extend(common);
    explicit.extend(["PBSZ", "PROT"]);
    explicit.extend(tail);
    assert_eq!(feat(TlsOffer::Explicit), render(explicit));
    let mut implicit: Vec<&str> = common.to_vec();
    implicit.extend(["PBSZ", "PROT"]);
    implicit.extend(tail);
    assert_eq!(feat(TlsOffer::Implicit), render(implicit));
    let only_size = MlstFacts::parse("size");
    assert!(
        features(only_size, TlsOffer::None)
            .contains(&"MLST type;size*;modify;perm;unix.mode;".to_owned())
    );
}

#[test]
fn every_command_maps_to_its_verb_and_back() {
    let all = one_of_each();
    let mut seen: Vec<Verb> = Vec::new();
    for cmd in &all {
        every_command_variant(cmd);
        let verb = cmd.verb();
        seen.push(verb);
        // What the session would receive for this verb parses to a command of the same verb.
        let line = match cmd {
            Command::Port(_) => "PORT 127,0,0,1,8,77".to_owned(),
            Command::Eprt(_) => "EPRT |1|127.0.0.1|2121|".to_owned(),
            Command::Mfmt(..) => "MFMT 19700101000000 f".to_owned(),
            Command::Type(_) => "TYPE I".to_owned(),
            Command::Mode(_) => "MODE S".to_owned(),
            Command::Stru(_) => "STRU F".to_owned(),
            Command::Prot(_) => "PROT P".to_owned(),
            Command::Opts(_) => "OPTS UTF8 ON".to_owned(),
            Command::Rest(_) | Command::Pbsz(_) => format!("{verb} 1"),
            Command::Auth(_) => "AUTH TLS".to_owned(),
            Command::Epsv(_) => "EPSV 2".to_owned(),
            Command::Site(_) => "SITE HELP".to_owned(),
            _ => format!("{verb} x"),
        };
        let line = match cmd {
            Command::Rein | Command::Feat | Command::Syst | Command::Ccc => verb.name().to_owned(),
            _ => line,
        };
        assert_eq!(
            command::parse(line.as_bytes()).map(|c| c.verb()),
            Ok(verb),
            "{line}"
        );
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        Verb::ALL,
        "a verb no command carries, or one carried twice"
    );
}

#[test]
fn before_login_rules_come_from_the_table() {
    let allowed: Vec<Verb> = Verb::ALL
        .iter()
        .copied()
        .filter(|v| v.before_login() == BeforeLogin::Allowed)
        .collect();
    use Verb::*;
    assert_eq!(
        allowed,
        [
            Abor, Acct, Auth, Ccc, Feat, Help, Noop, Opts, Pass, Pbsz, Prot, Quit, Rein, Syst, User
        ]
    );
    assert!(Command::Stat(None).allowed_before_login());
    assert!(!Command::Stat(Some("/".into())).allowed_before_login());
    assert!(Command::Help(Some("RETR".into())).allowed_before_login());
    assert!(!Command::List(None).allowed_before_login());
    assert!(!Command::Retr("x".into()).allowed_before_login());
    assert!(!Command::Pasv.allowed_before_login());
}

#[test]
fn every_verb_has_a_group() {
    use Group::*;
    for (verb, group) in [
        (Verb::User, Access),
        (Verb::Cwd, Navigation),
        (Verb::Retr, Transfer),
        (Verb::Rnfr, FileOps),
        (Verb::Prot, Security),
        (Verb::Feat, Information),
    ] {
        assert_eq!(verb.group(), group, "{verb}");
    }
}

proptest! {
    /// Any letter case of any verb name or alias picks that verb: the reply is the verb's or an
    /// argument error, never "unknown command".
    #[test]
    fn any_case_of_a_verb_name_picks_that_verb(
        name in prop::sample::select(NAMES.to_vec()),
        mask in any::<u8>(),
        arg in prop::option::of("\\PC{0,40}"),
    ) {
        let cased: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| if mask & (1 << (i % 8)) != 0 { c.to_ascii_lowercase() } else { c })
            .collect();
        let line = match &arg {
            Some(a) => format!("{cased} {a}"),
            None => cased.clone(),
        };
        let verb = Verb::from_name(&cased);
        prop_assert_eq!(verb, Verb::from_name(name));
        prop_assert!(verb.is_some());
        match command::parse(line.as_bytes()) {
            Ok(cmd) => prop_assert_eq!(Some(cmd.verb()), verb),
            // SITE's unknown subcommands are "unknown commands" of their own ("SITE EXEC").
            Err(ParseError::Unknown(sub)) if verb == Some(Verb::Site) => {
                prop_assert!(sub.starts_with("SITE "), "{} gave {:?}", line, sub);
            }
            Err(e) => prop_assert!(
                !matches!(e, ParseError::Unknown(_) | ParseError::NotImplemented(_) | ParseError::Empty),
                "{} gave {:?}", line, e
            ),
        }
    }
}
