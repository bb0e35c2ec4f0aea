use super::*;
use proptest::prelude::*;

fn p(s: &str) -> Result<Command, ParseError> {
    parse(s.as_bytes())
}

#[test]
fn verbs_are_case_insensitive_and_aliases_map() {
    assert_eq!(p("user bob"), Ok(Command::User("bob".into())));
    assert_eq!(p("XCWD /a"), Ok(Command::Cwd("/a".into())));
    assert_eq!(p("xpwd"), Ok(Command::Pwd));
    assert_eq!(p("XMKD d"), Ok(Command::Mkd("d".into())));
    assert_eq!(p("XRMD d"), Ok(Command::Rmd("d".into())));
    assert_eq!(p("XCUP"), Ok(Command::Cdup));
}

#[test]
fn paths_keep_spaces_and_utf8() {
    assert_eq!(
        p("RETR  my file .txt "),
        Ok(Command::Retr(" my file .txt ".into()))
    );
    assert_eq!(
        p("STOR héllo wörld.txt"),
        Ok(Command::Stor("héllo wörld.txt".into()))
    );
    assert!(matches!(
        parse(b"STOR \xff\xfe"),
        Err(ParseError::Syntax(_))
    ));
}

#[test]
fn types_modes_and_structures() {
    assert_eq!(p("TYPE A"), Ok(Command::Type(TransferType::Ascii)));
    assert_eq!(p("TYPE A N"), Ok(Command::Type(TransferType::Ascii)));
    assert_eq!(p("type i"), Ok(Command::Type(TransferType::Image)));
    assert_eq!(p("TYPE L 8"), Ok(Command::Type(TransferType::Image)));
    assert!(matches!(
        p("TYPE L 7"),
        Err(ParseError::UnsupportedParameter(_))
    ));
    assert!(matches!(
        p("TYPE E"),
        Err(ParseError::UnsupportedParameter(_))
    ));
    assert!(matches!(p("TYPE X"), Err(ParseError::Syntax(_))));
    assert!(matches!(p("TYPE"), Err(ParseError::Syntax(_))));
    assert_eq!(p("MODE S"), Ok(Command::Mode(TransferMode::Stream)));
    assert!(matches!(
        p("MODE B"),
        Err(ParseError::UnsupportedParameter(_))
    ));
    assert_eq!(p("STRU F"), Ok(Command::Stru(FileStructure::File)));
    assert!(matches!(
        p("STRU R"),
        Err(ParseError::UnsupportedParameter(_))
    ));
}

#[test]
fn list_options_are_dropped() {
    assert_eq!(p("LIST -la"), Ok(Command::List(None)));
    assert_eq!(
        p("LIST -a -l dir name"),
        Ok(Command::List(Some("dir name".into())))
    );
    assert_eq!(p("NLST ./-x"), Ok(Command::Nlst(Some("./-x".into()))));
    assert_eq!(p("LIST"), Ok(Command::List(None)));
}

#[test]
fn numeric_arguments_are_checked() {
    assert_eq!(p("REST 100"), Ok(Command::Rest(100)));
    assert!(matches!(p("REST -1"), Err(ParseError::Syntax(_))));
    assert!(matches!(
        p("REST 99999999999999999999"),
        Err(ParseError::Syntax(_))
    ));
    assert_eq!(p("EPSV"), Ok(Command::Epsv(EpsvArg::Any)));
    assert_eq!(p("EPSV all"), Ok(Command::Epsv(EpsvArg::All)));
    assert_eq!(p("EPSV 3"), Err(ParseError::UnsupportedProtocol));
    assert_eq!(
        p("SITE CHMOD 755 a b"),
        Ok(Command::Site(SiteCommand::Chmod(0o755, "a b".into())))
    );
    assert!(matches!(p("SITE CHMOD 9 a"), Err(ParseError::Syntax(_))));
}

#[test]
fn errors_map_to_the_right_codes() {
    assert_eq!(p("FOO").unwrap_err().to_reply().code, 500);
    assert_eq!(p("").unwrap_err().to_reply().code, 500);
    assert_eq!(p("SMNT x").unwrap_err().to_reply().code, 502);
    assert_eq!(p("CWD").unwrap_err().to_reply().code, 501);
    assert_eq!(p("MODE C").unwrap_err().to_reply().code, 504);
    assert_eq!(p("EPRT |9|x|1|").unwrap_err().to_reply().code, 522);
    assert_eq!(p("SITE EXEC ls").unwrap_err().to_reply().code, 500);
}

#[test]
fn opts_and_mlst_facts() {
    assert_eq!(
        p("OPTS UTF8 ON"),
        Ok(Command::Opts(OptsCommand::Utf8(true)))
    );
    let Ok(Command::Opts(OptsCommand::Mlst(f))) = p("OPTS MLST size;Type;bogus;") else {
        panic!("not parsed");
    };
    assert!(f.size && f.kind && !f.modify && !f.perm);
    assert_eq!(f.render(false), "type;size;");
    assert_eq!(
        MlstFacts::default().render(true),
        "type*;size*;modify*;perm*;unix.mode;"
    );
}

#[test]
fn mfmt_parses_time_and_path() {
    let Ok(Command::Mfmt(t, path)) = p("MFMT 20200102030405 a b.txt") else {
        panic!("not parsed");
    };
    assert_eq!(path, "a b.txt");
    assert_eq!(listing::format_timeval(t), "20200102030405");
    assert!(p("MFMT 2020 a").is_err());
}

proptest! {
    #[test]
    fn no_byte_sequence_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn no_verb_with_any_argument_panics(verb in prop::sample::select(VERBS), arg in "\\PC{0,80}") {
        let _ = parse(format!("{verb} {arg}").as_bytes());
    }

    #[test]
    fn path_arguments_round_trip(name in "[^\r\n\0]{1,60}") {
        prop_assume!(!name.is_empty());
        prop_assert_eq!(parse(format!("RETR {name}").as_bytes()), Ok(Command::Retr(name.clone())));
    }
}
