//! The worker's lease / run / renew / commit / release behaviour against
//! the real master, started in-process on port 0 (see `real_master`).
//! Faults (lost replies, held renewals, the wrong master) are injected
//! around the master, never in place of its answers; the tests assert what
//! the master ended up with. Numbered by lifecycle: t1x run and commit, t2x
//! renewal, t3x commit replies, t4x shutdown, t5x slots, t6x master
//! availability and configuration.

mod real_master;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use real_master::{Admin, Call, EVENT_TIMEOUT, TestMaster, counts, is, open_master};
use taskmaster_master::in_process::InProcessMaster;
use taskmaster_proto::compact::expand;
use taskmaster_proto::v1::commit_item::Result as ItemResult;
use taskmaster_proto::v1::{
    CommitRequest, CommitResponse, GroupSpec, ItemStatus, Lease, LeaseRequest, OutputFile, Outputs,
    PipelineSpec, PipelineState, ReleaseRequest, RenewRequest, UnitCounts,
};
use taskmaster_worker::config::Calls;
use taskmaster_worker::{
    Task, TaskError, TaskRegistry, UnitContext, WorkerConfig, WorkerError, WorkerStats, run_worker,
    run_worker_until, stock_registry,
};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::{Code, Status};

/// Lease time when a test never lets a lease run out.
const LEASE_MS: u64 = 30_000;
/// Lease time when a test needs leases to run out (or be renewed) quickly.
const SHORT_LEASE_MS: u64 = 600;

/// A group of one unit (no inputs, no upstream) running `sh -c script`.
fn exec_group(name: &str, script: &str) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        task: "exec".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..GroupSpec::default()
    }
}

/// The same, with one unit per input path (the paths need not exist).
fn exec_units(name: &str, units: u32, script: &str) -> GroupSpec {
    GroupSpec {
        inputs: (0..units).map(|unit| format!("/in/{unit}")).collect(),
        ..exec_group(name, script)
    }
}

fn pipeline(groups: Vec<GroupSpec>) -> PipelineSpec {
    PipelineSpec {
        name: "p".into(),
        groups,
        ..PipelineSpec::default()
    }
}

