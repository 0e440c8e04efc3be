//! `taskmaster`: the task master server.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use taskmaster_master::auth::limits;
use taskmaster_master::clock::MonotonicClock;
use taskmaster_master::core::admission;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_master::tls::TlsFiles;

/// Every request allocates and frees its messages, strings and buffers,
/// often on different threads; glibc's malloc spent a quarter of the
/// master's CPU on that in a batched run (perf: `_int_malloc`,
/// `malloc_consolidate`, `free`). The A/B: BENCHMARKS.md, "Why the code
/// is shaped so: jemalloc".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its C `malloc_conf` string; the crate's build
/// prefixes the symbol). Without a background thread it gives freed pages
/// back only while the process allocates, so an idle master kept the
/// memory of deleted or finished work: after a 1 M unit run and deleting
/// every pipeline, 158 MB resident 18 s later, 35 MB with the thread
/// (BENCHMARKS.md, "Why the code is shaped so: jemalloc's background
/// thread"). `_RJEM_MALLOC_CONF` in the environment still overrides.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &u8 = &b"background_thread:true\0"[0];

#[derive(Parser)]
#[command(
    name = "taskmaster",
    version,
    about = "The taskmaster leased task master (gRPC server)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the master on ADDR, keeping its state and journal in DIR.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for the journal and (by default) the output store; created if missing.
    #[arg(long, env = "TASKMASTER_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "TASKMASTER_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// How long a lease lasts without renewal, in milliseconds.
    #[arg(long, env = "TASKMASTER_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    lease_ms: u64,
    /// How long a worker's leases last once its last Work stream closed
    /// (killed, cut off), in milliseconds, unless it comes back or renews
    /// first: units behind a dead worker run again after this, not after a
    /// whole lease time. A late commit of the old worker is still refused.
    /// A worker that lives on after its connection broke keeps its leases
    /// only if it calls again within this (a commit, a lease, or its
    /// renewal a third into the lease time), so the default is a third of
    /// --lease-ms plus 2 s (at least 5 s, at most --lease-ms); lower it for
    /// a quicker takeover.
    #[arg(long, env = "TASKMASTER_LOST_WORKER_GRACE_MS")]
    lost_worker_grace_ms: Option<u64>,
    /// Leases out at once over all pipelines, at most (0: no limit); keeps
    /// the systems tasks call from being overloaded.
    #[arg(long, env = "TASKMASTER_MAX_IN_FLIGHT", default_value_t = 0)]
    max_in_flight: u32,
    /// Where workers write outputs: a directory (or file:///abs/path), or
    /// s3://bucket/prefix for an S3-compatible store shared by many
    /// machines (credentials, region and endpoint from the AWS_* variables;
    /// AWS_ENDPOINT and AWS_ALLOW_HTTP=true for a server of your own)
    /// [default: DATA_DIR/store].
    #[arg(long, env = "TASKMASTER_STORE")]
    store: Option<String>,
    /// Delete finished pipelines this long after they finish (90s, 30m,
    /// 12h, 7d; counted from the journaled finish time, wall clock): the
    /// master forgets their status, and its memory and snapshots stop
    /// growing with history; their committed outputs stay in the store
    /// [default: keep them until `tmctl delete`].
    #[arg(long, env = "TASKMASTER_RETAIN_FINISHED",
          value_parser = retention)]
    retain_finished: Option<std::time::Duration>,
    /// Start a new store in a data dir that holds data (a store with
    /// outputs, other files) but no journal. Without it such a data dir is
    /// refused: a lost journal is restored from a backup, not replaced.
    #[arg(long)]
    init: bool,
    /// Serve gRPC over TLS with this certificate (PEM, the chain's leaf
    /// first) and --tls-key. Both files are read again when they change,
    /// so a rotated certificate needs no restart.
    #[arg(long, env = "TASKMASTER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TASKMASTER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require every client to present a certificate signed by this CA
    /// (PEM): mutual TLS, the clients' identities. Needs --tls-cert.
    #[arg(long, env = "TASKMASTER_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Also serve the web UI, the JSON API, live updates and /metrics over
    /// HTTP on this address (port 0 picks a free port; the chosen one is
    /// printed), over HTTPS with --tls-cert and --tls-key, requiring client
    /// certificates with --client-ca. Beyond loopback only with TLS and
    /// identities (--auth, or --client-ca), or --insecure: its buttons
    /// cancel, retry, re-run and roll back. With --auth it asks for the
    /// same tokens as gRPC (browsers log in at /login).
    #[arg(long, env = "TASKMASTER_HTTP")]
    http: Option<SocketAddr>,
    /// Listen on an address other than loopback without TLS and client
    /// certificates: anyone who can reach the port can then submit
    /// commands for the workers to run. Logged as a warning at start.
    #[arg(long, env = "TASKMASTER_INSECURE")]
    insecure: bool,
    /// Require an identity on every call: a bearer token (`tmctl token
    /// create`) or, for a worker, a client certificate whose subject CN is
    /// its name (with --client-ca). Each role may make only its calls. On
    /// the first start the master writes an admin token to
    /// DATA_DIR/admin.token (mode 0600).
    #[arg(long, env = "TASKMASTER_AUTH")]
    auth: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    snapshots: SnapshotArgs,
}

