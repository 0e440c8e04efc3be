//! The built-in tasks of the stock worker: the stages of a word count and
//! of a sort, each a small plain [`Task`](crate::Task) that also serves as
//! an example of writing your own.
//!
//! | task name | type | what it does |
//! | --- | --- | --- |
//! | `split` | [`Split`] | copies input lines into chunk files of bounded size, or hashes them to partitions |
//! | `wordcount.map` | [`WordCountMap`] | counts the words of its lines, `word\tcount` |
//! | `sum.reduce` | [`SumReduce`] | sums the values of each key, `key\tsum` |
//! | `sort` | [`Sort`] | external sort of records, by key or by value |
//! | `merge` | [`Merge`] | k-way merge of sorted inputs into one file, `merged` |
//!
//! A word count pipeline: `split` → `wordcount.map` (shuffled into R
//! partitions) → `sum.reduce` (R units) → `sort` (`sort_by=value`,
//! `order=desc`) → `merge` (gather, same sort settings).
//!
//! # Record format
//!
//! Between stages data is text lines, each a record `key\tvalue`: the key
//! is everything before the first tab, the value everything after it (it
//! may hold more tabs). Lines are bytes, so keys need not be UTF-8. Where a
//! number is needed (word counts, `sum.reduce`, `sort_by=value`) the value
//! is a decimal signed 64-bit integer (`-?[0-9]+`). Tasks that read records
//! skip empty lines; a line without a tab is a key with an empty value.
//! Every line written ends with `\n`, also when the input's last line had
//! none.
//!
//! # Inputs and outputs
//!
//! Each task reads all of its unit's inputs through [`crate::lines`] (whole
//! files, then the lines each byte slice owns) and writes only into the
//! unit's output directory. When the unit's `partitions` is above 0 the
//! outputs are `part-00000` ... `part-<partitions-1>`, and a record goes to
//! partition [`fnv1a_64`]`(key) % partitions` (a hash that is the same in
//! every process, unlike std's randomized one), so all records of a key
//! meet in one downstream unit. `sort` can partition by ranges instead.
//! Partitions with no data are not written.
//!
//! Memory is bounded by the settings below; what does not fit spills to a
//! per-attempt [`Scratch`](crate::scratch::Scratch) directory, never to the
//! output directory.
//!
//! # Config keys
//!
//! Set in the group's `config`. A key the task does not read is an error,
//! so a typo does not fall back to a default silently. Sizes are bytes,
//! with an optional suffix `KiB`, `MiB` or `GiB` (`16MiB`).
//!
//! | key | tasks | default | meaning |
//! | --- | --- | --- | --- |
//! | `line_bytes_max` | all | `64MiB` | longest input line; a longer one fails the attempt |
//! | `chunk_bytes` | `split` | `16MiB` | largest chunk file; a longer line gets a chunk of its own |
//! | `map_entries_max` | `wordcount.map` | `1000000` | distinct words held before the counts are written out |
//! | `map_memory_bytes` | `wordcount.map` | `64MiB` | estimated memory of those words before they are written out |
//! | `reduce_entries_max` | `sum.reduce` | `1000000` | distinct keys held before a sorted run is spilled |
//! | `reduce_memory_bytes` | `sum.reduce` | `64MiB` | estimated memory of those keys before a run is spilled |
//! | `sort_memory_bytes` | `sort` | `64MiB` | records held (with per-record overhead) before a sorted run is spilled |
//! | `merge_fan_in` | `sort`, `sum.reduce`, `merge` | `64` | files merged at once (2 to 1024); more take several passes |
//! | `sort_by` | `sort`, `merge` | `key` | `key` (bytewise) or `value` (numeric, ties by key ascending) |
//! | `order` | `sort`, `merge` | `asc` | `asc` or `desc`; applies to the `sort_by` field |
//! | `partition_by` | `sort` | `hash` | with partitions: `hash` (of the key) or `range` |
//! | `range_bounds` | `sort` | none | with `partition_by=range`: the split points, see [`Sort`] |
//!
//! Records that compare equal keep their input order (`sort` and `merge`
//! are stable), so a unit's output is the same on every attempt.

mod merge;
mod part_files;
mod record;
mod reduce;
mod runs;
mod settings;
mod sort;
mod split;
mod wordcount;

pub use settings::parse_bytes;

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod test_support;

pub use merge::{MERGED_FILE_NAME, Merge};
pub use part_files::{PART_BUFFER_BYTES_MAX, PartFiles, part_file_name};
pub use record::{fnv1a_64, hash_partition};
pub use reduce::{REDUCE_ENTRIES_MAX_DEFAULT, REDUCE_MEMORY_BYTES_DEFAULT, SumReduce};
pub use runs::{MERGE_FAN_IN_DEFAULT, MERGE_FAN_IN_MAX};
pub use sort::{SORT_MEMORY_BYTES_DEFAULT, Sort};
pub use split::{CHUNK_BYTES_DEFAULT, Split};
pub use wordcount::{MAP_ENTRIES_MAX_DEFAULT, MAP_MEMORY_BYTES_DEFAULT, WordCountMap, words};

/// The tasks the stock `taskmaster-worker` binary offers: `exec` and the
/// built-in stages here (`split`, `wordcount.map`, `sum.reduce`, `sort`,
/// `merge`). Start from it and register your own to embed a worker.
pub fn stock_registry() -> crate::TaskRegistry {
    let mut tasks = crate::TaskRegistry::new();
    tasks
        .register("exec", crate::exec::ExecTask)
        .register(Split::NAME, Split)
        .register(WordCountMap::NAME, WordCountMap)
        .register(SumReduce::NAME, SumReduce)
        .register(Sort::NAME, Sort)
        .register(Merge::NAME, Merge);
    tasks
}

#[cfg(test)]
mod stock_tests {
    use super::*;

    #[test]
    fn stock_registry_has_exec_and_the_builtins() {
        let tasks = stock_registry();
        assert_eq!(
            tasks.names(),
            [
                "exec",
                "merge",
                "sort",
                "split",
                "sum.reduce",
                "wordcount.map"
            ]
        );
        assert!(tasks.get("exec").is_some());
        assert!(tasks.get("wordcount").is_none());
    }
}
