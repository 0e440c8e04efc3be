//! The one place the master's typed errors and refusals become gRPC
//! statuses, for every service (`service`, `schedule_service`,
//! `worker_rpc`).

use taskmaster_proto::v1::ItemStatus;
use tonic::{Code, Status};

use crate::core::ops::ItemResults;
use crate::core::{CoreError, Refusal};
use crate::journal::JournalError;
use crate::runtime::MasterError;
use crate::snapshots::SnapshotError;

/// A typed error as the status a call answers.
pub(crate) fn status(error: MasterError) -> Status {
    let message = error.to_string();
    match error {
        MasterError::Core(e) => match e {
            CoreError::Invalid(_) => Status::invalid_argument(message),
            CoreError::NotFound(_) => Status::not_found(message),
            CoreError::WrongMaster { .. } => Status::permission_denied(message),
            CoreError::AlreadyExists(_) => Status::already_exists(message),
            CoreError::FailedPrecondition(_) => Status::failed_precondition(message),
            CoreError::Exhausted(_) => Status::resource_exhausted(message),
            CoreError::Corrupt(_) => Status::internal(message),
        },
        MasterError::Journal(JournalError::DiskFull(_)) => Status::resource_exhausted(message),
        MasterError::Journal(_) | MasterError::ShuttingDown => Status::unavailable(message),
        MasterError::DataDir { .. } => Status::internal(message),
        MasterError::Snapshot(SnapshotError::NotFound(_)) => Status::not_found(message),
        MasterError::Snapshot(_) => Status::internal(message),
    }
}

/// The gRPC code of a refused lease.
pub(crate) fn refusal_code(refusal: &Refusal) -> Code {
    match refusal {
        Refusal::UnknownUnit(_) => Code::NotFound,
        Refusal::StaleConfig { .. } => Code::FailedPrecondition,
        Refusal::LeaseLost(_) => Code::Aborted,
        Refusal::Invalid(_) => Code::InvalidArgument,
        Refusal::AlreadyCommitted(_) => Code::AlreadyExists,
    }
}

/// Per-item refusals of batch calls, as gRPC codes.
fn item_status(result: Result<(), Refusal>) -> ItemStatus {
    let code = result.as_ref().err().map_or(Code::Ok, refusal_code);
    ItemStatus {
        code: code as i32,
        message: result.err().map(|e| e.to_string()).unwrap_or_default(),
    }
}

pub(crate) fn item_statuses(results: ItemResults) -> Vec<ItemStatus> {
    results.into_iter().map(item_status).collect()
}
