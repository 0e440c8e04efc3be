//! The pure state machine: no I/O, no tokio, no clock reads.
//!
//! Every change goes through [`Core::apply`] with a journal [`Record`]; the
//! operations in [`ops`] check a request against the state, build the
//! records, apply them and return them for the caller to journal before it
//! answers. Recovery applies the same records in order, so the state after
//! a restart is exactly the fold of what was journaled.
//!
//! - [`spec`]: validation of submitted pipelines, the DAG wiring
//! - [`model`]: pipelines, groups, units
//! - [`ops`]: submit, lease, renew, commit, release, expire
//! - [`operate`]: operator actions (cancel, block, retry, clear, config,
//!   scaling)
//! - [`finished`]: finish times of pipelines, and deleting finished ones
//! - [`view`]: status and outputs for clients
//! - [`invariants`]: `check_invariants`, run after every transition in tests

pub mod admission;
pub mod audit;
pub mod error;
mod expiries;
pub mod finished;
pub mod incarnation;
mod invariants;
pub mod lease_view;
pub mod limits;
pub mod model;
pub mod names;
pub mod operate;
pub mod ops;
mod pages;
mod ready;
pub mod schedule_grid;
pub mod schedule_notices;
pub mod schedule_ops;
pub mod schedule_publish;
pub mod schedules;
pub mod snapshot;
mod snapshot_encode;
pub mod spec;
pub mod tokens;
pub mod ui_view;
pub mod view;

use std::collections::{BTreeSet, HashMap};

// Fx hashing for the maps every lease and commit looks up: their keys are
// ids the master made (pipeline ids, lease numbers), not attacker-chosen,
// and SipHash was a visible part of a batched commit's cost.
use rustc_hash::{FxHashMap, FxHashSet};
use taskmaster_proto::journal::{self, Record, UnitAddr, record::Kind};
use taskmaster_proto::v1::{GroupSpec, InputUnit, OutputFile};

pub use error::{CoreError, Refusal};
use expiries::Expiries;
use incarnation::Incarnations;
use model::*;
use spec::Feed;

/// Settings the core needs that are not part of the journaled state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Absolute directory of the local store; output prefixes are relative to
    /// it. Empty when the store is remote (`store_url`).
    pub store_root: String,
    /// URL of a remote store (`s3://bucket/prefix`, no trailing `/`), or
    /// empty for a local one. The core only formats names with it: committed
    /// outputs are then `<store_url>/<output prefix><name>`.
    pub store_url: String,
    /// How long a lease lasts without renewal.
    pub lease_ms: u64,
    /// Leases out at once over all pipelines, at most (0: no limit).
    pub max_in_flight: u32,
    /// How many pipelines, and how big, the master takes on (issue 24).
    pub admission: admission::Admission,
}

#[derive(Debug, Clone)]
pub struct Core {
    config: CoreConfig,
    /// Identity of the store, from the journal's Init record.
    server_token: String,
    /// Lease ids only grow, so an id is never reused by this journal.
    next_lease_id: u64,
    /// Which start of a master granted each lease id, so a master on a
    /// copy of this data dir, which reuses ids, is told apart.
    incarnations: Incarnations,
    pipelines: Vec<Pipeline>,
    pipeline_index: FxHashMap<String, u32>,
    /// Units that may be leased, oldest first. Entries are checked when
    /// popped, so a unit that left Pending needs no removal here.
    ready: ready::Ready,
    /// Current leases by id, and their expiries in time order for the reaper.
    leases: FxHashMap<u64, LeaseClock>,
    expiries: Expiries,
    /// Failed units waiting out their retry delay, by when they are due.
    delayed: BTreeSet<(u64, Pos)>,
    /// No leases at all while set (an operator's global block).
    blocked: bool,
    /// The wall clock at one reading of the monotonic clock, so a failure
    /// journaled before a restart counts the time since toward its retry
    /// delay (see [`Core::set_wall_clock`]).
    wall: WallAnchor,
    /// Workers seen in lease, commit and renewal calls; volatile, not
    /// journaled.
    workers: HashMap<String, WorkerSeen>,
    /// Bearer tokens, hashed (issue 24).
    pub(crate) tokens: tokens::Tokens,
    /// Recent operator actions (issue 24).
    pub(crate) audit: audit::Audit,
    /// Schedules, their runs and backfills (issue 25).
    pub(crate) schedules: schedules::Schedules,
}

