//! `taskmaster-worker`: the stock worker. Leases units from a master and
//! runs them with the built-in tasks (`exec`, `split`, `wordcount.map`,
//! `sum.reduce`, `sort`, `merge`). See `--help`.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use taskmaster_proto::endpoint::ClientTls;
use taskmaster_worker::config::{
    Calls, DEFAULT_MASTER_URL, GRACE_MS_DEFAULT, LEASE_WAIT_MS_DEFAULT, LOG_BYTES_MAX_DEFAULT,
    default_slots, default_worker_id,
};
use taskmaster_worker::{WorkerConfig, run_worker_until, stock_registry};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// jemalloc, as in the master and tmctl: decoding a batch of leases
/// allocates a string per field, and glibc's malloc was the largest cost
/// of the bench client doing the same (callgrind; BENCHMARKS.md, "Why the
/// code is shaped so: jemalloc in tmctl and the worker").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long exiting waits for task threads that ignore cancellation.
const EXIT_WAIT_MS: u64 = 1_000;

/// Runs taskmaster work units: leases them from the master, runs each with
/// its group's task (this worker has `exec`, which runs the group's
/// command, and the built-in split, wordcount.map, sum.reduce, sort and
/// merge), and commits the outputs.
///
/// SIGTERM or SIGINT stops leasing and lets running units finish and commit
/// for up to --grace-ms, then cancels the rest and releases their leases. A
/// second signal releases everything held and exits at once.
///
/// The exec task runs the group's command with the unit described in
/// environment variables:
///   TM_INPUTS        input paths, one per line (empty past 100 KiB)
///   TM_INPUTS_FILE   a file of the same paths, every line ending in a
///                    newline; always set: read it for many inputs
///   TM_OUTPUT_DIR    write every output file under it
///   TM_PARTITIONS    above 0: write only part-00000 .. part-<N-1>, one
///                    file per partition a downstream shuffle reads
///   TM_PIPELINE, TM_GROUP, TM_UNIT, TM_ATTEMPT (1 for the first)
///   TM_SCRATCH_DIR   a directory of the attempt's own for temporary files
///                    (also TMPDIR), removed when the attempt ends
///   TM_PARAM_<NAME>  each pipeline parameter (NAME uppercased, characters
///                    other than letters and digits as _)
/// Exit 0 commits the outputs; anything else fails the attempt.
///
/// When the master's store is S3-compatible (s3://bucket/prefix), inputs
/// named by s3:// URLs are downloaded and outputs uploaded around each
/// task, with credentials, region and endpoint from the standard AWS_*
/// variables (AWS_ENDPOINT and AWS_ALLOW_HTTP=true for a server of your
/// own).
///
/// Each attempt's stdout and stderr are kept in the store beside its
/// outputs, capped by --log-bytes-max (`tmctl logs ID --group G --unit N`).
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug, which also shows
/// the commands' output) to change the level from info.
#[derive(Debug, Parser)]
#[command(
    name = "taskmaster-worker",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Args {
    /// The master's gRPC address: HOST:PORT, http://HOST:PORT, or
    /// https://HOST:PORT with --tls-ca.
    #[arg(long, value_name = "URL", env = "TASKMASTER_ADDR", default_value = DEFAULT_MASTER_URL)]
    master: String,

    /// Units to run at once, and to ask the master for per lease call
    /// (1 to 1024). Default: the number of CPUs this process may use.
    #[arg(long, value_name = "N", env = "TASKMASTER_WORKER_SLOTS")]
    slots: Option<u32>,

    /// This worker's name in the master's records and logs. Default:
    /// <hostname>-<pid>-<4 random hex digits>.
    #[arg(long, value_name = "ID", env = "TASKMASTER_WORKER_ID")]
    worker_id: Option<String>,

    /// How long the master may hold a lease call open when no work is
    /// ready (long-poll), in milliseconds; at most 60000.
    #[arg(long, value_name = "MS", env = "TASKMASTER_WORKER_LEASE_WAIT_MS", default_value_t = LEASE_WAIT_MS_DEFAULT)]
    lease_wait_ms: u32,

    /// After SIGTERM/SIGINT, how long running units may finish and commit
    /// before they are cancelled and released, in milliseconds.
    #[arg(long, value_name = "MS", env = "TASKMASTER_WORKER_GRACE_MS", default_value_t = GRACE_MS_DEFAULT)]
    grace_ms: u64,

    /// How lease, renew and commit calls reach the master: as messages on
    /// one long-lived gRPC stream, or as one unary call each (for a proxy
    /// that does not pass long-lived HTTP/2 streams).
    #[arg(long, value_name = "HOW", env = "TASKMASTER_WORKER_CALLS", value_enum, default_value_t = Calls::Stream)]
    calls: Calls,
    /// Reach the master over TLS, trusting this CA (PEM) for its
    /// certificate.
    #[arg(long, value_name = "FILE", env = "TASKMASTER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This worker's certificate (PEM), for a master that requires client
    /// certificates; with --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "TASKMASTER_TLS_CERT",
        requires = "tls_key",
        requires = "tls_ca"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "TASKMASTER_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// The bearer token for a master started with --auth: a `worker`
    /// token whose name is this worker's --worker-id. Prefer
    /// --token-file, which keeps it out of `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TASKMASTER_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// A file whose first line is the bearer token (see --token).
    #[arg(long, value_name = "FILE", env = "TASKMASTER_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics: slots and slots
    /// busy, attempts by outcome, task seconds. Read-only.
    #[arg(long, value_name = "ADDR", env = "TASKMASTER_WORKER_METRICS")]
    metrics: Option<std::net::SocketAddr>,

    /// Bytes of each attempt's stdout and of its stderr kept in its log in
    /// the store (`tmctl logs`): past this, the first half and the last
    /// half are kept and the log says how many bytes were dropped between
    /// them. 0 keeps no logs.
    #[arg(long, value_name = "BYTES", env = "TASKMASTER_WORKER_LOG_BYTES_MAX", default_value_t = LOG_BYTES_MAX_DEFAULT)]
    log_bytes_max: u64,
}

