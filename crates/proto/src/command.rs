//! Control commands: one line in, a typed [`Command`] out (RFC 959 §4.1, 2228, 2389, 2428, 2640,
//! 3659, 4217). Malformed or unsupported input becomes a [`ParseError`] that names its reply.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use crate::addr;
use crate::error::ParseError;
use crate::listing::{self, MlstFacts};
use crate::verbs::{self, BeforeLogin, NOT_IMPLEMENTED, Verb};

/// A parsed control command. Aliases (XCWD, XPWD, ...) map to their RFC 959 twins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// USER name
    User(String),
    /// PASS password (may be empty)
    Pass(String),
    /// ACCT account
    Acct(String),
    /// QUIT
    Quit,
    /// REIN: back to the state right after the greeting
    Rein,
    /// CWD / XCWD path
    Cwd(String),
    /// CDUP / XCUP
    Cdup,
    /// PWD / XPWD
    Pwd,
    /// MKD / XMKD path
    Mkd(String),
    /// RMD / XRMD path
    Rmd(String),
    /// DELE path
    Dele(String),
    /// RNFR path
    Rnfr(String),
    /// RNTO path
    Rnto(String),
    /// TYPE
    Type(TransferType),
    /// MODE
    Mode(TransferMode),
    /// STRU
    Stru(FileStructure),
    /// PASV
    Pasv,
    /// `EPSV [1|2|ALL]`
    Epsv(EpsvArg),
    /// PORT h1,h2,h3,h4,p1,p2
    Port(SocketAddrV4),
    /// EPRT |proto|addr|port|
    Eprt(SocketAddr),
    /// `LIST [options] [path]`
    List(Option<String>),
    /// `NLST [options] [path]`
    Nlst(Option<String>),
    /// `MLSD [path]`
    Mlsd(Option<String>),
    /// `MLST [path]`
    Mlst(Option<String>),
    /// RETR path
    Retr(String),
    /// STOR path
    Stor(String),
    /// `STOU [name hint]`
    Stou(Option<String>),
    /// APPE path
    Appe(String),
    /// REST offset (STREAM mode restart marker, RFC 3659 §5)
    Rest(u64),
    /// ABOR
    Abor,
    /// SIZE path
    Size(String),
    /// MDTM path
    Mdtm(String),
    /// MFMT time path: set the modification time
    Mfmt(SystemTime, String),
    /// FEAT
    Feat,
    /// OPTS
    Opts(OptsCommand),
    /// SYST
    Syst,
    /// `STAT [path]`
    Stat(Option<String>),
    /// `HELP [topic]`
    Help(Option<String>),
    /// NOOP
    Noop,
    /// ALLO (storage is not pre-allocated; accepted and ignored)
    Allo,
    /// SITE subcommand
    Site(SiteCommand),
    /// AUTH mechanism (RFC 2228)
    Auth(String),
    /// PBSZ size (RFC 2228)
    Pbsz(u64),
    /// PROT level (RFC 2228)
    Prot(ProtLevel),
    /// CCC: clear the control channel (RFC 4217 §12)
    Ccc,
}