/// What the master knows of a worker from its calls.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSeen {
    /// Units it asked for in its last lease call (its free slots then).
    pub slots: u32,
    /// Units it runs at once, as its lease calls said (0: not said).
    pub worker_slots: u32,
    /// When it last called: a lease, a commit asking for more, a renewal.
    pub last_seen_ms: u64,
    /// Its last lease call got fewer units than it asked for: it may be
    /// waiting in a lease call for more (see [`Core::worker_live_ms`]).
    pub waiting: bool,
}

impl Core {
    /// An empty core, before the journal's Init record is applied.
    pub fn new(config: CoreConfig) -> Core {
        Core {
            config,
            server_token: String::new(),
            next_lease_id: 1,
            incarnations: Incarnations::default(),
            pipelines: Vec::new(),
            pipeline_index: FxHashMap::default(),
            ready: ready::Ready::default(),
            leases: FxHashMap::default(),
            expiries: Expiries::default(),
            delayed: BTreeSet::new(),
            blocked: false,
            wall: WallAnchor::default(),
            workers: HashMap::new(),
            tokens: tokens::Tokens::default(),
            audit: audit::Audit::default(),
            schedules: schedules::Schedules::default(),
        }
    }

    /// Ties the monotonic `now_ms` to the wall clock's `unix_ms`: failures
    /// are journaled with their wall-clock time, and a failure replayed
    /// after a restart waits only what is left of its retry delay. Set
    /// before replaying a journal; without it, replayed delays start again.
    pub fn set_wall_clock(&mut self, now_ms: u64, unix_ms: u64) {
        self.wall = WallAnchor { now_ms, unix_ms };
    }

    /// The wall-clock time at monotonic `now_ms` (0 if the anchor is unset).
    fn unix_at(&self, now_ms: u64) -> u64 {
        if self.wall.unix_ms == 0 {
            return 0;
        }
        self.wall
            .unix_ms
            .saturating_add(now_ms.saturating_sub(self.wall.now_ms))
    }

    /// How long ago, at `now_ms`, the wall-clock time `unix_ms` was (0 if
    /// either is unknown, or it lies in the future: a clock error never
    /// lengthens a delay).
    fn waited_since(&self, unix_ms: u64, now_ms: u64) -> u64 {
        match (unix_ms, self.unix_at(now_ms)) {
            (0, _) | (_, 0) => 0,
            (then, now) => now.saturating_sub(then),
        }
    }

    /// The ready-queue lane of pipeline `p`'s units.
    fn lane(&self, p: u32) -> ready::Lane {
        if self.pipelines[p as usize].backfill {
            ready::Lane::Backfill
        } else {
            ready::Lane::Live
        }
    }

    /// The record that starts a new store's journal.
    pub fn init_record(server_token: &str, created_unix_ms: u64) -> Record {
        record(Kind::Init(journal::Init {
            server_token: server_token.to_string(),
            created_unix_ms,
        }))
    }

    /// Rebuilds the state from a journal. Leases that were held get a full
    /// lease time from `now_ms`, since no clock survives a restart.
    pub fn recover(
        config: CoreConfig,
        records: impl IntoIterator<Item = Record>,
        now_ms: u64,
    ) -> Result<Core, CoreError> {
        let mut core = Core::new(config);
        core.replay(records, 0, now_ms)?;
        if core.server_token.is_empty() {
            return Err(CoreError::Corrupt("the journal has no Init record".into()));
        }
        Ok(core)
    }

    /// Applies journal records in order; `first_seq` numbers the first one
    /// in error messages.
    pub fn replay(
        &mut self,
        records: impl IntoIterator<Item = Record>,
        first_seq: u64,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        for (i, rec) in records.into_iter().enumerate() {
            self.apply(&rec, now_ms).map_err(|e| {
                CoreError::Corrupt(format!("record {}: {e}", first_seq + i as u64 + 1))
            })?;
        }
        self.drop_ready_entries_of_delayed();
        Ok(())
    }

