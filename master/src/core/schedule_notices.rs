//! What a schedule's webhook is told: a run that failed (or succeeded,
//! with `notify_success`), or a logical time whose run has not succeeded
//! `sla_ms` after it. Pure: the notifier (runtime) keeps which notices it
//! already made, and time is an argument.

use std::collections::HashSet;

use taskmaster_proto::v1::ScheduleSpec;

use super::Core;
use super::schedules::Trigger;

/// Runs looked at per schedule and round, newest first: a run finishes
/// long before a hundred newer ones are fired, and the look is under the
/// state lock.
const RUNS_LOOKED_AT: usize = 100;

/// One notice to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Says the same notice was made already (the notifier's memory).
    pub key: String,
    pub webhook: String,
    pub event: &'static str,
    pub schedule: String,
    pub logical: String,
    pub pipeline_id: String,
    pub state: String,
    /// "group unit N: error" of each failed unit, at most 20.
    pub failed_units: Vec<String>,
}

impl Core {
    /// Notices due at `unix_ms` that `seen` does not hold yet. With `seed`,
    /// the terminal runs of now are only added to `seen` (a master that
    /// starts does not repeat what was said before it stopped).
    pub fn schedule_notices(
        &self,
        seen: &mut HashSet<String>,
        unix_ms: u64,
        seed: bool,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        for s in self.schedules.by_name.values() {
            if s.spec.webhook.is_empty() {
                continue;
            }
            for run in s.runs.iter().rev().take(RUNS_LOOKED_AT) {
                if run.pipeline_id.is_empty() {
                    continue;
                }
                let view = self.run_view(s, run);
                let sla_due = s.spec.sla_ms > 0
                    && run.trigger == Trigger::Schedule
                    && view.state != "succeeded"
                    && unix_ms > s.fire_ms(run.logical).saturating_add(s.spec.sla_ms);
                let event = match view.state.as_str() {
                    "failed" | "cancelled" => Some("failed"),
                    "succeeded" if s.spec.notify_success => Some("succeeded"),
                    _ => None,
                };
                let mut notice = |event: &'static str, key: String| {
                    if seen.insert(key.clone()) && !seed {
                        notices.push(self.notice(&s.spec, &view, event, key));
                    }
                };
                if let Some(event) = event {
                    notice(event, format!("{event}:{}", run.pipeline_id));
                }
                if sla_due {
                    notice(
                        "sla_missed",
                        format!("sla:{}:{}", s.spec.name, view.logical),
                    );
                }
            }
        }
        notices
    }

    fn notice(
        &self,
        spec: &ScheduleSpec,
        run: &taskmaster_proto::v1::ScheduleRun,
        event: &'static str,
        key: String,
    ) -> Notice {
        let failed_units = self
            .status(&run.pipeline_id)
            .map(|status| {
                status
                    .failed_units
                    .iter()
                    .take(20)
                    .map(|u| {
                        let error = u.errors.last().cloned().unwrap_or_default();
                        format!("{} unit {}: {error}", u.group, u.unit)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Notice {
            key,
            webhook: spec.webhook.clone(),
            event,
            schedule: spec.name.clone(),
            logical: run.logical.clone(),
            pipeline_id: run.pipeline_id.clone(),
            state: run.state.clone(),
            failed_units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{core, two_groups};
    use taskmaster_proto::v1::ScheduleSpec;

    #[test]
    fn failures_and_missed_slas_are_told_once_and_a_restart_repeats_nothing() {
        let mut core = core();
        let start = 1_780_000_020_000; // a whole minute
        let spec = ScheduleSpec {
            name: "n".into(),
            cron: "* * * * *".into(),
            overlap: "allow".into(),
            webhook: "http://127.0.0.1:1/hook".into(),
            sla_ms: 30_000,
            pipeline: Some(two_groups(1)),
            ..Default::default()
        };
        core.add_schedule(spec, start, 0).unwrap();
        core.schedule_tick(start + 60_000, 0, 10);
        core.schedule_tick(start + 120_000, 0, 10);
        let first = core.schedule_runs("n", 0).unwrap()[1].pipeline_id.clone();
        core.cancel(&first, 0).unwrap();
        let mut seen = HashSet::new();
        let notices = core.schedule_notices(&mut seen, start + 121_000, false);
        let events: Vec<&str> = notices.iter().map(|n| n.event).collect();
        assert_eq!(events, ["failed", "sla_missed"], "{notices:?}");
        assert_eq!(notices[0].pipeline_id, first);
        assert!(
            core.schedule_notices(&mut seen, start + 121_000, false)
                .is_empty()
        );
        // Later the second run misses its SLA too.
        let later = core.schedule_notices(&mut seen, start + 160_000, false);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].event, "sla_missed");
        // A new notifier seeds itself: nothing is said again.
        let mut fresh = HashSet::new();
        assert!(
            core.schedule_notices(&mut fresh, start + 160_000, true)
                .is_empty()
        );
        assert!(
            core.schedule_notices(&mut fresh, start + 160_000, false)
                .is_empty()
        );
    }
}
