//! `migwatt calibrate run` and `migwatt calibrate init`: the calibration campaign, and its
//! progress on a terminal (bars) or in a log (plain lines).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::bail;
use calibrate::campaign::{self, Event, Outcome, Progress, RunOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Arguments of `calibrate run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Steps: capture both meters for the whole campaign; measure P_0 over `baseline_s` of idle; \
run every planned migration with `settle_s` between them; integrate each migration's energy; \
train the energy (eq 15) and gamma (eq 10) models; judge them against the thresholds; write \
models/<source>--<destination>/, summary.json, report.html and report.md in the output folder.

Interrupted (Ctrl-C, a crash, a kill), run the same command again: finished migrations are \
kept, the cut one is redone, and every captured sample is kept.

With verification (`verify`, on for [hypervisor.launch]) every migration's guest memory is \
compared page by page after it completes, before the destination runs; a migration whose \
memory differs is kept in migrations/ (memory_verified = false), named, and left out of the \
windows, energy and models unless `include_mismatched = true`.

Exit status: 0 when every threshold passed, 3 when the models were written but a threshold \
failed (the report says which and what to try), 4 when a migration failed, was cancelled, or \
its memory did not match or could not be checked (the report and the output name it; this \
wins over 3), 1 on an error, 130 after Ctrl-C (143 after SIGTERM) once the run stopped cleanly.")]
pub struct RunArgs {
    /// The campaign config (TOML; `migwatt calibrate init` writes a commented example)
    pub config: PathBuf,
    /// Redo this migration even if it finished (repeatable; ids are in the report)
    #[arg(long, value_name = "MIGRATION_ID")]
    pub redo: Vec<String>,
}

/// Arguments of `calibrate init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the example config
    #[arg(default_value = "campaign.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

/// Write the commented example config.
pub fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    if a.path.exists() && !a.force {
        bail!(
            "{}: already exists (use --force to overwrite it)",
            a.path.display()
        );
    }
    // The writer's errors name the path already.
    datasets::io::write_bytes_atomic(&a.path, campaign::EXAMPLE_CONFIG.as_bytes())?;
    outln!(
        "wrote {}: edit the hosts, meters, hypervisor access, VMs and plan, then run\n  migwatt calibrate run {}",
        a.path.display(),
        a.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Run (or resume) a campaign.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let lc = campaign::load(&a.config)?;
    let cancel = crate::signals::cancel_on_signals()?;
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() && !crate::stdout::quiet()
    {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines::default())
    };
    let opts = RunOptions {
        cancel,
        progress: progress.clone(),
        redo: a.redo,
        emulated_notes: Vec::new(),
    };
    let outcome = campaign::run(&lc, &opts);
    drop(progress);
    let outcome = outcome?;
    print_outcome(&outcome);
    let m = &outcome.summary.migrations;
    Ok(
        if !m.memory_mismatched.is_empty() || !m.memory_not_checked.is_empty() {
            ExitCode::from(4)
        } else if outcome.summary.accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        },
    )
}

/// Print the verdicts and where everything went.
pub fn print_outcome(o: &Outcome) {
    let s = &o.summary;
    outln!();
    outln!(
        "campaign {} ({}): {} of {} migrations done, {} converged{}",
        s.name,
        s.hardware_pair,
        s.migrations.done,
        s.migrations.planned,
        s.migrations.converged,
        if o.resumed_migrations > 0 {
            format!(" ({} from an earlier run)", o.resumed_migrations)
        } else {
            String::new()
        }
    );
    for f in &s.migrations.failed {
        outln!("  failed: {}: {}", f.migration_id, f.reason);
    }
    let m = &s.migrations;
    let checked = m.memory_verified + m.memory_mismatched.len();
    if checked > 0 || !m.memory_not_checked.is_empty() {
        outln!(
            "  memory verified (guest RAM compared page by page before the destination ran): {} of {} checked",
            m.memory_verified, checked
        );
    }
    if !m.memory_mismatched.is_empty() {
        outln!(
            "  MEMORY MISMATCH in {} migration(s){}: {}",
            m.memory_mismatched.len(),
            if m.include_mismatched {
                ", kept in the models (include_mismatched)"
            } else {
                ", left out of the windows, energy and models"
            },
            m.memory_mismatched.join(", ")
        );
    }
    if !m.memory_not_checked.is_empty() {
        outln!(
            "  memory NOT verified (the check could not run): {}",
            m.memory_not_checked.join(", ")
        );
    }
    for h in &s.hosts {
        outln!(
            "  {} ({}): P_0 {}, {} samples",
            h.host,
            h.role,
            h.p0_w.map_or("-".into(), |w| format!("{w:.2} W")),
            h.samples
        );
    }
    for m in &s.models {
        outln!(
            "  {} model: {}  (R^2 {:.4}, n {})",
            m.kind,
            m.equation,
            m.r_squared,
            m.n_rows
        );
    }
    outln!(
        "acceptance: {}",
        if s.accepted {
            "ACCEPTED"
        } else {
            "NOT ACCEPTED"
        }
    );
    for v in &s.verdicts {
        outln!(
            "  [{}] {} {} {}{}: {}",
            if v.passed { "pass" } else { "FAIL" },
            v.name,
            v.comparison,
            v.threshold,
            v.unit,
            v.detail
        );
    }
    if !s.emulated.is_empty() {
        outln!("emulated:");
        for e in &s.emulated {
            outln!("  - {e}");
        }
    }
    outln!("files in {}:", o.out_dir.display());
    for f in &s.files {
        outln!("  {:<28} {}", f.path.display(), f.description);
    }
    for r in &o.report {
        outln!("report: {}", r.display());
    }
}

