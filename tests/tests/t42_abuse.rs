//! One abusive client must not slow the others' commits (issue 24): a
//! master started with `--auth` and its default limits, a real worker
//! running a pipeline with its own token, and one identity flooding
//! submits and lease long-polls until the limits refuse it with
//! RESOURCE_EXHAUSTED, and on after that.
//!
//! The abuser holds an admin token, so no role refuses any of its calls:
//! only the limits stand between it and the others. Its long-polls are
//! `Lease` calls waiting the longest a lease call may (60 s): it opens
//! more than `--max-long-polls` (10,000), over enough connections that
//! HTTP/2's streams per connection do not stop it first, and calls again
//! 100 ms after each refusal. `--max-long-polls-per-identity` (64) lets 64
//! of them wait; the rest are refused, each answered 5 to 15 s after its call.
//! Its submits come at up to ten times `--rate-per-identity` (200 a
//! second) from four tasks, each sending its next once the last is
//! answered (a refusal is answered 0.5 to 1.5 s after its call); they hold a group
//! named twice, so those the rate lets through are refused by the core, and none adds work the honest worker would have
//! to run: what is measured is what the flood costs the master, not the
//! work an identity may legitimately add at the allowed rate.
//!
//! The honest pipeline is chains of one-unit exec stages, one chain per
//! worker slot: every commit makes the chain's next unit and leases it to
//! the committing worker in the same call (`lease_next`), so no unit is
//! ever left ready for the abuser's waiting long-polls to take. (Theft by
//! an identity allowed to lease is not what limits are for: a worker token
//! runs what it leases, and a misbehaving one is revoked.) Its first stage
//! waits for a file, so the measured stretch starts once the flood is at
//! its limits.
//!
//! `t42_a_flood_is_refused_and_the_pipeline_finishes` runs in `cargo
//! test`; `t42_commit_throughput_with_and_without_an_abuser` is a benchmark:
//! `cargo test --release -p taskmaster-tests --test t42_abuse -- --ignored
//! --nocapture` (after `cargo build --release --workspace --bins`), each
//! round one run undisturbed and one with each flood (both, long-polls
//! only, submits only), each run on a fresh master. It reports the CPU
//! used over the measured stretch: the master's, the test process's (the
//! abuser's client and the operator's), and the machine's (the rest is the
//! worker's and its commands', and whatever else the machine ran). `TM_ABUSE_MASTER_ARGS` adds
//! flags to the master's (e.g. `--max-long-polls-per-identity 0` or
//! `--rate-per-identity 50`, to compare settings), `TM_ABUSE_ROUNDS` sets
//! the rounds (3), `TM_ABUSE_FLOODS` the runs of a round (`none,both,
//! long-polls,submits`; the first must be `none`), and `TM_ABUSE_OPEN_LOOP`
//! makes the abuser send its submits without waiting for answers,
//! `TM_ABUSE_CHAINS` the chains of 64 stages (4, which the worker runs
//! at once).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskmaster_client::{Client, ClientError};
use taskmaster_proto::credentials::Credentials;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    GroupSpec, LeaseRequest, PipelineSpec, PipelineState, ReleaseRequest, Role,
};
use taskmaster_tests::*;
use tokio::task::JoinSet;
use tonic::Code;