fn config(url: &str, slots: u32) -> WorkerConfig {
    WorkerConfig {
        master_url: url.to_string(),
        slots,
        worker_id: "test-worker".into(),
        lease_wait_ms: 1_000,
        grace_ms: 30_000,
        calls: Calls::Stream,
        tls: None,
        ..WorkerConfig::default()
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
    async fn finished(mut self) -> WorkerStats {
        tokio::time::timeout(EVENT_TIMEOUT, &mut self.handle)
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

impl Drop for RunningWorker {
    /// A test that failed before stopping its worker still stops it.
    fn drop(&mut self) {
        self.handle.abort();
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

/// A shell test for `path`'s existence, quoted for scripts.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// A script line that waits until `path` exists.
fn wait_for_file(path: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.02; done", quoted(path))
}

/// Every lease call, with the leases the master granted in it.
fn lease_calls(calls: &[Call]) -> Vec<(LeaseRequest, Vec<Lease>)> {
    calls
        .iter()
        .filter_map(|call| match call {
            Call::Lease { request, answer } => Some((
                request.clone(),
                // The worker asks for compact leases: as it runs them.
                answer
                    .as_ref()
                    .map(|r| expand(r.leases.clone(), &r.lease_groups).expect("a compact reply"))
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

/// Every lease the master granted, in order.
fn granted(calls: &[Call]) -> Vec<Lease> {
    lease_calls(calls)
        .into_iter()
        .flat_map(|(_, leases)| leases)
        .collect()
}

/// Every commit call: the request, the master's answer, whether the
/// worker got it.
fn commit_calls(calls: &[Call]) -> Vec<(CommitRequest, Result<CommitResponse, Status>, bool)> {
    calls
        .iter()
        .filter_map(|call| match call {
            Call::Commit {
                request,
                answer,
                reply_lost,
            } => Some((request.clone(), answer.clone(), *reply_lost)),
            _ => None,
        })
        .collect()
}

fn renew_calls(calls: &[Call]) -> Vec<(RenewRequest, Result<Vec<ItemStatus>, Status>)> {
    calls
        .iter()
        .filter_map(|call| match call {
            Call::Renew { request, answer } => Some((
                request.clone(),
                answer
                    .as_ref()
                    .map(|r| r.results.clone())
                    .map_err(Clone::clone),
            )),
            _ => None,
        })
        .collect()
}

/// Every release call, and the master's per-lease answers.
fn release_calls(calls: &[Call]) -> Vec<(ReleaseRequest, Result<Vec<ItemStatus>, Status>)> {
    calls
        .iter()
        .filter_map(|call| match call {
            Call::Release { request, answer } => Some((
                request.clone(),
                answer
                    .as_ref()
                    .map(|r| r.results.clone())
                    .map_err(Clone::clone),
            )),
            _ => None,
        })
        .collect()
}

/// The lease id a commit item was sent under.
fn committed_lease_id(request: &CommitRequest) -> u64 {
    request.items[0]
        .lease
        .as_ref()
        .expect("a lease ref")
        .lease_id
}

/// The per-item code of a commit answer with one item.
fn item_code(answer: &Result<CommitResponse, Status>) -> Code {
    let response = answer.as_ref().expect("the master answered the call");
    Code::from(response.results[0].code)
}

/// The only lease granted so far, once there is one.
async fn the_lease(master: &TestMaster) -> Lease {
    let leases = master
        .faults
        .wait_for("a lease", |calls| {
            let leases = granted(calls);
            (!leases.is_empty()).then_some(leases)
        })
        .await;
    assert_eq!(leases.len(), 1, "{leases:#?}");
    leases[0].clone()
}

fn unit_counts(pending: u64, leased: u64, committed: u64, failed: u64) -> UnitCounts {
    UnitCounts {
        pending,
        leased,
        committed,
        failed,
    }
}

#[tokio::test]
async fn t10_commits_the_outputs_of_a_successful_unit() {
    commits_the_outputs_of_a_successful_unit(Calls::Stream).await;
}

#[tokio::test]
async fn t10u_commits_the_outputs_of_a_successful_unit_over_unary_calls() {
    commits_the_outputs_of_a_successful_unit(Calls::Unary).await;
}

async fn commits_the_outputs_of_a_successful_unit(calls: Calls) {
    let master = TestMaster::start(LEASE_MS).await;
    let script = r#"mkdir "$TM_OUTPUT_DIR/sub" && printf hello > "$TM_OUTPUT_DIR/part-0" && printf x > "$TM_OUTPUT_DIR/sub/b""#;
    let id = master.submit(pipeline(vec![exec_group("g", script)])).await;
    let config = WorkerConfig {
        calls,
        ..config(&master.url, 1)
    };
    let worker = start(config, stock_registry());

    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            units_committed: 1,
            ..WorkerStats::default()
        }
    );
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(0, 0, 1, 0), 0)
    );

    // The master lists exactly the files the command wrote, under the
    // attempt's own prefix.
    let lease = the_lease(&master).await;
    let units = master.admin.outputs(&id, "g").await;
    assert_eq!(units.len(), 1, "{units:#?}");
    assert_eq!(units[0].lease_id, lease.lease_id);
    let attempt_dir = PathBuf::from(&lease.store_root).join(&lease.output_prefix);
    let expected: Vec<String> = ["part-0", "sub/b"]
        .iter()
        .map(|name| attempt_dir.join(name).display().to_string())
        .collect();
    assert_eq!(units[0].paths, expected);
    assert_eq!(fs::read_to_string(&units[0].paths[0]).unwrap(), "hello");
    // Committed, so read-only: the attempt's files and directories, not
    // the unit's directory above it (later attempts make theirs there).
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for path in [&units[0].paths[0], &units[0].paths[1]] {
        assert_eq!(mode(Path::new(path)) & 0o222, 0, "{path} is writable");
    }
    for dir in [attempt_dir.clone(), attempt_dir.join("sub")] {
        assert_eq!(mode(&dir) & 0o222, 0, "{} is writable", dir.display());
    }
    assert_ne!(mode(attempt_dir.parent().unwrap()) & 0o200, 0);

    // What the worker sent to get there.
    let calls = master.faults.calls();
    let (first_ask, _) = &lease_calls(&calls)[0];
    assert_eq!(
        (
            first_ask.worker_id.as_str(),
            first_ask.max_units,
            first_ask.wait_ms
        ),
        ("test-worker", 1, 1_000)
    );
    let commits = commit_calls(&calls);
    assert_eq!(commits.len(), 1, "{commits:#?}");
    let (commit, answer, _) = &commits[0];
    assert_eq!(commit.server_token, master.token());
    assert_eq!(item_code(answer), Code::Ok);
    let sizes = vec![
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
        commit.items[0].result,
        Some(ItemResult::Outputs(Outputs { files: sizes }))
    );
    master.stop().await;
}

#[tokio::test]
async fn t11_reports_a_failed_attempt_with_its_error() {
    let master = TestMaster::start(LEASE_MS).await;
    let group = GroupSpec {
        max_attempts: 1,
        ..exec_group("g", "echo boom >&2; exit 4")
    };
    let id = master.submit(pipeline(vec![group])).await;
    let worker = start(config(&master.url, 1), stock_registry());

    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to fail", is(PipelineState::Failed))
        .await;
    let stats = worker.stop().await;
    assert_eq!((stats.units_failed, stats.units_committed), (1, 0));
    assert_eq!(counts(&status, "g"), unit_counts(0, 0, 0, 1));
    let errors = &status.failed_units[0].errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("exit status: 4") && errors[0].contains("boom"),
        "{errors:?}"
    );
    assert!(master.admin.outputs(&id, "g").await.is_empty());
    master.stop().await;
}

#[tokio::test]
async fn t11t_an_attempt_past_its_timeout_is_stopped_and_fails_saying_so() {
    let master = TestMaster::start(LEASE_MS).await;
    let group = GroupSpec {
        max_attempts: 1,
        timeout_ms: Some(1_000),
        ..exec_group("g", "sleep 30")
    };
    let id = master.submit(pipeline(vec![group])).await;
    let started = Instant::now();
    let worker = start(config(&master.url, 1), stock_registry());

    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to fail", is(PipelineState::Failed))
        .await;
    let took = started.elapsed();
    let stats = worker.stop().await;
    assert_eq!((stats.units_failed, stats.units_committed), (1, 0));
    let errors = &status.failed_units[0].errors;
    assert_eq!(
        errors,
        &["timed out after 1s (the group's timeout); killed `sh` and every process it started"],
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    master.stop().await;
}

#[tokio::test]
async fn t12_a_task_this_worker_lacks_fails_the_attempt() {
    let master = TestMaster::start(LEASE_MS).await;
    let group = GroupSpec {
        task: "wordcount".into(),
        max_attempts: 1,
        ..exec_group("g", "true")
    };
    let id = master.submit(pipeline(vec![group])).await;
    let worker = start(config(&master.url, 1), stock_registry());

    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to fail", is(PipelineState::Failed))
        .await;
    assert_eq!(worker.stop().await.units_failed, 1);
    let errors = &status.failed_units[0].errors;
    assert!(
        errors[0].contains("this worker has no task named \"wordcount\" (it has: exec, merge, sort, split, sum.reduce, wordcount.map)"),
        "{errors:?}"
    );
    master.stop().await;
}

/// A task written against the library API: reports how many inputs it got
/// and their total size.
struct CountInputs;

impl Task for CountInputs {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        let mut bytes = 0;
        for input in &unit.inputs {
            let metadata = fs::metadata(input).map_err(|err| TaskError::new(err.to_string()))?;
            bytes += metadata.len();
        }
        let text = format!(
            "{} inputs, {bytes} bytes, attempt {}",
            unit.inputs.len(),
            unit.attempt
        );
        fs::write(unit.output_dir.join("count"), text)
            .map_err(|err| TaskError::new(err.to_string()))
    }
}

#[tokio::test]
async fn t13_runs_tasks_registered_by_the_embedder() {
    let master = TestMaster::start(LEASE_MS).await;
    let make = exec_group(
        "make",
        r#"printf a > "$TM_OUTPUT_DIR/x" && printf bb > "$TM_OUTPUT_DIR/y""#,
    );
    let count = GroupSpec {
        name: "count".into(),
        task: "count".into(),
        after: vec!["make".into()],
        ..GroupSpec::default()
    };
    let id = master.submit(pipeline(vec![make, count])).await;
    let mut tasks = stock_registry();
    tasks.register("count", CountInputs);
    let worker = start(config(&master.url, 1), tasks);

    master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    assert_eq!(worker.stop().await.units_committed, 2);
    // The downstream unit read the upstream unit's committed files.
    let units = master.admin.outputs(&id, "count").await;
    assert_eq!(units.len(), 1, "{units:#?}");
    let written = fs::read_to_string(&units[0].paths[0]).unwrap();
    assert_eq!(written, "2 inputs, 3 bytes, attempt 1");
    master.stop().await;
}

#[tokio::test]
async fn t20_renews_held_leases_in_one_call() {
    let master = TestMaster::start(SHORT_LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let go = scratch.path().join("go");
    let script = format!(r#"{}; touch "$TM_OUTPUT_DIR/done""#, wait_for_file(&go));
    let id = master
        .submit(pipeline(vec![exec_units("g", 3, &script)]))
        .await;
    let worker = start(config(&master.url, 3), stock_registry());

    // Every held lease is renewed in one call, sorted by lease id, until
    // the units have run for longer than a lease lasts.
    let renewals_needed = 4;
    let renewals = master
        .faults
        .wait_for("enough renewals", |calls| {
            let renewals = renew_calls(calls);
            (renewals.len() >= renewals_needed).then_some(renewals)
        })
        .await;
    let lease_ids: Vec<u64> = granted(&master.faults.calls())
        .iter()
        .map(|lease| lease.lease_id)
        .collect();
    assert_eq!(lease_ids.len(), 3);
    for (request, answer) in &renewals {
        let renewed: Vec<u64> = request.leases.iter().map(|l| l.lease_id).collect();
        assert_eq!(renewed, lease_ids);
        assert_eq!(request.server_token, master.token());
        let answer = answer.as_ref().expect("the master answered the renewal");
        assert!(
            answer.iter().all(|item| item.code == Code::Ok as i32),
            "{answer:?}"
        );
    }
    let status = master.admin.status(&id).await;
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(0, 3, 0, 0), 0)
    );

    // Renewals kept the short leases alive: all three commit, none expired.
    fs::write(&go, "").unwrap();
    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(0, 0, 3, 0), 0)
    );
    let stats = worker.stop().await;
    assert_eq!((stats.units_committed, stats.leases_lost), (3, 0));
    master.stop().await;
}

#[tokio::test]
async fn t21_a_lost_lease_kills_the_unit_and_drops_its_result() {
    let master = TestMaster::start(SHORT_LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    // The first attempt runs until killed; a later one finishes at once.
    let script = format!(
        r#"touch {}/started-$TM_ATTEMPT; [ "$TM_ATTEMPT" -gt 1 ] || sleep 30; echo done > "$TM_OUTPUT_DIR/result""#,
        quoted(scratch.path())
    );
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    // Renewals do not get through (a partition) until the lease expired.
    master.faults.hold_renewals();
    let worker = start(config(&master.url, 1), stock_registry());
    file_appears(&scratch.path().join("started-1")).await;
    let first = the_lease(&master).await;
    master
        .admin
        .wait_for_status(&id, "the lease to expire", |status| status.retries == 1)
        .await;

    // The late renewal is refused: the worker kills the unit without
    // committing and leases again into the freed slot, getting the unit's
    // second attempt, which commits.
    master.faults.pass_renewals();
    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            units_committed: 1,
            leases_lost: 1,
            ..WorkerStats::default()
        }
    );
    let calls = master.faults.calls();
    let refused = renew_calls(&calls);
    let (renewal, answer) = &refused[0];
    assert_eq!(renewal.leases[0].lease_id, first.lease_id);
    let answer = answer.as_ref().expect("the master answered the renewal");
    assert_eq!(Code::from(answer[0].code), Code::Aborted, "{answer:?}");
    let commits = commit_calls(&calls);
    assert_eq!(
        commits.len(),
        1,
        "only the second attempt commits: {commits:#?}"
    );
    let second = committed_lease_id(&commits[0].0);
    assert_ne!(second, first.lease_id);
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(0, 0, 1, 0), 1)
    );
    let units = master.admin.outputs(&id, "g").await;
    assert_eq!(units[0].lease_id, second);
    master.stop().await;
}

