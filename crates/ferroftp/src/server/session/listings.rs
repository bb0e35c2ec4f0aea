//! Listings: LIST, NLST and MLSD lines made a chunk at a time, globs, and STAT with a path.

use super::*;

impl LineFormat {
    pub(super) fn push(&self, e: &Entry, out: &mut Vec<u8>) {
        let line = match self.style {
            ListStyle::List => {
                listing::list_line(&facts(e, &perm_fact(self.perms, e.kind)), self.now)
            }
            ListStyle::Mlsd => {
                listing::mlsx_line(&facts(e, &perm_fact(self.perms, e.kind)), self.mlst)
            }
            ListStyle::Nlst => {
                // Names only: no line to build.
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend_from_slice(e.name.as_bytes());
                out.extend_from_slice(b"\r\n");
                return;
            }
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl ListingLines {
    pub(super) fn new(source: ListSource, fmt: LineFormat) -> Self {
        let (entries, dir, first_read) = match source {
            ListSource::Entries(entries) => (entries, None, false),
            ListSource::Dir(dir) => (Vec::new(), Some(dir), true),
            ListSource::Continued(first, dir) => (first, Some(dir), false),
        };
        Self {
            fmt,
            entries: entries.into_iter(),
            dir,
            first_read,
        }
    }

    /// Appends lines to `out` until it holds [`LISTING_CHUNK`] bytes or the listing ends (then
    /// `dir` is `None` and `entries` empty). Blocks: runs on a blocking thread.
    pub(super) fn fill(&mut self, out: &mut Vec<u8>) -> Result<(), StorageError> {
        loop {
            for e in self.entries.by_ref() {
                self.fmt.push(&e, out);
                if out.len() >= LISTING_CHUNK {
                    return Ok(());
                }
            }
            let Some(dir) = self.dir.as_mut() else {
                return Ok(());
            };
            if self.fmt.style == ListStyle::Nlst && !self.first_read {
                // Streaming names: each goes straight into the output.
                let prefix = self.fmt.prefix.as_bytes();
                let read = dir.for_each_name(|name| {
                    out.extend_from_slice(prefix);
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"\r\n");
                })?;
                if read == 0 {
                    self.dir = None;
                    return Ok(());
                }
                if out.len() >= LISTING_CHUNK {
                    return Ok(());
                }
                continue;
            }
            let max = if self.first_read {
                SORTED_LISTING_LIMIT
            } else {
                LISTING_BATCH
            };
            let mut batch = dir.next_batch(max)?;
            if batch.is_empty() {
                self.dir = None;
                return Ok(());
            }
            if self.first_read && batch.len() < max {
                // The whole directory is in hand: list it sorted, like ls.
                batch.sort_by(|a, b| a.name.cmp(&b.name));
            }
            self.first_read = false;
            self.entries = batch.into_iter();
        }
    }

    pub(super) fn done(&self) -> bool {
        self.dir.is_none() && self.entries.len() == 0
    }
}

/// Send a listing. Its lines are made on a blocking thread a chunk ahead of the one being
/// written, so reading the directory and sending overlap and each thread trip carries a
/// [`LISTING_CHUNK`] of lines.
pub(super) async fn send_listing(
    source: ListSource,
    fmt: LineFormat,
    dst: &mut Stream,
    progress: &AtomicU64,
    stall: std::time::Duration,
) -> Result<(), CopyError> {
    let fill = |mut lines: ListingLines, mut out: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let filled = lines.fill(&mut out);
            (lines, out, filled)
        })
    };
    let mut lines = ListingLines::new(source, fmt);
    let mut spare = Vec::with_capacity(LISTING_CHUNK);
    if lines.dir.is_none() {
        // Entries in hand (a file, a small glob): nothing blocks, no thread trip.
        while !lines.done() {
            lines
                .fill(&mut spare)
                .map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
            data::write_chunk(dst, &mut spare, progress, stall).await?;
        }
        return data::finish(dst, stall).await;
    }
    let mut next = fill(lines, Vec::with_capacity(LISTING_CHUNK));
    loop {
        let (lines, mut out, filled) = next
            .await
            .map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
        filled.map_err(|e| CopyError::Local(io::Error::other(e.to_string())))?;
        if lines.done() {
            data::write_chunk(dst, &mut out, progress, stall).await?;
            break;
        }
        next = fill(lines, std::mem::take(&mut spare));
        data::write_chunk(dst, &mut out, progress, stall).await?;
        spare = out;
    }
    data::finish(dst, stall).await
}

