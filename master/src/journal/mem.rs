//! An in-memory [`LogStore`] for tests, with fault injection: a "disk" that
//! keeps only synced bytes across a simulated crash, and can fail on demand.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use taskmaster_proto::journal::Record;

use super::frame::{self, Tail};
use super::{JournalError, LogStore, decode_all};

#[derive(Debug, Default)]
pub struct MemDisk {
    /// Bytes that a sync made durable.
    pub synced: Vec<u8>,
    /// Bytes written since the last sync (lost in a crash).
    pub unsynced: Vec<u8>,
    /// Fail every append/sync from now on with this error kind.
    pub fail_with: Option<io::ErrorKind>,
    pub syncs: u64,
    /// Records dropped from the front by compaction.
    pub base: u64,
}

/// A handle on a shared [`MemDisk`]; clone the disk to look at it.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    pub disk: Arc<Mutex<MemDisk>>,
}

impl MemLog {
    /// Simulates a crash and a restart: unsynced bytes vanish, the synced
    /// ones are read back through the same scan as a format 1 file journal.
    pub fn crash_and_reopen(&self) -> Result<Vec<Record>, JournalError> {
        let mut disk = self.disk.lock();
        disk.unsynced.clear();
        let scan = frame::scan(&disk.synced);
        match scan.tail {
            Tail::Clean | Tail::Torn { .. } => {}
            Tail::CorruptMiddle { offset } => {
                return Err(JournalError::CorruptMiddle {
                    path: "memory".into(),
                    offset: offset as u64,
                });
            }
            Tail::CorruptLast {
                offset,
                end,
                damage,
            } => {
                return Err(JournalError::CorruptLast {
                    path: "memory".into(),
                    offset: offset as u64,
                    end: end as u64,
                    damage: damage.to_string(),
                });
            }
        }
        let records = decode_all("memory", &scan.payloads, 0)?;
        let valid_len = scan.valid_len;
        disk.synced.truncate(valid_len);
        Ok(records)
    }
}

impl LogStore for MemLog {
    fn append(&mut self, bytes: &[u8], _last_seq: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        if let Some(kind) = disk.fail_with {
            return Err(io::Error::new(kind, "injected append failure"));
        }
        disk.unsynced.extend_from_slice(bytes);
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
        let unsynced = std::mem::take(&mut disk.unsynced);
        disk.synced.extend_from_slice(&unsynced);
        disk.syncs += 1;
        Ok(())
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        self.disk.lock().unsynced.clear();
        Ok(())
    }

    fn compact(&mut self, upto: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        if upto <= disk.base {
            return Ok(());
        }
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
}
