//! Evaluation of the models against measured migrations (the paper's Figures 10-14): every
//! migration is predicted from what was known before it (its pre-migration dirtying rate,
//! its configured limits, and, for the refined model, only earlier migrations of the same
//! VM) and compared with what was measured.

use std::collections::HashMap;

use datasets::evaluation::EvaluationRow;
use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;
use serde::Serialize;

use crate::downtime::{learn, observe, DowntimeObs};
use crate::history::{d_bar, d_tilde, ewma, hot_set_hat, wws_fit, RoundRate};
use crate::predict::{
    base_model, simulate, DowntimeModel, EnergyModel, GammaModel, Hypervisor, RatePolicy, Scenario,
    Summary, NO_HOT_SET, QEMU_DEFAULT_DOWNTIME_LIMIT_S,
};
use crate::rank::Weights;
use crate::rng::SplitMix64;

/// Options of an evaluation.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// The gamma model (ZERO for none).
    pub gamma: GammaModel,
    /// The energy model, if any.
    pub energy: Option<EnergyModel>,
    /// Also evaluate the refined model (eqs 11-13) from each VM's earlier migrations.
    pub refined: bool,
    /// EWMA weight mu (eq 12).
    pub mu: f64,
    /// Blend phi (eq 13).
    pub phi: f64,
    /// Refined model with the hot-set cap (this project's extension, see
    /// [`Scenario::hot_set_bytes`]): D_m from the rounds the hot set did not cap, H_hat the
    /// largest hot set seen, gamma = 0 once H_hat is known. False: eqs 11-13 as published.
    pub hot_set: bool,
    /// Refined model, a VM's first migration (no history): take D, the hot set and the first
    /// round (non-zero share x RAM) from the migration's pre-migration probe when it has one
    /// (`probe_*` columns). False: the sampled rate and all of RAM, as before the probe.
    pub probe: bool,
    /// Rate for migrations that recorded no bandwidth limit, bytes/s.
    pub default_rate_bytes_per_s: Option<f64>,
}

/// A migration that could not be evaluated, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The migration.
    pub migration_id: String,
    /// Why.
    pub reason: String,
}

fn rel(pred: Option<f64>, meas: Option<f64>) -> Option<f64> {
    match (pred, meas) {
        (Some(p), Some(m)) if m != 0.0 && m.is_finite() => Some((p - m) / m),
        _ => None,
    }
}

/// What one earlier migration of a VM leaves for the refined model.
struct Past {
    /// eq 11 over every pre-copy round (the paper's D_bar).
    d_bar: Option<f64>,
    /// D_m: eq 11 over the rounds the hot set did not cap ([`wws_fit`]).
    d_m: Option<f64>,
    /// H_m: the hot set when it capped round 1, bytes.
    hot_set: Option<f64>,
    first_round_bytes: Option<f64>,
    /// What it says about the downtime model ([`crate::downtime::observe`]).
    downtime: Option<DowntimeObs>,
}

/// Migrations whose guest memory did not match after the migration (`memory_verified` =
/// false) measured a broken migration: split them off, with their rounds, unless `include`.
/// Returns the migrations and rounds to use and the ids of the mismatched ones (left out, or
/// kept when `include`), so that callers can name them.
pub fn split_mismatched(
    migrations: Vec<MigrationRow>,
    rounds: Vec<RoundRow>,
    include: bool,
) -> (Vec<MigrationRow>, Vec<RoundRow>, Vec<String>) {
    let bad: Vec<String> = migrations
        .iter()
        .filter(|m| m.memory_verified == Some(false))
        .map(|m| m.migration_id.clone())
        .collect();
    if include || bad.is_empty() {
        return (migrations, rounds, bad);
    }
    let out = |id: &str| bad.iter().any(|b| b == id);
    let migrations = migrations
        .into_iter()
        .filter(|m| !out(&m.migration_id))
        .collect();
    let rounds = rounds
        .into_iter()
        .filter(|r| !out(&r.migration_id))
        .collect();
    (migrations, rounds, bad)
}

/// Predict every migration (oldest first) and compare with the measurement.
pub fn evaluate(
    migrations: &[MigrationRow],
    rounds: &[RoundRow],
    opts: &EvalOptions,
) -> (Vec<EvaluationRow>, Vec<Skipped>) {
    evaluate_with_energy(migrations, rounds, opts, &HashMap::new())
}

