//! The campaign report (report.html and report.md) rendered from a campaign's summary.json.
//!
//! [`render`] reads `DIR/summary.json` ([`crate::summary::CampaignSummary`]) and the inputs it
//! names (samples, windows, energy observations, window quality, migrations, rounds,
//! coefficient and residuals files), and writes `DIR/report.html` (one self-contained page:
//! inline CSS and SVG, no scripts, nothing fetched) and `DIR/report.md` (the same sections,
//! with the plots as `DIR/report-plots/*.svg`). Only `summary.json` is required: an input that
//! is missing or unreadable is named in its section and in [`ReportFiles::warnings`].

mod data;
mod doc;
mod plot;

use std::path::{Path, PathBuf};

use datasets::DatasetError;

use crate::summary::{CampaignSummary, SummaryError, Verdict, SUMMARY_FILE};
use data::{HostPower, Inputs};
use doc::{b, code, t, Block, Cell, Document, Inline, Plot, Section};

/// File name of the HTML report inside a campaign folder.
pub const HTML_FILE: &str = "report.html";
/// File name of the Markdown report inside a campaign folder.
pub const MARKDOWN_FILE: &str = "report.md";
/// Folder (inside the campaign folder) of the Markdown report's SVG plots.
pub const PLOTS_DIR: &str = "report-plots";

/// The `id`s of the report's sections, in order.
pub const SECTION_IDS: [&str; 8] = [
    "summary",
    "verdicts",
    "power",
    "energy",
    "gamma",
    "residuals",
    "migrations",
    "files",
];

/// Errors of rendering a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `summary.json` is missing or is not a campaign summary.
    #[error("cannot render the report")]
    Summary(#[from] SummaryError),
    /// Writing a report file failed.
    #[error("cannot write the report: {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: DatasetError,
    },
}

/// What [`render`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `DIR/report.html`.
    pub html: PathBuf,
    /// `DIR/report.md`.
    pub markdown: PathBuf,
    /// `DIR/report-plots/*.svg`, the Markdown report's plots.
    pub plots: Vec<PathBuf>,
    /// Inputs that were missing or unreadable (the report says so in their sections).
    pub warnings: Vec<String>,
}

/// Render `dir/report.html` and `dir/report.md` (and `dir/report-plots/*.svg`) from
/// `dir/summary.json`, each written atomically.
pub fn render(dir: &Path) -> Result<ReportFiles, ReportError> {
    let summary = CampaignSummary::read(&dir.join(SUMMARY_FILE))?;
    let inputs = data::load(dir, summary);
    let document = build(dir, &inputs);
    let write = |path: &Path, bytes: &[u8]| {
        datasets::io::write_bytes_atomic(path, bytes).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut plots = Vec::new();
    for p in doc::plots(&document) {
        let path = dir.join(doc::plot_file(&p.name));
        write(&path, p.svg.as_bytes())?;
        plots.push(path);
    }
    remove_stale_plots(&dir.join(PLOTS_DIR), &plots);
    let html = dir.join(HTML_FILE);
    write(&html, doc::to_html(&document).as_bytes())?;
    let markdown = dir.join(MARKDOWN_FILE);
    write(&markdown, doc::to_markdown(&document).as_bytes())?;
    Ok(ReportFiles {
        html,
        markdown,
        plots,
        warnings: inputs.warnings,
    })
}

/// Remove SVGs of an earlier rendering that this one did not write (best effort: a leftover
/// plot is harmless, so errors are ignored).
fn remove_stale_plots(plots_dir: &Path, written: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(plots_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "svg") && !written.contains(&p) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A number with about four significant digits ("n/a" when not finite).
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        fmt_num(v)
    } else {
        format!("{} {unit}", fmt_num(v))
    }
}

fn opt_num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), fmt_num)
}

/// A `data-plot` name made of letters, digits, `-` and `_`.
fn plot_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A link to `path` (relative to the report) if it exists, else its name marked missing.
fn file_link(dir: &Path, path: &Path) -> Vec<Inline> {
    let text = path.display().to_string();
    if dir.join(path).exists() {
        vec![Inline::Link {
            href: text.clone(),
            text,
        }]
    } else {
        vec![code(text), t(" (missing)")]
    }
}

