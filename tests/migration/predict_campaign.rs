//! The accuracy campaign of issue 6: real QEMU migrations over a grid of dirtying rates and
//! link rates, a few repetitions, driven by `migwatt calibrate migrate` through the same
//! pieces as tests/migration/qemu_migrate.rs (two TCG QEMUs, the `dirtier` guest, a rate-limiting
//! relay). Writes `OUT/{raw,migrations,rounds}/<run>.*` so that `migwatt evaluate` reruns
//! without QEMU. Run by bench/accuracy/campaign.sh:
//! `MIGWATT_QEMU_GUEST_DIR=... MIGWATT_CAMPAIGN_OUT=bench/accuracy/data cargo test --workspace
//! --test migration -- --ignored predict_campaign:: --test-threads=1`.

use std::path::{Path, PathBuf};

use crate::common;

use common::qemu::*;
use datasets::migrations::read_migrations;

/// Dirtying rates of the grid, pages/s (4 KiB pages).
const DIRTY_PAGES_PER_S: [u32; 4] = [256, 1024, 2048, 3072];
/// Link (relay) rates of the grid, MiB/s.
const LINK_MIB_PER_S: [u64; 2] = [16, 24];
/// Hot region the guest's writes cycle over, MiB.
const HOT_MIB: u32 = 32;

fn run_one(out: &Path, run: &str, vm: &str, workload: &str, rate: u32, link: u64) {
    let args = [
        "--bandwidth".to_string(),
        format!("{link}B/s"),
        "--timeout".into(),
        "60s".into(),
        "--workload".into(),
        workload.into(),
        "--vm".into(),
        vm.into(),
    ];
    let m = migrate_through_relay("mw-camp", rate, HOT_MIB, link, &args);
    let stderr = String::from_utf8_lossy(&m.output.stderr);
    let (o, relayed) = (&m.out, m.relayed);
    let rows = read_migrations(&o.join("migrations")).unwrap();
    // Verified (every page of the destination matched before it ran), or not converged
    // (exit 4 with nothing to verify); a mismatch fails the campaign.
    match m.output.status.code() {
        Some(0) => assert_eq!(rows[0].memory_verified, Some(true), "{run}: {stderr}"),
        Some(4) if !rows[0].converged => {}
        c => panic!("{run}: migrate exited {c:?}: {stderr}"),
    }
    eprintln!(
        "{run}: converged {} t_mig {:.2} s v_mig {} B t_down {:?} s rounds {} relayed {relayed} B",
        rows[0].converged, rows[0].t_mig_s, rows[0].v_mig_bytes, rows[0].t_down_s, rows[0].rounds
    );
    for (sub, ext) in [
        ("raw", "qmp.jsonl"),
        ("migrations", "parquet"),
        ("rounds", "parquet"),
    ] {
        let f = std::fs::read_dir(o.join(sub))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::create_dir_all(out.join(sub)).unwrap();
        std::fs::copy(&f, out.join(sub).join(format!("{run}.{ext}"))).unwrap();
    }
}

#[test]
#[ignore = "the accuracy campaign: needs the QEMU guest and MIGWATT_CAMPAIGN_OUT; see bench/accuracy/campaign.sh"]
fn accuracy_campaign() {
    let out =
        PathBuf::from(std::env::var_os("MIGWATT_CAMPAIGN_OUT").expect("MIGWATT_CAMPAIGN_OUT"));
    let reps: u32 = std::env::var("MIGWATT_CAMPAIGN_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut done = 0;
    for rep in 1..=reps {
        for &rate in &DIRTY_PAGES_PER_S {
            for &link in &LINK_MIB_PER_S {
                let run = format!("d{rate}-l{link}-r{rep}");
                if out
                    .join("migrations")
                    .join(format!("{run}.parquet"))
                    .exists()
                {
                    continue;
                }
                run_one(
                    &out,
                    &run,
                    &format!("vm-d{rate}"),
                    &format!("d{rate}-l{link}"),
                    rate,
                    link << 20,
                );
                done += 1;
            }
        }
    }
    let rows = read_migrations(&out.join("migrations")).unwrap();
    assert!(
        rows.len() >= done,
        "{} rows after {done} new runs",
        rows.len()
    );
}
