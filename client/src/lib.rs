//! The taskmaster client SDK.
//!
//! A batch pipeline is described in a TOML file, loaded into the gRPC
//! [`PipelineSpec`](taskmaster_proto::v1::PipelineSpec), submitted to the
//! master, watched until it finishes, and its committed outputs are listed.
//!
//! Modules:
//!
//! - [`pipeline_file`]: reads a pipeline TOML file into a `PipelineSpec`
//!   (input globs expanded, working directory set, `--param` overrides),
//!   and a schedule file into a `ScheduleSpec`; `load_pipeline_async` and
//!   `load_schedule_async` do it off an async caller's runtime.
//! - [`sizing`]: packs small input files and cuts large ones into byte
//!   ranges, so a first group's units are about `unit_bytes` each.
//! - [`client`]: [`Client`], the async SDK over the gRPC `TaskMaster`
//!   service (submit, status, list, outputs, wait), and [`ClientError`].
//! - [`schedules`]: the [`Client`] calls of the `Schedules` service
//!   (schedules, their runs, backfills).
//!
//! The SDK depends on the protocol (`taskmaster-proto`) and the spec's
//! shared readings (`taskmaster-spec`), not on the master or the worker.
//! A worker's own calls over the `Work` stream are the worker crate's
//! `work_stream::WorkStream`; the `tmctl` tool, with its demo and
//! benchmark, is the `taskmaster-cli` crate.
//!
//! Submitting the repository's example pipeline and printing where its
//! committed result is, against a master on its default address:
//!
//! ```no_run
//! use std::path::PathBuf;
//! use std::time::Duration;
//!
//! use taskmaster_client::{Client, load_pipeline_async};
//! use taskmaster_proto::v1::PipelineState;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("http://127.0.0.1:7070").await?;
//! let params = vec![("currency".to_string(), "USD".to_string())];
//! let spec = load_pipeline_async(PathBuf::from("examples/sales/pipeline.toml"), params).await?;
//! let id = client.submit(spec).await?;
//! let status = client.wait(&id, Duration::from_secs(1)).await?;
//! if status.state() == PipelineState::Succeeded {
//!     for path in client.output_paths(&id, "total").await? {
//!         println!("{path}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Execution is at-least-once; the committed effect is exactly-once: a unit
//! may run more than once, but only one attempt's output is ever committed,
//! and [`Client::outputs`] returns only committed output.

pub mod client;
pub mod pipeline_file;
pub mod schedules;
pub mod sizing;

pub use client::{Client, ClientError, ClientTls};
pub use pipeline_file::{
    PipelineFileError, load_pipeline, load_pipeline_async, load_schedule, load_schedule_async,
    parse_param,
};
