//! The fault-injection harness: a real master and several real workers on
//! 127.0.0.1, the workers talking to the master through a
//! [`FaultProxy`](crate::proxy::FaultProxy), and faults injected at moments
//! drawn from one recorded seed:
//!
//! - workers SIGKILLed, and workers running with the fail point
//!   `worker-before-commit` (they abort between writing output and
//!   committing it);
//! - zombie workers: SIGSTOP for 1.5–3 lease times, then SIGCONT;
//! - the master SIGKILLed, or restarted with one of the journal fail points
//!   armed (it aborts around a journal write, sync or reply) and restarted
//!   again on the same data dir and port;
//! - a fenced restore: at one master kill the data dir (journal and
//!   snapshots; the store is outside it) is copied; at a later one the
//!   master is started on the copy instead, as an operator restores a
//!   backup. The restored lineage survives: what the abandoned one
//!   acknowledged after the copy point is lost on purpose, and nothing it
//!   granted may ever be committed (see [`check::Lineages`]);
//! - dropped connections, delayed chunks and lost replies in the proxy.
//!
//! Beside the batches runs one wide pipeline, whose gather's input list is
//! over what a lease carries inline (`inputs_paged`, listed by the worker
//! with `ListInputs`).
//!
//! A profile with `secure` runs all of it with TLS and `--auth` on: the
//! master requires a client certificate and a token, the workers are known
//! by their certificates, the harness and tmctl by an operator token
//! ([`access`]), and the proxy passes TLS through (its lost replies are
//! then lost TLS records, [`crate::proxy::Carried::Tls`]).
//!
//! While it runs it reads what the master has committed, and checks that
//! nothing it saw acknowledged ever goes away; at the end
//! [`check::verify`] checks the exactly-once invariants. The seed is
//! printed; `TM_FAULT_SEED=N` replays the same schedule (the processes'
//! timing still differs between runs).

pub mod access;
pub mod check;
pub mod procs;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use taskmaster_client::Client;
use taskmaster_proto::v1::PipelineState;

use crate::free_port;
use crate::proxy::{Carried, FaultProxy, ProxyCounts, ProxySettings};
use access::{Reach, Security};
use check::{Acked, Expected, Lineages, LogSkips, Verified};
use procs::{FailPoint, Master, MasterSpec, Proc, aborted, start_worker};
use workload::{GROUPS, WIDE_GROUPS, WIDE_NAME, Workload, is_tick_run};

/// Chance that a `worker-before-commit` worker aborts at a commit.
const WORKER_FAILPOINT: &str = "worker-before-commit=10%return";
/// How often the harness reads what the master has committed.
const REFRESH_EVERY: Duration = Duration::from_millis(1000);
/// An armed master that has not aborted by then is SIGKILLed.
const ARMED_WAIT_MAX: Duration = Duration::from_secs(20);
/// Pause between turns of the harness loop.
const TICK: Duration = Duration::from_millis(20);
/// After a restore, how long workers may still log acknowledgements they
/// got from the abandoned master, beyond the longest zombie pause (three
/// lease times): proxy delays and the log write itself.
const RESTORE_LOG_GRACE: Duration = Duration::from_secs(2);
/// The proxy's chances are per 16 KiB chunk, so a 4 MiB page of the wide
/// gather's inputs (about 260 chunks) would almost never get through at
/// the profile's rates (at 2 % lost replies per chunk, 0.5 % of pages do).
/// While that gather runs, every chance is divided by this: a listing then
/// gets through about 3 times in 4, and the rest of the traffic still sees
/// faults.
const CALM_DIVISOR: u32 = 20;

/// How big a run is and how hard it is hit.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub seed: u64,
    /// Units (over every group of every pipeline) to run at least.
    pub units_min: u64,
    /// `gen` units per pipeline (each pipeline has twice that plus one).
    pub units_per_batch: u32,
    /// Pipelines kept running at once.
    pub pipelines_in_flight: usize,
    pub workers: usize,
    /// Of `workers`, how many run with `worker-before-commit` armed.
    pub failpoint_workers: usize,
    pub slots: u32,
    pub lease_ms: u64,
    pub worker_kills: u32,
    pub zombie_pauses: u32,
    /// Master kill events: a SIGKILL, or a SIGKILL and a restart with a
    /// journal fail point armed (which then aborts the master by itself).
    pub master_kills: u32,
    /// Restores of a copy of the master's data dir (each needs a copy
    /// taken at an earlier master kill).
    pub restores: u32,
    /// A live schedule firing every 2 s through every fault: each logical
    /// time from its first to its last must run once, and each published
    /// partition be one succeeded run's (`check::check_schedule`).
    pub schedule: bool,
    /// The wide pipeline: `many` units, and files each (0: none).
    pub wide_units: u32,
    pub wide_files: u32,
    /// Lost replies to reach at least (the run goes on until then).
    pub lost_replies_min: u64,
    /// Mean time between fault events.
    pub fault_gap_ms: u64,
    pub proxy: ProxySettings,
    /// The whole run must end by then.
    pub deadline: Duration,
    /// TLS and `--auth` on: every client with a certificate and an
    /// identity (see [`access`]).
    pub secure: bool,
}

