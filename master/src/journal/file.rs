//! The journal as one file: a 16-byte header (magic, base sequence
//! number), then what each write appended. Format 3 (`TMJRNL03`, every
//! new journal) writes each append as a batch with a redundant header
//! ([`frame::encode_batch`]) into zeros written ahead ([`room`]), which
//! lets recovery tell a torn last write (cut it) from damage to one that
//! may have been acknowledged (refuse). Format 2 (`TMJRNL02`: batches with
//! one header) is upgraded in place when opened: its magic is rewritten and
//! later appends are format 3 batches (the scan reads both). Format 1
//! (`TMJRNL01`, frames only, the file growing with each append) is still
//! read and appended to until its next compaction rewrites it as format 3.
//! `sync` is `fdatasync`, so an acknowledged record survives power loss
//! (sled 0.34's flush uses `sync_file_range`, which does not). A purge
//! compacts the file: it copies the records it keeps in the background
//! ([`compaction`]) and renames the copy over the journal.
//!
//! [`FileBackend`] is the journal's [`LogBackend`]: `journal.log` in the
//! data dir.

mod compaction;
mod room;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use taskmaster_proto::journal::Record;

use super::frame::{self, Tail};
use super::{
    JournalError, LogBackend, LogState, LogStore, Mended, Opened, decode_all, records_before,
};
use crate::writeback;
use compaction::Compaction;
use room::Room;

/// Format 1: frames appended, the file growing with each.
const MAGIC_V1: &[u8; 8] = b"TMJRNL01";
/// Format 2: batches with one header, written into zeros written ahead.
const MAGIC_V2: &[u8; 8] = b"TMJRNL02";
/// Format 3: batches with a checksummed header and its copy after them;
/// format 2 batches may come first (a journal upgraded in place).
const MAGIC: &[u8; 8] = b"TMJRNL03";
/// Magic, then the sequence number of the record before the file's first
/// (0 for a journal that starts at the beginning; a snapshot's position
/// after compaction).
const HEADER_BYTES: usize = 16;

/// How a journal file lays out its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Frames appended one after another (format 1, older journals).
    Frames,
    /// Batches of frames (format 3, after any format 2 batches).
    Batches,
}

/// The file header of a (format 3) journal whose first record follows `base`.
fn file_header(base: u64) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..].copy_from_slice(&base.to_le_bytes());
    header
}

/// Frames as one format 3 batch to be written at file offset `at`
/// (nothing for no frames).
fn batch_of(frames: &[u8], at: u64, out: &mut Vec<u8>) -> io::Result<()> {
    frame::encode_batch(frames, at, out)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a journal write over 4 GiB"))
}

pub struct FileLog {
    file: File,
    format: Format,
    /// Zeros written ahead of a batches journal's end (None where no
    /// thread could be started for it, and for format 1).
    room: Option<Room>,
    /// The batch being written, reused.
    batch: Vec<u8>,
    path: PathBuf,
    /// Records before this file's first one (they live in a snapshot):
    /// the last purge.
    base: u64,
    /// File length after the last successful sync, and after the last write.
    synced_len: u64,
    written_len: u64,
    /// Where records end in the file: (sequence number of the last record
    /// before `offset`, `offset`), ascending, at least [`MARK_EVERY_BYTES`]
    /// apart. Compaction reads the file from the mark before its position
    /// instead of from the start, so it costs the kept tail, not the whole
    /// journal.
    marks: Vec<(u64, u64)>,
    /// Sequence number of the last record in the file, and of the last
    /// one synced.
    last_seq: u64,
    synced_seq: u64,
    /// A compaction whose copy is running (see [`compaction`]).
    compacting: Option<Compaction>,
}

/// Bytes between two marks at least: compaction and a read from a
/// position scan at most this much besides the tail they read.
const MARK_EVERY_BYTES: u64 = frame::MARK_EVERY_BYTES as u64;

/// A journal file opened, and what was mended.
pub struct OpenedFile {
    pub log: FileLog,
    /// Sequence number before the first record in the file.
    pub base: u64,
    /// The unfinished last write that was cut off, if there was one.
    pub torn: Option<Torn>,
    /// File offsets of batch headers that were damaged and written back
    /// from the copy after their batch, which verified its records.
    pub repaired: Vec<u64>,
}

