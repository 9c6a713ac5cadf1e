//! The migration-windows dataset: when each host of a migration was busy migrating, and how
//! much the migration sent. Input of `migwatt integrate`; later produced from migration logs.
//!
//! One row per (migration, host role). Columns:
//!
//! | column | type | unit / meaning |
//! |---|---|---|
//! | `migration_id` | string | identifies the migration; source and destination share it |
//! | `host` | string | host name as in the samples dataset (`host=NAME`) |
//! | `role` | string | `source` or `destination` |
//! | `start_utc_ns` | i64 | window start, ns since the Unix epoch (UTC) |
//! | `end_utc_ns` | i64 | window end (after start), same clock |
//! | `v_mig_bytes` | u64 | bytes the migration transferred (V_mig) |
//! | `workload` | string, optional | workload label |
//! | `vm` | string, optional | VM name |
//! | `vm_mem_bytes` | u64, optional | VM memory size |
//!
//! Stored as Parquet (kind `migration_windows`) or CSV with a header row (same names, times
//! as integers). Optional columns may be absent or empty.

use std::path::Path;

use polars::prelude::*;

use crate::io::{
    col_err, ensure_finite, read_parquet_checked, stage_atomic_with, write_parquet_atomic,
    DatasetError, DatasetKind, SchemaVersion, Staged,
};

/// The migration-windows dataset kind and version.
pub const WINDOWS: DatasetKind = DatasetKind {
    name: "migration_windows",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// Which end of a migration a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The host the VM leaves.
    Source,
    /// The host the VM arrives at.
    Destination,
}

impl Role {
    /// The name stored in the `role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
        }
    }

    /// Parse a `role` value (`source` or `destination`, case-insensitive).
    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("source") {
            Some(Role::Source)
        } else if s.eq_ignore_ascii_case("destination") {
            Some(Role::Destination)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One migration window on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Migration identifier, shared by its source and destination windows.
    pub migration_id: String,
    /// Host name as in the samples dataset.
    pub host: String,
    /// Source or destination.
    pub role: Role,
    /// Window start, ns since the Unix epoch (UTC).
    pub start_utc_ns: i64,
    /// Window end, ns since the Unix epoch (UTC); greater than the start.
    pub end_utc_ns: i64,
    /// Bytes the migration transferred (V_mig).
    pub v_mig_bytes: u64,
    /// Workload label.
    pub workload: Option<String>,
    /// VM name.
    pub vm: Option<String>,
    /// VM memory size in bytes.
    pub vm_mem_bytes: Option<u64>,
}

