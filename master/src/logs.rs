//! Task logs on the master's side: reading one attempt's stdout or stderr
//! from the store, and deleting a pipeline's logs with it.
//!
//! Workers write the logs (`worker/src/logs.rs`), capped, to
//! `<pipeline>/<group>/<unit>/logs/attempt-<N>.<lease>-<incarnation>.<stream>`
//! in the store (names in [`taskmaster_proto::log_names`]); the master
//! only reads and deletes them, so no journal record is involved. The
//! sweep of dead attempts never looks in a `logs` directory, so the logs of
//! failed and abandoned attempts stay; [`delete_pipeline_logs`] removes
//! them when the pipeline is deleted (`tmctl delete`, or retention).
//!
//! # Reading a unit's log (gRPC `ReadLogs`, the HTTP unit page)
//!
//! ```ignore
//! let chunk = master.read_log(&LogRequest {
//!     pipeline_id, group, unit,
//!     attempt: 0,                 // the latest attempt with logs, or its number (TM_ATTEMPT)
//!     stream: LogStream::Stderr,
//!     offset: 0,                  // where to read from; then chunk.next_offset
//!     max_bytes: 0,               // 0: LOG_READ_BYTES_MAX
//! }).await?;
//! ```
//!
//! `chunk.data` holds the bytes from `offset`; the log had `chunk.size`
//! bytes when read. To follow a running attempt, read again from
//! `next_offset` until `chunk.finished` is set *and* `next_offset ==
//! size`: `finished` is decided before the bytes are read, so once it is
//! set, what the read returned is all there will be. `chunk.attempts` lists
//! the unit's attempts with logs (for links to each). A `LogError::NotFound`
//! names what was not found (pipeline, group, unit, attempt).
//!
//! The reading that consults the core is `Master::read_log` (the runtime's
//! `task_logs`); this module holds what it reads from the store, with no
//! other part of the master. Nothing holds the state lock across I/O: the
//! core is consulted through the runtime's short reads, the local store is read on blocking
//! threads and a remote one through `object_store`'s async calls.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use taskmaster_proto::log_names::{LOGS_DIR, LogAttempt, LogKind, parse_log_file_name};
use taskmaster_proto::v1::{GroupStatus, PipelineState};

use crate::error::MasterError;
use crate::sweep::RemoteStore;

/// Most bytes one read returns (a quarter of the message limit).
pub const LOG_READ_BYTES_MAX: u32 = 4 * 1024 * 1024;
// A reply is the bytes and a few small fields: it must fit a message.
const _: () =
    assert!(LOG_READ_BYTES_MAX as usize <= taskmaster_proto::limits::MESSAGE_BYTES_MAX / 2);
/// Most bytes of an `end` object read (how the attempt ended).
pub(crate) const OUTCOME_BYTES_MAX: u64 = 4 * 1024;

/// Where attempts write: what `Master::data_store` returns.
#[derive(Debug, Clone)]
pub enum DataStore {
    /// The local store's root directory.
    Local(PathBuf),
    /// A remote store (`s3://bucket/prefix`).
    Remote(RemoteStore),
}

/// Which of an attempt's logs to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub(crate) fn kind(self) -> LogKind {
        match self {
            LogStream::Stdout => LogKind::Stdout,
            LogStream::Stderr => LogKind::Stderr,
        }
    }
}

/// A read of one attempt's log; see the module docs.
#[derive(Debug, Clone)]
pub struct LogRequest {
    pub pipeline_id: String,
    pub group: String,
    pub unit: u32,
    /// The attempt's number (`TM_ATTEMPT`); 0 for the latest with logs.
    pub attempt: u32,
    pub stream: LogStream,
    /// Byte offset to read from.
    pub offset: u64,
    /// Bytes to return at most; 0 or more than [`LOG_READ_BYTES_MAX`]
    /// means that.
    pub max_bytes: u32,
}

/// What a [`read_log`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// The log's bytes from the requested offset.
    pub data: Vec<u8>,
    /// Where the next read starts: the offset plus `data.len()`.
    pub next_offset: u64,
    /// The log's size when it was read.
    pub size: u64,
    /// The attempt is over (its logs are complete, or it can no longer
    /// run: lease expired, failed, released, pipeline finished). Decided
    /// before the read, so the log does not grow past `size` once set.
    pub finished: bool,
    /// The attempt read.
    pub attempt: LogAttempt,
    /// The unit's attempts with logs, by number (ascending, distinct).
    pub attempts: Vec<u32>,
    /// How the attempt ended, as its worker wrote it ("succeeded",
    /// "failed: ..."); empty while it runs, or when its worker died.
    pub outcome: String,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A pipeline, group, unit or attempt that has no logs; says which.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("cannot read the log: {0}")]
    Store(String),
    #[error(transparent)]
    Master(#[from] MasterError),
}

