//! Candidate VMs for prediction and ranking (`migwatt predict --vms`, `migwatt rank`): one row
//! per VM, read from Parquet or CSV into columns (a million rows read in one pass).
//!
//! Columns (SI units, in the names):
//! - `vm` (string, required): the VM's name;
//! - `vm_mem_bytes` (number, required): guest memory, or the data its first round sends;
//! - `dirty_rate_bytes_per_s` (number, required): the dirtying rate D;
//! - `rate_bytes_per_s` (number, optional): transmission rate R (else the command's `--rate`);
//! - `downtime_limit_s` (number, optional): QEMU downtime limit (else `--downtime-limit`);
//! - `hypervisor` (string, optional): `xen3`, `xen4` or `qemu` (else `--hypervisor`).

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::io::{col_err, DatasetError, DatasetKind, SchemaVersion};

/// The candidates dataset kind and version.
pub const CANDIDATES: DatasetKind = DatasetKind {
    name: "candidates",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// Strings packed in one buffer (a million names without a million allocations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    buf: String,
    ends: Vec<usize>,
}

impl Names {
    /// Append a name.
    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }
    /// The i-th name.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
    /// Number of names.
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Candidate VMs as columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    /// VM names.
    pub vm: Names,
    /// Guest memory, bytes.
    pub vm_mem_bytes: Vec<f64>,
    /// Dirtying rate, bytes/s.
    pub dirty_rate_bytes_per_s: Vec<f64>,
    /// Transmission rate per VM, bytes/s, when the file has the column.
    pub rate_bytes_per_s: Option<Vec<f64>>,
    /// Downtime limit per VM, s, when the file has the column.
    pub downtime_limit_s: Option<Vec<f64>>,
    /// Hypervisor per VM, when the file has the column.
    pub hypervisor: Option<Vec<String>>,
}

impl Candidates {
    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.vm_mem_bytes.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.vm_mem_bytes.is_empty()
    }
}

fn f64_col(df: &DataFrame, name: &str, path: &Path) -> Result<Option<Vec<f64>>, DatasetError> {
    let Ok(c) = df.column(name) else {
        return Ok(None);
    };
    let s = c
        .as_materialized_series()
        .cast(&DataType::Float64)
        .map_err(|_| col_err(path, name, "expected numbers"))?;
    let ca = s
        .f64()
        .map_err(|_| col_err(path, name, "expected numbers"))?;
    let out: Vec<f64> = match ca.cont_slice() {
        Ok(sl) => sl.to_vec(),
        Err(_) => {
            let mut v = Vec::with_capacity(ca.len());
            for (row, x) in ca.iter().enumerate() {
                v.push(x.ok_or_else(|| {
                    col_err(path, name, format!("row {row}: null, expected a number"))
                })?);
            }
            v
        }
    };
    if let Some(row) = out.iter().position(|x| !x.is_finite() || *x < 0.0) {
        return Err(col_err(
            path,
            name,
            format!(
                "row {row}: {} is not a finite non-negative number",
                out[row]
            ),
        ));
    }
    Ok(Some(out))
}

fn str_col<F: FnMut(&str)>(
    df: &DataFrame,
    name: &str,
    path: &Path,
    mut f: F,
) -> Result<bool, DatasetError> {
    let Ok(c) = df.column(name) else {
        return Ok(false);
    };
    let s = c
        .as_materialized_series()
        .cast(&DataType::String)
        .map_err(|_| col_err(path, name, "expected strings"))?;
    let ca = s
        .str()
        .map_err(|_| col_err(path, name, "expected strings"))?;
    for (row, x) in ca.iter().enumerate() {
        f(x.ok_or_else(|| col_err(path, name, format!("row {row}: null, expected a string")))?);
    }
    Ok(true)
}

