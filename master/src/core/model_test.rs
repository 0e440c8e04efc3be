//! Property test: random sequences of every operation (worker calls, the
//! operator's actions, snapshots, rollbacks, restarts from the journal with
//! a new incarnation), checked against a small reference model of what each
//! unit's state, each group's config version and each answer must be.
//! Every step runs `check_invariants` and compares counts and outputs.
//! proptest shrinks a failing sequence to a short one and prints it;
//! `TM_PROPTEST_CASES` sets how many sequences run (default 96).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message as _;
use taskmaster_proto::journal::{Record, Snapshot};
use taskmaster_proto::v1::{
    CommitItem, GroupConfigChange, Lease, LeaseRef, PipelineState, UnitCounts, commit_item,
};

use super::tests::{LEASE_MS, core, done, lease_ref, two_groups};
use super::{Core, CoreError, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Pending,
    Leased {
        lease_id: u64,
        incarnation: u64,
        expiry_ms: u64,
    },
    Committed {
        lease_id: u64,
        incarnation: u64,
    },
    Failed,
    /// Derived from outputs a clear reset: kept so indices never shift.
    Dropped,
}

/// (pipeline id, group name, unit index).
type Key = (String, String, u32);

/// What the core must hold, kept by the simplest rules that say it.
#[derive(Debug, Clone, Default)]
struct Model {
    /// Each unit's state and its failures so far.
    units: BTreeMap<Key, (Want, u32)>,
    /// Per unit, the lease (id, incarnation) whose failure was recorded
    /// last: a repeat of that report answers OK.
    failed_leases: BTreeMap<Key, (u64, u64)>,
    /// Each group's config version.
    versions: BTreeMap<(String, String), u64>,
    cancelled: BTreeSet<String>,
    blocked: bool,
    /// Each unit of b's unit of a (the one whose output it reads).
    sources: BTreeMap<Key, u32>,
    /// A cleared a's dropped units of b, by (pipeline, unit of a): the
    /// next commit of that unit of a makes it pending again, same number.
    revivable: BTreeMap<(String, u32), u32>,
}

const MAX_ATTEMPTS: u32 = 2; // what two_groups() asks for
const GROUPS: [&str; 2] = ["a", "b"];

impl Model {
    fn key(lease_ref: &LeaseRef) -> Key {
        let unit = lease_ref.unit.as_ref().unwrap();
        (unit.pipeline_id.clone(), unit.group.clone(), unit.unit)
    }

