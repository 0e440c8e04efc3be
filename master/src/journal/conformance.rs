//! One suite every journal backend passes, case for case (the shape of
//! openraft's storage suite): a new place has no journal and `create`
//! makes one; records come back in order after a reopen, through
//! `read_from` at any position (the start, the middle, past the end, after
//! a purge); concurrent appends share syncs; what was never synced is cut
//! on a failure; a purge keeps exactly the records after it, takes effect
//! atomically (a crash or a failure in the middle of one keeps every
//! record), and the sequence goes on after it, also after a purge of every
//! record; a torn tail is dropped and damage before valid records, or to a
//! last write that reached the disk whole, is refused. Opening goes through
//! the backend's [`LogBackend::open`], as recovery's does.

use std::ops::RangeInclusive;
use std::sync::Arc;

use taskmaster_proto::journal::Record;

use super::file::FileBackend;
use super::mem::MemBackend;
use super::*;
use crate::core::Core;

/// A backend under test, in a place of its own, and what the suite does
/// to it from outside: damage its durable bytes, cut them as an operator
/// would, crash its store, make its purges fail.
trait Harness: Sized {
    type Backend: LogBackend;
    /// A place holding no journal yet.
    fn new() -> Self;
    fn backend(&self) -> &Self::Backend;
    /// Lets `f` edit the durable bytes (frames only, after any header).
    fn damage(&self, f: &mut dyn FnMut(&mut Vec<u8>));
    /// Where each record's payload starts in the bytes `damage` hands out.
    fn payloads(bytes: &[u8]) -> Vec<usize>;
    /// Cuts the durable bytes at an offset a refusal named, as an operator
    /// told to would.
    fn cut(&self, offset: u64);
    /// Stops `store` as a crash of its process would: nothing more is
    /// finished, nothing cleaned up.
    fn crash(store: StoreOf<Self>);
    /// Makes the purges begun from now on fail before they take effect
    /// (or succeed again).
    fn fail_purges(&self, fail: bool);
    /// Makes syncs take as long as a disk's at least.
    fn slow_syncs(&self) {}
}

type StoreOf<H> = <<H as Harness>::Backend as LogBackend>::Store;

struct FileHarness {
    _dir: tempfile::TempDir,
    backend: FileBackend,
}

impl FileHarness {
    fn path(&self) -> &std::path::Path {
        self.backend.path()
    }
}

impl Harness for FileHarness {
    type Backend = FileBackend;
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::in_data_dir(dir.path());
        FileHarness { _dir: dir, backend }
    }
    fn backend(&self) -> &FileBackend {
        &self.backend
    }
    /// Damages the records: the bytes after the header, up to the room
    /// written ahead of them (which is dropped).
    fn damage(&self, f: &mut dyn FnMut(&mut Vec<u8>)) {
        let bytes = std::fs::read(self.path()).unwrap();
        let (magic, body) = bytes.split_at(16);
        let mut records = body[..frame::scan_batches(body).valid_len].to_vec();
        f(&mut records);
        std::fs::write(self.path(), [magic, &records].concat()).unwrap();
    }
    fn payloads(bytes: &[u8]) -> Vec<usize> {
        let scan = frame::scan_batches(bytes);
        scan.payloads
            .iter()
            .map(|&(at, _)| at + frame::HEADER_BYTES)
            .collect()
    }
    fn cut(&self, offset: u64) {
        let file = std::fs::OpenOptions::new().write(true).open(self.path());
        file.unwrap().set_len(offset).unwrap();
    }
    fn crash(store: file::FileLog) {
        store.crash();
    }
    /// A directory where a purge writes its copy: the copy cannot be
    /// created, so the purge is given up before its rename.
    fn fail_purges(&self, fail: bool) {
        let copy = self.path().with_extension("compacting");
        if fail {
            std::fs::create_dir(copy).unwrap();
        } else {
            std::fs::remove_dir(copy).unwrap();
        }
    }
}

struct MemHarness(MemBackend);