impl Command {
    /// The verb this command was given with (aliases give their twin).
    pub fn verb(&self) -> Verb {
        match self {
            Self::User(_) => Verb::User,
            Self::Pass(_) => Verb::Pass,
            Self::Acct(_) => Verb::Acct,
            Self::Quit => Verb::Quit,
            Self::Rein => Verb::Rein,
            Self::Cwd(_) => Verb::Cwd,
            Self::Cdup => Verb::Cdup,
            Self::Pwd => Verb::Pwd,
            Self::Mkd(_) => Verb::Mkd,
            Self::Rmd(_) => Verb::Rmd,
            Self::Dele(_) => Verb::Dele,
            Self::Rnfr(_) => Verb::Rnfr,
            Self::Rnto(_) => Verb::Rnto,
            Self::Type(_) => Verb::Type,
            Self::Mode(_) => Verb::Mode,
            Self::Stru(_) => Verb::Stru,
            Self::Pasv => Verb::Pasv,
            Self::Epsv(_) => Verb::Epsv,
            Self::Port(_) => Verb::Port,
            Self::Eprt(_) => Verb::Eprt,
            Self::List(_) => Verb::List,
            Self::Nlst(_) => Verb::Nlst,
            Self::Mlsd(_) => Verb::Mlsd,
            Self::Mlst(_) => Verb::Mlst,
            Self::Retr(_) => Verb::Retr,
            Self::Stor(_) => Verb::Stor,
            Self::Stou(_) => Verb::Stou,
            Self::Appe(_) => Verb::Appe,
            Self::Rest(_) => Verb::Rest,
            Self::Abor => Verb::Abor,
            Self::Size(_) => Verb::Size,
            Self::Mdtm(_) => Verb::Mdtm,
            Self::Mfmt(..) => Verb::Mfmt,
            Self::Feat => Verb::Feat,
            Self::Opts(_) => Verb::Opts,
            Self::Syst => Verb::Syst,
            Self::Stat(_) => Verb::Stat,
            Self::Help(_) => Verb::Help,
            Self::Noop => Verb::Noop,
            Self::Allo => Verb::Allo,
            Self::Site(_) => Verb::Site,
            Self::Auth(_) => Verb::Auth,
            Self::Pbsz(_) => Verb::Pbsz,
            Self::Prot(_) => Verb::Prot,
            Self::Ccc => Verb::Ccc,
        }
    }

    /// Whether this command may run before login, by its verb's rule in the table.
    pub fn allowed_before_login(&self) -> bool {
        match self.verb().before_login() {
            BeforeLogin::Allowed => true,
            BeforeLogin::Refused => false,
            BeforeLogin::WithoutArgument => !self.has_optional_argument(),
        }
    }

    /// Whether a verb whose argument is optional was given one.
    fn has_optional_argument(&self) -> bool {
        match self {
            Self::List(a)
            | Self::Nlst(a)
            | Self::Mlsd(a)
            | Self::Mlst(a)
            | Self::Stou(a)
            | Self::Stat(a)
            | Self::Help(a) => a.is_some(),
            _ => false,
        }
    }
}

/// TYPE: how file contents are represented on the data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A [N]`: text with CRLF line ends on the wire.
    Ascii,
    /// TYPE I or TYPE L 8: bytes as they are.
    Image,
}

/// MODE: only STREAM is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// MODE S
    Stream,
}

/// STRU: only FILE is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStructure {
    /// STRU F
    File,
}

/// The argument of EPSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the protocol of the control connection.
    Any,
    /// `EPSV 1` or `EPSV 2`.
    Protocol(u8),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

/// PROT levels (RFC 2228 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    /// C: clear
    Clear,
    /// S: safe (integrity only)
    Safe,
    /// E: confidential
    Confidential,
    /// P: private (TLS)
    Private,
}

/// OPTS subcommands (RFC 2389).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptsCommand {
    /// `OPTS UTF8 ON|OFF`
    Utf8(bool),
    /// `OPTS MLST fact;fact;`: choose the facts MLSx replies carry.
    Mlst(MlstFacts),
}

/// SITE subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteCommand {
    /// SITE HELP
    Help,
    /// SITE CHMOD mode path (mode in octal)
    Chmod(u32, String),
}

