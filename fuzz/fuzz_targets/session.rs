//! The session core (`ferroftp::core`), driven directly: no TCP, no files, no clock. Each input
//! is a configuration and a sequence of operations: command lines (parsed by proto, so parse
//! errors too), and the driver's answers to the core's effects (a password right or wrong, a
//! storage error, a transfer that fails), the end of a running transfer, timers and reloads.
//! The end-to-end target over TCP with a real server and file system is `session_tcp`.
//!
//! Checked for every input:
//! - no panic (debug assertions and overflow checks are on);
//! - every reply is well formed: a code 100-599, rendered as CRLF lines that `Reply::parse`
//!   reads back as the same reply, with nothing after it;
//! - every command gets exactly one final reply (2xx-5xx), after any 1xx, except ABOR while a
//!   transfer runs (answered at its end) and a transfer that started (150 now, the final reply
//!   when it ends); a transfer's end brings its final reply; nothing follows a close;
//! - no effect names a path outside the home: every path is absolute and normalized (no `.`,
//!   `..` or empty segment, no NUL, CR or LF), and file operations never name an upload temp
//!   file;
//! - no file access before login: storage and transfer effects only for a logged-in user;
//! - no transfer without a data set-up: `StartTransfer` always carries one, an upload's file is
//!   only opened while one exists, and after EPSV ALL no PASV or active set-up is made;
//! - during a transfer, commands other than ABOR only ask for its status.
//!
//! Input: byte 0 = settings (listener mode, TLS policy, anonymous, active mode flags); then
//! operations, each opened by one byte (see `run`); effect answers take the next byte.
#![no_main]

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ferroftp::auth::Permissions;
use ferroftp::config::{ActiveConfig, ListenerMode, TlsPolicy};
use ferroftp::core::{
    Account, AccountUpdate, Activity, DataPolicy, DataSetup, Effect, Event, Output, PassiveFailure,
    PassiveKind, PreCheckRefusal, Session, Settings, StorageDone, StorageOp, TlsVersion,
    TransferEnd, TransferSource,
};
use ferroftp::storage::{Capabilities, Entry, EntryKind, StorageError, VPath};
use ferroftp_proto::{Reply, command};
use libfuzzer_sys::fuzz_target;

mod coverage;

/// Verbs, with the RFC 775 aliases, some unknown ones and an empty line.
const VERBS: &[&str] = &[
    "USER", "PASS", "CWD", "CDUP", "PWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "TYPE", "MODE",
    "STRU", "PASV", "EPSV", "PORT", "EPRT", "LIST", "NLST", "MLSD", "MLST", "RETR", "STOR", "STOU",
    "APPE", "REST", "ABOR", "SIZE", "MDTM", "MFMT", "FEAT", "OPTS", "SYST", "STAT", "HELP", "NOOP",
    "ALLO", "SITE", "REIN", "AUTH", "PBSZ", "PROT", "CCC", "QUIT", "ACCT", "XCWD", "XCUP", "XPWD",
    "XMKD", "XRMD", "FOO", "",
];

/// Arguments: user names, paths (hostile ones too) and every verb's special values.
const ARGS: &[&str] = &[
    "alice",
    "anonymous",
    "ftp",
    "pw",
    "file.txt",
    "dir",
    "dir/sub",
    ".",
    "..",
    "/",
    "//",
    "../../etc/passwd",
    "/../../../",
    "dir/../../..",
    "a\0b",
    "x\ry",
    "*",
    "*.txt",
    "[",
    "-la",
    ".ferroftp-upload.0.part",
    "dir/.ferroftp-upload.x.part",
    "~",
    "I",
    "A",
    "A N",
    "L 8",
    "E",
    "S",
    "F",
    "B",
    "R",
    "1",
    "2",
    "ALL",
    "3",
    "127,0,0,1,200,10",
    "127,0,0,1,0,21",
    "10,0,0,1,200,10",
    "|1|127.0.0.1|51210|",
    "|2|::1|51210|",
    "|1|10.0.0.1|51210|",
    "0",
    "7",
    "18446744073709551615",
    "20240102030405 file.txt",
    "19691231235959.5 f",
    "UTF8 ON",
    "UTF8 OFF",
    "MLST type;size;",
    "HELP",
    "CHMOD 644 file.txt",
    "CHMOD 4755 file.txt",
    "TLS",
    "SSL",
    "TLS-P",
    "TLS-C",
    "KERBEROS",
    "P",
    "C",
    "RETR",
    "x y",
];

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn or0(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    /// A length-prefixed run of raw bytes (at most 63).
    fn raw(&mut self) -> Vec<u8> {
        let n = usize::from(self.or0() & 63).min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a.to_vec()
    }
}