#[tokio::test]
async fn t22_a_renewal_refused_by_another_master_loses_its_leases() {
    let master = TestMaster::start(SHORT_LEASE_MS).await;
    let other = TestMaster::start(SHORT_LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let started = scratch.path().join("started");
    let script = format!("touch {}; sleep 30", quoted(&started));
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    let worker = start(config(&master.url, 1), stock_registry());
    file_appears(&started).await;
    let lease = the_lease(&master).await;

    // The same address now leads to another master (another store).
    master.faults.redirect_to(&other);
    let renewal = master
        .faults
        .wait_for("the refused renewal", |calls| {
            renew_calls(calls)
                .into_iter()
                .find_map(|(request, answer)| answer.err().map(|status| (request, status)))
        })
        .await;
    assert_eq!(renewal.0.leases[0].lease_id, lease.lease_id);
    assert_eq!(renewal.1.code(), Code::PermissionDenied, "{:?}", renewal.1);
    // The unit is killed: its slot is free for the next lease call.
    master
        .faults
        .wait_for("a lease call for the freed slot", |calls| {
            let after_grant = calls.iter().skip_while(
                |call| !matches!(call, Call::Lease { answer: Ok(r), .. } if !r.leases.is_empty()),
            );
            after_grant
                .skip(1)
                .any(|call| matches!(call, Call::Lease { request, .. } if request.max_units == 1))
                .then_some(())
        })
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            leases_lost: 1,
            ..WorkerStats::default()
        }
    );
    assert!(commit_calls(&master.faults.calls()).is_empty());
    // The first master never heard back: the unit goes back to its queue
    // when the lease runs out.
    master
        .admin
        .wait_for_status(&id, "the lease to expire", |status| {
            counts(status, "g") == unit_counts(1, 0, 0, 0)
        })
        .await;
    other.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn t30_retries_a_commit_whose_reply_was_lost() {
    retries_a_commit_whose_reply_was_lost(Calls::Stream).await;
}

