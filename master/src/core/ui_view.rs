//! Read-only views for the web UI and `/metrics`: a filtered page of
//! pipelines, one unit in detail, a page of one group's units, and the
//! counts the metrics gauges report. Each costs O(pipelines × groups) at
//! most, or O(units) of one group where a page of them is asked for,
//! and returns a bounded number of rows: they run under the state lock.

use serde::Serialize;

use super::model::{AttemptError, Pos, UnitState};
use super::names::shown;
use super::{Core, CoreError};

/// Rows in one page of any UI list, at most.
pub const UI_PAGE_ROWS_MAX: usize = 500;
/// Distinct (pipeline name, group) series of `taskmaster_units`, at most;
/// the rest are summed under the pipeline name [`OTHER_SERIES`]. Names are
/// the users', so without a cap a scrape could grow without bound.
pub const METRIC_SERIES_MAX: usize = 1_000;
/// The pipeline name of the series past [`METRIC_SERIES_MAX`].
pub const OTHER_SERIES: &str = "_other";
/// The states a pipeline is shown in, in the order of [`PipelineCounts`].
pub const PIPELINE_STATES: [&str; 5] = ["pending", "running", "succeeded", "failed", "cancelled"];
/// The states a unit is shown in (dropped tombstones are not shown).
pub const UNIT_STATES: [&str; 4] = ["pending", "leased", "committed", "failed"];

/// One pipeline as a list shows it: no failed units, O(groups) to build.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRow {
    pub pipeline_id: String,
    pub name: String,
    pub state: &'static str,
    pub submitted_unix_ms: u64,
    pub finished_unix_ms: u64,
    pub units_total: u64,
    pub units_committed: u64,
    pub units_leased: u64,
    pub units_failed: u64,
    pub blocked: bool,
    pub rerun_of: String,
}

/// What the pipelines list shows: by state, by a part of the name.
#[derive(Debug, Clone, Default)]
pub struct PipelineFilter {
    /// One of [`PIPELINE_STATES`], or None for all.
    pub state: Option<&'static str>,
    /// Pipelines whose name contains this (empty: all).
    pub name: String,
    /// Newest submission first (else oldest first).
    pub newest_first: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelinePage {
    pub rows: Vec<PipelineRow>,
    /// Pipelines the filter accepts, over all pages.
    pub matching: u64,
    pub offset: u64,
}

/// One unit in detail: its attempts and what it committed.
#[derive(Debug, Clone, Serialize)]
pub struct UnitDetail {
    pub pipeline_id: String,
    pub group: String,
    pub unit: u32,
    pub state: &'static str,
    /// The current lease and its worker, while leased, and when it was
    /// granted (wall clock; None when not known).
    pub lease_id: Option<u64>,
    pub worker_id: Option<String>,
    pub leased_unix_ms: Option<u64>,
    /// The committing lease, once committed.
    pub committed_lease_id: Option<u64>,
    /// Leases granted: the number of the latest attempt.
    pub attempts: u32,
    pub failures: u32,
    pub max_attempts: u32,
    /// The latest failed attempts, oldest first (bounded): each one's
    /// error, worker and duration.
    pub errors: Vec<AttemptErrorView>,
    pub outputs: Vec<OutputView>,
    pub config_version: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptErrorView {
    /// 0: not known (recorded before attempts were numbered).
    pub attempt: u32,
    /// The worker that held the attempt's lease; None: not known (an
    /// error of a snapshot written before workers were kept).
    pub worker_id: Option<String>,
    /// From the grant to the failure report, or for an expired lease to
    /// the moment it ran out; None: not known.
    pub duration_ms: Option<u64>,
    pub error: String,
}

impl From<&AttemptError> for AttemptErrorView {
    fn from(e: &AttemptError) -> AttemptErrorView {
        AttemptErrorView {
            attempt: e.attempt,
            worker_id: Some(e.worker_id.clone()).filter(|w| !w.is_empty()),
            duration_ms: e.duration_ms,
            error: e.text.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputView {
    pub path: String,
    pub size_bytes: u64,
}

/// One unit as a group's list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UnitRow {
    pub unit: u32,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitsPage {
    pub rows: Vec<UnitRow>,
    /// Units of the asked state (or all, dropped ones aside) in the group.
    pub matching: u64,
    pub offset: u64,
}

/// A group's place in its pipeline's DAG, for drawing it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupShape {
    pub name: String,
    pub task: String,
    /// Indices of the groups it runs after.
    pub upstream: Vec<u32>,
    pub max_attempts: u32,
}

/// Pipelines per state, in the order of [`PIPELINE_STATES`].
pub type PipelineCounts = [u64; 5];

/// What the scrape-time gauges report.
#[derive(Debug, Clone, Default)]
pub struct MetricCounts {
    /// (pipeline name, group, units per state in the order of
    /// [`UNIT_STATES`]), at most [`METRIC_SERIES_MAX`] + 1 series.
    pub units: Vec<(String, String, [u64; 4])>,
    pub pipelines: PipelineCounts,
    pub workers_alive: u64,
    pub leases_in_flight: u64,
}

/// A snapshot's effect, as a rollback confirmation says it.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackEffect {
    /// Pipelines submitted after the snapshot was taken: gone after it.
    pub submitted_after: u64,
    /// The first of them, newest first.
    pub submitted_after_shown: Vec<String>,
    pub leases_in_flight: u64,
}

impl Core {
    /// The state of pipeline `p` as the UI names it.
    fn state_name(&self, p: u32) -> &'static str {
        match self.finished_state(p) {
            Some("succeeded") => "succeeded",
            Some("failed") => "failed",
            Some(_) => "cancelled",
            None if self.pipelines[p as usize].grants == 0 => "pending",
            None => "running",
        }
    }

