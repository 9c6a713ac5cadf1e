//! The hostile-input suite (issue 20): every class of input that used to destroy data, pass
//! impossible values through, drop samples, crash or hang, run against the real binary with
//! real files and real processes. One module per class of the issue.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use datasets::migrations::{write_migrations_file, MigrationRow};
use datasets::samples::{partition_dir, write_samples_file, SampleRow, FIELD_COUNT};
use datasets::windows::{write_windows, Role, WindowRow};

const S: i64 = 1_000_000_000;
/// 2025-11-25T00:00:00Z
const T0: i64 = 1_764_028_800 * S;

fn migwatt() -> StdCommand {
    StdCommand::cargo_bin("migwatt").unwrap()
}

/// Run, returning (exit code, stdout, stderr).
fn run(cmd: &mut StdCommand) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "a panic: {err}");
    (status.code().unwrap_or(-1), out, err)
}

/// Run and expect a refusal (exit 1) whose message holds every one of `want`.
fn refused(cmd: &mut StdCommand, want: &[&str]) -> String {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 1, "expected exit 1\nstdout: {out}\nstderr: {err}");
    for w in want {
        assert!(err.contains(w), "missing {w:?} in: {err}");
    }
    err
}

/// Every file below `dir` whose name marks a temporary or half-written file.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.contains(".tmp-") || n.contains("emulator-tmp")
        })
        .collect()
}

fn sample(host: &str, i: i64, watts: f64) -> SampleRow {
    let mut fields = [None; FIELD_COUNT];
    fields[0] = Some(watts);
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
}

/// Host `host` sampled at whole seconds 0..n with power `f(second)`.
fn write_host(dir: &Path, host: &str, n: i64, f: impl Fn(i64) -> f64) -> PathBuf {
    let rows: Vec<SampleRow> = (0..n).map(|i| sample(host, i, f(i))).collect();
    let p = partition_dir(dir, host, "2025-11-25").join("0.parquet");
    write_samples_file(&p, host, &rows).unwrap();
    p
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

/// A samples dataset of hosts `a` and `b` and the windows of one migration between them.
fn energy_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let samples = dir.join("samples");
    write_host(&samples, "a", 60, |i| {
        100.0 + f64::from(i > 20 && i < 30) * 50.0
    });
    write_host(&samples, "b", 60, |_| 90.0);
    let windows = dir.join("windows.parquet");
    write_windows(
        &windows,
        &[
            window("m1", "a", Role::Source, 20, 31),
            window("m1", "b", Role::Destination, 20, 31),
        ],
    )
    .unwrap();
    (samples, windows)
}

fn integrate(samples: &Path, windows: &Path, out: &Path) -> StdCommand {
    let mut c = migwatt();
    c.arg("integrate")
        .arg("--samples-dir")
        .arg(samples)
        .arg("--windows")
        .arg(windows)
        .args(["--p0", "a=100", "b=90", "--out"])
        .arg(out);
    c
}

fn migration(i: i64) -> MigrationRow {
    MigrationRow {
        migration_id: format!("qemu-vm1-{i}"),
        hypervisor: "qemu".into(),
        vm: "vm1".into(),
        workload: Some("h2".into()),
        vm_mem_bytes: 134_217_728,
        page_size_bytes: 4096,
        start_utc_ns: Some(T0 + i * 100 * S),
        end_utc_ns: Some(T0 + (i * 100 + 4) * S),
        t_mig_s: 4.25,
        t_down_s: Some(0.059),
        t_down_method: "guest_stop_resume".into(),
        t_down_reported_s: Some(0.047),
        v_mig_bytes: 238_642_426,
        zero_pages: Some(33167),
        rounds: 11,
        converged: true,
        status: "completed".into(),
        bandwidth_limit_bytes_per_s: None,
        downtime_limit_s: Some(0.05),
        max_rounds: None,
        max_factor: None,
        auto_converge: Some(false),
        pre_dirty_rate_bytes_per_s: Some(8.0e6),
        pre_dirty_sample_s: Some(1.0),
        source_host: "src".into(),
        destination_host: "dst".into(),
        accelerator: None,
        probe_dirty_rate_bytes_per_s: None,
        probe_hot_set_bytes: None,
        probe_nonzero_share: None,
        memory_verified: None,
        memory_mismatch_pages: None,
    }
}

