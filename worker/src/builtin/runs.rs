//! External-memory building blocks: sorted runs spilled to scratch files,
//! and a stable k-way merge of sorted inputs with a bounded fan-in.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::Record;
use super::settings::Settings;
use crate::lines::{InputSource, LineReader, READ_BUFFER_BYTES};
use crate::scratch::Scratch;
use crate::task::{TaskError, UnitContext};

/// Default number of files merged at once (`merge_fan_in`). Each open
/// input costs a read buffer of [`READ_BUFFER_BYTES`] and one record.
pub const MERGE_FAN_IN_DEFAULT: u64 = 64;
/// Largest `merge_fan_in` accepted; also bounds open files.
pub const MERGE_FAN_IN_MAX: u64 = 1024;
/// Smallest `merge_fan_in` that makes progress.
const MERGE_FAN_IN_MIN: u64 = 2;

/// Reads the `merge_fan_in` setting.
pub(crate) fn read_fan_in(settings: &Settings<'_>) -> Result<usize, TaskError> {
    let fan_in = settings.count(
        "merge_fan_in",
        MERGE_FAN_IN_DEFAULT,
        MERGE_FAN_IN_MIN,
        MERGE_FAN_IN_MAX,
    )?;
    Ok(fan_in as usize)
}

/// The records of one input, skipping empty lines.
pub(crate) struct RecordReader {
    lines: LineReader,
    numeric: bool,
}

impl RecordReader {
    pub(crate) fn open(
        source: &InputSource,
        numeric: bool,
        line_bytes_max: usize,
    ) -> Result<Self, TaskError> {
        Ok(Self {
            lines: LineReader::open(source, line_bytes_max)?,
            numeric,
        })
    }

    /// The next record, `None` at the end of the input.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, TaskError> {
        loop {
            let mut line = Vec::new();
            if !self.lines.read_line(&mut line)? {
                return Ok(None);
            }
            if line.is_empty() {
                continue;
            }
            let record = Record::parse(line, self.numeric)
                .map_err(|why| TaskError::new(format!("{}: {why}", self.lines.describe_line())))?;
            return Ok(Some(record));
        }
    }

    fn describe_line(&self) -> String {
        self.lines.describe_line()
    }
}

/// A buffered file of lines in the scratch directory.
pub(crate) struct RunWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl RunWriter {
    /// Creates the next `kind` file in `scratch`.
    pub(crate) fn create(scratch: &mut Scratch, kind: &str) -> Result<Self, TaskError> {
        let path = scratch.next_file(kind)?;
        let file = File::create(&path).map_err(|err| write_error(&path, err))?;
        Ok(Self {
            out: BufWriter::with_capacity(READ_BUFFER_BYTES, file),
            path,
        })
    }

    /// Appends the concatenation of `pieces` and a `\n`.
    pub(crate) fn write_line(&mut self, pieces: &[&[u8]]) -> Result<(), TaskError> {
        for piece in pieces {
            self.out
                .write_all(piece)
                .map_err(|err| write_error(&self.path, err))?;
        }
        self.out
            .write_all(b"\n")
            .map_err(|err| write_error(&self.path, err))
    }

    /// Flushes and closes the file; returns it as an input to merge.
    pub(crate) fn finish(mut self) -> Result<InputSource, TaskError> {
        self.out
            .flush()
            .map_err(|err| write_error(&self.path, err))?;
        Ok(InputSource::File(self.path))
    }
}

fn write_error(path: &Path, err: std::io::Error) -> TaskError {
    TaskError::new(format!(
        "cannot write scratch file {}: {err}",
        path.display()
    ))
}

/// Writes `records` (already sorted) to a new run file.
pub(crate) fn write_run(
    scratch: &mut Scratch,
    records: impl IntoIterator<Item = Record>,
    unit: &UnitContext,
) -> Result<InputSource, TaskError> {
    let mut run = RunWriter::create(scratch, "run")?;
    for record in records {
        unit.check_cancelled()?;
        run.write_line(&[&record.line])?;
    }
    run.finish()
}

