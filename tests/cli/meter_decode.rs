//! `migwatt meter decode` against real captures of real meters (tests/data/wattsup).

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wattsup")
        .join(name)
}

/// An oracle independent of the decoder: a line is a record when, without NUL and CR, it is
/// `#d,-,18,` followed by 18 integers and `;`.
fn expected_records(bytes: &[u8]) -> Vec<Vec<f64>> {
    let divisors = [
        10.0, 10.0, 1000.0, 10.0, 1000.0, 1.0, 1000.0, 10.0, 10.0, 1000.0, 10.0, 10.0, 1000.0,
        100.0, 100.0, 1.0, 10.0, 10.0,
    ];
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let l: Vec<u8> = l
                .iter()
                .copied()
                .filter(|&b| b != 0 && b != b'\r')
                .collect();
            let s = std::str::from_utf8(&l).ok()?;
            let body = s.strip_prefix("#d,-,18,")?.strip_suffix(';')?;
            let v: Vec<u32> = body
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() == 18).then(|| v.iter().zip(divisors).map(|(&x, d)| x as f64 / d).collect())
        })
        .collect()
}

fn decode(name: &str) -> (Vec<Value>, String) {
    let out = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode"])
        .arg(data(name))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, String::from_utf8(out.stderr).unwrap())
}

const FIELDS: [&str; 18] = [
    "watts",
    "volts",
    "amps",
    "watt_hours",
    "cost",
    "watt_hours_per_month",
    "cost_per_month",
    "watts_max",
    "volts_max",
    "amps_max",
    "watts_min",
    "volts_min",
    "amps_min",
    "power_factor",
    "duty_cycle",
    "power_cycles",
    "hertz",
    "volt_amps",
];

#[test]
fn reference_captures_are_intact() {
    let sums = std::fs::read_to_string(data("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 3);
    for name in ["fan.raw", "iphone3gs.raw", "iphone4.raw"] {
        assert!(sums.contains(name));
        assert!(std::fs::metadata(data(name)).unwrap().len() > 100_000);
    }
}

#[test]
fn every_record_of_every_real_capture_decodes_to_si_values() {
    for (name, count) in [
        ("fan.raw", 1792),
        ("iphone3gs.raw", 6898),
        ("iphone4.raw", 6423),
    ] {
        let bytes = std::fs::read(data(name)).unwrap();
        let want = expected_records(&bytes);
        assert_eq!(want.len(), count, "{name}: oracle");
        let (rows, _) = decode(name);
        assert_eq!(rows.len(), want.len(), "{name}");
        for (i, (row, w)) in rows.iter().zip(&want).enumerate() {
            assert_eq!(row["seq"], i as u64);
            for (f, field) in FIELDS.iter().enumerate() {
                assert_eq!(row[field].as_f64(), Some(w[f]), "{name} record {i} {field}");
            }
        }
    }
}

#[test]
fn the_truncated_first_line_is_reported_with_its_offset() {
    let (rows, stderr) = decode("iphone3gs.raw");
    assert_eq!(rows[0]["byte_offset"], 64);
    assert!(stderr.contains("rejected 1 fragments"), "{stderr}");
    assert!(stderr.contains("byte 0: truncated"), "{stderr}");
    let (_, stderr) = decode("fan.raw");
    assert!(stderr.contains("rejected 0 fragments"), "{stderr}");
    assert!(stderr.contains("131 NUL bytes skipped"), "{stderr}");
}

#[test]
fn documented_record_decodes_with_missing_fields_as_null() {
    let input = "#d,-,18,444,1198,378,89,0,39,3,444,1199,380,444,1197,378,88,0,0,601,499;\r\n\
                 #d,-,18,356,2300,186,_,_,_,_,_,_,_,_,_,_,_,_,_,_,_;\r\n";
    let out = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["watts"], 44.4);
    assert_eq!(rows[0]["volts"], 119.8);
    assert_eq!(rows[0]["amps"], 0.378);
    assert_eq!(rows[0]["watt_hours"], 8.9);
    assert_eq!(rows[0]["power_factor"], 0.88);
    assert_eq!(rows[0]["hertz"], 60.1);
    assert_eq!(rows[0]["volt_amps"], 49.9);
    assert_eq!(rows[1]["watts"], 35.6);
    assert_eq!(rows[1]["volts"], 230.0);
    assert!(rows[1]["watt_hours"].is_null());
    assert!(rows[1]["volt_amps"].is_null());
}

#[test]
fn csv_and_parquet_outputs_hold_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode", "--file-type", "csv"])
        .arg(data("fan.raw"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("seq,byte_offset,{}", FIELDS.join(","))
    );
    assert_eq!(lines.count(), 1792);

    let pq = dir.path().join("fan.parquet");
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode", "--file-type", "parquet", "--out"])
        .arg(&pq)
        .arg(data("fan.raw"))
        .assert()
        .success();
    let back = datasets::samples::read_records_file(&pq).unwrap();
    assert_eq!(back.len(), 1792);
    let first_csv: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(back[0].byte_offset.to_string(), first_csv[1]);
    assert_eq!(back[0].fields[1].unwrap().to_string(), first_csv[3]);
    // Parquet needs a file to go to.
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode", "--file-type", "parquet"])
        .arg(data("fan.raw"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("--out"));
}

#[test]
fn a_missing_file_is_a_clear_error() {
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["meter", "decode", "/nonexistent/capture.raw"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("/nonexistent/capture.raw"));
}
