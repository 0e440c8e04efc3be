//! What a schedule publishes: for each logical time, the outputs of the
//! newest run of it that succeeded, in the groups the schedule names. Pure:
//! the publisher (runtime) remembers what it wrote and does the store I/O.

use std::collections::{HashSet, hash_map::DefaultHasher};
use std::hash::{Hash, Hasher};

use taskmaster_proto::v1::{Publication, PublishedGroup};

use super::Core;
use super::schedules::Schedule;

/// Runs looked at per schedule and round, newest first.
const RUNS_LOOKED_AT: usize = 100;

/// The partition directory of a logical time: its wall clock, compact.
pub fn partition_name(logical: jiff::civil::DateTime) -> String {
    logical.strftime("%Y%m%dT%H%M%S").to_string()
}

impl Core {
    /// Publications due: for each logical time among the recent runs of
    /// each schedule with `publish` groups, the newest succeeded run's
    /// outputs, unless `done` holds (schedule, partition, pipeline) already.
    pub fn publications_due(&self, done: &HashSet<(String, String, String)>) -> Vec<Publication> {
        let mut due = Vec::new();
        for s in self.schedules.by_name.values() {
            if s.spec.publish.is_empty() {
                continue;
            }
            let mut logicals_seen = HashSet::new();
            for run in s.runs.iter().rev().take(RUNS_LOOKED_AT) {
                if run.pipeline_id.is_empty() || !logicals_seen.insert(run.logical) {
                    continue;
                }
                if self.run_view(s, run).state != "succeeded"
                    || !self.pipeline_index.contains_key(&run.pipeline_id)
                {
                    // The newest run of this time has not succeeded (yet):
                    // what an older run published stays.
                    continue;
                }
                let partition = partition_name(run.logical);
                let key = (s.spec.name.clone(), partition, run.pipeline_id.clone());
                if !done.contains(&key) {
                    due.push(self.publication(s, run));
                }
            }
        }
        due
    }

    fn publication(&self, s: &Schedule, run: &super::schedules::Run) -> Publication {
        let groups = s
            .spec
            .publish
            .iter()
            .map(|group| PublishedGroup {
                group: group.clone(),
                paths: self
                    .outputs(&run.pipeline_id, group)
                    .map(|units| units.into_iter().flat_map(|u| u.paths).collect())
                    .unwrap_or_default(),
            })
            .collect();
        Publication {
            schedule: s.spec.name.clone(),
            logical: s.rules.times.rfc3339(run.logical),
            partition: partition_name(run.logical),
            ds: run.logical.date().strftime("%Y-%m-%d").to_string(),
            pipeline_id: run.pipeline_id.clone(),
            published_unix_ms: 0,
            groups,
            manifest: String::new(),
        }
    }
}

/// A short stable name for temporary files of one publication.
pub fn temp_suffix(p: &Publication) -> String {
    let mut hasher = DefaultHasher::new();
    (&p.schedule, &p.partition, &p.pipeline_id).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
