//! Lease expiries in time order, for the reaper.
//!
//! Every lease is granted and renewed with the same lease time, so the
//! leases of one call share one expiry and expiries arrive in time order.
//! They are kept in buckets by expiry: a grant adds to the newest bucket, a
//! commit lowers its bucket's count of live leases, and a bucket goes when
//! that count reaches zero. A set ordered by (expiry, lease) did an ordered
//! insert and remove per unit instead, about 6% of the master's
//! instructions in a batched run (BENCHMARKS-HISTORY.md, eleventh pass).
//!
//! A removed lease's id stays in its bucket until the bucket goes, so the
//! ids a due bucket returns may include leases no longer there, or moved to
//! a later expiry by a renewal: the caller keeps those that still expire
//! at the bucket's time.

use std::collections::BTreeMap;

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
