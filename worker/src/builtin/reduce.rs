//! The `sum.reduce` task.

use std::collections::HashMap;

use super::part_files::PartFiles;
use super::record::{Record, hash_partition, parse_line, quote};
use super::runs::{Merger, read_fan_in, write_run};
use super::settings::{SIZE_BYTES_LIMIT, Settings};
use crate::lines::{InputSource, UnitLines};
use crate::scratch::Scratch;
use crate::task::{Task, TaskError, UnitContext};

/// Default most distinct keys held before a sorted run is spilled
/// (`reduce_entries_max`).
pub const REDUCE_ENTRIES_MAX_DEFAULT: u64 = 1_000_000;
/// Default estimated memory of the held keys before a run is spilled
/// (`reduce_memory_bytes`, 64 MiB).
pub const REDUCE_MEMORY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `reduce_entries_max` accepted.
const REDUCE_ENTRIES_MAX_LIMIT: u64 = 1_000_000_000;
/// Estimated memory of one held key besides its bytes: the `Vec`, the sum
/// and the hash table's slack.
const REDUCE_ENTRY_OVERHEAD_BYTES: usize = 64;

/// Sums the numeric values of each key over all of the unit's records and
/// writes one `key\tsum` record per key, sorted by key (bytewise) within
/// each output file.
///
/// A key may appear any number of times, in any input. Values and sums are
/// signed 64-bit integers; a sum that overflows fails the attempt. Sums are
/// kept in a hash table; when it holds more than `reduce_entries_max` keys
/// or about `reduce_memory_bytes` of them, it is spilled as a run sorted
/// by key to the scratch directory, and the runs are merged at the end
/// (`merge_fan_in` at a time), adding up equal keys. Records go to
/// partition `fnv1a_64(key) % partitions`, or to `part-00000` without
/// partitions. Config: `reduce_entries_max`, `reduce_memory_bytes`,
/// `merge_fan_in`, `line_bytes_max`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SumReduce;

impl SumReduce {
    /// The task's name in a group spec.
    pub const NAME: &'static str = "sum.reduce";
}

impl Task for SumReduce {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        sum_unit(unit).map(|_| ())
    }
}

/// The bounded table of sums.
struct Sums {
    sums: HashMap<Vec<u8>, i64>,
    memory_bytes: usize,
    entries_max: usize,
    memory_bytes_max: usize,
}

impl Sums {
    fn add(&mut self, key: &[u8], value: i64) -> Result<(), TaskError> {
        match self.sums.get_mut(key) {
            Some(sum) => *sum = checked_sum(key, *sum, value)?,
            None => {
                self.memory_bytes += key.len() + REDUCE_ENTRY_OVERHEAD_BYTES;
                self.sums.insert(key.to_vec(), value);
            }
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.sums.len() > self.entries_max || self.memory_bytes > self.memory_bytes_max
    }

    /// Empties the table into `(key, sum)` pairs sorted by key.
    fn drain_sorted(&mut self) -> Vec<(Vec<u8>, i64)> {
        let mut sums: Vec<(Vec<u8>, i64)> = self.sums.drain().collect();
        self.memory_bytes = 0;
        sums.sort_unstable();
        sums
    }

    fn spill(
        &mut self,
        scratch: &mut Scratch,
        unit: &UnitContext,
    ) -> Result<InputSource, TaskError> {
        let records = self.drain_sorted().into_iter().map(|(key, sum)| {
            let line = [&key[..], b"\t", sum.to_string().as_bytes()].concat();
            Record {
                line,
                tab: key.len(),
                value: sum,
            }
        });
        write_run(scratch, records, unit)
    }
}

fn checked_sum(key: &[u8], sum: i64, value: i64) -> Result<i64, TaskError> {
    sum.checked_add(value).ok_or_else(|| {
        TaskError::new(format!(
            "sum.reduce: the sum for key {} overflows a signed 64-bit integer",
            quote(key)
        ))
    })
}

/// Runs the task; returns how many runs were spilled (for tests that must
/// know the external path ran).
fn sum_unit(unit: &UnitContext) -> Result<usize, TaskError> {
    let settings = Settings::new(
        SumReduce::NAME,
        unit,
        &["reduce_entries_max", "reduce_memory_bytes", "merge_fan_in"],
    )?;
    let mut sums = Sums {
        sums: HashMap::new(),
        memory_bytes: 0,
        entries_max: settings.count(
            "reduce_entries_max",
            REDUCE_ENTRIES_MAX_DEFAULT,
            1,
            REDUCE_ENTRIES_MAX_LIMIT,
        )? as usize,
        memory_bytes_max: settings.bytes(
            "reduce_memory_bytes",
            REDUCE_MEMORY_BYTES_DEFAULT,
            SIZE_BYTES_LIMIT,
        )? as usize,
    };
    let fan_in = read_fan_in(&settings)?;
    let line_bytes_max = settings.line_bytes_max()?;
    let mut scratch = Scratch::new(unit);
    let mut runs = Vec::new();
    let mut lines = UnitLines::for_unit(unit, line_bytes_max);
    let mut line = Vec::new();
    while lines.read_line(&mut line)? {
        unit.check_cancelled()?;
        if line.is_empty() {
            continue;
        }
        let (tab, value) = parse_line(&line, true)
            .map_err(|why| TaskError::new(format!("{}: {why}", lines.describe_line())))?;
        sums.add(&line[..tab], value)?;
        if sums.is_full() {
            runs.push(sums.spill(&mut scratch, unit)?);
        }
    }
    let mut out = SumWriter {
        out: PartFiles::new(&unit.output_dir, unit.partitions),
        current: None,
    };
    let spilled = runs.len();
    if runs.is_empty() {
        for (key, sum) in sums.drain_sorted() {
            unit.check_cancelled()?;
            out.write(&key, sum)?;
        }
    } else {
        runs.push(sums.spill(&mut scratch, unit)?);
        let merger = Merger {
            compare: &|a: &Record, b: &Record| a.key().cmp(b.key()),
            order_name: "key".into(),
            numeric: true,
            fan_in,
            line_bytes_max,
        };
        merger.merge(runs, true, &mut scratch, unit, &mut |record| {
            out.add(record)
        })?;
    }
    out.finish()?;
    Ok(spilled)
}

/// Writes `key\tsum` records, adding up consecutive records of one key.
struct SumWriter {
    out: PartFiles,
    /// The key being summed and its sum so far.
    current: Option<(Vec<u8>, i64)>,
}

impl SumWriter {
    /// Adds a record of a stream sorted by key.
    fn add(&mut self, record: Record) -> Result<(), TaskError> {
        if let Some((key, sum)) = &mut self.current
            && key[..] == *record.key()
        {
            *sum = checked_sum(key, *sum, record.value)?;
            return Ok(());
        }
        if let Some((key, sum)) = self.current.take() {
            self.write(&key, sum)?;
        }
        let mut key = record.line;
        key.truncate(record.tab);
        self.current = Some((key, record.value));
        Ok(())
    }

    fn write(&mut self, key: &[u8], sum: i64) -> Result<(), TaskError> {
        let partition = hash_partition(key, self.out.partitions());
        self.out
            .write_line(partition, &[key, b"\t", sum.to_string().as_bytes()])
    }

    fn finish(mut self) -> Result<(), TaskError> {
        if let Some((key, sum)) = self.current.take() {
            self.write(&key, sum)?;
        }
        self.out.finish()
    }
}

#[cfg(test)]
mod tests;
