//! What the views say of failed units (attempts, errors by attempt, the
//! inputs read) and of workers (slots, liveness), and re-runs with new
//! parameters.

use std::collections::HashMap;

use taskmaster_proto::journal::{Record, Snapshot, record::Kind};
use taskmaster_proto::v1::*;

use super::tests::{LEASE_MS, assert_snapshot_encodes, core, done, lease_ref, two_groups};
use super::{Core, CoreError};

fn failed(lease: &Lease, error: &str) -> CommitItem {
    CommitItem {
        lease: Some(lease_ref(lease)),
        result: Some(commit_item::Result::Error(error.into())),
    }
}

/// Leases the one ready unit as worker `w` and fails it with `error`.
fn lease_and_fail(core: &mut Core, error: &str) {
    let (_, leases) = core.lease("w", 1, false, 0).unwrap();
    let (_, results) = core.commit("tok", &[failed(&leases[0], error)], 0).unwrap();
    assert_eq!(results, vec![Ok(())]);
}

fn failed_unit(core: &Core) -> FailedUnit {
    let status = core.status("p-1").unwrap();
    assert_eq!(status.failed_units.len(), 1, "{status:?}");
    status.failed_units[0].clone()
}

#[test]
fn a_failed_unit_counts_every_attempt_and_numbers_its_errors_across_a_retry() {
    let mut core = core();
    core.submit("p-1", two_groups(1), 5, 0).unwrap(); // two attempts a unit
    lease_and_fail(&mut core, "first");
    lease_and_fail(&mut core, "second");
    let unit = failed_unit(&core);
    assert_eq!(unit.attempts, 2);
    assert_eq!(unit.errors, ["first", "second"]);
    assert_eq!(unit.error_attempts, [1, 2]);
    assert_eq!(unit.inputs, ["/in/0.txt"]);
    assert_eq!(unit.inputs_total, Some(1));

    // A retry: attempt 3 is released unrun (no error), 4 and 5 fail.
    core.retry("p-1", None, None, 0).unwrap();
    let (_, leases) = core.lease("w", 1, false, 0).unwrap();
    core.release("tok", &[lease_ref(&leases[0])], 0).unwrap();
    lease_and_fail(&mut core, "fourth");
    lease_and_fail(&mut core, "fifth");
    let unit = failed_unit(&core);
    assert_eq!(unit.attempts, 5, "every attempt, before the retry too");
    assert_eq!(unit.errors, ["first", "second", "fourth", "fifth"]);
    assert_eq!(unit.error_attempts, [1, 2, 4, 5]);
    core.check_invariants().unwrap();

    // The numbers survive a snapshot and a replay of the journal.
    assert_snapshot_encodes(&core);
    let snap = core.to_snapshot(9, 0);
    let loaded = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    assert_eq!(failed_unit(&loaded), unit);
    // A snapshot of a master that kept no numbers: not known, not wrong.
    let mut old = snap.clone();
    for group in &mut old.pipelines[0].groups {
        for u in &mut group.units {
            u.error_attempts.clear();
        }
    }
    let loaded = Core::from_snapshot(core.config().clone(), &old, 0, 0).unwrap();
    assert_eq!(failed_unit(&loaded).error_attempts, [0, 0, 0, 0]);
}

#[test]
fn a_failed_downstream_unit_shows_its_first_inputs_and_how_many_it_reads() {
    let mut core = core();
    let mut spec = two_groups(7);
    spec.groups[1].gather = true;
    spec.groups[1].max_attempts = 1;
    core.submit("p-1", spec, 5, 0).unwrap();
    let (_, leases) = core.lease("w", 7, false, 0).unwrap();
    let items: Vec<CommitItem> = leases.iter().map(|l| done(l, &["out"])).collect();
    core.commit("tok", &items, 0).unwrap();
    lease_and_fail(&mut core, "bad join");
    let unit = failed_unit(&core);
    assert_eq!(unit.group, "b");
    assert_eq!(unit.inputs.len(), 5, "the first five: {:?}", unit.inputs);
    assert!(
        unit.inputs[0].starts_with("/store/p-1/a/0/") && unit.inputs[0].ends_with("/out"),
        "{:?}",
        unit.inputs
    );
    assert_eq!(unit.inputs_total, Some(7));
    assert_eq!(unit.attempts, 1);

    // Counting stops past the bound of upstream units: unknown, not wrong.
    let pos = super::model::Pos {
        pipeline: 0,
        group: 1,
        unit: 0,
    };
    let (files, _, total) = core.inputs_shown(pos, 2, 7);
    assert_eq!((files.len(), total), (2, Some(7)));
    let (files, _, total) = core.inputs_shown(pos, 9, 6);
    assert_eq!((files.len(), total), (6, None), "listed up to the bound");
}