    fn pipeline_row(&self, p: u32) -> PipelineRow {
        let pipeline = &self.pipelines[p as usize];
        let mut row = PipelineRow {
            pipeline_id: pipeline.id.clone(),
            name: pipeline.spec.name.clone(),
            state: self.state_name(p),
            submitted_unix_ms: pipeline.submitted_unix_ms,
            finished_unix_ms: pipeline.finished_unix_ms,
            units_total: 0,
            units_committed: 0,
            units_leased: 0,
            units_failed: 0,
            blocked: pipeline.blocked,
            rerun_of: pipeline.rerun_of.clone(),
        };
        for group in &pipeline.groups {
            row.units_total += group.counts.total();
            row.units_committed += group.counts.committed;
            row.units_leased += group.counts.leased;
            row.units_failed += group.counts.failed;
        }
        row
    }

    /// A page of the pipelines `filter` accepts, from `offset`, at most
    /// `limit` (capped at [`UI_PAGE_ROWS_MAX`]) rows.
    pub fn pipeline_rows(
        &self,
        filter: &PipelineFilter,
        offset: u64,
        limit: usize,
    ) -> PipelinePage {
        let limit = limit.min(UI_PAGE_ROWS_MAX);
        let count = self.pipelines.len() as u32;
        let order: Box<dyn Iterator<Item = u32>> = if filter.newest_first {
            Box::new((0..count).rev())
        } else {
            Box::new(0..count)
        };
        let mut rows = Vec::new();
        let mut matching = 0u64;
        for p in order {
            let pipeline = &self.pipelines[p as usize];
            if !filter.name.is_empty() && !pipeline.spec.name.contains(&filter.name) {
                continue;
            }
            if filter.state.is_some_and(|s| s != self.state_name(p)) {
                continue;
            }
            if matching >= offset && rows.len() < limit {
                rows.push(self.pipeline_row(p));
            }
            matching += 1;
        }
        PipelinePage {
            rows,
            matching,
            offset,
        }
    }

