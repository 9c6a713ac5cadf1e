//! Migration energy (eqs 14 and 16): for every migration window, the integral of
//! (P_t - P_0) over [start, end] on the host's samples; for every migration, the sum of its
//! source and destination windows.
//!
//! # The integration rule
//!
//! Samples are stamped on the host (`utc_ns`). Two consecutive samples k, k+1 form a
//! *segment* unless the spacing exceeds [`GAP_FACTOR`] times the host's sampling interval or
//! the capture flagged sample k+1 as coming after a gap: such a segment is a *gap* and is
//! never bridged. Each window is clipped exactly at its start and end:
//!
//! - `trapezoid` (default): power is linear between the two samples of a segment; a segment
//!   cut by a window edge is cut at the interpolated power there. Exact for piecewise-linear
//!   power; with 1 s samples the error on a step change is at most half a sample's step.
//! - `rectangle`: the paper's sum of 1 s samples (eq 16). Each record holds over the segment
//!   that ends at its stamp (the meter reports the mean since its previous record); with
//!   records 1 s apart and a window spanning whole seconds this is exactly
//!   sum over samples of (P_t - P_0) x 1 s. Edges cut segments proportionally.
//!
//! Where both samples of a segment carry an energy counter (RAPL), the counter's increase
//! over the segment is its energy, whatever the rule: the segment's mean power is
//! (C[k+1] - C[k]) / (t[k+1] - t[k]) and a window edge cuts the counter linearly, so a
//! window's energy is C(end) - C(start) - P_0 x duration. A counter that went back (a new
//! connection, a restarted capture) ends the segment like a gap. Sources undo their
//! counter's wrap-around before it is stored.
//!
//! A window shorter than the source's native (averaging) interval, as the samples record
//! it, is flagged (`shorter_than_source_interval`): the source cannot resolve it.
//!
//! Coverage is the share of the window's length lying in segments (not in gaps, not before
//! the first or after the last sample). Uncovered time contributes no energy: a window's
//! `energy_j` is the integral over its covered part, and a window whose coverage is under the
//! minimum (default 0.95) is left out of the observations with the reason.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use datasets::energy::{EnergyRow, WindowQualityRow};
use datasets::samples::{
    read_power_series_into, sample_files_by_host, PowerSeries, FLAG_AFTER_GAP,
};
use datasets::windows::{Role, WindowRow};
use datasets::DatasetError;
use rayon::iter::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};

use super::baseline::format_utc_ns;
use crate::cancel::Cancel;

/// A spacing longer than this many sampling intervals is a gap, never bridged.
pub const GAP_FACTOR: f64 = 1.5;
/// Sampling interval assumed when a host has too few samples to estimate it (the meter's
/// shortest logging interval).
pub const DEFAULT_INTERVAL_NS: i64 = 1_000_000_000;

/// How power between samples is integrated (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// Linear between samples, clipped at window edges by interpolation.
    #[default]
    Trapezoid,
    /// Each record holds over the interval ending at its stamp (the paper's 1 s sum).
    Rectangle,
}

impl Rule {
    /// Name used on the command line and in file metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Trapezoid => "trapezoid",
            Rule::Rectangle => "rectangle",
        }
    }
}

/// Errors that stop an integration (per-window problems are reasons, not errors).
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    /// Reading a dataset failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A window names a host with no samples at all.
    #[error(transparent)]
    UnknownHost(Box<UnknownHost>),
    /// No static power was given for a host that has windows.
    #[error(
        "{windows}: row {row} (migration '{migration_id}'): no P_0 for host '{host}'; give \
         --p0 {host}=WATTS or a --baseline file for it"
    )]
    NoP0 {
        windows: PathBuf,
        row: usize,
        migration_id: String,
        host: String,
    },
    /// The windows file contradicts itself.
    #[error("{windows}: rows {first} and {second} (migration '{migration_id}'): {problem}")]
    Inconsistent {
        windows: PathBuf,
        first: usize,
        second: usize,
        migration_id: String,
        problem: String,
    },
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A window names a host that has no samples in the dataset.
#[derive(Debug, thiserror::Error)]
#[error(
    "{windows}: row {row} (migration '{migration_id}'): host '{host}' has no samples under \
     {samples} (hosts with samples: {known})"
)]
pub struct UnknownHost {
    /// The windows file.
    pub windows: PathBuf,
    /// 1-based row in it.
    pub row: usize,
    /// The window's migration.
    pub migration_id: String,
    /// The unknown host.
    pub host: String,
    /// The samples dataset.
    pub samples: PathBuf,
    /// Hosts that do have samples, comma separated.
    pub known: String,
}

/// Options of [`integrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrateOptions {
    /// Integration rule.
    pub rule: Rule,
    /// Windows covered less than this (0..1) are left out of the observations.
    pub min_coverage: f64,
    /// Sampling interval for every host; None = each host's median spacing.
    pub interval_ns: Option<i64>,
    /// Place each record at the middle of the interval it averages (its stamp minus half
    /// the interval) instead of at its arrival. A Watts up? record is the mean of the
    /// interval before it arrives, so arrival stamps see every change one interval late
    /// and a window loses about one interval of its extra power.
    pub midpoint: bool,
}

impl Default for IntegrateOptions {
    fn default() -> Self {
        IntegrateOptions {
            rule: Rule::Trapezoid,
            min_coverage: 0.95,
            interval_ns: None,
            midpoint: false,
        }
    }
}

/// Progress of [`integrate`], reported after each host.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Host just finished.
    pub host: String,
    /// Hosts finished so far.
    pub hosts_done: usize,
    /// Hosts in total.
    pub hosts_total: usize,
    /// Samples read for this host.
    pub samples: usize,
}