#[tokio::test]
async fn t30u_retries_a_commit_whose_reply_was_lost_over_unary_calls() {
    retries_a_commit_whose_reply_was_lost(Calls::Unary).await;
}

async fn retries_a_commit_whose_reply_was_lost(calls: Calls) {
    let master = TestMaster::start(LEASE_MS).await;
    let script = r#"printf x > "$TM_OUTPUT_DIR/part-0""#;
    let id = master.submit(pipeline(vec![exec_group("g", script)])).await;
    master.faults.lose_commit_replies([
        Status::unavailable("reply lost"),
        Status::unknown("reply lost again"),
    ]);
    let config = WorkerConfig {
        calls,
        ..config(&master.url, 1)
    };
    let worker = start(config, stock_registry());

    let commits = master
        .faults
        .wait_for("three commit calls", |calls| {
            let commits = commit_calls(calls);
            (commits.len() == 3).then_some(commits)
        })
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            units_committed: 1,
            ..WorkerStats::default()
        }
    );
    // The same commit three times; the master accepted the first and
    // answered the repeats OK, and the worker got only the last answer.
    let lost: Vec<bool> = commits.iter().map(|(_, _, lost)| *lost).collect();
    assert_eq!(lost, vec![true, true, false]);
    for (request, answer, _) in &commits {
        assert_eq!(request.items, commits[0].0.items);
        assert_eq!(item_code(answer), Code::Ok);
    }
    // Only the first try asked for the next unit: a retry would strand
    // more leases behind a lost reply.
    let asked: Vec<bool> = commits
        .iter()
        .map(|(request, _, _)| request.lease_next.is_some())
        .collect();
    assert_eq!(asked, [true, false, false]);
    // Committed once, under the one lease.
    let status = master.admin.status(&id).await;
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(0, 0, 1, 0), 0)
    );
    let units = master.admin.outputs(&id, "g").await;
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].lease_id, committed_lease_id(&commits[0].0));
    assert_eq!(commit_calls(&master.faults.calls()).len(), 3);
    master.stop().await;
}

