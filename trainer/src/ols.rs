//! Ordinary least squares, guarded and with full statistics.
//!
//! Follows linfa's split: [`OlsParams`] (hyper-parameters) -> [`OlsParams::fit`] ->
//! [`FittedOls`]. Because linfa-linear neither checks its input nor gives standard errors,
//! this module refuses degenerate input first, then:
//! - centres every column and streams the rows of each cross-validation fold through a
//!   tall-skinny QR (Householder on 256-row chunks; chunks of 32768 rows on every core,
//!   combined in a fixed order so the numbers never depend on the core count), so a
//!   million-row design is never copied; then scales R's columns (A D = Q (R D)), which is
//!   the QR of the centred and scaled design;
//! - stacks the folds' R factors into the whole design's R (condition number, standard
//!   errors) and into each fold's complement (cross-validation without refitting);
//! - has linfa-linear's `LinearRegression` solve the least-squares problem that R reduces it
//!   to, refines that solution against the residuals of every row (corrected semi-normal
//!   equations), and maps everything back to the original units.

// Matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use linfa::traits::Fit;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use rayon::prelude::*;
use std::ops::Range;

use crate::linalg::{self, Mat, Neumaier};
use crate::rng::SplitMix64;
use crate::stats;
use crate::Control;

/// Default limit of the condition number of the centred and scaled design.
pub const DEFAULT_MAX_CONDITION: f64 = 1e10;

/// Why a fit was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No rows at all.
    #[error("no rows to fit")]
    Empty,
    /// No features and no intercept.
    #[error("nothing to fit: no features and no intercept")]
    NoParameters,
    /// Columns of different lengths.
    #[error("column '{column}' has {len} rows but the target has {expected}")]
    Length {
        /// Column.
        column: String,
        /// Its length.
        len: usize,
        /// The target's length.
        expected: usize,
    },
    /// NaN, infinite or missing values.
    #[error(
        "column '{column}': {count} non-finite value(s) (NaN, infinite or null), first at {rows}"
    )]
    NonFinite {
        /// Column.
        column: String,
        /// How many.
        count: usize,
        /// Where the first few are.
        rows: String,
    },
    /// Fewer rows than parameters + 1.
    #[error("{rows} row(s) for {parameters} parameter(s): need at least {} (parameters + 1) to estimate the residual variance", parameters + 1)]
    TooFewRows {
        /// Rows.
        rows: usize,
        /// Parameters (intercept included).
        parameters: usize,
    },
    /// A constant feature next to an intercept.
    #[error("feature '{column}' is constant ({value}) in all {rows} rows: with an intercept it cannot be estimated; drop it or filter differently")]
    Constant {
        /// Column.
        column: String,
        /// Its value.
        value: f64,
        /// Rows.
        rows: usize,
    },
    /// An all-zero feature without intercept.
    #[error("feature '{column}' is zero in all {rows} rows: it cannot be estimated")]
    Zero {
        /// Column.
        column: String,
        /// Rows.
        rows: usize,
    },
    /// Rank-deficient or nearly so.
    #[error("features are collinear: the centred and scaled design has condition number {condition:.3e} (limit {limit:.1e}); nearly dependent: {columns}")]
    Collinear {
        /// Condition number (infinite when exactly rank deficient).
        condition: f64,
        /// The limit.
        limit: f64,
        /// Columns that take part in the near-dependence.
        columns: String,
    },
    /// linfa-linear reported an error.
    #[error("linfa-linear: {0}")]
    Linfa(String),
    /// The caller cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Hyper-parameters of an OLS fit.
#[derive(Debug, Clone, PartialEq)]
pub struct OlsParams {
    intercept: bool,
    folds: usize,
    seed: u64,
    max_condition: f64,
}

impl Default for OlsParams {
    fn default() -> Self {
        OlsParams {
            intercept: true,
            folds: 5,
            seed: 1,
            max_condition: DEFAULT_MAX_CONDITION,
        }
    }
}

/// A problem to fit: named feature columns and a named target, all the same length.
#[derive(Clone, Copy)]
pub struct Problem<'a> {
    /// Feature columns (name, values).
    pub features: &'a [(&'a str, &'a [f64])],
    /// Target column (name, values).
    pub target: (&'a str, &'a [f64]),
    /// Describes row `i` in error messages (e.g. `file.parquet row 17`); default `row i`.
    pub row_label: Option<&'a dyn Fn(usize) -> String>,
}

/// Minimum, maximum and mean of a column over the rows used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Out-of-fold errors of k-fold cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// Folds.
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean absolute percentage error (%), rows with a non-zero target only.
    pub mape_percent: Option<f64>,
    /// Out-of-fold prediction of every row.
    pub predicted: Vec<f64>,
}

/// One estimated parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Value.
    pub value: f64,
    /// Standard error.
    pub std_error: f64,
    /// value / std_error (None when the standard error is zero).
    pub t_value: Option<f64>,
    /// 95 % confidence interval.
    pub ci95: (f64, f64),
}

/// A fitted model with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedOls {
    /// One per feature, in order, then the intercept if fitted.
    pub estimates: Vec<Estimate>,
    /// Whether the last estimate is an intercept.
    pub intercept: bool,
    /// Rows.
    pub n: usize,
    /// Residual degrees of freedom.
    pub df: usize,
    /// Residual sum of squares.
    pub rss: f64,
    /// R^2: centred with an intercept, uncentred (1 - RSS / sum y^2) without.
    pub r_squared: f64,
    /// Adjusted R^2.
    pub adjusted_r_squared: f64,
    /// sqrt(RSS / df).
    pub residual_sd: f64,
    /// sqrt(RSS / n).
    pub rmse: f64,
    /// Mean absolute residual.
    pub mae: f64,
    /// Mean absolute percentage error (%), rows with a non-zero target only.
    pub mape_percent: Option<f64>,
    /// 2-norm condition number of the centred and scaled design (intercept column included).
    pub condition_number: f64,
    /// Cross-validation, if done.
    pub cross_validation: Option<CrossValidation>,
    /// Why cross-validation was not done, if it was asked for.
    pub cross_validation_note: Option<String>,
    /// Feature summaries, in order.
    pub features: Vec<Summary>,
    /// Target summary.
    pub target: Summary,
    /// Fitted value of every row (the residual is observed - fitted).
    pub fitted: Vec<f64>,
}

