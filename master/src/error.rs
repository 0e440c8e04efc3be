//! The master's errors: what a call of the runtime (and recovery) can fail
//! with. The gRPC layer maps each to a status in one place
//! (`grpc_status::status`).

use crate::core::CoreError;
use crate::journal::JournalError;
use crate::snapshots::SnapshotError;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The core refused the request (or, as `Corrupt`, a record).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The journal failed; changes are refused until it is rebuilt (a full
    /// disk) or the process stops (anything else).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The data dir cannot be used as it is (locked, missing files, held
    /// by another store), or a thread working on it stopped.
    #[error("data dir {path}: {what}")]
    DataDir { path: String, what: String },
    #[error("the master is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}