impl LogError {
    /// The gRPC status of an error other than [`LogError::Master`] (whose
    /// mapping is the service's).
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            LogError::NotFound(_) => tonic::Status::not_found(message),
            LogError::Invalid(_) => tonic::Status::invalid_argument(message),
            LogError::Store(_) | LogError::Master(_) => tonic::Status::unavailable(message),
        }
    }
}

/// The objects of a unit's logs, by attempt.
pub(crate) type UnitLogs = BTreeMap<LogAttempt, BTreeSet<LogKind>>;

/// NOT_FOUND for a unit without logs: past the group's units, or not
/// started yet.
pub(crate) fn no_logs(request: &LogRequest, group: &GroupStatus) -> LogError {
    let units = group
        .counts
        .map_or(0, |c| c.pending + c.leased + c.committed + c.failed);
    LogError::NotFound(if u64::from(request.unit) >= units {
        format!(
            "group {} of pipeline {} has no unit {} (it has {units}) with logs",
            request.group, request.pipeline_id, request.unit
        )
    } else {
        // `tmctl logs --follow` waits on these words: keep them.
        format!(
            "unit {} of group {} has no logs: no attempt of it has started yet \
             (or its worker keeps none: --log-bytes-max 0)",
            request.unit, request.group
        )
    })
}

/// The attempt `request` names (0: the latest) among the unit's `logs`;
/// of two with one number (a unit cleared and run again), the later.
pub(crate) fn pick_attempt(
    logs: &UnitLogs,
    request: &LogRequest,
    attempts: &[u32],
) -> Result<LogAttempt, LogError> {
    logs.keys()
        .filter(|a| request.attempt == 0 || a.attempt == request.attempt)
        // Lease ids only grow: the highest is the latest.
        .max_by_key(|a| (a.lease_id, a.incarnation))
        .copied()
        .ok_or_else(|| {
            let listed: Vec<String> = attempts.iter().map(u32::to_string).collect();
            LogError::NotFound(format!(
                "unit {} of group {} has no logs of attempt {}; attempts with logs: {}",
                request.unit,
                request.group,
                request.attempt,
                listed.join(", ")
            ))
        })
}

pub(crate) fn is_finished(state: PipelineState) -> bool {
    matches!(
        state,
        PipelineState::Succeeded | PipelineState::Failed | PipelineState::Cancelled
    )
}

/// A unit's place in the store. Its names come from the core's state (the
/// pipeline and group were found there), which admits no `/` or `..` in
/// them.
pub(crate) struct UnitDir<'a> {
    pub(crate) pipeline_id: &'a str,
    pub(crate) group: &'a str,
    pub(crate) unit: u32,
}

impl UnitDir<'_> {
    /// `<pipeline>/<group>/<unit>/logs`, relative to the store's root.
    pub(crate) fn logs_dir(&self) -> String {
        format!(
            "{}/{}/{}/{LOGS_DIR}",
            self.pipeline_id, self.group, self.unit
        )
    }

    pub(crate) fn file(&self, attempt: &LogAttempt, kind: LogKind) -> String {
        format!("{}/{}", self.logs_dir(), attempt.file_name(kind))
    }
}

/// The key of `relative` in a remote store.
fn object_path(remote: &RemoteStore, relative: &str) -> Result<ObjectPath, LogError> {
    let prefix = remote.prefix().as_ref();
    let key = if prefix.is_empty() {
        relative.to_string()
    } else {
        format!("{prefix}/{relative}")
    };
    ObjectPath::parse(&key).map_err(|e| LogError::Invalid(format!("log key {key:?}: {e}")))
}

