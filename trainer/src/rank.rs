//! Choosing which VM to migrate (eq 18 of section 3.4): predict every candidate, score
//! C = a T_down + b T_mig + c V_mig + d E_mig with each metric divided by its maximum over
//! the candidates, and sort (least cost first; non-converging candidates last).

use datasets::candidates::Candidates;

use crate::predict::{
    simulate, simulate_fixed_batch, Batch, BatchOut, DowntimeModel, EnergyModel, GammaModel,
    Hypervisor, PredictError, RatePolicy, Scenario, Stop, NO_HOT_SET,
};

/// Errors of ranking.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RankError {
    /// Weights that do not parse or do not sum to 1.
    #[error("weights '{text}': {problem}")]
    Weights {
        /// The text given.
        text: String,
        /// What was expected.
        problem: String,
    },
    /// A candidate row that cannot be predicted.
    #[error("candidate row {row} ('{vm}'): {problem}")]
    Row {
        /// Row number from 0.
        row: usize,
        /// VM name.
        vm: String,
        /// What is wrong.
        problem: String,
    },
}

/// The weights a, b, c, d of eq 18 (T_down, T_mig, V_mig, E_mig).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Weights {
    /// Weight of T_down.
    pub t_down: f64,
    /// Weight of T_mig.
    pub t_mig: f64,
    /// Weight of V_mig.
    pub v_mig: f64,
    /// Weight of E_mig.
    pub e_mig: f64,
}

impl std::str::FromStr for Weights {
    type Err = RankError;
    fn from_str(text: &str) -> Result<Self, RankError> {
        let bad = |problem: &str| RankError::Weights {
            text: text.into(),
            problem: problem.into(),
        };
        let v: Vec<f64> = text
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("expected four numbers a,b,c,d"))?;
        if v.len() != 4 {
            return Err(bad(
                "expected four numbers a,b,c,d (T_down, T_mig, V_mig, E_mig)",
            ));
        }
        if v.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(bad("weights must be finite and non-negative"));
        }
        let sum: f64 = v.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(bad(&format!("weights sum to {sum}, expected 1")));
        }
        Ok(Weights {
            t_down: v[0],
            t_mig: v[1],
            v_mig: v[2],
            e_mig: v[3],
        })
    }
}

/// Defaults for columns the candidates file lacks.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Stop rule.
    pub hypervisor: Hypervisor,
    /// Rate policy (a fixed policy's rate is replaced by a `rate_bytes_per_s` column).
    pub rate: Option<RatePolicy>,
    /// QEMU downtime limit, s.
    pub downtime_limit_s: f64,
    /// The downtime model ([`DowntimeModel::default_for`] the stop rule unless learned).
    pub downtime: DowntimeModel,
}

/// Predictions of every candidate as columns (NaN where a migration never completes).
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// V_mig, bytes.
    pub v_mig_bytes: Vec<f64>,
    /// T_mig, s.
    pub t_mig_s: Vec<f64>,
    /// T_down, s.
    pub t_down_s: Vec<f64>,
    /// E_mig, J (NaN without an energy model).
    pub e_mig_j: Vec<f64>,
    /// Rounds.
    pub rounds: Vec<u32>,
    /// Why each ended.
    pub stop: Vec<Stop>,
}

/// The scenario of candidate `i`.
pub fn scenario(c: &Candidates, i: usize, d: &Defaults) -> Result<Scenario, RankError> {
    let row_err = |problem: String| RankError::Row {
        row: i,
        vm: c.vm.get(i).to_string(),
        problem,
    };
    let hypervisor = match &c.hypervisor {
        Some(h) => h[i].parse().map_err(row_err)?,
        None => d.hypervisor,
    };
    let rate = match (&c.rate_bytes_per_s, d.rate) {
        (_, Some(p @ RatePolicy::Adaptive { .. })) => p,
        (Some(r), _) => RatePolicy::Fixed {
            rate_bytes_per_s: r[i],
        },
        (None, Some(p)) => p,
        (None, None) => {
            return Err(row_err(
                "no rate: give --rate or --adaptive, or a rate_bytes_per_s column".into(),
            ))
        }
    };
    Ok(Scenario {
        hypervisor,
        vm_mem_bytes: c.vm_mem_bytes[i],
        dirty_rate_bytes_per_s: c.dirty_rate_bytes_per_s[i],
        rate,
        downtime_limit_s: c
            .downtime_limit_s
            .as_ref()
            .map_or(d.downtime_limit_s, |v| v[i]),
        hot_set_bytes: NO_HOT_SET,
        downtime: d.downtime,
    })
}

