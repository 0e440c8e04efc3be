//! The leases this worker holds right now: what the renewal loop renews,
//! what a commit checks its deadline against, what shutdown releases.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use parking_lot::Mutex;
use taskmaster_proto::v1::{Lease, LeaseRef};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::task::{CancelReason, CancelToken};

/// Renewals are never closer together than this, even if the master hands
/// out very short leases (guards against a busy loop on `lease_ms = 0`).
pub const RENEW_INTERVAL_MIN_MS: u64 = 100;

/// Names a held lease. Lease ids are unique per master store; the server
/// token says which store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    pub server_token: String,
    pub lease_id: u64,
}

impl LeaseKey {
    pub fn of(lease: &Lease) -> Self {
        Self {
            server_token: lease.server_token.clone(),
            lease_id: lease.lease_id,
        }
    }
}

/// What is known about one held lease.
#[derive(Debug)]
struct Held {
    /// Sent back in renew, commit and release calls.
    lease_ref: LeaseRef,
    /// The lease's length as last granted or renewed.
    lease_ms: u64,
    /// When the last successful renewal (or the grant) was *sent*; the lease
    /// runs out no earlier than `lease_ms` after it.
    renewed_at: Instant,
    /// Set when the lease is lost, to stop the unit's task.
    cancel: CancelToken,
}

impl Held {
    fn expiry(&self) -> Instant {
        self.renewed_at + Duration::from_millis(self.lease_ms)
    }

    fn renewal_due(&self) -> Instant {
        let interval_ms = (self.lease_ms / 3).max(RENEW_INTERVAL_MIN_MS);
        self.renewed_at + Duration::from_millis(interval_ms)
    }
}

/// The table of held leases, shared by the unit tasks, the renewal loop and
/// shutdown.
#[derive(Debug, Default)]
pub struct HeldLeases {
    leases: Mutex<HashMap<LeaseKey, Held>>,
    /// Wakes the renewal loop when a lease is added (it may be due sooner
    /// than anything held before).
    added: Notify,
}

impl HeldLeases {
    /// Starts tracking a lease granted at `granted_at`.
    pub fn insert(&self, lease: &Lease, cancel: CancelToken, granted_at: Instant) -> LeaseKey {
        let key = LeaseKey::of(lease);
        let held = Held {
            lease_ref: lease.to_ref(),
            lease_ms: lease.lease_ms,
            renewed_at: granted_at,
            cancel,
        };
        self.leases.lock().insert(key.clone(), held);
        self.added.notify_one();
        key
    }

    /// Stops tracking a lease (its unit is done with it). False if it was
    /// not held (lost or released meanwhile).
    pub fn remove(&self, key: &LeaseKey) -> bool {
        self.leases.lock().remove(key).is_some()
    }

    /// Stops tracking a lease the master says is lost, and cancels its unit.
    /// False if it was not held.
    pub fn lose(&self, key: &LeaseKey) -> bool {
        let Some(held) = self.leases.lock().remove(key) else {
            return false;
        };
        held.cancel.cancel(CancelReason::LeaseLost);
        true
    }

    /// Records a successful renewal sent at `sent_at`. A `lease_ms` of 0
    /// (not given) keeps the previous length.
    pub fn renewed(&self, key: &LeaseKey, sent_at: Instant, lease_ms: u64) {
        if let Some(held) = self.leases.lock().get_mut(key) {
            held.renewed_at = sent_at;
            if lease_ms > 0 {
                held.lease_ms = lease_ms;
            }
        }
    }

    /// When the lease runs out unless renewed; `None` if not held.
    pub fn expiry(&self, key: &LeaseKey) -> Option<Instant> {
        self.leases.lock().get(key).map(Held::expiry)
    }

    /// When the next renewal call is due: a third of the shortest lease
    /// after its last renewal. `None` when nothing is held.
    pub fn next_renewal(&self) -> Option<Instant> {
        self.leases.lock().values().map(Held::renewal_due).min()
    }

    /// Resolves after the next [`HeldLeases::insert`] (or at once if one
    /// happened since the last wait).
    pub async fn added(&self) {
        self.added.notified().await;
    }