#[tokio::test]
async fn t33_falls_back_to_unary_calls_when_the_master_has_no_work_stream() {
    let master = TestMaster::start(LEASE_MS).await;
    master.faults.refuse_streams();
    let script = r#"printf x > "$TM_OUTPUT_DIR/part-0""#;
    let id = master
        .submit(pipeline(vec![exec_units("g", 3, script)]))
        .await;
    let worker = start(config(&master.url, 2), stock_registry());

    let status = master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    let stats = worker.stop().await;
    assert_eq!(stats.units_committed, 3);
    assert_eq!(counts(&status, "g"), unit_counts(0, 0, 3, 0));
    // Asked once, then made unary calls only.
    assert_eq!(master.faults.streams_asked(), 1);
    let commits = commit_calls(&master.faults.calls());
    assert_eq!(commits.len(), 3, "{commits:#?}");
    master.stop().await;
}

#[tokio::test]
async fn t31_drops_a_commit_refused_for_an_expired_lease() {
    let master = TestMaster::start(SHORT_LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let go = scratch.path().join("go");
    let script = format!(
        r#"{}; echo out > "$TM_OUTPUT_DIR/result""#,
        wait_for_file(&go)
    );
    let group = GroupSpec {
        max_attempts: 1,
        ..exec_group("g", &script)
    };
    let id = master.submit(pipeline(vec![group])).await;
    // No renewal gets through, so the lease expires on the master while
    // the worker still runs the unit.
    master.faults.hold_renewals();
    let worker = start(config(&master.url, 1), stock_registry());
    let lease = the_lease(&master).await;
    master
        .admin
        .wait_for_status(&id, "the lease to expire", is(PipelineState::Failed))
        .await;

    fs::write(&go, "").unwrap();
    // Refused once and dropped: the slot is free again (the next lease
    // call asks for it) without a retry.
    master
        .faults
        .wait_for("a lease call after the commit", |calls| {
            let after_commit = calls
                .iter()
                .skip_while(|call| !matches!(call, Call::Commit { .. }));
            after_commit
                .skip(1)
                .any(|call| matches!(call, Call::Lease { request, .. } if request.max_units == 1))
                .then_some(())
        })
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            commits_refused: 1,
            ..WorkerStats::default()
        }
    );
    let commits = commit_calls(&master.faults.calls());
    assert_eq!(commits.len(), 1, "sent once: {commits:#?}");
    assert_eq!(committed_lease_id(&commits[0].0), lease.lease_id);
    assert_eq!(item_code(&commits[0].1), Code::Aborted);
    let status = master.admin.status(&id).await;
    assert_eq!(counts(&status, "g"), unit_counts(0, 0, 0, 1));
    let errors = &status.failed_units[0].errors;
    assert!(errors[0].contains("expired"), "{errors:?}");
    assert!(master.admin.outputs(&id, "g").await.is_empty());
    master.stop().await;
}

