//! The commands of `hgframe serve` over a root directory: `echo`, `files`, `cat`, `put`.
//!
//! | command | permission | arguments | data | answer |
//! |---------|------------|-----------|------|--------|
//! | `echo`  | read-only  | any       | optional | the data; without data one `name=value\n` line per argument, in name order |
//! | `files` | read-only  | none      | none | the regular files under the root, relative, sorted, one per line |
//! | `cat`   | read-only  | `path`    | none | that file's bytes |
//! | `put`   | read-write | `path`    | the new content | nothing; the file is replaced atomically |
//!
//! Paths can never leave the root: an absolute path, a `..` component, or a symbolic
//! link that resolves outside the root is refused with an application error, as is a
//! missing file. `put` writes a temporary file beside the target and renames it over the
//! target, so readers see the old content or the new one, never a mix.
//!
//! ```no_run
//! use hgframe::commands::FileCommands;
//! use hgframe::engine::Registry;
//! let mut registry = Registry::new();
//! FileCommands::new(".")?.register(&mut registry)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use hgframe_engine::{
    BlockingPool, CommandError, CommandInput, Error, Permission, Registry, Responder,
};

/// Bytes `cat` reads from the file at a time.
const READ_CHUNK: usize = 256 << 10;

/// The file commands over one root directory.
#[derive(Debug, Clone)]
pub struct FileCommands {
    root: Arc<PathBuf>,
    max_list_entries: usize,
}

impl FileCommands {
    /// Commands over `root`, which must be an existing directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let canonical = root
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot use {} as the root", root.display()), e))?;
        if !canonical.is_dir() {
            return Err(Error::invalid(format!(
                "the root {} is not a directory",
                root.display()
            )));
        }
        Ok(Self {
            root: Arc::new(canonical),
            max_list_entries: 1_000_000,
        })
    }

    /// The root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Most paths `files` lists, default 1,000,000; a larger tree is an application
    /// error (the listing is sorted, so it is built in memory first).
    pub fn set_max_list_entries(&mut self, n: usize) -> &mut Self {
        self.max_list_entries = n;
        self
    }

    /// Registers `echo`, `files`, `cat` and `put`.
    pub fn register(&self, registry: &mut Registry) -> Result<(), Error> {
        registry.register("echo", Permission::ReadOnly, echo)?;
        let this = self.clone();
        registry.register(
            "files",
            Permission::ReadOnly,
            move |input: CommandInput, out| {
                let this = this.clone();
                let pool = input.blocking().clone();
                async move { this.files(pool, out).await }
            },
        )?;
        let this = self.clone();
        registry.register("cat", Permission::ReadOnly, move |input, out| {
            let this = this.clone();
            async move { this.cat(input, out).await }
        })?;
        let this = self.clone();
        registry.register("put", Permission::ReadWrite, move |input, out| {
            let this = this.clone();
            async move { this.put(input, out).await }
        })?;
        Ok(())
    }

    async fn files(&self, pool: BlockingPool, out: Responder) -> Result<(), CommandError> {
        let root = Arc::clone(&self.root);
        let max = self.max_list_entries;
        let listing = pool
            .run(move || list_files(&root, max))
            .await
            .map_err(|_| CommandError::new("listing the files failed"))??;
        out.finish(listing).await?;
        Ok(())
    }

    async fn cat(&self, input: CommandInput, out: Responder) -> Result<(), CommandError> {
        let path = input.arg_str("path")?.to_owned();
        let file = resolve_existing(&self.root, &path)?;
        // Every read is a job on the server's bounded blocking pool, one chunk at a
        // time: many `cat`s at once share its threads, and the responder's back-pressure
        // pauses the reads (at most one chunk is read ahead).
        let pool = input.blocking().clone();
        let mut file = pool
            .run(move || std::fs::File::open(file))
            .await
            .map_err(|e| CommandError::new(e.to_string()))?
            .map_err(|e| read_error(&path, &e))?;
        let mut out = out;
        let mut current;
        (file, current) = read_chunk(&pool, file, &path).await?;
        // One chunk of look-ahead so the last piece carries `eos` (no empty final frame).
        while current.len() == READ_CHUNK {
            let next;
            (file, next) = read_chunk(&pool, file, &path).await?;
            if next.is_empty() {
                break;
            }
            out.write(std::mem::replace(&mut current, next)).await?;
        }
        out.finish(current).await?;
        Ok(())
    }

    async fn put(&self, mut input: CommandInput, out: Responder) -> Result<(), CommandError> {
        let path = input.arg_str("path")?.to_owned();
        let target = resolve_for_write(&self.root, &path)?;
        let pool = input.blocking().clone();
        let mut data = input
            .take_data()
            .ok_or_else(|| CommandError::new("put needs data: the new content of the file"))?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let mut temp = tempfile_in(&dir).map_err(|e| write_error(&path, &e))?;
        while let Some(piece) = data.chunk().await? {
            let (file, result) = pool
                .run(move || {
                    let result = std::io::Write::write_all(&mut temp.file, &piece);
                    (temp, result)
                })
                .await
                .map_err(|_| CommandError::new("writing the file failed"))?;
            temp = file;
            result.map_err(|e| write_error(&path, &e))?;
        }
        pool.run(move || temp.persist(&target))
            .await
            .map_err(|_| CommandError::new("writing the file failed"))?
            .map_err(|e| write_error(&path, &e))?;
        out.finish(Bytes::new()).await?;
        Ok(())
    }
}

