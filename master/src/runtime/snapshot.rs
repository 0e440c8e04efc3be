//! Snapshots of the running master: taken by an operator or by the
//! compactor as the journal grows (both encoded and written off the state
//! lock, beside live traffic), and rollback to one of them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use taskmaster_proto::journal::Snapshot;
use taskmaster_proto::v1::{RollbackPreview, SnapshotInfo};
use tokio::sync::oneshot;

use super::{Hold, Master, MasterError, on_blocking_thread};
use crate::core::Core;
use crate::idle_thread;
use crate::procstat;
use crate::snapshots::{SnapshotError, SnapshotKind, SnapshotStore};
use crate::writeback::Pacing;

/// The journal is not compacted before it holds this many records and
/// bytes since the last snapshot (small states are not worth a snapshot):
/// the defaults of `--auto-snapshot-records` and `--auto-snapshot-mib`.
pub const AUTO_SNAPSHOT_MIN_RECORDS: u64 = 10_000;
/// The bytes' floor: at 4 MiB the short one-unit benches took snapshots,
/// and their commit p99 went from 2.1 to 2.5 ms to 2.7 to 2.8 ms.
pub const AUTO_SNAPSHOT_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// When the compactor takes an automatic snapshot: once the journal since
/// the last one holds `min_records` records and reaches the larger of
/// `min_bytes` and the last snapshot's size (see [`snapshot_trigger_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSnapshot {
    pub min_records: u64,
    pub min_bytes: u64,
}

impl Default for AutoSnapshot {
    fn default() -> AutoSnapshot {
        AutoSnapshot {
            min_records: AUTO_SNAPSHOT_MIN_RECORDS,
            min_bytes: AUTO_SNAPSHOT_MIN_BYTES,
        }
    }
}

