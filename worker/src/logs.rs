//! Task logs: each attempt's stdout and stderr, kept in the store beside
//! its outputs, for failed and abandoned attempts too.
//!
//! Where: `<pipeline>/<group>/<unit>/logs/attempt-<N>.<lease>-<incarnation>.<stream>`
//! (see [`taskmaster_proto::log_names`]), under the local store's root or
//! the remote store's prefix. The unit's `logs` directory is not an attempt
//! directory, so the sweep of dead attempts leaves it alone; the master
//! deletes it with its pipeline (`master/src/logs.rs`).
//!
//! **Capped per stream** at [`WorkerConfig::log_bytes_max`](crate::WorkerConfig)
//! bytes (1 MiB by default, `--log-bytes-max`; 0 keeps no logs): the first
//! half and the last half are kept, and between them a line says how many
//! bytes were dropped. Memory per running attempt is bounded the same way.
//!
//! **Readable while the attempt runs** (`tmctl logs --follow`): a task's
//! output is captured in memory and written to the store every
//! [`LOG_FLUSH_MS`] by a flusher task, and once more when the attempt ends,
//! before its commit. A local store gets appends to one file per stream. A
//! remote (S3) store cannot append, so each flush rewrites the stream's
//! object with everything kept so far; that is bounded because only the
//! head (half the cap) is written while the task runs: past it, the rest is
//! known only when the stream ends (it may be dropped), so a reader sees a
//! chatty task's first half-cap live and the tail when the attempt ends.
//! Either way a log only grows by appending, so a reader can follow it by
//! offset. The `end` object, written last, says the logs are complete and
//! how the attempt ended; a worker that dies first leaves none, and the
//! master then goes by the lease (expired: the attempt is over).
//!
//! Failing to write a log never fails the attempt: it is logged (once per
//! attempt) and the task runs on.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use taskmaster_proto::compact::parse_attempt_dir_name;
use taskmaster_proto::log_names::{LOGS_DIR, LogAttempt, LogKind};
use taskmaster_proto::v1::Lease;
use tokio::sync::Notify;

use taskmaster_spec::object_url::split_object_url;

use crate::store::Stores;
use crate::task_log::{Capture, Shared, Stream, TaskLog};

/// Default cap of each stream's log per attempt.
pub const LOG_BYTES_MAX_DEFAULT: u64 = 1024 * 1024;
/// Largest cap accepted: the head is held in memory while the task runs.
pub const LOG_BYTES_MAX_LIMIT: u64 = 1024 * 1024 * 1024;
/// How often a running attempt's new output is written to the store.
pub const LOG_FLUSH_MS: u64 = 1_000;

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// Where an attempt's logs are written.
enum Sink {
    /// A local store: files appended to in this directory.
    Local { dir: PathBuf },
    /// A remote store: objects under this key prefix (ends with `/`).
    Remote {
        store: Arc<dyn ObjectStore>,
        dir: String,
    },
}

/// One attempt's logs while it runs: the capture, the flusher task that
/// writes it to the store every [`LOG_FLUSH_MS`], and the final write
/// ([`AttemptLog::finish`]).
pub struct AttemptLog {
    log: TaskLog,
    writer: Arc<Writer>,
    stop: Arc<Notify>,
    flusher: tokio::task::JoinHandle<()>,
}

/// Writes the capture to the sink; used by one task at a time (the
/// flusher, then `finish`), so appends never interleave.
struct Writer {
    shared: Arc<Shared>,
    sink: Sink,
    attempt: LogAttempt,
    /// Set after the first failed write, so a broken store is logged once
    /// per attempt, not once a second.
    warned: AtomicBool,
}

impl AttemptLog {
    /// Creates the attempt's (empty) logs in the store and starts the
    /// flusher. None when `cap` is 0 or the logs cannot be created (the
    /// reason logged): the attempt then runs without logs.
    pub async fn start(stores: &Stores, lease: &Lease, cap: u64) -> Option<AttemptLog> {
        if cap == 0 {
            return None;
        }
        let writer = match Writer::new(stores, lease, cap) {
            Ok(writer) => writer,
            Err(e) => {
                tracing::warn!("this attempt keeps no logs: {e}");
                return None;
            }
        };
        if let Err(e) = writer.create().await {
            tracing::warn!("this attempt keeps no logs: cannot create them: {e}");
            return None;
        }
        let writer = Arc::new(writer);
        let stop = Arc::new(Notify::new());
        let flusher = tokio::spawn(flush_until_stopped(Arc::clone(&writer), Arc::clone(&stop)));
        Some(AttemptLog {
            log: TaskLog::sharing(Arc::clone(&writer.shared)),
            writer,
            stop,
            flusher,
        })
    }

