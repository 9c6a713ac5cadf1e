//! The power-samples dataset written by `migwatt meter capture`, and the decoded-records
//! dataset written by `migwatt meter decode --file-type parquet`.
//!
//! Layout: `DIR/host=NAME/date=YYYY-MM-DD/*.parquet` (hive partitioning; `host` and `date` are
//! partition columns, not stored in the files, and the host is also in the file's key-value
//! metadata under `migwatt.host`). One row per meter record.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};

use crate::io::{
    col_err, column, parquet_files, read_parquet_checked, DatasetError, DatasetKind, SchemaVersion,
};

/// The samples dataset kind and version.
pub const SAMPLES: DatasetKind = DatasetKind {
    name: "samples",
    // 1.1: source_kind, source_interval_ns, energy_counter_j (absent from 1.0 files).
    version: SchemaVersion {
        major: 1,
        minor: 1,
        patch: 0,
    },
};

/// The decoded-records dataset kind and version (`meter decode --file-type parquet`).
pub const RECORDS: DatasetKind = DatasetKind {
    name: "records",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// Key of the Parquet key-value metadata entry naming the host of a samples file.
pub const KEY_HOST: &str = "migwatt.host";

/// Number of measurement fields in a Watts up? record.
pub const FIELD_COUNT: usize = 18;

/// Column name and SI unit of each of the 18 record fields, in wire order.
pub const RECORD_FIELDS: [(&str, &str); FIELD_COUNT] = [
    ("watts", "W"),
    ("volts", "V"),
    ("amps", "A"),
    ("watt_hours", "Wh"),
    ("cost", "currency unit (dollar or euro)"),
    ("watt_hours_per_month", "Wh"),
    ("cost_per_month", "currency unit (dollar or euro)"),
    ("watts_max", "W"),
    ("volts_max", "V"),
    ("amps_max", "A"),
    ("watts_min", "W"),
    ("volts_min", "V"),
    ("amps_min", "A"),
    ("power_factor", "ratio 0..1"),
    ("duty_cycle", "ratio 0..1"),
    ("power_cycles", "count"),
    ("hertz", "Hz"),
    ("volt_amps", "VA"),
];

/// Sample flag: the first sample after a gap (reconnect, stall, or capture restart).
pub const FLAG_AFTER_GAP: u32 = 1;

/// One captured sample: a meter record stamped on the host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleRow {
    /// Host name (partition `host=`).
    pub host: String,
    /// Meter identity: model, hardware and firmware from its version reply.
    pub meter_id: String,
    /// Host wall clock when the record's `;` arrived, ns since the Unix epoch (UTC).
    pub utc_ns: i64,
    /// Host monotonic clock (CLOCK_MONOTONIC) at the same instant, ns.
    pub mono_ns: i64,
    /// Record number within this capture run for this host, from 0; never reused.
    pub seq: u64,
    /// Connection number within this capture run (1 = first open; +1 on every reopen).
    pub connection: u32,
    /// Set on the first sample after a gap: time since the previous sample, ns.
    pub gap_before_ns: Option<i64>,
    /// Bit flags (`FLAG_*`).
    pub flags: u32,
    /// The 18 record fields in SI units (see [`RECORD_FIELDS`]); `None` = `_` on the wire.
    pub fields: [Option<f64>; FIELD_COUNT],
    /// Kind of the source (`wattsup`, `emulated`, `rapl`, ...); None in 1.0 files.
    pub source_kind: Option<String>,
    /// The source's native interval (logging, polling or averaging), ns; None in 1.0 files.
    pub source_interval_ns: Option<i64>,
    /// Cumulative energy counter of sources that keep one (RAPL), J, monotone within a
    /// connection (wrap-around undone); None for sources that measure power only.
    pub energy_counter_j: Option<f64>,
}

impl SampleRow {
    /// Power in W, if the record carried it.
    pub fn watts(&self) -> Option<f64> {
        self.fields[0]
    }
}

fn field_columns<'a>(n: usize, get: impl Fn(usize, usize) -> Option<f64> + 'a) -> Vec<Column> {
    (0..FIELD_COUNT)
        .map(|f| {
            let v: Vec<Option<f64>> = (0..n).map(|r| get(r, f)).collect();
            Column::new(RECORD_FIELDS[f].0.into(), v)
        })
        .collect()
}

