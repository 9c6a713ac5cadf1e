//! QEMU migration logs: JSON lines as written by the collector ([`crate::collect`]).
//!
//! Every line is an object with a `type` and the host wall clock `utc_ns` at which it was
//! recorded:
//! - `start`: a migration begins; `vm`, `workload`, `source_host`, `destination_host`, `uri`,
//!   `qemu_version`, `accelerator` (`kvm`, `tcg` or null), `parameters` (as set with
//!   migrate-set-parameters: `max-bandwidth` in bytes/s, `downtime-limit` in ms),
//!   `capabilities` (name -> bool), `verify`, `paused_hook`, `destination_status` (its
//!   query-status before the migration) and `destination_held` (true: the collector sent
//!   `stop` to the waiting destination so that it stays paused after the migration), and
//!   `link` (null, or `{"kind": "relay", "rate_bytes_per_s": N}` when a campaign's relay
//!   paced the stream: then N, not `max-bandwidth`, is the migration's bandwidth limit);
//! - `dirty_rate`: a pre-migration sample: `sample_s` and QEMU's `query-dirty-rate` reply
//!   (`dirty-rate` in MiB/s);
//! - `probe`: the pre-migration probe ([`crate::probe`]): `probe`, the probe file's JSON
//!   (windows, D, hot set, non-zero share), or null with an `error` when it could not run;
//! - `migrate`: the `migrate` command was sent (the migration's start);
//! - `reply`: a `command` and QEMU's `reply` (the `return` value), here `query-migrate`;
//! - `event`: a QMP event from the `source` or `destination` (`side`), as QEMU sent it, with
//!   its own `timestamp`;
//! - `cancel`: the collector sent `migrate_cancel` (`reason`);
//! - `hook`: the paused hook ran (`command`, `success`, `status`, `elapsed_s`);
//! - `verify`: the memory check after the migration: `verified` (bool, or null when the
//!   check could not run, with `error`), `pages`, `mismatch_pages`, `first_mismatches`
//!   (guest-physical addresses), `bytes`, `elapsed_s` (how long the check took) and `ranges`;
//! - `resume`: the collector sent `cont` to the destination;
//! - `activity`: what the hosts did (written by campaigns, [`crate::hostpower`]), cumulative
//!   counters read at `utc_ns`: `source_cpu_s` and `destination_cpu_s` (CPU time, utime +
//!   stime from `/proc/PID/stat`, of each host's QEMU processes; null when not found) and
//!   `link_bytes` (bytes the migration link forwarded from source to destination, counted by
//!   migwatt's relay; null without one). They start up to 10 s before `start` (their own
//!   `utc_ns` says when) and may follow `end` (the destination running after the migration);
//!   logs without them parse the same;
//! - `end`: the collector is done with this migration.
//!
//! Downtime (`t_down_s`): source STOP to destination RESUME (`guest_stop_resume`) when the
//! destination ran the guest by itself; when the collector held it paused for the check
//! (`destination_held`) or resumed it (a `resume` line: started with `-S`), RESUME says when
//! the collector let it run (if it did), so the downtime ends at the destination's MIGRATION
//! `completed` event instead
//! (`source_stop_destination_completed`), the instant QEMU would have resumed the guest,
//! and so does the migration's `end_utc_ns`. The check's own time is in the `verify` line.
//!
//! A migration is complete once a reply with a final status (completed, failed, cancelled)
//! is present. After a cancel the reply shrinks to `{"status": "cancelled"}`, so the figures
//! of a migration that did not complete come from its last reply with a `ram` object.

use std::collections::BTreeMap;
use std::path::Path;

use datasets::migrations::MigrationRow;
use serde_json::Value;

use crate::precopy::{self, PrecopyInput, Snapshot};
use crate::units::MAX_BYTES;
use crate::{IngestOptions, Migration, Parsed, Problem};

