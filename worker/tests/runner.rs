//! The worker's lease / run / renew / commit / release behaviour against a
//! scripted fake master over real gRPC. Numbered by lifecycle: t1x run and
//! commit, t2x renewal, t3x commit replies, t4x shutdown, t5x slots, t6x
//! master availability.

mod fake_master;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_master::{Call, EVENT_TIMEOUT, FakeMaster, all_ok, item};
use taskmaster_proto::v1::commit_item::Result as ItemResult;
use taskmaster_proto::v1::{
    CommitRequest, CommitResponse, Lease, OutputFile, RenewResponse, UnitRef,
};
use taskmaster_worker::{
    Task, TaskError, TaskRegistry, UnitContext, WorkerConfig, WorkerError, WorkerStats, run_worker,
    run_worker_until,
};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::{Code, Status};

const TOKEN: &str = "token-1";

/// A lease for unit `unit` running `sh -c script` with the exec task.
fn exec_lease(store: &Path, lease_id: u64, unit: u32, script: &str) -> Lease {
    Lease {
        unit: Some(UnitRef {
            pipeline_id: "p".into(),
            group: "g".into(),
            unit,
        }),
        lease_id,
        lease_ms: 30_000,
        config_version: 5,
        server_token: TOKEN.into(),
        output_prefix: format!("p/g/{unit}/{lease_id}/"),
        store_root: store.display().to_string(),
        task: "exec".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        attempt: 1,
        ..Lease::default()
    }
}

fn config(master: &FakeMaster, slots: u32) -> WorkerConfig {
    WorkerConfig {
        master_url: master.url.clone(),
        slots,
        worker_id: "test-worker".into(),
        lease_wait_ms: 1_000,
        grace_ms: 30_000,
    }
}

/// A worker running in the background until `stop`.
struct RunningWorker {
    shutdown: Option<oneshot::Sender<()>>,
    hard_shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<WorkerStats, WorkerError>>,
}

/// Resolves when `rx` fires (not when its sender is dropped).
async fn fired(rx: oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn start(config: WorkerConfig, tasks: TaskRegistry) -> RunningWorker {
    let (shutdown, shutdown_rx) = oneshot::channel();
    let (hard_shutdown, hard_rx) = oneshot::channel();
    let handle = tokio::spawn(run_worker_until(
        config,
        tasks,
        fired(shutdown_rx),
        fired(hard_rx),
    ));
    RunningWorker {
        shutdown: Some(shutdown),
        hard_shutdown: Some(hard_shutdown),
        handle,
    }
}

impl RunningWorker {
    /// Asks for a graceful shutdown, without waiting for it.
    fn request_stop(&mut self) {
        let _ = self.shutdown.take().expect("stop once").send(());
    }

    /// Asks for a hard shutdown, without waiting for it.
    fn request_hard_stop(&mut self) {
        let _ = self.hard_shutdown.take().expect("stop once").send(());
    }

    /// Waits for the worker to return.
    async fn finished(self) -> WorkerStats {
        tokio::time::timeout(EVENT_TIMEOUT, self.handle)
            .await
            .expect("worker did not stop in time")
            .unwrap()
            .unwrap()
    }

    /// Graceful shutdown, waiting for it.
    async fn stop(mut self) -> WorkerStats {
        self.request_stop();
        self.finished().await
    }
}

/// Waits until a file appears (written by a unit's command: the event that
/// it is running).
async fn file_appears(path: &Path) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn commit_of(call: Call) -> Option<CommitRequest> {
    match call {
        Call::Commit(request) => Some(request),
        _ => None,
    }
}

fn output_dir(store: &Path, lease: &Lease) -> PathBuf {
    store.join(&lease.output_prefix)
}

#[tokio::test]
async fn t10_commits_the_outputs_of_a_successful_unit() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let script = r#"mkdir "$TM_OUTPUT_DIR/sub" && printf hello > "$TM_OUTPUT_DIR/part-0" && printf x > "$TM_OUTPUT_DIR/sub/b""#;
    let lease = exec_lease(store.path(), 11, 0, script);
    master.script.grant(lease.clone());
    let worker = start(config(&master, 1), TaskRegistry::stock());

    let lease_call = master.wait_for("a lease call", |call| match call {
        Call::Lease(request) => Some(request),
        _ => None,
    });
    let lease_call = lease_call.await;
    assert_eq!(
        (
            lease_call.worker_id.as_str(),
            lease_call.max_units,
            lease_call.wait_ms
        ),
        ("test-worker", 1, 1_000)
    );

    let commit = master.wait_for("the commit", commit_of).await;
    assert_eq!(commit.server_token, TOKEN);
    let item = &commit.items[0];
    let lease_ref = item.lease.clone().unwrap();
    assert_eq!((lease_ref.lease_id, lease_ref.config_version), (11, 5));
    assert_eq!(lease_ref.unit, lease.unit);
    let expected = vec![
        OutputFile {
            name: "part-0".into(),
            size_bytes: 5,
        },
        OutputFile {
            name: "sub/b".into(),
            size_bytes: 1,
        },
    ];
    assert_eq!(
        item.result,
        Some(ItemResult::Outputs(taskmaster_proto::v1::Outputs {
            files: expected
        }))
    );
    assert_eq!(
        fs::read_to_string(output_dir(store.path(), &lease).join("part-0")).unwrap(),
        "hello"
    );

    let stats = worker.stop().await;
    assert_eq!(stats.units_committed, 1);
    assert_eq!(
        stats,
        WorkerStats {
            units_committed: 1,
            ..WorkerStats::default()
        }
    );
}

