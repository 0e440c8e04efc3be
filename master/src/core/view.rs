//! Read-only views of the state for clients: status and committed outputs.

use taskmaster_proto::v1::{
    FailedUnit, GroupStatus, PipelineState, PipelineStatus, UnitCounts, UnitOutputs,
};

use std::collections::HashMap;

use taskmaster_proto::v1::{LeaseRef, UnitRef, WorkerInfo};

use super::limits::{LEASE_WAIT_MS_MAX, WORKERS_REMEMBERED_MAX};
use super::model::{AttemptError, Pipeline, Pos, UnitState};
use super::{Core, CoreError, WorkerSeen};

/// Failed units listed in a status reply at most (the counts say the rest).
const FAILED_UNITS_SHOWN_MAX: usize = 100;
/// Input paths listed per failed unit at most (`inputs_total` counts all).
const FAILED_UNIT_INPUTS_SHOWN_MAX: usize = 5;
/// Upstream units a failed unit's inputs are listed and counted over at
/// most: a status call looks at them for up to [`FAILED_UNITS_SHOWN_MAX`]
/// units while it holds the state.
const FAILED_UNIT_INPUTS_COUNTED_UNITS_MAX: usize = 10_000;
/// Leases listed per worker at most (`leases_held` counts them all).
const WORKER_LEASES_SHOWN_MAX: usize = 100;
/// Added to the silence a live worker may keep: a call's time on the
/// wire and in the journal, a retry after a transient error.
const WORKER_CALL_SLACK_MS: u64 = 5_000;
/// A worker is listed this long after its last call (or while it holds
/// leases), as not alive once past its liveness window, so that a killed
/// worker is seen dead before it is forgotten.
const WORKER_LISTED_MS: u64 = 10 * 60_000;

