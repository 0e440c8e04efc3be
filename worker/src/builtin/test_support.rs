//! Helpers for the built-in tasks' tests: input files, units wired by
//! hand, and reading outputs back.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::rngs::StdRng;

use crate::task::{InputSlice, UnitContext};

/// A temporary directory of numbered input files and output directories.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    files: usize,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            files: 0,
        }
    }

    /// A new input file holding `content`.
    pub(crate) fn file(&mut self, content: impl AsRef<[u8]>) -> PathBuf {
        self.files += 1;
        let path = self.dir.path().join(format!("input-{}", self.files));
        fs::write(&path, content).unwrap();
        path
    }

    /// A new, empty output directory.
    pub(crate) fn out_dir(&mut self) -> PathBuf {
        self.files += 1;
        let path = self.dir.path().join(format!("out-{}", self.files));
        fs::create_dir(&path).unwrap();
        path
    }

    /// A unit reading `inputs` into a fresh output directory.
    pub(crate) fn unit(
        &mut self,
        inputs: Vec<PathBuf>,
        partitions: u32,
        config: &[(&str, &str)],
    ) -> UnitContext {
        UnitContext {
            pipeline_id: "p-test".into(),
            group: "g".into(),
            lease_id: 9,
            attempt: 1,
            inputs,
            output_dir: self.out_dir(),
            partitions,
            config: config
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            ..UnitContext::default()
        }
    }
}

/// The files of an output directory, by name.
pub(crate) fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// The output files' paths, sorted by name.
pub(crate) fn output_paths(dir: &Path) -> Vec<PathBuf> {
    outputs(dir).keys().map(|name| dir.join(name)).collect()
}

/// `content` split into lines the plain way (no trailing empty line).
pub(crate) fn lines_of(content: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = content.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// Cuts `path` (of `len` bytes) into `pieces` adjacent random slices.
pub(crate) fn random_slices(
    rng: &mut StdRng,
    path: &Path,
    len: u64,
    pieces: usize,
) -> Vec<InputSlice> {
    let mut cuts: Vec<u64> = (1..pieces).map(|_| rng.random_range(0..=len)).collect();
    cuts.extend([0, len]);
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|window| InputSlice {
            path: path.to_path_buf(),
            start: window[0],
            end: window[1],
        })
        .collect()
}

/// Text of random words: mixed case, digits, accents, non-UTF-8 bytes,
/// punctuation, blank lines and no final `\n`; about 50 distinct words
/// with uneven counts.
pub(crate) fn random_text(rng: &mut StdRng, lines: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 12] = [
        b"the",
        b"The",
        b"THE",
        b"cat",
        b"Cat",
        b"dog",
        b"caf\xc3\xa9",
        b"CAF\xc3\x89",
        b"42",
        b"x9",
        b"\xff\xfebad",
        b"zebra",
    ];
    const GAPS: [&[u8]; 5] = [b" ", b", ", b"--", b"\t", b" \xe9 "];
    let mut text = Vec::new();
    for _ in 0..lines {
        for _ in 0..rng.random_range(0..9) {
            if rng.random_bool(0.3) {
                let n = rng.random_range(0..40);
                text.extend_from_slice(format!("Word{n}").as_bytes());
            } else {
                text.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())]);
            }
            text.extend_from_slice(GAPS[rng.random_range(0..GAPS.len())]);
        }
        text.push(b'\n');
    }
    text.pop();
    text
}

/// Reference word counts, written apart from `words`: walk each text's
/// characters (bad UTF-8 decoded lossily), collecting alphanumeric ones,
/// and lowercase each word.
pub(crate) fn naive_counts(texts: &[Vec<u8>]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for text in texts {
        let mut word = String::new();
        for c in String::from_utf8_lossy(text).chars().chain([' ']) {
            if c.is_alphanumeric() {
                word.push(c);
            } else if !word.is_empty() {
                *counts.entry(word.to_lowercase()).or_insert(0) += 1;
                word.clear();
            }
        }
    }
    counts
}
