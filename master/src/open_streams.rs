//! Each worker's open `Work` streams (see `work_stream`): when a worker's
//! last one closes (the worker was killed, or its connection cut), its
//! leases expire after a short grace instead of a full lease time, so a
//! barrier does not wait out the lease of a worker that is gone
//! (`Core::hasten_expiry`, whose comment says why exactly-once holds). A
//! worker that comes back on a new stream gets its leases' full time back.
//! The runtime holds the count; the stream serving reports to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long a worker's leases last after its last stream closed, unless
/// it comes back (`taskmaster serve --lost-worker-grace-ms`): long enough
/// for a worker whose connection blipped to open a new stream, short
/// enough that a barrier behind a killed worker waits seconds, not a
/// lease time.
pub const LOST_WORKER_GRACE_MS_DEFAULT: u64 = 5_000;

/// The grace `taskmaster serve` uses unless told otherwise: a third of the
/// lease time (when the stock worker renews, and so calls again on a new
/// stream) plus 2 s, at least [`LOST_WORKER_GRACE_MS_DEFAULT`] and at most
/// the lease time. A worker whose connection blipped keeps its leases; one
/// that was killed holds its units 12 s instead of 30 with the default
/// lease time.
pub fn grace_ms_for(lease_ms: u64) -> u64 {
    (lease_ms / 3 + 2_000)
        .max(LOST_WORKER_GRACE_MS_DEFAULT)
        .min(lease_ms.max(1))
}

/// Workers remembered as hastened (gone, leases brought forward) and not
/// back yet, at most: past that the oldest knowledge is dropped, and a
/// worker that comes back then renews on its own schedule.
const HASTENED_REMEMBERED_MAX: usize = 10_000;

/// Each worker's open `Work` streams, and the workers whose leases were
/// hastened when their last stream closed.
#[derive(Debug)]
pub struct OpenStreams {
    state: parking_lot::Mutex<StreamCounts>,
    grace_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct StreamCounts {
    open: HashMap<Arc<str>, usize>,
    hastened: HashSet<Arc<str>>,
}

impl Default for OpenStreams {
    fn default() -> OpenStreams {
        OpenStreams {
            state: Default::default(),
            grace_ms: AtomicU64::new(LOST_WORKER_GRACE_MS_DEFAULT),
        }
    }
}

impl OpenStreams {
    /// How long a worker's leases last after its last stream closed.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms.load(Ordering::Relaxed)
    }

    pub fn set_grace_ms(&self, grace_ms: u64) {
        self.grace_ms.store(grace_ms, Ordering::Relaxed);
    }

    /// Whether a stream carries `worker_id`'s calls now.
    pub fn is_open(&self, worker_id: &str) -> bool {
        self.state.lock().open.contains_key(worker_id)
    }

    /// A stream carries `worker`'s calls; true if the worker's leases were
    /// hastened since its last stream closed (it is back).
    pub(crate) fn opened(&self, worker: &Arc<str>) -> bool {
        let mut state = self.state.lock();
        *state.open.entry(Arc::clone(worker)).or_default() += 1;
        state.hastened.remove(worker)
    }

    /// A stream that carried `worker`'s calls ended; true if it was the
    /// worker's last, which marks the worker hastened.
    pub(crate) fn closed(&self, worker: &Arc<str>) -> bool {
        let mut state = self.state.lock();
        let Some(open) = state.open.get_mut(worker) else {
            return false;
        };
        *open -= 1;
        if *open > 0 {
            return false;
        }
        state.open.remove(worker);
        if state.hastened.len() >= HASTENED_REMEMBERED_MAX {
            state.hastened.clear();
        }
        state.hastened.insert(Arc::clone(worker));
        true
    }
}

#[cfg(test)]
mod grace_tests {
    use super::*;

    #[test]
    fn the_default_grace_outlasts_a_renewal_and_never_a_lease() {
        assert_eq!(grace_ms_for(30_000), 12_000);
        assert_eq!(grace_ms_for(3_000), LOST_WORKER_GRACE_MS_DEFAULT.min(3_000));
        assert_eq!(grace_ms_for(800), 800);
        assert_eq!(grace_ms_for(600_000), 202_000);
    }
}
