//! `tmctl bench`: how many no-op work units per second the real product
//! leases and commits, and at what latency.
//!
//! Nothing is shortcut: a real master process (started from the
//! `taskmaster` binary next to `tmctl`, on a temporary data dir, or an
//! existing one), real gRPC over loopback, the real durable journal, and
//! clients that take a worker's path: lease (up to `batch` units), renew
//! (optionally), commit. At the end the bench checks with `GetStatus` that
//! every unit was committed exactly once, and fails loudly otherwise.
//!
//! - [`local_master`]: the master process a run starts and removes.
//! - [`load`]: submitting the units; the client tasks and what they time.
//! - [`stats`]: latency percentiles.
//! - [`disk`]: the master's journal and snapshots on disk, sampled.
//! - [`report`]: the result, as JSON or as a readable report.
//! - [`secure`]: `--secure`, the master with TLS and `--auth`, and the
//!   clients' certificates of trust and tokens.

pub mod disk;
pub mod load;
pub mod local_master;
pub mod report;
pub mod secure;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use taskmaster_proto::credentials::Credentials;
use taskmaster_proto::v1::PipelineState;

use load::{BenchPipeline, Calls, ClientLog, LoadShape, Shared};
use local_master::LocalMaster;
pub use report::BenchReport;
use secure::{MasterTls, Secure};
use stats::Summary;
use taskmaster_client::client::{Client, ClientError};
use taskmaster_worker::work_stream::WorkStream;

/// Most units one run may submit.
pub const UNITS_MAX: u64 = 10_000_000;
/// Most units per lease or commit call (the master's `BATCH_ITEMS_MAX`).
pub const BATCH_MAX: u32 = 1000;
/// Most concurrent clients.
pub const CLIENTS_MAX: u32 = 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// No-op units to lease and commit.
    pub units: u64,
    /// Units per lease call and per commit call.
    pub batch: u32,
    /// Concurrent client tasks, each with its own gRPC channel.
    pub clients: u32,
    /// Renew each lease once before committing it.
    pub renew: bool,
    /// Each commit call also leases the next batch (`lease_next`).
    pub lease_on_commit: bool,
    /// Ask for full leases instead of the compact form.
    pub full_leases: bool,
    /// Offered load in units per second over all clients; `None` runs
    /// closed-loop, as fast as the master answers.
    pub rate: Option<f64>,
    /// An existing master to load instead of starting one. Its other
    /// work is leased and given back, which skews the figures: use an
    /// idle master.
    pub master: Option<String>,
    /// The `taskmaster` binary to start when `master` is `None`.
    pub master_binary: Option<PathBuf>,
    /// Make the worker calls as messages on one `Work` stream per client
    /// instead of one unary call each.
    pub stream: bool,
    /// Only submit the units and measure the master's memory with all of
    /// them pending; lease none.
    pub pending_only: bool,
    /// At the end, kill the master (SIGKILL) and time its recovery from
    /// the journal and snapshots, then verify the state again. Needs a
    /// master started by the bench.
    pub restart: bool,
    /// Start the master with TLS and `--auth`; every client connects over
    /// TLS with a token of its own (see [`secure`]). Needs a master
    /// started by the bench.
    pub secure: bool,
}

