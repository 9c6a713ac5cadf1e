//! `migwatt meter baseline` (static power P_0) and `migwatt integrate` (migration energy,
//! eqs 14 and 16).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use datasets::energy::{stage_energy, stage_window_quality, Format, KEY_MIN_COVERAGE, KEY_RULE};
use datasets::windows::read_windows;
use meter::energy::baseline::{
    baseline_from_dir, read_baseline, write_baseline, BaselineError, BaselineOption,
    BaselineOptions,
};
use meter::energy::integrate::{integrate as run_integration, IntegrateOptions, Rule};

/// Arguments of `migwatt meter baseline`.
#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Samples dataset folder (as written by `meter capture --out-dir`)
    #[arg(long, value_name = "DIR")]
    samples_dir: PathBuf,
    #[arg(long = "samples", hide = true, value_parser = super::Renamed("--samples-dir DIR"))]
    _samples: Option<String>,
    /// Host whose static power to find
    #[arg(long, value_name = "NAME")]
    host: String,
    /// Start of the range to use (RFC 3339 or Unix seconds); without --from/--to the longest
    /// stable stretch is searched
    #[arg(long, value_name = "T", value_parser = super::quantity::utc, requires = "to")]
    from: Option<super::quantity::Utc>,
    /// End of the range to use (RFC 3339 or Unix seconds)
    #[arg(long, value_name = "T", value_parser = super::quantity::utc, requires = "from")]
    to: Option<super::quantity::Utc>,
    /// Largest accepted spread (max - min) of the readings, W
    #[arg(long, value_name = "W", default_value_t = 1.0)]
    max_spread_w: f64,
    /// Shortest stable stretch accepted when searching, s (first to last sample)
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    min_seconds: f64,
    /// Sampling interval, s (default: the median spacing of the samples); a spacing above
    /// 1.5 x this breaks a stretch
    #[arg(long, value_name = "S")]
    interval_s: Option<f64>,
    /// Also write the result (JSON) to this file, atomically
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Integration rule on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RuleArg {
    /// Linear between samples, clipped exactly at window edges (default)
    Trapezoid,
    /// Each 1 s record holds over the second before it: the paper's sum (eq 16)
    Rectangle,
}

/// Type of the files written, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Csv,
    Jsonl,
}

/// Arguments of `migwatt integrate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("p0_source").required(true).multiple(true).args(["baseline", "p0"])))]
pub struct IntegrateArgs {
    /// Samples dataset folder (as written by `meter capture --out-dir`)
    #[arg(long, value_name = "DIR")]
    samples_dir: PathBuf,
    #[arg(long = "samples", hide = true, value_parser = super::Renamed("--samples-dir DIR"))]
    _samples: Option<String>,
    /// Migration-windows file (Parquet, or CSV by extension)
    #[arg(long, value_name = "FILE")]
    windows: PathBuf,
    /// Baseline files written by `meter baseline --out` (one per host)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    baseline: Vec<PathBuf>,
    /// Static power given directly, e.g. `--p0 src=101.3 dst=99.8`
    #[arg(long, value_name = "HOST=W", num_args = 1.., value_parser = parse_p0)]
    p0: Vec<(String, f64)>,
    /// Energy-observations output file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Integration rule: trapezoid (linear between samples) or rectangle (the paper's 1 s sum)
    #[arg(long, value_enum, default_value = "trapezoid")]
    rule: RuleArg,
    /// Windows covered by samples less than this share (0..1) are left out, with the reason
    #[arg(long, value_name = "SHARE", default_value_t = 0.95, value_parser = share)]
    min_coverage: f64,
    /// Type of the files written (default: from the --out extension, else parquet)
    #[arg(long, value_enum)]
    file_type: Option<FormatArg>,
    #[arg(long = "format", hide = true, value_parser = super::Renamed("--file-type parquet|csv|jsonl"))]
    _format: Option<String>,
    /// Per-window quality report (default: next to --out, named NAME.quality.EXT)
    #[arg(long, value_name = "FILE")]
    quality: Option<PathBuf>,
    /// Sampling interval for every host, s (default: each host's median spacing); a spacing
    /// above 1.5 x this is a gap
    #[arg(long, value_name = "S")]
    interval_s: Option<f64>,
    /// Place each record at the middle of the interval it averages instead of at its
    /// arrival (a Watts up? record is the mean of the second before it arrives; without
    /// this a window loses about one interval of its extra power)
    #[arg(long)]
    midpoint: bool,
}

