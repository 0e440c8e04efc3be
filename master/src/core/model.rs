//! The in-memory state: pipelines, their groups and work units.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use taskmaster_proto::v1::{AttemptRun, InputUnit, OutputFile, PipelineSpec};

use super::spec::GroupWiring;

/// Where a unit's inputs come from. Upstream outputs are referenced, not
/// copied, so a unit costs little memory however many files it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitSource {
    /// A first group's unit: these files and byte ranges.
    Given(InputUnit),
    /// A first group without inputs: one unit that reads nothing.
    Nothing,
    /// The committed outputs of one upstream unit.
    Upstream { group: u32, unit: u32 },
    /// File `part-<r>` of every committed upstream unit (a shuffle).
    Partition(u32),
    /// Every committed upstream output (a gather).
    Gather,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    Pending,
    Leased {
        lease_id: u64,
        worker_id: String,
        /// When the lease was granted (wall clock, journaled with the
        /// grant; 0: not known), so a failed attempt's duration can be
        /// told. Costs no memory: the enum is as large for `Committed`.
        granted_unix_ms: u64,
    },
    Committed {
        lease_id: u64,
        files: Vec<OutputFile>,
    },
    Failed,
    /// Replaced (split by scaling) or derived from outputs that were
    /// cleared: kept as a tombstone so unit indices never shift.
    Dropped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub source: UnitSource,
    pub state: UnitState,
    /// Leases granted so far; the current attempt's number.
    pub grants: u32,
    /// Attempts that failed or expired; the unit fails when this reaches
    /// the group's `max_attempts`.
    pub failures: u32,
    /// The latest failed attempts' errors, oldest first (bounded).
    pub errors: Vec<AttemptError>,
    /// The lease whose failure was recorded last (0: none), so a failure
    /// report repeated after a lost reply answers OK again.
    pub failed_lease: u64,
}

/// A failed attempt's error text, the attempt's number, the worker that
/// ran it and for how long, so a status can say which attempt each error
/// came from (a retry keeps the errors before it, and a released attempt
/// leaves none) and where and how long it ran. Kept for failed attempts
/// only (at most `ERRORS_KEPT_PER_UNIT` a unit): nothing per committed
/// unit.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptError {
    /// The attempt's number (`TM_ATTEMPT`); 0 when not known (restored from
    /// a snapshot written before attempts were recorded with errors).
    pub attempt: u32,
    pub text: String,
    /// The worker that held the lease; empty when not known (restored
    /// from a snapshot written before workers were kept).
    pub worker_id: String,
    /// From the grant to the failure, or for an expired lease to the
    /// moment it ran out (wall clock, ms); None when not known (a lease
    /// granted by an older master, or an older snapshot's error).
    pub duration_ms: Option<u64>,
}

impl AttemptError {
    /// Who ran the attempt and for how long, as statuses and snapshots
    /// carry it.
    pub fn run(&self) -> AttemptRun {
        AttemptRun {
            worker_id: self.worker_id.clone(),
            duration_ms: self.duration_ms,
        }
    }
}

impl Unit {
    pub fn new(source: UnitSource) -> Unit {
        Unit {
            source,
            state: UnitState::Pending,
            grants: 0,
            failures: 0,
            errors: Vec::new(),
            failed_lease: 0,
        }
    }
}

/// Units per state, kept up to date on every transition so that status and
/// completion checks cost O(groups), not O(units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub leased: u64,
    pub committed: u64,
    pub failed: u64,
    /// Tombstones; not part of the total.
    pub dropped: u64,
}

impl Counts {
    pub fn slot(&mut self, state: &UnitState) -> &mut u64 {
        match state {
            UnitState::Pending => &mut self.pending,
            UnitState::Leased { .. } => &mut self.leased,
            UnitState::Committed { .. } => &mut self.committed,
            UnitState::Failed => &mut self.failed,
            UnitState::Dropped => &mut self.dropped,
        }
    }

    pub fn total(&self) -> u64 {
        self.pending + self.leased + self.committed + self.failed
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub wiring: GroupWiring,
    /// Bumped by config changes; commits under an older version are refused.
    pub config_version: u64,
    pub units: Units,
    pub counts: Counts,
    /// False for a barrier group until its upstream groups complete and its
    /// units are created; a group is never complete before.
    pub created: bool,
    /// A per-unit group's dropped units that a clear left to be made live
    /// again, by the (upstream group, unit) they are derived from: when
    /// that unit commits again, its unit here runs again under the same
    /// number instead of a new one.
    pub revivable: FxHashMap<(u32, u32), u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub id: String,
    pub spec: PipelineSpec,
    pub groups: Vec<Group>,
    pub group_index: FxHashMap<String, u32>,
    pub submitted_unix_ms: u64,
    /// Leases ever granted for this pipeline (0 means still pending).
    pub grants: u64,
    /// Failed or expired attempts that were given another try.
    pub retries: u64,
    /// Groups in an order where every group comes after its upstream ones.
    pub topo_order: Vec<u32>,
    pub cancelled: bool,
    pub blocked: bool,
    pub rerun_of: String,
    /// The next lease id when the pipeline was submitted: lower lease ids
    /// under its id are an older, deleted pipeline's that had the same id.
    pub lease_floor: u64,
    /// When the master first saw it finished (unix ms, journaled), or 0.
    pub finished_unix_ms: u64,
    /// A backfill's run: its units wait in the ready queue's later lane.
    pub backfill: bool,
}

/// A unit's position: pipeline, group and unit indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub pipeline: u32,
    pub group: u32,
    pub unit: u32,
}

