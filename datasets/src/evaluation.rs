//! The evaluation dataset written by `migwatt evaluate`: one row per measured migration and
//! model, the prediction made from what was known before the migration next to what was
//! measured, and the relative errors ((predicted - measured) / measured).
//!
//! Layout: one Parquet file (`--out FILE`). Units are in the column names.

use std::path::Path;

use polars::prelude::*;

use crate::io::{DatasetError, DatasetKind, SchemaVersion};

/// The evaluation dataset kind and version.
pub const EVALUATION: DatasetKind = DatasetKind {
    name: "evaluation",
    version: SchemaVersion {
        major: 1,
        minor: 3,
        patch: 0,
    },
};

/// One migration as predicted by one model and as measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvaluationRow {
    /// The measured migration.
    pub migration_id: String,
    /// VM name.
    pub vm: String,
    /// Workload label.
    pub workload: Option<String>,
    /// Model: `sim` (Algorithm 1), `base` (eqs 5-8), `refined` (eqs 11-13 with history).
    pub model: String,
    /// Earlier migrations of the same VM the model used (refined model).
    pub history_migrations: u32,
    /// Dirtying rate the model used, bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// Transmission rate the model used, bytes/s.
    pub rate_bytes_per_s: f64,
    /// Data the model's first round sends, bytes.
    pub first_round_bytes: f64,
    /// Hot set (writable working set) the refined model learned and capped dirty data with,
    /// bytes (None: no cap; sim and base rows, or no earlier round 1 capped by it).
    pub hot_set_bytes: Option<f64>,
    /// Predicted V_mig, bytes (None: predicted never to complete).
    pub predicted_v_mig_bytes: Option<f64>,
    /// Predicted T_mig, s.
    pub predicted_t_mig_s: Option<f64>,
    /// Predicted T_down, s.
    pub predicted_t_down_s: Option<f64>,
    /// Predicted rounds.
    pub predicted_rounds: u32,
    /// Predicted stop reason.
    pub predicted_stop: String,
    /// Measured V_mig, bytes.
    pub measured_v_mig_bytes: f64,
    /// Measured T_mig, s.
    pub measured_t_mig_s: f64,
    /// Measured T_down, s.
    pub measured_t_down_s: Option<f64>,
    /// Measured rounds.
    pub measured_rounds: u32,
    /// Whether the measured migration completed.
    pub measured_converged: bool,
    /// Relative error of V_mig.
    pub rel_err_v_mig: Option<f64>,
    /// Relative error of T_mig.
    pub rel_err_t_mig: Option<f64>,
    /// Relative error of T_down.
    pub rel_err_t_down: Option<f64>,
    /// Predicted energy (the energy model applied to the predicted V_mig), J.
    pub predicted_e_mig_j: Option<f64>,
    /// Measured energy (the energy observations, eq 14), J.
    pub measured_e_mig_j: Option<f64>,
    /// (predicted - measured) / measured E_mig (Figure 13).
    pub rel_err_e_mig: Option<f64>,
    /// Whether the models never saw this migration (true: held out, false: it trained
    /// them; None: no split was asked for, the models came from elsewhere).
    pub held_out: Option<bool>,
}

/// Build the columns of an evaluation file.
pub fn evaluation_frame(rows: &[EvaluationRow]) -> Result<DataFrame, PolarsError> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("migration_id", |r| r.migration_id.as_str()),
        col!("vm", |r| r.vm.as_str()),
        col!("workload", |r| r.workload.as_deref()),
        col!("model", |r| r.model.as_str()),
        col!("history_migrations", |r| r.history_migrations),
        col!("dirty_rate_bytes_per_s", |r| r.dirty_rate_bytes_per_s),
        col!("rate_bytes_per_s", |r| r.rate_bytes_per_s),
        col!("first_round_bytes", |r| r.first_round_bytes),
        col!("hot_set_bytes", |r| r.hot_set_bytes),
        col!("predicted_v_mig_bytes", |r| r.predicted_v_mig_bytes),
        col!("predicted_t_mig_s", |r| r.predicted_t_mig_s),
        col!("predicted_t_down_s", |r| r.predicted_t_down_s),
        col!("predicted_rounds", |r| r.predicted_rounds),
        col!("predicted_stop", |r| r.predicted_stop.as_str()),
        col!("measured_v_mig_bytes", |r| r.measured_v_mig_bytes),
        col!("measured_t_mig_s", |r| r.measured_t_mig_s),
        col!("measured_t_down_s", |r| r.measured_t_down_s),
        col!("measured_rounds", |r| r.measured_rounds),
        col!("measured_converged", |r| r.measured_converged),
        col!("rel_err_v_mig", |r| r.rel_err_v_mig),
        col!("rel_err_t_mig", |r| r.rel_err_t_mig),
        col!("rel_err_t_down", |r| r.rel_err_t_down),
        col!("predicted_e_mig_j", |r| r.predicted_e_mig_j),
        col!("measured_e_mig_j", |r| r.measured_e_mig_j),
        col!("rel_err_e_mig", |r| r.rel_err_e_mig),
        col!("held_out", |r| r.held_out),
    ];
    DataFrame::new(rows.len(), cols)
}

/// Write an evaluation file atomically (temp file, fsync, rename).
pub fn write_evaluation_file(path: &Path, rows: &[EvaluationRow]) -> Result<(), DatasetError> {
    let mut df = evaluation_frame(rows).map_err(|e| DatasetError::polars(path, e))?;
    crate::io::write_parquet_atomic(&mut df, path, EVALUATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_file_is_readable_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.parquet");
        let row = EvaluationRow {
            migration_id: "m".into(),
            vm: "vm".into(),
            workload: None,
            model: "sim".into(),
            history_migrations: 0,
            dirty_rate_bytes_per_s: 1.0,
            rate_bytes_per_s: 2.0,
            first_round_bytes: 3.0,
            hot_set_bytes: None,
            predicted_v_mig_bytes: None,
            predicted_t_mig_s: Some(1.0),
            predicted_t_down_s: None,
            predicted_rounds: 2,
            predicted_stop: "threshold".into(),
            measured_v_mig_bytes: 4.0,
            measured_t_mig_s: 5.0,
            measured_t_down_s: Some(0.1),
            measured_rounds: 3,
            measured_converged: true,
            rel_err_v_mig: None,
            rel_err_t_mig: Some(-0.8),
            rel_err_t_down: None,
            predicted_e_mig_j: Some(10.0),
            measured_e_mig_j: None,
            rel_err_e_mig: None,
            held_out: Some(true),
        };
        write_evaluation_file(&p, &[row.clone(), row]).unwrap();
        let df = crate::io::read_parquet_checked(&p, EVALUATION).unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(df.width(), 26);
    }
}
