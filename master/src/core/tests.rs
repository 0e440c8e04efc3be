//! Transition tests: each asserts the exact journal records an operation
//! yields and the state it leaves, with `check_invariants` after each step.

use taskmaster_proto::journal::{self, Record, UnitAddr, record::Kind};
use taskmaster_proto::v1::*;

use taskmaster_proto::compact::expand;

use super::lease_view::output_prefix;
use super::{Core, CoreConfig, CoreError, Refusal};

pub const LEASE_MS: u64 = 1000;

pub fn core() -> Core {
    let config = CoreConfig {
        store_root: "/store".into(),
        store_url: String::new(),
        lease_ms: LEASE_MS,
        max_in_flight: 0,
        admission: Default::default(),
    };
    Core::recover(config, [Core::init_record("tok", 1)], 0).unwrap()
}

/// Two groups: `a` with one unit per input, `b` after `a`.
pub fn two_groups(inputs: usize) -> PipelineSpec {
    let group = |name: &str| GroupSpec {
        name: name.into(),
        task: "exec".into(),
        command: vec!["true".into()],
        max_attempts: 2,
        retry_delay_ms: Some(0),
        ..Default::default()
    };
    let mut a = group("a");
    a.inputs = (0..inputs).map(|i| format!("/in/{i}.txt")).collect();
    let mut b = group("b");
    b.after = vec!["a".into()];
    PipelineSpec {
        name: "p".into(),
        groups: vec![a, b],
        ..Default::default()
    }
}

/// The bottom-up snapshot encoder the master writes with decodes to
/// exactly what `to_snapshot` builds.
pub fn assert_snapshot_encodes(core: &Core) {
    use prost::Message as _;
    let snap = core.to_snapshot(9, 0);
    let head = journal::Snapshot {
        pipelines: Vec::new(),
        ..snap.clone()
    };
    let bytes = core.snapshot_source(0).encode_with_head(&head);
    assert_eq!(journal::Snapshot::decode(bytes.as_slice()).unwrap(), snap);
}

pub fn lease_ref(lease: &Lease) -> LeaseRef {
    LeaseRef {
        unit: lease.unit.clone(),
        lease_id: lease.lease_id,
        config_version: lease.config_version,
        incarnation: lease.incarnation,
    }
}

pub fn done(lease: &Lease, files: &[&str]) -> CommitItem {
    let files = files
        .iter()
        .map(|n| OutputFile {
            name: n.to_string(),
            size_bytes: 1,
        })
        .collect();
    CommitItem {
        lease: Some(lease_ref(lease)),
        result: Some(commit_item::Result::Outputs(Outputs { files })),
    }
}

fn failed(lease: &Lease, error: &str) -> CommitItem {
    CommitItem {
        lease: Some(lease_ref(lease)),
        result: Some(commit_item::Result::Error(error.into())),
    }
}

fn addr(group: u32, unit: u32) -> Option<UnitAddr> {
    Some(UnitAddr {
        pipeline_id: "p-1".into(),
        group,
        unit,
    })
}

fn rec(kind: Kind) -> Record {
    Record { kind: Some(kind) }
}

/// A core holding pipeline `p-1` (two inputs) and one lease on unit a/0.
fn leased() -> (Core, Lease) {
    let mut core = core();
    core.submit("p-1", two_groups(2), 5, 0).unwrap();
    let (_, mut leases) = core.lease("w1", 1, false, 0).unwrap();
    core.check_invariants().unwrap();
    (core, leases.leases.remove(0))
}

fn counts(core: &Core, group: usize) -> UnitCounts {
    core.status("p-1").unwrap().groups[group].counts.unwrap()
}

#[test]
fn submit_journals_the_spec_and_creates_first_units() {
    let mut core = core();
    let records = core.submit("p-1", two_groups(2), 5, 0).unwrap();
    let want = rec(Kind::PipelineSubmitted(journal::PipelineSubmitted {
        pipeline_id: "p-1".into(),
        spec: Some(two_groups(2)),
        submitted_unix_ms: 5,
        rerun_of: String::new(),
        backfill: false,
    }));
    assert_eq!(records, vec![want]);
    assert_eq!(
        counts(&core, 0),
        UnitCounts {
            pending: 2,
            ..Default::default()
        }
    );
    assert_eq!(core.status("p-1").unwrap().state(), PipelineState::Pending);
    core.check_invariants().unwrap();
}

