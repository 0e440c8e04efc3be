//! Units that may be leased, oldest first, in two lanes: live work, then
//! the runs of backfills. A backfill's units are leased only when no live
//! unit is leasable, so a backfill over months never starves today's run.
//! Entries are checked when popped (see `Core::leasable`), so a unit that
//! left Pending needs no removal.

use std::collections::VecDeque;

use super::model::Pos;

/// Which lane a pipeline's units wait in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Live,
    Backfill,
}

#[derive(Debug, Clone, Default)]
pub struct Ready {
    live: VecDeque<Pos>,
    backfill: VecDeque<Pos>,
}

/// Capacity a lane keeps however short it gets (12 B a unit).
const CAPACITY_KEPT: usize = 4096;

impl Ready {
    pub fn len(&self) -> usize {
        self.live.len() + self.backfill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.backfill.is_empty()
    }

    fn lane_mut(&mut self, lane: Lane) -> &mut VecDeque<Pos> {
        match lane {
            Lane::Live => &mut self.live,
            Lane::Backfill => &mut self.backfill,
        }
    }

    pub fn push_back(&mut self, pos: Pos, lane: Lane) {
        self.lane_mut(lane).push_back(pos);
    }

    /// Puts back what `pop_front` gave, first in its lane.
    pub fn push_front(&mut self, pos: Pos, lane: Lane) {
        self.lane_mut(lane).push_front(pos);
    }

    /// The oldest live unit, or else the oldest backfill unit.
    pub fn pop_front(&mut self) -> Option<(Pos, Lane)> {
        if let Some(pos) = self.live.pop_front() {
            return Some((pos, Lane::Live));
        }
        self.backfill.pop_front().map(|pos| (pos, Lane::Backfill))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Pos) -> bool) {
        self.live.retain(&mut keep);
        self.backfill.retain(&mut keep);
    }

    pub fn retain_mut(&mut self, mut keep: impl FnMut(&mut Pos) -> bool) {
        self.live.retain_mut(&mut keep);
        self.backfill.retain_mut(&mut keep);
    }

    /// Gives back memory a burst left behind (after deletions).
    pub fn shrink(&mut self) {
        for lane in [&mut self.live, &mut self.backfill] {
            if lane.capacity() > 4 * lane.len().max(CAPACITY_KEPT) {
                lane.shrink_to(2 * lane.len().max(CAPACITY_KEPT));
            }
        }
    }
}