impl BenchOptions {
    /// Checks the bounds (clap checks them too; the library may be called
    /// directly).
    pub fn validate(&self) -> Result<(), BenchError> {
        let invalid = |what: String| Err(BenchError::Invalid(what));
        if !(1..=UNITS_MAX).contains(&self.units) {
            return invalid(format!("units must be 1 to {UNITS_MAX}"));
        }
        if !(1..=BATCH_MAX).contains(&self.batch) {
            return invalid(format!("batch must be 1 to {BATCH_MAX}"));
        }
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return invalid(format!("clients must be 1 to {CLIENTS_MAX}"));
        }
        if self.restart && self.master.is_some() {
            return invalid("--restart needs a master started by the bench, not --master".into());
        }
        if self.secure && self.master.is_some() {
            return invalid("--secure needs a master started by the bench, not --master".into());
        }
        if self
            .rate
            .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
        {
            return invalid("rate must be a positive number of units per second".into());
        }
        Ok(())
    }

    /// Time between one client's lease calls at the offered rate: each
    /// call asks for `batch` units and `clients` clients share the rate.
    fn lease_period(&self) -> Option<Duration> {
        self.rate.map(|rate| {
            let period = f64::from(self.batch) * f64::from(self.clients) / rate;
            Duration::from_secs_f64(period.max(1e-6))
        })
    }
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "no taskmaster binary at {path}: build it beside tmctl \
         (cargo build --release --bin taskmaster --bin tmctl), or pass --master URL"
    )]
    MasterMissing { path: String },
    #[error("could not start the bench's master: {what}")]
    MasterStart { what: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{call} failed: {message} ({code:?})")]
    Rpc {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{call} refused an item: {message}")]
    Refused { call: &'static str, message: String },
    #[error("{call}'s reply does not hold together: {error}")]
    MalformedReply {
        call: &'static str,
        #[source]
        error: taskmaster_proto::compact::CompactError,
    },
    #[error("stalled: {committed} of {units} units committed, none for {idle_s} s")]
    Stalled {
        committed: u64,
        units: u64,
        idle_s: u64,
    },
    #[error("verification failed, units were not committed exactly once: {0}")]
    Verify(String),
    #[error("a client task failed: {0}")]
    Task(String),
}

impl BenchError {
    fn rpc(call: &'static str, status: tonic::Status) -> BenchError {
        BenchError::Rpc {
            call,
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// Runs one bench: starts a master unless `options.master` names one,
/// loads it, verifies, stops the master it started.
pub async fn run_bench(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    options.validate()?;
    let mut local = match &options.master {
        Some(_) => None,
        None => {
            let binary = match &options.master_binary {
                Some(binary) => binary.clone(),
                None => LocalMaster::binary_beside_current_exe()?,
            };
            let tls = options.secure.then(MasterTls::new).transpose()?;
            Some(LocalMaster::start(&binary, tls).await?)
        }
    };
    let (url, master_label) = match (&local, &options.master) {
        (Some(local), _) => {
            let pid = local.pid().map_or("?".into(), |p| p.to_string());
            let secured = if options.secure {
                ", with TLS and --auth"
            } else {
                ""
            };
            let label = format!(
                "started for this run (pid {pid}) at {}{secured}",
                local.url()
            );
            (local.url().to_string(), label)
        }
        (None, Some(url)) => (url.clone(), format!("existing, at {url}")),
        (None, None) => unreachable!("either a master is given or one was started"),
    };
    tracing::info!(master = %master_label, "bench master");
    let secure = match local.as_ref().and_then(|l| l.tls().map(|tls| (l, tls))) {
        Some((local, tls)) => {
            Some(Secure::set_up(&url, local.data_dir(), tls.client_tls()?).await?)
        }
        None => None,
    };
    let mut result = measure(&url, options, master_label, secure.as_ref()).await;
    if let (Ok((report, pipelines)), Some(local), true) = (&mut result, &mut local, options.restart)
    {
        match recover_and_verify(local, options, pipelines, secure.as_ref()).await {
            Ok(recovery) => report.recovery = Some(recovery),
            Err(e) => result = Err(e),
        }
    }
    if let Some(local) = local {
        local.stop().await;
    }
    result.map(|(report, _)| report)
}

/// Crashes the bench's master, times its restart, and checks that the
/// recovered state still has every unit exactly where the run left it.
async fn recover_and_verify(
    local: &mut LocalMaster,
    options: &BenchOptions,
    pipelines: &[BenchPipeline],
    secure: Option<&Secure>,
) -> Result<report::Recovery, BenchError> {
    let data_dir_bytes = local.data_dir_bytes();
    let took = local.crash_and_restart().await?;
    let admin = connect(local.url(), secure, None).await?;
    let status = admin.master_status().await?;
    verify_counts(&admin, pipelines, options.units, !options.pending_only).await?;
    Ok(report::Recovery {
        recovery_ms: took.as_secs_f64() * 1000.0,
        data_dir_bytes,
        journal_records: status.journal_records,
        snapshot_bytes: status.newest_snapshot_bytes,
        rss_bytes: status.rss_bytes,
    })
}

/// Submits the units, runs the clients, reads the master's counters
/// around them and verifies the outcome.
async fn measure(
    url: &str,
    options: &BenchOptions,
    master_label: String,
    secure: Option<&Secure>,
) -> Result<(BenchReport, Vec<BenchPipeline>), BenchError> {
    let admin = connect(url, secure, None).await?;
    let empty = admin.master_status().await?;
    let submit_start = Instant::now();
    let pipelines = load::submit_units(&admin, options.units).await?;
    let submitted = report::Submitted {
        submit_s: submit_start.elapsed().as_secs_f64(),
        rss_before_bytes: empty.rss_bytes,
        rss_after_bytes: admin.master_status().await?.rss_bytes,
    };
    let mut calls = Vec::with_capacity(options.clients as usize);
    // With --pending-only no client leases anything: open no connections.
    let clients = if options.pending_only {
        0
    } else {
        options.clients
    };
    let worker_ids: Vec<String> = (0..clients).map(worker_id).collect();
    let tokens = match secure {
        Some(secure) => secure.worker_tokens(url, &worker_ids).await?,
        None => vec![Credentials::default(); worker_ids.len()],
    };
    for token in tokens {
        let raw = connect(url, secure, Some(token)).await?.raw();
        calls.push(if options.stream {
            let stream = WorkStream::open(raw)
                .await
                .map_err(|status| BenchError::rpc("Work", status))?;
            Calls::Stream(stream)
        } else {
            Calls::Unary(raw)
        });
    }
    let before = admin.master_status().await?;
    let client_cpu_before = taskmaster_master::procstat::cpu_seconds();
    let start = Instant::now();
    let disk = disk::Sampler::start(admin.clone());
    let logs = if options.pending_only {
        Vec::new()
    } else {
        run_clients(calls, options, &pipelines, start).await?
    };
    let ran_for = start.elapsed();
    let disk = disk.stop().await;
    let after = admin.master_status().await?;
    let client_cpu_s = taskmaster_master::procstat::cpu_seconds() - client_cpu_before;
    let log = merge(logs);
    verify(&admin, &pipelines, options, &log).await?;
    let report = report::build(report::Inputs {
        options,
        pipelines: pipelines.len(),
        log,
        start,
        ran_for,
        before: &before,
        after: &after,
        client_cpu_s,
        master: master_label,
        submitted,
        disk,
    });
    Ok((report, pipelines))
}

/// Spawns one task per client and waits for all; the first failure ends
/// the run (the other tasks are aborted when the set drops).
async fn run_clients(
    calls: Vec<Calls>,
    options: &BenchOptions,
    pipelines: &[BenchPipeline],
    start: Instant,
) -> Result<Vec<ClientLog>, BenchError> {
    let shared = Arc::new(Shared {
        pipelines: pipelines.iter().map(|p| p.id.clone()).collect(),
        committed: AtomicU64::new(0),
        progress_ms: AtomicU64::new(0),
        start,
    });
    let period = options.lease_period();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, calls) in calls.into_iter().enumerate() {
        let shape = LoadShape {
            units: options.units,
            batch: options.batch,
            renew: options.renew,
            lease_on_commit: options.lease_on_commit,
            compact: !options.full_leases,
            lease_period: period,
            start_offset: period.map_or(Duration::ZERO, |p| p * i as u32 / options.clients),
        };
        tasks.spawn(load::run_client(
            calls,
            worker_id(i as u32),
            shape,
            Arc::clone(&shared),
        ));
    }
    let mut logs = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(log)) => logs.push(log),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(BenchError::Task(e.to_string())),
        }
    }
    Ok(logs)
}

/// The worker id of the bench's client number `i` (with `--secure`, also
/// the name of its token).
fn worker_id(i: u32) -> String {
    format!("bench-{i}")
}

/// A client of the master at `url`: plain, or over TLS with `token` (the
/// submitting client's operator token when `None`).
async fn connect(
    url: &str,
    secure: Option<&Secure>,
    token: Option<Credentials>,
) -> Result<Client, BenchError> {
    match secure {
        None => Ok(Client::connect(url).await?),
        Some(secure) => {
            let token = token.unwrap_or_else(|| secure.operator.clone());
            secure.connect(url, token).await
        }
    }
}

/// All clients' measurements together.
#[derive(Debug, Default)]
pub struct MergedLog {
    pub lease: Summary,
    pub renew: Summary,
    pub commit: Summary,
    /// With `--rate`: from each batch's turn to its commit's answer.
    pub turn: Summary,
    pub turns_skipped: u64,
    pub leased: u64,
    pub committed: u64,
    pub foreign_released: u64,
    pub last_lease: Option<Instant>,
    pub last_commit: Option<Instant>,
}

fn merge(logs: Vec<ClientLog>) -> MergedLog {
    let mut lease_us = Vec::new();
    let mut renew_us = Vec::new();
    let mut commit_us = Vec::new();
    let mut turn_us = Vec::new();
    let mut merged = MergedLog::default();
    for log in logs {
        lease_us.extend(log.lease_us);
        renew_us.extend(log.renew_us);
        commit_us.extend(log.commit_us);
        turn_us.extend(log.turn_us);
        merged.turns_skipped += log.turns_skipped;
        merged.leased += log.leased;
        merged.committed += log.committed;
        merged.foreign_released += log.foreign_released;
        merged.last_lease = merged.last_lease.max(log.last_lease);
        merged.last_commit = merged.last_commit.max(log.last_commit);
    }
    merged.lease = Summary::of(lease_us);
    merged.renew = Summary::of(renew_us);
    merged.commit = Summary::of(commit_us);
    merged.turn = Summary::of(turn_us);
    merged
}

/// Every unit committed exactly once: the clients' acknowledged commits
/// and the master's counts must both equal `units`, with nothing pending,
/// leased or failed, and every bench pipeline succeeded. With
/// `--pending-only`, every unit must still be pending.
async fn verify(
    admin: &Client,
    pipelines: &[BenchPipeline],
    options: &BenchOptions,
    log: &MergedLog,
) -> Result<(), BenchError> {
    let units = options.units;
    let expected = if options.pending_only { 0 } else { units };
    if log.committed != expected || log.leased != expected {
        return Err(BenchError::Verify(format!(
            "the clients were granted {} leases and had {} commits acknowledged, for {expected} units",
            log.leased, log.committed
        )));
    }
    verify_counts(admin, pipelines, units, !options.pending_only).await
}

/// The master's counts: every unit committed (and every pipeline
/// succeeded), or every unit pending.
async fn verify_counts(
    admin: &Client,
    pipelines: &[BenchPipeline],
    units: u64,
    all_committed: bool,
) -> Result<(), BenchError> {
    let mut total = 0;
    for pipeline in pipelines {
        let status = admin.status(&pipeline.id).await?;
        let (mut committed, mut pending, mut other) = (0, 0, 0);
        for c in status.groups.iter().map(|g| g.counts.unwrap_or_default()) {
            committed += c.committed;
            pending += c.pending;
            other += c.leased + c.failed;
        }
        let (done, expected_state) = if all_committed {
            (committed, PipelineState::Succeeded)
        } else {
            (pending, PipelineState::Pending)
        };
        if done != pipeline.units
            || committed + pending + other != pipeline.units
            || status.state() != expected_state
        {
            return Err(BenchError::Verify(format!(
                "pipeline {} ({} units) is {:?} with {committed} committed, {pending} pending \
                 and {other} leased or failed",
                pipeline.id,
                pipeline.units,
                status.state(),
            )));
        }
        total += done;
    }
    if total != units {
        return Err(BenchError::Verify(format!(
            "the master counts {total} units {}, not {units}",
            if all_committed {
                "committed"
            } else {
                "pending"
            }
        )));
    }
    Ok(())
}
