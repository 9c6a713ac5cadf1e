//! `migwatt predict`, `migwatt rank` and `migwatt evaluate` (issue 6): the consumers of the
//! coefficient files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::quantity::{self, Rate, Size};
use anyhow::{bail, Context as _};
use datasets::candidates::read_candidates;
use datasets::migrations::read_migrations;
use datasets::rounds::read_rounds;
use trainer::evaluate::{
    decision_trials, evaluate_split, mape, split_mismatched, vm_history, EvalOptions, Evaluation,
    Split,
};
use trainer::history::{d_tilde, DEFAULT_MU, DEFAULT_PHI};
use trainer::predict::{
    base_model, simulate_trajectory, DowntimeModel, EnergyModel, GammaModel, Hypervisor,
    Prediction, RatePolicy, Scenario, NO_HOT_SET,
};
use trainer::rank::{predict_all, rank, Defaults, Weights};

use super::Format;

/// Which performance model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelChoice {
    /// Algorithm 1: rounds with gamma and the hypervisor's stop rule.
    Sim,
    /// Closed form, eqs 5-8 (gamma = 0, fixed rate).
    Base,
}

/// Coefficient files and transmission-rate options shared by the three commands.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Energy coefficient file (E_mig = alpha V_mig + beta), or its model folder
    #[arg(long, value_name = "FILE")]
    energy_model: Option<PathBuf>,
    /// Gamma coefficient file (gamma = omega T_prev + xi D + psi), or its model folder; none: gamma = 0
    #[arg(long, value_name = "FILE")]
    gamma_model: Option<PathBuf>,
    /// Stop rule: xen3 (50 pages, 29 rounds, 3 x memory), xen4 (5 rounds), qemu (rate x downtime limit)
    #[arg(long, default_value = "qemu")]
    hypervisor: Hypervisor,
    /// Transmission rate, e.g. 800Mbit/s, 60MB/s, 16MiB/s
    #[arg(long, value_name = "RATE", conflicts_with = "adaptive", value_parser = quantity::rate)]
    rate: Option<Rate>,
    /// Adaptive rate: R_i = D + delta within [R_min, R_max] (section 4.3)
    #[arg(long)]
    adaptive: bool,
    /// delta of --adaptive
    #[arg(long, default_value = "100Mbit/s", value_name = "RATE", value_parser = quantity::rate)]
    rate_delta: Rate,
    /// R_min of --adaptive
    #[arg(long, default_value = "400Mbit/s", value_name = "RATE", value_parser = quantity::rate)]
    rate_min: Rate,
    /// R_max of --adaptive
    #[arg(long, default_value = "800Mbit/s", value_name = "RATE", value_parser = quantity::rate)]
    rate_max: Rate,
    /// QEMU downtime limit, e.g. 300ms or 1s
    #[arg(long, default_value = "300ms", value_name = "DURATION", value_parser = quantity::duration)]
    downtime_limit: std::time::Duration,
}

struct Models {
    gamma: GammaModel,
    gamma_id: Option<String>,
    energy: Option<EnergyModel>,
    energy_id: Option<String>,
}

impl ModelArgs {
    fn models(&self) -> anyhow::Result<Models> {
        // The library's error names the file; the flag is added here.
        let load = |flag: &'static str, p: &Path| trainer::coef::load(p).context(flag);
        let (gamma, gamma_id) = match &self.gamma_model {
            Some(p) => {
                let f = load("--gamma-model", p)?;
                let (g, note) =
                    GammaModel::for_prediction(&f).with_context(|| p.display().to_string())?;
                if let Some(note) = note {
                    errln!("note: {note}");
                }
                (g, Some(f.model.id))
            }
            None => (GammaModel::ZERO, None),
        };
        let (energy, energy_id) = match &self.energy_model {
            Some(p) => {
                let f = load("--energy-model", p)?;
                (
                    Some(EnergyModel::from_file(&f).with_context(|| p.display().to_string())?),
                    Some(f.model.id),
                )
            }
            None => (None, None),
        };
        Ok(Models {
            gamma,
            gamma_id,
            energy,
            energy_id,
        })
    }

    fn rate_policy(&self) -> anyhow::Result<Option<RatePolicy>> {
        if self.adaptive {
            return Ok(Some(RatePolicy::Adaptive {
                delta_bytes_per_s: self.rate_delta.bytes_per_s,
                min_bytes_per_s: self.rate_min.bytes_per_s,
                max_bytes_per_s: self.rate_max.bytes_per_s,
            }));
        }
        Ok(self.rate.map(|r| RatePolicy::Fixed {
            rate_bytes_per_s: r.bytes_per_s,
        }))
    }