    /// What the core must answer for `lease_ref`: `outcome` is Some(success)
    /// for a commit or failure report, None for a renewal or release
    /// (which answer OK for any finished attempt of the lease).
    fn check(
        &self,
        lease_ref: &LeaseRef,
        now: u64,
        outcome: Option<bool>,
    ) -> Result<(), &'static str> {
        let key = Self::key(lease_ref);
        let Some(&(state, _)) = self.units.get(&key) else {
            return Err("unknown");
        };
        let this = (lease_ref.lease_id, lease_ref.incarnation);
        let committed = state
            == (Want::Committed {
                lease_id: this.0,
                incarnation: this.1,
            });
        let failed = self.failed_leases.get(&key) == Some(&this);
        let repeat = match outcome {
            Some(true) => committed,
            Some(false) => failed,
            None => committed || failed,
        };
        if repeat {
            return Ok(());
        }
        if self.cancelled.contains(&key.0) {
            return Err("lost");
        }
        if lease_ref.config_version != self.versions[&(key.0.clone(), key.1.clone())] {
            return Err("stale");
        }
        match state {
            Want::Leased {
                lease_id,
                incarnation,
                expiry_ms,
            } if (lease_id, incarnation) == this && expiry_ms > now => Ok(()),
            _ => Err("lost"),
        }
    }

    /// Whether `lease` is its unit's current lease.
    fn holds(&self, lease: &Lease) -> bool {
        let state = self.units[&Self::key(&lease_ref(lease))].0;
        matches!(state, Want::Leased { lease_id, incarnation, .. }
            if (lease_id, incarnation) == (lease.lease_id, lease.incarnation))
    }

    fn fail(&mut self, key: &Key) {
        let (state, failures) = self.units.get_mut(key).unwrap();
        *failures += 1;
        *state = if *failures >= MAX_ATTEMPTS {
            Want::Failed
        } else {
            Want::Pending
        };
    }

    /// Leased units of `pipeline` (and `group`, if given) back to pending,
    /// their leases void: what a config change, a cancel, a clear and a
    /// rollback do.
    fn requeue(&mut self, pipeline: &str, group: Option<&str>) {
        for ((p, g, _), (state, _)) in self.units.iter_mut() {
            if p == pipeline
                && group.is_none_or(|want| want == g)
                && matches!(state, Want::Leased { .. })
            {
                *state = Want::Pending;
            }
        }
    }

    fn pipelines(&self) -> Vec<String> {
        let ids: BTreeSet<String> = self.versions.keys().map(|(p, _)| p.clone()).collect();
        ids.into_iter().collect()
    }

    fn unit_states<'a>(&'a self, pipeline: &'a str) -> impl Iterator<Item = Want> + 'a {
        self.units
            .iter()
            .filter(move |((p, _, _), _)| p == pipeline)
            .map(|(_, (state, _))| *state)
    }

    /// Succeeded, failed or cancelled: nothing pending or leased (every
    /// pipeline here has at least one unit from its submission).
    fn finished(&self, pipeline: &str) -> bool {
        self.cancelled.contains(pipeline)
            || !self
                .unit_states(pipeline)
                .any(|s| matches!(s, Want::Pending | Want::Leased { .. }))
    }

    fn counts(&self, pipeline: &str, group: &str) -> UnitCounts {
        let mut c = UnitCounts::default();
        for ((p, g, _), (state, _)) in &self.units {
            if p == pipeline && g == group {
                match state {
                    Want::Pending => c.pending += 1,
                    Want::Leased { .. } => c.leased += 1,
                    Want::Committed { .. } => c.committed += 1,
                    Want::Failed => c.failed += 1,
                    Want::Dropped => {}
                }
            }
        }
        c
    }
}

fn kind(result: &Result<(), Refusal>) -> Result<(), &'static str> {
    match result {
        Ok(()) => Ok(()),
        Err(Refusal::UnknownUnit(_)) => Err("unknown"),
        Err(Refusal::StaleConfig { .. }) => Err("stale"),
        Err(Refusal::LeaseLost(_)) => Err("lost"),
        Err(Refusal::Invalid(_)) => Err("invalid"),
        Err(Refusal::AlreadyCommitted(_)) => Err("already committed"),
    }
}

