//! Zeros written ahead of a batches (format 3) journal's end.
//!
//! An append that grows the file makes its `fdatasync` commit the file's
//! new size and blocks through the file system's own journal besides the
//! data; an append into blocks already written (with zeros) syncs the data
//! alone. On this machine that took about 40% off each sync's time and
//! system CPU (BENCHMARKS.md, "Why the code is shaped so: zeros written
//! ahead of the journal"). So a thread of its own keeps
//! [`ROOM_BYTES`] of zeros written and synced past the records' end, a
//! [`STEP_BYTES`] step at a time, and the writer writes into them; it waits
//! for the thread only when it outruns it. Recovery reads zeros after the
//! last batch as room (`frame::scan_batches`).
//!
//! No room is kept where the file system has less than [`MIN_FREE_BYTES`]
//! free: there the records need the space, and a full disk must show as
//! the journal's own failure.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Zeros kept written ahead of the records.
const ROOM_BYTES: u64 = 4 * 1024 * 1024;
/// Zeros written (and synced) at a time.
const STEP_BYTES: usize = 1024 * 1024;
/// Free space below which no room is kept.
const MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
/// How long the thread keeps off after a failed step or a nearly full disk.
const BACK_OFF: Duration = Duration::from_secs(5);

pub(super) struct Room {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// Below this offset the file is written (records, or zeros): the
    /// writer writes there without waiting.
    ready: u64,
    /// A step of zeros is being written at `ready`.
    zeroing: bool,
    /// Where the records end.
    end: u64,
    /// No step before this (a step failed, or the disk is nearly full).
    idle_until: Option<Instant>,
    stop: bool,
}

impl Room {
    /// Keeps room after the records of `file`, which end at `end`; the
    /// file is `len` bytes long, zeros after `end`.
    pub(super) fn start(file: &File, len: u64, end: u64) -> io::Result<Room> {
        // The thread's own descriptor: writes are positioned.
        let file = file.try_clone()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: len.max(end),
                zeroing: false,
                end,
                idle_until: None,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("journal-room".into())
            .spawn(move || write_ahead(&thread_shared, &file))?;
        Ok(Room {
            shared,
            thread: Some(thread),
        })
    }

    /// Makes `[at, at + len)` the writer's: returns once no zeros can be
    /// written there.
    pub(super) fn claim(&self, at: u64, len: u64) {
        let end = at + len;
        let mut state = self.shared.state.lock();
        if end > state.ready {
            // Outran the room: a step in flight may be writing zeros where
            // these records go.
            while state.zeroing {
                self.shared.changed.wait(&mut state);
            }
            state.ready = state.ready.max(end);
        }
        state.end = end;
        if state.ready - end < ROOM_BYTES {
            self.shared.changed.notify_all();
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: a step of zeros whenever the room is short.
fn write_ahead(shared: &Shared, file: &File) {
    let zeros = vec![0u8; STEP_BYTES];
    loop {
        let at = {
            let mut state = shared.state.lock();
            loop {
                if state.stop {
                    return;
                }
                let resting = state.idle_until.is_some_and(|until| Instant::now() < until);
                if !resting && state.ready - state.end < ROOM_BYTES {
                    if free_bytes(file).is_some_and(|free| free >= MIN_FREE_BYTES) {
                        break;
                    }
                    state.idle_until = Some(Instant::now() + BACK_OFF);
                }
                match state.idle_until {
                    Some(until) if Instant::now() < until => {
                        shared.changed.wait_until(&mut state, until);
                    }
                    _ => shared.changed.wait(&mut state),
                }
            }
            state.zeroing = true;
            state.ready
        };
        let written = file
            .write_all_at(&zeros, at)
            .and_then(|()| file.sync_data());
        let mut state = shared.state.lock();
        state.zeroing = false;
        // `ready` stayed at `at`: a claim past it waited for this step.
        match written {
            Ok(()) => state.ready = at + STEP_BYTES as u64,
            Err(e) => {
                tracing::warn!(error = %e, "could not write room ahead of the journal");
                state.idle_until = Some(Instant::now() + BACK_OFF);
            }
        }
        shared.changed.notify_all();
    }
}

/// Bytes free for an unprivileged writer on `file`'s file system.
fn free_bytes(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero statvfs is a valid value for the call to fill in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call; `stat` is writable.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn room_is_zeros_written_ahead_and_claimed_records_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all_at(b"head", 0).unwrap();
        let room = Room::start(&file, 4, 4).unwrap();
        let len = || std::fs::metadata(&path).unwrap().len();
        wait_for("room written", || len() >= 4 + ROOM_BYTES);
        // Records written past the room while it is being extended.
        let record = vec![7u8; 300_000];
        let mut at = 4;
        for _ in 0..40 {
            room.claim(at, record.len() as u64);
            file.write_all_at(&record, at).unwrap();
            at += record.len() as u64;
        }
        wait_for("room after the records", || len() >= at + ROOM_BYTES);
        drop(room);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..at as usize].iter().all(|&b| b == 7));
        assert!(bytes[at as usize..].iter().all(|&b| b == 0));
    }
}
