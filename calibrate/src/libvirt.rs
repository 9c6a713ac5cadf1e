//! libvirt logs: successive `virsh domjobinfo DOMAIN` outputs (e.g. from a polling loop),
//! ending with the job's final output (`Job type: Completed`, `Failed` or `Cancelled`, as
//! `virsh domjobinfo --completed` prints it).
//!
//! Each output is a block of `Label: value` lines starting at `Job type:`; sizes carry units
//! (`B`, `KiB`, `MiB`, `GiB`), times `ms`, `Dirty rate:` is in pages/s, `Iteration:` is QEMU's
//! dirty-sync count. A line holding only an RFC 3339 timestamp (as `date --rfc-3339=ns` or
//! `date -u +%FT%T.%NZ` prints) before a block stamps it; without any, migrations have no
//! UTC times. A new migration begins after a final block or when `Time elapsed` goes back.

use std::collections::BTreeMap;
use std::path::Path;

use datasets::migrations::MigrationRow;

use crate::precopy::{self, PrecopyInput, Snapshot};
use crate::units::{parse_count, MAX_BYTES};
use crate::{file_stem, IngestOptions, Migration, Parsed, Problem};
use datasets::quantity::{parse_rfc3339_utc_ns, parse_size_bytes};

#[derive(Debug, Clone, Default)]
struct Block {
    line: usize,
    stamp_utc_ns: Option<i64>,
    job_type: String,
    fields: BTreeMap<String, (usize, String)>,
    /// First line of (or just before) the block that could not be read: its migration is
    /// not recorded, since its figures would be wrong.
    unreadable: Option<usize>,
}

/// Figures a migration's blocks give all or none of (each with the labels that stand in for
/// it).
const FIGURE_LABELS: [&[&str]; 6] = [
    &["Memory processed", "Data processed"],
    &["Memory remaining", "Data remaining"],
    &["Memory total", "Data total"],
    &["Iteration"],
    &["Constant pages"],
    &["Normal pages"],
];

/// The job types `virsh domjobinfo` prints.
const JOB_TYPES: [&str; 6] = [
    "None",
    "Bounded",
    "Unbounded",
    "Completed",
    "Failed",
    "Cancelled",
];

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    elapsed_ms: u64,
    processed: Option<u64>,
    remaining: Option<u64>,
    total: Option<u64>,
    iteration: Option<u32>,
    pages: Option<u64>,
    constant: Option<u64>,
    downtime_ms: Option<u64>,
    page_size: Option<u64>,
}

fn is_final(job: &str) -> bool {
    matches!(job, "Completed" | "Failed" | "Cancelled")
}

struct Parser<'a> {
    path: &'a Path,
    opts: &'a IngestOptions,
    out: Parsed,
}