/// [`evaluate`], also comparing predicted E_mig (the energy model applied to the predicted
/// V_mig, as the paper's Figure 13 does) with the measured energy of each migration
/// (`measured_e_mig_j`: migration id -> E_mig of the energy observations, J).
pub fn evaluate_with_energy(
    migrations: &[MigrationRow],
    rounds: &[RoundRow],
    opts: &EvalOptions,
    measured_e_mig_j: &HashMap<String, f64>,
) -> (Vec<EvaluationRow>, Vec<Skipped>) {
    let mut by_mig: HashMap<&str, Vec<&RoundRow>> = HashMap::new();
    for r in rounds {
        by_mig.entry(r.migration_id.as_str()).or_default().push(r);
    }
    let mut past: HashMap<&str, Vec<Past>> = HashMap::new();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut order: Vec<&MigrationRow> = migrations.iter().collect();
    order.sort_by(|a, b| (a.start_utc_ns, &a.migration_id).cmp(&(b.start_utc_ns, &b.migration_id)));
    for m in order {
        let skip = |reason: &str| Skipped {
            migration_id: m.migration_id.clone(),
            reason: reason.into(),
        };
        let hv: Hypervisor = match m.hypervisor.parse() {
            Ok(h) => h,
            Err(e) => {
                skipped.push(skip(&e));
                continue;
            }
        };
        let Some(s_rate) = m
            .pre_dirty_rate_bytes_per_s
            .or(m.probe_dirty_rate_bytes_per_s)
        else {
            skipped.push(skip(
                "no pre-migration dirtying rate (collect with the probe or --dirty-rate-sample)",
            ));
            continue;
        };
        let Some(rate) = m
            .bandwidth_limit_bytes_per_s
            .or(opts.default_rate_bytes_per_s)
        else {
            skipped.push(skip("no bandwidth limit recorded: give --rate"));
            continue;
        };
        let base_scenario = Scenario {
            hypervisor: hv,
            vm_mem_bytes: m.vm_mem_bytes as f64,
            dirty_rate_bytes_per_s: s_rate,
            rate: RatePolicy::Fixed {
                rate_bytes_per_s: rate,
            },
            downtime_limit_s: m.downtime_limit_s.unwrap_or(QEMU_DEFAULT_DOWNTIME_LIMIT_S),
            hot_set_bytes: NO_HOT_SET,
            downtime: DowntimeModel::default_for(hv),
        };
        if let Err(e) = base_scenario.check() {
            skipped.push(skip(&e.to_string()));
            continue;
        }
        let row = |model: &str, s: &Scenario, p: Summary, hist: u32| EvaluationRow {
            migration_id: m.migration_id.clone(),
            vm: m.vm.clone(),
            workload: m.workload.clone(),
            model: model.into(),
            history_migrations: hist,
            dirty_rate_bytes_per_s: s.dirty_rate_bytes_per_s,
            rate_bytes_per_s: rate,
            first_round_bytes: s.vm_mem_bytes,
            hot_set_bytes: s.hot_set_bytes.is_finite().then_some(s.hot_set_bytes),
            predicted_v_mig_bytes: p.v_mig_bytes,
            predicted_t_mig_s: p.t_mig_s,
            predicted_t_down_s: p.t_down_s,
            predicted_rounds: p.rounds,
            predicted_stop: format!("{:?}", p.stop).to_ascii_lowercase(),
            measured_v_mig_bytes: m.v_mig_bytes as f64,
            measured_t_mig_s: m.t_mig_s,
            measured_t_down_s: m.t_down_s,
            measured_rounds: m.rounds,
            measured_converged: m.converged,
            rel_err_v_mig: m
                .converged
                .then(|| rel(p.v_mig_bytes, Some(m.v_mig_bytes as f64)))
                .flatten(),
            rel_err_t_mig: m
                .converged
                .then(|| rel(p.t_mig_s, Some(m.t_mig_s)))
                .flatten(),
            rel_err_t_down: m.converged.then(|| rel(p.t_down_s, m.t_down_s)).flatten(),
            predicted_e_mig_j: p.e_mig_j,
            measured_e_mig_j: measured_e_mig_j.get(&m.migration_id).copied(),
            rel_err_e_mig: m
                .converged
                .then(|| rel(p.e_mig_j, measured_e_mig_j.get(&m.migration_id).copied()))
                .flatten(),
            held_out: None,
        };
        let sim = simulate(&base_scenario, &opts.gamma, opts.energy.as_ref());
        out.push(row("sim", &base_scenario, sim, 0));
        if let Some(b) = base_model(&base_scenario, opts.energy.as_ref()) {
            out.push(row("base", &base_scenario, b, 0));
        }
        let mine = by_mig.get(m.migration_id.as_str());
        if opts.refined {
            let hist = past.get(m.vm.as_str());
            let n = hist.map_or(0, |h| h.len() as u32);
            let mut s = base_scenario;
            let d_m = |p: &Past| if opts.hot_set { p.d_m } else { p.d_bar };
            if let Some(h) = ewma(hist.into_iter().flatten().filter_map(d_m), opts.mu) {
                s.dirty_rate_bytes_per_s = d_tilde(s_rate, h.d_hat_bytes_per_s, opts.phi);
            }
            // The hot set: the largest seen in the VM's earlier migrations. Once known, the
            // cap stands for the coalescing the linear gamma tried to model: gamma = 0.
            let h_hat = hot_set_hat(hist.into_iter().flatten().filter_map(|p| p.hot_set))
                .filter(|_| opts.hot_set);
            let gamma = match h_hat {
                Some(h) => {
                    s.hot_set_bytes = h;
                    GammaModel::ZERO
                }
                None => opts.gamma,
            };
            // The first round moves the non-zero memory: learn it from earlier migrations.
            let firsts: Vec<f64> = hist
                .into_iter()
                .flatten()
                .filter_map(|p| p.first_round_bytes)
                .collect();
            if !firsts.is_empty() {
                s.vm_mem_bytes = firsts.iter().sum::<f64>() / firsts.len() as f64;
            }
            // No history: the pre-migration probe stands for it (D, H, non-zero memory).
            let mut gamma = gamma;
            if n == 0 && opts.probe {
                if let Some(d) = m.probe_dirty_rate_bytes_per_s {
                    s.dirty_rate_bytes_per_s = d;
                }
                if let Some(h) = m.probe_hot_set_bytes.filter(|_| opts.hot_set) {
                    s.hot_set_bytes = h;
                    gamma = GammaModel::ZERO;
                }
                if let Some(z) = m.probe_nonzero_share {
                    s.vm_mem_bytes = z * m.vm_mem_bytes as f64;
                }
            }
            // The one downtime model (as predict --history): V_dev, T_fixed and rho learned from
            // the VM's earlier migrations, the stop rule's default without them.
            let obs: Vec<DowntimeObs> = hist
                .into_iter()
                .flatten()
                .filter_map(|p| p.downtime)
                .collect();
            s.downtime = learn(&obs, s.downtime);
            let p = simulate(&s, &gamma, opts.energy.as_ref());
            out.push(row("refined", &s, p, n));
        }
        // Only now does this migration become history for the next ones.
        past.entry(m.vm.as_str()).or_default().push(past_of(
            m,
            mine.map(Vec::as_slice).unwrap_or(&[]),
            rate,
        ));
    }
    (out, skipped)
}

/// D_bar (eq 11), D_m and H_m ([`wws_fit`]) and first-round volume of one measured
/// migration. D_i of a round is what it dirtied (the next round's pages) over its duration,
/// else the recorded rate.
fn past_of(m: &MigrationRow, rounds: &[&RoundRow], rate_bytes_per_s: f64) -> Past {
    let page = m.page_size_bytes as f64;
    let numbered: Vec<(u32, RoundRate)> = rounds
        .iter()
        .filter(|r| !r.last)
        .filter_map(|r| {
            // The artefact rule of the gamma trainer: a round this short is mostly
            // interpolation between progress polls and gives no dirtying rate.
            let t = r.duration_s.filter(|t| *t >= crate::train::MIN_ROUND_S)?;
            let d = match r.dirtied_pages {
                Some(p) if t > 0.0 => p as f64 * page / t,
                _ => r.dirty_rate_bytes_per_s?,
            };
            Some((
                r.round,
                RoundRate {
                    dirty_rate_bytes_per_s: d,
                    duration_s: t,
                },
            ))
        })
        .collect();
    let rr: Vec<RoundRate> = numbered.iter().map(|&(_, r)| r).collect();
    let first_rate = numbered.iter().find(|(i, _)| *i == 1).map(|&(_, r)| r);
    let later: Vec<RoundRate> = numbered
        .iter()
        .filter(|(i, _)| *i != 1)
        .map(|&(_, r)| r)
        .collect();
    let wws = wws_fit(first_rate, &later);
    let first = rounds
        .iter()
        .find(|r| r.round == 1)
        .map(|r| r.sent_bytes as f64);
    Past {
        d_bar: d_bar(&rr),
        d_m: wws.d_bytes_per_s,
        hot_set: wws.hot_set_bytes,
        first_round_bytes: first.filter(|_| m.converged),
        downtime: observe(m, rounds, rate_bytes_per_s),
    }
}