    /// A replayed grant leaves its unit's entry in the ready queue (entries
    /// are checked when popped, and a live grant pops it). So a unit whose
    /// attempt failed later in the journal, and that now waits out its
    /// retry delay, would find its old entry valid again and be leased at
    /// once. Drops those entries; the delayed queue brings the units back
    /// when they are due.
    fn drop_ready_entries_of_delayed(&mut self) {
        if self.delayed.is_empty() {
            return;
        }
        let delayed: FxHashSet<Pos> = self.delayed.iter().map(|&(_, pos)| pos).collect();
        self.ready.retain(|pos| !delayed.contains(pos));
    }

    /// Whether any unit waits in the ready queue (some entries may be
    /// stale: a lease call drops them). False when every unit a change
    /// made ready was leased in the same call (a commit's `lease_next`).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn server_token(&self) -> &str {
        &self.server_token
    }

    /// The incarnation this master's new leases carry (0 before a start
    /// was recorded).
    pub fn incarnation(&self) -> u64 {
        self.incarnations.current()
    }

    /// The record that starts incarnation `incarnation` (random, made by
    /// the caller, who owns randomness) at the next lease id. Journal it
    /// before serving, so no lease of this start goes out without it.
    pub fn start(
        &mut self,
        incarnation: u64,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Record, CoreError> {
        let rec = record(Kind::Started(journal::Started {
            incarnation,
            unix_ms,
            first_lease_id: self.next_lease_id,
        }));
        if let Some(Kind::Started(started)) = &rec.kind {
            self.incarnations
                .check(started)
                .map_err(CoreError::Invalid)?;
        }
        self.apply_checked(&rec, now_ms);
        Ok(rec)
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Applies a record that a live operation built after its checks
    /// passed: it fits the state by construction. A failure is a bug, and
    /// the state may be half changed while the record never reaches the
    /// journal, so it is a crash, not an error a caller could drop (the
    /// master binary aborts on a panic; a restart recovers what was
    /// acknowledged).
    pub(crate) fn apply_checked(&mut self, rec: &Record, now_ms: u64) {
        if let Err(e) = self.apply(rec, now_ms) {
            panic!("a checked change did not apply (a bug): {e}");
        }
    }

    /// Applies one journaled change. Fails if the record does not fit the
    /// state (a corrupt or foreign journal, which recovery then refuses):
    /// a single unit's record changes nothing then; a run of grants or
    /// commits may stop after the units before the one that does not fit.
    pub fn apply(&mut self, rec: &Record, now_ms: u64) -> Result<(), CoreError> {
        let corrupt = |what: &str| CoreError::Corrupt(what.to_string());
        match rec.kind.as_ref().ok_or_else(|| corrupt("empty record"))? {
            Kind::Init(init) => {
                if !self.server_token.is_empty() || init.server_token.is_empty() {
                    return Err(corrupt("Init record that is not the first or has no token"));
                }
                self.server_token = init.server_token.clone();
            }
            Kind::Started(started) => {
                if started.first_lease_id != self.next_lease_id {
                    return Err(corrupt("Started record at another lease id than the next"));
                }
                self.incarnations
                    .check(started)
                    .map_err(CoreError::Corrupt)?;
                self.incarnations.record(started);
            }
            Kind::PipelineSubmitted(sub) => self.apply_submitted(sub)?,
            Kind::LeaseGranted(g) => self.apply_granted(g, now_ms)?,
            Kind::LeasesGranted(g) => self.apply_leases_granted(g, now_ms)?,
            Kind::UnitCommitted(c) => {
                let pos = self.take_lease(&c.unit, c.lease_id)?;
                self.commit_at(pos, c.lease_id, c.files.clone());
            }
            Kind::UnitsCommitted(c) => self.apply_units_committed(c)?,
            Kind::AttemptFailed(f) => {
                let pos = self.take_lease(&f.unit, f.lease_id)?;
                self.unit_mut(pos).failed_lease = f.lease_id;
                let waited_ms = self.waited_since(f.failed_unix_ms, now_ms);
                let retry = Retry::AfterDelay { waited_ms };
                let failure = Failure {
                    lease_id: f.lease_id,
                    error: f.error.clone(),
                    ended_unix_ms: f.failed_unix_ms,
                };
                self.count_failure(pos, failure, retry, now_ms);
            }
            Kind::LeaseExpired(e) => {
                let pos = self.take_lease(&e.unit, e.lease_id)?;
                let worker = self.leased_worker(pos);
                let error = format!(
                    "lease {} expired (worker {worker} stopped renewing)",
                    e.lease_id
                );
                let failure = Failure {
                    lease_id: e.lease_id,
                    error,
                    ended_unix_ms: e.expired_unix_ms,
                };
                self.count_failure(pos, failure, Retry::Now, now_ms);
            }
            Kind::LeaseReleased(r) => {
                let pos = self.take_lease(&r.unit, r.lease_id)?;
                self.set_state(pos, UnitState::Pending);
                self.ready.push_back(pos, self.lane(pos.pipeline));
            }
            Kind::PipelineCancelled(c) => self.apply_cancelled(c)?,
            Kind::BlockSet(b) => self.apply_block(b)?,
            Kind::UnitsRetried(r) => self.apply_retried(r)?,
            Kind::GroupCleared(c) => self.apply_cleared(c)?,
            Kind::ConfigChanged(c) => self.apply_config(c)?,
            Kind::GroupScaled(c) => self.apply_scaled(c)?,
            Kind::PipelinesDeleted(d) => {
                self.note_runs_deleted(d);
                self.apply_deleted(d)?
            }
            Kind::PipelinesFinished(f) => self.apply_finished(f)?,
            Kind::TokenCreated(t) => self.tokens.apply_created(t)?,
            Kind::TokenRevoked(t) => self.tokens.apply_revoked(t)?,
            Kind::Audited(a) => self.audit.apply(a),
            Kind::ScheduleAdded(a) => self.schedules.apply_added(a)?,
            Kind::ScheduleChanged(c) => self.apply_schedule_changed(c)?,
            Kind::ScheduleFired(f) => self.apply_schedule_fired(f)?,
            Kind::BackfillStarted(b) => self.schedules.apply_backfill_started(b)?,
            Kind::BackfillChanged(c) => self.apply_backfill_changed(c)?,
        }
        self.audit.observe(rec);
        if let Some(pipeline_id) = finished::may_run_again(rec) {
            self.forget_finish_time(pipeline_id);
        }
        Ok(())
    }

    fn apply_submitted(&mut self, sub: &journal::PipelineSubmitted) -> Result<(), CoreError> {
        let spec = sub.spec.clone().unwrap_or_default();
        let wiring = spec::validate(&spec).map_err(CoreError::Corrupt)?;
        if self.pipeline_index.contains_key(&sub.pipeline_id) {
            return Err(CoreError::Corrupt(format!(
                "pipeline {} submitted twice",
                sub.pipeline_id
            )));
        }
        let index = self.pipelines.len() as u32;
        let mut pipeline = Pipeline {
            id: sub.pipeline_id.clone(),
            group_index: spec
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.name.clone(), i as u32))
                .collect(),
            groups: Vec::with_capacity(spec.groups.len()),
            spec,
            submitted_unix_ms: sub.submitted_unix_ms,
            grants: 0,
            retries: 0,
            topo_order: spec::topo_order(&wiring),
            cancelled: false,
            blocked: false,
            rerun_of: sub.rerun_of.clone(),
            lease_floor: self.next_lease_id,
            finished_unix_ms: 0,
            backfill: sub.backfill,
        };
        let lane = if sub.backfill {
            ready::Lane::Backfill
        } else {
            ready::Lane::Live
        };
        for (g, wiring) in wiring.into_iter().enumerate() {
            let created = wiring.feed == Feed::Inputs || wiring.feed == Feed::PerUnit;
            let mut group = Group {
                wiring,
                config_version: 1,
                units: Units::default(),
                counts: Counts::default(),
                created,
                revivable: FxHashMap::default(),
            };
            if group.wiring.feed == Feed::Inputs {
                // The units now hold the inputs; keeping them in the spec
                // too would double the memory of a large first group.
                let spec = &mut pipeline.spec.groups[g];
                group.units = first_units(spec);
                spec.inputs = Vec::new();
                spec.input_units = Vec::new();
                group.counts.pending = group.units.len() as u64;
                for u in 0..group.units.len() as u32 {
                    let pos = Pos {
                        pipeline: index,
                        group: g as u32,
                        unit: u,
                    };
                    self.ready.push_back(pos, lane);
                }
            }
            pipeline.groups.push(group);
        }
        self.pipeline_index.insert(pipeline.id.clone(), index);
        self.pipelines.push(pipeline);
        Ok(())
    }

    fn apply_granted(&mut self, g: &journal::LeaseGranted, now_ms: u64) -> Result<(), CoreError> {
        let addr = g
            .unit
            .as_ref()
            .ok_or_else(|| CoreError::Corrupt("grant without a unit".into()))?;
        let pos = self.resolve_addr(addr)?;
        let granted = Granted {
            worker_id: &g.worker_id,
            lease_ms: g.lease_ms,
            unix_ms: g.granted_unix_ms,
        };
        self.grant(pos, g.lease_id, &granted, now_ms)
    }

    /// A [`journal::LeasesGranted`]: each unit's grant in order, as if
    /// each were a `LeaseGranted` of its own.
    fn apply_leases_granted(
        &mut self,
        g: &journal::LeasesGranted,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        let pipeline = self.resolve_group(&g.pipeline_id, g.group)?;
        let granted = Granted {
            worker_id: &g.worker_id,
            lease_ms: g.lease_ms,
            unix_ms: g.granted_unix_ms,
        };
        for (i, &unit) in g.units.iter().enumerate() {
            let lease_id = g
                .first_lease_id
                .checked_add(i as u64)
                .ok_or_else(|| CoreError::Corrupt("lease ids past the last".into()))?;
            let pos = self.resolve_unit(pipeline, g.group, unit, &g.pipeline_id)?;
            self.grant(pos, lease_id, &granted, now_ms)?;
        }
        Ok(())
    }

    /// Leases the pending unit at `pos` as `lease_id`, as `granted` says.
    fn grant(
        &mut self,
        pos: Pos,
        lease_id: u64,
        granted: &Granted<'_>,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        if self.unit(pos).state != UnitState::Pending {
            return Err(CoreError::Corrupt(format!(
                "lease {lease_id} granted for a unit that is not pending"
            )));
        }
        if lease_id < self.next_lease_id {
            return Err(CoreError::Corrupt(format!("lease id {lease_id} reused")));
        }
        if lease_id == u64::MAX {
            return Err(CoreError::Corrupt("lease ids past the last".into()));
        }
        self.next_lease_id = lease_id + 1;
        let state = UnitState::Leased {
            lease_id,
            worker_id: granted.worker_id.to_string(),
            granted_unix_ms: granted.unix_ms,
        };
        self.set_state(pos, state);
        self.unit_mut(pos).grants += 1;
        self.pipelines[pos.pipeline as usize].grants += 1;
        let expiry_ms = now_ms.saturating_add(granted.lease_ms);
        self.leases.insert(lease_id, LeaseClock { pos, expiry_ms });
        self.expiries.insert(expiry_ms, lease_id);
        Ok(())
    }

    /// A [`journal::UnitsCommitted`]: each unit's commit in order, as if
    /// each were a `UnitCommitted` of its own.
    fn apply_units_committed(&mut self, c: &journal::UnitsCommitted) -> Result<(), CoreError> {
        let n = c.units.len();
        let files_named: u64 = c.file_counts.iter().map(|&k| u64::from(k)).sum();
        if c.lease_ids.len() != n || c.file_counts.len() != n || files_named != c.files.len() as u64
        {
            return Err(CoreError::Corrupt(format!(
                "commits of {}/{} whose lists disagree in length",
                c.pipeline_id, c.group
            )));
        }
        let pipeline = self.resolve_group(&c.pipeline_id, c.group)?;
        let mut files = c.files.iter();
        for ((&unit, &lease_id), &count) in c.units.iter().zip(&c.lease_ids).zip(&c.file_counts) {
            let pos = self.resolve_unit(pipeline, c.group, unit, &c.pipeline_id)?;
            self.take_lease_at(pos, lease_id)?;
            let unit_files = files.by_ref().take(count as usize).cloned().collect();
            self.commit_at(pos, lease_id, unit_files);
        }
        Ok(())
    }

    /// Marks the unit at `pos`, whose lease was just taken, committed.
    fn commit_at(&mut self, pos: Pos, lease_id: u64, files: Vec<OutputFile>) {
        self.set_state(pos, UnitState::Committed { lease_id, files });
        self.spawn_downstream(pos);
        self.open_barriers(pos);
    }

    /// Ends the unit's current lease, which must be `lease_id`.
    fn take_lease(&mut self, addr: &Option<UnitAddr>, lease_id: u64) -> Result<Pos, CoreError> {
        let addr = addr
            .as_ref()
            .ok_or_else(|| CoreError::Corrupt("record without a unit".into()))?;
        let pos = self.resolve_addr(addr)?;
        self.take_lease_at(pos, lease_id)?;
        Ok(pos)
    }

    /// Ends the current lease of the unit at `pos`, which must be `lease_id`.
    fn take_lease_at(&mut self, pos: Pos, lease_id: u64) -> Result<(), CoreError> {
        match &self.unit(pos).state {
            UnitState::Leased {
                lease_id: current, ..
            } if *current == lease_id => {}
            _ => {
                return Err(CoreError::Corrupt(format!(
                    "lease {lease_id} is not the unit's current lease"
                )));
            }
        }
        if let Some(clock) = self.leases.remove(&lease_id) {
            self.expiries.remove(clock.expiry_ms);
        }
        Ok(())
    }

    fn leased_worker(&self, pos: Pos) -> String {
        match &self.unit(pos).state {
            UnitState::Leased { worker_id, .. } => worker_id.clone(),
            _ => String::new(),
        }
    }

    /// A failed or expired attempt of the unit at `pos`, whose lease was
    /// just taken (the unit is still leased): the error is kept with the
    /// worker that held the lease and the attempt's duration, and the unit
    /// is queued again (at once or after its retry delay), or fails for
    /// good after its last attempt.
    fn count_failure(&mut self, pos: Pos, failure: Failure, retry: Retry, now_ms: u64) {
        let Failure {
            lease_id,
            error,
            ended_unix_ms,
        } = failure;
        let max_attempts = self.group(pos).wiring.max_attempts;
        let base_ms = self.pipelines[pos.pipeline as usize].spec.groups[pos.group as usize]
            .retry_delay_ms
            .unwrap_or(limits::RETRY_DELAY_MS_DEFAULT);
        let unit = self.unit_mut(pos);
        let (worker_id, duration_ms) = match &mut unit.state {
            UnitState::Leased {
                worker_id,
                granted_unix_ms,
                ..
            } => (
                // The state is replaced below: the name moves, not copied.
                std::mem::take(worker_id),
                attempt_duration_ms(*granted_unix_ms, ended_unix_ms),
            ),
            _ => (String::new(), None),
        };
        unit.failures += 1;
        if unit.errors.len() == limits::ERRORS_KEPT_PER_UNIT {
            unit.errors.remove(0);
        }
        // A unit holds one lease at a time, so the failing attempt is the
        // latest grant.
        unit.errors.push(AttemptError {
            attempt: unit.grants,
            text: names::truncate(&error, limits::ERROR_BYTES_MAX),
            worker_id,
            duration_ms,
        });
        let failures = unit.failures;
        if failures >= max_attempts {
            self.set_state(pos, UnitState::Failed);
            return;
        }
        self.set_state(pos, UnitState::Pending);
        self.pipelines[pos.pipeline as usize].retries += 1;
        let delay_ms = match retry {
            Retry::Now => 0,
            Retry::AfterDelay { waited_ms } => {
                retry_delay_ms(base_ms, failures, lease_id).saturating_sub(waited_ms)
            }
        };
        match delay_ms {
            0 => self.ready.push_back(pos, self.lane(pos.pipeline)),
            delay_ms => {
                self.delayed.insert((now_ms.saturating_add(delay_ms), pos));
            }
        }
    }

    /// Moves units whose retry delay is over to the ready queue; returns
    /// how many.
    pub fn promote_due(&mut self, now_ms: u64) -> usize {
        let mut promoted = 0;
        while let Some(&(due_ms, pos)) = self.delayed.first() {
            if due_ms > now_ms {
                break;
            }
            self.delayed.pop_first();
            self.ready.push_back(pos, self.lane(pos.pipeline));
            promoted += 1;
        }
        promoted
    }

    /// Whether the lease `lease_id` of `incarnation` already ended this
    /// unit's attempt with a recorded outcome (committed, or its failure
    /// recorded): repeats answer OK. A lease of another incarnation with
    /// the same id never did.
    fn finished_by(&self, pos: Pos, lease_id: u64, incarnation: u64, success: bool) -> bool {
        if self.incarnations.of(lease_id) != incarnation {
            return false;
        }
        let unit = self.unit(pos);
        match &unit.state {
            UnitState::Committed { lease_id: by, .. } if success => *by == lease_id,
            _ => !success && unit.failed_lease == lease_id,
        }
    }

    /// A committed unit feeds one unit in each per-unit downstream group:
    /// a new one, or the one a clear dropped, live again under its number.
    fn spawn_downstream(&mut self, pos: Pos) {
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let downstream = pipeline.groups[pos.group as usize]
            .wiring
            .downstream
            .clone();
        for down in downstream {
            let group = &mut self.pipelines[pos.pipeline as usize].groups[down as usize];
            if group.wiring.feed != Feed::PerUnit {
                continue;
            }
            if let Some(unit) = group.revivable.remove(&(pos.group, pos.unit)) {
                let revived = Pos {
                    pipeline: pos.pipeline,
                    group: down,
                    unit,
                };
                self.unit_mut(revived).failures = 0;
                self.set_state(revived, UnitState::Pending);
                self.ready.push_back(revived, self.lane(pos.pipeline));
            } else {
                let source = UnitSource::Upstream {
                    group: pos.group,
                    unit: pos.unit,
                };
                self.add_unit(pos.pipeline, down, source);
            }
        }
    }

    /// After a commit, creates the units of every barrier group downstream
    /// whose upstream groups are now all complete.
    fn open_barriers(&mut self, pos: Pos) {
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let downstream = pipeline.groups[pos.group as usize]
            .wiring
            .downstream
            .clone();
        for down in downstream {
            let pipeline = &self.pipelines[pos.pipeline as usize];
            let group = &pipeline.groups[down as usize];
            let ready = !group.created
                && group
                    .wiring
                    .upstream
                    .iter()
                    .all(|&up| group_complete(pipeline, up));
            if !ready {
                continue;
            }
            let sources: Vec<UnitSource> = match group.wiring.feed {
                Feed::Shuffle { partitions } => {
                    (0..partitions).map(UnitSource::Partition).collect()
                }
                _ => vec![UnitSource::Gather],
            };
            self.pipelines[pos.pipeline as usize].groups[down as usize].created = true;
            for source in sources {
                self.add_unit(pos.pipeline, down, source);
            }
        }
    }

    fn add_unit(&mut self, pipeline: u32, group: u32, source: UnitSource) {
        let g = &mut self.pipelines[pipeline as usize].groups[group as usize];
        let unit = g.units.len() as u32;
        g.units.push(Unit::new(source));
        g.counts.pending += 1;
        let pos = Pos {
            pipeline,
            group,
            unit,
        };
        self.ready.push_back(pos, self.lane(pipeline));
    }

    /// Moves a unit to a new state, keeping the group's counts right.
    fn set_state(&mut self, pos: Pos, state: UnitState) {
        let group = &mut self.pipelines[pos.pipeline as usize].groups[pos.group as usize];
        let unit = &mut group.units[pos.unit as usize];
        *group.counts.slot(&unit.state) -= 1;
        *group.counts.slot(&state) += 1;
        unit.state = state;
    }

    fn resolve_addr(&self, addr: &UnitAddr) -> Result<Pos, CoreError> {
        let pipeline = self.resolve_group(&addr.pipeline_id, addr.group)?;
        self.resolve_unit(pipeline, addr.group, addr.unit, &addr.pipeline_id)
    }

    /// The index of pipeline `pipeline_id`, which must have group `group`.
    fn resolve_group(&self, pipeline_id: &str, group: u32) -> Result<u32, CoreError> {
        let &pipeline = self
            .pipeline_index
            .get(pipeline_id)
            .ok_or_else(|| CoreError::Corrupt(format!("no pipeline {pipeline_id}")))?;
        if group as usize >= self.pipelines[pipeline as usize].groups.len() {
            return Err(CoreError::Corrupt(format!(
                "no group {pipeline_id}/{group}"
            )));
        }
        Ok(pipeline)
    }

    /// The position of unit `unit` of a group [`Core::resolve_group`] found.
    fn resolve_unit(
        &self,
        pipeline: u32,
        group: u32,
        unit: u32,
        pipeline_id: &str,
    ) -> Result<Pos, CoreError> {
        let units = self.pipelines[pipeline as usize].groups[group as usize]
            .units
            .len();
        if unit as usize >= units {
            return Err(CoreError::Corrupt(format!(
                "no unit {pipeline_id}/{group}/{unit}"
            )));
        }
        Ok(Pos {
            pipeline,
            group,
            unit,
        })
    }

    fn addr(&self, pos: Pos) -> UnitAddr {
        UnitAddr {
            pipeline_id: self.pipelines[pos.pipeline as usize].id.clone(),
            group: pos.group,
            unit: pos.unit,
        }
    }

    fn group(&self, pos: Pos) -> &Group {
        &self.pipelines[pos.pipeline as usize].groups[pos.group as usize]
    }

    fn unit(&self, pos: Pos) -> &Unit {
        &self.group(pos).units[pos.unit as usize]
    }

    fn unit_mut(&mut self, pos: Pos) -> &mut Unit {
        &mut self.pipelines[pos.pipeline as usize].groups[pos.group as usize].units
            [pos.unit as usize]
    }
}