#[test]
fn bad_submit_changes_nothing() {
    let mut core = core();
    let mut spec = two_groups(1);
    spec.groups[1].after = vec!["nope".into()];
    let err = core.submit("p-1", spec, 5, 0).unwrap_err();
    assert!(matches!(err, CoreError::Invalid(_)), "{err}");
    assert!(core.list().is_empty());
}

#[test]
fn lease_journals_the_grant_and_hands_out_a_unique_prefix() {
    let mut core = core();
    core.submit("p-1", two_groups(2), 5, 0).unwrap();
    let (records, leases) = core.lease("w1", 5, false, 0).unwrap();
    // One record for the call's grants in a row in one group.
    let grants = rec(Kind::LeasesGranted(journal::LeasesGranted {
        pipeline_id: "p-1".into(),
        group: 0,
        units: vec![0, 1],
        first_lease_id: 1,
        worker_id: "w1".into(),
        lease_ms: LEASE_MS,
        // The core of these tests has no wall clock: not known.
        granted_unix_ms: 0,
    }));
    assert_eq!(records, vec![grants]);
    assert_eq!(leases[1].output_prefix, "p-1/a/1/2/");
    assert_eq!(leases[1].inputs, vec!["/in/1.txt".to_string()]);
    assert_eq!((leases[1].attempt, leases[1].config_version), (1, 1));
    assert_eq!(leases[1].server_token, "tok");
    assert!(
        core.lease("w1", 5, false, 0).unwrap().0.is_empty(),
        "nothing left to lease"
    );
    core.check_invariants().unwrap();
}

#[test]
fn commit_journals_outputs_and_feeds_downstream() {
    let (mut core, lease) = leased();
    let (records, results) = core
        .commit("tok", &[done(&lease, &["out.txt"])], 10)
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    let want = rec(Kind::UnitsCommitted(journal::UnitsCommitted {
        pipeline_id: "p-1".into(),
        group: 0,
        units: vec![0],
        lease_ids: vec![1],
        file_counts: vec![1],
        files: vec![OutputFile {
            name: "out.txt".into(),
            size_bytes: 1,
        }],
    }));
    assert_eq!(records, vec![want]);
    assert_eq!(counts(&core, 1).pending, 1);
    let (_, down) = core.lease("w2", 5, false, 10).unwrap();
    let b = down
        .iter()
        .find(|l| l.unit.as_ref().unwrap().group == "b")
        .unwrap();
    assert_eq!(
        b.inputs,
        vec![format!(
            "/store/{}out.txt",
            output_prefix("p-1", "a", 0, 1, 0)
        )]
    );
    core.check_invariants().unwrap();
}

#[test]
fn repeated_commit_succeeds_again_without_a_record() {
    let (mut core, lease) = leased();
    core.commit("tok", &[done(&lease, &["x"])], 10).unwrap();
    let (records, results) = core.commit("tok", &[done(&lease, &["x"])], 10).unwrap();
    assert_eq!((records, results), (vec![], vec![Ok(())]));
    assert_eq!(counts(&core, 0).committed, 1);
    assert_eq!(core.outputs("p-1", "a").unwrap().len(), 1);
}

#[test]
fn the_four_checks_refuse_and_change_nothing() {
    let (mut core, lease) = leased();
    let before = core.list();
    let err = core
        .commit("other-token", &[done(&lease, &["x"])], 10)
        .unwrap_err();
    assert!(matches!(err, CoreError::WrongMaster { .. }));

    let mut stale = done(&lease, &["x"]);
    stale.lease.as_mut().unwrap().config_version = 2;
    let (records, results) = core.commit("tok", &[stale], 10).unwrap();
    assert!(records.is_empty());
    assert_eq!(
        results,
        vec![Err(Refusal::StaleConfig {
            lease: 2,
            current: 1
        })]
    );

    let (_, results) = core
        .commit("tok", &[done(&lease, &["../escape"])], 10)
        .unwrap();
    assert!(matches!(results[0], Err(Refusal::Invalid(_))));

    let mut unknown = done(&lease, &["x"]);
    unknown.lease.as_mut().unwrap().unit.as_mut().unwrap().unit = 99;
    let (_, results) = core.commit("tok", &[unknown], 10).unwrap();
    assert!(matches!(results[0], Err(Refusal::UnknownUnit(_))));

    // Check 3: past its expiry the lease is refused even before the reaper runs.
    let (records, results) = core
        .commit("tok", &[done(&lease, &["x"])], LEASE_MS)
        .unwrap();
    assert!(records.is_empty());
    assert!(matches!(results[0], Err(Refusal::LeaseLost(_))));
    assert_eq!(core.list(), before);
    core.check_invariants().unwrap();
}

