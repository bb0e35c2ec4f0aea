//! New passwords for the command line: read from the terminal or stdin, or generated.

use std::io::{self, BufRead, IsTerminal};

use rand::Rng;
use rand::rngs::OsRng;

use super::AuthError;

/// Read a new password for `ferroftp passwd`: prompted twice on a terminal, else one line of stdin.
///
/// On a terminal (stdin is a TTY) the password is read without echo, twice, and both must match.
/// Otherwise one line is read from stdin and its line ending (`\n` or `\r\n`) removed.
/// An empty password is refused.
pub fn read_new_password() -> Result<String, AuthError> {
    let password = if io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password("New password: ").map_err(AuthError::ReadPassword)?;
        if first.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        let second =
            rpassword::prompt_password("Retype new password: ").map_err(AuthError::ReadPassword)?;
        if first != second {
            return Err(AuthError::PasswordMismatch);
        }
        first
    } else {
        read_password_line(&mut io::stdin().lock())?
    };
    if password.is_empty() {
        return Err(AuthError::EmptyPassword);
    }
    Ok(password)
}

/// One line from `reader` without its line ending.
pub(super) fn read_password_line(reader: &mut impl BufRead) -> Result<String, AuthError> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(AuthError::ReadPassword)?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// Characters of generated passwords: alphanumerics without look-alikes (0 O o 1 l I).
pub(super) const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Length of generated passwords (about 116 bits of entropy).
const GENERATED_PASSWORD_LEN: usize = 20;

/// A random password for the generated default user: 20 chars from an unambiguous alphanumeric alphabet, OsRng.
pub fn generate_password() -> String {
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[OsRng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}
