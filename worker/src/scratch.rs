//! Scratch space for one attempt: spilled sort runs, input slices copied
//! out for `exec`, anything a task needs on disk but must not commit.
//!
//! It is never inside the output directory, because everything there is
//! committed. The directory is made on first use in the system temporary
//! directory (`TMPDIR`, else `/tmp`), named `tm-scratch-<lease id>-…`, and
//! removed with everything in it when the [`Scratch`] is dropped, on errors
//! and panics too, read-only files and directories included. A worker
//! killed outright leaves it behind.

use std::path::{Path, PathBuf};

use crate::task::{TaskError, UnitContext};

/// Lazily created per-attempt scratch directory; see the module docs.
#[derive(Debug)]
pub struct Scratch {
    /// Prefix of the directory's name, so a leftover can be traced to its
    /// lease.
    prefix: String,
    /// `None` until the first file is asked for: most attempts never spill.
    dir: Option<tempfile::TempDir>,
    /// Files named so far; numbers the next one.
    files: u64,
}

impl Scratch {
    /// Scratch space for `unit`'s attempt; nothing is created yet.
    pub fn new(unit: &UnitContext) -> Self {
        Self {
            prefix: format!("tm-scratch-{}-", unit.lease_id),
            dir: None,
            files: 0,
        }
    }

    /// A new, unused path in the scratch directory, `<kind>-<n, 5 digits>`
    /// (the number keeps counting past 99999); creates the directory on
    /// first use.
    pub fn next_file(&mut self, kind: &str) -> Result<PathBuf, TaskError> {
        let dir = match self.dir.take() {
            Some(dir) => dir,
            None => tempfile::Builder::new()
                .prefix(&self.prefix)
                .tempdir()
                .map_err(|err| {
                    TaskError::new(format!(
                        "cannot create a scratch directory in {}: {err}",
                        std::env::temp_dir().display()
                    ))
                })?,
        };
        let dir = self.dir.insert(dir).path();
        let path = dir.join(format!("{kind}-{:05}", self.files));
        self.files += 1;
        Ok(path)
    }

    /// A new, empty directory in the scratch directory, named like
    /// [`Scratch::next_file`]'s files.
    pub fn next_dir(&mut self, kind: &str) -> Result<PathBuf, TaskError> {
        let path = self.next_file(kind)?;
        std::fs::create_dir(&path).map_err(|err| {
            TaskError::new(format!(
                "cannot create a scratch directory {}: {err}",
                path.display()
            ))
        })?;
        Ok(path)
    }

    /// The directory, once it exists.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_ref().map(|dir| dir.path())
    }
}

impl Drop for Scratch {
    /// Removes the directory, also when a task left read-only files or
    /// directories in it (which `TempDir` alone would leave behind).
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            if let Err(err) = crate::outputs::remove_tree(&path) {
                tracing::warn!(dir = %path.display(), %err, "cannot remove a scratch directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_on_first_use_and_removed_on_drop() {
        let unit = UnitContext {
            lease_id: 31,
            ..UnitContext::default()
        };
        let mut scratch = Scratch::new(&unit);
        assert!(scratch.path().is_none());
        let first = scratch.next_file("run").unwrap();
        let second = scratch.next_file("run").unwrap();
        assert_eq!(first.file_name().unwrap(), "run-00000");
        assert_eq!(second.file_name().unwrap(), "run-00001");
        std::fs::write(&first, b"x").unwrap();
        let dir = scratch.path().unwrap().to_path_buf();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("tm-scratch-31-"), "{name}");
        drop(scratch);
        assert!(!dir.exists());
    }

    #[test]
    fn read_only_leftovers_are_removed_too() {
        let unit = UnitContext::default();
        let mut scratch = Scratch::new(&unit);
        let sub = scratch.next_dir("tmp").unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();
        crate::outputs::seal_outputs(&sub).unwrap();
        let dir = scratch.path().unwrap().to_path_buf();
        crate::test_support::as_unprivileged(move || drop(scratch));
        assert!(!dir.exists());
    }
}
