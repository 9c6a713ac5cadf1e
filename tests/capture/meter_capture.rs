//! End to end: emulator -> pseudo-terminal -> `migwatt meter capture` -> Parquet.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Start a capture of one meter in the background (stderr discarded).
fn spawn_capture(data: &std::path::Path, port: &str, extra: &[&str]) -> std::process::Child {
    Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(data)
        .args(["--port", port, "--settle", "50ms"])
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn capture")
}

fn capture(dir: &std::path::Path, ports: &[String], extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(["meter", "capture", "--out-dir"])
        .arg(dir.join("data"));
    for p in ports {
        cmd.args(["--port", p]);
    }
    cmd.args(["--settle", "50ms"]).args(extra);
    cmd.output().expect("run capture")
}

#[test]
fn every_record_arrives_with_its_value_through_every_fault_kind() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=100,peak=150,period=10,burst=3,start=2",
            "--faults",
            "nul=0.1,junk=0.05,truncate=0.05,noprefix=0.05,banner",
            "--seed",
            "7",
        ],
    );
    let port = format!("src={}", emu.path.display());
    let out = capture(dir.path(), &[port], &["--duration", "6s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = emu.stop();
    let want = expected_watts(&sent);
    let got = captured_watts(&dir.path().join("data"), "src");
    assert!(want.len() > 50, "only {} records sent", want.len());
    assert_eq!(got, want);
    // Every deliberately corrupted record was rejected, none became a sample.
    let corrupted = sent
        .iter()
        .filter(|r| r.delivered && (r.fault == "truncate" || r.fault == "noprefix"))
        .count();
    assert!(corrupted > 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rejected truncated") || stderr.contains("rejected lost prefix"),
        "{stderr}"
    );
}

#[test]
fn two_meters_in_one_process_keep_their_own_samples() {
    let dir = tempfile::tempdir().unwrap();
    let a = Emulator::start(
        dir.path(),
        "ma",
        &["--speed", "20", "--profile", "constant:101.5"],
    );
    let b = Emulator::start(
        dir.path(),
        "mb",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=200,peak=260,period=4,burst=1,start=1",
        ],
    );
    let ports = [
        format!("source={}", a.path.display()),
        format!("destination={}", b.path.display()),
    ];
    let out = capture(dir.path(), &ports, &["--duration", "4s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (sa, sb) = (a.stop(), b.stop());
    let data = dir.path().join("data");
    assert_eq!(captured_watts(&data, "source"), expected_watts(&sa));
    assert_eq!(captured_watts(&data, "destination"), expected_watts(&sb));
    assert!(captured_watts(&data, "source").iter().all(|w| *w == 101.5));
    // Both partitions exist and share one clock: their time ranges overlap.
    let rows = datasets::samples::read_samples(&data).unwrap();
    let span = |h: &str| {
        let t: Vec<i64> = rows
            .iter()
            .filter(|r| r.host == h)
            .map(|r| r.utc_ns)
            .collect();
        (*t.first().unwrap(), *t.last().unwrap())
    };
    let (a0, a1) = span("source");
    let (b0, b1) = span("destination");
    assert!(a0 < b1 && b0 < a1);
    assert!(data.join("host=source").is_dir() && data.join("host=destination").is_dir());
}

#[test]
fn stalls_and_unplugs_are_recorded_as_gaps_and_nothing_is_bridged() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &[
            "--speed",
            "5",
            "--profile",
            "constant:150",
            "--faults",
            "stall=4+5,disconnect=14+5",
        ],
    );
    let port = format!("src={}", emu.path.display());
    let report = dir.path().join("report.json");
    let out = capture(
        dir.path(),
        &[port],
        &[
            "--duration",
            "7s",
            "--stall-timeout",
            "600ms",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = emu.stop();
    let data = dir.path().join("data");
    assert_eq!(captured_watts(&data, "src"), expected_watts(&sent));
    let rows = datasets::samples::read_samples(&data).unwrap();
    let gaps: Vec<_> = rows.iter().filter(|r| r.gap_before_ns.is_some()).collect();
    assert!(gaps.len() >= 2, "{} gaps", gaps.len());
    for g in &gaps {
        assert_eq!(g.flags & datasets::samples::FLAG_AFTER_GAP, 1);
        // The stall and the unplug each last 1 s of real time.
        assert!(g.gap_before_ns.unwrap() >= 900_000_000, "{g:?}");
    }
    assert!(rows.iter().any(|r| r.connection >= 3), "reconnected twice");
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rep["gaps"].as_array().unwrap().len(), gaps.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stalled"), "{stderr}");
}

#[test]
fn sigkill_mid_run_loses_nothing_older_than_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=90,peak=140,period=7,burst=2,start=1",
        ],
    );
    let data = dir.path().join("data");
    let mut child = spawn_capture(
        &data,
        &format!("src={}", emu.path.display()),
        &["--flush-every", "500ms", "--segment", "1s"],
    );
    wait_until("100 records sent", || {
        expected_watts(&emu.sent()).len() >= 100
    });
    let before = expected_watts(&emu.sent());
    // Older than the flush interval by the time of the kill.
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let sent = emu.stop();

    // Every Parquet file is readable as it stands.
    for f in datasets::io::parquet_files(&data).unwrap() {
        datasets::samples::read_samples(&f).unwrap();
    }
    let out = Command::new(bin())
        .args(["meter", "recover"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = captured_watts(&data, "src");
    let all = expected_watts(&sent);
    eprintln!(
        "sigkill: {} records sent intact, {} before the flush deadline, {} survived",
        all.len(),
        before.len(),
        got.len()
    );
    assert!(
        got.len() >= before.len(),
        "lost samples: {} < {}",
        got.len(),
        before.len()
    );
    // Survivors are exactly the first records sent, in order, none twice.
    assert_eq!(got[..], all[..got.len()]);
    let rows = datasets::samples::read_samples(&data).unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..rows.len() as u64).collect::<Vec<_>>());
    // Recovery left no journal behind.
    let leftovers = walk(&data)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".wal"))
        .count();
    assert_eq!(leftovers, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_second_capture_on_the_same_meter_is_refused_while_the_first_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "meter0",
        &["--speed", "20", "--profile", "constant:50"],
    );
    let data = dir.path().join("data");
    let mut first = spawn_capture(&data, &format!("a={}", emu.path.display()), &[]);
    wait_until("first capture logging", || {
        expected_watts(&emu.sent()).len() >= 20
    });
    let second = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(dir.path().join("data2"))
        .args([
            "--port",
            &format!("b={}", emu.path.display()),
            "--settle",
            "50ms",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("cannot open"), "{stderr}");
    interrupt(&first);
    assert_eq!(first.wait().unwrap().code(), Some(130));
    let sent = emu.stop();
    assert_eq!(captured_watts(&data, "a"), expected_watts(&sent));
}