fn parse_p0(s: &str) -> Result<(String, f64), String> {
    let (host, w) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected HOST=WATTS"))?;
    let w: f64 = w
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': '{w}' is not a number of watts"))?;
    if host.trim().is_empty() {
        return Err(format!("'{s}': expected HOST=WATTS"));
    }
    let max = meter::energy::baseline::MAX_P0_W;
    if !(w.is_finite() && (0.0..=max).contains(&w)) {
        return Err(format!(
            "'{s}': P_0 must be a static power within 0..{max} W"
        ));
    }
    Ok((host.trim().to_string(), w))
}

/// A share within 0..1 (checked here so a bad value is a usage error naming the flag).
fn share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}': expected a share within 0..1 (0.95 for 95 %)"
        )),
    }
}

fn interval_ns(s: Option<f64>) -> anyhow::Result<Option<i64>> {
    match s {
        None => Ok(None),
        // A meter logs at most once an hour.
        Some(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(Some((v * 1e9).round() as i64)),
        Some(v) => bail!("--interval-s must be a number of seconds in (0, 3600], got {v}"),
    }
}

/// Run `meter baseline`.
pub fn baseline(a: BaselineArgs) -> anyhow::Result<ExitCode> {
    let opts = BaselineOptions {
        range_utc_ns: a.from.zip(a.to).map(|(f, t)| (f.ns, t.ns)),
        max_spread_w: a.max_spread_w,
        min_seconds: a.min_seconds,
        interval_ns: interval_ns(a.interval_s)?,
    };
    let outputs: Vec<(&str, &Path)> = a.out.iter().map(|o| ("--out", o.as_path())).collect();
    let _io = super::guard_io(&[("--samples-dir", &a.samples_dir)], &outputs)?;
    let b = baseline_from_dir(&a.samples_dir, &a.host, &opts).map_err(baseline_error)?;
    outln!("{}", serde_json::to_string_pretty(&b)?);
    if let Some(out) = &a.out {
        write_baseline(out, &b)?;
        errln!("baseline written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A baseline error naming the flag whose value was refused (the library names the option by
/// what it is: a campaign names its config key instead).
fn baseline_error(e: BaselineError) -> anyhow::Error {
    match e {
        BaselineError::Option { option, problem } => {
            let flag = match option {
                BaselineOption::Range => "--from/--to",
                BaselineOption::MaxSpreadW => "--max-spread-w",
                BaselineOption::MinSeconds => "--min-seconds",
            };
            anyhow::anyhow!("{flag}: {problem}")
        }
        e @ BaselineError::Unstable(_) => {
            anyhow::Error::new(e).context("--from/--to: the range is refused (--max-spread-w)")
        }
        e => e.into(),
    }
}

/// A bare file name gets a `./` parent: the shared Parquet writer needs a non-empty one.
fn with_parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new(".").join(p),
        _ => p.to_path_buf(),
    }
}

/// `out.parquet` -> `out.quality.parquet` (extension of the chosen format).
fn quality_path(out: &Path, format: Format) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "energy".into());
    out.with_file_name(format!("{stem}.quality.{}", format.extension()))
}

fn collect_p0(a: &IntegrateArgs) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut p0: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut add = |host: &str, w: f64, origin: String| -> anyhow::Result<()> {
        if let Some((_, prev)) = p0.get(host) {
            bail!("P_0 of host '{host}' is given twice: by {prev} and by {origin}");
        }
        p0.insert(host.to_string(), (w, origin));
        Ok(())
    };
    for f in &a.baseline {
        let b = read_baseline(f)?;
        add(&b.host, b.p0_watts, f.display().to_string())?;
    }
    for (h, w) in &a.p0 {
        add(h, *w, format!("--p0 {h}={w}"))?;
    }
    Ok(p0.into_iter().map(|(h, (w, _))| (h, w)).collect())
}

