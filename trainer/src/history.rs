//! The refined model's history (eqs 11-13): a VM's weighted mean dirtying rate per past
//! migration (D_bar), its EWMA over migrations (D_hat) and the blend with the rate sampled
//! now (D_tilde); and this project's extension, the hot set (writable working set) H seen in
//! past migrations ([`wws_fit`], [`hot_set_hat`]).

use serde::Serialize;

/// Default EWMA weight mu of eq 12 (must exceed 0.5).
pub const DEFAULT_MU: f64 = 0.7;
/// Default blend phi of eq 13.
pub const DEFAULT_PHI: f64 = 0.5;

/// One round of a past migration as the history needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRate {
    /// Dirtying rate during the round, bytes/s.
    pub dirty_rate_bytes_per_s: f64,
    /// Duration of the round, s.
    pub duration_s: f64,
}

/// eq 11: D_bar = sum(D_i T_i) / sum(T_i) over rounds with both known and T_i > 0.
pub fn d_bar(rounds: &[RoundRate]) -> Option<f64> {
    let (num, den) = rounds
        .iter()
        .filter(|r| {
            r.duration_s.is_finite() && r.duration_s > 0.0 && r.dirty_rate_bytes_per_s.is_finite()
        })
        .fold((0.0, 0.0), |(n, d), r| {
            (
                n + r.dirty_rate_bytes_per_s * r.duration_s,
                d + r.duration_s,
            )
        });
    (den > 0.0).then(|| num / den)
}

/// What one past migration says about the VM's dirtying under the hot-set cap: the data
/// dirty after a round of T seconds is min(D T, H) (see
/// [`crate::predict::Scenario::hot_set_bytes`]; this project's extension of eqs 11-13).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WwsFit {
    /// D_m: eq 11 over the rounds the hot set did not cap, bytes/s.
    pub d_bytes_per_s: Option<f64>,
    /// H_m: round 1's dirtied data when the hot set capped it (None: the cap was not seen).
    pub hot_set_bytes: Option<f64>,
}

/// Fit min(D T, H) to one past migration's pre-copy rounds: `first` is round 1, `rest` the
/// later non-last rounds. Round 1 is by far the longest, so it is the round the hot set can
/// cap. With D_rest = eq 11 over `rest`, round 1 was capped when it dirtied less than the
/// later rounds' rate would have (x_1 < D_rest T_1): then H_m = x_1 and D_m = D_rest.
/// Otherwise (or without round 1 and a later round) H_m is unknown and D_m = eq 11 over all
/// rounds, as the paper's D_bar. Eq 11 over all rounds would mix the capped round 1 in and
/// so under-state the rate of the short rounds that follow.
pub fn wws_fit(first: Option<RoundRate>, rest: &[RoundRate]) -> WwsFit {
    let all: Vec<RoundRate> = first.into_iter().chain(rest.iter().copied()).collect();
    let uncapped = WwsFit {
        d_bytes_per_s: d_bar(&all),
        hot_set_bytes: None,
    };
    let (Some(r1), Some(d_rest)) = (first, d_bar(rest)) else {
        return uncapped;
    };
    let (t1, x1) = (r1.duration_s, r1.dirty_rate_bytes_per_s * r1.duration_s);
    if t1.is_finite() && t1 > 0.0 && x1.is_finite() && x1 < d_rest * t1 {
        WwsFit {
            d_bytes_per_s: Some(d_rest),
            hot_set_bytes: Some(x1),
        }
    } else {
        uncapped
    }
}

/// H_hat: the largest hot set H_m seen in the VM's past migrations (None: never seen). The
/// writable working set is at least the largest dirty set ever observed; a mean would let
/// the short round 1 of a fast link cap a slow-link prediction too early.
pub fn hot_set_hat(h: impl IntoIterator<Item = f64>) -> Option<f64> {
    h.into_iter()
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

/// The refined-model state of one VM after a sequence of migrations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct History {
    /// D_bar of the latest migration, bytes/s.
    pub d_bar_bytes_per_s: f64,
    /// D_hat after the latest migration (eq 12), bytes/s.
    pub d_hat_bytes_per_s: f64,
    /// Migrations folded in.
    pub migrations: u32,
}

/// Fold eq 12 over the D_bar of successive migrations (oldest first); D_hat_1 = D_bar_1.
pub fn ewma(d_bars: impl IntoIterator<Item = f64>, mu: f64) -> Option<History> {
    let mut h: Option<History> = None;
    for d in d_bars {
        h = Some(match h {
            None => History {
                d_bar_bytes_per_s: d,
                d_hat_bytes_per_s: d,
                migrations: 1,
            },
            Some(p) => History {
                d_bar_bytes_per_s: d,
                d_hat_bytes_per_s: mu * d + (1.0 - mu) * p.d_hat_bytes_per_s,
                migrations: p.migrations + 1,
            },
        });
    }
    h
}