/// What was found about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSummary {
    /// Host name.
    pub host: String,
    /// Samples read (with a power value).
    pub samples: usize,
    /// Records without a power value, ignored.
    pub missing_watts: usize,
    /// Sampling interval used, ns.
    pub interval_ns: i64,
    /// Whether the interval was estimated from the samples (else given or defaulted).
    pub interval_estimated: bool,
    /// Static power used, W.
    pub p0_w: f64,
    /// Windows on this host.
    pub windows: usize,
    /// Windows that start before an earlier window on this host has ended.
    pub overlapping_windows: usize,
    /// Meter ids seen.
    pub meter_ids: Vec<String>,
}

/// Result of [`integrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// One row per migration with both windows usable, in windows-file order.
    pub observations: Vec<EnergyRow>,
    /// One row per window, in windows-file order, with quality and reason.
    pub windows: Vec<WindowQualityRow>,
    /// One entry per host that has windows.
    pub hosts: Vec<HostSummary>,
}

/// Energy and data quality of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Samples stamped within [start, end].
    pub sample_count: u64,
    /// Length of the window covered by segments, ns.
    pub covered_ns: i64,
    /// `covered_ns` / window length.
    pub coverage: f64,
    /// Longest uncovered stretch of the window, ns.
    pub largest_gap_ns: i64,
    /// Integral of (P_t - P_0) over the covered part, J.
    pub energy_j: f64,
}

/// One host's samples prepared for integration.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// Sample stamps, ns, non-decreasing.
    pub utc_ns: &'a [i64],
    /// Power, W.
    pub watts: &'a [f64],
    /// Sample flags; [`FLAG_AFTER_GAP`] marks a gap before the sample (see [`mark_gaps`]).
    pub flags: &'a [u32],
    /// Energy counter, J, one per sample, or empty when the source keeps none.
    pub energy_counter_j: &'a [Option<f64>],
    /// Longest spacing bridged as a segment, ns.
    pub max_step_ns: i64,
}

/// Most spacings used by [`estimate_interval_ns`]; longer series are sampled evenly.
const INTERVAL_SAMPLE: usize = 1 << 20;

