//! The energy-observations dataset written by `migwatt integrate` (one row per migration,
//! eq 14: E_mig = E_source + E_destination, both parts kept), the training input of
//! `migwatt train energy`; and its companion window-quality dataset (one row per migration
//! window, with coverage, gaps and why a window was left out).
//!
//! Energy-observations columns:
//!
//! | column | type | unit / meaning |
//! |---|---|---|
//! | `migration_id` | string | migration identifier |
//! | `v_mig_bytes` | u64 | bytes transferred (V_mig) |
//! | `e_source_j` | f64 | J, integral of (P_t - P_0) over the source window |
//! | `e_destination_j` | f64 | J, same on the destination |
//! | `e_mig_j` | f64 | J, sum of both (eq 14) |
//! | `coverage` | f64 | 0..1, the smaller of both windows' sample coverage |
//! | `p0_source_w`, `p0_destination_w` | f64 | W, static power used per host |
//! | `source_host`, `destination_host` | string | host names |
//! | `start_utc_ns`, `end_utc_ns` | i64 | earliest window start, latest window end |
//! | `workload`, `vm` | string, nullable | labels from the windows |
//! | `vm_mem_bytes` | u64, nullable | VM memory size |
//!
//! Formats: Parquet (kinds `energy_observations`, `window_quality`), CSV with a header, or
//! JSON lines (one object per row, same names).

use std::io::Write;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::{
    col_err, ensure_finite, read_parquet_checked, stage_atomic_with, DatasetError, DatasetKind,
    SchemaVersion, Staged,
};
use crate::windows::{read_csv_as_strings, stage_csv, Cols};

/// The energy-observations dataset kind and version.
pub const ENERGY: DatasetKind = DatasetKind {
    name: "energy_observations",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// The window-quality dataset kind and version.
pub const WINDOW_QUALITY: DatasetKind = DatasetKind {
    name: "window_quality",
    // 1.1: source_interval_s, shorter_than_source_interval.
    version: SchemaVersion {
        major: 1,
        minor: 1,
        patch: 0,
    },
};

/// Key of the Parquet key-value entry recording the integration rule used.
pub const KEY_RULE: &str = "migwatt.integration_rule";
/// Key of the Parquet key-value entry recording the coverage threshold used.
pub const KEY_MIN_COVERAGE: &str = "migwatt.min_coverage";

/// File format of an output dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet with migwatt metadata.
    Parquet,
    /// CSV with a header row.
    Csv,
    /// JSON lines, one object per row.
    Jsonl,
}

impl Format {
    /// The format a file name implies: `.csv`, `.jsonl`/`.ndjson`, else Parquet.
    pub fn from_path(path: &Path) -> Format {
        match path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref()
        {
            Some("csv") => Format::Csv,
            Some("jsonl") | Some("ndjson") => Format::Jsonl,
            _ => Format::Parquet,
        }
    }

    /// Conventional file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// One migration's energy (eq 14), with both parts and the data-quality summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyRow {
    /// Migration identifier.
    pub migration_id: String,
    /// Bytes transferred (V_mig).
    pub v_mig_bytes: u64,
    /// Energy above static power on the source host, J.
    pub e_source_j: f64,
    /// Energy above static power on the destination host, J.
    pub e_destination_j: f64,
    /// Their sum, J (eq 14).
    pub e_mig_j: f64,
    /// Smaller of both windows' sample coverage, 0..1.
    pub coverage: f64,
    /// Static power P_0 used for the source host, W.
    pub p0_source_w: f64,
    /// Static power P_0 used for the destination host, W.
    pub p0_destination_w: f64,
    /// Source host name.
    pub source_host: String,
    /// Destination host name.
    pub destination_host: String,
    /// Earliest window start, ns since the Unix epoch (UTC).
    pub start_utc_ns: i64,
    /// Latest window end, ns since the Unix epoch (UTC).
    pub end_utc_ns: i64,
    /// Workload label.
    pub workload: Option<String>,
    /// VM name.
    pub vm: Option<String>,
    /// VM memory size in bytes.
    pub vm_mem_bytes: Option<u64>,
}

