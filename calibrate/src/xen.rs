//! Xen save logs: xend.log or raw libxc save output.
//!
//! Xen 3.x (`xc_domain_save.c`) prints per iteration `Saving memory pages: iter N  0%` with
//! `\b\b\b\b%3d%` progress, then `\r N: sent S, skipped K, delta Dms, dom0 A%, target B%,
//! sent XMb/s, dirtied YMb/s P pages` (P = pages dirtied during the iteration); the last
//! iteration prints `N: sent S, skipped K, Start last iteration` without stats (a following
//! line starting with `delta` is attached to it), then `Total pages sent= T (R x)` and
//! `All memory is saved`. In xend.log each line carries a prefix such as
//! `[2012-03-09 13:37:12 xend 3113] INFO (XendCheckpoint:498) ` (taken as UTC); the
//! `[xc_save]: /usr/lib/xen/bin/xc_save FD DOMID MAXIT MAXF FLAGS` line names the domain and
//! the caps. Several migrations may follow each other in one file.
//!
//! Xen 4.6+ (migration v2) prints only progress: `Frames iteration I of M: DONE/TOTAL  P%`
//! (optionally after `xc: info: `); a sequence ends at `End of stream`, `Target has
//! acknowledged transfer` or `Migration successful`. Such sequences need the xend-style time
//! prefix to give times; rounds then carry no skip counts and no gamma.

use std::path::Path;

use datasets::migrations::MigrationRow;
use datasets::rounds::RoundRow;

use crate::units::parse_count;
use crate::{file_stem, IngestOptions, Migration, Parsed, Problem};
use datasets::quantity::parse_naive_utc_ns;

/// Xen's page size, bytes.
pub const XEN_PAGE_BYTES: u64 = 4096;
/// Xen 3.x default iteration cap (DEF_MAX_ITERS).
pub const XEN3_MAX_ITERS: u32 = 29;
/// Xen 3.x default cap on total sent as a multiple of guest memory (DEF_MAX_FACTOR).
pub const XEN3_MAX_FACTOR: f64 = 3.0;

#[derive(Debug, Clone)]
struct Iter {
    n: u64,
    sent: u64,
    skipped: u64,
    delta_ms: Option<u64>,
    dirtied: Option<u64>,
    line: usize,
    ts: Option<i64>,
}

#[derive(Debug, Clone)]
struct Frames {
    iter: u64,
    of: u64,
    done: u64,
    first_ts: Option<i64>,
    line: usize,
}

#[derive(Debug, Clone, Default)]
struct Ctx {
    /// When xc_save was started (the save's true start), from its command line's prefix.
    ts: Option<i64>,
    domid: Option<u64>,
    max_iters: Option<u32>,
    max_factor: Option<f64>,
}

#[derive(Debug, Default)]
struct Seq {
    start_line: usize,
    start_ts: Option<i64>,
    ctx: Ctx,
    iters: Vec<Iter>,
    frames: Vec<Frames>,
    total_sent: Option<u64>,
    end: Option<(usize, Option<i64>)>,
}

impl Seq {
    fn is_empty(&self) -> bool {
        self.iters.is_empty() && self.frames.is_empty()
    }
}

