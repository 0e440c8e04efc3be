//! The sweep: deletes the output directories of attempts that can no longer
//! commit (their lease expired, failed, was released or went stale), so
//! refused and abandoned attempts leave nothing behind. Committed outputs
//! and attempts still holding their lease are never touched.
//!
//! Store layout: `<store>/<pipeline>/<group>/<unit>/<attempt>/...`, the
//! attempt's directory named by its lease id and the granting master's
//! incarnation (`taskmaster_proto::compact::attempt_dir_name`). Only
//! directories of pipelines and groups the master knows are looked at, so a
//! store shared with other data is safe. Workers make an attempt's outputs
//! read-only before they commit them, so a refused commit can leave a
//! read-only directory behind: the sweep gives its directories their write
//! permission back to delete it (which only works when the master runs as
//! the workers' user, or as root).
//!
//! A local store is walked on the file system; a remote one
//! ([`RemoteStore`], `s3://bucket/prefix`) is listed and deleted from
//! through `object_store`, with the same layout under its key prefix and
//! the same decision ([`dead_attempts`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use taskmaster_proto::compact::{attempt_dir_name, parse_attempt_dir_name};
use taskmaster_spec::object_url::{open_bucket, split_object_url};

use crate::core::Core;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub attempts_deleted: u64,
    pub attempts_kept: u64,
}

/// One attempt directory found in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attempt {
    pub pipeline_id: String,
    pub group: String,
    pub unit: u32,
    pub lease_id: u64,
    /// The incarnation in the directory's name (0: none).
    pub incarnation: u64,
}

impl Attempt {
    /// The attempt's directory name under its unit's.
    pub fn dir_name(&self) -> String {
        attempt_dir_name(self.lease_id, self.incarnation)
    }
}

/// The groups a sweep may look inside, by pipeline id: copied from the core
/// once per sweep, so the walk holds no lock. A pipeline's directory is
/// not even listed unless it is here, so what deleted pipelines left in
/// the store costs a sweep nothing but one name each.
pub type Known = HashMap<String, HashSet<String>>;

/// Which pipelines each periodic sweep walks. A finished pipeline holds no
/// lease, so once a sweep that began after it finished has walked it, only
/// an attempt that lost its lease and kept writing (a zombie) can leave
/// anything new there: those pipelines are walked again only every
/// `full_every`-th round, not every round, since a finished pipeline of a
/// million units is a million directories to list (or objects, on S3).
/// Which ones were walked follows from their journaled finish times, so
/// the rounds keep only when the last one began.
#[derive(Debug)]
pub struct Rounds {
    full_every: u64,
    round: u64,
    /// When the previous round began (unix ms; 0 before the first).
    previous_began_unix_ms: u64,
}

impl Rounds {
    pub fn new(full_every: u64) -> Rounds {
        Rounds {
            full_every: full_every.max(1),
            round: 0,
            previous_began_unix_ms: 0,
        }
    }

    /// Begins a round at `now_unix_ms`: pipelines recorded as finished
    /// before the returned time were walked by the previous round and may
    /// be skipped; None on a full round (walk them all). Rounds run one
    /// after another, so the previous one has completed.
    pub fn begin(&mut self, now_unix_ms: u64) -> Option<u64> {
        let full = self.round.is_multiple_of(self.full_every);
        self.round += 1;
        let previous = std::mem::replace(&mut self.previous_began_unix_ms, now_unix_ms);
        (!full && previous > 0).then_some(previous)
    }
}

/// Lists the attempt directories under `store_root` for the pipelines and
/// groups in `known` (file system only; no state lock held).
pub fn find_attempts(store_root: &Path, known: &Known) -> Vec<Attempt> {
    let mut out = Vec::new();
    for pipeline in dir_names(store_root) {
        let Some(groups) = known.get(&pipeline) else {
            continue;
        };
        for group in dir_names(&store_root.join(&pipeline)) {
            if !groups.contains(&group) {
                continue;
            }
            let group_dir = store_root.join(&pipeline).join(&group);
            for unit in dir_names(&group_dir)
                .iter()
                .filter_map(|u| u.parse::<u32>().ok())
            {
                let unit_dir = group_dir.join(unit.to_string());
                for (lease_id, incarnation) in dir_names(&unit_dir)
                    .iter()
                    .filter_map(|name| parse_attempt_dir_name(name))
                {
                    out.push(Attempt {
                        pipeline_id: pipeline.clone(),
                        group: group.clone(),
                        unit,
                        lease_id,
                        incarnation,
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
            attempt.incarnation,
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
            .join(a.dir_name());
        match remove_attempt_dir(&dir) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "sweep could not delete an attempt's outputs")
            }
        }
    }
    deleted
}

/// Removes an attempt's directory like `fs::remove_dir_all`, read-only
/// ones too: on "permission denied" its directories get their owner's
/// write permission back (symlinks are not followed) and it tries again.
fn remove_attempt_dir(dir: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            allow_writes_under(dir, 0);
            fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Deepest directory nesting made writable under an attempt's directory:
/// the workers' own limit on output nesting (32) and some.
const ATTEMPT_DEPTH_MAX: usize = 64;

/// Gives `dir` and every directory under it their owner's write
/// permission, as far as it can (the removal reports what is left).
fn allow_writes_under(dir: &Path, depth: usize) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if depth > ATTEMPT_DEPTH_MAX || !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o200 == 0
        && fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200)).is_err()
    {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        allow_writes_under(&entry.path(), depth + 1);
    }
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

/// A remote store the master sweeps: an S3-compatible bucket and a key
/// prefix, from `--store s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix` without a trailing `/`: what output names are
    /// formatted with.
    url: String,
    /// Where the store layout starts in the bucket (empty: at its root).
    prefix: ObjectPath,
}