impl Profile {
    /// The profile `cargo test` runs: well under two minutes on 2 cores.
    pub fn short(seed: u64) -> Profile {
        Profile {
            name: "short".into(),
            seed,
            units_min: 400,
            units_per_batch: 100,
            pipelines_in_flight: 2,
            workers: 4,
            failpoint_workers: 1,
            slots: 3,
            lease_ms: 800,
            worker_kills: 5,
            zombie_pauses: 5,
            master_kills: 4,
            restores: 1,
            schedule: false,
            // 15,000 inputs of ~315 bytes: 4.5 MB, over the 4 MiB inline.
            wide_units: 2,
            wide_files: 7_500,
            lost_replies_min: 10,
            fault_gap_ms: 900,
            proxy: ProxySettings {
                drop_ppm: 3_000,
                delay_ppm: 30_000,
                delay_ms_max: 200,
                lost_reply_ppm: 20_000,
            },
            deadline: Duration::from_secs(110),
            secure: false,
        }
    }

    /// The short profile with TLS and `--auth` on (`cargo test` runs it
    /// too, beside the plain one).
    pub fn short_secure(seed: u64) -> Profile {
        Profile {
            name: "short-secure".into(),
            secure: true,
            ..Profile::short(seed)
        }
    }

    /// The long profile, sized by TM_FAULT_* environment variables.
    pub fn long(seed: u64) -> Profile {
        let env = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Profile {
            name: "long".into(),
            seed,
            units_min: env("TM_FAULT_UNITS", 10_000),
            units_per_batch: env("TM_FAULT_UNITS_PER_PIPELINE", 500) as u32,
            pipelines_in_flight: env("TM_FAULT_PIPELINES_IN_FLIGHT", 3) as usize,
            workers: env("TM_FAULT_WORKERS", 6) as usize,
            failpoint_workers: env("TM_FAULT_FAILPOINT_WORKERS", 1) as usize,
            slots: env("TM_FAULT_SLOTS", 3) as u32,
            lease_ms: env("TM_FAULT_LEASE_MS", 800),
            worker_kills: env("TM_FAULT_WORKER_KILLS", 200) as u32,
            zombie_pauses: env("TM_FAULT_ZOMBIES", 500) as u32,
            master_kills: env("TM_FAULT_MASTER_KILLS", 20) as u32,
            restores: env("TM_FAULT_RESTORES", 3) as u32,
            schedule: env("TM_FAULT_SCHEDULE", 1) == 1,
            wide_units: env("TM_FAULT_WIDE_UNITS", 2) as u32,
            wide_files: env("TM_FAULT_WIDE_FILES", 10_000) as u32,
            lost_replies_min: env("TM_FAULT_LOST_REPLIES", 1_000),
            fault_gap_ms: env("TM_FAULT_GAP_MS", 700),
            proxy: ProxySettings {
                drop_ppm: env("TM_FAULT_DROP_PPM", 3_000) as u32,
                delay_ppm: env("TM_FAULT_DELAY_PPM", 30_000) as u32,
                delay_ms_max: env("TM_FAULT_DELAY_MS_MAX", 200) as u32,
                lost_reply_ppm: env("TM_FAULT_LOST_REPLY_PPM", 25_000) as u32,
            },
            deadline: Duration::from_secs(env("TM_FAULT_DEADLINE_S", 3_600)),
            secure: env("TM_FAULT_SECURE", 0) == 1,
        }
    }
}

/// The seed: TM_FAULT_SEED, or a fresh one. Printed either way.
pub fn seed_from_env() -> u64 {
    let seed = std::env::var("TM_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("fault seed: {seed} (replay with TM_FAULT_SEED={seed})");
    seed
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    WorkerKill,
    Zombie,
    /// SIGKILL the master; restart it with this fail point armed, if any.
    MasterKill(Option<FailPoint>),
    /// SIGKILL the master, copy its data dir, restart it.
    MasterCopy,
    /// SIGKILL the master and start one on the last copy instead.
    Restore,
}

/// Faults injected and what came of them.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub worker_sigkills: u64,
    pub worker_failpoint_aborts: u64,
    pub zombie_pauses: u64,
    pub master_sigkills: u64,
    /// Data-dir copies taken, and masters started on one (restores).
    pub copies: u64,
    pub restores: u64,
    /// Incarnations abandoned by restores.
    pub dead_incarnations: u64,
    /// Master aborts per journal fail point.
    pub master_failpoint_aborts: BTreeMap<FailPoint, u64>,
    /// Armed masters that had not aborted after ARMED_WAIT_MAX.
    pub armed_timeouts: u64,
    pub submissions_acked: u64,
    pub submissions_failed: u64,
    /// Pipelines the master has that no `tmctl submit` reported (its reply
    /// was lost to a master crash); checked like the others.
    pub orphan_pipelines: u64,
    pub refreshes: u64,
    /// Time the proxy's chances were divided by CALM_DIVISOR (the wide
    /// gather running).
    pub calm: Duration,
}

impl Counts {
    pub fn master_deaths(&self) -> u64 {
        self.master_sigkills + self.master_failpoint_aborts.values().sum::<u64>()
    }
}

