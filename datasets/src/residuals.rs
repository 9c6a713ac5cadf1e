//! The residuals dataset written beside every coefficient file (`v<N>.residuals.parquet`):
//! one row per training row, so a fit can be inspected and audited row by row.
//!
//! Columns: `input_file` (u32, index into the coefficient file's provenance inputs),
//! `input_row` (u64, 0-based data row within that file), `observed`, `fitted`, `residual`
//! (= observed - fitted) and `cv_predicted` (out-of-fold prediction, null without
//! cross-validation), all f64 in the target's unit, which the key-value metadata names
//! (`migwatt.target`, `migwatt.unit`) together with `migwatt.model_id`.
//!
//! A fit can have millions of rows, so the file is written with polars-parquet's page-level
//! writer straight from the borrowed columns: one row group, uncompressed data pages of at most
//! [`PAGE_ROWS`] rows built one at a time in a buffer reused for every page of a column, no
//! statistics. `input_file` and `input_row` come from the origin runs, DELTA_BINARY_PACKED
//! (constant or +1 within a run, so they take almost no space); the doubles are PLAIN.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use polars::prelude::*;
use polars_parquet::parquet::compression::Compression;
use polars_parquet::parquet::encoding::hybrid_rle::Encoder as _;
use polars_parquet::parquet::encoding::{uleb128, zigzag_leb128, Encoding};
use polars_parquet::parquet::error::ParquetError;
use polars_parquet::parquet::metadata::{Descriptor, KeyValue, SchemaDescriptor};
use polars_parquet::parquet::page::{
    CompressedDataPage, CompressedPage, DataPageHeader, DataPageHeaderV1,
};
use polars_parquet::parquet::schema::types::{
    IntegerType, ParquetType, PhysicalType, PrimitiveConvertedType, PrimitiveLogicalType,
};
use polars_parquet::parquet::schema::Repetition;
use polars_parquet::parquet::write::{
    DynIter, DynStreamingIterator, FileWriter, Version, WriteOptions,
};
use polars_parquet::parquet::{CowBuffer, FallibleStreamingIterator};

use crate::io::{write_atomic_with, DatasetError, DatasetKind, SchemaVersion};
use crate::io::{KEY_DATASET, KEY_SCHEMA_VERSION};
use crate::origins::{OriginRun, Origins};

/// The residuals dataset kind and version.
pub const RESIDUALS: DatasetKind = DatasetKind {
    name: "residuals",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// Rows per data page: 1 MiB of doubles, so a column's page buffer stays small however long
/// the fit.
pub const PAGE_ROWS: usize = 128 * 1024;

/// Residuals of one fit, borrowed column by column (all the same length).
#[derive(Debug, Clone, PartialEq)]
pub struct Residuals<'a> {
    /// Model id of the coefficient file.
    pub model_id: String,
    /// Target column name.
    pub target: String,
    /// Target unit.
    pub unit: String,
    /// Input file and row of each training row (runs of consecutive rows).
    pub origins: &'a Origins,
    /// Observed target.
    pub observed: &'a [f64],
    /// Fitted target.
    pub fitted: &'a [f64],
    /// Out-of-fold prediction, if cross-validated.
    pub cv_predicted: Option<&'a [f64]>,
}

/// Write the residuals atomically (temp file, fsync, rename, fsync of the folder).
pub fn write_residuals(path: &Path, r: &Residuals<'_>) -> Result<(), DatasetError> {
    write_residuals_cancellable(path, r, None)
}

