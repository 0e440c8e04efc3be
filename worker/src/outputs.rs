//! The attempt's output directory: where it is, making it empty before the
//! task runs, listing what the task wrote so the commit can name it, and
//! making it read-only before the commit ([`seal_outputs`]).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use taskmaster_proto::v1::OutputFile;

use crate::task::TaskError;

/// Output files one attempt may commit: the master's limit.
pub use taskmaster_proto::limits::OUTPUT_FILES_MAX;
/// Deepest directory nesting walked under an output directory.
pub const OUTPUT_DEPTH_MAX: usize = 32;
/// Deepest nesting [`remove_tree`] makes writable: a store (four levels
/// to an attempt, then its outputs) inside a data or temporary directory.
const TREE_DEPTH_MAX: usize = 64;

/// The attempt's output directory, `store_root/output_prefix`.
///
/// The prefix comes from the master, and the directory is emptied before the
/// task runs, so it is checked to stay strictly inside the store root: a bad
/// prefix must never make the worker delete files elsewhere.
pub fn attempt_output_dir(store_root: &str, output_prefix: &str) -> Result<PathBuf, TaskError> {
    let root = Path::new(store_root);
    if !root.is_absolute() {
        return Err(TaskError::new(format!(
            "the lease's store root {store_root:?} is not an absolute path"
        )));
    }
    let prefix = Path::new(output_prefix);
    let mut components = prefix.components().peekable();
    let only_names = components
        .clone()
        .all(|component| matches!(component, Component::Normal(_)));
    if components.peek().is_none() || !only_names {
        return Err(TaskError::new(format!(
            "the lease's output prefix {output_prefix:?} is not a relative path of plain names"
        )));
    }
    Ok(root.join(prefix))
}

/// Creates `dir` if needed and removes anything already in it, so the task
/// starts from an empty directory and the commit lists only its own files.
pub fn prepare_output_dir(dir: &Path) -> Result<(), TaskError> {
    let fail = |what: &str, path: &Path, err: std::io::Error| {
        TaskError::new(format!("cannot {what} {}: {err}", path.display()))
    };
    fs::create_dir_all(dir).map_err(|err| fail("create output directory", dir, err))?;
    // Sealed by an earlier run of this lease that got as far as its commit.
    allow_writes(dir).map_err(|err| fail("make writable", dir, err))?;
    let entries = fs::read_dir(dir).map_err(|err| fail("read output directory", dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| fail("read output directory", dir, err))?;
        let path = entry.path();
        // The prefix is unique to the attempt, so leftovers mean an earlier
        // run of this same lease (e.g. a worker restarted mid-attempt).
        tracing::warn!(path = %path.display(), "removing leftover file from output directory");
        let file_type = entry
            .file_type()
            .map_err(|err| fail("inspect", &path, err))?;
        let removed = if file_type.is_dir() {
            remove_tree(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|err| fail("remove leftover", &path, err))?;
    }
    Ok(())
}

/// Makes the attempt's outputs read-only before they are committed: every
/// file and directory under `dir`, and `dir` itself, loses its write
/// permission bits (the others are kept). Only for a local store, where a
/// committed output stays in place and later tasks run as the same user:
/// a task that writes through `../` into a committed output then gets
/// "permission denied" instead of silently changing committed data.
///
/// It guards against mistakes, not against a task that means harm: the
/// owner (every task runs as the worker's user) may `chmod` them back, and
/// a worker running as root is not stopped by permissions at all.
/// Symlinks are not followed (outputs refuse them anyway).
pub fn seal_outputs(dir: &Path) -> Result<(), TaskError> {
    seal(dir, 0).map_err(|err| {
        TaskError::new(format!(
            "cannot make the outputs in {} read-only: {err}",
            dir.display()
        ))
    })
}

fn seal(path: &Path, depth: usize) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        if depth > OUTPUT_DEPTH_MAX {
            return Err(io::Error::other(format!(
                "nests deeper than {OUTPUT_DEPTH_MAX} levels"
            )));
        }
        for entry in fs::read_dir(path)? {
            seal(&entry?.path(), depth + 1)?;
        }
    }
    let mode = meta.permissions().mode();
    if mode & 0o222 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o222))?;
    }
    Ok(())
}

/// Gives the owner write permission on directory `dir` again, if it lacks it.
fn allow_writes(dir: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o200 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
    }
    Ok(())
}

/// Removes the directory `dir` and everything in it, like
/// [`fs::remove_dir_all`], also when it holds sealed outputs (see
/// [`seal_outputs`]): on "permission denied" it gives its directories
/// their owner's write permission back and tries again. For whoever
/// cleans up a store or a temporary directory holding one (tests, demos).
/// Symlinks are removed, never followed.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(dir);
            fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Gives `dir` and every directory under it their owner's write
/// permission back, as far as it can (symlinks are not followed, errors
/// are skipped): what removing sealed outputs needs (see [`remove_tree`]).
pub fn make_dirs_writable(dir: &Path) {
    allow_writes_under(dir, 0);
}

