//! Migrations whose guest memory did not match after the migration (`memory_verified` =
//! false) measured a broken migration: `train energy`, `train gamma` and `evaluate` leave
//! them out by default, say how many and which, and keep them with `--include-mismatched`.
//! Data: the shipped example campaign (real QEMU migrations, real Parquet), with one of its
//! migrations marked mismatched as `calibrate migrate --verify` would mark it.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use datasets::migrations::{read_migrations, write_migrations_file};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/examples/campaign")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A copy of the example campaign's migrations, rounds and energy with one migration marked
/// mismatched (3 pages) and the others verified; returns the folder and the marked id.
fn campaign_with_a_mismatch(d: &Path) -> (PathBuf, String) {
    let c = d.join("campaign");
    copy_dir(&examples().join("rounds"), &c.join("rounds"));
    std::fs::copy(examples().join("energy.parquet"), c.join("energy.parquet")).unwrap();
    let mut rows = read_migrations(&examples().join("migrations")).unwrap();
    // The one with the most rounds (so it has gamma rows; every example has energy).
    let bad = rows
        .iter()
        .max_by_key(|r| r.rounds)
        .unwrap()
        .migration_id
        .clone();
    for r in &mut rows {
        let ok = r.migration_id != bad;
        r.memory_verified = Some(ok);
        r.memory_mismatch_pages = Some(if ok { 0 } else { 3 });
    }
    write_migrations_file(&c.join("migrations/all.parquet"), &rows).unwrap();
    (c, bad)
}

fn run(args: &[&str], paths: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::cargo_bin("migwatt").unwrap();
    cmd.env("MIGWATT_QUIET", "1").args(args);
    for (flag, p) in paths {
        cmd.arg(flag).arg(p);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn rows_used(stdout: &str) -> u64 {
    let f = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote "))
        .expect("a coefficient file");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
    v["fit"]["n_rows"].as_u64().unwrap()
}

#[test]
fn train_leaves_mismatched_migrations_out_and_names_them() {
    let d = tempfile::tempdir().unwrap();
    let (c, bad) = campaign_with_a_mismatch(d.path());
    let models = d.path().join("models");
    for kind in ["gamma", "energy"] {
        let data = if kind == "gamma" {
            c.join("rounds")
        } else {
            c.join("energy.parquet")
        };
        // The migrations/ folder beside the data says which migration did not verify.
        let (ok, out, err) = run(
            &["train", kind, "--name", &format!("{kind}-default")],
            &[("--data", &data), ("--out-dir", &models)],
        );
        assert!(ok, "{err}");
        assert!(
            out.contains("left out: the rows of 1 migration(s) whose guest memory did not match")
                && out.contains(&bad),
            "{kind}: {out}"
        );
        let left_out = rows_used(&out);
        let (ok, out, err) = run(
            &[
                "train",
                kind,
                "--include-mismatched",
                "--name",
                &format!("{kind}-all"),
            ],
            &[
                ("--data", &data),
                ("--out-dir", &models),
                ("--migrations", &c.join("migrations")),
            ],
        );
        assert!(ok, "{err}");
        assert!(
            out.contains("kept on purpose (--include-mismatched)") && out.contains(&bad),
            "{kind}: {out}"
        );
        let all = rows_used(&out);
        assert!(
            all > left_out,
            "{kind}: {all} rows with, {left_out} without"
        );
        if kind == "energy" {
            assert_eq!(all, left_out + 1, "one energy observation per migration");
        }
    }
}

#[test]
fn evaluate_leaves_mismatched_migrations_out_and_names_them() {
    let d = tempfile::tempdir().unwrap();
    let (c, bad) = campaign_with_a_mismatch(d.path());
    let n = read_migrations(&c.join("migrations")).unwrap().len();
    let (ok, out, err) = run(
        &["evaluate", "--refined", "--format", "json"],
        &[("--migrations-dir", &c)],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("1 migration(s) of") && err.contains("left out") && err.contains(&bad),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["migrations"], n - 1);
    assert_eq!(v["mismatched"], serde_json::json!([bad]));
    let (ok, out, err) = run(
        &[
            "evaluate",
            "--refined",
            "--format",
            "json",
            "--include-mismatched",
        ],
        &[("--migrations-dir", &c)],
    );
    assert!(ok, "{err}");
    assert!(err.contains("kept (--include-mismatched)"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["migrations"], n);
}
