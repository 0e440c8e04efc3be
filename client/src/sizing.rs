//! Right-sizing a first group's units from its input files: small files are
//! packed together up to `unit_bytes`, a file larger than that is cut into
//! byte ranges of about `unit_bytes` each (line-oriented readers finish the
//! line a range cuts, so cuts need not fall on line boundaries).
//!
//! A group that sets no `unit_bytes` gets [`UNIT_BYTES_TARGET`] per unit,
//! but its files are packed only as far as leaves [`UNITS_MIN`] units: 200
//! small files become 67 units, not one, so a first stage spreads over the
//! workers however small its files are.

use taskmaster_proto::v1::{InputSlice, InputUnit};

/// The `unit_bytes` of a group that sets none: sized as
/// [`UNIT_BYTES_TARGET`] per unit, but into at least [`UNITS_MIN`] units
/// when there are that many files. No pipeline file can hold this value
/// (TOML integers end at 2^63 - 1), so a `unit_bytes` that is written
/// always means exactly what it says.
pub const UNIT_BYTES_DEFAULT: u64 = u64::MAX;

/// Target size of one unit's input when a group sets none.
pub const UNIT_BYTES_TARGET: u64 = 64 * 1024 * 1024;

/// Units a group that sets no `unit_bytes` is packed into at least, when
/// it has that many files: more than the slots of a few machines, while a
/// unit's lease and commit (well under a millisecond of the master's time)
/// stay small beside a task's start. Fewer files: one unit each.
pub const UNITS_MIN: usize = 64;

/// Packs `files` (path, size in bytes), in order, into units. A unit holds
/// at most `unit_bytes` (a pack closes before it would exceed it), except
/// that a file is never split when `unit_bytes` is 0: then every file is
/// its own unit. [`UNIT_BYTES_DEFAULT`]: see there.
pub fn size_units(files: &[(String, u64)], unit_bytes: u64) -> Vec<InputUnit> {
    if unit_bytes == 0 {
        return files
            .iter()
            .map(|(path, _)| InputUnit {
                files: vec![path.clone()],
                slices: Vec::new(),
            })
            .collect();
    }
    let (unit_bytes, pack_files_max) = if unit_bytes == UNIT_BYTES_DEFAULT {
        let whole = files
            .iter()
            .filter(|(_, size)| *size <= UNIT_BYTES_TARGET)
            .count();
        (UNIT_BYTES_TARGET, (whole / UNITS_MIN).max(1))
    } else {
        (unit_bytes, usize::MAX)
    };
    let mut units = Vec::new();
    let mut pack = InputUnit::default();
    let mut pack_bytes = 0;
    for (path, size) in files {
        if *size > unit_bytes {
            if !pack.files.is_empty() {
                units.push(std::mem::take(&mut pack)); // keeps units in file order
                pack_bytes = 0;
            }
            units.extend(slices_of(path, *size, unit_bytes));
            continue;
        }
        let full = pack_bytes + size > unit_bytes || pack.files.len() == pack_files_max;
        if full && !pack.files.is_empty() {
            units.push(std::mem::take(&mut pack));
            pack_bytes = 0;
        }
        pack.files.push(path.clone());
        pack_bytes += size;
    }
    if !pack.files.is_empty() {
        units.push(pack);
    }
    units
}

/// Cuts a file of `size` bytes into `ceil(size / unit_bytes)` ranges of
/// near-equal size, one unit each.
fn slices_of(path: &str, size: u64, unit_bytes: u64) -> Vec<InputUnit> {
    let count = size.div_ceil(unit_bytes);
    (0..count)
        .map(|i| {
            let slice = InputSlice {
                path: path.to_string(),
                start: i * size / count,
                end: (i + 1) * size / count,
            };
            InputUnit {
                files: Vec::new(),
                slices: vec![slice],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<(String, u64)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| (format!("/f{i}"), s))
            .collect()
    }

    #[test]
    fn small_files_are_packed_without_exceeding_the_target() {
        let units = size_units(&files(&[10, 20, 30, 50, 0, 1]), 60);
        let packs: Vec<Vec<String>> = units.iter().map(|u| u.files.clone()).collect();
        assert_eq!(
            packs,
            vec![vec!["/f0", "/f1", "/f2"], vec!["/f3", "/f4", "/f5"]]
        );
    }

    #[test]
    fn a_large_file_is_cut_into_ranges_that_cover_it_once() {
        let units = size_units(&files(&[10, 250]), 100);
        assert_eq!(units[0].files, vec!["/f0"]);
        let ranges: Vec<(u64, u64)> = units[1..]
            .iter()
            .map(|u| (u.slices[0].start, u.slices[0].end))
            .collect();
        assert_eq!(ranges, vec![(0, 83), (83, 166), (166, 250)]);
        assert!(ranges.iter().all(|(s, e)| e - s <= 100));
    }

    #[test]
    fn by_default_small_files_are_packed_only_past_the_minimum_unit_count() {
        // The case: 200 small files were one unit.
        let units = size_units(&files(&[1000; 200]), UNIT_BYTES_DEFAULT);
        assert_eq!(units.len(), 67, "3 files a unit leaves at least 64 units");
        assert!(units.iter().all(|u| u.files.len() <= 3));
        let packed: Vec<String> = units.iter().flat_map(|u| u.files.clone()).collect();
        assert_eq!(
            packed,
            files(&[1000; 200])
                .into_iter()
                .map(|f| f.0)
                .collect::<Vec<_>>()
        );
        // Fewer files than the minimum: one unit each.
        assert_eq!(size_units(&files(&[10; 20]), UNIT_BYTES_DEFAULT).len(), 20);
        // Very many: still about the minimum, not one unit a file.
        let many = size_units(&files(&[1; 20_000]), UNIT_BYTES_DEFAULT);
        assert_eq!(many.len(), 65);
        // The byte target still holds: large files are cut to ~64 MiB.
        let big = size_units(&files(&[3 * UNIT_BYTES_TARGET, 5]), UNIT_BYTES_DEFAULT);
        assert_eq!(big.len(), 4);
        assert!(big[..3].iter().all(|u| u.slices.len() == 1));
        assert!(
            big[..3]
                .iter()
                .all(|u| u.slices[0].end - u.slices[0].start == UNIT_BYTES_TARGET)
        );
    }

    #[test]
    fn a_written_unit_bytes_packs_as_it_says() {
        let units = size_units(&files(&[1000; 200]), 64 * 1024 * 1024);
        assert_eq!(units.len(), 1, "explicit: packed up to the bytes given");
    }

    #[test]
    fn zero_means_one_unit_per_file() {
        let units = size_units(&files(&[1 << 40, 0, 5]), 0);
        assert_eq!(units.len(), 3);
        assert!(
            units
                .iter()
                .all(|u| u.files.len() == 1 && u.slices.is_empty())
        );
    }
}
