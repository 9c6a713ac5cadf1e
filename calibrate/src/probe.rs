//! The pre-migration probe (`migwatt calibrate probe`, and `calibrate migrate` before it
//! migrates): what the model needs from a running VM that has no migration history, measured
//! through QMP without stopping it.
//!
//! - **Dirty set growth.** QMP `calc-dirty-rate` over each window (1, 2, 4, 8 s by default,
//!   one after another), mode `page-sampling` with the most samples QEMU allows (10000 per
//!   GiB): the dirty data after a window w is its rate times w. Fitting min(D w, H) to those
//!   ([`trainer::probe::fit_growth`]) gives D and the hot set H. Measured on QEMU 10.0.2
//!   under TCG (BENCHMARKS.md, probe): `dirty-bitmap` reports 0 MiB/s for a guest dirtying
//!   8 MiB/s, and `dirty-ring` is refused ("mode dirty-ring is not enabled": it needs KVM's
//!   dirty ring), so page sampling is the mode that works here. QEMU reports whole MiB/s,
//!   truncated: the probe adds half a MiB/s back, the truncation's mean loss.
//! - **Non-zero share.** The first pre-copy round sends zero pages as a few bytes each, so it
//!   moves the non-zero memory only. Every RAM range is dumped once with `pmemsave` into a pipe
//!   (as the migration check does, [`crate::verify::stream_ranges`]) and its all-zero 4 KiB
//!   pages counted; the guest keeps running (a page written meanwhile is counted as it was
//!   read).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trainer::probe::{fit_growth, Probe, ProbeWindow, PROBE_FORMAT, PROBE_VERSION};

use crate::qmp::{utc_now_ns, Qmp};
use crate::verify::{ram_ranges, stream_ranges, PAGE_BYTES};
use crate::CalibrateError;

/// The default windows, s.
pub const DEFAULT_WINDOWS_S: [f64; 4] = [1.0, 2.0, 4.0, 8.0];
/// The `calc-dirty-rate` mode the probe uses (see the module docs).
pub const METHOD: &str = "page-sampling";
/// Sampled pages per GiB: QEMU's maximum.
pub const SAMPLE_PAGES_PER_GIB: u64 = 10000;
const MIB: f64 = 1048576.0;

/// Options of a probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Window lengths, s (each at least 1 ms, at most an hour).
    pub windows_s: Vec<f64>,
    /// Measure the non-zero share of guest RAM (one pass over it with `pmemsave`).
    pub nonzero_share: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            windows_s: DEFAULT_WINDOWS_S.to_vec(),
            nonzero_share: true,
        }
    }
}

/// Probe the VM behind `q` (see the module docs). `cancel` stops between windows.
pub fn probe(
    q: &mut Qmp,
    opts: &ProbeOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<Probe, CalibrateError> {
    if opts.windows_s.is_empty() {
        return Err(CalibrateError::Usage(
            "the probe needs at least one window".into(),
        ));
    }
    for w in &opts.windows_s {
        if !(w.is_finite() && (0.001..=3600.0).contains(w)) {
            return Err(CalibrateError::Usage(format!(
                "probe window {w} s: expected 1 ms to 1 h"
            )));
        }
    }
    let start_utc_ns = utc_now_ns();
    let cmd_timeout = Duration::from_secs(10);
    let (_, mem) = q.execute("query-memory-size-summary", None, cmd_timeout)?;
    let vm_mem_bytes = mem
        .get("base-memory")
        .and_then(Value::as_u64)
        .filter(|m| *m > 0)
        .ok_or_else(|| CalibrateError::Qmp {
            socket: q.socket().to_path_buf(),
            message: format!("query-memory-size-summary: no base-memory in {mem}"),
        })? as f64;
    let mut windows = Vec::new();
    for &w in &opts.windows_s {
        if cancel.load(Ordering::Relaxed) {
            return Err(CalibrateError::Cancelled);
        }
        let rate_mib = dirty_rate_mib(q, w)?;
        // Whole MiB/s, truncated by QEMU: add back the mean loss (half a step).
        let rate = (rate_mib + 0.5) * MIB;
        progress(&format!(
            "probe: {w} s window: {rate_mib} MiB/s ({METHOD}), {:.1} MiB dirty",
            rate * w / MIB
        ));
        windows.push(ProbeWindow {
            window_s: w,
            dirty_rate_bytes_per_s: rate,
            dirty_bytes: rate * w,
        });
    }
    windows.sort_by(|a, b| a.window_s.total_cmp(&b.window_s));
    let pts: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| (w.window_s, w.dirty_bytes))
        .collect();
    let fit = fit_growth(&pts).expect("windows are positive and finite");
    let nonzero_share = if opts.nonzero_share {
        let (nonzero, pages) = nonzero_pages(q)?;
        progress(&format!(
            "probe: {nonzero} of {pages} RAM pages not all zeros ({:.1} %)",
            100.0 * nonzero as f64 / pages.max(1) as f64
        ));
        // A guest whose RAM is all zeros still sends something: never a share of 0.
        (pages > 0).then(|| (nonzero.max(1) as f64 / pages as f64).min(1.0))
    } else {
        None
    };
    Ok(Probe {
        format: PROBE_FORMAT.into(),
        version: PROBE_VERSION,
        start_utc_ns,
        qemu_version: q.qemu_version(),
        method: METHOD.into(),
        vm_mem_bytes,
        windows,
        dirty_rate_bytes_per_s: fit.dirty_rate_bytes_per_s,
        hot_set_bytes: fit.hot_set_bytes,
        nonzero_share,
    })
}