/// Median spacing of positive steps between consecutive stamps (over at most about a
/// million evenly spread steps), or None with < 2 samples.
pub fn estimate_interval_ns(utc_ns: &[i64]) -> Option<i64> {
    let stride = utc_ns.len().div_ceil(INTERVAL_SAMPLE).max(1);
    let mut d: Vec<i64> = (1..utc_ns.len())
        .step_by(stride)
        .map(|i| utc_ns[i] - utc_ns[i - 1])
        .filter(|&x| x > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    Some(*d.select_nth_unstable(mid).1)
}

/// Set [`FLAG_AFTER_GAP`] on every sample that carries `gap_before_ns`, so that the flags
/// alone say where the capture saw a gap.
pub fn mark_gaps(s: &mut PowerSeries) {
    for &(i, _) in &s.gaps_before_ns {
        s.flags[i] |= FLAG_AFTER_GAP;
    }
}

/// First index at or after `from` where `pred` fails (`pred` must hold on a prefix of `t`).
fn gallop(t: &[i64], from: usize, pred: impl Fn(i64) -> bool) -> usize {
    let mut lo = from;
    let mut step = 1;
    while lo + step < t.len() && pred(t[lo + step]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(t.len());
    lo + t[lo..hi].partition_point(|&x| pred(x))
}

/// Integrate (P_t - P_0) over [start_utc_ns, end_utc_ns] with `rule` (module docs).
pub fn integrate_window(
    tr: &Trace<'_>,
    start_utc_ns: i64,
    end_utc_ns: i64,
    p0_w: f64,
    rule: Rule,
) -> WindowStats {
    let t = tr.utc_ns;
    let w = tr.watts;
    let width = end_utc_ns - start_utc_ns;
    let first_in = t.partition_point(|&x| x < start_utc_ns);
    // Window ends are near their starts: gallop forward instead of searching everything.
    let before_end = gallop(t, first_in, |x| x < end_utc_ns);
    let after_in = gallop(t, before_end, |x| x <= end_utc_ns);
    let mut covered_ns: i64 = 0;
    let mut energy_j = 0.0;
    let mut largest_gap_ns: i64 = 0;
    let mut covered_until = start_utc_ns;
    // Segment k = [t[k], t[k+1]]; those touching the window are k0..k1.
    let k0 = first_in.saturating_sub(1);
    let k1 = before_end.min(t.len().saturating_sub(1));
    for k in k0..k1 {
        let (ta, tb) = (t[k], t[k + 1]);
        let a = ta.max(start_utc_ns);
        let b = tb.min(end_utc_ns);
        if b <= a || tb - ta > tr.max_step_ns || tr.flags[k + 1] & FLAG_AFTER_GAP != 0 {
            continue;
        }
        let len = b - a;
        let len_s = len as f64 * 1e-9;
        let counted = match (tr.energy_counter_j.get(k), tr.energy_counter_j.get(k + 1)) {
            (Some(Some(c0)), Some(Some(c1))) => Some(c1 - c0),
            _ => None,
        };
        if counted.is_some_and(|d| d < 0.0) {
            // The counter went back: a new connection's counter, never bridged.
            continue;
        }
        let mean_w = match (counted, rule) {
            (Some(d), _) => d / ((tb - ta) as f64 * 1e-9),
            (None, rule) => match rule {
                // Whole segment inside the window: no interpolation needed.
                Rule::Trapezoid if a == ta && b == tb => 0.5 * (w[k] + w[k + 1]),
                Rule::Trapezoid => {
                    let span = (tb - ta) as f64;
                    let at = |x: i64| w[k] + (w[k + 1] - w[k]) * ((x - ta) as f64 / span);
                    0.5 * (at(a) + at(b))
                }
                Rule::Rectangle => w[k + 1],
            },
        };
        energy_j += (mean_w - p0_w) * len_s;
        covered_ns += len;
        largest_gap_ns = largest_gap_ns.max(a - covered_until);
        covered_until = b;
    }
    largest_gap_ns = largest_gap_ns.max(end_utc_ns - covered_until);
    WindowStats {
        sample_count: (after_in - first_in) as u64,
        covered_ns,
        coverage: covered_ns as f64 / width as f64,
        largest_gap_ns,
        energy_j,
    }
}

/// Integrate every window in `windows` (read from `windows_path`, named in errors) over the
/// samples under `samples_dir`, with `p0_w[host]` as static power. Hosts are read one at a
/// time (only the columns needed), so memory holds one host's samples at once.
pub fn integrate(
    samples_dir: &Path,
    windows_path: &Path,
    windows: &[WindowRow],
    p0_w: &BTreeMap<String, f64>,
    opts: &IntegrateOptions,
    cancel: &Cancel,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Integration, IntegrateError> {
    if !(0.0..=1.0).contains(&opts.min_coverage) {
        return Err(IntegrateError::Invalid(format!(
            "the minimum coverage must be a share within 0..1, got {}",
            opts.min_coverage
        )));
    }
    if opts.interval_ns.is_some_and(|i| i <= 0) {
        return Err(IntegrateError::Invalid(
            "the sampling interval must be positive".into(),
        ));
    }
    // Every source of P_0 (a baseline file, --p0, a campaign) meets one range here.
    if let Some((host, w)) = p0_w
        .iter()
        .find(|(_, w)| !(w.is_finite() && (0.0..=super::baseline::MAX_P0_W).contains(*w)))
    {
        return Err(IntegrateError::Invalid(format!(
            "P_0 of host '{host}' is {w} W: expected a static power within 0..{} W",
            super::baseline::MAX_P0_W
        )));
    }
    let migrations = pair_windows(windows_path, windows)?;
    let by_host_files = sample_files_by_host(samples_dir)?;
    // Windows per host, checked up front so that a typo fails before any heavy reading.
    let mut per_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in windows.iter().enumerate() {
        let err_ctx = || (windows_path.to_path_buf(), i + 1, w.migration_id.clone());
        if !by_host_files.contains_key(&w.host) {
            let (windows, row, migration_id) = err_ctx();
            return Err(IntegrateError::UnknownHost(Box::new(UnknownHost {
                windows,
                row,
                migration_id,
                host: w.host.clone(),
                samples: samples_dir.to_path_buf(),
                known: by_host_files.keys().cloned().collect::<Vec<_>>().join(", "),
            })));
        }
        if !p0_w.contains_key(&w.host) {
            let (windows, row, migration_id) = err_ctx();
            return Err(IntegrateError::NoP0 {
                windows,
                row,
                migration_id,
                host: w.host.clone(),
            });
        }
        per_host.entry(w.host.as_str()).or_default().push(i);
    }
    // Per window: its stats, the sampling interval used and the source's native interval.
    let mut stats: Vec<Option<(WindowStats, i64, Option<i64>)>> = vec![None; windows.len()];
    let mut spans: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut hosts = Vec::with_capacity(per_host.len());
    let hosts_total = per_host.len();
    // One buffer for all hosts: the largest host's samples are allocated once.
    let mut series = PowerSeries::default();
    for (done, (host, idx)) in per_host.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(IntegrateError::Cancelled);
        }
        read_power_series_into(&mut series, host, &by_host_files[*host], None)?;
        mark_gaps(&mut series);
        let estimated = estimate_interval_ns(&series.utc_ns);
        let interval_ns = opts
            .interval_ns
            .or(estimated)
            .unwrap_or(DEFAULT_INTERVAL_NS);
        if opts.midpoint {
            for t in &mut series.utc_ns {
                *t -= interval_ns / 2;
            }
        }
        let tr = Trace {
            utc_ns: &series.utc_ns,
            watts: &series.watts,
            flags: &series.flags,
            energy_counter_j: &series.energy_counter_j,
            max_step_ns: (interval_ns as f64 * GAP_FACTOR) as i64,
        };
        let p0 = p0_w[*host];
        // In time order, successive searches touch the same cache lines.
        let mut order = idx.clone();
        order.sort_by_key(|&i| windows[i].start_utc_ns);
        for (&i, st) in order
            .iter()
            .zip(integrate_many(&tr, windows, &order, p0, opts.rule))
        {
            stats[i] = Some((st, interval_ns, series.source_interval_ns));
        }
        if let (Some(&a), Some(&b)) = (series.utc_ns.first(), series.utc_ns.last()) {
            spans.insert(host, (a, b));
        }
        hosts.push(HostSummary {
            host: host.to_string(),
            samples: series.len(),
            missing_watts: series.missing_watts,
            interval_ns,
            interval_estimated: opts.interval_ns.is_none() && estimated.is_some(),
            p0_w: p0,
            windows: idx.len(),
            overlapping_windows: count_overlaps(windows, idx),
            meter_ids: series.meter_ids.clone(),
        });
        progress(&Progress {
            host: host.to_string(),
            hosts_done: done + 1,
            hosts_total,
            samples: series.len(),
        });
    }
    let (observations, quality) = assemble(windows, &migrations, &stats, &spans, p0_w, opts);
    Ok(Integration {
        observations,
        windows: quality,
        hosts,
    })
}

/// [`integrate_window`] for `windows[idx]`, on rayon's pool.
fn integrate_many(
    tr: &Trace<'_>,
    windows: &[WindowRow],
    idx: &[usize],
    p0_w: f64,
    rule: Rule,
) -> Vec<WindowStats> {
    let one = |i: &usize| {
        let w = &windows[*i];
        integrate_window(tr, w.start_utc_ns, w.end_utc_ns, p0_w, rule)
    };
    // A few windows are not worth waking the pool for.
    if idx.len() < 4096 {
        return idx.iter().map(one).collect();
    }
    idx.par_iter().with_min_len(1024).map(one).collect()
}

/// A migration's window row indexes, in windows-file order of first appearance.
struct Migration {
    source: Option<usize>,
    destination: Option<usize>,
}

fn pair_windows(path: &Path, windows: &[WindowRow]) -> Result<Vec<Migration>, IntegrateError> {
    let mut order: Vec<Migration> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, w) in windows.iter().enumerate() {
        let k = *by_id.entry(w.migration_id.as_str()).or_insert_with(|| {
            order.push(Migration {
                source: None,
                destination: None,
            });
            order.len() - 1
        });
        let m = &mut order[k];
        let slot = match w.role {
            Role::Source => &mut m.source,
            Role::Destination => &mut m.destination,
        };
        let bad = |first: usize, problem: String| IntegrateError::Inconsistent {
            windows: path.to_path_buf(),
            first: first + 1,
            second: i + 1,
            migration_id: w.migration_id.clone(),
            problem,
        };
        if let Some(prev) = *slot {
            return Err(bad(prev, format!("two {} windows", w.role)));
        }
        *slot = Some(i);
        if let (Some(s), Some(d)) = (m.source, m.destination) {
            let (a, b) = (&windows[s], &windows[d]);
            let first = s.min(d);
            if a.v_mig_bytes != b.v_mig_bytes {
                return Err(bad(
                    first,
                    format!(
                        "v_mig_bytes differs between source ({}) and destination ({})",
                        a.v_mig_bytes, b.v_mig_bytes
                    ),
                ));
            }
            let conflict = |x: &Option<String>, y: &Option<String>| matches!((x, y), (Some(p), Some(q)) if p != q);
            if conflict(&a.workload, &b.workload) || conflict(&a.vm, &b.vm) {
                return Err(bad(
                    first,
                    "workload or vm differs between source and destination".into(),
                ));
            }
            if matches!((a.vm_mem_bytes, b.vm_mem_bytes), (Some(p), Some(q)) if p != q) {
                return Err(bad(
                    first,
                    "vm_mem_bytes differs between source and destination".into(),
                ));
            }
        }
    }
    Ok(order)
}

