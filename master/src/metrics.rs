//! The master's Prometheus metrics (`/metrics`, see `http::metrics`).
//!
//! Counters and histograms are process-wide statics bumped on the hot
//! path with atomics only (no lock, no allocation): commits, refusals by
//! check, leases granted and expired, the journal's syncs, gRPC calls.
//! Gauges of the state (units, pipelines, workers) are computed when
//! scraped, from one short read of the core ([`crate::core::ui_view`]).
//! No label ever carries a pipeline id, unit or lease id: label values
//! are check names, gRPC method names, states, and pipeline and group
//! names (capped, see `core::ui_view::METRIC_SERIES_MAX`).
//!
//! Being process-wide, the statics add up every master a process runs
//! (tests that start several in one process); the binary runs one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::core::Refusal;
use crate::core::ui_view::{MetricCounts, PIPELINE_STATES, UNIT_STATES};

/// Upper bounds of the duration histograms' buckets, in seconds: 100 µs
/// to about 6.5 s, doubling (a journal sync is ~1 ms on a good disk, a
/// long-polling lease call up to 60 s lands in +Inf).
const DURATION_BUCKETS_S: [f64; 17] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768, 6.5536,
];

/// The gRPC methods timed (by their name in the request path); any other
/// path is counted as `other`, so a client cannot add label values.
const RPC_METHODS: [&str; 39] = [
    "ReadLogs",
    "CreateToken",
    "ListTokens",
    "RevokeToken",
    "AddSchedule",
    "ListSchedules",
    "ChangeSchedule",
    "TriggerSchedule",
    "ListRuns",
    "Backfill",
    "ListBackfills",
    "ChangeBackfill",
    "ListPublished",
    "Submit",
    "GetStatus",
    "ListPipelines",
    "ListOutputs",
    "Lease",
    "Renew",
    "Commit",
    "Release",
    "ListInputs",
    "Work",
    "Cancel",
    "DeletePipelines",
    "Block",
    "Retry",
    "Rerun",
    "Clear",
    "ChangeConfig",
    "Scale",
    "ListWorkers",
    "GetMasterStatus",
    "TakeSnapshot",
    "ListSnapshots",
    "Rollback",
    "Check",
    "Watch",
    "other",
];

/// Why a commit item was refused, by the check that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    ServerToken,
    ConfigVersion,
    Lease,
    OutputName,
}

impl RefusalReason {
    const ALL: [RefusalReason; 4] = [
        RefusalReason::ServerToken,
        RefusalReason::ConfigVersion,
        RefusalReason::Lease,
        RefusalReason::OutputName,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::ServerToken => "server_token",
            RefusalReason::ConfigVersion => "config_version",
            RefusalReason::Lease => "lease",
            RefusalReason::OutputName => "output_name",
        }
    }

    /// The check behind a per-item refusal. An unknown unit is a lease no
    /// longer held; a malformed item or output list, or a repeat naming
    /// other outputs, fails the output-name check.
    pub fn of(refusal: &Refusal) -> RefusalReason {
        match refusal {
            Refusal::StaleConfig { .. } => RefusalReason::ConfigVersion,
            Refusal::LeaseLost(_) | Refusal::UnknownUnit(_) => RefusalReason::Lease,
            Refusal::Invalid(_) | Refusal::AlreadyCommitted(_) => RefusalReason::OutputName,
        }
    }
}

/// A histogram of durations whose observation is a few relaxed atomic
/// adds: prometheus-client's own takes a mutex per observation.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<HistogramCells>,
}

