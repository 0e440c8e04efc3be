//! The journal: every state change, framed and checksummed, made durable in
//! groups. Callers append records (cheap, in memory, in order) and then wait
//! until their sequence number is durable. One writer thread takes whatever
//! accumulated, writes it and syncs once, so concurrent changes share one
//! `fdatasync` (group commit) and durability does not cost a sync per unit.
//!
//! Storage sits behind two traits, shaped after openraft's log storage: a
//! [`LogBackend`] opens or creates a journal (open yields its state after
//! the last purge, refusing damage), and its [`LogStore`] appends, syncs,
//! reads from a position and purges up to a durable snapshot. Backends:
//! [`file::FileBackend`] (the real one, `journal.log` in the data dir) and
//! [`mem::MemBackend`] (for tests, with fault injection). Both pass the
//! same conformance suite, case for case.

pub mod file;
pub mod frame;
pub mod mem;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use prost::Message;
use taskmaster_proto::journal::Record;
use tokio::sync::{oneshot, watch};

/// Positions in a store: it holds the records `purged + 1 ..= last`
/// (openraft's `LogState`: the last purged and the last log id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogState {
    /// The last record purged (0: none): a durable snapshot holds the
    /// effect of it and of every record before it.
    pub purged: u64,
    /// The last record appended, synced or not (`purged` when it holds none).
    pub last: u64,
}

