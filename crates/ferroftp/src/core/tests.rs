//! Unit and property tests of the core, without sockets: commands and events in, replies and
//! effects out.

use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use ferroftp_proto::{Reply, command};
use proptest::prelude::*;

use super::*;
use crate::storage::{Entry, EntryKind};

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 21))
}

fn new_session(settings: Settings, t: Instant) -> Session {
    Session::new(settings, peer(), local(), t)
}

fn account(name: &str) -> Account {
    Account {
        name: name.to_owned(),
        perms: Permissions::ALL,
        tls_policy: TlsPolicy::Optional,
    }
}

fn entry(kind: EntryKind) -> Entry {
    Entry {
        name: "x".into(),
        kind,
        size: 10,
        modified: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        mode: 0o644,
        nlink: 1,
    }
}

/// A driver for tests: carries out every effect successfully and collects what the core said.
struct Sim {
    s: Session,
    t: Instant,
    replies: Vec<Reply>,
    effects: Vec<String>,
    /// Whether a started transfer keeps running (else it ends at once, complete).
    hold_transfers: bool,
    /// What the storage of the home opened at login can do.
    storage: Capabilities,
}

impl Sim {
    fn new(settings: Settings) -> Self {
        let t = Instant::now();
        Self {
            s: new_session(settings, t),
            t,
            replies: Vec::new(),
            effects: Vec::new(),
            hold_transfers: false,
            storage: Capabilities::ALL,
        }
    }

    /// A logged-in session with every permission.
    fn logged_in() -> Self {
        let mut sim = Self::new(Settings::plain());
        sim.cmd("USER alice");
        sim.cmd("PASS secret");
        assert_eq!(sim.s.user(), Some("alice"));
        sim
    }

    /// Run one command line; the replies it got (until no effect is left).
    fn cmd(&mut self, line: &str) -> Vec<Reply> {
        let out = self.s.command(command::parse(line.as_bytes()), self.t);
        self.drive(out)
    }

    fn event(&mut self, e: Event) -> Vec<Reply> {
        let out = self.s.event(e, self.t);
        self.drive(out)
    }

    fn drive(&mut self, mut out: Output) -> Vec<Reply> {
        let mut got = Vec::new();
        loop {
            got.extend(out.replies.drain());
            let Some(effect) = out.effect.take() else {
                break;
            };
            self.effects.push(format!("{effect:?}"));
            let event = match effect {
                Effect::CheckCertificate { .. } => Event::Certificate(None),
                Effect::VerifyPassword { name, .. } => Event::PasswordAccepted(account(&name)),
                Effect::OpenHome { .. } => Event::HomeOpened(Some(self.storage)),
                Effect::PrepareTls(_) => Event::TlsReady,
                Effect::Handshake(_) => Event::TlsEstablished(TlsVersion::V1_3),
                Effect::OpenPassive(_) => Event::PassiveOpened {
                    local_port: 50000,
                    port: 50000,
                    pasv: Some("127.0.0.1:50000".parse().unwrap()),
                },
                Effect::Storage(StorageOp::Metadata(_)) => {
                    Event::Storage(Ok(StorageDone::Entry(entry(EntryKind::Dir))))
                }
                Effect::Storage(StorageOp::AsciiSize(_)) => {
                    Event::Storage(Ok(StorageDone::Size(12)))
                }
                Effect::Storage(StorageOp::StatListing { .. }) => {
                    Event::Storage(Ok(StorageDone::Reply(Reply::new(213, "listing"))))
                }
                Effect::Storage(_) => Event::Storage(Ok(StorageDone::Done)),
                Effect::PrepareTransfer(_, src) => {
                    let (path, total) = match src {
                        TransferSource::Read { path, offset } => {
                            (path, Some(100 - offset.min(100)))
                        }
                        TransferSource::Write { path, .. } => (path, None),
                        TransferSource::Unique { dir, hint } => (dir.join(&hint).unwrap(), None),
                        TransferSource::Listing { cwd, .. } => (cwd, None),
                    };
                    Event::TransferPrepared { total, path }
                }
                Effect::StartTransfer { .. } if self.hold_transfers => break,
                Effect::StartTransfer { .. } => Event::TransferEnded(TransferEnd::Complete),
                Effect::DiscardTransfer | Effect::AbortTransfer | Effect::Close(_) => break,
                Effect::TransferStatus => Event::TransferProgress {
                    bytes: 5,
                    now: self.t,
                },
            };
            out = self.s.event(event, self.t);
        }
        self.replies.extend(got.iter().cloned());
        got
    }
}

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

