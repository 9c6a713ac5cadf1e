//! Capture: read one or several meters over serial into the samples dataset.
//!
//! Each meter runs as a task on one tokio runtime (so all share one clock): open the port
//! exclusively at 115200 8N1 (falling back to 19200), read the version, clear memory, start
//! external logging, then stamp every record with the host's UTC and monotonic clocks. A
//! meter that disappears or stalls is reopened with back-off; the first sample after the gap
//! carries the gap's length. Samples go to [`crate::journal`], which keeps them safe from
//! crashes. Cancelling flushes, stops the meters' logging and returns.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datasets::samples::{SampleRow, FLAG_AFTER_GAP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

use crate::cancel::Cancel;
use crate::decoder::{Decoder, Event, RejectKind};
use crate::journal::{recover, HostWriter, JournalError, RecoveryReport};
use crate::protocol::{Command, Packet, Reply, Version, ABORT};

/// Baud rates tried in order: current hardware, then old (HWminor = 1) meters.
pub const BAUD_RATES: [u32; 2] = [115_200, 19_200];

/// Errors that stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A `--port` specification is wrong.
    #[error("--port {0:?}: {1}")]
    Spec(String, String),
    /// Storing samples failed; every sample before the error is safe in the journal.
    #[error("storing samples: {0}")]
    Journal(#[from] JournalError),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The metrics exporter could not listen on its address.
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why a connection to a meter ended.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The device could not be opened.
    #[error("cannot open {device}: {source}")]
    Open {
        device: String,
        #[source]
        source: tokio_serial::Error,
    },
    /// No version reply at any baud rate.
    #[error("no reply to the version request within {timeout_s} s at {bauds} baud: is this a Watts up? meter?")]
    NoReply { timeout_s: f64, bauds: String },
    /// Reading or writing failed (unplugged, hung up).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The port closed (the device went away).
    #[error("port closed (device unplugged?)")]
    Closed,
    /// No record for longer than the stall timeout.
    #[error("no record for {0:.1} s (meter stalled)")]
    Stalled(f64),
}

/// One meter to capture: a host name and a serial device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterSpec {
    /// Host name (the dataset's `host=` partition).
    pub name: String,
    /// Serial device path.
    pub device: PathBuf,
}

impl MeterSpec {
    /// Parse `NAME=DEVICE` or `DEVICE` (the name is then the device's file name).
    pub fn parse(s: &str) -> Result<Self, CaptureError> {
        let (name, device) = match s.split_once('=') {
            Some((n, d)) => (n.to_string(), PathBuf::from(d)),
            None => {
                let d = PathBuf::from(s);
                let n = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (n, d)
            }
        };
        // The host becomes the dataset's `host=NAME` folder: the one rule for such names.
        if let Err(e) = datasets::names::check_name("host name", &name) {
            return Err(CaptureError::Spec(s.into(), e.to_string()));
        }
        if device.as_os_str().is_empty() {
            return Err(CaptureError::Spec(s.into(), "missing device".into()));
        }
        Ok(MeterSpec { name, device })
    }
}

/// Capture settings.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Meters to capture.
    pub meters: Vec<MeterSpec>,
    /// Dataset root.
    pub out_dir: PathBuf,
    /// Logging interval asked of the meters, whole seconds.
    pub interval_s: u32,
    /// Stop after this long (None: until cancelled).
    pub duration: Option<Duration>,
    /// Make samples durable at least this often.
    pub flush_every: Duration,
    /// Close a Parquet segment after this long.
    pub segment_len: Duration,
    /// Reopen a meter that sent no record for this long.
    pub stall_timeout: Duration,
    /// Wait after clearing memory before starting logging.
    pub settle: Duration,
    /// How long to wait for a reply to a command.
    pub reply_timeout: Duration,
    /// Longest wait between reopen attempts.
    pub backoff_max: Duration,
    /// Serve Prometheus metrics on this address while capturing (None: no exporter).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl CaptureConfig {
    /// Defaults for `meters` into `out_dir` at 1 s.
    pub fn new(meters: Vec<MeterSpec>, out_dir: &Path) -> Self {
        CaptureConfig {
            meters,
            out_dir: out_dir.to_path_buf(),
            interval_s: 1,
            duration: None,
            flush_every: Duration::from_secs(10),
            segment_len: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(5),
            settle: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            metrics_addr: None,
        }
    }
}

