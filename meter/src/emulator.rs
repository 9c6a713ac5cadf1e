//! A Watts up? PRO emulator on a real pseudo-terminal.
//!
//! It opens a pty, answers the protocol's commands on the master side, starts and stops
//! logging, and streams `#d` records at the set interval (optionally faster than real time),
//! with power from a profile and optional faults: NUL bytes, truncated records, junk,
//! records without prefix, stalls and disconnects. A disconnect closes the pty like a USB
//! unplug; with a `link` path the new pty appears under the same name, like a re-enumerated
//! /dev/ttyUSB0. It is how tests, the demo and a user without a meter drive the real
//! serial path.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cancel::Cancel;
use crate::decoder::{Decoder, Event};
use crate::protocol::{
    Command, FullMode, LoggingMode, Packet, Record, Version, FIELD_COUNT, HEADER_NAMES,
};

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Creating or configuring the pseudo-terminal failed.
    #[error("pseudo-terminal")]
    Pty(#[source] nix::Error),
    /// A profile or fault specification is wrong.
    #[error("{0}")]
    Spec(String),
    /// The link path is taken by something the emulator must not replace.
    #[error("{path}: {problem}; give a path that does not exist (the emulator creates the link)")]
    Link {
        /// The link path.
        path: PathBuf,
        /// What is there.
        problem: String,
    },
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the emulated power comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// Constant power, W.
    Constant(f64),
    /// A trace of (emulated time s, W) points, linearly interpolated, held at the ends.
    Trace(Vec<(f64, f64)>),
    /// Idle power with periodic rectangular bursts (a migration-like pattern).
    Bursts {
        idle_w: f64,
        peak_w: f64,
        period_s: f64,
        burst_s: f64,
        start_s: f64,
    },
    /// Power set live by the program embedding the emulator (a campaign's emulated hosts);
    /// each record is the exact mean of the power set since the previous record.
    Live(LivePower),
}

/// A power level set while the emulator runs; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct LivePower(std::sync::Arc<std::sync::Mutex<LiveState>>);

#[derive(Debug)]
struct LiveState {
    watts: f64,
    since: std::time::Instant,
    // Energy since the last read, J: records report means, as the real meter does.
    energy_j: f64,
    window_start: std::time::Instant,
}

impl LivePower {
    /// A power source starting at `watts`.
    pub fn new(watts: f64) -> Self {
        let now = std::time::Instant::now();
        LivePower(std::sync::Arc::new(std::sync::Mutex::new(LiveState {
            watts,
            since: now,
            energy_j: 0.0,
            window_start: now,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // A panic elsewhere cannot leave the state half-updated: every update is one step.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set the power from now on, W.
    pub fn set_watts(&self, watts: f64) {
        let mut s = self.lock();
        let now = std::time::Instant::now();
        s.energy_j += s.watts * now.duration_since(s.since).as_secs_f64();
        s.since = now;
        s.watts = watts;
    }

    /// The power currently set, W.
    pub fn watts(&self) -> f64 {
        self.lock().watts
    }

    /// Mean power since the previous call (or since creation), W; starts a new window.
    pub fn take_mean_watts(&self) -> f64 {
        let mut s = self.lock();
        let now = std::time::Instant::now();
        let e = s.energy_j + s.watts * now.duration_since(s.since).as_secs_f64();
        let dt = now.duration_since(s.window_start).as_secs_f64();
        s.energy_j = 0.0;
        s.since = now;
        s.window_start = now;
        if dt > 1e-6 {
            e / dt
        } else {
            s.watts
        }
    }
}

impl PartialEq for LivePower {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::Bursts {
            idle_w: 120.0,
            peak_w: 165.0,
            period_s: 60.0,
            burst_s: 20.0,
            start_s: 30.0,
        }
    }
}

fn kv_pairs(spec: &str) -> Result<Vec<(&str, &str)>, EmulatorError> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| EmulatorError::Spec(format!("expected KEY=VALUE, got {p:?}")))
        })
        .collect()
}

fn num(key: &str, v: &str) -> Result<f64, EmulatorError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| EmulatorError::Spec(format!("{key}: {v:?} is not a number")))
}

/// Highest emulated power, W: far above any meter's range, low enough that no record field
/// (tenths of W, Wh over days) overflows.
pub const MAX_WATTS: f64 = 100_000.0;
/// Highest emulation speed (emulated seconds per real second): beyond it the emulator cannot
/// generate the records due and would spin without ever seeing a stop request.
pub const MAX_SPEED: f64 = 10_000.0;

