//! Reading the report's inputs through the `datasets` and `trainer` readers. Every input but
//! `summary.json` is optional for the report: a missing or unreadable one becomes a note
//! (`Err(String)`, naming the file) in its section instead of failing the whole report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datasets::energy::EnergyRow;
use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;
use datasets::table::{load_table, resolve_inputs, LoadOptions};
use datasets::windows::WindowRow;
use trainer::coef::CoefficientFile;

use crate::summary::CampaignSummary;

/// A part of the report's input, or why it is missing.
pub(crate) type Part<T> = Result<T, String>;

/// One host's power over the campaign.
pub(crate) struct HostPower {
    /// `source` or `destination`.
    pub role: String,
    /// Host name.
    pub host: String,
    /// Static power P_0, W (summary, else the baseline file).
    pub p0_w: Option<f64>,
    /// Sample times (UTC ns) and power (W), sorted by time.
    pub trace: Part<(Vec<i64>, Vec<f64>)>,
    /// This host's migration windows, (start, end) UTC ns.
    pub windows: Vec<(i64, i64)>,
}

/// A loaded coefficient file and where it is.
pub(crate) struct Model {
    /// The coefficient file as resolved (a `v<N>.json`).
    pub path: PathBuf,
    /// Its contents.
    pub coef: CoefficientFile,
}

/// One gamma observation, built as `trainer::train::train_gamma` builds them.
pub(crate) struct GammaPoint {
    /// gamma_i of the round.
    pub observed: f64,
    /// The model's gamma for the round's T_{i-1} and D.
    pub predicted: f64,
}

/// Residuals of one model.
pub(crate) struct ResidualSet {
    /// Model name (its folder), e.g. `energy`.
    pub name: String,
    /// Target symbol, e.g. `E_mig`.
    pub symbol: String,
    /// Target unit, e.g. `J`.
    pub unit: String,
    /// Residuals file.
    pub path: PathBuf,
    /// (fitted, residual) pairs.
    pub points: Part<Vec<(f64, f64)>>,
}

/// Everything the report shows.
pub(crate) struct Inputs {
    pub summary: CampaignSummary,
    /// Earliest sample of any host (the power plots' time origin), UTC ns.
    pub t0_utc_ns: Option<i64>,
    pub power: Part<Vec<HostPower>>,
    pub energy_rows: Part<Vec<EnergyRow>>,
    pub energy_model: Part<Model>,
    pub gamma_model: Part<Model>,
    /// Gamma observations, and notes on rounds left out.
    pub gamma: Part<(Vec<GammaPoint>, Vec<String>)>,
    pub residuals: Vec<ResidualSet>,
    pub migrations: Part<Vec<MigrationRow>>,
    /// migration_id -> why its windows were left out of the energy observations.
    pub excluded: HashMap<String, String>,
    /// Inputs that were missing or unreadable, one sentence each.
    pub warnings: Vec<String>,
}

fn rel(dir: &Path, p: &Path) -> PathBuf {
    dir.join(p)
}

