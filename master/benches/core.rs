//! Benchmarks of the pure core's transitions (issue 6): lease + commit per
//! unit and in batches of 100 (full and compact leases), submit of a 100,000-unit pipeline, and the
//! replay (`Core::recover`) of the journal of 100,000 committed units, and
//! deleting a finished pipeline ahead of 1,000,000 pending units.
//!
//! `cargo bench -p taskmaster-master --bench core`
//!
//! Every pipeline is two groups, `a` (one unit per input file) and `b` (one
//! unit per `a` unit), so a commit also creates the downstream unit, as in
//! a real pipeline.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use taskmaster_master::core::lease_view::Leases;
use taskmaster_master::core::{Core, CoreConfig};
use taskmaster_proto::compact::group_in;
use taskmaster_proto::journal::Record;
use taskmaster_proto::v1::{
    CommitItem, GroupSpec, LeaseRef, OutputFile, Outputs, PipelineSpec, UnitRef, commit_item,
};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const WORKER: &str = "worker-01";
/// Long enough that no lease runs out while a bench holds it (time stays 0).
const LEASE_MS: u64 = 60_000;
/// The most units a first group may have (`limits::INPUTS_PER_GROUP_MAX`).
const PIPELINE_UNITS: u64 = 100_000;
/// The most leases one lease call may ask for (`limits::BATCH_ITEMS_MAX`).
const BATCH_MAX: usize = 1000;

fn config() -> CoreConfig {
    CoreConfig {
        store_root: "/var/lib/taskmaster/store".into(),
        store_url: String::new(),
        lease_ms: LEASE_MS,
        max_in_flight: 0,
        admission: Default::default(),
    }
}

/// An empty core after its journal's Init record.
fn empty_core() -> Core {
    Core::recover(config(), [Core::init_record(TOKEN, 1)], 0).unwrap()
}

/// Group `a` with one unit per input file, group `b` one unit per `a` unit.
fn spec(units: u64) -> PipelineSpec {
    let group = |name: &str| GroupSpec {
        name: name.into(),
        task: "exec".into(),
        command: vec!["python3".into(), "step.py".into()],
        max_attempts: 3,
        retry_delay_ms: Some(0),
        ..Default::default()
    };
    let mut a = group("a");
    a.inputs = (0..units)
        .map(|i| format!("/data/in/2026-11-21/part-{i:06}.csv"))
        .collect();
    let mut b = group("b");
    b.after = vec!["a".into()];
    PipelineSpec {
        name: "bench".into(),
        groups: vec![a, b],
        ..Default::default()
    }
}

/// A successful commit of every lease with one output file each, as a
/// worker names them: from the lease, or from its group when compact.
fn done_all(leased: &Leases) -> Vec<CommitItem> {
    leased
        .iter()
        .map(|lease| {
            let (unit, config_version, incarnation) = match group_in(lease, &leased.groups).unwrap()
            {
                Some(group) => (
                    Some(UnitRef {
                        pipeline_id: group.pipeline_id.clone(),
                        group: group.group.clone(),
                        unit: lease.unit.as_ref().map_or(0, |u| u.unit),
                    }),
                    group.config_version,
                    group.incarnation,
                ),
                None => (lease.unit.clone(), lease.config_version, lease.incarnation),
            };
            CommitItem {
                lease: Some(LeaseRef {
                    unit,
                    lease_id: lease.lease_id,
                    config_version,
                    incarnation,
                }),
                result: Some(commit_item::Result::Outputs(Outputs {
                    files: vec![OutputFile {
                        name: "out.csv".into(),
                        size_bytes: 64 << 20,
                    }],
                })),
            }
        })
        .collect()
}

/// A core with at least `units` pending `a` units, in pipelines of at most
/// `PIPELINE_UNITS`, all queued ahead of any `b` unit a commit creates.
fn core_with_pending(units: u64) -> Core {
    let mut core = empty_core();
    let mut left = units.max(1);
    let mut n = 0;
    while left > 0 {
        let size = left.min(PIPELINE_UNITS);
        core.submit(&format!("bench-{n:08x}"), spec(size), 5, 0)
            .unwrap();
        left -= size;
        n += 1;
    }
    core
}

/// Leases `batch` units (in the compact form with `compact`) and commits
/// them all, as a worker with `batch` slots would; returns the records to
/// journal.
fn lease_and_commit(core: &mut Core, batch: usize, compact: bool) -> (Vec<Record>, Vec<Record>) {
    let (granted, leases) = core.lease(WORKER, batch, compact, 0).unwrap();
    debug_assert_eq!(leases.len(), batch);
    let items = done_all(&leases);
    let (committed, results) = core.commit(TOKEN, &items, 0).unwrap();
    debug_assert!(results.iter().all(Result::is_ok));
    (granted, committed)
}