/// Build the in-file columns of a samples file (without the `host` partition column).
pub fn samples_frame(rows: &[SampleRow]) -> Result<DataFrame, PolarsError> {
    let n = rows.len();
    let mut cols = vec![
        Column::new(
            "meter_id".into(),
            rows.iter().map(|r| r.meter_id.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "utc_ns".into(),
            rows.iter().map(|r| r.utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "mono_ns".into(),
            rows.iter().map(|r| r.mono_ns).collect::<Vec<_>>(),
        ),
        Column::new("seq".into(), rows.iter().map(|r| r.seq).collect::<Vec<_>>()),
        Column::new(
            "connection".into(),
            rows.iter().map(|r| r.connection).collect::<Vec<_>>(),
        ),
        Column::new(
            "gap_before_ns".into(),
            rows.iter().map(|r| r.gap_before_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "flags".into(),
            rows.iter().map(|r| r.flags).collect::<Vec<_>>(),
        ),
    ];
    cols.extend(field_columns(n, |r, f| rows[r].fields[f]));
    cols.push(Column::new(
        "source_kind".into(),
        rows.iter()
            .map(|r| r.source_kind.as_deref())
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "source_interval_ns".into(),
        rows.iter()
            .map(|r| r.source_interval_ns)
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "energy_counter_j".into(),
        rows.iter().map(|r| r.energy_counter_j).collect::<Vec<_>>(),
    ));
    DataFrame::new(n, cols)
}

/// Write one samples file for one host atomically (temp file, fsync, rename).
pub fn write_samples_file(path: &Path, host: &str, rows: &[SampleRow]) -> Result<(), DatasetError> {
    let mut df = samples_frame(rows).map_err(|e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::io::write_parquet_atomic_with(&mut df, path, SAMPLES, &[(KEY_HOST, host)])
}

/// The host of a samples file: its `migwatt.host` metadata, else the `host=` path component.
pub fn host_of(path: &Path) -> Option<String> {
    if let Ok(file) = File::open(path) {
        let mut reader = ParquetReader::new(file);
        if let Ok(meta) = reader.get_metadata() {
            if let Some(kv) = &meta.key_value_metadata {
                if let Some(h) = kv.iter().find(|e| e.key == KEY_HOST) {
                    if let Some(v) = &h.value {
                        return Some(v.clone());
                    }
                }
            }
        }
    }
    path.ancestors()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("host="))
        .map(str::to_string)
        .next()
}

/// Read every samples file under `path` (a file or a hive folder), sorted by host then time.
pub fn read_samples(path: &Path) -> Result<Vec<SampleRow>, DatasetError> {
    let files = parquet_files(path)?;
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut rows = Vec::new();
    // The dataset's own rules, with (host, utc_ns) unique across the files read.
    let mut rules = crate::check::Rules::of(SAMPLES);
    for f in &files {
        let host = host_of(f).unwrap_or_default();
        let df = read_parquet_checked(f, SAMPLES)?;
        let file_rows = rows_of(&df, f, &host)?;
        if let Some(rules) = &mut rules {
            let typed = samples_frame(&file_rows).map_err(|e| DatasetError::polars(f, e))?;
            rules.check(f, &typed, Some(&host))?;
        }
        rows.extend(file_rows);
    }
    rows.sort_by(|a, b| (&a.host, a.utc_ns, a.seq).cmp(&(&b.host, b.utc_ns, b.seq)));
    Ok(rows)
}

/// Read one samples file as written, without the dataset's value rules: how a writer verifies
/// that what it just wrote is present and readable before it drops its journal.
pub fn read_samples_file(path: &Path) -> Result<Vec<SampleRow>, DatasetError> {
    let host = host_of(path).unwrap_or_default();
    let df = read_parquet_checked(path, SAMPLES)?;
    rows_of(&df, path, &host)
}

fn rows_of(df: &DataFrame, path: &Path, host: &str) -> Result<Vec<SampleRow>, DatasetError> {
    let typed = |name: &str, dt: DataType| -> Result<Series, DatasetError> {
        column(df, name, path)?
            .as_materialized_series()
            .strict_cast(&dt)
            .map_err(|_| col_err(path, name, format!("expected {dt}")))
    };
    let meter = typed("meter_id", DataType::String)?;
    let meter = meter.str().expect("cast");
    let utc = typed("utc_ns", DataType::Int64)?;
    let utc = utc.i64().expect("cast");
    let mono = typed("mono_ns", DataType::Int64)?;
    let mono = mono.i64().expect("cast");
    let seq = typed("seq", DataType::UInt64)?;
    let seq = seq.u64().expect("cast");
    let conn = typed("connection", DataType::UInt32)?;
    let conn = conn.u32().expect("cast");
    let gap = typed("gap_before_ns", DataType::Int64)?;
    let gap = gap.i64().expect("cast");
    let flags = typed("flags", DataType::UInt32)?;
    let flags = flags.u32().expect("cast");
    let mut fields = Vec::with_capacity(FIELD_COUNT);
    for (name, _) in RECORD_FIELDS {
        fields.push(typed(name, DataType::Float64)?);
    }
    let fields: Vec<&Float64Chunked> = fields.iter().map(|s| s.f64().expect("cast")).collect();
    // Columns of minor 1: 1.0 files lack them.
    let optional = |name: &str, dt: DataType| -> Result<Option<Series>, DatasetError> {
        if df.column(name).is_err() {
            return Ok(None);
        }
        typed(name, dt).map(Some)
    };
    let kind = optional("source_kind", DataType::String)?;
    let kind = kind.as_ref().map(|s| s.str().expect("cast"));
    let interval = optional("source_interval_ns", DataType::Int64)?;
    let interval = interval.as_ref().map(|s| s.i64().expect("cast"));
    let counter = optional("energy_counter_j", DataType::Float64)?;
    let counter = counter.as_ref().map(|s| s.f64().expect("cast"));
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let req = |v: Option<i64>, name: &str| {
            v.ok_or_else(|| col_err(path, name, format!("row {i}: null in a required column")))
        };
        let mut f = [None; FIELD_COUNT];
        for (k, c) in fields.iter().enumerate() {
            f[k] = c.get(i);
        }
        out.push(SampleRow {
            host: host.to_string(),
            meter_id: meter.get(i).unwrap_or_default().to_string(),
            utc_ns: req(utc.get(i), "utc_ns")?,
            mono_ns: req(mono.get(i), "mono_ns")?,
            seq: seq
                .get(i)
                .ok_or_else(|| col_err(path, "seq", format!("row {i}: null")))?,
            connection: conn.get(i).unwrap_or(0),
            gap_before_ns: gap.get(i),
            flags: flags.get(i).unwrap_or(0),
            fields: f,
            source_kind: kind.and_then(|c| c.get(i)).map(str::to_string),
            source_interval_ns: interval.and_then(|c| c.get(i)),
            energy_counter_j: counter.and_then(|c| c.get(i)),
        });
    }
    Ok(out)
}

/// One decoded record of a raw capture, for `meter decode --file-type parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    /// Record number in the capture, from 0.
    pub seq: u64,
    /// Byte offset of the record's `#` in the capture.
    pub byte_offset: u64,
    /// The 18 fields in SI units.
    pub fields: [Option<f64>; FIELD_COUNT],
}

/// Write decoded records as a Parquet file (atomically).
pub fn write_records_file(path: &Path, rows: &[RecordRow]) -> Result<(), DatasetError> {
    let mut df = records_frame(rows).map_err(|e| DatasetError::polars(path, e))?;
    crate::io::write_parquet_atomic(&mut df, path, RECORDS)
}

/// Build the columns of a decoded-records file.
pub fn records_frame(rows: &[RecordRow]) -> Result<DataFrame, PolarsError> {
    let n = rows.len();
    let mut cols = vec![
        Column::new("seq".into(), rows.iter().map(|r| r.seq).collect::<Vec<_>>()),
        Column::new(
            "byte_offset".into(),
            rows.iter().map(|r| r.byte_offset).collect::<Vec<_>>(),
        ),
    ];
    cols.extend(field_columns(n, |r, f| rows[r].fields[f]));
    DataFrame::new(n, cols)
}

/// Read a decoded-records file written by [`write_records_file`].
pub fn read_records_file(path: &Path) -> Result<Vec<RecordRow>, DatasetError> {
    let df = read_parquet_checked(path, RECORDS)?;
    let typed = |name: &str, dt: DataType| -> Result<Series, DatasetError> {
        column(&df, name, path)?
            .as_materialized_series()
            .strict_cast(&dt)
            .map_err(|_| col_err(path, name, format!("expected {dt}")))
    };
    let seq = typed("seq", DataType::UInt64)?;
    let off = typed("byte_offset", DataType::UInt64)?;
    let mut fields = Vec::with_capacity(FIELD_COUNT);
    for (name, _) in RECORD_FIELDS {
        fields.push(typed(name, DataType::Float64)?);
    }
    let (seq, off) = (seq.u64().expect("cast"), off.u64().expect("cast"));
    let fields: Vec<&Float64Chunked> = fields.iter().map(|s| s.f64().expect("cast")).collect();
    let rows = (0..df.height())
        .map(|i| {
            Ok(RecordRow {
                seq: seq
                    .get(i)
                    .ok_or_else(|| col_err(path, "seq", format!("row {i}: null")))?,
                byte_offset: off
                    .get(i)
                    .ok_or_else(|| col_err(path, "byte_offset", format!("row {i}: null")))?,
                fields: std::array::from_fn(|k| fields[k].get(i)),
            })
        })
        .collect::<Result<Vec<_>, DatasetError>>()?;
    let typed = records_frame(&rows).map_err(|e| DatasetError::polars(path, e))?;
    if let Some(mut rules) = crate::check::Rules::of(RECORDS) {
        rules.check(path, &typed, None)?;
    }
    Ok(rows)
}

/// Where a capture segment for `host` on `date` (YYYY-MM-DD) goes under `dir`.
pub fn partition_dir(dir: &Path, host: &str, date: &str) -> PathBuf {
    dir.join(format!("host={host}"))
        .join(format!("date={date}"))
}

/// The columns of one host's samples that baseline and energy integration need, sorted by
/// time: a compact columnar view (no per-row structs), for millions of samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerSeries {
    /// Host name.
    pub host: String,
    /// Sample times: host wall clock, ns since the Unix epoch (UTC), non-decreasing.
    pub utc_ns: Vec<i64>,
    /// Power in W, one per sample.
    pub watts: Vec<f64>,
    /// Bit flags (`FLAG_*`), one per sample.
    pub flags: Vec<u32>,
    /// Samples that carry `gap_before_ns`: (index into the vectors, gap length in ns), ascending.
    pub gaps_before_ns: Vec<(usize, i64)>,
    /// Distinct meter ids, in order of first appearance.
    pub meter_ids: Vec<String>,
    /// Index into `meter_ids` of each sample's meter.
    pub meter_index: Vec<u16>,
    /// Records that carried no power value (`_` on the wire); left out of the vectors.
    pub missing_watts: usize,
    /// Energy counter, J, one per sample (None where a sample has none); empty when no
    /// sample of the host has one.
    pub energy_counter_j: Vec<Option<f64>>,
    /// Longest native interval of the host's source(s), ns; None when not recorded (1.0).
    pub source_interval_ns: Option<i64>,
}

