//! A schedule's settings, parsed and checked once: its cron times in its
//! zone, what missed logical times do (`catchup`), what a due time does
//! while runs are unfinished (`overlap`, `max_active`), and its share of a
//! jitter window. The master keeps them with each schedule; a client checks
//! a file with the same code before sending it.

use taskmaster_proto::v1::ScheduleSpec;

use crate::cron::CronTimes;

/// What a logical time missed while the master was down or the schedule
/// paused does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// Every missed logical time runs, oldest first.
    All,
    /// Only the newest missed one runs.
    Latest,
    /// None runs; the schedule goes on from the next one on time.
    None,
}

/// What a due logical time does while `max_active` runs are unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// It is passed over, with a run saying why.
    Skip,
    /// It waits until a run finishes (and so do the ones after it).
    Queue,
    /// It runs anyway: no limit.
    Allow,
}

/// The settings of a [`ScheduleSpec`], parsed once.
#[derive(Debug, Clone)]
pub struct Rules {
    pub times: CronTimes,
    pub catchup: Catchup,
    pub overlap: Overlap,
    pub max_active: u32,
    /// This schedule's stable share of its jitter window.
    pub jitter_offset_ms: u64,
}

impl Rules {
    /// Parses and checks a spec's schedule settings (not its pipeline);
    /// the error names the field.
    pub fn parse(spec: &ScheduleSpec) -> Result<Rules, String> {
        let zone = if spec.timezone.is_empty() {
            "UTC"
        } else {
            &spec.timezone
        };
        let times = CronTimes::parse(&spec.cron, zone)?;
        let catchup = match spec.catchup.as_str() {
            "" | "all" => Catchup::All,
            "latest" => Catchup::Latest,
            "none" => Catchup::None,
            other => {
                return Err(format!("catchup {other:?} is not one of all, latest, none"));
            }
        };
        let overlap = match spec.overlap.as_str() {
            "" | "skip" => Overlap::Skip,
            "queue" => Overlap::Queue,
            "allow" => Overlap::Allow,
            other => {
                return Err(format!(
                    "overlap {other:?} is not one of skip, queue, allow"
                ));
            }
        };
        if spec.max_active > MAX_ACTIVE_MAX {
            return Err(format!(
                "max_active {} is over {MAX_ACTIVE_MAX}",
                spec.max_active
            ));
        }
        if spec.jitter_ms > JITTER_MS_MAX {
            return Err(format!(
                "jitter of {} ms is over a day ({JITTER_MS_MAX} ms)",
                spec.jitter_ms
            ));
        }
        Ok(Rules {
            times,
            catchup,
            overlap,
            max_active: spec.max_active.max(1),
            jitter_offset_ms: jitter_offset(&spec.name, spec.jitter_ms),
        })
    }
}

/// Runs of one schedule (or backfill) at once, at most.
pub const MAX_ACTIVE_MAX: u32 = 1_000;
/// The widest jitter window: a day.
pub const JITTER_MS_MAX: u64 = 24 * 3600 * 1000;

/// A stable offset in `0..=window_ms` drawn from `name` (FNV-1a: the same
/// in every build, unlike std's hasher), so a schedule's runs stay evenly
/// spaced and schedules due at one instant spread over the window.
pub fn jitter_offset(name: &str, window_ms: u64) -> u64 {
    if window_ms == 0 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % (window_ms + 1)
}