/// When the journal is compacted, and how fast snapshots are written. The
/// defaults were measured on a 2-core VM with a virtio disk (BENCHMARKS.md,
/// "Why the code is shaped so"); a faster disk can take more.
#[derive(clap::Args)]
struct SnapshotArgs {
    /// An automatic snapshot (which compacts the journal) is taken once the
    /// journal since the last one holds this many records...
    #[arg(long, env = "TASKMASTER_AUTO_SNAPSHOT_RECORDS",
          default_value_t = taskmaster_master::runtime::AUTO_SNAPSHOT_MIN_RECORDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    auto_snapshot_records: u64,
    /// ...and this many MiB, or the last snapshot's size if larger (so
    /// snapshots cost a bounded share of the writes).
    #[arg(long, env = "TASKMASTER_AUTO_SNAPSHOT_MIB",
          default_value_t = taskmaster_master::runtime::AUTO_SNAPSHOT_MIN_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    auto_snapshot_mib: u64,
    /// Snapshots (and journal compactions) are written at most this many
    /// MiB a second, in steps written back as they go, so the journal's
    /// syncs do not wait behind them.
    #[arg(long, env = "TASKMASTER_SNAPSHOT_WRITE_MIB",
          default_value_t = taskmaster_master::writeback::BYTES_PER_SECOND >> 20,
          value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    snapshot_write_mib: u64,
}