/// The refined-model state of one VM from its measured migrations (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmHistory {
    /// VM name.
    pub vm: String,
    /// D_m of each migration with rounds, oldest first, bytes/s: eq 11 over the rounds the
    /// hot set did not cap (every round when it capped none, the paper's D_bar).
    pub d_bar_bytes_per_s: Vec<f64>,
    /// D_hat after the latest (eq 12 over D_m), bytes/s.
    pub d_hat_bytes_per_s: Option<f64>,
    /// H_hat: the largest hot set (writable working set) seen, bytes (None: no migration's
    /// round 1 was capped by it). This project's extension, see [`Scenario::hot_set_bytes`].
    pub hot_set_bytes: Option<f64>,
    /// Mean data the first round sent (non-zero memory), bytes.
    pub first_round_bytes: Option<f64>,
    /// Migrations of the VM found.
    pub migrations: usize,
    /// The downtime model learned from its completed migrations (None: none gave one; the
    /// stop rule's default applies).
    pub downtime: Option<DowntimeModel>,
}

/// D_m per migration, D_hat (mu), H_hat and the first-round volume of `vm`.
pub fn vm_history(
    migrations: &[MigrationRow],
    rounds: &[RoundRow],
    vm: &str,
    mu: f64,
) -> VmHistory {
    let mut mine: Vec<&MigrationRow> = migrations.iter().filter(|m| m.vm == vm).collect();
    mine.sort_by(|a, b| (a.start_utc_ns, &a.migration_id).cmp(&(b.start_utc_ns, &b.migration_id)));
    let pasts: Vec<Past> = mine
        .iter()
        .map(|m| {
            let r: Vec<&RoundRow> = rounds
                .iter()
                .filter(|r| r.migration_id == m.migration_id)
                .collect();
            past_of(m, &r, m.bandwidth_limit_bytes_per_s.unwrap_or(f64::NAN))
        })
        .collect();
    let obs: Vec<DowntimeObs> = pasts.iter().filter_map(|p| p.downtime).collect();
    let hv = mine
        .first()
        .and_then(|m| m.hypervisor.parse().ok())
        .unwrap_or(Hypervisor::Qemu);
    let d_bars: Vec<f64> = pasts.iter().filter_map(|p| p.d_m).collect();
    let firsts: Vec<f64> = pasts.iter().filter_map(|p| p.first_round_bytes).collect();
    VmHistory {
        vm: vm.into(),
        d_hat_bytes_per_s: ewma(d_bars.iter().copied(), mu).map(|h| h.d_hat_bytes_per_s),
        d_bar_bytes_per_s: d_bars,
        hot_set_bytes: hot_set_hat(pasts.iter().filter_map(|p| p.hot_set)),
        first_round_bytes: (!firsts.is_empty())
            .then(|| firsts.iter().sum::<f64>() / firsts.len() as f64),
        migrations: mine.len(),
        downtime: (!obs.is_empty()).then(|| learn(&obs, DowntimeModel::default_for(hv))),
    }
}

/// Which migrations the models learn from; the others are held out, and an honest accuracy
/// figure uses only those.
#[derive(Debug, Clone, Default)]
pub enum Split {
    /// No split: every migration is reported; the gamma model comes from [`EvalOptions`].
    #[default]
    None,
    /// Each VM's first `n` migrations (by start time) train the models (e.g. repetition 1 of
    /// a campaign); its later migrations are held out.
    FirstPerVm(usize),
    /// Another dataset (migrations and their rounds) trains the models; every evaluated
    /// migration is held out (e.g. a validation campaign recorded after the design froze).
    External(Vec<MigrationRow>, Vec<RoundRow>),
}

/// The gamma model learned from a split's training migrations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitFit {
    /// Migrations that trained the models.
    pub training_migrations: usize,
    /// Rounds that gave a gamma observation (the trainer's rules, artefacts left out).
    pub gamma_rows: usize,
    /// The fit (None when it could not be made: too few rows, collinear, ...).
    pub fitted: Option<GammaModel>,
    /// Its 5-fold out-of-fold MAE (None without enough rows for 5 folds).
    pub cv_mae: Option<f64>,
    /// MAE of gamma = 0 on the same rows.
    pub zero_mae: Option<f64>,
    /// What the predictions used: the fit, or gamma = 0 when it did no better.
    pub used: GammaModel,
    /// Why gamma = 0 was used, if it was.
    pub note: Option<String>,
}

/// Fit eq 10 (gamma = omega T_{i-1} + xi D + psi) on the rounds of `training`, as
/// `migwatt train gamma` does (final rounds and [`crate::train::MIN_ROUND_S`] artefacts left
/// out; 5-fold CV judged against gamma = 0).
pub fn fit_gamma_on(training: &[&MigrationRow], rounds: &[RoundRow]) -> SplitFit {
    use crate::train::MIN_ROUND_S;
    let ids: std::collections::HashSet<&str> =
        training.iter().map(|m| m.migration_id.as_str()).collect();
    let mut by_key: HashMap<(&str, u32), &RoundRow> = HashMap::new();
    for r in rounds
        .iter()
        .filter(|r| ids.contains(r.migration_id.as_str()))
    {
        by_key.insert((r.migration_id.as_str(), r.round), r);
    }
    let (mut t_prev, mut d, mut y) = (Vec::new(), Vec::new(), Vec::new());
    let mut keys: Vec<&(&str, u32)> = by_key.keys().collect();
    keys.sort();
    for k in keys {
        let r = by_key[k];
        if r.last || r.round < 2 {
            continue;
        }
        let Some(prev) = by_key.get(&(k.0, r.round - 1)) else {
            continue;
        };
        let (Some(g), Some(dr), Some(tp), Some(t)) = (
            r.gamma,
            r.dirty_rate_bytes_per_s,
            prev.duration_s,
            r.duration_s,
        ) else {
            continue;
        };
        if tp >= MIN_ROUND_S && t >= MIN_ROUND_S && g.is_finite() && dr.is_finite() {
            t_prev.push(tp);
            d.push(dr);
            y.push(g);
        }
    }
    let zero_mae = (!y.is_empty()).then(|| y.iter().map(|g| g.abs()).sum::<f64>() / y.len() as f64);
    let mut out = SplitFit {
        training_migrations: training.len(),
        gamma_rows: y.len(),
        fitted: None,
        cv_mae: None,
        zero_mae,
        used: GammaModel::ZERO,
        note: None,
    };
    let features: [(&str, &[f64]); 2] = [
        (crate::train::T_PREV, &t_prev),
        ("dirty_rate_bytes_per_s", &d),
    ];
    let prob = crate::ols::Problem {
        features: &features,
        target: ("gamma", &y),
        row_label: None,
    };
    let fit = crate::ols::OlsParams::new()
        .folds(5)
        .seed(1)
        .fit(&prob, &crate::Control::none());
    let fit = match fit {
        Ok(f) => f,
        Err(e) => {
            out.note = Some(format!(
                "gamma not fitted on {} rows of the training migrations ({e}); predicting with gamma = 0",
                y.len()
            ));
            return out;
        }
    };
    let g = GammaModel {
        omega_per_s: fit.estimates[0].value,
        xi_s_per_byte: fit.estimates[1].value,
        psi: fit.estimates[2].value,
    };
    out.fitted = Some(g);
    out.cv_mae = fit.cross_validation.as_ref().map(|c| c.mae);
    let judged = out.cv_mae.unwrap_or(fit.mae);
    match zero_mae {
        Some(z) if judged < z => out.used = g,
        _ => {
            out.note = Some(format!(
                "the gamma fit's {} MAE {judged:.4} is not lower than gamma = 0's {}: predicting with gamma = 0",
                if out.cv_mae.is_some() { "out-of-fold" } else { "in-sample" },
                zero_mae.map_or("-".into(), |z| format!("{z:.4}"))
            ))
        }
    }
    out
}