/// Live state of one meter, for status displays.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MeterStatus {
    /// Host name.
    pub name: String,
    /// Device path.
    pub device: String,
    /// `connecting`, `logging`, `reconnecting`, `stopped`.
    pub state: String,
    /// Meter identity from its version reply.
    pub meter_id: Option<String>,
    /// Baud rate in use.
    pub baud: Option<u32>,
    /// Last power reading, W.
    pub watts: Option<f64>,
    /// Last voltage reading, V.
    pub volts: Option<f64>,
    /// Last current reading, A.
    pub amps: Option<f64>,
    /// Last power factor, ratio 0..1.
    pub power_factor: Option<f64>,
    /// Energy since the capture started, J: trapezoids over consecutive samples on the host's
    /// monotonic clock; intervals across a gap are not counted (nothing is bridged).
    pub energy_j_total: f64,
    /// Meter firmware from its version reply, e.g. `3.14 (200612211910)`.
    pub firmware: Option<String>,
    /// Host monotonic clock (CLOCK_MONOTONIC) at the last sample, ns.
    pub last_sample_mono_ns: Option<i64>,
    /// Samples captured.
    pub samples: u64,
    /// Gaps recorded.
    pub gaps: u64,
    /// Rejected fragments, total.
    pub rejected: u64,
    /// Rejected fragments by kind.
    pub rejected_by_kind: std::collections::BTreeMap<String, u64>,
    /// Connections opened.
    pub connections: u32,
    /// Last error, if any.
    pub last_error: Option<String>,
}

/// A gap in one meter's samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gap {
    /// Host name.
    pub host: String,
    /// Sequence number of the first sample after the gap.
    pub seq: u64,
    /// Time since the previous sample, ns.
    pub gap_ns: i64,
    /// Why (the error that ended the previous connection, or "late record").
    pub reason: String,
}

/// Receives progress of a capture.
pub trait ProgressSink: Send + Sync {
    /// Called after every sample and state change with every meter's status.
    fn status(&self, meters: &[MeterStatus]);
    /// A notable event (reconnect, gap, recovery), one line.
    fn event(&self, message: &str);
}

/// A sink that ignores everything.
pub struct NoProgress;
impl ProgressSink for NoProgress {
    fn status(&self, _: &[MeterStatus]) {}
    fn event(&self, _: &str) {}
}

/// What a capture did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CaptureReport {
    /// Final status of every meter.
    pub meters: Vec<MeterStatus>,
    /// Every gap recorded.
    pub gaps: Vec<Gap>,
    /// Parquet files written.
    pub files: Vec<PathBuf>,
    /// What was recovered from an earlier crashed capture before starting.
    pub recovered: RecoveryReport,
}

/// Host monotonic clock (CLOCK_MONOTONIC), ns: the clock of `mono_ns` in samples.
pub fn mono_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

fn utc_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

struct Shared {
    // Shared with the metrics exporter, which only ever clones it briefly.
    status: Arc<Mutex<Vec<MeterStatus>>>,
    gaps: Mutex<Vec<Gap>>,
    sink: Arc<dyn ProgressSink>,
}

impl Shared {
    fn update(&self, idx: usize, f: impl FnOnce(&mut MeterStatus)) {
        let snapshot = {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s[idx]);
            s.clone()
        };
        self.sink.status(&snapshot);
    }
}

