//! `migwatt meter baseline` and `migwatt integrate` on real Parquet samples (no meter needed).

use std::path::Path;

use assert_cmd::Command;
use datasets::energy::read_energy;
use datasets::samples::{partition_dir, write_samples_file, SampleRow, FIELD_COUNT};
use datasets::windows::{write_windows, Role, WindowRow};

const S: i64 = 1_000_000_000;
/// 2025-11-25T00:00:00Z
const T0: i64 = 1_764_028_800 * S;

/// Host `host` sampled at whole seconds 0..n with power `f(second)`.
fn write_host(dir: &Path, host: &str, n: i64, f: impl Fn(i64) -> f64) {
    let rows: Vec<SampleRow> = (0..n)
        .map(|i| {
            let mut fields = [None; FIELD_COUNT];
            fields[0] = Some(f(i));
            SampleRow {
                host: host.into(),
                meter_id: "PRO 5.2".into(),
                utc_ns: T0 + i * S,
                mono_ns: i * S,
                seq: i as u64,
                connection: 1,
                gap_before_ns: None,
                flags: 0,
                fields,
                ..Default::default()
            }
        })
        .collect();
    let part = partition_dir(dir, host, "2025-11-25");
    write_samples_file(&part.join("0.parquet"), host, &rows).unwrap();
}

fn window(id: &str, host: &str, role: Role, a: i64, b: i64) -> WindowRow {
    WindowRow {
        migration_id: id.into(),
        host: host.into(),
        role,
        start_utc_ns: T0 + a * S,
        end_utc_ns: T0 + b * S,
        v_mig_bytes: 512 << 20,
        workload: Some("pmd".into()),
        vm: Some("vm7".into()),
        vm_mem_bytes: Some(1 << 30),
    }
}

fn migwatt() -> Command {
    Command::cargo_bin("migwatt").unwrap()
}

