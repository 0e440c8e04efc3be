//! The operations on schedules: register, pause, resume, remove, trigger,
//! backfill, and the tick that fires what is due. Each checks against the
//! state first and returns a refusal before anything changed; then it
//! builds records and applies them (as replay will). Time is an argument
//! (`unix_ms`, the wall clock the runtime's `Clock` gives), so tests drive
//! months of runs in milliseconds.
//!
//! Exactly once per logical time: a `schedule` run's record moves the
//! schedule's cursor to its logical time *and* submits its pipeline (one
//! `ScheduleFired`), and a tick only fires logical times after the cursor.
//! So a crash before the record is durable fires nothing (the next master
//! fires it), and after it the time is behind the cursor for good.

use std::collections::HashMap;

use jiff::civil::{Date, DateTime};
use taskmaster_proto::journal::{
    self, BackfillChanged, BackfillStarted, Record, ScheduleAdded, ScheduleChanged, ScheduleFired,
    record::Kind,
};
use taskmaster_proto::v1::{
    BackfillAction, BackfillInfo, PipelineSpec, ScheduleAction, ScheduleInfo, ScheduleRun,
    ScheduleSpec,
};
use taskmaster_spec::schedule_rules::{Catchup, MAX_ACTIVE_MAX, Overlap, Rules};

use super::names::{check_name, shown};
use super::schedules::{Backfill, Run, Schedule, Trigger, civil_text, parse_civil};
use super::{Core, CoreError, record, spec};

/// A logical time that fires within this long of its instant is on time;
/// older ones were missed (the master was down, the schedule paused) and
/// `catchup` decides what they do.
pub const ON_TIME_MS: u64 = 60_000;
/// Schedule names are at most this long: run pipeline ids add the logical
/// time (16 bytes) and a number to them, and must stay valid names.
pub const SCHEDULE_NAME_BYTES_MAX: usize = 40;
/// Runs one backfill may hold, at most, by default (`--max-backfill-runs`).
pub const BACKFILL_RUNS_MAX: usize = 10_000;
/// Parameters every run gets; a schedule may not set them itself.
pub const RUN_PARAMS: [&str; 4] = ["ds", "ts", "data_interval_start", "data_interval_end"];
/// Runs in one `ListRuns` reply, at most (about 200 bytes each).
pub const RUNS_PAGE_MAX: usize = 10_000;
/// Webhook URLs are at most this long.
const WEBHOOK_BYTES_MAX: usize = 2048;