/// Capture until `cancel` is set or the configured duration ends.
pub fn run_capture(
    config: CaptureConfig,
    cancel: Cancel,
    sink: Arc<dyn ProgressSink>,
) -> Result<CaptureReport, CaptureError> {
    let mut names: Vec<&str> = config.meters.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(CaptureError::Spec(
            w[0].into(),
            "two meters share this host name".into(),
        ));
    }
    std::fs::create_dir_all(&config.out_dir).map_err(|e| {
        CaptureError::Journal(JournalError::Io {
            path: config.out_dir.clone(),
            source: e,
        })
    })?;
    let recovered = recover(&config.out_dir)?;
    if recovered.recovered_samples > 0 || !recovered.set_aside.is_empty() {
        sink.event(&format!(
            "recovered {} samples from {} journal(s) of an interrupted capture; {} unreadable line(s) set aside",
            recovered.recovered_samples,
            recovered.recovered_files.len(),
            recovered.set_aside.len()
        ));
    }

    // Bind before recovery and before any meter is opened: a taken port fails fast.
    let metrics_listener = match config.metrics_addr {
        Some(addr) => {
            let l = crate::metrics::bind(addr)
                .map_err(|source| CaptureError::Metrics { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| CaptureError::Metrics { addr, source })?;
            sink.event(&format!("metrics on http://{bound}/metrics"));
            Some(l)
        }
        None => None,
    };

    let shared = Arc::new(Shared {
        status: Arc::new(Mutex::new(
            config
                .meters
                .iter()
                .map(|m| MeterStatus {
                    name: m.name.clone(),
                    device: m.device.display().to_string(),
                    state: "connecting".into(),
                    ..Default::default()
                })
                .collect(),
        )),
        gaps: Mutex::new(Vec::new()),
        sink: sink.clone(),
    });

    // The writer owns the files; a dedicated thread keeps fsync and Parquet encoding off the
    // reading path.
    // The capture's own stop signal: set by the caller's `cancel`, by --duration, or by a
    // writer failure, without touching the caller's flag.
    let stop = Cancel::new();
    let (tx, rx) = mpsc::channel::<SampleRow>();
    let writer_cfg = config.clone();
    let writer_stop = stop.clone();
    let writer = std::thread::Builder::new()
        .name("migwatt-writer".into())
        .spawn(move || writer_loop(rx, &writer_cfg, &writer_stop))
        .map_err(CaptureError::Runtime)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CaptureError::Runtime)?;
    rt.block_on(async {
        if let Some(l) = metrics_listener {
            // Not awaited: the capture never waits for the exporter, which ends with the runtime.
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(crate::metrics::serve(
                        l,
                        shared.status.clone(),
                        stop.clone(),
                    ));
                }
                Err(e) => sink.event(&format!("metrics exporter not started: {e}")),
            }
        }
        let mut tasks = Vec::new();
        for (idx, m) in config.meters.iter().enumerate() {
            tasks.push(tokio::spawn(meter_task(
                idx,
                m.clone(),
                config.clone(),
                tx.clone(),
                shared.clone(),
                stop.clone(),
            )));
        }
        let (outer, inner, duration) = (cancel.clone(), stop.clone(), config.duration);
        tokio::spawn(async move {
            let timer = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = timer => inner.cancel(),
                _ = outer.cancelled() => inner.cancel(),
                _ = inner.cancelled() => {}
            }
        });
        for t in tasks {
            let _ = t.await;
        }
    });
    // Every sender is gone once the tasks have ended: the writer drains and closes.
    drop(tx);
    let files = writer.join().unwrap_or_else(|_| Ok(Vec::new()))?;
    let meters = shared
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let gaps = shared
        .gaps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(CaptureReport {
        meters,
        gaps,
        files,
        recovered,
    })
}