#[tokio::test]
async fn t11_reports_a_failed_attempt_with_its_error() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    master
        .script
        .grant(exec_lease(store.path(), 12, 0, "echo boom >&2; exit 4"));
    let worker = start(config(&master, 1), TaskRegistry::stock());

    let commit = master.wait_for("the commit", commit_of).await;
    let Some(ItemResult::Error(text)) = &commit.items[0].result else {
        panic!("expected an error result: {commit:?}");
    };
    assert!(
        text.contains("exit status: 4") && text.contains("boom"),
        "{text}"
    );

    let stats = worker.stop().await;
    assert_eq!((stats.units_failed, stats.units_committed), (1, 0));
}

#[tokio::test]
async fn t12_a_task_this_worker_lacks_fails_the_attempt() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let mut lease = exec_lease(store.path(), 13, 0, "true");
    lease.task = "wordcount".into();
    master.script.grant(lease);
    let worker = start(config(&master, 1), TaskRegistry::stock());

    let commit = master.wait_for("the commit", commit_of).await;
    let Some(ItemResult::Error(text)) = &commit.items[0].result else {
        panic!("expected an error result: {commit:?}");
    };
    assert!(
        text.contains("this worker has no task named \"wordcount\""),
        "{text}"
    );
    assert_eq!(worker.stop().await.units_failed, 1);
}

/// A task written against the library API.
struct CountInputs;

impl Task for CountInputs {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        let text = format!("{} inputs, attempt {}", unit.inputs.len(), unit.attempt);
        fs::write(unit.output_dir.join("count"), text)
            .map_err(|err| TaskError::new(err.to_string()))
    }
}

#[tokio::test]
async fn t13_runs_tasks_registered_by_the_embedder() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let mut lease = exec_lease(store.path(), 14, 0, "");
    lease.task = "count".into();
    lease.inputs = vec!["/a".into(), "/b".into()];
    master.script.grant(lease.clone());
    let mut tasks = TaskRegistry::stock();
    tasks.register("count", CountInputs);
    let worker = start(config(&master, 1), tasks);

    let commit = master.wait_for("the commit", commit_of).await;
    assert!(
        matches!(&commit.items[0].result, Some(ItemResult::Outputs(out)) if out.files.len() == 1)
    );
    let written = fs::read_to_string(output_dir(store.path(), &lease).join("count")).unwrap();
    assert_eq!(written, "2 inputs, attempt 1");
    worker.stop().await;
}

#[tokio::test]
async fn t20_renews_held_leases_in_one_call_per_server_token() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let go = store.path().join("go");
    let script = format!(
        r#"while [ ! -e "{}" ]; do sleep 0.02; done; touch "$TM_OUTPUT_DIR/done""#,
        go.display()
    );
    for (lease_id, token) in [(21, "token-a"), (22, "token-b"), (23, "token-a")] {
        let mut lease = exec_lease(store.path(), lease_id, lease_id as u32, &script);
        lease.server_token = token.into();
        lease.lease_ms = 300;
        master.script.grant(lease);
    }
    let worker = start(config(&master, 3), TaskRegistry::stock());

    // Every held lease is renewed, grouped by token, sorted by lease id.
    let mut seen_a = false;
    let mut seen_b = false;
    while !(seen_a && seen_b) {
        if let Call::Renew(request) = master.next_call().await {
            let ids: Vec<u64> = request.leases.iter().map(|l| l.lease_id).collect();
            if request.server_token == "token-a" {
                assert_eq!(ids, vec![21, 23]);
                seen_a = true;
            } else {
                assert_eq!((request.server_token.as_str(), ids), ("token-b", vec![22]));
                seen_b = true;
            }
        }
    }
    // Renewals keep the 300 ms leases alive: all three still commit.
    fs::write(&go, "").unwrap();
    let mut committed = Vec::new();
    while committed.len() < 3 {
        let commit = master.wait_for("the commits", commit_of).await;
        let lease_id = commit.items[0].lease.as_ref().unwrap().lease_id;
        let expected_token = if lease_id == 22 { "token-b" } else { "token-a" };
        assert_eq!(commit.server_token, expected_token);
        committed.push(lease_id);
    }
    assert_eq!(worker.stop().await.units_committed, 3);
}