#[derive(Debug)]
struct HistogramCells {
    /// Observations per bucket (not cumulative), the last one +Inf.
    buckets: [AtomicU64; DURATION_BUCKETS_S.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> AtomicHistogram {
        AtomicHistogram {
            inner: Arc::new(HistogramCells {
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                count: AtomicU64::new(0),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }
}

impl AtomicHistogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let at = DURATION_BUCKETS_S
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS_S.len());
        let cells = &self.inner;
        cells.buckets[at].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &self.inner;
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS_S
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(cells.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = cells.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            cells.count.load(Ordering::Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    pipeline_name: String,
    group: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The master's counters and histograms (see the module doc).
pub struct MasterMetrics {
    registry: Registry,
    commits: Counter,
    attempts_failed: Counter,
    refusals: [Counter; 4],
    leases_granted: Counter,
    lease_expiries: Counter,
    journal_sync: AtomicHistogram,
    rpc: [AtomicHistogram; RPC_METHODS.len()],
}

static METRICS: LazyLock<MasterMetrics> = LazyLock::new(MasterMetrics::new);

/// The process's metrics.
pub fn metrics() -> &'static MasterMetrics {
    &METRICS
}

impl MasterMetrics {
    fn new() -> MasterMetrics {
        let mut registry = Registry::default();
        let commits = Counter::default();
        registry.register(
            "taskmaster_commits",
            "Units committed (accepted commits; repeats after a lost reply not counted twice)",
            commits.clone(),
        );
        let attempts_failed = Counter::default();
        registry.register(
            "taskmaster_attempts_failed",
            "Failed attempts reported by workers and accepted",
            attempts_failed.clone(),
        );
        let refusal_family = Family::<ReasonLabel, Counter>::default();
        let refusals = RefusalReason::ALL
            .map(|r| refusal_family.get_or_create_owned(&ReasonLabel { reason: r.label() }));
        registry.register(
            "taskmaster_commit_refusals",
            "Commit items refused, by the check that refused them",
            refusal_family,
        );
        let leases_granted = Counter::default();
        registry.register(
            "taskmaster_leases_granted",
            "Leases granted to workers",
            leases_granted.clone(),
        );
        let lease_expiries = Counter::default();
        registry.register(
            "taskmaster_lease_expiries",
            "Leases that ran out without renewal (their units were queued again)",
            lease_expiries.clone(),
        );
        let journal_sync = AtomicHistogram::default();
        registry.register(
            "taskmaster_journal_sync_seconds",
            "Time of one journal write and fdatasync (one group commit)",
            journal_sync.clone(),
        );
        let rpc_family = Family::<MethodLabel, AtomicHistogram>::new_with_constructor(
            AtomicHistogram::default as fn() -> AtomicHistogram,
        );
        let rpc = RPC_METHODS.map(|method| rpc_family.get_or_create_owned(&MethodLabel { method }));
        registry.register(
            "taskmaster_rpc_seconds",
            "gRPC calls, from request to reply headers (a stream: until it opens)",
            rpc_family,
        );
        MasterMetrics {
            registry,
            commits,
            attempts_failed,
            refusals,
            leases_granted,
            lease_expiries,
            journal_sync,
            rpc,
        }
    }

    pub fn count_commits(&self, n: u64) {
        if n > 0 {
            self.commits.inc_by(n);
        }
    }

    pub fn count_failed_attempts(&self, n: u64) {
        if n > 0 {
            self.attempts_failed.inc_by(n);
        }
    }

    pub fn count_refusals(&self, reason: RefusalReason, n: u64) {
        let at = RefusalReason::ALL.iter().position(|r| *r == reason);
        if let (Some(at), true) = (at, n > 0) {
            self.refusals[at].inc_by(n);
        }
    }

    pub fn count_leases_granted(&self, n: u64) {
        if n > 0 {
            self.leases_granted.inc_by(n);
        }
    }

    pub fn count_lease_expiries(&self, n: u64) {
        if n > 0 {
            self.lease_expiries.inc_by(n);
        }
    }

    /// Runs `sync` (a journal write and sync) and records how long it took.
    pub fn time_journal_sync<T>(&self, sync: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = sync();
        self.journal_sync.observe(start.elapsed());
        out
    }

    /// The histogram of a gRPC request path's method (`other` for a path
    /// that names none of ours).
    pub fn rpc_histogram(&self, path: &str) -> &AtomicHistogram {
        let method = path.rsplit('/').next().unwrap_or("");
        let at = RPC_METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(RPC_METHODS.len() - 1);
        &self.rpc[at]
    }

    /// The text exposition: the counters and histograms, then the gauges
    /// of `counts` (read from the state by the caller).
    pub fn encode(&self, counts: &MetricCounts) -> Result<String, std::fmt::Error> {
        let gauges = gauges(counts);
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)?;
        prometheus_client::encoding::text::encode_registry(&mut text, &gauges)?;
        prometheus_client::encoding::text::encode_eof(&mut text)?;
        Ok(text)
    }
}

/// A registry of this scrape's gauges.
fn gauges(counts: &MetricCounts) -> Registry {
    let mut registry = Registry::default();
    let units = Family::<UnitLabels, Gauge>::default();
    for (name, group, per_state) in &counts.units {
        for (state, n) in UNIT_STATES.iter().zip(per_state) {
            let labels = UnitLabels {
                pipeline_name: name.clone(),
                group: group.clone(),
                state,
            };
            units.get_or_create(&labels).set(*n as i64);
        }
    }
    registry.register(
        "taskmaster_units",
        "Units per pipeline name, group and state, over every pipeline the master holds",
        units,
    );
    let pipelines = Family::<StateLabel, Gauge>::default();
    for (state, n) in PIPELINE_STATES.iter().zip(&counts.pipelines) {
        pipelines
            .get_or_create(&StateLabel { state })
            .set(*n as i64);
    }
    registry.register(
        "taskmaster_pipelines",
        "Pipelines the master holds, per state",
        pipelines,
    );
    let workers = Gauge::<i64>::default();
    workers.set(counts.workers_alive as i64);
    registry.register(
        "taskmaster_workers",
        "Workers that called within their liveness window",
        workers,
    );
    let leases = Gauge::<i64>::default();
    leases.set(counts.leases_in_flight as i64);
    registry.register("taskmaster_leases_in_flight", "Leases held now", leases);
    registry
}

/// Counts a commit call's per-item answers: accepted commits, accepted
/// failure reports, refusals by check.
pub fn count_commit_results(
    items: &[taskmaster_proto::v1::CommitItem],
    results: &[Result<(), Refusal>],
) {
    use taskmaster_proto::v1::commit_item;
    let m = metrics();
    let (mut commits, mut failed) = (0, 0);
    for (item, result) in items.iter().zip(results) {
        match (result, &item.result) {
            (Ok(()), Some(commit_item::Result::Outputs(_))) => commits += 1,
            (Ok(()), _) => failed += 1,
            (Err(refusal), _) => m.count_refusals(RefusalReason::of(refusal), 1),
        }
    }
    m.count_commits(commits);
    m.count_failed_attempts(failed);
}

/// Counts a whole commit call of `items` refused for its server token.
pub fn count_wrong_master(items: usize) {
    metrics().count_refusals(RefusalReason::ServerToken, items as u64);
}

#[cfg(test)]
mod tests {
    use super::RPC_METHODS;

    /// Every RPC the role table knows is timed under its own name, not
    /// `other`: the list cannot fall behind the services again.
    #[test]
    fn every_rpc_of_the_role_table_has_a_timing_label() {
        for (path, _) in crate::auth::roles::TABLE {
            let method = path.rsplit('/').next().unwrap_or_default();
            assert!(
                RPC_METHODS.contains(&method),
                "{path} is not timed on its own"
            );
        }
    }
}
