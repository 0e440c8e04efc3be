//! `check_invariants`: what must hold after every transition. Tests run it
//! after each step; recovery runs it after replaying the journal.

use std::collections::HashSet;

use super::model::{Counts, Pipeline, UnitSource, UnitState};
use super::spec::Feed;
use super::{Core, CoreError};

impl Core {
    pub fn check_invariants(&self) -> Result<(), CoreError> {
        let fail = |what: String| Err(CoreError::Corrupt(format!("invariant broken: {what}")));
        let mut leased_ids = HashSet::new();
        if self.incarnations.latest_first_lease_id() > self.next_lease_id {
            return fail("the latest incarnation starts past the next lease id".into());
        }
        for (p, pipeline) in self.pipelines.iter().enumerate() {
            if self.pipeline_index.get(&pipeline.id) != Some(&(p as u32)) {
                return fail(format!("pipeline {} is not indexed", pipeline.id));
            }
            for (g, group) in pipeline.groups.iter().enumerate() {
                let mut counts = Counts::default();
                for unit in &group.units {
                    *counts.slot(&unit.state) += 1;
                    match &unit.state {
                        UnitState::Leased { lease_id, .. } => {
                            let clock = self.leases.get(lease_id);
                            if clock.is_none_or(|c| !self.expiries.listed(c.expiry_ms, *lease_id)) {
                                return fail(format!("lease {lease_id} has no clock"));
                            }
                            if *lease_id >= self.next_lease_id || !leased_ids.insert(*lease_id) {
                                return fail(format!("lease id {lease_id} reused or ahead"));
                            }
                        }
                        UnitState::Committed { lease_id, .. }
                            if *lease_id >= self.next_lease_id =>
                        {
                            return fail(format!(
                                "committed lease {lease_id} is ahead of the counter"
                            ));
                        }
                        _ => {}
                    }
                    if let UnitSource::Upstream { group: up, .. } = unit.source
                        && !group.wiring.upstream.contains(&up)
                    {
                        return fail(format!("unit of group {g} fed by non-upstream group {up}"));
                    }
                }
                if counts != group.counts {
                    return fail(format!(
                        "counts of {}/{g} are {:?}, units say {counts:?}",
                        pipeline.id, group.counts
                    ));
                }
                check_feed(pipeline, g)?;
            }
        }
        if leased_ids.len() != self.leases.len() || self.leases.len() != self.expiries.len() {
            return fail("lease index and unit states disagree".into());
        }
        Ok(())
    }
}

/// Units exist exactly as the group's feed says: one per committed upstream
/// unit, none before a barrier opens, `partitions` (or one) after.
fn check_feed(pipeline: &Pipeline, g: usize) -> Result<(), CoreError> {
    let group = &pipeline.groups[g];
    let units = group.counts.total(); // live units; tombstones are not fed
    let fed: u64 = group
        .wiring
        .upstream
        .iter()
        .map(|&u| pipeline.groups[u as usize].counts.committed)
        .sum();
    let ok = match group.wiring.feed {
        Feed::Inputs => group.created && units > 0,
        Feed::PerUnit => group.created && units == fed,
        Feed::Shuffle { partitions } => {
            (group.created && units == partitions as u64) || (!group.created && units == 0)
        }
        Feed::Gather => (group.created && units == 1) || (!group.created && units == 0),
    };
    if !ok {
        return Err(CoreError::Corrupt(format!(
            "invariant broken: group {g} of {} ({:?}) has {units} units, created={}",
            pipeline.id, group.wiring.feed, group.created
        )));
    }
    Ok(())
}
