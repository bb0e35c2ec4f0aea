//! Virtual paths: what the FTP client sees, always normalized and rooted at the home.

use std::fmt;
use std::path::Path;

use super::StorageError;

/// Longest client argument, and longest resolved path, accepted (bytes).
pub const MAX_PATH_LEN: usize = 4096;
/// Deepest resolved path accepted (segments).
pub const MAX_DEPTH: usize = 256;

/// A normalized absolute path inside a user's home, as the FTP client sees it.
///
/// Always `"/"` or `"/a/b"`: no trailing slash, no `.` or `..`, no empty segments, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VPath(String);

impl VPath {
    /// The home directory itself, `"/"`.
    pub fn root() -> Self {
        VPath("/".to_owned())
    }

    /// Resolve a client argument against `cwd`, lexically (nothing on disk is consulted).
    ///
    /// Absolute if `arg` starts with `/`, else relative to `cwd`. `.` is skipped, `..` pops
    /// (never above `/`), repeated slashes collapse, a trailing slash is ignored and an empty
    /// argument yields `cwd`. Backslashes and `%` escapes are ordinary characters.
    /// Fails with [`StorageError::InvalidName`] on a NUL byte, CR or LF, an argument or result longer than
    /// [`MAX_PATH_LEN`] bytes, or a result deeper than [`MAX_DEPTH`] segments.
    pub fn resolve(cwd: &VPath, arg: &str) -> Result<VPath, StorageError> {
        if arg.len() > MAX_PATH_LEN || arg.contains(['\0', '\r', '\n']) {
            return Err(StorageError::InvalidName);
        }
        let mut segments: Vec<&str> = if arg.starts_with('/') {
            Vec::new()
        } else {
            cwd.segments().collect()
        };
        for segment in arg.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                name => segments.push(name),
            }
        }
        Self::from_segments(&segments)
    }

    /// The path as the client sees it, e.g. `"/a/b"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<VPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(VPath::root()),
            Some(idx) => Some(VPath(self.0[..idx].to_owned())),
        }
    }

    /// The last segment; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rfind('/').map(|idx| &self.0[idx + 1..])
    }

    /// This path with one more segment; `name` must be a single valid segment (not `.`/`..`).
    pub fn join(&self, name: &str) -> Result<VPath, StorageError> {
        if !is_valid_segment(name) {
            return Err(StorageError::InvalidName);
        }
        let mut segments: Vec<&str> = self.segments().collect();
        segments.push(name);
        Self::from_segments(&segments)
    }

    /// Whether this is the home directory itself.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path relative to the home, for cap-std: `"."` for the root, `"a/b"` otherwise.
    pub fn relative(&self) -> &Path {
        match self.0.strip_prefix('/') {
            Some("") | None => Path::new("."),
            Some(rest) => Path::new(rest),
        }
    }

    /// The segments from the root down (none for the root).
    pub(super) fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    fn from_segments(segments: &[&str]) -> Result<VPath, StorageError> {
        if segments.len() > MAX_DEPTH {
            return Err(StorageError::InvalidName);
        }
        if segments.is_empty() {
            return Ok(VPath::root());
        }
        let len = segments.iter().map(|s| s.len() + 1).sum::<usize>();
        if len > MAX_PATH_LEN {
            return Err(StorageError::InvalidName);
        }
        let mut path = String::with_capacity(len);
        for segment in segments {
            path.push('/');
            path.push_str(segment);
        }
        Ok(VPath(path))
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` can be one path segment: non-empty, no `/` or NUL, not `.` or `..`, and no
/// CR or LF (a name is sent on its own line in NLST and in replies: a line end inside it would
/// forge the lines after it).
pub(super) fn is_valid_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0', '\r', '\n'])
}
