//! An in-memory [`Storage`] written for tests: files and directories in a map, uploads held
//! in a buffer until they are committed. Like an object store it cannot rename, append,
//! resume an upload in place or change permission bits, and says so with
//! [`StorageError::Unsupported`] before anything changes.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ferroftp::storage::{
    Capabilities, DirStream, Entry, EntryKind, ReadStream, Storage, StorageBackend, StorageError,
    SyncPolicy, Upload, UploadSink, VPath, WriteMode,
};

/// One node of the tree.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: Vec<u8>, modified: SystemTime },
}

/// Paths (as the client sees them) to nodes; `/` is always there.
type Tree = BTreeMap<String, Node>;

/// The in-memory storage; clones share the same tree.
#[derive(Debug, Clone)]
pub(crate) struct MemoryFs {
    tree: Arc<Mutex<Tree>>,
}

impl Default for MemoryFs {
    fn default() -> Self {
        let mut tree = Tree::new();
        tree.insert("/".to_owned(), Node::Dir);
        Self {
            tree: Arc::new(Mutex::new(tree)),
        }
    }
}

/// Serves one [`MemoryFs`] as every user's home.
#[derive(Debug, Default)]
pub(crate) struct MemoryBackend(pub(crate) MemoryFs);

impl StorageBackend for MemoryBackend {
    fn open_home(
        &self,
        _user: &str,
        _home: &Path,
        _root: &Path,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        Ok(Arc::new(self.0.clone()))
    }
}

impl MemoryFs {
    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The content of file `path`, if it is one (for tests to look at).
    pub(crate) fn content(&self, path: &str) -> Option<Vec<u8>> {
        match self.lock().get(path) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    /// Every path in the tree (for tests to compare before and after).
    pub(crate) fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Puts `data` at `path` directly (its parent must exist).
    pub(crate) fn seed(&self, path: &str, data: &[u8]) {
        self.lock().insert(
            path.to_owned(),
            Node::File {
                data: data.to_vec(),
                modified: SystemTime::now(),
            },
        );
    }
}

fn entry(path: &str, node: &Node) -> Entry {
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("/");
    let (kind, size, modified, mode) = match node {
        Node::Dir => (EntryKind::Dir, 0, None, 0o040_755),
        Node::File { data, modified } => (
            EntryKind::File,
            data.len() as u64,
            Some(*modified),
            0o100_644,
        ),
    };
    Entry {
        name: name.to_owned(),
        kind,
        size,
        modified,
        mode,
        nlink: 1,
    }
}

/// Whether `path` is directly inside `dir`.
fn is_child(dir: &str, path: &str) -> bool {
    let rest = if dir == "/" {
        path.strip_prefix('/')
    } else {
        path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
    };
    rest.is_some_and(|r| !r.is_empty() && !r.contains('/'))
}

/// Checks that the parent of `p` is a directory, and that `p` is not one.
fn check_target(tree: &Tree, p: &VPath) -> Result<(), StorageError> {
    let parent = p.parent().ok_or(StorageError::IsADirectory)?;
    match tree.get(parent.as_str()) {
        Some(Node::Dir) => {}
        Some(Node::File { .. }) => return Err(StorageError::NotADirectory),
        None => return Err(StorageError::NotFound),
    }
    match tree.get(p.as_str()) {
        Some(Node::Dir) => Err(StorageError::IsADirectory),
        _ => Ok(()),
    }
}

/// A listing read from the tree a page at a time, as an object store's listing is.
struct Pages {
    tree: Arc<Mutex<Tree>>,
    dir: String,
    /// The last path returned.
    after: Option<String>,
    page: std::vec::IntoIter<Entry>,
}

/// Entries per page of a listing.
const PAGE: usize = 4;

impl Iterator for Pages {
    type Item = Result<Entry, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.page.next() {
            return Some(Ok(e));
        }
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        let start = self.after.clone().unwrap_or_else(|| self.dir.clone());
        let page: Vec<(String, Entry)> = tree
            .range(start..)
            .filter(|(k, _)| Some(*k) != self.after.as_ref() && is_child(&self.dir, k))
            .take(PAGE)
            .map(|(k, n)| (k.clone(), entry(k, n)))
            .collect();
        drop(tree);
        self.after = Some(page.last()?.0.clone());
        self.page = page
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>()
            .into_iter();
        self.page.next().map(Ok)
    }
}

