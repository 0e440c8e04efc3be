//! One leased unit from start to commit: build its context, run its task on
//! the blocking pool, list its outputs, commit the result (retrying a lost
//! reply), and record the outcome.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_proto::compact;
use taskmaster_proto::v1::commit_item::Result as ItemResult;
use taskmaster_proto::v1::{
    CommitItem, CommitRequest, ItemStatus, Lease, LeaseNext, ListInputsRequest, OutputFile, Outputs,
};
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::held::LeaseKey;
use crate::logs::{AttemptLog, outcome_text};
use crate::outputs::{attempt_output_dir, collect_outputs, prepare_output_dir, seal_outputs};
use crate::rpc::{self, FailureLog, Show, describe_item, is_transient, item_ok};
use crate::shared::{Shared, release_one};
use crate::stats::Counters;
use crate::store::Staging;
use crate::task::{CancelReason, CancelToken, InputSlice, Task, TaskError, UnitContext};

/// Longest error text sent with a failed attempt.
pub const ERROR_TEXT_BYTES_MAX: usize = 4 * 1024;

/// Runs one unit whose lease is already in the held table under `key`.
/// Never fails: every outcome is logged and counted. Returns the next
/// unit's lease when the commit brought one (see [`commit`]).
pub(crate) async fn run_unit(
    worker: Arc<Shared>,
    lease: Lease,
    key: LeaseKey,
    cancel: CancelToken,
) -> Option<Lease> {
    let span = unit_span(&lease);
    async move {
        tracing::info!(task = %lease.task, attempt = lease.attempt, "unit started");
        let result = execute(&worker, &lease, cancel.clone()).await;
        match (cancel.reason(), &result) {
            (Some(CancelReason::LeaseLost), _) => {
                // Another attempt may own the unit now; committing would be refused.
                tracing::info!("lease lost: dropping the unit's result");
                worker.held.remove(&key);
                return None;
            }
            (Some(CancelReason::Shutdown), Err(err)) => {
                // Most likely failed *because* it was cancelled: not a real
                // attempt. The runner releases the lease.
                tracing::info!("stopped for shutdown: {err}");
                return None;
            }
            // A timed-out attempt is a failed one: committed as such below.
            _ => {}
        }
        let succeeded = result.is_ok();
        let item = commit_item(&lease, result);
        let (outcome, leased) = commit(&worker, &key, item).await;
        worker.held.remove(&key);
        record(&worker, outcome, succeeded);
        keep_one(&worker, leased).await
    }
    .instrument(span)
    .await
}

/// The lease to run next out of those a commit brought: one, unless the
/// worker is shutting down. The rest (the master sent more than asked)
/// are given back.
async fn keep_one(worker: &Shared, leased: Vec<Lease>) -> Option<Lease> {
    let mut leased = leased.into_iter().filter(|lease| lease.unit.is_some());
    let next = leased.next().filter(|_| !worker.stopping());
    for extra in leased {
        release_one(worker, extra).await;
    }
    next
}

fn unit_span(lease: &Lease) -> tracing::Span {
    let unit = lease.unit.clone().unwrap_or_default();
    tracing::info_span!(
        "unit",
        pipeline = %unit.pipeline_id,
        group = %unit.group,
        unit = unit.unit,
        lease_id = lease.lease_id,
        // With the lease id, names the attempt: another lineage's master
        // (a restored copy) may reissue the same lease id.
        incarnation = %format_args!("{:016x}", lease.incarnation)
    )
}

