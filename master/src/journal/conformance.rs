//! One suite every [`LogStore`] passes: records come back in order after a
//! reopen, concurrent appends share syncs, a torn tail is dropped, and
//! damage before valid records, or to a last write that reached the disk
//! whole, is refused.

use std::sync::Arc;

use taskmaster_proto::journal::Record;

use super::file::FileLog;
use super::mem::MemLog;
use super::*;
use crate::core::Core;

/// A backend under test: a fresh store holding `init`, a way to reopen it
/// after a crash, and a way to damage its durable bytes.
trait Backend {
    type Store: LogStore;
    fn fresh(init: &Record) -> (Self, Self::Store)
    where
        Self: Sized;
    fn reopen(&self) -> Result<Vec<Record>, JournalError>;
    /// Lets `f` edit the durable bytes (frames only, after any header).
    fn damage(&self, f: &mut dyn FnMut(&mut Vec<u8>));
    /// Where each record's payload starts in the bytes `damage` hands out.
    fn payloads(bytes: &[u8]) -> Vec<usize>
    where
        Self: Sized;
    /// Cuts the durable bytes at an offset a refusal named, as an operator
    /// told to would.
    fn cut(&self, offset: u64);
}

struct FileBackend {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Backend for FileBackend {
    type Store = FileLog;
    fn fresh(init: &Record) -> (Self, FileLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let log = FileLog::create(&path, 0, std::slice::from_ref(init)).unwrap();
        (FileBackend { _dir: dir, path }, log)
    }
    fn reopen(&self) -> Result<Vec<Record>, JournalError> {
        file::FileLog::open(&self.path).map(|o| o.records)
    }
    /// Damages the records: the bytes after the header, up to the room
    /// written ahead of them (which is dropped).
    fn damage(&self, f: &mut dyn FnMut(&mut Vec<u8>)) {
        let bytes = std::fs::read(&self.path).unwrap();
        let (magic, body) = bytes.split_at(16);
        let mut records = body[..frame::scan_batches(body).valid_len].to_vec();
        f(&mut records);
        std::fs::write(&self.path, [magic, &records].concat()).unwrap();
    }
    fn payloads(bytes: &[u8]) -> Vec<usize> {
        let scan = frame::scan_batches(bytes);
        scan.payloads
            .iter()
            .map(|&(at, _)| at + frame::HEADER_BYTES)
            .collect()
    }
    fn cut(&self, offset: u64) {
        let file = std::fs::OpenOptions::new().write(true).open(&self.path);
        file.unwrap().set_len(offset).unwrap();
    }
}

struct MemBackend(MemLog);

impl Backend for MemBackend {
    type Store = MemLog;
    fn fresh(init: &Record) -> (Self, MemLog) {
        let mut log = MemLog::default();
        let mut bytes = Vec::new();
        frame::encode(&init.encode_to_vec(), &mut bytes);
        log.append(&bytes, 1).unwrap();
        log.sync().unwrap();
        (MemBackend(log.clone()), log)
    }
    fn reopen(&self) -> Result<Vec<Record>, JournalError> {
        self.0.crash_and_reopen()
    }
    fn damage(&self, f: &mut dyn FnMut(&mut Vec<u8>)) {
        f(&mut self.0.disk.lock().synced);
    }
    fn payloads(bytes: &[u8]) -> Vec<usize> {
        let scan = frame::scan(bytes);
        scan.payloads
            .iter()
            .map(|&(at, _)| at + frame::HEADER_BYTES)
            .collect()
    }
    fn cut(&self, offset: u64) {
        self.0.disk.lock().synced.truncate(offset as usize);
    }
}

fn init() -> Record {
    Core::init_record("token-1", 7)
}

fn numbered(i: u64) -> Record {
    Core::init_record(&format!("record-{i}"), i)
}

async fn appended_records_survive_reopen<B: Backend>() {
    let (backend, store) = B::fresh(&init());
    let journal = Journal::start(store, 1);
    for i in 0..10 {
        let seq = journal.append(&[numbered(i)]);
        assert_eq!(seq, i + 2);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    let records = backend.reopen().unwrap();
    assert_eq!(records.len(), 11);
    assert_eq!(records[0], init());
    assert_eq!(records[10], numbered(9));
}

async fn concurrent_appends_share_syncs<B: Backend>() {
    let (backend, store) = B::fresh(&init());
    let journal = Arc::new(Journal::start(store, 1));
    let tasks = append_concurrently(&journal, 0..200);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(
        journal.syncs() < 200,
        "{} syncs for 200 appends",
        journal.syncs()
    );
    journal.close();
    assert_eq!(backend.reopen().unwrap().len(), 201);
}

/// One task per record of `numbers`: each appends its record and waits
/// until it is durable.
fn append_concurrently(
    journal: &Arc<Journal>,
    numbers: std::ops::Range<u64>,
) -> Vec<tokio::task::JoinHandle<Result<(), JournalError>>> {
    numbers
        .map(|i| {
            let journal = Arc::clone(journal);
            tokio::spawn(async move {
                let seq = journal.append(&[numbered(i)]);
                journal.wait_durable(seq).await
            })
        })
        .collect()
}

async fn torn_tail_is_dropped_and_damage_in_the_middle_refused<B: Backend>() {
    let (backend, store) = B::fresh(&init());
    let journal = Journal::start(store, 1);
    // Two writes: a store may cut a torn write whole (the file journal's
    // batches), so the torn one holds one record.
    for i in 1..=2 {
        let seq = journal.append(&[numbered(i)]);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    backend.damage(&mut |bytes| bytes.truncate(bytes.len() - 3));
    assert_eq!(backend.reopen().unwrap(), vec![init(), numbered(1)]);
    // Inside the Init record, with the other record after it.
    backend.damage(&mut |bytes| {
        let first = B::payloads(bytes)[0];
        bytes[first + 2] ^= 0x55;
    });
    let err = backend.reopen().unwrap_err();
    assert!(matches!(err, JournalError::CorruptMiddle { .. }), "{err}");
}

/// The last write was synced (acknowledged), then a bit of it flipped: a
/// crash cannot have done that, so it is refused, not cut as torn; the
/// operator's cut at the offset named drops that write alone.
async fn damage_to_the_last_write_is_refused_not_cut<B: Backend>() {
    let (backend, store) = B::fresh(&init());
    let journal = Journal::start(store, 1);
    for i in 1..=2 {
        let seq = journal.append(&[numbered(i)]);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    backend.damage(&mut |bytes| {
        let last = *B::payloads(bytes).last().unwrap();
        bytes[last + 3] ^= 0x04;
    });
    let err = backend.reopen().unwrap_err();
    let &JournalError::CorruptLast { offset, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        err.to_string().contains(&format!("truncate -s {offset}")),
        "{err}"
    );
    assert!(backend.reopen().is_err(), "still refused: nothing was cut");
    backend.cut(offset);
    assert_eq!(backend.reopen().unwrap(), vec![init(), numbered(1)]);
}

async fn compaction_keeps_only_records_after_the_snapshot<B: Backend>() {
    let (backend, store) = B::fresh(&init());
    let journal = Journal::start(store, 1);
    let seq = journal.append(&[numbered(1), numbered(2), numbered(3)]);
    journal.wait_durable(seq).await.unwrap();
    journal.compact(3);
    let seq = journal.append(&[numbered(4)]);
    journal.wait_durable(seq).await.unwrap();
    journal.close();
    assert_eq!(backend.reopen().unwrap(), vec![numbered(3), numbered(4)]);
}

macro_rules! conformance {
    ($backend:ty, $module:ident) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn appended_records_survive_reopen() {
                super::appended_records_survive_reopen::<$backend>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_share_syncs() {
                super::concurrent_appends_share_syncs::<$backend>().await;
            }
            #[tokio::test]
            async fn compaction_keeps_only_records_after_the_snapshot() {
                super::compaction_keeps_only_records_after_the_snapshot::<$backend>().await;
            }
            #[tokio::test]
            async fn torn_tail_is_dropped_and_damage_in_the_middle_refused() {
                super::torn_tail_is_dropped_and_damage_in_the_middle_refused::<$backend>().await;
            }
            #[tokio::test]
            async fn damage_to_the_last_write_is_refused_not_cut() {
                super::damage_to_the_last_write_is_refused_not_cut::<$backend>().await;
            }
        }
    };
}

conformance!(FileBackend, file_log);
conformance!(MemBackend, mem_log);

#[tokio::test]
async fn a_full_disk_acknowledges_nothing_and_is_reported_as_such() {
    let (backend, store) = MemBackend::fresh(&init());
    let journal = Journal::start(store, 1);
    backend.0.disk.lock().fail_with = Some(std::io::ErrorKind::StorageFull);
    let seq = journal.append(&[numbered(1)]);
    let err = journal.wait_durable(seq).await.unwrap_err();
    assert!(matches!(err, JournalError::DiskFull(_)), "{err}");
    assert!(matches!(journal.failed().await, JournalError::DiskFull(_)));
    assert!(
        backend.0.disk.lock().unsynced.is_empty(),
        "the unsynced tail was cut"
    );
    assert_eq!(backend.reopen().unwrap(), vec![init()]);
}

#[tokio::test]
async fn an_io_error_is_fatal() {
    let (backend, store) = MemBackend::fresh(&init());
    let journal = Journal::start(store, 1);
    backend.0.disk.lock().fail_with = Some(std::io::ErrorKind::Other);
    let seq = journal.append(&[numbered(1)]);
    let err = journal.wait_durable(seq).await.unwrap_err();
    assert!(matches!(err, JournalError::Failed(_)), "{err}");
    assert!(journal.check().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiter_learns_of_a_failure_and_none_hangs() {
    let (backend, store) = MemBackend::fresh(&init());
    let journal = Arc::new(Journal::start(store, 1));
    let seq = journal.append(&[numbered(0)]);
    journal.wait_durable(seq).await.unwrap();
    backend.0.disk.lock().fail_with = Some(std::io::ErrorKind::Other);
    let waiters = append_concurrently(&journal, 1..51);
    for waiter in waiters {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("a waiter hung after the failure")
            .unwrap();
        assert!(matches!(answer, Err(JournalError::Failed(_))), "{answer:?}");
    }
    // What was durable before the failure still answers OK.
    journal.wait_durable(seq).await.unwrap();
}

#[tokio::test]
async fn waiting_after_close_is_an_error_not_a_hang() {
    let (_backend, store) = MemBackend::fresh(&init());
    let journal = Journal::start(store, 1);
    journal.close();
    let seq = journal.append(&[numbered(1)]);
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        journal.wait_durable(seq),
    )
    .await
    .expect("waiting on a closed journal hung");
    assert!(answer.is_err());
}
