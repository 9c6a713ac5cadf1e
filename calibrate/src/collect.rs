//! Drive one live migration through QMP and record it (`migwatt calibrate migrate`).
//!
//! Connects to the source and destination QMP sockets, turns the `events` capability on
//! (both sides; `auto-converge` on the source when asked), sets `max-bandwidth` /
//! `downtime-limit`, optionally samples the guest's dirtying rate (`calc-dirty-rate` /
//! `query-dirty-rate`), sends `migrate`, polls `query-migrate` every 50 ms and records every
//! reply and every event of both sides as JSON lines (format: [`crate::qemu`]). A migration
//! still running at the timeout (or when the cancellation flag is raised) is cancelled with
//! `migrate_cancel` and recorded as not converged. The rows come from parsing the recorded
//! log with [`crate::qemu::parse`], so `ingest qemu` of the log gives the same rows.
//!
//! **Verification** (`verify`): the destination must not run the guest before its memory is
//! proven equal to the source's. QEMU's `query-status` says `inmigrate` on a waiting
//! destination whether or not it was started with `-S`, so the collector cannot tell how it
//! was started; instead it sends `stop` to the waiting destination, which QEMU documents as
//! keeping the guest paused once the incoming migration finishes, exactly as `-S` does (a
//! destination that is not `inmigrate` is refused before migrating). Once the migration
//! completes, both guests are paused (source `postmigrate`, destination `paused`): the
//! optional paused hook runs, then [`crate::verify::compare_guest_ram`] compares all guest
//! RAM page by page, and only when every page matched is the destination resumed (`cont`).
//! A destination found running then, or a mismatch, leaves it as it is and the migration is
//! recorded as not verified. The downtime of a held destination is measured from the
//! source's STOP to the destination's MIGRATION `completed` event (where a destination
//! without `-S` would resume), not to its later RESUME; the time of the hook and the check
//! are recorded in their own log lines.
//!
//! **Paused hook** (`paused_hook`): a shell command run while both guests are paused after
//! the migration, before verification, with `MIGWATT_SOURCE_QMP` and `MIGWATT_DEST_QMP` in
//! its environment. QEMU serves one QMP client per socket, so the collector disconnects
//! while the hook runs and reconnects after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::qmp::{utc_now_ns, Qmp};
use crate::verify::Verification;
use crate::{qemu, CalibrateError, IngestOptions, Migration, Problem};

/// Options of one collected migration.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Source QEMU's QMP unix socket.
    pub source_qmp: PathBuf,
    /// Destination QEMU's QMP unix socket (started with `-incoming`).
    pub dest_qmp: PathBuf,
    /// Migration URI given to `migrate` (e.g. `unix:/tmp/relay.sock`, `tcp:127.0.0.1:4444`).
    pub uri: String,
    /// `max-bandwidth`, bytes/s (None: QEMU's current value).
    pub bandwidth_bytes_per_s: Option<u64>,
    /// `downtime-limit`, ms (None: QEMU's current value).
    pub downtime_limit_ms: Option<u64>,
    /// Turn the `auto-converge` capability on.
    pub auto_converge: bool,
    /// Cancel the migration if it has not finished after this long.
    pub timeout: Duration,
    /// `query-migrate` polling interval (50 ms).
    pub poll_interval: Duration,
    /// Sample the dirtying rate for this many seconds before migrating.
    pub dirty_rate_sample_s: Option<f64>,
    /// Probe the VM before migrating ([`crate::probe`]; None: no probe). Its result is the
    /// log's `probe` line and the row's `probe_*` columns.
    pub probe: Option<crate::probe::ProbeOptions>,
    /// VM name.
    pub vm: String,
    /// Workload label.
    pub workload: Option<String>,
    /// Source host name.
    pub source_host: String,
    /// Destination host name.
    pub destination_host: String,
    /// Compare all guest RAM of the paused source and destination before the destination
    /// runs (see the module docs).
    pub verify: bool,
    /// Shell command run while both guests are paused after the migration, before
    /// verification (environment: `MIGWATT_SOURCE_QMP`, `MIGWATT_DEST_QMP`).
    pub paused_hook: Option<String>,
    /// Working folder of the paused hook (None: this process's).
    pub paused_hook_dir: Option<PathBuf>,
    /// How guest RAM is read for the check.
    pub verify_method: crate::verify::VerifyMethod,
    /// Wait this long after the migration before the hook and the check (a campaign lets
    /// its meters record the migration's window tail undisturbed first).
    pub hold_before_verify: Duration,
}

