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

use crate::users::{self, AuthError, HashScheme, UserDirectory, UserUpdate};

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

impl Found {
    /// Write the accounts into `users` in one edit, all or none (the users file: one atomic
    /// rewrite); for each account in order, whether it was created rather than updated.
    /// Nothing found: nothing written. BLOCKING (file I/O).
    pub fn write_to(&self, users: &dyn UserDirectory) -> Result<Vec<bool>, AuthError> {
        if self.accounts.is_empty() {
            return Ok(Vec::new());
        }
        let updates: Vec<UserUpdate<'_>> = self
            .accounts
            .iter()
            .map(|a| UserUpdate {
                name: &a.name,
                password_hash: a.password_hash(),
                home: Some(&a.home),
                disabled: Some(a.disabled),
            })
            .collect();
        users.import(&updates)
    }
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
    users::check_user_name(name).map_err(|reason| format!("user name {name:?} {reason}"))?;
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
    let scheme = users::check_password_hash(hash).map_err(|reason| {
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
mod tests;
