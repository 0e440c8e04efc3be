//! Published partitions in the store: `published/<schedule>/<partition>/
//! MANIFEST.json`, one per logical time, naming the committed outputs of
//! the run that produced it. A manifest is replaced in one step (a rename
//! in a local store; a single PUT in an object store), so a reader sees
//! the old run's partition or the new one, never a mix, and a re-run of a
//! day replaces that day's partition instead of adding to it.
//!
//! Manifests point at the run's committed outputs, which live as long as
//! the run's pipeline: keep finished pipelines (`--retain-finished`) as
//! long as readers need the published data.

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use serde_json::{Value, json};
use taskmaster_proto::v1::{Publication, PublishedGroup};

use crate::core::schedule_publish::temp_suffix;
use crate::logs::DataStore;

pub const PUBLISHED_DIR: &str = "published";
const MANIFEST: &str = "MANIFEST.json";

fn to_json(p: &Publication) -> String {
    let groups: serde_json::Map<String, Value> = p
        .groups
        .iter()
        .map(|g| (g.group.clone(), json!(g.paths)))
        .collect();
    json!({
        "schedule": p.schedule,
        "logical": p.logical,
        "partition": p.partition,
        "ds": p.ds,
        "pipeline_id": p.pipeline_id,
        "published_unix_ms": p.published_unix_ms,
        "outputs": groups,
    })
    .to_string()
}

fn from_json(text: &str, manifest: String) -> Option<Publication> {
    let v: Value = serde_json::from_str(text).ok()?;
    let text_of = |key: &str| v[key].as_str().unwrap_or_default().to_string();
    let groups = v["outputs"]
        .as_object()?
        .iter()
        .map(|(group, paths)| PublishedGroup {
            group: group.clone(),
            paths: paths
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Some(Publication {
        schedule: text_of("schedule"),
        logical: text_of("logical"),
        partition: text_of("partition"),
        ds: text_of("ds"),
        pipeline_id: text_of("pipeline_id"),
        published_unix_ms: v["published_unix_ms"].as_u64().unwrap_or(0),
        groups,
        manifest,
    })
}

/// Writes `p`'s manifest, replacing the partition's; returns where.
pub async fn write(store: &DataStore, p: &Publication) -> Result<String, String> {
    let body = to_json(p);
    match store {
        DataStore::Local(root) => {
            let dir = root
                .join(PUBLISHED_DIR)
                .join(&p.schedule)
                .join(&p.partition);
            let temp = dir.join(format!("{MANIFEST}.{}.tmp", temp_suffix(p)));
            let path = dir.join(MANIFEST);
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || write_local(&dir, &temp, &path, &body))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{shown}: {e}"))?;
            Ok(shown)
        }
        DataStore::Remote(remote) => {
            let path = manifest_object(remote.prefix(), &p.schedule, &p.partition);
            remote
                .object_store()
                .put(&path, body.into_bytes().into())
                .await
                .map_err(|e| format!("{}/{path}: {e}", remote.url()))?;
            Ok(format!(
                "{}/{}",
                remote.url(),
                strip(remote.prefix(), &path)
            ))
        }
    }
}

fn write_local(dir: &Path, temp: &Path, path: &Path, body: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(temp)?;
    file.write_all(body.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn manifest_object(prefix: &ObjectPath, schedule: &str, partition: &str) -> ObjectPath {
    prefix
        .clone()
        .join(PUBLISHED_DIR)
        .join(schedule)
        .join(partition)
        .join(MANIFEST)
}

fn strip(prefix: &ObjectPath, path: &ObjectPath) -> String {
    let (prefix, path) = (prefix.as_ref(), path.as_ref());
    path.strip_prefix(prefix)
        .map(|p| p.trim_start_matches('/'))
        .unwrap_or(path)
        .to_string()
}

/// The partitions published for `schedule` (whose date is `ds`, if given),
/// oldest first.
pub async fn list(
    store: &DataStore,
    schedule: &str,
    ds: Option<&str>,
) -> Result<Vec<Publication>, String> {
    // Partition names start with the date, compact (20261207T...).
    let day = ds.map(|d| d.replace('-', ""));
    let wanted = move |partition: &str| day.as_deref().is_none_or(|d| partition.starts_with(d));
    let mut found = match store {
        DataStore::Local(root) => {
            let dir = root.join(PUBLISHED_DIR).join(schedule);
            tokio::task::spawn_blocking(move || list_local(&dir, wanted))
                .await
                .map_err(|e| e.to_string())?
        }
        DataStore::Remote(remote) => {
            use futures_util::TryStreamExt as _;
            let dir = remote.prefix().clone().join(PUBLISHED_DIR).join(schedule);
            let objects: Vec<_> = remote
                .object_store()
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| e.to_string())?;
            let mut found = Vec::new();
            for object in objects {
                let parts: Vec<_> = object.location.parts().collect();
                let n = parts.len();
                if n < 2 || parts[n - 1].as_ref() != MANIFEST || !wanted(parts[n - 2].as_ref()) {
                    continue;
                }
                let bytes = remote
                    .object_store()
                    .get(&object.location)
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?;
                let shown = format!(
                    "{}/{}",
                    remote.url(),
                    strip(remote.prefix(), &object.location)
                );
                found.extend(from_json(&String::from_utf8_lossy(&bytes), shown));
            }
            found
        }
    };
    found.sort_by(|a, b| a.partition.cmp(&b.partition));
    Ok(found)
}

fn list_local(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<Publication> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new(); // nothing published yet
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| wanted(&e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let path: PathBuf = e.path().join(MANIFEST);
            let text = std::fs::read_to_string(&path).ok()?;
            from_json(&text, path.display().to_string())
        })
        .collect()
}
