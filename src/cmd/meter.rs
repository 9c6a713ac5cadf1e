//! `migwatt meter ...`: decode, capture, emulate, info, list, recover, baseline.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;
use meter::capture::{run_capture, CaptureConfig, CaptureSource, MeterStatus, ProgressSink};
use meter::decoder::{Decoder, Event, Rejection};
use meter::emulator::{EmulatorConfig, Faults, Profile};
use meter::protocol::{Packet, Reply, RECORD_FIELDS};
use meter::source::{NamedSource, SourceOptions};

use super::quantity;

/// `migwatt meter` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MeterCommand {
    /// Decode a raw serial capture into one record per line
    ///
    /// Reads bytes exactly as they came off the serial port (NULs, junk, truncated records
    /// and all) and writes every well-formed data record with all 18 fields in SI units;
    /// fields the meter did not send are null. A summary of rejected fragments, with their
    /// byte offsets, goes to stderr.
    Decode(DecodeArgs),
    /// Capture one or several meters into a Parquet dataset
    ///
    /// Meters are given with --port (a Watts up? PRO on a serial device) or --source
    /// (KIND:TARGET), as many as wanted. Writes DIR/host=NAME/date=YYYY-MM-DD/*.parquet. Samples are journaled as they arrive
    /// and fsynced every --flush-every; a crash loses nothing older than that (run
    /// `migwatt meter recover DIR`, or just capture again, to turn leftover journals into
    /// Parquet). Ctrl-C or SIGTERM flushes, stops the meters' logging and exits 0.
    Capture(CaptureArgs),
    /// Emulate a Watts up? PRO meter on a pseudo-terminal
    ///
    /// Prints the device path on the first line of stdout, then behaves like the meter:
    /// answers commands, logs, streams records at the interval (faster with --speed) with
    /// power from --profile and optional --faults. Runs until Ctrl-C or --duration.
    Emulate(EmulateArgs),
    /// Ask a meter for its version, header, status and settings
    Info(InfoArgs),
    /// List serial ports, marking FTDI 0403:6001 devices as likely meters
    List(ListArgs),
    /// Turn journals left by an interrupted capture into Parquet files
    Recover(RecoverArgs),
    /// Find a host's static power P_0 in captured samples
    Baseline(super::energy::BaselineArgs),
}

/// Output format of `meter decode`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DecodeFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// A Parquet file (needs --out).
    Parquet,
}

/// Arguments of `meter decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Raw capture file, or - for stdin
    #[arg(default_value = "-")]
    pub input: String,
    /// Type of what is written
    #[arg(long, value_enum, default_value_t = DecodeFormat::Jsonl)]
    pub file_type: DecodeFormat,
    #[arg(long = "format", hide = true, value_parser = super::Renamed("--file-type jsonl|csv|parquet"))]
    _format: Option<String>,
    /// Write here instead of stdout (required for parquet)
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// List every rejected fragment on stderr, not just the first ten
    #[arg(long)]
    pub all_rejections: bool,
}