    /// The position of a unit named by the UI, or what was not found.
    fn ui_unit_pos(&self, pipeline_id: &str, group: &str, unit: u32) -> Result<Pos, CoreError> {
        let &pipeline = self
            .pipeline_index
            .get(pipeline_id)
            .ok_or_else(|| CoreError::NotFound(format!("no pipeline {}", shown(pipeline_id))))?;
        let p = &self.pipelines[pipeline as usize];
        let &g = p.group_index.get(group).ok_or_else(|| {
            CoreError::NotFound(format!(
                "pipeline {pipeline_id} has no group {}",
                shown(group)
            ))
        })?;
        let units = &p.groups[g as usize].units;
        match units.get(unit as usize) {
            Some(u) if u.state != UnitState::Dropped => Ok(Pos {
                pipeline,
                group: g,
                unit,
            }),
            _ => Err(CoreError::NotFound(format!(
                "group {group} of pipeline {pipeline_id} has no unit {unit}"
            ))),
        }
    }

    pub fn unit_detail(
        &self,
        pipeline_id: &str,
        group: &str,
        unit: u32,
    ) -> Result<UnitDetail, CoreError> {
        let pos = self.ui_unit_pos(pipeline_id, group, unit)?;
        let g = self.group(pos);
        let u = self.unit(pos);
        let (lease_id, worker_id, leased_unix_ms, committed_lease_id) = match &u.state {
            UnitState::Leased {
                lease_id,
                worker_id,
                granted_unix_ms,
            } => (
                Some(*lease_id),
                Some(worker_id.clone()),
                Some(*granted_unix_ms).filter(|&ms| ms > 0),
                None,
            ),
            UnitState::Committed { lease_id, .. } => (None, None, None, Some(*lease_id)),
            _ => (None, None, None, None),
        };
        let sizes: Vec<u64> = match &u.state {
            UnitState::Committed { files, .. } => files.iter().map(|f| f.size_bytes).collect(),
            _ => Vec::new(),
        };
        let outputs = self
            .committed_paths(pos, None)
            .into_iter()
            .zip(sizes)
            .map(|(path, size_bytes)| OutputView { path, size_bytes })
            .collect();
        Ok(UnitDetail {
            pipeline_id: pipeline_id.to_string(),
            group: group.to_string(),
            unit,
            state: unit_state_name(&u.state),
            lease_id,
            worker_id,
            leased_unix_ms,
            committed_lease_id,
            attempts: u.grants,
            failures: u.failures,
            max_attempts: g.wiring.max_attempts,
            errors: u.errors.iter().map(AttemptErrorView::from).collect(),
            outputs,
            config_version: g.config_version,
        })
    }

    /// The DAG of a pipeline's groups, in spec order, and when it was
    /// submitted.
    pub fn pipeline_shape(&self, pipeline_id: &str) -> Result<(Vec<GroupShape>, u64), CoreError> {
        let &pipeline = self
            .pipeline_index
            .get(pipeline_id)
            .ok_or_else(|| CoreError::NotFound(format!("no pipeline {}", shown(pipeline_id))))?;
        let p = &self.pipelines[pipeline as usize];
        let shapes = p
            .groups
            .iter()
            .zip(&p.spec.groups)
            .map(|(group, spec)| GroupShape {
                name: spec.name.clone(),
                task: spec.task.clone(),
                upstream: group.wiring.upstream.clone(),
                max_attempts: group.wiring.max_attempts,
            })
            .collect();
        Ok((shapes, p.submitted_unix_ms))
    }

    /// A page of one group's units, of one of [`UNIT_STATES`] or all.
    pub fn group_units(
        &self,
        pipeline_id: &str,
        group: &str,
        state: Option<&str>,
        offset: u64,
        limit: usize,
    ) -> Result<UnitsPage, CoreError> {
        let limit = limit.min(UI_PAGE_ROWS_MAX);
        let &pipeline = self
            .pipeline_index
            .get(pipeline_id)
            .ok_or_else(|| CoreError::NotFound(format!("no pipeline {}", shown(pipeline_id))))?;
        let p = &self.pipelines[pipeline as usize];
        let &g = p.group_index.get(group).ok_or_else(|| {
            CoreError::NotFound(format!(
                "pipeline {pipeline_id} has no group {}",
                shown(group)
            ))
        })?;
        let counts = &p.groups[g as usize].counts;
        let matching = match state {
            None => counts.total(),
            Some("pending") => counts.pending,
            Some("leased") => counts.leased,
            Some("committed") => counts.committed,
            Some(_) => counts.failed,
        };
        let mut rows = Vec::new();
        let mut seen = 0u64;
        for (n, unit) in p.groups[g as usize].units.iter().enumerate() {
            if rows.len() >= limit {
                break;
            }
            let name = unit_state_name(&unit.state);
            if unit.state == UnitState::Dropped || state.is_some_and(|s| s != name) {
                continue;
            }
            if seen >= offset {
                rows.push(UnitRow {
                    unit: n as u32,
                    state: name,
                    attempts: unit.grants,
                    last_error: unit.errors.last().map(|e| e.text.clone()),
                });
            }
            seen += 1;
        }
        Ok(UnitsPage {
            rows,
            matching,
            offset,
        })
    }