/// When a failed attempt's unit may run again. A task that failed waits
/// out the group's retry delay (a flaky dependency gets time to recover);
/// an expired lease means the worker died or stalled, not the task, so the
/// unit is queued again at once (it still counts as an attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Now,
    /// After the delay, less what was already waited (a failure replayed
    /// after a restart counts the time since it was journaled).
    AfterDelay {
        waited_ms: u64,
    },
}

/// A lease being granted: to whom, for how long, and when (wall clock; 0
/// when not known).
struct Granted<'a> {
    worker_id: &'a str,
    lease_ms: u64,
    unix_ms: u64,
}

/// A failed or expired attempt, as its record says: the lease, the error,
/// and when the attempt ended (wall clock; 0 when not known).
struct Failure {
    lease_id: u64,
    error: String,
    ended_unix_ms: u64,
}

/// An attempt's duration from its grant to its end (wall-clock times from
/// journaled records); None when either is not known. A wall clock that
/// went back in between gives 0, never a wrap.
fn attempt_duration_ms(granted_unix_ms: u64, ended_unix_ms: u64) -> Option<u64> {
    (granted_unix_ms != 0 && ended_unix_ms != 0)
        .then(|| ended_unix_ms.saturating_sub(granted_unix_ms))
}

/// The wall clock's reading at one reading of the monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
struct WallAnchor {
    now_ms: u64,
    unix_ms: u64,
}