/// An unfinished last write, cut off when the journal was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Where the journal was cut: its length now.
    pub offset: u64,
    /// Bytes cut off (the unfinished write and any zeros after it).
    pub bytes: u64,
    /// The part of the write that never reached the disk.
    pub unwritten: frame::Unwritten,
    /// The layout proves the unwritten part was meant to hold data, so the
    /// write's sync never returned and it was never acknowledged (format 3
    /// batches); older layouts only make that likely.
    pub certain: bool,
}

impl std::fmt::Display for Torn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Torn {
            offset,
            bytes,
            unwritten,
            certain,
        } = self;
        if *certain {
            write!(
                f,
                "the journal's last write never completed ({unwritten}): a crash cut it short \
                 before its sync returned, so it was never acknowledged; truncated the journal \
                 to {offset} bytes ({bytes} cut)"
            )
        } else {
            write!(
                f,
                "the journal's last write reads as one a crash cut short ({unwritten}); \
                 truncated the journal to {offset} bytes ({bytes} cut). It was written in an \
                 older journal format, which cannot rule out damage to an acknowledged write \
                 instead"
            )
        }
    }
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

    /// Opens an existing journal, checking every record's frame (records
    /// are decoded when read, [`LogStore::read_from`]). A torn last write
    /// is truncated; a batch header damaged but verified by its copy is
    /// written back; a format 2 journal is upgraded to format 3; each
    /// change synced before this returns. Damage that may hit acknowledged
    /// records is refused: before valid records, or in a last write that
    /// reached the disk whole (see `frame`).
    pub fn open(path: &Path) -> Result<OpenedFile, JournalError> {
        let io = |context| move |source| io_error(path, context, source);
        // A compaction's new file left by a crash: the journal is whole
        // without it (it only ever replaces the journal by a rename).
        let _ = std::fs::remove_file(compaction::tmp_path(path));
        let mut bytes = Vec::new();
        File::open(path)
            .map_err(io("open"))?
            .read_to_end(&mut bytes)
            .map_err(io("read"))?;
        let shown = path.display().to_string();
        let (format, upgrade) = match bytes.get(..MAGIC.len()) {
            Some(magic) if magic == MAGIC => (Format::Batches, false),
            Some(magic) if magic == MAGIC_V2 => (Format::Batches, true),
            Some(magic) if magic == MAGIC_V1 => (Format::Frames, false),
            _ => {
                return Err(JournalError::Invalid {
                    path: shown,
                    what: "not a taskmaster journal (bad magic)".into(),
                });
            }
        };
        if bytes.len() < HEADER_BYTES {
            return Err(JournalError::Invalid {
                path: shown,
                what: "not a taskmaster journal (shorter than its header)".into(),
            });
        }
        let base = u64::from_le_bytes(
            bytes[MAGIC.len()..HEADER_BYTES]
                .try_into()
                .expect("8 bytes"),
        );
        // Offsets in the scan are the file's (and so are its sectors).
        let scan = match format {
            Format::Frames => frame::scan_from(&bytes, HEADER_BYTES),
            Format::Batches => frame::scan_batches_from(&bytes, HEADER_BYTES),
        };
        let torn = match scan.tail {
            Tail::Clean => None,
            Tail::Torn {
                offset,
                bytes,
                unwritten,
                certain,
            } => Some(Torn {
                offset: offset as u64,
                bytes: bytes as u64,
                unwritten,
                certain,
            }),
            Tail::CorruptMiddle { offset } => {
                return Err(JournalError::CorruptMiddle {
                    path: shown,
                    offset: offset as u64,
                });
            }
            Tail::CorruptLast {
                offset,
                end,
                damage,
            } => {
                return Err(JournalError::CorruptLast {
                    path: shown,
                    offset: offset as u64,
                    end: end as u64,
                    damage: damage.to_string(),
                });
            }
        };
        let records = scan.payloads.len() as u64;
        // Readable too: `read_from` reads the records back.
        let file = match format {
            Format::Frames => OpenOptions::new().read(true).append(true).open(path),
            Format::Batches => OpenOptions::new().read(true).write(true).open(path),
        }
        .map_err(io("open for append"))?;
        let len = scan.valid_len as u64;
        // Each change is whole by itself (a header as it was written, a
        // cut, a magic), so a crash between them opens the same way again.
        for repair in &scan.repaired {
            file.write_all_at(&repair.header, repair.offset as u64)
                .map_err(io("write back a damaged batch header"))?;
        }
        if torn.is_some() {
            file.set_len(len).map_err(io("truncate torn tail"))?;
        }
        if upgrade {
            file.write_all_at(MAGIC, 0)
                .map_err(io("upgrade to format 3"))?;
        }
        if torn.is_some() || upgrade || !scan.repaired.is_empty() {
            file.sync_all().map_err(io("sync after recovery"))?;
        }
        // Zeros after the records (a clean batches tail) are room.
        let file_len = if torn.is_some() {
            len
        } else {
            bytes.len() as u64
        };
        let mut log = FileLog {
            room: None,
            batch: Vec::new(),
            format,
            file,
            path: path.to_path_buf(),
            base,
            marks: opening_marks(base, &scan.marks, records, len),
            synced_len: len,
            written_len: len,
            last_seq: base + records,
            synced_seq: base + records,
            compacting: None,
        };
        log.keep_room(file_len);
        Ok(OpenedFile {
            log,
            base,
            torn,
            repaired: scan.repaired.iter().map(|r| r.offset as u64).collect(),
        })
    }

    /// Keeps room ahead of a batches journal of `file_len` bytes (its
    /// records end at `written_len`), by a new thread: the one for a file
    /// this log no longer writes to stops first. Without room, appends
    /// grow the file, as in format 1.
    fn keep_room(&mut self, file_len: u64) {
        self.room = None;
        if self.format != Format::Batches {
            return;
        }
        match Room::start(&self.file, file_len, self.written_len) {
            Ok(room) => self.room = Some(room),
            Err(e) => tracing::warn!(error = %e, "no room kept ahead of the journal"),
        }
    }
}

