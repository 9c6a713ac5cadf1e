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
    /// Shipped example campaign whose real QEMU migrations the emulated power follows
    #[arg(long, default_value = "datasets/examples/campaign")]
    pub examples: PathBuf,
    /// How many of its migrations to replay (spread over their V_mig range)
    #[arg(long, default_value_t = 6)]
    pub migrations: usize,
}

/// Run the demo.
pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let out_dir = a.out.join(format!("run-{stamp}"));
    let cancel = super::meter::cancel_on_signals()?;
    let migrations_dir = a.examples.join("migrations");
    let plan = match datasets::migrations::read_migrations(&migrations_dir) {
        Ok(rows) => match DemoPlan::from_migrations(&rows, a.migrations) {
            Some(p) => {
                println!(
                    "replaying {} real QEMU migrations recorded by the collector in {}",
                    p.migrations.len(),
                    migrations_dir.display()
                );
                println!(
                    "emulated extra power while migrating: source {} W + {} J per MB sent, destination {} W + {} J per MB",
                    calibrate::demo::MIGRATING_CONST_W,
                    calibrate::demo::SOURCE_J_PER_MB,
                    calibrate::demo::MIGRATING_CONST_W,
                    calibrate::demo::DESTINATION_J_PER_MB
                );
                p
            }
            None => {
                println!(
                    "{}: fewer than 3 usable migrations; using the built-in plan",
                    migrations_dir.display()
                );
                DemoPlan::builtin()
            }
        },
        Err(e) => {
            println!(
                "no example migrations ({e}); using the built-in plan of synthetic migrations"
            );
            DemoPlan::builtin()
        }
    };
    let opts = DemoOptions {
        out_dir: out_dir.clone(),
        plan,
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
    if let Some(m) = &report.energy_model {
        println!("  energy model (coefficient file): {}", m.display());
    }
    println!();
    println!(
        "Emulated: the two power meters and the hosts' power draw (following the migrations' times and volumes as said above)."
    );
    println!("Real: serial protocol over pseudo-terminals, capture, journal, Parquet, baseline, integration, model fit.");
    Ok(ExitCode::SUCCESS)
}