/// The master's `--max-long-polls` default (master/src/auth/limits.rs).
const LONG_POLLS_MAX: usize = 10_000;
/// The abuser's long-polls: over the limit, so some are always refused.
/// `TM_ABUSE_LONG_POLLS=N` sets another number for the benchmark (under
/// the limit none is refused: then the flood is taken as established 2 s
/// after it starts), to see how the cost grows with the calls held.
fn abuser_long_polls() -> usize {
    std::env::var("TM_ABUSE_LONG_POLLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(LONG_POLLS_MAX + 200)
}
/// Connections they are spread over: under the 1,024 streams a connection
/// may carry (`--max-streams-per-connection`).
const ABUSER_CONNECTIONS: usize = 12;
/// The abuser's submits a second: ten times `--rate-per-identity`.
const ABUSER_SUBMITS_PER_S: u32 = 2_000;
/// The longest a lease call may wait (the master's `LEASE_WAIT_MS_MAX`).
const LEASE_WAIT_MS_MAX: u32 = 60_000;

/// A master with `--auth`, its tokens, and a worker.
struct Stage {
    tmp: tempfile::TempDir,
    master: MasterProcess,
    _worker: WorkerProcess,
    /// The honest operator (submits, reads status).
    operator: PathBuf,
    /// The abuser's admin token.
    mallory: Credentials,
    rt: tokio::runtime::Runtime,
}

impl Stage {
    /// A master with `--auth` and default limits, tokens for the honest
    /// operator, the worker `w1` and the abuser `mallory`, and the worker
    /// started with `slots` slots.
    fn new(slots: u32) -> Stage {
        let tmp = tempfile::tempdir().unwrap();
        let extra = std::env::var("TM_ABUSE_MASTER_ARGS").unwrap_or_default();
        let mut args = vec!["--auth"];
        args.extend(extra.split_whitespace());
        let master =
            MasterProcess::start_with(&tmp.path().join("data"), "127.0.0.1:0", 30_000, &args);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let admin_file = master.data_dir.join("admin.token");
        let admin = Credentials::from_sources(None, Some(&admin_file)).unwrap();
        let url = master.url();
        let make = |name: &str, role: Role| -> String {
            rt.block_on(async {
                let admin = Client::connect_as(&url, None, admin.clone()).await.unwrap();
                admin.create_token(name, role, 0).await.unwrap().token
            })
        };
        let write_token = |name: &str, role: Role| -> PathBuf {
            let path = tmp.path().join(format!("{name}.token"));
            write_file(&path, format!("{}\n", make(name, role)));
            path
        };
        let operator = write_token("ops", Role::Operator);
        let worker_token = write_token("w1", Role::Worker);
        let mallory = Credentials::token(&make("mallory", Role::Admin)).unwrap();
        let worker = WorkerProcess::start_env(
            &url,
            slots,
            tmp.path(),
            &[
                ("TASKMASTER_TOKEN_FILE", worker_token.to_str().unwrap()),
                ("TASKMASTER_WORKER_ID", "w1"),
            ],
        );
        Stage {
            tmp,
            master,
            _worker: worker,
            operator,
            mallory,
            rt,
        }
    }

    fn operator_client(&self) -> Client {
        let creds = Credentials::from_sources(None, Some(&self.operator)).unwrap();
        self.rt
            .block_on(Client::connect_as(&self.master.url(), None, creds))
            .unwrap()
    }

    /// The file the chains' first stage waits for.
    fn go_file(&self) -> PathBuf {
        self.tmp.path().join("go")
    }

    /// Submits `chains` chains of `stages` one-unit stages (as the
    /// operator) and waits until the worker holds every first unit, each
    /// waiting for the go file.
    fn submit_chains(&self, client: &Client, chains: u32, stages: u32) -> String {
        let inputs: Vec<String> = (0..chains)
            .map(|i| {
                let path = self.tmp.path().join(format!("in/{i}.txt"));
                write_file(&path, "x\n");
                path.to_str().unwrap().to_string()
            })
            .collect();
        let go = self.go_file();
        let wait_for_go = format!(
            "while [ ! -e {go} ]; do sleep 0.01; done; echo x > \"$TM_OUTPUT_DIR/o\"",
            go = go.display()
        );
        let groups = (0..stages)
            .map(|stage| GroupSpec {
                name: format!("s{stage}"),
                task: "exec".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    if stage == 0 {
                        wait_for_go.clone()
                    } else {
                        "echo x > \"$TM_OUTPUT_DIR/o\"".into()
                    },
                ],
                inputs: if stage == 0 {
                    inputs.clone()
                } else {
                    Vec::new()
                },
                after: if stage == 0 {
                    Vec::new()
                } else {
                    vec![format!("s{}", stage - 1)]
                },
                max_attempts: 1,
                ..GroupSpec::default()
            })
            .collect();
        let spec = PipelineSpec {
            name: "chains".into(),
            groups,
            ..PipelineSpec::default()
        };
        let id = self.rt.block_on(client.submit(spec)).unwrap();
        wait_until(
            "the worker to hold every first unit",
            Duration::from_secs(30),
            || {
                let status = self.rt.block_on(client.status(&id)).ok()?;
                let first = status.groups.first()?.counts?;
                (first.leased == u64::from(chains)).then_some(())
            },
        );
        id
    }

    /// Starts the chains and polls the pipeline's status as the operator
    /// until it finishes; returns what the run measured.
    fn run_chains(&self, client: &Client, id: &str, units: u64) -> Measured {
        let cpu_before = self.master_cpu_s(client);
        let others_before = self.others_cpu_s();
        let started = Instant::now();
        write_file(&self.go_file(), "go");
        let mut status_us = Vec::new();
        let finished = loop {
            let asked = Instant::now();
            let status = self.rt.block_on(client.status(id)).unwrap();
            status_us.push(asked.elapsed().as_micros() as u64);
            if taskmaster_client::client::is_finished(status.state()) {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the pipeline did not finish within 300 s: {finished:?}",
                finished = status.groups
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        assert_eq!(
            finished.state(),
            PipelineState::Succeeded,
            "{:?}",
            finished.failed_units
        );
        let committed: u64 = finished
            .groups
            .iter()
            .map(|g| g.counts.unwrap_or_default().committed)
            .sum();
        assert_eq!(committed, units);
        status_us.sort_unstable();
        let others_after = self.others_cpu_s();
        Measured {
            commits_per_s: units as f64 / took.as_secs_f64(),
            took,
            status_p50_us: status_us[status_us.len() / 2],
            status_p99_us: status_us[(status_us.len() - 1) * 99 / 100],
            master_cpu_s: self.master_cpu_s(client) - cpu_before,
            client_cpu_s: others_after.0 - others_before.0,
            machine_cpu_s: others_after.1 - others_before.1,
        }
    }

    /// CPU seconds used so far by this process (the abuser's and the
    /// operator's clients) and by the whole machine.
    fn others_cpu_s(&self) -> (f64, f64) {
        (process_cpu_s("self"), machine_cpu_s())
    }

    fn master_cpu_s(&self, client: &Client) -> f64 {
        self.rt
            .block_on(client.master_status())
            .unwrap()
            .cpu_seconds
    }
}

/// What one run of the chains measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Units committed a second, from the go file to the pipeline's end.
    commits_per_s: f64,
    took: Duration,
    /// The honest operator's `GetStatus` calls meanwhile.
    status_p50_us: u64,
    status_p99_us: u64,
    master_cpu_s: f64,
    /// This process's: the abuser's client and the operator's.
    client_cpu_s: f64,
    /// Every process's (the machine's busy time): the rest is the
    /// worker's, its commands' and anything else the machine ran. (The
    /// worker's own figure would count its commands only once reaped, and
    /// the first stage's commands wait for the flood to reach its limits.)
    machine_cpu_s: f64,
}

impl Measured {
    /// The machine's CPU seconds not the master's or the clients'.
    fn rest_cpu_s(&self) -> f64 {
        self.machine_cpu_s - self.master_cpu_s - self.client_cpu_s
    }

    /// The CPU each used over the run, in cores (CPU seconds a second).
    fn cores(&self) -> String {
        let took = self.took.as_secs_f64();
        format!(
            "CPU (cores) master {:.2}, clients {:.2}, the rest {:.2}, machine {:.2}",
            self.master_cpu_s / took,
            self.client_cpu_s / took,
            self.rest_cpu_s() / took,
            self.machine_cpu_s / took
        )
    }
}

/// Clock ticks a second of the times in `/proc` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// CPU seconds process `pid` ("self" for this one) has used (0 if unknown).
fn process_cpu_s(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name, which may hold spaces: state is
    // the first, utime the 12th, stime the 13th.
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.iter().skip(10).take(2).sum::<u64>() as f64 / USER_HZ
}

/// CPU seconds every CPU of the machine has been busy (not idle or
/// waiting for I/O).
fn machine_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle, iowait.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy as f64 / USER_HZ
}