/// Limits against abuse (issue 24); a call over one is refused with
/// RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming the flag. 0: no limit
/// (except for the pipeline sizes).
#[derive(clap::Args)]
struct LimitArgs {
    /// Client connections open at once; one more is closed at once.
    #[arg(long, env = "TASKMASTER_MAX_CONNECTIONS",
          default_value_t = limits::CONNECTIONS_MAX_DEFAULT)]
    max_connections: usize,
    /// HTTP/2 streams (calls in flight) one connection may have open.
    #[arg(long, env = "TASKMASTER_MAX_STREAMS_PER_CONNECTION",
          default_value_t = limits::STREAMS_PER_CONNECTION_DEFAULT)]
    max_streams_per_connection: u32,
    /// Lease calls (which may long-poll) open at once, over all clients.
    #[arg(long, env = "TASKMASTER_MAX_LONG_POLLS",
          default_value_t = limits::LONG_POLLS_MAX_DEFAULT)]
    max_long_polls: usize,
    /// Lease calls that may wait, open at once per identity (with --auth),
    /// unary or on a Work stream (0: only --max-long-polls bounds them).
    /// A worker holds one or a few. A lease call refused by either limit is
    /// answered 5 to 15 s later, so a client that calls again at once does
    /// not spin.
    #[arg(long, env = "TASKMASTER_MAX_LONG_POLLS_PER_IDENTITY",
          default_value_t = limits::LONG_POLLS_PER_IDENTITY_DEFAULT)]
    max_long_polls_per_identity: usize,
    /// Work streams (a worker's long-lived call stream) open at once.
    #[arg(long, env = "TASKMASTER_MAX_WORK_STREAMS",
          default_value_t = limits::WORK_STREAMS_MAX_DEFAULT)]
    max_work_streams: usize,
    /// Calls a second per identity (with --auth), with bursts of twice
    /// that; workers' lease, renew, commit and release calls are not
    /// counted (their leases bound them). A call over it is refused 0.5 to
    /// 1.5 s later, so a client that calls again at once does not spin.
    #[arg(long, env = "TASKMASTER_RATE_PER_IDENTITY",
          default_value_t = limits::RATE_PER_IDENTITY_DEFAULT)]
    rate_per_identity: u32,
    /// Pipelines held at once (running or finished, until deleted).
    #[arg(long, env = "TASKMASTER_MAX_PIPELINES",
          default_value_t = admission::PIPELINES_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_pipelines: usize,
    /// Task groups in one pipeline.
    #[arg(long, env = "TASKMASTER_MAX_GROUPS_PER_PIPELINE",
          default_value_t = taskmaster_master::core::limits::GROUPS_PER_PIPELINE_MAX,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=taskmaster_master::core::limits::GROUPS_PER_PIPELINE_MAX as u64))]
    max_groups_per_pipeline: usize,
    /// Units a pipeline may start with, over its first groups (each
    /// downstream group has at most one per upstream unit or partition).
    #[arg(long, env = "TASKMASTER_MAX_UNITS_PER_PIPELINE",
          default_value_t = admission::UNITS_PER_PIPELINE_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_units_per_pipeline: usize,
    /// Logical times one backfill may run (`tmctl backfill` over a longer
    /// range is refused, naming this flag).
    #[arg(long, env = "TASKMASTER_MAX_BACKFILL_RUNS",
          default_value_t = taskmaster_master::core::schedule_ops::BACKFILL_RUNS_MAX,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_backfill_runs: usize,
}

impl LimitArgs {
    fn edge(&self) -> limits::EdgeLimits {
        limits::EdgeLimits {
            connections_max: self.max_connections,
            streams_per_connection: self.max_streams_per_connection,
            long_polls_max: self.max_long_polls,
            long_polls_per_identity: self.max_long_polls_per_identity,
            work_streams_max: self.max_work_streams,
            rate_per_identity: self.rate_per_identity,
        }
    }

    fn admission(&self) -> admission::Admission {
        admission::Admission {
            pipelines_max: self.max_pipelines,
            groups_per_pipeline_max: self.max_groups_per_pipeline,
            units_per_pipeline_max: self.max_units_per_pipeline,
            backfill_runs_max: self.max_backfill_runs,
        }
    }
}

/// Why a master may not listen on `listen` as configured, or None: only a
/// loopback address may go without TLS and identities (client
/// certificates, or tokens with `--auth`), unless `--insecure` says it on
/// purpose.
fn exposure_refusal(
    listen: SocketAddr,
    tls: bool,
    client_ca: bool,
    auth: bool,
    insecure: bool,
) -> Option<String> {
    if listen.ip().is_loopback() || (tls && (client_ca || auth)) || insecure {
        return None;
    }
    let missing = match (tls, client_ca) {
        (false, _) => {
            "TLS (--tls-cert, --tls-key) and identities (--auth for tokens, or --client-ca)"
        }
        (true, _) => "identities (--auth for tokens, or client certificates with --client-ca)",
    };
    Some(format!(
        "refusing to listen on {listen} without {missing}: anyone who can reach it could \
         run commands on every worker. Configure them, listen on a loopback address \
         (127.0.0.1), or pass --insecure to accept the risk"
    ))
}

