//! The taskmaster client SDK and the pieces of the `tmctl` command-line tool.
//!
//! A batch pipeline is described in a TOML file, loaded into the gRPC
//! [`PipelineSpec`](taskmaster_proto::v1::PipelineSpec), submitted to the
//! master, watched until it finishes, and its committed outputs are listed.
//!
//! Modules:
//!
//! - [`pipeline_file`]: reads a pipeline TOML file into a `PipelineSpec`
//!   (input globs expanded, working directory set, `--param` overrides).
//! - [`sizing`]: packs small input files and cuts large ones into byte
//!   ranges, so a first group's units are about `unit_bytes` each.
//! - [`client`]: [`Client`], the async SDK over the gRPC `TaskMaster`
//!   service (submit, status, list, outputs, wait), and [`ClientError`].
//! - [`schedules`]: the [`Client`] calls of the `Schedules` service
//!   (schedules, their runs, backfills).
//! - [`work_stream`]: [`WorkStream`](work_stream::WorkStream), a worker's
//!   lease/renew/commit/release calls over one bidirectional stream (the
//!   stock worker's own, re-exported from `taskmaster_worker`).
//! - [`view`]: small serde structs mirroring a pipeline's status, the stable
//!   JSON shape `tmctl status --json` prints.
//! - [`text`]: the human-readable renderings `tmctl` prints (tables, the
//!   status of one pipeline, progress lines).
//! - [`demo`]: `tmctl demo`, a word count over a bundled corpus on a
//!   master and workers embedded in the process (nothing to install).
//! - [`bench`]: `tmctl bench`, no-op units leased and committed through
//!   a real master process, for throughput and latency figures.
//!
//! Execution is at-least-once; the committed effect is exactly-once: a unit
//! may run more than once, but only one attempt's output is ever committed,
//! and [`Client::outputs`] returns only committed output.

pub mod bench;
pub mod client;
pub mod demo;
pub mod pipeline_file;
pub mod schedules;
pub mod sizing;
pub mod text;
pub mod view;

pub use client::{Client, ClientError, ClientTls};
pub use pipeline_file::{PipelineFileError, load_pipeline, load_schedule, parse_param};
pub use taskmaster_worker::work_stream;
