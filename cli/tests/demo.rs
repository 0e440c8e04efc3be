//! Runs the real `tmctl demo` (embedded master and workers) with small
//! settings, and checks its answer against a word count computed here,
//! independently, with the word definition `wordcount.map` documents:
//! maximal runs of `char::is_alphanumeric` characters, lowercased.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

/// Longest one demo run may take: generous, because the tests share two
/// cores with builds.
const WAIT: Duration = Duration::from_secs(60);

/// The small settings every run uses, so units are many and tiny: inputs
/// above 20000 bytes are cut into byte ranges, and the shuffle has 3
/// partitions.
const SMALL: [&str; 8] = [
    "--scale",
    "2",
    "--workers",
    "2",
    "--partitions",
    "3",
    "--unit-bytes",
    "20000",
];

/// Runs `tmctl demo` with `args` (bounded by [`WAIT`]), ignoring the
/// caller's TASKMASTER_ADDR and RUST_LOG.
async fn demo(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tmctl"));
    command
        .arg("demo")
        .args(args)
        .env_remove("TASKMASTER_ADDR")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("tmctl demo finishes in time")
        .expect("tmctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "tmctl demo failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// The reference count: words as `wordcount.map` defines them, counted in
/// a plain hash map.
fn count_words(texts: &[String]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for text in texts {
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() {
                *counts.entry(word.to_lowercase()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The `top` most frequent words, in the order the demo promises: count
/// descending, equal counts by word (bytewise) ascending.
fn top_words(counts: &HashMap<String, u64>, top: usize) -> Vec<(String, u64)> {
    let mut words: Vec<(String, u64)> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.truncate(top);
    words
}

/// The `RANK WORD COUNT` rows of the printed top words table.
fn printed_top_words(stdout: &str) -> Vec<(String, u64)> {
    let mut lines = stdout.lines().skip_while(|line| !line.starts_with("top "));
    assert!(lines.next().is_some(), "no top words table in:\n{stdout}");
    let header = lines.next().expect("a table header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["RANK", "WORD", "COUNT"]
    );
    lines
        .take_while(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 3, "{line:?}");
            assert_eq!(cells[0], (i + 1).to_string(), "{line:?}");
            (cells[1].to_string(), cells[2].parse().expect("a count"))
        })
        .collect()
}

/// The value of a `name   value` line of the summary.
fn fact<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{stdout}"))
        .trim()
}

/// Checks the printed top words and totals against the reference.
fn assert_counts_match(stdout: &str, reference: &HashMap<String, u64>, top: usize) {
    assert_eq!(
        printed_top_words(stdout),
        top_words(reference, top),
        "{stdout}"
    );
    let total: u64 = reference.values().sum();
    let expected = format!("{total} in total, {} distinct", reference.len());
    assert_eq!(fact(stdout, "words"), expected);
}

/// A tiny deterministic generator (64-bit LCG), so inputs are the same on
/// every run without a dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Words of mixed case, Unicode letters, digits and punctuation that the
/// tokenizer must cut or join the way `wordcount.map` does.
const VOCABULARY: &[&str] = &[
    "the",
    "The",
    "THE",
    "and",
    "of",
    "whale",
    "Whale!",
    "sea,",
    "don't",
    "ship's",
    "Straße",
    "école",
    "ÉCOLE",
    "naïve",
    "Zürich",
    "東京",
    "2024",
    "x1",
    "well-known",
    "e-mail",
    "(call)",
    "me",
    "Ishmael.",
    "a",
    "I",
    "--",
    "...",
    "42nd",
    "über",
    "Über",
    "café",
    "CAFÉ",
];

/// `lines` lines of random words; low vocabulary indices are more likely,
/// so counts differ and the top of the list is meaningful.
fn random_text(rng: &mut Lcg, lines: usize, line_end: &str) -> String {
    let mut text = String::new();
    for _ in 0..lines {
        let words = 1 + rng.below(12);
        for i in 0..words {
            let index = rng.below(VOCABULARY.len()).min(rng.below(VOCABULARY.len()));
            if i > 0 {
                text.push(if rng.below(5) == 0 { '\t' } else { ' ' });
            }
            text.push_str(VOCABULARY[index]);
        }
        text.push_str(line_end);
    }
    text
}

/// Writes an input folder: nested files, an empty one, one with CRLF line
/// ends, one without a final newline, and one big enough to be cut into
/// byte ranges; returns the texts written.
fn write_input(dir: &Path) -> Vec<String> {
    let mut rng = Lcg(7);
    let files = [
        ("a.txt", random_text(&mut rng, 40, "\n")),
        ("empty.txt", String::new()),
        ("sub/b.txt", random_text(&mut rng, 200, "\r\n")),
        (
            "sub/deeper/c.md",
            random_text(&mut rng, 30, "\n").trim_end().to_string(),
        ),
        ("big.txt", random_text(&mut rng, 1500, "\n")),
    ];
    let mut texts = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        texts.push(text);
    }
    let big = std::fs::metadata(dir.join("big.txt")).unwrap().len();
    assert!(big > 40_000, "big.txt is {big} bytes: too small to be cut");
    texts
}

#[tokio::test]
async fn the_top_words_of_an_input_folder_match_a_reference_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let texts = write_input(&input);
    let mut args = SMALL.to_vec();
    args.extend(["--top", "15", "--input", input.to_str().unwrap()]);
    let output = demo(&args).await;
    assert_success(&output);
    let out = stdout(&output);
    assert_counts_match(&out, &count_words(&texts), 15);
    let bytes: usize = texts.iter().map(String::len).sum();
    let expected_input = format!("{:.2} MB in 5 files", bytes as f64 / 1e6);
    assert_eq!(fact(&out, "input"), expected_input);
    assert!(fact(&out, "pipeline").ends_with("(succeeded)"), "{out}");
    assert_eq!(fact(&out, "retries"), "0");
    // Not a terminal: a plain line per stage change, ending with each
    // stage complete (merge: one unit; reduce: one per partition).
    let err = stderr(&output);
    assert!(
        err.contains("reduce  3/3") && err.contains("merge   1/1"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no terminal escapes when not a terminal:\n{err}"
    );
}

#[tokio::test]
async fn the_bundled_corpus_is_counted_at_scale_and_the_temp_dir_removed() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "txt") {
            let text = std::fs::read_to_string(&path).unwrap();
            // --scale 2: the corpus is counted twice.
            texts.push(text.clone());
            texts.push(text);
        }
    }
    assert_eq!(texts.len(), 14, "seven corpus texts");
    let output = demo(&SMALL).await;
    assert_success(&output);
    let out = stdout(&output);
    assert_counts_match(&out, &count_words(&texts), 10);
    let units: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("units per stage"))
        .skip(2)
        .take(5)
        .collect();
    let stages: Vec<&str> = units
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(stages, ["split", "map", "reduce", "sort", "merge"], "{out}");
    assert!(
        units[2].split_whitespace().eq(["reduce", "3", "0"]),
        "{out}"
    );
    assert!(
        !out.contains("data dir"),
        "a removed data dir is not reported:\n{out}"
    );
    let err = stderr(&output);
    let data_dir = err
        .lines()
        .find_map(|line| line.strip_prefix("data dir "))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("no data dir line in:\n{err}"));
    assert!(!Path::new(data_dir).exists(), "{data_dir} was not removed");
}

