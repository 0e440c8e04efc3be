//! Time as an input, from one clock. The master reads every time it uses
//! through a [`Clock`]: the monotonic time leases, retry delays and
//! long-polls are measured on (a wall-clock jump changes nothing), the wall
//! time it journals and compares across restarts (when a pipeline was
//! submitted and finished, when a snapshot was taken, when this start
//! began, and the retention of finished pipelines), and the sleeps of its
//! background loops (the reaper, the compactor, the sweeper, the recorder
//! and retention of finished pipelines, the disk-full probe). So one
//! [`ManualClock`] drives the whole master in a test, without sleeping.
//!
//! Why not tokio's paused clock (`tokio::time::pause`) as the one source:
//! it has no wall time, so retention and journaled times would still read
//! the system's; it needs tokio's `test-util` feature in the build; and it
//! moves on by itself whenever the runtime is idle, which here is whenever
//! a task waits for the journal writer's `fdatasync` on its own thread, so
//! a test would see leases run out while a commit was being synced.
//!
//! Not read through the clock: the pacing of large file writes
//! (`writeback`) and the journal writer's own back-off, which measure the
//! disk rather than the state's time; the edge's pacing of callers (the
//! access layer's request rates and refusal pauses, the live pages'
//! one-second renders), which happens before or beside the state, never
//! in it; and the core's wall anchor, which
//! derives the wall time of failures from the monotonic time and one
//! reading of the clock's both times (`Core::set_wall_clock`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

/// A sleep on a [`Clock`]: resolves once the clock has reached its deadline.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the master reads time. Every reading and every timer of the
/// master's state goes through one of these (see the module docs).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds on a monotonic scale (only differences mean anything).
    fn now_ms(&self) -> u64;

    /// Milliseconds since the Unix epoch, for what is journaled or shown
    /// as a date and compared across restarts.
    fn unix_ms(&self) -> u64;

    /// Resolves once [`Clock::now_ms`] has reached `deadline_ms` (at once
    /// if it has). Cancel-safe: dropping it just stops the wait.
    fn sleep_until(&self, deadline_ms: u64) -> Sleep<'_>;

    /// Resolves once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        let deadline_ms = self.now_ms().saturating_add(millis(duration));
        self.sleep_until(deadline_ms)
    }
}

/// `duration` in whole milliseconds, saturating.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The real clock: milliseconds since the process started (`Instant`),
/// the system's wall clock, and tokio's timers for the sleeps.
pub struct MonotonicClock {
    start: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis)
    }

    fn sleep_until(&self, deadline_ms: u64) -> Sleep<'_> {
        let deadline = self
            .start
            .checked_add(Duration::from_millis(deadline_ms))
            // Far enough for any wait (about 30 years) without overflowing.
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that moves only when told to, for tests: its monotonic and wall
/// readings advance together, and its sleeps end when [`ManualClock::advance`]
/// reaches their deadline.
pub struct ManualClock {
    /// The monotonic reading; its receivers are the sleeps.
    now_ms: watch::Sender<u64>,
    /// The wall reading at monotonic 0.
    unix_ms_at_zero: u64,
    /// Deadlines of the sleeps begun and not yet over or dropped, with how
    /// many wait for each.
    sleeps: Mutex<BTreeMap<u64, usize>>,
    /// Notified whenever a sleep begins or ends, or the clock moves.
    sleeps_changed: Notify,
    /// How many sleeps were ever begun (for tests of the clock itself).
    sleeps_begun: AtomicU64,
}

impl ManualClock {
    /// The wall reading of a [`ManualClock::default`] at its start:
    /// 2026-01-01T00:00:00Z. Not 0, which the journal reads as "unknown".
    pub const DEFAULT_UNIX_MS: u64 = 1_767_225_600_000;

    /// A clock at monotonic 0 whose wall reading is then `unix_ms`.
    pub fn new(unix_ms: u64) -> ManualClock {
        ManualClock {
            now_ms: watch::channel(0).0,
            unix_ms_at_zero: unix_ms,
            sleeps: Mutex::new(BTreeMap::new()),
            sleeps_changed: Notify::new(),
            sleeps_begun: AtomicU64::new(0),
        }
    }

    /// Moves both readings on by `ms` and wakes the sleeps that are due.
    pub fn advance(&self, ms: u64) {
        self.now_ms.send_modify(|now| *now = now.saturating_add(ms));
        self.sleeps_changed.notify_waiters();
    }

    /// How many sleeps wait for a time still ahead of the clock.
    pub fn sleeping(&self) -> usize {
        let now = *self.now_ms.borrow();
        let sleeps = self.sleeps.lock();
        sleeps.range(now.saturating_add(1)..).map(|(_, n)| n).sum()
    }

