//! Property test: random operation sequences, restarts from the journal
//! included, against a small reference model of what each unit's state must
//! be. Every step checks the core's answers and counts against the model
//! and runs `check_invariants`. Seeded; a failure prints its seed.

use std::collections::BTreeMap;

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taskmaster_proto::journal::{Record, Snapshot};
use taskmaster_proto::v1::{CommitItem, Lease, LeaseRef, UnitCounts, commit_item};

use super::tests::{LEASE_MS, core, done, lease_ref, two_groups};
use super::{Core, CoreError, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Pending,
    Leased { lease_id: u64, expiry_ms: u64 },
    Committed { lease_id: u64 },
    Failed,
}

/// (pipeline id, group name, unit index) -> expected state and failures.
type Key = (String, String, u32);

#[derive(Default)]
struct Model {
    units: BTreeMap<Key, (Want, u32)>,
    /// Per unit, the lease whose failure was recorded last (the core
    /// remembers only that one for answering repeats).
    failed_leases: BTreeMap<Key, u64>,
    blocked: bool,
    pipelines: u32,
}

const MAX_ATTEMPTS: u32 = 2; // what two_groups() asks for

impl Model {
    fn key(lease_ref: &LeaseRef) -> Key {
        let unit = lease_ref.unit.as_ref().unwrap();
        (unit.pipeline_id.clone(), unit.group.clone(), unit.unit)
    }

