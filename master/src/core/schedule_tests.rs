//! The scheduler with time as an argument: months of runs, outages, DST,
//! jitter and backfills in milliseconds, each run checked to fire once.

use std::collections::BTreeMap;

use taskmaster_proto::journal::{Record, record::Kind};
use taskmaster_proto::v1::*;

use super::Core;
use super::tests::{core, done, two_groups};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn ms(rfc3339: &str) -> u64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

fn schedule(name: &str, cron: &str, zone: &str) -> ScheduleSpec {
    let mut pipeline = two_groups(1);
    pipeline.name = "nightly".into();
    ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        timezone: zone.into(),
        pipeline: Some(pipeline),
        ..Default::default()
    }
}

fn add(core: &mut Core, spec: ScheduleSpec, unix_ms: u64) {
    core.add_schedule(spec, unix_ms, 0).unwrap();
}

/// Ticks from `from` to `to` every `step`, like the runtime's loop;
/// returns every record and checks each replays into the same state.
fn tick_through(core: &mut Core, from: u64, to: u64, step: u64) -> Vec<Record> {
    let mut all = Vec::new();
    let mut t = from;
    while t <= to {
        all.extend(core.schedule_tick(t, 0, 100));
        t += step;
    }
    all
}

/// (logical time, fired at) of each run that submitted a pipeline.
fn fired(records: &[Record]) -> Vec<(String, u64)> {
    records
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::ScheduleFired(f)) if f.submitted.is_some() => {
                Some((f.logical.clone(), f.unix_ms))
            }
            _ => None,
        })
        .collect()
}

fn passed_over(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::ScheduleFired(f)) if f.submitted.is_none() => Some(f.note.clone()),
            _ => None,
        })
        .collect()
}

fn finish_all(core: &mut Core) {
    for status in core.list() {
        if status.state() == PipelineState::Pending || status.state() == PipelineState::Running {
            core.cancel(&status.pipeline_id, 0).unwrap();
        }
    }
}

fn succeed_all(core: &mut Core) {
    loop {
        let (_, leases) = core.lease("w", 100, false, 0).unwrap();
        if leases.is_empty() {
            return;
        }
        let items: Vec<_> = leases.iter().map(|l| done(l, &["o"])).collect();
        core.commit("tok", &items, 0).unwrap();
    }
}

#[test]
fn a_month_of_hourly_runs_fires_each_hour_once_in_order() {
    let mut core = core();
    let start = ms("2026-04-01T00:00:30Z");
    let mut spec = schedule("hourly", "0 * * * *", "UTC");
    spec.overlap = "allow".into();
    let mut journal = core.add_schedule(spec, start, 0).unwrap();
    let records = tick_through(&mut core, start, start + 30 * DAY + 7 * MINUTE, 7 * MINUTE);
    let runs = fired(&records);
    assert_eq!(runs.len(), 30 * 24);
    for (i, (logical, at)) in runs.iter().enumerate() {
        let expected = start - 30_000 + (i as u64 + 1) * HOUR;
        assert_eq!(ms(&format!("{logical}Z")), expected);
        assert!(*at >= expected && *at < expected + 7 * MINUTE);
    }
    // Replay of the journal rebuilds the same cursor and runs.
    journal.extend(records);
    let mut fresh = super::tests::core();
    fresh.replay(journal, 0, 0).unwrap();
    assert_eq!(
        fresh.schedule_runs("hourly", 0).unwrap(),
        core.schedule_runs("hourly", 0).unwrap()
    );
    // Nothing fires twice: a tick at the same time again fires nothing.
    assert!(
        core.schedule_tick(start + 30 * DAY + 7 * MINUTE, 0, 100)
            .is_empty()
    );
}

