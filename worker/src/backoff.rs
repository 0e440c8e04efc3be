//! Exponential backoff with full jitter, for retrying RPCs to the master.
//!
//! Full jitter (a uniformly random delay between zero and the current
//! ceiling) spreads out the retries of many workers, so a master that comes
//! back after a restart is not hit by all of them at the same instant.

use std::time::Duration;

use rand::Rng;

/// The first ceiling for RPC retries.
pub const BACKOFF_BASE_MS: u64 = 100;
/// The ceiling stops doubling here.
pub const BACKOFF_CAP_MS: u64 = 5_000;

/// Retry delays: the ceiling starts at `base` and doubles after every
/// failure up to `cap`; each delay is drawn uniformly from `0..=ceiling`.
#[derive(Clone, Debug)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    /// Failures since the last reset; bounds the exponent.
    failures: u32,
}

impl Backoff {
    /// A backoff from `base_ms` doubling to `cap_ms`.
    pub fn new(base_ms: u64, cap_ms: u64) -> Self {
        assert!(base_ms > 0 && base_ms <= cap_ms, "bad backoff bounds");
        Self {
            base_ms,
            cap_ms,
            failures: 0,
        }
    }

    /// The backoff used for every RPC: 100 ms doubling to 5 s.
    pub fn rpc() -> Self {
        Self::new(BACKOFF_BASE_MS, BACKOFF_CAP_MS)
    }

    /// The upper bound of the next delay.
    pub fn ceiling_ms(&self) -> u64 {
        // The shift is capped so it cannot overflow; 2^20 * base is far above
        // any sensible cap already.
        let shift = self.failures.min(20);
        self.base_ms.saturating_mul(1 << shift).min(self.cap_ms)
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling_ms = self.ceiling_ms();
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(rand::rng().random_range(0..=ceiling_ms))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first ceiling, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_up_to_the_cap() {
        let mut backoff = Backoff::rpc();
        let expected_ceilings = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for ceiling in expected_ceilings {
            assert_eq!(backoff.ceiling_ms(), ceiling);
            let delay = backoff.next_delay();
            assert!(
                delay <= Duration::from_millis(ceiling),
                "{delay:?} > {ceiling}"
            );
        }
        for _ in 0..1000 {
            assert!(backoff.next_delay() <= Duration::from_millis(BACKOFF_CAP_MS));
        }
        assert_eq!(backoff.ceiling_ms(), BACKOFF_CAP_MS);
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = Backoff::new(1_000, 1_000);
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.next_delay()).collect();
        // 50 draws from 1001 values: all equal would mean no jitter.
        assert!(delays.len() > 1);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::rpc();
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert_eq!(backoff.failures(), 10);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.ceiling_ms(), BACKOFF_BASE_MS);
        assert!(backoff.next_delay() <= Duration::from_millis(BACKOFF_BASE_MS));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(1, u64::MAX);
        for _ in 0..200 {
            backoff.next_delay();
        }
        assert_eq!(backoff.ceiling_ms(), 1 << 20);
    }
}
