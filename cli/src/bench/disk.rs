//! The master's journal and snapshots on disk, sampled during a run: the
//! largest they got, and how that compares with the size of the state
//! (the newest snapshot's size, which is the state serialized).

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use taskmaster_client::Client;

/// Time between samples: often enough to catch the journal at its
/// largest before a compaction, rarely enough to cost the master nothing
/// (each sample is a status call that stats a few files).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the samples found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskPeak {
    /// Largest journal plus snapshots seen, in bytes.
    pub peak_bytes: u64,
    /// Largest ratio of journal plus snapshots to the newest snapshot's
    /// size, among samples taken once a snapshot existed.
    pub peak_per_state: Option<f64>,
    /// Automatic or other snapshots on disk at the last sample.
    pub snapshots: u64,
}

impl DiskPeak {
    fn add(&mut self, journal_bytes: u64, snapshot_bytes: u64, newest_snapshot_bytes: u64) {
        let total = journal_bytes + snapshot_bytes;
        self.peak_bytes = self.peak_bytes.max(total);
        if newest_snapshot_bytes > 0 {
            let ratio = total as f64 / newest_snapshot_bytes as f64;
            self.peak_per_state = Some(self.peak_per_state.map_or(ratio, |r| r.max(ratio)));
        }
    }
}

/// A task sampling the master until stopped.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<DiskPeak>,
}

impl Sampler {
    pub fn start(admin: Client) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = DiskPeak::default();
            loop {
                // A failed sample is skipped: the run itself reports a
                // master that stopped answering.
                if let Ok(s) = admin.master_status().await {
                    peak.add(s.journal_bytes, s.snapshot_bytes, s.newest_snapshot_bytes);
                    peak.snapshots = s.snapshots;
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
        Sampler { stop, task }
    }

    /// Stops sampling; returns what the samples found.
    pub async fn stop(self) -> DiskPeak {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_counts_only_once_a_snapshot_exists() {
        let mut peak = DiskPeak::default();
        peak.add(1000, 0, 0);
        assert_eq!(peak.peak_per_state, None);
        peak.add(300, 400, 200);
        assert_eq!(peak.peak_bytes, 1000);
        assert_eq!(peak.peak_per_state, Some(3.5));
        peak.add(100, 200, 200);
        assert_eq!(peak.peak_per_state, Some(3.5));
    }
}
