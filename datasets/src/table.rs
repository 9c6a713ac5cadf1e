//! Generic column loading for model fitting: one or several Parquet or CSV files (by
//! extension) or hive-partitioned folders (`key=value` path components become string
//! columns), filtered by simple column expressions, with every kept row traceable to its
//! file and row for error messages.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::io::{
    parquet_files, DatasetError, DatasetKind, SchemaVersion, KEY_DATASET, KEY_SCHEMA_VERSION,
};
use crate::Origins;

/// Errors of loading a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Reading or discovering files failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A filter expression does not parse.
    #[error("filter '{expr}': {problem} (expected COLUMN OP VALUE with OP one of = != < <= > >=, e.g. workload=h2)")]
    BadFilter {
        /// The expression.
        expr: String,
        /// What is wrong.
        problem: String,
    },
    /// A required column is missing from a file.
    #[error("{path}: no column '{column}' (columns: {available})")]
    MissingColumn {
        /// File.
        path: PathBuf,
        /// Column.
        column: String,
        /// Columns the file has.
        available: String,
    },
    /// A column has a type that cannot be used.
    #[error("{path}: column '{column}' is {dtype}, expected {expected}")]
    ColumnType {
        /// File.
        path: PathBuf,
        /// Column.
        column: String,
        /// Its type.
        dtype: String,
        /// What was expected.
        expected: String,
    },
    /// The filters left no rows.
    #[error("filter {filters} matched none of the {rows} rows read from {files} file(s)")]
    FilterMatchedNothing {
        /// The filters, joined with ` and `.
        filters: String,
        /// Rows read.
        rows: usize,
        /// Files read.
        files: usize,
    },
    /// A file of a type that cannot be read.
    #[error("{path}: unsupported file type (expected .parquet or .csv)")]
    Unsupported {
        /// File.
        path: PathBuf,
    },
    /// No input given.
    #[error("no input files given")]
    NoInput,
}

fn polars_err(path: &Path, source: PolarsError) -> TableError {
    TableError::Dataset(DatasetError::Polars {
        path: path.to_path_buf(),
        source,
    })
}