    /// The gauges' values: units per (pipeline name, group, state),
    /// pipelines per state, live workers.
    pub fn metric_counts(&self, now_ms: u64) -> MetricCounts {
        let mut series: std::collections::HashMap<(&str, &str), [u64; 4]> = Default::default();
        let mut other: std::collections::HashMap<&str, [u64; 4]> = Default::default();
        let mut out = MetricCounts::default();
        for (p, pipeline) in self.pipelines.iter().enumerate() {
            let state = self.state_name(p as u32);
            let at = PIPELINE_STATES
                .iter()
                .position(|s| *s == state)
                .unwrap_or(0);
            out.pipelines[at] += 1;
            for (group, spec) in pipeline.groups.iter().zip(&pipeline.spec.groups) {
                let key = (pipeline.spec.name.as_str(), spec.name.as_str());
                let full = series.len() >= METRIC_SERIES_MAX && !series.contains_key(&key);
                let slot = if full {
                    other.entry(spec.name.as_str()).or_default()
                } else {
                    series.entry(key).or_default()
                };
                let c = &group.counts;
                for (total, n) in slot
                    .iter_mut()
                    .zip([c.pending, c.leased, c.committed, c.failed])
                {
                    *total += n;
                }
            }
        }
        // Past the cap even the group names are summed: one series per state.
        let mut rest = [0u64; 4];
        for counts in other.values() {
            for (total, n) in rest.iter_mut().zip(counts) {
                *total += n;
            }
        }
        out.units = series
            .into_iter()
            .map(|((name, group), counts)| (name.to_string(), group.to_string(), counts))
            .collect();
        if !other.is_empty() {
            out.units
                .push((OTHER_SERIES.to_string(), OTHER_SERIES.to_string(), rest));
        }
        out.units.sort();
        out.workers_alive = self
            .workers
            .values()
            .filter(|seen| {
                now_ms.saturating_sub(seen.last_seen_ms) <= self.worker_live_ms(seen.waiting)
            })
            .count() as u64;
        out.leases_in_flight = self.leases.len() as u64;
        out
    }

