//! `migwatt calibrate ...`: migration records from Xen, QEMU and libvirt logs, and live QEMU
//! migrations driven through QMP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context};
use calibrate::collect::{self, MigrateOptions};
use calibrate::output::{safe_name, write_atomic, write_datasets, write_jsonl};
use calibrate::verify::VerifyMethod;
use calibrate::{ingest_file, IngestOptions, LogKind};

/// `migwatt calibrate` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CalibrateCommand {
    /// Calibrate a pair of hosts end to end from a campaign config (resumable)
    Run(super::campaign::RunArgs),
    /// Write a commented example campaign config
    Init(super::campaign::InitArgs),
    /// Read hypervisor migration logs into the migrations and rounds datasets
    Ingest(IngestArgs),
    /// Drive one live QEMU migration through QMP, record it and write its rows
    #[command(after_help = MIGRATE_AFTER)]
    Migrate(MigrateArgs),
    /// Measure a running VM's dirty rate, hot set and non-zero memory before migrating it
    #[command(after_help = PROBE_AFTER)]
    Probe(ProbeArgs),
    /// Write the integration windows (source and destination) of a migrations dataset
    Windows(WindowsArgs),
    /// Render a campaign folder's report (report.html, report.md) from its summary.json
    #[command(long_about = REPORT_ABOUT)]
    Report(ReportArgs),
}

const REPORT_ABOUT: &str = "\
Render the report of a calibration campaign from DIR/summary.json.