#[tokio::test]
async fn keep_with_a_data_dir_leaves_the_journal_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = SMALL.to_vec();
    args.extend(["--keep", "--data-dir", data.to_str().unwrap()]);
    let output = demo(&args).await;
    assert_success(&output);
    let data = data.canonicalize().unwrap();
    assert!(data.join("journal.log").is_file());
    assert!(data.join("input/corpus-00000.txt").is_file());
    assert!(data.join("store").is_dir());
    let out = stdout(&output);
    assert_eq!(fact(&out, "data dir"), format!("{} (kept)", data.display()));
}

#[tokio::test]
async fn bad_flag_values_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing");
    let cases: [(&[&str], &str); 10] = [
        (&["--workers", "0"], "--workers"),
        (&["--workers", "65"], "--workers"),
        (&["--partitions", "0"], "--partitions"),
        (&["--partitions", "1025"], "--partitions"),
        (&["--unit-bytes", "10"], "1KiB"),
        (&["--unit-bytes", "lots"], "--unit-bytes"),
        (&["--scale", "0"], "--scale"),
        (&["--top", "0"], "--top"),
        (
            &["--input", empty.to_str().unwrap()],
            "holds no regular files",
        ),
        (
            &["--input", missing.to_str().unwrap()],
            "cannot read input folder",
        ),
    ];
    for (args, expected) in cases {
        let output = demo(args).await;
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
    // The OS error is said once, not once by the message and again as its
    // source.
    let output = demo(&["--input", missing.to_str().unwrap()]).await;
    let err = stderr(&output);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "{err:?}"
    );
}