fn wattsup(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wattsup")
        .join(name)
}

/// Wait for a child with a generous hang guard (not a performance limit).
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Class 1: no command replaces, truncates or deletes what it was not asked to write.
mod outputs {
    use super::*;

    #[test]
    fn integrate_never_writes_over_or_into_its_inputs() {
        let d = tempfile::tempdir().unwrap();
        let (samples, windows) = energy_inputs(d.path());
        let before = std::fs::read(&windows).unwrap();
        refused(
            &mut integrate(&samples, &windows, &windows),
            &["is the input --windows", "nothing was written"],
        );
        assert_eq!(std::fs::read(&windows).unwrap(), before);
        let inside = samples.join("host=a/date=2025-11-25/energy.parquet");
        refused(
            &mut integrate(&samples, &windows, &inside),
            &["inside the input folder --samples-dir"],
        );
        assert!(!inside.exists());
        let out = d.path().join("e.parquet");
        refused(
            integrate(&samples, &windows, &out)
                .arg("--quality")
                .arg(&out),
            &["--quality names the same file as --out"],
        );
        assert!(!out.exists());
        // A failed integrate leaves nothing: not even the quality report.
        let dir_out = d.path().join("a-folder.parquet");
        std::fs::create_dir(&dir_out).unwrap();
        refused(
            &mut integrate(&samples, &windows, &dir_out),
            &["is a directory"],
        );
        assert!(!d.path().join("a-folder.quality.parquet").exists());
        assert!(temporaries(d.path()).is_empty());
        // And the same command with a proper output works.
        let (code, _, err) = run(&mut integrate(&samples, &windows, &out));
        assert_eq!(code, 0, "{err}");
        assert!(out.is_file() && d.path().join("e.quality.parquet").is_file());
    }