#[tokio::test]
async fn t32_drops_a_commit_another_master_refuses() {
    let master = TestMaster::start(LEASE_MS).await;
    let other = TestMaster::start(LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let go = scratch.path().join("go");
    let script = format!(
        r#"{}; echo out > "$TM_OUTPUT_DIR/result""#,
        wait_for_file(&go)
    );
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    let worker = start(config(&master.url, 1), stock_registry());
    let lease = the_lease(&master).await;

    // The same address now leads to another master (another store).
    master.faults.redirect_to(&other);
    fs::write(&go, "").unwrap();
    let commit = master
        .faults
        .wait_for("the commit", |calls| commit_calls(calls).into_iter().next())
        .await;
    // The whole call is refused; the worker drops the result at once and
    // its slot is free again.
    master
        .faults
        .wait_for("a lease call after the commit", |calls| {
            let after_commit = calls
                .iter()
                .skip_while(|call| !matches!(call, Call::Commit { .. }));
            after_commit
                .skip(1)
                .any(|call| matches!(call, Call::Lease { request, .. } if request.max_units == 1))
                .then_some(())
        })
        .await;
    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            commits_refused: 1,
            ..WorkerStats::default()
        }
    );
    assert_eq!(committed_lease_id(&commit.0), lease.lease_id);
    assert_eq!(commit.0.server_token, master.token());
    let refusal = commit.1.expect_err("the other master refuses the call");
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    assert_eq!(commit_calls(&master.faults.calls()).len(), 1, "sent once");
    // Neither master took the result: the first still shows the unit
    // leased, the other has never heard of it.
    let status = master.admin.status(&id).await;
    assert_eq!(counts(&status, "g"), unit_counts(0, 1, 0, 0));
    assert!(other.admin.pipelines().await.is_empty());
    other.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn t40_shutdown_lets_running_units_finish_and_commit() {
    let master = TestMaster::start(LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let started = scratch.path().join("started");
    let go = scratch.path().join("go");
    let script = format!(
        r#"touch {}; {}; echo out > "$TM_OUTPUT_DIR/result""#,
        quoted(&started),
        wait_for_file(&go)
    );
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    let mut worker = start(config(&master.url, 1), stock_registry());
    file_appears(&started).await;

    worker.request_stop();
    fs::write(&go, "").unwrap();
    let stats = worker.finished().await;
    assert_eq!(
        stats,
        WorkerStats {
            units_committed: 1,
            ..WorkerStats::default()
        }
    );
    let status = master.admin.status(&id).await;
    assert_eq!(status.state, PipelineState::Succeeded as i32);
    let units = master.admin.outputs(&id, "g").await;
    assert_eq!(fs::read_to_string(&units[0].paths[0]).unwrap(), "out\n");
    assert!(release_calls(&master.faults.calls()).is_empty());
    master.stop().await;
}

#[tokio::test]
async fn t41_after_the_grace_period_units_are_cancelled_and_released() {
    let master = TestMaster::start(LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let started = scratch.path().join("started");
    let script = format!("touch {}; sleep 30", quoted(&started));
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    let worker = start(
        WorkerConfig {
            grace_ms: 200,
            ..config(&master.url, 1)
        },
        stock_registry(),
    );
    file_appears(&started).await;
    let lease = the_lease(&master).await;

    let stats = worker.stop().await;
    assert_eq!(
        stats,
        WorkerStats {
            leases_released: 1,
            ..WorkerStats::default()
        }
    );
    let calls = master.faults.calls();
    assert!(commit_calls(&calls).is_empty(), "{calls:#?}");
    let releases = release_calls(&calls);
    assert_eq!(releases.len(), 1, "{releases:#?}");
    let (release, answer) = &releases[0];
    let released: Vec<u64> = release.leases.iter().map(|l| l.lease_id).collect();
    assert_eq!(released, vec![lease.lease_id]);
    assert_eq!(answer.as_ref().unwrap(), &vec![ItemStatus::default()]);
    // Back in the queue at once, and a release is not a failed attempt.
    let status = master.admin.status(&id).await;
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(1, 0, 0, 0), 0)
    );
    master.stop().await;
}

