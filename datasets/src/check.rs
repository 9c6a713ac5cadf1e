//! Validation of dataset files against their schemas (`migwatt datasets check`).
//!
//! Each Parquet file names its dataset kind and schema version in its key-value metadata
//! (`migwatt.dataset`, `migwatt.schema_version`); the kind selects the expected columns from
//! [`KINDS`]. Every violation is reported, not just the first: missing columns, wrong types,
//! nulls where none are allowed, values outside what the column's unit allows (a timestamp in
//! seconds where nanoseconds are expected, negative durations or watts, a share outside 0..1),
//! unsorted timestamps and duplicate keys, with 0-based row numbers.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::io::{
    parquet_files, DatasetError, DatasetKind, SchemaVersion, KEY_DATASET, KEY_SCHEMA_VERSION,
};

/// Physical type a column must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// UTF-8 string.
    Str,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// Unsigned 32-bit integer.
    U32,
    /// 64-bit float.
    F64,
    /// Boolean.
    Bool,
}

impl ColType {
    /// The polars data type of this column type.
    pub fn dtype(self) -> DataType {
        match self {
            ColType::Str => DataType::String,
            ColType::I64 => DataType::Int64,
            ColType::U64 => DataType::UInt64,
            ColType::U32 => DataType::UInt32,
            ColType::F64 => DataType::Float64,
            ColType::Bool => DataType::Boolean,
        }
    }
}

/// What the values of a column must satisfy, from its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing beyond the type.
    Any,
    /// A finite number.
    Finite,
    /// A finite number >= 0 (durations, bytes/s, watts).
    NonNegative,
    /// ns since the Unix epoch, between 2000-01-01 and 2100-01-01 (catches s or ms).
    UtcNs,
    /// A share between 0 and 1.
    Share,
    /// One of a closed set of strings.
    OneOf(&'static [&'static str]),
}

/// One expected column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Physical type.
    pub ty: ColType,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// Unit (documentation; `-` for none).
    pub unit: &'static str,
    /// Value rule derived from the unit.
    pub rule: Rule,
    /// Minor schema version that added the column: files of an older minor may lack it.
    pub since_minor: u32,
}

/// Where a key must be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Within each file.
    File,
    /// Across every file of the kind under the checked path.
    Folder,
}

/// The expected shape of one dataset kind.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    /// Kind name and current version.
    pub kind: DatasetKind,
    /// Expected columns, in written order.
    pub columns: &'static [ColumnSpec],
    /// Columns forming the unique key (`host` for samples comes from the file's metadata).
    pub key: &'static [&'static str],
    /// Where the key must be unique.
    pub key_scope: KeyScope,
    /// (group columns, column) that must not decrease within each group of a file.
    pub sorted: Option<(&'static [&'static str], &'static str)>,
}

const fn col(
    name: &'static str,
    ty: ColType,
    nullable: bool,
    unit: &'static str,
    rule: Rule,
) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable,
        unit,
        rule,
        since_minor: 0,
    }
}

impl ColumnSpec {
    /// The same column, added by minor version `minor` (older files may lack it).
    const fn since(self, minor: u32) -> Self {
        ColumnSpec {
            since_minor: minor,
            ..self
        }
    }
}

use ColType::{Bool, Str, F64, I64, U32, U64};
use Rule::{Any, Finite, NonNegative, OneOf, Share, UtcNs};

const ROLES: &[&str] = &["source", "destination"];
const STATUSES: &[&str] = &["completed", "cancelled", "failed", "incomplete"];
const T_DOWN_METHODS: &[&str] = &[
    "guest_stop_resume",
    "source_stop_destination_completed",
    "qemu_reported",
    "libvirt_reported",
    "xen_last_iteration",
    "none",
];
const HYPERVISORS: &[&str] = &["xen3", "xen4", "qemu", "libvirt"];
const ACCELERATORS: &[&str] = &crate::migrations::ACCELERATORS;

macro_rules! record_fields {
    ($($head:expr),* $(,)?) => { record_fields![$($head),* ;] };
    ($($head:expr),* ; $($tail:expr),* $(,)?) => {
        &[
            $($head,)*
            col("watts", F64, true, "W", NonNegative),
            col("volts", F64, true, "V", NonNegative),
            col("amps", F64, true, "A", NonNegative),
            col("watt_hours", F64, true, "Wh", NonNegative),
            col("cost", F64, true, "currency unit", Finite),
            col("watt_hours_per_month", F64, true, "Wh", NonNegative),
            col("cost_per_month", F64, true, "currency unit", Finite),
            col("watts_max", F64, true, "W", NonNegative),
            col("volts_max", F64, true, "V", NonNegative),
            col("amps_max", F64, true, "A", NonNegative),
            col("watts_min", F64, true, "W", NonNegative),
            col("volts_min", F64, true, "V", NonNegative),
            col("amps_min", F64, true, "A", NonNegative),
            col("power_factor", F64, true, "ratio 0..1", Share),
            col("duty_cycle", F64, true, "ratio 0..1", Share),
            col("power_cycles", F64, true, "count", NonNegative),
            col("hertz", F64, true, "Hz", NonNegative),
            col("volt_amps", F64, true, "VA", NonNegative),
            $($tail,)*
        ]
    };
}

