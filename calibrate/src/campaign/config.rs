//! The campaign config (TOML): hosts and meters, hypervisor access, VMs, plan, thresholds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CampaignError;

/// The value of `meter` that asks for an emulated meter instead of a serial device.
pub const EMULATED_METER: &str = meter::source::spec::EMULATED_KIND;

/// A calibration campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Campaign name (labels the summary and report).
    pub name: String,
    /// Output folder, relative to the config file (default `calibration-<name>`).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Idle capture before the first migration, for P_0, s.
    #[serde(default = "default_baseline_s")]
    pub baseline_s: f64,
    /// Wait between migrations so each host returns to P_0, s.
    #[serde(default = "default_settle_s")]
    pub settle_s: f64,
    /// Widen every migration window by this much on each side, s: a 1 Hz meter smears a
    /// migration's first and last second over the neighbouring records, and outside the
    /// migration P - P_0 is only noise. Keep `settle_s` above twice this.
    #[serde(default = "default_pad_s")]
    pub window_pad_s: f64,
    /// Largest accepted max - min of the idle readings, W (a busier host fails the baseline).
    #[serde(default = "default_spread_w")]
    pub baseline_max_spread_w: f64,
    /// The host migrated from.
    pub source: HostConfig,
    /// The host migrated to.
    pub destination: HostConfig,
    /// How migrations are run or read.
    pub hypervisor: HypervisorConfig,
    /// The VMs to migrate.
    #[serde(default)]
    pub vms: Vec<VmConfig>,
    /// What to migrate how often.
    #[serde(default)]
    pub plan: PlanConfig,
    /// Acceptance thresholds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Power of emulated hosts (only used with `meter = "emulated"`).
    #[serde(default)]
    pub emulation: EmulationConfig,
    /// Keep migrations whose guest memory did not match after the migration in the windows,
    /// energy observations and models (they are left out, and named, by default).
    #[serde(default)]
    pub include_mismatched: bool,
}

fn default_baseline_s() -> f64 {
    120.0
}
fn default_settle_s() -> f64 {
    20.0
}
fn default_pad_s() -> f64 {
    1.0
}
fn default_spread_w() -> f64 {
    5.0
}

/// One host and its meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Host name (datasets and model keys use it).
    pub host: String,
    /// Its meter as a power source: `wattsup:DEVICE` or a serial device (a Watts up? PRO),
    /// `emulated`, or any `meter capture --source` spelling (`rapl:`, `redfish+http://...`,
    /// `prometheus+http://...`, `ipmi://...`).
    pub meter: String,
}

impl HostConfig {
    /// Whether this host's meter is emulated.
    pub fn is_emulated(&self) -> bool {
        matches!(
            meter::source::SourceSpec::parse_device_or_spec(&self.meter),
            Ok(meter::source::SourceSpec::Emulated { .. })
        )
    }
}

/// Where migrations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HypervisorKind {
    /// Drive each migration through QEMU's QMP.
    Qemu,
    /// Run `migrate`, then ingest the Xen log it wrote.
    Xen,
    /// Run `migrate`, then ingest the `virsh domjobinfo` log it wrote.
    Libvirt,
    /// Run `migrate`, then ingest the QMP JSON-lines log it wrote.
    QemuLog,
    /// Replay recorded migrations (no hypervisor; the demo): each planned migration waits
    /// its recorded duration and is stored with the recorded volume, re-timed.
    Replay,
}

impl HypervisorKind {
    /// The name used in configs and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            HypervisorKind::Qemu => "qemu",
            HypervisorKind::Xen => "xen",
            HypervisorKind::Libvirt => "libvirt",
            HypervisorKind::QemuLog => "qemu-log",
            HypervisorKind::Replay => "replay",
        }
    }
}

