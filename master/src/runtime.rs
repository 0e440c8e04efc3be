//! The runtime around the pure core: owns it behind one lock, journals the
//! records each operation yields, and answers only once they are durable.
//! Reads also wait until everything they could have seen is durable, so no
//! client ever observes a change that a crash could undo.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use taskmaster_proto::journal::{Record, Snapshot, record::Kind};
use taskmaster_proto::v1::{
    CommitItem, GroupConfigChange, LeaseNext, LeaseRef, ListInputsResponse, MasterStatus,
    PipelineSpec, PipelineStatus, SnapshotInfo, UnitOutputs, WorkerInfo,
};
use tokio::sync::{Notify, oneshot, watch};

use crate::clock::Clock;
use crate::core::lease_view::Leases;
use crate::core::operate::Changed;
use crate::core::ops::{CommittedAndLeased, ItemResults};
use crate::core::{Core, CoreConfig, CoreError, Refusal};
use crate::idle_thread;
use crate::journal::{Journal, JournalError};
use crate::procstat;
use crate::recovery;
use crate::snapshots::{SnapshotError, SnapshotKind, SnapshotStore};
use crate::sweep::{self, RemoteStore, Swept};
use crate::writeback::Pacing;

/// How the master is set up; see `taskmaster serve --help`.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub data_dir: PathBuf,
    /// Where attempts write outputs; `<data_dir>/store` by default.
    pub store_root: Option<PathBuf>,
    /// A remote store instead, `s3://bucket/prefix` (credentials, region
    /// and endpoint from the `AWS_*` variables); excludes `store_root`.
    pub store_url: Option<String>,
    pub lease_ms: u64,
    /// Leases out at once over all pipelines, at most (0: no limit).
    pub max_in_flight: u32,
    /// Finished pipelines are deleted this long after they finish (None:
    /// kept until an operator deletes them).
    pub retain_finished: Option<Duration>,
    /// Start a new store even though the data dir (or its local store)
    /// holds data but no journal: `taskmaster serve --init`. Without it
    /// such a data dir is refused, since a master started there would be a
    /// new one, with a new token, over another master's outputs.
    pub init: bool,
}

impl MasterConfig {
    /// The defaults of `taskmaster serve` for a data dir: a local store
    /// inside it, 30 s leases, no in-flight limit.
    pub fn new(data_dir: PathBuf) -> MasterConfig {
        MasterConfig {
            data_dir,
            store_root: None,
            store_url: None,
            lease_ms: 30_000,
            max_in_flight: 0,
            retain_finished: None,
            init: false,
        }
    }
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
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

pub struct Master {
    /// The one owner of the state, and the journal its changes go to (both
    /// replaced together when the master rebuilds after a full disk).
    state: Mutex<State>,
    data_dir: PathBuf,
    journal_path: PathBuf,
    snapshots: SnapshotStore,
    /// Journal position of the newest snapshot (0: none yet), and its
    /// size: the compactor compares the journal's growth with it.
    snapshot_position: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// Bytes the journal grew by while the last snapshot was written.
    snapshot_growth_bytes: AtomicU64,
    /// One snapshot or rollback at a time.
    snapshotting: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    /// Woken whenever units may have become ready, for long-polling leases.
    work_ready: Notify,
    /// Set when the master begins to shut down, to end long-polls.
    closing: watch::Sender<bool>,
    /// Set when the journal fails for good (not a full disk): the process
    /// must stop.
    fatal: watch::Sender<Option<Arc<str>>>,
    /// The remote store the sweep cleans, when outputs go to one.
    remote: Option<RemoteStore>,
    retain_finished: Option<Duration>,
    /// Held for the process's life: one master per data dir.
    _lock: File,
}

struct State {
    core: Core,
    journal: Arc<Journal>,
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
        if !config.init
            && let Some(found) = data_without_a_journal(config)
        {
            return Err(dir_error(format!(
                "it holds no journal.log but {found}: a master started here would be a new \
                 one, with a new server token, beside another master's data. If the journal \
                 was lost, restore the data dir from a backup; to start a new store here \
                 anyway, pass --init"
            )));
        }
        let (store_root, remote) = open_store(config).map_err(dir_error)?;
        let core_config = CoreConfig {
            store_root,
            store_url: remote
                .as_ref()
                .map_or_else(String::new, |r| r.url().to_string()),
            lease_ms: config.lease_ms,
            max_in_flight: config.max_in_flight,
        };
        let snapshots = SnapshotStore::open(data_dir)?;
        let recovered =
            recovery::recover(data_dir, core_config, &snapshots, clock.now_ms(), unix_ms())?;
        let snapshot_bytes = snapshots.disk_usage()?.newest_bytes;
        let mut core = recovered.core;
        let journal = Arc::new(Journal::start(recovered.log, recovered.appended));
        start_incarnation(&mut core, &journal, clock.now_ms())?;
        Ok(Master {
            state: Mutex::new(State { core, journal }),
            data_dir: data_dir.clone(),
            journal_path: data_dir.join("journal.log"),
            snapshots,
            snapshot_position: AtomicU64::new(recovered.snapshot_position),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            snapshot_growth_bytes: AtomicU64::new(0),
            snapshotting: tokio::sync::Mutex::new(()),
            clock,
            work_ready: Notify::new(),
            closing: watch::channel(false).0,
            fatal: watch::channel(None).0,
            remote,
            retain_finished: config.retain_finished,
            _lock: lock,
        })
    }