#[test]
fn a_three_day_outage_is_caught_up_as_each_policy_says() {
    let start = ms("2026-05-01T00:10:00Z");
    let back = start + 3 * DAY + 30 * MINUTE; // 00:40, three days later
    let mut results = BTreeMap::new();
    for catchup in ["all", "latest", "none"] {
        let mut core = core();
        let mut spec = schedule("h", "0 * * * *", "UTC");
        spec.catchup = catchup.into();
        spec.overlap = "allow".into();
        add(&mut core, spec, start);
        let first = core.schedule_tick(ms("2026-05-01T01:00:01Z"), 0, 1000);
        assert_eq!(
            fired(&first).len(),
            1,
            "{catchup}: the run before the outage"
        );
        // The master is down for three days, then ticks again.
        let mut after = Vec::new();
        for k in 0..5 {
            after.extend(core.schedule_tick(back + k * 1000, 0, 1000));
        }
        results.insert(catchup, (fired(&after), passed_over(&after)));
    }
    let (all, all_skipped) = &results["all"];
    assert_eq!(
        all.len(),
        71,
        "every missed hour runs (02:00 on the 1st to 00:00 on the 4th)"
    );
    assert!(all_skipped.is_empty());
    assert_eq!(all.first().unwrap().0, "2026-05-01T02:00:00");
    assert_eq!(all.last().unwrap().0, "2026-05-04T00:00:00");
    let (latest, latest_skipped) = &results["latest"];
    assert_eq!(
        latest.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["2026-05-04T00:00:00"]
    );
    assert_eq!(latest_skipped.len(), 1, "{latest_skipped:?}");
    assert!(latest_skipped[0].contains("catchup = latest"));
    let (none, none_skipped) = &results["none"];
    assert!(none.is_empty(), "nothing missed runs: {none:?}");
    assert_eq!(none_skipped.len(), 1);
    assert!(none_skipped[0].contains("catchup = none"));
}

#[test]
fn catchup_none_still_runs_a_time_that_is_only_just_due() {
    let mut core = core();
    let start = ms("2026-05-01T00:10:00Z");
    let mut spec = schedule("h", "0 * * * *", "UTC");
    spec.catchup = "none".into();
    add(&mut core, spec, start);
    let records = core.schedule_tick(start + 50 * MINUTE + 5_000, 0, 10);
    assert_eq!(fired(&records).len(), 1);
}

#[test]
fn overlap_skip_queue_and_allow() {
    let start = ms("2026-06-01T00:00:30Z");
    for overlap in ["skip", "queue", "allow"] {
        let mut core = core();
        let mut spec = schedule("m", "* * * * *", "UTC");
        spec.overlap = overlap.into();
        spec.max_active = 2;
        add(&mut core, spec, start);
        // Five minutes with nothing finishing.
        let records = tick_through(&mut core, start, start + 5 * MINUTE, 10_000);
        let (runs, skipped) = (fired(&records), passed_over(&records));
        match overlap {
            "skip" => {
                assert_eq!(runs.len(), 2);
                assert_eq!(skipped.len(), 3);
                assert!(skipped[0].contains("overlap = skip"), "{skipped:?}");
            }
            "queue" => {
                assert_eq!(runs.len(), 2);
                assert!(skipped.is_empty());
                let info = &core.schedule_infos(start + 5 * MINUTE)[0];
                assert_eq!(info.waiting, 3, "{info:?}");
                // Runs finish: the queued times run, in order, two at a time.
                finish_all(&mut core);
                let more = core.schedule_tick(start + 5 * MINUTE + 1, 0, 100);
                let more = fired(&more);
                assert_eq!(
                    more.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
                    ["2026-06-01T00:03:00", "2026-06-01T00:04:00"]
                );
            }
            _ => {
                assert_eq!(runs.len(), 5);
                assert!(skipped.is_empty());
            }
        }
    }
}

/// Runs of a daily 02:30 (spring) or 01:30 (autumn) schedule over the
/// night of a transition, ticking each minute: (logical, fired at).
fn night(zone: &str, cron: &str, from: &str, days: u64) -> Vec<(String, u64)> {
    let mut core = core();
    let mut spec = schedule("d", cron, zone);
    spec.overlap = "allow".into();
    let start = ms(from);
    add(&mut core, spec, start);
    fired(&tick_through(&mut core, start, start + days * DAY, MINUTE))
}

