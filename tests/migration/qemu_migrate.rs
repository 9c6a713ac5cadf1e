//! Real QEMU migrations driven by `migwatt calibrate migrate --verify`: two QEMU processes
//! (KVM where usable, else TCG; the destination started paused with -S), a tiny
//! Debian-kernel guest whose `dirtier` writes a set number of pages per second, and a
//! rate-limiting relay between source and destination (QEMU lifts its own max-bandwidth at
//! stop-and-copy, so only a relay gives realistic downtimes). Every completed migration is
//! verified page by page before the destination runs, and the destination is then seen alive
//! (its guest keeps printing); one test corrupts a page of the paused destination through
//! QEMU's gdbstub and expects the check to catch it.
//!
//! Needs `scripts/setup-qemu.sh` first; run one at a time with
//! `MIGWATT_QEMU_GUEST_DIR=$(scripts/setup-qemu.sh | tail -n1) cargo test --workspace --test migration -- --ignored qemu_migrate:: --test-threads=1`.
//! Set MIGWATT_QEMU_RECORD_DIR to keep each run's raw QMP log there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::common;

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
    stdout: String,
    m: Migrated,
}

/// Run one migration; `exit` is the status `calibrate migrate` must end with (0: completed
/// and verified; 4: cancelled, failed or not verified).
fn run_migration(label: &str, rate: u32, hot_mib: u32, timeout_s: u32, exit: i32) -> Outcome {
    run_migration_with(label, rate, hot_mib, timeout_s, exit, &[])
}

/// [`run_migration`] with more `calibrate migrate` arguments.
fn run_migration_with(
    label: &str,
    rate: u32,
    hot_mib: u32,
    timeout_s: u32,
    exit: i32,
    extra: &[&str],
) -> Outcome {
    let mut args = vec![
        "--timeout".to_string(),
        format!("{timeout_s}s"),
        "--workload".into(),
        label.into(),
        "--vm".into(),
        "tiny".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let setup = RunSetup {
        migrate_args: args,
        ..RunSetup::default()
    };
    outcome(
        label,
        migrate_with_setup("mw-qemu", rate, hot_mib, LINK_BYTES_PER_S, &setup),
        exit,
    )
}

fn outcome(label: &str, m: Migrated, exit: i32) -> Outcome {
    let stderr = String::from_utf8_lossy(&m.output.stderr).to_string();
    let stdout = String::from_utf8_lossy(&m.output.stdout).to_string();
    assert_eq!(
        m.output.status.code(),
        Some(exit),
        "migrate exit status: {stderr}\n{stdout}"
    );
    eprintln!("{label}: {stdout}{stderr}");
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
    let row = rows.into_iter().next().unwrap();
    assert_eq!(row.accelerator.as_deref(), Some(accel()), "{row:?}");
    Outcome {
        row,
        rounds,
        raw,
        out,
        stdout,
        m,
    }
}

/// A completed migration was verified page by page, its downtime ends at the destination's
/// `completed` event, and the destination then runs a live guest.
fn check_verified_and_alive(o: &mut Outcome) {
    assert_eq!(o.row.memory_verified, Some(true), "{:?}", o.row);
    assert_eq!(o.row.memory_mismatch_pages, Some(0));
    assert!(o.stdout.contains("memory verified: all"), "{}", o.stdout);
    assert_eq!(o.row.t_down_method, "source_stop_destination_completed");
    let v = log_lines(&o.raw, "verify");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["verified"], true);
    // All of the 128 MiB guest's RAM (and its ROMs) was compared.
    assert!(v[0]["bytes"].as_u64().unwrap() >= 128 << 20, "{}", v[0]);
    assert!(v[0]["elapsed_s"].as_f64().unwrap() > 0.0);
    let said = wait_alive(&mut o.m.dst);
    eprintln!("destination alive after the check: {}", said.trim());
}

/// The raw log's lines of one type.
fn log_lines(raw: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(raw)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == kind)
        .collect()
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
        .arg("--out-dir")
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
    // The other way of reading guest RAM (the default reads the QEMU processes' memory).
    let mut o = run_migration_with("dirty256", 256, 8, 120, 0, &["--verify-method", "pmemsave"]);
    let v = log_lines(&o.raw, "verify");
    assert_eq!(v[0]["method"], "pmemsave", "{}", v[0]);
    check_adds_up(&o);
    assert!(o.row.converged);
    assert!(o.rounds.last().unwrap().last);
    assert!(o.row.t_down_s.unwrap() > 0.0);
    check_verified_and_alive(&mut o);
    check_replay(&o);
}

