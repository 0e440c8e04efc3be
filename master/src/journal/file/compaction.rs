//! Compaction without stopping the journal.
//!
//! Compacting rewrites the journal without the records a snapshot now
//! holds. Done on the writer thread, every commit waited for the whole
//! rewrite: the kept tail written and synced, the rename and the directory
//! sync, 27 to 48 ms after each automatic snapshot of a 1 M-unit run. So
//! the bulk of it runs on a thread of its own: it copies the kept records,
//! as far as they were synced when it began, to a new file and syncs it,
//! while the writer goes on appending to the old file and keeps a copy of
//! what it appends. Once the copy is done, the writer adds that copy to the
//! new file, syncs it, renames it over the journal and syncs the directory
//! (`FileLog::finish_compaction`): a crash at any point leaves one whole
//! file holding every acknowledged record, the old one until the rename.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{Format, batch_of, file_header, frame};
use crate::writeback::{self, Pacing};

/// Appended bytes kept for a compaction in progress beyond which the
/// writer waits for its copy instead of holding more in memory.
const APPENDED_MAX: usize = 64 * 1024 * 1024;

/// A new journal file, synced, holding the records after `upto`.
pub(super) struct Copied {
    pub file: File,
    pub len: u64,
    pub upto: u64,
}

pub(super) struct Compaction {
    tmp: PathBuf,
    copy: JoinHandle<io::Result<Copied>>,
    /// Frames appended to the old file since the copy began, and where
    /// each append's frames end among them: a batch each in the new file,
    /// made once the copy's length says where they go.
    appended: Vec<u8>,
    appended_ends: Vec<usize>,
}

/// Where the new file is written before it is renamed over the journal
/// (not the `.tmp` that a journal created whole is written under).
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("compacting")
}

impl Compaction {
    /// Starts copying the records after `upto` from the journal at `path`,
    /// reading from `mark` (sequence number, offset: a frame boundary at or
    /// before `upto`) to `synced_end`, where the file is synced and ends.
    pub(super) fn start(
        path: &Path,
        format: Format,
        mark: (u64, u64),
        synced_end: u64,
        upto: u64,
    ) -> io::Result<Compaction> {
        let tmp = tmp_path(path);
        let (from, to) = (path.to_path_buf(), tmp.clone());
        let copy = std::thread::Builder::new()
            .name("journal-compaction".into())
            .spawn(move || copy_kept(&from, &to, format, mark, synced_end, upto))?;
        Ok(Compaction {
            tmp,
            copy,
            appended: Vec::new(),
            appended_ends: Vec::new(),
        })
    }

    /// Keeps a copy of the frames appended to the old file meanwhile.
    pub(super) fn appended(&mut self, frames: &[u8]) {
        self.appended.extend_from_slice(frames);
        self.appended_ends.push(self.appended.len());
    }

    /// Whether the writer should finish now: the copy is done, or what it
    /// keeps for the copy has grown too large to keep waiting.
    pub(super) fn ready(&self) -> bool {
        self.copy.is_finished() || self.appended.len() > APPENDED_MAX
    }

    /// Waits for the copy, adds what was appended meanwhile and syncs. On
    /// an error the new file is removed: the old one is whole, only the
    /// space is not freed yet.
    pub(super) fn complete(self) -> io::Result<Copied> {
        let copied = self
            .copy
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compaction thread panicked")))
            .and_then(|mut copied| {
                let mut batches = Vec::new();
                let mut from = 0;
                for &to in &self.appended_ends {
                    let at = copied.len + batches.len() as u64;
                    batch_of(&self.appended[from..to], at, &mut batches)?;
                    from = to;
                }
                copied.file.write_all(&batches)?;
                copied.file.sync_data()?;
                copied.len += batches.len() as u64;
                Ok(copied)
            });
        if copied.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        copied
    }

    /// Gives the compaction up (the old file stays as it is).
    pub(super) fn abandon(self) {
        let _ = self.copy.join();
        let _ = fs::remove_file(&self.tmp);
    }

    /// Stops as a crash would once the copy is done: the new file stays
    /// where it was written, never renamed in.
    #[cfg(test)]
    pub(super) fn crash(self) {
        let _ = self.copy.join();
    }
}

/// The copying thread: the records after `upto` among those in
/// `[mark.1, synced_end)` of `from` (laid out as `format` says), written
/// to `to` as one batch behind a (format 3) header whose base is `upto`,
/// and synced.
fn copy_kept(
    from: &Path,
    to: &Path,
    format: Format,
    (mark_seq, mark_offset): (u64, u64),
    synced_end: u64,
    upto: u64,
) -> io::Result<Copied> {
    let mut file = File::open(from)?;
    file.seek(SeekFrom::Start(mark_offset))?;
    let mut bytes = Vec::new();
    file.take(synced_end - mark_offset)
        .read_to_end(&mut bytes)?;
    let scan = match format {
        Format::Frames => frame::scan(&bytes),
        Format::Batches => frame::scan_batches(&bytes),
    };
    // Everything up to `synced_end` was synced whole: anything else means
    // the file is not what the writer wrote, and nothing may be dropped.
    if scan.tail != frame::Tail::Clean || bytes.len() as u64 != synced_end - mark_offset {
        return Err(io::Error::other(format!(
            "journal bytes {mark_offset}..{synced_end} do not read back as whole frames"
        )));
    }
    let skip = usize::try_from(upto - mark_seq).map_err(io::Error::other)?;
    // The kept frames as they are, without the batch headers between them.
    let mut kept = Vec::new();
    for &(offset, payload) in scan.payloads.iter().skip(skip) {
        kept.extend_from_slice(&bytes[offset..offset + frame::HEADER_BYTES + payload.len()]);
    }
    let mut contents = file_header(upto).to_vec();
    batch_of(&kept, contents.len() as u64, &mut contents)?;
    // Readable too: once renamed in, it is the journal `read_from` reads.
    let mut out = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)?;
    writeback::write(&mut out, &[&contents], Pacing::Background)?;
    // Fault-injection tests crash the master mid-copy, around the rename
    // and before the directory sync (file.rs), and check what it recovers.
    fail::fail_point!("journal-compaction-copied", |_| std::process::abort());
    out.sync_all()?;
    Ok(Copied {
        file: out,
        len: contents.len() as u64,
        upto,
    })
}
