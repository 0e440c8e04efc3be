//! Finished pipelines: their finish times, and deleting them (the record,
//! what is refused, and that the pipelines left keep every lease, queue
//! place and retry delay).

use taskmaster_proto::journal::{self, Record, record::Kind};
use taskmaster_proto::v1::*;

use super::tests::{assert_snapshot_encodes, core, done, two_groups};
use super::{Core, CoreError};

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Leases and commits until nothing is left to lease.
fn run_to_end(core: &mut Core, now: u64) {
    while let (_, leases) = core.lease("w", 10, false, now).unwrap()
        && !leases.is_empty()
    {
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        core.commit("tok", &items, now).unwrap();
    }
}

fn listed(core: &Core) -> Vec<String> {
    core.list().into_iter().map(|s| s.pipeline_id).collect()
}

/// `p-1` succeeded, then `p-2` (three inputs) submitted, one unit leased.
fn one_finished_one_running() -> (Core, Lease) {
    let mut core = core();
    core.submit("p-1", two_groups(2), 0, 0).unwrap();
    run_to_end(&mut core, 1);
    core.submit("p-2", two_groups(3), 0, 1).unwrap();
    let lease = core.lease("w", 1, false, 1).unwrap().1.leases.remove(0);
    (core, lease)
}

#[test]
fn deleting_a_finished_pipeline_forgets_it_and_the_others_go_on() {
    let (mut core, lease) = one_finished_one_running();
    let records = core.delete_pipelines(&ids(&["p-1"]), 2).unwrap();
    assert_eq!(
        records,
        vec![Record {
            kind: Some(Kind::PipelinesDeleted(journal::PipelinesDeleted {
                pipeline_ids: ids(&["p-1"]),
            }))
        }]
    );
    core.check_invariants().unwrap();
    assert!(matches!(core.status("p-1"), Err(CoreError::NotFound(_))));
    assert!(matches!(
        core.outputs("p-1", "a"),
        Err(CoreError::NotFound(_))
    ));
    assert_eq!(listed(&core), ids(&["p-2"]));
    // p-2 moved down one place: its lease still commits, its queue holds.
    let (_, results) = core.commit("tok", &[done(&lease, &["o"])], 2).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // A worker of p-1 back from the dead is told its unit is gone.
    let zombie = CommitItem {
        lease: Some(LeaseRef {
            unit: Some(UnitRef {
                pipeline_id: "p-1".into(),
                group: "a".into(),
                unit: 0,
            }),
            lease_id: 1,
            config_version: 1,
            incarnation: 0,
        }),
        result: Some(commit_item::Result::Outputs(Outputs::default())),
    };
    let (records, results) = core.commit("tok", &[zombie], 2).unwrap();
    assert!(records.is_empty());
    assert!(
        matches!(results[0], Err(super::Refusal::UnknownUnit(_))),
        "{results:?}"
    );
    run_to_end(&mut core, 3);
    let status = core.status("p-2").unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);
    assert_eq!(core.outputs("p-2", "b").unwrap().len(), 3);
    core.check_invariants().unwrap();
}

#[test]
fn unfinished_unknown_or_repeated_pipelines_are_refused_and_nothing_changes() {
    let (mut core, _lease) = one_finished_one_running();
    let before = core.list();
    let refused = |core: &mut Core, names: &[&str]| core.delete_pipelines(&ids(names), 2);
    assert!(matches!(
        refused(&mut core, &["p-1", "p-2"]),
        Err(CoreError::FailedPrecondition(m)) if m.contains("p-2 has not finished")
    ));
    assert!(matches!(
        refused(&mut core, &["p-1", "nope"]),
        Err(CoreError::NotFound(_))
    ));
    assert!(matches!(
        refused(&mut core, &["p-1", "p-1"]),
        Err(CoreError::Invalid(m)) if m.contains("named twice")
    ));
    assert!(matches!(
        refused(&mut core, &[]),
        Err(CoreError::Invalid(_))
    ));
    assert_eq!(core.list(), before);
    assert_eq!(core.finished_pipelines(), ids(&["p-1"]));
}

#[test]
fn a_cancelled_pipeline_is_deleted_with_its_queued_units() {
    let mut core = core();
    core.submit("p-1", two_groups(4), 0, 0).unwrap();
    core.submit("p-2", two_groups(1), 0, 0).unwrap();
    core.cancel("p-1", 0).unwrap();
    core.delete_pipelines(&ids(&["p-1"]), 0).unwrap();
    core.check_invariants().unwrap();
    let leases = core.lease("w", 10, false, 0).unwrap().1;
    assert_eq!(leases.len(), 1, "only p-2's unit is left to lease");
    assert_eq!(leases[0].unit.as_ref().unwrap().pipeline_id, "p-2");
}

#[test]
fn a_retry_delay_of_a_pipeline_left_keeps_its_unit_and_time() {
    let mut core = core();
    core.submit("p-1", two_groups(1), 0, 0).unwrap();
    run_to_end(&mut core, 0);
    let mut spec = two_groups(2);
    spec.groups[0].retry_delay_ms = Some(60_000);
    core.submit("p-2", spec, 0, 0).unwrap();
    let leases = core.lease("w", 2, false, 0).unwrap().1;
    let failed = CommitItem {
        lease: done(&leases[1], &[]).lease,
        result: Some(commit_item::Result::Error("boom".into())),
    };
    core.commit("tok", &[failed], 500).unwrap();
    core.delete_pipelines(&ids(&["p-1"]), 600).unwrap();
    let retries = core.to_snapshot(9, 600).delayed_retries;
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].pipeline_id, "p-2");
    assert_eq!(retries[0].unit, leases[1].unit.as_ref().unwrap().unit);
    assert!(retries[0].wait_ms > 0, "still waiting: {retries:?}");
    let due_ms = 600 + retries[0].wait_ms; // the delay is jittered
    assert_eq!(core.promote_due(due_ms - 1), 0);
    assert_eq!(core.promote_due(due_ms), 1);
    let again = core.lease("w", 5, false, due_ms).unwrap().1;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].unit, leases[1].unit);
}