/// Every dataset kind the toolkit writes, with its expected columns.
pub const KINDS: &[KindSpec] = &[
    KindSpec {
        kind: crate::samples::SAMPLES,
        columns: record_fields![
            col("meter_id", Str, false, "-", Any),
            col("utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("mono_ns", I64, false, "ns (CLOCK_MONOTONIC)", NonNegative),
            col("seq", U64, false, "count", Any),
            col("connection", U32, false, "count", Any),
            col("gap_before_ns", I64, true, "ns", NonNegative),
            col("flags", U32, false, "bit flags", Any);
            col("source_kind", Str, true, "-", Any).since(1),
            col("source_interval_ns", I64, true, "ns", NonNegative).since(1),
            col("energy_counter_j", F64, true, "J", NonNegative).since(1),
        ],
        key: &["host", "utc_ns"],
        key_scope: KeyScope::Folder,
        sorted: Some((&[], "utc_ns")),
    },
    KindSpec {
        kind: crate::samples::RECORDS,
        columns: record_fields![
            col("seq", U64, false, "count", Any),
            col("byte_offset", U64, false, "bytes", Any),
        ],
        key: &["seq"],
        key_scope: KeyScope::File,
        sorted: Some((&[], "seq")),
    },
    KindSpec {
        kind: crate::windows::WINDOWS,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("host", Str, false, "-", Any),
            col("role", Str, false, "-", OneOf(ROLES)),
            col("start_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("end_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("v_mig_bytes", U64, false, "bytes", Any),
            col("workload", Str, true, "-", Any),
            col("vm", Str, true, "-", Any),
            col("vm_mem_bytes", U64, true, "bytes", Any),
        ],
        key: &["migration_id", "role"],
        key_scope: KeyScope::Folder,
        sorted: None,
    },
    KindSpec {
        kind: crate::energy::ENERGY,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("v_mig_bytes", U64, false, "bytes", Any),
            col("e_source_j", F64, false, "J", Finite),
            col("e_destination_j", F64, false, "J", Finite),
            col("e_mig_j", F64, false, "J", Finite),
            col("coverage", F64, false, "share 0..1", Share),
            col("p0_source_w", F64, false, "W", NonNegative),
            col("p0_destination_w", F64, false, "W", NonNegative),
            col("source_host", Str, false, "-", Any),
            col("destination_host", Str, false, "-", Any),
            col("start_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("end_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("workload", Str, true, "-", Any),
            col("vm", Str, true, "-", Any),
            col("vm_mem_bytes", U64, true, "bytes", Any),
        ],
        key: &["migration_id"],
        key_scope: KeyScope::Folder,
        sorted: None,
    },
    KindSpec {
        kind: crate::energy::WINDOW_QUALITY,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("host", Str, false, "-", Any),
            col("role", Str, false, "-", OneOf(ROLES)),
            col("start_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("end_utc_ns", I64, false, "ns since epoch (UTC)", UtcNs),
            col("sample_count", U64, false, "count", Any),
            col("coverage", F64, false, "share 0..1", Share),
            col("largest_gap_s", F64, false, "s", NonNegative),
            col("interval_s", F64, false, "s", NonNegative),
            col("p0_w", F64, false, "W", NonNegative),
            col("energy_j", F64, true, "J", Finite),
            col("included", Bool, false, "-", Any),
            col("reason", Str, true, "-", Any),
            col("source_interval_s", F64, true, "s", NonNegative).since(1),
            col("shorter_than_source_interval", Bool, true, "-", Any).since(1),
        ],
        key: &["migration_id", "role"],
        key_scope: KeyScope::Folder,
        sorted: None,
    },
    KindSpec {
        kind: crate::migrations::MIGRATIONS,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("hypervisor", Str, false, "-", OneOf(HYPERVISORS)),
            col("vm", Str, false, "-", Any),
            col("workload", Str, true, "-", Any),
            col("vm_mem_bytes", U64, false, "bytes", Any),
            col("page_size_bytes", U64, false, "bytes", Any),
            col("start_utc_ns", I64, true, "ns since epoch (UTC)", UtcNs),
            col("end_utc_ns", I64, true, "ns since epoch (UTC)", UtcNs),
            col("t_mig_s", F64, false, "s", NonNegative),
            col("t_down_s", F64, true, "s", NonNegative),
            col("t_down_method", Str, false, "-", OneOf(T_DOWN_METHODS)),
            col("t_down_reported_s", F64, true, "s", NonNegative),
            col("v_mig_bytes", U64, false, "bytes", Any),
            col("zero_pages", U64, true, "pages", Any),
            col("rounds", U32, false, "count", Any),
            col("converged", Bool, false, "-", Any),
            col("status", Str, false, "-", OneOf(STATUSES)),
            col(
                "bandwidth_limit_bytes_per_s",
                F64,
                true,
                "bytes/s",
                NonNegative,
            ),
            col("downtime_limit_s", F64, true, "s", NonNegative),
            col("max_rounds", U32, true, "count", Any),
            col(
                "max_factor",
                F64,
                true,
                "multiple of vm_mem_bytes",
                NonNegative,
            ),
            col("auto_converge", Bool, true, "-", Any),
            col(
                "pre_dirty_rate_bytes_per_s",
                F64,
                true,
                "bytes/s",
                NonNegative,
            ),
            col("pre_dirty_sample_s", F64, true, "s", NonNegative),
            col("source_host", Str, false, "-", Any),
            col("destination_host", Str, false, "-", Any),
            col("memory_verified", Bool, true, "-", Any).since(1),
            col("memory_mismatch_pages", U64, true, "pages", Any).since(1),
            col("accelerator", Str, true, "-", OneOf(ACCELERATORS)).since(1),
            col(
                "probe_dirty_rate_bytes_per_s",
                F64,
                true,
                "bytes/s",
                NonNegative,
            )
            .since(2),
            col("probe_hot_set_bytes", F64, true, "bytes", NonNegative).since(2),
            col("probe_nonzero_share", F64, true, "1", NonNegative).since(2),
        ],
        key: &["migration_id"],
        key_scope: KeyScope::Folder,
        sorted: None,
    },
    KindSpec {
        kind: crate::rounds::ROUNDS,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("round", U32, false, "count from 1", Any),
            col("start_utc_ns", I64, true, "ns since epoch (UTC)", UtcNs),
            col("duration_s", F64, true, "s", NonNegative),
            col("sent_bytes", U64, false, "bytes", Any),
            col("skipped_pages", U64, false, "pages", Any),
            col("dirtied_pages", U64, true, "pages", Any),
            col("dirty_rate_bytes_per_s", F64, true, "bytes/s", NonNegative),
            col("gamma", F64, true, "1", Finite),
            col("last", Bool, false, "-", Any),
        ],
        key: &["migration_id", "round"],
        key_scope: KeyScope::Folder,
        sorted: Some((&["migration_id"], "round")),
    },
    KindSpec {
        kind: crate::residuals::RESIDUALS,
        columns: &[
            col("input_file", U32, false, "index", Any),
            col("input_row", U64, false, "row (0-based)", Any),
            col("observed", F64, false, "target unit", Finite),
            col("fitted", F64, false, "target unit", Finite),
            col("residual", F64, false, "target unit", Finite),
            col("cv_predicted", F64, true, "target unit", Finite),
        ],
        key: &["input_file", "input_row"],
        key_scope: KeyScope::File,
        sorted: None,
    },
    KindSpec {
        kind: crate::evaluation::EVALUATION,
        columns: &[
            col("migration_id", Str, false, "-", Any),
            col("vm", Str, false, "-", Any),
            col("workload", Str, true, "-", Any),
            col("model", Str, false, "-", Any),
            col("history_migrations", U32, false, "count", Any),
            col("dirty_rate_bytes_per_s", F64, false, "bytes/s", NonNegative),
            col("rate_bytes_per_s", F64, false, "bytes/s", NonNegative),
            col("first_round_bytes", F64, false, "bytes", NonNegative),
            col("hot_set_bytes", F64, true, "bytes", NonNegative).since(2),
            col("predicted_v_mig_bytes", F64, true, "bytes", NonNegative),
            col("predicted_t_mig_s", F64, true, "s", NonNegative),
            col("predicted_t_down_s", F64, true, "s", NonNegative),
            col("predicted_rounds", U32, false, "count", Any),
            col("predicted_stop", Str, false, "-", Any),
            col("measured_v_mig_bytes", F64, false, "bytes", NonNegative),
            col("measured_t_mig_s", F64, false, "s", NonNegative),
            col("measured_t_down_s", F64, true, "s", NonNegative),
            col("measured_rounds", U32, false, "count", Any),
            col("measured_converged", Bool, false, "-", Any),
            col("rel_err_v_mig", F64, true, "1", Finite),
            col("rel_err_t_mig", F64, true, "1", Finite),
            col("rel_err_t_down", F64, true, "1", Finite),
            col("predicted_e_mig_j", F64, true, "J", Finite).since(1),
            col("measured_e_mig_j", F64, true, "J", Finite).since(1),
            col("rel_err_e_mig", F64, true, "1", Finite).since(1),
            col("held_out", Bool, true, "-", Any).since(3),
        ],
        key: &["migration_id", "model"],
        key_scope: KeyScope::Folder,
        sorted: None,
    },
];

