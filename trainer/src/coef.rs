//! Coefficient files: the JSON a fit writes and a prediction reads.
//!
//! Layout: `DIR/<name>/v<N>.json`, never overwritten (N = highest existing + 1), with a
//! `DIR/<name>/latest` pointer naming the newest file. This module depends on serde only (no
//! polars, no linfa) so that prediction can use it alone. The JSON Schema of the file is
//! [`SCHEMA_JSON`]; [`load`] checks the same rules with serde plus explicit checks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use datasets::quantity::{Unit, UnitError};

/// The schema version this build writes.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// The schema major version this build reads.
pub const SCHEMA_MAJOR: u64 = 1;
/// The JSON Schema (draft 2020-12) of a coefficient file.
pub const SCHEMA_JSON: &str = include_str!("../schema/coefficients.schema.json");
/// Name of the pointer file naming the newest version of a model.
pub const LATEST: &str = "latest";

/// Errors of reading, checking and writing coefficient files.
#[derive(Debug, thiserror::Error)]
pub enum CoefError {
    /// Filesystem error on a named path.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON or not the expected structure.
    #[error("{path}: not a coefficient file")]
    Json {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A schema major version this build does not read.
    #[error("{path}: coefficient file schema version {found} is not supported: this build reads {supported}.x (writes {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The path.
        path: PathBuf,
        /// Version in the file.
        found: String,
        /// Major version this build reads.
        supported: u64,
    },
    /// Structurally valid JSON breaking a rule of the schema or of units.
    #[error("{path}: invalid coefficient file: {problem}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The output guard refused the path (a device, a folder, an input of the command).
    #[error(transparent)]
    Output(#[from] datasets::DatasetError),
    /// Another writer published the same version first.
    #[error("{path}: already exists (another trainer wrote this version at the same time); retry")]
    Exists {
        /// The path.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CoefError + '_ {
    move |source| CoefError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which model a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// E_mig = alpha V_mig + beta (paper eq 15), or one side of eq 14.
    Energy,
    /// gamma = omega T_{i-1} + xi D + psi (paper eq 10).
    Gamma,
    /// Any linear model.
    Linear,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Energy => "energy",
            ModelKind::Gamma => "gamma",
            ModelKind::Linear => "linear",
        })
    }
}

/// The model's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelId {
    /// Model kind.
    pub kind: ModelKind,
    /// Model name (the folder under the output directory).
    pub name: String,
    /// Version N of `v<N>.json`, from 1.
    pub version: u64,
    /// Unique id: `<name>/v<N>/<first 12 hex digits of a SHA-256 over the name, version,
    /// creation time and the inputs' paths and row counts>`.
    pub id: String,
}

/// A data column used as target or feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Column name in the dataset.
    pub column: String,
    /// Symbol in the paper's notation (`E_mig`, `V_mig`, `T_prev`, `D`), or the column name.
    pub symbol: String,
    /// Unit (e.g. `J`, `B`, `B/s`, `1`).
    pub unit: String,
    /// Smallest value in the training data.
    pub min: f64,
    /// Largest value in the training data.
    pub max: f64,
    /// Mean over the training data.
    pub mean: f64,
}

/// One fitted coefficient with its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coefficient {
    /// Name (`alpha`, `beta`, `omega`, `xi`, `psi`, or the feature's column / `intercept`).
    pub name: String,
    /// The feature it multiplies, or null for the intercept.
    pub feature: Option<String>,
    /// Unit: target unit / feature unit (target unit for the intercept).
    pub unit: String,
    /// Estimate.
    pub estimate: f64,
    /// Standard error (null when the fit is exact: zero residual degrees of freedom or RSS).
    pub std_error: Option<f64>,
    /// estimate / std_error.
    pub t_value: Option<f64>,
    /// Lower end of the 95 % confidence interval.
    pub ci95_low: Option<f64>,
    /// Upper end of the 95 % confidence interval.
    pub ci95_high: Option<f64>,
}