#[test]
fn spring_forward_runs_a_missing_time_once_at_the_transition() {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
    let runs = night("America/New_York", "30 2 * * *", "2026-03-07T00:00:00Z", 3);
    let logicals: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        logicals,
        [
            "2026-03-07T02:30:00",
            "2026-03-08T02:30:00",
            "2026-03-09T02:30:00"
        ]
    );
    assert_eq!(runs[1].1, ms("2026-03-08T07:00:00Z"));
    assert_eq!(runs[2].1, ms("2026-03-09T06:30:00Z"));
    // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z).
    let runs = night("Europe/Berlin", "30 2 * * *", "2026-03-28T00:00:00Z", 3);
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1].0, "2026-03-29T02:30:00");
    assert_eq!(runs[1].1, ms("2026-03-29T01:00:00Z"));
}

#[test]
fn fall_back_runs_a_repeated_time_once_at_its_first_occurrence() {
    // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00Z).
    let runs = night("America/New_York", "30 1 * * *", "2026-10-31T00:00:00Z", 3);
    let logicals: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        logicals,
        [
            "2026-10-31T01:30:00",
            "2026-11-01T01:30:00",
            "2026-11-02T01:30:00"
        ]
    );
    assert_eq!(
        runs[1].1,
        ms("2026-11-01T05:30:00Z"),
        "the first 01:30 (EDT)"
    );
    // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z).
    let runs = night("Europe/Berlin", "30 2 * * *", "2026-10-24T00:00:00Z", 3);
    assert_eq!(runs.len(), 3);
    assert_eq!(
        runs[1].1,
        ms("2026-10-25T00:30:00Z"),
        "the first 02:30 (CEST)"
    );
    // Tokyo has no DST: every day at 02:30 +09:00.
    let runs = night("Asia/Tokyo", "30 2 * * *", "2026-03-07T00:00:00Z", 3);
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].1, ms("2026-03-07T17:30:00Z"));
}

#[test]
fn runs_get_their_logical_time_as_parameters() {
    let mut core = core();
    let start = ms("2026-03-07T00:00:00Z");
    let mut spec = schedule("d", "30 2 * * *", "America/New_York");
    spec.overlap = "allow".into();
    add(&mut core, spec, start);
    let records = core.schedule_tick(ms("2026-03-08T07:00:00Z"), 0, 10);
    assert_eq!(fired(&records).len(), 2);
    let Some(Kind::ScheduleFired(f)) = &records[0].kind else {
        panic!("{records:?}")
    };
    let sub = f.submitted.as_ref().unwrap();
    let params = &sub.spec.as_ref().unwrap().params;
    assert_eq!(params["ds"], "2026-03-07");
    assert_eq!(params["ts"], "2026-03-07T02:30:00-05:00");
    assert_eq!(params["data_interval_end"], "2026-03-07T02:30:00-05:00");
    assert_eq!(sub.pipeline_id, "d-20260307T023000");
    // The run after the transition: its interval spans it.
    let Some(Kind::ScheduleFired(f)) = &records[1].kind else {
        panic!("{records:?}")
    };
    let params = &f.submitted.as_ref().unwrap().spec.as_ref().unwrap().params;
    assert_eq!(params["ds"], "2026-03-08");
    assert_eq!(params["ts"], "2026-03-08T03:00:00-04:00");
    assert_eq!(params["data_interval_start"], "2026-03-07T02:30:00-05:00");
}