    fn downtime_limit_s(&self) -> anyhow::Result<f64> {
        Ok(self.downtime_limit.as_secs_f64())
    }
}

/// `migwatt predict`: the cost of migrating one VM (or every VM of a table).
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Guest memory (data of the first round), e.g. 1GiB
    #[arg(long, value_name = "SIZE", value_parser = quantity::size)]
    vm_mem: Option<Size>,
    /// Dirtying rate D sampled now, e.g. 60MB/s
    #[arg(long, value_name = "RATE", value_parser = quantity::rate)]
    dirty_rate: Option<Rate>,
    /// Performance model
    #[arg(long, value_enum, default_value = "sim")]
    model: ModelChoice,
    /// Predict every VM of a table (Parquet/CSV: vm, vm_mem_bytes, dirty_rate_bytes_per_s[, rate_bytes_per_s, downtime_limit_s, hypervisor])
    #[arg(long, value_name = "FILE", conflicts_with_all = ["vm_mem", "history_dir", "hot_set"])]
    vms: Option<PathBuf>,
    /// Refined model: a dataset folder of past migrations (migrations/ and rounds/)
    #[arg(long, value_name = "DIR", requires = "vm")]
    history_dir: Option<PathBuf>,
    #[arg(long = "history", hide = true, value_parser = super::Renamed("--history-dir DIR"))]
    _history: Option<String>,
    /// The VM whose history to use (the refined model also learns the VM's hot set H from it:
    /// the largest round-1 dirty set capped below the later rounds' rate)
    #[arg(long, value_name = "NAME")]
    vm: Option<String>,
    /// Hot set H, e.g. 32MiB: the writable working set, the most memory the guest can have
    /// dirty however long a round lasts (data dirtied per round = min(T D, H), gamma then 0);
    /// give it when the guest's writes are confined to a region of known size (overrides the
    /// H learned by --history-dir)
    #[arg(long, value_name = "SIZE", value_parser = quantity::size)]
    hot_set: Option<Size>,
    /// A probe file (`migwatt calibrate probe --out FILE`): the VM's D, hot set H and non-zero
    /// share measured before migrating. Without history it gives D, H and the first round
    /// (non-zero share x RAM); with --history-dir its D is the rate sampled now (S of eq 13).
    /// --dirty-rate, --hot-set and --vm-mem override it
    #[arg(long, value_name = "FILE", conflicts_with = "vms")]
    probe: Option<PathBuf>,
    /// EWMA weight mu of eq 12 (> 0.5)
    #[arg(long, default_value_t = DEFAULT_MU)]
    mu: f64,
    /// Blend phi of eq 13
    #[arg(long, default_value_t = DEFAULT_PHI)]
    phi: f64,
    /// With --history-dir: keep the VM's migrations whose guest memory did not match after the
    /// migration (memory_verified = false; left out by default, and named either way)
    #[arg(long, requires = "history_dir")]
    include_mismatched: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Say which migrations' memory did not match, and whether they were left out.
fn note_mismatched(dir: &Path, ids: &[String], included: bool) {
    if ids.is_empty() {
        return;
    }
    errln!(
        "note: {} migration(s) of {} did not verify (guest memory differed after the migration){}: {}",
        ids.len(),
        dir.display(),
        if included {
            ", kept (--include-mismatched)"
        } else {
            ", left out (--include-mismatched keeps them)"
        },
        ids.join(", ")
    );
}

fn read_history(
    dir: &Path,
) -> anyhow::Result<(
    Vec<datasets::migrations::MigrationRow>,
    Vec<datasets::rounds::RoundRow>,
)> {
    let mdir = if dir.join("migrations").is_dir() {
        dir.join("migrations")
    } else {
        dir.to_path_buf()
    };
    let migs = read_migrations(&mdir)?;
    let rdir = dir.join("rounds");
    let rounds = if rdir.is_dir() {
        read_rounds(&rdir)?
    } else {
        Vec::new()
    };
    Ok((migs, rounds))
}