    /// What the core must answer for a commit/fail/release of `lease_ref`.
    /// `outcome`: Some(success) for a commit or failure report, None for a
    /// renewal or release (which answer OK for any finished attempt).
    fn check(
        &self,
        lease_ref: &LeaseRef,
        now: u64,
        outcome: Option<bool>,
    ) -> Result<(), &'static str> {
        let Some(&(state, _)) = self.units.get(&Self::key(lease_ref)) else {
            return Err("unknown");
        };
        let committed = state
            == (Want::Committed {
                lease_id: lease_ref.lease_id,
            });
        let failed = self.failed_leases.get(&Self::key(lease_ref)) == Some(&lease_ref.lease_id);
        let repeat = match outcome {
            Some(true) => committed,
            Some(false) => failed,
            None => committed || failed,
        };
        if repeat {
            return Ok(());
        }
        if lease_ref.config_version != 1 {
            return Err("stale");
        }
        match state {
            Want::Leased {
                lease_id,
                expiry_ms,
            } if lease_id == lease_ref.lease_id && expiry_ms > now => Ok(()),
            _ => Err("lost"),
        }
    }

    /// Whether `lease` is its unit's current lease.
    fn holds(&self, lease: &Lease) -> bool {
        let state = self.units[&Self::key(&lease_ref(lease))].0;
        matches!(state, Want::Leased { lease_id, .. } if lease_id == lease.lease_id)
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

    fn counts(&self, pipeline: &str, group: &str) -> UnitCounts {
        let mut c = UnitCounts::default();
        for ((p, g, _), (state, _)) in &self.units {
            if p == pipeline && g == group {
                match state {
                    Want::Pending => c.pending += 1,
                    Want::Leased { .. } => c.leased += 1,
                    Want::Committed { .. } => c.committed += 1,
                    Want::Failed => c.failed += 1,
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

struct Run {
    rng: StdRng,
    core: Core,
    model: Model,
    journal: Vec<Record>,
    leases: Vec<Lease>,
    now: u64,
}

impl Run {
    fn step(&mut self) {
        match self.rng.random_range(0..100) {
            0..8 => self.submit(),
            8..30 => self.lease(),
            30..55 => self.finish(true),
            55..62 => self.finish(false),
            62..67 => self.release(),
            67..75 => self.renew(),
            75..88 => self.now += self.rng.random_range(0..LEASE_MS / 2),
            88..95 => self.expire(),
            95 => self.toggle_block(),
            96 => self.delete_finished(),
            97 => self.snapshot_round_trip(),
            _ => self.restart(),
        }
        self.core.check_invariants().unwrap();
        self.compare();
    }

    fn submit(&mut self) {
        let id = format!("p-{}", self.model.pipelines);
        self.model.pipelines += 1;
        let inputs = self.rng.random_range(1..4);
        self.journal.extend(
            self.core
                .submit(&id, two_groups(inputs), 0, self.now)
                .unwrap(),
        );
        for u in 0..inputs as u32 {
            self.model
                .units
                .insert((id.clone(), "a".into(), u), (Want::Pending, 0));
        }
    }

    fn lease(&mut self) {
        let max = self.rng.random_range(1..4);
        let pending = if self.model.blocked { 0 } else { usize::MAX };
        let pending = pending.min(
            self.model
                .units
                .values()
                .filter(|(s, _)| *s == Want::Pending)
                .count(),
        );
        let (records, leases) = self.core.lease("w", max, false, self.now).unwrap();
        assert_eq!(leases.len(), max.min(pending), "grants");
        for lease in &leases {
            let entry = self
                .model
                .units
                .get_mut(&Model::key(&lease_ref(lease)))
                .unwrap();
            assert_eq!(entry.0, Want::Pending, "granted a unit that is not pending");
            entry.0 = Want::Leased {
                lease_id: lease.lease_id,
                expiry_ms: self.now + LEASE_MS,
            };
        }
        assert!(leases.windows(2).all(|w| w[0].lease_id < w[1].lease_id));
        self.journal.extend(records);
        self.leases.extend(leases);
    }

    /// Commits (or fails) a random lease ever granted, sometimes with a
    /// stale config version or the wrong token.
    fn finish(&mut self, success: bool) {
        let Some(lease) = self.pick() else { return };
        let mut item = if success {
            done(&lease, &["out"])
        } else {
            CommitItem {
                lease: Some(lease_ref(&lease)),
                result: Some(commit_item::Result::Error("e".into())),
            }
        };
        if self.rng.random_bool(0.1) {
            item.lease.as_mut().unwrap().config_version = 2;
        }
        if self.rng.random_bool(0.05) {
            let err = self.core.commit("bad", &[item], self.now).unwrap_err();
            assert!(matches!(err, CoreError::WrongMaster { .. }));
            return;
        }
        let lease_ref = item.lease.clone().unwrap();
        let want = self.model.check(&lease_ref, self.now, Some(success));
        let (records, results) = self.core.commit("tok", &[item], self.now).unwrap();
        assert_eq!(
            kind(&results[0]),
            want,
            "commit of {lease_ref:?} at {}",
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
            self.model.failed_leases.insert(key.clone(), lease.lease_id);
            return self.model.fail(&key);
        }
        self.model.units.get_mut(&key).unwrap().0 = Want::Committed {
            lease_id: lease.lease_id,
        };
        if key.1 == "a" {
            let next = self
                .model
                .units
                .keys()
                .filter(|k| k.0 == key.0 && k.1 == "b")
                .count() as u32;
            self.model
                .units
                .insert((key.0, "b".into(), next), (Want::Pending, 0));
        }
    }

    fn release(&mut self) {
        let Some(lease) = self.pick() else { return };
        let want = self.model.check(&lease_ref(&lease), self.now, None);
        let (records, results) = self
            .core
            .release("tok", &[lease_ref(&lease)], self.now)
            .unwrap();
        assert_eq!(kind(&results[0]), want);
        assert_eq!(
            records.is_empty(),
            !(want.is_ok() && self.model.holds(&lease))
        );
        if !records.is_empty() {
            self.model
                .units
                .get_mut(&Model::key(&lease_ref(&lease)))
                .unwrap()
                .0 = Want::Pending;
        }
        self.journal.extend(records);
    }

    fn renew(&mut self) {
        let Some(lease) = self.pick() else { return };
        let want = self.model.check(&lease_ref(&lease), self.now, None);
        let results = self
            .core
            .renew("tok", &[lease_ref(&lease)], self.now)
            .unwrap();
        assert_eq!(kind(&results[0]), want);
        if want.is_ok() && self.model.holds(&lease) {
            let expiry = self.now + LEASE_MS;
            self.model
                .units
                .get_mut(&Model::key(&lease_ref(&lease)))
                .unwrap()
                .0 = Want::Leased {
                lease_id: lease.lease_id,
                expiry_ms: expiry,
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

    /// A crash and restart: the core is rebuilt from the journal alone, and
    /// held leases get a full lease time from now.
    /// A global block: no leases at all until unblocked; the block
    /// survives restarts (it is journaled).
    fn toggle_block(&mut self) {
        let blocked = !self.model.blocked;
        self.journal
            .extend(self.core.block("", blocked, self.now).unwrap());
        self.model.blocked = blocked;
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
        for (state, _) in self.model.units.values_mut() {
            if let Want::Leased { expiry_ms, .. } = state {
                *expiry_ms = self.now + LEASE_MS;
            }
        }
    }

    /// Records finish times, then deletes a random finished pipeline; the
    /// model forgets its units (none may be pending or leased) and the
    /// leases ever granted for it.
    fn delete_finished(&mut self) {
        // As the master does every second: journal when they finished.
        let unrecorded = self.core.finished_unrecorded();
        if !unrecorded.is_empty() {
            let records = self.core.record_finished(&unrecorded, 1_000, self.now);
            self.journal.extend(records.unwrap());
        }
        let finished = self.core.finished_pipelines();
        if finished.is_empty() {
            return;
        }
        let id = finished[self.rng.random_range(0..finished.len())].clone();
        self.journal.extend(
            self.core
                .delete_pipelines(std::slice::from_ref(&id), self.now)
                .unwrap(),
        );
        self.model.units.retain(|(p, _, _), (state, _)| {
            let gone = *p == id;
            assert!(
                !gone || matches!(state, Want::Committed { .. } | Want::Failed),
                "deleted {id} with a unit {state:?}"
            );
            !gone
        });
        self.leases
            .retain(|l| l.unit.as_ref().is_some_and(|u| u.pipeline_id != id));
        assert!(self.core.status(&id).is_err());
    }

    fn restart(&mut self) {
        let config = self.core.config().clone();
        self.core = Core::recover(config, self.journal.clone(), self.now).unwrap();
        for (state, _) in self.model.units.values_mut() {
            if let Want::Leased { expiry_ms, .. } = state {
                *expiry_ms = self.now + LEASE_MS;
            }
        }
    }

    fn pick(&mut self) -> Option<Lease> {
        (!self.leases.is_empty())
            .then(|| self.leases[self.rng.random_range(0..self.leases.len())].clone())
    }

    fn compare(&self) {
        for status in self.core.list() {
            for group in &status.groups {
                let want = self.model.counts(&status.pipeline_id, &group.name);
                assert_eq!(
                    group.counts.unwrap(),
                    want,
                    "{}/{}",
                    status.pipeline_id,
                    group.name
                );
            }
            for group in ["a", "b"] {
                for out in self.core.outputs(&status.pipeline_id, group).unwrap() {
                    let key = (status.pipeline_id.clone(), group.to_string(), out.unit);
                    assert_eq!(
                        self.model.units[&key].0,
                        Want::Committed {
                            lease_id: out.lease_id
                        }
                    );
                }
            }
        }
    }
}

#[test]
fn random_operations_match_the_reference_model() {
    let seeds: u64 = std::env::var("TM_PROPTEST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for seed in 0..seeds {
        let mut run = Run {
            rng: StdRng::seed_from_u64(seed),
            core: core(),
            model: Model::default(),
            journal: vec![Core::init_record("tok", 1)],
            leases: Vec::new(),
            now: 0,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..300 {
                run.step();
            }
        }));
        if let Err(panic) = result {
            eprintln!("failing seed: {seed} (rerun with this seed to replay)");
            std::panic::resume_unwind(panic);
        }
    }
}
