//! Capture: read one or several power sources into the samples dataset.
//!
//! Each source runs as a task on one tokio runtime (so all share one clock): connect,
//! identify, start, then turn every reading into a sample stamped with the host's UTC and
//! monotonic clocks. A source that fails or stalls is reconnected with back-off; the first
//! sample after the gap carries the gap's length. Samples go to [`crate::journal`], which
//! keeps them safe from crashes. Status goes out on a watch channel ([`StatusFeed`]) that the
//! exporter reads, and to a [`ProgressSink`]. Cancelling flushes, stops the sources and
//! returns. Nothing here knows a source's kind: see [`crate::source`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datasets::samples::{SampleRow, FLAG_AFTER_GAP};
use tokio::sync::watch;

use crate::cancel::Cancel;
use crate::journal::{recover, HostWriter, JournalError, RecoveryReport};
use crate::source::{Identity, PowerSource, Reading, Session, SourceError, SourceEvent};
pub use crate::status::{MeterStatus, StatusFeed};

/// Errors that stop a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Two sources were given the same host name.
    #[error("two sources share the host name {0:?}")]
    DuplicateName(String),
    /// Storing samples failed; every sample before the error is safe in the journal.
    #[error("storing samples")]
    Journal(#[from] JournalError),
    /// The async runtime or the writer thread could not start.
    #[error("starting the capture")]
    Runtime(#[source] std::io::Error),
    /// The metrics exporter could not listen on its address.
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why one connection to a source ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no record for {0:.1} s (meter stalled)")]
    Stalled(f64),
}

/// One source to capture and the host name its samples are filed under.
#[derive(Debug, Clone)]
pub struct CaptureSource {
    /// Host name (the dataset's `host=` partition).
    pub name: String,
    /// The source.
    pub source: Arc<dyn PowerSource>,
}

/// Capture settings.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Sources to capture.
    pub sources: Vec<CaptureSource>,
    /// Dataset root.
    pub out_dir: PathBuf,
    /// Stop after this long (None: until cancelled).
    pub duration: Option<Duration>,
    /// Make samples durable at least this often.
    pub flush_every: Duration,
    /// Close a Parquet segment after this long.
    pub segment_len: Duration,
    /// Reconnect a source that delivered no reading for this long.
    pub stall_timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub backoff_max: Duration,
    /// Serve Prometheus metrics on this address while capturing (None: no exporter).
    pub metrics_addr: Option<SocketAddr>,
}

impl CaptureConfig {
    /// Defaults for `sources` into `out_dir`.
    pub fn new(sources: Vec<CaptureSource>, out_dir: &Path) -> Self {
        CaptureConfig {
            sources,
            out_dir: out_dir.to_path_buf(),
            duration: None,
            flush_every: Duration::from_secs(10),
            segment_len: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(5),
            backoff_max: Duration::from_secs(30),
            metrics_addr: None,
        }
    }
}

/// A gap in one source's samples.
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
    /// Called after every sample and state change with every source's status.
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
    /// Final status of every source.
    pub meters: Vec<MeterStatus>,
    /// Every gap recorded.
    pub gaps: Vec<Gap>,
    /// Parquet files written.
    pub files: Vec<PathBuf>,
    /// What was recovered from an earlier crashed capture before starting.
    pub recovered: RecoveryReport,
}

use datasets::error_chain;

/// A `meter_id` safe for the journal's comma-separated lines and for labels: characters
/// other than letters, digits and `.-_+` become `_` (a Watts up? identity has none).
fn clean_meter_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Shared {
    status: watch::Sender<Vec<MeterStatus>>,
    gaps: Mutex<Vec<Gap>>,
    sink: Arc<dyn ProgressSink>,
}

impl Shared {
    fn update(&self, idx: usize, f: impl FnOnce(&mut MeterStatus)) {
        self.status.send_modify(|s| f(&mut s[idx]));
        let snapshot = self.status.borrow().clone();
        self.sink.status(&snapshot);
    }
}