fn text(r: &Reply) -> String {
    r.lines.join("\n")
}

// ---- login ----

#[test]
fn pass_before_user_is_refused_and_a_right_password_logs_in() {
    let mut sim = Sim::new(Settings::plain());
    assert_eq!(codes(&sim.cmd("PASS x")), [503]);
    assert_eq!(codes(&sim.cmd("USER alice")), [331]);
    assert_eq!(sim.s.login(), &LoginState::UserGiven("alice".into()));
    assert_eq!(codes(&sim.cmd("PASS secret")), [230]);
    assert!(sim.effects.iter().any(|e| e.starts_with("VerifyPassword")));
    assert!(sim.effects.iter().any(|e| e.starts_with("OpenHome")));
    assert_eq!(sim.s.user(), Some("alice"));
}

#[test]
fn wrong_passwords_answer_530_until_the_limit_then_421() {
    let mut s = new_session(Settings::plain(), Instant::now());
    let t = Instant::now();
    for round in 1..=3 {
        s.command(command::parse(b"USER bob"), t);
        let out = s.command(command::parse(b"PASS wrong"), t);
        assert!(matches!(out.effect, Some(Effect::VerifyPassword { .. })));
        let mut out = s.event(Event::PasswordRejected { banned: None }, t);
        let r: Vec<_> = out.replies.drain().collect();
        if round < 3 {
            assert_eq!(codes(&r), [530]);
            assert!(out.effect.is_none());
        } else {
            assert_eq!(codes(&r), [421]);
            assert!(matches!(
                out.effect,
                Some(Effect::Close(CloseReason::TooManyFailedLogins))
            ));
        }
    }
}

#[test]
fn a_ban_ends_the_session_with_its_duration() {
    let mut s = new_session(Settings::plain(), Instant::now());
    let t = Instant::now();
    s.command(command::parse(b"USER bob"), t);
    s.command(command::parse(b"PASS wrong"), t);
    let mut out = s.event(Event::PasswordRejected { banned: Some(600) }, t);
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(
        text(&r[0]),
        "Too many failed logins from your address; banned for 600 s"
    );
    assert!(matches!(
        out.effect,
        Some(Effect::Close(CloseReason::AddressBanned))
    ));
}

#[test]
fn a_listener_that_requires_tls_refuses_user_in_the_clear() {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    settings.tls_policy = TlsPolicy::Login;
    let mut sim = Sim::new(settings);
    let r = sim.cmd("USER alice");
    assert_eq!(codes(&r), [530]);
    assert!(text(&r[0]).contains("requires TLS for login"));
    assert_eq!(sim.s.login(), &LoginState::LoggedOut);
    // After AUTH TLS the same USER is asked for its password.
    assert_eq!(codes(&sim.cmd("AUTH TLS")), [234]);
    assert_eq!(codes(&sim.cmd("USER alice")), [331]);
}

#[test]
fn an_account_that_requires_tls_is_refused_in_the_clear() {
    let mut s = new_session(Settings::plain(), Instant::now());
    let t = Instant::now();
    s.command(command::parse(b"USER carol"), t);
    s.command(command::parse(b"PASS pw"), t);
    let mut acc = account("carol");
    acc.tls_policy = TlsPolicy::Login;
    let mut out = s.event(Event::PasswordAccepted(acc), t);
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(codes(&r), [530]);
    assert!(out.effect.is_none(), "no home is opened");
    assert_eq!(s.user(), None);
}