/// Parse one control line (line ending and Telnet sequences already removed).
///
/// The verb is case-insensitive and looked up in the [verb table](crate::verbs); then that
/// verb's argument parser runs. The argument is everything after the first space, kept as it
/// is, so that path names may start or end with spaces.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (verb_bytes, arg_bytes) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if verb_bytes.is_empty() {
        return Err(if line.iter().all(|&b| b == b' ') {
            ParseError::Empty
        } else {
            ParseError::Unknown(printable(line))
        });
    }
    if verb_bytes.len() > 8 || !verb_bytes.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown(printable(verb_bytes)));
    }
    let arg = match arg_bytes {
        Some(bytes) => Some(
            std::str::from_utf8(bytes)
                .map_err(|_| ParseError::Syntax("Argument is not valid UTF-8 (RFC 2640)".into()))?,
        ),
        None => None,
    };
    // A lone space after the verb counts as no argument ("LIST ", "PASS " from some clients).
    let arg = arg.filter(|a| !a.is_empty());
    match Verb::from_bytes(verb_bytes) {
        Some(verb) => parse_arguments(verb, arg),
        None => {
            let name = String::from_utf8_lossy(verb_bytes).to_ascii_uppercase();
            Err(if NOT_IMPLEMENTED.contains(&name.as_str()) {
                ParseError::NotImplemented(name)
            } else {
                ParseError::Unknown(name)
            })
        }
    }
}

/// Each verb's argument parser: `arg` is what follows the verb and its space, `None` if nothing.
fn parse_arguments(verb: Verb, arg: Option<&str>) -> Result<Command, ParseError> {
    let path = |what: &str| -> Result<String, ParseError> {
        arg.map(str::to_owned)
            .ok_or_else(|| ParseError::Syntax(format!("{what} needs a path argument")))
    };
    let none = |cmd: Command| -> Result<Command, ParseError> {
        match arg.map(str::trim) {
            None | Some("") => Ok(cmd),
            Some(_) => Err(ParseError::Syntax(format!("{verb} takes no argument"))),
        }
    };
    match verb {
        Verb::User => Ok(Command::User(
            arg.ok_or_else(|| ParseError::Syntax("USER needs a user name".into()))?
                .to_owned(),
        )),
        Verb::Pass => Ok(Command::Pass(arg.unwrap_or("").to_owned())),
        Verb::Acct => Ok(Command::Acct(arg.unwrap_or("").to_owned())),
        Verb::Quit => Ok(Command::Quit),
        Verb::Rein => none(Command::Rein),
        Verb::Cwd => Ok(Command::Cwd(path("CWD")?)),
        Verb::Cdup => Ok(Command::Cdup),
        Verb::Pwd => Ok(Command::Pwd),
        Verb::Mkd => Ok(Command::Mkd(path("MKD")?)),
        Verb::Rmd => Ok(Command::Rmd(path("RMD")?)),
        Verb::Dele => Ok(Command::Dele(path("DELE")?)),
        Verb::Rnfr => Ok(Command::Rnfr(path("RNFR")?)),
        Verb::Rnto => Ok(Command::Rnto(path("RNTO")?)),
        Verb::Type => parse_type(arg),
        Verb::Mode => match arg.map(|a| a.trim().to_ascii_uppercase()).as_deref() {
            Some("S") => Ok(Command::Mode(TransferMode::Stream)),
            Some("B" | "C" | "Z") => Err(ParseError::UnsupportedParameter(
                "Only MODE S (stream) is supported".into(),
            )),
            _ => Err(ParseError::Syntax("MODE needs S, B or C".into())),
        },
        Verb::Stru => match arg.map(|a| a.trim().to_ascii_uppercase()).as_deref() {
            Some("F") => Ok(Command::Stru(FileStructure::File)),
            Some("R" | "P") => Err(ParseError::UnsupportedParameter(
                "Only STRU F (file) is supported".into(),
            )),
            _ => Err(ParseError::Syntax("STRU needs F, R or P".into())),
        },
        Verb::Pasv => Ok(Command::Pasv),
        Verb::Epsv => match arg.map(|a| a.trim().to_ascii_uppercase()).as_deref() {
            None | Some("") => Ok(Command::Epsv(EpsvArg::Any)),
            Some("ALL") => Ok(Command::Epsv(EpsvArg::All)),
            Some("1") => Ok(Command::Epsv(EpsvArg::Protocol(1))),
            Some("2") => Ok(Command::Epsv(EpsvArg::Protocol(2))),
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                Err(ParseError::UnsupportedProtocol)
            }
            Some(_) => Err(ParseError::Syntax("EPSV takes 1, 2 or ALL".into())),
        },
        Verb::Port => Ok(Command::Port(addr::parse_port(arg.unwrap_or(""))?)),
        Verb::Eprt => Ok(Command::Eprt(addr::parse_eprt(arg.unwrap_or(""))?)),
        Verb::List => Ok(Command::List(strip_list_options(arg))),
        Verb::Nlst => Ok(Command::Nlst(strip_list_options(arg))),
        Verb::Mlsd => Ok(Command::Mlsd(arg.map(str::to_owned))),
        Verb::Mlst => Ok(Command::Mlst(arg.map(str::to_owned))),
        Verb::Retr => Ok(Command::Retr(path("RETR")?)),
        Verb::Stor => Ok(Command::Stor(path("STOR")?)),
        Verb::Stou => Ok(Command::Stou(arg.map(str::to_owned))),
        Verb::Appe => Ok(Command::Appe(path("APPE")?)),
        Verb::Rest => {
            let a = arg.map(str::trim).unwrap_or("");
            if a.is_empty() || a.len() > 20 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Syntax("REST needs a byte offset".into()));
            }
            a.parse()
                .map(Command::Rest)
                .map_err(|_| ParseError::Syntax("REST offset is too large".into()))
        }
        Verb::Abor => Ok(Command::Abor),
        Verb::Size => Ok(Command::Size(path("SIZE")?)),
        Verb::Mdtm => Ok(Command::Mdtm(path("MDTM")?)),
        Verb::Mfmt => parse_mfmt(arg),
        Verb::Feat => none(Command::Feat),
        Verb::Opts => parse_opts(arg),
        Verb::Syst => none(Command::Syst),
        Verb::Stat => Ok(Command::Stat(strip_list_options(arg))),
        Verb::Help => Ok(Command::Help(arg.map(|a| a.trim().to_ascii_uppercase()))),
        Verb::Noop => Ok(Command::Noop),
        Verb::Allo => Ok(Command::Allo),
        Verb::Site => parse_site(arg),
        Verb::Auth => Ok(Command::Auth(
            arg.ok_or_else(|| ParseError::Syntax("AUTH needs a mechanism".into()))?
                .trim()
                .to_ascii_uppercase(),
        )),
        Verb::Pbsz => {
            let a = arg.map(str::trim).unwrap_or("");
            a.parse::<u64>()
                .map(Command::Pbsz)
                .map_err(|_| ParseError::Syntax("PBSZ needs a number".into()))
        }
        Verb::Prot => match arg.map(|a| a.trim().to_ascii_uppercase()).as_deref() {
            Some("C") => Ok(Command::Prot(ProtLevel::Clear)),
            Some("S") => Ok(Command::Prot(ProtLevel::Safe)),
            Some("E") => Ok(Command::Prot(ProtLevel::Confidential)),
            Some("P") => Ok(Command::Prot(ProtLevel::Private)),
            _ => Err(ParseError::Syntax("PROT needs C, S, E or P".into())),
        },
        Verb::Ccc => none(Command::Ccc),
    }
}

