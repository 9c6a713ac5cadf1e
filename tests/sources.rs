//! End to end: `migwatt meter capture` on the source kinds beside the Watts up? PRO.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A powercap tree laid out as the kernel does (zones under `devices/`, symlinks in
/// `class/powercap`), with one package zone whose counter the test drives.
struct Powercap {
    _dir: tempfile::TempDir,
    class: PathBuf,
    package: PathBuf,
}

impl Powercap {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devices = dir.path().join("devices/virtual/powercap/intel-rapl");
        let class = dir.path().join("class/powercap");
        let package = devices.join("intel-rapl:0");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&devices, class.join("intel-rapl")).unwrap();
        std::os::unix::fs::symlink(&package, class.join("intel-rapl:0")).unwrap();
        std::fs::write(package.join("name"), "package-0\n").unwrap();
        std::fs::write(package.join("max_energy_range_uj"), "262143328850\n").unwrap();
        let p = Powercap {
            _dir: dir,
            class,
            package,
        };
        p.set(0);
        p
    }
    fn set(&self, uj: u64) {
        set_counter(&self.package, uj);
    }
}

/// Write a zone's counter whole (write, rename), as the kernel shows it.
fn set_counter(zone: &Path, uj: u64) {
    let tmp = zone.join("energy_uj.tmp");
    std::fs::write(&tmp, format!("{uj}\n")).unwrap();
    std::fs::rename(&tmp, zone.join("energy_uj")).unwrap();
}

#[test]
fn rapl_capture_records_the_counter_kind_and_interval() {
    let cap = Powercap::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The counter moves in steps of 0.25 J every 5 ms (50 W) while the capture runs.
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (stop, zone) = (stop.clone(), cap.package.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                set_counter(&zone, k * 250_000);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = Command::new(bin())
        .args(["meter", "capture", "--out"])
        .arg(&data)
        .arg("--source")
        .arg(format!("cpu=rapl:{}", cap.class.display()))
        .args(["--duration", "4s"])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = datasets::samples::read_samples(&data).unwrap();
    assert!(rows.len() >= 2, "{} samples", rows.len());
    let mut prev: Option<(i64, f64)> = None;
    for r in &rows {
        assert_eq!(r.host, "cpu");
        assert_eq!(r.meter_id, "rapl-package-0");
        assert_eq!(r.source_kind.as_deref(), Some("rapl"));
        assert_eq!(r.source_interval_ns, Some(1_000_000_000));
        let c = r.energy_counter_j.expect("a counter");
        // Every counter is one the test wrote (a multiple of 0.25 J).
        assert!(((c * 4.0) - (c * 4.0).round()).abs() < 1e-9, "{c}");
        let w = r.watts().expect("power from the counter");
        if let Some((t0, c0)) = prev {
            assert!(c >= c0);
            // Power is the counter's difference over the monotonic interval.
            let want = (c - c0) / ((r.mono_ns - t0) as f64 / 1e9);
            assert!((w - want).abs() < 1e-6 * want.max(1.0), "{w} vs {want}");
        }
        prev = Some((r.mono_ns, c));
    }
}

#[test]
fn rapl_on_a_machine_without_powercap_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["meter", "capture", "--out"])
        .arg(dir.path().join("data"))
        .arg("--source")
        .arg(format!("cpu=rapl:{}", dir.path().display()))
        .args(["--duration", "2s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no RAPL package or psys zone"), "{err}");
}
