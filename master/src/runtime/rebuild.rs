//! The rebuild after a full disk: once the journal supervisor
//! (`loops.rs`) sees space again, the state is replaced with what the data
//! dir holds (so nothing that was never acknowledged survives) and a fresh
//! journal writer starts over it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Hold, Master, MasterError, on_blocking_thread};
use crate::journal::Journal;
use crate::recovery;

/// How often a master with a full journal disk checks for space.
pub(super) const DISK_FULL_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Master {
    /// Replaces the state with what the data dir holds, and the journal
    /// with a fresh writer over it. Changes wait meanwhile (they were
    /// refused anyway: the journal had failed); reads are refused by the
    /// failed journal until the new one is in.
    pub(super) async fn rebuild(self: &Arc<Self>) -> Result<(), MasterError> {
        let one_at_a_time = Arc::clone(&self.snapshotting).lock_owned().await;
        let master = Arc::clone(self);
        // Closing the writer, reading the files and replaying them block.
        on_blocking_thread(move || {
            let _one_at_a_time = one_at_a_time;
            master.rebuild_now()
        })
        .await?
    }

    /// [`Master::rebuild`]'s work; blocks.
    fn rebuild_now(&self) -> Result<(), MasterError> {
        let _held = self.hold_changes(Hold::Rebuilding);
        let (failed, config) = {
            let state = self.state.lock();
            (Arc::clone(&state.journal), state.core.config().clone())
        };
        // The failed writer's store is the one recovery opens again.
        failed.close();
        let recovered = recovery::recover(
            &*self.journal_backend,
            &self.data_dir,
            config,
            &self.snapshots,
            self.clock.now_ms(),
            self.clock.unix_ms(),
        )?;
        let newest_snapshot_bytes = self.snapshots.disk_usage()?.newest_bytes;
        let journal = Arc::new(Journal::start(recovered.log));
        let before = {
            let mut state = self.state.lock();
            state.journal = journal;
            std::mem::replace(&mut state.core, recovered.core)
        };
        self.snapshot_position
            .store(recovered.snapshot_position, Ordering::Relaxed);
        self.snapshot_bytes
            .store(newest_snapshot_bytes, Ordering::Relaxed);
        drop(before); // outside the lock: a whole state to free
        Ok(())
    }
}

/// Whether a 1 MiB file can be written and synced in the data dir: room for
/// the journal to make progress again. Blocks.
pub(super) fn space_available(data_dir: &Path) -> bool {
    let probe = data_dir.join("space-probe.tmp");
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        use std::io::Write;
        file.write_all(&vec![0u8; 1 << 20])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}
