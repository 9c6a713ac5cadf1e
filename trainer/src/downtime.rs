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
//! - rho_m (QEMU) = (stop-and-copy bytes - V_dev) / (R x downtime limit): where under the
//!   stop threshold the VM's last round landed.
//!
//! The model takes the median of each over the migrations learned from (robust to the odd
//! migration whose downtime a descheduled vCPU stretched), T_fixed at least 0; without an
//! observation the documented default of the stop rule stays (no rho: the simulated last
//! round).

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
    /// The stop-and-copy round's bytes (V_dev + V_last), bytes.
    pub last_round_bytes: f64,
    /// QEMU: its stop threshold R x downtime limit, bytes (None: another stop rule, or no
    /// limit recorded).
    pub threshold_bytes: Option<f64>,
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
    let qemu = matches!(m.hypervisor.as_str(), "qemu" | "libvirt");
    Some(DowntimeObs {
        v_dev_bytes: v_last_ram.map(|v| (sent - v).max(0.0)),
        t_fixed_s: down - sent / rate_bytes_per_s,
        last_round_bytes: sent,
        threshold_bytes: m
            .downtime_limit_s
            .filter(|l| qemu && l.is_finite() && *l > 0.0)
            .map(|l| l * rate_bytes_per_s),
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
/// `default` when no observation gives it. rho (QEMU) = the median of
/// (stop-and-copy bytes - V_dev) / threshold, with the V_dev the model uses, so that a VM
/// migrated again at the same rate and limit is predicted its measured downtime.
pub fn learn(obs: &[DowntimeObs], default: DowntimeModel) -> DowntimeModel {
    let v_dev =
        median(obs.iter().filter_map(|o| o.v_dev_bytes).collect()).unwrap_or(default.v_dev_bytes);
    DowntimeModel {
        v_dev_bytes: v_dev,
        t_fixed_s: median(obs.iter().map(|o| o.t_fixed_s).collect())
            .map_or(default.t_fixed_s, |t| t.max(0.0)),
        last_share: median(
            obs.iter()
                .filter_map(|o| Some((o.last_round_bytes - v_dev) / o.threshold_bytes?))
                .collect(),
        )
        .or(default.last_share),
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
            last_round_bytes: 1e6,
            threshold_bytes: None,
        };
        let m = learn(&[o(Some(5e5), 0.004), o(None, 0.010), o(Some(7e5), 0.5)], d);
        assert_eq!(m.v_dev_bytes, 6e5);
        assert_eq!(m.t_fixed_s, 0.010);
        assert_eq!(m.last_share, None, "no threshold, no rho");
        // A negative median overhead (a rate above the limit) is no overhead.
        assert_eq!(learn(&[o(None, -0.002)], d).t_fixed_s, 0.0);
        assert_eq!(learn(&[o(None, -0.002)], d).v_dev_bytes, d.v_dev_bytes);
        // rho with the model's own V_dev: (1 MB - 400 kB) / 3 MB.
        let with = DowntimeObs {
            threshold_bytes: Some(3e6),
            ..o(None, 0.004)
        };
        assert!((learn(&[with], d).last_share.unwrap() - 0.2).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn a_model_measured_exactly_is_learned_back(v_dev in 0.0f64..5e6, t_fixed in 0.0f64..0.1, rate in 1e6f64..1e9, limit in 0.01f64..1.0, lasts in proptest::collection::vec(0u64..100_000, 1..9)) {
            // Migrations whose downtime is exactly the model's: the learned model is it, and
            // it predicts their median downtime back at the same rate and limit.
            let truth = DowntimeModel { v_dev_bytes: v_dev, t_fixed_s: t_fixed, last_share: None };
            let obs: Vec<DowntimeObs> = lasts.iter().map(|pages| {
                let v_last = *pages as f64 * 4096.0;
                let sent = v_dev + v_last;
                let down = truth.t_down_s(v_last, rate);
                DowntimeObs { v_dev_bytes: Some(sent - v_last), t_fixed_s: down - sent / rate, last_round_bytes: sent, threshold_bytes: Some(rate * limit) }
            }).collect();
            let m = learn(&obs, DowntimeModel::PAPER);
            prop_assert!((m.v_dev_bytes - v_dev).abs() <= 1e-6 * v_dev.max(1.0));
            prop_assert!((m.t_fixed_s - t_fixed).abs() <= 1e-9);
            let mut downs: Vec<f64> = lasts.iter().map(|p| truth.t_down_s(*p as f64 * 4096.0, rate)).collect();
            downs.sort_by(f64::total_cmp);
            let n = downs.len();
            let med = if n % 2 == 1 { downs[n / 2] } else { (downs[n / 2 - 1] + downs[n / 2]) / 2.0 };
            let got = m.t_down_of(f64::NAN, rate * limit, rate);
            prop_assert!((got - med).abs() <= 1e-9 * med.max(1e-3), "{got} vs {med}");
        }
    }
}