#[tokio::test]
async fn t21_a_lost_lease_kills_the_unit_and_drops_its_result() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let mut lease = exec_lease(
        store.path(),
        24,
        0,
        r#"touch "$TM_OUTPUT_DIR/started"; sleep 30"#,
    );
    lease.lease_ms = 300;
    master.script.grant(lease.clone());
    master.script.on_renew(|request| {
        Ok(RenewResponse {
            results: vec![item(Code::Aborted, "lease expired"); request.leases.len()],
            lease_ms: 0,
        })
    });
    let worker = start(config(&master, 1), TaskRegistry::stock());
    file_appears(&output_dir(store.path(), &lease).join("started")).await;

    // The refused renewal frees the slot (the sleep was killed) without a
    // commit: the next event is the lease call for the freed slot.
    master
        .wait_for("the renewal", |call| {
            matches!(call, Call::Renew(_)).then_some(())
        })
        .await;
    let next = master
        .wait_for("the next lease call", |call| match call {
            Call::Commit(request) => panic!("a lost lease was committed: {request:?}"),
            Call::Lease(request) => Some(request),
            _ => None,
        })
        .await;
    assert_eq!(next.max_units, 1);

    let stats = worker.stop().await;
    assert_eq!(
        (stats.leases_lost, stats.units_committed, stats.units_failed),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn t30_retries_a_commit_whose_reply_was_lost() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    master.script.grant(exec_lease(store.path(), 31, 0, "true"));
    let mut replies = 0;
    master.script.on_commit(move |request| {
        replies += 1;
        match replies {
            1 => Err(Status::unavailable("reply lost")),
            2 => Err(Status::unknown("reply lost again")),
            _ => Ok(CommitResponse {
                results: all_ok(request.items.len()),
            }),
        }
    });
    let worker = start(config(&master, 1), TaskRegistry::stock());

    let first = master.wait_for("the commit", commit_of).await;
    let second = master.wait_for("the first retry", commit_of).await;
    let third = master.wait_for("the second retry", commit_of).await;
    assert_eq!(first, second);
    assert_eq!(second, third);
    assert_eq!(worker.stop().await.units_committed, 1);
}

#[tokio::test]
async fn t31_drops_commits_the_master_refuses() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    master.script.grant(exec_lease(store.path(), 32, 0, "true"));
    master.script.grant(exec_lease(store.path(), 33, 1, "true"));
    master.script.on_commit(
        |request| match request.items[0].lease.as_ref().unwrap().lease_id {
            32 => Ok(CommitResponse {
                results: vec![item(Code::Aborted, "lease expired")],
            }),
            _ => Err(Status::permission_denied("wrong server token")),
        },
    );
    let worker = start(config(&master, 2), TaskRegistry::stock());

    // Both slots free again means both units are done with their commits.
    let mut commits = Vec::new();
    master
        .wait_for("both slots to be free", |call| match call {
            Call::Commit(request) => {
                commits.push(request.items[0].lease.as_ref().unwrap().lease_id);
                None
            }
            Call::Lease(request) => (request.max_units == 2 && commits.len() == 2).then_some(()),
            _ => None,
        })
        .await;
    commits.sort();
    assert_eq!(commits, vec![32, 33], "each refused commit is sent once");
    let stats = worker.stop().await;
    assert_eq!((stats.commits_refused, stats.units_committed), (2, 0));
}

#[tokio::test]
async fn t40_shutdown_lets_running_units_finish_and_commit() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let go = store.path().join("go");
    let script = format!(
        r#"touch "$TM_OUTPUT_DIR/started"; while [ ! -e "{}" ]; do sleep 0.02; done; echo out > "$TM_OUTPUT_DIR/result""#,
        go.display()
    );
    let lease = exec_lease(store.path(), 41, 0, &script);
    master.script.grant(lease.clone());
    let started = output_dir(store.path(), &lease).join("started");
    let mut worker = start(config(&master, 1), TaskRegistry::stock());
    file_appears(&started).await;

    worker.request_stop();
    fs::write(&go, "").unwrap();
    let stats = worker.finished().await;
    assert_eq!(stats.units_committed, 1);
    let calls = master.calls_so_far();
    assert!(
        calls.iter().any(|call| matches!(call, Call::Commit(_))),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|call| matches!(call, Call::Release(_))),
        "{calls:?}"
    );
}

