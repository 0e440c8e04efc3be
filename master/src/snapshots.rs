//! Snapshot files: `<data_dir>/snapshots/snap-NNNNNN.bin`, each one framed
//! and checksummed like a journal record, written to a temporary name,
//! synced, renamed and the directory synced, so a snapshot is either whole
//! or absent.
//!
//! Retention: automatic snapshots (taken to compact the journal) are named
//! `snap-NNNNNN.auto.bin` and only the newest of them is kept, so in a long
//! run the disk holds one copy of the state plus the journal since it. The
//! ones an operator takes (and the states written by rollbacks) are kept up
//! to [`SNAPSHOTS_KEPT`]. The newest snapshot of any kind is never deleted:
//! recovery starts from it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;
use taskmaster_proto::journal::Snapshot;
use taskmaster_proto::v1::SnapshotInfo;

use crate::journal::file::sync_dir;
use crate::journal::frame;
use crate::writeback::{self, Pacing};

/// Operator snapshots kept on disk; rollback can reach any of them.
pub const SNAPSHOTS_KEPT: usize = 10;

/// See [`SnapshotStore::disk_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub count: u64,
    pub total_bytes: u64,
    pub newest_bytes: u64,
}

/// Whether a snapshot was taken by the master itself, to compact the
/// journal, or asked for (an operator's snapshot, a rollback's result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Automatic,
    Kept,
}

/// One snapshot file present on disk.
#[derive(Debug, Clone, Copy)]
struct Entry {
    number: u64,
    kind: SnapshotKind,
}

impl Entry {
    fn id(self) -> String {
        format!("snap-{:06}", self.number)
    }

    fn file_name(self) -> String {
        match self.kind {
            SnapshotKind::Automatic => format!("{}.auto.bin", self.id()),
            SnapshotKind::Kept => format!("{}.bin", self.id()),
        }
    }
}

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
    #[error("the state encodes to {bytes} bytes, more than a snapshot file holds (4 GiB)")]
    TooLarge { bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn open(data_dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        let dir = data_dir.join("snapshots");
        fs::create_dir_all(&dir).map_err(io_error(&dir, "create directory"))?;
        remove_unfinished(&dir)?;
        Ok(SnapshotStore { dir })
    }

    /// Writes `snap` durably under the next free id; returns its info.
    /// (The master writes through `write_with` and its own encoder.)
    #[cfg(test)]
    pub fn write(&self, snap: Snapshot, kind: SnapshotKind) -> Result<SnapshotInfo, SnapshotError> {
        self.write_with(snap, kind, Pacing::Background, Message::encode_to_vec)
    }

    /// Writes a snapshot whose bytes `encode` makes from `head` once its
    /// id is set (the master encodes the units itself, see
    /// `SnapshotSource::encode_with_head`), written as `pacing` says;
    /// returns its info.
    pub fn write_with(
        &self,
        mut snap: Snapshot,
        kind: SnapshotKind,
        pacing: Pacing,
        encode: impl FnOnce(&Snapshot) -> Vec<u8>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let number = self.entries()?.last().map_or(1, |e| e.number + 1);
        let entry = Entry { number, kind };
        snap.snapshot_id = entry.id();
        let path = self.dir.join(entry.file_name());
        let payload = encode(&snap);
        // One frame laid out like a journal record's, without the journal's
        // 64 MiB record bound: a state of ten million units is a few
        // hundred MB.
        let header = frame::header(&payload).ok_or(SnapshotError::TooLarge {
            bytes: payload.len() as u64,
        })?;
        let tmp = self.dir.join(format!("{}.tmp", entry.id()));
        let written = fs::File::create(&tmp).and_then(|mut file| {
            writeback::write(&mut file, &[&header, &payload], pacing)?;
            file.sync_all()
        });
        written.map_err(io_error(&tmp, "write"))?;
        fs::rename(&tmp, &path).map_err(io_error(&path, "rename"))?;
        sync_dir(&path).map_err(io_error(&path, "sync directory"))?;
        self.prune()?;
        Ok(info(&snap, (header.len() + payload.len()) as u64))
    }

    /// Reads one snapshot by id.
    pub fn load(&self, snapshot_id: &str) -> Result<Snapshot, SnapshotError> {
        let number = snapshot_id
            .strip_prefix("snap-")
            .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        let entry = self
            .entries()?
            .into_iter()
            .find(|e| Some(e.number) == number)
            .ok_or_else(|| SnapshotError::NotFound(snapshot_id.to_string()))?;
        read(&self.dir.join(entry.file_name()))
    }

    /// The newest snapshot that reads back whole, skipping damaged ones
    /// (each is logged): recovery starts from it.
    pub fn latest(&self) -> Result<Option<Snapshot>, SnapshotError> {
        for entry in self.entries()?.into_iter().rev() {
            match read(&self.dir.join(entry.file_name())) {
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
        for entry in self.entries()? {
            let path = self.dir.join(entry.file_name());
            let size = fs::metadata(&path).map_err(io_error(&path, "stat"))?.len();
            bytes += size;
            if let Ok(label) = read_label(&path) {
                out.push(SnapshotInfo {
                    snapshot_id: label.snapshot_id,
                    note: label.note,
                    taken_unix_ms: label.taken_unix_ms,
                    journal_position: label.journal_position,
                    size_bytes: size,
                });
            }
        }
        Ok((out, bytes))
    }

    /// How many snapshot files there are, their total size and the size of
    /// the newest (about the size of the live state when it was taken),
    /// from file sizes alone: cheap enough for every status call.
    pub fn disk_usage(&self) -> Result<DiskUsage, SnapshotError> {
        let mut usage = DiskUsage::default();
        for entry in self.entries()? {
            let path = self.dir.join(entry.file_name());
            let size = fs::metadata(&path).map_err(io_error(&path, "stat"))?.len();
            usage.count += 1;
            usage.total_bytes += size;
            usage.newest_bytes = size;
        }
        Ok(usage)
    }

    /// Deletes every automatic snapshot but the newest, and operator
    /// snapshots beyond the newest [`SNAPSHOTS_KEPT`]; never the newest
    /// snapshot of all.
    fn prune(&self) -> Result<(), SnapshotError> {
        let (mut autos, mut kept) = (0, 0);
        for (age, entry) in self.entries()?.into_iter().rev().enumerate() {
            let (seen, limit) = match entry.kind {
                SnapshotKind::Automatic => (&mut autos, 1),
                SnapshotKind::Kept => (&mut kept, SNAPSHOTS_KEPT),
            };
            *seen += 1;
            if age > 0 && *seen > limit {
                let path = self.dir.join(entry.file_name());
                // Held open while its name goes, then freed in steps: a
                // snapshot freed at once stalls the journal's next sync
                // (see writeback::release).
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path, "open old snapshot"))?;
                fs::remove_file(&path).map_err(io_error(&path, "remove old snapshot"))?;
                writeback::release(file);
            }
        }
        Ok(())
    }

    /// The snapshot files present, oldest first.
    fn entries(&self) -> Result<Vec<Entry>, SnapshotError> {
        let mut entries = Vec::new();
        for dir_entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir, "list"))? {
            let name = dir_entry.map_err(io_error(&self.dir, "list"))?.file_name();
            if let Some(entry) = parse_file_name(&name.to_string_lossy()) {
                entries.push(entry);
            }
        }
        entries.sort_unstable_by_key(|e| e.number);
        Ok(entries)
    }
}

