//! Operator actions and snapshots: exact records, state before and after,
//! and the commit checks across each action.

use taskmaster_proto::journal::{self, DelayedRetry, Record, record::Kind};
use taskmaster_proto::v1::*;

use super::tests::{LEASE_MS, assert_snapshot_encodes, core, done, lease_ref, two_groups};
use super::{Core, CoreError, Refusal};

fn rec(kind: Kind) -> Record {
    Record { kind: Some(kind) }
}

fn counts(core: &Core, group: usize) -> UnitCounts {
    core.status("p-1").unwrap().groups[group].counts.unwrap()
}

fn submitted(inputs: usize) -> Core {
    let mut core = core();
    core.submit("p-1", two_groups(inputs), 0, 0).unwrap();
    core
}

#[test]
fn block_stops_leasing_without_losing_work_and_unblock_resumes() {
    let mut core = submitted(2);
    let records = core.block("", true, 0).unwrap();
    assert_eq!(
        records,
        vec![rec(Kind::BlockSet(journal::BlockSet {
            pipeline_id: String::new(),
            blocked: true
        }))]
    );
    assert!(core.lease("w", 5, false, 0).unwrap().1.is_empty());
    let again = core.block("", true, 0).unwrap_err();
    assert_eq!(
        again,
        CoreError::FailedPrecondition("the master is already blocked".into())
    );
    core.block("", false, 0).unwrap();
    assert_eq!(
        core.lease("w", 5, false, 0).unwrap().1.len(),
        2,
        "nothing was lost while blocked"
    );
    let err = core.block("", false, 0).unwrap_err();
    assert_eq!(
        err,
        CoreError::FailedPrecondition("the master is not blocked".into())
    );
    core.check_invariants().unwrap();
}

#[test]
fn a_pipeline_block_holds_only_that_pipeline() {
    let mut core = submitted(1);
    core.submit("p-2", two_groups(1), 0, 0).unwrap();
    core.block("p-1", true, 0).unwrap();
    let leases = core.lease("w", 5, false, 0).unwrap().1;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].unit.as_ref().unwrap().pipeline_id, "p-2");
    assert!(core.status("p-1").unwrap().blocked);
    core.block("p-1", false, 0).unwrap();
    assert_eq!(
        core.lease("w", 5, false, 0).unwrap().1.len(),
        1,
        "p-1's unit kept its place"
    );
}

#[test]
fn cancel_refuses_in_flight_commits_and_stops_leasing() {
    let mut core = submitted(2);
    let lease = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    let records = core.cancel("p-1", 1).unwrap();
    assert_eq!(
        records,
        vec![rec(Kind::PipelineCancelled(journal::PipelineCancelled {
            pipeline_id: "p-1".into()
        }))]
    );
    let (records, results) = core.commit("tok", &[done(&lease, &["x"])], 2).unwrap();
    assert!(records.is_empty());
    assert!(matches!(&results[0], Err(Refusal::LeaseLost(why)) if why.contains("cancelled")));
    assert!(core.lease("w", 5, false, 2).unwrap().1.is_empty());
    assert_eq!(
        core.status("p-1").unwrap().state(),
        PipelineState::Cancelled
    );
    assert!(matches!(
        core.cancel("p-1", 3),
        Err(CoreError::FailedPrecondition(_))
    ));
    assert!(matches!(
        core.cancel("nope", 3),
        Err(CoreError::NotFound(_))
    ));
    core.check_invariants().unwrap();
}

#[test]
fn retry_gives_failed_units_fresh_attempts() {
    let mut core = submitted(1);
    for _ in 0..2 {
        let lease = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
        let item = CommitItem {
            lease: Some(lease_ref(&lease)),
            result: Some(commit_item::Result::Error("boom".into())),
        };
        core.commit("tok", &[item], 0).unwrap();
    }
    assert_eq!(core.status("p-1").unwrap().state(), PipelineState::Failed);
    let (records, changed) = core.retry("p-1", None, None, 1).unwrap();
    let want = journal::UnitsRetried {
        pipeline_id: "p-1".into(),
        group: None,
        unit: None,
    };
    assert_eq!(records, vec![rec(Kind::UnitsRetried(want))]);
    assert_eq!(changed.units_reset, 1);
    let lease = core.lease("w", 1, false, 1).unwrap().1.leases.remove(0);
    assert_eq!(lease.inputs, vec!["/in/0.txt".to_string()], "same inputs");
    assert_eq!(lease.attempt, 3);
    assert!(matches!(
        core.retry("p-1", None, None, 1),
        Err(CoreError::FailedPrecondition(_))
    ));
    core.check_invariants().unwrap();
}

