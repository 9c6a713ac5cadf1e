//! End-to-end tests of `migwatt predict`, `migwatt rank` and `migwatt evaluate` (issue 6).

use crate::common;

use std::path::Path;

use assert_cmd::Command;
use datasets::migrations::{write_migrations_file, MigrationRow};
use datasets::rounds::{write_rounds_file, RoundRow};
use serde_json::{json, Value};

fn migwatt() -> Command {
    Command::cargo_bin("migwatt").unwrap()
}

/// The paper's models as coefficient files (paper units: MB, MB/s).
fn paper_models(dir: &Path) {
    let var = |c: &str, s: &str, u: &str| json!({"column": c, "symbol": s, "unit": u, "min": 0.0, "max": 1.0, "mean": 0.5});
    let coef = |n: &str, f: Option<&str>, u: &str, e: f64| json!({"name": n, "feature": f, "unit": u, "estimate": e, "std_error": null, "t_value": null, "ci95_low": null, "ci95_high": null});
    let file = |kind: &str, name: &str, target: Value, features: Vec<Value>, coefs: Vec<Value>| {
        let k = coefs.len() as u64;
        json!({
            "schema_version": "1.0.0",
            "model": {"kind": kind, "name": name, "version": 1, "id": format!("{name}/v1/000000000000")},
            "equation": "paper", "target": target, "features": features, "intercept": true,
            "coefficients": coefs,
            "fit": {"method": "paper", "n_rows": 10, "n_parameters": k, "df_residual": 10 - k,
                    "r_squared": 0.9, "r_squared_kind": "centered", "adjusted_r_squared": 0.9,
                    "residual_sd": 0.0, "rmse": 0.0, "mae": 0.0, "mape_percent": null,
                    "condition_number": 1.0, "cross_validation": null},
            "provenance": {"inputs": [{"path": "paper", "sha256": "0".repeat(64), "rows": 10, "rows_used": 10}],
                           "filters": [], "rows_read": 10, "rows_used": 10, "notes": [], "residuals_file": "v1.residuals.parquet"},
            "hardware": {"hosts": [], "cpu_models": [], "memory_bytes": [], "meters": []},
            "toolkit": {"name": "migwatt", "version": "0.1.0"},
            "created_at": "2011-06-08T00:00:00Z"
        })
    };
    let energy = file(
        "energy",
        "energy",
        var("e_mig_j", "E_mig", "J"),
        vec![var("v_mig_mb", "V_mig", "MB")],
        vec![
            coef("alpha", Some("v_mig_mb"), "J/MB", 0.512),
            coef("beta", None, "J", 20.165),
        ],
    );
    let gamma = file(
        "gamma",
        "gamma",
        var("gamma", "gamma", "1"),
        vec![
            var("prev_duration_s", "T_prev", "s"),
            var("d_mb_per_s", "D", "MB/s"),
        ],
        vec![
            coef("omega", Some("prev_duration_s"), "1/s", -0.0463),
            coef("xi", Some("d_mb_per_s"), "s/MB", -0.0001),
            coef("psi", None, "1", 0.3586),
        ],
    );
    std::fs::write(dir.join("energy.json"), energy.to_string()).unwrap();
    std::fs::write(dir.join("gamma.json"), gamma.to_string()).unwrap();
    common::validate_coefficient_file(&dir.join("energy.json"));
    common::validate_coefficient_file(&dir.join("gamma.json"));
}

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn predict_qemu_hand_computed_with_energy() {
    let d = tempfile::tempdir().unwrap();
    paper_models(d.path());
    let v = json_of(
        migwatt()
            .args([
                "predict",
                "--hypervisor",
                "qemu",
                "--vm-mem",
                "100MB",
                "--dirty-rate",
                "5MB/s",
                "--rate",
                "80Mbit/s",
                "--format",
                "json",
                "--energy-model",
            ])
            .arg(d.path().join("energy.json")),
    );
    let p = &v["prediction"];
    // 100 + 50 + ... + 3.125 + 1.5625 MB (see trainer::predict tests).
    let vmig = p["v_mig_bytes"].as_f64().unwrap();
    assert!((vmig - 198.4375e6).abs() < 1e-3, "{vmig}");
    // QEMU's default downtime model: (V_dev 400 kB + last round 1.5625 MB) / 10 MB/s + 10 ms.
    assert!((p["t_down_s"].as_f64().unwrap() - 0.20625).abs() < 1e-12);
    let e = p["e_mig_j"].as_f64().unwrap();
    assert!((e - (0.512 * 198.4375 + 20.165)).abs() < 1e-9, "{e}");
    assert_eq!(p["trajectory"].as_array().unwrap().len(), 7);
    assert_eq!(p["converges"], true);
}

