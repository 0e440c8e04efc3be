//! The worker's Prometheus metrics (`taskmaster-worker --metrics ADDR`):
//! slots and slots busy, attempts by outcome, and task time.
//!
//! Counts are read when scraped from the running workers' own counters
//! (the ones [`crate::WorkerStats`] reports), so the unit path pays
//! nothing for them; the task-time histogram takes one observation per
//! attempt. Labels are outcomes only, never a pipeline, unit or lease.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::shared::Shared;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Workers running in this process (the binary runs one); weak, so a
/// finished one is dropped. Locked at a worker's start and at a scrape.
static RUNNING: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Task time per outcome (`succeeded`, `failed`): 10 ms to about 11 min.
static TASK_SECONDS: LazyLock<Family<Outcome, Histogram>> = LazyLock::new(|| {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 16)))
});

/// Tasks running now (staging and upload included), over this process.
static TASKS_RUNNING: AtomicI64 = AtomicI64::new(0);

/// A running task, counted in `slots_busy` until dropped.
pub(crate) struct TaskRunning(());

impl Drop for TaskRunning {
    fn drop(&mut self) {
        TASKS_RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a task as running until the result is dropped. (The leasing
/// loop holds free slots' permits while it waits for work, so the slots'
/// semaphore does not tell busy slots.)
pub(crate) fn task_running() -> TaskRunning {
    TASKS_RUNNING.fetch_add(1, Ordering::Relaxed);
    TaskRunning(())
}

/// Counts `worker` in the metrics while it runs.
pub(crate) fn track(worker: &Arc<Shared>) {
    let mut running = RUNNING.lock();
    running.retain(|w| w.strong_count() > 0);
    running.push(Arc::downgrade(worker));
}

/// One attempt's task time, by whether the task succeeded.
pub(crate) fn observe_task(took: Duration, succeeded: bool) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    TASK_SECONDS
        .get_or_create(&Outcome { outcome })
        .observe(took.as_secs_f64());
}

/// The text exposition (OpenMetrics) of this process's workers.
pub fn encode() -> String {
    let running: Vec<Arc<Shared>> = RUNNING.lock().iter().filter_map(Weak::upgrade).collect();
    let mut slots = 0i64;
    let attempts = Family::<Outcome, Counter>::default();
    for worker in &running {
        let all = i64::from(worker.config.slots);
        slots += all;
        let stats = worker.stats.snapshot();
        for (outcome, n) in [
            ("committed", stats.units_committed),
            ("failed", stats.units_failed),
            ("refused", stats.commits_refused),
            ("abandoned", stats.commits_abandoned),
            ("lease_lost", stats.leases_lost),
            ("released", stats.leases_released),
        ] {
            attempts.get_or_create(&Outcome { outcome }).inc_by(n);
        }
    }
    let mut registry = Registry::default();
    let gauge = |value: i64| {
        let g = Gauge::<i64>::default();
        g.set(value);
        g
    };
    registry.register(
        "taskmaster_worker_slots",
        "Units this worker runs at once",
        gauge(slots),
    );
    registry.register(
        "taskmaster_worker_slots_busy",
        "Slots running a unit's task now",
        gauge(TASKS_RUNNING.load(Ordering::Relaxed)),
    );
    registry.register(
        "taskmaster_worker_attempts",
        "Attempts by how they ended: committed, failed (reported), refused \
         (the master refused the commit), abandoned (the commit never got \
         through), lease_lost, released (given back at shutdown)",
        attempts,
    );
    registry.register(
        "taskmaster_worker_task_seconds",
        "Time of a unit's task, staging and upload included, by outcome",
        TASK_SECONDS.clone(),
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                encode(),
            )
                .into_response()
        }),
    );
    axum::serve(listener, app).await
}