impl Storage for MemoryFs {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rename: false,
            append: false,
            write_at: false,
            set_mode: false,
            set_modified: true,
        }
    }

    fn metadata(&self, p: &VPath) -> Result<Entry, StorageError> {
        let tree = self.lock();
        let node = tree.get(p.as_str()).ok_or(StorageError::NotFound)?;
        Ok(entry(p.as_str(), node))
    }

    fn read_dir(&self, p: &VPath) -> Result<DirStream, StorageError> {
        match self.lock().get(p.as_str()) {
            Some(Node::Dir) => {}
            Some(Node::File { .. }) => return Err(StorageError::NotADirectory),
            None => return Err(StorageError::NotFound),
        }
        Ok(DirStream::from_entries(Pages {
            tree: Arc::clone(&self.tree),
            dir: p.as_str().to_owned(),
            after: None,
            page: Vec::new().into_iter(),
        }))
    }

    fn open_read(&self, p: &VPath, offset: u64) -> Result<(ReadStream, u64), StorageError> {
        let data = match self.lock().get(p.as_str()) {
            Some(Node::File { data, .. }) => data.clone(),
            Some(Node::Dir) => return Err(StorageError::IsADirectory),
            None => return Err(StorageError::NotFound),
        };
        let len = data.len() as u64;
        if offset > len {
            return Err(StorageError::InvalidOffset);
        }
        let mut reader = Cursor::new(data);
        reader.set_position(offset);
        Ok((ReadStream::from_reader(reader), len))
    }

    fn create_upload(&self, p: &VPath, mode: WriteMode) -> Result<Upload, StorageError> {
        match mode {
            WriteMode::Replace => {}
            WriteMode::Append | WriteMode::AppendAt(_) => {
                return Err(StorageError::Unsupported("appending"));
            }
            WriteMode::At(_) => return Err(StorageError::Unsupported("resuming an upload")),
        }
        check_target(&self.lock(), p)?;
        Ok(Upload::from_sink(MemoryUpload {
            tree: Arc::clone(&self.tree),
            path: p.clone(),
            data: SharedBuf::default(),
        }))
    }

    fn create_unique(&self, dir: &VPath, hint: &str) -> Result<(VPath, Upload), StorageError> {
        let tree = self.lock();
        for i in 0..1000 {
            let name = if i == 0 {
                hint.to_owned()
            } else {
                format!("{hint}.{i}")
            };
            let path = dir.join(&name)?;
            if !tree.contains_key(path.as_str()) {
                check_target(&tree, &path)?;
                let upload = Upload::from_sink(MemoryUpload {
                    tree: Arc::clone(&self.tree),
                    path: path.clone(),
                    data: SharedBuf::default(),
                });
                return Ok((path, upload));
            }
        }
        Err(StorageError::AlreadyExists)
    }

    fn mkdir(&self, p: &VPath) -> Result<(), StorageError> {
        let mut tree = self.lock();
        if tree.contains_key(p.as_str()) {
            return Err(StorageError::AlreadyExists);
        }
        check_target(&tree, p)?;
        tree.insert(p.as_str().to_owned(), Node::Dir);
        Ok(())
    }

    fn rmdir(&self, p: &VPath) -> Result<(), StorageError> {
        let mut tree = self.lock();
        if p.is_root() {
            return Err(StorageError::PermissionDenied);
        }
        match tree.get(p.as_str()) {
            Some(Node::Dir) => {}
            Some(Node::File { .. }) => return Err(StorageError::NotADirectory),
            None => return Err(StorageError::NotFound),
        }
        if tree.keys().any(|k| is_child(p.as_str(), k)) {
            return Err(StorageError::DirectoryNotEmpty);
        }
        tree.remove(p.as_str());
        Ok(())
    }

    fn remove_file(&self, p: &VPath) -> Result<(), StorageError> {
        let mut tree = self.lock();
        match tree.get(p.as_str()) {
            Some(Node::File { .. }) => {
                tree.remove(p.as_str());
                Ok(())
            }
            Some(Node::Dir) => Err(StorageError::IsADirectory),
            None => Err(StorageError::NotFound),
        }
    }

    fn rename(&self, _from: &VPath, _to: &VPath) -> Result<(), StorageError> {
        Err(StorageError::Unsupported("rename"))
    }

    fn rename_no_replace(&self, _from: &VPath, _to: &VPath) -> Result<(), StorageError> {
        Err(StorageError::Unsupported("rename"))
    }

    fn set_modified(&self, p: &VPath, t: SystemTime) -> Result<(), StorageError> {
        match self.lock().get_mut(p.as_str()) {
            Some(Node::File { modified, .. }) => {
                *modified = t;
                Ok(())
            }
            Some(Node::Dir) => Err(StorageError::Unsupported("setting a directory's time")),
            None => Err(StorageError::NotFound),
        }
    }

    fn set_mode(&self, _p: &VPath, _mode: u32) -> Result<(), StorageError> {
        Err(StorageError::Unsupported("chmod"))
    }
}

/// The bytes of an upload, shared by its writers.
#[derive(Debug, Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An upload held in memory until its commit puts it in the tree whole.
#[derive(Debug)]
struct MemoryUpload {
    tree: Arc<Mutex<Tree>>,
    path: VPath,
    data: SharedBuf,
}

impl UploadSink for MemoryUpload {
    fn writer(&mut self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.data.clone()))
    }

    fn commit(self: Box<Self>, _policy: SyncPolicy) -> Result<(), StorageError> {
        let data = std::mem::take(&mut *self.data.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        check_target(&tree, &self.path)?;
        tree.insert(
            self.path.as_str().to_owned(),
            Node::File {
                data,
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }
}
