//! The publisher: once a second it asks the core which logical times have
//! a newer succeeded run than it published (`Core::publications_due`, a
//! short look under the state lock), and writes their manifests off the
//! lock (`crate::publish`). What it wrote is remembered in memory: after a
//! restart the recent partitions are written again, which is harmless (the
//! same manifest replaces itself).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_proto::v1::Publication;

use super::{Master, MasterError};
use crate::core::CoreError;

const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Master {
    /// Publishes succeeded runs' partitions, until shutdown.
    pub async fn run_publisher(self: Arc<Self>) {
        let mut done = HashSet::new();
        while self.pause(LOOK_EVERY).await {
            let due = self.state.lock().core.publications_due(&done);
            for mut publication in due {
                publication.published_unix_ms = self.clock.unix_ms();
                match crate::publish::write(&self.data_store(), &publication).await {
                    Ok(manifest) => {
                        tracing::info!(
                            schedule = publication.schedule,
                            partition = publication.partition,
                            pipeline_id = publication.pipeline_id,
                            manifest,
                            "published"
                        );
                        done.insert((
                            publication.schedule,
                            publication.partition,
                            publication.pipeline_id,
                        ));
                    }
                    // Tried again next round.
                    Err(e) => tracing::warn!(error = %e, "could not publish a partition"),
                }
            }
        }
    }

    /// What schedule `name` has published (on date `ds`, if given).
    pub async fn published(
        &self,
        name: &str,
        ds: Option<&str>,
    ) -> Result<Vec<Publication>, MasterError> {
        self.read(|core| core.schedule_info_of(name, 0).map(|_| ()))
            .await?;
        crate::publish::list(&self.data_store(), name, ds)
            .await
            .map_err(|e| {
                MasterError::Core(CoreError::FailedPrecondition(format!(
                    "reading the store: {e}"
                )))
            })
    }
}
