//! When a schedule fires: the logical times of a cron expression in an IANA
//! time zone, and the instant each one fires at. Pure: time is an argument.
//!
//! A schedule walks its zone's *wall clock* (civil) times, one after
//! another, never the instants: so each logical time comes up exactly once
//! whatever the clocks do.
//! - A local time that does not exist (spring forward: 02:30 on a night
//!   that jumps from 02:00 to 03:00) fires once, at the first valid instant
//!   after it: the transition (03:00).
//! - A local time that happens twice (fall back: 01:30 when 02:00 goes back
//!   to 01:00) fires once, at its first occurrence.
//!
//! Cron expressions are parsed by `croner` (5 fields, or 6 with seconds
//! first); zones come from the IANA database bundled into the binary by
//! `jiff`, so a machine's own zoneinfo does not change when a run fires.

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronTimes {
    cron: Cron,
    zone: TimeZone,
}

impl CronTimes {
    /// Parses `expr` for `zone` (an IANA name such as `America/New_York`,
    /// or `UTC`); the error says which of the two is wrong and why.
    pub fn parse(expr: &str, zone: &str) -> Result<CronTimes, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("cron expression {expr:?}: {e}"))?;
        let zone = TimeZone::get(zone).map_err(|_| {
            format!("time zone {zone:?} is not an IANA zone name (e.g. UTC, America/New_York)")
        })?;
        Ok(CronTimes { cron, zone })
    }

    /// The wall clock time in this zone at `instant`.
    pub fn civil_at(&self, instant: Timestamp) -> DateTime {
        self.zone.to_datetime(instant)
    }

    /// The first logical time after `civil` (a previous logical time, or
    /// the wall clock when the schedule was created); None if the
    /// expression never matches again.
    pub fn next_after(&self, civil: DateTime) -> Option<DateTime> {
        self.cron.find_next_occurrence(&civil, false).ok()
    }

    /// The newest logical time before `civil` (exclusive).
    pub fn previous_before(&self, civil: DateTime) -> Option<DateTime> {
        self.cron.find_previous_occurrence(&civil, false).ok()
    }

    /// Whether `civil` is one of the expression's logical times.
    pub fn is_logical(&self, civil: DateTime) -> bool {
        self.cron.is_time_matching(&civil).unwrap_or(false)
    }

    /// The instant logical time `civil` fires at (see the module docs).
    pub fn fire_at(&self, civil: DateTime) -> Timestamp {
        let ambiguous = self.zone.to_ambiguous_timestamp(civil);
        let resolved = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil),
            AmbiguousOffset::Gap { .. } => {
                // Past the gap by its length; the transition is the latest
                // one at or before that.
                let after = ambiguous
                    .compatible()
                    .map(|ts| ts + SignedDuration::from_nanos(1));
                after.map(|after| {
                    (self.zone.preceding(after).next())
                        .map_or(after, |transition| transition.timestamp())
                })
            }
        };
        // Only civil times beyond jiff's range (years past 9999) fail.
        resolved.unwrap_or(Timestamp::MAX)
    }

    /// The logical times after `cursor` that are due at `now` (fire at or
    /// before it), in order, at most `most` of them (the rest stay due).
    pub fn due(&self, cursor: DateTime, now: Timestamp, most: usize) -> Vec<DateTime> {
        let mut out = Vec::new();
        let mut at = cursor;
        while out.len() < most {
            match self.next_after(at) {
                Some(next) if self.fire_at(next) <= now => {
                    out.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        out
    }

    /// The logical times `from..=to` (wall clock, both inclusive), in
    /// order, at most `most` (a backfill's range): None if there are more.
    pub fn between(&self, from: DateTime, to: DateTime, most: usize) -> Option<Vec<DateTime>> {
        let mut out = Vec::new();
        // `next_after` is exclusive: start just before `from`.
        let mut at = from.checked_sub(SignedDuration::from_nanos(1)).ok()?;
        while let Some(next) = self.next_after(at) {
            if next > to {
                break;
            }
            if out.len() == most {
                return None;
            }
            out.push(next);
            at = next;
        }
        Some(out)
    }

    /// `civil` as RFC 3339 with the offset in force when it fires (for a
    /// local time that does not exist: the transition's).
    pub fn rfc3339(&self, civil: DateTime) -> String {
        self.fire_at(civil)
            .to_zoned(self.zone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(text: &str) -> DateTime {
        text.parse().unwrap()
    }

    fn instant(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The logical times from `start` (wall clock) while they fire before
    /// `until`, each with its firing instant.
    fn walk(times: &CronTimes, start: &str, until: &str) -> Vec<(String, String)> {
        times
            .due(civil(start), instant(until), 10_000)
            .into_iter()
            .map(|c| (c.to_string(), times.fire_at(c).to_string()))
            .collect()
    }

    #[test]
    fn spring_forward_in_new_york_runs_a_missing_local_time_once_at_the_transition() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let daily = CronTimes::parse("30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            walk(&daily, "2026-03-07T03:00", "2026-03-09T12:00Z"),
            [
                (
                    "2026-03-08T02:30:00".to_string(),
                    "2026-03-08T07:00:00Z".to_string()
                ),
                (
                    "2026-03-09T02:30:00".to_string(),
                    "2026-03-09T06:30:00Z".to_string()
                ),
            ]
        );
        assert_eq!(
            daily.rfc3339(civil("2026-03-08T02:30")),
            "2026-03-08T03:00:00-04:00"
        );
    }

    #[test]
    fn fall_back_in_new_york_runs_a_repeated_local_time_once_at_its_first_occurrence() {
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00 UTC).
        let half_hourly = CronTimes::parse("*/30 1-2 * * *", "America/New_York").unwrap();
        assert_eq!(
            walk(&half_hourly, "2026-11-01T00:00", "2026-11-01T08:00Z"),
            [
                (
                    "2026-11-01T01:00:00".to_string(),
                    "2026-11-01T05:00:00Z".to_string()
                ),
                (
                    "2026-11-01T01:30:00".to_string(),
                    "2026-11-01T05:30:00Z".to_string()
                ),
                (
                    "2026-11-01T02:00:00".to_string(),
                    "2026-11-01T07:00:00Z".to_string()
                ),
                (
                    "2026-11-01T02:30:00".to_string(),
                    "2026-11-01T07:30:00Z".to_string()
                ),
            ]
        );
    }

    #[test]
    fn berlin_2026_transitions_and_a_zone_without_dst() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC);
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC).
        let berlin = CronTimes::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let spring = berlin.due(civil("2026-03-29T00:00"), instant("2026-03-29T12:00Z"), 10);
        assert_eq!(spring, [civil("2026-03-29T02:30")]);
        assert_eq!(berlin.fire_at(spring[0]), instant("2026-03-29T01:00Z"));
        let autumn = berlin.due(civil("2026-10-25T00:00"), instant("2026-10-25T12:00Z"), 10);
        assert_eq!(autumn, [civil("2026-10-25T02:30")]);
        assert_eq!(
            berlin.fire_at(autumn[0]),
            instant("2026-10-25T00:30Z"),
            "the first 02:30"
        );

        let tokyo = CronTimes::parse("0 * * * *", "Asia/Tokyo").unwrap();
        let day = tokyo.due(civil("2026-03-29T00:00"), instant("2026-03-30T00:00Z"), 100);
        assert_eq!(day.len(), 24 + 9, "every hour once, no gap or repeat");
        assert!(
            day.windows(2)
                .all(|w| tokyo.fire_at(w[0]).duration_until(tokyo.fire_at(w[1]))
                    == SignedDuration::from_hours(1))
        );
    }

    #[test]
    fn a_month_of_hourly_runs_is_every_hour_once_in_order() {
        let hourly = CronTimes::parse("0 * * * *", "UTC").unwrap();
        let month = hourly.due(
            civil("2026-11-30T23:30"),
            instant("2026-12-31T23:30Z"),
            100_000,
        );
        assert_eq!(month.len(), 31 * 24);
        assert!(month.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            hourly.due(civil("2026-12-31T23:00"), instant("2026-12-31T23:30Z"), 10),
            []
        );
        assert_eq!(
            hourly
                .due(civil("2026-11-30T23:30"), instant("2026-12-31T23:30Z"), 5)
                .len(),
            5
        );
    }

    #[test]
    fn seconds_are_an_optional_first_field() {
        let every_2s = CronTimes::parse("*/2 * * * * *", "UTC").unwrap();
        let due = every_2s.due(
            civil("2026-12-07T10:00:00"),
            instant("2026-12-07T10:00:10Z"),
            100,
        );
        assert_eq!(due.len(), 5);
    }

    #[test]
    fn a_backfill_range_is_inclusive_and_bounded() {
        let daily = CronTimes::parse("0 0 * * *", "Europe/Berlin").unwrap();
        let days = daily
            .between(civil("2026-03-01T00:00"), civil("2026-03-10T00:00"), 100)
            .unwrap();
        assert_eq!(days.len(), 10);
        assert_eq!(
            daily.between(civil("2026-01-01T00:00"), civil("2026-12-31T00:00"), 100),
            None
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named_in_the_error() {
        let err = CronTimes::parse("61 * * * *", "UTC").unwrap_err();
        assert!(err.contains("cron expression \"61 * * * *\""), "{err}");
        let err = CronTimes::parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert!(
            err.contains("\"Mars/Olympus\" is not an IANA zone"),
            "{err}"
        );
    }
}