#[test]
fn old_19200_baud_meters_are_reached_by_falling_back() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "old",
        &[
            "--speed",
            "20",
            "--profile",
            "constant:75.3",
            "--baud",
            "19200",
        ],
    );
    let report = dir.path().join("report.json");
    let out = capture(
        dir.path(),
        &[format!("old={}", emu.path.display())],
        &["--duration", "6s", "--report", report.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = emu.stop();
    assert!(!expected_watts(&sent).is_empty());
    assert_eq!(
        captured_watts(&dir.path().join("data"), "old"),
        expected_watts(&sent)
    );
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(rep["meters"][0]["baud"], 19200);
}

#[test]
fn sigint_flushes_stops_the_meter_logging_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(
        dir.path(),
        "m",
        &["--speed", "20", "--profile", "constant:60"],
    );
    let data = dir.path().join("data");
    let mut child = spawn_capture(&data, &format!("h={}", emu.path.display()), &[]);
    wait_until("30 records sent", || {
        expected_watts(&emu.sent()).len() >= 30
    });
    interrupt(&child);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let at_exit = emu.sent().len();
    // The meter was told to stop streaming: no record is generated after the capture left.
    std::thread::sleep(Duration::from_millis(500));
    let sent = emu.stop();
    assert_eq!(sent.len(), at_exit);
    assert_eq!(captured_watts(&data, "h"), expected_watts(&sent));
    // Everything is in Parquet: no journal left behind.
    assert!(walk(&data)
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".wal")));
}

