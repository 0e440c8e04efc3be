//! An in-memory journal for tests, with fault injection: a "disk"
//! ([`MemDisk`]) that keeps only synced bytes across a simulated crash (a
//! reopen through [`MemBackend`]), and can fail on demand. Its records are
//! format 1 frames, read back through the same scan as a format 1 file
//! journal. Like the file journal it purges in two steps (begun, then
//! finished when polled), so a crash can fall between them.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use taskmaster_proto::journal::Record;

use super::frame::{self, Tail};
use super::{
    JournalError, LogBackend, LogState, LogStore, Mended, Opened, decode_all, records_before,
};

/// What names the memory journal in messages.
const NAME: &str = "memory";

#[derive(Debug, Default)]
pub struct MemDisk {
    /// A journal was created (a new data dir has none).
    pub exists: bool,
    /// Bytes that a sync made durable.
    pub synced: Vec<u8>,
    /// Bytes written since the last sync (lost in a crash).
    pub unsynced: Vec<u8>,
    /// Fail every append/sync from now on with this error kind.
    pub fail_with: Option<io::ErrorKind>,
    /// Purges fail before they take effect (as a file journal's copy that
    /// could not be written): the records stay, only space is lost.
    pub fail_purges: bool,
    pub syncs: u64,
    /// How long a sync takes (none by default; a disk's takes a while, and
    /// appends made meanwhile share the next one).
    pub sync_takes: std::time::Duration,
    /// Records dropped from the front by purges.
    pub base: u64,
}

/// A memory journal: the disk it lives on, shared with the test that
/// looks at it or damages it.
#[derive(Debug, Clone, Default)]
pub struct MemBackend {
    pub disk: Arc<Mutex<MemDisk>>,
}

/// The store of a [`MemBackend`], as opened or created.
#[derive(Debug)]
pub struct MemLog {
    disk: Arc<Mutex<MemDisk>>,
    /// The last record appended, and the last one synced.
    last: u64,
    synced_last: u64,
    /// A purge begun and not finished: lost in a crash.
    purging: Option<u64>,
}

impl MemLog {
    /// Stops as a crash would: a purge begun is lost with the process, and
    /// so is what was never synced (at the next open).
    pub fn crash(self) {}
}

impl LogBackend for MemBackend {
    type Store = MemLog;

    fn name(&self) -> String {
        NAME.into()
    }

    fn exists(&self) -> Result<bool, JournalError> {
        Ok(self.disk.lock().exists)
    }

    /// Simulates a restart: unsynced bytes vanish, the synced ones are read
    /// back through the same scan as a format 1 file journal.
    fn open(&self) -> Result<Opened<MemLog>, JournalError> {
        let mut disk = self.disk.lock();
        if !disk.exists {
            return Err(JournalError::Invalid {
                path: NAME.into(),
                what: "no journal was created".into(),
            });
        }
        disk.unsynced.clear();
        let scan = frame::scan(&disk.synced);
        match scan.tail {
            Tail::Clean | Tail::Torn { .. } => {}
            Tail::CorruptMiddle { offset } => {
                return Err(JournalError::CorruptMiddle {
                    path: NAME.into(),
                    offset: offset as u64,
                });
            }
            Tail::CorruptLast {
                offset,
                end,
                damage,
            } => {
                return Err(JournalError::CorruptLast {
                    path: NAME.into(),
                    offset: offset as u64,
                    end: end as u64,
                    damage: damage.to_string(),
                });
            }
        }
        let records = scan.payloads.len() as u64;
        let valid_len = scan.valid_len;
        let mut mended = Vec::new();
        if valid_len < disk.synced.len() {
            mended.push(Mended {
                offset: valid_len as u64,
                what: format!(
                    "the journal's last write was cut short; cut it at byte {valid_len} ({} bytes)",
                    disk.synced.len() - valid_len
                ),
            });
            disk.synced.truncate(valid_len);
        }
        let last = disk.base + records;
        drop(disk);
        Ok(Opened {
            store: MemLog {
                disk: Arc::clone(&self.disk),
                last,
                synced_last: last,
                purging: None,
            },
            mended,
        })
    }

