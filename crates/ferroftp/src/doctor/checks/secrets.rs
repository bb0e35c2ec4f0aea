//! The TLS certificate and key, and the modes of secret files (key, users file, admin token).

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use super::EXPIRY_WARNING_DAYS;
use crate::config::Config;
use crate::doctor::{Check, Level, Report};
use crate::tls::{self, Tls, TlsError};

pub(super) fn certificate(config: &Config, r: &mut Report) {
    r.section("TLS certificate");
    if !config.listeners.iter().any(|l| l.mode.offers_tls()) {
        r.add(Check::new(
            Level::Ok,
            "no listener offers TLS: no certificate needed",
        ));
        return;
    }
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        r.add(
            Check::new(
                Level::Warn,
                "no tls.cert / tls.key: a self-signed certificate is generated at each start; clients will not trust it (and it changes at every restart)",
            )
            .fix("a certificate from your CA (e.g. Let's Encrypt) in tls.cert and tls.key; for development: ferroftp cert --self-signed --host NAME --out DIR"),
        );
        return;
    };
    key_permissions(key, r);
    let loaded = match tls::load_pair(cert, key) {
        Ok(loaded) => loaded,
        Err(e) => {
            let fix = match &e {
                TlsError::Validity { .. } => {
                    "renew the certificate (ferroftp picks up new files without a restart)"
                }
                TlsError::Mismatch { .. } => {
                    "tls.key must be the private key of the certificate in tls.cert (check that both files come from the same issuance)"
                }
                TlsError::Read { .. } => {
                    "check the path, and that the service's user may read the file"
                }
                _ => "tls.cert: PEM certificates, leaf first; tls.key: its PEM private key",
            };
            r.add(Check::new(Level::Fail, format!("{e}")).fix(fix));
            return;
        }
    };
    let left = loaded
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let days = left.as_secs() / 86400;
    let summary = format!(
        "certificate {}: for {}; expires {} (in {days} days); SHA-256 {}",
        cert.display(),
        loaded.names.join(", "),
        tls::http_date(loaded.not_after),
        loaded.fingerprint
    );
    if days < EXPIRY_WARNING_DAYS {
        r.add(
            Check::new(
                Level::Warn,
                format!("{summary}: expires in less than {EXPIRY_WARNING_DAYS} days"),
            )
            .fix("renew it (ferroftp picks up new files without a restart)"),
        );
    } else {
        r.add(Check::new(Level::Ok, summary));
    }
    if let Some(leaf) = loaded.key.cert.first() {
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
            if parsed.issuer().as_raw() == parsed.subject().as_raw() {
                r.add(
                    Check::new(
                        Level::Warn,
                        format!(
                            "certificate {} is self-signed: clients refuse it unless given it (curl --cacert, ferroftp doctor --ca) or told to skip verification",
                            cert.display()
                        ),
                    )
                    .fix("fine for testing; for real clients use a certificate from a CA they trust"),
                );
            }
        }
    }
    if let Some(name) = &config.passive.address {
        if name.parse::<IpAddr>().is_err() && !loaded.names.iter().any(|n| name_matches(n, name)) {
            r.add(
                Check::new(
                    Level::Warn,
                    format!(
                        "certificate {} is not for {name:?} (passive.address), the name clients probably use; it is for {}",
                        cert.display(),
                        loaded.names.join(", ")
                    ),
                )
                .fix(format!("get a certificate that names {name}")),
            );
        }
    }
    if config.tls.client_ca.is_some() {
        match Tls::new(&config.tls) {
            Ok(_) => r.add(Check::new(Level::Ok, "tls.client_ca loads")),
            Err(e) => r.add(Check::new(Level::Fail, format!("{e}")).fix(
                "tls.client_ca: a PEM file with the CA certificates that sign client certificates",
            )),
        }
    }
}

/// A certificate name (possibly `*.example.org`) against a host name, case-insensitively.
pub(super) fn name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(base) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == base),
        None => pattern == name,
    }
}

pub(super) fn key_permissions(key: &Path, r: &mut Report) {
    // load_pair says why the file cannot be read.
    let _ = secret_file_mode(
        key,
        "key",
        "the private key",
        "replace the server's identity",
        Recipe::RootGroup,
        r,
    );
}

