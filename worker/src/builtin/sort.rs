//! The `sort` task.

use std::cmp::Ordering;

use super::part_files::PartFiles;
use super::record::{Record, SortBy, SortSpec, hash_partition};
use super::runs::{Merger, read_fan_in, write_run};
use super::settings::{SIZE_BYTES_LIMIT, Settings};
use crate::lines::{InputSource, UnitLines};
use crate::scratch::Scratch;
use crate::task::{Task, TaskError, UnitContext};

/// Default memory for records before a sorted run is spilled
/// (`sort_memory_bytes`, 64 MiB).
pub const SORT_MEMORY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Sorts the unit's `key\tvalue` records with bounded memory.
///
/// Records are gathered until they take `sort_memory_bytes` (line bytes
/// plus a per-record overhead), sorted, and spilled as a run to the scratch
/// directory; the runs are then merged with a heap, `merge_fan_in` at a
/// time. Input that fits is sorted in memory and never touches disk. A
/// record bigger than the bound makes a run of its own.
///
/// `sort_by=key` orders keys bytewise; `sort_by=value` orders values as
/// signed 64-bit integers, equal values by key ascending. `order=desc`
/// turns the `sort_by` field's order around (not the tie-break). Records
/// that still compare equal keep their input order.
///
/// Without partitions the output is `part-00000`. With partitions, each
/// `part-NNNNN` is sorted and records go by `partition_by`:
///
/// - `hash` (default): partition `fnv1a_64(key) % partitions`;
/// - `range`: `range_bounds` holds `partitions - 1` comma-separated split
///   points of the `sort_by` field (numbers for `value`, bytes for `key`,
///   so a key bound cannot hold a comma), strictly in sort order.
///   Partition `i` holds the records whose field sorts before bound `i`
///   and not before bound `i - 1`; a record equal to a bound goes to the
///   partition after it. So with `order=asc` and bounds `10,20`, the
///   partitions hold `< 10`, `10 .. 19`, `>= 20`; with `order=desc` the
///   bounds are given descending, e.g. `20,10`, and the partitions hold
///   `> 20`, `20 .. 11`, `<= 10`. Reading `part-00000`, `part-00001`, ...
///   one after another gives the whole sorted output.
///
/// Without partitions `partition_by` and `range_bounds` are ignored.
/// Config: `sort_by`, `order`, `sort_memory_bytes`, `merge_fan_in`,
/// `partition_by`, `range_bounds`, `line_bytes_max`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sort;

impl Sort {
    /// The task's name in a group spec.
    pub const NAME: &'static str = "sort";
}

impl Task for Sort {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        sort_unit(unit).map(|_| ())
    }
}

/// Which partition a record goes to.
#[derive(Debug)]
enum Router {
    Hash(u32),
    KeyRanges(Vec<Vec<u8>>),
    ValueRanges(Vec<i64>),
}

impl Router {
    /// Reads `partition_by` and `range_bounds`, for `partitions` > 0.
    fn read(settings: &Settings<'_>, spec: SortSpec, partitions: u32) -> Result<Self, TaskError> {
        let by_range = settings.choice("partition_by", &["hash", "range"])? == "range";
        if partitions == 0 || !by_range {
            return Ok(Router::Hash(partitions));
        }
        let text = settings.get("range_bounds").unwrap_or_default();
        let pieces: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            text.split(',').collect()
        };
        if pieces.len() != partitions as usize - 1 {
            return Err(settings.invalid(
                "range_bounds",
                format!(
                    "{} bounds for {partitions} partitions: give partitions - 1 = {}",
                    pieces.len(),
                    partitions - 1
                ),
            ));
        }
        let in_order = |ordering: Ordering| spec.directed(ordering) == Ordering::Less;
        let router = match spec.by {
            SortBy::Key => {
                let bounds: Vec<Vec<u8>> = pieces.iter().map(|b| b.as_bytes().to_vec()).collect();
                let sorted = bounds.windows(2).all(|w| in_order(w[0].cmp(&w[1])));
                sorted.then_some(Router::KeyRanges(bounds))
            }
            SortBy::Value => {
                let bounds: Vec<i64> = pieces
                    .iter()
                    .map(|b| b.trim().parse::<i64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        settings.invalid(
                            "range_bounds",
                            "with sort_by=value, every bound must be a 64-bit integer",
                        )
                    })?;
                let sorted = bounds.windows(2).all(|w| in_order(w[0].cmp(&w[1])));
                sorted.then_some(Router::ValueRanges(bounds))
            }
        };
        router.ok_or_else(|| {
            settings.invalid(
                "range_bounds",
                format!(
                    "bounds must be strictly in sort order ({})",
                    spec.describe()
                ),
            )
        })
    }

    /// The partition of `record`: for ranges, the number of bounds at or
    /// before its field in sort order.
    fn partition(&self, record: &Record, spec: SortSpec) -> u32 {
        let at_or_before = |ordering: Ordering| spec.directed(ordering) != Ordering::Greater;
        let index = match self {
            Router::Hash(partitions) => return hash_partition(record.key(), *partitions),
            Router::KeyRanges(bounds) => {
                bounds.partition_point(|b| at_or_before(b[..].cmp(record.key())))
            }
            Router::ValueRanges(bounds) => {
                bounds.partition_point(|b| at_or_before(b.cmp(&record.value)))
            }
        };
        index as u32
    }
}