fn parse_mfmt(arg: Option<&str>) -> Result<Command, ParseError> {
    let a = arg.unwrap_or("");
    let (time, path) = a
        .split_once(' ')
        .ok_or_else(|| ParseError::Syntax("MFMT needs YYYYMMDDHHMMSS and a path".into()))?;
    let time = listing::parse_timeval(time)
        .ok_or_else(|| ParseError::Syntax("MFMT time must be YYYYMMDDHHMMSS (UTC)".into()))?;
    if path.is_empty() {
        return Err(ParseError::Syntax("MFMT needs a path".into()));
    }
    Ok(Command::Mfmt(time, path.to_owned()))
}

fn parse_type(arg: Option<&str>) -> Result<Command, ParseError> {
    let arg = arg
        .map(|a| a.trim().to_ascii_uppercase())
        .unwrap_or_default();
    let mut parts = arg.split_whitespace();
    let code = parts.next();
    let param = parts.next();
    if parts.next().is_some() {
        return Err(ParseError::Syntax(
            "TYPE takes at most two arguments".into(),
        ));
    }
    match (code, param) {
        (Some("A"), None | Some("N")) => Ok(Command::Type(TransferType::Ascii)),
        (Some("I"), None) | (Some("L"), Some("8")) => Ok(Command::Type(TransferType::Image)),
        (Some("A" | "E"), Some("T" | "C")) | (Some("E"), None | Some("N")) => Err(
            ParseError::UnsupportedParameter("Only TYPE A, A N, I and L 8 are supported".into()),
        ),
        (Some("L"), Some(n)) if n.bytes().all(|b| b.is_ascii_digit()) => Err(
            ParseError::UnsupportedParameter("Only byte size 8 is supported (TYPE L 8)".into()),
        ),
        _ => Err(ParseError::Syntax("TYPE needs A, E, I or L n".into())),
    }
}

