//! `tmctl`: the taskmaster command-line tool. Argument parsing and the
//! commands live in `commands`; the work is done by the SDK
//! (`taskmaster_client`) and this crate's library (the demo, the benchmark,
//! the renderings).

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, as in the master: `tmctl bench` runs many clients and `tmctl
/// demo` a master and workers in this process, allocating every string of
/// every lease they decode; glibc's malloc and free were a third of the
/// bench client's instructions in a batched run (callgrind; BENCHMARKS.md,
/// "Why the code is shaped so: jemalloc in tmctl and the worker").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Multi-threaded: `tmctl demo` and `tmctl bench` run a master, workers or
// many clients in this process, and one thread would serialize them.
#[tokio::main]
async fn main() -> ExitCode {
    let args = commands::Args::parse();
    init_tracing();
    commands::run(args).await
}

/// Logs go to stderr (stdout carries results scripts read), quiet unless
/// RUST_LOG asks for more.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