#[test]
fn base_model_matches_simulation_through_the_cli() {
    let args = [
        "predict",
        "--hypervisor",
        "xen3",
        "--vm-mem",
        "1GiB",
        "--dirty-rate",
        "60MB/s",
        "--rate",
        "800Mbit/s",
        "--format",
        "json",
    ];
    let sim = json_of(migwatt().args(args));
    let base = json_of(migwatt().args(args).args(["--model", "base"]));
    for k in ["v_mig_bytes", "t_mig_s", "t_down_s"] {
        let (a, b) = (
            sim["prediction"][k].as_f64().unwrap(),
            base["prediction"][k].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-12 * a, "{k}: {a} vs {b}");
    }
    assert_eq!(sim["prediction"]["rounds"], base["prediction"]["rounds"]);
}

#[test]
fn non_converging_is_reported_not_invented() {
    let v = json_of(migwatt().args([
        "predict",
        "--hypervisor",
        "qemu",
        "--vm-mem",
        "128MiB",
        "--dirty-rate",
        "20MB/s",
        "--rate",
        "16MB/s",
        "--format",
        "json",
    ]));
    assert_eq!(v["prediction"]["converges"], false);
    assert_eq!(v["prediction"]["stop"], "never_converges");
    assert!(v["prediction"]["v_mig_bytes"].is_null());
    assert!(v["prediction"]["t_down_s"].is_null());
    // Xen 4 forces stop-and-copy: a cost, flagged as not converging.
    let v = json_of(migwatt().args([
        "predict",
        "--hypervisor",
        "xen4",
        "--vm-mem",
        "128MiB",
        "--dirty-rate",
        "20MB/s",
        "--rate",
        "16MB/s",
        "--format",
        "json",
    ]));
    assert_eq!(v["prediction"]["converges"], false);
    assert_eq!(v["prediction"]["stop"], "diverging");
    assert!(v["prediction"]["v_mig_bytes"].as_f64().unwrap() > 134217728.0);
}

#[test]
fn bad_units_and_models_get_clear_errors() {
    let out = migwatt()
        .args([
            "predict",
            "--hypervisor",
            "qemu",
            "--vm-mem",
            "1XB",
            "--dirty-rate",
            "1MB/s",
            "--rate",
            "10MB/s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--vm-mem") && err.contains("1XB") && err.contains("expected"),
        "{err}"
    );
    let d = tempfile::tempdir().unwrap();
    paper_models(d.path());
    let out = migwatt()
        .args([
            "predict",
            "--hypervisor",
            "qemu",
            "--vm-mem",
            "1GB",
            "--dirty-rate",
            "1MB/s",
            "--rate",
            "10MB/s",
            "--gamma-model",
        ])
        .arg(d.path().join("energy.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected a gamma model"), "{err}");
}