/// Whether `path` names a CSV file (by extension); anything else is read as Parquet.
pub fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Read a migration-windows file (Parquet, or CSV when the name ends in `.csv`), validating
/// every row: required values present, role known, end after start, sizes non-negative.
pub fn read_windows(path: &Path) -> Result<Vec<WindowRow>, DatasetError> {
    let csv = is_csv(path);
    let df = if csv {
        read_csv_as_strings(path)?
    } else {
        read_parquet_checked(path, WINDOWS)?
    };
    let cols = Cols { df: &df, path, csv };
    let mut id = cols.strings("migration_id", true)?;
    let mut host = cols.strings("host", true)?;
    let role = cols.strings("role", true)?;
    let start = cols.ints("start_utc_ns", true)?;
    let end = cols.ints("end_utc_ns", true)?;
    let v_mig = cols.ints("v_mig_bytes", true)?;
    let mut workload = cols.strings("workload", false)?;
    let mut vm = cols.strings("vm", false)?;
    let vm_mem = cols.ints("vm_mem_bytes", false)?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let at = |column: &str, problem: String| col_err(path, column, cols.row(i, problem));
        // Values are moved out of the column vectors: each row is visited once.
        let need_str = |v: &mut Option<String>, column: &str| {
            v.take()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| at(column, "empty, expected a value".into()))
        };
        let need_int = |v: Option<i64>, column: &str| {
            v.ok_or_else(|| at(column, "empty, expected an integer".into()))
        };
        let non_negative = |v: i64, column: &str| {
            u64::try_from(v).map_err(|_| at(column, format!("{v} is negative")))
        };
        let role_text = role[i].as_deref().unwrap_or("");
        if role_text.trim().is_empty() {
            return Err(at("role", "empty, expected a value".into()));
        }
        let role = Role::parse(role_text).ok_or_else(|| {
            at(
                "role",
                format!("'{role_text}' is not 'source' or 'destination'"),
            )
        })?;
        let start_utc_ns = need_int(start[i], "start_utc_ns")?;
        let end_utc_ns = need_int(end[i], "end_utc_ns")?;
        if end_utc_ns <= start_utc_ns {
            return Err(at(
                "end_utc_ns",
                format!("end {end_utc_ns} is not after start {start_utc_ns}"),
            ));
        }
        out.push(WindowRow {
            migration_id: need_str(&mut id[i], "migration_id")?,
            host: need_str(&mut host[i], "host")?,
            role,
            start_utc_ns,
            end_utc_ns,
            v_mig_bytes: non_negative(need_int(v_mig[i], "v_mig_bytes")?, "v_mig_bytes")?,
            workload: workload[i].take().filter(|s| !s.is_empty()),
            vm: vm[i].take().filter(|s| !s.is_empty()),
            vm_mem_bytes: vm_mem[i]
                .map(|v| non_negative(v, "vm_mem_bytes"))
                .transpose()?,
        });
    }
    // The dataset's own rules (ns timestamps, unique (migration_id, role)) on the typed rows.
    let df = windows_frame(&out).map_err(|e| DatasetError::polars(path, e))?;
    if let Some(mut rules) = crate::check::Rules::of(WINDOWS) {
        rules.check(path, &df, None)?;
    }
    Ok(out)
}