impl Harness for MemHarness {
    type Backend = MemBackend;
    fn new() -> Self {
        MemHarness(MemBackend::default())
    }
    fn backend(&self) -> &MemBackend {
        &self.0
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
    fn crash(store: mem::MemLog) {
        store.crash();
    }
    fn fail_purges(&self, fail: bool) {
        self.0.disk.lock().fail_purges = fail;
    }
    /// An instant sync lets the writer keep up with appends one by one
    /// (seen 1 run in 15 on 2 cores); a disk's does not.
    fn slow_syncs(&self) {
        self.0.disk.lock().sync_takes = std::time::Duration::from_micros(500);
    }
}

fn init() -> Record {
    Core::init_record("token-1", 7)
}

fn numbered(i: u64) -> Record {
    Core::init_record(&format!("record-{i}"), i)
}

fn all_numbered(seqs: RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(numbered).collect()
}

/// A new journal holding the Init record (sequence number 1).
fn fresh<H: Harness>() -> (H, StoreOf<H>) {
    let harness = H::new();
    let store = harness
        .backend()
        .create(0, std::slice::from_ref(&init()))
        .unwrap();
    (harness, store)
}

/// A new journal holding records `1..=n`, numbered by their sequence
/// number, appended in writes of 5 records, each synced.
fn holding<H: Harness>(n: u64) -> (H, StoreOf<H>) {
    let harness = H::new();
    let mut store = harness.backend().create(0, &[]).unwrap();
    let mut from = 1;
    while from <= n {
        let to = n.min(from + 4);
        append(&mut store, from..=to);
        store.sync().unwrap();
        from = to + 1;
    }
    (harness, store)
}

/// Appends records `seqs` (numbered by sequence number) as one write.
fn append(store: &mut impl LogStore, seqs: RangeInclusive<u64>) {
    assert_eq!(*seqs.start(), store.state().last + 1, "in sequence");
    let last = *seqs.end();
    let mut frames = Vec::new();
    for seq in seqs {
        frame::encode_message(&numbered(seq), &mut frames);
    }
    store.append(&frames, last).unwrap();
}

/// Opens the journal as recovery does: its state, and every record it holds.
fn reopen<H: Harness>(harness: &H) -> Result<(LogState, Vec<Record>), JournalError> {
    let Opened { store, .. } = harness.backend().open()?;
    let state = store.state();
    let records = store.read_from(state.purged + 1)?;
    assert_eq!(
        records.len() as u64,
        state.last - state.purged,
        "the state counts the records read"
    );
    Ok((state, records))
}

fn reopened<H: Harness>(harness: &H) -> Vec<Record> {
    reopen(harness).unwrap().1
}

fn state(purged: u64, last: u64) -> LogState {
    LogState { purged, last }
}

fn a_new_place_has_no_journal_and_create_makes_or_replaces_one<H: Harness>() {
    let harness = H::new();
    let backend = harness.backend();
    assert!(!backend.exists().unwrap());
    assert!(!backend.name().is_empty());
    let store = backend.create(0, &[init()]).unwrap();
    assert!(backend.exists().unwrap());
    assert_eq!(store.state(), state(0, 1));
    assert_eq!(store.read_from(1).unwrap(), vec![init()]);
    drop(store);
    assert_eq!(reopen(&harness).unwrap(), (state(0, 1), vec![init()]));
    assert!(backend.stored_bytes() > 0);
    // A journal created over it (recovery's restart at a snapshot ahead of
    // the journal's end) replaces it whole, numbered after `purged`.
    let store = backend.create(40, &all_numbered(41..=42)).unwrap();
    assert_eq!(store.state(), state(40, 42));
    drop(store);
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(40, 42), all_numbered(41..=42))
    );
}