#[tokio::test]
async fn t42_a_hard_shutdown_releases_at_once() {
    let master = TestMaster::start(LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let started = scratch.path().join("started");
    let script = format!("touch {}; sleep 30", quoted(&started));
    let id = master
        .submit(pipeline(vec![exec_group("g", &script)]))
        .await;
    let long_grace = WorkerConfig {
        grace_ms: 600_000,
        ..config(&master.url, 1)
    };
    let mut worker = start(long_grace, stock_registry());
    file_appears(&started).await;
    let lease = the_lease(&master).await;

    worker.request_stop();
    worker.request_hard_stop();
    let stats = worker.finished().await;
    assert_eq!(stats.leases_released, 1);
    let releases = release_calls(&master.faults.calls());
    assert_eq!(releases.len(), 1, "{releases:#?}");
    let (release, answer) = &releases[0];
    assert_eq!(release.server_token, master.token());
    assert_eq!(release.leases[0].lease_id, lease.lease_id);
    assert_eq!(answer.as_ref().unwrap(), &vec![ItemStatus::default()]);
    let status = master.admin.status(&id).await;
    assert_eq!(
        (counts(&status, "g"), status.retries),
        (unit_counts(1, 0, 0, 0), 0)
    );
    master.stop().await;
}

#[tokio::test]
async fn t50_leases_only_into_free_slots() {
    let master = TestMaster::start(LEASE_MS).await;
    let scratch = TempDir::new().unwrap();
    let go = |unit: u32| scratch.path().join(format!("go-{unit}"));
    let script = format!(
        r#"while [ ! -e {}/go-$TM_UNIT ]; do sleep 0.02; done"#,
        quoted(scratch.path())
    );
    let id = master
        .submit(pipeline(vec![exec_units("g", 3, &script)]))
        .await;
    let worker = start(config(&master.url, 2), stock_registry());

    // Two slots: the first call asks for two units and gets them; the third
    // waits on the master while both slots are busy.
    let first = master
        .faults
        .wait_for("the first grant", |calls| {
            lease_calls(calls)
                .into_iter()
                .find(|(_, leases)| !leases.is_empty())
        })
        .await;
    assert_eq!(first.0.max_units, 2);
    let units: Vec<u32> = first
        .1
        .iter()
        .map(|l| l.unit.as_ref().unwrap().unit)
        .collect();
    assert_eq!(units, vec![0, 1]);
    let status = master.admin.status(&id).await;
    assert_eq!(counts(&status, "g"), unit_counts(1, 2, 0, 0));

    // Unit 0's commit asks for one unit, for the slot it frees, and unit 2
    // comes back with the answer; no lease call asks for more meanwhile.
    fs::write(go(0), "").unwrap();
    let (request, answer, _) = master
        .faults
        .wait_for("unit 0's commit", |calls| {
            commit_calls(calls).into_iter().next()
        })
        .await;
    assert_eq!(committed_lease_id(&request), first.1[0].lease_id);
    let asked = request.lease_next.as_ref().map(|next| next.max_units);
    assert_eq!(asked, Some(1));
    let chained: Vec<u32> = answer
        .expect("the master answered")
        .leases
        .iter()
        .map(|l| l.unit.as_ref().unwrap().unit)
        .collect();
    assert_eq!(chained, vec![2]);
    let status = master.admin.status(&id).await;
    assert_eq!(counts(&status, "g"), unit_counts(0, 2, 1, 0));
    let lease_asks: Vec<u32> = lease_calls(&master.faults.calls())
        .iter()
        .map(|(request, _)| request.max_units)
        .collect();
    assert_eq!(lease_asks, vec![2], "both slots stayed busy");

    fs::write(go(1), "").unwrap();
    fs::write(go(2), "").unwrap();
    master
        .admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    assert_eq!(worker.stop().await.units_committed, 3);
    master.stop().await;
}

#[tokio::test]
async fn t60_keeps_retrying_until_the_master_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let worker = start(
        WorkerConfig {
            grace_ms: 1_000,
            ..config(&url, 1)
        },
        stock_registry(),
    );

    // A master that is not up yet: connections are dropped at once.
    for _ in 0..3 {
        let (connection, _) = tokio::time::timeout(EVENT_TIMEOUT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        drop(connection);
    }
    // Then the master comes up on that address, served as `taskmaster
    // serve` serves it.
    let dir = TempDir::new().unwrap();
    let master =
        InProcessMaster::serve(listener, open_master(&dir.path().join("data"), LEASE_MS)).unwrap();
    let admin = Admin::connect(&url);
    let id = admin.submit(pipeline(vec![exec_group("g", "true")])).await;
    let status = admin
        .wait_for_status(&id, "the pipeline to succeed", is(PipelineState::Succeeded))
        .await;
    assert_eq!(counts(&status, "g"), unit_counts(0, 0, 1, 0));

    assert_eq!(worker.stop().await.units_committed, 1);
    master.stop(EVENT_TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn t61_a_bad_configuration_is_refused_before_anything_runs() {
    let config = WorkerConfig {
        slots: 0,
        ..WorkerConfig::default()
    };
    let err = run_worker(config, stock_registry(), std::future::ready(()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid worker configuration: slots must be between 1 and 1024, got 0"
    );
}