fn parse_opts(arg: Option<&str>) -> Result<Command, ParseError> {
    let arg = arg.unwrap_or("").trim();
    let (name, value) = match arg.split_once(' ') {
        Some((n, v)) => (n, v.trim()),
        None => (arg, ""),
    };
    match name.to_ascii_uppercase().as_str() {
        "UTF8" | "UTF-8" => match value.to_ascii_uppercase().as_str() {
            "ON" | "" => Ok(Command::Opts(OptsCommand::Utf8(true))),
            "OFF" => Ok(Command::Opts(OptsCommand::Utf8(false))),
            _ => Err(ParseError::Syntax("OPTS UTF8 takes ON or OFF".into())),
        },
        "MLST" => Ok(Command::Opts(OptsCommand::Mlst(MlstFacts::parse(value)))),
        "" => Err(ParseError::Syntax("OPTS needs a command name".into())),
        _ => Err(ParseError::Syntax(format!("OPTS {name} is not supported"))),
    }
}

fn parse_site(arg: Option<&str>) -> Result<Command, ParseError> {
    let arg = arg.unwrap_or("").trim_start();
    let (sub, rest) = match arg.split_once(' ') {
        Some((s, r)) => (s, Some(r)),
        None => (arg, None),
    };
    match sub.to_ascii_uppercase().as_str() {
        "HELP" | "" => Ok(Command::Site(SiteCommand::Help)),
        "CHMOD" => {
            let rest = rest.unwrap_or("").trim_start();
            let (mode, path) = rest.split_once(' ').ok_or_else(|| {
                ParseError::Syntax("SITE CHMOD needs an octal mode and a path".into())
            })?;
            if mode.is_empty() || mode.len() > 4 {
                return Err(ParseError::Syntax(
                    "SITE CHMOD mode must be octal, like 644".into(),
                ));
            }
            let mode = u32::from_str_radix(mode, 8).map_err(|_| {
                ParseError::Syntax("SITE CHMOD mode must be octal, like 644".into())
            })?;
            if path.is_empty() {
                return Err(ParseError::Syntax("SITE CHMOD needs a path".into()));
            }
            Ok(Command::Site(SiteCommand::Chmod(mode, path.to_owned())))
        }
        other => Err(ParseError::Unknown(format!(
            "SITE {}",
            printable(other.as_bytes())
        ))),
    }
}

/// LIST and NLST take `ls`-style options from many clients (`LIST -la`); they are dropped, and
/// what follows is the path. A name that itself starts with '-' can be given as `./-name`.
fn strip_list_options(arg: Option<&str>) -> Option<String> {
    let mut rest = arg?.trim_start();
    while rest.starts_with('-') {
        match rest.find(' ') {
            Some(i) => rest = rest[i + 1..].trim_start(),
            None => return None,
        }
    }
    (!rest.is_empty()).then(|| rest.to_owned())
}

/// A short, printable form of client bytes for error messages.
fn printable(bytes: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(24)
        .collect();
    s
}

/// The names this crate parses (verbs and aliases), sorted, as HELP lists them; derived from
/// the [verb table](crate::verbs).
pub const VERBS: &[&str] = &verbs::NAMES;

#[cfg(test)]
mod tests;
