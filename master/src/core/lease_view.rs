//! What a worker is told about a leased unit: a full [`Lease`], or the
//! compact form (`taskmaster_proto::compact`), where what the leases of
//! one group share goes once per reply in a [`LeaseGroup`].

use taskmaster_proto::v1::{InputSlice, Lease, LeaseGroup};

use taskmaster_proto::compact::LeaseOwn;
pub use taskmaster_proto::compact::output_prefix;

use super::Core;
use super::model::{Pos, UnitSource, UnitState};

/// The leases of one answer, in the form the caller asked for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Leases {
    pub leases: Vec<Lease>,
    /// What the compact leases share (empty for full leases).
    pub groups: Vec<LeaseGroup>,
    compact: bool,
    /// The (pipeline, group) of the last lease and its index in `groups`.
    last_group: Option<((u32, u32), usize)>,
}

impl Leases {
    /// An empty answer of up to `most` leases, compact when `compact`
    /// and `most` is more than one: a single lease shares nothing with
    /// another, and its group would cost more than it saves (callgrind,
    /// BENCHMARKS-HISTORY.md, twelfth pass). [`taskmaster_proto::compact::expand`]
    /// passes full leases unchanged.
    pub fn new(compact: bool, most: usize) -> Leases {
        Leases {
            leases: Vec::with_capacity(most),
            groups: Vec::new(),
            compact: compact && most > 1,
            last_group: None,
        }
    }
}

/// The leases themselves (their groups aside).
impl IntoIterator for Leases {
    type Item = Lease;
    type IntoIter = std::vec::IntoIter<Lease>;

    fn into_iter(self) -> Self::IntoIter {
        self.leases.into_iter()
    }
}

impl<'a> IntoIterator for &'a Leases {
    type Item = &'a Lease;
    type IntoIter = std::slice::Iter<'a, Lease>;

    fn into_iter(self) -> Self::IntoIter {
        self.leases.iter()
    }
}

/// The leases themselves, as a slice (their groups aside).
impl std::ops::Deref for Leases {
    type Target = [Lease];

    fn deref(&self) -> &[Lease] {
        &self.leases
    }
}

impl Core {
    /// Adds the lease `lease_id` on `pos` to `out`, in its form.
    pub(super) fn push_lease(&self, out: &mut Leases, pos: Pos, lease_id: u64) {
        if !out.compact {
            out.leases.push(self.lease_view(pos, lease_id));
            return;
        }
        let key = (pos.pipeline, pos.group);
        // A reply's leases mostly come from one group: the last one's.
        let index = match out.last_group {
            Some((last, index)) if last == key => index,
            _ => {
                let pipeline = &self.pipelines[pos.pipeline as usize];
                let name = &pipeline.spec.groups[pos.group as usize].name;
                let seen = out
                    .groups
                    .iter()
                    .position(|g| g.group == *name && g.pipeline_id == pipeline.id);
                seen.unwrap_or_else(|| {
                    // Every lease of one reply was granted just now, by
                    // this incarnation.
                    out.groups.push(self.lease_group_view(pos, lease_id));
                    out.groups.len() - 1
                })
            }
        };
        out.last_group = Some((key, index));
        let own = self.lease_own_view(pos, lease_id);
        out.leases.push(own.into_compact(index as u32 + 1));
    }

    /// Everything a worker needs to run a leased unit: its own fields
    /// with its group's, as a client expands a compact lease.
    pub(super) fn lease_view(&self, pos: Pos, lease_id: u64) -> Lease {
        self.lease_own_view(pos, lease_id)
            .into_full(self.lease_group_view(pos, lease_id))
    }

    /// What a lease holds of its own (all that a compact lease carries).
    fn lease_own_view(&self, pos: Pos, lease_id: u64) -> LeaseOwn {
        let unit = self.unit(pos);
        let (inputs, input_slices) = self.inputs_of(pos.pipeline, pos.group, &unit.source);
        LeaseOwn {
            unit: pos.unit,
            lease_id,
            inputs,
            input_slices,
            attempt: unit.grants,
        }
    }

    /// What every lease of `pos`'s group shares, for the compact form;
    /// the incarnation is `lease_id`'s.
    fn lease_group_view(&self, pos: Pos, lease_id: u64) -> LeaseGroup {
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let spec = &pipeline.spec.groups[pos.group as usize];
        LeaseGroup {
            pipeline_id: pipeline.id.clone(),
            group: spec.name.clone(),
            lease_ms: self.config.lease_ms,
            config_version: self.group(pos).config_version,
            server_token: self.server_token.clone(),
            store_root: self.config.store_root.clone(),
            store_url: self.config.store_url.clone(),
            task: spec.task.clone(),
            command: spec.command.clone(),
            workdir: spec.workdir.clone(),
            env: spec.env.clone(),
            params: pipeline.spec.params.clone(),
            partitions: self.group(pos).wiring.write_partitions,
            config: spec.config.clone(),
            incarnation: self.incarnations.of(lease_id),
        }
    }

    /// A unit's whole input files and byte ranges, as absolute paths.
    pub(super) fn inputs_of(
        &self,
        pipeline: u32,
        group: u32,
        source: &UnitSource,
    ) -> (Vec<String>, Vec<InputSlice>) {
        let upstream = &self.pipelines[pipeline as usize].groups[group as usize]
            .wiring
            .upstream;
        let committed = || {
            upstream.iter().flat_map(move |&up| {
                let units = self.pipelines[pipeline as usize].groups[up as usize]
                    .units
                    .len() as u32;
                (0..units).map(move |unit| Pos {
                    pipeline,
                    group: up,
                    unit,
                })
            })
        };
        match source {
            UnitSource::Given(given) => (given.files.clone(), given.slices.clone()),
            UnitSource::Nothing => (Vec::new(), Vec::new()),
            &UnitSource::Upstream { group, unit } => (
                self.committed_paths(
                    Pos {
                        pipeline,
                        group,
                        unit,
                    },
                    None,
                ),
                Vec::new(),
            ),
            &UnitSource::Partition(r) => {
                let part = partition_name(r);
                let paths = committed().flat_map(|pos| self.committed_paths(pos, Some(&part)));
                (paths.collect(), Vec::new())
            }
            UnitSource::Gather => {
                let paths = committed().flat_map(|pos| self.committed_paths(pos, None));
                (paths.collect(), Vec::new())
            }
        }
    }

    /// Full paths of a committed unit's output files (empty otherwise):
    /// absolute paths in a local store, URLs in a remote one.
    /// `only`: just the file of that name (a shuffle's partition).
    pub(super) fn committed_paths(&self, pos: Pos, only: Option<&str>) -> Vec<String> {
        let UnitState::Committed { lease_id, files } = &self.unit(pos).state else {
            return Vec::new();
        };
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let group = &pipeline.spec.groups[pos.group as usize].name;
        let incarnation = self.incarnations.of(*lease_id);
        let prefix = output_prefix(&pipeline.id, group, pos.unit, *lease_id, incarnation);
        let root = if self.config.store_url.is_empty() {
            self.config.store_root.trim_end_matches('/')
        } else {
            self.config.store_url.trim_end_matches('/')
        };
        files
            .iter()
            .filter(|f| only.is_none_or(|name| f.name == name))
            .map(|f| format!("{root}/{prefix}{}", f.name))
            .collect()
    }
}

/// The file a shuffle's unit r reads from every upstream unit.
pub fn partition_name(r: u32) -> String {
    format!("part-{r:05}")
}
