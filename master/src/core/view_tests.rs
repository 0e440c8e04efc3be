//! What the views say of failed units (attempts, errors by attempt, the
//! inputs read) and of workers (slots, liveness), and re-runs with new
//! parameters.

use std::collections::HashMap;

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
