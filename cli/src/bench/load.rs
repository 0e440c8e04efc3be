//! The load: the bench's units submitted as pipelines, and the client
//! tasks that lease, (optionally) renew and commit them exactly as a
//! worker would, timing every call.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskmaster_proto::compact;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    CommitItem, CommitRequest, CommitResponse, GroupSpec, ItemStatus, Lease, LeaseGroup, LeaseNext,
    LeaseRef, LeaseRequest, LeaseResponse, Outputs, PipelineSpec, ReleaseRequest, ReleaseResponse,
    RenewRequest, RenewResponse, UnitRef, commit_item,
};
use tokio::time::MissedTickBehavior;
use tonic::Status;
// The channel every client uses: it sends the caller's token (issue 24).
use taskmaster_proto::credentials::MasterChannel as Channel;

use super::BenchError;
use super::stats::micros;
use taskmaster_client::Client;
use taskmaster_worker::work_stream::WorkStream;

/// Units per submitted pipeline: the master's limit on a first group's
/// inputs (`INPUTS_PER_GROUP_MAX`). More units go into more pipelines.
pub const UNITS_PER_PIPELINE: u64 = 100_000;

/// Long-poll bound of a lease call: short, so that once the queue is empty
/// idle clients notice the end quickly.
const LEASE_WAIT_MS: u32 = 50;

/// Deadline of each worker call: a master that stops answering fails the
/// bench instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A run fails when no unit has been committed for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// One submitted pipeline of bench units.
#[derive(Debug, Clone)]
pub struct BenchPipeline {
    pub id: String,
    pub units: u64,
}

/// Submits `units` no-op units: pipelines named `bench` with one group
/// `units` (task `noop`) of up to [`UNITS_PER_PIPELINE`] inputs each.
/// The inputs are fake absolute paths; nothing ever reads them.
pub async fn submit_units(client: &Client, units: u64) -> Result<Vec<BenchPipeline>, BenchError> {
    let mut pipelines = Vec::new();
    let mut first = 0;
    while first < units {
        let count = (units - first).min(UNITS_PER_PIPELINE);
        let inputs = (first..first + count)
            .map(|i| format!("/bench/unit-{:06}", i + 1))
            .collect();
        let spec = PipelineSpec {
            name: "bench".into(),
            params: HashMap::new(),
            groups: vec![GroupSpec {
                name: "units".into(),
                task: "noop".into(),
                inputs,
                ..GroupSpec::default()
            }],
        };
        let id = client.submit(spec).await?;
        pipelines.push(BenchPipeline { id, units: count });
        first += count;
    }
    Ok(pipelines)
}

/// How each client behaves.
#[derive(Debug, Clone)]
pub struct LoadShape {
    /// Units all clients must commit together.
    pub units: u64,
    /// Units asked for per lease call (and so committed per commit call).
    pub batch: u32,
    /// Renew every lease once before committing it.
    pub renew: bool,
    /// Each commit call also asks for the next batch (`lease_next`), so
    /// after the first lease a unit costs one call, not two.
    pub lease_on_commit: bool,
    /// Ask for leases in the compact form (`taskmaster_proto::compact`).
    pub compact: bool,
    /// Time between one client's lease calls, when pacing to a rate.
    pub lease_period: Option<Duration>,
    /// Offset of this client's first paced call, spreading clients out.
    pub start_offset: Duration,
}

/// State the client tasks share.
pub struct Shared {
    /// The bench's pipelines: leases of other pipelines are given back.
    pub pipelines: HashSet<String>,
    /// Units committed so far, over all clients.
    pub committed: AtomicU64,
    /// Milliseconds since `start` of the latest commit, for stall checks.
    pub progress_ms: AtomicU64,
    /// When the clients began.
    pub start: Instant,
}

/// What one client measured.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Latency of every lease call that returned leases (empty long-polls
    /// measure idleness, not the master).
    pub lease_us: Vec<u32>,
    pub renew_us: Vec<u32>,
    pub commit_us: Vec<u32>,
    /// With `--rate`: from each batch's turn to its commit's answer, where
    /// a turn held up by the client's previous call starts at its due time
    /// (see [`turn_start`]): what `commit_us` leaves out of a slow spell.
    pub turn_us: Vec<u32>,
    /// Turns that passed while this client was still busy with an earlier
    /// batch: the offered load it did not send (coordinated omission).
    pub turns_skipped: u64,
    /// Leases of the bench's units received.
    pub leased: u64,
    /// Units committed (acknowledged OK).
    pub committed: u64,
    /// Leases of other pipelines' units, released unfinished.
    pub foreign_released: u64,
    /// When this client's last lease and last commit were answered.
    pub last_lease: Option<Instant>,
    pub last_commit: Option<Instant>,
}

