//! The runtime around the pure core: owns it behind one lock, journals the
//! records each operation yields, and answers only once they are durable.
//! Reads also wait until everything they could have seen is durable, so no
//! client ever observes a change that a crash could undo.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use taskmaster_proto::journal::{Record, record::Kind};
use taskmaster_proto::v1::{
    CommitItem, Lease, LeaseRef, PipelineSpec, PipelineStatus, UnitOutputs,
};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::core::ops::ItemResults;
use crate::core::{Core, CoreConfig, CoreError};
use crate::journal::file::FileLog;
use crate::journal::{Journal, JournalError};

/// How the master is set up; see `taskmaster serve --help`.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub data_dir: PathBuf,
    /// Where attempts write outputs; `<data_dir>/store` by default.
    pub store_root: Option<PathBuf>,
    pub lease_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("data dir {path}: {what}")]
    DataDir { path: String, what: String },
    #[error("the master is shutting down")]
    ShuttingDown,
}

pub struct Master {
    core: Mutex<Core>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    /// Woken whenever units may have become ready, for long-polling leases.
    work_ready: Notify,
    /// Set when the master begins to shut down, to end long-polls.
    closing: watch::Sender<bool>,
    /// Held for the process's life: one master per data dir.
    _lock: File,
}

impl Master {
    /// Opens (or creates) the data dir and recovers the state it holds.
    pub fn open(config: &MasterConfig, clock: Arc<dyn Clock>) -> Result<Master, MasterError> {
        let data_dir = &config.data_dir;
        let dir_error = |what: String| MasterError::DataDir {
            path: data_dir.display().to_string(),
            what,
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|e| dir_error(format!("cannot create it: {e}")))?;
        let lock = lock_data_dir(data_dir).map_err(dir_error)?;
        let store_root = match &config.store_root {
            Some(root) => root.clone(),
            None => data_dir.join("store"),
        };
        std::fs::create_dir_all(&store_root)
            .map_err(|e| dir_error(format!("cannot create the store: {e}")))?;
        let store_root = store_root
            .canonicalize()
            .map_err(|e| dir_error(format!("store: {e}")))?;
        let core_config = CoreConfig {
            store_root: store_root.display().to_string(),
            lease_ms: config.lease_ms,
        };
        let (log, records) = open_journal(&data_dir.join("journal.log"))?;
        let count = records.len() as u64;
        let core = Core::recover(core_config, records, clock.now_ms())?;
        core.check_invariants()?;
        tracing::info!(
            records = count,
            server_token = core.server_token(),
            "recovered state from the journal"
        );
        Ok(Master {
            core: Mutex::new(core),
            journal: Journal::start(log, count),
            clock,
            work_ready: Notify::new(),
            closing: watch::channel(false).0,
            _lock: lock,
        })
    }

    pub fn lease_ms(&self) -> u64 {
        self.core.lock().config().lease_ms
    }

    pub fn server_token(&self) -> String {
        self.core.lock().server_token().to_string()
    }

    /// Runs `op` on the core, journals its records, waits until they are
    /// durable and returns its result.
    async fn mutate<T>(
        &self,
        op: impl FnOnce(&mut Core, u64) -> Result<(Vec<Record>, T), CoreError>,
    ) -> Result<T, MasterError> {
        let (out, seq, wakes) = {
            let mut core = self.core.lock();
            let (records, out) = op(&mut core, self.clock.now_ms())?;
            let wakes = records
                .iter()
                .any(|r| !matches!(r.kind, Some(Kind::LeaseGranted(_))));
            (out, self.journal.append(&records), wakes)
        };
        if wakes {
            self.work_ready.notify_waiters();
        }
        self.journal.wait_durable(seq).await?;
        Ok(out)
    }

    /// Reads the core, then waits until all it could have seen is durable.
    async fn read<T>(
        &self,
        view: impl FnOnce(&Core) -> Result<T, CoreError>,
    ) -> Result<T, MasterError> {
        let (out, seq) = {
            let core = self.core.lock();
            (view(&core)?, self.journal.appended())
        };
        self.journal.wait_durable(seq).await?;
        Ok(out)
    }