fn settings(b: u8) -> Settings {
    let mut s = Settings::plain();
    s.mode = [
        ListenerMode::Plain,
        ListenerMode::Explicit,
        ListenerMode::Implicit,
        ListenerMode::Explicit,
    ][usize::from(b & 3)];
    s.tls_policy = [
        TlsPolicy::Optional,
        TlsPolicy::Login,
        TlsPolicy::LoginAndData,
        TlsPolicy::Optional,
    ][usize::from((b >> 2) & 3)];
    s.anonymous = (b & 16 != 0).then_some(Permissions::READ_ONLY);
    s.active = ActiveConfig {
        enabled: b & 32 == 0,
        allow_foreign_ip: b & 64 != 0,
        allow_privileged_ports: b & 128 != 0,
        source_port_below_listener: false,
    };
    s.max_login_failures = 3;
    s
}

fn entry(b: u8) -> Entry {
    Entry {
        name: "x".into(),
        kind: [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink,
            EntryKind::Other,
        ][usize::from(b & 3)],
        size: if b & 4 != 0 {
            100 * 1024 * 1024
        } else {
            u64::from(b)
        },
        modified: (b & 8 == 0).then(|| UNIX_EPOCH + Duration::from_secs(u64::from(b) << 20)),
        mode: 0o644,
        nlink: 1,
    }
}

fn storage_error(b: u8) -> StorageError {
    match b % 10 {
        0 => StorageError::NotFound,
        1 => StorageError::PermissionDenied,
        2 => StorageError::AlreadyExists,
        3 => StorageError::NotADirectory,
        4 => StorageError::InvalidName,
        5 => StorageError::Escape,
        6 => StorageError::NoSpace,
        7 => StorageError::WouldOverwrite,
        8 => StorageError::InvalidOffset,
        _ => StorageError::Io(std::io::Error::other("/host/secret/path")),
    }
}

fn account(name: &str, b: u8) -> Account {
    Account {
        name: name.to_owned(),
        perms: [
            Permissions::ALL,
            Permissions::READ_ONLY,
            Permissions::NONE,
            Permissions::ALL,
        ][usize::from(b & 3)],
        tls_policy: [
            TlsPolicy::Optional,
            TlsPolicy::Optional,
            TlsPolicy::Login,
            TlsPolicy::LoginAndData,
        ][usize::from((b >> 2) & 3)],
    }
}

/// A path the core hands the driver: absolute and normalized, so it cannot leave the home.
fn check_path(p: &VPath, what: &str) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "{what}: path not absolute: {s:?}");
    assert!(!s.contains(['\0', '\r', '\n']), "{what}: bad byte in {s:?}");
    if s != "/" {
        for seg in s[1..].split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{what}: not normalized: {s:?}"
            );
        }
    }
}

fn check_reply(r: &Reply) {
    assert!((100..600).contains(&r.code), "reply code {}", r.code);
    let bytes = r.render();
    assert!(bytes.ends_with(b"\r\n"));
    for (i, w) in bytes.windows(2).enumerate() {
        if w[0] == b'\r' {
            assert_eq!(w[1], b'\n', "bare CR at {i} in {bytes:?}");
        }
        if w[1] == b'\n' {
            assert_eq!(w[0], b'\r', "bare LF at {i} in {bytes:?}");
        }
    }
    let (parsed, used) =
        Reply::parse(&bytes).unwrap_or_else(|| panic!("unparsable reply {bytes:?}"));
    assert_eq!(used, bytes.len(), "one reply, nothing after it: {bytes:?}");
    assert_eq!(parsed.code, r.code);
}

