//! The `wordcount.map` task.

use std::collections::HashMap;

use super::part_files::PartFiles;
use super::record::hash_partition;
use super::settings::{SIZE_BYTES_LIMIT, Settings};
use crate::lines::UnitLines;
use crate::task::{Task, TaskError, UnitContext};

/// Default most distinct words held before the counts are written out
/// (`map_entries_max`).
pub const MAP_ENTRIES_MAX_DEFAULT: u64 = 1_000_000;
/// Default estimated memory of the held words before they are written out
/// (`map_memory_bytes`, 64 MiB).
pub const MAP_MEMORY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `map_entries_max` accepted.
const MAP_ENTRIES_MAX_LIMIT: u64 = 1_000_000_000;
/// Estimated memory of one held word besides its bytes: the `String`, the
/// count and the hash table's slack.
const MAP_ENTRY_OVERHEAD_BYTES: usize = 64;

/// The words of `text`: maximal runs of alphanumeric characters
/// ([`char::is_alphanumeric`], so Unicode letters and digits count), in
/// order. Everything else separates words.
///
/// [`WordCountMap`] decodes each line lossily, so bytes that are not UTF-8
/// become U+FFFD, which is not alphanumeric: they separate words too.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
}

/// Counts the words of the unit's lines and writes `word\tcount` records.
///
/// Each line is decoded as UTF-8 lossily and cut into [`words`]; each word
/// is lowercased with [`str::to_lowercase`] (which can yield characters
/// that are not alphanumeric, e.g. a combining dot from `İ`). Counts are
/// summed in a hash table; when it holds more than `map_entries_max` words
/// or about `map_memory_bytes` of them, its counts are appended to the
/// outputs and it starts empty, so a word may appear in several records of
/// one output (`sum.reduce` adds them up). Records go to partition
/// `fnv1a_64(word) % partitions`, or to `part-00000` without partitions.
/// Each write-out is sorted by word, so outputs are the same on every
/// attempt. Config: `map_entries_max`, `map_memory_bytes`,
/// `line_bytes_max`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordCountMap;

impl WordCountMap {
    /// The task's name in a group spec.
    pub const NAME: &'static str = "wordcount.map";
}

impl Task for WordCountMap {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        count_words(unit).map(|_| ())
    }
}

/// The bounded table of counts.
struct Counts {
    counts: HashMap<String, u64>,
    memory_bytes: usize,
    entries_max: usize,
    memory_bytes_max: usize,
}

impl Counts {
    fn add(&mut self, word: String) {
        if let Some(count) = self.counts.get_mut(&word) {
            *count += 1;
        } else {
            self.memory_bytes += word.len() + MAP_ENTRY_OVERHEAD_BYTES;
            self.counts.insert(word, 1);
        }
    }

    fn is_full(&self) -> bool {
        self.counts.len() > self.entries_max || self.memory_bytes > self.memory_bytes_max
    }

    /// Appends the counts to `out`, sorted by word, and empties the table.
    fn write_out(&mut self, out: &mut PartFiles, unit: &UnitContext) -> Result<(), TaskError> {
        let mut counts: Vec<(String, u64)> = self.counts.drain().collect();
        self.memory_bytes = 0;
        counts.sort_unstable();
        for (word, count) in counts {
            unit.check_cancelled()?;
            let partition = hash_partition(word.as_bytes(), out.partitions());
            out.write_line(
                partition,
                &[word.as_bytes(), b"\t", count.to_string().as_bytes()],
            )?;
        }
        Ok(())
    }
}

/// Runs the task; returns how many times the table was written out (for
/// tests that must know the bounded path ran).
fn count_words(unit: &UnitContext) -> Result<usize, TaskError> {
    let settings = Settings::new(
        WordCountMap::NAME,
        unit,
        &["map_entries_max", "map_memory_bytes"],
    )?;
    let mut counts = Counts {
        counts: HashMap::new(),
        memory_bytes: 0,
        entries_max: settings.count(
            "map_entries_max",
            MAP_ENTRIES_MAX_DEFAULT,
            1,
            MAP_ENTRIES_MAX_LIMIT,
        )? as usize,
        memory_bytes_max: settings.bytes(
            "map_memory_bytes",
            MAP_MEMORY_BYTES_DEFAULT,
            SIZE_BYTES_LIMIT,
        )? as usize,
    };
    let mut lines = UnitLines::for_unit(unit, settings.line_bytes_max()?);
    let mut out = PartFiles::new(&unit.output_dir, unit.partitions);
    let mut write_outs = 0;
    let mut line = Vec::new();
    while lines.read_line(&mut line)? {
        unit.check_cancelled()?;
        let text = String::from_utf8_lossy(&line);
        for word in words(&text) {
            counts.add(word.to_lowercase());
            // Checked per word: one long line can hold many distinct words.
            if counts.is_full() {
                counts.write_out(&mut out, unit)?;
                write_outs += 1;
            }
        }
    }
    counts.write_out(&mut out, unit)?;
    out.finish()?;
    Ok(write_outs + 1)
}

#[cfg(test)]
mod tests;
