//! The campaign engine (see the module docs of [`super`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datasets::energy::{write_energy, write_window_quality, Format};
use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;
use meter::capture::{run_capture, CaptureConfig, CaptureReport, CaptureSource, MeterStatus};
use meter::emulator::{EmulatorConfig, LivePower, Profile};
use meter::energy::baseline::{baseline_from_dir, write_baseline, BaselineOptions};
use meter::energy::integrate::{integrate, IntegrateOptions};
use meter::source::{EmulatedSource, PowerSource, SourceOptions, SourceSpec};
use meter::Cancel;
use trainer::coef::CoefficientFile;

use super::config::{HostConfig, HypervisorKind, LoadedConfig, PowerModelKind};
use super::journal::{Entry, Journal};
use super::plan::{self, PlannedRun};
use super::{launch, step, CampaignError, Event, Progress};
use crate::hostpower::{ActivitySample, PowerModel, Probes, Rates, Sampler};
use crate::output::{safe_name, write_datasets};
use crate::qmp::utc_now_ns;
use crate::summary::{
    CampaignSummary, FailedMigration, HostSummary, MigrationCounts, ModelSummary,
    PowerModelSummary, ProducedFile, SummaryPaths, SUMMARY_VERSION,
};
use crate::{IngestOptions, LogKind, Migration};

/// How to run a campaign.
#[derive(Clone)]
pub struct RunOptions {
    /// Stop request (Ctrl-C): the current migration is cancelled, finished work is kept.
    pub cancel: Cancel,
    /// Where events go.
    pub progress: Arc<dyn Progress>,
    /// Migrations to redo even if the journal says they are done.
    pub redo: Vec<String>,
    /// Extra sentences for the summary's `emulated` list (the demo says what it emulates).
    pub emulated_notes: Vec<String>,
}

/// What a finished campaign produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The campaign folder.
    pub out_dir: PathBuf,
    /// The summary written.
    pub summary: CampaignSummary,
    /// `summary.json`.
    pub summary_path: PathBuf,
    /// `report.html` and `report.md`.
    pub report: Vec<PathBuf>,
    /// Migrations skipped because an earlier run finished them.
    pub resumed_migrations: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CampaignError + '_ {
    move |source| CampaignError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One emulated host: its live power and its activity model.
#[derive(Clone)]
struct EmulatedHost {
    power: LivePower,
    is_source: bool,
    model: PowerModel,
}

/// The emulated hosts' power, set from what the hosts do (activity model) or from the
/// running migration's throughput (throughput model).
#[derive(Clone)]
struct EmulatedPower {
    hosts: Vec<EmulatedHost>,
    migrating_w: f64,
}

impl EmulatedPower {
    /// Throughput model: idle, or migrating at `bytes_per_s`.
    fn set(&self, bytes_per_s: Option<f64>) {
        for h in &self.hosts {
            let w = match bytes_per_s {
                None => h.model.idle_w,
                Some(r) => h.model.idle_w + self.migrating_w + h.model.net_j_per_byte * r.max(0.0),
            };
            h.power.set_watts(w);
        }
    }

    /// Activity model: the power of what each host did over an interval.
    fn set_activity(&self, r: &Rates) {
        for h in &self.hosts {
            let cores = if h.is_source {
                r.source_cores
            } else {
                r.destination_cores
            };
            h.power.set_watts(
                h.model
                    .watts(cores, r.link_bytes_per_s)
                    .min(meter::emulator::MAX_WATTS),
            );
        }
    }
}

/// The activity model of each host of `c` (source, destination).
fn host_models(c: &super::Config) -> (PowerModel, PowerModel) {
    let e = &c.emulation;
    (
        PowerModel {
            idle_w: e.source_idle_w,
            cpu_w_per_core: e.cpu_w_per_core,
            net_j_per_byte: e.source_j_per_mb / 1e6,
        },
        PowerModel {
            idle_w: e.destination_idle_w,
            cpu_w_per_core: e.cpu_w_per_core,
            net_j_per_byte: e.destination_j_per_mb / 1e6,
        },
    )
}

/// What runs while a migration's hosts are live: the QEMUs the campaign started (with their
/// relay) and the activity sampler. Dropped once the migration's window tail is recorded.
struct Running {
    sampler: Option<Sampler>,
    pair: Option<launch::LocalPair>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The sampler first: it must not read processes that are being killed.
        self.sampler.take();
        self.pair.take();
    }
}

/// Forwards the capture's status to the campaign's progress, and keeps the latest.
struct CaptureSink {
    progress: Arc<dyn Progress>,
    latest: Mutex<Vec<MeterStatus>>,
}

impl meter::capture::ProgressSink for CaptureSink {
    fn status(&self, meters: &[MeterStatus]) {
        if let Ok(mut l) = self.latest.lock() {
            *l = meters.to_vec();
        }
        self.progress.event(&Event::Meters(
            meters
                .iter()
                .map(|m| (m.name.clone(), m.samples, m.watts))
                .collect(),
        ));
    }
    fn event(&self, message: &str) {
        self.progress
            .event(&Event::Log(format!("capture: {message}")));
    }
}

/// A running capture of both meters (emulated meters live as long as their sources, inside
/// the capture).
struct Capture {
    cancel: Cancel,
    thread: Option<std::thread::JoinHandle<Result<CaptureReport, meter::capture::CaptureError>>>,
    sink: Arc<CaptureSink>,
}

impl Capture {
    fn samples_of_all(&self) -> Vec<u64> {
        self.sink
            .latest
            .lock()
            .map(|l| l.iter().map(|m| m.samples).collect())
            .unwrap_or_default()
    }