#[test]
fn jitter_spreads_a_thousand_midnight_schedules_and_each_tick_is_bounded() {
    let mut core = core();
    let start = ms("2026-07-01T23:00:00Z");
    for i in 0..1000 {
        let mut spec = schedule(&format!("s{i}"), "0 0 * * *", "UTC");
        spec.jitter_ms = HOUR;
        add(&mut core, spec, start);
    }
    let midnight = ms("2026-07-02T00:00:00Z");
    // Every 6 minutes after midnight, at most 100 runs a tick.
    let mut per_bucket = Vec::new();
    let mut total = 0;
    for k in 1..=10 {
        let records = core.schedule_tick(midnight + k * 6 * MINUTE, 0, 150);
        assert!(records.len() <= 150);
        total += records.len();
        per_bucket.push(records.len());
    }
    assert_eq!(total, 1000, "{per_bucket:?}");
    // About 100 in each tenth of the window; none holds a herd.
    assert!(
        per_bucket.iter().all(|&n| (50..=150).contains(&n)),
        "{per_bucket:?}"
    );
    // The offset is stable: the same name gets the same one.
    assert_eq!(
        taskmaster_spec::schedule_rules::jitter_offset("s1", HOUR),
        taskmaster_spec::schedule_rules::jitter_offset("s1", HOUR)
    );
    // A bound per tick leaves the rest due, never lost.
    let mut core = super::tests::core();
    for i in 0..25 {
        add(
            &mut core,
            schedule(&format!("t{i}"), "0 0 * * *", "UTC"),
            start,
        );
    }
    let sizes: Vec<usize> = (0..4)
        .map(|k| core.schedule_tick(midnight + k, 0, 10).len())
        .collect();
    assert_eq!(sizes, [10, 10, 5, 0]);
}

#[test]
fn a_backfill_runs_its_range_in_order_k_at_a_time_and_again_only_what_failed() {
    let mut core = core();
    let now = ms("2026-08-01T12:00:00Z");
    add(&mut core, schedule("d", "0 3 * * *", "Europe/Berlin"), now);
    let (_, id, times) = core
        .backfill(
            "d",
            "2026-07-01",
            "2026-07-10",
            2,
            false,
            false,
            false,
            now,
            0,
        )
        .unwrap();
    assert_eq!(times.len(), 10);
    assert_eq!(times[0], "2026-07-01T03:00:00+02:00");
    let mut order = Vec::new();
    for _ in 0..20 {
        let records = core.schedule_tick(now, 0, 100);
        assert!(fired(&records).len() <= 2, "never more than 2 at once");
        order.extend(fired(&records).into_iter().map(|r| r.0));
        let info = core.backfill_info_of(&id).unwrap();
        assert!(info.running <= 2, "{info:?}");
        // Half succeed, half are cancelled (failed, for the backfill).
        if order.len() % 4 == 0 {
            finish_all(&mut core);
        } else {
            succeed_all(&mut core);
        }
    }
    assert_eq!(order.len(), 10);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "oldest first");
    let info = core.backfill_info_of(&id).unwrap();
    assert!(info.finished, "{info:?}");
    assert_eq!(info.succeeded + info.failed, 10);
    assert!(info.failed > 0);
    // Again: only the logical times whose run did not succeed.
    let (_, _, again) = core
        .backfill(
            "d",
            "2026-07-01",
            "2026-07-10",
            2,
            true,
            false,
            true,
            now,
            0,
        )
        .unwrap();
    assert_eq!(again.len() as u32, info.failed);
    assert!(
        again.windows(2).all(|w| w[0] > w[1]),
        "reverse: newest first"
    );
}

#[test]
fn backfill_set_pause_resume_cancel() {
    let mut core = core();
    let now = ms("2026-08-01T12:00:00Z");
    add(&mut core, schedule("d", "0 3 * * *", "UTC"), now);
    let (_, id, _) = core
        .backfill(
            "d",
            "2026-07-01",
            "2026-07-10",
            1,
            false,
            true,
            false,
            now,
            0,
        )
        .unwrap();
    core.change_backfill(&id, BackfillAction::Pause, 0, 0)
        .unwrap();
    assert!(core.schedule_tick(now, 0, 100).is_empty());
    core.change_backfill(&id, BackfillAction::Resume, 0, 0)
        .unwrap();
    core.change_backfill(&id, BackfillAction::Set, 3, 0)
        .unwrap();
    let records = core.schedule_tick(now, 0, 100);
    assert_eq!(fired(&records).len(), 3);
    // --no-retries: every group of every run gets a single attempt.
    let Some(Kind::ScheduleFired(f)) = &records[0].kind else {
        panic!()
    };
    let spec = f.submitted.as_ref().unwrap().spec.as_ref().unwrap();
    assert!(spec.groups.iter().all(|g| g.max_attempts == 1));
    core.change_backfill(&id, BackfillAction::Cancel, 0, 0)
        .unwrap();
    finish_all(&mut core);
    assert!(core.schedule_tick(now, 0, 100).is_empty());
    assert!(core.backfill_info_of(&id).unwrap().finished);
    let refused = core.change_backfill(&id, BackfillAction::Resume, 0, 0);
    assert!(refused.unwrap_err().to_string().contains("cancelled"));
}