/// `echo`: the data back, or the arguments as `name=value` lines.
async fn echo(mut input: CommandInput, mut out: Responder) -> Result<(), CommandError> {
    match input.take_data() {
        Some(mut data) => {
            // One piece of look-ahead, so the last piece carries `eos` (data that came
            // whole is answered in one go, without an empty final frame).
            let mut current = data.chunk().await?.unwrap_or_default();
            while let Some(next) = data.chunk().await? {
                out.write(std::mem::replace(&mut current, next)).await?;
            }
            out.finish(current).await?;
        }
        None => {
            let mut lines = BytesMut::new();
            for (name, value) in input.args() {
                lines.extend_from_slice(name);
                lines.extend_from_slice(b"=");
                lines.extend_from_slice(value);
                lines.extend_from_slice(b"\n");
            }
            out.finish(lines.freeze()).await?;
        }
    }
    Ok(())
}

/// Why a path is refused, for the message.
fn check_relative(path: &str) -> Result<&Path, CommandError> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(CommandError::new("empty path"));
    }
    for component in p.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(CommandError::new(format!("path leaves the root: {path}")))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(CommandError::new(format!(
                    "absolute paths are not allowed: {path}"
                )))
            }
        }
    }
    Ok(p)
}

/// The canonical path of an existing regular file under `root`.
fn resolve_existing(root: &Path, path: &str) -> Result<PathBuf, CommandError> {
    let relative = check_relative(path)?;
    let canonical = root.join(relative).canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CommandError::new(format!("no such file: {path}"))
        } else {
            CommandError::new(format!("cannot open {path}: {e}"))
        }
    })?;
    if !canonical.starts_with(root) {
        return Err(CommandError::new(format!("path leaves the root: {path}")));
    }
    if !canonical.is_file() {
        return Err(CommandError::new(format!("not a regular file: {path}")));
    }
    Ok(canonical)
}

/// Where `put` may write `path`: its directory must exist and resolve under `root`, and
/// the path must not name a directory.
fn resolve_for_write(root: &Path, path: &str) -> Result<PathBuf, CommandError> {
    let relative = check_relative(path)?;
    let name = relative
        .file_name()
        .ok_or_else(|| CommandError::new(format!("not a file name: {path}")))?;
    let parent = root.join(relative.parent().unwrap_or_else(|| Path::new("")));
    let parent = parent.canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CommandError::new(format!("no such directory for {path}"))
        } else {
            CommandError::new(format!("cannot write {path}: {e}"))
        }
    })?;
    if !parent.starts_with(root) {
        return Err(CommandError::new(format!("path leaves the root: {path}")));
    }
    let target = parent.join(name);
    if target.is_dir() {
        return Err(CommandError::new(format!("is a directory: {path}")));
    }
    Ok(target)
}

fn read_error(path: &str, e: &std::io::Error) -> CommandError {
    CommandError::new(format!("cannot read {path}: {e}"))
}

fn write_error(path: &str, e: &std::io::Error) -> CommandError {
    CommandError::new(format!("cannot write {path}: {e}"))
}

/// Reads the file in chunks into `tx`, until the end, an error, or the reader is gone.
/// Reads up to [`READ_CHUNK`] bytes of `file` on the pool (fewer only at its end).
async fn read_chunk(
    pool: &BlockingPool,
    mut file: std::fs::File,
    shown: &str,
) -> Result<(std::fs::File, Bytes), CommandError> {
    let (file, chunk) = pool
        .run(move || {
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            let mut filled = 0;
            // Fill the chunk, so pieces are large even when reads come back short.
            while filled < READ_CHUNK {
                match file.read(buf.get_mut(filled..).unwrap_or_default()) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return (file, Err(e)),
                }
            }
            buf.truncate(filled);
            (file, Ok(buf.freeze()))
        })
        .await
        .map_err(|e| CommandError::new(e.to_string()))?;
    Ok((file, chunk.map_err(|e| read_error(shown, &e))?))
}