#[test]
fn rerun_copies_a_finished_pipeline() {
    let mut core = submitted(1);
    assert!(matches!(
        core.rerun("p-1", "p-2", 0, 0),
        Err(CoreError::FailedPrecondition(_))
    ));
    core.cancel("p-1", 0).unwrap();
    core.rerun("p-1", "p-2", 0, 0).unwrap();
    let status = core.status("p-2").unwrap();
    assert_eq!(
        (
            status.rerun_of.as_str(),
            status.groups[0].counts.unwrap().pending
        ),
        ("p-1", 1)
    );
}

/// Runs every unit to completion.
fn finish_all(core: &mut Core, now: u64) {
    while let (_, leases) = core.lease("w", 100, false, now).unwrap()
        && !leases.is_empty()
    {
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        core.commit("tok", &items, now).unwrap();
    }
}

#[test]
fn clear_with_downstream_reruns_the_group_and_re_derives_what_follows() {
    let mut core = submitted(2);
    finish_all(&mut core, 0);
    assert_eq!(
        core.status("p-1").unwrap().state(),
        PipelineState::Succeeded
    );
    let refused = core.clear("p-1", "a", false, 1).unwrap_err();
    assert!(
        matches!(refused, CoreError::FailedPrecondition(ref why) if why.contains("downstream")),
        "{refused}"
    );
    let (records, changed) = core.clear("p-1", "a", true, 1).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((changed.units_reset, changed.units_dropped), (2, 2));
    assert_eq!(counts(&core, 0).pending, 2);
    assert_eq!(
        counts(&core, 1),
        UnitCounts::default(),
        "b's units are tombstones now"
    );
    core.check_invariants().unwrap();
    finish_all(&mut core, 2);
    assert_eq!(
        core.status("p-1").unwrap().state(),
        PipelineState::Succeeded
    );
    assert_eq!(core.outputs("p-1", "b").unwrap().len(), 2);
    core.check_invariants().unwrap();
}

#[test]
fn a_config_change_bumps_the_version_and_requeues_leased_units() {
    let mut core = submitted(1);
    let old = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    let change = GroupConfigChange {
        command: vec!["echo".into(), "v2".into()],
        set_command: true,
        ..Default::default()
    };
    let (records, changed, version) = core.change_config("p-1", "a", change, 1).unwrap();
    assert_eq!((records.len(), changed.units_reset, version), (1, 1, 2));
    let (_, results) = core.commit("tok", &[done(&old, &["x"])], 2).unwrap();
    assert_eq!(
        results,
        vec![Err(Refusal::StaleConfig {
            lease: 1,
            current: 2
        })]
    );
    let new = core.lease("w", 1, false, 2).unwrap().1.leases.remove(0);
    assert_eq!(
        (new.command.clone(), new.config_version),
        (vec!["echo".to_string(), "v2".to_string()], 2)
    );
    let bad = GroupConfigChange {
        set_command: true,
        ..Default::default()
    };
    assert!(
        matches!(
            core.change_config("p-1", "a", bad, 3),
            Err(CoreError::Invalid(_))
        ),
        "exec needs a command"
    );
    core.check_invariants().unwrap();
}

#[test]
fn scale_splits_pending_units_by_their_inputs() {
    let mut core = core();
    let mut spec = two_groups(0);
    spec.groups[0].input_units = vec![InputUnit {
        files: vec!["/in/a".into(), "/in/b".into(), "/in/c".into()],
        slices: vec![],
    }];
    core.submit("p-1", spec, 0, 0).unwrap();
    let (_, changed) = core.scale("p-1", "a", 2, 0).unwrap();
    assert_eq!((changed.units_dropped, changed.units_added), (1, 2));
    assert_snapshot_encodes(&core); // given input units, dropped units
    let leases = core.lease("w", 5, false, 0).unwrap().1;
    let mut inputs: Vec<Vec<String>> = leases.iter().map(|l| l.inputs.clone()).collect();
    inputs.sort();
    assert_eq!(
        inputs,
        vec![
            vec!["/in/a".to_string(), "/in/c".to_string()],
            vec!["/in/b".to_string()]
        ]
    );
    assert!(
        matches!(
            core.scale("p-1", "a", 2, 0),
            Err(CoreError::FailedPrecondition(_))
        ),
        "nothing pending"
    );
    core.check_invariants().unwrap();
}