fn next(worker_id: &str, max_units: u32) -> LeaseNext {
    LeaseNext {
        worker_id: worker_id.into(),
        max_units,
        compact: false,
    }
}

#[test]
fn commit_and_lease_commits_then_leases_in_one_change() {
    let (mut core, lease) = leased();
    let (records, (results, leases)) = core
        .commit_and_lease("tok", &[done(&lease, &["x"])], Some(&next("w1", 5)), 10)
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    // a/1 was pending before; b/0 was made by this very commit. Both are
    // leased, journaled after the commit.
    let units: Vec<_> = leases
        .iter()
        .map(|l| {
            let unit = l.unit.as_ref().unwrap();
            (unit.group.as_str(), unit.unit)
        })
        .collect();
    assert_eq!(units, [("a", 1), ("b", 0)]);
    let kinds: Vec<_> = records
        .iter()
        .map(|r| match r.kind {
            Some(Kind::UnitsCommitted(_)) => "committed",
            Some(Kind::LeasesGranted(_)) => "granted",
            _ => "other",
        })
        .collect();
    // The grants are in two groups: two records.
    assert_eq!(kinds, ["committed", "granted", "granted"]);
    let replayed = Core::recover(core.config().clone(), replay_of(&core, records), 0);
    core.check_invariants().unwrap();
    assert_eq!(replayed.unwrap().list(), core.list());

    // Without `next` it is a plain commit.
    let (_, (results, leases)) = core
        .commit_and_lease("tok", &[done(&leases[0], &["x"])], None, 11)
        .unwrap();
    assert_eq!((results, leases.len()), (vec![Ok(())], 0));
}

/// A compact reply's leases of one group share one `LeaseGroup`, carry
/// none of its fields themselves, and expand to exactly the full leases;
/// the form changes neither the records nor the state.
#[test]
fn compact_leases_expand_to_the_full_leases() {
    let mut core = core();
    let mut spec = two_groups(3);
    spec.params = [("day".to_string(), "2026-12-03".to_string())].into();
    spec.groups[0].env = [("LANG".to_string(), "C".to_string())].into();
    spec.groups[0].config = [("k".to_string(), "v".to_string())].into();
    core.submit("p-1", spec, 5, 0).unwrap();
    core.submit("p-2", two_groups(2), 5, 0).unwrap();

    let mut full = core.clone();
    let (full_records, full_leases) = full.lease("w", 4, false, 1).unwrap();
    let (records, compact) = core.lease("w", 4, true, 1).unwrap();
    assert_eq!(records, full_records);
    assert_eq!(full.to_snapshot(1, 0), core.to_snapshot(1, 0));
    assert!(full_leases.groups.is_empty());
    // Three units of p-1 and one of p-2: two groups.
    let pipelines: Vec<_> = compact
        .groups
        .iter()
        .map(|g| g.pipeline_id.as_str())
        .collect();
    assert_eq!(pipelines, ["p-1", "p-2"]);
    let refs: Vec<_> = compact.iter().map(|l| l.lease_group).collect();
    assert_eq!(refs, [1, 1, 1, 2]);
    assert!(
        compact
            .iter()
            .all(|l| l.server_token.is_empty() && l.output_prefix.is_empty() && l.task.is_empty()),
        "{compact:?}"
    );
    let expanded = expand(compact.leases.clone(), &compact.groups).unwrap();
    assert_eq!(expanded, full_leases.leases);

    // The same through a commit's `lease_next`.
    let items: Vec<_> = expanded.iter().map(|l| done(l, &["x"])).collect();
    let compact_next = LeaseNext {
        compact: true,
        ..next("w", 10)
    };
    let (full_records, (full_results, full_leases)) = full
        .commit_and_lease("tok", &items, Some(&next("w", 10)), 2)
        .unwrap();
    let (records, (results, compact)) = core
        .commit_and_lease("tok", &items, Some(&compact_next), 2)
        .unwrap();
    assert_eq!((records, results), (full_records, full_results));
    assert!(!compact.is_empty());
    assert_eq!(
        expand(compact.leases, &compact.groups).unwrap(),
        full_leases.leases
    );

    // A lone lease comes full: a group of its own would save nothing.
    let (_, full_one) = full.lease("w", 1, false, 3).unwrap();
    let (_, one) = core.lease("w", 1, true, 3).unwrap();
    assert!(one.groups.is_empty());
    assert_eq!(one.leases, full_one.leases);
    core.check_invariants().unwrap();
}