/// Apply backspaces (erase the previous character) and split at carriage returns.
fn segments(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in line.chars() {
        match c {
            '\u{8}' => {
                cur.pop();
            }
            '\r' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Strip an xend-style `[YYYY-MM-DD HH:MM:SS ...] LEVEL (Module:N) ` prefix.
fn strip_prefix(line: &str) -> (Option<i64>, &str) {
    let Some(rest) = line.strip_prefix('[') else {
        return (None, line);
    };
    let Some(close) = rest.find(']') else {
        return (None, line);
    };
    let inside = &rest[..close];
    let ts = inside.get(..19).and_then(|t| parse_naive_utc_ns(t).ok());
    if ts.is_none() {
        return (None, line);
    }
    let mut msg = rest[close + 1..].trim_start();
    // "INFO (XendCheckpoint:498) "
    if let Some(paren) = msg.find(" (") {
        let level = &msg[..paren];
        if !level.is_empty() && level.chars().all(|c| c.is_ascii_uppercase()) {
            if let Some(end) = msg[paren..].find(')') {
                msg = msg[paren + end + 1..].trim_start();
            }
        }
    }
    (ts, msg)
}

/// An iteration line's figures: N, sent, skipped, and the rest of the line.
type IterFigures<'a> = (u64, u64, u64, &'a str);

/// Parse `N: sent S, skipped K,REST`. None: not an iteration line at all; Some(Err): the
/// shape of one (`N: sent`) with a field that cannot be read (what and why).
fn parse_iter(seg: &str) -> Option<Result<IterFigures<'_>, String>> {
    let seg = seg.trim_start();
    let (n, rest) = seg.split_once(':')?;
    let n_text = n.trim();
    let rest = rest.trim_start().strip_prefix("sent")?;
    if n_text.is_empty() || !n_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count = |what: &str, v: &str| {
        parse_count(v).ok_or_else(|| {
            format!(
                "unreadable iteration line: {what} '{}' is not a page count (0 to 2^40)",
                v.trim()
            )
        })
    };
    Some((|| {
        let n = count("iteration", n_text)?;
        let (sent, rest) = rest
            .split_once(',')
            .ok_or_else(|| "unreadable iteration line: expected 'sent S, skipped K'".to_string())?;
        let sent = count("sent", sent)?;
        let rest = rest.trim_start().strip_prefix("skipped ").ok_or_else(|| {
            "unreadable iteration line: expected 'skipped K' after 'sent S,'".to_string()
        })?;
        let (skipped, rest) = rest.split_once(',').unwrap_or((rest, ""));
        let skipped = count("skipped", skipped)?;
        Ok((n, sent, skipped, rest))
    })())
}

/// Parse `delta Dms, dom0 A%, target B%, sent XMb/s, dirtied YMb/s P pages`: (D, P).
fn parse_stats(s: &str) -> Option<(u64, u64)> {
    let s = s.trim();
    let rest = s.strip_prefix("delta ")?;
    let (d, _) = rest.split_once("ms")?;
    let delta = parse_count(d)?;
    let before_pages = s.trim_end().strip_suffix("pages")?.trim_end();
    let p = before_pages.rsplit(' ').next()?;
    let pages = parse_count(p)?;
    Some((delta, pages))
}

/// Parse `... xc_save FD DOMID MAXIT MAXF FLAGS`.
fn parse_xc_save(msg: &str, ts: Option<i64>) -> Option<Ctx> {
    let idx = msg.find("xc_save ")?;
    let nums: Vec<u64> = msg[idx + 8..]
        .split_whitespace()
        .map_while(parse_count)
        .collect();
    if nums.len() < 4 {
        return None;
    }
    Some(Ctx {
        ts,
        domid: Some(nums[1]),
        max_iters: Some(if nums[2] == 0 {
            XEN3_MAX_ITERS
        } else {
            nums[2] as u32
        }),
        max_factor: Some(if nums[3] == 0 {
            XEN3_MAX_FACTOR
        } else {
            nums[3] as f64
        }),
    })
}

/// Parse `Frames iteration I of M[: DONE/TOTAL ...]`.
fn parse_frames(seg: &str) -> Option<(u64, u64, Option<u64>)> {
    let idx = seg.find("Frames iteration ")?;
    let rest = &seg[idx + "Frames iteration ".len()..];
    let (i, rest) = rest.split_once(" of ")?;
    let i = parse_count(i)?;
    let (m, rest) = rest.split_once(':').unwrap_or((rest, ""));
    let m = parse_count(m)?;
    let done = rest
        .split_whitespace()
        .next()
        .and_then(|t| t.split_once('/'))
        .and_then(|(d, _)| parse_count(d));
    Some((i, m, done))
}

struct Parser<'a> {
    path: &'a Path,
    opts: &'a IngestOptions,
    out: Parsed,
    cur: Seq,
    ctx: Ctx,
    /// First save-output line that could not be read since the last migration ended: the
    /// migration it belongs to is not recorded (it would miss a round, or carry wrong sizes).
    damaged: Option<usize>,
}