    /// Every held lease, grouped by server token (one renew or release call
    /// each), in a stable order.
    pub fn by_token(&self) -> BTreeMap<String, Vec<(LeaseKey, LeaseRef)>> {
        let mut groups: BTreeMap<String, Vec<(LeaseKey, LeaseRef)>> = BTreeMap::new();
        for (key, held) in self.leases.lock().iter() {
            groups
                .entry(key.server_token.clone())
                .or_default()
                .push((key.clone(), held.lease_ref.clone()));
        }
        for leases in groups.values_mut() {
            leases.sort_by_key(|(key, _)| key.lease_id);
        }
        groups
    }

    /// Cancels every held lease's unit.
    pub fn cancel_all(&self, reason: CancelReason) {
        for held in self.leases.lock().values() {
            held.cancel.cancel(reason);
        }
    }

    /// Stops tracking everything, returning what was held, grouped by token.
    pub fn take_all(&self) -> BTreeMap<String, Vec<(LeaseKey, LeaseRef)>> {
        let groups = self.by_token();
        self.leases.lock().clear();
        groups
    }

    /// Number of held leases.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.leases.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmaster_proto::v1::UnitRef;

    fn lease(token: &str, lease_id: u64, lease_ms: u64) -> Lease {
        Lease {
            unit: Some(UnitRef {
                pipeline_id: "p".into(),
                group: "g".into(),
                unit: lease_id as u32,
            }),
            lease_id,
            lease_ms,
            config_version: 7,
            server_token: token.into(),
            ..Lease::default()
        }
    }

    #[test]
    fn renewal_is_due_a_third_into_the_shortest_lease() {
        let held = HeldLeases::default();
        let now = Instant::now();
        assert_eq!(held.next_renewal(), None);
        held.insert(&lease("t", 1, 30_000), CancelToken::new(), now);
        held.insert(&lease("t", 2, 3_000), CancelToken::new(), now);
        assert_eq!(
            held.next_renewal(),
            Some(now + Duration::from_millis(1_000))
        );

        let later = now + Duration::from_millis(900);
        let key = LeaseKey {
            server_token: "t".into(),
            lease_id: 2,
        };
        held.renewed(&key, later, 0);
        assert_eq!(
            held.expiry(&key),
            Some(later + Duration::from_millis(3_000))
        );
        held.renewed(&key, later, 600);
        assert_eq!(held.expiry(&key), Some(later + Duration::from_millis(600)));
        // Now due at 600 / 3 = 200 ms after the renewal.
        assert_eq!(
            held.next_renewal(),
            Some(later + Duration::from_millis(200))
        );
    }

    #[test]
    fn renewals_never_come_faster_than_the_floor() {
        let held = HeldLeases::default();
        let now = Instant::now();
        held.insert(&lease("t", 1, 0), CancelToken::new(), now);
        let floor = Duration::from_millis(RENEW_INTERVAL_MIN_MS);
        assert_eq!(held.next_renewal(), Some(now + floor));
    }

    #[test]
    fn losing_a_lease_cancels_its_unit_and_forgets_it() {
        let held = HeldLeases::default();
        let cancel = CancelToken::new();
        let key = held.insert(&lease("t", 1, 30_000), cancel.clone(), Instant::now());
        assert!(held.lose(&key));
        assert_eq!(cancel.reason(), Some(CancelReason::LeaseLost));
        assert_eq!(held.expiry(&key), None);
        assert!(!held.lose(&key));
        assert!(!held.remove(&key));
    }

    #[test]
    fn leases_are_grouped_by_server_token() {
        let held = HeldLeases::default();
        let now = Instant::now();
        for (token, id) in [("b", 5), ("a", 9), ("b", 2)] {
            held.insert(&lease(token, id, 30_000), CancelToken::new(), now);
        }
        let groups = held.by_token();
        let ids: Vec<(String, Vec<u64>)> = groups
            .into_iter()
            .map(|(token, leases)| (token, leases.iter().map(|(_, r)| r.lease_id).collect()))
            .collect();
        assert_eq!(ids, vec![("a".into(), vec![9]), ("b".into(), vec![2, 5])]);

        assert_eq!(held.take_all().len(), 2);
        assert_eq!(held.len(), 0);
    }
}
