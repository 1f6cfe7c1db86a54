//! The statistics of the reports: order statistics of samples, and the permutation test the
//! regression gate uses (Firecracker's A/B rule: a change counts only if it is both
//! significant, p < 0.01, and large).

use serde::{Deserialize, Serialize};

/// A sample set and its order statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Unit of the samples (`cycles`, `ms`, …).
    pub unit: String,
    /// Sample count.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Every sample, in the order measured.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises `samples` (which may be empty: then every statistic is 0).
    pub fn new(unit: &str, samples: Vec<f64>) -> Summary {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = if n == 0 {
            0.0
        } else {
            sorted.iter().sum::<f64>() / n as f64
        };
        Summary {
            unit: unit.to_owned(),
            n,
            median: quantile(&sorted, 0.5),
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            mean,
            samples,
        }
    }

    /// Every statistic and sample multiplied by `k`, in unit `unit` (e.g. cycles → µs).
    pub fn scaled(&self, k: f64, unit: &str) -> Summary {
        Summary::new(unit, self.samples.iter().map(|x| x * k).collect())
    }

    /// Interquartile range relative to the median (0 for a zero median).
    pub fn relative_iqr(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.q3 - self.q1) / self.median
        }
    }
}

/// The `q`-quantile of sorted samples, linearly interpolated between order statistics (R's
/// type 7, numpy's default); 0 for no samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

/// A small deterministic generator (SplitMix64), so that the test's p-value is reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by rejection so that there is no modulo bias.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// Two-sided permutation test of "`a` and `b` come from the same distribution" with the
/// difference of medians as statistic, over `rounds` random relabellings: the p-value
/// `(1 + #{|perm| >= |observed|}) / (1 + rounds)`. 1.0 when either side is empty.
pub fn permutation_p_value(a: &[f64], b: &[f64], rounds: usize, seed: u64) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let observed = (median(a) - median(b)).abs();
    let mut pool: Vec<f64> = a.iter().chain(b).copied().collect();
    let mut rng = SplitMix(seed);
    let mut extreme = 0usize;
    for _ in 0..rounds {
        // Fisher–Yates: a uniformly random relabelling of the pooled samples.
        for i in (1..pool.len()).rev() {
            pool.swap(i, rng.below(i + 1));
        }
        let (pa, pb) = pool.split_at(a.len());
        // Ties count as extreme, which keeps the test conservative.
        if (median(pa) - median(pb)).abs() >= observed - observed * 1e-12 {
            extreme += 1;
        }
    }
    (1 + extreme) as f64 / (1 + rounds) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert_eq!(quantile(&s, 0.25), 1.75);
        assert_eq!(quantile(&s, 0.75), 3.25);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert_eq!(quantile(&[7.0], 0.3), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn summary_keeps_samples_in_order_and_sorts_for_statistics() {
        let s = Summary::new("cycles", vec![5.0, 1.0, 3.0]);
        assert_eq!(s.samples, [5.0, 1.0, 3.0]);
        assert_eq!(
            (s.n, s.median, s.min, s.max, s.mean),
            (3, 3.0, 1.0, 5.0, 3.0)
        );
        assert_eq!((s.q1, s.q3), (2.0, 4.0));
        let us = s.scaled(0.5, "us");
        assert_eq!((us.unit.as_str(), us.median), ("us", 1.5));
    }

    #[test]
    fn identical_distributions_are_not_significant() {
        let a: Vec<f64> = (0..40).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = (0..40).map(|i| 100.0 + ((i + 3) % 7) as f64).collect();
        let p = permutation_p_value(&a, &b, 2000, 1);
        assert!(p > 0.2, "p = {p}");
    }

    #[test]
    fn a_clear_shift_is_significant() {
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 5) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| 200.0 + (i % 5) as f64).collect();
        let p = permutation_p_value(&a, &b, 2000, 1);
        assert!(p < 0.01, "p = {p}");
        // The smallest p-value a test of R rounds can give is 1/(R+1).
        assert!((p - 1.0 / 2001.0).abs() < 1e-12, "p = {p}");
    }

    #[test]
    fn tiny_samples_cannot_be_significant() {
        // Two samples a side have only 6 relabellings: p can never get below 1/3.
        let p = permutation_p_value(&[1.0, 2.0], &[10.0, 11.0], 5000, 3);
        assert!(p > 0.1, "p = {p}");
        assert_eq!(permutation_p_value(&[], &[1.0], 100, 0), 1.0);
    }

    #[test]
    fn the_test_is_reproducible() {
        let a = [1.0, 5.0, 2.0, 8.0, 3.0];
        let b = [4.0, 6.0, 9.0, 7.0, 10.0];
        assert_eq!(
            permutation_p_value(&a, &b, 999, 42),
            permutation_p_value(&a, &b, 999, 42)
        );
    }
}
