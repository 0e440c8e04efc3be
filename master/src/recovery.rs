//! Recovery: the newest readable snapshot, then the journal records after
//! its position. A new data dir gets a journal holding just its identity.

use std::path::Path;

use crate::core::{Core, CoreConfig, CoreError};
use crate::error::MasterError;
use crate::journal::file::FileLog;
use crate::snapshots::SnapshotStore;

/// The state a data dir holds, with its journal opened for appending.
pub struct Recovered {
    pub core: Core,
    pub log: FileLog,
    /// Sequence number of the journal's last record.
    pub appended: u64,
    /// Position of the snapshot recovery started from (0: none).
    pub snapshot_position: u64,
}

pub fn recover(
    data_dir: &Path,
    config: CoreConfig,
    snapshots: &SnapshotStore,
    now_ms: u64,
    unix_ms: u64,
) -> Result<Recovered, MasterError> {
    let path = data_dir.join("journal.log");
    let latest = snapshots.latest()?;
    if !path.exists() {
        if latest.is_some() {
            return Err(MasterError::DataDir {
                path: data_dir.display().to_string(),
                what: "journal.log is missing but snapshots exist: refusing to start without the \
                       changes made since the last snapshot"
                    .into(),
            });
        }
        return create(&path, config, now_ms, unix_ms);
    }
    let opened = FileLog::open(&path)?;
    // The message says "never acknowledged" only where the journal's
    // format proves it (see `journal::frame`).
    if let Some(torn) = &opened.torn {
        tracing::warn!(offset = torn.offset, bytes = torn.bytes, "{torn}");
    }
    for offset in &opened.repaired {
        tracing::warn!(
            offset,
            "a journal batch header did not verify; the copy of it after the batch verified \
             the batch's records, so the header was written back from it"
        );
    }
    let position = latest.as_ref().map_or(0, |s| s.journal_position);
    if opened.base > position {
        return Err(MasterError::DataDir {
            path: data_dir.display().to_string(),
            what: format!(
                "the journal starts after record {} but the newest readable snapshot is at {position}: \
                 records in between are lost; restore the snapshots directory from a backup",
                opened.base
            ),
        });
    }
    let mut opened = opened;
    if position > opened.base + opened.records.len() as u64 {
        // The snapshot is ahead of the journal's end (records it stands for
        // were never written); restart the journal at its position so new
        // records are numbered after it.
        tracing::warn!(
            position,
            "journal ends before the newest snapshot; restarting it there"
        );
        opened.log = FileLog::create(&path, position, &[])?;
        opened.base = position;
        opened.records.clear();
    }
    let mut core = match &latest {
        Some(snap) => Core::from_snapshot(config, snap, now_ms, unix_ms)?,
        None => Core::new(config),
    };
    // Before the replay: failures journaled before the restart then count
    // the time since toward their retry delays.
    core.set_wall_clock(now_ms, unix_ms);
    // Records up to the snapshot's position are already in it (a crash
    // between writing a snapshot and compacting leaves them in the file).
    let skip = (position - opened.base) as usize;
    let appended = opened.base + opened.records.len() as u64;
    let replayed = opened.records.into_iter().skip(skip);
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
        log: opened.log,
        appended,
        snapshot_position: position,
    })
}

/// A new store: a journal holding just the Init record with a new token.
fn create(
    path: &Path,
    config: CoreConfig,
    now_ms: u64,
    unix_ms: u64,
) -> Result<Recovered, MasterError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let init = Core::init_record(&token, unix_ms);
    let log = FileLog::create(path, 0, std::slice::from_ref(&init))?;
    let mut core = Core::recover(config, [init], 0)?;
    core.set_wall_clock(now_ms, unix_ms);
    tracing::info!(server_token = token, "created a new store");
    Ok(Recovered {
        core,
        log,
        appended: 1,
        snapshot_position: 0,
    })
}