/// Hypervisor access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorConfig {
    /// `qemu`, `xen`, `libvirt`, `qemu-log` or `replay`.
    pub kind: HypervisorKind,
    /// QMP socket of the source QEMU (kind `qemu` without `launch`).
    #[serde(default)]
    pub source_qmp: Option<PathBuf>,
    /// QMP socket of the destination QEMU, started with `-incoming`.
    #[serde(default)]
    pub destination_qmp: Option<PathBuf>,
    /// Migration URI (kind `qemu` without `launch`), e.g. `tcp:node-b:4444`.
    #[serde(default)]
    pub uri: Option<String>,
    /// QEMU downtime limit, ms.
    #[serde(default)]
    pub downtime_limit_ms: Option<u64>,
    /// Cancel a migration still running after this long, s.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Sample the guest's dirtying rate for this long before each migration, s.
    #[serde(default)]
    pub dirty_rate_sample_s: Option<f64>,
    /// Probe each VM before migrating it (`calibrate probe`: D, hot set, non-zero share over
    /// 1-8 s windows, about 16 s; recorded in the migrations' `probe_*` columns). Default off.
    #[serde(default)]
    pub probe: bool,
    /// Shell command run before each migration (start the VM and its workload, the incoming
    /// QEMU...). Placeholders: see [`super::plan::PlannedRun::expand`].
    #[serde(default)]
    pub prepare: Option<String>,
    /// Shell command run after each migration, whatever its outcome.
    #[serde(default)]
    pub cleanup: Option<String>,
    /// Log kinds: the shell command that runs one migration (None: wait for its log to
    /// appear, for migrations someone else runs).
    #[serde(default)]
    pub migrate: Option<String>,
    /// Log kinds: the log file `migrate` writes (placeholders allowed), relative to the
    /// config file.
    #[serde(default)]
    pub log: Option<String>,
    /// Kind `qemu`: start both QEMU processes on this machine for each migration.
    #[serde(default)]
    pub launch: Option<LaunchConfig>,
    /// Kind `qemu`: compare all guest RAM of the paused source and destination after each
    /// migration, before the destination runs (default: on with `launch`, off otherwise).
    #[serde(default)]
    pub verify: Option<bool>,
    /// Kind `qemu`: shell command run while both guests are paused after each migration,
    /// before verification; placeholders as in `prepare`, and `MIGWATT_SOURCE_QMP`,
    /// `MIGWATT_DEST_QMP` in its environment.
    #[serde(default)]
    pub paused_hook: Option<String>,
    /// Kind `replay`: migrations dataset folder to replay, relative to the config file.
    #[serde(default)]
    pub replay: Option<PathBuf>,
    /// Kind `replay`: how many of its migrations (spread over their V_mig range).
    #[serde(default)]
    pub replay_count: Option<usize>,
}

fn default_timeout_s() -> f64 {
    600.0
}

impl HypervisorConfig {
    /// Whether each migration's guest memory is verified (`verify`, default on for `launch`).
    pub fn verifies(&self) -> bool {
        self.kind == HypervisorKind::Qemu && self.verify.unwrap_or(self.launch.is_some())
    }
}

/// Local QEMU processes started by the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// QEMU binary.
    #[serde(default = "default_qemu")]
    pub qemu: String,
    /// Arguments for both processes (the campaign adds -m, -qmp, -serial and -incoming).
    /// `{workload_args}` is replaced by the workload's entry of `workload_args`.
    pub args: Vec<String>,
    /// Wait for this text on the source guest's serial console before migrating.
    #[serde(default)]
    pub ready: Option<String>,
    /// Give up on a guest that is not ready after this long, s.
    #[serde(default = "default_ready_timeout_s")]
    pub ready_timeout_s: f64,
    /// Per-workload text for `{workload_args}` (e.g. guest kernel parameters).
    #[serde(default)]
    pub workload_args: BTreeMap<String, String>,
    /// Accelerator: `kvm`, `tcg`, or `auto` (default): KVM when a guest booted with it
    /// writes to its serial console within a few seconds (tried once per run), else TCG.
    /// Leave `-accel` out of `args` unless you want the args to decide.
    #[serde(default)]
    pub accel: AccelChoice,
    /// The link between the two QEMUs: `qemu` (default: the plan's bandwidths are QEMU's
    /// `max-bandwidth`, lifted by QEMU at stop-and-copy) or `relay` (the plan's bandwidths
    /// are the rate of a relay between the QEMUs, as a lab's link, and QEMU's max-bandwidth is
    /// left unlimited). The stream goes through migwatt's relay either way, which counts its
    /// bytes for the host power model.
    #[serde(default)]
    pub link: LinkKind,
}