    pub fn lease_ms(&self) -> u64 {
        self.state.lock().core.config().lease_ms
    }

    /// How long finished pipelines are kept (None: until deleted).
    pub fn retain_finished(&self) -> Option<Duration> {
        self.retain_finished
    }

    pub fn server_token(&self) -> String {
        self.state.lock().core.server_token().to_string()
    }

    fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.state.lock().journal)
    }

    /// Runs `op` on the core, journals its records, waits until they are
    /// durable and returns its result.
    async fn mutate<T>(
        &self,
        op: impl FnOnce(&mut Core, u64) -> Result<(Vec<Record>, T), CoreError>,
    ) -> Result<T, MasterError> {
        let (out, seq, wakes, journal) = {
            let mut state = self.state.lock();
            // A failed journal means the state may be ahead of the disk:
            // change nothing until it is rebuilt.
            state.journal.check()?;
            let (records, out) = op(&mut state.core, self.clock.now_ms())?;
            let wakes = records
                .iter()
                .any(|r| !matches!(r.kind, Some(Kind::LeaseGranted(_) | Kind::LeasesGranted(_))));
            (
                out,
                state.journal.append(&records),
                wakes,
                Arc::clone(&state.journal),
            )
        };
        if wakes {
            self.work_ready.notify_waiters();
        }
        journal.wait_durable(seq).await?;
        Ok(out)
    }

    /// Reads the core, then waits until all it could have seen is durable.
    async fn read<T>(
        &self,
        view: impl FnOnce(&Core) -> Result<T, CoreError>,
    ) -> Result<T, MasterError> {
        let (out, seq, journal) = {
            let state = self.state.lock();
            state.journal.check()?;
            (
                view(&state.core)?,
                state.journal.appended(),
                Arc::clone(&state.journal),
            )
        };
        journal.wait_durable(seq).await?;
        Ok(out)
    }

    pub async fn submit(&self, spec: PipelineSpec) -> Result<String, MasterError> {
        let name = spec.name.clone();
        self.with_new_id(&name, |core, id, unix_ms, now| {
            core.submit(id, spec.clone(), unix_ms, now)
        })
        .await
    }

    /// Starts a new run of a finished pipeline; returns the new id.
    pub async fn rerun(&self, pipeline_id: &str) -> Result<String, MasterError> {
        let name = self.state.lock().core.status(pipeline_id)?.name;
        self.with_new_id(&name, |core, id, unix_ms, now| {
            core.rerun(pipeline_id, id, unix_ms, now)
        })
        .await
    }

    /// Runs `op` with a fresh pipeline id `<name>-<8 hex>`; a clash
    /// (vanishingly rare) picks again.
    async fn with_new_id(
        &self,
        name: &str,
        op: impl Fn(&mut Core, &str, u64, u64) -> Result<Vec<Record>, CoreError>,
    ) -> Result<String, MasterError> {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for _ in 0..8 {
            let id = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let result = self
                .mutate(|core, now| Ok((op(core, &id, unix_ms, now)?, ())))
                .await;
            match result {
                Err(MasterError::Core(CoreError::AlreadyExists(_))) => continue,
                other => return other.map(|()| id),
            }
        }
        Err(CoreError::AlreadyExists("could not pick a free pipeline id".into()).into())
    }

    pub async fn cancel(&self, pipeline_id: &str) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((core.cancel(pipeline_id, now)?, ())))
            .await
    }

    pub async fn block(&self, pipeline_id: &str, blocked: bool) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((core.block(pipeline_id, blocked, now)?, ())))
            .await
    }

    pub async fn retry(
        &self,
        pipeline_id: &str,
        group: Option<&str>,
        unit: Option<u32>,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.retry(pipeline_id, group, unit, now))
            .await
    }

    pub async fn clear(
        &self,
        pipeline_id: &str,
        group: &str,
        downstream: bool,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.clear(pipeline_id, group, downstream, now))
            .await
    }

    pub async fn change_config(
        &self,
        pipeline_id: &str,
        group: &str,
        change: GroupConfigChange,
    ) -> Result<(Changed, u64), MasterError> {
        self.mutate(|core, now| {
            let (records, changed, version) =
                core.change_config(pipeline_id, group, change, now)?;
            Ok((records, (changed, version)))
        })
        .await
    }

    pub async fn scale(
        &self,
        pipeline_id: &str,
        group: &str,
        split: u32,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.scale(pipeline_id, group, split, now))
            .await
    }

    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, MasterError> {
        let now = self.clock.now_ms();
        self.read(|core| Ok(core.workers(now))).await
    }

    /// A page of live workers and the next page's token.
    pub async fn workers_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<WorkerInfo>, String), MasterError> {
        let now = self.clock.now_ms();
        self.read(|core| Ok(core.workers_page(now, page_token, page_size)))
            .await
    }

    /// The master's own state, for `tmctl status` and operators.
    pub async fn master_status(&self) -> Result<MasterStatus, MasterError> {
        let journal = self.journal();
        let journal_syncs = journal.syncs();
        self.read(|core| {
            Ok(MasterStatus {
                server_token: core.server_token().to_string(),
                blocked: core.is_blocked(),
                max_in_flight: core.config().max_in_flight,
                leases_in_flight: core.leases_in_flight(),
                journal_syncs,
                ..MasterStatus::default()
            })
        })
        .await
        .and_then(|mut status| {
            status.journal_bytes = crate::journal::file::disk_bytes(&self.journal_path);
            status.journal_records = journal
                .appended()
                .saturating_sub(self.snapshot_position.load(Ordering::Relaxed));
            let snapshots = self.snapshots.disk_usage()?;
            status.snapshots = snapshots.count;
            status.snapshot_bytes = snapshots.total_bytes;
            status.newest_snapshot_bytes = snapshots.newest_bytes;
            // Read outside the core lock: these are file reads.
            status.rss_peak_bytes = procstat::rss_peak_bytes();
            status.rss_bytes = procstat::rss_bytes();
            status.cpu_seconds = procstat::cpu_seconds();
            Ok(status)
        })
    }

    /// Records the whole state at the current journal position, then drops
    /// the journal before it.
    pub async fn take_snapshot(&self, note: &str) -> Result<SnapshotInfo, MasterError> {
        self.snapshot(note, SnapshotKind::Kept).await
    }

    async fn snapshot(&self, note: &str, kind: SnapshotKind) -> Result<SnapshotInfo, MasterError> {
        let _one_at_a_time = self.snapshotting.lock().await;
        // Under the lock only a cheap copy (units are shared copy-on-write);
        // encoding and writing millions of units happens after it.
        let (source, position, journal) = {
            let state = self.state.lock();
            state.journal.check()?;
            let position = state.journal.appended();
            (
                state.core.snapshot_source(self.clock.now_ms()),
                position,
                Arc::clone(&state.journal),
            )
        };
        // The snapshot may only stand for records that are durable.
        journal.wait_durable(position).await?;
        let journal_bytes_before = self.journal_bytes();
        let store = self.snapshots.clone();
        let note = note.to_string();
        // The source comes back as soon as it is encoded, before the
        // (paced) write: while it lives, every chunk of units a commit
        // changes is copied first (copy-on-write), under the state lock.
        let (encoded_tx, encoded_rx) = oneshot::channel();
        // Encoded at idle priority: beside live traffic, see `idle_thread`.
        let head = source.head(position);
        let writing = idle_thread::run("snapshot", move || {
            let encode = move |head: &Snapshot| {
                let bytes = source.encode_with_head(head);
                let _ = encoded_tx.send(source);
                bytes
            };
            write_snapshot(&store, head, note, kind, Pacing::Background, encode)
        });
        if let Ok(source) = encoded_rx.await {
            // Not dropped at idle priority: freeing the units that commits
            // copied meanwhile takes the allocator's locks of the threads
            // that allocated them, and a preempted holder would stall them.
            tokio::task::spawn_blocking(move || drop(source));
        }
        let info = writing.await.map_err(|e| MasterError::DataDir {
            path: self.data_dir.display().to_string(),
            what: format!("the snapshot writer stopped: {e}"),
        })??;
        let growth = self.journal_bytes().saturating_sub(journal_bytes_before);
        self.snapshot_written(position, &info, growth);
        journal.compact(position);
        Ok(info)
    }

    /// Bytes of the journal's records (not the room its file keeps ahead).
    fn journal_bytes(&self) -> u64 {
        self.journal().bytes()
    }

    /// Records that the newest snapshot now stands for `position`, and
    /// that the journal grew by `growth_bytes` while it was written.
    fn snapshot_written(&self, position: u64, info: &SnapshotInfo, growth_bytes: u64) {
        self.snapshot_position.store(position, Ordering::Relaxed);
        self.snapshot_bytes
            .store(info.size_bytes, Ordering::Relaxed);
        self.snapshot_growth_bytes
            .store(growth_bytes, Ordering::Relaxed);
    }

    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, MasterError> {
        Ok(self.snapshots.list()?.0)
    }

    /// Restores a snapshot's state (see `Core::rolled_back`). The result is
    /// written as a new snapshot while the state is locked, so nothing
    /// changes until the rollback is durable; returns the leases invalidated.
    pub async fn rollback(&self, snapshot_id: &str) -> Result<u64, MasterError> {
        let _one_at_a_time = self.snapshotting.lock().await;
        let snap = self.snapshots.load(snapshot_id)?;
        let config = self.state.lock().core.config().clone();
        let restored = Core::from_snapshot(config, &snap, self.clock.now_ms(), unix_ms())?;
        let (position, invalidated, journal, info) = {
            let mut state = self.state.lock();
            state.journal.check()?;
            let now_ms = self.clock.now_ms();
            let (rolled_back, invalidated) = state.core.rolled_back(restored, now_ms);
            let position = state.journal.appended();
            // The new snapshot stands for every record up to `position`, so
            // they must be on disk first; the writer never takes this lock.
            state.journal.wait_durable_blocking(position)?;
            let source = rolled_back.snapshot_source(now_ms);
            let info = write_snapshot(
                &self.snapshots,
                source.head(position),
                format!("state after rollback to {snapshot_id}"),
                SnapshotKind::Kept,
                Pacing::AtOnce,
                |head| source.encode_with_head(head),
            )?;
            state.core = rolled_back;
            (position, invalidated, Arc::clone(&state.journal), info)
        };
        // Written under the state lock: the journal did not grow meanwhile.
        self.snapshot_written(position, &info, 0);
        journal.compact(position);
        self.work_ready.notify_waiters();
        Ok(invalidated)
    }

    /// Takes a snapshot once the journal since the last one reaches
    /// [`snapshot_trigger_bytes`] (and holds at least `min_records`). The
    /// compactor calls it with `AUTO_SNAPSHOT_MIN_*`. Returns the snapshot
    /// taken, if any.
    pub async fn snapshot_if_grown(
        &self,
        min_records: u64,
        min_bytes: u64,
    ) -> Result<Option<SnapshotInfo>, MasterError> {
        let since = self
            .journal()
            .appended()
            .saturating_sub(self.snapshot_position.load(Ordering::Relaxed));
        if since < min_records {
            return Ok(None);
        }
        let trigger = snapshot_trigger_bytes(
            self.snapshot_bytes.load(Ordering::Relaxed),
            self.snapshot_growth_bytes.load(Ordering::Relaxed),
            min_bytes,
        );
        if self.journal_bytes() < trigger {
            return Ok(None);
        }
        let info = self.snapshot("automatic", SnapshotKind::Automatic).await?;
        tracing::info!(snapshot_id = info.snapshot_id, "automatic snapshot");
        Ok(Some(info))
    }

    /// Grants up to `max_units` leases, waiting up to `wait` for work;
    /// in the compact form with `compact`.
    pub async fn lease(
        &self,
        worker_id: &str,
        max_units: usize,
        compact: bool,
        wait: Duration,
    ) -> Result<Leases, MasterError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut closing = self.closing.subscribe();
        loop {
            // Registered before looking, so a wake-up in between is not lost.
            let notified = self.work_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leases = self
                .mutate(|core, now| core.lease(worker_id, max_units, compact, now))
                .await?;
            if !leases.is_empty() || wait.is_zero() {
                return Ok(leases);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(Leases::default()),
                _ = closing.wait_for(|c| *c) => return Err(MasterError::ShuttingDown),
            }
        }
    }

    pub async fn renew(&self, token: &str, refs: &[LeaseRef]) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| Ok((Vec::new(), core.renew(token, refs, now)?)))
            .await
    }

    /// Commits `items` and, with `next`, leases more units in the same
    /// journal append (see [`Core::commit_and_lease`]).
    pub async fn commit(
        &self,
        token: &str,
        items: &[CommitItem],
        next: Option<&LeaseNext>,
    ) -> Result<CommittedAndLeased, MasterError> {
        self.mutate(|core, now| core.commit_and_lease(token, items, next, now))
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

    /// A page of a held lease's inputs (see `Core::list_inputs`).
    pub async fn list_inputs(
        &self,
        token: &str,
        lease_ref: &LeaseRef,
        cursor: u64,
        limit: u32,
    ) -> Result<Result<ListInputsResponse, Refusal>, MasterError> {
        let now_ms = self.clock.now_ms();
        self.read(|core| core.list_inputs(token, lease_ref, cursor, limit, now_ms))
            .await
    }

    pub async fn status(&self, pipeline_id: &str) -> Result<PipelineStatus, MasterError> {
        self.read(|core| core.status(pipeline_id)).await
    }

    /// Every pipeline (unpaged: for tests and the embedded demo; clients
    /// get pages through [`Master::list_page`]).
    pub async fn list(&self) -> Result<Vec<PipelineStatus>, MasterError> {
        self.read(|core| Ok(core.list())).await
    }

    /// A page of pipelines and the next page's token (see `core::pages`).
    pub async fn list_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<PipelineStatus>, String), MasterError> {
        self.read(|core| core.list_page(page_token, page_size))
            .await
    }

    /// A group's committed outputs (unpaged: for tests and the embedded
    /// demo; clients get pages through [`Master::outputs_page`]).
    pub async fn outputs(
        &self,
        pipeline_id: &str,
        group: &str,
    ) -> Result<Vec<UnitOutputs>, MasterError> {
        self.read(|core| core.outputs(pipeline_id, group)).await
    }

    /// A page of a group's committed outputs and the next page's token.
    pub async fn outputs_page(
        &self,
        pipeline_id: &str,
        group: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<UnitOutputs>, String), MasterError> {
        self.read(|core| core.outputs_page(pipeline_id, group, page_token, page_size))
            .await
    }

    /// Expires every lease that ran out; returns how many.
    pub async fn reap(&self) -> Result<usize, MasterError> {
        let (expired, promoted) = self
            .mutate(|core, now| {
                let records = core.expire(now);
                let expired = records.len();
                Ok((records, (expired, core.promote_due(now))))
            })
            .await?;
        if promoted > 0 {
            self.work_ready.notify_waiters(); // retry delays ran out
        }
        Ok(expired)
    }

    /// Expires leases as they run out, until shutdown. Ticks at a tenth of
    /// the lease time (10 ms to 1 s), so expiry is late by at most that.
    pub async fn run_reaper(self: Arc<Self>) {
        let lease_ms = self.lease_ms();
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
                // A failed journal is the supervisor's business; expiry
                // resumes once the state is rebuilt.
                Err(MasterError::Journal(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "lease reaper stopped");
                    return;
                }
            }
        }
    }

    /// Takes automatic snapshots (compacting the journal) as the journal
    /// grows, until shutdown. Checks often: between two checks the journal
    /// grows past its bound by up to what one check period writes (18 MB/s
    /// at 200,000 units/s), and each check is a few atomic reads.
    pub async fn run_compactor(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(SNAPSHOT_CHECK_EVERY) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            let taken = self
                .snapshot_if_grown(AUTO_SNAPSHOT_MIN_RECORDS, AUTO_SNAPSHOT_MIN_BYTES)
                .await;
            if let Err(e) = taken {
                // Encoding a large state costs seconds of CPU: do not retry
                // a failure at once and keep failing in a loop.
                tracing::warn!(error = %e, "automatic snapshot failed; retrying in a minute");
                tokio::select! {
                    () = tokio::time::sleep(SNAPSHOT_RETRY_AFTER) => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
        }
    }

    /// Resolves once the master begins to shut down (at once if it has).
    pub async fn shutting_down(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }

    /// Ends long-polls and the reaper; in-flight changes still complete.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the journal has failed for good: the node must stop.
    pub async fn fatal(&self) -> Arc<str> {
        let mut rx = self.fatal.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_else(|| "unknown".into()),
            Err(_) => "the master stopped".into(),
        }
    }

    /// The fatal journal failure, if there was one.
    pub fn fatal_error(&self) -> Option<Arc<str>> {
        self.fatal.borrow().clone()
    }

    /// Watches the journal until shutdown. A full disk is survived: once a
    /// probe write shows space again, the state is rebuilt from what is on
    /// disk (so nothing unacknowledged survives) and a new journal starts.
    /// Any other failure is fatal.
    pub async fn run_journal_supervisor(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        loop {
            let journal = self.journal();
            let failure = tokio::select! {
                failure = journal.failed() => failure,
                _ = closing.wait_for(|c| *c) => return,
            };
            if !matches!(failure, JournalError::DiskFull(_)) {
                self.fatal.send_replace(Some(failure.to_string().into()));
                return;
            }
            tracing::error!(error = %failure, "journal disk full: refusing changes until space returns");
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DISK_FULL_PROBE_INTERVAL) => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
                if !space_available(&self.data_dir) {
                    continue;
                }
                match self.rebuild() {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "rebuilding after a full disk failed; will retry")
                    }
                }
            }
            tracing::info!(
                "journal disk has space again; state rebuilt from disk, accepting changes"
            );
            self.work_ready.notify_waiters();
        }
    }

    /// Replaces the state with what the data dir holds, and the journal
    /// with a fresh writer over it.
    fn rebuild(&self) -> Result<(), MasterError> {
        let mut state = self.state.lock();
        state.journal.close();
        let config = state.core.config().clone();
        let recovered = recovery::recover(
            &self.data_dir,
            config,
            &self.snapshots,
            self.clock.now_ms(),
            unix_ms(),
        )?;
        state.core = recovered.core;
        state.journal = Arc::new(Journal::start(recovered.log, recovered.appended));
        self.snapshot_position
            .store(recovered.snapshot_position, Ordering::Relaxed);
        self.snapshot_bytes
            .store(self.snapshots.disk_usage()?.newest_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the outputs of attempts that can no longer commit.
    pub async fn sweep(self: &Arc<Self>) -> Swept {
        self.sweep_pipelines(|_| true).await
    }

    /// [`Master::sweep`] under the pipelines `chosen` accepts only.
    async fn sweep_pipelines(self: &Arc<Self>, chosen: impl Fn(&str) -> bool) -> Swept {
        let known = self.state.lock().core.group_names(chosen);
        if let Some(remote) = &self.remote {
            return self.sweep_remote(remote, &known).await;
        }
        let master = Arc::clone(self);
        let swept = tokio::task::spawn_blocking(move || {
            let root = PathBuf::from(master.state.lock().core.config().store_root.clone());
            let found = sweep::find_attempts(&root, &known);
            let (dead, kept) = sweep::dead_attempts(&master.state.lock().core, found);
            Swept {
                attempts_deleted: sweep::delete_attempts(&root, &dead),
                attempts_kept: kept,
            }
        })
        .await;
        swept.unwrap_or_default()
    }

    /// [`Master::sweep`] for a remote store: list, decide under the lock,
    /// delete. A listing error is logged and the sweep tried again later.
    async fn sweep_remote(&self, remote: &RemoteStore, known: &sweep::Known) -> Swept {
        let found = remote.find_attempts(known).await;
        let mut found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(store = remote.url(), error = %e, "sweep could not list the store");
                return Swept::default();
            }
        };
        let attempts = found.keys().cloned().collect();
        let (dead, kept) = sweep::dead_attempts(&self.state.lock().core, attempts);
        Swept {
            attempts_deleted: remote.delete_attempts(&dead, &mut found).await,
            attempts_kept: kept,
        }
    }

    /// Deletes finished pipelines (all or none): first the outputs of their
    /// attempts that never committed (the sweep would never look there
    /// again), then the master forgets them. Returns what was swept.
    pub async fn delete_pipelines(
        self: &Arc<Self>,
        ids: Vec<String>,
    ) -> Result<Swept, MasterError> {
        self.read(|core| core.check_deletable(&ids)).await?;
        let chosen: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let swept = self.sweep_pipelines(|p| chosen.contains(p)).await;
        self.mutate(|core, now| Ok((core.delete_pipelines(&ids, now)?, ())))
            .await?;
        Ok(swept)
    }

    /// Records when pipelines finish (journaled, so `tmctl status` shows it
    /// and the retention survives restarts), and with `retain` deletes each
    /// that long after; until shutdown. Ticks every second, so a finish
    /// time is late by about that.
    pub async fn run_finished_pipelines(self: Arc<Self>, retain: Option<Duration>) {
        let mut closing = self.closing.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(FINISH_CHECK_EVERY) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            let recorded = self
                .mutate(|core, now| {
                    let unrecorded = core.finished_unrecorded();
                    if unrecorded.is_empty() {
                        return Ok((Vec::new(), ()));
                    }
                    Ok((core.record_finished(&unrecorded, unix_ms(), now)?, ()))
                })
                .await;
            if let Err(e) = recorded {
                // A failed journal is the supervisor's business.
                tracing::debug!(error = %e, "could not record finished pipelines");
                continue;
            }
            let Some(retain) = retain else { continue };
            let cutoff = unix_ms().saturating_sub(retain.as_millis() as u64);
            let due = self.state.lock().core.finished_before(cutoff);
            if due.is_empty() {
                continue;
            }
            match self.delete_pipelines(due.clone()).await {
                Ok(swept) => tracing::info!(
                    deleted = due.len(),
                    swept = swept.attempts_deleted,
                    "deleted pipelines finished longer than the retention"
                ),
                // One may have been retried meanwhile; the next pass
                // looks again.
                Err(e) => tracing::warn!(error = %e, "retention could not delete pipelines"),
            }
        }
    }

    /// Sweeps every `interval` until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration) {
        let mut rounds = sweep::Rounds::new(FULL_SWEEP_EVERY_ROUNDS);
        let mut closing = self.closing.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            // Finished (and recorded) before the previous round began:
            // walked by it. A retried pipeline has no finish time until it
            // finishes again, so it is walked while it runs and after.
            let skip: HashSet<String> = match rounds.begin(unix_ms()) {
                Some(walked_before) => {
                    let core = &self.state.lock().core;
                    core.finished_before(walked_before.saturating_sub(1))
                        .into_iter()
                        .collect()
                }
                None => HashSet::new(),
            };
            let swept = self.sweep_pipelines(|p| !skip.contains(p)).await;
            if swept.attempts_deleted > 0 {
                tracing::info!(
                    deleted = swept.attempts_deleted,
                    "swept outputs of attempts that can no longer commit"
                );
            }
        }
    }

    /// Syncs the journal issued so far.
    pub fn journal_syncs(&self) -> u64 {
        self.journal().syncs()
    }

    /// Flushes and stops the journal writer.
    pub fn close(&self) {
        self.begin_shutdown();
        self.journal().close();
    }
}