/// A prediction whose figures are not all finite numbers comes from inputs or coefficients
/// out of any plausible range (an alpha of 1e308 J/B): refused, never printed as inf or null.
fn finite_prediction(p: &trainer::predict::Summary, m: &Models) -> anyhow::Result<()> {
    let figures = [
        ("V_mig", p.v_mig_bytes, "B"),
        ("T_mig", p.t_mig_s, "s"),
        ("T_down", p.t_down_s, "s"),
        ("E_mig", p.e_mig_j, "J"),
    ];
    for (what, v, unit) in figures {
        if let Some(v) = v.filter(|v| !v.is_finite()) {
            let models: Vec<&str> = [&m.energy_id, &m.gamma_id]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            bail!(
                "{what} comes out as {v} {unit}: the inputs or the coefficients of {} are out of any plausible range",
                if models.is_empty() {
                    "the models".to_string()
                } else {
                    models.join(" and ")
                }
            );
        }
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{:.*}", digits, x / scale))
}

fn print_prediction(p: &Prediction) {
    let s = &p.summary;
    outln!(
        "V_mig {} MB  T_mig {} s  T_down {} ms  E_mig {} J  rounds {}  converges {}",
        fmt_opt(s.v_mig_bytes, 1e6, 3),
        fmt_opt(s.t_mig_s, 1.0, 3),
        fmt_opt(s.t_down_s, 1e-3, 1),
        fmt_opt(s.e_mig_j, 1.0, 2),
        s.rounds,
        if s.converges { "yes" } else { "no" }
    );
    outln!("{}", p.reason);
    if !p.trajectory.is_empty() {
        outln!("round    sent_MB  duration_s  rate_MB/s  gamma  last");
        for r in &p.trajectory {
            outln!(
                "{:>5} {:>10.3} {:>11.4} {:>10.3} {:>6} {:>5}",
                r.round,
                r.sent_bytes / 1e6,
                r.duration_s,
                r.rate_bytes_per_s / 1e6,
                r.gamma.map_or("-".into(), |g| format!("{g:.3}")),
                if r.last { "yes" } else { "" }
            );
        }
    }
}

/// Run `migwatt predict`.
pub fn run_predict(a: PredictArgs) -> anyhow::Result<ExitCode> {
    let m = a.models.models()?;
    let policy = a.models.rate_policy()?;
    let limit = a.models.downtime_limit_s()?;
    if let Some(path) = &a.vms {
        return predict_table(&a, &m, path, policy, limit);
    }
    let Some(policy) = policy else {
        bail!("give --rate RATE or --adaptive");
    };
    let probe = match &a.probe {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(trainer::probe::Probe::from_json(
                &text,
                &p.display().to_string(),
            )?)
        }
        None => None,
    };
    let mut vm_mem = a.vm_mem.map(|s| s.bytes);
    let sampled = a
        .dirty_rate
        .map(|r| r.bytes_per_s)
        .or(probe.as_ref().map(|p| p.dirty_rate_bytes_per_s));
    let mut hot_set = a.hot_set.map(|s| s.bytes);
    let mut refined = None;
    let dirty = if let (Some(dir), Some(vm)) = (&a.history_dir, &a.vm) {
        if !(a.mu > 0.5 && a.mu <= 1.0 && (0.0..=1.0).contains(&a.phi)) {
            bail!("--mu must be in (0.5, 1] and --phi in [0, 1]");
        }
        let (migs, rounds) = read_history(dir)?;
        let (migs, rounds, mismatched) = split_mismatched(migs, rounds, a.include_mismatched);
        note_mismatched(dir, &mismatched, a.include_mismatched);
        let h = vm_history(&migs, &rounds, vm, a.mu);
        if h.migrations == 0 {
            bail!("{}: no migrations of VM '{vm}'", dir.display());
        }
        if vm_mem.is_none() {
            vm_mem = h.first_round_bytes;
        }
        if hot_set.is_none() {
            hot_set = h.hot_set_bytes;
        }
        let d = match (sampled, h.d_hat_bytes_per_s) {
            (Some(s), Some(dh)) => d_tilde(s, dh, a.phi),
            (None, Some(dh)) => dh,
            (Some(s), None) => s,
            (None, None) => {
                bail!("no --dirty-rate and no rounds with rates in the history of '{vm}'")
            }
        };
        refined = Some(h);
        d
    } else {
        sampled
            .context("give --dirty-rate RATE (or --probe FILE, or --history-dir DIR --vm NAME)")?
    };
    // A VM without history: what the probe measured stands for it.
    let mut from_probe = Vec::new();
    if let Some(p) = probe.as_ref().filter(|_| refined.is_none()) {
        if a.dirty_rate.is_none() {
            from_probe.push("D");
        }
        if hot_set.is_none() && p.hot_set_bytes.is_some() {
            hot_set = p.hot_set_bytes;
            from_probe.push("hot set H");
        }
        if vm_mem.is_none() {
            vm_mem = Some(p.first_round_bytes());
            from_probe.push(if p.nonzero_share.is_some() {
                "first round (non-zero share x RAM)"
            } else {
                "first round (all RAM)"
            });
        }
    } else if probe.is_some() && a.dirty_rate.is_none() {
        from_probe.push("S of eq 13");
    }
    let Some(vm_mem) = vm_mem else {
        match &refined {
            Some(h) => bail!(
                "the history of '{}' has {} migration(s), none completed (cancelled or failed), so the first round's volume is unknown: give --vm-mem SIZE",
                h.vm,
                h.migrations
            ),
            None => bail!("give --vm-mem SIZE (the data the first round sends, e.g. 1GiB) or --probe FILE"),
        }
    };
    let s = Scenario {
        hypervisor: a.models.hypervisor,
        vm_mem_bytes: vm_mem,
        dirty_rate_bytes_per_s: dirty,
        rate: policy,
        downtime_limit_s: limit,
        hot_set_bytes: hot_set.unwrap_or(NO_HOT_SET),
        downtime: refined
            .as_ref()
            .and_then(|h| h.downtime)
            .unwrap_or(DowntimeModel::default_for(a.models.hypervisor)),
    };
    s.check().context(if a.hot_set.is_some() {
        "--hot-set"
    } else if !from_probe.is_empty() {
        "the probe's figures"
    } else {
        "inputs"
    })?;
    // A known hot set caps the dirty data; it replaces the coalescing gamma modelled.
    let gamma = if hot_set.is_some() {
        GammaModel::ZERO
    } else {
        m.gamma
    };
    let p = match a.model {
        ModelChoice::Sim => simulate_trajectory(&s, &gamma, m.energy.as_ref()),
        ModelChoice::Base if a.hot_set.is_some() => {
            bail!("--hot-set needs --model sim (the closed form has no hot-set cap)")
        }
        ModelChoice::Base => {
            let Some(summary) = base_model(&s, m.energy.as_ref()) else {
                bail!("--model base needs a fixed --rate (the closed form has one rate)");
            };
            Prediction {
                summary,
                reason: summary.stop.reason(),
                trajectory: Vec::new(),
            }
        }
    };
    finite_prediction(&p.summary, &m).context("the prediction")?;
    match a.format {
        Format::Json => {
            let v = serde_json::json!({
                "model": match a.model { ModelChoice::Sim => "sim", ModelChoice::Base => "base" },
                "gamma_model": m.gamma_id,
                "energy_model": m.energy_id,
                "scenario": s,
                "gamma": if a.model == ModelChoice::Sim { gamma } else { m.gamma },
                "hot_set_bytes": hot_set.filter(|_| a.model == ModelChoice::Sim),
                "refined": refined,
                "probe": probe.as_ref().map(|p| serde_json::json!({
                    "file": a.probe.as_ref().map(|f| f.display().to_string()),
                    "used_for": from_probe,
                    "dirty_rate_bytes_per_s": p.dirty_rate_bytes_per_s,
                    "hot_set_bytes": p.hot_set_bytes,
                    "nonzero_share": p.nonzero_share,
                })),
                "prediction": p,
            });
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            let capped = a.model == ModelChoice::Sim && hot_set.is_some();
            outln!(
                "{} model, {:?} stop rule, gamma model {}, energy model {}",
                match a.model {
                    ModelChoice::Sim => "Algorithm 1",
                    ModelChoice::Base => "closed-form base (eqs 5-8)",
                },
                s.hypervisor,
                match (capped, m.gamma_id.as_deref()) {
                    (true, Some(_)) => "not used (gamma = 0 under the hot-set cap)",
                    (_, Some(id)) => id,
                    (_, None) => "none (gamma = 0)",
                },
                m.energy_id.as_deref().unwrap_or("none")
            );
            if let Some(h) = &refined {
                outln!(
                    "history of {}: {} migrations, D_bar {:?} MB/s, D_hat {} MB/s -> D_tilde {:.3} MB/s, hot set H_hat {} MB",
                    h.vm,
                    h.migrations,
                    h.d_bar_bytes_per_s.iter().map(|d| (d / 1e4).round() / 100.0).collect::<Vec<_>>(),
                    fmt_opt(h.d_hat_bytes_per_s, 1e6, 3),
                    dirty / 1e6,
                    fmt_opt(h.hot_set_bytes, 1e6, 3)
                );
            }
            if let (Some(p), false) = (&probe, from_probe.is_empty()) {
                outln!(
                    "probe {}: D {:.3} MB/s, hot set {} MB, non-zero share {}; used for {}",
                    a.probe
                        .as_ref()
                        .map_or(String::new(), |f| f.display().to_string()),
                    p.dirty_rate_bytes_per_s / 1e6,
                    fmt_opt(p.hot_set_bytes, 1e6, 3),
                    p.nonzero_share
                        .map_or("-".into(), |z| format!("{:.1} %", 100.0 * z)),
                    from_probe.join(", ")
                );
            }
            if capped {
                outln!(
                    "hot set H {:.3} MB ({}): dirty data per round = min(T D, H)",
                    s.hot_set_bytes / 1e6,
                    if a.hot_set.is_some() {
                        "--hot-set"
                    } else if from_probe.contains(&"hot set H") {
                        "measured by the probe"
                    } else {
                        "learned from the history"
                    }
                );
            }
            print_prediction(&p);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn predict_table(
    a: &PredictArgs,
    m: &Models,
    path: &Path,
    policy: Option<RatePolicy>,
    limit: f64,
) -> anyhow::Result<ExitCode> {
    let c = read_candidates(path)?;
    let d = Defaults {
        hypervisor: a.models.hypervisor,
        rate: policy,
        downtime_limit_s: limit,
        downtime: DowntimeModel::default_for(a.models.hypervisor),
    };
    let mut out = Vec::with_capacity(c.len());
    for i in 0..c.len() {
        let s = trainer::rank::scenario(&c, i, &d)?;
        s.check()
            .with_context(|| format!("{}: row {i} ('{}')", path.display(), c.vm.get(i)))?;
        let p = match a.model {
            ModelChoice::Sim => simulate_trajectory(&s, &m.gamma, m.energy.as_ref()),
            ModelChoice::Base => {
                let summary =
                    base_model(&s, m.energy.as_ref()).context("--model base needs a fixed rate")?;
                Prediction {
                    summary,
                    reason: summary.stop.reason(),
                    trajectory: Vec::new(),
                }
            }
        };
        finite_prediction(&p.summary, m)
            .with_context(|| format!("{}: row {i} ('{}')", path.display(), c.vm.get(i)))?;
        out.push((c.vm.get(i).to_string(), s, p));
    }
    match a.format {
        Format::Json => {
            let v: Vec<_> = out
                .iter()
                .map(|(vm, s, p)| serde_json::json!({"vm": vm, "scenario": s, "prediction": p}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            outln!(
                "{:<16} {:>10} {:>9} {:>9} {:>10} {:>6}  outcome",
                "vm",
                "V_mig_MB",
                "T_mig_s",
                "T_down_ms",
                "E_mig_J",
                "rounds"
            );
            for (vm, _, p) in &out {
                let s = &p.summary;
                outln!(
                    "{:<16} {:>10} {:>9} {:>9} {:>10} {:>6}  {}",
                    vm,
                    fmt_opt(s.v_mig_bytes, 1e6, 2),
                    fmt_opt(s.t_mig_s, 1.0, 3),
                    fmt_opt(s.t_down_s, 1e-3, 1),
                    fmt_opt(s.e_mig_j, 1.0, 1),
                    s.rounds,
                    p.reason
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `migwatt rank`: which VM to migrate (eq 18).
#[derive(Debug, clap::Args)]
pub struct RankArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Candidate VMs (Parquet/CSV: vm, vm_mem_bytes, dirty_rate_bytes_per_s[, rate_bytes_per_s, downtime_limit_s, hypervisor])
    #[arg(long, value_name = "FILE")]
    vms: PathBuf,
    /// Weights a,b,c,d of T_down, T_mig, V_mig, E_mig (sum 1)
    #[arg(long, value_name = "A,B,C,D")]
    weights: String,
    /// Show only the first N candidates (0: all)
    #[arg(long, default_value_t = 0)]
    top: usize,
    /// Print the time of each phase and the prediction throughput on stderr
    #[arg(long)]
    timings: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Run `migwatt rank`.
pub fn run_rank(a: RankArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let w: Weights = a.weights.parse()?;
    let m = a.models.models()?;
    if w.e_mig > 0.0 && m.energy.is_none() {
        bail!(
            "--weights gives E_mig weight {}: give --energy-model",
            w.e_mig
        );
    }
    let d = Defaults {
        hypervisor: a.models.hypervisor,
        rate: a.models.rate_policy()?,
        downtime_limit_s: a.models.downtime_limit_s()?,
        downtime: DowntimeModel::default_for(a.models.hypervisor),
    };
    let c = read_candidates(&a.vms)?;
    if c.is_empty() {
        bail!("{}: no candidate VMs", a.vms.display());
    }
    let t_read = t0.elapsed();
    let t1 = Instant::now();
    let p = predict_all(&c, &d, &m.gamma, m.energy.as_ref())
        .with_context(|| a.vms.display().to_string())?;
    // NaN marks "no figure" in these columns; an infinity is an overflow.
    for (what, column, unit) in [
        ("V_mig", &p.v_mig_bytes, "B"),
        ("T_mig", &p.t_mig_s, "s"),
        ("T_down", &p.t_down_s, "s"),
        ("E_mig", &p.e_mig_j, "J"),
    ] {
        if let Some(i) = column.iter().position(|v| v.is_infinite()) {
            bail!(
                "{}: row {i} ('{}'): {what} comes out as {} {unit}: the row or the models' coefficients are out of any plausible range",
                a.vms.display(),
                c.vm.get(i),
                column[i]
            );
        }
    }
    let t_pred = t1.elapsed();
    let t2 = Instant::now();
    let (cost, order) = rank(&p, &w);
    let t_rank = t2.elapsed();
    let shown = if a.top == 0 {
        order.len()
    } else {
        a.top.min(order.len())
    };
    match a.format {
        Format::Json => {
            let v: Vec<_> = order[..shown]
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    let i = i as usize;
                    let f = |x: f64| x.is_finite().then_some(x);
                    serde_json::json!({
                        "rank": k + 1,
                        "best": k == 0 && p.stop[i].converges(),
                        "vm": c.vm.get(i),
                        "cost": f(cost[i]),
                        "t_down_s": f(p.t_down_s[i]),
                        "t_mig_s": f(p.t_mig_s[i]),
                        "v_mig_bytes": f(p.v_mig_bytes[i]),
                        "e_mig_j": f(p.e_mig_j[i]),
                        "rounds": p.rounds[i],
                        "converges": p.stop[i].converges(),
                        "reason": p.stop[i].reason(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            outln!(
                "{:>5}  {:<16} {:>8} {:>9} {:>9} {:>10} {:>10}  note",
                "rank",
                "vm",
                "cost",
                "T_down_ms",
                "T_mig_s",
                "V_mig_MB",
                "E_mig_J"
            );
            for (k, &i) in order[..shown].iter().enumerate() {
                let i = i as usize;
                let f = |x: f64, s: f64, dg: usize| fmt_opt(x.is_finite().then_some(x), s, dg);
                let note = if k == 0 && p.stop[i].converges() {
                    "<- best".to_string()
                } else if p.stop[i].converges() {
                    String::new()
                } else {
                    p.stop[i].reason().to_string()
                };
                outln!(
                    "{:>5}  {:<16} {:>8} {:>9} {:>9} {:>10} {:>10}  {}",
                    k + 1,
                    c.vm.get(i),
                    f(cost[i], 1.0, 4),
                    f(p.t_down_s[i], 1e-3, 1),
                    f(p.t_mig_s[i], 1.0, 3),
                    f(p.v_mig_bytes[i], 1e6, 2),
                    f(p.e_mig_j[i], 1.0, 1),
                    note
                );
            }
        }
    }
    if a.timings {
        let n = c.len() as f64;
        errln!(
            "candidates {}  read {:.1} ms  predict {:.1} ms ({:.2} M predictions/s)  cost+sort {:.1} ms  end-to-end {:.1} ms ({:.2} M candidates/s)",
            c.len(),
            t_read.as_secs_f64() * 1e3,
            t_pred.as_secs_f64() * 1e3,
            n / t_pred.as_secs_f64() / 1e6,
            t_rank.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3,
            n / t0.elapsed().as_secs_f64() / 1e6,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `migwatt evaluate`: predictions against measured migrations (Figures 10-14).
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Measured migrations: a dataset folder (migrations/ and rounds/) or a migrations folder
    #[arg(long, value_name = "DIR")]
    migrations_dir: PathBuf,
    #[arg(long = "migrations", hide = true, value_parser = super::Renamed("--migrations-dir DIR"))]
    _migrations: Option<String>,
    /// Also evaluate the refined model (eqs 11-13, with the hot set learned per VM: see
    /// --no-hot-set) from each VM's earlier migrations
    #[arg(long)]
    refined: bool,
    #[arg(long = "history", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--refined"))]
    _history: Option<String>,
    /// EWMA weight mu of eq 12 (> 0.5)
    #[arg(long, default_value_t = DEFAULT_MU)]
    mu: f64,
    /// Blend phi of eq 13
    #[arg(long, default_value_t = DEFAULT_PHI)]
    phi: f64,
    /// Refined model without the hot-set cap (eqs 11-13 as published): D_bar over every round,
    /// the gamma model throughout
    #[arg(long, requires = "refined")]
    no_hot_set: bool,
    /// Refined model without the pre-migration probe: a VM's first migration (no history)
    /// predicted from the sampled rate and all of RAM, as before the probe (to compare)
    #[arg(long, requires = "refined")]
    no_probe: bool,
    /// Honest evaluation: each VM's first N migrations (by start time, e.g. a campaign's
    /// repetition 1) train the gamma model and are the history of the rest; only the later,
    /// held-out migrations are reported
    #[arg(long, value_name = "N", conflicts_with_all = ["train_with_dir", "gamma_model"])]
    train_first: Option<usize>,
    /// Honest evaluation: this dataset (migrations/ and rounds/, e.g. a development campaign)
    /// trains the gamma model and every migration of --migrations-dir is held out and reported
    #[arg(long, value_name = "DIR", conflicts_with = "gamma_model")]
    train_with_dir: Option<PathBuf>,
    #[arg(long = "train-with", hide = true, value_parser = super::Renamed("--train-with-dir DIR"))]
    _train_with: Option<String>,
    /// Measured energy (energy observations from `migwatt integrate` or a calibration
    /// campaign): also evaluate E_mig predicted by --energy-model from the predicted V_mig
    #[arg(long, value_name = "FILE")]
    energy: Option<PathBuf>,
    /// Write the per-migration evaluation here (Parquet)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Keep migrations whose guest memory did not match after the migration
    /// (memory_verified = false; left out by default, and named either way)
    #[arg(long)]
    include_mismatched: bool,
    /// Decision trials (Figure 14): model-guided against random choice
    #[arg(long, default_value_t = 0)]
    decision_trials: usize,
    /// Seed of the decision trials
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Candidates per decision trial
    #[arg(long, default_value_t = 8)]
    candidates: usize,
    /// Weights a,b,c,d of T_down, T_mig, V_mig, E_mig for the decision trials
    #[arg(long, default_value = "0.25,0.25,0.5,0", value_name = "A,B,C,D")]
    weights: String,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Run `migwatt evaluate`.
pub fn run_evaluate(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let mut inputs: Vec<(&str, &Path)> = vec![("--migrations-dir", &a.migrations_dir)];
    inputs.extend(a.energy.iter().map(|p| ("--energy", p.as_path())));
    inputs.extend(
        a.models
            .energy_model
            .iter()
            .map(|p| ("--energy-model", p.as_path())),
    );
    inputs.extend(
        a.models
            .gamma_model
            .iter()
            .map(|p| ("--gamma-model", p.as_path())),
    );
    let outputs: Vec<(&str, &Path)> = a.out.iter().map(|p| ("--out", p.as_path())).collect();
    let _io = super::guard_io(&inputs, &outputs)?;
    let m = a.models.models()?;
    let default_rate = match a.models.rate_policy()? {
        Some(RatePolicy::Fixed { rate_bytes_per_s }) => Some(rate_bytes_per_s),
        Some(_) => {
            bail!("evaluate uses each migration's recorded rate; --adaptive is not supported")
        }
        None => None,
    };
    let w: Weights = a.weights.parse()?;
    if a.decision_trials > 0 && w.e_mig > 0.0 && m.energy.is_none() {
        bail!(
            "--weights gives E_mig weight {}: give --energy-model (and --energy for measured savings)",
            w.e_mig
        );
    }
    let (migs, rounds) = read_history(&a.migrations_dir)?;
    let (migs, rounds, mismatched) = split_mismatched(migs, rounds, a.include_mismatched);
    note_mismatched(&a.migrations_dir, &mismatched, a.include_mismatched);
    let opts = EvalOptions {
        gamma: m.gamma,
        energy: m.energy,
        refined: a.refined,
        mu: a.mu,
        phi: a.phi,
        hot_set: !a.no_hot_set,
        probe: !a.no_probe,
        default_rate_bytes_per_s: default_rate,
    };
    let measured_energy: std::collections::HashMap<String, f64> = match &a.energy {
        Some(p) => {
            if m.energy.is_none() {
                bail!(
                    "--energy {}: give --energy-model to predict E_mig",
                    p.display()
                );
            }
            datasets::energy::read_energy(p)?
                .into_iter()
                .map(|r| (r.migration_id, r.e_mig_j))
                .collect()
        }
        None => Default::default(),
    };
    let split = match (a.train_first, &a.train_with_dir) {
        (Some(0), _) => bail!("--train-first 0 trains on nothing: give 1 or more"),
        (Some(n), _) => Split::FirstPerVm(n),
        (None, Some(dir)) => {
            let (m, r) = read_history(dir)?;
            let (m, r, bad) = split_mismatched(m, r, a.include_mismatched);
            if !bad.is_empty() {
                errln!(
                    "note: --train-with-dir {}: {} migration(s) whose guest memory did not verify {}: {}",
                    dir.display(),
                    bad.len(),
                    if a.include_mismatched { "kept (--include-mismatched)" } else { "left out" },
                    bad.join(", ")
                );
            }
            if m.is_empty() {
                bail!("--train-with-dir {}: no migrations", dir.display());
            }
            Split::External(m, r)
        }
        (None, None) => Split::None,
    };
    let Evaluation {
        rows: all_rows,
        skipped,
        fit,
    } = evaluate_split(&migs, &rounds, &opts, &measured_energy, &split);
    // Under a split only the held-out rows count (the file keeps every row, marked).
    let rows: Vec<_> = all_rows
        .iter()
        .filter(|r| r.held_out != Some(false))
        .cloned()
        .collect();
    if a.energy.is_some() && rows.iter().all(|r| r.measured_e_mig_j.is_none()) {
        errln!(
            "warning: no migration of {} has an energy observation (the migration ids differ)",
            a.migrations_dir.display()
        );
    }
    if let Some(out) = &a.out {
        datasets::evaluation::write_evaluation_file(out, &all_rows)?;
    }
    if let Some(note) = fit.as_ref().and_then(|f| f.note.as_deref()) {
        errln!("note: {note}");
    }
    let groups = mape(&rows);
    let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    models.dedup();
    models.sort_unstable();
    models.dedup();
    let savings: Vec<_> = if a.decision_trials > 0 {
        models
            .iter()
            .filter_map(|md| {
                decision_trials(&rows, md, a.decision_trials, a.candidates, a.seed, &w)
            })
            .collect()
    } else {
        Vec::new()
    };
    match a.format {
        Format::Json => {
            let v = serde_json::json!({
                "gamma_model": m.gamma_id,
                "split": split_name(&split),
                "split_fit": fit,
                "migrations": migs.len(),
                "mismatched": mismatched,
                "mismatched_included": a.include_mismatched,
                "evaluated": rows.len(),
                "skipped": skipped,
                "mape": groups,
                "decision": savings,
            });
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            let gamma = match &fit {
                Some(f) => format!(
                    "fitted on the {} training migrations ({} rounds): {}",
                    f.training_migrations,
                    f.gamma_rows,
                    if f.used == trainer::predict::GammaModel::ZERO {
                        "not used, gamma = 0".to_string()
                    } else {
                        format!(
                            "omega {:.4e} 1/s, xi {:.4e} s/B, psi {:.4}",
                            f.used.omega_per_s, f.used.xi_s_per_byte, f.used.psi
                        )
                    }
                ),
                None => m
                    .gamma_id
                    .clone()
                    .unwrap_or_else(|| "none (gamma = 0)".into()),
            };
            outln!(
                "{} migrations ({}), gamma model {gamma}; {} skipped",
                migs.len(),
                split_name(&split),
                skipped.len()
            );
            for s in &skipped {
                outln!("  skipped {}: {}", s.migration_id, s.reason);
            }
            outln!(
                "{:<8} {:<16} {:>3} {:>10} {:>10} {:>11} {:>10} {:>12}",
                "model",
                "workload",
                "n",
                "MAPE_V_%",
                "MAPE_T_%",
                "MAPE_Td_%",
                "MAPE_E_%",
                "converge_ok"
            );
            let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1}"));
            for g in &groups {
                outln!(
                    "{:<8} {:<16} {:>3} {:>10} {:>10} {:>11} {:>10} {:>9}/{}",
                    g.model,
                    if g.first_migrations {
                        "FIRST"
                    } else {
                        g.workload.as_deref().unwrap_or("ALL")
                    },
                    g.n,
                    f(g.v_mig_percent),
                    f(g.t_mig_percent),
                    f(g.t_down_percent),
                    f(g.e_mig_percent),
                    g.convergence_agreement,
                    g.total
                );
            }
            for s in &savings {
                outln!(
                    "decision ({}, {} trials of {} candidates): model-guided cuts T_mig {:.1} %, T_down {:.1} %, V_mig {:.1} %{} against random",
                    s.model,
                    s.trials,
                    s.candidates,
                    s.t_mig_percent,
                    s.t_down_percent,
                    s.v_mig_percent,
                    s.e_mig_percent.map_or(String::new(), |e| format!(", E_mig {e:.1} %"))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How the migrations were split, for the report.
fn split_name(s: &Split) -> String {
    match s {
        Split::None => "all reported; models given".into(),
        Split::FirstPerVm(n) => {
            format!("each VM's first {n} train, the rest held out and reported")
        }
        Split::External(m, _) => format!(
            "{} other migrations train, all held out and reported",
            m.len()
        ),
    }
}
