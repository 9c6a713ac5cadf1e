//! Static power P_0 of a host (the paper's section 3.3): the mean power while the VM's
//! workload runs steadily and nothing migrates, accepted only when the readings are stable.
//!
//! Stability is the spread (max - min) of the readings after dropping flagged samples; the
//! paper accepts under 1 W, which matches the meter's resolution and accuracy (0.1 W,
//! +-1.5 % + 3 counts). Either the caller names the time range, or [`find_baseline`] looks
//! for the longest stretch of consecutive samples (no gap) whose spread is within the limit.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use datasets::samples::{read_power_series, sample_files_by_host, PowerSeries, FLAG_AFTER_GAP};
use datasets::DatasetError;
use serde::{Deserialize, Serialize};

use super::integrate::{estimate_interval_ns, GAP_FACTOR};

/// Kind written in baseline files (`kind` field).
pub const BASELINE_KIND: &str = "baseline";
/// Version of the baseline file format.
pub const BASELINE_VERSION: &str = "1.0.0";

/// Readings closer than this are equal: sums of 0.1 W steps are not exact in binary.
const SPREAD_EPS_W: f64 = 1e-6;

/// Errors of finding or reading a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Reading the samples failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The samples dataset has no files for the host.
    #[error("{dir}: no samples for host '{host}' (hosts present: {known})")]
    UnknownHost {
        dir: PathBuf,
        host: String,
        known: String,
    },
    /// No usable samples in the range.
    #[error("host '{host}': no unflagged samples between {from} and {to}{span}")]
    NoSamples {
        host: String,
        from: String,
        to: String,
        span: String,
    },
    /// The explicit range is not stable enough.
    #[error(transparent)]
    Unstable(Box<UnstableRange>),
    /// No stretch long and stable enough exists.
    #[error(
        "host '{host}': no stretch of at least {min_seconds} s with a spread within \
         {max_spread_w} W among {count} samples ({span}); the longest stable stretch is \
         {best_s:.1} s{best_at}"
    )]
    NoStableStretch {
        host: String,
        min_seconds: f64,
        max_spread_w: f64,
        count: usize,
        span: String,
        best_s: f64,
        best_at: String,
    },
    /// An option's value was refused (the message says what the option is; a caller names
    /// it its own way, as a flag or a config key).
    #[error("{option}: {problem}")]
    Option {
        /// Which option.
        option: BaselineOption,
        /// What was wrong with its value.
        problem: String,
    },
    /// A baseline file could not be read, parsed or written.
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

/// Why an explicit baseline range was refused: its readings spread too far.
#[derive(Debug, thiserror::Error)]
#[error(
    "host '{host}': power between {from} and {to} is not stable: spread {spread_w:.1} W \
     (min {min_w:.1} W at {min_at}, max {max_w:.1} W at {max_at}) exceeds the spread \
     limit {max_spread_w} W over {count} samples; choose a quieter range or raise the limit"
)]
pub struct UnstableRange {
    /// Host name.
    pub host: String,
    /// Range start, RFC 3339.
    pub from: String,
    /// Range end, RFC 3339.
    pub to: String,
    /// Max - min of the readings, W.
    pub spread_w: f64,
    /// Lowest reading, W.
    pub min_w: f64,
    /// When it was read, RFC 3339.
    pub min_at: String,
    /// Highest reading, W.
    pub max_w: f64,
    /// When it was read, RFC 3339.
    pub max_at: String,
    /// The limit, W.
    pub max_spread_w: f64,
    /// Unflagged samples in the range.
    pub count: usize,
}

/// An option of [`BaselineOptions`], named in [`BaselineError::Option`] by what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineOption {
    /// `range_utc_ns`.
    Range,
    /// `max_spread_w`.
    MaxSpreadW,
    /// `min_seconds`.
    MinSeconds,
}

impl std::fmt::Display for BaselineOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BaselineOption::Range => "the range",
            BaselineOption::MaxSpreadW => "the spread limit",
            BaselineOption::MinSeconds => "the shortest stretch",
        })
    }
}