/// Where journal records are kept. Records are numbered from 1, one more
/// per record; a store holds a contiguous run of them ([`LogState`]). The
/// journal's writer thread owns the store and calls it from that thread
/// alone. A store is opened or created by its [`LogBackend`].
///
/// Every store passes the same conformance suite (`conformance.rs`).
pub trait LogStore: Send + 'static {
    /// What it holds now. A purge that has begun but not finished has not
    /// moved `purged` yet.
    fn state(&self) -> LogState;
    /// The records from sequence number `from` to the last appended, in
    /// order: what a rebuild replays after its snapshot, or what a
    /// follower copies. Empty when `from` is past the last record;
    /// refused ([`JournalError::Purged`]) when records from `from` on were
    /// purged (`from <= purged`; `from` 0 reads as 1). Records appended but
    /// not yet synced are included: a reader that must see durable records
    /// only reads after their sync (the writer itself never reads).
    fn read_from(&self, from: u64) -> Result<Vec<Record>, JournalError>;
    /// Appends whole frames, written in one piece (a crash keeps all of
    /// them or, cut at the next open, none). `last_seq` is the sequence
    /// number of the last record among them (stores may index by it, to
    /// read and purge cheaply). They need not be durable until `sync`. No
    /// copy on this path beyond what the store itself needs: it is the
    /// group commit's.
    fn append(&mut self, frames: &[u8], last_seq: u64) -> io::Result<()>;
    /// Makes everything appended durable.
    fn sync(&mut self) -> io::Result<()>;
    /// After a failed append or sync: cuts off everything since the last
    /// successful sync, so nothing unacknowledged can reappear on recovery;
    /// `state().last` is the last synced record again.
    fn discard_unsynced(&mut self) -> io::Result<()>;
    /// Bytes the store's records take (what was appended, less what a
    /// purge dropped; not room kept ahead).
    fn records_bytes(&self) -> u64;
    /// Purges the records up to sequence number `upto`, which a durable
    /// snapshot now holds (openraft's `purge`), atomically: a crash leaves
    /// either every record or those after `upto`, never less. Called
    /// between batches, when all that was appended is synced. `upto` at or
    /// below `purged` is nothing to do; past `last` it is refused, and the
    /// store is left as it was. A store may finish a purge later, in
    /// `poll_purge` or `finish_purge` (the file journal copies the records
    /// it keeps on a thread of its own, beside the appends); until then the
    /// records stay, and `state().purged` does not move. A purge that fails
    /// before it took effect only costs space: the store goes on whole.
    fn purge(&mut self, upto: u64) -> io::Result<()>;
    /// Called after each successful sync, and every few milliseconds while
    /// `purging`: finishes a purge whose work in the background is done.
    /// An error means the store can no longer be trusted, as after a
    /// failed sync.
    fn poll_purge(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Finishes a purge in progress, waiting for it (before another purge,
    /// and when closing). Errors as `poll_purge`'s.
    fn finish_purge(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// A purge is in progress: the writer polls it even when idle.
    fn purging(&self) -> bool {
        false
    }
}

/// A boxed store is a store: the master holds its backend's store as one
/// (see [`AnyBackend`]). One virtual call per batch, no copy.
impl<S: LogStore + ?Sized> LogStore for Box<S> {
    fn state(&self) -> LogState {
        (**self).state()
    }
    fn read_from(&self, from: u64) -> Result<Vec<Record>, JournalError> {
        (**self).read_from(from)
    }
    fn append(&mut self, frames: &[u8], last_seq: u64) -> io::Result<()> {
        (**self).append(frames, last_seq)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn discard_unsynced(&mut self) -> io::Result<()> {
        (**self).discard_unsynced()
    }
    fn records_bytes(&self) -> u64 {
        (**self).records_bytes()
    }
    fn purge(&mut self, upto: u64) -> io::Result<()> {
        (**self).purge(upto)
    }
    fn poll_purge(&mut self) -> io::Result<()> {
        (**self).poll_purge()
    }
    fn finish_purge(&mut self) -> io::Result<()> {
        (**self).finish_purge()
    }
    fn purging(&self) -> bool {
        (**self).purging()
    }
}

/// Where a journal lives, and how its [`LogStore`] is opened or created.
/// The master chooses one at start ([`file::FileBackend`] in its data
/// dir); recovery and the rebuild after a full disk go through this trait
/// alone, so another backend (etcd) is a new implementation, not a change
/// to recovery. [`mem::MemBackend`] is the one tests use.
pub trait LogBackend: Send + Sync + 'static {
    type Store: LogStore;
    /// The journal's name in messages (the file journal's: `journal.log`).
    fn name(&self) -> String;
    /// Whether a journal exists here (a new data dir has none).
    fn exists(&self) -> Result<bool, JournalError>;
    /// Opens the journal that exists here, to read it and go on appending.
    /// Its state is what was synced before it was last closed or lost: the
    /// last purge that took effect and every synced record after it; what
    /// was never synced is gone. A torn last write (one a crash cut short)
    /// is cut; damage that may hit acknowledged records is refused
    /// ([`JournalError::CorruptMiddle`], [`JournalError::CorruptLast`]),
    /// leaving the journal as it is. Every mend is durable before this
    /// returns, and said in [`Opened::mended`].
    fn open(&self) -> Result<Opened<Self::Store>, JournalError>;
    /// Creates a journal holding `records`, numbered after `purged`,
    /// replacing any journal here: atomically (a crash leaves the old
    /// journal or the new one) and durably.
    fn create(&self, purged: u64, records: &[Record]) -> Result<Self::Store, JournalError>;
    /// Bytes the journal takes in its storage now, as far as they can be
    /// told cheaply (for status; a purge in progress may count twice).
    fn stored_bytes(&self) -> u64;
}

/// A journal opened by [`LogBackend::open`].
pub struct Opened<S> {
    pub store: S,
    /// What was mended on opening it.
    pub mended: Vec<Mended>,
}

/// A mend made when a journal was opened: a torn last write cut, a damaged
/// header written back from its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mended {
    /// Where, in the backend's terms (the file journal's: a byte offset).
    pub offset: u64,
    /// What was found and done, for the operator.
    pub what: String,
}

/// A backend chosen at run time, its store boxed: what the master holds.
pub type AnyBackend = dyn LogBackend<Store = Box<dyn LogStore>>;

/// Wraps a backend as an [`AnyBackend`].
pub fn any_backend(backend: impl LogBackend) -> Arc<AnyBackend> {
    Arc::new(Boxed(backend))
}

struct Boxed<B>(B);

impl<B: LogBackend> LogBackend for Boxed<B> {
    type Store = Box<dyn LogStore>;
    fn name(&self) -> String {
        self.0.name()
    }
    fn exists(&self) -> Result<bool, JournalError> {
        self.0.exists()
    }
    fn open(&self) -> Result<Opened<Box<dyn LogStore>>, JournalError> {
        let Opened { store, mended } = self.0.open()?;
        Ok(Opened {
            store: Box::new(store),
            mended,
        })
    }
    fn create(&self, purged: u64, records: &[Record]) -> Result<Box<dyn LogStore>, JournalError> {
        Ok(Box::new(self.0.create(purged, records)?))
    }
    fn stored_bytes(&self) -> u64 {
        self.0.stored_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {context}: {source}")]
    Io {
        path: String,
        context: &'static str,
        source: io::Error,
    },
    #[error(
        "journal {path} is corrupt at byte {offset}, before records that were acknowledged; \
         refusing to start (restore the data dir from a backup, or move the journal aside to start empty)"
    )]
    CorruptMiddle { path: String, offset: u64 },
    /// The last write reached the disk whole, so a crash did not cut it
    /// short, yet it does not verify: damaged since, and possibly
    /// acknowledged. Cutting it is the operator's call, not recovery's.
    #[error(
        "journal {path} is corrupt at byte {offset}: its last write (bytes {offset}..{end}) does \
         not verify ({damage}), yet none of it is missing, as some would be had a crash cut the \
         write short; so it was damaged after it was written, and its records may have been \
         acknowledged. Refusing to start rather than drop them: restore the data dir from a \
         backup, or, to start without that write's records, keep a copy of the journal and cut \
         it at that byte (truncate -s {offset} {path})"
    )]
    CorruptLast {
        path: String,
        offset: u64,
        end: u64,
        damage: String,
    },
    #[error("journal {path}: {what}")]
    Invalid { path: String, what: String },
    /// A read from a position the journal no longer holds: a snapshot
    /// holds those records' effect instead.
    #[error(
        "journal {path}: records from {from} on were asked for, but those up to {purged} were \
         purged (a snapshot holds them)"
    )]
    Purged {
        path: String,
        from: u64,
        purged: u64,
    },
    /// A write or sync failed: nothing after the last sync is durable, and
    /// the in-memory state is ahead of the disk, so the node must stop.
    #[error("journal write failed, the master must restart: {0}")]
    Failed(Arc<str>),
    /// The journal's disk is full: nothing after the last sync was made
    /// durable or acknowledged; the master recovers once space returns.
    #[error("the journal's disk is full ({0}); the change was not made, retry once space is freed")]
    DiskFull(Arc<str>),
}

