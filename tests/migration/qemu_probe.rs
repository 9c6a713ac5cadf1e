//! `migwatt calibrate probe` against a real QEMU guest whose dirtier writes at a set rate over
//! a set hot set: the probe's D and H must match what the guest was told to do, within the
//! tolerance page sampling allows (stated below), and its non-zero share must be plausible.
//!
//! Needs `scripts/setup-qemu.sh` first; run one at a time with
//! `MIGWATT_QEMU_GUEST_DIR=$(scripts/setup-qemu.sh | tail -n1) cargo test --workspace --test migration -- --ignored qemu_probe:: --test-threads=1`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::common;

use assert_cmd::cargo::CommandCargoExt;
use common::qemu::*;
use trainer::probe::Probe;

/// QEMU tests share two cores: never run two at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: f64 = 1048576.0;
/// Tolerance on D and H: page sampling with 10000 pages per GiB sees a 16 MiB hot set of a
/// 256 MiB guest through about 160 sampled pages (about 8 % standard error), and QEMU
/// reports whole MiB/s (half a MiB/s of truncation on 8 MiB/s after the probe's correction).
const TOLERANCE: f64 = 0.25;

/// Boot a 256 MiB guest running the dirtier with these kernel parameters.
fn boot(dir: &Path, params: &str) -> Qemu {
    let g = guest_dir();
    let serial = dir.join("guest.serial");
    let child = Command::new(QEMU)
        .args([
            "-accel",
            accel(),
            "-cpu",
            "qemu64",
            "-m",
            "256M",
            "-nodefaults",
        ])
        .args(["-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(g.join("vmlinuz"))
        .arg("-initrd")
        .arg(g.join("initramfs.cpio.gz"))
        .arg("-append")
        .arg(format!("console=ttyS0 rdinit=/init quiet {params}"))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!(
            "unix:{},server=on,wait=off",
            dir.join("guest.qmp").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("guest.stderr")).unwrap(),
        ))
        .spawn()
        .expect("qemu-system-x86_64 (run scripts/setup-qemu.sh)");
    let mut q = Qemu { child, serial };
    wait_ready(&mut q);
    q
}

/// Run `calibrate probe` on a guest booted with `params`; the probe file it wrote.
fn probe(params: &str) -> Probe {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _q = boot(dir.path(), params);
    let file = dir.path().join("probe.json");
    let out = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "probe", "--qmp"])
        .arg(dir.path().join("guest.qmp"))
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{params}:\n{stderr}{stdout}");
    assert!(out.status.success(), "probe failed: {stderr}");
    let p = Probe::from_json(&std::fs::read_to_string(&file).unwrap(), "probe.json").unwrap();
    assert_eq!(p.method, "page-sampling");
    assert_eq!(p.vm_mem_bytes, 256.0 * MIB);
    assert_eq!(
        p.windows.iter().map(|w| w.window_s).collect::<Vec<_>>(),
        [1.0, 2.0, 4.0, 8.0]
    );
    // The dirtier's buffer is resident and non-zero, the rest of RAM mostly zeros.
    let z = p.nonzero_share.expect("non-zero share measured");
    assert!(z > 16.0 / 256.0 && z < 0.9, "non-zero share {z}");
    p
}

fn within(got: f64, want: f64) -> bool {
    (got - want).abs() <= TOLERANCE * want
}

#[test]
#[ignore = "needs real QEMU: scripts/setup-qemu.sh, then --ignored --test-threads=1"]
fn a_sequential_writer_over_a_hot_set_gives_its_rate_and_hot_set() {
    // 2048 pages/s = 8 MiB/s cycling over 16 MiB: saturates after 2 s.
    let p = probe("dirty_pages_per_s=2048 dirty_hot_mib=16 dirty_pattern=seq");
    assert!(
        within(p.dirty_rate_bytes_per_s, 8.0 * MIB),
        "D = {:.2} MiB/s, want 8 MiB/s +- 25 %",
        p.dirty_rate_bytes_per_s / MIB
    );
    let h = p.hot_set_bytes.expect("a hot set");
    assert!(
        within(h, 16.0 * MIB),
        "H = {:.2} MiB, want 16 MiB +- 25 %",
        h / MIB
    );
}

#[test]
#[ignore = "needs real QEMU: scripts/setup-qemu.sh, then --ignored --test-threads=1"]
fn a_writer_cycling_a_large_buffer_shows_no_hot_set() {
    // 1024 pages/s = 4 MiB/s over a 64 MiB buffer: 32 MiB in the longest window, still
    // growing linearly.
    let p = probe("dirty_pages_per_s=1024 dirty_hot_mib=64 dirty_pattern=cycle dirty_buf_mib=64");
    assert_eq!(p.hot_set_bytes, None, "{p:?}");
    assert!(
        within(p.dirty_rate_bytes_per_s, 4.0 * MIB),
        "D = {:.2} MiB/s, want 4 MiB/s +- 25 %",
        p.dirty_rate_bytes_per_s / MIB
    );
}
