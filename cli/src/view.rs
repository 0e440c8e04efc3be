//! Plain serde structs mirroring a pipeline's status: the JSON shape of
//! `tmctl status --json` ([`StatusView`]: a pipeline's progress and its
//! operator state), kept separate from the proto messages so the JSON stays
//! stable (lower-case state names, a `total` per group) however the wire
//! format evolves.

use std::collections::BTreeMap;

use serde::Serialize;
use taskmaster_proto::v1::{FailedUnit, GroupStatus, InputSlice, PipelineState, PipelineStatus};

/// One pipeline, as `tmctl status --json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipelineView {
    pub id: String,
    pub name: String,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: &'static str,
    /// Sorted by key, so the output is stable.
    pub params: BTreeMap<String, String>,
    pub groups: Vec<GroupView>,
    pub failed_units: Vec<FailedUnitView>,
    /// Attempts that failed or expired and were retried, over all units.
    pub retries: u64,
}

/// A pipeline's progress ([`PipelineView`]) and its operator state: the
/// object `tmctl status --json` prints, with `blocked`, `rerun_of` and
/// `finished_unix_ms` after the progress keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub pipeline: PipelineView,
    /// An operator blocked leasing for this pipeline (`tmctl block
    /// --pipeline`). A block of the whole master is not shown here; the
    /// master's status says so.
    pub blocked: bool,
    /// The pipeline this one re-runs (`tmctl rerun`); null otherwise.
    pub rerun_of: Option<String>,
    /// When the master saw it finished (unix ms, within about a second);
    /// null while it runs. `--retain-finished` counts from here.
    pub finished_unix_ms: Option<u64>,
}

/// One task group's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub name: String,
    pub config_version: u64,
    /// No more units can be added and all of them are committed.
    pub complete: bool,
    pub pending: u64,
    pub leased: u64,
    pub committed: u64,
    pub failed: u64,
    /// Sum of the four counts: the units known so far.
    pub total: u64,
}

/// A unit that ran out of attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailedUnitView {
    pub group: String,
    pub unit: u32,
    /// Attempts that ran, in all (before a retry too): the last one's
    /// number.
    pub attempts: u32,
    /// Error texts of the latest failed attempts, oldest first (at most 5).
    pub errors: Vec<String>,
    /// The attempt number of each of `errors` (0: not known).
    pub error_attempts: Vec<u32>,
    /// The worker that ran each of `errors`' attempts (null: not known,
    /// an error kept by an older master).
    pub error_workers: Vec<Option<String>>,
    /// How long each of `errors`' attempts ran, in ms: from its lease's
    /// grant to its failure, or for an expired lease to the moment it ran
    /// out (null: not known).
    pub error_durations_ms: Vec<Option<u64>>,
    /// Its first input files (at most 5 with `input_slices`).
    pub inputs: Vec<String>,
    /// Byte ranges of files it reads, after `inputs`.
    pub input_slices: Vec<SliceView>,
    /// All its inputs; null when too many upstream units to count.
    pub inputs_total: Option<u64>,
}

/// Bytes [start, end) of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SliceView {
    pub path: String,
    pub start: u64,
    pub end: u64,
}

/// The lower-case name of a pipeline state. `unknown` stands for a value
/// this client does not know (a newer master), rather than guessing.
pub fn state_name(state: PipelineState) -> &'static str {
    match state {
        PipelineState::Pending => "pending",
        PipelineState::Running => "running",
        PipelineState::Succeeded => "succeeded",
        PipelineState::Failed => "failed",
        PipelineState::Cancelled => "cancelled",
        PipelineState::Unspecified => "unknown",
    }
}

impl PipelineView {
    /// Committed units and all units, over every group.
    pub fn units_committed_total(&self) -> (u64, u64) {
        self.groups
            .iter()
            .fold((0, 0), |(committed, total), group| {
                (committed + group.committed, total + group.total)
            })
    }
}

impl From<PipelineStatus> for PipelineView {
    fn from(status: PipelineStatus) -> Self {
        // `state()` maps values outside the enum to Unspecified.
        let state = state_name(status.state());
        PipelineView {
            id: status.pipeline_id,
            name: status.name,
            state,
            params: status.params.into_iter().collect(),
            groups: status.groups.into_iter().map(GroupView::from).collect(),
            failed_units: status
                .failed_units
                .into_iter()
                .map(FailedUnitView::from)
                .collect(),
            retries: status.retries,
        }
    }
}

impl From<PipelineStatus> for StatusView {
    fn from(mut status: PipelineStatus) -> Self {
        let blocked = status.blocked;
        let rerun_of = Some(std::mem::take(&mut status.rerun_of)).filter(|id| !id.is_empty());
        let finished_unix_ms = Some(status.finished_unix_ms).filter(|&ms| ms > 0);
        StatusView {
            pipeline: PipelineView::from(status),
            blocked,
            rerun_of,
            finished_unix_ms,
        }
    }
}

impl From<GroupStatus> for GroupView {
    fn from(group: GroupStatus) -> Self {
        let counts = group.counts.unwrap_or_default();
        GroupView {
            name: group.name,
            config_version: group.config_version,
            complete: group.complete,
            pending: counts.pending,
            leased: counts.leased,
            committed: counts.committed,
            failed: counts.failed,
            total: counts.pending + counts.leased + counts.committed + counts.failed,
        }
    }
}