/// The regular files under `root` (symbolic links are neither listed nor followed), as
/// sorted relative paths, one per line.
fn list_files(root: &Path, max: usize) -> Result<Bytes, CommandError> {
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .map_err(|e| CommandError::new(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| CommandError::new(format!("cannot list: {e}")))?;
            let kind = entry
                .file_type()
                .map_err(|e| CommandError::new(format!("cannot list: {e}")))?;
            let relative = dir.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(relative);
            } else if kind.is_file() {
                if found.len() >= max {
                    return Err(CommandError::new(format!(
                        "more than {max} files under the root"
                    )));
                }
                found.push(path_bytes(&relative));
            }
        }
    }
    found.sort();
    let mut out = BytesMut::new();
    for path in found {
        out.extend_from_slice(&path);
        out.extend_from_slice(b"\n");
    }
    Ok(out.freeze())
}

/// A relative path as bytes with `/` separators.
fn path_bytes(path: &Path) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = path.components().map(|c| os_bytes(c.as_os_str())).collect();
    parts.join(&b'/')
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// A temporary file beside the target, removed unless persisted.
struct TempFile {
    path: PathBuf,
    file: std::fs::File,
    persisted: bool,
}

fn tempfile_in(dir: &Path) -> std::io::Result<TempFile> {
    let pid = std::process::id();
    for attempt in 0u32..100 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(".hgframe-put-{pid}-{nanos:x}-{attempt}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                return Ok(TempFile {
                    path,
                    file,
                    persisted: false,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "could not create a temporary file",
    ))
}

impl TempFile {
    /// Flushes the data to disk and renames the file over `target`.
    fn persist(mut self, target: &Path) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(root.join("sub/deeper/c.txt"), b"c").unwrap();
        (dir, root)
    }

    #[test]
    fn listing_is_relative_sorted_and_skips_links() {
        let (_dir, root) = root();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("link")).unwrap();
        let listing = list_files(&root, 100).unwrap();
        assert_eq!(&listing[..], b"a.txt\nsub/b.txt\nsub/deeper/c.txt\n");
        assert!(list_files(&root, 2).is_err(), "the entry limit holds");
    }

    #[test]
    fn paths_cannot_leave_the_root() {
        let (dir, root) = root();
        let outside = dir
            .path()
            .parent()
            .unwrap()
            .join("hgframe-outside-test.txt");
        assert!(resolve_existing(&root, "a.txt").is_ok());
        assert!(
            resolve_existing(&root, "./sub/../a.txt").is_err(),
            "`..` anywhere"
        );
        assert!(resolve_existing(&root, "../x").is_err());
        assert!(resolve_existing(&root, "/etc/passwd").is_err());
        assert!(resolve_existing(&root, "").is_err());
        assert!(resolve_existing(&root, "missing").is_err());
        assert!(
            resolve_existing(&root, "sub").is_err(),
            "a directory is not a file"
        );
        #[cfg(unix)]
        {
            std::fs::write(&outside, b"secret").unwrap();
            std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
            std::os::unix::fs::symlink("/", root.join("rootlink")).unwrap();
            let e = resolve_existing(&root, "escape").unwrap_err();
            assert!(e.message().contains("leaves the root"), "{e}");
            assert!(resolve_for_write(&root, "rootlink/tmp/x").is_err());
            std::fs::remove_file(&outside).unwrap();
        }
        assert!(resolve_for_write(&root, "new.txt").is_ok());
        assert!(resolve_for_write(&root, "sub/new.txt").is_ok());
        assert!(resolve_for_write(&root, "nodir/new.txt").is_err());
        assert!(resolve_for_write(&root, "sub").is_err());
        assert!(resolve_for_write(&root, "../new.txt").is_err());
    }

    #[test]
    fn temp_files_are_removed_unless_persisted() {
        let (_dir, root) = root();
        let t = tempfile_in(&root).unwrap();
        let path = t.path.clone();
        drop(t);
        assert!(!path.exists());
        let mut t = tempfile_in(&root).unwrap();
        std::io::Write::write_all(&mut t.file, b"new").unwrap();
        t.persist(&root.join("a.txt")).unwrap();
        assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"new");
        assert_eq!(
            list_files(&root, 100)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            3
        );
    }
}