Writes DIR/report.html, one self-contained page to open in any browser (inline CSS and \
SVG plots, no scripts, nothing fetched from the network), and DIR/report.md with the same \
sections, its plots as DIR/report-plots/*.svg. Sections: summary (accepted or not, what \
was emulated and what was real), verdicts (each acceptance threshold, measured against \
required), power (each host's trace with P_0 and the migration windows), energy \
(E_mig against V_mig with the fitted line), gamma (observed against predicted), residuals \
(of every model), migrations (with failures and their reasons) and files.

Only summary.json is required: an input it names that is missing or unreadable (no gamma \
model, no rounds, ...) is reported in its section and printed as a warning. Re-running \
replaces the report atomically.";

/// Arguments of `calibrate report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Campaign folder holding summary.json (the report is written there)
    pub dir: PathBuf,
}

/// Log formats of `ingest`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// xend.log / libxc save output (Xen 3.x iteration lines, Xen 4.x progress lines)
    Xen,
    /// JSON lines of query-migrate replies and QMP events (as `calibrate migrate` records)
    Qemu,
    /// Successive `virsh domjobinfo` outputs
    Libvirt,
}

/// Output formats of `ingest`.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// DIR/migrations/*.parquet and DIR/rounds/*.parquet
    Parquet,
    /// JSON lines on stdout (`dataset` says migrations or rounds)
    Jsonl,
}

/// Arguments of `calibrate ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Log format
    #[arg(value_enum)]
    pub kind: Kind,
    /// Log files
    #[arg(required = true, value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    /// Output folder (required for --file-type parquet)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    #[arg(long = "out", hide = true, value_parser = super::Renamed("--out-dir DIR"))]
    _out: Option<String>,
    /// Workload label for every migration
    #[arg(long)]
    pub workload: Option<String>,
    /// VM name (overrides what the log says)
    #[arg(long)]
    pub vm: Option<String>,
    /// Source host name (as in the samples dataset)
    #[arg(long)]
    pub source_host: Option<String>,
    /// Destination host name
    #[arg(long)]
    pub dest_host: Option<String>,
    /// Type of what is written
    #[arg(long, value_enum, default_value = "parquet")]
    pub file_type: Format,
    #[arg(long = "format", hide = true, value_parser = super::Renamed("--file-type parquet|jsonl"))]
    _format: Option<String>,
}

/// Arguments of `calibrate migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Source QEMU's QMP unix socket
    #[arg(long)]
    pub qmp: PathBuf,
    /// Destination QEMU's QMP unix socket (QEMU started with -incoming)
    #[arg(long)]
    pub dest_qmp: PathBuf,
    /// Migration URI, e.g. unix:/tmp/relay.sock or tcp:127.0.0.1:4444
    #[arg(long)]
    pub uri: String,
    /// QEMU max-bandwidth, a rate such as 32MiB/s, 32MB/s or 800Mbit/s
    #[arg(long, value_name = "RATE", value_parser = super::quantity::rate)]
    pub bandwidth: Option<super::quantity::Rate>,
    /// QEMU downtime-limit, whole milliseconds such as 50ms or 1s
    #[arg(long, value_name = "DURATION", value_parser = super::quantity::duration)]
    pub downtime_limit: Option<Duration>,
    /// Turn QEMU's auto-converge capability on
    #[arg(long)]
    pub auto_converge: bool,
    /// Cancel the migration (recorded as not converged) after this long
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = super::quantity::duration)]
    pub timeout: Duration,
    /// Output folder: raw/, migrations/, rounds/
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    #[arg(long = "out", hide = true, value_parser = super::Renamed("--out-dir DIR"))]
    _out: Option<String>,
    /// Workload label
    #[arg(long)]
    pub workload: Option<String>,
    /// VM name
    #[arg(long, default_value = "vm")]
    pub vm: String,
    /// Sample the guest's dirtying rate for this long (whole seconds, rounded up) before migrating
    #[arg(long, value_name = "DURATION", value_parser = super::quantity::duration)]
    pub dirty_rate_sample: Option<Duration>,
    /// Do not probe the VM before migrating (by default `calibrate probe` runs first, about
    /// 16 s, and its D, hot set and non-zero share go into the record)
    #[arg(long)]
    pub no_probe: bool,
    /// Source host name
    #[arg(long, default_value = "source")]
    pub source_host: String,
    /// Destination host name
    #[arg(long, default_value = "destination")]
    pub dest_host: String,
    /// Prove the migration correct: keep the destination paused after the migration, compare
    /// all guest RAM of the paused source and destination page by page, and resume the
    /// destination only if every page matches (exit status 4 otherwise)
    #[arg(long)]
    pub verify: bool,
    /// Shell command run while both guests are paused after the migration, before the check
    /// (snapshots, inspection, a lab proof that the check catches a corrupted page); its
    /// environment holds MIGWATT_SOURCE_QMP and MIGWATT_DEST_QMP, the QMP sockets (the
    /// collector lets go of them while it runs)
    #[arg(long, value_name = "CMD")]
    pub paused_hook: Option<String>,
    /// How --verify reads guest RAM
    #[arg(long, value_enum, default_value = "auto", requires = "verify")]
    pub verify_method: VerifyVia,
}

/// Ways `--verify` reads guest RAM.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum VerifyVia {
    /// process-memory when permitted, else pmemsave
    Auto,
    /// Read each QEMU process's memory (/proc/PID/mem, the PID from the QMP socket's peer):
    /// at memory speed; needs the right to read it (same user and ptrace policy, or root)
    ProcessMemory,
    /// QMP pmemsave of each range on both sides at once into named pipes (slower; QEMU copies)
    Pmemsave,
}

const MIGRATE_AFTER: &str = "\
With --verify (or --paused-hook) the destination must be waiting with -incoming: the collector \
sends it `stop`, which keeps it paused after the migration as -S does (QEMU's query-status \
cannot tell whether -S was given). Once the migration completes, both guests are paused: the \
hook runs, then every ram/rom range of the system address space is read on both sides and \
compared per 4 KiB page (--verify-method: straight from each QEMU process's memory, located \
with HMP info ramblock, or with QMP pmemsave into named pipes in the temporary folder; either \
way both QEMUs must run on this machine); the destination is resumed (cont) only when all \
pages match. A mismatch prints the count and the first guest-physical addresses, keeps the \
record (memory_verified = false) and leaves the destination paused. The downtime is then \
source STOP to the destination's MIGRATION completed event (t_down_method \
source_stop_destination_completed); the check's time is in the raw log's `verify` line.

Exit status: 0 the migration completed (and, with --verify, every page matched); 4 it failed, \
was cancelled (--timeout) or did not verify (a mismatch, or the check could not run); 1 an \
error before anything was recorded, or after the record was written (see the message); 2 bad \
arguments. Environment of the paused hook: MIGWATT_SOURCE_QMP, MIGWATT_DEST_QMP.";

/// Output formats of `calibrate probe` on stdout.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ProbeFormat {
    /// One line per window and the fit
    Text,
    /// The probe file's JSON
    Json,
}

/// Arguments of `calibrate probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The running VM's QMP unix socket
    #[arg(long)]
    pub qmp: PathBuf,
    /// Window lengths, comma-separated durations (at least 1 ms each)
    #[arg(long, value_name = "DURATIONS", value_delimiter = ',', default_value = "1s,2s,4s,8s", value_parser = super::quantity::duration)]
    pub windows: Vec<Duration>,
    /// Skip the non-zero share (one pass over guest RAM with pmemsave)
    #[arg(long)]
    pub no_nonzero: bool,
    /// Probe file to write (JSON; `predict --probe FILE` reads it)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format on stdout
    #[arg(long, value_enum, default_value = "text")]
    pub format: ProbeFormat,
}

const PROBE_AFTER: &str = "\
For each window, QMP calc-dirty-rate (mode page-sampling, 10000 sampled pages per GiB; under \
TCG dirty-bitmap reports nothing and dirty-ring needs KVM) gives the data the guest dirtied; \
min(D w, H) fitted to the windows gives the dirty rate D and the hot set H (none when the \
dirty set kept growing linearly). Then guest RAM is read once with pmemsave through a pipe in \
the temporary folder (so QEMU must run on this machine) and its all-zero pages counted: the \
first pre-copy round sends only the others in full. The guest keeps running throughout.

Exit status: 0 done; 1 an error (QMP, the socket); 2 bad arguments; 130/143 stopped by \
SIGINT/SIGTERM.";

/// Arguments of `calibrate windows`.
#[derive(Debug, clap::Args)]
pub struct WindowsArgs {
    /// Migrations dataset (a file or a folder such as OUT/migrations)
    #[arg(long, value_name = "PATH")]
    pub migrations: PathBuf,
    /// Windows file to write (.parquet, or .csv)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Run a `calibrate` subcommand.
pub fn run(c: CalibrateCommand) -> anyhow::Result<ExitCode> {
    match c {
        CalibrateCommand::Run(a) => super::campaign::run(a),
        CalibrateCommand::Init(a) => super::campaign::init(a),
        CalibrateCommand::Ingest(a) => ingest(a),
        CalibrateCommand::Migrate(a) => migrate(a),
        CalibrateCommand::Probe(a) => probe(a),
        CalibrateCommand::Windows(a) => windows(a),
        CalibrateCommand::Report(a) => report(a),
    }
}

fn ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    check_names(&[
        ("--vm", "VM name", a.vm.as_deref()),
        ("--source-host", "host name", a.source_host.as_deref()),
        ("--dest-host", "host name", a.dest_host.as_deref()),
    ])?;
    let kind = match a.kind {
        Kind::Xen => LogKind::Xen,
        Kind::Qemu => LogKind::Qemu,
        Kind::Libvirt => LogKind::Libvirt,
    };
    if a.file_type == Format::Parquet && a.out_dir.is_none() {
        bail!("--out-dir DIR is required with --file-type parquet");
    }
    let opts = IngestOptions {
        workload: a.workload,
        vm: a.vm,
        source_host: a.source_host,
        destination_host: a.dest_host,
    };
    let inputs: Vec<(&str, &std::path::Path)> =
        a.logs.iter().map(|l| ("LOG", l.as_path())).collect();
    let _io = super::guard_io(&inputs, &[])?;
    let mut all = Vec::new();
    let mut problems = 0usize;
    for log in &a.logs {
        let parsed = ingest_file(kind, log, &opts)?;
        for p in &parsed.problems {
            errln!("warning: {p}");
        }
        problems += parsed.problems.len();
        all.extend(parsed.migrations);
    }
    match a.file_type {
        Format::Jsonl => {
            let mut text = Vec::new();
            write_jsonl(&mut text, &all).context("encoding JSON lines")?;
            crate::stdout::write_out_bytes(&text);
        }
        Format::Parquet => {
            let out = a.out_dir.expect("checked above");
            let w = write_datasets(&out, &all)?;
            let rounds: usize = all.iter().map(|m| m.rounds.len()).sum();
            outln!(
                "{} migrations, {rounds} rounds, {problems} problems -> {}, {}",
                all.len(),
                w.migrations.display(),
                w.rounds.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Names that end up in migration ids and host names of the datasets: the one rule.
fn check_names(names: &[(&str, &str, Option<&str>)]) -> anyhow::Result<()> {
    for (option, what, name) in names {
        if let Some(name) = name {
            datasets::names::check_name(what, name).with_context(|| option.to_string())?;
        }
    }
    Ok(())
}

fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    check_names(&[
        ("--vm", "VM name", Some(&a.vm)),
        ("--source-host", "host name", Some(&a.source_host)),
        ("--dest-host", "host name", Some(&a.dest_host)),
    ])?;
    let bandwidth = a.bandwidth.map(|b| b.bytes_per_s.round() as u64);
    if bandwidth == Some(0) {
        bail!("--bandwidth must be at least 1B/s");
    }
    let downtime_limit_ms = match a.downtime_limit {
        Some(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            bail!("--downtime-limit {d:?}: QEMU takes whole milliseconds")
        }
        Some(d) => Some(d.as_millis() as u64),
        None => None,
    };
    if a.timeout.is_zero() {
        bail!("--timeout must be longer than 0s");
    }
    if a.dirty_rate_sample.is_some_and(|d| d.is_zero()) {
        bail!("--dirty-rate-sample must be longer than 0s");
    }
    let opts = MigrateOptions {
        source_qmp: a.qmp,
        dest_qmp: a.dest_qmp,
        uri: a.uri,
        bandwidth_bytes_per_s: bandwidth,
        downtime_limit_ms,
        auto_converge: a.auto_converge,
        timeout: a.timeout,
        poll_interval: Duration::from_millis(50),
        dirty_rate_sample_s: a.dirty_rate_sample.map(|d| d.as_secs_f64()),
        probe: (!a.no_probe).then(calibrate::probe::ProbeOptions::default),
        vm: a.vm,
        workload: a.workload,
        source_host: a.source_host,
        destination_host: a.dest_host,
        verify: a.verify,
        paused_hook: a.paused_hook,
        paused_hook_dir: None,
        verify_method: match a.verify_method {
            VerifyVia::Auto => VerifyMethod::Auto,
            VerifyVia::ProcessMemory => VerifyMethod::ProcessMemory,
            VerifyVia::Pmemsave => VerifyMethod::Pmemsave,
        },
        hold_before_verify: Duration::ZERO,
    };
    // Never raised here: the timeout bounds the run; the flag is for library callers.
    let cancel = AtomicBool::new(false);
    let got = collect::migrate(&opts, &cancel, &mut |m| progressln!("{m}"))?;
    for p in &got.problems {
        errln!("warning: {p}");
    }
    if let Some(h) = got.hook.as_ref().filter(|h| !h.success) {
        eprintln!(
            "warning: the paused hook failed ({}): {}",
            h.status, h.command
        );
    }
    let m = &got.migration;
    let raw = a
        .out_dir
        .join("raw")
        .join(format!("{}.qmp.jsonl", safe_name(&m.row.migration_id)));
    write_atomic(&raw, &got.log)?;
    let w = write_datasets(&a.out_dir, std::slice::from_ref(m))?;
    outln!(
        "{}: {} ({}), {} rounds, {} bytes in {:.3} s, downtime {} -> {}, {}, {}",
        m.row.migration_id,
        m.row.status,
        got.qemu_version.as_deref().unwrap_or("QEMU ?"),
        m.row.rounds,
        m.row.v_mig_bytes,
        m.row.t_mig_s,
        m.row.t_down_s.map_or("n/a".to_string(), |t| format!(
            "{:.3} s ({})",
            t, m.row.t_down_method
        )),
        raw.display(),
        w.migrations.display(),
        w.rounds.display()
    );
    outln!(
        "QEMU {} ({})",
        got.qemu_version.as_deref().unwrap_or("?"),
        got.accelerator.as_deref().unwrap_or("accelerator unknown")
    );
    if let Some(text) = got.verification_text() {
        outln!("{text}");
    }
    if !got.succeeded(a.verify) {
        if !m.row.converged {
            eprintln!("migration {}: not completed", m.row.status);
        }
        return Ok(ExitCode::from(4));
    }
    if let Some(e) = &got.error_after {
        bail!("{e} (the migration is recorded in {})", raw.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn probe(a: ProbeArgs) -> anyhow::Result<ExitCode> {
    let outputs: Vec<(&str, &std::path::Path)> =
        a.out.iter().map(|o| ("--out", o.as_path())).collect();
    let _io = super::guard_io(&[], &outputs)?;
    let _cancel = crate::signals::cancel_on_signals()?;
    let opts = calibrate::probe::ProbeOptions {
        windows_s: a.windows.iter().map(Duration::as_secs_f64).collect(),
        nonzero_share: !a.no_nonzero,
    };
    let mut q = calibrate::qmp::Qmp::connect(&a.qmp, Duration::from_secs(10))?;
    let p = calibrate::probe::probe(&mut q, &opts, &crate::signals::STOP, &mut |m| errln!("{m}"))?;
    let json = serde_json::to_string_pretty(&p).context("encoding the probe")?;
    if let Some(out) = &a.out {
        write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    match a.format {
        ProbeFormat::Json => outln!("{json}"),
        ProbeFormat::Text => {
            const MIB: f64 = 1048576.0;
            for w in &p.windows {
                outln!(
                    "window {} s: {:.1} MiB dirty ({:.2} MiB/s)",
                    w.window_s,
                    w.dirty_bytes / MIB,
                    w.dirty_rate_bytes_per_s / MIB
                );
            }
            outln!(
                "D {:.2} MiB/s, hot set {}, non-zero share {} of {:.0} MiB{}",
                p.dirty_rate_bytes_per_s / MIB,
                p.hot_set_bytes
                    .map_or("none (linear growth)".into(), |h| format!(
                        "{:.1} MiB",
                        h / MIB
                    )),
                p.nonzero_share
                    .map_or("not measured".into(), |z| format!("{:.1} %", 100.0 * z)),
                p.vm_mem_bytes / MIB,
                a.out
                    .as_ref()
                    .map_or(String::new(), |o| format!(" -> {}", o.display()))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn windows(a: WindowsArgs) -> anyhow::Result<ExitCode> {
    let _io = super::guard_io(&[("--migrations", &a.migrations)], &[("--out", &a.out)])?;
    let rows = datasets::migrations::read_migrations(&a.migrations)?;
    let (w, skipped) = datasets::migrations::windows_of(&rows);
    for r in &skipped {
        errln!(
            "warning: {}: no start and end times, no window",
            r.migration_id
        );
    }
    if w.is_empty() {
        bail!(
            "{}: no migration has start and end times",
            a.migrations.display()
        );
    }
    datasets::windows::write_windows(&a.out, &w)?;
    outln!("{} windows -> {}", w.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let files = calibrate::report::render(&a.dir)?;
    for w in &files.warnings {
        errln!("warning: {w}");
    }
    outln!("report: {}", files.html.display());
    outln!(
        "markdown: {} ({} plots in {})",
        files.markdown.display(),
        files.plots.len(),
        a.dir.join(calibrate::report::PLOTS_DIR).display()
    );
    Ok(ExitCode::SUCCESS)
}
