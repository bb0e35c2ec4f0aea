//! The verb table: one entry per FTP verb says everything the server knows about it apart from
//! how its arguments parse ([`crate::command`]) and what it does (the session's handler): its
//! name and aliases, its HELP syntax line, its FEAT line, whether it may run before login, its
//! group, and (through [`Verb::name`]) the label metrics and logs use.
//!
//! Adding a verb is one entry in the table below, one arm in `command`'s argument parser and one
//! handler; HELP, FEAT, the before-login rule and the labels follow from the entry.

use crate::listing::MlstFacts;
use crate::reply::Reply;

/// What a verb is about; the session's handlers are grouped the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Logging in and out: USER, PASS, ACCT, REIN, QUIT.
    Access,
    /// Moving around the tree: CWD, CDUP, PWD.
    Navigation,
    /// Data connections, their parameters and what flows over them.
    Transfer,
    /// Changing the tree: make, remove, rename, set times and modes.
    FileOps,
    /// TLS on the control and data connections (RFC 2228, 4217).
    Security,
    /// Questions about the server, the session or a file, answered on the control connection.
    Information,
}

/// Whether a verb may run before the client has logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeforeLogin {
    /// Always: setting up the session (login, TLS, options) or asking about the server.
    Allowed,
    /// Only without an argument: `STAT` tells the session's state, `STAT path` lists a directory.
    WithoutArgument,
    /// Never: it touches files or data connections.
    Refused,
}

/// The line a verb puts into the FEAT reply (RFC 2389), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Not announced (RFC 959 verbs every server has).
    None,
    /// Always announced with this line.
    Always(&'static str),
    /// `MLST` followed by the facts the session has selected (RFC 3659 §7.8).
    MlstFacts,
    /// Announced only where the control connection can be upgraded (explicit FTPS).
    WithAuth(&'static str),
    /// Announced wherever TLS is on offer (explicit or implicit FTPS).
    WithTls(&'static str),
}

/// What TLS a listener offers, which decides the security lines of FEAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsOffer {
    /// Plain FTP only.
    None,
    /// Explicit FTPS: the client upgrades with AUTH TLS.
    Explicit,
    /// Implicit FTPS: TLS from the first byte.
    Implicit,
}

/// Everything the table says about one verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerbInfo {
    /// The verb this entry describes.
    pub verb: Verb,
    /// Its name on the wire, in upper case; also its label in metrics and logs.
    pub name: &'static str,
    /// Other names the parser accepts for it (RFC 775's `X` forms).
    pub aliases: &'static [&'static str],
    /// Its syntax, RFC style, for reference documentation.
    pub syntax: &'static str,
    /// The group of commands it belongs to.
    pub group: Group,
    /// Whether it may run before login.
    pub before_login: BeforeLogin,
    /// Its FEAT line.
    pub feature: Feature,
}

/// Builds [`Verb`], [`Verb::ALL`], [`Verb::info`] and [`NAME_COUNT`] from one list, so that a
/// verb cannot exist without its entry.
macro_rules! verb_table {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal $([$($alias:literal),+])?,
            $syntax:literal, $group:ident, $before:ident, $feature:expr;
    )*) => {
        /// An FTP verb this server implements. Aliases (XCWD, ...) are the same verb as their
        /// RFC 959 twins.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Verb {
            $( $(#[$doc])* $variant, )*
        }

        impl Verb {
            /// Every verb, in table (alphabetical) order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// This verb's entry in the table.
            pub const fn info(self) -> &'static VerbInfo {
                match self {
                    $(Self::$variant => &VerbInfo {
                        verb: Self::$variant,
                        name: $name,
                        aliases: &[$($($alias),+)?],
                        syntax: $syntax,
                        group: Group::$group,
                        before_login: BeforeLogin::$before,
                        feature: $feature,
                    },)*
                }
            }
        }

        /// How many names the parser accepts: every verb's name and aliases.
        pub const NAME_COUNT: usize = 0 $(+ 1 $($(+ verb_table!(@one $alias))+)?)*;
    };
    (@one $x:literal) => { 1 };
}