/// The name of user or group `id` in `/etc/passwd` or `/etc/group` (`name:x:id:...`), or the
/// number when it has none there (NSS-only names are not looked up: no libc call).
pub(super) fn id_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// What a mode lets others than the owner do to a secret file: the level and the words.
/// Owner-only (0600, the README's users file: ferroftp:ferroftp) and group-readable (0640,
/// its config and TLS key: root:ferroftp, so the service reads them through its group) are fine; group-writable and world-readable are not;
/// world-writable fails. `group` names the file's group; `secret` is what reading reveals,
/// `change` what changing it allows.
pub(super) fn mode_verdict(mode: u32, group: &str, secret: &str, change: &str) -> (Level, String) {
    let mut level = Level::Ok;
    let mut problems: Vec<String> = Vec::new();
    if mode & 0o002 != 0 {
        level = Level::Fail;
        problems.push(format!("every local user can change it (and so {change})"));
    } else if mode & 0o020 != 0 {
        level = Level::Warn;
        problems.push(format!(
            "members of group {group} can change it (and so {change})"
        ));
    }
    if mode & 0o004 != 0 {
        level = level.max(Level::Warn);
        problems.push(format!("every local user can read {secret}"));
    }
    if !problems.is_empty() {
        return (level, problems.join("; "));
    }
    let text = if mode & 0o040 != 0 {
        format!("readable by its owner and group {group} only (fine)")
    } else {
        "only its owner can read it".to_owned()
    };
    (Level::Ok, text)
}

/// Who should own a secret file, as README's table in "Running on ports 21 and 990" gives it
/// for that file: the fix doctor suggests.
#[derive(Clone, Copy)]
pub(super) enum Recipe {
    /// The service's own, 0600: the users file (which the server rewrites) and the admin token.
    ServiceOwned,
    /// Root's, read by the service through its group, 0640: the TLS key (and the config).
    RootGroup,
}

impl Recipe {
    /// The commands that give `p` this recipe's owner and mode, and the alternative.
    pub(super) fn fix(self, what: &str, p: &str) -> String {
        match self {
            Self::ServiceOwned => format!(
                "chown ferroftp:ferroftp {p} && chmod 600 {p} (the README's recipe for the {what}: the service's own)"
            ),
            Self::RootGroup => format!(
                "chown root:ferroftp {p} && chmod 640 {p} (the README's recipe for the {what}: root's, read by the service through its group), or chmod 600 {p} owned by the service's user"
            ),
        }
    }
}

/// OK, WARN or FAIL for the mode of a file that only the service should read: `what` names
/// it, `secret` says what others could read and `change` what changing it allows (see
/// [`mode_verdict`]); a fix names `recipe`. An error (the file cannot be read) is the caller's
/// to report.
pub(super) fn secret_file_mode(
    path: &Path,
    what: &str,
    secret: &str,
    change: &str,
    recipe: Recipe,
    r: &mut Report,
) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let (owner, group) = (
        id_name("/etc/passwd", meta.uid()),
        id_name("/etc/group", meta.gid()),
    );
    let (level, verdict) = mode_verdict(mode, &group, secret, change);
    let text = format!(
        "{what} {} has mode {mode:04o} (owner {owner}, group {group}): {verdict}",
        path.display()
    );
    let mut check = Check::new(level, text);
    if level != Level::Ok {
        check = check.fix(recipe.fix(what, &path.display().to_string()));
    }
    r.add(check);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_readable_is_fine_and_world_readable_or_writable_is_not() {
        let v = |mode| mode_verdict(mode, "ferroftp", "the secret", "do harm");
        assert_eq!(v(0o600).0, Level::Ok);
        assert_eq!(v(0o400).0, Level::Ok);
        let (level, text) = v(0o640);
        assert_eq!(level, Level::Ok);
        assert!(text.contains("group ferroftp"), "{text}");
        let (level, text) = v(0o644);
        assert_eq!(level, Level::Warn);
        assert!(
            text.contains("every local user can read the secret"),
            "{text}"
        );
        let (level, text) = v(0o660);
        assert_eq!(level, Level::Warn);
        assert!(
            text.contains("members of group ferroftp can change it"),
            "{text}"
        );
        let (level, text) = v(0o666);
        assert_eq!(level, Level::Fail);
        assert!(
            text.contains("every local user can change it (and so do harm)")
                && text.contains("every local user can read the secret"),
            "{text}"
        );
    }

    #[test]
    fn certificate_names_match_like_clients_do() {
        assert!(name_matches("ftp.example.org", "FTP.example.org"));
        assert!(name_matches("*.example.org", "ftp.example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("ftp.example.org", "example.org"));
    }
}