/// Objects of one attempt, by attempt.
pub type AttemptObjects = BTreeMap<Attempt, Vec<ObjectPath>>;

impl RemoteStore {
    /// Opens `s3://bucket[/prefix]`. Credentials, region and endpoint come
    /// from the standard `AWS_*` variables (`AWS_ENDPOINT` and
    /// `AWS_ALLOW_HTTP=true` for an S3-compatible server); nothing is
    /// contacted yet.
    pub fn open(url: &str) -> Result<RemoteStore, String> {
        let (bucket, prefix) = split_object_url(url).map_err(|e| format!("store {e}"))?;
        let prefix = ObjectPath::parse(prefix).map_err(|e| format!("store URL {url:?}: {e}"))?;
        let store = open_bucket(bucket).map_err(|e| format!("store {url}: {e}"))?;
        let url = match prefix.as_ref() {
            "" => format!("s3://{bucket}"),
            prefix => format!("s3://{bucket}/{prefix}"),
        };
        Ok(RemoteStore { store, url, prefix })
    }

    /// The store's URL, normalized (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bucket's client (task logs are read and deleted through it,
    /// `crate::logs`).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the store layout starts in the bucket (empty: at its root).
    pub fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    /// Lists the attempts under the pipelines and groups `known` accepts,
    /// with their objects.
    pub async fn find_attempts(
        &self,
        known: &Known,
    ) -> Result<AttemptObjects, object_store::Error> {
        let mut found = AttemptObjects::new();
        for pipeline in self.child_names(&self.prefix).await? {
            let Some(groups) = known.get(&pipeline) else {
                continue;
            };
            let pipeline_dir = self.prefix.clone().join(pipeline.as_str());
            for group in self.child_names(&pipeline_dir).await? {
                if !groups.contains(&group) {
                    continue;
                }
                let group_dir = pipeline_dir.clone().join(group.as_str());
                let mut objects = self.store.list(Some(&group_dir));
                while let Some(meta) = objects.try_next().await? {
                    let Some((unit, (lease_id, incarnation))) =
                        unit_and_lease(&meta.location, &group_dir)
                    else {
                        continue;
                    };
                    let attempt = Attempt {
                        pipeline_id: pipeline.clone(),
                        group: group.clone(),
                        unit,
                        lease_id,
                        incarnation,
                    };
                    found.entry(attempt).or_default().push(meta.location);
                }
            }
        }
        Ok(found)
    }

    /// Deletes the objects of `dead` attempts; returns how many attempts
    /// lost all their objects. Failures are logged; the next sweep retries.
    pub async fn delete_attempts(&self, dead: &[Attempt], found: &mut AttemptObjects) -> u64 {
        let mut deleted = 0;
        for attempt in dead {
            let objects = found.remove(attempt).unwrap_or_default();
            let objects = futures_util::stream::iter(objects.into_iter().map(Ok)).boxed();
            let failed = self
                .store
                .delete_stream(objects)
                .filter_map(|result| async move { result.err() })
                .collect::<Vec<_>>()
                .await;
            match failed.first() {
                None => deleted += 1,
                Some(e) => tracing::warn!(
                    ?attempt, error = %e, failures = failed.len(),
                    "sweep could not delete an attempt's objects"
                ),
            }
        }
        deleted
    }