/// A record at the head of one merge input.
struct Head<'c> {
    record: Record,
    source: usize,
    compare: &'c dyn Fn(&Record, &Record) -> Ordering,
}

impl Ord for Head<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest; turned around, it pops the least
        // record, and of equal ones the earliest input (a stable merge).
        (self.compare)(&other.record, &self.record).then_with(|| other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

/// Merges inputs sorted by one order into one sorted stream.
pub(crate) struct Merger<'c> {
    /// The order the inputs are in and the output will be in.
    pub(crate) compare: &'c dyn Fn(&Record, &Record) -> Ordering,
    /// Names the order in the error for an unsorted input.
    pub(crate) order_name: String,
    /// Whether records need numeric values.
    pub(crate) numeric: bool,
    /// Inputs open at once; more take several passes through scratch files.
    pub(crate) fan_in: usize,
    pub(crate) line_bytes_max: usize,
}

impl Merger<'_> {
    /// Merges `sources` into `emit`, equal records in input order.
    /// `owned`: the sources are scratch runs, deleted once merged.
    pub(crate) fn merge(
        &self,
        sources: Vec<InputSource>,
        owned: bool,
        scratch: &mut Scratch,
        unit: &UnitContext,
        emit: &mut dyn FnMut(Record) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let mut sources: Vec<(InputSource, bool)> =
            sources.into_iter().map(|source| (source, owned)).collect();
        while sources.len() > self.fan_in {
            sources = self.pass(sources, scratch, unit)?;
        }
        self.merge_group(&sources, unit, emit)?;
        remove_owned(&sources);
        Ok(())
    }

    /// Merges each run of `fan_in` consecutive sources into one scratch
    /// file; consecutive, so equal records keep their input order.
    fn pass(
        &self,
        sources: Vec<(InputSource, bool)>,
        scratch: &mut Scratch,
        unit: &UnitContext,
    ) -> Result<Vec<(InputSource, bool)>, TaskError> {
        let mut merged = Vec::with_capacity(sources.len().div_ceil(self.fan_in));
        for group in sources.chunks(self.fan_in) {
            if let [single] = group {
                merged.push(single.clone());
                continue;
            }
            let mut out = RunWriter::create(scratch, "merge")?;
            self.merge_group(group, unit, &mut |record| out.write_line(&[&record.line]))?;
            merged.push((out.finish()?, true));
            remove_owned(group);
        }
        Ok(merged)
    }

    /// One k-way merge of `group` with a heap; checks that each input is
    /// in order, since a misconfigured merge would otherwise be silently
    /// wrong.
    fn merge_group(
        &self,
        group: &[(InputSource, bool)],
        unit: &UnitContext,
        emit: &mut dyn FnMut(Record) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let mut readers = group
            .iter()
            .map(|(source, _)| RecordReader::open(source, self.numeric, self.line_bytes_max))
            .collect::<Result<Vec<_>, _>>()?;
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (source, reader) in readers.iter_mut().enumerate() {
            if let Some(record) = reader.next_record()? {
                heap.push(self.head(record, source));
            }
        }
        while let Some(Head { record, source, .. }) = heap.pop() {
            unit.check_cancelled()?;
            let reader = &mut readers[source];
            if let Some(next) = reader.next_record()? {
                if (self.compare)(&next, &record) == Ordering::Less {
                    return Err(TaskError::new(format!(
                        "{} sorts before the line above it: inputs to a merge must be sorted by {}",
                        reader.describe_line(),
                        self.order_name
                    )));
                }
                heap.push(self.head(next, source));
            }
            emit(record)?;
        }
        Ok(())
    }

    fn head(&self, record: Record, source: usize) -> Head<'_> {
        Head {
            record,
            source,
            compare: self.compare,
        }
    }
}

/// Deletes the scratch runs among `sources` early, to give back disk
/// space; the scratch directory's removal would get them anyway.
fn remove_owned(sources: &[(InputSource, bool)]) {
    for (source, owned) in sources {
        if *owned {
            let _ = std::fs::remove_file(source.path());
        }
    }
}