/// Everything a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    pub profile: String,
    pub seed: u64,
    /// TLS and `--auth` were on.
    pub secure: bool,
    pub elapsed: Duration,
    pub counts: Counts,
    pub proxy: ProxyCounts,
    pub verified: Verified,
    /// Inputs the wide gather must count (0: no wide pipeline).
    pub wide_inputs: u64,
    /// Problems seen while running (before the final check).
    pub violations: Vec<String>,
    /// Where the logs were kept, when the run failed.
    pub kept_dir: Option<PathBuf>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.verified.violations.is_empty()
    }

    /// Panics, naming the seed and the violations, unless the run is clean.
    pub fn assert_clean(&self) {
        if self.is_clean() {
            return;
        }
        let all: Vec<&String> = self
            .violations
            .iter()
            .chain(&self.verified.violations)
            .collect();
        let shown: Vec<String> = all.iter().take(30).map(|v| format!("  - {v}")).collect();
        panic!(
            "fault run {} (seed {}, replay with TM_FAULT_SEED={}) broke {} invariant(s); logs in {:?}:\n{}\n{self}",
            self.profile,
            self.seed,
            self.seed,
            all.len(),
            self.kept_dir,
            shown.join("\n")
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let v = &self.verified;
        let p = &self.proxy;
        writeln!(
            f,
            "fault run `{}`{}, seed {}, {:.1} s",
            self.profile,
            if self.secure {
                " (TLS, client certificates and --auth)"
            } else {
                ""
            },
            self.seed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  work:     {} pipelines ({} orphan), {} units, {} executions ({:.2} per unit)",
            v.pipelines,
            c.orphan_pipelines,
            v.units,
            v.executions,
            v.executions as f64 / v.units.max(1) as f64
        )?;
        writeln!(
            f,
            "  workers:  {} SIGKILL, {} aborted at worker-before-commit, {} zombie pauses",
            c.worker_sigkills, c.worker_failpoint_aborts, c.zombie_pauses
        )?;
        let fps: Vec<String> = FailPoint::ALL
            .iter()
            .map(|fp| {
                format!(
                    "{} {}",
                    c.master_failpoint_aborts.get(fp).copied().unwrap_or(0),
                    fp.name()
                )
            })
            .collect();
        writeln!(
            f,
            "  master:   {} deaths: {} SIGKILL, {} ({} armed masters timed out)",
            c.master_deaths(),
            c.master_sigkills,
            fps.join(", "),
            c.armed_timeouts
        )?;
        writeln!(
            f,
            "  fencing:  {} restores of a data-dir copy ({} copies taken), {} incarnations abandoned, {} of their attempt dirs left, {} of their commits refused, {} acknowledgements by abandoned lineages unchecked, {} foreign commits accepted",
            c.restores,
            c.copies,
            c.dead_incarnations,
            v.dead_lineage_attempt_dirs,
            v.worker_fenced_refusals,
            v.worker_acks_of_dead_lineages,
            v.foreign_commits
        )?;
        writeln!(
            f,
            "  network:  {} connections, {} dropped mid-stream, {} lost replies{} ({} forwarded), {} delayed chunks, {} refused while the master was down",
            p.connections,
            p.dropped_connections,
            p.lost_replies,
            if self.secure {
                " (TLS application-data records: replies at most)"
            } else {
                ""
            },
            p.replies_forwarded,
            p.delayed_chunks,
            p.upstream_refused
        )?;
        writeln!(
            f,
            "  workers saw: {} commits acknowledged, {} refused, {} leases lost mid-run, {} commits abandoned",
            v.worker_acked_commits,
            v.worker_refused_commits,
            v.worker_lost_leases,
            v.worker_abandoned_commits
        )?;
        writeln!(
            f,
            "  submissions: {} acknowledged, {} failed (retried)",
            c.submissions_acked, c.submissions_failed
        )?;
        if v.schedule_logicals > 0 {
            writeln!(
                f,
                "  schedule: {} logical times, each run once, none missed; {} partitions published ({} from an abandoned lineage, awaiting their re-run)",
                v.schedule_logicals, v.schedule_partitions, v.schedule_partitions_awaiting_rerun
            )?;
        }
        writeln!(
            f,
            "  wide:     gather counted {} inputs (expected {}), {} input listings paged by workers; proxy chances /{CALM_DIVISOR} for {:.1} s while it gathered",
            v.wide_inputs_counted,
            self.wide_inputs,
            v.paged_input_listings,
            c.calm.as_secs_f64()
        )?;
        writeln!(
            f,
            "  invariants: {} lost, {} duplicated, {} stale commits accepted, {} uncommitted attempt dirs left unswept (never listed), {} violations",
            v.lost,
            v.duplicated,
            v.stale_commits,
            v.uncommitted_attempt_dirs,
            self.violations.len() + v.violations.len()
        )?;
        match &self.kept_dir {
            Some(dir) => writeln!(f, "  kept:     {}", dir.display()),
            None => Ok(()),
        }
    }
}

/// One worker slot: a process, replaced when it dies.
struct Slot {
    index: usize,
    proc: Proc,
    id: String,
    failpoint: bool,
    incarnation: u32,
    paused_until: Option<Instant>,
}

