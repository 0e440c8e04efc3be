//! The taskmaster worker: leases work units from a master, runs them, and
//! commits their outputs.
//!
//! A worker asks the master for as many units as it has free slots
//! (long-polling when there is no work), runs each unit's [`Task`] on
//! tokio's blocking pool with an empty output directory unique to the
//! attempt, renews all its leases in one call a third of the way into the
//! shortest one, and commits each unit's output file list (or its error).
//! These calls go as messages on one long-lived `Work` stream (or, with
//! [`config::Calls::Unary`], as one unary call each); a broken stream is
//! reopened by the next call.
//! Lost replies are retried with exponential backoff and full jitter; the
//! master answers a repeated commit under the same lease with OK, so a unit's
//! committed effect is exactly-once even though execution is at-least-once.
//!
//! Embedding: build a [`TaskRegistry`] (start from [`stock_registry`]
//! and [`TaskRegistry::register`] your own [`Task`]s), then call
//! [`run_worker`] with a [`WorkerConfig`] and a shutdown future.
//!
//! A task of your own, in Rust: a group with `task = "shout"` runs it on a
//! worker built with this registry (the example also runs it by hand on
//! one unit, as the worker would):
//!
//! ```
//! use taskmaster_worker::{Task, TaskError, UnitContext, stock_registry};
//!
//! /// Upper-cases each input file into the attempt's output directory.
//! struct Shout;
//!
//! impl Task for Shout {
//!     fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
//!         for (i, input) in unit.inputs.iter().enumerate() {
//!             // A lost lease or a shutdown: stop early, the result would
//!             // be refused anyway.
//!             unit.check_cancelled()?;
//!             let text = std::fs::read_to_string(input)
//!                 .map_err(|e| TaskError::new(format!("{}: {e}", input.display())))?;
//!             // Only under `output_dir`: what is there when `run` returns
//!             // Ok is the attempt's output, committed at most once.
//!             let out = unit.output_dir.join(format!("part-{i:05}"));
//!             std::fs::write(out, text.to_uppercase())
//!                 .map_err(|e| TaskError::new(e.to_string()))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut tasks = stock_registry(); // exec and the built-in stages
//! tasks.register("shout", Shout);
//!
//! // One unit by hand; a worker builds this context from a lease.
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("in.txt"), "hello").unwrap();
//! std::fs::create_dir(dir.path().join("out")).unwrap();
//! let unit = UnitContext {
//!     inputs: vec![dir.path().join("in.txt")],
//!     output_dir: dir.path().join("out"),
//!     ..UnitContext::default()
//! };
//! tasks.get("shout").unwrap().run(&unit).unwrap();
//! let written = std::fs::read_to_string(dir.path().join("out/part-00000")).unwrap();
//! assert_eq!(written, "HELLO");
//! // Then: taskmaster_worker::run_worker(config, tasks, shutdown).await
//! ```
//!
//! Modules, in the order a unit meets them:
//!
//! - [`config`]: [`WorkerConfig`], its defaults and limits.
//! - `runner`: [`run_worker`], the leasing loop, slots and shutdown.
//! - `shared`: what the leasing loop, the units and the renewal loop share.
//! - `unit`: one unit from lease to commit (context, run, outputs, commit
//!   with retry).
//! - [`task`]: the [`Task`] trait, [`UnitContext`], [`TaskError`],
//!   [`TaskRegistry`] and cancellation.
//! - [`exec`]: the stock `exec` task (runs the group's command), the
//!   environment it sets and the isolation it gives; `child` holds its
//!   supervised process and pipe handling, `supervisor` the process that
//!   kills everything an attempt started when it ends.
//! - [`builtin`]: the built-in stages `split`, `wordcount.map`,
//!   `sum.reduce`, `sort` and `merge`, their record format and settings.
//! - [`lines`]: reading a unit's inputs (whole files and byte slices) as
//!   lines; which lines a slice owns.
//! - [`logs`]: each attempt's stdout and stderr, capped, written to the
//!   store beside its outputs while it runs ([`task_log::TaskLog`], stored by [`logs`]).
//! - [`scratch`]: per-attempt scratch directories outside the output
//!   directory (spilled runs, copied slices).
//! - [`outputs`]: preparing the attempt's output directory, listing its
//!   files, and making them read-only before the commit.
//! - [`store`]: remote stores (`s3://`): downloading URL inputs and
//!   uploading outputs around the task, one client per bucket.
//! - `held` and `renew`: the table of held leases, the renewal loop, and
//!   releasing leases at shutdown.
//! - `rpc`: the lazily connected connection to the master (its calls go
//!   over one `Work` stream, or as unary calls), deadlines, which failures
//!   are retried, rate-limited warnings.
//! - [`work_stream`]: [`WorkStream`](work_stream::WorkStream), lease,
//!   renew, commit and release as messages on one bidirectional stream.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`stats`]: [`WorkerStats`], what [`run_worker`] reports.
//! - [`metrics`]: Prometheus metrics (`--metrics ADDR`): slots busy,
//!   attempts by outcome, task time.

pub mod backoff;
pub mod builtin;
mod child;
pub mod config;
pub mod exec;
mod held;
pub mod lines;
pub mod logs;
pub mod metrics;
pub mod outputs;
mod renew;
mod rpc;
mod runner;
pub mod scratch;
mod shared;
pub mod stats;
pub mod store;
mod supervisor;
pub mod task;
pub mod task_log;
#[cfg(test)]
mod test_support;
mod unit;
pub mod work_stream;

pub use builtin::stock_registry;
pub use config::{ConfigError, WorkerConfig};
pub use exec::ExecTask;
pub use runner::{WorkerError, run_worker, run_worker_until};
pub use stats::WorkerStats;
pub use task::{CancelReason, CancelToken, InputSlice, Task, TaskError, TaskRegistry, UnitContext};
pub use unit::ERROR_TEXT_BYTES_MAX;