    fn check_alive(&mut self) -> Result<(), CampaignError> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let t = self.thread.take().expect("checked above");
            return match t.join() {
                Ok(Ok(_)) => Err(CampaignError::Step {
                    step: "capture",
                    message: "the capture stopped early".into(),
                }),
                Ok(Err(e)) => Err(CampaignError::Step {
                    step: "capture",
                    message: chain(&e),
                }),
                Err(_) => Err(CampaignError::Step {
                    step: "capture",
                    message: "the capture thread panicked".into(),
                }),
            };
        }
        Ok(())
    }

    fn stop(mut self) -> Result<Option<CaptureReport>, CampaignError> {
        self.cancel.cancel();
        let r = match self.thread.take() {
            Some(t) => match t.join() {
                Ok(r) => Some(r.map_err(step("capture"))?),
                Err(_) => {
                    return Err(CampaignError::Step {
                        step: "capture",
                        message: "the capture thread panicked".into(),
                    })
                }
            },
            None => None,
        };
        Ok(r)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleep `total_s` in small steps, reporting progress; false when cancelled.
fn wait(
    what: &'static str,
    total_s: f64,
    opts: &RunOptions,
    cap: &mut Capture,
) -> Result<(), CampaignError> {
    let start = Instant::now();
    loop {
        let e = start.elapsed().as_secs_f64();
        opts.progress.event(&Event::Wait {
            what,
            elapsed_s: e.min(total_s),
            total_s,
        });
        if e >= total_s {
            return Ok(());
        }
        if opts.cancel.is_cancelled() {
            return Err(CampaignError::Cancelled);
        }
        cap.check_alive()?;
        std::thread::sleep(Duration::from_secs_f64((total_s - e).clamp(0.0, 0.25)));
    }
}

fn say(opts: &RunOptions, s: impl Into<String>) {
    opts.progress.event(&Event::Log(s.into()));
}

use datasets::error_chain as chain;

/// A host's meter as its `meter` key spells it (`emulated`, `wattsup:DEVICE` or a serial
/// device), devices resolved against the config's folder.
fn meter_spec(lc: &LoadedConfig, key: &str, h: &HostConfig) -> Result<SourceSpec, CampaignError> {
    let config = |message: String| CampaignError::Config {
        path: lc.path.clone(),
        message,
    };
    match SourceSpec::parse_device_or_spec(&h.meter).map_err(|e| config(format!("{key} = {e}")))? {
        SourceSpec::WattsUp { device } => Ok(SourceSpec::WattsUp {
            device: lc.resolve(&device),
        }),
        SourceSpec::Emulated { profile: Some(_) } => Err(config(format!(
            "{key} = {:?}: a campaign's emulated meter follows the migrations; write \"emulated\" without a profile",
            h.meter
        ))),
        s => Ok(s),
    }
}

fn start_capture(
    lc: &LoadedConfig,
    out: &Path,
    opts: &RunOptions,
) -> Result<(Capture, Option<EmulatedPower>), CampaignError> {
    let c = &lc.config;
    let cancel = Cancel::new();
    let mut live = Vec::new();
    let mut sources = Vec::new();
    let e = &c.emulation;
    let settings = SourceOptions {
        settle: Duration::from_millis(100),
        ..SourceOptions::default()
    };
    let (ms, md) = host_models(c);
    for (h, role, model, seed) in [
        (&c.source, "source", ms, 11),
        (&c.destination, "destination", md, 12),
    ] {
        let idle = model.idle_w;
        let key = format!("{role}.meter");
        let source: Arc<dyn PowerSource> = match meter_spec(lc, &key, h)? {
            SourceSpec::Emulated { .. } => {
                let links = out.join(".meters");
                std::fs::create_dir_all(&links).map_err(io(&links))?;
                let power = LivePower::new(idle);
                let cfg = EmulatorConfig {
                    profile: Profile::Live(power.clone()),
                    link: Some(links.join(role)),
                    noise_w: e.noise_w,
                    seed: seed + utc_now_ns() as u64 % 1000,
                    ..EmulatorConfig::default()
                };
                let em = EmulatedSource::start(cfg, settings.clone()).map_err(|e| {
                    CampaignError::Step {
                        step: "starting the emulated meter",
                        message: chain(&e),
                    }
                })?;
                live.push(EmulatedHost {
                    power,
                    is_source: role == "source",
                    model,
                });
                Arc::new(em)
            }
            spec => spec.open(&settings).map_err(|e| CampaignError::Step {
                step: "opening the meter",
                message: chain(&e),
            })?,
        };
        sources.push(CaptureSource {
            name: h.host.clone(),
            source,
        });
    }
    let samples = out.join("samples");
    let cfg = CaptureConfig::new(sources, &samples);
    let sink = Arc::new(CaptureSink {
        progress: opts.progress.clone(),
        latest: Mutex::new(Vec::new()),
    });
    let (cc, s2) = (cancel.clone(), sink.clone());
    let thread = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || run_capture(cfg, cc, s2))
        .map_err(step("starting the capture"))?;
    let power = (!live.is_empty()).then_some(EmulatedPower {
        hosts: live,
        migrating_w: e.migrating_w,
    });
    Ok((
        Capture {
            cancel,
            thread: Some(thread),
            sink,
        },
        power,
    ))
}

/// Lock the campaign folder for this process (released when the file closes).
fn lock(out: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, CampaignError> {
    let p = out.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(&p))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| CampaignError::Locked(out.to_path_buf()))
}