/// Plain log lines (not a terminal): phases, migrations and messages, no redraws.
#[derive(Default)]
pub struct Lines {
    last_wait: Mutex<Option<&'static str>>,
}

fn stamp() -> String {
    chrono::Utc::now().format("%H:%M:%S").to_string()
}

impl Progress for Lines {
    fn event(&self, e: &Event) {
        let line = match e {
            Event::Log(s) => s.clone(),
            Event::Phase(p) => format!("== {p}"),
            Event::Planned { total, done } => {
                format!("{total} planned migrations, {done} already done")
            }
            Event::Wait {
                what,
                elapsed_s,
                total_s,
            } => {
                let mut l = self.last_wait.lock().unwrap_or_else(|e| e.into_inner());
                if *elapsed_s == 0.0 || l.is_none() {
                    *l = Some(what);
                    format!("{what}: waiting {total_s:.0} s")
                } else {
                    if elapsed_s >= total_s {
                        *l = None;
                    }
                    return;
                }
            }
            Event::MigrationStarted {
                index,
                total,
                migration_id,
            } => {
                format!("migration {}/{}: {migration_id}", index + 1, total)
            }
            Event::MigrationFinished {
                index,
                total,
                migration_id,
                outcome,
            } => {
                format!(
                    "migration {}/{}: {migration_id}: {outcome}",
                    index + 1,
                    total
                )
            }
            Event::MigrationProgress { .. } | Event::Meters(_) => return,
        };
        // Log lines carry the campaign's warnings and decisions: --quiet keeps them.
        if matches!(e, Event::Log(_)) {
            errln!("{} {line}", stamp());
        } else {
            progressln!("{} {line}", stamp());
        }
    }
}

/// Progress bars on a terminal: the campaign, the current migration or wait, the meters.
pub struct Bars {
    multi: MultiProgress,
    campaign: ProgressBar,
    current: ProgressBar,
    meters: ProgressBar,
}

impl Bars {
    /// Bars drawn on stderr.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let campaign = multi.add(ProgressBar::new(0));
        campaign.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} migrations  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        campaign.set_prefix("campaign");
        let current = multi.add(ProgressBar::new(0));
        let meters = multi.add(ProgressBar::new_spinner());
        meters.set_style(
            ProgressStyle::with_template("{prefix:>10} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        meters.set_prefix("meters");
        Bars {
            multi,
            campaign,
            current,
            meters,
        }
    }

    fn bytes_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn wait_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.current.finish_and_clear();
        self.meters.finish_and_clear();
        self.campaign.finish();
    }
}

impl Progress for Bars {
    fn event(&self, e: &Event) {
        match e {
            Event::Log(s) => {
                let _ = self.multi.println(s);
            }
            Event::Phase(p) => {
                self.campaign.set_message(p.to_string());
            }
            Event::Planned { total, done } => {
                self.campaign.set_length(*total as u64);
                self.campaign.set_position(*done as u64);
            }
            Event::Wait {
                what,
                elapsed_s,
                total_s,
            } => {
                self.current.set_style(Self::wait_style());
                self.current.set_prefix(what.to_string());
                self.current.set_length((*total_s * 10.0) as u64);
                self.current.set_position((*elapsed_s * 10.0) as u64);
                self.current
                    .set_message(format!("{elapsed_s:.0}/{total_s:.0} s"));
            }
            Event::MigrationStarted {
                index,
                total,
                migration_id,
            } => {
                self.campaign.set_length(*total as u64);
                self.campaign.set_position(*index as u64);
                self.current.set_style(Self::bytes_style());
                self.current.set_prefix("migration");
                self.current.set_position(0);
                self.current.set_message(migration_id.clone());
            }
            Event::MigrationProgress {
                transferred_bytes,
                expected_bytes,
                ..
            } => {
                self.current.set_length(*expected_bytes);
                self.current.set_position(*transferred_bytes);
            }
            Event::MigrationFinished {
                index,
                total,
                migration_id,
                outcome,
            } => {
                self.campaign.set_length(*total as u64);
                self.campaign.set_position(*index as u64 + 1);
                let _ = self.multi.println(format!("{migration_id}: {outcome}"));
            }
            Event::Meters(m) => {
                let s: Vec<String> = m
                    .iter()
                    .map(|(h, n, w)| {
                        format!(
                            "{h} {} ({n} samples)",
                            w.map_or("-".into(), |w| format!("{w:.1} W"))
                        )
                    })
                    .collect();
                self.meters.set_message(s.join("   "));
            }
        }
    }
}