impl PowerSeries {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.utc_ns.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.utc_ns.is_empty()
    }
}

/// Columns read by [`read_power_series`].
pub const POWER_COLUMNS: [&str; 5] = ["meter_id", "utc_ns", "watts", "flags", "gap_before_ns"];
/// Columns of minor 1 read by [`read_power_series`] where a file has them.
pub const POWER_COLUMNS_1: [&str; 2] = ["energy_counter_j", "source_interval_ns"];

/// The samples files under `path` (a file or a hive folder) grouped by host, each list sorted.
pub fn sample_files_by_host(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<PathBuf>>, DatasetError> {
    let files = parquet_files(path)?;
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut by_host: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for f in files {
        let host = host_of(&f).ok_or_else(|| {
            col_err(
                &f,
                "host",
                "file has no migwatt.host metadata and is not under a host=NAME folder",
            )
        })?;
        by_host.entry(host).or_default().push(f);
    }
    Ok(by_host)
}

/// Read only [`POWER_COLUMNS`] of one host's samples files into a [`PowerSeries`] sorted by
/// time, keeping samples with `from_utc_ns <= utc_ns <= to_utc_ns` when a range is given.
/// Files are decoded in parallel (polars' thread pool); kind and version are checked.
pub fn read_power_series(
    host: &str,
    files: &[PathBuf],
    range_utc_ns: Option<(i64, i64)>,
) -> Result<PowerSeries, DatasetError> {
    let mut out = PowerSeries::default();
    read_power_series_into(&mut out, host, files, range_utc_ns)?;
    Ok(out)
}

/// [`read_power_series`] into `out`, reusing its allocations (reading host after host).
pub fn read_power_series_into(
    out: &mut PowerSeries,
    host: &str,
    files: &[PathBuf],
    range_utc_ns: Option<(i64, i64)>,
) -> Result<(), DatasetError> {
    out.host = host.to_string();
    out.utc_ns.clear();
    out.watts.clear();
    out.flags.clear();
    out.gaps_before_ns.clear();
    out.meter_ids.clear();
    out.meter_index.clear();
    out.missing_watts = 0;
    out.energy_counter_j.clear();
    out.source_interval_ns = None;
    if range_utc_ns.is_none() {
        // Allocate once: growing vectors of millions of samples costs copies and page faults.
        let mut total = 0usize;
        for f in files {
            let file = File::open(f).map_err(|e| DatasetError::io(f, e))?;
            total += ParquetReader::new(file)
                .num_rows()
                .map_err(|e| DatasetError::polars(f, e))?;
        }
        out.utc_ns.reserve_exact(total);
        out.watts.reserve_exact(total);
        out.flags.reserve_exact(total);
        out.meter_index.reserve_exact(total);
    }
    // rayon decodes a batch of files (one per thread) while the previous batch is appended in
    // file order, so only two batches of decoded files are in memory at once.
    let batch = rayon::current_num_threads().max(1);
    type Decoded<'a> = (&'a [PathBuf], Vec<Result<DataFrame, DatasetError>>);
    let mut decoded: Option<Decoded<'_>> = None;
    for next in files.chunks(batch).chain([&[][..]]) {
        let prev = decoded.take();
        let (got, appended) = rayon::join(
            || {
                next.par_iter()
                    .map(|f| read_power_columns(f))
                    .collect::<Vec<_>>()
            },
            || -> Result<(), DatasetError> {
                for (f, df) in prev.into_iter().flat_map(|(fs, dfs)| fs.iter().zip(dfs)) {
                    append_power(out, &df?, f, range_utc_ns)?;
                }
                Ok(())
            },
        );
        appended?;
        decoded = Some((next, got));
    }
    if !out.energy_counter_j.is_empty() {
        out.energy_counter_j.resize(out.utc_ns.len(), None);
    }
    sort_power_series(out);
    check_no_duplicate_times(out, files)
}

