//! Right-sizing a first group's units from its input files: small files are
//! packed together up to `unit_bytes`, a file larger than that is cut into
//! byte ranges of about `unit_bytes` each (line-oriented readers finish the
//! line a range cuts, so cuts need not fall on line boundaries).

use taskmaster_proto::v1::{InputSlice, InputUnit};

/// Default target size of one unit's input.
pub const UNIT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Packs `files` (path, size in bytes), in order, into units. A unit holds
/// at most `unit_bytes` (a pack closes before it would exceed it), except
/// that a file is never split when `unit_bytes` is 0: then every file is
/// its own unit.
pub fn size_units(files: &[(String, u64)], unit_bytes: u64) -> Vec<InputUnit> {
    let mut units = Vec::new();
    if unit_bytes == 0 {
        for (path, _) in files {
            units.push(InputUnit {
                files: vec![path.clone()],
                slices: Vec::new(),
            });
        }
        return units;
    }
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
        if pack_bytes + size > unit_bytes && !pack.files.is_empty() {
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
