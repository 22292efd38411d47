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
//! missing file. Every file is opened beneath the root in one step ([`cap_std`]: the
//! kernel's `openat2(RESOLVE_BENEATH)` where it has it), so a directory swapped for a
//! symbolic link during a request cannot lead a read or a write outside the root.
//!
//! `put` is all-or-nothing: it writes a temporary file beside the target (named with the
//! reserved prefix `.hgframe-put-`) and renames it over the target, so readers see the
//! old content or the new one, never a mix; a failed `put` removes its temporary file.
//! Names with the reserved prefix are never listed by `files`, and `cat` and `put`
//! refuse them; [`FileCommands::new`] removes the ones a killed server left behind (so two
//! servers must not share a root). `put` refuses data over a size limit, counted in
//! decoded bytes ([`FileCommands::set_max_put_bytes`], default 1 GiB).
//!
//! `cat` can answer from a response cache ([`FileCommands::set_cache`], off unless
//! set): the compressed answer of a file that did not change since (size, times, inode)
//! is sent again as it is, with no compression work, when the response is compressed
//! in a profile that takes pre-compressed data (zstd) and not marked sensitive. See
//! [`cache`].
//!
//! ```no_run
//! use hgframe::commands::FileCommands;
//! use hgframe::engine::Registry;
//! let mut registry = Registry::new();
//! FileCommands::new(".")?.register(&mut registry);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cap_std::fs::Dir;

use hgframe_engine::{
    BlockingPool, CommandError, CommandInput, DataReader, Error, Permission, Registry, Responder,
};

pub mod cache;
mod cached;

use cache::ResponseCache;
pub use cache::{CacheLimits, CacheStats};

/// Bytes `cat` reads from the file at a time, at least (see [`MAX_READ_CHUNK`]).
const READ_CHUNK: usize = 256 << 10;

/// The most `cat` reads at once, whatever the response prefers
/// ([`Responder::preferred_write_len`]): a running `cat` holds two chunks.
const MAX_READ_CHUNK: usize = 4 << 20;

/// The prefix of `put`'s temporary files: names that start with it are reserved.
pub const TEMP_PREFIX: &str = ".hgframe-put-";

/// The default of [`FileCommands::set_max_put_bytes`]: 1 GiB.
pub const DEFAULT_MAX_PUT_BYTES: u64 = 1 << 30;

/// The file commands over one root directory.
#[derive(Debug, Clone)]
pub struct FileCommands {
    root: Arc<PathBuf>,
    dir: Arc<Dir>,
    max_list_entries: usize,
    max_put_bytes: u64,
    /// Shared by the clones the commands are registered with.
    cache: Option<Arc<ResponseCache>>,
}

