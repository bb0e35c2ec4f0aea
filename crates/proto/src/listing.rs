//! Directory listings: `LIST` lines in the Unix `ls -l` style that every client parses, MLSx
//! fact lines (RFC 3659 §7), and the `YYYYMMDDHHMMSS` timestamps of MDTM, MFMT and `modify=`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The MLSx facts (RFC 3659 §7) a session asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlstFacts {
    /// type=file|dir|...
    pub kind: bool,
    /// size=bytes
    pub size: bool,
    /// modify=YYYYMMDDHHMMSS
    pub modify: bool,
    /// perm=...
    pub perm: bool,
    /// unix.mode=0755
    pub unix_mode: bool,
}

impl Default for MlstFacts {
    fn default() -> Self {
        Self {
            kind: true,
            size: true,
            modify: true,
            perm: true,
            unix_mode: false,
        }
    }
}

impl MlstFacts {
    /// Parse the fact list of `OPTS MLST` (unknown facts are ignored, as RFC 3659 §7.9 says).
    pub fn parse(list: &str) -> Self {
        let mut facts = Self {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unix_mode: false,
        };
        for fact in list.split(';').map(|f| f.trim().to_ascii_lowercase()) {
            match fact.as_str() {
                "type" => facts.kind = true,
                "size" => facts.size = true,
                "modify" => facts.modify = true,
                "perm" => facts.perm = true,
                "unix.mode" => facts.unix_mode = true,
                _ => {}
            }
        }
        facts
    }

    /// The list as OPTS MLST and FEAT show it; `mark` puts a `*` after the active facts.
    pub fn render(&self, mark: bool) -> String {
        let all = [
            ("type", self.kind),
            ("size", self.size),
            ("modify", self.modify),
            ("perm", self.perm),
            ("unix.mode", self.unix_mode),
        ];
        let mut out = String::new();
        for (name, on) in all {
            if mark {
                out.push_str(name);
                if on {
                    out.push('*');
                }
                out.push(';');
            } else if on {
                out.push_str(name);
                out.push(';');
            }
        }
        out
    }
}

/// What a listing shows of one directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link that could not be followed.
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// The facts of one entry, as the storage layer reports them.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The name to show.
    pub name: &'a str,
    /// File, directory, ...
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, if known.
    pub modified: Option<SystemTime>,
    /// Unix permission bits (the low 12 bits are used).
    pub mode: u32,
    /// Hard link count.
    pub nlink: u64,
    /// The RFC 3659 `perm` fact for the current user, e.g. `"rwadf"`.
    pub perm: &'a str,
}

const SIX_MONTHS: Duration = Duration::from_secs(182 * 24 * 3600);

/// One `LIST` line, `ls -l` style. `now` decides between the `HH:MM` and the year form, as `ls`
/// does for entries older than six months or in the future.
pub fn list_line(f: &Facts<'_>, now: SystemTime) -> String {
    let type_char = match f.kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::File => '-',
        FileKind::Other => '?',
    };
    let mut line = String::with_capacity(64 + f.name.len());
    line.push(type_char);
    line.push_str(&mode_string(f.mode));
    let date = match f.modified {
        Some(t) => ls_date(t, now),
        None => "Jan  1  1970".to_string(),
    };
    line.push_str(&format!(
        " {:>3} ftp      ftp      {:>12} {date} {}",
        f.nlink.max(1),
        f.size,
        f.name
    ));
    line
}

fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        s.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn ls_date(t: SystemTime, now: SystemTime) -> String {
    let dt = to_datetime(t);
    let month = month_abbrev(dt.month());
    let recent = match now.duration_since(t) {
        Ok(age) => age < SIX_MONTHS,
        // Up to an hour in the future still counts as recent (clock skew), like GNU ls.
        Err(e) => e.duration() < Duration::from_secs(3600),
    };
    if recent {
        format!(
            "{month} {:>2} {:02}:{:02}",
            dt.day(),
            dt.hour(),
            dt.minute()
        )
    } else {
        format!("{month} {:>2}  {:>4}", dt.day(), dt.year())
    }
}

fn month_abbrev(m: Month) -> &'static str {
    match m {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    }
}

fn to_datetime(t: SystemTime) -> OffsetDateTime {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Before 1970: round down (toward the past), as for times after it; 0.5 s before
        // the epoch is 23:59:59, not 00:00:00.
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let partial = i64::from(d.subsec_nanos() > 0);
            whole.saturating_add(partial).saturating_neg()
        }
    };
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Render a time as RFC 3659 `time-val`, `YYYYMMDDHHMMSS` in UTC.
pub fn format_timeval(t: SystemTime) -> String {
    let dt = to_datetime(t);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Parse an RFC 3659 `time-val` (`YYYYMMDDHHMMSS[.sss]`, UTC).
pub fn parse_timeval(s: &str) -> Option<SystemTime> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| main.get(r)?.parse::<u32>().ok();
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(num(6..8)?).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(num(8..10)?).ok()?,
        u8::try_from(num(10..12)?).ok()?,
        u8::try_from(num(12..14)?).ok()?,
    )
    .ok()?;
    let mut nanos = 0u32;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nanos = f.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(f.len()).ok()?);
    }
    let secs = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// One MLSx entry: the selected facts, then a space and the name (RFC 3659 §7.2).