/// Run (or resume) the campaign of `lc`.
pub fn run(lc: &LoadedConfig, opts: &RunOptions) -> Result<Outcome, CampaignError> {
    let c = &lc.config;
    // A missing serial device is a typo or an unplugged cable: say so before creating anything.
    for (key, h) in [
        ("source.meter", &c.source),
        ("destination.meter", &c.destination),
    ] {
        if let SourceSpec::WattsUp { device } = meter_spec(lc, key, h)? {
            if !device.exists() {
                return Err(CampaignError::Config {
                    path: lc.path.clone(),
                    message: format!(
                        "{key} = \"{}\": no such device (is the meter plugged in? `migwatt meter list` shows serial ports)",
                        h.meter
                    ),
                });
            }
        }
    }
    let out = lc.checked_out_dir()?;
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let _lock = lock(&out)?;
    let config_copy = out.join("campaign.toml");
    let text = std::fs::read(&lc.path).map_err(io(&lc.path))?;
    datasets::io::write_bytes_atomic(&config_copy, &text).map_err(step("copying the config"))?;
    let mut journal = Journal::open(&out.join("journal.jsonl"))?;
    let resumed = journal.state().runs > 0;
    journal.record(Entry::Started {
        utc_ns: utc_now_ns(),
        toolkit_version: env!("CARGO_PKG_VERSION").into(),
    })?;
    let replay = match (&c.hypervisor.kind, &c.hypervisor.replay) {
        (HypervisorKind::Replay, Some(dir)) => Some(read_replay(&lc.resolve(dir))?),
        _ => None,
    };
    let mut planned = plan::build(c, replay.as_deref())?;
    if let (HypervisorKind::Replay, Some(dir)) = (&c.hypervisor.kind, &c.hypervisor.replay) {
        let ids: Vec<&str> = planned
            .iter()
            .filter_map(|p| p.replay.as_ref().map(|r| r.0.migration_id.as_str()))
            .collect();
        let mut found = replay_activity(&lc.resolve(dir), &ids);
        for p in &mut planned {
            if let Some((row, _)) = &p.replay {
                p.activity = found.remove(&row.migration_id).unwrap_or_default();
            }
        }
    }
    if planned.is_empty() {
        return Err(CampaignError::Plan("the plan has no migration".into()));
    }
    for id in &opts.redo {
        if !planned.iter().any(|p| &p.migration_id == id) {
            return Err(CampaignError::Plan(format!(
                "--redo {id}: no such migration in the plan (ids look like {})",
                planned[0].migration_id
            )));
        }
    }
    let is_done =
        |j: &Journal, id: &str| j.state().done.contains(id) && !opts.redo.iter().any(|r| r == id);
    let todo: Vec<&PlannedRun> = planned
        .iter()
        .filter(|p| !is_done(&journal, &p.migration_id))
        .collect();
    let already = planned.len() - todo.len();
    opts.progress.event(&Event::Planned {
        total: planned.len(),
        done: already,
    });
    if resumed {
        say(
            opts,
            format!(
                "resuming {}: {} of {} migrations already done{}",
                out.display(),
                already,
                planned.len(),
                if journal.state().unreadable.is_empty() {
                    String::new()
                } else {
                    " (the last journal line was cut by the kill; its step is redone)".into()
                }
            ),
        );
    }
    let need_capture = journal.state().baseline.is_none() || !todo.is_empty();
    if need_capture {
        opts.progress.event(&Event::Phase("capture"));
        let (mut cap, power) = start_capture(lc, &out, opts)?;
        say(
            opts,
            format!(
                "capturing {} and {} into {}",
                c.source.host,
                c.destination.host,
                out.join("samples").display()
            ),
        );
        // Every meter must be logging before anything is measured.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = cap.samples_of_all();
            if s.len() == 2 && s.iter().all(|n| *n > 0) {
                break;
            }
            cap.check_alive()?;
            if opts.cancel.is_cancelled() {
                cap.stop()?;
                return Err(CampaignError::Cancelled);
            }
            if Instant::now() > deadline {
                cap.stop()?;
                return Err(CampaignError::Step {
                    step: "capture",
                    message: "a meter sent no sample within 60 s: check its serial device, cable and power".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = run_migrations(
            lc,
            &out,
            opts,
            &mut journal,
            &mut cap,
            power.as_ref(),
            &todo,
            planned.len(),
        );
        let stopped = cap.stop();
        r?;
        if let Some(rep) = stopped? {
            for m in &rep.meters {
                say(
                    opts,
                    format!(
                        "  {}: {} samples this run, {} gaps",
                        m.name, m.samples, m.gaps
                    ),
                );
            }
        }
    }
    let failed: Vec<FailedMigration> = journal
        .state()
        .unfinished
        .iter()
        .filter(|(id, _)| planned.iter().any(|p| &&p.migration_id == id))
        .map(|(id, reason)| FailedMigration {
            migration_id: id.clone(),
            reason: reason.clone().unwrap_or_else(|| "cut".into()),
        })
        .collect();
    let outcome = analyse(lc, &out, opts, &mut journal, &planned, failed)?;
    journal.record(Entry::Finished {
        utc_ns: utc_now_ns(),
    })?;
    Ok(Outcome {
        resumed_migrations: already,
        ..outcome
    })
}

#[allow(clippy::too_many_arguments)]
fn run_migrations(
    lc: &LoadedConfig,
    out: &Path,
    opts: &RunOptions,
    journal: &mut Journal,
    cap: &mut Capture,
    power: Option<&EmulatedPower>,
    todo: &[&PlannedRun],
    total: usize,
) -> Result<(), CampaignError> {
    let c = &lc.config;
    if journal.state().baseline.is_none() {
        opts.progress.event(&Event::Phase("baseline"));
        say(
            opts,
            format!(
                "measuring P_0: keep both hosts idle for {:.0} s",
                c.baseline_s
            ),
        );
        let start = utc_now_ns();
        wait("baseline", c.baseline_s, opts, cap)?;
        journal.record(Entry::Baseline {
            start_utc_ns: start,
            end_utc_ns: utc_now_ns(),
        })?;
    } else if !todo.is_empty() {
        // The capture just started again: let the hosts settle and the meters cover the
        // stretch before the next window.
        wait("settle", c.settle_s.max(c.window_pad_s + 2.5), opts, cap)?;
    }
    if todo.is_empty() {
        return Ok(());
    }
    opts.progress.event(&Event::Phase("migrations"));
    // The padded tail of a window plus the record that averages it.
    let tail_s = c.window_pad_s + 1.5;
    for run in todo {
        opts.progress.event(&Event::MigrationStarted {
            index: run.index,
            total,
            migration_id: run.migration_id.clone(),
        });
        journal.record(Entry::MigrationStarted {
            migration_id: run.migration_id.clone(),
            utc_ns: utc_now_ns(),
        })?;
        let got = execute(lc, out, opts, run, power);
        let got_ok = got.is_ok();
        match got {
            Ok((m, mut raw, ext, running)) => {
                write_datasets(out, std::slice::from_ref(&m))
                    .map_err(step("writing the migration"))?;
                // Done only once the meters have recorded the window's padded tail (and the
                // record that averages it): a campaign killed before then redoes the
                // migration instead of keeping a window it cannot fully integrate. The
                // destination's guest runs on meanwhile, and its activity is recorded.
                let waited = wait("settle", tail_s, opts, cap);
                if let Some(mut r) = running {
                    if let Some(s) = r.sampler.take() {
                        drop_sampler_into(s, &mut raw);
                    }
                }
                if let Some(p) = power {
                    p.set(None);
                }
                waited?;
                let rawp = out
                    .join("raw")
                    .join(format!("{}.{ext}", safe_name(&run.migration_id)));
                datasets::io::write_bytes_atomic(&rawp, &raw)
                    .map_err(step("writing the raw log"))?;
                journal.record(Entry::MigrationDone {
                    migration_id: run.migration_id.clone(),
                    utc_ns: utc_now_ns(),
                })?;
                opts.progress.event(&Event::MigrationFinished {
                    index: run.index,
                    total,
                    migration_id: run.migration_id.clone(),
                    outcome: format!(
                        "{}: {:.1} MB in {:.2} s, {} rounds{}",
                        m.row.status,
                        m.row.v_mig_bytes as f64 / 1e6,
                        m.row.t_mig_s,
                        m.row.rounds,
                        match (m.row.memory_verified, m.row.memory_mismatch_pages) {
                            (Some(true), _) => ", memory verified".to_string(),
                            (Some(false), n) => format!(
                                ", MEMORY MISMATCH ({} pages)",
                                n.map_or("?".into(), |n| n.to_string())
                            ),
                            _ if m.row.converged && c.hypervisor.verifies() =>
                                ", memory NOT verified".to_string(),
                            _ => String::new(),
                        }
                    ),
                });
            }
            Err(CampaignError::Cancelled) => {
                if let Some(p) = power {
                    p.set(None);
                }
                return Err(CampaignError::Cancelled);
            }
            Err(e) => {
                if let Some(p) = power {
                    p.set(None);
                }
                journal.record(Entry::MigrationFailed {
                    migration_id: run.migration_id.clone(),
                    reason: chain(&e),
                })?;
                opts.progress.event(&Event::MigrationFinished {
                    index: run.index,
                    total,
                    migration_id: run.migration_id.clone(),
                    outcome: format!("failed: {e}"),
                });
            }
        }
        cap.check_alive()?;
        // Settle after every migration, the last included: its window needs samples after
        // its end, and the next one must start from P_0.
        let waited_s = if got_ok { tail_s } else { 0.0 };
        wait("settle", (c.settle_s - waited_s).max(0.0), opts, cap)?;
    }
    Ok(())
}

/// A running sampler's last samples appended to a raw log as `activity` lines (those after
/// the collector's `end`: the destination running after the migration).
fn drop_sampler_into(s: Sampler, raw: &mut Vec<u8>) {
    let rest: Vec<ActivitySample> = s
        .feed
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    drop(s);
    for a in rest {
        raw.extend_from_slice(crate::hostpower::activity_line(&a).to_string().as_bytes());
        raw.push(b'\n');
    }
}

/// QEMU's max-bandwidth when a relay paces the link: high enough never to limit it.
const UNLIMITED_BYTES_PER_S: u64 = 1 << 40;

type Executed = (Migration, Vec<u8>, &'static str, Option<Running>);

/// Run one planned migration; returns its rows, the raw log, the log's extension and what
/// still runs (QEMUs, sampler) until the window's tail is recorded.
fn execute(
    lc: &LoadedConfig,
    out: &Path,
    opts: &RunOptions,
    run: &PlannedRun,
    power: Option<&EmulatedPower>,
) -> Result<Executed, CampaignError> {
    let c = &lc.config;
    let h = &c.hypervisor;
    let mut running = None;
    let (mut m, raw, ext) = match h.kind {
        HypervisorKind::Replay => replay_one(lc, run, opts, power)?,
        HypervisorKind::Qemu => {
            let work = out.join(".qemu").join(safe_name(&run.migration_id));
            let mut pair = None;
            let (src, dst, uri, probes) = match &h.launch {
                Some(l) => {
                    say(
                        opts,
                        format!("{}: starting source and destination QEMU", run.migration_id),
                    );
                    let p = launch::start(l, run, &work, &opts.cancel)?;
                    let (sp, dp) = p.pids();
                    let t = (
                        p.source_qmp.clone(),
                        p.destination_qmp.clone(),
                        p.uri.clone(),
                        Probes {
                            source_pids: vec![sp],
                            destination_pids: vec![dp],
                            link_bytes: Some(p.relay.forwarded.clone()),
                        },
                    );
                    pair = Some(p);
                    t
                }
                None => {
                    hook(lc, "prepare", h.prepare.as_deref(), run, &[])?;
                    let (src, dst) = (
                        lc.resolve(h.source_qmp.as_deref().unwrap_or(Path::new(""))),
                        lc.resolve(h.destination_qmp.as_deref().unwrap_or(Path::new(""))),
                    );
                    // User-started QEMUs: the processes listening on the QMP sockets.
                    let mut probes = Probes::default();
                    for (side, sock, pids) in [
                        ("source", &src, &mut probes.source_pids),
                        ("destination", &dst, &mut probes.destination_pids),
                    ] {
                        match crate::hostpower::listener_pid(sock) {
                            Ok(pid) => pids.push(pid),
                            Err(e) => say(
                                opts,
                                format!(
                                    "{}: {side} QEMU not found, its CPU time is not sampled (counts as idle): {e}",
                                    run.migration_id
                                ),
                            ),
                        }
                    }
                    (src, dst, h.uri.clone().unwrap_or_default(), probes)
                }
            };
            let activity_power = power
                .filter(|_| c.emulation.power_model == PowerModelKind::Activity)
                .cloned();
            let sampler = Sampler::start(
                probes,
                Box::new(move |r: &Rates| {
                    if let Some(p) = &activity_power {
                        p.set_activity(r);
                    }
                }),
            );
            let link_rate = pair.as_ref().and_then(|p| p.link_rate_bytes_per_s);
            let link =
                link_rate.map(|r| serde_json::json!({"kind": "relay", "rate_bytes_per_s": r}));
            let throughput_power =
                power.filter(|_| c.emulation.power_model == PowerModelKind::Throughput);
            let mo = crate::collect::MigrateOptions {
                source_qmp: src,
                dest_qmp: dst,
                uri,
                // A relay paces the link: QEMU must not (it would lift its own limit at
                // stop-and-copy anyway).
                bandwidth_bytes_per_s: if link_rate.is_some() {
                    Some(UNLIMITED_BYTES_PER_S)
                } else {
                    run.bandwidth_bytes_per_s
                },
                downtime_limit_ms: run.downtime_limit_ms.or(h.downtime_limit_ms),
                auto_converge: false,
                timeout: Duration::from_secs_f64(h.timeout_s),
                poll_interval: Duration::from_millis(50),
                dirty_rate_sample_s: h.dirty_rate_sample_s,
                probe: h.probe.then(crate::probe::ProbeOptions::default),
                vm: run.vm.clone(),
                workload: Some(run.workload.clone()),
                source_host: c.source.host.clone(),
                destination_host: c.destination.host.clone(),
                verify: h.verifies(),
                paused_hook: h
                    .paused_hook
                    .as_deref()
                    .map(|t| run.expand(t, &hook_vars(lc))),
                // Like prepare and cleanup, from the config's folder.
                paused_hook_dir: Some(lc.base.clone()),
                // The meters record the window's padded tail before the check loads the hosts.
                verify_method: crate::verify::VerifyMethod::Auto,
                hold_before_verify: Duration::from_secs_f64(c.window_pad_s + 1.5),
            };
            let stop = AtomicBool::new(false);
            let mut last: Option<(Instant, u64)> = None;
            let power = throughput_power;
            let got = crate::collect::migrate_with_activity(
                &mo,
                Some(&sampler.feed),
                link,
                &stop,
                &mut |line| say(opts, format!("{}: {line}", run.migration_id)),
                &mut |reply| {
                    if opts.cancel.is_cancelled() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if matches!(
                        reply["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    ) {
                        if let Some(p) = power {
                            p.set(None);
                        }
                        return;
                    }
                    let ram = &reply["ram"];
                    let Some(sent) = ram["transferred"].as_u64() else {
                        return;
                    };
                    let now = Instant::now();
                    if let (Some(p), Some((t, b))) = (power, last) {
                        let dt = now.duration_since(t).as_secs_f64();
                        if dt > 0.0 {
                            p.set(Some(sent.saturating_sub(b) as f64 / dt));
                        }
                    }
                    last = Some((now, sent));
                    opts.progress.event(&Event::MigrationProgress {
                        migration_id: run.migration_id.clone(),
                        transferred_bytes: sent,
                        expected_bytes: ram["total"].as_u64().unwrap_or(run.vm_mem_bytes).max(sent),
                    });
                },
            );
            running = Some(Running {
                sampler: Some(sampler),
                pair,
            });
            if h.launch.is_none() {
                hook(lc, "cleanup", h.cleanup.as_deref(), run, &[])?;
            }
            if opts.cancel.is_cancelled() {
                return Err(CampaignError::Cancelled);
            }
            let got = got.map_err(step("migration"))?;
            if let Some(text) = got.verification_text() {
                say(opts, format!("{}: {text}", run.migration_id));
            }
            if let Some(h) = got.hook.as_ref().filter(|h| !h.success) {
                say(
                    opts,
                    format!(
                        "{}: paused hook failed ({}): {}",
                        run.migration_id, h.status, h.command
                    ),
                );
            }
            if let Some(e) = &got.error_after {
                say(opts, format!("{}: {e}", run.migration_id));
            }
            (got.migration, got.log, "qmp.jsonl")
        }
        HypervisorKind::Xen | HypervisorKind::Libvirt | HypervisorKind::QemuLog => {
            let log = lc.resolve(Path::new(&run.expand(h.log.as_deref().unwrap_or(""), &[])));
            let extra = [("log", log.display().to_string())];
            hook(lc, "prepare", h.prepare.as_deref(), run, &extra)?;
            if let Some(p) = power {
                p.set(Some(0.0));
            }
            let r = match h.migrate.as_deref() {
                Some(cmd) => hook(lc, "migrate", Some(cmd), run, &extra),
                // No command: someone else runs the migration; its log appearing says so.
                None => wait_for_log(&log, kind_of(h.kind), h.timeout_s, run, opts),
            };
            if let Some(p) = power {
                p.set(None);
            }
            hook(lc, "cleanup", h.cleanup.as_deref(), run, &extra)?;
            r?;
            let kind = kind_of(h.kind);
            let parsed = crate::ingest_file(kind, &log, &IngestOptions::default())
                .map_err(step("ingesting the log"))?;
            let raw = std::fs::read(&log).map_err(io(&log))?;
            let m = parsed
                .migrations
                .into_iter()
                .last()
                .ok_or_else(|| CampaignError::Step {
                    step: "ingesting the log",
                    message: format!("{}: no migration", log.display()),
                })?;
            (m, raw, "log")
        }
    };
    // The plan names what ran: ids, labels and hosts are the campaign's.
    m.row.migration_id = run.migration_id.clone();
    m.row.vm = run.vm.clone();
    m.row.workload = Some(run.workload.clone());
    m.row.source_host = c.source.host.clone();
    m.row.destination_host = c.destination.host.clone();
    for r in &mut m.rounds {
        r.migration_id = run.migration_id.clone();
    }
    Ok((m, raw, ext, running))
}

fn kind_of(k: HypervisorKind) -> LogKind {
    match k {
        HypervisorKind::Xen => LogKind::Xen,
        HypervisorKind::Libvirt => LogKind::Libvirt,
        _ => LogKind::Qemu,
    }
}

/// Wait until `log` exists and holds a complete migration (the engineer or a lab script
/// runs it), at most `timeout_s`.
fn wait_for_log(
    log: &Path,
    kind: LogKind,
    timeout_s: f64,
    run: &PlannedRun,
    opts: &RunOptions,
) -> Result<(), CampaignError> {
    say(
        opts,
        format!(
            "{}: waiting for {} (run the migration of {} now: workload {}, bandwidth {})",
            run.migration_id,
            log.display(),
            run.vm,
            run.workload,
            run.bandwidth_bytes_per_s
                .map_or("default".into(), |b| format!("{b} B/s"))
        ),
    );
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    loop {
        if let Ok(bytes) = std::fs::read(log) {
            if !crate::parse_log(kind, log, &bytes, &IngestOptions::default())
                .migrations
                .is_empty()
            {
                return Ok(());
            }
        }
        if opts.cancel.is_cancelled() {
            return Err(CampaignError::Cancelled);
        }
        if Instant::now() > deadline {
            return Err(CampaignError::Step {
                step: "migration",
                message: format!(
                    "{}: no complete migration after {timeout_s:.0} s",
                    log.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The placeholders every hook command may use besides the run's own.
fn hook_vars(lc: &LoadedConfig) -> Vec<(&'static str, String)> {
    let c = &lc.config;
    let qmp = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| lc.resolve(p).display().to_string())
            .unwrap_or_default()
    };
    vec![
        ("source_host", c.source.host.clone()),
        ("destination_host", c.destination.host.clone()),
        ("source_qmp", qmp(&c.hypervisor.source_qmp)),
        ("destination_qmp", qmp(&c.hypervisor.destination_qmp)),
    ]
}

/// Run a hook command through `sh -c`; a non-zero exit is an error naming the hook.
fn hook(
    lc: &LoadedConfig,
    name: &'static str,
    template: Option<&str>,
    run: &PlannedRun,
    extra: &[(&str, String)],
) -> Result<(), CampaignError> {
    let Some(t) = template else {
        return Ok(());
    };
    let mut vars = hook_vars(lc);
    vars.extend(extra.iter().cloned());
    let cmd = run.expand(t, &vars);
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(&lc.base)
        .status()
        .map_err(|e| CampaignError::Step {
            step: "hook",
            message: format!("{name}: `{cmd}`: {e}"),
        })?;
    if !st.success() {
        return Err(CampaignError::Step {
            step: "hook",
            message: format!("{name}: `{cmd}` exited with {st}"),
        });
    }
    Ok(())
}

/// Replay a recorded migration: the rows are the recorded ones, re-timed to now. With the
/// activity model and recorded activity, the emulated hosts replay what the hosts did from
/// `window_pad_s` before the recorded migration to `window_pad_s` after it, through the
/// activity model; otherwise (throughput model, or a recording without activity samples)
/// they draw the throughput model's power for the recorded duration.
fn replay_one(
    lc: &LoadedConfig,
    run: &PlannedRun,
    opts: &RunOptions,
    power: Option<&EmulatedPower>,
) -> Result<(Migration, Vec<u8>, &'static str), CampaignError> {
    let Some((row, rounds)) = &run.replay else {
        return Err(CampaignError::Plan(format!(
            "{}: nothing to replay",
            run.migration_id
        )));
    };
    let c = &lc.config;
    let rates = crate::hostpower::rates(&run.activity);
    let rec_start = row.start_utc_ns.unwrap_or(0);
    let use_activity = c.emulation.power_model == PowerModelKind::Activity
        && !rates.is_empty()
        && row.start_utc_ns.is_some();
    let rate = row.v_mig_bytes as f64 / row.t_mig_s;
    // Replay time 0 is the recorded instant `lead_s` before the migration.
    let lead_s = if use_activity { c.window_pad_s } else { 0.0 };
    let total_s = lead_s + row.t_mig_s + lead_s;
    let t0 = Instant::now();
    let mut start = None;
    let mut end = None;
    if let (Some(p), false) = (power, use_activity) {
        p.set(Some(rate));
    }
    let mut at = 0;
    loop {
        let e = t0.elapsed().as_secs_f64();
        let in_mig = (e - lead_s).clamp(0.0, row.t_mig_s);
        if start.is_none() && e >= lead_s {
            start = Some(utc_now_ns());
        }
        if end.is_none() && e >= lead_s + row.t_mig_s {
            end = Some(utc_now_ns());
            if !use_activity {
                if let Some(p) = power {
                    p.set(None);
                }
            }
        }
        if let (Some(p), true) = (power, use_activity) {
            let rec_ns = rec_start + ((e - lead_s) * 1e9) as i64;
            while at + 1 < rates.len() && rates[at].to_utc_ns <= rec_ns {
                at += 1;
            }
            let r = &rates[at];
            if r.from_utc_ns <= rec_ns && rec_ns < r.to_utc_ns {
                p.set_activity(r);
            } else {
                p.set(None);
            }
        }
        opts.progress.event(&Event::MigrationProgress {
            migration_id: run.migration_id.clone(),
            transferred_bytes: (rate * in_mig).min(row.v_mig_bytes as f64) as u64,
            expected_bytes: row.v_mig_bytes,
        });
        if e >= total_s {
            break;
        }
        if opts.cancel.is_cancelled() {
            if let Some(p) = power {
                p.set(None);
            }
            return Err(CampaignError::Cancelled);
        }
        std::thread::sleep(Duration::from_secs_f64((total_s - e).clamp(0.0, 0.05)));
    }
    if let Some(p) = power {
        p.set(None);
    }
    let start = start.unwrap_or_else(utc_now_ns);
    let end = end.unwrap_or_else(utc_now_ns);
    let shift = row.start_utc_ns.map_or(0, |s| start - s);
    let mut r = row.clone();
    r.start_utc_ns = Some(start);
    r.end_utc_ns = Some(end);
    let rounds: Vec<RoundRow> = rounds
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x.start_utc_ns = x.start_utc_ns.map(|t| t + shift);
            x
        })
        .collect();
    let raw = serde_json::json!({
        "replayed": row.migration_id,
        "start_utc_ns": start,
        "end_utc_ns": end,
        "power_model": if use_activity { "activity" } else { "throughput" },
        "recorded_activity_samples": run.activity.len(),
        "recorded": row,
    });
    Ok((
        Migration { row: r, rounds },
        format!("{raw}\n").into_bytes(),
        "replay.json",
    ))
}

/// The recorded activity of each replayed migration: the `activity` lines of its raw log
/// (`raw/ID.qmp.jsonl` beside `migrations/`; none for recordings made before activity was
/// sampled).
fn replay_activity(dir: &Path, ids: &[&str]) -> BTreeMap<String, Vec<ActivitySample>> {
    let raw = if dir.join("raw").is_dir() {
        dir.join("raw")
    } else {
        dir.parent().map(|p| p.join("raw")).unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for id in ids {
        for name in [
            format!("{}.qmp.jsonl", safe_name(id)),
            format!("{id}.jsonl"),
        ] {
            if let Ok(bytes) = std::fs::read(raw.join(&name)) {
                let a = crate::hostpower::activity_of_log(&bytes);
                if !a.is_empty() {
                    out.insert(id.to_string(), a);
                    break;
                }
            }
        }
    }
    out
}

fn read_replay(dir: &Path) -> Result<Vec<(MigrationRow, Vec<RoundRow>)>, CampaignError> {
    let rows = datasets::migrations::read_migrations(&dir.join("migrations"))
        .or_else(|_| datasets::migrations::read_migrations(dir))
        .map_err(step("reading the migrations to replay"))?;
    let rounds_dir = if dir.join("rounds").is_dir() {
        dir.join("rounds")
    } else {
        dir.parent().map(|p| p.join("rounds")).unwrap_or_default()
    };
    let rounds = datasets::rounds::read_rounds(&rounds_dir).unwrap_or_default();
    let mut by_id: BTreeMap<String, Vec<RoundRow>> = BTreeMap::new();
    for r in rounds {
        by_id.entry(r.migration_id.clone()).or_default().push(r);
    }
    Ok(rows
        .into_iter()
        .map(|m| {
            let mut r = by_id.remove(&m.migration_id).unwrap_or_default();
            r.sort_by_key(|x| x.round);
            (m, r)
        })
        .collect())
}

fn rel(out: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(out)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Baselines, windows, integration, training, verdicts, summary and report.
fn analyse(
    lc: &LoadedConfig,
    out: &Path,
    opts: &RunOptions,
    journal: &mut Journal,
    planned: &[PlannedRun],
    failed: Vec<FailedMigration>,
) -> Result<Outcome, CampaignError> {
    let c = &lc.config;
    let samples = out.join("samples");
    let pair = format!(
        "{}--{}",
        safe_name(&c.source.host),
        safe_name(&c.destination.host)
    );
    opts.progress.event(&Event::Phase("integrate"));
    let (b0, b1) = journal
        .state()
        .baseline
        .ok_or_else(|| CampaignError::Step {
            step: "baseline",
            message: "no idle stretch was recorded".into(),
        })?;
    let mut hosts = Vec::new();
    let mut p0 = BTreeMap::new();
    let sample_counts = sample_counts(&samples);
    for (h, role) in [(&c.source, "source"), (&c.destination, "destination")] {
        let b = baseline_from_dir(
            &samples,
            &h.host,
            &BaselineOptions {
                range_utc_ns: Some((b0, b1)),
                max_spread_w: c.baseline_max_spread_w,
                ..BaselineOptions::default()
            },
        )
        .map_err(step("baseline (spread limit: `baseline_max_spread_w`)"))?;
        let path = out
            .join("baselines")
            .join(format!("p0-{}.json", safe_name(&h.host)));
        std::fs::create_dir_all(out.join("baselines")).map_err(io(out))?;
        write_baseline(&path, &b).map_err(step("baseline"))?;
        say(
            opts,
            format!(
                "P_0 of {} ({role}): {:.2} W (spread {:.2} W over {} samples)",
                h.host, b.p0_watts, b.spread_w, b.sample_count
            ),
        );
        p0.insert(h.host.clone(), b.p0_watts);
        hosts.push(HostSummary {
            role: role.into(),
            host: h.host.clone(),
            meter: h.meter.clone(),
            p0_w: Some(b.p0_watts),
            baseline: Some(rel(out, &path)),
            samples: sample_counts.get(&h.host).copied().unwrap_or(0),
        });
    }
    let done = &journal.state().done;
    let mut rows: Vec<MigrationRow> = if out.join("migrations").is_dir() {
        datasets::migrations::read_migrations(&out.join("migrations"))
            .map_err(step("reading migrations"))?
    } else {
        Vec::new()
    };
    rows.retain(|r| {
        done.contains(&r.migration_id) && planned.iter().any(|p| p.migration_id == r.migration_id)
    });
    rows.sort_by_key(|r| {
        planned
            .iter()
            .position(|p| p.migration_id == r.migration_id)
    });
    let mismatched: Vec<String> = rows
        .iter()
        .filter(|r| r.memory_verified == Some(false))
        .map(|r| r.migration_id.clone())
        .collect();
    let not_checked: Vec<String> = rows
        .iter()
        .filter(|r| r.converged && r.memory_verified.is_none() && c.hypervisor.verifies())
        .map(|r| r.migration_id.clone())
        .collect();
    let verified = rows
        .iter()
        .filter(|r| r.memory_verified == Some(true))
        .count();
    if !not_checked.is_empty() {
        say(
            opts,
            format!(
                "memory NOT verified (the check could not run) for {} migration(s): {}",
                not_checked.len(),
                not_checked.join(", ")
            ),
        );
    }
    // A migration whose memory did not arrive intact measured a broken migration: out of
    // the windows, energy and models unless the config keeps them on purpose.
    let analysed: Vec<MigrationRow> = if mismatched.is_empty() || c.include_mismatched {
        if !mismatched.is_empty() {
            say(
                opts,
                format!(
                    "include_mismatched: keeping {} migration(s) whose memory did not match: {}",
                    mismatched.len(),
                    mismatched.join(", ")
                ),
            );
        }
        rows.clone()
    } else {
        say(
            opts,
            format!(
                "left out of the windows, energy and models: {} migration(s) whose memory did not match (set include_mismatched = true to keep them): {}",
                mismatched.len(),
                mismatched.join(", ")
            ),
        );
        rows.iter()
            .filter(|r| r.memory_verified != Some(false))
            .cloned()
            .collect()
    };
    let (mut windows, _) = datasets::migrations::windows_of(&analysed);
    let pad_ns = (c.window_pad_s * 1e9) as i64;
    for w in &mut windows {
        w.start_utc_ns -= pad_ns;
        w.end_utc_ns += pad_ns;
    }
    let windows_path = out.join("windows.parquet");
    let energy_path = out.join("energy.parquet");
    let quality_path = out.join("window-quality.parquet");
    let mut worst = None;
    let mut n_obs = 0;
    if !windows.is_empty() {
        datasets::windows::write_windows(&windows_path, &windows)
            .map_err(step("writing windows"))?;
        let integ = integrate(
            &samples,
            &windows_path,
            &windows,
            &p0,
            &IntegrateOptions {
                min_coverage: c.thresholds.coverage_pct / 100.0,
                midpoint: true,
                ..IntegrateOptions::default()
            },
            &opts.cancel,
            &mut |_| {},
        )
        .map_err(step("integrate"))?;
        write_energy(&energy_path, Format::Parquet, &integ.observations, &[])
            .map_err(step("writing energy"))?;
        write_window_quality(&quality_path, Format::Parquet, &integ.windows, &[])
            .map_err(step("writing window quality"))?;
        n_obs = integ.observations.len();
        for w in &integ.windows {
            let cov = w.coverage;
            if worst
                .as_ref()
                .is_none_or(|(_, _, c): &(String, String, f64)| cov < *c)
            {
                worst = Some((w.migration_id.clone(), w.host.clone(), cov));
            }
        }
        say(
            opts,
            format!(
                "energy of {} migration(s) integrated ({} window(s) left out for coverage)",
                n_obs,
                integ.windows.iter().filter(|w| !w.included).count()
            ),
        );
    }
    opts.progress.event(&Event::Phase("train"));
    let models_dir = out.join("models").join(&pair);
    let (energy_model, gamma_model) = match journal.state().trained.clone() {
        Some((e, g)) if e.as_ref().is_none_or(|p| out.join(p).is_file()) => {
            (e.map(|p| out.join(p)), g.map(|p| out.join(p)))
        }
        _ => {
            let e = if n_obs >= 3 {
                let mut t =
                    trainer::TrainOptions::new(vec![energy_path.clone()], models_dir.clone());
                t.include_mismatched = c.include_mismatched;
                t.name = Some("energy".into());
                // Five folds when there are enough migrations, else leave-one-out.
                t.folds = if n_obs >= 10 { 5 } else { n_obs };
                match trainer::train::train_energy(&t, false, &trainer::Control::none()) {
                    Ok(v) => v.into_iter().next().map(|t| t.path),
                    Err(e) => {
                        say(opts, format!("energy model not fitted: {}", chain(&e)));
                        None
                    }
                }
            } else {
                say(
                    opts,
                    format!(
                        "energy model not fitted: {n_obs} usable migration(s), at least 3 needed"
                    ),
                );
                None
            };
            let g = if !rows.is_empty() && out.join("rounds").is_dir() {
                let mut t =
                    trainer::TrainOptions::new(vec![out.join("rounds")], models_dir.clone());
                t.include_mismatched = c.include_mismatched;
                t.folds = 0;
                t.name = Some("gamma".into());
                let go = trainer::train::GammaOptions {
                    migrations: vec![out.join("migrations")],
                    ..Default::default()
                };
                match trainer::train::train_gamma(&t, &go, &trainer::Control::none()) {
                    Ok(t) => Some(t.path),
                    Err(e) => {
                        say(opts, format!("gamma model not fitted: {}", chain(&e)));
                        None
                    }
                }
            } else {
                None
            };
            journal.record(Entry::Trained {
                energy_model: e.as_ref().map(|p| rel(out, p)),
                gamma_model: g.as_ref().map(|p| rel(out, p)),
            })?;
            (e, g)
        }
    };
    opts.progress.event(&Event::Phase("evaluate"));
    let load = |p: &Option<PathBuf>| -> Result<Option<CoefficientFile>, CampaignError> {
        p.as_ref()
            .map(|p| trainer::coef::load(p).map_err(step("reading a model")))
            .transpose()
    };
    let (ef, gf) = (load(&energy_model)?, load(&gamma_model)?);
    let verdicts = super::verdicts(&c.thresholds, ef.as_ref(), worst.as_ref(), n_obs);
    let mut models = Vec::new();
    for (kind, f, p) in [("energy", &ef, &energy_model), ("gamma", &gf, &gamma_model)] {
        if let (Some(f), Some(p)) = (f, p) {
            models.push(ModelSummary {
                kind: kind.into(),
                path: rel(out, p),
                equation: equation(f),
                r_squared: f.fit.r_squared,
                n_rows: f.fit.n_rows as usize,
                cv_mape: f
                    .fit
                    .cross_validation
                    .as_ref()
                    .and_then(|c| c.mape_percent)
                    .map(|m| m / 100.0),
            });
        }
    }
    let mut emulated = opts.emulated_notes.clone();
    let power_model = power_model_summary(c, planned);
    if let Some(pm) = &power_model {
        for h in [&c.source, &c.destination] {
            if !h.is_emulated() {
                continue;
            }
            let is_source = h.host == c.source.host;
            let f = &pm.formulas[usize::from(!is_source)];
            emulated.push(match pm.model.as_str() {
                "throughput" => format!(
                    "the power meter of {}: an emulated Watts up? PRO on a pseudo-terminal whose power follows the running migration's throughput ({f})",
                    h.host
                ),
                _ => format!(
                    "the power meter of {}: an emulated Watts up? PRO on a pseudo-terminal whose power follows what the host does, through the linear host power model ({f}; busy cores = CPU time per second of its QEMU processes from /proc/PID/stat, link MB/s = bytes through the migration relay; after Fan et al. 2007 and a per-byte network energy){}",
                    h.host,
                    if c.hypervisor.kind == HypervisorKind::Replay {
                        ", replayed from the activity recorded with each migration"
                    } else {
                        ""
                    }
                ),
            });
        }
        for f in &pm.fallbacks {
            emulated.push(f.clone());
        }
    }
    if c.hypervisor.kind == HypervisorKind::Replay {
        emulated.push("the migrations: replays of recorded real QEMU migrations (their volumes, durations and rounds), re-timed to this run".into());
    }
    let mut real = vec![
        "serial protocol, capture, journal and Parquet samples".to_string(),
        "P_0, window integration, model fits, cross-validation and verdicts".to_string(),
    ];
    match c.hypervisor.kind {
        HypervisorKind::Qemu if c.hypervisor.verifies() => real.push(
            "live migrations of QEMU guests driven over QMP, each verified: all guest RAM of the paused source and destination compared page by page before the destination ran".into(),
        ),
        HypervisorKind::Qemu => real.push("live migrations of QEMU guests driven over QMP".into()),
        HypervisorKind::Replay => {}
        k => real.push(format!(
            "{} migrations run by the `migrate` command and ingested from their logs",
            k.as_str()
        )),
    }
    if c.hypervisor.kind == HypervisorKind::Qemu {
        real.push(format!(
            "host activity: CPU time of each host's QEMU processes (/proc/PID/stat) and bytes through the migration link{}, sampled every {} ms and recorded in raw/ as `activity` lines",
            if c.hypervisor.launch.is_some() { " (counted by migwatt's relay)" } else { " (not counted: no relay between QEMUs started by hand)" },
            crate::hostpower::SAMPLE_PERIOD.as_millis()
        ));
    }
    let accepted = verdicts.iter().all(|v| v.passed);
    let converged = rows.iter().filter(|r| r.converged).count();
    let mut files = vec![
        ProducedFile {
            path: "campaign.toml".into(),
            description: "the config this campaign ran with".into(),
        },
        ProducedFile {
            path: "journal.jsonl".into(),
            description: "the campaign journal (what finished when; makes the campaign resumable)"
                .into(),
        },
        ProducedFile {
            path: "samples".into(),
            description: "power samples of both meters (Parquet, host=/date= partitions)".into(),
        },
        ProducedFile {
            path: "baselines".into(),
            description: "P_0 of each host (JSON)".into(),
        },
        ProducedFile {
            path: "raw".into(),
            description: "raw migration logs (replayable with `migwatt calibrate ingest`)".into(),
        },
        ProducedFile {
            path: "migrations".into(),
            description: "migrations dataset (Parquet)".into(),
        },
        ProducedFile {
            path: "rounds".into(),
            description: "rounds dataset (Parquet)".into(),
        },
        ProducedFile {
            path: "windows.parquet".into(),
            description: "migration windows per host".into(),
        },
        ProducedFile {
            path: "energy.parquet".into(),
            description: "energy observations (V_mig, E_mig per migration)".into(),
        },
        ProducedFile {
            path: "window-quality.parquet".into(),
            description: "coverage, gaps and inclusion of every window".into(),
        },
    ];
    for m in &models {
        files.push(ProducedFile {
            path: m.path.clone(),
            description: format!("{} model coefficient file", m.kind),
        });
    }
    files.push(ProducedFile {
        path: "summary.json".into(),
        description: "this summary (machine-readable)".into(),
    });
    files.push(ProducedFile {
        path: "report.html".into(),
        description: "the report (self-contained)".into(),
    });
    files.push(ProducedFile {
        path: "report.md".into(),
        description: "the report in Markdown (plots in report-plots/)".into(),
    });
    files.retain(|f| {
        let p = f.path.to_string_lossy();
        out.join(&f.path).exists() || p.starts_with("summary") || p.starts_with("report")
    });
    let summary = CampaignSummary {
        summary_version: SUMMARY_VERSION.into(),
        name: c.name.clone(),
        hardware_pair: pair,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        toolkit_version: env!("CARGO_PKG_VERSION").into(),
        hypervisor: c.hypervisor.kind.as_str().into(),
        hosts,
        emulated,
        real,
        power_model,
        paths: SummaryPaths {
            samples_dir: "samples".into(),
            migrations_dir: out.join("migrations").is_dir().then(|| "migrations".into()),
            rounds_dir: out.join("rounds").is_dir().then(|| "rounds".into()),
            windows: "windows.parquet".into(),
            energy: "energy.parquet".into(),
            window_quality: "window-quality.parquet".into(),
            energy_model: energy_model.as_ref().map(|p| rel(out, p)),
            gamma_model: gamma_model.as_ref().map(|p| rel(out, p)),
        },
        migrations: MigrationCounts {
            planned: planned.len(),
            done: rows.len(),
            converged,
            failed,
            memory_verified: verified,
            memory_mismatched: mismatched,
            memory_not_checked: not_checked,
            include_mismatched: c.include_mismatched,
        },
        models,
        verdicts,
        accepted,
        files,
    };
    let summary_path = summary.write(out).map_err(step("writing the summary"))?;
    opts.progress.event(&Event::Phase("report"));
    let report = render_report(out, opts);
    Ok(Outcome {
        out_dir: out.to_path_buf(),
        summary,
        summary_path,
        report,
        resumed_migrations: 0,
    })
}

/// Which model drew the emulated meters' power in this campaign, and where it fell back.
fn power_model_summary(c: &super::Config, planned: &[PlannedRun]) -> Option<PowerModelSummary> {
    if !(c.source.is_emulated() || c.destination.is_emulated()) {
        return None;
    }
    let (ms, md) = host_models(c);
    let e = &c.emulation;
    let throughput = |m: &PowerModel| {
        format!(
            "P = {} W, and while a migration runs {} W + {} W + {} J/MB x its MB/s (the migration's own byte counter)",
            m.idle_w,
            m.idle_w,
            e.migrating_w,
            m.net_j_per_byte * 1e6
        )
    };
    let activity = |m: &PowerModel| m.formula();
    let mut fallbacks = Vec::new();
    let mut model = e.power_model.as_str().to_string();
    if e.power_model == PowerModelKind::Activity {
        match c.hypervisor.kind {
            HypervisorKind::Qemu => {}
            HypervisorKind::Replay => {
                let old: Vec<&str> = planned
                    .iter()
                    .filter(|p| p.activity.is_empty())
                    .map(|p| p.migration_id.as_str())
                    .collect();
                if old.len() == planned.len() {
                    model = "throughput".into();
                    fallbacks.push("the replayed recordings hold no host activity samples (recorded before migwatt sampled /proc): every replayed migration drew power from the throughput model (the migration's byte counter) instead".into());
                } else if !old.is_empty() {
                    model = "activity+throughput".into();
                    fallbacks.push(format!(
                        "{} of {} replayed migrations hold no host activity samples (older recordings) and drew power from the throughput model (the migration's byte counter) instead: {}",
                        old.len(),
                        planned.len(),
                        old.join(", ")
                    ));
                }
            }
            k => {
                model = "throughput".into();
                fallbacks.push(format!(
                    "the activity model needs QEMU processes to sample; with kind \"{}\" the emulated meters drew power from the throughput model instead (while each `migrate` command ran)",
                    k.as_str()
                ));
            }
        }
    }
    let formulas = match model.as_str() {
        "throughput" => vec![throughput(&ms), throughput(&md)],
        "activity" => vec![activity(&ms), activity(&md)],
        _ => vec![
            format!("{}; fallback {}", activity(&ms), throughput(&ms)),
            format!("{}; fallback {}", activity(&md), throughput(&md)),
        ],
    };
    Some(PowerModelSummary {
        model,
        formulas,
        fallbacks,
    })
}

/// Samples per host over the whole dataset.
fn sample_counts(samples: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(by_host) = datasets::samples::sample_files_by_host(samples) {
        for (h, files) in by_host {
            if let Ok(s) = datasets::samples::read_power_series(&h, &files, None) {
                out.insert(h, s.len() as u64);
            }
        }
    }
    out
}

/// The model as an equation with units, e.g. `E_mig [J] = 7.5e-7 J/B * V_mig [B] + 2.1 J`.
fn equation(f: &CoefficientFile) -> String {
    let mut rhs = String::new();
    for c in &f.coefficients {
        let term = match &c.feature {
            Some(col) => {
                let v = f.features.iter().find(|v| &v.column == col);
                format!(
                    "{:.4e} {} * {} [{}]",
                    c.estimate.abs(),
                    c.unit,
                    v.map_or(col.as_str(), |v| v.symbol.as_str()),
                    v.map_or("", |v| v.unit.as_str())
                )
            }
            None => format!("{:.4} {}", c.estimate.abs(), c.unit),
        };
        let sign = if c.estimate < 0.0 { "-" } else { "+" };
        if rhs.is_empty() {
            rhs = if c.estimate < 0.0 {
                format!("-{term}")
            } else {
                term
            };
        } else {
            rhs = format!("{rhs} {sign} {term}");
        }
    }
    format!("{} [{}] = {rhs}", f.target.symbol, f.target.unit)
}

/// Render report.html and report.md; a failure is reported, not fatal (the data is all there
/// and `migwatt calibrate report DIR` can render it again).
fn render_report(out: &Path, opts: &RunOptions) -> Vec<PathBuf> {
    match crate::report::render(out) {
        Ok(r) => {
            for w in &r.warnings {
                say(opts, format!("report: {w}"));
            }
            vec![r.html, r.markdown]
        }
        Err(e) => {
            say(opts, format!("report not written: {}", chain(&e)));
            Vec::new()
        }
    }
}