impl Core {
    /// The state a finished pipeline ended in ("succeeded", "failed",
    /// "been cancelled"), or None while it can still make progress.
    pub(super) fn finished_state(&self, p: u32) -> Option<&'static str> {
        let pipeline = &self.pipelines[p as usize];
        match pipeline_state(pipeline, &groups_complete(pipeline)) {
            PipelineState::Succeeded => Some("succeeded"),
            PipelineState::Failed => Some("failed"),
            PipelineState::Cancelled => Some("been cancelled"),
            _ => None,
        }
    }

    /// How long a worker may go without a call and still count as alive.
    /// A worker renews its leases three times a lease time, and asks for
    /// work as soon as a slot frees: silent for a lease time, it has lost
    /// its leases. One `waiting` (its last lease call got fewer units than
    /// it asked for) may be in a lease call that waits for work up to
    /// [`LEASE_WAIT_MS_MAX`] without a word.
    pub fn worker_live_ms(&self, waiting: bool) -> u64 {
        let lease_ms = self.config.lease_ms;
        let silent_ms = if waiting {
            lease_ms.max(LEASE_WAIT_MS_MAX.into())
        } else {
            lease_ms
        };
        silent_ms.saturating_add(WORKER_CALL_SLACK_MS)
    }

    /// Workers seen lately (in lease, commit and renewal calls), with the
    /// leases each holds now and whether each is alive (see
    /// [`Core::worker_live_ms`]). One that is not is listed for
    /// [`WORKER_LISTED_MS`] after its last call, or while it holds leases.
    pub fn workers(&self, now_ms: u64) -> Vec<WorkerInfo> {
        let mut held: HashMap<&str, Vec<LeaseRef>> = HashMap::new();
        for (lease_id, clock) in &self.leases {
            let pos = clock.pos;
            if let UnitState::Leased { worker_id, .. } = &self.unit(pos).state {
                let pipeline = &self.pipelines[pos.pipeline as usize];
                let unit = UnitRef {
                    pipeline_id: pipeline.id.clone(),
                    group: pipeline.spec.groups[pos.group as usize].name.clone(),
                    unit: pos.unit,
                };
                let config_version = pipeline.groups[pos.group as usize].config_version;
                held.entry(worker_id).or_default().push(LeaseRef {
                    unit: Some(unit),
                    lease_id: *lease_id,
                    config_version,
                    incarnation: self.incarnations.of(*lease_id),
                });
            }
        }
        let mut out = Vec::new();
        for (id, seen) in &self.workers {
            let leases = held.remove(id.as_str());
            let silent_ms = now_ms.saturating_sub(seen.last_seen_ms);
            if leases.is_none() && silent_ms > WORKER_LISTED_MS {
                continue;
            }
            let mut leases = leases.unwrap_or_default();
            leases.sort_by_key(|l| l.lease_id);
            let leases_held = leases.len() as u64;
            leases.truncate(WORKER_LEASES_SHOWN_MAX);
            out.push(WorkerInfo {
                worker_id: id.clone(),
                slots: seen.slots,
                leases,
                last_seen_ms_ago: silent_ms,
                leases_held,
                worker_slots: seen.worker_slots,
                alive: silent_ms <= self.worker_live_ms(seen.waiting),
            });
        }
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }

    /// Remembers a worker's lease call (or a commit's `lease_next`): it
    /// asked for `slots` units and got `granted`, of `worker_slots` it
    /// runs at once (0: not said; what an earlier call said stays).
    /// Forgets the least recently seen worker when too many are
    /// remembered.
    pub(super) fn note_worker(
        &mut self,
        worker_id: &str,
        slots: u32,
        granted: usize,
        worker_slots: u32,
        now_ms: u64,
    ) {
        let waiting = granted < slots as usize;
        // A known worker (nearly every call): one lookup, no new key.
        if let Some(known) = self.workers.get_mut(worker_id) {
            known.slots = slots;
            if worker_slots > 0 {
                known.worker_slots = worker_slots;
            }
            known.last_seen_ms = now_ms;
            known.waiting = waiting;
            return;
        }
        let seen = WorkerSeen {
            slots,
            worker_slots,
            last_seen_ms: now_ms,
            waiting,
        };
        if self.workers.len() >= WORKERS_REMEMBERED_MAX {
            let oldest = self
                .workers
                .iter()
                .min_by_key(|(_, seen)| seen.last_seen_ms)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.workers.remove(&oldest);
            }
        }
        self.workers.insert(worker_id.to_string(), seen);
    }

    /// Whether the output of attempt `lease_id` of `incarnation` on a unit
    /// may still be needed: it committed the unit, or still holds the
    /// unit's lease (it may yet commit). Anything else can never become
    /// visible. An attempt of an incarnation that did not grant that lease
    /// id here was written under another master on a copy of this data dir:
    /// not this master's to judge, so it is kept.
    pub fn attempt_may_matter(
        &self,
        pipeline_id: &str,
        group: &str,
        unit: u32,
        lease_id: u64,
        incarnation: u64,
    ) -> bool {
        if self.incarnations.of(lease_id) != incarnation {
            return true;
        }
        let Some(&p) = self.pipeline_index.get(pipeline_id) else {
            return true;
        };
        let pipeline = &self.pipelines[p as usize];
        if lease_id < pipeline.lease_floor {
            return true; // a deleted pipeline's that had the same id
        }
        let Some(&g) = pipeline.group_index.get(group) else {
            return true;
        };
        let Some(unit) = pipeline.groups[g as usize].units.get(unit as usize) else {
            return lease_id >= self.next_lease_id; // not created yet: cannot be an old lease
        };
        match &unit.state {
            UnitState::Leased { lease_id: held, .. }
            | UnitState::Committed { lease_id: held, .. } => *held == lease_id,
            _ => lease_id >= self.next_lease_id,
        }
    }

    /// The group names of each pipeline `chosen` accepts: where the sweep
    /// may look.
    pub fn group_names(
        &self,
        chosen: impl Fn(&str) -> bool,
    ) -> HashMap<String, std::collections::HashSet<String>> {
        self.pipelines
            .iter()
            .filter(|p| chosen(&p.id))
            .map(|p| (p.id.clone(), p.group_index.keys().cloned().collect()))
            .collect()
    }

    pub fn leases_in_flight(&self) -> u64 {
        self.leases.len() as u64
    }

    /// Notes that a worker called (a renewal of a lease it holds), without
    /// changing what its lease calls said.
    pub(super) fn note_worker_seen(&mut self, worker_id: &str, now_ms: u64) {
        match self.workers.get_mut(worker_id) {
            Some(known) => known.last_seen_ms = now_ms,
            // Not known: this master started after its last lease call.
            None => self.note_worker(worker_id, 0, 0, 0, now_ms),
        }
    }

    pub fn status(&self, pipeline_id: &str) -> Result<PipelineStatus, CoreError> {
        let &index = self.pipeline_index.get(pipeline_id).ok_or_else(|| {
            CoreError::NotFound(format!("no pipeline {}", super::names::shown(pipeline_id)))
        })?;
        let mut status = self.pipeline_status(index);
        // Only here, not in lists: who changed it lately (issue 24).
        let p = &self.pipelines[index as usize];
        status.audit = self.audit.of_pipeline(&p.id, p.submitted_unix_ms);
        Ok(status)
    }

    /// Every pipeline in submission order.
    pub fn list(&self) -> Vec<PipelineStatus> {
        (0..self.pipelines.len() as u32)
            .map(|p| self.pipeline_status(p))
            .collect()
    }

    /// The committed outputs of one group, in unit order.
    pub fn outputs(&self, pipeline_id: &str, group: &str) -> Result<Vec<UnitOutputs>, CoreError> {
        let &pipeline = self.pipeline_index.get(pipeline_id).ok_or_else(|| {
            CoreError::NotFound(format!("no pipeline {}", super::names::shown(pipeline_id)))
        })?;
        let p = &self.pipelines[pipeline as usize];
        let &g = p.group_index.get(group).ok_or_else(|| {
            CoreError::NotFound(format!(
                "pipeline {pipeline_id} has no group {}",
                super::names::shown(group)
            ))
        })?;
        let units = &p.groups[g as usize].units;
        let mut out = Vec::new();
        for (u, unit) in units.iter().enumerate() {
            if let UnitState::Committed { lease_id, .. } = unit.state {
                let pos = Pos {
                    pipeline,
                    group: g,
                    unit: u as u32,
                };
                out.push(UnitOutputs {
                    unit: u as u32,
                    lease_id,
                    incarnation: self.incarnations.of(lease_id),
                    paths: self.committed_paths(pos, None),
                });
            }
        }
        Ok(out)
    }
}

