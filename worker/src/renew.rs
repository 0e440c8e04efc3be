//! Keeping held leases alive (one renew call for all of them, a third of
//! the way into the shortest lease) and giving them back at shutdown.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use taskmaster_proto::v1::{LeaseRef, ReleaseRequest, RenewRequest};
use tokio::time::Instant;
use tonic::Status;

use crate::backoff::Backoff;
use crate::held::{HeldLeases, LeaseKey};
use crate::rpc::{self, FailureLog, Show, describe_item, is_wrong_master, item_ok};
use crate::shared::Shared;
use crate::stats::Counters;

/// Bound on each release call at shutdown; releasing is best effort.
const RELEASE_TIMEOUT_MS: u64 = 5_000;

/// Renews every held lease whenever a renewal is due, forever (the runner
/// aborts it). A failed call is retried with backoff; the leases it covered
/// are not given up here, since the master may still honour them.
pub(crate) async fn renew_loop(worker: &Shared) -> Infallible {
    let mut backoff = Backoff::rpc();
    let mut failures = FailureLog::new("lease renewal");
    loop {
        wait_until_due(&worker.held).await;
        match renew_all(worker).await {
            Ok(()) => {
                backoff.reset();
                failures.succeeded();
            }
            Err(status) => {
                let delay = backoff.next_delay();
                failures.failed(&Show(&status), delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Returns once a renewal is due, rechecking when a lease is added.
async fn wait_until_due(held: &HeldLeases) {
    loop {
        match held.next_renewal() {
            None => held.added().await,
            Some(due) => tokio::select! {
                () = tokio::time::sleep_until(due) => return,
                () = held.added() => {}
            },
        }
    }
}

/// One renew call per server token. Returns the first failure, after
/// trying every token.
async fn renew_all(worker: &Shared) -> Result<(), Status> {
    let mut result = Ok(());
    for (token, leases) in worker.held.by_token() {
        if let Err(status) = renew_batch(worker, token, leases).await {
            result = result.and(Err(status));
        }
    }
    result
}

/// Renews the leases of one server token; a lease the master answers
/// non-OK for is lost, and its unit cancelled.
async fn renew_batch(
    worker: &Shared,
    token: String,
    leases: Vec<(LeaseKey, LeaseRef)>,
) -> Result<(), Status> {
    // A renewal extends the lease from when the master got it, which is no
    // earlier than when it was sent: counting from here is conservative.
    let sent_at = Instant::now();
    let request = RenewRequest {
        server_token: token,
        leases: leases
            .iter()
            .map(|(_, lease_ref)| lease_ref.clone())
            .collect(),
    };
    let timeout = Duration::from_millis(rpc::RPC_TIMEOUT_MS);
    let reply = match worker.master.renew(request, timeout).await {
        Ok(reply) => reply,
        Err(status) if is_wrong_master(&status) => {
            // Not the master these leases came from: none of them can be
            // renewed or committed here.
            for (key, _) in &leases {
                lose(worker, key, &Show(&status).to_string());
            }
            return Ok(());
        }
        Err(status) => return Err(status),
    };
    if reply.results.len() != leases.len() {
        return Err(Status::internal(format!(
            "renew answered {} results for {} leases",
            reply.results.len(),
            leases.len()
        )));
    }
    for ((key, _), result) in leases.iter().zip(&reply.results) {
        if item_ok(result) {
            worker.held.renewed(key, sent_at, reply.lease_ms);
        } else {
            lose(worker, key, &describe_item(result));
        }
    }
    Ok(())
}

fn lose(worker: &Shared, key: &LeaseKey, why: &str) {
    if worker.held.lose(key) {
        Counters::add(&worker.stats.leases_lost, 1);
        tracing::warn!(
            lease_id = key.lease_id,
            "lease lost, cancelling its unit: {why}"
        );
    }
}

/// Gives back every lease still held, one best-effort release call per
/// server token. Leases that cannot be released expire on the master.
pub(crate) async fn release_all(worker: &Shared) {
    let groups: BTreeMap<String, Vec<(LeaseKey, LeaseRef)>> = worker.held.take_all();
    for (token, leases) in groups {
        let count = leases.len();
        let request = ReleaseRequest {
            server_token: token,
            leases: leases.into_iter().map(|(_, lease_ref)| lease_ref).collect(),
        };
        let timeout = Duration::from_millis(RELEASE_TIMEOUT_MS);
        match worker.master.release(request, timeout).await {
            Ok(reply) => {
                let released = reply.results.iter().filter(|item| item_ok(item)).count();
                Counters::add(&worker.stats.leases_released, released as u64);
                for item in reply.results.iter().filter(|item| !item_ok(item)) {
                    tracing::debug!("release refused: {}", describe_item(item));
                }
                tracing::info!(released, held = count, "released unfinished leases");
            }
            Err(status) => {
                tracing::warn!(
                    count,
                    "could not release leases, they will expire on the master: {}",
                    Show(&status)
                );
            }
        }
    }
}
