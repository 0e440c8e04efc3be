//! What the worker's tokio tasks share: the leasing loop (`runner`) makes
//! it; each running unit (`unit`), the renewal loop (`renew`) and the
//! metrics (`metrics`) read it. Kept apart from all of them so none of
//! them reaches into another for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use taskmaster_proto::v1::Lease;
use tokio::sync::Semaphore;

use crate::config::WorkerConfig;
use crate::held::HeldLeases;
use crate::rpc::{self, MasterConnection, Show};
use crate::stats::Counters;
use crate::store::Stores;
use crate::task::TaskRegistry;

/// What the worker's tasks share.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub tasks: TaskRegistry,
    pub master: MasterConnection,
    pub held: HeldLeases,
    pub stats: Counters,
    /// One permit per slot; a running unit holds one.
    pub slots: Arc<Semaphore>,
    /// Clients of the remote stores units have used, one per bucket.
    pub stores: Stores,
    /// Shutdown has begun: commits stop asking for the next unit.
    pub stopping: AtomicBool,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Releases a lease that was never run.
pub(crate) async fn release_one(worker: &Shared, lease: Lease) {
    let request = taskmaster_proto::v1::ReleaseRequest {
        server_token: lease.server_token.clone(),
        leases: vec![lease.to_ref()],
    };
    let timeout = Duration::from_millis(rpc::RPC_TIMEOUT_MS);
    if let Err(status) = worker.master.release(request, timeout).await {
        tracing::warn!("could not release an extra lease: {}", Show(&status));
    }
}