#[test]
fn commit_and_lease_leases_even_when_an_item_is_refused() {
    let (mut core, lease) = leased();
    let mut stale = done(&lease, &["x"]);
    stale.lease.as_mut().unwrap().config_version = 2;
    let (_, (results, leases)) = core
        .commit_and_lease("tok", &[stale], Some(&next("w1", 5)), 10)
        .unwrap();
    assert!(matches!(results[0], Err(Refusal::StaleConfig { .. })));
    assert_eq!(leases.len(), 1, "the worker is still free for a/1");
}

#[test]
fn commit_and_lease_with_a_bad_lease_request_commits_nothing() {
    for bad in [next("", 1), next("w 1", 1), next("w1", 100_000)] {
        let (mut core, lease) = leased();
        let before = core.list();
        let err = core
            .commit_and_lease("tok", &[done(&lease, &["x"])], Some(&bad), 10)
            .unwrap_err();
        assert!(matches!(err, CoreError::Invalid(_)), "{bad:?}: {err:?}");
        assert_eq!(core.list(), before, "{bad:?}");
        core.check_invariants().unwrap();
    }
}

/// The journal that rebuilds `core` when `tail` were its latest records:
/// everything `leased()` did, then `tail`.
#[test]
fn commits_in_a_row_are_one_record_and_a_failure_between_them_splits_it() {
    let mut core = core();
    core.submit("p-1", two_groups(4), 5, 0).unwrap();
    let (mut journal, leases) = core.lease("w1", 4, false, 0).unwrap();
    let items = [
        done(&leases[0], &["x"]),
        done(&leases[1], &["y", "z"]),
        failed(&leases[2], "boom"),
        done(&leases[3], &["w"]),
    ];
    let (records, results) = core.commit("tok", &items, 10).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let file = |name: &str| OutputFile {
        name: name.into(),
        size_bytes: 1,
    };
    let commits = |units: Vec<u32>, lease_ids, file_counts, files| {
        rec(Kind::UnitsCommitted(journal::UnitsCommitted {
            pipeline_id: "p-1".into(),
            group: 0,
            units,
            lease_ids,
            file_counts,
            files,
        }))
    };
    let want = vec![
        commits(
            vec![0, 1],
            vec![1, 2],
            vec![1, 2],
            vec![file("x"), file("y"), file("z")],
        ),
        rec(Kind::AttemptFailed(journal::AttemptFailed {
            unit: addr(0, 2),
            lease_id: 3,
            error: "boom".into(),
            failed_unix_ms: 0,
        })),
        commits(vec![3], vec![4], vec![1], vec![file("w")]),
    ];
    assert_eq!(records, want);
    core.check_invariants().unwrap();

    let mut fresh = super::tests::core();
    let mut all = vec![Core::init_record("tok", 1)];
    all.extend(fresh.submit("p-1", two_groups(4), 5, 0).unwrap());
    all.append(&mut journal);
    all.extend(records);
    let replayed = Core::recover(core.config().clone(), all, 10).unwrap();
    replayed.check_invariants().unwrap();
    assert_eq!(replayed.list(), core.list());
    assert_eq!(
        replayed.outputs("p-1", "a").unwrap(),
        core.outputs("p-1", "a").unwrap()
    );
}

