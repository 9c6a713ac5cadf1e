//! Writing parsed migrations: Parquet datasets under a folder, or JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};

use datasets::migrations::{write_migrations_file, MigrationRow};
use datasets::rounds::{write_rounds_file, RoundRow};

use crate::{CalibrateError, Migration};

/// Where [`write_datasets`] put its files.
#[derive(Debug, Clone)]
pub struct Written {
    /// The migrations file.
    pub migrations: PathBuf,
    /// The rounds file.
    pub rounds: PathBuf,
}

/// A file-name-safe form of an id (see [`datasets::names::safe_component`]).
pub fn safe_name(id: &str) -> String {
    datasets::names::safe_component(id)
}

/// Write `DIR/migrations/NAME.parquet` and `DIR/rounds/NAME.parquet` atomically, NAME being
/// the first migration's id (so re-ingesting the same log replaces its own files).
pub fn write_datasets(dir: &Path, migrations: &[Migration]) -> Result<Written, CalibrateError> {
    let name = migrations
        .first()
        .map(|m| safe_name(&m.row.migration_id))
        .unwrap_or_else(|| "empty".into());
    let rows: Vec<MigrationRow> = migrations.iter().map(|m| m.row.clone()).collect();
    let rounds: Vec<RoundRow> = migrations.iter().flat_map(|m| m.rounds.clone()).collect();
    let mp = dir.join("migrations").join(format!("{name}.parquet"));
    let rp = dir.join("rounds").join(format!("{name}.parquet"));
    write_migrations_file(&mp, &rows)?;
    write_rounds_file(&rp, &rounds)?;
    Ok(Written {
        migrations: mp,
        rounds: rp,
    })
}

/// Write migrations as JSON lines: `{"dataset":"migrations",...}` per migration followed by
/// `{"dataset":"rounds",...}` per round.
pub fn write_jsonl(out: &mut dyn Write, migrations: &[Migration]) -> std::io::Result<()> {
    for m in migrations {
        let mut v = serde_json::to_value(&m.row).map_err(std::io::Error::other)?;
        v["dataset"] = "migrations".into();
        writeln!(out, "{v}")?;
        for r in &m.rounds {
            let mut v = serde_json::to_value(r).map_err(std::io::Error::other)?;
            v["dataset"] = "rounds".into();
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}

/// Write `bytes` to `path` atomically (temp sibling, fsync, rename, fsync the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CalibrateError> {
    Ok(datasets::io::write_bytes_atomic(path, bytes)?)
}