fn build(dir: &Path, inputs: &Inputs) -> Document {
    let s = &inputs.summary;
    Document {
        title: format!("Calibration report: {}", s.name),
        subtitle: format!(
            "hardware pair {} · {} · written {} by migwatt {}",
            s.hardware_pair, s.hypervisor, s.created_at, s.toolkit_version
        ),
        sections: vec![
            summary_section(dir, inputs),
            verdicts_section(&s.verdicts),
            power_section(inputs),
            energy_section(inputs),
            gamma_section(inputs),
            residuals_section(dir, inputs),
            migrations_section(inputs),
            files_section(dir, s),
        ],
    }
}

fn summary_section(dir: &Path, inputs: &Inputs) -> Section {
    let s = &inputs.summary;
    let mut blocks = Vec::new();
    let failed: Vec<&Verdict> = s.verdicts.iter().filter(|v| !v.passed).collect();
    if s.accepted {
        blocks.push(Block::Callout(
            "pass",
            vec![
                b("ACCEPTED"),
                t(format!(
                    " — all {} acceptance thresholds passed; the models can be used for this hardware pair.",
                    s.verdicts.len()
                )),
            ],
        ));
    } else {
        let names: Vec<&str> = failed.iter().map(|v| v.name.as_str()).collect();
        let why = if names.is_empty() {
            " — the campaign was not accepted.".to_string()
        } else {
            format!(
                " — {} of {} acceptance thresholds failed: {}. See the verdicts below.",
                names.len(),
                s.verdicts.len(),
                names.join(", ")
            )
        };
        blocks.push(Block::Callout("fail", vec![b("NOT ACCEPTED"), t(why)]));
    }
    let m = &s.migrations;
    let kv = |k: &str, v: Vec<Inline>| (None, vec![Cell::text(k), Cell::of(v)]);
    blocks.push(Block::Table {
        head: vec![String::new(), String::new()],
        rows: vec![
            kv("campaign", vec![b(&s.name)]),
            kv("hardware pair", vec![code(&s.hardware_pair)]),
            kv("hypervisor", vec![t(&s.hypervisor)]),
            kv(
                "migrations",
                vec![t(format!(
                    "{} planned, {} done, {} converged, {} failed",
                    m.planned,
                    m.done,
                    m.converged,
                    m.failed.len()
                ))],
            ),
            kv("written", vec![t(&s.created_at)]),
            kv("toolkit", vec![t(format!("migwatt {}", s.toolkit_version))]),
        ],
    });
    blocks.push(Block::Heading("What was emulated and what was real".into()));
    if s.emulated.is_empty() {
        blocks.push(Block::Callout(
            "pass",
            vec![
                b("Nothing was emulated."),
                t(" Every measurement comes from real hardware."),
            ],
        ));
    } else {
        blocks.push(Block::Callout(
            "note",
            vec![
                b("EMULATED."),
                t(" Parts of this campaign did not come from real hardware; numbers that depend on them say nothing about real machines:"),
            ],
        ));
        blocks.push(Block::List(
            s.emulated
                .iter()
                .map(|e| vec![b("Emulated: "), t(e)])
                .collect(),
        ));
    }
    if !s.real.is_empty() {
        blocks.push(Block::List(
            s.real.iter().map(|e| vec![b("Real: "), t(e)]).collect(),
        ));
    }
    blocks.push(Block::Heading("Hosts".into()));
    blocks.push(Block::Table {
        head: vec![
            "role".into(),
            "host".into(),
            "meter".into(),
            "P_0 [W]".into(),
            "samples".into(),
            "baseline".into(),
        ],
        rows: s
            .hosts
            .iter()
            .map(|h| {
                (
                    None,
                    vec![
                        Cell::text(&h.role),
                        Cell::of(vec![code(&h.host)]),
                        Cell::of(vec![code(&h.meter)]),
                        Cell::num(h.p0_w.map_or("baseline failed".into(), fmt_num)),
                        Cell::num(h.samples.to_string()),
                        Cell::of(
                            h.baseline
                                .as_deref()
                                .map_or(vec![t("none")], |p| file_link(dir, p)),
                        ),
                    ],
                )
            })
            .collect(),
    });
    if !inputs.warnings.is_empty() {
        blocks.push(Block::Heading("Inputs missing or unreadable".into()));
        blocks.push(Block::List(
            inputs.warnings.iter().map(|w| vec![t(w)]).collect(),
        ));
    }
    Section {
        id: "summary",
        title: "Summary".into(),
        blocks,
    }
}