impl FittedOls {
    /// Predict from feature values in order.
    pub fn predict(&self, x: &[f64]) -> f64 {
        let k = self.estimates.len() - usize::from(self.intercept);
        let mut y: f64 = x
            .iter()
            .zip(&self.estimates[..k])
            .map(|(x, e)| x * e.value)
            .sum();
        if self.intercept {
            y += self.estimates[k].value;
        }
        y
    }
}

/// Balanced random fold of every row: the labels 0, 1, .., k-1, 0, 1, .. (fold sizes differ by
/// at most one) in a seeded uniformly random order (Fisher-Yates).
pub fn fold_assignment(n: usize, folds: usize, seed: u64) -> Vec<u32> {
    match Folds::new(n, folds, seed) {
        Folds::Bytes(f) => f.into_iter().map(u32::from).collect(),
        Folds::Words(f) => f,
    }
}

/// [`fold_assignment`] as bytes when there are at most 256 folds (the usual 5 or 10): the
/// shuffle's random swaps then stay in a quarter of the memory, and the passes over the rows
/// read a quarter of the bytes. Same swaps, so the same labels either way.
enum Folds {
    Bytes(Vec<u8>),
    Words(Vec<u32>),
}

impl Folds {
    fn new(n: usize, folds: usize, seed: u64) -> Self {
        let k = folds.max(1);
        if k <= 256 {
            let mut fold: Vec<u8> = (0..n).map(|i| (i % k) as u8).collect();
            shuffle(&mut fold, seed);
            Folds::Bytes(fold)
        } else {
            let mut fold: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
            shuffle(&mut fold, seed);
            Folds::Words(fold)
        }
    }

    /// Fold of row `i`.
    #[inline]
    fn get(&self, i: usize) -> usize {
        match self {
            Folds::Bytes(f) => f[i] as usize,
            Folds::Words(f) => f[i] as usize,
        }
    }

    /// Rows per fold.
    fn sizes(&self, k: usize) -> Vec<usize> {
        let mut sizes = vec![0usize; k];
        match self {
            Folds::Bytes(f) => f.iter().for_each(|&x| sizes[x as usize] += 1),
            Folds::Words(f) => f.iter().for_each(|&x| sizes[x as usize] += 1),
        }
        sizes
    }
}

/// Seeded Fisher-Yates shuffle.
fn shuffle<T>(v: &mut [T], seed: u64) {
    SplitMix64::new(seed).shuffle(v);
}

impl OlsParams {
    /// Defaults: intercept, 5 folds, seed 1, condition limit [`DEFAULT_MAX_CONDITION`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Fit an intercept (default true).
    pub fn intercept(mut self, yes: bool) -> Self {
        self.intercept = yes;
        self
    }
    /// Cross-validation folds; 0 or 1 disables it (default 5).
    pub fn folds(mut self, folds: usize) -> Self {
        self.folds = folds;
        self
    }
    /// Seed of the fold assignment (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Refuse designs whose scaled condition number exceeds this (default 1e10).
    pub fn max_condition(mut self, limit: f64) -> Self {
        self.max_condition = limit;
        self
    }

    /// Fit, refusing degenerate input with a clear error.
    pub fn fit(&self, prob: &Problem<'_>, ctl: &Control<'_>) -> Result<FittedOls, FitError> {
        let n = check_shape(prob, self.intercept)?;
        let p = prob.features.len();
        let pt = p + usize::from(self.intercept);
        let k = if self.folds >= 2 {
            self.folds.min(n)
        } else {
            1
        };
        ctl.report("column summaries and scaling");
        let (summaries, fold) = self.summarise(prob, n, k)?;
        if n < pt + 1 {
            return Err(FitError::TooFewRows {
                rows: n,
                parameters: pt,
            });
        }
        ctl.check()?;
        if self.intercept {
            for (j, (name, _)) in prob.features.iter().enumerate() {
                if summaries[j].min == summaries[j].max {
                    return Err(FitError::Constant {
                        column: name.to_string(),
                        value: summaries[j].min,
                        rows: n,
                    });
                }
            }
        }
        let mut d = Design::new(prob, &summaries, self.intercept, k, fold);
        ctl.check()?;
        ctl.report("QR factorisation");
        let (mut fold_r, mut r) = d.r_factors();
        ctl.check()?;
        let (scale, tss) = d.scale(prob, &mut fold_r, &mut r)?;
        let names: Vec<&str> = (0..pt)
            .map(|c| {
                if self.intercept && c == 0 {
                    "intercept"
                } else {
                    prob.features[c - d.off].0
                }
            })
            .collect();
        let condition = self.check_condition(&r, pt, &names)?;
        let (fold_b, cv_note) = self.fold_solutions(&d, &fold_r, &names);
        ctl.report(if fold_b.is_some() {
            "least squares (linfa-linear) and cross-validation"
        } else {
            "least squares (linfa-linear)"
        });
        let solved = d.solve(&r, fold_b.as_deref(), ctl)?;
        ctl.report("statistics");
        let (tsum, feats) = summaries
            .split_last()
            .expect("the target's summary is last");
        let mut fitted = self.statistics(&d, &r, &scale, tss, solved, condition);
        fitted.cross_validation_note = cv_note;
        fitted.features = feats.to_vec();
        fitted.target = *tsum;
        Ok(fitted)
    }