/// One step. `pick`s choose among what exists at that point (modulo its
/// count), so every sequence is valid and shrinks well.
#[derive(Debug, Clone)]
enum Op {
    Submit {
        inputs: u32,
    },
    Lease {
        max: usize,
    },
    Finish {
        pick: usize,
        success: bool,
        twist: Twist,
    },
    Release {
        pick: usize,
    },
    Renew {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    Expire,
    ToggleBlock,
    DeleteFinished {
        pick: usize,
    },
    SnapshotRoundTrip,
    Restart,
    ChangeConfig {
        pick: usize,
        group: usize,
    },
    Cancel {
        pick: usize,
    },
    Retry {
        pick: usize,
    },
    Clear {
        pick: usize,
        group: usize,
    },
    TakeSnapshot,
    Rollback {
        pick: usize,
    },
}

/// How a commit is sent: as granted, or with something wrong in it.
#[derive(Debug, Clone, Copy)]
enum Twist {
    AsGranted,
    StaleVersion,
    OtherIncarnation,
    WrongToken,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    let twist = prop_oneof![
        16 => Just(Twist::AsGranted),
        2 => Just(Twist::StaleVersion),
        1 => Just(Twist::OtherIncarnation),
        1 => Just(Twist::WrongToken),
    ];
    prop_oneof![
        8 => (1..4u32).prop_map(|inputs| Op::Submit { inputs }),
        20 => (1..4usize).prop_map(|max| Op::Lease { max }),
        22 => (pick, twist.clone()).prop_map(|(pick, twist)| Op::Finish { pick, success: true, twist }),
        7 => (pick, twist).prop_map(|(pick, twist)| Op::Finish { pick, success: false, twist }),
        5 => pick.prop_map(|pick| Op::Release { pick }),
        7 => pick.prop_map(|pick| Op::Renew { pick }),
        12 => (0..LEASE_MS / 2).prop_map(|ms| Op::Advance { ms }),
        7 => Just(Op::Expire),
        1 => Just(Op::ToggleBlock),
        2 => pick.prop_map(|pick| Op::DeleteFinished { pick }),
        1 => Just(Op::SnapshotRoundTrip),
        2 => Just(Op::Restart),
        3 => (pick, 0..2usize).prop_map(|(pick, group)| Op::ChangeConfig { pick, group }),
        1 => pick.prop_map(|pick| Op::Cancel { pick }),
        2 => pick.prop_map(|pick| Op::Retry { pick }),
        2 => (pick, 0..2usize).prop_map(|(pick, group)| Op::Clear { pick, group }),
        1 => Just(Op::TakeSnapshot),
        1 => pick.prop_map(|pick| Op::Rollback { pick }),
    ]
}

struct Run {
    core: Core,
    model: Model,
    /// The journal since `base` (a snapshot after a rollback, as the
    /// master writes one), what a restart recovers from.
    base: Option<Snapshot>,
    journal: Vec<Record>,
    /// Every lease ever granted: zombies commit with them too.
    leases: Vec<Lease>,
    /// Snapshots taken, with the model at that point.
    snapshots: Vec<(Snapshot, Model)>,
    next_pipeline: u32,
    next_incarnation: u64,
    now: u64,
}

impl Run {
    fn new() -> Run {
        let mut run = Run {
            core: core(),
            model: Model::default(),
            base: None,
            journal: vec![Core::init_record("tok", 1)],
            leases: Vec::new(),
            snapshots: Vec::new(),
            next_pipeline: 0,
            next_incarnation: 0x1000,
            now: 0,
        };
        run.start();
        run
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Submit { inputs } => self.submit(inputs),
            Op::Lease { max } => self.lease(max),
            Op::Finish {
                pick,
                success,
                twist,
            } => self.finish(pick, success, twist),
            Op::Release { pick } => self.release(pick),
            Op::Renew { pick } => self.renew(pick),
            Op::Advance { ms } => self.now += ms,
            Op::Expire => self.expire(),
            Op::ToggleBlock => self.toggle_block(),
            Op::DeleteFinished { pick } => self.delete_finished(pick),
            Op::SnapshotRoundTrip => self.snapshot_round_trip(),
            Op::Restart => self.restart(),
            Op::ChangeConfig { pick, group } => self.change_config(pick, group),
            Op::Cancel { pick } => self.cancel(pick),
            Op::Retry { pick } => self.retry(pick),
            Op::Clear { pick, group } => self.clear(pick, group),
            Op::TakeSnapshot => self.take_snapshot(),
            Op::Rollback { pick } => self.rollback(pick),
        }
        self.core.check_invariants().unwrap();
        self.compare();
    }

    /// A new incarnation, journaled, as every start of a master does.
    fn start(&mut self) {
        self.next_incarnation += 1;
        let started = self.core.start(self.next_incarnation, 0, self.now).unwrap();
        self.journal.push(started);
    }

