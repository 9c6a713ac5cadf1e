//! `migwatt calibrate run` end to end: emulated meters on real pseudo-terminals, migrations
//! replayed from the shipped real QEMU migrations (or, in the ignored test, real QEMU
//! migrations), and a campaign killed twice at random points that must end with the same
//! datasets as an uninterrupted one, losing and duplicating no sample.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::assert::OutputAssertExt;
use assert_cmd::cargo::CommandCargoExt;
use datasets::migrations::MigrationRow;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/examples/campaign")
}

fn replay_config(dir: &Path, count: usize) -> PathBuf {
    let p = dir.join("campaign.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "resume"
out = "out"
baseline_s = 6
settle_s = 2.2

[source]
host = "src-host"
meter = "emulated"

[destination]
host = "dst-host"
meter = "emulated"

[hypervisor]
kind = "replay"
replay = "{}"
replay_count = {count}
"#,
            examples().display()
        ),
    )
    .unwrap();
    p
}

fn run_cmd(config: &Path) -> Command {
    let mut c = Command::cargo_bin("migwatt").unwrap();
    c.args(["calibrate", "run"]).arg(config);
    c
}

/// Run to the end; exit 0 (accepted) or 3 (models written, a threshold failed).
fn run_to_end(config: &Path) -> String {
    let out = run_cmd(config).output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "calibrate run failed ({}):\n{text}",
        out.status
    );
    text
}

fn spawn(config: &Path, log: &Path) -> Child {
    run_cmd(config)
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(log).unwrap(),
        ))
        .spawn()
        .unwrap()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn migrations(out: &Path) -> BTreeMap<String, MigrationRow> {
    datasets::migrations::read_migrations(&out.join("migrations"))
        .unwrap()
        .into_iter()
        .map(|r| (r.migration_id.clone(), r))
        .collect()
}

/// Every host's sample times, sorted.
fn sample_times(out: &Path) -> BTreeMap<String, Vec<i64>> {
    let by_host = datasets::samples::sample_files_by_host(&out.join("samples")).unwrap();
    by_host
        .into_iter()
        .map(|(h, files)| {
            let mut t = datasets::samples::read_power_series(&h, &files, None)
                .unwrap()
                .utc_ns;
            t.sort();
            (h, t)
        })
        .collect()
}

