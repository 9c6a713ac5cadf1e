//! Drive one live migration through QMP and record it (`migwatt calibrate migrate`).
//!
//! Connects to the source and destination QMP sockets, turns the `events` capability on
//! (and `auto-converge` when asked), sets `max-bandwidth` / `downtime-limit`, optionally
//! samples the guest's dirtying rate (`calc-dirty-rate` / `query-dirty-rate`), sends
//! `migrate`, polls `query-migrate` every 50 ms and records every reply and every event of
//! both sides as JSON lines (format: [`crate::qemu`]). A migration still running at the
//! timeout (or when the cancellation flag is raised) is cancelled with `migrate_cancel` and
//! recorded as not converged. The rows come from parsing the recorded log with
//! [`crate::qemu::parse`], so `ingest qemu` of the log gives the same rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::qmp::{utc_now_ns, Qmp};
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
    /// VM name.
    pub vm: String,
    /// Workload label.
    pub workload: Option<String>,
    /// Source host name.
    pub source_host: String,
    /// Destination host name.
    pub destination_host: String,
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
}

struct Recorder {
    lines: Vec<Value>,
}

impl Recorder {
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
    let connect_timeout = Duration::from_secs(10);
    let mut src = Qmp::connect(&opts.source_qmp, connect_timeout)?;
    let mut dst = Qmp::connect(&opts.dest_qmp, connect_timeout)?;
    let version = src.qemu_version();
    let cmd_timeout = Duration::from_secs(10);
    src.execute(
        "migrate-set-capabilities",
        Some(json!({"capabilities": [
            {"capability": "events", "state": true},
            {"capability": "auto-converge", "state": opts.auto_converge},
        ]})),
        cmd_timeout,
    )?;
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
    let mut rec = Recorder { lines: Vec::new() };
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
            "timeout_s": opts.timeout.as_secs_f64(),
            "parameters": {
                "max-bandwidth": p.get("max-bandwidth"),
                "downtime-limit": p.get("downtime-limit"),
            },
            "capabilities": caps,
        }),
    );
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
    if final_status == "completed" {
        // The polling loop may already have recorded the destination's RESUME.
        let resumed = rec
            .lines
            .iter()
            .any(|l| l["side"] == "destination" && l["event"]["event"].as_str() == Some("RESUME"));
        if !resumed {
            dst.wait_event("RESUME", Duration::from_secs(10));
        }
        // QEMU can report `completed` before filling total-time and downtime: ask again.
        std::thread::sleep(Duration::from_millis(100));
        let (t, r) = src.execute("query-migrate", None, cmd_timeout)?;
        rec.push(
            qemu::LINE_REPLY,
            t,
            json!({"command": "query-migrate", "reply": r}),
        );
    }
    rec.events("source", &mut src);
    rec.events("destination", &mut dst);
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
    })
}