#[test]
fn in_flight_limits_hold_units_back() {
    let mut core = core();
    let mut spec = two_groups(3);
    spec.groups[0].max_in_flight = 1;
    core.submit("p-1", spec, 0, 0).unwrap();
    let first = core.lease("w", 3, false, 0).unwrap().1;
    assert_eq!(first.len(), 1);
    core.commit("tok", &[done(&first[0], &["o"])], 0).unwrap();
    let next = core.lease("w", 3, false, 0).unwrap().1;
    assert_eq!(
        next.iter()
            .filter(|l| l.unit.as_ref().unwrap().group == "a")
            .count(),
        1
    );
}

/// A core whose one first-group unit (two input files, so it can be
/// split) failed its first attempt at 0 ms, under `retry_delay_ms`.
fn failed_once(retry_delay_ms: Option<u64>) -> Core {
    let mut core = core();
    let mut spec = two_groups(0);
    spec.groups[0].input_units = vec![InputUnit {
        files: vec!["/in/a".into(), "/in/b".into()],
        slices: vec![],
    }];
    spec.groups[0].retry_delay_ms = retry_delay_ms;
    core.submit("p-1", spec, 0, 0).unwrap();
    let lease = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    let item = CommitItem {
        lease: Some(lease_ref(&lease)),
        result: Some(commit_item::Result::Error("e".into())),
    };
    core.commit("tok", &[item], 0).unwrap();
    core
}

#[test]
fn a_failed_attempt_waits_out_the_default_retry_delay() {
    let mut core = failed_once(None);
    assert!(
        core.lease("w", 1, false, 60_000).unwrap().1.is_empty(),
        "under a minute: still waiting"
    );
    assert_eq!(
        core.lease("w", 1, false, 200_000).unwrap().1.len(),
        1,
        "two minutes +-20% later: ready"
    );
}

#[test]
fn a_retry_delay_survives_a_snapshot_with_what_was_left_of_it() {
    let core = failed_once(Some(100_000));
    // 80 to 120 s of delay; taken at 50 s, at least 30 s are left.
    let snap = core.to_snapshot(9, 50_000);
    assert_eq!(snap.delayed_retries.len(), 1);
    let left = snap.delayed_retries[0].wait_ms;
    assert!((30_000..=70_000).contains(&left), "{left}");
    // Loaded at 1 s (a new process's clock): still waiting until 1 s + left.
    let mut restored = Core::from_snapshot(core.config().clone(), &snap, 1_000, 0).unwrap();
    restored.check_invariants().unwrap();
    assert!(
        restored
            .lease("w", 1, false, 1_000 + left - 1)
            .unwrap()
            .1
            .is_empty()
    );
    assert_eq!(
        restored.lease("w", 1, false, 1_000 + left).unwrap().1.len(),
        1
    );
}

/// The wall clock at monotonic 0 ms in [`journal_of_one_failure`].
const T0_UNIX_MS: u64 = 1_800_000_000_000;

/// A core whose wall clock reads [`T0_UNIX_MS`] at 0 ms, its journal, and
/// the retry delay of its one unit, which failed its first attempt at 0 ms
/// under a 100 s base delay (80 to 120 s, jittered).
fn journal_of_one_failure() -> (Core, Vec<Record>, u64) {
    let mut core = core();
    core.set_wall_clock(0, T0_UNIX_MS);
    let mut journal = vec![Core::init_record("tok", 1)];
    let mut spec = two_groups(1);
    spec.groups[0].retry_delay_ms = Some(100_000);
    journal.extend(core.submit("p-1", spec, 0, 0).unwrap());
    let (records, mut leases) = core.lease("w", 1, false, 0).unwrap();
    journal.extend(records);
    let item = CommitItem {
        lease: Some(lease_ref(&leases.leases.remove(0))),
        result: Some(commit_item::Result::Error("e".into())),
    };
    journal.extend(core.commit("tok", &[item], 0).unwrap().0);
    let delay_ms = core.to_snapshot(9, 0).delayed_retries[0].wait_ms;
    assert!((80_000..=120_000).contains(&delay_ms), "{delay_ms}");
    (core, journal, delay_ms)
}