#[test]
fn workers_show_their_slots_not_their_last_ask_and_whether_they_are_alive() {
    let mut core = core();
    core.submit("p-1", two_groups(3), 5, 0).unwrap();
    let (_, leases) = core.lease_with_slots("w1", 8, 2, false, 0).unwrap();
    let worker = &core.workers(0)[0];
    assert_eq!((worker.worker_slots, worker.slots), (8, 2));
    assert_eq!((worker.leases_held, worker.alive), (2, true));

    // A commit asking for the next unit, and a lease call of a worker
    // that does not say its slots, keep the slots it said.
    let next = LeaseNext {
        worker_id: "w1".into(),
        max_units: 1,
        compact: false,
    };
    let (_, (_, more)) = core
        .commit_and_lease("tok", &[done(&leases[0], &[])], Some(&next), 10)
        .unwrap();
    assert_eq!(more.leases.len(), 1);
    let (_, also) = core.lease("w1", 1, false, 20).unwrap();
    assert_eq!(also.len(), 1, "b/0, fed by a/0");
    let worker = &core.workers(20)[0];
    assert_eq!((worker.worker_slots, worker.slots), (8, 1));

    // A busy worker renews a third of a lease time: that keeps it alive,
    // and a lease time of silence (plus slack) is a dead one.
    let busy_ms = core.worker_live_ms(false);
    assert_eq!(busy_ms, LEASE_MS + 5_000);
    let mut renewing = 20;
    while renewing <= 3 * busy_ms {
        renewing += LEASE_MS / 3;
        let refs = [lease_ref(&more.leases[0]), lease_ref(&also.leases[0])];
        let results = core.renew("tok", &refs, renewing).unwrap();
        assert_eq!(results, vec![Ok(()), Ok(())]);
    }
    let worker = &core.workers(renewing)[0];
    assert!(worker.alive, "{worker:?}");
    assert_eq!(worker.last_seen_ms_ago, 0);
    assert!(core.workers(renewing + busy_ms)[0].alive);
    let worker = &core.workers(renewing + busy_ms + 1)[0];
    assert!(!worker.alive, "{worker:?}");
    assert_eq!(
        worker.leases_held, 3,
        "listed, dead, with what it holds (no reaper ran)"
    );

    // One that got less than it asked for may be waiting in a lease call
    // for a minute without a word.
    let (_, none) = core.lease_with_slots("w2", 4, 4, false, renewing).unwrap();
    assert_eq!(none.len(), 0);
    let waiting_ms = core.worker_live_ms(true);
    assert_eq!(waiting_ms, 65_000);
    let w2 = |core: &Core, now| core.workers(now).into_iter().find(|w| w.worker_id == "w2");
    assert!(w2(&core, renewing + waiting_ms).unwrap().alive);
    assert!(!w2(&core, renewing + waiting_ms + 1).unwrap().alive);
    // Listed for ten minutes after its last call, then forgotten.
    assert!(w2(&core, renewing + 600_000).is_some());
    assert!(w2(&core, renewing + 600_001).is_none());
    // One holding leases stays listed until they expire.
    assert!(
        core.workers(renewing + 600_001)
            .iter()
            .any(|w| w.worker_id == "w1")
    );
    core.expire(renewing + 600_001);
    assert!(core.workers(renewing + 600_001).is_empty());
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A finished pipeline `p-1` with parameters `ds` and `region`.
fn finished_with_params() -> Core {
    let mut core = core();
    let mut spec = two_groups(1);
    spec.params = params(&[("ds", "2026-11-21"), ("region", "eu")]);
    core.submit("p-1", spec, 5, 0).unwrap();
    lease_and_fail(&mut core, "x");
    lease_and_fail(&mut core, "x");
    assert_eq!(
        core.status("p-1").unwrap().state(),
        PipelineState::Failed,
        "finished"
    );
    core
}

#[test]
fn a_rerun_changes_the_parameters_it_is_given_and_keeps_the_rest() {
    let mut core = finished_with_params();
    core.rerun_with_params("p-1", "p-2", &params(&[("ds", "2026-11-22")]), 6, 0)
        .unwrap();
    let status = core.status("p-2").unwrap();
    assert_eq!(
        status.params,
        params(&[("ds", "2026-11-22"), ("region", "eu")])
    );
    assert_eq!(status.rerun_of, "p-1");
    let (_, leases) = core.lease("w", 1, false, 0).unwrap();
    assert_eq!(leases[0].params["ds"], "2026-11-22");
    assert_eq!(leases[0].inputs, ["/in/0.txt"], "the same inputs");
    core.check_invariants().unwrap();
}

#[test]
fn a_rerun_with_a_parameter_the_pipeline_lacks_or_a_bad_value_changes_nothing() {
    let mut core = finished_with_params();
    let before = core.list();
    let err = core
        .rerun_with_params("p-1", "p-2", &params(&[("dss", "x"), ("ds", "y")]), 6, 0)
        .unwrap_err();
    let CoreError::Invalid(why) = &err else {
        panic!("{err:?}")
    };
    assert!(
        why.contains("pipeline p-1 has no parameter \"dss\" (it has \"ds\", \"region\")"),
        "{why}"
    );
    // Validated as a submit is: a value over the limit is refused.
    let long = "v".repeat(super::limits::TEXT_BYTES_MAX + 1);
    let err = core
        .rerun_with_params("p-1", "p-2", &params(&[("ds", &long)]), 6, 0)
        .unwrap_err();
    assert!(matches!(err, CoreError::Invalid(_)), "{err:?}");
    assert_eq!(core.list(), before);
    core.check_invariants().unwrap();
    // Without parameters it is the plain re-run.
    core.rerun("p-1", "p-2", 6, 0).unwrap();
    assert_eq!(core.status("p-2").unwrap().params, before[0].params);
}

/// The wall clock at monotonic 0 ms in the tests of attempts' workers.
const T0_UNIX_MS: u64 = 1_800_000_000_000;

/// Who ran each kept error and for how long, as the status says it.
fn runs(unit: &FailedUnit) -> Vec<(&str, Option<u64>)> {
    unit.error_runs
        .iter()
        .map(|r| (r.worker_id.as_str(), r.duration_ms))
        .collect()
}

/// One unit of three attempts (leases last [`LEASE_MS`], 1 s): `w-fail`
/// leases it at 1 s and reports a failure at 1.8 s; `w-lost` leases it at
/// 2 s, renews at 2.6 s and is expired by a reaper 700 ms late; `w-snap`
/// leases it at 5 s, and the state is snapshotted at 5.5 s while it holds
/// the lease. Returns the core
/// (wall clock at T0 for 0 ms), its journal, that snapshot and `w-snap`'s
/// lease.
fn three_attempts() -> (Core, Vec<Record>, Snapshot, Lease) {
    let mut core = core();
    core.set_wall_clock(0, T0_UNIX_MS);
    let mut journal = vec![Core::init_record("tok", 1)];
    let mut spec = two_groups(1);
    spec.groups[0].max_attempts = 3;
    journal.extend(core.submit("p-1", spec, T0_UNIX_MS, 0).unwrap());

    let (records, leases) = core.lease("w-fail", 1, false, 1_000).unwrap();
    journal.extend(records);
    let (records, results) = core
        .commit("tok", &[failed(&leases[0], "exit 3")], 1_800)
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    journal.extend(records);

    let (records, leases) = core.lease("w-lost", 1, false, 2_000).unwrap();
    journal.extend(records);
    let renewed = core.renew("tok", &[lease_ref(&leases[0])], 2_600).unwrap();
    assert_eq!(renewed, vec![Ok(())]);
    let records = core.expire(2_600 + LEASE_MS + 700);
    assert_eq!(records.len(), 1);
    journal.extend(records);

    let (records, leases) = core.lease("w-snap", 1, false, 5_000).unwrap();
    journal.extend(records);
    assert_snapshot_encodes(&core);
    let mut snap = core.to_snapshot(journal.len() as u64, 5_500);
    snap.taken_unix_ms = T0_UNIX_MS + 5_500;
    core.check_invariants().unwrap();
    (core, journal, snap, leases[0].clone())
}

/// `w-snap`'s attempt (see [`three_attempts`]) fails at `now_ms`
/// (monotonic); its records.
fn fail_third(core: &mut Core, lease: &Lease, now_ms: u64) -> Vec<Record> {
    let (records, results) = core
        .commit("tok", &[failed(lease, "exit 4")], now_ms)
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    records
}

#[test]
fn failed_and_expired_attempts_keep_their_worker_and_duration_through_replay_and_snapshots() {
    let (mut core, mut journal, snap, lease) = three_attempts();
    // The third attempt fails at 5.9 s: 900 ms after its grant.
    journal.extend(fail_third(&mut core, &lease, 5_900));
    let unit = failed_unit(&core);
    assert_eq!(unit.error_attempts, [1, 2, 3]);
    // A failure runs from the grant to its report; an expiry from the grant
    // to the moment the lease ran out (the renewal plus the lease time),
    // not to when the reaper came by.
    let expected = vec![
        ("w-fail", Some(800)),
        ("w-lost", Some(600 + LEASE_MS)),
        ("w-snap", Some(900)),
    ];
    assert_eq!(runs(&unit), expected);
    assert!(
        unit.errors[1].contains("expired (worker w-lost"),
        "{unit:?}"
    );
    let detail = core.unit_detail("p-1", "a", 0).unwrap();
    let shown: Vec<(Option<&str>, Option<u64>)> = detail
        .errors
        .iter()
        .map(|e| (e.worker_id.as_deref(), e.duration_ms))
        .collect();
    assert_eq!(
        shown,
        expected
            .iter()
            .map(|&(w, d)| (Some(w), d))
            .collect::<Vec<_>>()
    );

    // A restarted master replays the same, whatever its clocks read now:
    // the times come from the records.
    let mut replayed = Core::new(core.config().clone());
    replayed.set_wall_clock(77, T0_UNIX_MS + 9_999_999);
    replayed.replay(journal.clone(), 0, 77).unwrap();
    replayed.check_invariants().unwrap();
    assert_eq!(failed_unit(&replayed), unit);

    // A snapshot round trip, through the encoder that writes snapshot
    // files, keeps them.
    assert_snapshot_encodes(&core);
    let loaded = Core::from_snapshot(core.config().clone(), &core.to_snapshot(9, 0), 0, 0).unwrap();
    assert_eq!(failed_unit(&loaded), unit);

    // A lease held when a snapshot was taken keeps its grant time: a
    // master restarts on the snapshot at 5.7 s (its monotonic clock at
    // 1 s) and the attempt fails 200 ms later, 900 ms after its grant.
    use prost::Message as _;
    let bytes = snap.encode_to_vec();
    let decoded = Snapshot::decode(bytes.as_slice()).unwrap();
    let mut restored =
        Core::from_snapshot(core.config().clone(), &decoded, 1_000, T0_UNIX_MS + 5_700).unwrap();
    let leased = restored.unit_detail("p-1", "a", 0).unwrap();
    assert_eq!(leased.worker_id.as_deref(), Some("w-snap"));
    assert_eq!(leased.leased_unix_ms, Some(T0_UNIX_MS + 5_000));
    fail_third(&mut restored, &lease, 1_200);
    assert_eq!(failed_unit(&restored), unit);
}

#[test]
fn older_journals_and_snapshots_without_workers_or_times_still_load() {
    let (mut core, mut journal, _, lease) = three_attempts();
    journal.extend(fail_third(&mut core, &lease, 5_900));
    // A journal written before grant and expiry times were kept: the
    // workers are still known from the grants, the durations are not.
    for record in &mut journal {
        match &mut record.kind {
            Some(Kind::LeasesGranted(g)) => g.granted_unix_ms = 0,
            Some(Kind::LeaseExpired(e)) => e.expired_unix_ms = 0,
            _ => {}
        }
    }
    let replayed = Core::recover(core.config().clone(), journal, 0).unwrap();
    let unit = failed_unit(&replayed);
    assert_eq!(
        runs(&unit),
        [("w-fail", None), ("w-lost", None), ("w-snap", None)]
    );

    // A snapshot written before they were kept: each error's worker and
    // duration are not known (the status says so with an empty name).
    let mut old = core.to_snapshot(9, 0);
    for group in &mut old.pipelines[0].groups {
        for u in &mut group.units {
            u.error_runs.clear();
            u.granted_unix_ms = 0;
        }
    }
    let loaded = Core::from_snapshot(core.config().clone(), &old, 0, 0).unwrap();
    let unit = failed_unit(&loaded);
    assert_eq!(unit.errors.len(), 3);
    assert_eq!(runs(&unit), [("", None), ("", None), ("", None)]);
    let detail = loaded.unit_detail("p-1", "a", 0).unwrap();
    assert!(detail.errors.iter().all(|e| e.worker_id.is_none()));
}

#[test]
#[cfg(target_pointer_width = "64")]
fn a_leased_units_grant_time_costs_no_memory_per_unit() {
    // The grant time rides in the leased state, beside the worker's name:
    // the committed state (lease id and files) is as large, so a unit is
    // no larger for it (128 bytes before and after). Workers and durations
    // are kept for failed attempts only, in their bounded error list.
    use super::model::{Unit, UnitState};
    assert_eq!(std::mem::size_of::<UnitState>(), 40);
    assert_eq!(
        std::mem::size_of::<Unit>(),
        128,
        "a unit's size changed: measure the memory at 1 M units"
    );
}