/// What the harness knows of one pipeline.
#[derive(Debug, Clone, Copy)]
struct Known {
    finished: bool,
    /// The wide pipeline (groups `WIDE_GROUPS`), not a batch.
    wide: bool,
}

impl Known {
    fn groups(self) -> &'static [&'static str] {
        if self.wide { &WIDE_GROUPS } else { &GROUPS }
    }
}

/// A copy of the master's data dir (journal and snapshots; the store is
/// outside it), and what the harness knew when it was taken: a restore
/// makes that the truth again.
struct DataCopy {
    dir: PathBuf,
    acked: Acked,
    pipelines: BTreeMap<String, Known>,
    lineage: BTreeSet<u64>,
    /// Each worker log's length then: its acknowledgements from there to
    /// a while after the restore may be the abandoned lineage's.
    log_lengths: BTreeMap<PathBuf, u64>,
}

struct Run<'a> {
    p: &'a Profile,
    rng: StdRng,
    logs: PathBuf,
    spec: MasterSpec,
    /// Every master's `--store`, outside the data dir, so copies share it.
    store: PathBuf,
    master: Master,
    master_starts: u32,
    /// Incarnations of the starts of the lineage now running, and of the
    /// lineages restores abandoned.
    lineage: BTreeSet<u64>,
    dead: BTreeSet<u64>,
    /// Starts before a restored copy point (see `Lineages::shared`).
    shared: BTreeSet<u64>,
    copy: Option<DataCopy>,
    /// Restores whose log window is still open: (when it closes, each
    /// worker log's length at the copy).
    open_windows: Vec<(Instant, BTreeMap<PathBuf, u64>)>,
    log_skips: LogSkips,
    proxy: FaultProxy,
    /// With a `secure` profile: the certificates and the harness's token.
    security: Option<Security>,
    slots: Vec<Slot>,
    worker_logs: Vec<PathBuf>,
    workload: Workload,
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    acked: Acked,
    pipelines: BTreeMap<String, Known>,
    /// Set after a master restart: the next refresh reads every pipeline.
    recheck_all: bool,
    /// Since when the proxy runs at calm rates (the wide gather runs).
    calm_since: Option<Instant>,
    last_refresh: Instant,
    plan: VecDeque<(Instant, Fault)>,
    counts: Counts,
    violations: Vec<String>,
    started: Instant,
    /// Last, so every process above is killed before it is removed.
    tmp: tempfile::TempDir,
}

/// Runs a profile to the end and checks the invariants.
pub fn run(profile: &Profile) -> Report {
    let mut run = Run::setup(profile);
    while !run.done() {
        if run.started.elapsed() > profile.deadline {
            run.violations.push(format!(
                "the run did not finish within {:?}: {}",
                profile.deadline,
                run.progress()
            ));
            break;
        }
        run.turn();
        std::thread::sleep(TICK);
    }
    run.finish()
}