    /// Every column's minimum, maximum and mean (the target's last), with the fold assignment
    /// shuffled meanwhile (it depends only on the row count); a non-finite value is refused
    /// with the rows that hold it.
    fn summarise(
        &self,
        prob: &Problem<'_>,
        n: usize,
        k: usize,
    ) -> Result<(Vec<Summary>, Folds), FitError> {
        let all: Vec<&[f64]> = prob
            .features
            .iter()
            .map(|(_, c)| *c)
            .chain([prob.target.1])
            .collect();
        let (fold, parts) = rayon::join(
            || (k >= 2).then(|| Folds::new(n, k, self.seed)),
            || {
                par_chunks(n, Vec::new(), |rows, _| {
                    all.iter()
                        .map(|c| linalg::min_max_sum(&c[rows.clone()]))
                        .collect::<Vec<_>>()
                })
            },
        );
        let summaries: Vec<Summary> = (0..all.len())
            .map(|j| Summary {
                min: parts.iter().map(|v| v[j].0).fold(f64::INFINITY, f64::min),
                max: parts
                    .iter()
                    .map(|v| v[j].1)
                    .fold(f64::NEG_INFINITY, f64::max),
                mean: Neumaier::merge(parts.iter().map(|v| &v[j].2)).value() / n as f64,
            })
            .collect();
        // A NaN or an infinity makes its column's sum non-finite; only then look for the rows.
        if summaries.iter().any(|s| !s.mean.is_finite()) {
            let label = |i: usize| match prob.row_label {
                Some(f) => f(i),
                None => format!("row {i}"),
            };
            for (name, col) in prob.features.iter().chain([&prob.target]) {
                let bad: Vec<usize> = col
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_finite())
                    .map(|(i, _)| i)
                    .collect();
                if !bad.is_empty() {
                    let shown: Vec<String> = bad
                        .iter()
                        .take(5)
                        .map(|&i| format!("{} ({})", label(i), col[i]))
                        .collect();
                    return Err(FitError::NonFinite {
                        column: name.to_string(),
                        count: bad.len(),
                        rows: shown.join(", "),
                    });
                }
            }
        }
        Ok((summaries, fold.unwrap_or_else(|| Folds::Bytes(vec![0; n]))))
    }

    /// Cross-validation: fold f's model comes from the stacked R factors of the others (None,
    /// with the reason, when some fold's complement does not determine the parameters).
    fn fold_solutions(
        &self,
        d: &Design<'_>,
        fold_r: &[Mat],
        names: &[&str],
    ) -> (Option<Vec<Vec<f64>>>, Option<String>) {
        let (k, pt) = (d.k, d.pt);
        if k < 2 {
            let note = (self.folds >= 2).then(|| "cross-validation needs at least 2 rows".into());
            return (None, note);
        }
        let sizes = d.fold.sizes(k);
        let mut fold_b = Vec::with_capacity(k);
        for f in 0..k {
            let rk = linalg::stack_r(
                fold_r
                    .iter()
                    .enumerate()
                    .filter(|(g, _)| *g != f)
                    .map(|(_, m)| m),
            );
            let trained_rows = d.n - sizes[f];
            if trained_rows < pt + 1 || self.check_condition(&rk, pt, names).is_err() {
                return (
                    None,
                    Some(format!(
                        "{k}-fold cross-validation skipped: the training rows of fold {} ({trained_rows} rows) do not determine the {pt} parameters",
                        f + 1
                    )),
                );
            }
            fold_b.push(linalg::solve_upper(
                &rk,
                &(0..pt).map(|i| rk.at(i, pt)).collect::<Vec<_>>(),
            ));
        }
        (Some(fold_b), None)
    }

    /// Estimates mapped back to the original units, with their standard errors, and the fit
    /// statistics (the summaries are the caller's to fill in).
    fn statistics(
        &self,
        d: &Design<'_>,
        r: &Mat,
        scale: &[f64],
        tss: f64,
        solved: Solved,
        condition: f64,
    ) -> FittedOls {
        let (n, p, pt, off) = (d.n, d.p, d.pt, d.off);
        let Solved {
            b,
            fitted,
            predicted,
            sums,
            cv_sums,
        } = solved;
        let rss = sums.squares.value();
        let df = n - pt;
        let r_squared = if tss > 0.0 { 1.0 - rss / tss } else { 1.0 };
        let adjusted_r_squared = 1.0 - (1.0 - r_squared) * (n - off) as f64 / df as f64;
        let s2 = rss / df as f64;
        let a = linalg::inv_upper(r, pt);
        let tq = stats::t_quantile(0.975, df as f64);
        let mut estimates = Vec::with_capacity(pt);
        let est = |value: f64, row: &[f64]| {
            let se = (s2 * linalg::sum(row.iter().map(|v| v * v))).sqrt();
            Estimate {
                value,
                std_error: se,
                t_value: (se > 0.0).then(|| value / se),
                ci95: (value - tq * se, value + tq * se),
            }
        };
        let centre = &d.centre;
        let slopes: Vec<f64> = (0..p).map(|j| b[off + j] / scale[j]).collect();
        for j in 0..p {
            let row: Vec<f64> = a[off + j].iter().map(|v| v / scale[j]).collect();
            estimates.push(est(slopes[j], &row));
        }
        if self.intercept {
            let value = linalg::sum(
                [d.y_centre, b[0]]
                    .into_iter()
                    .chain((0..p).map(|j| -slopes[j] * centre[j])),
            );
            let row: Vec<f64> = (0..pt)
                .map(|c| {
                    linalg::sum(
                        std::iter::once(a[0][c])
                            .chain((0..p).map(|j| -centre[j] / scale[j] * a[off + j][c])),
                    )
                })
                .collect();
            estimates.push(est(value, &row));
        }
        let cross_validation = predicted.map(|predicted| CrossValidation {
            folds: d.k,
            seed: self.seed,
            mae: cv_sums.absolute.value() / n as f64,
            mape_percent: cv_sums.mape_percent(),
            predicted,
        });
        FittedOls {
            estimates,
            intercept: self.intercept,
            n,
            df,
            rss,
            r_squared,
            adjusted_r_squared,
            residual_sd: s2.sqrt(),
            rmse: (rss / n as f64).sqrt(),
            mae: sums.absolute.value() / n as f64,
            mape_percent: sums.mape_percent(),
            condition_number: condition,
            cross_validation,
            cross_validation_note: None,
            features: Vec::new(),
            target: Summary {
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
            },
            fitted,
        }
    }

    /// Condition number of the top-left `pt x pt` of `r`, or the collinearity error.
    fn check_condition(&self, r: &Mat, pt: usize, names: &[&str]) -> Result<f64, FitError> {
        let (sv, v) = linalg::svd_small(r, pt);
        let smax = sv[0];
        let smin = sv[pt - 1];
        let condition = if smin > 0.0 {
            smax / smin
        } else {
            f64::INFINITY
        };
        if condition.is_finite() && condition <= self.max_condition {
            return Ok(condition);
        }
        let null = &v[pt - 1];
        let mut cols: Vec<(f64, &str)> = null
            .iter()
            .zip(names)
            .filter(|(w, _)| w.abs() > 0.1)
            .map(|(w, n)| (w.abs(), *n))
            .collect();
        cols.sort_by(|a, b| b.0.total_cmp(&a.0));
        Err(FitError::Collinear {
            condition,
            limit: self.max_condition,
            columns: cols.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", "),
        })
    }
}

