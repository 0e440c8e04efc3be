//! Latency samples (whole microseconds per call) and their percentiles.
//! A run keeps every sample and sorts once at the end: a million calls are
//! 4 MB, which is simpler and exact where a histogram would approximate.

use std::time::Duration;

/// A call's latency in whole microseconds, saturating at `u32::MAX` (71
/// minutes: far beyond any call the bench would wait for).
pub fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// The nearest-rank `p`th percentile (0 to 100) of `sorted` (ascending):
/// the smallest sample such that at least `p`% of the samples are at or
/// below it. `None` when there are no samples.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    debug_assert!(sorted.is_sorted(), "percentile needs sorted samples");
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// What the report shows of one kind of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls measured.
    pub count: usize,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

impl Summary {
    /// Summarizes `samples` (any order); all zero when there are none.
    pub fn of(mut samples: Vec<u32>) -> Summary {
        samples.sort_unstable();
        Summary {
            count: samples.len(),
            p50_us: percentile(&samples, 50.0).unwrap_or(0),
            p99_us: percentile(&samples, 99.0).unwrap_or(0),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_nothing_is_none() {
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn percentile_of_one_sample_is_that_sample() {
        for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&samples, 1.0), Some(1));
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 99.5), Some(100));
        assert_eq!(percentile(&samples, 100.0), Some(100));
    }

    #[test]
    fn percentile_rounds_the_rank_up() {
        // 4 samples: p50 is the 2nd, p51 already the 3rd, p99 the 4th.
        let samples = [10, 20, 30, 40];
        assert_eq!(percentile(&samples, 50.0), Some(20));
        assert_eq!(percentile(&samples, 51.0), Some(30));
        assert_eq!(percentile(&samples, 99.0), Some(40));
    }

    #[test]
    fn percentile_clamps_p() {
        let samples = [1, 2, 3];
        assert_eq!(percentile(&samples, -5.0), Some(1));
        assert_eq!(percentile(&samples, 250.0), Some(3));
    }

    #[test]
    fn p99_of_a_tail_sees_the_tail() {
        // 1000 fast calls and 11 slow ones: more than 1% are slow.
        let mut samples = vec![100; 1000];
        samples.extend([9_000; 11]);
        let summary = Summary::of(samples);
        assert_eq!(summary.p50_us, 100);
        assert_eq!(summary.p99_us, 9_000);
        assert_eq!(summary.max_us, 9_000);
        assert_eq!(summary.count, 1011);
    }

    #[test]
    fn summary_sorts_its_samples() {
        let summary = Summary::of(vec![5, 1, 4, 2, 3]);
        assert_eq!(
            summary,
            Summary {
                count: 5,
                p50_us: 3,
                p99_us: 5,
                max_us: 5
            }
        );
        assert_eq!(Summary::of(Vec::new()), Summary::default());
    }

    #[test]
    fn micros_saturates() {
        assert_eq!(micros(Duration::from_micros(1234)), 1234);
        assert_eq!(micros(Duration::from_secs(10_000)), u32::MAX);
    }
}