/// [`write_residuals`] that stops between pages once `cancel` is set: the temporary file is
/// removed and the error is [`DatasetError::Cancelled`].
pub fn write_residuals_cancellable(
    path: &Path,
    r: &Residuals<'_>,
    cancel: Option<&AtomicBool>,
) -> Result<(), DatasetError> {
    let rows = r.origins.len();
    // Checked before anything touches the disk, so a bad call leaves no file behind.
    let lengths = [
        ("observed", Some(r.observed.len())),
        ("fitted", Some(r.fitted.len())),
        ("cv_predicted", r.cv_predicted.map(<[f64]>::len)),
    ];
    for (column, len) in lengths {
        if let Some(len) = len.filter(|&len| len != rows) {
            return Err(DatasetError::Column {
                path: path.to_path_buf(),
                column: column.into(),
                problem: format!("{len} values, but the origins have {rows} rows"),
            });
        }
    }
    // No NaN or infinity in a dataset: checked before anything touches the disk.
    let columns = [
        ("observed", Some(r.observed)),
        ("fitted", Some(r.fitted)),
        ("cv_predicted", r.cv_predicted),
    ];
    for (column, values) in columns {
        let Some(values) = values else { continue };
        if let Some(row) = values.iter().position(|v| !v.is_finite()) {
            return Err(DatasetError::NonFinite {
                path: path.to_path_buf(),
                column: column.into(),
                row,
                value: values[row],
            });
        }
    }
    if let Some(row) = (0..rows).find(|&i| !(r.observed[i] - r.fitted[i]).is_finite()) {
        return Err(DatasetError::NonFinite {
            path: path.to_path_buf(),
            column: "residual".into(),
            row,
            value: r.observed[row] - r.fitted[row],
        });
    }
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let polars_err = |tmp: &Path, e: ParquetError| {
        if cancelled() {
            DatasetError::Cancelled {
                path: path.to_path_buf(),
            }
        } else {
            DatasetError::Polars {
                path: tmp.to_path_buf(),
                source: e.into(),
            }
        }
    };
    let schema = schema().map_err(|e| polars_err(path, e))?;
    let runs = r.origins.runs();
    let sources = [
        Source::Origin { runs, file: true },
        Source::Origin { runs, file: false },
        Source::Values(r.observed),
        Source::Values(r.fitted),
        Source::Difference(r.observed, r.fitted),
        Source::Optional(r.cv_predicted),
    ];
    let kv = vec![
        KeyValue::new(KEY_DATASET.into(), RESIDUALS.name.to_string()),
        KeyValue::new(KEY_SCHEMA_VERSION.into(), RESIDUALS.version.to_string()),
        KeyValue::new("migwatt.model_id".into(), r.model_id.clone()),
        KeyValue::new("migwatt.target".into(), r.target.clone()),
        KeyValue::new("migwatt.unit".into(), r.unit.clone()),
    ];
    write_atomic_with(path, |w, tmp| {
        let columns: Vec<_> = schema
            .columns()
            .iter()
            .zip(sources)
            .map(|(c, source)| {
                let pages = Pages::new(source, c.descriptor.clone(), rows, cancel);
                Ok::<_, ParquetError>(DynStreamingIterator::new(pages))
            })
            .collect();
        let options = WriteOptions {
            write_statistics: false,
            version: Version::V1,
        };
        let created_by = concat!("migwatt version ", env!("CARGO_PKG_VERSION"));
        let mut writer = FileWriter::new(w, schema, options, Some(created_by.into()));
        // An empty fit is a file with the schema and no row group (a row group without pages
        // is not something every reader accepts).
        if rows > 0 {
            writer
                .write::<ParquetError>(rows as u64, DynIter::new(columns.into_iter()))
                .map_err(|e| polars_err(tmp, e))?;
        }
        writer.end(Some(kv)).map_err(|e| polars_err(tmp, e))?;
        if cancelled() {
            return Err(DatasetError::Cancelled {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    })
}

/// The file's Parquet schema: the u32/u64 logical types make polars and pyarrow read the
/// origins back as UInt32/UInt64.
fn schema() -> Result<SchemaDescriptor, ParquetError> {
    let int = |name: &str, physical, converted, integer| {
        ParquetType::try_from_primitive(
            name.into(),
            physical,
            Repetition::Required,
            Some(converted),
            Some(PrimitiveLogicalType::Integer(integer)),
            None,
        )
    };
    let double = |name: &str, repetition| {
        ParquetType::try_from_primitive(
            name.into(),
            PhysicalType::Double,
            repetition,
            None,
            None,
            None,
        )
    };
    let fields = vec![
        int(
            "input_file",
            PhysicalType::Int32,
            PrimitiveConvertedType::Uint32,
            IntegerType::UInt32,
        )?,
        int(
            "input_row",
            PhysicalType::Int64,
            PrimitiveConvertedType::Uint64,
            IntegerType::UInt64,
        )?,
        double("observed", Repetition::Required)?,
        double("fitted", Repetition::Required)?,
        double("residual", Repetition::Required)?,
        double("cv_predicted", Repetition::Optional)?,
    ];
    Ok(SchemaDescriptor::new("root".into(), fields))
}

/// What one column's values come from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// `input_file` (`file`) or `input_row` of every row, from the origin runs.
    Origin { runs: &'a [OriginRun], file: bool },
    /// Doubles as they are.
    Values(&'a [f64]),
    /// `a - b`, row by row.
    Difference(&'a [f64], &'a [f64]),
    /// A nullable column: every value present, or (None) every value null.
    Optional(Option<&'a [f64]>),
}

/// The data pages of one column, encoded one at a time into one reused buffer.
struct Pages<'a> {
    source: Source<'a>,
    descriptor: Descriptor,
    rows: usize,
    /// Rows already in pages.
    done: usize,
    /// Next origin: run index and row within that run.
    run: usize,
    run_offset: u64,
    /// The current page; its buffer is taken back for the next one.
    page: Option<CompressedPage>,
    /// Stop request, looked at before every page.
    cancel: Option<&'a AtomicBool>,
}

impl<'a> Pages<'a> {
    fn new(
        source: Source<'a>,
        descriptor: Descriptor,
        rows: usize,
        cancel: Option<&'a AtomicBool>,
    ) -> Self {
        Self {
            source,
            descriptor,
            rows,
            done: 0,
            run: 0,
            run_offset: 0,
            page: None,
            cancel,
        }
    }

    /// Encode the next `len` rows into `buf`, returning their encoding.
    fn fill(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<Encoding, ParquetError> {
        let range = self.done..self.done + len;
        // Slices were checked against the origins' length before writing began.
        let slice = |v: &'a [f64]| {
            v.get(range.clone()).ok_or_else(|| {
                ParquetError::OutOfSpec("residuals column shorter than the origins".into())
            })
        };
        match self.source {
            Source::Origin { runs, file } => {
                self.fill_origins(buf, runs, file, len)?;
                return Ok(Encoding::DeltaBinaryPacked);
            }
            Source::Values(v) => plain(buf, slice(v)?.iter().copied()),
            Source::Difference(a, b) => {
                plain(buf, slice(a)?.iter().zip(slice(b)?).map(|(a, b)| a - b))
            }
            Source::Optional(v) => {
                // V1 pages: the definition levels' byte length, then one RLE run (every row
                // defined, or every row null).
                buf.extend_from_slice(&[0; 4]);
                bool::run_length_encode(buf, len, v.is_some(), 1)?;
                let levels = (buf.len() - 4) as u32;
                buf[..4].copy_from_slice(&levels.to_le_bytes());
                if let Some(v) = v {
                    plain(buf, slice(v)?.iter().copied());
                }
            }
        }
        Ok(Encoding::Plain)
    }

    /// DELTA_BINARY_PACKED `input_file` (`file`) or `input_row` of the next `len` rows.
    fn fill_origins(
        &mut self,
        buf: &mut Vec<u8>,
        runs: &[OriginRun],
        file: bool,
        len: usize,
    ) -> Result<(), ParquetError> {
        let mut delta = DeltaEncoder::new(buf, file, len);
        let mut left = len as u64;
        while left > 0 {
            let run = runs.get(self.run).ok_or_else(|| {
                ParquetError::OutOfSpec("origin runs shorter than the origins".into())
            })?;
            let take = (run.rows - self.run_offset).min(left);
            if file {
                // UINT_32 is stored as the INT32 of the same bits.
                delta.progression(run.file as i32 as i64, 0, take);
            } else {
                let first = run.first_row.wrapping_add(self.run_offset) as i64;
                delta.progression(first, 1, take);
            }
            left -= take;
            self.run_offset += take;
            if self.run_offset >= run.rows {
                self.run += 1;
                self.run_offset = 0;
            }
        }
        delta.finish();
        Ok(())
    }
}

impl FallibleStreamingIterator for Pages<'_> {
    type Item = CompressedPage;
    type Error = ParquetError;

    fn advance(&mut self) -> Result<(), ParquetError> {
        // Take back the previous page's buffer: every page of the column reuses it.
        let mut buf = match self.page.take() {
            Some(CompressedPage::Data(mut p)) => {
                std::mem::replace(p.slice_mut(), CowBuffer::Owned(Vec::new())).into_vec()
            }
            _ => Vec::new(),
        };
        if self.done >= self.rows {
            return Ok(());
        }
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(ParquetError::OutOfSpec("cancelled".into()));
        }
        let len = PAGE_ROWS.min(self.rows - self.done);
        buf.clear();
        // Doubles are the largest pages; the deltas need a little more only in the worst case.
        buf.reserve(8 * len + len / 16 + 64);
        let encoding = self.fill(&mut buf, len)?;
        self.done += len;
        let header = DataPageHeader::V1(DataPageHeaderV1 {
            // At most PAGE_ROWS, so it fits.
            num_values: len as i32,
            encoding: encoding.into(),
            definition_level_encoding: Encoding::Rle.into(),
            repetition_level_encoding: Encoding::Rle.into(),
            statistics: None,
        });
        let size = buf.len();
        self.page = Some(CompressedPage::Data(CompressedDataPage::new(
            header,
            CowBuffer::Owned(buf),
            Compression::Uncompressed,
            size,
            self.descriptor.clone(),
            len,
        )));
        Ok(())
    }

    fn get(&self) -> Option<&CompressedPage> {
        self.page.as_ref()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pages = (self.rows - self.done).div_ceil(PAGE_ROWS);
        (pages, Some(pages))
    }
}

/// Append doubles PLAIN (little-endian).
fn plain(buf: &mut Vec<u8>, values: impl ExactSizeIterator<Item = f64>) {
    let start = buf.len();
    buf.resize(start + 8 * values.len(), 0);
    for (out, v) in buf[start..].chunks_exact_mut(8).zip(values) {
        out.copy_from_slice(&v.to_le_bytes());
    }
}

/// Values per DELTA_BINARY_PACKED block and per miniblock: the layout parquet-mr and Arrow
/// write, so every reader knows it.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;
const MINIBLOCKS: usize = BLOCK / MINIBLOCK;

/// DELTA_BINARY_PACKED encoder of one page, fed arithmetic progressions (an origin run is one:
/// its file with step 0, its rows with step 1), so a block inside a run costs five bytes and
/// no per-value work.
struct DeltaEncoder<'b> {
    out: &'b mut Vec<u8>,
    /// INT32 column: deltas wrap at 32 bits so that no bit width exceeds 32.
    narrow: bool,
    /// Last value written (None before the first, which goes in the header).
    prev: Option<i64>,
    block: [i64; BLOCK],
    len: usize,
}

impl<'b> DeltaEncoder<'b> {
    /// Start a page of `count` values: the header.
    fn new(out: &'b mut Vec<u8>, narrow: bool, count: usize) -> Self {
        uleb(out, BLOCK as u64);
        uleb(out, MINIBLOCKS as u64);
        uleb(out, count as u64);
        Self {
            out,
            narrow,
            prev: None,
            block: [0; BLOCK],
            len: 0,
        }
    }

    fn wrap(&self, v: i64) -> i64 {
        if self.narrow {
            v as i32 as i64
        } else {
            v
        }
    }

    /// Append `first, first + step, ...` (`count` values, wrapping).
    fn progression(&mut self, first: i64, step: i64, count: u64) {
        if count == 0 {
            return;
        }
        let first = self.wrap(first);
        match self.prev {
            None => zigzag(self.out, first),
            Some(prev) => self.push(self.wrap(first.wrapping_sub(prev))),
        }
        let mut rest = count - 1;
        while rest > 0 {
            if self.len == 0 && rest >= BLOCK as u64 {
                // A whole block of `step`: min delta `step`, every bit width 0, no bits.
                zigzag(self.out, step);
                self.out.extend_from_slice(&[0; MINIBLOCKS]);
                rest -= BLOCK as u64;
                continue;
            }
            let take = (rest as usize).min(BLOCK - self.len);
            self.block[self.len..self.len + take].fill(step);
            self.len += take;
            rest -= take as u64;
            if self.len == BLOCK {
                self.flush();
            }
        }
        self.prev = Some(self.wrap(first.wrapping_add(step.wrapping_mul(count as i64 - 1))));
    }

    fn push(&mut self, delta: i64) {
        self.block[self.len] = delta;
        self.len += 1;
        if self.len == BLOCK {
            self.flush();
        }
    }

    /// Write the buffered deltas as one block: min delta, the miniblocks' bit widths, then
    /// each used miniblock bit-packed (LSB first) and padded to MINIBLOCK values.
    fn flush(&mut self) {
        let deltas = &self.block[..self.len];
        let Some(&min) = deltas.iter().min() else {
            return;
        };
        zigzag(self.out, min);
        // Unused miniblocks of a last, partial block keep width 0 and take no bytes.
        let mut widths = [0u8; MINIBLOCKS];
        for (w, mini) in widths.iter_mut().zip(deltas.chunks(MINIBLOCK)) {
            let max = mini.iter().map(|d| d.wrapping_sub(min) as u64).max();
            *w = (64 - max.unwrap_or(0).leading_zeros()) as u8;
        }
        self.out.extend_from_slice(&widths);
        for (&width, mini) in widths.iter().zip(deltas.chunks(MINIBLOCK)) {
            pack(self.out, mini, min, width.into());
        }
        self.len = 0;
    }

    fn finish(mut self) {
        self.flush();
    }
}

/// Bit-pack `deltas - min` with `width` bits each, LSB first, padded with zeros to MINIBLOCK
/// values (a whole number of bytes, as MINIBLOCK is a multiple of 8).
fn pack(out: &mut Vec<u8>, deltas: &[i64], min: i64, width: u32) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for i in 0..MINIBLOCK {
        let v = deltas.get(i).map_or(0, |d| d.wrapping_sub(min) as u64);
        // bits < 8 here and width <= 64, so nothing falls off the 128-bit accumulator.
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

fn uleb(out: &mut Vec<u8>, v: u64) {
    let mut bytes = [0u8; 10];
    let n = uleb128::encode(v, &mut bytes);
    out.extend_from_slice(&bytes[..n]);
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let (bytes, n) = zigzag_leb128::encode(v);
    out.extend_from_slice(&bytes[..n]);
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
    use proptest::prelude::*;

    fn residuals<'a>(
        origins: &'a Origins,
        observed: &'a [f64],
        fitted: &'a [f64],
        cv: Option<&'a [f64]>,
    ) -> Residuals<'a> {
        Residuals {
            model_id: "m/v1/x".into(),
            target: "e_mig_j".into(),
            unit: "J".into(),
            origins,
            observed,
            fitted,
            cv_predicted: cv,
        }
    }

    /// Deterministic doubles of every sign and many magnitudes.
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let m = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                m * 10f64.powi((x % 19) as i32 - 9)
            })
            .collect()
    }

    /// The file read back through polars equals what was written, bit for bit.
    fn assert_round_trip(path: &Path, r: &Residuals<'_>) {
        let df = crate::io::read_parquet_checked(path, RESIDUALS).unwrap();
        let n = r.origins.len();
        assert_eq!(df.height(), n);
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "input_file",
                "input_row",
                "observed",
                "fitted",
                "residual",
                "cv_predicted"
            ]
        );
        let col = |name: &str| df.column(name).unwrap().as_materialized_series().clone();
        let (file, row) = (col("input_file"), col("input_row"));
        assert_eq!(file.dtype(), &DataType::UInt32);
        assert_eq!(row.dtype(), &DataType::UInt64);
        let got: Vec<(u32, u64)> = file
            .u32()
            .unwrap()
            .into_no_null_iter()
            .zip(row.u64().unwrap().into_no_null_iter())
            .collect();
        assert!(got.iter().copied().eq(r.origins.iter()), "origins differ");
        let bits = |name: &str| -> Vec<Option<u64>> {
            let s = col(name);
            assert_eq!(s.dtype(), &DataType::Float64, "{name}");
            s.f64()
                .unwrap()
                .iter()
                .map(|v| v.map(f64::to_bits))
                .collect()
        };
        let want =
            |v: &[f64]| -> Vec<Option<u64>> { v.iter().map(|x| Some(x.to_bits())).collect() };
        assert_eq!(bits("observed"), want(r.observed));
        assert_eq!(bits("fitted"), want(r.fitted));
        let residual: Vec<f64> = r
            .observed
            .iter()
            .zip(r.fitted)
            .map(|(o, f)| o - f)
            .collect();
        assert_eq!(bits("residual"), want(&residual));
        match r.cv_predicted {
            Some(cv) => assert_eq!(bits("cv_predicted"), want(cv)),
            None => assert_eq!(bits("cv_predicted"), vec![None; n]),
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        let mut origins = Origins::new();
        origins.push_run(0, 0, 2);
        write_residuals(&p, &residuals(&origins, &[1.0, 2.0], &[0.5, 2.5], None)).unwrap();
        assert_eq!(read_residual_column(&p).unwrap(), vec![0.5, -0.5]);
    }

    #[test]
    fn a_large_table_round_trips_across_pages_and_runs() {
        let mut origins = Origins::new();
        origins.push_run(0, 0, 1000);
        origins.push_run(0, 5000, 195_000);
        origins.push_run(1, 7, 98_993);
        origins.push(0, 3);
        origins.push(1, 200_000);
        origins.push(1, 199_999);
        origins.push_run(1, 1 << 40, 6000);
        origins.push_run(0, 200_000, 129);
        let n = origins.len();
        assert!(n > 2 * PAGE_ROWS);
        let (observed, fitted, cv) = (noise(1, n), noise(2, n), noise(3, n));
        let r = residuals(&origins, &observed, &fitted, Some(&cv));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        write_residuals(&p, &r).unwrap();
        assert_round_trip(&p, &r);
    }

    #[test]
    fn without_cross_validation_cv_predicted_is_all_null() {
        let mut origins = Origins::new();
        origins.push_run(3, 10, PAGE_ROWS as u64 + 5);
        let n = origins.len();
        let (observed, fitted) = (noise(4, n), noise(5, n));
        let r = residuals(&origins, &observed, &fitted, None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        write_residuals(&p, &r).unwrap();
        let df = crate::io::read_parquet_checked(&p, RESIDUALS).unwrap();
        let cv = df.column("cv_predicted").unwrap();
        assert_eq!(cv.dtype(), &DataType::Float64);
        assert_eq!((cv.len(), cv.null_count()), (n, n));
        assert_round_trip(&p, &r);
    }

    #[test]
    fn mismatched_lengths_are_refused_without_touching_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        let mut origins = Origins::new();
        origins.push_run(0, 0, 3);
        let good = [1.0, 2.0, 3.0];
        write_residuals(&p, &residuals(&origins, &good, &good, None)).unwrap();
        let before = std::fs::read(&p).unwrap();
        let short = [1.0, 2.0];
        let cases = [
            ("observed", residuals(&origins, &short, &good, None)),
            ("fitted", residuals(&origins, &good, &short, None)),
            (
                "cv_predicted",
                residuals(&origins, &good, &good, Some(&short)),
            ),
        ];
        for (column, r) in cases {
            match write_residuals(&p, &r) {
                Err(DatasetError::Column {
                    column: c, problem, ..
                }) => {
                    assert_eq!(c, column);
                    assert_eq!(problem, "2 values, but the origins have 3 rows");
                }
                other => panic!("{column}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read(&p).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["v1.residuals.parquet"]);
    }

    #[test]
    fn zero_rows_make_a_valid_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.residuals.parquet");
        let origins = Origins::new();
        let r = residuals(&origins, &[], &[], Some(&[][..]));
        write_residuals(&p, &r).unwrap();
        assert_round_trip(&p, &r);
        let r = residuals(&origins, &[], &[], None);
        write_residuals(&p, &r).unwrap();
        assert_round_trip(&p, &r);
    }

    /// One origin run: file, first row, rows.
    fn run() -> impl Strategy<Value = (u32, u64, u64)> {
        let file = prop_oneof![Just(0u32), Just(1), Just(7), Just(u32::MAX), any::<u32>()];
        let row = prop_oneof![0u64..10, 0u64..(1 << 40)];
        (file, row, 1u64..150)
    }

    proptest! {
        /// Any origins (runs inside and across delta blocks, wide jumps back and forth, file
        /// indices with the top bit set) and any doubles come back exactly.
        #[test]
        fn small_tables_round_trip(
            runs in proptest::collection::vec(run(), 0..5),
            seed in any::<u64>(),
            with_cv in any::<bool>(),
            singles in proptest::collection::vec((any::<u32>(), 0u64..(1 << 40)), 0..50),
        ) {
            let mut origins = Origins::new();
            for (file, first, rows) in runs {
                origins.push_run(file, first, rows);
            }
            for (file, row) in singles {
                origins.push(file, row);
            }
            let n = origins.len();
            let observed = noise(seed, n);
            let mut fitted = noise(seed ^ 0x9e37_79b9, n);
            if n > 0 {
                fitted[0] = f64::from_bits(seed); // any bits, NaN and infinities included
            }
            let cv = noise(seed.rotate_left(7), n);
            let r = residuals(&origins, &observed, &fitted, with_cv.then_some(&cv[..]));
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("v1.residuals.parquet");
            // A NaN or an infinity (or a residual that overflows) never reaches the file.
            let finite = (0..n).all(|i| (observed[i] - fitted[i]).is_finite());
            if finite {
                write_residuals(&p, &r).unwrap();
                assert_round_trip(&p, &r);
            } else {
                let e = write_residuals(&p, &r).unwrap_err();
                prop_assert!(matches!(e, DatasetError::NonFinite { row: 0, .. }), "{e}");
                prop_assert!(!p.exists());
                prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            }
        }
    }
}
