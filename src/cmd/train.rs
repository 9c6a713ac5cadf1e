//! `migwatt train ...` and `migwatt models ...` (owned by the trainer work, issue 5).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use trainer::coef::{self, CoefficientFile};
use trainer::{Control, GammaOptions, LinearOptions, TrainOptions, Trained};

/// Options every `train` subcommand takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Input files (.parquet or .csv) or hive-partitioned folders of Parquet files
    #[arg(long, num_args = 1.., required = true, value_name = "PATH")]
    data: Vec<PathBuf>,
    /// Models folder: writes DIR/<name>/v<N>.json (never overwritten) and DIR/<name>/latest
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    #[arg(long = "out", hide = true, value_parser = super::Renamed("--out-dir DIR"))]
    _out: Option<String>,
    /// Model name (folder under DIR)
    #[arg(long)]
    name: Option<String>,
    /// Keep only rows matching COLUMN OP VALUE (OP: = != < <= > >=), e.g. workload=h2; repeatable, ANDed
    #[arg(long, value_name = "EXPR")]
    filter: Vec<String>,
    /// k-fold cross-validation folds (0 disables)
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed of the cross-validation fold assignment
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Refuse designs whose centred and scaled condition number exceeds this
    #[arg(long, default_value_t = trainer::ols::DEFAULT_MAX_CONDITION)]
    max_condition: f64,
    /// Output format: a summary, or the coefficient file(s) as JSON
    #[arg(long, value_enum, default_value = "text")]
    format: super::Format,
    #[arg(long = "json", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--format json"))]
    _json: Option<String>,
    /// Migrations datasets (files or folders) saying whose guest memory did not match after
    /// the migration (memory_verified = false): energy and gamma leave those migrations out,
    /// naming them (default: a migrations/ folder beside the first --data path, if any);
    /// gamma also takes hypervisor and workload per migration_id from them
    #[arg(long, num_args = 1.., value_name = "PATH")]
    migrations: Vec<PathBuf>,
    /// Keep migrations whose guest memory did not match (still named in a note)
    #[arg(long)]
    include_mismatched: bool,
}

impl Common {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            data: self.data.clone(),
            filters: self.filter.clone(),
            out: self.out_dir.clone(),
            name: self.name.clone(),
            folds: self.folds,
            seed: self.seed,
            max_condition: self.max_condition,
            migrations: self.migrations.clone(),
            include_mismatched: self.include_mismatched,
        }
    }
}

/// `migwatt train` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TrainCommand {
    /// E_mig = alpha V_mig + beta (eq 15) from energy observations; --per-side also fits
    /// E_source and E_destination separately (eq 14)
    Energy {
        #[command(flatten)]
        common: Common,
        /// Also fit source and destination separately (<name>-source, <name>-destination)
        #[arg(long)]
        per_side: bool,
    },
    /// gamma = omega T_{i-1} + xi D + psi (eq 10) from pre-copy rounds
    Gamma {
        #[command(flatten)]
        common: Common,
        /// Keep only rounds of this hypervisor (column of the rounds, or from --migrations)
        #[arg(long)]
        hypervisor: Option<String>,
        /// Keep only rounds of this workload (column of the rounds, or from --migrations)
        #[arg(long)]
        workload: Option<String>,
        /// Also fit the final stop-and-copy rounds
        #[arg(long)]
        include_last: bool,
        /// Leave out rounds shorter than this and the rounds right after them: their dirtied
        /// pages are mostly interpolation between progress polls (e.g. 100ms, 0.25s)
        #[arg(long, default_value = "100ms", value_name = "DURATION", value_parser = super::quantity::duration)]
        min_round: std::time::Duration,
    },
    /// Any linear model: TARGET = sum b_j FEATURE_j (+ intercept)
    Linear {
        #[command(flatten)]
        common: Common,
        /// Target column
        #[arg(long)]
        target: String,
        /// Feature columns, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        /// Fit through the origin (R^2 is then uncentred)
        #[arg(long)]
        no_intercept: bool,
        /// Unit of a column, COLUMN=UNIT (e.g. x=B/s); default from the name's suffix, else 1
        #[arg(long, value_name = "COLUMN=UNIT")]
        unit: Vec<String>,
    },
}

/// `migwatt models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the models in a models directory
    List {
        /// Models folder
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: super::Format,
        #[arg(long = "json", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--format json"))]
        _json: Option<String>,
    },
    /// Show a coefficient file (or a model folder / its latest pointer)
    Show {
        /// v<N>.json, a model folder, or its `latest` file
        file: PathBuf,
        /// Output format: a summary, or the (validated) file as JSON
        #[arg(long, value_enum, default_value = "text")]
        format: super::Format,
        #[arg(long = "json", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--format json"))]
        _json: Option<String>,
    },
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Phases on stderr with the time since the command started, so a slow step is visible.
fn progress(phase: &str) {
    let t = START.get_or_init(std::time::Instant::now).elapsed();
    errln!("train: [{:7.3} s] {phase}", t.as_secs_f64());
}