impl From<FailedUnit> for FailedUnitView {
    fn from(unit: FailedUnit) -> Self {
        // An older master sends no runs: each error's are then not known.
        let run = |i: usize| unit.error_runs.get(i);
        let error_workers = (0..unit.errors.len())
            .map(|i| {
                run(i)
                    .map(|r| r.worker_id.clone())
                    .filter(|w| !w.is_empty())
            })
            .collect();
        let error_durations_ms = (0..unit.errors.len())
            .map(|i| run(i).and_then(|r| r.duration_ms))
            .collect();
        FailedUnitView {
            group: unit.group,
            unit: unit.unit,
            attempts: unit.attempts,
            errors: unit.errors,
            error_attempts: unit.error_attempts,
            error_workers,
            error_durations_ms,
            inputs: unit.inputs,
            input_slices: unit.input_slices.into_iter().map(SliceView::from).collect(),
            inputs_total: unit.inputs_total,
        }
    }
}

impl From<InputSlice> for SliceView {
    fn from(slice: InputSlice) -> Self {
        SliceView {
            path: slice.path,
            start: slice.start,
            end: slice.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use taskmaster_proto::v1::{AttemptRun, UnitCounts};

    use super::*;

    fn status(state: PipelineState) -> PipelineStatus {
        PipelineStatus {
            pipeline_id: "p-1".into(),
            name: "example".into(),
            state: state as i32,
            params: [("ds".to_string(), "2026-11-21".to_string())].into(),
            groups: vec![
                GroupStatus {
                    name: "extract".into(),
                    config_version: 2,
                    counts: Some(UnitCounts {
                        pending: 1,
                        leased: 2,
                        committed: 3,
                        failed: 4,
                    }),
                    complete: false,
                },
                GroupStatus {
                    name: "aggregate".into(),
                    config_version: 1,
                    counts: None,
                    complete: false,
                },
            ],
            failed_units: vec![FailedUnit {
                group: "extract".into(),
                unit: 7,
                attempts: 3,
                errors: vec!["exit 1".into(), "exit 2".into()],
                error_attempts: vec![2, 3],
                error_runs: vec![
                    AttemptRun {
                        worker_id: String::new(),
                        duration_ms: None,
                    },
                    AttemptRun {
                        worker_id: "w-2".into(),
                        duration_ms: Some(1500),
                    },
                ],
                inputs: vec!["/in/a.csv".into()],
                input_slices: vec![InputSlice {
                    path: "/in/big.csv".into(),
                    start: 0,
                    end: 100,
                }],
                inputs_total: Some(2),
            }],
            retries: 5,
            blocked: true,
            rerun_of: "p-0".into(),
            finished_unix_ms: 0,
            audit: Vec::new(),
        }
    }

    #[test]
    fn state_names() {
        let cases = [
            (PipelineState::Pending, "pending"),
            (PipelineState::Running, "running"),
            (PipelineState::Succeeded, "succeeded"),
            (PipelineState::Failed, "failed"),
            (PipelineState::Cancelled, "cancelled"),
        ];
        for (state, name) in cases {
            assert_eq!(PipelineView::from(status(state)).state, name);
        }
        let mut odd = status(PipelineState::Running);
        odd.state = 99;
        assert_eq!(PipelineView::from(odd).state, "unknown");
    }

    #[test]
    fn counts_and_total() {
        let view = PipelineView::from(status(PipelineState::Running));
        let extract = &view.groups[0];
        assert_eq!(
            (
                extract.pending,
                extract.leased,
                extract.committed,
                extract.failed
            ),
            (1, 2, 3, 4)
        );
        assert_eq!(extract.total, 10);
        assert_eq!(extract.config_version, 2);
        assert_eq!(view.groups[1].total, 0, "missing counts are zeros");
        assert_eq!(view.units_committed_total(), (3, 10));
    }

    #[test]
    fn json_shape() {
        let view = StatusView::from(status(PipelineState::Failed));
        let json = serde_json::to_value(&view).unwrap();
        let expected = serde_json::json!({
            "id": "p-1",
            "name": "example",
            "state": "failed",
            "params": {"ds": "2026-11-21"},
            "groups": [
                {"name": "extract", "config_version": 2, "complete": false,
                 "pending": 1, "leased": 2, "committed": 3, "failed": 4, "total": 10},
                {"name": "aggregate", "config_version": 1, "complete": false,
                 "pending": 0, "leased": 0, "committed": 0, "failed": 0, "total": 0},
            ],
            "failed_units": [
                {"group": "extract", "unit": 7, "attempts": 3, "errors": ["exit 1", "exit 2"],
                 "error_attempts": [2, 3], "error_workers": [null, "w-2"],
                 "error_durations_ms": [null, 1500], "inputs": ["/in/a.csv"],
                 "input_slices": [{"path": "/in/big.csv", "start": 0, "end": 100}],
                 "inputs_total": 2},
            ],
            "retries": 5,
            "blocked": true,
            "rerun_of": "p-0",
            "finished_unix_ms": null,
        });
        assert_eq!(json, expected);
        let text = serde_json::to_string(&view).unwrap();
        assert!(
            text.ends_with(
                r#""retries":5,"blocked":true,"rerun_of":"p-0","finished_unix_ms":null}"#
            ),
            "operator state comes last: {text}"
        );
    }

    #[test]
    fn not_a_rerun_is_null_in_json() {
        let mut first_run = status(PipelineState::Running);
        first_run.rerun_of.clear();
        first_run.blocked = false;
        let json = serde_json::to_value(StatusView::from(first_run)).unwrap();
        assert_eq!(json["rerun_of"], serde_json::Value::Null);
        assert_eq!(json["blocked"], false);
    }

    #[test]
    fn a_finish_time_is_a_number_once_recorded() {
        let mut done = status(PipelineState::Succeeded);
        done.finished_unix_ms = 1_764_633_600_000;
        let json = serde_json::to_value(StatusView::from(done)).unwrap();
        assert_eq!(json["finished_unix_ms"], 1_764_633_600_000u64);
    }
}
