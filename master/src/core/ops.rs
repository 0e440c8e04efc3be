//! Operations: check a request against the state, build its journal
//! records, apply them, and return them for the caller to make durable
//! before it answers. A refused request changes nothing. Grants and
//! commits apply each unit's change as they go and gather a run of them
//! into one record, which replay applies unit by unit through the same
//! functions (`Core::grant`, `Core::commit_at`).

use std::collections::HashMap;

use taskmaster_proto::journal::{self, Record, record::Kind};
use taskmaster_proto::v1::{
    CommitItem, LeaseNext, LeaseRef, ListInputsResponse, OutputFile, PipelineSpec, UnitRef,
    commit_item,
};

use super::lease_view::Leases;
use super::limits::*;
use super::model::{Pos, UnitSource, UnitState};
use super::names::{check_name, check_relative_path, shown, truncate};
use super::{Core, CoreError, Granted, Refusal, record, spec};

enum Leasable {
    Yes,
    Later,
    Never,
}

/// Per-item outcomes of a batch call, in request order.
pub type ItemResults = Vec<Result<(), Refusal>>;

/// What a commit call answers: per-item outcomes, and the leases its
/// `lease_next` took.
pub type CommittedAndLeased = (ItemResults, Leases);

impl Core {
    /// Accepts a pipeline under `pipeline_id` (chosen by the caller, who
    /// owns randomness) and creates its first groups' units.
    pub fn submit(
        &mut self,
        pipeline_id: &str,
        spec: PipelineSpec,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        spec::validate(&spec).map_err(CoreError::Invalid)?;
        self.submit_checked(pipeline_id, spec, unix_ms, String::new(), now_ms)
    }

    /// Starts a new run of a finished pipeline, as `new_id`, with the same
    /// spec and parameters.
    pub fn rerun(
        &mut self,
        pipeline_id: &str,
        new_id: &str,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        self.rerun_with_params(pipeline_id, new_id, &HashMap::new(), unix_ms, now_ms)
    }

    /// [`Core::rerun`] with `params` changed for the new run. Each must be
    /// a parameter the pipeline has (a misspelt name is refused, naming
    /// the ones it has), and the new spec is validated as a submit's is.
    pub fn rerun_with_params(
        &mut self,
        pipeline_id: &str,
        new_id: &str,
        params: &HashMap<String, String>,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        let p = self.pipeline_named(pipeline_id)?;
        if self.finished_state(p).is_none() {
            return Err(CoreError::FailedPrecondition(format!(
                "pipeline {pipeline_id} is still running; cancel it or wait before a re-run"
            )));
        }
        let mut spec = self.spec_with_inputs(p);
        set_params(pipeline_id, &mut spec.params, params)?;
        if !params.is_empty() {
            spec::validate(&spec).map_err(CoreError::Invalid)?;
        }
        self.submit_checked(new_id, spec, unix_ms, pipeline_id.to_string(), now_ms)
    }

    /// A pipeline's spec with its first groups' inputs put back from their
    /// live units (the stored spec drops them once the units hold them).
    fn spec_with_inputs(&self, p: u32) -> PipelineSpec {
        let pipeline = &self.pipelines[p as usize];
        let mut spec = pipeline.spec.clone();
        for (group, group_spec) in pipeline.groups.iter().zip(&mut spec.groups) {
            for unit in &group.units {
                if let (UnitSource::Given(given), false) =
                    (&unit.source, unit.state == UnitState::Dropped)
                {
                    group_spec.input_units.push(given.clone());
                }
            }
        }
        spec
    }