/// The marks of a journal just opened: its header, the batch boundaries
/// the opening scan marked (as (records before, offset) in the file), and
/// its end. Without the scan's, the first read from a position (recovery
/// reads from the newest snapshot's) scanned the whole file a second time.
fn opening_marks(base: u64, scanned: &[(usize, usize)], records: u64, end: u64) -> Vec<(u64, u64)> {
    let mut marks = vec![(base, HEADER_BYTES as u64)];
    marks.extend(
        scanned
            .iter()
            .map(|&(before, offset)| (base + before as u64, offset as u64))
            .filter(|&(_, offset)| offset < end),
    );
    marks.push((base + records, end));
    marks
}

/// Writes a whole journal file (header and frames, as one batch) under a
/// temporary name, syncs it and renames it over `path`, then opens it for
/// appending.
fn write_atomically(
    path: &Path,
    base: u64,
    frames: &[u8],
    records: u64,
) -> Result<FileLog, JournalError> {
    let io = |context| move |source| io_error(path, context, source);
    let tmp = path.with_extension("tmp");
    let mut contents = file_header(base).to_vec();
    batch_of(frames, HEADER_BYTES as u64, &mut contents).map_err(io("write"))?;
    let mut file = File::create(&tmp).map_err(io("create"))?;
    file.write_all(&contents).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    sync_dir(path).map_err(io("sync directory"))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open"))?;
    let len = contents.len() as u64;
    let mut log = FileLog {
        file,
        format: Format::Batches,
        room: None,
        batch: Vec::new(),
        path: path.to_path_buf(),
        base,
        marks: vec![(base, HEADER_BYTES as u64), (base + records, len)],
        synced_len: len,
        written_len: len,
        last_seq: base + records,
        synced_seq: base + records,
        compacting: None,
    };
    log.keep_room(len);
    Ok(log)
}

/// The file journal in a data dir: [`FILE_NAME`] there.
#[derive(Debug, Clone)]
pub struct FileBackend {
    path: PathBuf,
}

/// The journal's file name in a data dir.
pub const FILE_NAME: &str = "journal.log";

