//! `ferroftp import-users`: accounts from another server's user files, with their password
//! hashes and homes, so that they move to ferroftp without a password reset.
//!
//! Sources:
//! - a ProFTPD `AuthUserFile` (as `ftpasswd` writes it): passwd format,
//!   `user:hash:uid:gid:gecos:home:shell`;
//! - a Pure-FTPd `pureftpd.passwd` (as `pure-pw` writes it): `user:hash:uid:gid:gecos:home:`
//!   then bandwidth, ratio, quota, IP and time fields, which ferroftp has no use for. A home
//!   that `pure-pw -d` wrote as `/home/joe/./` means "confined to /home/joe";
//! - the system's `/etc/passwd` (homes) and `/etc/shadow` (hashes), for named users only.
//!
//! Hashes are kept as they are when ferroftp verifies them (bcrypt, SHA-512-crypt,
//! SHA-256-crypt, MD5-crypt, argon2); an account with another kind (yescrypt, scrypt, DES) is
//! skipped with the reason. A locked password (`!` before the hash, as `passwd -l`,
//! `usermod -L` and `ftpasswd --lock` write) is imported with `disabled = true`, keeping the
//! hash, so that unlocking it later restores the same password; an entry without any hash
//! (`*`, `!`, `!!`, or an empty field, which means "no password") is skipped. Errors name the
//! file and the line and never show a hash.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::auth::{self, HashScheme};

/// Where accounts come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A ProFTPD `AuthUserFile`.
    ProFtpd(PathBuf),
    /// A Pure-FTPd `pureftpd.passwd`.
    PureFtpd(PathBuf),
    /// The system's account files.
    System {
        /// `/etc/passwd` or a copy: names and homes (and hashes on systems without shadow).
        passwd: PathBuf,
        /// `/etc/shadow` or a copy: the hashes.
        shadow: PathBuf,
    },
}

impl Source {
    /// The file the accounts (and their homes) are read from.
    pub fn path(&self) -> &Path {
        match self {
            Source::ProFtpd(p) | Source::PureFtpd(p) => p,
            Source::System { passwd, .. } => passwd,
        }
    }
}

/// An account ready to go into the users file.
#[derive(Clone)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// The kind of its hash.
    pub scheme: HashScheme,
    /// The home directory for the users file.
    pub home: PathBuf,
    /// Whether it is imported disabled (its password was locked, or the account expired).
    pub disabled: bool,
    /// Where it was read: `FILE line N`.
    pub origin: String,
    /// What an administrator should know about it (confinement, why it is disabled).
    pub notes: Vec<String>,
    hash: String,
}

impl Account {
    /// The password hash, exactly as the source file has it (without a lock mark).
    pub fn password_hash(&self) -> &str {
        &self.hash
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("home", &self.home)
            .field("disabled", &self.disabled)
            .field("origin", &self.origin)
            .field("notes", &self.notes)
            .field("hash", &"<redacted>")
            .finish()
    }
}

/// An account that is not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The user name.
    pub name: String,
    /// Why, starting with `FILE line N: ` when the account was found.
    pub reason: String,
}

/// What a source holds, in file order (or in the order of the names asked for).
#[derive(Debug, Default)]
pub struct Found {
    /// The accounts that can be imported.
    pub accounts: Vec<Account>,
    /// The accounts that cannot, with the reason.
    pub skipped: Vec<Skipped>,
}

/// A source that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A line is not of the file's format.
    #[error("{}: line {line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong (never the line's text: it holds a hash).
        message: String,
    },
    /// The request makes no sense (`--system` without names).
    #[error("{0}")]
    Usage(&'static str),
}

/// What to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Only these users (in this order); empty = every account of the file (not allowed for
    /// [`Source::System`]).
    pub names: &'a [String],
    /// Put each home at `DIR/NAME` instead of the home the source gives.
    pub home_root: Option<&'a Path>,
}

/// The format of a passwd-like file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    ProFtpd,
    PureFtpd,
    Passwd,
    Shadow,
}

