//! Recovery through the real runtime and files: state acknowledged before a
//! restart is there after it, across snapshots, compaction and rollback.

use std::sync::Arc;
use std::time::Duration;

use taskmaster_master::clock::MonotonicClock;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_proto::v1::*;

fn config(dir: &std::path::Path) -> MasterConfig {
    MasterConfig::new(dir.join("data"))
}

fn open(dir: &std::path::Path) -> Arc<Master> {
    let clock = Arc::new(MonotonicClock::default());
    Arc::new(Master::open(&config(dir), clock).expect("master opens"))
}

fn spec(units: usize) -> PipelineSpec {
    let group = GroupSpec {
        name: "g".into(),
        task: "exec".into(),
        command: vec!["true".into()],
        inputs: (0..units).map(|i| format!("/in/{i}")).collect(),
        ..Default::default()
    };
    PipelineSpec {
        name: "p".into(),
        groups: vec![group],
        ..Default::default()
    }
}

async fn commit_one(master: &Master) -> Lease {
    let lease = master
        .lease("w", 1, false, Duration::ZERO)
        .await
        .unwrap()
        .leases
        .remove(0);
    let files = vec![OutputFile {
        name: "out".into(),
        size_bytes: 1,
    }];
    let item = CommitItem {
        lease: Some(LeaseRef {
            unit: lease.unit.clone(),
            lease_id: lease.lease_id,
            config_version: 1,
            incarnation: lease.incarnation,
        }),
        result: Some(commit_item::Result::Outputs(Outputs { files })),
    };
    let (results, _) = master
        .commit(&lease.server_token, &[item], None)
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    lease
}

#[tokio::test]
async fn state_survives_restart_across_a_snapshot_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let master = open(dir.path());
    let id = master.submit(spec(4)).await.unwrap();
    commit_one(&master).await;
    let snap = master.take_snapshot("first").await.unwrap();
    assert_eq!(snap.snapshot_id, "snap-000001");
    commit_one(&master).await;
    let before = master.status(&id).await.unwrap();
    let outputs = master.outputs(&id, "g").await.unwrap();
    let token = master.server_token();
    master.close();
    drop(master);

    let journal = std::fs::read(dir.path().join("data/journal.log")).unwrap();
    let master = open(dir.path());
    assert_eq!(master.status(&id).await.unwrap(), before);
    assert_eq!(master.outputs(&id, "g").await.unwrap(), outputs);
    assert_eq!(
        master.server_token(),
        token,
        "the token lives in the snapshot after compaction"
    );
    let status = master.master_status().await.unwrap();
    assert_eq!(status.snapshots, 1);
    assert!(
        // The grant and commit since the snapshot, and this start's incarnation.
        status.journal_records <= 3,
        "compacted: {status:?} ({} bytes)",
        journal.len()
    );
    master.close();
}

#[tokio::test]
async fn a_rollback_is_durable_and_old_leases_stay_refused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let master = open(dir.path());
    let id = master.submit(spec(3)).await.unwrap();
    commit_one(&master).await;
    let snap = master.take_snapshot("").await.unwrap();
    commit_one(&master).await;
    let held = master
        .lease("w", 1, false, Duration::ZERO)
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(master.rollback(&snap.snapshot_id).await.unwrap(), 1);
    let after = master.status(&id).await.unwrap();
    assert_eq!(after.groups[0].counts.unwrap().committed, 1);
    master.close();
    drop(master);

    let master = open(dir.path());
    assert_eq!(master.status(&id).await.unwrap(), after);
    let item = CommitItem {
        lease: Some(LeaseRef {
            unit: held.unit.clone(),
            lease_id: held.lease_id,
            config_version: 1,
            incarnation: held.incarnation,
        }),
        result: Some(commit_item::Result::Outputs(Outputs::default())),
    };
    let (results, _) = master
        .commit(&held.server_token, &[item], None)
        .await
        .unwrap();
    assert!(
        results[0].is_err(),
        "a lease from before the rollback commits: {results:?}"
    );
    let missing = master.rollback("snap-999999").await.unwrap_err();
    assert!(missing.to_string().contains("no snapshot"), "{missing}");
    master.close();
}

#[tokio::test]
async fn automatic_snapshots_follow_the_journal_growth_and_only_the_newest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let master = open(dir.path());
    let id = master.submit(spec(400)).await.unwrap();
    assert_eq!(
        master.snapshot_if_grown(10, 1).await.unwrap(),
        None,
        "journal too short"
    );
    for _ in 0..20 {
        commit_one(&master).await;
    }
    let first = master
        .snapshot_if_grown(10, 1)
        .await
        .unwrap()
        .expect("20 commits are 40 records");
    let kept = master.take_snapshot("by hand").await.unwrap();
    // The state (400 units) is far larger than 20 commits of journal: no
    // snapshot until the journal has grown as large as the last one.
    for _ in 0..20 {
        commit_one(&master).await;
    }
    assert_eq!(
        master.snapshot_if_grown(10, 1).await.unwrap(),
        None,
        "journal smaller than the state"
    );
    let mut second = None;
    for _ in 0..360 {
        commit_one(&master).await;
        if let Some(taken) = master.snapshot_if_grown(10, 1).await.unwrap() {
            second = Some(taken); // the newest automatic one
        }
    }
    let status = master.master_status().await.unwrap();
    let second = second
        .unwrap_or_else(|| panic!("a journal as large as the state is compacted: {status:?}"));
    let ids: Vec<String> = master
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.snapshot_id)
        .collect();
    assert!(ids.contains(&kept.snapshot_id), "{ids:?}");
    assert!(ids.contains(&second.snapshot_id), "{ids:?}");
    assert!(
        !ids.contains(&first.snapshot_id),
        "an older automatic one is kept: {ids:?}"
    );
    let before = master.status(&id).await.unwrap();
    master.close();
    drop(master);

    let master = open(dir.path());
    assert_eq!(master.status(&id).await.unwrap(), before);
    assert_eq!(before.state(), PipelineState::Succeeded);
    master.close();
}