    /// The handle the task writes to.
    pub fn handle(&self) -> TaskLog {
        self.log.clone()
    }

    /// Stops the flusher, writes the rest of both logs (the head not yet
    /// written, the line saying what was dropped, the tail), then the
    /// `end` object holding `outcome`. Call it once the task's processes
    /// are gone, before the commit.
    pub async fn finish(mut self, outcome: &str) {
        self.stop.notify_one();
        let _ = (&mut self.flusher).await;
        self.writer.flush(Some(format!("{outcome}\n"))).await;
    }
}

impl Drop for AttemptLog {
    /// An attempt dropped unfinished (the worker stopping hard) must not
    /// leave its flusher running for the life of the process.
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

async fn flush_until_stopped(writer: Arc<Writer>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(Duration::from_millis(LOG_FLUSH_MS)) => {}
        }
        writer.flush(None).await;
    }
}

/// One write of a flush: the whole `kind` object, or (local store) bytes
/// appended to its file.
struct Write {
    kind: LogKind,
    bytes: Vec<u8>,
    append: bool,
    /// The stream's head length this write brings the store up to.
    stored: Option<(Stream, usize)>,
}

impl Writer {
    fn new(stores: &Stores, lease: &Lease, cap: u64) -> Result<Writer, String> {
        let (unit_prefix, dir_name) = split_output_prefix(&lease.output_prefix)?;
        let (lease_id, incarnation) = parse_attempt_dir_name(dir_name).ok_or_else(|| {
            format!(
                "the output prefix {:?} names no attempt",
                lease.output_prefix
            )
        })?;
        let sink = if lease.store_url.is_empty() {
            Sink::Local {
                dir: PathBuf::from(&lease.store_root)
                    .join(unit_prefix)
                    .join(LOGS_DIR),
            }
        } else {
            let (bucket, base) = split_object_url(&lease.store_url).map_err(|e| e.to_string())?;
            let base = if base.is_empty() {
                String::new()
            } else {
                format!("{base}/")
            };
            Sink::Remote {
                store: stores.bucket(bucket).map_err(|e| e.to_string())?,
                dir: format!("{base}{unit_prefix}{LOGS_DIR}/"),
            }
        };
        Ok(Writer {
            shared: Arc::new(Shared {
                captures: Mutex::new([Capture::new(cap), Capture::new(cap)]),
                cap,
            }),
            sink,
            attempt: LogAttempt {
                attempt: lease.attempt,
                lease_id,
                incarnation,
            },
            warned: AtomicBool::new(false),
        })
    }

    /// Creates both logs, empty, so that a reader finds the attempt at once.
    async fn create(&self) -> Result<(), String> {
        let writes = STREAMS
            .iter()
            .map(|stream| Write {
                kind: stream.kind(),
                bytes: Vec::new(),
                append: false,
                stored: None,
            })
            .collect();
        self.persist(writes).await.into_iter().collect()
    }

    /// Writes what the store lacks of both streams: the new part of each
    /// head while the task runs; with the attempt's `end` text, also each
    /// stream's ending, then the `end` object.
    async fn flush(&self, end: Option<String>) {
        let mut writes = self.pending(end.is_some());
        if let Some(end) = end {
            writes.push(Write {
                kind: LogKind::End,
                bytes: end.into_bytes(),
                append: false,
                stored: None,
            });
        }
        if writes.is_empty() {
            return;
        }
        let stored: Vec<_> = writes.iter().map(|w| w.stored).collect();
        let results = self.persist(writes).await;
        let mut captures = self.shared.captures.lock();
        for (result, stored) in results.into_iter().zip(stored) {
            match (result, stored) {
                (Ok(()), Some((stream, head_len))) => captures[stream.index()].stored = head_len,
                (Ok(()), None) => {}
                (Err(e), _) => self.warn(&e),
            }
        }
    }