#[test]
fn a_client_certificate_logs_in_with_232() {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    let mut s = new_session(settings, Instant::now());
    let t = Instant::now();
    s.command(command::parse(b"AUTH TLS"), t);
    s.event(Event::TlsReady, t);
    s.event(Event::TlsEstablished(TlsVersion::V1_3), t);
    let out = s.command(command::parse(b"USER dave"), t);
    assert!(matches!(out.effect, Some(Effect::CheckCertificate { .. })));
    let out = s.event(Event::Certificate(Some(account("dave"))), t);
    assert!(matches!(
        out.effect,
        Some(Effect::OpenHome {
            method: LoginMethod::Certificate,
            ..
        })
    ));
    let mut out = s.event(Event::HomeOpened(Some(Capabilities::ALL)), t);
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(codes(&r), [232]);
    assert_eq!(s.user(), Some("dave"));
}

#[test]
fn anonymous_logins_need_no_password_check() {
    let mut settings = Settings::plain();
    settings.anonymous = Some(Permissions::READ_ONLY);
    let mut sim = Sim::new(settings);
    let r = sim.cmd("USER anonymous");
    assert!(text(&r[0]).starts_with("Anonymous login ok"));
    assert_eq!(codes(&sim.cmd("PASS me@example.com")), [230]);
    assert!(!sim.effects.iter().any(|e| e.starts_with("VerifyPassword")));
    assert_eq!(
        sim.s.account().map(|(a, m)| (a.perms, m)),
        Some((Permissions::READ_ONLY, LoginMethod::Anonymous))
    );
}

#[test]
fn an_unavailable_home_refuses_the_login() {
    let mut s = new_session(Settings::plain(), Instant::now());
    let t = Instant::now();
    s.command(command::parse(b"USER alice"), t);
    s.command(command::parse(b"PASS pw"), t);
    s.event(Event::PasswordAccepted(account("alice")), t);
    let mut out = s.event(Event::HomeOpened(None), t);
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(text(&r[0]), "Login refused: home directory unavailable");
    assert_eq!(s.login(), &LoginState::LoggedOut);
}

#[test]
fn rein_logs_out_and_resets_the_session() {
    let mut sim = Sim::logged_in();
    sim.cmd("TYPE I");
    sim.cmd("REST 5");
    sim.cmd("EPSV ALL");
    assert_eq!(codes(&sim.cmd("REIN")), [220]);
    assert_eq!(sim.s.login(), &LoginState::LoggedOut);
    assert_eq!(sim.s.rest(), 0);
    assert_eq!(sim.s.data_policy(), DataPolicy::Any);
    assert_eq!(sim.s.transfer_type(), ferroftp_proto::TransferType::Ascii);
    assert_eq!(codes(&sim.cmd("LIST")), [530]);
}

#[test]
fn a_reload_that_disables_the_account_ends_the_session() {
    let mut sim = Sim::logged_in();
    let mut out = sim.s.event(Event::Reloaded(AccountUpdate::Gone), sim.t);
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(text(&r[0]), "Your account was disabled; closing");
    assert!(matches!(
        out.effect,
        Some(Effect::Close(CloseReason::AccountDisabled))
    ));
    let out = sim.s.event(
        Event::Reloaded(AccountUpdate::Kept(
            Permissions::READ_ONLY,
            TlsPolicy::Optional,
        )),
        sim.t,
    );
    assert!(out.replies.is_empty());
    assert_eq!(
        sim.s.account().map(|(a, _)| a.perms),
        Some(Permissions::READ_ONLY)
    );
}

// ---- security ----

#[test]
fn prot_needs_tls_then_pbsz() {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    let mut sim = Sim::new(settings);
    assert_eq!(codes(&sim.cmd("PBSZ 0")), [503]);
    assert_eq!(codes(&sim.cmd("PROT P")), [503]);
    sim.cmd("AUTH TLS");
    assert!(matches!(sim.s.tls(), TlsState::Tls(TlsVersion::V1_3)));
    let r = sim.cmd("PROT P");
    assert_eq!(text(&r[0]), "Send PBSZ 0 before PROT");
    assert_eq!(codes(&sim.cmd("PBSZ 0")), [200]);
    assert_eq!(codes(&sim.cmd("PROT P")), [200]);
    assert!(sim.s.tls().data_private());
    assert_eq!(codes(&sim.cmd("PROT S")), [536]);
    assert_eq!(codes(&sim.cmd("PROT C")), [200]);
    assert!(!sim.s.tls().data_private());
    assert_eq!(codes(&sim.cmd("AUTH TLS")), [503]);
}