#[test]
fn baseline_then_integrate_gives_known_energies() {
    let d = tempfile::tempdir().unwrap();
    let samples = d.path().join("samples");
    // src idles at 100.0-100.4 W for 200 s, bursts to 160 W over seconds 250..=259;
    // dst idles at 90 W throughout except 70 W above idle over seconds 252..=256.
    write_host(&samples, "src", 400, |i| match i {
        250..=259 => 160.0,
        _ if i < 200 => 100.0 + (i % 5) as f64 / 10.0,
        _ => 100.2,
    });
    write_host(&samples, "dst", 400, |i| {
        if (252..=256).contains(&i) {
            160.0
        } else {
            90.0
        }
    });
    let b_src = d.path().join("src.json");
    let out = migwatt()
        .args([
            "meter",
            "baseline",
            "--host",
            "src",
            "--from",
            "2025-11-25T00:00:00Z",
        ])
        .args(["--to", &(1_764_028_800 + 199).to_string(), "--out"])
        .arg(&b_src)
        .arg("--samples-dir")
        .arg(&samples)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        (b["p0_watts"].as_f64().unwrap() - 100.2).abs() < 1e-9,
        "{b}"
    );
    assert_eq!(b["sample_count"], 200);
    assert_eq!(b["meter_id"], "PRO 5.2");
    assert_eq!(b["start"], "2025-11-25T00:00:00.000Z");
    // Without a range: the longest stable stretch of dst (everything outside its burst).
    let b_dst = d.path().join("dst.json");
    migwatt()
        .args(["meter", "baseline", "--host", "dst", "--out"])
        .arg(&b_dst)
        .arg("--samples-dir")
        .arg(&samples)
        .assert()
        .success();
    let bd: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&b_dst).unwrap()).unwrap();
    assert_eq!(bd["p0_watts"], 90.0);
    assert_eq!(bd["method"], "longest_stable");
    assert_eq!(bd["sample_count"], 252); // seconds 0..=251

    let windows = d.path().join("windows.csv");
    write_windows(
        &windows,
        &[
            window("m1", "src", Role::Source, 240, 270),
            window("m1", "dst", Role::Destination, 245, 265),
            // No samples on src after 399 s: left out with the reason.
            window("m2", "src", Role::Source, 1000, 1030),
            window("m2", "dst", Role::Destination, 300, 330),
        ],
    )
    .unwrap();
    let energy = d.path().join("energy.csv");
    let assert = migwatt()
        .arg("integrate")
        .arg("--samples-dir")
        .arg(&samples)
        .arg("--windows")
        .arg(&windows)
        .arg("--baseline")
        .arg(&b_src)
        .arg(&b_dst)
        .arg("--out")
        .arg(&energy)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(text.contains("excluded 2 of 4 windows"), "{text}");
    assert!(text.contains("no samples cover the window"), "{text}");
    let rows = read_energy(&energy).unwrap();
    assert_eq!(rows.len(), 1);
    let m1 = &rows[0];
    // src: trapezoid over the 160 W plateau 250..=259 (9 s) plus two 1 s ramps from 100.2 W.
    let e_src = 59.8 * 9.0 + 2.0 * 59.8 / 2.0;
    // dst: 70 W above idle over 252..=256 (4 s) plus two ramps.
    let e_dst = 70.0 * 4.0 + 2.0 * 70.0 / 2.0;
    assert!((m1.e_source_j - e_src).abs() < 1e-6, "{m1:?}");
    assert!((m1.e_destination_j - e_dst).abs() < 1e-6, "{m1:?}");
    assert!((m1.e_mig_j - e_src - e_dst).abs() < 1e-6);
    assert_eq!((m1.coverage, m1.p0_destination_w), (1.0, 90.0));
    assert_eq!(m1.workload.as_deref(), Some("pmd"));
    // The quality report sits next to the output, with every window and its reason.
    let q = std::fs::read_to_string(d.path().join("energy.quality.csv")).unwrap();
    assert_eq!(q.lines().count(), 5, "{q}");
    assert!(q.contains("source window excluded"), "{q}");

    // The paper's rectangle sum, as JSON lines: whole-second samples inside the window.
    let jsonl = d.path().join("energy.jsonl");
    migwatt()
        .arg("integrate")
        .arg("--samples-dir")
        .arg(&samples)
        .arg("--windows")
        .arg(&windows)
        .args([
            "--p0",
            "src=100.2",
            "dst=90",
            "--rule",
            "rectangle",
            "--out",
        ])
        .arg(&jsonl)
        .assert()
        .success();
    let rows = read_energy(&jsonl).unwrap();
    assert!(
        (rows[0].e_source_j - 59.8 * 10.0).abs() < 1e-6,
        "{:?}",
        rows[0]
    );
    assert!(
        (rows[0].e_destination_j - 70.0 * 5.0).abs() < 1e-6,
        "{:?}",
        rows[0]
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let samples = d.path().join("samples");
    write_host(&samples, "src", 100, |i| 100.0 + (i % 2) as f64 * 3.0);
    // Unstable range.
    migwatt()
        .args([
            "meter",
            "baseline",
            "--host",
            "src",
            "--from",
            "1764028800",
            "--to",
            "1764028850",
        ])
        .arg("--samples-dir")
        .arg(&samples)
        .assert()
        .failure()
        .stderr(predicates::str::contains("spread 3.0 W"));
    // No stable stretch.
    migwatt()
        .args(["meter", "baseline", "--host", "src", "--samples-dir"])
        .arg(&samples)
        .assert()
        .failure()
        .stderr(predicates::str::contains("no stretch of at least 60 s"));
    // Unknown host, bad time.
    migwatt()
        .args(["meter", "baseline", "--host", "nope", "--samples-dir"])
        .arg(&samples)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "no samples for host 'nope' (hosts present: src)",
        ));
    migwatt()
        .args([
            "meter",
            "baseline",
            "--host",
            "src",
            "--from",
            "noon",
            "--to",
            "1",
            "--samples-dir",
        ])
        .arg(&samples)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "'noon' for '--from <T>': expected an RFC 3339 time",
        ));
    // A window on a host without samples; a window file with a bad row.
    let windows = d.path().join("w.csv");
    std::fs::write(
        &windows,
        "migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\n\
         m1,src,source,1764028810000000000,1764028820000000000,100\n\
         m1,dst,destination,1764028810000000000,1764028820000000000,100\n",
    )
    .unwrap();
    let integrate = |extra: &[&str]| {
        let mut c = migwatt();
        c.arg("integrate")
            .arg("--samples-dir")
            .arg(&samples)
            .arg("--windows")
            .arg(&windows)
            .arg("--out")
            .arg(d.path().join("e.parquet"))
            .args(extra);
        c
    };
    integrate(&["--p0", "src=100"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "row 2 (migration 'm1'): host 'dst' has no samples",
        ));
    integrate(&[])
        .assert()
        .failure()
        .stderr(predicates::str::contains("--baseline"));
    std::fs::write(
        &windows,
        "migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\nm1,src,sauce,1,2,3\n",
    )
    .unwrap();
    integrate(&["--p0", "src=100"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "w.csv: column 'role': row 1 (line 2): 'sauce' is not 'source' or 'destination'",
        ));
    assert!(!d.path().join("e.parquet").exists());
}
