//! `ferroftp man`: the man pages, made from the command line's definition, and the sections
//! of ferroftp(1) and `--help` that no option says (files, signals, environment, exit status).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::Cli;
use crate::overrides::PASSIVE_ADDRESS_ENV;

/// What the options do not say, as (section, [(term, text)]): the end of `ferroftp --help` and
/// sections of ferroftp(1).
const EXTRA_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "FILES",
        &[
            (
                "/etc/ferroftp/ferroftp.toml",
                "The configuration (serve -c, check-config -c). ferroftp.toml(5) documents every key with its default; ferroftp config --example prints the same as an annotated file to start from.",
            ),
            (
                "users file (key users_file)",
                "TOML with argon2id hashes (bcrypt and crypt(3) ones moved from other servers are accepted), written by ferroftp passwd, ferroftp import-users, ferroftp user and the admin API (each keeps its owner, group and mode); under systemd /var/lib/ferroftp/users.toml, as the server rewrites it.",
            ),
        ],
    ),
    (
        "SIGNALS",
        &[
            (
                "SIGHUP",
                "Reload the configuration, the users file and the certificates without dropping sessions; a configuration that does not load is refused whole and the old one stays.",
            ),
            (
                "SIGTERM, SIGINT",
                "Stop accepting, close idle sessions, let transfers finish for up to limits.shutdown_grace_secs (30 s), then stop.",
            ),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            (
                "RUST_LOG",
                "Log filter, overriding log.level: info, debug, ferroftp=debug,warn, ...",
            ),
            ("NO_COLOR", "No colours in the text log."),
            (
                PASSIVE_ADDRESS_ENV,
                "The address PASV announces (passive.address), for containers; --passive-address wins over it, and it over the configuration file.",
            ),
        ],
    ),
    (
        "EXIT STATUS",
        &[
            ("0", "Success."),
            (
                "1",
                "An error (serve: a configuration, users file, certificate or address that does not load or bind), or a doctor check that FAILed.",
            ),
        ],
    ),
];

/// [`EXTRA_SECTIONS`] as plain text for `--help`.
pub(crate) fn extra_help() -> String {
    let mut out = String::new();
    for (title, items) in EXTRA_SECTIONS {
        out.push_str(&format!("{title}:\n"));
        for (term, text) in *items {
            out.push_str(&format!("  {term}\n      {text}\n"));
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// Text for roff: hyphens as \- (so that man does not break or convert them), backslashes
/// escaped, and a line never starts as a request.
fn roff(text: &str) -> String {
    format!("\\&{}", text.replace('\\', "\\e").replace('-', "\\-"))
}

/// [`EXTRA_SECTIONS`] as man(7) sections.
fn extra_roff() -> String {
    let mut out = String::new();
    for (title, items) in EXTRA_SECTIONS {
        out.push_str(&format!(".SH \"{title}\"\n"));
        for (term, text) in *items {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)));
        }
    }
    out
}

#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Directory to write the pages into (created if missing), e.g. /usr/local/share/man/man1.
    /// ferroftp.toml.5 goes into the man5 directory beside a directory named man1, else into
    /// DIR too.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out: PathBuf,
}

/// `ferroftp man`: one page for the command and one per subcommand, so that `man
/// ferroftp-serve` works as packagers expect.
pub(crate) fn man(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // build() gives subcommands their full names (ferroftp-serve), which the pages take as
    // title and file name.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_man_pages(cmd, out)?;
    // The configuration reference, from the same annotated example `config --example` prints;
    // beside man1 in man5, where man looks for section 5.
    let dir = match (out.file_name(), out.parent()) {
        (Some(name), Some(parent)) if name == "man1" => parent.join("man5"),
        _ => out.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("ferroftp.toml.5");
    let page =
        ferroftp::config::reference::man_page(ferroftp::config::EXAMPLE, env!("CARGO_PKG_VERSION"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

/// The page of `cmd` and of each of its subcommands, into `out`.
fn write_man_pages(cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    let context = || format!("cannot write a man page into {}", out.display());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub.clone(), out)?;
    }
    let top = cmd.get_name() == "ferroftp";
    let man = clap_mangen::Man::new(cmd);
    let path = out.join(man.get_filename());
    if top {
        // ferroftp(1) also gets FILES, SIGNALS, ENVIRONMENT and EXIT STATUS.
        let mut page = Vec::new();
        man.render_title(&mut page).with_context(context)?;
        man.render_name_section(&mut page).with_context(context)?;
        man.render_synopsis_section(&mut page)
            .with_context(context)?;
        man.render_description_section(&mut page)
            .with_context(context)?;
        man.render_options_section(&mut page)
            .with_context(context)?;
        man.render_subcommands_section(&mut page)
            .with_context(context)?;
        page.extend_from_slice(extra_roff().as_bytes());
        man.render_version_section(&mut page)
            .with_context(context)?;
        std::fs::write(&path, page).with_context(context)?;
    } else {
        man.generate_to(out).with_context(context)?;
    }
    println!("{}", path.display());
    Ok(())
}