/// An evaluation under a [`Split`].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every evaluated migration and model, `held_out` set under a split.
    pub rows: Vec<EvaluationRow>,
    /// Migrations that could not be evaluated.
    pub skipped: Vec<Skipped>,
    /// The gamma model the split's training migrations gave (None without a split).
    pub fit: Option<SplitFit>,
}

/// [`evaluate_with_energy`] under a split: the gamma model is fitted on the training
/// migrations (replacing `opts.gamma`), and every row says whether it was held out.
pub fn evaluate_split(
    migrations: &[MigrationRow],
    rounds: &[RoundRow],
    opts: &EvalOptions,
    measured_e_mig_j: &HashMap<String, f64>,
    split: &Split,
) -> Evaluation {
    let training: Vec<&MigrationRow> = match split {
        Split::None => {
            let (rows, skipped) = evaluate_with_energy(migrations, rounds, opts, measured_e_mig_j);
            return Evaluation {
                rows,
                skipped,
                fit: None,
            };
        }
        Split::FirstPerVm(n) => {
            let mut by_vm: HashMap<&str, Vec<&MigrationRow>> = HashMap::new();
            for m in migrations {
                by_vm.entry(m.vm.as_str()).or_default().push(m);
            }
            let mut t = Vec::new();
            for list in by_vm.values_mut() {
                list.sort_by(|a, b| {
                    (a.start_utc_ns, &a.migration_id).cmp(&(b.start_utc_ns, &b.migration_id))
                });
                t.extend(list.iter().take(*n).copied());
            }
            t
        }
        Split::External(m, _) => m.iter().collect(),
    };
    let fit = match split {
        Split::External(_, r) => fit_gamma_on(&training, r),
        _ => fit_gamma_on(&training, rounds),
    };
    let trained: std::collections::HashSet<&str> = match split {
        Split::FirstPerVm(_) => training.iter().map(|m| m.migration_id.as_str()).collect(),
        _ => Default::default(),
    };
    let opts = EvalOptions {
        gamma: fit.used,
        ..*opts
    };
    let (mut rows, skipped) = evaluate_with_energy(migrations, rounds, &opts, measured_e_mig_j);
    for r in &mut rows {
        r.held_out = Some(!trained.contains(r.migration_id.as_str()));
    }
    Evaluation {
        rows,
        skipped,
        fit: Some(fit),
    }
}

/// Mean absolute percentage errors of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mape {
    /// Model.
    pub model: String,
    /// Workload (None: all).
    pub workload: Option<String>,
    /// Only the first migration of each VM (no history: the refined model had only what it
    /// can measure before migrating); all workloads.
    pub first_migrations: bool,
    /// Migrations with errors (measured converged).
    pub n: usize,
    /// MAPE of V_mig, %.
    pub v_mig_percent: Option<f64>,
    /// MAPE of T_mig, %.
    pub t_mig_percent: Option<f64>,
    /// MAPE of T_down, %.
    pub t_down_percent: Option<f64>,
    /// MAPE of E_mig, % (None without an energy model and measured energy).
    pub e_mig_percent: Option<f64>,
    /// Measured migrations whose convergence the model got right.
    pub convergence_agreement: usize,
    /// Measured migrations in the group.
    pub total: usize,
}

fn mean_abs(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (s, n) = v
        .flatten()
        .fold((0.0, 0usize), |(s, n), x| (s + x.abs(), n + 1));
    (n > 0).then(|| 100.0 * s / n as f64)
}

/// MAPE per model and workload, then per model overall (workload None), then per model over
/// each VM's first migration (the refined rows without history say which those are).
pub fn mape(rows: &[EvaluationRow]) -> Vec<Mape> {
    let first: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.model == "refined" && r.history_migrations == 0)
        .map(|r| r.migration_id.as_str())
        .collect();
    let mut keys: Vec<(String, Option<String>, bool)> = Vec::new();
    for r in rows {
        let mut ks = vec![
            (r.model.clone(), r.workload.clone(), false),
            (r.model.clone(), None, false),
        ];
        if first.contains(r.migration_id.as_str()) {
            ks.push((r.model.clone(), None, true));
        }
        for k in ks {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.sort_by(|a, b| (&a.0, a.2, a.1.is_none(), &a.1).cmp(&(&b.0, b.2, b.1.is_none(), &b.1)));
    keys.into_iter()
        .map(|(model, workload, first_only)| {
            let g: Vec<&EvaluationRow> = rows
                .iter()
                .filter(|r| r.model == model && (workload.is_none() || r.workload == workload))
                .filter(|r| !first_only || first.contains(r.migration_id.as_str()))
                .collect();
            Mape {
                first_migrations: first_only,
                n: g.iter().filter(|r| r.rel_err_t_mig.is_some()).count(),
                v_mig_percent: mean_abs(g.iter().map(|r| r.rel_err_v_mig)),
                t_mig_percent: mean_abs(g.iter().map(|r| r.rel_err_t_mig)),
                t_down_percent: mean_abs(g.iter().map(|r| r.rel_err_t_down)),
                e_mig_percent: mean_abs(g.iter().map(|r| r.rel_err_e_mig)),
                convergence_agreement: g
                    .iter()
                    .filter(|r| r.measured_converged == r.predicted_t_mig_s.is_some())
                    .count(),
                total: g.len(),
                model,
                workload,
            }
        })
        .collect()
}

/// Savings of model-guided over random choice (Figure 14), in % of the random choice's cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    /// Model whose predictions guided the choice.
    pub model: String,
    /// Trials.
    pub trials: usize,
    /// Candidates per trial.
    pub candidates: usize,
    /// Cut in measured T_mig, %.
    pub t_mig_percent: f64,
    /// Cut in measured T_down, %.
    pub t_down_percent: f64,
    /// Cut in measured V_mig, %.
    pub v_mig_percent: f64,
    /// Cut in measured E_mig, % (None unless every candidate has measured energy).
    pub e_mig_percent: Option<f64>,
}

