//! One clock drives the master: with its background loops running on a
//! manual clock, leases run out and finished pipelines are deleted exactly
//! when that clock says, and the wall times the master journals are the
//! clock's. Nothing sleeps: the test moves the clock, then waits for the
//! loops to finish their round (which waits for real journal syncs) and go
//! back to sleep on it.

use std::sync::Arc;
use std::time::Duration;

use taskmaster_master::clock::{Clock, ManualClock};
use taskmaster_master::runtime::{Master, MasterConfig, MasterError};
use taskmaster_master::snapshots::SnapshotStore;
use taskmaster_proto::v1::*;

/// Both loops this test runs: the reaper and the finished pipelines'.
const LOOPS: usize = 2;

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

fn lease_ref(lease: &Lease) -> LeaseRef {
    LeaseRef {
        unit: lease.unit.clone(),
        lease_id: lease.lease_id,
        config_version: 1,
        incarnation: lease.incarnation,
    }
}

async fn commit(master: &Master, lease: &Lease) -> Result<(), Refusal> {
    let item = CommitItem {
        lease: Some(lease_ref(lease)),
        result: Some(commit_item::Result::Outputs(Outputs::default())),
    };
    let (mut results, _) = master
        .commit(&lease.server_token, &[item], None)
        .await
        .unwrap();
    results.remove(0)
}

type Refusal = taskmaster_master::core::Refusal;

/// Moves the clock on by `ms`, then waits until the loops it woke have
/// done their round and sleep on the clock again.
async fn advance(clock: &ManualClock, ms: u64) {
    clock.advance(ms);
    clock.until_sleeping(LOOPS).await;
}

async fn counts(master: &Master, id: &str) -> UnitCounts {
    master.status(id).await.unwrap().groups[0].counts.unwrap()
}

#[tokio::test]
async fn lease_expiry_and_retention_follow_the_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let mut config = MasterConfig::new(dir.path().join("data"));
    config.lease_ms = 10_000; // the reaper ticks every second
    config.retain_finished = Some(Duration::from_secs(3_600));
    let master = Arc::new(Master::open(&config, clock.clone()).unwrap());
    let reaper = tokio::spawn(Arc::clone(&master).run_reaper());
    let finished =
        tokio::spawn(Arc::clone(&master).run_finished_pipelines(master.retain_finished()));
    clock.until_sleeping(LOOPS).await;

    let submitted_unix_ms = clock.unix_ms();
    let id = master.submit(spec(2)).await.unwrap();
    let leases = master
        .lease("w", 2, false, Duration::ZERO)
        .await
        .unwrap()
        .leases;
    assert_eq!(commit(&master, &leases[0]).await, Ok(()));

    // Unit 1's lease runs out 10 s after it was granted, by the clock.
    for _ in 0..9 {
        advance(&clock, 1_000).await;
    }
    assert_eq!(counts(&master, &id).await.leased, 1, "9 s in: still out");
    advance(&clock, 1_000).await;
    let at_10_s = counts(&master, &id).await;
    assert_eq!(
        (at_10_s.leased, at_10_s.pending),
        (0, 1),
        "10 s in: expired"
    );
    assert!(
        commit(&master, &leases[1]).await.is_err(),
        "an expired lease cannot commit"
    );
    // The expired attempt is kept with its worker and its duration by the
    // clock: from the grant to the moment the lease ran out.
    let kept = master
        .view(|core, _| core.unit_detail(&id, "g", 1))
        .await
        .unwrap()
        .unwrap();
    let runs: Vec<(Option<&str>, Option<u64>)> = kept
        .errors
        .iter()
        .map(|e| (e.worker_id.as_deref(), e.duration_ms))
        .collect();
    assert_eq!(runs, [(Some("w"), Some(10_000))]);

    let again = master
        .lease("w", 1, false, Duration::ZERO)
        .await
        .unwrap()
        .leases;
    assert_eq!(commit(&master, &again[0]).await, Ok(()));
    let status = master.status(&id).await.unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);
    assert_eq!(status.finished_unix_ms, 0, "not recorded before a round");
    advance(&clock, 1_000).await;
    let finished_unix_ms = clock.unix_ms();
    assert_eq!(
        master.status(&id).await.unwrap().finished_unix_ms,
        finished_unix_ms,
        "the finish time is the clock's"
    );

    // The wall times journaled and in snapshots are the clock's too.
    let snap = master.take_snapshot("times").await.unwrap();
    assert_eq!(snap.taken_unix_ms, finished_unix_ms);
    let written = SnapshotStore::open(&config.data_dir)
        .unwrap()
        .load(&snap.snapshot_id)
        .unwrap();
    assert_eq!(written.pipelines[0].submitted_unix_ms, submitted_unix_ms);
    assert_eq!(written.pipelines[0].finished_unix_ms, finished_unix_ms);

    // Kept until the retention has passed on the clock, then deleted.
    advance(&clock, 3_599_000).await;
    assert!(master.status(&id).await.is_ok(), "kept for an hour");
    advance(&clock, 1_000).await;
    let gone = master.status(&id).await.unwrap_err();
    assert!(matches!(gone, MasterError::Core(_)), "{gone}");
    assert!(gone.to_string().contains("no pipeline"), "{gone}");

    master.begin_shutdown();
    reaper.await.unwrap();
    finished.await.unwrap();
    master.close();
}

/// A long-poll for work waits on the master's clock too: it ends when
/// the clock passes its deadline, or at once when the reaper frees a unit.
#[tokio::test]
async fn a_long_poll_ends_by_the_clock_or_when_the_reaper_frees_work() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let mut config = MasterConfig::new(dir.path().join("data"));
    config.lease_ms = 10_000;
    let master = Arc::new(Master::open(&config, clock.clone()).unwrap());
    master.submit(spec(1)).await.unwrap();
    let held = master
        .lease("w", 1, false, Duration::ZERO)
        .await
        .unwrap()
        .leases;
    assert_eq!(held.len(), 1);

    let poll = {
        let master = Arc::clone(&master);
        tokio::spawn(async move { master.lease("v", 1, false, Duration::from_secs(5)).await })
    };
    clock.until_sleeping(1).await;
    clock.advance(5_000);
    let empty = poll.await.unwrap().unwrap();
    assert!(empty.is_empty(), "nothing freed within the wait");

    let poll = {
        let master = Arc::clone(&master);
        tokio::spawn(async move { master.lease("v", 1, false, Duration::from_secs(60)).await })
    };
    let reaper = tokio::spawn(Arc::clone(&master).run_reaper());
    clock.until_sleeping(2).await;
    clock.advance(5_000); // the lease was granted 10 s ago: the reaper frees it
    let freed = poll.await.unwrap().unwrap();
    assert_eq!(freed.leases.len(), 1, "the expired unit, at once");
    master.begin_shutdown();
    reaper.await.unwrap();
    master.close();
}
