//! The transfer log in the `xferlog(5)` format of wu-ftpd and ProFTPD, which log analysers
//! (webalizer, AWStats, xferstats, ...) read: one line per file transfer that completed or was
//! cut short.
//!
//! ```text
//! current-time transfer-time remote-host file-size filename transfer-type special-action-flag
//! direction access-mode username service-name authentication-method authenticated-user-id
//! completion-status
//! Mon Nov 30 10:00:00 2026 1 127.0.0.1 1024 /srv/ftp/alice/f.txt b _ i r alice ftp 0 * c
//! ```
//!
//! Sessions never wait for the disk: a line goes into a bounded queue that one writer thread
//! empties into a buffered file, flushed whenever the queue runs dry. When the queue is full
//! the line is dropped and counted (`ferroftp_xferlog_dropped_total`). The file is opened
//! again, by name, on reload (SIGHUP), for logrotate's `create` mode.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metrics::Metrics;

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

/// One finished file transfer.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// The client's address.
    pub(crate) remote: IpAddr,
    /// Bytes moved.
    pub(crate) bytes: u64,
    /// The file's path on the server's disk.
    pub(crate) path: &'a Path,
    /// TYPE I (`b`) or TYPE A (`a`).
    pub(crate) binary: bool,
    /// Upload (`i`) or download (`o`).
    pub(crate) incoming: bool,
    /// Logged in anonymously (`a`) or as a real user (`r`).
    pub(crate) anonymous: bool,
    /// The login name.
    pub(crate) user: &'a str,
    /// The control connection was TLS (service `ftps`, as ProFTPD writes) or not (`ftp`).
    pub(crate) tls: bool,
    /// Whole (`c`) or cut short (`i`).
    pub(crate) complete: bool,
}

/// Spaces and control characters become `_`, so that every field stays one word (as ProFTPD
/// does with file names).
fn word(s: &str) -> String {
    let w: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if w.is_empty() { "_".into() } else { w }
}

impl Entry<'_> {
    /// The line, without its newline, stamped `now` (local time, `ctime`-like, the day
    /// zero-padded as ProFTPD writes it).
    pub(crate) fn line(&self, now: chrono::DateTime<chrono::Local>) -> String {
        // Whole seconds, rounded, and at least 1: analysers divide by it.
        let secs = ((self.elapsed.as_millis() + 500) / 1000).max(1);
        format!(
            "{} {secs} {} {} {} {} _ {} {} {} {} 0 * {}",
            now.format("%a %b %d %H:%M:%S %Y"),
            self.remote.to_canonical(),
            self.bytes,
            word(&self.path.to_string_lossy()),
            if self.binary { 'b' } else { 'a' },
            if self.incoming { 'i' } else { 'o' },
            if self.anonymous { 'a' } else { 'r' },
            word(self.user),
            if self.tls { "ftps" } else { "ftp" },
            if self.complete { 'c' } else { 'i' },
        )
    }
}

enum Message {
    Line(String),
    /// Open the file again by its name (after logrotate moved it away).
    Reopen,
}

/// The writer of one file.
#[derive(Debug)]
struct Writer {
    path: PathBuf,
    /// The only sender: dropping it ends the thread.
    queue: SyncSender<Message>,
    thread: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Reopen => "Reopen",
        })
    }
}

/// The transfer log of a server: off, or a file with its writer thread.
#[derive(Debug, Default)]
pub(crate) struct Xferlog {
    writer: Mutex<Option<Writer>>,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Why the transfer log cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum XferlogError {
    /// The file cannot be opened for appending.
    #[error("cannot open the transfer log {} (log.xferlog): {error}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why (in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The writer thread cannot be started.
    #[error("cannot start the transfer-log writer: {0}")]
    Thread(std::io::Error),
}

impl Xferlog {
    /// Write to `path` (`None`: no transfer log). Fails if the file cannot be opened.
    pub(crate) fn new(path: Option<&Path>, metrics: &Arc<Metrics>) -> Result<Self, XferlogError> {
        let log = Self::default();
        log.set_path(path, metrics)?;
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put `path` in force (a reload): the same file is opened again by name; another file gets
    /// a new writer and the old one finishes its queue and closes. Fails, changing nothing, if
    /// a new file cannot be opened.
    pub(crate) fn set_path(
        &self,
        path: Option<&Path>,
        metrics: &Arc<Metrics>,
    ) -> Result<(), XferlogError> {
        let mut writer = self.lock();
        match (writer.as_ref(), path) {
            (Some(w), Some(p)) if w.path == p => {
                // Best effort: a full queue means the writer is busy and will reopen on a
                // later reload.
                let _ = w.queue.try_send(Message::Reopen);
            }
            (_, None) => *writer = None,
            (_, Some(p)) => {
                let file = open(p).map_err(|error| XferlogError::Open {
                    path: p.to_owned(),
                    error,
                })?;
                let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE);
                let path = p.to_owned();
                let thread_path = path.clone();
                let metrics = Arc::clone(metrics);
                let thread = std::thread::Builder::new()
                    .name("xferlog".into())
                    .spawn(move || write_loop(&thread_path, file, &lines, &metrics))
                    .map_err(XferlogError::Thread)?;
                *writer = Some(Writer {
                    path,
                    queue,
                    thread,
                });
            }
        }
        Ok(())
    }