/// Decision trials: each draws `k` measured (completed) migrations as candidates; the model
/// picks the least predicted cost C (eq 18; the E_mig term needs predicted energy: rows
/// without it cost infinity when its weight is not 0), random choice picks any; savings
/// compare the measured metrics summed over trials (E_mig when every candidate has it).
pub fn decision_trials(
    rows: &[EvaluationRow],
    model: &str,
    trials: usize,
    k: usize,
    seed: u64,
    w: &Weights,
) -> Option<Savings> {
    let pool: Vec<&EvaluationRow> = rows
        .iter()
        .filter(|r| r.model == model && r.measured_converged && r.measured_t_down_s.is_some())
        .collect();
    if pool.len() < 2 || trials == 0 {
        return None;
    }
    let k = k.min(pool.len()).max(2);
    let mut rng = SplitMix64::new(seed);
    let (mut guided, mut random) = ([0.0f64; 4], [0.0f64; 4]);
    let energy_measured = pool.iter().all(|r| r.measured_e_mig_j.is_some());
    let metrics = |r: &EvaluationRow| {
        [
            r.measured_t_mig_s,
            r.measured_t_down_s.unwrap_or(0.0),
            r.measured_v_mig_bytes,
            r.measured_e_mig_j.unwrap_or(0.0),
        ]
    };
    for _ in 0..trials {
        // Partial Fisher-Yates: k distinct candidates.
        let mut idx: Vec<usize> = (0..pool.len()).collect();
        for i in 0..k {
            let j = i + rng.index(pool.len() - i);
            idx.swap(i, j);
        }
        let cands: Vec<&EvaluationRow> = idx[..k].iter().map(|&i| pool[i]).collect();
        let max = |f: &dyn Fn(&EvaluationRow) -> Option<f64>| {
            cands.iter().filter_map(|r| f(r)).fold(0.0, f64::max)
        };
        let (mt, md, mv, me) = (
            max(&|r| r.predicted_t_mig_s),
            max(&|r| r.predicted_t_down_s),
            max(&|r| r.predicted_v_mig_bytes),
            max(&|r| r.predicted_e_mig_j),
        );
        let norm = |x: Option<f64>, m: f64| match x {
            Some(x) if m > 0.0 => Some(x / m),
            Some(_) => Some(0.0),
            None => None,
        };
        let cost = |r: &EvaluationRow| -> f64 {
            match (
                norm(r.predicted_t_down_s, md),
                norm(r.predicted_t_mig_s, mt),
                norm(r.predicted_v_mig_bytes, mv),
            ) {
                (Some(d), Some(t), Some(v)) => {
                    let e = if w.e_mig == 0.0 {
                        0.0
                    } else {
                        match norm(r.predicted_e_mig_j, me) {
                            Some(e) => w.e_mig * e,
                            None => return f64::INFINITY,
                        }
                    };
                    w.t_down * d + w.t_mig * t + w.v_mig * v + e
                }
                _ => f64::INFINITY,
            }
        };
        let best = cands
            .iter()
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .expect("k >= 2");
        let pick = cands[rng.index(k)];
        for (acc, x) in guided.iter_mut().zip(metrics(best)) {
            *acc += x;
        }
        for (acc, x) in random.iter_mut().zip(metrics(pick)) {
            *acc += x;
        }
    }
    let cut = |g: f64, r: f64| if r > 0.0 { 100.0 * (1.0 - g / r) } else { 0.0 };
    Some(Savings {
        model: model.into(),
        trials,
        candidates: k,
        t_mig_percent: cut(guided[0], random[0]),
        t_down_percent: cut(guided[1], random[1]),
        v_mig_percent: cut(guided[2], random[2]),
        e_mig_percent: energy_measured.then(|| cut(guided[3], random[3])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mig(id: &str, vm: &str, start: i64, v_mig: u64, t_mig: f64) -> MigrationRow {
        MigrationRow {
            migration_id: id.into(),
            hypervisor: "qemu".into(),
            vm: vm.into(),
            workload: Some("w".into()),
            vm_mem_bytes: 100_000_000,
            page_size_bytes: 4096,
            start_utc_ns: Some(start),
            end_utc_ns: Some(start + 1),
            t_mig_s: t_mig,
            t_down_s: Some(0.1),
            t_down_method: "guest_stop_resume".into(),
            t_down_reported_s: None,
            v_mig_bytes: v_mig,
            zero_pages: None,
            rounds: 5,
            converged: true,
            status: "completed".into(),
            bandwidth_limit_bytes_per_s: Some(10e6),
            downtime_limit_s: Some(0.3),
            max_rounds: None,
            max_factor: None,
            auto_converge: None,
            pre_dirty_rate_bytes_per_s: Some(5e6),
            pre_dirty_sample_s: Some(1.0),
            source_host: "a".into(),
            destination_host: "b".into(),
            memory_verified: None,
            memory_mismatch_pages: None,
            accelerator: None,
            probe_dirty_rate_bytes_per_s: None,
            probe_hot_set_bytes: None,
            probe_nonzero_share: None,
        }
    }

    fn first_round(id: &str, sent: u64) -> RoundRow {
        RoundRow {
            migration_id: id.into(),
            round: 1,
            start_utc_ns: None,
            duration_s: Some(sent as f64 / 10e6),
            sent_bytes: sent,
            skipped_pages: 0,
            dirtied_pages: None,
            dirty_rate_bytes_per_s: Some(5e6),
            gamma: None,
            last: false,
        }
    }

    #[test]
    fn mismatched_migrations_and_their_rounds_are_split_off_unless_included() {
        let mut a = mig("a", "vm", 1, 100, 1.0);
        a.memory_verified = Some(true);
        let mut b = mig("b", "vm", 2, 100, 1.0);
        b.memory_verified = Some(false);
        let c = mig("c", "vm", 3, 100, 1.0);
        let round = |id: &str| RoundRow {
            migration_id: id.into(),
            round: 1,
            start_utc_ns: None,
            duration_s: Some(1.0),
            sent_bytes: 1,
            skipped_pages: 0,
            dirtied_pages: None,
            dirty_rate_bytes_per_s: None,
            gamma: None,
            last: false,
        };
        let migs = vec![a, b, c];
        let rounds = vec![round("a"), round("b"), round("c")];
        let (m, r, bad) = split_mismatched(migs.clone(), rounds.clone(), false);
        assert_eq!(bad, ["b"]);
        let ids: Vec<&str> = m.iter().map(|x| x.migration_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|x| x.migration_id != "b"));
        let (m, r, bad) = split_mismatched(migs, rounds, true);
        assert_eq!((m.len(), r.len(), bad.len()), (3, 3, 1));
    }

    #[test]
    fn predictions_use_only_earlier_migrations() {
        // Measured exactly what the base simulation gives for 100 MB at D/R = 0.5.
        let migs = vec![
            mig("m2", "vm", 2, 198_437_500, 19.84375),
            mig("m1", "vm", 1, 198_437_500, 19.84375),
        ];
        // m1's first round sent only 50 MB (zero pages): m2's refined model starts there.
        // m1's stop-and-copy round sent 600 kB at 10 MB/s (60 ms) of its 100 ms downtime:
        // T_fixed = 40 ms; its rounds do not say how much of that was RAM (V_dev: default).
        let mut last = first_round("m1", 600_000);
        last.round = 2;
        last.last = true;
        let rounds = vec![
            first_round("m1", 50_000_000),
            last,
            first_round("m2", 50_000_000),
        ];
        let opts = EvalOptions {
            gamma: GammaModel::ZERO,
            energy: None,
            refined: true,
            mu: 0.7,
            phi: 0.5,
            hot_set: true,
            probe: true,
            default_rate_bytes_per_s: None,
        };
        let (rows, skipped) = evaluate(&migs, &rounds, &opts);
        assert!(skipped.is_empty());
        assert_eq!(rows.len(), 6);
        let sim_m1 = rows
            .iter()
            .find(|r| r.migration_id == "m1" && r.model == "sim")
            .unwrap();
        assert!(sim_m1.rel_err_v_mig.unwrap().abs() < 1e-12);
        assert!(sim_m1.rel_err_t_mig.unwrap().abs() < 1e-12);
        let r1 = rows
            .iter()
            .find(|r| r.migration_id == "m1" && r.model == "refined")
            .unwrap();
        assert_eq!((r1.history_migrations, r1.first_round_bytes), (0, 1e8));
        let r2 = rows
            .iter()
            .find(|r| r.migration_id == "m2" && r.model == "refined")
            .unwrap();
        assert_eq!((r2.history_migrations, r2.first_round_bytes), (1, 5e7));
        // D_bar of m1 = 5 MB/s = S, so D_tilde = S.
        assert_eq!(r2.dirty_rate_bytes_per_s, 5e6);
        // The downtime model learned from m1 (T_fixed 40 ms; its last round filled
        // (600 kB - V_dev) / (10 MB/s x 0.3 s) of the threshold), and m2 has the same rate
        // and limit: m1's downtime again.
        assert!((r2.predicted_t_down_s.unwrap() - 0.1).abs() < 1e-12);
        // Xen's stop rule: the paper's model (no V_dev), T_fixed 40 ms instead of 20 ms.
        let mut migs_xen = migs.clone();
        for m in &mut migs_xen {
            m.hypervisor = "xen4".into();
            m.max_rounds = Some(5);
        }
        let (rows_xen, _) = evaluate(&migs_xen, &rounds, &opts);
        let r2 = rows_xen
            .iter()
            .find(|r| r.migration_id == "m2" && r.model == "refined")
            .unwrap();
        let from_50 = Scenario {
            vm_mem_bytes: 5e7,
            ..Scenario {
                hypervisor: Hypervisor::Xen4,
                vm_mem_bytes: 0.0,
                dirty_rate_bytes_per_s: 5e6,
                rate: RatePolicy::Fixed {
                    rate_bytes_per_s: 10e6,
                },
                downtime_limit_s: 0.3,
                hot_set_bytes: NO_HOT_SET,
                downtime: DowntimeModel::PAPER,
            }
        };
        let want = simulate(&from_50, &GammaModel::ZERO, None)
            .t_down_s
            .unwrap()
            + 0.02;
        assert!((r2.predicted_t_down_s.unwrap() - want).abs() < 1e-12);
        let m = mape(&rows);
        let all_sim = m
            .iter()
            .find(|g| g.model == "sim" && g.workload.is_none())
            .unwrap();
        assert_eq!(all_sim.n, 2);
        assert!(all_sim.t_mig_percent.unwrap() < 1e-9);
    }

    const MIB: f64 = 1048576.0;

    /// A QEMU migration generated by the hot-set-capped process (Algorithm 1 with
    /// dirty = min(T D, H)), recorded as the collector would: each pre-copy round's dirtied
    /// pages are what the next round sends.
    fn capped_migration(
        id: &str,
        start: i64,
        d: f64,
        r: f64,
        h: f64,
    ) -> (MigrationRow, Vec<RoundRow>) {
        let s = Scenario {
            hypervisor: Hypervisor::Qemu,
            vm_mem_bytes: 96.0 * MIB,
            dirty_rate_bytes_per_s: d,
            rate: RatePolicy::Fixed {
                rate_bytes_per_s: r,
            },
            downtime_limit_s: 0.05,
            hot_set_bytes: h,
            downtime: DowntimeModel::QEMU_DEFAULT,
        };
        let p = crate::predict::simulate_trajectory(&s, &GammaModel::ZERO, None);
        let tr = &p.trajectory;
        let rounds = tr
            .iter()
            .enumerate()
            .map(|(i, x)| RoundRow {
                migration_id: id.into(),
                round: x.round,
                start_utc_ns: None,
                duration_s: Some(x.duration_s),
                sent_bytes: x.sent_bytes.round() as u64,
                skipped_pages: 0,
                dirtied_pages: (!x.last).then(|| (tr[i + 1].sent_bytes / 4096.0).round() as u64),
                dirty_rate_bytes_per_s: None,
                gamma: None,
                last: x.last,
            })
            .collect();
        let mut m = mig(
            id,
            "vm",
            start,
            p.summary.v_mig_bytes.unwrap().round() as u64,
            p.summary.t_mig_s.unwrap(),
        );
        m.vm_mem_bytes = 256 << 20;
        m.t_down_s = p.summary.t_down_s;
        m.rounds = p.summary.rounds;
        m.bandwidth_limit_bytes_per_s = Some(r);
        m.downtime_limit_s = Some(0.05);
        m.pre_dirty_rate_bytes_per_s = Some(d);
        (m, rounds)
    }

    #[test]
    fn past_of_learns_the_hot_set_from_a_capped_round_one() {
        let (d, r) = (12.0 * MIB, 16.0 * MIB);
        let (m1, r1) = capped_migration("m1", 1, d, r, 34.0 * MIB);
        let (m2, r2) = capped_migration("m2", 2, d, r, NO_HOT_SET);
        let (m3, r3) = capped_migration("m3", 3, d, r, 20.0 * MIB);
        fn refs(r: &[RoundRow]) -> Vec<&RoundRow> {
            r.iter().collect()
        }
        // Capped: round 1 (6 s) dirtied 34 MiB, under 12 MiB/s x 6 s: H_m = x_1 exactly,
        // D_m = eq 11 over rounds 2.. = 12 MiB/s (up to the page rounding of the record).
        let p1 = past_of(&m1, &refs(&r1), r);
        assert_eq!(p1.hot_set, Some(34.0 * MIB));
        assert!((p1.d_m.unwrap() / d - 1.0).abs() < 1e-3, "{:?}", p1.d_m);
        let rest: Vec<RoundRate> = r1
            .iter()
            .filter(|x| !x.last && x.round > 1)
            .filter(|x| x.duration_s.unwrap() >= crate::train::MIN_ROUND_S)
            .map(|x| RoundRate {
                dirty_rate_bytes_per_s: x.dirtied_pages.unwrap() as f64 * 4096.0
                    / x.duration_s.unwrap(),
                duration_s: x.duration_s.unwrap(),
            })
            .collect();
        assert_eq!(p1.d_m, d_bar(&rest), "D_m = D_rest");
        // eq 11 over every round mixes the capped round 1 in: well under D.
        assert!(p1.d_bar.unwrap() < 0.85 * d, "{:?}", p1.d_bar);
        // Uncapped: no hot set, D_m = today's D_bar (= D).
        let p2 = past_of(&m2, &refs(&r2), r);
        assert_eq!(p2.hot_set, None);
        assert_eq!(p2.d_m, p2.d_bar);
        assert!((p2.d_m.unwrap() / d - 1.0).abs() < 1e-3);
        // H_hat is the largest H_m; D_hat (eq 12) runs over D_m.
        let migs = vec![m3, m1, m2];
        let rounds: Vec<RoundRow> = [r1, r2, r3].concat();
        let h = vm_history(&migs, &rounds, "vm", 0.7);
        assert_eq!(h.migrations, 3);
        assert_eq!(h.hot_set_bytes, Some(34.0 * MIB));
        assert_eq!(h.d_bar_bytes_per_s.len(), 3);
        assert_eq!(h.d_bar_bytes_per_s[0], p1.d_m.unwrap());
        assert!((h.d_hat_bytes_per_s.unwrap() / d - 1.0).abs() < 1e-3);
        // A VM whose round 1 was never capped has no hot set.
        let h = vm_history(&migs[2..], &rounds, "vm", 0.7);
        assert_eq!(h.hot_set_bytes, None);
    }

    #[test]
    fn capped_model_predicts_a_capped_process() {
        // Two migrations of a VM with a 34 MiB hot set dirtying 12 MiB/s, over 16 then
        // 20 MiB/s links. The second is predicted from the first alone.
        let (d, h) = (12.0 * MIB, 34.0 * MIB);
        let (m1, r1) = capped_migration("m1", 1, d, 16.0 * MIB, h);
        let (m2, r2) = capped_migration("m2", 2, d, 20.0 * MIB, h);
        let migs = vec![m1, m2.clone()];
        let rounds = [r1, r2].concat();
        let gm = GammaModel {
            omega_per_s: -0.0463,
            xi_s_per_byte: -1e-10,
            psi: 0.3586,
        };
        let mut opts = EvalOptions {
            gamma: gm,
            energy: None,
            refined: true,
            mu: 0.7,
            phi: 0.5,
            hot_set: true,
            probe: true,
            default_rate_bytes_per_s: None,
        };
        let refined_m2 = |opts: &EvalOptions| {
            let (rows, skipped) = evaluate(&migs, &rounds, opts);
            assert!(skipped.is_empty());
            rows.into_iter()
                .find(|r| r.migration_id == "m2" && r.model == "refined")
                .unwrap()
        };
        let r = refined_m2(&opts);
        assert_eq!(r.hot_set_bytes, Some(h));
        assert_eq!(r.first_round_bytes, 96.0 * MIB);
        let err = r.rel_err_v_mig.unwrap();
        assert!(err.abs() < 0.01, "capped: {err}");
        assert!(r.rel_err_t_mig.unwrap().abs() < 0.01);
        // The gamma model is not used once the hot set is known: the same with gamma = 0.
        opts.gamma = GammaModel::ZERO;
        assert_eq!(
            refined_m2(&opts).predicted_v_mig_bytes,
            r.predicted_v_mig_bytes
        );
        // The published refined model (no cap, eq 11 over every round) misses it.
        opts.hot_set = false;
        let open = refined_m2(&opts);
        assert_eq!(open.hot_set_bytes, None);
        assert!(open.rel_err_v_mig.unwrap().abs() > 0.05, "{open:?}");
        // The first migration had no history: no hot set, the gamma model as before.
        opts = EvalOptions { gamma: gm, ..opts };
        let (rows, _) = evaluate(
            &migs,
            &rounds,
            &EvalOptions {
                hot_set: true,
                ..opts
            },
        );
        let r1 = rows
            .iter()
            .find(|r| r.migration_id == "m1" && r.model == "refined")
            .unwrap();
        let sim = rows
            .iter()
            .find(|r| r.migration_id == "m1" && r.model == "sim")
            .unwrap();
        assert_eq!(r1.hot_set_bytes, None);
        assert_eq!(r1.predicted_v_mig_bytes, sim.predicted_v_mig_bytes);
    }

    #[test]
    fn guided_choice_beats_random_when_predictions_are_right() {
        let migs: Vec<MigrationRow> = (0..8)
            .map(|i| {
                let mut m = mig(&format!("m{i}"), &format!("vm{i}"), i, 0, 0.0);
                m.vm_mem_bytes = 50_000_000 * (i as u64 + 1);
                m
            })
            .collect();
        let opts = EvalOptions {
            gamma: GammaModel::ZERO,
            energy: None,
            refined: false,
            mu: 0.7,
            phi: 0.5,
            hot_set: true,
            probe: true,
            default_rate_bytes_per_s: None,
        };
        let (mut rows, _) = evaluate(&migs, &[], &opts);
        // Make the measurements equal to the predictions.
        for r in &mut rows {
            r.measured_v_mig_bytes = r.predicted_v_mig_bytes.unwrap();
            r.measured_t_mig_s = r.predicted_t_mig_s.unwrap();
            r.measured_t_down_s = r.predicted_t_down_s;
        }
        let w: Weights = "0.25,0.25,0.5,0".parse().unwrap();
        let s = decision_trials(&rows, "sim", 200, 4, 7, &w).unwrap();
        assert!(s.t_mig_percent > 30.0 && s.v_mig_percent > 30.0, "{s:?}");
        assert_eq!(s, decision_trials(&rows, "sim", 200, 4, 7, &w).unwrap());
        assert_eq!(s.e_mig_percent, None, "no measured energy");
        // Energy alone: predicted E_mig ranks the candidates in the opposite order to V_mig
        // (made up, so that only the E_mig term can find the best), and is measured exactly.
        for r in &mut rows {
            let e = 1e9 / r.predicted_v_mig_bytes.unwrap();
            r.predicted_e_mig_j = Some(e);
            r.measured_e_mig_j = Some(e);
        }
        let w: Weights = "0,0,0,1".parse().unwrap();
        let s = decision_trials(&rows, "sim", 200, 4, 7, &w).unwrap();
        assert!(s.e_mig_percent.unwrap() > 30.0, "{s:?}");
        assert!(s.v_mig_percent < 0.0, "{s:?}");
    }

    /// Rounds 1..=n of a migration whose gamma follows `g(T_prev, D)` exactly.
    fn gamma_rounds(
        id: &str,
        d: f64,
        durations: &[f64],
        mut g: impl FnMut(f64, f64) -> f64,
    ) -> Vec<RoundRow> {
        durations
            .iter()
            .enumerate()
            .map(|(i, &t)| RoundRow {
                migration_id: id.into(),
                round: i as u32 + 1,
                start_utc_ns: None,
                duration_s: Some(t),
                sent_bytes: 1,
                skipped_pages: 0,
                dirtied_pages: None,
                dirty_rate_bytes_per_s: Some(d),
                gamma: (i > 0).then(|| g(durations[i - 1], d)),
                last: i + 1 == durations.len(),
            })
            .collect()
    }

    #[test]
    fn split_fits_gamma_on_training_rounds_and_marks_held_out_rows() {
        let truth = |t: f64, d: f64| 0.05 * t + 2e-8 * d + 0.1;
        let mut migs = Vec::new();
        let mut rounds = Vec::new();
        for (k, d) in [4e6, 8e6, 12e6, 6e6].into_iter().enumerate() {
            for rep in 0..2 {
                let id = format!("m{k}-{rep}");
                let mut m = mig(&id, &format!("vm{k}"), (rep * 10 + k) as i64, 1, 1.0);
                m.pre_dirty_rate_bytes_per_s = Some(d);
                m.bandwidth_limit_bytes_per_s = Some(16e6);
                migs.push(m);
                // A 0.05 s switchover round (an artefact) before the last one.
                let durs = [6.0, 3.0 - 0.1 * k as f64, 1.5, 0.7, 0.3, 0.05, 0.04];
                let mut r = gamma_rounds(&id, d, &durs, truth);
                // The artefact's gamma is wild, as polling makes it; it must be left out.
                r[5].gamma = Some(-86.8);
                rounds.extend(r);
            }
        }
        let first: Vec<&MigrationRow> = migs
            .iter()
            .filter(|m| m.migration_id.ends_with("-0"))
            .collect();
        let fit = fit_gamma_on(&first, &rounds);
        assert_eq!(fit.training_migrations, 4);
        // Rounds 2..5 of each (round 6 is an artefact, round 7 the last).
        assert_eq!(fit.gamma_rows, 4 * 4);
        let g = fit.fitted.unwrap();
        assert!((g.omega_per_s - 0.05).abs() < 1e-9, "{g:?}");
        assert!((g.xi_s_per_byte - 2e-8).abs() < 1e-15, "{g:?}");
        assert!((g.psi - 0.1).abs() < 1e-9, "{g:?}");
        assert_eq!(fit.used, g);
        assert!(fit.note.is_none());
        let opts = EvalOptions {
            gamma: GammaModel::ZERO,
            energy: None,
            refined: true,
            mu: 0.7,
            phi: 0.5,
            hot_set: true,
            probe: true,
            default_rate_bytes_per_s: None,
        };
        let e = evaluate_split(
            &migs,
            &rounds,
            &opts,
            &HashMap::new(),
            &Split::FirstPerVm(1),
        );
        assert_eq!(e.fit.as_ref().unwrap().used, g);
        for r in &e.rows {
            assert_eq!(
                r.held_out,
                Some(r.migration_id.ends_with("-1")),
                "{}",
                r.migration_id
            );
        }
        // Every row of another dataset's split is held out.
        let ext = Split::External(first.iter().map(|m| (*m).clone()).collect(), rounds.clone());
        let e = evaluate_split(&migs, &rounds, &opts, &HashMap::new(), &ext);
        assert!(e.rows.iter().all(|r| r.held_out == Some(true)));
        assert_eq!(e.fit.unwrap().fitted, Some(g));
        // No split: nothing is marked.
        let e = evaluate_split(&migs, &rounds, &opts, &HashMap::new(), &Split::None);
        assert!(e.rows.iter().all(|r| r.held_out.is_none()) && e.fit.is_none());
    }

    #[test]
    fn a_gamma_fit_no_better_than_zero_is_not_used() {
        // gamma scattering around 0 with no relation to T or D: the out-of-fold error of a
        // fit is worse than predicting 0.
        let mut migs = Vec::new();
        let mut rounds = Vec::new();
        let mut x: u64 = 7;
        for k in 0..6 {
            let id = format!("m{k}");
            migs.push(mig(&id, "vm", k, 1, 1.0));
            let durs = [5.0, 2.0 + 0.3 * k as f64, 1.1, 0.6, 0.4, 0.3];
            let d = 1e6 * (k + 1) as f64;
            rounds.extend(gamma_rounds(&id, d, &durs, |_, _| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2
            }));
        }
        let t: Vec<&MigrationRow> = migs.iter().collect();
        let fit = fit_gamma_on(&t, &rounds);
        assert!(fit.fitted.is_some());
        assert!(fit.cv_mae.unwrap() >= fit.zero_mae.unwrap(), "{fit:?}");
        assert_eq!(fit.used, GammaModel::ZERO);
        assert!(fit.note.unwrap().contains("gamma = 0"));
    }
}