#[test]
#[ignore = "needs QEMU guest: run scripts/setup-qemu.sh"]
fn half_link_dirtying_guest_needs_more_rounds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut o = run_migration("dirty2048", 2048, 32, 120, 0);
    let v = log_lines(&o.raw, "verify");
    assert_eq!(v[0]["method"], "process memory", "{}", v[0]);
    check_adds_up(&o);
    assert!(o.row.converged);
    check_verified_and_alive(&mut o);
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
    // Exit status 4: the migration did not complete.
    let o = run_migration("dirty8192", 8192, 48, 12, 4);
    check_adds_up(&o);
    assert!(!o.row.converged);
    assert_eq!(o.row.status, "cancelled");
    assert!(!o.rounds.iter().any(|r| r.last));
    assert_eq!(o.row.t_down_s, None);
    // Nothing to verify: the destination never received a whole guest.
    assert_eq!(o.row.memory_verified, None);
    assert_eq!(o.row.memory_mismatch_pages, None);
    check_replay(&o);
}

/// The check can fail: a paused hook writes into one page of the paused destination's guest
/// RAM through QEMU's gdbstub (GDB remote protocol, physical-memory mode; the connection is
/// closed without detaching, so the guest stays paused), after the migration and before the
/// comparison. The comparison must name exactly that page, keep the row marked, exit 4 and
/// leave the destination paused.
#[test]
#[ignore = "needs QEMU guest: run scripts/setup-qemu.sh"]
fn a_page_changed_on_the_paused_destination_is_caught() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A page in the middle of the 128 MiB guest's RAM.
    const ADDR: u64 = 0x0500_0000;
    let gdir = tempfile::Builder::new().prefix("mw-gdb").tempdir().unwrap();
    let gdb = gdir.path().join("dst.gdb");
    let script = gdir.path().join("poke.py");
    std::fs::write(&script, POKE_PY).unwrap();
    let hook = format!("python3 {} {} {ADDR:#x}", script.display(), gdb.display());
    let gdb_arg = format!("unix:{},server=on,wait=off", gdb.display());
    let setup = RunSetup {
        migrate_args: vec![
            "--timeout".into(),
            "120s".into(),
            "--vm".into(),
            "tiny".into(),
            "--paused-hook".into(),
            hook,
        ],
        dst_qemu_args: vec!["-gdb".into(), gdb_arg],
        ..RunSetup::default()
    };
    let m = migrate_with_setup("mw-qemu", 1024, 16, LINK_BYTES_PER_S, &setup);
    let o = outcome("corrupted", m, 4);
    assert!(o.row.converged, "{:?}", o.row);
    assert_eq!(o.row.memory_verified, Some(false));
    assert_eq!(o.row.memory_mismatch_pages, Some(1));
    assert!(
        o.stdout.contains("MEMORY MISMATCH: 1 of")
            && o.stdout.contains(&format!("first at {ADDR:#x}"))
            && o.stdout.contains("left paused"),
        "{}",
        o.stdout
    );
    let hooks = log_lines(&o.raw, "hook");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["success"], true, "{}", hooks[0]);
    let v = log_lines(&o.raw, "verify");
    assert_eq!(v[0]["verified"], false);
    assert_eq!(v[0]["first_mismatches"], serde_json::json!([ADDR]));
    // No `cont`: the corrupted destination never ran.
    assert!(log_lines(&o.raw, "resume").is_empty());
    let mut q = calibrate::qmp::Qmp::connect(
        &o.m.tmp.path().join("dst.qmp"),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let (_, st) = q
        .execute("query-status", None, std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(st["status"], "paused", "{st}");
    // The row is kept, marked, and replays the same.
    check_replay(&o);
}

/// The paused hook of the mismatch test: checks its environment, then inverts 16 bytes of
/// guest-physical memory at ADDR through the destination's gdbstub.
const POKE_PY: &str = r##"
import os, socket, sys
for k in ("MIGWATT_SOURCE_QMP", "MIGWATT_DEST_QMP"):
    assert os.path.exists(os.environ[k]), k
path, addr = sys.argv[1], int(sys.argv[2], 0)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
def send(data):
    s.sendall(b"$%s#%02x" % (data.encode(), sum(data.encode()) % 256))
    while True:
        c = s.recv(1)
        if c == b"+":
            break
        assert c, "gdbstub closed the connection"
    out = b""
    while s.recv(1) != b"$":
        pass
    while True:
        c = s.recv(1)
        if c == b"#":
            break
        out += c
    s.recv(2)
    s.sendall(b"+")
    return out.decode()
assert send("Qqemu.PhyMemMode:1") == "OK"
old = bytes.fromhex(send("m%x,10" % addr))
new = bytes(b ^ 0xFF for b in old)
assert send("M%x,10:%s" % (addr, new.hex())) == "OK"
assert bytes.fromhex(send("m%x,10" % addr)) == new
# Closed without 'D' (detach would resume the guest).
s.close()
"##;