/// Data quality and energy of one migration window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowQualityRow {
    /// Migration identifier.
    pub migration_id: String,
    /// Host name.
    pub host: String,
    /// `source` or `destination`.
    pub role: String,
    /// Window start, ns since the Unix epoch (UTC).
    pub start_utc_ns: i64,
    /// Window end, ns since the Unix epoch (UTC).
    pub end_utc_ns: i64,
    /// Samples stamped inside the window.
    pub sample_count: u64,
    /// Share of the window covered by samples (no gap longer than the gap limit), 0..1.
    pub coverage: f64,
    /// Longest stretch of the window not covered by samples, s.
    pub largest_gap_s: f64,
    /// Sampling interval assumed for the host, s.
    pub interval_s: f64,
    /// Static power used, W.
    pub p0_w: f64,
    /// Integral of (P_t - P_0) over the covered part of the window, J; None without samples.
    pub energy_j: Option<f64>,
    /// Whether the window's migration is in the energy observations.
    pub included: bool,
    /// Why it was left out (None when included).
    pub reason: Option<String>,
    /// The source's native (averaging) interval as its samples record it, s; None when not
    /// recorded (samples 1.0).
    #[serde(default)]
    pub source_interval_s: Option<f64>,
    /// Whether the window is shorter than the source's averaging interval: the source cannot
    /// resolve it and its energy is spread from longer readings (kept, but flagged).
    #[serde(default)]
    pub shorter_than_source_interval: bool,
}

