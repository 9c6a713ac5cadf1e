//! The README's main job: `migwatt demo` runs the pipeline on emulated meters following the
//! shipped example migrations, and says what was emulated.

use std::process::Command;

#[test]
fn demo_runs_the_pipeline_on_the_shipped_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("migwatt"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("replaying 6 real QEMU migrations"),
        "{stdout}"
    );
    assert!(
        stdout.contains("EMULATED:") && stdout.contains("Emulated:"),
        "{stdout}"
    );
    let run = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
        .expect("a run folder");
    let energy = datasets::energy::read_energy(&run.join("energy.parquet")).unwrap();
    assert_eq!(energy.len(), 6);
    for e in &energy {
        assert!(e.coverage >= 0.95, "{e:?}");
        assert!(e.e_mig_j > 0.0 && e.e_source_j > e.e_destination_j, "{e:?}");
    }
    for host in ["source", "destination"] {
        let b: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join(format!("baseline-{host}.json"))).unwrap(),
        )
        .unwrap();
        let want = if host == "source" { 118.0 } else { 96.0 };
        assert!((b["p0_watts"].as_f64().unwrap() - want).abs() < 0.5, "{b}");
    }
    let model = trainer::coef::load(&run.join("models/energy/v1.json")).unwrap();
    let alpha = model
        .coefficients
        .iter()
        .find(|c| c.name == "alpha")
        .unwrap()
        .estimate;
    assert!(alpha > 0.0);
}
