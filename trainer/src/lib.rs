//! Model fitting for migwatt: guarded OLS (linfa-linear) with full statistics, versioned
//! coefficient files, and the energy (eq 14/15), gamma (eq 10) and generic linear trainers.
//!
//! [`coef`] depends on serde and `datasets::quantity` (units) only, so prediction can use it
//! without polars or linfa.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod coef;
pub mod downtime;
pub mod evaluate;
pub mod history;
pub mod linalg;
pub mod ols;
pub mod predict;
pub mod probe;
pub mod rank;
pub mod rng;
pub mod stats;
pub mod train;

pub use coef::{CoefError, CoefficientFile, ModelKind};
pub use ols::{FitError, FittedOls, OlsParams, Problem};
pub use train::{
    train_energy, train_gamma, train_linear, GammaOptions, LinearOptions, TrainError, TrainOptions,
    Trained,
};

/// Cancellation signal and progress sink for long-running work.
#[derive(Clone, Copy, Default)]
pub struct Control<'a> {
    /// Set to true to stop at the next checkpoint.
    pub cancel: Option<&'a AtomicBool>,
    /// Receives a short description of each phase as it starts.
    pub progress: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Control<'_> {
    /// No cancellation, no progress.
    pub fn none() -> Self {
        Control::default()
    }
    /// Err(Cancelled) once cancellation was requested.
    pub fn check(&self) -> Result<(), FitError> {
        match self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(FitError::Cancelled),
            _ => Ok(()),
        }
    }
    /// Report a phase.
    pub fn report(&self, phase: &str) {
        if let Some(p) = self.progress {
            p(phase);
        }
    }
}