#[test]
fn journals_of_one_record_a_unit_still_replay() {
    let mut core = core();
    core.submit("p-1", two_groups(2), 5, 0).unwrap();
    let (_, leases) = core.lease("w1", 1, false, 0).unwrap();
    core.commit("tok", &[done(&leases[0], &["out"])], 10)
        .unwrap();

    let mut fresh = super::tests::core();
    let mut old = vec![Core::init_record("tok", 1)];
    old.extend(fresh.submit("p-1", two_groups(2), 5, 0).unwrap());
    old.push(rec(Kind::LeaseGranted(journal::LeaseGranted {
        unit: addr(0, 0),
        lease_id: 1,
        worker_id: "w1".into(),
        lease_ms: LEASE_MS,
        granted_unix_ms: 0,
    })));
    old.push(rec(Kind::UnitCommitted(journal::UnitCommitted {
        unit: addr(0, 0),
        lease_id: 1,
        files: vec![OutputFile {
            name: "out".into(),
            size_bytes: 1,
        }],
    })));
    let replayed = Core::recover(core.config().clone(), old, 10).unwrap();
    assert_eq!(replayed.list(), core.list());
    assert_eq!(
        replayed.outputs("p-1", "a").unwrap(),
        core.outputs("p-1", "a").unwrap()
    );
}

#[test]
fn malformed_runs_of_grants_or_commits_are_refused_as_corrupt() {
    let base = || {
        let mut fresh = super::tests::core();
        let mut records = vec![Core::init_record("tok", 1)];
        records.extend(fresh.submit("p-1", two_groups(2), 5, 0).unwrap());
        records
    };
    let grants = |first_lease_id, units: Vec<u32>| {
        rec(Kind::LeasesGranted(journal::LeasesGranted {
            pipeline_id: "p-1".into(),
            group: 0,
            units,
            first_lease_id,
            worker_id: "w1".into(),
            lease_ms: LEASE_MS,
            granted_unix_ms: 0,
        }))
    };
    let bad = [
        // Lease ids that would run past the last one.
        vec![grants(u64::MAX, vec![0, 1])],
        // A unit the group does not have, and a unit leased twice.
        vec![grants(1, vec![0, 7])],
        vec![grants(1, vec![0, 0])],
        // Lists of different lengths.
        vec![
            grants(1, vec![0]),
            rec(Kind::UnitsCommitted(journal::UnitsCommitted {
                pipeline_id: "p-1".into(),
                group: 0,
                units: vec![0],
                lease_ids: vec![1],
                file_counts: vec![2],
                files: vec![],
            })),
        ],
        // A group the pipeline does not have.
        vec![rec(Kind::UnitsCommitted(journal::UnitsCommitted {
            pipeline_id: "p-1".into(),
            group: 9,
            ..Default::default()
        }))],
    ];
    for tail in bad {
        let mut records = base();
        records.extend(tail.clone());
        let err = Core::recover(core().config().clone(), records, 0).unwrap_err();
        assert!(matches!(err, CoreError::Corrupt(_)), "{tail:?}: {err}");
    }
}

fn replay_of(core: &Core, tail: Vec<Record>) -> Vec<Record> {
    let mut fresh = super::tests::core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(fresh.submit("p-1", two_groups(2), 5, 0).unwrap());
    journal.extend(fresh.lease("w1", 1, false, 0).unwrap().0);
    assert_eq!(fresh.config(), core.config());
    journal.extend(tail);
    journal
}

#[test]
fn expiry_returns_the_unit_and_the_old_lease_cannot_commit() {
    let (mut core, lease) = leased();
    assert!(core.expire(LEASE_MS - 1).is_empty());
    let records = core.expire(LEASE_MS);
    assert_eq!(
        records,
        vec![rec(Kind::LeaseExpired(journal::LeaseExpired {
            unit: addr(0, 0),
            lease_id: 1,
            expired_unix_ms: 0,
        }))]
    );
    assert_eq!(counts(&core, 0).pending, 2);
    let (_, again) = core.lease("w2", 2, false, LEASE_MS).unwrap();
    assert_eq!(
        again[1].unit.as_ref().unwrap().unit,
        0,
        "the retried unit queues behind a/1"
    );
    assert_eq!(again[1].attempt, 2);
    let (_, results) = core
        .commit("tok", &[done(&lease, &["x"])], LEASE_MS)
        .unwrap();
    assert!(matches!(results[0], Err(Refusal::LeaseLost(_))));
    core.check_invariants().unwrap();
}

#[test]
fn renew_extends_and_a_commit_cancels_the_expiry() {
    let (mut core, lease) = leased();
    let results = core.renew("tok", &[lease_ref(&lease)], 900).unwrap();
    assert_eq!(results, vec![Ok(())]);
    assert!(core.expire(LEASE_MS + 100).is_empty(), "renewed until 1900");
    core.commit("tok", &[done(&lease, &[])], 1800).unwrap();
    assert!(
        core.expire(10_000).is_empty(),
        "a late reaper never undoes a commit"
    );
    assert_eq!(counts(&core, 0).committed, 1);
}