/// Runs the unit's task and lists its outputs; with URL inputs or a
/// remote store, downloads before and uploads after (see [`crate::store`]).
async fn execute(
    worker: &Shared,
    lease: &Lease,
    cancel: CancelToken,
) -> Result<Vec<OutputFile>, TaskError> {
    let Some(task) = worker.tasks.get(&lease.task) else {
        return Err(TaskError::new(format!(
            "this worker has no task named {:?} (it has: {})",
            lease.task,
            worker.tasks.names().join(", ")
        )));
    };
    let _running = crate::metrics::task_running();
    let started = Instant::now();
    let listed;
    let lease = if lease.inputs_paged {
        listed = with_listed_inputs(worker, lease).await?;
        &listed
    } else {
        lease
    };
    let mut unit = unit_context(lease, cancel.clone())?;
    // Started before the inputs are staged, so a follower sees the attempt
    // at once; finished before the commit, so a committed attempt's log is
    // complete.
    let log = AttemptLog::start(&worker.stores, lease, worker.config.log_bytes_max).await;
    if let Some(log) = &log {
        unit.log = log.handle();
    }
    let result = match Staging::prepare(&worker.stores, lease, &mut unit).await {
        Ok(staging) => {
            let output_dir = unit.output_dir.clone();
            // Committed outputs stay in place only in a local store.
            let seal = lease.store_url.is_empty();
            let ran = with_timeout(unit.timeout, &cancel, run_blocking(task, unit, seal)).await;
            let result = match ran {
                Ok(files) => staging
                    .upload(&output_dir, &files, &cancel)
                    .await
                    .map(|()| files),
                Err(err) => Err(err),
            };
            // Removing local copies can take a while: not on the async threads.
            let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
            result
        }
        Err(err) => Err(err),
    };
    if let Some(log) = log {
        log.finish(&outcome_text(&result)).await;
    }
    let took_ms = started.elapsed().as_millis() as u64;
    crate::metrics::observe_task(started.elapsed(), result.is_ok());
    match &result {
        Ok(files) => tracing::info!(took_ms, files = files.len(), "task succeeded"),
        Err(err) => tracing::info!(took_ms, "task failed: {err}"),
    }
    result
}

/// Inputs listed at most, however many pages the master sends: a bound
/// against a master that never ends the list.
const LISTED_INPUTS_MAX: usize = 10_000_000;

/// `lease` with the inputs its master left out (`inputs_paged`: too many
/// to send inline), read page by page with `ListInputs`.
async fn with_listed_inputs(worker: &Shared, lease: &Lease) -> Result<Lease, TaskError> {
    let mut full = lease.clone();
    let mut cursor = 0;
    loop {
        let request = ListInputsRequest {
            server_token: lease.server_token.clone(),
            lease: Some(lease.to_ref()),
            cursor,
            limit: 0,
        };
        let page = list_inputs_page(worker, request).await?;
        full.inputs.extend(page.inputs);
        full.input_slices.extend(page.input_slices);
        if full.inputs.len() + full.input_slices.len() > LISTED_INPUTS_MAX {
            return Err(TaskError::new(format!(
                "the master listed more than {LISTED_INPUTS_MAX} inputs for one unit"
            )));
        }
        if page.next_cursor == 0 {
            break;
        }
        if page.next_cursor <= cursor {
            return Err(TaskError::new("the master's input listing went backwards"));
        }
        cursor = page.next_cursor;
    }
    full.inputs_paged = false;
    tracing::info!(
        inputs = full.inputs.len() + full.input_slices.len(),
        "listed the unit's inputs"
    );
    Ok(full)
}

/// Tries a page of a unit's inputs this many times when the call fails
/// in a way a retry can mend (a dropped connection, a master restarting).
const LIST_INPUTS_TRIES: u32 = 6;

