//! The state as a [`Snapshot`] and back, and the rollback transform.
//!
//! A snapshot holds what the journal would rebuild: pipelines, groups,
//! units, the lease counter and blocks, and which pending units still wait
//! out a retry delay, with what was left of it. Derived indices (counts,
//! ready queue, lease clocks) are rebuilt on load, as replay rebuilds them.

use rustc_hash::FxHashMap;

use taskmaster_proto::journal::{
    DelayedRetry, Snapshot, SnapshotGroup, SnapshotPipeline, SnapshotUnit, UnitAddr, UnitStateCode,
    snapshot_unit::Source,
};

use taskmaster_proto::v1::{PipelineRollback, PipelineState, RollbackPreview};

use super::incarnation::Incarnations;
use super::model::{
    AttemptError, Counts, Group, LeaseClock, Pipeline, Pos, Unit, UnitSource, UnitState, Units,
};
use super::{Core, CoreConfig, CoreError, spec};

/// What a snapshot records, copied out of the core quickly (units are
/// shared copy-on-write, see `Units`) so that the slow part, encoding every
/// unit, runs after the state lock is released.
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    server_token: String,
    next_lease_id: u64,
    incarnations: Incarnations,
    blocked: bool,
    pipelines: Vec<Pipeline>,
    delayed_retries: Vec<DelayedRetry>,
    /// Tokens (hashed) and the audit trail (issue 24).
    tokens: Vec<taskmaster_proto::journal::TokenCreated>,
    audit: Vec<taskmaster_proto::v1::AuditEntry>,
    /// Schedules, runs and backfills (issue 25).
    schedules: super::schedules::Schedules,
}

impl SnapshotSource {
    pub(super) fn pipelines(&self) -> &[Pipeline] {
        &self.pipelines
    }

    /// The state as it was copied, to be stored at journal position
    /// `position`.
    pub fn to_snapshot(&self, position: u64) -> Snapshot {
        Snapshot {
            pipelines: self.pipelines.iter().map(pipeline_to_snapshot).collect(),
            ..self.head(position)
        }
    }

    /// The snapshot without its pipelines, for `encode_with_head`.
    pub fn head(&self, position: u64) -> Snapshot {
        let (schedules, backfills, backfills_started) = self.schedules.to_snapshot();
        Snapshot {
            journal_position: position,
            server_token: self.server_token.clone(),
            next_lease_id: self.next_lease_id,
            incarnations: self.incarnations.to_records(),
            blocked: self.blocked,
            delayed_retries: self.delayed_retries.clone(),
            tokens: self.tokens.clone(),
            audit: self.audit.clone(),
            schedules,
            backfills,
            backfills_started,
            ..Snapshot::default()
        }
    }
}

impl Core {
    /// The whole state at `now_ms`, to be stored at journal position
    /// `position`.
    pub fn to_snapshot(&self, position: u64, now_ms: u64) -> Snapshot {
        self.snapshot_source(now_ms).to_snapshot(position)
    }

    /// A copy of what a snapshot records at `now_ms`: O(pipelines + unit
    /// chunks + delayed retries), not O(units).
    pub fn snapshot_source(&self, now_ms: u64) -> SnapshotSource {
        // The delay queue may keep entries of units no longer pending
        // (scaling drops units where they are): those are not retries.
        let delayed_retries = self
            .delayed
            .iter()
            .filter(|&&(_, pos)| self.unit(pos).state == UnitState::Pending)
            .map(|&(due_ms, pos)| DelayedRetry {
                pipeline_id: self.pipelines[pos.pipeline as usize].id.clone(),
                group: pos.group,
                unit: pos.unit,
                wait_ms: due_ms.saturating_sub(now_ms),
            })
            .collect();
        SnapshotSource {
            server_token: self.server_token.clone(),
            next_lease_id: self.next_lease_id,
            incarnations: self.incarnations.clone(),
            blocked: self.blocked,
            pipelines: self.pipelines.clone(),
            delayed_retries,
            tokens: self.tokens.to_records(),
            audit: self.audit.to_entries(),
            schedules: self.schedules.clone(),
        }
    }