/// `snap-NNNNNN.bin` or `snap-NNNNNN.auto.bin`; anything else is not ours.
/// Deletes what snapshot writes that never finished left behind (a crash
/// between creating `snap-*.tmp` and renaming it): nothing refers to them.
fn remove_unfinished(dir: &Path) -> Result<(), SnapshotError> {
    let entries = fs::read_dir(dir).map_err(io_error(dir, "list"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap-") && name.ends_with(".tmp") {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error(&path, "remove an unfinished snapshot"))?;
            tracing::info!(file = %path.display(), "removed an unfinished snapshot write");
        }
    }
    Ok(())
}

fn parse_file_name(name: &str) -> Option<Entry> {
    let rest = name.strip_prefix("snap-")?;
    let (digits, kind) = if let Some(d) = rest.strip_suffix(".auto.bin") {
        (d, SnapshotKind::Automatic)
    } else {
        (rest.strip_suffix(".bin")?, SnapshotKind::Kept)
    };
    let number = digits.parse().ok()?;
    Some(Entry { number, kind })
}

/// The fields of a [`Snapshot`] a listing shows: decoding only these
/// skips the pipelines (prost passes over unknown fields without building
/// them), which at a million units was nearly all of a listing's time.
#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotLabel {
    #[prost(string, tag = "1")]
    snapshot_id: String,
    #[prost(string, tag = "2")]
    note: String,
    #[prost(uint64, tag = "3")]
    taken_unix_ms: u64,
    #[prost(uint64, tag = "4")]
    journal_position: u64,
}