async fn appended_records_survive_reopen<H: Harness>() {
    let (harness, store) = fresh::<H>();
    let journal = Journal::start(store);
    for i in 0..10 {
        let seq = journal.append(&[numbered(i)]);
        assert_eq!(seq, i + 2);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    let (at, records) = reopen(&harness).unwrap();
    assert_eq!(at, state(0, 11));
    assert_eq!(records[0], init());
    assert_eq!(records[10], numbered(9));
    // The journal goes on from its last record.
    let Opened { store, .. } = harness.backend().open().unwrap();
    let journal = Journal::start(store);
    assert_eq!(journal.append(&[numbered(10)]), 12);
    journal.close();
    assert_eq!(reopened(&harness)[11], numbered(10));
}

async fn concurrent_appends_share_syncs<H: Harness>() {
    let (harness, store) = fresh::<H>();
    harness.slow_syncs();
    let journal = Arc::new(Journal::start(store));
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
    assert_eq!(reopened(&harness).len(), 201);
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

/// `read_from` on a live store and on the same journal reopened: from the
/// start, the middle, the last record, past the end; and after a purge,
/// from before it (refused), at it and after it.
fn read_from_any_position<H: Harness>() {
    let (harness, mut store) = holding::<H>(20);
    let check = |store: &StoreOf<H>| {
        assert_eq!(store.state(), state(0, 20));
        assert_eq!(store.read_from(0).unwrap(), all_numbered(1..=20));
        assert_eq!(store.read_from(1).unwrap(), all_numbered(1..=20));
        assert_eq!(store.read_from(7).unwrap(), all_numbered(7..=20));
        assert_eq!(store.read_from(20).unwrap(), all_numbered(20..=20));
        assert_eq!(store.read_from(21).unwrap(), vec![]);
        assert_eq!(store.read_from(1000).unwrap(), vec![]);
    };
    check(&store);
    // What was appended is read before its sync too.
    append(&mut store, 21..=22);
    assert_eq!(store.read_from(20).unwrap(), all_numbered(20..=22));
    store.sync().unwrap();
    store.discard_unsynced().unwrap(); // nothing to discard
    assert_eq!(store.state(), state(0, 22));
    drop(store);
    let Opened { store, .. } = harness.backend().open().unwrap();
    assert_eq!(store.read_from(3).unwrap(), all_numbered(3..=22));
    drop(store);
    // After a purge up to 12.
    let (harness, mut store) = holding::<H>(20);
    check(&store);
    store.purge(12).unwrap();
    store.finish_purge().unwrap();
    let check = |store: &StoreOf<H>| {
        assert_eq!(store.state(), state(12, 20));
        for purged in [0, 1, 7, 12] {
            let err = store.read_from(purged).unwrap_err();
            assert!(
                matches!(err, JournalError::Purged { purged: 12, .. }),
                "{err}"
            );
        }
        assert_eq!(store.read_from(13).unwrap(), all_numbered(13..=20));
        assert_eq!(store.read_from(17).unwrap(), all_numbered(17..=20));
        assert_eq!(store.read_from(21).unwrap(), vec![]);
    };
    check(&store);
    drop(store);
    let Opened { store, .. } = harness.backend().open().unwrap();
    check(&store);
}

async fn torn_tail_is_dropped_and_damage_in_the_middle_refused<H: Harness>() {
    let (harness, store) = fresh::<H>();
    let journal = Journal::start(store);
    // Two writes: a store may cut a torn write whole (the file journal's
    // batches), so the torn one holds one record.
    for i in 1..=2 {
        let seq = journal.append(&[numbered(i)]);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    harness.damage(&mut |bytes| bytes.truncate(bytes.len() - 3));
    let opened = harness.backend().open().unwrap();
    assert_eq!(opened.mended.len(), 1, "{:?}", opened.mended);
    drop(opened);
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(0, 2), vec![init(), numbered(1)])
    );
    // Inside the Init record, with the other record after it.
    harness.damage(&mut |bytes| {
        let first = H::payloads(bytes)[0];
        bytes[first + 2] ^= 0x55;
    });
    let err = reopen(&harness).unwrap_err();
    assert!(matches!(err, JournalError::CorruptMiddle { .. }), "{err}");
}

/// The last write was synced (acknowledged), then a bit of it flipped: a
/// crash cannot have done that, so it is refused, not cut as torn; the
/// operator's cut at the offset named drops that write alone.
async fn damage_to_the_last_write_is_refused_not_cut<H: Harness>() {
    let (harness, store) = fresh::<H>();
    let journal = Journal::start(store);
    for i in 1..=2 {
        let seq = journal.append(&[numbered(i)]);
        journal.wait_durable(seq).await.unwrap();
    }
    journal.close();
    harness.damage(&mut |bytes| {
        let last = *H::payloads(bytes).last().unwrap();
        bytes[last + 3] ^= 0x04;
    });
    let err = reopen(&harness).unwrap_err();
    let &JournalError::CorruptLast { offset, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        err.to_string().contains(&format!("truncate -s {offset}")),
        "{err}"
    );
    assert!(reopen(&harness).is_err(), "still refused: nothing was cut");
    harness.cut(offset);
    assert_eq!(reopened(&harness), vec![init(), numbered(1)]);
}

/// Through the journal's writer, as a snapshot asks for it.
async fn purge_keeps_only_records_after_the_snapshot<H: Harness>() {
    let (harness, store) = fresh::<H>();
    let journal = Journal::start(store);
    let seq = journal.append(&[numbered(1), numbered(2), numbered(3)]);
    journal.wait_durable(seq).await.unwrap();
    journal.purge(3);
    let seq = journal.append(&[numbered(4)]);
    journal.wait_durable(seq).await.unwrap();
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(3, 5), vec![numbered(3), numbered(4)])
    );
}

