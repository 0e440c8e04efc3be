//! The rebuild after a full disk: once the journal supervisor
//! (`loops.rs`) sees space again, the state is replaced with what the data
//! dir holds (so nothing that was never acknowledged survives) and a fresh
//! journal writer starts over it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Master, MasterError, unix_ms};
use crate::journal::Journal;
use crate::recovery;

/// How often a master with a full journal disk checks for space.
pub(super) const DISK_FULL_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Master {
    /// Replaces the state with what the data dir holds, and the journal
    /// with a fresh writer over it.
    pub(super) fn rebuild(&self) -> Result<(), MasterError> {
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
}

/// Whether a 1 MiB file can be written and synced in the data dir: room for
/// the journal to make progress again.
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
