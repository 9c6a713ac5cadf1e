//! Shared Parquet plumbing: crash-safe writes, schema-version metadata, hive discovery, and
//! the output guard every write goes through.
//!
//! The guard: a write never replaces what it was not asked to write. An existing output that
//! is not a regular file (directory, device, FIFO, socket, symbolic link to one of those) is
//! refused; a symbolic link to a regular file is written through (the link stays); and once
//! a command has declared its inputs ([`protect_inputs`]) no write replaces one of them or
//! lands inside an input folder. Files are written to a temporary sibling first (removed on
//! any failure), so a failed command leaves neither a partial nor a temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use polars::prelude::*;

/// Key of the Parquet key-value metadata entry naming the dataset kind.
pub const KEY_DATASET: &str = "migwatt.dataset";
/// Key of the Parquet key-value metadata entry holding the schema version.
pub const KEY_SCHEMA_VERSION: &str = "migwatt.schema_version";

/// Errors of reading, writing and validating datasets.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Polars failed to read or write a named file.
    #[error("{path}")]
    Polars {
        path: PathBuf,
        #[source]
        source: PolarsError,
    },
    /// The file is a dataset of another kind.
    #[error("{path}: is a '{found}' dataset, expected '{expected}'")]
    WrongKind {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The file's schema major version is not one this build reads.
    #[error("{path}: schema version {found} of dataset '{kind}' is not supported (this build reads {supported}); upgrade migwatt or convert the file")]
    UnsupportedVersion {
        path: PathBuf,
        kind: String,
        found: String,
        supported: String,
    },
    /// A column is missing or has the wrong type.
    #[error("{path}: column '{column}': {problem}")]
    Column {
        path: PathBuf,
        column: String,
        problem: String,
    },
    /// Nothing to read at a path.
    #[error("{path}: no Parquet files found")]
    Empty { path: PathBuf },
    /// An output path the guard refuses; nothing was written.
    #[error("{path}: {problem}; nothing was written")]
    Refused { path: PathBuf, problem: String },
    /// A value that is not a finite number, refused before it reached a file.
    #[error(
        "{path}: column '{column}' row {row}: {value} is not a finite number; nothing was written"
    )]
    NonFinite {
        path: PathBuf,
        column: String,
        row: usize,
        value: f64,
    },
    /// Values that break the rules of their dataset kind (see `migwatt datasets check`).
    #[error("{path}: {}", crate::check::describe_violations(.kind, .violations, *.total))]
    Rules {
        path: PathBuf,
        kind: String,
        /// The first violations found (at most [`crate::check::MAX_REPORTED`]).
        violations: Vec<crate::check::Violation>,
        /// How many there are in all.
        total: usize,
    },
    /// The write was cancelled (Ctrl-C); the temporary file is gone.
    #[error("{path}: cancelled before the file was complete; nothing was written")]
    Cancelled { path: PathBuf },
}

impl DatasetError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn polars(path: &Path, source: PolarsError) -> Self {
        DatasetError::Polars {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A dataset schema version (semver major.minor.patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// Incompatible changes bump this; readers refuse other majors.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes that do not change columns.
    pub patch: u32,
}

impl SchemaVersion {
    /// Parse `MAJOR.MINOR.PATCH`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let v = SchemaVersion {
            major: it.next()??,
            minor: it.next()??,
            patch: it.next()??,
        };
        it.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A dataset kind with its current schema version.
#[derive(Debug, Clone, Copy)]
pub struct DatasetKind {
    /// Name written to `migwatt.dataset`.
    pub name: &'static str,
    /// Version written to `migwatt.schema_version`.
    pub version: SchemaVersion,
}

/// Write `df` to `path` so that a crash never leaves a half file there: write a temporary
/// sibling, fsync it, rename it over `path`, fsync the directory.
pub fn write_parquet_atomic(
    df: &mut DataFrame,
    path: &Path,
    kind: DatasetKind,
) -> Result<(), DatasetError> {
    write_parquet_atomic_with(df, path, kind, &[])
}

/// [`write_parquet_atomic`] with extra key-value metadata entries.
pub fn write_parquet_atomic_with(
    df: &mut DataFrame,
    path: &Path,
    kind: DatasetKind,
    extra: &[(&str, &str)],
) -> Result<(), DatasetError> {
    stage_parquet_with(df, path, kind, extra)?.commit()
}

/// [`write_parquet_atomic_with`] up to the rename: the file waits in its temporary sibling
/// until [`Staged::commit`] (dropped uncommitted, it is removed). Refuses a frame holding a
/// NaN or infinite float before anything is written.
pub fn stage_parquet_with(
    df: &mut DataFrame,
    path: &Path,
    kind: DatasetKind,
    extra: &[(&str, &str)],
) -> Result<Staged, DatasetError> {
    ensure_finite(df, path)?;
    let mut kv = vec![
        (KEY_DATASET.to_string(), kind.name.to_string()),
        (KEY_SCHEMA_VERSION.to_string(), kind.version.to_string()),
    ];
    kv.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    stage_atomic_with(path, |w, tmp| {
        ParquetWriter::new(w)
            .with_compression(ParquetCompression::Zstd(None))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(kv)))
            .finish(df)
            .map(|_| ())
            .map_err(|e| DatasetError::polars(tmp, e))
    })
}

