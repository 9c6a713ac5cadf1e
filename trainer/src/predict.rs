//! Prediction of a pre-copy live migration's cost: Algorithm 1 of the paper (rounds with the
//! writable-working-set ratio gamma, eqs 9-10), the closed-form base model (eqs 5-8), the
//! energy model (eq 15) and each hypervisor's stop rule (see shared notes, models.md).
//!
//! Everything is in SI units (bytes, seconds, bytes/s, joules). Coefficient files stating
//! their fits in other units (MB, MB/s) are converted when loaded, see [`EnergyModel::from_file`].

use serde::Serialize;

use crate::coef::{CoefficientFile, ModelKind};
use datasets::quantity::Unit;

/// Resume time added to the last round's time to give the downtime (eq 7), s.
pub const T_RESUME_S: f64 = 0.020;
/// Xen's stop threshold: 50 pages of 4 KiB.
pub const XEN_V_THD_BYTES: f64 = 50.0 * 4096.0;
/// QEMU's default downtime limit, s.
pub const QEMU_DEFAULT_DOWNTIME_LIMIT_S: f64 = 0.300;
/// Relative change below which a round is taken as neither growing nor shrinking, so that
/// D = R exactly is not called diverging because of rounding.
pub const GROWTH_TOLERANCE: f64 = 1e-12;
/// Guard against a simulation that creeps towards the threshold forever (QEMU has no cap).
pub const SAFETY_MAX_ROUNDS: u32 = 100_000;

/// Errors of building a model from coefficient files or of bad inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    /// The coefficient file is not the model expected.
    #[error("{model}: {problem}")]
    Model {
        /// Which model (file name or id).
        model: String,
        /// What is wrong, and what was expected.
        problem: String,
    },
    /// An input value is out of range.
    #[error("{what} = {value}: {problem}")]
    Input {
        /// Which input.
        what: &'static str,
        /// Its value.
        value: f64,
        /// What was expected.
        problem: &'static str,
    },
}

/// The hypervisor whose stop rule the prediction follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// Xen 3.x: 50 pages, 29 rounds before the last, 3 x memory; forces stop-and-copy.
    Xen3,
    /// Xen 4.6+: 50 pages, 5 rounds before the last; forces stop-and-copy.
    Xen4,
    /// QEMU: threshold = rate x downtime limit, no cap, never forces.
    Qemu,
}

impl std::str::FromStr for Hypervisor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "xen3" => Ok(Hypervisor::Xen3),
            "xen4" => Ok(Hypervisor::Xen4),
            "qemu" | "libvirt" => Ok(Hypervisor::Qemu),
            _ => Err(format!("hypervisor '{s}': expected xen3, xen4 or qemu")),
        }
    }
}

impl Hypervisor {
    /// Rounds allowed before the last one (None: no cap).
    pub fn max_rounds(self) -> Option<u32> {
        match self {
            Hypervisor::Xen3 => Some(29),
            Hypervisor::Xen4 => Some(5),
            Hypervisor::Qemu => None,
        }
    }
    /// Cap on total sent as a multiple of memory (None: no cap).
    pub fn max_factor(self) -> Option<f64> {
        match self {
            Hypervisor::Xen3 => Some(3.0),
            _ => None,
        }
    }
    /// Whether the hypervisor forces stop-and-copy when pre-copy does not converge.
    pub fn forces(self) -> bool {
        !matches!(self, Hypervisor::Qemu)
    }
}

/// gamma = omega T_prev + xi D + psi (eq 10), SI units, clamped to [0, 1] when used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaModel {
    /// Coefficient of T_prev, 1/s.
    pub omega_per_s: f64,
    /// Coefficient of D, s/B.
    pub xi_s_per_byte: f64,
    /// Intercept, dimensionless.
    pub psi: f64,
}

impl GammaModel {
    /// gamma = 0: the base model's assumption.
    pub const ZERO: GammaModel = GammaModel {
        omega_per_s: 0.0,
        xi_s_per_byte: 0.0,
        psi: 0.0,
    };

    /// gamma for a round following one of `t_prev_s` at dirtying rate `d`, clamped to [0, 1].
    #[inline]
    pub fn gamma(&self, t_prev_s: f64, d_bytes_per_s: f64) -> f64 {
        (self.omega_per_s * t_prev_s + self.xi_s_per_byte * d_bytes_per_s + self.psi)
            .clamp(0.0, 1.0)
    }

    /// From a gamma coefficient file (features T_prev [time] and D [size/time]).
    pub fn from_file(f: &CoefficientFile) -> Result<Self, PredictError> {
        let bad = |problem: String| PredictError::Model {
            model: f.model.id.clone(),
            problem,
        };
        if f.model.kind != ModelKind::Gamma {
            return Err(bad(format!(
                "is a {} model, expected a gamma model",
                f.model.kind
            )));
        }
        let mut g = GammaModel::ZERO;
        let target = factor(&f.target.unit).ok_or_else(|| {
            bad(format!(
                "target unit '{}' is not dimensionless",
                f.target.unit
            ))
        })?;
        let (mut seen_t, mut seen_d) = (false, false);
        for (v, c) in f.features.iter().zip(&f.coefficients) {
            let fu = factor(&v.unit)
                .ok_or_else(|| bad(format!("feature '{}': unknown unit '{}'", v.column, v.unit)))?;
            let si = c.estimate * target / fu;
            let is_t = v.symbol == "T_prev" || v.column == crate::train::T_PREV;
            let is_d = v.symbol == "D" || v.column == "dirty_rate_bytes_per_s";
            if is_t {
                g.omega_per_s = si;
                seen_t = true;
            } else if is_d {
                g.xi_s_per_byte = si;
                seen_d = true;
            } else {
                return Err(bad(format!(
                    "feature '{}' ({}) is not T_prev or D",
                    v.column, v.symbol
                )));
            }
        }
        if !(seen_t && seen_d) {
            return Err(bad("expected features T_prev and D".into()));
        }
        if f.intercept {
            g.psi = f.coefficients.last().map_or(0.0, |c| c.estimate) * target;
        }
        Ok(g)
    }

    /// The gamma to predict with from a gamma file: the fit, or gamma = 0 with the reason
    /// when the fit is flagged as doing no better than gamma = 0 in cross-validation.
    pub fn for_prediction(f: &CoefficientFile) -> Result<(Self, Option<String>), PredictError> {
        let g = Self::from_file(f)?;
        if f.fit.has_flag(crate::coef::FLAG_WORSE_THAN_ZERO) {
            let cv = f.fit.cross_validation.as_ref();
            return Ok((
                GammaModel::ZERO,
                Some(format!(
                    "gamma model {} is flagged {}: its {} MAE {} is not lower than gamma = 0's {}; predicting with gamma = 0",
                    f.model.id,
                    crate::coef::FLAG_WORSE_THAN_ZERO,
                    if cv.is_some() { "cross-validated" } else { "in-sample" },
                    cv.map_or(f.fit.mae, |c| c.mae),
                    cv.and_then(|c| c.zero_mae)
                        .map_or("-".into(), |z| format!("{z:.4}")),
                )),
            ));
        }
        Ok((g, None))
    }
}

/// E_mig = alpha V_mig + beta (eq 15), SI units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyModel {
    /// J per byte migrated.
    pub alpha_j_per_byte: f64,
    /// Fixed energy per migration, J.
    pub beta_j: f64,
}

/// SI factor of a coefficient file's unit (files that passed `check` always have one).
fn factor(unit: &str) -> Option<f64> {
    Unit::parse(unit).ok().map(|u| u.si_factor())
}

