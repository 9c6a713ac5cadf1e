//! The trainers behind `migwatt train`: energy (eq 15, or eq 14 per side), gamma (eq 10)
//! and any linear model. Each loads its data, refuses bad rows with the file and row,
//! fits with [`OlsParams`], writes the residuals and publishes a new coefficient-file
//! version.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use datasets::residuals::{write_residuals_cancellable, Residuals};
use datasets::table::{
    load_table, resolve_inputs, Filter, InputFile, LoadOptions, Table, TableError,
};
use datasets::{DatasetError, Origins};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

use crate::coef::{self, CoefError, CoefficientFile, ModelKind};
use crate::ols::{FitError, FittedOls, OlsParams, Problem};
use crate::Control;
use datasets::quantity::{unit_from_column_name, Unit};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading the data failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A dataset could not be written or read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The fit was refused.
    #[error("model '{model}'")]
    Fit {
        /// Model name.
        model: String,
        /// Why.
        #[source]
        source: FitError,
    },
    /// Writing the coefficient file failed.
    #[error(transparent)]
    Coef(#[from] CoefError),
    /// Reading an input to hash it failed.
    #[error("{path}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bad options.
    #[error("{0}")]
    Invalid(String),
}

/// Options common to every trainer.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Input files or hive folders (Parquet or CSV by extension).
    pub data: Vec<PathBuf>,
    /// Row filters (`COLUMN OP VALUE`), ANDed.
    pub filters: Vec<String>,
    /// Models directory.
    pub out: PathBuf,
    /// Model name (folder under `out`); each trainer has a default.
    pub name: Option<String>,
    /// Cross-validation folds (0 or 1: none).
    pub folds: usize,
    /// Fold-assignment seed.
    pub seed: u64,
    /// Condition-number limit of the scaled design.
    pub max_condition: f64,
    /// Migrations datasets (files or folders) saying whose guest memory did not match after
    /// the migration (`memory_verified` = false): the energy and gamma trainers leave those
    /// migrations' rows out, naming them in a note. Empty: a `migrations` folder beside the
    /// first data path, if there is one (the layout `calibrate migrate` and `calibrate run`
    /// write); the gamma trainer also reads [`GammaOptions::migrations`].
    pub migrations: Vec<PathBuf>,
    /// Keep the rows of mismatched migrations (still named in a note).
    pub include_mismatched: bool,
}

impl TrainOptions {
    /// Defaults for everything but the inputs and the output folder.
    pub fn new(data: Vec<PathBuf>, out: PathBuf) -> Self {
        TrainOptions {
            data,
            filters: Vec::new(),
            out,
            name: None,
            folds: 5,
            seed: 1,
            max_condition: crate::ols::DEFAULT_MAX_CONDITION,
            migrations: Vec::new(),
            include_mismatched: false,
        }
    }
    fn params(&self, intercept: bool) -> OlsParams {
        OlsParams::new()
            .intercept(intercept)
            .folds(self.folds)
            .seed(self.seed)
            .max_condition(self.max_condition)
    }
    fn parsed_filters(&self) -> Result<Vec<Filter>, TrainError> {
        Ok(self
            .filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<_, _>>()?)
    }
}

/// A published model.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The `v<N>.json` written.
    pub path: PathBuf,
    /// Its content.
    pub file: CoefficientFile,
}

/// A column in a model: data column, paper symbol, unit, and the coefficient's name.
#[derive(Debug, Clone)]
struct Var {
    column: String,
    symbol: String,
    unit: String,
    coefficient: String,
}

struct Spec {
    kind: ModelKind,
    name: String,
    target: Var,
    features: Vec<Var>,
    /// Coefficient name of the intercept, None for no intercept.
    intercept: Option<String>,
    /// Judge the fit against predicting 0 (gamma: a fit worse than gamma = 0 is flagged).
    zero_baseline: bool,
}

/// Rows ready to fit and where they came from.
struct Rows<'a> {
    y: Cow<'a, [f64]>,
    xs: Vec<Cow<'a, [f64]>>,
    origins: Origins,
}