impl Master {
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
        let taken_unix_ms = self.clock.unix_ms();
        let writing = idle_thread::run("snapshot", move || {
            let encode = move |head: &Snapshot| {
                let bytes = source.encode_with_head(head);
                let _ = encoded_tx.send(source);
                bytes
            };
            let head = Snapshot {
                note,
                taken_unix_ms,
                ..head
            };
            write_snapshot(&store, head, kind, Pacing::Background, encode)
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
        journal.purge(position);
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

    /// Every readable snapshot (each file is read and checked: on a
    /// blocking thread).
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, MasterError> {
        let store = self.snapshots.clone();
        Ok(on_blocking_thread(move || store.list()).await??.0)
    }

    /// Restores a snapshot's state (see `Core::rolled_back`); returns the
    /// leases invalidated. While the restored state is written as a new
    /// snapshot, changes are held back ([`Master::hold_changes`]): the
    /// journal cannot grow, so it stays durable up to the position that
    /// snapshot stands for, and the state installed is exactly the one
    /// written. Reads go on meanwhile and see the state before.
    pub async fn rollback(self: &Arc<Self>, snapshot_id: &str) -> Result<u64, MasterError> {
        Ok(self.rollback_undoing(snapshot_id).await?.leases_invalidated)
    }

    /// What a rollback to `snapshot_id` would undo if it ran now
    /// ([`Core::rollback_preview`]: pipelines that disappear or come back,
    /// states that go back, committed units that run again, leases that
    /// can no longer commit), changing nothing. For a confirmation before
    /// [`Master::rollback_undoing`] (`tmctl rollback`, the web UI); the
    /// state may move on between the two, so the rollback's own reply is
    /// the word on what it undid. The snapshot file is read and rebuilt,
    /// and the two states compared, on a blocking thread: the state lock
    /// is held only to copy the core (its units are shared copy-on-write).
    /// NOT_FOUND for an unknown snapshot.
    pub async fn rollback_preview(
        self: &Arc<Self>,
        snapshot_id: &str,
    ) -> Result<RollbackPreview, MasterError> {
        let master = Arc::clone(self);
        let snapshot_id = snapshot_id.to_string();
        on_blocking_thread(move || {
            let (restored, snap_head) = master.restore(&snapshot_id)?;
            let current = master.state.lock().core.clone();
            let (after, _) = current.rolled_back(restored, master.clock.now_ms());
            let preview = current.rollback_preview(&after);
            Ok(RollbackPreview {
                snapshot_id,
                ..snap_head.describe(preview)
            })
        })
        .await?
    }

    /// Rolls back to `snapshot_id` as [`Master::rollback`] does, and says
    /// what it undid (as [`Master::rollback_preview`] would have).
    pub async fn rollback_undoing(
        self: &Arc<Self>,
        snapshot_id: &str,
    ) -> Result<RollbackPreview, MasterError> {
        let one_at_a_time = Arc::clone(&self.snapshotting).lock_owned().await;
        let master = Arc::clone(self);
        let snapshot_id = snapshot_id.to_string();
        // All of it on a blocking thread: it reads and writes files and
        // waits for the journal. It also runs to its end if the caller
        // goes away, so a snapshot it wrote is always installed.
        on_blocking_thread(move || {
            let _one_at_a_time = one_at_a_time;
            master.roll_back(&snapshot_id)
        })
        .await?
    }

    /// The core a snapshot holds, and where and when it was taken; reads
    /// and rebuilds it, so blocks.
    fn restore(&self, snapshot_id: &str) -> Result<(Core, SnapshotHead), MasterError> {
        let snap = self.snapshots.load(snapshot_id)?;
        let config = self.state.lock().core.config().clone();
        let restored =
            Core::from_snapshot(config, &snap, self.clock.now_ms(), self.clock.unix_ms())?;
        let head = SnapshotHead {
            taken_unix_ms: snap.taken_unix_ms,
            journal_position: snap.journal_position,
        };
        Ok((restored, head))
    }

    /// [`Master::rollback_undoing`]'s work; blocks.
    fn roll_back(&self, snapshot_id: &str) -> Result<RollbackPreview, MasterError> {
        let (restored, snap_head) = self.restore(snapshot_id)?;
        let held = self.hold_changes(Hold::RollingBack);
        // From here on the core and the journal stay as they are until the
        // new state is installed, so a copy stands for the core. Its units
        // are shared copy-on-write; with the queues and lease tables it
        // took about 1 ms for a million pending units (release build),
        // where `rolled_back` took 13 ms and freeing the old state 44 ms,
        // both now outside the lock.
        let (current, position, journal) = {
            let state = self.state.lock();
            state.journal.check()?;
            (
                state.core.clone(),
                state.journal.appended(),
                Arc::clone(&state.journal),
            )
        };
        // The new snapshot stands for every record up to `position`.
        journal.wait_durable_blocking(position)?;
        let now_ms = self.clock.now_ms();
        let (rolled_back, _) = current.rolled_back(restored, now_ms);
        let undone = RollbackPreview {
            snapshot_id: snapshot_id.to_string(),
            ..snap_head.describe(current.rollback_preview(&rolled_back))
        };
        drop(current);
        let source = rolled_back.snapshot_source(now_ms);
        let head = Snapshot {
            note: format!("state after rollback to {snapshot_id}"),
            taken_unix_ms: self.clock.unix_ms(),
            ..source.head(position)
        };
        // At once, not paced: no change waits on the journal meanwhile.
        let info = write_snapshot(
            &self.snapshots,
            head,
            SnapshotKind::Kept,
            Pacing::AtOnce,
            |head| source.encode_with_head(head),
        )?;
        drop(source);
        let before = std::mem::replace(&mut self.state.lock().core, rolled_back);
        // The journal did not grow while the snapshot was written.
        self.snapshot_written(position, &info, 0);
        journal.purge(position);
        drop(held);
        self.work_ready.notify_waiters();
        drop(before); // outside the lock: a whole state to free
        Ok(undone)
    }

    /// Takes a snapshot once the journal since the last one reaches
    /// [`snapshot_trigger_bytes`] (and holds at least `min_records`). The
    /// compactor calls it with `--auto-snapshot-records` and `-mib`. Returns the snapshot
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
}

/// Where and when a snapshot was taken, for a [`RollbackPreview`].
struct SnapshotHead {
    taken_unix_ms: u64,
    journal_position: u64,
}

impl SnapshotHead {
    fn describe(&self, preview: RollbackPreview) -> RollbackPreview {
        RollbackPreview {
            snapshot_taken_unix_ms: self.taken_unix_ms,
            snapshot_journal_position: self.journal_position,
            ..preview
        }
    }
}

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

/// Writes a snapshot of `head` (which names its journal position, note and
/// time) and the units `encode` adds to it
/// (`SnapshotSource::encode_with_head`). Blocks.
fn write_snapshot(
    store: &SnapshotStore,
    head: Snapshot,
    kind: SnapshotKind,
    pacing: Pacing,
    encode: impl FnOnce(&Snapshot) -> Vec<u8>,
) -> Result<SnapshotInfo, SnapshotError> {
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
