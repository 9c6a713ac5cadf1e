//! Parser tests on the example logs of tests/data, and property tests: random truncation and
//! noise never panic, and whatever parses still adds up.

use std::path::{Path, PathBuf};

use calibrate::{parse_log, IngestOptions, LogKind, Parsed};
use proptest::prelude::*;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn parse(kind: LogKind, name: &str) -> Parsed {
    let p = data(name);
    let bytes = std::fs::read(&p).unwrap();
    parse_log(kind, &p, &bytes, &IngestOptions::default())
}

fn qemu_logs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data(""))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".qmp.jsonl"))
        .collect();
    v.sort();
    v
}

/// What must hold for every parsed migration, whatever the input.
fn check_consistent(p: &Parsed) {
    for m in &p.migrations {
        assert_eq!(m.row.rounds as usize, m.rounds.len());
        assert!(!m.rounds.is_empty());
        for (i, r) in m.rounds.iter().enumerate() {
            assert_eq!(r.round as usize, i + 1);
            assert_eq!(r.migration_id, m.row.migration_id);
            assert!(r.duration_s.is_none_or(|d| d >= 0.0));
        }
        assert!(m.rounds.iter().filter(|r| r.last).count() <= 1);
        if m.row.hypervisor == "qemu" || m.row.hypervisor == "libvirt" {
            let sum: u64 = m.rounds.iter().map(|r| r.sent_bytes).sum();
            assert_eq!(sum, m.row.v_mig_bytes, "{}", m.row.migration_id);
        }
    }
}

#[test]
fn xend_log_holds_two_migrations_that_satisfy_the_invariant() {
    let p = parse(LogKind::Xen, "xen3-xend.log");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.migrations.len(), 2);
    let (a, b) = (&p.migrations[0], &p.migrations[1]);
    assert_eq!(a.row.vm, "dom7");
    assert_eq!(a.row.vm_mem_bytes, 65536 * 4096);
    assert_eq!(a.row.rounds, 5);
    assert!(a.rounds[4].last && a.rounds[4].duration_s.is_none());
    // gamma_i = skipped_i / (sent_i + skipped_i)
    let r2 = &a.rounds[1];
    let skipped = r2.skipped_pages as f64;
    let sent = (r2.sent_bytes / 4096) as f64;
    assert_eq!(r2.gamma, Some(skipped / (sent + skipped)));
    // the fast-dirtying guest stops at the 3 x memory cap
    assert!(b.row.v_mig_bytes > 3 * b.row.vm_mem_bytes - b.rounds.last().unwrap().sent_bytes);
    assert_eq!(b.row.max_factor, Some(3.0));
    assert_eq!(a.row.start_utc_ns, Some(1_331_300_230_000_000_000));
    check_consistent(&p);
}

#[test]
fn raw_libxc_output_without_clock_gets_a_file_based_id() {
    let p = parse(LogKind::Xen, "xen3-libxc-save.txt");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let m = &p.migrations[0];
    assert_eq!(m.row.start_utc_ns, None);
    assert!(m
        .row
        .migration_id
        .starts_with("xen3-dom3-xen3-libxc-save-L"));
    assert!(m.row.t_mig_s > 0.0);
    check_consistent(&p);
}

#[test]
fn xen4_progress_lines_give_rounds() {
    let p = parse(LogKind::Xen, "xen4-xl.log");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let m = &p.migrations[0];
    assert_eq!(m.row.hypervisor, "xen4");
    assert_eq!(m.row.vm, "dom12");
    assert_eq!(m.row.max_rounds, Some(5));
    assert_eq!(m.rounds[0].sent_bytes, 65536 * 4096);
    assert_eq!(
        m.rounds[0].dirtied_pages,
        Some(m.rounds[1].sent_bytes / 4096)
    );
    check_consistent(&p);
}

#[test]
fn libvirt_log_holds_a_completed_and_a_cancelled_migration() {
    let p = parse(LogKind::Libvirt, "libvirt-domjobinfo.txt");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.migrations.len(), 2);
    let (a, b) = (&p.migrations[0], &p.migrations[1]);
    assert!(a.row.converged && a.rounds.last().unwrap().last);
    assert_eq!(a.row.t_down_s, Some(0.042));
    assert_eq!(a.row.vm_mem_bytes, 1 << 30);
    assert!(!b.row.converged && b.row.status == "cancelled");
    assert!(!b.rounds.iter().any(|r| r.last));
    assert_eq!(b.row.rounds, 3);
    check_consistent(&p);
}

#[test]
fn recorded_qemu_logs_replay_consistently() {
    let logs = qemu_logs();
    assert!(!logs.is_empty(), "no recorded *.qmp.jsonl in tests/data");
    for log in logs {
        let bytes = std::fs::read(&log).unwrap();
        let p = parse_log(LogKind::Qemu, &log, &bytes, &IngestOptions::default());
        assert!(p.problems.is_empty(), "{}: {:?}", log.display(), p.problems);
        assert_eq!(p.migrations.len(), 1, "{}", log.display());
        check_consistent(&p);
    }
}

