//! Lease expiries in time order, for the reaper.
//!
//! Every lease is granted and renewed with the same lease time, so the
//! leases of one call share one expiry and expiries arrive in time order.
//! They are kept in buckets by expiry: a grant adds to the newest bucket, a
//! commit lowers its bucket's count of live leases, and a bucket goes when
//! that count reaches zero. A set ordered by (expiry, lease) did an ordered
//! insert and remove per unit instead, about 5% of the master's
//! instructions in a batched run (BENCHMARKS.md, "Why the code is shaped
//! so: lease expiries in buckets").
//!
//! A removed lease's id stays in its bucket until the bucket goes, so the
//! ids a due bucket returns may include leases no longer there, or moved to
//! a later expiry by a renewal: the caller keeps those that still expire
//! at the bucket's time.
//!
//! A worker whose last `Work` stream closed (killed, cut off) gets its
//! leases' expiry brought forward to a short grace ([`Core::hasten_expiry`])
//! and, if it comes back, a full lease time again
//! ([`Core::extend_leases_of`]). Only when a unit runs again moves; the
//! commit checks do not: see ARCHITECTURE.md, "Leases of a worker that
//! went away".

use std::collections::BTreeMap;

use super::Core;
use super::model::UnitState;

impl Core {
    /// The worker that holds lease `lease_id` now, if it is current.
    pub fn lease_holder(&self, lease_id: u64) -> Option<&str> {
        let clock = self.leases.get(&lease_id)?;
        match &self.unit(clock.pos).state {
            UnitState::Leased { worker_id, .. } => Some(worker_id),
            _ => None,
        }
    }

    /// Brings the expiry of every lease `worker_id` holds forward to
    /// `expiry_ms`, where it is later; returns how many moved. The reaper
    /// then expires them ([`Core::expire`], journaled as usual), so their
    /// units run elsewhere sooner than a full lease time after the worker
    /// vanished.
    ///
    /// Safe for exactly-once: an expiry decides only when another worker
    /// may run the unit. Should the old worker be alive after all, its
    /// late commit fails check 3 (its lease is no longer the unit's), its
    /// renewal is refused likewise, and its output directory, named by its
    /// own lease id, is never read: at most the work is done twice.
    ///
    /// Looks at every lease out (O(leases out), bounded by the workers'
    /// slots), once per vanished worker.
    pub fn hasten_expiry(&mut self, worker_id: &str, expiry_ms: u64) -> usize {
        self.set_expiry_of(worker_id, |expiry| expiry.min(expiry_ms))
    }

    /// Gives every lease `worker_id` holds a full lease time from `now_ms`,
    /// as a renewal would: the worker is back (a new stream) after its
    /// leases were hastened, and renews them on its own schedule, which
    /// may come after the grace. Returns how many.
    pub fn extend_leases_of(&mut self, worker_id: &str, now_ms: u64) -> usize {
        let full = now_ms.saturating_add(self.config.lease_ms);
        self.set_expiry_of(worker_id, |expiry| expiry.max(full))
    }

    /// Sets the expiry of each lease `worker_id` holds to `to(expiry)`;
    /// returns how many changed.
    fn set_expiry_of(&mut self, worker_id: &str, to: impl Fn(u64) -> u64) -> usize {
        let held: Vec<u64> = self
            .leases
            .keys()
            .copied()
            .filter(|&id| self.lease_holder(id) == Some(worker_id))
            .collect();
        let mut changed = 0;
        for lease_id in held {
            let clock = self.leases.get_mut(&lease_id).expect("listed above");
            let expiry_ms = to(clock.expiry_ms);
            if expiry_ms != clock.expiry_ms {
                self.expiries.remove(clock.expiry_ms);
                clock.expiry_ms = expiry_ms;
                self.expiries.insert(expiry_ms, lease_id);
                changed += 1;
            }
        }
        changed
    }
}

#[derive(Debug, Clone, Default)]
pub struct Expiries {
    buckets: BTreeMap<u64, Bucket>,
    /// Live entries over all buckets.
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Lease ids added at this expiry, live or not.
    ids: Vec<u64>,
    /// How many of `ids` are live.
    live: usize,
}

impl Expiries {
    /// Adds a lease expiring at `expiry_ms`.
    pub fn insert(&mut self, expiry_ms: u64, lease_id: u64) {
        let bucket = match self.buckets.last_entry() {
            // The usual case: the newest expiry again, found without a search.
            Some(last) if *last.key() == expiry_ms => last.into_mut(),
            _ => self.buckets.entry(expiry_ms).or_default(),
        };
        bucket.ids.push(lease_id);
        bucket.live += 1;
        self.len += 1;
    }

    /// Removes a lease that was added at `expiry_ms` and not removed since.
    /// A lease of a bucket [`Expiries::pop_due`] took is not counted again.
    pub fn remove(&mut self, expiry_ms: u64) {
        let Some(bucket) = self.buckets.get_mut(&expiry_ms) else {
            return;
        };
        bucket.live -= 1;
        self.len -= 1;
        if bucket.live == 0 {
            self.buckets.remove(&expiry_ms);
        }
    }

    /// The earliest expiry of a live lease.
    pub fn first(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }

