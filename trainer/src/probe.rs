//! The pre-migration probe's model side: the probe file (what `migwatt calibrate probe`
//! measured on a running VM) and the fit of the dirty set's growth with the window length,
//! which gives the refined model's D and hot set H for a VM never migrated before.
//!
//! The model is the one the simulation uses ([`crate::predict::Scenario::hot_set_bytes`]):
//! the data a guest has dirty after a window of T seconds is min(D T, H). A probe measures the
//! dirty data x_w over a few windows w (1-8 s); linear growth means no hot set, saturation at
//! a level means that level is H.

use serde::{Deserialize, Serialize};

/// `format` of a probe file.
pub const PROBE_FORMAT: &str = "migwatt-probe";
/// `version` of the probe file format written by this build.
pub const PROBE_VERSION: u32 = 1;
/// A hot set is only declared when the longest window dirtied at least this much less than
/// the linear growth would have (saturation, not sampling noise): 20 %.
pub const SATURATION_MARGIN: f64 = 0.2;

/// Errors of reading or checking a probe file.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not JSON, or not a probe file's fields.
    #[error("{file}: not a probe file: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
    /// A value out of range.
    #[error("{file}: {field} = {value}: {problem}")]
    Value {
        /// The file.
        file: String,
        /// Which field.
        field: String,
        /// Its value.
        value: f64,
        /// What was expected.
        problem: &'static str,
    },
}

/// One probe window: the dirty data after `window_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeWindow {
    /// Window length, s.
    pub window_s: f64,
    /// Dirty rate QEMU reported over the window (dirty data / window), bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// Data dirty at the window's end, bytes.
    pub dirty_bytes: f64,
}

/// What a probe measured on a running VM (the probe file; JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Always [`PROBE_FORMAT`].
    pub format: String,
    /// [`PROBE_VERSION`].
    pub version: u32,
    /// When the probe started, UTC ns.
    pub start_utc_ns: i64,
    /// QEMU version of the probed VM (None: unknown).
    pub qemu_version: Option<String>,
    /// How the dirty data was measured (`calc-dirty-rate` mode, e.g. `page-sampling`).
    pub method: String,
    /// Guest RAM, bytes.
    pub vm_mem_bytes: f64,
    /// The windows, shortest first.
    pub windows: Vec<ProbeWindow>,
    /// D: the fitted dirtying rate, bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// H: the fitted hot set, bytes (None: the dirty set kept growing linearly).
    pub hot_set_bytes: Option<f64>,
    /// Share of guest RAM pages that are not all zeros (None: not measured): the first
    /// pre-copy round sends only those in full.
    pub nonzero_share: Option<f64>,
}

impl Probe {
    /// Parse and check a probe file's text; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<Probe, ProbeError> {
        let p: Probe = serde_json::from_str(text).map_err(|e| ProbeError::Parse {
            file: file.into(),
            message: e.to_string(),
        })?;
        p.check(file)?;
        Ok(p)
    }

    /// Range checks of every figure; `file` names it in errors.
    pub fn check(&self, file: &str) -> Result<(), ProbeError> {
        let bad = |field: String, value: f64, problem| ProbeError::Value {
            file: file.into(),
            field,
            value,
            problem,
        };
        if self.format != PROBE_FORMAT {
            return Err(ProbeError::Parse {
                file: file.into(),
                message: format!("format '{}', expected '{PROBE_FORMAT}'", self.format),
            });
        }
        if self.version == 0 || self.version > PROBE_VERSION {
            return Err(bad(
                "version".into(),
                self.version as f64,
                "unsupported probe file version (this build reads 1)",
            ));
        }
        let pos = |v: f64| v.is_finite() && v >= 0.0;
        if !(self.vm_mem_bytes.is_finite() && self.vm_mem_bytes > 0.0) {
            return Err(bad(
                "vm_mem_bytes".into(),
                self.vm_mem_bytes,
                "expected a positive size",
            ));
        }
        if !pos(self.dirty_rate_bytes_per_s) {
            return Err(bad(
                "dirty_rate_bytes_per_s".into(),
                self.dirty_rate_bytes_per_s,
                "expected a finite rate >= 0",
            ));
        }
        if let Some(h) = self.hot_set_bytes.filter(|h| !(h.is_finite() && *h > 0.0)) {
            return Err(bad("hot_set_bytes".into(), h, "expected a positive size"));
        }
        if let Some(z) = self
            .nonzero_share
            .filter(|z| !(z.is_finite() && *z > 0.0 && *z <= 1.0))
        {
            return Err(bad("nonzero_share".into(), z, "expected a share in (0, 1]"));
        }
        for (i, w) in self.windows.iter().enumerate() {
            if !(w.window_s.is_finite() && w.window_s > 0.0) {
                return Err(bad(
                    format!("windows[{i}].window_s"),
                    w.window_s,
                    "expected a positive duration",
                ));
            }
            if !pos(w.dirty_bytes) || !pos(w.dirty_rate_bytes_per_s) {
                return Err(bad(
                    format!("windows[{i}].dirty_bytes"),
                    w.dirty_bytes,
                    "expected finite figures >= 0",
                ));
            }
        }
        Ok(())
    }

    /// Data the first pre-copy round sends in full: the non-zero share of guest RAM when
    /// measured, else all of it (zero pages go as a few bytes each), bytes.
    pub fn first_round_bytes(&self) -> f64 {
        self.vm_mem_bytes * self.nonzero_share.unwrap_or(1.0)
    }
}