/// k-fold cross-validation of the same model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossValidation {
    /// Number of folds.
    pub folds: u64,
    /// Seed of the row-to-fold assignment.
    pub seed: u64,
    /// Mean absolute out-of-fold error, target unit.
    pub mae: f64,
    /// Mean absolute percentage out-of-fold error (%), over rows with a non-zero target.
    pub mape_percent: Option<f64>,
    /// Mean absolute error of predicting 0 for every row (gamma models: gamma = 0), target
    /// unit: a model is only worth using when its out-of-fold `mae` is lower (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_mae: Option<f64>,
}

/// [`FitStats::flags`] code: the out-of-fold error is not lower than predicting 0, so
/// prediction uses 0 instead of the model (gamma = 0) and says so.
pub const FLAG_WORSE_THAN_ZERO: &str = "worse_than_zero";

/// Statistics of the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitStats {
    /// How the fit was computed.
    pub method: String,
    /// Rows used.
    pub n_rows: u64,
    /// Parameters estimated (intercept included).
    pub n_parameters: u64,
    /// Residual degrees of freedom (n_rows - n_parameters).
    pub df_residual: u64,
    /// R^2 (centred with an intercept, uncentred 1 - RSS/sum y^2 without).
    pub r_squared: f64,
    /// `centered` or `uncentered`.
    pub r_squared_kind: String,
    /// Adjusted R^2.
    pub adjusted_r_squared: f64,
    /// Residual standard deviation sqrt(RSS / df), target unit.
    pub residual_sd: f64,
    /// Root mean squared residual sqrt(RSS / n), target unit.
    pub rmse: f64,
    /// Mean absolute residual, target unit.
    pub mae: f64,
    /// Mean absolute percentage error (%), over rows with a non-zero target.
    pub mape_percent: Option<f64>,
    /// 2-norm condition number of the centred and scaled design matrix.
    pub condition_number: f64,
    /// Cross-validation, or null when disabled or impossible (too few rows per fold).
    pub cross_validation: Option<CrossValidation>,
    /// Warnings about the fit that change how it is used ([`FLAG_WORSE_THAN_ZERO`]); empty
    /// (and absent from the file) when none (since 1.1.0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

impl FitStats {
    /// Whether the fit carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// One input file of the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// Path as given (or found under a given folder).
    pub path: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Rows in the file.
    pub rows: u64,
    /// Rows of this file that the fit used.
    pub rows_used: u64,
}

/// Where the data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Every input file.
    pub inputs: Vec<InputFile>,
    /// Row filters, as given (ANDed).
    pub filters: Vec<String>,
    /// Rows read from all inputs.
    pub rows_read: u64,
    /// Rows the fit used.
    pub rows_used: u64,
    /// Why the other rows were left out, one note each.
    pub notes: Vec<String>,
    /// Residuals file beside this one (Parquet), relative to this file's folder.
    pub residuals_file: String,
}

/// The machines the data was measured on, as far as the datasets say.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Host names.
    pub hosts: Vec<String>,
    /// CPU models.
    pub cpu_models: Vec<String>,
    /// Memory sizes of the hosts, bytes.
    pub memory_bytes: Vec<u64>,
    /// Power meters (model, firmware).
    pub meters: Vec<String>,
}

/// The toolkit that wrote the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolkit {
    /// `migwatt`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A coefficient file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoefficientFile {
    /// Semver of this format.
    pub schema_version: String,
    /// Identity.
    pub model: ModelId,
    /// Human-readable equation with units.
    pub equation: String,
    /// What is predicted.
    pub target: Variable,
    /// Inputs, in coefficient order.
    pub features: Vec<Variable>,
    /// Whether an intercept was fitted (it is then the last coefficient).
    pub intercept: bool,
    /// One per feature, then the intercept.
    pub coefficients: Vec<Coefficient>,
    /// Fit statistics.
    pub fit: FitStats,
    /// Data provenance.
    pub provenance: Provenance,
    /// Hardware identity.
    pub hardware: Hardware,
    /// Toolkit identity.
    pub toolkit: Toolkit,
    /// When it was fitted (RFC 3339, UTC).
    pub created_at: String,
}

