//! The two floors under a commit's latency on this machine, each paced at
//! `--rate` as `tmctl bench --rate` paces its clients:
//! - the disk: appending a journal-sized record and `fdatasync`ing it, in
//!   the temporary dir where the bench's master keeps its journal;
//! - the disk with group commit: units arriving at `--rate`, one writer
//!   making each batch of them durable, as the journal does, with nothing
//!   else running: the least a durable answer can wait on this disk;
//! - the RPC: `Lease` calls (one unit, no wait) to an empty master, which
//!   take a worker call's gRPC path and the state lock but find nothing to
//!   lease, so write and sync nothing. One unary call each, or with
//!   `--stream` one message each on a `Work` stream per client (the path
//!   of `tmctl bench --stream` and of the stock worker).
//!
//! A durable commit pays at least both; BENCHMARKS.md compares them with
//! `tmctl bench` at the same rates.
//!
//! ```sh
//! cargo build --release --bin taskmaster --example latency_floor
//! target/release/examples/latency_floor --rate 3700 --seconds 10
//! target/release/examples/latency_floor --rate 14500 --seconds 10 --stream
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use taskmaster_cli::bench::local_master::LocalMaster;
use taskmaster_cli::bench::stats::{micros, percentile};
use taskmaster_client::Client;
use taskmaster_proto::v1::LeaseRequest;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_worker::work_stream::WorkStream;
use tokio::time::MissedTickBehavior;
// The channel every client uses: it sends the caller's token (issue 24).
use taskmaster_proto::credentials::MasterChannel as Channel;

#[derive(Parser)]
struct Args {
    /// Calls per second over all clients.
    #[arg(long, value_parser = positive)]
    rate: f64,
    /// How long to call for.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    seconds: f64,
    /// Concurrent clients, each on its own connection (as `tmctl bench`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// An existing (idle) master; by default one is started from the
    /// `taskmaster` binary of the same build, on a temporary data dir.
    #[arg(long)]
    master: Option<String>,
    /// Call on one `Work` stream per client (as `tmctl bench --stream` and
    /// the stock worker do) instead of one unary call each.
    #[arg(long)]
    stream: bool,
    /// Threads syncing the group-commit journal: with more than one, a
    /// batch is written while the one before it syncs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    writers: u32,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let units = group_commit_units(args.rate, args.seconds);
    if units.saturating_mul(UNIT_BYTES) > MOST_GROUP_COMMIT_BYTES {
        anyhow::bail!(
            "--rate {} for {} s is {units} units, over 4 GiB of journal at {UNIT_BYTES} B each: lower --rate or --seconds",
            args.rate,
            args.seconds
        );
    }
    let local = match &args.master {
        Some(_) => None,
        None => Some(LocalMaster::start(&master_binary()?, None).await?),
    };
    let url = match (&args.master, &local) {
        (Some(url), _) => url.clone(),
        (None, Some(local)) => local.url().to_string(),
        (None, None) => unreachable!("a master is given or started"),
    };
    let disk = tokio::task::spawn_blocking({
        let (rate, seconds) = (args.rate, args.seconds);
        move || sync_paced(rate, seconds)
    });
    print_line("disk: append 200 B + fdatasync", disk.await??, args.rate);
    let group = tokio::task::spawn_blocking({
        let (rate, seconds, writers) = (args.rate, args.seconds, args.writers);
        move || group_commit_paced(rate, seconds, writers)
    });
    let what = format!(
        "disk: group commit, 200 B a unit, {} writer(s)",
        args.writers
    );
    print_line(&what, group.await??, args.rate);
    let rpc = call_paced(&url, &args).await;
    if let Some(local) = local {
        local.stop().await;
    }
    let how = if args.stream {
        "on the Work stream"
    } else {
        "unary"
    };
    let what = format!(
        "rpc: Lease on an empty master, {} clients, {how}",
        args.clients
    );
    print_line(&what, rpc?, args.rate);
    Ok(())
}

fn print_line(what: &str, (mut samples, took): (Vec<u32>, Duration), rate: f64) {
    samples.sort_unstable();
    let at = |p| percentile(&samples, p).unwrap_or(0);
    println!(
        "{what}: {:.0}/s (offered {rate:.0}/s): p50 {} us, p90 {} us, p99 {} us, max {} us",
        samples.len() as f64 / took.as_secs_f64(),
        at(50.0),
        at(90.0),
        at(99.0),
        samples.last().copied().unwrap_or(0),
    );
}

/// One writer appending a record the size of a one-unit commit's journal
/// batch and syncing it, once a period; returns each append + sync. The
/// slots it fell behind on are skipped, so a stall counts once: the disk's
/// own cost per sync, not what units arriving meanwhile would wait (that is
/// [`group_commit_paced`]).
fn sync_paced(rate: f64, seconds: f64) -> std::io::Result<(Vec<u32>, Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("taskmaster-floor-")
        .tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("journal.log"))?;
    let record = [0x5a_u8; 200];
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut next = start;
    while next < start + Duration::from_secs_f64(seconds) {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let began = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        samples.push(micros(began.elapsed()));
        next += period;
        // Behind schedule: skip the missed slots, as the bench does.
        while next < Instant::now() {
            next += period;
        }
    }
    Ok((samples, start.elapsed()))
}

/// Bytes the group-commit journal writes a unit.
const UNIT_BYTES: usize = 200;

/// The group-commit journal of a whole run is zeroed ahead, so it must fit.
const MOST_GROUP_COMMIT_BYTES: usize = 4 << 30;