/// Run `integrate`.
pub fn integrate(a: IntegrateArgs) -> anyhow::Result<ExitCode> {
    let format = match a.file_type {
        Some(FormatArg::Parquet) => Format::Parquet,
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None => Format::from_path(&a.out),
    };
    let rule = match a.rule {
        RuleArg::Trapezoid => Rule::Trapezoid,
        RuleArg::Rectangle => Rule::Rectangle,
    };
    let opts = IntegrateOptions {
        rule,
        min_coverage: a.min_coverage,
        interval_ns: interval_ns(a.interval_s)?,
        midpoint: a.midpoint,
    };
    let out = with_parent(&a.out);
    let quality = with_parent(
        &a.quality
            .clone()
            .unwrap_or_else(|| quality_path(&a.out, format)),
    );
    let mut inputs: Vec<(&str, &Path)> =
        vec![("--samples-dir", &a.samples_dir), ("--windows", &a.windows)];
    inputs.extend(a.baseline.iter().map(|b| ("--baseline", b.as_path())));
    let _io = super::guard_io(&inputs, &[("--out", &out), ("--quality", &quality)])?;
    let p0 = collect_p0(&a)?;
    let windows = read_windows(&a.windows)?;
    if windows.is_empty() {
        bail!("{}: no migration windows", a.windows.display());
    }
    let cancel = crate::signals::cancel_on_signals()?;
    let result = run_integration(
        &a.samples_dir,
        &a.windows,
        &windows,
        &p0,
        &opts,
        &cancel,
        &mut |p| {
            progressln!(
                "[{}/{}] host {}: {} samples",
                p.hosts_done,
                p.hosts_total,
                p.host,
                p.samples
            )
        },
    )?;
    let min_cov = a.min_coverage.to_string();
    let meta = [
        (KEY_RULE, rule.as_str()),
        (KEY_MIN_COVERAGE, min_cov.as_str()),
    ];
    // Both files are written before either is published: a failure leaves neither.
    let staged_quality = stage_window_quality(&quality, format, &result.windows, &meta)
        .context("writing the quality report")?;

    let n_mig = {
        let mut ids: Vec<&str> = windows.iter().map(|w| w.migration_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    outln!(
        "integrated {} windows of {} migrations on {} hosts (rule {}, min coverage {})",
        windows.len(),
        n_mig,
        result.hosts.len(),
        rule.as_str(),
        a.min_coverage
    );
    for h in &result.hosts {
        outln!(
            "  host {}: {} samples{}, interval {:.3} s{}, P_0 {:.2} W, {} windows{}",
            h.host,
            h.samples,
            if h.missing_watts > 0 {
                format!(" ({} records without power ignored)", h.missing_watts)
            } else {
                String::new()
            },
            h.interval_ns as f64 / 1e9,
            if h.interval_estimated {
                " (estimated)"
            } else {
                ""
            },
            h.p0_w,
            h.windows,
            if h.overlapping_windows > 0 {
                format!(", {} overlapping an earlier window", h.overlapping_windows)
            } else {
                String::new()
            },
        );
    }
    let excluded: Vec<_> = result.windows.iter().filter(|w| !w.included).collect();
    if !excluded.is_empty() {
        outln!(
            "excluded {} of {} windows (details in {}):",
            excluded.len(),
            result.windows.len(),
            quality.display()
        );
        for w in excluded.iter().take(10) {
            outln!(
                "  {} {} on {}: {}",
                w.migration_id,
                w.role,
                w.host,
                w.reason.as_deref().unwrap_or("")
            );
        }
        if excluded.len() > 10 {
            outln!("  ... and {} more", excluded.len() - 10);
        }
    }
    if result.observations.is_empty() {
        staged_quality
            .commit()
            .context("writing the quality report")?;
        bail!(
            "no migration has usable source and destination windows, nothing written to {}; \
             see the reasons in {}",
            a.out.display(),
            quality.display()
        );
    }
    let staged_energy = stage_energy(&out, format, &result.observations, &meta)
        .context("writing the energy observations")?;
    staged_quality
        .commit()
        .context("writing the quality report")?;
    staged_energy
        .commit()
        .context("writing the energy observations")?;
    outln!(
        "wrote {} energy observations to {} and the window quality report to {}",
        result.observations.len(),
        a.out.display(),
        quality.display()
    );
    Ok(ExitCode::SUCCESS)
}
