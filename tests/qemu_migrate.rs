//! Real QEMU migrations driven by `migwatt calibrate migrate`: two QEMU processes (TCG), a
//! tiny Debian-kernel guest whose `dirtier` writes a set number of pages per second, and a
//! rate-limiting relay between source and destination (QEMU lifts its own max-bandwidth at
//! stop-and-copy, so only a relay gives realistic downtimes).
//!
//! Needs `scripts/setup-qemu.sh` first; run one at a time with
//! `MIGWATT_QEMU_GUEST_DIR=$(scripts/setup-qemu.sh | tail -n1) cargo test --test qemu_migrate -- --ignored --test-threads=1`.
//! Set MIGWATT_QEMU_RECORD_DIR to keep each run's raw QMP log there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

mod common;

use assert_cmd::cargo::CommandCargoExt;
use common::qemu::*;
use datasets::migrations::{read_migrations, MigrationRow};
use datasets::rounds::{read_rounds, RoundRow};
use serde_json::Value;

/// QEMU tests share two cores: never run two at once, even without --test-threads=1.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Relay rate, bytes/s (the emulated link).
const LINK_BYTES_PER_S: u64 = 16 << 20;

struct Outcome {
    row: MigrationRow,
    rounds: Vec<RoundRow>,
    raw: PathBuf,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

fn run_migration(label: &str, rate: u32, hot_mib: u32, timeout_s: u32) -> Outcome {
    let args = [
        "--timeout".to_string(),
        format!("{timeout_s}s"),
        "--workload".into(),
        label.into(),
        "--vm".into(),
        "tiny".into(),
    ];
    let m = migrate_through_relay("mw-qemu", rate, hot_mib, LINK_BYTES_PER_S, &args);
    let stderr = String::from_utf8_lossy(&m.output.stderr);
    assert!(
        m.output.status.success(),
        "migrate failed: {stderr}\n{}",
        String::from_utf8_lossy(&m.output.stdout)
    );
    eprintln!(
        "{label}: {}{stderr}",
        String::from_utf8_lossy(&m.output.stdout)
    );
    let (out, relayed) = (m.out.clone(), m.relayed);
    let rows = read_migrations(&out.join("migrations")).unwrap();
    assert_eq!(rows.len(), 1);
    let rounds = read_rounds(&out.join("rounds")).unwrap();
    let raw = std::fs::read_dir(out.join("raw"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    eprintln!("{label}: relayed {relayed} bytes");
    if let Some(keep) = std::env::var_os("MIGWATT_QEMU_RECORD_DIR") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&raw, keep.join(format!("qemu-{label}.qmp.jsonl"))).unwrap();
    }
    Outcome {
        row: rows.into_iter().next().unwrap(),
        rounds,
        raw,
        out,
        _tmp: m.tmp,
    }
}

/// The last query-migrate reply carrying `ram` (the completed one, or the last active one
/// before a cancel) and the final status.
fn final_reply(raw: &Path) -> (Value, String) {
    let text = std::fs::read_to_string(raw).unwrap();
    let mut last_ram = Value::Null;
    let mut status = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "reply" && v["command"] == "query-migrate" {
            let r = &v["reply"];
            if let Some(s) = r["status"].as_str() {
                if status.is_empty()
                    || !matches!(status.as_str(), "completed" | "cancelled" | "failed")
                {
                    status = s.to_string();
                }
            }
            if r.get("ram").is_some() && !matches!(status.as_str(), "cancelled" | "failed") {
                last_ram = r.clone();
            }
        }
    }
    (last_ram, status)
}

fn check_adds_up(o: &Outcome) {
    let (reply, status) = final_reply(&o.raw);
    let ram = &reply["ram"];
    assert_eq!(o.row.status, status);
    let sum: u64 = o.rounds.iter().map(|r| r.sent_bytes).sum();
    assert_eq!(sum, o.row.v_mig_bytes, "round bytes add up to V_mig");
    assert_eq!(o.row.v_mig_bytes, ram["transferred"].as_u64().unwrap());
    assert_eq!(
        o.row.rounds as u64,
        ram["dirty-sync-count"].as_u64().unwrap()
    );
    assert_eq!(o.rounds.len(), o.row.rounds as usize);
    assert_eq!(o.row.vm_mem_bytes, ram["total"].as_u64().unwrap());
    assert_eq!(o.row.zero_pages, ram["duplicate"].as_u64());
    assert!(
        o.row.pre_dirty_rate_bytes_per_s.is_some(),
        "pre-migration D sampled"
    );
    assert_eq!(o.row.downtime_limit_s, Some(0.05));
    for (i, r) in o.rounds.iter().enumerate() {
        assert_eq!(r.round as usize, i + 1);
        assert!(r.start_utc_ns.unwrap() >= o.row.start_utc_ns.unwrap());
    }
}

fn check_replay(o: &Outcome) {
    let again = o.out.with_file_name("replayed");
    let res = Command::cargo_bin("migwatt")
        .unwrap()
        .args(["calibrate", "ingest", "qemu"])
        .arg(&o.raw)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        read_migrations(&again.join("migrations")).unwrap(),
        vec![o.row.clone()]
    );
    assert_eq!(read_rounds(&again.join("rounds")).unwrap(), o.rounds);
}

#[test]
#[ignore = "needs QEMU guest: run scripts/setup-qemu.sh"]
fn slow_dirtying_guest_converges_in_few_rounds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = run_migration("dirty256", 256, 8, 120);
    check_adds_up(&o);
    assert!(o.row.converged);
    assert!(o.rounds.last().unwrap().last);
    assert_eq!(o.row.t_down_method, "guest_stop_resume");
    assert!(o.row.t_down_s.unwrap() > 0.0);
    check_replay(&o);
}

#[test]
#[ignore = "needs QEMU guest: run scripts/setup-qemu.sh"]
fn half_link_dirtying_guest_needs_more_rounds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = run_migration("dirty2048", 2048, 32, 120);
    check_adds_up(&o);
    assert!(o.row.converged);
    assert!(o.row.rounds >= 3, "rounds {}", o.row.rounds);
    // With a pre-migration D, a round has a gamma whenever the round before it has a
    // dirtied count and a duration (not the switchover just before stop-and-copy).
    for w in o.rounds.windows(2) {
        let measurable = w[0].dirtied_pages.is_some() && w[0].duration_s.unwrap() > 0.0;
        assert_eq!(w[1].gamma.is_some(), measurable, "round {}", w[1].round);
    }
    assert!(o.rounds.iter().filter(|r| r.gamma.is_some()).count() >= 2);
    check_replay(&o);
}

#[test]
#[ignore = "needs QEMU guest: run scripts/setup-qemu.sh"]
fn guest_dirtying_faster_than_the_link_is_cancelled() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = run_migration("dirty8192", 8192, 48, 12);
    check_adds_up(&o);
    assert!(!o.row.converged);
    assert_eq!(o.row.status, "cancelled");
    assert!(!o.rounds.iter().any(|r| r.last));
    assert_eq!(o.row.t_down_s, None);
    check_replay(&o);
}