/// Data and facts shared by every model of one run.
struct Context {
    /// Input files; `sha256` is filled by [`Context::finish_hashes`].
    inputs: Vec<coef::InputFile>,
    /// Hashes still being computed: index of their first file in `inputs`, and the thread.
    pending: Vec<(usize, PendingHashes)>,
    files: Vec<PathBuf>,
    filters: Vec<String>,
    rows_read: u64,
    notes: Vec<String>,
    hardware: coef::Hardware,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of some input files: not started yet, or being computed on another thread.
enum PendingHashes {
    Waiting(Vec<PathBuf>),
    Running(std::thread::JoinHandle<Result<Vec<String>, TrainError>>),
}

impl PendingHashes {
    /// Start hashing on another thread (once).
    fn start(&mut self) -> Result<(), TrainError> {
        if let PendingHashes::Waiting(paths) = self {
            let paths = std::mem::take(paths);
            let thread = std::thread::Builder::new()
                .name("sha256".into())
                .spawn(move || paths.iter().map(|p| sha256_file(p)).collect())
                .map_err(|e| {
                    TrainError::Invalid(format!("cannot start the hashing thread: {e}"))
                })?;
            *self = PendingHashes::Running(thread);
        }
        Ok(())
    }
}

/// Load a table; its files' hashes are computed later (see [`Context::start_hashes`]).
fn load_inputs(
    inputs: &[InputFile],
    opts: &LoadOptions<'_>,
) -> Result<(Table, PendingHashes), TrainError> {
    let table = load_table(inputs, opts)?;
    let paths = inputs.iter().map(|i| i.path.clone()).collect();
    Ok((table, PendingHashes::Waiting(paths)))
}

fn hardware_of(table: &Table) -> coef::Hardware {
    let mut hw = coef::Hardware::default();
    for c in ["host", "source_host", "destination_host"] {
        hw.hosts.extend(table.distinct_strings(c));
    }
    for f in table.files() {
        for (k, v) in &f.metadata {
            if k == "migwatt.host" {
                hw.hosts.push(v.clone());
            }
            if k == "migwatt.meter" || k == "migwatt.meter_id" {
                hw.meters.push(v.clone());
            }
        }
    }
    hw.cpu_models.extend(table.distinct_strings("cpu_model"));
    for c in ["host_memory_bytes", "memory_bytes"] {
        hw.memory_bytes.extend(
            table
                .distinct_strings(c)
                .iter()
                .filter_map(|v| v.parse::<f64>().ok())
                .map(|v| v as u64),
        );
    }
    for c in ["meter_id", "meter_model", "meter_firmware"] {
        hw.meters.extend(table.distinct_strings(c));
    }
    for v in [&mut hw.hosts, &mut hw.cpu_models, &mut hw.meters] {
        v.sort();
        v.dedup();
    }
    hw.memory_bytes.sort_unstable();
    hw.memory_bytes.dedup();
    hw
}

const HARDWARE_COLUMNS: [&str; 9] = [
    "host",
    "source_host",
    "destination_host",
    "cpu_model",
    "host_memory_bytes",
    "memory_bytes",
    "meter_id",
    "meter_model",
    "meter_firmware",
];

fn context(table: &Table, hashes: PendingHashes, filters: &[String]) -> Context {
    Context {
        inputs: table
            .files()
            .iter()
            .map(|f| coef::InputFile {
                path: f.path.display().to_string(),
                sha256: String::new(),
                rows: f.rows as u64,
                rows_used: 0,
            })
            .collect(),
        pending: vec![(0, hashes)],
        files: table.files().iter().map(|f| f.path.clone()).collect(),
        filters: filters.to_vec(),
        rows_read: table.files().iter().map(|f| f.rows as u64).sum(),
        notes: Vec::new(),
        hardware: hardware_of(table),
    }
}

impl Context {
    /// Start hashing the inputs on another thread. Called once the rows are fitted: the
    /// hashes are needed only in the coefficient file, and computed while the residuals are
    /// written (a single-threaded step) they leave both cores to the read and the fit.
    fn start_hashes(&mut self) -> Result<(), TrainError> {
        self.pending.iter_mut().try_for_each(|(_, h)| h.start())
    }