#[test]
fn rank_marks_best_and_puts_non_converging_last() {
    let d = tempfile::tempdir().unwrap();
    paper_models(d.path());
    let csv = d.path().join("vms.csv");
    std::fs::write(
        &csv,
        "vm,vm_mem_bytes,dirty_rate_bytes_per_s\nhot,1073741824,200000000\nbig,8589934592,10000000\nsmall,536870912,10000000\nmid,2147483648,30000000\n",
    )
    .unwrap();
    let mut cmd = migwatt();
    cmd.args(["rank", "--vms"])
        .arg(&csv)
        .args([
            "--weights",
            "0.25,0.25,0.25,0.25",
            "--rate",
            "1Gbit/s",
            "--format",
            "json",
        ])
        .arg("--energy-model")
        .arg(d.path().join("energy.json"))
        .arg("--gamma-model")
        .arg(d.path().join("gamma.json"));
    let v = json_of(&mut cmd);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["vm"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["small", "mid", "big", "hot"]);
    assert_eq!(v[0]["best"], true);
    assert_eq!(v[3]["converges"], false);
    assert!(v[3]["cost"].is_null());
    assert!(v[3]["reason"].as_str().unwrap().contains("never converges"));
    let out = migwatt()
        .args(["rank", "--vms"])
        .arg(&csv)
        .args(["--weights", "0.5,0.5,0.5,0", "--rate", "1Gbit/s"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("sum to 1.5"));
}

fn measured(id: &str, start: i64, v0_pages: u64) -> (MigrationRow, Vec<RoundRow>) {
    // A QEMU migration of a 100 MB guest at D/R = 0.5 whose first round sent only v0 pages;
    // `start` counts 100 s steps from 2023-11-14 (timestamps are ns, as the datasets require).
    let start = 1_700_000_000_000_000_000 + start * 100_000_000_000;
    let m = MigrationRow {
        migration_id: id.into(),
        hypervisor: "qemu".into(),
        vm: "vm1".into(),
        workload: Some("w".into()),
        vm_mem_bytes: 100_000_000,
        page_size_bytes: 4096,
        start_utc_ns: Some(start),
        end_utc_ns: Some(start + 10_000_000_000),
        t_mig_s: 10.0,
        t_down_s: Some(0.1),
        t_down_method: "guest_stop_resume".into(),
        t_down_reported_s: Some(0.09),
        v_mig_bytes: 100_000_000,
        zero_pages: None,
        rounds: 3,
        converged: true,
        status: "completed".into(),
        bandwidth_limit_bytes_per_s: Some(10e6),
        downtime_limit_s: Some(0.3),
        max_rounds: None,
        max_factor: None,
        auto_converge: Some(false),
        pre_dirty_rate_bytes_per_s: Some(5e6),
        pre_dirty_sample_s: Some(1.0),
        source_host: "a".into(),
        destination_host: "b".into(),
        memory_verified: None,
        memory_mismatch_pages: None,
        accelerator: None,
        probe_dirty_rate_bytes_per_s: None,
        probe_hot_set_bytes: None,
        probe_nonzero_share: None,
    };
    let r = RoundRow {
        migration_id: id.into(),
        round: 1,
        start_utc_ns: Some(start),
        duration_s: Some(v0_pages as f64 * 4096.0 / 10e6),
        sent_bytes: v0_pages * 4096,
        skipped_pages: 0,
        dirtied_pages: Some(1000),
        dirty_rate_bytes_per_s: Some(5e6),
        gamma: None,
        last: false,
    };
    (m, vec![r])
}

#[test]
fn evaluate_writes_a_dataset_and_history_uses_earlier_migrations() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let (m1, r1) = measured("m1", 1, 12_000);
    let (m2, r2) = measured("m2", 2, 12_000);
    write_migrations_file(&data.join("migrations/a.parquet"), &[m1, m2]).unwrap();
    write_rounds_file(&data.join("rounds/a.parquet"), &[r1, r2].concat()).unwrap();
    let out = d.path().join("eval.parquet");
    let mut cmd = migwatt();
    cmd.args(["evaluate", "--migrations-dir"])
        .arg(&data)
        .args([
            "--refined",
            "--format",
            "json",
            "--decision-trials",
            "10",
            "--seed",
            "3",
        ])
        .arg("--out")
        .arg(&out);
    let v = json_of(&mut cmd);
    assert_eq!(v["evaluated"], 6);
    let groups = v["mape"].as_array().unwrap();
    let refined = groups
        .iter()
        .find(|g| g["model"] == "refined" && g["workload"].is_null())
        .unwrap();
    assert_eq!(refined["n"], 2);
    // Both measured 100 MB; the refined model's second prediction starts from 49 MB.
    let eval = datasets::io::read_parquet_checked(&out, datasets::evaluation::EVALUATION).unwrap();
    assert_eq!(eval.height(), 6);
    // E_mig (Figure 13): the paper's energy model on the predicted V_mig against measured
    // energy observations; m2 has none.
    paper_models(d.path());
    let energy_obs = d.path().join("energy.parquet");
    let obs = datasets::energy::EnergyRow {
        migration_id: "m1".into(),
        v_mig_bytes: 100_000_000,
        e_mig_j: 80.0,
        e_source_j: 50.0,
        e_destination_j: 30.0,
        coverage: 1.0,
        p0_source_w: 100.0,
        p0_destination_w: 90.0,
        source_host: "a".into(),
        destination_host: "b".into(),
        start_utc_ns: 1_700_000_000_000_000_000,
        end_utc_ns: 1_700_000_010_000_000_000,
        workload: None,
        vm: Some("vm1".into()),
        vm_mem_bytes: None,
    };
    datasets::energy::write_energy(&energy_obs, datasets::energy::Format::Parquet, &[obs], &[])
        .unwrap();
    let mut cmd = migwatt();
    cmd.args(["evaluate", "--migrations-dir"])
        .arg(&data)
        .arg("--energy-model")
        .arg(d.path().join("energy.json"))
        .arg("--energy")
        .arg(&energy_obs)
        .args(["--format", "json", "--out"])
        .arg(&out);
    let v = json_of(&mut cmd);
    let all_sim = v["mape"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["model"] == "sim" && g["workload"].is_null())
        .unwrap()
        .clone();
    let df = datasets::io::read_parquet_checked(&out, datasets::evaluation::EVALUATION).unwrap();
    let f64s = |c: &str| -> Vec<Option<f64>> {
        let ca = df.column(c).unwrap().f64().unwrap();
        (0..ca.len()).map(|i| ca.get(i)).collect()
    };
    let strs = |c: &str| -> Vec<String> {
        let ca = df.column(c).unwrap().str().unwrap();
        (0..ca.len())
            .map(|i| ca.get(i).unwrap().to_string())
            .collect()
    };
    let (ids, models) = (strs("migration_id"), strs("model"));
    let at = |id: &str| {
        (0..ids.len())
            .find(|&i| ids[i] == id && models[i] == "sim")
            .unwrap()
    };
    let (pv, pe, me, re) = (
        f64s("predicted_v_mig_bytes"),
        f64s("predicted_e_mig_j"),
        f64s("measured_e_mig_j"),
        f64s("rel_err_e_mig"),
    );
    let (i1, i2) = (at("m1"), at("m2"));
    let want = 0.512 * pv[i1].unwrap() / 1e6 + 20.165;
    assert!((pe[i1].unwrap() - want).abs() < 1e-9 * want);
    assert_eq!(me[i1], Some(80.0));
    assert!((re[i1].unwrap() - (want - 80.0) / 80.0).abs() < 1e-12);
    assert!(pe[i2].is_some() && me[i2].is_none() && re[i2].is_none());
    let e = all_sim["e_mig_percent"].as_f64().unwrap();
    assert!(
        (e - 100.0 * ((want - 80.0) / 80.0).abs()).abs() < 1e-9,
        "{e}"
    );
    // History-driven prediction for m2 from the dataset, through `predict --history`.
    let p = json_of(migwatt().args([
        "predict",
        "--history-dir",
        data.to_str().unwrap(),
        "--vm",
        "vm1",
        "--dirty-rate",
        "5MB/s",
        "--rate",
        "10MB/s",
        "--format",
        "json",
    ]));
    assert_eq!(p["refined"]["migrations"], 2);
    assert_eq!(p["scenario"]["vm_mem_bytes"], 49_152_000.0);
    // D_bar = 1000 pages x 4096 B / 4.9152 s = 833 333 B/s per migration; D_hat the same;
    // D_tilde = (5e6 + 833 333.3) / 2.
    let dt = p["scenario"]["dirty_rate_bytes_per_s"].as_f64().unwrap();
    assert!(
        (dt - (5e6 + 4_096_000.0 / 4.9152) / 2.0).abs() < 1e-6,
        "{dt}"
    );
}