/// Key (host, `utc_ns`) unique across the host's files: two files holding the same sample
/// (a journal recovered twice, a copied segment) would count it twice.
fn check_no_duplicate_times(s: &PowerSeries, files: &[PathBuf]) -> Result<(), DatasetError> {
    let Some(i) = s.utc_ns.windows(2).position(|w| w[0] == w[1]) else {
        return Ok(());
    };
    let t = s.utc_ns[i];
    let total = s.utc_ns.windows(2).filter(|w| w[0] == w[1]).count();
    // Rare: read the files again to name the ones holding that time.
    let holding: Vec<String> = files
        .iter()
        .filter(|f| {
            read_power_columns(f)
                .ok()
                .and_then(|df| df.column("utc_ns").ok()?.i64().ok().cloned())
                .is_some_and(|ca| ca.iter().any(|v| v == Some(t)))
        })
        .map(|f| f.display().to_string())
        .collect();
    Err(DatasetError::Rules {
        path: files.first().cloned().unwrap_or_default(),
        kind: SAMPLES.name.into(),
        violations: vec![crate::check::Violation {
            file: files.first().cloned().unwrap_or_default(),
            row: None,
            column: Some("utc_ns".into()),
            problem: format!(
                "host '{}': sample time {t} appears in more than one file ({}); remove the copy",
                s.host,
                holding.join(", ")
            ),
        }],
        total,
    })
}