    fn submit(&mut self, inputs: u32) {
        let id = format!("p-{}", self.next_pipeline);
        self.next_pipeline += 1;
        let records = self
            .core
            .submit(&id, two_groups(inputs as usize), 0, self.now)
            .unwrap();
        self.journal.extend(records);
        for u in 0..inputs {
            self.model
                .units
                .insert((id.clone(), "a".into(), u), (Want::Pending, 0));
        }
        for group in GROUPS {
            self.model.versions.insert((id.clone(), group.into()), 1);
        }
    }

    fn lease(&mut self, max: usize) {
        let pending = if self.model.blocked {
            0
        } else {
            (self.model.units.iter())
                .filter(|((p, _, _), (s, _))| {
                    *s == Want::Pending && !self.model.cancelled.contains(p)
                })
                .count()
        };
        let (records, leases) = self.core.lease("w", max, false, self.now).unwrap();
        assert_eq!(leases.len(), max.min(pending), "grants");
        for lease in &leases {
            let key = Model::key(&lease_ref(lease));
            let version = self.model.versions[&(key.0.clone(), key.1.clone())];
            assert_eq!(lease.config_version, version, "{key:?}");
            assert_eq!(lease.incarnation, self.next_incarnation);
            let entry = self.model.units.get_mut(&key).unwrap();
            assert_eq!(entry.0, Want::Pending, "granted a unit that is not pending");
            entry.0 = Want::Leased {
                lease_id: lease.lease_id,
                incarnation: lease.incarnation,
                expiry_ms: self.now + LEASE_MS,
            };
        }
        assert!(leases.windows(2).all(|w| w[0].lease_id < w[1].lease_id));
        self.journal.extend(records);
        self.leases.extend(leases);
    }

    /// Commits (or fails) a lease ever granted, perhaps twisted.
    fn finish(&mut self, pick: usize, success: bool, twist: Twist) {
        let Some(lease) = self.pick(pick) else { return };
        let mut item = if success {
            done(&lease, &["out"])
        } else {
            CommitItem {
                lease: Some(lease_ref(&lease)),
                result: Some(commit_item::Result::Error("e".into())),
            }
        };
        let sent = item.lease.as_mut().unwrap();
        match twist {
            Twist::AsGranted => {}
            Twist::StaleVersion => sent.config_version = 999_999,
            Twist::OtherIncarnation => sent.incarnation ^= 0x5a5a,
            Twist::WrongToken => {
                let err = self.core.commit("bad", &[item], self.now).unwrap_err();
                assert!(matches!(err, CoreError::WrongMaster { .. }));
                return;
            }
        }
        let sent = sent.clone();
        let want = self.model.check(&sent, self.now, Some(success));
        let (records, results) = self.core.commit("tok", &[item], self.now).unwrap();
        assert_eq!(
            kind(&results[0]),
            want,
            "commit of {sent:?} at {}",
            self.now
        );
        if want.is_ok() && !records.is_empty() {
            self.apply_finish(&lease, success);
        }
        self.journal.extend(records);
    }

    fn apply_finish(&mut self, lease: &Lease, success: bool) {
        let key = Model::key(&lease_ref(lease));
        if !success {
            self.model
                .failed_leases
                .insert(key.clone(), (lease.lease_id, lease.incarnation));
            return self.model.fail(&key);
        }
        self.model.units.get_mut(&key).unwrap().0 = Want::Committed {
            lease_id: lease.lease_id,
            incarnation: lease.incarnation,
        };
        if key.1 == "a" {
            // Each committed unit of a feeds one unit of b: the one a clear
            // dropped, pending again, or a new one appended.
            let (p, a_unit) = (key.0, key.2);
            if let Some(b_unit) = self.model.revivable.remove(&(p.clone(), a_unit)) {
                let b = self.model.units.get_mut(&(p, "b".into(), b_unit)).unwrap();
                *b = (Want::Pending, 0);
                return;
            }
            let next = (self.model.units.keys())
                .filter(|k| k.0 == p && k.1 == "b")
                .count() as u32;
            let b = (p, "b".to_string(), next);
            self.model.sources.insert(b.clone(), a_unit);
            self.model.units.insert(b, (Want::Pending, 0));
        }
    }

