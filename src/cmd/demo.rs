//! `migwatt demo`: the README's main job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use calibrate::demo::{run_demo, DemoOptions, DemoPlan};

/// Arguments of `migwatt demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's runs; each run gets its own timestamped subfolder
    #[arg(long, default_value = "migwatt-demo")]
    pub out: PathBuf,
}

/// Run the demo.
pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let out_dir = a.out.join(format!("run-{stamp}"));
    let cancel = super::meter::cancel_on_signals()?;
    let opts = DemoOptions {
        out_dir: out_dir.clone(),
        plan: DemoPlan::builtin(),
    };
    println!(
        "migwatt demo: the measurement pipeline on emulated hardware; output in {}",
        out_dir.display()
    );
    let progress = Arc::new(super::meter::StderrProgress::new());
    let report = run_demo(
        &opts,
        &cancel,
        &mut |line| println!("{line}"),
        Some(progress),
    )?;
    println!();
    println!("Where everything went:");
    println!(
        "  samples (Parquet, hive-partitioned): {}",
        report.samples_dir.display()
    );
    for (b, p) in &report.baselines {
        println!("  baseline of {}: {}", b.host, p.display());
    }
    println!("  migration windows: {}", report.windows_path.display());
    println!("  energy observations: {}", report.energy_path.display());
    println!(
        "  per-window data quality: {}",
        report.quality_path.display()
    );
    println!();
    println!(
        "Emulated: the two power meters and the hosts' power draw (a planned migration pattern)."
    );
    println!("Real: serial protocol over pseudo-terminals, capture, journal, Parquet, baseline, integration, model fit.");
    Ok(ExitCode::SUCCESS)
}
