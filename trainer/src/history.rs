//! The refined model's history (eqs 11-13): a VM's weighted mean dirtying rate per past
//! migration (D_bar), its EWMA over migrations (D_hat) and the blend with the rate sampled
//! now (D_tilde).

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
