//! What a worker did, counted for its caller (tests, the binary's exit log).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of unit outcomes over one [`crate::run_worker`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Successful attempts whose commit the master accepted.
    pub units_committed: u64,
    /// Failed attempts the master accepted the report of.
    pub units_failed: u64,
    /// Commit items the master refused (wrong master, stale config, lost
    /// lease, ...); their results were dropped.
    pub commits_refused: u64,
    /// Commits given up after retrying until the lease would have expired.
    pub commits_abandoned: u64,
    /// Leases the master refused to renew; their units were cancelled.
    pub leases_lost: u64,
    /// Leases given back unfinished at shutdown.
    pub leases_released: u64,
}

/// The live counters behind [`WorkerStats`], shared by the worker's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub units_committed: AtomicU64,
    pub units_failed: AtomicU64,
    pub commits_refused: AtomicU64,
    pub commits_abandoned: AtomicU64,
    pub leases_lost: AtomicU64,
    pub leases_released: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WorkerStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerStats {
            units_committed: read(&self.units_committed),
            units_failed: read(&self.units_failed),
            commits_refused: read(&self.commits_refused),
            commits_abandoned: read(&self.commits_abandoned),
            leases_lost: read(&self.leases_lost),
            leases_released: read(&self.leases_released),
        }
    }
}