/// Run a `train` subcommand.
pub fn run_train(c: TrainCommand) -> anyhow::Result<ExitCode> {
    START.get_or_init(std::time::Instant::now);
    let quiet = crate::stdout::quiet();
    let sink: &(dyn Fn(&str) + Sync) = &progress;
    // Ctrl-C or SIGTERM stops at the next checkpoint (the residuals stop between pages); the
    // temporary files go with it and earlier versions stay as they were.
    crate::signals::cancel_on_signals()?;
    let ctl = Control {
        cancel: Some(&crate::signals::STOP),
        progress: if quiet { None } else { Some(sink) },
    };
    let common = match &c {
        TrainCommand::Energy { common, .. }
        | TrainCommand::Gamma { common, .. }
        | TrainCommand::Linear { common, .. } => common,
    };
    let mut inputs: Vec<(&str, &std::path::Path)> = common
        .data
        .iter()
        .map(|d| ("--data", d.as_path()))
        .collect();
    inputs.extend(
        common
            .migrations
            .iter()
            .map(|m| ("--migrations", m.as_path())),
    );
    // The models go in a folder of their own: never inside an input dataset.
    let probe = common
        .out_dir
        .join(common.name.as_deref().unwrap_or("model"))
        .join(trainer::coef::LATEST);
    let _io = super::guard_io(&inputs, &[("--out-dir", &probe)])?;
    let (trained, json): (Vec<Trained>, bool) = match c {
        TrainCommand::Energy { common, per_side } => (
            trainer::train_energy(&common.options(), per_side, &ctl)?,
            common.format == super::Format::Json,
        ),
        TrainCommand::Gamma {
            common,
            hypervisor,
            workload,
            include_last,
            min_round,
        } => {
            let min_round_s = min_round.as_secs_f64();
            let g = GammaOptions {
                hypervisor,
                workload,
                migrations: common.migrations.clone(),
                include_last,
                min_round_s,
            };
            (
                vec![trainer::train_gamma(&common.options(), &g, &ctl)?],
                common.format == super::Format::Json,
            )
        }
        TrainCommand::Linear {
            common,
            target,
            features,
            no_intercept,
            unit,
        } => {
            let units = unit
                .iter()
                .map(|u| {
                    u.split_once('=')
                        .map(|(c, u)| (c.trim().to_string(), u.trim().to_string()))
                        .with_context(|| format!("--unit '{u}': expected COLUMN=UNIT"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let l = LinearOptions {
                target,
                features,
                intercept: !no_intercept,
                units,
            };
            (
                vec![trainer::train_linear(&common.options(), &l, &ctl)?],
                common.format == super::Format::Json,
            )
        }
    };
    if json {
        let files: Vec<&CoefficientFile> = trained.iter().map(|t| &t.file).collect();
        outln!("{}", serde_json::to_string_pretty(&files)?);
    } else {
        for t in &trained {
            outln!("wrote {}", t.path.display());
            out!("{}", summary(&t.file));
            for n in &t.file.provenance.notes {
                outln!("  note: {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a `models` subcommand.
pub fn run_models(c: ModelsCommand) -> anyhow::Result<ExitCode> {
    match c {
        ModelsCommand::List { dir, format, .. } => {
            let json = format == super::Format::Json;
            let entries = coef::list(&dir)?;
            if json {
                let v: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|e| {
                        let mut o = serde_json::json!({
                            "name": e.name,
                            "versions": e.versions,
                            "latest": e.latest,
                        });
                        match &e.loaded {
                            Some(Ok(f)) => {
                                o["kind"] = serde_json::json!(f.model.kind);
                                o["r_squared"] = serde_json::json!(f.fit.r_squared);
                                o["n_rows"] = serde_json::json!(f.fit.n_rows);
                                o["created_at"] = serde_json::json!(f.created_at);
                                o["equation"] = serde_json::json!(f.equation);
                            }
                            Some(Err(err)) => o["error"] = serde_json::json!(err),
                            None => {}
                        }
                        o
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if entries.is_empty() {
                outln!("no models in {}", dir.display());
            } else {
                outln!(
                    "{:<24} {:<7} {:>8} {:>10} {:>9}  created (UTC)",
                    "model",
                    "kind",
                    "latest",
                    "R^2",
                    "n"
                );
                for e in &entries {
                    let latest = e
                        .versions
                        .last()
                        .map(|v| format!("v{v}"))
                        .unwrap_or_default();
                    match &e.loaded {
                        Some(Ok(f)) => outln!(
                            "{:<24} {:<7} {:>8} {:>10.6} {:>9}  {}",
                            e.name,
                            f.model.kind.to_string(),
                            format!("v{}", f.model.version),
                            f.fit.r_squared,
                            f.fit.n_rows,
                            f.created_at
                        ),
                        Some(Err(err)) => {
                            outln!("{:<24} {:<7} {:>8}  unreadable: {err}", e.name, "?", latest)
                        }
                        None => outln!("{:<24} {:<7} {:>8}", e.name, "?", latest),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Show { file, format, .. } => {
            let json = format == super::Format::Json;
            let f = coef::load(&file)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                outln!("{}", coef::resolve(&file)?.display());
                out!("{}", summary(&f));
                out!("{}", details(&f));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$e}"))
}

/// Equation with fitted values and units, R^2, n.
fn summary(f: &CoefficientFile) -> String {
    let mut terms = Vec::new();
    for (i, c) in f.coefficients.iter().enumerate() {
        match f.features.get(i) {
            Some(v) => terms.push(format!(
                "{:.6e} {} * {} [{}]",
                c.estimate, c.unit, v.symbol, v.unit
            )),
            None => terms.push(format!("{:.6e} {}", c.estimate, c.unit)),
        }
    }
    let mut s = format!(
        "{} ({} v{}, id {})\n  {} [{}] = {}\n",
        f.model.name,
        f.model.kind,
        f.model.version,
        f.model.id,
        f.target.symbol,
        f.target.unit,
        terms.join(" + ")
    );
    s += &format!(
        "  R^2 {:.6} ({}), adjusted {:.6}, n {}, residual SD {:.6e} {}",
        f.fit.r_squared,
        f.fit.r_squared_kind,
        f.fit.adjusted_r_squared,
        f.fit.n_rows,
        f.fit.residual_sd,
        f.target.unit
    );
    if let Some(cv) = &f.fit.cross_validation {
        s += &format!(
            ", {}-fold CV MAE {:.4e} {} MAPE {}%",
            cv.folds,
            cv.mae,
            f.target.unit,
            cv.mape_percent.map_or("-".into(), |m| format!("{m:.3}"))
        );
    }
    s.push('\n');
    s
}

/// Coefficient table, fit statistics, provenance and hardware.
fn details(f: &CoefficientFile) -> String {
    let mut s = format!("  equation: {}\n", f.equation);
    s += &format!(
        "  {:<14} {:>14} {:>12} {:>10} {:>27}  unit\n",
        "coefficient", "estimate", "std error", "t", "95 % CI"
    );
    for c in &f.coefficients {
        s += &format!(
            "  {:<14} {:>14.6e} {:>12} {:>10} {:>27}  {}\n",
            c.name,
            c.estimate,
            opt(c.std_error, 4),
            c.t_value.map_or("-".into(), |t| format!("{t:.3}")),
            match (c.ci95_low, c.ci95_high) {
                (Some(a), Some(b)) => format!("[{a:.5e}, {b:.5e}]"),
                _ => "-".into(),
            },
            c.unit
        );
    }
    s += &format!(
        "  RMSE {:.4e}, MAE {:.4e}, MAPE {}%, condition number {:.3e}\n",
        f.fit.rmse,
        f.fit.mae,
        f.fit.mape_percent.map_or("-".into(), |m| format!("{m:.3}")),
        f.fit.condition_number
    );
    for v in f.features.iter().chain([&f.target]) {
        s += &format!(
            "  range {} ({}): {} .. {} {} (mean {})\n",
            v.symbol, v.column, v.min, v.max, v.unit, v.mean
        );
    }
    s += &format!(
        "  provenance: {} of {} rows used; filters: {}\n",
        f.provenance.rows_used,
        f.provenance.rows_read,
        if f.provenance.filters.is_empty() {
            "none".into()
        } else {
            f.provenance.filters.join(" and ")
        }
    );
    for i in &f.provenance.inputs {
        s += &format!(
            "    {} ({} rows, {} used) sha256 {}\n",
            i.path, i.rows, i.rows_used, i.sha256
        );
    }
    for n in &f.provenance.notes {
        s += &format!("    note: {n}\n");
    }
    s += &format!("    residuals: {}\n", f.provenance.residuals_file);
    let hw = &f.hardware;
    if !(hw.hosts.is_empty()
        && hw.cpu_models.is_empty()
        && hw.meters.is_empty()
        && hw.memory_bytes.is_empty())
    {
        s += &format!(
            "  hardware: hosts [{}], CPUs [{}], memory [{}], meters [{}]\n",
            hw.hosts.join(", "),
            hw.cpu_models.join(", "),
            hw.memory_bytes
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hw.meters.join(", ")
        );
    }
    s += &format!(
        "  {} {}, schema {}, created {}\n",
        f.toolkit.name, f.toolkit.version, f.schema_version, f.created_at
    );
    s
}
