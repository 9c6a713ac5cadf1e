//! End to end: `migwatt meter capture` on the source kinds beside the Watts up? PRO.

use crate::common;

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
        .args(["meter", "capture", "--out-dir"])
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
        .args(["meter", "capture", "--out-dir"])
        .arg(dir.path().join("data"))
        .arg("--source")
        .arg(format!("cpu=rapl:{}", dir.path().display()))
        .args(["--duration", "2s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no RAPL package or psys zone"), "{err}");
}

/// A port free on loopback right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A capture of an emulated meter serving its metrics on `port` (the exporter under test).
fn spawn_exporter(data: &Path, port: u16) -> std::process::Child {
    Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(data)
        .args([
            "--source",
            "src=emulated:bursts:idle=100,peak=150,period=4,burst=2,start=0",
        ])
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .args(["--flush-every", "1s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until the exporter on `port` serves `migwatt_power_watts` (its meter has a sample).
fn wait_ready(port: u16) {
    use std::io::{Read, Write};
    wait_until("the exporter serves power", || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(100));
            return false;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let ready = text.contains("migwatt_power_watts{");
        if !ready {
            std::thread::sleep(Duration::from_millis(100));
        }
        ready
    });
}

/// Collapse runs of equal values (a 1 Hz scrape of a 1 Hz source may see a value twice).
fn runs(v: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for &x in v {
        if out.last() != Some(&x) {
            out.push(x);
        }
    }
    out
}

#[test]
fn prometheus_scrapes_a_real_exporter_value_by_value_and_an_outage_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (served, scraped) = (dir.path().join("served"), dir.path().join("scraped"));
    let port = free_port();
    let mut exporter = spawn_exporter(&served, port);
    wait_ready(port);
    let url =
        format!("p=prometheus+http://127.0.0.1:{port}/metrics?metric=migwatt_power_watts&host=src");
    let scraper = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(&scraped)
        .args(["--source", &url, "--flush-every", "1s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it scrape, take the exporter away for a while (SIGKILL), bring it back.
    std::thread::sleep(Duration::from_secs(6));
    exporter.kill().unwrap();
    exporter.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut exporter = spawn_exporter(&served, port);
    wait_ready(port);
    // Back-off after the outage is a few seconds at most: leave it time to resume.
    std::thread::sleep(Duration::from_secs(10));
    interrupt(&scraper);
    let out = scraper.wait_with_output().unwrap();
    interrupt(&exporter);
    exporter.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // A clean stop after SIGINT.
    assert_eq!(out.status.code(), Some(130), "{err}");

    let got = datasets::samples::read_samples(&scraped).unwrap();
    let sent = datasets::samples::read_samples(&served).unwrap();
    assert!(got.len() >= 8, "{} scraped: {err}", got.len());
    let resumed = got.iter().filter(|r| r.connection > 1).count();
    assert!(resumed >= 3, "{resumed} samples after the outage: {err}");
    for r in &got {
        assert_eq!(r.meter_id, "prometheus-migwatt_power_watts-host-src");
        assert_eq!(r.source_kind.as_deref(), Some("prometheus"));
        assert_eq!(r.source_interval_ns, Some(1_000_000_000));
        assert_eq!(r.energy_counter_j, None);
    }
    // Every value scraped was served, in the order it was served.
    let sent_w: Vec<f64> = sent.iter().filter_map(|r| r.watts()).collect();
    let got_w: Vec<f64> = got.iter().filter_map(|r| r.watts()).collect();
    let (sent_runs, got_runs) = (runs(&sent_w), runs(&got_w));
    let mut it = sent_runs.iter();
    for v in &got_runs {
        assert!(
            it.any(|s| s == v),
            "{v} W scraped but not served next (served {sent_runs:?}, scraped {got_runs:?})"
        );
    }
    assert!(got_runs.len() >= 3, "the bursts should show: {got_runs:?}");
    // The outage is one recorded gap of about its length, nothing bridged.
    let gaps: Vec<&datasets::samples::SampleRow> = got
        .iter()
        .filter(|r| r.flags & datasets::samples::FLAG_AFTER_GAP != 0)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}\n{err}");
    let gap_s = gaps[0].gap_before_ns.unwrap() as f64 / 1e9;
    assert!(gap_s >= 4.0, "gap of {gap_s} s");
    assert!(gaps[0].connection > 1);
    assert!(err.contains("gap of"), "{err}");
}

#[test]
fn prometheus_bad_answers_are_clear_errors() {
    // An exporter that is up but does not have the series.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut exporter = spawn_exporter(&dir.path().join("served"), port);
    let out = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(dir.path().join("scraped"))
        .args([
            "--source",
            &format!(
                "p=prometheus+http://127.0.0.1:{port}/metrics?metric=migwatt_power_watts&host=nope"
            ),
            "--duration",
            "6s",
        ])
        .output()
        .unwrap();
    interrupt(&exporter);
    exporter.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migwatt_power_watts{host=\"nope\"}") && err.contains("labels"),
        "{err}"
    );
    // A port where nothing listens.
    let out = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(dir.path().join("scraped2"))
        .args([
            "--source",
            &format!(
                "p=prometheus+http://127.0.0.1:{}/metrics?metric=a",
                free_port()
            ),
            "--duration",
            "2s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting"), "{err}");
}