/// The journal replayed by a new process whose monotonic clock reads
/// 1 s when the wall clock reads `unix_ms`.
fn replayed_at(journal: Vec<Record>, unix_ms: u64) -> Core {
    let mut replayed = Core::new(core().config().clone());
    replayed.set_wall_clock(1_000, unix_ms);
    replayed.replay(journal, 0, 1_000).unwrap();
    replayed.check_invariants().unwrap();
    replayed
}

/// Whether the unit can be leased at monotonic `now_ms`.
fn leasable(core: &mut Core, now_ms: u64) -> bool {
    !core.lease("w", 1, false, now_ms).unwrap().1.is_empty()
}

#[test]
fn a_failure_is_journaled_with_its_wall_clock_time() {
    let (_, journal, _) = journal_of_one_failure();
    let failed: Vec<u64> = journal
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::AttemptFailed(f)) => Some(f.failed_unix_ms),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [T0_UNIX_MS]);
}

#[test]
fn a_replayed_retry_delay_counts_the_time_since_the_failure() {
    let (_, journal, delay_ms) = journal_of_one_failure();
    // Restarted 50 s after the failure: 50 s of the delay are over.
    let mut replayed = replayed_at(journal, T0_UNIX_MS + 50_000);
    let due_ms = 1_000 + delay_ms - 50_000;
    assert!(!leasable(&mut replayed, due_ms - 1));
    assert!(leasable(&mut replayed, due_ms));
}

#[test]
fn a_replayed_retry_whose_delay_passed_during_the_downtime_is_ready_at_once() {
    let (_, journal, _) = journal_of_one_failure();
    let mut replayed = replayed_at(journal, T0_UNIX_MS + 3_600_000);
    assert!(leasable(&mut replayed, 1_000));
}

#[test]
fn a_replayed_failure_without_a_time_or_from_the_future_waits_its_whole_delay() {
    for failed_unix_ms in [0, T0_UNIX_MS + 10_000_000] {
        let (_, mut journal, delay_ms) = journal_of_one_failure();
        for record in &mut journal {
            if let Some(Kind::AttemptFailed(f)) = &mut record.kind {
                f.failed_unix_ms = failed_unix_ms;
            }
        }
        // A journal from before the field, or a wall clock set back since:
        // the delay starts again at recovery, never longer.
        let mut replayed = replayed_at(journal, T0_UNIX_MS + 50_000);
        assert!(!leasable(&mut replayed, 1_000 + delay_ms - 1));
        assert!(leasable(&mut replayed, 1_000 + delay_ms));
    }
}

#[test]
fn a_retry_delay_loaded_from_a_snapshot_counts_the_time_since_it_was_taken() {
    let (core, _, delay_ms) = journal_of_one_failure();
    // Taken at 50 s; the new process starts 30 s later, its clock at 1 s.
    let mut snap = core.to_snapshot(9, 50_000);
    snap.taken_unix_ms = T0_UNIX_MS + 50_000;
    let mut restored =
        Core::from_snapshot(core.config().clone(), &snap, 1_000, T0_UNIX_MS + 80_000).unwrap();
    restored.check_invariants().unwrap();
    let due_ms = 1_000 + delay_ms - 80_000;
    assert!(!leasable(&mut restored, due_ms - 1));
    assert!(leasable(&mut restored, due_ms));
    // Restarted after the delay was over: ready at once.
    let mut late =
        Core::from_snapshot(core.config().clone(), &snap, 1_000, T0_UNIX_MS + 500_000).unwrap();
    assert!(leasable(&mut late, 1_000));
}

#[test]
fn a_delayed_unit_dropped_by_scaling_is_no_retry_in_the_snapshot() {
    let mut core = failed_once(Some(100_000));
    core.scale("p-1", "a", 2, 0).unwrap();
    let snap = core.to_snapshot(9, 0);
    assert!(
        snap.delayed_retries.is_empty(),
        "{:?}",
        snap.delayed_retries
    );
    Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
}