    #[test]
    fn windows_evaluate_and_decode_never_replace_their_inputs() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        let mig = runs.join("migrations/a.parquet");
        write_migrations_file(&mig, &[migration(0), migration(1)]).unwrap();
        let before = std::fs::read(&mig).unwrap();
        refused(
            migwatt()
                .args(["calibrate", "windows", "--migrations"])
                .arg(&mig)
                .arg("--out")
                .arg(&mig),
            &["is the input --migrations"],
        );
        refused(
            migwatt()
                .args(["evaluate", "--rate", "1Gbit/s", "--migrations-dir"])
                .arg(&runs)
                .arg("--out")
                .arg(runs.join("migrations/evaluation.parquet")),
            &["inside the input folder --migrations-dir"],
        );
        assert_eq!(std::fs::read(&mig).unwrap(), before);
        assert!(!runs.join("migrations/evaluation.parquet").exists());
        let raw = d.path().join("same.raw");
        std::fs::copy(wattsup("fan.raw"), &raw).unwrap();
        let raw_before = std::fs::read(&raw).unwrap();
        refused(
            migwatt()
                .args(["meter", "decode"])
                .arg(&raw)
                .arg("--out")
                .arg(&raw),
            &["is the input INPUT"],
        );
        assert_eq!(std::fs::read(&raw).unwrap(), raw_before);
    }

    #[test]
    fn devices_and_links_to_streams_are_never_replaced_even_with_force() {
        let d = tempfile::tempdir().unwrap();
        refused(
            migwatt().args(["calibrate", "init", "--force", "/dev/null"]),
            &["/dev/null", "character device"],
        );
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let link = d.path().join("to-stdout.toml");
        std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
        refused(
            migwatt().args(["calibrate", "init", "--force"]).arg(&link),
            &["symbolic link into /proc/self/fd/1"],
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A regular file is what --force is for.
        let cfg = d.path().join("campaign.toml");
        std::fs::write(&cfg, "old").unwrap();
        let (code, _, err) = run(migwatt().args(["calibrate", "init", "--force"]).arg(&cfg));
        assert_eq!(code, 0, "{err}");
        assert!(std::fs::read_to_string(&cfg).unwrap().contains("[source]"));
    }

    #[test]
    fn the_emulator_link_never_replaces_a_file_or_leaves_a_temporary() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("meter0");
        std::fs::write(&file, "precious").unwrap();
        refused(
            migwatt()
                .args(["meter", "emulate", "--duration", "1s", "--link"])
                .arg(&file),
            &["--link", "exists and is not a symbolic link"],
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
        let folder = d.path().join("meter1");
        std::fs::create_dir(&folder).unwrap();
        refused(
            migwatt()
                .args(["meter", "emulate", "--duration", "1s", "--link"])
                .arg(&folder),
            &["is a folder"],
        );
        assert!(folder.is_dir());
        assert!(
            temporaries(d.path()).is_empty(),
            "{:?}",
            temporaries(d.path())
        );
    }

    #[test]
    fn a_campaign_never_writes_into_a_folder_that_is_not_a_campaign() {
        let d = tempfile::tempdir().unwrap();
        let theirs = d.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("report.html"), "mine").unwrap();
        for (out, want) in [
            (theirs.display().to_string(), "not a campaign folder"),
            ("/".to_string(), "the root folder"),
        ] {
            let cfg = super::names::config(d.path(), "node-a", "node-b", &out);
            refused(
                migwatt().args(["calibrate", "run"]).arg(&cfg),
                &[want, "`out`"],
            );
        }
        assert_eq!(
            std::fs::read_to_string(theirs.join("report.html")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    }
}

/// Class 2: impossible values are refused at the door with file, row and column.
mod values {
    use super::*;

    #[test]
    fn impossible_samples_are_refused_by_baseline_and_integrate() {
        let d = tempfile::tempdir().unwrap();
        let (samples, windows) = energy_inputs(d.path());
        // Another segment of host a with a negative reading, and a copy of a sample.
        let bad = partition_dir(&samples, "a", "2025-11-25").join("1.parquet");
        let rows: Vec<SampleRow> = (60..65)
            .map(|i| sample("a", i, if i == 62 { -40.0 } else { 100.0 }))
            .collect();
        write_samples_file(&bad, "a", &rows).unwrap();
        let out = d.path().join("e.parquet");
        refused(
            &mut integrate(&samples, &windows, &out),
            &[
                "1.parquet",
                "row 2: column 'watts': -40, expected a finite number >= 0 (W)",
            ],
        );
        refused(
            migwatt()
                .args(["meter", "baseline", "--host", "a", "--samples-dir"])
                .arg(&samples),
            &["row 2: column 'watts'"],
        );
        assert!(!out.exists());
        // The same sample in two files would be counted twice: refused.
        write_samples_file(&bad, "a", &[sample("a", 5, 100.0)]).unwrap();
        refused(
            &mut integrate(&samples, &windows, &out),
            &["appears in more than one file", "0.parquet", "1.parquet"],
        );
    }

    #[test]
    fn seconds_for_nanoseconds_and_impossible_p0_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (samples, _) = energy_inputs(d.path());
        let windows = d.path().join("w.csv");
        std::fs::write(
            &windows,
            "migration_id,host,role,start_utc_ns,end_utc_ns,v_mig_bytes\n\
             m1,a,source,1764028820,1764028831,5\nm1,b,destination,1764028820,1764028831,5\n",
        )
        .unwrap();
        let out = d.path().join("e.parquet");
        refused(
            &mut integrate(&samples, &windows, &out),
            &[
                "w.csv",
                "row 0: column 'start_utc_ns': 1764028820 is not ns",
            ],
        );
        let (samples, windows) = energy_inputs(&d.path().join("ok"));
        for p0 in ["a=1e308", "a=-5", "a=NaN"] {
            let (code, _, err) = run(migwatt()
                .arg("integrate")
                .arg("--samples-dir")
                .arg(&samples)
                .arg("--windows")
                .arg(&windows)
                .args(["--p0", p0, "b=90", "--out"])
                .arg(&out));
            assert_eq!(code, 2, "{p0}: {err}");
            assert!(err.contains(p0), "{err}");
        }
        let baseline = d.path().join("p0-a.json");
        std::fs::write(
            &baseline,
            r#"{"kind":"baseline","schema_version":"1.0.0","host":"a","p0_watts":-5.0,"median_watts":0,"spread_w":0,"min_watts":0,"max_watts":0,"sample_count":1,"dropped_flagged":0,"start_utc_ns":0,"end_utc_ns":0,"start":"","end":"","duration_s":0,"meter_id":"","method":"range","max_spread_w":1}"#,
        )
        .unwrap();
        refused(
            migwatt()
                .arg("integrate")
                .arg("--samples-dir")
                .arg(&samples)
                .arg("--windows")
                .arg(&windows)
                .arg("--baseline")
                .arg(&baseline)
                .args(["--p0", "b=90", "--out"])
                .arg(&out),
            &["p0-a.json", "p0_watts -5"],
        );
        assert!(!out.exists());
    }

    #[test]
    fn duplicate_and_non_finite_energies_never_reach_a_model() {
        let d = tempfile::tempdir().unwrap();
        let head = "migration_id,v_mig_bytes,e_source_j,e_destination_j,e_mig_j,coverage,\
                    p0_source_w,p0_destination_w,source_host,destination_host,start_utc_ns,end_utc_ns\n";
        let row = |id: &str, v: u64, e: &str| {
            format!("{id},{v},1,1,{e},1,100,90,a,b,{T0},{}\n", T0 + 10 * S)
        };
        let models = d.path().join("models");
        let dup = d.path().join("dup.csv");
        std::fs::write(
            &dup,
            format!(
                "{head}{}{}{}{}",
                row("m1", 1 << 20, "10"),
                row("m2", 2 << 20, "20"),
                row("m3", 3 << 20, "31"),
                row("m2", 2 << 20, "20")
            ),
        )
        .unwrap();
        refused(
            migwatt()
                .args(["train", "energy", "--folds", "0", "--data"])
                .arg(&dup)
                .arg("--out-dir")
                .arg(&models),
            &["dup.csv", "duplicate key (migration_id=m2), first at row 1"],
        );
        let nan = d.path().join("nan.csv");
        std::fs::write(
            &nan,
            format!(
                "{head}{}{}{}",
                row("m1", 1 << 20, "10"),
                row("m2", 2 << 20, "NaN"),
                row("m3", 3 << 20, "31")
            ),
        )
        .unwrap();
        refused(
            migwatt()
                .args(["train", "energy", "--folds", "0", "--data"])
                .arg(&nan)
                .arg("--out-dir")
                .arg(&models),
            &[
                "nan.csv",
                "row 1: column 'e_mig_j': NaN, expected a finite number",
            ],
        );
        assert!(!models.join("energy").join("v1.json").exists());
        // Evaluate reads measured energies through the same rules.
        let good = d.path().join("good.csv");
        std::fs::write(
            &good,
            format!(
                "{head}{}{}{}",
                row("m1", 1 << 20, "10"),
                row("m2", 2 << 20, "20"),
                row("m3", 3 << 20, "31")
            ),
        )
        .unwrap();
        let (code, _, err) = run(migwatt()
            .env("MIGWATT_QUIET", "1")
            .args(["train", "energy", "--folds", "0", "--data"])
            .arg(&good)
            .arg("--out-dir")
            .arg(&models));
        assert_eq!(code, 0, "{err}");
        let runs = d.path().join("runs");
        write_migrations_file(&runs.join("migrations/a.parquet"), &[migration(0)]).unwrap();
        refused(
            migwatt()
                .args(["evaluate", "--rate", "1Gbit/s", "--migrations-dir"])
                .arg(&runs)
                .arg("--energy-model")
                .arg(models.join("energy"))
                .arg("--energy")
                .arg(&nan),
            &[
                "nan.csv",
                "row 1: column 'e_mig_j': NaN, expected a finite number",
            ],
        );
        // A coefficient file claiming alpha = 1e308 J/B: the prediction overflows, refused.
        let mut f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(models.join("energy/v1.json")).unwrap())
                .unwrap();
        f["coefficients"][0]["estimate"] = serde_json::json!(1e308);
        let hostile = d.path().join("alpha.json");
        std::fs::write(&hostile, f.to_string()).unwrap();
        refused(
            migwatt()
                .args(["predict", "--vm-mem", "1GiB", "--dirty-rate", "10MB/s"])
                .args(["--rate", "1Gbit/s", "--energy-model"])
                .arg(&hostile),
            &["E_mig comes out as inf J", "out of any plausible range"],
        );
    }

    #[test]
    fn impossible_migrations_and_sizes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        let mut neg = migration(1);
        neg.t_mig_s = -4.0;
        write_migrations_file(&runs.join("migrations/a.parquet"), &[migration(0), neg]).unwrap();
        refused(
            migwatt()
                .args(["evaluate", "--rate", "1Gbit/s", "--migrations-dir"])
                .arg(&runs),
            &["a.parquet", "row 1: column 't_mig_s': -4"],
        );
        write_migrations_file(&runs.join("migrations/a.parquet"), &[migration(0)]).unwrap();
        write_migrations_file(&runs.join("migrations/b.parquet"), &[migration(0)]).unwrap();
        refused(
            migwatt()
                .args(["evaluate", "--rate", "1Gbit/s", "--migrations-dir"])
                .arg(&runs),
            &["b.parquet", "duplicate key (migration_id=qemu-vm1-0)"],
        );
        // A flag value out of range is a usage error (exit 2), named by clap.
        let (code, _, err) = run(migwatt().args([
            "predict",
            "--vm-mem",
            "1e308B",
            "--dirty-rate",
            "10MB/s",
            "--rate",
            "1Gbit/s",
        ]));
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--vm-mem") && err.contains("beyond any plausible value"),
            "{err}"
        );
    }
}

