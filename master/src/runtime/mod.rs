//! The runtime around the pure core: owns it behind one lock, journals the
//! records each operation yields, and answers only once they are durable.
//! Reads also wait until everything they could have seen is durable, so no
//! client ever observes a change that a crash could undo.
//!
//! The lock is held for short steps only, on any thread: file I/O, replay,
//! snapshot encoding, waits for the journal and freeing a replaced state
//! happen outside it, on blocking threads where they block, and their
//! results are swapped in under a short lock. A rollback and the rebuild
//! after a full disk install a state computed from the current one, so
//! they first hold changes back ([`Master::hold_changes`]): calls that
//! change the state wait until the new state is in, reads go on.
//!
//! - this module: [`Master`], opening it, the mutate and read paths, the
//!   hold on changes, shutdown
//! - [`calls`]: the calls of clients, operators and workers
//! - [`snapshot`]: snapshots, the compactor's trigger, rollback
//! - [`loops`]: the background loops (reaper, compactor, sweeper, the
//!   recorder and retention of finished pipelines, journal supervisor)
//! - [`rebuild`]: the rebuild after a full disk
//! - [`sweeping`]: the sweep of dead attempts, deleting finished pipelines
//! - [`data_dir`]: the data dir's lock, the check that it is not another
//!   store's, and the store it names

mod access;
pub mod actor;
mod calls;
mod data_dir;
mod health;
mod loops;
mod notify;
mod publishing;
mod rebuild;
mod scheduling;
mod snapshot;
mod sweeping;
mod task_logs;
mod views;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use taskmaster_proto::journal::{Record, record::Kind};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::core::{Core, CoreConfig, CoreError};
use crate::journal::file::FileBackend;
use crate::journal::{AnyBackend, Journal, any_backend};
use crate::recovery;
use crate::snapshots::SnapshotStore;
use crate::sweep::RemoteStore;

/// Every call of the [`Master`] fails with it (defined in `crate::error`).
pub use crate::error::MasterError;
pub use snapshot::{
    AUTO_SNAPSHOT_MIN_BYTES, AUTO_SNAPSHOT_MIN_RECORDS, AutoSnapshot, snapshot_trigger_bytes,
};

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
    /// When the journal is compacted by an automatic snapshot.
    pub auto_snapshot: AutoSnapshot,
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
            auto_snapshot: AutoSnapshot::default(),
            init: false,
        }
    }
}

pub struct Master {
    /// The one owner of the state, and the journal its changes go to (both
    /// replaced together when the master rebuilds after a full disk).
    state: Mutex<State>,
    /// Notified when a hold on changes ends ([`Master::hold_changes`]).
    changes_resumed: Notify,
    data_dir: PathBuf,
    /// Where the journal lives, chosen at start: recovery, the rebuild
    /// after a full disk and the status go through it.
    journal_backend: Arc<AnyBackend>,
    snapshots: SnapshotStore,
    /// Journal position of the newest snapshot (0: none yet), and its
    /// size: the compactor compares the journal's growth with it.
    snapshot_position: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// Bytes the journal grew by while the last snapshot was written.
    snapshot_growth_bytes: AtomicU64,
    /// One snapshot, rollback or rebuild at a time. Shared, so that the
    /// blocking thread a rollback or rebuild runs on holds it to its end.
    snapshotting: Arc<tokio::sync::Mutex<()>>,
    /// Every time the master reads, and every timer it waits on.
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
    auto_snapshot: AutoSnapshot,
    /// Each worker's open `Work` streams, to notice when one goes away.
    streams: crate::open_streams::OpenStreams,
    /// Held for the process's life: one master per data dir.
    _lock: File,
}

struct State {
    core: Core,
    journal: Arc<Journal>,
    /// Set while changes are held back, and why.
    held: Option<Hold>,
}

/// Why changes are held back (see [`Master::hold_changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    RollingBack,
    Rebuilding,
}