/// Why the HTTP side may not listen on `http` as configured, or None:
/// beyond loopback it needs TLS and identities (tokens with `--auth`, or
/// client certificates), as the gRPC side does, unless `--insecure`.
fn http_refusal(
    http: SocketAddr,
    tls: bool,
    auth: bool,
    mutual_tls: bool,
    insecure: bool,
) -> Option<String> {
    if insecure || http.ip().is_loopback() || (tls && (auth || mutual_tls)) {
        return None;
    }
    let missing = match (tls, auth || mutual_tls) {
        (false, false) => "TLS and identities (--tls-cert, --tls-key, and --auth or --client-ca)",
        (false, true) => "TLS (--tls-cert, --tls-key): its tokens would cross the network in clear",
        _ => "identities (--auth, or client certificates with --client-ca)",
    };
    Some(format!(
        "refusing to serve HTTP on {http} without {missing}: anyone who can reach it could \
         cancel, re-run or roll back pipelines. Configure them, serve it on a loopback address \
         (127.0.0.1), or pass --insecure to accept the risk"
    ))
}

/// `--retain-finished`: a duration of at least a second.
fn retention(text: &str) -> Result<std::time::Duration, String> {
    use taskmaster_spec::duration::{UP_TO_DAYS, parse_ms};
    match parse_ms(text, UP_TO_DAYS) {
        None => Err(format!(
            "{text:?} is not a duration like 90s, 30m, 12h or 7d"
        )),
        Some(ms) if ms < 1_000 => Err(format!("{text:?}: the retention must be at least 1s")),
        Some(ms) => Ok(std::time::Duration::from_millis(ms)),
    }
}

/// `--store` as a local directory or a remote store's URL.
fn store_location(store: Option<String>) -> anyhow::Result<(Option<PathBuf>, Option<String>)> {
    let Some(store) = store else {
        return Ok((None, None));
    };
    if let Some(path) = store.strip_prefix("file://") {
        anyhow::ensure!(
            path.starts_with('/'),
            "--store {store}: a file:// URL needs an absolute path (file:///abs/path)"
        );
        return Ok((Some(PathBuf::from(path)), None));
    }
    if store.contains("://") {
        // Checked here too, so a typo stops the master before it starts.
        taskmaster_spec::object_url::split_object_url(&store)
            .map_err(|e| anyhow::anyhow!("--store: {e}, a directory or file:///abs/path"))?;
        return Ok((None, Some(store)));
    }
    Ok((Some(PathBuf::from(store)), None))
}