/// One `calc-dirty-rate` over `window_s` and its result, MiB/s.
fn dirty_rate_mib(q: &mut Qmp, window_s: f64) -> Result<f64, CalibrateError> {
    let ms = (window_s * 1000.0).round().max(1.0) as u64;
    let cmd_timeout = Duration::from_secs(10);
    q.execute(
        "calc-dirty-rate",
        Some(json!({
            "calc-time": ms,
            "calc-time-unit": "millisecond",
            "mode": METHOD,
            "sample-pages": SAMPLE_PAGES_PER_GIB,
        })),
        cmd_timeout,
    )?;
    // A hang guard, generous: QEMU measures for the window, then reports.
    let deadline = Instant::now() + Duration::from_secs_f64(window_s + 60.0);
    std::thread::sleep(Duration::from_millis(ms));
    loop {
        let (_, r) = q.execute("query-dirty-rate", None, cmd_timeout)?;
        if r.get("status").and_then(Value::as_str) == Some("measured") {
            return r
                .get("dirty-rate")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| CalibrateError::Qmp {
                    socket: q.socket().to_path_buf(),
                    message: format!("query-dirty-rate: no dirty-rate >= 0 in {r}"),
                });
        }
        if Instant::now() > deadline {
            return Err(CalibrateError::Qmp {
                socket: q.socket().to_path_buf(),
                message: format!(
                    "calc-dirty-rate over {window_s} s did not finish within a minute after it: {r}"
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pages of guest RAM (`ram` ranges) that are not all zeros, and all its pages.
fn nonzero_pages(q: &mut Qmp) -> Result<(u64, u64), CalibrateError> {
    let ranges: Vec<_> = ram_ranges(q)?
        .into_iter()
        .filter(|r| r.kind == "ram")
        .collect();
    let (mut nonzero, mut pages) = (0u64, 0u64);
    stream_ranges(&mut [q], &ranges, &mut |_, chunks| {
        let (n, p) = count_nonzero(chunks[0]);
        nonzero += n;
        pages += p;
    })?;
    Ok((nonzero, pages))
}

/// Pages of `bytes` (4 KiB each, a partial last page counts) that are not all zeros, and
/// all its pages.
pub fn count_nonzero(bytes: &[u8]) -> (u64, u64) {
    let mut n = 0;
    let mut p = 0;
    for page in bytes.chunks(PAGE_BYTES as usize) {
        p += 1;
        if page.iter().any(|b| *b != 0) {
            n += 1;
        }
    }
    (n, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_are_told_from_the_others() {
        let mut b = vec![0u8; 4096 * 3 + 10];
        b[4096 + 7] = 1;
        assert_eq!(count_nonzero(&b), (1, 4));
        b[4096 * 3 + 9] = 2;
        assert_eq!(count_nonzero(&b), (2, 4));
        assert_eq!(count_nonzero(&[]), (0, 0));
    }
}