impl EnergyModel {
    /// From an energy coefficient file (target energy, one feature V_mig of size unit).
    pub fn from_file(f: &CoefficientFile) -> Result<Self, PredictError> {
        let bad = |problem: String| PredictError::Model {
            model: f.model.id.clone(),
            problem,
        };
        if f.model.kind != ModelKind::Energy {
            return Err(bad(format!(
                "is a {} model, expected an energy model",
                f.model.kind
            )));
        }
        if f.features.len() != 1 {
            return Err(bad(format!(
                "has {} features, expected one (V_mig)",
                f.features.len()
            )));
        }
        let t = factor(&f.target.unit).ok_or_else(|| {
            bad(format!(
                "target unit '{}' is not an energy unit",
                f.target.unit
            ))
        })?;
        let v = factor(&f.features[0].unit).ok_or_else(|| {
            bad(format!(
                "feature '{}' unit '{}' is not a size unit",
                f.features[0].column, f.features[0].unit
            ))
        })?;
        Ok(EnergyModel {
            alpha_j_per_byte: f.coefficients[0].estimate * t / v,
            beta_j: if f.intercept {
                f.coefficients.last().map_or(0.0, |c| c.estimate) * t
            } else {
                0.0
            },
        })
    }
    /// E_mig for V_mig bytes.
    #[inline]
    pub fn energy_j(&self, v_mig_bytes: f64) -> f64 {
        self.alpha_j_per_byte * v_mig_bytes + self.beta_j
    }
}

/// How the transmission rate is chosen per round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RatePolicy {
    /// One rate for every round, bytes/s.
    Fixed {
        /// The rate.
        rate_bytes_per_s: f64,
    },
    /// R_0 = R_min; R_i = clamp(D + delta, R_min, R_max) (section 4.3).
    Adaptive {
        /// delta, bytes/s.
        delta_bytes_per_s: f64,
        /// R_min, bytes/s.
        min_bytes_per_s: f64,
        /// R_max, bytes/s.
        max_bytes_per_s: f64,
    },
}

impl RatePolicy {
    /// The paper's adaptive policy: delta 100 Mbit/s, 400-800 Mbit/s.
    pub const PAPER_ADAPTIVE: RatePolicy = RatePolicy::Adaptive {
        delta_bytes_per_s: 12.5e6,
        min_bytes_per_s: 50e6,
        max_bytes_per_s: 100e6,
    };
    /// Rate of round `i` (0-based) given the dirtying rate of the previous round.
    #[inline]
    fn rate(&self, i: u32, d_prev: f64) -> f64 {
        match *self {
            RatePolicy::Fixed { rate_bytes_per_s } => rate_bytes_per_s,
            RatePolicy::Adaptive {
                delta_bytes_per_s,
                min_bytes_per_s,
                max_bytes_per_s,
            } => {
                if i == 0 {
                    min_bytes_per_s
                } else {
                    (d_prev + delta_bytes_per_s).clamp(min_bytes_per_s, max_bytes_per_s)
                }
            }
        }
    }
}

/// The downtime model shared by predict, rank and evaluate: the stop-and-copy round sends
/// the last round's dirty RAM V_last (what the stop rule judged) and the device state V_dev
/// with the guest paused, then the destination resumes after a fixed overhead:
/// T_down = (V_dev + V_last) / R + T_fixed. It generalises eq 7 (T_n + T_resume), which is
/// V_dev = 0 and T_fixed = T_resume = 20 ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DowntimeModel {
    /// V_dev: device state sent during the stop-and-copy round, bytes.
    pub v_dev_bytes: f64,
    /// T_fixed: overhead beyond sending (stop, last sync, resume, the guest seeing it), s.
    pub t_fixed_s: f64,
    /// rho (QEMU): the stop-and-copy round's RAM as a share of the stop threshold
    /// (R x downtime limit), learned from the VM's migrations: V_last = rho x threshold.
    /// Where under the threshold QEMU's last round lands depends on the exact timing of its
    /// last dirty sync, which the round-by-round simulation cannot know, while a VM's
    /// measured downtimes keep to their share of the limit (BENCHMARKS.md, downtime).
    /// None: V_last is the simulated last round.
    pub last_share: Option<f64>,
}

impl DowntimeModel {
    /// Eq 7 as published: no device state, T_resume = 20 ms.
    pub const PAPER: DowntimeModel = DowntimeModel {
        v_dev_bytes: 0.0,
        t_fixed_s: T_RESUME_S,
        last_share: None,
    };
    /// QEMU 10's default here (docs/README of the trainer): about 400 kB of device state
    /// (QEMU's `downtime-bytes` of a migration whose last round had almost no RAM), and 10 ms
    /// between the last byte and the guest running on the destination (exploration runs:
    /// guest-seen downtime 1-20 ms over the last round's bytes / R).
    pub const QEMU_DEFAULT: DowntimeModel = DowntimeModel {
        v_dev_bytes: 400e3,
        t_fixed_s: 0.010,
        last_share: None,
    };
    /// The documented default of a stop rule: [`Self::QEMU_DEFAULT`] for QEMU, [`Self::PAPER`]
    /// for Xen.
    pub fn default_for(hv: Hypervisor) -> DowntimeModel {
        match hv {
            Hypervisor::Qemu => Self::QEMU_DEFAULT,
            _ => Self::PAPER,
        }
    }
    /// T_down for a stop-and-copy round of `v_last_bytes` of RAM at `rate_bytes_per_s`
    /// (V_dev + V_last kept at least 0: a learned rho can put V_last under 0 when V_dev is
    /// the default and the VM's device state is smaller).
    #[inline(always)]
    pub fn t_down_s(&self, v_last_bytes: f64, rate_bytes_per_s: f64) -> f64 {
        (self.v_dev_bytes + v_last_bytes).max(0.0) / rate_bytes_per_s + self.t_fixed_s
    }
    /// V_last: rho x `threshold_bytes` when rho is learned, else the simulated last round.
    #[inline(always)]
    pub fn v_last_bytes(&self, simulated_bytes: f64, threshold_bytes: f64) -> f64 {
        match self.last_share {
            Some(rho) => rho * threshold_bytes,
            None => simulated_bytes,
        }
    }
    /// T_down of a stop-and-copy round the simulation sized `simulated_bytes`, under a stop
    /// threshold of `threshold_bytes`, at `rate_bytes_per_s`.
    #[inline(always)]
    pub fn t_down_of(
        &self,
        simulated_bytes: f64,
        threshold_bytes: f64,
        rate_bytes_per_s: f64,
    ) -> f64 {
        self.t_down_s(
            self.v_last_bytes(simulated_bytes, threshold_bytes),
            rate_bytes_per_s,
        )
    }
    /// Errors for a negative or non-finite V_dev or T_fixed.
    pub fn check(&self) -> Result<(), PredictError> {
        if !(self.v_dev_bytes.is_finite() && self.v_dev_bytes >= 0.0) {
            return Err(PredictError::Input {
                what: "v_dev_bytes",
                value: self.v_dev_bytes,
                problem: "expected a finite size >= 0",
            });
        }
        if !(self.t_fixed_s.is_finite() && self.t_fixed_s >= 0.0) {
            return Err(PredictError::Input {
                what: "t_fixed_s",
                value: self.t_fixed_s,
                problem: "expected a finite duration >= 0",
            });
        }
        if let Some(rho) = self.last_share.filter(|r| !r.is_finite()) {
            return Err(PredictError::Input {
                what: "last_share",
                value: rho,
                problem: "expected a finite share",
            });
        }
        Ok(())
    }
}

/// What is known before a migration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scenario {
    /// Stop rule.
    pub hypervisor: Hypervisor,
    /// Data the first round sends (guest memory, or its non-zero part), bytes.
    pub vm_mem_bytes: f64,
    /// Dirtying rate D, bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// Transmission rate.
    pub rate: RatePolicy,
    /// QEMU downtime limit, s (threshold = rate x limit); ignored by Xen.
    pub downtime_limit_s: f64,
    /// Hot set H: the writable working set, the most data the guest can have dirty however
    /// long a round lasts, bytes ([`NO_HOT_SET`]: no cap, the paper's model).
    ///
    /// This project's extension of the paper's refined model: eqs 9-10 model the writable
    /// working set only through gamma, a linear share of T_i D skipped or coalesced. A guest
    /// whose writes are confined to a hot region dirties at most that region however long
    /// the round (QEMU measured here: a 48 MiB hot region caps a 14 s first round), so the
    /// data dirty after a round of T_i is min(T_i D, H), which a linear gamma cannot follow
    /// from long to short rounds. With H known, gamma is taken as 0 (the cap replaces it).
    pub hot_set_bytes: f64,
    /// How the stop-and-copy round and the fixed overhead make the downtime.
    pub downtime: DowntimeModel,
}