fn seed() -> u64 {
    std::env::var("MIGWATT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ns() as u64 % 1_000_000)
}

/// Uniform in [lo, hi) from a small xorshift, so a failing seed can be replayed.
fn uniform(state: &mut u64, lo: f64, hi: f64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    lo + (hi - lo) * ((*state % 1_000_000) as f64 / 1e6)
}

#[test]
fn a_campaign_killed_twice_ends_like_an_uninterrupted_one() {
    let s = seed();
    eprintln!("MIGWATT_TEST_SEED={s}");
    let mut rng = s.wrapping_mul(6364136223846793005).max(1);

    let a = tempfile::tempdir().unwrap();
    let text = run_to_end(&replay_config(a.path(), 3));
    let reference = migrations(&a.path().join("out"));
    assert_eq!(reference.len(), 3, "{text}");

    let b = tempfile::tempdir().unwrap();
    let config = replay_config(b.path(), 3);
    let out = b.path().join("out");
    let mut kills = Vec::new();
    let mut starts = Vec::new();
    for k in 0..2 {
        let log = b.path().join(format!("run{k}.log"));
        let started = now_ns();
        let mut child = spawn(&config, &log);
        // The whole campaign takes about 40 s: kills land in the capture start-up, the
        // baseline or a migration.
        let after = uniform(&mut rng, 3.0, 16.0);
        let deadline = Instant::now() + Duration::from_secs_f64(after);
        while Instant::now() < deadline {
            assert!(
                child.try_wait().unwrap().is_none(),
                "run {k} ended before its kill:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        kills.push(now_ns());
        starts.push(started);
        child.wait().unwrap();
        eprintln!("killed run {k} after {after:.1} s");
    }
    let text = run_to_end(&config);
    assert!(text.contains("resuming"), "{text}");

    // Same migrations, same recorded content (replays: volumes, rounds, durations).
    let got = migrations(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "{text}"
    );
    for (id, r) in &reference {
        let g = &got[id];
        assert_eq!(
            (g.v_mig_bytes, g.rounds, g.converged, &g.workload, g.t_mig_s),
            (r.v_mig_bytes, r.rounds, r.converged, &r.workload, r.t_mig_s),
            "{id}"
        );
        // A migration cut by a kill was redone: it lies after the last kill, or entirely
        // between kills.
        let (start, end) = (g.start_utc_ns.unwrap(), g.end_utc_ns.unwrap());
        assert!(
            kills.iter().all(|&k| k <= start || k >= end),
            "{id} spans a kill"
        );
    }
    let rounds_a = datasets::rounds::read_rounds(&a.path().join("out/rounds")).unwrap();
    let rounds_b = datasets::rounds::read_rounds(&out.join("rounds")).unwrap();
    assert_eq!(rounds_a.len(), rounds_b.len());
    let ea = datasets::energy::read_energy(&a.path().join("out/energy.parquet")).unwrap();
    let eb = datasets::energy::read_energy(&out.join("energy.parquet")).unwrap();
    let ids = |e: &[datasets::energy::EnergyRow]| {
        let mut v: Vec<_> = e.iter().map(|r| r.migration_id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&ea), ids(&eb));
    for e in &eb {
        assert!(e.coverage >= 0.98, "{e:?}");
    }

    // No duplicated sample: 1 Hz records, strictly increasing times at least 0.5 s apart.
    // No lost sample: the capture kept every record up to each kill, and the only holes in
    // the samples are the kills themselves (a restart takes a few seconds).
    let times = sample_times(&out);
    assert_eq!(times.len(), 2);
    for (host, t) in &times {
        for w in t.windows(2) {
            assert!(
                w[1] - w[0] >= 500_000_000,
                "{host}: samples {} and {} ns",
                w[0],
                w[1]
            );
            if w[1] - w[0] > 2_500_000_000 {
                assert!(
                    kills.iter().any(|&k| w[0] <= k && k <= w[1]),
                    "{host}: a hole of {:.1} s from {} with no kill in it",
                    (w[1] - w[0]) as f64 / 1e9,
                    w[0]
                );
            }
        }
        for (&k, &start) in kills.iter().zip(&starts) {
            // A capture that had begun before the kill lost at most the record in flight (a
            // lost journal would lose up to its 10 s flush period).
            if let Some(&last) = t.iter().rev().find(|&&x| start <= x && x <= k) {
                assert!(
                    k - last < 4_000_000_000,
                    "{host}: last sample {:.1} s before the kill",
                    (k - last) as f64 / 1e9
                );
            }
        }
    }
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap();
    assert_eq!(journal.matches("\"event\":\"started\"").count(), 3);
    assert!(out.join("report.html").is_file() && out.join("summary.json").is_file());

    // Done is done: a fourth run changes nothing and writes no new model version.
    let text = run_to_end(&config);
    assert!(text.contains("3 of 3 migrations done"), "{text}");
    let pair = out.join("models/src-host--dst-host/energy");
    assert!(
        !pair.join("v2.json").exists(),
        "a finished campaign retrained"
    );
}

/// A migration whose guest memory did not match (memory_verified = false, as `calibrate
/// migrate --verify` records it) measured a broken migration: the campaign keeps its record,
/// names it, leaves it out of the windows, energy and models, and exits 4. Here the replayed
/// migrations carry the mark (four of the shipped real QEMU migrations, one marked).
#[test]
fn a_mismatched_migration_is_named_left_out_of_the_models_and_exits_4() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("recorded");
    let mut rows = datasets::migrations::read_migrations(&examples().join("migrations")).unwrap();
    rows.sort_by_key(|r| r.v_mig_bytes);
    // Four spread over V_mig (the energy fit needs three left), the largest one marked.
    let picked: Vec<MigrationRow> = [0, rows.len() / 3, 2 * rows.len() / 3, rows.len() - 1]
        .iter()
        .map(|&i| {
            let mut r = rows[i].clone();
            let bad = i == rows.len() - 1;
            r.memory_verified = Some(!bad);
            r.memory_mismatch_pages = Some(if bad { 2 } else { 0 });
            r
        })
        .collect();
    let bad_recorded = picked[3].migration_id.clone();
    datasets::migrations::write_migrations_file(&src.join("migrations/m.parquet"), &picked)
        .unwrap();
    let rounds: Vec<_> = datasets::rounds::read_rounds(&examples().join("rounds"))
        .unwrap()
        .into_iter()
        .filter(|r| picked.iter().any(|m| m.migration_id == r.migration_id))
        .collect();
    datasets::rounds::write_rounds_file(&src.join("rounds/r.parquet"), &rounds).unwrap();
    let p = d.path().join("campaign.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "mismatch"
out = "out"
baseline_s = 6
settle_s = 2.2

[source]
host = "src-host"
meter = "emulated"

[destination]
host = "dst-host"
meter = "emulated"

[hypervisor]
kind = "replay"
replay = "{}"
replay_count = 4
"#,
            src.display()
        ),
    )
    .unwrap();
    let o = run_cmd(&p).output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(4), "{text}");
    let out = d.path().join("out");
    let recorded = migrations(&out);
    assert_eq!(recorded.len(), 4, "{text}");
    // The campaign names migrations after its plan; find the marked one by its volume.
    let bad_v = picked[3].v_mig_bytes;
    let bad: Vec<&MigrationRow> = recorded
        .values()
        .filter(|r| r.memory_verified == Some(false))
        .collect();
    assert_eq!(bad.len(), 1, "{text}");
    assert_eq!(bad[0].v_mig_bytes, bad_v, "{bad_recorded}");
    let bad_id = bad[0].migration_id.clone();
    assert!(
        text.contains("MEMORY MISMATCH in 1 migration(s), left out of the windows, energy and models")
            && text.contains(&bad_id)
            && text.contains("memory verified (guest RAM compared page by page before the destination ran): 3 of 4 checked"),
        "{text}"
    );
    let energy = datasets::energy::read_energy(&out.join("energy.parquet")).unwrap();
    assert_eq!(energy.len(), 3, "{text}");
    assert!(energy.iter().all(|e| e.migration_id != bad_id));
    let windows = datasets::windows::read_windows(&out.join("windows.parquet")).unwrap();
    assert!(windows.iter().all(|w| w.migration_id != bad_id));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["migrations"]["memory_mismatched"],
        serde_json::json!([bad_id])
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("MEMORY MISMATCH"), "{report}");
}