/// How P_0 is to be found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineOptions {
    /// Use exactly this range (inclusive, UTC ns); None = find the longest stable stretch.
    pub range_utc_ns: Option<(i64, i64)>,
    /// Largest accepted max - min of the readings, W.
    pub max_spread_w: f64,
    /// Shortest accepted stretch (first to last sample) when searching, s.
    pub min_seconds: f64,
    /// Sampling interval; None = the median spacing of the host's samples. A spacing above
    /// [`GAP_FACTOR`] times it ends a stretch.
    pub interval_ns: Option<i64>,
}

impl Default for BaselineOptions {
    fn default() -> Self {
        BaselineOptions {
            range_utc_ns: None,
            max_spread_w: 1.0,
            min_seconds: 60.0,
            interval_ns: None,
        }
    }
}

/// A host's static power and where it came from; the JSON of `meter baseline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Always [`BASELINE_KIND`].
    pub kind: String,
    /// Format version, [`BASELINE_VERSION`].
    pub schema_version: String,
    /// Host name.
    pub host: String,
    /// P_0: mean power over the stretch, W.
    pub p0_watts: f64,
    /// Median power over the stretch, W.
    pub median_watts: f64,
    /// Max - min over the stretch, W.
    pub spread_w: f64,
    /// Lowest reading, W.
    pub min_watts: f64,
    /// Highest reading, W.
    pub max_watts: f64,
    /// Samples used.
    pub sample_count: usize,
    /// Flagged samples in the stretch that were left out.
    pub dropped_flagged: usize,
    /// First sample used, ns since the Unix epoch (UTC).
    pub start_utc_ns: i64,
    /// Last sample used, ns since the Unix epoch (UTC).
    pub end_utc_ns: i64,
    /// `start_utc_ns` as RFC 3339.
    pub start: String,
    /// `end_utc_ns` as RFC 3339.
    pub end: String,
    /// From first to last sample used, s.
    pub duration_s: f64,
    /// Meter id(s) of the samples used, comma separated.
    pub meter_id: String,
    /// `range` (given by the caller) or `longest_stable` (searched).
    pub method: String,
    /// The spread limit applied, W.
    pub max_spread_w: f64,
}