/// A power in W within 0..=[`MAX_WATTS`].
fn watts(key: &str, v: &str) -> Result<f64, EmulatorError> {
    let w = num(key, v)?;
    if (0.0..=MAX_WATTS).contains(&w) {
        Ok(w)
    } else {
        Err(EmulatorError::Spec(format!(
            "{key}: {w} W is outside 0..{MAX_WATTS} W"
        )))
    }
}

impl Profile {
    /// Parse `constant:W`, `trace:FILE` (CSV with columns time_s,watts) or
    /// `bursts[:idle=W,peak=W,period=S,burst=S,start=S]`.
    pub fn parse(spec: &str) -> Result<Self, EmulatorError> {
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        match kind {
            "constant" => Ok(Profile::Constant(watts("constant", arg)?)),
            "trace" => Self::load_trace(Path::new(arg)),
            "bursts" => {
                let Profile::Bursts {
                    mut idle_w,
                    mut peak_w,
                    mut period_s,
                    mut burst_s,
                    mut start_s,
                } = Profile::default()
                else {
                    unreachable!()
                };
                for (k, v) in kv_pairs(arg)? {
                    let x = num(k, v)?;
                    match k {
                        "idle" => idle_w = watts(k, v)?,
                        "peak" => peak_w = watts(k, v)?,
                        "period" => period_s = x,
                        "burst" => burst_s = x,
                        "start" => start_s = x,
                        _ => {
                            return Err(EmulatorError::Spec(format!(
                                "bursts: unknown key {k:?} (expected idle, peak, period, burst, start)"
                            )))
                        }
                    }
                }
                if period_s <= 0.0 || burst_s < 0.0 || burst_s > period_s {
                    return Err(EmulatorError::Spec(
                        "bursts: need period > 0 and 0 <= burst <= period".into(),
                    ));
                }
                Ok(Profile::Bursts {
                    idle_w,
                    peak_w,
                    period_s,
                    burst_s,
                    start_s,
                })
            }
            _ => Err(EmulatorError::Spec(format!(
                "unknown profile {spec:?}: expected constant:W, trace:FILE.csv or bursts[:idle=W,peak=W,period=S,burst=S,start=S]"
            ))),
        }
    }

    /// Load a trace with columns `time_s` and `watts` from CSV or Parquet (by extension);
    /// times must increase.
    pub fn load_trace(path: &Path) -> Result<Self, EmulatorError> {
        use datasets::table::{load_table, resolve_inputs, LoadOptions};
        let spec = |e: &dyn std::fmt::Display| EmulatorError::Spec(format!("trace: {e}"));
        let inputs = resolve_inputs(&[path.to_path_buf()]).map_err(|e| spec(&e))?;
        let table = load_table(
            &inputs,
            &LoadOptions {
                required: &["time_s", "watts"],
                ..LoadOptions::default()
            },
        )
        .map_err(|e| spec(&e))?;
        let t = table.f64_column("time_s").map_err(|e| spec(&e))?;
        let w = table.f64_column("watts").map_err(|e| spec(&e))?;
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(t.len());
        for (i, (&t, &w)) in t.iter().zip(&w).enumerate() {
            let bad =
                |what: &str| EmulatorError::Spec(format!("trace {}: {what}", table.row_label(i)));
            if !(t.is_finite() && w.is_finite() && (0.0..=MAX_WATTS).contains(&w)) {
                return Err(bad(&format!(
                    "time_s must be finite and watts within 0..{MAX_WATTS}"
                )));
            }
            if pts.last().is_some_and(|&(pt, _)| t <= pt) {
                return Err(bad("time_s must increase"));
            }
            pts.push((t, w));
        }
        if pts.is_empty() {
            return Err(EmulatorError::Spec(format!(
                "{}: no data rows",
                path.display()
            )));
        }
        Ok(Profile::Trace(pts))
    }

    /// Power at emulated time `t_s`, W.
    pub fn watts_at(&self, t_s: f64) -> f64 {
        match self {
            Profile::Constant(w) => *w,
            Profile::Live(p) => p.watts(),
            Profile::Trace(pts) => {
                let i = pts.partition_point(|&(t, _)| t <= t_s);
                if i == 0 {
                    pts[0].1
                } else if i == pts.len() {
                    pts[i - 1].1
                } else {
                    let (t0, w0) = pts[i - 1];
                    let (t1, w1) = pts[i];
                    w0 + (w1 - w0) * (t_s - t0) / (t1 - t0)
                }
            }
            Profile::Bursts {
                idle_w,
                peak_w,
                period_s,
                burst_s,
                start_s,
            } => {
                if t_s < *start_s {
                    return *idle_w;
                }
                let phase = (t_s - start_s) % period_s;
                if phase < *burst_s {
                    *peak_w
                } else {
                    *idle_w
                }
            }
        }
    }
}