/// Rows per unit of parallel work. Fixed, so that the numbers never depend on the number of
/// cores (sums and R factors are combined chunk by chunk, in chunk order).
const PAR_CHUNK: usize = 1 << 15;

/// Run `f` over consecutive chunks of [`PAR_CHUNK`] rows on rayon's pool, giving each chunk
/// its part of every output column (`outs`, each `n` long); results come back in chunk order,
/// so that sums combined from them do not depend on how many cores ran them.
fn par_chunks<G: Send>(
    n: usize,
    outs: Vec<&mut [f64]>,
    f: impl Fn(Range<usize>, &mut [&mut [f64]]) -> G + Sync,
) -> Vec<G> {
    let chunks = n.div_ceil(PAR_CHUNK).max(1);
    let mut parts: Vec<(Range<usize>, Vec<&mut [f64]>)> = (0..chunks)
        .map(|c| (c * PAR_CHUNK..((c + 1) * PAR_CHUNK).min(n), Vec::new()))
        .collect();
    for out in outs {
        for (c, piece) in out.chunks_mut(PAR_CHUNK).enumerate() {
            parts[c].1.push(piece);
        }
    }
    parts
        .into_par_iter()
        .map(|(rows, mut out)| f(rows, &mut out))
        .collect()
}

/// The row count, once the columns are checked to be as long as the target and not empty.
fn check_shape(prob: &Problem<'_>, intercept: bool) -> Result<usize, FitError> {
    let n = prob.target.1.len();
    if prob.features.is_empty() && !intercept {
        return Err(FitError::NoParameters);
    }
    for (name, col) in prob.features {
        if col.len() != n {
            return Err(FitError::Length {
                column: name.to_string(),
                len: col.len(),
                expected: n,
            });
        }
    }
    if n == 0 {
        return Err(FitError::Empty);
    }
    Ok(n)
}

/// The design of one fit: its columns, their centres and (once [`Design::scale`] ran) scales,
/// and the fold of every row. Rows of the centred (and scaled) design are computed where they
/// are used rather than stored: a million-row fit touches the input columns and nothing else.
struct Design<'a> {
    cols: Vec<&'a [f64]>,
    y: &'a [f64],
    n: usize,
    p: usize,
    /// 1 with an intercept (its column comes first), else 0.
    off: usize,
    /// Parameters: p + off.
    pt: usize,
    intercept: bool,
    /// Centre of each feature: its mean with an intercept, 0 without.
    centre: Vec<f64>,
    y_centre: f64,
    /// Reciprocal scale of each feature (1 until scaled).
    inv_scale: Vec<f64>,
    k: usize,
    fold: Folds,
}

/// The refined solution (centred, scaled) and what its last pass over the rows gave.
struct Solved {
    b: Vec<f64>,
    fitted: Vec<f64>,
    /// Out-of-fold predictions, with cross-validation.
    predicted: Option<Vec<f64>>,
    sums: ErrorSums,
    cv_sums: ErrorSums,
}

impl<'a> Design<'a> {
    fn new(
        prob: &Problem<'a>,
        summaries: &[Summary],
        intercept: bool,
        k: usize,
        fold: Folds,
    ) -> Self {
        let p = prob.features.len();
        let off = usize::from(intercept);
        let centre_of = |s: &Summary| if intercept { s.mean } else { 0.0 };
        Design {
            cols: prob.features.iter().map(|(_, c)| *c).collect(),
            y: prob.target.1,
            n: prob.target.1.len(),
            p,
            off,
            pt: p + off,
            intercept,
            centre: summaries[..p].iter().map(centre_of).collect(),
            y_centre: centre_of(&summaries[p]),
            inv_scale: vec![1.0; p],
            k,
            fold,
        }
    }

    /// Row i of the centred design, scaled by `inv_scale`.
    #[inline]
    fn row(&self, i: usize, out: &mut [f64]) {
        for j in 0..self.p {
            out[j] = (self.cols[j][i] - self.centre[j]) * self.inv_scale[j];
        }
    }