/// The delay before attempt `failures + 1`: the base doubled per failure,
/// capped, with ±20% jitter derived from the lease id (deterministic, so a
/// replay computes the same delay; spread, so retries do not stampede).
fn retry_delay_ms(base_ms: u64, failures: u32, lease_id: u64) -> u64 {
    let doubled = base_ms.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(limits::RETRY_DELAY_MS_MAX);
    let spread = lease_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58; // 0..=63
    capped / 100 * (80 + spread * 40 / 63)
}

/// A group is complete when its units exist and are all committed and its
/// upstream groups are complete: then no unit can be added to it any more.
/// Recursion depth is bounded by the number of groups (a validated DAG).
pub(crate) fn group_complete(pipeline: &Pipeline, group: u32) -> bool {
    let g = &pipeline.groups[group as usize];
    g.created
        && g.counts.committed == g.counts.total()
        && g.wiring
            .upstream
            .iter()
            .all(|&up| group_complete(pipeline, up))
}

/// A first group's units: one per sized input unit, one per input file, or
/// one reading nothing.
fn first_units(spec: &GroupSpec) -> Units {
    if !spec.input_units.is_empty() {
        return spec
            .input_units
            .iter()
            .map(|u| Unit::new(UnitSource::Given(u.clone())))
            .collect();
    }
    if spec.inputs.is_empty() {
        return std::iter::once(Unit::new(UnitSource::Nothing)).collect();
    }
    let given = |path: &String| InputUnit {
        files: vec![path.clone()],
        slices: Vec::new(),
    };
    spec.inputs
        .iter()
        .map(|path| Unit::new(UnitSource::Given(given(path))))
        .collect()
}

fn record(kind: Kind) -> Record {
    Record { kind: Some(kind) }
}

#[cfg(test)]
mod finished_tests;
#[cfg(test)]
mod model_test;
#[cfg(test)]
mod operate_tests;
#[cfg(test)]
mod reply_size_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;