    fn release(&mut self, pick: usize) {
        let Some(lease) = self.pick(pick) else { return };
        let want = self.model.check(&lease_ref(&lease), self.now, None);
        let (records, results) = (self.core)
            .release("tok", &[lease_ref(&lease)], self.now)
            .unwrap();
        assert_eq!(kind(&results[0]), want);
        let holds = self
            .model
            .units
            .contains_key(&Model::key(&lease_ref(&lease)))
            && self.model.holds(&lease);
        assert_eq!(records.is_empty(), !(want.is_ok() && holds));
        if !records.is_empty() {
            let key = Model::key(&lease_ref(&lease));
            self.model.units.get_mut(&key).unwrap().0 = Want::Pending;
        }
        self.journal.extend(records);
    }

    fn renew(&mut self, pick: usize) {
        let Some(lease) = self.pick(pick) else { return };
        let want = self.model.check(&lease_ref(&lease), self.now, None);
        let results = (self.core)
            .renew("tok", &[lease_ref(&lease)], self.now)
            .unwrap();
        assert_eq!(kind(&results[0]), want);
        if want.is_ok() && self.model.holds(&lease) {
            let key = Model::key(&lease_ref(&lease));
            self.model.units.get_mut(&key).unwrap().0 = Want::Leased {
                lease_id: lease.lease_id,
                incarnation: lease.incarnation,
                expiry_ms: self.now + LEASE_MS,
            };
        }
    }

    fn expire(&mut self) {
        let records = self.core.expire(self.now);
        let due: Vec<Key> = (self.model.units.iter())
            .filter(
                |(_, (s, _))| matches!(s, Want::Leased { expiry_ms, .. } if *expiry_ms <= self.now),
            )
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(records.len(), due.len(), "expired leases");
        for key in &due {
            self.model.fail(key);
        }
        self.journal.extend(records);
    }

    /// A global block: no leases at all until unblocked; journaled.
    fn toggle_block(&mut self) {
        let blocked = !self.model.blocked;
        self.journal
            .extend(self.core.block("", blocked, self.now).unwrap());
        self.model.blocked = blocked;
    }

    /// Records finish times, then deletes a finished pipeline; the model
    /// forgets it, and none of its units may be running.
    fn delete_finished(&mut self, pick: usize) {
        let unrecorded = self.core.finished_unrecorded();
        if !unrecorded.is_empty() {
            let records = self.core.record_finished(&unrecorded, 1_000, self.now);
            self.journal.extend(records.unwrap());
        }
        let finished = self.core.finished_pipelines();
        let model_finished: BTreeSet<String> = (self.model.pipelines().into_iter())
            .filter(|p| self.model.finished(p))
            .collect();
        assert_eq!(
            finished.iter().cloned().collect::<BTreeSet<_>>(),
            model_finished,
            "finished pipelines"
        );
        if finished.is_empty() {
            return;
        }
        let id = finished[pick % finished.len()].clone();
        self.journal.extend(
            self.core
                .delete_pipelines(std::slice::from_ref(&id), self.now)
                .unwrap(),
        );
        let cancelled = self.model.cancelled.remove(&id);
        self.model.units.retain(|(p, _, _), (state, _)| {
            let gone = *p == id;
            assert!(
                !gone || cancelled || !matches!(state, Want::Pending | Want::Leased { .. }),
                "deleted {id} with a unit {state:?}"
            );
            !gone
        });
        self.model.versions.retain(|(p, _), _| *p != id);
        self.model.failed_leases.retain(|(p, _, _), _| *p != id);
        assert!(self.core.status(&id).is_err());
    }

