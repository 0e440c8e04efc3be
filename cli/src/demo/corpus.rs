//! The bundled public-domain corpus (see `cli/corpus/README.md`),
//! compiled into the binary so `tmctl demo` needs no download, and the
//! scaled copies of it the demo counts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::DemoError;

/// The corpus texts: (file name, text). Every text ends with a newline, so
/// copies written back to back never join two words across a boundary.
pub const CORPUS: &[(&str, &str)] = &[
    (
        "shakespeare_sonnets.txt",
        include_str!("../../corpus/shakespeare_sonnets.txt"),
    ),
    (
        "gettysburg_address.txt",
        include_str!("../../corpus/gettysburg_address.txt"),
    ),
    (
        "declaration_of_independence.txt",
        include_str!("../../corpus/declaration_of_independence.txt"),
    ),
    (
        "kjv_psalms.txt",
        include_str!("../../corpus/kjv_psalms.txt"),
    ),
    (
        "dickinson_poems.txt",
        include_str!("../../corpus/dickinson_poems.txt"),
    ),
    (
        "moby_dick_loomings.txt",
        include_str!("../../corpus/moby_dick_loomings.txt"),
    ),
    (
        "pride_and_prejudice_chapter_1.txt",
        include_str!("../../corpus/pride_and_prejudice_chapter_1.txt"),
    ),
];

/// Copies of the corpus per generated input file. Several files (rather
/// than one big one) let the client pack them into units the way it packs
/// real inputs; ten copies make files of about half a megabyte.
pub const COPIES_PER_FILE: u32 = 10;

/// Bytes of one copy of the corpus.
pub fn corpus_bytes() -> u64 {
    CORPUS.iter().map(|(_, text)| text.len() as u64).sum()
}

/// Writes the corpus `scale` times into `dir` (created if missing) as
/// `corpus-00000.txt`, `corpus-00001.txt`, ..., [`COPIES_PER_FILE`] copies
/// per file, and returns each file's path and size, in order. Files of an
/// earlier run with the same names are overwritten.
pub fn write_scaled(dir: &Path, scale: u32) -> Result<Vec<(PathBuf, u64)>, DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io("cannot create", dir, e))?;
    let mut files = Vec::new();
    let mut written = 0;
    while written < scale {
        let copies = COPIES_PER_FILE.min(scale - written);
        let path = dir.join(format!("corpus-{:05}.txt", files.len()));
        write_copies(&path, copies).map_err(|e| DemoError::io("cannot write", &path, e))?;
        files.push((path, corpus_bytes() * u64::from(copies)));
        written += copies;
    }
    Ok(files)
}

fn write_copies(path: &Path, copies: u32) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for _ in 0..copies {
        for (_, text) in CORPUS {
            out.write_all(text.as_bytes())?;
        }
    }
    // No sync: the copies are regenerated on every run, so losing them in
    // a crash costs nothing.
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_plain_and_ends_with_a_newline() {
        for (name, text) in CORPUS {
            assert!(text.ends_with('\n'), "{name}");
            assert!(text.is_ascii(), "{name} is not plain ASCII");
        }
        let bytes = corpus_bytes();
        assert!((30_000..=60_000).contains(&bytes), "{bytes} bytes");
    }

    #[test]
    fn scaled_copies_are_split_into_files_of_ten_copies() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_scaled(dir.path(), 23).unwrap();
        let copies: Vec<u64> = files
            .iter()
            .map(|(_, size)| size / corpus_bytes())
            .collect();
        assert_eq!(copies, vec![10, 10, 3]);
        for (path, size) in &files {
            assert_eq!(std::fs::metadata(path).unwrap().len(), *size);
        }
        assert!(files[2].0.ends_with("corpus-00002.txt"));
    }
}
