//! A snapshot's units encoded straight from the state, bottom-up.
//!
//! `to_snapshot(..).encode_to_vec()` first copies every unit into prost
//! structs, then prost computes each nested message's length once per
//! level above it (units sit five levels deep): about 700 ns per unit,
//! most of a big snapshot's cost. Here each unit is encoded once, from
//! borrowed state, into the same protobuf fields, and each enclosing
//! message is length-prefixed after its contents are known. The bytes
//! decode to exactly what `to_snapshot` builds (tested), so snapshot files
//! and their reader do not change.

use prost::Message;
use prost::encoding::{self, WireType, encode_key, encode_varint};
use taskmaster_proto::journal::{Snapshot, SnapshotGroup, UnitAddr, UnitStateCode};

use super::model::{Group, Pipeline, Unit, UnitSource, UnitState};
use super::snapshot::{SnapshotSource, pipeline_head};

// Field numbers, from journal.proto.
const SNAPSHOT_PIPELINES: u32 = 8;
const PIPELINE_GROUPS: u32 = 9;
const GROUP_UNITS: u32 = 3;

impl SnapshotSource {
    /// The whole snapshot's protobuf bytes: `head` (whose `pipelines` must
    /// be empty) followed by the pipelines. Protobuf concatenation merges,
    /// so this decodes as one `Snapshot` with both.
    pub fn encode_with_head(&self, head: &Snapshot) -> Vec<u8> {
        debug_assert!(head.pipelines.is_empty());
        let mut out = head.encode_to_vec();
        let mut scratch = Scratch::default();
        for pipeline in self.pipelines() {
            scratch.pipeline.clear();
            encode_pipeline(pipeline, &mut scratch);
            encode_key(SNAPSHOT_PIPELINES, WireType::LengthDelimited, &mut out);
            encode_varint(scratch.pipeline.len() as u64, &mut out);
            out.extend_from_slice(&scratch.pipeline);
        }
        out
    }
}

/// Buffers reused across pipelines, groups and units.
#[derive(Default)]
struct Scratch {
    pipeline: Vec<u8>,
    group: Vec<u8>,
    unit: Vec<u8>,
}

fn encode_pipeline(p: &Pipeline, scratch: &mut Scratch) {
    pipeline_head(p)
        .encode(&mut scratch.pipeline)
        .expect("a Vec grows as needed");
    for group in &p.groups {
        scratch.group.clear();
        encode_group(group, &mut scratch.group, &mut scratch.unit);
        encode_key(
            PIPELINE_GROUPS,
            WireType::LengthDelimited,
            &mut scratch.pipeline,
        );
        encode_varint(scratch.group.len() as u64, &mut scratch.pipeline);
        scratch.pipeline.extend_from_slice(&scratch.group);
    }
}

fn encode_group(g: &Group, out: &mut Vec<u8>, unit_buf: &mut Vec<u8>) {
    SnapshotGroup {
        config_version: g.config_version,
        created: g.created,
        units: Vec::new(),
        revivable_units: super::snapshot::revivable_units(g),
    }
    .encode(out)
    .expect("a Vec grows as needed");
    for unit in &g.units {
        unit_buf.clear();
        encode_unit(unit, unit_buf);
        encode_key(GROUP_UNITS, WireType::LengthDelimited, out);
        encode_varint(unit_buf.len() as u64, out);
        out.extend_from_slice(unit_buf);
    }
}

/// The fields of a `SnapshotUnit`, written from the borrowed unit; proto3
/// default values are left out, as prost does.
fn encode_unit(unit: &Unit, out: &mut Vec<u8>) {
    match &unit.source {
        UnitSource::Given(given) => encoding::message::encode(1, given, out),
        UnitSource::Nothing => encoding::bool::encode(2, &true, out),
        &UnitSource::Upstream { group, unit } => {
            let addr = UnitAddr {
                pipeline_id: String::new(),
                group,
                unit,
            };
            encoding::message::encode(3, &addr, out);
        }
        UnitSource::Partition(r) => encoding::uint32::encode(4, r, out),
        UnitSource::Gather => encoding::bool::encode(5, &true, out),
    }
    let mut granted_unix_ms = 0;
    let (code, lease_id, worker_id, files) = match &unit.state {
        UnitState::Pending => (UnitStateCode::Pending, 0, None, None),
        UnitState::Leased {
            lease_id,
            worker_id,
            granted_unix_ms: granted,
        } => {
            granted_unix_ms = *granted;
            (UnitStateCode::Leased, *lease_id, Some(worker_id), None)
        }
        UnitState::Committed { lease_id, files } => {
            (UnitStateCode::Committed, *lease_id, None, Some(files))
        }
        UnitState::Failed => (UnitStateCode::Failed, 0, None, None),
        UnitState::Dropped => (UnitStateCode::Dropped, 0, None, None),
    };
    if code != UnitStateCode::Pending {
        encoding::int32::encode(6, &(code as i32), out);
    }
    if lease_id != 0 {
        encoding::uint64::encode(7, &lease_id, out);
    }
    if let Some(worker_id) = worker_id.filter(|w| !w.is_empty()) {
        encoding::string::encode(8, worker_id, out);
    }
    if let Some(files) = files {
        encoding::message::encode_repeated(9, files, out);
    }
    if unit.grants != 0 {
        encoding::uint32::encode(10, &unit.grants, out);
    }
    if unit.failures != 0 {
        encoding::uint32::encode(11, &unit.failures, out);
    }
    for error in &unit.errors {
        encoding::string::encode(12, &error.text, out);
    }
    if unit.failed_lease != 0 {
        encoding::uint64::encode(13, &unit.failed_lease, out);
    }
    if !unit.errors.is_empty() {
        let attempts: Vec<u32> = unit.errors.iter().map(|e| e.attempt).collect();
        encoding::uint32::encode_packed(14, &attempts, out);
    }
    if granted_unix_ms != 0 {
        encoding::uint64::encode(15, &granted_unix_ms, out);
    }
    for error in &unit.errors {
        encoding::message::encode(16, &error.run(), out);
    }
}
