//! Reading a unit's inputs as lines: its whole files first, then its byte
//! slices, in the order the lease lists them.
//!
//! # Which lines a slice owns
//!
//! A client cuts a large file into slices `[start, end)` that need not fall
//! on line boundaries. A line belongs to the slice in which its **first
//! byte** lies, so slices that tile a file read every line exactly once:
//!
//! - if `start > 0` and the byte at `start - 1` is not `\n`, the line in
//!   progress at `start` began in the previous slice: skip it, up to and
//!   including its `\n`;
//! - then read whole lines while a line's first byte is before `end`; the
//!   last one may run past `end` (and past any number of later slices);
//! - a final line without a trailing `\n` counts as a line.
//!
//! `end` past the end of the file reads to the end of the file; a slice
//! with `start > end` is an error.
//!
//! # Lines
//!
//! Lines are bytes, not `String`s, so non-UTF-8 data passes through
//! untouched. A line is returned without its `\n` (a `\r` before it stays).
//! Reading streams through a fixed buffer, one input file open at a time;
//! the only unbounded thing would be one enormous line, so lines longer
//! than a limit ([`LINE_BYTES_MAX_DEFAULT`]) are an error.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::task::{InputSlice, TaskError, UnitContext};

/// Longest line read by default (64 MiB). A longer line fails the attempt
/// instead of growing memory without bound.
pub const LINE_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Read buffer of each open input.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One input of a unit: a whole file, or the lines a slice of one owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSource {
    /// Every line of the file.
    File(PathBuf),
    /// The lines whose first byte lies in the slice.
    Slice(InputSlice),
}

impl InputSource {
    /// A unit's inputs in reading order: whole files, then slices.
    pub fn all(unit: &UnitContext) -> Vec<InputSource> {
        let files = unit.inputs.iter().cloned().map(InputSource::File);
        let slices = unit.input_slices.iter().cloned().map(InputSource::Slice);
        files.chain(slices).collect()
    }

    /// The file this input reads from.
    pub fn path(&self) -> &Path {
        match self {
            InputSource::File(path) => path,
            InputSource::Slice(slice) => &slice.path,
        }
    }
}

impl fmt::Display for InputSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSource::File(path) => write!(f, "{}", path.display()),
            InputSource::Slice(slice) => write!(
                f,
                "{} bytes [{}, {})",
                slice.path.display(),
                slice.start,
                slice.end
            ),
        }
    }
}

/// Opens `slice` and returns a reader of exactly the bytes of the lines it
/// owns (copied byte for byte, they form a file of just those lines), and
/// where those bytes lie in the file.
pub fn open_slice(slice: &InputSlice) -> io::Result<(Take<BufReader<File>>, Range<u64>)> {
    if slice.start > slice.end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the slice starts after its end",
        ));
    }
    let file = File::open(&slice.path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let owned = owned_range(&mut reader, len, slice.start, slice.end)?;
    reader.seek(SeekFrom::Start(owned.start))?;
    Ok((reader.take(owned.end - owned.start), owned))
}

/// The bytes of a file of `len` bytes owned by the slice `[start, end)`:
/// from the first line start at or after `start` to the end of the line
/// holding byte `end - 1` (empty when no line starts in the slice).
fn owned_range<R: BufRead + Seek>(
    reader: &mut R,
    len: u64,
    start: u64,
    end: u64,
) -> io::Result<Range<u64>> {
    let end = end.min(len);
    let first = if start == 0 || start >= len {
        start.min(len)
    } else {
        reader.seek(SeekFrom::Start(start - 1))?;
        let mut before = [0u8; 1];
        reader.read_exact(&mut before)?;
        if before[0] == b'\n' {
            start
        } else {
            start + skip_line(reader)?
        }
    };
    if first >= end {
        return Ok(first..first);
    }
    // The last owned line is the one holding byte end - 1; it ends at the
    // first '\n' from there on, or at the end of the file.
    reader.seek(SeekFrom::Start(end - 1))?;
    Ok(first..end - 1 + skip_line(reader)?)
}