/// D and H fitted to a probe's windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GrowthFit {
    /// D, bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// H, bytes (None: no saturation seen).
    pub hot_set_bytes: Option<f64>,
}

/// Fit x = min(D w, H) to (window s, dirty bytes) points by least squares over every split
/// of the windows (sorted by length) into a linear head (D through the origin) and a flat
/// tail (H = the tail's mean). A tail is only taken as a hot set when H is at least
/// [`SATURATION_MARGIN`] below D times the longest window; otherwise D is fitted through
/// the origin over every window and H is None. Points with a non-positive or non-finite
/// window or a non-finite volume are ignored; None when none is left.
pub fn fit_growth(points: &[(f64, f64)]) -> Option<GrowthFit> {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(w, x)| w.is_finite() && *w > 0.0 && x.is_finite())
        .map(|(w, x)| (w, x.max(0.0)))
        .collect();
    if p.is_empty() {
        return None;
    }
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let through_origin = |s: &[(f64, f64)]| {
        let (num, den) = s
            .iter()
            .fold((0.0, 0.0), |(n, d), (w, x)| (n + w * x, d + w * w));
        num / den
    };
    let linear = GrowthFit {
        dirty_rate_bytes_per_s: through_origin(&p),
        hot_set_bytes: None,
    };
    let w_max = p[p.len() - 1].0;
    let sse = |d: f64, h: f64| {
        p.iter()
            .map(|(w, x)| (x - (d * w).min(h)).powi(2))
            .sum::<f64>()
    };
    let mut best: Option<(f64, GrowthFit)> = None;
    for k in 1..p.len() {
        let d = through_origin(&p[..k]);
        let tail = &p[k..];
        let h = tail.iter().map(|(_, x)| x).sum::<f64>() / tail.len() as f64;
        if !(h > 0.0 && h <= d * w_max * (1.0 - SATURATION_MARGIN)) {
            continue;
        }
        let e = sse(d, h);
        if best.as_ref().is_none_or(|(b, _)| e < *b) {
            best = Some((
                e,
                GrowthFit {
                    dirty_rate_bytes_per_s: d,
                    hot_set_bytes: Some(h),
                },
            ));
        }
    }
    match best {
        Some((e, fit)) if e <= sse(linear.dirty_rate_bytes_per_s, f64::INFINITY) => Some(fit),
        _ => Some(linear),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: f64 = 1048576.0;

    #[test]
    fn saturation_gives_the_hot_set_and_linear_growth_none() {
        // 8 MiB/s over a 16 MiB hot set, windows 1-8 s (as the probe of a 2048-pages/s
        // sequential dirtier over 16 MiB would see it).
        let pts = [
            (1.0, 8.0 * MIB),
            (2.0, 16.0 * MIB),
            (4.0, 16.0 * MIB),
            (8.0, 16.0 * MIB),
        ];
        let f = fit_growth(&pts).unwrap();
        assert!((f.dirty_rate_bytes_per_s - 8.0 * MIB).abs() < 1.0, "{f:?}");
        assert!((f.hot_set_bytes.unwrap() - 16.0 * MIB).abs() < 1.0);
        // Linear growth: no hot set, D through the origin.
        let pts = [
            (1.0, 3.0 * MIB),
            (2.0, 6.0 * MIB),
            (4.0, 12.0 * MIB),
            (8.0, 24.0 * MIB),
        ];
        let f = fit_growth(&pts).unwrap();
        assert_eq!(f.hot_set_bytes, None);
        assert!((f.dirty_rate_bytes_per_s - 3.0 * MIB).abs() < 1e-6);
        // A tail only 10 % under the line is noise, not a hot set.
        let pts = [
            (1.0, 4.0 * MIB),
            (2.0, 8.0 * MIB),
            (4.0, 16.0 * MIB),
            (8.0, 29.0 * MIB),
        ];
        assert_eq!(fit_growth(&pts).unwrap().hot_set_bytes, None);
        // Saturated from the first window: D is a lower bound (x_1 / w_1).
        let pts = [(1.0, 10.0 * MIB), (2.0, 10.0 * MIB), (4.0, 10.0 * MIB)];
        let f = fit_growth(&pts).unwrap();
        assert_eq!(f.hot_set_bytes, Some(10.0 * MIB));
        assert_eq!(f.dirty_rate_bytes_per_s, 10.0 * MIB);
        // Nothing usable.
        assert_eq!(fit_growth(&[(0.0, 1.0), (f64::NAN, 2.0)]), None);
        // An idle guest: D = 0, no hot set.
        assert_eq!(
            fit_growth(&[(1.0, 0.0), (2.0, 0.0)]),
            Some(GrowthFit {
                dirty_rate_bytes_per_s: 0.0,
                hot_set_bytes: None
            })
        );
    }

    #[test]
    fn probe_files_are_checked() {
        let p = Probe {
            format: PROBE_FORMAT.into(),
            version: PROBE_VERSION,
            start_utc_ns: 1,
            qemu_version: Some("10.0.2".into()),
            method: "page-sampling".into(),
            vm_mem_bytes: 256.0 * MIB,
            windows: vec![ProbeWindow {
                window_s: 1.0,
                dirty_rate_bytes_per_s: 8.0 * MIB,
                dirty_bytes: 8.0 * MIB,
            }],
            dirty_rate_bytes_per_s: 8.0 * MIB,
            hot_set_bytes: Some(16.0 * MIB),
            nonzero_share: Some(0.25),
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(Probe::from_json(&text, "p.json").unwrap(), p);
        assert_eq!(p.first_round_bytes(), 64.0 * MIB);
        let bad = text.replace("0.25", "1.5");
        let e = Probe::from_json(&bad, "p.json").unwrap_err().to_string();
        assert!(e.contains("p.json") && e.contains("nonzero_share"), "{e}");
        let e = Probe::from_json("{}", "p.json").unwrap_err().to_string();
        assert!(e.starts_with("p.json: not a probe file"), "{e}");
        let e = Probe::from_json(&text.replace(PROBE_FORMAT, "x"), "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format 'x'"), "{e}");
    }

    proptest! {
        #[test]
        fn exact_growth_is_recovered(d in 1e5f64..1e9, h_over in 0.05f64..20.0, ws in proptest::collection::btree_set(1u32..64, 2..6)) {
            // Windows of 0.25 s steps; H a multiple of D times the shortest window.
            let ws: Vec<f64> = ws.into_iter().map(|w| w as f64 * 0.25).collect();
            let h = d * ws[0] * h_over.max(1.0);
            let pts: Vec<(f64, f64)> = ws.iter().map(|w| (*w, (d * w).min(h))).collect();
            let f = fit_growth(&pts).unwrap();
            let w_max = ws[ws.len() - 1];
            // The fit reproduces every point, unless the saturation is within the margin
            // (then it is taken as linear growth on purpose).
            let fh = f.hot_set_bytes.unwrap_or(f64::INFINITY);
            let clear = h <= d * w_max * (1.0 - SATURATION_MARGIN) || h >= d * w_max;
            for (w, x) in pts.iter().filter(|_| clear) {
                prop_assert!(((f.dirty_rate_bytes_per_s * w).min(fh) - x).abs() <= 1e-6 * x.max(1.0), "{f:?} at {w}");
            }
            // The hot set is found exactly when clearly saturated, and never invented.
            if h <= d * w_max * (1.0 - SATURATION_MARGIN) {
                prop_assert!((fh - h).abs() <= 1e-6 * h, "{f:?} vs H {h}");
            } else if let Some(fh) = f.hot_set_bytes {
                prop_assert!(fh <= f.dirty_rate_bytes_per_s * w_max);
            }
        }

        #[test]
        fn the_fit_is_finite_and_non_negative(pts in proptest::collection::vec((0.1f64..10.0, 0.0f64..1e10), 1..8)) {
            let f = fit_growth(&pts).unwrap();
            prop_assert!(f.dirty_rate_bytes_per_s.is_finite() && f.dirty_rate_bytes_per_s >= 0.0);
            if let Some(h) = f.hot_set_bytes {
                prop_assert!(h.is_finite() && h > 0.0);
                let w_max = pts.iter().map(|p| p.0).fold(0.0, f64::max);
                prop_assert!(h <= f.dirty_rate_bytes_per_s * w_max * (1.0 - SATURATION_MARGIN) * (1.0 + 1e-12));
            }
        }
    }
}