    /// Wait for the input hashes and record them.
    fn finish_hashes(&mut self) -> Result<(), TrainError> {
        for (first, mut pending) in std::mem::take(&mut self.pending) {
            pending.start()?;
            let PendingHashes::Running(thread) = pending else {
                continue;
            };
            let hashes = thread
                .join()
                .map_err(|_| TrainError::Invalid("hashing thread panicked".into()))??;
            for (input, sha256) in self.inputs[first..].iter_mut().zip(hashes) {
                input.sha256 = sha256;
            }
        }
        Ok(())
    }
}

/// Fit one model and publish it (residuals first, then the coefficient file).
fn fit_publish(
    opts: &TrainOptions,
    spec: &Spec,
    rows: &Rows,
    ctx: &mut Context,
    ctl: &Control<'_>,
) -> Result<Trained, TrainError> {
    if !coef::valid_name(&spec.name) {
        return Err(TrainError::Invalid(format!(
            "model name '{}': use letters, digits, '_', '-', '.' (not starting with '.')",
            spec.name
        )));
    }
    let label = |i: usize| -> String {
        match rows.origins.get(i) {
            Some((f, r)) => format!("{} row {}", ctx.files[f as usize].display(), r + 1),
            None => format!("row {i}"),
        }
    };
    let features: Vec<(&str, &[f64])> = spec
        .features
        .iter()
        .zip(&rows.xs)
        .map(|(v, c)| (v.column.as_str(), c.as_ref()))
        .collect();
    let fit = opts
        .params(spec.intercept.is_some())
        .fit(
            &Problem {
                features: &features,
                target: (spec.target.column.as_str(), &rows.y),
                row_label: Some(&label),
            },
            ctl,
        )
        .map_err(|source| TrainError::Fit {
            model: spec.name.clone(),
            source,
        })?;
    ctx.start_hashes()?;
    let model_dir = opts.out.join(&spec.name);
    // Runs publishing into one model folder take turns from choosing the version number to
    // publishing it: two would otherwise pick the same v<N> and one remove the other's
    // residuals.
    let cancelled = || ctl.check().is_err();
    let _lock = datasets::io::lock_folder(
        &model_dir,
        &mut || ctl.report("waiting for another run publishing into this model folder"),
        &cancelled,
    )?;
    ctl.report("writing the residuals");
    let version = coef::next_version(&model_dir)?;
    let created = chrono::Utc::now();
    let created_at = created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // The id names the inputs by path and size, not by content: their hashes may still be
    // computing while the residuals (which carry the id) are written.
    let mut h = Sha256::new();
    h.update(spec.name.as_bytes());
    h.update(version.to_le_bytes());
    h.update(created_at.as_bytes());
    for i in &ctx.inputs {
        h.update(i.path.as_bytes());
        h.update(i.rows.to_le_bytes());
    }
    let id = format!("{}/v{version}/{}", spec.name, &hex(&h.finalize())[..12]);
    // Built (and so checked) before anything is written: a bad unit leaves no files behind.
    let mut file = build_file(spec, &fit, ctx, rows, version, id.clone(), created_at)?;
    let residuals_name = format!("v{version}.residuals.parquet");
    file.provenance.residuals_file = residuals_name.clone();
    let target_unit = file.target.unit.clone();
    let residuals_path = model_dir.join(&residuals_name);
    write_residuals_cancellable(
        &residuals_path,
        &Residuals {
            model_id: id,
            target: spec.target.column.clone(),
            unit: target_unit,
            origins: &rows.origins,
            observed: &rows.y,
            fitted: &fit.fitted,
            cv_predicted: fit
                .cross_validation
                .as_ref()
                .map(|c| c.predicted.as_slice()),
        },
        ctl.cancel,
    )?;
    ctl.report("writing the coefficient file");
    let published = ctx.finish_hashes().and_then(|()| {
        // Last point to stop: once the coefficient file is written the version is published.
        ctl.check().map_err(|source| TrainError::Fit {
            model: spec.name.clone(),
            source,
        })?;
        for (input, done) in file.provenance.inputs.iter_mut().zip(&ctx.inputs) {
            input.sha256.clone_from(&done.sha256);
        }
        Ok(coef::publish(&opts.out, &file)?)
    });
    match published {
        Ok(path) => Ok(Trained { path, file }),
        Err(e) => {
            // No residuals without their coefficient file.
            let _ = std::fs::remove_file(&residuals_path);
            Err(e)
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn build_file(
    spec: &Spec,
    fit: &FittedOls,
    ctx: &Context,
    rows: &Rows,
    version: u64,
    id: String,
    created_at: String,
) -> Result<CoefficientFile, TrainError> {
    let unit_of = |v: &Var| -> Result<Unit, TrainError> {
        Unit::parse(&v.unit).map_err(|e| TrainError::Invalid(format!("column '{}': {e}", v.column)))
    };
    let tu = unit_of(&spec.target)?;
    let variable = |v: &Var, s: &crate::ols::Summary| coef::Variable {
        column: v.column.clone(),
        symbol: v.symbol.clone(),
        unit: v.unit.clone(),
        min: s.min,
        max: s.max,
        mean: s.mean,
    };
    let mut coefficients = Vec::new();
    let mut terms = Vec::new();
    for (i, v) in spec.features.iter().enumerate() {
        let e = &fit.estimates[i];
        let unit = tu.div(&unit_of(v)?).to_string();
        terms.push(format!(
            "{} [{unit}] * {} [{}]",
            v.coefficient, v.symbol, v.unit
        ));
        coefficients.push(coefficient(&v.coefficient, Some(&v.column), unit, e));
    }
    if let Some(name) = &spec.intercept {
        let e = fit.estimates.last().expect("intercept");
        terms.push(format!("{name} [{tu}]"));
        coefficients.push(coefficient(name, None, tu.to_string(), e));
    }
    let used = rows.origins.rows_per_file(ctx.inputs.len());
    let mut inputs = ctx.inputs.clone();
    for (i, u) in inputs.iter_mut().zip(used) {
        i.rows_used = u;
    }
    let mut notes = ctx.notes.clone();
    notes.extend(fit.cross_validation_note.clone());
    // The error of predicting 0 for every row, against the out-of-fold error (in-sample
    // without CV): a model that does no better must not be used as if it did.
    let zero_mae = spec
        .zero_baseline
        .then(|| crate::linalg::sum(rows.y.iter().map(|y| y.abs())) / rows.y.len().max(1) as f64);
    let mut flags = Vec::new();
    if let Some(z) = zero_mae {
        let (mae, how) = match &fit.cross_validation {
            Some(c) => (c.mae, "out-of-fold"),
            None => (fit.mae, "in-sample"),
        };
        // A NaN MAE is no better than zero either.
        if mae.partial_cmp(&z) != Some(std::cmp::Ordering::Less) {
            flags.push(coef::FLAG_WORSE_THAN_ZERO.to_string());
            notes.push(format!(
                "{how} MAE {mae:.4} is not lower than {z:.4}, the MAE of predicting {} = 0: prediction uses {} = 0 instead of this fit",
                spec.target.symbol, spec.target.symbol
            ));
        }
    }
    Ok(CoefficientFile {
        schema_version: coef::SCHEMA_VERSION.into(),
        model: coef::ModelId {
            kind: spec.kind,
            name: spec.name.clone(),
            version,
            id,
        },
        equation: format!(
            "{} [{}] = {}",
            spec.target.symbol,
            spec.target.unit,
            terms.join(" + ")
        ),
        target: variable(&spec.target, &fit.target),
        features: spec
            .features
            .iter()
            .zip(&fit.features)
            .map(|(v, s)| variable(v, s))
            .collect(),
        intercept: spec.intercept.is_some(),
        coefficients,
        fit: coef::FitStats {
            method: "OLS: columns centred and scaled, linfa-linear QR solve refined against a Householder R factor; statistics from R^-1".into(),
            n_rows: fit.n as u64,
            n_parameters: fit.estimates.len() as u64,
            df_residual: fit.df as u64,
            r_squared: fit.r_squared,
            r_squared_kind: if fit.intercept { "centered" } else { "uncentered" }.into(),
            adjusted_r_squared: fit.adjusted_r_squared,
            residual_sd: fit.residual_sd,
            rmse: fit.rmse,
            mae: fit.mae,
            mape_percent: fit.mape_percent,
            condition_number: fit.condition_number,
            cross_validation: fit.cross_validation.as_ref().map(|c| coef::CrossValidation {
                folds: c.folds as u64,
                seed: c.seed,
                mae: c.mae,
                mape_percent: c.mape_percent,
                zero_mae,
            }),
            flags,
        },
        provenance: coef::Provenance {
            inputs,
            filters: ctx.filters.clone(),
            rows_read: ctx.rows_read,
            rows_used: fit.n as u64,
            notes,
            residuals_file: String::new(),
        },
        hardware: ctx.hardware.clone(),
        toolkit: coef::Toolkit {
            name: "migwatt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        created_at,
    })
}

fn coefficient(
    name: &str,
    feature: Option<&str>,
    unit: String,
    e: &crate::ols::Estimate,
) -> coef::Coefficient {
    let has_se = e.std_error.is_finite();
    coef::Coefficient {
        name: name.into(),
        feature: feature.map(str::to_string),
        unit,
        estimate: e.value,
        std_error: has_se.then_some(e.std_error),
        t_value: e.t_value.and_then(finite),
        ci95_low: finite(e.ci95.0),
        ci95_high: finite(e.ci95.1),
    }
}

/// Energy columns (the energy-observations dataset, datasets/src/energy.rs).
const V_MIG: &str = "v_mig_bytes";
const E_MIG: &str = "e_mig_j";
const E_SOURCE: &str = "e_source_j";
const E_DESTINATION: &str = "e_destination_j";

/// Migrations whose guest memory did not match after the migration, from the migrations
/// datasets of `opts` and `extra` (else a `migrations` folder beside the first data path):
/// the ids and the paths read (empty when there is nothing to read).
fn mismatched_migrations(
    opts: &TrainOptions,
    extra: &[PathBuf],
) -> Result<(HashSet<String>, Vec<PathBuf>), TrainError> {
    let mut sources: Vec<PathBuf> = opts.migrations.iter().chain(extra).cloned().collect();
    if sources.is_empty() {
        if let Some(beside) = opts
            .data
            .first()
            .and_then(|d| d.parent())
            .map(|p| p.join("migrations"))
            .filter(|p| p.is_dir())
        {
            sources.push(beside);
        }
    }
    sources.sort();
    sources.dedup();
    let mut ids = HashSet::new();
    for p in &sources {
        for m in datasets::migrations::read_migrations(p)? {
            if m.memory_verified == Some(false) {
                ids.insert(m.migration_id);
            }
        }
    }
    Ok((ids, sources))
}

/// Apply [`mismatched_migrations`] to rows keyed by `ids` (None: the row has no migration):
/// the rows to keep, and a note naming what was left out (or kept on purpose).
fn mismatch_mask(
    opts: &TrainOptions,
    extra: &[PathBuf],
    ids: &[Option<String>],
) -> Result<(Vec<bool>, Option<String>), TrainError> {
    let (bad, sources) = mismatched_migrations(opts, extra)?;
    let mut keep = vec![true; ids.len()];
    let mut hit: Vec<&str> = Vec::new();
    for (k, id) in keep.iter_mut().zip(ids) {
        if let Some(id) = id.as_deref().filter(|id| bad.contains(*id)) {
            hit.push(id);
            *k = opts.include_mismatched;
        }
    }
    if hit.is_empty() {
        return Ok((keep, None));
    }
    hit.sort_unstable();
    hit.dedup();
    let from = sources
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let note = if opts.include_mismatched {
        format!(
            "kept on purpose (--include-mismatched): the rows of {} migration(s) whose guest memory did not match after the migration (memory_verified = false in {from}): {}",
            hit.len(),
            hit.join(", ")
        )
    } else {
        format!(
            "left out: the rows of {} migration(s) whose guest memory did not match after the migration (memory_verified = false in {from}; --include-mismatched keeps them): {}",
            hit.len(),
            hit.join(", ")
        )
    };
    Ok((keep, Some(note)))
}

/// The rows of `r` where `keep` holds.
fn keep_rows<'a>(r: Rows<'a>, keep: &[bool]) -> Rows<'a> {
    let pick = |c: &[f64]| -> Vec<f64> {
        c.iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(x, _)| *x)
            .collect()
    };
    let mut origins = Origins::new();
    for ((f, row), k) in r.origins.iter().zip(keep) {
        if *k {
            origins.push(f, row);
        }
    }
    Rows {
        y: Cow::Owned(pick(&r.y)),
        xs: r.xs.iter().map(|x| Cow::Owned(pick(x))).collect(),
        origins,
    }
}

fn all_rows<'a>(table: &'a Table, target: &str, features: &[&str]) -> Result<Rows<'a>, TrainError> {
    Ok(Rows {
        y: table.f64_column_cow(target)?,
        xs: features
            .iter()
            .map(|f| table.f64_column_cow(f))
            .collect::<Result<_, _>>()?,
        origins: table.origins(),
    })
}