/// One client: leases, renews and commits until every unit is committed.
pub async fn run_client(
    mut calls: Calls,
    worker_id: String,
    shape: LoadShape,
    shared: Arc<Shared>,
) -> Result<ClientLog, BenchError> {
    let mut log = ClientLog::default();
    let mut pacer = shape.lease_period.map(|period| {
        let mut interval =
            tokio::time::interval_at((shared.start + shape.start_offset).into(), period);
        // Behind schedule (the master is slower than the offered rate):
        // skip the missed calls rather than burst to catch up.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        interval
    });
    let next = shape.lease_on_commit.then(|| LeaseNext {
        worker_id: worker_id.clone(),
        max_units: shape.batch,
        compact: shape.compact,
    });
    // Leases the last commit call brought back (with `lease_on_commit`).
    let mut carried = Held::default();
    let mut last_turn: Option<Instant> = None;
    let mut last_answer: Option<Instant> = None;
    while shared.committed.load(Ordering::Relaxed) < shape.units {
        let mut turn = None;
        if let (Some(pacer), Some(period)) = (&mut pacer, shape.lease_period) {
            let due = pacer.tick().await.into_std();
            if let Some(last) = last_turn {
                log.turns_skipped += turns_skipped(last, due, period);
            }
            last_turn = Some(due);
            turn = Some(turn_start(due, last_answer, Instant::now()));
        }
        let held = if carried.refs.is_empty() {
            lease(&mut calls, &worker_id, &shape, &mut log).await?
        } else {
            std::mem::take(&mut carried)
        };
        let Held { token, refs } = give_back_foreign(&mut calls, held, &shared, &mut log).await?;
        if refs.is_empty() {
            check_stall(&shared, shape.units)?;
            continue;
        }
        let n = refs.len() as u64;
        if shape.renew {
            renew(&mut calls, &token, &refs, &mut log).await?;
        }
        carried = commit(&mut calls, &token, refs, next.clone(), &mut log).await?;
        let answered = Instant::now();
        if let Some(start) = turn {
            log.turn_us.push(micros(answered - start));
        }
        last_answer = Some(answered);
        shared.committed.fetch_add(n, Ordering::Relaxed);
        let since_start = shared.start.elapsed().as_millis() as u64;
        shared.progress_ms.fetch_max(since_start, Ordering::Relaxed);
    }
    // Every bench unit is committed, so only other work can be left here.
    give_back_foreign(&mut calls, carried, &shared, &mut log).await?;
    Ok(log)
}

/// Where a turn's time starts: its due time if the client was still
/// waiting for its previous answer then (the master held it up), else when
/// the call went out (tokio's timer fires up to about a millisecond late:
/// that is the load generator's, not the master's).
fn turn_start(due: Instant, last_answer: Option<Instant>, sent: Instant) -> Instant {
    match last_answer {
        Some(answer) if answer > due => due,
        _ => sent,
    }
}

/// Turns between two that a client took, `period` apart: they passed
/// while it was busy (tokio's `Skip` drops them).
fn turns_skipped(last: Instant, due: Instant, period: Duration) -> u64 {
    let periods = due.saturating_duration_since(last).as_secs_f64() / period.as_secs_f64();
    (periods.round() as u64).saturating_sub(1)
}

/// Leases a client holds: what commits or releases them, and the server
/// token they were granted under.
#[derive(Debug, Default)]
pub struct Held {
    pub token: String,
    pub refs: Vec<LeaseRef>,
}

impl Held {
    /// The references to the leases of a `call`'s reply, full or compact.
    /// A compact lease gets its unit's names and config version from its
    /// group: a worker needs no more to commit it, so the bench builds no
    /// more.
    pub fn from_reply(
        call: &'static str,
        leases: Vec<Lease>,
        groups: &[LeaseGroup],
    ) -> Result<Held, BenchError> {
        let mut held = Held {
            token: String::new(),
            refs: Vec::with_capacity(leases.len()),
        };
        for lease in leases {
            let group = compact::group_in(&lease, groups)
                .map_err(|error| BenchError::MalformedReply { call, error })?;
            if held.token.is_empty() {
                held.token
                    .clone_from(group.map_or(&lease.server_token, |g| &g.server_token));
            }
            held.refs.push(match group {
                None => lease_ref(lease),
                Some(group) => LeaseRef {
                    unit: Some(UnitRef {
                        pipeline_id: group.pipeline_id.clone(),
                        group: group.group.clone(),
                        unit: lease.unit.map_or(0, |u| u.unit),
                    }),
                    lease_id: lease.lease_id,
                    config_version: group.config_version,
                    incarnation: group.incarnation,
                },
            });
        }
        Ok(held)
    }
}

