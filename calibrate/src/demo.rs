//! `migwatt demo`: the measurement pipeline end to end without hardware.
//!
//! Two emulated Watts up? PRO meters (source and destination host) run on real
//! pseudo-terminals; their power follows a plan of migrations (idle, then per migration a
//! short setup phase and a transfer phase whose length is V_mig over the link bandwidth).
//! The real capture code records both meters into the samples dataset; then the real
//! baseline and integration code find P_0 and each migration's energy (eq 14). What is
//! emulated is said in the output: the meters and the hosts' power; everything downstream of
//! the serial port is the production code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datasets::energy::{write_energy, write_window_quality, EnergyRow, Format};
use datasets::windows::{write_windows, Role, WindowRow};
use meter::baseline::{baseline_from_dir, write_baseline, Baseline, BaselineOptions};
use meter::capture::{run_capture, CaptureConfig, MeterSpec, NoProgress, ProgressSink};
use meter::emulator::{EmulatorConfig, Profile};
use meter::integrate::{integrate, IntegrateOptions};
use meter::Cancel;

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step failed; the message names the step.
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError::Step {
        step,
        message: e.to_string(),
    }
}

/// Emulated extra energy on the source per MB a replayed migration sends, J/MB.
pub const SOURCE_J_PER_MB: f64 = 0.45;
/// Emulated extra energy on the destination per MB received, J/MB.
pub const DESTINATION_J_PER_MB: f64 = 0.30;
/// Emulated constant extra draw on each host while a replayed migration runs, W.
pub const MIGRATING_CONST_W: f64 = 1.5;

/// One planned migration of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMigration {
    /// Migration identifier.
    pub migration_id: String,
    /// Bytes to transfer.
    pub v_mig_bytes: u64,
    /// Start of the setup phase, s after the meters start.
    pub start_s: f64,
    /// Setup phase (hypervisor preparation) before the transfer, s.
    pub setup_s: f64,
    /// Transfer phase, s.
    pub transfer_s: f64,
    /// Workload label.
    pub workload: String,
    /// VM name.
    pub vm: String,
    /// Extra power on the source during the transfer, W (None: the host's `transfer_w`).
    pub source_transfer_w: Option<f64>,
    /// Extra power on the destination during the transfer, W (None: the host's `transfer_w`).
    pub destination_transfer_w: Option<f64>,
}

impl PlannedMigration {
    /// End of the migration, s after the meters start.
    pub fn end_s(&self) -> f64 {
        self.start_s + self.setup_s + self.transfer_s
    }

    /// Extra transfer power of this migration on a host, W.
    pub fn transfer_w(&self, host: HostPower, role: Role) -> f64 {
        let own = match role {
            Role::Source => self.source_transfer_w,
            Role::Destination => self.destination_transfer_w,
        };
        own.unwrap_or(host.transfer_w)
    }
}

/// Power model of one emulated host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostPower {
    /// Static power, W.
    pub idle_w: f64,
    /// Extra power during the setup phase, W.
    pub setup_w: f64,
    /// Extra power while transferring, W.
    pub transfer_w: f64,
}

/// The demo's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPlan {
    /// Idle time at the start, for the baseline, s.
    pub baseline_s: f64,
    /// Migrations in time order.
    pub migrations: Vec<PlannedMigration>,
    /// Idle time after the last migration, s.
    pub tail_s: f64,
    /// Source host power.
    pub source: HostPower,
    /// Destination host power.
    pub destination: HostPower,
}

impl DemoPlan {
    /// The built-in plan: migrations of 150-750 MB over a 125 MB/s link, 2.5 s apart.
    pub fn builtin() -> Self {
        let bandwidth_bytes_per_s = 125e6;
        let mut t = 14.0;
        let mut migrations = Vec::new();
        for (i, mb) in [450u64, 150, 750, 300, 600].iter().enumerate() {
            let v = mb * 1_000_000;
            let m = PlannedMigration {
                migration_id: format!("demo-{:02}", i + 1),
                v_mig_bytes: v,
                start_s: t,
                setup_s: 1.0,
                transfer_s: v as f64 / bandwidth_bytes_per_s,
                workload: "demo".into(),
                vm: "demo-vm".into(),
                source_transfer_w: None,
                destination_transfer_w: None,
            };
            t = m.end_s() + 2.5;
            migrations.push(m);
        }
        DemoPlan {
            baseline_s: 14.0,
            migrations,
            tail_s: 2.0,
            source: HostPower {
                idle_w: 118.0,
                setup_w: 9.0,
                transfer_w: 16.0,
            },
            destination: HostPower {
                idle_w: 96.0,
                setup_w: 6.0,
                transfer_w: 12.0,
            },
        }
    }