#[test]
fn bad_schedules_and_backfills_are_refused_and_change_nothing() {
    let mut core = core();
    let now = ms("2026-08-01T12:00:00Z");
    let cases: Vec<(ScheduleSpec, &str)> = vec![
        (schedule("a", "61 * * * *", "UTC"), "cron expression"),
        (
            schedule("a", "0 * * * *", "Mars/Olympus"),
            "not an IANA zone",
        ),
        (
            ScheduleSpec {
                catchup: "sometimes".into(),
                ..schedule("a", "0 * * * *", "UTC")
            },
            "catchup",
        ),
        (
            ScheduleSpec {
                overlap: "maybe".into(),
                ..schedule("a", "0 * * * *", "UTC")
            },
            "overlap",
        ),
        (schedule("a/b", "0 * * * *", "UTC"), "path separator"),
        (
            {
                let mut s = schedule("a", "0 * * * *", "UTC");
                let p = s.pipeline.as_mut().unwrap();
                p.params.insert("ds".into(), "x".into());
                s
            },
            "set by the scheduler",
        ),
        (
            ScheduleSpec {
                webhook: "ftp://x".into(),
                ..schedule("a", "0 * * * *", "UTC")
            },
            "webhook",
        ),
    ];
    for (spec, says) in cases {
        let err = core.add_schedule(spec, now, 0).unwrap_err().to_string();
        assert!(err.contains(says), "{err:?} should say {says:?}");
    }
    assert!(core.schedule_infos(now).is_empty());
    add(&mut core, schedule("a", "0 3 * * *", "UTC"), now);
    let twice = core.add_schedule(schedule("a", "0 * * * *", "UTC"), now, 0);
    assert!(twice.unwrap_err().to_string().contains("exists"));
    let backfill = |core: &mut Core, from: &str, to: &str| {
        core.backfill("a", from, to, 1, false, false, false, now, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(backfill(&mut core, "2026-07-10", "2026-07-01").contains("after"));
    assert!(backfill(&mut core, "yesterday", "2026-07-01").contains("--from"));
    assert!(backfill(&mut core, "1990-01-01", "2026-07-01").contains("more than 10000 runs"));
    core.set_admission(super::admission::Admission {
        backfill_runs_max: 5,
        ..core.admission()
    });
    let err = backfill(&mut core, "2026-06-01", "2026-06-10");
    assert!(
        err.contains("more than 5 runs (--max-backfill-runs)"),
        "{err}"
    );
    let unknown = core.backfill(
        "nope",
        "2026-07-01",
        "2026-07-02",
        1,
        false,
        false,
        false,
        now,
        0,
    );
    assert!(unknown.unwrap_err().to_string().contains("no schedule"));
    assert!(core.backfill_infos().is_empty());
    let trigger = core.trigger_schedule("a", "2026-07-01T04:00:00", now, 0);
    assert!(
        trigger
            .unwrap_err()
            .to_string()
            .contains("not a logical time")
    );
}

#[test]
fn paused_schedules_fire_nothing_and_catch_up_on_resume() {
    let mut core = core();
    let start = ms("2026-05-01T00:10:00Z");
    add(&mut core, schedule("h", "0 * * * *", "UTC"), start);
    core.change_schedule("h", ScheduleAction::Pause, 0).unwrap();
    assert!(core.schedule_tick(start + 5 * HOUR, 0, 100).is_empty());
    core.change_schedule("h", ScheduleAction::Resume, 0)
        .unwrap();
    let mut spec_all = core.schedule_infos(start)[0].spec.clone().unwrap();
    assert_eq!(spec_all.catchup, "");
    spec_all.name = "unused".into();
    // overlap = skip (the default) with runs unfinished: 1 runs, 4 pass.
    let records = core.schedule_tick(start + 5 * HOUR, 0, 100);
    assert_eq!(fired(&records).len(), 1);
    assert_eq!(passed_over(&records).len(), 4);
    core.change_schedule("h", ScheduleAction::Remove, 0)
        .unwrap();
    assert!(core.schedule_infos(start).is_empty());
    assert_eq!(core.list().len(), 1, "its pipelines stay");
}

#[test]
fn a_manual_trigger_does_not_move_the_cursor_and_a_rollback_keeps_it() {
    let mut core = core();
    let start = ms("2026-05-01T00:10:00Z");
    let mut spec = schedule("h", "0 * * * *", "UTC");
    spec.overlap = "allow".into();
    add(&mut core, spec, start);
    let snapshot = core.clone();
    let (_, run) = core.trigger_schedule("h", "", start, 0).unwrap();
    assert_eq!(run.logical, "2026-05-01T00:00:00+00:00");
    assert_eq!(run.trigger, "manual");
    let records = core.schedule_tick(start + HOUR, 0, 10);
    assert_eq!(fired(&records).len(), 1);
    // Roll back to before both runs: the schedule keeps its cursor.
    let (mut rolled, _) = core.rolled_back(snapshot, 0);
    assert!(rolled.schedule_tick(start + HOUR, 0, 10).is_empty());
    let runs = rolled.schedule_runs("h", 0).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.state == "deleted"), "{runs:?}");
    // And a snapshot round trip keeps schedules, runs and cursors.
    let snap = core.to_snapshot(1, 0);
    let back = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    assert_eq!(
        back.schedule_runs("h", 0).unwrap(),
        core.schedule_runs("h", 0).unwrap()
    );
    assert_eq!(back.schedule_infos(start), core.schedule_infos(start));
    super::tests::assert_snapshot_encodes(&core);
}