/// Comparison operator of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=` (or `==`)
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A row filter `COLUMN OP VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: FilterOp,
    /// Value as written (compared as a number when the column is numeric).
    pub value: String,
}

impl Filter {
    /// Parse `workload=h2`, `round>=2`, `hypervisor != xen`.
    pub fn parse(expr: &str) -> Result<Filter, TableError> {
        let bad = |problem: &str| TableError::BadFilter {
            expr: expr.to_string(),
            problem: problem.to_string(),
        };
        let ops = [
            ("!=", FilterOp::Ne),
            ("<=", FilterOp::Le),
            (">=", FilterOp::Ge),
            ("==", FilterOp::Eq),
            ("=", FilterOp::Eq),
            ("<", FilterOp::Lt),
            (">", FilterOp::Gt),
        ];
        let (at, tok, op) = ops
            .iter()
            .filter_map(|(t, o)| expr.find(t).map(|i| (i, *t, *o)))
            .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
            .ok_or_else(|| bad("no operator"))?;
        let column = expr[..at].trim();
        let value = expr[at + tok.len()..].trim();
        if column.is_empty() {
            return Err(bad("no column name"));
        }
        if value.is_empty() {
            return Err(bad("no value"));
        }
        if value.starts_with(['=', '<', '>', '!']) {
            return Err(bad("unknown operator"));
        }
        Ok(Filter {
            column: column.to_string(),
            op,
            value: value.trim_matches(['"', '\'']).to_string(),
        })
    }

    fn keep_ord(&self, ord: Option<std::cmp::Ordering>) -> bool {
        use std::cmp::Ordering::*;
        match (self.op, ord) {
            (_, None) => self.op == FilterOp::Ne,
            (FilterOp::Eq, Some(o)) => o == Equal,
            (FilterOp::Ne, Some(o)) => o != Equal,
            (FilterOp::Lt, Some(o)) => o == Less,
            (FilterOp::Le, Some(o)) => o != Greater,
            (FilterOp::Gt, Some(o)) => o == Greater,
            (FilterOp::Ge, Some(o)) => o != Less,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FilterOp::Eq => "=",
            FilterOp::Ne => "!=",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
        };
        write!(f, "{}{op}{}", self.column, self.value)
    }
}

/// One input file with its hive partition values.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFile {
    /// Path.
    pub path: PathBuf,
    /// `key=value` components of its path below the folder it was found in.
    pub partitions: Vec<(String, String)>,
}

/// Expand the given paths: files stay, folders become their Parquet files (hive layout).
pub fn resolve_inputs(paths: &[PathBuf]) -> Result<Vec<InputFile>, TableError> {
    if paths.is_empty() {
        return Err(TableError::NoInput);
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let files = parquet_files(p)?;
            if files.is_empty() {
                return Err(DatasetError::Empty { path: p.clone() }.into());
            }
            for f in files {
                let rel = f.strip_prefix(p).unwrap_or(&f);
                let partitions = rel
                    .parent()
                    .into_iter()
                    .flat_map(|d| d.components())
                    .filter_map(|c| {
                        let s = c.as_os_str().to_str()?;
                        let (k, v) = s.split_once('=')?;
                        Some((k.to_string(), v.to_string()))
                    })
                    .collect();
                out.push(InputFile {
                    path: f,
                    partitions,
                });
            }
        } else {
            std::fs::metadata(p).map_err(|e| DatasetError::Io {
                path: p.clone(),
                source: e,
            })?;
            out.push(InputFile {
                path: p.clone(),
                partitions: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// A source file of a table and how many of its rows were kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// Path.
    pub path: PathBuf,
    /// Rows in the file.
    pub rows: usize,
    /// Rows that passed the filters.
    pub rows_kept: usize,
    /// Parquet key-value metadata (empty for CSV).
    pub metadata: Vec<(String, String)>,
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions<'a> {
    /// If set, Parquet files with migwatt metadata must be this kind, same major version.
    pub kind: Option<DatasetKind>,
    /// Row filters, ANDed.
    pub filters: &'a [Filter],
    /// Columns every file must have.
    pub required: &'a [&'a str],
    /// Columns loaded when present.
    pub optional: &'a [&'a str],
}

struct Part {
    file: usize,
    df: DataFrame,
    /// The file rows kept, as runs (one run when nothing was filtered out).
    origins: Origins,
}

/// Rows loaded from one or several files, kept per file (files may differ in column types).
pub struct Table {
    parts: Vec<Part>,
    files: Vec<SourceFile>,
    offsets: Vec<usize>,
}

/// Load the requested columns of every input, apply the filters, and refuse an empty result.
pub fn load_table(inputs: &[InputFile], opts: &LoadOptions<'_>) -> Result<Table, TableError> {
    if inputs.is_empty() {
        return Err(TableError::NoInput);
    }
    let mut parts = Vec::new();
    let mut files = Vec::new();
    let mut rows_read = 0;
    // A known kind brings its rules (values, ns timestamps, unique keys across every file),
    // checked on the columns loaded; its key columns are loaded for that when present.
    let mut rules = opts
        .kind
        .and_then(crate::check::Rules::of)
        .map(crate::check::Rules::lenient);
    let mut optional: Vec<&str> = opts.optional.to_vec();
    if let Some(spec) = opts.kind.and_then(|k| crate::check::spec_of(k.name)) {
        optional.extend(spec.key.iter().copied());
    }
    let read_opts = LoadOptions {
        optional: &optional,
        ..opts.clone()
    };
    for (fi, input) in inputs.iter().enumerate() {
        let path = &input.path;
        let (df, metadata) = read_file(input, &read_opts)?;
        if let Some(rules) = &mut rules {
            let host = input
                .partitions
                .iter()
                .find(|(k, _)| k == "host")
                .map(|(_, v)| v.as_str());
            rules.check(path, &df, host)?;
        }
        let rows = df.height();
        rows_read += rows;
        let mut origins = Origins::new();
        let (df, kept) = if opts.filters.is_empty() {
            origins.push_run(fi as u32, 0, rows as u64);
            (df, rows)
        } else {
            let mut mask = vec![true; rows];
            for f in opts.filters {
                apply_filter(&df, f, path, &mut mask)?;
            }
            for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                origins.push(fi as u32, i as u64);
            }
            let kept = origins.len();
            let df = if kept == rows {
                df
            } else {
                df.filter(&BooleanChunked::new("mask".into(), &mask))
                    .map_err(|e| polars_err(path, e))?
            };
            (df, kept)
        };
        files.push(SourceFile {
            path: path.clone(),
            rows,
            rows_kept: kept,
            metadata,
        });
        parts.push(Part {
            file: fi,
            df,
            origins,
        });
    }
    let total: usize = files.iter().map(|f| f.rows_kept).sum();
    if total == 0 && !opts.filters.is_empty() {
        return Err(TableError::FilterMatchedNothing {
            filters: opts
                .filters
                .iter()
                .map(|f| format!("'{f}'"))
                .collect::<Vec<_>>()
                .join(" and "),
            rows: rows_read,
            files: files.len(),
        });
    }
    let mut offsets = Vec::with_capacity(parts.len());
    let mut acc = 0;
    for p in &parts {
        offsets.push(acc);
        acc += p.df.height();
    }
    Ok(Table {
        parts,
        files,
        offsets,
    })
}

fn read_file(
    input: &InputFile,
    opts: &LoadOptions<'_>,
) -> Result<(DataFrame, Vec<(String, String)>), TableError> {
    let path = &input.path;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let part_names: Vec<&str> = input.partitions.iter().map(|(k, _)| k.as_str()).collect();
    let wanted = |available: &[String]| -> Result<Vec<String>, TableError> {
        let mut cols = Vec::new();
        let filter_cols = opts.filters.iter().map(|f| f.column.as_str());
        for c in opts.required.iter().copied().chain(filter_cols) {
            if available.iter().any(|a| a == c) {
                if !cols.iter().any(|x| x == c) {
                    cols.push(c.to_string());
                }
            } else if !part_names.contains(&c) {
                return Err(TableError::MissingColumn {
                    path: path.clone(),
                    column: c.to_string(),
                    available: available.join(", "),
                });
            }
        }
        for c in opts.optional {
            if available.iter().any(|a| a == c) && !cols.iter().any(|x| x == c) {
                cols.push(c.to_string());
            }
        }
        Ok(cols)
    };
    let (mut df, metadata) = match ext.as_deref() {
        Some("parquet") => {
            let file = File::open(path).map_err(|e| DatasetError::Io {
                path: path.clone(),
                source: e,
            })?;
            let mut reader = ParquetReader::new(file);
            let meta = reader
                .get_metadata()
                .map_err(|e| polars_err(path, e))?
                .clone();
            let kv: Vec<(String, String)> = meta
                .key_value_metadata
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| Some((e.key, e.value?)))
                .collect();
            if let Some(kind) = opts.kind {
                check_kind(path, &kv, kind)?;
            }
            let schema = reader.schema().map_err(|e| polars_err(path, e))?;
            let available: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
            let cols = wanted(&available)?;
            let df = reader
                .with_columns(Some(cols))
                .finish()
                .map_err(|e| polars_err(path, e))?;
            (df, kv)
        }
        Some("csv") => {
            let df = CsvReadOptions::default()
                .with_has_header(true)
                .try_into_reader_with_file_path(Some(path.clone()))
                .and_then(|r| r.finish())
                .map_err(|e| polars_err(path, e))?;
            let available: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            let cols = wanted(&available)?;
            let df = df.select(cols).map_err(|e| polars_err(path, e))?;
            (df, Vec::new())
        }
        _ => return Err(TableError::Unsupported { path: path.clone() }),
    };
    let height = df.height();
    for (k, v) in &input.partitions {
        if df.get_column_index(k).is_none() {
            df.with_column(Column::new(k.as_str().into(), vec![v.as_str(); height]))
                .map_err(|e| polars_err(path, e))?;
        }
    }
    Ok((df, metadata))
}

fn check_kind(path: &Path, kv: &[(String, String)], kind: DatasetKind) -> Result<(), TableError> {
    let get = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let Some(found) = get(KEY_DATASET) {
        if found != kind.name {
            return Err(DatasetError::WrongKind {
                path: path.to_path_buf(),
                expected: kind.name.into(),
                found,
            }
            .into());
        }
    }
    if let Some(v) = get(KEY_SCHEMA_VERSION) {
        if SchemaVersion::parse(&v).is_none_or(|p| p.major != kind.version.major) {
            return Err(DatasetError::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: kind.name.into(),
                found: v,
                supported: format!("{}.x", kind.version.major),
            }
            .into());
        }
    }
    Ok(())
}

fn apply_filter(
    df: &DataFrame,
    f: &Filter,
    path: &Path,
    mask: &mut [bool],
) -> Result<(), TableError> {
    let col = df
        .column(&f.column)
        .map_err(|_| TableError::MissingColumn {
            path: path.to_path_buf(),
            column: f.column.clone(),
            available: df
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let dtype = col.dtype().clone();
    if dtype.is_primitive_numeric() {
        let want: f64 = f.value.parse().map_err(|_| TableError::BadFilter {
            expr: f.to_string(),
            problem: format!(
                "column '{}' is numeric ({dtype}) but '{}' is not a number",
                f.column, f.value
            ),
        })?;
        let s = col
            .as_materialized_series()
            .cast(&DataType::Float64)
            .map_err(|e| polars_err(path, e))?;
        for (m, v) in mask.iter_mut().zip(s.f64().expect("cast").iter()) {
            *m &= f.keep_ord(v.and_then(|v| v.partial_cmp(&want)));
        }
    } else if matches!(dtype, DataType::String | DataType::Boolean) {
        let s = col
            .as_materialized_series()
            .cast(&DataType::String)
            .map_err(|e| polars_err(path, e))?;
        let want_num = f.value.parse::<f64>().ok();
        for (m, v) in mask.iter_mut().zip(s.str().expect("cast").iter()) {
            let ord = v.map(|v| match (want_num, v.parse::<f64>().ok()) {
                (Some(w), Some(x)) if f.op != FilterOp::Eq && f.op != FilterOp::Ne => {
                    x.partial_cmp(&w).unwrap_or(std::cmp::Ordering::Less)
                }
                _ => v.cmp(f.value.as_str()),
            });
            *m &= f.keep_ord(ord);
        }
    } else {
        return Err(TableError::ColumnType {
            path: path.to_path_buf(),
            column: f.column.clone(),
            dtype: dtype.to_string(),
            expected: "a number, string or boolean to filter on".into(),
        });
    }
    Ok(())
}

impl Table {
    /// Rows kept.
    pub fn n_rows(&self) -> usize {
        self.parts.iter().map(|p| p.df.height()).sum()
    }

    /// The source files, in input order.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Which kept rows pass `filters` (for filters that must apply after rows were related,
    /// e.g. a round to its predecessor); the columns must have been loaded.
    pub fn mask(&self, filters: &[Filter]) -> Result<Vec<bool>, TableError> {
        let mut out = Vec::with_capacity(self.n_rows());
        for p in &self.parts {
            let mut m = vec![true; p.df.height()];
            for f in filters {
                apply_filter(&p.df, f, &self.files[p.file].path, &mut m)?;
            }
            out.extend(m);
        }
        Ok(out)
    }

    /// Whether every file has the column (or the partition).
    pub fn has_column(&self, name: &str) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .iter()
                .all(|p| p.df.get_column_index(name).is_some())
    }

    /// A numeric (or boolean) column as f64; nulls become NaN.
    pub fn f64_column(&self, name: &str) -> Result<Vec<f64>, TableError> {
        let mut out = Vec::with_capacity(self.n_rows());
        for p in &self.parts {
            let path = &self.files[p.file].path;
            let col = self.col(p, name)?;
            let dtype = col.dtype();
            if !(dtype.is_primitive_numeric() || dtype == &DataType::Boolean) {
                return Err(TableError::ColumnType {
                    path: path.clone(),
                    column: name.to_string(),
                    dtype: dtype.to_string(),
                    expected: "numbers".into(),
                });
            }
            let s = col
                .as_materialized_series()
                .cast(&DataType::Float64)
                .map_err(|e| polars_err(path, e))?;
            let ca = s.f64().expect("cast");
            for arr in ca.downcast_iter() {
                if arr.validity().is_none_or(|v| v.unset_bits() == 0) {
                    out.extend_from_slice(arr.values().as_slice());
                } else {
                    out.extend(arr.iter().map(|v| v.copied().unwrap_or(f64::NAN)));
                }
            }
        }
        Ok(out)
    }

    /// [`Table::f64_column`] without a copy when the column already is one run of f64
    /// values without nulls in a single file (the common case of a large training file).
    pub fn f64_column_cow(&self, name: &str) -> Result<std::borrow::Cow<'_, [f64]>, TableError> {
        if let [p] = self.parts.as_slice() {
            let col = self.col(p, name)?;
            if col.dtype() == &DataType::Float64 {
                if let Ok(ca) = col.as_materialized_series().f64() {
                    if let Ok(values) = ca.cont_slice() {
                        return Ok(std::borrow::Cow::Borrowed(values));
                    }
                }
            }
        }
        self.f64_column(name).map(std::borrow::Cow::Owned)
    }

    /// A column as strings (numbers are formatted); nulls are None.
    pub fn str_column(&self, name: &str) -> Result<Vec<Option<String>>, TableError> {
        let mut out = Vec::with_capacity(self.n_rows());
        for p in &self.parts {
            let path = &self.files[p.file].path;
            let s = self
                .col(p, name)?
                .as_materialized_series()
                .cast(&DataType::String)
                .map_err(|e| polars_err(path, e))?;
            out.extend(s.str().expect("cast").iter().map(|v| v.map(str::to_string)));
        }
        Ok(out)
    }

    /// Distinct non-null values of a column (sorted), or empty when a file lacks it.
    pub fn distinct_strings(&self, name: &str) -> Vec<String> {
        if !self.has_column(name) {
            return Vec::new();
        }
        let mut v: Vec<String> = self
            .str_column(name)
            .map(|c| c.into_iter().flatten().collect())
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }

    /// The file and the 0-based row within it (before filtering) of kept row `row`.
    pub fn origin(&self, row: usize) -> Option<(&Path, u64)> {
        let k = self.offsets.partition_point(|&o| o <= row).checked_sub(1)?;
        let p = &self.parts[k];
        let (_, r) = p.origins.get(row - self.offsets[k])?;
        Some((self.files[p.file].path.as_path(), r))
    }

    /// `file.parquet row 17` (1-based data row, header not counted) for error messages.
    pub fn row_label(&self, row: usize) -> String {
        match self.origin(row) {
            Some((p, r)) => format!("{} row {}", p.display(), r + 1),
            None => format!("row {row}"),
        }
    }

    /// Per kept row: index of its file in [`Table::files`] and its 0-based row in the file.
    pub fn origins(&self) -> Origins {
        let mut all = Origins::new();
        for p in &self.parts {
            all.extend(&p.origins);
        }
        all
    }

    fn col<'a>(&self, p: &'a Part, name: &str) -> Result<&'a Column, TableError> {
        p.df.column(name).map_err(|_| TableError::MissingColumn {
            path: self.files[p.file].path.clone(),
            column: name.to_string(),
            available: p
                .df
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Write plain f64 columns as a Parquet file (atomically), e.g. a power trace for the
/// emulator or a table for `train linear`.
pub fn write_f64_columns(path: &Path, columns: &[(&str, Vec<f64>)]) -> Result<(), DatasetError> {
    let height = columns.first().map_or(0, |c| c.1.len());
    let cols = columns
        .iter()
        .map(|(n, v)| Column::new((*n).into(), v.clone()))
        .collect();
    let mut df = DataFrame::new(height, cols).map_err(|e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::io::write_parquet_atomic(&mut df, path, TABLE)
}

/// Kind written by [`write_f64_columns`]: a plain table with no fixed schema.
pub const TABLE: DatasetKind = DatasetKind {
    name: "table",
    version: crate::io::SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        let f = Filter::parse("workload=h2").unwrap();
        assert_eq!(
            (f.column.as_str(), f.op, f.value.as_str()),
            ("workload", FilterOp::Eq, "h2")
        );
        assert_eq!(Filter::parse("round >= 2").unwrap().op, FilterOp::Ge);
        assert_eq!(Filter::parse("a!=b").unwrap().op, FilterOp::Ne);
        assert_eq!(Filter::parse("a<3").unwrap().op, FilterOp::Lt);
        assert!(Filter::parse("workload").is_err());
        assert!(Filter::parse("=x").is_err());
        assert!(Filter::parse("a=").is_err());
        assert_eq!(Filter::parse("a <= 1").unwrap().to_string(), "a<=1");
    }

    #[test]
    fn borrows_a_plain_f64_column() {
        let dir = tempfile::tempdir().unwrap();
        let pq = dir.path().join("f.parquet");
        let mut df = DataFrame::new(
            3,
            vec![
                Column::new("x".into(), [1.5f64, 2.5, 3.5]),
                Column::new("n".into(), [1i32, 2, 3]),
            ],
        )
        .unwrap();
        ParquetWriter::new(File::create(&pq).unwrap())
            .finish(&mut df)
            .unwrap();
        let t = load_table(
            &resolve_inputs(&[pq]).unwrap(),
            &LoadOptions {
                required: &["x", "n"],
                ..Default::default()
            },
        )
        .unwrap();
        let x = t.f64_column_cow("x").unwrap();
        assert!(matches!(x, std::borrow::Cow::Borrowed(_)));
        assert_eq!(x.as_ref(), &[1.5, 2.5, 3.5]);
        let n = t.f64_column_cow("n").unwrap();
        assert!(matches!(n, std::borrow::Cow::Owned(_)));
        assert_eq!(n.as_ref(), &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn loads_csv_and_hive_parquet_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "x,y,w\n1,2,h2\n2,4,fop\n3,6.5,h2\n").unwrap();
        let hive = dir.path().join("hive/workload=h2");
        std::fs::create_dir_all(&hive).unwrap();
        let mut df = DataFrame::new(
            2,
            vec![
                Column::new("x".into(), [10i64, 11]),
                Column::new("y".into(), [Some(1.0f64), None]),
            ],
        )
        .unwrap();
        let pq = hive.join("p.parquet");
        ParquetWriter::new(File::create(&pq).unwrap())
            .finish(&mut df)
            .unwrap();
        let inputs = resolve_inputs(&[csv.clone(), dir.path().join("hive")]).unwrap();
        assert_eq!(inputs[1].partitions, vec![("workload".into(), "h2".into())]);
        let t = load_table(
            &inputs,
            &LoadOptions {
                required: &["x", "y"],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(t.n_rows(), 5);
        let y = t.f64_column("y").unwrap();
        assert_eq!(&y[..4], &[2.0, 4.0, 6.5, 1.0]);
        assert!(y[4].is_nan());
        // Two files (and a null): the borrowed view falls back to a copy with NaN.
        let yc = t.f64_column_cow("y").unwrap();
        assert!(matches!(yc, std::borrow::Cow::Owned(_)));
        assert_eq!(&yc[..4], &y[..4]);
        assert!(
            t.row_label(4).ends_with("p.parquet row 2"),
            "{}",
            t.row_label(4)
        );

        let filters = [
            Filter::parse("workload=h2").unwrap(),
            Filter::parse("x>=2").unwrap(),
        ];
        let inputs = resolve_inputs(std::slice::from_ref(&csv)).unwrap();
        let e = load_table(
            &inputs,
            &LoadOptions {
                required: &["x", "y"],
                optional: &["w"],
                filters: &filters,
                ..Default::default()
            },
        );
        assert!(matches!(e, Err(TableError::MissingColumn { .. })));
        let filters = [
            Filter::parse("w=h2").unwrap(),
            Filter::parse("x>=2").unwrap(),
        ];
        let t = load_table(
            &inputs,
            &LoadOptions {
                required: &["x", "y"],
                filters: &filters,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(t.f64_column("x").unwrap(), vec![3.0]);
        assert_eq!(t.f64_column_cow("x").unwrap().as_ref(), &[3.0]);
        assert_eq!(t.origin(0).unwrap().1, 2);
        assert_eq!(
            t.origins().runs(),
            &[crate::OriginRun {
                file: 0,
                first_row: 2,
                rows: 1
            }]
        );
        let none = [Filter::parse("w=zzz").unwrap()];
        let e = load_table(
            &inputs,
            &LoadOptions {
                required: &["x"],
                filters: &none,
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("matched none of the 3 rows"), "{e}");
        assert!(t.f64_column("w").is_err());
    }
}