    /// Rebuilds a core from a snapshot. Held leases get a full lease time
    /// from `now_ms`, as after a journal replay; retries still waiting
    /// wait what was left of their delay when the snapshot was taken, less
    /// the wall-clock time since (`unix_ms`, the wall clock at `now_ms`,
    /// which also becomes the core's anchor: [`Core::set_wall_clock`]; 0
    /// if unknown, and the delays then go on from `now_ms`).
    pub fn from_snapshot(
        config: CoreConfig,
        snap: &Snapshot,
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Core, CoreError> {
        if snap.server_token.is_empty() {
            return Err(CoreError::Corrupt("snapshot has no server token".into()));
        }
        let mut core = Core::new(config);
        core.set_wall_clock(now_ms, unix_ms);
        core.server_token = snap.server_token.clone();
        core.next_lease_id = snap.next_lease_id.max(1);
        core.incarnations = Incarnations::from_records(&snap.incarnations)
            .map_err(|e| CoreError::Corrupt(format!("snapshot: {e}")))?;
        if core.incarnations.latest_first_lease_id() > core.next_lease_id {
            return Err(CoreError::Corrupt(
                "snapshot: an incarnation starts past the next lease id".into(),
            ));
        }
        core.blocked = snap.blocked;
        core.tokens = super::tokens::Tokens::from_records(&snap.tokens)?;
        core.audit = super::audit::Audit::from_entries(&snap.audit);
        core.schedules = super::schedules::Schedules::from_snapshot(
            &snap.schedules,
            &snap.backfills,
            snap.backfills_started,
        )?;
        for sp in &snap.pipelines {
            let pipeline = pipeline_from_snapshot(sp)?;
            core.pipeline_index
                .insert(pipeline.id.clone(), core.pipelines.len() as u32);
            core.pipelines.push(pipeline);
        }
        let waited_ms = core.waited_since(snap.taken_unix_ms, now_ms);
        let delayed = core.delayed_positions(&snap.delayed_retries, waited_ms);
        core.rebuild_indices(now_ms, &delayed)?;
        Ok(core)
    }

    /// Where each delayed retry of a snapshot is, and how long it still
    /// waits, `waited_ms` having passed since the snapshot. An entry that
    /// names no pending unit is passed over rather than refused: the worst
    /// it can do is let a unit retry early, while refusing would stop a
    /// master from starting on its own snapshot.
    fn delayed_positions(&self, retries: &[DelayedRetry], waited_ms: u64) -> FxHashMap<Pos, u64> {
        let pending = |pos: Pos| {
            let groups = &self.pipelines[pos.pipeline as usize].groups;
            groups.get(pos.group as usize).is_some_and(|g| {
                g.units
                    .get(pos.unit as usize)
                    .is_some_and(|u| u.state == UnitState::Pending)
            })
        };
        retries
            .iter()
            .filter_map(|retry| {
                let &pipeline = self.pipeline_index.get(&retry.pipeline_id)?;
                let pos = Pos {
                    pipeline,
                    group: retry.group,
                    unit: retry.unit,
                };
                let wait_ms = retry.wait_ms.saturating_sub(waited_ms);
                (pending(pos) && wait_ms > 0).then_some((pos, wait_ms))
            })
            .collect()
    }

    /// Rolling back to `snapshot`: its state, except that every lease out
    /// now or then becomes invalid. Config versions move past both the
    /// snapshot's and the current ones, so no lease granted before the
    /// rollback can renew or commit; the lease counter never goes back.
    /// Returns the new core and how many leases were invalidated.
    pub fn rolled_back(&self, mut snapshot: Core, now_ms: u64) -> (Core, u64) {
        let invalidated = self.leases.len() as u64;
        snapshot.next_lease_id = snapshot.next_lease_id.max(self.next_lease_id);
        // Lease ids below ours were granted under our table (the
        // snapshot's is an older prefix of it), and new ones go on under
        // this master's incarnation.
        snapshot.incarnations = self.incarnations.clone();
        for p in 0..snapshot.pipelines.len() as u32 {
            let id = snapshot.pipelines[p as usize].id.clone();
            let current = self
                .pipeline_index
                .get(&id)
                .map(|&i| &self.pipelines[i as usize]);
            for g in 0..snapshot.pipelines[p as usize].groups.len() as u32 {
                let now_version = current.map_or(0, |c| c.groups[g as usize].config_version);
                let group = &mut snapshot.pipelines[p as usize].groups[g as usize];
                group.config_version = group.config_version.max(now_version) + 1;
                snapshot.requeue_leased(p, g);
            }
        }
        snapshot.workers = self.workers.clone();
        // Access is not state to roll back: a revoked token stays revoked,
        // and the trail keeps what happened since the snapshot.
        snapshot.tokens = self.tokens.clone();
        snapshot.audit = self.audit.clone();
        // Schedules are not rolled back: their cursors stay, so no logical
        // time that fired after the snapshot fires again (ARCHITECTURE.md).
        snapshot.schedules = self.schedules.clone();
        snapshot.promote_due(now_ms);
        (snapshot, invalidated)
    }

    /// What rolling back from this state to `after` (the core
    /// [`Core::rolled_back`] returned) undoes: pipelines submitted since the
    /// snapshot that disappear, pipelines deleted since that come back,
    /// pipelines whose state goes back or whose committed units run again,
    /// and the leases out now. Changes nothing; the caller fills in which
    /// snapshot it is. At most [`ROLLBACK_PIPELINES_SHOWN_MAX`] pipelines
    /// are listed (the counts cover them all).
    pub fn rollback_preview(&self, after: &Core) -> RollbackPreview {
        let mut preview = RollbackPreview {
            leases_invalidated: self.leases.len() as u64,
            ..RollbackPreview::default()
        };
        let (mut dropped, mut restored, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        for (p, pipeline) in self.pipelines.iter().enumerate() {
            let now = self.pipeline_status(p as u32).state();
            let Some(&a) = after.pipeline_index.get(&pipeline.id) else {
                let committed = committed_units(pipeline, None);
                preview.units_to_run_again += committed.units;
                dropped.push(PipelineRollback {
                    pipeline_id: pipeline.id.clone(),
                    name: pipeline.spec.name.clone(),
                    state_now: now as i32,
                    state_after: PipelineState::Unspecified as i32,
                    units_to_run_again: committed.units,
                    committed_files_left: committed.files,
                });
                continue;
            };
            let state_after = after.pipeline_status(a).state();
            let again = committed_units(pipeline, Some(&after.pipelines[a as usize])).units;
            preview.units_to_run_again += again;
            if state_after != now || again > 0 {
                changed.push(PipelineRollback {
                    pipeline_id: pipeline.id.clone(),
                    name: pipeline.spec.name.clone(),
                    state_now: now as i32,
                    state_after: state_after as i32,
                    units_to_run_again: again,
                    committed_files_left: 0,
                });
            }
        }
        for (a, pipeline) in after.pipelines.iter().enumerate() {
            if !self.pipeline_index.contains_key(&pipeline.id) {
                restored.push(PipelineRollback {
                    pipeline_id: pipeline.id.clone(),
                    name: pipeline.spec.name.clone(),
                    state_now: PipelineState::Unspecified as i32,
                    state_after: after.pipeline_status(a as u32).state() as i32,
                    ..PipelineRollback::default()
                });
            }
        }
        preview.pipelines_dropped = dropped.len() as u64;
        preview.pipelines_restored = restored.len() as u64;
        preview.pipelines_changed = changed.len() as u64;
        preview.pipelines = dropped
            .into_iter()
            .chain(restored)
            .chain(changed)
            .take(ROLLBACK_PIPELINES_SHOWN_MAX)
            .collect();
        preview
    }

    /// Counts, the ready and delayed queues and lease clocks, from the
    /// units; `delayed` are the pending units still waiting, and how long.
    fn rebuild_indices(
        &mut self,
        now_ms: u64,
        delayed: &FxHashMap<Pos, u64>,
    ) -> Result<(), CoreError> {
        for p in 0..self.pipelines.len() as u32 {
            for g in 0..self.pipelines[p as usize].groups.len() as u32 {
                let group = &mut self.pipelines[p as usize].groups[g as usize];
                group.counts = Counts::default();
                for unit in &group.units {
                    *group.counts.slot(&unit.state) += 1;
                }
                for u in 0..group.units.len() as u32 {
                    let pos = Pos {
                        pipeline: p,
                        group: g,
                        unit: u,
                    };
                    match self.pipelines[p as usize].groups[g as usize].units[u as usize].state {
                        UnitState::Pending => match delayed.get(&pos) {
                            Some(&wait_ms) => {
                                self.delayed.insert((now_ms.saturating_add(wait_ms), pos));
                            }
                            None => self.ready.push_back(pos, self.lane(pos.pipeline)),
                        },
                        UnitState::Leased { lease_id, .. } => {
                            if lease_id >= self.next_lease_id || self.leases.contains_key(&lease_id)
                            {
                                return Err(CoreError::Corrupt(format!(
                                    "snapshot reuses lease {lease_id}"
                                )));
                            }
                            let expiry_ms = now_ms.saturating_add(self.config.lease_ms);
                            self.leases.insert(lease_id, LeaseClock { pos, expiry_ms });
                            self.expiries.insert(expiry_ms, lease_id);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.check_invariants()
    }
}

/// Pipelines a rollback preview lists at most (its counts say the rest):
/// a reply and a confirmation a person reads.
pub const ROLLBACK_PIPELINES_SHOWN_MAX: usize = 1000;

/// Units of a pipeline and their output files.
struct CommittedUnits {
    units: u64,
    files: u64,
}

/// The units of `now` committed there but not, by the same lease, in
/// `after` (the same pipeline after a rollback; None: it is dropped), and
/// their files.
fn committed_units(now: &Pipeline, after: Option<&Pipeline>) -> CommittedUnits {
    let mut counted = CommittedUnits { units: 0, files: 0 };
    for (g, group) in now.groups.iter().enumerate() {
        for (u, unit) in group.units.iter().enumerate() {
            let UnitState::Committed { lease_id, files } = &unit.state else {
                continue;
            };
            let kept = after
                .and_then(|p| p.groups.get(g))
                .and_then(|group| group.units.get(u))
                .is_some_and(|unit| {
                    matches!(unit.state, UnitState::Committed { lease_id: l, .. } if l == *lease_id)
                });
            if !kept {
                counted.units += 1;
                counted.files += files.len() as u64;
            }
        }
    }
    counted
}

/// A pipeline's snapshot fields without its groups.
pub(super) fn pipeline_head(p: &Pipeline) -> SnapshotPipeline {
    SnapshotPipeline {
        pipeline_id: p.id.clone(),
        spec: Some(p.spec.clone()),
        submitted_unix_ms: p.submitted_unix_ms,
        grants: p.grants,
        retries: p.retries,
        cancelled: p.cancelled,
        blocked: p.blocked,
        rerun_of: p.rerun_of.clone(),
        backfill: p.backfill,
        groups: Vec::new(),
        lease_floor: p.lease_floor,
        finished_unix_ms: p.finished_unix_ms,
    }
}

fn pipeline_to_snapshot(p: &Pipeline) -> SnapshotPipeline {
    SnapshotPipeline {
        groups: p
            .groups
            .iter()
            .map(|g| SnapshotGroup {
                config_version: g.config_version,
                created: g.created,
                units: g.units.iter().map(unit_to_snapshot).collect(),
                revivable_units: revivable_units(g),
            })
            .collect(),
        ..pipeline_head(p)
    }
}

fn unit_to_snapshot(unit: &Unit) -> SnapshotUnit {
    let source = match &unit.source {
        UnitSource::Given(given) => Source::Given(given.clone()),
        UnitSource::Nothing => Source::Nothing(true),
        &UnitSource::Upstream { group, unit } => Source::Upstream(UnitAddr {
            pipeline_id: String::new(),
            group,
            unit,
        }),
        &UnitSource::Partition(r) => Source::Partition(r),
        UnitSource::Gather => Source::Gather(true),
    };
    let mut out = SnapshotUnit {
        source: Some(source),
        grants: unit.grants,
        failures: unit.failures,
        errors: unit.errors.iter().map(|e| e.text.clone()).collect(),
        error_attempts: unit.errors.iter().map(|e| e.attempt).collect(),
        error_runs: unit.errors.iter().map(AttemptError::run).collect(),
        failed_lease: unit.failed_lease,
        ..SnapshotUnit::default()
    };
    let code = match &unit.state {
        UnitState::Pending => UnitStateCode::Pending,
        UnitState::Leased {
            lease_id,
            worker_id,
            granted_unix_ms,
        } => {
            out.lease_id = *lease_id;
            out.worker_id = worker_id.clone();
            out.granted_unix_ms = *granted_unix_ms;
            UnitStateCode::Leased
        }
        UnitState::Committed { lease_id, files } => {
            out.lease_id = *lease_id;
            out.files = files.clone();
            UnitStateCode::Committed
        }
        UnitState::Failed => UnitStateCode::Failed,
        UnitState::Dropped => UnitStateCode::Dropped,
    };
    out.state = code as i32;
    out
}

/// A group's revivable units, in unit order (so equal states encode alike).
pub(super) fn revivable_units(g: &Group) -> Vec<u32> {
    let mut units: Vec<u32> = g.revivable.values().copied().collect();
    units.sort_unstable();
    units
}

/// The revivable units of a snapshot's group, keyed by their sources:
/// each must be a dropped unit derived from an upstream unit.
fn revivable_from_snapshot(
    pipeline_id: &str,
    sg: &SnapshotGroup,
    units: &Units,
) -> Result<FxHashMap<(u32, u32), u32>, CoreError> {
    let mut revivable = FxHashMap::default();
    for &u in &sg.revivable_units {
        match units.get(u as usize) {
            Some(&Unit {
                source: UnitSource::Upstream { group, unit },
                state: UnitState::Dropped,
                ..
            }) => {
                revivable.insert((group, unit), u);
            }
            _ => {
                return Err(CoreError::Corrupt(format!(
                    "snapshot pipeline {pipeline_id}: revivable unit {u} is not a dropped unit \
                     derived from an upstream unit"
                )));
            }
        }
    }
    Ok(revivable)
}

fn pipeline_from_snapshot(sp: &SnapshotPipeline) -> Result<Pipeline, CoreError> {
    let spec = sp.spec.clone().unwrap_or_default();
    let wiring = spec::validate(&spec)
        .map_err(|e| CoreError::Corrupt(format!("snapshot pipeline {}: {e}", sp.pipeline_id)))?;
    if sp.groups.len() != wiring.len() {
        return Err(CoreError::Corrupt(format!(
            "snapshot pipeline {} has the wrong number of groups",
            sp.pipeline_id
        )));
    }
    let topo_order = spec::topo_order(&wiring);
    let mut groups = Vec::with_capacity(wiring.len());
    for (w, sg) in wiring.into_iter().zip(&sp.groups) {
        let units = sg
            .units
            .iter()
            .map(|u| unit_from_snapshot(u, &w.upstream))
            .collect::<Result<_, _>>()?;
        let revivable = revivable_from_snapshot(&sp.pipeline_id, sg, &units)?;
        groups.push(Group {
            wiring: w,
            config_version: sg.config_version,
            units,
            counts: Counts::default(),
            created: sg.created,
            revivable,
        });
    }
    let group_index: FxHashMap<String, u32> = spec
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.clone(), i as u32))
        .collect();
    Ok(Pipeline {
        id: sp.pipeline_id.clone(),
        spec,
        groups,
        group_index,
        submitted_unix_ms: sp.submitted_unix_ms,
        grants: sp.grants,
        retries: sp.retries,
        topo_order,
        cancelled: sp.cancelled,
        blocked: sp.blocked,
        rerun_of: sp.rerun_of.clone(),
        backfill: sp.backfill,
        lease_floor: sp.lease_floor,
        finished_unix_ms: sp.finished_unix_ms,
    })
}

/// A snapshot unit's errors with their attempt numbers, workers and
/// durations; not known (0, empty, None) for those of a snapshot written
/// before they were kept.
fn attempt_errors(su: &SnapshotUnit) -> Vec<AttemptError> {
    su.errors
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let run = su.error_runs.get(i);
            AttemptError {
                attempt: su.error_attempts.get(i).copied().unwrap_or(0),
                text: text.clone(),
                worker_id: run.map(|r| r.worker_id.clone()).unwrap_or_default(),
                duration_ms: run.and_then(|r| r.duration_ms),
            }
        })
        .collect()
}

fn unit_from_snapshot(su: &SnapshotUnit, upstream: &[u32]) -> Result<Unit, CoreError> {
    let corrupt = |what: &str| CoreError::Corrupt(format!("snapshot unit: {what}"));
    let source = match su.source.as_ref().ok_or_else(|| corrupt("no source"))? {
        Source::Given(given) => UnitSource::Given(given.clone()),
        Source::Nothing(_) => UnitSource::Nothing,
        Source::Upstream(addr) if upstream.contains(&addr.group) => UnitSource::Upstream {
            group: addr.group,
            unit: addr.unit,
        },
        Source::Upstream(_) => return Err(corrupt("fed by a group that is not upstream")),
        Source::Partition(r) => UnitSource::Partition(*r),
        Source::Gather(_) => UnitSource::Gather,
    };
    let state = match UnitStateCode::try_from(su.state).map_err(|_| corrupt("unknown state"))? {
        UnitStateCode::Pending => UnitState::Pending,
        UnitStateCode::Leased => UnitState::Leased {
            lease_id: su.lease_id,
            worker_id: su.worker_id.clone(),
            granted_unix_ms: su.granted_unix_ms,
        },
        UnitStateCode::Committed => UnitState::Committed {
            lease_id: su.lease_id,
            files: su.files.clone(),
        },
        UnitStateCode::Failed => UnitState::Failed,
        UnitStateCode::Dropped => UnitState::Dropped,
    };
    Ok(Unit {
        source,
        state,
        grants: su.grants,
        failures: su.failures,
        errors: attempt_errors(su),
        failed_lease: su.failed_lease,
    })
}
