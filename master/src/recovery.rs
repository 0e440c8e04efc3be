//! Recovery: the newest readable snapshot, then the journal records after
//! its position. A new data dir gets a journal holding just its identity.
//! The journal is reached through its backend's traits (`journal::LogBackend`,
//! `journal::LogStore`), whichever backend the master chose.

use std::path::Path;

use crate::core::{Core, CoreConfig, CoreError};
use crate::error::MasterError;
use crate::journal::{LogBackend, LogStore, Opened};
use crate::snapshots::SnapshotStore;

/// The state a data dir holds, with its journal opened for appending.
pub struct Recovered<S> {
    pub core: Core,
    pub log: S,
    /// Position of the snapshot recovery started from (0: none).
    pub snapshot_position: u64,
}

/// Recovers the state from the newest readable snapshot and the journal
/// `backend` holds, through the journal traits alone: open the journal
/// (mended or refused), check that it reaches back to the snapshot, read
/// its records after the snapshot's position and replay them.
pub fn recover<B: LogBackend + ?Sized>(
    backend: &B,
    data_dir: &Path,
    config: CoreConfig,
    snapshots: &SnapshotStore,
    now_ms: u64,
    unix_ms: u64,
) -> Result<Recovered<B::Store>, MasterError> {
    let latest = snapshots.latest()?;
    if !backend.exists()? {
        if latest.is_some() {
            return Err(MasterError::DataDir {
                path: data_dir.display().to_string(),
                what: format!(
                    "{} is missing but snapshots exist: refusing to start without the changes \
                     made since the last snapshot",
                    backend.name()
                ),
            });
        }
        return create(backend, config, now_ms, unix_ms);
    }
    let Opened { store, mended } = backend.open()?;
    for mend in &mended {
        tracing::warn!(offset = mend.offset, "{}", mend.what);
    }
    let position = latest.as_ref().map_or(0, |s| s.journal_position);
    let mut log = store;
    let state = log.state();
    if state.purged > position {
        return Err(MasterError::DataDir {
            path: data_dir.display().to_string(),
            what: format!(
                "the journal starts after record {} but the newest readable snapshot is at {position}: \
                 records in between are lost; restore the snapshots directory from a backup",
                state.purged
            ),
        });
    }
    if position > state.last {
        // The snapshot is ahead of the journal's end (records it stands for
        // were never written); restart the journal at its position so new
        // records are numbered after it.
        tracing::warn!(
            position,
            "journal ends before the newest snapshot; restarting it there"
        );
        drop(log);
        log = backend.create(position, &[])?;
    }
    let mut core = match &latest {
        Some(snap) => Core::from_snapshot(config, snap, now_ms, unix_ms)?,
        None => Core::new(config),
    };
    // Before the replay: failures journaled before the restart then count
    // the time since toward their retry delays.
    core.set_wall_clock(now_ms, unix_ms);
    // Records up to the snapshot's position are already in it (a crash
    // between writing a snapshot and purging leaves them in the journal).
    let replayed = log.read_from(position + 1)?;
    let appended = log.state().last;
    core.replay(replayed, position, now_ms)?;
    if core.server_token().is_empty() {
        return Err(CoreError::Corrupt(
            "neither a snapshot nor the journal names this store".into(),
        )
        .into());
    }
    core.check_invariants()?;
    tracing::info!(
        snapshot_position = position,
        journal_records = appended - position,
        "recovered state"
    );
    Ok(Recovered {
        core,
        log,
        snapshot_position: position,
    })
}

/// A new store: a journal holding just the Init record with a new token.
fn create<B: LogBackend + ?Sized>(
    backend: &B,
    config: CoreConfig,
    now_ms: u64,
    unix_ms: u64,
) -> Result<Recovered<B::Store>, MasterError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let init = Core::init_record(&token, unix_ms);
    let log = backend.create(0, std::slice::from_ref(&init))?;
    let mut core = Core::recover(config, [init], 0)?;
    core.set_wall_clock(now_ms, unix_ms);
    tracing::info!(server_token = token, "created a new store");
    Ok(Recovered {
        core,
        log,
        snapshot_position: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::mem::MemBackend;
    use crate::journal::{Journal, LogState};
    use crate::snapshots::SnapshotKind;

    fn config() -> CoreConfig {
        CoreConfig {
            store_root: "/store".into(),
            store_url: String::new(),
            lease_ms: 1_000,
            max_in_flight: 0,
            admission: Default::default(),
        }
    }

    /// Recovery over the memory backend (nothing in it names the file
    /// journal): a new store, then the snapshot and the records after it.
    #[test]
    fn recovery_reads_any_backend_from_the_snapshot_position() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotStore::open(dir.path()).unwrap();
        let backend = MemBackend::default();
        let new = recover(&backend, dir.path(), config(), &snapshots, 0, 1_000).unwrap();
        assert_eq!(new.log.state(), LogState { purged: 0, last: 1 });
        let token = new.core.server_token().to_string();
        let mut core = new.core;
        let journal = Journal::start(new.log);
        let started = core.start(11, 2_000, 0).unwrap();
        let at = journal.append(&[started]);
        journal.wait_durable_blocking(at).unwrap();
        snapshots
            .write(core.to_snapshot(at, 0), SnapshotKind::Kept)
            .unwrap();
        journal.purge(at);
        let started = core.start(12, 3_000, 0).unwrap();
        let last = journal.append(&[started]);
        journal.wait_durable_blocking(last).unwrap();
        journal.close();
        let again = recover(&backend, dir.path(), config(), &snapshots, 0, 4_000).unwrap();
        assert_eq!(again.snapshot_position, at);
        assert_eq!(again.log.state(), LogState { purged: at, last });
        assert_eq!(again.core.server_token(), token);
        assert_eq!(again.core.incarnation(), 12);
    }

    /// The journal and the snapshots disagree: refused where records are
    /// lost, restarted at the snapshot where the journal merely ends early.
    #[test]
    fn a_journal_that_does_not_meet_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotStore::open(dir.path()).unwrap();
        let backend = MemBackend::default();
        backend.create(5, &[]).unwrap();
        let err = recover(&backend, dir.path(), config(), &snapshots, 0, 0)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("records in between are lost"),
            "{err}"
        );
        // A snapshot at 9 of a store whose journal holds its Init alone.
        let mut core = Core::recover(config(), [Core::init_record("tok", 1)], 0).unwrap();
        let _ = core.start(3, 2, 0).unwrap();
        snapshots
            .write(core.to_snapshot(9, 0), SnapshotKind::Kept)
            .unwrap();
        backend.create(0, &[Core::init_record("tok", 1)]).unwrap();
        let recovered = recover(&backend, dir.path(), config(), &snapshots, 0, 0).unwrap();
        assert_eq!(recovered.log.state(), LogState { purged: 9, last: 9 });
        assert_eq!(recovered.core.incarnation(), 3);
        // No journal at all beside snapshots: refused.
        let err = recover(
            &MemBackend::default(),
            dir.path(),
            config(),
            &snapshots,
            0,
            0,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("memory is missing"), "{err}");
    }
}
