//! The journal as one append-only file: an 8-byte magic, then frames.
//! `sync` is `fdatasync`, so an acknowledged record survives power loss
//! (sled 0.34's flush uses `sync_file_range`, which does not).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use taskmaster_proto::journal::Record;

use super::frame::{self, Tail};
use super::{JournalError, LogStore, decode_all};
use prost::Message;

const MAGIC: &[u8; 8] = b"TMJRNL01";
/// Magic, then the sequence number of the record before the file's first
/// (0 for a journal that starts at the beginning; a snapshot's position
/// after compaction).
const HEADER_BYTES: usize = 16;

pub struct FileLog {
    file: File,
    path: PathBuf,
    /// Records before this file's first one (they live in a snapshot).
    base: u64,
    /// File length after the last successful sync, and after the last write.
    synced_len: u64,
    written_len: u64,
}

/// A journal opened for recovery: its records, and what was cut off.
pub struct Opened {
    pub log: FileLog,
    /// Sequence number before the first of `records`.
    pub base: u64,
    pub records: Vec<Record>,
    /// Bytes of an unfinished tail that were truncated (never acknowledged).
    pub torn_bytes: usize,
}

impl FileLog {
    /// Creates a journal holding `records` after `base`, atomically: written
    /// to a temporary file, synced, renamed into place, directory synced.
    pub fn create(path: &Path, base: u64, records: &[Record]) -> Result<FileLog, JournalError> {
        let mut frames = Vec::new();
        for rec in records {
            frame::encode(&rec.encode_to_vec(), &mut frames);
        }
        write_atomically(path, base, &frames)
    }

    /// Opens an existing journal, reading every record. A torn tail is
    /// truncated (and the truncation synced); damage before valid records
    /// is refused.
    pub fn open(path: &Path) -> Result<Opened, JournalError> {
        let io = |context| move |source| io_error(path, context, source);
        let mut bytes = Vec::new();
        File::open(path)
            .map_err(io("open"))?
            .read_to_end(&mut bytes)
            .map_err(io("read"))?;
        let shown = path.display().to_string();
        if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
            return Err(JournalError::Invalid {
                path: shown,
                what: "not a taskmaster journal (bad magic)".into(),
            });
        }
        let base = u64::from_le_bytes(
            bytes[MAGIC.len()..HEADER_BYTES]
                .try_into()
                .expect("8 bytes"),
        );
        let scan = frame::scan(&bytes[HEADER_BYTES..]);
        let torn_bytes = match scan.tail {
            Tail::Clean => 0,
            Tail::Torn { bytes, .. } => bytes,
            Tail::CorruptMiddle { offset } => {
                return Err(JournalError::CorruptMiddle {
                    path: shown,
                    offset: (HEADER_BYTES + offset) as u64,
                });
            }
        };
        let records = decode_all(&shown, &scan.payloads, HEADER_BYTES)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open for append"))?;
        if torn_bytes > 0 {
            file.set_len((HEADER_BYTES + scan.valid_len) as u64)
                .map_err(io("truncate torn tail"))?;
            file.sync_all().map_err(io("sync after truncation"))?;
        }
        let len = (HEADER_BYTES + scan.valid_len) as u64;
        let log = FileLog {
            file,
            path: path.to_path_buf(),
            base,
            synced_len: len,
            written_len: len,
        };
        Ok(Opened {
            log,
            base,
            records,
            torn_bytes,
        })
    }
}

/// Writes a whole journal file (header and frames) under a temporary name,
/// syncs it and renames it over `path`, then opens it for appending.
fn write_atomically(path: &Path, base: u64, frames: &[u8]) -> Result<FileLog, JournalError> {
    let io = |context| move |source| io_error(path, context, source);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io("create"))?;
    file.write_all(MAGIC).map_err(io("write"))?;
    file.write_all(&base.to_le_bytes()).map_err(io("write"))?;
    file.write_all(frames).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    sync_dir(path).map_err(io("sync directory"))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io("open"))?;
    let len = (HEADER_BYTES + frames.len()) as u64;
    Ok(FileLog {
        file,
        path: path.to_path_buf(),
        base,
        synced_len: len,
        written_len: len,
    })
}

impl LogStore for FileLog {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written_len += bytes.len() as u64;
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced_len = self.written_len;
        Ok(())
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        // Shrinking needs no space, so this works on a full disk.
        self.file.set_len(self.synced_len)?;
        self.written_len = self.synced_len;
        self.file.sync_all()
    }

    /// Rewrites the file without records up to `upto` (now in a snapshot).
    fn compact(&mut self, upto: u64) -> io::Result<()> {
        if upto <= self.base {
            return Ok(());
        }
        let bytes = std::fs::read(&self.path)?;
        let scan = frame::scan(&bytes[HEADER_BYTES.min(bytes.len())..]);
        let skip = (upto - self.base) as usize;
        let keep_from = match scan.payloads.get(skip) {
            Some(&(offset, _)) => offset,
            None => scan.valid_len, // every record is in the snapshot
        };
        let frames = &bytes[HEADER_BYTES + keep_from..HEADER_BYTES + scan.valid_len];
        *self = write_atomically(&self.path, upto, frames).map_err(io::Error::other)?;
        Ok(())
    }
}

fn io_error(path: &Path, context: &'static str, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        context,
        source,
    }
}

/// Makes a rename or a new file's directory entry durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(dir)?.sync_all()
}