impl FileCommands {
    /// Commands over `root`, which must be an existing directory. Removes the temporary
    /// files of `put`s that never finished (a server killed mid-`put`) anywhere under
    /// the root.
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
        let dir = Dir::open_ambient_dir(&canonical, cap_std::ambient_authority())
            .map_err(|e| Error::io(format!("cannot use {} as the root", root.display()), e))?;
        remove_stale_temp_files(&dir).map_err(|e| {
            Error::invalid(format!(
                "cannot clean up temporary files under {}: {e}",
                root.display()
            ))
        })?;
        Ok(Self {
            root: Arc::new(canonical),
            dir: Arc::new(dir),
            max_list_entries: 1_000_000,
            max_put_bytes: DEFAULT_MAX_PUT_BYTES,
            cache: None,
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

    /// Most bytes of content one `put` writes, counted after decoding, default
    /// [`DEFAULT_MAX_PUT_BYTES`] (1 GiB). More is an application error naming the limit;
    /// the old file stays as it was and no temporary file remains. With 0 only empty
    /// files can be written.
    pub fn set_max_put_bytes(&mut self, n: u64) -> &mut Self {
        self.max_put_bytes = n;
        self
    }

    /// Answers `cat` through a response cache with these limits, empty at first
    /// ([`CacheLimits::disabled`], the default, for none). Call it before
    /// [`Self::register`]: the commands registered share the cache they were registered
    /// with. Limits that cannot work ([`CacheLimits::check`]) are refused, and the
    /// cache stays as it was.
    ///
    /// ```no_run
    /// use hgframe::commands::{CacheLimits, FileCommands};
    /// let mut files = FileCommands::new(".")?;
    /// files.set_cache(CacheLimits { max_bytes: 16 << 20, ..CacheLimits::default() })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_cache(&mut self, limits: CacheLimits) -> Result<&mut Self, Error> {
        limits
            .check()
            .map_err(|reason| Error::invalid(format!("response cache: {reason}")))?;
        self.cache = ResponseCache::new(limits).map(Arc::new);
        Ok(self)
    }

    /// The response cache's counters (hits, misses, bytes held), if there is a cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Registers `echo`, `files`, `cat` and `put`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("echo", Permission::ReadOnly, echo);
        let this = self.clone();
        registry.register(
            "files",
            Permission::ReadOnly,
            move |input: CommandInput, out| {
                let this = this.clone();
                let pool = input.blocking().clone();
                async move { this.files(pool, out).await }
            },
        );
        let this = self.clone();
        registry.register("cat", Permission::ReadOnly, move |input, out| {
            let this = this.clone();
            async move { this.cat(input, out).await }
        });
        let this = self.clone();
        registry.register("put", Permission::ReadWrite, move |input, out| {
            let this = this.clone();
            async move { this.put(input, out).await }
        });
    }

    async fn files(&self, pool: BlockingPool, out: Responder) -> Result<(), CommandError> {
        let dir = Arc::clone(&self.dir);
        let max = self.max_list_entries;
        let listing = pool
            .run(move || list_files(&dir, max))
            .await
            .map_err(|_| CommandError::new("listing the files failed"))??;
        out.finish(listing).await?;
        Ok(())
    }

    async fn cat(&self, input: CommandInput, out: Responder) -> Result<(), CommandError> {
        let path = input.arg_str("path")?.to_owned();
        let relative = check_relative(&path)?.to_path_buf();
        if is_reserved(&relative) {
            // Temporary files are not files of the tree.
            return Err(CommandError::new(format!("no such file: {path}")));
        }
        // Every read is a job on the server's bounded blocking pool, one chunk at a
        // time: many `cat`s at once share its threads, and the responder's back-pressure
        // pauses the reads (at most one chunk is read ahead).
        let pool = input.blocking().clone();
        let dir = Arc::clone(&self.dir);
        let shown = path.clone();
        let (mut file, meta) = pool
            .run(move || {
                let file = open_existing(&dir, &relative, &shown)?;
                let meta = file.metadata().ok();
                Ok::<_, CommandError>((file, meta))
            })
            .await
            .map_err(|e| CommandError::new(e.to_string()))??;
        if let (Some(cache), Some(meta)) = (&self.cache, &meta) {
            if let Some(plan) = cached::plan(cache, &out, &path, meta) {
                return cached::answer(cache, plan, &pool, file, out, &path).await;
            }
        }
        // The size, for progress reports (0, "unknown", if it cannot be read).
        let total = meta.map_or(0, |m| m.len());
        let mut out = out;
        // Chunks of what the response handles best: with compression on several cores,
        // a worker's whole piece (a smaller write would stay on the exchange's task).
        let chunk = out.preferred_write_len().clamp(READ_CHUNK, MAX_READ_CHUNK);
        let mut current;
        (file, current) = read_chunk(&pool, file, &path, chunk).await?;
        // Progress (extension `progress`, if the client accepted it; rate-limited by the
        // engine) for files of more than one chunk: bytes sent of the file's size.
        let large = current.len() == chunk;
        let mut sent = 0u64;
        // One chunk of look-ahead so the last piece carries `eos` (no empty final frame).
        while current.len() == chunk {
            let next;
            (file, next) = read_chunk(&pool, file, &path, chunk).await?;
            if next.is_empty() {
                break;
            }
            let piece = std::mem::replace(&mut current, next);
            sent += piece.len() as u64;
            out.write(piece).await?;
            out.progress("cat", sent, total.max(sent)).await?;
        }
        if large {
            let end = sent + current.len() as u64;
            out.progress("cat", end, end).await?;
        }
        out.finish(current).await?;
        Ok(())
    }

