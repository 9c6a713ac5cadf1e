//! Learning the downtime model ([`DowntimeModel`]: T_down = (V_dev + V_last) / R + T_fixed)
//! from measured migrations.
//!
//! From one completed migration with its rounds:
//! - V_last, the RAM the stop-and-copy round sent, is what was dirty when pre-copy stopped:
//!   the pages the round before it dirtied (`dirtied_pages` x page size);
//! - the stop-and-copy round's measured bytes are V_dev + V_last, so V_dev_m = those bytes
//!   - V_last (when the rounds give both);
//! - T_fixed_m = T_down - (stop-and-copy bytes) / R, with R the rate the prediction uses
//!   (the migration's bandwidth limit).
//!
//! The model takes the median of each over the migrations learned from (robust to the odd
//! migration whose downtime a descheduled vCPU stretched), T_fixed at least 0; without an
//! observation the documented default of the stop rule stays.

use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;
use serde::Serialize;

use crate::predict::DowntimeModel;

/// What one migration says about the downtime model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DowntimeObs {
    /// V_dev_m, bytes (None: the rounds do not give the last round's RAM).
    pub v_dev_bytes: Option<f64>,
    /// T_fixed_m, s.
    pub t_fixed_s: f64,
}

/// The observation of one completed migration (None: not converged, no downtime, no
/// stop-and-copy round, or no positive rate). `rate_bytes_per_s` is the rate its prediction
/// uses.
pub fn observe(
    m: &MigrationRow,
    rounds: &[&RoundRow],
    rate_bytes_per_s: f64,
) -> Option<DowntimeObs> {
    let usable_rate = rate_bytes_per_s.is_finite() && rate_bytes_per_s > 0.0;
    if !(m.converged && usable_rate) {
        return None;
    }
    let down = m.t_down_s.filter(|t| t.is_finite() && *t >= 0.0)?;
    let last = rounds.iter().find(|r| r.last)?;
    let sent = last.sent_bytes as f64;
    let before = rounds.iter().find(|r| r.round + 1 == last.round);
    let v_last_ram = before
        .and_then(|r| r.dirtied_pages)
        .map(|p| p as f64 * m.page_size_bytes as f64);
    Some(DowntimeObs {
        v_dev_bytes: v_last_ram.map(|v| (sent - v).max(0.0)),
        t_fixed_s: down - sent / rate_bytes_per_s,
    })
}

fn median(mut x: Vec<f64>) -> Option<f64> {
    x.retain(|v| v.is_finite());
    if x.is_empty() {
        return None;
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    Some(if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    })
}

/// The model learned from `obs` (medians, T_fixed at least 0), each part falling back to
/// `default` when no observation gives it.
pub fn learn(obs: &[DowntimeObs], default: DowntimeModel) -> DowntimeModel {
    DowntimeModel {
        v_dev_bytes: median(obs.iter().filter_map(|o| o.v_dev_bytes).collect())
            .unwrap_or(default.v_dev_bytes),
        t_fixed_s: median(obs.iter().map(|o| o.t_fixed_s).collect())
            .map_or(default.t_fixed_s, |t| t.max(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn medians_and_defaults() {
        let d = DowntimeModel::QEMU_DEFAULT;
        assert_eq!(learn(&[], d), d);
        let o = |v: Option<f64>, t| DowntimeObs {
            v_dev_bytes: v,
            t_fixed_s: t,
        };
        let m = learn(&[o(Some(5e5), 0.004), o(None, 0.010), o(Some(7e5), 0.5)], d);
        assert_eq!(m.v_dev_bytes, 6e5);
        assert_eq!(m.t_fixed_s, 0.010);
        // A negative median overhead (a rate above the limit) is no overhead.
        assert_eq!(learn(&[o(None, -0.002)], d).t_fixed_s, 0.0);
        assert_eq!(learn(&[o(None, -0.002)], d).v_dev_bytes, d.v_dev_bytes);
    }

    proptest! {
        #[test]
        fn a_model_measured_exactly_is_learned_back(v_dev in 0.0f64..5e6, t_fixed in 0.0f64..0.1, rate in 1e6f64..1e9, lasts in proptest::collection::vec(0u64..100_000, 1..9)) {
            // Migrations whose downtime is exactly the model's: the learned model is it.
            let obs: Vec<DowntimeObs> = lasts.iter().map(|pages| {
                let v_last = *pages as f64 * 4096.0;
                let sent = v_dev + v_last;
                let down = DowntimeModel { v_dev_bytes: v_dev, t_fixed_s: t_fixed }.t_down_s(v_last, rate);
                DowntimeObs { v_dev_bytes: Some(sent - v_last), t_fixed_s: down - sent / rate }
            }).collect();
            let m = learn(&obs, DowntimeModel::PAPER);
            prop_assert!((m.v_dev_bytes - v_dev).abs() <= 1e-6 * v_dev.max(1.0));
            prop_assert!((m.t_fixed_s - t_fixed).abs() <= 1e-9);
        }
    }
}