fn read_power_columns(path: &Path) -> Result<DataFrame, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut reader = ParquetReader::new(file);
    let meta = reader
        .get_metadata()
        .map_err(|e| DatasetError::polars(path, e))?
        .clone();
    let kv = meta.key_value_metadata.clone().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    if let Some(found) = get(crate::io::KEY_DATASET) {
        if found != SAMPLES.name {
            return Err(DatasetError::WrongKind {
                path: path.to_path_buf(),
                expected: SAMPLES.name.into(),
                found,
            });
        }
    }
    if let Some(v) = get(crate::io::KEY_SCHEMA_VERSION) {
        if SchemaVersion::parse(&v).is_none_or(|p| p.major != SAMPLES.version.major) {
            return Err(DatasetError::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: SAMPLES.name.into(),
                found: v,
                supported: format!("{}.x", SAMPLES.version.major),
            });
        }
    }
    let schema = reader.schema().map_err(|e| DatasetError::polars(path, e))?;
    for name in POWER_COLUMNS {
        if !schema.contains(name) {
            return Err(col_err(path, name, "missing"));
        }
    }
    let mut names: Vec<String> = POWER_COLUMNS.iter().map(|c| c.to_string()).collect();
    names.extend(
        POWER_COLUMNS_1
            .iter()
            .filter(|c| schema.contains(c))
            .map(|c| c.to_string()),
    );
    reader
        .with_columns(Some(names))
        .finish()
        .map_err(|e| DatasetError::polars(path, e))
}

fn append_power(
    out: &mut PowerSeries,
    df: &DataFrame,
    path: &Path,
    range: Option<(i64, i64)>,
) -> Result<(), DatasetError> {
    let typed = |name: &str, dt: DataType| -> Result<Series, DatasetError> {
        column(df, name, path)?
            .as_materialized_series()
            .strict_cast(&dt)
            .map_err(|_| col_err(path, name, format!("expected {dt}")))
    };
    let utc = typed("utc_ns", DataType::Int64)?;
    let utc = utc.i64().expect("cast");
    let watts = typed("watts", DataType::Float64)?;
    let watts = watts.f64().expect("cast");
    let flags = typed("flags", DataType::UInt32)?;
    let flags = flags.u32().expect("cast");
    let gap = typed("gap_before_ns", DataType::Int64)?;
    let gap = gap.i64().expect("cast");
    let meter = typed("meter_id", DataType::String)?;
    let meter = meter.str().expect("cast");
    if let Some(i) = first_null(utc) {
        return Err(col_err(
            path,
            "utc_ns",
            format!("row {i}: null in a required column"),
        ));
    }
    check_power_rows(path, utc, watts, gap)?;
    let n = df.height();
    let meter_codes = meter_codes(out, meter, path)?;
    let counter = match df.column("energy_counter_j") {
        Ok(_) => Some(typed("energy_counter_j", DataType::Float64)?),
        Err(_) => None,
    };
    let counter = counter
        .as_ref()
        .map(|c| c.f64().expect("cast"))
        .filter(|c| c.null_count() < c.len());
    if let Some(c) = counter {
        if let Some((i, v)) = c
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.filter(|v| !(v.is_finite() && *v >= 0.0)).map(|v| (i, v)))
        {
            return Err(col_err(
                path,
                "energy_counter_j",
                format!("row {i}: {v}, expected a finite number >= 0 (J)"),
            ));
        }
    }
    if let Ok(c) = df.column("source_interval_ns") {
        let c = c
            .as_materialized_series()
            .strict_cast(&DataType::Int64)
            .map_err(|_| col_err(path, "source_interval_ns", "expected i64"))?;
        if let Some(m) = c.i64().expect("cast").max() {
            out.source_interval_ns = Some(out.source_interval_ns.map_or(m, |o| o.max(m)));
        }
    }
    // Counters line up with the samples kept; the vector stays empty until one appears.
    let push_counter = |out: &mut PowerSeries, v: Option<f64>| {
        if counter.is_some() && out.energy_counter_j.is_empty() {
            out.energy_counter_j.resize(out.utc_ns.len(), None);
        }
        if !out.energy_counter_j.is_empty() || counter.is_some() {
            out.energy_counter_j.push(v);
        }
    };
    if range.is_none() && watts.null_count() == 0 {
        // Common case: copy whole columns.
        let base = out.utc_ns.len();
        for arr in utc.downcast_iter() {
            out.utc_ns.extend_from_slice(arr.values());
        }
        for arr in watts.downcast_iter() {
            out.watts.extend_from_slice(arr.values());
        }
        if flags.null_count() == 0 {
            for arr in flags.downcast_iter() {
                out.flags.extend_from_slice(arr.values());
            }
        } else {
            out.flags.extend(flags.iter().map(|f| f.unwrap_or(0)));
        }
        if gap.null_count() < n {
            let gaps = gap.iter().enumerate();
            out.gaps_before_ns
                .extend(gaps.filter_map(|(i, g)| Some((base + i, g?))));
        }
        out.meter_index.extend_from_slice(&meter_codes);
        if counter.is_some() || !out.energy_counter_j.is_empty() {
            // Pad to the samples before this file, then this file's counters.
            out.energy_counter_j.resize(base, None);
            match counter {
                Some(c) => out.energy_counter_j.extend(c.iter()),
                None => out.energy_counter_j.resize(base + n, None),
            }
        }
        return Ok(());
    }
    let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
    let utc: Vec<i64> = utc.into_no_null_iter().collect();
    out.utc_ns.reserve(n);
    out.watts.reserve(n);
    out.flags.reserve(n);
    out.meter_index.reserve(n);
    for (i, ((w, f), g)) in watts.iter().zip(flags.iter()).zip(gap.iter()).enumerate() {
        let t = utc[i];
        if t < lo || t > hi {
            continue;
        }
        let Some(w) = w else {
            out.missing_watts += 1;
            continue;
        };
        if let Some(g) = g {
            out.gaps_before_ns.push((out.utc_ns.len(), g));
        }
        push_counter(out, counter.and_then(|c| c.get(i)));
        out.utc_ns.push(t);
        out.watts.push(w);
        out.flags.push(f.unwrap_or(0));
        out.meter_index.push(meter_codes[i]);
    }
    Ok(())
}