/// Every log object of a unit, by attempt.
pub(crate) async fn list_unit_logs(
    store: &DataStore,
    unit: &UnitDir<'_>,
) -> Result<UnitLogs, LogError> {
    let relative = unit.logs_dir();
    let names = match store {
        DataStore::Local(root) => {
            let dir = root.join(&relative);
            on_blocking_thread(move || list_dir(&dir)).await?
        }
        DataStore::Remote(remote) => {
            let dir = object_path(remote, &relative)?;
            let listed = remote.object_store().list_with_delimiter(Some(&dir)).await;
            let listed = listed.map_err(|e| LogError::Store(e.to_string()))?;
            listed
                .objects
                .iter()
                .filter_map(|meta| meta.location.filename().map(str::to_string))
                .collect()
        }
    };
    let mut logs = UnitLogs::new();
    for (attempt, kind) in names.iter().filter_map(|n| parse_log_file_name(n)) {
        logs.entry(attempt).or_default().insert(kind);
    }
    Ok(logs)
}

/// Names of the files in `dir`; none when it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>, LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::Store(format!("{}: {e}", dir.display()))),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Up to `max_bytes` of the object `relative` from `offset`, and its size.
pub(crate) async fn read_range(
    store: &DataStore,
    relative: &str,
    offset: u64,
    max_bytes: u64,
) -> Result<(Vec<u8>, u64), LogError> {
    match store {
        DataStore::Local(root) => {
            let path = root.join(relative);
            on_blocking_thread(move || read_file_range(&path, offset, max_bytes)).await
        }
        DataStore::Remote(remote) => {
            let path = object_path(remote, relative)?;
            let store = remote.object_store();
            let store_error = |e: object_store::Error| LogError::Store(format!("{path}: {e}"));
            let size = store.head(&path).await.map_err(store_error)?.size;
            check_offset(offset, size)?;
            let end = size.min(offset.saturating_add(max_bytes));
            if end == offset {
                return Ok((Vec::new(), size));
            }
            let bytes = store
                .get_range(&path, offset..end)
                .await
                .map_err(store_error)?;
            Ok((bytes.to_vec(), size))
        }
    }
}

fn read_file_range(path: &Path, offset: u64, max_bytes: u64) -> Result<(Vec<u8>, u64), LogError> {
    let error = |e: std::io::Error| LogError::Store(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(error)?;
    let size = file.metadata().map_err(error)?.len();
    check_offset(offset, size)?;
    file.seek(SeekFrom::Start(offset)).map_err(error)?;
    let mut data = Vec::new();
    file.take(max_bytes.min(size - offset))
        .read_to_end(&mut data)
        .map_err(error)?;
    Ok((data, size))
}

fn check_offset(offset: u64, size: u64) -> Result<(), LogError> {
    if offset > size {
        return Err(LogError::Invalid(format!(
            "offset {offset} is past the end of the log ({size} bytes)"
        )));
    }
    Ok(())
}

async fn on_blocking_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LogError::Store(format!("the read stopped: {e}")))?
}

/// Deletes the logs of every unit of the pipelines `ids` (called when they
/// are deleted, before the master forgets them); returns how many log
/// files (objects) went. Failures are logged, not returned: the pipelines
/// are deleted anyway, as their dead attempts are by the sweep.
///
/// A worker that kept running an attempt of a deleted pipeline past its
/// lease (a zombie) may write its logs again afterwards, as it may write
/// its outputs; nothing deletes those.
pub async fn delete_pipeline_logs(store: &DataStore, pipelines: &[(String, Vec<String>)]) -> u64 {
    let mut deleted = 0;
    for (id, groups) in pipelines {
        for group in groups {
            let done = match store {
                DataStore::Local(root) => {
                    let dir = root.join(id).join(group);
                    on_blocking_thread(move || Ok(delete_local_group_logs(&dir))).await
                }
                DataStore::Remote(remote) => delete_remote_group_logs(remote, id, group).await,
            };
            match done {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!(pipeline = %id, %group, "cannot delete task logs: {e}"),
            }
        }
    }
    deleted
}

/// Removes `<group dir>/<unit>/logs` of every unit; returns the files
/// removed.
fn delete_local_group_logs(group_dir: &Path) -> u64 {
    let Ok(units) = std::fs::read_dir(group_dir) else {
        return 0;
    };
    let mut deleted = 0;
    for unit in units.filter_map(Result::ok) {
        let is_unit = unit
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !is_unit {
            continue;
        }
        let logs = unit.path().join(LOGS_DIR);
        let files = list_dir(&logs).map_or(0, |names| names.len() as u64);
        match std::fs::remove_dir_all(&logs) {
            Ok(()) => deleted += files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %logs.display(), "cannot delete task logs: {e}"),
        }
    }
    deleted
}

