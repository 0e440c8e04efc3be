//! The task's side of its attempt's logs: [`TaskLog`], where a task writes
//! what it printed, capped per stream (the first half and the last half of
//! the cap kept, and what was dropped between them counted). Writing the
//! capture to the store while the attempt runs is `logs`' job; a task
//! needs only this handle, so the `Task` trait's module does not depend on
//! the store.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use taskmaster_proto::log_names::LogKind;

/// A task's output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    pub(crate) fn kind(self) -> LogKind {
        match self {
            Stream::Stdout => LogKind::Stdout,
            Stream::Stderr => LogKind::Stderr,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        self.kind().suffix()
    }
}

/// What is kept of one stream: its first `head_max` bytes and its last
/// `tail_max` bytes (beyond the head).
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) head: Vec<u8>,
    head_max: usize,
    tail: VecDeque<u8>,
    tail_max: usize,
    /// Bytes the stream has had in all.
    total: u64,
    /// Bytes of `head` already in the store.
    pub(crate) stored: usize,
}

impl Capture {
    pub(crate) fn new(cap: u64) -> Capture {
        let head_max = (cap / 2) as usize;
        Capture {
            head: Vec::new(),
            head_max,
            tail: VecDeque::new(),
            tail_max: cap as usize - head_max,
            total: 0,
            stored: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let to_head = bytes.len().min(self.head_max - self.head.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        let rest = &bytes[to_head..];
        if rest.len() >= self.tail_max {
            self.tail.clear();
            self.tail.extend(&rest[rest.len() - self.tail_max..]);
        } else {
            let over = (self.tail.len() + rest.len()).saturating_sub(self.tail_max);
            self.tail.drain(..over);
            self.tail.extend(rest);
        }
    }

    fn dropped(&self) -> u64 {
        self.total - self.head.len() as u64 - self.tail.len() as u64
    }

    /// What follows the head once the stream has ended: the line saying
    /// what was dropped, if anything was, then the tail.
    pub(crate) fn ending(&self, stream: Stream, cap: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tail.len() + 256);
        let dropped = self.dropped();
        if dropped > 0 {
            if self.head.last().is_some_and(|&b| b != b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(
                format!(
                    "[taskmaster: {dropped} bytes of {} dropped here; an attempt's log keeps the \
                     first {} and the last {} bytes of each stream (taskmaster-worker \
                     --log-bytes-max {cap})]\n",
                    stream.name(),
                    self.head_max,
                    self.tail_max
                )
                .as_bytes(),
            );
        }
        out.extend(self.tail.iter());
        out
    }
}

/// What the task side and the flusher share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) captures: Mutex<[Capture; 2]>,
    pub(crate) cap: u64,
}

/// The task's handle on its attempt's logs: [`TaskLog::write`] what the
/// task printed. Cheap to clone; does nothing when disabled (the
/// default, e.g. for a worker started with `--log-bytes-max 0`).
#[derive(Clone, Default)]
pub struct TaskLog {
    shared: Option<Arc<Shared>>,
}

impl fmt::Debug for TaskLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLog")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

impl TaskLog {
    /// A log that keeps nothing.
    pub fn disabled() -> TaskLog {
        TaskLog::default()
    }

    /// A log kept in memory only, capped at `cap` bytes per stream (tests,
    /// and what an attempt's log writer writes out: `logs::AttemptLog`).
    pub fn in_memory(cap: u64) -> TaskLog {
        TaskLog {
            shared: Some(Arc::new(Shared {
                captures: Mutex::new([Capture::new(cap), Capture::new(cap)]),
                cap,
            })),
        }
    }

    /// A log writing to `shared`, which the attempt's log writer stores.
    pub(crate) fn sharing(shared: Arc<Shared>) -> TaskLog {
        TaskLog {
            shared: Some(shared),
        }
    }

    /// True when what is written is kept.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Appends bytes the task wrote to `stream`.
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        if let Some(shared) = &self.shared {
            shared.captures.lock()[stream.index()].push(bytes);
        }
    }

    /// Appends a line (a built-in task's own message) to `stream`.
    pub fn line(&self, stream: Stream, text: &str) {
        if let Some(shared) = &self.shared {
            let mut captures = shared.captures.lock();
            captures[stream.index()].push(text.as_bytes());
            captures[stream.index()].push(b"\n");
        }
    }

    /// The whole log of `stream` as it would be stored if it ended now.
    pub fn contents(&self, stream: Stream) -> Vec<u8> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let captures = shared.captures.lock();
        let capture = &captures[stream.index()];
        let mut out = capture.head.clone();
        out.extend(capture.ending(stream, shared.cap));
        out
    }
}
