//! Schedules as state: each schedule's cron times, its cursor (the last
//! logical time it fired or passed over), its runs, and the backfills
//! running over it. Changed only by applying journal records (see
//! `schedule_ops` for the operations that build them), so a replay or a
//! snapshot rebuilds exactly what was acknowledged.
//!
//! Logical times are the zone's *wall clock* times (`jiff::civil::DateTime`,
//! journaled as `2026-12-07T02:30:00`), the cron expression's own terms:
//! the cursor only moves forward through them, so no logical time fires
//! twice or is skipped without a record saying so, whatever the clocks or
//! DST do (see `cron`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::civil::DateTime;
use jiff::{SignedDuration, Timestamp};
use taskmaster_proto::journal::{
    BackfillStarted, BackfillState, RunState, ScheduleAdded, ScheduleState,
};
use taskmaster_proto::v1::ScheduleSpec;

use taskmaster_spec::schedule_rules::Rules;

use super::CoreError;

/// Runs kept per schedule; older ones leave the history (their pipelines
/// stay until deleted).
pub const RUNS_KEPT: usize = 100_000;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Backfill,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
        }
    }

    pub fn parse(text: &str) -> Option<Trigger> {
        match text {
            "schedule" => Some(Trigger::Schedule),
            "manual" => Some(Trigger::Manual),
            "backfill" => Some(Trigger::Backfill),
            _ => None,
        }
    }
}

/// One logical time's outcome: a pipeline submitted, or passed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub logical: DateTime,
    pub trigger: Trigger,
    pub backfill_id: String,
    /// Empty when the logical time was passed over.
    pub pipeline_id: String,
    /// Why it was passed over.
    pub note: String,
    pub fired_unix_ms: u64,
    /// The pipeline's final state and when, kept when it is deleted.
    pub outcome: Option<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    pub rules: Rules,
    pub created_unix_ms: u64,
    /// The last logical time fired or passed over, or the wall clock when
    /// the schedule was added (it never runs what came before).
    pub cursor: DateTime,
    /// Whether `cursor` is a logical time (not the time it was added).
    pub fired_any: bool,
    pub paused: bool,
    pub runs: VecDeque<Run>,
    /// Pipelines of `schedule` and `manual` runs that may be unfinished
    /// (pruned as runs are added; views filter the finished ones).
    pub open: Vec<String>,
    /// Its key in `Schedules::due`, if it has one.
    indexed_at: Option<u64>,
}

impl Schedule {
    /// The next logical time after the cursor and the instant (unix ms,
    /// jitter included) it fires at.
    pub fn next(&self) -> Option<(DateTime, u64)> {
        let logical = self.rules.times.next_after(self.cursor)?;
        Some((logical, self.fire_ms(logical)))
    }

    /// When `logical` fires, jitter included.
    pub fn fire_ms(&self, logical: DateTime) -> u64 {
        let at = self.rules.times.fire_at(logical);
        (at.as_millisecond().max(0) as u64).saturating_add(self.rules.jitter_offset_ms)
    }