/// The batch inputs when every candidate has a fixed rate under the default stop rule.
fn fixed_batch<'a>(c: &'a Candidates, d: &Defaults) -> Option<Batch<'a>> {
    let (rates, rate) = match (&c.rate_bytes_per_s, d.rate) {
        (_, Some(RatePolicy::Adaptive { .. })) => return None,
        (Some(r), _) => (Some(r.as_slice()), 0.0),
        (None, Some(RatePolicy::Fixed { rate_bytes_per_s })) => (None, rate_bytes_per_s),
        (None, None) => return None,
    };
    Some(Batch {
        hypervisor: d.hypervisor,
        vm_mem_bytes: &c.vm_mem_bytes,
        dirty_rate_bytes_per_s: &c.dirty_rate_bytes_per_s,
        rates,
        rate_bytes_per_s: rate,
        limits: c.downtime_limit_s.as_deref(),
        downtime_limit_s: d.downtime_limit_s,
        hot_sets: None,
        hot_set_bytes: NO_HOT_SET,
        downtime: d.downtime,
    })
}

/// Predict every candidate with Algorithm 1.
pub fn predict_all(
    c: &Candidates,
    d: &Defaults,
    gamma: &GammaModel,
    energy: Option<&EnergyModel>,
) -> Result<Predictions, RankError> {
    let n = c.len();
    let mut p = Predictions {
        v_mig_bytes: Vec::with_capacity(n),
        t_mig_s: Vec::with_capacity(n),
        t_down_s: Vec::with_capacity(n),
        e_mig_j: Vec::with_capacity(n),
        rounds: Vec::with_capacity(n),
        stop: Vec::with_capacity(n),
    };
    // The common case (one stop rule, fixed rates): check the columns once, then the
    // interleaved batch simulation.
    if let (None, Some(fast)) = (&c.hypervisor, fixed_batch(c, d)) {
        let bad = |col: &[f64], what: &str, positive: bool| {
            col.iter()
                .position(|x| !x.is_finite() || *x < 0.0 || (positive && *x == 0.0))
                .map(|i| RankError::Row {
                    row: i,
                    vm: c.vm.get(i).to_string(),
                    problem: format!("{what} = {}: expected a finite positive number", col[i]),
                })
        };
        let checks = [
            bad(&c.vm_mem_bytes, "vm_mem_bytes", true),
            bad(&c.dirty_rate_bytes_per_s, "dirty_rate_bytes_per_s", false),
            fast.rates.and_then(|r| bad(r, "rate_bytes_per_s", true)),
            fast.limits.and_then(|r| bad(r, "downtime_limit_s", true)),
        ];
        if let Some(e) = checks.into_iter().flatten().next() {
            return Err(e);
        }
        if fast.rates.is_none()
            && !(fast.rate_bytes_per_s.is_finite() && fast.rate_bytes_per_s > 0.0)
        {
            return Err(RankError::Row {
                row: 0,
                vm: c.vm.get(0).to_string(),
                problem: "rate: expected a finite positive number".into(),
            });
        }
        p.v_mig_bytes.resize(n, 0.0);
        p.t_mig_s.resize(n, 0.0);
        p.t_down_s.resize(n, 0.0);
        p.e_mig_j.resize(n, 0.0);
        p.rounds.resize(n, 0);
        p.stop.resize(n, Stop::Threshold);
        simulate_fixed_batch(
            &fast,
            gamma,
            energy,
            BatchOut {
                v_mig_bytes: &mut p.v_mig_bytes,
                t_mig_s: &mut p.t_mig_s,
                t_down_s: &mut p.t_down_s,
                e_mig_j: &mut p.e_mig_j,
                rounds: &mut p.rounds,
                stop: &mut p.stop,
            },
        );
        return Ok(p);
    }
    for i in 0..n {
        let s = scenario(c, i, d)?;
        s.check().map_err(|e: PredictError| RankError::Row {
            row: i,
            vm: c.vm.get(i).to_string(),
            problem: e.to_string(),
        })?;
        let r = simulate(&s, gamma, energy);
        p.v_mig_bytes.push(r.v_mig_bytes.unwrap_or(f64::NAN));
        p.t_mig_s.push(r.t_mig_s.unwrap_or(f64::NAN));
        p.t_down_s.push(r.t_down_s.unwrap_or(f64::NAN));
        p.e_mig_j.push(r.e_mig_j.unwrap_or(f64::NAN));
        p.rounds.push(r.rounds);
        p.stop.push(r.stop);
    }
    Ok(p)
}