/// Faults the emulator injects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability that a record carries a NUL byte in its line end (harmless).
    pub nul: f64,
    /// Probability that a record is cut before its `;` (lost).
    pub truncate: f64,
    /// Probability that junk bytes precede a record (record intact).
    pub junk: f64,
    /// Probability that a record loses its `#d,` prefix (lost).
    pub noprefix: f64,
    /// Send the power-on banner when a host first talks on a connection.
    pub banner: bool,
    /// (start, duration) in emulated seconds during which the meter is silent.
    pub stalls: Vec<(f64, f64)>,
    /// (start, duration) in emulated seconds during which the port is gone.
    pub disconnects: Vec<(f64, f64)>,
}

impl Faults {
    /// Parse e.g. `nul=0.05,truncate=0.01,junk=0.02,noprefix=0.01,banner,stall=30+10,disconnect=60+5`.
    pub fn parse(spec: &str) -> Result<Self, EmulatorError> {
        let mut f = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "banner" {
                f.banner = true;
                continue;
            }
            let (k, v) = item.split_once('=').ok_or_else(|| {
                EmulatorError::Spec(format!("fault {item:?}: expected KIND=VALUE or banner"))
            })?;
            let prob = |v: &str| -> Result<f64, EmulatorError> {
                let p = num(k, v)?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(EmulatorError::Spec(format!(
                        "{k}: probability {p} not in 0..1"
                    )))
                }
            };
            let window = |v: &str| -> Result<(f64, f64), EmulatorError> {
                let (a, d) = v.split_once('+').ok_or_else(|| {
                    EmulatorError::Spec(format!("{k}: expected START+DURATION seconds, got {v:?}"))
                })?;
                Ok((num(k, a)?, num(k, d)?))
            };
            match k {
                "nul" => f.nul = prob(v)?,
                "truncate" => f.truncate = prob(v)?,
                "junk" => f.junk = prob(v)?,
                "noprefix" => f.noprefix = prob(v)?,
                "stall" => f.stalls.push(window(v)?),
                "disconnect" => f.disconnects.push(window(v)?),
                _ => {
                    return Err(EmulatorError::Spec(format!(
                        "unknown fault {k:?} (expected nul, truncate, junk, noprefix, banner, stall, disconnect)"
                    )))
                }
            }
        }
        Ok(f)
    }
}

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Power profile.
    pub profile: Profile,
    /// Emulated seconds per real second (100 = 100x faster).
    pub speed: f64,
    /// Injected faults.
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
    /// A stable path (symlink) to the current pty, kept across disconnects.
    pub link: Option<PathBuf>,
    /// JSON-lines log of every record generated, with its fault and delivery.
    pub sent_log: Option<PathBuf>,
    /// Version the meter reports.
    pub version: Version,
    /// Standard deviation of measurement noise added to the power, W (0 = none).
    pub noise_w: f64,
    /// The meter's line speed (19200 for old hardware); a host set to another rate reads
    /// garbage, as on a real line. None: any rate works.
    pub baud: Option<u32>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            profile: Profile::default(),
            speed: 1.0,
            faults: Faults::default(),
            seed: 1,
            link: None,
            sent_log: None,
            version: Version {
                model: 1,
                memory: 65206,
                hw_major: 5,
                hw_minor: 2,
                fw_major: 3,
                fw_minor: 14,
                fw_timestamp: "200612211910".into(),
                checksum: 0,
            },
            noise_w: 0.0,
            baud: None,
        }
    }
}

/// What the emulator did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmulatorReport {
    /// Records generated while logging externally.
    pub records: u64,
    /// Records written to a connected port.
    pub delivered: u64,
    /// Records that were deliberately corrupted (truncated or prefix-less).
    pub corrupted: u64,
    /// Commands answered.
    pub commands: u64,
    /// Disconnects performed.
    pub disconnects: u64,
}

/// One line of the sent log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SentRecord {
    /// Record number since the emulator started, from 0.
    pub k: u64,
    /// Emulated time at the end of the record's interval, s.
    pub t_s: f64,
    /// Power on the wire, W (0.1 W resolution).
    pub watts: f64,
    /// `none`, `nul`, `junk`, `truncate` or `noprefix`.
    pub fault: String,
    /// Whether the bytes were written to a connected port.
    pub delivered: bool,
    /// pty generation (1 + number of disconnects so far).
    pub connection: u32,
}