/// `type` of the line that opens a migration.
pub const LINE_START: &str = "start";
/// `type` of a pre-migration dirty-rate sample line.
pub const LINE_DIRTY_RATE: &str = "dirty_rate";
/// `type` of the line recording that `migrate` was sent.
pub const LINE_MIGRATE: &str = "migrate";
/// `type` of a command reply line.
pub const LINE_REPLY: &str = "reply";
/// `type` of a QMP event line.
pub const LINE_EVENT: &str = "event";
/// `type` of a `migrate_cancel` line.
pub const LINE_CANCEL: &str = "cancel";
/// `type` of the closing line.
pub const LINE_END: &str = "end";
/// `type` of the paused hook's line.
pub const LINE_HOOK: &str = "hook";
/// `type` of the memory check's line.
pub const LINE_VERIFY: &str = "verify";
/// `type` of the line recording that the collector resumed the destination (`cont`).
pub const LINE_RESUME: &str = "resume";
/// `type` of a host activity sample line ([`crate::hostpower`]).
pub const LINE_ACTIVITY: &str = "activity";
/// `type` of the pre-migration probe's line ([`crate::probe`]).
pub const LINE_PROBE: &str = "probe";

/// A `query-migrate` reply's figures.
#[derive(Debug, Clone, PartialEq)]
struct Poll {
    line: usize,
    utc_ns: i64,
    status: String,
    total_time_ms: Option<u64>,
    downtime_ms: Option<u64>,
    ram: Option<Ram>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ram {
    transferred: u64,
    remaining: u64,
    total: u64,
    duplicate: Option<u64>,
    normal: Option<u64>,
    dirty_sync_count: u32,
    page_size: Option<u64>,
}

#[derive(Debug, Default)]
struct Group {
    line: usize,
    start: Value,
    start_utc_ns: i64,
    migrate_utc_ns: Option<i64>,
    dirty: Option<(f64, f64)>,
    polls: Vec<Poll>,
    passes: BTreeMap<u32, i64>,
    stop_ns: Option<i64>,
    resume_ns: Option<i64>,
    completed_ns: Option<i64>,
    dest_completed_ns: Option<i64>,
    resumed_by_collector: bool,
    verified: Option<bool>,
    mismatch_pages: Option<u64>,
    probe: Option<trainer::probe::Probe>,
}

/// A non-negative integer field no larger than [`MAX_BYTES`] (larger is malformed).
fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k)
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
        .filter(|x| *x <= MAX_BYTES)
}

/// Latest UTC ns a log line may carry (about year 2116); keeps time arithmetic exact.
const MAX_UTC_NS: i64 = 1 << 62;

fn parse_ram(r: &Value) -> Option<Ram> {
    Some(Ram {
        transferred: u(r, "transferred")?,
        remaining: u(r, "remaining")?,
        total: u(r, "total")?,
        duplicate: u(r, "duplicate"),
        normal: u(r, "normal"),
        dirty_sync_count: u(r, "dirty-sync-count")?.min(u32::MAX as u64) as u32,
        page_size: u(r, "page-size"),
    })
}