    /// What a rollback to a snapshot taken at `taken_unix_ms` undoes, as
    /// far as the state can tell: the pipelines submitted since.
    pub fn rollback_effect(&self, taken_unix_ms: u64) -> RollbackEffect {
        const SHOWN_MAX: usize = 20;
        let mut effect = RollbackEffect {
            submitted_after: 0,
            submitted_after_shown: Vec::new(),
            leases_in_flight: self.leases.len() as u64,
        };
        for pipeline in self.pipelines.iter().rev() {
            if pipeline.submitted_unix_ms <= taken_unix_ms {
                continue;
            }
            effect.submitted_after += 1;
            if effect.submitted_after_shown.len() < SHOWN_MAX {
                effect.submitted_after_shown.push(pipeline.id.clone());
            }
        }
        effect
    }
}

fn unit_state_name(state: &UnitState) -> &'static str {
    match state {
        UnitState::Pending => "pending",
        UnitState::Leased { .. } => "leased",
        UnitState::Committed { .. } => "committed",
        UnitState::Failed => "failed",
        UnitState::Dropped => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{core, two_groups};

    /// Submits `names` in order, the i-th at wall time 1000 + i.
    fn submitted(names: &[&str]) -> Core {
        let mut core = core();
        for (i, name) in names.iter().enumerate() {
            let mut spec = two_groups(2);
            spec.name = name.to_string();
            core.submit(&format!("p{i}"), spec, 1000 + i as u64, 0)
                .unwrap();
        }
        core
    }

    fn ids(page: &PipelinePage) -> Vec<&str> {
        page.rows.iter().map(|r| r.pipeline_id.as_str()).collect()
    }

    #[test]
    fn pipeline_rows_filter_sort_and_page() {
        let core = submitted(&["even", "odd", "even", "odd", "even"]);
        let newest = PipelineFilter {
            newest_first: true,
            ..PipelineFilter::default()
        };
        let page = core.pipeline_rows(&newest, 0, 2);
        assert_eq!((ids(&page), page.matching), (vec!["p4", "p3"], 5));
        let oldest = PipelineFilter::default();
        assert_eq!(ids(&core.pipeline_rows(&oldest, 4, 2)), ["p4"]);
        let even = PipelineFilter {
            name: "ev".into(),
            ..PipelineFilter::default()
        };
        let page = core.pipeline_rows(&even, 1, 10);
        assert_eq!((ids(&page), page.matching), (vec!["p2", "p4"], 3));
        let pending = PipelineFilter {
            state: Some("pending"),
            ..PipelineFilter::default()
        };
        assert_eq!(core.pipeline_rows(&pending, 0, 10).matching, 5);
        let running = PipelineFilter {
            state: Some("running"),
            ..PipelineFilter::default()
        };
        assert_eq!(core.pipeline_rows(&running, 0, 10).matching, 0);
        let row = &core.pipeline_rows(&oldest, 0, 1).rows[0];
        assert_eq!((row.units_total, row.submitted_unix_ms), (2, 1000));
        let huge = core.pipeline_rows(&oldest, 0, usize::MAX);
        assert_eq!(huge.rows.len(), 5, "a limit past the cap is the cap");
    }

    #[test]
    fn unit_series_past_the_cap_are_summed_under_other() {
        let names: Vec<String> = (0..METRIC_SERIES_MAX / 2 + 10)
            .map(|i| format!("n{i}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let core = submitted(&names);
        let counts = core.metric_counts(0);
        assert_eq!(counts.units.len(), METRIC_SERIES_MAX + 1);
        let pending: u64 = counts.units.iter().map(|(_, _, c)| c[0]).sum();
        assert_eq!(pending, 2 * names.len() as u64, "nothing lost past the cap");
        let other = counts
            .units
            .iter()
            .find(|(name, group, _)| name == OTHER_SERIES && group == OTHER_SERIES)
            .expect("an _other series");
        assert!(other.2[0] > 0, "{other:?}");
        assert_eq!(counts.pipelines, [names.len() as u64, 0, 0, 0, 0]);
    }

    #[test]
    fn a_rollback_undoes_what_was_submitted_after_the_snapshot() {
        let core = submitted(&["a", "b", "c"]);
        let effect = core.rollback_effect(1000);
        assert_eq!(effect.submitted_after, 2);
        assert_eq!(effect.submitted_after_shown, ["p2", "p1"]);
        assert_eq!(core.rollback_effect(5000).submitted_after, 0);
    }

    #[test]
    fn unknown_names_say_what_was_not_found() {
        let core = submitted(&["a"]);
        let no_pipeline = core.unit_detail("nope", "a", 0).unwrap_err();
        assert_eq!(no_pipeline.to_string(), "no pipeline \"nope\"");
        let no_group = core.unit_detail("p0", "z", 0).unwrap_err();
        assert_eq!(no_group.to_string(), "pipeline p0 has no group \"z\"");
        let no_unit = core.unit_detail("p0", "a", 2).unwrap_err();
        assert_eq!(no_unit.to_string(), "group a of pipeline p0 has no unit 2");
        let unit = core.unit_detail("p0", "a", 1).unwrap();
        assert_eq!(
            (unit.state, unit.attempts, unit.max_attempts),
            ("pending", 0, 2)
        );
        let page = core.group_units("p0", "a", Some("pending"), 1, 5).unwrap();
        assert_eq!(
            (page.matching, page.rows.len(), page.rows[0].unit),
            (2, 1, 1)
        );
    }
}