#[test]
fn replay_and_snapshots_agree_with_the_live_deletion() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", two_groups(2), 0, 0).unwrap());
    while let (records, leases) = core.lease("w", 10, false, 1).unwrap()
        && !leases.is_empty()
    {
        journal.extend(records);
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        journal.extend(core.commit("tok", &items, 1).unwrap().0);
    }
    journal.extend(core.submit("p-2", two_groups(2), 0, 1).unwrap());
    journal.extend(core.delete_pipelines(&ids(&["p-1"]), 2).unwrap());
    let replayed = Core::recover(core.config().clone(), journal.clone(), 2).unwrap();
    replayed.check_invariants().unwrap();
    assert_eq!(replayed.list(), core.list());
    assert_snapshot_encodes(&core);
    let snap = core.to_snapshot(9, 2);
    let loaded = Core::from_snapshot(core.config().clone(), &snap, 2, 0).unwrap();
    assert_eq!(loaded.list(), core.list());
    assert_eq!(loaded.to_snapshot(9, 2), snap);

    // A journal deleting a pipeline that can still run does not load.
    let mut bad = journal;
    bad.push(Record {
        kind: Some(Kind::PipelinesDeleted(journal::PipelinesDeleted {
            pipeline_ids: ids(&["p-2"]),
        })),
    });
    let err = Core::recover(core.config().clone(), bad, 2).unwrap_err();
    assert!(matches!(err, CoreError::Corrupt(m) if m.contains("before it finished")));
}

#[test]
fn the_sweep_leaves_a_deleted_pipelines_attempts_under_a_reused_id() {
    let mut core = core();
    core.submit("p-1", two_groups(1), 0, 0).unwrap();
    let old = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    core.commit("tok", &[done(&old, &["o"])], 0).unwrap();
    run_to_end(&mut core, 0);
    core.delete_pipelines(&ids(&["p-1"]), 0).unwrap();
    core.submit("p-1", two_groups(1), 0, 0).unwrap(); // the same id again
    let new = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    let unit = new.unit.as_ref().unwrap().unit;
    assert!(core.attempt_may_matter("p-1", "a", unit, old.lease_id, 0));
    assert!(core.attempt_may_matter("p-1", "a", unit, new.lease_id, 0));
    core.release("tok", &[super::tests::lease_ref(&new)], 0)
        .unwrap();
    assert!(!core.attempt_may_matter("p-1", "a", unit, new.lease_id, 0));
    let snap = core.to_snapshot(9, 0);
    let loaded = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    assert!(loaded.attempt_may_matter("p-1", "a", unit, old.lease_id, 0));
}

fn fail(lease: &Lease) -> CommitItem {
    CommitItem {
        lease: done(lease, &[]).lease,
        result: Some(commit_item::Result::Error("boom".into())),
    }
}

#[test]
fn a_finish_time_is_journaled_once_and_a_retry_forgets_it() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", two_groups(1), 0, 0).unwrap());
    for _ in 0..2 {
        // two_groups allows two attempts: the unit fails for good.
        let (granted, leases) = core.lease("w", 1, false, 0).unwrap();
        journal.extend(granted);
        journal.extend(core.commit("tok", &[fail(&leases[0])], 0).unwrap().0);
    }
    journal.extend(core.submit("p-2", two_groups(1), 0, 0).unwrap());
    assert_eq!(core.status("p-1").unwrap().state(), PipelineState::Failed);
    assert_eq!(core.finished_unrecorded(), ids(&["p-1"]));
    assert!(matches!(
        core.record_finished(&ids(&["p-2"]), 5_000, 0),
        Err(CoreError::FailedPrecondition(_))
    ));
    journal.extend(core.record_finished(&ids(&["p-1"]), 5_000, 0).unwrap());
    assert_eq!(core.status("p-1").unwrap().finished_unix_ms, 5_000);
    assert!(core.finished_unrecorded().is_empty());
    assert!(core.finished_before(4_999).is_empty());
    assert_eq!(core.finished_before(5_000), ids(&["p-1"]));
    assert!(matches!(
        core.record_finished(&ids(&["p-1"]), 6_000, 0),
        Err(CoreError::FailedPrecondition(_))
    ));

    let replayed = Core::recover(core.config().clone(), journal.clone(), 0).unwrap();
    assert_eq!(replayed.status("p-1").unwrap().finished_unix_ms, 5_000);
    let snap = core.to_snapshot(9, 0);
    let loaded = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    assert_eq!(loaded.finished_before(5_000), ids(&["p-1"]));

    // A retry runs it again: no finish time until it finishes anew.
    journal.extend(core.retry("p-1", None, None, 0).unwrap().0);
    assert_eq!(core.status("p-1").unwrap().finished_unix_ms, 0);
    assert!(core.finished_before(u64::MAX).is_empty());
    assert!(core.finished_unrecorded().is_empty());
    let replayed = Core::recover(core.config().clone(), journal, 0).unwrap();
    assert_eq!(replayed.status("p-1").unwrap().finished_unix_ms, 0);
}