    /// Open the file again by name (after logrotate moved it away); best effort.
    pub(crate) fn reopen(&self) {
        if let Some(w) = self.lock().as_ref() {
            let _ = w.queue.try_send(Message::Reopen);
        }
    }

    /// Whether a transfer log is kept.
    pub(crate) fn enabled(&self) -> bool {
        self.lock().is_some()
    }

    /// Queue a line; never waits. A line that does not fit is counted as dropped.
    pub(crate) fn write(&self, line: String, metrics: &Metrics) {
        let writer = self.lock();
        let Some(w) = writer.as_ref() else {
            return;
        };
        match w.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => metrics.xferlog_dropped(),
        }
    }

    /// Stop writing: the writer finishes the lines queued, flushes and closes the file. Waits
    /// up to `wait` for that (at shutdown, so that the last transfers are in the file).
    pub(crate) fn close(&self, wait: Duration) {
        let Some(Writer { queue, thread, .. }) = self.lock().take() else {
            return;
        };
        // The last sender: the writer drains the queue and ends.
        drop(queue);
        let deadline = std::time::Instant::now() + wait;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: lines into a buffer, flushed when the queue is empty; ends when every
/// sender is gone.
fn write_loop(path: &Path, file: File, lines: &Receiver<Message>, metrics: &Metrics) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failing = false;
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    let written = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(e) = written {
                        metrics.xferlog_dropped();
                        if !failing {
                            tracing::error!(path = %path.display(), error = %e, "cannot write the transfer log (log.xferlog); lines are being lost");
                            failing = true;
                        }
                    }
                }
                Message::Reopen => {
                    let _ = out.flush();
                    match open(path) {
                        Ok(file) => {
                            out = BufWriter::with_capacity(64 * 1024, file);
                            failing = false;
                            tracing::debug!(path = %path.display(), "transfer log reopened");
                        }
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot reopen the transfer log; still writing to the old file");
                        }
                    }
                }
            }
            next = lines.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            if !failing {
                tracing::error!(path = %path.display(), error = %e, "cannot write the transfer log (log.xferlog); lines are being lost");
                failing = true;
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a Path, user: &'a str) -> Entry<'a> {
        Entry {
            elapsed: Duration::from_millis(200),
            remote: "127.0.0.1".parse().unwrap(),
            bytes: 1024,
            path,
            binary: true,
            incoming: true,
            anonymous: false,
            user,
            tls: false,
            complete: true,
        }
    }

    #[test]
    fn lines_have_the_fourteen_fields_of_xferlog() {
        use chrono::TimeZone;
        let now = chrono::Local
            .with_ymd_and_hms(2026, 11, 3, 9, 5, 7)
            .single()
            .unwrap();
        let path = PathBuf::from("/home/alice/f.txt");
        assert_eq!(
            entry(&path, "alice").line(now),
            "Tue Nov 03 09:05:07 2026 1 127.0.0.1 1024 /home/alice/f.txt b _ i r alice ftp 0 * c"
        );
        let path = PathBuf::from("/srv/my file\twith\nspaces.txt");
        let mut e = entry(&path, "anonymous");
        e.elapsed = Duration::from_millis(2600);
        e.binary = false;
        e.incoming = false;
        e.anonymous = true;
        e.tls = true;
        e.complete = false;
        e.remote = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            e.line(now),
            "Tue Nov 03 09:05:07 2026 3 10.0.0.1 1024 /srv/my_file_with_spaces.txt a _ o a anonymous ftps 0 * i"
        );
        assert_eq!(
            e.line(now).split(' ').count(),
            18,
            "5 words of time + 13 fields"
        );
    }

    #[test]
    fn the_writer_appends_reopens_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        let metrics = Arc::new(Metrics::default());
        let log = Xferlog::new(Some(&path), &metrics).unwrap();
        assert!(log.enabled());
        log.write("one".into(), &metrics);
        // logrotate: the file is moved away, then the server is told to reopen it.
        let wait = |p: &Path, want: &str| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).unwrap_or_default() == want {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{} never held {want:?}", p.display());
        };
        wait(&path, "one\n");
        std::fs::rename(&path, dir.path().join("xferlog.1")).unwrap();
        log.set_path(Some(&path), &metrics).unwrap();
        log.write("two".into(), &metrics);
        wait(&path, "two\n");
        wait(&dir.path().join("xferlog.1"), "one\n");
        log.write("three".into(), &metrics);
        log.close(Duration::from_secs(2));
        assert!(!log.enabled());
        wait(&path, "two\nthree\n");
        log.write("four".into(), &metrics);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\nthree\n");
    }

    #[test]
    fn an_unwritable_path_is_refused_up_front() {
        let metrics = Arc::new(Metrics::default());
        let e = Xferlog::new(Some(Path::new("/nonexistent-dir/xferlog")), &metrics).unwrap_err();
        assert!(e.to_string().contains("log.xferlog"), "{e}");
    }
}