#[test]
fn auth_ssl_protects_data_at_once_and_plain_listeners_refuse_auth() {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    let mut sim = Sim::new(settings);
    sim.cmd("AUTH SSL");
    assert!(sim.s.tls().data_private());
    let mut plain = Sim::new(Settings::plain());
    assert_eq!(codes(&plain.cmd("AUTH TLS")), [502]);
}

#[test]
fn data_policy_refuses_transfers_without_prot_p() {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    settings.tls_policy = TlsPolicy::LoginAndData;
    let mut sim = Sim::new(settings);
    sim.cmd("AUTH TLS");
    sim.cmd("USER alice");
    sim.cmd("PASS pw");
    sim.cmd("PBSZ 0");
    assert_eq!(codes(&sim.cmd("PROT C")), [534]);
    sim.cmd("PASV");
    assert_eq!(codes(&sim.cmd("STOR f")), [521]);
    assert!(!sim.effects.iter().any(|e| e.starts_with("PrepareTransfer")));
}

// ---- data set-up ----

#[test]
fn epsv_all_refuses_pasv_port_and_eprt() {
    let mut sim = Sim::logged_in();
    assert_eq!(codes(&sim.cmd("EPSV ALL")), [200]);
    for line in ["PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51210|"] {
        let r = sim.cmd(line);
        assert_eq!(codes(&r), [503], "{line}");
    }
    assert_eq!(codes(&sim.cmd("EPSV")), [229]);
}

#[test]
fn port_to_another_host_or_a_privileged_port_is_refused() {
    let mut sim = Sim::logged_in();
    assert_eq!(codes(&sim.cmd("PORT 10,0,0,1,200,10")), [504]);
    assert_eq!(codes(&sim.cmd("PORT 127,0,0,1,0,21")), [504]);
    assert_eq!(codes(&sim.cmd("PORT 127,0,0,1,200,10")), [200]);
    assert_eq!(
        sim.s.data(),
        DataSetup::Active("127.0.0.1:51210".parse().unwrap())
    );
}

#[test]
fn pasv_answers_227_and_the_port_expires() {
    let mut sim = Sim::logged_in();
    let r = sim.cmd("PASV");
    assert_eq!(text(&r[0]), "Entering Passive Mode (127,0,0,1,195,80)");
    assert_eq!(
        sim.s.passive_expiry(),
        Some(sim.t + Duration::from_secs(30))
    );
    sim.event(Event::PassiveExpired);
    assert_eq!(sim.s.data(), DataSetup::None);
    assert_eq!(codes(&sim.cmd("ABOR")), [225]);
}

// ---- files ----

#[test]
fn rnto_only_directly_after_rnfr() {
    let mut sim = Sim::logged_in();
    assert_eq!(codes(&sim.cmd("RNTO b")), [503]);
    assert_eq!(codes(&sim.cmd("RNFR a")), [350]);
    sim.cmd("NOOP");
    assert_eq!(codes(&sim.cmd("RNTO b")), [503]);
    sim.cmd("RNFR a");
    assert_eq!(codes(&sim.cmd("RNTO b")), [250]);
    assert!(sim.effects.last().is_some_and(|e| e.contains("Rename")));
}

#[test]
fn paths_resolve_against_the_working_directory_and_never_leave_the_home() {
    let mut sim = Sim::logged_in();
    assert_eq!(codes(&sim.cmd("CWD dir")), [250]);
    assert_eq!(sim.s.cwd().as_str(), "/dir");
    sim.cmd("DELE ../../../etc/passwd");
    assert!(
        sim.effects
            .last()
            .is_some_and(|e| e.contains("\"/etc/passwd\"")),
        "{:?}",
        sim.effects.last()
    );
    let r = sim.cmd("DELE .ferroftp-upload.1.part");
    assert_eq!(codes(&r), [553]);
    let r = sim.cmd("PWD");
    assert_eq!(text(&r[0]), "\"/dir\" is the current directory");
}

