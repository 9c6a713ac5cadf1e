//! `migwatt datasets check`: real datasets written by the real binary pass; broken files are
//! reported with file, row, column and what was expected, and the exit status is 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use datasets::rounds::{read_rounds, write_rounds_file};

fn migwatt() -> Command {
    Command::cargo_bin("migwatt").unwrap()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// migrations/ and rounds/ of a recorded real QEMU migration, through `calibrate ingest`.
fn ingested(dir: &Path) -> PathBuf {
    let out = dir.join("campaign");
    let res = migwatt()
        .args(["calibrate", "ingest", "qemu"])
        .arg(data("calibrate/tests/data/qemu-dirty2048.qmp.jsonl"))
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

fn check(path: &Path, extra: &[&str]) -> (i32, String, String) {
    let res = migwatt()
        .args(["datasets", "check"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    (
        res.status.code().unwrap(),
        String::from_utf8_lossy(&res.stdout).into_owned(),
        String::from_utf8_lossy(&res.stderr).into_owned(),
    )
}

#[test]
fn datasets_written_by_migwatt_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ingested(tmp.path());
    let (code, stdout, stderr) = check(&out, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.ends_with("2 file(s), 11 row(s) (migrations, rounds): 0 violation(s)\n"),
        "{stdout}"
    );
}

#[test]
fn unsorted_duplicate_and_wrong_unit_rows_are_reported_with_row_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ingested(tmp.path());
    let rounds_dir = out.join("rounds");
    let mut rows = read_rounds(&rounds_dir).unwrap();
    assert!(rows.len() >= 3);
    // Row 0 and 1 swap (unsorted), the last row repeats row 1's key, and row 2's start is in
    // seconds instead of ns.
    rows.swap(0, 1);
    let mut dup = rows[1].clone();
    dup.sent_bytes += 1;
    rows.push(dup);
    rows[2].start_utc_ns = rows[2].start_utc_ns.map(|t| t / 1_000_000_000);
    let bad = tmp.path().join("bad");
    write_rounds_file(&bad.join("rounds.parquet"), &rows).unwrap();
    let (code, stdout, _) = check(&bad, &[]);
    assert_eq!(code, 1, "{stdout}");
    let file = bad.join("rounds.parquet").display().to_string();
    let last = rows.len() - 1;
    assert!(
        stdout.contains(&format!(
            "{file}: row 1: column 'round': not sorted: 1 after 2 at row 0"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{file}: row 2: column 'start_utc_ns': ")),
        "{stdout}"
    );
    assert!(stdout.contains("seconds or ms"), "{stdout}");
    assert!(
        stdout.contains(&format!("{file}: row {last}: duplicate key (migration_id=")),
        "{stdout}"
    );
    assert!(stdout.contains("round=1), first at row 1"), "{stdout}");
    // The appended duplicate is also out of order.
    assert!(
        stdout.contains(&format!(
            "{file}: row {last}: column 'round': not sorted: 1 after"
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("4 violation(s)\n"), "{stdout}");
}

#[test]
fn missing_columns_wrong_types_and_foreign_files_are_reported() {
    let dir = data("tests/data/datasets-check");
    let (code, stdout, _) = check(&dir, &["--json"]);
    assert_eq!(code, 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let problems: Vec<(String, Option<String>, String)> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                x["column"].as_str().map(str::to_string),
                x["problem"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |file: &str, column: Option<&str>, text: &str| {
        problems
            .iter()
            .any(|(f, c, p)| f == file && c.as_deref() == column && p.contains(text))
    };
    assert!(
        has(
            "bad-rounds.parquet",
            Some("round"),
            "type Int64, expected UInt32"
        ),
        "{problems:#?}"
    );
    for c in [
        "duration_s",
        "skipped_pages",
        "dirtied_pages",
        "dirty_rate_bytes_per_s",
        "gamma",
        "last",
    ] {
        assert!(
            has("bad-rounds.parquet", Some(c), "missing"),
            "{c}: {problems:#?}"
        );
    }
    assert!(
        has("foreign.parquet", None, "no 'migwatt.dataset'"),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 8, "{problems:#?}");
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
}

#[test]
fn a_path_without_parquet_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = check(tmp.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("{}: no Parquet files found", tmp.path().display())),
        "{stderr}"
    );
}

#[test]
fn the_shipped_examples_pass() {
    let (code, stdout, stderr) = check(&data("datasets/examples/campaign"), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.ends_with(": 0 violation(s)\n"), "{stdout}");
    for kind in [
        "energy_observations",
        "evaluation",
        "migration_windows",
        "migrations",
        "residuals",
        "rounds",
        "samples",
        "window_quality",
    ] {
        assert!(stdout.contains(kind), "{kind}: {stdout}");
    }
}
