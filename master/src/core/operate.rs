//! Operator actions: cancel, block, retry, clear, config changes, scaling.
//! Each `decide` method checks the request against the state and returns
//! the record to journal (applied already); each `apply_*` method is the
//! record's effect, shared by live operation and journal replay.

use taskmaster_proto::journal::{self, Record, record::Kind};
use taskmaster_proto::v1::{GroupConfigChange, InputSlice, InputUnit};

use super::model::{Pipeline, Pos, UnitSource, UnitState};
use super::names::shown;
use super::spec::{self, Feed};
use super::{Core, CoreError, record};

/// What an operator action changed, for the reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// Units made pending again (reset, retried, requeued).
    pub units_reset: u64,
    /// Units replaced by tombstones (cleared downstream, split).
    pub units_dropped: u64,
    /// Units added (split).
    pub units_added: u64,
}

impl Core {
    pub fn cancel(&mut self, pipeline_id: &str, now_ms: u64) -> Result<Vec<Record>, CoreError> {
        let p = self.pipeline_named(pipeline_id)?;
        if let Some(state) = self.finished_state(p) {
            return Err(CoreError::FailedPrecondition(format!(
                "pipeline {pipeline_id} has already {state}; nothing to cancel"
            )));
        }
        let rec = record(Kind::PipelineCancelled(journal::PipelineCancelled {
            pipeline_id: pipeline_id.to_string(),
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    pub(super) fn apply_cancelled(
        &mut self,
        c: &journal::PipelineCancelled,
    ) -> Result<(), CoreError> {
        let p = self.pipeline_for_record(&c.pipeline_id)?;
        self.pipelines[p as usize].cancelled = true;
        for g in 0..self.pipelines[p as usize].groups.len() as u32 {
            self.requeue_leased(p, g);
        }
        Ok(())
    }

    /// Blocks or unblocks leasing for one pipeline or (empty id) everywhere.
    pub fn block(
        &mut self,
        pipeline_id: &str,
        blocked: bool,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        let (current, what) = if pipeline_id.is_empty() {
            (self.blocked, "the master".to_string())
        } else {
            let p = self.pipeline_named(pipeline_id)?;
            (
                self.pipelines[p as usize].blocked,
                format!("pipeline {pipeline_id}"),
            )
        };
        if current == blocked {
            let state = if blocked {
                "already blocked"
            } else {
                "not blocked"
            };
            return Err(CoreError::FailedPrecondition(format!("{what} is {state}")));
        }
        let rec = record(Kind::BlockSet(journal::BlockSet {
            pipeline_id: pipeline_id.to_string(),
            blocked,
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    pub(super) fn apply_block(&mut self, b: &journal::BlockSet) -> Result<(), CoreError> {
        if b.pipeline_id.is_empty() {
            self.blocked = b.blocked;
        } else {
            let p = self.pipeline_for_record(&b.pipeline_id)?;
            self.pipelines[p as usize].blocked = b.blocked;
        }
        Ok(())
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Gives failed units (of a pipeline, a group, or one unit) fresh
    /// attempts with the same inputs.
    pub fn retry(
        &mut self,
        pipeline_id: &str,
        group: Option<&str>,
        unit: Option<u32>,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Changed), CoreError> {
        let p = self.pipeline_named(pipeline_id)?;
        self.refuse_if_cancelled(p)?;
        let group = group.map(|name| self.group_named(p, name)).transpose()?;
        if unit.is_some() && group.is_none() {
            return Err(CoreError::Invalid("a unit to retry needs its group".into()));
        }
        let rec = journal::UnitsRetried {
            pipeline_id: pipeline_id.to_string(),
            group,
            unit,
        };
        let failed = self.failed_units(p, &rec).len() as u64;
        if failed == 0 {
            return Err(CoreError::FailedPrecondition(format!(
                "pipeline {pipeline_id} has no failed unit there to retry"
            )));
        }
        let rec = record(Kind::UnitsRetried(rec));
        self.apply_checked(&rec, now_ms);
        Ok((
            vec![rec],
            Changed {
                units_reset: failed,
                ..Changed::default()
            },
        ))
    }

    pub(super) fn apply_retried(&mut self, r: &journal::UnitsRetried) -> Result<(), CoreError> {
        let p = self.pipeline_for_record(&r.pipeline_id)?;
        for pos in self.failed_units(p, r) {
            let unit = self.unit_mut(pos);
            unit.failures = 0;
            self.set_state(pos, UnitState::Pending);
            self.ready.push_back(pos, self.lane(pos.pipeline));
        }
        Ok(())
    }

    fn failed_units(&self, p: u32, r: &journal::UnitsRetried) -> Vec<Pos> {
        let pipeline = &self.pipelines[p as usize];
        let mut out = Vec::new();
        for (g, group) in pipeline.groups.iter().enumerate() {
            if r.group.is_some_and(|want| want != g as u32) {
                continue;
            }
            for (u, unit) in group.units.iter().enumerate() {
                if unit.state == UnitState::Failed && r.unit.is_none_or(|want| want == u as u32) {
                    out.push(Pos {
                        pipeline: p,
                        group: g as u32,
                        unit: u as u32,
                    });
                }
            }
        }
        out
    }

    /// Resets a group to run again; with `downstream`, also every group
    /// that depends on it (their units derived from the reset outputs are
    /// dropped and re-derived as the group commits again).
    pub fn clear(
        &mut self,
        pipeline_id: &str,
        group: &str,
        downstream: bool,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Changed), CoreError> {
        let p = self.pipeline_named(pipeline_id)?;
        self.refuse_if_cancelled(p)?;
        let g = self.group_named(p, group)?;
        let pipeline = &self.pipelines[p as usize];
        let fed = pipeline.groups[g as usize]
            .wiring
            .downstream
            .iter()
            .find(|&&d| {
                let counts = pipeline.groups[d as usize].counts;
                counts.total() > 0
            });
        if let (Some(&d), false) = (fed, downstream) {
            return Err(CoreError::FailedPrecondition(format!(
                "group {:?} already feeds units of {:?}; clear with downstream to reset those too",
                group, pipeline.spec.groups[d as usize].name
            )));
        }
        let before = self.pipelines[p as usize].clone();
        let rec = record(Kind::GroupCleared(journal::GroupCleared {
            pipeline_id: pipeline_id.to_string(),
            group: g,
            downstream,
            keep_unit_numbers: true,
            revive_per_unit: true,
        }));
        self.apply_checked(&rec, now_ms);
        let changed = changes(&before, &self.pipelines[p as usize]);
        Ok((vec![rec], changed))
    }

    pub(super) fn apply_cleared(&mut self, c: &journal::GroupCleared) -> Result<(), CoreError> {
        let p = self.pipeline_for_record(&c.pipeline_id)?;
        let g = self.group_index_checked(p, c.group)?;
        self.requeue_leased(p, g);
        // Its units run again now, not when a retry delay would be over.
        self.delayed
            .retain(|&(_, pos)| (pos.pipeline, pos.group) != (p, g));
        // Reset every live unit of the group itself.
        for u in 0..self.pipelines[p as usize].groups[g as usize].units.len() as u32 {
            let pos = Pos {
                pipeline: p,
                group: g,
                unit: u,
            };
            if self.unit(pos).state != UnitState::Dropped {
                let unit = self.unit_mut(pos);
                unit.failures = 0;
                self.set_state(pos, UnitState::Pending);
                self.ready.push_back(pos, self.lane(pos.pipeline));
            }
        }
        if c.downstream {
            self.drop_derived(p, g, c.keep_unit_numbers, c.revive_per_unit);
        }
        Ok(())
    }

    /// Drops the units of every group downstream of `from` that were
    /// derived from its outputs (or from units dropped on the way). With
    /// `keep_unit_numbers`, a barrier group's units (all derived from the
    /// whole of its upstream) are removed rather than left as tombstones,
    /// so that when the barrier opens again they are made under the same
    /// numbers: a gather stays unit 0, partition r stays unit r. With
    /// `revive_per_unit`, a per-unit group's dropped units are noted as
    /// revivable, so each runs again under its number when its upstream
    /// unit commits again.
    fn drop_derived(&mut self, p: u32, from: u32, keep_unit_numbers: bool, revive_per_unit: bool) {
        let order = self.pipelines[p as usize].topo_order.clone();
        let mut affected = vec![from];
        for d in order {
            let group = &self.pipelines[p as usize].groups[d as usize];
            if !group.wiring.upstream.iter().any(|up| affected.contains(up)) {
                continue;
            }
            let barrier = group.wiring.feed.is_barrier();
            let revive = revive_per_unit && group.wiring.feed == Feed::PerUnit;
            let units = group.units.len() as u32;
            affected.push(d);
            self.requeue_leased(p, d);
            for u in 0..units {
                let pos = Pos {
                    pipeline: p,
                    group: d,
                    unit: u,
                };
                let derived = match self.unit(pos).source {
                    UnitSource::Upstream {
                        group: up,
                        unit: uu,
                    } => {
                        // A unit of a barrier group removed above is gone.
                        up == from
                            || self.pipelines[p as usize].groups[up as usize]
                                .units
                                .get(uu as usize)
                                .is_none_or(|u| u.state == UnitState::Dropped)
                    }
                    _ => barrier,
                };
                if derived && self.unit(pos).state != UnitState::Dropped {
                    self.set_state(pos, UnitState::Dropped);
                    if let (true, &UnitSource::Upstream { group, unit }) =
                        (revive, &self.unit(pos).source)
                    {
                        self.pipelines[p as usize].groups[d as usize]
                            .revivable
                            .insert((group, unit), u);
                    }
                }
            }
            if barrier {
                self.pipelines[p as usize].groups[d as usize].created = false;
                if keep_unit_numbers {
                    self.remove_units(p, d);
                }
            }
        }
    }

    /// Removes every unit of group `g` (all dropped already, none leased):
    /// the barrier makes them again from unit 0. Its queued positions go
    /// too, so none names a unit made later in its place.
    fn remove_units(&mut self, p: u32, g: u32) {
        self.ready.retain(|pos| (pos.pipeline, pos.group) != (p, g));
        self.delayed
            .retain(|&(_, pos)| (pos.pipeline, pos.group) != (p, g));
        let group = &mut self.pipelines[p as usize].groups[g as usize];
        debug_assert!(group.units.iter().all(|u| u.state == UnitState::Dropped));
        group.counts.dropped = 0;
        group.units = Default::default();
    }

    /// Applies a config change to a group and bumps its config version:
    /// leases under the old version can no longer renew or commit, so their
    /// units go back to pending to run under the new config.
    pub fn change_config(
        &mut self,
        pipeline_id: &str,
        group: &str,
        change: GroupConfigChange,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Changed, u64), CoreError> {
        let p = self.pipeline_named(pipeline_id)?;
        self.refuse_if_cancelled(p)?;
        let g = self.group_named(p, group)?;
        let mut spec = self.pipelines[p as usize].spec.clone();
        apply_change(&mut spec.groups[g as usize], &change);
        spec::validate(&spec).map_err(CoreError::Invalid)?;
        let requeued = self.pipelines[p as usize].groups[g as usize].counts.leased;
        let rec = record(Kind::ConfigChanged(journal::ConfigChanged {
            pipeline_id: pipeline_id.to_string(),
            group: g,
            change: Some(change),
        }));
        self.apply_checked(&rec, now_ms);
        let version = self.pipelines[p as usize].groups[g as usize].config_version;
        Ok((
            vec![rec],
            Changed {
                units_reset: requeued,
                ..Changed::default()
            },
            version,
        ))
    }

    pub(super) fn apply_config(&mut self, c: &journal::ConfigChanged) -> Result<(), CoreError> {
        let p = self.pipeline_for_record(&c.pipeline_id)?;
        let g = self.group_index_checked(p, c.group)?;
        let pipeline = &mut self.pipelines[p as usize];
        let mut spec = pipeline.spec.clone();
        apply_change(
            &mut spec.groups[g as usize],
            c.change.as_ref().unwrap_or(&GroupConfigChange::default()),
        );
        let wiring = spec::validate(&spec).map_err(CoreError::Corrupt)?;
        pipeline.groups[g as usize].wiring.max_attempts = wiring[g as usize].max_attempts;
        pipeline.groups[g as usize].config_version += 1;
        pipeline.spec = spec;
        self.requeue_leased(p, g);
        Ok(())
    }

    /// Splits each pending unit of a first group into up to `split` units
    /// (its files spread over them, or a single byte range cut).
    pub fn scale(
        &mut self,
        pipeline_id: &str,
        group: &str,
        split: u32,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Changed), CoreError> {
        if !(2..=1000).contains(&split) {
            return Err(CoreError::Invalid("split must be 2 to 1000".into()));
        }
        let p = self.pipeline_named(pipeline_id)?;
        self.refuse_if_cancelled(p)?;
        let g = self.group_named(p, group)?;
        let splittable = self.pipelines[p as usize].groups[g as usize]
            .units
            .iter()
            .filter(|u| u.state == UnitState::Pending && split_inputs(&u.source, split).is_some())
            .count();
        if splittable == 0 {
            return Err(CoreError::FailedPrecondition(format!(
                "group {group:?} has no pending unit whose inputs can be split (only units with \
                 several input files or a byte range can)"
            )));
        }
        let before = self.pipelines[p as usize].clone();
        let rec = record(Kind::GroupScaled(journal::GroupScaled {
            pipeline_id: pipeline_id.to_string(),
            group: g,
            split,
        }));
        self.apply_checked(&rec, now_ms);
        Ok((vec![rec], changes(&before, &self.pipelines[p as usize])))
    }

    pub(super) fn apply_scaled(&mut self, s: &journal::GroupScaled) -> Result<(), CoreError> {
        let p = self.pipeline_for_record(&s.pipeline_id)?;
        let g = self.group_index_checked(p, s.group)?;
        for u in 0..self.pipelines[p as usize].groups[g as usize].units.len() as u32 {
            let pos = Pos {
                pipeline: p,
                group: g,
                unit: u,
            };
            if self.unit(pos).state != UnitState::Pending {
                continue;
            }
            let Some(parts) = split_inputs(&self.unit(pos).source, s.split) else {
                continue;
            };
            self.set_state(pos, UnitState::Dropped);
            for part in parts {
                self.add_unit(p, g, UnitSource::Given(part));
            }
        }
        Ok(())
    }

    /// Returns every leased unit of a group to pending, dropping its lease
    /// (not an attempt: the unit did nothing wrong).
    pub(super) fn requeue_leased(&mut self, p: u32, g: u32) {
        for u in 0..self.pipelines[p as usize].groups[g as usize].units.len() as u32 {
            let pos = Pos {
                pipeline: p,
                group: g,
                unit: u,
            };
            if let UnitState::Leased { lease_id, .. } = self.unit(pos).state {
                if let Some(clock) = self.leases.remove(&lease_id) {
                    self.expiries.remove(clock.expiry_ms);
                }
                self.set_state(pos, UnitState::Pending);
                self.ready.push_back(pos, self.lane(pos.pipeline));
            }
        }
    }

    fn refuse_if_cancelled(&self, p: u32) -> Result<(), CoreError> {
        let pipeline = &self.pipelines[p as usize];
        if pipeline.cancelled {
            return Err(CoreError::FailedPrecondition(format!(
                "pipeline {} was cancelled",
                pipeline.id
            )));
        }
        Ok(())
    }

    pub(super) fn pipeline_named(&self, pipeline_id: &str) -> Result<u32, CoreError> {
        self.pipeline_index
            .get(pipeline_id)
            .copied()
            .ok_or_else(|| CoreError::NotFound(format!("no pipeline {}", shown(pipeline_id))))
    }

    fn group_named(&self, p: u32, group: &str) -> Result<u32, CoreError> {
        let pipeline = &self.pipelines[p as usize];
        pipeline.group_index.get(group).copied().ok_or_else(|| {
            CoreError::NotFound(format!(
                "pipeline {} has no group {}",
                pipeline.id,
                shown(group)
            ))
        })
    }

    pub(super) fn pipeline_for_record(&self, pipeline_id: &str) -> Result<u32, CoreError> {
        self.pipeline_index
            .get(pipeline_id)
            .copied()
            .ok_or_else(|| CoreError::Corrupt(format!("no pipeline {pipeline_id}")))
    }

    fn group_index_checked(&self, p: u32, g: u32) -> Result<u32, CoreError> {
        if (g as usize) < self.pipelines[p as usize].groups.len() {
            Ok(g)
        } else {
            Err(CoreError::Corrupt(format!("no group {g}")))
        }
    }
}

/// Unit counts before and after an action, as what it changed.
fn changes(before: &Pipeline, after: &Pipeline) -> Changed {
    let mut changed = Changed::default();
    for (b, a) in before.groups.iter().zip(&after.groups) {
        // Live before, and now a tombstone or removed (a barrier's units
        // on a clear: `drop_derived`).
        let dropped = b.units.iter().enumerate().filter(|(u, x)| {
            x.state != UnitState::Dropped
                && a.units
                    .get(*u)
                    .is_none_or(|y| y.state == UnitState::Dropped)
        });
        changed.units_dropped += dropped.count() as u64;
        changed.units_added += a.units.len().saturating_sub(b.units.len()) as u64;
        let reset = b
            .units
            .iter()
            .zip(&a.units)
            .filter(|(x, y)| x.state != UnitState::Pending && y.state == UnitState::Pending);
        changed.units_reset += reset.count() as u64;
    }
    changed
}

/// Applies the set fields of `change` to a group's spec.
fn apply_change(group: &mut taskmaster_proto::v1::GroupSpec, change: &GroupConfigChange) {
    if change.set_command {
        group.command = change.command.clone();
    }
    for (key, value) in &change.env {
        if value.is_empty() {
            group.env.remove(key);
        } else {
            group.env.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in &change.config {
        if value.is_empty() {
            group.config.remove(key);
        } else {
            group.config.insert(key.clone(), value.clone());
        }
    }
    if let Some(max_attempts) = change.max_attempts {
        group.max_attempts = max_attempts;
    }
    if let Some(delay) = change.retry_delay_ms {
        group.retry_delay_ms = Some(delay);
    }
    if let Some(limit) = change.max_in_flight {
        group.max_in_flight = limit;
    }
}

/// Up to `split` smaller input sets covering a unit's inputs exactly, or
/// None when they cannot be split (one whole file, or too few bytes).
fn split_inputs(source: &UnitSource, split: u32) -> Option<Vec<InputUnit>> {
    let UnitSource::Given(given) = source else {
        return None;
    };
    let items = given.files.len() + given.slices.len();
    if items >= 2 {
        let parts = items.min(split as usize);
        let mut out = vec![InputUnit::default(); parts];
        for (i, file) in given.files.iter().enumerate() {
            out[i % parts].files.push(file.clone());
        }
        for (i, slice) in given.slices.iter().enumerate() {
            out[(given.files.len() + i) % parts]
                .slices
                .push(slice.clone());
        }
        return Some(out);
    }
    let slice = given.slices.first()?;
    let parts = (slice.end - slice.start).min(split as u64);
    if parts < 2 {
        return None;
    }
    let len = slice.end - slice.start;
    let cut = |i: u64| slice.start + i * len / parts;
    let piece = |i| InputSlice {
        path: slice.path.clone(),
        start: cut(i),
        end: cut(i + 1),
    };
    Some(
        (0..parts)
            .map(|i| InputUnit {
                files: Vec::new(),
                slices: vec![piece(i)],
            })
            .collect(),
    )
}