impl SentRecord {
    /// Whether a capture should have received this record intact.
    pub fn expected_intact(&self) -> bool {
        self.delivered && matches!(self.fault.as_str(), "none" | "nul" | "junk")
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    path: PathBuf,
    pts: Arc<Mutex<PathBuf>>,
    cancel: Cancel,
    thread: Option<JoinHandle<Result<EmulatorReport, EmulatorError>>>,
}

impl EmulatorHandle {
    /// The device path to open: the link if configured, else the pty slave.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The current pty slave path.
    pub fn pts(&self) -> PathBuf {
        self.pts.lock().map(|p| p.clone()).unwrap_or_default()
    }
    /// Stop and wait for the report.
    pub fn stop(mut self) -> Result<EmulatorReport, EmulatorError> {
        self.cancel.cancel();
        self.join_inner()
    }
    fn join_inner(&mut self) -> Result<EmulatorReport, EmulatorError> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(EmulatorError::Spec("emulator thread panicked".into()))),
            None => Ok(EmulatorReport::default()),
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
        let _ = self.join_inner();
    }
}

struct Pty {
    master: PtyMaster,
    slave: PathBuf,
}

/// Whether `link` may be (re)pointed at a pty: absent, or a symbolic link that is dangling
/// or points at a pty (an earlier emulator's). Anything else (a file, a folder, another link)
/// is the user's and is refused before anything is created.
fn check_link(link: &Path) -> Result<(), EmulatorError> {
    let refuse = |problem: String| EmulatorError::Link {
        path: link.into(),
        problem,
    };
    let meta = match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(EmulatorError::Io {
                path: link.into(),
                source: e,
            })
        }
        Ok(m) => m,
    };
    if !meta.file_type().is_symlink() {
        return Err(refuse(if meta.is_dir() {
            "is a folder".into()
        } else {
            "exists and is not a symbolic link".into()
        }));
    }
    let to = std::fs::read_link(link).unwrap_or_default();
    let stale_pty = to.starts_with("/dev/pts/") || std::fs::metadata(link).is_err();
    if stale_pty {
        Ok(())
    } else {
        Err(refuse(format!(
            "is a symbolic link to {}, not an earlier emulator's",
            to.display()
        )))
    }
}

/// Remove the link if it still points at `pts` (never someone else's file or newer link).
fn remove_link(link: &Path, pts: &Path) {
    if std::fs::read_link(link).is_ok_and(|to| to == pts) {
        let _ = std::fs::remove_file(link);
    }
}

fn open_pty(link: Option<&Path>) -> Result<Pty, EmulatorError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .map_err(EmulatorError::Pty)?;
    grantpt(&master).map_err(EmulatorError::Pty)?;
    unlockpt(&master).map_err(EmulatorError::Pty)?;
    let slave = PathBuf::from(ptsname_r(&master).map_err(EmulatorError::Pty)?);
    // Raw mode, so nothing the meter sends is echoed back or line-edited before the host
    // configures the port itself.
    let mut t = tcgetattr(master.as_fd()).map_err(EmulatorError::Pty)?;
    cfmakeraw(&mut t);
    tcsetattr(master.as_fd(), SetArg::TCSANOW, &t).map_err(EmulatorError::Pty)?;
    if let Some(link) = link {
        check_link(link)?;
        // Atomically re-point the stable name, as udev does for a re-enumerated device, via
        // a hidden name of this process (removed if the rename fails).
        let name = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = link.with_file_name(format!(".{name}.emulator-tmp-{}", std::process::id()));
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&tmp);
        }
        std::os::unix::fs::symlink(&slave, &tmp).map_err(|e| EmulatorError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        if let Err(e) = std::fs::rename(&tmp, link) {
            let _ = std::fs::remove_file(&tmp);
            return Err(EmulatorError::Io {
                path: link.into(),
                source: e,
            });
        }
    }
    Ok(Pty { master, slave })
}

