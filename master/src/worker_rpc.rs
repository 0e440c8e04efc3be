//! The worker's calls (lease, renew, commit, release): their checks, the
//! runtime call and the reply, shared by the unary handlers (`service`) and
//! the `Work` stream (`work_stream`), so neither reaches into the other.

use std::time::Duration;

use prost::Message as _;
use taskmaster_proto::v1::*;
use tonic::Status;

use crate::auth::worker_calls;
use crate::core::CoreError;
use crate::core::limits::{BATCH_ITEMS_MAX, LEASE_WAIT_MS_MAX, MESSAGE_BYTES_MAX};
use crate::grpc_status::{item_statuses, status};
use crate::runtime::{Master, MasterError};

/// A lease call: up to `max_units` leases, waiting up to `wait_ms` for work.
pub(crate) async fn lease_call(
    master: &Master,
    req: LeaseRequest,
    worker: Option<&str>,
) -> Result<LeaseResponse, Status> {
    worker_calls::check_worker_id(worker, &req.worker_id)?;
    check_max_units(req.max_units)?;
    if req.wait_ms > LEASE_WAIT_MS_MAX {
        return Err(Status::invalid_argument(format!(
            "wait_ms must be at most {LEASE_WAIT_MS_MAX}"
        )));
    }
    let wait = Duration::from_millis(req.wait_ms.into());
    let leased = master
        .lease_as(
            &req.worker_id,
            req.worker_slots,
            req.max_units as usize,
            req.compact,
            wait,
        )
        .await
        .map_err(status)?;
    crate::metrics::metrics().count_leases_granted(leased.len() as u64);
    // The core counted the leases' bytes as it built them: no second pass.
    warn_if_unsendable("Lease", leased.encoded_bytes(), leased.len());
    let reply = LeaseResponse {
        leases: leased.leases,
        lease_groups: leased.groups,
    };
    Ok(reply)
}

/// Logs loudly a reply over the message limit: its leases were granted and
/// journaled but will never reach the worker, and will expire. The core
/// sizes replies so that this cannot happen; if it does, it is a bug.
fn warn_if_unsendable(call: &str, bytes: usize, leases: usize) {
    if bytes > MESSAGE_BYTES_MAX {
        tracing::error!(
            call,
            bytes,
            limit = MESSAGE_BYTES_MAX,
            leases,
            "a reply is over the message limit and cannot be sent: its leases will expire"
        );
    }
}

fn check_max_units(max_units: u32) -> Result<(), Status> {
    if max_units == 0 || max_units as usize > BATCH_ITEMS_MAX {
        return Err(Status::invalid_argument(format!(
            "max_units must be 1 to {BATCH_ITEMS_MAX}"
        )));
    }
    Ok(())
}

pub(crate) async fn renew_call(
    master: &Master,
    req: RenewRequest,
    worker: Option<&str>,
) -> Result<RenewResponse, Status> {
    worker_calls::check_leases(master, worker, req.leases.iter().map(Some))?;
    let results = master
        .renew(&req.server_token, &req.leases)
        .await
        .map_err(status)?;
    Ok(RenewResponse {
        results: item_statuses(results),
        lease_ms: master.lease_ms(),
    })
}

pub(crate) async fn commit_call(
    master: &Master,
    req: CommitRequest,
    worker: Option<&str>,
) -> Result<CommitResponse, Status> {
    if let Some(next) = &req.lease_next {
        worker_calls::check_worker_id(worker, &next.worker_id)?;
        check_max_units(next.max_units)?;
    }
    worker_calls::check_leases(master, worker, req.items.iter().map(|i| i.lease.as_ref()))?;
    let (results, leased) = master
        .commit(&req.server_token, &req.items, req.lease_next.as_ref())
        .await
        .map_err(|e| {
            if let MasterError::Core(CoreError::WrongMaster { .. }) = e {
                crate::metrics::count_wrong_master(req.items.len());
            }
            status(e)
        })?;
    crate::metrics::count_commit_results(&req.items, &results);
    crate::metrics::metrics().count_leases_granted(leased.len() as u64);
    let results = item_statuses(results);
    // Each result plus its field tag and length prefix (a few bytes).
    let results_bytes: usize = results.iter().map(|r| r.encoded_len() + 4).sum();
    warn_if_unsendable(
        "Commit",
        leased.encoded_bytes() + results_bytes,
        leased.len(),
    );
    let reply = CommitResponse {
        results,
        leases: leased.leases,
        lease_groups: leased.groups,
    };
    Ok(reply)
}

pub(crate) async fn release_call(
    master: &Master,
    req: ReleaseRequest,
    worker: Option<&str>,
) -> Result<ReleaseResponse, Status> {
    worker_calls::check_leases(master, worker, req.leases.iter().map(Some))?;
    let results = master
        .release(&req.server_token, &req.leases)
        .await
        .map_err(status)?;
    Ok(ReleaseResponse {
        results: item_statuses(results),
    })
}