#[test]
fn permissions_are_checked_before_any_storage_operation() {
    let mut sim = Sim::new(Settings::plain());
    sim.s.command(command::parse(b"USER ro"), sim.t);
    sim.s.command(command::parse(b"PASS pw"), sim.t);
    let mut ro = account("ro");
    ro.perms = Permissions::READ_ONLY;
    sim.s.event(Event::PasswordAccepted(ro), sim.t);
    sim.s
        .event(Event::HomeOpened(Some(Capabilities::ALL)), sim.t);
    sim.effects.clear();
    for line in [
        "DELE f",
        "MKD d",
        "RMD d",
        "RNFR f",
        "STOR f",
        "SITE CHMOD 644 f",
    ] {
        let r = sim.cmd(line);
        assert_eq!(codes(&r), [550], "{line}");
        assert!(text(&r[0]).starts_with("Permission denied"), "{line}");
    }
    assert!(sim.effects.is_empty(), "{:?}", sim.effects);
}

#[test]
fn size_in_ascii_mode_reads_the_file_and_in_binary_does_not() {
    let mut sim = Sim::logged_in();
    // The simulated entry is a directory: not a regular file.
    assert_eq!(codes(&sim.cmd("SIZE d")), [550]);
    let out = sim.s.command(command::parse(b"SIZE f"), sim.t);
    assert!(matches!(
        out.effect,
        Some(Effect::Storage(StorageOp::Metadata(_)))
    ));
    let out = sim.s.event(
        Event::Storage(Ok(StorageDone::Entry(entry(EntryKind::File)))),
        sim.t,
    );
    assert!(matches!(
        out.effect,
        Some(Effect::Storage(StorageOp::AsciiSize(_)))
    ));
    let mut out = sim
        .s
        .event(Event::Storage(Ok(StorageDone::Size(12))), sim.t);
    assert_eq!(text(&out.replies.drain().next().unwrap()), "12");
}

// ---- transfers ----

#[test]
fn rest_is_taken_by_the_next_retr_only() {
    let mut sim = Sim::logged_in();
    sim.cmd("PASV");
    sim.cmd("REST 40");
    sim.cmd("NOOP");
    let r = sim.cmd("RETR f");
    assert_eq!(codes(&r), [150, 226]);
    assert!(text(&r[0]).ends_with("(60 bytes)"));
    assert!(sim.effects.iter().any(|e| e.contains("offset: 40")));
    sim.cmd("PASV");
    sim.cmd("RETR f");
    assert!(sim.effects.iter().any(|e| e.contains("offset: 0")));
}

#[test]
fn a_transfer_without_a_data_connection_is_refused_before_touching_files() {
    let mut sim = Sim::logged_in();
    let r = sim.cmd("STOR f");
    assert_eq!(text(&r[0]), "Use PASV, EPSV, PORT or EPRT first");
    assert!(
        sim.effects.is_empty() || !sim.effects.iter().any(|e| e.starts_with("PrepareTransfer"))
    );
    // RETR opens its file first, then finds no data connection.
    let r = sim.cmd("RETR f");
    assert_eq!(codes(&r), [425]);
    assert!(sim.effects.last().is_some_and(|e| e == "DiscardTransfer"));
}

#[test]
fn during_a_transfer_only_abor_and_status_answers() {
    let mut sim = Sim::logged_in();
    sim.hold_transfers = true;
    sim.cmd("PASV");
    assert_eq!(codes(&sim.cmd("RETR f")), [150]);
    assert!(matches!(sim.s.activity(), Activity::Transfer(_)));
    let r = sim.cmd("STAT");
    assert_eq!(
        text(&r[0]),
        "Status: RETR /f: 5 of 100 bytes transferred in 0 s"
    );
    assert_eq!(codes(&sim.cmd("ABOR")), Vec::<u16>::new());
    assert!(sim.s.abort_requested());
    let r = sim.event(Event::TransferEnded(TransferEnd::Aborted));
    assert_eq!(codes(&r), [426, 226]);
    assert!(matches!(sim.s.activity(), Activity::Idle));
}

#[test]
fn an_abor_after_the_last_byte_gets_its_own_226() {
    let mut sim = Sim::logged_in();
    sim.hold_transfers = true;
    sim.cmd("PASV");
    sim.cmd("LIST");
    sim.cmd("ABOR");
    let r = sim.event(Event::TransferEnded(TransferEnd::Complete));
    assert_eq!(codes(&r), [226, 226]);
    assert_eq!(
        text(&r[1]),
        "ABOR command successful; the transfer had completed"
    );
}