/// A granted lease's volatile part: when it runs out. Not journaled: after
/// a restart every lease gets a full lease time again (workers keep going).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    pub pos: Pos,
    pub expiry_ms: u64,
}

/// Units per chunk of [`Units`]: small enough that copying one chunk while a
/// snapshot holds it costs microseconds, large enough that cloning the
/// chunk pointers of ten million units is quick.
const CHUNK_UNITS: usize = 1024;

/// A group's units, in chunks shared copy-on-write. Cloning copies chunk
/// pointers, not units, so a snapshot takes a consistent copy of the whole
/// state under the state lock in about a millisecond for millions of units
/// and encodes it after the lock is released; a unit changed meanwhile
/// copies its chunk once (`Arc::make_mut`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Units {
    chunks: Vec<Arc<Vec<Unit>>>,
    len: usize,
}

impl Units {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<&Unit> {
        if index >= self.len {
            return None;
        }
        self.chunks[index / CHUNK_UNITS].get(index % CHUNK_UNITS)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Unit> {
        if index >= self.len {
            return None;
        }
        Arc::make_mut(&mut self.chunks[index / CHUNK_UNITS]).get_mut(index % CHUNK_UNITS)
    }

    pub fn push(&mut self, unit: Unit) {
        if self.len.is_multiple_of(CHUNK_UNITS) {
            self.chunks.push(Arc::new(Vec::new()));
        }
        let last = self
            .chunks
            .last_mut()
            .expect("a chunk with room was just ensured");
        Arc::make_mut(last).push(unit);
        self.len += 1;
    }

    pub fn iter(&self) -> UnitsIter<'_> {
        self.chunks.iter().flat_map(chunk_iter)
    }
}

impl Index<usize> for Units {
    type Output = Unit;

    fn index(&self, index: usize) -> &Unit {
        self.get(index).expect("unit index in range")
    }
}

impl IndexMut<usize> for Units {
    fn index_mut(&mut self, index: usize) -> &mut Unit {
        self.get_mut(index).expect("unit index in range")
    }
}

impl FromIterator<Unit> for Units {
    fn from_iter<I: IntoIterator<Item = Unit>>(iter: I) -> Units {
        let mut units = Units::default();
        let mut iter = iter.into_iter();
        loop {
            // Sized from the iterator's hint, so collecting a first group
            // of 100,000 units does not grow each chunk by doubling.
            let mut chunk = Vec::with_capacity(iter.size_hint().0.clamp(1, CHUNK_UNITS));
            chunk.extend(iter.by_ref().take(CHUNK_UNITS));
            if chunk.is_empty() {
                return units;
            }
            units.len += chunk.len();
            units.chunks.push(Arc::new(chunk));
        }
    }
}

/// The units of [`Units`], in order (a nameable type, so `for u in
/// &units` needs no boxing).
pub type UnitsIter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<Vec<Unit>>>,
    std::slice::Iter<'a, Unit>,
    fn(&'a Arc<Vec<Unit>>) -> std::slice::Iter<'a, Unit>,
>;

fn chunk_iter(chunk: &Arc<Vec<Unit>>) -> std::slice::Iter<'_, Unit> {
    chunk.iter()
}

impl<'a> IntoIterator for &'a Units {
    type Item = &'a Unit;
    type IntoIter = UnitsIter<'a>;

    fn into_iter(self) -> UnitsIter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(n: u32) -> Unit {
        let mut unit = Unit::new(UnitSource::Partition(n));
        unit.grants = n;
        unit
    }

    #[test]
    fn units_index_push_and_iterate_across_chunks() {
        let mut units: Units = (0..CHUNK_UNITS as u32 + 5).map(unit).collect();
        assert_eq!(units.len(), CHUNK_UNITS + 5);
        units.push(unit(9999));
        assert_eq!(units[CHUNK_UNITS + 5].grants, 9999);
        assert_eq!(units.get(CHUNK_UNITS + 6), None);
        let grants: Vec<u32> = units.iter().map(|u| u.grants).collect();
        assert_eq!(grants.len(), CHUNK_UNITS + 6);
        assert_eq!(grants[CHUNK_UNITS], CHUNK_UNITS as u32);
        let mut filled = Units::default();
        for n in 0..3 * CHUNK_UNITS as u32 {
            filled.push(unit(n));
        }
        assert!(
            filled
                .iter()
                .map(|u| u.grants)
                .eq(0..3 * CHUNK_UNITS as u32)
        );
    }

    #[test]
    fn a_clone_is_a_snapshot_that_later_changes_do_not_touch() {
        let mut units: Units = (0..3 * CHUNK_UNITS as u32).map(unit).collect();
        let frozen = units.clone();
        units[5].grants = 100;
        units.push(unit(7));
        assert_eq!(frozen[5].grants, 5);
        assert_eq!(frozen.len(), 3 * CHUNK_UNITS);
        assert_eq!(units[5].grants, 100);
        // Only the changed chunk was copied; the others are still shared.
        assert!(Arc::ptr_eq(&units.chunks[1], &frozen.chunks[1]));
        assert!(!Arc::ptr_eq(&units.chunks[0], &frozen.chunks[0]));
    }
}