    fn create(&self, purged: u64, records: &[Record]) -> Result<MemLog, JournalError> {
        let mut frames = Vec::new();
        for rec in records {
            frame::encode_message(rec, &mut frames);
        }
        let mut disk = self.disk.lock();
        disk.exists = true;
        disk.synced = frames;
        disk.unsynced.clear();
        disk.base = purged;
        let last = purged + records.len() as u64;
        Ok(MemLog {
            disk: Arc::clone(&self.disk),
            last,
            synced_last: last,
            purging: None,
        })
    }

    fn stored_bytes(&self) -> u64 {
        let disk = self.disk.lock();
        (disk.synced.len() + disk.unsynced.len()) as u64
    }
}

impl LogStore for MemLog {
    fn state(&self) -> LogState {
        LogState {
            purged: self.disk.lock().base,
            last: self.last,
        }
    }

    fn read_from(&self, from: u64) -> Result<Vec<Record>, JournalError> {
        let Some(skip) = records_before(NAME, self.state(), from)? else {
            return Ok(Vec::new());
        };
        let disk = self.disk.lock();
        let bytes = [&disk.synced[..], &disk.unsynced[..]].concat();
        let scan = frame::scan(&bytes);
        let skip = skip as usize;
        if scan.tail != Tail::Clean || scan.payloads.len() < skip {
            return Err(JournalError::Invalid {
                path: NAME.into(),
                what: "the records do not read back as written".into(),
            });
        }
        decode_all(NAME, &scan.payloads[skip..], 0)
    }

    fn append(&mut self, bytes: &[u8], last_seq: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        if let Some(kind) = disk.fail_with {
            return Err(io::Error::new(kind, "injected append failure"));
        }
        disk.unsynced.extend_from_slice(bytes);
        self.last = last_seq;
        Ok(())
    }

    fn records_bytes(&self) -> u64 {
        let disk = self.disk.lock();
        (disk.synced.len() + disk.unsynced.len()) as u64
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.disk.lock();
        if let Some(kind) = disk.fail_with {
            return Err(io::Error::new(kind, "injected sync failure"));
        }
        if !disk.sync_takes.is_zero() {
            std::thread::sleep(disk.sync_takes);
        }
        let unsynced = std::mem::take(&mut disk.unsynced);
        disk.synced.extend_from_slice(&unsynced);
        disk.syncs += 1;
        self.synced_last = self.last;
        Ok(())
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        self.disk.lock().unsynced.clear();
        self.last = self.synced_last;
        Ok(())
    }

    /// Begins the purge; `poll_purge` or `finish_purge` makes it take
    /// effect, at once (a crash before that keeps every record).
    fn purge(&mut self, upto: u64) -> io::Result<()> {
        self.finish_purge()?;
        if upto <= self.disk.lock().base {
            return Ok(());
        }
        if upto > self.last {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a purge up to record {upto}, past the journal's last ({})",
                    self.last
                ),
            ));
        }
        self.purging = Some(upto);
        Ok(())
    }

    fn poll_purge(&mut self) -> io::Result<()> {
        self.finish_purge()
    }

    fn finish_purge(&mut self) -> io::Result<()> {
        let Some(upto) = self.purging.take() else {
            return Ok(());
        };
        let mut disk = self.disk.lock();
        if disk.fail_purges {
            tracing::warn!("injected purge failure; the journal keeps growing");
            return Ok(());
        }
        // Everything up to `upto` was synced when the purge began.
        let skip = (upto - disk.base) as usize;
        let scan = frame::scan(&disk.synced);
        let keep_from = scan
            .payloads
            .get(skip)
            .map_or(scan.valid_len, |&(offset, _)| offset);
        disk.synced.drain(..keep_from);
        disk.base = upto;
        Ok(())
    }

    fn purging(&self) -> bool {
        self.purging.is_some()
    }
}