impl Core {
    /// Registers a schedule; its first logical time is the first after
    /// `unix_ms` in its zone.
    pub fn add_schedule(
        &mut self,
        spec: ScheduleSpec,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        let rules = check_schedule(&spec).map_err(CoreError::Invalid)?;
        if self.schedules.get(&spec.name).is_some() {
            return Err(CoreError::AlreadyExists(format!(
                "schedule {} exists; remove it first to replace it",
                shown(&spec.name)
            )));
        }
        let instant = jiff::Timestamp::from_millisecond(unix_ms as i64)
            .map_err(|e| CoreError::Invalid(format!("clock: {e}")))?;
        let cursor = rules.times.civil_at(instant);
        let rec = record(Kind::ScheduleAdded(ScheduleAdded {
            spec: Some(spec),
            created_unix_ms: unix_ms,
            cursor: civil_text(cursor),
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    pub fn change_schedule(
        &mut self,
        name: &str,
        action: ScheduleAction,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        self.schedule_named(name)?;
        if action == ScheduleAction::Unspecified {
            return Err(CoreError::Invalid(
                "say what to do: pause, resume or remove".into(),
            ));
        }
        let rec = record(Kind::ScheduleChanged(ScheduleChanged {
            name: name.to_string(),
            action: action as i32,
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    /// A manual run of `name` for logical time `at` (see
    /// `TriggerScheduleRequest`), or the latest due at `unix_ms`.
    pub fn trigger_schedule(
        &mut self,
        name: &str,
        at: &str,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<(Vec<Record>, ScheduleRun), CoreError> {
        let s = self.schedule_named(name)?;
        let logical = if at.is_empty() {
            s.latest_due(unix_ms).ok_or_else(|| {
                CoreError::FailedPrecondition(format!(
                    "schedule {} has no logical time at or before now; say which with --at",
                    shown(name)
                ))
            })?
        } else if let Some(date) = bare_date(at) {
            only_logical_on(s, date)?
        } else {
            let logical = parse_logical(s, at).map_err(CoreError::Invalid)?;
            if !s.rules.times.is_logical(logical) {
                return Err(CoreError::Invalid(format!(
                    "{} is not a logical time of schedule {} ({:?})",
                    shown(at),
                    shown(name),
                    s.spec.cron
                )));
            }
            logical
        };
        let rec = self.fire_record(s, logical, Trigger::Manual, None, unix_ms);
        let (run_pipeline, note) = fired_outcome(&rec);
        if run_pipeline.is_empty() {
            return Err(CoreError::Invalid(note));
        }
        self.apply_checked(&rec, now_ms);
        let s = self.schedule_named(name)?;
        let run = s.runs.back().expect("just added");
        Ok((vec![rec], self.run_view(s, run)))
    }

    /// Fires what is due at `unix_ms`: schedules' logical times (by their
    /// catch-up and overlap rules) and backfills' next runs, at most
    /// `most` runs in all (the rest stay due for the next tick).
    pub fn schedule_tick(&mut self, unix_ms: u64, now_ms: u64, most: usize) -> Vec<Record> {
        let mut records = Vec::new();
        let due: Vec<String> = self
            .schedules
            .due
            .iter()
            .take_while(|(fire_ms, _)| *fire_ms <= unix_ms)
            .map(|(_, name)| name.clone())
            .collect();
        for name in due {
            while records.len() < most {
                let Some(rec) = self.next_schedule_record(&name, unix_ms) else {
                    break;
                };
                self.apply_checked(&rec, now_ms);
                records.push(rec);
            }
        }
        let backfills: Vec<String> = self.schedules.backfills.keys().cloned().collect();
        for id in backfills {
            while records.len() < most {
                let Some(rec) = self.next_backfill_record(&id, unix_ms) else {
                    break;
                };
                self.apply_checked(&rec, now_ms);
                records.push(rec);
            }
        }
        records
    }

    /// Whether a tick at `unix_ms` would fire anything (a cheap look under
    /// a read lock, so idle ticks journal nothing).
    pub fn schedules_due(&self, unix_ms: u64) -> bool {
        let schedule_due = self
            .schedules
            .due
            .first()
            .is_some_and(|(fire_ms, _)| *fire_ms <= unix_ms);
        schedule_due
            || self
                .schedules
                .backfills
                .values()
                .any(|b| self.backfill_can_fire(b))
    }

    /// When the earliest next logical time of any schedule fires (unix ms).
    pub fn next_schedule_fire_ms(&self) -> Option<u64> {
        self.schedules.due.first().map(|(fire_ms, _)| *fire_ms)
    }

    /// The record for the next due logical time of `name`, if one is due
    /// and may fire now.
    fn next_schedule_record(&self, name: &str, unix_ms: u64) -> Option<Record> {
        let s = self.schedules.get(name)?;
        if s.paused {
            return None;
        }
        let (logical, fire_ms) = s.next()?;
        if fire_ms > unix_ms {
            return None;
        }
        let latest = s.latest_due(unix_ms).unwrap_or(logical);
        let on_time = |l: DateTime| unix_ms.saturating_sub(s.fire_ms(l)) <= ON_TIME_MS;
        // Missed logical times the rules pass over, in one record.
        let pass_over_to = match s.rules.catchup {
            Catchup::All => None,
            Catchup::Latest if latest > logical => s.rules.times.previous_before(latest),
            Catchup::None if latest > logical && on_time(latest) => {
                s.rules.times.previous_before(latest)
            }
            Catchup::None if !on_time(latest) => Some(latest),
            _ => None,
        };
        if let Some(last) = pass_over_to.filter(|&last| last >= logical) {
            let note = format!(
                "missed (catchup = {}): logical times {} to {} passed over",
                if s.rules.catchup == Catchup::None {
                    "none"
                } else {
                    "latest"
                },
                s.rules.times.rfc3339(logical),
                s.rules.times.rfc3339(last),
            );
            return Some(passed_over(s, last, Trigger::Schedule, None, note, unix_ms));
        }
        let active = self.active_runs(&s.open);
        if s.rules.overlap != Overlap::Allow && active >= s.rules.max_active as usize {
            if s.rules.overlap == Overlap::Queue {
                return None; // waits for a run to finish
            }
            let note = format!(
                "{active} run(s) still unfinished (overlap = skip, max_active = {})",
                s.rules.max_active
            );
            return Some(passed_over(
                s,
                logical,
                Trigger::Schedule,
                None,
                note,
                unix_ms,
            ));
        }
        Some(self.fire_record(s, logical, Trigger::Schedule, None, unix_ms))
    }

    fn backfill_can_fire(&self, b: &Backfill) -> bool {
        !b.paused
            && !b.cancelled
            && b.next < b.logicals.len()
            && self.active_runs(&b.open) < b.max_active as usize
    }

    fn next_backfill_record(&self, id: &str, unix_ms: u64) -> Option<Record> {
        let b = self.schedules.backfills.get(id)?;
        if !self.backfill_can_fire(b) {
            return None;
        }
        let s = self.schedules.get(&b.started.schedule)?;
        Some(self.fire_record(s, b.logicals[b.next], Trigger::Backfill, Some(b), unix_ms))
    }

    /// Runs among `pipeline_ids` not finished (a pipeline gone, deleted or
    /// rolled back, is not running).
    fn active_runs(&self, pipeline_ids: &[String]) -> usize {
        pipeline_ids
            .iter()
            .filter(|id| self.run_unfinished(id))
            .count()
    }

    fn run_unfinished(&self, pipeline_id: &str) -> bool {
        self.pipeline_index
            .get(pipeline_id)
            .is_some_and(|&p| self.finished_state(p).is_none())
    }

    /// The record that submits a run of `s` for `logical`: its pipeline id
    /// is the schedule's name and the logical time, numbered past any
    /// pipeline that has it. A spec the master cannot take (it was valid
    /// when the schedule was added) passes the time over, saying why.
    fn fire_record(
        &self,
        s: &Schedule,
        logical: DateTime,
        trigger: Trigger,
        backfill: Option<&Backfill>,
        unix_ms: u64,
    ) -> Record {
        let spec = run_spec(s, logical, backfill.is_some_and(|b| b.started.no_retries));
        if let Err(e) = spec::validate(&spec) {
            let note = format!("the run's pipeline was refused: {e}");
            return passed_over(s, logical, trigger, backfill, note, unix_ms);
        }
        let base = format!("{}-{}", s.spec.name, logical.strftime("%Y%m%dT%H%M%S"));
        let pipeline_id = (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            })
            .find(|id| !self.pipeline_index.contains_key(id))
            .expect("some number is free");
        record(Kind::ScheduleFired(ScheduleFired {
            schedule: s.spec.name.clone(),
            logical: civil_text(logical),
            trigger: trigger.as_str().to_string(),
            backfill_id: backfill.map(|b| b.started.id.clone()).unwrap_or_default(),
            submitted: Some(journal::PipelineSubmitted {
                pipeline_id,
                spec: Some(spec),
                submitted_unix_ms: unix_ms,
                rerun_of: String::new(),
                backfill: trigger == Trigger::Backfill,
            }),
            note: String::new(),
            unix_ms,
        }))
    }

    /// Starts a backfill of `name` (see `BackfillRequest`); a dry run
    /// changes nothing. Returns the records, the backfill's id (empty for
    /// a dry run) and its logical times in order (RFC 3339).
    #[allow(clippy::too_many_arguments)]
    pub fn backfill(
        &mut self,
        name: &str,
        from: &str,
        to: &str,
        max_active: u32,
        reverse: bool,
        no_retries: bool,
        dry_run: bool,
        unix_ms: u64,
        now_ms: u64,
    ) -> Result<(Vec<Record>, String, Vec<String>), CoreError> {
        let s = self.schedule_named(name)?;
        let invalid = CoreError::Invalid;
        let from_civil = parse_bound(from, false).map_err(|e| invalid(format!("--from: {e}")))?;
        let to_civil = parse_bound(to, true).map_err(|e| invalid(format!("--to: {e}")))?;
        if from_civil > to_civil {
            return Err(invalid(format!(
                "--from {} is after --to {}",
                shown(from),
                shown(to)
            )));
        }
        if max_active > MAX_ACTIVE_MAX {
            return Err(invalid(format!(
                "--max-active {max_active} is over {}",
                MAX_ACTIVE_MAX
            )));
        }
        let runs_max = self.admission().backfill_runs_max;
        let mut logicals = s
            .rules
            .times
            .between(from_civil, to_civil, runs_max)
            .ok_or_else(|| {
                invalid(format!(
                    "the range holds more than {runs_max} runs (--max-backfill-runs); backfill it in parts"
                ))
            })?;
        // Running a backfill again runs only what has not succeeded.
        let succeeded: std::collections::HashSet<DateTime> = s
            .runs
            .iter()
            .filter(|r| self.run_state(r) == "succeeded")
            .map(|r| r.logical)
            .collect();
        logicals.retain(|l| !succeeded.contains(l));
        if reverse {
            logicals.reverse();
        }
        let shown_times: Vec<String> = logicals.iter().map(|&l| s.rules.times.rfc3339(l)).collect();
        if dry_run || logicals.is_empty() {
            return Ok((Vec::new(), String::new(), shown_times));
        }
        let id = format!("{name}-backfill-{}", self.schedules.backfills_started + 1);
        let rec = record(Kind::BackfillStarted(BackfillStarted {
            id: id.clone(),
            schedule: name.to_string(),
            logicals: logicals.iter().map(|&l| civil_text(l)).collect(),
            max_active: max_active.max(1),
            no_retries,
            reverse,
            unix_ms,
        }));
        self.apply_checked(&rec, now_ms);
        Ok((vec![rec], id, shown_times))
    }

    pub fn change_backfill(
        &mut self,
        id: &str,
        action: BackfillAction,
        max_active: u32,
        now_ms: u64,
    ) -> Result<Vec<Record>, CoreError> {
        let b = self
            .schedules
            .backfills
            .get(id)
            .ok_or_else(|| CoreError::NotFound(format!("no backfill {}", shown(id))))?;
        match action {
            BackfillAction::Unspecified => {
                return Err(CoreError::Invalid(
                    "say what to do: set, pause, resume or cancel".into(),
                ));
            }
            BackfillAction::Set if max_active == 0 || max_active > MAX_ACTIVE_MAX => {
                return Err(CoreError::Invalid(format!(
                    "--max-active must be 1 to {}",
                    MAX_ACTIVE_MAX
                )));
            }
            _ if b.cancelled => {
                return Err(CoreError::FailedPrecondition(format!(
                    "backfill {} was cancelled",
                    shown(id)
                )));
            }
            _ => {}
        }
        let rec = record(Kind::BackfillChanged(BackfillChanged {
            id: id.to_string(),
            action: action as i32,
            max_active,
        }));
        self.apply_checked(&rec, now_ms);
        Ok(vec![rec])
    }

    // --- applying records ---

    pub(super) fn apply_schedule_changed(&mut self, c: &ScheduleChanged) -> Result<(), CoreError> {
        match ScheduleAction::try_from(c.action) {
            Ok(ScheduleAction::Pause) => self.schedules.set_paused(&c.name, true),
            Ok(ScheduleAction::Resume) => self.schedules.set_paused(&c.name, false),
            Ok(ScheduleAction::Remove) => self.schedules.remove(&c.name),
            _ => Err(CoreError::Corrupt(format!("schedule change {}", c.action))),
        }
    }

    pub(super) fn apply_schedule_fired(&mut self, f: &ScheduleFired) -> Result<(), CoreError> {
        let corrupt = |what: String| CoreError::Corrupt(what);
        let s = self
            .schedules
            .get(&f.schedule)
            .ok_or_else(|| corrupt(format!("run of an unknown schedule {}", f.schedule)))?;
        let logical = parse_civil(&f.logical)?;
        let trigger = Trigger::parse(&f.trigger)
            .ok_or_else(|| corrupt(format!("run trigger {:?}", f.trigger)))?;
        if trigger == Trigger::Schedule && s.fired_any && logical <= s.cursor {
            return Err(corrupt(format!(
                "schedule {} fired {} again",
                f.schedule, f.logical
            )));
        }
        if trigger == Trigger::Backfill {
            let b = self
                .schedules
                .backfills
                .get(&f.backfill_id)
                .ok_or_else(|| corrupt(format!("run of an unknown backfill {}", f.backfill_id)))?;
            if b.logicals.get(b.next) != Some(&logical) {
                return Err(corrupt(format!(
                    "backfill {} ran {} out of order",
                    f.backfill_id, f.logical
                )));
            }
        }
        let pipeline_id = match &f.submitted {
            Some(sub) => {
                self.apply_submitted(sub)?;
                sub.pipeline_id.clone()
            }
            None => String::new(),
        };
        let run = Run {
            logical,
            trigger,
            backfill_id: f.backfill_id.clone(),
            pipeline_id,
            note: f.note.clone(),
            fired_unix_ms: f.unix_ms,
            outcome: None,
        };
        let unfinished: std::collections::HashSet<String> = {
            let s = self.schedules.get(&f.schedule).expect("checked above");
            let mut open: Vec<&String> = s.open.iter().collect();
            if let Some(b) = self.schedules.backfills.get(&f.backfill_id) {
                open.extend(&b.open);
            }
            open.into_iter()
                .filter(|id| self.run_unfinished(id))
                .cloned()
                .collect()
        };
        self.schedules
            .add_run(&f.schedule, run, |id| unfinished.contains(id))
    }

    pub(super) fn apply_backfill_changed(&mut self, c: &BackfillChanged) -> Result<(), CoreError> {
        let b = self
            .schedules
            .backfills
            .get_mut(&c.id)
            .ok_or_else(|| CoreError::Corrupt(format!("no backfill {}", c.id)))?;
        match BackfillAction::try_from(c.action) {
            Ok(BackfillAction::Set) => b.max_active = c.max_active.max(1),
            Ok(BackfillAction::Pause) => b.paused = true,
            Ok(BackfillAction::Resume) => b.paused = false,
            Ok(BackfillAction::Cancel) => b.cancelled = true,
            _ => return Err(CoreError::Corrupt(format!("backfill change {}", c.action))),
        }
        Ok(())
    }

    /// Before pipelines are deleted: their runs keep the final state.
    pub(super) fn note_runs_deleted(&mut self, d: &journal::PipelinesDeleted) {
        for id in &d.pipeline_ids {
            if let Some(&p) = self.pipeline_index.get(id)
                && let Some(state) = self.finished_state(p)
            {
                let state = state.trim_start_matches("been ").to_string();
                let finished = self.pipelines[p as usize].finished_unix_ms;
                self.schedules.note_deleted(id, &state, finished);
            }
        }
    }

    // --- views ---

    fn schedule_named(&self, name: &str) -> Result<&Schedule, CoreError> {
        self.schedules
            .get(name)
            .ok_or_else(|| CoreError::NotFound(format!("no schedule {}", shown(name))))
    }

    /// Every schedule as of `unix_ms`.
    pub fn schedule_infos(&self, unix_ms: u64) -> Vec<ScheduleInfo> {
        self.schedules
            .by_name
            .values()
            .map(|s| self.schedule_info(s, unix_ms))
            .collect()
    }

    pub fn schedule_info_of(&self, name: &str, unix_ms: u64) -> Result<ScheduleInfo, CoreError> {
        Ok(self.schedule_info(self.schedule_named(name)?, unix_ms))
    }

    fn schedule_info(&self, s: &Schedule, unix_ms: u64) -> ScheduleInfo {
        let next = s.next();
        // Due but not fired: queued behind unfinished runs, or paused.
        let waiting = match next {
            Some((_, fire_ms)) if fire_ms <= unix_ms => {
                let now = jiff::Timestamp::from_millisecond(
                    unix_ms.saturating_sub(s.rules.jitter_offset_ms) as i64,
                )
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                s.rules.times.due(s.cursor, now, 1000).len()
            }
            _ => 0,
        };
        ScheduleInfo {
            spec: Some(s.spec.clone()),
            paused: s.paused,
            last_logical: if s.fired_any {
                s.rules.times.rfc3339(s.cursor)
            } else {
                String::new()
            },
            next_logical: next
                .map(|(l, _)| s.rules.times.rfc3339(l))
                .unwrap_or_default(),
            next_fire_unix_ms: next.map_or(0, |(_, ms)| ms),
            active_runs: self.active_runs(&s.open) as u32,
            created_unix_ms: s.created_unix_ms,
            waiting: waiting as u32,
        }
    }

    /// Runs of `name`, newest first, at most `limit` (0: as many as one
    /// reply holds, [`RUNS_PAGE_MAX`]).
    pub fn schedule_runs(&self, name: &str, limit: usize) -> Result<Vec<ScheduleRun>, CoreError> {
        let s = self.schedule_named(name)?;
        let limit = if limit == 0 {
            RUNS_PAGE_MAX
        } else {
            limit.min(RUNS_PAGE_MAX)
        };
        Ok(s.runs
            .iter()
            .rev()
            .take(limit)
            .map(|r| self.run_view(s, r))
            .collect())
    }

    fn run_state(&self, run: &Run) -> String {
        if let Some((state, _)) = &run.outcome {
            return state.clone();
        }
        if run.pipeline_id.is_empty() {
            return "skipped".into();
        }
        match self.pipeline_index.get(&run.pipeline_id) {
            None => "deleted".into(),
            Some(&p) => match self.finished_state(p) {
                Some(state) => state.trim_start_matches("been ").to_string(),
                None if self.pipelines[p as usize].grants == 0 => "pending".into(),
                None => "running".into(),
            },
        }
    }

    pub(super) fn run_view(&self, s: &Schedule, run: &Run) -> ScheduleRun {
        let finished_unix_ms = match &run.outcome {
            Some((_, ms)) => *ms,
            None => self
                .pipeline_index
                .get(&run.pipeline_id)
                .map_or(0, |&p| self.pipelines[p as usize].finished_unix_ms),
        };
        ScheduleRun {
            schedule: s.spec.name.clone(),
            logical: s.rules.times.rfc3339(run.logical),
            trigger: run.trigger.as_str().into(),
            pipeline_id: run.pipeline_id.clone(),
            state: self.run_state(run),
            fired_unix_ms: run.fired_unix_ms,
            finished_unix_ms,
            backfill_id: run.backfill_id.clone(),
            note: run.note.clone(),
        }
    }

    pub fn backfill_infos(&self) -> Vec<BackfillInfo> {
        self.schedules
            .backfills
            .values()
            .map(|b| self.backfill_info(b))
            .collect()
    }

    pub fn backfill_info_of(&self, id: &str) -> Result<BackfillInfo, CoreError> {
        self.schedules
            .backfills
            .get(id)
            .map(|b| self.backfill_info(b))
            .ok_or_else(|| CoreError::NotFound(format!("no backfill {}", shown(id))))
    }

    fn backfill_info(&self, b: &Backfill) -> BackfillInfo {
        let mut counts: HashMap<String, u32> = HashMap::new();
        if let Some(s) = self.schedules.get(&b.started.schedule) {
            for run in s.runs.iter().filter(|r| r.backfill_id == b.started.id) {
                *counts.entry(self.run_state(run)).or_default() += 1;
            }
        }
        let count = |state: &str| counts.get(state).copied().unwrap_or(0);
        let running = count("running") + count("pending");
        let succeeded = count("succeeded");
        let failed = count("failed") + count("cancelled") + count("skipped") + count("deleted");
        let total = b.logicals.len() as u32;
        BackfillInfo {
            id: b.started.id.clone(),
            schedule: b.started.schedule.clone(),
            max_active: b.max_active,
            reverse: b.started.reverse,
            no_retries: b.started.no_retries,
            paused: b.paused,
            cancelled: b.cancelled,
            total,
            fired: b.next as u32,
            running,
            succeeded,
            failed,
            created_unix_ms: b.started.unix_ms,
            finished: running == 0 && (succeeded + failed == total || b.cancelled),
        }
    }
}

/// Checks a schedule's settings and its pipeline (with the run parameters
/// it will get); the error names what is wrong.
pub fn check_schedule(spec: &ScheduleSpec) -> Result<Rules, String> {
    check_name("schedule name", &spec.name)?;
    if spec.name.len() > SCHEDULE_NAME_BYTES_MAX {
        return Err(format!(
            "schedule name {} is longer than {SCHEDULE_NAME_BYTES_MAX} bytes",
            shown(&spec.name)
        ));
    }
    let rules = Rules::parse(spec)?;
    let pipeline = spec
        .pipeline
        .as_ref()
        .ok_or("the schedule has no pipeline")?;
    for name in RUN_PARAMS {
        if pipeline.params.contains_key(name) {
            return Err(format!(
                "parameter {name:?} is set by the scheduler for each run; rename yours"
            ));
        }
    }
    if rules
        .times
        .next_after(rules.times.civil_at(jiff::Timestamp::UNIX_EPOCH))
        .is_none()
    {
        return Err(format!("cron expression {:?} never fires", spec.cron));
    }
    let example = DateTime::constant(2026, 1, 1, 0, 0, 0, 0);
    let mut sample = pipeline.clone();
    add_run_params(&mut sample, &rules, example, example);
    spec::validate(&sample).map_err(|e| format!("the schedule's pipeline: {e}"))?;
    for group in &spec.publish {
        if !pipeline.groups.iter().any(|g| &g.name == group) {
            return Err(format!(
                "publish names {}, which is not a group of the pipeline",
                shown(group)
            ));
        }
    }
    if !spec.webhook.is_empty()
        && (spec.webhook.len() > WEBHOOK_BYTES_MAX
            || !(spec.webhook.starts_with("http://") || spec.webhook.starts_with("https://")))
    {
        return Err(format!(
            "webhook {} is not an http:// or https:// URL of at most {WEBHOOK_BYTES_MAX} bytes",
            shown(&spec.webhook)
        ));
    }
    Ok(rules)
}

/// The pipeline a run of `s` for `logical` submits.
fn run_spec(s: &Schedule, logical: DateTime, no_retries: bool) -> PipelineSpec {
    let mut spec = s.spec.pipeline.clone().unwrap_or_default();
    let start = s.rules.times.previous_before(logical).unwrap_or(logical);
    add_run_params(&mut spec, &s.rules, logical, start);
    if no_retries {
        for group in &mut spec.groups {
            group.max_attempts = 1;
        }
    }
    spec
}

fn add_run_params(spec: &mut PipelineSpec, rules: &Rules, logical: DateTime, start: DateTime) {
    let params = &mut spec.params;
    params.insert("ds".into(), logical.date().strftime("%Y-%m-%d").to_string());
    params.insert("ts".into(), rules.times.rfc3339(logical));
    params.insert("data_interval_start".into(), rules.times.rfc3339(start));
    params.insert("data_interval_end".into(), rules.times.rfc3339(logical));
}

/// A record passing `logical` over (no pipeline), saying why.
fn passed_over(
    s: &Schedule,
    logical: DateTime,
    trigger: Trigger,
    backfill: Option<&Backfill>,
    note: String,
    unix_ms: u64,
) -> Record {
    record(Kind::ScheduleFired(ScheduleFired {
        schedule: s.spec.name.clone(),
        logical: civil_text(logical),
        trigger: trigger.as_str().to_string(),
        backfill_id: backfill.map(|b| b.started.id.clone()).unwrap_or_default(),
        submitted: None,
        note,
        unix_ms,
    }))
}

/// A fire record's pipeline id (empty if passed over) and note.
fn fired_outcome(rec: &Record) -> (String, String) {
    match &rec.kind {
        Some(Kind::ScheduleFired(f)) => (
            f.submitted
                .as_ref()
                .map(|s| s.pipeline_id.clone())
                .unwrap_or_default(),
            f.note.clone(),
        ),
        _ => (String::new(), String::new()),
    }
}

/// `text` if it is only a date (jiff would take the date of a datetime).
fn bare_date(text: &str) -> Option<Date> {
    (text.len() == 10).then(|| text.parse().ok()).flatten()
}

/// The one logical time of `s` on `date` (a date names a daily run).
fn only_logical_on(s: &Schedule, date: Date) -> Result<DateTime, CoreError> {
    let first = date.to_datetime(jiff::civil::Time::MIN);
    let last = date.to_datetime(jiff::civil::Time::MAX);
    match s.rules.times.between(first, last, 2).as_deref() {
        Some([only]) => Ok(*only),
        Some([]) => Err(CoreError::Invalid(format!(
            "schedule {} has no logical time on {date}",
            shown(&s.spec.name)
        ))),
        _ => Err(CoreError::Invalid(format!(
            "schedule {} has several logical times on {date}: say which with a time, e.g. {}",
            shown(&s.spec.name),
            civil_text(
                s.rules
                    .times
                    .next_after(first.saturating_sub(jiff::SignedDuration::from_nanos(1)))
                    .unwrap_or(first)
            )
        ))),
    }
}

/// A logical time given by a user: RFC 3339 (any offset), or the zone's
/// wall clock, or a date (its midnight).
fn parse_logical(s: &Schedule, text: &str) -> Result<DateTime, String> {
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Ok(s.rules.times.civil_at(instant));
    }
    parse_bound(text, false)
}

/// A backfill bound: a date (its first or, with `end_of_day`, last
/// instant) or a wall-clock time.
fn parse_bound(text: &str, end_of_day: bool) -> Result<DateTime, String> {
    if let Some(date) = bare_date(text) {
        return Ok(if end_of_day {
            date.to_datetime(jiff::civil::Time::MAX)
        } else {
            date.to_datetime(jiff::civil::Time::MIN)
        });
    }
    text.parse::<DateTime>().map_err(|_| {
        format!(
            "{} is not a date (2026-12-07) or a wall-clock time (2026-12-07T02:30:00)",
            shown(text)
        )
    })
}