fn count_overlaps(windows: &[WindowRow], idx: &[usize]) -> usize {
    let mut spans: Vec<(i64, i64)> = idx
        .iter()
        .map(|&i| (windows[i].start_utc_ns, windows[i].end_utc_ns))
        .collect();
    spans.sort_unstable();
    let mut max_end = i64::MIN;
    let mut n = 0;
    for (s, e) in spans {
        if s < max_end {
            n += 1;
        }
        max_end = max_end.max(e);
    }
    n
}

/// Why a window cannot be used on its own, or None.
fn window_problem(
    st: &WindowStats,
    host: &str,
    span: Option<&(i64, i64)>,
    min_coverage: f64,
) -> Option<String> {
    if st.covered_ns == 0 {
        let span = span.map_or(String::new(), |(a, b)| {
            format!(
                " (host '{host}' has samples from {} to {})",
                format_utc_ns(*a),
                format_utc_ns(*b)
            )
        });
        return Some(format!(
            "no samples cover the window: {} samples inside, largest gap {:.1} s{span}",
            st.sample_count,
            st.largest_gap_ns as f64 / 1e9
        ));
    }
    if st.coverage < min_coverage {
        return Some(format!(
            "coverage {:.3} below the minimum {min_coverage} (largest gap {:.1} s)",
            st.coverage,
            st.largest_gap_ns as f64 / 1e9
        ));
    }
    None
}

fn assemble(
    windows: &[WindowRow],
    migrations: &[Migration],
    stats: &[Option<(WindowStats, i64, Option<i64>)>],
    spans: &HashMap<&str, (i64, i64)>,
    p0_w: &BTreeMap<String, f64>,
    opts: &IntegrateOptions,
) -> (Vec<EnergyRow>, Vec<WindowQualityRow>) {
    let problems: Vec<Option<String>> = windows
        .iter()
        .zip(stats)
        .map(|(w, st)| {
            let (st, _, _) = st.as_ref().expect("every window integrated");
            window_problem(st, &w.host, spans.get(w.host.as_str()), opts.min_coverage)
        })
        .collect();
    let mut reasons: Vec<Option<String>> = problems.clone();
    let mut observations = Vec::new();
    for m in migrations {
        match (m.source, m.destination) {
            (Some(s), Some(d)) => match (&problems[s], &problems[d]) {
                (None, None) => observations.push(energy_row(windows, stats, p0_w, s, d)),
                (ps, pd) => {
                    if ps.is_none() {
                        reasons[s] = Some("destination window excluded".into());
                    }
                    if pd.is_none() {
                        reasons[d] = Some("source window excluded".into());
                    }
                }
            },
            (Some(i), None) | (None, Some(i)) => {
                let missing = match windows[i].role {
                    Role::Source => "destination",
                    Role::Destination => "source",
                };
                let own = problems[i]
                    .as_deref()
                    .map_or(String::new(), |p| format!("; {p}"));
                reasons[i] = Some(format!("migration has no {missing} window{own}"));
            }
            (None, None) => unreachable!("a migration has at least one window"),
        }
    }
    let quality = windows
        .iter()
        .zip(stats)
        .zip(reasons)
        .map(|((w, st), reason)| {
            let (st, interval_ns, source_ns) = st.as_ref().expect("every window integrated");
            WindowQualityRow {
                migration_id: w.migration_id.clone(),
                host: w.host.clone(),
                role: w.role.as_str().into(),
                start_utc_ns: w.start_utc_ns,
                end_utc_ns: w.end_utc_ns,
                sample_count: st.sample_count,
                coverage: st.coverage,
                largest_gap_s: st.largest_gap_ns as f64 / 1e9,
                interval_s: *interval_ns as f64 / 1e9,
                p0_w: p0_w[&w.host],
                energy_j: (st.covered_ns > 0).then_some(st.energy_j),
                included: reason.is_none(),
                reason,
                source_interval_s: source_ns.map(|i| i as f64 / 1e9),
                shorter_than_source_interval: source_ns
                    .is_some_and(|i| w.end_utc_ns - w.start_utc_ns < i),
            }
        })
        .collect();
    (observations, quality)
}