    /// State written as a snapshot and read back behaves like a restart.
    fn snapshot_round_trip(&mut self) {
        let snap = self.core.to_snapshot(self.journal.len() as u64, self.now);
        // The bottom-up encoder the master writes snapshots with decodes
        // to exactly this snapshot, whatever state the steps left.
        let head = Snapshot {
            pipelines: Vec::new(),
            ..snap.clone()
        };
        let bytes = self.core.snapshot_source(self.now).encode_with_head(&head);
        assert_eq!(Snapshot::decode(bytes.as_slice()).unwrap(), snap);
        self.core = Core::from_snapshot(self.core.config().clone(), &snap, self.now, 0).unwrap();
        self.leases_restart_their_clocks();
    }

    /// A crash and restart: the core is rebuilt from the journal alone (on
    /// the snapshot a rollback left), held leases get a full lease time
    /// from now and stay valid, and the new start has a new incarnation.
    fn restart(&mut self) {
        let config = self.core.config().clone();
        self.core = match &self.base {
            None => Core::recover(config, self.journal.clone(), self.now).unwrap(),
            Some(base) => {
                let mut core = Core::from_snapshot(config, base, self.now, 0).unwrap();
                core.replay(self.journal.clone(), 0, self.now).unwrap();
                core
            }
        };
        self.leases_restart_their_clocks();
        self.start();
    }

    fn leases_restart_their_clocks(&mut self) {
        for (state, _) in self.model.units.values_mut() {
            if let Want::Leased { expiry_ms, .. } = state {
                *expiry_ms = self.now + LEASE_MS;
            }
        }
    }

    fn pick_pipeline(&self, pick: usize) -> Option<String> {
        let ids = self.model.pipelines();
        (!ids.is_empty()).then(|| ids[pick % ids.len()].clone())
    }

    /// Check 2 for real: a config change bumps the group's version, so
    /// every lease granted before it is refused as stale.
    fn change_config(&mut self, pick: usize, group: usize) {
        let Some(id) = self.pick_pipeline(pick) else {
            return;
        };
        let group = GROUPS[group];
        let change = GroupConfigChange {
            env: [("K".to_string(), format!("v{}", self.now))].into(),
            ..Default::default()
        };
        let result = self.core.change_config(&id, group, change, self.now);
        if self.model.cancelled.contains(&id) {
            assert!(
                matches!(result, Err(CoreError::FailedPrecondition(_))),
                "{result:?}"
            );
            return;
        }
        let (records, _, version) = result.unwrap();
        let want = self
            .model
            .versions
            .get_mut(&(id.clone(), group.into()))
            .unwrap();
        *want += 1;
        assert_eq!(version, *want);
        self.model.requeue(&id, Some(group));
        self.journal.extend(records);
    }

    fn cancel(&mut self, pick: usize) {
        let Some(id) = self.pick_pipeline(pick) else {
            return;
        };
        let result = self.core.cancel(&id, self.now);
        if self.model.finished(&id) {
            assert!(
                matches!(result, Err(CoreError::FailedPrecondition(_))),
                "{result:?}"
            );
            return;
        }
        self.journal.extend(result.unwrap());
        self.model.cancelled.insert(id.clone());
        self.model.requeue(&id, None);
    }

    fn retry(&mut self, pick: usize) {
        let Some(id) = self.pick_pipeline(pick) else {
            return;
        };
        let result = self.core.retry(&id, None, None, self.now);
        let failed = self
            .model
            .unit_states(&id)
            .filter(|s| *s == Want::Failed)
            .count();
        if self.model.cancelled.contains(&id) || failed == 0 {
            assert!(
                matches!(result, Err(CoreError::FailedPrecondition(_))),
                "{result:?}"
            );
            return;
        }
        let (records, changed) = result.unwrap();
        assert_eq!(changed.units_reset, failed as u64);
        for ((p, _, _), (state, failures)) in self.model.units.iter_mut() {
            if *p == id && *state == Want::Failed {
                (*state, *failures) = (Want::Pending, 0);
            }
        }
        self.journal.extend(records);
    }

