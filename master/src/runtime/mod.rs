//! The runtime around the pure core: owns it behind one lock, journals the
//! records each operation yields, and answers only once they are durable.
//! Reads also wait until everything they could have seen is durable, so no
//! client ever observes a change that a crash could undo.
//!
//! - this module: [`Master`], opening it, the mutate and read paths,
//!   shutdown
//! - [`calls`]: the calls of clients, operators and workers
//! - [`snapshot`]: snapshots, the compactor's trigger, rollback
//! - [`loops`]: the background loops (reaper, compactor, sweeper, the
//!   recorder and retention of finished pipelines, journal supervisor)
//! - [`rebuild`]: the rebuild after a full disk
//! - [`sweeping`]: the sweep of dead attempts, deleting finished pipelines
//! - [`data_dir`]: the data dir's lock, the check that it is not another
//!   store's, and the store it names

mod calls;
mod data_dir;
mod loops;
mod rebuild;
mod snapshot;
mod sweeping;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use taskmaster_proto::journal::{Record, record::Kind};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::core::{Core, CoreConfig, CoreError};
use crate::journal::Journal;
use crate::recovery;
use crate::snapshots::SnapshotStore;
use crate::sweep::RemoteStore;

/// Every call of the [`Master`] fails with it (defined in `crate::error`).
pub use crate::error::MasterError;
pub use snapshot::{AUTO_SNAPSHOT_MIN_BYTES, AUTO_SNAPSHOT_MIN_RECORDS, snapshot_trigger_bytes};

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
        let lock = data_dir::lock(data_dir).map_err(dir_error)?;
        if !config.init
            && let Some(found) = data_dir::data_without_a_journal(config)
        {
            return Err(dir_error(format!(
                "it holds no journal.log but {found}: a master started here would be a new \
                 one, with a new server token, beside another master's data. If the journal \
                 was lost, restore the data dir from a backup; to start a new store here \
                 anyway, pass --init"
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

    /// Syncs the journal issued so far.
    pub fn journal_syncs(&self) -> u64 {
        self.journal().syncs()
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

    /// Flushes and stops the journal writer.
    pub fn close(&self) {
        self.begin_shutdown();
        self.journal().close();
    }
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
