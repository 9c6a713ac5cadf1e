//! Shared Parquet plumbing: crash-safe writes, schema-version metadata, hive discovery.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;

/// Key of the Parquet key-value metadata entry naming the dataset kind.
pub const KEY_DATASET: &str = "migwatt.dataset";
/// Key of the Parquet key-value metadata entry holding the schema version.
pub const KEY_SCHEMA_VERSION: &str = "migwatt.schema_version";

/// Errors of reading, writing and validating datasets.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Filesystem error on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Polars failed to read or write a named file.
    #[error("{path}: {source}")]
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
    let mut kv = vec![
        (KEY_DATASET.to_string(), kind.name.to_string()),
        (KEY_SCHEMA_VERSION.to_string(), kind.version.to_string()),
    ];
    kv.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    write_atomic_with(path, |w, tmp| {
        ParquetWriter::new(w)
            .with_compression(ParquetCompression::Zstd(None))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(kv)))
            .finish(df)
            .map(|_| ())
            .map_err(|e| DatasetError::polars(tmp, e))
    })
}

/// Write `path` through `fill` (given a buffered writer and the temporary path, for errors)
/// into a temporary sibling, fsync it, rename it over `path` and fsync the folder, so that a
/// crash never leaves a half-written file at `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Writeback<'_>>, &Path) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        {
            let mut w = BufWriter::new(Writeback::new(&mut file));
            fill(&mut w, &tmp)?;
            w.flush().map_err(|e| DatasetError::io(&tmp, e))?;
        }
        file.sync_all().map_err(|e| DatasetError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| DatasetError::io(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

    #[test]
    fn a_bare_file_name_goes_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("bare.parquet")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/b.parquet")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/b.parquet")), Path::new("/"));
    }
}