/// `kind_override` lets MLSD mark the listed directory itself as `cdir`.
pub fn mlsx_line(f: &Facts<'_>, facts: MlstFacts) -> String {
    let mut out = String::with_capacity(80 + f.name.len());
    if facts.kind {
        out.push_str(match f.kind {
            FileKind::Dir => "type=dir;",
            FileKind::File => "type=file;",
            FileKind::Symlink => "type=OS.unix=symlink;",
            FileKind::Other => "type=OS.unix=special;",
        });
    }
    if facts.size && f.kind != FileKind::Dir {
        out.push_str(&format!("size={};", f.size));
    }
    if facts.modify {
        if let Some(t) = f.modified {
            out.push_str(&format!("modify={};", format_timeval(t)));
        }
    }
    if facts.perm {
        out.push_str(&format!("perm={};", f.perm));
    }
    if facts.unix_mode {
        out.push_str(&format!("UNIX.mode={:04o};", f.mode & 0o7777));
    }
    out.push(' ');
    out.push_str(f.name);
    out
}

#[cfg(test)]
mod pre_epoch_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_before_1970_round_down_like_the_others() {
        let half_before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_timeval(half_before), "19691231235959");
        assert_eq!(
            format_timeval(UNIX_EPOCH - Duration::from_secs(1)),
            "19691231235959"
        );
        assert_eq!(
            format_timeval(UNIX_EPOCH + Duration::from_millis(500)),
            "19700101000000"
        );
        let parsed = parse_timeval("19691231235959.5").unwrap();
        assert_eq!(format_timeval(parsed), "19691231235959");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> SystemTime {
        parse_timeval(s).expect("valid")
    }

    fn facts(name: &str, kind: FileKind, t: &str) -> (String, FileKind, SystemTime) {
        (name.to_string(), kind, at(t))
    }

    #[test]
    fn list_lines_look_like_ls() {
        let (name, kind, t) = facts("my file.txt", FileKind::File, "20261120083000");
        let f = Facts {
            name: &name,
            kind,
            size: 1234,
            modified: Some(t),
            mode: 0o644,
            nlink: 1,
            perm: "r",
        };
        let now = at("20261125000000");
        assert_eq!(
            list_line(&f, now),
            "-rw-r--r--   1 ftp      ftp              1234 Nov 20 08:30 my file.txt"
        );
        let old = Facts {
            modified: Some(at("20200105000000")),
            kind: FileKind::Dir,
            mode: 0o1777,
            ..f
        };
        assert_eq!(
            list_line(&old, now),
            "drwxrwxrwt   1 ftp      ftp              1234 Jan  5  2020 my file.txt"
        );
    }

    #[test]
    fn mlsx_lines_carry_the_chosen_facts() {
        let f = Facts {
            name: "a b",
            kind: FileKind::File,
            size: 7,
            modified: Some(at("20260102030405")),
            mode: 0o640,
            nlink: 1,
            perm: "radfw",
        };
        assert_eq!(
            mlsx_line(&f, MlstFacts::default()),
            "type=file;size=7;modify=20260102030405;perm=radfw; a b"
        );
        let only = MlstFacts {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unix_mode: true,
        };
        assert_eq!(mlsx_line(&f, only), "UNIX.mode=0640; a b");
        let d = Facts {
            kind: FileKind::Dir,
            ..f
        };
        assert!(!mlsx_line(&d, MlstFacts::default()).contains("size="));
    }

    #[test]
    fn timevals_parse_and_reject() {
        assert_eq!(format_timeval(UNIX_EPOCH), "19700101000000");
        assert!(parse_timeval("20261325000000").is_none());
        assert!(parse_timeval("2026010100000").is_none());
        assert!(parse_timeval("20260101000000.").is_none());
        assert_eq!(
            parse_timeval("20260101000000.5")
                .and_then(|t| t.duration_since(at("20260101000000")).ok()),
            Some(Duration::from_millis(500))
        );
    }

    proptest! {
        #[test]
        fn timeval_round_trips(secs in 0u64..253_402_300_799) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            prop_assert_eq!(parse_timeval(&format_timeval(t)), Some(t));
        }

        #[test]
        fn timeval_parser_never_panics(s in "\\PC{0,30}") {
            let _ = parse_timeval(&s);
        }
    }
}
