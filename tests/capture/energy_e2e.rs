//! End to end: two emulated meters play power traces with known bursts over real
//! pseudo-terminals -> `meter capture` -> `meter baseline` -> `integrate`; every burst's
//! energy must come out within the meter's resolution (0.1 W over the window).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use assert_cmd::Command;
use datasets::energy::read_energy;
use datasets::samples::read_samples;
use datasets::windows::{write_windows, Role, WindowRow};

/// Emulated seconds per real second: one record every 0.2 s of host time.
const SPEED: f64 = 5.0;

/// A running `meter emulate`, killed (by its own pid) when dropped.
struct Emulator {
    child: Child,
    link: PathBuf,
    sent_log: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn emulate(dir: &Path, name: &str, trace: &[(f64, f64)]) -> Emulator {
    let csv = dir.join(format!("{name}.csv"));
    let mut text = String::from("time_s,watts\n");
    for (t, w) in trace {
        text.push_str(&format!("{t},{w}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let link = dir.join(format!("{name}.tty"));
    let sent_log = dir.join(format!("{name}.sent.jsonl"));
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("migwatt"))
        .args(["meter", "emulate", "--speed", &SPEED.to_string()])
        .arg("--profile")
        .arg(format!("trace:{}", csv.display()))
        .arg("--link")
        .arg(&link)
        .arg("--sent-log")
        .arg(&sent_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first stdout line (the device path) means the pty is ready.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.trim().is_empty(), "emulator printed no device path");
    Emulator {
        child,
        link,
        sent_log,
    }
}

/// Idle, then trapezoid bursts (2 s ramps: the meter's per-interval mean of a linear ramp is
/// exact). Each burst is (start, peak W, plateau s); its energy above idle is
/// (peak - idle) x (plateau + 2) emulated J.
fn trace(idle_w: f64, bursts: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts = vec![(0.0, idle_w)];
    for &(start, peak, plateau) in bursts {
        pts.extend([
            (start, idle_w),
            (start + 2.0, peak),
            (start + 2.0 + plateau, peak),
            (start + 4.0 + plateau, idle_w),
        ]);
    }
    pts.push((1000.0, idle_w));
    pts
}

/// Whether an emulator's sent log has a delivered record at `t_s` emulated seconds or later.
fn sent_past(sent_log: &Path, t_s: f64) -> bool {
    std::fs::read_to_string(sent_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["t_s"].as_f64().is_some_and(|t| t >= t_s))
}

/// Map emulated seconds to host UTC ns for one host: the captured samples, in order, are the
/// records the emulator sent intact (sent log), so the sample nearest in emulated time wins.
fn clock(samples: &[(i64, f64)], sent_log: &Path) -> impl Fn(f64) -> i64 {
    let sent: Vec<(f64, f64)> = std::fs::read_to_string(sent_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["delivered"] == true && v["fault"] == "none")
        .map(|v| (v["t_s"].as_f64().unwrap(), v["watts"].as_f64().unwrap()))
        .collect();
    let offset = (0..=10usize)
        .find(|&d| {
            samples
                .iter()
                .zip(sent.iter().skip(d))
                .all(|((_, w), (_, sw))| (w - sw).abs() < 1e-6)
        })
        .expect("captured samples match the records the emulator sent");
    let pairs: Vec<(f64, i64)> = samples
        .iter()
        .zip(sent.iter().skip(offset))
        .map(|((utc, _), (t_s, _))| (*t_s, *utc))
        .collect();
    move |t_emulated: f64| {
        pairs
            .iter()
            .min_by(|a, b| {
                (a.0 - t_emulated)
                    .abs()
                    .total_cmp(&(b.0 - t_emulated).abs())
            })
            .unwrap()
            .1
    }
}

#[test]
fn emulated_bursts_come_out_with_their_energy() {
    let d = tempfile::tempdir().unwrap();
    // (start s, peak W, plateau s) in emulated time; both hosts idle before 60 s.
    let src_bursts = [(60.0, 150.0, 16.0), (100.0, 130.0, 11.0)];
    let dst_bursts = [(61.0, 160.0, 13.0), (101.0, 110.0, 8.0)];
    let src = emulate(d.path(), "src", &trace(100.0, &src_bursts));
    let dst = emulate(d.path(), "dst", &trace(80.0, &dst_bursts));
    let samples_dir = d.path().join("samples");
    // Capture until both emulators have sent past the last window (125 s emulated: about
    // 25 s of real time on a quiet machine), then stop it as a user would, with Ctrl-C. A
    // fixed duration would not do: on a loaded machine the emulators fall behind.
    let mut capture = StdCommand::new(assert_cmd::cargo::cargo_bin("migwatt"))
        .args(["meter", "capture", "--duration", "10m"])
        .arg("--port")
        .arg(format!("src={}", src.link.display()))
        .arg("--port")
        .arg(format!("dst={}", dst.link.display()))
        .arg("--out-dir")
        .arg(&samples_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !sent_past(&src.sent_log, 125.0) || !sent_past(&dst.sent_log, 125.0) {
        assert!(
            capture.try_wait().unwrap().is_none(),
            "capture ended before the emulators reached 125 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // One more record each, so that the last one before 125 s is captured too.
    std::thread::sleep(std::time::Duration::from_millis(600));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(capture.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(
        capture.wait().unwrap().code(),
        Some(130),
        "capture stops cleanly after Ctrl-C"
    );
    let (src_log, dst_log) = (src.sent_log.clone(), dst.sent_log.clone());
    drop(src);
    drop(dst);

    let rows = read_samples(&samples_dir).unwrap();
    let of = |host: &str| -> Vec<(i64, f64)> {
        rows.iter()
            .filter(|r| r.host == host)
            .map(|r| (r.utc_ns, r.watts().unwrap()))
            .collect()
    };
    let src_clock = clock(&of("src"), &src_log);
    let dst_clock = clock(&of("dst"), &dst_log);

    // P_0 from the longest stable stretch: the idle lead-in (about 10 s of host time).
    let mut baselines = Vec::new();
    for (host, idle) in [("src", 100.0), ("dst", 80.0)] {
        let out = d.path().join(format!("{host}.json"));
        Command::cargo_bin("migwatt")
            .unwrap()
            .args(["meter", "baseline", "--host", host, "--min-seconds", "5"])
            .arg("--samples-dir")
            .arg(&samples_dir)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let b: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let p0 = b["p0_watts"].as_f64().unwrap();
        assert!((p0 - idle).abs() < 0.05, "{host}: P_0 {p0}, idle {idle}");
        baselines.push(out);
    }

    // Windows around each burst, with idle margins, in host time.
    let window =
        |id: &str, host: &str, role, a: f64, b: f64, clock: &dyn Fn(f64) -> i64| WindowRow {
            migration_id: id.into(),
            host: host.into(),
            role,
            start_utc_ns: clock(a),
            end_utc_ns: clock(b),
            v_mig_bytes: 1 << 30,
            workload: Some("idle".into()),
            vm: Some("vm1".into()),
            vm_mem_bytes: Some(1 << 30),
        };
    let windows = vec![
        window("A", "src", Role::Source, 55.0, 85.0, &src_clock),
        window("A", "dst", Role::Destination, 56.0, 84.0, &dst_clock),
        window("B", "src", Role::Source, 95.0, 120.0, &src_clock),
        window("B", "dst", Role::Destination, 96.0, 118.0, &dst_clock),
    ];
    let windows_file = d.path().join("windows.parquet");
    write_windows(&windows_file, &windows).unwrap();

    // Known energies in host joules: emulated J / SPEED.
    let burst_j =
        |idle: f64, (_, peak, plateau): (f64, f64, f64)| (peak - idle) * (plateau + 2.0) / SPEED;
    let expected = [
        (burst_j(100.0, src_bursts[0]), burst_j(80.0, dst_bursts[0])),
        (burst_j(100.0, src_bursts[1]), burst_j(80.0, dst_bursts[1])),
    ];
    for rule in ["trapezoid", "rectangle"] {
        let out = d.path().join(format!("energy-{rule}.parquet"));
        Command::cargo_bin("migwatt")
            .unwrap()
            .args(["integrate", "--rule", rule])
            .arg("--samples-dir")
            .arg(&samples_dir)
            .arg("--windows")
            .arg(&windows_file)
            .arg("--baseline")
            .args(&baselines)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let obs = read_energy(&out).unwrap();
        assert_eq!(obs.len(), 2, "{rule}: {obs:?}");
        for (o, (e_src, e_dst)) in obs.iter().zip(expected) {
            // The meter's resolution (0.1 W) over the window, plus what late host stamps can
            // shift: the burst height times the worst deviation of a sample spacing from
            // the nominal 1/SPEED s (a fraction of a ms on a quiet machine, more under load).
            let tol = |w: &WindowRow| {
                let stamps: Vec<i64> = of(&w.host)
                    .iter()
                    .map(|s| s.0)
                    .filter(|&t| t >= w.start_utc_ns && t <= w.end_utc_ns)
                    .collect();
                let jitter_s = stamps
                    .windows(2)
                    .map(|p| ((p[1] - p[0]) as f64 / 1e9 - 1.0 / SPEED).abs())
                    .fold(0.0, f64::max);
                let height_w = if w.host == "src" { 50.0 } else { 80.0 };
                0.1 * (w.end_utc_ns - w.start_utc_ns) as f64 / 1e9 + 2.0 * height_w * jitter_s
            };
            let (ws, wd) = match o.migration_id.as_str() {
                "A" => (&windows[0], &windows[1]),
                _ => (&windows[2], &windows[3]),
            };
            eprintln!(
                "{rule} {}: source {:.3} J (expected {e_src:.3} +- {:.3}), destination {:.3} J \
                 (expected {e_dst:.3} +- {:.3})",
                o.migration_id,
                o.e_source_j,
                tol(ws),
                o.e_destination_j,
                tol(wd)
            );
            assert!(
                (o.e_source_j - e_src).abs() <= tol(ws),
                "{rule} {}: source {} J, expected {e_src} J +- {}",
                o.migration_id,
                o.e_source_j,
                tol(ws)
            );
            assert!(
                (o.e_destination_j - e_dst).abs() <= tol(wd),
                "{rule} {}: destination {} J, expected {e_dst} J +- {}",
                o.migration_id,
                o.e_destination_j,
                tol(wd)
            );
            assert!((o.e_mig_j - o.e_source_j - o.e_destination_j).abs() < 1e-9);
            assert_eq!(o.coverage, 1.0);
        }
    }
}
