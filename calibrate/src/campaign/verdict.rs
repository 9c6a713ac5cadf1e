//! Acceptance verdicts: each threshold, the measured value, by how much, and what to try.

use trainer::coef::CoefficientFile;

use super::config::Thresholds;
use crate::summary::Verdict;

/// The lowest window coverage of a campaign: (migration id, host, coverage 0..1).
pub type WorstWindow = (String, String, f64);

/// Judge the energy model and the windows against the thresholds.
pub fn verdicts(
    t: &Thresholds,
    energy: Option<&CoefficientFile>,
    worst_window: Option<&WorstWindow>,
    n_migrations: usize,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    let r2 = energy.map(|f| f.fit.r_squared);
    out.push(match r2 {
        Some(v) if v >= t.energy_r2 => Verdict {
            name: "energy R^2".into(),
            value: Some(v),
            threshold: t.energy_r2,
            comparison: ">=".into(),
            unit: String::new(),
            passed: true,
            detail: format!("R^2 {v:.4} is {:.4} above the threshold", v - t.energy_r2),
        },
        Some(v) => Verdict {
            name: "energy R^2".into(),
            value: Some(v),
            threshold: t.energy_r2,
            comparison: ">=".into(),
            unit: String::new(),
            passed: false,
            detail: format!(
                "R^2 {v:.4} is {:.4} below {:.2}: E_mig does not follow V_mig closely. Try: keep both \
                 hosts idle apart from the migration (no background jobs; a longer settle_s), check \
                 that P_0 is stable (baseline spread in the report), and widen the V_mig range (more \
                 memory sizes, dirtying rates or bandwidths)",
                t.energy_r2 - v,
                t.energy_r2
            ),
        },
        None => Verdict {
            name: "energy R^2".into(),
            value: None,
            threshold: t.energy_r2,
            comparison: ">=".into(),
            unit: String::new(),
            passed: false,
            detail: format!(
                "no energy model could be fitted from {n_migrations} migration(s). Try: run at \
                 least 3 migrations with different V_mig, and check the window coverage"
            ),
        },
    });
    let cv = energy.and_then(|f| f.fit.cross_validation.as_ref());
    let mape = cv.and_then(|c| c.mape_percent);
    out.push(match mape {
        Some(v) if v <= t.cv_mape_e_mig_pct => Verdict {
            name: "CV MAPE of E_mig".into(),
            value: Some(v),
            threshold: t.cv_mape_e_mig_pct,
            comparison: "<=".into(),
            unit: "%".into(),
            passed: true,
            detail: format!(
                "{v:.2} % over {} folds is {:.2} points under the threshold",
                cv.map_or(0, |c| c.folds),
                t.cv_mape_e_mig_pct - v
            ),
        },
        Some(v) => Verdict {
            name: "CV MAPE of E_mig".into(),
            value: Some(v),
            threshold: t.cv_mape_e_mig_pct,
            comparison: "<=".into(),
            unit: "%".into(),
            passed: false,
            detail: format!(
                "{v:.2} % is {:.2} points over {:.1} %: held-out migrations are predicted poorly. \
                 Try: more repetitions (noise averages out), a longer settle_s so a window does \
                 not start before power is back at P_0, and look for outliers in the residual plot",
                v - t.cv_mape_e_mig_pct,
                t.cv_mape_e_mig_pct
            ),
        },
        None => Verdict {
            name: "CV MAPE of E_mig".into(),
            value: None,
            threshold: t.cv_mape_e_mig_pct,
            comparison: "<=".into(),
            unit: "%".into(),
            passed: false,
            detail: format!(
                "not measured: {n_migrations} migration(s) are too few to cross-validate. Try: \
                 plan at least 10 migrations (more repetitions)"
            ),
        },
    });
    let pct = t.coverage_pct;
    out.push(match worst_window {
        Some((id, host, c)) if c * 100.0 >= pct => Verdict {
            name: "window coverage".into(),
            value: Some(c * 100.0),
            threshold: pct,
            comparison: ">=".into(),
            unit: "%".into(),
            passed: true,
            detail: format!(
                "every window is covered at least {:.2} % (lowest: {id} on {host})",
                c * 100.0
            ),
        },
        Some((id, host, c)) => Verdict {
            name: "window coverage".into(),
            value: Some(c * 100.0),
            threshold: pct,
            comparison: ">=".into(),
            unit: "%".into(),
            passed: false,
            detail: format!(
                "{id} on {host} is covered {:.2} %, {:.2} points under {pct:.1} %: the meter \
                 dropped records during it. Try: check the meter's USB cable and serial device \
                 (the capture reports reconnects and gaps), then redo it: `migwatt calibrate \
                 run CONFIG --redo {id}`",
                c * 100.0,
                pct - c * 100.0
            ),
        },
        None => Verdict {
            name: "window coverage".into(),
            value: None,
            threshold: pct,
            comparison: ">=".into(),
            unit: "%".into(),
            passed: false,
            detail: "no migration window to judge: no migration finished".into(),
        },
    });
    out
}