/// Start an emulator on a new pseudo-terminal in a background thread.
pub fn start(config: EmulatorConfig, cancel: Cancel) -> Result<EmulatorHandle, EmulatorError> {
    if !(config.speed.is_finite() && config.speed > 0.0 && config.speed <= MAX_SPEED) {
        return Err(EmulatorError::Spec(format!(
            "speed must be > 0 and at most {MAX_SPEED} (emulated seconds per real second), got {:e}",
            config.speed
        )));
    }
    if !(config.noise_w.is_finite() && (0.0..=MAX_WATTS).contains(&config.noise_w)) {
        return Err(EmulatorError::Spec(format!(
            "noise must be within 0..{MAX_WATTS} W, got {}",
            config.noise_w
        )));
    }
    let pty = open_pty(config.link.as_deref())?;
    let path = config.link.clone().unwrap_or_else(|| pty.slave.clone());
    let pts = Arc::new(Mutex::new(pty.slave.clone()));
    let sent_log = match &config.sent_log {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|e| {
            EmulatorError::Io {
                path: p.clone(),
                source: e,
            }
        })?)),
        None => None,
    };
    let state = Meter::new(config, pty, sent_log, pts.clone());
    // Stopping this emulator must not cancel the caller's other work: the handle has its own
    // flag, and the thread also watches the caller's.
    let own = Cancel::new();
    let (c_own, c_parent) = (own.clone(), cancel);
    let thread = std::thread::Builder::new()
        .name("wattsup-emulator".into())
        .spawn(move || state.run(&c_own, &c_parent))
        .map_err(|e| EmulatorError::Io {
            path: "thread".into(),
            source: e,
        })?;
    Ok(EmulatorHandle {
        path,
        pts,
        cancel: own,
        thread: Some(thread),
    })
}

struct Meter {
    cfg: EmulatorConfig,
    pty: Option<Pty>,
    pts: Arc<Mutex<PathBuf>>,
    rng: StdRng,
    decoder: Decoder,
    sent_log: Option<BufWriter<File>>,
    report: EmulatorReport,
    t0: Instant,
    mode: LoggingMode,
    interval_s: u32,
    /// Emulated time the current logging period started.
    log_start_s: f64,
    /// Records generated in the current logging period.
    log_count: u64,
    /// Total records generated.
    k: u64,
    wh: f64,
    memory: Vec<Record>,
    fields: [bool; FIELD_COUNT],
    full_mode: FullMode,
    connection: u32,
    greeted: bool,
    /// Set while an emulated unplug is under way: nothing is sent, the pty closes then.
    unplug_at: Option<Instant>,
}