/// Earliest accepted UTC timestamp, ns (2000-01-01): a value in s or ms falls far below.
pub const UTC_NS_MIN: i64 = 946_684_800_000_000_000;
/// Latest accepted UTC timestamp (exclusive), ns (2100-01-01).
pub const UTC_NS_MAX: i64 = 4_102_444_800_000_000_000;

/// The problem of a value that is not a plausible UTC ns timestamp.
pub fn not_utc_ns(x: i64) -> String {
    format!("{x} is not ns since the Unix epoch between 2000 and 2100 (unit: ns; seconds or ms?)")
}

/// The spec of a dataset kind by its `migwatt.dataset` name.
pub fn spec_of(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.kind.name == name)
}

/// One problem found in a dataset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The file.
    pub file: PathBuf,
    /// 0-based row, when the problem is in one row.
    pub row: Option<usize>,
    /// The column, when the problem is in one column.
    pub column: Option<String>,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(r) = self.row {
            write!(f, ": row {r}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ": column '{c}'")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// A checked file.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedFile {
    /// The file.
    pub file: PathBuf,
    /// Its dataset kind (None when the metadata does not say).
    pub kind: Option<String>,
    /// Its schema version as written.
    pub version: Option<String>,
    /// Rows read (0 when unreadable).
    pub rows: usize,
}

/// The outcome of checking a file or folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    /// Every Parquet file checked.
    pub files: Vec<CheckedFile>,
    /// Every violation found, in file then row order.
    pub violations: Vec<Violation>,
}

/// Sink of violations found in one file: (row, column, problem).
type Push<'a> = dyn FnMut(Option<usize>, Option<&str>, String) + 'a;

/// Folder-scoped keys: kind -> key -> (file, row) of the first occurrence.
type Seen = HashMap<&'static str, HashMap<String, (PathBuf, usize)>>;

/// Most violations listed per (file, column, problem kind) before the rest are summarised.
const MAX_PER_COLUMN: usize = 20;

/// Check every Parquet file under `path` (a file or a folder) against the schema of the kind
/// its metadata names. Errors only when `path` itself cannot be listed or holds no Parquet.
pub fn check_path(path: &Path) -> Result<CheckReport, DatasetError> {
    let files = parquet_files(path)?;
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut report = CheckReport::default();
    // Folder-scoped keys: kind -> key -> (file, row) of the first occurrence.
    let mut seen: Seen = HashMap::new();
    for f in &files {
        check_file(f, &mut report, &mut seen);
    }
    Ok(report)
}

