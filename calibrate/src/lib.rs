//! Migration records from real hypervisors: parsers for Xen (xend.log / libxc save output),
//! QEMU (JSON lines of QMP replies and events) and libvirt (`virsh domjobinfo`) logs, and a
//! QMP collector that drives a live migration and records it. Every source yields the
//! migrations and rounds datasets of the `datasets` crate.

pub mod accel;
pub mod campaign;
pub mod collect;
pub mod demo;
pub mod error;
pub mod hostpower;
pub mod libvirt;
pub mod output;
pub mod precopy;
pub mod probe;
pub mod qemu;
pub mod qmp;
pub mod relay;
pub mod report;
pub mod summary;
pub mod units;
pub mod verify;
pub mod xen;

pub use error::{CalibrateError, Problem};

use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;

/// One migration as parsed: its row and its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The migrations-dataset row.
    pub row: MigrationRow,
    /// The rounds-dataset rows, in round order.
    pub rounds: Vec<RoundRow>,
}

/// What parsing one log gave: complete migrations, and problems found on the way.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Complete migrations, in log order.
    pub migrations: Vec<Migration>,
    /// Malformed lines, invariant violations and incomplete migrations, with file and line.
    pub problems: Vec<Problem>,
}

/// Labels and host names that logs do not carry (or that the user overrides).
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Workload label for every migration of the log.
    pub workload: Option<String>,
    /// VM name overriding what the log says.
    pub vm: Option<String>,
    /// Source host name overriding the log's (default `source` when the log has none).
    pub source_host: Option<String>,
    /// Destination host name overriding the log's (default `destination`).
    pub destination_host: Option<String>,
}

impl IngestOptions {
    /// The source host: the option, else the log's, else `source`.
    pub fn source_host_or(&self, from_log: Option<&str>) -> String {
        self.source_host
            .clone()
            .or_else(|| from_log.map(str::to_string))
            .unwrap_or_else(|| "source".into())
    }
    /// The destination host: the option, else the log's, else `destination`.
    pub fn destination_host_or(&self, from_log: Option<&str>) -> String {
        self.destination_host
            .clone()
            .or_else(|| from_log.map(str::to_string))
            .unwrap_or_else(|| "destination".into())
    }
}

/// The log formats `ingest` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// xend.log or libxc save output (Xen 3.x iteration lines, Xen 4.x progress lines).
    Xen,
    /// JSON lines of QMP replies and events as written by [`collect::migrate`].
    Qemu,
    /// Successive `virsh domjobinfo` outputs.
    Libvirt,
}

/// Parse one log file's bytes. `path` only names the file in problems and ids.
pub fn parse_log(
    kind: LogKind,
    path: &std::path::Path,
    bytes: &[u8],
    opts: &IngestOptions,
) -> Parsed {
    match kind {
        LogKind::Xen => xen::parse(path, bytes, opts),
        LogKind::Qemu => qemu::parse(path, bytes, opts),
        LogKind::Libvirt => libvirt::parse(path, bytes, opts),
    }
}

/// Read and parse one log file; a file without any complete migration is an error.
pub fn ingest_file(
    kind: LogKind,
    path: &std::path::Path,
    opts: &IngestOptions,
) -> Result<Parsed, CalibrateError> {
    let bytes = std::fs::read(path).map_err(|e| CalibrateError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let parsed = parse_log(kind, path, &bytes, opts);
    if parsed.migrations.is_empty() {
        return Err(CalibrateError::NoMigration {
            path: path.to_path_buf(),
            problems: parsed.problems,
        });
    }
    Ok(parsed)
}

/// The file name of `path` without extension, for ids of logs without a clock.
pub(crate) fn file_stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "log".into())
}