/// Read every input named by `summary`, relative to `dir`.
pub(crate) fn load(dir: &Path, summary: CampaignSummary) -> Inputs {
    let paths = summary.paths.clone();
    let mut warnings = Vec::new();

    let windows: Part<Vec<WindowRow>> = datasets::windows::read_windows(&rel(dir, &paths.windows))
        .map_err(|e| datasets::error_chain(&e));
    note(&mut warnings, &windows, "windows");
    let power = load_power(dir, &summary, windows.as_deref().unwrap_or(&[]));
    note(&mut warnings, &power, "samples");
    let t0_utc_ns = power.as_ref().ok().and_then(|hs| {
        hs.iter()
            .filter_map(|h| h.trace.as_ref().ok().and_then(|t| t.0.first().copied()))
            .min()
    });

    let energy_rows = datasets::energy::read_energy(&rel(dir, &paths.energy))
        .map_err(|e| datasets::error_chain(&e));
    note(&mut warnings, &energy_rows, "energy observations");
    let energy_model = load_model(dir, paths.energy_model.as_deref(), "energy model");
    let gamma_model = load_model(dir, paths.gamma_model.as_deref(), "gamma model");

    let rounds: Part<Vec<RoundRow>> = match &paths.rounds_dir {
        None => Err("the campaign names no rounds dataset".into()),
        Some(p) => {
            datasets::rounds::read_rounds(&rel(dir, p)).map_err(|e| datasets::error_chain(&e))
        }
    };
    let gamma = match (&rounds, &gamma_model) {
        (Err(e), _) => Err(format!("no rounds: {e}")),
        (_, Err(e)) => Err(e.clone()),
        (Ok(r), Ok(m)) => gamma_points(r, &m.coef),
    };

    let migrations = match &paths.migrations_dir {
        None => Err("the campaign names no migrations dataset".into()),
        Some(p) => datasets::migrations::read_migrations(&rel(dir, p))
            .map_err(|e| datasets::error_chain(&e)),
    };
    note(&mut warnings, &migrations, "migrations");

    let excluded = match load_exclusions(&rel(dir, &paths.window_quality)) {
        Ok(m) => m,
        Err(e) => {
            warnings.push(format!("window quality: {e}"));
            HashMap::new()
        }
    };

    let mut residuals = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let model_paths = summary
        .models
        .iter()
        .map(|m| m.path.clone())
        .chain(paths.energy_model.clone())
        .chain(paths.gamma_model.clone());
    for p in model_paths {
        let Ok(model) = load_model(dir, Some(&p), "model") else {
            continue;
        };
        if seen.contains(&model.path) {
            continue;
        }
        seen.push(model.path.clone());
        residuals.push(load_residuals(&model));
    }
    for (what, m) in [
        ("energy model", &energy_model),
        ("gamma model", &gamma_model),
    ] {
        note(&mut warnings, m, what);
    }

    Inputs {
        summary,
        t0_utc_ns,
        power,
        energy_rows,
        energy_model,
        gamma_model,
        gamma,
        residuals,
        migrations,
        excluded,
        warnings,
    }
}

/// Record why an input is missing.
fn note<T>(warnings: &mut Vec<String>, r: &Part<T>, what: &str) {
    if let Err(e) = r {
        warnings.push(format!("{what}: {e}"));
    }
}

fn load_power(
    dir: &Path,
    summary: &CampaignSummary,
    windows: &[WindowRow],
) -> Part<Vec<HostPower>> {
    let samples_dir = rel(dir, &summary.paths.samples_dir);
    let by_host = datasets::samples::sample_files_by_host(&samples_dir)
        .map_err(|e| datasets::error_chain(&e))?;
    let mut hosts = Vec::new();
    for h in &summary.hosts {
        let p0_w = h.p0_w.or_else(|| {
            let b = h.baseline.as_ref()?;
            meter::energy::baseline::read_baseline(&rel(dir, b))
                .ok()
                .map(|b| b.p0_watts)
        });
        let trace = match by_host.get(&h.host) {
            None => Err(format!(
                "{}: no samples for host {}",
                samples_dir.display(),
                h.host
            )),
            Some(files) => datasets::samples::read_power_series(&h.host, files, None)
                .map_err(|e| datasets::error_chain(&e))
                .and_then(|s| {
                    if s.is_empty() {
                        Err(format!("{}: no power values", samples_dir.display()))
                    } else {
                        Ok((s.utc_ns, s.watts))
                    }
                }),
        };
        let windows = windows
            .iter()
            .filter(|w| w.host == h.host)
            .map(|w| (w.start_utc_ns, w.end_utc_ns))
            .collect();
        hosts.push(HostPower {
            role: h.role.clone(),
            host: h.host.clone(),
            p0_w,
            trace,
            windows,
        });
    }
    Ok(hosts)
}

fn load_model(dir: &Path, path: Option<&Path>, what: &str) -> Part<Model> {
    let p = path.ok_or_else(|| format!("the campaign has no {what}"))?;
    let full = rel(dir, p);
    let resolved = trainer::coef::resolve(&full).map_err(|e| datasets::error_chain(&e))?;
    let coef = trainer::coef::load(&resolved).map_err(|e| datasets::error_chain(&e))?;
    Ok(Model {
        path: resolved,
        coef,
    })
}

