//! `migwatt calibrate run`: calibrate a pair of hosts end to end.
//!
//! Capture both meters for the whole campaign; measure P_0 over an idle stretch; run (or
//! ingest) every planned migration with a settle time between them; integrate each
//! migration's energy; train the energy and gamma models; judge them against the acceptance
//! thresholds; write the coefficient files keyed by the hardware pair, `summary.json` and the
//! report. A journal makes it resumable (see [`journal`]).

pub mod config;
pub mod journal;
pub mod launch;
pub mod plan;
mod run;
mod verdict;

use std::path::PathBuf;

pub use config::{load, Config, LoadedConfig, EXAMPLE_CONFIG};
pub use run::{run, Outcome, RunOptions};
pub use verdict::verdicts;

/// Errors of a campaign.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config is invalid.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The plan cannot be built.
    #[error("plan: {0}")]
    Plan(String),
    /// Another run holds the campaign folder.
    #[error("{0}: another `migwatt calibrate run` is using this campaign folder")]
    Locked(PathBuf),
    /// Starting local QEMU failed.
    #[error("launch: {0}")]
    Launch(String),
    /// A step failed; the message names the step.
    #[error("{step}: {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Stopped on request; everything finished so far is kept.
    #[error("stopped on request; run the same command again to resume")]
    Cancelled,
}

pub(crate) fn step<E: std::error::Error>(step: &'static str) -> impl FnOnce(E) -> CampaignError {
    move |e| CampaignError::Step {
        step,
        message: datasets::error_chain(&e),
    }
}

/// What the campaign tells its driver (a terminal with progress bars, a log, a test).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One line for a person.
    Log(String),
    /// A phase began: `capture`, `baseline`, `migrations`, `integrate`, `train`,
    /// `evaluate`, `report`.
    Phase(&'static str),
    /// The plan: `total` migrations, of which `done` finished in earlier runs.
    Planned {
        /// Planned migrations.
        total: usize,
        /// Already done.
        done: usize,
    },
    /// Waiting (baseline or settle): seconds elapsed of the total.
    Wait {
        /// `baseline` or `settle`.
        what: &'static str,
        /// Elapsed, s.
        elapsed_s: f64,
        /// Total, s.
        total_s: f64,
    },
    /// A migration started (`index` from 0 of `total`; `skipped` are already done).
    MigrationStarted {
        /// Position in the plan.
        index: usize,
        /// Planned migrations.
        total: usize,
        /// Its id.
        migration_id: String,
    },
    /// A migration moved on.
    MigrationProgress {
        /// Its id.
        migration_id: String,
        /// Bytes sent so far.
        transferred_bytes: u64,
        /// Bytes expected in all (guest memory as a first guess).
        expected_bytes: u64,
    },
    /// A migration ended: `outcome` is `done`, `skipped` (done earlier) or `failed: ...`.
    MigrationFinished {
        /// Position in the plan.
        index: usize,
        /// Planned migrations.
        total: usize,
        /// Its id.
        migration_id: String,
        /// What happened.
        outcome: String,
    },
    /// Latest meter readings.
    Meters(Vec<(String, u64, Option<f64>)>),
}

/// Receives a campaign's [`Event`]s.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, e: &Event);
}

/// Prints nothing.
pub struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: &Event) {}
}