fn verdicts_section(verdicts: &[Verdict]) -> Section {
    let mut blocks = Vec::new();
    if verdicts.is_empty() {
        blocks.push(Block::Para(vec![t(
            "The campaign recorded no acceptance thresholds.",
        )]));
    }
    for v in verdicts.iter().filter(|v| !v.passed) {
        let measured = v
            .value
            .map_or("not measured".into(), |x| with_unit(x, &v.unit));
        let by = v
            .value
            .map(|x| {
                let off = (x - v.threshold).abs();
                if v.unit == "%" {
                    format!(", off by {} percentage points", fmt_num(off))
                } else {
                    format!(", off by {}", with_unit(off, &v.unit))
                }
            })
            .unwrap_or_default();
        blocks.push(Block::Callout(
            "fail",
            vec![
                b(format!("Failed: {}", v.name)),
                t(format!(
                    " — measured {measured}, required {} {}{by}. {}",
                    v.comparison,
                    with_unit(v.threshold, &v.unit),
                    v.detail
                )),
            ],
        ));
    }
    if !verdicts.is_empty() {
        blocks.push(Block::Table {
            head: vec![
                "threshold".into(),
                "measured".into(),
                "required".into(),
                "result".into(),
                "detail".into(),
            ],
            rows: verdicts
                .iter()
                .map(|v| {
                    (
                        (!v.passed).then_some("fail"),
                        vec![
                            Cell::text(&v.name),
                            Cell::num(
                                v.value
                                    .map_or("not measured".into(), |x| with_unit(x, &v.unit)),
                            ),
                            Cell::num(format!(
                                "{} {}",
                                v.comparison,
                                with_unit(v.threshold, &v.unit)
                            )),
                            if v.passed {
                                Cell::text("PASS").class("pass")
                            } else {
                                Cell::text("FAIL").class("fail")
                            },
                            Cell::text(&v.detail),
                        ],
                    )
                })
                .collect(),
        });
    }
    Section {
        id: "verdicts",
        title: "Verdicts".into(),
        blocks,
    }
}

/// Time unit of the power plots for a campaign lasting `span_s`: (name, seconds per unit).
fn time_unit(span_s: f64) -> (&'static str, f64) {
    if span_s <= 1800.0 {
        ("s", 1.0)
    } else if span_s <= 48.0 * 3600.0 {
        ("min", 60.0)
    } else {
        ("h", 3600.0)
    }
}

/// Continuous stretches of a trace (split at gaps), thinned to at most ~4000 points per host
/// by keeping each bucket's lowest and highest reading, so peaks survive and the SVG stays
/// small for a campaign of days.
fn trace_segments(t_ns: &[i64], w: &[f64], t0: i64, scale_s: f64) -> Vec<Vec<(f64, f64)>> {
    let n = t_ns.len().min(w.len());
    if n == 0 {
        return Vec::new();
    }
    let mut dts: Vec<i64> = t_ns.windows(2).map(|p| p[1] - p[0]).collect();
    dts.sort_unstable();
    let median = dts.get(dts.len() / 2).copied().unwrap_or(1_000_000_000);
    let gap_ns = (median.saturating_mul(5)).max(5_000_000_000);
    let span = (t_ns[n - 1] - t_ns[0]).max(1);
    let bucket_ns = if n > 4000 { span / 2000 + 1 } else { 0 };
    let x = |i: usize| (t_ns[i] - t0) as f64 / 1e9 / scale_s;
    let mut segments = Vec::new();
    let mut seg: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    while i < n {
        if i > 0 && t_ns[i] - t_ns[i - 1] > gap_ns && !seg.is_empty() {
            segments.push(std::mem::take(&mut seg));
        }
        if bucket_ns == 0 {
            seg.push((x(i), w[i]));
            i += 1;
            continue;
        }
        // One bucket: up to the bucket's end or the next gap.
        let end_ns = t_ns[i] + bucket_ns;
        let (mut lo, mut hi) = (i, i);
        let mut j = i + 1;
        while j < n && t_ns[j] < end_ns && t_ns[j] - t_ns[j - 1] <= gap_ns {
            if w[j] < w[lo] {
                lo = j;
            }
            if w[j] > w[hi] {
                hi = j;
            }
            j += 1;
        }
        let (a, c) = (lo.min(hi), lo.max(hi));
        seg.push((x(a), w[a]));
        if c != a {
            seg.push((x(c), w[c]));
        }
        i = j;
    }
    if !seg.is_empty() {
        segments.push(seg);
    }
    segments
}

