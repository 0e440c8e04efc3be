//! A worker's identity binds its calls: the `worker_id` it leases under
//! must be its own name, and the leases it renews, commits, releases or
//! reads must be ones granted to it. So one worker's token cannot commit
//! (or fail, or release) another worker's unit.

use taskmaster_proto::v1::LeaseRef;
use tonic::Status;

use crate::runtime::Master;

/// Refuses a lease asked for under another worker's id.
pub fn check_worker_id(bound: Option<&str>, worker_id: &str) -> Result<(), Status> {
    match bound {
        Some(name) if name != worker_id => Err(Status::permission_denied(format!(
            "worker {name} may lease only as itself, not as worker_id {}",
            crate::core::names::shown(worker_id)
        ))),
        _ => Ok(()),
    }
}

/// Refuses a call naming a current lease of another worker.
pub fn check_leases<'a>(
    master: &Master,
    bound: Option<&str>,
    refs: impl IntoIterator<Item = Option<&'a LeaseRef>>,
) -> Result<(), Status> {
    let Some(name) = bound else { return Ok(()) };
    match master.lease_of_another(refs, name) {
        None => Ok(()),
        Some(lease) => Err(Status::permission_denied(format!(
            "worker {name} may not act on {lease}"
        ))),
    }
}