/// Arguments of `meter capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Watts up? PRO to capture, on the serial device DEVICE (repeat for several meters;
    /// NAME is the host name, by default the device's file name)
    #[arg(
        long = "port",
        value_name = "[NAME=]DEVICE",
        required_unless_present = "sources",
        value_parser = port_spelling
    )]
    pub ports: Vec<String>,
    /// Power source to capture (repeatable, with --port too): wattsup:DEVICE (a Watts up? PRO
    /// on a serial device, as --port), emulated[:PROFILE] (an emulated one on a
    /// pseudo-terminal, PROFILE as in `meter emulate --profile`), rapl:[ROOT] (RAPL energy
    /// counters of the powercap tree, default /sys/class/powercap),
    /// prometheus+http://HOST:PORT/PATH?metric=NAME[&LABEL=VALUE] (one series of an
    /// exporter), redfish+http://BMC/redfish/v1/Chassis/ID[?credentials=FILE][&auth=session]
    /// (chassis power; FILE holds USER:PASSWORD, else the environment variables
    /// MIGWATT_REDFISH_USERNAME and MIGWATT_REDFISH_PASSWORD are used; basic authentication,
    /// or a Redfish session with auth=session) or
    /// ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME][&cipher=N] (power over IPMI RMCP+
    /// through ipmitool: DCMI Get Power Reading, else the SDR sensor NAME or the first in
    /// Watts; credentials from FILE or MIGWATT_IPMI_USERNAME and MIGWATT_IPMI_PASSWORD)
    #[arg(long = "source", value_name = "[NAME=]KIND:TARGET", value_parser = source_spelling)]
    pub sources: Vec<String>,
    /// Samples dataset folder
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    #[arg(long = "out", hide = true, value_parser = super::Renamed("--out-dir DIR"))]
    _out: Option<String>,
    /// Logging interval asked of the meters: whole seconds, 1s to 1h
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = quantity::duration)]
    pub interval: Duration,
    /// Stop after this long (e.g. 90s, 15m, 2h); default: until Ctrl-C
    #[arg(long, value_name = "DURATION", value_parser = quantity::duration)]
    pub duration: Option<Duration>,
    /// Make samples durable at least this often
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = quantity::duration)]
    pub flush_every: Duration,
    /// Close a Parquet file after this long
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = quantity::duration)]
    pub segment: Duration,
    /// Reopen a meter that sent nothing for this long [default: max(5s, 3 intervals)]
    #[arg(long, value_name = "DURATION", value_parser = quantity::duration)]
    pub stall_timeout: Option<Duration>,
    /// Wait after clearing the meter's memory before starting logging
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = quantity::duration)]
    pub settle: Duration,
    /// Write the capture report (per-meter counts, gaps, files) as JSON here
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Serve live Prometheus metrics on http://ADDR/metrics while capturing. ADDR is
    /// IP:PORT, or PORT alone for loopback; port 0 picks a free port (the address is printed
    /// on stderr). Without ADDR: 127.0.0.1:9105
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:9105",
        value_parser = parse_metrics_addr
    )]
    pub metrics: Option<std::net::SocketAddr>,
}

fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    meter::metrics::parse_listen_addr(s).map_err(|e| e.to_string())
}

/// Arguments of `meter emulate`.
#[derive(Debug, clap::Args)]
pub struct EmulateArgs {
    /// Power profile: constant:W | trace:FILE.csv (time_s,watts) |
    /// bursts[:idle=W,peak=W,period=S,burst=S,start=S]
    #[arg(long, default_value = "bursts")]
    pub profile: String,
    /// Emulated seconds per real second (100 = 100x faster)
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Faults, comma separated: nul=P, truncate=P, junk=P, noprefix=P (per-record
    /// probabilities), banner, stall=START+SECONDS, disconnect=START+SECONDS (emulated time)
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Seed of the fault generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep a symlink to the current pty here (survives emulated disconnects)
    #[arg(long)]
    pub link: Option<PathBuf>,
    /// Log every generated record (JSON lines: k, t_s, watts, fault, delivered)
    #[arg(long)]
    pub sent_log: Option<PathBuf>,
    /// Stop after this much real time (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", value_parser = quantity::duration)]
    pub duration: Option<Duration>,
    /// Only answer a host whose port is set to this baud rate (old meters: 19200)
    #[arg(long)]
    pub baud: Option<u32>,
    /// Standard deviation of measurement noise added to the power, W
    #[arg(long, value_name = "W", default_value_t = 0.0)]
    pub noise_w: f64,
    /// Renamed --noise-w (refused, naming the new flag)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--noise-w"))]
    pub noise: Option<String>,
}

/// Arguments of `meter info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Serial device of a Watts up? PRO
    #[arg(
        long,
        value_name = "DEVICE",
        required_unless_present = "source",
        conflicts_with = "source"
    )]
    pub port: Option<PathBuf>,
    /// A source of any kind, spelled as in `meter capture --source` (KIND:TARGET): who
    /// answers and one reading
    #[arg(long, value_name = "KIND:TARGET", value_parser = source_spelling)]
    pub source: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
    #[arg(long = "json", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--format json"))]
    _json: Option<String>,
}