fn allow_writes_under(dir: &Path, depth: usize) {
    if depth > TREE_DEPTH_MAX || allow_writes(dir).is_err() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            allow_writes_under(&entry.path(), depth + 1);
        }
    }
}

/// Every regular file under `dir`, named relative to it with `/`
/// separators, sorted by name.
///
/// Symlinks and special files are refused: a committed output must be data
/// inside the attempt's own directory, not a pointer to something that can
/// change after the commit.
pub fn collect_outputs(dir: &Path) -> Result<Vec<OutputFile>, TaskError> {
    let mut files = Vec::new();
    walk(dir, "", 0, &mut files)?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Appends the files under `dir` (named `prefix` relative to the output
/// directory) to `files`.
fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut Vec<OutputFile>,
) -> Result<(), TaskError> {
    if depth > OUTPUT_DEPTH_MAX {
        return Err(TaskError::new(format!(
            "output directory nests deeper than {OUTPUT_DEPTH_MAX} levels at {}",
            dir.display()
        )));
    }
    let read_error = |err: std::io::Error| {
        TaskError::new(format!("cannot list outputs in {}: {err}", dir.display()))
    };
    for entry in fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(TaskError::new(format!(
                "output file name is not UTF-8: {}",
                path.display()
            )));
        };
        let name = format!("{prefix}{file_name}");
        // symlink_metadata does not follow links, so a link is seen as one.
        let meta = fs::symlink_metadata(&path).map_err(read_error)?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            return Err(TaskError::new(format!(
                "output {name:?} is a symlink; outputs must be regular files"
            )));
        } else if file_type.is_dir() {
            walk(&path, &format!("{name}/"), depth + 1, files)?;
        } else if file_type.is_file() {
            if files.len() == OUTPUT_FILES_MAX {
                return Err(TaskError::new(format!(
                    "more than {OUTPUT_FILES_MAX} output files in {}",
                    dir.display()
                )));
            }
            files.push(OutputFile {
                name,
                size_bytes: meta.len(),
            });
        } else {
            return Err(TaskError::new(format!(
                "output {name:?} is not a regular file or directory"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size_bytes: u64) -> OutputFile {
        OutputFile {
            name: name.to_string(),
            size_bytes,
        }
    }

    #[test]
    fn collects_nested_files_with_sizes_and_slash_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        fs::write(dir.path().join("top.txt"), b"hello").unwrap();
        fs::write(dir.path().join("a/mid.bin"), vec![0u8; 1000]).unwrap();
        fs::write(dir.path().join("a/b/leaf"), b"").unwrap();

        let files = collect_outputs(dir.path()).unwrap();
        assert_eq!(
            files,
            vec![
                file("a/b/leaf", 0),
                file("a/mid.bin", 1000),
                file("top.txt", 5)
            ]
        );
    }

    #[test]
    fn refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("sub/link")).unwrap();

        let err = collect_outputs(dir.path()).unwrap_err();
        assert!(err.message().contains("\"sub/link\" is a symlink"), "{err}");
    }

    /// The worker's limit is the master's, so an attempt with too many
    /// outputs fails here with the reason instead of having its commit
    /// refused and its lease run out.
    #[test]
    fn more_outputs_than_the_master_accepts_fail_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..OUTPUT_FILES_MAX {
            fs::write(dir.path().join(i.to_string()), "").unwrap();
        }
        assert_eq!(collect_outputs(dir.path()).unwrap().len(), OUTPUT_FILES_MAX);
        fs::write(dir.path().join("one-more"), "").unwrap();
        let err = collect_outputs(dir.path()).unwrap_err();
        assert!(
            err.message().contains("more than 10000 output files"),
            "{err}"
        );
    }

    #[test]
    fn empty_dir_has_no_outputs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(collect_outputs(dir.path()).unwrap(), vec![]);
    }

    #[test]
    fn prepare_creates_and_empties_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("p/g/0/7");
        prepare_output_dir(&dir).unwrap();
        assert!(dir.is_dir());

        fs::create_dir_all(dir.join("old/deeper")).unwrap();
        fs::write(dir.join("old/deeper/f"), b"stale").unwrap();
        fs::write(dir.join("stale"), b"stale").unwrap();
        prepare_output_dir(&dir).unwrap();
        assert_eq!(collect_outputs(&dir).unwrap(), vec![]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn output_dir_must_stay_inside_the_store_root() {
        let dir = attempt_output_dir("/store", "p/g/3/42/").unwrap();
        assert_eq!(dir, PathBuf::from("/store/p/g/3/42"));

        for bad_prefix in ["", "/etc", "p/../../etc", "./p", "p/./g/.."] {
            let err = attempt_output_dir("/store", bad_prefix).unwrap_err();
            assert!(
                err.message().contains("output prefix"),
                "{bad_prefix}: {err}"
            );
        }
        let err = attempt_output_dir("store", "p/g/3/42/").unwrap_err();
        assert!(err.message().contains("store root"), "{err}");
    }
}