fn energy_frame(rows: &[EnergyRow]) -> Result<DataFrame, PolarsError> {
    let f = |g: fn(&EnergyRow) -> f64| rows.iter().map(g).collect::<Vec<_>>();
    let s = |g: fn(&EnergyRow) -> &str| rows.iter().map(g).collect::<Vec<_>>();
    let o = |g: fn(&EnergyRow) -> Option<&str>| rows.iter().map(g).collect::<Vec<_>>();
    let cols = vec![
        Column::new("migration_id".into(), s(|r| &r.migration_id)),
        Column::new(
            "v_mig_bytes".into(),
            rows.iter().map(|r| r.v_mig_bytes).collect::<Vec<_>>(),
        ),
        Column::new("e_source_j".into(), f(|r| r.e_source_j)),
        Column::new("e_destination_j".into(), f(|r| r.e_destination_j)),
        Column::new("e_mig_j".into(), f(|r| r.e_mig_j)),
        Column::new("coverage".into(), f(|r| r.coverage)),
        Column::new("p0_source_w".into(), f(|r| r.p0_source_w)),
        Column::new("p0_destination_w".into(), f(|r| r.p0_destination_w)),
        Column::new("source_host".into(), s(|r| &r.source_host)),
        Column::new("destination_host".into(), s(|r| &r.destination_host)),
        Column::new(
            "start_utc_ns".into(),
            rows.iter().map(|r| r.start_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "end_utc_ns".into(),
            rows.iter().map(|r| r.end_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new("workload".into(), o(|r| r.workload.as_deref())),
        Column::new("vm".into(), o(|r| r.vm.as_deref())),
        Column::new(
            "vm_mem_bytes".into(),
            rows.iter().map(|r| r.vm_mem_bytes).collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new(rows.len(), cols)
}

fn quality_frame(rows: &[WindowQualityRow]) -> Result<DataFrame, PolarsError> {
    let s = |g: fn(&WindowQualityRow) -> &str| rows.iter().map(g).collect::<Vec<_>>();
    let f = |g: fn(&WindowQualityRow) -> f64| rows.iter().map(g).collect::<Vec<_>>();
    let cols = vec![
        Column::new("migration_id".into(), s(|r| &r.migration_id)),
        Column::new("host".into(), s(|r| &r.host)),
        Column::new("role".into(), s(|r| &r.role)),
        Column::new(
            "start_utc_ns".into(),
            rows.iter().map(|r| r.start_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "end_utc_ns".into(),
            rows.iter().map(|r| r.end_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "sample_count".into(),
            rows.iter().map(|r| r.sample_count).collect::<Vec<_>>(),
        ),
        Column::new("coverage".into(), f(|r| r.coverage)),
        Column::new("largest_gap_s".into(), f(|r| r.largest_gap_s)),
        Column::new("interval_s".into(), f(|r| r.interval_s)),
        Column::new("p0_w".into(), f(|r| r.p0_w)),
        Column::new(
            "energy_j".into(),
            rows.iter().map(|r| r.energy_j).collect::<Vec<_>>(),
        ),
        Column::new(
            "included".into(),
            rows.iter().map(|r| r.included).collect::<Vec<_>>(),
        ),
        Column::new(
            "reason".into(),
            rows.iter().map(|r| r.reason.as_deref()).collect::<Vec<_>>(),
        ),
        Column::new(
            "source_interval_s".into(),
            rows.iter().map(|r| r.source_interval_s).collect::<Vec<_>>(),
        ),
        Column::new(
            "shorter_than_source_interval".into(),
            rows.iter()
                .map(|r| r.shorter_than_source_interval)
                .collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new(rows.len(), cols)
}

fn stage_any<T: Serialize>(
    path: &Path,
    format: Format,
    kind: DatasetKind,
    rows: &[T],
    frame: impl FnOnce(&[T]) -> Result<DataFrame, PolarsError>,
    extra: &[(&str, &str)],
) -> Result<Staged, DatasetError> {
    let polars_err = |e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    };
    // Built in every format: the frame is where a NaN or infinite value is refused.
    let mut df = frame(rows).map_err(polars_err)?;
    match format {
        Format::Parquet => crate::io::stage_parquet_with(&mut df, path, kind, extra),
        Format::Csv => stage_csv(&mut df, path),
        Format::Jsonl => {
            ensure_finite(&df, path)?;
            stage_jsonl(path, rows)
        }
    }
}

fn stage_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<Staged, DatasetError> {
    stage_atomic_with(path, |w, _| {
        for r in rows {
            serde_json::to_writer(&mut *w, r)
                .map_err(|e| col_err(path, "*", format!("JSON encoding: {e}")))?;
            w.write_all(b"\n").map_err(|e| DatasetError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        Ok(())
    })
}

/// Write energy observations atomically in `format`; `extra` key-value entries go into the
/// Parquet metadata (e.g. [`KEY_RULE`]).
pub fn write_energy(
    path: &Path,
    format: Format,
    rows: &[EnergyRow],
    extra: &[(&str, &str)],
) -> Result<(), DatasetError> {
    stage_energy(path, format, rows, extra)?.commit()
}

/// [`write_energy`] up to the rename (see [`Staged`]).
pub fn stage_energy(
    path: &Path,
    format: Format,
    rows: &[EnergyRow],
    extra: &[(&str, &str)],
) -> Result<Staged, DatasetError> {
    stage_any(path, format, ENERGY, rows, energy_frame, extra)
}

/// Write a window-quality report atomically in `format`.
pub fn write_window_quality(
    path: &Path,
    format: Format,
    rows: &[WindowQualityRow],
    extra: &[(&str, &str)],
) -> Result<(), DatasetError> {
    stage_window_quality(path, format, rows, extra)?.commit()
}

/// [`write_window_quality`] up to the rename (see [`Staged`]).
pub fn stage_window_quality(
    path: &Path,
    format: Format,
    rows: &[WindowQualityRow],
    extra: &[(&str, &str)],
) -> Result<Staged, DatasetError> {
    stage_any(path, format, WINDOW_QUALITY, rows, quality_frame, extra)
}

/// Read energy observations (Parquet, CSV or JSON lines, by file name).
pub fn read_energy(path: &Path) -> Result<Vec<EnergyRow>, DatasetError> {
    let rows = read_energy_rows(path)?;
    // The dataset's own rules (finite energies, ns timestamps, unique ids) on the typed rows.
    let df = energy_frame(&rows).map_err(|e| DatasetError::polars(path, e))?;
    if let Some(mut rules) = crate::check::Rules::of(ENERGY) {
        rules.check(path, &df, None)?;
    }
    Ok(rows)
}

fn read_energy_rows(path: &Path) -> Result<Vec<EnergyRow>, DatasetError> {
    let format = Format::from_path(path);
    if format == Format::Jsonl {
        return read_jsonl(path);
    }
    let df = match format {
        Format::Csv => read_csv_as_strings(path)?,
        _ => read_parquet_checked(path, ENERGY)?,
    };
    let c = Cols {
        df: &df,
        path,
        csv: format == Format::Csv,
    };
    let id = c.strings("migration_id", true)?;
    let v = c.ints("v_mig_bytes", true)?;
    let es = c.floats("e_source_j", true)?;
    let ed = c.floats("e_destination_j", true)?;
    let em = c.floats("e_mig_j", true)?;
    let cov = c.floats("coverage", true)?;
    let p0s = c.floats("p0_source_w", true)?;
    let p0d = c.floats("p0_destination_w", true)?;
    let sh = c.strings("source_host", true)?;
    let dh = c.strings("destination_host", true)?;
    let start = c.ints("start_utc_ns", true)?;
    let end = c.ints("end_utc_ns", true)?;
    let workload = c.strings("workload", false)?;
    let vm = c.strings("vm", false)?;
    let mem = c.ints("vm_mem_bytes", false)?;
    (0..df.height())
        .map(|i| {
            let need = |column: &str| col_err(path, column, c.row(i, "empty".into()));
            let bytes = |v: i64, column: &str| {
                u64::try_from(v)
                    .map_err(|_| col_err(path, column, c.row(i, format!("{v} is negative"))))
            };
            Ok(EnergyRow {
                migration_id: id[i].clone().ok_or_else(|| need("migration_id"))?,
                v_mig_bytes: bytes(v[i].ok_or_else(|| need("v_mig_bytes"))?, "v_mig_bytes")?,
                e_source_j: es[i].ok_or_else(|| need("e_source_j"))?,
                e_destination_j: ed[i].ok_or_else(|| need("e_destination_j"))?,
                e_mig_j: em[i].ok_or_else(|| need("e_mig_j"))?,
                coverage: cov[i].ok_or_else(|| need("coverage"))?,
                p0_source_w: p0s[i].ok_or_else(|| need("p0_source_w"))?,
                p0_destination_w: p0d[i].ok_or_else(|| need("p0_destination_w"))?,
                source_host: sh[i].clone().ok_or_else(|| need("source_host"))?,
                destination_host: dh[i].clone().ok_or_else(|| need("destination_host"))?,
                start_utc_ns: start[i].ok_or_else(|| need("start_utc_ns"))?,
                end_utc_ns: end[i].ok_or_else(|| need("end_utc_ns"))?,
                workload: workload[i].clone().filter(|s| !s.is_empty()),
                vm: vm[i].clone().filter(|s| !s.is_empty()),
                vm_mem_bytes: mem[i].map(|m| bytes(m, "vm_mem_bytes")).transpose()?,
            })
        })
        .collect()
}

fn read_jsonl(path: &Path) -> Result<Vec<EnergyRow>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| col_err(path, "*", format!("line {}: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32) -> EnergyRow {
        EnergyRow {
            migration_id: format!("m{i}"),
            v_mig_bytes: 1_000_000 * u64::from(i),
            e_source_j: 10.5 + f64::from(i),
            e_destination_j: 8.25,
            e_mig_j: 18.75 + f64::from(i),
            coverage: 0.99,
            p0_source_w: 100.1,
            p0_destination_w: 98.7,
            source_host: "a".into(),
            destination_host: "b".into(),
            start_utc_ns: 1_700_000_000_000_000_000,
            end_utc_ns: 1_700_000_030_000_000_000,
            workload: i.is_multiple_of(2).then(|| "h2".to_string()),
            vm: Some("vm1".into()),
            vm_mem_bytes: None,
        }
    }

    #[test]
    fn energy_round_trips_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (0..3).map(row).collect();
        for format in [Format::Parquet, Format::Csv, Format::Jsonl] {
            let p = dir.path().join(format!("e.{}", format.extension()));
            write_energy(&p, format, &rows, &[(KEY_RULE, "trapezoid")]).unwrap();
            assert_eq!(read_energy(&p).unwrap(), rows, "{format:?}");
        }
    }

    #[test]
    fn quality_report_writes_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let q = WindowQualityRow {
            migration_id: "m1".into(),
            host: "a".into(),
            role: "source".into(),
            start_utc_ns: 0,
            end_utc_ns: 10,
            sample_count: 0,
            coverage: 0.0,
            largest_gap_s: 1e-8,
            interval_s: 1.0,
            p0_w: 100.0,
            energy_j: None,
            included: false,
            reason: Some("no samples".into()),
            source_interval_s: Some(1.0),
            shorter_than_source_interval: true,
        };
        for format in [Format::Parquet, Format::Csv, Format::Jsonl] {
            let p = dir.path().join(format!("q.{}", format.extension()));
            write_window_quality(&p, format, std::slice::from_ref(&q), &[]).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() > 0);
        }
        let df = read_parquet_checked(&dir.path().join("q.parquet"), WINDOW_QUALITY).unwrap();
        assert_eq!(df.height(), 1);
        assert_eq!(
            df.column("reason").unwrap().str().unwrap().get(0),
            Some("no samples")
        );
    }
}
