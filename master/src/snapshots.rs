//! Snapshot files: `<data_dir>/snapshots/snap-NNNNNN.bin`, each one framed
//! and checksummed like a journal record, written to a temporary name,
//! synced, renamed and the directory synced, so a snapshot is either whole
//! or absent. The newest ones are kept; older ones are deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;
use taskmaster_proto::journal::Snapshot;
use taskmaster_proto::v1::SnapshotInfo;

use crate::journal::file::sync_dir;
use crate::journal::frame;

/// Snapshots kept on disk; rollback can reach any of them.
pub const SNAPSHOTS_KEPT: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {context}: {source}")]
    Io {
        path: String,
        context: &'static str,
        source: io::Error,
    },
    #[error("snapshot {path} is damaged (checksum or format): {what}")]
    Damaged { path: String, what: String },
    #[error("no snapshot {0:?} (tmctl snapshots lists them)")]
    NotFound(String),
}

pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn open(data_dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        let dir = data_dir.join("snapshots");
        fs::create_dir_all(&dir).map_err(io_error(&dir, "create directory"))?;
        Ok(SnapshotStore { dir })
    }

    /// Writes `snap` durably under the next free id; returns its info.
    pub fn write(&self, mut snap: Snapshot) -> Result<SnapshotInfo, SnapshotError> {
        let number = self.numbers()?.last().map_or(1, |n| n + 1);
        snap.snapshot_id = format!("snap-{number:06}");
        let path = self.path(&snap.snapshot_id);
        let mut bytes = Vec::new();
        frame::encode(&snap.encode_to_vec(), &mut bytes);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &bytes).map_err(io_error(&tmp, "write"))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&tmp, "sync"))?;
        fs::rename(&tmp, &path).map_err(io_error(&path, "rename"))?;
        sync_dir(&path).map_err(io_error(&path, "sync directory"))?;
        self.prune()?;
        Ok(info(&snap, bytes.len() as u64))
    }

    /// Reads one snapshot by id.
    pub fn load(&self, snapshot_id: &str) -> Result<Snapshot, SnapshotError> {
        let valid_id = snapshot_id
            .strip_prefix("snap-")
            .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()));
        let path = self.path(snapshot_id);
        if !valid_id || !path.exists() {
            return Err(SnapshotError::NotFound(snapshot_id.to_string()));
        }
        read(&path)
    }

    /// The newest snapshot that reads back whole, skipping damaged ones
    /// (each is logged): recovery starts from it.
    pub fn latest(&self) -> Result<Option<Snapshot>, SnapshotError> {
        for number in self.numbers()?.into_iter().rev() {
            match read(&self.path(&format!("snap-{number:06}"))) {
                Ok(snap) => return Ok(Some(snap)),
                Err(e) => tracing::error!(error = %e, "skipping a damaged snapshot"),
            }
        }
        Ok(None)
    }

    /// Every readable snapshot, oldest first, and their total size.
    pub fn list(&self) -> Result<(Vec<SnapshotInfo>, u64), SnapshotError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for number in self.numbers()? {
            let path = self.path(&format!("snap-{number:06}"));
            let size = fs::metadata(&path).map_err(io_error(&path, "stat"))?.len();
            bytes += size;
            if let Ok(snap) = read(&path) {
                out.push(info(&snap, size));
            }
        }
        Ok((out, bytes))
    }

    fn prune(&self) -> Result<(), SnapshotError> {
        let numbers = self.numbers()?;
        for number in &numbers[..numbers.len().saturating_sub(SNAPSHOTS_KEPT)] {
            let path = self.path(&format!("snap-{number:06}"));
            fs::remove_file(&path).map_err(io_error(&path, "remove old snapshot"))?;
        }
        Ok(())
    }

    /// Numbers of the snapshot files present, ascending.
    fn numbers(&self) -> Result<Vec<u64>, SnapshotError> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir, "list"))? {
            let name = entry.map_err(io_error(&self.dir, "list"))?.file_name();
            let name = name.to_string_lossy();
            let number = name
                .strip_prefix("snap-")
                .and_then(|n| n.strip_suffix(".bin"));
            if let Some(n) = number.and_then(|n| n.parse().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn path(&self, snapshot_id: &str) -> PathBuf {
        self.dir.join(format!("{snapshot_id}.bin"))
    }
}

fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let bytes = fs::read(path).map_err(io_error(path, "read"))?;
    let damaged = |what: String| SnapshotError::Damaged {
        path: path.display().to_string(),
        what,
    };
    let scan = frame::scan(&bytes);
    match scan.payloads.as_slice() {
        [(0, payload)] if scan.tail == frame::Tail::Clean => {
            Snapshot::decode(*payload).map_err(|e| damaged(e.to_string()))
        }
        _ => Err(damaged(format!("{:?}", scan.tail))),
    }
}

fn info(snap: &Snapshot, size_bytes: u64) -> SnapshotInfo {
    SnapshotInfo {
        snapshot_id: snap.snapshot_id.clone(),
        note: snap.note.clone(),
        taken_unix_ms: snap.taken_unix_ms,
        journal_position: snap.journal_position,
        size_bytes,
    }
}

fn io_error(path: &Path, context: &'static str) -> impl FnOnce(io::Error) -> SnapshotError + use<> {
    let path = path.display().to_string();
    move |source| SnapshotError::Io {
        path,
        context,
        source,
    }
}
