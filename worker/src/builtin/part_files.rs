//! Writing a task's partitioned outputs, `part-00000` ... `part-<R-1>`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::task::TaskError;

/// Bytes [`PartFiles`] buffers over all partitions before writing them
/// out (4 MiB).
pub const PART_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The name of partition `partition`'s file: `part-` and 5 digits, what a
/// downstream shuffle's unit `partition` reads.
pub fn part_file_name(partition: u32) -> String {
    format!("part-{partition:05}")
}

/// Appends lines to partition files in an output directory.
///
/// Lines are buffered per partition and written out when the buffers reach
/// [`PART_BUFFER_BYTES_MAX`] together, by opening each file in append
/// mode, so memory and open files stay bounded however many partitions
/// there are. A file is created only when a line goes to its partition.
#[derive(Debug)]
pub struct PartFiles {
    dir: PathBuf,
    partitions: u32,
    buffers: BTreeMap<u32, Vec<u8>>,
    buffered_bytes: usize,
}

impl PartFiles {
    /// Writes into `dir`; `partitions` 0 means one file, `part-00000`.
    pub fn new(dir: &Path, partitions: u32) -> Self {
        Self {
            dir: dir.to_path_buf(),
            partitions: partitions.max(1),
            buffers: BTreeMap::new(),
            buffered_bytes: 0,
        }
    }

    /// How many partitions there are (at least 1).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Appends the concatenation of `pieces` and a `\n` to `partition`.
    ///
    /// # Panics
    ///
    /// If `partition` is not below [`Self::partitions`]: a bug in the caller.
    pub fn write_line(&mut self, partition: u32, pieces: &[&[u8]]) -> Result<(), TaskError> {
        assert!(
            partition < self.partitions,
            "partition {partition} of {}",
            self.partitions
        );
        let buffer = self.buffers.entry(partition).or_default();
        for piece in pieces {
            buffer.extend_from_slice(piece);
            self.buffered_bytes += piece.len();
        }
        buffer.push(b'\n');
        self.buffered_bytes += 1;
        if self.buffered_bytes >= PART_BUFFER_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out what is buffered; call it once at the end.
    pub fn finish(mut self) -> Result<(), TaskError> {
        self.flush()
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        for (partition, buffer) in std::mem::take(&mut self.buffers) {
            let path = self.dir.join(part_file_name(partition));
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(&buffer));
            written.map_err(|err| {
                TaskError::new(format!("cannot write output {}: {err}", path.display()))
            })?;
        }
        self.buffered_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_land_in_their_partition_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartFiles::new(dir.path(), 3);
        parts.write_line(2, &[b"a", b"\t", b"1"]).unwrap();
        parts.write_line(0, &[b"b"]).unwrap();
        // Large enough to force a flush in between.
        let big = vec![b'x'; PART_BUFFER_BYTES_MAX];
        parts.write_line(2, &[&big]).unwrap();
        parts.write_line(2, &[b"c"]).unwrap();
        parts.finish().unwrap();

        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(read("part-00000"), b"b\n");
        let mut expected = b"a\t1\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\nc\n");
        assert_eq!(read("part-00002"), expected);
        assert!(!dir.path().join("part-00001").exists());
    }

    #[test]
    fn zero_partitions_is_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartFiles::new(dir.path(), 0);
        assert_eq!(parts.partitions(), 1);
        parts.write_line(0, &[b"only"]).unwrap();
        parts.finish().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("part-00000")).unwrap(),
            b"only\n"
        );
        assert_eq!(part_file_name(12345), "part-12345");
    }
}