impl Parser<'_> {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.out.problems.push(Problem {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn figures(&mut self, b: &Block) -> Option<Figures> {
        let mut bad = Vec::new();
        let mut size = |label: &str| -> Option<u64> {
            let (line, v) = b.fields.get(label)?;
            match parse_size_bytes(v).ok() {
                Some(x) if x <= MAX_BYTES as f64 => Some(x.round() as u64),
                _ => {
                    bad.push((
                        *line,
                        format!("'{label}': expected a size such as '12.5 MiB', found '{v}'"),
                    ));
                    None
                }
            }
        };
        let processed = size("Memory processed").or_else(|| size("Data processed"));
        let remaining = size("Memory remaining").or_else(|| size("Data remaining"));
        let total = size("Memory total").or_else(|| size("Data total"));
        let page_size = size("Page size");
        let mut int = |label: &str, unit: &str| -> Option<u64> {
            let (line, v) = b.fields.get(label)?;
            let t = v.trim();
            let t = t.strip_suffix(unit).unwrap_or(t).trim();
            match parse_count(t).ok_or(()) {
                Ok(x) => Some(x),
                Err(_) => {
                    bad.push((
                        *line,
                        format!(
                            "'{label}': expected an integer{}, found '{v}'",
                            if unit.is_empty() {
                                String::new()
                            } else {
                                format!(" in {unit}")
                            }
                        ),
                    ));
                    None
                }
            }
        };
        let elapsed = int("Time elapsed", "ms");
        let iteration = int("Iteration", "");
        let constant = int("Constant pages", "");
        let normal = int("Normal pages", "");
        let downtime = int("Total downtime", "ms");
        let readable = bad.is_empty();
        for (l, m) in bad {
            self.problem(l, m);
        }
        if !readable {
            return None;
        }
        let Some(elapsed_ms) = elapsed else {
            self.problem(
                b.line,
                "domjobinfo block without a valid 'Time elapsed: N ms'",
            );
            return None;
        };
        Some(Figures {
            elapsed_ms,
            processed,
            remaining,
            total,
            iteration: iteration.map(|i| i.min(u32::MAX as u64) as u32),
            pages: constant.zip(normal).map(|(a, b)| a + b),
            constant,
            downtime_ms: downtime,
            page_size,
        })
    }

    fn finish(&mut self, blocks: Vec<Block>) {
        let Some(first) = blocks.first() else { return };
        let first_line = first.line;
        let figures_ok = blocks
            .iter()
            .map(|b| self.figures(b).is_some())
            .collect::<Vec<_>>();
        // A figure every other block gives but one lacks is a lost line (a round or a size
        // would silently change); a failed or cancelled job's last block may lack them.
        let has = |b: &Block, labels: &[&str]| labels.iter().any(|l| b.fields.contains_key(*l));
        let mut lacking = None;
        for labels in FIGURE_LABELS {
            if blocks.iter().any(|b| has(b, labels)) {
                for b in &blocks {
                    let exempt = is_final(&b.job_type) && b.job_type != "Completed";
                    if !exempt && !has(b, labels) {
                        self.problem(
                            b.line,
                            format!(
                                "this domjobinfo block has no '{}' line, which the migration's other blocks give",
                                labels[0]
                            ),
                        );
                        lacking.get_or_insert(b.line);
                    }
                }
            }
        }
        if let Some(last) = blocks.last().filter(|b| b.job_type == "Completed") {
            if !last.fields.contains_key("Total downtime") {
                self.problem(
                    last.line,
                    "completed job without 'Total downtime': the migration's downtime is unknown",
                );
            }
        }
        let unreadable = blocks
            .iter()
            .zip(&figures_ok)
            .find_map(|(b, ok)| {
                b.unreadable.or_else(|| {
                    (!ok).then(|| b.fields.values().map(|(l, _)| *l).min().unwrap_or(b.line))
                })
            })
            .or(lacking);
        if let Some(line) = unreadable {
            self.problem(
                first_line,
                format!(
                    "migration not recorded: line {line} of its domjobinfo output could not be read (see above), so its figures would be wrong"
                ),
            );
            return;
        }
        let Some(last) = blocks.last().filter(|b| is_final(&b.job_type)) else {
            self.problem(first_line, "incomplete migration: no final domjobinfo block (Job type: Completed, Failed or Cancelled)");
            return;
        };
        let job = last.job_type.clone();
        // Every block's figures were read above (problems already reported); read again
        // quietly.
        let quiet = &mut Parser {
            path: self.path,
            opts: self.opts,
            out: Parsed::default(),
        };
        let figs: Vec<(Block, Figures)> = blocks
            .iter()
            .filter_map(|b| quiet.figures(b).map(|f| (b.clone(), f)))
            .collect();
        let Some((_, fin)) = figs.last().filter(|(b, _)| is_final(&b.job_type)).cloned() else {
            return;
        };
        let converged = job == "Completed";
        // The figures of an unfinished job: the final block's if it has them, else the last.
        let final_figs = if fin.processed.is_some() {
            fin
        } else {
            match figs.iter().rev().find(|(_, f)| f.processed.is_some()) {
                Some((_, f)) => *f,
                None => {
                    self.problem(
                        first_line,
                        "no domjobinfo block with 'Memory processed' or 'Data processed'",
                    );
                    return;
                }
            }
        };
        let Some(total) = final_figs
            .total
            .or_else(|| figs.iter().find_map(|(_, f)| f.total))
        else {
            self.problem(
                first_line,
                "no 'Memory total' or 'Data total' in the migration's blocks",
            );
            return;
        };
        let offset = figs.iter().find_map(|(b, f)| {
            b.stamp_utc_ns
                .map(|t| t.saturating_sub(f.elapsed_ms as i64 * 1_000_000))
        });
        let vm = self.opts.vm.clone().unwrap_or_else(|| "unknown".into());
        let id = match offset {
            Some(t) => format!("libvirt-{vm}-{t}"),
            None => format!("libvirt-{vm}-{}-L{first_line}", file_stem(self.path)),
        };
        let page = final_figs
            .page_size
            .or_else(|| figs.iter().find_map(|(_, f)| f.page_size))
            .filter(|p| (1..=1 << 30).contains(p))
            .unwrap_or(4096);
        let snapshots: Vec<Snapshot> = figs
            .iter()
            .filter(|(b, _)| !is_final(&b.job_type))
            .filter_map(|(_, f)| {
                Some(Snapshot {
                    t_ns: f.elapsed_ms as i64 * 1_000_000,
                    sync_count: f.iteration.unwrap_or(1),
                    transferred_bytes: f.processed?,
                    pages: f.pages,
                    remaining_bytes: f.remaining,
                })
            })
            .collect();
        let t_end = final_figs.elapsed_ms as i64 * 1_000_000;
        let rounds = precopy::rounds(&PrecopyInput {
            migration_id: &id,
            snapshots: &snapshots,
            pass_times: &BTreeMap::new(),
            t_start_ns: 0,
            t_end_ns: t_end,
            rounds: final_figs.iteration.unwrap_or(1),
            final_transferred_bytes: final_figs.processed.unwrap_or(0),
            final_pages: final_figs.pages,
            final_remaining_bytes: final_figs.remaining,
            converged,
            page_size_bytes: page,
            pre_dirty_rate_bytes_per_s: None,
            utc_offset_ns: offset,
            stop_ns: None,
        });
        let reported = fin
            .downtime_ms
            .filter(|_| converged)
            .map(|ms| ms as f64 / 1e3);
        let row = MigrationRow {
            migration_id: id,
            hypervisor: "libvirt".into(),
            vm,
            workload: self.opts.workload.clone(),
            vm_mem_bytes: total,
            page_size_bytes: page,
            start_utc_ns: offset,
            end_utc_ns: offset.map(|o| o.saturating_add(t_end)),
            t_mig_s: final_figs.elapsed_ms as f64 / 1e3,
            t_down_s: reported,
            t_down_method: if reported.is_some() {
                "libvirt_reported".into()
            } else {
                "none".into()
            },
            t_down_reported_s: reported,
            v_mig_bytes: final_figs.processed.unwrap_or(0),
            zero_pages: final_figs.constant,
            rounds: rounds.len() as u32,
            converged,
            status: job.to_lowercase(),
            bandwidth_limit_bytes_per_s: None,
            downtime_limit_s: None,
            max_rounds: None,
            max_factor: None,
            auto_converge: None,
            pre_dirty_rate_bytes_per_s: None,
            pre_dirty_sample_s: None,
            source_host: self.opts.source_host_or(None),
            destination_host: self.opts.destination_host_or(None),
            memory_verified: None,
            memory_mismatch_pages: None,
            accelerator: None,
            probe_dirty_rate_bytes_per_s: None,
            probe_hot_set_bytes: None,
            probe_nonzero_share: None,
        };
        self.out.migrations.push(Migration { row, rounds });
    }
}

