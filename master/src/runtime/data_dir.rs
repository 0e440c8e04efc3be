//! Opening a data dir: its lock (one master per data dir), the check that
//! a data dir without a journal is not another store's (`--init`), and the
//! store its config names. Run once, by `Master::open`; they block.

use std::fs::File;
use std::path::Path;

use super::MasterConfig;
use crate::sweep::RemoteStore;

/// Takes an exclusive lock on `<data_dir>/LOCK` so two masters never share
/// a store. The lock lasts as long as the returned file is open.
pub(super) fn lock(data_dir: &Path) -> Result<File, String> {
    let path = data_dir.join("LOCK");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err("another master is using it (LOCK is held)".into())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// What a data dir without a journal holds that a brand-new one would not
/// (None: nothing). Asked only when the journal's backend has none (with
/// one, recovery decides). Only the default store, inside the data dir, is
/// looked into: a store named with `--store` may be shared with other
/// data, and a remote one is not listed at start.
pub(super) fn data_without_a_journal(config: &MasterConfig) -> Option<String> {
    let data_dir = &config.data_dir;
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    if config.store_root.is_none() && config.store_url.is_none() {
        let store = data_dir.join("store");
        let held = names(&store);
        if let Some(first) = held.first() {
            return Some(format!(
                "its store {} holds {} entries (e.g. {first:?})",
                store.display(),
                held.len()
            ));
        }
    }
    let own = ["LOCK", "store", "snapshots"];
    let other: Vec<String> = names(data_dir)
        .into_iter()
        .filter(|n| !own.contains(&n.as_str()))
        .collect();
    other
        .first()
        .map(|first| format!("it holds {} other entries (e.g. {first:?})", other.len()))
}

/// The store's local root (empty for a remote store) and the remote store,
/// if `config` names one. A local root is created and made canonical.
pub(super) fn open_store(config: &MasterConfig) -> Result<(String, Option<RemoteStore>), String> {
    if let Some(url) = &config.store_url {
        if config.store_root.is_some() {
            return Err("set a store directory or a store URL, not both".into());
        }
        let remote = RemoteStore::open(url).map_err(|e| format!("cannot open the store: {e}"))?;
        return Ok((String::new(), Some(remote)));
    }
    let root = match &config.store_root {
        Some(root) => root.clone(),
        None => config.data_dir.join("store"),
    };
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create the store: {e}"))?;
    let root = root.canonicalize().map_err(|e| format!("store: {e}"))?;
    Ok((root.display().to_string(), None))
}
