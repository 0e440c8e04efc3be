//! What a worker is told about a leased unit: a full [`Lease`], or the
//! compact form (`taskmaster_proto::compact`), where what the leases of
//! one group share goes once per reply in a [`LeaseGroup`].

use prost::Message as _;
use taskmaster_proto::v1::{InputSlice, Lease, LeaseGroup};

use taskmaster_proto::compact::LeaseOwn;
pub use taskmaster_proto::compact::output_prefix;

use super::Core;
use super::limits::{INPUTS_PAGE_BYTES_MAX, LEASE_INPUT_BYTES_MAX, REPLY_LEASE_BYTES_MAX};
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
    /// The encoded bytes of `leases` and `groups` so far.
    bytes: usize,
}

impl Leases {
    /// An empty answer of up to `most` leases, compact when `compact`
    /// and `most` is more than one: a single lease shares nothing with
    /// another, and its group would cost more than it saves (callgrind,
    /// BENCHMARKS.md, "Why the code is shaped so: one lease in a reply
    /// comes full"). [`taskmaster_proto::compact::expand`] passes full
    /// leases unchanged.
    pub fn new(compact: bool, most: usize) -> Leases {
        Leases {
            leases: Vec::with_capacity(most),
            groups: Vec::new(),
            compact: compact && most > 1,
            last_group: None,
            bytes: 0,
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

/// A lease built before it is granted, with what it adds to its reply's
/// encoded size, so that a reply never grows past what can be sent.
pub(super) struct Prepared {
    lease: Lease,
    /// The group a compact lease names, when the reply does not hold it yet.
    new_group: Option<LeaseGroup>,
    /// The index of its group in the reply's `groups` (compact form).
    group_index: usize,
    bytes: usize,
}

impl Leases {
    /// The encoded size of the leases and their groups, as counted while
    /// they were added (what a reply holding them adds to its message).
    pub fn encoded_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a prepared lease, now granted, to the reply.
    pub(super) fn push(&mut self, pos: Pos, prepared: Prepared) {
        if let Some(group) = prepared.new_group {
            self.groups.push(group);
        }
        if self.compact {
            self.last_group = Some(((pos.pipeline, pos.group), prepared.group_index));
        }
        self.bytes += prepared.bytes;
        self.leases.push(prepared.lease);
    }

    /// Whether `prepared` may join this reply: the first lease always may
    /// (one lease is bounded far below the limit), others while the reply
    /// stays within [`REPLY_LEASE_BYTES_MAX`].
    pub(super) fn has_room_for(&self, prepared: &Prepared) -> bool {
        self.leases.is_empty() || self.bytes + prepared.bytes <= REPLY_LEASE_BYTES_MAX
    }
}

impl Core {
    /// The lease `lease_id` on the pending unit at `pos` will be once
    /// granted (its attempt number counts the grant), in `out`'s form.
    pub(super) fn prepare_lease(&self, out: &Leases, pos: Pos, lease_id: u64) -> Prepared {
        let own = self.lease_own_view(pos, lease_id, self.unit(pos).grants + 1);
        if !out.compact {
            let lease = own.into_full(self.lease_group_view(pos, lease_id));
            let bytes = lease.encoded_len();
            return Prepared {
                lease,
                new_group: None,
                group_index: 0,
                bytes,
            };
        }
        let key = (pos.pipeline, pos.group);
        // A reply's leases mostly come from one group: the last one's.
        let seen = match out.last_group {
            Some((last, index)) if last == key => Some(index),
            _ => {
                let pipeline = &self.pipelines[pos.pipeline as usize];
                let name = &pipeline.spec.groups[pos.group as usize].name;
                out.groups
                    .iter()
                    .position(|g| g.group == *name && g.pipeline_id == pipeline.id)
            }
        };
        // Every lease of one reply is granted now, by this incarnation, so
        // a group's settings are the same for all of them.
        let new_group = seen.is_none().then(|| self.lease_group_view(pos, lease_id));
        let group_index = seen.unwrap_or(out.groups.len());
        let lease = own.into_compact(group_index as u32 + 1);
        let bytes = lease.encoded_len() + new_group.as_ref().map_or(0, |g| g.encoded_len());
        Prepared {
            lease,
            new_group,
            group_index,
            bytes,
        }
    }

    /// What a lease holds of its own (all that a compact lease carries),
    /// as attempt number `attempt`. Inputs over [`LEASE_INPUT_BYTES_MAX`]
    /// are left out and the lease says so: the worker lists them.
    fn lease_own_view(&self, pos: Pos, lease_id: u64, attempt: u32) -> LeaseOwn {
        let unit = self.unit(pos);
        let paged = self.input_bytes(pos.pipeline, pos.group, &unit.source) > LEASE_INPUT_BYTES_MAX;
        let (inputs, input_slices) = if paged {
            (Vec::new(), Vec::new())
        } else {
            self.inputs_of(pos.pipeline, pos.group, &unit.source)
        };
        LeaseOwn {
            unit: pos.unit,
            lease_id,
            inputs,
            input_slices,
            attempt,
            inputs_paged: paged,
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
            timeout_ms: spec.timeout_ms,
        }
    }

    /// A unit's whole input files and byte ranges, as absolute paths.
    pub(super) fn inputs_of(
        &self,
        pipeline: u32,
        group: u32,
        source: &UnitSource,
    ) -> (Vec<String>, Vec<InputSlice>) {
        if let UnitSource::Given(given) = source {
            return (given.files.clone(), given.slices.clone());
        }
        let (units, only) = self.read_units(pipeline, group, source);
        let paths = units.flat_map(|pos| self.committed_paths(pos, only.as_deref()));
        (paths.collect(), Vec::new())
    }

    /// The committed units a unit of `group` reads, in order, and the one
    /// file it reads of each (a shuffle's partition) if not all. Empty for
    /// a first group's unit, whose inputs are given.
    fn read_units(
        &self,
        pipeline: u32,
        group: u32,
        source: &UnitSource,
    ) -> (Box<dyn Iterator<Item = Pos> + '_>, Option<String>) {
        let upstream = &self.pipelines[pipeline as usize].groups[group as usize]
            .wiring
            .upstream;
        let all_upstream = move || {
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
            UnitSource::Given(_) | UnitSource::Nothing => (Box::new(std::iter::empty()), None),
            &UnitSource::Upstream { group, unit } => {
                let pos = Pos {
                    pipeline,
                    group,
                    unit,
                };
                (Box::new(std::iter::once(pos)), None)
            }
            &UnitSource::Partition(r) => (Box::new(all_upstream()), Some(partition_name(r))),
            UnitSource::Gather => (Box::new(all_upstream()), None),
        }
    }

    /// The bytes of a unit's input paths (what inlining them would cost),
    /// counted without building them.
    pub(super) fn input_bytes(&self, pipeline: u32, group: u32, source: &UnitSource) -> usize {
        if let UnitSource::Given(given) = source {
            let files: usize = given.files.iter().map(String::len).sum();
            // A slice is its path and two numbers of up to ten bytes each.
            let slices: usize = given.slices.iter().map(|s| s.path.len() + 20).sum();
            return files + slices;
        }
        let (units, only) = self.read_units(pipeline, group, source);
        units
            .map(|pos| self.committed_bytes(pos, only.as_deref()))
            .sum()
    }

    /// One page of a leased unit's inputs (whole files, then slices, as a
    /// lease lists them) from position `cursor`: at most `limit` of them
    /// and [`INPUTS_PAGE_BYTES_MAX`] bytes of paths (at least one), and the
    /// cursor of the next page (0 after the last).
    pub(super) fn inputs_page(
        &self,
        pos: Pos,
        cursor: u64,
        limit: usize,
    ) -> (Vec<String>, Vec<InputSlice>, u64) {
        let mut page = Page::new(cursor, limit);
        match &self.unit(pos).source {
            UnitSource::Given(given) => {
                for file in &given.files {
                    page.offer_file(|| file.clone(), file.len());
                }
                for slice in &given.slices {
                    page.offer_slice(slice);
                }
            }
            source => {
                let (units, only) = self.read_units(pos.pipeline, pos.group, source);
                for up in units {
                    let count = self.committed_count(up, only.as_deref());
                    if page.skip_whole(count) {
                        continue;
                    }
                    for path in self.committed_paths(up, only.as_deref()) {
                        let len = path.len();
                        page.offer_file(|| path, len);
                    }
                    if page.full() {
                        break;
                    }
                }
            }
        }
        page.finish()
    }

    /// What a status shows of the inputs of the unit at `pos`: the first
    /// `shown_max` (whole files, then slices, as its lease lists them) and
    /// how many there are in all. The count is None, and the listing stops,
    /// past `upstream_units_max` upstream units: too many to look at while
    /// holding the state (a status call asks this of each failed unit).
    pub(super) fn inputs_shown(
        &self,
        pos: Pos,
        shown_max: usize,
        upstream_units_max: usize,
    ) -> (Vec<String>, Vec<InputSlice>, Option<u64>) {
        let source = &self.unit(pos).source;
        if let UnitSource::Given(given) = source {
            let files: Vec<String> = given.files.iter().take(shown_max).cloned().collect();
            let slices = given.slices.iter().take(shown_max - files.len());
            let total = given.files.len() + given.slices.len();
            return (files, slices.cloned().collect(), Some(total as u64));
        }
        let (units, only) = self.read_units(pos.pipeline, pos.group, source);
        let mut files = Vec::new();
        let mut total = 0;
        for (visited, up) in units.enumerate() {
            if visited == upstream_units_max {
                return (files, Vec::new(), None);
            }
            let count = self.committed_count(up, only.as_deref());
            if count > 0 && files.len() < shown_max {
                let paths = self.committed_paths(up, only.as_deref());
                files.extend(paths.into_iter().take(shown_max - files.len()));
            }
            total += count as u64;
        }
        (files, Vec::new(), Some(total))
    }

    /// How many of a committed unit's files a reader of `only` (or all) reads.
    fn committed_count(&self, pos: Pos, only: Option<&str>) -> usize {
        match &self.unit(pos).state {
            UnitState::Committed { files, .. } => match only {
                None => files.len(),
                Some(name) => files.iter().filter(|f| f.name == name).count(),
            },
            _ => 0,
        }
    }

    /// The bytes of [`Self::committed_paths`], counted without building them.
    fn committed_bytes(&self, pos: Pos, only: Option<&str>) -> usize {
        let UnitState::Committed { lease_id, files } = &self.unit(pos).state else {
            return 0;
        };
        let pipeline = &self.pipelines[pos.pipeline as usize];
        let group = &pipeline.spec.groups[pos.group as usize].name;
        // `<root>/<pipeline>/<group>/<unit>/<attempt>/<name>`
        // The attempt directory is `<lease>` or `<lease>-<16 hex digits>`.
        let incarnation_len = if self.incarnations.of(*lease_id) == 0 {
            0
        } else {
            17
        };
        let head = self.store_base().len()
            + pipeline.id.len()
            + group.len()
            + decimal_len(pos.unit.into())
            + decimal_len(*lease_id)
            + incarnation_len
            + 5;
        files
            .iter()
            .filter(|f| only.is_none_or(|name| f.name == name))
            .map(|f| head + f.name.len())
            .sum()
    }

    /// Where store paths start: the local store's root or the remote
    /// store's URL, without a trailing '/'.
    fn store_base(&self) -> &str {
        if self.config.store_url.is_empty() {
            self.config.store_root.trim_end_matches('/')
        } else {
            self.config.store_url.trim_end_matches('/')
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
        let root = self.store_base();
        files
            .iter()
            .filter(|f| only.is_none_or(|name| f.name == name))
            .map(|f| format!("{root}/{prefix}{}", f.name))
            .collect()
    }
}

/// Digits of `n` in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A page of inputs being gathered: skips to the cursor, then takes what
/// fits.
struct Page {
    /// Position of the next input offered in the whole list.
    at: u64,
    cursor: u64,
    limit: usize,
    bytes: usize,
    files: Vec<String>,
    slices: Vec<InputSlice>,
    /// Set once an input past the page was offered: there is a next page.
    more: bool,
}

impl Page {
    fn new(cursor: u64, limit: usize) -> Page {
        Page {
            at: 0,
            cursor,
            limit: limit.max(1),
            bytes: 0,
            files: Vec::new(),
            slices: Vec::new(),
            more: false,
        }
    }

    fn taken(&self) -> usize {
        self.files.len() + self.slices.len()
    }

    fn full(&self) -> bool {
        self.more
    }

    /// Skips `count` inputs at once when they all lie before the cursor.
    fn skip_whole(&mut self, count: usize) -> bool {
        if self.at + count as u64 <= self.cursor {
            self.at += count as u64;
            return true;
        }
        false
    }

    /// Whether the input at the current position, of `len` bytes, goes in
    /// this page; moves past it either way.
    fn admit(&mut self, len: usize) -> bool {
        let here = self.at;
        self.at += 1;
        if here < self.cursor || self.more {
            return false;
        }
        let fits = self.taken() < self.limit
            && (self.taken() == 0 || self.bytes + len <= INPUTS_PAGE_BYTES_MAX);
        if !fits {
            self.more = true;
            return false;
        }
        self.bytes += len;
        true
    }

    fn offer_file(&mut self, path: impl FnOnce() -> String, len: usize) {
        if self.admit(len) {
            self.files.push(path());
        }
    }

    fn offer_slice(&mut self, slice: &InputSlice) {
        if self.admit(slice.path.len() + 20) {
            self.slices.push(slice.clone());
        }
    }

    fn finish(self) -> (Vec<String>, Vec<InputSlice>, u64) {
        let next = if self.more {
            self.cursor + self.taken() as u64
        } else {
            0
        };
        (self.files, self.slices, next)
    }
}

/// The file a shuffle's unit r reads from every upstream unit.
pub fn partition_name(r: u32) -> String {
    format!("part-{r:05}")
}
