//! The runtime's side of the sweep (`crate::sweep`): which attempts can no
//! longer commit is decided against the core in short turns of the state
//! lock, the store is listed and cleaned outside it; and deleting finished
//! pipelines, which sweeps their attempts first.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Master, MasterError};
use crate::sweep::{self, Attempt, RemoteStore, Swept};

/// Attempts decided per turn of the state lock: a store of millions of
/// attempts is decided between the calls, not ahead of them all.
const SWEEP_DECISIONS_PER_TURN: usize = 4096;

impl Master {
    /// Deletes the outputs of attempts that can no longer commit.
    pub async fn sweep(self: &Arc<Self>) -> Swept {
        self.sweep_pipelines(|_| true).await
    }

    /// [`Master::sweep`] under the pipelines `chosen` accepts only.
    pub(super) async fn sweep_pipelines(self: &Arc<Self>, chosen: impl Fn(&str) -> bool) -> Swept {
        let known = self.state.lock().core.group_names(chosen);
        if let Some(remote) = &self.remote {
            return self.sweep_remote(remote, &known).await;
        }
        let master = Arc::clone(self);
        // Walking and deleting directories blocks.
        let swept = tokio::task::spawn_blocking(move || {
            let root = PathBuf::from(master.state.lock().core.config().store_root.clone());
            let found = sweep::find_attempts(&root, &known);
            let (dead, kept) = master.dead_attempts(found);
            Swept {
                attempts_deleted: sweep::delete_attempts(&root, &dead),
                attempts_kept: kept,
            }
        })
        .await;
        swept.unwrap_or_default()
    }

    /// [`Master::sweep`] for a remote store: list, decide, delete. A
    /// listing error is logged and the sweep tried again later.
    async fn sweep_remote(&self, remote: &RemoteStore, known: &sweep::Known) -> Swept {
        let found = remote.find_attempts(known).await;
        let mut found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(store = remote.url(), error = %e, "sweep could not list the store");
                return Swept::default();
            }
        };
        let (dead, kept) = self.dead_attempts(found.keys().cloned().collect());
        Swept {
            attempts_deleted: remote.delete_attempts(&dead, &mut found).await,
            attempts_kept: kept,
        }
    }

    /// The attempts among `found` that can no longer commit (see
    /// [`sweep::dead_attempts`]), and how many were kept; decided in turns
    /// of the state lock.
    fn dead_attempts(&self, mut found: Vec<Attempt>) -> (Vec<Attempt>, u64) {
        let (mut dead, mut kept) = (Vec::new(), 0);
        while !found.is_empty() {
            let turn = found.split_off(found.len().saturating_sub(SWEEP_DECISIONS_PER_TURN));
            let (turn_dead, turn_kept) = sweep::dead_attempts(&self.state.lock().core, turn);
            dead.extend(turn_dead);
            kept += turn_kept;
        }
        (dead, kept)
    }

    /// Deletes finished pipelines (all or none): first the outputs of their
    /// attempts that never committed (the sweep would never look there
    /// again), then the master forgets them. Returns what was swept.
    pub async fn delete_pipelines(
        self: &Arc<Self>,
        ids: Vec<String>,
    ) -> Result<Swept, MasterError> {
        // The groups whose logs go, read while the master still knows
        // them; the logs go only once the deletion is journaled (it may be
        // refused: a pipeline retried meanwhile runs again, logs and all).
        let groups = self
            .read(|core| {
                core.check_deletable(&ids)?;
                ids.iter()
                    .map(|id| {
                        let status = core.status(id)?;
                        Ok((
                            id.clone(),
                            status.groups.into_iter().map(|g| g.name).collect(),
                        ))
                    })
                    .collect::<Result<Vec<(String, Vec<String>)>, _>>()
            })
            .await?;
        let chosen: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let swept = self.sweep_pipelines(|p| chosen.contains(p)).await;
        self.mutate(|core, now| Ok((core.delete_pipelines(&ids, now)?, ())))
            .await?;
        crate::logs::delete_pipeline_logs(&self.data_store(), &groups).await;
        Ok(swept)
    }
}

impl Master {
    /// Where attempts write their outputs and logs (for `crate::logs`).
    pub fn data_store(&self) -> crate::logs::DataStore {
        match &self.remote {
            Some(remote) => crate::logs::DataStore::Remote(remote.clone()),
            None => crate::logs::DataStore::Local(PathBuf::from(
                self.state.lock().core.config().store_root.clone(),
            )),
        }
    }

    /// Whether an attempt may still commit or has committed (see
    /// `Core::attempt_may_matter`); false once it is over for good.
    pub async fn attempt_may_matter(
        &self,
        pipeline_id: &str,
        group: &str,
        unit: u32,
        lease_id: u64,
        incarnation: u64,
    ) -> Result<bool, MasterError> {
        self.read(|core| {
            Ok(core.attempt_may_matter(pipeline_id, group, unit, lease_id, incarnation))
        })
        .await
    }
}