/// QMP event timestamp in UTC ns.
pub fn event_ns(ev: &Value) -> Option<i64> {
    let ts = ev.get("timestamp")?;
    let s = ts.get("seconds")?.as_i64()?;
    let us = ts.get("microseconds")?.as_i64()?;
    if !(0..=1 << 32).contains(&s) || !(0..1_000_000).contains(&us) {
        return None;
    }
    Some(s * 1_000_000_000 + us * 1000)
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

    fn line(&mut self, g: &mut Option<Group>, lineno: usize, v: &Value) {
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            self.problem(lineno, "expected a JSON object with a string 'type'");
            return;
        };
        let Some(utc_ns) = v
            .get("utc_ns")
            .and_then(Value::as_i64)
            .filter(|t| (0..=MAX_UTC_NS).contains(t))
        else {
            self.problem(lineno, "expected an integer 'utc_ns' (UTC ns since 1970)");
            return;
        };
        if kind == LINE_START {
            if let Some(old) = g.take() {
                self.finish(old);
            }
            *g = Some(Group {
                line: lineno,
                start: v.clone(),
                start_utc_ns: utc_ns,
                ..Group::default()
            });
            return;
        }
        let Some(grp) = g.as_mut() else {
            self.problem(lineno, format!("'{kind}' line before any 'start' line"));
            return;
        };
        match kind {
            LINE_MIGRATE => grp.migrate_utc_ns = Some(utc_ns),
            LINE_PROBE => match v.get("probe") {
                // A probe that failed is recorded with its error and no figures.
                None | Some(Value::Null) => {}
                Some(p) => match serde_json::from_value::<trainer::probe::Probe>(p.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|p| p.check("probe line").map(|_| p).map_err(|e| e.to_string()))
                {
                    Ok(p) => grp.probe = Some(p),
                    Err(e) => self.problem(lineno, format!("probe line: {e}")),
                },
            },
            LINE_DIRTY_RATE => {
                let rate = v
                    .get("reply")
                    .and_then(|r| r.get("dirty-rate"))
                    .and_then(Value::as_f64);
                let sample = v.get("sample_s").and_then(Value::as_f64);
                match (rate, sample) {
                    (Some(r), Some(s)) => grp.dirty = Some((r * 1024.0 * 1024.0, s)),
                    _ => self.problem(
                        lineno,
                        "dirty_rate line: expected 'sample_s' and reply.'dirty-rate' (MiB/s)",
                    ),
                }
            }
            LINE_REPLY => {
                if v.get("command").and_then(Value::as_str) != Some("query-migrate") {
                    return;
                }
                let Some(r) = v.get("reply") else {
                    self.problem(lineno, "reply line without 'reply'");
                    return;
                };
                let Some(status) = r.get("status").and_then(Value::as_str) else {
                    self.problem(lineno, "query-migrate reply without 'status'");
                    return;
                };
                let ram = match r.get("ram") {
                    Some(x) => match parse_ram(x) {
                        Some(ram) => Some(ram),
                        None => {
                            self.problem(lineno, "query-migrate 'ram' lacks transferred, remaining, total or dirty-sync-count");
                            return;
                        }
                    },
                    None => None,
                };
                grp.polls.push(Poll {
                    line: lineno,
                    utc_ns,
                    status: status.to_string(),
                    total_time_ms: u(r, "total-time"),
                    downtime_ms: u(r, "downtime"),
                    ram,
                });
            }
            LINE_EVENT => {
                let side = v.get("side").and_then(Value::as_str).unwrap_or("");
                let Some(ev) = v.get("event") else {
                    self.problem(lineno, "event line without 'event'");
                    return;
                };
                let name = ev.get("event").and_then(Value::as_str).unwrap_or("");
                let Some(t) = event_ns(ev) else {
                    self.problem(lineno, "event without a valid QMP timestamp");
                    return;
                };
                match (side, name) {
                    ("source", "MIGRATION_PASS") => {
                        match ev.get("data").and_then(|d| u(d, "pass")) {
                            Some(p) => {
                                grp.passes.entry(p.min(u32::MAX as u64) as u32).or_insert(t);
                            }
                            None => self.problem(lineno, "MIGRATION_PASS without data.pass"),
                        }
                    }
                    ("source", "STOP") if grp.migrate_utc_ns.is_some() && grp.stop_ns.is_none() => {
                        grp.stop_ns = Some(t);
                    }
                    ("source", "MIGRATION") => {
                        let st = ev
                            .get("data")
                            .and_then(|d| d.get("status"))
                            .and_then(Value::as_str);
                        if st == Some("completed") && grp.completed_ns.is_none() {
                            grp.completed_ns = Some(t);
                        }
                    }
                    ("destination", "RESUME") if grp.resume_ns.is_none() => {
                        grp.resume_ns = Some(t);
                    }
                    ("destination", "MIGRATION") => {
                        let st = ev
                            .get("data")
                            .and_then(|d| d.get("status"))
                            .and_then(Value::as_str);
                        if st == Some("completed") && grp.dest_completed_ns.is_none() {
                            grp.dest_completed_ns = Some(t);
                        }
                    }
                    _ => {}
                }
            }
            LINE_VERIFY => {
                match v.get("verified") {
                    Some(Value::Bool(ok)) => {
                        let Some(n) = u(v, "mismatch_pages") else {
                            self.problem(lineno, "verify line: expected 'mismatch_pages' (pages)");
                            return;
                        };
                        if *ok != (n == 0) {
                            self.problem(
                            lineno,
                            format!("verify line: 'verified' {ok} contradicts {n} mismatching pages"),
                        );
                            return;
                        }
                        grp.verified = Some(*ok);
                        grp.mismatch_pages = Some(n);
                    }
                    Some(Value::Null) => {}
                    _ => self.problem(
                        lineno,
                        "verify line: expected 'verified' true, false or null",
                    ),
                }
            }
            LINE_RESUME => grp.resumed_by_collector = true,
            LINE_ACTIVITY => {
                if crate::hostpower::sample_of_line(v).is_none() {
                    self.problem(
                        lineno,
                        "'activity' line: expected source_cpu_s and destination_cpu_s (seconds >= 0 or null) and link_bytes (an integer or null)",
                    );
                }
            }
            LINE_CANCEL | LINE_END | LINE_HOOK => {}
            other => self.problem(lineno, format!("unknown line type '{other}'")),
        }
    }

    fn finish(&mut self, g: Group) {
        let terminal = g
            .polls
            .iter()
            .find(|p| matches!(p.status.as_str(), "completed" | "failed" | "cancelled"));
        let Some(terminal) = terminal.cloned() else {
            self.problem(g.line, "incomplete migration: no query-migrate reply with status completed, failed or cancelled");
            return;
        };
        let converged = terminal.status == "completed";
        // QEMU may answer `completed` before it has set total-time and downtime (they read
        // 0 then); the collector polls once more after completion, so take the last reply.
        let terminal = g
            .polls
            .iter()
            .rfind(|p| p.status == terminal.status)
            .cloned()
            .unwrap_or(terminal);
        let last_ram = g
            .polls
            .iter()
            .rfind(|p| p.line <= terminal.line && p.ram.is_some())
            .cloned();
        let final_poll = if converged && terminal.ram.is_some() {
            terminal.clone()
        } else {
            match last_ram {
                Some(p) => p,
                None => {
                    self.problem(
                        g.line,
                        format!(
                            "migration ended '{}' without any reply carrying 'ram' figures",
                            terminal.status
                        ),
                    );
                    return;
                }
            }
        };
        let Some(ram) = final_poll.ram else { return };
        let s = &g.start;
        let gs = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        let vm = self
            .opts
            .vm
            .clone()
            .or_else(|| gs("vm"))
            .unwrap_or_else(|| "unknown".into());
        let t_start = g.migrate_utc_ns.unwrap_or(g.start_utc_ns);
        let id = format!("qemu-{vm}-{t_start}");
        let page = ram
            .page_size
            .filter(|p| (1..=1 << 30).contains(p))
            .unwrap_or(4096);
        let total_time_ms = final_poll.total_time_ms.filter(|ms| *ms > 0);
        let t_end = if converged {
            match (total_time_ms, g.completed_ns) {
                (Some(ms), _) => t_start.saturating_add((ms as i64).saturating_mul(1_000_000)),
                (None, Some(t)) => t,
                (None, None) => final_poll.utc_ns,
            }
        } else {
            final_poll.utc_ns
        }
        .max(t_start);
        let snapshots: Vec<Snapshot> = g
            .polls
            .iter()
            .filter(|p| !matches!(p.status.as_str(), "completed" | "failed" | "cancelled"))
            .filter_map(|p| {
                let r = p.ram?;
                Some(Snapshot {
                    t_ns: p.utc_ns,
                    sync_count: r.dirty_sync_count,
                    transferred_bytes: r.transferred,
                    pages: r.normal.zip(r.duplicate).map(|(a, b)| a + b),
                    remaining_bytes: Some(r.remaining),
                })
            })
            .collect();
        let pre = g.dirty.map(|d| d.0);
        let rounds = precopy::rounds(&PrecopyInput {
            migration_id: &id,
            snapshots: &snapshots,
            pass_times: &g.passes,
            t_start_ns: t_start,
            t_end_ns: t_end,
            rounds: ram.dirty_sync_count,
            final_transferred_bytes: ram.transferred,
            final_pages: ram.normal.zip(ram.duplicate).map(|(a, b)| a + b),
            final_remaining_bytes: Some(ram.remaining),
            converged,
            page_size_bytes: page,
            pre_dirty_rate_bytes_per_s: pre,
            utc_offset_ns: Some(0),
            stop_ns: g.stop_ns,
        });
        let reported = terminal
            .downtime_ms
            .filter(|ms| *ms > 0)
            .map(|ms| ms as f64 / 1e3);
        // A destination the collector held paused (for the check) or resumed itself (started
        // with -S) resumed when the collector let it, if at all: its end is its MIGRATION
        // `completed`.
        let held = g.resumed_by_collector
            || s.get("destination_held").and_then(Value::as_bool) == Some(true);
        let dest_end = if held {
            g.dest_completed_ns
        } else {
            g.resume_ns
        };
        let (t_down_s, method) = match (g.stop_ns, dest_end) {
            (Some(a), Some(b)) if converged && b >= a => (
                Some((b - a) as f64 / 1e9),
                if held {
                    "source_stop_destination_completed"
                } else {
                    "guest_stop_resume"
                },
            ),
            _ => match reported {
                Some(r) if converged => (Some(r), "qemu_reported"),
                _ => (None, "none"),
            },
        };
        let params = s.get("parameters");
        let caps = s.get("capabilities");
        let end_utc = match dest_end {
            Some(r) if converged && r >= t_start => r.max(t_end),
            _ => t_end,
        };
        let row = MigrationRow {
            migration_id: id,
            hypervisor: "qemu".into(),
            vm,
            workload: self.opts.workload.clone().or_else(|| gs("workload")),
            vm_mem_bytes: ram.total,
            page_size_bytes: page,
            start_utc_ns: Some(t_start),
            end_utc_ns: Some(end_utc),
            t_mig_s: total_time_ms.map_or((t_end - t_start) as f64 / 1e9, |ms| ms as f64 / 1e3),
            t_down_s,
            t_down_method: method.into(),
            t_down_reported_s: reported,
            v_mig_bytes: ram.transferred,
            zero_pages: ram.duplicate,
            rounds: rounds.len() as u32,
            converged,
            status: terminal.status.clone(),
            bandwidth_limit_bytes_per_s: g
                .start
                .get("link")
                .and_then(|l| l.get("rate_bytes_per_s"))
                .and_then(Value::as_f64)
                .or_else(|| {
                    params
                        .and_then(|p| p.get("max-bandwidth"))
                        .and_then(Value::as_f64)
                }),
            downtime_limit_s: params
                .and_then(|p| p.get("downtime-limit"))
                .and_then(Value::as_f64)
                .map(|ms| ms / 1e3),
            max_rounds: None,
            max_factor: None,
            auto_converge: caps
                .and_then(|c| c.get("auto-converge"))
                .and_then(Value::as_bool),
            pre_dirty_rate_bytes_per_s: pre,
            pre_dirty_sample_s: g.dirty.map(|d| d.1),
            source_host: self.opts.source_host_or(gs("source_host").as_deref()),
            destination_host: self
                .opts
                .destination_host_or(gs("destination_host").as_deref()),
            memory_verified: g.verified.filter(|_| converged),
            memory_mismatch_pages: g.mismatch_pages.filter(|_| converged),
            accelerator: gs("accelerator")
                .filter(|a| datasets::migrations::ACCELERATORS.contains(&a.as_str())),
            probe_dirty_rate_bytes_per_s: g.probe.as_ref().map(|p| p.dirty_rate_bytes_per_s),
            probe_hot_set_bytes: g.probe.as_ref().and_then(|p| p.hot_set_bytes),
            probe_nonzero_share: g.probe.as_ref().and_then(|p| p.nonzero_share),
        };
        self.out.migrations.push(Migration { row, rounds });
    }
}

/// Parse a QEMU JSON-lines migration log (see the module docs).
pub fn parse(path: &Path, bytes: &[u8], opts: &IngestOptions) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut p = Parser {
        path,
        opts,
        out: Parsed::default(),
    };
    let mut group: Option<Group> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => p.line(&mut group, i + 1, &v),
            Ok(_) => p.problem(i + 1, "expected a JSON object"),
            Err(e) => p.problem(i + 1, format!("malformed JSON: {e}")),
        }
    }
    if let Some(g) = group.take() {
        p.finish(g);
    }
    p.out
}