/// One page of `ListInputs`, retried with backoff on transient failures;
/// a refusal (the lease was lost, the unit is unknown) fails at once.
async fn list_inputs_page(
    worker: &Shared,
    request: ListInputsRequest,
) -> Result<taskmaster_proto::v1::ListInputsResponse, TaskError> {
    let timeout = Duration::from_millis(rpc::RPC_TIMEOUT_MS);
    let mut backoff = crate::backoff::Backoff::rpc();
    loop {
        match worker.master.list_inputs(request.clone(), timeout).await {
            Ok(page) => return Ok(page),
            Err(status)
                if rpc::is_transient(&status) && backoff.failures() + 1 < LIST_INPUTS_TRIES =>
            {
                tracing::debug!(error = %Show(&status), "listing the unit's inputs failed; trying again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(status) => {
                return Err(TaskError::new(format!(
                    "could not list the unit's inputs: {}",
                    Show(&status)
                )));
            }
        }
    }
}

/// Runs `run` with the unit cancelled ([`CancelReason::TimedOut`]) once
/// it has taken `timeout`; the task notices and stops.
async fn with_timeout<T>(
    timeout: Option<Duration>,
    cancel: &CancelToken,
    run: impl Future<Output = T>,
) -> T {
    let Some(timeout) = timeout else {
        return run.await;
    };
    let mut run = std::pin::pin!(run);
    tokio::select! {
        done = &mut run => return done,
        () = tokio::time::sleep(timeout) => {}
    }
    tracing::info!(
        timeout_ms = timeout.as_millis() as u64,
        "the task timed out: stopping it"
    );
    cancel.cancel(CancelReason::TimedOut);
    run.await
}

/// Runs `task` on the blocking pool in a fresh output directory and lists
/// what it wrote there, made read-only first when `seal` (see
/// [`seal_outputs`]).
async fn run_blocking(
    task: Arc<dyn Task>,
    unit: UnitContext,
    seal: bool,
) -> Result<Vec<OutputFile>, TaskError> {
    let span = tracing::Span::current();
    let joined = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        prepare_output_dir(&unit.output_dir)?;
        task.run(&unit)?;
        // Fault-injection tests kill the worker between output and commit.
        fail::fail_point!("worker-before-commit", |_| std::process::abort());
        let files = collect_outputs(&unit.output_dir)?;
        // After the task, whose processes are all gone (for exec, see
        // crate::supervisor): nothing changes the files from here on.
        if seal {
            seal_outputs(&unit.output_dir)?;
        }
        Ok(files)
    })
    .await;
    match joined {
        Ok(result) => result,
        // A panicking task is a bug in that task; report it as a failed
        // attempt rather than take the whole worker down.
        Err(join_error) => Err(TaskError::new(format!("the task panicked: {join_error}"))),
    }
}

/// The task's view of the lease.
fn unit_context(lease: &Lease, cancel: CancelToken) -> Result<UnitContext, TaskError> {
    let unit = lease.unit.clone().unwrap_or_default();
    Ok(UnitContext {
        pipeline_id: unit.pipeline_id,
        group: unit.group,
        unit: unit.unit,
        lease_id: lease.lease_id,
        attempt: lease.attempt,
        inputs: lease.inputs.iter().map(Into::into).collect(),
        output_dir: output_dir(lease)?,
        command: lease.command.clone(),
        workdir: lease.workdir.clone().into(),
        env: lease.env.clone().into_iter().collect(),
        params: lease.params.clone().into_iter().collect(),
        partitions: lease.partitions,
        input_slices: lease.input_slices.iter().map(input_slice).collect(),
        config: lease.config.clone().into_iter().collect(),
        timeout: lease.timeout_ms.map(Duration::from_millis),
        cancel,
        log: crate::task_log::TaskLog::disabled(),
    })
}

/// Where the task writes: in place in a local store; for a remote store,
/// a local directory that [`Staging::prepare`] sets, after the prefix is
/// checked the same way (it becomes part of object keys).
fn output_dir(lease: &Lease) -> Result<PathBuf, TaskError> {
    if lease.store_url.is_empty() {
        attempt_output_dir(&lease.store_root, &lease.output_prefix)
    } else {
        attempt_output_dir("/", &lease.output_prefix)?;
        Ok(PathBuf::new())
    }
}