/// Fit E_mig = alpha V_mig + beta (eq 15); with `per_side`, also E_source and E_destination
/// separately (eq 14) as `<name>-source` and `<name>-destination`.
pub fn train_energy(
    opts: &TrainOptions,
    per_side: bool,
    ctl: &Control<'_>,
) -> Result<Vec<Trained>, TrainError> {
    let filters = opts.parsed_filters()?;
    let inputs = resolve_inputs(&opts.data)?;
    let mut required = vec![V_MIG, E_MIG];
    if per_side {
        required.extend([E_SOURCE, E_DESTINATION]);
    }
    ctl.report("loading energy observations");
    let mut optional = HARDWARE_COLUMNS.to_vec();
    optional.push(R_MIGRATION);
    let (table, hashes) = load_inputs(
        &inputs,
        &LoadOptions {
            kind: Some(datasets::energy::ENERGY),
            filters: &filters,
            required: &required,
            optional: &optional,
        },
    )?;
    let mut ctx = context(&table, hashes, &opts.filters);
    let keep = if table.has_column(R_MIGRATION) {
        let (keep, note) = mismatch_mask(opts, &[], &table.str_column(R_MIGRATION)?)?;
        ctx.notes.extend(note);
        keep
    } else {
        vec![true; table.n_rows()]
    };
    let all_kept = keep.iter().all(|k| *k);
    let name = opts.name.clone().unwrap_or_else(|| "energy".into());
    let var = |column: &str, symbol: &str, unit: &str, coefficient: &str| Var {
        column: column.into(),
        symbol: symbol.into(),
        unit: unit.into(),
        coefficient: coefficient.into(),
    };
    let mut models = vec![(name.clone(), var(E_MIG, "E_mig", "J", ""), "alpha", "beta")];
    if per_side {
        models.push((
            format!("{name}-source"),
            var(E_SOURCE, "E_source", "J", ""),
            "alpha_s",
            "beta_s",
        ));
        models.push((
            format!("{name}-destination"),
            var(E_DESTINATION, "E_destination", "J", ""),
            "alpha_d",
            "beta_d",
        ));
    }
    let mut out = Vec::new();
    for (name, target, slope, intercept) in models {
        let mut rows = all_rows(&table, &target.column, &[V_MIG])?;
        if !all_kept {
            rows = keep_rows(rows, &keep);
        }
        let spec = Spec {
            kind: ModelKind::Energy,
            name,
            target,
            features: vec![var(V_MIG, "V_mig", "B", slope)],
            intercept: Some(intercept.into()),
            zero_baseline: false,
        };
        out.push(fit_publish(opts, &spec, &rows, &mut ctx, ctl)?);
    }
    Ok(out)
}