/// A purge, a reopen, and the sequence goes on after the purged records:
/// appends continue it, a second purge moves the start on.
async fn purge_then_reopen_continues_the_sequence<H: Harness>() {
    let (harness, store) = holding::<H>(30);
    let journal = Journal::start(store);
    journal.purge(10);
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(10, 30), all_numbered(11..=30))
    );
    let Opened { store, .. } = harness.backend().open().unwrap();
    let journal = Journal::start(store);
    let seq = journal.append(&[numbered(31)]);
    assert_eq!(seq, 31);
    journal.wait_durable(seq).await.unwrap();
    journal.purge(25);
    let seq = journal.append(&[numbered(32)]);
    journal.wait_durable(seq).await.unwrap();
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(25, 32), all_numbered(26..=32))
    );
}

/// A snapshot that stands for every record: the journal holds none, and
/// numbering goes on after them, also once reopened.
async fn purge_of_everything<H: Harness>() {
    let (harness, store) = holding::<H>(12);
    let journal = Journal::start(store);
    journal.purge(12);
    journal.close();
    let (at, records) = reopen(&harness).unwrap();
    assert_eq!((at, records), (state(12, 12), vec![]));
    let Opened { mut store, .. } = harness.backend().open().unwrap();
    assert_eq!(store.read_from(13).unwrap(), vec![]);
    assert!(matches!(
        store.read_from(12),
        Err(JournalError::Purged { .. })
    ));
    append(&mut store, 13..=13);
    store.sync().unwrap();
    // And purged again, of everything, by the store itself.
    store.purge(13).unwrap();
    store.finish_purge().unwrap();
    assert_eq!(store.state(), state(13, 13));
    drop(store);
    assert_eq!(reopen(&harness).unwrap(), (state(13, 13), vec![]));
    let Opened { store, .. } = harness.backend().open().unwrap();
    let journal = Journal::start(store);
    let seq = journal.append(&[numbered(14)]);
    assert_eq!(seq, 14);
    journal.wait_durable(seq).await.unwrap();
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(13, 14), all_numbered(14..=14))
    );
}

/// A purge past the last record is refused and changes nothing; one at or
/// below the last purge is nothing to do.
fn purge_past_the_end_is_refused<H: Harness>() {
    let (harness, mut store) = holding::<H>(10);
    let err = store.purge(11).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(!store.purging());
    assert_eq!(store.state(), state(0, 10));
    store.purge(4).unwrap();
    store.finish_purge().unwrap();
    store.purge(2).unwrap();
    store.purge(4).unwrap();
    store.finish_purge().unwrap();
    assert_eq!(store.state(), state(4, 10));
    drop(store);
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(4, 10), all_numbered(5..=10))
    );
}

/// A crash while a purge is under way, with records appended meanwhile:
/// the journal reopens whole, as before the purge or as after it, holding
/// every synced record after it; a purge after the reopen finishes.
fn a_crash_during_a_purge_keeps_every_record<H: Harness>() {
    let (harness, mut store) = holding::<H>(20);
    store.purge(10).unwrap();
    append(&mut store, 21..=23);
    store.sync().unwrap();
    append(&mut store, 24..=25);
    store.sync().unwrap();
    H::crash(store);
    let (at, records) = reopen(&harness).unwrap();
    assert!(at.purged == 0 || at.purged == 10, "{at:?}");
    assert_eq!(at.last, 25);
    assert_eq!(records, all_numbered(at.purged + 1..=25));
    let Opened { mut store, .. } = harness.backend().open().unwrap();
    store.purge(10).unwrap();
    store.finish_purge().unwrap();
    assert!(!store.purging());
    assert_eq!(store.state(), state(10, 25));
    // A crash once it finished keeps it.
    H::crash(store);
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(10, 25), all_numbered(11..=25))
    );
}

/// A purge that fails before it takes effect costs space only: every
/// record stays, the journal goes on, and a later purge succeeds.
async fn a_failed_purge_keeps_every_record_and_the_journal_going<H: Harness>() {
    let (harness, store) = holding::<H>(20);
    harness.fail_purges(true);
    let journal = Journal::start(store);
    journal.purge(15);
    let seq = journal.append(&[numbered(21)]);
    journal.wait_durable(seq).await.unwrap();
    journal.check().unwrap();
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(0, 21), all_numbered(1..=21))
    );
    harness.fail_purges(false);
    let Opened { store, .. } = harness.backend().open().unwrap();
    let journal = Journal::start(store);
    journal.purge(15);
    let seq = journal.append(&[numbered(22)]);
    journal.wait_durable(seq).await.unwrap();
    journal.close();
    assert_eq!(
        reopen(&harness).unwrap(),
        (state(15, 22), all_numbered(16..=22))
    );
}