/// Capture until `cancel` is set or the configured duration ends.
pub fn run_capture(
    config: CaptureConfig,
    cancel: Cancel,
    sink: Arc<dyn ProgressSink>,
) -> Result<CaptureReport, CaptureError> {
    check_names(&config.sources)?;
    // Bind before recovery and before any source is opened: a taken port fails fast.
    let metrics_listener = bind_metrics(config.metrics_addr, sink.as_ref())?;
    let recovered = prepare_out_dir(&config.out_dir, sink.as_ref())?;
    let shared = Arc::new(Shared {
        status: watch::Sender::new(initial_status(&config.sources)),
        gaps: Mutex::new(Vec::new()),
        sink: sink.clone(),
    });

    // The capture's own stop signal: set by the caller's `cancel`, by --duration, or by a
    // writer failure, without touching the caller's flag.
    let stop = Cancel::new();
    // The writer owns the files; a dedicated thread keeps fsync and Parquet encoding off the
    // reading path.
    let (tx, rx) = mpsc::channel::<SampleRow>();
    let writer = {
        let (cfg, stop) = (config.clone(), stop.clone());
        std::thread::Builder::new()
            .name("migwatt-writer".into())
            .spawn(move || writer_loop(rx, &cfg, &stop))
            .map_err(CaptureError::Runtime)?
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CaptureError::Runtime)?;
    rt.block_on(run_sources(
        &config,
        metrics_listener,
        tx,
        shared.clone(),
        cancel,
        stop,
    ));
    // Every sender is gone once the tasks have ended: the writer drains and closes.
    let files = writer.join().unwrap_or_else(|_| Ok(Vec::new()))?;
    let meters = shared.status.borrow().clone();
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

fn check_names(sources: &[CaptureSource]) -> Result<(), CaptureError> {
    let mut names: Vec<&str> = sources.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(CaptureError::DuplicateName(w[0].into())),
        None => Ok(()),
    }
}

fn bind_metrics(
    addr: Option<SocketAddr>,
    sink: &dyn ProgressSink,
) -> Result<Option<std::net::TcpListener>, CaptureError> {
    let Some(addr) = addr else { return Ok(None) };
    let l = crate::metrics::bind(addr).map_err(|source| CaptureError::Metrics { addr, source })?;
    let bound = l
        .local_addr()
        .map_err(|source| CaptureError::Metrics { addr, source })?;
    sink.event(&format!("metrics on http://{bound}/metrics"));
    Ok(Some(l))
}

/// Create the dataset folder and turn an interrupted capture's journals into Parquet.
fn prepare_out_dir(
    out_dir: &Path,
    sink: &dyn ProgressSink,
) -> Result<RecoveryReport, CaptureError> {
    std::fs::create_dir_all(out_dir).map_err(|source| JournalError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let recovered = recover(out_dir)?;
    if recovered.recovered_samples > 0 || !recovered.set_aside.is_empty() {
        sink.event(&format!(
            "recovered {} samples from {} journal(s) of an interrupted capture; {} unreadable line(s) set aside",
            recovered.recovered_samples,
            recovered.recovered_files.len(),
            recovered.set_aside.len()
        ));
    }
    Ok(recovered)
}

fn initial_status(sources: &[CaptureSource]) -> Vec<MeterStatus> {
    sources
        .iter()
        .map(|m| MeterStatus {
            name: m.name.clone(),
            kind: m.source.kind().into(),
            device: m.source.location(),
            state: "connecting".into(),
            reject_kinds: m.source.reject_kinds(),
            ..Default::default()
        })
        .collect()
}

/// Run the exporter and one task per source until `stop` (or `cancel`, or the duration).
async fn run_sources(
    config: &CaptureConfig,
    metrics_listener: Option<std::net::TcpListener>,
    tx: mpsc::Sender<SampleRow>,
    shared: Arc<Shared>,
    cancel: Cancel,
    stop: Cancel,
) {
    if let Some(l) = metrics_listener {
        // Not awaited: the capture never waits for the exporter, which ends with the runtime.
        match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                let feed = shared.status.subscribe();
                tokio::spawn(crate::metrics::serve(l, feed, stop.clone()));
            }
            Err(e) => shared
                .sink
                .event(&format!("metrics exporter not started: {e}")),
        }
    }
    let tasks: Vec<_> = config
        .sources
        .iter()
        .enumerate()
        .map(|(idx, s)| {
            let run = SourceRun::new(idx, s.clone(), config, tx.clone(), shared.clone());
            tokio::spawn(run.run(stop.clone()))
        })
        .collect();
    drop(tx);
    let (inner, duration) = (stop.clone(), config.duration);
    tokio::spawn(async move {
        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => inner.cancel(),
            _ = cancel.cancelled() => inner.cancel(),
            _ = inner.cancelled() => {}
        }
    });
    for t in tasks {
        let _ = t.await;
    }
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
        // Stop the sources: there is nowhere safe to put their samples.
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