/// `YYYY-MM-DD...`: meant as a timestamp line, whether or not it parses.
fn looks_like_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
}

/// Parse a file of successive `virsh domjobinfo` outputs (see the module docs).
pub fn parse(path: &Path, bytes: &[u8], opts: &IngestOptions) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut p = Parser {
        path,
        opts,
        out: Parsed::default(),
    };
    let mut blocks: Vec<Block> = Vec::new();
    let mut migrations: Vec<Vec<Block>> = Vec::new();
    let mut cur: Option<Block> = None;
    let mut stamp: Option<(usize, i64)> = None;
    // An unreadable line before any block belongs to the next block's migration.
    let mut pending_unreadable: Option<usize> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let mut unreadable = |p: &mut Parser, cur: &mut Option<Block>, message: String| {
            p.problem(lineno, message);
            let slot = match cur.as_mut() {
                Some(b) => &mut b.unreadable,
                None => &mut pending_unreadable,
            };
            slot.get_or_insert(lineno);
        };
        if let Ok(t) = parse_rfc3339_utc_ns(line) {
            if let Some((l, _)) = stamp.replace((lineno, t)) {
                p.problem(
                    l,
                    "timestamp not followed by a domjobinfo block (the next timestamp replaces it)",
                );
            }
            continue;
        }
        if looks_like_timestamp(line) {
            unreadable(
                &mut p,
                &mut cur,
                format!(
                    "expected an RFC 3339 timestamp such as 2026-11-25T10:00:01Z, found '{line}'"
                ),
            );
            continue;
        }
        let Some((label, value)) = line.split_once(':') else {
            unreadable(
                &mut p,
                &mut cur,
                format!("expected 'Label: value' or a timestamp, found '{line}'"),
            );
            continue;
        };
        let (label, value) = (label.trim(), value.trim());
        if label.is_empty() {
            unreadable(
                &mut p,
                &mut cur,
                format!("expected 'Label: value', found '{line}'"),
            );
            continue;
        }
        if label == "Job type" {
            if let Some(b) = cur.take() {
                blocks.push(b);
            }
            let mut block = Block {
                line: lineno,
                stamp_utc_ns: stamp.take().map(|(_, t)| t),
                job_type: value.to_string(),
                fields: BTreeMap::new(),
                unreadable: pending_unreadable.take(),
            };
            if !JOB_TYPES.contains(&value) {
                p.problem(
                    lineno,
                    format!(
                        "unknown job type '{value}' (expected one of {})",
                        JOB_TYPES.join(", ")
                    ),
                );
                block.unreadable.get_or_insert(lineno);
            }
            cur = Some(block);
            continue;
        }
        match cur.as_mut() {
            Some(b) => {
                if let Some((first, _)) = b.fields.get(label) {
                    let first = *first;
                    unreadable(
                        &mut p,
                        &mut cur,
                        format!("'{label}' given twice in one block (first on line {first})"),
                    );
                } else {
                    b.fields
                        .insert(label.to_string(), (lineno, value.to_string()));
                }
            }
            None => unreadable(
                &mut p,
                &mut cur,
                format!("'{label}' before any 'Job type:' line"),
            ),
        }
    }
    if let Some((l, _)) = stamp {
        p.problem(l, "timestamp not followed by a domjobinfo block");
    }
    if let Some(l) = pending_unreadable {
        p.problem(l, "line after the last domjobinfo block could not be read");
    }
    if let Some(b) = cur.take() {
        blocks.push(b);
    }
    // Group blocks into migrations.
    let mut group: Vec<Block> = Vec::new();
    let mut prev_elapsed: Option<u64> = None;
    for b in blocks {
        if b.job_type == "None" {
            continue;
        }
        let elapsed = b
            .fields
            .get("Time elapsed")
            .and_then(|(_, v)| v.trim().trim_end_matches("ms").trim().parse::<u64>().ok());
        let went_back = matches!((prev_elapsed, elapsed), (Some(a), Some(e)) if e < a);
        let after_final = group.last().is_some_and(|g| is_final(&g.job_type));
        if !group.is_empty() && (went_back || after_final) {
            migrations.push(std::mem::take(&mut group));
        }
        prev_elapsed = elapsed.or(prev_elapsed);
        group.push(b);
    }
    if !group.is_empty() {
        migrations.push(group);
    }
    for g in migrations {
        p.finish(g);
    }
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-25T10:00:01Z
Job type:         Unbounded
Time elapsed:     1000         ms
Data processed:   10.000 MiB
Memory processed: 10.000 MiB
Memory remaining: 30.000 MiB
Memory total:     128.000 MiB
Dirty rate:       0            pages/s
Iteration:        1
Constant pages:   20000
Normal pages:     2560
Page size:        4096         B

