//! Rounds of a QEMU-style pre-copy migration from progress snapshots (QMP `query-migrate`
//! replies or `virsh domjobinfo` outputs).
//!
//! Each increment of the dirty-sync count is a round boundary: round k runs from sync k to
//! sync k+1 (sync 1 happens at setup, the last at stop-and-copy), so a completed migration
//! has as many rounds as syncs. A boundary's instant is the `MIGRATION_PASS` event when there
//! is one, else the midpoint of the two snapshots around the count change; the bytes and
//! pages sent by then are interpolated linearly in time between the snapshots around it and
//! kept between the values the snapshots on either side of the change prove. The first
//! boundary is 0 and the last the final totals, so the rounds add up to the totals exactly.
//!
//! QEMU syncs once more just before deciding to stop (its exact pending check) and again
//! after stopping the guest, so when the guest stopped between sync N-1 and sync N, round
//! N-1 is only that switchover: what was dirtied in round N-2 is sent in rounds N-1 and N
//! together, and round N-1 gets no dirtied count of its own.

use std::collections::BTreeMap;

use datasets::rounds::RoundRow;

/// One progress snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// When it was taken, ns (UTC, or relative to the start when the log has no clock).
    pub t_ns: i64,
    /// Dirty-sync count so far.
    pub sync_count: u32,
    /// Bytes sent so far.
    pub transferred_bytes: u64,
    /// Pages sent so far (normal + zero pages), if reported.
    pub pages: Option<u64>,
    /// Bytes still dirty (to send in the current round), if reported.
    pub remaining_bytes: Option<u64>,
}

/// Everything needed to cut a migration into rounds.
#[derive(Debug, Clone)]
pub struct PrecopyInput<'a> {
    /// The migration's id.
    pub migration_id: &'a str,
    /// Snapshots taken while the migration ran, in time order.
    pub snapshots: &'a [Snapshot],
    /// Instants of dirty syncs from events (sync number -> ns), where known.
    pub pass_times: &'a BTreeMap<u32, i64>,
    /// Start of the migration, ns.
    pub t_start_ns: i64,
    /// End of the migration (completion, or the last snapshot of one that did not finish).
    pub t_end_ns: i64,
    /// Number of rounds: the final dirty-sync count.
    pub rounds: u32,
    /// Final bytes sent.
    pub final_transferred_bytes: u64,
    /// Final pages sent, if reported.
    pub final_pages: Option<u64>,
    /// Bytes still dirty at the end (only meaningful when not converged).
    pub final_remaining_bytes: Option<u64>,
    /// Whether the migration completed (its last round is stop-and-copy).
    pub converged: bool,
    /// Page size, bytes.
    pub page_size_bytes: u64,
    /// Dirtying rate sampled before the migration, bytes/s.
    pub pre_dirty_rate_bytes_per_s: Option<f64>,
    /// Add to a `t_ns` to get UTC ns; None when the log has no clock.
    pub utc_offset_ns: Option<i64>,
    /// When the guest was stopped for stop-and-copy (source `STOP` event), if known.
    pub stop_ns: Option<i64>,
}

fn interpolate(points: &[(i64, f64)], t: i64) -> f64 {
    // points sorted by time, at least two (the sentinels).
    let after = points.partition_point(|p| p.0 <= t);
    if after == 0 {
        return points[0].1;
    }
    if after >= points.len() {
        return points[points.len() - 1].1;
    }
    let (ta, va) = points[after - 1];
    let (tb, vb) = points[after];
    if tb <= ta {
        return vb;
    }
    va + (vb - va) * (t.saturating_sub(ta) as f64 / tb.saturating_sub(ta) as f64)
}

fn boundary_values(
    input: &PrecopyInput<'_>,
    times: &[i64],
    get: impl Fn(&Snapshot) -> Option<u64>,
    final_value: u64,
) -> Vec<u64> {
    let n = input.rounds as usize;
    let mut points: Vec<(i64, f64)> = vec![(input.t_start_ns, 0.0)];
    points.extend(
        input
            .snapshots
            .iter()
            .filter_map(|s| get(s).map(|v| (s.t_ns, v as f64))),
    );
    points.push((input.t_end_ns.max(input.t_start_ns), final_value as f64));
    points.sort_by_key(|p| p.0);
    let mut out = vec![0u64; n + 2];
    out[n + 1] = final_value;
    for k in 2..=n {
        let lo = input
            .snapshots
            .iter()
            .filter(|s| s.sync_count < k as u32)
            .filter_map(&get)
            .max()
            .unwrap_or(0);
        let hi = input
            .snapshots
            .iter()
            .filter(|s| s.sync_count >= k as u32)
            .filter_map(&get)
            .min()
            .unwrap_or(final_value)
            .min(final_value);
        let v = interpolate(&points, times[k]).round().max(0.0) as u64;
        let v = if lo <= hi {
            v.clamp(lo, hi)
        } else {
            lo.min(final_value)
        };
        out[k] = v.max(out[k - 1]).min(final_value);
    }
    out
}

