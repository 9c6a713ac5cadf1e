//! Acceptance verdicts: each threshold, the measured value, by how much, and what to try.

use trainer::coef::CoefficientFile;

use super::config::Thresholds;
use crate::summary::Verdict;

/// The lowest window coverage of a campaign: (migration id, host, coverage 0..1).
pub type WorstWindow = (String, String, f64);

/// A verdict whose pass/fail follows from `value` against `threshold`.
fn verdict(
    name: &str,
    value: Option<f64>,
    threshold: f64,
    at_least: bool,
    unit: &str,
    detail: String,
) -> Verdict {
    let passed = value.is_some_and(|v| {
        if at_least {
            v >= threshold
        } else {
            v <= threshold
        }
    });
    Verdict {
        name: name.into(),
        value,
        threshold,
        comparison: if at_least { ">=" } else { "<=" }.into(),
        unit: unit.into(),
        passed,
        detail,
    }
}

/// Judge the energy model and the windows against the thresholds.
pub fn verdicts(
    t: &Thresholds,
    energy: Option<&CoefficientFile>,
    worst_window: Option<&WorstWindow>,
    n_migrations: usize,
) -> Vec<Verdict> {
    let r2 = energy.map(|f| f.fit.r_squared);
    let r2_detail = match r2 {
        Some(v) if v >= t.energy_r2 => {
            format!("R^2 {v:.4} is {:.4} above the threshold", v - t.energy_r2)
        }
        Some(v) => format!(
            "R^2 {v:.4} is {:.4} below {:.2}: E_mig does not follow V_mig closely. Try: keep both \
             hosts idle apart from the migration (no background jobs; a longer settle_s), check \
             that P_0 is stable (baseline spread in the report), and widen the V_mig range (more \
             memory sizes, dirtying rates or bandwidths)",
            t.energy_r2 - v,
            t.energy_r2
        ),
        None => format!(
            "no energy model could be fitted from {n_migrations} migration(s). Try: run at \
             least 3 migrations with different V_mig, and check the window coverage"
        ),
    };
    let cv = energy.and_then(|f| f.fit.cross_validation.as_ref());
    let mape = cv.and_then(|c| c.mape_percent);
    let mape_detail = match mape {
        Some(v) if v <= t.cv_mape_e_mig_pct => format!(
            "{v:.2} % over {} folds is {:.2} points under the threshold",
            cv.map_or(0, |c| c.folds),
            t.cv_mape_e_mig_pct - v
        ),
        Some(v) => format!(
            "{v:.2} % is {:.2} points over {:.1} %: held-out migrations are predicted poorly. \
             Try: more repetitions (noise averages out), a longer settle_s so a window does \
             not start before power is back at P_0, and look for outliers in the residual plot",
            v - t.cv_mape_e_mig_pct,
            t.cv_mape_e_mig_pct
        ),
        None => format!(
            "not measured: {n_migrations} migration(s) are too few to cross-validate. Try: \
             plan at least 10 migrations (more repetitions)"
        ),
    };
    let pct = t.coverage_pct;
    let coverage = worst_window.map(|(_, _, c)| c * 100.0);
    let coverage_detail = match worst_window {
        Some((id, host, c)) if c * 100.0 >= pct => format!(
            "every window is covered at least {:.2} % (lowest: {id} on {host})",
            c * 100.0
        ),
        Some((id, host, c)) => format!(
            "{id} on {host} is covered {:.2} %, {:.2} points under {pct:.1} %: the meter \
             dropped records during it. Try: check the meter's USB cable and serial device \
             (the capture reports reconnects and gaps), then redo it: `migwatt calibrate \
             run CONFIG --redo {id}`",
            c * 100.0,
            pct - c * 100.0
        ),
        None => "no migration window to judge: no migration finished".into(),
    };
    vec![
        verdict("energy R^2", r2, t.energy_r2, true, "", r2_detail),
        verdict(
            "CV MAPE of E_mig",
            mape,
            t.cv_mape_e_mig_pct,
            false,
            "%",
            mape_detail,
        ),
        verdict("window coverage", coverage, pct, true, "%", coverage_detail),
    ]
}