/// Refuse a frame with a NaN or infinite value in a float column: no dataset holds one.
pub fn ensure_finite(df: &DataFrame, path: &Path) -> Result<(), DatasetError> {
    for c in df.columns() {
        let Ok(ca) = c.as_materialized_series().f64() else {
            continue;
        };
        if let Some((row, value)) = ca
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.filter(|v| !v.is_finite()).map(|v| (i, v)))
        {
            return Err(DatasetError::NonFinite {
                path: path.to_path_buf(),
                column: c.name().to_string(),
                row,
                value,
            });
        }
    }
    Ok(())
}

/// Write `path` through `fill` (given a buffered writer and the temporary path, for errors)
/// into a temporary sibling, fsync it, rename it over `path` and fsync the folder, so that a
/// crash never leaves a half-written file at `path`. `path` passes [`check_output`] first.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Writeback<'_>>, &Path) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    stage_atomic_with(path, fill)?.commit()
}

/// [`write_atomic_with`] up to the rename: the complete, fsynced file waits in its temporary
/// sibling for [`Staged::commit`], so that a command writing several outputs can write them
/// all before publishing any (a failure then leaves none).
pub fn stage_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Writeback<'_>>, &Path) -> Result<(), DatasetError>,
) -> Result<Staged, DatasetError> {
    let target = check_output(path)?;
    let dir = parent_dir(&target).to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| DatasetError::io(&dir, e))?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = Staged {
        tmp: dir.join(format!(".{file_name}.tmp-{}", std::process::id())),
        target,
        dir,
        committed: false,
    };
    let tmp = staged.tmp.as_path();
    let mut file = create_new_tmp(tmp)?;
    {
        let mut w = BufWriter::new(Writeback::new(&mut file));
        fill(&mut w, tmp)?;
        w.flush().map_err(|e| DatasetError::io(tmp, e))?;
    }
    file.sync_all().map_err(|e| DatasetError::io(tmp, e))?;
    Ok(staged)
}

/// Create a temporary file that did not exist: a leftover of this process id (a crash long
/// ago) is removed first, and a symbolic link planted at the name is never followed.
fn create_new_tmp(tmp: &Path) -> Result<File, DatasetError> {
    let open = || OpenOptions::new().write(true).create_new(true).open(tmp);
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp).map_err(|e| DatasetError::io(tmp, e))?;
            open()
        }
        r => r,
    }
    .map_err(|e| DatasetError::io(tmp, e))
}