impl FileBackend {
    /// The journal of the data dir `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> FileBackend {
        FileBackend::at(data_dir.join(FILE_NAME))
    }

    /// The journal at `path`.
    pub fn at(path: PathBuf) -> FileBackend {
        FileBackend { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LogBackend for FileBackend {
    type Store = FileLog;

    fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(|| self.path.display(), |name| Path::new(name).display())
            .to_string()
    }

    fn exists(&self) -> Result<bool, JournalError> {
        self.path
            .try_exists()
            .map_err(|e| io_error(&self.path, "look for the journal", e))
    }

    fn open(&self) -> Result<Opened<FileLog>, JournalError> {
        let opened = FileLog::open(&self.path)?;
        // The message says "never acknowledged" only where the journal's
        // format proves it (see `journal::frame`).
        let torn = opened.torn.iter().map(|torn| Mended {
            offset: torn.offset,
            what: torn.to_string(),
        });
        let repaired = opened.repaired.iter().map(|&offset| Mended {
            offset,
            what: "a journal batch header did not verify; the copy of it after the batch \
                   verified the batch's records, so the header was written back from it"
                .into(),
        });
        let mended = torn.chain(repaired).collect();
        Ok(Opened {
            store: opened.log,
            mended,
        })
    }

    fn create(&self, purged: u64, records: &[Record]) -> Result<FileLog, JournalError> {
        FileLog::create(&self.path, purged, records)
    }

    fn stored_bytes(&self) -> u64 {
        disk_bytes(&self.path)
    }
}

impl LogStore for FileLog {
    fn state(&self) -> LogState {
        LogState {
            purged: self.base,
            last: self.last_seq,
        }
    }

    /// Reads the file from the last mark before `from` to the end of what
    /// was written (positioned reads on the journal's own descriptor: the
    /// file it writes, also while a purge copies it), and decodes the
    /// records from `from` on.
    fn read_from(&self, from: u64) -> Result<Vec<Record>, JournalError> {
        let shown = self.path.display().to_string();
        if records_before(&shown, self.state(), from)?.is_none() {
            return Ok(Vec::new());
        }
        let from = from.max(1);
        let &(mark_seq, mark_offset) = self
            .marks
            .iter()
            .rev()
            .find(|&&(seq, _)| seq < from)
            .expect("the first mark is the file's base, below from");
        let mut bytes = vec![0; (self.written_len - mark_offset) as usize];
        self.file
            .read_exact_at(&mut bytes, mark_offset)
            .map_err(|e| io_error(&self.path, "read", e))?;
        let scan = match self.format {
            Format::Frames => frame::scan(&bytes),
            Format::Batches => frame::scan_batches(&bytes),
        };
        let skip = (from - 1 - mark_seq) as usize;
        if scan.tail != Tail::Clean || scan.valid_len != bytes.len() || scan.payloads.len() < skip {
            return Err(JournalError::Invalid {
                path: shown,
                what: format!(
                    "bytes {mark_offset}..{} do not read back as the records written there",
                    self.written_len
                ),
            });
        }
        decode_all(&shown, &scan.payloads[skip..], mark_offset as usize)
    }

    fn append(&mut self, bytes: &[u8], last_seq: u64) -> io::Result<()> {
        let at = self.written_len;
        match self.format {
            Format::Frames => {
                self.written_len += bytes.len() as u64;
                self.file.write_all(bytes)?;
            }
            Format::Batches => {
                self.batch.clear();
                batch_of(bytes, at, &mut self.batch)?;
                if let Some(room) = &self.room {
                    room.claim(at, self.batch.len() as u64);
                }
                self.written_len += self.batch.len() as u64;
                self.file.write_all_at(&self.batch, at)?;
            }
        }
        self.last_seq = last_seq;
        if let Some(compaction) = &mut self.compacting {
            compaction.appended(bytes);
        }
        let &(_, last_offset) = self.marks.last().expect("marks start with the header");
        if self.written_len - last_offset >= MARK_EVERY_BYTES {
            self.marks.push((last_seq, self.written_len));
        }
        Ok(())
    }

    fn records_bytes(&self) -> u64 {
        self.written_len
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced_len = self.written_len;
        self.synced_seq = self.last_seq;
        Ok(())
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        // What a compaction kept of the appends includes the discarded ones.
        if let Some(compaction) = self.compacting.take() {
            compaction.abandon();
        }
        // No zeros written past the cut meanwhile: the room's thread stops.
        self.room = None;
        // Shrinking needs no space, so this works on a full disk.
        self.file.set_len(self.synced_len)?;
        // Format 1 writes at the file's position (a file renamed in by a
        // compaction is not in append mode); batches at offsets.
        self.file.seek(SeekFrom::Start(self.synced_len))?;
        self.written_len = self.synced_len;
        self.last_seq = self.synced_seq;
        self.marks.retain(|&(_, offset)| offset <= self.synced_len);
        self.file.sync_all()
    }

    /// Starts rewriting the file without records up to `upto` (now in a
    /// snapshot), copying from the last mark at or before `upto` on a
    /// thread of its own; [`LogStore::finish_purge`] ends it. Called
    /// between batches, when everything written is synced.
    fn purge(&mut self, upto: u64) -> io::Result<()> {
        if self.compacting.is_some() {
            self.finish_purge()?;
        }
        if upto <= self.base {
            return Ok(());
        }
        if upto > self.last_seq {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a purge up to record {upto}, past the journal's last ({})",
                    self.last_seq
                ),
            ));
        }
        if self.written_len != self.synced_len {
            return Err(io::Error::other(
                "compaction asked for with unsynced bytes; the journal keeps growing",
            ));
        }
        let &mark = self
            .marks
            .iter()
            .rev()
            .find(|&&(seq, _)| seq <= upto)
            .expect("the first mark is the file's base, below upto");
        self.compacting = Some(Compaction::start(
            &self.path,
            self.format,
            mark,
            self.synced_len,
            upto,
        )?);
        Ok(())
    }

    fn purging(&self) -> bool {
        self.compacting.is_some()
    }

    fn poll_purge(&mut self) -> io::Result<()> {
        match &self.compacting {
            Some(compaction) if compaction.ready() => self.finish_purge(),
            _ => Ok(()),
        }
    }

    /// Ends a compaction in progress, waiting for its copy: adds what was
    /// appended meanwhile, then renames the new file over the journal.
    /// Only an error after the rename is returned (the journal then cannot
    /// be trusted to be the file it writes); before it, the compaction is
    /// given up, logged, and the old file goes on.
    fn finish_purge(&mut self) -> io::Result<()> {
        let Some(compaction) = self.compacting.take() else {
            return Ok(());
        };
        let tmp = compaction::tmp_path(&self.path);
        let copied = match compaction.complete() {
            Ok(copied) => copied,
            Err(e) => {
                tracing::warn!(error = %e, "journal compaction failed; the journal keeps growing");
                return Ok(());
            }
        };
        fail::fail_point!("journal-compaction-before-rename", |_| std::process::abort(
        ));
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(error = %e, "journal compaction failed; the journal keeps growing");
            return Ok(());
        }
        // The path names the new file now: the journal goes on in it.
        // The old file, unlinked by the rename, is freed in the background:
        // its last close would stall the writer (see writeback::release).
        writeback::release(std::mem::replace(&mut self.file, copied.file));
        self.format = Format::Batches;
        self.base = copied.upto;
        self.synced_len = copied.len;
        self.written_len = copied.len;
        self.marks = vec![
            (copied.upto, HEADER_BYTES as u64),
            (self.last_seq, copied.len),
        ];
        self.keep_room(copied.len);
        tracing::info!(upto = copied.upto, "journal compacted");
        fail::fail_point!("journal-compaction-after-rename", |_| std::process::abort());
        sync_dir(&self.path)
    }
}

