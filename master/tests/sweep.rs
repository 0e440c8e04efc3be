//! The sweep deletes outputs of attempts that can no longer commit, and
//! nothing else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_master::clock::ManualClock;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_proto::v1::*;

fn write_output(lease: &Lease) -> std::path::PathBuf {
    let dir = Path::new(&lease.store_root).join(&lease.output_prefix);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("out"), "x").unwrap();
    dir
}

fn commit_item(lease: &Lease) -> CommitItem {
    CommitItem {
        lease: Some(LeaseRef {
            unit: lease.unit.clone(),
            lease_id: lease.lease_id,
            config_version: 1,
            incarnation: lease.incarnation,
        }),
        result: Some(commit_item::Result::Outputs(Outputs {
            files: vec![OutputFile {
                name: "out".into(),
                size_bytes: 1,
            }],
        })),
    }
}

#[tokio::test]
async fn only_attempts_that_can_no_longer_commit_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterConfig {
        lease_ms: 1_000,
        ..MasterConfig::new(dir.path().join("data"))
    };
    let clock = Arc::new(ManualClock::default());
    let master = Arc::new(Master::open(&config, clock.clone()).unwrap());
    let group = GroupSpec {
        name: "g".into(),
        task: "exec".into(),
        command: vec!["true".into()],
        inputs: vec!["/in/a".into(), "/in/b".into(), "/in/c".into()],
        ..Default::default()
    };
    let spec = PipelineSpec {
        name: "p".into(),
        groups: vec![group],
        ..Default::default()
    };
    master.submit(spec).await.unwrap();
    let leases = master
        .lease("w", 3, false, Duration::ZERO)
        .await
        .unwrap()
        .leases;
    let dirs: Vec<_> = leases.iter().map(write_output).collect();
    master
        .commit(&leases[0].server_token, &[commit_item(&leases[0])], None)
        .await
        .unwrap();
    // Unit 1's lease expires; unit 2's is renewed and stays in flight.
    clock.advance(600);
    let refs = vec![LeaseRef {
        unit: leases[2].unit.clone(),
        lease_id: leases[2].lease_id,
        config_version: 1,
        incarnation: leases[2].incarnation,
    }];
    master.renew(&leases[2].server_token, &refs).await.unwrap();
    clock.advance(600);
    assert_eq!(master.reap().await.unwrap(), 1);

    let swept = master.sweep().await;
    assert_eq!((swept.attempts_deleted, swept.attempts_kept), (1, 2));
    assert!(dirs[0].exists(), "committed output kept");
    assert!(!dirs[1].exists(), "expired attempt's output deleted");
    assert!(dirs[2].exists(), "in-flight attempt kept");
    let (late, _) = master
        .commit(&leases[1].server_token, &[commit_item(&leases[1])], None)
        .await
        .unwrap();
    assert!(
        late[0].is_err(),
        "the swept attempt could not have committed anyway"
    );
    master.close();
}
