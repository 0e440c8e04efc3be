//! The demo's input files: every regular file under `--input DIR`, or
//! scaled copies of the bundled corpus, turned into the split group's
//! units.

use std::path::{Path, PathBuf};

use taskmaster_proto::v1::InputUnit;

use super::{DemoError, corpus};
use taskmaster_client::sizing::size_units;

/// Most files `--input` may hold; more is almost surely the wrong folder
/// (and would make a huge submit message).
pub const INPUT_FILES_MAX: usize = 100_000;

/// The files a pipeline reads, in order, with their sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// Absolute paths and sizes in bytes, sorted by path.
    pub files: Vec<(String, u64)>,
}

impl Inputs {
    /// The input of a demo run: the files under `input`, or (without one)
    /// `scale` copies of the corpus written to `<data_dir>/input/`.
    pub fn prepare(input: Option<&Path>, data_dir: &Path, scale: u32) -> Result<Inputs, DemoError> {
        let files = match input {
            Some(dir) => list_files(dir)?,
            None => corpus::write_scaled(&data_dir.join("input"), scale)?,
        };
        let files = files
            .into_iter()
            .map(|(path, size)| match path.into_os_string().into_string() {
                Ok(text) => Ok((text, size)),
                // Paths travel to the master as strings.
                Err(raw) => Err(DemoError::Input(format!(
                    "{}: file names must be UTF-8",
                    PathBuf::from(raw).display()
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inputs { files })
    }

    /// Total bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, size)| size).sum()
    }

    /// The split group's units: small files packed and large ones cut into
    /// byte ranges of about `unit_bytes`.
    pub fn units(&self, unit_bytes: u64) -> Vec<InputUnit> {
        size_units(&self.files, unit_bytes)
    }
}

/// Every regular file under `dir`, recursively, as absolute paths sorted
/// by path, with sizes. Symbolic links to files are followed; links to
/// folders are not (they could make a cycle).
pub fn list_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>, DemoError> {
    let root = dir
        .canonicalize()
        .map_err(|e| DemoError::io("cannot read input folder", dir, e))?;
    if !root.is_dir() {
        return Err(DemoError::Input(format!(
            "--input {} is not a folder",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    let mut folders = vec![root];
    while let Some(folder) = folders.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| DemoError::io("cannot read", &folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DemoError::io("cannot read", &folder, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| DemoError::io("cannot read", &path, e))?;
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            // Follows a symbolic link; a broken one is skipped like any
            // other thing that is not a regular file.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => files.push((path, meta.len())),
                _ => {}
            }
            if files.len() > INPUT_FILES_MAX {
                return Err(DemoError::Input(format!(
                    "--input {} holds more than {INPUT_FILES_MAX} files",
                    dir.display()
                )));
            }
        }
    }
    if files.is_empty() {
        return Err(DemoError::Input(format!(
            "--input {} holds no regular files",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_regular_files_recursively_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for (name, text) in [("z.txt", "zz"), ("b/c/x.txt", "x"), ("a.txt", "")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let root = dir.path().canonicalize().unwrap();
        let files = list_files(dir.path()).unwrap();
        let expected = vec![
            (root.join("a.txt"), 0),
            (root.join("b/c/x.txt"), 1),
            (root.join("z.txt"), 2),
        ];
        assert_eq!(files, expected);
    }

    #[test]
    fn an_empty_or_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let err = list_files(&dir.path().join("empty")).unwrap_err();
        assert!(err.to_string().contains("no regular files"), "{err}");
        let err = list_files(&dir.path().join("missing")).unwrap_err();
        assert!(
            err.to_string().contains("cannot read input folder"),
            "{err}"
        );
    }
}