fn power_section(inputs: &Inputs) -> Section {
    let mut blocks = vec![Block::Para(vec![t(
        "Power of each host over the whole campaign as the meter recorded it, with the host's static power P_0 (dashed) and every migration window on that host shaded. Energy per migration is the area between the trace and P_0 inside the windows.",
    )])];
    match &inputs.power {
        Err(e) => blocks.push(Block::Callout(
            "note",
            vec![t(format!("No power traces: {e}"))],
        )),
        Ok(hosts) => {
            let t0 = inputs.t0_utc_ns.unwrap_or(0);
            let t_end = hosts
                .iter()
                .filter_map(|h| h.trace.as_ref().ok().and_then(|t| t.0.last().copied()))
                .max()
                .unwrap_or(t0);
            let (unit, scale) = time_unit((t_end - t0) as f64 / 1e9);
            let start = chrono::DateTime::from_timestamp_nanos(t0)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string();
            let x_label = format!("time since {start} [{unit}]");
            let mut roles_seen: Vec<&str> = Vec::new();
            for h in hosts {
                let name = if roles_seen.contains(&h.role.as_str()) {
                    format!("power-{}", plot_name(&h.host))
                } else {
                    format!("power-{}", plot_name(&h.role))
                };
                roles_seen.push(&h.role);
                blocks.push(host_power_block(h, &name, t0, t_end, scale, &x_label));
            }
        }
    }
    Section {
        id: "power",
        title: "Power".into(),
        blocks,
    }
}

fn host_power_block(
    h: &HostPower,
    name: &str,
    t0: i64,
    t_end: i64,
    scale: f64,
    x_label: &str,
) -> Block {
    let (t_ns, w) = match &h.trace {
        Ok(tr) => tr,
        Err(e) => {
            return Block::Callout(
                "note",
                vec![t(format!("{} ({}): no power trace: {e}", h.host, h.role))],
            )
        }
    };
    let segments = trace_segments(t_ns, w, t0, scale);
    let to_x = |ns: i64| (ns - t0) as f64 / 1e9 / scale;
    let windows: Vec<(f64, f64)> = h.windows.iter().map(|&(a, b)| (to_x(a), to_x(b))).collect();
    let title = format!("{} ({})", h.host, h.role);
    let svg = plot::power(&plot::PowerPlot {
        title: &title,
        segments: &segments,
        p0_w: h.p0_w,
        windows: &windows,
        x_range: (0.0, to_x(t_end)),
        x_label,
    });
    let p0 = h.p0_w.map_or("unknown (baseline failed)".into(), |p| {
        format!("{} W", fmt_num(p))
    });
    figure_or_note(
        svg,
        name,
        format!(
            "Power of {} ({}), {} samples; P_0 = {p0}; {} migration windows shaded.",
            h.host,
            h.role,
            t_ns.len(),
            windows.len()
        ),
        format!("power of {} over time", h.host),
    )
}

fn figure_or_note(svg: Result<String, String>, name: &str, caption: String, alt: String) -> Block {
    match svg {
        Ok(svg) => Block::Figure(Plot {
            name: name.to_string(),
            caption,
            alt,
            svg,
        }),
        Err(e) => Block::Callout("note", vec![t(format!("{alt}: not plotted: {e}"))]),
    }
}