impl<'a> Run<'a> {
    fn setup(p: &'a Profile) -> Run<'a> {
        let mut rng = StdRng::seed_from_u64(p.seed);
        let tmp = tempfile::tempdir().expect("temp dir");
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let store = tmp.path().join("store");
        let security = p.secure.then(|| Security::new(&tmp.path().join("tls")));
        let spec = MasterSpec {
            data_dir: tmp.path().join("data"),
            listen: format!("127.0.0.1:{}", free_port()),
            lease_ms: p.lease_ms,
            store: Some(store.clone()),
            wrapper: Vec::new(),
            log_dir: logs.clone(),
            extra_args: security
                .as_ref()
                .map(Security::master_args)
                .unwrap_or_default(),
            tls: p.secure,
        };
        let master = spec.start(None, 0).unwrap_or_else(|e| panic!("{e}"));
        if let Some(security) = &security {
            security.make_harness_token(&master.url(), &spec.data_dir);
        }
        let upstream = master.addr.parse().expect("master address");
        let carried = if p.secure {
            Carried::Tls
        } else {
            Carried::Http2
        };
        let proxy = FaultProxy::start_carrying(upstream, rng.random(), p.proxy, carried);
        let workload = Workload::new(&tmp.path().join("job"), p.units_per_batch);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let plan = plan(p, &mut rng);
        let mut run = Run {
            p,
            rng,
            logs,
            spec,
            store,
            master,
            master_starts: 1,
            lineage: BTreeSet::new(),
            dead: BTreeSet::new(),
            shared: BTreeSet::new(),
            copy: None,
            open_windows: Vec::new(),
            log_skips: LogSkips::new(),
            proxy,
            security,
            slots: Vec::new(),
            worker_logs: Vec::new(),
            workload,
            rt,
            client: None,
            acked: Acked::default(),
            pipelines: BTreeMap::new(),
            recheck_all: false,
            calm_since: None,
            last_refresh: Instant::now(),
            plan,
            counts: Counts::default(),
            violations: Vec::new(),
            started: Instant::now(),
            tmp,
        };
        run.record_incarnation();
        for index in 0..p.workers {
            let slot = run.spawn_worker(index, 0);
            run.slots.push(slot);
        }
        if p.schedule {
            let file = run.workload.tick_schedule_file();
            run.reach()
                .tmctl_ok(&["schedule", "add", file.to_str().expect("utf-8")]);
        }
        run
    }

    /// One turn of the loop: notice deaths, resume zombies, inject the next
    /// fault when due, read the master's state, keep work flowing.
    fn turn(&mut self) {
        self.watch_master();
        self.watch_workers();
        self.resume_zombies();
        self.close_log_windows(false);
        self.fire_due_fault();
        if self.last_refresh.elapsed() >= REFRESH_EVERY {
            self.refresh();
        }
        self.submit_if_needed();
    }

    fn progress(&self) -> String {
        let unfinished: Vec<&String> = self
            .pipelines
            .iter()
            .filter(|(_, k)| !k.finished)
            .map(|(id, _)| id)
            .collect();
        format!(
            "{} faults left, unfinished pipelines {unfinished:?}, {} lost replies, counts {:?}",
            self.plan.len(),
            self.proxy.counts().lost_replies,
            self.counts
        )
    }

    fn units_submitted(&self) -> u64 {
        let per_batch = 2 * u64::from(self.p.units_per_batch) + 1;
        let batches = self.pipelines.values().filter(|k| !k.wide).count();
        batches as u64 * per_batch
    }

    fn has_wide(&self) -> bool {
        self.pipelines.values().any(|k| k.wide)
    }

    /// Work keeps coming while faults remain to be injected (an armed
    /// master only aborts while it writes its journal).
    fn needs_more_work(&self) -> bool {
        !self.plan.is_empty()
            || self.master.armed.is_some()
            || self.units_submitted() < self.p.units_min
            || self.proxy.counts().lost_replies < self.p.lost_replies_min
    }

    fn done(&self) -> bool {
        !self.needs_more_work()
            && self.master.armed.is_none()
            && self.slots.iter().all(|s| s.paused_until.is_none())
            && !self.pipelines.is_empty()
            && (self.p.wide_files == 0 || self.has_wide())
            && self.pipelines.values().all(|k| k.finished)
    }

    fn spawn_worker(&mut self, index: usize, incarnation: u32) -> Slot {
        let failpoint = index < self.p.failpoint_workers;
        let id = format!("w{index}-{incarnation}");
        let log = self.logs.join(format!("worker-{id}.log"));
        self.worker_logs.push(log.clone());
        let fp = failpoint.then_some(WORKER_FAILPOINT);
        let env = match &self.security {
            Some(security) => security.worker_env(&id),
            None => Vec::new(),
        };
        let proc = start_worker(&self.proxy.url(), self.p.slots, &id, fp, &log, &env);
        Slot {
            index,
            proc,
            id,
            failpoint,
            incarnation,
            paused_until: None,
        }
    }

    fn respawn(&mut self, i: usize) {
        let (index, incarnation) = (self.slots[i].index, self.slots[i].incarnation + 1);
        self.slots[i] = self.spawn_worker(index, incarnation);
    }

    fn watch_workers(&mut self) {
        for i in 0..self.slots.len() {
            let Some(status) = self.slots[i].proc.exited() else {
                continue;
            };
            if self.slots[i].failpoint && aborted(status) {
                self.counts.worker_failpoint_aborts += 1;
            } else {
                let slot = &self.slots[i];
                self.violations.push(format!(
                    "worker {} exited on its own ({status}): {}",
                    slot.id,
                    slot.proc.log_tail(5)
                ));
            }
            self.respawn(i);
        }
    }

    fn resume_zombies(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if slot.paused_until.is_some_and(|t| t <= now) {
                slot.proc.signal(libc::SIGCONT);
                slot.paused_until = None;
            }
        }
    }

    /// Injects the next fault if it is due and can be injected now (else
    /// it waits for a later turn).
    fn fire_due_fault(&mut self) {
        let Some(&(at, fault)) = self.plan.front() else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        let fired = match fault {
            Fault::WorkerKill => self.kill_worker(),
            Fault::Zombie => self.pause_worker(),
            Fault::MasterKill(armed) => self.kill_master(armed),
            Fault::MasterCopy => self.copy_data_dir(),
            Fault::Restore => self.restore_copy(),
        };
        if fired {
            self.plan.pop_front();
        }
    }

    fn kill_worker(&mut self) -> bool {
        let i = self.rng.random_range(0..self.slots.len());
        self.slots[i].proc.kill();
        self.counts.worker_sigkills += 1;
        self.respawn(i);
        true
    }

