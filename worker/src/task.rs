//! What a worker runs for one unit: the [`Task`] trait, the [`UnitContext`]
//! it is given, the [`TaskError`] it returns, and the [`TaskRegistry`] that
//! maps a group's task name to an implementation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use taskmaster_spec::object_url::ObjectUrlError;

/// One kind of work a worker can do for a unit (e.g. `exec`).
///
/// `run` is blocking: the runner calls it on tokio's blocking thread pool, so
/// it may do file I/O and wait on child processes freely. It should check
/// [`UnitContext::is_cancelled`] now and then and return early when set: the
/// lease is lost (the result would be refused anyway) or the worker is
/// shutting down.
///
/// Execution is at-least-once: a unit may be run more than once, possibly at
/// the same time on two workers. Each attempt writes only under its own
/// [`UnitContext::output_dir`], so attempts never overwrite each other.
pub trait Task: Send + Sync + 'static {
    /// Does the unit's work, writing every output file under
    /// `unit.output_dir`. `Ok` commits those files; `Err` reports a failed
    /// attempt with the error's text.
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError>;
}

/// Why a unit was cancelled; the first reason set wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The master refused to renew the lease: another attempt may own the
    /// unit now, so this attempt's result would be refused.
    LeaseLost,
    /// The worker is shutting down and gives the lease back unfinished.
    Shutdown,
    /// The attempt ran longer than its group's timeout
    /// ([`UnitContext::timeout`]); it fails, saying so.
    TimedOut,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::LeaseLost => "the lease was lost",
            CancelReason::Shutdown => "the worker is shutting down",
            CancelReason::TimedOut => "the attempt ran past its group's timeout",
        })
    }
}

/// A shared cancellation flag: the runner sets it, the task polls it.
///
/// Clones share one flag. Setting it is one-way; the first reason sticks so
/// the runner can tell afterwards why a unit stopped.
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    /// 0 = not cancelled, otherwise `reason_code` of the first reason.
    state: Arc<AtomicU8>,
}

impl CancelToken {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag, unless it is already set (the first reason is kept).
    pub fn cancel(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::LeaseLost => 1,
            CancelReason::Shutdown => 2,
            CancelReason::TimedOut => 3,
        };
        // Only the first reason matters, so a failed exchange is fine.
        let _ = self
            .state
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Why the flag was set, or `None` while it is not.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.state.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(CancelReason::LeaseLost),
            2 => Some(CancelReason::Shutdown),
            _ => Some(CancelReason::TimedOut),
        }
    }

    /// True once the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }
}

/// Everything a task needs to know about the unit it runs, built from the
/// master's lease.
///
/// `Default` is there for tests and tools that build a context by hand.
#[derive(Clone, Debug, Default)]
pub struct UnitContext {
    /// The pipeline the unit belongs to.
    pub pipeline_id: String,
    /// The task group (stage) the unit belongs to.
    pub group: String,
    /// The unit's index within its group.
    pub unit: u32,
    /// The lease this attempt runs under; unique per attempt.
    pub lease_id: u64,
    /// 1 for the first attempt of this unit.
    pub attempt: u32,
    /// Absolute paths of the unit's input files.
    pub inputs: Vec<PathBuf>,
    /// An empty directory unique to this attempt; outputs go here and only here.
    pub output_dir: PathBuf,
    /// The group's command (for `exec`: program and arguments).
    pub command: Vec<String>,
    /// Working directory for the command; empty means inherit the worker's.
    pub workdir: PathBuf,
    /// Extra environment variables configured on the group.
    pub env: BTreeMap<String, String>,
    /// The pipeline's parameters (e.g. `ds=2026-11-21`).
    pub params: BTreeMap<String, String>,
    /// When above 0, a downstream group shuffles this one: the task must
    /// write its outputs as `part-00000` ... `part-<partitions-1>` (see
    /// [`crate::builtin::part_file_name`]), one file per partition and
    /// nothing else; a partition with no data may be omitted or empty.
    /// 0: not partitioned.
    pub partitions: u32,
    /// Byte ranges of input files, read after the whole files in `inputs`.
    /// Which lines a slice owns is defined in [`crate::lines`].
    pub input_slices: Vec<InputSlice>,
    /// The group's task settings; each built-in task documents its keys
    /// (see [`crate::builtin`]).
    pub config: BTreeMap<String, String>,
    /// Longest the task may run; past it the runner cancels the unit with
    /// [`CancelReason::TimedOut`] and the attempt fails. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Set by the runner when the attempt must stop early.
    pub cancel: CancelToken,
    /// The attempt's log in the store ([`crate::logs`]): `exec` writes
    /// the command's stdout and stderr to it; a task of its own may write
    /// lines worth keeping. Disabled by default.
    pub log: crate::task_log::TaskLog,
}

