//! A master and its workers, all inside this process: what lets the demo
//! run with no service installed. Started on 127.0.0.1, port 0; stopped in
//! the order that loses nothing (workers, then the server, then the
//! journal).

use std::path::Path;
use std::time::Duration;

use taskmaster_master::in_process::{InProcessError, InProcessMaster};
use taskmaster_master::runtime::MasterConfig;
use taskmaster_worker::{WorkerConfig, WorkerError, WorkerStats, run_worker, stock_registry};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::DemoError;

/// Lease time of the embedded master: long enough that a busy machine
/// does not expire a lease a worker is renewing, short enough that a
/// lost unit is retried while someone is still watching.
pub const LEASE_MS: u64 = 10_000;

/// How long a worker's running units may finish after it is asked to stop
/// (normally none are running: the pipeline is over).
pub const WORKER_GRACE_MS: u64 = 3_000;

/// How long each part may take to stop before the demo reports it stuck.
pub const STOP_WAIT: Duration = Duration::from_secs(15);

/// A master served on a local port, with `workers` in-process workers
/// leasing from it. Dropping it stops everything at once (for error
/// paths); [`Embedded::stop`] stops it in order.
pub struct Embedded {
    /// Stopped before the master, so no worker polls a stopped master
    /// (and dropped before it: fields drop in order).
    workers: Vec<Worker>,
    master: InProcessMaster,
}

/// One in-process worker: its stop signal and its task.
struct Worker {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<WorkerStats, WorkerError>>>,
}

impl Embedded {
    /// Opens a master on `data_dir`, serves it and starts `workers`
    /// workers with one slot each and the stock tasks.
    pub async fn start(data_dir: &Path, workers: u32) -> Result<Embedded, DemoError> {
        let config = MasterConfig {
            lease_ms: LEASE_MS,
            // The demo writes its input into the data dir before the
            // master opens it: that is the demo's own data, not a lost
            // journal's.
            init: true,
            ..MasterConfig::new(data_dir.to_path_buf())
        };
        let master = InProcessMaster::start(&config).await.map_err(|e| match e {
            InProcessError::Open(e) => DemoError::Master(e),
            InProcessError::Listen(e) => DemoError::Listen(e),
            InProcessError::NotStopped(why) => DemoError::Stopped(why),
        })?;
        let mut embedded = Embedded {
            master,
            workers: Vec::new(),
        };
        for i in 1..=workers {
            let worker = Worker::start(embedded.master.url(), i)?;
            embedded.workers.push(worker);
        }
        Ok(embedded)
    }

    /// The master's gRPC address.
    pub fn url(&self) -> &str {
        self.master.url()
    }

    /// An error if the server or a worker has stopped on its own, which
    /// would otherwise leave the pipeline waiting forever.
    pub fn check_running(&self) -> Result<(), DemoError> {
        if let Some(why) = self.master.failure() {
            return Err(DemoError::Stopped(why));
        }
        let stopped = self
            .workers
            .iter()
            .position(|w| w.handle.as_ref().is_some_and(JoinHandle::is_finished));
        match stopped {
            Some(i) => Err(DemoError::Stopped(format!("worker {} stopped", i + 1))),
            None => Ok(()),
        }
    }

    /// Stops the workers (each lets running units finish for up to
    /// [`WORKER_GRACE_MS`], then releases their leases), then the server,
    /// then closes the journal. Fails if a part does not stop cleanly.
    pub async fn stop(self) -> Result<(), DemoError> {
        let Embedded {
            master,
            mut workers,
        } = self;
        for worker in &mut workers {
            let _ = worker.stop.take().map(|stop| stop.send(()));
        }
        let mut result = Ok(());
        for (i, worker) in workers.iter_mut().enumerate() {
            let Some(handle) = worker.handle.take() else {
                continue;
            };
            let stopped = match tokio::time::timeout(STOP_WAIT, handle).await {
                Ok(Ok(Ok(_stats))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!("worker {}: {e}", i + 1)),
                Ok(Err(e)) => Err(format!("worker {} panicked: {e}", i + 1)),
                Err(_) => Err(format!("worker {} did not stop in time", i + 1)),
            };
            result = result.and(stopped);
        }
        let stopped = master.stop(STOP_WAIT).await.map_err(|e| e.to_string());
        result.and(stopped).map_err(DemoError::Stopped)
    }
}

impl Drop for Worker {
    /// The fallback when the demo ends without [`Embedded::stop`] (an
    /// error on the way): stop at once; the master is dropped after the
    /// workers (field order) and stops at once too. Unfinished leases are
    /// simply not released; the store is thrown away or kept as it is.
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl Worker {
    /// Starts worker number `n` (from 1) against the master at `url`.
    fn start(url: &str, n: u32) -> Result<Worker, DemoError> {
        let mut config = WorkerConfig::new(url);
        config.slots = 1;
        config.worker_id = format!("demo-worker-{n}");
        config.grace_ms = WORKER_GRACE_MS;
        // run_worker checks this too, but only once running; checked here
        // the demo fails at once instead of waiting on a worker that quit.
        config
            .validate()
            .map_err(|e| DemoError::Stopped(format!("worker {n}: {e}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_worker(config, stock_registry(), async {
            let _ = stopped.await;
        }));
        Ok(Worker {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}
