//! The `split` task.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::part_files::PartFiles;
use super::record::hash_partition;
use super::settings::{SIZE_BYTES_LIMIT, Settings};
use crate::lines::{READ_BUFFER_BYTES, UnitLines};
use crate::outputs::OUTPUT_FILES_MAX;
use crate::task::{Task, TaskError, UnitContext};

/// Default largest chunk file (`chunk_bytes`, 16 MiB).
pub const CHUNK_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// Copies the unit's input lines into chunk files, so later stages get
/// pieces of a bounded size.
///
/// Without partitions the lines go, in input order, into `chunk-00000`,
/// `chunk-00001`, ..., each at most `chunk_bytes` long (a single longer
/// line gets a chunk of its own). With partitions, each line goes to
/// `part-<fnv1a_64(line) % partitions>` instead and `chunk_bytes` does not
/// apply. Every line written ends with `\n`. Config: `chunk_bytes`,
/// `line_bytes_max`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Split;

impl Split {
    /// The task's name in a group spec.
    pub const NAME: &'static str = "split";
}

impl Task for Split {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        let settings = Settings::new(Self::NAME, unit, &["chunk_bytes"])?;
        let chunk_bytes = settings.bytes("chunk_bytes", CHUNK_BYTES_DEFAULT, SIZE_BYTES_LIMIT)?;
        let mut lines = UnitLines::for_unit(unit, settings.line_bytes_max()?);
        let mut line = Vec::new();
        if unit.partitions > 0 {
            let mut parts = PartFiles::new(&unit.output_dir, unit.partitions);
            while lines.read_line(&mut line)? {
                unit.check_cancelled()?;
                parts.write_line(hash_partition(&line, unit.partitions), &[&line])?;
            }
            return parts.finish();
        }
        let mut chunks = Chunks::new(&unit.output_dir, chunk_bytes);
        while lines.read_line(&mut line)? {
            unit.check_cancelled()?;
            chunks.write_line(&line)?;
        }
        chunks.finish()
    }
}

/// The chunk files of an output directory, filled one after another.
struct Chunks {
    dir: PathBuf,
    chunk_bytes: u64,
    /// The chunk being filled, its path and size so far.
    current: Option<(BufWriter<File>, PathBuf, u64)>,
    /// Chunks started so far.
    count: usize,
}

impl Chunks {
    fn new(dir: &Path, chunk_bytes: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            chunk_bytes,
            current: None,
            count: 0,
        }
    }

    /// Appends `line` and a `\n`, starting a new chunk first when it would
    /// not fit (unless the current one is empty).
    fn write_line(&mut self, line: &[u8]) -> Result<(), TaskError> {
        let line_bytes = line.len() as u64 + 1;
        if let Some((_, _, size)) = &self.current
            && *size + line_bytes > self.chunk_bytes
        {
            self.close()?;
        }
        if self.current.is_none() {
            self.open()?;
        }
        let (out, path, size) = self.current.as_mut().expect("a chunk was opened above");
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|err| write_error(path, err))?;
        *size += line_bytes;
        Ok(())
    }

    fn open(&mut self) -> Result<(), TaskError> {
        if self.count == OUTPUT_FILES_MAX {
            return Err(TaskError::new(format!(
                "split: more than {OUTPUT_FILES_MAX} chunks of {} bytes; raise chunk_bytes",
                self.chunk_bytes
            )));
        }
        let path = self.dir.join(format!("chunk-{:05}", self.count));
        let file = File::create(&path).map_err(|err| write_error(&path, err))?;
        self.current = Some((BufWriter::with_capacity(READ_BUFFER_BYTES, file), path, 0));
        self.count += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<(), TaskError> {
        if let Some((mut out, path, _)) = self.current.take() {
            out.flush().map_err(|err| write_error(&path, err))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), TaskError> {
        self.close()
    }
}

fn write_error(path: &Path, err: std::io::Error) -> TaskError {
    TaskError::new(format!("cannot write output {}: {err}", path.display()))
}

#[cfg(test)]
mod tests;