/// The `link` of `[hypervisor.launch]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// QEMU's max-bandwidth paces the stream; the relay only counts.
    #[default]
    Qemu,
    /// The relay paces the stream at the plan's bandwidth; QEMU's max-bandwidth is unlimited.
    Relay,
}

impl LinkKind {
    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Qemu => "qemu",
            LinkKind::Relay => "relay",
        }
    }
}

/// The `accel` of `[hypervisor.launch]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM if it works here (tried once), else TCG.
    #[default]
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
}

fn default_qemu() -> String {
    "qemu-system-x86_64".into()
}
fn default_ready_timeout_s() -> f64 {
    600.0
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// VM name.
    pub name: String,
    /// Guest memory, with a unit (`1GiB`, `512MiB`).
    pub mem: String,
}

/// The plan: every VM x workload x bandwidth, `repetitions` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Workload labels (e.g. DaCapo benchmark names).
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Link bandwidths with a unit (`1Gbit/s`, `60MB/s`); empty: the hypervisor's default.
    #[serde(default)]
    pub bandwidths: Vec<String>,
    /// QEMU downtime limits to vary, ms (empty: `[hypervisor] downtime_limit_ms`).
    #[serde(default)]
    pub downtime_limits_ms: Vec<u64>,
    /// Explicit runs instead of the cross product (each `repetitions` times).
    #[serde(default)]
    pub runs: Vec<RunConfig>,
    /// Repetitions of each combination.
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
}

/// One explicit run of `[[plan.runs]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// VM name (one of `[[vms]]`).
    pub vm: String,
    /// Workload label.
    pub workload: String,
    /// Link bandwidth with a unit (absent: the hypervisor's default).
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// QEMU downtime limit, ms (absent: `[hypervisor] downtime_limit_ms`).
    #[serde(default)]
    pub downtime_limit_ms: Option<u64>,
}

fn default_repetitions() -> u32 {
    1
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            workloads: Vec::new(),
            bandwidths: Vec::new(),
            downtime_limits_ms: Vec::new(),
            runs: Vec::new(),
            repetitions: 1,
        }
    }
}

/// Acceptance thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Lowest accepted R^2 of the energy model.
    #[serde(default = "default_r2")]
    pub energy_r2: f64,
    /// Highest accepted cross-validated MAPE of E_mig, %.
    #[serde(default = "default_mape")]
    pub cv_mape_e_mig_pct: f64,
    /// Lowest accepted meter coverage of a migration window, %.
    #[serde(default = "default_coverage")]
    pub coverage_pct: f64,
}

fn default_r2() -> f64 {
    0.95
}
fn default_mape() -> f64 {
    10.0
}
fn default_coverage() -> f64 {
    98.0
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            energy_r2: default_r2(),
            cv_mape_e_mig_pct: default_mape(),
            coverage_pct: default_coverage(),
        }
    }
}

/// What drives an emulated meter's power.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerModelKind {
    /// The host activity model ([`crate::hostpower`]): P = idle + cpu_w_per_core x busy
    /// cores of the host's QEMU processes + J/MB x link MB/s, from `/proc` samples (or the
    /// recorded ones, in a replay). Falls back to `throughput` where no activity can be
    /// sampled (log kinds, recordings without activity lines), and says so.
    #[default]
    Activity,
    /// The migration's own byte counter: idle + migrating_w + J/MB x MB/s while it runs.
    Throughput,
}

impl PowerModelKind {
    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerModelKind::Activity => "activity",
            PowerModelKind::Throughput => "throughput",
        }
    }
}