/// eq 13: D_tilde = phi S + (1 - phi) D_hat.
pub fn d_tilde(sampled_bytes_per_s: f64, d_hat_bytes_per_s: f64, phi: f64) -> f64 {
    phi * sampled_bytes_per_s + (1.0 - phi) * d_hat_bytes_per_s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn d_bar_weights_by_duration() {
        let r = |d, t| RoundRate {
            dirty_rate_bytes_per_s: d,
            duration_s: t,
        };
        // (10*1 + 40*3) / 4 = 32.5; rounds without a duration are skipped.
        assert_eq!(
            d_bar(&[r(10.0, 1.0), r(40.0, 3.0), r(99.0, f64::NAN)]),
            Some(32.5)
        );
        assert_eq!(d_bar(&[r(10.0, 0.0)]), None);
    }

    #[test]
    fn ewma_and_blend_by_hand() {
        // D_bar 100, 200, 50 with mu 0.7: 100; 0.7*200 + 0.3*100 = 170; 0.7*50 + 0.3*170 = 86.
        let h = ewma([100.0, 200.0, 50.0], 0.7).unwrap();
        assert!((h.d_hat_bytes_per_s - 86.0).abs() < 1e-12);
        assert_eq!(h.d_bar_bytes_per_s, 50.0);
        assert_eq!(h.migrations, 3);
        assert_eq!(d_tilde(60.0, 86.0, 0.5), 73.0);
        assert_eq!(ewma([], 0.7), None);
    }

    fn rr(x: f64, t: f64) -> RoundRate {
        RoundRate {
            dirty_rate_bytes_per_s: x / t,
            duration_s: t,
        }
    }

    #[test]
    fn capped_first_round_gives_the_hot_set() {
        // Round 1: 6 s, 34 MB dirtied (would be 72 MB at the later rounds' 12 MB/s).
        // Later rounds: 25.5 MB in 2.125 s, 19.125 MB in 1.59375 s: D_rest = 12 MB/s.
        let f = wws_fit(
            Some(rr(34e6, 6.0)),
            &[rr(25.5e6, 2.125), rr(19.125e6, 1.59375)],
        );
        assert_eq!(f.hot_set_bytes, Some(34e6));
        let d = f.d_bytes_per_s.unwrap();
        assert!((d - 12e6).abs() < 1e-6, "{d}");
        // Uncapped: round 1 dirtied at the same 12 MB/s (72 MB): eq 11 over every round.
        let rounds = [rr(72e6, 6.0), rr(25.5e6, 2.125), rr(19.125e6, 1.59375)];
        let f = wws_fit(Some(rounds[0]), &rounds[1..]);
        assert_eq!(f.hot_set_bytes, None);
        assert_eq!(f.d_bytes_per_s, d_bar(&rounds));
        // Round 1 faster than the later ones: not capped either.
        let f = wws_fit(Some(rr(90e6, 6.0)), &[rr(24e6, 2.0)]);
        assert_eq!(f.hot_set_bytes, None);
        assert_eq!(f.d_bytes_per_s, Some(114e6 / 8.0));
        // Fewer than two rounds: no cap, today's D_bar.
        assert_eq!(
            wws_fit(Some(rr(34e6, 6.0)), &[]),
            WwsFit {
                d_bytes_per_s: Some(34e6 / 6.0),
                hot_set_bytes: None
            }
        );
        assert_eq!(
            wws_fit(None, &[rr(24e6, 2.0)]).d_bytes_per_s,
            Some(12e6),
            "no round 1"
        );
        // Degenerate later rounds (no duration): no cap.
        let f = wws_fit(Some(rr(34e6, 6.0)), &[rr(1.0, f64::NAN)]);
        assert_eq!(f.hot_set_bytes, None);
        assert_eq!(hot_set_hat([3.0, 9.0, 4.0]), Some(9.0));
        assert_eq!(hot_set_hat([]), None);
    }

    proptest! {
        #[test]
        fn wws_fit_either_caps_round_one_or_is_eq_11(x1 in 1.0f64..1e9, t1 in 0.1f64..100.0, rest in proptest::collection::vec((1.0f64..1e9, 0.01f64..10.0), 0..6)) {
            let rest: Vec<RoundRate> = rest.into_iter().map(|(x, t)| rr(x, t)).collect();
            let f = wws_fit(Some(rr(x1, t1)), &rest);
            match f.hot_set_bytes {
                Some(h) => {
                    prop_assert!((h - x1).abs() <= 1e-9 * x1);
                    prop_assert_eq!(f.d_bytes_per_s, d_bar(&rest));
                    prop_assert!(h < f.d_bytes_per_s.unwrap() * t1);
                }
                None => {
                    let all: Vec<RoundRate> = std::iter::once(rr(x1, t1)).chain(rest.iter().copied()).collect();
                    prop_assert_eq!(f.d_bytes_per_s, d_bar(&all));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn ewma_stays_within_the_range_of_its_inputs(xs in proptest::collection::vec(0.0f64..1e9, 1..20), mu in 0.5f64..1.0) {
            let h = ewma(xs.iter().copied(), mu).unwrap();
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(0.0, f64::max);
            prop_assert!(h.d_hat_bytes_per_s >= lo * (1.0 - 1e-12) && h.d_hat_bytes_per_s <= hi * (1.0 + 1e-12));
            // The recurrence, one step at a time.
            let mut d = xs[0];
            for x in &xs[1..] { d = mu * x + (1.0 - mu) * d; }
            prop_assert!((d - h.d_hat_bytes_per_s).abs() <= 1e-9 * hi.max(1.0));
        }
    }
}
