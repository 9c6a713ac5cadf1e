//! `summary.json`: what a calibration campaign (or the demo) produced and decided.
//!
//! The campaign writes it last; the report ([`crate::report`]) reads it and nothing else to
//! find its inputs, so a report can be re-rendered from any folder holding a summary. Paths
//! in it are relative to the folder holding `summary.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the summary inside a campaign folder.
pub const SUMMARY_FILE: &str = "summary.json";
/// The summary format version this build writes.
pub const SUMMARY_VERSION: &str = "1.1.0";

/// Errors of reading or writing a summary.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a summary file.
    #[error("{path}: not a campaign summary")]
    Json {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the summary failed (the error names the file).
    #[error(transparent)]
    Write(#[from] datasets::DatasetError),
}

/// Everything a campaign produced and decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSummary {
    /// Format version ([`SUMMARY_VERSION`]).
    pub summary_version: String,
    /// Campaign name (from the config).
    pub name: String,
    /// The hardware pair the models are keyed by: `<source host>--<destination host>`.
    pub hardware_pair: String,
    /// When the summary was written (RFC 3339, UTC).
    pub created_at: String,
    /// migwatt version that wrote it.
    pub toolkit_version: String,
    /// Where migrations came from: `qemu` (driven through QMP), `xen`, `libvirt` or
    /// `qemu-logs` (ingested logs).
    pub hypervisor: String,
    /// The two hosts (source first).
    pub hosts: Vec<HostSummary>,
    /// What was emulated, one sentence each (empty for a campaign on real hardware).
    pub emulated: Vec<String>,
    /// What was real, one sentence each.
    pub real: Vec<String>,
    /// The model that drew the emulated meters' power (None: no meter was emulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_model: Option<PowerModelSummary>,
    /// Inputs of the report, relative to the summary's folder.
    pub paths: SummaryPaths,
    /// Planned, finished and failed migrations.
    pub migrations: MigrationCounts,
    /// The fitted models, as printed for a person.
    pub models: Vec<ModelSummary>,
    /// One verdict per acceptance threshold.
    pub verdicts: Vec<Verdict>,
    /// True when every verdict passed.
    pub accepted: bool,
    /// Files produced, relative to the summary's folder, with what each holds.
    pub files: Vec<ProducedFile>,
}

/// Which model drew an emulated meter's power, with its formula and coefficients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerModelSummary {
    /// `activity` (host activity sampled from /proc or replayed from the raw logs),
    /// `throughput` (the migration's byte counter), or `activity+throughput` (some
    /// migrations fell back).
    pub model: String,
    /// The formula, per host, with its coefficients.
    pub formulas: Vec<String>,
    /// Migrations that fell back to the throughput model, and why (empty: none).
    pub fallbacks: Vec<String>,
}

/// One host of the pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    /// `source` or `destination`.
    pub role: String,
    /// Host name (as in the samples dataset's `host=` partition).
    pub host: String,
    /// The meter's serial device.
    pub meter: String,
    /// Static power P_0, W (None when the baseline failed).
    pub p0_w: Option<f64>,
    /// Baseline file (meter::energy::baseline JSON), relative.
    pub baseline: Option<PathBuf>,
    /// Samples captured for this host.
    pub samples: u64,
}

/// Report inputs, relative to the summary's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPaths {
    /// Samples dataset folder (`host=/date=/*.parquet`).
    pub samples_dir: PathBuf,
    /// Migrations dataset folder.
    pub migrations_dir: Option<PathBuf>,
    /// Rounds dataset folder.
    pub rounds_dir: Option<PathBuf>,
    /// Migration windows file.
    pub windows: PathBuf,
    /// Energy observations file.
    pub energy: PathBuf,
    /// Per-window quality file (coverage, gaps, inclusion).
    pub window_quality: PathBuf,
    /// Energy model coefficient file (`v<N>.json`).
    pub energy_model: Option<PathBuf>,
    /// Gamma model coefficient file.
    pub gamma_model: Option<PathBuf>,
}

/// Migrations of the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationCounts {
    /// Planned migrations.
    pub planned: usize,
    /// Finished (recorded) migrations.
    pub done: usize,
    /// Of those, converged.
    pub converged: usize,
    /// Migrations that failed, with the reason.
    pub failed: Vec<FailedMigration>,
    /// Recorded migrations whose guest memory was verified intact.
    #[serde(default)]
    pub memory_verified: usize,
    /// Recorded migrations whose guest memory differed after the migration.
    #[serde(default)]
    pub memory_mismatched: Vec<String>,
    /// Completed migrations that were to be verified but could not be checked.
    #[serde(default)]
    pub memory_not_checked: Vec<String>,
    /// Whether mismatched migrations were kept in the windows, energy and models anyway.
    #[serde(default)]
    pub include_mismatched: bool,
}

/// A planned migration that produced no record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedMigration {
    /// Migration identifier.
    pub migration_id: String,
    /// Why.
    pub reason: String,
}

/// One fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// `energy` or `gamma`.
    pub kind: String,
    /// Coefficient file, relative.
    pub path: PathBuf,
    /// The equation with units, e.g. `E_mig [J] = 4.5e-7 J/B * V_mig [B] + 12.3 J`.
    pub equation: String,
    /// R^2 of the fit.
    pub r_squared: f64,
    /// Rows used.
    pub n_rows: usize,
    /// Cross-validated MAPE of the target, fraction (None when not cross-validated).
    pub cv_mape: Option<f64>,
}

/// The verdict on one acceptance threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Short name, e.g. `energy R^2`.
    pub name: String,
    /// Measured value (None when it could not be measured).
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// `>=` or `<=`.
    pub comparison: String,
    /// Unit or scale of value and threshold (`""`, `%`).
    pub unit: String,
    /// Whether it passed.
    pub passed: bool,
    /// One sentence: by how much it passed or failed, and for a failure what to try.
    pub detail: String,
}

/// A file the campaign wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducedFile {
    /// Path, relative.
    pub path: PathBuf,
    /// What it holds.
    pub description: String,
}

impl CampaignSummary {
    /// Read `DIR/summary.json` (or a summary file given directly).
    pub fn read(path: &Path) -> Result<CampaignSummary, SummaryError> {
        let file = if path.is_dir() {
            path.join(SUMMARY_FILE)
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|source| SummaryError::Io {
            path: file.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| SummaryError::Json { path: file, source })
    }

    /// Write `DIR/summary.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, SummaryError> {
        let file = dir.join(SUMMARY_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| SummaryError::Json {
            path: file.clone(),
            source,
        })?;
        bytes.push(b'\n');
        datasets::io::write_bytes_atomic(&file, &bytes)?;
        Ok(file)
    }
}
