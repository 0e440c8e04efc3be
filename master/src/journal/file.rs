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

pub struct FileLog {
    file: File,
}

/// A journal opened for recovery: its records, and what was cut off.
pub struct Opened {
    pub log: FileLog,
    pub records: Vec<Record>,
    /// Bytes of an unfinished tail that were truncated (never acknowledged).
    pub torn_bytes: usize,
}

impl FileLog {
    /// Creates a journal holding just `init`, atomically: written to a
    /// temporary file, synced, renamed into place, directory synced.
    pub fn create(path: &Path, init: &Record) -> Result<FileLog, JournalError> {
        let tmp = path.with_extension("tmp");
        let mut bytes = MAGIC.to_vec();
        frame::encode(&init.encode_to_vec(), &mut bytes);
        let io = |context| move |source| io_error(path, context, source);
        let mut file = File::create(&tmp).map_err(io("create"))?;
        file.write_all(&bytes).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        std::fs::rename(&tmp, path).map_err(io("rename"))?;
        sync_dir(path).map_err(io("sync directory"))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        Ok(FileLog { file })
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
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(JournalError::Invalid {
                path: shown,
                what: "not a taskmaster journal (bad magic)".into(),
            });
        }
        let scan = frame::scan(&bytes[MAGIC.len()..]);
        let torn_bytes = match scan.tail {
            Tail::Clean => 0,
            Tail::Torn { bytes, .. } => bytes,
            Tail::CorruptMiddle { offset } => {
                return Err(JournalError::CorruptMiddle {
                    path: shown,
                    offset: (MAGIC.len() + offset) as u64,
                });
            }
        };
        let records = decode_all(&shown, &scan.payloads, MAGIC.len())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open for append"))?;
        if torn_bytes > 0 {
            file.set_len((MAGIC.len() + scan.valid_len) as u64)
                .map_err(io("truncate torn tail"))?;
            file.sync_all().map_err(io("sync after truncation"))?;
        }
        Ok(Opened {
            log: FileLog { file },
            records,
            torn_bytes,
        })
    }
}

impl LogStore for FileLog {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
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