fn all_examples() -> Vec<(LogKind, Vec<u8>)> {
    let mut v = vec![
        (LogKind::Xen, std::fs::read(data("xen3-xend.log")).unwrap()),
        (
            LogKind::Xen,
            std::fs::read(data("xen3-libxc-save.txt")).unwrap(),
        ),
        (LogKind::Xen, std::fs::read(data("xen4-xl.log")).unwrap()),
        (
            LogKind::Libvirt,
            std::fs::read(data("libvirt-domjobinfo.txt")).unwrap(),
        ),
    ];
    for q in qemu_logs() {
        v.push((LogKind::Qemu, std::fs::read(q).unwrap()));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn truncation_never_panics(which in 0usize..16, cut in 0.0f64..1.0) {
        let ex = all_examples();
        let (kind, bytes) = &ex[which % ex.len()];
        let n = (bytes.len() as f64 * cut) as usize;
        let p = parse_log(*kind, Path::new("cut.log"), &bytes[..n], &IngestOptions::default());
        check_consistent(&p);
    }

    #[test]
    fn noise_never_panics(
        which in 0usize..16,
        edits in proptest::collection::vec((0.0f64..1.0, any::<u8>(), 0u8..3), 1..40),
    ) {
        let ex = all_examples();
        let (kind, bytes) = &ex[which % ex.len()];
        let mut b = bytes.clone();
        for (at, byte, op) in edits {
            let i = ((b.len() as f64) * at) as usize;
            match op {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i.min(b.len()), byte),
                _ if i < b.len() => { b.remove(i); }
                _ => {}
            }
        }
        let p = parse_log(*kind, Path::new("noisy.log"), &b, &IngestOptions::default());
        check_consistent(&p);
        for q in &p.problems {
            prop_assert!(q.line >= 1);
        }
    }

    #[test]
    fn random_lines_never_panic(lines in proptest::collection::vec("[ -~\\x08\\r]{0,120}", 0..30), kind in 0u8..3) {
        let kind = [LogKind::Xen, LogKind::Qemu, LogKind::Libvirt][kind as usize];
        let text = lines.join("\n");
        let p = parse_log(kind, Path::new("random.log"), text.as_bytes(), &IngestOptions::default());
        check_consistent(&p);
    }
}

#[test]
fn huge_numbers_are_malformed_not_overflows() {
    let max = u64::MAX;
    let xen = format!(
        "Saving memory pages: iter 1 0%\r 1: sent {max}, skipped {max}, delta {max}ms, dom0 1%, target 1%, sent 1Mb/s, dirtied 1Mb/s {max} pages\n\
         2: sent 1099511627776, skipped 1099511627776, delta 1099511627776ms, dom0 1%, target 1%, sent 1Mb/s, dirtied 1Mb/s 1099511627776 pages\n\
         3: sent 1099511627776, skipped 0, Start last iteration\nTotal pages sent= {max} (1.00x)\nAll memory is saved\n"
    );
    let p = parse_log(
        LogKind::Xen,
        Path::new("x"),
        xen.as_bytes(),
        &IngestOptions::default(),
    );
    assert!(!p.problems.is_empty());
    check_consistent(&p);
    let qemu = format!(
        "{{\"type\":\"start\",\"utc_ns\":{}}}\n{{\"type\":\"migrate\",\"utc_ns\":1}}\n\
         {{\"type\":\"reply\",\"utc_ns\":2,\"command\":\"query-migrate\",\"reply\":{{\"status\":\"completed\",\"total-time\":{max},\"ram\":{{\"transferred\":9007199254740992,\"remaining\":0,\"total\":9007199254740992,\"normal\":9007199254740992,\"duplicate\":9007199254740992,\"dirty-sync-count\":3,\"page-size\":9007199254740992}}}}}}\n\
         {{\"type\":\"event\",\"utc_ns\":3,\"side\":\"source\",\"event\":{{\"event\":\"STOP\",\"timestamp\":{{\"seconds\":{max},\"microseconds\":1}}}}}}\n",
        i64::MAX
    );
    let p = parse_log(
        LogKind::Qemu,
        Path::new("q"),
        qemu.as_bytes(),
        &IngestOptions::default(),
    );
    check_consistent(&p);
    let libvirt = format!(
        "1970-01-01T00:00:00Z\nJob type: Unbounded\nTime elapsed: {max} ms\nMemory processed: 1e300 GiB\nIteration: {max}\n\
         Job type: Completed\nTime elapsed: 1099511627776 ms\nMemory processed: 8 EiB\nMemory total: 9000000 TiB\nIteration: 1099511627776\nConstant pages: 1099511627776\nNormal pages: 1099511627776\nPage size: 1099511627776 B\n"
    );
    let p = parse_log(
        LogKind::Libvirt,
        Path::new("l"),
        libvirt.as_bytes(),
        &IngestOptions::default(),
    );
    check_consistent(&p);
}

#[test]
fn qemu_log_problems_name_lines_and_unfinished_runs_are_dropped() {
    let p = data("qemu-dirty2048.qmp.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Drop everything from the first final reply on, and break line 3.
    let cut = lines
        .iter()
        .position(|l| l.contains("\"status\":\"completed\""))
        .unwrap();
    lines.truncate(cut);
    lines[2] = "{not json";
    let parsed = parse_log(
        LogKind::Qemu,
        Path::new("q.jsonl"),
        lines.join("\n").as_bytes(),
        &IngestOptions::default(),
    );
    assert!(parsed.migrations.is_empty());
    assert!(parsed
        .problems
        .iter()
        .any(|q| q.line == 3 && q.message.contains("malformed JSON")));
    assert!(parsed
        .problems
        .iter()
        .any(|q| q.line == 1 && q.message.contains("incomplete migration")));
}
