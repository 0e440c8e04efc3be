//! A schedule's recent runs by group, for the web UI's grid (Airflow's
//! grid view): one column a run, one row a group, each cell the group's
//! state in that run. Pure and bounded: at most `runs_max` runs.

use taskmaster_proto::v1::{GroupStatus, ScheduleRun};

use super::{Core, CoreError};

/// A group's state in one run, as the grid colours it.
pub fn group_state(group: &GroupStatus) -> &'static str {
    let counts = group.counts.unwrap_or_default();
    if counts.failed > 0 {
        "failed"
    } else if group.complete {
        "succeeded"
    } else if counts.leased > 0 || counts.committed > 0 {
        "running"
    } else {
        "pending"
    }
}

/// The grid of a schedule: its pipeline's group names, and per run (newest
/// first) the run and its groups' states (empty when the run has no
/// pipeline any more, or was passed over).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub groups: Vec<String>,
    pub runs: Vec<(ScheduleRun, Vec<&'static str>)>,
}

impl Core {
    pub fn schedule_grid(&self, name: &str, runs_max: usize) -> Result<Grid, CoreError> {
        let runs = self.schedule_runs(name, runs_max)?;
        let s = self.schedules.get(name).expect("schedule_runs found it");
        let groups: Vec<String> = s
            .spec
            .pipeline
            .as_ref()
            .map(|p| p.groups.iter().map(|g| g.name.clone()).collect())
            .unwrap_or_default();
        let runs = runs
            .into_iter()
            .map(|run| {
                let states = match self.status(&run.pipeline_id) {
                    Ok(status) => status.groups.iter().map(group_state).collect(),
                    Err(_) => Vec::new(),
                };
                (run, states)
            })
            .collect();
        Ok(Grid { groups, runs })
    }
}