#[test]
fn info_reports_the_meter_and_list_runs() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path(), "m", &["--speed", "20"]);
    let out = Command::new(bin())
        .args(["meter", "info", "--format", "json", "--port"])
        .arg(&emu.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"]["model"], 1);
    assert_eq!(info["version"]["fw_major"], 3);
    assert_eq!(info["version"]["fw_minor"], 14);
    assert_eq!(info["meter_id"], "wattsup-PRO-hw5.2-fw3.14-200612211910");
    assert_eq!(info["header"].as_array().unwrap().len(), 18);
    assert_eq!(info["header"][0], "W");
    // `info` does not start logging.
    assert!(emu.stop().is_empty());

    let out = Command::new(bin())
        .args(["meter", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());

    let out = Command::new(bin())
        .args(["meter", "info", "--port", "/dev/does-not-exist"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/does-not-exist"));
}

#[test]
fn sources_of_every_spelling_capture_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let a = Emulator::start(
        dir.path(),
        "ma",
        &["--speed", "20", "--profile", "constant:101.5"],
    );
    let b = Emulator::start(
        dir.path(),
        "mb",
        &[
            "--speed",
            "20",
            "--profile",
            "bursts:idle=200,peak=260,period=4,burst=1,start=1",
            "--faults",
            "nul=0.1,truncate=0.05",
        ],
    );
    let report = dir.path().join("report.json");
    let out = Command::new(bin())
        .args(["meter", "capture", "--out-dir"])
        .arg(dir.path().join("data"))
        .args(["--port", &format!("old={}", a.path.display())])
        .args(["--source", &format!("new=wattsup:{}", b.path.display())])
        .args(["--source", "emu=emulated:constant:123.4"])
        .args(["--settle", "50ms", "--duration", "4s", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let b_path = b.path.display().to_string();
    let (sa, sb) = (a.stop(), b.stop());
    let data = dir.path().join("data");
    // `--port` and `--source NAME=wattsup:` are the same serial path.
    assert_eq!(captured_watts(&data, "old"), expected_watts(&sa));
    assert_eq!(captured_watts(&data, "new"), expected_watts(&sb));
    // The built-in emulator runs at real speed: a few records in 4 s, each exactly as set.
    let emu = captured_watts(&data, "emu");
    assert!(!emu.is_empty() && emu.len() <= 5, "{emu:?}");
    assert!(emu.iter().all(|w| *w == 123.4), "{emu:?}");
    let rows = datasets::samples::read_samples(&data).unwrap();
    assert!(rows
        .iter()
        .filter(|r| r.host == "emu")
        .all(|r| r.meter_id == "wattsup-PRO-hw5.2-fw3.14-200612211910"));

    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let meters = rep["meters"].as_array().unwrap();
    let field = |name: &str, key: &str| {
        meters
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {rep}"))[key]
            .clone()
    };
    assert_eq!(field("old", "kind"), "wattsup");
    assert_eq!(field("new", "kind"), "wattsup");
    assert_eq!(field("emu", "kind"), "emulated");
    assert_eq!(field("new", "device"), b_path);
    assert!(field("emu", "device")
        .as_str()
        .unwrap()
        .starts_with("/dev/pts/"));
    assert!(field("new", "rejected").as_u64().unwrap() > 0, "{rep}");
}

#[test]
fn bad_source_spellings_are_refused_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(["meter", "capture", "--out-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .args(["--duration", "1s"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--source", "src=modbus+tcp://pdu-a/"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--source")
            && err.contains("\"src=modbus+tcp://pdu-a/\": unknown source kind")
            && err.contains("expected wattsup:DEVICE, emulated[:PROFILE]"),
        "{err}"
    );
    let (_, err) = run(&["--source", "src=/dev/ttyUSB0"]);
    assert!(err.contains("wattsup:/dev/ttyUSB0"), "{err}");
    let (_, err) = run(&["--source", "src=emulated:constant:lots"]);
    assert!(err.contains("constant"), "{err}");
    let (code, err) = run(&["--port", "a b=/dev/x"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--port") && err.contains("\"a b=/dev/x\": host name"),
        "{err}"
    );
    let (_, err) = run(&["--port", "/dev/x", "--source", "x=emulated"]);
    assert!(
        err.contains("two sources share the host name \"x\""),
        "{err}"
    );
    // Neither --port nor --source: a usage error.
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--port"), "{err}");
    // Nothing was captured by any of them.
    assert!(!dir.path().join("data").join("host=x").exists());
}