/// Runs the task; returns how many runs were spilled (for tests that must
/// know the external path ran).
fn sort_unit(unit: &UnitContext) -> Result<usize, TaskError> {
    let known = [
        "sort_by",
        "order",
        "sort_memory_bytes",
        "merge_fan_in",
        "partition_by",
        "range_bounds",
    ];
    let settings = Settings::new(Sort::NAME, unit, &known)?;
    let spec = SortSpec::read(&settings)?;
    let memory_bytes = settings.bytes(
        "sort_memory_bytes",
        SORT_MEMORY_BYTES_DEFAULT,
        SIZE_BYTES_LIMIT,
    )? as usize;
    let router = Router::read(&settings, spec, unit.partitions)?;
    let merger = Merger {
        compare: &|a: &Record, b: &Record| spec.compare(a, b),
        order_name: spec.describe(),
        numeric: spec.numeric(),
        fan_in: read_fan_in(&settings)?,
        line_bytes_max: settings.line_bytes_max()?,
    };
    let mut scratch = Scratch::new(unit);
    let (last, mut runs) = sorted_runs(unit, &merger, memory_bytes, &mut scratch)?;
    let spilled = runs.len();
    let mut out = PartFiles::new(&unit.output_dir, unit.partitions);
    let mut emit =
        |record: Record| out.write_line(router.partition(&record, spec), &[&record.line]);
    if runs.is_empty() {
        for record in last {
            unit.check_cancelled()?;
            emit(record)?;
        }
    } else {
        runs.push(write_run(&mut scratch, last, unit)?);
        merger.merge(runs, true, &mut scratch, unit, &mut emit)?;
    }
    out.finish()?;
    Ok(spilled)
}

/// Reads the unit's records into sorted runs of about `memory_bytes`;
/// returns the last run (in memory, sorted) and the spilled ones.
fn sorted_runs(
    unit: &UnitContext,
    merger: &Merger<'_>,
    memory_bytes: usize,
    scratch: &mut Scratch,
) -> Result<(Vec<Record>, Vec<InputSource>), TaskError> {
    let sort = |run: &mut Vec<Record>| run.sort_by(|a, b| (merger.compare)(a, b));
    let mut lines = UnitLines::for_unit(unit, merger.line_bytes_max);
    let (mut run, mut run_bytes, mut spilled) = (Vec::new(), 0, Vec::new());
    let mut line = Vec::new();
    while lines.read_line(&mut line)? {
        unit.check_cancelled()?;
        if line.is_empty() {
            continue;
        }
        let record = Record::parse(std::mem::take(&mut line), merger.numeric).map_err(|why| {
            TaskError::new(format!(
                "{}: {why} ({})",
                lines.describe_line(),
                merger.order_name
            ))
        })?;
        let record_bytes = record.memory_bytes();
        if !run.is_empty() && run_bytes + record_bytes > memory_bytes {
            sort(&mut run);
            spilled.push(write_run(scratch, run.drain(..), unit)?);
            run_bytes = 0;
        }
        run_bytes += record_bytes;
        run.push(record);
    }
    sort(&mut run);
    Ok((run, spilled))
}

#[cfg(test)]
mod tests;
