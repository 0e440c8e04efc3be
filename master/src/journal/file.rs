//! The journal as one append-only file: an 8-byte magic, then frames.
//! `sync` is `fdatasync`, so an acknowledged record survives power loss
//! (sled 0.34's flush uses `sync_file_range`, which does not).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use taskmaster_proto::journal::Record;

use super::frame::{self, Tail};
use super::{JournalError, LogStore, decode_all};

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
    /// Where records end in the file: (sequence number of the last record
    /// before `offset`, `offset`), ascending, at least [`MARK_EVERY_BYTES`]
    /// apart. Compaction reads the file from the mark before its position
    /// instead of from the start, so it costs the kept tail, not the whole
    /// journal (it runs on the writer thread, between syncs).
    marks: Vec<(u64, u64)>,
}

/// Bytes between two marks at least: compaction scans at most this much
/// besides the tail it keeps, and a journal never compacted keeps one mark
/// per this many bytes.
const MARK_EVERY_BYTES: u64 = 256 * 1024;

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
            frame::encode_message(rec, &mut frames);
        }
        write_atomically(path, base, &frames, records.len() as u64)
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
            marks: vec![
                (base, HEADER_BYTES as u64),
                (base + records.len() as u64, len),
            ],
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
fn write_atomically(
    path: &Path,
    base: u64,
    frames: &[u8],
    records: u64,
) -> Result<FileLog, JournalError> {
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
        marks: vec![(base, HEADER_BYTES as u64), (base + records, len)],
        synced_len: len,
        written_len: len,
    })
}

impl LogStore for FileLog {
    fn append(&mut self, bytes: &[u8], last_seq: u64) -> io::Result<()> {
        self.written_len += bytes.len() as u64;
        self.file.write_all(bytes)?;
        let &(_, last_offset) = self.marks.last().expect("marks start with the header");
        if self.written_len - last_offset >= MARK_EVERY_BYTES {
            self.marks.push((last_seq, self.written_len));
        }
        Ok(())
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
        self.marks.retain(|&(_, offset)| offset <= self.synced_len);
        self.file.sync_all()
    }

    /// Rewrites the file without records up to `upto` (now in a snapshot),
    /// reading it only from the last mark at or before `upto`.
    fn compact(&mut self, upto: u64) -> io::Result<()> {
        if upto <= self.base {
            return Ok(());
        }
        let &(mark_seq, mark_offset) = self
            .marks
            .iter()
            .rev()
            .find(|&&(seq, _)| seq <= upto)
            .expect("the first mark is the file's base, below upto");
        let mut file = File::open(&self.path)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(mark_offset))?;
        let mut bytes = Vec::new();
        file.take(self.written_len - mark_offset)
            .read_to_end(&mut bytes)?;
        let scan = frame::scan(&bytes);
        let skip = (upto - mark_seq) as usize;
        let keep_from = match scan.payloads.get(skip) {
            Some(&(offset, _)) => offset,
            None => scan.valid_len, // every record is in the snapshot
        };
        let kept = scan.payloads.len().saturating_sub(skip) as u64;
        let frames = &bytes[keep_from..scan.valid_len];
        *self = write_atomically(&self.path, upto, frames, kept).map_err(io::Error::other)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use taskmaster_proto::journal::{Init, record::Kind};

    fn numbered(i: u64) -> Record {
        Record {
            kind: Some(Kind::Init(Init {
                server_token: format!("record-{i:08}-{}", "x".repeat(200)),
                created_unix_ms: i,
            })),
        }
    }

    fn tokens(records: &[Record]) -> Vec<u64> {
        records
            .iter()
            .map(|r| match &r.kind {
                Some(Kind::Init(init)) => init.created_unix_ms,
                _ => panic!("not a numbered record"),
            })
            .collect()
    }

    #[test]
    fn compaction_from_a_mark_keeps_exactly_the_records_after_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let mut log = FileLog::create(&path, 0, &[]).unwrap();
        // 30 batches of 100 records of ~230 bytes: several marks.
        let mut seq = 0;
        for _ in 0..30 {
            let mut frames = Vec::new();
            for _ in 0..100 {
                seq += 1;
                frame::encode_message(&numbered(seq), &mut frames);
            }
            log.append(&frames, seq).unwrap();
            log.sync().unwrap();
        }
        assert!(log.marks.len() > 3, "{:?}", log.marks);
        // Between marks, then again from the new file's own marks.
        for upto in [1234, 2001, 2999] {
            log.compact(upto).unwrap();
            let opened = FileLog::open(&path).unwrap();
            assert_eq!(opened.base, upto);
            assert_eq!(
                tokens(&opened.records),
                (upto + 1..=3000).collect::<Vec<_>>()
            );
        }
        // Appends after a compaction continue the sequence.
        let mut frames = Vec::new();
        frame::encode_message(&numbered(3001), &mut frames);
        log.append(&frames, 3001).unwrap();
        log.sync().unwrap();
        log.compact(3000).unwrap();
        assert_eq!(tokens(&FileLog::open(&path).unwrap().records), vec![3001]);
    }
}