/// The model table rows of the summary's models of `kind`.
fn model_table(inputs: &Inputs, kind: &str) -> Option<Block> {
    let rows: Vec<_> = inputs
        .summary
        .models
        .iter()
        .filter(|m| m.kind == kind)
        .map(|m| {
            (
                None,
                vec![
                    Cell::of(vec![code(&m.equation)]),
                    Cell::num(fmt_num(m.r_squared)),
                    Cell::num(m.n_rows.to_string()),
                    Cell::num(
                        m.cv_mape
                            .map_or("n/a".into(), |x| format!("{:.1} %", x * 100.0)),
                    ),
                    Cell::of(vec![code(m.path.display().to_string())]),
                ],
            )
        })
        .collect();
    (!rows.is_empty()).then(|| Block::Table {
        head: vec![
            "equation".into(),
            "R^2".into(),
            "rows".into(),
            "CV MAPE".into(),
            "coefficient file".into(),
        ],
        rows,
    })
}

fn energy_section(inputs: &Inputs) -> Section {
    let mut blocks = vec![Block::Para(vec![
        t("Energy of each migration above both hosts' static power (E_mig, eq 14) against the bytes it sent (V_mig), with the fitted model "),
        code("E_mig = alpha V_mig + beta"),
        t(" (eq 15)."),
    ])];
    blocks.extend(model_table(inputs, "energy"));
    match (&inputs.energy_rows, &inputs.energy_model) {
        (Err(e), _) => blocks.push(Block::Callout(
            "note",
            vec![t(format!("No energy observations: {e}"))],
        )),
        (Ok(rows), model) => {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r.v_mig_bytes as f64 / 1e6, r.e_mig_j))
                .collect();
            let mut line = None;
            let mut fit_text = String::new();
            match model {
                Err(e) => blocks.push(Block::Callout(
                    "note",
                    vec![t(format!("No fitted line: {e}"))],
                )),
                Ok(m) => {
                    let c = &m.coef;
                    let ok = c.features.len() == 1 && c.features[0].unit == "B";
                    if ok {
                        let alpha_j_per_b = c.coefficients[0].estimate;
                        let beta_j = if c.intercept {
                            c.coefficients.last().map_or(0.0, |x| x.estimate)
                        } else {
                            0.0
                        };
                        line = Some((
                            alpha_j_per_b * 1e6,
                            beta_j,
                            format!(
                                "fit: E = alpha V + beta, R^2 = {}",
                                fmt_num(c.fit.r_squared)
                            ),
                        ));
                        fit_text = format!(
                            " Line: alpha = {} J/B, beta = {} J, R^2 = {} over {} rows ({}).",
                            fmt_num(alpha_j_per_b),
                            fmt_num(beta_j),
                            fmt_num(c.fit.r_squared),
                            c.fit.n_rows,
                            c.equation
                        );
                    } else {
                        blocks.push(Block::Callout(
                            "note",
                            vec![t(format!(
                                "{}: not a one-feature model of V_mig in bytes; no line drawn.",
                                m.path.display()
                            ))],
                        ));
                    }
                }
            }
            let svg = plot::scatter(&plot::Scatter {
                title: "Migration energy against bytes sent",
                points: &points,
                points_label: "migrations",
                line,
                same_ranges: false,
                x_label: "V_mig [MB]",
                y_label: "E_mig [J]",
            });
            blocks.push(figure_or_note(
                svg,
                "energy",
                format!(
                    "E_mig [J] against V_mig [MB] (1 MB = 10^6 B) for {} migrations.{fit_text}",
                    points.len()
                ),
                "migration energy against bytes sent".into(),
            ));
        }
    }
    Section {
        id: "energy",
        title: "Energy model".into(),
        blocks,
    }
}