    /// A plan that replays real migrations (as recorded by the collector): `count` of them,
    /// spread over their V_mig range, with their measured durations and volumes. The hosts'
    /// extra power follows each migration's throughput (the network-bound energy of eq 15:
    /// `J_PER_MB` per MB sent plus a small constant draw while it runs).
    pub fn from_migrations(
        rows: &[datasets::migrations::MigrationRow],
        count: usize,
    ) -> Option<Self> {
        let mut ok: Vec<_> = rows
            .iter()
            .filter(|r| r.converged && r.t_mig_s > 0.5 && r.v_mig_bytes > 0)
            .collect();
        if ok.len() < 3 {
            return None;
        }
        ok.sort_by_key(|r| r.v_mig_bytes);
        let n = count.clamp(3, ok.len());
        let picks: Vec<_> = (0..n).map(|i| ok[i * (ok.len() - 1) / (n - 1)]).collect();
        let (src_j_per_mb, dst_j_per_mb, const_w) =
            (SOURCE_J_PER_MB, DESTINATION_J_PER_MB, MIGRATING_CONST_W);
        let base = DemoPlan {
            baseline_s: 12.0,
            ..Self::builtin()
        };
        let mut t = base.baseline_s;
        let mut migrations = Vec::new();
        for r in picks {
            let mb_per_s = r.v_mig_bytes as f64 / 1e6 / r.t_mig_s;
            let m = PlannedMigration {
                migration_id: r.migration_id.clone(),
                v_mig_bytes: r.v_mig_bytes,
                start_s: t,
                setup_s: 0.0,
                transfer_s: r.t_mig_s,
                workload: r.workload.clone().unwrap_or_else(|| "unlabelled".into()),
                vm: r.vm.clone(),
                source_transfer_w: Some(const_w + src_j_per_mb * mb_per_s),
                destination_transfer_w: Some(const_w + dst_j_per_mb * mb_per_s),
            };
            t = m.end_s() + 2.0;
            migrations.push(m);
        }
        Some(DemoPlan { migrations, ..base })
    }

    /// Total length of the plan, s.
    pub fn duration_s(&self) -> f64 {
        self.migrations
            .last()
            .map_or(self.baseline_s, PlannedMigration::end_s)
            + self.tail_s
    }

    /// The emulated power trace of one host (sharp steps at phase edges).
    pub fn trace(&self, p: HostPower, role: Role) -> Profile {
        let eps = 1e-3;
        let mut pts = vec![(0.0, p.idle_w)];
        for m in &self.migrations {
            let s = m.start_s;
            let x = s + m.setup_s;
            let e = m.end_s();
            let tw = m.transfer_w(p, role);
            if m.setup_s > 0.0 {
                pts.extend([
                    (s - eps, p.idle_w),
                    (s, p.idle_w + p.setup_w),
                    (x - eps, p.idle_w + p.setup_w),
                ]);
            } else {
                pts.push((s - eps, p.idle_w));
            }
            pts.extend([(x, p.idle_w + tw), (e - eps, p.idle_w + tw), (e, p.idle_w)]);
        }
        pts.push((self.duration_s() + 1.0, p.idle_w));
        Profile::Trace(pts)
    }

