//! Schedules in the running master: the calls of the `Schedules` service,
//! and the scheduler loop that fires what is due. Firing is one change of
//! the core like any other (`Core::schedule_tick` through `mutate`), so a
//! logical time and its run's pipeline reach the journal in one record.

use std::sync::Arc;
use std::time::Duration;

use taskmaster_proto::v1::{
    BackfillAction, BackfillInfo, BackfillRequest, BackfillResponse, ScheduleAction, ScheduleInfo,
    ScheduleRun, ScheduleSpec,
};

use super::{Master, MasterError};

/// The longest the scheduler sleeps between looks: it wakes at the next
/// logical time's instant when that is sooner, so a run fires within a
/// few milliseconds of it; this bounds how late a new schedule's, a
/// backfill's or a queued run's turn is noticed.
const SCHEDULER_TICK: Duration = Duration::from_millis(200);
/// Runs one tick submits at most; the rest are due on the next ticks, so
/// a herd of schedules never stalls the master for long.
pub const TICK_RUNS_MAX: usize = 200;

impl Master {
    pub async fn add_schedule(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, MasterError> {
        let unix_ms = self.clock.unix_ms();
        let name = spec.name.clone();
        self.mutate(|core, now| {
            let records = core.add_schedule(spec, unix_ms, now)?;
            Ok((records, core.schedule_info_of(&name, unix_ms)?))
        })
        .await
    }

    /// Pauses, resumes or removes a schedule; its state after (None once
    /// removed).
    pub async fn change_schedule(
        &self,
        name: &str,
        action: ScheduleAction,
    ) -> Result<Option<ScheduleInfo>, MasterError> {
        let unix_ms = self.clock.unix_ms();
        self.mutate(|core, now| {
            let records = core.change_schedule(name, action, now)?;
            Ok((records, core.schedule_info_of(name, unix_ms).ok()))
        })
        .await
    }

    pub async fn trigger_schedule(&self, name: &str, at: &str) -> Result<ScheduleRun, MasterError> {
        let unix_ms = self.clock.unix_ms();
        self.mutate(|core, now| core.trigger_schedule(name, at, unix_ms, now))
            .await
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, MasterError> {
        let unix_ms = self.clock.unix_ms();
        self.read(|core| Ok(core.schedule_infos(unix_ms))).await
    }

    pub async fn schedule_runs(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>, MasterError> {
        self.read(|core| core.schedule_runs(name, limit)).await
    }

    /// A schedule's newest `runs_max` runs by group (the web UI's grid).
    pub async fn schedule_grid(
        &self,
        name: &str,
        runs_max: usize,
    ) -> Result<crate::core::schedule_grid::Grid, MasterError> {
        self.read(|core| core.schedule_grid(name, runs_max)).await
    }

    pub async fn backfill(&self, req: &BackfillRequest) -> Result<BackfillResponse, MasterError> {
        let unix_ms = self.clock.unix_ms();
        self.mutate(|core, now| {
            let (records, id, logicals) = core.backfill(
                &req.schedule,
                &req.from,
                &req.to,
                req.max_active,
                req.reverse,
                req.no_retries,
                req.dry_run,
                unix_ms,
                now,
            )?;
            let backfill = if id.is_empty() {
                None
            } else {
                Some(core.backfill_info_of(&id)?)
            };
            Ok((records, BackfillResponse { backfill, logicals }))
        })
        .await
    }

    pub async fn backfills(&self) -> Result<Vec<BackfillInfo>, MasterError> {
        self.read(|core| Ok(core.backfill_infos())).await
    }

    pub async fn change_backfill(
        &self,
        id: &str,
        action: BackfillAction,
        max_active: u32,
    ) -> Result<BackfillInfo, MasterError> {
        self.mutate(|core, now| {
            let records = core.change_backfill(id, action, max_active, now)?;
            Ok((records, core.backfill_info_of(id)?))
        })
        .await
    }

    /// Fires what is due now; returns how many logical times it decided.
    pub async fn tick_schedules(&self) -> Result<usize, MasterError> {
        let unix_ms = self.clock.unix_ms();
        // A look first, so an idle tick takes no change lock and journals
        // nothing.
        if !self.state.lock().core.schedules_due(unix_ms) {
            return Ok(0);
        }
        let decided = self
            .mutate(|core, now| {
                let records = core.schedule_tick(unix_ms, now, TICK_RUNS_MAX);
                // Decided in memory, not yet journaled: a crash here must
                // fire these logical times again (the fault tests arm it).
                if !records.is_empty() {
                    fail::fail_point!("schedule-decided", |_| std::process::abort());
                }
                let decided = records.len();
                Ok((records, decided))
            })
            .await?;
        // Journaled, not yet reported: a crash here must not fire them again.
        if decided > 0 {
            fail::fail_point!("schedule-fired", |_| std::process::abort());
        }
        Ok(decided)
    }

    /// How long the scheduler may sleep: until the next logical time
    /// fires, at most [`SCHEDULER_TICK`].
    fn scheduler_sleep(&self) -> Duration {
        let next_fire_ms = self.state.lock().core.next_schedule_fire_ms();
        let now_ms = self.clock.unix_ms();
        match next_fire_ms {
            // Due already but not fired by the last look (queued behind
            // unfinished runs, or past the per-tick bound): the next look
            // is a tick away, not at once again.
            Some(at) if at > now_ms => Duration::from_millis(at - now_ms).min(SCHEDULER_TICK),
            _ => SCHEDULER_TICK,
        }
    }

    /// Fires due logical times until shutdown.
    pub async fn run_scheduler(self: Arc<Self>) {
        while self.pause(self.scheduler_sleep()).await {
            match self.tick_schedules().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "schedules fired"),
                // A failed journal is the supervisor's business; the times
                // stay due and fire once the state is rebuilt.
                Err(MasterError::Journal(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "scheduler stopped");
                    return;
                }
            }
        }
    }
}
