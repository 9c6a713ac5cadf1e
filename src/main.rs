//! `migwatt`: measure and model what a live migration of a virtual machine costs.
//!
//! This binary only parses arguments and calls the library crates; see README.md.

use clap::{Parser, Subcommand};

#[macro_use]
mod stdout;
mod cmd;
mod signals;

mod alloc;
#[cfg(test)]
mod conventions;

#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

/// Measure and model the cost of VM live migration: time, downtime, traffic and energy.
///
/// Typical flow: capture power with `meter capture`, find each host's static power with
/// `meter baseline`, integrate energy over migration windows with `integrate`, fit models
/// with `train`, inspect them with `models`. `demo` runs the whole pipeline on an emulated
/// meter without any hardware.
#[derive(Debug, Parser)]
#[command(
    name = "migwatt",
    version,
    about,
    long_about,
    propagate_version = true,
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// No progress messages on stderr (results, warnings and errors are still printed)
    #[arg(long, global = true, env = "MIGWATT_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// The conventions every command follows (`migwatt --help`; also in README.md).
const AFTER_HELP: &str = "\
Exit status (every command):
  0    success
  1    failure: the error is printed once on stderr, each cause after a colon
  2    usage: an option or value the command line does not accept
  3    acceptance thresholds not met (calibrate run; the demo reports its verdict and exits 0)
  4    a migration failed, was cancelled or did not verify (calibrate migrate, calibrate run,
       demo)
  130  stopped cleanly after Ctrl-C (SIGINT)
  143  stopped cleanly after SIGTERM
A clean stop leaves no temporary file and what was published intact; meter capture and meter
emulate run until stopped, and end so too.

Options: --format picks the output format (text or json); --file-type the type of the files
written. Options ending in -dir take a folder, the others files (PATH: a file or a folder).
An option that was renamed is refused with its new name.

Environment:
  MIGWATT_QUIET           as --quiet: no progress messages on stderr (any value but 0,
                          false, no, off or empty)
  MIGWATT_QEMU_GUEST_DIR  demo --qemu: the guest folder (as --guest-dir)
  MIGWATT_REDFISH_USERNAME, MIGWATT_REDFISH_PASSWORD
                          a redfish+http source's credentials when its URL names no
                          credentials file
  MIGWATT_IPMI_USERNAME, MIGWATT_IPMI_PASSWORD
                          an ipmi:// source's credentials when it names no credentials
                          file (handed to ipmitool through its environment, never its
                          command line)
  MIGWATT_IPMITOOL        the ipmitool program ipmi:// sources run (default: ipmitool on
                          the PATH)
  MIGWATT_SOURCE_QMP, MIGWATT_DEST_QMP
                          set by migwatt for the paused hook (calibrate migrate --paused-hook,
                          a campaign's paused_hook): the QMP sockets of both QEMUs";

#[derive(Debug, Subcommand)]
enum Command {
    /// Watts up? PRO meters: capture, decode, emulate, inspect, baseline
    #[command(subcommand)]
    Meter(cmd::meter::MeterCommand),
    /// Integrate (P_t - P_0) over migration windows into energy observations
    Integrate(cmd::energy::IntegrateArgs),
    /// Fit models (energy, gamma, any linear) into versioned coefficient files
    #[command(subcommand)]
    Train(cmd::train::TrainCommand),
    /// List and show coefficient files
    #[command(subcommand)]
    Models(cmd::train::ModelsCommand),
    /// Collect migration records from Xen, QEMU (QMP) and libvirt; calibrate hosts
    #[command(subcommand)]
    Calibrate(cmd::calibrate::CalibrateCommand),
    /// Run the pipeline end to end on emulated meters and shipped example data
    Demo(cmd::demo::DemoArgs),
    /// Predict a migration's time, downtime, traffic and energy from coefficient files
    Predict(cmd::predict::PredictArgs),
    /// Rank candidate VMs by the cost of migrating them (eq 18)
    Rank(cmd::predict::RankArgs),
    /// Compare predictions with measured migrations (MAPE, decision trials)
    Evaluate(cmd::predict::EvaluateArgs),
    /// Check dataset files against their schemas (columns, types, units, order, keys)
    #[command(subcommand)]
    Datasets(cmd::datasets::DatasetsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    stdout::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Meter(c) => cmd::meter::run(c),
        Command::Integrate(a) => cmd::energy::integrate(a),
        Command::Train(c) => cmd::train::run_train(c),
        Command::Models(c) => cmd::train::run_models(c),
        Command::Calibrate(c) => cmd::calibrate::run(c),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Predict(a) => cmd::predict::run_predict(a),
        Command::Rank(a) => cmd::predict::run_rank(a),
        Command::Evaluate(a) => cmd::predict::run_evaluate(a),
        Command::Datasets(c) => cmd::datasets::run(c),
    };
    // Exit statuses (AFTER_HELP): 0 ok, 1 failure, 2 usage (clap), 3 thresholds not met,
    // 4 a migration not completed or verified, 128 + N after a clean stop on signal N
    // (130 SIGINT, 143 SIGTERM), whatever the command returned; a closed stdout changes
    // nothing.
    let code = match (result, signals::received()) {
        (Err(e), Some(sig)) => {
            errln!("stopped by {}: {e:#}", signals::name(sig));
            std::process::ExitCode::from(128 + sig as u8)
        }
        // A command that ends cleanly because it was asked to stop still says so.
        (Ok(_), Some(sig)) => {
            errln!("stopped by {}", signals::name(sig));
            std::process::ExitCode::from(128 + sig as u8)
        }
        (Ok(code), None) => code,
        (Err(e), None) => {
            errln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    };
    match stdout::finish() {
        Some(e) => {
            errln!("error: writing standard output: {e}");
            std::process::ExitCode::from(1)
        }
        None => code,
    }
}