#[test]
fn transfer_failures_have_their_replies() {
    let cases = [
        (TransferEnd::NoDataConnection("refused".into()), 425),
        (TransferEnd::DataTls("no".into()), 522),
        (TransferEnd::Network("reset".into()), 426),
        (
            TransferEnd::Local(crate::storage::StorageError::NoSpace),
            452,
        ),
        (TransferEnd::Truncated { restored: true }, 426),
        (TransferEnd::Shrank { bytes: 1, total: 2 }, 451),
    ];
    for (end, code) in cases {
        let mut sim = Sim::logged_in();
        sim.hold_transfers = true;
        sim.cmd("PASV");
        sim.cmd("RETR f");
        let r = sim.event(Event::TransferEnded(end));
        assert_eq!(codes(&r), [code]);
    }
}

#[test]
fn only_bare_abor_and_stat_overtake_a_transfer() {
    for line in [&b"ABOR"[..], b"abor", b"STAT", b"stat  ", b"Abor\t"] {
        assert!(runs_during_transfer(line), "{line:?}");
    }
    for line in [&b"STAT /"[..], b"NOOP", b"LIST", b" ABOR", b"ABORT", b""] {
        assert!(!runs_during_transfer(line), "{line:?}");
    }
    assert!(is_abor_line(b" abor "));
    assert!(!is_abor_line(b"STAT"));
}

// ---- timers ----

#[test]
fn the_login_timeout_runs_before_login_and_the_idle_one_after() {
    let t = Instant::now();
    let mut settings = Settings::plain();
    settings.login_timeout_secs = 10;
    settings.idle_timeout_secs = 100;
    let mut s = new_session(settings, t);
    assert_eq!(s.deadline(), Some(t + Duration::from_secs(10)));
    let mut out = s.timeout();
    let r: Vec<_> = out.replies.drain().collect();
    assert_eq!(
        text(&r[0]),
        "Timeout: not logged in within 10 s; closing control connection"
    );
    assert!(matches!(
        out.effect,
        Some(Effect::Close(CloseReason::LoginTimeout))
    ));
    let mut sim = Sim::logged_in();
    assert_eq!(sim.s.deadline(), Some(sim.t + Duration::from_secs(300)));
    let mut out = sim.s.timeout();
    assert!(matches!(
        out.effect,
        Some(Effect::Close(CloseReason::IdleTimeout))
    ));
    assert_eq!(out.replies.drain().count(), 1);
}

#[test]
fn close_reasons_keep_their_log_strings() {
    assert_eq!(CloseReason::ClientQuit.as_str(), "client quit");
    assert_eq!(CloseReason::Shutdown.as_str(), "server shutting down");
    assert_eq!(
        CloseReason::ChecksDidNotEnd.as_str(),
        "password checks from the address did not end in time"
    );
    assert_eq!(TransferKind::Stou.verb().name(), "STOU");
}

// ---- properties ----

/// Command lines for the property tests: every rule's commands, with good arguments.
const LINES: &[&str] = &[
    "USER alice",
    "PASS pw",
    "REIN",
    "NOOP",
    "PWD",
    "CWD dir",
    "CDUP",
    "MKD d",
    "RMD d",
    "DELE f",
    "RNFR a",
    "RNTO b",
    "TYPE I",
    "TYPE A",
    "MODE S",
    "STRU F",
    "PASV",
    "EPSV",
    "EPSV ALL",
    "PORT 127,0,0,1,200,10",
    "EPRT |1|127.0.0.1|51210|",
    "LIST",
    "NLST",
    "MLSD",
    "MLST f",
    "RETR f",
    "STOR f",
    "APPE f",
    "STOU",
    "REST 7",
    "REST 0",
    "ABOR",
    "SIZE f",
    "MDTM f",
    "FEAT",
    "SYST",
    "STAT",
    "STAT f",
    "HELP",
    "ALLO",
    "SITE HELP",
    "AUTH TLS",
    "PBSZ 0",
    "PROT P",
    "PROT C",
    "CCC",
    "OPTS UTF8 ON",
    "ACCT x",
    "BOGUS",
];

fn lines() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(LINES), 0..40)
}