/// The power an emulated host draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulationConfig {
    /// Which model drives the emulated meters.
    #[serde(default)]
    pub power_model: PowerModelKind,
    /// Activity model: power per busy core of a host's QEMU processes, W.
    #[serde(default = "default_cpu_w_per_core")]
    pub cpu_w_per_core: f64,
    /// Static power of the source, W.
    #[serde(default = "default_source_idle")]
    pub source_idle_w: f64,
    /// Static power of the destination, W.
    #[serde(default = "default_destination_idle")]
    pub destination_idle_w: f64,
    /// Throughput model: extra power of each host while a migration runs, W.
    #[serde(default = "default_migrating_w")]
    pub migrating_w: f64,
    /// Extra source energy per MB sent (both models: the activity model's link term), J/MB.
    #[serde(default = "default_source_j_per_mb")]
    pub source_j_per_mb: f64,
    /// Extra destination energy per MB received (both models), J/MB.
    #[serde(default = "default_destination_j_per_mb")]
    pub destination_j_per_mb: f64,
    /// Measurement noise (standard deviation), W.
    #[serde(default = "default_noise")]
    pub noise_w: f64,
}

fn default_cpu_w_per_core() -> f64 {
    12.0
}
fn default_source_idle() -> f64 {
    118.0
}
fn default_destination_idle() -> f64 {
    96.0
}
fn default_migrating_w() -> f64 {
    1.5
}
fn default_source_j_per_mb() -> f64 {
    0.45
}
fn default_destination_j_per_mb() -> f64 {
    0.30
}
fn default_noise() -> f64 {
    0.15
}

impl Default for EmulationConfig {
    fn default() -> Self {
        EmulationConfig {
            power_model: PowerModelKind::default(),
            cpu_w_per_core: default_cpu_w_per_core(),
            source_idle_w: default_source_idle(),
            destination_idle_w: default_destination_idle(),
            migrating_w: default_migrating_w(),
            source_j_per_mb: default_source_j_per_mb(),
            destination_j_per_mb: default_destination_j_per_mb(),
            noise_w: default_noise(),
        }
    }
}

/// A config file as read: the config and the folder its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config.
    pub config: Config,
    /// The config file's folder.
    pub base: PathBuf,
    /// The config file.
    pub path: PathBuf,
}

impl LoadedConfig {
    /// A path of the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The output folder.
    pub fn out_dir(&self) -> PathBuf {
        match &self.config.out {
            Some(o) if o.as_os_str() == "." => self.base.clone(),
            Some(o) => self.resolve(o),
            None => self.base.join(format!(
                "calibration-{}",
                crate::output::safe_name(&self.config.name)
            )),
        }
    }
}

impl LoadedConfig {
    /// The output folder, checked before anything is written there: a campaign writes many
    /// files (report.html, summary.json, energy.parquet...) and would replace a user's own, so
    /// the folder must be new, empty (but for this config file), or a campaign folder (it
    /// holds `journal.jsonl`); never a file system root.
    pub fn checked_out_dir(&self) -> Result<PathBuf, CampaignError> {
        let out = self.out_dir();
        let refuse = |message: String| CampaignError::Config {
            path: self.path.clone(),
            message,
        };
        let real = std::fs::canonicalize(&out).unwrap_or_else(|_| out.clone());
        if real.parent().is_none() {
            return Err(refuse(format!(
                "`out` = {}: the root folder; give the campaign a folder of its own",
                out.display()
            )));
        }
        let meta = match std::fs::metadata(&out) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(CampaignError::Io { path: out, source }),
        };
        if !meta.is_dir() {
            return Err(refuse(format!(
                "`out` = {}: exists and is not a folder",
                out.display()
            )));
        }
        if out.join("journal.jsonl").is_file() {
            return Ok(out);
        }
        let config = std::fs::canonicalize(&self.path).ok();
        // The recordings a replay reads may sit in the folder (the demo writes its built-in
        // examples there): an input, not someone else's output. Its name must not be one the
        // campaign writes.
        let replay = self
            .config
            .hypervisor
            .replay
            .as_deref()
            .and_then(|r| std::fs::canonicalize(self.resolve(r)).ok());
        let config_text = std::fs::read(&self.path).ok();
        let mut foreign = Vec::new();
        let entries = std::fs::read_dir(&out).map_err(|source| CampaignError::Io {
            path: out.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| CampaignError::Io {
                path: out.clone(),
                source,
            })?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_config = config.is_some() && std::fs::canonicalize(e.path()).ok() == config;
            let same_copy = name == "campaign.toml"
                && config_text.is_some()
                && std::fs::read(e.path()).ok() == config_text;
            // What a run that stopped before its journal leaves: the lock, the config copy.
            let is_replay = replay.is_some()
                && std::fs::canonicalize(e.path()).ok() == replay
                && !CAMPAIGN_OUTPUTS.contains(&name.as_str());
            if !(is_config || same_copy || is_replay || name == ".lock") {
                foreign.push(name);
            }
        }
        if foreign.is_empty() {
            return Ok(out);
        }
        foreign.sort();
        let shown = foreign
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        Err(refuse(format!(
            "`out` = {}: exists and is not a campaign folder (no journal.jsonl; it holds {shown}{}); \
             a campaign would replace files there: give a new or empty folder",
            out.display(),
            if foreign.len() > 5 { ", ..." } else { "" }
        )))
    }
}