#[cfg(test)]
impl FileLog {
    /// Stops as a crash would, as far as one process can tell: a purge in
    /// progress leaves its copy beside the journal, never renamed in;
    /// what was not synced may stay in the file (the next open judges it).
    pub(super) fn crash(mut self) {
        if let Some(compaction) = self.compacting.take() {
            compaction.crash();
        }
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        if let Some(compaction) = self.compacting.take() {
            compaction.abandon();
        }
    }
}

/// The bytes the journal at `path` takes on disk now: the file, plus the
/// new file of a compaction in progress (for a moment both exist whole).
pub fn disk_bytes(path: &Path) -> u64 {
    let len = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    len(path) + len(&compaction::tmp_path(path))
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

    impl OpenedFile {
        /// Every record the file holds.
        fn records(&self) -> Vec<Record> {
            self.log.read_from(self.base + 1).unwrap()
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
        for batch in 0..30 {
            append_synced(&mut log, batch * 100 + 1, batch * 100 + 100);
        }
        assert!(log.marks.len() > 3, "{:?}", log.marks);
        // Between marks, then again from the new file's own marks.
        for upto in [1234, 2001, 2999] {
            log.purge(upto).unwrap();
            log.finish_purge().unwrap();
            let opened = FileLog::open(&path).unwrap();
            assert_eq!(opened.base, upto);
            assert_eq!(
                tokens(&opened.records()),
                (upto + 1..=3000).collect::<Vec<_>>()
            );
        }
        // Appends after a compaction continue the sequence.
        let mut frames = Vec::new();
        frame::encode_message(&numbered(3001), &mut frames);
        log.append(&frames, 3001).unwrap();
        log.sync().unwrap();
        log.purge(3000).unwrap();
        log.finish_purge().unwrap();
        assert_eq!(tokens(&FileLog::open(&path).unwrap().records()), vec![3001]);
    }

    #[test]
    fn a_reopened_journal_is_marked_so_a_read_from_a_position_scans_only_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let mut log = FileLog::create(&path, 0, &[]).unwrap();
        // 30 batches of 100 records of ~230 bytes: several marks.
        for batch in 0..30 {
            append_synced(&mut log, batch * 100 + 1, batch * 100 + 100);
        }
        let written = log.marks.clone();
        drop(log);
        let opened = FileLog::open(&path).unwrap();
        // The batch boundaries the writer marked, and the end.
        let marks = &opened.log.marks;
        assert!(
            written.iter().all(|mark| marks.contains(mark)),
            "{marks:?} {written:?}"
        );
        assert_eq!(marks.last(), Some(&(3000, opened.log.written_len)));
        assert!(marks.len() > 3, "{marks:?}");
        for from in [1, 99, 100, 101, 1234, 2001, 2999, 3000] {
            assert_eq!(
                tokens(&opened.log.read_from(from).unwrap()),
                (from..=3000).collect::<Vec<_>>(),
                "from {from}"
            );
        }
        assert!(opened.log.read_from(3001).unwrap().is_empty());
    }

    /// A journal file in a new temporary dir holding records `1..=records`.
    fn journal_of(records: u64) -> (tempfile::TempDir, PathBuf, FileLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let mut log = FileLog::create(&path, 0, &[]).unwrap();
        append_synced(&mut log, 1, records);
        (dir, path, log)
    }

    /// Appends `from..=to` as one synced batch.
    fn append_synced(log: &mut FileLog, from: u64, to: u64) {
        let mut frames = Vec::new();
        for seq in from..=to {
            frame::encode_message(&numbered(seq), &mut frames);
        }
        log.append(&frames, to).unwrap();
        log.sync().unwrap();
    }

    #[test]
    fn a_format_1_journal_is_read_appended_to_and_rewritten_as_format_3_by_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&0u64.to_le_bytes());
        for seq in 1..=500 {
            frame::encode_message(&numbered(seq), &mut v1);
        }
        std::fs::write(&path, &v1).unwrap();
        let mut opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.log.format, Format::Frames);
        assert_eq!(tokens(&opened.records()), (1..=500).collect::<Vec<_>>());
        append_synced(&mut opened.log, 501, 600);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], MAGIC_V1, "still format 1, grown in place");
        assert_eq!(
            tokens(&FileLog::open(&path).unwrap().records()),
            (1..=600).collect::<Vec<_>>()
        );
        let log = &mut opened.log;
        log.purge(550).unwrap();
        append_synced(log, 601, 610); // during the copy: format 1 appends
        log.finish_purge().unwrap();
        assert_eq!(log.format, Format::Batches);
        append_synced(log, 611, 620);
        assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC);
        let reopened = FileLog::open(&path).unwrap();
        assert_eq!(reopened.base, 550);
        assert_eq!(tokens(&reopened.records()), (551..=620).collect::<Vec<_>>());
    }

    #[test]
    fn records_go_into_room_written_ahead_and_read_back_before_it() {
        let (_dir, path, mut log) = journal_of(10);
        let len = || std::fs::metadata(&path).unwrap().len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while len() < log.written_len + 1024 * 1024 {
            assert!(std::time::Instant::now() < deadline, "no room written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        append_synced(&mut log, 11, 3000);
        assert!(len() > log.written_len, "the records went into the room");
        drop(log);
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.torn, None, "zeros after the records are room");
        assert_eq!(tokens(&opened.records()), (1..=3000).collect::<Vec<_>>());
        // A crash tore the next write: its bytes, then zeros. Cut off.
        let end = opened.log.written_len;
        drop(opened);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let mut torn = Vec::new();
        let mut frames = Vec::new();
        for seq in 3001..=3030 {
            frame::encode_message(&numbered(seq), &mut frames);
        }
        batch_of(&frames, end, &mut torn).unwrap();
        file.write_all_at(&torn[..3000], end).unwrap();
        let reopened = FileLog::open(&path).unwrap();
        let cut = reopened.torn.clone().expect("a torn tail");
        assert!(cut.certain, "{cut}");
        assert_eq!(cut.offset, end);
        assert!(
            matches!(cut.unwritten, frame::Unwritten::Zeros { from, .. } if from as u64 >= end + 2488),
            "{cut}"
        );
        let message = cut.to_string();
        assert!(message.contains("never acknowledged") && message.contains("truncated"));
        assert_eq!(reopened.records().len(), 3000);
        assert_eq!(reopened.log.written_len, end, "cut at the last whole batch");
        // Room is written again after the cut (its thread has started):
        // zeros, none of the torn write.
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[end as usize..].iter().all(|&b| b == 0));
    }

    /// The journal at `path` with `f` applied to its bytes.
    fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = std::fs::read(path).unwrap();
        f(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_last_batch_damaged_after_its_sync_is_refused_not_cut() {
        let (_dir, path, mut log) = journal_of(10);
        let last = log.written_len;
        append_synced(&mut log, 11, 12);
        let end = log.written_len;
        drop(log);
        // A bit flipped in record 12's payload, near the batch's end.
        edit(&path, |bytes| bytes[end as usize - 40] ^= 0x08);
        let err = FileLog::open(&path).err().expect("refused");
        let JournalError::CorruptLast {
            offset, end: to, ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!((*offset, *to), (last, end));
        let message = err.to_string();
        for needed in [
            "corrupt".to_string(),
            format!("byte {last}"),
            format!("truncate -s {last} {}", path.display()),
            "may have been acknowledged".to_string(),
        ] {
            assert!(message.contains(&needed), "{needed:?} in: {message}");
        }
        // Nothing was cut; the operator's cut drops that batch alone.
        assert!(std::fs::metadata(&path).unwrap().len() >= end);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(last)
            .unwrap();
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.torn, None);
        assert_eq!(tokens(&opened.records()), (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_batch_header_is_written_back_from_its_copy() {
        let (_dir, path, mut log) = journal_of(10);
        let last = log.written_len as usize;
        append_synced(&mut log, 11, 12);
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        edit(&path, |bytes| bytes[last + 6] ^= 0x01); // its length
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.repaired, vec![last as u64]);
        assert_eq!(tokens(&opened.records()), (1..=12).collect::<Vec<_>>());
        drop(opened);
        assert_eq!(
            std::fs::read(&path).unwrap()[..last + 40],
            whole[..last + 40],
            "written back as it was"
        );
        assert!(FileLog::open(&path).unwrap().repaired.is_empty());
    }

    #[test]
    fn a_format_2_journal_is_upgraded_in_place_and_its_batches_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let mut v2 = MAGIC_V2.to_vec();
        v2.extend_from_slice(&0u64.to_le_bytes());
        for batch in 0..5 {
            let mut frames = Vec::new();
            for seq in batch * 10 + 1..=batch * 10 + 10 {
                frame::encode_message(&numbered(seq), &mut frames);
            }
            frame::encode_batch_v2(&frames, &mut v2);
        }
        let end = v2.len();
        v2.extend_from_slice(&[0; 4096]); // its room
        // A torn last batch (its last sector never written): cut, but not
        // claimed never acknowledged.
        let mut torn = v2.clone();
        torn[(end - 1) / 512 * 512..end].fill(0);
        std::fs::write(&path, &torn).unwrap();
        let mut opened = FileLog::open(&path).unwrap();
        let cut = opened.torn.clone().expect("torn");
        assert!(!cut.certain);
        assert!(!cut.to_string().contains("never acknowledged"), "{cut}");
        assert_eq!(tokens(&opened.records()), (1..=40).collect::<Vec<_>>());
        assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC, "upgraded");
        append_synced(&mut opened.log, 41, 45);
        drop(opened);
        let reopened = FileLog::open(&path).unwrap();
        assert_eq!(reopened.torn, None);
        assert_eq!(tokens(&reopened.records()), (1..=45).collect::<Vec<_>>());
        // Its room thread stops first: it writes zeros into the file.
        drop(reopened);
        // A flipped bit in a whole format 2 last batch: refused as well.
        std::fs::write(&path, &v2).unwrap();
        edit(&path, |bytes| bytes[end - 100] ^= 0x02);
        let err = FileLog::open(&path).err().expect("refused");
        assert!(matches!(err, JournalError::CorruptLast { .. }), "{err}");
        assert_eq!(&std::fs::read(&path).unwrap()[..8], MAGIC_V2, "untouched");
    }

    #[test]
    fn disk_bytes_count_a_compaction_copy_beside_the_journal() {
        let (_dir, path, log) = journal_of(100);
        drop(log); // and the room written ahead with it
        let journal_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(disk_bytes(&path), journal_len);
        std::fs::write(compaction::tmp_path(&path), [0u8; 1000]).unwrap();
        assert_eq!(disk_bytes(&path), journal_len + 1000);
        assert_eq!(disk_bytes(&path.with_file_name("absent.log")), 0);
    }

    #[test]
    fn records_appended_while_the_copy_runs_are_in_the_compacted_file() {
        let (_dir, path, mut log) = journal_of(2000);
        log.purge(1500).unwrap();
        assert!(log.purging());
        // The journal goes on while the copy runs; the old file has it all.
        for batch in 0..20 {
            let first = 2001 + batch * 10;
            append_synced(&mut log, first, first + 9);
            log.poll_purge().unwrap();
        }
        log.finish_purge().unwrap();
        assert!(!log.purging());
        assert!(!compaction::tmp_path(&path).exists());
        // And after the swap, appends go to the new file.
        append_synced(&mut log, 2201, 2210);
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.base, 1500);
        assert_eq!(tokens(&opened.records()), (1501..=2210).collect::<Vec<_>>());
    }

    #[test]
    fn a_compaction_given_up_leaves_the_old_file_whole() {
        let (_dir, path, mut log) = journal_of(1000);
        // Dropped mid-compaction (the writer stopping), as a crash would.
        log.purge(900).unwrap();
        append_synced(&mut log, 1001, 1010);
        drop(log);
        assert!(!compaction::tmp_path(&path).exists());
        // A crash instead leaves the new file behind; opening removes it.
        std::fs::write(compaction::tmp_path(&path), b"half a copy").unwrap();
        let mut opened = FileLog::open(&path).unwrap();
        assert!(!compaction::tmp_path(&path).exists());
        assert_eq!(opened.base, 0);
        assert_eq!(tokens(&opened.records()), (1..=1010).collect::<Vec<_>>());
        // A failed write during a compaction gives it up too; what was
        // synced stays, the unsynced tail goes.
        let log = &mut opened.log;
        log.purge(1005).unwrap();
        let mut frames = Vec::new();
        frame::encode_message(&numbered(1011), &mut frames);
        log.append(&frames, 1011).unwrap();
        log.discard_unsynced().unwrap();
        assert!(!log.purging());
        append_synced(log, 1011, 1012);
        let reopened = FileLog::open(&path).unwrap();
        assert_eq!(tokens(&reopened.records()), (1..=1012).collect::<Vec<_>>());
    }

    #[test]
    fn an_idle_journal_finishes_its_compaction() {
        let (_dir, path, log) = journal_of(1000);
        let journal = crate::journal::Journal::start(log);
        journal.purge(900);
        // No more appends: the writer polls the copy by itself. (The file
        // is only looked at: opening it is recovery's, and would remove
        // the copy in progress. A read that opened the old file just
        // before the swap may see it being freed, shorter than a header.)
        let base = || {
            let bytes = std::fs::read(&path).unwrap();
            let base = bytes.get(MAGIC.len()..HEADER_BYTES)?;
            Some(u64::from_le_bytes(base.try_into().unwrap()))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while base() != Some(900) {
            assert!(std::time::Instant::now() < deadline, "never compacted");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!compaction::tmp_path(&path).exists());
        journal.close();
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(tokens(&opened.records()), (901..=1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_writer_takes_compactions_one_at_a_time() {
        let (_dir, path, log) = journal_of(1000);
        let journal = crate::journal::Journal::start(log);
        journal.purge(500);
        let seq = journal.append(&[numbered(1001)]);
        journal.wait_durable(seq).await.unwrap();
        journal.purge(1000);
        let seq = journal.append(&[numbered(1002)]);
        journal.wait_durable(seq).await.unwrap();
        journal.close();
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.base, 1000);
        assert_eq!(tokens(&opened.records()), vec![1001, 1002]);
    }

    #[test]
    fn a_second_compaction_finishes_the_first() {
        let (_dir, path, mut log) = journal_of(100);
        log.purge(50).unwrap();
        append_synced(&mut log, 101, 110);
        log.purge(105).unwrap();
        log.finish_purge().unwrap();
        let opened = FileLog::open(&path).unwrap();
        assert_eq!(opened.base, 105);
        assert_eq!(tokens(&opened.records()), (106..=110).collect::<Vec<_>>());
    }
}