/// Format ns since the Unix epoch as RFC 3339 UTC with millisecond precision.
pub fn format_utc_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Read `host`'s samples under `dir` and find its baseline (see [`find_baseline`]).
pub fn baseline_from_dir(
    dir: &Path,
    host: &str,
    opts: &BaselineOptions,
) -> Result<Baseline, BaselineError> {
    let by_host = sample_files_by_host(dir)?;
    let files = by_host
        .get(host)
        .ok_or_else(|| BaselineError::UnknownHost {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            known: by_host.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    let series = read_power_series(host, files, opts.range_utc_ns)?;
    find_baseline(&series, opts)
}

/// Find P_0 in one host's samples: over `opts.range_utc_ns` if given (refused when its spread
/// exceeds the limit), else over the longest stable stretch of at least `opts.min_seconds`.
pub fn find_baseline(s: &PowerSeries, opts: &BaselineOptions) -> Result<Baseline, BaselineError> {
    if opts.max_spread_w.is_nan() || opts.max_spread_w < 0.0 {
        return Err(BaselineError::Option {
            option: BaselineOption::MaxSpreadW,
            problem: format!("expected watts >= 0, got {}", opts.max_spread_w),
        });
    }
    if opts.min_seconds.is_nan() || opts.min_seconds < 0.0 {
        return Err(BaselineError::Option {
            option: BaselineOption::MinSeconds,
            problem: format!("expected seconds >= 0, got {}", opts.min_seconds),
        });
    }
    match opts.range_utc_ns {
        Some((from, to)) => in_range(s, from, to, opts),
        None => longest_stable(s, opts),
    }
}

fn span_text(s: &PowerSeries) -> String {
    match (s.utc_ns.first(), s.utc_ns.last()) {
        (Some(&a), Some(&b)) => {
            format!("samples span {} to {}", format_utc_ns(a), format_utc_ns(b))
        }
        _ => "no samples".to_string(),
    }
}

fn in_range(
    s: &PowerSeries,
    from: i64,
    to: i64,
    opts: &BaselineOptions,
) -> Result<Baseline, BaselineError> {
    if to <= from {
        return Err(BaselineError::Option {
            option: BaselineOption::Range,
            problem: format!(
                "its end {} is not after its start {}",
                format_utc_ns(to),
                format_utc_ns(from)
            ),
        });
    }
    let lo = s.utc_ns.partition_point(|&t| t < from);
    let hi = s.utc_ns.partition_point(|&t| t <= to);
    let idx: Vec<usize> = (lo..hi).filter(|&i| s.flags[i] == 0).collect();
    if idx.is_empty() {
        return Err(BaselineError::NoSamples {
            host: s.host.clone(),
            from: format_utc_ns(from),
            to: format_utc_ns(to),
            span: format!(" ({})", span_text(s)),
        });
    }
    let b = summarize(s, &idx, hi - lo - idx.len(), "range", opts.max_spread_w);
    if b.spread_w > opts.max_spread_w + SPREAD_EPS_W {
        let at = |want: f64| {
            idx.iter()
                .find(|&&i| s.watts[i] == want)
                .map(|&i| format_utc_ns(s.utc_ns[i]))
                .unwrap_or_default()
        };
        return Err(BaselineError::Unstable(Box::new(UnstableRange {
            host: s.host.clone(),
            from: format_utc_ns(from),
            to: format_utc_ns(to),
            spread_w: b.spread_w,
            min_w: b.min_watts,
            min_at: at(b.min_watts),
            max_w: b.max_watts,
            max_at: at(b.max_watts),
            max_spread_w: opts.max_spread_w,
            count: idx.len(),
        })));
    }
    Ok(b)
}

/// Longest run of consecutive unflagged samples (no gap above GAP_FACTOR x interval, no
/// capture-reported gap) whose spread is within the limit; O(n) with monotonic deques.
fn longest_stable(s: &PowerSeries, opts: &BaselineOptions) -> Result<Baseline, BaselineError> {
    let interval = opts
        .interval_ns
        .or_else(|| estimate_interval_ns(&s.utc_ns))
        .unwrap_or(1_000_000_000);
    let max_step = (interval as f64 * GAP_FACTOR) as i64;
    let mut after_gap = vec![false; s.len()];
    for &(i, _) in &s.gaps_before_ns {
        after_gap[i] = true;
    }
    let limit = opts.max_spread_w + SPREAD_EPS_W;
    let (mut mins, mut maxs) = (VecDeque::<usize>::new(), VecDeque::<usize>::new());
    let mut left: Option<usize> = None;
    let mut prev: Option<usize> = None;
    let mut best: Option<(i64, usize, usize)> = None;
    for (i, &flags) in s.flags.iter().enumerate() {
        if flags != 0 {
            // A dropped sample breaks the stretch: its neighbours are no longer consecutive.
            left = None;
            prev = None;
            continue;
        }
        let broken = match prev {
            None => true,
            Some(p) => {
                s.utc_ns[i] - s.utc_ns[p] > max_step || after_gap[i] || flags & FLAG_AFTER_GAP != 0
            }
        };
        if broken || left.is_none() {
            left = Some(i);
            mins.clear();
            maxs.clear();
        }
        prev = Some(i);
        let w = s.watts[i];
        while mins.back().is_some_and(|&k| s.watts[k] >= w) {
            mins.pop_back();
        }
        mins.push_back(i);
        while maxs.back().is_some_and(|&k| s.watts[k] <= w) {
            maxs.pop_back();
        }
        maxs.push_back(i);
        let mut l = left.expect("set above");
        while s.watts[maxs[0]] - s.watts[mins[0]] > limit {
            l += 1;
            while mins.front().is_some_and(|&k| k < l) {
                mins.pop_front();
            }
            while maxs.front().is_some_and(|&k| k < l) {
                maxs.pop_front();
            }
        }
        left = Some(l);
        let dur = s.utc_ns[i] - s.utc_ns[l];
        if best.is_none_or(|(d, _, _)| dur > d) {
            best = Some((dur, l, i));
        }
    }
    let min_ns = (opts.min_seconds * 1e9).round() as i64;
    match best {
        Some((dur, l, r)) if dur >= min_ns => {
            let idx: Vec<usize> = (l..=r).collect();
            Ok(summarize(s, &idx, 0, "longest_stable", opts.max_spread_w))
        }
        other => Err(BaselineError::NoStableStretch {
            host: s.host.clone(),
            min_seconds: opts.min_seconds,
            max_spread_w: opts.max_spread_w,
            count: s.len(),
            span: span_text(s),
            best_s: other.map_or(0.0, |(d, _, _)| d as f64 / 1e9),
            best_at: other.map_or(String::new(), |(_, l, r)| {
                format!(
                    ", from {} to {}",
                    format_utc_ns(s.utc_ns[l]),
                    format_utc_ns(s.utc_ns[r])
                )
            }),
        }),
    }
}

fn summarize(
    s: &PowerSeries,
    idx: &[usize],
    dropped_flagged: usize,
    method: &str,
    max_spread_w: f64,
) -> Baseline {
    let mut w: Vec<f64> = idx.iter().map(|&i| s.watts[i]).collect();
    w.sort_by(f64::total_cmp);
    let n = w.len();
    let mean = w.iter().sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        w[n / 2]
    } else {
        (w[n / 2 - 1] + w[n / 2]) / 2.0
    };
    let (min, max) = (w[0], w[n - 1]);
    let start = s.utc_ns[idx[0]];
    let end = s.utc_ns[idx[n - 1]];
    let mut meters: Vec<u16> = idx.iter().map(|&i| s.meter_index[i]).collect();
    meters.sort_unstable();
    meters.dedup();
    Baseline {
        kind: BASELINE_KIND.into(),
        schema_version: BASELINE_VERSION.into(),
        host: s.host.clone(),
        p0_watts: mean,
        median_watts: median,
        // Round away binary noise: readings are multiples of 0.1 W.
        spread_w: ((max - min) * 1e6).round() / 1e6,
        min_watts: min,
        max_watts: max,
        sample_count: n,
        dropped_flagged,
        start_utc_ns: start,
        end_utc_ns: end,
        start: format_utc_ns(start),
        end: format_utc_ns(end),
        duration_s: (end - start) as f64 / 1e9,
        meter_id: meters
            .iter()
            .filter_map(|&m| s.meter_ids.get(usize::from(m)))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        method: method.into(),
        max_spread_w,
    }
}

/// Highest static power accepted, W (a megawatt: no host draws it; beyond it energies over
/// long windows overflow).
pub const MAX_P0_W: f64 = 1e6;

/// Write a baseline as pretty JSON, atomically (temp file, fsync, rename).
pub fn write_baseline(path: &Path, b: &Baseline) -> Result<(), BaselineError> {
    let mut text = serde_json::to_string_pretty(b).map_err(|e| BaselineError::File {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    text.push('\n');
    Ok(datasets::io::write_bytes_atomic(path, text.as_bytes())?)
}

/// Read a baseline file written by `meter baseline --out`.
pub fn read_baseline(path: &Path) -> Result<Baseline, BaselineError> {
    let err = |problem: String| BaselineError::File {
        path: path.to_path_buf(),
        problem,
    };
    let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let b: Baseline =
        serde_json::from_str(&text).map_err(|e| err(format!("not a baseline file: {e}")))?;
    if b.kind != BASELINE_KIND {
        return Err(err(format!(
            "is a '{}' file, expected '{BASELINE_KIND}'",
            b.kind
        )));
    }
    if !b.schema_version.starts_with("1.") {
        return Err(err(format!(
            "baseline version {} is not supported (this build reads 1.x)",
            b.schema_version
        )));
    }
    if !(b.p0_watts.is_finite() && (0.0..=MAX_P0_W).contains(&b.p0_watts)) {
        return Err(err(format!(
            "p0_watts {} is not a static power within 0..{MAX_P0_W} W",
            b.p0_watts
        )));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000_000;

    fn series(watts: &[f64]) -> PowerSeries {
        PowerSeries {
            host: "h".into(),
            utc_ns: (0..watts.len() as i64)
                .map(|i| T0 + i * 1_000_000_000)
                .collect(),
            watts: watts.to_vec(),
            flags: vec![0; watts.len()],
            gaps_before_ns: vec![],
            meter_ids: vec!["PRO".into()],
            meter_index: vec![0; watts.len()],
            missing_watts: 0,
            ..Default::default()
        }
    }

    fn opts(range: Option<(i64, i64)>) -> BaselineOptions {
        BaselineOptions {
            range_utc_ns: range,
            max_spread_w: 1.0,
            min_seconds: 10.0,
            interval_ns: None,
        }
    }

    #[test]
    fn range_gives_mean_median_spread_and_drops_flagged() {
        let mut s = series(&[100.0, 100.5, 101.0, 150.0, 100.5, 100.0]);
        s.flags[3] = FLAG_AFTER_GAP;
        let b = find_baseline(&s, &opts(Some((T0, T0 + 5_000_000_000)))).unwrap();
        assert_eq!(b.sample_count, 5);
        assert_eq!(b.dropped_flagged, 1);
        assert!((b.p0_watts - 100.4).abs() < 1e-9);
        assert_eq!(b.median_watts, 100.5);
        assert_eq!(b.spread_w, 1.0);
        assert_eq!(b.meter_id, "PRO");
        assert_eq!(b.method, "range");
    }

    #[test]
    fn unstable_range_is_refused_with_where() {
        let s = series(&[100.0, 100.5, 102.0, 100.0]);
        let e = find_baseline(&s, &opts(Some((T0, T0 + 3_000_000_000))))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spread 2.0 W") && e.contains("max 102.0 W at"),
            "{e}"
        );
        let e = find_baseline(&s, &opts(Some((T0 + 10_000_000_000, T0 + 20_000_000_000))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no unflagged samples"), "{e}");
    }

    #[test]
    fn longest_stable_stretch_is_found_and_gaps_break_it() {
        // 0..20 noisy, 20..60 stable near 120 W, then a 3 s gap, then 60 s stable near 90 W.
        let mut w: Vec<f64> = (0..20).map(|i| 100.0 + (i % 2) as f64 * 5.0).collect();
        w.extend((0..40).map(|i| 120.0 + (i % 3) as f64 * 0.3));
        let mut s = series(&w);
        let t_end = *s.utc_ns.last().unwrap();
        for k in 0..60 {
            s.utc_ns.push(t_end + 3_000_000_000 + k * 1_000_000_000);
            s.watts.push(90.0 + (k % 2) as f64 * 0.9);
            s.flags.push(0);
            s.meter_index.push(0);
        }
        let b = find_baseline(&s, &opts(None)).unwrap();
        assert_eq!(b.method, "longest_stable");
        assert_eq!(b.sample_count, 60);
        assert!((b.p0_watts - 90.45).abs() < 1e-9, "{}", b.p0_watts);
        assert_eq!(b.start_utc_ns, t_end + 3_000_000_000);
        // Require more than either stretch: refused, naming the best one.
        let mut o = opts(None);
        o.min_seconds = 100.0;
        let e = find_baseline(&s, &o).unwrap_err().to_string();
        assert!(e.contains("longest stable stretch is 59.0 s"), "{e}");
    }

    #[test]
    fn baseline_file_round_trips_and_wrong_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = find_baseline(&series(&[100.0; 20]), &opts(None)).unwrap();
        let p = dir.path().join("b.json");
        write_baseline(&p, &b).unwrap();
        assert_eq!(read_baseline(&p).unwrap(), b);
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("\"baseline\"", "\"other\"");
        fs::write(&p, text).unwrap();
        let e = read_baseline(&p).unwrap_err().to_string();
        assert!(e.contains("'other'"), "{e}");
    }
}