/// Options of the gamma trainer.
#[derive(Debug, Clone)]
pub struct GammaOptions {
    /// Keep only rounds of this hypervisor.
    pub hypervisor: Option<String>,
    /// Keep only rounds of this workload.
    pub workload: Option<String>,
    /// Migrations dataset files, for hypervisor and workload when the rounds lack them.
    pub migrations: Vec<PathBuf>,
    /// Also fit the final stop-and-copy rounds (left out by default: nothing is skipped there).
    pub include_last: bool,
    /// Leave out rounds shorter than this, and rounds after one (see [`MIN_ROUND_S`]), s.
    pub min_round_s: f64,
}

impl Default for GammaOptions {
    fn default() -> Self {
        GammaOptions {
            hypervisor: None,
            workload: None,
            migrations: Vec::new(),
            include_last: false,
            min_round_s: MIN_ROUND_S,
        }
    }
}

/// Shortest round that gives a gamma observation or a dirtying rate, s (the artefact rule).
///
/// A recorded round's dirtied pages and bytes come from progress polls 50 ms apart (QEMU's
/// `query-migrate`) interpolated at its boundaries: a round shorter than two polls is mostly
/// interpolation, and the switchover QEMU makes just before stopping the guest can last under
/// a millisecond (87 pages in 0.8 ms read as 527 MiB/s, and the next round's gamma as -86.8).
/// So a round shorter than this gives neither a dirtying rate nor, for itself or the round
/// after it (whose gamma divides by its duration), a gamma observation.
pub const MIN_ROUND_S: f64 = 0.1;