    /// The writes that bring the store up to date with the captures
    /// (`last`: with their endings).
    fn pending(&self, last: bool) -> Vec<Write> {
        let captures = self.shared.captures.lock();
        let mut writes = Vec::new();
        for stream in STREAMS {
            let capture = &captures[stream.index()];
            if capture.head.len() == capture.stored && !last {
                continue;
            }
            let ending = if last {
                capture.ending(stream, self.shared.cap)
            } else {
                Vec::new()
            };
            let append = matches!(self.sink, Sink::Local { .. });
            // A file is appended to with what is new; an object is
            // rewritten with all of it.
            let from = if append { capture.stored } else { 0 };
            let mut bytes = capture.head[from..].to_vec();
            bytes.extend(ending);
            if append && bytes.is_empty() {
                continue;
            }
            writes.push(Write {
                kind: stream.kind(),
                bytes,
                append,
                stored: Some((stream, capture.head.len())),
            });
        }
        writes
    }

    fn warn(&self, error: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot write this attempt's logs (they may be incomplete): {error}");
        }
    }

    /// Does `writes`, in order; the result of each. A local store's take one
    /// trip to the blocking pool in all (a small task's attempt costs two:
    /// creating its logs and finishing them).
    async fn persist(&self, writes: Vec<Write>) -> Vec<Result<(), String>> {
        match &self.sink {
            Sink::Local { dir } => {
                let dir = dir.clone();
                let attempt = self.attempt;
                let count = writes.len();
                let done = tokio::task::spawn_blocking(move || {
                    writes
                        .iter()
                        .map(|w| write_file(&dir, &attempt, w))
                        .collect()
                })
                .await;
                done.unwrap_or_else(|e| vec![Err(format!("the write stopped: {e}")); count])
            }
            Sink::Remote { store, dir } => {
                let mut results = Vec::with_capacity(writes.len());
                for write in writes {
                    let key = format!("{dir}{}", self.attempt.file_name(write.kind));
                    let put = match ObjectPath::parse(&key) {
                        Ok(path) => store
                            .put(&path, PutPayload::from(write.bytes))
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("cannot write {key}: {e}")),
                        Err(e) => Err(format!("log key {key:?}: {e}")),
                    };
                    results.push(put);
                }
                results
            }
        }
    }
}

/// One write to a local store's logs directory (created if need be).
fn write_file(dir: &Path, attempt: &LogAttempt, write: &Write) -> Result<(), String> {
    let path = dir.join(attempt.file_name(write.kind));
    let error = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if write.append {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(error)?;
        return file.write_all(&write.bytes).map_err(error);
    }
    match std::fs::write(&path, &write.bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(error)?;
            std::fs::write(&path, &write.bytes).map_err(error)
        }
        other => other.map_err(error),
    }
}

/// `p/g/3/17-00000000000000ab/` into `("p/g/3/", "17-00000000000000ab")`.
fn split_output_prefix(prefix: &str) -> Result<(&str, &str), String> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    match trimmed.rsplit_once('/') {
        Some((unit, dir)) if !unit.is_empty() => Ok((&prefix[..unit.len() + 1], dir)),
        _ => Err(format!(
            "the output prefix {prefix:?} is not <pipeline>/<group>/<unit>/<attempt>/"
        )),
    }
}

