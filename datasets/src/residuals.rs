//! The residuals dataset written beside every coefficient file (`v<N>.residuals.parquet`):
//! one row per training row, so a fit can be inspected and audited row by row.
//!
//! Columns: `input_file` (u32, index into the coefficient file's provenance inputs),
//! `input_row` (u64, 0-based data row within that file), `observed`, `fitted`, `residual`
//! (= observed - fitted) and `cv_predicted` (out-of-fold prediction, null without
//! cross-validation), all f64 in the target's unit, which the key-value metadata names
//! (`migwatt.target`, `migwatt.unit`) together with `migwatt.model_id`.

use std::borrow::Cow;
use std::path::Path;

use polars::prelude::*;

use crate::io::{
    sync_dir, DatasetError, DatasetKind, SchemaVersion, KEY_DATASET, KEY_SCHEMA_VERSION,
};

/// The residuals dataset kind and version.
pub const RESIDUALS: DatasetKind = DatasetKind {
    name: "residuals",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// Residuals of one fit, column by column (all the same length). Columns are borrowed or
/// owned: owned ones go into the file without another copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Residuals<'a> {
    /// Model id of the coefficient file.
    pub model_id: String,
    /// Target column name.
    pub target: String,
    /// Target unit.
    pub unit: String,
    /// Index of each row's input file.
    pub input_file: Cow<'a, [u32]>,
    /// Row within that file (0-based).
    pub input_row: Cow<'a, [u64]>,
    /// Observed target.
    pub observed: Cow<'a, [f64]>,
    /// Fitted target.
    pub fitted: Cow<'a, [f64]>,
    /// Out-of-fold prediction, if cross-validated.
    pub cv_predicted: Option<Cow<'a, [f64]>>,
}

/// A column from borrowed (copied) or owned (moved) values.
fn column<T>(name: &str, values: Cow<'_, [T]>) -> Column
where
    T: Clone,
    Series: NamedFrom<Vec<T>, [T]> + for<'s> NamedFrom<&'s [T], [T]>,
{
    match values {
        Cow::Owned(v) => Column::new(name.into(), v),
        Cow::Borrowed(v) => Column::new(name.into(), v),
    }
}

/// Write the residuals atomically (temp file, fsync, rename).
pub fn write_residuals(path: &Path, r: Residuals<'_>) -> Result<(), DatasetError> {
    let n = r.observed.len();
    let err = |e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    };
    let residual: Vec<f64> = r
        .observed
        .iter()
        .zip(r.fitted.iter())
        .map(|(o, f)| o - f)
        .collect();
    let cv: Column = match r.cv_predicted {
        Some(v) => column("cv_predicted", v),
        None => Column::full_null("cv_predicted".into(), n, &DataType::Float64),
    };
    let mut df = DataFrame::new(
        n,
        vec![
            column("input_file", r.input_file),
            column("input_row", r.input_row),
            column("observed", r.observed),
            column("fitted", r.fitted),
            Column::new("residual".into(), residual),
            cv,
        ],
    )
    .map_err(err)?;
    // Residuals are incompressible floats and nobody filters a residuals file by value:
    // no compression and no min/max statistics keep a million-row fit from spending most of
    // its time encoding them.
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DatasetError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DatasetError::Io { path: p, source }
    };
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let kv = vec![
            (KEY_DATASET.to_string(), RESIDUALS.name.to_string()),
            (
                KEY_SCHEMA_VERSION.to_string(),
                RESIDUALS.version.to_string(),
            ),
            ("migwatt.model_id".to_string(), r.model_id.clone()),
            ("migwatt.target".to_string(), r.target.clone()),
            ("migwatt.unit".to_string(), r.unit.clone()),
        ];
        ParquetWriter::new(&mut file)
            .with_compression(ParquetCompression::Uncompressed)
            .with_statistics(StatisticsOptions {
                min_value: false,
                max_value: false,
                distinct_count: false,
                null_count: true,
                binary_statistics_truncate_length: None,
            })
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(kv)))
            .finish(&mut df)
            .map_err(|e| DatasetError::Polars {
                path: tmp.clone(),
                source: e,
            })?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Read back the residual column of a residuals file (for tests and notebooks' sanity).
pub fn read_residual_column(path: &Path) -> Result<Vec<f64>, DatasetError> {
    let df = crate::io::read_parquet_checked(path, RESIDUALS)?;
    let c = crate::io::column(&df, "residual", path)?;
    let s = c
        .as_materialized_series()
        .cast(&DataType::Float64)
        .map_err(|e| DatasetError::Polars {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(s.f64()
        .expect("cast")
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        let r = Residuals {
            model_id: "m/v1/x".into(),
            target: "e_mig_j".into(),
            unit: "J".into(),
            input_file: vec![0, 0].into(),
            input_row: vec![0, 1].into(),
            observed: vec![1.0, 2.0].into(),
            fitted: [0.5, 2.5][..].into(),
            cv_predicted: None,
        };
        write_residuals(&p, r).unwrap();
        assert_eq!(read_residual_column(&p).unwrap(), vec![0.5, -0.5]);
    }
}