    fn pause_worker(&mut self) -> bool {
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].paused_until.is_none())
            .collect();
        if running.len() < 2 {
            return false; // keep one worker running, so work goes on
        }
        let i = running[self.rng.random_range(0..running.len())];
        let pause_ms = (self.p.lease_ms as f64 * self.rng.random_range(1.5..3.0)) as u64;
        if self.slots[i].proc.signal(libc::SIGSTOP) {
            self.slots[i].paused_until = Some(Instant::now() + Duration::from_millis(pause_ms));
            self.counts.zombie_pauses += 1;
        }
        true
    }

    /// SIGKILLs the master (after reading what it acknowledged) and
    /// restarts it, with `armed` as its fail point. Waits while an armed
    /// master is still alive: its own abort comes first.
    fn kill_master(&mut self, armed: Option<FailPoint>) -> bool {
        if self.master.armed.is_some() {
            return false;
        }
        self.refresh();
        self.master.proc.kill();
        self.counts.master_sigkills += 1;
        let armed = armed.map(|fp| (fp, self.rng.random_range(1..=5)));
        self.restart_master(armed);
        true
    }

    /// SIGKILLs the master, copies its data dir (the journal and snapshots
    /// as the kill left them: everything it acknowledged is in the copy),
    /// remembers what the harness knew, and restarts it.
    fn copy_data_dir(&mut self) -> bool {
        if self.master.armed.is_some() {
            return false;
        }
        self.refresh();
        self.master.proc.kill();
        self.counts.master_sigkills += 1;
        self.counts.copies += 1;
        let dir = self
            .tmp
            .path()
            .join(format!("data-copy-{}", self.counts.copies));
        copy_dir(&self.spec.data_dir, &dir);
        let log_lengths = self
            .worker_logs
            .iter()
            .map(|log| (log.clone(), file_len(log)))
            .collect();
        self.copy = Some(DataCopy {
            dir,
            acked: self.acked.clone(),
            pipelines: self.pipelines.clone(),
            lineage: self.lineage.clone(),
            log_lengths,
        });
        self.restart_master(None);
        true
    }

    /// SIGKILLs the master and starts one on the last copy of its data dir
    /// (same store, same port): the copy's lineage goes on, the one since
    /// the copy is abandoned, and the harness's knowledge goes back to what
    /// it was at the copy.
    fn restore_copy(&mut self) -> bool {
        if self.master.armed.is_some() {
            return false;
        }
        let Some(copy) = self.copy.take() else {
            return true; // the plan pairs every restore with a copy before it
        };
        self.refresh();
        self.master.proc.kill();
        self.counts.master_sigkills += 1;
        self.counts.restores += 1;
        let abandoned = self
            .tmp
            .path()
            .join(format!("data-abandoned-{}", self.counts.restores));
        std::fs::rename(&self.spec.data_dir, &abandoned).expect("move the data dir aside");
        std::fs::rename(&copy.dir, &self.spec.data_dir).expect("put the copy in its place");
        let dead: Vec<u64> = self.lineage.difference(&copy.lineage).copied().collect();
        self.counts.dead_incarnations += dead.len() as u64;
        self.dead.extend(dead);
        self.shared.extend(copy.lineage.iter().copied());
        self.lineage = copy.lineage;
        self.acked = copy.acked;
        self.pipelines = copy.pipelines;
        let close_at =
            Instant::now() + Duration::from_millis(3 * self.p.lease_ms) + RESTORE_LOG_GRACE;
        self.open_windows.push((close_at, copy.log_lengths));
        self.restart_master(None);
        true
    }

    /// Closes the log windows of restores that are due (or all): worker
    /// log bytes from the copy to now are not checked for acknowledgements.
    fn close_log_windows(&mut self, all: bool) {
        let now = Instant::now();
        let (due, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open_windows)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.open_windows = open;
        for (_, starts) in due {
            for log in &self.worker_logs {
                let start = starts.get(log).copied().unwrap_or(0);
                let end = file_len(log);
                if end > start {
                    self.log_skips
                        .entry(log.clone())
                        .or_default()
                        .push(start..end);
                }
            }
        }
    }

    /// Notices a master that died by itself (an armed fail point), and
    /// SIGKILLs an armed one that has not fired for too long.
    fn watch_master(&mut self) {
        let armed = self.master.armed;
        if let Some(status) = self.master.proc.exited() {
            match armed {
                Some((fp, _)) if aborted(status) => {
                    *self.counts.master_failpoint_aborts.entry(fp).or_default() += 1;
                }
                _ => self.violations.push(format!(
                    "the master exited on its own ({status}): {}",
                    self.master.proc.log_tail(10)
                )),
            }
            // Restart without the fail point, or (one time in four) with it again.
            let again = armed.filter(|_| self.rng.random_range(0..4) == 0);
            self.restart_master(again);
        } else if armed.is_some() && self.master.started.elapsed() > ARMED_WAIT_MAX {
            self.refresh();
            self.master.proc.kill();
            self.counts.master_sigkills += 1;
            self.counts.armed_timeouts += 1;
            self.restart_master(None);
        }
    }

    fn restart_master(&mut self, armed: Option<(FailPoint, u32)>) {
        self.client = None;
        self.recheck_all = true;
        let mut last_error = String::new();
        for _ in 0..10 {
            self.master_starts += 1;
            match self.spec.start(armed, self.master_starts) {
                Ok(master) => {
                    self.master = master;
                    self.record_incarnation();
                    return;
                }
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "seed {}: the master does not restart: {last_error}",
            self.p.seed
        );
    }

    /// Adds the new master's incarnation to the running lineage: from its
    /// log (written before it listens, so there even if it dies at once),
    /// and from `GetMasterStatus`, which must agree.
    fn record_incarnation(&mut self) {
        let from_log = incarnation_in_log(&self.master.proc.log_text());
        let from_status = self.connect().and_then(|client| {
            let status = self.rt.block_on(client.master_status());
            status.ok().map(|s| s.incarnation)
        });
        match (from_log, from_status) {
            (Some(a), Some(b)) if a != b => self.violations.push(format!(
                "master start {}: its log says incarnation {a:016x}, GetMasterStatus {b:016x}",
                self.master_starts
            )),
            (None, None) => self.violations.push(format!(
                "master start {}: no incarnation in its log or its status",
                self.master_starts
            )),
            _ => {}
        }
        self.lineage.extend(from_log.or(from_status));
    }

    /// How the harness reaches the master now.
    fn reach(&self) -> Reach {
        let url = self.master.url();
        match &self.security {
            Some(security) => Reach::secure(&url, security),
            None => Reach::plain(&url),
        }
    }

    fn connect(&mut self) -> Option<Client> {
        if self.client.is_none() {
            let reach = self.reach();
            self.client = self.rt.block_on(reach.client()).ok();
        }
        self.client.clone()
    }

    /// Reads pipelines and committed outputs from the master; checks that
    /// every acknowledged submission and commit is still there, unchanged.
    fn refresh(&mut self) {
        self.last_refresh = Instant::now();
        let Some(client) = self.connect() else {
            return;
        };
        let Ok(list) = self.rt.block_on(client.list()) else {
            self.client = None;
            return;
        };
        self.counts.refreshes += 1;
        let listed: BTreeSet<String> = list.iter().map(|s| s.pipeline_id.clone()).collect();
        for id in &self.acked.submissions {
            if !listed.contains(id) {
                self.violations
                    .push(format!("acknowledged submission {id} is gone"));
            }
        }
        let all = std::mem::take(&mut self.recheck_all);
        for status in list {
            let id = status.pipeline_id.clone();
            let finished = !matches!(
                status.state(),
                PipelineState::Running | PipelineState::Pending
            );
            if is_tick_run(&id) {
                continue; // the schedule's runs: checked apart, at the end
            }
            let wide = status.name == WIDE_NAME;
            let known = *self.pipelines.entry(id.clone()).or_insert_with(|| {
                // A submission whose reply was lost to a master crash.
                self.counts.orphan_pipelines += 1;
                Known {
                    finished: false,
                    wide,
                }
            });
            if !all && known.finished {
                continue;
            }
            if !self.read_commits(&client, &id, known.groups()) {
                self.recheck_all |= all;
                return;
            }
            // Finished only once its outputs were read after it finished.
            self.pipelines.insert(id, Known { finished, wide });
        }
        self.calm_while_gathering();
    }

    /// Calm rates while a wide pipeline's gather may run: its `many` units
    /// are all committed (as last read) and it has not finished.
    fn calm_while_gathering(&mut self) {
        let units = self.p.wide_units;
        let gathering = self.pipelines.iter().any(|(id, k)| {
            let key = |unit| (id.clone(), "many".to_string(), unit);
            let many = self.acked.commits.range(key(0)..=key(u32::MAX)).count();
            k.wide && !k.finished && many == units as usize
        });
        match (gathering, self.calm_since) {
            (true, None) => {
                let p = self.p.proxy;
                self.proxy.set(ProxySettings {
                    drop_ppm: p.drop_ppm / CALM_DIVISOR,
                    delay_ppm: p.delay_ppm / CALM_DIVISOR,
                    delay_ms_max: p.delay_ms_max,
                    lost_reply_ppm: p.lost_reply_ppm / CALM_DIVISOR,
                });
                self.calm_since = Some(Instant::now());
            }
            (false, Some(since)) => {
                self.proxy.set(self.p.proxy);
                self.counts.calm += since.elapsed();
                self.calm_since = None;
            }
            _ => {}
        }
    }

    /// Merges one pipeline's committed outputs into the acknowledged set,
    /// checking nothing acknowledged before is missing or changed.
    fn read_commits(&mut self, client: &Client, id: &str, groups: &[&str]) -> bool {
        for &group in groups {
            let Ok(units) = self.rt.block_on(client.outputs(id, group)) else {
                self.client = None;
                return false;
            };
            let now: BTreeMap<u32, (u64, u64)> = units
                .iter()
                .map(|u| (u.unit, (u.lease_id, u.incarnation)))
                .collect();
            let key = |unit| (id.to_string(), group.to_string(), unit);
            let before = self.acked.commits.range(key(0)..=key(u32::MAX));
            for ((_, _, unit), attempt) in before {
                if now.get(unit) != Some(attempt) {
                    self.violations.push(format!(
                        "{id} {group} unit {unit}: commit by attempt {attempt:?} was acknowledged, now {:?}",
                        now.get(unit)
                    ));
                }
            }
            for (unit, attempt) in now {
                self.acked.commits.insert(key(unit), attempt);
            }
        }
        true
    }

    /// Keeps `pipelines_in_flight` pipelines running while there is work
    /// to do; one submission per turn.
    fn submit_if_needed(&mut self) {
        if self.master.proc.exited().is_some() {
            return;
        }
        // The wide pipeline runs beside the first batch (and again if a
        // restore lost it).
        if self.p.wide_files > 0 && !self.pipelines.is_empty() && !self.has_wide() {
            let wide = self.workload.wide(self.p.wide_units, self.p.wide_files);
            self.submit(&wide.pipeline_file, true);
            return;
        }
        let unfinished = self
            .pipelines
            .values()
            .filter(|k| !k.finished && !k.wide)
            .count();
        if unfinished >= self.p.pipelines_in_flight || !self.needs_more_work() {
            return;
        }
        let batch = self.workload.add_batch(&mut self.rng);
        self.submit(&batch.pipeline_file, false);
    }

    fn submit(&mut self, pipeline_file: &std::path::Path, wide: bool) {
        let file = pipeline_file.display().to_string();
        let out = self.reach().tmctl(&["submit", &file]);
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(str::trim)
            .map(str::to_string);
        match id.filter(|_| out.status.success()) {
            Some(id) => {
                self.counts.submissions_acked += 1;
                self.acked.submissions.insert(id.clone());
                let known = Known {
                    finished: false,
                    wide,
                };
                self.pipelines.insert(id, known);
            }
            // The master may have taken it before it died: a later refresh
            // finds it as an orphan. The batch is retried as a new one.
            None => self.counts.submissions_failed += 1,
        }
    }

    /// Stops the faults, crashes the master one last time, and checks.
    fn finish(mut self) -> Report {
        for slot in &mut self.slots {
            slot.proc.kill();
        }
        self.refresh();
        self.master.proc.kill();
        self.counts.master_sigkills += 1;
        self.restart_master(None);
        self.refresh_until_complete();
        self.close_log_windows(true);
        if let Some(since) = self.calm_since.take() {
            self.counts.calm += since.elapsed();
        }
        let store = self.store.canonicalize().expect("store");
        let lineages = Lineages {
            surviving: self.lineage.clone(),
            dead: self.dead.clone(),
            shared: self.shared.clone(),
        };
        let expected = Expected {
            workload: &self.workload,
            acked: &self.acked,
            lineages: &lineages,
            worker_logs: &self.worker_logs,
            log_skips: &self.log_skips,
        };
        let reach = self.reach();
        let mut verified = check::verify(&reach, &store, &expected);
        if self.p.schedule {
            check::check_schedule(&reach, &mut verified);
        }
        check::check_panics(&self.logs, &mut verified);
        let wide_inputs = self.workload.wide.as_ref().map_or(0, |w| w.inputs());
        if wide_inputs > 0 && verified.paged_input_listings == 0 {
            verified.violations.push(
                "no worker listed a lease's inputs: the wide gather's were sent inline (make its names longer)"
                    .into(),
            );
        }
        let mut report = Report {
            profile: self.p.name.clone(),
            seed: self.p.seed,
            secure: self.p.secure,
            elapsed: self.started.elapsed(),
            counts: self.counts.clone(),
            proxy: self.proxy.counts(),
            verified,
            wide_inputs,
            violations: std::mem::take(&mut self.violations),
            kept_dir: None,
        };
        if !report.is_clean() || std::env::var_os("TM_FAULT_KEEP").is_some() {
            report.kept_dir = Some(self.tmp.keep());
        }
        report
    }

    /// After the last restart: one refresh that read every pipeline.
    fn refresh_until_complete(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.recheck_all = true;
        while Instant::now() < deadline {
            self.refresh();
            if !self.recheck_all {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.violations
            .push("could not read the master's state after the last restart".into());
    }
}

/// The seeded schedule: every fault of the profile, shuffled, at gaps of
/// 0.5–1.5 times the mean gap. The first master kills cover each journal
/// fail point once.
fn plan(p: &Profile, rng: &mut StdRng) -> VecDeque<(Instant, Fault)> {
    let mut faults = Vec::new();
    faults.extend((0..p.worker_kills).map(|_| Fault::WorkerKill));
    faults.extend((0..p.zombie_pauses).map(|_| Fault::Zombie));
    for i in 0..p.master_kills as usize {
        let armed = match i {
            0..=2 => Some(FailPoint::ALL[i]),
            3 => None,
            _ => [None, Some(FailPoint::ALL[rng.random_range(0..3)])][rng.random_range(0..2)],
        };
        faults.push(Fault::MasterKill(armed));
    }
    // Copies and restores alternate in the shuffled order, so each restore
    // has the copy just before it (and no copy outlives a later one).
    faults.extend((0..2 * p.restores).map(|_| Fault::Restore));
    faults.shuffle(rng);
    let mut copy_next = true;
    for fault in &mut faults {
        if *fault == Fault::Restore {
            if copy_next {
                *fault = Fault::MasterCopy;
            }
            copy_next = !copy_next;
        }
    }
    let mut at = Instant::now() + Duration::from_millis(p.fault_gap_ms);
    faults
        .into_iter()
        .map(|fault| {
            let gap = (p.fault_gap_ms as f64 * rng.random_range(0.5..1.5)) as u64;
            at += Duration::from_millis(gap);
            (at, fault)
        })
        .collect()
}

/// `cp -a from to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {from:?} {to:?}: {status}");
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The incarnation a master logged when it started (`started a new
/// incarnation incarnation=<16 hex digits>`).
fn incarnation_in_log(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("started a new incarnation"))?;
    let start = line.find("incarnation=")? + "incarnation=".len();
    let hex = line.get(start..start + 16)?;
    u64::from_str_radix(hex, 16).ok()
}