impl Args {
    fn into_config(self) -> Result<WorkerConfig, Box<dyn std::error::Error>> {
        let tls = match &self.tls_ca {
            None => None,
            Some(ca) => Some(ClientTls::from_files(
                ca,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
            )?),
        };
        Ok(WorkerConfig {
            master_url: self.master,
            slots: self.slots.unwrap_or_else(default_slots),
            worker_id: self.worker_id.unwrap_or_else(default_worker_id),
            lease_wait_ms: self.lease_wait_ms,
            grace_ms: self.grace_ms,
            calls: self.calls,
            tls,
            credentials: taskmaster_proto::credentials::Credentials::from_sources(
                self.token.as_deref(),
                self.token_file.as_deref(),
            )?,
            log_bytes_max: self.log_bytes_max,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let metrics = args.metrics;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // Reads FAILPOINTS (fault-injection tests); a no-op without the feature.
    let _failpoints = fail::FailScenario::setup();
    if let Err(err) = config.validate() {
        eprintln!("error: {err}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, metrics));
    // A task that ignores cancellation must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(EXIT_WAIT_MS));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(config: WorkerConfig, metrics: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let signals = Signals::new()?;
    if let Some(addr) = metrics {
        serve_metrics(addr).await?;
    }
    let (graceful, hard) = shutdown_futures(signals);
    run_worker_until(config, stock_registry(), graceful, hard).await?;
    Ok(())
}

/// Serves `/metrics` on `addr` in the background, for the process's life.
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving metrics at /metrics");
    tokio::spawn(async move {
        if let Err(e) = taskmaster_worker::metrics::serve(listener).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

/// SIGTERM and SIGINT, listened to from startup on.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Two futures: the first resolves on the first signal (graceful shutdown),
/// the second on the next one (exit at once).
fn shutdown_futures(mut signals: Signals) -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let (graceful_tx, graceful_rx) = oneshot::channel();
    let (hard_tx, hard_rx) = oneshot::channel();
    tokio::spawn(async move {
        let name = signals.next().await;
        tracing::info!("{name} received: finishing running units; send it again to stop at once");
        let _ = graceful_tx.send(());
        let name = signals.next().await;
        tracing::warn!("{name} received again: releasing held leases and exiting");
        let _ = hard_tx.send(());
    });
    (fired(graceful_rx), fired(hard_rx))
}

/// Resolves when `rx` fires; never if its sender is dropped unsent.
async fn fired(rx: oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}