/// Whether the writer has failed (its progress is `Shared::durable_upto`).
#[derive(Debug, Clone, Default)]
struct Durable {
    failed: Option<Arc<str>>,
    /// The failure was a full disk (recoverable), not an I/O error.
    disk_full: bool,
}

struct Queue {
    frames: Vec<u8>,
    appended: u64,
    closing: bool,
    /// A purge asked for, done by the writer between batches.
    purge_upto: Option<u64>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    syncs: AtomicU64,
    /// The store's `records_bytes` after the writer's last batch or purge.
    store_bytes: AtomicU64,
    /// For waiters that cannot await (they hold a lock): the durable
    /// sequence number, a failure flag, and a condvar signalled per sync.
    durable_upto: AtomicU64,
    failed: std::sync::atomic::AtomicBool,
    synced: Condvar,
    /// Tasks waiting for a sequence number to become durable. The writer
    /// wakes only those its sync covered: waking every waiter on every
    /// sync (a watch channel) cost more CPU than the commits themselves
    /// when many calls wait at once.
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    waiting: Vec<(u64, oneshot::Sender<()>)>,
    /// The writer has stopped (closed or failed): nothing more becomes durable.
    writer_gone: bool,
}

pub struct Journal {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the writer thread over `store`: sequence numbers continue
    /// from its last record.
    pub fn start(store: impl LogStore) -> Journal {
        let records_so_far = store.state().last;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                frames: Vec::new(),
                appended: records_so_far,
                closing: false,
                purge_upto: None,
            }),
            wake: Condvar::new(),
            syncs: AtomicU64::new(0),
            store_bytes: AtomicU64::new(store.records_bytes()),
            durable_upto: AtomicU64::new(records_so_far),
            failed: std::sync::atomic::AtomicBool::new(false),
            synced: Condvar::new(),
            waiters: Mutex::new(Waiters::default()),
        });
        let (tx, durable) = watch::channel(Durable {
            failed: None,
            disk_full: false,
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                write_loop(store, &writer_shared, &tx);
                writer_shared.writer_gone();
            })
            .expect("spawning the journal writer thread");
        Journal {
            shared,
            durable,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues records in order and returns the sequence number to wait for.
    /// Call it while holding the lock that ordered the change.
    pub fn append(&self, records: &[Record]) -> u64 {
        let mut queue = self.shared.queue.lock();
        for rec in records {
            frame::encode_message(rec, &mut queue.frames);
            queue.appended += 1;
        }
        if !records.is_empty() {
            self.shared.wake.notify_one();
        }
        queue.appended
    }

    /// The sequence number of the last appended record.
    pub fn appended(&self) -> u64 {
        self.shared.queue.lock().appended
    }

    /// Waits until record `seq` (and so every record before it) is durable.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let durable = || self.shared.durable_upto.load(Ordering::Acquire) >= seq;
        if durable() {
            return Ok(());
        }
        let woken = {
            let mut waiters = self.shared.waiters.lock();
            // Checked again under the lock the writer takes to wake
            // waiters after it advanced `durable_upto`: no wake-up is lost.
            if durable() {
                return Ok(());
            }
            if waiters.writer_gone {
                return Err(self.stopped_error());
            }
            let (tx, rx) = oneshot::channel();
            waiters.waiting.push((seq, tx));
            rx
        };
        // Sent when a sync covered `seq`; dropped when the writer stopped.
        let _ = woken.await;
        if durable() {
            Ok(())
        } else {
            Err(self.stopped_error())
        }
    }

    /// Why the writer stopped: its failure, or a close.
    fn stopped_error(&self) -> JournalError {
        self.check()
            .err()
            .unwrap_or_else(|| JournalError::Failed("the journal writer stopped".into()))
    }

    /// The journal's failure as an error, if it has failed.
    pub fn check(&self) -> Result<(), JournalError> {
        let state = self.durable.borrow();
        match &state.failed {
            Some(why) => Err(failure_error(why, state.disk_full)),
            None => Ok(()),
        }
    }

    /// Blocks the thread until record `seq` is durable. For callers holding
    /// a lock the writer never takes; everyone else awaits `wait_durable`.
    pub fn wait_durable_blocking(&self, seq: u64) -> Result<(), JournalError> {
        let mut queue = self.shared.queue.lock();
        loop {
            if self.shared.durable_upto.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::Acquire) {
                return self.check();
            }
            self.shared
                .synced
                .wait_for(&mut queue, std::time::Duration::from_millis(100));
        }
    }

    /// Resolves when the journal has failed, with the failure.
    pub async fn failed(&self) -> JournalError {
        let mut rx = self.durable.clone();
        match rx.wait_for(|d| d.failed.is_some()).await {
            Ok(state) => failure_error(
                state.failed.as_ref().expect("waited for it"),
                state.disk_full,
            ),
            Err(_) => JournalError::Failed("the journal writer stopped".into()),
        }
    }

    /// Why the journal failed, if it has.
    pub fn failure(&self) -> Option<Arc<str>> {
        self.durable.borrow().failed.clone()
    }

    /// The journal failed on a full disk (recoverable once space returns).
    pub fn is_disk_full(&self) -> bool {
        self.durable.borrow().disk_full
    }

    /// How many syncs the writer has issued.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Bytes the journal's records take in its store (as of the writer's
    /// last batch or purge; a file may also hold room written ahead).
    pub fn bytes(&self) -> u64 {
        self.shared.store_bytes.load(Ordering::Relaxed)
    }

    /// Asks the writer to purge records up to `upto` from the store once
    /// what is queued is written ([`LogStore::purge`]). Only call after a
    /// snapshot holding their effect is durable.
    pub fn purge(&self, upto: u64) {
        self.shared.queue.lock().purge_upto = Some(upto);
        self.shared.wake.notify_one();
    }

    /// Writes and syncs what is queued, then stops the writer.
    pub fn close(&self) {
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// Wakes the waiters whose records are now durable.
    fn wake_durable(&self, upto: u64) {
        let ready: Vec<_> = self
            .waiters
            .lock()
            .waiting
            .extract_if(.., |(seq, _)| *seq <= upto)
            .collect();
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }

    /// After the writer's last sync: the remaining waiters can never be
    /// satisfied, so they are woken to see the failure (or the close).
    fn writer_gone(&self) {
        let waiting = {
            let mut waiters = self.waiters.lock();
            waiters.writer_gone = true;
            std::mem::take(&mut waiters.waiting)
        };
        drop(waiting);
    }
}