fn check_file(path: &Path, report: &mut CheckReport, seen: &mut Seen) {
    let mut v = Vec::new();
    let mut push = |row: Option<usize>, column: Option<&str>, problem: String| {
        v.push(Violation {
            file: path.to_path_buf(),
            row,
            column: column.map(str::to_string),
            problem,
        })
    };
    let mut checked = CheckedFile {
        file: path.to_path_buf(),
        kind: None,
        version: None,
        rows: 0,
    };
    let opened = File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            let mut reader = ParquetReader::new(file);
            let meta = reader.get_metadata().map_err(|e| e.to_string())?.clone();
            let df = reader.finish().map_err(|e| e.to_string())?;
            Ok((meta.key_value_metadata.clone().unwrap_or_default(), df))
        });
    let (kv, df) = match opened {
        Ok(x) => x,
        Err(e) => {
            push(None, None, format!("not a readable Parquet file: {e}"));
            report.files.push(checked);
            report.violations.extend(v);
            return;
        }
    };
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    checked.kind = get(KEY_DATASET);
    checked.version = get(KEY_SCHEMA_VERSION);
    checked.rows = df.height();
    let spec = match checked.kind.as_deref() {
        None => {
            push(
                None,
                None,
                format!(
                    "no '{KEY_DATASET}' key-value metadata: not written by migwatt, kind unknown"
                ),
            );
            None
        }
        Some(k) => match spec_of(k) {
            None => {
                let known: Vec<&str> = KINDS.iter().map(|s| s.kind.name).collect();
                push(
                    None,
                    None,
                    format!("unknown dataset kind '{k}' (known: {})", known.join(", ")),
                );
                None
            }
            Some(s) => Some(s),
        },
    };
    if let Some(spec) = spec {
        let parsed = checked.version.as_deref().and_then(SchemaVersion::parse);
        // Columns a later minor version added may be missing from an older file.
        let file_minor = parsed
            .filter(|p| p.major == spec.kind.version.major)
            .map_or(spec.kind.version.minor, |p| p.minor);
        match checked
            .version
            .as_deref()
            .map(|s| (s, SchemaVersion::parse(s)))
        {
            None => push(
                None,
                None,
                format!("no '{KEY_SCHEMA_VERSION}' key-value metadata"),
            ),
            Some((s, None)) => push(
                None,
                None,
                format!("schema version '{s}' is not MAJOR.MINOR.PATCH"),
            ),
            Some((s, Some(p))) if p.major != spec.kind.version.major => push(
                None,
                None,
                format!(
                    "schema version {s} of '{}' is not supported (this build reads {}.x)",
                    spec.kind.name, spec.kind.version.major
                ),
            ),
            Some(_) => {}
        }
        let host = get(crate::samples::KEY_HOST).or_else(|| host_from_path(path));
        check_frame(
            path,
            spec,
            file_minor,
            &df,
            host.as_deref(),
            &mut push,
            seen,
            false,
        );
    }
    report.files.push(checked);
    report.violations.extend(v);
}

fn host_from_path(path: &Path) -> Option<String> {
    path.components().find_map(|c| {
        c.as_os_str()
            .to_str()
            .and_then(|s| s.strip_prefix("host="))
            .map(str::to_string)
    })
}

/// Check `df` against `spec`. `lenient` (tables loaded for training): columns the frame does
/// not have are skipped and columns of another type are cast to the expected one.
// One call per checked frame, from `datasets check` and from the readers' rules: the
// arguments are the frame, where it came from and how strictly to read it.
#[allow(clippy::too_many_arguments)]
fn check_frame(
    path: &Path,
    spec: &'static KindSpec,
    file_minor: u32,
    df: &DataFrame,
    host: Option<&str>,
    push: &mut Push<'_>,
    seen: &mut Seen,
    lenient: bool,
) {
    let mut cast: Vec<(&str, Series)> = Vec::new();
    if lenient {
        for c in spec.columns {
            if let Ok(column) = df.column(c.name) {
                let s = column.as_materialized_series();
                if s.dtype() != &c.ty.dtype() {
                    if let Ok(t) = s.cast(&c.ty.dtype()) {
                        // A value the cast turned into a null does not fit the type (a negative
                        // byte count, a fraction of a count): say which, not just "null".
                        if t.null_count() > s.null_count() {
                            let (was, now) = (s.is_null(), t.is_null());
                            let mut n = 0;
                            for i in 0..s.len() {
                                if now.get(i) == Some(true) && was.get(i) == Some(false) {
                                    n += 1;
                                    if n <= MAX_PER_COLUMN {
                                        push(
                                            Some(i),
                                            Some(c.name),
                                            format!(
                                                "{} is not a valid {:?} ({})",
                                                cell(s, i),
                                                c.ty.dtype(),
                                                c.unit
                                            ),
                                        );
                                    }
                                }
                            }
                            summarise(n, c.name, "of the wrong type", push);
                            continue;
                        }
                        cast.push((c.name, t));
                    }
                }
            }
        }
    }
    let mut good: HashMap<&str, &Series> = HashMap::new();
    for c in spec.columns {
        if let Some((_, s)) = cast.iter().find(|(n, _)| *n == c.name) {
            good.insert(c.name, s);
            check_values(c, s, push);
            continue;
        }
        let Ok(column) = df.column(c.name) else {
            if lenient || c.since_minor > file_minor {
                continue;
            }
            push(
                None,
                Some(c.name),
                format!(
                    "missing (expected {:?}, unit {}{})",
                    c.ty.dtype(),
                    c.unit,
                    if c.nullable { ", nullable" } else { "" }
                ),
            );
            continue;
        };
        let s = column.as_materialized_series();
        if s.dtype() != &c.ty.dtype() {
            // Lenient: a column that casts was checked above, one that does not is the
            // reader's to refuse.
            if !lenient {
                push(
                    None,
                    Some(c.name),
                    format!("type {:?}, expected {:?}", s.dtype(), c.ty.dtype()),
                );
            }
            continue;
        }
        good.insert(c.name, s);
        check_values(c, s, push);
    }
    // Windows must end after they start.
    if let (Some(a), Some(b)) = (good.get("start_utc_ns"), good.get("end_utc_ns")) {
        if let (Ok(a), Ok(b)) = (a.i64(), b.i64()) {
            let mut n = 0;
            for (i, (s, e)) in a.iter().zip(b.iter()).enumerate() {
                if let (Some(s), Some(e)) = (s, e) {
                    if e < s {
                        n += 1;
                        if n <= MAX_PER_COLUMN {
                            push(
                                Some(i),
                                Some("end_utc_ns"),
                                format!("end {e} is before start {s}"),
                            );
                        }
                    }
                }
            }
            summarise(n, "end_utc_ns", "ends before its start", push);
        }
    }
    if let Some((group, column)) = spec.sorted {
        if group.iter().chain([&column]).all(|c| good.contains_key(c)) {
            check_sorted(&good, group, column, push);
        }
    }
    check_keys(path, spec, &good, host, push, seen);
}