#[tokio::test]
async fn t41_after_the_grace_period_units_are_cancelled_and_released() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let lease = exec_lease(
        store.path(),
        42,
        0,
        r#"touch "$TM_OUTPUT_DIR/started"; sleep 30"#,
    );
    master.script.grant(lease.clone());
    let worker = start(
        WorkerConfig {
            grace_ms: 200,
            ..config(&master, 1)
        },
        TaskRegistry::stock(),
    );
    file_appears(&output_dir(store.path(), &lease).join("started")).await;

    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            leases_released: 1,
            ..WorkerStats::default()
        }
    );
    let calls = master.calls_so_far();
    assert!(
        !calls.iter().any(|call| matches!(call, Call::Commit(_))),
        "{calls:?}"
    );
    let released: Vec<u64> = calls
        .iter()
        .filter_map(|call| match call {
            Call::Release(request) => Some(request.leases.iter().map(|l| l.lease_id)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(released, vec![42]);
}

#[tokio::test]
async fn t42_a_hard_shutdown_releases_at_once() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    let lease = exec_lease(
        store.path(),
        43,
        0,
        r#"touch "$TM_OUTPUT_DIR/started"; sleep 30"#,
    );
    master.script.grant(lease.clone());
    let long_grace = WorkerConfig {
        grace_ms: 600_000,
        ..config(&master, 1)
    };
    let mut worker = start(long_grace, TaskRegistry::stock());
    file_appears(&output_dir(store.path(), &lease).join("started")).await;

    worker.request_stop();
    worker.request_hard_stop();
    let stats = worker.finished().await;
    assert_eq!(stats.leases_released, 1);
    let release = master
        .wait_for("the release", |call| match call {
            Call::Release(request) => Some(request),
            _ => None,
        })
        .await;
    assert_eq!(release.server_token, TOKEN);
    assert_eq!(release.leases[0].lease_id, 43);
}

#[tokio::test]
async fn t50_leases_only_into_free_slots() {
    let store = TempDir::new().unwrap();
    let mut master = FakeMaster::start().await;
    for unit in 0..3u32 {
        let go = store.path().join(format!("go-{unit}"));
        let script = format!(r#"while [ ! -e "{}" ]; do sleep 0.02; done"#, go.display());
        master.script.grant(exec_lease(
            store.path(),
            50 + u64::from(unit),
            unit,
            &script,
        ));
    }
    let worker = start(config(&master, 2), TaskRegistry::stock());

    let Call::Lease(first) = master.next_call().await else {
        panic!("expected a lease call first")
    };
    assert_eq!(first.max_units, 2);
    // Both slots are busy: the next call is unit 0's commit once it may end,
    // and only then a lease call for the one free slot.
    fs::write(store.path().join("go-0"), "").unwrap();
    let Call::Commit(commit) = master.next_call().await else {
        panic!("expected unit 0's commit")
    };
    assert_eq!(commit.items[0].lease.as_ref().unwrap().lease_id, 50);
    let Call::Lease(second) = master.next_call().await else {
        panic!("expected a lease call")
    };
    assert_eq!(second.max_units, 1);

    fs::write(store.path().join("go-1"), "").unwrap();
    fs::write(store.path().join("go-2"), "").unwrap();
    let mut committed = 1;
    while committed < 3 {
        master.wait_for("the other commits", commit_of).await;
        committed += 1;
    }
    assert_eq!(worker.stop().await.units_committed, 3);
}

#[tokio::test]
async fn t60_keeps_retrying_until_the_master_answers() {
    let store = TempDir::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = WorkerConfig {
        master_url: url,
        slots: 1,
        worker_id: "w".into(),
        lease_wait_ms: 1_000,
        grace_ms: 1_000,
    };
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        config,
        TaskRegistry::stock(),
        fired(shutdown_rx),
    ));

    // A master that is not up yet: connections are dropped at once.
    for _ in 0..3 {
        let (connection, _) = tokio::time::timeout(EVENT_TIMEOUT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        drop(connection);
    }
    let mut master = FakeMaster::serve(listener);
    master.script.grant(exec_lease(store.path(), 61, 0, "true"));
    master.wait_for("the commit", commit_of).await;

    shutdown.send(()).unwrap();
    let stats = tokio::time::timeout(EVENT_TIMEOUT, worker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.units_committed, 1);
}

#[tokio::test]
async fn t61_a_bad_configuration_is_refused_before_anything_runs() {
    let config = WorkerConfig {
        slots: 0,
        ..WorkerConfig::default()
    };
    let err = run_worker(config, TaskRegistry::stock(), std::future::ready(()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid worker configuration: slots must be between 1 and 1024, got 0"
    );
}
