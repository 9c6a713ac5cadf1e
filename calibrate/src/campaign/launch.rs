//! Local QEMU processes for one migration (`[hypervisor.launch]`): a source guest and an
//! incoming destination on this machine, joined through migwatt's relay ([`crate::relay`]:
//! source -> relay socket -> the destination's incoming unix socket), which counts the bytes
//! of the stream and, with `link = "relay"`, paces them at the plan's bandwidth. The
//! destination starts
//! with `-S`, so it stays paused after the migration until the collector resumes it (after
//! the memory check). The accelerator is the config's `accel`: with `auto` (the default,
//! unless `args` name one), KVM when a guest booted with it writes to its serial console
//! within a few seconds, else TCG, decided once per process ([`crate::accel::choose`]).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{AccelChoice, LaunchConfig, LinkKind};
use super::plan::PlannedRun;
use super::CampaignError;

/// A source and a destination QEMU, both killed when dropped (and when migwatt dies).
#[derive(Debug)]
pub struct LocalPair {
    children: Vec<Child>,
    /// The link between the two (dropped after the QEMUs).
    pub relay: crate::relay::Relay,
    /// The relay's pace, bytes/s (None: QEMU's max-bandwidth paces the stream).
    pub link_rate_bytes_per_s: Option<u64>,
    /// Source QMP socket.
    pub source_qmp: PathBuf,
    /// Destination QMP socket.
    pub destination_qmp: PathBuf,
    /// Migration URI (loopback TCP).
    pub uri: String,
    /// Source serial console log.
    pub source_serial: PathBuf,
}

impl Drop for LocalPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl LocalPair {
    /// Process ids: (source, destination).
    pub fn pids(&self) -> (u32, u32) {
        (self.children[1].id(), self.children[0].id())
    }
}

/// The guest's own arguments: the config's `args` expanded for `run`, and `-m`.
fn guest_args(l: &LaunchConfig, run: &PlannedRun) -> Vec<String> {
    let workload_args = l
        .workload_args
        .get(&run.workload)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = l
        .args
        .iter()
        .map(|a| run.expand(a, &[("workload_args", workload_args.clone())]))
        .collect();
    out.push("-m".into());
    out.push(format!("{}M", (run.vm_mem_bytes >> 20).max(16)));
    out
}

/// The accelerator to add, or None when the args name one themselves.
fn accel(l: &LaunchConfig, guest: &[String]) -> Option<crate::accel::Accel> {
    use crate::accel::Accel;
    match l.accel {
        AccelChoice::Kvm => Some(Accel::Kvm),
        AccelChoice::Tcg => Some(Accel::Tcg),
        AccelChoice::Auto if guest.iter().any(|a| a == "-accel" || a == "-enable-kvm") => None,
        AccelChoice::Auto => Some(crate::accel::choose(&l.qemu, guest)),
    }
}

fn spawn(
    l: &LaunchConfig,
    run: &PlannedRun,
    dir: &Path,
    name: &str,
    incoming: Option<&str>,
) -> Result<Child, CampaignError> {
    let mut cmd = Command::new(&l.qemu);
    let guest = guest_args(l, run);
    cmd.args(&guest);
    if let Some(a) = accel(l, &guest) {
        cmd.arg("-accel").arg(a.as_str());
    }
    cmd.arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            dir.join(format!("{name}.qmp")).display()
        ))
        .arg("-serial")
        .arg(format!(
            "file:{}",
            dir.join(format!("{name}.serial")).display()
        ));
    if let Some(uri) = incoming {
        // -S: paused after the migration until the collector has checked it and resumes it.
        cmd.arg("-incoming").arg(uri).arg("-S");
    }
    let stderr = std::fs::File::create(dir.join(format!("{name}.stderr")))
        .map_err(|e| CampaignError::Launch(format!("{}: {e}", dir.display())))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    // SAFETY: prctl is async-signal-safe; a guest must not outlive a killed campaign (the
    // resumed run starts its own).
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map_err(|e| {
        CampaignError::Launch(format!(
            "{}: {e} (is QEMU installed? scripts/setup-qemu.sh installs it)",
            l.qemu
        ))
    })
}

/// Start the pair for `run` in `dir` and wait until the source guest is ready.
pub fn start(
    l: &LaunchConfig,
    run: &PlannedRun,
    dir: &Path,
    cancel: &meter::Cancel,
) -> Result<LocalPair, CampaignError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CampaignError::Launch(format!("{}: {e}", dir.display())))?;
    for f in [
        "source.qmp",
        "destination.qmp",
        "source.serial",
        "destination.serial",
        "incoming.sock",
        "link.sock",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let incoming = dir.join("incoming.sock");
    let rate = match l.link {
        LinkKind::Relay => run.bandwidth_bytes_per_s,
        LinkKind::Qemu => None,
    };
    let relay = crate::relay::Relay::start(&dir.join("link.sock"), &incoming, rate)
        .map_err(|e| CampaignError::Launch(format!("{}: relay: {e}", dir.display())))?;
    let mut pair = LocalPair {
        children: Vec::new(),
        uri: format!("unix:{}", relay.listen.display()),
        relay,
        link_rate_bytes_per_s: rate,
        source_qmp: dir.join("source.qmp"),
        destination_qmp: dir.join("destination.qmp"),
        source_serial: dir.join("source.serial"),
    };
    let incoming_uri = format!("unix:{}", incoming.display());
    pair.children
        .push(spawn(l, run, dir, "destination", Some(&incoming_uri))?);
    pair.children.push(spawn(l, run, dir, "source", None)?);
    let deadline = Instant::now() + Duration::from_secs_f64(l.ready_timeout_s);
    loop {
        for (c, name) in pair.children.iter_mut().zip(["destination", "source"]) {
            if let Ok(Some(st)) = c.try_wait() {
                let err =
                    std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default();
                return Err(CampaignError::Launch(format!(
                    "{name} QEMU exited ({st}) before the migration: {}",
                    err.trim()
                )));
            }
        }
        let sockets = pair.source_qmp.exists()
            && pair.destination_qmp.exists()
            && dir.join("incoming.sock").exists();
        let ready = match &l.ready {
            None => true,
            Some(text) => std::fs::read_to_string(&pair.source_serial)
                .is_ok_and(|s| s.contains(text.as_str())),
        };
        if sockets && ready {
            return Ok(pair);
        }
        if cancel.is_cancelled() {
            return Err(CampaignError::Cancelled);
        }
        if Instant::now() > deadline {
            return Err(CampaignError::Launch(format!(
                "the source guest was not ready after {:.0} s (waiting for {:?} in {})",
                l.ready_timeout_s,
                l.ready.as_deref().unwrap_or("its QMP socket"),
                pair.source_serial.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
