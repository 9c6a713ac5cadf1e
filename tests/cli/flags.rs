//! One meaning per option (README "Options mean one thing"): renamed options are refused with
//! their new name, `--format json` everywhere, `--quiet` / `MIGWATT_QUIET` for every command.

use std::process::Command;

use super::common::bin;

const EX: &str = "datasets/examples/campaign";

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("MIGWATT_QUIET")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_old_spelling_is_a_usage_error_naming_the_new_one() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["meter", "capture", "--out", "x", "--duration", "1s"],
            "--out-dir",
        ),
        (&["meter", "decode", "--format", "csv"], "--file-type"),
        (&["meter", "list", "--json"], "--format json"),
        (
            &["meter", "info", "--port", "/dev/null", "--json"],
            "--format json",
        ),
        (
            &["meter", "baseline", "--samples", "x", "--host", "a"],
            "--samples-dir",
        ),
        (&["integrate", "--samples", "x"], "--samples-dir"),
        (&["integrate", "--format", "csv"], "--file-type"),
        (
            &["train", "energy", "--data", "x", "--out", "m"],
            "--out-dir",
        ),
        (&["train", "energy", "--json"], "--format json"),
        (&["models", "list", "m", "--json"], "--format json"),
        (&["models", "show", "m", "--json"], "--format json"),
        (
            &["calibrate", "ingest", "qemu", "x", "--out", "o"],
            "--out-dir",
        ),
        (
            &["calibrate", "ingest", "qemu", "x", "--format", "jsonl"],
            "--file-type",
        ),
        (&["calibrate", "migrate", "--out", "o"], "--out-dir"),
        (&["demo", "--out", "o"], "--out-dir"),
        (&["demo", "--examples", "e"], "--examples-dir"),
        (&["demo", "--migrations", "3"], "--replay-count"),
        (&["demo", "--guest", "g"], "--guest-dir"),
        (&["predict", "--history", "h", "--vm", "a"], "--history-dir"),
        (&["evaluate", "--migrations", "m"], "--migrations-dir"),
        (&["evaluate", "--history"], "--refined"),
        (&["evaluate", "--train-with", "t"], "--train-with-dir"),
    ];
    for (args, new) in cases {
        let (code, _, err) = run(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("was replaced: use") && err.contains(new),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn format_json_prints_json_and_datasets_check_keeps_its_documented_json_switch() {
    for args in [
        &[
            "models",
            "list",
            &format!("{EX}/models"),
            "--format",
            "json",
        ][..],
        &[
            "models",
            "show",
            &format!("{EX}/models/energy"),
            "--format",
            "json",
        ],
        &[
            "datasets",
            "check",
            &format!("{EX}/windows.parquet"),
            "--format",
            "json",
        ],
        &[
            "datasets",
            "check",
            &format!("{EX}/windows.parquet"),
            "--json",
        ],
    ] {
        let (code, out, err) = run(args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
    }
}

/// Progress lines go with --quiet or MIGWATT_QUIET (any command); results stay.
#[test]
fn quiet_silences_progress_only() {
    let d = tempfile::tempdir().unwrap();
    let integrate = |out: &str| {
        vec![
            "integrate".to_string(),
            "--samples-dir".into(),
            format!("{EX}/samples"),
            "--windows".into(),
            format!("{EX}/windows.parquet"),
            "--baseline".into(),
            format!("{EX}/baselines/p0-hostA.json"),
            format!("{EX}/baselines/p0-hostB.json"),
            "--out".into(),
            d.path().join(out).display().to_string(),
        ]
    };
    let a = integrate("loud.parquet");
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("] host hostA:"), "progress expected: {err}");
    assert!(out.contains("energy observations"), "{out}");
    for (extra, env) in [
        (Some("--quiet"), None),
        (None, Some(("MIGWATT_QUIET", "1"))),
    ] {
        let mut a = integrate("quiet.parquet");
        a.extend(extra.map(str::to_string));
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let (code, out, err) = run(&args, &env);
        assert_eq!(code, Some(0), "{err}");
        assert!(!err.contains("] host"), "{extra:?} {env:?}: {err}");
        assert!(out.contains("energy observations"), "{out}");
    }
    // MIGWATT_QUIET=0 means not quiet.
    let (_, _, err) = run(&args, &[("MIGWATT_QUIET", "0")]);
    assert!(err.contains("] host hostA:"), "{err}");
}
