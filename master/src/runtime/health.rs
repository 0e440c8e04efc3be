//! What the gRPC health service says (issue 24): SERVING while the
//! journal takes changes, NOT_SERVING from the moment it fails (a full
//! disk, until the rebuild brings a working journal; any other failure,
//! until the process stops), so a load balancer or an orchestrator stops
//! sending work to a master that can only refuse it.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::Master;

/// How often a failed journal is looked at again for a rebuilt one. The
/// rebuild itself probes for space every few seconds; this only bounds
/// how late SERVING comes after it.
const RECOVERY_CHECK_INTERVAL: Duration = Duration::from_millis(200);

impl Master {
    /// Keeps `health` (for the whole server, "", and for each of
    /// `services`) in step with the journal, until shutdown.
    pub async fn run_health(self: Arc<Self>, health: HealthReporter, services: Vec<&'static str>) {
        let report = |status: ServingStatus| {
            let health = health.clone();
            let services = services.clone();
            async move {
                health.set_service_status("", status).await;
                for service in services {
                    health.set_service_status(service, status).await;
                }
            }
        };
        loop {
            let journal = self.journal();
            if journal.check().is_ok() {
                report(ServingStatus::Serving).await;
                let mut closing = self.closing.subscribe();
                tokio::select! {
                    failure = journal.failed() => {
                        tracing::warn!(error = %failure, "health: NOT_SERVING (the journal failed)");
                    }
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
            drop(journal);
            report(ServingStatus::NotServing).await;
            // Until a rebuild swaps a working journal in.
            loop {
                if !self.pause(RECOVERY_CHECK_INTERVAL).await {
                    return;
                }
                if self.journal().check().is_ok() {
                    tracing::info!("health: SERVING again (the journal was rebuilt)");
                    break;
                }
            }
        }
    }
}