/// The worker's view of a lease's input slice. A range with `start > end`
/// is passed on as is: reading it fails with a message naming the slice.
fn input_slice(slice: &taskmaster_proto::v1::InputSlice) -> InputSlice {
    InputSlice {
        path: slice.path.clone().into(),
        start: slice.start,
        end: slice.end,
    }
}

/// The commit item reporting `result` under `lease`.
fn commit_item(lease: &Lease, result: Result<Vec<OutputFile>, TaskError>) -> CommitItem {
    let result = match result {
        Ok(files) => ItemResult::Outputs(Outputs { files }),
        Err(err) => ItemResult::Error(truncate_utf8(err.message(), ERROR_TEXT_BYTES_MAX)),
    };
    CommitItem {
        lease: Some(lease.to_ref()),
        result: Some(result),
    }
}

/// `text` cut to at most `max_bytes`, at a character boundary.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> String {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Shortest time a commit is retried after lost replies, however soon its
/// lease runs out.
const COMMIT_RETRY_MS_MIN: u64 = 60_000;

/// How a commit ended.
#[derive(Debug)]
enum CommitOutcome {
    /// The master answered for the item (OK or not).
    Answered(ItemStatus),
    /// The whole call was refused (e.g. PERMISSION_DENIED: wrong master).
    Refused(Status),
    /// Retried until the lease would have expired (and at least a minute).
    Abandoned(Status),
}

/// Sends the commit, retrying while its reply may have been lost. Retrying
/// is safe: a repeated commit under the same lease answers OK.
///
/// Unless the worker is shutting down, the first try also asks for the
/// next unit, which comes back with the answer. Retries do not: the
/// leases of a lost reply are lost anyway (they expire on the master),
/// and asking again would only strand more.
async fn commit(worker: &Shared, key: &LeaseKey, item: CommitItem) -> (CommitOutcome, Vec<Lease>) {
    let mut request = CommitRequest {
        server_token: key.server_token.clone(),
        items: vec![item],
        lease_next: (!worker.stopping()).then(|| LeaseNext {
            worker_id: worker.config.worker_id.clone(),
            max_units: 1,
            compact: true,
        }),
    };
    let timeout = Duration::from_millis(rpc::RPC_TIMEOUT_MS);
    let mut backoff = Backoff::rpc();
    let mut failures = FailureLog::new("commit");
    // Renewals go on while we retry, extending the deadline. Once the lease
    // is lost the last known expiry stands: a commit that landed before the
    // loss still answers OK, one that did not answers ABORTED.
    // Past the lease, a retry still gets a definite answer (OK if an earlier
    // try landed, ABORTED if not), so keep trying for a minimum time too.
    let retry_until = Instant::now() + Duration::from_millis(COMMIT_RETRY_MS_MIN);
    let mut expiry = worker
        .held
        .expiry(key)
        .unwrap_or(retry_until)
        .max(retry_until);
    loop {
        let sent = request.clone();
        request.lease_next = None;
        let status = match worker.master.commit(sent, timeout).await {
            Ok(mut reply) if reply.results.len() == 1 => {
                let item = reply.results.remove(0);
                // Malformed leases cannot be run; they expire on the master.
                let next = compact::expand(reply.leases, &reply.lease_groups)
                    .inspect_err(|e| tracing::warn!("ignoring the leases of a commit reply: {e}"))
                    .unwrap_or_default();
                return (CommitOutcome::Answered(item), next);
            }
            Ok(reply) => Status::internal(format!(
                "commit answered {} results for 1 item",
                reply.results.len()
            )),
            Err(status) => status,
        };
        if !is_transient(&status) {
            return (CommitOutcome::Refused(status), Vec::new());
        }
        let delay = backoff.next_delay();
        expiry = worker.held.expiry(key).unwrap_or(expiry).max(retry_until);
        if Instant::now() + delay >= expiry {
            return (CommitOutcome::Abandoned(status), Vec::new());
        }
        failures.failed(&Show(&status), delay);
        tokio::time::sleep(delay).await;
    }
}