/// [`Scenario::hot_set_bytes`] of a scenario without a hot-set cap.
pub const NO_HOT_SET: f64 = f64::INFINITY;

/// Data dirty after a round that dirtied `raw` bytes at the full rate, capped by the hot set
/// (exactly `raw` when `hot_set` is infinite, NaN kept).
#[inline(always)]
fn capped(raw: f64, hot_set: f64) -> f64 {
    if raw > hot_set {
        hot_set
    } else {
        raw
    }
}

impl Scenario {
    /// Check that every input is finite and positive where it must be.
    pub fn check(&self) -> Result<(), PredictError> {
        let pos = |what, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(PredictError::Input {
                    what,
                    value,
                    problem: "expected a finite positive number",
                })
            }
        };
        pos("vm_mem_bytes", self.vm_mem_bytes)?;
        self.downtime.check()?;
        if !(self.dirty_rate_bytes_per_s.is_finite() && self.dirty_rate_bytes_per_s >= 0.0) {
            return Err(PredictError::Input {
                what: "dirty_rate_bytes_per_s",
                value: self.dirty_rate_bytes_per_s,
                problem: "expected a finite non-negative number",
            });
        }
        match self.rate {
            RatePolicy::Fixed { rate_bytes_per_s } => pos("rate_bytes_per_s", rate_bytes_per_s)?,
            RatePolicy::Adaptive {
                min_bytes_per_s,
                max_bytes_per_s,
                ..
            } => {
                pos("rate_min_bytes_per_s", min_bytes_per_s)?;
                pos("rate_max_bytes_per_s", max_bytes_per_s)?;
                if max_bytes_per_s < min_bytes_per_s {
                    return Err(PredictError::Input {
                        what: "rate_max_bytes_per_s",
                        value: max_bytes_per_s,
                        problem: "expected at least the minimum rate",
                    });
                }
            }
        }
        if self.hypervisor == Hypervisor::Qemu {
            pos("downtime_limit_s", self.downtime_limit_s)?;
        }
        if self.hot_set_bytes.is_nan() || self.hot_set_bytes <= 0.0 {
            return Err(PredictError::Input {
                what: "hot_set_bytes",
                value: self.hot_set_bytes,
                problem: "expected a positive number (infinity: no hot-set cap)",
            });
        }
        Ok(())
    }
}

/// Why pre-copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Dirty data fell under the threshold: converged.
    Threshold,
    /// Dirty data grew (V_{i+1} > V_i): Xen forces the last round.
    Diverging,
    /// The round cap was reached: forced.
    RoundCap,
    /// Total sent exceeded the cap (Xen 3: 3 x memory): forced.
    TrafficCap,
    /// QEMU: dirty data does not shrink; the migration never completes.
    NeverConverges,
    /// The simulation reached [`SAFETY_MAX_ROUNDS`] without reaching the threshold.
    TooManyRounds,
}

impl Stop {
    /// True when the migration reached its threshold.
    pub fn converges(self) -> bool {
        self == Stop::Threshold
    }
    /// True when costs are finite (converged or forced).
    pub fn completes(self) -> bool {
        !matches!(self, Stop::NeverConverges | Stop::TooManyRounds)
    }
    /// A sentence for reports.
    pub fn reason(self) -> &'static str {
        match self {
            Stop::Threshold => "converged: dirty data under the stop threshold",
            Stop::Diverging => "not converging: dirty data grows each round; stop-and-copy forced",
            Stop::RoundCap => "not converging: round cap reached; stop-and-copy forced",
            Stop::TrafficCap => "not converging: traffic cap (3 x memory) reached; stop-and-copy forced",
            Stop::NeverConverges => "never converges: dirtying keeps up with the link and QEMU does not force stop-and-copy",
            Stop::TooManyRounds => "never converges: no threshold reached within the simulation's round limit",
        }
    }
}

/// One simulated round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Round {
    /// Round number from 1 (round 1 sends the whole guest).
    pub round: u32,
    /// Bytes sent.
    pub sent_bytes: f64,
    /// Duration, s.
    pub duration_s: f64,
    /// Transmission rate, bytes/s.
    pub rate_bytes_per_s: f64,
    /// gamma applied to this round's volume (None for round 1 and the stop-and-copy round).
    pub gamma: Option<f64>,
    /// The stop-and-copy round (VM paused).
    pub last: bool,
}

/// The cost of one migration; the costs are None when it never completes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Total bytes sent (V_mig).
    pub v_mig_bytes: Option<f64>,
    /// Migration time (T_mig), s.
    pub t_mig_s: Option<f64>,
    /// Downtime (T_down), s.
    pub t_down_s: Option<f64>,
    /// Energy (E_mig), J (None without an energy model or without completion).
    pub e_mig_j: Option<f64>,
    /// Rounds simulated, including the stop-and-copy round when there is one.
    pub rounds: u32,
    /// Whether pre-copy reached its threshold.
    pub converges: bool,
    /// Why it ended.
    pub stop: Stop,
}

/// A prediction with its per-round trajectory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Totals.
    #[serde(flatten)]
    pub summary: Summary,
    /// Why it ended, in words.
    pub reason: &'static str,
    /// Every round simulated.
    pub trajectory: Vec<Round>,
}

/// Stop threshold V_thd of a scenario's round, bytes.
#[inline]
fn v_thd(s: &Scenario, rate: f64) -> f64 {
    match s.hypervisor {
        Hypervisor::Qemu => rate * s.downtime_limit_s,
        _ => XEN_V_THD_BYTES,
    }
}

/// Data the stop-and-copy round sends if pre-copy stops after a round that dirtied `dirty`
/// bytes of which `next` remain to send after gamma: the stop test judges exactly this, so
/// "under the threshold" and the last round's volume agree (Algorithm 1 tests V_{i+1} but
/// sends T_i D, which contradicts itself once gamma nears 1).
/// - Xen skips pages dirtied again during a round and sends them in the last round, when
///   the guest is paused and nothing is skipped: everything dirty, T_i D (its own stop
///   rule counts sent + skipped, the same pages).
/// - QEMU's gamma is coalescing: rewrites of pages already dirty add nothing, so what is
///   dirty is (1 - gamma) T_i D, and that is what the last round sends.
#[inline(always)]
fn stop_and_copy_bytes(hv: Hypervisor, dirty: f64, next: f64) -> f64 {
    if hv == Hypervisor::Qemu {
        next
    } else {
        dirty
    }
}

/// What the stop rule looks at after a pre-copy round.
struct StopTest {
    /// The hypervisor forces a stop-and-copy when pre-copy does not converge (Xen).
    forces: bool,
    /// What the stop-and-copy would send now ([`stop_and_copy_bytes`]), bytes.
    pending: f64,
    /// V_thd, bytes.
    threshold: f64,
    /// V_{i+1}: what the next pre-copy round would send, bytes.
    next: f64,
    /// V_i: what this round sent, bytes.
    sent: f64,
    /// Rounds done.
    rounds: u32,
    /// Round cap (u32::MAX: none).
    max_rounds: u32,
    /// Bytes sent so far.
    total_sent: f64,
    /// Traffic cap, bytes (infinite: none).
    max_total: f64,
}