fn energy_row(
    windows: &[WindowRow],
    stats: &[Option<(WindowStats, i64, Option<i64>)>],
    p0_w: &BTreeMap<String, f64>,
    s: usize,
    d: usize,
) -> EnergyRow {
    let (src, dst) = (&windows[s], &windows[d]);
    let es = stats[s].expect("integrated").0;
    let ed = stats[d].expect("integrated").0;
    EnergyRow {
        migration_id: src.migration_id.clone(),
        v_mig_bytes: src.v_mig_bytes,
        e_source_j: es.energy_j,
        e_destination_j: ed.energy_j,
        e_mig_j: es.energy_j + ed.energy_j,
        coverage: es.coverage.min(ed.coverage),
        p0_source_w: p0_w[&src.host],
        p0_destination_w: p0_w[&dst.host],
        source_host: src.host.clone(),
        destination_host: dst.host.clone(),
        start_utc_ns: src.start_utc_ns.min(dst.start_utc_ns),
        end_utc_ns: src.end_utc_ns.max(dst.end_utc_ns),
        workload: src.workload.clone().or_else(|| dst.workload.clone()),
        vm: src.vm.clone().or_else(|| dst.vm.clone()),
        vm_mem_bytes: src.vm_mem_bytes.or(dst.vm_mem_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::samples::{partition_dir, write_samples_file, SampleRow, FIELD_COUNT};
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    #[derive(Debug)]
    struct Owned {
        t: Vec<i64>,
        w: Vec<f64>,
        gap: Vec<u32>,
    }

    impl Owned {
        fn new(t: Vec<i64>, w: Vec<f64>) -> Self {
            let gap = vec![0; t.len()];
            Owned { t, w, gap }
        }
        fn trace(&self) -> Trace<'_> {
            Trace {
                utc_ns: &self.t,
                watts: &self.w,
                flags: &self.gap,
                energy_counter_j: &[],
                max_step_ns: (1.5 * S as f64) as i64,
            }
        }
    }

    /// Samples at whole seconds 0..n with power f(t).
    fn sampled(n: i64, f: impl Fn(f64) -> f64) -> Owned {
        let t: Vec<i64> = (0..n).map(|i| i * S).collect();
        let w = t.iter().map(|&x| f(x as f64 / 1e9)).collect();
        Owned::new(t, w)
    }

    fn ns(s: f64) -> i64 {
        (s * 1e9).round() as i64
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn constant_power_between_samples_is_exact_under_both_rules() {
        let o = sampled(20, |_| 150.0);
        for rule in [Rule::Trapezoid, Rule::Rectangle] {
            let st = integrate_window(&o.trace(), ns(2.3), ns(7.8), 100.0, rule);
            assert!(close(st.energy_j, 50.0 * 5.5), "{rule:?} {}", st.energy_j);
            assert_eq!(st.coverage, 1.0);
            assert_eq!(st.largest_gap_ns, 0);
            assert_eq!(st.sample_count, 5); // 3, 4, 5, 6, 7
        }
    }

    #[test]
    fn ramp_is_exact_with_trapezoid_at_fractional_edges() {
        // P(t) = 100 + 2 t: integral of P - 80 over [a, b] = 20 (b - a) + (b^2 - a^2).
        let o = sampled(60, |t| 100.0 + 2.0 * t);
        let (a, b) = (3.25, 41.7);
        let st = integrate_window(&o.trace(), ns(a), ns(b), 80.0, Rule::Trapezoid);
        let exact = 20.0 * (b - a) + (b * b - a * a);
        assert!(close(st.energy_j, exact), "{} vs {exact}", st.energy_j);
        // A window inside one segment, no sample in it: still exact, fully covered.
        let st = integrate_window(&o.trace(), ns(10.2), ns(10.7), 80.0, Rule::Trapezoid);
        let exact = 20.0 * 0.5 + (10.7f64.powi(2) - 10.2f64.powi(2));
        assert!(close(st.energy_j, exact) && st.sample_count == 0 && st.coverage == 1.0);
    }

    #[test]
    fn step_gives_the_known_integrals_of_both_rules() {
        // 100 W for samples 0..=9, 200 W from sample 10 on.
        let o = sampled(30, |t| if t < 10.0 { 100.0 } else { 200.0 });
        let st = integrate_window(&o.trace(), ns(5.0), ns(15.0), 0.0, Rule::Trapezoid);
        // Linear between samples 9 and 10: 4 s at 100, 1 s at 150, 5 s at 200.
        assert!(
            close(st.energy_j, 400.0 + 150.0 + 1000.0),
            "{}",
            st.energy_j
        );
        let st = integrate_window(&o.trace(), ns(5.0), ns(15.0), 0.0, Rule::Rectangle);
        // Each record holds over the second before it: samples 6..=9 at 100, 10..=15 at 200.
        assert!(
            close(st.energy_j, 4.0 * 100.0 + 6.0 * 200.0),
            "{}",
            st.energy_j
        );
        // The paper's sum: whole seconds, sum of (P_t - P_0) over the samples 1..=T.
        let st = integrate_window(&o.trace(), ns(4.0), ns(14.0), 90.0, Rule::Rectangle);
        let paper: f64 = (5..=14).map(|i| o.w[i] - 90.0).sum();
        assert!(close(st.energy_j, paper), "{} vs {paper}", st.energy_j);
    }

    #[test]
    fn gaps_are_not_bridged_and_are_reported() {
        // Samples 0..=10 and 15..=30: a 5 s gap, above 1.5 x 1 s.
        let t: Vec<i64> = (0..=10).chain(15..=30).map(|i| i * S).collect();
        let o = Owned::new(t.clone(), vec![120.0; t.len()]);
        let st = integrate_window(&o.trace(), ns(5.0), ns(20.0), 100.0, Rule::Trapezoid);
        assert!(close(st.coverage, 10.0 / 15.0));
        assert_eq!(st.largest_gap_ns, 5 * S);
        assert!(close(st.energy_j, 20.0 * 10.0), "{}", st.energy_j);
        // A capture-reported gap breaks a segment even when the spacing looks normal.
        let mut o = sampled(20, |_| 120.0);
        o.gap[12] = FLAG_AFTER_GAP;
        let st = integrate_window(&o.trace(), ns(10.0), ns(15.0), 100.0, Rule::Trapezoid);
        assert!(close(st.coverage, 0.8) && st.largest_gap_ns == S);
        // Window running past the last sample: uncovered tail.
        let st = integrate_window(&o.trace(), ns(17.0), ns(23.0), 100.0, Rule::Trapezoid);
        assert!(close(st.coverage, 2.0 / 6.0) && st.largest_gap_ns == 4 * S);
    }

    #[test]
    fn window_without_samples_has_zero_coverage() {
        let o = sampled(10, |_| 120.0);
        let st = integrate_window(&o.trace(), ns(100.0), ns(110.0), 100.0, Rule::Trapezoid);
        assert_eq!((st.sample_count, st.covered_ns, st.coverage), (0, 0, 0.0));
        assert_eq!(st.largest_gap_ns, 10 * S);
        let empty = Owned::new(vec![], vec![]);
        let st = integrate_window(&empty.trace(), 0, S, 100.0, Rule::Rectangle);
        assert_eq!(st.coverage, 0.0);
    }

    // ---- whole pipeline over real Parquet files ----

    const T0: i64 = 1_764_000_000 * S;

    fn write_host(dir: &Path, host: &str, secs: impl Iterator<Item = i64>, f: impl Fn(i64) -> f64) {
        let rows: Vec<SampleRow> = secs
            .enumerate()
            .map(|(k, i)| {
                let mut fields = [None; FIELD_COUNT];
                fields[0] = Some(f(i));
                SampleRow {
                    host: host.into(),
                    meter_id: format!("PRO-{host}"),
                    utc_ns: T0 + i * S,
                    mono_ns: i * S,
                    seq: k as u64,
                    connection: 1,
                    gap_before_ns: None,
                    flags: 0,
                    fields,
                    ..Default::default()
                }
            })
            .collect();
        let part = partition_dir(dir, host, "2025-11-24");
        write_samples_file(&part.join("0.parquet"), host, &rows).unwrap();
    }

    fn win(id: &str, host: &str, role: Role, a: f64, b: f64) -> WindowRow {
        WindowRow {
            migration_id: id.into(),
            host: host.into(),
            role,
            start_utc_ns: T0 + ns(a),
            end_utc_ns: T0 + ns(b),
            v_mig_bytes: 1 << 30,
            workload: Some("h2".into()),
            vm: Some("vm1".into()),
            vm_mem_bytes: None,
        }
    }

    fn run(
        dir: &Path,
        windows: &[WindowRow],
        p0: &[(&str, f64)],
        opts: &IntegrateOptions,
    ) -> Result<Integration, IntegrateError> {
        let p0: BTreeMap<String, f64> = p0.iter().map(|(h, w)| (h.to_string(), *w)).collect();
        integrate(
            dir,
            Path::new("w.csv"),
            windows,
            &p0,
            opts,
            &Cancel::new(),
            &mut |_| {},
        )
    }

    #[test]
    fn several_hosts_overlapping_windows_and_eq14_sums() {
        let dir = tempfile::tempdir().unwrap();
        // a: 100 W idle with a 50 W burst over seconds 10..=20; b: ramp; c: constant 80 W.
        write_host(dir.path(), "a", 0..100, |i| {
            if (10..=20).contains(&i) {
                150.0
            } else {
                100.0
            }
        });
        write_host(dir.path(), "b", 0..100, |i| 200.0 + i as f64);
        write_host(dir.path(), "c", 0..100, |_| 80.0);
        let windows = vec![
            win("m1", "a", Role::Source, 10.0, 20.0),
            win("m1", "b", Role::Destination, 10.5, 20.5),
            // m2 overlaps m1 on host a and runs on c.
            win("m2", "a", Role::Source, 15.0, 25.0),
            win("m2", "c", Role::Destination, 15.0, 25.0),
        ];
        let p0 = [("a", 100.0), ("b", 200.0), ("c", 79.5)];
        let r = run(dir.path(), &windows, &p0, &IntegrateOptions::default()).unwrap();
        assert_eq!(r.observations.len(), 2);
        let m1 = &r.observations[0];
        assert!(close(m1.e_source_j, 500.0), "{}", m1.e_source_j);
        // b: integral of t over [10.5, 20.5] = (20.5^2 - 10.5^2) / 2.
        assert!(close(m1.e_destination_j, 155.0), "{}", m1.e_destination_j);
        assert!(close(m1.e_mig_j, m1.e_source_j + m1.e_destination_j));
        assert_eq!((m1.p0_source_w, m1.p0_destination_w), (100.0, 200.0));
        assert_eq!(
            (m1.source_host.as_str(), m1.destination_host.as_str()),
            ("a", "b")
        );
        let m2 = &r.observations[1];
        // a over [15, 25]: 5 s at 50, then 20..21 ramps 50 -> 0 (25 J), then 0.
        assert!(close(m2.e_source_j, 250.0 + 25.0), "{}", m2.e_source_j);
        assert!(close(m2.e_destination_j, 5.0), "{}", m2.e_destination_j);
        let a = r.hosts.iter().find(|h| h.host == "a").unwrap();
        assert_eq!((a.windows, a.overlapping_windows, a.interval_ns), (2, 1, S));
        assert_eq!(a.meter_ids, vec!["PRO-a".to_string()]);
        assert!(r.windows.iter().all(|w| w.included && w.reason.is_none()));
    }

    #[test]
    fn energy_counters_are_integrated_by_their_difference_not_the_power() {
        // Power readings say 1000 W throughout; the counter says otherwise, and wins.
        let t: Vec<i64> = (0..6).map(|i| i * S).collect();
        let w = vec![1000.0; 6];
        let c = [0.0, 100.0, 250.0, 260.0, 400.0, 3.0].map(Some).to_vec();
        let gap = vec![0; 6];
        let tr = Trace {
            utc_ns: &t,
            watts: &w,
            flags: &gap,
            energy_counter_j: &c,
            max_step_ns: (1.5 * S as f64) as i64,
        };
        for rule in [Rule::Trapezoid, Rule::Rectangle] {
            // C(0.5) = 50, C(3.5) = 330: 280 J - 10 W x 3 s.
            let st = integrate_window(&tr, ns(0.5), ns(3.5), 10.0, rule);
            assert!(close(st.energy_j, 250.0), "{rule:?}: {}", st.energy_j);
            assert_eq!(st.coverage, 1.0);
        }
        // The counter went back between 4 and 5 s (a new connection): never bridged.
        let st = integrate_window(&tr, ns(3.0), ns(5.0), 0.0, Rule::Trapezoid);
        assert!(close(st.energy_j, 140.0), "{}", st.energy_j);
        assert!(close(st.coverage, 0.5), "{}", st.coverage);
    }

    #[test]
    fn counters_and_source_intervals_are_read_from_samples_files() {
        let dir = tempfile::tempdir().unwrap();
        // A RAPL-like host: 2 s polling, counter +300 J per sample (150 W), power field 0.
        let rows: Vec<SampleRow> = (0..30)
            .map(|k| {
                let mut fields = [None; FIELD_COUNT];
                fields[0] = Some(0.0);
                SampleRow {
                    host: "r".into(),
                    meter_id: "rapl-package-0".into(),
                    utc_ns: T0 + 2 * k * S,
                    mono_ns: 2 * k * S,
                    seq: k as u64,
                    connection: 1,
                    fields,
                    source_kind: Some("rapl".into()),
                    source_interval_ns: Some(2 * S),
                    energy_counter_j: Some(1e6 + 300.0 * k as f64),
                    ..Default::default()
                }
            })
            .collect();
        let part = partition_dir(dir.path(), "r", "2025-11-24");
        write_samples_file(&part.join("0.parquet"), "r", &rows).unwrap();
        write_host(dir.path(), "w", 0..100, |_| 100.0);
        let windows = vec![
            win("m1", "r", Role::Source, 10.0, 20.0),
            win("m1", "w", Role::Destination, 10.0, 20.0),
            win("m2", "r", Role::Source, 30.0, 31.0),
            win("m2", "w", Role::Destination, 30.0, 31.0),
        ];
        let r = run(
            dir.path(),
            &windows,
            &[("r", 100.0), ("w", 90.0)],
            &IntegrateOptions::default(),
        )
        .unwrap();
        let m1 = &r.observations[0];
        assert!(close(m1.e_source_j, 500.0), "{}", m1.e_source_j);
        assert!(close(m1.e_destination_j, 100.0), "{}", m1.e_destination_j);
        let q = |id: &str, host: &str| {
            r.windows
                .iter()
                .find(|w| w.migration_id == id && w.host == host)
                .unwrap()
        };
        assert_eq!(q("m1", "r").source_interval_s, Some(2.0));
        assert!(!q("m1", "r").shorter_than_source_interval);
        // 1 s on a source that averages over 2 s: flagged, still integrated.
        assert!(q("m2", "r").shorter_than_source_interval);
        assert!(q("m2", "r").included);
        assert!(close(q("m2", "r").energy_j.unwrap(), 50.0));
        // Samples 1.0 (no recorded interval): nothing to flag against.
        assert_eq!(q("m2", "w").source_interval_s, None);
        assert!(!q("m2", "w").shorter_than_source_interval);
    }

    #[test]
    fn low_coverage_and_empty_windows_are_excluded_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        // a has a gap from 30 to 40 s; b is complete.
        write_host(dir.path(), "a", (0..=30).chain(40..100), |_| 110.0);
        write_host(dir.path(), "b", 0..100, |_| 110.0);
        let windows = vec![
            win("gap", "a", Role::Source, 20.0, 50.0),
            win("gap", "b", Role::Destination, 20.0, 50.0),
            win("none", "a", Role::Source, 500.0, 510.0),
            win("none", "b", Role::Destination, 50.0, 60.0),
            win("lonely", "b", Role::Source, 1.0, 2.0),
        ];
        let p0 = [("a", 100.0), ("b", 100.0)];
        let r = run(dir.path(), &windows, &p0, &IntegrateOptions::default()).unwrap();
        assert!(r.observations.is_empty());
        let reason = |i: usize| r.windows[i].reason.clone().unwrap_or_default();
        assert!(
            reason(0).starts_with("coverage 0.667 below the minimum 0.95"),
            "{}",
            reason(0)
        );
        assert!(reason(0).contains("largest gap 10.0 s"), "{}", reason(0));
        assert_eq!(reason(1), "source window excluded");
        assert!(
            reason(2).starts_with("no samples cover the window"),
            "{}",
            reason(2)
        );
        assert!(
            reason(2).contains("host 'a' has samples from"),
            "{}",
            reason(2)
        );
        assert_eq!(r.windows[2].energy_j, None);
        assert!(reason(4).contains("no destination window"), "{}", reason(4));
        // Lower the threshold: the gapped migration is kept, energy over covered time only.
        let opts = IntegrateOptions {
            min_coverage: 0.6,
            ..Default::default()
        };
        let r = run(dir.path(), &windows, &p0, &opts).unwrap();
        assert_eq!(r.observations.len(), 1);
        let o = &r.observations[0];
        assert!(close(o.coverage, 2.0 / 3.0));
        assert!(close(o.e_source_j, 10.0 * 20.0) && close(o.e_destination_j, 10.0 * 30.0));
    }

    #[test]
    fn unknown_host_missing_p0_and_contradictions_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_host(dir.path(), "a", 0..10, |_| 100.0);
        let w = vec![win("m", "zz", Role::Source, 1.0, 2.0)];
        let e = run(dir.path(), &w, &[("a", 1.0)], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 1 (migration 'm'): host 'zz' has no samples")
                && e.contains("hosts with samples: a"),
            "{e}"
        );
        let w = vec![win("m", "a", Role::Source, 1.0, 2.0)];
        let e = run(dir.path(), &w, &[], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no P_0 for host 'a'"), "{e}");
        let w = vec![
            win("m", "a", Role::Source, 1.0, 2.0),
            win("m", "a", Role::Source, 3.0, 4.0),
        ];
        let e = run(dir.path(), &w, &[("a", 1.0)], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rows 1 and 2 (migration 'm'): two source windows"),
            "{e}"
        );
        let mut d = win("m", "a", Role::Destination, 1.0, 2.0);
        d.v_mig_bytes = 5;
        let w = vec![win("m", "a", Role::Source, 1.0, 2.0), d];
        let e = run(dir.path(), &w, &[("a", 1.0)], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("v_mig_bytes differs"), "{e}");
    }

    #[test]
    fn interval_is_the_median_spacing() {
        assert_eq!(estimate_interval_ns(&[0, 10, 20, 21, 31, 100]), Some(10));
        assert_eq!(estimate_interval_ns(&[5]), None);
    }

    // ---- property: agreement with an independent dense reference ----

    /// Midpoint sum on a 1 ms grid: exact for piecewise-linear and piecewise-constant power
    /// when every stamp and edge is a whole millisecond (no cell straddles a sample).
    fn reference(o: &Owned, a: i64, b: i64, p0: f64, rule: Rule) -> (f64, f64) {
        const MS: i64 = 1_000_000;
        let (mut e, mut cov) = (0.0, 0i64);
        let mut k = 0;
        let mut x = a;
        while x < b {
            let mid = x + MS / 2;
            while k + 1 < o.t.len() && o.t[k + 1] < mid {
                k += 1;
            }
            if k + 1 < o.t.len() && o.t[k] <= mid && mid < o.t[k + 1] {
                let (ta, tb) = (o.t[k], o.t[k + 1]);
                if tb - ta <= 1_500_000_000 && o.gap[k + 1] == 0 {
                    let p = match rule {
                        Rule::Trapezoid => {
                            o.w[k] + (o.w[k + 1] - o.w[k]) * (mid - ta) as f64 / (tb - ta) as f64
                        }
                        Rule::Rectangle => o.w[k + 1],
                    };
                    e += (p - p0) * 1e-3;
                    cov += MS;
                }
            }
            x += MS;
        }
        (e, cov as f64 / (b - a) as f64)
    }

    fn trace_strategy() -> impl Strategy<Value = Owned> {
        // Stamps 1 s apart with up to +-30 ms jitter, occasional lost records (gaps) and
        // capture-reported gaps; power in 0.1 W steps.
        prop::collection::vec((0i64..=60, 0u32..20, 500u32..3000, any::<bool>()), 2..80).prop_map(
            |v| {
                let mut t = Vec::new();
                let mut w = Vec::new();
                let mut gap = Vec::new();
                let mut now = 0i64;
                for (jitter, skip, dw, flag) in v {
                    now += if skip == 0 { 3_000 } else { 1_000 };
                    t.push((now + jitter - 30) * 1_000_000);
                    w.push(f64::from(dw) / 10.0);
                    gap.push(u32::from(flag && skip == 1));
                }
                Owned { t, w, gap }
            },
        )
    }

    proptest! {
        #[test]
        fn matches_dense_reference_and_is_additive(
            o in trace_strategy(),
            a_ms in -2_000i64..90_000,
            len_ms in 1i64..40_000,
            cut in 0.0f64..1.0,
            p0 in 0.0f64..200.0,
            trapezoid in any::<bool>(),
        ) {
            let rule = if trapezoid { Rule::Trapezoid } else { Rule::Rectangle };
            let (a, b) = (a_ms * 1_000_000, (a_ms + len_ms) * 1_000_000);
            let st = integrate_window(&o.trace(), a, b, p0, rule);
            let (e_ref, cov_ref) = reference(&o, a, b, p0, rule);
            let tol = 1e-6 * (1.0 + e_ref.abs());
            prop_assert!((st.energy_j - e_ref).abs() <= tol, "{} vs {}", st.energy_j, e_ref);
            prop_assert!((st.coverage - cov_ref).abs() <= 1e-9);
            prop_assert!((0.0..=1.0).contains(&st.coverage));
            prop_assert!(st.largest_gap_ns >= 0 && st.largest_gap_ns <= b - a);
            prop_assert!(st.covered_ns + st.largest_gap_ns <= b - a);
            // Splitting the window anywhere splits energy and covered time exactly.
            let m = a + ((b - a) as f64 * cut) as i64;
            if m > a && m < b {
                let l = integrate_window(&o.trace(), a, m, p0, rule);
                let r = integrate_window(&o.trace(), m, b, p0, rule);
                prop_assert!((l.energy_j + r.energy_j - st.energy_j).abs() <= tol);
                prop_assert_eq!(l.covered_ns + r.covered_ns, st.covered_ns);
            }
            // P_0 enters linearly: E(p0) = E(0) - p0 x covered seconds.
            let zero = integrate_window(&o.trace(), a, b, 0.0, rule);
            let shifted = zero.energy_j - p0 * st.covered_ns as f64 * 1e-9;
            prop_assert!((shifted - st.energy_j).abs() <= tol);
        }
    }
}