fn explicit() -> Settings {
    let mut settings = Settings::plain();
    settings.mode = ListenerMode::Explicit;
    settings
}

proptest! {
    /// RNTO renames only right after an RNFR that was accepted.
    #[test]
    fn rnto_renames_only_directly_after_an_accepted_rnfr(seq in lines()) {
        let mut sim = Sim::logged_in();
        let mut last_350_rnfr = false;
        for line in seq.into_iter().filter(|l| !l.starts_with("REIN") && !l.starts_with("USER")) {
            sim.effects.clear();
            let r = sim.cmd(line);
            let renamed = sim.effects.iter().any(|e| e.contains("Rename"));
            if line.starts_with("RNTO") {
                prop_assert_eq!(renamed, last_350_rnfr, "{}", line);
                if !last_350_rnfr {
                    prop_assert_eq!(codes(&r), vec![503]);
                }
            } else {
                prop_assert!(!renamed);
            }
            last_350_rnfr = line.starts_with("RNFR") && codes(&r) == [350];
        }
    }

    /// REST is taken by the next RETR, STOR or APPE (and cleared by STOU and REIN), whatever
    /// else comes between.
    #[test]
    fn rest_is_consumed_by_the_next_transfer_command(seq in lines()) {
        let mut sim = Sim::logged_in();
        let mut model = 0u64;
        for line in seq.into_iter().filter(|l| !l.starts_with("USER") && !l.starts_with("PASS")) {
            sim.effects.clear();
            let r = sim.cmd(line);
            let offset = sim.effects.iter().find_map(|e| {
                let i = e.find("offset: ")?;
                e[i + 8..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
            });
            let mode = sim.effects.iter().find(|e| e.contains("mode: ")).cloned();
            match line {
                "REST 7" => model = 7,
                "REST 0" => model = 0,
                "RETR f" => {
                    prop_assert_eq!(offset, Some(model));
                    model = 0;
                }
                "STOR f" | "APPE f" => {
                    if let Some(m) = mode {
                        prop_assert_eq!(m.contains("At(7)"), model == 7, "{}", m);
                    }
                    model = 0;
                }
                "STOU" if r.first().is_some_and(|r| r.code != 425) => model = 0,
                "REIN" => break,
                _ => {}
            }
            prop_assert_eq!(sim.s.rest(), model, "after {}", line);
        }
    }

    /// PROT is refused until PBSZ was accepted, and PBSZ and PROT need TLS.
    #[test]
    fn prot_is_refused_before_pbsz(seq in lines(), tls_first in any::<bool>()) {
        let mut sim = Sim::new(explicit());
        if tls_first {
            sim.cmd("AUTH TLS");
        }
        let mut pbsz = false;
        for line in seq {
            let r = sim.cmd(line);
            if line == "PBSZ 0" && r[0].code == 200 {
                pbsz = true;
            }
            if line.starts_with("PROT") && !pbsz {
                prop_assert_eq!(r[0].code, 503);
            }
            prop_assert_eq!(matches!(sim.s.tls(), TlsState::Pbsz(..)), pbsz);
        }
    }

    /// Before login, only the session set-up commands run; the rest get 530 and no effect.
    #[test]
    fn nothing_but_the_allowed_set_runs_before_login(seq in lines()) {
        let mut sim = Sim::new(explicit());
        for line in seq.into_iter().filter(|l| *l != "PASS pw") {
            sim.effects.clear();
            let cmd = command::parse(line.as_bytes());
            let allowed = cmd.as_ref().is_ok_and(allowed_before_login);
            let r = sim.cmd(line);
            if cmd.is_ok() && !allowed {
                prop_assert_eq!(codes(&r), vec![530], "{}", line);
                prop_assert!(sim.effects.is_empty());
            }
            prop_assert!(sim.s.user().is_none());
        }
    }

    /// After EPSV ALL, PASV, PORT and EPRT are refused (until REIN).
    #[test]
    fn port_pasv_and_eprt_are_refused_after_epsv_all(seq in lines()) {
        let mut sim = Sim::logged_in();
        sim.cmd("EPSV ALL");
        for line in seq.into_iter().filter(|l| !["REIN", "USER alice", "PASS pw"].contains(l)) {
            sim.effects.clear();
            let r = sim.cmd(line);
            if line == "PASV" || line.starts_with("PORT") || line.starts_with("EPRT") {
                prop_assert_eq!(codes(&r), vec![503], "{}", line);
                prop_assert!(sim.effects.is_empty());
            }
        }
    }

    /// During a transfer every command but ABOR gets the transfer's status and changes
    /// nothing; ABOR asks the driver to stop it; the end brings the final replies.
    #[test]
    fn during_a_transfer_only_status_answers(seq in lines(), kind in 0usize..3) {
        let mut sim = Sim::logged_in();
        sim.hold_transfers = true;
        sim.cmd("PASV");
        let start = ["RETR f", "STOR f", "LIST"][kind];
        prop_assert_eq!(codes(&sim.cmd(start)), vec![150]);
        let before = format!("{:?}", (sim.s.login(), sim.s.tls(), sim.s.cwd(), sim.s.rest(), sim.s.data()));
        let mut aborted = false;
        for line in seq {
            sim.effects.clear();
            let r = sim.cmd(line);
            if line == "ABOR" {
                prop_assert!(r.is_empty());
                prop_assert_eq!(sim.effects.clone(), vec!["AbortTransfer".to_string()]);
                aborted = true;
            } else if command::parse(line.as_bytes()).is_ok() {
                prop_assert_eq!(codes(&r), vec![213], "{}", line);
            }
        }
        let after = format!("{:?}", (sim.s.login(), sim.s.tls(), sim.s.cwd(), sim.s.rest(), sim.s.data()));
        prop_assert_eq!(before, after);
        let end = if aborted { TransferEnd::Aborted } else { TransferEnd::Complete };
        let r = sim.event(Event::TransferEnded(end));
        prop_assert_eq!(r.last().map(|r| r.code), Some(226));
        prop_assert!(matches!(sim.s.activity(), Activity::Idle));
    }

    /// Every command gets exactly one final reply (a 150 is followed by its transfer's).
    #[test]
    fn every_command_gets_one_final_reply(seq in lines()) {
        let mut sim = Sim::new(explicit());
        for line in seq {
            let r = sim.cmd(line);
            if sim.effects.last().is_some_and(|e| e.starts_with("Close")) {
                break;
            }
            let finals = r.iter().filter(|r| r.code >= 200).count();
            prop_assert_eq!(finals, 1, "{}: {:?}", line, r);
            prop_assert!(r.iter().take(r.len() - 1).all(|r| r.code < 200), "{}: {:?}", line, r);
            prop_assert!(r.iter().all(|r| (100..600).contains(&r.code)));
        }
    }
}

#[test]
fn what_the_storage_cannot_do_is_refused_before_any_effect() {
    let mut sim = Sim::new(Settings::plain());
    sim.storage = Capabilities {
        rename: false,
        append: false,
        write_at: false,
        set_mode: false,
        set_modified: false,
    };
    sim.cmd("USER alice");
    sim.cmd("PASS secret");
    sim.cmd("PASV");
    let effects = sim.effects.len();
    for (line, what) in [
        ("RNFR a.txt", "rename"),
        ("APPE a.txt", "appending"),
        ("SITE CHMOD 644 a.txt", "chmod"),
        ("MFMT 20200101000000 a.txt", "setting a modification time"),
    ] {
        let got = sim.cmd(line);
        assert_eq!(codes(&got), [502], "{line}");
        assert!(
            text(&got[0]).contains(&format!("{what} is not supported")),
            "{line}: {got:?}"
        );
    }
    assert_eq!(codes(&sim.cmd("REST 5")), [350]);
    let got = sim.cmd("STOR a.txt");
    assert_eq!(codes(&got), [502]);
    assert!(
        text(&got[0]).contains("resuming an upload is not supported"),
        "{got:?}"
    );
    // No storage operation, no transfer: the refusals came before anything was touched. The
    // passive port is still there for the next transfer.
    assert_eq!(sim.effects.len(), effects, "{:?}", &sim.effects[effects..]);
    assert_eq!(codes(&sim.cmd("STOR a.txt")), [150, 226]);
    // A storage that can do everything lets the same commands through.
    let mut full = Sim::logged_in();
    assert_eq!(codes(&full.cmd("RNFR a.txt")), [350]);
}