#[test]
fn a_snapshot_delaying_no_pending_unit_loads_without_that_delay() {
    let mut core = submitted(2);
    let leased = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    let mut snap = core.to_snapshot(9, 0);
    let delay = |pipeline_id: &str, unit| DelayedRetry {
        pipeline_id: pipeline_id.into(),
        group: 0,
        unit,
        wait_ms: 50_000,
    };
    let held = leased.unit.as_ref().unwrap().unit;
    snap.delayed_retries = vec![delay("p-1", held), delay("p-1", 99), delay("p-9", 0)];
    let mut restored = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    restored.check_invariants().unwrap();
    assert_eq!(
        restored.lease("w", 5, false, 0).unwrap().1.len(),
        1,
        "the other unit, at once"
    );
}

#[test]
fn a_snapshot_rebuilds_the_same_state() {
    let mut core = submitted(3);
    let leases = core.lease("w", 2, false, 0).unwrap().1;
    core.commit("tok", &[done(&leases[0], &["o"])], 0).unwrap();
    core.block("p-1", true, 0).unwrap();
    let snap = core.to_snapshot(42, 0);
    let restored = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    assert_eq!(restored.list(), core.list());
    assert_eq!(
        restored.outputs("p-1", "a").unwrap(),
        core.outputs("p-1", "a").unwrap()
    );
    assert_eq!(restored.to_snapshot(42, 0), snap);
    let (_, results) = core.commit("tok", &[done(&leases[1], &["o"])], 1).unwrap();
    assert_eq!(
        results,
        vec![Ok(())],
        "the held lease survives the round trip"
    );
}