/// Arguments of `meter list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: super::Format,
    #[arg(long = "json", hide = true, num_args = 0..=1, default_missing_value = "", value_parser = super::Renamed("--format json"))]
    _json: Option<String>,
}

/// Arguments of `meter recover`.
#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Dataset folder given to `meter capture --out-dir`
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Run a `meter` subcommand.
pub fn run(c: MeterCommand) -> anyhow::Result<ExitCode> {
    match c {
        MeterCommand::Decode(a) => decode(a),
        MeterCommand::Capture(a) => capture(a),
        MeterCommand::Emulate(a) => emulate(a),
        MeterCommand::Info(a) => info(a),
        MeterCommand::List(a) => list(a),
        MeterCommand::Recover(a) => recover(a),
        MeterCommand::Baseline(a) => super::energy::baseline(a),
    }
}

fn decode(a: DecodeArgs) -> anyhow::Result<ExitCode> {
    let outputs: Vec<(&str, &std::path::Path)> =
        a.out.iter().map(|o| ("--out", o.as_path())).collect();
    let _io = super::guard_io(&[("INPUT", std::path::Path::new(&a.input))], &outputs)?;
    let mut bytes = Vec::new();
    if a.input == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        bytes = std::fs::read(&a.input).with_context(|| format!("reading {}", a.input))?;
    }
    if a.file_type == DecodeFormat::Parquet && a.out.is_none() {
        bail!("--file-type parquet needs --out FILE (Parquet is not written to a terminal)");
    }
    let mut records = Vec::new();
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut others = 0u64;
    let mut banners = Vec::new();
    let mut dec = Decoder::new();
    let mut sink = |e: Event| match e {
        Event::Packet {
            offset,
            packet: Packet::Reply(Reply::Data(r)),
        } => records.push((offset, r)),
        Event::Packet { .. } => others += 1,
        Event::Banner { offset, text } => banners.push((offset, text)),
        Event::Rejected(r) => rejections.push(r),
    };
    dec.feed(&bytes, &mut sink);
    dec.finish(&mut sink);
    let stats = dec.stats().clone();

    let rows: Vec<datasets::samples::RecordRow> = records
        .iter()
        .enumerate()
        .map(|(i, (off, r))| datasets::samples::RecordRow {
            seq: i as u64,
            byte_offset: *off,
            fields: r.si_fields(),
        })
        .collect();
    match a.file_type {
        DecodeFormat::Parquet => {
            let out = a.out.as_ref().expect("checked above");
            datasets::samples::write_records_file(out, &rows)?;
        }
        DecodeFormat::Jsonl | DecodeFormat::Csv => {
            let mut text = String::with_capacity(rows.len() * 200);
            if a.file_type == DecodeFormat::Csv {
                text.push_str("seq,byte_offset");
                for (name, _) in RECORD_FIELDS {
                    text.push(',');
                    text.push_str(name);
                }
                text.push('\n');
            }
            for r in &rows {
                if a.file_type == DecodeFormat::Jsonl {
                    let mut obj = serde_json::Map::new();
                    obj.insert("seq".into(), r.seq.into());
                    obj.insert("byte_offset".into(), r.byte_offset.into());
                    for (i, (name, _)) in RECORD_FIELDS.iter().enumerate() {
                        obj.insert((*name).into(), r.fields[i].into());
                    }
                    text.push_str(&serde_json::Value::Object(obj).to_string());
                } else {
                    text.push_str(&format!("{},{}", r.seq, r.byte_offset));
                    for f in &r.fields {
                        text.push(',');
                        if let Some(v) = f {
                            text.push_str(&v.to_string());
                        }
                    }
                }
                text.push('\n');
            }
            match &a.out {
                Some(p) => write_atomic(p, text.as_bytes())?,
                None => crate::stdout::write_out_bytes(text.as_bytes()),
            }
        }
    }
    errln!(
        "decoded {} records from {} bytes ({} other packets, {} banners, {} NUL bytes skipped); rejected {} fragments ({} bytes)",
        rows.len(),
        stats.bytes,
        others,
        banners.len(),
        stats.nul_bytes,
        stats.rejected,
        stats.rejected_bytes
    );
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    for r in &rejections {
        *by_kind.entry(r.kind.label()).or_default() += 1;
    }
    for (k, n) in &by_kind {
        errln!("  {k}: {n}");
    }
    let shown = if a.all_rejections {
        rejections.len()
    } else {
        10
    };
    for r in rejections.iter().take(shown) {
        let detail = match &r.kind {
            meter::decoder::RejectKind::Malformed(d) => format!(" ({d})"),
            _ => String::new(),
        };
        errln!(
            "  byte {}: {} fragment of {} bytes{detail}: {}",
            r.offset,
            r.kind.label(),
            r.len,
            r.excerpt
        );
    }
    if rejections.len() > shown {
        errln!(
            "  ... {} more (--all-rejections lists them all)",
            rejections.len() - shown
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Write a file atomically: temp sibling, fsync, rename.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(datasets::io::write_bytes_atomic(path, bytes)?)
}

/// Renders capture progress: a live line per meter on a terminal, events as log lines.
pub struct StderrProgress {
    tty: bool,
    state: Mutex<(Instant, usize)>,
}

impl StderrProgress {
    /// A renderer for stderr; live status only when stderr is a terminal.
    pub fn new() -> Self {
        StderrProgress {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new((Instant::now() - Duration::from_secs(1), 0)),
        }
    }
}

fn status_line(s: &MeterStatus) -> String {
    let watts = s
        .watts
        .map(|w| format!("{w:7.1} W"))
        .unwrap_or_else(|| "      - W".into());
    let err = s
        .last_error
        .as_deref()
        .map(|e| format!("  last error: {e}"))
        .unwrap_or_default();
    format!(
        "{:<12} {:<12} {watts}  {} samples  {} gaps  {} rejected{err}",
        s.name, s.state, s.samples, s.gaps, s.rejected
    )
}

impl ProgressSink for StderrProgress {
    fn status(&self, meters: &[MeterStatus]) {
        if !self.tty || crate::stdout::quiet() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0.elapsed() < Duration::from_millis(250) {
            return;
        }
        let mut out = String::new();
        if st.1 > 0 {
            out.push_str(&format!("\x1b[{}A", st.1));
        }
        for m in meters {
            out.push_str("\x1b[2K");
            out.push_str(&status_line(m));
            out.push('\n');
        }
        err!("{out}");
        *st = (Instant::now(), meters.len());
    }

    fn event(&self, message: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.tty && st.1 > 0 {
            // Print above the status block; it is redrawn on the next update.
            err!("\x1b[{}A\x1b[J", st.1);
            st.1 = 0;
            st.0 = Instant::now() - Duration::from_secs(1);
        }
        let now = chrono::Utc::now().format("%H:%M:%S");
        errln!("{now} {message}");
    }
}

/// A `--port` value whose spelling is wrong is a usage error (exit 2), like any bad flag value.
fn port_spelling(s: &str) -> Result<String, String> {
    NamedSource::parse_port(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A `--source` value whose spelling is wrong is a usage error (exit 2).
fn source_spelling(s: &str) -> Result<String, String> {
    NamedSource::parse_source(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// The sources of `--port` and `--source`, built (an emulated source starts here).
fn capture_sources(a: &CaptureArgs, interval_s: u32) -> anyhow::Result<Vec<CaptureSource>> {
    let mut named = Vec::new();
    for p in &a.ports {
        named.push(NamedSource::parse_port(p).context("--port")?);
    }
    for s in &a.sources {
        named.push(NamedSource::parse_source(s).context("--source")?);
    }
    let settings = SourceOptions {
        interval_s,
        settle: a.settle,
        ..SourceOptions::default()
    };
    named
        .into_iter()
        .map(|n| {
            let source = n
                .spec
                .open(&settings)
                .with_context(|| format!("source {}", n.name))?;
            Ok(CaptureSource {
                name: n.name,
                source,
            })
        })
        .collect()
}

fn capture(a: CaptureArgs) -> anyhow::Result<ExitCode> {
    let outputs: Vec<(&str, &std::path::Path)> =
        a.report.iter().map(|r| ("--report", r.as_path())).collect();
    let _io = super::guard_io(&[], &outputs)?;
    if a.flush_every.is_zero() {
        bail!("--flush-every must be > 0");
    }
    // Zero would reopen or rotate on every pass of the capture loop.
    if a.segment < Duration::from_millis(100) {
        bail!("--segment must be at least 100ms");
    }
    if a.stall_timeout
        .is_some_and(|t| t < Duration::from_millis(100))
    {
        bail!("--stall-timeout must be at least 100ms");
    }
    let interval_s = u32::try_from(a.interval.as_secs())
        .ok()
        .filter(|s| (1..=3600).contains(s) && a.interval.subsec_nanos() == 0)
        .with_context(|| {
            format!(
                "--interval {:?}: a Watts up? PRO logs at whole seconds from 1s to 1h",
                a.interval
            )
        })?;
    let mut cfg = CaptureConfig::new(capture_sources(&a, interval_s)?, &a.out_dir);
    cfg.duration = a.duration;
    cfg.flush_every = a.flush_every;
    cfg.segment_len = a.segment;
    cfg.stall_timeout = a.stall_timeout.unwrap_or_else(|| {
        Duration::from_secs(5).max(Duration::from_secs(3 * u64::from(interval_s)))
    });
    cfg.metrics_addr = a.metrics;
    let cancel = crate::signals::cancel_on_signals()?;
    let progress = Arc::new(StderrProgress::new());
    let report = run_capture(cfg, cancel, progress.clone())?;
    if let Some(p) = &a.report {
        write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    for m in &report.meters {
        errln!("{}", status_line(m));
        for (k, n) in &m.rejected_by_kind {
            errln!("    rejected {k}: {n}");
        }
    }
    for g in &report.gaps {
        errln!(
            "gap: {} before sample {}: {:.3} s ({})",
            g.host,
            g.seq,
            g.gap_ns as f64 / 1e9,
            g.reason
        );
    }
    errln!(
        "wrote {} Parquet file(s) under {}",
        report.files.len(),
        a.out_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn emulate(a: EmulateArgs) -> anyhow::Result<ExitCode> {
    let cfg = EmulatorConfig {
        profile: Profile::parse(&a.profile)?,
        speed: a.speed,
        faults: Faults::parse(&a.faults)?,
        seed: a.seed,
        link: a.link.clone(),
        sent_log: a.sent_log.clone(),
        baud: a.baud,
        noise_w: a.noise_w,
        ..EmulatorConfig::default()
    };
    let cancel = crate::signals::cancel_on_signals()?;
    let handle = meter::emulator::start(cfg, cancel.clone()).map_err(|e| match e {
        e @ meter::emulator::EmulatorError::Link { .. } => anyhow::Error::new(e).context("--link"),
        e => e.into(),
    })?;
    outln!("{}", handle.path().display());
    crate::stdout::flush_out();
    progressln!(
        "emulating a Watts up? PRO on {} (pty {}); Ctrl-C to stop",
        handle.path().display(),
        handle.pts().display()
    );
    let start = Instant::now();
    while !cancel.is_cancelled() {
        if a.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = handle.stop()?;
    errln!(
        "emulator: {} records generated, {} delivered, {} corrupted on purpose, {} commands, {} disconnects",
        report.records, report.delivered, report.corrupted, report.commands, report.disconnects
    );
    Ok(ExitCode::SUCCESS)
}

fn info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let port = match (&a.port, &a.source) {
        (Some(p), _) => p.clone(),
        (None, Some(s)) => match NamedSource::parse_source(s).context("--source")?.spec {
            // A Watts up? says more about itself than one reading (and starting its
            // logging would clear its memory).
            meter::source::SourceSpec::WattsUp { device } => device,
            spec => return info_source(&spec, a.format == super::Format::Json),
        },
        (None, None) => bail!("--port or --source is required"),
    };
    let info = meter::ports::meter_info(&port, Duration::from_secs(2))?;
    if a.format == super::Format::Json {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    let v = &info.version;
    outln!("device:    {} ({} baud)", info.device, info.baud);
    outln!(
        "meter:     Watts up? {} (model {}), memory {} records",
        v.model_name(),
        v.model,
        v.memory
    );
    outln!("hardware:  {}.{}", v.hw_major, v.hw_minor);
    outln!(
        "firmware:  {}.{} built {}",
        v.fw_major,
        v.fw_minor,
        v.fw_timestamp
    );
    outln!("meter id:  {}", info.meter_id);
    if let Some(h) = &info.header {
        outln!("header:    {}", h.join(","));
    }
    if let (Some(i), Some(l)) = (info.interval_s, info.logging) {
        outln!("logging:   {l:?} every {i} s");
    }
    if let Some(r) = info.rate_mils_per_kwh {
        let cur = if info.euro == Some(true) {
            "euro"
        } else {
            "dollar"
        };
        outln!("rate:      {r} mils/kWh ({cur})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `meter info --source` for sources other than a serial Watts up? PRO.
fn info_source(spec: &meter::source::SourceSpec, json: bool) -> anyhow::Result<ExitCode> {
    let source = spec
        .open(&SourceOptions::default())
        .with_context(|| format!("opening the {} source", spec.kind()))?;
    let info = meter::source::probe(source.as_ref(), Duration::from_secs(5))
        .with_context(|| format!("reading {}", source.location()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("source:    {} {}", info.kind, info.location);
    outln!("answered:  {}", info.identity.description);
    outln!("meter id:  {}", info.identity.meter_id);
    outln!(
        "measures:  {:?} every {} s",
        info.measures,
        info.native_interval_s
    );
    if let Some(w) = info.power_w {
        outln!("power:     {w} W");
    }
    if let Some(e) = info.energy_counter_j {
        outln!("counter:   {e} J");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let ports = meter::ports::list_ports().context("listing serial ports")?;
    if a.format == super::Format::Json {
        outln!("{}", serde_json::to_string_pretty(&ports)?);
        return Ok(ExitCode::SUCCESS);
    }
    if ports.is_empty() {
        outln!("no serial ports found (is the meter plugged in? is the ftdi_sio driver loaded?)");
    }
    for p in ports {
        let usb = match (p.vid, p.pid) {
            (Some(v), Some(d)) => format!(" {v:04x}:{d:04x}"),
            _ => String::new(),
        };
        let desc = [p.manufacturer, p.product, p.serial_number]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let mark = if p.likely_meter {
            "  <- likely a Watts up? meter (FTDI 0403:6001)"
        } else {
            ""
        };
        outln!("{}  {}{usb} {desc}{mark}", p.device, p.kind);
    }
    Ok(ExitCode::SUCCESS)
}

fn recover(a: RecoverArgs) -> anyhow::Result<ExitCode> {
    if !a.dir.is_dir() {
        bail!("{}: not a directory", a.dir.display());
    }
    let r = meter::journal::recover(&a.dir)?;
    outln!(
        "recovered {} samples into {} file(s); {} journal(s) already written (verified); {} temporary file(s) removed",
        r.recovered_samples,
        r.recovered_files.len(),
        r.already_written,
        r.removed_temp
    );
    for f in &r.recovered_files {
        outln!("  {}", f.display());
    }
    for p in &r.live {
        outln!("  {} is held by a running capture: left alone", p.display());
    }
    for wal in &r.lost_headers {
        outln!(
            "  {}: header line lost; samples filed under its host=NAME folder",
            wal.display()
        );
    }
    for (file, dest, why) in &r.set_aside_files {
        outln!(
            "  {}: {why}: set aside whole in {}",
            file.display(),
            dest.display()
        );
    }
    for (wal, line, dest) in &r.set_aside {
        outln!(
            "  {}: unreadable from line {line}: set aside in {}",
            wal.display(),
            dest.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