fn group_commit_units(rate: f64, seconds: f64) -> usize {
    (rate * seconds).ceil() as usize
}

/// The journal's best case: units arrive at `rate`; a writer thread takes
/// every unit queued so far, writes 200 B each into space zeroed ahead (as
/// the journal does) and `fdatasync`s. Returns each unit's time from
/// arrival to the end of the first sync that covered it. No RPC, no state,
/// no other process: what any design that answers only after its one
/// journal is durable pays on this disk at this rate.
///
/// With several `writers`, one may write its batch while another syncs.
/// Batches are written in order under the queue lock, and a sync makes
/// everything written before it durable, so a unit counts as durable when
/// any sync that began after its write has ended.
fn group_commit_paced(
    rate: f64,
    seconds: f64,
    writers: u32,
) -> std::io::Result<(Vec<u32>, Duration)> {
    use std::os::unix::fs::FileExt;
    use std::sync::{Arc, Condvar, Mutex};

    #[derive(Default)]
    struct Queue {
        arrived: Vec<Instant>,
        written: usize,
        durable: usize,
        samples: Vec<u32>,
        done: bool,
    }

    let dir = tempfile::Builder::new()
        .prefix("taskmaster-floor-")
        .tempdir()?;
    let file = std::fs::File::create(dir.path().join("journal.log"))?;
    let units = group_commit_units(rate, seconds);
    let zeros = vec![0_u8; 1 << 20];
    for _ in 0..(units * UNIT_BYTES).div_ceil(zeros.len()) {
        (&file).write_all(&zeros)?;
    }
    file.sync_all()?;
    let file = Arc::new(file);
    let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));

    let write_loop = {
        let (shared, file) = (Arc::clone(&shared), Arc::clone(&file));
        move || -> std::io::Result<()> {
            let (queue, wake) = &*shared;
            let record = [0x5a_u8; UNIT_BYTES];
            let mut batch = Vec::new();
            loop {
                let upto = {
                    let mut q = queue.lock().expect("queue lock");
                    while q.written == q.arrived.len() && !q.done {
                        q = wake.wait(q).expect("queue lock");
                    }
                    if q.written == q.arrived.len() {
                        return Ok(());
                    }
                    let from = q.written;
                    q.written = q.arrived.len();
                    batch.clear();
                    for _ in from..q.written {
                        batch.extend_from_slice(&record);
                    }
                    // Under the lock, so batches reach the file in order.
                    file.write_all_at(&batch, (from * UNIT_BYTES) as u64)?;
                    q.written
                };
                file.sync_data()?;
                let synced = Instant::now();
                let mut guard = queue.lock().expect("queue lock");
                let q = &mut *guard;
                if upto > q.durable {
                    let covered = &q.arrived[q.durable..upto];
                    q.samples
                        .extend(covered.iter().map(|t| micros(synced - *t)));
                    q.durable = upto;
                }
            }
        }
    };
    let threads: Vec<_> = (0..writers.max(1))
        .map(|_| std::thread::spawn(write_loop.clone()))
        .collect();

    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let (queue, wake) = &*shared;
    for i in 0..units {
        let due = start + period.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        queue
            .lock()
            .expect("queue lock")
            .arrived
            .push(Instant::now());
        wake.notify_one();
    }
    queue.lock().expect("queue lock").done = true;
    wake.notify_all();
    for thread in threads {
        thread.join().expect("a writer thread panicked")?;
    }
    let samples = std::mem::take(&mut queue.lock().expect("queue lock").samples);
    Ok((samples, start.elapsed()))
}

/// `target/release/taskmaster` for `target/release/examples/latency_floor`.
fn master_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| anyhow::anyhow!("cannot place {}", exe.display()))?;
    Ok(profile_dir.join("taskmaster"))
}

/// Every client calls once a period, the clients spread over it, as
/// `tmctl bench --rate` paces them; returns every call's latency.
async fn call_paced(url: &str, args: &Args) -> anyhow::Result<(Vec<u32>, Duration)> {
    let period = Duration::from_secs_f64(f64::from(args.clients) / args.rate);
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let mut call = LeaseCall::open(url, args.stream).await?;
        let first = start + period * i / args.clients;
        tasks.spawn(async move {
            let mut pacer = tokio::time::interval_at(first.into(), period);
            pacer.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut samples = Vec::new();
            while Instant::now() < until {
                pacer.tick().await;
                let request = LeaseRequest {
                    worker_id: format!("floor-{i}"),
                    max_units: 1,
                    wait_ms: 0,
                    compact: true,
                    worker_slots: 0,
                };
                let began = Instant::now();
                call.lease(request).await?;
                samples.push(micros(began.elapsed()));
            }
            Ok::<_, tonic::Status>(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    Ok((all, start.elapsed()))
}

/// One client's way of calling `Lease` (one per client: no box needed).
#[allow(clippy::large_enum_variant)]
enum LeaseCall {
    Unary(TaskMasterClient<Channel>),
    Stream(WorkStream),
}

impl LeaseCall {
    async fn open(url: &str, stream: bool) -> anyhow::Result<LeaseCall> {
        let raw = Client::connect(url).await?.raw();
        Ok(if stream {
            LeaseCall::Stream(WorkStream::open(raw).await?)
        } else {
            LeaseCall::Unary(raw)
        })
    }

    async fn lease(&mut self, request: LeaseRequest) -> Result<(), tonic::Status> {
        match self {
            LeaseCall::Unary(raw) => raw.lease(request).await.map(drop),
            LeaseCall::Stream(stream) => stream.lease(request).await.map(drop),
        }
    }
}