/// Rounds columns (the rounds dataset, datasets/src/rounds.rs).
const R_MIGRATION: &str = "migration_id";
const R_ROUND: &str = "round";
const R_DURATION: &str = "duration_s";
const R_RATE: &str = "dirty_rate_bytes_per_s";
const R_GAMMA: &str = "gamma";
const R_LAST: &str = "last";
/// Name of the derived column T_{i-1}.
pub const T_PREV: &str = "prev_duration_s";

/// Fit gamma = omega T_{i-1} + xi D + psi (eq 10) over pre-copy rounds, T_{i-1} being the
/// previous round's duration within the same migration.
pub fn train_gamma(
    opts: &TrainOptions,
    g: &GammaOptions,
    ctl: &Control<'_>,
) -> Result<Trained, TrainError> {
    let filters = opts.parsed_filters()?;
    let inputs = resolve_inputs(&opts.data)?;
    let mut optional: Vec<&str> = HARDWARE_COLUMNS.to_vec();
    optional.extend(["hypervisor", "workload"]);
    optional.extend(filters.iter().map(|f| f.column.as_str()));
    ctl.report("loading rounds");
    // Load without filters: T_{i-1} comes from the previous round even if a filter drops it.
    let (table, hashes) = load_inputs(
        &inputs,
        &LoadOptions {
            kind: Some(datasets::rounds::ROUNDS),
            filters: &[],
            required: &[R_MIGRATION, R_ROUND, R_DURATION, R_RATE, R_GAMMA, R_LAST],
            optional: &optional,
        },
    )?;
    let mut ctx = context(&table, hashes, &opts.filters);
    let n = table.n_rows();
    let mut keep = table.mask(&filters)?;
    let mig = table.str_column(R_MIGRATION)?;
    let (verified, mismatch_note) = mismatch_mask(opts, &g.migrations, &mig)?;
    // Hypervisor and workload: columns of the rounds, else joined from the migrations.
    if let Some(h) = &g.hypervisor {
        ctx.filters.push(format!("hypervisor={h}"));
    }
    if let Some(w) = &g.workload {
        ctx.filters.push(format!("workload={w}"));
    }
    let wanted = [("hypervisor", &g.hypervisor), ("workload", &g.workload)];
    let mut joined: Option<Labels> = None;
    for (col, want) in wanted {
        let Some(want) = want else { continue };
        let values: Vec<Option<String>> = if table.has_column(col) {
            table.str_column(col)?
        } else {
            if g.migrations.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "--{col} {want}: the rounds have no '{col}' column; pass the migrations dataset with --migrations"
                )));
            }
            if joined.is_none() {
                joined = Some(load_migration_labels(&g.migrations, &mut ctx)?);
            }
            let map = joined.as_ref().expect("loaded");
            mig.iter()
                .map(|m| {
                    m.as_ref().and_then(|m| map.get(m)).and_then(|(h, w)| {
                        if col == "hypervisor" {
                            h.clone()
                        } else {
                            w.clone()
                        }
                    })
                })
                .collect()
        };
        let mut matched = 0;
        for (k, v) in keep.iter_mut().zip(&values) {
            let ok = v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(want));
            *k &= ok;
            matched += usize::from(ok);
        }
        if matched == 0 {
            let mut seen: Vec<String> = values.into_iter().flatten().collect();
            seen.sort();
            seen.dedup();
            return Err(TrainError::Invalid(format!(
                "--{col} {want} matched none of the {n} rounds ({col} values present: {})",
                if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join(", ")
                }
            )));
        }
    }
    if !filters.is_empty() && !keep.iter().any(|k| *k) {
        return Err(TableError::FilterMatchedNothing {
            filters: opts.filters.join(" and "),
            rows: n,
            files: table.files().len(),
        }
        .into());
    }
    let round = table.f64_column(R_ROUND)?;
    let duration = table.f64_column(R_DURATION)?;
    let rate = table.f64_column(R_RATE)?;
    let gamma = table.f64_column(R_GAMMA)?;
    let last = table.f64_column(R_LAST)?;
    let mut index: HashMap<(&str, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if let Some(m) = &mig[i] {
            if round[i].is_finite() {
                index.insert((m.as_str(), round[i] as i64), i);
            }
        }
    }
    let origins_all: Vec<(u32, u64)> = table.origins().iter().collect();
    let mut rows = Rows {
        y: Cow::Owned(Vec::new()),
        xs: vec![Cow::Owned(Vec::new()), Cow::Owned(Vec::new())],
        origins: Origins::new(),
    };
    let short_note = format!(
        "rounds shorter than {} s, or right after one (artefacts of polling the migration's progress)",
        g.min_round_s
    );
    let mut dropped: [(usize, &str); 6] = [
        (0, "filtered out"),
        (
            0,
            "final stop-and-copy rounds (use --include-last to keep them)",
        ),
        (
            0,
            "first rounds or rounds whose previous round is missing (no T_{i-1})",
        ),
        (0, "rounds without gamma (null)"),
        (0, "rounds whose previous duration or dirtying rate is null"),
        (0, short_note.as_str()),
    ];
    for i in 0..n {
        if !keep[i] {
            dropped[0].0 += 1;
            continue;
        }
        if !verified[i] {
            continue;
        }
        if last[i] != 0.0 && !g.include_last {
            dropped[1].0 += 1;
            continue;
        }
        let prev = mig[i]
            .as_deref()
            .filter(|_| round[i].is_finite())
            .and_then(|m| index.get(&(m, round[i] as i64 - 1)));
        let Some(&prev) = prev else {
            dropped[2].0 += 1;
            continue;
        };
        if gamma[i].is_nan() {
            dropped[3].0 += 1;
            continue;
        }
        if duration[prev].is_nan() || rate[i].is_nan() {
            dropped[4].0 += 1;
            continue;
        }
        if !(duration[prev] >= g.min_round_s && duration[i] >= g.min_round_s) {
            dropped[5].0 += 1;
            continue;
        }
        rows.y.to_mut().push(gamma[i]);
        rows.xs[0].to_mut().push(duration[prev]);
        rows.xs[1].to_mut().push(rate[i]);
        rows.origins.push(origins_all[i].0, origins_all[i].1);
    }
    for (count, why) in dropped {
        if count > 0 {
            ctx.notes.push(format!("{count} row(s) left out: {why}"));
        }
    }
    ctx.notes.extend(mismatch_note);
    let var = |column: &str, symbol: &str, unit: &str, coefficient: &str| Var {
        column: column.into(),
        symbol: symbol.into(),
        unit: unit.into(),
        coefficient: coefficient.into(),
    };
    let spec = Spec {
        kind: ModelKind::Gamma,
        name: opts.name.clone().unwrap_or_else(|| "gamma".into()),
        target: var(R_GAMMA, "gamma", "1", ""),
        features: vec![
            var(T_PREV, "T_prev", "s", "omega"),
            var(R_RATE, "D", "B/s", "xi"),
        ],
        intercept: Some("psi".into()),
        zero_baseline: true,
    };
    fit_publish(opts, &spec, &rows, &mut ctx, ctl)
}