/// Class 3: `meter recover` never drops a sample.
mod recovery {
    use super::*;

    fn journal_line(r: &SampleRow) -> String {
        let mut s = format!(
            "{},{},{},{},{},,{}",
            r.meter_id, r.utc_ns, r.mono_ns, r.seq, r.connection, r.flags
        );
        for f in &r.fields {
            s.push(',');
            if let Some(v) = f {
                s += &v.to_string();
            }
        }
        s + "\n"
    }

    #[test]
    fn a_journal_without_header_and_one_beside_a_corrupt_segment_lose_nothing() {
        let d = tempfile::tempdir().unwrap();
        let part = partition_dir(d.path(), "h1", "2025-11-25");
        std::fs::create_dir_all(&part).unwrap();
        // Header lost: the first line is a sample.
        let first: Vec<SampleRow> = (0..4).map(|i| sample("h1", i, 100.0 + i as f64)).collect();
        let text: String = first.iter().map(journal_line).collect();
        std::fs::write(part.join(format!(".seg-{T0}-999991.wal")), text).unwrap();
        // A journal whose Parquet file of the same stem is corrupt.
        let second: Vec<SampleRow> = (10..13).map(|i| sample("h1", i, 120.0)).collect();
        let stem = format!("seg-{}-999992", T0 + 10 * S);
        let text: String = std::iter::once("# migwatt samples journal v1 host=h1\n".to_string())
            .chain(second.iter().map(journal_line))
            .collect();
        std::fs::write(part.join(format!(".{stem}.wal")), text).unwrap();
        std::fs::write(part.join(format!("{stem}.parquet")), b"PAR1 garbage").unwrap();
        let (code, out, err) = run(migwatt().args(["meter", "recover"]).arg(d.path()));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("recovered 7 samples"), "{out}");
        assert!(out.contains("header line lost"), "{out}");
        assert!(out.contains("set aside whole"), "{out}");
        let back = datasets::samples::read_samples(d.path()).unwrap();
        let mut want = first;
        want.extend(second);
        assert_eq!(back.len(), want.len());
        for (b, w) in back.iter().zip(&want) {
            assert_eq!((b.utc_ns, b.watts()), (w.utc_ns, w.watts()));
        }
        let aside = common::files_under(&d.path().join("_setaside"));
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), b"PAR1 garbage");
        assert!(common::files_under(d.path())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".wal")));
    }
}