    fn submit_checked(
        &mut self,
        pipeline_id: &str,
        spec: PipelineSpec,
        unix_ms: u64,
        rerun_of: String,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        if self.pipeline_index.contains_key(pipeline_id) {
            return Err(CoreError::AlreadyExists(format!(
                "pipeline {pipeline_id} exists"
            )));
        }
        self.config.admission.check(&spec, self.pipelines.len())?;
        let rec = record(Kind::PipelineSubmitted(journal::PipelineSubmitted {
            pipeline_id: pipeline_id.to_string(),
            spec: Some(spec),
            submitted_unix_ms: unix_ms,
            rerun_of,
            backfill: false,
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    /// Grants up to `max_units` leases to `worker_id`, oldest ready first,
    /// skipping (and keeping in place) units held back by a block or an
    /// in-flight limit. `compact`: answer in the compact form.
    pub fn lease(
        &mut self,
        worker_id: &str,
        max_units: usize,
        compact: bool,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Leases), CoreError> {
        self.lease_with_slots(worker_id, 0, max_units, compact, now_ms)
    }

    /// [`Core::lease`] for a worker that runs `worker_slots` units at once
    /// (`LeaseRequest.worker_slots`; 0: not said), which `workers` shows.
    pub fn lease_with_slots(
        &mut self,
        worker_id: &str,
        worker_slots: u32,
        max_units: usize,
        compact: bool,
        now_ms: u64,
    ) -> Result<(Vec<Record>, Leases), CoreError> {
        check_lease_request(worker_id, max_units)?;
        // Grants in a row in one group are one record: usually one.
        let mut records = Vec::with_capacity(1);
        let leases = self.lease_onto(&mut records, worker_id, max_units, compact, now_ms)?;
        let granted = leases.len();
        self.note_worker(worker_id, max_units as u32, granted, worker_slots, now_ms);
        Ok((records, leases))
    }

    /// [`Core::lease`] of a checked request, appending its records to
    /// `records`.
    fn lease_onto(
        &mut self,
        records: &mut Vec<Record>,
        worker_id: &str,
        max_units: usize,
        compact: bool,
        now_ms: u64,
    ) -> Result<Leases, CoreError> {
        self.promote_due(now_ms);
        let mut leases = Leases::new(compact, max_units.min(self.ready.len()));
        let mut held_back = Vec::new();
        let granted = Granted {
            worker_id,
            lease_ms: self.config.lease_ms,
            unix_ms: self.unix_at(now_ms),
        };
        // One pass over the queue at most, so a fully blocked queue costs
        // one scan, not a loop.
        for _ in 0..self.ready.len() {
            if leases.len() >= max_units || self.blocked || self.at_global_limit() {
                break;
            }
            let Some((pos, lane)) = self.ready.pop_front() else {
                break;
            };
            match self.leasable(pos) {
                Leasable::Yes => {}
                Leasable::Later => {
                    held_back.push((pos, lane));
                    continue;
                }
                Leasable::Never => continue,
            }
            let lease_id = self.next_lease_id;
            // Built before the grant: a lease that would push the reply
            // past what can be sent is not granted (it stays first in line).
            let prepared = self.prepare_lease(&leases, pos, lease_id);
            if !leases.has_room_for(&prepared) {
                self.ready.push_front(pos, lane);
                break;
            }
            // `leasable` checked the unit is pending, and the id is the next:
            // a refusal here would be a bug, after earlier grants changed
            // the state, so it is a crash (see `apply_checked`).
            if let Err(e) = self.grant(pos, lease_id, &granted, now_ms) {
                panic!("a checked grant failed (a bug): {e}");
            }
            self.journal_grant(records, pos, lease_id, &granted);
            leases.push(pos, prepared);
        }
        for (pos, lane) in held_back.into_iter().rev() {
            self.ready.push_front(pos, lane);
        }
        Ok(leases)
    }

    /// Adds the grant of `lease_id` on `pos` to `records`: to the last
    /// record when that holds the grants just before it in the same group
    /// (one record, not one a unit: BENCHMARKS.md, "Why the code is shaped
    /// so: one journal record for a call's grants or commits").
    fn journal_grant(
        &self,
        records: &mut Vec<Record>,
        pos: Pos,
        lease_id: u64,
        granted: &Granted<'_>,
    ) {
        let pipeline_id = &self.pipelines[pos.pipeline as usize].id;
        if let Some(Record {
            kind: Some(Kind::LeasesGranted(run)),
        }) = records.last_mut()
            && run.group == pos.group
            && run.first_lease_id.checked_add(run.units.len() as u64) == Some(lease_id)
            && run.lease_ms == granted.lease_ms
            && run.granted_unix_ms == granted.unix_ms
            && run.worker_id == granted.worker_id
            && run.pipeline_id == *pipeline_id
        {
            run.units.push(pos.unit);
            return;
        }
        records.push(record(Kind::LeasesGranted(journal::LeasesGranted {
            pipeline_id: pipeline_id.clone(),
            group: pos.group,
            units: vec![pos.unit],
            first_lease_id: lease_id,
            worker_id: granted.worker_id.to_string(),
            lease_ms: granted.lease_ms,
            granted_unix_ms: granted.unix_ms,
        })));
    }

    /// Adds the commit of `pos` under `lease_id` to `records`: to the last
    /// record when that holds commits just before it in the same group.
    fn journal_commit(
        &self,
        records: &mut Vec<Record>,
        pos: Pos,
        lease_id: u64,
        files: &[OutputFile],
    ) {
        let pipeline_id = &self.pipelines[pos.pipeline as usize].id;
        let continues = matches!(
            records.last(),
            Some(Record { kind: Some(Kind::UnitsCommitted(run)) })
                if run.group == pos.group && run.pipeline_id == *pipeline_id
        );
        if !continues {
            records.push(record(Kind::UnitsCommitted(journal::UnitsCommitted {
                pipeline_id: pipeline_id.clone(),
                group: pos.group,
                ..Default::default()
            })));
        }
        if let Some(Record {
            kind: Some(Kind::UnitsCommitted(run)),
        }) = records.last_mut()
        {
            run.units.push(pos.unit);
            run.lease_ids.push(lease_id);
            run.file_counts.push(files.len() as u32);
            run.files.extend_from_slice(files);
        }
    }

    fn at_global_limit(&self) -> bool {
        self.config.max_in_flight > 0 && self.leases.len() >= self.config.max_in_flight as usize
    }

    /// Whether a queued unit may be leased now, later, or never (stale
    /// entry, or its pipeline was cancelled).
    fn leasable(&self, pos: Pos) -> Leasable {
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let group = &pipeline.groups[pos.group as usize];
        let pending = group
            .units
            .get(pos.unit as usize)
            .is_some_and(|u| u.state == UnitState::Pending);
        if !pending || pipeline.cancelled {
            return Leasable::Never;
        }
        let limit = pipeline.spec.groups[pos.group as usize].max_in_flight;
        if pipeline.blocked || (limit > 0 && group.counts.leased >= limit as u64) {
            return Leasable::Later;
        }
        Leasable::Yes
    }

    /// Extends the given leases by a full lease time. Not journaled: lease
    /// clocks restart on recovery anyway.
    pub fn renew(
        &mut self,
        token: &str,
        refs: &[LeaseRef],
        now_ms: u64,
    ) -> Result<ItemResults, CoreError> {
        self.check_batch(token, refs.len())?;
        let mut results = Vec::with_capacity(refs.len());
        // The worker that renews: the holder of its first current lease.
        let mut renewer = None;
        for lease_ref in refs {
            if self.finished(lease_ref) {
                results.push(Ok(())); // its commit landed while the renewal was on its way
                continue;
            }
            let checked = self.check_lease(lease_ref, now_ms);
            if let (Ok(pos), None) = (&checked, &renewer) {
                renewer = Some(self.leased_worker(*pos));
            }
            if checked.is_ok() {
                let lease_id = lease_ref.lease_id;
                let clock = self
                    .leases
                    .get_mut(&lease_id)
                    .expect("checked lease has a clock");
                self.expiries.remove(clock.expiry_ms);
                clock.expiry_ms = now_ms.saturating_add(self.config.lease_ms);
                self.expiries.insert(clock.expiry_ms, lease_id);
            }
            results.push(checked.map(|_| ()));
        }
        if let Some(worker_id) = renewer.filter(|id| !id.is_empty()) {
            self.note_worker_seen(&worker_id, now_ms);
        }
        Ok(results)
    }

    /// Whether the attempt under this lease already has a recorded outcome.
    fn finished(&self, lease_ref: &LeaseRef) -> bool {
        let Ok(pos) = self.find_unit(lease_ref.unit.as_ref()) else {
            return false;
        };
        [true, false].into_iter().any(|success| {
            self.finished_by(pos, lease_ref.lease_id, lease_ref.incarnation, success)
        })
    }

    /// Commits finished units and records failed attempts, each only if the
    /// four checks pass: server token (whole request), config version,
    /// current unexpired lease, and output names inside the attempt's
    /// prefix. A repeated commit of an accepted lease answers success.
    pub fn commit(
        &mut self,
        token: &str,
        items: &[CommitItem],
        now_ms: u64,
    ) -> Result<(Vec<Record>, ItemResults), CoreError> {
        // Commits in a row in one group are one record: usually one.
        let mut records = Vec::with_capacity(1);
        let results = self.commit_onto(&mut records, token, items, now_ms)?;
        Ok((records, results))
    }

    /// [`Core::commit`], appending its records to `records`.
    fn commit_onto(
        &mut self,
        records: &mut Vec<Record>,
        token: &str,
        items: &[CommitItem],
        now_ms: u64,
    ) -> Result<ItemResults, CoreError> {
        self.check_batch(token, items.len())?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let (accepted, result) = match self.commit_one(item, now_ms) {
                Ok(accepted) => (accepted, Ok(())),
                Err(Rejected::Refused(refusal)) => (None, Err(refusal)),
                Err(Rejected::Failed(rec, refusal)) => (Some(Accepted::Record(rec)), Err(refusal)),
            };
            match accepted {
                Some(Accepted::Commit {
                    pos,
                    lease_id,
                    files,
                }) => {
                    if let Err(e) = self.take_lease_at(pos, lease_id) {
                        panic!("a checked commit failed (a bug): {e}");
                    }
                    self.journal_commit(records, pos, lease_id, &files);
                    self.commit_at(pos, lease_id, files);
                }
                Some(Accepted::Record(rec)) => {
                    self.apply_checked(&rec, now_ms);
                    records.push(*rec);
                }
                None => {}
            }
            results.push(result);
        }
        Ok(results)
    }

    /// Commits `items`, then leases up to `next.max_units` more units to
    /// `next.worker_id`: one change, so one journal append and one wait
    /// for the caller. A bad lease request fails the call before anything
    /// is committed; refused items do not stop the lease.
    pub fn commit_and_lease(
        &mut self,
        token: &str,
        items: &[CommitItem],
        next: Option<&LeaseNext>,
        now_ms: u64,
    ) -> Result<(Vec<Record>, CommittedAndLeased), CoreError> {
        if let Some(next) = next {
            check_lease_request(&next.worker_id, next.max_units as usize)?;
        }
        let Some(next) = next else {
            let (records, results) = self.commit(token, items, now_ms)?;
            return Ok((records, (results, Leases::default())));
        };
        // One vector for both, usually a record of commits and one of
        // grants (a run each).
        let most = next.max_units as usize;
        let mut records = Vec::with_capacity(2);
        let results = self.commit_onto(&mut records, token, items, now_ms)?;
        let leases = self.lease_onto(&mut records, &next.worker_id, most, next.compact, now_ms)?;
        // A worker's slots come with its lease calls; 0 keeps them.
        self.note_worker(&next.worker_id, next.max_units, leases.len(), 0, now_ms);
        Ok((records, (results, leases)))
    }

    fn commit_one(&self, item: &CommitItem, now_ms: u64) -> Result<Option<Accepted>, Rejected> {
        let lease_ref = item
            .lease
            .as_ref()
            .ok_or_else(|| Refusal::Invalid("item without a lease".into()))?;
        let pos = self.find_unit(lease_ref.unit.as_ref())?;
        let success = matches!(item.result, Some(commit_item::Result::Outputs(_)));
        if self.finished_by(pos, lease_ref.lease_id, lease_ref.incarnation, success) {
            // A repeat after a lost reply; one that names other outputs is
            // told they were not taken.
            if let (Some(commit_item::Result::Outputs(again)), UnitState::Committed { files, .. }) =
                (&item.result, &self.unit(pos).state)
                && !same_files(files, &again.files)
            {
                return Err(Refusal::AlreadyCommitted(format!(
                    "lease {} committed the unit with {} other output files; this repeat's {} were ignored",
                    lease_ref.lease_id,
                    files.len(),
                    again.files.len()
                ))
                .into());
            }
            return Ok(None);
        }
        self.check_lease_at(pos, lease_ref, now_ms)?;
        let lease_id = lease_ref.lease_id;
        let failed = |error: String| {
            let error = truncate(&error, ERROR_BYTES_MAX);
            record(Kind::AttemptFailed(journal::AttemptFailed {
                unit: Some(self.addr(pos)),
                lease_id,
                error,
                failed_unix_ms: self.unix_at(now_ms),
            }))
        };
        match &item.result {
            Some(commit_item::Result::Outputs(outputs)) => {
                check_outputs(&outputs.files)?;
                let partitions = self.group(pos).wiring.write_partitions;
                if let Err(why) = check_partitions(&outputs.files, partitions) {
                    // The task is wrong, not the request: fail the attempt
                    // with the reason, so the pipeline's owner sees it.
                    return Err(Rejected::Failed(
                        Box::new(failed(why.clone())),
                        Refusal::Invalid(why),
                    ));
                }
                Ok(Some(Accepted::Commit {
                    pos,
                    lease_id,
                    files: outputs.files.clone(),
                }))
            }
            Some(commit_item::Result::Error(error)) => {
                Ok(Some(Accepted::Record(Box::new(failed(error.clone())))))
            }
            None => Err(Refusal::Invalid("item has neither outputs nor an error".into()).into()),
        }
    }

    /// One page of the inputs of a held lease (see `ListInputs`): checked
    /// as a renewal is, so only the lease's holder reads them. Changes
    /// nothing.
    pub fn list_inputs(
        &self,
        token: &str,
        lease_ref: &LeaseRef,
        cursor: u64,
        limit: u32,
        now_ms: u64,
    ) -> Result<Result<ListInputsResponse, Refusal>, CoreError> {
        self.check_batch(token, 1)?;
        let pos = match self.check_lease(lease_ref, now_ms) {
            Ok(pos) => pos,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let limit = match limit as usize {
            0 => INPUTS_PAGE_MAX,
            n => n.min(INPUTS_PAGE_MAX),
        };
        let (inputs, input_slices, next_cursor) = self.inputs_page(pos, cursor, limit);
        Ok(Ok(ListInputsResponse {
            inputs,
            input_slices,
            next_cursor,
        }))
    }

    /// Gives leases back without counting an attempt (worker shutting down).
    pub fn release(
        &mut self,
        token: &str,
        refs: &[LeaseRef],
        now_ms: u64,
    ) -> Result<(Vec<Record>, ItemResults), CoreError> {
        self.check_batch(token, refs.len())?;
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(refs.len());
        for lease_ref in refs {
            if self.finished(lease_ref) {
                results.push(Ok(())); // nothing left to give back
                continue;
            }
            let checked = self.check_lease(lease_ref, now_ms);
            if let Ok(pos) = checked {
                let rec = record(Kind::LeaseReleased(journal::LeaseReleased {
                    unit: Some(self.addr(pos)),
                    lease_id: lease_ref.lease_id,
                }));
                self.apply_checked(&rec, now_ms);
                records.push(rec);
            }
            results.push(checked.map(|_| ()));
        }
        Ok((records, results))
    }

    /// Returns every lease that ran out by `now_ms` to pending (or failed,
    /// after its last attempt). Each record names the lease it ends, so a
    /// late expiry can never undo a commit.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Record> {
        let mut records = Vec::new();
        while let Some((expiry_ms, lease_ids)) = self.expiries.pop_due(now_ms) {
            for lease_id in lease_ids {
                // Skips leases committed, released or renewed since.
                let Some(clock) = self.leases.get(&lease_id) else {
                    continue;
                };
                if clock.expiry_ms != expiry_ms {
                    continue;
                }
                // Its duration ends when it ran out, not when the reaper
                // came by.
                let rec = record(Kind::LeaseExpired(journal::LeaseExpired {
                    unit: Some(self.addr(clock.pos)),
                    lease_id,
                    expired_unix_ms: self.unix_at(clock.expiry_ms),
                }));
                self.apply(&rec, now_ms)
                    .expect("an indexed lease is current");
                records.push(rec);
            }
        }
        records
    }

    /// When the earliest lease runs out, for the reaper's timer.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiries.first()
    }

    fn check_batch(&self, token: &str, items: usize) -> Result<(), CoreError> {
        if token != self.server_token {
            return Err(CoreError::WrongMaster {
                given: token.to_string(),
                ours: self.server_token.clone(),
            });
        }
        if items > BATCH_ITEMS_MAX {
            return Err(CoreError::Invalid(format!(
                "{items} items; at most {BATCH_ITEMS_MAX} per call"
            )));
        }
        Ok(())
    }

    /// Checks 2 and 3: the lease's config version is the group's, and the
    /// lease is the unit's current one and has not run out.
    fn check_lease(&self, lease_ref: &LeaseRef, now_ms: u64) -> Result<Pos, Refusal> {
        let pos = self.find_unit(lease_ref.unit.as_ref())?;
        self.check_lease_at(pos, lease_ref, now_ms)
    }

    /// [`Core::check_lease`] for a unit already found at `pos`.
    fn check_lease_at(&self, pos: Pos, lease_ref: &LeaseRef, now_ms: u64) -> Result<Pos, Refusal> {
        let pipeline = &self.pipelines[pos.pipeline as usize];
        if pipeline.cancelled {
            return Err(Refusal::LeaseLost(format!(
                "pipeline {} was cancelled",
                pipeline.id
            )));
        }
        let current = self.group(pos).config_version;
        if lease_ref.config_version != current {
            return Err(Refusal::StaleConfig {
                lease: lease_ref.config_version,
                current,
            });
        }
        let lease_id = lease_ref.lease_id;
        match &self.unit(pos).state {
            UnitState::Leased { lease_id: held, .. } if *held == lease_id => {
                let granted_by = self.incarnations.of(lease_id);
                if lease_ref.incarnation != granted_by {
                    return Err(Refusal::LeaseLost(format!(
                        "lease {lease_id} of incarnation {:016x} was not granted by this master \
                         (its lease {lease_id} is incarnation {granted_by:016x}'s): a master started \
                         on a copy of this data dir, or the lease was never sent with its incarnation",
                        lease_ref.incarnation
                    )));
                }
            }
            UnitState::Leased { .. } | UnitState::Pending => {
                return Err(Refusal::LeaseLost(format!(
                    "lease {lease_id} expired or was released; the unit went back to the queue"
                )));
            }
            UnitState::Committed { lease_id: by, .. } => {
                let granted_by = self.incarnations.of(*by);
                return Err(Refusal::LeaseLost(if *by != lease_id {
                    format!("the unit was committed under lease {by}, not {lease_id}")
                } else if granted_by != lease_ref.incarnation {
                    format!(
                        "the unit was committed by lease {lease_id} of incarnation {granted_by:016x}; \
                         lease {lease_id} of incarnation {:016x} was not granted by this master",
                        lease_ref.incarnation
                    )
                } else {
                    format!(
                        "lease {lease_id} already committed the unit; a failure reported after it is ignored"
                    )
                }));
            }
            UnitState::Failed => return Err(Refusal::LeaseLost("the unit has failed".into())),
            UnitState::Dropped => {
                return Err(Refusal::LeaseLost(
                    "the unit was dropped (cleared or split)".into(),
                ));
            }
        }
        if self.leases[&lease_id].expiry_ms <= now_ms {
            return Err(Refusal::LeaseLost(format!("lease {lease_id} has expired")));
        }
        Ok(pos)
    }

    fn find_unit(&self, unit: Option<&UnitRef>) -> Result<Pos, Refusal> {
        let unit = unit.ok_or_else(|| Refusal::Invalid("no unit named".into()))?;
        let name = || {
            let path = format!("{}/{}/{}", unit.pipeline_id, unit.group, unit.unit);
            super::names::shown(&path)
        };
        let &pipeline = self
            .pipeline_index
            .get(&unit.pipeline_id)
            .ok_or_else(|| Refusal::UnknownUnit(name()))?;
        let p = &self.pipelines[pipeline as usize];
        let &group = p
            .group_index
            .get(&unit.group)
            .ok_or_else(|| Refusal::UnknownUnit(name()))?;
        if unit.unit as usize >= p.groups[group as usize].units.len() {
            return Err(Refusal::UnknownUnit(name()));
        }
        Ok(Pos {
            pipeline,
            group,
            unit: unit.unit,
        })
    }
}

/// What an accepted commit item changes.
enum Accepted {
    /// The unit at `pos` is committed under `lease_id` with `files`
    /// (journaled in a [`journal::UnitsCommitted`] with its neighbours).
    Commit {
        pos: Pos,
        lease_id: u64,
        files: Vec<OutputFile>,
    },
    /// A record of its own: a failed attempt (boxed: records are large).
    Record(Box<Record>),
}

/// Why a commit item was not accepted: refused outright, or recorded as a
/// failed attempt (outputs that break the group's contract).
enum Rejected {
    Refused(Refusal),
    Failed(Box<Record>, Refusal),
}

impl From<Refusal> for Rejected {
    fn from(refusal: Refusal) -> Rejected {
        Rejected::Refused(refusal)
    }
}

/// Whether two commits name the same output files (in any order).
fn same_files(a: &[OutputFile], b: &[OutputFile]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    fn sorted(files: &[OutputFile]) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = files
            .iter()
            .map(|f| (f.name.as_str(), f.size_bytes))
            .collect();
        v.sort_unstable();
        v
    }
    a == b || sorted(a) == sorted(b)
}

/// A group that a shuffle reads must write only `part-NNNNN` files with
/// NNNNN below the shuffle's partition count.
fn check_partitions(
    files: &[taskmaster_proto::v1::OutputFile],
    partitions: u32,
) -> Result<(), String> {
    if partitions == 0 {
        return Ok(());
    }
    for file in files {
        let number = file.name.strip_prefix("part-").filter(|n| n.len() == 5);
        match number.and_then(|n| n.parse::<u32>().ok()) {
            Some(r) if r < partitions => {}
            Some(_) => {
                return Err(format!(
                    "output {:?} is a partition outside 0..{partitions}: the downstream shuffle has {partitions} partitions",
                    file.name
                ));
            }
            None => {
                return Err(format!(
                    "output {:?} is not a partition file: a shuffled group writes only part-00000 .. part-{:05}",
                    file.name,
                    partitions - 1
                ));
            }
        }
    }
    Ok(())
}

fn check_outputs(files: &[taskmaster_proto::v1::OutputFile]) -> Result<(), Refusal> {
    if files.len() > OUTPUT_FILES_MAX {
        return Err(Refusal::Invalid(format!(
            "{} output files; at most {OUTPUT_FILES_MAX}",
            files.len()
        )));
    }
    let mut names: Vec<&str> = Vec::with_capacity(files.len());
    for file in files {
        check_relative_path(&file.name).map_err(Refusal::Invalid)?;
        names.push(&file.name);
    }
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Refusal::Invalid(format!(
            "output name {:?} appears twice",
            pair[0]
        )));
    }
    Ok(())
}