fn write_loop(mut store: impl LogStore, shared: &Shared, durable: &watch::Sender<Durable>) {
    let mut batch = Vec::new();
    let idle =
        |queue: &Queue| queue.frames.is_empty() && queue.purge_upto.is_none() && !queue.closing;
    loop {
        let next = {
            let mut queue = shared.queue.lock();
            while idle(&queue) {
                if !store.purging() {
                    shared.wake.wait(&mut queue);
                } else if shared.wake.wait_for(&mut queue, PURGE_POLL).timed_out() {
                    break;
                }
            }
            if idle(&queue) {
                None // nothing to write, a purge to look at
            } else if queue.frames.is_empty() && queue.purge_upto.is_none() {
                // Closing, and everything is written.
                drop(queue);
                if let Err(e) = store.finish_purge() {
                    tracing::error!(error = %e, "journal purge failed while closing");
                }
                return;
            } else {
                std::mem::swap(&mut batch, &mut queue.frames);
                Some((queue.appended, queue.purge_upto.take()))
            }
        };
        let Some((upto, purge)) = next else {
            if !end_purge(&mut store, shared, durable, Wait::No) {
                return;
            }
            continue;
        };
        if !batch.is_empty() {
            // Fault-injection tests crash the master around the write and
            // the sync (an abort is as abrupt as SIGKILL).
            fail::fail_point!("journal-before-write", |_| std::process::abort());
            let written = store.append(&batch, upto).and_then(|()| {
                fail::fail_point!("journal-before-sync", |_| std::process::abort());
                crate::metrics::metrics().time_journal_sync(|| store.sync())
            });
            if let Err(e) = written {
                tracing::error!(error = %e, "journal write failed; nothing more will be acknowledged");
                if let Err(cut) = store.discard_unsynced() {
                    tracing::error!(error = %cut, "could not cut the unsynced tail; recovery will");
                }
                fail_writer(shared, durable, &e);
                return; // the thread then marks the writer gone, failing every waiter
            }
            shared.syncs.fetch_add(1, Ordering::Relaxed);
            shared
                .store_bytes
                .store(store.records_bytes(), Ordering::Relaxed);
            fail::fail_point!("journal-after-sync", |_| std::process::abort());
            shared.durable_upto.store(upto, Ordering::Release);
            shared.wake_durable(upto);
            drop(shared.queue.lock()); // a blocking waiter is either waiting or sees the store
            shared.synced.notify_all();
            batch.clear();
            // After the waiters are woken: a purge finishing here delays
            // the next batch, not this one.
            if !end_purge(&mut store, shared, durable, Wait::No) {
                return;
            }
        }
        if let Some(upto) = purge {
            // One purge at a time: the one in progress ends first.
            if store.purging() && !end_purge(&mut store, shared, durable, Wait::Yes) {
                return;
            }
            // A failed purge leaves the store whole: only space is lost.
            if let Err(e) = store.purge(upto) {
                tracing::warn!(error = %e, "journal purge failed; the journal keeps growing")
            }
        }
    }
}