/// A panic anywhere in the master is a bug that may have left the state
/// ahead of the journal (a change applied in memory whose record was never
/// written): the process stops at once, after the panic is logged, instead
/// of serving on from that state. A restart recovers exactly what was
/// acknowledged.
fn abort_on_panic() {
    let log_it = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log_it(info);
        tracing::error!("the master panicked (a bug): stopping; a restart recovers the journal");
        std::process::abort();
    }));
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Reads FAILPOINTS (fault-injection tests); a no-op without the feature.
    let _failpoints = fail::FailScenario::setup();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    abort_on_panic();
    let Command::Serve(args) = cli.command;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Refused before the data dir is touched.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            };
            let first = files.load()?;
            Some((files, first))
        }
        _ => None,
    };
    if let Some(why) = exposure_refusal(
        args.listen,
        tls.is_some(),
        args.client_ca.is_some(),
        args.auth,
        args.insecure,
    ) {
        anyhow::bail!(why);
    }
    if args.insecure && !args.listen.ip().is_loopback() && args.client_ca.is_none() && !args.auth {
        tracing::warn!(
            listen = %args.listen,
            "--insecure: listening beyond loopback without client certificates; anyone who can \
             reach this port can submit commands for the workers to run"
        );
    }
    let data_dir = args.data_dir.clone();
    let mutual_tls = tls.is_some() && args.client_ca.is_some();
    if let Some(why) = args
        .http
        .and_then(|http| http_refusal(http, tls.is_some(), args.auth, mutual_tls, args.insecure))
    {
        anyhow::bail!(why);
    }
    let (store_root, store_url) = store_location(args.store)?;
    let config = MasterConfig {
        data_dir: args.data_dir,
        store_root,
        store_url,
        lease_ms: args.lease_ms,
        max_in_flight: args.max_in_flight,
        retain_finished: args.retain_finished,
        init: args.init,
        auto_snapshot: taskmaster_master::runtime::AutoSnapshot {
            min_records: args.snapshots.auto_snapshot_records,
            min_bytes: args.snapshots.auto_snapshot_mib << 20,
        },
    };
    taskmaster_master::writeback::set_bytes_per_second(args.snapshots.snapshot_write_mib << 20);
    // Recovery reads and replays files: on a blocking thread.
    let clock = Arc::new(MonotonicClock::default());
    let master =
        Arc::new(tokio::task::spawn_blocking(move || Master::open(&config, clock)).await??);
    if args.auth
        && let Some(path) =
            taskmaster_master::auth::bootstrap::admin_token(&master, &data_dir).await?
    {
        // Where, never what: the token is only in the file.
        tracing::warn!(path = %path.display(), "wrote the first admin token (mode 0600)");
    }
    master.set_admission(args.limits.admission());
    master.open_streams().set_grace_ms(
        args.lost_worker_grace_ms
            .unwrap_or_else(|| taskmaster_master::open_streams::grace_ms_for(args.lease_ms)),
    );
    let access = Arc::new(taskmaster_master::auth::Access::new(
        args.auth,
        args.limits.edge(),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Bound before the gRPC line is printed, so a test that waits for that
    // line finds the HTTP side listening too.
    let http = match args.http {
        None => None,
        Some(http_addr) => {
            let http_listener = tokio::net::TcpListener::bind(http_addr)
                .await
                .with_context(|| format!("cannot serve HTTP on {http_addr}"))?;
            let http_addr = http_listener.local_addr()?;
            println!("taskmaster http listening on {http_addr}");
            tracing::info!(%http_addr, "serving the web UI, JSON API and /metrics");
            let stopping = {
                let master = Arc::clone(&master);
                async move { master.shutting_down().await }
            };
            let master = Arc::clone(&master);
            let http_tls = tls.clone();
            let access = Arc::clone(&access);
            Some(tokio::spawn(async move {
                taskmaster_master::http::serve(http_listener, master, access, http_tls, stopping)
                    .await
            }))
        }
    };
    // Scripts and tests wait for this line to know the master is up.
    println!("taskmaster listening on {addr}");
    tracing::info!(%addr, server_token = master.server_token(), "serving");
    let shutdown = {
        let master = Arc::clone(&master);
        async move {
            tokio::select! {
                () = first_signal() => tracing::info!("shutting down (a second signal exits at once)"),
                why = master.fatal() => tracing::error!(%why, "journal failed; stopping"),
            }
            tokio::spawn(async {
                first_signal().await;
                std::process::exit(130);
            });
        }
    };
    taskmaster_master::server::serve_with(listener, Arc::clone(&master), tls, access, shutdown)
        .await?;
    // Open requests get a moment to finish; live streams end on their own.
    const HTTP_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    if let Some(http) = http
        && let Ok(Ok(Err(e))) = tokio::time::timeout(HTTP_STOP_WAIT, http).await
    {
        tracing::warn!(error = %e, "the HTTP server failed");
    }
    master.close();
    if let Some(why) = master.fatal_error() {
        anyhow::bail!("journal failed: {why}");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn first_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_tls_and_identities_unless_insecure() {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        // (tls, client_ca, auth, insecure)
        let refusal =
            |a: &str, tls, ca, auth, insecure| exposure_refusal(addr(a), tls, ca, auth, insecure);
        assert_eq!(refusal("127.0.0.1:7070", false, false, false, false), None);
        assert_eq!(refusal("[::1]:7070", false, false, false, false), None);
        let open = refusal("0.0.0.0:7070", false, false, false, false).unwrap();
        assert!(
            open.contains("without TLS") && open.contains("--insecure"),
            "{open}"
        );
        let no_identity = refusal("10.1.2.3:7070", true, false, false, false).unwrap();
        assert!(
            no_identity.contains("without identities (--auth for tokens"),
            "{no_identity}"
        );
        // Tokens without TLS would cross the network in clear text.
        let auth_plain = refusal("10.1.2.3:7070", false, false, true, false).unwrap();
        assert!(auth_plain.contains("without TLS"), "{auth_plain}");
        assert_eq!(refusal("0.0.0.0:7070", true, true, false, false), None);
        assert_eq!(refusal("0.0.0.0:7070", true, false, true, false), None);
        assert_eq!(refusal("0.0.0.0:7070", false, false, false, true), None);
    }

    #[test]
    fn http_beyond_loopback_needs_tls_and_identities_unless_insecure() {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        // (tls, auth, mutual TLS, insecure)
        assert_eq!(
            http_refusal(addr("127.0.0.1:8080"), false, false, false, false),
            None
        );
        assert_eq!(
            http_refusal(addr("[::1]:8080"), false, true, false, false),
            None
        );
        let open = http_refusal(addr("0.0.0.0:8080"), false, false, false, false).unwrap();
        assert!(
            open.contains("without TLS and identities") && open.contains("--insecure"),
            "{open}"
        );
        let clear_tokens = http_refusal(addr("0.0.0.0:8080"), false, true, false, false).unwrap();
        assert!(clear_tokens.contains("in clear"), "{clear_tokens}");
        let anyone = http_refusal(addr("0.0.0.0:8080"), true, false, false, false).unwrap();
        assert!(anyone.contains("without identities"), "{anyone}");
        assert_eq!(
            http_refusal(addr("0.0.0.0:8080"), true, true, false, false),
            None
        );
        assert_eq!(
            http_refusal(addr("0.0.0.0:8080"), true, false, true, false),
            None
        );
        assert_eq!(
            http_refusal(addr("0.0.0.0:8080"), false, false, false, true),
            None
        );
    }

    #[test]
    fn a_retention_is_a_duration_of_a_second_or_more() {
        use std::time::Duration;
        assert_eq!(retention("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(retention("7d"), Ok(Duration::from_secs(604_800)));
        assert!(
            retention("7w")
                .unwrap_err()
                .contains("not a duration like 90s")
        );
        assert!(retention("0s").unwrap_err().contains("at least 1s"));
        assert!(retention("500ms").unwrap_err().contains("at least 1s"));
    }

    #[test]
    fn store_is_a_directory_a_file_url_or_an_s3_url() {
        let local = |dir: &str| (Some(PathBuf::from(dir)), None);
        assert_eq!(store_location(None).unwrap(), (None, None));
        assert_eq!(store_location(Some("st".into())).unwrap(), local("st"));
        assert_eq!(
            store_location(Some("file:///a/b".into())).unwrap(),
            local("/a/b")
        );
        assert_eq!(
            store_location(Some("s3://bkt/pfx".into())).unwrap(),
            (None, Some("s3://bkt/pfx".into()))
        );
        let err = |arg: &str| store_location(Some(arg.into())).unwrap_err().to_string();
        assert!(err("file://rel/dir").contains("absolute path"));
        assert!(err("gs://bkt").contains("unsupported URL"));
        assert!(err("s3://").contains("no bucket"));
    }
}
