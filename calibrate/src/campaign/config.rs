//! The campaign config (TOML): hosts and meters, hypervisor access, VMs, plan, thresholds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CampaignError;

/// The value of `meter` that asks for an emulated meter instead of a serial device.
pub const EMULATED_METER: &str = "emulated";

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
    /// Serial device of its Watts up? PRO, or `emulated`.
    pub meter: String,
}

impl HostConfig {
    /// Whether this host's meter is emulated.
    pub fn is_emulated(&self) -> bool {
        self.meter == EMULATED_METER
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
    /// Repetitions of each combination.
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
}

fn default_repetitions() -> u32 {
    1
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            workloads: Vec::new(),
            bandwidths: Vec::new(),
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

/// The power an emulated host draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulationConfig {
    /// Static power of the source, W.
    #[serde(default = "default_source_idle")]
    pub source_idle_w: f64,
    /// Static power of the destination, W.
    #[serde(default = "default_destination_idle")]
    pub destination_idle_w: f64,
    /// Extra power of each host while a migration runs, W.
    #[serde(default = "default_migrating_w")]
    pub migrating_w: f64,
    /// Extra source energy per MB sent, J/MB.
    #[serde(default = "default_source_j_per_mb")]
    pub source_j_per_mb: f64,
    /// Extra destination energy per MB received, J/MB.
    #[serde(default = "default_destination_j_per_mb")]
    pub destination_j_per_mb: f64,
    /// Measurement noise (standard deviation), W.
    #[serde(default = "default_noise")]
    pub noise_w: f64,
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
            if self.plan.workloads.is_empty() {
                return Err("[plan] workloads is empty: name at least one workload label".into());
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
        if let Some(l) = &h.launch {
            if l.args.is_empty() {
                return Err(
                    "[hypervisor.launch] args is empty: give the guest's QEMU arguments".into(),
                );
            }
            if l.args.iter().any(|a| a.contains("{workload_args}")) {
                for w in &self.plan.workloads {
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
