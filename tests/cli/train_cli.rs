//! `migwatt train` and `migwatt models` end to end: real files in, coefficient files out,
//! every file written loaded back through the validating loader.

use crate::common;

use assert_cmd::Command;
use predicates::prelude::*;

fn migwatt() -> Command {
    let mut c = Command::cargo_bin("migwatt").unwrap();
    c.env("MIGWATT_QUIET", "1");
    c
}

/// y = 2 x_s + 0.5 z_bytes + 3, a little noise, labelled rows.
fn write_csv(path: &std::path::Path, rows: usize) {
    let mut s = String::from("y_j,x_s,z_bytes,workload\n");
    for i in 0..rows {
        let x = (i % 17) as f64 * 0.7 + 1.0;
        let z = ((i * 7919) % 101) as f64 * 3.0;
        let noise = (((i * 2654435761) % 1000) as f64 / 1000.0 - 0.5) * 0.01;
        let w = if i % 3 == 0 { "h2" } else { "fop" };
        s += &format!("{},{x},{z},{w}\n", 2.0 * x + 0.5 * z + 3.0 + noise);
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn train_linear_then_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("obs.csv");
    write_csv(&data, 200);
    let models = dir.path().join("models");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "train",
            "linear",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_j",
            "--features",
            "x_s,z_bytes",
            "--out-dir",
            models.to_str().unwrap(),
            "--name",
            "m",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    migwatt()
        .args(args(&[]))
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote").and(predicate::str::contains("m/v1.json")));
    let out = migwatt()
        .args(args(&["--filter", "workload=h2", "--format", "json"]))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["model"]["version"], 2);
    assert_eq!(v[0]["fit"]["n_rows"], 67);
    let b = v[0]["coefficients"][0]["estimate"].as_f64().unwrap();
    assert!((b - 2.0).abs() < 1e-3, "{b}");
    assert_eq!(v[0]["coefficients"][0]["unit"], "J/s");
    assert_eq!(v[0]["coefficients"][1]["unit"], "J/B");
    for n in [1, 2] {
        let f = trainer::coef::load(&models.join(format!("m/v{n}.json"))).unwrap();
        assert_eq!(f.model.version, n);
        assert!(models.join(format!("m/v{n}.residuals.parquet")).is_file());
    }
    assert_eq!(common::validate_coefficient_files(&models), 2);
    migwatt()
        .args(["models", "list", models.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("m ").and(predicate::str::contains("v2")));
    let out = migwatt()
        .args([
            "models",
            "list",
            models.to_str().unwrap(),
            "--format",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["versions"], serde_json::json!([1, 2]));
    migwatt()
        .args(["models", "show", models.join("m").to_str().unwrap()])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("y_j [J] =")
                .and(predicate::str::contains("R^2"))
                .and(predicate::str::contains("sha256"))
                .and(predicate::str::contains("workload=h2")),
        );
}

#[test]
fn refusals_are_clear_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("obs.csv");
    write_csv(&data, 30);
    let models = dir.path().join("models");
    let run = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "linear",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_j",
            "--out-dir",
            models.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        migwatt().args(a).assert().failure()
    };
    run(&["--features", "x_s", "--filter", "workload=none"])
        .stderr(predicate::str::contains("matched none of the 30 rows"));
    run(&["--features", "x_s,nope"]).stderr(predicate::str::contains("no column 'nope'"));
    run(&["--features", "x_s", "--filter", "workload"])
        .stderr(predicate::str::contains("filter 'workload'"));
    run(&["--features", "x_s,x_s"]).stderr(predicate::str::contains("listed twice"));
    assert!(!models.exists() || std::fs::read_dir(&models).unwrap().next().is_none());
    // A future major version is refused, naming both versions.
    let f = dir.path().join("v1.json");
    std::fs::write(&f, r#"{"schema_version": "7.0.0"}"#).unwrap();
    migwatt()
        .args(["models", "show", f.to_str().unwrap()])
        .assert()
        .failure()
        .stderr(predicate::str::contains("7.0.0").and(predicate::str::contains("1.x")));
}