    /// Per-fold R factors of [1 | Xc | yc] (centred, not yet scaled), streamed (TSQR) chunk by
    /// chunk, and the whole design's R stacked from them; each fold's model comes later from
    /// the stack of the others.
    fn r_factors(&self) -> (Vec<Mat>, Mat) {
        let (p, off, k) = (self.p, self.off, self.k);
        let q = self.pt + 1;
        let chunk_r = par_chunks(self.n, Vec::new(), |rows, _| {
            let mut acc: Vec<linalg::StreamR> = (0..k).map(|_| linalg::StreamR::new(q)).collect();
            let mut row = vec![0.0; q];
            if self.intercept {
                row[0] = 1.0;
            }
            for i in rows {
                self.row(i, &mut row[off..off + p]);
                row[q - 1] = self.y[i] - self.y_centre;
                acc[self.fold.get(i)].push(&row);
            }
            acc.into_iter()
                .map(linalg::StreamR::finish)
                .collect::<Vec<_>>()
        });
        let fold_r: Vec<Mat> = (0..k)
            .map(|f| match chunk_r.as_slice() {
                [one] => one[f].clone(),
                many => linalg::stack_r(many.iter().map(|c| &c[f])),
            })
            .collect();
        let r = if k == 1 {
            fold_r[0].clone()
        } else {
            linalg::stack_r(fold_r.iter())
        };
        (fold_r, r)
    }

    /// Scale every feature column to unit root mean square; returns the scales and the total
    /// sum of squares of the centred target. The QR was of the centred columns; scaling
    /// columns only scales R's columns (A D = Q (R D)), and R's column norms are the columns'
    /// sums of squares, so no pass over the rows is needed for them.
    fn scale(
        &mut self,
        prob: &Problem<'_>,
        fold_r: &mut [Mat],
        r: &mut Mat,
    ) -> Result<(Vec<f64>, f64), FitError> {
        let (n, off, q) = (self.n, self.off, self.pt + 1);
        let col_squares =
            |r: &Mat, j: usize| linalg::sum((0..=j.min(q - 1)).map(|i| r.at(i, j) * r.at(i, j)));
        let mut scale = vec![1.0; self.p];
        for (j, (name, _)) in prob.features.iter().enumerate() {
            scale[j] = (col_squares(r, off + j) / n as f64).sqrt();
            if scale[j] == 0.0 {
                return Err(FitError::Zero {
                    column: name.to_string(),
                    rows: n,
                });
            }
        }
        let tss = col_squares(r, q - 1);
        // A multiplication by the reciprocal, not a division: this runs for every row in every
        // later pass, and a 1-ulp difference in the scaling of a column changes nothing that
        // matters (the coefficients are mapped back through the same scale).
        self.inv_scale = scale.iter().map(|s| 1.0 / s).collect();
        for m in fold_r.iter_mut().chain([r]) {
            for (j, s) in self.inv_scale.iter().enumerate() {
                for i in 0..q {
                    *m.at_mut(i, off + j) *= s;
                }
            }
        }
        Ok((scale, tss))
    }

    /// linfa-linear solves the least-squares problem reduced by the QR factorisation
    /// (min |R b - Q^T y| has the same minimiser as min |Z b - y|); the solution is then
    /// refined against the residuals of every row. The first pass over the rows also makes
    /// the out-of-fold predictions of `fold_b`.
    fn solve(
        &self,
        r: &Mat,
        fold_b: Option<&[Vec<f64>]>,
        ctl: &Control<'_>,
    ) -> Result<Solved, FitError> {
        let pt = self.pt;
        let qty: Vec<f64> = (0..pt).map(|i| r.at(i, pt)).collect();
        let mut b = linfa_solve_reduced(r, &qty)?;
        if b.iter().any(|v| !v.is_finite()) {
            b = linalg::solve_upper(r, &qty);
        }
        let mut fitted = vec![0.0; self.n];
        let mut predicted = fold_b.map(|_| vec![0.0; self.n]);
        let (mut g, mut sums, cv_sums) =
            self.residual_pass(&b, &mut fitted, fold_b.zip(predicted.as_deref_mut()));
        let norm = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut last_step = f64::INFINITY;
        for _ in 0..3 {
            ctl.check()?;
            // Corrected semi-normal equations: R^T R d = Z^T r. Stop once the correction is
            // at rounding level (it would change the 15th digit, at a pass over every row) or
            // no longer shrinks (the gradient of a million rows carries rounding noise of its
            // own, so a correction never reaches exactly zero).
            let d = linalg::solve_upper(r, &linalg::solve_upper_t(r, &g));
            let step = norm(&d);
            if step <= 16.0 * f64::EPSILON * norm(&b) || step > 0.5 * last_step {
                break;
            }
            last_step = step;
            b = b.iter().zip(&d).map(|(a, d)| a + d).collect();
            (g, sums, _) = self.residual_pass(&b, &mut fitted, None);
        }
        Ok(Solved {
            b,
            fitted,
            predicted,
            sums,
            cv_sums,
        })
    }

    /// One pass over the rows: residuals, fitted values, the gradient Z^T r (for refinement)
    /// and the sums behind RSS, MAE and MAPE; with `cv`, also the out-of-fold predictions.
    fn residual_pass(
        &self,
        b: &[f64],
        fitted: &mut [f64],
        cv: Option<(&[Vec<f64>], &mut [f64])>,
    ) -> (Vec<f64>, ErrorSums, ErrorSums) {
        let (p, off, pt, y, y_centre) = (self.p, self.off, self.pt, self.y, self.y_centre);
        let b0 = if self.intercept { b[0] } else { 0.0 };
        let bs = &b[off..];
        let (fold_b, outs) = match cv {
            Some((fb, pred)) => (Some(fb), vec![fitted, pred]),
            None => (None, vec![fitted]),
        };
        let parts = par_chunks(self.n, outs, |rows, out| {
            let mut g = vec![0.0; pt];
            let mut zi = vec![0.0; p];
            let mut sums = ErrorSums::default();
            let mut cv_sums = ErrorSums::default();
            let start = rows.start;
            for i in rows {
                self.row(i, &mut zi);
                let ri = (y[i] - y_centre) - (b0 + linalg::dot(&zi, bs));
                if self.intercept {
                    g[0] += ri;
                }
                for j in 0..p {
                    g[off + j] += zi[j] * ri;
                }
                out[0][i - start] = y[i] - ri;
                sums.add(y[i], ri);
                if let Some(fb) = fold_b {
                    let bf = &fb[self.fold.get(i)];
                    let b0f = if self.intercept { bf[0] } else { 0.0 };
                    let fi = y_centre + b0f + linalg::dot(&zi, &bf[off..]);
                    out[1][i - start] = fi;
                    cv_sums.add(y[i], y[i] - fi);
                }
            }
            (g, sums, cv_sums)
        });
        let g = (0..pt)
            .map(|j| parts.iter().map(|(g, _, _)| g[j]).sum())
            .collect();
        (
            g,
            ErrorSums::merge(parts.iter().map(|(_, s, _)| s)),
            ErrorSums::merge(parts.iter().map(|(_, _, c)| c)),
        )
    }
}