impl CoefficientFile {
    /// Predict the target from feature values in coefficient order (no unit conversion).
    pub fn predict(&self, features: &[f64]) -> Option<f64> {
        if features.len() != self.features.len() {
            return None;
        }
        let mut y: f64 = features
            .iter()
            .zip(&self.coefficients)
            .map(|(x, c)| x * c.estimate)
            .sum();
        if self.intercept {
            y += self.coefficients.last()?.estimate;
        }
        Some(y)
    }

    /// Check every rule that serde alone does not: version, names, units, numbers.
    pub fn check(&self) -> Result<(), String> {
        let major = parse_semver(&self.schema_version)
            .ok_or_else(|| format!("schema_version '{}' is not semver", self.schema_version))?
            .0;
        if major != SCHEMA_MAJOR {
            return Err(format!(
                "schema_version {} is not supported: this build reads {SCHEMA_MAJOR}.x",
                self.schema_version
            ));
        }
        if parse_semver(&self.toolkit.version).is_none() {
            return Err(format!(
                "toolkit.version '{}' is not semver",
                self.toolkit.version
            ));
        }
        if !valid_name(&self.model.name) {
            return Err(format!(
                "model.name '{}' must match [A-Za-z0-9_.-]+ and not start with '.'",
                self.model.name
            ));
        }
        if self.model.version == 0 {
            return Err("model.version must be >= 1".into());
        }
        // The schema's pattern ^v[0-9]+\.residuals\.parquet$, checked without a regex crate.
        let rf = &self.provenance.residuals_file;
        let digits = rf
            .strip_prefix('v')
            .and_then(|r| r.strip_suffix(".residuals.parquet"));
        if !digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!(
                "provenance.residuals_file '{rf}' must be v<N>.residuals.parquet"
            ));
        }
        if chrono::DateTime::parse_from_rfc3339(&self.created_at).is_err() {
            return Err(format!("created_at '{}' is not RFC 3339", self.created_at));
        }
        if self.features.is_empty() && !self.intercept {
            return Err("a model needs a feature or an intercept".into());
        }
        let expect = self.features.len() + usize::from(self.intercept);
        if self.coefficients.len() != expect {
            return Err(format!(
                "{} coefficients for {} features{}; expected {expect}",
                self.coefficients.len(),
                self.features.len(),
                if self.intercept {
                    " and an intercept"
                } else {
                    ""
                }
            ));
        }
        let unit = |what: &str, u: &str| -> Result<Unit, String> {
            Unit::parse(u).map_err(|e: UnitError| format!("{what}: {e}"))
        };
        let target_unit = unit(
            &format!("target '{}'", self.target.column),
            &self.target.unit,
        )?;
        for (i, c) in self.coefficients.iter().enumerate() {
            let (want_feature, want_unit) = match self.features.get(i) {
                Some(f) => (
                    Some(f.column.as_str()),
                    target_unit.div(&unit(&format!("feature '{}'", f.column), &f.unit)?),
                ),
                None => (None, target_unit.clone()),
            };
            if c.feature.as_deref() != want_feature {
                return Err(format!(
                    "coefficient '{}' multiplies {:?}, expected {:?}",
                    c.name, c.feature, want_feature
                ));
            }
            let got = unit(&format!("coefficient '{}'", c.name), &c.unit)?;
            if got != want_unit {
                return Err(format!(
                    "coefficient '{}' has unit '{}' but target/feature units give '{}'",
                    c.name, c.unit, want_unit
                ));
            }
            if !c.estimate.is_finite() {
                return Err(format!("coefficient '{}' is not finite", c.name));
            }
            if let Some(se) = c.std_error {
                if !(se >= 0.0 && se.is_finite()) {
                    return Err(format!(
                        "coefficient '{}': std_error {se} is not a finite non-negative number",
                        c.name
                    ));
                }
            }
        }
        for v in self.features.iter().chain([&self.target]) {
            if v.min.partial_cmp(&v.max).is_none_or(|o| o.is_gt()) {
                return Err(format!("'{}': min {} > max {}", v.column, v.min, v.max));
            }
        }
        // No NaN or infinity in a coefficient file: JSON would write it as null, and the file
        // could not be read back.
        let mut numbers: Vec<(String, Option<f64>)> = Vec::new();
        for c in &self.coefficients {
            for (what, v) in [
                ("std_error", c.std_error),
                ("t_value", c.t_value),
                ("ci95_low", c.ci95_low),
                ("ci95_high", c.ci95_high),
            ] {
                numbers.push((format!("coefficient '{}' {what}", c.name), v));
            }
        }
        for v in self.features.iter().chain([&self.target]) {
            for (what, x) in [("min", v.min), ("max", v.max), ("mean", v.mean)] {
                numbers.push((format!("'{}' {what}", v.column), Some(x)));
            }
        }
        let f = &self.fit;
        for (what, x) in [
            ("r_squared", Some(f.r_squared)),
            ("adjusted_r_squared", Some(f.adjusted_r_squared)),
            ("residual_sd", Some(f.residual_sd)),
            ("rmse", Some(f.rmse)),
            ("mae", Some(f.mae)),
            ("mape_percent", f.mape_percent),
            ("condition_number", Some(f.condition_number)),
            (
                "cross_validation.mae",
                f.cross_validation.as_ref().map(|c| c.mae),
            ),
            (
                "cross_validation.mape_percent",
                f.cross_validation.as_ref().and_then(|c| c.mape_percent),
            ),
        ] {
            numbers.push((format!("fit.{what}"), x));
        }
        if let Some((what, x)) = numbers
            .iter()
            .find_map(|(w, x)| x.filter(|x| !x.is_finite()).map(|x| (w, x)))
        {
            return Err(format!("{what} is {x}, not a finite number"));
        }
        if f.n_parameters as usize != expect || f.df_residual + f.n_parameters != f.n_rows {
            return Err(format!(
                "fit: n_rows {}, n_parameters {}, df_residual {} do not add up",
                f.n_rows, f.n_parameters, f.df_residual
            ));
        }
        if f.r_squared_kind != "centered" && f.r_squared_kind != "uncentered" {
            return Err(format!("fit.r_squared_kind '{}'", f.r_squared_kind));
        }
        if self.provenance.rows_used != f.n_rows {
            return Err("provenance.rows_used differs from fit.n_rows".into());
        }
        for i in &self.provenance.inputs {
            if i.sha256.len() != 64 || !i.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("input '{}': sha256 is not 64 hex digits", i.path));
            }
        }
        Ok(())
    }
}