/// Consumes bytes up to and including the next `\n` (or to the end of the
/// input) without keeping them; returns how many.
fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        match buf.iter().position(|&byte| byte == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(skipped + at as u64 + 1);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    }
}

/// The lines of one input, streamed.
pub struct LineReader {
    reader: Box<dyn BufRead + Send>,
    source: InputSource,
    /// File offset of the next line's first byte.
    next_offset: u64,
    /// File offset of the line last returned (for error messages).
    line_offset: u64,
    line_bytes_max: usize,
}

impl LineReader {
    /// Opens `source`; lines longer than `line_bytes_max` will be an error.
    pub fn open(source: &InputSource, line_bytes_max: usize) -> Result<Self, TaskError> {
        let fail = |err: io::Error| TaskError::new(format!("cannot read input {source}: {err}"));
        let (reader, offset): (Box<dyn BufRead + Send>, u64) = match source {
            InputSource::File(path) => {
                let file = File::open(path).map_err(fail)?;
                (
                    Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, file)),
                    0,
                )
            }
            InputSource::Slice(slice) => {
                let (reader, owned) = open_slice(slice).map_err(fail)?;
                (Box::new(reader), owned.start)
            }
        };
        Ok(Self {
            reader,
            source: source.clone(),
            next_offset: offset,
            line_offset: offset,
            line_bytes_max,
        })
    }

    /// Reads the next line into `line` (cleared first, no `\n`); `false` at
    /// the end of the input.
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> Result<bool, TaskError> {
        line.clear();
        // One byte past the limit tells a too-long line from one that fits.
        let limit = self.line_bytes_max as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', line)
            .map_err(|err| {
                TaskError::new(format!(
                    "cannot read input {} at byte {}: {err}",
                    self.source, self.next_offset
                ))
            })?;
        if read == 0 {
            return Ok(false);
        }
        self.line_offset = self.next_offset;
        self.next_offset += read as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > self.line_bytes_max {
            return Err(TaskError::new(format!(
                "{} is longer than {} bytes (config line_bytes_max)",
                self.describe_line(),
                self.line_bytes_max
            )));
        }
        Ok(true)
    }

    /// Names the line last returned, e.g. for a parse error.
    pub fn describe_line(&self) -> String {
        format!("the line at byte {} of {}", self.line_offset, self.source)
    }

    /// The input being read.
    pub fn source(&self) -> &InputSource {
        &self.source
    }
}

/// The lines of all of a unit's inputs, one after another; opens one input
/// at a time.
///
/// `read_line` reuses the caller's buffer; the `Iterator` impl allocates a
/// `Vec` per line, for convenience.
pub struct UnitLines {
    pending: VecDeque<InputSource>,
    current: Option<LineReader>,
    line_bytes_max: usize,
}

impl UnitLines {
    /// Reads `sources` in order.
    pub fn new(sources: Vec<InputSource>, line_bytes_max: usize) -> Self {
        Self {
            pending: sources.into(),
            current: None,
            line_bytes_max,
        }
    }

    /// Reads all of `unit`'s inputs: whole files, then slices.
    pub fn for_unit(unit: &UnitContext, line_bytes_max: usize) -> Self {
        Self::new(InputSource::all(unit), line_bytes_max)
    }

    /// Reads the next line into `line` (cleared first, no `\n`); `false`
    /// once every input is done.
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> Result<bool, TaskError> {
        loop {
            if let Some(reader) = &mut self.current {
                if reader.read_line(line)? {
                    return Ok(true);
                }
                self.current = None;
            }
            let Some(source) = self.pending.pop_front() else {
                line.clear();
                return Ok(false);
            };
            self.current = Some(LineReader::open(&source, self.line_bytes_max)?);
        }
    }

    /// Names the line last returned, e.g. for a parse error.
    pub fn describe_line(&self) -> String {
        match &self.current {
            Some(reader) => reader.describe_line(),
            None => "the end of the inputs".to_string(),
        }
    }
}

impl Iterator for UnitLines {
    type Item = Result<Vec<u8>, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        match self.read_line(&mut line) {
            Ok(true) => Some(Ok(line)),
            Ok(false) => None,
            Err(err) => Some(Err(err)),
        }
    }
}

#[cfg(test)]
mod tests;