impl MigrateOptions {
    /// Whether the destination is held paused after the migration (verification or a hook).
    pub fn holds_destination(&self) -> bool {
        self.verify || self.paused_hook.is_some()
    }
}

/// How the memory check went.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyOutcome {
    /// The comparison ran: every page matched, or some did not.
    Compared(Verification),
    /// The comparison could not run (or the destination ran before it): why.
    NotChecked(String),
}

/// How the paused hook went.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOutcome {
    /// The command.
    pub command: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// How it ended (`exit status: 0`, or why it could not run).
    pub status: String,
    /// How long it ran, s.
    pub elapsed_s: f64,
}

/// What a collected migration gave.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The raw JSON-lines log (replayable with `ingest qemu`).
    pub log: Vec<u8>,
    /// The migration's rows.
    pub migration: Migration,
    /// Problems found when parsing the log (normally none).
    pub problems: Vec<Problem>,
    /// QEMU version of the source.
    pub qemu_version: Option<String>,
    /// Accelerator of the source (`kvm`, `tcg`), when QEMU says.
    pub accelerator: Option<String>,
    /// The memory check, when asked for and the migration completed.
    pub verification: Option<VerifyOutcome>,
    /// The paused hook, when given and the migration completed.
    pub hook: Option<HookOutcome>,
    /// Whether the destination was left paused (a mismatch or a failed check).
    pub destination_left_paused: bool,
    /// What went wrong after the migration completed (the migration is still recorded).
    pub error_after: Option<String>,
}

impl Collected {
    /// Whether the migration completed and, when verification was asked, every page matched:
    /// false means exit status 4 for `calibrate migrate`.
    pub fn succeeded(&self, verify: bool) -> bool {
        self.migration.row.converged
            && (!verify
                || matches!(&self.verification, Some(VerifyOutcome::Compared(v)) if v.verified()))
    }

