//! The worker's main loop: lease as many units as there are free slots,
//! start each one, and shut down in order when asked.
//!
//! Three kinds of tokio tasks share one [`Shared`] (see [`crate::shared`]):
//! this leasing loop, one task per running unit (see [`crate::unit`]) and
//! the renewal loop (see [`crate::renew`]). Free slots are permits of a semaphore: a unit holds
//! one until its commit is done, so the leasing loop simply waits for a
//! permit when all slots are busy. A unit's commit also asks for the next
//! unit (`lease_next`): the task that gets one runs it in the same slot,
//! saving a lease call and a journal wait per unit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use taskmaster_proto::compact;
use taskmaster_proto::v1::{Lease, LeaseRequest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::Status;

use crate::backoff::Backoff;
use crate::config::{ConfigError, WorkerConfig};
use crate::held::HeldLeases;
use crate::renew::{release_all, renew_loop};
use crate::rpc::{self, FailureLog, MasterConnection, Show};
use crate::shared::{Shared, release_one};
use crate::stats::{Counters, WorkerStats};
use crate::store::Stores;
use crate::task::{CancelReason, CancelToken, TaskRegistry};
use crate::unit::run_unit;

/// Lease calls that come back empty are at least this far apart, in case
/// the master answers at once instead of long-polling.
pub const EMPTY_POLL_INTERVAL_MIN_MS: u64 = 200;
/// After the grace period, how long cancelled units get to stop (an `exec`
/// child is killed within about 50 ms) before their leases are released.
pub const CANCEL_WAIT_MS: u64 = 2_000;
/// The same, when a second signal asked to exit at once.
pub const HARD_CANCEL_WAIT_MS: u64 = 300;

/// Why [`run_worker`] could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid worker configuration: {0}")]
    Config(#[from] ConfigError),
}

/// Runs a worker until `shutdown` resolves, then lets in-flight units
/// finish and commit for up to the grace period, cancels and releases the
/// rest, and returns what it did. Fails only on a bad configuration; an
/// unreachable master is retried forever.
///
/// Must be called within a tokio runtime with the time and I/O drivers
/// enabled. Dropping the returned future instead stops everything at once
/// without releasing leases (they expire on the master).
pub async fn run_worker(
    config: WorkerConfig,
    tasks: TaskRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerStats, WorkerError> {
    run_worker_until(config, tasks, shutdown, std::future::pending()).await
}

/// [`run_worker`], plus `hard_shutdown`: when it resolves (e.g. a second
/// SIGTERM), running units are cancelled and their leases released at once,
/// without waiting for the grace period.
pub async fn run_worker_until(
    config: WorkerConfig,
    tasks: TaskRegistry,
    shutdown: impl Future<Output = ()>,
    hard_shutdown: impl Future<Output = ()>,
) -> Result<WorkerStats, WorkerError> {
    config.validate()?;
    let worker = Arc::new(Shared {
        master: MasterConnection::new(
            &config.master_url,
            config.tls.as_ref(),
            &config.credentials,
            config.calls,
        )?,
        slots: Arc::new(Semaphore::new(config.slots as usize)),
        held: HeldLeases::default(),
        stats: Counters::default(),
        stores: Stores::default(),
        stopping: AtomicBool::new(false),
        tasks,
        config,
    });
    crate::metrics::track(&worker);
    tracing::info!(
        worker_id = %worker.config.worker_id,
        master = %worker.config.master_url,
        slots = worker.config.slots,
        calls = ?worker.config.calls,
        tasks = ?worker.tasks.names(),
        "worker started"
    );
    let _renewer = AbortOnDrop(tokio::spawn({
        let worker = worker.clone();
        async move { renew_loop(&worker).await }
    }));
    let mut units = JoinSet::new();
    let mut hard_shutdown = pin!(hard_shutdown);
    let hard = tokio::select! {
        () = shutdown => false,
        () = &mut hard_shutdown => true,
        never = lease_loop(&worker, &mut units) => match never {},
    };
    worker.stopping.store(true, Ordering::Release);
    shut_down(&worker, &mut units, hard, hard_shutdown).await;
    let stats = worker.stats.snapshot();
    tracing::info!(?stats, "worker stopped");
    Ok(stats)
}

/// Aborts a background task when dropped, so it ends with `run_worker`
/// even if the caller drops that future halfway.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Leases units into free slots, forever (the caller drops it to stop).
async fn lease_loop(worker: &Arc<Shared>, units: &mut JoinSet<()>) -> Infallible {
    let mut backoff = Backoff::rpc();
    let mut failures = FailureLog::new("lease call");
    loop {
        reap_finished(units);
        let permits = free_slots(&worker.slots).await;
        let asked_at = Instant::now();
        match lease_call(worker, permits.len()).await {
            Ok(leases) => {
                backoff.reset();
                failures.succeeded();
                if leases.is_empty() {
                    let next_poll = asked_at + Duration::from_millis(EMPTY_POLL_INTERVAL_MIN_MS);
                    tokio::time::sleep_until(next_poll).await;
                }
                start_units(worker, units, leases, permits);
            }
            Err(status) => {
                drop(permits);
                let delay = backoff.next_delay();
                failures.failed(&Show(&status), delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Waits for at least one free slot, then takes every free slot.
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let first = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the slot semaphore is never closed");
    let mut permits = vec![first];
    while let Ok(permit) = slots.clone().try_acquire_owned() {
        permits.push(permit);
    }
    permits
}

/// Asks the master for up to `max_units` leases, long-polling.
async fn lease_call(worker: &Shared, max_units: usize) -> Result<Vec<Lease>, Status> {
    let config = &worker.config;
    let request = LeaseRequest {
        worker_id: config.worker_id.clone(),
        max_units: u32::try_from(max_units).expect("slots fit u32"),
        wait_ms: config.lease_wait_ms,
        compact: true,
        worker_slots: config.slots,
    };
    let timeout = Duration::from_millis(u64::from(config.lease_wait_ms) + rpc::LEASE_RPC_SLACK_MS);
    let reply = worker.master.lease(request, timeout).await?;
    compact::expand(reply.leases, &reply.lease_groups)
        .map_err(|e| Status::internal(format!("the master's lease reply: {e}")))
}

/// Starts a unit task per lease, each holding one permit. Leases beyond
/// the permits (the master sent more than asked) are released unrun.
fn start_units(
    worker: &Arc<Shared>,
    units: &mut JoinSet<()>,
    leases: Vec<Lease>,
    permits: Vec<OwnedSemaphorePermit>,
) {
    let granted_at = Instant::now();
    let mut permits = permits.into_iter();
    for lease in leases {
        if lease.unit.is_none() {
            // Cannot be committed or released without naming the unit.
            tracing::warn!(
                lease_id = lease.lease_id,
                "ignoring a lease that names no unit"
            );
            continue;
        }
        let Some(permit) = permits.next() else {
            tracing::warn!(
                lease_id = lease.lease_id,
                "master granted more leases than asked for; releasing the extra"
            );
            let worker = worker.clone();
            // Spawned so the leasing loop never waits on it.
            units.spawn(async move { release_one(&worker, lease).await });
            continue;
        };
        let cancel = CancelToken::new();
        let key = worker.held.insert(&lease, cancel.clone(), granted_at);
        let worker = worker.clone();
        units.spawn(async move {
            let mut next = run_unit(worker.clone(), lease, key, cancel).await;
            // The unit leased with the last commit runs in the same slot.
            while let Some(lease) = next.take() {
                let cancel = CancelToken::new();
                let key = worker.held.insert(&lease, cancel.clone(), Instant::now());
                next = run_unit(worker.clone(), lease, key, cancel).await;
            }
            drop(permit);
        });
    }
}

/// Collects finished unit tasks, so the join set does not grow.
fn reap_finished(units: &mut JoinSet<()>) {
    while let Some(joined) = units.try_join_next() {
        if let Err(err) = joined {
            tracing::error!("a unit task failed: {err}");
        }
    }
}

/// Stops the worker: no more leasing (the caller already dropped the lease
/// loop); in-flight units get the grace period unless `hard`; then what is
/// still running is cancelled and its leases released.
async fn shut_down(
    worker: &Shared,
    units: &mut JoinSet<()>,
    mut hard: bool,
    mut hard_shutdown: Pin<&mut impl Future<Output = ()>>,
) {
    reap_finished(units);
    if !hard {
        tracing::info!(
            in_flight = units.len(),
            grace_ms = worker.config.grace_ms,
            "shutting down: no new leases, waiting for in-flight units"
        );
        let grace = worker.config.grace();
        hard = wait_for_units(units, grace, hard_shutdown.as_mut()).await == Waited::Interrupted;
    }
    if !units.is_empty() {
        tracing::warn!(in_flight = units.len(), hard, "cancelling unfinished units");
        worker.held.cancel_all(CancelReason::Shutdown);
        // A finished future must not be polled again, so once the hard
        // shutdown fired, nothing can interrupt this short wait.
        if hard {
            let never = pin!(std::future::pending());
            wait_for_units(units, Duration::from_millis(HARD_CANCEL_WAIT_MS), never).await;
        } else {
            let limit = Duration::from_millis(CANCEL_WAIT_MS);
            wait_for_units(units, limit, hard_shutdown).await;
        }
    }
    // Whatever is left is abandoned (a task ignoring cancellation keeps its
    // blocking thread until it returns); its lease is given back below.
    units.abort_all();
    release_all(worker).await;
}

#[derive(Debug, PartialEq, Eq)]
enum Waited {
    Drained,
    TimedOut,
    Interrupted,
}

/// Waits until every unit task ended, `limit` passed, or `interrupt`
/// resolved.
async fn wait_for_units(
    units: &mut JoinSet<()>,
    limit: Duration,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Waited {
    let drained = async {
        while let Some(joined) = units.join_next().await {
            if let Err(err) = joined {
                tracing::error!("a unit task failed: {err}");
            }
        }
    };
    tokio::select! {
        () = drained => Waited::Drained,
        () = tokio::time::sleep(limit) => Waited::TimedOut,
        () = interrupt => Waited::Interrupted,
    }
}