impl Core {
    /// The status of the pipeline at index `pipeline`.
    pub(super) fn pipeline_status(&self, pipeline: u32) -> PipelineStatus {
        let p = &self.pipelines[pipeline as usize];
        PipelineStatus {
            failed_units: self.failed_units_shown(pipeline),
            ..pipeline_progress(p)
        }
    }

    /// The first [`FAILED_UNITS_SHOWN_MAX`] failed units of a pipeline:
    /// attempts, errors by attempt, and what each read.
    fn failed_units_shown(&self, pipeline: u32) -> Vec<FailedUnit> {
        let p = &self.pipelines[pipeline as usize];
        let mut out = Vec::new();
        for (g, (group, spec)) in p.groups.iter().zip(&p.spec.groups).enumerate() {
            if group.counts.failed == 0 {
                continue;
            }
            for (u, unit) in group.units.iter().enumerate() {
                if out.len() == FAILED_UNITS_SHOWN_MAX {
                    return out;
                }
                if unit.state != UnitState::Failed {
                    continue;
                }
                let pos = Pos {
                    pipeline,
                    group: g as u32,
                    unit: u as u32,
                };
                let (inputs, input_slices, inputs_total) = self.inputs_shown(
                    pos,
                    FAILED_UNIT_INPUTS_SHOWN_MAX,
                    FAILED_UNIT_INPUTS_COUNTED_UNITS_MAX,
                );
                out.push(FailedUnit {
                    group: spec.name.clone(),
                    unit: u as u32,
                    attempts: unit.grants,
                    errors: unit.errors.iter().map(|e| e.text.clone()).collect(),
                    error_attempts: unit.errors.iter().map(|e| e.attempt).collect(),
                    error_runs: unit.errors.iter().map(AttemptError::run).collect(),
                    inputs,
                    input_slices,
                    inputs_total,
                });
            }
        }
        out
    }
}

/// A pipeline's status without its failed units (see
/// [`Core::pipeline_status`]).
fn pipeline_progress(p: &Pipeline) -> PipelineStatus {
    let complete = groups_complete(p);
    let groups = p
        .groups
        .iter()
        .zip(&p.spec.groups)
        .zip(&complete)
        .map(|((group, spec), &complete)| GroupStatus {
            name: spec.name.clone(),
            config_version: group.config_version,
            counts: Some(UnitCounts {
                pending: group.counts.pending,
                leased: group.counts.leased,
                committed: group.counts.committed,
                failed: group.counts.failed,
            }),
            complete,
        })
        .collect();
    PipelineStatus {
        pipeline_id: p.id.clone(),
        name: p.spec.name.clone(),
        state: pipeline_state(p, &complete) as i32,
        params: p.spec.params.clone(),
        groups,
        failed_units: Vec::new(),
        retries: p.retries,
        blocked: p.blocked,
        rerun_of: p.rerun_of.clone(),
        finished_unix_ms: p.finished_unix_ms,
        audit: Vec::new(),
    }
}

fn groups_complete(p: &Pipeline) -> Vec<bool> {
    (0..p.groups.len() as u32)
        .map(|g| super::group_complete(p, g))
        .collect()
}

fn pipeline_state(p: &Pipeline, complete: &[bool]) -> PipelineState {
    if p.cancelled {
        return PipelineState::Cancelled;
    }
    if complete.iter().all(|&c| c) {
        return PipelineState::Succeeded;
    }
    let active: u64 = p
        .groups
        .iter()
        .map(|g| g.counts.pending + g.counts.leased)
        .sum();
    let failed: u64 = p.groups.iter().map(|g| g.counts.failed).sum();
    if failed > 0 && active == 0 {
        PipelineState::Failed
    } else if p.grants == 0 {
        PipelineState::Pending
    } else {
        PipelineState::Running
    }
}