impl Listing {
    pub(super) async fn gather(
        fs: Arc<dyn Storage>,
        cwd: &VPath,
        arg: Option<&str>,
        style: ListStyle,
    ) -> Result<Self, Reply> {
        let shown = arg.unwrap_or(".");
        check_line_ends(shown)?;
        let path = VPath::resolve(cwd, shown).map_err(|e| fs_reply(shown, &e))?;
        let prefix = match arg {
            Some(a) if style == ListStyle::Nlst => format!("{}/", a.trim_end_matches('/')),
            _ => String::new(),
        };
        let p = path.clone();
        let fs2 = Arc::clone(&fs);
        let names_only = style == ListStyle::Nlst;
        // What the path is and, for a directory, the directory opened: one thread trip.
        let found = blocking(move || {
            let entry = fs2.metadata(&p)?;
            if entry.kind != EntryKind::Dir {
                return Ok(Err(entry));
            }
            let dir = if names_only {
                fs2.read_dir_names(&p)
            } else {
                fs2.read_dir(&p)
            };
            dir.map(Ok)
        })
        .await;
        match found {
            Ok(Ok(dir)) => Ok(Self {
                path,
                source: ListSource::Dir(dir),
                prefix,
            }),
            Ok(Err(mut entry)) => {
                if style == ListStyle::Mlsd {
                    return Err(Reply::new(
                        501,
                        format!("{shown}: not a directory (use MLST)"),
                    ));
                }
                // A file lists as itself, under the name the client gave.
                entry.name = if style == ListStyle::Nlst {
                    shown.to_owned()
                } else {
                    entry.name
                };
                Ok(Self {
                    path,
                    source: ListSource::Entries(vec![entry]),
                    prefix: String::new(),
                })
            }
            Err(StorageError::NotFound) if is_glob(shown) => {
                Self::gather_glob(fs, cwd, shown, style == ListStyle::Nlst).await
            }
            Err(e) => Err(fs_reply(shown, &e)),
        }
    }

    /// `LIST *.txt`, `NLST dir/*.log`: a pattern in the last component, as `mget` sends.
    /// Matches are streamed like a plain listing: up to [`SORTED_LISTING_LIMIT`] of them are
    /// listed sorted, more in the order the directory gives (memory stays bounded).
    pub(super) async fn gather_glob(
        fs: Arc<dyn Storage>,
        cwd: &VPath,
        shown: &str,
        nlst: bool,
    ) -> Result<Self, Reply> {
        let (dir_part, pattern) = match shown.rfind('/') {
            Some(i) => (&shown[..=i], &shown[i + 1..]),
            None => ("", shown),
        };
        let pat = glob::Pattern::new(pattern)
            .map_err(|_| Reply::new(501, format!("{shown}: bad pattern")))?;
        let dir = VPath::resolve(cwd, if dir_part.is_empty() { "." } else { dir_part })
            .map_err(|e| fs_reply(shown, &e))?;
        let d = dir.clone();
        // The first batch is read now: no match at all is a 550, not an empty listing.
        let (first, stream) = blocking(move || {
            let stream = if nlst {
                fs.read_dir_names(&d)?
            } else {
                fs.read_dir(&d)?
            };
            let mut stream = stream.matching(move |name| pat.matches(name));
            let first = stream.next_batch(SORTED_LISTING_LIMIT)?;
            Ok((first, stream))
        })
        .await
        .map_err(|e| fs_reply(shown, &e))?;
        if first.is_empty() {
            return Err(Reply::new(
                550,
                format!("{shown}: No such file or directory"),
            ));
        }
        let source = if first.len() < SORTED_LISTING_LIMIT {
            // Every match is in hand.
            let mut first = first;
            first.sort_by(|a, b| a.name.cmp(&b.name));
            ListSource::Entries(first)
        } else {
            ListSource::Continued(first, stream)
        };
        let prefix = if nlst {
            dir_part.to_owned()
        } else {
            String::new()
        };
        Ok(Self {
            path: dir,
            source,
            prefix,
        })
    }
}

pub(super) fn is_glob(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    last.contains(['*', '?', '['])
}

pub(super) fn ascii_size(mut file: ReadStream) -> io::Result<u64> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_cr = false;
    let mut total = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += ferroftp_proto::ascii::network_size(&buf[..n], &mut last_cr);
    }
}

/// STAT with a path: the listing on the control connection (a huge directory cut short).
pub(super) async fn stat_listing(
    fs: Arc<dyn Storage>,
    cwd: &VPath,
    arg: &str,
    perms: Permissions,
) -> Result<Reply, Reply> {
    let target = Listing::gather(fs, cwd, Some(arg), ListStyle::List).await?;
    let now = SystemTime::now();
    // The reply travels on the control connection: a huge directory is cut short.
    let (first, dir) = match target.source {
        ListSource::Entries(v) => (v, None),
        ListSource::Dir(d) => (Vec::new(), Some(d)),
        ListSource::Continued(v, d) => (v, Some(d)),
    };
    let (mut entries, more) = match dir {
        None => (first, false),
        Some(mut d) => blocking(move || {
            let mut batch = first;
            let room = STAT_LISTING_LIMIT.saturating_sub(batch.len());
            batch.extend(d.next_batch(room)?);
            let more = !d.next_batch(1)?.is_empty();
            Ok((batch, more))
        })
        .await
        .map_err(|e| fs_reply(arg, &e))?,
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut lines: Vec<String> = entries
        .iter()
        .map(|e| listing::list_line(&facts(e, &perm_fact(perms, e.kind)), now))
        .collect();
    if more {
        lines.push(format!(
            "(only the first {STAT_LISTING_LIMIT} entries are shown; use LIST for all)"
        ));
    }
    Ok(Reply::multi(
        213,
        format!("Status of {}:", target.path),
        lines,
        "End of status",
    ))
}
