//! What a master takes on (issue 24): how many pipelines it holds, and how
//! big one may be, each a `taskmaster serve` flag. Checked at submit (and
//! re-run), before anything changes; the refusal names the flag.

use taskmaster_proto::v1::PipelineSpec;

use super::CoreError;
use super::limits::GROUPS_PER_PIPELINE_MAX;

/// Pipelines held at once by default (running or finished, until deleted).
pub const PIPELINES_MAX_DEFAULT: usize = 10_000;
/// Units a pipeline may start with by default (over its first groups).
pub const UNITS_PER_PIPELINE_MAX_DEFAULT: usize = 1_000_000;

/// The limits, as the flags set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// `--max-pipelines`.
    pub pipelines_max: usize,
    /// `--max-groups-per-pipeline` (at most [`GROUPS_PER_PIPELINE_MAX`]).
    pub groups_per_pipeline_max: usize,
    /// `--max-units-per-pipeline`: the units its first groups start with.
    /// A downstream group gets at most one unit per upstream unit or
    /// partition, so this bounds the rest too, group by group.
    pub units_per_pipeline_max: usize,
    /// `--max-backfill-runs`: logical times one backfill may hold.
    pub backfill_runs_max: usize,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            pipelines_max: PIPELINES_MAX_DEFAULT,
            groups_per_pipeline_max: GROUPS_PER_PIPELINE_MAX,
            units_per_pipeline_max: UNITS_PER_PIPELINE_MAX_DEFAULT,
            backfill_runs_max: super::schedule_ops::BACKFILL_RUNS_MAX,
        }
    }
}

impl Admission {
    /// Why `spec` may not be taken on by a master holding `pipelines_held`.
    pub fn check(&self, spec: &PipelineSpec, pipelines_held: usize) -> Result<(), CoreError> {
        if pipelines_held >= self.pipelines_max {
            return Err(CoreError::Exhausted(format!(
                "the master holds {pipelines_held} pipelines, its limit (--max-pipelines \
                 {}): delete finished ones (tmctl delete) or set --retain-finished",
                self.pipelines_max
            )));
        }
        if spec.groups.len() > self.groups_per_pipeline_max {
            return Err(CoreError::Invalid(format!(
                "the pipeline has {} groups; this master takes at most {} \
                 (--max-groups-per-pipeline)",
                spec.groups.len(),
                self.groups_per_pipeline_max
            )));
        }
        let units: usize = spec.groups.iter().map(first_units).sum();
        if units > self.units_per_pipeline_max {
            return Err(CoreError::Invalid(format!(
                "the pipeline starts with {units} units; this master takes at most {} \
                 (--max-units-per-pipeline)",
                self.units_per_pipeline_max
            )));
        }
        Ok(())
    }
}

/// The units a group starts with: one per input unit or input file, one
/// for a first group without inputs; none for a downstream group.
fn first_units(group: &taskmaster_proto::v1::GroupSpec) -> usize {
    match (group.input_units.len(), group.inputs.len()) {
        (0, 0) if group.after.is_empty() => 1,
        (0, files) => files,
        (units, _) => units,
    }
}

impl super::Core {
    /// Sets the limits (from the flags, after the state is recovered: a
    /// state over them is kept, and only new submissions are refused).
    pub fn set_admission(&mut self, admission: Admission) {
        self.config.admission = admission;
    }

    pub fn admission(&self) -> Admission {
        self.config.admission
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{core, two_groups};

    #[test]
    fn each_limit_refuses_naming_its_flag_and_changes_nothing() {
        let mut core = core();
        core.set_admission(Admission {
            pipelines_max: 1,
            groups_per_pipeline_max: 1,
            units_per_pipeline_max: 2,
            ..Admission::default()
        });
        let err = core.submit("p-1", two_groups(2), 0, 0).unwrap_err();
        assert!(
            err.to_string().contains("--max-groups-per-pipeline"),
            "{err}"
        );
        core.set_admission(Admission {
            groups_per_pipeline_max: 64,
            ..core.admission()
        });
        let err = core.submit("p-1", two_groups(3), 0, 0).unwrap_err();
        assert!(matches!(&err, CoreError::Invalid(m) if m.contains("starts with 3 units")));
        assert!(
            err.to_string().contains("--max-units-per-pipeline"),
            "{err}"
        );
        core.submit("p-1", two_groups(2), 0, 0).unwrap();
        let err = core.submit("p-2", two_groups(1), 0, 0).unwrap_err();
        assert!(matches!(&err, CoreError::Exhausted(m) if m.contains("--max-pipelines 1")));
        assert_eq!(core.list().len(), 1);
    }
}