impl Meter {
    fn new(
        cfg: EmulatorConfig,
        pty: Pty,
        sent_log: Option<BufWriter<File>>,
        pts: Arc<Mutex<PathBuf>>,
    ) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Meter {
            cfg,
            pty: Some(pty),
            pts,
            rng,
            decoder: Decoder::new(),
            sent_log,
            report: EmulatorReport::default(),
            t0: Instant::now(),
            // A meter powers on logging internally at 1 s.
            mode: LoggingMode::Internal,
            interval_s: 1,
            log_start_s: 0.0,
            log_count: 0,
            k: 0,
            wh: 0.0,
            memory: Vec::new(),
            fields: [true; FIELD_COUNT],
            full_mode: FullMode::Wrap,
            connection: 1,
            greeted: false,
            unplug_at: None,
        }
    }

    fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * self.cfg.speed
    }

    fn real_at(&self, t_s: f64) -> Instant {
        self.t0 + Duration::from_secs_f64((t_s / self.cfg.speed).max(0.0))
    }

    fn in_window(windows: &[(f64, f64)], t: f64) -> bool {
        windows.iter().any(|&(a, d)| t >= a && t < a + d)
    }

    fn run(mut self, own: &Cancel, parent: &Cancel) -> Result<EmulatorReport, EmulatorError> {
        let mut buf = [0u8; 4096];
        while !own.is_cancelled() && !parent.is_cancelled() {
            let now = self.now_s();
            // Disconnect windows: drop the pty, then come back on a new one.
            let gone = Self::in_window(&self.cfg.faults.disconnects, now);
            if gone && self.pty.is_some() && self.unplug_at.is_none() {
                // Stop sending first and give the host a moment to read what is in flight,
                // so a test can account for every record delivered before the unplug.
                self.unplug_at = Some(Instant::now() + Duration::from_millis(100));
            }
            if self.unplug_at.is_some_and(|t| Instant::now() >= t) {
                self.unplug_at = None;
                if let (Some(link), Some(pty)) = (&self.cfg.link, &self.pty) {
                    remove_link(link, &pty.slave);
                }
                self.pty = None;
                self.report.disconnects += 1;
            } else if !gone && self.pty.is_none() {
                let pty = open_pty(self.cfg.link.as_deref())?;
                if let Ok(mut p) = self.pts.lock() {
                    *p = pty.slave.clone();
                }
                self.pty = Some(pty);
                self.connection += 1;
                self.greeted = false;
                self.decoder = Decoder::new();
            }
            let stalled = Self::in_window(&self.cfg.faults.stalls, now);

            // Next record due, in real time.
            let next_due =
                self.log_start_s + (self.log_count + 1) as f64 * f64::from(self.interval_s);
            let wait = self
                .real_at(next_due)
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20));

            let mut readable = false;
            if let Some(pty) = &self.pty {
                let mut fds = [PollFd::new(pty.master.as_fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(wait.as_millis()).unwrap_or(20);
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(n) if n > 0 => {
                        let ev = fds[0].revents().unwrap_or(PollFlags::empty());
                        readable = ev.contains(PollFlags::POLLIN);
                        if ev.contains(PollFlags::POLLHUP) && !readable {
                            // No host has the port open: nothing to read yet.
                            std::thread::sleep(wait);
                        }
                    }
                    _ => {}
                }
            } else {
                std::thread::sleep(wait);
            }
            if readable {
                let n = match self.pty.as_mut().map(|p| p.master.read(&mut buf)) {
                    Some(Ok(n)) => n,
                    _ => 0,
                };
                if n > 0 && !stalled && !self.host_baud_ok() {
                    // Wrong line speed: the meter's reply arrives as framing garbage.
                    self.write(&[0xf8, 0x80, 0x00, 0xfe, 0x9e, 0x06]);
                } else if n > 0 && !stalled {
                    let mut cmds = Vec::new();
                    self.decoder.feed(&buf[..n], |e| {
                        if let Event::Packet {
                            packet: Packet::Command(c),
                            ..
                        } = e
                        {
                            cmds.push(c);
                        }
                    });
                    if !cmds.is_empty() && !self.greeted {
                        self.greeted = true;
                        if self.cfg.faults.banner {
                            let b = format!(
                                "WattsUp.NET $ Version: {}.{} $ {} 60Hz 120V\r\n",
                                self.cfg.version.fw_major,
                                self.cfg.version.fw_minor,
                                self.cfg.version.fw_timestamp
                            );
                            self.write(b.as_bytes());
                        }
                    }
                    for c in cmds {
                        self.report.commands += 1;
                        self.handle(c);
                    }
                }
            }
            // Generate every record that is due (a bounded batch per pass, so that a stop
            // request is seen however far behind the emulated clock is).
            for _ in 0..1000 {
                let due =
                    self.log_start_s + (self.log_count + 1) as f64 * f64::from(self.interval_s);
                if self.now_s() < due {
                    break;
                }
                self.log_count += 1;
                let rec = self.make_record(due);
                match self.mode {
                    LoggingMode::External => {
                        let silent = Self::in_window(&self.cfg.faults.stalls, due);
                        self.emit(due, rec, silent);
                    }
                    LoggingMode::Internal => {
                        let cap = self.cfg.version.memory as usize;
                        if self.memory.len() >= cap {
                            match self.full_mode {
                                FullMode::Stop => continue,
                                FullMode::Wrap | FullMode::Condense => {
                                    self.memory.remove(0);
                                }
                            }
                        }
                        self.memory.push(rec);
                    }
                    LoggingMode::Suspended => {}
                }
            }
        }
        if let Some(log) = &mut self.sent_log {
            let _ = log.flush();
        }
        if let (Some(link), Some(pty)) = (&self.cfg.link, &self.pty) {
            remove_link(link, &pty.slave);
        }
        Ok(self.report)
    }

    /// Whether the host configured the port at the meter's rate. termios belongs to the
    /// tty, so a short-lived fd on the slave reads what the host set.
    fn host_baud_ok(&self) -> bool {
        let Some(want) = self.cfg.baud else {
            return true;
        };
        let Some(pty) = &self.pty else {
            return false;
        };
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
            .open(&pty.slave)
        else {
            return true;
        };
        // serialport sets arbitrary rates through termios2 (BOTHER), which the classic
        // termios API cannot report: read termios2 and its numeric input speed.
        let mut t2 = std::mem::MaybeUninit::<nix::libc::termios2>::uninit();
        // SAFETY: TCGETS2 fills a termios2 for a valid tty fd; the result is checked.
        let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), nix::libc::TCGETS2, t2.as_mut_ptr()) };
        if rc != 0 {
            return true;
        }
        // SAFETY: ioctl succeeded, so the struct is initialised.
        let got = unsafe { t2.assume_init() }.c_ispeed;
        got == want
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(pty) = self.pty.as_mut() else {
            return false;
        };
        let mut rest = bytes;
        let deadline = Instant::now() + Duration::from_millis(200);
        while !rest.is_empty() {
            match pty.master.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // EIO: no host has the port open; the bytes go nowhere, like a real
                // meter's with nothing listening.
                Err(_) => return false,
            }
        }
        true
    }

    fn reply(&mut self, s: &str) {
        let line = format!("{s}\r\n");
        self.write(line.as_bytes());
    }

    fn handle(&mut self, c: Command) {
        let now = self.now_s();
        match c {
            Command::ReadHeader => {
                let s = format!("#h,-,18,{};", HEADER_NAMES.join(","));
                self.reply(&s);
            }
            Command::ReadVersion | Command::StopLogging => {
                // The version is also the reply to a well-formed command the meter ignores.
                let v = &self.cfg.version;
                let s = format!(
                    "#v,-,8,{},{},{},{},{},{},{},{};",
                    v.model,
                    v.memory,
                    v.hw_major,
                    v.hw_minor,
                    v.fw_major,
                    v.fw_minor,
                    v.fw_timestamp,
                    v.checksum
                );
                self.reply(&s);
            }
            Command::StartExternal { interval_s } => {
                self.restart_logging(LoggingMode::External, interval_s, now);
            }
            Command::StartInternal { interval_s } => {
                self.restart_logging(LoggingMode::Internal, interval_s, now);
                let s = format!("#s,-,3,1,{},1;", self.interval_s);
                self.reply(&s);
            }
            Command::DownloadMemory => {
                let mut out = format!("#n,-,3,1,{},{};\r\n", self.interval_s, self.memory.len());
                for r in &self.memory {
                    out.push_str(&r.encode());
                }
                out.push_str(&format!("#l,-,2,1,{};\r\n", self.interval_s));
                self.write(out.as_bytes());
            }
            Command::ClearMemory => {
                self.wh = 0.0;
                self.restart_logging(self.mode, self.interval_s, now);
            }
            Command::ReadStatus => {
                let s = format!("#s,-,3,1,{},{};", self.interval_s, self.mode.code());
                self.reply(&s);
            }
            Command::SetInterval { interval_s } => {
                self.restart_logging(self.mode, interval_s, now);
            }
            Command::ReadFields => {
                let f: Vec<&str> = self
                    .fields
                    .iter()
                    .map(|b| if *b { "1" } else { "0" })
                    .collect();
                let s = format!("#c,-,18,{};", f.join(","));
                self.reply(&s);
            }
            Command::WriteFields(sel) => {
                self.fields = sel;
                self.restart_logging(self.mode, self.interval_s, now);
                let s = format!("#n,-,1,{};", self.cfg.version.memory);
                self.reply(&s);
            }
            Command::ReadUser => self.reply("#u,-,3,100,5,0;"),
            Command::ReadFullMode => {
                let s = format!("#o,-,1,{};", self.full_mode as u8);
                self.reply(&s);
            }
            Command::WriteFullMode(m) => self.full_mode = m,
        }
    }

    fn restart_logging(&mut self, mode: LoggingMode, interval_s: u32, now: f64) {
        self.mode = mode;
        self.interval_s = interval_s.max(1);
        self.log_start_s = now;
        self.log_count = 0;
        self.memory.clear();
    }

    fn make_record(&mut self, t_end: f64) -> Record {
        let dt = f64::from(self.interval_s);
        // The meter reports the mean power over its interval: average a few points.
        let n = 8;
        let w: f64 = if let Profile::Live(p) = &self.cfg.profile {
            p.take_mean_watts()
        } else {
            (0..n)
                .map(|i| {
                    self.cfg
                        .profile
                        .watts_at(t_end - dt + dt * (i as f64 + 0.5) / n as f64)
                })
                .sum::<f64>()
                / n as f64
        };
        // Sum of uniforms: cheap, bounded, roughly normal measurement noise.
        let noise = if self.cfg.noise_w > 0.0 {
            let u: f64 = (0..4).map(|_| self.rng.gen::<f64>() - 0.5).sum();
            u * self.cfg.noise_w * 3f64.sqrt()
        } else {
            0.0
        };
        let w = (w + noise).max(0.0);
        let volts = 230.0 + 0.4 * (t_end / 7.0).sin();
        let pf = if w > 0.0 { 0.95 } else { 1.0 };
        let amps = w / (volts * pf);
        self.wh += w * dt / 3600.0;
        let rate_mils_per_kwh = 100.0;
        let raw = [
            w * 10.0,
            volts * 10.0,
            amps * 1000.0,
            self.wh * 10.0,
            self.wh / 1000.0 * rate_mils_per_kwh,
            w * 720.0,
            w * 720.0 / 1000.0 * rate_mils_per_kwh,
            (w + 0.4) * 10.0,
            (volts + 0.1) * 10.0,
            (amps + 0.002) * 1000.0,
            (w - 0.4).max(0.0) * 10.0,
            (volts - 0.1) * 10.0,
            (amps - 0.002).max(0.0) * 1000.0,
            pf * 100.0,
            if w > 5.0 { 100.0 } else { 0.0 },
            0.0,
            500.0,
            volts * amps * 10.0,
        ];
        let fields = self.fields;
        Record {
            raw: std::array::from_fn(|i| {
                fields[i].then(|| raw[i].round().clamp(0.0, 999_999_999.0) as u32)
            }),
        }
    }

    fn emit(&mut self, t_s: f64, rec: Record, silent: bool) {
        self.report.records += 1;
        let k = self.k;
        self.k += 1;
        let f = self.cfg.faults.clone();
        let mut line = rec.encode();
        let fault = if self.rng.gen_bool(f.truncate) {
            let cut = self.rng.gen_range(4..line.len() - 3);
            line.truncate(cut);
            line.push_str("\r\n");
            "truncate"
        } else if self.rng.gen_bool(f.noprefix) {
            line = line[3..].to_string();
            "noprefix"
        } else if self.rng.gen_bool(f.junk) {
            line = format!("x@!?{line}");
            "junk"
        } else if self.rng.gen_bool(f.nul) {
            let at = if self.rng.gen_bool(0.5) {
                line.len() - 2
            } else {
                line.len() - 1
            };
            line.insert(at, '\0');
            "nul"
        } else {
            "none"
        };
        if fault == "truncate" || fault == "noprefix" {
            self.report.corrupted += 1;
        }
        let delivered = !silent && self.unplug_at.is_none() && self.write(line.as_bytes());
        if delivered {
            self.report.delivered += 1;
        }
        if let Some(log) = &mut self.sent_log {
            let s = SentRecord {
                k,
                t_s,
                watts: rec.watts().unwrap_or(f64::NAN),
                fault: fault.into(),
                delivered,
                connection: self.connection,
            };
            if let Ok(j) = serde_json::to_string(&s) {
                let _ = writeln!(log, "{j}");
                // Tests read the log while the emulator runs.
                let _ = log.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_evaluate() {
        assert_eq!(
            Profile::parse("constant:100.5").unwrap().watts_at(3.0),
            100.5
        );
        let b = Profile::parse("bursts:idle=100,peak=150,period=10,burst=2,start=5").unwrap();
        assert_eq!(b.watts_at(4.9), 100.0);
        assert_eq!(b.watts_at(5.0), 150.0);
        assert_eq!(b.watts_at(6.99), 150.0);
        assert_eq!(b.watts_at(7.0), 100.0);
        assert_eq!(b.watts_at(15.5), 150.0);
        let t = Profile::Trace(vec![(0.0, 100.0), (10.0, 200.0)]);
        assert_eq!(t.watts_at(-1.0), 100.0);
        assert_eq!(t.watts_at(5.0), 150.0);
        assert_eq!(t.watts_at(11.0), 200.0);
        assert!(Profile::parse("sine:3").is_err());
        assert!(Profile::parse("bursts:idle=x").is_err());
    }

    #[test]
    fn trace_files_are_checked_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "time_s,watts\n0,100\n1,abc\n").unwrap();
        let e = Profile::parse(&format!("trace:{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv") && e.contains("watts"), "{e}");
        std::fs::write(&p, "time_s,watts\n0,100\n2,120\n2,130\n").unwrap();
        let e = Profile::parse(&format!("trace:{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv row 3") && e.contains("increase"), "{e}");
        std::fs::write(&p, "time_s,watts\n0,100\n2,120\n").unwrap();
        assert_eq!(
            Profile::parse(&format!("trace:{}", p.display())).unwrap(),
            Profile::Trace(vec![(0.0, 100.0), (2.0, 120.0)])
        );
        let pq = dir.path().join("t.parquet");
        datasets::table::write_f64_columns(
            &pq,
            &[
                ("time_s", vec![0.0, 1.5, 4.0]),
                ("watts", vec![90.0, 95.5, 91.0]),
            ],
        )
        .unwrap();
        assert_eq!(
            Profile::parse(&format!("trace:{}", pq.display())).unwrap(),
            Profile::Trace(vec![(0.0, 90.0), (1.5, 95.5), (4.0, 91.0)])
        );
    }

    #[test]
    fn faults_parse() {
        let f = Faults::parse("nul=0.1,truncate=0.05,banner,stall=30+10,disconnect=60+5").unwrap();
        assert_eq!(f.nul, 0.1);
        assert!(f.banner);
        assert_eq!(f.stalls, vec![(30.0, 10.0)]);
        assert_eq!(f.disconnects, vec![(60.0, 5.0)]);
        assert!(Faults::parse("nul=2").is_err());
        assert!(Faults::parse("meteor=1").is_err());
    }
}