    async fn put(&self, mut input: CommandInput, out: Responder) -> Result<(), CommandError> {
        let path = input.arg_str("path")?.to_owned();
        let (parent, name) = split_for_write(&path)?;
        let pool = input.blocking().clone();
        let mut data = input
            .take_data()
            .ok_or_else(|| CommandError::new("put needs data: the new content of the file"))?;
        let dir = Arc::clone(&self.dir);
        let shown = path.clone();
        let name_for_check = name.clone();
        let temp = pool
            .run(move || prepare_put(&dir, &parent, &name_for_check, &shown))
            .await
            .map_err(|_| CommandError::new("writing the file failed"))??;
        let mut slot = Some(temp);
        let result = self.fill(&pool, &mut data, &mut slot, &path).await;
        let result = match (result, slot.take()) {
            (Ok(()), Some(temp)) => pool
                .run(move || temp.commit(&name))
                .await
                .map_err(|_| CommandError::new("writing the file failed"))
                .and_then(|r| r.map_err(|e| write_error(&path, &e))),
            (Ok(()), None) => Err(CommandError::new("writing the file failed")),
            (Err(e), temp) => {
                // Removed on the pool; dropping it anywhere would remove it too.
                if let Some(temp) = temp {
                    let _ = pool.run(move || drop(temp)).await;
                }
                Err(e)
            }
        };
        result?;
        out.finish(Bytes::new()).await?;
        Ok(())
    }

