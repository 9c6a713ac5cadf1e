//! `migwatt demo`: the calibration campaign of `migwatt calibrate run`, on built-in defaults.
//!
//! Two emulated Watts up? PRO meters run on real pseudo-terminals; their power follows what
//! each host does, through the linear host power model of [`crate::hostpower`] (CPU time of
//! its QEMU processes, bytes through the migration link): sampled live with `--qemu`,
//! replayed from the activity recorded with each example migration otherwise. By default the
//! migrations are replays of real QEMU migrations shipped in `datasets/examples/campaign`
//! (recorded by `calibrate run`, QEMU 10, verified) and built into the binary, so the demo runs from any folder; with `--qemu` they are real live
//! migrations of local QEMU guests, each verified (all guest RAM of the paused source and
//! destination compared page by page before the destination runs). Everything else (capture,
//! P_0, integration, training, verdicts, report) is the production campaign code. The demo
//! writes its config beside its output so it can be rerun with `migwatt calibrate run`.

use std::path::{Path, PathBuf};

use crate::campaign::{self, CampaignError, Outcome, RunOptions};

/// Which migrations the demo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoMigrations {
    /// Replay `count` recorded migrations of a campaign folder (its `migrations/` and
    /// `rounds/`).
    Replay {
        /// The example campaign folder; None: the one built into the binary, written to
        /// `replayed/` in the demo's folder.
        examples: Option<PathBuf>,
        /// How many migrations.
        count: usize,
    },
    /// Real migrations of the test guest of `scripts/setup-qemu.sh` (folder with `vmlinuz`
    /// and `initramfs.cpio.gz`) between two local TCG QEMU processes.
    Qemu {
        /// The guest folder.
        guest: PathBuf,
    },
}

/// The demo's campaign config (TOML) for `m`.
pub fn demo_config(m: &DemoMigrations) -> String {
    let common = r#"# The demo's campaign: `migwatt calibrate run` on built-in defaults.
# Rerun it (from this folder) with: migwatt calibrate run demo.toml
name = "demo"
out = "."
baseline_s = 6
settle_s = 2.2

[source]
host = "demo-source"
meter = "emulated"

[destination]
host = "demo-destination"
meter = "emulated"
"#;
    match m {
        DemoMigrations::Replay { examples, count } => format!(
            "{common}\n[hypervisor]\nkind = \"replay\"\nreplay = {:?}\nreplay_count = {count}\n",
            examples
                .as_deref()
                .unwrap_or(Path::new(EMBEDDED_DIR))
                .display()
                .to_string()
        ),
        DemoMigrations::Qemu { guest } => {
            let g = guest.display().to_string();
            format!(
                r#"{common}
[hypervisor]
kind = "qemu"
downtime_limit_ms = 50
timeout_s = 120
dirty_rate_sample_s = 1
# Every migration is proven correct before its destination runs (the default with launch).
verify = true

[hypervisor.launch]
# KVM where a guest boots under it, else TCG (tried once).
accel = "auto"
args = ["-cpu", "qemu64", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", "{g}/vmlinuz", "-initrd", "{g}/initramfs.cpio.gz",
        "-append", "console=ttyS0 rdinit=/init quiet {{workload_args}}"]
ready = "dirtier: ready"
ready_timeout_s = 300
# The bandwidths are a relay's rate between the two QEMUs, like a lab's link (QEMU lifts its
# own max-bandwidth at stop-and-copy).
link = "relay"

[hypervisor.launch.workload_args]
dirty256 = "dirty_pages_per_s=256 dirty_hot_mib=8"
dirty2048 = "dirty_pages_per_s=2048 dirty_hot_mib=32"

[[vms]]
name = "tiny128m"
mem = "128MiB"

[[vms]]
name = "tiny256m"
mem = "256MiB"

[plan]
workloads = ["dirty256", "dirty2048"]
bandwidths = ["24MiB/s", "48MiB/s"]
repetitions = 1
"#
            )
        }
    }
}

/// Where in the demo's folder the built-in example migrations are written (the config's
/// paths are relative to it).
pub const EMBEDDED_DIR: &str = "replayed";

/// Write `dir/demo.toml` for `m` (and the built-in examples it replays, if it uses them) and
/// run its campaign in `dir`.
pub fn run_demo(
    dir: &Path,
    m: &DemoMigrations,
    opts: &RunOptions,
) -> Result<(PathBuf, Outcome), CampaignError> {
    std::fs::create_dir_all(dir).map_err(|source| CampaignError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if let DemoMigrations::Replay { examples: None, .. } = m {
        datasets::examples::write_campaign(&dir.join(EMBEDDED_DIR)).map_err(|e| {
            CampaignError::Step {
                step: "writing the built-in example migrations",
                message: datasets::error_chain(&e),
            }
        })?;
    }
    let path = dir.join("demo.toml");
    datasets::io::write_bytes_atomic(&path, demo_config(m).as_bytes()).map_err(|e| {
        CampaignError::Step {
            step: "writing the demo config",
            message: datasets::error_chain(&e),
        }
    })?;
    let lc = campaign::load(&path)?;
    let outcome = campaign::run(&lc, opts)?;
    Ok((path, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_configs_parse() {
        for m in [
            DemoMigrations::Replay {
                examples: Some("datasets/examples/campaign".into()),
                count: 6,
            },
            DemoMigrations::Replay {
                examples: None,
                count: 6,
            },
            DemoMigrations::Qemu {
                guest: "/tmp/guest".into(),
            },
        ] {
            let c = campaign::config::parse(&demo_config(&m)).unwrap();
            assert!(c.source.is_emulated() && c.destination.is_emulated());
            if matches!(m, DemoMigrations::Qemu { .. }) {
                assert!(c.hypervisor.verifies());
            }
            assert_eq!(c.baseline_s, 6.0);
        }
    }
}
