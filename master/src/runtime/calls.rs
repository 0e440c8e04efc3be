//! The calls of clients, operators and workers: each one change of the core
//! through [`Master::mutate`] or one view of it through [`Master::read`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use taskmaster_proto::journal::Record;
use taskmaster_proto::v1::{
    CommitItem, GroupConfigChange, LeaseNext, LeaseRef, ListInputsResponse, MasterStatus,
    PipelineSpec, PipelineStatus, UnitOutputs, WorkerInfo,
};

use super::{Master, MasterError, on_blocking_thread};
use crate::clock::millis;
use crate::core::lease_view::Leases;
use crate::core::operate::Changed;
use crate::core::ops::{CommittedAndLeased, ItemResults};
use crate::core::{Core, CoreError, Refusal};
use crate::procstat;

/// Pipeline ids drawn for one submit before it gives up: a clash of eight
/// random hex digits with an existing id is already one in four billion
/// per pipeline held.
const PIPELINE_ID_DRAWS_MAX: usize = 8;

impl Master {
    pub async fn submit(&self, spec: PipelineSpec) -> Result<String, MasterError> {
        let name = spec.name.clone();
        self.with_new_id(&name, |core, id, unix_ms, now| {
            core.submit(id, spec.clone(), unix_ms, now)
        })
        .await
    }

    /// Starts a new run of a finished pipeline; returns the new id.
    pub async fn rerun(&self, pipeline_id: &str) -> Result<String, MasterError> {
        self.rerun_with_params(pipeline_id, &HashMap::new()).await
    }

    /// A re-run with `params` changed (see `Core::rerun_with_params`).
    pub async fn rerun_with_params(
        &self,
        pipeline_id: &str,
        params: &HashMap<String, String>,
    ) -> Result<String, MasterError> {
        let name = self.state.lock().core.status(pipeline_id)?.name;
        self.with_new_id(&name, |core, id, unix_ms, now| {
            core.rerun_with_params(pipeline_id, id, params, unix_ms, now)
        })
        .await
    }

    /// Runs `op` with a fresh pipeline id `<name>-<8 hex>` and the clock's
    /// wall time; see [`Master::with_id_from`].
    async fn with_new_id(
        &self,
        name: &str,
        op: impl Fn(&mut Core, &str, u64, u64) -> Result<Vec<Record>, CoreError>,
    ) -> Result<String, MasterError> {
        let draw = || format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        self.with_id_from(draw, op).await
    }

    /// Runs `op` with an id from `draw` that no pipeline has. Only a clash
    /// of the drawn id draws again (vanishingly rare); whatever `op`
    /// refuses, `AlreadyExists` included, is the answer.
    async fn with_id_from(
        &self,
        mut draw: impl FnMut() -> String,
        op: impl Fn(&mut Core, &str, u64, u64) -> Result<Vec<Record>, CoreError>,
    ) -> Result<String, MasterError> {
        for _ in 0..PIPELINE_ID_DRAWS_MAX {
            let id = draw();
            let unix_ms = self.clock.unix_ms();
            let placed = self
                .mutate(|core, now| {
                    // Under the lock `op` runs under: the id cannot be
                    // taken between this look and `op`.
                    if core.status(&id).is_ok() {
                        return Ok((Vec::new(), false));
                    }
                    Ok((op(core, &id, unix_ms, now)?, true))
                })
                .await?;
            if placed {
                return Ok(id);
            }
            tracing::debug!(pipeline_id = id, "drew a pipeline id that is taken");
        }
        Err(CoreError::AlreadyExists(format!(
            "no free pipeline id in {PIPELINE_ID_DRAWS_MAX} draws"
        ))
        .into())
    }

