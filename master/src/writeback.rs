//! Writing a large file without starving the journal's syncs.
//!
//! A snapshot is tens to hundreds of MB. Written whole and then synced, it
//! reaches the disk in one burst, and every journal `fdatasync` issued
//! meanwhile waits behind it: a sync flushes the disk's write cache, which
//! then holds the snapshot's data too. Measured here (ext4 on virtio, a
//! 1 M-unit bench at half its peak, 27 MB snapshots): single journal syncs
//! of 36 to 58 ms, one per automatic snapshot; with write-back started in
//! 2 MiB steps but not rate-limited, 6 to 16 ms syncs for the whole 100 ms
//! the snapshot took to write.
//!
//! So the file is written in steps; the kernel is asked to write each step
//! back as soon as it is written, the step before is waited for, and the
//! whole is held to [`bytes_per_second`], so a journal sync has little of
//! the snapshot to flush with it. PostgreSQL spreads its checkpoints
//! (`checkpoint_completion_target`, `checkpoint_flush_after`) and RocksDB
//! has `bytes_per_sync` and a rate limiter for the same reason. This only
//! paces the I/O: durability still comes from the caller's `fsync`
//! afterwards, which also reports any write error.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes per step: one efficient write-back, and at most two steps dirty
/// or in flight at a time.
pub const STEP_BYTES: usize = 1024 * 1024;

/// The most a paced write sends to the disk per second by default
/// (`taskmaster serve --snapshot-write-mib`): a quarter to a half of what
/// the disk of the machine it was measured on takes, so a 27 MB snapshot
/// (1 M units) takes about 0.2 s to write and a 270 MB one about 2 s. A
/// faster disk wants more, a slower or shared one less.
pub const BYTES_PER_SECOND: u64 = 128 * 1024 * 1024;

/// The rate paced writes are held to: one setting for the process (every
/// background write shares the disk with the journal alike), set once at
/// start.
static RATE: AtomicU64 = AtomicU64::new(BYTES_PER_SECOND);

/// Sets the rate of paced writes (bytes a second, at least one step).
pub fn set_bytes_per_second(rate: u64) {
    RATE.store(rate.max(STEP_BYTES as u64), Ordering::Relaxed);
}

/// The rate paced writes are held to now.
pub fn bytes_per_second() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Beside live traffic: write-back in steps, at most [`bytes_per_second`].
    Background,
    /// As fast as the disk takes it, when nothing waits on the journal
    /// meanwhile (a rollback holds changes back while it writes).
    AtOnce,
}

/// Writes `parts` one after another at the file's position; the caller
/// syncs the file.
pub fn write(file: &mut File, parts: &[&[u8]], pacing: Pacing) -> io::Result<()> {
    match pacing {
        Pacing::Background => write_paced(file, parts),
        Pacing::AtOnce => parts.iter().try_for_each(|part| file.write_all(part)),
    }
}

/// Writes `parts` pacing write-back in steps of [`STEP_BYTES`] at most
/// [`bytes_per_second`]. Blocks (sleeps): call it off the async runtime.
fn write_paced(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let rate = bytes_per_second();
    let started = Instant::now();
    let mut written = 0u64;
    // Where the step written last begins: it is the one waited for next.
    let mut previous_step: Option<u64> = None;
    for part in parts {
        for chunk in part.chunks(STEP_BYTES) {
            file.write_all(chunk)?;
            let start = written;
            written += chunk.len() as u64;
            start_writeback(file, start, written - start);
            if let Some(previous) = previous_step {
                wait_writeback(file, previous, start - previous);
            }
            previous_step = Some(start);
            let due = Duration::from_secs_f64(written as f64 / rate as f64);
            if let Some(early) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(early);
            }
        }
    }
    Ok(())
}

/// Bytes of a released file freed per step, and the pause between steps.
const RELEASE_STEP_BYTES: u64 = 1024 * 1024;
const RELEASE_STEP_PAUSE: Duration = Duration::from_millis(4);

/// Frees the blocks of `file`, whose name is gone already (renamed over
/// or removed), on a thread of its own, a step at a time from its end,
/// then closes it. Freeing a 20 to 30 MB file at once, as its last close
/// does, took 24 to 38 ms here, and the journal sync that committed it
/// as long again (the file system frees, and with `discard` trims, the
/// blocks in the commit); in 1 MiB steps each commit has little to free.
/// If no thread can be had, the file is closed at once.
pub fn release(file: File) {
    let _ = std::thread::Builder::new()
        .name("file-release".into())
        .spawn(move || free_gradually(file));
}

fn free_gradually(file: File) {
    let mut len = file.metadata().map_or(0, |m| m.len());
    while len > 0 {
        len = len.saturating_sub(RELEASE_STEP_BYTES);
        if file.set_len(len).is_err() {
            break; // the close frees the rest
        }
        std::thread::sleep(RELEASE_STEP_PAUSE);
    }
}

/// Asks the kernel to start writing back `[offset, offset + len)`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// Waits until `[offset, offset + len)` has been written back.
#[cfg(target_os = "linux")]
fn wait_writeback(file: &File, offset: u64, len: u64) {
    sync_file_range(
        file,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    );
}

/// `sync_file_range(2)`. Its result is ignored: pacing is an optimisation,
/// a file system that does not support it loses only the pacing, and an
/// I/O error shows again at the caller's sync, which fails the write.
#[cfg(target_os = "linux")]
fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: the call reads no memory of ours; the descriptor is open for
    // its whole duration (borrowed from `file`).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, flags);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

#[cfg(not(target_os = "linux"))]
fn wait_writeback(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_part_in_order_across_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let header = b"head".to_vec();
        let body: Vec<u8> = (0..STEP_BYTES * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut file = File::create(&path).unwrap();
        let started = Instant::now();
        write(&mut file, &[&header, &body, b""], Pacing::Background).unwrap();
        file.sync_all().unwrap();
        let floor = (header.len() + body.len()) as f64 / BYTES_PER_SECOND as f64;
        assert!(
            started.elapsed().as_secs_f64() >= floor * 0.99,
            "held to the rate: {:?} for {} bytes",
            started.elapsed(),
            header.len() + body.len()
        );
        let read = std::fs::read(&path).unwrap();
        assert_eq!(read.len(), header.len() + body.len());
        assert_eq!(&read[..4], b"head");
        assert_eq!(&read[4..], &body[..]);
    }

    #[test]
    fn an_empty_write_leaves_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        for pacing in [Pacing::Background, Pacing::AtOnce] {
            let path = dir.path().join(format!("{pacing:?}"));
            let mut file = File::create(&path).unwrap();
            write(&mut file, &[], pacing).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        }
    }

    #[test]
    fn a_released_file_is_freed_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * RELEASE_STEP_BYTES as usize + 5]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let watch = File::open(&path).unwrap(); // sees the same file's length
        std::fs::remove_file(&path).unwrap();
        free_gradually(file);
        assert_eq!(watch.metadata().unwrap().len(), 0);
        // The threaded form closes what it is given.
        let other = dir.path().join("g");
        std::fs::write(&other, b"x").unwrap();
        release(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&other)
                .unwrap(),
        );
    }

    #[test]
    fn at_once_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        write(&mut file, &[b"ab", b"", b"cd"], Pacing::AtOnce).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
    }
}