/// Energy since the capture started, from consecutive readings of one source.
#[derive(Debug, Default)]
struct EnergyTally {
    /// Monotonic time (ns), power (W) and energy counter (J) of the previous reading.
    last: Option<(i64, Option<f64>, Option<f64>)>,
}

impl EnergyTally {
    /// Energy between the previous reading and `r`, J: the counter's increase when both
    /// readings carry one, else a trapezoid of power; 0 across a gap or a counter reset.
    fn add(&mut self, r: &Reading, after_gap: bool) -> f64 {
        let now = (r.mono_ns, r.power_w(), r.energy_counter_j);
        let Some((t0, w0, e0)) = self.last.replace(now) else {
            return 0.0;
        };
        if after_gap {
            return 0.0;
        }
        match (e0, r.energy_counter_j, w0, r.power_w()) {
            (Some(e0), Some(e1), _, _) => (e1 - e0).max(0.0),
            (_, _, Some(w0), Some(w1)) => (w0 + w1) / 2.0 * ((r.mono_ns - t0) as f64 / 1e9),
            _ => 0.0,
        }
    }
}

/// One source's capture state, kept across reconnects.
struct SourceRun {
    idx: usize,
    name: String,
    source: Arc<dyn PowerSource>,
    stall_timeout: Duration,
    backoff_max: Duration,
    tx: mpsc::Sender<SampleRow>,
    shared: Arc<Shared>,
    seq: u64,
    connection: u32,
    meter_id: String,
    last_utc_ns: Option<i64>,
    energy: EnergyTally,
    /// Why the previous connection ended, if it did: the next sample follows a gap.
    gap_reason: Option<String>,
}

impl SourceRun {
    fn new(
        idx: usize,
        s: CaptureSource,
        cfg: &CaptureConfig,
        tx: mpsc::Sender<SampleRow>,
        shared: Arc<Shared>,
    ) -> Self {
        SourceRun {
            idx,
            name: s.name,
            source: s.source,
            stall_timeout: cfg.stall_timeout,
            backoff_max: cfg.backoff_max,
            tx,
            shared,
            seq: 0,
            connection: 0,
            meter_id: String::new(),
            last_utc_ns: None,
            energy: EnergyTally::default(),
            gap_reason: None,
        }
    }

    /// Connect, stream, and reconnect with back-off until cancelled.
    async fn run(mut self, cancel: Cancel) {
        let mut backoff = Duration::from_millis(250);
        while !cancel.is_cancelled() {
            self.connection += 1;
            let conn = self.connection;
            self.shared.update(self.idx, |s| {
                s.connections = conn;
                s.state = if conn == 1 {
                    "connecting"
                } else {
                    "reconnecting"
                }
                .into();
            });
            let before = self.seq;
            let result = self.session(&cancel).await;
            if self.seq > before {
                backoff = Duration::from_millis(250);
            }
            let Err(e) = result else { break };
            let msg = error_chain(&e);
            self.shared.sink.event(&format!(
                "{} ({}): {msg}; reopening in {:.1} s",
                self.name,
                self.source.location(),
                backoff.as_secs_f64()
            ));
            self.shared.update(self.idx, |s| {
                s.last_error = Some(msg.clone());
                s.state = "reconnecting".into();
            });
            if self.last_utc_ns.is_some() {
                self.gap_reason.get_or_insert(msg);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => break,
            }
            backoff = (backoff * 2).min(self.backoff_max);
        }
        self.shared.update(self.idx, |s| s.state = "stopped".into());
    }