/// Logs and counts how a commit ended.
fn record(worker: &Shared, outcome: CommitOutcome, succeeded: bool) {
    let stats = &worker.stats;
    match outcome {
        CommitOutcome::Answered(item) if item_ok(&item) => {
            if succeeded {
                Counters::add(&stats.units_committed, 1);
                tracing::info!("committed");
            } else {
                Counters::add(&stats.units_failed, 1);
                tracing::info!("reported the failed attempt");
            }
        }
        CommitOutcome::Answered(item) => {
            Counters::add(&stats.commits_refused, 1);
            tracing::warn!(
                "master refused the commit, dropping it: {}",
                describe_item(&item)
            );
        }
        CommitOutcome::Refused(status) => {
            Counters::add(&stats.commits_refused, 1);
            tracing::warn!(
                "master refused the commit call, dropping it: {}",
                Show(&status)
            );
        }
        CommitOutcome::Abandoned(status) => {
            Counters::add(&stats.commits_abandoned, 1);
            tracing::warn!(
                "gave up committing, the lease would have expired; last error: {}",
                Show(&status)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use taskmaster_proto::v1::UnitRef;

    fn lease() -> Lease {
        Lease {
            unit: Some(UnitRef {
                pipeline_id: "p-9".into(),
                group: "sort".into(),
                unit: 4,
            }),
            lease_id: 77,
            lease_ms: 30_000,
            config_version: 3,
            server_token: "tok".into(),
            output_prefix: "p-9/sort/4/77/".into(),
            store_root: "/store".into(),
            task: "exec".into(),
            command: vec!["true".into()],
            params: HashMap::from([("ds".into(), "2026-11-21".into())]),
            inputs: vec!["/in/a".into()],
            attempt: 2,
            partitions: 3,
            input_slices: vec![taskmaster_proto::v1::InputSlice {
                path: "/in/big".into(),
                start: 10,
                end: 20,
            }],
            config: HashMap::from([("order".into(), "desc".into())]),
            timeout_ms: Some(90_000),
            ..Lease::default()
        }
    }

    #[test]
    fn context_mirrors_the_lease() {
        let unit = unit_context(&lease(), CancelToken::new()).unwrap();
        assert_eq!(unit.pipeline_id, "p-9");
        assert_eq!(unit.group, "sort");
        assert_eq!((unit.unit, unit.lease_id, unit.attempt), (4, 77, 2));
        assert_eq!(
            unit.output_dir,
            std::path::Path::new("/store/p-9/sort/4/77")
        );
        assert_eq!(unit.inputs, vec![std::path::PathBuf::from("/in/a")]);
        assert_eq!(unit.params["ds"], "2026-11-21");
        assert!(unit.workdir.as_os_str().is_empty());
        assert_eq!(unit.partitions, 3);
        assert_eq!(
            unit.input_slices,
            vec![InputSlice {
                path: "/in/big".into(),
                start: 10,
                end: 20
            }]
        );
        assert_eq!(unit.config["order"], "desc");
        assert_eq!(unit.timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn failed_attempts_carry_truncated_error_text() {
        let long = "é".repeat(ERROR_TEXT_BYTES_MAX);
        let item = commit_item(&lease(), Err(TaskError::new(long)));
        let Some(ItemResult::Error(text)) = item.result else {
            panic!("expected an error result");
        };
        assert!(text.len() <= ERROR_TEXT_BYTES_MAX && text.len() > ERROR_TEXT_BYTES_MAX - 2);
        let lease_ref = item.lease.unwrap();
        assert_eq!((lease_ref.lease_id, lease_ref.config_version), (77, 3));
    }

    #[test]
    fn successful_attempts_carry_their_files() {
        let files = vec![OutputFile {
            name: "part-0".into(),
            size_bytes: 12,
        }];
        let item = commit_item(&lease(), Ok(files.clone()));
        assert_eq!(item.result, Some(ItemResult::Outputs(Outputs { files })));
    }
}