/// The samples rules (see `datasets check`) on the columns read for power, in one pass fast
/// enough for millions of rows: `utc_ns` ns between 2000 and 2100 and strictly increasing
/// within the file (sorted, no duplicate), watts finite and >= 0, gaps >= 0.
fn check_power_rows(
    path: &Path,
    utc: &Int64Chunked,
    watts: &Float64Chunked,
    gap: &Int64Chunked,
) -> Result<(), DatasetError> {
    let mut found = Vec::new();
    let mut total = 0;
    let mut add = |row: usize, column: &str, problem: String| {
        total += 1;
        if found.len() < crate::check::MAX_REPORTED {
            found.push(crate::check::Violation {
                file: path.to_path_buf(),
                row: Some(row),
                column: Some(column.to_string()),
                problem,
            });
        }
    };
    let mut prev: Option<i64> = None;
    for (i, t) in utc.into_no_null_iter().enumerate() {
        if !(crate::check::UTC_NS_MIN..crate::check::UTC_NS_MAX).contains(&t) {
            add(i, "utc_ns", crate::check::not_utc_ns(t));
        }
        match prev {
            Some(p) if t == p => add(
                i,
                "utc_ns",
                format!("duplicate sample time {t} (same as row {})", i - 1),
            ),
            Some(p) if t < p => add(
                i,
                "utc_ns",
                format!("not sorted: {t} after {p} at row {}", i - 1),
            ),
            _ => {}
        }
        prev = Some(t);
    }
    for (i, w) in watts.iter().enumerate() {
        if let Some(w) = w.filter(|w| !(w.is_finite() && *w >= 0.0)) {
            add(
                i,
                "watts",
                format!("{w}, expected a finite number >= 0 (W)"),
            );
        }
    }
    for (i, g) in gap.iter().enumerate() {
        if let Some(g) = g.filter(|g| *g < 0) {
            add(i, "gap_before_ns", format!("{g}, expected a gap >= 0 (ns)"));
        }
    }
    if total == 0 {
        return Ok(());
    }
    Err(DatasetError::Rules {
        path: path.to_path_buf(),
        kind: SAMPLES.name.into(),
        violations: found,
        total,
    })
}

fn first_null(ca: &Int64Chunked) -> Option<usize> {
    if ca.null_count() == 0 {
        return None;
    }
    ca.iter().position(|v| v.is_none())
}

/// Per-row index into `out.meter_ids`, growing the dictionary as new ids appear.
fn meter_codes(
    out: &mut PowerSeries,
    meter: &StringChunked,
    path: &Path,
) -> Result<Vec<u16>, DatasetError> {
    let mut codes = Vec::with_capacity(meter.len());
    for arr in meter.downcast_iter() {
        // Equal string views within one array are equal strings (same bytes, or the same
        // dictionary entry): compare 16 bytes instead of the text.
        let mut last: Option<(u128, u16)> = None;
        for (j, view) in arr.views().iter().enumerate() {
            let view = view.as_u128();
            if let Some((prev, code)) = last {
                if prev == view {
                    codes.push(code);
                    continue;
                }
            }
            let id = arr.get(j).unwrap_or("");
            let code = match out.meter_ids.iter().position(|m| m == id) {
                Some(k) => k,
                None => {
                    out.meter_ids.push(id.to_string());
                    out.meter_ids.len() - 1
                }
            };
            let code = u16::try_from(code)
                .map_err(|_| col_err(path, "meter_id", "more than 65535 distinct meter ids"))?;
            last = Some((view, code));
            codes.push(code);
        }
    }
    Ok(codes)
}