/// How often an idle writer looks whether a purge's work is done.
const PURGE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether ending a purge may wait for its work in the background.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

/// Lets the store finish a purge (only one whose work is done, with
/// `Wait::No`); false when that failed the journal.
fn end_purge(
    store: &mut impl LogStore,
    shared: &Shared,
    durable: &watch::Sender<Durable>,
    wait: Wait,
) -> bool {
    let ended = match wait {
        Wait::Yes => store.finish_purge(),
        Wait::No => store.poll_purge(),
    };
    shared
        .store_bytes
        .store(store.records_bytes(), Ordering::Relaxed);
    match ended {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "journal purge failed after it took effect; nothing more will be acknowledged");
            fail_writer(shared, durable, &e);
            false
        }
    }
}

/// Marks the journal failed: nothing after the last sync is acknowledged.
fn fail_writer(shared: &Shared, durable: &watch::Sender<Durable>, e: &io::Error) {
    durable.send_modify(|d| {
        d.failed = Some(e.to_string().into());
        d.disk_full = is_disk_full(e);
    });
    shared.failed.store(true, Ordering::Release);
    shared.synced.notify_all();
}

fn failure_error(why: &Arc<str>, disk_full: bool) -> JournalError {
    if disk_full {
        JournalError::DiskFull(why.clone())
    } else {
        JournalError::Failed(why.clone())
    }
}

/// ENOSPC or EDQUOT: space may come back, unlike an I/O error.
fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded
}

/// Where a read from sequence number `from` starts among a store's
/// records (how many it skips), None when `from` is past the last, or the
/// refusal when records from `from` on were purged ([`LogStore::read_from`]).
fn records_before(path: &str, state: LogState, from: u64) -> Result<Option<u64>, JournalError> {
    let from = from.max(1);
    if from <= state.purged {
        return Err(JournalError::Purged {
            path: path.to_string(),
            from,
            purged: state.purged,
        });
    }
    Ok((from <= state.last).then(|| from - state.purged - 1))
}

/// Decodes checksum-valid payloads into records.
fn decode_all(
    path: &str,
    payloads: &[(usize, &[u8])],
    base: usize,
) -> Result<Vec<Record>, JournalError> {
    payloads
        .iter()
        .map(|&(offset, payload)| {
            Record::decode(payload).map_err(|e| JournalError::Invalid {
                path: path.to_string(),
                what: format!("record at byte {} does not decode: {e}", base + offset),
            })
        })
        .collect()
}

#[cfg(test)]
mod conformance;