/// What the abuser's calls met.
#[derive(Debug, Default)]
struct AbuseCounts {
    /// Lease calls refused (RESOURCE_EXHAUSTED naming `--max-long-polls`).
    long_polls_refused: AtomicU64,
    /// Lease calls that came back empty after their wait.
    long_polls_empty: AtomicU64,
    /// Leases it was granted (and gave back at once): units it took from
    /// the ready queue.
    leases_granted: AtomicU64,
    /// Submits refused by the rate limit (`--rate-per-identity`).
    submits_rate_refused: AtomicU64,
    /// Submits that passed the edge and were refused by the core.
    submits_let_through: AtomicU64,
    /// Any other answer, and its last message.
    other: AtomicU64,
    other_message: std::sync::Mutex<String>,
    /// Set when a long-poll, then a submit, was first refused by a limit.
    long_polls_at_limit: AtomicBool,
    submits_at_limit: AtomicBool,
}

impl AbuseCounts {
    fn other(&self, what: &str, status: &tonic::Status) {
        self.other.fetch_add(1, Ordering::Relaxed);
        *self.other_message.lock().unwrap() = format!("{what}: {status:?}");
    }

    fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "long-polls: {} refused at --max-long-polls, {} came back empty, {} leases granted to it; \
             submits: {} refused at --rate-per-identity, {} let through (and refused by the core); \
             {} other answers (last: {})",
            get(&self.long_polls_refused),
            get(&self.long_polls_empty),
            get(&self.leases_granted),
            get(&self.submits_rate_refused),
            get(&self.submits_let_through),
            get(&self.other),
            self.other_message.lock().unwrap()
        )
    }
}