/// migration_id -> (hypervisor, workload).
type Labels = HashMap<String, (Option<String>, Option<String>)>;

/// migration_id -> (hypervisor, workload) from migrations dataset files.
fn load_migration_labels(paths: &[PathBuf], ctx: &mut Context) -> Result<Labels, TrainError> {
    let inputs = resolve_inputs(paths)?;
    let (t, hashes) = load_inputs(
        &inputs,
        &LoadOptions {
            kind: Some(datasets::migrations::MIGRATIONS),
            filters: &[],
            required: &[R_MIGRATION, "hypervisor"],
            optional: &["workload", "source_host", "destination_host"],
        },
    )?;
    let ids = t.str_column(R_MIGRATION)?;
    let hyp = t.str_column("hypervisor")?;
    let wl = if t.has_column("workload") {
        t.str_column("workload")?
    } else {
        vec![None; ids.len()]
    };
    ctx.pending.push((ctx.inputs.len(), hashes));
    for f in t.files() {
        ctx.inputs.push(coef::InputFile {
            path: f.path.display().to_string(),
            sha256: String::new(),
            rows: f.rows as u64,
            rows_used: 0,
        });
        ctx.files.push(f.path.clone());
    }
    let hw = hardware_of(&t);
    ctx.hardware.hosts.extend(hw.hosts);
    ctx.hardware.hosts.sort();
    ctx.hardware.hosts.dedup();
    Ok(ids
        .into_iter()
        .zip(hyp.into_iter().zip(wl))
        .filter_map(|(id, hw)| Some((id?, hw)))
        .collect())
}