/// Deletes the objects `<group>/<unit>/logs/<log name>` of a remote store.
async fn delete_remote_group_logs(
    remote: &RemoteStore,
    pipeline_id: &str,
    group: &str,
) -> Result<u64, LogError> {
    let group_dir = object_path(remote, &format!("{pipeline_id}/{group}"))?;
    let store = remote.object_store();
    let listed: Vec<ObjectPath> = store
        .list(Some(&group_dir))
        .try_filter_map(|meta| {
            let is_log = is_unit_log(&meta.location, &group_dir);
            async move { Ok(is_log.then_some(meta.location)) }
        })
        .try_collect()
        .await
        .map_err(|e| LogError::Store(e.to_string()))?;
    let count = listed.len() as u64;
    let failed = store
        .delete_stream(futures_util::stream::iter(listed.into_iter().map(Ok)).boxed())
        .filter_map(|result| async move { result.err() })
        .collect::<Vec<_>>()
        .await;
    match failed.first() {
        None => Ok(count),
        Some(e) => Err(LogError::Store(format!(
            "{} of {count} log objects: {e}",
            failed.len()
        ))),
    }
}

/// True for `<group_dir>/<unit>/logs/<log name>`.
fn is_unit_log(location: &ObjectPath, group_dir: &ObjectPath) -> bool {
    let Some(parts) = location.prefix_match(group_dir) else {
        return false;
    };
    let parts: Vec<_> = parts.collect();
    matches!(parts.as_slice(), [unit, logs, name]
        if unit.as_ref().parse::<u32>().is_ok()
            && logs.as_ref() == LOGS_DIR
            && parse_log_file_name(name.as_ref()).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_attempt_is_the_highest_lease_and_a_missing_one_is_named() {
        let attempt = |attempt, lease_id| LogAttempt {
            attempt,
            lease_id,
            incarnation: 7,
        };
        // Attempt 1 twice: the unit was cleared and ran again.
        let logs: UnitLogs = [attempt(1, 5), attempt(2, 9), attempt(1, 12)]
            .into_iter()
            .map(|a| (a, BTreeSet::from([LogKind::Stdout])))
            .collect();
        let request = |number| LogRequest {
            pipeline_id: "p-1".into(),
            group: "g".into(),
            unit: 0,
            attempt: number,
            stream: LogStream::Stdout,
            offset: 0,
            max_bytes: 0,
        };
        let pick = |number| pick_attempt(&logs, &request(number), &[1, 2]);
        assert_eq!(pick(0).unwrap(), attempt(1, 12));
        assert_eq!(pick(1).unwrap(), attempt(1, 12));
        assert_eq!(pick(2).unwrap(), attempt(2, 9));
        let err = pick(3).unwrap_err().to_string();
        assert_eq!(
            err,
            "unit 0 of group g has no logs of attempt 3; attempts with logs: 1, 2"
        );
    }

    #[test]
    fn file_ranges_are_bounded_and_offsets_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(
            read_file_range(&path, 3, 4).unwrap(),
            (b"3456".to_vec(), 10)
        );
        assert_eq!(
            read_file_range(&path, 8, 100).unwrap(),
            (b"89".to_vec(), 10)
        );
        assert_eq!(read_file_range(&path, 10, 100).unwrap(), (Vec::new(), 10));
        let err = read_file_range(&path, 11, 1).unwrap_err().to_string();
        assert!(
            err.contains("offset 11 is past the end of the log (10 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn only_unit_logs_are_deleted_from_a_remote_store() {
        let group = ObjectPath::from("pfx/p-1/g");
        let is_log = |key: &str| is_unit_log(&ObjectPath::from(key), &group);
        assert!(is_log(
            "pfx/p-1/g/3/logs/attempt-1.17-00000000000000ab.stdout"
        ));
        assert!(!is_log("pfx/p-1/g/3/17-00000000000000ab/part-00000"));
        assert!(!is_log("pfx/p-1/g/3/logs/notes.txt"));
        assert!(!is_log("pfx/p-1/g/x/logs/attempt-1.17.stdout"));
    }

    #[test]
    fn local_group_logs_go_and_outputs_stay() {
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("p-1/g");
        for file in [
            "0/logs/attempt-1.7.stdout",
            "0/logs/attempt-1.7.stderr",
            "0/7/part-00000",
            "1/logs/attempt-1.8.end",
        ] {
            let path = group.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(delete_local_group_logs(&group), 3);
        assert!(!group.join("0/logs").exists());
        assert!(!group.join("1/logs").exists());
        assert!(group.join("0/7/part-00000").exists());
    }
}
