//! The background loops `server::serve` runs beside the service, until
//! shutdown: the lease reaper, the compactor (automatic snapshots), the
//! sweeper, the recorder and retention of finished pipelines, and the
//! journal supervisor. Each waits on the master's clock between rounds, so
//! a test's manual clock drives them too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::rebuild::{DISK_FULL_PROBE_INTERVAL, space_available};
use super::{Master, MasterError, on_blocking_thread};
use crate::clock::millis;
use crate::journal::JournalError;
use crate::sweep;

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

impl Master {
    /// Waits `duration` on the master's clock; false if the master began
    /// to shut down meanwhile (or had).
    pub(super) async fn pause(&self, duration: Duration) -> bool {
        let mut closing = self.closing.subscribe();
        let slept = tokio::select! {
            () = self.clock.sleep(duration) => true,
            _ = closing.wait_for(|c| *c) => false,
        };
        slept && !*self.closing.borrow()
    }

    /// Expires every lease that ran out; returns how many.
    pub async fn reap(&self) -> Result<usize, MasterError> {
        let (expired, promoted) = self
            .mutate(|core, now| {
                let records = core.expire(now);
                let expired = records.len();
                crate::metrics::metrics().count_lease_expiries(expired as u64);
                Ok((records, (expired, core.promote_due(now))))
            })
            .await?;
        if promoted > 0 {
            self.work_ready.notify_waiters(); // retry delays ran out
        }
        Ok(expired)
    }

    /// Each worker's open `Work` streams (see `open_streams::OpenStreams`).
    pub fn open_streams(&self) -> &crate::open_streams::OpenStreams {
        &self.streams
    }

    /// The worker holding lease `lease_id` now, if it is current.
    pub fn lease_holder(&self, lease_id: u64) -> Option<String> {
        self.state
            .lock()
            .core
            .lease_holder(lease_id)
            .map(str::to_string)
    }

    /// `worker_id`'s last `Work` stream closed: its leases expire a grace
    /// from now ([`crate::open_streams::OpenStreams::grace_ms`]) unless it
    /// comes back or renews first. Only the expiry time moves (in memory,
    /// as a renewal moves it); the reaper expires them as records.
    pub async fn worker_gone(&self, worker_id: &str) {
        let grace_ms = self.streams.grace_ms();
        let hastened = self
            .mutate(|core, now| {
                // Back already (its new stream's task may have run first):
                // decided under the state lock, which `worker_back` takes
                // after the worker counts as open again.
                if self.streams.is_open(worker_id) {
                    return Ok((Vec::new(), 0));
                }
                let expiry_ms = now.saturating_add(grace_ms);
                Ok((Vec::new(), core.hasten_expiry(worker_id, expiry_ms)))
            })
            .await;
        match hastened {
            Ok(0) => {}
            Ok(leases) => tracing::info!(
                worker_id,
                leases,
                grace_ms,
                "a worker's last stream closed: its leases expire after the grace unless it is back"
            ),
            Err(e) => {
                tracing::warn!(worker_id, error = %e, "could not hasten a gone worker's leases")
            }
        }
    }

    /// `worker_id` is back on a new stream after its leases were hastened:
    /// they get a full lease time again, as a renewal gives.
    pub async fn worker_back(&self, worker_id: &str) {
        let extended = self
            .mutate(|core, now| Ok((Vec::new(), core.extend_leases_of(worker_id, now))))
            .await;
        if let Ok(leases @ 1..) = extended {
            tracing::info!(
                worker_id,
                leases,
                "a worker is back: its leases run their full time"
            );
        }
    }

    /// Expires leases as they run out, until shutdown. Ticks at a tenth of
    /// the lease time (10 ms to 1 s), so expiry is late by at most that.
    pub async fn run_reaper(self: Arc<Self>) {
        let tick = Duration::from_millis((self.lease_ms() / 10).clamp(10, 1000));
        while self.pause(tick).await {
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
        while self.pause(SNAPSHOT_CHECK_EVERY).await {
            let auto = self.auto_snapshot;
            let taken = self
                .snapshot_if_grown(auto.min_records, auto.min_bytes)
                .await;
            if let Err(e) = taken {
                // Encoding a large state costs seconds of CPU: do not retry
                // a failure at once and keep failing in a loop.
                tracing::warn!(error = %e, "automatic snapshot failed; retrying in a minute");
                if !self.pause(SNAPSHOT_RETRY_AFTER).await {
                    return;
                }
            }
        }
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
            drop(journal);
            if !matches!(failure, JournalError::DiskFull(_)) {
                self.fatal.send_replace(Some(failure.to_string().into()));
                return;
            }
            tracing::error!(error = %failure, "journal disk full: refusing changes until space returns");
            loop {
                if !self.pause(DISK_FULL_PROBE_INTERVAL).await {
                    return;
                }
                let data_dir = self.data_dir.clone();
                let space = on_blocking_thread(move || space_available(&data_dir)).await;
                if !space.unwrap_or(false) {
                    continue;
                }
                match self.rebuild().await {
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

    /// Records when pipelines finish (journaled, so `tmctl status` shows it
    /// and the retention survives restarts), and with `retain` deletes each
    /// that long after; until shutdown. Ticks every second, so a finish
    /// time is late by about that.
    pub async fn run_finished_pipelines(self: Arc<Self>, retain: Option<Duration>) {
        while self.pause(FINISH_CHECK_EVERY).await {
            self.finished_round(retain).await;
        }
    }

    /// One round of [`Master::run_finished_pipelines`], at the clock's
    /// wall time.
    async fn finished_round(self: &Arc<Self>, retain: Option<Duration>) {
        let unix_ms = self.clock.unix_ms();
        let recorded = self
            .mutate(|core, now| {
                let unrecorded = core.finished_unrecorded();
                if unrecorded.is_empty() {
                    return Ok((Vec::new(), ()));
                }
                Ok((core.record_finished(&unrecorded, unix_ms, now)?, ()))
            })
            .await;
        if let Err(e) = recorded {
            // A failed journal is the supervisor's business.
            tracing::debug!(error = %e, "could not record finished pipelines");
            return;
        }
        let Some(retain) = retain else { return };
        let cutoff = unix_ms.saturating_sub(millis(retain));
        let due = self.state.lock().core.finished_before(cutoff);
        if due.is_empty() {
            return;
        }
        match self.delete_pipelines(due.clone()).await {
            Ok(swept) => tracing::info!(
                deleted = due.len(),
                swept = swept.attempts_deleted,
                "deleted pipelines finished longer than the retention"
            ),
            // One may have been retried meanwhile; the next round looks
            // again.
            Err(e) => tracing::warn!(error = %e, "retention could not delete pipelines"),
        }
    }

    /// Sweeps every `interval` until shutdown.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration) {
        let mut rounds = sweep::Rounds::new(FULL_SWEEP_EVERY_ROUNDS);
        while self.pause(interval).await {
            // Finished (and recorded) before the previous round began:
            // walked by it. A retried pipeline has no finish time until it
            // finishes again, so it is walked while it runs and after.
            let skip: HashSet<String> = match rounds.begin(self.clock.unix_ms()) {
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
}