/// Options of the generic linear trainer.
#[derive(Debug, Clone)]
pub struct LinearOptions {
    /// Target column.
    pub target: String,
    /// Feature columns.
    pub features: Vec<String>,
    /// Fit an intercept.
    pub intercept: bool,
    /// Unit overrides, column -> unit.
    pub units: Vec<(String, String)>,
}

/// Fit `target = sum b_j feature_j (+ intercept)`. Units come from `units`, else from the
/// column name's suffix, else `1` (a note in the file says so).
pub fn train_linear(
    opts: &TrainOptions,
    l: &LinearOptions,
    ctl: &Control<'_>,
) -> Result<Trained, TrainError> {
    if l.features.is_empty() && !l.intercept {
        return Err(TrainError::Invalid(
            "no features and --no-intercept: nothing to fit".into(),
        ));
    }
    for (i, f) in l.features.iter().enumerate() {
        if l.features[..i].contains(f) || *f == l.target {
            return Err(TrainError::Invalid(format!(
                "feature '{f}' is listed twice or is the target"
            )));
        }
    }
    let filters = opts.parsed_filters()?;
    let inputs = resolve_inputs(&opts.data)?;
    let mut required: Vec<&str> = vec![l.target.as_str()];
    required.extend(l.features.iter().map(String::as_str));
    ctl.report("loading");
    let (table, hashes) = load_inputs(
        &inputs,
        &LoadOptions {
            kind: None,
            filters: &filters,
            required: &required,
            optional: &HARDWARE_COLUMNS,
        },
    )?;
    let mut ctx = context(&table, hashes, &opts.filters);
    let mut var = |column: &str| -> Result<Var, TrainError> {
        let unit = match l.units.iter().find(|(c, _)| c == column) {
            Some((_, u)) => u.clone(),
            None => match unit_from_column_name(column) {
                Some(u) => u.to_string(),
                None => {
                    ctx.notes.push(format!(
                        "column '{column}' has no unit suffix: taken as dimensionless (1)"
                    ));
                    "1".into()
                }
            },
        };
        Unit::parse(&unit).map_err(|e| TrainError::Invalid(format!("--unit {column}: {e}")))?;
        Ok(Var {
            column: column.into(),
            symbol: column.into(),
            unit,
            coefficient: format!("b_{column}"),
        })
    };
    let target = var(&l.target)?;
    let features = l
        .features
        .iter()
        .map(|f| var(f))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = Spec {
        kind: ModelKind::Linear,
        name: opts
            .name
            .clone()
            .unwrap_or_else(|| format!("linear-{}", l.target)),
        target,
        features,
        intercept: l.intercept.then(|| "intercept".into()),
        zero_baseline: false,
    };
    let feats: Vec<&str> = l.features.iter().map(String::as_str).collect();
    ctl.report("columns");
    let rows = all_rows(&table, &l.target, &feats)?;
    fit_publish(opts, &spec, &rows, &mut ctx, ctl)
}