    /// Resolves once exactly `n` sleeps wait for a time still ahead: in a
    /// test, once the tasks the last [`ManualClock::advance`] woke have
    /// done their work (which may wait for real events, such as a journal
    /// sync) and gone back to sleep on this clock.
    pub async fn until_sleeping(&self, n: usize) {
        loop {
            let changed = self.sleeps_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.sleeping() == n {
                return;
            }
            changed.await;
        }
    }

    /// How many sleeps were begun since the clock was made.
    pub fn sleeps_begun(&self) -> u64 {
        self.sleeps_begun.load(Ordering::SeqCst)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(ManualClock::DEFAULT_UNIX_MS)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now_ms.borrow()
    }

    fn unix_ms(&self) -> u64 {
        self.unix_ms_at_zero.saturating_add(self.now_ms())
    }

    fn sleep_until(&self, deadline_ms: u64) -> Sleep<'_> {
        let mut now = self.now_ms.subscribe();
        let listed = ListedSleep::new(self, deadline_ms);
        Box::pin(async move {
            let _listed = listed;
            // Fails only if the sender is gone, which outlives this borrow.
            let _ = now.wait_for(|&now| now >= deadline_ms).await;
        })
    }
}

/// A sleep's entry in [`ManualClock::sleeps`], removed when it ends.
struct ListedSleep<'a> {
    clock: &'a ManualClock,
    deadline_ms: u64,
}

impl<'a> ListedSleep<'a> {
    fn new(clock: &'a ManualClock, deadline_ms: u64) -> ListedSleep<'a> {
        *clock.sleeps.lock().entry(deadline_ms).or_default() += 1;
        clock.sleeps_begun.fetch_add(1, Ordering::SeqCst);
        clock.sleeps_changed.notify_waiters();
        ListedSleep { clock, deadline_ms }
    }
}

impl Drop for ListedSleep<'_> {
    fn drop(&mut self) {
        let mut sleeps = self.clock.sleeps.lock();
        if let Some(n) = sleeps.get_mut(&self.deadline_ms) {
            *n -= 1;
            if *n == 0 {
                sleeps.remove(&self.deadline_ms);
            }
        }
        drop(sleeps);
        self.clock.sleeps_changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clocks_readings_advance_together() {
        let clock = ManualClock::default();
        assert_eq!(clock.now_ms(), 0);
        assert_eq!(clock.unix_ms(), ManualClock::DEFAULT_UNIX_MS);
        clock.advance(1_500);
        assert_eq!(clock.now_ms(), 1_500);
        assert_eq!(clock.unix_ms(), ManualClock::DEFAULT_UNIX_MS + 1_500);
    }

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_reaches_its_deadline() {
        let clock = ManualClock::default();
        let mut sleep = clock.sleep(Duration::from_millis(1_000));
        assert_eq!(clock.sleeping(), 1);
        assert!(futures_util::poll!(&mut sleep).is_pending());
        clock.advance(999);
        assert!(futures_util::poll!(&mut sleep).is_pending());
        clock.advance(1);
        assert_eq!(clock.sleeping(), 0, "due, though not yet polled");
        assert!(futures_util::poll!(&mut sleep).is_ready());
        // A sleep whose deadline has passed ends at once.
        clock.sleep_until(10).await;
        assert_eq!(clock.sleeps_begun(), 2);
    }

    #[tokio::test]
    async fn until_sleeping_waits_for_tasks_to_go_back_to_sleep() {
        let clock = std::sync::Arc::new(ManualClock::default());
        let (rounds_tx, mut rounds) = tokio::sync::mpsc::unbounded_channel();
        let ticker = {
            let clock = std::sync::Arc::clone(&clock);
            tokio::spawn(async move {
                for round in 0.. {
                    clock.sleep(Duration::from_secs(1)).await;
                    if rounds_tx.send(round).is_err() {
                        return;
                    }
                }
            })
        };
        clock.until_sleeping(1).await;
        clock.advance(1_000);
        clock.until_sleeping(1).await;
        assert_eq!(rounds.try_recv(), Ok(0), "one round ran, then slept again");
        assert!(rounds.try_recv().is_err());
        ticker.abort();
        let _ = ticker.await;
        assert_eq!(clock.sleeping(), 0, "a dropped sleep is no longer listed");
    }

    #[tokio::test]
    async fn the_real_clocks_sleep_follows_its_monotonic_reading() {
        let clock = MonotonicClock::default();
        let before = clock.now_ms();
        clock.sleep(Duration::from_millis(20)).await;
        assert!(clock.now_ms() >= before + 20);
        assert!(clock.unix_ms() > 0);
    }
}
