//! `ferroftp doctor`: what stands between a configuration and working transfers.
//!
//! Two modes, both read-only:
//! - [`check_config`]: reads the effective configuration and checks it against this host (ports
//!   that cannot be bound, the passive range and address, the certificate, file permissions),
//!   then prints the firewall rules it needs. Nothing is changed: ports are bound and released
//!   at once, files are only looked at.
//! - [`connect`]: logs in to a running server as a client and runs a listing over PASV and
//!   over EPSV and an upload/download round trip, plain and with TLS, saying which step failed
//!   and why it probably did.
//!
//! Each finding is a [`Check`] (OK, WARN or FAIL, with the fix); a [`Report`] prints them as a
//! checklist and gives the exit status (1 when anything FAILs).

mod checks;
mod client;
mod firewall;
mod state;

use std::fmt;
use std::io::Write;

pub use checks::check_config;
pub use client::{ConnectOptions, connect};
pub use firewall::firewall_rules;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but probably not as intended, or not for every client.
    Warn,
    /// Will not work.
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        })
    }
}

/// One finding: what was checked, how it went and, for problems, how to fix it.
#[derive(Debug, Clone)]
pub struct Check {
    /// How bad it is.
    pub level: Level,
    /// What was found, naming the key, file, port or step.
    pub text: String,
    /// What to do about it (one line each).
    pub fix: Vec<String>,
}

impl Check {
    /// A finding without a fix.
    pub fn new(level: Level, text: impl Into<String>) -> Self {
        Self {
            level,
            text: text.into(),
            fix: Vec::new(),
        }
    }
    /// Add a line saying how to fix it.
    #[must_use]
    pub fn fix(mut self, line: impl Into<String>) -> Self {
        self.fix.push(line.into());
        self
    }
}

/// A checklist in sections, printed as it is filled.
#[derive(Debug, Default)]
pub struct Report {
    /// Each finding with the section it was found in.
    checks: Vec<(String, Check)>,
    section: String,
    out: Vec<String>,
    echo: bool,
}

impl Report {
    /// A report that also prints each line on stdout as it is added (for slow network steps).
    pub fn printing() -> Self {
        Self {
            echo: true,
            ..Self::default()
        }
    }

    fn line(&mut self, line: String) {
        if self.echo {
            // A closed pipe (doctor | head) must not end the checks with a panic.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
        self.out.push(line);
    }

    /// Start a section.
    pub fn section(&mut self, title: &str) {
        if !self.out.is_empty() {
            self.line(String::new());
        }
        self.line(title.to_owned());
        self.section = title.to_owned();
    }

    /// A line of information that is not a check.
    pub fn note(&mut self, text: &str) {
        for l in text.lines() {
            self.line(if l.is_empty() {
                String::new()
            } else {
                format!("  {l}")
            });
        }
    }

    /// Add a finding.
    pub fn add(&mut self, check: Check) {
        self.line(format!("  {:<5} {}", check.level.to_string(), check.text));
        for fix in &check.fix {
            self.line(format!("        fix: {fix}"));
        }
        self.checks.push((self.section.clone(), check));
    }

    /// The findings so far.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().map(|(_, c)| c)
    }

    /// How many findings have this level.
    pub fn count(&self, level: Level) -> usize {
        self.checks().filter(|c| c.level == level).count()
    }

    /// Whether nothing failed.
    pub fn passed(&self) -> bool {
        self.count(Level::Fail) == 0
    }

    /// The summary section: the counts and each FAIL again.
    pub fn summarize(&mut self) {
        let (ok, warn, fail) = (
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail),
        );
        self.section(&format!("Summary: {ok} OK, {warn} WARN, {fail} FAIL"));
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, c)| c.level == Level::Fail)
            .map(|(section, c)| format!("{section}: {}", c.text))
            .collect();
        if failed.is_empty() {
            let text = if warn == 0 {
                "nothing to fix"
            } else {
                "no failures; read the WARN lines above"
            };
            self.note(text);
        }
        for text in failed {
            self.note(&format!("FAIL {text}"));
        }
    }

    /// Everything printed, as text.
    pub fn text(&self) -> String {
        let mut s = self.out.join("\n");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_and_repeats_failures_in_the_summary() {
        let mut r = Report::default();
        r.section("Things");
        r.add(Check::new(Level::Ok, "fine"));
        r.add(Check::new(Level::Fail, "port 21 is taken").fix("stop the other server"));
        r.summarize();
        let text = r.text();
        assert!(!r.passed());
        assert!(text.contains("  OK    fine\n"), "{text}");
        assert!(
            text.contains("  FAIL  port 21 is taken\n        fix: stop the other server\n"),
            "{text}"
        );
        assert!(text.contains("Summary: 1 OK, 0 WARN, 1 FAIL"), "{text}");
        assert!(
            text.ends_with("  FAIL Things: port 21 is taken\n"),
            "{text}"
        );
    }
}