/// How often a master with a full journal disk checks for space.
const DISK_FULL_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Whether a 1 MiB file can be written and synced in the data dir: room for
/// the journal to make progress again.
fn space_available(data_dir: &Path) -> bool {
    let probe = data_dir.join("space-probe.tmp");
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        use std::io::Write;
        file.write_all(&vec![0u8; 1 << 20])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

/// The store's local root (empty for a remote store) and the remote store,
/// if `config` names one. A local root is created and made canonical.
fn open_store(config: &MasterConfig) -> Result<(String, Option<RemoteStore>), String> {
    if let Some(url) = &config.store_url {
        if config.store_root.is_some() {
            return Err("set a store directory or a store URL, not both".into());
        }
        let remote = RemoteStore::open(url).map_err(|e| format!("cannot open the store: {e}"))?;
        return Ok((String::new(), Some(remote)));
    }
    let root = match &config.store_root {
        Some(root) => root.clone(),
        None => config.data_dir.join("store"),
    };
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create the store: {e}"))?;
    let root = root.canonicalize().map_err(|e| format!("store: {e}"))?;
    Ok((root.display().to_string(), None))
}

/// The journal is not compacted before it holds this many records and
/// bytes since the last snapshot (small states are not worth a snapshot).
pub const AUTO_SNAPSHOT_MIN_RECORDS: u64 = 10_000;
/// The bytes' floor: at 4 MiB the short one-unit benches took snapshots,
/// and their commit p99 went from 2.1 to 2.5 ms to 2.7 to 2.8 ms.
pub const AUTO_SNAPSHOT_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// The journal length (bytes since the last snapshot) at which the next
/// automatic snapshot starts, given the last snapshot's size (about the
/// live state's) and how much the journal grew while it was written.
///
/// Three quarters of the state: writing the state is then paid for by a
/// comparable number of journal bytes. But while a snapshot is written
/// the disk holds the old one, the new one and the journal, which goes on
/// growing (and the compaction then copies that growth once more): for
/// the whole to stay within 3x the state, the trigger plus 1.5x the
/// growth must stay within one state (at 300,000 units/s a 1 M-unit
/// state of 26 MB grows the journal by 10 to 15 MB while it is written,
/// and a trigger at three quarters peaked at 3.1x). Never below a quarter
/// of the state (a snapshot per quarter-state of journal at most) nor
/// `min_bytes` (small states are not worth frequent snapshots).
pub fn snapshot_trigger_bytes(state_bytes: u64, last_growth_bytes: u64, min_bytes: u64) -> u64 {
    let three_quarters = state_bytes / 4 * 3;
    let room = state_bytes.saturating_sub(last_growth_bytes.saturating_mul(3) / 2);
    three_quarters.min(room).max(state_bytes / 4).max(min_bytes)
}

/// How often finished pipelines are looked for (their finish time is late
/// by up to this) and the retention applied.
const FINISH_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Every this many sweeps, pipelines finished and already walked are
/// walked again, for what zombie attempts wrote late (an hour at most with
/// the sweep's 60 s ceiling); the other sweeps skip them.
const FULL_SWEEP_EVERY_ROUNDS: u64 = 60;
/// How often the compactor looks at the journal's size.
const SNAPSHOT_CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long the compactor waits after a failed automatic snapshot.
const SNAPSHOT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Writes a snapshot of `head` (which names its journal position) and the
/// units `encode` adds to it (`SnapshotSource::encode_with_head`).
fn write_snapshot(
    store: &SnapshotStore,
    head: Snapshot,
    note: String,
    kind: SnapshotKind,
    pacing: Pacing,
    encode: impl FnOnce(&Snapshot) -> Vec<u8>,
) -> Result<SnapshotInfo, SnapshotError> {
    let head = Snapshot {
        note,
        taken_unix_ms: unix_ms(),
        ..head
    };
    // The encoding's CPU, not its wall time: at idle priority the thread
    // waits for whatever else runs.
    let mut encode_cpu_ms = 0;
    let info = store.write_with(head, kind, pacing, |head| {
        let began = procstat::thread_cpu();
        let bytes = encode(head);
        encode_cpu_ms = procstat::thread_cpu().saturating_sub(began).as_millis();
        bytes
    })?;
    tracing::debug!(
        snapshot_id = info.snapshot_id,
        bytes = info.size_bytes,
        encode_cpu_ms,
        "snapshot written"
    );
    Ok(info)
}

/// Journals this start's incarnation and waits until it is durable, before
/// the master serves: no lease of this start may go out without it (see
/// `core::incarnation`).
fn start_incarnation(core: &mut Core, journal: &Journal, now_ms: u64) -> Result<(), MasterError> {
    // Random, so a master started on a copy of this data dir picks another;
    // never 0, which stands for leases granted before incarnations.
    let incarnation = loop {
        let drawn: u64 = rand::random();
        if drawn != 0 {
            break drawn;
        }
    };
    let started = core.start(incarnation, unix_ms(), now_ms)?;
    journal.wait_durable_blocking(journal.append(&[started]))?;
    tracing::info!(incarnation = %format!("{incarnation:016x}"), "started a new incarnation");
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes an exclusive lock on `<data_dir>/LOCK` so two masters never share a store.
/// What a data dir without a journal holds that a brand-new one would not
/// (None: nothing, or it has a journal and recovery decides). Only the
/// default store, inside the data dir, is looked into: a store named with
/// `--store` may be shared with other data, and a remote one is not listed
/// at start.
fn data_without_a_journal(config: &MasterConfig) -> Option<String> {
    let data_dir = &config.data_dir;
    if data_dir.join("journal.log").exists() {
        return None;
    }
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    if config.store_root.is_none() && config.store_url.is_none() {
        let store = data_dir.join("store");
        let held = names(&store);
        if let Some(first) = held.first() {
            return Some(format!(
                "its store {} holds {} entries (e.g. {first:?})",
                store.display(),
                held.len()
            ));
        }
    }
    let own = ["LOCK", "store", "snapshots"];
    let other: Vec<String> = names(data_dir)
        .into_iter()
        .filter(|n| !own.contains(&n.as_str()))
        .collect();
    other
        .first()
        .map(|first| format!("it holds {} other entries (e.g. {first:?})", other.len()))
}

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

#[cfg(test)]
mod tests {
    use super::snapshot_trigger_bytes;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_snapshot_written_quickly_triggers_at_three_quarters_of_the_state() {
        assert_eq!(snapshot_trigger_bytes(100 * MIB, 0, 4 * MIB), 75 * MIB);
        assert_eq!(
            snapshot_trigger_bytes(100 * MIB, 10 * MIB, 4 * MIB),
            75 * MIB
        );
    }

    #[test]
    fn growth_during_the_last_snapshot_brings_the_next_one_forward() {
        // 100 - 1.5 * 30 = 55: trigger plus 1.5x growth stays within the state.
        assert_eq!(
            snapshot_trigger_bytes(100 * MIB, 30 * MIB, 4 * MIB),
            55 * MIB
        );
    }

    #[test]
    fn the_trigger_never_drops_below_a_quarter_of_the_state_or_the_floor() {
        assert_eq!(
            snapshot_trigger_bytes(100 * MIB, 90 * MIB, 4 * MIB),
            25 * MIB
        );
        assert_eq!(
            snapshot_trigger_bytes(100 * MIB, u64::MAX, 4 * MIB),
            25 * MIB
        );
        assert_eq!(snapshot_trigger_bytes(MIB, 0, 4 * MIB), 4 * MIB);
        assert_eq!(snapshot_trigger_bytes(0, 0, 1), 1);
    }
}