/// Sets `changes` in a re-run's `params`. Each must be a parameter the
/// pipeline has: a new name is far more often a misspelt one than a wish.
fn set_params(
    pipeline_id: &str,
    params: &mut HashMap<String, String>,
    changes: &HashMap<String, String>,
) -> Result<(), CoreError> {
    let mut unknown: Vec<String> = changes
        .keys()
        .filter(|name| !params.contains_key(*name))
        .map(|name| shown(name))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let mut has: Vec<String> = params.keys().map(|name| shown(name)).collect();
        has.sort_unstable();
        let has = if has.is_empty() {
            "it has none".to_string()
        } else {
            format!("it has {}", has.join(", "))
        };
        let noun = if unknown.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        return Err(CoreError::Invalid(format!(
            "pipeline {pipeline_id} has no {noun} {} ({has}); a re-run can only change \
             the parameters of the pipeline",
            unknown.join(", ")
        )));
    }
    for (name, value) in changes {
        params.insert(name.clone(), value.clone());
    }
    Ok(())
}

fn check_lease_request(worker_id: &str, max_units: usize) -> Result<(), CoreError> {
    check_name("worker id", worker_id).map_err(CoreError::Invalid)?;
    if max_units > BATCH_ITEMS_MAX {
        return Err(CoreError::Invalid(format!(
            "max_units above the limit of {BATCH_ITEMS_MAX}"
        )));
    }
    Ok(())
}