/// Compensated (Neumaier) running sums of squared, absolute and relative errors.
#[derive(Debug, Clone, Copy, Default)]
struct ErrorSums {
    squares: Neumaier,
    absolute: Neumaier,
    relative: Neumaier,
    nonzero: usize,
}

impl ErrorSums {
    #[inline]
    fn add(&mut self, observed: f64, error: f64) {
        self.squares.add(error * error);
        self.absolute.add(error.abs());
        if observed != 0.0 {
            self.relative.add((error / observed).abs());
            self.nonzero += 1;
        }
    }

    /// The sums of several chunks, compensation folded in.
    fn merge<'a>(parts: impl Iterator<Item = &'a ErrorSums> + Clone) -> ErrorSums {
        ErrorSums {
            squares: Neumaier::merge(parts.clone().map(|p| &p.squares)),
            absolute: Neumaier::merge(parts.clone().map(|p| &p.absolute)),
            relative: Neumaier::merge(parts.clone().map(|p| &p.relative)),
            nonzero: parts.map(|p| p.nonzero).sum(),
        }
    }

    /// Mean absolute percentage error (%), over rows with a non-zero observed value.
    fn mape_percent(&self) -> Option<f64> {
        (self.nonzero > 0).then(|| 100.0 * self.relative.value() / self.nonzero as f64)
    }
}

