//! Finished pipelines: when each finished (journaled, for retention), and
//! deleting them: the master forgets them (their status, outputs list,
//! memory and place in snapshots), so a long-lived master does not grow
//! with its history. What they committed stays in the store; the sweep no
//! longer looks under their ids.

use std::collections::HashSet;

use taskmaster_proto::journal::{self, Record, record::Kind};

use super::model::Pos;
use super::{Core, CoreError, record};

impl Core {
    /// Ids of the pipelines that have finished (succeeded, failed or been
    /// cancelled): the ones [`Core::delete_pipelines`] accepts.
    pub fn finished_pipelines(&self) -> Vec<String> {
        self.finished_where(|_| true)
    }

    /// Finished pipelines whose finish time is not recorded yet.
    pub fn finished_unrecorded(&self) -> Vec<String> {
        self.finished_where(|at| at == 0)
    }

    /// Finished pipelines recorded as finished at `cutoff_unix_ms` or
    /// earlier: the ones a retention ending then deletes.
    pub fn finished_before(&self, cutoff_unix_ms: u64) -> Vec<String> {
        self.finished_where(|at| at > 0 && at <= cutoff_unix_ms)
    }

    /// Ids of the finished pipelines whose recorded finish time (0: none)
    /// `time_fits`.
    fn finished_where(&self, time_fits: impl Fn(u64) -> bool) -> Vec<String> {
        (0..self.pipelines.len() as u32)
            .filter(|&p| time_fits(self.pipelines[p as usize].finished_unix_ms))
            .filter(|&p| self.finished_state(p).is_some())
            .map(|p| self.pipelines[p as usize].id.clone())
            .collect()
    }

    /// Records `unix_ms` as when these pipelines (finished, without a
    /// recorded time) finished.
    pub fn record_finished(
        &mut self,
        pipeline_ids: &[String],
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        for id in pipeline_ids {
            let p = self.pipeline_named(id)?;
            if self.finished_state(p).is_none() || self.pipelines[p as usize].finished_unix_ms > 0 {
                return Err(CoreError::FailedPrecondition(format!(
                    "pipeline {id} is running or has a finish time already"
                )));
            }
        }
        let rec = record(Kind::PipelinesFinished(journal::PipelinesFinished {
            pipeline_ids: pipeline_ids.to_vec(),
            unix_ms: unix_ms.max(1), // 0 means "not recorded"
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    pub(super) fn apply_finished(
        &mut self,
        f: &journal::PipelinesFinished,
    ) -> Result<(), CoreError> {
        let mut finished = Vec::with_capacity(f.pipeline_ids.len());
        for id in &f.pipeline_ids {
            let p = self.pipeline_for_record(id)?;
            if self.finished_state(p).is_none() {
                return Err(CoreError::Corrupt(format!(
                    "pipeline {id} recorded as finished while it can still run"
                )));
            }
            finished.push(p);
        }
        for p in finished {
            self.pipelines[p as usize].finished_unix_ms = f.unix_ms;
        }
        Ok(())
    }

    /// After an action that may run the pipeline again ([`may_run_again`]):
    /// its finish time is recorded anew when it finishes again.
    pub(super) fn forget_finish_time(&mut self, pipeline_id: &str) {
        if let Some(&p) = self.pipeline_index.get(pipeline_id) {
            self.pipelines[p as usize].finished_unix_ms = 0;
        }
    }

    /// Refuses, naming the first offender, unless every id names a
    /// distinct pipeline that has finished.
    pub fn check_deletable(&self, pipeline_ids: &[String]) -> Result<(), CoreError> {
        if pipeline_ids.is_empty() {
            return Err(CoreError::Invalid("no pipeline to delete".into()));
        }
        let mut seen = HashSet::new();
        for id in pipeline_ids {
            if !seen.insert(id.as_str()) {
                return Err(CoreError::Invalid(format!("pipeline {id} is named twice")));
            }
            let p = self.pipeline_named(id)?;
            if self.finished_state(p).is_none() {
                return Err(CoreError::FailedPrecondition(format!(
                    "pipeline {id} has not finished; cancel it or let it finish before deleting it"
                )));
            }
        }
        Ok(())
    }

    /// Deletes finished pipelines, all or none.
    pub fn delete_pipelines(
        &mut self,
        pipeline_ids: &[String],
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        self.check_deletable(pipeline_ids)?;
        let rec = record(Kind::PipelinesDeleted(journal::PipelinesDeleted {
            pipeline_ids: pipeline_ids.to_vec(),
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    pub(super) fn apply_deleted(&mut self, d: &journal::PipelinesDeleted) -> Result<(), CoreError> {
        let mut doomed = vec![false; self.pipelines.len()];
        for id in &d.pipeline_ids {
            let p = self.pipeline_for_record(id)? as usize;
            let leased: u64 = self.pipelines[p]
                .groups
                .iter()
                .map(|g| g.counts.leased)
                .sum();
            if doomed[p] || leased > 0 || self.finished_state(p as u32).is_none() {
                return Err(CoreError::Corrupt(format!(
                    "pipeline {id} deleted twice or before it finished"
                )));
            }
            doomed[p] = true;
        }
        self.remove_pipelines(&doomed);
        Ok(())
    }

    /// Removes the pipelines marked in `doomed` and renumbers the rest, in
    /// every index that holds positions. Costs one pass over the ready and
    /// delayed queues, so deletions are batched (one record per retention
    /// pass), not made one by one.
    fn remove_pipelines(&mut self, doomed: &[bool]) {
        let mut kept = 0u32;
        let renumbered: Vec<Option<u32>> = doomed
            .iter()
            .map(|&gone| {
                (!gone).then(|| {
                    kept += 1;
                    kept - 1
                })
            })
            .collect();
        let moved =
            |pos: Pos| renumbered[pos.pipeline as usize].map(|pipeline| Pos { pipeline, ..pos });
        self.ready.retain_mut(|pos| match moved(*pos) {
            Some(new) => {
                *pos = new;
                true
            }
            None => false,
        });
        // The queue keeps the capacity of the most units it ever held;
        // give it back once it is mostly unused.
        self.ready.shrink();
        self.delayed = std::mem::take(&mut self.delayed)
            .into_iter()
            .filter_map(|(due_ms, pos)| moved(pos).map(|new| (due_ms, new)))
            .collect();
        for clock in self.leases.values_mut() {
            // apply_deleted refused pipelines holding leases.
            if let Some(new) = moved(clock.pos) {
                clock.pos = new;
            }
        }
        let mut index = 0;
        self.pipelines.retain(|_| {
            index += 1;
            !doomed[index - 1]
        });
        self.pipeline_index = self
            .pipelines
            .iter()
            .enumerate()
            .map(|(p, pipeline)| (pipeline.id.clone(), p as u32))
            .collect();
    }
}

/// The pipeline a record's operator action may run again (retry, clear,
/// config change, scaling), so its finish time no longer holds.
pub(super) fn may_run_again(rec: &Record) -> Option<&str> {
    match rec.kind.as_ref()? {
        Kind::UnitsRetried(r) => Some(&r.pipeline_id),
        Kind::GroupCleared(c) => Some(&c.pipeline_id),
        Kind::ConfigChanged(c) => Some(&c.pipeline_id),
        Kind::GroupScaled(s) => Some(&s.pipeline_id),
        _ => None,
    }
}
