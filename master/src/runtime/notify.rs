//! Schedule notices: the notifier looks at the runs once a second (a short
//! look under the state lock, `Core::schedule_notices`) and queues what is
//! new; a delivery task posts each as JSON to the schedule's webhook, with
//! retries. The queue is bounded and deliveries run apart from everything
//! else, so a slow or dead receiver never slows the master: past the
//! bound, notices are dropped with a warning.
//!
//! Delivery is at most once across master restarts (a new master seeds
//! itself with the runs already finished) and retried while it runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::core::schedule_notices::Notice;

use super::Master;

const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Notices waiting for delivery, at most.
const QUEUE_MAX: usize = 1_000;
/// Posts under way at once.
const POSTS_AT_ONCE: usize = 8;
/// Tries per notice, the first included, with doubling pauses from 1 s.
const TRIES: u32 = 5;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

impl Master {
    /// Looks for notices and has them delivered, until shutdown.
    pub async fn run_notifier(self: Arc<Self>) {
        let (queue, waiting) = tokio::sync::mpsc::channel::<Notice>(QUEUE_MAX);
        let delivery = tokio::spawn(deliver(waiting));
        let mut seen = HashSet::new();
        let unix_ms = self.clock.unix_ms();
        self.state
            .lock()
            .core
            .schedule_notices(&mut seen, unix_ms, true);
        while self.pause(LOOK_EVERY).await {
            let unix_ms = self.clock.unix_ms();
            let notices = self
                .state
                .lock()
                .core
                .schedule_notices(&mut seen, unix_ms, false);
            for notice in notices {
                if let Err(e) = queue.try_send(notice) {
                    tracing::warn!(error = %e, "schedule notice dropped: the delivery queue is full");
                }
            }
        }
        delivery.abort();
    }
}

/// Posts queued notices, a few at a time.
async fn deliver(mut waiting: tokio::sync::mpsc::Receiver<Notice>) {
    let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: schedule notices are not delivered");
            return;
        }
    };
    let posts = Arc::new(tokio::sync::Semaphore::new(POSTS_AT_ONCE));
    while let Some(notice) = waiting.recv().await {
        let Ok(permit) = Arc::clone(&posts).acquire_owned().await else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move {
            post(&client, &notice).await;
            drop(permit);
        });
    }
}

async fn post(client: &reqwest::Client, notice: &Notice) {
    let body = serde_json::json!({
        "event": notice.event,
        "schedule": notice.schedule,
        "logical": notice.logical,
        "pipeline_id": notice.pipeline_id,
        "state": notice.state,
        "failed_units": notice.failed_units,
    })
    .to_string();
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=TRIES {
        let sent = client
            .post(&notice.webhook)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(reply) if reply.status().is_success() => return,
            Ok(reply) => tracing::warn!(
                schedule = notice.schedule, event = notice.event, attempt, status = %reply.status(),
                "webhook refused a schedule notice"
            ),
            Err(e) => tracing::warn!(
                schedule = notice.schedule, event = notice.event, attempt, error = %e,
                "webhook unreachable"
            ),
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    tracing::error!(
        schedule = notice.schedule,
        event = notice.event,
        pipeline_id = notice.pipeline_id,
        "schedule notice not delivered after {TRIES} tries"
    );
}