    /// The newest logical time due at `unix_ms` (jitter included), if any.
    pub fn latest_due(&self, unix_ms: u64) -> Option<DateTime> {
        let instant =
            Timestamp::from_millisecond(unix_ms.saturating_sub(self.rules.jitter_offset_ms) as i64)
                .ok()?;
        let civil = self.rules.times.civil_at(instant);
        // A just-after bound: `previous_at_or_before` is exclusive.
        let bound = civil.checked_add(SignedDuration::from_nanos(1)).ok()?;
        let mut candidate = self.rules.times.previous_before(bound)?;
        // Around a fold the wall clock repeats: the candidate may not fire
        // until later; step back until one has.
        for _ in 0..4 {
            if self.fire_ms(candidate) <= unix_ms {
                return Some(candidate);
            }
            candidate = self.rules.times.previous_before(candidate)?;
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct Backfill {
    pub started: BackfillStarted,
    pub logicals: Vec<DateTime>,
    /// Index into `logicals` of the next to fire.
    pub next: usize,
    pub max_active: u32,
    pub paused: bool,
    pub cancelled: bool,
    /// Its pipelines that may be unfinished.
    pub open: Vec<String>,
}

/// Every schedule and backfill.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    pub by_name: BTreeMap<String, Schedule>,
    /// (fire instant, name) of each schedule that is not paused and has a
    /// next logical time: what a tick looks at.
    pub due: BTreeSet<(u64, String)>,
    pub backfills: BTreeMap<String, Backfill>,
    /// Backfills started so far (ids are numbered by it).
    pub backfills_started: u64,
    /// The schedule of each run's pipeline, for the runs' outcomes.
    pub run_of: BTreeMap<String, String>,
}

pub fn parse_civil(text: &str) -> Result<DateTime, CoreError> {
    text.parse()
        .map_err(|e| CoreError::Corrupt(format!("logical time {text:?}: {e}")))
}

pub fn civil_text(civil: DateTime) -> String {
    civil.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

impl Schedules {
    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.by_name.get(name)
    }

    /// Re-indexes `name` after its cursor or pause changed.
    fn reindex(&mut self, name: &str) {
        let Some(s) = self.by_name.get_mut(name) else {
            return;
        };
        if let Some(old) = s.indexed_at.take() {
            self.due.remove(&(old, name.to_string()));
        }
        if !s.paused
            && let Some((_, fire_ms)) = s.next()
        {
            s.indexed_at = Some(fire_ms);
            self.due.insert((fire_ms, name.to_string()));
        }
    }

    pub fn apply_added(&mut self, added: &ScheduleAdded) -> Result<(), CoreError> {
        let corrupt = |e: String| CoreError::Corrupt(format!("schedule: {e}"));
        let spec = added.spec.clone().unwrap_or_default();
        if self.by_name.contains_key(&spec.name) {
            return Err(corrupt(format!("{} added twice", spec.name)));
        }
        let rules = Rules::parse(&spec).map_err(corrupt)?;
        let schedule = Schedule {
            rules,
            created_unix_ms: added.created_unix_ms,
            cursor: parse_civil(&added.cursor)?,
            fired_any: false,
            paused: false,
            runs: VecDeque::new(),
            open: Vec::new(),
            indexed_at: None,
            spec,
        };
        let name = schedule.spec.name.clone();
        self.by_name.insert(name.clone(), schedule);
        self.reindex(&name);
        Ok(())
    }

    pub fn set_paused(&mut self, name: &str, paused: bool) -> Result<(), CoreError> {
        let s = self.schedule_mut(name)?;
        s.paused = paused;
        self.reindex(name);
        Ok(())
    }

    /// Removes a schedule; its backfills are cancelled, its pipelines stay.
    pub fn remove(&mut self, name: &str) -> Result<(), CoreError> {
        let s = self.schedule_mut(name)?;
        if let Some(old) = s.indexed_at {
            self.due.remove(&(old, name.to_string()));
        }
        self.by_name.remove(name);
        for b in self.backfills.values_mut() {
            if b.started.schedule == name {
                b.cancelled = true;
            }
        }
        Ok(())
    }

    pub fn schedule_mut(&mut self, name: &str) -> Result<&mut Schedule, CoreError> {
        self.by_name
            .get_mut(name)
            .ok_or_else(|| CoreError::Corrupt(format!("no schedule {name}")))
    }

    /// Records a run; `still_open` says which open pipelines have not
    /// finished (for pruning). A `schedule` run moves the cursor.
    pub fn add_run(
        &mut self,
        name: &str,
        run: Run,
        still_open: impl Fn(&str) -> bool,
    ) -> Result<(), CoreError> {
        if !run.pipeline_id.is_empty() {
            self.run_of
                .insert(run.pipeline_id.clone(), name.to_string());
        }
        if run.trigger == Trigger::Backfill {
            let b = self
                .backfills
                .get_mut(&run.backfill_id)
                .ok_or_else(|| CoreError::Corrupt(format!("no backfill {}", run.backfill_id)))?;
            b.next += 1;
            b.open.retain(|id| still_open(id));
            if !run.pipeline_id.is_empty() {
                b.open.push(run.pipeline_id.clone());
            }
        }
        let s = self.schedule_mut(name)?;
        if run.trigger == Trigger::Schedule {
            s.cursor = run.logical;
            s.fired_any = true;
        }
        if run.trigger != Trigger::Backfill {
            s.open.retain(|id| still_open(id));
            if !run.pipeline_id.is_empty() {
                s.open.push(run.pipeline_id.clone());
            }
        }
        s.runs.push_back(run);
        while s.runs.len() > RUNS_KEPT {
            s.runs.pop_front();
        }
        self.reindex(name);
        Ok(())
    }

    pub fn apply_backfill_started(&mut self, b: &BackfillStarted) -> Result<(), CoreError> {
        if !self.by_name.contains_key(&b.schedule) {
            return Err(CoreError::Corrupt(format!(
                "backfill of an unknown schedule {}",
                b.schedule
            )));
        }
        if self.backfills.contains_key(&b.id) {
            return Err(CoreError::Corrupt(format!(
                "backfill {} started twice",
                b.id
            )));
        }
        let logicals = b
            .logicals
            .iter()
            .map(|t| parse_civil(t))
            .collect::<Result<Vec<_>, _>>()?;
        self.backfills.insert(
            b.id.clone(),
            Backfill {
                logicals,
                next: 0,
                max_active: b.max_active.max(1),
                paused: false,
                cancelled: false,
                open: Vec::new(),
                started: b.clone(),
            },
        );
        self.backfills_started += 1;
        Ok(())
    }

    /// Keeps the final state of a run's pipeline that is being deleted.
    pub fn note_deleted(&mut self, pipeline_id: &str, state: &str, unix_ms: u64) {
        let Some(name) = self.run_of.remove(pipeline_id) else {
            return;
        };
        if let Some(s) = self.by_name.get_mut(&name)
            && let Some(run) = s
                .runs
                .iter_mut()
                .rev()
                .find(|r| r.pipeline_id == pipeline_id)
        {
            run.outcome = Some((state.to_string(), unix_ms));
        }
    }

    // --- snapshots ---

    pub fn to_snapshot(&self) -> (Vec<ScheduleState>, Vec<BackfillState>, u64) {
        let schedules = self
            .by_name
            .values()
            .map(|s| ScheduleState {
                added: Some(ScheduleAdded {
                    spec: Some(s.spec.clone()),
                    created_unix_ms: s.created_unix_ms,
                    cursor: civil_text(s.cursor),
                }),
                fired_any: s.fired_any,
                paused: s.paused,
                runs: s.runs.iter().map(run_to_state).collect(),
                open: s.open.clone(),
            })
            .collect();
        let backfills = self
            .backfills
            .values()
            .map(|b| BackfillState {
                started: Some(b.started.clone()),
                next: b.next as u64,
                max_active: b.max_active,
                paused: b.paused,
                cancelled: b.cancelled,
                open: b.open.clone(),
            })
            .collect();
        (schedules, backfills, self.backfills_started)
    }

    pub fn from_snapshot(
        schedules: &[ScheduleState],
        backfills: &[BackfillState],
        backfills_started: u64,
    ) -> Result<Schedules, CoreError> {
        let mut out = Schedules::default();
        for state in schedules {
            let added = state.added.clone().unwrap_or_default();
            out.apply_added(&added)?;
            let name = added.spec.unwrap_or_default().name;
            let s = out.schedule_mut(&name)?;
            s.fired_any = state.fired_any;
            s.paused = state.paused;
            s.open = state.open.clone();
            for run in &state.runs {
                let run = run_from_state(run)?;
                if !run.pipeline_id.is_empty() && run.outcome.is_none() {
                    out.run_of.insert(run.pipeline_id.clone(), name.clone());
                }
                out.schedule_mut(&name)?.runs.push_back(run);
            }
            out.reindex(&name);
        }
        for state in backfills {
            let started = state.started.clone().unwrap_or_default();
            out.apply_backfill_started(&started)?;
            let b = out.backfills.get_mut(&started.id).expect("just added");
            b.next = (state.next as usize).min(b.logicals.len());
            b.max_active = state.max_active.max(1);
            b.paused = state.paused;
            b.cancelled = state.cancelled;
            b.open = state.open.clone();
        }
        out.backfills_started = backfills_started.max(out.backfills_started);
        Ok(out)
    }
}

fn run_to_state(run: &Run) -> RunState {
    let (final_state, finished_unix_ms) = run.outcome.clone().unwrap_or_default();
    RunState {
        logical: civil_text(run.logical),
        trigger: run.trigger.as_str().to_string(),
        backfill_id: run.backfill_id.clone(),
        pipeline_id: run.pipeline_id.clone(),
        note: run.note.clone(),
        fired_unix_ms: run.fired_unix_ms,
        final_state,
        finished_unix_ms,
    }
}

fn run_from_state(state: &RunState) -> Result<Run, CoreError> {
    Ok(Run {
        logical: parse_civil(&state.logical)?,
        trigger: Trigger::parse(&state.trigger)
            .ok_or_else(|| CoreError::Corrupt(format!("run trigger {:?}", state.trigger)))?,
        backfill_id: state.backfill_id.clone(),
        pipeline_id: state.pipeline_id.clone(),
        note: state.note.clone(),
        fired_unix_ms: state.fired_unix_ms,
        outcome: (!state.final_state.is_empty())
            .then(|| (state.final_state.clone(), state.finished_unix_ms)),
    })
}