/// Observed against predicted gamma: one point per pre-copy round that has a previous round
/// (T_{i-1}), a gamma and a dirtying rate, final stop-and-copy rounds left out: the rows
/// `train_gamma` fits on by default.
fn gamma_points(
    rounds: &[RoundRow],
    coef: &CoefficientFile,
) -> Part<(Vec<GammaPoint>, Vec<String>)> {
    let index: HashMap<(&str, u32), &RoundRow> = rounds
        .iter()
        .map(|r| ((r.migration_id.as_str(), r.round), r))
        .collect();
    let (mut last, mut first, mut no_gamma, mut no_x) = (0usize, 0usize, 0usize, 0usize);
    let mut points = Vec::new();
    for r in rounds {
        if r.last {
            last += 1;
            continue;
        }
        let prev = r
            .round
            .checked_sub(1)
            .and_then(|p| index.get(&(r.migration_id.as_str(), p)));
        let Some(prev) = prev else {
            first += 1;
            continue;
        };
        let Some(gamma) = r.gamma.filter(|g| g.is_finite()) else {
            no_gamma += 1;
            continue;
        };
        let (Some(t_prev_s), Some(d)) = (prev.duration_s, r.dirty_rate_bytes_per_s) else {
            no_x += 1;
            continue;
        };
        let mut x = Vec::with_capacity(coef.features.len());
        for f in &coef.features {
            x.push(match f.column.as_str() {
                "prev_duration_s" => t_prev_s,
                "dirty_rate_bytes_per_s" => d,
                other => {
                    return Err(format!(
                        "the gamma model uses feature '{other}', which the rounds do not give"
                    ))
                }
            });
        }
        let predicted = coef
            .predict(&x)
            .ok_or("the gamma model's coefficients do not match its features")?;
        points.push(GammaPoint {
            observed: gamma,
            predicted,
        });
    }
    let mut notes = Vec::new();
    for (n, why) in [
        (last, "final stop-and-copy rounds"),
        (first, "first rounds (no T_{i-1})"),
        (no_gamma, "rounds without gamma"),
        (no_x, "rounds without a previous duration or dirtying rate"),
    ] {
        if n > 0 {
            notes.push(format!("{n} {why} left out"));
        }
    }
    Ok((points, notes))
}

fn load_residuals(model: &Model) -> ResidualSet {
    let path = datasets::io::parent_dir(&model.path).join(&model.coef.provenance.residuals_file);
    let points = (|| {
        let inputs =
            resolve_inputs(std::slice::from_ref(&path)).map_err(|e| datasets::error_chain(&e))?;
        let table = load_table(
            &inputs,
            &LoadOptions {
                kind: Some(datasets::residuals::RESIDUALS),
                required: &["fitted", "residual"],
                ..Default::default()
            },
        )
        .map_err(|e| datasets::error_chain(&e))?;
        let fitted = table
            .f64_column("fitted")
            .map_err(|e| datasets::error_chain(&e))?;
        let residual = table
            .f64_column("residual")
            .map_err(|e| datasets::error_chain(&e))?;
        Ok(fitted.into_iter().zip(residual).collect())
    })();
    ResidualSet {
        name: model.coef.model.name.clone(),
        symbol: model.coef.target.symbol.clone(),
        unit: model.coef.target.unit.clone(),
        path,
        points,
    }
}

/// migration_id -> reason, for windows the energy integration left out.
fn load_exclusions(path: &Path) -> Result<HashMap<String, String>, String> {
    let inputs = resolve_inputs(&[path.to_path_buf()]).map_err(|e| datasets::error_chain(&e))?;
    let table = load_table(
        &inputs,
        &LoadOptions {
            kind: Some(datasets::energy::WINDOW_QUALITY),
            required: &["migration_id", "included"],
            optional: &["reason", "role"],
            ..Default::default()
        },
    )
    .map_err(|e| datasets::error_chain(&e))?;
    let ids = table
        .str_column("migration_id")
        .map_err(|e| datasets::error_chain(&e))?;
    let included = table
        .f64_column("included")
        .map_err(|e| datasets::error_chain(&e))?;
    let reasons = if table.has_column("reason") {
        table
            .str_column("reason")
            .map_err(|e| datasets::error_chain(&e))?
    } else {
        vec![None; ids.len()]
    };
    let roles = if table.has_column("role") {
        table
            .str_column("role")
            .map_err(|e| datasets::error_chain(&e))?
    } else {
        vec![None; ids.len()]
    };
    let mut out: HashMap<String, String> = HashMap::new();
    for i in 0..ids.len() {
        let (Some(id), false) = (&ids[i], included[i] != 0.0) else {
            continue;
        };
        let why = match (&roles[i], &reasons[i]) {
            (Some(role), Some(r)) => format!("{role}: {r}"),
            (None, Some(r)) => r.clone(),
            (Some(role), None) => format!("{role} window left out"),
            (None, None) => "window left out".into(),
        };
        out.entry(id.clone())
            .and_modify(|e| {
                if !e.contains(&why) {
                    e.push_str("; ");
                    e.push_str(&why);
                }
            })
            .or_insert(why);
    }
    Ok(out)
}