/// The stop rules of Algorithm 1 and of each hypervisor, in order (one place, shared by
/// [`simulate`] and [`simulate_fixed_batch`]); None: pre-copy goes on.
#[inline(always)]
fn stop_rule(t: &StopTest) -> Option<Stop> {
    if t.pending <= t.threshold {
        Some(Stop::Threshold)
    } else if t.next > t.sent * (1.0 + GROWTH_TOLERANCE)
        || (!t.forces && t.next >= t.sent * (1.0 - GROWTH_TOLERANCE))
    {
        Some(if t.forces {
            Stop::Diverging
        } else {
            Stop::NeverConverges
        })
    } else if t.rounds >= t.max_rounds {
        Some(Stop::RoundCap)
    } else if t.total_sent > t.max_total {
        Some(Stop::TrafficCap)
    } else if t.rounds >= SAFETY_MAX_ROUNDS {
        Some(Stop::TooManyRounds)
    } else {
        None
    }
}

/// Algorithm 1 without recording rounds: the fast path for ranking.
#[inline]
pub fn simulate(s: &Scenario, gamma: &GammaModel, energy: Option<&EnergyModel>) -> Summary {
    simulate_impl(s, gamma, energy, &mut |_| {})
}

/// Algorithm 1 with its trajectory.
pub fn simulate_trajectory(
    s: &Scenario,
    gamma: &GammaModel,
    energy: Option<&EnergyModel>,
) -> Prediction {
    let mut trajectory = Vec::new();
    let summary = simulate_impl(s, gamma, energy, &mut |r| trajectory.push(r));
    Prediction {
        summary,
        reason: summary.stop.reason(),
        trajectory,
    }
}

#[inline(always)]
fn simulate_impl(
    s: &Scenario,
    gm: &GammaModel,
    energy: Option<&EnergyModel>,
    sink: &mut impl FnMut(Round),
) -> Summary {
    let d = s.dirty_rate_bytes_per_s;
    let max_rounds = s.hypervisor.max_rounds();
    let max_total = s.hypervisor.max_factor().map(|f| f * s.vm_mem_bytes);
    let mut v = s.vm_mem_bytes;
    let mut gamma_used: Option<f64> = None;
    let mut total_v = 0.0;
    let mut total_t = 0.0;
    let mut i: u32 = 0;
    loop {
        let r = s.rate.rate(i, d);
        let t = v / r;
        total_v += v;
        total_t += t;
        sink(Round {
            round: i + 1,
            sent_bytes: v,
            duration_s: t,
            rate_bytes_per_s: r,
            gamma: gamma_used,
            last: false,
        });
        i += 1;
        // Data dirtied during the round, at most the hot set (writable working set).
        let dirty = capped(t * d, s.hot_set_bytes);
        let g = gm.gamma(t, d);
        let next = (1.0 - g) * dirty;
        let pending = stop_and_copy_bytes(s.hypervisor, dirty, next);
        let r_next = s.rate.rate(i, d);
        let stop = stop_rule(&StopTest {
            forces: s.hypervisor.forces(),
            pending,
            threshold: v_thd(s, r_next),
            next,
            sent: v,
            rounds: i,
            max_rounds: max_rounds.unwrap_or(u32::MAX),
            total_sent: total_v,
            max_total: max_total.unwrap_or(f64::INFINITY),
        });
        match stop {
            None => {
                v = next;
                gamma_used = Some(g);
            }
            Some(stop) if !stop.completes() => {
                return Summary {
                    v_mig_bytes: None,
                    t_mig_s: None,
                    t_down_s: None,
                    e_mig_j: None,
                    rounds: i,
                    converges: false,
                    stop,
                };
            }
            Some(stop) => {
                // The last round sends what the stop test judged, with the VM paused.
                let t_last = pending / r_next;
                sink(Round {
                    round: i + 1,
                    sent_bytes: pending,
                    duration_s: t_last,
                    rate_bytes_per_s: r_next,
                    gamma: None,
                    last: true,
                });
                let v_mig = total_v + pending;
                return Summary {
                    v_mig_bytes: Some(v_mig),
                    t_mig_s: Some(total_t + t_last),
                    t_down_s: Some(s.downtime.t_down_of(pending, v_thd(s, r_next), r_next)),
                    e_mig_j: energy.map(|e| e.energy_j(v_mig)),
                    rounds: i + 1,
                    converges: stop.converges(),
                    stop,
                };
            }
        }
    }
}

/// Inputs of [`simulate_fixed_batch`]: fixed rate, one stop rule, columns of candidates.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Stop rule shared by every candidate.
    pub hypervisor: Hypervisor,
    /// First-round data per candidate, bytes.
    pub vm_mem_bytes: &'a [f64],
    /// Dirtying rate per candidate, bytes/s.
    pub dirty_rate_bytes_per_s: &'a [f64],
    /// Rate per candidate (None: `rate_bytes_per_s` for all), bytes/s.
    pub rates: Option<&'a [f64]>,
    /// Rate for all candidates when `rates` is None, bytes/s.
    pub rate_bytes_per_s: f64,
    /// Downtime limit per candidate (None: `downtime_limit_s` for all), s.
    pub limits: Option<&'a [f64]>,
    /// Downtime limit for all when `limits` is None, s.
    pub downtime_limit_s: f64,
    /// Hot set per candidate (None: `hot_set_bytes` for all), bytes; see
    /// [`Scenario::hot_set_bytes`].
    pub hot_sets: Option<&'a [f64]>,
    /// Hot set for all when `hot_sets` is None, bytes ([`NO_HOT_SET`]: no cap).
    pub hot_set_bytes: f64,
    /// The downtime model of every candidate.
    pub downtime: DowntimeModel,
}

/// Outputs of [`simulate_fixed_batch`], one slot per candidate (NaN: never completes).
pub struct BatchOut<'a> {
    /// V_mig, bytes.
    pub v_mig_bytes: &'a mut [f64],
    /// T_mig, s.
    pub t_mig_s: &'a mut [f64],
    /// T_down, s.
    pub t_down_s: &'a mut [f64],
    /// E_mig, J.
    pub e_mig_j: &'a mut [f64],
    /// Rounds.
    pub rounds: &'a mut [u32],
    /// Stop reasons.
    pub stop: &'a mut [Stop],
}

/// Lanes simulated side by side: independent dependency chains the CPU overlaps.
const LANES: usize = 8;

/// Algorithm 1 for many candidates at a fixed rate, with exactly the arithmetic of
/// [`simulate`] (same results bit for bit), interleaving [`LANES`] candidates so that the
/// per-round division and gamma chain of one candidate overlaps with the others'.
pub fn simulate_fixed_batch(
    b: &Batch<'_>,
    gm: &GammaModel,
    energy: Option<&EnergyModel>,
    out: BatchOut<'_>,
) {
    let n = b.vm_mem_bytes.len();
    let forces = b.hypervisor.forces();
    let qemu = b.hypervisor == Hypervisor::Qemu;
    let max_rounds = b.hypervisor.max_rounds().unwrap_or(u32::MAX);
    let max_factor = b.hypervisor.max_factor();
    #[derive(Clone, Copy, Default)]
    struct Lane {
        row: usize,
        v: f64,
        d: f64,
        r: f64,
        thd: f64,
        h: f64,
        max_total: f64,
        total_v: f64,
        total_t: f64,
        i: u32,
        live: bool,
    }
    let load = |row: usize| -> Lane {
        let r = b.rates.map_or(b.rate_bytes_per_s, |x| x[row]);
        let limit = b.limits.map_or(b.downtime_limit_s, |x| x[row]);
        let v = b.vm_mem_bytes[row];
        Lane {
            row,
            v,
            d: b.dirty_rate_bytes_per_s[row],
            r,
            thd: if qemu { r * limit } else { XEN_V_THD_BYTES },
            h: b.hot_sets.map_or(b.hot_set_bytes, |x| x[row]),
            max_total: max_factor.map_or(f64::INFINITY, |f| f * v),
            total_v: 0.0,
            total_t: 0.0,
            i: 0,
            live: true,
        }
    };
    let mut lanes = [Lane::default(); LANES];
    let mut next_row = 0;
    for lane in lanes.iter_mut() {
        if next_row < n {
            *lane = load(next_row);
            next_row += 1;
        }
    }
    let mut live = lanes.iter().filter(|l| l.live).count();
    while live > 0 {
        for lane in lanes.iter_mut() {
            if !lane.live {
                continue;
            }
            let l = *lane;
            let t = l.v / l.r;
            let total_v = l.total_v + l.v;
            let total_t = l.total_t + t;
            let i = l.i + 1;
            let dirty = capped(t * l.d, l.h);
            let g = gm.gamma(t, l.d);
            let next = (1.0 - g) * dirty;
            let pending = if qemu { next } else { dirty };
            let stop = stop_rule(&StopTest {
                forces,
                pending,
                threshold: l.thd,
                next,
                sent: l.v,
                rounds: i,
                max_rounds,
                total_sent: total_v,
                max_total: l.max_total,
            });
            match stop {
                None => {
                    lane.v = next;
                    lane.total_v = total_v;
                    lane.total_t = total_t;
                    lane.i = i;
                }
                Some(stop) => {
                    let row = l.row;
                    out.stop[row] = stop;
                    if stop.completes() {
                        let t_last = pending / l.r;
                        let v_mig = total_v + pending;
                        out.v_mig_bytes[row] = v_mig;
                        out.t_mig_s[row] = total_t + t_last;
                        out.t_down_s[row] = b.downtime.t_down_of(pending, l.thd, l.r);
                        out.e_mig_j[row] = energy.map_or(f64::NAN, |e| e.energy_j(v_mig));
                        out.rounds[row] = i + 1;
                    } else {
                        out.v_mig_bytes[row] = f64::NAN;
                        out.t_mig_s[row] = f64::NAN;
                        out.t_down_s[row] = f64::NAN;
                        out.e_mig_j[row] = f64::NAN;
                        out.rounds[row] = i;
                    }
                    if next_row < n {
                        *lane = load(next_row);
                        next_row += 1;
                    } else {
                        lane.live = false;
                        live -= 1;
                    }
                }
            }
        }
    }
}