/// Read candidates from a `.parquet` or `.csv` file.
pub fn read_candidates(path: &Path) -> Result<Candidates, DatasetError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let df = match ext.as_deref() {
        Some("parquet") => {
            let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
            ParquetReader::new(file)
                .finish()
                .map_err(|e| DatasetError::polars(path, e))?
        }
        Some("csv") => CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| DatasetError::polars(path, e))?,
        _ => {
            return Err(col_err(
                path,
                "-",
                "expected a .parquet or .csv file of candidate VMs",
            ))
        }
    };
    let need = |name: &str, v: Option<Vec<f64>>| {
        v.ok_or_else(|| {
            col_err(
                path,
                name,
                "missing (required: vm, vm_mem_bytes, dirty_rate_bytes_per_s)",
            )
        })
    };
    let mut out = Candidates {
        vm_mem_bytes: need("vm_mem_bytes", f64_col(&df, "vm_mem_bytes", path)?)?,
        dirty_rate_bytes_per_s: need(
            "dirty_rate_bytes_per_s",
            f64_col(&df, "dirty_rate_bytes_per_s", path)?,
        )?,
        rate_bytes_per_s: f64_col(&df, "rate_bytes_per_s", path)?,
        downtime_limit_s: f64_col(&df, "downtime_limit_s", path)?,
        ..Candidates::default()
    };
    let mut names = Names::default();
    if !str_col(&df, "vm", path, |s| names.push(s))? {
        return Err(col_err(
            path,
            "vm",
            "missing (required: vm, vm_mem_bytes, dirty_rate_bytes_per_s)",
        ));
    }
    out.vm = names;
    let mut hv = Vec::new();
    if str_col(&df, "hypervisor", path, |s| hv.push(s.to_string()))? {
        out.hypervisor = Some(hv);
    }
    Ok(out)
}

/// Write candidates to Parquet atomically (for tests and benchmarks).
pub fn write_candidates_file(path: &Path, c: &Candidates) -> Result<(), DatasetError> {
    let n = c.len();
    let mut cols = vec![
        Column::new("vm".into(), (0..n).map(|i| c.vm.get(i)).collect::<Vec<_>>()),
        Column::new("vm_mem_bytes".into(), c.vm_mem_bytes.clone()),
        Column::new(
            "dirty_rate_bytes_per_s".into(),
            c.dirty_rate_bytes_per_s.clone(),
        ),
    ];
    if let Some(r) = &c.rate_bytes_per_s {
        cols.push(Column::new("rate_bytes_per_s".into(), r.clone()));
    }
    if let Some(r) = &c.downtime_limit_s {
        cols.push(Column::new("downtime_limit_s".into(), r.clone()));
    }
    if let Some(h) = &c.hypervisor {
        cols.push(Column::new("hypervisor".into(), h.clone()));
    }
    let mut df = DataFrame::new(n, cols).map_err(|e| DatasetError::polars(path, e))?;
    crate::io::write_parquet_atomic(&mut df, path, CANDIDATES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Candidates {
        let mut vm = Names::default();
        for n in ["a", "bb", ""] {
            vm.push(n);
        }
        Candidates {
            vm,
            vm_mem_bytes: vec![1e9, 2e9, 3e9],
            dirty_rate_bytes_per_s: vec![1e6, 0.0, 5e7],
            rate_bytes_per_s: Some(vec![1e8, 1e8, 5e7]),
            downtime_limit_s: None,
            hypervisor: Some(vec!["qemu".into(), "xen3".into(), "xen4".into()]),
        }
    }

    #[test]
    fn candidates_round_trip_parquet_and_read_csv() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.parquet");
        write_candidates_file(&p, &sample()).unwrap();
        assert_eq!(read_candidates(&p).unwrap(), sample());
        let csv = dir.path().join("c.csv");
        std::fs::write(
            &csv,
            "vm,vm_mem_bytes,dirty_rate_bytes_per_s\nx,100,2\ny,200,3\n",
        )
        .unwrap();
        let c = read_candidates(&csv).unwrap();
        assert_eq!(c.vm.get(1), "y");
        assert_eq!(c.dirty_rate_bytes_per_s, vec![2.0, 3.0]);
        assert_eq!(c.rate_bytes_per_s, None);
    }

    #[test]
    fn bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("c.csv");
        std::fs::write(
            &csv,
            "vm,vm_mem_bytes,dirty_rate_bytes_per_s\nx,100,2\ny,-5,3\n",
        )
        .unwrap();
        let e = read_candidates(&csv).unwrap_err().to_string();
        assert!(e.contains("vm_mem_bytes") && e.contains("row 1"), "{e}");
        std::fs::write(&csv, "vm,vm_mem_bytes\nx,100\n").unwrap();
        let e = read_candidates(&csv).unwrap_err().to_string();
        assert!(
            e.contains("dirty_rate_bytes_per_s") && e.contains("missing"),
            "{e}"
        );
    }
}