/// (a) and (b). A lease consumes a pending unit, so each sample gets a
/// fresh core holding exactly the units it will lease (built untimed, by
/// `iter_custom`): the timed loop is only the lease and commit calls.
fn lease_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (batch, compact) in [(1usize, false), (100, false), (100, true)] {
        group.throughput(Throughput::Elements(batch as u64));
        let form = if compact { "_compact" } else { "" };
        group.bench_function(format!("lease_commit/{batch}{form}"), |b| {
            b.iter_custom(|iters| {
                let mut core = core_with_pending(iters * batch as u64);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(lease_and_commit(&mut core, batch, compact));
                }
                let elapsed = start.elapsed();
                drop(core); // untimed
                elapsed
            })
        });
    }
    group.finish();
}

/// The records of one 100,000-unit pipeline submitted, every `a` unit
/// leased and committed (in calls of 1000), after the Init record.
fn journal_of_committed_units() -> Vec<Record> {
    let mut core = empty_core();
    let mut records = vec![Core::init_record(TOKEN, 1)];
    records.extend(core.submit("bench-0", spec(PIPELINE_UNITS), 5, 0).unwrap());
    for _ in 0..PIPELINE_UNITS as usize / BATCH_MAX {
        let (granted, committed) = lease_and_commit(&mut core, BATCH_MAX, false);
        records.extend(granted);
        records.extend(committed);
    }
    // One record for each call's grants and one for its commits.
    assert_eq!(records.len(), 2 + 2 * PIPELINE_UNITS as usize / BATCH_MAX);
    records
}

/// (c) and (d): one run takes tens of milliseconds, so flat sampling with
/// few samples; state is fresh for every run (`iter_batched`, one per batch).
fn large(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(PIPELINE_UNITS));

    let submitted = spec(PIPELINE_UNITS);
    group.bench_function(format!("submit/{PIPELINE_UNITS}_units"), |b| {
        b.iter_batched(
            || (empty_core(), submitted.clone()),
            |(mut core, spec)| {
                let records = core.submit("bench-0", spec, 5, 0).unwrap();
                (core, records) // dropped untimed
            },
            BatchSize::PerIteration,
        )
    });

    let journal = journal_of_committed_units();
    let id = format!(
        "recover/{PIPELINE_UNITS}_units_committed_{}_records",
        journal.len()
    );
    group.bench_function(id, |b| {
        b.iter_batched(
            || journal.clone(),
            |records| Core::recover(config(), records, 0).unwrap(),
            BatchSize::PerIteration,
        )
    });

    // A snapshot of 100,000 units, half of them committed: the copy taken
    // under the state lock, then the encoding done after it.
    let mut core = core_with_pending(PIPELINE_UNITS);
    for _ in 0..PIPELINE_UNITS as usize / 2 / BATCH_MAX {
        lease_and_commit(&mut core, BATCH_MAX, false);
    }
    group.bench_function(format!("snapshot_copy/{PIPELINE_UNITS}_units"), |b| {
        b.iter(|| core.snapshot_source(0))
    });
    let source = core.snapshot_source(0);
    group.bench_function(format!("snapshot_encode/{PIPELINE_UNITS}_units"), |b| {
        b.iter(|| source.encode_with_head(&source.head(1)))
    });
    // The same bytes through prost's derived encoding, for comparison.
    group.bench_function(
        format!("snapshot_encode_via_structs/{PIPELINE_UNITS}_units"),
        |b| b.iter(|| source.to_snapshot(1).encode_to_vec()),
    );
    group.finish();
}

/// Deleting one finished pipeline that was submitted before 1,000,000
/// pending units: the pass over the ready queue that renumbers them, paid
/// under the state lock once per `tmctl delete` or retention pass.
fn delete(c: &mut Criterion) {
    const PENDING: u64 = 1_000_000;
    let mut group = c.benchmark_group("core");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let mut core = empty_core();
    core.submit("finished", spec(1), 5, 0).unwrap();
    while let (_, leases) = core.lease(WORKER, BATCH_MAX, false, 0).unwrap()
        && !leases.is_empty()
    {
        let items = done_all(&leases);
        core.commit(TOKEN, &items, 0).unwrap();
    }
    let mut left = PENDING;
    for n in 0.. {
        let size = left.min(PIPELINE_UNITS);
        core.submit(&format!("bench-{n:08x}"), spec(size), 5, 0)
            .unwrap();
        left -= size;
        if left == 0 {
            break;
        }
    }
    let ids = vec!["finished".to_string()];
    group.bench_function(format!("delete/1_pipeline_before_{PENDING}_pending"), |b| {
        b.iter_batched(
            || core.clone(),
            |mut core| {
                core.delete_pipelines(&ids, 0).unwrap();
                core // dropped untimed
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, lease_commit, large, delete);
criterion_main!(benches);