impl Parser<'_> {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.out.problems.push(Problem {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// A line of save output that cannot be read: a problem, and its migration is damaged.
    fn unreadable(&mut self, line: usize, message: impl Into<String>) {
        self.problem(line, message);
        self.damaged.get_or_insert(line);
    }

    fn begin(&mut self, line: usize, ts: Option<i64>) {
        self.close_incomplete();
        self.cur = Seq {
            start_line: line,
            start_ts: ts,
            ctx: self.ctx.clone(),
            ..Seq::default()
        };
    }

    fn close_incomplete(&mut self) {
        if !self.cur.is_empty() {
            let line = self.cur.start_line;
            self.problem(
                line,
                "incomplete migration: the save sequence starting here has no 'Total pages sent' / 'All memory is saved' (Xen 3) or end-of-stream line (Xen 4)",
            );
            self.damaged = None;
        }
        self.cur = Seq::default();
    }

    fn finish(&mut self) {
        let seq = std::mem::take(&mut self.cur);
        if seq.is_empty() {
            return;
        }
        if let Some(bad) = self.damaged.take() {
            self.problem(
                seq.start_line,
                format!(
                    "migration not recorded: line {bad} of its save output could not be read (see above), so its rounds and sizes would be wrong"
                ),
            );
            self.ctx = Ctx::default();
            return;
        }
        let built = if !seq.iters.is_empty() {
            self.build_xen3(seq)
        } else {
            self.build_xen4(seq)
        };
        if let Some(m) = built {
            self.out.migrations.push(m);
        }
        self.ctx = Ctx::default();
    }

    fn vm(&self, ctx: &Ctx) -> String {
        self.opts.vm.clone().unwrap_or_else(|| match ctx.domid {
            Some(d) => format!("dom{d}"),
            None => "unknown".into(),
        })
    }

    fn id(&self, hv: &str, vm: &str, seq: &Seq) -> String {
        match seq.start_ts {
            Some(t) => format!("{hv}-{vm}-{t}"),
            None => format!("{hv}-{vm}-{}-L{}", file_stem(self.path), seq.start_line),
        }
    }

    fn build_xen3(&mut self, mut seq: Seq) -> Option<Migration> {
        // A line reaches xend.log when its newline is printed, i.e. at the end of the
        // iteration: the save began at xc_save's start, or one delta before the first line.
        let first = &seq.iters[0];
        seq.start_ts = seq.ctx.ts.or(match (seq.start_ts, first.delta_ms) {
            (Some(t), Some(d)) => Some(t.saturating_sub(d as i64 * 1_000_000)),
            (t, _) => t,
        });
        let vm = self.vm(&seq.ctx);
        let id = self.id("xen3", &vm, &seq);
        let first = seq.iters[0].n;
        if first != 1 {
            self.problem(
                seq.iters[0].line,
                format!("iteration {first} out of order: expected 1"),
            );
        }
        let mut gaps = first != 1;
        for (k, it) in seq.iters.iter().enumerate() {
            if it.n != first + k as u64 {
                gaps = true;
                self.problem(
                    it.line,
                    format!(
                        "iteration {} out of order: expected {}",
                        it.n,
                        first + k as u64
                    ),
                );
            }
            if k > 0 {
                if let Some(prev) = seq.iters[k - 1].dirtied {
                    if it.sent + it.skipped != prev {
                        self.problem(
                            it.line,
                            format!(
                                "invariant sent_i + skipped_i = dirtied_(i-1) violated at iteration {}: {} + {} = {} but iteration {} dirtied {}",
                                it.n,
                                it.sent,
                                it.skipped,
                                it.sent + it.skipped,
                                seq.iters[k - 1].n,
                                prev
                            ),
                        );
                    }
                }
            }
        }
        if gaps {
            // A missing iteration is a missing round: recording the rest would be wrong.
            self.problem(
                seq.start_line,
                "migration not recorded: its iterations do not count 1, 2, 3... (see above)",
            );
            return None;
        }
        let page = XEN_PAGE_BYTES;
        let n = seq.iters.len();
        let mut rounds = Vec::with_capacity(n);
        let mut offset_ms: Option<u64> = Some(0);
        for (k, it) in seq.iters.iter().enumerate() {
            let start = match (seq.start_ts, offset_ms) {
                (Some(s), Some(o)) => Some(s.saturating_add((o as i64).saturating_mul(1_000_000))),
                _ => it.ts,
            };
            let dur = it.delta_ms.map(|d| d as f64 / 1000.0);
            let total = it.sent + it.skipped;
            rounds.push(RoundRow {
                migration_id: id.clone(),
                round: k as u32 + 1,
                start_utc_ns: start,
                duration_s: dur,
                sent_bytes: it.sent * page,
                skipped_pages: it.skipped,
                dirtied_pages: it.dirtied,
                dirty_rate_bytes_per_s: match (it.dirtied, dur) {
                    (Some(p), Some(d)) if d > 0.0 => Some((p * page) as f64 / d),
                    _ => None,
                },
                gamma: (total > 0).then(|| it.skipped as f64 / total as f64),
                last: k + 1 == n,
            });
            offset_ms = match (offset_ms, it.delta_ms) {
                (Some(o), Some(d)) => Some(o.saturating_add(d)),
                _ => None,
            };
        }
        let sum_delta_s: f64 = seq
            .iters
            .iter()
            .filter_map(|i| i.delta_ms)
            .fold(0u64, u64::saturating_add) as f64
            / 1e3;
        let end_ts = seq.end.and_then(|e| e.1);
        let span_s = match (seq.start_ts, end_ts) {
            (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e9),
            _ => None,
        };
        let last = seq.iters.last()?;
        let t_down_s = last.delta_ms.map(|d| d as f64 / 1000.0);
        let sent_sum: u64 = seq
            .iters
            .iter()
            .map(|i| i.sent)
            .fold(0u64, u64::saturating_add);
        let row = MigrationRow {
            migration_id: id,
            hypervisor: "xen3".into(),
            vm,
            workload: self.opts.workload.clone(),
            vm_mem_bytes: (seq.iters[0].sent + seq.iters[0].skipped) * page,
            page_size_bytes: page,
            start_utc_ns: seq.start_ts,
            end_utc_ns: end_ts,
            t_mig_s: span_s.map_or(sum_delta_s, |s| s.max(sum_delta_s)),
            t_down_s,
            t_down_method: if t_down_s.is_some() {
                "xen_last_iteration".into()
            } else {
                "none".into()
            },
            t_down_reported_s: None,
            v_mig_bytes: seq.total_sent.unwrap_or(sent_sum).saturating_mul(page),
            zero_pages: None,
            rounds: n as u32,
            converged: true,
            status: "completed".into(),
            bandwidth_limit_bytes_per_s: None,
            downtime_limit_s: None,
            max_rounds: Some(seq.ctx.max_iters.unwrap_or(XEN3_MAX_ITERS)),
            max_factor: Some(seq.ctx.max_factor.unwrap_or(XEN3_MAX_FACTOR)),
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
        Some(Migration { row, rounds })
    }

    fn build_xen4(&mut self, seq: Seq) -> Option<Migration> {
        let (Some(start), Some((end_line, Some(end)))) = (seq.start_ts, seq.end) else {
            self.problem(
                seq.start_line,
                "Xen 4 progress lines without xend-style timestamps: migration times unknown, skipped",
            );
            return None;
        };
        let vm = self.vm(&seq.ctx);
        let id = self.id("xen4", &vm, &seq);
        let page = XEN_PAGE_BYTES;
        let fr = &seq.frames;
        let n = fr.len();
        let mut rounds = Vec::with_capacity(n);
        for (k, f) in fr.iter().enumerate() {
            if k > 0 && f.iter != fr[k - 1].iter + 1 {
                self.problem(f.line, format!("Frames iteration {} out of order", f.iter));
            }
            let t0 = f.first_ts.unwrap_or(start);
            let t1 = fr.get(k + 1).and_then(|g| g.first_ts).unwrap_or(end);
            let dur = (t1 >= t0).then(|| (t1 - t0) as f64 / 1e9);
            let dirtied = fr.get(k + 1).map(|g| g.done);
            rounds.push(RoundRow {
                migration_id: id.clone(),
                round: k as u32 + 1,
                start_utc_ns: Some(t0),
                duration_s: dur,
                sent_bytes: f.done * page,
                skipped_pages: 0,
                dirtied_pages: dirtied,
                dirty_rate_bytes_per_s: match (dirtied, dur) {
                    (Some(p), Some(d)) if d > 0.0 => Some((p * page) as f64 / d),
                    _ => None,
                },
                gamma: None,
                last: k + 1 == n,
            });
        }
        let _ = end_line;
        let row = MigrationRow {
            migration_id: id,
            hypervisor: "xen4".into(),
            vm,
            workload: self.opts.workload.clone(),
            vm_mem_bytes: fr.first()?.done * page,
            page_size_bytes: page,
            start_utc_ns: Some(start),
            end_utc_ns: Some(end),
            t_mig_s: (end - start).max(0) as f64 / 1e9,
            t_down_s: None,
            t_down_method: "none".into(),
            t_down_reported_s: None,
            v_mig_bytes: fr
                .iter()
                .map(|f| f.done)
                .fold(0u64, u64::saturating_add)
                .saturating_mul(page),
            zero_pages: None,
            rounds: n as u32,
            converged: true,
            status: "completed".into(),
            bandwidth_limit_bytes_per_s: None,
            downtime_limit_s: None,
            max_rounds: fr.first().map(|f| f.of as u32),
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
        Some(Migration { row, rounds })
    }

    fn segment(&mut self, lineno: usize, ts: Option<i64>, seg: &str) {
        let s = seg.trim();
        if s.is_empty() {
            return;
        }
        if let Some(ctx) = parse_xc_save(s, ts) {
            if !self.cur.is_empty() {
                self.close_incomplete();
            }
            self.ctx = ctx;
            return;
        }
        if s.contains("xc_save ") {
            self.unreadable(
                lineno,
                format!("expected 'xc_save FD DOMID MAXIT MAXF FLAGS' with numbers, found '{s}'"),
            );
            return;
        }
        if let Some(idx) = s.find("Saving domain ") {
            let d: String = s[idx + 14..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            match parse_count(&d) {
                Some(d) => self.ctx.domid = Some(d),
                None => self.unreadable(
                    lineno,
                    format!("expected 'Saving domain N' with a domain id, found '{s}'"),
                ),
            }
            return;
        }
        if let Some(idx) = s.find("save start DOM") {
            let d: String = s[idx + 14..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            match parse_count(&d) {
                Some(d) => {
                    self.ctx.domid = Some(d);
                    self.cur.ctx.domid = Some(d);
                }
                None => self.unreadable(
                    lineno,
                    format!("expected 'save start DOMN' with a domain id, found '{s}'"),
                ),
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("Saving memory pages:") {
            let n: Option<u64> = rest
                .trim()
                .strip_prefix("iter ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(parse_count);
            match n {
                Some(1) => self.begin(lineno, ts),
                Some(_) => {}
                None => self.unreadable(
                    lineno,
                    format!("expected 'Saving memory pages: iter N', found '{s}'"),
                ),
            }
            return;
        }
        if let Some(parsed) = parse_iter(s) {
            let (n, sent, skipped, rest) = match parsed {
                Ok(x) => x,
                Err(message) => {
                    self.unreadable(lineno, format!("{message}, in '{s}'"));
                    return;
                }
            };
            let fresh = self.cur.is_empty() && self.cur.start_line == 0;
            if fresh || (n == 1 && !self.cur.iters.is_empty()) {
                self.begin(lineno, ts);
            }
            let mut it = Iter {
                n,
                sent,
                skipped,
                delta_ms: None,
                dirtied: None,
                line: lineno,
                ts,
            };
            let rest = rest.trim();
            if rest.starts_with("delta") {
                match parse_stats(rest) {
                    Some((d, p)) => {
                        it.delta_ms = Some(d);
                        it.dirtied = Some(p);
                    }
                    None => self.unreadable(lineno, format!("malformed iteration statistics: expected 'delta Dms, ..., dirtied YMb/s P pages', found '{rest}'")),
                }
            }
            self.cur.iters.push(it);
            return;
        }
        if s.starts_with("delta ") {
            match (parse_stats(s), self.cur.iters.last_mut()) {
                (Some((d, p)), Some(it)) if it.delta_ms.is_none() => {
                    it.delta_ms = Some(d);
                    it.dirtied = Some(p);
                }
                (Some(_), _) => self.unreadable(lineno, "statistics line without an iteration line waiting for it"),
                (None, _) => self.unreadable(lineno, format!("malformed iteration statistics: expected 'delta Dms, ..., dirtied YMb/s P pages', found '{s}'")),
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("Total pages sent=") {
            let t = rest.split_whitespace().next().and_then(parse_count);
            match t {
                Some(t) if !self.cur.iters.is_empty() => {
                    self.cur.total_sent = Some(t);
                    self.cur.end = Some((lineno, ts));
                }
                Some(_) => self.unreadable(
                    lineno,
                    "'Total pages sent' without iteration lines before it",
                ),
                None => self.unreadable(
                    lineno,
                    format!("expected 'Total pages sent= N (R x)', found '{s}'"),
                ),
            }
            return;
        }
        if s.contains("All memory is saved") {
            if !self.cur.iters.is_empty() {
                if self.cur.end.is_none() || ts.is_some() {
                    self.cur.end = Some((lineno, ts.or(self.cur.end.and_then(|e| e.1))));
                }
                self.finish();
            }
            return;
        }
        if s.contains("Frames iteration") {
            match parse_frames(s) {
                Some((i, of, done)) => {
                    if (i == 0 && self.cur.frames.last().is_some_and(|f| f.iter != 0))
                        || (self.cur.is_empty() && self.cur.start_line == 0)
                    {
                        self.begin(lineno, ts);
                    }
                    match self.cur.frames.last_mut() {
                        Some(f) if f.iter == i => {
                            if let Some(d) = done {
                                f.done = d;
                            }
                        }
                        _ => self.cur.frames.push(Frames {
                            iter: i,
                            of,
                            done: done.unwrap_or(0),
                            first_ts: ts,
                            line: lineno,
                        }),
                    }
                }
                None => self.unreadable(
                    lineno,
                    format!("expected 'Frames iteration I of M: DONE/TOTAL', found '{s}'"),
                ),
            }
            return;
        }
        if (s.contains("End of stream")
            || s.contains("Target has acknowledged transfer")
            || s.contains("Migration successful"))
            && !self.cur.frames.is_empty()
        {
            self.cur.end = Some((lineno, ts));
            self.finish();
        }
    }
}

/// Parse a Xen log (see the module docs). Unrelated lines are ignored; lines that look like
/// save output but do not parse, invariant violations and incomplete sequences are problems.
pub fn parse(path: &Path, bytes: &[u8], opts: &IngestOptions) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut p = Parser {
        path,
        opts,
        out: Parsed::default(),
        cur: Seq::default(),
        ctx: Ctx::default(),
        damaged: None,
    };
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let (ts, msg) = strip_prefix(raw);
        // "[xc_save]: ..." is part of the message.
        for seg in segments(msg) {
            p.segment(lineno, ts, &seg);
        }
        // Xen 3 sequences end at "All memory is saved"; accept "Total pages sent" as the end
        // when the file ends or a new sequence begins (handled in begin/close).
    }
    // A Xen 3 sequence whose "Total pages sent" was seen but not "All memory is saved".
    if !p.cur.iters.is_empty() && p.cur.total_sent.is_some() {
        p.finish();
    } else {
        p.close_incomplete();
    }
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[2012-03-09 13:37:10 xend 3113] DEBUG (XendCheckpoint:124) [xc_save]: /usr/lib/xen/bin/xc_save 22 7 0 0 1\n\
[2012-03-09 13:37:10 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 1   0%\u{8}\u{8}\u{8}\u{8}  5%\u{8}\u{8}\u{8}\u{8}100%\r 1: sent 1000, skipped 24, delta 4000ms, dom0 50%, target 40%, sent 8Mb/s, dirtied 1Mb/s 300 pages\n\
[2012-03-09 13:37:14 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 2   0%\u{8}\u{8}\u{8}\u{8}100%\r 2: sent 250, skipped 50, delta 1000ms, dom0 50%, target 40%, sent 8Mb/s, dirtied 1Mb/s 40 pages\n\
[2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) Saving memory pages: iter 3   0%\u{8}\u{8}\u{8}\u{8}100%\r 3: sent 35, skipped 6, Start last iteration\n\
[2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) Total pages sent= 1285 (1.25x)\n\
[2012-03-09 13:37:15 xend 3113] INFO (XendCheckpoint:498) All memory is saved\n";

    #[test]
    fn xend_log_with_prefixes_backspaces_and_crs() {
        let p = parse(
            Path::new("xend.log"),
            LOG.as_bytes(),
            &IngestOptions::default(),
        );
        assert_eq!(p.migrations.len(), 1, "{:?}", p.problems);
        let m = &p.migrations[0];
        assert_eq!(m.row.vm, "dom7");
        assert_eq!(m.row.vm_mem_bytes, 1024 * 4096);
        assert_eq!(m.row.v_mig_bytes, 1285 * 4096);
        assert_eq!(m.row.rounds, 3);
        assert_eq!(m.row.max_rounds, Some(29));
        assert_eq!(m.rounds[1].gamma, Some(50.0 / 300.0));
        assert_eq!(m.rounds[1].dirty_rate_bytes_per_s, Some(40.0 * 4096.0));
        assert!(m.rounds[2].last && m.rounds[2].duration_s.is_none());
        assert_eq!(
            m.rounds[1].start_utc_ns,
            Some(m.row.start_utc_ns.unwrap() + 4_000_000_000)
        );
        // iteration 3 sends 41 but iteration 2 dirtied 40: one violation, on line 4.
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert_eq!(p.problems[0].line, 4);
        assert!(p.problems[0].message.contains("invariant"));
    }

    #[test]
    fn an_unreadable_iteration_line_is_a_problem_and_its_migration_is_not_recorded() {
        // The sent count overflows u64: before, the line vanished with "0 problems" and the
        // migration was recorded with 2 of its 3 rounds and the wrong memory size.
        let bad = LOG.replace("2: sent 250,", "2: sent 18446744073709551616,");
        let p = parse(
            Path::new("xend.log"),
            bad.as_bytes(),
            &IngestOptions::default(),
        );
        assert!(p.migrations.is_empty(), "{:?}", p.migrations);
        let lines: Vec<(usize, &str)> = p
            .problems
            .iter()
            .map(|q| (q.line, q.message.as_str()))
            .collect();
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 3
                    && m.contains("sent '18446744073709551616' is not a page count")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == 2 && m.contains("migration not recorded: line 3")),
            "{lines:?}"
        );
        // The next migration in the same file is not affected.
        let two = format!("{bad}{LOG}");
        let p = parse(
            Path::new("xend.log"),
            two.as_bytes(),
            &IngestOptions::default(),
        );
        assert_eq!(p.migrations.len(), 1, "{:?}", p.problems);
        assert_eq!(p.migrations[0].row.rounds, 3);
    }

    #[test]
    fn truncated_sequence_is_reported_not_returned() {
        let cut = &LOG[..LOG.find("Total pages").unwrap()];
        let p = parse(
            Path::new("x.log"),
            cut.as_bytes(),
            &IngestOptions::default(),
        );
        assert!(p.migrations.is_empty());
        assert!(p.problems.iter().any(|q| q.message.contains("incomplete")));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A damaged iteration line never yields a migration missing that round: either
            /// the migration is refused with a problem on that line, or every round is there.
            #[test]
            fn every_line_is_used_or_reported(garbage in "[0-9a-z ,:%]{0,30}", at in 1usize..4) {
                let line = LOG.lines().nth(at).unwrap();
                let cut = line.find('\r').unwrap();
                let damaged = format!("{}\r {at}: sent {garbage}", &line[..cut]);
                let text = LOG.replace(line, &damaged);
                let p = parse(Path::new("x.log"), text.as_bytes(), &IngestOptions::default());
                for m in &p.migrations {
                    prop_assert_eq!(m.rounds.len(), 3);
                }
                if p.migrations.is_empty() {
                    prop_assert!(p.problems.iter().any(|q| q.line == at + 1), "{:?}", p.problems);
                }
            }
        }
    }
}