/// After a failed write: what was appended since the last sync is cut,
/// never read, never reopened; appends go on from the last synced record.
fn discard_unsynced_cuts_what_was_not_synced<H: Harness>() {
    let (harness, mut store) = holding::<H>(10);
    append(&mut store, 11..=14);
    assert_eq!(store.state(), state(0, 14));
    store.discard_unsynced().unwrap();
    assert_eq!(store.state(), state(0, 10));
    assert_eq!(store.read_from(9).unwrap(), all_numbered(9..=10));
    let other = Core::init_record("after the cut", 11);
    let mut frames = Vec::new();
    frame::encode_message(&other, &mut frames);
    store.append(&frames, 11).unwrap();
    store.sync().unwrap();
    drop(store);
    let (at, records) = reopen(&harness).unwrap();
    assert_eq!(at, state(0, 11));
    assert_eq!(records[10], other);
}

macro_rules! conformance {
    ($harness:ty, $module:ident) => {
        mod $module {
            use super::*;
            #[test]
            fn a_new_place_has_no_journal_and_create_makes_or_replaces_one() {
                super::a_new_place_has_no_journal_and_create_makes_or_replaces_one::<$harness>();
            }
            #[tokio::test]
            async fn appended_records_survive_reopen() {
                super::appended_records_survive_reopen::<$harness>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_share_syncs() {
                super::concurrent_appends_share_syncs::<$harness>().await;
            }
            #[test]
            fn read_from_any_position() {
                super::read_from_any_position::<$harness>();
            }
            #[tokio::test]
            async fn torn_tail_is_dropped_and_damage_in_the_middle_refused() {
                super::torn_tail_is_dropped_and_damage_in_the_middle_refused::<$harness>().await;
            }
            #[tokio::test]
            async fn damage_to_the_last_write_is_refused_not_cut() {
                super::damage_to_the_last_write_is_refused_not_cut::<$harness>().await;
            }
            #[tokio::test]
            async fn purge_keeps_only_records_after_the_snapshot() {
                super::purge_keeps_only_records_after_the_snapshot::<$harness>().await;
            }
            #[tokio::test]
            async fn purge_then_reopen_continues_the_sequence() {
                super::purge_then_reopen_continues_the_sequence::<$harness>().await;
            }
            #[tokio::test]
            async fn purge_of_everything() {
                super::purge_of_everything::<$harness>().await;
            }
            #[test]
            fn purge_past_the_end_is_refused() {
                super::purge_past_the_end_is_refused::<$harness>();
            }
            #[test]
            fn a_crash_during_a_purge_keeps_every_record() {
                super::a_crash_during_a_purge_keeps_every_record::<$harness>();
            }
            #[tokio::test]
            async fn a_failed_purge_keeps_every_record_and_the_journal_going() {
                super::a_failed_purge_keeps_every_record_and_the_journal_going::<$harness>().await;
            }
            #[test]
            fn discard_unsynced_cuts_what_was_not_synced() {
                super::discard_unsynced_cuts_what_was_not_synced::<$harness>();
            }
        }
    };
}

conformance!(FileHarness, file_log);
conformance!(MemHarness, mem_log);

// The journal writer's answers to failing storage: injected through the
// memory backend, the one that can fail on demand.

#[tokio::test]
async fn a_full_disk_acknowledges_nothing_and_is_reported_as_such() {
    let (harness, store) = fresh::<MemHarness>();
    let journal = Journal::start(store);
    harness.0.disk.lock().fail_with = Some(std::io::ErrorKind::StorageFull);
    let seq = journal.append(&[numbered(1)]);
    let err = journal.wait_durable(seq).await.unwrap_err();
    assert!(matches!(err, JournalError::DiskFull(_)), "{err}");
    assert!(matches!(journal.failed().await, JournalError::DiskFull(_)));
    assert!(
        harness.0.disk.lock().unsynced.is_empty(),
        "the unsynced tail was cut"
    );
    assert_eq!(reopened(&harness), vec![init()]);
}

#[tokio::test]
async fn an_io_error_is_fatal() {
    let (harness, store) = fresh::<MemHarness>();
    let journal = Journal::start(store);
    harness.0.disk.lock().fail_with = Some(std::io::ErrorKind::Other);
    let seq = journal.append(&[numbered(1)]);
    let err = journal.wait_durable(seq).await.unwrap_err();
    assert!(matches!(err, JournalError::Failed(_)), "{err}");
    assert!(journal.check().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiter_learns_of_a_failure_and_none_hangs() {
    let (harness, store) = fresh::<MemHarness>();
    let journal = Arc::new(Journal::start(store));
    let seq = journal.append(&[numbered(0)]);
    journal.wait_durable(seq).await.unwrap();
    harness.0.disk.lock().fail_with = Some(std::io::ErrorKind::Other);
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
    let (_harness, store) = fresh::<MemHarness>();
    let journal = Journal::start(store);
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