struct Run {
    s: Session,
    now: Instant,
    /// A transfer runs (its final reply is owed).
    transfer: bool,
    /// The driver holds an opened transfer source.
    prepared: bool,
    closed: bool,
}

impl Run {
    /// Carry out effects with answers chosen by the input; the replies of the whole exchange.
    fn drive(&mut self, mut out: Output, input: &mut Input<'_>, replies: &mut Vec<Reply>) {
        loop {
            for r in out.replies.drain() {
                check_reply(&r);
                replies.push(r);
            }
            let Some(effect) = out.effect.take() else {
                return;
            };
            let logged_in = self.s.user().is_some();
            let b = input.or0();
            let event = match effect {
                Effect::Close(_) => {
                    self.closed = true;
                    return;
                }
                Effect::CheckCertificate { name } => {
                    assert!(self.s.tls().is_tls());
                    Event::Certificate((b & 1 != 0).then(|| account(&name, b >> 1)))
                }
                Effect::VerifyPassword { name, .. } => match b % 6 {
                    0 | 1 => Event::PasswordAccepted(account(&name, b >> 3)),
                    2 => Event::PasswordRejected { banned: None },
                    3 => Event::PasswordRejected {
                        banned: Some(u64::from(b)),
                    },
                    4 => Event::LoginRefused(PreCheckRefusal::Banned(u64::from(b >> 3))),
                    _ => Event::LoginRefused(if b & 8 != 0 {
                        PreCheckRefusal::UserBusy
                    } else {
                        PreCheckRefusal::AddressBusy
                    }),
                },
                Effect::OpenHome { .. } => {
                    Event::HomeOpened((b % 8 != 0).then_some(Capabilities {
                        rename: b & 8 == 0,
                        append: b & 16 == 0,
                        write_at: b & 32 == 0,
                        set_mode: b & 64 == 0,
                        set_modified: b & 128 == 0,
                    }))
                }
                Effect::PrepareTls(_) => match b % 4 {
                    0 => Event::TlsUnavailable {
                        configured: b & 4 != 0,
                    },
                    _ => Event::TlsReady,
                },
                Effect::Handshake(_) => match b % 8 {
                    0 => Event::TlsFailed,
                    1 => Event::NotPlain,
                    2 => Event::TlsEstablished(TlsVersion::V1_2),
                    _ => Event::TlsEstablished(TlsVersion::V1_3),
                },
                Effect::OpenPassive(kind) => {
                    if kind == PassiveKind::Pasv {
                        assert_eq!(self.s.data_policy(), DataPolicy::Any, "PASV after EPSV ALL");
                    }
                    let port = 1024 + u16::from(b);
                    match b % 8 {
                        0 => Event::PassiveFailed(PassiveFailure::Unresolvable),
                        1 => Event::PassiveFailed(PassiveFailure::Ipv6Local),
                        2 => Event::PassiveFailed(PassiveFailure::Bind("no free port".into())),
                        _ => Event::PassiveOpened {
                            local_port: port,
                            port,
                            pasv: (kind == PassiveKind::Pasv)
                                .then(|| SocketAddrV4::new([127, 0, 0, 1].into(), port)),
                        },
                    }
                }
                Effect::Storage(op) => {
                    assert!(logged_in, "storage before login: {op:?}");
                    match &op {
                        StorageOp::Metadata(p)
                        | StorageOp::Mkdir(p)
                        | StorageOp::Rmdir(p)
                        | StorageOp::RemoveFile(p)
                        | StorageOp::AsciiSize(p)
                        | StorageOp::SetModified(p, _)
                        | StorageOp::SetMode(p, _) => {
                            check_path(p, "storage");
                            assert!(
                                !p.file_name()
                                    .is_some_and(ferroftp::storage::is_internal_name),
                                "internal name {p}"
                            );
                        }
                        StorageOp::Rename { from, to, .. } => {
                            check_path(from, "rename from");
                            check_path(to, "rename to");
                            assert!(
                                !to.file_name()
                                    .is_some_and(ferroftp::storage::is_internal_name)
                            );
                        }
                        StorageOp::StatListing { cwd, .. } => check_path(cwd, "stat"),
                    }
                    if let StorageOp::SetMode(_, mode) = op {
                        assert_eq!(mode & !0o777, 0, "setuid/setgid/sticky reached storage");
                    }
                    Event::Storage(if b & 1 != 0 {
                        Err(storage_error(b >> 1))
                    } else {
                        Ok(match op {
                            StorageOp::Metadata(_) => StorageDone::Entry(entry(b >> 1)),
                            StorageOp::AsciiSize(_) => StorageDone::Size(u64::from(b)),
                            StorageOp::StatListing { .. } => StorageDone::Reply(Reply::multi(
                                213,
                                "Status of /:",
                                ["x".to_string()],
                                "End of status",
                            )),
                            _ => StorageDone::Done,
                        })
                    })
                }
                Effect::PrepareTransfer(kind, src) => {
                    assert!(logged_in, "transfer before login: {kind:?}");
                    assert!(!self.transfer);
                    let path = match src {
                        TransferSource::Read { path, .. } => path,
                        TransferSource::Write { path, .. } => {
                            assert_ne!(
                                self.s.data(),
                                DataSetup::None,
                                "upload opened without a data set-up"
                            );
                            assert!(!path.is_root());
                            path
                        }
                        TransferSource::Unique { dir, hint } => {
                            assert_ne!(
                                self.s.data(),
                                DataSetup::None,
                                "STOU without a data set-up"
                            );
                            assert!(!hint.contains('/') && !hint.is_empty());
                            dir.join(&hint).unwrap_or_else(|_| VPath::root())
                        }
                        TransferSource::Listing { cwd, .. } => cwd,
                    };
                    check_path(&path, "transfer");
                    match b % 8 {
                        0 => Event::Storage(Err(storage_error(b >> 3))),
                        1 => {
                            Event::TransferRefused(Reply::new(550, "x: No such file or directory"))
                        }
                        _ => {
                            self.prepared = true;
                            Event::TransferPrepared {
                                total: (b & 8 != 0).then_some(u64::from(b)),
                                path,
                            }
                        }
                    }
                }
                Effect::StartTransfer { data, .. } => {
                    assert!(self.prepared, "started a transfer that was never prepared");
                    assert_ne!(data, DataSetup::None, "transfer without a data set-up");
                    assert!(matches!(self.s.activity(), Activity::Transfer(_)));
                    self.prepared = false;
                    self.transfer = true;
                    return;
                }
                Effect::DiscardTransfer => {
                    self.prepared = false;
                    return;
                }
                Effect::AbortTransfer => {
                    assert!(self.transfer);
                    return;
                }
                Effect::TransferStatus => {
                    assert!(self.transfer);
                    Event::TransferProgress {
                        bytes: u64::from(b),
                        now: self.now,
                    }
                }
            };
            out = self.s.event(event, self.now);
        }
    }
}