fn gamma_section(inputs: &Inputs) -> Section {
    let mut blocks = vec![Block::Para(vec![
        t("gamma of every pre-copy round (the share of the pages dirtied in the previous round that this round did not send) against the model "),
        code("gamma = omega T_{i-1} + xi D + psi"),
        t(" (eq 10) for the same round; points on the line y = x are predicted exactly."),
    ])];
    blocks.extend(model_table(inputs, "gamma"));
    match &inputs.gamma {
        Err(e) => blocks.push(Block::Callout(
            "note",
            vec![t(format!("No gamma plot: {e}"))],
        )),
        Ok((points, notes)) => {
            let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.predicted, p.observed)).collect();
            let (r2, equation) = inputs
                .gamma_model
                .as_ref()
                .map(|m| (fmt_num(m.coef.fit.r_squared), m.coef.equation.clone()))
                .unwrap_or_default();
            let svg = plot::scatter(&plot::Scatter {
                title: "gamma observed against predicted",
                points: &xy,
                points_label: "pre-copy rounds",
                line: Some((1.0, 0.0, "y = x".into())),
                same_ranges: true,
                x_label: "gamma predicted [1]",
                y_label: "gamma observed [1]",
            });
            let left_out = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            blocks.push(figure_or_note(
                svg,
                "gamma",
                format!(
                    "Observed gamma against the model's for {} rounds{left_out}; model {equation}, R^2 = {r2}.",
                    xy.len()
                ),
                "gamma observed against predicted".into(),
            ));
        }
    }
    Section {
        id: "gamma",
        title: "Gamma model".into(),
        blocks,
    }
}

fn residuals_section(dir: &Path, inputs: &Inputs) -> Section {
    let mut blocks = vec![Block::Para(vec![t(
        "Residuals (observed - fitted) against fitted values of every model, from the residuals file beside its coefficient file: a pattern (a curve, a funnel) means the linear model misses something.",
    )])];
    if inputs.residuals.is_empty() {
        blocks.push(Block::Callout(
            "note",
            vec![t("No fitted model in this campaign, so no residuals.")],
        ));
    }
    for r in &inputs.residuals {
        let rel_path = r
            .path
            .strip_prefix(dir)
            .unwrap_or(&r.path)
            .display()
            .to_string();
        match &r.points {
            Err(e) => blocks.push(Block::Callout(
                "note",
                vec![t(format!("{}: no residuals: {e}", r.name))],
            )),
            Ok(points) => {
                let x_label = format!("fitted {} [{}]", r.symbol, r.unit);
                let y_label = format!("residual {} [{}]", r.symbol, r.unit);
                let title = format!("{}: residuals against fitted", r.name);
                let svg = plot::scatter(&plot::Scatter {
                    title: &title,
                    points,
                    points_label: "training rows",
                    line: Some((0.0, 0.0, "residual = 0".into())),
                    same_ranges: false,
                    x_label: &x_label,
                    y_label: &y_label,
                });
                blocks.push(figure_or_note(
                    svg,
                    &format!("residuals-{}", plot_name(&r.name)),
                    format!(
                        "Model {}: residual against fitted {} [{}] for {} training rows ({rel_path}).",
                        r.name,
                        r.symbol,
                        r.unit,
                        points.len()
                    ),
                    format!("residuals of model {}", r.name),
                ));
            }
        }
    }
    Section {
        id: "residuals",
        title: "Residuals".into(),
        blocks,
    }
}