    /// Names of the "directories" (common prefixes) just under `dir`.
    async fn child_names(&self, dir: &ObjectPath) -> Result<Vec<String>, object_store::Error> {
        let dir = (!dir.as_ref().is_empty()).then_some(dir);
        let listed = self.store.list_with_delimiter(dir).await?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}

/// The unit and (lease id, incarnation) of an object
/// `<group_dir>/<unit>/<attempt>/...`.
fn unit_and_lease(location: &ObjectPath, group_dir: &ObjectPath) -> Option<(u32, (u64, u64))> {
    let mut parts = location.prefix_match(group_dir)?;
    let unit = parts.next()?.as_ref().parse().ok()?;
    let lease_id = parse_attempt_dir_name(parts.next()?.as_ref())?;
    // An object directly at `<unit>/<attempt>` is not an attempt's output.
    parts.next()?;
    Some((unit, lease_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_pipeline_is_walked_once_then_on_full_rounds_only() {
        let mut rounds = Rounds::new(3);
        assert_eq!(rounds.begin(1_000), None, "round 0 is full");
        // What finished before round 0 began was walked by it.
        assert_eq!(rounds.begin(2_000), Some(1_000));
        assert_eq!(rounds.begin(3_000), Some(2_000));
        assert_eq!(rounds.begin(4_000), None, "round 3 is full");
        assert_eq!(rounds.begin(5_000), Some(4_000));
    }

    #[test]
    fn only_known_pipelines_and_groups_are_walked() {
        let root = tempfile::tempdir().unwrap();
        for dir in [
            "p-1/a/0/7",
            "p-1/a/1/9",
            "p-1/a/1/10-00000000000000ab",
            "p-1/a/1/11-AB",
            "p-1/x/0/8",
            "gone/a/0/3",
            "p-1/a/notaunit/4",
        ] {
            fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let known: Known = [("p-1".to_string(), ["a".to_string()].into())].into();
        let mut found = find_attempts(root.path(), &known);
        found.sort();
        let attempt = |unit, lease_id, incarnation| Attempt {
            pipeline_id: "p-1".into(),
            group: "a".into(),
            unit,
            lease_id,
            incarnation,
        };
        assert_eq!(
            found,
            [attempt(0, 7, 0), attempt(1, 9, 0), attempt(1, 10, 0xab)]
        );
    }

    /// As a master run by an ordinary user: a thread that cannot override
    /// file permissions (capabilities are per thread), so that the test
    /// means something when it runs as root too.
    fn without_permission_override<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        const CAP_DAC_OVERRIDE: u32 = 1;
        const CAP_DAC_READ_SEARCH: u32 = 2;
        const CAP_FOWNER: u32 = 3;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mask =
                        !((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH) | (1 << CAP_FOWNER));
                    let mut header = Header {
                        version: 0x2008_0522,
                        pid: 0,
                    };
                    let mut data = [Data::default(); 2];
                    // SAFETY: the v3 layout capget/capset expect; pid 0 is
                    // this thread.
                    unsafe {
                        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
                            data[0].effective &= mask;
                            data[0].permitted &= mask;
                            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr());
                        }
                    }
                    f()
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn read_only_attempt_directories_are_deleted() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let attempt = |lease_id| Attempt {
            pipeline_id: "p-1".into(),
            group: "a".into(),
            unit: 0,
            lease_id,
            incarnation: 0,
        };
        let sealed = root.path().join("p-1/a/0/7");
        fs::create_dir_all(sealed.join("sub/deeper")).unwrap();
        fs::write(sealed.join("part-00000"), "x").unwrap();
        fs::write(sealed.join("sub/deeper/f"), "y").unwrap();
        for dir in ["sub/deeper", "sub", ""] {
            let dir = sealed.join(dir);
            fs::set_permissions(dir.join("."), fs::Permissions::from_mode(0o555)).unwrap();
        }
        let kept = root.path().join("p-1/a/0/8");
        fs::create_dir_all(&kept).unwrap();

        let deleted = without_permission_override(|| {
            // Precondition: this thread is held by permissions.
            assert!(fs::write(sealed.join("probe"), "").is_err());
            delete_attempts(root.path(), &[attempt(7), attempt(9)])
        });
        assert_eq!(deleted, 1);
        assert!(!sealed.exists());
        assert!(kept.exists());
    }

    #[test]
    fn objects_name_their_attempt() {
        let group = ObjectPath::from("pfx/p-1/g");
        let attempt = |key: &str| unit_and_lease(&ObjectPath::from(key), &group);
        assert_eq!(attempt("pfx/p-1/g/3/17/out/part-00000"), Some((3, (17, 0))));
        assert_eq!(
            attempt("pfx/p-1/g/3/17-00000000000000ab/out"),
            Some((3, (17, 0xab)))
        );
        assert_eq!(attempt("pfx/p-1/g/3/17"), None);
        assert_eq!(attempt("pfx/p-1/g/x/17/out"), None);
        assert_eq!(attempt("pfx/p-1/gg/3/17/out"), None);
    }

    #[test]
    fn open_normalizes_the_url() {
        let store = RemoteStore::open("s3://bucket/pfx/").unwrap();
        assert_eq!(store.url(), "s3://bucket/pfx");
        assert_eq!(
            RemoteStore::open("s3://bucket").unwrap().url(),
            "s3://bucket"
        );
    }
}