/// What the abuser floods: both, as the test does, or one of them, to
/// tell their costs apart in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flood {
    submits: bool,
    long_polls: bool,
}

impl Flood {
    const NONE: Flood = Flood {
        submits: false,
        long_polls: false,
    };
    const SUBMITS: Flood = Flood {
        submits: true,
        long_polls: false,
    };
    const LONG_POLLS: Flood = Flood {
        submits: false,
        long_polls: true,
    };
    const BOTH: Flood = Flood {
        submits: true,
        long_polls: true,
    };

    /// The flood a `TM_ABUSE_FLOODS` entry names.
    fn named(name: &str) -> Flood {
        match name.trim() {
            "none" => Flood::NONE,
            "submits" => Flood::SUBMITS,
            "long-polls" => Flood::LONG_POLLS,
            "both" => Flood::BOTH,
            other => panic!("TM_ABUSE_FLOODS: {other:?} is not none, submits, long-polls or both"),
        }
    }

    fn name(self) -> &'static str {
        match (self.submits, self.long_polls) {
            (false, false) => "undisturbed",
            (true, false) => "submits flooded",
            (false, true) => "long-polls flooded",
            (true, true) => "both flooded",
        }
    }
}

/// The abusive client: its tasks run until it is dropped.
struct Abuser {
    flood: Flood,
    tasks: JoinSet<()>,
    counts: Arc<AbuseCounts>,
}

impl Abuser {
    /// Starts `flood` against `url` as `credentials` on `rt`.
    fn start(
        rt: &tokio::runtime::Runtime,
        url: &str,
        credentials: &Credentials,
        flood: Flood,
    ) -> Abuser {
        let counts = Arc::new(AbuseCounts::default());
        let mut tasks = JoinSet::new();
        let _entered = rt.enter();
        let clients: Vec<Client> = (0..ABUSER_CONNECTIONS)
            .map(|_| {
                rt.block_on(Client::connect_as(url, None, credentials.clone()))
                    .unwrap()
            })
            .collect();
        if flood.long_polls {
            for i in 0..abuser_long_polls() {
                let raw = clients[i % clients.len()].raw();
                tasks.spawn(long_poll_forever(raw, Arc::clone(&counts)));
            }
        }
        if flood.submits {
            let submitters = 4;
            let period =
                Duration::from_secs_f64(f64::from(submitters) / f64::from(ABUSER_SUBMITS_PER_S));
            for i in 0..submitters {
                let client = clients[i as usize].clone();
                tasks.spawn(submit_forever(client, period, Arc::clone(&counts)));
            }
        }
        Abuser {
            flood,
            tasks,
            counts,
        }
    }

    /// Waits until each flood has been refused by its limit (long-polls
    /// under the limit: for 2 s).
    fn wait_at_limits(&self) {
        if self.flood.long_polls && abuser_long_polls() <= LONG_POLLS_MAX {
            std::thread::sleep(Duration::from_secs(2));
        }
        wait_until(
            "the abuser to be refused by its limits",
            Duration::from_secs(60),
            || {
                let c = &self.counts;
                let polls = !self.flood.long_polls
                    || abuser_long_polls() <= LONG_POLLS_MAX
                    || c.long_polls_at_limit.load(Ordering::Relaxed);
                let submits = !self.flood.submits || c.submits_at_limit.load(Ordering::Relaxed);
                (polls && submits).then_some(())
            },
        );
    }
}