/// How an attempt ended, for its logs' `end` object.
pub fn outcome_text<T>(result: &Result<T, crate::TaskError>) -> String {
    match result {
        Ok(_) => "succeeded".to_string(),
        Err(e) => format!("failed: {}", e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &TaskLog, stream: Stream) -> String {
        String::from_utf8(log.contents(stream)).unwrap()
    }

    #[test]
    fn a_log_under_its_cap_is_kept_whole() {
        let log = TaskLog::in_memory(10);
        log.write(Stream::Stdout, b"0123");
        log.write(Stream::Stdout, b"456789");
        log.write(Stream::Stderr, b"e");
        assert_eq!(text(&log, Stream::Stdout), "0123456789");
        assert_eq!(text(&log, Stream::Stderr), "e");
    }

    #[test]
    fn past_its_cap_the_head_and_tail_stay_and_the_gap_is_named() {
        let log = TaskLog::in_memory(10);
        for chunk in [&b"abc"[..], b"defg", b"hijklmnop", b"qr", b"stuvwxyz"] {
            log.write(Stream::Stderr, chunk);
        }
        let out = text(&log, Stream::Stderr);
        assert!(
            out.starts_with("abcde\n[taskmaster: 16 bytes of stderr dropped here;"),
            "{out}"
        );
        assert!(out.contains("first 5 and the last 5 bytes"), "{out}");
        assert!(out.ends_with("]\nvwxyz"), "{out}");
        // One write larger than the whole cap.
        let log = TaskLog::in_memory(4);
        log.write(Stream::Stdout, b"0123456789");
        let out = text(&log, Stream::Stdout);
        assert!(out.starts_with("01\n[taskmaster: 6 bytes"), "{out}");
        assert!(out.ends_with("89"), "{out}");
    }

    #[test]
    fn a_disabled_log_keeps_nothing() {
        let log = TaskLog::disabled();
        log.write(Stream::Stdout, b"x");
        assert!(!log.is_enabled());
        assert!(log.contents(Stream::Stdout).is_empty());
    }

    #[test]
    fn output_prefixes_split_into_unit_and_attempt() {
        assert_eq!(
            split_output_prefix("p-1/g/3/17-00000000000000ab/").unwrap(),
            ("p-1/g/3/", "17-00000000000000ab")
        );
        assert!(split_output_prefix("17/").is_err());
    }

    fn lease(store_root: &std::path::Path, attempt: u32) -> Lease {
        Lease {
            store_root: store_root.display().to_string(),
            output_prefix: "p-1/g/3/17-00000000000000ab/".into(),
            attempt,
            ..Lease::default()
        }
    }

    #[tokio::test]
    async fn a_local_log_grows_while_it_runs_and_ends_complete() {
        let root = tempfile::tempdir().unwrap();
        let stores = Stores::default();
        let log = AttemptLog::start(&stores, &lease(root.path(), 2), 1 << 20)
            .await
            .unwrap();
        let dir = root.path().join("p-1/g/3/logs");
        let stdout = dir.join("attempt-2.17-00000000000000ab.stdout");
        assert_eq!(std::fs::read(&stdout).unwrap(), b"");
        log.handle().write(Stream::Stdout, b"first line\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(&stdout).unwrap() != b"first line\n" {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!dir.join("attempt-2.17-00000000000000ab.end").exists());
        log.handle().write(Stream::Stdout, b"second\n");
        log.handle().write(Stream::Stderr, b"oops\n");
        log.finish("failed: exit 3").await;
        assert_eq!(std::fs::read(&stdout).unwrap(), b"first line\nsecond\n");
        assert_eq!(
            std::fs::read(dir.join("attempt-2.17-00000000000000ab.stderr")).unwrap(),
            b"oops\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("attempt-2.17-00000000000000ab.end")).unwrap(),
            "failed: exit 3\n"
        );
    }

    #[tokio::test]
    async fn a_remote_log_is_rewritten_whole() {
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let stores = Stores::default();
        stores.insert("bucket", Arc::clone(&memory));
        let mut lease = lease(std::path::Path::new("/unused"), 1);
        lease.store_url = "s3://bucket/pfx".into();
        let log = AttemptLog::start(&stores, &lease, 8).await.unwrap();
        log.handle().write(Stream::Stderr, b"0123456789abc");
        log.finish("succeeded").await;
        let read = |name: &str| {
            let memory = Arc::clone(&memory);
            let path = ObjectPath::from(format!("pfx/p-1/g/3/logs/{name}"));
            async move {
                let got = memory.get(&path).await.unwrap().bytes().await.unwrap();
                String::from_utf8(got.to_vec()).unwrap()
            }
        };
        let stderr = read("attempt-1.17-00000000000000ab.stderr").await;
        assert!(
            stderr.starts_with("0123\n[taskmaster: 5 bytes of stderr dropped"),
            "{stderr}"
        );
        assert!(stderr.ends_with("9abc"), "{stderr}");
        assert_eq!(read("attempt-1.17-00000000000000ab.stdout").await, "");
        assert_eq!(
            read("attempt-1.17-00000000000000ab.end").await,
            "succeeded\n"
        );
    }
}
