//! The README's main job: `migwatt demo` runs the calibration campaign on emulated meters
//! replaying the example migrations built into the binary, writes the report, and says what
//! was emulated; from any folder, as after `cargo install`.

use crate::common;

use std::process::Command;

#[test]
fn demo_runs_the_campaign_on_the_shipped_examples() {
    // Run from an empty folder that is not the checkout: the examples come from the binary.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("migwatt"))
        .current_dir(elsewhere.path())
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("EMULATED: 6 migrations replayed from real QEMU migrations"),
        "{stdout}"
    );
    assert!(stdout.contains("built into migwatt"), "{stdout}");
    assert!(
        stdout.contains("EMULATED: two Watts up? PRO meters"),
        "{stdout}"
    );
    assert!(stdout.contains("open the report: "), "{stdout}");
    let run = std::fs::read_dir(elsewhere.path().join("migwatt-demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
        .expect("a run folder");
    let energy = datasets::energy::read_energy(&run.join("energy.parquet")).unwrap();
    assert_eq!(energy.len(), 6);
    for e in &energy {
        assert!(e.coverage >= 0.98, "{e:?}");
        assert!(e.e_mig_j > 0.0 && e.e_source_j > e.e_destination_j, "{e:?}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    for (h, want) in summary["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .zip([118.0, 96.0])
    {
        assert!((h["p0_w"].as_f64().unwrap() - want).abs() < 0.5, "{h}");
    }
    // The emulated hosts draw 0.45 + 0.30 J per MB plus 3 W while migrating: alpha lies
    // above 0.75 J/MB (the constant draw grows with the duration, which grows with V_mig).
    let pair = summary["hardware_pair"].as_str().unwrap();
    let model = trainer::coef::load(&run.join(format!("models/{pair}/energy/v1.json"))).unwrap();
    let alpha = model
        .coefficients
        .iter()
        .find(|c| c.name == "alpha")
        .unwrap()
        .estimate;
    assert!(alpha > 0.75e-6 && alpha < 1.5e-6, "alpha {alpha} J/B");
    assert!(
        summary["emulated"].as_array().unwrap().len() >= 3,
        "{summary}"
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in [
        "summary",
        "verdicts",
        "power",
        "energy",
        "gamma",
        "residuals",
        "files",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no section {id}");
    }
    assert!(html.contains("EMULATED"));
    assert!(run.join("demo.toml").is_file());
    assert!(run.join("replayed/migrations").is_dir());
    assert_eq!(common::validate_coefficient_files(&run.join("models")), 2);
}