/// Sort by time (stable, so equal stamps keep file order) when files arrive out of order.
fn sort_power_series(s: &mut PowerSeries) {
    if s.utc_ns.is_sorted() {
        return;
    }
    let mut order: Vec<usize> = (0..s.utc_ns.len()).collect();
    order.sort_by_key(|&i| s.utc_ns[i]);
    let mut new_pos = vec![0usize; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_pos[old] = new;
    }
    s.utc_ns = order.iter().map(|&i| s.utc_ns[i]).collect();
    s.watts = order.iter().map(|&i| s.watts[i]).collect();
    s.flags = order.iter().map(|&i| s.flags[i]).collect();
    s.meter_index = order.iter().map(|&i| s.meter_index[i]).collect();
    if !s.energy_counter_j.is_empty() {
        s.energy_counter_j = order.iter().map(|&i| s.energy_counter_j[i]).collect();
    }
    for g in &mut s.gaps_before_ns {
        g.0 = new_pos[g.0];
    }
    s.gaps_before_ns.sort_unstable();
}

#[cfg(test)]
mod power_series_tests {
    use super::*;

    fn sample(host: &str, i: i64, watts: Option<f64>) -> SampleRow {
        let mut fields = [None; FIELD_COUNT];
        fields[0] = watts;
        SampleRow {
            host: host.into(),
            meter_id: "PRO 5.2".into(),
            utc_ns: 1_700_000_000_000_000_000 + i * 1_000_000_000,
            mono_ns: i,
            seq: i as u64,
            connection: 1,
            gap_before_ns: (i == 3).then_some(2_000_000_000),
            flags: u32::from(i == 3),
            fields,
            ..Default::default()
        }
    }

