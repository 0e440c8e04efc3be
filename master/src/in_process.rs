//! A master served inside the calling process on 127.0.0.1, on a port the
//! OS picks: what `tmctl demo` runs (nothing to install), and the one way
//! every crate's tests start a real master they do not need to kill (the
//! tests that kill it start the `taskmaster` binary instead).
//!
//! It is served exactly as `taskmaster serve` serves it ([`server::serve`]:
//! the same handlers, background loops, health and reflection), without
//! TLS or `--auth` (loopback only).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::MonotonicClock;
use crate::error::MasterError;
use crate::runtime::{Master, MasterConfig};
use crate::server::{self, ServeError};

/// Why an in-process master did not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    /// The master could not open its data dir.
    #[error(transparent)]
    Open(#[from] MasterError),
    /// No local port to serve it on.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    /// Its server or journal failed, or it did not stop in time.
    #[error("{0}")]
    NotStopped(String),
}

/// A master and the task serving it. Dropping it stops both at once (for
/// error paths and failed tests); [`InProcessMaster::stop`] stops them in
/// order and says what did not stop cleanly.
pub struct InProcessMaster {
    /// `http://127.0.0.1:<port>`.
    url: String,
    master: Arc<Master>,
    /// Resolves the server's shutdown future; `None` once sent.
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

impl InProcessMaster {
    /// Opens a master for `config` (on a blocking thread: opening replays
    /// the journal) and serves it on 127.0.0.1, on a port the OS picks.
    pub async fn start(config: &MasterConfig) -> Result<InProcessMaster, InProcessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(InProcessError::Listen)?;
        let config = config.clone();
        let master = tokio::task::spawn_blocking(move || {
            Master::open(&config, Arc::new(MonotonicClock::default()))
        })
        .await
        // A panic while opening is a bug: passed on to the caller as one.
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        InProcessMaster::serve(listener, Arc::new(master))
    }

    /// Serves an opened `master` on `listener` (a test that must know the
    /// address before the master is up binds it first).
    pub fn serve(
        listener: TcpListener,
        master: Arc<Master>,
    ) -> Result<InProcessMaster, InProcessError> {
        let addr = listener.local_addr().map_err(InProcessError::Listen)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, Arc::clone(&master), async {
            let _ = stopped.await;
        }));
        Ok(InProcessMaster {
            url: format!("http://{addr}"),
            master,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The master's gRPC address, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The master itself, for what a test checks beyond its calls.
    pub fn master(&self) -> &Arc<Master> {
        &self.master
    }

    /// Why the master can no longer serve, if it cannot: its journal
    /// failed, or its server stopped on its own.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.master.fatal_error() {
            return Some(format!("the master's journal failed: {why}"));
        }
        if self.server.as_ref().is_some_and(JoinHandle::is_finished) {
            return Some("the master's server stopped".into());
        }
        None
    }

    /// Stops the server (letting it finish the calls in progress, for up to
    /// `wait`), then closes the journal; fails, naming each, if the server
    /// failed or did not stop in time or the journal had failed.
    pub async fn stop(mut self, wait: Duration) -> Result<(), InProcessError> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let mut problems = Vec::new();
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(wait, server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => problems.push(format!("the master's server: {e}")),
                Ok(Err(e)) => problems.push(format!("the master's server panicked: {e}")),
                Err(_) => problems.push("the master's server did not stop in time".into()),
            }
        }
        self.master.close();
        if let Some(why) = self.master.fatal_error() {
            problems.push(format!("the master's journal failed: {why}"));
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(InProcessError::NotStopped(problems.join("; "))),
        }
    }
}

impl Drop for InProcessMaster {
    /// The fallback when its owner ends without [`InProcessMaster::stop`]:
    /// stop everything at once. Unfinished leases are simply not released.
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.master.close();
    }
}
