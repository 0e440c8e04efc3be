//! `tmctl bench`: throughput and latency of lease/commit through a real
//! master.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap::parser::ValueSource;
use taskmaster_cli::bench::{BATCH_MAX, BenchOptions, CLIENTS_MAX, UNITS_MAX, run_bench};

/// Measure lease/commit throughput and latency with no-op units.
///
/// Starts a real master (the `taskmaster` binary next to tmctl, on a
/// temporary data dir and a free loopback port; removed afterwards), or
/// uses the one named with --master. Submits --units no-op units, then
/// --clients clients lease up to --batch units per call, optionally renew,
/// and commit them, over gRPC and through the master's durable journal,
/// as a worker would. Verifies that every unit was committed exactly
/// once, then reports units/s, commit and lease latency (p50/p99/max), and
/// the master's peak memory, CPU seconds and journal syncs during the run,
/// its memory per pending unit after the submit, and its journal plus
/// snapshots on disk (largest seen, and as a multiple of the state).
/// Exits 0 on success, 2 on any failure or refused call. With --master,
/// use an idle master: the bench leases (and gives back) other work too.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    tmctl bench --batch 1 --clients 64\n  \
    tmctl bench --batch 100 --clients 8 --json\n  \
    tmctl bench --rate 5000 --clients 64\n  \
    tmctl bench --batch 1 --clients 64 --stream\n  \
    tmctl bench --batch 1 --clients 64 --lease-on-commit\n  \
    tmctl bench --units 10000000 --pending-only\n  \
    tmctl bench --batch 100 --clients 8 --units 1000000 --restart\n  \
    tmctl bench --batch 1 --clients 64 --stream --lease-on-commit --secure\n  \
    tmctl bench --master http://127.0.0.1:7070 --units 10000")]
pub struct BenchArgs {
    /// No-op work units to lease and commit (1 to 10000000).
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=UNITS_MAX))]
    units: u64,
    /// Units per lease call and per commit call (1 to 1000).
    #[arg(long, value_name = "B", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(BATCH_MAX)))]
    batch: u32,
    /// Concurrent clients, each with its own gRPC connection (1 to 1024).
    #[arg(long, value_name = "C", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CLIENTS_MAX)))]
    clients: u32,
    /// Also renew each lease once before committing it.
    #[arg(long)]
    renew: bool,
    /// Offer a fixed load of R units per second (lease calls paced per
    /// client) instead of running as fast as the master answers; for
    /// latency below the peak.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Make the worker calls as messages on one bidirectional `Work`
    /// stream per client instead of one unary gRPC call each.
    #[arg(long)]
    stream: bool,
    /// Each commit call also leases the next batch (the commit's
    /// `lease_next`), so after its first lease a client makes one call
    /// per batch instead of two.
    #[arg(long)]
    lease_on_commit: bool,
    /// Ask for full leases, each repeating its group's settings, instead
    /// of the compact form (`LeaseRequest.compact`), where a reply sends
    /// them once per group.
    #[arg(long)]
    full_leases: bool,
    /// Only submit the units and report the master's memory with all of
    /// them pending (bytes per pending unit); lease none.
    #[arg(long)]
    pending_only: bool,
    /// At the end, kill the master with SIGKILL, time its recovery from
    /// its journal and snapshots, and verify the recovered state.
    /// Not with --master.
    // Checked by BenchOptions::validate, not clap's conflicts_with: clap
    // would also refuse a TASKMASTER_ADDR from the environment, which the
    // bench ignores.
    #[arg(long)]
    restart: bool,
    /// Start the master with TLS (a throwaway CA and certificate made for
    /// the run) and --auth: every client connects over TLS, each worker
    /// client with a worker token of its own and the submitting client
    /// with an operator token. For the cost of TLS and tokens beside a
    /// plain run. Not with --master.
    #[arg(long)]
    secure: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

/// Runs the bench against the master given with `--master` on the
/// command line, or else against a master it starts for the run.
pub async fn run(args: BenchArgs, master: &str) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        units: args.units,
        batch: args.batch,
        clients: args.clients,
        renew: args.renew,
        rate: args.rate,
        master: master_given_on_command_line().then(|| master.to_string()),
        master_binary: None,
        pending_only: args.pending_only,
        stream: args.stream,
        lease_on_commit: args.lease_on_commit,
        full_leases: args.full_leases,
        restart: args.restart,
        secure: args.secure,
    };
    let report = run_bench(&options).await?;
    let text = if args.json {
        serde_json::to_string(&report)? + "\n"
    } else {
        report.text()
    };
    super::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// True when `--master` was typed. Its default (and `TASKMASTER_ADDR`,
/// which may name a production master) must not send the bench's load to
/// a master the user did not name for it.
fn master_given_on_command_line() -> bool {
    super::Args::command()
        .try_get_matches()
        .ok()
        .and_then(|matches| {
            let sub = matches.subcommand_matches("bench")?;
            [sub.value_source("master"), matches.value_source("master")]
                .into_iter()
                .flatten()
                .next()
        })
        .is_some_and(|source| source == ValueSource::CommandLine)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of units per second"
        )),
    }
}