#[test]
fn predict_a_table_of_vms_with_per_row_rates_and_stop_rules() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("vms.csv");
    std::fs::write(
        &csv,
        "vm,vm_mem_bytes,dirty_rate_bytes_per_s,rate_bytes_per_s,hypervisor\na,100000000,5000000,10000000,qemu\nb,134217728,20000000,16000000,xen4\n",
    )
    .unwrap();
    let v = json_of(
        migwatt()
            .args(["predict", "--vms"])
            .arg(&csv)
            .args(["--format", "json"]),
    );
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let a = &rows[0]["prediction"];
    assert!((a["v_mig_bytes"].as_f64().unwrap() - 198.4375e6).abs() < 1e-3);
    assert_eq!(rows[1]["prediction"]["stop"], "diverging");
    assert_eq!(rows[1]["scenario"]["hypervisor"], "xen4");
}

#[test]
fn predict_with_a_hot_set_caps_the_dirty_data() {
    // 96 MB at 16 MB/s, D = 12 MB/s, limit 50 ms, hot set 34 MB: round 1 dirties
    // min(72, 34) MB, then 3/4 of each round (hand-computed in trainer's predict tests).
    let args = [
        "predict",
        "--vm-mem",
        "96MB",
        "--dirty-rate",
        "12MB/s",
        "--rate",
        "16MB/s",
        "--downtime-limit",
        "50ms",
        "--hot-set",
        "34MB",
    ];
    let p = json_of(migwatt().args(args).args(["--format", "json"]));
    assert_eq!(p["hot_set_bytes"], 34e6);
    assert_eq!(p["scenario"]["hot_set_bytes"], 34e6);
    assert_eq!(p["gamma"]["psi"], 0.0);
    let v = p["prediction"]["v_mig_bytes"].as_f64().unwrap();
    assert!((v / 230.1825693026185e6 - 1.0).abs() < 1e-9, "{v}");
    assert_eq!(p["prediction"]["trajectory"][1]["sent_bytes"], 34e6);
    // Units as --vm-mem; the text output names the hot set and where it came from.
    let out = migwatt().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hot set H 34.000 MB (--hot-set)"), "{text}");
    // Without it, no cap (null in JSON).
    let p = json_of(migwatt().args(&args[..9]).args(["--format", "json"]));
    assert!(p["scenario"]["hot_set_bytes"].is_null() && p["hot_set_bytes"].is_null());
    // The closed form has no cap; a bad size is refused.
    let out = migwatt()
        .args(args)
        .args(["--model", "base"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model sim"));
    let out = migwatt().args(&args[..10]).arg("0MB").output().unwrap();
    assert!(!out.status.success());
    let help = migwatt().args(["predict", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--hot-set <SIZE>"));
}

#[test]
fn history_of_only_cancelled_migrations_says_why_the_volume_is_unknown() {
    // Issue 16 defect 6: a VM whose past migrations were all cancelled.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let (mut m1, r1) = measured("m1", 1, 12_000);
    m1.converged = false;
    m1.status = "cancelled".into();
    m1.t_down_s = None;
    write_migrations_file(&data.join("migrations/a.parquet"), &[m1]).unwrap();
    write_rounds_file(&data.join("rounds/a.parquet"), &r1).unwrap();
    let out = migwatt()
        .args(["predict", "--history-dir"])
        .arg(&data)
        .args(["--vm", "vm1", "--dirty-rate", "5MB/s", "--rate", "10MB/s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'vm1' has 1 migration(s), none completed") && err.contains("--vm-mem"),
        "{err}"
    );
}

/// A VM without history predicted from its real probe (tests/data/probe): D, the hot set and
/// the first round (non-zero share x RAM) come from the probe, and the prediction lands near
/// what that migration measured (T_mig 8.888 s, V_mig 149.2 MB).
#[test]
fn predict_with_a_probe_uses_its_rate_hot_set_and_nonzero_memory() {
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe/seq16.json");
    let v = json_of(
        migwatt()
            .args([
                "predict",
                "--rate",
                "16MiB/s",
                "--downtime-limit",
                "50ms",
                "--format",
                "json",
                "--probe",
            ])
            .arg(&probe),
    );
    let s = &v["scenario"];
    assert_eq!(s["dirty_rate_bytes_per_s"].as_f64(), Some(8912896.0));
    assert_eq!(s["hot_set_bytes"].as_f64(), Some(19922944.0));
    let first = 268435456.0 * 0.4166119450849839;
    assert!((s["vm_mem_bytes"].as_f64().unwrap() - first).abs() < 1.0);
    assert_eq!(
        v["probe"]["used_for"],
        serde_json::json!(["D", "hot set H", "first round (non-zero share x RAM)"])
    );
    let p = &v["prediction"];
    let t = p["t_mig_s"].as_f64().unwrap();
    let vmig = p["v_mig_bytes"].as_f64().unwrap();
    assert!(
        (t / 8.888 - 1.0).abs() < 0.10,
        "T_mig {t} s against 8.888 s measured"
    );
    assert!((vmig / 149178247.0 - 1.0).abs() < 0.10, "V_mig {vmig}");
    // Flags override the probe: all of RAM, and a given rate.
    let v = json_of(
        migwatt()
            .args([
                "predict",
                "--rate",
                "16MiB/s",
                "--vm-mem",
                "256MiB",
                "--dirty-rate",
                "4MiB/s",
                "--format",
                "json",
                "--probe",
            ])
            .arg(&probe),
    );
    assert_eq!(v["scenario"]["vm_mem_bytes"].as_f64(), Some(268435456.0));
    assert_eq!(
        v["scenario"]["dirty_rate_bytes_per_s"].as_f64(),
        Some(4194304.0)
    );
    assert_eq!(v["probe"]["used_for"], serde_json::json!(["hot set H"]));
}

#[test]
fn a_bad_probe_file_is_named_with_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("p.json");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe/seq16.json"),
    )
    .unwrap()
    .replace("0.4166119450849839", "1.7");
    std::fs::write(&f, text).unwrap();
    let out = migwatt()
        .args(["predict", "--rate", "16MiB/s", "--probe"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p.json") && err.contains("nonzero_share = 1.7"),
        "{err}"
    );
    std::fs::write(&f, "{\"format\": \"x\"}").unwrap();
    let out = migwatt()
        .args(["predict", "--rate", "16MiB/s", "--probe"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a probe file"));
}