async fn lease(
    calls: &mut Calls,
    worker_id: &str,
    shape: &LoadShape,
    log: &mut ClientLog,
) -> Result<Held, BenchError> {
    let request = LeaseRequest {
        worker_id: worker_id.to_string(),
        max_units: shape.batch,
        wait_ms: LEASE_WAIT_MS,
        compact: shape.compact,
        worker_slots: 0,
    };
    let began = Instant::now();
    let reply = calls
        .lease(request)
        .await
        .map_err(|status| BenchError::rpc("Lease", status))?;
    if !reply.leases.is_empty() {
        let answered = Instant::now();
        log.lease_us.push(micros(answered - began));
        log.last_lease = Some(answered);
    }
    Held::from_reply("Lease", reply.leases, &reply.lease_groups)
}

/// Releases leases of units that are not the bench's (a `--master` that
/// has other work); returns the bench's own.
async fn give_back_foreign(
    calls: &mut Calls,
    mut held: Held,
    shared: &Shared,
    log: &mut ClientLog,
) -> Result<Held, BenchError> {
    // Ours stay where they are, and a batch's leases mostly share one
    // pipeline, looked up once: splitting each batch into two new vectors
    // with a lookup a lease was a tenth of the bench client's instructions.
    let mut last_ours: Option<String> = None;
    let foreign: Vec<LeaseRef> = held
        .refs
        .extract_if(.., |lease| {
            let Some(id) = lease.unit.as_ref().map(|u| u.pipeline_id.as_str()) else {
                return true;
            };
            if last_ours.as_deref() == Some(id) {
                return false;
            }
            let ours = shared.pipelines.contains(id);
            if ours {
                last_ours = Some(id.to_string());
            }
            !ours
        })
        .collect();
    log.leased += held.refs.len() as u64;
    if !foreign.is_empty() {
        if log.foreign_released == 0 {
            tracing::warn!("the master has other work; the bench gives its leases back");
        }
        let n = foreign.len();
        let request = ReleaseRequest {
            server_token: held.token.clone(),
            leases: foreign,
        };
        let results = calls
            .release(request)
            .await
            .map_err(|status| BenchError::rpc("Release", status))?
            .results;
        check_items("Release", &results, n)?;
        log.foreign_released += n as u64;
    }
    Ok(held)
}

async fn renew(
    calls: &mut Calls,
    token: &str,
    refs: &[LeaseRef],
    log: &mut ClientLog,
) -> Result<(), BenchError> {
    let request = RenewRequest {
        server_token: token.to_string(),
        leases: refs.to_vec(),
    };
    let began = Instant::now();
    let results = calls
        .renew(request)
        .await
        .map_err(|status| BenchError::rpc("Renew", status))?
        .results;
    log.renew_us.push(micros(began.elapsed()));
    check_items("Renew", &results, refs.len())
}

/// Commits every lease with empty outputs (a no-op unit writes nothing);
/// returns the leases `next` asked for.
async fn commit(
    calls: &mut Calls,
    token: &str,
    refs: Vec<LeaseRef>,
    next: Option<LeaseNext>,
    log: &mut ClientLog,
) -> Result<Held, BenchError> {
    let n = refs.len();
    let items = refs
        .into_iter()
        .map(|lease| CommitItem {
            lease: Some(lease),
            result: Some(commit_item::Result::Outputs(Outputs::default())),
        })
        .collect();
    let request = CommitRequest {
        server_token: token.to_string(),
        items,
        lease_next: next,
    };
    let began = Instant::now();
    let reply = calls
        .commit(request)
        .await
        .map_err(|status| BenchError::rpc("Commit", status))?;
    let answered = Instant::now();
    log.commit_us.push(micros(answered - began));
    log.last_commit = Some(answered);
    check_items("Commit", &reply.results, n)?;
    log.committed += n as u64;
    if !reply.leases.is_empty() {
        log.last_lease = Some(answered);
    }
    Held::from_reply("Commit", reply.leases, &reply.lease_groups)
}

/// Every item of a batch answer must be OK: a refused commit means a unit
/// was not committed exactly once by the lease the bench held.
fn check_items(call: &'static str, results: &[ItemStatus], sent: usize) -> Result<(), BenchError> {
    if results.len() != sent {
        return Err(BenchError::Refused {
            call,
            message: format!("{} answers for {sent} items", results.len()),
        });
    }
    match results.iter().find(|r| r.code != 0) {
        Some(refused) => Err(BenchError::Refused {
            call,
            message: format!("{} (code {})", refused.message, refused.code),
        }),
        None => Ok(()),
    }
}

fn check_stall(shared: &Shared, units: u64) -> Result<(), BenchError> {
    let last = Duration::from_millis(shared.progress_ms.load(Ordering::Relaxed));
    let idle = shared.start.elapsed().saturating_sub(last);
    if idle > STALL_LIMIT {
        return Err(BenchError::Stalled {
            committed: shared.committed.load(Ordering::Relaxed),
            units,
            idle_s: idle.as_secs(),
        });
    }
    Ok(())
}