    /// Writes the data into the temporary file in `slot`, refusing more than the limit.
    async fn fill(
        &self,
        pool: &BlockingPool,
        data: &mut DataReader,
        slot: &mut Option<TempFile>,
        path: &str,
    ) -> Result<(), CommandError> {
        let max = self.max_put_bytes;
        let mut written: u64 = 0;
        while let Some(piece) = data.chunk().await? {
            written = written.saturating_add(u64::try_from(piece.len()).unwrap_or(u64::MAX));
            if written > max {
                return Err(CommandError::new(format!(
                    "put {path}: the content is over the limit of {max} bytes"
                )));
            }
            let Some(mut temp) = slot.take() else {
                return Err(CommandError::new("writing the file failed"));
            };
            let (temp, result) = pool
                .run(move || {
                    let result = temp.write_all(&piece);
                    (temp, result)
                })
                .await
                .map_err(|_| CommandError::new("writing the file failed"))?;
            *slot = Some(temp);
            result.map_err(|e| write_error(path, &e))?;
        }
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

/// Whether a component of `relative` has the reserved prefix of temporary files.
fn is_reserved(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| is_reserved_name(c.as_os_str()))
}

fn is_reserved_name(name: &std::ffi::OsStr) -> bool {
    os_bytes(name).starts_with(TEMP_PREFIX.as_bytes())
}

/// Whether `e` is cap-std refusing a path that leads outside the root (`..` or a
/// symbolic link out of it), rather than an error of the system.
fn is_escape(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

fn open_error(path: &str, e: &std::io::Error) -> CommandError {
    if is_escape(e) {
        CommandError::new(format!("path leaves the root: {path}"))
    } else if e.kind() == std::io::ErrorKind::NotFound {
        CommandError::new(format!("no such file: {path}"))
    } else {
        CommandError::new(format!("cannot open {path}: {e}"))
    }
}

/// Opens the existing regular file `relative` beneath the root, in one step: no
/// component, even one swapped for a symbolic link meanwhile, can lead outside it.
fn open_existing(dir: &Dir, relative: &Path, path: &str) -> Result<std::fs::File, CommandError> {
    // Refused before opening too: opening a FIFO would block.
    let meta = dir.metadata(relative).map_err(|e| open_error(path, &e))?;
    if !meta.is_file() {
        return Err(CommandError::new(format!("not a regular file: {path}")));
    }
    let file = dir.open(relative).map_err(|e| open_error(path, &e))?;
    let meta = file.metadata().map_err(|e| read_error(path, &e))?;
    if !meta.is_file() {
        return Err(CommandError::new(format!("not a regular file: {path}")));
    }
    Ok(file.into_std())
}

/// The directory and the file name `put` writes `path` to, checked as text.
fn split_for_write(path: &str) -> Result<(PathBuf, std::ffi::OsString), CommandError> {
    let relative = check_relative(path)?;
    if is_reserved(relative) {
        return Err(CommandError::new(format!(
            "names starting with {TEMP_PREFIX} are reserved: {path}"
        )));
    }
    let name = relative
        .file_name()
        .ok_or_else(|| CommandError::new(format!("not a file name: {path}")))?;
    let parent = relative.parent().unwrap_or_else(|| Path::new(""));
    Ok((parent.to_path_buf(), name.to_owned()))
}

/// Opens the directory `parent` beneath the root (it must exist) and creates the
/// temporary file of a `put` in it.
fn prepare_put(
    root: &Dir,
    parent: &Path,
    name: &std::ffi::OsStr,
    path: &str,
) -> Result<TempFile, CommandError> {
    let dir = if parent.as_os_str().is_empty() {
        root.try_clone()
    } else {
        root.open_dir(parent)
    }
    .map_err(|e| {
        if is_escape(&e) {
            CommandError::new(format!("path leaves the root: {path}"))
        } else if e.kind() == std::io::ErrorKind::NotFound {
            CommandError::new(format!("no such directory for {path}"))
        } else {
            write_error(path, &e)
        }
    })?;
    if dir.symlink_metadata(name).is_ok_and(|m| m.is_dir()) {
        return Err(CommandError::new(format!("is a directory: {path}")));
    }
    TempFile::create(dir).map_err(|e| write_error(path, &e))
}

fn read_error(path: &str, e: &std::io::Error) -> CommandError {
    CommandError::new(format!("cannot read {path}: {e}"))
}

fn write_error(path: &str, e: &std::io::Error) -> CommandError {
    CommandError::new(format!("cannot write {path}: {e}"))
}

/// Reads up to `len` bytes of `file` on the pool (fewer only at its end).
async fn read_chunk(
    pool: &BlockingPool,
    mut file: std::fs::File,
    shown: &str,
    len: usize,
) -> Result<(std::fs::File, Bytes), CommandError> {
    let (file, chunk) = pool
        .run(move || {
            let chunk = read_full(&mut file, len).map(BytesMut::freeze);
            (file, chunk)
        })
        .await
        .map_err(|e| CommandError::new(e.to_string()))?;
    Ok((file, chunk.map_err(|e| read_error(shown, &e))?))
}

/// Up to `len` bytes of `file`, fewer only at its end: reads are repeated while they
/// come back short, so pieces are large whatever the file system hands out at once.
fn read_full(file: &mut std::fs::File, len: usize) -> std::io::Result<BytesMut> {
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        match file.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The regular files under the root (symbolic links are neither listed nor followed,
/// temporary files not listed), as sorted relative paths, one per line.
fn list_files(root: &Dir, max: usize) -> Result<Bytes, CommandError> {
    let mut found: Vec<Vec<u8>> = Vec::new();
    walk(root, |relative, _, name, kind| {
        if kind.is_file() && !is_reserved_name(name) {
            if found.len() >= max {
                return Err(CommandError::new(format!(
                    "more than {max} files under the root"
                )));
            }
            found.push(path_bytes(relative));
        }
        Ok(())
    })?;
    found.sort();
    let mut out = BytesMut::new();
    for path in found {
        out.extend_from_slice(&path);
        out.extend_from_slice(b"\n");
    }
    Ok(out.freeze())
}

/// Removes the temporary files `put` left under the root (a server killed mid-`put`).
fn remove_stale_temp_files(root: &Dir) -> Result<(), CommandError> {
    walk(root, |relative, dir, name, kind| {
        if kind.is_file() && is_reserved_name(name) {
            match dir.remove_file(name) {
                Ok(()) => {
                    tracing::info!(path = %relative.display(), "removed a stale temporary file")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CommandError::new(format!(
                        "cannot remove {}: {e}",
                        relative.display()
                    )))
                }
            }
        }
        Ok(())
    })
}

/// Calls `visit(relative path, its directory, its name, its type)` for every entry under
/// `root` that is not a directory, descending into directories (not into symbolic
/// links, nor into names with the reserved prefix). Every directory is opened beneath
/// the root through its parent, and each is visited once.
fn walk(
    root: &Dir,
    mut visit: impl FnMut(
        &Path,
        &Dir,
        &std::ffi::OsStr,
        cap_std::fs::FileType,
    ) -> Result<(), CommandError>,
) -> Result<(), CommandError> {
    let list_error = |dir: &Path, e: std::io::Error| {
        if dir.as_os_str().is_empty() {
            CommandError::new(format!("cannot list: {e}"))
        } else {
            CommandError::new(format!("cannot list {}: {e}", dir.display()))
        }
    };
    let top = root.try_clone().map_err(|e| list_error(Path::new(""), e))?;
    let mut seen = std::collections::HashSet::new();
    seen.extend(dir_id(&top));
    let mut dirs = vec![(PathBuf::new(), top)];
    while let Some((relative, dir)) = dirs.pop() {
        let entries = dir.entries().map_err(|e| list_error(&relative, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| list_error(&relative, e))?;
            // The entry's own type: a symbolic link is not followed.
            let kind = entry.file_type().map_err(|e| list_error(&relative, e))?;
            let name = entry.file_name();
            let path = relative.join(&name);
            if !kind.is_dir() {
                visit(&path, &dir, &name, kind)?;
                continue;
            }
            if is_reserved_name(&name) {
                continue;
            }
            match entry.open_dir() {
                Ok(sub) => {
                    // Swapped for a link to a directory already seen: not again.
                    if dir_id(&sub).map_or(true, |id| seen.insert(id)) {
                        dirs.push((path, sub));
                    }
                }
                // Gone, or swapped for something else, since it was listed.
                Err(e)
                    if is_escape(&e)
                        || e.kind() == std::io::ErrorKind::NotFound
                        || !dir.symlink_metadata(&name).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(list_error(&path, e)),
            }
        }
    }
    Ok(())
}

/// What tells two open directories apart: device and inode where there are such.
#[cfg(unix)]
fn dir_id(dir: &Dir) -> Option<(u64, u64)> {
    use cap_std::fs::MetadataExt;
    dir.dir_metadata().ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(_dir: &Dir) -> Option<(u64, u64)> {
    None
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

/// The temporary file of a `put`, in the target's directory, removed unless committed.
struct TempFile {
    dir: Dir,
    name: String,
    file: Option<cap_std::fs::File>,
}

impl TempFile {
    /// A new file named with [`TEMP_PREFIX`] and a random suffix in `dir`.
    fn create(dir: Dir) -> std::io::Result<Self> {
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        for attempt in 0u32..100 {
            let name = temp_name(attempt);
            match dir.open_with(&name, &options) {
                Ok(file) => {
                    return Ok(Self {
                        dir,
                        name,
                        file: Some(file),
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

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => std::io::Write::write_all(file, bytes),
            None => Err(std::io::Error::other("the temporary file is closed")),
        }
    }

    /// Flushes the data to disk and renames the file over `target`, in the same
    /// directory.
    fn commit(mut self, target: &std::ffi::OsStr) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        self.dir.rename(&self.name, &self.dir, target)?;
        self.name.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.name.is_empty() {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

/// A name with [`TEMP_PREFIX`] and 64 random bits (the standard library's randomly
/// keyed hasher; the name is created with `O_EXCL`, so a clash is only retried).
fn temp_name(attempt: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u32(attempt);
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(d.as_nanos());
    }
    format!("{TEMP_PREFIX}{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, PathBuf, Dir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/b.txt"), b"b").unwrap();
        std::fs::write(root.join("sub/deeper/c.txt"), b"c").unwrap();
        let cap = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).unwrap();
        (dir, root, cap)
    }

    fn open(dir: &Dir, path: &str) -> Result<std::fs::File, CommandError> {
        open_existing(dir, check_relative(path)?, path)
    }

    fn prepare(dir: &Dir, path: &str) -> Result<TempFile, CommandError> {
        let (parent, name) = split_for_write(path)?;
        prepare_put(dir, &parent, &name, path)
    }

    #[test]
    fn listing_is_relative_sorted_and_skips_links_and_temp_files() {
        let (_dir, root, cap) = root();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("a.txt"), root.join("link")).unwrap();
            std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        }
        std::fs::write(root.join("sub/.hgframe-put-0123"), b"half").unwrap();
        let listing = list_files(&cap, 100).unwrap();
        assert_eq!(&listing[..], b"a.txt\nsub/b.txt\nsub/deeper/c.txt\n");
        assert!(list_files(&cap, 2).is_err(), "the entry limit holds");
        remove_stale_temp_files(&cap).unwrap();
        assert!(!root.join("sub/.hgframe-put-0123").exists());
        assert!(root.join("sub/b.txt").exists());
    }

    #[test]
    fn paths_cannot_leave_the_root() {
        let (dir, root, cap) = root();
        let outside = dir
            .path()
            .parent()
            .unwrap()
            .join("hgframe-outside-test.txt");
        assert!(open(&cap, "a.txt").is_ok());
        assert!(open(&cap, "./sub/../a.txt").is_err(), "`..` anywhere");
        assert!(open(&cap, "../x").is_err());
        assert!(open(&cap, "/etc/passwd").is_err());
        assert!(open(&cap, "").is_err());
        assert_eq!(
            open(&cap, "missing").unwrap_err().message(),
            "no such file: missing"
        );
        assert!(open(&cap, "sub").is_err(), "a directory is not a file");
        #[cfg(unix)]
        {
            std::fs::write(&outside, b"secret").unwrap();
            std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
            std::os::unix::fs::symlink("/", root.join("rootlink")).unwrap();
            std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
            let e = open(&cap, "escape").unwrap_err();
            assert!(e.message().contains("leaves the root"), "{e}");
            assert!(open(&cap, "sub/up/a.txt").is_ok(), "a link inside the root");
            let e = prepare(&cap, "rootlink/tmp/x").err().unwrap();
            assert!(e.message().contains("leaves the root"), "{e}");
            std::fs::remove_file(&outside).unwrap();
        }
        assert!(prepare(&cap, "new.txt").is_ok());
        assert!(prepare(&cap, "sub/new.txt").is_ok());
        assert!(prepare(&cap, "nodir/new.txt").is_err());
        assert!(prepare(&cap, "sub").is_err());
        assert!(prepare(&cap, "../new.txt").is_err());
        assert!(prepare(&cap, ".hgframe-put-x").is_err(), "reserved");
        assert_eq!(
            list_files(&cap, 100).unwrap().len(),
            33,
            "no temp file left"
        );
    }

    #[test]
    fn temp_files_are_removed_unless_committed() {
        let (_dir, root, cap) = root();
        let t = prepare(&cap, "a.txt").unwrap();
        let path = root.join(&t.name);
        assert!(path.exists());
        drop(t);
        assert!(!path.exists());
        let mut t = prepare(&cap, "a.txt").unwrap();
        t.write_all(b"new").unwrap();
        t.commit(std::ffi::OsStr::new("a.txt")).unwrap();
        assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