#[test]
fn failures_retry_then_fail_the_unit_and_the_pipeline() {
    let mut core = core();
    core.submit("p-1", two_groups(1), 5, 0).unwrap();
    for attempt in 1..=2 {
        let (_, leases) = core.lease("w1", 1, false, 0).unwrap();
        let (records, _) = core
            .commit("tok", &[failed(&leases[0], "boom")], 0)
            .unwrap();
        let want = journal::AttemptFailed {
            unit: addr(0, 0),
            lease_id: attempt,
            error: "boom".into(),
            failed_unix_ms: 0,
        };
        assert_eq!(records, vec![rec(Kind::AttemptFailed(want))]);
    }
    let status = core.status("p-1").unwrap();
    assert_eq!(status.state(), PipelineState::Failed);
    assert_eq!(status.failed_units[0].errors, vec!["boom", "boom"]);
    assert_eq!(status.retries, 1, "the second failure was the last attempt");
    core.check_invariants().unwrap();
}

#[test]
fn release_does_not_count_an_attempt() {
    let (mut core, lease) = leased();
    let (records, results) = core.release("tok", &[lease_ref(&lease)], 5).unwrap();
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(
        records,
        vec![rec(Kind::LeaseReleased(journal::LeaseReleased {
            unit: addr(0, 0),
            lease_id: 1
        }))]
    );
    assert_eq!(core.status("p-1").unwrap().retries, 0);
    core.check_invariants().unwrap();
}

#[test]
fn pipeline_succeeds_when_every_group_is_complete() {
    let (mut core, lease) = leased();
    core.commit("tok", &[done(&lease, &["o"])], 1).unwrap();
    while let (_, leases) = core.lease("w", 10, false, 1).unwrap()
        && !leases.is_empty()
    {
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        core.commit("tok", &items, 1).unwrap();
    }
    let status = core.status("p-1").unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);
    assert!(status.groups.iter().all(|g| g.complete));
    assert_eq!(core.outputs("p-1", "b").unwrap().len(), 2);
}

#[test]
fn replay_rebuilds_the_same_state() {
    let mut core = core();
    let mut journal = vec![Core::init_record("tok", 1)];
    journal.extend(core.submit("p-1", two_groups(3), 5, 0).unwrap());
    let (records, leases) = core.lease("w", 3, false, 0).unwrap();
    journal.extend(records);
    journal.extend(
        core.commit("tok", &[done(&leases[0], &["o"])], 1)
            .unwrap()
            .0,
    );
    journal.extend(core.expire(LEASE_MS + 1));
    let config = core.config().clone();
    let replayed = Core::recover(config, journal, 0).unwrap();
    replayed.check_invariants().unwrap();
    assert_eq!(replayed.list(), core.list());
    assert_eq!(
        replayed.outputs("p-1", "a").unwrap(),
        core.outputs("p-1", "a").unwrap()
    );
}

fn group(name: &str, after: &[&str]) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        task: "exec".into(),
        command: vec!["true".into()],
        after: after.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn lease_all(core: &mut Core, now: u64) -> Vec<Lease> {
    core.lease("w", 100, false, now).unwrap().1.leases
}

fn in_group<'a>(leases: &'a [Lease], name: &str) -> Vec<&'a Lease> {
    leases
        .iter()
        .filter(|l| l.unit.as_ref().unwrap().group == name)
        .collect()
}

