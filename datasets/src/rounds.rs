//! The rounds dataset: one row per pre-copy round of a migration (the gamma observations).
//!
//! Layout: `DIR/rounds/*.parquet`, joined to migrations by `migration_id`. Rounds count from 1
//! (round 1 sends the whole guest). Per round i:
//! - `sent_bytes`: bytes sent in round i (Xen: pages x page size; QEMU/libvirt: change of
//!   `transferred` between the dirty syncs bracketing the round, so the rounds add up to V_mig);
//! - `dirtied_pages`: pages dirtied during round i, i.e. what round i+1 must send (Xen: the
//!   "N pages" of the iteration line; QEMU: pages sent in round i+1);
//! - `dirty_rate_bytes_per_s`: D during round i (Xen: dirtied pages x page size / duration;
//!   QEMU: the pre-migration sample when taken, else the round's dirtied bytes / duration);
//! - `gamma`: the paper's ratio for round i, paired by the trainer with T_{i-1} (the previous
//!   round's `duration_s`): Xen gamma_i = skipped_i / (sent_i + skipped_i); QEMU gamma_i =
//!   1 - dirtied_{i-1} x page / (D x T_{i-1}), defined only with a pre-migration D. Not clamped.

use std::path::Path;

use polars::prelude::*;

use crate::io::{parquet_files, read_parquet_checked, DatasetError, DatasetKind, SchemaVersion};
use crate::migrations::Cols;

/// The rounds dataset kind and version.
pub const ROUNDS: DatasetKind = DatasetKind {
    name: "rounds",
    version: SchemaVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
};

/// One pre-copy round of a migration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundRow {
    /// The migration (see the migrations dataset).
    pub migration_id: String,
    /// Round number from 1.
    pub round: u32,
    /// Start of the round, UTC ns (None when the log has no clock).
    pub start_utc_ns: Option<i64>,
    /// Duration of the round, s (None when the log does not say, e.g. Xen's last iteration).
    pub duration_s: Option<f64>,
    /// Bytes sent in the round.
    pub sent_bytes: u64,
    /// Pages skipped in the round (Xen; 0 for QEMU, which never skips).
    pub skipped_pages: u64,
    /// Pages dirtied during the round (what the next round sends), when known.
    pub dirtied_pages: Option<u64>,
    /// Dirtying rate during the round, bytes/s.
    pub dirty_rate_bytes_per_s: Option<f64>,
    /// The round's gamma per the hypervisor's definition (module docs), unclamped.
    pub gamma: Option<f64>,
    /// Whether this is the final stop-and-copy round (VM paused).
    pub last: bool,
}

/// Build the columns of a rounds file.
pub fn rounds_frame(rows: &[RoundRow]) -> Result<DataFrame, PolarsError> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("migration_id", |r| r.migration_id.as_str()),
        col!("round", |r| r.round),
        col!("start_utc_ns", |r| r.start_utc_ns),
        col!("duration_s", |r| r.duration_s),
        col!("sent_bytes", |r| r.sent_bytes),
        col!("skipped_pages", |r| r.skipped_pages),
        col!("dirtied_pages", |r| r.dirtied_pages),
        col!("dirty_rate_bytes_per_s", |r| r.dirty_rate_bytes_per_s),
        col!("gamma", |r| r.gamma),
        col!("last", |r| r.last),
    ];
    DataFrame::new(rows.len(), cols)
}

/// Write a rounds file atomically (temp file, fsync, rename).
pub fn write_rounds_file(path: &Path, rows: &[RoundRow]) -> Result<(), DatasetError> {
    let mut df = rounds_frame(rows).map_err(|e| DatasetError::Polars {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::io::write_parquet_atomic(&mut df, path, ROUNDS)
}

/// Read every rounds file under `path` (a file or a folder), sorted by migration then round.
pub fn read_rounds(path: &Path) -> Result<Vec<RoundRow>, DatasetError> {
    let files = parquet_files(path)?;
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut rows = Vec::new();
    // The dataset's own rules, with (migration_id, round) unique across the files read.
    let mut rules = crate::check::Rules::of(ROUNDS);
    for f in &files {
        let df = read_parquet_checked(f, ROUNDS)?;
        let file_rows = rows_of(&df, f)?;
        if let Some(rules) = &mut rules {
            let typed = rounds_frame(&file_rows).map_err(|e| DatasetError::polars(f, e))?;
            rules.check(f, &typed, None)?;
        }
        rows.extend(file_rows);
    }
    rows.sort_by(|a, b| (&a.migration_id, a.round).cmp(&(&b.migration_id, b.round)));
    Ok(rows)
}

fn rows_of(df: &DataFrame, path: &Path) -> Result<Vec<RoundRow>, DatasetError> {
    let c = Cols { df, path };
    use DataType::*;
    let id = c.get("migration_id", String)?;
    let round = c.get("round", UInt32)?;
    let start = c.get("start_utc_ns", Int64)?;
    let dur = c.get("duration_s", Float64)?;
    let sent = c.get("sent_bytes", UInt64)?;
    let skipped = c.get("skipped_pages", UInt64)?;
    let dirtied = c.get("dirtied_pages", UInt64)?;
    let rate = c.get("dirty_rate_bytes_per_s", Float64)?;
    let gamma = c.get("gamma", Float64)?;
    let last = c.get("last", Boolean)?;
    let f64_ = |x: &Series, i: usize| x.f64().ok().and_then(|a| a.get(i));
    let u64_ = |x: &Series, i: usize| x.u64().ok().and_then(|a| a.get(i));
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        out.push(RoundRow {
            migration_id: c.req(
                id.str().ok().and_then(|a| a.get(i)).map(str::to_string),
                "migration_id",
                i,
            )?,
            round: c.req(round.u32().ok().and_then(|a| a.get(i)), "round", i)?,
            start_utc_ns: start.i64().ok().and_then(|a| a.get(i)),
            duration_s: f64_(&dur, i),
            sent_bytes: c.req(u64_(&sent, i), "sent_bytes", i)?,
            skipped_pages: c.req(u64_(&skipped, i), "skipped_pages", i)?,
            dirtied_pages: u64_(&dirtied, i),
            dirty_rate_bytes_per_s: f64_(&rate, i),
            gamma: f64_(&gamma, i),
            last: c.req(last.bool().ok().and_then(|a| a.get(i)), "last", i)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u32) -> RoundRow {
        RoundRow {
            migration_id: "xen3-vm-1".into(),
            round: i,
            start_utc_ns: (i != 3).then_some(1_700_000_000_000_000_000 + i as i64),
            duration_s: (i != 3).then_some(0.1 * i as f64),
            sent_bytes: 4096 * 1000 * i as u64,
            skipped_pages: 7,
            dirtied_pages: (i != 3).then_some(300),
            dirty_rate_bytes_per_s: Some(1.0e7),
            gamma: (i > 1).then_some(-0.25),
            last: i == 3,
        }
    }

    #[test]
    fn rounds_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<_> = (1..=3).map(row).collect();
        write_rounds_file(&dir.path().join("rounds/a.parquet"), &rows).unwrap();
        assert_eq!(read_rounds(dir.path()).unwrap(), rows);
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        let mut df = rounds_frame(&[row(1)]).unwrap().drop("gamma").unwrap();
        crate::io::write_parquet_atomic(&mut df, &p, ROUNDS).unwrap();
        let err = read_rounds(&p).unwrap_err().to_string();
        assert!(err.contains("'gamma'") && err.contains("missing"), "{err}");
    }
}