#[test]
fn info_names_any_source_and_takes_one_reading() {
    let cap = Powercap::new();
    cap.set(5_000_000);
    let out = Command::new(bin())
        .args(["meter", "info", "--format", "json", "--source"])
        .arg(format!("rapl:{}", cap.class.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "rapl");
    assert_eq!(v["measures"], "energy_counter");
    assert_eq!(v["identity"]["meter_id"], "rapl-package-0");
    assert_eq!(v["energy_counter_j"], 5.0);
    let out = Command::new(bin())
        .args(["meter", "info", "--source", "rapl:/nonexistent/powercap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/powercap"), "{err}");
}

/// sushy-tools' static Redfish emulator serving a copy of tests/data/redfish-mockup.
struct Sushy {
    child: std::process::Child,
}

impl Sushy {
    fn start(bin: &Path, mockup: &Path, port: u16) -> Self {
        // It serves GET /redfish/v1/PATH from DIR/PATH/index.json.
        let child = Command::new(bin)
            .args(["--interface", "127.0.0.1", "--port", &port.to_string()])
            .arg("--mockup-files")
            .arg(mockup.join("redfish/v1"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sushy-static");
        wait_until("sushy-static answers", || {
            let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        Sushy { child }
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Set the chassis' power as the BMC would show it (whole file, renamed into place).
fn set_power_control(mockup: &Path, watts: f64) {
    let f = mockup.join("redfish/v1/Chassis/1/Power/index.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    doc["PowerControl"][0]["PowerConsumedWatts"] = serde_json::json!(watts);
    let tmp = f.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, &f).unwrap();
}

/// Needs sushy-tools (scripts/setup-python.sh installs it into .venv; scripts/test-all.sh
/// runs this with MIGWATT_SUSHY_STATIC set).
#[test]
#[ignore]
fn redfish_chassis_power_value_by_value_with_an_outage_and_no_credential_leaks() {
    let sushy_bin = PathBuf::from(
        std::env::var("MIGWATT_SUSHY_STATIC").expect("MIGWATT_SUSHY_STATIC=path/to/sushy-static"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mockup = dir.path().join("mockup");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/redfish-mockup"),
        &mockup,
    );
    set_power_control(&mockup, 300.0);
    let secret = "calvin-s3cret";
    let creds = dir.path().join("bmc.cred");
    std::fs::write(&creds, format!("root:{secret}\n")).unwrap();
    let port = free_port();
    let sushy = Sushy::start(&sushy_bin, &mockup, port);
    // Power steps by 1 W every 200 ms: every value read must be one served, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (stop, mockup) = (stop.clone(), mockup.clone());
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                set_power_control(&mockup, 300.0 + f64::from(k));
                std::thread::sleep(Duration::from_millis(200));
            }
            k
        })
    };
    let data = dir.path().join("data");
    let base = format!("redfish+http://127.0.0.1:{port}/redfish/v1/Chassis");
    let capture = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(&data)
        .arg("--source")
        .arg(format!("old={base}/1?credentials={}", creds.display()))
        .arg("--source")
        .arg(format!("new={base}/2"))
        .args(["--flush-every", "1s"])
        .env("MIGWATT_REDFISH_USERNAME", "root")
        .env("MIGWATT_REDFISH_PASSWORD", secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    drop(sushy);
    std::thread::sleep(Duration::from_secs(4));
    let sushy = Sushy::start(&sushy_bin, &mockup, port);
    std::thread::sleep(Duration::from_secs(8));
    interrupt(&capture);
    let out = capture.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    let last_k = driver.join().unwrap();
    drop(sushy);
    let err = String::from_utf8_lossy(&out.stderr);
    // A clean stop after SIGINT.
    assert_eq!(out.status.code(), Some(130), "{err}");

    let rows = datasets::samples::read_samples(&data).unwrap();
    let old: Vec<_> = rows.iter().filter(|r| r.host == "old").collect();
    let new: Vec<_> = rows.iter().filter(|r| r.host == "new").collect();
    assert!(
        old.len() >= 8 && new.len() >= 8,
        "{} {}: {err}",
        old.len(),
        new.len()
    );
    assert_eq!(old[0].meter_id, "redfish-Contoso-3500RX-437XR1138R2-1");
    assert_eq!(
        new[0].meter_id,
        "redfish-Contoso-Enclosure_9000-1337BLADE-2"
    );
    assert!(old
        .iter()
        .all(|r| r.source_kind.as_deref() == Some("redfish")));
    // Chassis 1 (Power resource): each value one the test served, never going back.
    let mut prev = 0.0;
    for r in &old {
        let w = r.watts().unwrap();
        let k = w - 300.0;
        assert!(
            k.fract() == 0.0 && (0.0..=f64::from(last_k)).contains(&k),
            "{w}"
        );
        assert!(w >= prev, "{w} after {prev}");
        prev = w;
    }
    // Chassis 2 (EnvironmentMetrics).
    assert!(new.iter().all(|r| r.watts() == Some(1012.5)));
    // The outage is one gap on each chassis.
    for (host, s) in [("old", &old), ("new", &new)] {
        let gaps: Vec<_> = s
            .iter()
            .filter(|r| r.flags & datasets::samples::FLAG_AFTER_GAP != 0)
            .collect();
        assert_eq!(gaps.len(), 1, "{host}: {err}");
        assert!(gaps[0].gap_before_ns.unwrap() >= 3_000_000_000, "{host}");
    }
    // The password is nowhere: not in messages, not in any file written.
    assert!(!err.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the password",
            f.display()
        );
    }
}

/// Needs sushy-tools, as above.
#[test]
#[ignore]
fn redfish_bad_answers_and_missing_credentials_are_clear_errors() {
    let sushy_bin = PathBuf::from(
        std::env::var("MIGWATT_SUSHY_STATIC").expect("MIGWATT_SUSHY_STATIC=path/to/sushy-static"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mockup = dir.path().join("mockup");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/redfish-mockup"),
        &mockup,
    );
    std::fs::write(
        mockup.join("redfish/v1/Chassis/1/Power/index.json"),
        r#"{"PowerControl": [{"PowerConsumedWatts": "n/a"}]}"#,
    )
    .unwrap();
    let port = free_port();
    let _sushy = Sushy::start(&sushy_bin, &mockup, port);
    let base = format!("redfish+http://127.0.0.1:{port}/redfish/v1");
    let run = |source: String| {
        let out = Command::new(bin())
            .args(["meter", "capture", "--out-dir"])
            .arg(dir.path().join("data"))
            .args(["--source", &source, "--duration", "3s"])
            .env_remove("MIGWATT_REDFISH_USERNAME")
            .env_remove("MIGWATT_REDFISH_PASSWORD")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(format!("a={base}/Chassis/1"));
    assert!(
        err.contains("/redfish/v1/Chassis/1/Power: power \"n/a\" is not a number"),
        "{err}"
    );
    let err = run(format!("b={base}/Chassis"));
    assert!(
        err.contains("links neither EnvironmentMetrics nor Power"),
        "{err}"
    );
    let missing = dir.path().join("no-such-credentials");
    let err = run(format!(
        "c={base}/Chassis/2?credentials={}",
        missing.display()
    ));
    assert!(err.contains("no-such-credentials"), "{err}");
}

/// The SDR of the simulated BMC's power sensor, sensor 2 of the BMC at 0x20: a full sensor
/// record (type 1) "Pwr Consumption", sensor type Current, unit Watts, reading = 2 * raw
/// (M = 2). Compiled by OpenIPMI's `sdrcomp -r` from:
/// `sdr type 1 / sensor_owner_id 0x20 / sensor_number 2 / entity_id system_board /
/// sensor_type Current / event_reading_type_code 1 / analog_data_format unsigned /
/// base_unit Watts / linearization linear / m 2 / b 0 / sensor_maximum 255 /
/// id_string "Pwr Consumption" / endsdr` (with init_scanning and default_sensor_scan_on).
const POWER_SDR: &str = "01 00 51 01 3a 20 00 02 07 01 45 00 03 01 00 00 00 00 00 00 00 06 \
                         00 00 02 00 00 01 01 00 00 00 00 00 ff 00 00 00 00 00 00 00 00 00 \
                         00 00 00 cf 50 77 72 20 43 6f 6e 73 75 6d 70 74 69 6f 6e";

/// OpenIPMI's `ipmi_sim` serving one BMC over RMCP+ on loopback: user `admin` with the given
/// password, and the "Pwr Consumption" sensor polling its raw value from `dir/power` every
/// 100 ms (W = 2 * raw). It offers no DCMI, so sources fall back to the SDR sensor.
struct IpmiSim {
    child: std::process::Child,
}

impl IpmiSim {
    fn start(dir: &Path, port: u16, password: &str) -> Self {
        let conf = dir.join("lan.conf");
        std::fs::write(
            &conf,
            format!(
                "name \"migwatt\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n\
                 \x20   priv_limit admin\n    allowed_auths_user md5\n    allowed_auths_admin md5\n\
                 \x20   guid a123456789abcdefa123456789abcdef\n  endlan\n\
                 \x20 user 2 true \"admin\" \"{password}\" admin 10 md5\n"
            ),
        )
        .unwrap();
        let sdr: Vec<String> = POWER_SDR
            .split_whitespace()
            .map(|b| format!("0x{b}"))
            .collect();
        let emu = dir.join("sim.emu");
        std::fs::write(
            &emu,
            format!(
                "mc_setbmc 0x20\n\
                 mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n\
                 sensor_add 0x20 0 2 0x03 0x01 poll 100 file \"{}\"\n\
                 main_sdr_add 0x20 {}\n\
                 sensor_set_event_support 0x20 0 2 enable scanning per-state \
                 000000000000000 000000000000000 000000000000000 000000000000000\n\
                 mc_enable 0x20\n",
                dir.join("power").display(),
                sdr.join(" ")
            ),
        )
        .unwrap();
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let sim = std::env::var("MIGWATT_IPMI_SIM").unwrap_or_else(|_| "ipmi_sim".into());
        let child = Command::new(sim)
            .arg("-c")
            .arg(&conf)
            .arg("-f")
            .arg(&emu)
            .arg("-s")
            .arg(&state)
            .arg("-n")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ipmi_sim");
        wait_until("ipmi_sim answers", || {
            let ok = Command::new("ipmitool")
                .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
                .args([
                    "-U", "admin", "-E", "-C", "3", "-N", "1", "-R", "1", "mc", "guid",
                ])
                .env("IPMI_PASSWORD", password)
                .stdin(std::process::Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(200));
            }
            ok
        });
        IpmiSim { child }
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set the simulated sensor's raw value (whole file, renamed into place).
fn set_raw_power(dir: &Path, raw: u32) {
    let tmp = dir.join("power.tmp");
    std::fs::write(&tmp, format!("{raw}\n")).unwrap();
    std::fs::rename(&tmp, dir.join("power")).unwrap();
}

/// A UDP port free on loopback right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether any process' command line holds `secret` (ipmitool must get it another way).
fn secret_on_a_command_line(secret: &str) -> Option<String> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            if b.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                return Some(String::from_utf8_lossy(&b).replace('\0', " "));
            }
        }
    }
    None
}

#[test]
#[ignore = "needs ipmi_sim and ipmitool (Debian openipmi and ipmitool: scripts/setup-ipmi.sh); \
            scripts/test-all.sh runs it"]
fn ipmi_sensor_power_value_by_value_with_an_outage_and_no_credential_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("bmc");
    std::fs::create_dir_all(&sim_dir).unwrap();
    let secret = "ipmi-S3cret-pw";
    set_raw_power(&sim_dir, 100);
    let port = free_udp_port();
    let sim = IpmiSim::start(&sim_dir, port, secret);
    let creds = dir.path().join("bmc.cred");
    std::fs::write(&creds, format!("admin:{secret}\n")).unwrap();
    // Power steps by 2 W every 300 ms: every value read must be one served, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (stop, sim_dir) = (stop.clone(), sim_dir.clone());
        std::thread::spawn(move || {
            let mut raw = 100;
            while !stop.load(Ordering::Relaxed) {
                raw = (raw + 1).min(255);
                set_raw_power(&sim_dir, raw);
                std::thread::sleep(Duration::from_millis(300));
            }
            raw
        })
    };
    let data = dir.path().join("data");
    let base = format!("ipmi://127.0.0.1:{port}?cipher=3");
    let capture = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(&data)
        .arg("--source")
        .arg(format!("auto={base}"))
        .arg("--source")
        .arg(format!(
            "named={base}&sensor=Pwr%20Consumption&credentials={}",
            creds.display()
        ))
        .args(["--flush-every", "1s"])
        .env("MIGWATT_IPMI_USERNAME", "admin")
        .env("MIGWATT_IPMI_PASSWORD", secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it polls, no command line (ipmitool's included) shows the password.
    let watch_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < watch_until {
        if let Some(cmd) = secret_on_a_command_line(secret) {
            panic!("the password is on a command line: {cmd}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The BMC goes away (SIGKILL) for a while, then comes back.
    drop(sim);
    std::thread::sleep(Duration::from_secs(5));
    let sim = IpmiSim::start(&sim_dir, port, secret);
    std::thread::sleep(Duration::from_secs(10));
    interrupt(&capture);
    let out = capture.wait_with_output().unwrap();
    // One reading through `meter info` too, while the BMC is up.
    let info = Command::new(bin())
        .args(["meter", "info", "--format", "json", "--source"])
        .arg(format!("{base}&credentials={}", creds.display()))
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let last_raw = driver.join().unwrap();
    drop(sim);
    let err = String::from_utf8_lossy(&out.stderr);
    // A clean stop after SIGINT.
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["kind"], "ipmi");
    assert_eq!(v["location"], format!("ipmi://127.0.0.1:{port}"));
    assert_eq!(v["measures"], "power");
    let w = v["power_w"].as_f64().unwrap();
    assert!(w.fract() == 0.0 && (200.0..=510.0).contains(&w), "{w}");

    let rows = datasets::samples::read_samples(&data).unwrap();
    for host in ["auto", "named"] {
        let s: Vec<_> = rows.iter().filter(|r| r.host == host).collect();
        assert!(s.len() >= 8, "{host}: {} samples: {err}", s.len());
        assert!(
            s[0].meter_id.starts_with("ipmi-4753-3842-")
                && s[0].meter_id.ends_with("-sdr-Pwr_Consumption"),
            "{}",
            s[0].meter_id
        );
        let mut prev = 0.0;
        for r in &s {
            assert_eq!(r.source_kind.as_deref(), Some("ipmi"));
            assert_eq!(r.source_interval_ns, Some(1_000_000_000));
            assert_eq!(r.energy_counter_j, None);
            // Each value one the BMC served (2 W per raw step), never going back.
            let w = r.watts().unwrap();
            let raw = w / 2.0;
            assert!(
                raw.fract() == 0.0 && (100.0..=f64::from(last_raw)).contains(&raw),
                "{host}: {w} W"
            );
            assert!(w >= prev, "{host}: {w} W after {prev} W");
            prev = w;
        }
        assert!(prev > s[0].watts().unwrap(), "{host}: power never moved");
        // The outage is one recorded gap of about its length, and capture resumed after it.
        let gaps: Vec<_> = s
            .iter()
            .filter(|r| r.flags & datasets::samples::FLAG_AFTER_GAP != 0)
            .collect();
        assert_eq!(gaps.len(), 1, "{host}: {gaps:?}\n{err}");
        assert!(gaps[0].gap_before_ns.unwrap() >= 4_000_000_000, "{host}");
        assert!(gaps[0].connection > 1, "{host}");
        let resumed = s.iter().filter(|r| r.connection > 1).count();
        assert!(resumed >= 3, "{host}: {resumed} samples after the outage");
    }
    assert!(err.contains("did not answer"), "{err}");
    assert!(
        err.contains("DCMI") || err.contains("Pwr Consumption"),
        "{err}"
    );
    // The password is nowhere: not in messages, not in any file written.
    assert!(!err.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
    assert!(!String::from_utf8_lossy(&info.stdout).contains(secret));
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the password",
            f.display()
        );
    }
}

#[test]
#[ignore = "needs ipmi_sim and ipmitool (Debian openipmi and ipmitool: scripts/setup-ipmi.sh); \
            scripts/test-all.sh runs it"]
fn ipmi_bad_credentials_sensors_and_silent_bmcs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("bmc");
    std::fs::create_dir_all(&sim_dir).unwrap();
    let secret = "right-S3cret";
    set_raw_power(&sim_dir, 120);
    let port = free_udp_port();
    let _sim = IpmiSim::start(&sim_dir, port, secret);
    let run = |source: String, password: &str| {
        let out = Command::new(bin())
            .args(["meter", "capture", "--out-dir"])
            .arg(dir.path().join("data"))
            .args(["--source", &source, "--duration", "3s"])
            .env("MIGWATT_IPMI_USERNAME", "admin")
            .env("MIGWATT_IPMI_PASSWORD", password)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let base = format!("ipmi://127.0.0.1:{port}?cipher=3");
    let wrong = "wrong-Passw0rd";
    let err = run(format!("a={base}"), wrong);
    assert!(
        err.contains("authentication refused")
            && err.contains("RAKP 2 HMAC is invalid")
            && err.contains("MIGWATT_IPMI_USERNAME/MIGWATT_IPMI_PASSWORD"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !err.contains(secret), "{err}");
    let err = run(format!("b={base}&sensor=Inlet%20Power"), secret);
    assert!(
        err.contains("no sensor \"Inlet Power\" in the SDR repository")
            && err.contains("\"Pwr Consumption\""),
        "{err}"
    );
    let err = run(
        format!("c=ipmi://127.0.0.1:{}?cipher=3", free_udp_port()),
        secret,
    );
    assert!(err.contains("the BMC did not answer"), "{err}");
    let out = Command::new(bin())
        .args(["meter", "info", "--source", &base])
        .env("MIGWATT_IPMI_USERNAME", "admin")
        .env("MIGWATT_IPMI_PASSWORD", secret)
        .env("MIGWATT_IPMITOOL", dir.path().join("no-such-ipmitool"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-ipmitool") && err.contains("apt-get install ipmitool"),
        "{err}"
    );
}