/// One of the abuser's long-polls, again and again: a lease call waiting
/// as long as a lease call may; refused, it tries again 100 ms later; a
/// lease it is granted it gives back at once.
async fn long_poll_forever(
    mut raw: TaskMasterClient<taskmaster_proto::credentials::MasterChannel>,
    counts: Arc<AbuseCounts>,
) {
    loop {
        let request = LeaseRequest {
            worker_id: "mallory".into(),
            max_units: 1,
            wait_ms: LEASE_WAIT_MS_MAX,
            compact: true,
            worker_slots: 0,
        };
        match raw.lease(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if reply.leases.is_empty() {
                    counts.long_polls_empty.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let leases =
                    taskmaster_proto::compact::expand(reply.leases, &reply.lease_groups).unwrap();
                counts
                    .leases_granted
                    .fetch_add(leases.len() as u64, Ordering::Relaxed);
                let release = ReleaseRequest {
                    server_token: leases[0].server_token.clone(),
                    leases: leases.iter().map(|l| l.to_ref()).collect(),
                };
                if let Err(status) = raw.release(release).await {
                    counts.other("Release", &status);
                }
            }
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && status.message().contains("--max-long-polls") =>
            {
                counts.long_polls_refused.fetch_add(1, Ordering::Relaxed);
                counts.long_polls_at_limit.store(true, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => {
                counts.other("Lease", &status);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A pipeline the core refuses (a group named twice), once it has passed
/// the edge: a submit that adds no work.
fn refused_spec() -> PipelineSpec {
    let group = GroupSpec {
        name: "twice".into(),
        task: "exec".into(),
        command: vec!["true".into()],
        ..GroupSpec::default()
    };
    PipelineSpec {
        name: "flood".into(),
        groups: vec![group.clone(), group],
        ..PipelineSpec::default()
    }
}

/// The abuser's submits, every `period`, for ever: each after the last
/// is answered, or with `TM_ABUSE_OPEN_LOOP` set, each on its own without
/// waiting for the others' answers (so refusals that are answered late do
/// not slow it).
async fn submit_forever(client: Client, period: Duration, counts: Arc<AbuseCounts>) {
    let open_loop = std::env::var_os("TM_ABUSE_OPEN_LOOP").is_some();
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Dropped (and its calls aborted) with this task.
    let mut in_flight = JoinSet::new();
    loop {
        every.tick().await;
        if open_loop {
            while in_flight.try_join_next().is_some() {}
            in_flight.spawn(submit_once(client.clone(), Arc::clone(&counts)));
        } else {
            submit_once(client.clone(), Arc::clone(&counts)).await;
        }
    }
}

async fn submit_once(client: Client, counts: Arc<AbuseCounts>) {
    match client.submit(refused_spec()).await {
        Err(ClientError::Rpc { code, message })
            if code == Code::ResourceExhausted && message.contains("--rate-per-identity") =>
        {
            counts.submits_rate_refused.fetch_add(1, Ordering::Relaxed);
            counts.submits_at_limit.store(true, Ordering::Relaxed);
        }
        Err(ClientError::Rpc {
            code: Code::InvalidArgument,
            ..
        }) => {
            counts.submits_let_through.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => counts.other("Submit", &tonic::Status::unknown(e.to_string())),
        Ok(id) => counts.other("Submit", &tonic::Status::unknown(format!("accepted {id}"))),
    }
}

/// One run: a fresh master, worker and pipeline, with the abuser
/// flooding `flood` (if anything) from before the first stage's end to the
/// pipeline's.
fn one_run(chains: u32, stages: u32, flood: Flood) -> (Measured, Option<Arc<AbuseCounts>>) {
    let stage = Stage::new(chains);
    let client = stage.operator_client();
    let id = stage.submit_chains(&client, chains, stages);
    let abuser = (flood != Flood::NONE).then(|| {
        let abuser = Abuser::start(&stage.rt, &stage.master.url(), &stage.mallory, flood);
        abuser.wait_at_limits();
        abuser
    });
    let measured = stage.run_chains(&client, &id, u64::from(chains * stages));
    let counts = abuser.map(|abuser| {
        let counts = Arc::clone(&abuser.counts);
        drop(abuser);
        counts
    });
    (measured, counts)
}

impl Drop for Abuser {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

#[test]
fn t42_a_flood_is_refused_and_the_pipeline_finishes() {
    let (chains, stages) = (2, 12);
    let (measured, counts) = one_run(chains, stages, Flood::BOTH);
    let counts = counts.unwrap();
    println!(
        "with the abuser: {:.0} commits/s over {:.2} s; the operator's status p50 {} us, p99 {} us; abuser: {}",
        measured.commits_per_s,
        measured.took.as_secs_f64(),
        measured.status_p50_us,
        measured.status_p99_us,
        counts.summary()
    );
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert!(get(&counts.long_polls_refused) > 0, "{}", counts.summary());
    assert!(
        get(&counts.submits_rate_refused) > 0,
        "{}",
        counts.summary()
    );
    // Every commit leased the chain's next unit itself: nothing was ever
    // left ready for the abuser's long-polls to take.
    assert_eq!(get(&counts.leases_granted), 0, "{}", counts.summary());
    assert_eq!(get(&counts.other), 0, "{}", counts.summary());
}

/// Rounds of the benchmark, each one run undisturbed and one with each
/// flood.
const ROUNDS: usize = 3;

#[test]
#[ignore = "a benchmark: cargo test --release -p taskmaster-tests --test t42_abuse -- --ignored --nocapture"]
fn t42_commit_throughput_with_and_without_an_abuser() {
    let stages = 64;
    let chains = std::env::var("TM_ABUSE_CHAINS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let floods: Vec<Flood> = match std::env::var("TM_ABUSE_FLOODS") {
        Ok(names) => names.split(',').map(Flood::named).collect(),
        Err(_) => vec![Flood::NONE, Flood::BOTH, Flood::LONG_POLLS, Flood::SUBMITS],
    };
    let rounds = std::env::var("TM_ABUSE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS);
    let mut runs: Vec<(Flood, Measured)> = Vec::new();
    for round in 0..rounds {
        for &flood in &floods {
            let (m, counts) = one_run(chains, stages, flood);
            println!(
                "round {round} {}: {:.0} commits/s ({} units in {:.2} s), operator status p50 {} us p99 {} us, {}{}",
                flood.name(),
                m.commits_per_s,
                chains * stages,
                m.took.as_secs_f64(),
                m.status_p50_us,
                m.status_p99_us,
                m.cores(),
                counts.map_or(String::new(), |c| format!("; abuser: {}", c.summary()))
            );
            runs.push((flood, m));
        }
    }
    let median = |flood: Flood, f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|(fl, _)| *fl == flood)
            .map(|(_, m)| f(m))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let undisturbed = median(Flood::NONE, &|m| m.commits_per_s);
    // Each flooded run against the undisturbed one of its round: the
    // machine's speed drifts between rounds.
    let ratio = |flood: Flood| {
        let mut v: Vec<f64> = runs
            .chunks(floods.len())
            .filter_map(|round| {
                let base = round.iter().find(|(f, _)| *f == Flood::NONE)?;
                let run = round.iter().find(|(f, _)| *f == flood)?;
                Some(run.1.commits_per_s / base.1.commits_per_s)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for &flood in &floods {
        let commits = median(flood, &|m| m.commits_per_s);
        let per_s = |cpu: fn(&Measured) -> f64| median(flood, &|m| cpu(m) / m.took.as_secs_f64());
        println!(
            "median of {rounds}, {}: {commits:.0} commits/s ({:.2} of undisturbed), operator status p50 {:.0} us, p99 {:.0} us, \
             CPU (cores) master {:.2}, clients {:.2}, the rest {:.2}, machine {:.2}; \
             median of the rounds' ratios to their undisturbed run {:.2}",
            flood.name(),
            commits / undisturbed,
            median(flood, &|m| m.status_p50_us as f64),
            median(flood, &|m| m.status_p99_us as f64),
            per_s(|m| m.master_cpu_s),
            per_s(|m| m.client_cpu_s),
            per_s(|m| m.rest_cpu_s()),
            per_s(|m| m.machine_cpu_s),
            ratio(flood),
        );
    }
}
