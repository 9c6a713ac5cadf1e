//! The exit statuses of every command family (README "What every command guarantees"): 0
//! success, 1 failure with each cause printed once, 2 usage, 130/143 after a clean stop.
//! 3 (thresholds) and 4 (a migration not completed or verified) are checked where a campaign
//! or a real migration runs: tests/migration/calibrate_run.rs, tests/migration/qemu_migrate.rs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::common::bin;

const EX: &str = "datasets/examples/campaign";
const MISSING: &str = "/nonexistent/migwatt-test/input";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run the binary from the checkout root: (status, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ex(p: &str) -> String {
    format!("{EX}/{p}")
}

fn tmp(d: &Path, name: &str) -> String {
    d.join(name).display().to_string()
}

/// Argument lists.
type Runs = Vec<Vec<String>>;

/// Each family: commands that succeed, fail on a missing input, and are misused.
fn cases(d: &Path) -> Vec<(&'static str, Runs, Runs, Runs)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "meter",
            vec![v(&["meter", "decode", "tests/data/wattsup/fan.raw"])],
            vec![
                v(&["meter", "decode", MISSING]),
                v(&["meter", "baseline", "--samples-dir", MISSING, "--host", "a"]),
            ],
            vec![
                v(&["meter", "decode", "--no-such-flag"]),
                v(&["meter", "emulate", "--speed", "fast"]),
            ],
        ),
        (
            "integrate",
            vec![v(&[
                "integrate",
                "--samples-dir",
                &ex("samples"),
                "--windows",
                &ex("windows.parquet"),
                "--baseline",
                &ex("baselines/p0-hostA.json"),
                &ex("baselines/p0-hostB.json"),
                "--out",
                &tmp(d, "energy.parquet"),
            ])],
            vec![v(&[
                "integrate",
                "--samples-dir",
                &ex("samples"),
                "--windows",
                MISSING,
                "--p0",
                "hostA=100",
                "--out",
                &tmp(d, "e2.parquet"),
            ])],
            vec![v(&[
                "integrate",
                "--samples-dir",
                &ex("samples"),
                "--windows",
                &ex("windows.parquet"),
                "--p0",
                "hostA=100",
                "--min-coverage",
                "1.5",
                "--out",
                &tmp(d, "e3.parquet"),
            ])],
        ),
        (
            "train",
            vec![v(&[
                "train",
                "energy",
                "--data",
                &ex("energy.parquet"),
                "--out-dir",
                &tmp(d, "models"),
            ])],
            vec![v(&[
                "train",
                "energy",
                "--data",
                MISSING,
                "--out-dir",
                &tmp(d, "models2"),
            ])],
            vec![v(&["train", "energy", "--folds", "many"])],
        ),
        (
            "models",
            vec![v(&["models", "list", &ex("models")])],
            vec![
                v(&["models", "show", MISSING]),
                v(&["models", "list", MISSING]),
            ],
            vec![v(&["models", "show"])],
        ),
        (
            "calibrate",
            vec![v(&[
                "calibrate",
                "windows",
                "--migrations",
                &ex("migrations"),
                "--out",
                &tmp(d, "w.parquet"),
            ])],
            vec![
                v(&[
                    "calibrate",
                    "ingest",
                    "qemu",
                    MISSING,
                    "--out-dir",
                    &tmp(d, "ing"),
                ]),
                v(&["calibrate", "report", MISSING]),
                v(&["calibrate", "run", MISSING]),
            ],
            vec![v(&["calibrate", "migrate", "--bandwidth", "32M"])],
        ),
        (
            "demo",
            vec![],
            vec![
                v(&[
                    "demo",
                    "--examples-dir",
                    MISSING,
                    "--out-dir",
                    &tmp(d, "demo"),
                ]),
                v(&[
                    "demo",
                    "--qemu",
                    "--guest-dir",
                    MISSING,
                    "--out-dir",
                    &tmp(d, "demo"),
                ]),
            ],
            vec![v(&["demo", "--replay-count", "-1"])],
        ),
        (
            "predict",
            vec![v(&[
                "predict",
                "--energy-model",
                &ex("models/energy"),
                "--vm-mem",
                "1GiB",
                "--dirty-rate",
                "1MB/s",
                "--rate",
                "10MB/s",
            ])],
            vec![v(&[
                "predict",
                "--energy-model",
                MISSING,
                "--vm-mem",
                "1GiB",
                "--dirty-rate",
                "1MB/s",
                "--rate",
                "10MB/s",
            ])],
            vec![v(&["predict", "--vm-mem", "1G"])],
        ),
        (
            "rank",
            vec![],
            vec![v(&[
                "rank",
                "--energy-model",
                &ex("models/energy"),
                "--vms",
                &format!("{MISSING}.parquet"),
                "--rate",
                "10MB/s",
                "--weights",
                "0.25,0.25,0.25,0.25",
            ])],
            vec![v(&["rank", "--weights", "x"])],
        ),
        (
            "evaluate",
            vec![v(&[
                "evaluate",
                "--migrations-dir",
                EX,
                "--energy-model",
                &ex("models/energy"),
            ])],
            vec![v(&["evaluate", "--migrations-dir", MISSING])],
            vec![v(&["evaluate", "--decision-trials", "-3"])],
        ),
        (
            "datasets",
            vec![v(&["datasets", "check", &ex("windows.parquet")])],
            vec![v(&["datasets", "check", MISSING])],
            vec![v(&["datasets", "check"])],
        ),
    ]
}

#[test]
fn every_family_exits_0_on_success_1_on_failure_with_each_cause_once_and_2_on_misuse() {
    let d = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for (family, ok, fail, usage) in cases(d.path()) {
        for a in ok {
            let args: Vec<&str> = a.iter().map(String::as_str).collect();
            let (code, err) = run(&args);
            if code != Some(0) {
                bad.push(format!("{family}: {args:?}: {code:?}, expected 0: {err}"));
            }
        }
        for a in fail {
            let args: Vec<&str> = a.iter().map(String::as_str).collect();
            let (code, err) = run(&args);
            // One error line, the missing path named, the OS error once (the demo checks its
            // guest folder's files itself, naming what is missing).
            let os_errors = err.matches("No such file or directory").count();
            let once = os_errors == usize::from(family != "demo")
                && err.matches("error: ").count() == 1
                && err.contains("/nonexistent/migwatt-test");
            if code != Some(1) || !once {
                bad.push(format!(
                    "{family}: {args:?}: {code:?}, expected 1 and the cause once: {err}"
                ));
            }
        }
        for a in usage {
            let args: Vec<&str> = a.iter().map(String::as_str).collect();
            let (code, err) = run(&args);
            if code != Some(2) || !err.starts_with("error: ") {
                bad.push(format!("{family}: {args:?}: {code:?}, expected 2: {err}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A command stopped by a signal exits 128 + its number once it has stopped cleanly: the
/// emulator (which runs until stopped) removes its link first.
#[test]
fn a_signal_ends_a_command_with_130_or_143() {
    for (sig, want) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("meter0");
        let mut child = Command::new(bin())
            .args(["meter", "emulate", "--link"])
            .arg(&link)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(PathBuf::from(line.trim()), link);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{sig}: {err}");
        assert!(err.contains("stopped by SIG"), "{err}");
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "link left behind"
        );
    }
}

/// `migwatt --help` documents the statuses, as the README does.
#[test]
fn help_and_readme_document_every_exit_status() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for code in ["0", "1", "2", "3", "4", "130", "143"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help lacks exit status {code}:\n{help}"
        );
        assert!(
            readme.contains(&format!("| {code} |")),
            "README lacks exit status {code}"
        );
    }
}