    pub async fn submit(&self, spec: PipelineSpec) -> Result<String, MasterError> {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Ids are `<name>-<8 hex>`; a clash (vanishingly rare) picks again.
        for _ in 0..8 {
            let id = format!(
                "{}-{}",
                spec.name,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let result = self
                .mutate(|core, now| Ok((core.submit(&id, spec.clone(), unix_ms, now)?, ())))
                .await;
            match result {
                Err(MasterError::Core(CoreError::AlreadyExists(_))) => continue,
                other => return other.map(|()| id),
            }
        }
        Err(CoreError::AlreadyExists("could not pick a free pipeline id".into()).into())
    }

    /// Grants up to `max_units` leases, waiting up to `wait` for work.
    pub async fn lease(
        &self,
        worker_id: &str,
        max_units: usize,
        wait: Duration,
    ) -> Result<Vec<Lease>, MasterError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut closing = self.closing.subscribe();
        loop {
            // Registered before looking, so a wake-up in between is not lost.
            let notified = self.work_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leases = self
                .mutate(|core, now| core.lease(worker_id, max_units, now))
                .await?;
            if !leases.is_empty() || wait.is_zero() {
                return Ok(leases);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                _ = closing.wait_for(|c| *c) => return Err(MasterError::ShuttingDown),
            }
        }
    }

    pub async fn renew(&self, token: &str, refs: &[LeaseRef]) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| Ok((Vec::new(), core.renew(token, refs, now)?)))
            .await
    }

    pub async fn commit(
        &self,
        token: &str,
        items: &[CommitItem],
    ) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| core.commit(token, items, now))
            .await
    }

    pub async fn release(
        &self,
        token: &str,
        refs: &[LeaseRef],
    ) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| core.release(token, refs, now))
            .await
    }

    pub async fn status(&self, pipeline_id: &str) -> Result<PipelineStatus, MasterError> {
        self.read(|core| core.status(pipeline_id)).await
    }

    pub async fn list(&self) -> Result<Vec<PipelineStatus>, MasterError> {
        self.read(|core| Ok(core.list())).await
    }

    pub async fn outputs(
        &self,
        pipeline_id: &str,
        group: &str,
    ) -> Result<Vec<UnitOutputs>, MasterError> {
        self.read(|core| core.outputs(pipeline_id, group)).await
    }

    /// Expires every lease that ran out; returns how many.
    pub async fn reap(&self) -> Result<usize, MasterError> {
        self.mutate(|core, now| {
            let records = core.expire(now);
            let expired = records.len();
            Ok((records, expired))
        })
        .await
    }

    /// Expires leases as they run out, until shutdown. Ticks at a tenth of
    /// the lease time (10 ms to 1 s), so expiry is late by at most that.
    pub async fn run_reaper(self: Arc<Self>) {
        let lease_ms = self.core.lock().config().lease_ms;
        let tick = Duration::from_millis((lease_ms / 10).clamp(10, 1000));
        let mut closing = self.closing.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            match self.reap().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(expired = n, "leases expired; their units are pending again")
                }
                Err(e) => {
                    tracing::error!(error = %e, "lease reaper stopped");
                    return;
                }
            }
        }
    }

    /// Ends long-polls and the reaper; in-flight changes still complete.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves if the journal fails: the node must then stop.
    pub async fn journal_failed(&self) -> Arc<str> {
        self.journal.failed().await
    }

    /// The journal's failure, if it has failed.
    pub fn journal_error(&self) -> Option<Arc<str>> {
        self.journal.failure()
    }

    /// Syncs the journal issued so far.
    pub fn journal_syncs(&self) -> u64 {
        self.journal.syncs()
    }

    /// Flushes and stops the journal writer.
    pub fn close(&self) {
        self.begin_shutdown();
        self.journal.close();
    }
}

fn open_journal(path: &Path) -> Result<(FileLog, Vec<Record>), MasterError> {
    if !path.exists() {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let init = Core::init_record(&token, unix_ms);
        let log = FileLog::create(path, &init)?;
        tracing::info!(server_token = token, "created a new store");
        return Ok((log, vec![init]));
    }
    let opened = FileLog::open(path)?;
    if opened.torn_bytes > 0 {
        tracing::warn!(
            bytes = opened.torn_bytes,
            "journal ended in an unfinished write (never acknowledged); truncated it"
        );
    }
    Ok((opened.log, opened.records))
}

/// Takes an exclusive lock on `<data_dir>/LOCK` so two masters never share a store.
fn lock_data_dir(data_dir: &Path) -> Result<File, String> {
    let path = data_dir.join("LOCK");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err("another master is using it (LOCK is held)".into())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}
