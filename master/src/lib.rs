//! The taskmaster master.
//!
//! - [`core`]: the pure state machine (pipelines, leases, the four commit
//!   checks). No I/O; time is an argument.
//! - [`journal`]: the durable, checksummed, group-committed journal.
//! - [`snapshots`]: snapshot files (whole state at a journal position).
//! - [`recovery`]: newest snapshot plus the journal after it.
//! - [`sweep`]: finds and deletes outputs of attempts that can no longer
//!   commit, in a local or a remote store.
//! - [`clock`]: the one clock (monotonic and wall time, and the timers of
//!   the background loops); a manual one for tests.
//! - [`error`]: [`error::MasterError`], what the runtime and recovery fail with.
//! - [`runtime`]: the [`runtime::Master`]: owns the core behind one lock,
//!   journals every change and answers only once it is durable. Its
//!   modules: the calls; snapshots and rollback; the background loops
//!   (lease reaper, compactor, sweeper, finished pipelines' retention,
//!   journal supervisor); the rebuild after a full disk; the sweep's
//!   decisions; the data dir's lock and init check.
//! - [`logs`]: task logs: reading an attempt's stdout or stderr from the
//!   store (`ReadLogs`, the HTTP unit page), deleting them with their
//!   pipeline.
//! - [`http`]: the HTTP side (`--http`): JSON API, pages, live updates
//!   (SSE) and `/metrics`, thin over the same runtime operations as gRPC.
//! - [`metrics`]: the Prometheus counters and histograms (atomics), and
//!   the gauges computed from the state when scraped.
//! - [`service`]: the thin gRPC layer (validate, convert).
//! - [`worker_rpc`]: the worker calls (lease, renew, commit, release),
//!   shared by their unary handlers and the `Work` stream.
//! - [`work_stream`]: the worker calls over one bidirectional stream.
//! - [`open_streams`]: each worker's open streams; a worker whose last one
//!   closed has its leases expire after a short grace.
//! - [`grpc_status`]: the one place errors become gRPC statuses.
//! - [`procstat`]: the master's peak memory and CPU time, from `/proc`.
//! - [`writeback`]: large files (snapshots) written with paced write-back,
//!   so their sync does not stall the journal's.
//! - [`idle_thread`]: CPU-heavy jobs (a snapshot's encoding) at idle priority.
//! - [`in_process`]: a master served inside the calling process on
//!   loopback (the demo's, and the tests').
//! - [`server`]: builds the gRPC server (with health and reflection) and
//!   runs it, with the background loops, until a shutdown future resolves.
//! - [`auth`]: access control at the edge: identities, the role table,
//!   the layer that checks every call, the first admin token.
//! - [`tls`]: the TLS listener (mutual TLS with `--client-ca`), which
//!   reloads its certificate files when they change.

pub mod auth;
pub mod clock;
pub mod core;
pub mod error;
pub mod grpc_status;
pub mod http;
pub mod idle_thread;
pub mod in_process;
pub mod journal;
pub mod logs;
pub mod metrics;
pub mod open_streams;
pub mod procstat;
pub mod publish;
pub mod recovery;
pub mod runtime;
pub mod schedule_service;
pub mod server;
pub mod service;
pub mod snapshots;
pub mod sweep;
pub mod tls;
pub mod work_stream;
pub mod worker_rpc;
pub mod writeback;