    /// Clears `a` (with what it fed downstream: `b`'s units are dropped and
    /// derived again as `a` commits again) or `b` alone.
    fn clear(&mut self, pick: usize, group: usize) {
        let Some(id) = self.pick_pipeline(pick) else {
            return;
        };
        let group = GROUPS[group];
        let result = self.core.clear(&id, group, group == "a", self.now);
        if self.model.cancelled.contains(&id) {
            assert!(
                matches!(result, Err(CoreError::FailedPrecondition(_))),
                "{result:?}"
            );
            return;
        }
        self.journal.extend(result.unwrap().0);
        self.model.requeue(&id, Some(group));
        for (key, (state, failures)) in self.model.units.iter_mut() {
            let (p, g, u) = key;
            if *p != id || *state == Want::Dropped {
                continue;
            }
            if g == group {
                (*state, *failures) = (Want::Pending, 0);
            } else if group == "a" {
                *state = Want::Dropped;
                let a_unit = self.model.sources[key];
                self.model.revivable.insert((p.clone(), a_unit), *u);
            }
        }
    }

    fn take_snapshot(&mut self) {
        let snap = self.core.to_snapshot(0, self.now);
        self.snapshots.push((snap, self.model.clone()));
    }

    /// Back to a snapshot: its pipelines and units, every config version
    /// past both the snapshot's and the current one, no lease out; the
    /// master then writes the result as a snapshot and journals after it.
    fn rollback(&mut self, pick: usize) {
        if self.snapshots.is_empty() {
            return;
        }
        let (snap, saved) = self.snapshots[pick % self.snapshots.len()].clone();
        let config = self.core.config().clone();
        let restored = Core::from_snapshot(config, &snap, self.now, 0).unwrap();
        let (core, _) = self.core.rolled_back(restored, self.now);
        self.core = core;
        let mut model = saved;
        for (key, version) in model.versions.iter_mut() {
            let now = self.model.versions.get(key).copied().unwrap_or(0);
            *version = (*version).max(now) + 1;
        }
        for id in model.pipelines() {
            model.requeue(&id, None);
        }
        self.model = model;
        self.base = Some(self.core.to_snapshot(0, self.now));
        self.journal.clear();
    }

    fn pick(&self, pick: usize) -> Option<Lease> {
        (!self.leases.is_empty()).then(|| self.leases[pick % self.leases.len()].clone())
    }

    fn compare(&self) {
        let listed = self.core.list();
        let ids: Vec<String> = listed.iter().map(|s| s.pipeline_id.clone()).collect();
        let mut want_ids = self.model.pipelines();
        want_ids.sort_by_key(|id| id[2..].parse::<u32>().unwrap());
        assert_eq!(ids, want_ids, "pipelines");
        for status in listed {
            let id = &status.pipeline_id;
            assert_eq!(
                status.state() == PipelineState::Cancelled,
                self.model.cancelled.contains(id)
            );
            for group in &status.groups {
                let want = self.model.counts(id, &group.name);
                assert_eq!(group.counts.unwrap(), want, "{id}/{}", group.name);
                let version = self.model.versions[&(id.clone(), group.name.clone())];
                assert_eq!(group.config_version, version, "{id}/{}", group.name);
            }
            for group in GROUPS {
                for out in self.core.outputs(id, group).unwrap() {
                    let key = (id.clone(), group.to_string(), out.unit);
                    assert_eq!(
                        self.model.units[&key].0,
                        Want::Committed {
                            lease_id: out.lease_id,
                            incarnation: out.incarnation,
                        }
                    );
                }
            }
        }
    }
}

#[test]
fn random_operations_match_the_reference_model() {
    let cases = std::env::var("TM_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96);
    let config = Config {
        cases,
        // Nothing written into the source tree; a failure prints its
        // shrunk sequence instead.
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&proptest::collection::vec(op(), 1..300), |ops| {
            let mut run = Run::new();
            for op in &ops {
                run.step(op);
            }
            Ok(())
        })
        .unwrap();
}