/// The closed-form base model (eqs 5-8, gamma = 0), fixed rate only; with the stop rule's
/// caps applied to n. Returns None for an adaptive rate. The closed form has no hot-set
/// cap: [`Scenario::hot_set_bytes`] is ignored (use [`simulate`] for a capped guest).
pub fn base_model(s: &Scenario, energy: Option<&EnergyModel>) -> Option<Summary> {
    let RatePolicy::Fixed {
        rate_bytes_per_s: r,
    } = s.rate
    else {
        return None;
    };
    let v_mem = s.vm_mem_bytes;
    let lambda = s.dirty_rate_bytes_per_s / r;
    let thd = v_thd(s, r);
    // Candidate n (index of the stop-and-copy round, 0-based) for each rule.
    let mut n = f64::INFINITY;
    let mut stop = Stop::TooManyRounds;
    let mut take = |cand: f64, why: Stop| {
        if cand < n {
            n = cand;
            stop = why;
        }
    };
    if lambda < 1.0 {
        // eq 8: smallest n with V_mem lambda^n <= V_thd (n >= 1: round 0 always runs).
        let n_thd = if lambda == 0.0 {
            1.0
        } else {
            (thd / v_mem).ln() / lambda.ln()
        };
        take(n_thd.ceil().max(1.0), Stop::Threshold);
    } else if lambda > 1.0 || !s.hypervisor.forces() {
        take(
            1.0,
            if s.hypervisor.forces() {
                Stop::Diverging
            } else {
                Stop::NeverConverges
            },
        );
    }
    if let Some(m) = s.hypervisor.max_rounds() {
        take(m as f64, Stop::RoundCap);
    }
    if let Some(f) = s.hypervisor.max_factor() {
        // Total after round k = V_mem S(k+1); the rule fires after the first k with S > f.
        let k = if lambda == 1.0 {
            f.floor()
        } else if lambda < 1.0 && f * (1.0 - lambda) >= 1.0 {
            f64::INFINITY
        } else {
            // S(k+1) = (1 - lambda^(k+1)) / (1 - lambda) > f  <=>  k + 1 > log_lambda(1 - f (1 - lambda))
            ((1.0 - f * (1.0 - lambda)).ln() / lambda.ln()).floor()
        };
        take(k + 1.0, Stop::TrafficCap);
    }
    if !stop.completes() || !n.is_finite() {
        return Some(Summary {
            v_mig_bytes: None,
            t_mig_s: None,
            t_down_s: None,
            e_mig_j: None,
            rounds: if n.is_finite() { n as u32 } else { 0 },
            converges: false,
            stop: if n.is_finite() {
                stop
            } else {
                Stop::TooManyRounds
            },
        });
    }
    let geo = |k: f64| {
        if lambda == 1.0 {
            k
        } else {
            (1.0 - lambda.powf(k)) / (1.0 - lambda)
        }
    };
    let v_mig = v_mem * geo(n + 1.0); // eq 5
    let t_mig = v_mem / r * geo(n + 1.0); // eq 6
    let t_down = s.downtime.t_down_of(v_mem * lambda.powf(n), thd, r); // eq 7, [`DowntimeModel`]
    Some(Summary {
        v_mig_bytes: Some(v_mig),
        t_mig_s: Some(t_mig),
        t_down_s: Some(t_down),
        e_mig_j: energy.map(|e| e.energy_j(v_mig)),
        rounds: n as u32 + 1,
        converges: stop.converges(),
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(h: Hypervisor, mem: f64, d: f64, r: f64) -> Scenario {
        Scenario {
            hypervisor: h,
            vm_mem_bytes: mem,
            dirty_rate_bytes_per_s: d,
            rate: RatePolicy::Fixed {
                rate_bytes_per_s: r,
            },
            downtime_limit_s: 0.3,
            hot_set_bytes: NO_HOT_SET,
            downtime: DowntimeModel::PAPER,
        }
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs())
    }

    #[test]
    fn base_model_agrees_with_simulation_at_gamma_zero() {
        let mut checked = 0;
        for h in [Hypervisor::Xen3, Hypervisor::Xen4, Hypervisor::Qemu] {
            for mem in [128.0 * 1048576.0, 1073741824.0, 4e9] {
                for r in [12.5e6, 60e6, 100e6] {
                    for lam in [0.0, 0.05, 0.3, 0.5, 0.71, 0.9, 0.97, 1.0, 1.3] {
                        let s = fixed(h, mem, lam * r, r);
                        let sim = simulate(&s, &GammaModel::ZERO, None);
                        let base = base_model(&s, None).unwrap();
                        assert_eq!(sim.stop, base.stop, "{s:?}");
                        assert_eq!(sim.rounds, base.rounds, "{s:?}");
                        assert_eq!(sim.converges, base.converges);
                        match (sim.v_mig_bytes, base.v_mig_bytes) {
                            (Some(a), Some(b)) => {
                                assert!(close(a, b, 1e-12), "{a} {b} {s:?}");
                                assert!(close(sim.t_mig_s.unwrap(), base.t_mig_s.unwrap(), 1e-12));
                                assert!(close(
                                    sim.t_down_s.unwrap(),
                                    base.t_down_s.unwrap(),
                                    1e-12
                                ));
                                checked += 1;
                            }
                            (None, None) => {}
                            other => panic!("{other:?} {s:?}"),
                        }
                    }
                }
            }
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn batch_gives_the_same_bits_as_simulate() {
        let gm = GammaModel {
            omega_per_s: -0.0463,
            xi_s_per_byte: -1e-10,
            psi: 0.3586,
        };
        let e = EnergyModel {
            alpha_j_per_byte: 5.12e-7,
            beta_j: 20.165,
        };
        let n = 203;
        let mem: Vec<f64> = (0..n).map(|k| 1e8 * (1 + k % 37) as f64).collect();
        let d: Vec<f64> = (0..n).map(|k| 1.3e6 * (k % 101) as f64).collect();
        let rates: Vec<f64> = (0..n).map(|k| 2e7 + 1e6 * (k % 13) as f64).collect();
        // Hot sets: none, one for all, one per candidate (some binding, some not).
        let hots: Vec<f64> = (0..n)
            .map(|k| match k % 4 {
                0 => NO_HOT_SET,
                _ => 1e7 * (1 + k % 29) as f64,
            })
            .collect();
        let cases = [
            (None, NO_HOT_SET),
            (None, 3.4e7),
            (Some(hots.as_slice()), NO_HOT_SET),
        ];
        for (h, (hot_sets, hot_set_bytes)) in [Hypervisor::Xen3, Hypervisor::Xen4, Hypervisor::Qemu]
            .into_iter()
            .flat_map(|h| cases.map(|c| (h, c)))
        {
            let (mut v, mut t, mut td, mut en) =
                (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let (mut rounds, mut stop) = (vec![0; n], vec![Stop::Threshold; n]);
            let b = Batch {
                hypervisor: h,
                vm_mem_bytes: &mem,
                dirty_rate_bytes_per_s: &d,
                rates: Some(&rates),
                rate_bytes_per_s: 0.0,
                limits: None,
                downtime_limit_s: 0.3,
                hot_sets,
                hot_set_bytes,
                downtime: DowntimeModel::QEMU_DEFAULT,
            };
            simulate_fixed_batch(
                &b,
                &gm,
                Some(&e),
                BatchOut {
                    v_mig_bytes: &mut v,
                    t_mig_s: &mut t,
                    t_down_s: &mut td,
                    e_mig_j: &mut en,
                    rounds: &mut rounds,
                    stop: &mut stop,
                },
            );
            let mut kinds = std::collections::HashSet::new();
            for k in 0..n {
                let s = Scenario {
                    hot_set_bytes: hot_sets.map_or(hot_set_bytes, |x| x[k]),
                    downtime: DowntimeModel::QEMU_DEFAULT,
                    ..fixed(h, mem[k], d[k], rates[k])
                };
                let r = simulate(&s, &gm, Some(&e));
                kinds.insert(r.stop);
                assert_eq!((r.stop, r.rounds), (stop[k], rounds[k]), "{h:?} row {k}");
                let same =
                    |a: Option<f64>, b: f64| a.map_or(b.is_nan(), |a| a.to_bits() == b.to_bits());
                assert!(
                    same(r.v_mig_bytes, v[k]) && same(r.t_mig_s, t[k]),
                    "{h:?} row {k}"
                );
                assert!(
                    same(r.t_down_s, td[k]) && same(r.e_mig_j, en[k]),
                    "{h:?} row {k}"
                );
            }
            assert!(kinds.len() >= 2, "{h:?}: {kinds:?}");
        }
    }

    #[test]
    fn qemu_hand_computed_trajectory() {
        // 100 MB at 10 MB/s, D = 5 MB/s, limit 300 ms: V_thd = 3 MB.
        // Rounds: 100 (10 s), 50 (5 s), 25, 12.5, 6.25, then 3.125 <= 3? no: 3.125 > 3,
        // then 1.5625 <= 3: stop; last round sends T_5 D = 0.3125 s * 5 = 1.5625 MB.
        let s = fixed(Hypervisor::Qemu, 100e6, 5e6, 10e6);
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        let sent: Vec<f64> = p.trajectory.iter().map(|r| r.sent_bytes / 1e6).collect();
        let want = [100.0, 50.0, 25.0, 12.5, 6.25, 3.125, 1.5625];
        assert_eq!(sent.len(), want.len(), "{sent:?}");
        for (a, b) in sent.iter().zip(want) {
            assert!(close(*a, b, 1e-12), "{sent:?}");
        }
        assert!(p.trajectory.last().unwrap().last);
        assert_eq!(p.summary.stop, Stop::Threshold);
        assert!(close(p.summary.v_mig_bytes.unwrap(), 198.4375e6, 1e-12));
        assert!(close(p.summary.t_mig_s.unwrap(), 19.84375, 1e-12));
        assert!(close(p.summary.t_down_s.unwrap(), 0.15625 + 0.02, 1e-12));
    }

    #[test]
    fn hot_set_caps_dirty_data_hand_computed() {
        // V_1 = 96 MB at R = 16 MB/s, D = 12 MB/s, hot set H = 34 MB, QEMU limit 50 ms:
        // V_thd = 16 MB/s x 0.05 s = 0.8 MB.
        // Round 1: 96 MB in 6 s dirties min(72, 34) = 34 MB (capped).
        // Then D T_i = 0.75 V_i < H: 34, 25.5, 19.125, ... each 3/4 of the previous.
        // Round 15 sends 0.8077469766139984 MB (> 0.8: not yet), dirtying 0.6058 MB <= 0.8:
        // the last round sends 0.6058102324604988 MB with the VM paused.
        let s = Scenario {
            downtime_limit_s: 0.05,
            hot_set_bytes: 34e6,
            downtime: DowntimeModel::PAPER,
            ..fixed(Hypervisor::Qemu, 96e6, 12e6, 16e6)
        };
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        // (V_i MB, T_i s) by hand, T_i = V_i / 16.
        let want = [
            (96.0, 6.0),
            (34.0, 2.125),
            (25.5, 1.59375),
            (19.125, 1.1953125),
            (14.34375, 0.896484375),
            (10.7578125, 0.67236328125),
            (8.068359375, 0.5042724609375),
            (6.05126953125, 0.378204345703125),
            (4.5384521484375, 0.28365325927734375),
            (3.403839111328125, 0.2127399444580078),
            (2.5528793334960938, 0.15955495834350586),
            (1.9146595001220703, 0.1196662187576294),
            (1.4359946250915527, 0.08974966406822205),
            (1.0769959688186646, 0.06731224805116653),
            (0.8077469766139984, 0.0504841860383749),
            (0.6058102324604988, 0.037863139528781176),
        ];
        assert_eq!(p.trajectory.len(), want.len(), "{:?}", p.trajectory);
        for (r, (v, t)) in p.trajectory.iter().zip(want) {
            assert!(close(r.sent_bytes, v * 1e6, 1e-9), "{r:?} want {v} MB");
            assert!(close(r.duration_s, t, 1e-9), "{r:?} want {t} s");
        }
        assert!(p.trajectory[15].last && !p.trajectory[14].last);
        assert_eq!((p.summary.stop, p.summary.rounds), (Stop::Threshold, 16));
        // V_mig = 96 + 34 (1 - 0.75^15) / 0.25 MB; T_mig = V_mig / 16; T_down = T_16 + 20 ms.
        assert!(close(
            p.summary.v_mig_bytes.unwrap(),
            230.1825693026185e6,
            1e-9
        ));
        assert!(close(p.summary.t_mig_s.unwrap(), 14.386410581413656, 1e-9));
        assert!(close(
            p.summary.t_down_s.unwrap(),
            0.037863139528781176 + 0.02,
            1e-9
        ));
        // Without the cap the same guest needs more: round 2 would send 72 MB.
        let open = simulate(
            &Scenario {
                hot_set_bytes: NO_HOT_SET,
                downtime: DowntimeModel::PAPER,
                ..s
            },
            &GammaModel::ZERO,
            None,
        );
        assert!(open.v_mig_bytes.unwrap() > p.summary.v_mig_bytes.unwrap() + 38e6);
        // A hot set at or under the threshold: round 1's dirt fits in the downtime at once.
        let tiny = Scenario {
            hot_set_bytes: 0.5e6,
            downtime: DowntimeModel::PAPER,
            ..s
        };
        let p = simulate_trajectory(&tiny, &GammaModel::ZERO, None);
        assert_eq!(p.summary.rounds, 2);
        assert_eq!(p.trajectory[1].sent_bytes, 0.5e6);
        // A hot set the link cannot outrun (D > R): QEMU never converges; Xen is forced.
        let hot = Scenario {
            dirty_rate_bytes_per_s: 20e6,
            ..s
        };
        assert_eq!(
            simulate(&hot, &GammaModel::ZERO, None).stop,
            Stop::NeverConverges
        );
        // Inputs: the hot set must be positive (infinity: no cap).
        assert!(Scenario {
            hot_set_bytes: 0.0,
            downtime: DowntimeModel::PAPER,
            ..s
        }
        .check()
        .is_err());
        assert!(Scenario {
            hot_set_bytes: f64::NAN,
            downtime: DowntimeModel::PAPER,
            ..s
        }
        .check()
        .is_err());
        assert!(s.check().is_ok());
    }

    /// Algorithm 1 as it was before the hot-set cap (the dirty data is T_i D), for the
    /// fixed-rate case: the reference the uncapped simulation must equal bit for bit.
    fn simulate_before_hot_set(s: &Scenario, gm: &GammaModel) -> Summary {
        let RatePolicy::Fixed {
            rate_bytes_per_s: r,
        } = s.rate
        else {
            unreachable!()
        };
        let d = s.dirty_rate_bytes_per_s;
        let thd = v_thd(s, r);
        let max_total = s.hypervisor.max_factor().map(|f| f * s.vm_mem_bytes);
        let (mut v, mut total_v, mut total_t, mut i) = (s.vm_mem_bytes, 0.0, 0.0, 0u32);
        loop {
            let t = v / r;
            total_v += v;
            total_t += t;
            i += 1;
            let dirty = t * d;
            let next = (1.0 - gm.gamma(t, d)) * dirty;
            let forces = s.hypervisor.forces();
            // The stop-and-copy volume the stop test judges (see stop_and_copy_bytes).
            let last = if s.hypervisor == Hypervisor::Qemu {
                next
            } else {
                dirty
            };
            let stop = if last <= thd {
                Some(Stop::Threshold)
            } else if next > v * (1.0 + GROWTH_TOLERANCE)
                || (!forces && next >= v * (1.0 - GROWTH_TOLERANCE))
            {
                Some(if forces {
                    Stop::Diverging
                } else {
                    Stop::NeverConverges
                })
            } else if s.hypervisor.max_rounds().is_some_and(|m| i >= m) {
                Some(Stop::RoundCap)
            } else if max_total.is_some_and(|m| total_v > m) {
                Some(Stop::TrafficCap)
            } else if i >= SAFETY_MAX_ROUNDS {
                Some(Stop::TooManyRounds)
            } else {
                None
            };
            match stop {
                None => v = next,
                Some(stop) if !stop.completes() => {
                    return Summary {
                        v_mig_bytes: None,
                        t_mig_s: None,
                        t_down_s: None,
                        e_mig_j: None,
                        rounds: i,
                        converges: false,
                        stop,
                    }
                }
                Some(stop) => {
                    let t_last = last / r;
                    return Summary {
                        v_mig_bytes: Some(total_v + last),
                        t_mig_s: Some(total_t + t_last),
                        t_down_s: Some(t_last + T_RESUME_S),
                        e_mig_j: None,
                        rounds: i + 1,
                        converges: stop.converges(),
                        stop,
                    };
                }
            }
        }
    }

    #[test]
    fn no_hot_set_is_the_old_code_path_bit_for_bit() {
        let gm = GammaModel {
            omega_per_s: -0.0463,
            xi_s_per_byte: -1e-10,
            psi: 0.3586,
        };
        let mut n = 0;
        for h in [Hypervisor::Xen3, Hypervisor::Xen4, Hypervisor::Qemu] {
            for mem in [96e6, 1073741824.0] {
                for lam in [0.0, 0.3, 0.75, 0.97, 1.0, 1.3] {
                    for g in [GammaModel::ZERO, gm] {
                        let s = fixed(h, mem, lam * 16e6, 16e6);
                        assert_eq!(s.hot_set_bytes, NO_HOT_SET);
                        let bits = |x: Option<f64>| x.map(f64::to_bits);
                        let (a, b) = (simulate(&s, &g, None), simulate_before_hot_set(&s, &g));
                        assert_eq!((a.stop, a.rounds), (b.stop, b.rounds), "{s:?}");
                        assert_eq!(bits(a.v_mig_bytes), bits(b.v_mig_bytes), "{s:?}");
                        assert_eq!(bits(a.t_mig_s), bits(b.t_mig_s), "{s:?}");
                        assert_eq!(bits(a.t_down_s), bits(b.t_down_s), "{s:?}");
                        // A hot set no round reaches changes nothing either.
                        let big = Scenario {
                            hot_set_bytes: 1e300,
                            downtime: DowntimeModel::PAPER,
                            ..s
                        };
                        assert_eq!(simulate(&big, &g, None), a);
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 72);
    }

    proptest::proptest! {
        #[test]
        fn the_cap_never_costs_more(mem in 1e6f64..1e10, lam in 0.0f64..0.99, h_share in 0.001f64..2.0, r in 1e6f64..1e9) {
            // Each capped round is at most the uncapped one, so pre-copy converges no later
            // and moves no more data.
            let open = fixed(Hypervisor::Qemu, mem, lam * r, r);
            let capped = Scenario { hot_set_bytes: h_share * mem, ..open };
            let (a, b) = (simulate(&capped, &GammaModel::ZERO, None), simulate(&open, &GammaModel::ZERO, None));
            proptest::prop_assert!(a.converges && b.converges);
            proptest::prop_assert!(a.rounds <= b.rounds);
            proptest::prop_assert!(a.v_mig_bytes.unwrap() <= b.v_mig_bytes.unwrap() * (1.0 + 1e-12));
            proptest::prop_assert!(a.t_mig_s.unwrap() <= b.t_mig_s.unwrap() * (1.0 + 1e-12));
        }
    }

    #[test]
    fn gamma_shrinks_rounds_as_eq_9() {
        // gamma = 0.5 constant: V_{i+1} = 0.5 T_i D.
        let g = GammaModel {
            omega_per_s: 0.0,
            xi_s_per_byte: 0.0,
            psi: 0.5,
        };
        let s = fixed(Hypervisor::Qemu, 100e6, 5e6, 10e6);
        let p = simulate_trajectory(&s, &g, None);
        // 100, 25 (T0 = 10 s, dirty 50, half coalesced), 6.25, then 1.5625 <= 3: QEMU's
        // last round sends the coalesced dirty set the stop test judged.
        let sent: Vec<f64> = p.trajectory.iter().map(|r| r.sent_bytes / 1e6).collect();
        assert_eq!(sent, vec![100.0, 25.0, 6.25, 1.5625]);
        assert_eq!(p.trajectory[1].gamma, Some(0.5));
        assert_eq!(p.trajectory[3].gamma, None);
        // Xen skips the re-dirtied half and sends it in the paused last round: its stop test
        // judges everything dirty (sent + skipped), 50 pages.
        let s = fixed(Hypervisor::Xen4, 100e6, 5e6, 10e6);
        let p = simulate_trajectory(&s, &g, None);
        let last = p.trajectory.last().unwrap();
        let before = &p.trajectory[p.trajectory.len() - 2];
        assert!(last.last);
        assert!((last.sent_bytes - before.duration_s * 5e6).abs() < 1e-6);
    }

    #[test]
    fn stop_test_and_last_round_agree_when_gamma_clamps_to_one() {
        // Issue 16 defect 1: gamma reaching 1 after a long first round (omega 0.608 1/s,
        // xi 6.04e-7 s/B, psi -9.44) made the stop test see 0 bytes while the last round
        // sent all 10 s of dirtying: "converged" with T_down 10.7 s.
        let g = GammaModel {
            omega_per_s: 0.608,
            xi_s_per_byte: 6.04e-7,
            psi: -9.44,
        };
        let s = fixed(
            Hypervisor::Qemu,
            256.0 * 1048576.0,
            6.0 * 1048576.0,
            12.0 * 1048576.0,
        );
        let s = Scenario {
            downtime_limit_s: 0.050,
            ..s
        };
        {
            let p = simulate_trajectory(&s, &g, None);
            let last = p.trajectory.last().unwrap();
            assert!(last.last);
            if p.summary.stop == Stop::Threshold {
                // What the last round sends is what the threshold judged.
                assert!(last.sent_bytes <= 12.0 * 1048576.0 * 0.050 + 1e-6, "{p:?}");
                assert!(
                    p.summary.t_down_s.unwrap() <= 0.050 + T_RESUME_S + 1e-9,
                    "{p:?}"
                );
            }
        }
        proptest::proptest!(|(omega in -1.0f64..1.0, psi in -10.0f64..2.0, lam in 0.0f64..2.0, limit in 0.01f64..1.0)| {
            let g = GammaModel { omega_per_s: omega, xi_s_per_byte: 0.0, psi };
            for hv in [Hypervisor::Qemu, Hypervisor::Xen3, Hypervisor::Xen4] {
                let s = Scenario { downtime_limit_s: limit, ..fixed(hv, 256e6, lam * 12e6, 12e6) };
                let p = simulate_trajectory(&s, &g, None);
                if p.summary.stop == Stop::Threshold {
                    let last = p.trajectory.last().unwrap();
                    proptest::prop_assert!(last.sent_bytes <= v_thd(&s, 12e6) * (1.0 + 1e-12));
                }
            }
        });
    }

    #[test]
    fn xen3_round_cap_and_traffic_cap() {
        // lambda = 0.99: the traffic cap (3 x memory) fires first: after round k with
        // S(k+1) > 3 -> 1 - 0.99^(k+1) > 0.03 -> k+1 > 3.03 -> k = 3, so 5 rounds.
        let s = fixed(Hypervisor::Xen3, 1e9, 0.99e8, 1e8);
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        assert_eq!(p.summary.stop, Stop::TrafficCap);
        assert_eq!(p.summary.rounds, 5);
        assert!(!p.summary.converges);
        assert!(
            p.summary.v_mig_bytes.is_some(),
            "forced migrations have a cost"
        );
        // Total of 4 pre-copy rounds 1 + .99 + .99^2 + .99^3 GB, plus forced last .99^4 GB.
        let want: f64 = (0..5).map(|k| 0.99f64.powi(k)).sum::<f64>() * 1e9;
        assert!(close(p.summary.v_mig_bytes.unwrap(), want, 1e-12));
        // lambda = 1, gamma = 0: V stays equal; the traffic cap fires after 4 rounds.
        let s = fixed(Hypervisor::Xen3, 1e9, 1e8, 1e8);
        let p = simulate(&s, &GammaModel::ZERO, None);
        assert_eq!((p.stop, p.rounds), (Stop::TrafficCap, 5));
    }

    #[test]
    fn xen4_round_cap_after_five_rounds() {
        // lambda = 0.9 from 1 GB needs ~ 79 rounds to reach 50 pages: capped at 5 + last.
        let s = fixed(Hypervisor::Xen4, 1e9, 0.9e8, 1e8);
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        assert_eq!(p.summary.stop, Stop::RoundCap);
        assert_eq!(p.trajectory.len(), 6);
        let want: f64 = (0..6).map(|k| 0.9f64.powi(k)).sum::<f64>() * 1e9;
        assert!(close(p.summary.v_mig_bytes.unwrap(), want, 1e-12));
        assert!(close(
            p.summary.t_down_s.unwrap(),
            0.9f64.powi(5) * 10.0 + 0.02,
            1e-12
        ));
    }

    #[test]
    fn xen3_round_cap_after_twenty_nine_rounds() {
        // lambda = 0.66: total stays under 3 x memory (1 / 0.34 = 2.94); 50 pages from 64 GB
        // needs ln(204800 / 64e9) / ln 0.66 = 30.4 rounds: capped at 29 + last.
        let s = fixed(Hypervisor::Xen3, 64e9, 0.66e8, 1e8);
        let p = simulate(&s, &GammaModel::ZERO, None);
        assert_eq!((p.stop, p.rounds), (Stop::RoundCap, 30));
    }

    #[test]
    fn xen_converges_with_fifty_pages() {
        // lambda = 0.1 from 200 MB: 200 * 0.1^n <= 0.2048 MB first at n = 3.
        let s = fixed(Hypervisor::Xen3, 200e6, 1e7, 1e8);
        let p = simulate(&s, &GammaModel::ZERO, None);
        assert_eq!((p.stop, p.rounds), (Stop::Threshold, 4));
        assert!(p.converges);
    }

    #[test]
    fn non_converging_qemu_has_no_cost_and_xen_is_forced() {
        let s = fixed(Hypervisor::Qemu, 128e6, 20e6, 16e6);
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        assert_eq!(p.summary.stop, Stop::NeverConverges);
        assert!(!p.summary.converges);
        assert_eq!(p.summary.v_mig_bytes, None);
        assert_eq!(p.summary.t_down_s, None);
        assert!(p.reason.contains("never converges"));
        // Same guest under Xen 4: forced after round 1, last round sends T_0 D.
        let s = Scenario {
            hypervisor: Hypervisor::Xen4,
            ..s
        };
        let p = simulate(&s, &GammaModel::ZERO, None);
        assert_eq!((p.stop, p.rounds), (Stop::Diverging, 2));
        assert!(close(p.v_mig_bytes.unwrap(), 128e6 + 8.0 * 20e6, 1e-12));
        // QEMU with lambda exactly 1 and no gamma never progresses either.
        let s = fixed(Hypervisor::Qemu, 128e6, 16e6, 16e6);
        assert_eq!(
            simulate(&s, &GammaModel::ZERO, None).stop,
            Stop::NeverConverges
        );
        assert_eq!(base_model(&s, None).unwrap().stop, Stop::NeverConverges);
    }

    #[test]
    fn adaptive_rate_follows_dirtying_rate() {
        // D = 30 MB/s: R_0 = 50 MB/s, then clamp(30 + 12.5) = 50 MB/s; D = 80: 92.5 MB/s.
        let mut s = fixed(Hypervisor::Xen4, 1e9, 80e6, 1.0);
        s.rate = RatePolicy::PAPER_ADAPTIVE;
        let p = simulate_trajectory(&s, &GammaModel::ZERO, None);
        assert_eq!(p.trajectory[0].rate_bytes_per_s, 50e6);
        assert_eq!(p.trajectory[1].rate_bytes_per_s, 92.5e6);
        // Round 1: 20 s -> 1.6 GB dirty > 1 GB: diverging, forced.
        assert_eq!(p.summary.stop, Stop::Diverging);
        assert!(close(p.trajectory[1].sent_bytes, 1.6e9, 1e-12));
    }

    #[test]
    fn gamma_model_from_paper_units() {
        let mut f = crate::coef::tests::sample();
        f.model.kind = ModelKind::Gamma;
        let var = |c: &str, s: &str, u: &str| crate::coef::Variable {
            column: c.into(),
            symbol: s.into(),
            unit: u.into(),
            min: 0.0,
            max: 1.0,
            mean: 0.5,
        };
        f.target = var("gamma", "gamma", "1");
        f.features = vec![
            var("prev_duration_s", "T_prev", "s"),
            var("dirty_rate_bytes_per_s", "D", "MB/s"),
        ];
        f.coefficients = vec![
            f.coefficients[0].clone(),
            f.coefficients[0].clone(),
            f.coefficients[1].clone(),
        ];
        f.coefficients[0].estimate = -0.0463;
        f.coefficients[1].estimate = -0.0001;
        f.coefficients[2].estimate = 0.3586;
        let g = GammaModel::from_file(&f).unwrap();
        assert!(close(g.gamma(2.0, 50e6), -0.0926 - 0.005 + 0.3586, 1e-12));
        assert_eq!(g.gamma(100.0, 0.0), 0.0, "clamped");
        let e = EnergyModel::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("expected an energy model"), "{e}");
        let mut en = crate::coef::tests::sample();
        en.features[0].unit = "MB".into();
        en.coefficients[0].estimate = 0.512;
        en.coefficients[1].estimate = 20.165;
        let m = EnergyModel::from_file(&en).unwrap();
        assert!(close(m.energy_j(1e9), 512.0 + 20.165, 1e-12));
    }
}