/// A complete file in its temporary sibling, waiting to be renamed over its path. Dropped
/// without [`Staged::commit`], the temporary file is removed.
#[derive(Debug)]
#[must_use = "a staged file is removed unless committed"]
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staged {
    /// The file the commit replaces (the target of a symbolic link given as the output).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Rename the temporary file over the target and fsync the folder.
    pub fn commit(mut self) -> Result<(), DatasetError> {
        fs::rename(&self.tmp, &self.target).map_err(|e| DatasetError::io(&self.target, e))?;
        self.committed = true;
        sync_dir(&self.dir)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An exclusive lock on a folder (`DIR/.lock`, flock), released when dropped (or when the
/// process dies): writers that publish into one folder take turns.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Take the lock of `dir` (created if missing), waiting for another holder to finish:
/// `waiting` is called once if it has to wait, and the wait ends with
/// [`DatasetError::Cancelled`] as soon as `cancelled` says so.
pub fn lock_folder(
    dir: &Path,
    waiting: &mut dyn FnMut(),
    cancelled: &dyn Fn() -> bool,
) -> Result<FolderLock, DatasetError> {
    use std::os::fd::AsRawFd;
    fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DatasetError::io(&path, e))?;
    let mut told = false;
    loop {
        // SAFETY: flock only reads its integer arguments; the descriptor is open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(FolderLock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(DatasetError::io(&path, e));
        }
        if !told {
            waiting();
            told = true;
        }
        if cancelled() {
            return Err(DatasetError::Cancelled { path });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An input of the running command.
#[derive(Debug, Clone)]
struct Protected {
    /// Registration number, for [`InputsProtected`] to remove it.
    serial: u64,
    /// How the command names it (`--windows w.parquet`), for messages.
    label: String,
    /// Canonical path; its (device, inode) is read again at each check (catches a hard link
    /// to the input; never a stale number reused by another file).
    real: PathBuf,
    /// A folder: nothing may be written inside it.
    dir: bool,
}

/// The inputs of the running command (see [`protect_inputs`]).
static PROTECTED: Mutex<Vec<Protected>> = Mutex::new(Vec::new());

fn protected() -> std::sync::MutexGuard<'static, Vec<Protected>> {
    // The list is only ever pushed to: a panic elsewhere cannot leave it half-updated.
    PROTECTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Declare inputs of the running command, each with the option that names it (`--windows`):
/// until the returned value is dropped, no write of this process ([`check_output`]) replaces
/// one of them or lands inside one that is a folder. Paths that do not exist (yet) are
/// skipped: the command says so when it reads them.
pub fn protect_inputs<'a>(
    inputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> InputsProtected {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut list = protected();
    for (option, path) in inputs {
        let (Ok(real), Ok(meta)) = (fs::canonicalize(path), fs::metadata(path)) else {
            continue;
        };
        list.push(Protected {
            serial,
            label: format!("{option} {}", path.display()),
            real,
            dir: meta.is_dir(),
        });
    }
    InputsProtected { serial }
}

/// Inputs declared by [`protect_inputs`]; dropping it ends their protection.
#[derive(Debug)]
#[must_use = "the inputs are protected only while this value lives"]
pub struct InputsProtected {
    serial: u64,
}

impl Drop for InputsProtected {
    fn drop(&mut self) {
        protected().retain(|p| p.serial != self.serial);
    }
}

/// What a file-system entry is, for messages.
fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Check an output path before anything is written, and return the file a write replaces:
/// `path`, or the regular file a symbolic link at `path` points to. Refused: a path naming
/// no file (`dir/..`, `/`), an existing entry that is not a regular file (directory, device,
/// FIFO, socket; a symbolic link to one, or dangling), an input of the running command, and
/// anything inside an input folder (see [`protect_inputs`]).
pub fn check_output(path: &Path) -> Result<PathBuf, DatasetError> {
    let refuse = |problem: String| DatasetError::Refused {
        path: path.to_path_buf(),
        problem,
    };
    if !matches!(path.components().next_back(), Some(Component::Normal(_))) {
        return Err(refuse("names no file (expected a file path)".into()));
    }
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() && special_link(path).is_some() => {
            let to = special_link(path).unwrap_or_default();
            return Err(refuse(format!(
                "is a symbolic link into {} (a stream or device such as stdout, not a file to replace); give a file path",
                to.display()
            )));
        }
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(path) {
            Ok(t) if t.is_file() => {
                fs::canonicalize(path).map_err(|e| DatasetError::io(path, e))?
            }
            Ok(t) => {
                let to = fs::read_link(path).unwrap_or_default();
                return Err(refuse(format!(
                    "is a symbolic link to {} ({}); only regular files are replaced",
                    to.display(),
                    kind_of(t.file_type())
                )));
            }
            Err(_) => {
                return Err(refuse(
                    "is a dangling symbolic link; give the real path of the file to write".into(),
                ))
            }
        },
        Ok(m) if m.is_file() => path.to_path_buf(),
        Ok(m) => {
            return Err(refuse(format!(
                "is {}; only regular files are replaced (give a file path)",
                kind_of(m.file_type())
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(DatasetError::io(path, e)),
    };
    let list = protected();
    if list.is_empty() {
        return Ok(target);
    }
    let real = real_path(&target);
    let id = fs::metadata(&target).ok().map(|m| (m.dev(), m.ino()));
    for p in list.iter() {
        let input_id = fs::metadata(&p.real).ok().map(|m| (m.dev(), m.ino()));
        if real == p.real || (id.is_some() && id == input_id) {
            return Err(refuse(format!(
                "is the input {} of this command; write the output to another file",
                p.label
            )));
        }
        if p.dir && real.starts_with(&p.real) {
            return Err(refuse(format!(
                "is inside the input folder {} of this command; write the output outside it",
                p.label
            )));
        }
    }
    Ok(target)
}

/// Where a chain of symbolic links enters `/proc`, `/dev` or `/sys`, if it does: such links
/// (`/dev/stdout`, `/proc/self/fd/1`) name streams and devices, and resolving one to the file
/// behind it (stdout redirected to a log) and renaming over that would destroy the log.
fn special_link(path: &Path) -> Option<PathBuf> {
    let special = |p: &Path| ["/proc", "/dev", "/sys"].iter().any(|s| p.starts_with(s));
    let mut cur = real_path(parent_dir(path)).join(path.file_name()?);
    for _ in 0..40 {
        if special(&cur) {
            return Some(cur);
        }
        let to = fs::read_link(&cur).ok()?;
        cur = if to.is_absolute() {
            to
        } else {
            parent_dir(&cur).join(to)
        };
    }
    None
}

/// [`check_output`] on every output of a command (each with the option naming it), and that
/// no two of them are the same file. Run before the work, so a bad output fails at once.
pub fn check_outputs(outputs: &[(&str, &Path)]) -> Result<(), DatasetError> {
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for (option, path) in outputs {
        let real = real_path(&check_output(path)?);
        if let Some((first, _)) = seen.iter().find(|(_, r)| *r == real) {
            return Err(DatasetError::Refused {
                path: path.to_path_buf(),
                problem: format!("{option} names the same file as {first}; give two files"),
            });
        }
        seen.push((option, real));
    }
    Ok(())
}

/// The canonical form of a path that may not exist yet: its deepest existing ancestor made
/// canonical, the rest appended with `.` and `..` resolved by name.
fn real_path(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let parts: Vec<Component> = abs.components().collect();
    for k in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        if let Ok(mut real) = fs::canonicalize(&prefix) {
            for c in &parts[k..] {
                match c {
                    Component::ParentDir => {
                        real.pop();
                    }
                    Component::CurDir => {}
                    other => real.push(other),
                }
            }
            return real;
        }
    }
    abs
}

/// A file being written that starts the kernel's writeback of every full 8 MiB as soon as
/// it is written, so that the final fsync of a large file (a million-row residuals file is
/// 32 MB) waits for the last few megabytes instead of all of them.
pub struct Writeback<'a> {
    file: &'a mut File,
    written: u64,
    started: u64,
}

/// Bytes written between two writeback starts.
const WRITEBACK_STEP: u64 = 8 << 20;

impl<'a> Writeback<'a> {
    fn new(file: &'a mut File) -> Self {
        Writeback {
            file,
            written: 0,
            started: 0,
        }
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open.
        // SYNC_FILE_RANGE_WRITE starts writeback without waiting for it, and a failure here
        // only means the final fsync does all the work, as it would anyway.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.started as libc::off64_t,
                (self.written - self.started) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started = self.written;
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&mut self) {}
}

impl Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Write `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    write_atomic_with(path, |w, tmp| {
        w.write_all(bytes).map_err(|e| DatasetError::io(tmp, e))
    })
}

/// The directory a file goes in; a bare file name (empty parent) lives in `.`.
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DatasetError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DatasetError::io(dir, e))
}

/// Read one Parquet file, checking that it is a `kind` dataset of a supported major version.
/// Files without migwatt metadata are accepted (written by other tools) if their columns fit.
pub fn read_parquet_checked(path: &Path, kind: DatasetKind) -> Result<DataFrame, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut reader = ParquetReader::new(file);
    let meta = reader
        .get_metadata()
        .map_err(|e| DatasetError::polars(path, e))?
        .clone();
    let kv = meta.key_value_metadata.clone().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    if let Some(found) = get(KEY_DATASET) {
        if found != kind.name {
            return Err(DatasetError::WrongKind {
                path: path.to_path_buf(),
                expected: kind.name.into(),
                found,
            });
        }
    }
    if let Some(v) = get(KEY_SCHEMA_VERSION) {
        let ok = SchemaVersion::parse(&v).is_some_and(|p| p.major == kind.version.major);
        if !ok {
            return Err(DatasetError::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: kind.name.into(),
                found: v,
                supported: format!("{}.x", kind.version.major),
            });
        }
    }
    reader.finish().map_err(|e| DatasetError::polars(path, e))
}

/// Every `*.parquet` file under `path` (or `path` itself), sorted, skipping hidden and
/// `_`-prefixed entries as hive readers do.
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let meta = fs::metadata(path).map_err(|e| DatasetError::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| DatasetError::io(&dir, e))? {
            let entry = entry.map_err(|e| DatasetError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| DatasetError::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Fetch a typed column or say which file and column were wrong.
pub(crate) fn column<'a>(
    df: &'a DataFrame,
    name: &str,
    path: &Path,
) -> Result<&'a Column, DatasetError> {
    df.column(name).map_err(|_| DatasetError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        problem: "missing".into(),
    })
}

pub(crate) fn col_err(path: &Path, name: &str, problem: impl Into<String>) -> DatasetError {
    DatasetError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<(), DatasetError>) -> String {
        match r {
            Err(e @ DatasetError::Refused { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn non_regular_outputs_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let e = refused(write_bytes_atomic(&sub, b"x"));
        assert!(e.contains("is a directory"), "{e}");
        assert!(sub.is_dir());
        let e = refused(write_bytes_atomic(Path::new("/dev/null"), b"x"));
        assert!(e.contains("character device"), "{e}");
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let e = refused(write_bytes_atomic(&fifo, b"x"));
        assert!(e.contains("FIFO"), "{e}");
        // Whatever stdout is (a pipe, or a log file it is redirected to), never replaced.
        let link = dir.path().join("stdout");
        std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
        let e = refused(write_bytes_atomic(&link, b"x"));
        assert!(e.contains("symbolic link into /proc/self/fd/1"), "{e}");
        for stream in ["/dev/stdout", "/proc/self/fd/1", "/dev/fd/2"] {
            let e = refused(write_bytes_atomic(Path::new(stream), b"x"));
            assert!(e.contains("symbolic link into"), "{e}");
        }
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(refused(write_bytes_atomic(&dangling, b"x")).contains("dangling"));
        assert!(refused(write_bytes_atomic(&dir.path().join(".."), b"x")).contains("names no file"));
        assert!(leftovers(dir.path()).is_empty());
    }

    /// mkfifo through libc (the only FFI this crate already links).
    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_bytes_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn inputs_are_never_replaced_nor_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("windows.parquet");
        fs::write(&input, "input").unwrap();
        let folder = dir.path().join("samples");
        fs::create_dir_all(folder.join("host=a")).unwrap();
        let hard = dir.path().join("hard-link");
        fs::hard_link(&input, &hard).unwrap();
        let guard = protect_inputs([
            ("--windows", input.as_path()),
            ("--samples", folder.as_path()),
        ]);
        let e = refused(write_bytes_atomic(&input, b"x"));
        assert!(e.contains("is the input --windows"), "{e}");
        // Another spelling of the same file, and a hard link to it.
        let dotted = dir.path().join("samples/../windows.parquet");
        assert!(refused(write_bytes_atomic(&dotted, b"x")).contains("--windows"));
        assert!(refused(write_bytes_atomic(&hard, b"x")).contains("--windows"));
        let e = refused(write_bytes_atomic(
            &folder.join("host=a/new/e.parquet"),
            b"x",
        ));
        assert!(e.contains("inside the input folder --samples"), "{e}");
        assert_eq!(fs::read_to_string(&input).unwrap(), "input");
        assert!(!folder.join("host=a/new").exists());
        write_bytes_atomic(&dir.path().join("energy.parquet"), b"ok").unwrap();
        let e = check_outputs(&[
            ("--out", &dir.path().join("e.parquet")),
            ("--quality", &dir.path().join("./e.parquet")),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--quality names the same file as --out"), "{e}");
        drop(guard);
        write_bytes_atomic(&input, b"now an output").unwrap();
    }

    #[test]
    fn a_failed_or_uncommitted_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        let r = write_atomic_with(&p, |w, tmp| {
            w.write_all(b"half").unwrap();
            Err(DatasetError::Cancelled {
                path: tmp.to_path_buf(),
            })
        });
        assert!(matches!(r, Err(DatasetError::Cancelled { .. })));
        assert!(!p.exists());
        let staged = stage_atomic_with(&p, |w, tmp| {
            w.write_all(b"whole").map_err(|e| DatasetError::io(tmp, e))
        })
        .unwrap();
        assert!(!p.exists());
        drop(staged);
        assert!(!p.exists());
        assert!(leftovers(dir.path()).is_empty());
        stage_atomic_with(&p, |w, tmp| {
            w.write_all(b"whole").map_err(|e| DatasetError::io(tmp, e))
        })
        .unwrap()
        .commit()
        .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole");
    }

    #[test]
    fn non_finite_values_never_reach_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let kind = DatasetKind {
            name: "test",
            version: SchemaVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
        };
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut df =
                DataFrame::new(2, vec![Column::new("x".into(), [Some(1.0), Some(bad)])]).unwrap();
            let e = write_parquet_atomic(&mut df, &p, kind).unwrap_err();
            assert!(
                e.to_string().contains("column 'x' row 1")
                    && e.to_string().contains("not a finite"),
                "{e}"
            );
            assert!(!p.exists());
        }
    }

    #[test]
    fn a_bare_file_name_goes_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("bare.parquet")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/b.parquet")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/b.parquet")), Path::new("/"));
    }
}