    /// A sentence on the memory check for the user.
    pub fn verification_text(&self) -> Option<String> {
        Some(match self.verification.as_ref()? {
            VerifyOutcome::Compared(v) if v.verified() => format!(
                "memory verified: all {} pages ({:.1} MiB) of the paused source and destination match ({:.2} s, {}{})",
                v.diff.pages,
                v.bytes as f64 / (1u64 << 20) as f64,
                v.elapsed_s,
                v.method,
                v.fallback_reason
                    .as_ref()
                    .map_or(String::new(), |w| format!(": process memory not readable: {w}"))
            ),
            VerifyOutcome::Compared(v) => format!(
                "MEMORY MISMATCH: {} of {} pages differ between the paused source and destination; first at {}{}; the destination was left paused",
                v.diff.mismatch_pages,
                v.diff.pages,
                v.diff
                    .first_mismatches
                    .iter()
                    .map(|a| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if v.diff.mismatch_pages > v.diff.first_mismatches.len() as u64 {
                    " ..."
                } else {
                    ""
                }
            ),
            VerifyOutcome::NotChecked(why) => format!("memory NOT verified: {why}"),
        })
    }
}

struct Recorder {
    lines: Vec<Value>,
    activity: Option<crate::hostpower::ActivityFeed>,
    activity_from_ns: i64,
}

impl Recorder {
    /// Move the activity samples taken since the last call into the log.
    fn activity(&mut self) {
        let Some(feed) = &self.activity else {
            return;
        };
        let taken: Vec<_> = feed
            .lock()
            .map(|mut v| v.drain(..).collect())
            .unwrap_or_default();
        for a in taken.iter().filter(|a| a.utc_ns >= self.activity_from_ns) {
            self.lines.push(crate::hostpower::activity_line(a));
        }
    }
    fn push(&mut self, kind: &str, utc_ns: i64, mut v: Value) {
        v["type"] = kind.into();
        v["utc_ns"] = utc_ns.into();
        self.lines.push(v);
    }
    fn events(&mut self, side: &str, q: &mut Qmp) {
        for (t, ev) in q.take_events() {
            self.push(qemu::LINE_EVENT, t, json!({"side": side, "event": ev}));
        }
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            out.extend_from_slice(l.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }
}

fn sample_dirty_rate(
    src: &mut Qmp,
    sample_s: f64,
    rec: &mut Recorder,
    progress: &mut dyn FnMut(&str),
) -> Result<(), CalibrateError> {
    // Whole seconds: the only unit QEMU before 8.2 takes. Page sampling with the most
    // samples QEMU allows (10000 per GiB); the dirty-bitmap mode would count every page but
    // kills QEMU 7.2 under TCG, and a measurement must never crash the guest.
    let sample_s = sample_s.ceil().max(1.0);
    let mode = "page-sampling";
    let args = json!({"calc-time": sample_s as u64, "sample-pages": 10000});
    if let Err(e) = src.execute("calc-dirty-rate", Some(args), Duration::from_secs(10)) {
        match e {
            CalibrateError::QmpCommand { .. } => src
                .execute(
                    "calc-dirty-rate",
                    Some(json!({"calc-time": sample_s as u64})),
                    Duration::from_secs(10),
                )
                .map(|_| ())?,
            e => return Err(e),
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(sample_s + 10.0);
    std::thread::sleep(Duration::from_secs_f64(sample_s));
    loop {
        let (t, r) = src.execute("query-dirty-rate", None, Duration::from_secs(10))?;
        if r.get("status").and_then(Value::as_str) == Some("measured") {
            rec.push(
                qemu::LINE_DIRTY_RATE,
                t,
                json!({"sample_s": sample_s, "mode": mode, "reply": r}),
            );
            progress(&format!(
                "pre-migration dirty rate: {} MiB/s ({mode}, {sample_s} s)",
                r.get("dirty-rate").unwrap_or(&Value::Null)
            ));
            return Ok(());
        }
        if Instant::now() > deadline {
            progress("dirty-rate sample did not finish; migrating without it");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run one migration (see the module docs). `cancel` cancels the migration as a timeout does.
pub fn migrate(
    opts: &MigrateOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<Collected, CalibrateError> {
    migrate_with(opts, cancel, progress, &mut |_| {})
}

/// [`migrate`], also handing every `query-migrate` reply to `on_poll` (progress bars, live
/// emulated power).
pub fn migrate_with(
    opts: &MigrateOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&str),
    on_poll: &mut dyn FnMut(&Value),
) -> Result<Collected, CalibrateError> {
    migrate_with_activity(opts, None, None, cancel, progress, on_poll)
}

/// [`migrate_with`], also recording the host activity samples of `activity` (a running
/// [`crate::hostpower::Sampler`]'s feed) as `activity` lines: those of the last 10 s before
/// the migration, and every later one until the end; `link` (e.g. a relay and its rate) goes
/// into the `start` line.
pub fn migrate_with_activity(
    opts: &MigrateOptions,
    activity: Option<&crate::hostpower::ActivityFeed>,
    link: Option<Value>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&str),
    on_poll: &mut dyn FnMut(&Value),
) -> Result<Collected, CalibrateError> {
    let connect_timeout = Duration::from_secs(10);
    let mut src = Qmp::connect(&opts.source_qmp, connect_timeout)?;
    let mut dst = Qmp::connect(&opts.dest_qmp, connect_timeout)?;
    let version = src.qemu_version();
    let accelerator = crate::accel::accelerator_of(&mut src);
    let cmd_timeout = Duration::from_secs(10);
    let hold = opts.holds_destination();
    let (_, st) = dst.execute("query-status", None, cmd_timeout)?;
    let dst_status = st
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if hold {
        if dst_status != "inmigrate" {
            return Err(CalibrateError::Usage(format!(
                "destination {} is '{dst_status}', not waiting for an incoming migration: start it with -incoming (and -S)",
                opts.dest_qmp.display()
            )));
        }
        // query-status cannot tell whether the destination was started with -S; `stop` on
        // a destination in `inmigrate` makes it stay paused after the migration, as -S does.
        dst.execute("stop", None, cmd_timeout)?;
    }
    src.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [
            {"capability": "events", "state": true},
            {"capability": "auto-converge", "state": opts.auto_converge},
        ]})),
        cmd_timeout,
    )?;
    // The destination's MIGRATION events date its end (its `completed`).
    if let Err(e) = dst.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
        cmd_timeout,
    ) {
        progress(&format!("destination events not available: {e}"));
    }
    let mut params = json!({});
    if let Some(b) = opts.bandwidth_bytes_per_s {
        params["max-bandwidth"] = b.into();
    }
    if let Some(d) = opts.downtime_limit_ms {
        params["downtime-limit"] = d.into();
    }
    if params.as_object().is_some_and(|o| !o.is_empty()) {
        src.execute("migrate-set-parameters", Some(params), cmd_timeout)?;
    }
    let (_, p) = src.execute("query-migrate-parameters", None, cmd_timeout)?;
    let (_, caps) = src.execute("query-migrate-capabilities", None, cmd_timeout)?;
    let caps: serde_json::Map<String, Value> = caps
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some((
                        c.get("capability")?.as_str()?.to_string(),
                        c.get("state")?.clone(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rec = Recorder {
        lines: Vec::new(),
        activity: activity.cloned(),
        activity_from_ns: utc_now_ns() - 10_000_000_000,
    };
    rec.push(
        qemu::LINE_START,
        utc_now_ns(),
        json!({
            "vm": opts.vm,
            "workload": opts.workload,
            "source_host": opts.source_host,
            "destination_host": opts.destination_host,
            "uri": opts.uri,
            "qemu_version": version,
            "accelerator": accelerator,
            "timeout_s": opts.timeout.as_secs_f64(),
            "parameters": {
                "max-bandwidth": p.get("max-bandwidth"),
                "downtime-limit": p.get("downtime-limit"),
            },
            "capabilities": caps,
            "verify": opts.verify,
            "paused_hook": opts.paused_hook,
            "destination_status": dst_status,
            "destination_held": hold,
            "link": link,
        }),
    );
    if let Some(po) = &opts.probe {
        // A probe that cannot run costs the record its probe columns, not the migration.
        match crate::probe::probe(&mut src, po, cancel, progress) {
            Ok(p) => rec.push(qemu::LINE_PROBE, utc_now_ns(), json!({ "probe": p })),
            Err(CalibrateError::Cancelled) => return Err(CalibrateError::Cancelled),
            Err(e) => {
                progress(&format!("probe failed, migrating without it: {e}"));
                rec.push(
                    qemu::LINE_PROBE,
                    utc_now_ns(),
                    json!({ "probe": null, "error": e.to_string() }),
                );
            }
        }
    }
    if let Some(s) = opts.dirty_rate_sample_s {
        sample_dirty_rate(&mut src, s, &mut rec, progress)?;
    }
    // Events from before the migration (boot, the sample) are not part of it.
    src.take_events();
    dst.take_events();
    let t0 = Instant::now();
    rec.push(qemu::LINE_MIGRATE, utc_now_ns(), json!({"uri": opts.uri}));
    src.execute("migrate", Some(json!({"uri": opts.uri})), cmd_timeout)?;
    progress(&format!("migrating to {}", opts.uri));
    let mut cancelled_at: Option<Instant> = None;
    let mut next = Instant::now();
    let final_status = loop {
        next += opts.poll_interval;
        let (t, r) = src.execute("query-migrate", None, cmd_timeout)?;
        let status = r
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        on_poll(&r);
        rec.push(
            qemu::LINE_REPLY,
            t,
            json!({"command": "query-migrate", "reply": r}),
        );
        rec.events("source", &mut src);
        rec.events("destination", &mut dst);
        rec.activity();
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            break status;
        }
        let stop_asked = cancel.load(Ordering::Relaxed);
        if cancelled_at.is_none() && (t0.elapsed() >= opts.timeout || stop_asked) {
            let reason = if stop_asked {
                "cancellation requested".to_string()
            } else {
                format!("not finished after {:.1} s", opts.timeout.as_secs_f64())
            };
            progress(&format!("cancelling: {reason}"));
            rec.push(qemu::LINE_CANCEL, utc_now_ns(), json!({"reason": reason}));
            src.execute("migrate_cancel", None, cmd_timeout)?;
            cancelled_at = Some(Instant::now());
        }
        if cancelled_at.is_some_and(|c| c.elapsed() > Duration::from_secs(30)) {
            break "incomplete".to_string();
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    };
    let mut post = Post::default();
    let mut conns = Some((src, dst));
    if final_status == "completed" {
        if let Err(e) = after_completion(opts, &mut conns, &mut rec, progress, &mut post) {
            let e = format!("after the migration: {e}");
            progress(&e);
            if hold && post.verification.is_none() {
                post.verification = Some(VerifyOutcome::NotChecked(e.clone()));
            }
            let resumed = rec.lines.iter().any(|l| l["type"] == qemu::LINE_RESUME);
            post.left_paused = hold && !resumed;
            post.error = Some(e);
        }
        if let Some(text) = post.verification.as_ref().map(|v| match v {
            VerifyOutcome::Compared(v) if v.verified() => "memory verified".to_string(),
            VerifyOutcome::Compared(v) => {
                format!("memory mismatch: {} pages", v.diff.mismatch_pages)
            }
            VerifyOutcome::NotChecked(w) => format!("memory not verified: {w}"),
        }) {
            progress(&text);
        }
    }
    if let Some((src, dst)) = conns.as_mut() {
        rec.events("source", src);
        rec.events("destination", dst);
    }
    rec.activity();
    rec.push(
        qemu::LINE_END,
        utc_now_ns(),
        json!({"status": final_status}),
    );
    progress(&format!("migration {final_status}"));
    let log = rec.bytes();
    let path = Path::new("collector");
    let parsed = qemu::parse(path, &log, &IngestOptions::default());
    let Some(migration) = parsed.migrations.into_iter().next() else {
        return Err(CalibrateError::NoMigration {
            path: opts.source_qmp.clone(),
            problems: parsed.problems,
        });
    };
    Ok(Collected {
        log,
        migration,
        problems: parsed.problems,
        qemu_version: version,
        accelerator,
        verification: post.verification,
        hook: post.hook,
        destination_left_paused: post.left_paused,
        error_after: post.error,
    })
}

/// What happened after a completed migration.
#[derive(Default)]
struct Post {
    verification: Option<VerifyOutcome>,
    hook: Option<HookOutcome>,
    left_paused: bool,
    error: Option<String>,
}

/// After a completed migration: wait for the destination's end, ask `query-migrate` once
/// more, then (destination held) the paused hook, the memory check and `cont`, or (not held)
/// `cont` of a destination started with -S. `conns` is None after a failed reconnection.
fn after_completion(
    opts: &MigrateOptions,
    conns: &mut Option<(Qmp, Qmp)>,
    rec: &mut Recorder,
    progress: &mut dyn FnMut(&str),
    post: &mut Post,
) -> Result<(), CalibrateError> {
    let cmd_timeout = Duration::from_secs(10);
    let hold = opts.holds_destination();
    let Some((src, dst)) = conns.as_mut() else {
        return Ok(());
    };
    // The polling loop may already have recorded the destination's end.
    let seen = |rec: &Recorder, name: &str| {
        rec.lines.iter().any(|l| {
            l["side"] == "destination"
                && l["event"]["event"].as_str() == Some(name)
                && (name != "MIGRATION" || l["event"]["data"]["status"] == "completed")
        })
    };
    let wait_for = if hold { "MIGRATION" } else { "RESUME" };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !seen(rec, wait_for) {
        dst.wait_event(wait_for, Duration::from_millis(200));
        rec.events("destination", dst);
    }
    // QEMU can report `completed` before filling total-time and downtime: ask again.
    std::thread::sleep(Duration::from_millis(100));
    let (t, r) = src.execute("query-migrate", None, cmd_timeout)?;
    rec.push(
        qemu::LINE_REPLY,
        t,
        json!({"command": "query-migrate", "reply": r}),
    );
    rec.events("source", src);
    rec.events("destination", dst);
    if !hold {
        // A destination started with -S waits for `cont` even without verification.
        let (_, st) = dst.execute("query-status", None, cmd_timeout)?;
        if st.get("status").and_then(Value::as_str) == Some("paused") {
            resume_destination(dst, rec)?;
        }
        return Ok(());
    }
    std::thread::sleep(opts.hold_before_verify);
    if let Some(cmd) = &opts.paused_hook {
        // One QMP client per socket: let the hook have them.
        *conns = None;
        let h = run_paused_hook(cmd, opts, progress);
        rec.push(
            LINE_HOOK,
            utc_now_ns(),
            json!({"command": h.command, "success": h.success, "status": h.status, "elapsed_s": h.elapsed_s}),
        );
        post.hook = Some(h);
        let timeout = Duration::from_secs(10);
        *conns = Some((
            Qmp::connect(&opts.source_qmp, timeout)?,
            Qmp::connect(&opts.dest_qmp, timeout)?,
        ));
    }
    let Some((src, dst)) = conns.as_mut() else {
        return Ok(());
    };
    let (_, st) = dst.execute("query-status", None, cmd_timeout)?;
    let running = st.get("running").and_then(Value::as_bool) == Some(true);
    let outcome = if running {
        Some(VerifyOutcome::NotChecked(format!(
            "the destination is already running (status '{}'), so its memory can no longer be compared with the source's{}",
            st.get("status").and_then(Value::as_str).unwrap_or("?"),
            if opts.paused_hook.is_some() {
                "; did the paused hook resume it?"
            } else {
                ""
            }
        )))
    } else if opts.verify {
        progress("comparing the guest RAM of the paused source and destination");
        Some(
            match crate::verify::compare_guest_ram(src, dst, opts.verify_method) {
                Ok(v) => VerifyOutcome::Compared(v),
                Err(e) => VerifyOutcome::NotChecked(e.to_string()),
            },
        )
    } else {
        None
    };
    if let Some(o) = &outcome {
        rec.push(qemu::LINE_VERIFY, utc_now_ns(), verify_line(o));
    }
    let resume = !running
        && match &outcome {
            None => true,
            Some(VerifyOutcome::Compared(v)) => v.verified(),
            Some(VerifyOutcome::NotChecked(_)) => false,
        };
    post.left_paused = !running && !resume;
    post.verification = outcome;
    if resume {
        resume_destination(dst, rec)?;
    }
    Ok(())
}

/// `type` of the paused hook's line (command, success, status, elapsed_s).
pub const LINE_HOOK: &str = qemu::LINE_HOOK;

/// The `verify` log line of an outcome.
fn verify_line(o: &VerifyOutcome) -> Value {
    match o {
        VerifyOutcome::Compared(v) => json!({
            "verified": v.verified(),
            "pages": v.diff.pages,
            "mismatch_pages": v.diff.mismatch_pages,
            "first_mismatches": v.diff.first_mismatches,
            "bytes": v.bytes,
            "elapsed_s": v.elapsed_s,
            "ranges": v.ranges,
            "method": v.method,
            "fallback_reason": v.fallback_reason,
        }),
        VerifyOutcome::NotChecked(why) => json!({"verified": null, "error": why}),
    }
}

/// `cont` on the destination, recorded as a `resume` line.
fn resume_destination(dst: &mut Qmp, rec: &mut Recorder) -> Result<(), CalibrateError> {
    rec.push(qemu::LINE_RESUME, utc_now_ns(), json!({}));
    dst.execute("cont", None, Duration::from_secs(10))?;
    Ok(())
}

/// Run the paused hook through `sh -c` with the QMP socket paths in its environment.
fn run_paused_hook(
    cmd: &str,
    opts: &MigrateOptions,
    progress: &mut dyn FnMut(&str),
) -> HookOutcome {
    progress(&format!("paused hook: {cmd}"));
    let t0 = Instant::now();
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("MIGWATT_SOURCE_QMP", &opts.source_qmp)
        .env("MIGWATT_DEST_QMP", &opts.dest_qmp)
        .stdin(std::process::Stdio::null());
    if let Some(d) = &opts.paused_hook_dir {
        c.current_dir(d);
    }
    let st = c.status();
    let elapsed_s = t0.elapsed().as_secs_f64();
    let (success, status) = match st {
        Ok(s) => (s.success(), s.to_string()),
        Err(e) => (false, format!("could not run: {e}")),
    };
    if !success {
        progress(&format!("paused hook failed ({status}): {cmd}"));
    }
    HookOutcome {
        command: cmd.to_string(),
        success,
        status,
        elapsed_s,
    }
}