impl UnitContext {
    /// True when the task should stop as soon as it can (lease lost or the
    /// worker shutting down hard). The result of a cancelled run is ignored.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err` once the unit is cancelled, saying why; for a task's loops
    /// (`unit.check_cancelled()?`), so a lost lease stops the work early.
    pub fn check_cancelled(&self) -> Result<(), TaskError> {
        match self.cancel.reason() {
            Some(CancelReason::TimedOut) => Err(TaskError::new(self.timed_out_text())),
            Some(reason) => Err(TaskError::new(format!("cancelled: {reason}"))),
            None => Ok(()),
        }
    }

    /// "timed out after 30m (the group's timeout)": how a timed-out
    /// attempt's error text begins.
    pub fn timed_out_text(&self) -> String {
        match self.timeout {
            Some(timeout) => format!(
                "timed out after {} (the group's timeout)",
                duration_text(timeout)
            ),
            None => "timed out (the group's timeout)".to_string(),
        }
    }
}

/// A duration as a pipeline file writes it: `30m`, `90s`, `1500ms`; the
/// largest unit that divides it (milliseconds at most, rounded down).
pub fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, unit_ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(unit_ms) {
            return format!("{}{unit}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

/// Bytes `[start, end)` of one input file, a piece of a large file the
/// client cut into several units. A line-oriented reader owns every line
/// whose first byte lies in the range (see [`crate::lines`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSlice {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Offset of the first byte of the range.
    pub start: u64,
    /// Offset just past the last byte of the range.
    pub end: u64,
}

/// A failed attempt, with the text the master records for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// Human-readable; sent to the master (truncated to 4 KiB) and shown to
    /// the pipeline's owner, so it should say what went wrong and where.
    message: String,
}

impl TaskError {
    /// A task error with this text.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// An object URL a unit names that is malformed, or whose bucket cannot be
/// opened, fails the attempt saying so.
impl From<ObjectUrlError> for TaskError {
    fn from(e: ObjectUrlError) -> Self {
        TaskError::new(e.0)
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Maps a group's task name (the `task` field of its spec) to the code that
/// runs it.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: HashMap<String, Arc<dyn Task>>,
}

impl TaskRegistry {
    /// A registry with no tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the task called `name`.
    pub fn register(&mut self, name: impl Into<String>, task: impl Task) -> &mut Self {
        self.tasks.insert(name.into(), Arc::new(task));
        self
    }

    /// The task called `name`, if this worker has one.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.tasks.get(name).cloned()
    }

    /// The registered names, sorted (for logs).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tasks.keys().cloned().collect();
        names.sort();
        names
    }
}

impl fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRegistry")
            .field("tasks", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cancel_reason_wins() {
        let token = CancelToken::new();
        assert!(!token.is_cancelled());
        let shared = token.clone();
        shared.cancel(CancelReason::LeaseLost);
        token.cancel(CancelReason::Shutdown);
        assert_eq!(token.reason(), Some(CancelReason::LeaseLost));
        assert!(token.is_cancelled());
    }

    #[test]
    fn durations_read_as_they_are_written() {
        for (ms, text) in [
            (0, "0ms"),
            (1_500, "1500ms"),
            (1_000, "1s"),
            (90_000, "90s"),
            (1_800_000, "30m"),
            (7_200_000, "2h"),
            (5_400_000, "90m"),
        ] {
            assert_eq!(duration_text(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn a_timed_out_unit_says_after_how_long() {
        let unit = UnitContext {
            timeout: Some(Duration::from_secs(90)),
            ..UnitContext::default()
        };
        unit.cancel.cancel(CancelReason::TimedOut);
        let err = unit.check_cancelled().unwrap_err();
        assert_eq!(err.message(), "timed out after 90s (the group's timeout)");
        assert_eq!(unit.cancel.reason(), Some(CancelReason::TimedOut));
    }

    #[test]
    fn check_cancelled_says_why() {
        let unit = UnitContext::default();
        assert!(unit.check_cancelled().is_ok());
        unit.cancel.cancel(CancelReason::LeaseLost);
        let err = unit.check_cancelled().unwrap_err();
        assert_eq!(err.message(), "cancelled: the lease was lost");
    }
}