#[test]
fn rollback_invalidates_every_lease_and_reopens_what_was_committed_since() {
    let mut core = submitted(3);
    let first = core.lease("w", 1, false, 0).unwrap().1.leases.remove(0);
    core.commit("tok", &[done(&first, &["o"])], 0).unwrap();
    let snapshot =
        Core::from_snapshot(core.config().clone(), &core.to_snapshot(1, 0), 0, 0).unwrap();
    let leases = core.lease("w", 2, false, 0).unwrap().1;
    core.commit("tok", &[done(&leases[0], &["o"])], 0).unwrap();
    let (mut rolled, invalidated) = core.rolled_back(snapshot, 1);
    assert_eq!(invalidated, 1, "one lease was out");
    rolled.check_invariants().unwrap();
    let status = rolled.status("p-1").unwrap();
    assert_eq!(
        status.groups[0].counts.unwrap(),
        UnitCounts {
            pending: 2,
            committed: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        status.groups[1].counts.unwrap().pending,
        1,
        "only the unit derived before the snapshot"
    );
    let (_, results) = rolled
        .commit("tok", &[done(&leases[1], &["o"])], 2)
        .unwrap();
    assert!(matches!(results[0], Err(Refusal::StaleConfig { .. })));
    let next = rolled.lease("w", 1, false, 2).unwrap().1.leases.remove(0);
    assert!(
        next.lease_id > leases[1].lease_id,
        "lease ids never go back"
    );
    let _ = LEASE_MS;
}

#[test]
fn a_cleared_group_runs_now_and_again_after_a_replay() {
    let (mut core, mut journal, _) = journal_of_one_failure();
    let (records, _) = core.clear("p-1", "a", false, 10).unwrap();
    journal.extend(records);
    assert!(core.to_snapshot(9, 10).delayed_retries.is_empty());
    let mut replayed = replayed_at(journal, T0_UNIX_MS + 10);
    assert!(leasable(&mut core, 10));
    assert!(leasable(&mut replayed, 1_000));
}

/// Leases and commits every unit of the pipelines submitted so far, until
/// none is left to lease.
fn run_all(core: &mut Core, now_ms: u64) {
    loop {
        let leases = core.lease("w", 100, false, now_ms).unwrap().1.leases;
        if leases.is_empty() {
            return;
        }
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        core.commit("tok", &items, now_ms).unwrap();
    }
}

#[test]
fn a_rollback_preview_lists_what_the_rollback_undoes() {
    let mut core = core();
    core.submit("p-0", two_groups(1), 0, 0).unwrap();
    run_all(&mut core, 0);
    core.submit("p-1", two_groups(1), 0, 0).unwrap();
    let snapshot =
        Core::from_snapshot(core.config().clone(), &core.to_snapshot(1, 0), 0, 0).unwrap();
    // Since the snapshot: p-1 finished, p-0 deleted, p-2 submitted with one
    // unit committed and one leased.
    run_all(&mut core, 1);
    core.delete_pipelines(&["p-0".to_string()], 1).unwrap();
    core.submit("p-2", two_groups(2), 0, 1).unwrap();
    let first = core.lease("w", 1, false, 1).unwrap().1.leases.remove(0);
    core.commit("tok", &[done(&first, &["o", "o2"])], 1)
        .unwrap();
    core.lease("w", 1, false, 1).unwrap();
    let before = core.to_snapshot(2, 1);

    let (after, invalidated) = core.rolled_back(snapshot, 2);
    let preview = core.rollback_preview(&after);
    assert_eq!(core.to_snapshot(2, 1), before, "a preview changes nothing");
    assert_eq!(preview.leases_invalidated, invalidated);
    assert_eq!(preview.leases_invalidated, 1);
    let row = |id: &str, now: PipelineState, after: PipelineState, again: u64, files: u64| {
        PipelineRollback {
            pipeline_id: id.into(),
            name: "p".into(),
            state_now: now as i32,
            state_after: after as i32,
            units_to_run_again: again,
            committed_files_left: files,
        }
    };
    assert_eq!(
        preview.pipelines,
        vec![
            row(
                "p-2",
                PipelineState::Running,
                PipelineState::Unspecified,
                1,
                2
            ),
            row(
                "p-0",
                PipelineState::Unspecified,
                PipelineState::Succeeded,
                0,
                0
            ),
            row(
                "p-1",
                PipelineState::Succeeded,
                PipelineState::Pending,
                2,
                0
            ),
        ],
        "dropped, restored, then changed"
    );
    assert_eq!(
        (
            preview.pipelines_dropped,
            preview.pipelines_restored,
            preview.pipelines_changed,
            preview.units_to_run_again
        ),
        (1, 1, 1, 3)
    );
    let (again, _) = after.rolled_back(after.clone(), 3);
    let nothing = after.rollback_preview(&again);
    assert!(nothing.pipelines.is_empty(), "{nothing:?}");
    assert_eq!(nothing.units_to_run_again, 0);
}

/// Leases and commits every unit ready now, journaling into `journal`.
fn run_all_into(core: &mut Core, journal: &mut Vec<Record>) {
    loop {
        let (records, leases) = core.lease("w", 100, false, 0).unwrap();
        journal.extend(records);
        if leases.leases.is_empty() {
            return;
        }
        let items: Vec<_> = leases.leases.iter().map(|l| done(l, &["o"])).collect();
        journal.extend(core.commit("tok", &items, 0).unwrap().0);
    }
}

/// `a` over two inputs, gathered by `b`.
fn gathered() -> PipelineSpec {
    let mut spec = two_groups(2);
    spec.groups[1].gather = true;
    spec
}

fn unit_numbers(core: &Core, group: &str) -> Vec<u32> {
    let outputs = core.outputs("p-1", group).unwrap();
    outputs.iter().map(|u| u.unit).collect()
}

#[test]
fn a_cleared_gather_is_made_again_as_unit_0_now_and_after_a_replay() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", gathered(), 0, 0).unwrap());
    run_all_into(&mut core, &mut journal);
    assert_eq!(unit_numbers(&core, "b"), [0]);
    let (records, changed) = core.clear("p-1", "a", true, 0).unwrap();
    journal.extend(records);
    assert_eq!((changed.units_reset, changed.units_dropped), (2, 1));
    core.check_invariants().unwrap();
    assert_eq!(
        core.status("p-1").unwrap().groups[1].counts.unwrap(),
        UnitCounts::default()
    );
    run_all_into(&mut core, &mut journal);
    core.check_invariants().unwrap();
    assert_eq!(
        unit_numbers(&core, "b"),
        [0],
        "the same number, no tombstone"
    );
    let replayed = replayed_at(journal, T0_UNIX_MS);
    assert_eq!(replayed.outputs("p-1", "b"), core.outputs("p-1", "b"));
}