/// Submits race a rollback: each lands wholly before it (and is rolled
/// back with the rest) or after it (on the restored state), never between
/// the state it writes and the state it installs. So the live state after
/// is exactly the one a restart recovers from the rollback's snapshot and
/// the journal after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_racing_a_rollback_land_before_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let master = open(dir.path());
    let first = master.submit(spec(3)).await.unwrap();
    commit_one(&master).await;
    let snap = master.take_snapshot("").await.unwrap();
    commit_one(&master).await;
    let racing: Vec<_> = (0..40)
        .map(|_| {
            let master = Arc::clone(&master);
            tokio::spawn(async move { master.submit(spec(1)).await.unwrap() })
        })
        .collect();
    master.rollback(&snap.snapshot_id).await.unwrap();
    let mut submitted = Vec::new();
    for submit in racing {
        submitted.push(submit.await.unwrap());
    }
    let live = master.list().await.unwrap();
    assert_eq!(live[0].pipeline_id, first);
    assert_eq!(
        live[0].groups[0].counts.unwrap().committed,
        1,
        "rolled back"
    );
    for kept in &live[1..] {
        assert!(submitted.contains(&kept.pipeline_id), "{kept:?}");
    }
    master.close();
    drop(master);

    let master = open(dir.path());
    assert_eq!(master.list().await.unwrap(), live);
    master.close();
}

/// Leases the one unit there is, if it may run now.
async fn lease_now(master: &Master) -> Option<Lease> {
    let mut leases = master.lease("w", 1, false, Duration::ZERO).await.unwrap();
    (!leases.leases.is_empty()).then(|| leases.leases.remove(0))
}

#[tokio::test]
async fn a_retry_delay_goes_on_across_restarts_and_counts_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let master = open(dir.path());
    let mut one = spec(1);
    // 2 to 3 s, jittered.
    one.groups[0].retry_delay_ms = Some(2_500);
    master.submit(one).await.unwrap();
    let lease = lease_now(&master).await.expect("a unit to lease");
    let item = CommitItem {
        lease: Some(LeaseRef {
            unit: lease.unit.clone(),
            lease_id: lease.lease_id,
            config_version: 1,
            incarnation: lease.incarnation,
        }),
        result: Some(commit_item::Result::Error("flaky".into())),
    };
    let (results, _) = master
        .commit(&lease.server_token, &[item], None)
        .await
        .unwrap();
    assert_eq!(results, vec![Ok(())]);
    assert!(lease_now(&master).await.is_none(), "waiting out its delay");
    master.close();
    drop(master);

    // Restarted at once, from the journal: still waiting.
    let master = open(dir.path());
    assert!(lease_now(&master).await.is_none(), "the delay is not over");
    // From a snapshot, after longer than the delay: ready at once.
    master.take_snapshot("delayed").await.unwrap();
    master.close();
    drop(master);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let master = open(dir.path());
    let again = lease_now(&master)
        .await
        .expect("the delay passed while down");
    assert_eq!(again.attempt, 2);
    master.close();
}

/// A data dir whose journal is gone but whose store holds outputs is not
/// taken for a new one: the master refuses, saying what it found and what
/// to do, and changes nothing; `--init` (init) starts a new store there.
#[tokio::test]
async fn a_data_dir_with_outputs_but_no_journal_is_refused_without_init() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("store/p-1/g/0/1")).unwrap();
    std::fs::write(data.join("store/p-1/g/0/1/out"), "committed").unwrap();
    let refused = Master::open(&config(dir.path()), Arc::new(MonotonicClock::default()));
    let err = refused.err().expect("refused").to_string();
    assert!(
        err.contains("no journal.log") && err.contains("--init"),
        "{err}"
    );
    assert!(err.contains("\"p-1\""), "{err}");
    assert!(!data.join("journal.log").exists(), "nothing created");

    let mut init = config(dir.path());
    init.init = true;
    let master = Master::open(&init, Arc::new(MonotonicClock::default())).unwrap();
    master.close();
    drop(master);
    open(dir.path()).close();

    // A brand-new data dir needs no flag.
    let fresh = tempfile::tempdir().unwrap();
    open(fresh.path()).close();
}