verb_table! {
    /// ABOR: stop the transfer in progress.
    Abor = "ABOR", "ABOR", Transfer, Allowed, Feature::None;
    /// ACCT: account information (accepted and ignored).
    Acct = "ACCT", "ACCT <sp> account-information", Access, Allowed, Feature::None;
    /// ALLO: reserve space (accepted and ignored).
    Allo = "ALLO", "ALLO [<sp> decimal-integer]", Transfer, Refused, Feature::None;
    /// APPE: append to a file.
    Appe = "APPE", "APPE <sp> pathname", Transfer, Refused, Feature::None;
    /// AUTH: upgrade the control connection to TLS (RFC 2228, 4217).
    Auth = "AUTH", "AUTH <sp> TLS", Security, Allowed, Feature::WithAuth("AUTH TLS");
    /// CCC: clear the control channel (RFC 4217 §12).
    Ccc = "CCC", "CCC", Security, Allowed, Feature::None;
    /// CDUP: go to the parent directory.
    Cdup = "CDUP" ["XCUP"], "CDUP", Navigation, Refused, Feature::None;
    /// CWD: change the working directory.
    Cwd = "CWD" ["XCWD"], "CWD <sp> pathname", Navigation, Refused, Feature::None;
    /// DELE: delete a file.
    Dele = "DELE", "DELE <sp> pathname", FileOps, Refused, Feature::None;
    /// EPRT: active data connection to any address (RFC 2428).
    Eprt = "EPRT", "EPRT <sp> |proto|address|port|", Transfer, Refused, Feature::Always("EPRT");
    /// EPSV: passive data connection by port only (RFC 2428).
    Epsv = "EPSV", "EPSV [<sp> 1|2|ALL]", Transfer, Refused, Feature::Always("EPSV");
    /// FEAT: the extensions this server supports (RFC 2389).
    Feat = "FEAT", "FEAT", Information, Allowed, Feature::None;
    /// HELP: the verbs this server knows.
    Help = "HELP", "HELP [<sp> command]", Information, Allowed, Feature::None;
    /// LIST: a directory in `ls -l` form.
    List = "LIST", "LIST [<sp> pathname]", Transfer, Refused, Feature::None;
    /// MDTM: a file's modification time (RFC 3659).
    Mdtm = "MDTM", "MDTM <sp> pathname", Information, Refused, Feature::Always("MDTM");
    /// MFMT: set a file's modification time.
    Mfmt = "MFMT", "MFMT <sp> YYYYMMDDHHMMSS <sp> pathname", FileOps, Refused,
        Feature::Always("MFMT");
    /// MKD: make a directory.
    Mkd = "MKD" ["XMKD"], "MKD <sp> pathname", FileOps, Refused, Feature::None;
    /// MLSD: a directory as machine-readable facts (RFC 3659).
    Mlsd = "MLSD", "MLSD [<sp> pathname]", Transfer, Refused, Feature::None;
    /// MLST: one entry's facts on the control connection (RFC 3659).
    Mlst = "MLST", "MLST [<sp> pathname]", Information, Refused, Feature::MlstFacts;
    /// MODE: the transfer mode (stream only).
    Mode = "MODE", "MODE <sp> S", Transfer, Refused, Feature::None;
    /// NLST: a directory's names only.
    Nlst = "NLST", "NLST [<sp> pathname]", Transfer, Refused, Feature::None;
    /// NOOP: nothing, to keep the connection alive.
    Noop = "NOOP", "NOOP", Information, Allowed, Feature::None;
    /// OPTS: options of other verbs (RFC 2389): UTF8, MLST facts.
    Opts = "OPTS", "OPTS <sp> UTF8 ON|OFF | MLST fact;...", Information, Allowed,
        Feature::Always("UTF8");
    /// PASS: the password.
    Pass = "PASS", "PASS <sp> password", Access, Allowed, Feature::None;
    /// PASV: passive data connection (IPv4).
    Pasv = "PASV", "PASV", Transfer, Refused, Feature::Always("PASV");
    /// PBSZ: protection buffer size, 0 for TLS (RFC 2228).
    Pbsz = "PBSZ", "PBSZ <sp> 0", Security, Allowed, Feature::WithTls("PBSZ");
    /// PORT: active data connection (IPv4).
    Port = "PORT", "PORT <sp> h1,h2,h3,h4,p1,p2", Transfer, Refused, Feature::None;
    /// PROT: data connection protection, clear or private (RFC 2228).
    Prot = "PROT", "PROT <sp> C|S|E|P", Security, Allowed, Feature::WithTls("PROT");
    /// PWD: print the working directory.
    Pwd = "PWD" ["XPWD"], "PWD", Navigation, Refused, Feature::None;
    /// QUIT: end the session.
    Quit = "QUIT", "QUIT", Access, Allowed, Feature::None;
    /// REIN: back to the state right after the greeting.
    Rein = "REIN", "REIN", Access, Allowed, Feature::None;
    /// REST: restart the next transfer at a byte offset (RFC 3659 §5).
    Rest = "REST", "REST <sp> offset", Transfer, Refused, Feature::Always("REST STREAM");
    /// RETR: download a file.
    Retr = "RETR", "RETR <sp> pathname", Transfer, Refused, Feature::None;
    /// RMD: remove a directory.
    Rmd = "RMD" ["XRMD"], "RMD <sp> pathname", FileOps, Refused, Feature::None;
    /// RNFR: the file to rename.
    Rnfr = "RNFR", "RNFR <sp> pathname", FileOps, Refused, Feature::None;
    /// RNTO: its new name.
    Rnto = "RNTO", "RNTO <sp> pathname", FileOps, Refused, Feature::None;
    /// SITE: site-specific commands (HELP, CHMOD).
    Site = "SITE", "SITE <sp> HELP | CHMOD <sp> mode <sp> pathname", FileOps, Refused,
        Feature::None;
    /// SIZE: a file's size in the current TYPE (RFC 3659).
    Size = "SIZE", "SIZE <sp> pathname", Information, Refused, Feature::Always("SIZE");
    /// STAT: the session's state, or a directory listing on the control connection.
    Stat = "STAT", "STAT [<sp> pathname]", Information, WithoutArgument, Feature::None;
    /// STOR: upload a file.
    Stor = "STOR", "STOR <sp> pathname", Transfer, Refused, Feature::None;
    /// STOU: upload under a unique name.
    Stou = "STOU", "STOU [<sp> pathname]", Transfer, Refused, Feature::None;
    /// STRU: the file structure (file only).
    Stru = "STRU", "STRU <sp> F", Transfer, Refused, Feature::None;
    /// SYST: the system type.
    Syst = "SYST", "SYST", Information, Allowed, Feature::None;
    /// TYPE: ASCII or binary.
    Type = "TYPE", "TYPE <sp> A [N] | I | L 8", Transfer, Refused, Feature::None;
    /// USER: the user name.
    User = "USER", "USER <sp> username", Access, Allowed, Feature::None;
}