    #[test]
    fn power_series_refuses_impossible_watts_seconds_and_duplicate_samples() {
        let dir = tempfile::tempdir().unwrap();
        let a = partition_dir(dir.path(), "a", "2026-01-01");
        let rows = |f: &dyn Fn(i64, &mut SampleRow)| -> Vec<SampleRow> {
            (0..4)
                .map(|i| {
                    let mut r = sample("a", i, Some(100.0));
                    f(i, &mut r);
                    r
                })
                .collect()
        };
        let cases: [(Vec<SampleRow>, &str); 4] = [
            (
                rows(&|i, r| r.fields[0] = (i == 2).then_some(-5.0).or(r.fields[0])),
                "row 2: column 'watts': -5, expected a finite number >= 0 (W)",
            ),
            (
                rows(&|i, r| r.utc_ns = 1_764_000_000 + i),
                "row 0: column 'utc_ns': 1764000000 is not ns",
            ),
            (
                rows(&|i, r| {
                    if i == 3 {
                        r.utc_ns -= 1_000_000_000
                    }
                }),
                "row 3: column 'utc_ns': duplicate sample time",
            ),
            (
                rows(&|i, r| {
                    if i == 3 {
                        r.utc_ns -= 5_000_000_000
                    }
                }),
                "row 3: column 'utc_ns': not sorted",
            ),
        ];
        std::fs::create_dir_all(&a).unwrap();
        for (bad, want) in cases {
            let f = a.join("bad.parquet");
            // Written around the writer's guard, as another tool would.
            let mut df = samples_frame(&bad).unwrap();
            ParquetWriter::new(File::create(&f).unwrap())
                .finish(&mut df)
                .unwrap();
            let err = read_power_series("a", std::slice::from_ref(&f), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want) && err.contains("bad.parquet"), "{err}");
            std::fs::remove_file(&f).unwrap();
        }
        // NaN cannot even be written by migwatt.
        let mut nan = rows(&|_, _| {});
        nan[1].fields[0] = Some(f64::NAN);
        assert!(write_samples_file(&a.join("nan.parquet"), "a", &nan).is_err());
        // The same sample in two files is counted once or not at all: refused.
        let good = rows(&|_, _| {});
        write_samples_file(&a.join("1.parquet"), "a", &good).unwrap();
        write_samples_file(&a.join("2.parquet"), "a", &good[2..]).unwrap();
        let files = sample_files_by_host(dir.path())
            .unwrap()
            .remove("a")
            .unwrap();
        let err = read_power_series("a", &files, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("appears in more than one file")
                && err.contains("1.parquet")
                && err.contains("2.parquet"),
            "{err}"
        );
    }

    #[test]
    fn power_series_reads_projected_columns_sorted_across_files_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let a = partition_dir(dir.path(), "a", "2026-01-01");
        // Second file holds earlier samples: the reader must sort.
        let late: Vec<_> = (3..6).map(|i| sample("a", i, Some(i as f64))).collect();
        let early: Vec<_> = (0..3)
            .map(|i| sample("a", i, (i != 1).then_some(i as f64)))
            .collect();
        write_samples_file(&a.join("1.parquet"), "a", &late).unwrap();
        write_samples_file(&a.join("2.parquet"), "a", &early).unwrap();
        let b = partition_dir(dir.path(), "b", "2026-01-01");
        write_samples_file(&b.join("1.parquet"), "b", &early).unwrap();
        let by_host = sample_files_by_host(dir.path()).unwrap();
        assert_eq!(by_host.keys().collect::<Vec<_>>(), ["a", "b"]);
        let s = read_power_series("a", &by_host["a"], None).unwrap();
        assert_eq!(s.watts, vec![0.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(s.missing_watts, 1);
        assert!(s.utc_ns.is_sorted());
        assert_eq!(s.gaps_before_ns, vec![(2, 2_000_000_000)]);
        assert_eq!(s.flags[2], FLAG_AFTER_GAP);
        assert_eq!(s.meter_ids, vec!["PRO 5.2".to_string()]);
        let ranged = read_power_series(
            "a",
            &by_host["a"],
            Some((
                1_700_000_000_000_000_000 + 2_000_000_000,
                1_700_000_000_000_000_000 + 4_000_000_000,
            )),
        )
        .unwrap();
        assert_eq!(ranged.watts, vec![2.0, 3.0, 4.0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> SampleRow {
        let mut fields = [None; FIELD_COUNT];
        fields[0] = Some(100.0 + i as f64 / 10.0);
        fields[1] = Some(230.1);
        SampleRow {
            host: "src".into(),
            meter_id: "PRO".into(),
            utc_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000_000,
            mono_ns: i as i64,
            seq: i,
            connection: 1,
            gap_before_ns: (i == 2).then_some(5_000_000_000),
            flags: 0,
            fields,
            source_kind: Some("wattsup".into()),
            source_interval_ns: Some(1_000_000_000),
            energy_counter_j: (i % 2 == 1).then_some(1_000.5 + i as f64),
        }
    }

    #[test]
    fn samples_round_trip_through_parquet_with_host_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let part = partition_dir(dir.path(), "src", "2026-11-25");
        let rows: Vec<_> = (0..5).map(row).collect();
        write_samples_file(&part.join("a.parquet"), "src", &rows).unwrap();
        let back = read_samples(dir.path()).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn files_of_minor_0_without_source_columns_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let part = partition_dir(dir.path(), "src", "2026-11-25");
        let p = part.join("old.parquet");
        std::fs::create_dir_all(&part).unwrap();
        let rows: Vec<_> = (0..4).map(row).collect();
        let mut df = samples_frame(&rows).unwrap();
        for c in ["source_kind", "source_interval_ns", "energy_counter_j"] {
            df = df.drop(c).unwrap();
        }
        let v1_0 = DatasetKind {
            name: "samples",
            version: SchemaVersion {
                major: 1,
                minor: 0,
                patch: 0,
            },
        };
        crate::io::write_parquet_atomic_with(&mut df, &p, v1_0, &[(KEY_HOST, "src")]).unwrap();
        let back = read_samples(dir.path()).unwrap();
        let expected: Vec<_> = rows
            .iter()
            .map(|r| SampleRow {
                source_kind: None,
                source_interval_ns: None,
                energy_counter_j: None,
                ..r.clone()
            })
            .collect();
        assert_eq!(back, expected);
        let s = read_power_series("src", std::slice::from_ref(&p), None).unwrap();
        assert_eq!(s.len(), 4);
        assert!(s.energy_counter_j.is_empty());
        assert_eq!(s.source_interval_ns, None);
        // `datasets check`: a 1.0 file may lack them, a 1.1 file must have them.
        assert!(crate::check::check_path(&p).unwrap().violations.is_empty());
        let mut df = samples_frame(&rows)
            .unwrap()
            .drop("energy_counter_j")
            .unwrap();
        crate::io::write_parquet_atomic_with(&mut df, &p, SAMPLES, &[(KEY_HOST, "src")]).unwrap();
        let v = crate::check::check_path(&p).unwrap().violations;
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].column.as_deref(), Some("energy_counter_j"));
        assert!(v[0].problem.starts_with("missing"), "{v:?}");
    }

    #[test]
    fn power_series_carry_counters_aligned_with_their_samples() {
        let dir = tempfile::tempdir().unwrap();
        let part = partition_dir(dir.path(), "src", "2026-11-25");
        let rows: Vec<_> = (0..5).map(row).collect();
        // Files in reverse order: the series is sorted with its counters.
        write_samples_file(&part.join("b.parquet"), "src", &rows[..2]).unwrap();
        write_samples_file(&part.join("a.parquet"), "src", &rows[2..]).unwrap();
        let files = vec![part.join("a.parquet"), part.join("b.parquet")];
        let s = read_power_series("src", &files, None).unwrap();
        let want: Vec<_> = rows.iter().map(|r| r.energy_counter_j).collect();
        assert_eq!(s.energy_counter_j, want);
        assert_eq!(s.source_interval_ns, Some(1_000_000_000));
        let ranged =
            read_power_series("src", &files, Some((rows[1].utc_ns, rows[3].utc_ns))).unwrap();
        assert_eq!(ranged.energy_counter_j, want[1..4].to_vec());
    }

    #[test]
    fn reader_refuses_unknown_major_and_wrong_kind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let mut df = samples_frame(&[row(0)]).unwrap();
        let future = DatasetKind {
            name: "samples",
            version: SchemaVersion {
                major: 2,
                minor: 0,
                patch: 0,
            },
        };
        crate::io::write_parquet_atomic(&mut df, &p, future).unwrap();
        let err = read_samples(&p).unwrap_err().to_string();
        assert!(err.contains("2.0.0") && err.contains("1.x"), "{err}");
        let other = DatasetKind {
            name: "rounds",
            version: SAMPLES.version,
        };
        crate::io::write_parquet_atomic(&mut df, &p, other).unwrap();
        let err = read_samples(&p).unwrap_err().to_string();
        assert!(err.contains("'rounds'"), "{err}");
    }
}
