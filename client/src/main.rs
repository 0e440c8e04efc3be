//! `tmctl`: the taskmaster command-line tool. Argument parsing and the
//! commands live in `cli`; the work is done by the `taskmaster_client`
//! library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Multi-threaded: `tmctl demo` and `tmctl bench` run a master, workers or
// many clients in this process, and one thread would serialize them.
#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_tracing();
    cli::run(args).await
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