#[test]
fn an_older_clear_record_keeps_the_tombstone_on_replay() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", gathered(), 0, 0).unwrap());
    run_all_into(&mut core, &mut journal);
    // As a master before `keep_unit_numbers` journaled it.
    let old = rec(Kind::GroupCleared(journal::GroupCleared {
        pipeline_id: "p-1".into(),
        group: 0,
        downstream: true,
        keep_unit_numbers: false,
        revive_per_unit: false,
    }));
    core.apply(&old, 0).unwrap();
    journal.push(old);
    run_all_into(&mut core, &mut journal);
    assert_eq!(
        unit_numbers(&core, "b"),
        [1],
        "after the tombstone, as before"
    );
    let replayed = replayed_at(journal, T0_UNIX_MS);
    assert_eq!(replayed.outputs("p-1", "b"), core.outputs("p-1", "b"));
}

/// Runs every ready unit, committing group `a`'s units in the order
/// `a_order` gives them (a function of the leases, e.g. reversed); the
/// units of `a` each unit of `b` read, by its number.
fn run_ordered(
    core: &mut Core,
    journal: &mut Vec<Record>,
    a_order: impl Fn(&mut Vec<Lease>),
) -> std::collections::BTreeMap<u32, Vec<String>> {
    let mut b_inputs = std::collections::BTreeMap::new();
    loop {
        let (records, leases) = core.lease("w", 100, false, 0).unwrap();
        journal.extend(records);
        if leases.leases.is_empty() {
            return b_inputs;
        }
        let (mut a, b): (Vec<Lease>, Vec<Lease>) = leases
            .leases
            .into_iter()
            .partition(|l| l.unit.as_ref().unwrap().group == "a");
        a_order(&mut a);
        for lease in a.iter().chain(&b) {
            let unit = lease.unit.as_ref().unwrap();
            if unit.group == "b" {
                // The unit of `a` each input came from (a path is
                // `/store/p-1/a/UNIT/LEASE/NAME`; the lease differs per run).
                let sources = lease
                    .inputs
                    .iter()
                    .map(|i| i.split('/').nth(4).unwrap().to_string());
                b_inputs.insert(unit.unit, sources.collect());
            }
            let output = format!("o{}", unit.unit);
            let item = done(lease, &[output.as_str()]);
            journal.extend(core.commit("tok", &[item], 0).unwrap().0);
        }
    }
}

#[test]
fn a_per_unit_group_cleared_downstream_keeps_its_unit_numbers() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", two_groups(4), 0, 0).unwrap());
    let first = run_ordered(&mut core, &mut journal, |_| {});
    assert_eq!(first.len(), 4);
    let (records, _) = core.clear("p-1", "a", true, 0).unwrap();
    journal.extend(records);
    core.check_invariants().unwrap();
    assert_snapshot_encodes(&core); // revivable units
    // A snapshot taken now, restored: the same units revive.
    let restored = Core::from_snapshot(core.config().clone(), &core.to_snapshot(9, 0), 0, 0);
    let mut restored = restored.unwrap();
    restored.check_invariants().unwrap();

    // `a` commits in the other order this time: `b`'s units would have
    // been made in that order, under new numbers after the tombstones.
    let again = run_ordered(&mut core, &mut journal, |a| a.reverse());
    core.check_invariants().unwrap();
    assert_eq!(again, first, "each unit of b reads what it read before");
    assert_eq!(unit_numbers(&core, "b"), [0, 1, 2, 3]);
    let from_snapshot = run_ordered(&mut restored, &mut Vec::new(), |a| a.reverse());
    assert_eq!(from_snapshot, first);
    let replayed = replayed_at(journal, T0_UNIX_MS);
    assert_eq!(replayed.outputs("p-1", "b"), core.outputs("p-1", "b"));
}

#[test]
fn a_per_unit_clear_recorded_before_revival_appends_on_replay() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", two_groups(2), 0, 0).unwrap());
    run_ordered(&mut core, &mut journal, |_| {});
    // As a master before `revive_per_unit` journaled it.
    let old = rec(Kind::GroupCleared(journal::GroupCleared {
        pipeline_id: "p-1".into(),
        group: 0,
        downstream: true,
        keep_unit_numbers: true,
        revive_per_unit: false,
    }));
    core.apply(&old, 0).unwrap();
    journal.push(old);
    run_ordered(&mut core, &mut journal, |_| {});
    assert_eq!(unit_numbers(&core, "b"), [2, 3], "after the tombstones");
    let replayed = replayed_at(journal, T0_UNIX_MS);
    assert_eq!(replayed.outputs("p-1", "b"), core.outputs("p-1", "b"));
}