/// Build the migration-windows frame.
pub fn windows_frame(rows: &[WindowRow]) -> Result<DataFrame, PolarsError> {
    let s = |f: fn(&WindowRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let cols = vec![
        Column::new("migration_id".into(), s(|r| &r.migration_id)),
        Column::new("host".into(), s(|r| &r.host)),
        Column::new("role".into(), s(|r| r.role.as_str())),
        Column::new(
            "start_utc_ns".into(),
            rows.iter().map(|r| r.start_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "end_utc_ns".into(),
            rows.iter().map(|r| r.end_utc_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "v_mig_bytes".into(),
            rows.iter().map(|r| r.v_mig_bytes).collect::<Vec<_>>(),
        ),
        Column::new(
            "workload".into(),
            rows.iter()
                .map(|r| r.workload.as_deref())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "vm".into(),
            rows.iter().map(|r| r.vm.as_deref()).collect::<Vec<_>>(),
        ),
        Column::new(
            "vm_mem_bytes".into(),
            rows.iter().map(|r| r.vm_mem_bytes).collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new(rows.len(), cols)
}

/// Write a migration-windows file atomically: CSV when the name ends in `.csv`, else Parquet.
pub fn write_windows(path: &Path, rows: &[WindowRow]) -> Result<(), DatasetError> {
    let mut df = windows_frame(rows).map_err(|e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    })?;
    if is_csv(path) {
        write_csv_atomic(&mut df, path)
    } else {
        write_parquet_atomic(&mut df, path, WINDOWS)
    }
}

/// Read a CSV file with a header row, every column as text (values are parsed per row so
/// that errors can name the row).
pub(crate) fn read_csv_as_strings(path: &Path) -> Result<DataFrame, DatasetError> {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| DatasetError::Polars {
            path: path.to_path_buf(),
            source: e,
        })
}

/// Write a CSV file atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_csv_atomic(df: &mut DataFrame, path: &Path) -> Result<(), DatasetError> {
    stage_csv(df, path)?.commit()
}

/// [`write_csv_atomic`] up to the rename (see [`crate::io::Staged`]).
pub(crate) fn stage_csv(df: &mut DataFrame, path: &Path) -> Result<Staged, DatasetError> {
    ensure_finite(df, path)?;
    stage_atomic_with(path, |w, _| {
        CsvWriter::new(w)
            .include_header(true)
            .finish(df)
            .map_err(|e| DatasetError::Polars {
                path: path.to_path_buf(),
                source: e,
            })
    })
}

/// Typed access to columns of a frame read from Parquet (typed) or CSV (all text), with
/// errors that name the file, column and row.
pub(crate) struct Cols<'a> {
    pub(crate) df: &'a DataFrame,
    pub(crate) path: &'a Path,
    pub(crate) csv: bool,
}

impl Cols<'_> {
    /// "row N" (1-based data row), plus the line number for CSV, then the problem.
    pub(crate) fn row(&self, i: usize, problem: String) -> String {
        if self.csv {
            format!("row {} (line {}): {problem}", i + 1, i + 2)
        } else {
            format!("row {}: {problem}", i + 1)
        }
    }

    fn get(&self, name: &str, required: bool) -> Result<Option<&Column>, DatasetError> {
        match self.df.column(name) {
            Ok(c) => Ok(Some(c)),
            Err(_) if required => Err(col_err(self.path, name, "missing")),
            Err(_) => Ok(None),
        }
    }

    /// A text column (any type is rendered as text); absent optional columns are all None.
    pub(crate) fn strings(
        &self,
        name: &str,
        required: bool,
    ) -> Result<Vec<Option<String>>, DatasetError> {
        let Some(c) = self.get(name, required)? else {
            return Ok(vec![None; self.df.height()]);
        };
        let s = c
            .as_materialized_series()
            .cast(&DataType::String)
            .map_err(|_| col_err(self.path, name, "expected text"))?;
        let s = s.str().expect("cast");
        Ok(s.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// An integer column; CSV text is parsed per row.
    pub(crate) fn ints(
        &self,
        name: &str,
        required: bool,
    ) -> Result<Vec<Option<i64>>, DatasetError> {
        let Some(c) = self.get(name, required)? else {
            return Ok(vec![None; self.df.height()]);
        };
        let s = c.as_materialized_series();
        if s.dtype() == &DataType::String {
            let ca = s.str().expect("string");
            return ca
                .iter()
                .enumerate()
                .map(|(i, v)| match v.map(str::trim) {
                    None | Some("") => Ok(None),
                    Some(t) => t.parse::<i64>().map(Some).map_err(|_| {
                        col_err(
                            self.path,
                            name,
                            self.row(i, format!("'{t}' is not an integer")),
                        )
                    }),
                })
                .collect();
        }
        if !s.dtype().is_integer() {
            return Err(col_err(
                self.path,
                name,
                format!("expected integers, found {}", s.dtype()),
            ));
        }
        let cast = s.strict_cast(&DataType::Int64).map_err(|_| {
            col_err(
                self.path,
                name,
                "value does not fit a signed 64-bit integer",
            )
        })?;
        Ok(cast.i64().expect("cast").iter().collect())
    }

    /// A floating-point column; CSV text is parsed per row.
    pub(crate) fn floats(
        &self,
        name: &str,
        required: bool,
    ) -> Result<Vec<Option<f64>>, DatasetError> {
        let Some(c) = self.get(name, required)? else {
            return Ok(vec![None; self.df.height()]);
        };
        let s = c.as_materialized_series();
        if s.dtype() == &DataType::String {
            let ca = s.str().expect("string");
            return ca
                .iter()
                .enumerate()
                .map(|(i, v)| match v.map(str::trim) {
                    None | Some("") => Ok(None),
                    Some(t) => t.parse::<f64>().map(Some).map_err(|_| {
                        col_err(
                            self.path,
                            name,
                            self.row(i, format!("'{t}' is not a number")),
                        )
                    }),
                })
                .collect();
        }
        let cast = s.strict_cast(&DataType::Float64).map_err(|_| {
            col_err(
                self.path,
                name,
                format!("expected numbers, found {}", s.dtype()),
            )
        })?;
        Ok(cast.f64().expect("cast").iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, host: &str, role: Role, start: i64) -> WindowRow {
        WindowRow {
            migration_id: id.into(),
            host: host.into(),
            role,
            start_utc_ns: start,
            end_utc_ns: start + 30_000_000_000,
            v_mig_bytes: 1 << 30,
            workload: Some("h2".into()),
            vm: None,
            vm_mem_bytes: Some(1 << 30),
        }
    }

    #[test]
    fn windows_round_trip_parquet_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            w("m1", "a", Role::Source, 1_700_000_000_000_000_010),
            w("m1", "b", Role::Destination, 1_700_000_000_000_000_012),
        ];
        for name in ["w.parquet", "w.csv"] {
            let p = dir.path().join(name);
            write_windows(&p, &rows).unwrap();
            assert_eq!(read_windows(&p).unwrap(), rows, "{name}");
        }
    }

    #[test]
    fn csv_errors_name_file_row_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.csv");
        let head = "migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\n";
        let cases = [
            (
                "m1,a,source,1,2,3\nm1,b,dest,1,2,3\n",
                "row 2 (line 3): 'dest' is not",
            ),
            ("m1,a,source,5,5,3\n", "end 5 is not after start 5"),
            ("m1,a,source,1,x2,3\n", "'x2' is not an integer"),
            ("m1,a,source,1,2,-3\n", "-3 is negative"),
            ("m1,,source,1,2,3\n", "column 'host': row 1 (line 2): empty"),
        ];
        for (body, want) in cases {
            std::fs::write(&p, format!("{head}{body}")).unwrap();
            let err = read_windows(&p).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("bad.csv"), "{err}");
        }
        std::fs::write(
            &p,
            "migration_id,host,role,start_utc_ns,end_utc_ns\nm,a,source,1,2\n",
        )
        .unwrap();
        let err = read_windows(&p).unwrap_err().to_string();
        assert!(err.contains("'v_mig_bytes': missing"), "{err}");
    }

    #[test]
    fn seconds_and_duplicate_windows_are_refused_with_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.csv");
        let head = "migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\n";
        let t = 1_700_000_000_000_000_000i64;
        let cases = [
            (
                "m1,a,source,1700000000,1700000030,3\n".to_string(),
                "row 0: column 'start_utc_ns': 1700000000 is not ns",
            ),
            (
                format!("m1,a,source,{t},{},3\nm1,a,source,{t},{},3\n", t + 1, t + 1),
                "row 1: duplicate key (migration_id=m1, role=source), first at row 0",
            ),
        ];
        for (body, want) in cases {
            std::fs::write(&p, format!("{head}{body}")).unwrap();
            let err = read_windows(&p).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("w.csv"), "{err}");
            assert!(err.contains("migration_windows"), "{err}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the numbers, the reader either refuses the file or returns windows
            /// that keep the dataset's rules; it never panics.
            #[test]
            fn csv_reader_returns_only_rule_abiding_windows(
                rows in proptest::collection::vec(
                    (0u8..3, any::<bool>(), prop_oneof![any::<i64>(), 1_600_000_000_000_000_000i64..1_800_000_000_000_000_000], -5i64..1_000_000_000_000, -3i64..1_000_000),
                    0..6,
                )
            ) {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("w.csv");
                let mut text = String::from("migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\n");
                for (id, src, start, len, v) in &rows {
                    let role = if *src { "source" } else { "destination" };
                    text += &format!("m{id},h,{role},{start},{},{v}\n", start.saturating_add(*len));
                }
                std::fs::write(&p, text).unwrap();
                if let Ok(back) = read_windows(&p) {
                    let mut keys = std::collections::HashSet::new();
                    for w in &back {
                        prop_assert!(w.end_utc_ns > w.start_utc_ns);
                        prop_assert!((crate::check::UTC_NS_MIN..crate::check::UTC_NS_MAX).contains(&w.start_utc_ns));
                        prop_assert!(keys.insert((w.migration_id.clone(), w.role)));
                    }
                }
            }
        }
    }
}