    pub async fn cancel(&self, pipeline_id: &str) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((core.cancel(pipeline_id, now)?, ())))
            .await
    }

    pub async fn block(&self, pipeline_id: &str, blocked: bool) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((core.block(pipeline_id, blocked, now)?, ())))
            .await
    }

    pub async fn retry(
        &self,
        pipeline_id: &str,
        group: Option<&str>,
        unit: Option<u32>,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.retry(pipeline_id, group, unit, now))
            .await
    }

    pub async fn clear(
        &self,
        pipeline_id: &str,
        group: &str,
        downstream: bool,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.clear(pipeline_id, group, downstream, now))
            .await
    }

    pub async fn change_config(
        &self,
        pipeline_id: &str,
        group: &str,
        change: GroupConfigChange,
    ) -> Result<(Changed, u64), MasterError> {
        self.mutate(|core, now| {
            let (records, changed, version) =
                core.change_config(pipeline_id, group, change, now)?;
            Ok((records, (changed, version)))
        })
        .await
    }

    pub async fn scale(
        &self,
        pipeline_id: &str,
        group: &str,
        split: u32,
    ) -> Result<Changed, MasterError> {
        self.mutate(|core, now| core.scale(pipeline_id, group, split, now))
            .await
    }

    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, MasterError> {
        let now = self.clock.now_ms();
        self.read(|core| Ok(core.workers(now))).await
    }

    /// A page of live workers and the next page's token.
    pub async fn workers_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<WorkerInfo>, String), MasterError> {
        let now = self.clock.now_ms();
        self.read(|core| Ok(core.workers_page(now, page_token, page_size)))
            .await
    }

    /// The master's own state, for `tmctl status` and operators.
    pub async fn master_status(&self) -> Result<MasterStatus, MasterError> {
        let journal = self.journal();
        let journal_syncs = journal.syncs();
        let mut status = self
            .read(|core| {
                Ok(MasterStatus {
                    server_token: core.server_token().to_string(),
                    blocked: core.is_blocked(),
                    max_in_flight: core.config().max_in_flight,
                    leases_in_flight: core.leases_in_flight(),
                    journal_syncs,
                    incarnation: core.incarnation(),
                    ..MasterStatus::default()
                })
            })
            .await?;
        status.journal_records = journal
            .appended()
            .saturating_sub(self.snapshot_position.load(Ordering::Relaxed));
        // File reads (the journal's and the snapshots' sizes, /proc): on a
        // blocking thread, and outside the state lock.
        let journal_backend = Arc::clone(&self.journal_backend);
        let snapshots = self.snapshots.clone();
        on_blocking_thread(move || {
            let usage = snapshots.disk_usage()?;
            Ok(MasterStatus {
                journal_bytes: journal_backend.stored_bytes(),
                snapshots: usage.count,
                snapshot_bytes: usage.total_bytes,
                newest_snapshot_bytes: usage.newest_bytes,
                rss_peak_bytes: procstat::rss_peak_bytes(),
                rss_bytes: procstat::rss_bytes(),
                cpu_seconds: procstat::cpu_seconds(),
                ..status
            })
        })
        .await?
    }

    /// Grants up to `max_units` leases, waiting up to `wait` (on the
    /// master's clock) for work; in the compact form with `compact`.
    pub async fn lease(
        &self,
        worker_id: &str,
        max_units: usize,
        compact: bool,
        wait: Duration,
    ) -> Result<Leases, MasterError> {
        self.lease_as(worker_id, 0, max_units, compact, wait).await
    }

    /// [`Master::lease`] for a worker that says how many units it runs at
    /// once (`worker_slots`; 0: not said), which `tmctl workers` shows.
    pub async fn lease_as(
        &self,
        worker_id: &str,
        worker_slots: u32,
        max_units: usize,
        compact: bool,
        wait: Duration,
    ) -> Result<Leases, MasterError> {
        let deadline_ms = self.clock.now_ms().saturating_add(millis(wait));
        let mut closing = self.closing.subscribe();
        loop {
            // Registered before looking, so a wake-up in between is not lost.
            let notified = self.work_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leases = self
                .mutate(|core, now| {
                    core.lease_with_slots(worker_id, worker_slots, max_units, compact, now)
                })
                .await?;
            if !leases.is_empty() || wait.is_zero() {
                return Ok(leases);
            }
            tokio::select! {
                () = &mut notified => {}
                () = self.clock.sleep_until(deadline_ms) => return Ok(Leases::default()),
                _ = closing.wait_for(|c| *c) => return Err(MasterError::ShuttingDown),
            }
        }
    }

    pub async fn renew(&self, token: &str, refs: &[LeaseRef]) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| Ok((Vec::new(), core.renew(token, refs, now)?)))
            .await
    }

    /// Commits `items` and, with `next`, leases more units in the same
    /// journal append (see [`Core::commit_and_lease`]).
    pub async fn commit(
        &self,
        token: &str,
        items: &[CommitItem],
        next: Option<&LeaseNext>,
    ) -> Result<CommittedAndLeased, MasterError> {
        self.mutate(|core, now| core.commit_and_lease(token, items, next, now))
            .await
    }

    pub async fn release(
        &self,
        token: &str,
        refs: &[LeaseRef],
    ) -> Result<ItemResults, MasterError> {
        self.mutate(|core, now| core.release(token, refs, now))
            .await
    }

    /// A page of a held lease's inputs (see `Core::list_inputs`).
    pub async fn list_inputs(
        &self,
        token: &str,
        lease_ref: &LeaseRef,
        cursor: u64,
        limit: u32,
    ) -> Result<Result<ListInputsResponse, Refusal>, MasterError> {
        let now_ms = self.clock.now_ms();
        self.read(|core| core.list_inputs(token, lease_ref, cursor, limit, now_ms))
            .await
    }

    pub async fn status(&self, pipeline_id: &str) -> Result<PipelineStatus, MasterError> {
        self.read(|core| core.status(pipeline_id)).await
    }

    /// Every pipeline (unpaged: for tests and the embedded demo; clients
    /// get pages through [`Master::list_page`]).
    pub async fn list(&self) -> Result<Vec<PipelineStatus>, MasterError> {
        self.read(|core| Ok(core.list())).await
    }

    /// A page of pipelines and the next page's token (see `core::pages`).
    pub async fn list_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<PipelineStatus>, String), MasterError> {
        self.read(|core| core.list_page(page_token, page_size))
            .await
    }

    /// A group's committed outputs (unpaged: for tests and the embedded
    /// demo; clients get pages through [`Master::outputs_page`]).
    pub async fn outputs(
        &self,
        pipeline_id: &str,
        group: &str,
    ) -> Result<Vec<UnitOutputs>, MasterError> {
        self.read(|core| core.outputs(pipeline_id, group)).await
    }

    /// A page of a group's committed outputs and the next page's token.
    pub async fn outputs_page(
        &self,
        pipeline_id: &str,
        group: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<UnitOutputs>, String), MasterError> {
        self.read(|core| core.outputs_page(pipeline_id, group, page_token, page_size))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use taskmaster_proto::v1::GroupSpec;

    use super::*;
    use crate::clock::ManualClock;
    use crate::runtime::MasterConfig;

    fn spec(name: &str) -> PipelineSpec {
        PipelineSpec {
            name: name.into(),
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

    fn open(dir: &std::path::Path) -> Master {
        let config = MasterConfig::new(dir.join("data"));
        Master::open(&config, Arc::new(ManualClock::default())).unwrap()
    }

    /// Draws the given ids in turn, counting the draws.
    fn drawing<'a>(ids: &'a [&str], draws: &'a Cell<usize>) -> impl FnMut() -> String + 'a {
        move || {
            let id = ids[draws.get()].to_string();
            draws.set(draws.get() + 1);
            id
        }
    }

    #[tokio::test]
    async fn a_drawn_id_that_is_taken_draws_again() {
        let dir = tempfile::tempdir().unwrap();
        let master = open(dir.path());
        let submit =
            |core: &mut Core, id: &str, unix_ms, now| core.submit(id, spec("p"), unix_ms, now);
        let draws = Cell::new(0);
        let first = master
            .with_id_from(drawing(&["p-00000001"], &draws), submit)
            .await
            .unwrap();
        assert_eq!(first, "p-00000001");
        let draws = Cell::new(0);
        let ids = ["p-00000001", "p-00000001", "p-00000002"];
        let second = master
            .with_id_from(drawing(&ids, &draws), submit)
            .await
            .unwrap();
        assert_eq!((second.as_str(), draws.get()), ("p-00000002", 3));
        assert_eq!(master.list().await.unwrap().len(), 2);
        master.close();
    }

    #[tokio::test]
    async fn any_other_already_exists_is_the_answer_not_a_reason_to_draw_again() {
        let dir = tempfile::tempdir().unwrap();
        let master = open(dir.path());
        let (draws, runs) = (Cell::new(0), Cell::new(0));
        let refuses = |_: &mut Core, _: &str, _, _| {
            runs.set(runs.get() + 1);
            Err(CoreError::AlreadyExists("some other thing exists".into()))
        };
        let ids = ["p-00000001", "p-00000002"];
        let refused = master
            .with_id_from(drawing(&ids, &draws), refuses)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, MasterError::Core(CoreError::AlreadyExists(why)) if why == "some other thing exists"),
            "{refused}"
        );
        assert_eq!((draws.get(), runs.get()), (1, 1), "tried once");
        assert!(master.list().await.unwrap().is_empty());
        master.close();
    }

    #[tokio::test]
    async fn draws_that_keep_clashing_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let master = open(dir.path());
        let submit =
            |core: &mut Core, id: &str, unix_ms, now| core.submit(id, spec("p"), unix_ms, now);
        master.with_id_from(|| "p-1".into(), submit).await.unwrap();
        let refused = master
            .with_id_from(|| "p-1".into(), submit)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("no free pipeline id"),
            "{refused}"
        );
        master.close();
    }
}