/// `MAJOR.MINOR.PATCH` (with optional `-pre`/`+build`) as numbers.
pub fn parse_semver(s: &str) -> Option<(u64, u64, u64)> {
    let core = s.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

/// A model name usable as a folder name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Parse and check a coefficient file's text.
pub fn parse(path: &Path, text: &str) -> Result<CoefficientFile, CoefError> {
    // Look at the version first so that a future major gets a version error, not a
    // confusing structural one.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| CoefError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let found = value
        .get("schema_version")
        .and_then(|v| v.as_str())
        .ok_or_else(|| CoefError::Invalid {
            path: path.to_path_buf(),
            problem: "missing string field 'schema_version'".into(),
        })?;
    match parse_semver(found) {
        Some((major, _, _)) if major == SCHEMA_MAJOR => {}
        _ => {
            return Err(CoefError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: found.to_string(),
                supported: SCHEMA_MAJOR,
            })
        }
    }
    let file: CoefficientFile =
        serde_json::from_value(value).map_err(|source| CoefError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    file.check().map_err(|problem| CoefError::Invalid {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok(file)
}

/// Load and check a coefficient file. `path` may also be a model folder or its `latest`
/// pointer: both resolve to the newest version.
pub fn load(path: &Path) -> Result<CoefficientFile, CoefError> {
    let file = resolve(path)?;
    let text = fs::read_to_string(&file).map_err(io_err(&file))?;
    parse(&file, &text)
}

/// The `v<N>.json` a path means: itself, or the file a folder's / pointer's `latest` names.
pub fn resolve(path: &Path) -> Result<PathBuf, CoefError> {
    let pointer = if path.is_dir() {
        path.join(LATEST)
    } else if path.file_name().is_some_and(|n| n == LATEST) {
        path.to_path_buf()
    } else {
        return Ok(path.to_path_buf());
    };
    let target = fs::read_to_string(&pointer).map_err(io_err(&pointer))?;
    let target = target.trim();
    if parse_version_file(target).is_none() {
        return Err(CoefError::Invalid {
            path: pointer,
            problem: format!("'latest' names '{target}', expected v<N>.json"),
        });
    }
    Ok(pointer.parent().unwrap_or(Path::new(".")).join(target))
}

/// N of a `v<N>.json` file name.
pub fn parse_version_file(name: &str) -> Option<u64> {
    let n = name.strip_prefix('v')?.strip_suffix(".json")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|v| *v > 0)
}

/// Versions present in a model folder, ascending.
pub fn versions(model_dir: &Path) -> Result<Vec<u64>, CoefError> {
    let mut out = Vec::new();
    match fs::read_dir(model_dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(io_err(model_dir))?;
                if let Some(v) = e.file_name().to_str().and_then(parse_version_file) {
                    out.push(v);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(model_dir)(e)),
    }
    out.sort_unstable();
    Ok(out)
}

/// The version the next fit of a model gets: highest existing + 1.
pub fn next_version(model_dir: &Path) -> Result<u64, CoefError> {
    Ok(versions(model_dir)?.last().copied().unwrap_or(0) + 1)
}

/// Write `bytes` to `path` through a temporary sibling, fsync, then rename (`replace`) or
/// hard-link (`!replace`: fails if `path` exists, so nothing is ever overwritten).
pub fn write_atomic(path: &Path, bytes: &[u8], replace: bool) -> Result<(), CoefError> {
    // The shared output guard: never over a device, a folder or an input of the command.
    let path = &datasets::io::check_output(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        if replace {
            fs::rename(&tmp, path).map_err(io_err(path))?;
        } else {
            match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(CoefError::Exists {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => return Err(io_err(path)(e)),
            }
            fs::remove_file(&tmp).map_err(io_err(&tmp))?;
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Publish a checked coefficient file as `DIR/<name>/v<N>.json` (N from the file) and point
/// `latest` at it. Refuses to overwrite an existing version. Returns the path written.
pub fn publish(dir: &Path, file: &CoefficientFile) -> Result<PathBuf, CoefError> {
    let model_dir = dir.join(&file.model.name);
    let path = model_dir.join(format!("v{}.json", file.model.version));
    file.check().map_err(|problem| CoefError::Invalid {
        path: path.clone(),
        problem,
    })?;
    let mut text = serde_json::to_string_pretty(file).map_err(|source| CoefError::Json {
        path: path.clone(),
        source,
    })?;
    text.push('\n');
    write_atomic(&path, text.as_bytes(), false)?;
    write_atomic(
        &model_dir.join(LATEST),
        format!("v{}.json\n", file.model.version).as_bytes(),
        true,
    )?;
    Ok(path)
}

/// One model folder under a models directory, as `models list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// Folder name.
    pub name: String,
    /// Versions present.
    pub versions: Vec<u64>,
    /// The file `latest` points at.
    pub latest: Option<PathBuf>,
    /// That file, loaded, or why it could not be.
    #[serde(skip)]
    pub loaded: Option<Result<CoefficientFile, String>>,
}

/// Every model folder under `dir` (folders holding at least one `v<N>.json`), by name.
pub fn list(dir: &Path) -> Result<Vec<ModelEntry>, CoefError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !p.is_dir() || name.starts_with('.') {
            continue;
        }
        let versions = versions(&p)?;
        if versions.is_empty() {
            continue;
        }
        let latest = resolve(&p).ok();
        let loaded = Some(
            latest
                .as_deref()
                .map_or_else(
                    || {
                        Err(CoefError::Invalid {
                            path: p.clone(),
                            problem: "no readable 'latest' pointer".into(),
                        })
                    },
                    load,
                )
                .map_err(|e| datasets::error_chain(&e)),
        );
        out.push(ModelEntry {
            name,
            versions,
            latest,
            loaded,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid file for tests.
    pub(crate) fn sample() -> CoefficientFile {
        let var = |c: &str, s: &str, u: &str| Variable {
            column: c.into(),
            symbol: s.into(),
            unit: u.into(),
            min: 0.0,
            max: 1.0,
            mean: 0.5,
        };
        let coef = |n: &str, f: Option<&str>, u: &str, v: f64| Coefficient {
            name: n.into(),
            feature: f.map(str::to_string),
            unit: u.into(),
            estimate: v,
            std_error: Some(0.1),
            t_value: Some(v / 0.1),
            ci95_low: Some(v - 0.2),
            ci95_high: Some(v + 0.2),
        };
        CoefficientFile {
            schema_version: SCHEMA_VERSION.into(),
            model: ModelId {
                kind: ModelKind::Energy,
                name: "energy".into(),
                version: 1,
                id: "energy/v1/000000000000".into(),
            },
            equation: "E_mig [J] = alpha [J/B] * V_mig [B] + beta [J]".into(),
            target: var("e_mig_j", "E_mig", "J"),
            features: vec![var("v_mig_bytes", "V_mig", "B")],
            intercept: true,
            coefficients: vec![
                coef("alpha", Some("v_mig_bytes"), "J/B", 5e-7),
                coef("beta", None, "J", 20.0),
            ],
            fit: FitStats {
                method: "test".into(),
                n_rows: 10,
                n_parameters: 2,
                df_residual: 8,
                r_squared: 0.9,
                r_squared_kind: "centered".into(),
                adjusted_r_squared: 0.89,
                residual_sd: 1.0,
                rmse: 0.9,
                mae: 0.8,
                mape_percent: None,
                condition_number: 1.0,
                cross_validation: None,
                flags: vec![],
            },
            provenance: Provenance {
                inputs: vec![InputFile {
                    path: "x.parquet".into(),
                    sha256: "0".repeat(64),
                    rows: 10,
                    rows_used: 10,
                }],
                filters: vec![],
                rows_read: 10,
                rows_used: 10,
                notes: vec![],
                residuals_file: "v1.residuals.parquet".into(),
            },
            hardware: Hardware::default(),
            toolkit: Toolkit {
                name: "migwatt".into(),
                version: "0.1.0".into(),
            },
            created_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn publish_versions_and_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = sample();
        let p1 = publish(dir.path(), &f).unwrap();
        assert!(p1.ends_with("energy/v1.json"));
        assert!(matches!(
            publish(dir.path(), &f),
            Err(CoefError::Exists { .. })
        ));
        f.model.version = next_version(&dir.path().join("energy")).unwrap();
        assert_eq!(f.model.version, 2);
        publish(dir.path(), &f).unwrap();
        let back = load(&dir.path().join("energy")).unwrap();
        assert_eq!(back, f);
        assert_eq!(load(&p1).unwrap().model.version, 1);
        let l = list(dir.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].versions, vec![1, 2]);
    }

    #[test]
    fn refuses_other_major_naming_both_versions() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = "2.0.0".into();
        let e = parse(Path::new("f.json"), &v.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2.0.0") && e.contains("1.x"), "{e}");
    }

    #[test]
    fn refuses_wrong_units_and_counts() {
        let mut f = sample();
        f.coefficients[0].unit = "J/s".into();
        assert!(f.check().unwrap_err().contains("J/B"));
        let mut f = sample();
        f.coefficients.pop();
        assert!(f.check().unwrap_err().contains("expected 2"));
        let mut v = serde_json::to_value(sample()).unwrap();
        v["surprise"] = 1.into();
        assert!(parse(Path::new("f.json"), &v.to_string()).is_err());
    }

    #[test]
    fn predicts() {
        let f = sample();
        assert_eq!(f.predict(&[2e6]), Some(21.0));
        assert_eq!(f.predict(&[]), None);
    }
}
