//! The `merge` task.

use std::fs::File;
use std::io::{BufWriter, Write};

use super::record::{Record, SortSpec};
use super::runs::{Merger, read_fan_in};
use super::settings::Settings;
use crate::lines::{InputSource, READ_BUFFER_BYTES};
use crate::scratch::Scratch;
use crate::task::{Task, TaskError, UnitContext};

/// The one file [`Merge`] writes.
pub const MERGED_FILE_NAME: &str = "merged";

/// Merges inputs that are each sorted (by the same `sort_by` and `order`
/// as this task's config, see [`Sort`](super::Sort)) into one sorted file,
/// `merged`, e.g. the partitions of a `sort` gathered into one unit.
///
/// A k-way merge with a heap, streaming: memory is one read buffer and one
/// record per open input. More than `merge_fan_in` inputs are merged in
/// passes through scratch files. Records that compare equal keep their
/// input order (whole files, then slices, as the lease lists them). An
/// input found out of order fails the attempt, since the output would be
/// silently wrong. `merged` is written even when there are no records. A
/// merge cannot feed a shuffle (its unit's partitions must be 0).
/// Config: `sort_by`, `order`, `merge_fan_in`, `line_bytes_max`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Merge;

impl Merge {
    /// The task's name in a group spec.
    pub const NAME: &'static str = "merge";
}

impl Task for Merge {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        let settings = Settings::new(Self::NAME, unit, &["sort_by", "order", "merge_fan_in"])?;
        if unit.partitions > 0 {
            return Err(TaskError::new(format!(
                "merge: writes one file, `{MERGED_FILE_NAME}`, so it cannot feed a shuffle (partitions = {})",
                unit.partitions
            )));
        }
        let spec = SortSpec::read(&settings)?;
        let merger = Merger {
            compare: &|a: &Record, b: &Record| spec.compare(a, b),
            order_name: spec.describe(),
            numeric: spec.numeric(),
            fan_in: read_fan_in(&settings)?,
            line_bytes_max: settings.line_bytes_max()?,
        };
        let path = unit.output_dir.join(MERGED_FILE_NAME);
        let write_error = |err: std::io::Error| {
            TaskError::new(format!("cannot write output {}: {err}", path.display()))
        };
        let file = File::create(&path).map_err(write_error)?;
        let mut out = BufWriter::with_capacity(READ_BUFFER_BYTES, file);
        let mut scratch = Scratch::new(unit);
        merger.merge(
            InputSource::all(unit),
            false,
            &mut scratch,
            unit,
            &mut |record| {
                out.write_all(&record.line)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(write_error)
            },
        )?;
        out.flush().map_err(write_error)
    }
}

#[cfg(test)]
mod tests;
