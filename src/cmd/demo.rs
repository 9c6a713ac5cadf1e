//! `migwatt demo`: the README's main job.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use calibrate::campaign::{Progress, RunOptions};
use calibrate::demo::{run_demo, DemoMigrations};

/// Arguments of `migwatt demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The demo runs `migwatt calibrate run` on built-in defaults, without hardware: two emulated \
Watts up? PRO meters on pseudo-terminals whose power follows what the hosts do (a linear \
host power model of CPU time and link bytes, replayed from the recorded activity), and \
migrations replayed from real QEMU migrations (those of datasets/examples/campaign, built \
into the binary, so the demo runs from any folder) or, with --qemu, real live migrations of \
a tiny local QEMU guest, each verified page by page before its destination runs (exit status \
4 if one did not verify). It captures, measures P_0, integrates, trains, evaluates against \
the acceptance thresholds and writes report.html. Its config is saved as demo.toml in the \
run folder.

Exit status: 0 once the pipeline ran end to end, whatever the acceptance verdict (the demo \
shows a calibration; with power that follows CPU time as well as bytes, E_mig = alpha V_mig + \
beta may well miss the thresholds, and the report says by how much); 4 if a --qemu migration \
did not verify; 1 on failure. `migwatt calibrate run DEMO.toml` judges the same run as a \
calibration and exits 3 when it is NOT ACCEPTED.")]
pub struct DemoArgs {
    /// Folder for the demo's runs; each run gets its own timestamped subfolder
    #[arg(long, value_name = "DIR", default_value = "migwatt-demo")]
    pub out_dir: PathBuf,
    #[arg(long = "out", hide = true, value_parser = super::Renamed("--out-dir DIR"))]
    _out: Option<String>,
    /// Campaign folder whose real QEMU migrations (migrations/, rounds/) are replayed
    /// [default: the example campaign built into the binary]
    #[arg(long, value_name = "DIR")]
    pub examples_dir: Option<PathBuf>,
    #[arg(long = "examples", hide = true, value_parser = super::Renamed("--examples-dir DIR"))]
    _examples: Option<String>,
    /// How many of its migrations to replay (spread over their V_mig range)
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub replay_count: usize,
    #[arg(long = "migrations", hide = true, value_parser = super::Renamed("--replay-count N"))]
    _migrations: Option<String>,
    /// Run real live migrations of a local QEMU guest instead (needs QEMU and the guest of
    /// scripts/setup-qemu.sh; takes a few minutes)
    #[arg(long)]
    pub qemu: bool,
    /// Guest folder for --qemu (vmlinuz, initramfs.cpio.gz)
    #[arg(
        long,
        value_name = "DIR",
        env = "MIGWATT_QEMU_GUEST_DIR",
        default_value = "target/qemu-guest"
    )]
    pub guest_dir: PathBuf,
    #[arg(long = "guest", hide = true, value_parser = super::Renamed("--guest-dir DIR"))]
    _guest: Option<String>,
}

/// Run the demo.
pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let out_dir = a.out_dir.join(format!("run-{stamp}"));
    let migrations = if a.qemu {
        if !a.guest_dir.join("vmlinuz").is_file() {
            bail!(
                "{}: no guest kernel; run scripts/setup-qemu.sh (it installs QEMU and builds the guest), or pass --guest-dir DIR",
                a.guest_dir.display()
            );
        }
        DemoMigrations::Qemu {
            guest: std::fs::canonicalize(&a.guest_dir)
                .with_context(|| a.guest_dir.display().to_string())?,
        }
    } else {
        let examples = match &a.examples_dir {
            Some(dir) if !dir.join("migrations").is_dir() => {
                bail!("--examples-dir {}: no migrations/ folder", dir.display())
            }
            Some(dir) => {
                Some(std::fs::canonicalize(dir).with_context(|| dir.display().to_string())?)
            }
            None => None,
        };
        DemoMigrations::Replay {
            examples,
            count: a.replay_count,
        }
    };
    outln!(
        "migwatt demo: the calibration campaign (`migwatt calibrate run`) on emulated meters; output in {}",
        out_dir.display()
    );
    match &migrations {
        DemoMigrations::Replay {
            examples: Some(examples),
            count,
        } => outln!(
            "EMULATED: {count} migrations replayed from real QEMU migrations recorded by the collector in {}",
            examples.join("migrations").display()
        ),
        DemoMigrations::Replay {
            examples: None,
            count,
        } => outln!(
            "EMULATED: {count} migrations replayed from real QEMU migrations recorded by the collector \
             (datasets/examples/campaign, built into migwatt; written to {})",
            out_dir.join(calibrate::demo::EMBEDDED_DIR).display()
        ),
        DemoMigrations::Qemu { guest } => outln!(
            "REAL: live migrations of a tiny QEMU guest ({}) between two local QEMU processes, each verified: \
             all guest RAM of the paused source and destination compared page by page before the destination runs",
            guest.display()
        ),
    }
    let e = calibrate::campaign::config::EmulationConfig::default();
    outln!(
        "EMULATED: two Watts up? PRO meters on pseudo-terminals whose power follows what each host does \
         (the linear host power model: P = P_idle + {} W per busy core of its QEMU processes + {} J per MB sent \
         (source) or {} J per MB received (destination) through the migration link; replays use the activity \
         recorded with each migration; the report names the model that drew the power)",
        e.cpu_w_per_core, e.source_j_per_mb, e.destination_j_per_mb,
    );
    outln!(
        "REAL: the serial protocol, capture, journal, Parquet datasets, P_0, integration, model fits, verdicts and report"
    );
    let cancel = crate::signals::cancel_on_signals()?;
    let progress: Arc<dyn Progress> = if std::io::stderr().is_terminal() && !crate::stdout::quiet()
    {
        Arc::new(super::campaign::Bars::new())
    } else {
        Arc::new(super::campaign::Lines::default())
    };
    let opts = RunOptions {
        cancel,
        progress: progress.clone(),
        redo: Vec::new(),
        emulated_notes: Vec::new(),
    };
    let got = run_demo(&out_dir, &migrations, &opts);
    drop(opts);
    drop(progress);
    let (config, outcome) = got?;
    super::campaign::print_outcome(&outcome);
    let m = &outcome.summary.migrations;
    let unverified = !m.memory_mismatched.is_empty() || !m.memory_not_checked.is_empty();
    outln!();
    outln!("the demo's config: {}", config.display());
    outln!(
        "rerun or resume it with: migwatt calibrate run {}",
        config.display()
    );
    match outcome
        .report
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "html"))
    {
        Some(r) => outln!("open the report: {}", r.display()),
        None => outln!("no report was written (see the messages above)"),
    }
    if unverified {
        return Ok(ExitCode::from(4));
    }
    if !outcome.summary.accepted {
        // The verdict is the demo's result, not its failure: say why the status is still 0.
        outln!(
            "the demo exits 0: NOT ACCEPTED is what this calibration found (see the report); \
             `migwatt calibrate run {}` would exit 3 on it",
            config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
