//! End-to-end tests of `migwatt calibrate ingest` and `calibrate windows` on the example
//! logs of calibrate/tests/data.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use datasets::migrations::read_migrations;
use datasets::rounds::read_rounds;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("calibrate/tests/data")
        .join(name)
}

fn migwatt() -> Command {
    Command::cargo_bin("migwatt").unwrap()
}

#[test]
fn xen_log_to_parquet_then_windows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let res = migwatt()
        .args(["calibrate", "ingest", "xen"])
        .arg(data("xen3-xend.log"))
        .arg(data("xen4-xl.log"))
        .args(["--workload", "h2", "--source-host", "a", "--dest-host", "b"])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let rows = read_migrations(&out.join("migrations")).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.workload.as_deref() == Some("h2")));
    assert_eq!(rows.iter().filter(|r| r.hypervisor == "xen3").count(), 2);
    let rounds = read_rounds(&out.join("rounds")).unwrap();
    let total: u32 = rows.iter().map(|r| r.rounds).sum();
    assert_eq!(rounds.len(), total as usize);

    let w = dir.path().join("windows.parquet");
    let res = migwatt()
        .args(["calibrate", "windows", "--migrations"])
        .arg(out.join("migrations"))
        .arg("--out")
        .arg(&w)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let windows = datasets::windows::read_windows(&w).unwrap();
    assert_eq!(windows.len(), 6);
    assert!(windows
        .iter()
        .any(|x| x.host == "a" && x.role == datasets::windows::Role::Source));
    assert!(windows
        .iter()
        .any(|x| x.host == "b" && x.role == datasets::windows::Role::Destination));
}

#[test]
fn libvirt_log_as_json_lines_on_stdout() {
    let res = migwatt()
        .args([
            "calibrate",
            "ingest",
            "libvirt",
            "--file-type",
            "jsonl",
            "--vm",
            "web1",
        ])
        .arg(data("libvirt-domjobinfo.txt"))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(res.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let migrations: Vec<_> = lines
        .iter()
        .filter(|v| v["dataset"] == "migrations")
        .collect();
    assert_eq!(migrations.len(), 2);
    assert_eq!(migrations[0]["vm"], "web1");
    assert_eq!(migrations[1]["converged"], false);
    let rounds = lines.iter().filter(|v| v["dataset"] == "rounds").count();
    assert_eq!(
        rounds as u64,
        migrations
            .iter()
            .map(|m| m["rounds"].as_u64().unwrap())
            .sum::<u64>()
    );
}

#[test]
fn recorded_qemu_log_ingests_with_the_collector_labels() {
    let dir = tempfile::tempdir().unwrap();
    let res = migwatt()
        .args(["calibrate", "ingest", "qemu"])
        .arg(data("qemu-dirty2048.qmp.jsonl"))
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let rows = read_migrations(&dir.path().join("migrations")).unwrap();
    assert_eq!(rows[0].workload.as_deref(), Some("dirty2048"));
    assert_eq!(rows[0].t_down_method, "guest_stop_resume");
    let rounds = read_rounds(&dir.path().join("rounds")).unwrap();
    let sum: u64 = rounds.iter().map(|r| r.sent_bytes).sum();
    assert_eq!(sum, rows[0].v_mig_bytes);
}

#[test]
fn malformed_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.log");
    let mut text = std::fs::read_to_string(data("xen3-xend.log")).unwrap();
    text.insert_str(0, "delta 12xms, dom0 nonsense\n");
    std::fs::write(&log, text).unwrap();
    let res = migwatt()
        .args(["calibrate", "ingest", "xen", "--file-type", "jsonl"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("bad.log:1:") && err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn a_log_without_a_complete_migration_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cut.txt");
    let text = std::fs::read_to_string(data("libvirt-domjobinfo.txt")).unwrap();
    let cut = &text[..text.find("Completed").unwrap()];
    std::fs::write(&log, cut).unwrap();
    let res = migwatt()
        .args(["calibrate", "ingest", "libvirt", "--out-dir"])
        .arg(dir.path().join("out"))
        .arg(&log)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("cut.txt") && err.contains("no complete migration"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn parquet_output_needs_a_folder() {
    let res = migwatt()
        .args(["calibrate", "ingest", "xen"])
        .arg(data("xen3-xend.log"))
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--out"));
}