2026-11-25T10:00:03Z
Job type:         Unbounded
Time elapsed:     3000         ms
Memory processed: 40.000 MiB
Memory remaining: 2.000 MiB
Memory total:     128.000 MiB
Iteration:        2
Constant pages:   25000
Normal pages:     10240

Job type:         Completed
Time elapsed:     3500         ms
Memory processed: 42.500 MiB
Memory remaining: 0.000 B
Memory total:     128.000 MiB
Total downtime:   60           ms
Iteration:        3
Constant pages:   25000
Normal pages:     10880
";

    #[test]
    fn domjobinfo_sequence() {
        let p = parse(
            Path::new("jobs.txt"),
            LOG.as_bytes(),
            &IngestOptions::default(),
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let m = &p.migrations[0];
        assert_eq!(m.row.vm_mem_bytes, 128 << 20);
        assert_eq!(m.row.rounds, 3);
        assert_eq!(m.row.t_down_s, Some(0.06));
        assert_eq!(m.row.start_utc_ns, Some(1_795_600_800_000_000_000));
        let sum: u64 = m.rounds.iter().map(|r| r.sent_bytes).sum();
        assert_eq!(sum, m.row.v_mig_bytes);
        assert!(m.rounds[2].last);
    }

    #[test]
    fn unreadable_lines_are_problems_and_their_migration_is_not_recorded() {
        let cases = [
            (
                "Memory processed: 40.000 MiB",
                "Memory processed: 40.000 parsecs",
                "'Memory processed'",
            ),
            (
                "2026-11-25T10:00:03Z",
                "2026-11-25T10:00:03Zoops",
                "expected an RFC 3339 timestamp",
            ),
            (
                "Iteration:        2",
                "Iteration:        2\nIteration:        7",
                "given twice",
            ),
            (
                "Job type:         Unbounded\nTime elapsed:     3000",
                "Job type:         Garbage\nTime elapsed:     3000",
                "unknown job type",
            ),
            (
                "Normal pages:     10240",
                "Normal pages 10240",
                "expected 'Label: value'",
            ),
        ];
        for (from, to, want) in cases {
            assert!(LOG.contains(from), "{from}");
            let text = LOG.replacen(from, to, 1);
            let p = parse(
                Path::new("jobs.txt"),
                text.as_bytes(),
                &IngestOptions::default(),
            );
            assert!(p.migrations.is_empty(), "{to}: {:?}", p.problems);
            assert!(
                p.problems.iter().any(|q| q.message.contains(want)),
                "{to}: {:?}",
                p.problems
            );
            assert!(
                p.problems
                    .iter()
                    .any(|q| q.line == 2 && q.message.contains("migration not recorded")),
                "{to}: {:?}",
                p.problems
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Replace any line with anything: the migration is recorded whole (every block
            /// used) or not at all with a problem, and never with a block silently lost.
            #[test]
            fn a_line_is_used_or_reported(at in 0usize..34, junk in "[ -9;-~]{0,30}|:[ -~]{0,10}") {
                let lines: Vec<&str> = LOG.lines().collect();
                let at = at % lines.len();
                let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                damaged[at] = junk.clone();
                let text = damaged.join("\n");
                let p = parse(Path::new("jobs.txt"), text.as_bytes(), &IngestOptions::default());
                let whole = parse(Path::new("jobs.txt"), LOG.as_bytes(), &IngestOptions::default());
                if p.problems.is_empty() {
                    // Only harmless edits pass silently (a field nobody reads, one given twice
                    // under another name): the migration is the same.
                    prop_assert_eq!(p.migrations.len(), 1, "{}", junk);
                    let (m, w) = (&p.migrations[0].row, &whole.migrations[0].row);
                    prop_assert_eq!(
                        (m.rounds, m.v_mig_bytes, m.vm_mem_bytes, m.t_mig_s, m.t_down_s),
                        (w.rounds, w.v_mig_bytes, w.vm_mem_bytes, w.t_mig_s, w.t_down_s),
                        "line {} -> {:?}", at, junk
                    );
                }
            }
        }
    }
}