/// Class 4: SIGINT/SIGTERM stop cleanly, and concurrent runs into one model folder take turns.
mod signals {
    use super::*;

    fn table(dir: &Path, rows: usize) -> PathBuf {
        let p = dir.join("xy.parquet");
        let x: Vec<f64> = (0..rows).map(|i| (i % 1000) as f64).collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, x)| 3.0 * x + 7.0 + (i % 7) as f64)
            .collect();
        datasets::table::write_f64_columns(&p, &[("x", x), ("y", y)]).unwrap();
        p
    }

    fn train(data: &Path, out: &Path) -> StdCommand {
        let mut c = migwatt();
        c.args([
            "train",
            "linear",
            "--target",
            "y",
            "--features",
            "x",
            "--name",
            "m",
        ])
        .arg("--data")
        .arg(data)
        .arg("--out-dir")
        .arg(out);
        c
    }

    #[test]
    fn sigterm_in_the_residuals_phase_removes_the_temporary_file_and_exits_143() {
        let d = tempfile::tempdir().unwrap();
        let data = table(d.path(), 1_000_000);
        let models = d.path().join("models");
        // An earlier version, which must stay as it was.
        let (code, _, err) = run(train(&data, &models).args(["--folds", "0"]));
        assert_eq!(code, 0, "{err}");
        let v1 = std::fs::read(models.join("m/v1.json")).unwrap();
        let mut child = train(&data, &models)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut l = String::new();
            assert!(
                lines.read_line(&mut l).unwrap() > 0,
                "no residuals phase: {seen}"
            );
            seen += &l;
            if l.contains("writing the residuals") {
                break;
            }
        }
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_exit(&mut child);
        let mut rest = String::new();
        lines.read_to_string(&mut rest).unwrap();
        assert_eq!(st.code(), Some(143), "{seen}{rest}");
        assert!(rest.contains("stopped by SIGTERM"), "{rest}");
        assert!(
            temporaries(&models).is_empty(),
            "{:?}",
            temporaries(&models)
        );
        assert!(!models.join("m/v2.json").exists());
        assert!(!models.join("m/v2.residuals.parquet").exists());
        assert_eq!(std::fs::read(models.join("m/v1.json")).unwrap(), v1);
        assert_eq!(
            std::fs::read_to_string(models.join("m/latest")).unwrap(),
            "v1.json\n"
        );
    }

    #[test]
    fn concurrent_trains_into_one_folder_each_publish_a_whole_version() {
        let d = tempfile::tempdir().unwrap();
        let data = table(d.path(), 200_000);
        let models = d.path().join("models");
        let children: Vec<Child> = (0..4)
            .map(|_| {
                train(&data, &models)
                    .env("MIGWATT_QUIET", "1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            let st = wait_exit(&mut c);
            let mut err = String::new();
            c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(st.success(), "{err}");
        }
        for v in 1..=4 {
            let f = trainer::coef::load(&models.join(format!("m/v{v}.json"))).unwrap();
            let residuals = models.join("m").join(&f.provenance.residuals_file);
            assert!(residuals.is_file(), "v{v} lost {}", residuals.display());
            assert_eq!(
                datasets::residuals::read_residual_column(&residuals)
                    .unwrap()
                    .len(),
                200_000
            );
        }
        assert_eq!(
            std::fs::read_to_string(models.join("m/latest")).unwrap(),
            "v4.json\n"
        );
        assert!(temporaries(&models).is_empty());
    }
}

/// Class 5: a closed stdout ends quietly; values that would make a loop unbounded are refused.
mod hangs_and_panics {
    use super::*;

    #[test]
    fn closing_stdout_early_is_not_a_panic() {
        // Megabytes of JSON lines into a pipe closed at once: writes fail with EPIPE.
        let mut child = migwatt()
            .args(["meter", "decode"])
            .arg(wattsup("iphone3gs.raw"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let st = wait_exit(&mut child);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!err.contains("panicked"), "{err}");
        assert!(matches!(st.code(), Some(0) | Some(141)), "{st}: {err}");
        assert!(err.contains("decoded"), "{err}");
    }

    #[test]
    fn models_list_into_a_closed_pipe_is_quiet() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("xy.csv");
        let text: String = std::iter::once("x,y\n".to_string())
            .chain((0..50).map(|i| format!("{i},{}\n", 2 * i + 1 + i % 3)))
            .collect();
        std::fs::write(&data, text).unwrap();
        for name in ["a", "b", "c"] {
            let (code, _, err) = run(migwatt()
                .env("MIGWATT_QUIET", "1")
                .args([
                    "train",
                    "linear",
                    "--target",
                    "y",
                    "--features",
                    "x",
                    "--name",
                    name,
                ])
                .arg("--data")
                .arg(&data)
                .arg("--out-dir")
                .arg(d.path().join("models")));
            assert_eq!(code, 0, "{err}");
        }
        // `| true`: the reader is gone before the first line.
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let out = migwatt()
            .args(["models", "list"])
            .arg(d.path().join("models"))
            .stdout(Stdio::from(std::fs::File::from(w)))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.is_empty(), "{err}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{}",
            out.status
        );
    }

    #[test]
    fn unbounded_speeds_and_durations_are_refused() {
        refused(
            migwatt().args(["meter", "emulate", "--speed", "1e308", "--duration", "1s"]),
            &["speed must be > 0 and at most 10000"],
        );
        let (code, _, err) = run(migwatt().args(["meter", "emulate", "--duration", "1e300s"]));
        assert_eq!(code, 2, "{err}");
        let (code, _, err) =
            run(migwatt().args(["meter", "emulate", "--duration", "99999999999h"]));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("beyond any plausible value"), "{err}");
    }

    #[test]
    fn the_fastest_emulator_stops_on_sigterm() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("meter0");
        let mut child = migwatt()
            .args(["meter", "emulate", "--speed", "10000", "--link"])
            .arg(&link)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(PathBuf::from(line.trim()), link);
        // Let it run flat out for a moment, then stop it.
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        let st = wait_exit(&mut child);
        assert_eq!(st.code(), Some(143), "{st}");
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "link left behind"
        );
    }
}