    /// Takes the earliest bucket if it is due by `now_ms`: its expiry and
    /// the ids added to it (live ones among them, see the module doc).
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, Vec<u64>)> {
        let first = self.buckets.first_entry()?;
        if *first.key() > now_ms {
            return None;
        }
        let (expiry_ms, bucket) = first.remove_entry();
        self.len -= bucket.live;
        Some((expiry_ms, bucket.ids))
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `lease_id` was added at `expiry_ms` (for invariant checks:
    /// it does not tell a live entry from a removed one).
    pub fn listed(&self, expiry_ms: u64, lease_id: u64) -> bool {
        self.buckets
            .get(&expiry_ms)
            .is_some_and(|bucket| bucket.ids.contains(&lease_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Refusal;
    use crate::core::tests::{LEASE_MS, core, done, two_groups};

    #[test]
    fn a_hastened_worker_loses_only_its_leases_at_the_grace_and_its_late_commit_is_refused() {
        let mut core = core();
        core.submit("p-1", two_groups(3), 0, 0).unwrap();
        let gone = core.lease("w1", 2, false, 0).unwrap().1.leases;
        let kept = core.lease("w2", 1, false, 0).unwrap().1.leases;
        assert_eq!(core.lease_holder(gone[0].lease_id), Some("w1"));
        assert_eq!(core.hasten_expiry("w1", 100), 2);
        assert_eq!(core.hasten_expiry("w1", 500), 0, "never later");
        core.check_invariants().unwrap();
        assert!(core.expire(99).is_empty());
        assert_eq!(core.expire(100).len(), 2, "w1's two, at the grace");
        assert_eq!(core.lease_holder(kept[0].lease_id), Some("w2"));
        let again = core.lease("w3", 5, false, 100).unwrap().1.leases;
        assert_eq!(again.len(), 2, "w1's units run elsewhere");
        let (_, late) = core.commit("tok", &[done(&gone[0], &["o"])], 101).unwrap();
        assert!(
            matches!(late[0], Err(Refusal::LeaseLost(_))),
            "check 3 refuses the old worker: {late:?}"
        );
        core.commit("tok", &[done(&again[0], &["o"])], 101).unwrap();
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_worker_back_before_the_grace_keeps_its_leases_a_full_lease_time() {
        let mut core = core();
        core.submit("p-1", two_groups(1), 0, 0).unwrap();
        let lease = core.lease("w1", 1, false, 0).unwrap().1.leases.remove(0);
        core.hasten_expiry("w1", 100);
        assert_eq!(core.extend_leases_of("w1", 50), 1);
        assert_eq!(core.extend_leases_of("w2", 50), 0, "not w2's");
        assert!(core.expire(50 + LEASE_MS - 1).is_empty());
        let (_, results) = core.commit("tok", &[done(&lease, &["o"])], 60).unwrap();
        assert_eq!(results, vec![Ok(())]);
        core.check_invariants().unwrap();
    }

    #[test]
    fn buckets_come_due_in_time_order_whatever_the_insert_order() {
        let mut expiries = Expiries::default();
        expiries.insert(30, 1);
        expiries.insert(10, 2);
        expiries.insert(30, 3);
        expiries.insert(20, 4);
        assert_eq!(expiries.len(), 4);
        assert_eq!(expiries.first(), Some(10));
        assert_eq!(expiries.pop_due(9), None);
        assert_eq!(expiries.pop_due(25), Some((10, vec![2])));
        assert_eq!(expiries.pop_due(25), Some((20, vec![4])));
        assert_eq!(expiries.pop_due(25), None);
        assert_eq!(expiries.len(), 2);
        assert_eq!(expiries.pop_due(30), Some((30, vec![1, 3])));
        assert_eq!((expiries.len(), expiries.first()), (0, None));
    }

    #[test]
    fn a_bucket_goes_with_its_last_live_lease() {
        let mut expiries = Expiries::default();
        expiries.insert(10, 1);
        expiries.insert(10, 2);
        expiries.insert(20, 3);
        expiries.remove(10);
        assert_eq!((expiries.len(), expiries.first()), (2, Some(10)));
        // Removed ids stay listed until their bucket goes.
        assert!(expiries.listed(10, 1) && expiries.listed(10, 2));
        expiries.remove(10);
        assert_eq!((expiries.len(), expiries.first()), (1, Some(20)));
        assert!(!expiries.listed(10, 1));
    }

    #[test]
    fn removing_from_a_bucket_already_taken_changes_nothing() {
        let mut expiries = Expiries::default();
        expiries.insert(10, 1);
        expiries.insert(10, 2);
        expiries.insert(20, 3);
        assert_eq!(expiries.pop_due(10), Some((10, vec![1, 2])));
        // The reaper expires the taken leases: each is removed as usual.
        expiries.remove(10);
        expiries.remove(10);
        assert_eq!((expiries.len(), expiries.first()), (1, Some(20)));
    }

    #[test]
    fn a_renewed_lease_moves_to_its_new_expiry() {
        let mut expiries = Expiries::default();
        expiries.insert(10, 1);
        expiries.insert(10, 2);
        // Lease 1 renewed: its old entry removed, a new one added.
        expiries.remove(10);
        expiries.insert(40, 1);
        assert_eq!(expiries.len(), 2);
        // The due bucket still lists lease 1: the caller sees that it
        // expires at 40 now and leaves it.
        assert_eq!(expiries.pop_due(10), Some((10, vec![1, 2])));
        assert_eq!(expiries.len(), 1);
        assert_eq!(expiries.pop_due(40), Some((40, vec![1])));
    }
}