fn transfer_end(b: u8) -> TransferEnd {
    match b % 10 {
        0 | 1 => TransferEnd::Complete,
        2 => TransferEnd::Shrank { bytes: 1, total: 2 },
        3 => TransferEnd::Aborted,
        4 => TransferEnd::NoDataConnection("Connection refused".into()),
        5 => TransferEnd::DataTls("TLS handshake failed".into()),
        6 => TransferEnd::Truncated {
            restored: b & 16 != 0,
        },
        7 => TransferEnd::Network("Connection reset by peer".into()),
        8 => TransferEnd::Local(storage_error(b >> 4)),
        _ => TransferEnd::ClientGone,
    }
}

fn run(data: &[u8]) {
    let mut input = Input { data };
    let start = Instant::now();
    let cfg = settings(input.or0());
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let local = SocketAddr::from(([127, 0, 0, 1], 21));
    let implicit = cfg.mode == ListenerMode::Implicit;
    let mut r = Run {
        s: Session::new(cfg, peer, local, start),
        now: start,
        transfer: false,
        prepared: false,
        closed: false,
    };
    if implicit {
        r.s.implicit_tls(TlsVersion::V1_3);
    }
    while !r.closed {
        let Some(op) = input.byte() else { break };
        // Time passes between operations (up to about four minutes).
        r.now += Duration::from_secs(u64::from(op & 0x0f));
        let mut replies = Vec::new();
        match op {
            0..=199 => {
                let verb = VERBS[usize::from(op) % VERBS.len()];
                let a = input.or0();
                let mut line = verb.as_bytes().to_vec();
                match a {
                    0..=159 => {
                        line.push(b' ');
                        line.extend_from_slice(ARGS[usize::from(a) % ARGS.len()].as_bytes());
                    }
                    160..=223 => {}
                    _ => {
                        line.push(b' ');
                        line.extend(input.raw());
                    }
                }
                let was_transfer = r.transfer;
                let parsed = command::parse(&line);
                let is_abor = parsed
                    .as_ref()
                    .is_ok_and(|c| *c == ferroftp_proto::Command::Abor);
                let sets_up = matches!(
                    parsed,
                    Ok(ferroftp_proto::Command::Pasv
                        | ferroftp_proto::Command::Port(_)
                        | ferroftp_proto::Command::Eprt(_))
                );
                let epsv_only = r.s.data_policy() == DataPolicy::EpsvOnly;
                let out = r.s.command(command::parse(&line), r.now);
                r.drive(out, &mut input, &mut replies);
                let finals = replies.iter().filter(|x| x.code >= 200).count();
                let prelims = replies.iter().filter(|x| x.code < 200).count();
                if was_transfer && parsed.is_err() {
                    // (The driver runs only bare ABOR and STAT lines during a transfer; the core
                    // answers a line that does not parse at once in any case.)
                    assert_eq!(finals, 1, "{replies:?}");
                } else if was_transfer {
                    if is_abor {
                        assert!(
                            replies.is_empty(),
                            "ABOR during a transfer answered at once: {replies:?}"
                        );
                    } else {
                        assert_eq!(
                            codes(&replies),
                            [213],
                            "during a transfer: {:?}",
                            String::from_utf8_lossy(&line)
                        );
                    }
                } else if r.transfer {
                    // The transfer started: its 150, the final reply later.
                    assert_eq!(codes(&replies), [150]);
                } else {
                    if epsv_only && sets_up {
                        assert!(
                            matches!(codes(&replies)[..], [503] | [530]),
                            "after EPSV ALL: {replies:?}"
                        );
                    }
                    assert_eq!(
                        finals,
                        1,
                        "{:?} got {replies:?}",
                        String::from_utf8_lossy(&line)
                    );
                    assert!(prelims == 0 || replies.last().is_some_and(|x| x.code >= 200));
                }
            }
            200..=239 => {
                if r.transfer {
                    r.transfer = false;
                    let out =
                        r.s.event(Event::TransferEnded(transfer_end(input.or0())), r.now);
                    r.drive(out, &mut input, &mut replies);
                    if !r.closed {
                        assert!(
                            replies.last().is_some_and(|x| x.code >= 200),
                            "transfer end: {replies:?}"
                        );
                    }
                    assert!(matches!(r.s.activity(), Activity::Idle));
                }
            }
            240..=247 => {
                // The driver's timer fires only when the core names a deadline.
                if let Some(deadline) = r.s.deadline() {
                    assert!(!r.transfer);
                    r.now = r.now.max(deadline);
                    let out = r.s.timeout();
                    r.drive(out, &mut input, &mut replies);
                    assert!(r.closed && codes(&replies) == [421]);
                }
            }
            248..=251 => {
                if r.s.passive_expiry().is_some() {
                    let out = r.s.event(Event::PassiveExpired, r.now);
                    r.drive(out, &mut input, &mut replies);
                    assert_eq!(r.s.data(), DataSetup::None);
                }
            }
            _ => {
                let update = match input.or0() % 4 {
                    0 => AccountUpdate::Kept(Permissions::READ_ONLY, TlsPolicy::Optional),
                    1 => AccountUpdate::Anonymous(Permissions::NONE),
                    2 => AccountUpdate::AnonymousOff,
                    _ => AccountUpdate::Gone,
                };
                let out = r.s.event(Event::Reloaded(update), r.now);
                r.drive(out, &mut input, &mut replies);
            }
        }
    }
}

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

fuzz_target!(|data: &[u8]| run(data));
