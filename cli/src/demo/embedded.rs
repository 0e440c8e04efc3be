//! A master and its workers, all inside this process: what lets the demo
//! run with no service installed. Started on 127.0.0.1, port 0; stopped in
//! the order that loses nothing (workers, then the server, then the
//! journal).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_master::clock::MonotonicClock;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_master::server::{self, ServeError};
use taskmaster_worker::{WorkerConfig, WorkerError, WorkerStats, run_worker, stock_registry};
use tokio::net::TcpListener;
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
    /// `http://127.0.0.1:<port>`.
    url: String,
    master: Arc<Master>,
    /// Resolves the server's shutdown future; `None` once sent.
    server_stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
    /// Stopped before the server, so no worker polls a stopped master.
    workers: Vec<Worker>,
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
            data_dir: data_dir.to_path_buf(),
            store_root: None,
            store_url: None,
            lease_ms: LEASE_MS,
            max_in_flight: 0,
            retain_finished: None,
            // The demo writes its input into the data dir before the
            // master opens it: that is the demo's own data, not a lost
            // journal's.
            init: true,
            auto_snapshot: Default::default(),
        };
        let master = Arc::new(Master::open(&config, Arc::new(MonotonicClock::default()))?);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(DemoError::Listen)?;
        let addr = listener.local_addr().map_err(DemoError::Listen)?;
        let (server_stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, Arc::clone(&master), async {
            let _ = stopped.await;
        }));
        let mut embedded = Embedded {
            url: format!("http://{addr}"),
            master,
            server_stop: Some(server_stop),
            server: Some(server),
            workers: Vec::new(),
        };
        for i in 1..=workers {
            let worker = Worker::start(&embedded.url, i)?;
            embedded.workers.push(worker);
        }
        Ok(embedded)
    }

    /// The master's gRPC address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An error if the server or a worker has stopped on its own, which
    /// would otherwise leave the pipeline waiting forever.
    pub fn check_running(&self) -> Result<(), DemoError> {
        if let Some(why) = self.master.fatal_error() {
            return Err(DemoError::Stopped(format!(
                "the master's journal failed: {why}"
            )));
        }
        if self.server.as_ref().is_some_and(JoinHandle::is_finished) {
            return Err(DemoError::Stopped("the master's server stopped".into()));
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
    pub async fn stop(mut self) -> Result<(), DemoError> {
        for worker in &mut self.workers {
            let _ = worker.stop.take().map(|stop| stop.send(()));
        }
        let mut result = Ok(());
        for (i, worker) in self.workers.iter_mut().enumerate() {
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
        let _ = self.server_stop.take().map(|stop| stop.send(()));
        if let Some(server) = self.server.take() {
            let stopped = match tokio::time::timeout(STOP_WAIT, server).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!("the master's server: {e}")),
                Ok(Err(e)) => Err(format!("the master's server panicked: {e}")),
                Err(_) => Err("the master's server did not stop in time".to_string()),
            };
            result = result.and(stopped);
        }
        self.master.close();
        if let Some(why) = self.master.fatal_error() {
            result = result.and(Err(format!("the master's journal failed: {why}")));
        }
        result.map_err(DemoError::Stopped)
    }
}

impl Drop for Embedded {
    /// The fallback when the demo ends without [`Embedded::stop`] (an
    /// error on the way): stop everything at once. Unfinished leases are
    /// simply not released; the store is thrown away or kept as it is.
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.stop.take().map(|stop| stop.send(()));
            if let Some(handle) = worker.handle.take() {
                handle.abort();
            }
        }
        let _ = self.server_stop.take().map(|stop| stop.send(()));
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.master.close();
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