fn summarise(n: usize, column: &str, what: &str, push: &mut Push<'_>) {
    if n > MAX_PER_COLUMN {
        push(
            None,
            Some(column),
            format!(
                "{} more row(s) {what} (first {MAX_PER_COLUMN} listed)",
                n - MAX_PER_COLUMN
            ),
        );
    }
}

fn check_values(c: &ColumnSpec, s: &Series, push: &mut Push<'_>) {
    let mut nulls = 0;
    if !c.nullable && s.null_count() > 0 {
        for (i, is_null) in s.is_null().iter().enumerate() {
            if is_null == Some(true) {
                nulls += 1;
                if nulls <= MAX_PER_COLUMN {
                    push(Some(i), Some(c.name), "null, expected a value".into());
                }
            }
        }
        summarise(nulls, c.name, "null", push);
    }
    let mut bad = 0;
    let mut report = |i: usize, msg: String| {
        bad += 1;
        if bad <= MAX_PER_COLUMN {
            push(Some(i), Some(c.name), msg);
        }
    };
    match c.rule {
        Rule::Any => {}
        Rule::OneOf(allowed) => {
            if let Ok(ca) = s.str() {
                for (i, x) in ca.iter().enumerate() {
                    if let Some(x) = x {
                        if !allowed.contains(&x) {
                            report(i, format!("'{x}', expected one of {}", allowed.join(", ")));
                        }
                    }
                }
            }
        }
        Rule::UtcNs => {
            if let Ok(ca) = s.i64() {
                for (i, x) in ca.iter().enumerate() {
                    if let Some(x) = x {
                        if !(UTC_NS_MIN..UTC_NS_MAX).contains(&x) {
                            report(i, not_utc_ns(x));
                        }
                    }
                }
            }
        }
        Rule::Finite | Rule::NonNegative | Rule::Share => {
            let Ok(f) = s.cast(&DataType::Float64) else {
                return;
            };
            let Ok(ca) = f.f64() else { return };
            for (i, x) in ca.iter().enumerate() {
                let Some(x) = x else { continue };
                let ok = match c.rule {
                    Rule::Finite => x.is_finite(),
                    Rule::NonNegative => x.is_finite() && x >= 0.0,
                    _ => (0.0..=1.0).contains(&x),
                };
                if !ok {
                    let want = match c.rule {
                        Rule::Finite => "a finite number".to_string(),
                        Rule::NonNegative => format!("a finite number >= 0 ({})", c.unit),
                        _ => "a share between 0 and 1".to_string(),
                    };
                    report(i, format!("{x}, expected {want}"));
                }
            }
        }
    }
    summarise(bad, c.name, "out of range for the unit", push);
}

/// A value of a key column rendered for comparison and messages.
fn cell(s: &Series, i: usize) -> String {
    match s.get(i) {
        Ok(AnyValue::String(x)) => x.to_string(),
        Ok(v) => v.to_string(),
        Err(_) => "?".into(),
    }
}

fn check_sorted(good: &HashMap<&str, &Series>, group: &[&str], column: &str, push: &mut Push<'_>) {
    let Ok(values) = good[column].cast(&DataType::Float64) else {
        return;
    };
    let Ok(values) = values.f64() else { return };
    let groups: Vec<&Series> = group.iter().map(|g| good[g]).collect();
    let mut last: HashMap<String, (usize, f64)> = HashMap::new();
    let mut n = 0;
    for (i, x) in values.iter().enumerate() {
        let Some(x) = x else { continue };
        let g: Vec<String> = groups.iter().map(|s| cell(s, i)).collect();
        let g = g.join("\u{1f}");
        if let Some(&(j, prev)) = last.get(&g) {
            if x < prev {
                n += 1;
                if n <= MAX_PER_COLUMN {
                    push(
                        Some(i),
                        Some(column),
                        format!(
                            "not sorted: {} after {} at row {j}",
                            cell(good[column], i),
                            cell(good[column], j)
                        ),
                    );
                }
            }
        }
        last.insert(g, (i, x));
    }
    summarise(n, column, "out of order", push);
}

