//! Time as an input: the master reads time only through a [`Clock`], so
//! lease expiry follows a monotonic clock (wall-clock jumps change nothing)
//! and tests can move time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds on a monotonic scale (only differences mean anything).
    fn now_ms(&self) -> u64;
}

/// The real clock: milliseconds since the process started, from `Instant`.
pub struct MonotonicClock {
    start: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
