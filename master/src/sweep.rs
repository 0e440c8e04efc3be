//! The sweep: deletes the output directories of attempts that can no longer
//! commit (their lease expired, failed, was released or went stale), so
//! refused and abandoned attempts leave nothing behind. Committed outputs
//! and attempts still holding their lease are never touched.
//!
//! Store layout: `<store>/<pipeline>/<group>/<unit>/<lease id>/...`. Only
//! directories of pipelines and groups the master knows are looked at, so a
//! store shared with other data is safe.

use std::fs;
use std::path::Path;

use crate::core::Core;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub attempts_deleted: u64,
    pub attempts_kept: u64,
}

/// One attempt directory found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub pipeline_id: String,
    pub group: String,
    pub unit: u32,
    pub lease_id: u64,
}

/// Lists the attempt directories under `store_root` for the pipelines and
/// groups `known` accepts (file system only; no state lock held).
pub fn find_attempts(store_root: &Path, known: impl Fn(&str, &str) -> bool) -> Vec<Attempt> {
    let mut out = Vec::new();
    for pipeline in dir_names(store_root) {
        for group in dir_names(&store_root.join(&pipeline)) {
            if !known(&pipeline, &group) {
                continue;
            }
            let group_dir = store_root.join(&pipeline).join(&group);
            for unit in dir_names(&group_dir)
                .iter()
                .filter_map(|u| u.parse::<u32>().ok())
            {
                let unit_dir = group_dir.join(unit.to_string());
                for lease_id in dir_names(&unit_dir)
                    .iter()
                    .filter_map(|l| l.parse::<u64>().ok())
                {
                    out.push(Attempt {
                        pipeline_id: pipeline.clone(),
                        group: group.clone(),
                        unit,
                        lease_id,
                    });
                }
            }
        }
    }
    out
}

/// The attempts among `found` that can no longer commit, by the core.
pub fn dead_attempts(core: &Core, found: Vec<Attempt>) -> (Vec<Attempt>, u64) {
    let mut dead = Vec::new();
    let mut kept = 0;
    for attempt in found {
        if core.attempt_may_matter(
            &attempt.pipeline_id,
            &attempt.group,
            attempt.unit,
            attempt.lease_id,
        ) {
            kept += 1;
        } else {
            dead.push(attempt);
        }
    }
    (dead, kept)
}

/// Deletes the directories of `dead` attempts; returns how many went.
pub fn delete_attempts(store_root: &Path, dead: &[Attempt]) -> u64 {
    let mut deleted = 0;
    for a in dead {
        let dir = store_root
            .join(&a.pipeline_id)
            .join(&a.group)
            .join(a.unit.to_string())
            .join(a.lease_id.to_string());
        match fs::remove_dir_all(&dir) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "sweep could not delete an attempt's outputs")
            }
        }
    }
    deleted
}

/// Names of the real subdirectories of `dir` (symlinks are not followed).
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}