fn check_keys(
    path: &Path,
    spec: &'static KindSpec,
    good: &HashMap<&str, &Series>,
    host: Option<&str>,
    push: &mut Push<'_>,
    seen: &mut Seen,
) {
    let mut parts: Vec<Option<&Series>> = Vec::new();
    for k in spec.key {
        if *k == "host" && !good.contains_key("host") {
            parts.push(None);
        } else if let Some(s) = good.get(k) {
            parts.push(Some(s));
        } else {
            return;
        }
    }
    let n_rows = good.values().next().map_or(0, |s| s.len());
    let mut local: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let table = match spec.key_scope {
        KeyScope::File => &mut local,
        KeyScope::Folder => seen.entry(spec.kind.name).or_default(),
    };
    let mut n = 0;
    for i in 0..n_rows {
        let key: Vec<String> = parts
            .iter()
            .map(|p| match p {
                Some(s) => cell(s, i),
                None => host.unwrap_or("?").to_string(),
            })
            .collect();
        let shown = spec
            .key
            .iter()
            .zip(&key)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        match table.get(&key.join("\u{1f}")) {
            Some((f, j)) => {
                n += 1;
                if n <= MAX_PER_COLUMN {
                    let at = if f == path {
                        format!("row {j}")
                    } else {
                        format!("{} row {j}", f.display())
                    };
                    push(
                        Some(i),
                        None,
                        format!("duplicate key ({shown}), first at {at}"),
                    );
                }
            }
            None => {
                table.insert(key.join("\u{1f}"), (path.to_path_buf(), i));
            }
        }
    }
    summarise(n, spec.key[0], "with duplicate keys", push);
}

/// Most violations a reader's error lists (the rest are counted).
pub const MAX_REPORTED: usize = 5;

/// The rules of one dataset kind as a reader applies them: every frame it reads goes through
/// [`Rules::check`], which refuses values outside what their unit allows, timestamps that
/// are not ns, unsorted rows and keys seen before (in this frame or an earlier one), exactly as
/// `migwatt datasets check` reports them.
pub struct Rules {
    spec: &'static KindSpec,
    seen: Seen,
    lenient: bool,
}

impl Rules {
    /// The rules of `kind` (None for a kind `datasets check` does not know).
    pub fn of(kind: DatasetKind) -> Option<Rules> {
        spec_of(kind.name).map(|spec| Rules {
            spec,
            seen: HashMap::new(),
            lenient: false,
        })
    }

    /// Accept frames holding only some of the kind's columns, or other types (tables read for
    /// training): the columns present are checked, cast to the expected types.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Check one frame read from `path` (`host`: the samples' host, from the file); keys must
    /// also be unique across every frame checked before.
    pub fn check(
        &mut self,
        path: &Path,
        df: &DataFrame,
        host: Option<&str>,
    ) -> Result<(), DatasetError> {
        let mut found = Vec::new();
        let mut push = |row: Option<usize>, column: Option<&str>, problem: String| {
            found.push(Violation {
                file: path.to_path_buf(),
                row,
                column: column.map(str::to_string),
                problem,
            })
        };
        // A reader does not know the file's minor version: columns a later minor added are
        // optional to it (each reader handles their absence).
        check_frame(
            path,
            self.spec,
            0,
            df,
            host,
            &mut push,
            &mut self.seen,
            self.lenient,
        );
        if found.is_empty() {
            return Ok(());
        }
        let total = found.len();
        found.truncate(MAX_REPORTED);
        Err(DatasetError::Rules {
            path: path.to_path_buf(),
            kind: self.spec.kind.name.to_string(),
            violations: found,
            total,
        })
    }
}