/// Class 6: names that become path components cannot escape their folder.
pub(crate) mod names {
    use super::*;

    /// A campaign config with emulated meters (nothing to plug in) writing to `out`.
    pub(crate) fn config(dir: &Path, src: &str, dst: &str, out: &str) -> PathBuf {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/examples/campaign");
        let p = dir.join(format!("campaign-{}.toml", dir.read_dir().unwrap().count()));
        std::fs::write(
            &p,
            format!(
                "name = \"hostile\"\nout = \"{out}\"\nbaseline_s = 6\nsettle_s = 2.2\n\n\
                 [source]\nhost = \"{src}\"\nmeter = \"emulated\"\n\n\
                 [destination]\nhost = \"{dst}\"\nmeter = \"emulated\"\n\n\
                 [hypervisor]\nkind = \"replay\"\nreplay = \"{}\"\nreplay_count = 2\n",
                examples.display()
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn campaign_and_capture_refuse_escaping_and_empty_host_names() {
        let d = tempfile::tempdir().unwrap();
        let nest = d.path().join("a/b");
        std::fs::create_dir_all(&nest).unwrap();
        for (src, want) in [
            ("../../evil", "source.host: host name '../../evil'"),
            ("", "source.host: host name '': empty"),
        ] {
            let cfg = config(&nest, src, "node-b", "out");
            refused(migwatt().args(["calibrate", "run"]).arg(&cfg), &[want]);
        }
        assert!(!d.path().join("evil").exists() && !nest.join("out").exists());
        for port in ["../../evil=/dev/null", "=/dev/null", ".hidden=/dev/null"] {
            // A flag value clap refuses: a usage error (exit 2).
            let (code, _, err) = run(migwatt()
                .args([
                    "meter",
                    "capture",
                    "--duration",
                    "1s",
                    "--port",
                    port,
                    "--out-dir",
                ])
                .arg(d.path().join("samples")));
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("--port") && err.contains("host name"), "{err}");
        }
        assert!(!d.path().join("samples").exists());
    }
}

/// Class 7: every line a parser cannot use is a problem with file and line.
mod parsers {
    use super::*;

    #[test]
    fn an_overflowing_xen_count_is_a_problem_not_a_lost_round() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("xend.log");
        std::fs::write(
            &log,
            "[2012-03-09 13:37:10 xend 3113] DEBUG (XendCheckpoint:124) [xc_save]: /usr/lib/xen/bin/xc_save 22 7 0 0 1\n\
             [2012-03-09 13:37:10 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 1   0%\r 1: sent 1000, skipped 24, delta 4000ms, dom0 50%, target 40%, sent 8Mb/s, dirtied 1Mb/s 300 pages\n\
             [2012-03-09 13:37:14 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 2   0%\r 2: sent 18446744073709551616, skipped 50, delta 1000ms, dom0 50%, target 40%, sent 8Mb/s, dirtied 1Mb/s 40 pages\n\
             [2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 3   0%\r 3: sent 40, skipped 0, Start last iteration\n\
             [2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) Total pages sent= 1290 (1.25x)\n\
             [2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) All memory is saved\n",
        )
        .unwrap();
        let runs = d.path().join("runs");
        refused(
            migwatt()
                .args(["calibrate", "ingest", "xen"])
                .arg(&log)
                .arg("--out-dir")
                .arg(&runs),
            &[
                "xend.log:3: unreadable iteration line: sent '18446744073709551616' is not a page count",
                "xend.log:2: migration not recorded: line 3",
            ],
        );
        assert!(!runs.join("migrations").exists());
    }
}