#[test]
fn init_writes_a_config_that_run_accepts_and_bad_configs_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.toml");
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "init"])
        .arg(&p)
        .assert()
        .success();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("[thresholds]") && text.contains("# "));
    // Refuses to overwrite.
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "init"])
        .arg(&p)
        .assert()
        .failure()
        .stderr(predicates::str::contains("already exists"));
    // A typo names the key and the file; nothing is created.
    std::fs::write(&p, text.replace("settle_s = 20", "setle_s = 20")).unwrap();
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "run"])
        .arg(&p)
        .assert()
        .failure()
        .stderr(predicates::str::contains("setle_s"))
        .stderr(predicates::str::contains("c.toml"));
    assert!(!d.path().join("calibration-node-a-to-node-b").exists());
    // The example's meters are not plugged in here: named at once, nothing created.
    std::fs::write(
        &p,
        text.replace("/dev/ttyUSB0", "/dev/migwatt-test-no-such-meter"),
    )
    .unwrap();
    Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "run"])
        .arg(&p)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "source.meter = \"/dev/migwatt-test-no-such-meter\": no such device",
        ));
    assert!(!d.path().join("calibration-node-a-to-node-b").exists());
}

/// Real QEMU: three live migrations of the test guest between two local QEMU processes,
/// measured by emulated meters whose power follows each migration's real throughput.
#[test]
#[ignore = "needs QEMU and the guest of scripts/setup-qemu.sh (run by scripts/test-all.sh)"]
fn calibrate_run_with_real_qemu_migrations() {
    let g = common::qemu::guest_dir();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("qemu.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "qemu-e2e"
out = "out"
baseline_s = 6
settle_s = 2.5

[source]
host = "qa"
meter = "emulated"

[destination]
host = "qb"
meter = "emulated"

[hypervisor]
kind = "qemu"
downtime_limit_ms = 50
timeout_s = 120
dirty_rate_sample_s = 1

[hypervisor.launch]
args = ["-cpu", "qemu64", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", "{g}/vmlinuz", "-initrd", "{g}/initramfs.cpio.gz",
        "-append", "console=ttyS0 rdinit=/init quiet {{workload_args}}"]
ready = "dirtier: ready"

[hypervisor.launch.workload_args]
dirty256 = "dirty_pages_per_s=256 dirty_hot_mib=8"
dirty2048 = "dirty_pages_per_s=2048 dirty_hot_mib=32"

[[vms]]
name = "tiny128m"
mem = "128MiB"

[plan]
workloads = ["dirty256", "dirty2048"]
bandwidths = ["24MiB/s", "48MiB/s"]
"#,
            g = g.display()
        ),
    )
    .unwrap();
    let text = run_to_end(&p);
    eprintln!("real-QEMU campaign on {}", common::qemu::qemu_version());
    let out = d.path().join("out");
    let rows = migrations(&out);
    assert_eq!(rows.len(), 4, "{text}");
    // The launcher chose the accelerator (KVM if it works here, else TCG) and started the
    // destinations with -S; every migration was verified before its destination ran.
    assert!(text.contains("memory verified (guest RAM compared page by page before the destination ran): 4 of 4 checked"), "{text}");
    for r in rows.values() {
        assert_eq!(r.memory_verified, Some(true), "{r:?}\n{text}");
        assert_eq!(r.memory_mismatch_pages, Some(0));
        assert!(
            matches!(r.accelerator.as_deref(), Some("kvm" | "tcg")),
            "{r:?}"
        );
        assert_eq!(r.t_down_method, "source_stop_destination_completed");
    }
    for r in rows.values() {
        assert_eq!(r.hypervisor, "qemu");
        assert!(r.converged, "{r:?}\n{text}");
        assert!(r.v_mig_bytes > 10_000_000, "{r:?}");
        assert_eq!(
            (r.source_host.as_str(), r.destination_host.as_str()),
            ("qa", "qb")
        );
        // The raw QMP log replays to the same row.
        let raw = out
            .join("raw")
            .join(format!("{}.qmp.jsonl", r.migration_id));
        let parsed = calibrate::ingest_file(
            calibrate::LogKind::Qemu,
            &raw,
            &calibrate::IngestOptions::default(),
        )
        .unwrap();
        assert_eq!(parsed.migrations[0].row.v_mig_bytes, r.v_mig_bytes);
    }
    // Faster links finish sooner.
    let t = |w: &str, b: &str| rows[&format!("tiny128m-{w}-{b}-r1")].t_mig_s;
    assert!(
        t("dirty256", "48MiBps") < t("dirty256", "24MiBps"),
        "{text}"
    );
    let energy = datasets::energy::read_energy(&out.join("energy.parquet")).unwrap();
    assert_eq!(energy.len(), 4, "{text}");
    for e in &energy {
        assert!(e.coverage >= 0.98 && e.e_mig_j > 0.0, "{e:?}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["hypervisor"], "qemu");
    assert_eq!(summary["migrations"]["memory_verified"], 4);
    assert!(out.join("models/qa--qb/energy/v1.json").is_file(), "{text}");
    assert!(common::validate_coefficient_files(&out.join("models")) >= 1);
    assert!(out.join("report.html").is_file());
}

/// Log kinds: the campaign runs `migrate` for every planned migration and ingests the log it
/// wrote. Here `migrate` copies real QMP logs of the example campaign (recorded long before
/// this capture), so no sample covers their windows: the campaign must still record the
/// migrations, then fail the thresholds saying why, and exit with status 3.
#[test]
fn log_kind_ingests_what_migrate_wrote_and_fails_thresholds_it_cannot_meet() {
    let d = tempfile::tempdir().unwrap();
    let raws = d.path().join("raws");
    std::fs::create_dir_all(&raws).unwrap();
    let mut src: Vec<_> = std::fs::read_dir(examples().join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    src.sort();
    let mut want = Vec::new();
    for (i, p) in src.iter().take(3).enumerate() {
        std::fs::copy(p, raws.join(format!("{}.qmp.jsonl", i + 1))).unwrap();
        let parsed =
            calibrate::ingest_file(calibrate::LogKind::Qemu, p, &Default::default()).unwrap();
        want.push(parsed.migrations[0].row.v_mig_bytes);
    }
    let p = d.path().join("logs.toml");
    std::fs::write(
        &p,
        r#"name = "logs"
out = "out"
baseline_s = 5
settle_s = 0.5

[source]
host = "la"
meter = "emulated"

[destination]
host = "lb"
meter = "emulated"

[hypervisor]
kind = "qemu-log"
migrate = "mkdir -p logs && cp raws/{repetition}.qmp.jsonl {log}"
log = "logs/{migration_id}.jsonl"

[[vms]]
name = "vm"
mem = "128MiB"

[plan]
workloads = ["w"]
repetitions = 3
"#,
    )
    .unwrap();
    let out = run_cmd(&p).output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    let rows = migrations(&d.path().join("out"));
    assert_eq!(rows.len(), 3, "{text}");
    for (i, v) in want.iter().enumerate() {
        let r = &rows[&format!("vm-w-default-r{}", i + 1)];
        assert_eq!(r.v_mig_bytes, *v);
        assert_eq!(r.workload.as_deref(), Some("w"));
        assert_eq!(
            (r.source_host.as_str(), r.destination_host.as_str()),
            ("la", "lb")
        );
        assert!(d
            .path()
            .join(format!("out/raw/{}.log", r.migration_id))
            .is_file());
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("out/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["accepted"], false);
    let verdicts = summary["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|v| v["passed"] == false), "{summary}");
    let coverage = &verdicts[2];
    assert_eq!(coverage["value"].as_f64(), Some(0.0), "{coverage}");
    assert!(
        coverage["detail"].as_str().unwrap().contains("--redo"),
        "{coverage}"
    );
    assert!(text.contains("NOT ACCEPTED"), "{text}");
    assert!(d.path().join("out/report.html").is_file(), "{text}");
}

/// Ctrl-C: the campaign stops at once (the running migration is abandoned, the capture is
/// closed cleanly), says how to resume, and the same command finishes the campaign.
#[test]
fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    let d = tempfile::tempdir().unwrap();
    let config = replay_config(d.path(), 3);
    let out = d.path().join("out");
    let log = d.path().join("first.log");
    let mut child = spawn(&config, &log);
    // Until the first migration has finished: the journal says so.
    let journal = out.join("journal.jsonl");
    let guard = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains("migration-done")
    {
        assert!(Instant::now() < guard, "no migration finished");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(st.code(), Some(130), "{st}: {text}");
    assert!(
        text.contains("run the same command again to resume"),
        "{text}"
    );
    // The capture closed its segments: no journal left behind, every sample in Parquet.
    let leftovers: Vec<_> = common::files_under(&out.join("samples"))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let j = std::fs::read_to_string(&journal).unwrap();
    assert!(!j.contains("\"finished\""), "{j}");
    let text = run_to_end(&config);
    assert!(text.contains("resuming"), "{text}");
    assert_eq!(migrations(&out).len(), 3, "{text}");
}

/// The real-lab path: QMP sockets named in the config, `prepare` starting the VM and the
/// incoming QEMU (here: shell scripts daemonizing two local QEMU processes), `cleanup`
/// stopping them. Two live migrations of the test guest.
#[test]
#[ignore = "needs QEMU and the guest of scripts/setup-qemu.sh (run by scripts/test-all.sh)"]
fn calibrate_run_drives_qemu_through_prepare_and_cleanup_hooks() {
    let g = common::qemu::guest_dir();
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // $1: guest memory in MiB, $2: kernel parameters of the workload.
    std::fs::write(
        d.path().join("start.sh"),
        format!(
            r#"set -e
common="-accel tcg -cpu qemu64 -nodefaults -display none -no-reboot -m $1M
  -kernel {g}/vmlinuz -initrd {g}/initramfs.cpio.gz"
rm -f src.serial
qemu-system-x86_64 $common -append "console=ttyS0 rdinit=/init quiet $2" \
  -qmp unix:dst.qmp,server=on,wait=off -serial file:dst.serial \
  -incoming tcp:127.0.0.1:{port} -daemonize -pidfile dst.pid
qemu-system-x86_64 $common -append "console=ttyS0 rdinit=/init quiet $2" \
  -qmp unix:src.qmp,server=on,wait=off -serial file:src.serial \
  -daemonize -pidfile src.pid
i=0
until grep -q "dirtier: ready" src.serial 2>/dev/null; do
  i=$((i+1)); [ $i -lt 3000 ] || {{ echo "guest not ready" >&2; exit 1; }}
  sleep 0.2
done
"#,
            g = g.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.path().join("stop.sh"),
        "for p in src.pid dst.pid; do [ -f $p ] && kill $(cat $p) 2>/dev/null; rm -f $p; done\n\
         while pgrep -f 'pidfile (src|dst).pid' >/dev/null 2>&1 && [ ${n:=0} -lt 100 ]; do n=$((n+1)); sleep 0.1; done\n\
         rm -f src.qmp dst.qmp\n",
    )
    .unwrap();
    let p = d.path().join("hooks.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "hooks"
out = "out"
baseline_s = 5
settle_s = 2.5

[source]
host = "ha"
meter = "emulated"

[destination]
host = "hb"
meter = "emulated"

[hypervisor]
kind = "qemu"
source_qmp = "src.qmp"
destination_qmp = "dst.qmp"
uri = "tcp:127.0.0.1:{port}"
downtime_limit_ms = 50
timeout_s = 120
dirty_rate_sample_s = 1
prepare = "sh start.sh {{vm_mem_mib}} 'dirty_pages_per_s=1024 dirty_hot_mib=16'"
cleanup = "sh stop.sh"
# The destination starts without -S: the collector holds it paused with `stop`.
verify = true
paused_hook = "echo {{migration_id}} $MIGWATT_SOURCE_QMP $MIGWATT_DEST_QMP >> paused.txt"

[[vms]]
name = "tiny128m"
mem = "128MiB"

[plan]
workloads = ["dirty1024"]
bandwidths = ["32MiB/s"]
repetitions = 2
"#
        ),
    )
    .unwrap();
    let text = run_to_end(&p);
    let out = d.path().join("out");
    let rows = migrations(&out);
    assert_eq!(rows.len(), 2, "{text}");
    for r in rows.values() {
        assert!(r.converged && r.v_mig_bytes > 10_000_000, "{r:?}\n{text}");
        assert_eq!(r.bandwidth_limit_bytes_per_s, Some(33_554_432.0), "{r:?}");
        assert_eq!(r.workload.as_deref(), Some("dirty1024"));
        assert_eq!(r.memory_verified, Some(true), "{r:?}\n{text}");
    }
    // The paused hook ran once per migration, with both QMP sockets in its environment.
    let hooked = std::fs::read_to_string(d.path().join("paused.txt")).unwrap();
    let lines: Vec<&str> = hooked.lines().collect();
    assert_eq!(lines.len(), 2, "{hooked}");
    for (l, id) in lines.iter().zip(rows.keys()) {
        assert_eq!(
            *l,
            format!(
                "{id} {} {}",
                d.path().join("src.qmp").display(),
                d.path().join("dst.qmp").display()
            )
        );
    }
    // cleanup ran after each migration: no QEMU left, no socket left.
    assert!(!d.path().join("src.pid").exists() && !d.path().join("src.qmp").exists());
    let energy = datasets::energy::read_energy(&out.join("energy.parquet")).unwrap();
    assert_eq!(energy.len(), 2, "{text}");
}

/// `migwatt demo --qemu`: real live migrations of the test guest, every one verified page by
/// page before its destination ran, and the demo's output and report say so.
#[test]
#[ignore = "needs QEMU and the guest of scripts/setup-qemu.sh (run by scripts/test-all.sh)"]
fn demo_qemu_verifies_every_migration() {
    let g = common::qemu::guest_dir();
    eprintln!("demo --qemu on {}", common::qemu::qemu_version());
    let d = tempfile::tempdir().unwrap();
    let o = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["demo", "--qemu", "--guest-dir"])
        .arg(&g)
        .arg("--out-dir")
        .arg(d.path())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("each verified"), "{text}");
    let run = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
        .unwrap();
    let rows = migrations(&run);
    assert_eq!(rows.len(), 8, "{text}");
    assert!(
        rows.values().all(|r| r.memory_verified == Some(true)),
        "{rows:#?}"
    );
    assert!(
        text.contains("memory verified (guest RAM compared page by page before the destination ran): 8 of 8 checked"),
        "{text}"
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("8 of 8 checked migrations matched")
            && report.contains("each verified: all guest RAM"),
        "{report}"
    );
}

/// Mean power of `host` over samples stamped in `(from, to]` (a record averages the second
/// before its stamp), and how many samples.
fn mean_power(out: &Path, host: &str, from: i64, to: i64) -> (f64, usize) {
    let by_host = datasets::samples::sample_files_by_host(&out.join("samples")).unwrap();
    let s = datasets::samples::read_power_series(host, &by_host[host], None).unwrap();
    let w: Vec<f64> = s
        .utc_ns
        .iter()
        .zip(&s.watts)
        .filter(|(t, _)| **t > from && **t <= to)
        .map(|(_, w)| *w)
        .collect();
    (w.iter().sum::<f64>() / w.len().max(1) as f64, w.len())
}

/// Real QEMU, the host activity model and the relay link: the emulated meters follow what
/// each host's QEMU does (CPU time from /proc, bytes through the relay), the relay paces
/// the migration at the plan's bandwidth (recorded as the migration's limit), the raw logs
/// hold the activity samples, and a replay of this campaign draws power from them.
#[test]
#[ignore = "needs QEMU and the guest of scripts/setup-qemu.sh (run by scripts/test-all.sh)"]
fn calibrate_run_power_follows_the_hosts_through_a_relay() {
    let g = common::qemu::guest_dir();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("qemu.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "power-e2e"
out = "out"
baseline_s = 6
settle_s = 4

[source]
host = "pa"
meter = "emulated"

[destination]
host = "pb"
meter = "emulated"

[hypervisor]
kind = "qemu"
downtime_limit_ms = 100
timeout_s = 120
dirty_rate_sample_s = 1

[hypervisor.launch]
args = ["-cpu", "qemu64", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", "{g}/vmlinuz", "-initrd", "{g}/initramfs.cpio.gz",
        "-append", "console=ttyS0 rdinit=/init quiet {{workload_args}}"]
ready = "dirtier: ready"
link = "relay"

[hypervisor.launch.workload_args]
dirty512 = "dirty_pages_per_s=512 dirty_hot_mib=8"
dirty2048 = "dirty_pages_per_s=2048 dirty_hot_mib=32"

[[vms]]
name = "tiny128m"
mem = "128MiB"

[plan]
workloads = ["dirty512", "dirty2048"]
bandwidths = ["16MiB/s", "32MiB/s"]
"#,
            g = g.display()
        ),
    )
    .unwrap();
    let text = run_to_end(&p);
    eprintln!("{text}");
    let out = d.path().join("out");
    let rows = migrations(&out);
    assert_eq!(rows.len(), 4, "{text}");
    let p0 = |h: &str| -> f64 {
        let b: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("baselines/p0-{h}.json"))).unwrap(),
        )
        .unwrap();
        b["p0_watts"].as_f64().unwrap()
    };
    let (p0a, p0b) = (p0("pa"), p0("pb"));
    for r in rows.values() {
        assert!(r.converged && r.memory_verified == Some(true), "{r:?}");
        // The relay's rate is the migration's bandwidth limit.
        let want = if r.migration_id.contains("16MiBps") {
            16 << 20
        } else {
            32 << 20
        };
        assert_eq!(r.bandwidth_limit_bytes_per_s, Some(want as f64), "{r:?}");
        let raw = std::fs::read(
            out.join("raw")
                .join(format!("{}.qmp.jsonl", r.migration_id)),
        )
        .unwrap();
        // `ingest qemu` parses the log with its activity lines, without a problem.
        let parsed = calibrate::qemu::parse(Path::new("raw"), &raw, &Default::default());
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.migrations[0].row.v_mig_bytes, r.v_mig_bytes);
        let act = calibrate::hostpower::activity_of_log(&raw);
        let (start, end) = (r.start_utc_ns.unwrap(), r.end_utc_ns.unwrap());
        assert!(act[0].utc_ns < start && act.last().unwrap().utc_ns > end + 2_000_000_000);
        // The relay counted the stream QEMU sent (QEMU's counter includes a few bytes of
        // framing the relay sees too; within 2 %).
        let linked = act.last().unwrap().link_bytes.unwrap() - act[0].link_bytes.unwrap();
        let ratio = linked as f64 / r.v_mig_bytes as f64;
        assert!(
            (0.98..1.02).contains(&ratio),
            "relay {linked} B, QEMU {} B",
            r.v_mig_bytes
        );
        // Paced: the stream took at least its bytes over the link's rate.
        assert!(
            r.t_mig_s >= 0.95 * r.v_mig_bytes as f64 / want as f64,
            "{r:?}"
        );
        let rates = calibrate::hostpower::rates(&act);
        let during = calibrate::hostpower::mean_rates(&rates, start, end);
        eprintln!(
            "{}: {:.1} MB in {:.2} s; during: source {:.2} cores, destination {:.2} cores, link {:.1} MB/s",
            r.migration_id,
            r.v_mig_bytes as f64 / 1e6,
            r.t_mig_s,
            during["source_cores"],
            during["destination_cores"],
            during["link_bytes_per_s"] / 1e6
        );
        assert!(during["source_cores"] > 0.05, "{during:?}");
        assert!(during["link_bytes_per_s"] > 0.5 * want as f64, "{during:?}");
        // The emulated meters saw it: both hosts above P_0 during the migration (the link
        // term alone is 0.45 and 0.30 J/MB x at least 8 MB/s).
        let (ma, na) = mean_power(&out, "pa", start + 1_000_000_000, end);
        let (mb, nb) = mean_power(&out, "pb", start + 1_000_000_000, end);
        eprintln!("  meters during: pa {ma:.2} W (P_0 {p0a:.2}, {na} samples), pb {mb:.2} W (P_0 {p0b:.2}, {nb} samples)");
        if na > 0 {
            assert!(ma > p0a + 2.0, "source {ma} W vs P_0 {p0a} W");
            assert!(mb > p0b + 1.0, "destination {mb} W vs P_0 {p0b} W");
        }
        // After the migration the guest runs on the destination (resumed once verified):
        // its QEMU works and the destination's meter sees it, while the source is idle.
        let resume = raw_resume_ns(&raw);
        let after = calibrate::hostpower::mean_rates(&rates, resume, i64::MAX);
        eprintln!(
            "  after resume: source {:.3} cores, destination {:.3} cores",
            after["source_cores"], after["destination_cores"]
        );
        assert!(
            after["destination_cores"] > after["source_cores"],
            "{after:?}"
        );
        assert!(after["destination_cores"] > 0.01, "{after:?}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["power_model"]["model"], "activity", "{summary}");
    assert!(summary["power_model"]["formulas"][0]
        .as_str()
        .unwrap()
        .contains("12 W x busy cores"));
    let emulated = summary["emulated"].to_string();
    assert!(emulated.contains("Fan et al. 2007"), "{emulated}");
    // The energy fit is reported (E_mig = alpha V_mig + beta, R^2).
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("E_mig") && report.contains("busy cores"),
        "{report}"
    );
    eprintln!("energy model: {}", summary["models"]);

    // A replay of this campaign draws power from its recorded activity.
    let rp = d.path().join("replay.toml");
    std::fs::write(
        &rp,
        format!(
            "name = \"replay-e2e\"\nout = \"replayed\"\nbaseline_s = 6\nsettle_s = 2.2\n\n[source]\nhost = \"ra\"\nmeter = \"emulated\"\n\n[destination]\nhost = \"rb\"\nmeter = \"emulated\"\n\n[hypervisor]\nkind = \"replay\"\nreplay = \"{}\"\nreplay_count = 4\n",
            out.display()
        ),
    )
    .unwrap();
    let text = run_to_end(&rp);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("replayed/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["power_model"]["model"], "activity",
        "{summary}\n{text}"
    );
    assert_eq!(summary["power_model"]["fallbacks"], serde_json::json!([]));
}

fn raw_resume_ns(raw: &[u8]) -> i64 {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "resume")
        .and_then(|v| v["utc_ns"].as_i64())
        .expect("a resume line")
}
