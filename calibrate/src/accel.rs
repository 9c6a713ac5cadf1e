//! Which accelerator a QEMU guest runs on: KVM where it works, TCG otherwise.
//!
//! `/dev/kvm` existing does not make KVM usable (on some hosts a KVM guest hangs silently
//! with an empty console), so the only test is trying: [`kvm_usable`] boots the guest with
//! `-accel kvm` and waits a few seconds for the first byte on its serial console.
//! [`choose`] does that once per process. [`accelerator_of`] asks a running QEMU which one it
//! runs (QMP `query-kvm`, else HMP `info jit`, which only TCG answers), for the records.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::qmp::Qmp;

/// An accelerator QEMU can run a guest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's own binary translator.
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` takes and the records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How long [`choose`] waits for the first console byte of a KVM guest.
pub const KVM_PROBE_WAIT: Duration = Duration::from_secs(5);

/// Whether a guest boots under KVM here: `qemu ARGS -accel kvm` with its serial console in a
/// temporary file, killed after the first console byte or after `wait`. `args` is the
/// guest's command line without an accelerator, a serial console or a monitor (e.g. `-m`,
/// `-cpu`, `-kernel`, `-initrd`, `-append` with `console=ttyS0`).
pub fn kvm_usable(qemu: &str, args: &[String], wait: Duration) -> bool {
    if std::fs::metadata("/dev/kvm").is_err() {
        return false;
    }
    let serial = std::env::temp_dir().join(format!(
        "migwatt-kvm-probe-{}-{}.serial",
        std::process::id(),
        crate::qmp::utc_now_ns()
    ));
    let mut cmd = Command::new(qemu);
    cmd.args(args)
        .args(["-accel", "kvm", "-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe; the probe must not outlive this process.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
                .map_err(std::io::Error::from)
        });
    }
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let deadline = Instant::now() + wait;
    let usable = loop {
        if std::fs::metadata(&serial).is_ok_and(|m| m.len() > 0) {
            break true;
        }
        // QEMU exits at once when KVM cannot be opened or set up.
        if !matches!(child.try_wait(), Ok(None)) || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&serial);
    usable
}

static CHOSEN: OnceLock<Accel> = OnceLock::new();

/// KVM if [`kvm_usable`] with these arguments, else TCG; decided once per process (later
/// calls return the first answer).
pub fn choose(qemu: &str, args: &[String]) -> Accel {
    *CHOSEN.get_or_init(|| {
        if kvm_usable(qemu, args, KVM_PROBE_WAIT) {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    })
}

/// The accelerator a running QEMU uses: `kvm` (QMP `query-kvm` enabled), `tcg` (HMP
/// `info jit` shows a translation buffer, which only TCG has), else None.
pub fn accelerator_of(q: &mut Qmp) -> Option<String> {
    let t = Duration::from_secs(10);
    if let Ok((_, r)) = q.execute("query-kvm", None, t) {
        if r.get("enabled").and_then(Value::as_bool) == Some(true) {
            return Some(Accel::Kvm.as_str().into());
        }
    }
    let (_, r) = q
        .execute(
            "human-monitor-command",
            Some(json!({"command-line": "info jit"})),
            t,
        )
        .ok()?;
    r.as_str()
        .is_some_and(|s| s.contains("Translation buffer"))
        .then(|| Accel::Tcg.as_str().into())
}