    /// The energy each migration should show above static power, J (both hosts).
    pub fn expected_energy_j(&self, m: &PlannedMigration) -> f64 {
        let per = |p: HostPower, role| p.setup_w * m.setup_s + m.transfer_w(p, role) * m.transfer_s;
        per(self.source, Role::Source) + per(self.destination, Role::Destination)
    }
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where this run's files go (created).
    pub out_dir: PathBuf,
    /// The plan.
    pub plan: DemoPlan,
}

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Samples dataset folder.
    pub samples_dir: PathBuf,
    /// Baselines found.
    pub baselines: Vec<(Baseline, PathBuf)>,
    /// Windows file written.
    pub windows_path: PathBuf,
    /// Energy observations file written.
    pub energy_path: PathBuf,
    /// Per-window quality file.
    pub quality_path: PathBuf,
    /// Observations with the energy the plan put in, J.
    pub observations: Vec<(EnergyRow, f64)>,
    /// Samples captured per host.
    pub samples: Vec<(String, u64)>,
    /// Energy model file written (E_mig = alpha V_mig + beta).
    pub energy_model: Option<PathBuf>,
}

/// Run the demo; `say` receives one line per step.
pub fn run_demo(
    opts: &DemoOptions,
    cancel: &Cancel,
    say: &mut dyn FnMut(&str),
    sink: Option<Arc<dyn ProgressSink>>,
) -> Result<DemoReport, DemoError> {
    let plan = &opts.plan;
    std::fs::create_dir_all(&opts.out_dir).map_err(step("creating the output folder"))?;
    let samples_dir = opts.out_dir.join("samples");
    let link_dir = tempfile_dir(&opts.out_dir)?;

    say(&format!(
        "EMULATED: two Watts up? PRO meters on pseudo-terminals (source {} W idle, destination {} W idle), \
         power following {} migrations; {:.0} s of real time",
        plan.source.idle_w,
        plan.destination.idle_w,
        plan.migrations.len(),
        plan.duration_s()
    ));
    let start_utc_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let mut emulators = Vec::new();
    for (name, power, role) in [
        ("source", plan.source, Role::Source),
        ("destination", plan.destination, Role::Destination),
    ] {
        let cfg = EmulatorConfig {
            profile: plan.trace(power, role),
            link: Some(link_dir.join(name)),
            noise_w: 0.15,
            seed: if name == "source" { 11 } else { 12 },
            ..EmulatorConfig::default()
        };
        emulators.push(
            meter::emulator::start(cfg, cancel.clone()).map_err(step("starting the emulator"))?,
        );
    }
    say("REAL: capturing both meters over their serial ports (migwatt meter capture)");
    let meters = emulators
        .iter()
        .zip(["source", "destination"])
        .map(|(e, n)| MeterSpec {
            name: n.to_string(),
            device: e.path().to_path_buf(),
        })
        .collect();
    let mut cfg = CaptureConfig::new(meters, &samples_dir);
    cfg.duration = Some(Duration::from_secs_f64(plan.duration_s()));
    cfg.settle = Duration::from_millis(100);
    let capture = run_capture(
        cfg,
        cancel.clone(),
        sink.unwrap_or_else(|| Arc::new(NoProgress)),
    )
    .map_err(step("capture"))?;
    for e in emulators {
        e.stop().map_err(step("stopping the emulator"))?;
    }
    let _ = std::fs::remove_dir_all(&link_dir);
    if cancel.is_cancelled() && capture.meters.iter().all(|m| m.samples == 0) {
        return Err(DemoError::Step {
            step: "capture",
            message: "interrupted before any sample".into(),
        });
    }
    let samples: Vec<(String, u64)> = capture
        .meters
        .iter()
        .map(|m| (m.name.clone(), m.samples))
        .collect();
    for (h, n) in &samples {
        say(&format!("  {h}: {n} samples"));
    }

    say("REAL: static power P_0 of each host (migwatt meter baseline)");
    let mut baselines = Vec::new();
    let mut p0 = std::collections::BTreeMap::new();
    for host in ["source", "destination"] {
        let b = baseline_from_dir(
            &samples_dir,
            host,
            &BaselineOptions {
                min_seconds: (plan.baseline_s - 4.0).max(5.0),
                ..BaselineOptions::default()
            },
        )
        .map_err(step("baseline"))?;
        let path = opts.out_dir.join(format!("baseline-{host}.json"));
        write_baseline(&path, &b).map_err(step("baseline"))?;
        say(&format!(
            "  {host}: P_0 = {:.2} W (spread {:.1} W over {} samples)",
            b.p0_watts, b.spread_w, b.sample_count
        ));
        p0.insert(host.to_string(), b.p0_watts);
        baselines.push((b, path));
    }

    say("REAL: energy of every migration window (migwatt integrate, eq 14)");
    let at = |s: f64| start_utc_ns + (s * 1e9) as i64;
    let windows: Vec<WindowRow> = plan
        .migrations
        .iter()
        .flat_map(|m| {
            [("source", Role::Source), ("destination", Role::Destination)].map(|(h, role)| {
                WindowRow {
                    migration_id: m.migration_id.clone(),
                    host: h.into(),
                    role,
                    start_utc_ns: at(m.start_s),
                    end_utc_ns: at(m.end_s()),
                    v_mig_bytes: m.v_mig_bytes,
                    workload: Some("demo".into()),
                    vm: Some("demo-vm".into()),
                    vm_mem_bytes: None,
                }
            })
        })
        .collect();
    let windows_path = opts.out_dir.join("windows.parquet");
    write_windows(&windows_path, &windows).map_err(step("writing windows"))?;
    let integ = integrate(
        &samples_dir,
        &windows_path,
        &windows,
        &p0,
        &IntegrateOptions::default(),
        cancel,
        &mut |_| {},
    )
    .map_err(step("integrate"))?;
    let energy_path = opts.out_dir.join("energy.parquet");
    write_energy(&energy_path, Format::Parquet, &integ.observations, &[])
        .map_err(step("writing energy"))?;
    let quality_path = opts.out_dir.join("window-quality.parquet");
    write_window_quality(&quality_path, Format::Parquet, &integ.windows, &[])
        .map_err(step("writing window quality"))?;
    let mut observations = Vec::new();
    for o in &integ.observations {
        let Some(m) = plan
            .migrations
            .iter()
            .find(|m| m.migration_id == o.migration_id)
        else {
            continue;
        };
        let want = plan.expected_energy_j(m);
        say(&format!(
            "  {}: V_mig {:>4} MB  E_mig {:7.1} J (source {:6.1} J, destination {:6.1} J); the plan put in {:7.1} J",
            o.migration_id,
            o.v_mig_bytes / 1_000_000,
            o.e_mig_j,
            o.e_source_j,
            o.e_destination_j,
            want
        ));
        observations.push((o.clone(), want));
    }
    say("  (the integrals fall short of the plan by roughly one second of the migration's extra power: \
         a Watts up? record is the mean of the second before it arrives, so each window's first \
         second is seen late; that shift lands in beta, not in alpha)");
    let excluded = integ.windows.iter().filter(|w| !w.included).count();
    if excluded > 0 {
        say(&format!(
            "  {excluded} window(s) left out for low coverage; see {}",
            quality_path.display()
        ));
    }
    say("REAL: fitting the energy model E_mig = alpha V_mig + beta (migwatt train energy, eq 15)");
    let models_dir = opts.out_dir.join("models");
    let mut topts = trainer::TrainOptions::new(vec![energy_path.clone()], models_dir);
    // Five migrations: fewer folds than the default so each fold keeps enough rows.
    topts.folds = 0;
    let energy_model = match trainer::train::train_energy(&topts, false, &trainer::Control::none())
    {
        Ok(trained) => {
            let t = &trained[0];
            let c = |n: &str| {
                t.file
                    .coefficients
                    .iter()
                    .find(|c| c.name == n)
                    .map(|c| (c.estimate, c.unit.clone()))
            };
            if let (Some((a, au)), Some((b, bu))) = (c("alpha"), c("beta")) {
                say(&format!(
                    "  alpha = {:.4} J/MB ({a:.4e} {au}), beta = {b:.2} {bu}, R^2 = {:.4} over {} migrations",
                    a * 1e6,
                    t.file.fit.r_squared,
                    t.file.fit.n_rows
                ));
            }
            say(&format!("  coefficient file: {}", t.path.display()));
            Some(t.path.clone())
        }
        Err(e) => {
            say(&format!("  not fitted: {e}"));
            None
        }
    };
    Ok(DemoReport {
        energy_model,
        samples_dir,
        baselines,
        windows_path,
        energy_path,
        quality_path,
        observations,
        samples,
    })
}

fn tempfile_dir(out: &Path) -> Result<PathBuf, DemoError> {
    let d = out.join(".pty-links");
    std::fs::create_dir_all(&d).map_err(step("creating the pty link folder"))?;
    Ok(d)
}