/// Features of the server as a whole, not of one verb: TVFS, Unix-like path names (RFC 3659 §6).
pub const SERVER_FEATURES: &[&str] = &["TVFS"];

/// Verbs that are recognised but deliberately not implemented (answered with 502).
pub const NOT_IMPLEMENTED: &[&str] = &["SMNT", "ADAT", "MIC", "CONF", "ENC", "LANG", "HOST"];

/// Every name the parser accepts (verbs and aliases), in alphabetical order: the HELP list.
pub const NAMES: [&str; NAME_COUNT] = names(&LOOKUP);

/// Every name with its verb, sorted by name.
const LOOKUP: [(&str, Verb); NAME_COUNT] = sorted_lookup();

/// [`LOOKUP`] with each name packed into a number ([`key`]), in the same order, for a binary
/// search that compares integers instead of strings.
static KEYS: [(u32, Verb); NAME_COUNT] = keys(&LOOKUP);

/// The longest name: anything longer is no verb, without looking.
const MAX_NAME_LEN: usize = 4;

impl Verb {
    /// The verb a name stands for, in any letter case; aliases give their twin.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::from_bytes(name.as_bytes())
    }

    /// [`Verb::from_name`] on the bytes of a control line.
    pub fn from_bytes(name: &[u8]) -> Option<Self> {
        // Every command line comes through here: no allocation, no string compares.
        if !name.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let key = key(name)?;
        KEYS.binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .and_then(|i| KEYS.get(i))
            .map(|(_, verb)| *verb)
    }

    /// Its name on the wire, upper case; this is also its label in metrics and logs.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Its group of commands.
    pub const fn group(self) -> Group {
        self.info().group
    }

    /// Whether it may run before login (see also `Command::allowed_before_login`).
    pub const fn before_login(self) -> BeforeLogin {
        self.info().before_login
    }

    /// Its line in the FEAT reply, if any, for a session with `mlst` facts and `tls` on offer.
    pub fn feat_line(self, mlst: MlstFacts, tls: TlsOffer) -> Option<String> {
        match self.info().feature {
            Feature::None => None,
            Feature::Always(line) => Some(line.to_owned()),
            Feature::MlstFacts => Some(format!("MLST {}", mlst.render(true))),
            Feature::WithAuth(line) => (tls == TlsOffer::Explicit).then(|| line.to_owned()),
            Feature::WithTls(line) => (tls != TlsOffer::None).then(|| line.to_owned()),
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The FEAT lines, sorted: every verb's line plus the server's own features.
pub fn features(mlst: MlstFacts, tls: TlsOffer) -> Vec<String> {
    let mut lines: Vec<String> = Verb::ALL
        .iter()
        .filter_map(|v| v.feat_line(mlst, tls))
        .chain(SERVER_FEATURES.iter().map(|f| (*f).to_owned()))
        .collect();
    lines.sort();
    lines
}

/// The FEAT reply (RFC 2389 §3.2).
pub fn feat_reply(mlst: MlstFacts, tls: TlsOffer) -> Reply {
    Reply::multi(211, "Features:", features(mlst, tls), "End")
}

/// The HELP reply: every name, ten to a line, or whether one topic is a verb this server knows.
/// `topic` is upper case, as the parser leaves it.
pub fn help_reply(topic: Option<&str>) -> Reply {
    match topic {
        None => Reply::multi(
            214,
            "The following commands are recognized:",
            NAMES.chunks(10).map(|c| c.join(" ")),
            "Help OK",
        ),
        Some(t) if Verb::from_name(t).is_some() => Reply::new(
            214,
            format!("{t} is supported; see RFC 959, 2389, 2428 and 3659"),
        ),
        Some(t) => Reply::new(502, format!("Unknown command {t}")),
    }
}

/// [`LOOKUP`], computed from the table when the crate is compiled.
const fn sorted_lookup() -> [(&'static str, Verb); NAME_COUNT] {
    let mut out = [("", Verb::Abor); NAME_COUNT];
    let mut n = 0;
    let mut v = 0;
    while v < Verb::ALL.len() {
        let verb = Verb::ALL[v];
        let info = verb.info();
        out[n] = (info.name, verb);
        n += 1;
        let mut a = 0;
        while a < info.aliases.len() {
            out[n] = (info.aliases[a], verb);
            n += 1;
            a += 1;
        }
        v += 1;
    }
    // Insertion sort: fifty names, once, at compile time.
    let mut i = 1;
    while i < NAME_COUNT {
        let mut j = i;
        while j > 0 && less(out[j].0, out[j - 1].0) {
            let t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    // The lookup relies on these; a table entry that breaks them fails the build here.
    let mut i = 0;
    while i < NAME_COUNT {
        assert!(
            out[i].0.len() <= MAX_NAME_LEN,
            "a verb name is longer than MAX_NAME_LEN"
        );
        assert!(
            i == 0 || less(out[i - 1].0, out[i].0),
            "a verb name is given twice"
        );
        i += 1;
    }
    out
}

/// A name of at most [`MAX_NAME_LEN`] letters as a number, upper-cased, its first letter in the
/// highest byte and zeros after its end, so that numbers sort as the names do.
const fn key(name: &[u8]) -> Option<u32> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut k = 0u32;
    let mut i = 0;
    while i < MAX_NAME_LEN {
        k <<= 8;
        if i < name.len() {
            k |= name[i].to_ascii_uppercase() as u32;
        }
        i += 1;
    }
    Some(k)
}

/// [`LOOKUP`] with packed names.
const fn keys(lookup: &[(&'static str, Verb); NAME_COUNT]) -> [(u32, Verb); NAME_COUNT] {
    let mut out = [(0, Verb::Abor); NAME_COUNT];
    let mut i = 0;
    while i < NAME_COUNT {
        out[i] = match key(lookup[i].0.as_bytes()) {
            Some(k) => (k, lookup[i].1),
            None => panic!("a verb name is longer than MAX_NAME_LEN"),
        };
        i += 1;
    }
    out
}

/// The names of [`LOOKUP`], in its order.
const fn names(lookup: &[(&'static str, Verb); NAME_COUNT]) -> [&'static str; NAME_COUNT] {
    let mut out = [""; NAME_COUNT];
    let mut i = 0;
    while i < NAME_COUNT {
        out[i] = lookup[i].0;
        i += 1;
    }
    out
}

/// Byte order of two strings, usable in a `const fn`.
const fn less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

#[cfg(test)]
mod tests;