/// The message of [`DatasetError::Rules`]: the first violations, then how many more.
pub fn describe_violations(kind: &str, violations: &[Violation], total: usize) -> String {
    let mut s = format!("{total} problem(s) with the rules of the '{kind}' dataset: ");
    let listed: Vec<String> = violations
        .iter()
        .map(|v| {
            let mut t = String::new();
            if let Some(r) = v.row {
                t += &format!("row {r}: ");
            }
            if let Some(c) = &v.column {
                t += &format!("column '{c}': ");
            }
            t + &v.problem
        })
        .collect();
    s += &listed.join("; ");
    if total > violations.len() {
        s += &format!("; and {} more", total - violations.len());
    }
    s += " (rows count from 0; `migwatt datasets check` lists every problem)";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_rules_check_the_columns_a_table_has_in_the_types_it_has() {
        // As a CSV of energy observations loads: integers as i64, no optional columns.
        let df = DataFrame::new(
            3,
            vec![
                Column::new("migration_id".into(), ["m1", "m2", "m1"]),
                Column::new("v_mig_bytes".into(), [5i64, -3, 7]),
                Column::new("e_mig_j".into(), [1.0, f64::INFINITY, 2.0]),
            ],
        )
        .unwrap();
        let mut rules = Rules::of(crate::energy::ENERGY).unwrap().lenient();
        let e = rules
            .check(Path::new("e.csv"), &df, None)
            .unwrap_err()
            .to_string();
        for want in [
            "row 1: column 'v_mig_bytes': -3 is not a valid UInt64",
            "row 1: column 'e_mig_j': inf, expected a finite number",
            "row 2: duplicate key (migration_id=m1), first at row 0",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(!e.contains("missing"), "{e}");
    }
    use crate::io::write_parquet_atomic;

    fn rounds_frame(ids: &[&str], rounds: &[u32], start: &[Option<i64>]) -> DataFrame {
        let n = ids.len();
        DataFrame::new(
            n,
            vec![
                Column::new("migration_id".into(), ids),
                Column::new("round".into(), rounds),
                Column::new("start_utc_ns".into(), start),
                Column::new("duration_s".into(), vec![Some(1.0f64); n]),
                Column::new("sent_bytes".into(), vec![10u64; n]),
                Column::new("skipped_pages".into(), vec![0u64; n]),
                Column::new("dirtied_pages".into(), vec![Some(1u64); n]),
                Column::new("dirty_rate_bytes_per_s".into(), vec![Some(1.0f64); n]),
                Column::new("gamma".into(), vec![None::<f64>; n]),
                Column::new("last".into(), vec![false; n]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_good_rounds_file_has_no_violations() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.parquet");
        let t = 1_795_622_809_407_619_442i64;
        let mut df = rounds_frame(&["a", "a", "b"], &[1, 2, 1], &[Some(t), Some(t + 1), None]);
        write_parquet_atomic(&mut df, &p, crate::rounds::ROUNDS).unwrap();
        let r = check_path(d.path()).unwrap();
        assert_eq!(r.violations, vec![]);
        assert_eq!(r.files.len(), 1);
        assert_eq!(r.files[0].rows, 3);
        assert_eq!(r.files[0].kind.as_deref(), Some("rounds"));
    }

    #[test]
    fn unsorted_duplicate_and_seconds_for_ns_are_reported_with_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.parquet");
        let mut df = rounds_frame(
            &["a", "a", "a"],
            &[2, 1, 1],
            &[Some(1_795_622_809), None, None],
        );
        write_parquet_atomic(&mut df, &p, crate::rounds::ROUNDS).unwrap();
        let r = check_path(&p).unwrap();
        let text: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(r.violations.len(), 3, "{text:#?}");
        assert_eq!(r.violations[0].row, Some(0));
        assert!(text[0].contains("start_utc_ns") && text[0].contains("seconds or ms"));
        assert_eq!(r.violations[1].row, Some(1));
        assert!(text[1].contains("not sorted"), "{}", text[1]);
        assert_eq!(r.violations[2].row, Some(2));
        assert!(text[2].contains("duplicate key (migration_id=a, round=1), first at row 1"));
    }

    #[test]
    fn missing_and_mistyped_columns_and_unknown_majors_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.parquet");
        let mut df = DataFrame::new(
            1,
            vec![
                Column::new("migration_id".into(), ["m"]),
                Column::new("host".into(), ["h"]),
                Column::new("role".into(), ["sauce"]),
                Column::new("start_utc_ns".into(), [1.0f64]),
            ],
        )
        .unwrap();
        let future = DatasetKind {
            name: "migration_windows",
            version: SchemaVersion {
                major: 9,
                minor: 0,
                patch: 0,
            },
        };
        write_parquet_atomic(&mut df, &p, future).unwrap();
        let r = check_path(&p).unwrap();
        let text: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert!(text[0].contains("schema version 9.0.0"), "{text:#?}");
        assert!(text
            .iter()
            .any(|t| t.contains("'role'") && t.contains("'sauce'")));
        assert!(text
            .iter()
            .any(|t| t.contains("'start_utc_ns'") && t.contains("expected Int64")));
        for c in [
            "end_utc_ns",
            "v_mig_bytes",
            "workload",
            "vm",
            "vm_mem_bytes",
        ] {
            assert!(
                text.iter()
                    .any(|t| t.contains(&format!("'{c}'")) && t.contains("missing")),
                "{c}: {text:#?}"
            );
        }
    }

    #[test]
    fn what_every_writer_writes_passes_its_spec() {
        use crate::energy::{write_energy, write_window_quality, Format};
        let d = tempfile::tempdir().unwrap();
        let t = 1_795_622_809_407_619_442i64;
        let fields = [Some(0.5); crate::FIELD_COUNT];
        let sample = |i: i64| crate::samples::SampleRow {
            host: "h".into(),
            meter_id: "m".into(),
            utc_ns: t + i * 1_000_000_000,
            mono_ns: 5 + i,
            seq: i as u64,
            connection: 1,
            gap_before_ns: None,
            flags: 0,
            fields,
            ..Default::default()
        };
        crate::samples::write_samples_file(
            &d.path().join("samples/host=h/date=2026-11-25/seg.parquet"),
            "h",
            &[sample(0), sample(1)],
        )
        .unwrap();
        let record = |i: u64| crate::samples::RecordRow {
            seq: i,
            byte_offset: 10 * i,
            fields,
        };
        crate::samples::write_records_file(
            &d.path().join("records.parquet"),
            &[record(0), record(1)],
        )
        .unwrap();
        let window = |role| crate::windows::WindowRow {
            migration_id: "m1".into(),
            host: "h".into(),
            role,
            start_utc_ns: t,
            end_utc_ns: t + 5,
            v_mig_bytes: 7,
            workload: None,
            vm: Some("vm".into()),
            vm_mem_bytes: Some(9),
        };
        crate::windows::write_windows(
            &d.path().join("windows.parquet"),
            &[
                window(crate::windows::Role::Source),
                window(crate::windows::Role::Destination),
            ],
        )
        .unwrap();
        let energy: crate::energy::EnergyRow = serde_json::from_value(serde_json::json!({
            "migration_id": "m1", "v_mig_bytes": 7, "e_source_j": 1.0, "e_destination_j": 2.0,
            "e_mig_j": 3.0, "coverage": 1.0, "p0_source_w": 90.0, "p0_destination_w": 91.0,
            "source_host": "a", "destination_host": "b", "start_utc_ns": t, "end_utc_ns": t + 5,
            "workload": null, "vm": "vm", "vm_mem_bytes": 9
        }))
        .unwrap();
        write_energy(
            &d.path().join("energy.parquet"),
            Format::Parquet,
            &[energy],
            &[],
        )
        .unwrap();
        let quality: crate::energy::WindowQualityRow = serde_json::from_value(serde_json::json!({
            "migration_id": "m1", "host": "a", "role": "source", "start_utc_ns": t,
            "end_utc_ns": t + 5, "sample_count": 3, "coverage": 0.5, "largest_gap_s": 1.0,
            "interval_s": 1.0, "p0_w": 90.0, "energy_j": null, "included": false,
            "reason": "coverage"
        }))
        .unwrap();
        write_window_quality(
            &d.path().join("q.parquet"),
            Format::Parquet,
            &[quality],
            &[],
        )
        .unwrap();
        let migration: crate::migrations::MigrationRow =
            serde_json::from_value(serde_json::json!({
                "migration_id": "m1", "hypervisor": "qemu", "vm": "vm", "workload": "w",
                "vm_mem_bytes": 9, "page_size_bytes": 4096, "start_utc_ns": t, "end_utc_ns": t + 5,
                "t_mig_s": 1.5, "t_down_s": 0.02, "t_down_method": "guest_stop_resume",
                "t_down_reported_s": null, "v_mig_bytes": 7, "zero_pages": 1, "rounds": 2,
                "converged": true, "status": "completed", "bandwidth_limit_bytes_per_s": null,
                "downtime_limit_s": 0.05, "max_rounds": null, "max_factor": null,
                "auto_converge": false, "pre_dirty_rate_bytes_per_s": 1.0e6,
                "pre_dirty_sample_s": 1.0, "source_host": "a", "destination_host": "b"
            }))
            .unwrap();
        crate::migrations::write_migrations_file(&d.path().join("m/m1.parquet"), &[migration])
            .unwrap();
        let round = |i: u32| -> crate::rounds::RoundRow {
            serde_json::from_value(serde_json::json!({
                "migration_id": "m1", "round": i, "start_utc_ns": t + i as i64,
                "duration_s": 0.5, "sent_bytes": 3, "skipped_pages": 0, "dirtied_pages": 4,
                "dirty_rate_bytes_per_s": 1.0e6, "gamma": 0.25, "last": i == 2
            }))
            .unwrap()
        };
        crate::rounds::write_rounds_file(&d.path().join("r/m1.parquet"), &[round(1), round(2)])
            .unwrap();
        let mut origins = crate::Origins::new();
        origins.push_run(0, 0, 2);
        let residuals = crate::residuals::Residuals {
            model_id: "energy/v1/x".into(),
            target: "e_mig_j".into(),
            unit: "J".into(),
            origins: &origins,
            observed: &[1.0, 2.0],
            fitted: &[1.5, 1.5],
            cv_predicted: None,
        };
        crate::residuals::write_residuals(&d.path().join("v1.residuals.parquet"), &residuals)
            .unwrap();
        let r = check_path(d.path()).unwrap();
        assert_eq!(r.violations, vec![]);
        let mut kinds: Vec<&str> = r.files.iter().filter_map(|f| f.kind.as_deref()).collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "energy_observations",
                "migration_windows",
                "migrations",
                "records",
                "residuals",
                "rounds",
                "samples",
                "window_quality"
            ]
        );
    }

    #[test]
    fn columns_of_a_later_minor_are_required_only_from_that_minor() {
        let d = tempfile::tempdir().unwrap();
        let row: crate::migrations::MigrationRow = serde_json::from_value(serde_json::json!({
            "migration_id": "m1", "hypervisor": "qemu", "vm": "vm", "workload": null,
            "vm_mem_bytes": 9, "page_size_bytes": 4096, "start_utc_ns": null, "end_utc_ns": null,
            "t_mig_s": 1.5, "t_down_s": 0.02, "t_down_method": "source_stop_destination_completed",
            "t_down_reported_s": null, "v_mig_bytes": 7, "zero_pages": 1, "rounds": 2,
            "converged": true, "status": "completed", "bandwidth_limit_bytes_per_s": null,
            "downtime_limit_s": 0.05, "max_rounds": null, "max_factor": null,
            "auto_converge": false, "pre_dirty_rate_bytes_per_s": null,
            "pre_dirty_sample_s": null, "source_host": "a", "destination_host": "b",
            "memory_verified": false, "memory_mismatch_pages": 2, "accelerator": "hvf"
        }))
        .unwrap();
        let mut df = crate::migrations::migrations_frame(&[row]).unwrap();
        let p = d.path().join("m.parquet");
        write_parquet_atomic(&mut df, &p, crate::migrations::MIGRATIONS).unwrap();
        let text: Vec<String> = check_path(&p)
            .unwrap()
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(text.len(), 1, "{text:#?}");
        assert!(text[0].contains("'accelerator'") && text[0].contains("'hvf'"));
        let mut df = df.drop("memory_verified").unwrap();
        write_parquet_atomic(&mut df, &p, crate::migrations::MIGRATIONS).unwrap();
        let r = check_path(&p).unwrap();
        assert!(
            r.violations
                .iter()
                .any(|v| v.column.as_deref() == Some("memory_verified")
                    && v.problem.contains("missing")),
            "{:#?}",
            r.violations
        );
    }

    #[test]
    fn every_kind_has_a_spec_and_a_key_of_its_columns() {
        for k in KINDS {
            for key in k.key {
                assert!(
                    *key == "host" || k.columns.iter().any(|c| c.name == *key),
                    "{}: key {key}",
                    k.kind.name
                );
            }
            assert!(spec_of(k.kind.name).is_some());
        }
    }
}