fn migrations_section(inputs: &Inputs) -> Section {
    let mut blocks = Vec::new();
    let energy: std::collections::HashMap<&str, f64> = inputs
        .energy_rows
        .as_ref()
        .map(|rows| {
            rows.iter()
                .map(|r| (r.migration_id.as_str(), r.e_mig_j))
                .collect()
        })
        .unwrap_or_default();
    match &inputs.migrations {
        Err(e) => blocks.push(Block::Callout(
            "note",
            vec![t(format!("No migration records: {e}"))],
        )),
        Ok(rows) => {
            blocks.push(Block::Para(vec![t(format!(
                "{} recorded migrations, {} converged. E_mig is empty for a migration whose windows were left out of the energy observations (the note says why).",
                rows.len(),
                rows.iter().filter(|r| r.converged).count()
            ))]));
            let checked = rows.iter().filter(|r| r.memory_verified.is_some()).count();
            if checked > 0 {
                let bad: Vec<&str> = rows
                    .iter()
                    .filter(|r| r.memory_verified == Some(false))
                    .map(|r| r.migration_id.as_str())
                    .collect();
                let text = format!(
                    "Memory verified (guest RAM of the paused source and destination compared page by page before the destination ran): {} of {checked} checked migrations matched{}.",
                    checked - bad.len(),
                    if bad.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; MISMATCH in {} ({}), left out of the models unless the campaign sets include_mismatched",
                            bad.len(),
                            bad.join(", ")
                        )
                    }
                );
                blocks.push(if bad.is_empty() {
                    Block::Para(vec![t(text)])
                } else {
                    Block::Callout("fail", vec![t(text)])
                });
            }
            blocks.push(Block::Table {
                head: [
                    "migration",
                    "workload",
                    "V_mig [MB]",
                    "T_mig [s]",
                    "T_down [ms]",
                    "E_mig [J]",
                    "rounds",
                    "converged",
                    "note",
                ]
                .map(String::from)
                .to_vec(),
                rows: rows
                    .iter()
                    .map(|r| {
                        let mut note = Vec::new();
                        if !r.converged {
                            note.push(format!("status {}", r.status));
                        }
                        if let Some(why) = inputs.excluded.get(&r.migration_id) {
                            note.push(format!("energy left out: {why}"));
                        }
                        match (r.memory_verified, r.memory_mismatch_pages) {
                            (Some(true), _) => note.push("memory verified".into()),
                            (Some(false), n) => note.push(format!(
                                "MEMORY MISMATCH ({} pages)",
                                n.map_or("?".into(), |n| n.to_string())
                            )),
                            _ => {}
                        }
                        let bad = !r.converged || r.memory_verified == Some(false);
                        (
                            bad.then_some("fail"),
                            vec![
                                Cell::of(vec![code(&r.migration_id)]),
                                Cell::text(r.workload.as_deref().unwrap_or("-")),
                                Cell::num(fmt_num(r.v_mig_bytes as f64 / 1e6)),
                                Cell::num(fmt_num(r.t_mig_s)),
                                Cell::num(opt_num(r.t_down_s.map(|s| s * 1e3))),
                                Cell::num(
                                    energy
                                        .get(r.migration_id.as_str())
                                        .map_or("-".into(), |e| fmt_num(*e)),
                                ),
                                Cell::num(r.rounds.to_string()),
                                if r.converged {
                                    Cell::text("yes").class("pass")
                                } else {
                                    Cell::text("no").class("fail")
                                },
                                Cell::text(note.join("; ")),
                            ],
                        )
                    })
                    .collect(),
            });
        }
    }
    let failed = &inputs.summary.migrations.failed;
    blocks.push(Block::Heading("Failed migrations".into()));
    if failed.is_empty() {
        blocks.push(Block::Para(vec![t(
            "No planned migration failed to produce a record.",
        )]));
    } else {
        blocks.push(Block::Table {
            head: vec!["migration".into(), "reason".into()],
            rows: failed
                .iter()
                .map(|f| {
                    (
                        Some("fail"),
                        vec![Cell::of(vec![code(&f.migration_id)]), Cell::text(&f.reason)],
                    )
                })
                .collect(),
        });
    }
    Section {
        id: "migrations",
        title: "Migrations".into(),
        blocks,
    }
}

fn files_section(dir: &Path, s: &CampaignSummary) -> Section {
    let mut blocks = vec![Block::Para(vec![t(
        "Files the campaign wrote, relative to this report.",
    )])];
    if s.files.is_empty() {
        blocks.push(Block::Para(vec![t("The summary lists no files.")]));
    } else {
        blocks.push(Block::Table {
            head: vec!["file".into(), "what it holds".into()],
            rows: s
                .files
                .iter()
                .map(|f| {
                    (
                        None,
                        vec![
                            Cell::of(file_link(dir, &f.path)),
                            Cell::text(&f.description),
                        ],
                    )
                })
                .collect(),
        });
    }
    Section {
        id: "files",
        title: "Files".into(),
        blocks,
    }
}

#[cfg(test)]
mod tests;