/// The reference that commits or releases `lease` (by value: a worker
/// is done with the lease once it commits or gives it back).
fn lease_ref(lease: Lease) -> LeaseRef {
    LeaseRef {
        unit: lease.unit,
        lease_id: lease.lease_id,
        config_version: lease.config_version,
        incarnation: lease.incarnation,
    }
}

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// How a client makes its calls: one unary call each, or messages on one
/// `Work` stream (`--stream`). One per bench client, so the size of the
/// larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Calls {
    Unary(TaskMasterClient<Channel>),
    Stream(WorkStream),
}

/// One worker call through [`Calls`], with the bench's deadline either way.
macro_rules! call {
    ($name:ident, $request:ty, $response:ty) => {
        pub async fn $name(&mut self, request: $request) -> Result<$response, Status> {
            match self {
                Calls::Unary(raw) => raw
                    .$name(with_deadline(request))
                    .await
                    .map(tonic::Response::into_inner),
                Calls::Stream(stream) => tokio::time::timeout(CALL_TIMEOUT, stream.$name(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded("no reply on the Work stream"))
                    }),
            }
        }
    };
}

impl Calls {
    call!(lease, LeaseRequest, LeaseResponse);
    call!(renew, RenewRequest, RenewResponse);
    call!(commit, CommitRequest, CommitResponse);
    call!(release, ReleaseRequest, ReleaseResponse);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_skipped_are_the_whole_periods_between_two_taken() {
        let last = Instant::now();
        let period = Duration::from_millis(4);
        assert_eq!(turns_skipped(last, last + period, period), 0);
        // tokio's timer fires up to a millisecond late: not a skipped turn.
        assert_eq!(
            turns_skipped(
                last,
                last + period * 3 / 2 - Duration::from_micros(1),
                period
            ),
            0
        );
        assert_eq!(turns_skipped(last, last + period * 3, period), 2);
        assert_eq!(turns_skipped(last, last, period), 0);
    }

    #[test]
    fn a_turn_held_up_by_the_previous_answer_counts_from_its_due_time() {
        let due = Instant::now();
        let ms = Duration::from_millis;
        // Answered after the turn was due: the wait counts.
        assert_eq!(turn_start(due, Some(due + ms(3)), due + ms(3)), due);
        // Idle at the due time (or the first turn): the timer's lateness does not.
        assert_eq!(turn_start(due, Some(due - ms(1)), due + ms(1)), due + ms(1));
        assert_eq!(turn_start(due, None, due + ms(1)), due + ms(1));
    }

    #[test]
    fn units_per_pipeline_is_the_masters_limit() {
        assert_eq!(
            UNITS_PER_PIPELINE,
            taskmaster_master::core::limits::INPUTS_PER_GROUP_MAX as u64
        );
    }

    #[test]
    fn compact_and_full_leases_give_the_same_references() {
        let group = LeaseGroup {
            pipeline_id: "p-1".into(),
            group: "units".into(),
            config_version: 4,
            server_token: "tok".into(),
            ..LeaseGroup::default()
        };
        let full = Lease {
            unit: Some(UnitRef {
                pipeline_id: "p-1".into(),
                group: "units".into(),
                unit: 7,
            }),
            lease_id: 11,
            config_version: 4,
            server_token: "tok".into(),
            ..Lease::default()
        };
        let compact = Lease {
            unit: Some(UnitRef {
                unit: 7,
                ..UnitRef::default()
            }),
            lease_id: 11,
            lease_group: 1,
            ..Lease::default()
        };
        let from_full = Held::from_reply("Lease", vec![full], &[]).unwrap();
        let from_compact = Held::from_reply("Lease", vec![compact.clone()], &[group]).unwrap();
        assert_eq!(from_full.token, "tok");
        assert_eq!(from_compact.token, "tok");
        assert_eq!(from_compact.refs, from_full.refs);

        let err = Held::from_reply("Commit", vec![compact], &[]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("Commit") && message.contains("lease group 1"),
            "{message}"
        );
    }

    #[test]
    fn a_refused_item_fails_the_check() {
        let ok = ItemStatus {
            code: 0,
            message: String::new(),
        };
        let lost = ItemStatus {
            code: tonic::Code::Aborted as i32,
            message: "lease 7 lost".into(),
        };
        assert!(check_items("Commit", &[ok.clone(), ok.clone()], 2).is_ok());
        let err = check_items("Commit", &[ok.clone(), lost], 2).unwrap_err();
        assert!(err.to_string().contains("lease 7 lost"), "{err}");
        assert!(check_items("Commit", &[ok], 2).is_err());
    }
}
