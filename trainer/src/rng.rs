//! The trainer's one seeded generator: SplitMix64 (Steele, Lea and Flood, 2014) with unbiased
//! bounded draws. Written out rather than taken from `rand` so that a seed gives the same
//! folds and decision trials in every release (`rand` may change its algorithms between
//! versions); `fold_assignment_is_pinned` and `draws_are_pinned` hold it still.

/// SplitMix64 state.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (`bound` > 0): Lemire's multiply-shift with rejection,
    /// unbiased, and without a division in the common case (a million-row shuffle with one
    /// division per draw cost more than the QR it feeds).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(bound);
        if (m as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform index in `0..len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A uniform double in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Shuffle `v` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.index(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn draws_are_pinned() {
        // SplitMix64's outputs for seed 1234567 (as splitmix64.c computes them).
        let mut r = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn bounded_draws_are_uniform() {
        // `% 3` of 64 random bits is biased by 2^-64 only; a small bound shows the method is
        // right: every value of 0..6 turns up about as often.
        let mut r = SplitMix64::new(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.index(6)] += 1;
        }
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn the_rejection_step_removes_the_bias_of_a_large_bound() {
        // With bound = 3 * 2^62, `next_u64() % bound` (the decision trials' draw before) gives
        // the lowest third of the values twice as often as either other third.
        let bound = 3u64 << 62;
        let mut r = SplitMix64::new(3);
        let mut thirds = [0u32; 3];
        for _ in 0..30_000 {
            thirds[(r.below(bound) / (1u64 << 62)) as usize] += 1;
        }
        for t in thirds {
            assert!((9_300..=10_700).contains(&t), "{thirds:?}");
        }
    }

    proptest! {
        #[test]
        fn below_stays_below(seed in any::<u64>(), bound in 1u64..u64::MAX) {
            let mut r = SplitMix64::new(seed);
            for _ in 0..8 {
                prop_assert!(r.below(bound) < bound);
            }
        }

        #[test]
        fn unit_is_inside_0_1(seed in any::<u64>()) {
            let u = SplitMix64::new(seed).unit();
            prop_assert!(u > 0.0 && u < 1.0);
        }
    }
}