/// A snapshot file's label, once its length and checksum verify.
fn read_label(path: &Path) -> Result<SnapshotLabel, SnapshotError> {
    let bytes = fs::read(path).map_err(io_error(path, "read"))?;
    let payload = verified_payload(path, &bytes)?;
    SnapshotLabel::decode(payload).map_err(|e| SnapshotError::Damaged {
        path: path.display().to_string(),
        what: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let bytes = fs::read(path).map_err(io_error(path, "read"))?;
    let payload = verified_payload(path, &bytes)?;
    Snapshot::decode(payload).map_err(|e| SnapshotError::Damaged {
        path: path.display().to_string(),
        what: e.to_string(),
    })
}

/// A snapshot file's payload, if its header's length and checksum match.
fn verified_payload<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8], SnapshotError> {
    let damaged = |what: &str| SnapshotError::Damaged {
        path: path.display().to_string(),
        what: what.to_string(),
    };
    let (header, payload) = bytes
        .split_at_checked(frame::HEADER_BYTES)
        .ok_or_else(|| damaged("shorter than its header"))?;
    let (len, crc) = frame::read_header(header.try_into().expect("split at the header's size"));
    if len != payload.len() {
        return Err(damaged(
            "its length does not match its header (a torn write?)",
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(damaged("checksum mismatch"));
    }
    Ok(payload)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(store: &SnapshotStore) -> Vec<String> {
        store
            .list()
            .unwrap()
            .0
            .into_iter()
            .map(|i| i.snapshot_id)
            .collect()
    }

    #[test]
    fn a_listing_says_what_the_write_said_without_reading_the_pipelines() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let snap = Snapshot {
            note: "before the backfill".into(),
            journal_position: 42,
            server_token: "t".into(),
            pipelines: vec![Default::default(); 3],
            ..Snapshot::default()
        };
        let written = store.write(snap, SnapshotKind::Kept).unwrap();
        let (listed, bytes) = store.list().unwrap();
        assert_eq!(listed, std::slice::from_ref(&written));
        assert_eq!(bytes, written.size_bytes);
        // A damaged file is left out of the listing, as before.
        let path = dir
            .path()
            .join("snapshots")
            .join(format!("{}.bin", written.snapshot_id));
        let mut damaged = fs::read(&path).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        fs::write(&path, damaged).unwrap();
        assert!(store.list().unwrap().0.is_empty());
    }

    #[test]
    fn an_unfinished_snapshot_write_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let tmp = dir.path().join("snapshots/snap-000007.tmp");
        fs::write(&tmp, b"half a snapshot").unwrap();
        let other = dir.path().join("snapshots/notes.tmp");
        fs::write(&other, b"not ours").unwrap();
        drop(store);
        SnapshotStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert!(other.exists(), "only the store's own files are removed");
    }

    #[test]
    fn only_the_newest_automatic_snapshot_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        store
            .write(Snapshot::default(), SnapshotKind::Kept)
            .unwrap();
        for _ in 0..3 {
            store
                .write(Snapshot::default(), SnapshotKind::Automatic)
                .unwrap();
        }
        assert_eq!(ids(&store), ["snap-000001", "snap-000004"]);
        // A newer operator snapshot does not remove the automatic one
        // before it: that is still the newest automatic snapshot.
        store
            .write(Snapshot::default(), SnapshotKind::Kept)
            .unwrap();
        assert_eq!(ids(&store), ["snap-000001", "snap-000004", "snap-000005"]);
        assert!(store.load("snap-000004").is_ok());
        assert!(matches!(
            store.load("snap-000002"),
            Err(SnapshotError::NotFound(_))
        ));
        let usage = store.disk_usage().unwrap();
        assert_eq!(usage.count, 3);
        assert!(usage.newest_bytes > 0 && usage.total_bytes > usage.newest_bytes);
    }

    #[test]
    fn a_snapshot_larger_than_a_journal_record_writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let big = Snapshot {
            note: "n".repeat(frame::PAYLOAD_BYTES_MAX + 1),
            ..Snapshot::default()
        };
        let info = store.write(big.clone(), SnapshotKind::Automatic).unwrap();
        let back = store.load(&info.snapshot_id).unwrap();
        assert_eq!(back.note.len(), big.note.len());
    }

    #[test]
    fn damaged_or_torn_snapshots_are_refused_and_recovery_skips_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let good = Snapshot {
            server_token: "t".into(),
            ..Snapshot::default()
        };
        store.write(good.clone(), SnapshotKind::Kept).unwrap();
        let newer = store.write(good, SnapshotKind::Kept).unwrap();
        let path = dir.path().join("snapshots/snap-000002.bin");
        let bytes = fs::read(&path).unwrap();
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 0xff;
        for (damage, why) in [
            (flipped, "checksum"),
            (bytes[..bytes.len() - 1].to_vec(), "length"),
        ] {
            fs::write(&path, damage).unwrap();
            let error = store.load(&newer.snapshot_id).unwrap_err();
            assert!(error.to_string().contains(why), "{error}");
            let latest = store.latest().unwrap().unwrap();
            assert_eq!(
                latest.snapshot_id, "snap-000001",
                "the damaged one is skipped"
            );
        }
    }

    #[test]
    fn operator_snapshots_are_kept_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        for _ in 0..SNAPSHOTS_KEPT + 2 {
            store
                .write(Snapshot::default(), SnapshotKind::Kept)
                .unwrap();
        }
        let kept = ids(&store);
        assert_eq!(kept.len(), SNAPSHOTS_KEPT);
        assert_eq!(kept[0], "snap-000003");
        assert_eq!(store.latest().unwrap().unwrap().snapshot_id, "snap-000012");
    }
}