#[test]
fn a_shuffle_waits_for_its_upstream_then_reads_one_partition_each() {
    let mut core = core();
    let mut a = group("a", &[]);
    a.inputs = vec!["/in/0".into(), "/in/1".into()];
    let mut b = group("b", &["a"]);
    b.partitions = 2;
    let spec = PipelineSpec {
        name: "p".into(),
        groups: vec![a, b],
        ..Default::default()
    };
    core.submit("p-1", spec, 0, 0).unwrap();
    let first = lease_all(&mut core, 0);
    assert_eq!(
        first[0].partitions, 2,
        "upstream of a shuffle writes partitions"
    );
    core.commit("tok", &[done(&first[0], &["part-00000", "part-00001"])], 1)
        .unwrap();
    assert!(
        lease_all(&mut core, 1).is_empty(),
        "barrier: b waits for all of a"
    );
    assert_eq!(counts(&core, 1).pending, 0);
    core.commit("tok", &[done(&first[1], &["part-00001"])], 1)
        .unwrap();
    core.check_invariants().unwrap();
    let b = lease_all(&mut core, 2);
    assert_eq!(in_group(&b, "b").len(), 2);
    let prefix = |unit, lease| format!("/store/{}", output_prefix("p-1", "a", unit, lease, 0));
    assert_eq!(b[0].inputs, vec![format!("{}part-00000", prefix(0, 1))]);
    assert_eq!(
        b[1].inputs,
        vec![
            format!("{}part-00001", prefix(0, 1)),
            format!("{}part-00001", prefix(1, 2))
        ]
    );
    assert_snapshot_encodes(&core); // partition sources, committed files
}

#[test]
fn a_partition_outside_the_shuffle_fails_the_attempt_with_the_reason() {
    let mut core = core();
    let mut b = group("b", &["a"]);
    b.partitions = 2;
    let spec = PipelineSpec {
        name: "p".into(),
        groups: vec![group("a", &[]), b],
        ..Default::default()
    };
    core.submit("p-1", spec, 0, 0).unwrap();
    let lease = lease_all(&mut core, 0).remove(0);
    let (records, results) = core
        .commit("tok", &[done(&lease, &["part-00002"])], 1)
        .unwrap();
    assert!(
        matches!(&results[0], Err(Refusal::Invalid(why)) if why.contains("outside 0..2")),
        "{results:?}"
    );
    assert!(matches!(records[0].kind, Some(Kind::AttemptFailed(_))));
    let unit_errors = core.status("p-1").unwrap();
    assert_eq!(counts(&core, 0).pending, 1, "retried: {unit_errors:?}");
}

#[test]
fn a_gather_join_runs_once_after_both_branches() {
    let mut core = core();
    let mut join = group("join", &["sales", "weather"]);
    join.gather = true;
    let groups = vec![group("sales", &[]), group("weather", &[]), join];
    core.submit(
        "p-1",
        PipelineSpec {
            name: "p".into(),
            groups,
            ..Default::default()
        },
        0,
        0,
    )
    .unwrap();
    let first = lease_all(&mut core, 0);
    assert_eq!(first.len(), 2);
    core.commit("tok", &[done(&first[0], &["s"])], 1).unwrap();
    assert!(lease_all(&mut core, 1).is_empty(), "join waits for weather");
    core.commit("tok", &[done(&first[1], &["w"])], 1).unwrap();
    let join = lease_all(&mut core, 2);
    assert_eq!(join.len(), 1);
    assert_eq!(join[0].inputs.len(), 2);
    assert_snapshot_encodes(&core); // a gather source, leased
    core.commit("tok", &[done(&join[0], &["joined"])], 3)
        .unwrap();
    assert_eq!(
        core.status("p-1").unwrap().state(),
        PipelineState::Succeeded
    );
    core.check_invariants().unwrap();
}

#[test]
fn a_remote_store_names_outputs_by_url() {
    let config = CoreConfig {
        store_root: String::new(),
        store_url: "s3://bucket/pfx".into(),
        lease_ms: LEASE_MS,
        max_in_flight: 0,
        admission: Default::default(),
    };
    let mut core = Core::recover(config, [Core::init_record("tok", 1)], 0).unwrap();
    core.submit("p-1", two_groups(1), 5, 0).unwrap();
    let (_, leases) = core.lease("w1", 1, false, 0).unwrap();
    assert_eq!(leases[0].store_url, "s3://bucket/pfx");
    assert!(leases[0].store_root.is_empty());
    core.commit("tok", &[done(&leases[0], &["sub/out.txt"])], 1)
        .unwrap();
    let url = "s3://bucket/pfx/p-1/a/0/1/sub/out.txt".to_string();
    assert_eq!(
        core.outputs("p-1", "a").unwrap()[0].paths,
        vec![url.clone()]
    );
    let (_, down) = core.lease("w1", 1, false, 1).unwrap();
    assert_eq!(down[0].inputs, vec![url]);
    core.check_invariants().unwrap();
}

