//! Incarnations: which start of a master granted each lease.
//!
//! The server token names a store, but a master started on a copy of its
//! data dir (a restored backup, a copy kept by hand) has the same token and
//! hands out the same lease ids as the original did after the copy was
//! taken. Each start therefore journals a random incarnation (a
//! [`journal::Started`] record) before it serves; leases carry it, commits
//! and renewals must name it, and attempt directories include it. Lease ids
//! only grow within one journal, so the incarnation of any lease id is the
//! one whose first lease id is the greatest not above it: a sorted table
//! with one row per start, not a field per unit.

use taskmaster_proto::journal;

/// The incarnations of one journal, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incarnations {
    /// (first lease id, incarnation), first lease ids ascending.
    starts: Vec<(u64, u64)>,
}

impl Incarnations {
    /// The incarnation new leases get: the latest start's (0 before any).
    pub fn current(&self) -> u64 {
        self.starts
            .last()
            .map_or(0, |&(_, incarnation)| incarnation)
    }

    /// The first lease id of the latest start (0 before any).
    pub fn latest_first_lease_id(&self) -> u64 {
        self.starts.last().map_or(0, |&(first, _)| first)
    }

    /// The incarnation that granted `lease_id` (0: granted before the first
    /// recorded start, by a master that had no incarnations).
    pub fn of(&self, lease_id: u64) -> u64 {
        let after = self.starts.partition_point(|&(first, _)| first <= lease_id);
        after.checked_sub(1).map_or(0, |i| self.starts[i].1)
    }

    /// Whether a start may be recorded: a new, non-zero incarnation whose
    /// first lease id does not go back. Checked before [`Self::record`].
    pub fn check(&self, started: &journal::Started) -> Result<(), String> {
        if started.incarnation == 0 {
            return Err("a start with incarnation 0".into());
        }
        if self.starts.iter().any(|&(_, i)| i == started.incarnation) {
            return Err(format!(
                "incarnation {:016x} started twice",
                started.incarnation
            ));
        }
        if let Some(&(first, _)) = self.starts.last()
            && started.first_lease_id < first
        {
            return Err(format!(
                "a start at lease {} after one at lease {first}",
                started.first_lease_id
            ));
        }
        Ok(())
    }

    /// Records a checked start. A start that granted nothing is replaced
    /// by the next one at the same lease id, so restarts without work do
    /// not grow the table.
    pub fn record(&mut self, started: &journal::Started) {
        debug_assert!(self.check(started).is_ok());
        if let Some(last) = self.starts.last_mut()
            && last.0 == started.first_lease_id
        {
            *last = (started.first_lease_id, started.incarnation);
            return;
        }
        self.starts
            .push((started.first_lease_id, started.incarnation));
    }

    /// The table as snapshot rows.
    pub fn to_records(&self) -> Vec<journal::Started> {
        self.starts
            .iter()
            .map(|&(first_lease_id, incarnation)| journal::Started {
                incarnation,
                unix_ms: 0,
                first_lease_id,
            })
            .collect()
    }

    /// The table from snapshot rows, checked as the journal's would be.
    pub fn from_records(rows: &[journal::Started]) -> Result<Incarnations, String> {
        let mut table = Incarnations::default();
        for row in rows {
            table.check(row)?;
            table.record(row);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(first_lease_id: u64, incarnation: u64) -> journal::Started {
        journal::Started {
            incarnation,
            unix_ms: 0,
            first_lease_id,
        }
    }

    #[test]
    fn each_lease_id_maps_to_the_start_that_granted_it() {
        let mut table = Incarnations::default();
        assert_eq!((table.current(), table.of(5)), (0, 0));
        table.record(&started(10, 0xa));
        table.record(&started(20, 0xb));
        assert_eq!(table.current(), 0xb);
        assert_eq!(table.of(9), 0, "before the first start: no incarnation");
        assert_eq!((table.of(10), table.of(19)), (0xa, 0xa));
        assert_eq!((table.of(20), table.of(u64::MAX)), (0xb, 0xb));
    }

    #[test]
    fn a_start_that_granted_nothing_is_replaced_by_the_next() {
        let mut table = Incarnations::default();
        table.record(&started(1, 0xa));
        table.record(&started(1, 0xb));
        assert_eq!(table.to_records(), vec![started(1, 0xb)]);
        assert_eq!(table.of(1), 0xb);
    }

    #[test]
    fn reused_zero_or_backward_starts_are_refused() {
        let mut table = Incarnations::default();
        table.record(&started(5, 0xa));
        assert!(table.check(&started(6, 0)).is_err());
        assert!(table.check(&started(6, 0xa)).is_err());
        assert!(table.check(&started(4, 0xc)).is_err());
        assert!(table.check(&started(5, 0xc)).is_ok());
        assert!(Incarnations::from_records(&[started(5, 0xa), started(3, 0xb)]).is_err());
        let rows = vec![started(1, 0xa), started(7, 0xb)];
        assert_eq!(
            Incarnations::from_records(&rows).unwrap().to_records(),
            rows
        );
    }
}
