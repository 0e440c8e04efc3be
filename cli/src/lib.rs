//! The parts of `tmctl` that are more than argument parsing (the commands
//! are in the binary, `src/commands`):
//!
//! - [`text`]: the human-readable renderings `tmctl` prints (tables, the
//!   status of one pipeline, progress lines).
//! - [`view`]: small serde structs mirroring a pipeline's status, the
//!   stable JSON shape `tmctl status --json` prints.
//! - [`demo`]: `tmctl demo`, a word count over a bundled corpus on a
//!   master and workers embedded in the process (nothing to install).
//! - [`bench`]: `tmctl bench`, no-op units leased and committed through
//!   a real master process, for throughput and latency figures.

pub mod bench;
pub mod demo;
pub mod text;
pub mod view;