/// A copy of a core (a master started on a copy of its data dir) starts
/// another incarnation: it grants the same lease id as the original, but
/// in another directory, and refuses the original's lease for it, even
/// as a "repeat"; the original's journal replays to the same checks.
#[test]
fn a_copy_of_the_state_with_another_incarnation_refuses_the_originals_leases() {
    let mut journal = vec![Core::init_record("tok", 1)];
    let mut original = core();
    journal.extend(original.submit("p-1", two_groups(1), 0, 0).unwrap());
    let mut copy = original.clone();
    journal.push(original.start(0xa, 5, 0).unwrap());
    copy.start(0xb, 5, 0).unwrap();
    assert!(
        copy.start(0xb, 6, 0).is_err(),
        "an incarnation is never reused"
    );
    assert!(copy.start(0, 6, 0).is_err());

    let (granted, first) = original.lease("w1", 1, false, 0).unwrap();
    journal.extend(granted);
    let (_, second) = copy.lease("w2", 1, false, 0).unwrap();
    let (first, second) = (&first[0], &second[0]);
    assert_eq!(first.lease_id, second.lease_id);
    assert_eq!((first.incarnation, second.incarnation), (0xa, 0xb));
    assert_eq!(first.output_prefix, "p-1/a/0/1-000000000000000a/");
    assert_eq!(second.output_prefix, "p-1/a/0/1-000000000000000b/");

    let renewed = copy.renew("tok", &[lease_ref(first)], 0).unwrap();
    assert!(
        matches!(&renewed[0], Err(Refusal::LeaseLost(why)) if why.contains("not granted by this master"))
    );
    let (records, results) = copy.commit("tok", &[done(first, &["x"])], 0).unwrap();
    assert!(records.is_empty() && results[0].is_err(), "{results:?}");
    let (_, results) = copy.commit("tok", &[done(second, &["x"])], 0).unwrap();
    assert!(results[0].is_ok());
    let (records, results) = copy.commit("tok", &[done(first, &["x"])], 0).unwrap();
    assert!(
        records.is_empty() && results[0].is_err(),
        "not a repeat: {results:?}"
    );
    copy.check_invariants().unwrap();
    assert_snapshot_encodes(&copy);
    assert!(
        copy.attempt_may_matter("p-1", "a", 0, second.lease_id, 0xb),
        "committed"
    );
    assert!(
        copy.attempt_may_matter("p-1", "a", 0, first.lease_id, 0xa),
        "not its own: kept"
    );

    // The original's journal, replayed, knows its own lease and no other;
    // so does a snapshot of it.
    let replayed = Core::recover(original.config().clone(), journal, 0).unwrap();
    let snap = replayed.to_snapshot(9, 0);
    let loaded = Core::from_snapshot(replayed.config().clone(), &snap, 0, 0).unwrap();
    for mut state in [replayed, loaded] {
        assert_eq!(state.incarnation(), 0xa);
        let (_, results) = state.commit("tok", &[done(second, &["x"])], 0).unwrap();
        assert!(results[0].is_err());
        let (_, results) = state.commit("tok", &[done(first, &["x"])], 0).unwrap();
        assert!(results[0].is_ok());
        state.check_invariants().unwrap();
    }
}

/// A commit repeated after a lost reply answers OK; one that names other
/// outputs is told they were ignored, and the first set stays committed.
#[test]
fn a_repeated_commit_with_other_outputs_is_told_they_were_ignored() {
    let mut core = core();
    core.submit("p-1", two_groups(1), 0, 0).unwrap();
    let (_, leases) = core.lease("w", 1, false, 0).unwrap();
    let (_, results) = core
        .commit("tok", &[done(&leases[0], &["a", "b"])], 0)
        .unwrap();
    assert!(results[0].is_ok());
    let (records, results) = core
        .commit("tok", &[done(&leases[0], &["b", "a"])], 0)
        .unwrap();
    assert!(
        records.is_empty() && results[0].is_ok(),
        "the same set: {results:?}"
    );
    let (records, results) = core.commit("tok", &[done(&leases[0], &["c"])], 0).unwrap();
    assert!(records.is_empty());
    assert!(
        matches!(&results[0], Err(Refusal::AlreadyCommitted(why)) if why.contains("were ignored")),
        "{results:?}"
    );
    let outputs = core.outputs("p-1", "a").unwrap();
    assert_eq!(outputs[0].paths.len(), 2);
    core.check_invariants().unwrap();
}