fn writer_loop(
    rx: mpsc::Receiver<SampleRow>,
    cfg: &CaptureConfig,
    cancel: &Cancel,
) -> Result<Vec<PathBuf>, CaptureError> {
    let mut writers: std::collections::HashMap<String, HostWriter> = Default::default();
    let mut last_sync = Instant::now();
    let result = (|| -> Result<(), CaptureError> {
        loop {
            let wait = cfg.flush_every.saturating_sub(last_sync.elapsed());
            match rx.recv_timeout(wait) {
                Ok(row) => {
                    let w = writers.entry(row.host.clone()).or_insert_with(|| {
                        HostWriter::new(&cfg.out_dir, &row.host, cfg.segment_len)
                    });
                    w.append(row)?;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if last_sync.elapsed() >= cfg.flush_every {
                for w in writers.values_mut() {
                    w.sync()?;
                }
                last_sync = Instant::now();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        // Stop the meters: there is nowhere safe to put their samples.
        cancel.cancel();
    }
    let mut files = Vec::new();
    let mut close_err = None;
    for w in writers.values_mut() {
        if let Err(e) = w.close_segment() {
            close_err.get_or_insert(e);
        }
        files.extend(w.files_written.iter().cloned());
    }
    result?;
    if let Some(e) = close_err {
        return Err(e.into());
    }
    files.sort();
    Ok(files)
}

/// Per-meter state that survives reconnects.
struct MeterRun {
    idx: usize,
    spec: MeterSpec,
    cfg: CaptureConfig,
    tx: mpsc::Sender<SampleRow>,
    shared: Arc<Shared>,
    seq: u64,
    connection: u32,
    meter_id: String,
    last_utc_ns: Option<i64>,
    /// Monotonic time (ns) and power (W) of the previous sample, for the energy counter.
    last_power: Option<(i64, f64)>,
    /// Why the previous connection ended, if it did: the next sample follows a gap.
    gap_reason: Option<String>,
}

async fn meter_task(
    idx: usize,
    spec: MeterSpec,
    cfg: CaptureConfig,
    tx: mpsc::Sender<SampleRow>,
    shared: Arc<Shared>,
    cancel: Cancel,
) {
    let mut run = MeterRun {
        idx,
        spec,
        cfg,
        tx,
        shared,
        seq: 0,
        connection: 0,
        meter_id: String::new(),
        last_utc_ns: None,
        last_power: None,
        gap_reason: None,
    };
    let mut backoff = Duration::from_millis(250);
    while !cancel.is_cancelled() {
        run.connection += 1;
        let conn = run.connection;
        run.shared.update(idx, |s| {
            s.connections = conn;
            s.state = if conn == 1 {
                "connecting"
            } else {
                "reconnecting"
            }
            .into();
        });
        let before = run.seq;
        let result = run.session(&cancel).await;
        if run.seq > before {
            backoff = Duration::from_millis(250);
        }
        match result {
            Ok(()) => break,
            Err(e) => {
                let msg = e.to_string();
                run.shared.sink.event(&format!(
                    "{} ({}): {msg}; reopening in {:.1} s",
                    run.spec.name,
                    run.spec.device.display(),
                    backoff.as_secs_f64()
                ));
                run.shared.update(idx, |s| {
                    s.last_error = Some(msg.clone());
                    s.state = "reconnecting".into();
                });
                if run.last_utc_ns.is_some() {
                    run.gap_reason.get_or_insert(msg);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => break,
                }
                backoff = (backoff * 2).min(run.cfg.backoff_max);
            }
        }
    }
    run.shared.update(idx, |s| s.state = "stopped".into());
}

impl MeterRun {
    fn open(&self, baud: u32) -> Result<SerialStream, PortError> {
        let dev = self.spec.device.to_string_lossy().into_owned();
        tokio_serial::new(&dev, baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            // serialport opens exclusively (TIOCEXCL + flock) by default: two readers of one
            // tty corrupt each other's records.
            .open_native_async()
            .map_err(|source| PortError::Open {
                device: dev,
                source,
            })
    }

    /// One connection: open, identify, start logging, read until cancelled or failed.
    async fn session(&mut self, cancel: &Cancel) -> Result<(), PortError> {
        let mut found = None;
        for baud in BAUD_RATES {
            let mut port = self.open(baud)?;
            let mut dec = Decoder::new();
            port.write_all(&[ABORT]).await?;
            port.write_all(&Command::ReadVersion.encode()).await?;
            let v = self
                .wait_for(&mut port, &mut dec, self.cfg.reply_timeout, |r| {
                    matches!(r, Reply::Version(_))
                })
                .await?;
            if let Some(Reply::Version(v)) = v {
                found = Some((port, dec, baud, v));
                break;
            }
        }
        let Some((mut port, mut dec, baud, version)) = found else {
            return Err(PortError::NoReply {
                timeout_s: self.cfg.reply_timeout.as_secs_f64(),
                bauds: BAUD_RATES.map(|b| b.to_string()).join(" and "),
            });
        };
        self.identify(&version, baud);
        port.write_all(&Command::ReadHeader.encode()).await?;
        let _ = self
            .wait_for(&mut port, &mut dec, self.cfg.reply_timeout, |r| {
                matches!(r, Reply::Header(_))
            })
            .await?;
        port.write_all(&Command::ClearMemory.encode()).await?;
        // The meter needs a moment after clearing before it takes the next command.
        self.wait_for(&mut port, &mut dec, self.cfg.settle, |_| false)
            .await?;
        port.write_all(
            &Command::StartExternal {
                interval_s: self.cfg.interval_s,
            }
            .encode(),
        )
        .await?;
        self.shared.update(self.idx, |s| s.state = "logging".into());

        let mut buf = [0u8; 1024];
        let mut last_record = Instant::now();
        loop {
            let stall_left = self.cfg.stall_timeout.saturating_sub(last_record.elapsed());
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = tokio::time::timeout(stall_left, port.read(&mut buf)) => match r {
                    Err(_) => return Err(PortError::Stalled(last_record.elapsed().as_secs_f64())),
                    Ok(Ok(0)) => return Err(PortError::Closed),
                    Ok(Err(e)) => return Err(PortError::Io(e)),
                    Ok(Ok(n)) => {
                        if self.consume(&mut dec, &buf[..n], |_| false).1 > 0 {
                            last_record = Instant::now();
                        }
                    }
                },
            }
        }
        // Stop streaming: switching to internal logging is the documented way. Keep whatever
        // records were already on their way.
        let stop = Command::StartInternal {
            interval_s: self.cfg.interval_s,
        };
        if port.write_all(&stop.encode()).await.is_ok() {
            let _ = self
                .wait_for(&mut port, &mut dec, Duration::from_millis(500), |r| {
                    matches!(r, Reply::Status { .. })
                })
                .await;
        }
        let mut tail = Vec::new();
        dec.finish(|e| tail.push(e));
        for e in tail {
            self.on_event(e);
        }
        Ok(())
    }

    fn identify(&mut self, v: &Version, baud: u32) {
        let id = v.meter_id();
        if self.meter_id != id {
            self.shared.sink.event(&format!(
                "{} ({}): {} meter, hardware {}.{}, firmware {}.{} ({}), {} baud",
                self.spec.name,
                self.spec.device.display(),
                v.model_name(),
                v.hw_major,
                v.hw_minor,
                v.fw_major,
                v.fw_minor,
                v.fw_timestamp,
                baud
            ));
        }
        self.meter_id = id.clone();
        let firmware = format!("{}.{} ({})", v.fw_major, v.fw_minor, v.fw_timestamp);
        self.shared.update(self.idx, |s| {
            s.meter_id = Some(id);
            s.firmware = Some(firmware);
            s.baud = Some(baud);
        });
    }

    /// Read until a reply matching `want` arrives or `limit` passes; records are kept.
    async fn wait_for(
        &mut self,
        port: &mut SerialStream,
        dec: &mut Decoder,
        limit: Duration,
        want: impl Fn(&Reply) -> bool + Copy,
    ) -> Result<Option<Reply>, PortError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(PortError::Closed),
                Ok(Err(e)) => return Err(PortError::Io(e)),
                Ok(Ok(n)) => {
                    if let (Some(r), _) = self.consume(dec, &buf[..n], want) {
                        return Ok(Some(r));
                    }
                }
            }
        }
    }

    /// Decode bytes; returns the first reply matching `want` and the number of records.
    fn consume(
        &mut self,
        dec: &mut Decoder,
        bytes: &[u8],
        want: impl Fn(&Reply) -> bool,
    ) -> (Option<Reply>, usize) {
        let mut events = Vec::new();
        dec.feed(bytes, |e| events.push(e));
        let mut hit = None;
        let mut records = 0;
        for e in events {
            if let Event::Packet {
                packet: Packet::Reply(r),
                ..
            } = &e
            {
                if matches!(r, Reply::Data(_)) {
                    records += 1;
                } else if hit.is_none() && want(r) {
                    hit = Some(r.clone());
                }
            }
            self.on_event(e);
        }
        (hit, records)
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Packet {
                packet: Packet::Reply(Reply::Data(rec)),
                ..
            } => self.on_record(rec.si_fields()),
            Event::Rejected(r) => {
                let kind = match &r.kind {
                    RejectKind::Malformed(_) => "malformed".to_string(),
                    k => k.label().to_string(),
                };
                self.shared.update(self.idx, |s| {
                    s.rejected += 1;
                    *s.rejected_by_kind.entry(kind).or_default() += 1;
                });
            }
            _ => {}
        }
    }

    fn on_record(&mut self, fields: [Option<f64>; datasets::FIELD_COUNT]) {
        let utc = utc_ns();
        let mono = mono_ns();
        let interval_ns = i64::from(self.cfg.interval_s) * 1_000_000_000;
        let mut gap = None;
        if let Some(last) = self.last_utc_ns {
            let dt = utc - last;
            if let Some(reason) = self.gap_reason.take() {
                gap = Some((dt, reason));
            } else if dt * 2 > interval_ns * 3 {
                gap = Some((
                    dt,
                    "late record (a record was lost or the meter paused)".into(),
                ));
            }
        }
        let row = SampleRow {
            host: self.spec.name.clone(),
            meter_id: self.meter_id.clone(),
            utc_ns: utc,
            mono_ns: mono,
            seq: self.seq,
            connection: self.connection,
            gap_before_ns: gap.as_ref().map(|g| g.0),
            flags: if gap.is_some() { FLAG_AFTER_GAP } else { 0 },
            fields,
        };
        let after_gap = gap.is_some();
        if let Some((gap_ns, reason)) = gap {
            self.shared.sink.event(&format!(
                "{}: gap of {:.1} s before sample {} ({reason})",
                self.spec.name,
                gap_ns as f64 / 1e9,
                self.seq
            ));
            if let Ok(mut g) = self.shared.gaps.lock() {
                g.push(Gap {
                    host: self.spec.name.clone(),
                    seq: self.seq,
                    gap_ns,
                    reason,
                });
            }
            self.shared.update(self.idx, |s| s.gaps += 1);
        }
        self.seq += 1;
        self.last_utc_ns = Some(utc);
        let watts = fields[0];
        let energy_j = match (self.last_power, watts) {
            (Some((t0, w0)), Some(w1)) if !after_gap => {
                (w0 + w1) / 2.0 * ((mono - t0) as f64 / 1e9)
            }
            _ => 0.0,
        };
        self.last_power = watts.map(|w| (mono, w));
        // The writer only stops after every meter task has ended, so this cannot fail.
        let _ = self.tx.send(row);
        self.shared.update(self.idx, |s| {
            s.samples += 1;
            s.watts = watts;
            s.volts = fields[1];
            s.amps = fields[2];
            s.power_factor = fields[13];
            s.energy_j_total += energy_j;
            s.last_sample_mono_ns = Some(mono);
            s.last_error = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse() {
        assert_eq!(
            MeterSpec::parse("src=/dev/ttyUSB0").unwrap(),
            MeterSpec {
                name: "src".into(),
                device: "/dev/ttyUSB0".into()
            }
        );
        assert_eq!(MeterSpec::parse("/dev/ttyUSB1").unwrap().name, "ttyUSB1");
        assert!(MeterSpec::parse("a b=/dev/x").is_err());
        assert!(MeterSpec::parse("src=").is_err());
    }
}