#[test]
fn a_backfills_units_are_leased_after_live_ones() {
    let mut core = core();
    let now = ms("2026-08-01T12:00:00Z");
    add(&mut core, schedule("d", "0 3 * * *", "UTC"), now);
    core.backfill(
        "d",
        "2026-07-01",
        "2026-07-03",
        3,
        false,
        false,
        false,
        now,
        0,
    )
    .unwrap();
    assert_eq!(fired(&core.schedule_tick(now, 0, 100)).len(), 3);
    // Live work submitted after the backfill's runs goes first.
    core.submit("live-1", two_groups(2), now, 0).unwrap();
    let (_, leases) = core.lease("w", 2, false, 0).unwrap();
    let pipelines: Vec<&str> = leases
        .iter()
        .map(|l| l.unit.as_ref().unwrap().pipeline_id.as_str())
        .collect();
    assert_eq!(pipelines, ["live-1", "live-1"]);
    // Then the backfill's, oldest first; and a snapshot keeps the lanes.
    let snap = core.to_snapshot(1, 0);
    let mut back = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
    core.submit("live-2", two_groups(1), now, 0).unwrap();
    back.submit("live-2", two_groups(1), now, 0).unwrap();
    for core in [&mut core, &mut back] {
        let (_, leases) = core.lease("w", 4, false, 0).unwrap();
        let pipelines: Vec<&str> = leases
            .iter()
            .map(|l| l.unit.as_ref().unwrap().pipeline_id.as_str())
            .collect();
        assert_eq!(
            pipelines,
            [
                "live-2",
                "d-20260701T030000",
                "d-20260702T030000",
                "d-20260703T030000"
            ]
        );
    }
}