/// Changes held back until this is dropped (see [`Master::hold_changes`]).
struct ChangesHeld<'a> {
    master: &'a Master,
}

impl Drop for ChangesHeld<'_> {
    fn drop(&mut self) {
        self.master.state.lock().held = None;
        self.master.changes_resumed.notify_waiters();
    }
}

impl Master {
    /// Opens (or creates) the data dir and recovers the state it holds.
    /// Reads and writes files: call it where blocking is allowed.
    pub fn open(config: &MasterConfig, clock: Arc<dyn Clock>) -> Result<Master, MasterError> {
        let data_dir = &config.data_dir;
        let dir_error = |what: String| MasterError::DataDir {
            path: data_dir.display().to_string(),
            what,
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|e| dir_error(format!("cannot create it: {e}")))?;
        let lock = data_dir::lock(data_dir).map_err(dir_error)?;
        // The journal's backend: the one place that names it.
        let journal_backend = any_backend(FileBackend::in_data_dir(data_dir));
        if !config.init
            && !journal_backend.exists()?
            && let Some(found) = data_dir::data_without_a_journal(config)
        {
            return Err(dir_error(format!(
                "it holds no {} but {found}: a master started here would be a new \
                 one, with a new server token, beside another master's data. If the journal \
                 was lost, restore the data dir from a backup; to start a new store here \
                 anyway, pass --init",
                journal_backend.name()
            )));
        }
        let (store_root, remote) = data_dir::open_store(config).map_err(dir_error)?;
        let core_config = CoreConfig {
            store_root,
            store_url: remote
                .as_ref()
                .map_or_else(String::new, |r| r.url().to_string()),
            lease_ms: config.lease_ms,
            max_in_flight: config.max_in_flight,
            admission: Default::default(),
        };
        let snapshots = SnapshotStore::open(data_dir)?;
        let recovered = recovery::recover(
            &*journal_backend,
            data_dir,
            core_config,
            &snapshots,
            clock.now_ms(),
            clock.unix_ms(),
        )?;
        let snapshot_bytes = snapshots.disk_usage()?.newest_bytes;
        let mut core = recovered.core;
        let journal = Arc::new(Journal::start(recovered.log));
        start_incarnation(&mut core, &journal, clock.as_ref())?;
        Ok(Master {
            state: Mutex::new(State {
                core,
                journal,
                held: None,
            }),
            changes_resumed: Notify::new(),
            data_dir: data_dir.clone(),
            journal_backend,
            snapshots,
            snapshot_position: AtomicU64::new(recovered.snapshot_position),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            snapshot_growth_bytes: AtomicU64::new(0),
            snapshotting: Arc::new(tokio::sync::Mutex::new(())),
            clock,
            work_ready: Notify::new(),
            closing: watch::channel(false).0,
            fatal: watch::channel(None).0,
            remote,
            retain_finished: config.retain_finished,
            auto_snapshot: config.auto_snapshot,
            streams: Default::default(),
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
    /// durable and returns its result. Waits first while changes are held
    /// back.
    async fn mutate<T>(
        &self,
        op: impl FnOnce(&mut Core, u64) -> Result<(Vec<Record>, T), CoreError>,
    ) -> Result<T, MasterError> {
        let (out, seq, wakes, journal) = {
            let mut state = self.lock_for_change().await;
            // A failed journal means the state may be ahead of the disk:
            // change nothing until it is rebuilt.
            state.journal.check()?;
            let now_ms = self.clock.now_ms();
            let (mut records, out) = op(&mut state.core, now_ms)?;
            // An operator's change is journaled with its author (issue 24).
            access::audit_in_scope(&mut state.core, &mut records, now_ms, &*self.clock);
            // Parked lease calls are woken only when a change left units
            // ready: a commit whose next unit went out in the same call
            // (`lease_next`) wakes none, so a client holding thousands of
            // long-polls does not cost every commit thousands of wake-ups
            // (issue 24, t42_abuse).
            let wakes = state.core.has_ready()
                && records.iter().any(|r| {
                    !matches!(r.kind, Some(Kind::LeaseGranted(_) | Kind::LeasesGranted(_)))
                });
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
    /// Not held back by a hold on changes: it sees the state before.
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

    /// The state, locked, once no hold on changes is in force.
    async fn lock_for_change(&self) -> MutexGuard<'_, State> {
        loop {
            let mut resumed = {
                let state = self.state.lock();
                if state.held.is_none() {
                    return state;
                }
                // Registered under the lock the hold ends under: the end
                // of this hold cannot be missed.
                let mut resumed = Box::pin(self.changes_resumed.notified());
                resumed.as_mut().enable();
                resumed
            };
            resumed.as_mut().await;
        }
    }

    /// Holds every change back until the result is dropped: from then on
    /// no record is appended, so the journal stays at its position and the
    /// core as it is until the holder installs the state it computed from
    /// them. Reads go on. Only under `snapshotting`, so holds never nest.
    fn hold_changes(&self, why: Hold) -> ChangesHeld<'_> {
        let mut state = self.state.lock();
        assert!(
            state.held.is_none(),
            "changes held for {:?} while held for {why:?}",
            state.held
        );
        state.held = Some(why);
        ChangesHeld { master: self }
    }

    /// Syncs the journal issued so far.
    pub fn journal_syncs(&self) -> u64 {
        self.journal().syncs()
    }

    /// Resolves once the master begins to shut down (at once if it has).
    pub async fn shutting_down(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }

    /// Ends long-polls and the background loops; in-flight changes still
    /// complete.
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

    /// Flushes and stops the journal writer.
    pub fn close(&self) {
        self.begin_shutdown();
        self.journal().close();
    }
}

/// Runs `job` on a blocking thread (file I/O, replay, waits for the
/// journal) and returns its result. Once started it runs to its end even
/// if the caller goes away. A panic there is a panic here.
async fn on_blocking_thread<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MasterError> {
    match tokio::task::spawn_blocking(job).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(MasterError::ShuttingDown),
    }
}

/// Journals this start's incarnation and waits until it is durable, before
/// the master serves: no lease of this start may go out without it (see
/// `core::incarnation`).
fn start_incarnation(
    core: &mut Core,
    journal: &Journal,
    clock: &dyn Clock,
) -> Result<(), MasterError> {
    // Random, so a master started on a copy of this data dir picks another;
    // never 0, which stands for leases granted before incarnations.
    let incarnation = loop {
        let drawn: u64 = rand::random();
        if drawn != 0 {
            break drawn;
        }
    };
    let started = core.start(incarnation, clock.unix_ms(), clock.now_ms())?;
    journal.wait_durable_blocking(journal.append(&[started]))?;
    tracing::info!(incarnation = %format!("{incarnation:016x}"), "started a new incarnation");
    Ok(())
}

#[cfg(test)]
mod tests {
    use taskmaster_proto::v1::{GroupSpec, PipelineSpec};

    use super::*;
    use crate::clock::ManualClock;

    fn spec() -> PipelineSpec {
        PipelineSpec {
            name: "p".into(),
            groups: vec![GroupSpec {
                name: "g".into(),
                task: "exec".into(),
                command: vec!["true".into()],
                inputs: vec!["/in/a".into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn changes_wait_while_held_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = MasterConfig::new(dir.path().join("data"));
        let master = Master::open(&config, Arc::new(ManualClock::default())).unwrap();
        let held = master.hold_changes(Hold::RollingBack);
        let mut submit = Box::pin(master.submit(spec()));
        assert!(futures_util::poll!(&mut submit).is_pending());
        assert!(
            master.list().await.unwrap().is_empty(),
            "the change waits, not applied; the read answers"
        );
        drop(held);
        let id = submit.await.unwrap();
        assert_eq!(master.list().await.unwrap()[0].pipeline_id, id);
        master.close();
    }
}
