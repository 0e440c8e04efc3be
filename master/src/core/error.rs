//! The core's typed errors; the gRPC layer maps each to a status in one place.

/// Why a whole request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("wrong master: the request carries server token {given:?}, this master's is {ours:?}")]
    WrongMaster { given: String, ours: String },
    #[error("{0}")]
    AlreadyExists(String),
    /// The request makes no sense in the current state (e.g. unblock when
    /// not blocked).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit of the master's is reached (issue 24: --max-pipelines).
    #[error("{0}")]
    Exhausted(String),
    /// A journal record that does not fit the state it is applied to.
    #[error("journal record does not fit the state: {0}")]
    Corrupt(String),
}

/// Why one item of a batch (commit, renew, release) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown unit: {0}")]
    UnknownUnit(String),
    #[error(
        "stale config version: the lease has version {lease}, the group is at version {current}"
    )]
    StaleConfig { lease: u64, current: u64 },
    #[error("lease lost: {0}")]
    LeaseLost(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A repeat of an accepted commit that names other outputs than the
    /// accepted one: the unit stays committed with the first set.
    #[error("already committed: {0}")]
    AlreadyCommitted(String),
}