/// linfa-linear's least-squares solution of the reduced problem `R[..p, ..p] b = qty`.
fn linfa_solve_reduced(r: &Mat, qty: &[f64]) -> Result<Vec<f64>, FitError> {
    let p = qty.len();
    let records = Array2::from_shape_fn((p, p), |(i, j)| r.at(i, j));
    let ds = linfa::Dataset::new(records, Array1::from_vec(qty.to_vec()));
    let model = LinearRegression::new()
        .with_intercept(false)
        .fit(&ds)
        .map_err(|e| FitError::Linfa(e.to_string()))?;
    Ok(model.params().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Standard normal variates from a seeded SplitMix64 (Box-Muller).
    struct Normal(SplitMix64);
    impl Normal {
        fn new(seed: u64) -> Self {
            Normal(SplitMix64::new(seed))
        }
        fn next(&mut self) -> f64 {
            let (u, v) = (self.0.unit(), self.0.unit());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    fn fit(
        features: &[(&str, &[f64])],
        y: &[f64],
        params: &OlsParams,
    ) -> Result<FittedOls, FitError> {
        params.fit(
            &Problem {
                features,
                target: ("y", y),
                row_label: None,
            },
            &Control::none(),
        )
    }

    /// Synthetic energy-like data: E = alpha V + beta + noise, V in bytes (0.1-4 GB).
    fn energy_data(seed: u64, n: usize, sd: f64) -> (Vec<f64>, Vec<f64>) {
        let mut g = Normal::new(seed);
        let v: Vec<f64> = (0..n).map(|_| 1e8 + 4e9 * g.0.unit()).collect();
        let e = v
            .iter()
            .map(|v| 0.512e-6 * v + 20.165 + sd * g.next())
            .collect();
        (v, e)
    }

    const PINNED: [u32; 20] = [4, 1, 3, 0, 0, 2, 0, 3, 0, 4, 3, 3, 1, 2, 4, 1, 2, 2, 4, 1];

    #[test]
    fn folds_are_balanced_seeded_and_shuffled() {
        let f = fold_assignment(10_003, 5, 7);
        let mut sizes = [0usize; 5];
        for &k in &f {
            sizes[k as usize] += 1;
        }
        assert_eq!(sizes, [2001, 2001, 2001, 2000, 2000]);
        assert_eq!(f, fold_assignment(10_003, 5, 7));
        assert_ne!(f, fold_assignment(10_003, 5, 8));
        // Not the round-robin order it starts from: about 1/5 of neighbours share a fold.
        let same = f.windows(2).filter(|w| w[0] == w[1]).count();
        assert!((1500..2500).contains(&same), "{same}");
        // Leave-one-out: every row its own fold.
        let mut loo = fold_assignment(7, 7, 1);
        loo.sort_unstable();
        assert_eq!(loo, (0..7).collect::<Vec<u32>>());
    }

    /// Byte and word labels take the same swaps, so the fold count never changes the order.
    #[test]
    fn byte_and_word_shuffles_agree() {
        let mut bytes: Vec<u8> = (0..5000).map(|i| (i % 7) as u8).collect();
        let mut words: Vec<u32> = (0..5000).map(|i| i % 7).collect();
        shuffle(&mut bytes, 42);
        shuffle(&mut words, 42);
        assert!(bytes.iter().zip(&words).all(|(b, w)| u32::from(*b) == *w));
        let big = fold_assignment(1000, 300, 3);
        assert!(big.iter().all(|&f| f < 300));
        assert_eq!(big.iter().filter(|&&f| f == 299).count(), 3);
    }

    /// The labels of seed 1 as released: a change here changes every model file's
    /// cross-validation figures for the same seed, so it must be deliberate.
    #[test]
    fn fold_assignment_is_pinned() {
        assert_eq!(fold_assignment(20, 5, 1), PINNED);
    }

    #[test]
    fn recovers_the_papers_energy_coefficients() {
        let (v, e) = energy_data(7, 2000, 5.0);
        let f = fit(&[("v_mig_bytes", &v)], &e, &OlsParams::new()).unwrap();
        let (alpha, beta) = (f.estimates[0], f.estimates[1]);
        assert!(
            (alpha.value - 0.512e-6).abs() < 4.0 * alpha.std_error,
            "{alpha:?}"
        );
        assert!(
            (beta.value - 20.165).abs() < 4.0 * beta.std_error,
            "{beta:?}"
        );
        assert!((f.residual_sd - 5.0).abs() < 0.3, "{}", f.residual_sd);
        assert!(f.r_squared > 0.99);
        let cv = f.cross_validation.as_ref().unwrap();
        assert_eq!(cv.folds, 5);
        // Out-of-fold error is close to the in-sample error for a well-specified model.
        assert!(
            (cv.mae / f.mae - 1.0).abs() < 0.05,
            "{} vs {}",
            cv.mae,
            f.mae
        );
        assert_eq!(f.fitted.len(), 2000);
    }

    #[test]
    fn confidence_intervals_cover_the_truth_at_the_stated_rate() {
        // 400 noisy data sets of gamma-like data; each 95 % CI should cover the true value in
        // about 95 % of them: binomial sd sqrt(.95 .05 / 400) = 1.1 %, so allow 91-99 %.
        let truth = [-0.0463, -1e-10, 0.3586];
        let mut covered = [0usize; 3];
        let runs = 400;
        for seed in 0..runs {
            let mut g = Normal::new(1000 + seed as u64);
            let n = 30;
            let t: Vec<f64> = (0..n).map(|_| 0.2 + 5.0 * g.0.unit()).collect();
            let d: Vec<f64> = (0..n).map(|_| 1e6 + 1e8 * g.0.unit()).collect();
            let y: Vec<f64> = (0..n)
                .map(|i| truth[0] * t[i] + truth[1] * d[i] + truth[2] + 0.05 * g.next())
                .collect();
            let f = fit(&[("t", &t), ("d", &d)], &y, &OlsParams::new().folds(0)).unwrap();
            for k in 0..3 {
                let (lo, hi) = f.estimates[k].ci95;
                covered[k] += usize::from(lo <= truth[k] && truth[k] <= hi);
            }
        }
        for c in covered {
            let rate = c as f64 / runs as f64;
            assert!((0.91..=0.99).contains(&rate), "coverage {rate}");
        }
    }

    #[test]
    fn refuses_non_finite_values_naming_rows() {
        let x = [1.0, 2.0, f64::NAN, 4.0, 5.0];
        let y = [1.0, 2.0, 3.0, f64::INFINITY, 5.0];
        let e = fit(&[("x", &x)], &y, &OlsParams::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column 'x': 1 non-finite value(s) (NaN, infinite or null), first at row 2 (NaN)"
        );
        let label = |i: usize| format!("f.parquet row {}", i + 1);
        let e = OlsParams::new()
            .fit(
                &Problem {
                    features: &[("x", &[1.0, 2.0, 3.0, 4.0, 5.0])],
                    target: ("y", &y),
                    row_label: Some(&label),
                },
                &Control::none(),
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("column 'y'") && e.to_string().contains("f.parquet row 4 (inf)"),
            "{e}"
        );
    }

    #[test]
    fn refuses_too_few_rows() {
        let e = fit(&[("x", &[1.0, 2.0])], &[1.0, 2.0], &OlsParams::new()).unwrap_err();
        assert!(matches!(
            e,
            FitError::TooFewRows {
                rows: 2,
                parameters: 2
            }
        ));
        assert!(e.to_string().contains("need at least 3"));
        assert_eq!(
            fit(&[], &[], &OlsParams::new()).unwrap_err(),
            FitError::Empty
        );
        assert_eq!(
            fit(&[], &[1.0], &OlsParams::new().intercept(false)).unwrap_err(),
            FitError::NoParameters
        );
    }

    #[test]
    fn refuses_constant_zero_and_collinear_columns() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0];
        let c = [7.0; 6];
        let e = fit(&[("x", &x), ("c", &c)], &y, &OlsParams::new()).unwrap_err();
        assert!(e.to_string().contains("feature 'c' is constant (7)"), "{e}");
        // Without an intercept a constant column is legitimate; a zero column is not.
        assert!(fit(
            &[("x", &x), ("c", &c)],
            &y,
            &OlsParams::new().intercept(false)
        )
        .is_ok());
        let z = [0.0; 6];
        let e = fit(&[("z", &z)], &y, &OlsParams::new().intercept(false)).unwrap_err();
        assert!(e.to_string().contains("'z' is zero"), "{e}");
        let x2: Vec<f64> = x.iter().map(|v| 3.0 * v - 1.0).collect();
        let e = fit(&[("x", &x), ("x2", &x2)], &y, &OlsParams::new()).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("collinear") && s.contains("x2") && s.contains("x,") || s.contains("x2, x"),
            "{s}"
        );
        // Nearly collinear: beyond the limit too.
        let x3: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + 1e-12 * (i % 2) as f64)
            .collect();
        assert!(matches!(
            fit(&[("x", &x), ("x3", &x3)], &y, &OlsParams::new()).unwrap_err(),
            FitError::Collinear { .. }
        ));
    }

    #[test]
    fn a_fit_spanning_many_chunks_agrees_with_the_normal_equations() {
        // Several parallel chunks (and a ragged last one): coefficients against the normal
        // equations solved directly (well conditioned here, so both are accurate to ~1e-12),
        // residuals that add up, and cross-validation close to the in-sample error.
        let n = 3 * PAR_CHUNK + 1234;
        let mut g = Normal::new(42);
        let x1: Vec<f64> = (0..n).map(|_| 1e8 + 4e9 * g.0.unit()).collect();
        let x2: Vec<f64> = (0..n).map(|_| 30.0 * g.0.unit()).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| 20.0 + 0.5e-6 * x1[i] - 0.75 * x2[i] + 5.0 * g.next())
            .collect();
        let f = fit(&[("x1", &x1), ("x2", &x2)], &y, &OlsParams::new()).unwrap();
        // Normal equations on centred columns.
        let mean = |v: &[f64]| linalg::sum(v.iter().copied()) / n as f64;
        let (m1, m2, my) = (mean(&x1), mean(&x2), mean(&y));
        let s = |a: &[f64], ma: f64, b: &[f64], mb: f64| {
            linalg::sum(a.iter().zip(b).map(|(a, b)| (a - ma) * (b - mb)))
        };
        let (s11, s12, s22) = (
            s(&x1, m1, &x1, m1),
            s(&x1, m1, &x2, m2),
            s(&x2, m2, &x2, m2),
        );
        let (s1y, s2y) = (s(&x1, m1, &y, my), s(&x2, m2, &y, my));
        let det = s11 * s22 - s12 * s12;
        let b1 = (s22 * s1y - s12 * s2y) / det;
        let b2 = (s11 * s2y - s12 * s1y) / det;
        let b0 = my - b1 * m1 - b2 * m2;
        for (got, want) in f.estimates.iter().zip([b1, b2, b0]) {
            assert!(
                (got.value - want).abs() <= 1e-11 * want.abs(),
                "{} vs {want}",
                got.value
            );
        }
        assert_eq!(f.fitted.len(), n);
        let rss: f64 = y
            .iter()
            .zip(&f.fitted)
            .map(|(y, f)| (y - f) * (y - f))
            .sum();
        assert!((f.rss / rss - 1.0).abs() < 1e-10);
        let cv = f.cross_validation.as_ref().unwrap();
        assert_eq!(cv.predicted.len(), n);
        assert!(
            (cv.mae / f.mae - 1.0).abs() < 0.01,
            "{} vs {}",
            cv.mae,
            f.mae
        );
    }

    #[test]
    fn cancels() {
        let flag = std::sync::atomic::AtomicBool::new(true);
        let ctl = Control {
            cancel: Some(&flag),
            progress: None,
        };
        let e = OlsParams::new().fit(
            &Problem {
                features: &[("x", &[1.0, 2.0, 3.0])],
                target: ("y", &[1.0, 2.0, 4.0]),
                row_label: None,
            },
            &ctl,
        );
        assert_eq!(e.unwrap_err(), FitError::Cancelled);
    }

    #[test]
    fn exact_fit_has_zero_standard_errors() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [3.0, 5.0, 7.0, 9.0];
        let f = fit(&[("x", &x)], &y, &OlsParams::new().folds(0)).unwrap();
        assert!((f.estimates[0].value - 2.0).abs() < 1e-14);
        assert!((f.estimates[1].value - 1.0).abs() < 1e-13);
        assert!(f.estimates[0].std_error < 1e-12);
        assert!((f.r_squared - 1.0).abs() < 1e-15);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any well-conditioned problem: exact data is recovered, residuals are orthogonal to
        /// the design, and fitted + residual = observed.
        #[test]
        fn recovers_exact_coefficients(
            b in proptest::collection::vec(-1e3f64..1e3, 1..4),
            c in -1e3f64..1e3,
            scale in proptest::collection::vec(-6i32..7, 4),
            n in 8usize..60,
            seed in any::<u64>(),
            noise in 0.0f64..1.0,
        ) {
            let mut g = Normal::new(seed);
            let p = b.len();
            let xs: Vec<Vec<f64>> = (0..p)
                .map(|j| (0..n).map(|_| 10f64.powi(scale[j]) * (g.0.unit() - 0.3)).collect())
                .collect();
            let y: Vec<f64> = (0..n)
                .map(|i| c + (0..p).map(|j| b[j] / 10f64.powi(scale[j]) * xs[j][i]).sum::<f64>() + noise * g.next())
                .collect();
            let names = ["a", "b", "c", "d"];
            let feats: Vec<(&str, &[f64])> = (0..p).map(|j| (names[j], xs[j].as_slice())).collect();
            let f = match fit(&feats, &y, &OlsParams::new().folds(3).seed(seed)) {
                Ok(f) => f,
                // Random columns can be nearly collinear for small n; that must be the reason.
                Err(e) => { prop_assert!(matches!(e, FitError::Collinear { .. }), "{}", e); return Ok(()); }
            };
            for j in 0..p {
                let want = b[j] / 10f64.powi(scale[j]);
                let e = f.estimates[j];
                if noise == 0.0 {
                    prop_assert!((e.value - want).abs() <= 1e-8 * want.abs().max(1e-300) + 1e-9 / 10f64.powi(scale[j]));
                } else {
                    prop_assert!((e.value - want).abs() <= 8.0 * e.std_error + 1e-9 * want.abs());
                }
            }
            // Fitted values are the fitted model's predictions, and their residuals are
            // orthogonal to every feature.
            let intercept = f.estimates[p].value;
            for i in 0..n {
                let model = intercept + (0..p).map(|j| f.estimates[j].value * xs[j][i]).sum::<f64>();
                prop_assert!((f.fitted[i] - model).abs() <= 1e-9 * (1.0 + y[i].abs() + model.abs()));
            }
            let residuals: Vec<f64> = y.iter().zip(&f.fitted).map(|(y, f)| y - f).collect();
            for xj in &xs {
                let dot: f64 = xj.iter().zip(&residuals).map(|(x, r)| x * r).sum();
                let norm: f64 = xj.iter().map(|x| x * x).sum::<f64>().sqrt() * residuals.iter().map(|r| r * r).sum::<f64>().sqrt();
                prop_assert!(dot.abs() <= 1e-8 * norm.max(1e-300));
            }
        }
    }
}