/// Cost C of every candidate (NaN for those that never complete) and the order: converging
/// candidates by cost, then forced ones by cost, then those that never complete.
pub fn rank(p: &Predictions, w: &Weights) -> (Vec<f64>, Vec<u32>) {
    let max = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max)
    };
    let inv = |m: f64| if m > 0.0 { 1.0 / m } else { 0.0 };
    let k_down = w.t_down * inv(max(&p.t_down_s));
    let k_mig = w.t_mig * inv(max(&p.t_mig_s));
    let k_v = w.v_mig * inv(max(&p.v_mig_bytes));
    let k_e = if w.e_mig > 0.0 {
        w.e_mig * inv(max(&p.e_mig_j))
    } else {
        0.0
    };
    let n = p.stop.len();
    let mut cost = Vec::with_capacity(n);
    // Sort keys: class in the top bits, then the cost's bits (non-negative floats order as
    // their bit patterns), then the row: one integer sort.
    let mut keys: Vec<(u64, u32)> = Vec::with_capacity(n);
    for i in 0..n {
        let c = k_down * p.t_down_s[i]
            + k_mig * p.t_mig_s[i]
            + k_v * p.v_mig_bytes[i]
            + if k_e > 0.0 { k_e * p.e_mig_j[i] } else { 0.0 };
        cost.push(c);
        let class: u64 = match p.stop[i] {
            s if s.converges() => 0,
            s if s.completes() => 1,
            _ => 2,
        };
        // Costs lie in [0, 1]: 62 bits keep their order; NaN (class 2) maps to 0.
        let bits = if c.is_finite() {
            c.max(0.0).to_bits() >> 2
        } else {
            0
        };
        keys.push(((class << 62) | bits, i as u32));
    }
    keys.sort_unstable();
    (cost, keys.into_iter().map(|(_, i)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::candidates::Names;

    #[test]
    fn weights_must_sum_to_one() {
        assert!("0.25,0.25,0.25,0.25".parse::<Weights>().is_ok());
        let e = "0.5,0.5,0.5,0".parse::<Weights>().unwrap_err().to_string();
        assert!(e.contains("sum to 1.5"), "{e}");
        assert!("1,0,0".parse::<Weights>().is_err());
        assert!("a,b,c,d".parse::<Weights>().is_err());
    }

    #[test]
    fn ranks_by_normalised_cost_with_non_converging_last() {
        let mut vm = Names::default();
        for n in ["big", "small", "hot", "mid"] {
            vm.push(n);
        }
        let c = Candidates {
            vm,
            vm_mem_bytes: vec![4e9, 1e9, 1e9, 2e9],
            dirty_rate_bytes_per_s: vec![1e6, 1e6, 2e8, 1e6],
            rate_bytes_per_s: None,
            downtime_limit_s: None,
            hypervisor: None,
        };
        let d = Defaults {
            hypervisor: Hypervisor::Qemu,
            rate: Some(RatePolicy::Fixed {
                rate_bytes_per_s: 1e8,
            }),
            downtime_limit_s: 0.3,
            downtime: DowntimeModel::QEMU_DEFAULT,
        };
        let e = EnergyModel {
            alpha_j_per_byte: 5e-7,
            beta_j: 20.0,
        };
        let p = predict_all(&c, &d, &GammaModel::ZERO, Some(&e)).unwrap();
        let w: Weights = "0,0,1,0".parse().unwrap();
        let (cost, order) = rank(&p, &w);
        assert_eq!(order, vec![1, 3, 0, 2]);
        assert_eq!(p.stop[2], Stop::NeverConverges);
        assert!(cost[2].is_nan());
        // Normalised by the largest V_mig (the 4 GB guest): its cost is 1.
        assert!((cost[0] - 1.0).abs() < 1e-12);
        assert!((cost[1] - p.v_mig_bytes[1] / p.v_mig_bytes[0]).abs() < 1e-12);
    }
}