impl Format {
    /// (fewest, most) fields of a line, and the layout for messages.
    fn fields(self) -> (usize, usize, &'static str) {
        match self {
            Format::ProFtpd | Format::Passwd => (7, 7, "user:password:uid:gid:gecos:home:shell"),
            Format::PureFtpd => (
                6,
                usize::MAX,
                "user:password:uid:gid:gecos:home:(bandwidth, ratio, quota, IP and time fields)",
            ),
            Format::Shadow => (
                9,
                9,
                "user:password:lastchange:min:max:warn:inactive:expire:reserved",
            ),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Format::ProFtpd => "a ProFTPD AuthUserFile",
            Format::PureFtpd => "a Pure-FTPd pureftpd.passwd",
            Format::Passwd => "a passwd file",
            Format::Shadow => "a shadow file",
        }
    }
}

/// One account line: its 1-based number and its fields.
struct Line<'a> {
    number: usize,
    fields: Vec<&'a str>,
}

/// The account lines of `text`: blank lines and `#` comments are skipped (and, in passwd and
/// shadow files, NIS `+`/`-` entries).
fn lines<'a>(path: &Path, text: &'a str, format: Format) -> Result<Vec<Line<'a>>, ImportError> {
    let (fewest, most, layout) = format.fields();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if matches!(format, Format::Passwd | Format::Shadow)
            && (line.starts_with('+') || line.starts_with('-'))
        {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let err = |message: String| ImportError::Line {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        if fields.len() < fewest || fields.len() > most {
            let wanted = if fewest == most {
                format!("{fewest}")
            } else {
                format!("at least {fewest}")
            };
            return Err(err(format!(
                "expected {wanted} fields separated by \":\" ({layout}), found {}; is this {}?",
                fields.len(),
                format.describe()
            )));
        }
        if fields[0].is_empty() {
            return Err(err("the user name (first field) is empty".to_owned()));
        }
        out.push(Line {
            number: i + 1,
            fields,
        });
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, ImportError> {
    fs::read_to_string(path).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Read the accounts of `source` that `options` selects.
pub fn read_accounts(source: &Source, options: Options<'_>) -> Result<Found, ImportError> {
    let (format, path) = match source {
        Source::ProFtpd(p) => (Format::ProFtpd, p),
        Source::PureFtpd(p) => (Format::PureFtpd, p),
        Source::System { passwd, .. } => (Format::Passwd, passwd),
    };
    if format == Format::Passwd && options.names.is_empty() {
        return Err(ImportError::Usage(
            "--system imports only the users named on the command line: a system has many \
             accounts (root, daemons) that must never become FTP users",
        ));
    }
    let text = read(path)?;
    let records = lines(path, &text, format)?;
    let shadow_text;
    let mut shadow: HashMap<&str, Line<'_>> = HashMap::new();
    if let Source::System {
        shadow: shadow_path,
        ..
    } = source
    {
        shadow_text = read(shadow_path)?;
        for line in lines(shadow_path, &shadow_text, Format::Shadow)? {
            shadow.entry(line.fields[0]).or_insert(line);
        }
    }
    let shadow_path = match source {
        Source::System { shadow, .. } => Some(shadow.as_path()),
        _ => None,
    };

    // The first line of a name is the account, as for getpwnam(3) and the FTP servers.
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        first.entry(r.fields[0]).or_insert(i);
    }
    let mut found = Found::default();
    let take = |r: &Line<'_>, found: &mut Found| {
        let name = r.fields[0];
        let origin = format!("{} line {}", path.display(), r.number);
        let entry = account(
            format,
            r,
            &origin,
            path,
            shadow.get(name).map(|s| (s, shadow_path.unwrap_or(path))),
            options.home_root,
        );
        match entry {
            Ok(account) => found.accounts.push(account),
            Err(reason) => found.skipped.push(Skipped {
                name: name.to_owned(),
                reason: format!("{origin}: {reason}"),
            }),
        }
    };
    if options.names.is_empty() {
        for (i, r) in records.iter().enumerate() {
            let name = r.fields[0];
            match first.get(name) {
                Some(&f) if f != i => found.skipped.push(Skipped {
                    name: name.to_owned(),
                    reason: format!(
                        "{} line {}: a second entry for this user (line {} was imported)",
                        path.display(),
                        r.number,
                        records[f].number
                    ),
                }),
                _ => take(r, &mut found),
            }
        }
    } else {
        let mut seen = std::collections::HashSet::new();
        for name in options.names {
            if !seen.insert(name.as_str()) {
                continue;
            }
            match first.get(name.as_str()) {
                Some(&i) => take(&records[i], &mut found),
                None => found.skipped.push(Skipped {
                    name: name.clone(),
                    reason: format!("not found in {}", path.display()),
                }),
            }
        }
    }
    Ok(found)
}

/// The account of one line, or why it cannot be imported.
fn account(
    format: Format,
    record: &Line<'_>,
    origin: &str,
    path: &Path,
    shadow: Option<(&Line<'_>, &Path)>,
    home_root: Option<&Path>,
) -> Result<Account, String> {
    let name = record.fields[0];
    auth::check_user_name(name).map_err(|reason| format!("user name {name:?} {reason}"))?;
    let mut notes = Vec::new();
    let mut disabled = false;

    // The password field, and the file it came from.
    let (field, field_file) = match (format, record.fields[1]) {
        (Format::Passwd, "x") => match shadow {
            Some((line, shadow_path)) => {
                if let Some(note) = expired(line.fields[7]) {
                    disabled = true;
                    notes.push(format!("disabled: {note} in {}", shadow_path.display()));
                }
                (line.fields[1], shadow_path)
            }
            None => {
                return Err(
                    "its password is in the shadow file (\"x\"), which has no entry for it"
                        .to_owned(),
                );
            }
        },
        (_, "x") => {
            return Err(
                "its password field is \"x\" (the hash is kept elsewhere, in a shadow file: \
                 see --system)"
                    .to_owned(),
            );
        }
        (_, field) => (field, path),
    };
    if field.is_empty() {
        return Err(
            "its password field is empty (no password at all): not imported, set one with \
             `ferroftp passwd`"
                .to_owned(),
        );
    }
    let hash = field.trim_start_matches('!');
    let locked = hash.len() < field.len();
    if hash.is_empty() || hash.starts_with('*') {
        return Err(
            "it has no password hash (\"*\", \"!\" or \"!!\": locked, or password logins \
             disabled): set one with `ferroftp passwd`"
                .to_owned(),
        );
    }
    let scheme = auth::check_password_hash(hash).map_err(|reason| {
        if hash.starts_with('$') {
            reason
        } else {
            "its password field is not a password hash that ferroftp verifies (bcrypt, \
             SHA-512/SHA-256/MD5-crypt or argon2)"
                .to_owned()
        }
    })?;
    if locked {
        disabled = true;
        notes.push(format!(
            "disabled: the password is locked (\"!\") in {}; set disabled = false to let the \
             user in with the same password",
            field_file.display()
        ));
    }

    let home = match home_root {
        Some(root) => root.join(name),
        None => source_home(format, record.fields[5], &mut notes)?,
    };
    Ok(Account {
        name: name.to_owned(),
        scheme,
        home,
        disabled,
        origin: origin.to_owned(),
        notes,
        hash: hash.to_owned(),
    })
}

/// The home that the source gives, as an absolute path for the users file.
fn source_home(format: Format, field: &str, notes: &mut Vec<String>) -> Result<PathBuf, String> {
    if field.is_empty() {
        return Err("it has no home directory: give --home-root DIR".to_owned());
    }
    if !field.starts_with('/') {
        return Err(format!(
            "its home {field:?} is not an absolute path: give --home-root DIR"
        ));
    }
    let mut home = field;
    if format == Format::PureFtpd {
        // pure-pw -d writes HOME/./: the user is confined to HOME. /a/./b confines to /a and
        // starts in b; without "/./" (pure-pw -D) the user was not confined at all.
        if let Some((jail, start)) = field.split_once("/./") {
            home = jail;
            let start = start.trim_matches('/');
            if !start.is_empty() {
                notes.push(format!(
                    "Pure-FTPd started this user in {start:?} inside the home; ferroftp starts at the top of the home"
                ));
            }
        } else if let Some(jail) = field.strip_suffix("/.") {
            home = jail;
        } else {
            notes.push(
                "Pure-FTPd did not confine this user to the home (pure-pw -D); ferroftp does"
                    .to_owned(),
            );
        }
    }
    let trimmed = home.trim_end_matches('/');
    let home = if trimmed.is_empty() { "/" } else { trimmed };
    if home == "/" {
        notes.push("the home is / : the whole file system".to_owned());
    }
    Ok(PathBuf::from(home))
}

/// Whether a shadow `expire` field (days since 1970-01-01; empty = never) has passed.
fn expired(field: &str) -> Option<String> {
    let day: i64 = field.trim().parse().ok()?;
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        / 86400;
    let today = i64::try_from(today).ok()?;
    if day > today {
        return None;
    }
    let date = time::Date::from_julian_day(i32::try_from(day + 2_440_588).ok()?).ok()?;
    Some(format!("the account expired on {date}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA512: &str = "$6$saltsaltsaltsalt$dJX0KuyM7nCXuBPN.nYtdrJDotQEB1rFBumzix6FHzliKxLBinGY49pMJNvCoNf9fHmNyZ1IgX/glbcKhuXoh.";
    const MD5: &str = "$1$saltsalt$ZliGyAN3DciDHEkDboonh/";
    const BCRYPT: &str = "$2y$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn proftpd_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "# ftpasswd file\n\
             alice:{SHA512}:1001:1001:Alice:/srv/ftp/alice/:/bin/false\n\
             \n\
             bob:!{MD5}:1002:1002::/srv/ftp/bob:/sbin/nologin\n\
             carol:*:1003:1003::/srv/ftp/carol:/bin/false\n\
             dave:$y$j9T$abc$def:1004:1004::/srv/ftp/dave:/bin/false\n\
             erin:{BCRYPT}:1005:1005::relative:/bin/false\n\
             alice:{MD5}:1001:1001::/elsewhere:/bin/false\n"
        );
        let path = write(dir.path(), "ftpd.passwd", &text);
        let found =
            read_accounts(&Source::ProFtpd(path.clone()), Options::default()).expect("read");
        let names: Vec<_> = found.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        let alice = &found.accounts[0];
        assert_eq!(alice.password_hash(), SHA512);
        assert_eq!(alice.scheme, HashScheme::Sha512Crypt);
        assert_eq!(alice.home, Path::new("/srv/ftp/alice"));
        assert!(!alice.disabled);
        assert_eq!(alice.origin, format!("{} line 2", path.display()));
        let bob = &found.accounts[1];
        assert_eq!(bob.password_hash(), MD5);
        assert!(bob.disabled);
        assert!(bob.notes[0].contains("locked"), "{:?}", bob.notes);

        let skipped: Vec<_> = found
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped[0].1.contains("line 5: it has no password hash"),
            "{skipped:?}"
        );
        assert!(
            skipped[1]
                .1
                .contains("line 6: yescrypt ($y$) hashes are not supported"),
            "{skipped:?}"
        );
        assert!(
            skipped[2]
                .1
                .contains("line 7: its home \"relative\" is not an absolute path"),
            "{skipped:?}"
        );
        assert!(
            skipped[3]
                .1
                .contains("line 8: a second entry for this user (line 2 was imported)"),
            "{skipped:?}"
        );
        let debug = format!("{found:?}");
        for h in [SHA512, MD5, BCRYPT, "$y$j9T$abc$def"] {
            assert!(!debug.contains(h), "{debug}");
            assert!(!skipped.iter().any(|(_, r)| r.contains(h)));
        }

        // Named users only, in the order given; unknown names are reported.
        let names = ["bob".to_owned(), "nobody".to_owned(), "bob".to_owned()];
        let found = read_accounts(
            &Source::ProFtpd(path.clone()),
            Options {
                names: &names,
                home_root: Some(Path::new("/data")),
            },
        )
        .expect("read");
        assert_eq!(found.accounts.len(), 1);
        assert_eq!(found.accounts[0].home, Path::new("/data/bob"));
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].name, "nobody");
        assert!(found.skipped[0].reason.starts_with("not found in "));
    }

    #[test]
    fn malformed_lines_name_file_and_line_without_the_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "ftpd.passwd",
            &format!("alice:{SHA512}:1:1::/a:/bin/sh\nbob:{MD5}:1:1:/b\n"),
        );
        let err = read_accounts(&Source::ProFtpd(path.clone()), Options::default())
            .expect_err("malformed")
            .to_string();
        assert!(
            err.starts_with(&format!("{}: line 2: expected 7 fields", path.display())),
            "{err}"
        );
        assert!(!err.contains(MD5), "{err}");

        let path = write(dir.path(), "pure", &format!("alice:{SHA512}:1:1:\n"));
        let err = read_accounts(&Source::PureFtpd(path), Options::default())
            .expect_err("malformed")
            .to_string();
        assert!(err.contains("line 1: expected at least 6 fields"), "{err}");
    }

    #[test]
    fn pureftpd_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "joe:{BCRYPT}:2001:2001::/home/ftpusers/joe/./::::::::::::\n\
             ann:{SHA512}:2001:2001:Ann:/home/ftpusers/./ann/::::::::::::\n\
             roam:{MD5}:2001:2001::/home/roam::::::::::::\n\
             root:{MD5}:2001:2001::/./::::::::::::\n\
             s:$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D:2001:2001::/x/./::::::::::::\n"
        );
        let path = write(dir.path(), "pureftpd.passwd", &text);
        let found = read_accounts(&Source::PureFtpd(path), Options::default()).expect("read");
        let got: Vec<_> = found
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.home.to_str().expect("utf-8"), a.scheme))
            .collect();
        assert_eq!(
            got,
            [
                ("joe", "/home/ftpusers/joe", HashScheme::Bcrypt),
                ("ann", "/home/ftpusers", HashScheme::Sha512Crypt),
                ("roam", "/home/roam", HashScheme::Md5Crypt),
                ("root", "/", HashScheme::Md5Crypt),
            ]
        );
        assert!(found.accounts[0].notes.is_empty());
        assert!(found.accounts[1].notes[0].contains("started this user in \"ann\""));
        assert!(found.accounts[2].notes[0].contains("did not confine"));
        assert!(found.accounts[3].notes[0].contains("whole file system"));
        assert_eq!(found.skipped.len(), 1);
        assert!(
            found.skipped[0]
                .reason
                .contains("scrypt ($7$) hashes are not supported")
        );
    }

    #[test]
    fn system_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = write(
            dir.path(),
            "passwd",
            "root:x:0:0:root:/root:/bin/bash\n\
             alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
             bob:x:1001:1001::/home/bob:/bin/bash\n\
             old:x:1002:1002::/home/old:/bin/bash\n\
             nosh:x:1003:1003::/home/nosh:/bin/bash\n\
             empty:x:1004:1004::/home/empty:/bin/bash\n\
             legacy:$1$saltsalt$ZliGyAN3DciDHEkDboonh/:1005:1005::/home/legacy:/bin/sh\n",
        );
        let shadow = write(
            dir.path(),
            "shadow",
            &format!(
                "root:{SHA512}:19000:0:99999:7:::\n\
                 alice:{SHA512}:19000:0:99999:7:::\n\
                 bob:!!:19000:0:99999:7:::\n\
                 old:{MD5}:19000:0:99999:7::1:\n\
                 empty::19000:0:99999:7:::\n"
            ),
        );
        let source = Source::System {
            passwd: passwd.clone(),
            shadow: shadow.clone(),
        };
        assert!(matches!(
            read_accounts(&source, Options::default()),
            Err(ImportError::Usage(_))
        ));
        let names: Vec<String> = ["alice", "bob", "old", "nosh", "empty", "legacy", "nobody"]
            .map(String::from)
            .into();
        let found = read_accounts(
            &source,
            Options {
                names: &names,
                home_root: None,
            },
        )
        .expect("read");
        let got: Vec<_> = found
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.disabled, a.scheme))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", false, HashScheme::Sha512Crypt),
                ("old", true, HashScheme::Md5Crypt),
                ("legacy", false, HashScheme::Md5Crypt),
            ]
        );
        assert_eq!(found.accounts[0].home, Path::new("/home/alice"));
        assert!(
            found.accounts[1].notes[0].contains("expired on 1970-01-02"),
            "{:?}",
            found.accounts[1].notes
        );
        let skipped: Vec<_> = found.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, ["bob", "nosh", "empty", "nobody"]);
        assert!(
            found.skipped[1].reason.contains("no entry"),
            "{:?}",
            found.skipped
        );
        assert!(
            found.skipped[2]
                .reason
                .contains("empty (no password at all)"),
            "{:?}",
            found.skipped
        );
    }
}