    /// One connection: connect, identify, start, read until cancelled or failed. Whatever the
    /// session received is kept however it ends.
    async fn session(&mut self, cancel: &Cancel) -> Result<(), SessionEnd> {
        let mut session = tokio::select! {
            s = self.source.connect() => s?,
            _ = cancel.cancelled() => return Ok(()),
        };
        match self.stream(session.as_mut(), cancel).await {
            Ok(()) => {
                for e in session.stop().await {
                    self.on_event(e);
                }
                Ok(())
            }
            Err(e) => {
                for ev in session.take_pending() {
                    self.on_event(ev);
                }
                Err(e)
            }
        }
    }

    async fn stream(
        &mut self,
        session: &mut dyn Session,
        cancel: &Cancel,
    ) -> Result<(), SessionEnd> {
        let ready = async {
            let id = session.identify().await?;
            self.identify(&id);
            session.start().await
        };
        tokio::select! {
            r = ready => r?,
            _ = cancel.cancelled() => return Ok(()),
        }
        self.shared.update(self.idx, |s| s.state = "logging".into());
        let mut last_reading = Instant::now();
        loop {
            let stall_left = self.stall_timeout.saturating_sub(last_reading.elapsed());
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = tokio::time::timeout(stall_left, session.next_event()) => match r {
                    Err(_) => return Err(SessionEnd::Stalled(last_reading.elapsed().as_secs_f64())),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok(e)) => {
                        if self.on_event(e) {
                            last_reading = Instant::now();
                        }
                    }
                },
            }
        }
    }

    fn identify(&mut self, id: &Identity) {
        let meter_id = clean_meter_id(&id.meter_id);
        if self.meter_id != meter_id {
            self.shared.sink.event(&format!(
                "{} ({}): {}",
                self.name,
                self.source.location(),
                id.description
            ));
        }
        self.meter_id = meter_id.clone();
        self.shared.update(self.idx, |s| {
            s.meter_id = Some(meter_id);
            s.firmware = id.firmware.clone();
            s.baud = id.baud;
        });
    }

    /// Record an event; true if it was a reading.
    fn on_event(&mut self, e: SourceEvent) -> bool {
        match e {
            SourceEvent::Reading(r) => {
                self.on_reading(r);
                true
            }
            SourceEvent::Rejected { kind } => {
                self.shared.update(self.idx, |s| {
                    s.rejected += 1;
                    *s.rejected_by_kind.entry(kind.to_string()).or_default() += 1;
                });
                false
            }
        }
    }

    /// The gap before a reading stamped `utc_ns`, if any: after a failed connection, or when
    /// the reading came more than 1.5 intervals after the previous one.
    fn gap_before(&mut self, utc_ns: i64) -> Option<(i64, String)> {
        let last = self.last_utc_ns?;
        let dt = utc_ns - last;
        if let Some(reason) = self.gap_reason.take() {
            return Some((dt, reason));
        }
        let interval_ns =
            i64::try_from(self.source.native_interval().as_nanos()).unwrap_or(i64::MAX);
        (dt.saturating_mul(2) > interval_ns.saturating_mul(3)).then(|| {
            (
                dt,
                "late record (a record was lost or the meter paused)".into(),
            )
        })
    }

    fn on_reading(&mut self, r: Reading) {
        let gap = self.gap_before(r.utc_ns);
        let row = SampleRow {
            host: self.name.clone(),
            meter_id: self.meter_id.clone(),
            utc_ns: r.utc_ns,
            mono_ns: r.mono_ns,
            seq: self.seq,
            connection: self.connection,
            gap_before_ns: gap.as_ref().map(|g| g.0),
            flags: if gap.is_some() { FLAG_AFTER_GAP } else { 0 },
            fields: r.fields,
            source_kind: Some(self.source.kind().to_string()),
            source_interval_ns: i64::try_from(self.source.native_interval().as_nanos()).ok(),
            energy_counter_j: r.energy_counter_j,
        };
        let energy_j = self.energy.add(&r, gap.is_some());
        if let Some((gap_ns, reason)) = gap {
            self.record_gap(gap_ns, reason);
        }
        self.seq += 1;
        self.last_utc_ns = Some(r.utc_ns);
        // The writer only stops after every source task has ended, so this cannot fail.
        let _ = self.tx.send(row);
        self.shared.update(self.idx, |s| {
            s.samples += 1;
            s.watts = r.fields[0];
            s.volts = r.fields[1];
            s.amps = r.fields[2];
            s.power_factor = r.fields[13];
            s.energy_j_total += energy_j;
            s.last_sample_mono_ns = Some(r.mono_ns);
            s.last_error = None;
        });
    }

    fn record_gap(&mut self, gap_ns: i64, reason: String) {
        self.shared.sink.event(&format!(
            "{}: gap of {:.1} s before sample {} ({reason})",
            self.name,
            gap_ns as f64 / 1e9,
            self.seq
        ));
        if let Ok(mut g) = self.shared.gaps.lock() {
            g.push(Gap {
                host: self.name.clone(),
                seq: self.seq,
                gap_ns,
                reason,
            });
        }
        self.shared.update(self.idx, |s| s.gaps += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::samples::FIELD_COUNT;

    fn reading(mono_s: f64, watts: Option<f64>, counter_j: Option<f64>) -> Reading {
        let mut fields = [None; FIELD_COUNT];
        fields[0] = watts;
        Reading {
            utc_ns: 0,
            mono_ns: (mono_s * 1e9) as i64,
            fields,
            energy_counter_j: counter_j,
        }
    }

    #[test]
    fn energy_is_trapezoids_of_power_and_nothing_across_gaps() {
        let mut t = EnergyTally::default();
        assert_eq!(t.add(&reading(0.0, Some(100.0), None), false), 0.0);
        assert_eq!(t.add(&reading(1.0, Some(110.0), None), false), 105.0);
        assert_eq!(t.add(&reading(3.0, Some(90.0), None), false), 200.0);
        assert_eq!(t.add(&reading(13.0, Some(90.0), None), true), 0.0);
        assert_eq!(t.add(&reading(13.5, None, None), false), 0.0);
        assert_eq!(t.add(&reading(14.0, Some(80.0), None), false), 0.0);
        assert_eq!(t.add(&reading(15.0, Some(80.0), None), false), 80.0);
    }

    #[test]
    fn energy_counters_count_their_increase_not_the_power() {
        let mut t = EnergyTally::default();
        t.add(&reading(0.0, Some(100.0), Some(5_000.0)), false);
        // The counter says 123 J whatever the power readings suggest.
        assert_eq!(
            t.add(&reading(1.0, Some(100.0), Some(5_123.0)), false),
            123.0
        );
        assert_eq!(t.add(&reading(2.0, None, Some(5_200.0)), false), 77.0);
        // A counter that went back (a reset) adds nothing, and neither does a gap.
        assert_eq!(t.add(&reading(3.0, None, Some(10.0)), false), 0.0);
        assert_eq!(t.add(&reading(9.0, None, Some(900.0)), true), 0.0);
        assert_eq!(t.add(&reading(10.0, None, Some(950.0)), false), 50.0);
    }

    #[test]
    fn meter_ids_are_kept_safe_for_journal_lines() {
        let id = "wattsup-PRO-hw5.2-fw3.14-200612211910";
        assert_eq!(clean_meter_id(id), id);
        assert_eq!(clean_meter_id("Dell, Inc. iDRAC\n9"), "Dell__Inc._iDRAC_9");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chains_print_each_cause_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
