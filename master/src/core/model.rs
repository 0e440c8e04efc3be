//! The in-memory state: pipelines, their groups and work units.

use rustc_hash::FxHashMap;

use taskmaster_proto::v1::{InputUnit, OutputFile, PipelineSpec};

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
    /// The latest error texts, oldest first (bounded).
    pub errors: Vec<String>,
    /// The lease whose failure was recorded last (0: none), so a failure
    /// report repeated after a lost reply answers OK again.
    pub failed_lease: u64,
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
    pub units: Vec<Unit>,
    pub counts: Counts,
    /// False for a barrier group until its upstream groups complete and its
    /// units are created; a group is never complete before.
    pub created: bool,
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