/// Names a campaign writes in its folder (an input there must not carry one of them).
const CAMPAIGN_OUTPUTS: &[&str] = &[
    "campaign.toml",
    "journal.jsonl",
    "samples",
    "baselines",
    "raw",
    "migrations",
    "rounds",
    "windows.parquet",
    "energy.parquet",
    "window-quality.parquet",
    "models",
    "summary.json",
    "report.html",
    "report.md",
];

/// Read and check a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, CampaignError> {
    let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config = parse(&text).map_err(|message| CampaignError::Config {
        path: path.to_path_buf(),
        message,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedConfig {
        config,
        base,
        path: path.to_path_buf(),
    })
}

/// Parse and check a config's text; the error names the key and what was expected.
pub fn parse(text: &str) -> Result<Config, String> {
    let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
    c.check()?;
    Ok(c)
}

impl Config {
    /// Check what serde cannot: required keys per hypervisor kind, units, ranges.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        // Host and VM names become folder and file names (samples/host=NAME, baselines,
        // models/SRC--DST, migration ids): the one rule for such names.
        for (key, name) in [
            ("source.host", &self.source.host),
            ("destination.host", &self.destination.host),
        ] {
            datasets::names::check_name("host name", name).map_err(|e| format!("{key}: {e}"))?;
        }
        for vm in &self.vms {
            datasets::names::check_name("VM name", &vm.name)
                .map_err(|e| format!("[[vms]] name: {e}"))?;
        }
        if self.source.host == self.destination.host {
            return Err(format!(
                "source.host and destination.host are both `{}`: the pair needs two names",
                self.source.host
            ));
        }
        for (k, v) in [
            ("baseline_s", self.baseline_s),
            ("settle_s", self.settle_s),
            ("window_pad_s", self.window_pad_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`{k}` = {v}: expected a number of seconds >= 0"));
            }
        }
        if self.baseline_s < 5.0 {
            return Err(format!(
                "`baseline_s` = {}: P_0 needs at least 5 s of idle capture (120 s recommended)",
                self.baseline_s
            ));
        }
        let h = &self.hypervisor;
        let need = |key: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(format!(
                    "[hypervisor] kind = \"{}\" needs `{key}`",
                    h.kind.as_str()
                ))
            }
        };
        match h.kind {
            HypervisorKind::Qemu => {
                if h.launch.is_none() {
                    need("source_qmp", h.source_qmp.is_some())?;
                    need("destination_qmp", h.destination_qmp.is_some())?;
                    need("uri", h.uri.is_some())?;
                }
            }
            HypervisorKind::Xen | HypervisorKind::Libvirt | HypervisorKind::QemuLog => {
                need("log", h.log.is_some())?;
            }
            HypervisorKind::Replay => need("replay", h.replay.is_some())?,
        }
        if h.kind != HypervisorKind::Replay {
            if self.vms.is_empty() {
                return Err("no [[vms]]: name at least one VM to migrate".into());
            }
            if self.plan.workloads.is_empty() && self.plan.runs.is_empty() {
                return Err("[plan] workloads is empty: name at least one workload label (or list [[plan.runs]])".into());
            }
            if self.plan.repetitions == 0 {
                return Err("[plan] repetitions = 0: expected at least 1".into());
            }
        }
        for vm in &self.vms {
            datasets::quantity::parse_size_bytes(&vm.mem)
                .map_err(|e| format!("[[vms]] `{}` mem = \"{}\": {e}", vm.name, vm.mem))?;
        }
        for b in &self.plan.bandwidths {
            datasets::quantity::parse_rate_bytes_per_s(b)
                .map_err(|e| format!("[plan] bandwidths: \"{b}\": {e}"))?;
        }
        for (i, r) in self.plan.runs.iter().enumerate() {
            let at = format!("[[plan.runs]] #{}", i + 1);
            if !self.vms.iter().any(|v| v.name == r.vm) {
                return Err(format!("{at}: vm = \"{}\" is not one of [[vms]]", r.vm));
            }
            datasets::names::check_name("workload", &r.workload)
                .map_err(|e| format!("{at}: {e}"))?;
            if let Some(b) = &r.bandwidth {
                datasets::quantity::parse_rate_bytes_per_s(b)
                    .map_err(|e| format!("{at}: bandwidth = \"{b}\": {e}"))?;
            }
        }
        if !self.plan.runs.is_empty()
            && (!self.plan.bandwidths.is_empty() || !self.plan.downtime_limits_ms.is_empty())
        {
            return Err("[plan] runs lists explicit runs: leave bandwidths and downtime_limits_ms out (give them per run)".into());
        }
        let limits = self.plan.downtime_limits_ms.iter().chain(
            self.plan
                .runs
                .iter()
                .filter_map(|r| r.downtime_limit_ms.as_ref()),
        );
        for d in limits {
            if !(1..=600_000).contains(d) {
                return Err(format!(
                    "[plan] downtime limit {d} ms: expected 1..600000 ms"
                ));
            }
        }
        let t = &self.thresholds;
        if !(0.0..=1.0).contains(&t.energy_r2) {
            return Err(format!(
                "[thresholds] energy_r2 = {}: expected 0..1",
                t.energy_r2
            ));
        }
        for (k, v) in [
            ("cv_mape_e_mig_pct", t.cv_mape_e_mig_pct),
            ("coverage_pct", t.coverage_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!(
                    "[thresholds] {k} = {v}: expected a percentage 0..100"
                ));
            }
        }
        // Values that would make a step run without end or a power overflow its records.
        let positive_s = [
            ("[hypervisor] timeout_s", Some(h.timeout_s)),
            ("[hypervisor] dirty_rate_sample_s", h.dirty_rate_sample_s),
            (
                "[hypervisor.launch] ready_timeout_s",
                h.launch.as_ref().map(|l| l.ready_timeout_s),
            ),
        ];
        for (k, v) in positive_s {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0 && *v <= 86_400.0)) {
                return Err(format!("`{k}` = {v:?}: expected seconds in (0, 86400]"));
            }
        }
        for (k, v) in [("baseline_s", self.baseline_s), ("settle_s", self.settle_s)] {
            if v > 86_400.0 {
                return Err(format!("`{k}` = {v}: expected at most a day of seconds"));
            }
        }
        let e = &self.emulation;
        let max_w = meter::emulator::MAX_WATTS;
        for (k, v) in [
            ("source_idle_w", e.source_idle_w),
            ("destination_idle_w", e.destination_idle_w),
            ("migrating_w", e.migrating_w),
            ("cpu_w_per_core", e.cpu_w_per_core),
            ("source_j_per_mb", e.source_j_per_mb),
            ("destination_j_per_mb", e.destination_j_per_mb),
            ("noise_w", e.noise_w),
        ] {
            if !(v.is_finite() && (0.0..=max_w).contains(&v)) {
                return Err(format!("[emulation] {k} = {v:?}: expected 0..{max_w}"));
            }
        }
        if !(self.baseline_max_spread_w.is_finite() && self.baseline_max_spread_w >= 0.0) {
            return Err(format!(
                "`baseline_max_spread_w` = {}: expected watts >= 0",
                self.baseline_max_spread_w
            ));
        }
        if h.kind != HypervisorKind::Qemu {
            if h.verify == Some(true) {
                return Err(format!(
                    "[hypervisor] verify = true needs kind = \"qemu\" (the collector compares the guests' memory over QMP), not \"{}\"",
                    h.kind.as_str()
                ));
            }
            if h.paused_hook.is_some() {
                return Err(format!(
                    "[hypervisor] paused_hook needs kind = \"qemu\", not \"{}\"",
                    h.kind.as_str()
                ));
            }
        }
        if let Some(l) = &h.launch {
            if l.accel != AccelChoice::Auto
                && l.args.iter().any(|a| a == "-accel" || a == "-enable-kvm")
            {
                return Err(
                    "[hypervisor.launch] accel is set and args name an accelerator too: keep one (leave -accel out of args)".into(),
                );
            }
            if l.args.is_empty() {
                return Err(
                    "[hypervisor.launch] args is empty: give the guest's QEMU arguments".into(),
                );
            }
            if l.args.iter().any(|a| a.contains("{workload_args}")) {
                let run_workloads = self.plan.runs.iter().map(|r| &r.workload);
                for w in self.plan.workloads.iter().chain(run_workloads) {
                    if !l.workload_args.contains_key(w) {
                        return Err(format!(
                            "[hypervisor.launch.workload_args] has no entry for workload `{w}`"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The commented example config `migwatt calibrate init` writes.
pub const EXAMPLE_CONFIG: &str = include_str!("example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_are_emulated_only_when_they_say_so() {
        let host = |meter: &str| HostConfig {
            host: "h".into(),
            meter: meter.into(),
        };
        assert!(host("emulated").is_emulated());
        assert!(host("emulated:").is_emulated());
        assert!(!host("/dev/ttyUSB0").is_emulated());
        assert!(!host("wattsup:/dev/ttyUSB0").is_emulated());
        assert!(!host("meters/emulated").is_emulated());
        // Every source kind is a campaign meter.
        for m in [
            "rapl:",
            "redfish+http://bmc/redfish/v1/Chassis/1",
            "prometheus+http://h:9100/metrics?metric=x_watts",
            "ipmi://bmc:623?sensor=Pwr%20Consumption",
        ] {
            let spec = meter::source::SourceSpec::parse_device_or_spec(m).unwrap();
            assert_ne!(spec.kind(), "wattsup", "{m}");
            assert!(!host(m).is_emulated());
        }
        // The commented example offers each kind.
        for kind in ["rapl:", "redfish+http://", "prometheus+http://", "ipmi://"] {
            assert!(EXAMPLE_CONFIG.contains(kind), "{kind}");
        }
    }

    #[test]
    fn example_config_parses() {
        let c = parse(EXAMPLE_CONFIG).unwrap();
        assert_eq!(c.hypervisor.kind, HypervisorKind::Qemu);
        assert_eq!(c.thresholds, Thresholds::default());
        assert!(c.plan.workloads.len() >= 2);
    }

    #[test]
    fn errors_name_the_key() {
        let base = EXAMPLE_CONFIG.replace("repetitions = 3", "repetitions = 0");
        assert!(parse(&base).unwrap_err().contains("repetitions"));
        let bad = EXAMPLE_CONFIG.replace("mem = \"4GiB\"", "mem = \"4 parsecs\"");
        assert!(
            parse(&bad).unwrap_err().contains("mem"),
            "{}",
            parse(&bad).unwrap_err()
        );
        let unknown = format!("{EXAMPLE_CONFIG}\n[extra]\nx = 1\n");
        assert!(parse(&unknown).unwrap_err().contains("extra"));
        let same = EXAMPLE_CONFIG.replace("host = \"node-b\"", "host = \"node-a\"");
        assert!(parse(&same).unwrap_err().contains("both"));
    }

    #[test]
    fn unbounded_and_impossible_values_are_refused() {
        for (add, want) in [
            (
                "[emulation]\nsource_j_per_mb = 1e308\n",
                "source_j_per_mb = 1e308",
            ),
            ("[emulation]\nsource_idle_w = -5\n", "source_idle_w = -5"),
        ] {
            let e = parse(&format!("{EXAMPLE_CONFIG}\n{add}")).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(EXAMPLE_CONFIG.contains("timeout_s = 600"));
        let e = parse(&EXAMPLE_CONFIG.replacen("timeout_s = 600", "timeout_s = 0", 1)).unwrap_err();
        assert!(e.contains("timeout_s` = 0.0: expected seconds"), "{e}");
    }

    #[test]
    fn names_that_leave_their_folder_are_refused() {
        for (from, to, want) in [
            (
                "host = \"node-a\"",
                "host = \"../../evil\"",
                "source.host: host name '../../evil'",
            ),
            (
                "host = \"node-b\"",
                "host = \"\"",
                "destination.host: host name '': empty",
            ),
            (
                "name = \"vm-4g\"",
                "name = \"a/b\"",
                "[[vms]] name: VM name 'a/b'",
            ),
        ] {
            assert!(EXAMPLE_CONFIG.contains(from), "{from}");
            let e = parse(&EXAMPLE_CONFIG.replacen(from, to, 1)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn the_output_folder_must_be_new_empty_or_a_campaign() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, EXAMPLE_CONFIG).unwrap();
        let mut lc = load(&cfg).unwrap();
        let at = |lc: &mut LoadedConfig, out: &Path| {
            lc.config.out = Some(out.to_path_buf());
            lc.checked_out_dir().map_err(|e| e.to_string())
        };
        // New, and the config's own folder holding only the config.
        assert!(at(&mut lc, Path::new("new")).is_ok());
        assert!(at(&mut lc, Path::new(".")).is_ok());
        // A folder of someone else's files.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("report.html"), "mine").unwrap();
        let e = at(&mut lc, &theirs).unwrap_err();
        assert!(
            e.contains("not a campaign folder") && e.contains("report.html"),
            "{e}"
        );
        // The same folder once it is a campaign's.
        std::fs::write(theirs.join("journal.jsonl"), "").unwrap();
        assert!(at(&mut lc, &theirs).is_ok());
        assert!(at(&mut lc, Path::new("/"))
            .unwrap_err()
            .contains("root folder"));
        assert!(at(&mut lc, &cfg).unwrap_err().contains("not a folder"));
    }

    #[test]
    fn memory_and_bandwidths_mean_what_they_mean_on_the_command_line() {
        let with = |mem: &str, bw: &str| {
            EXAMPLE_CONFIG
                .replace("mem = \"4GiB\"", &format!("mem = \"{mem}\""))
                .replace("[\"1Gbit/s\", \"500Mbit/s\"]", &format!("[\"{bw}\"]"))
        };
        let c = parse(&with("512MiB", "32MiB/s")).unwrap();
        let runs = super::super::plan::build(&c, None).unwrap();
        assert_eq!(runs[0].vm_mem_bytes, 512 << 20);
        assert_eq!(runs[0].bandwidth_bytes_per_s, Some(32 << 20));
        let c = parse(&with("2GB", "100Mbps")).unwrap();
        let runs = super::super::plan::build(&c, None).unwrap();
        assert_eq!(runs[0].vm_mem_bytes, 2_000_000_000);
        assert_eq!(runs[0].bandwidth_bytes_per_s, Some(12_500_000));
        // The spellings the command line refuses are refused here, with the same advice.
        let e = parse(&with("4GiB", "32M")).unwrap_err();
        assert!(
            e.contains("bandwidths") && e.contains("write 32MiB/s or 32MB/s"),
            "{e}"
        );
        let e = parse(&with("4G", "32MiB/s")).unwrap_err();
        assert!(e.contains("mem") && e.contains("write 4GiB or 4GB"), "{e}");
        let e = parse(&with("4GiB", "16")).unwrap_err();
        assert!(e.contains("write 16B/s"), "{e}");
    }
}