/// Cut a migration into rounds (see the module docs).
pub fn rounds(input: &PrecopyInput<'_>) -> Vec<RoundRow> {
    let n = input.rounds.max(1) as usize;
    let input = PrecopyInput {
        rounds: n as u32,
        ..input.clone()
    };
    let t_end = input.t_end_ns.max(input.t_start_ns);
    let mut times = vec![0i64; n + 2];
    times[1] = input
        .pass_times
        .get(&1)
        .copied()
        .unwrap_or(input.t_start_ns)
        .clamp(input.t_start_ns, t_end);
    times[n + 1] = t_end;
    for (k, slot) in times.iter_mut().enumerate().take(n + 1).skip(2) {
        let t = match input.pass_times.get(&(k as u32)) {
            Some(t) => *t,
            None => {
                let before = input
                    .snapshots
                    .iter()
                    .filter(|s| s.sync_count < k as u32)
                    .map(|s| s.t_ns)
                    .max()
                    .unwrap_or(input.t_start_ns);
                let after = input
                    .snapshots
                    .iter()
                    .filter(|s| s.sync_count >= k as u32)
                    .map(|s| s.t_ns)
                    .min()
                    .unwrap_or(t_end);
                before + after.saturating_sub(before) / 2
            }
        };
        *slot = t;
    }
    for k in 2..=n {
        times[k] = times[k].clamp(times[k - 1], t_end);
    }
    let bytes = boundary_values(
        &input,
        &times,
        |s| Some(s.transferred_bytes),
        input.final_transferred_bytes,
    );
    let pages = input
        .final_pages
        .map(|fp| boundary_values(&input, &times, |s| s.pages, fp));
    let page = input.page_size_bytes.max(1);
    let sent_pages = |k: usize| pages.as_ref().map(|p| p[k + 1] - p[k]);
    let duration = |k: usize| times[k + 1].saturating_sub(times[k]) as f64 / 1e9;
    // Round n-1 is only the switchover when the guest stopped during it (module docs).
    let switchover = input.converged
        && n >= 3
        && input
            .stop_ns
            .is_some_and(|s| times[n - 1] <= s && s <= times[n]);
    let dirtied = |k: usize| -> Option<u64> {
        if k >= n || (switchover && k == n - 1) {
            return None;
        }
        if switchover && k == n - 2 {
            return Some(sent_pages(n - 1)? + sent_pages(n)?);
        }
        if k + 1 < n || input.converged {
            sent_pages(k + 1)
        } else {
            // The incomplete final round: sent so far plus what was still dirty.
            Some(sent_pages(k + 1)? + input.final_remaining_bytes? / page)
        }
    };
    let mut out = Vec::with_capacity(n);
    for k in 1..=n {
        let d = duration(k);
        let dirt = dirtied(k);
        let rate = match input.pre_dirty_rate_bytes_per_s {
            Some(r) => Some(r),
            None => dirt
                .filter(|_| d > 0.0)
                .map(|p| p.saturating_mul(page) as f64 / d),
        };
        let gamma = if k >= 2 {
            match (input.pre_dirty_rate_bytes_per_s, dirtied(k - 1)) {
                (Some(r), Some(prev)) if r > 0.0 && duration(k - 1) > 0.0 => {
                    Some(1.0 - prev.saturating_mul(page) as f64 / (r * duration(k - 1)))
                }
                _ => None,
            }
        } else {
            None
        };
        out.push(RoundRow {
            migration_id: input.migration_id.to_string(),
            round: k as u32,
            start_utc_ns: input.utc_offset_ns.map(|o| o.saturating_add(times[k])),
            duration_s: Some(d),
            sent_bytes: bytes[k + 1] - bytes[k],
            skipped_pages: 0,
            dirtied_pages: dirt,
            dirty_rate_bytes_per_s: rate,
            gamma,
            last: k == n && input.converged,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t_ms: i64, sync: u32, bytes: u64, pages: u64) -> Snapshot {
        Snapshot {
            t_ns: t_ms * 1_000_000,
            sync_count: sync,
            transferred_bytes: bytes,
            pages: Some(pages),
            remaining_bytes: Some(0),
        }
    }

    #[test]
    fn rounds_add_up_and_follow_events() {
        let snaps = [
            snap(100, 1, 1000, 10),
            snap(200, 1, 2000, 20),
            snap(300, 2, 3000, 30),
            snap(400, 3, 3500, 35),
        ];
        let mut pass = BTreeMap::new();
        pass.insert(1, 0);
        pass.insert(2, 250_000_000);
        let input = PrecopyInput {
            migration_id: "m",
            snapshots: &snaps,
            pass_times: &pass,
            t_start_ns: 0,
            t_end_ns: 500_000_000,
            rounds: 4,
            final_transferred_bytes: 4000,
            final_pages: Some(40),
            final_remaining_bytes: None,
            converged: true,
            page_size_bytes: 100,
            pre_dirty_rate_bytes_per_s: Some(10_000.0),
            utc_offset_ns: Some(7),
            stop_ns: None,
        };
        let r = rounds(&input);
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().map(|x| x.sent_bytes).sum::<u64>(), 4000);
        assert_eq!(r[0].sent_bytes, 2500); // event at 250 ms, halfway from 2000 to 3000
        assert_eq!(r[1].start_utc_ns, Some(250_000_007));
        assert!(r[3].last && !r[2].last);
        assert_eq!(r[3].dirtied_pages, None);
        // round 1 dirtied = pages sent in round 2 (25 -> 33 pages, interpolated at 350 ms)
        assert_eq!(r[0].dirtied_pages, Some(8));
        let g = r[1].gamma.unwrap();
        let want = 1.0 - (r[0].dirtied_pages.unwrap() * 100) as f64 / (10_000.0 * 0.25);
        assert!((g - want).abs() < 1e-12);
        assert_eq!(r[0].gamma, None);
    }

    #[test]
    fn switchover_round_hands_its_pages_to_the_round_before() {
        let snaps = [snap(100, 1, 1000, 10), snap(300, 2, 3000, 30)];
        let mut pass = BTreeMap::new();
        pass.insert(2, 200_000_000);
        pass.insert(3, 350_000_000);
        pass.insert(4, 351_000_000);
        let input = PrecopyInput {
            migration_id: "m",
            snapshots: &snaps,
            pass_times: &pass,
            t_start_ns: 0,
            t_end_ns: 400_000_000,
            rounds: 4,
            final_transferred_bytes: 4000,
            final_pages: Some(40),
            final_remaining_bytes: None,
            converged: true,
            page_size_bytes: 100,
            pre_dirty_rate_bytes_per_s: Some(1000.0),
            utc_offset_ns: None,
            stop_ns: Some(350_500_000),
        };
        let r = rounds(&input);
        // bytes and pages are interpolated separately: equal up to rounding
        let both = (r[2].sent_bytes + r[3].sent_bytes) as i64 / 100;
        assert!((r[1].dirtied_pages.unwrap() as i64 - both).abs() <= 1);
        assert_eq!(r[2].dirtied_pages, None);
        assert_eq!(r[3].gamma, None);
        assert!(r[3].last);
    }

    #[test]
    fn unfinished_migration_counts_what_was_still_dirty() {
        let snaps = [snap(100, 1, 1000, 10), snap(200, 2, 2000, 20)];
        let input = PrecopyInput {
            migration_id: "m",
            snapshots: &snaps,
            pass_times: &BTreeMap::new(),
            t_start_ns: 0,
            t_end_ns: 200_000_000,
            rounds: 2,
            final_transferred_bytes: 2000,
            final_pages: Some(20),
            final_remaining_bytes: Some(500),
            converged: false,
            page_size_bytes: 100,
            pre_dirty_rate_bytes_per_s: None,
            utc_offset_ns: None,
            stop_ns: None,
        };
        let r = rounds(&input);
        assert_eq!(r.iter().map(|x| x.sent_bytes).sum::<u64>(), 2000);
        assert!(!r[1].last);
        let sent2 = r[1].sent_bytes / 100;
        assert_eq!(r[0].dirtied_pages, Some(sent2 + 5));
        assert_eq!(r[0].start_utc_ns, None);
    }
}
