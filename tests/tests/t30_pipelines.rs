//! Multi-stage pipelines end to end with the real binaries: pipeline files
//! submitted with `tmctl submit --wait` to `taskmaster serve`, run by
//! `taskmaster-worker` processes.
//!
//! - a word count (`split` → `wordcount.map` → shuffle into `sum.reduce`
//!   → `sort` → gather into `merge`) over awkward inputs, compared with
//!   counts made here from the documented definition of a word;
//! - a range-partitioned sort, by key and by value, compared with a sorted
//!   `Vec`;
//! - joins: two first groups meeting in a gather, and in a shuffle; every
//!   unit runs once, and the join only after every upstream unit ended;
//! - the shuffle barrier: no downstream unit exists before its upstream
//!   group has fully committed;
//! - bad wiring refused at submit with a clear error, and a partition
//!   number out of range failing its unit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use taskmaster_tests::*;

/// Bound on one pipeline run.
const PIPELINE_WAIT: Duration = Duration::from_secs(45);
/// Long enough that no lease expires in these runs, so every unit runs
/// exactly once and the tests can count runs.
const LEASE_MS: u64 = 15_000;

/// A master and its worker processes, killed on drop.
struct Cluster {
    master: MasterProcess,
    workers: Vec<WorkerProcess>,
}

impl Cluster {
    fn start(dir: &Path, workers: usize, slots: u32) -> Cluster {
        let master = MasterProcess::start(&dir.join("master"), "127.0.0.1:0", LEASE_MS);
        let workers = (0..workers)
            .map(|_| WorkerProcess::start(&master.url(), slots, dir))
            .collect();
        Cluster { master, workers }
    }

    fn url(&self) -> String {
        self.master.url()
    }

    /// Submits `file` with `--wait` and asserts it succeeded; returns its id.
    fn run_ok(&self, file: &Path) -> String {
        let (id, code) = submit_wait(&self.url(), file, PIPELINE_WAIT);
        let status = status_json(&self.url(), &id);
        assert_eq!(
            (code, &status["state"]),
            (Some(0), &Value::from("succeeded")),
            "pipeline {} ({id}): {status:#}\n{}",
            file.display(),
            self.logs()
        );
        id
    }

    fn logs(&self) -> String {
        let mut text = format!("master log:\n{}", self.master.log_text());
        for worker in &self.workers {
            text.push_str(&format!("worker log:\n{}", worker.log_text()));
        }
        text
    }
}

// ---------------------------------------------------------------------
// Reading outputs

/// The lines of `bytes`: split at `\n`; a last line without one counts.
fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// The lines of a file a built-in task wrote: every line ends with `\n`.
fn output_lines(path: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{path} does not end with a newline"
    );
    lines_of(&bytes)
}

/// Asserts two lists of lines are equal, showing where they first differ
/// rather than both lists whole.
fn assert_same_lines(actual: &[Vec<u8>], expected: &[Vec<u8>], what: &str) {
    let show = |lines: &[Vec<u8>], at: usize| -> Vec<String> {
        let range = at.saturating_sub(2)..(at + 3).min(lines.len());
        lines[range]
            .iter()
            .map(|l| format!("{:?}", String::from_utf8_lossy(l)))
            .collect()
    };
    if let Some(at) =
        (0..actual.len().max(expected.len())).find(|&i| actual.get(i) != expected.get(i))
    {
        panic!(
            "{what}: {} lines, expected {}; first difference at line {at}:\n  got      {:?}\n  expected {:?}",
            actual.len(),
            expected.len(),
            show(actual, at),
            show(expected, at)
        );
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

// ---------------------------------------------------------------------
// Word count

/// Words as `wordcount.map` documents them, counted without its code:
/// maximal runs of alphanumeric characters of the text decoded lossily
/// (so bytes that are not UTF-8 separate words), each lowercased. Files
/// are counted one by one: no word spans two files.
fn reference_word_counts(files: &[&[u8]]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for bytes in files {
        let text = String::from_utf8_lossy(bytes);
        let mut word = String::new();
        for c in text.chars().chain([' ']) {
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

/// `word\tcount` lines by count descending, then word ascending, as
/// `sort`/`merge` with `sort_by=value`, `order=desc` order them.
fn count_lines(counts: HashMap<String, u64>) -> Vec<Vec<u8>> {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .into_iter()
        .map(|(word, count)| format!("{word}\t{count}").into_bytes())
        .collect()
}

/// Words beyond ASCII and words that lowercase surprisingly.
const SPECIAL_WORDS: &[&str] = &[
    "Straße",
    "STRASSE",
    "naïve",
    "NAÏVE",
    "École",
    "日本語",
    "İstanbul",
    "ΣΊΣΥΦΟΣ",
    "Ⅻ",
    "٣٤",
    "x86_64",
    "don't",
    "e-mail",
    "3.14",
    "42",
    "The",
    "THE",
    "the",
];
/// What goes between words: spaces, punctuation, a tab, a no-break space.
const SEPARATORS: &[&str] = &[
    " ", " ", " ", " ", ", ", ". ", "\t", " -- ", "'", " (", ") ", "…", "\u{a0}", "; ",
];

/// A vocabulary: random ASCII words and the special ones.
fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    let mut words: Vec<String> = SPECIAL_WORDS.iter().map(|w| w.to_string()).collect();
    for _ in 0..400 {
        let len = rng.random_range(1..=9);
        words.push(
            (0..len)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect(),
        );
    }
    words
}

/// `count` words picked with a skew (so counts vary and tie), cased at
/// random, with separators, ending in `end`.
fn text_line(rng: &mut StdRng, vocab: &[String], count: usize, end: &str) -> Vec<u8> {
    let mut line = String::new();
    for _ in 0..count {
        line.push_str(SEPARATORS[rng.random_range(0..SEPARATORS.len())]);
        let word = &vocab[(rng.random::<f64>().powi(3) * vocab.len() as f64) as usize];
        match rng.random_range(0..6) {
            0 => line.push_str(&word.to_uppercase()),
            1 => {
                let mut chars = word.chars();
                line.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                line.extend(chars);
            }
            _ => line.push_str(word),
        }
    }
    line.push_str(end);
    line.into_bytes()
}

/// Writes the word count's awkward inputs under `dir`; returns every
/// file's content, in no particular order.
fn write_wordcount_inputs(dir: &Path, rng: &mut StdRng) -> Vec<Vec<u8>> {
    let vocab = vocabulary(rng);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..3 {
        files.push((format!("empty-{i}.txt"), Vec::new()));
    }
    // Neighbours in one packed unit: a word must not run across them.
    files.push((
        "a-no-newline.txt".into(),
        b"alpha beta\ngamma zeta".to_vec(),
    ));
    files.push(("a-no-newline2.txt".into(), b"omega delta".to_vec()));
    let mut binary =
        b"good\xffbad caf\xc3 na\xc3\xafve \xe2\x82end \xc0\xafword \xed\xa0\x80x\n".to_vec();
    for _ in 0..4000 {
        match rng.random_range(0..5) {
            0 => binary.push(rng.random_range(0x80..=0xff)),
            1 => binary.push(rng.random()),
            _ => binary.push(b'a' + rng.random_range(0..26u8)),
        }
    }
    files.push(("binary.bin".into(), binary));
    // One line of about 150 KB: longer than a chunk and than a unit, so
    // it gets a chunk of its own and the slices after its first own none
    // of it.
    files.push(("huge-line.txt".into(), text_line(rng, &vocab, 22_000, "\n")));
    // About 400 KB in lines of every length, cut into byte ranges that
    // fall mid-line; some blank lines and CRLF endings.
    let mut big = Vec::new();
    while big.len() < 400_000 {
        let count = match rng.random_range(0..20) {
            0 => 0,
            1 => rng.random_range(300..900),
            _ => rng.random_range(1..40),
        };
        let end = if rng.random_bool(0.2) { "\r\n" } else { "\n" };
        big.extend(text_line(rng, &vocab, count, end));
    }
    big.extend(text_line(rng, &vocab, 5, "")); // no trailing newline
    files.push(("big.txt".into(), big));
    for i in 0..200 {
        let count = rng.random_range(0..6);
        let end = if i % 7 == 0 { "" } else { "\n" };
        files.push((
            format!("tiny/t{i:03}.txt"),
            text_line(rng, &vocab, count, end),
        ));
    }
    for (name, bytes) in &files {
        write_file(&dir.join(name), bytes);
    }
    files.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Chunk size of the split stage: far below the huge line.
const CHUNK_BYTES: u64 = 4096;

/// The five-stage word count over `inputs` (globs), with small limits so
/// every bounded path (map write-outs, reduce and sort spills, merge
/// passes) runs.
fn wordcount_pipeline(dir: &Path, inputs: &str) -> std::path::PathBuf {
    let file = dir.join("wordcount.toml");
    let by_count = r#"sort_by = "value", order = "desc""#;
    write_file(
        &file,
        format!(
            r#"
name = "wordcount"
[[groups]]
name = "split"
task = "split"
inputs = [{inputs}]
unit_bytes = 49152
config = {{ chunk_bytes = {CHUNK_BYTES} }}
[[groups]]
name = "map"
task = "wordcount.map"
after = ["split"]
config = {{ map_entries_max = 64 }}
[[groups]]
name = "reduce"
task = "sum.reduce"
after = ["map"]
partitions = 3
config = {{ reduce_entries_max = 50, merge_fan_in = 2 }}
[[groups]]
name = "sort"
task = "sort"
after = ["reduce"]
config = {{ {by_count}, sort_memory_bytes = "2KiB", merge_fan_in = 2 }}
[[groups]]
name = "merge"
task = "merge"
after = ["sort"]
gather = true
config = {{ {by_count}, merge_fan_in = 2 }}
"#
        ),
    );
    file
}

#[test]
fn t10_word_count_over_awkward_inputs_equals_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(30);
    let job = tmp.path().join("wc");
    let contents = write_wordcount_inputs(&job.join("in"), &mut rng);
    let pipeline = wordcount_pipeline(&job, r#""in/*", "in/tiny/*""#);
    let empty_job = tmp.path().join("empty");
    for i in 0..3 {
        write_file(&empty_job.join(format!("in/e{i}")), "");
    }
    let empty_pipeline = wordcount_pipeline(&empty_job, r#""in/*""#);
    let cluster = Cluster::start(tmp.path(), 2, 2);
    let url = cluster.url();

    let id = cluster.run_ok(&pipeline);
    let status = status_json(&url, &id);
    let split_units = u64_of(&group_in(&status, "split")["total"]);
    assert!(split_units >= 12, "inputs cut into {split_units} units");
    let totals: Vec<u64> = ["map", "reduce", "sort", "merge"]
        .iter()
        .map(|g| u64_of(&group_in(&status, g)["total"]))
        .collect();
    assert_eq!(totals, vec![split_units, 3, 3, 1], "{status:#}");
    assert_eq!(status["retries"], 0, "{status:#}");

    // Split: every input line in exactly one chunk, and a chunk is at most
    // chunk_bytes unless it is one longer line.
    let mut input_lines: Vec<Vec<u8>> = contents.iter().flat_map(|c| lines_of(c)).collect();
    let mut chunk_lines = Vec::new();
    for path in committed_outputs(&url, &id, "split") {
        let size = std::fs::metadata(&path).unwrap().len();
        let lines = output_lines(&path);
        assert!(
            size <= CHUNK_BYTES || lines.len() == 1,
            "{path}: {size} bytes in {} lines",
            lines.len()
        );
        chunk_lines.extend(lines);
    }
    input_lines.sort();
    chunk_lines.sort();
    assert_same_lines(&chunk_lines, &input_lines, "split chunks (sorted)");

    let merged = committed_outputs(&url, &id, "merge");
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(file_name(&merged[0]), "merged");
    let refs: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    let expected = count_lines(reference_word_counts(&refs));
    assert!(
        expected.len() > 300,
        "a real vocabulary: {}",
        expected.len()
    );
    assert_same_lines(&output_lines(&merged[0]), &expected, "merged word counts");

    // Only empty files: every stage runs, the answer is an empty file.
    let id = cluster.run_ok(&empty_pipeline);
    let merged = committed_outputs(&url, &id, "merge");
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(std::fs::read(&merged[0]).unwrap(), b"");
    let status = status_json(&url, &id);
    assert_eq!(group_in(&status, "reduce")["total"], 3, "{status:#}");
}

// ---------------------------------------------------------------------
// Sort

/// A sort by `sort_by` into 3 range partitions (`bounds`), each merged by
/// a shuffle unit, then gathered into one file.
fn sort_pipeline(dir: &Path, order: &str, bounds: &str) -> std::path::PathBuf {
    let file = dir.join("sort.toml");
    write_file(
        &file,
        format!(
            r#"
name = "sort"
[[groups]]
name = "sort"
task = "sort"
inputs = ["in/*"]
unit_bytes = 8192
config = {{ {order}, partition_by = "range", range_bounds = "{bounds}", sort_memory_bytes = "1KiB", merge_fan_in = 2 }}
[[groups]]
name = "ranges"
task = "merge"
after = ["sort"]
partitions = 3
config = {{ {order} }}
[[groups]]
name = "all"
task = "merge"
after = ["ranges"]
gather = true
config = {{ {order}, merge_fan_in = 2 }}
"#
        ),
    );
    file
}

/// Spreads `lines` over a large file (cut into several units), two small
/// ones and an empty one, with blank lines the sort must skip.
fn write_sort_inputs(dir: &Path, lines: &[Vec<u8>], rng: &mut StdRng) {
    let mut files: Vec<Vec<u8>> = vec![Vec::new(); 4];
    for line in lines {
        let file = if rng.random_bool(0.8) {
            0
        } else {
            rng.random_range(1..3)
        };
        if rng.random_bool(0.02) {
            files[file].push(b'\n');
        }
        files[file].extend_from_slice(line);
        files[file].push(b'\n');
    }
    for (i, bytes) in files.iter().enumerate() {
        write_file(&dir.join(format!("in/{i}.tsv")), bytes);
    }
}

/// Runs the sort pipeline in `dir` and returns the `ranges` outputs' lines,
/// asserting the gathered file is their concatenation.
fn run_sort(cluster: &Cluster, pipeline: &Path) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
    let url = cluster.url();
    let id = cluster.run_ok(pipeline);
    let ranges: Vec<Vec<Vec<u8>>> = committed_outputs(&url, &id, "ranges")
        .iter()
        .map(|path| output_lines(path))
        .collect();
    assert_eq!(ranges.len(), 3, "one merged file per partition");
    let all = committed_outputs(&url, &id, "all");
    assert_eq!(all.len(), 1, "{all:?}");
    let all = output_lines(&all[0]);
    assert_same_lines(&all, &ranges.concat(), "gathered vs partitions in order");
    (ranges, all)
}

#[test]
fn t20_range_partitioned_sort_equals_a_sorted_vec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(31);
    let cluster = Cluster::start(tmp.path(), 2, 2);
    let key_of = |line: &[u8]| -> Vec<u8> { line.split(|&b| b == b'\t').next().unwrap().to_vec() };

    // By key, ascending: unique keys, some not UTF-8, one without a
    // value, one whose value holds tabs.
    let mut lines: Vec<Vec<u8>> = (0..1500)
        .map(|i| {
            let len = rng.random_range(1..7);
            let mut line: Vec<u8> = (0..len).map(|_| b'a' + rng.random_range(0..26u8)).collect();
            if i % 97 == 0 {
                line.insert(0, 0xff);
            }
            let value = rng.random_range(0..1000);
            line.extend_from_slice(format!("-{i}\t{value}").as_bytes());
            line
        })
        .collect();
    lines.push(b"lonely-key".to_vec());
    lines.push(b"kk-tabs\ta\tb\tc".to_vec());
    let dir = tmp.path().join("by-key");
    write_sort_inputs(&dir, &lines, &mut rng);
    let order = r#"sort_by = "key", order = "asc""#;
    let (ranges, all) = run_sort(&cluster, &sort_pipeline(&dir, order, "h,p"));
    let mut expected = lines.clone();
    expected.sort_by_key(|line| key_of(line));
    assert_same_lines(&all, &expected, "sorted by key");
    let in_range: [fn(&[u8]) -> bool; 3] = [
        |k| k < &b"h"[..],
        |k| k >= &b"h"[..] && k < &b"p"[..],
        |k| k >= &b"p"[..],
    ];
    for (r, part) in ranges.iter().enumerate() {
        assert!(!part.is_empty(), "partition {r} is empty");
        for line in part {
            let key = key_of(line);
            assert!(
                in_range[r](&key),
                "{:?} in partition {r}",
                String::from_utf8_lossy(&key)
            );
        }
    }

    // By value, descending (ties by key ascending), bounds descending.
    let mut values: Vec<(i64, String)> = (0..1500)
        .map(|i| {
            (
                rng.random_range(-1000..=1000),
                format!("k{}", i * 7919 % 1500),
            )
        })
        .collect();
    values.extend([(i64::MAX, "max".to_string()), (i64::MIN, "min".to_string())]);
    let lines: Vec<Vec<u8>> = values
        .iter()
        .map(|(v, k)| format!("{k}\t{v}").into_bytes())
        .collect();
    let dir = tmp.path().join("by-value");
    write_sort_inputs(&dir, &lines, &mut rng);
    let order = r#"sort_by = "value", order = "desc""#;
    let (ranges, all) = run_sort(&cluster, &sort_pipeline(&dir, order, "500,-200"));
    values.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let expected: Vec<Vec<u8>> = values
        .iter()
        .map(|(v, k)| format!("{k}\t{v}").into_bytes())
        .collect();
    assert_same_lines(&all, &expected, "sorted by value, descending");
    let value_of = |line: &[u8]| -> i64 {
        String::from_utf8_lossy(line)
            .split('\t')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let in_range: [fn(i64) -> bool; 3] =
        [|v| v > 500, |v| (-199..=500).contains(&v), |v| v <= -200];
    for (r, part) in ranges.iter().enumerate() {
        assert!(!part.is_empty(), "partition {r} is empty");
        for line in part {
            assert!(
                in_range[r](value_of(line)),
                "{:?} in partition {r}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

// ---------------------------------------------------------------------
// Joins and barriers: exec tasks that log when they ran

/// One run of an exec unit, as its script logged it.
#[derive(Debug, Clone)]
struct Run {
    group: String,
    unit: u64,
    attempt: u64,
    /// `date +%s%N` when the script started and when it was about to exit.
    /// Wall clock, not monotonic; a step of the clock during a test run
    /// would show up as a failure to investigate, not pass silently.
    start_ns: u64,
    end_ns: u64,
}

/// Appends `group unit attempt start end` to `runs.log` in the pipeline's
/// folder; `$start` must be set at the script's top.
const LOG_RUN: &str = "echo \"$TM_GROUP $TM_UNIT $TM_ATTEMPT $start $(date +%s%N)\" >> runs.log\n";

fn read_runs(dir: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(dir.join("runs.log")).expect("runs.log");
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "bad log line {line:?}");
            let n = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{line:?}"));
            Run {
                group: f[0].to_string(),
                unit: n(f[1]),
                attempt: n(f[2]),
                start_ns: n(f[3]),
                end_ns: n(f[4]),
            }
        })
        .collect()
}

/// Asserts every unit of every group in `status` ran exactly once, as its
/// first attempt; returns the runs by group.
fn runs_once_each(dir: &Path, status: &Value) -> BTreeMap<String, Vec<Run>> {
    let mut by_group: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for run in read_runs(dir) {
        by_group.entry(run.group.clone()).or_default().push(run);
    }
    for group in status["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap();
        let runs = by_group
            .get_mut(name)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut units: Vec<(u64, u64)> = runs.iter().map(|r| (r.unit, r.attempt)).collect();
        units.sort_unstable();
        let once: Vec<(u64, u64)> = (0..u64_of(&group["total"])).map(|u| (u, 1)).collect();
        assert_eq!(units, once, "runs of group {name}");
        by_group.insert(name.to_string(), runs);
    }
    by_group
}

/// Asserts every run of `later` started after every run of `earlier` ended.
fn assert_after(runs: &BTreeMap<String, Vec<Run>>, later: &str, earlier: &[&str]) {
    let last_end = earlier
        .iter()
        .flat_map(|g| &runs[*g])
        .map(|r| r.end_ns)
        .max()
        .unwrap();
    for run in &runs[later] {
        assert!(
            run.start_ns > last_end,
            "{later} unit {} started {} ns before the last upstream unit ended",
            run.unit,
            last_end - run.start_ns
        );
    }
}

/// Upstream of a join: each input row `rN,value` becomes `GROUP,rN,value`,
/// in `rows`, or with TM_PARTITIONS > 0 in `part-<N % partitions>`.
const UPSTREAM_SH: &str = r#"start=$(date +%s%N)
set -eu
printf '%s\n' "$TM_INPUTS" | while IFS= read -r input; do
  [ -n "$input" ] || continue
  while IFS=, read -r region value; do
    if [ "$TM_PARTITIONS" -gt 0 ]; then
      out=$(printf 'part-%05d' $(( ${region#r} % TM_PARTITIONS )))
    else
      out=rows
    fi
    echo "$TM_GROUP,$region,$value" >> "$TM_OUTPUT_DIR/$out"
  done < "$input"
done
"#;

/// The join: lists its inputs in `inputs` and writes their rows, sorted,
/// to `joined`.
const JOIN_SH: &str = r#"start=$(date +%s%N)
set -eu
printf '%s\n' "$TM_INPUTS" | grep -v '^$' > "$TM_OUTPUT_DIR/inputs" || true
while IFS= read -r input; do cat "$input"; done < "$TM_OUTPUT_DIR/inputs" | LC_ALL=C sort > "$TM_OUTPUT_DIR/joined"
"#;

/// Writes the join job into `dir`: sales (3 files) and weather (2 files),
/// each a first group of one unit per file, both after the join `wiring`
/// (`gather = true` or `partitions = 2`). Returns the pipeline file and
/// every row the join must see, as `group,region,value`.
fn join_job(dir: &Path, wiring: &str) -> (std::path::PathBuf, Vec<String>) {
    let mut rows = Vec::new();
    let sources: [(&str, &str, &[&[&str]]); 2] = [
        (
            "sales",
            "csv",
            &[
                &["r0,10", "r1,20", "r2,5"],
                &["r3,7", "r4,1", "r5,9", "r1,2"],
                &["r2,8"],
            ],
        ),
        (
            "weather",
            "txt",
            &[&["r0,21", "r1,18", "r5,30"], &["r2,25", "r4,19"]],
        ),
    ];
    for (group, ext, files) in sources {
        for (i, lines) in files.iter().enumerate() {
            write_file(
                &dir.join(format!("{group}/{i}.{ext}")),
                lines.join("\n") + "\n",
            );
            rows.extend(lines.iter().map(|l| format!("{group},{l}")));
        }
    }
    write_file(&dir.join("upstream.sh"), format!("{UPSTREAM_SH}{LOG_RUN}"));
    write_file(&dir.join("join.sh"), format!("{JOIN_SH}{LOG_RUN}"));
    let file = dir.join("join.toml");
    write_file(
        &file,
        format!(
            r#"
name = "join"
[[groups]]
name = "sales"
command = ["sh", "upstream.sh"]
inputs = ["sales/*.csv"]
unit_bytes = 0
[[groups]]
name = "weather"
command = ["sh", "upstream.sh"]
inputs = ["weather/*.txt"]
unit_bytes = 0
[[groups]]
name = "join"
command = ["sh", "join.sh"]
after = ["sales", "weather"]
{wiring}
"#
        ),
    );
    rows.sort();
    (file, rows)
}

/// The `inputs` and `joined` outputs of each join unit, in unit order.
fn join_outputs(url: &str, id: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let paths = committed_outputs(url, id, "join");
    let read = |name: &str| -> Vec<Vec<String>> {
        paths
            .iter()
            .filter(|p| file_name(p) == name)
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    };
    read("inputs").into_iter().zip(read("joined")).collect()
}

#[test]
fn t30_two_first_groups_meet_in_a_gather_and_in_a_shuffle() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path(), 2, 2);
    let url = cluster.url();

    // Gather: one join unit reads the one output of each of the 5 units.
    let dir = tmp.path().join("gather");
    let (file, rows) = join_job(&dir, "gather = true");
    let id = cluster.run_ok(&file);
    let status = status_json(&url, &id);
    let runs = runs_once_each(&dir, &status);
    assert_eq!(
        (
            runs["sales"].len(),
            runs["weather"].len(),
            runs["join"].len()
        ),
        (3, 2, 1)
    );
    assert_after(&runs, "join", &["sales", "weather"]);
    let joins = join_outputs(&url, &id);
    assert_eq!(joins.len(), 1);
    let (inputs, joined) = &joins[0];
    assert_eq!(inputs.len(), 5, "{inputs:?}");
    assert!(inputs.iter().all(|p| file_name(p) == "rows"), "{inputs:?}");
    assert_eq!(joined, &rows);

    // Shuffle: join unit r reads part-r of every upstream unit that wrote one.
    let dir = tmp.path().join("shuffle");
    let (file, rows) = join_job(&dir, "partitions = 2");
    let id = cluster.run_ok(&file);
    let status = status_json(&url, &id);
    let runs = runs_once_each(&dir, &status);
    assert_eq!(
        (
            runs["sales"].len(),
            runs["weather"].len(),
            runs["join"].len()
        ),
        (3, 2, 2)
    );
    assert_after(&runs, "join", &["sales", "weather"]);
    let joins = join_outputs(&url, &id);
    assert_eq!(joins.len(), 2);
    let mut all = Vec::new();
    for (r, (inputs, joined)) in joins.iter().enumerate() {
        let part = format!("part-{r:05}");
        assert!(
            inputs.iter().all(|p| file_name(p) == part),
            "unit {r}: {inputs:?}"
        );
        // Every unit holds an even region; sales' third and weather's
        // second hold no odd one, so they wrote no part-00001.
        assert_eq!(inputs.len(), [5, 3][r], "unit {r}: {inputs:?}");
        for row in joined {
            let region: u32 = row.split(',').nth(1).unwrap()[1..].parse().unwrap();
            assert_eq!(region % 2, r as u32, "{row} in unit {r}");
        }
        all.extend(joined.iter().cloned());
    }
    all.sort();
    assert_eq!(all, rows);
}

#[test]
fn t40_no_shuffle_unit_exists_before_its_upstream_group_fully_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("barrier");
    // Six upstream units of 0.6 s down to 0.1 s on two one-slot workers:
    // the short ones commit long before the long ones end.
    for i in 0..6 {
        write_file(&dir.join(format!("in/{i}")), format!("0.{}\n", 6 - i));
    }
    write_file(
        &dir.join("slow.sh"),
        format!(
            "start=$(date +%s%N)\nsleep \"$(cat $TM_INPUTS)\"\n\
             echo a > \"$TM_OUTPUT_DIR/part-00000\"\necho b > \"$TM_OUTPUT_DIR/part-00001\"\n{LOG_RUN}"
        ),
    );
    write_file(
        &dir.join("after.sh"),
        format!("start=$(date +%s%N)\ncat $TM_INPUTS > /dev/null\n{LOG_RUN}"),
    );
    let file = dir.join("barrier.toml");
    write_file(
        &file,
        r#"
name = "barrier"
[[groups]]
name = "slow"
command = ["sh", "slow.sh"]
inputs = ["in/*"]
unit_bytes = 0
[[groups]]
name = "after"
command = ["sh", "after.sh"]
after = ["slow"]
partitions = 2
"#,
    );
    let cluster = Cluster::start(tmp.path(), 2, 1);
    let url = cluster.url();
    let out = tmctl_ok(&url, &["submit", file.to_str().unwrap()]);
    let id = out.lines().last().unwrap().trim().to_string();

    // Every status read while the upstream is open shows no downstream unit.
    let mut open_reads = 0;
    let status = wait_until("the barrier pipeline to end", PIPELINE_WAIT, || {
        let status = status_json(&url, &id);
        let (slow, after) = (group_in(&status, "slow"), group_in(&status, "after"));
        if u64_of(&slow["committed"]) < 6 {
            open_reads += 1;
            assert_eq!(slow["complete"], false, "{status:#}");
            assert_eq!(after["total"], 0, "downstream created early: {status:#}");
        }
        (status["state"] != "running" && status["state"] != "pending").then_some(status)
    });
    assert_eq!(
        status["state"],
        "succeeded",
        "{status:#}\n{}",
        cluster.logs()
    );
    assert!(
        open_reads >= 5,
        "only {open_reads} status reads while the upstream ran"
    );
    let runs = runs_once_each(&dir, &status);
    assert_eq!((runs["slow"].len(), runs["after"].len()), (6, 2));
    assert_after(&runs, "after", &["slow"]);
    // Both workers ran upstream units at once, so units of different
    // durations committed while others still ran: the barrier held.
    let slow = &runs["slow"];
    let overlapping = slow.iter().any(|a| {
        slow.iter()
            .any(|b| a.unit != b.unit && a.start_ns < b.end_ns && b.start_ns < a.end_ns)
    });
    assert!(overlapping, "no two upstream units ran at once: {slow:?}");
}

// ---------------------------------------------------------------------
// Bad wiring

#[test]
fn t50_bad_wiring_is_refused_with_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    write_file(&dir.join("in/a.txt"), "a\n");
    let cluster = Cluster::start(tmp.path(), 1, 1);
    let url = cluster.url();
    let first = r#"
name = "bad"
[[groups]]
name = "first"
command = ["true"]
inputs = ["in/*"]
"#;
    let cases = [
        (
            "first-partitions",
            "partitions = 3\n",
            vec!["\"first\"", "no after"],
        ),
        (
            "partitions-and-gather",
            "[[groups]]\nname = \"down\"\ncommand = [\"true\"]\nafter = [\"first\"]\npartitions = 2\ngather = true\n",
            vec!["\"down\"", "both partitions and gather"],
        ),
        (
            "cycle",
            "[[groups]]\nname = \"b\"\ncommand = [\"true\"]\nafter = [\"first\", \"c\"]\n\
             [[groups]]\nname = \"c\"\ncommand = [\"true\"]\nafter = [\"b\"]\n",
            vec!["cycle", "b, c"],
        ),
        (
            "unknown-after",
            "[[groups]]\nname = \"down\"\ncommand = [\"true\"]\nafter = [\"nope\"]\n",
            vec!["\"down\"", "\"nope\"", "not a group"],
        ),
    ];
    for (name, rest, needles) in cases {
        let file = dir.join(format!("{name}.toml"));
        write_file(&file, format!("{first}{rest}"));
        let err = tmctl_err(&url, &["submit", file.to_str().unwrap()]);
        for needle in needles {
            assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        }
    }
    let listed = tmctl_ok(&url, &["status", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed,
        Value::Array(Vec::new()),
        "a refused submit left a pipeline"
    );

    // A partition number the downstream shuffle does not have fails the
    // unit that wrote it, with the reason.
    let file = dir.join("part-7.toml");
    write_file(
        &file,
        r#"
name = "part-7"
[[groups]]
name = "up"
command = ["sh", "-c", "echo x > \"$TM_OUTPUT_DIR/part-00007\""]
inputs = ["in/*"]
max_attempts = 1
[[groups]]
name = "down"
command = ["true"]
after = ["up"]
partitions = 3
"#,
    );
    let (id, code) = submit_wait(&url, &file, PIPELINE_WAIT);
    assert_eq!(code, Some(1), "submit --wait of a failing pipeline");
    let status = status_json(&url, &id);
    assert_eq!(status["state"], "failed", "{status:#}");
    let failed = status["failed_units"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status:#}");
    assert_eq!(
        (&failed[0]["group"], &failed[0]["unit"]),
        (&Value::from("up"), &Value::from(0))
    );
    let errors = failed[0]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("outside 0..3")),
        "{errors:?}"
    );
    assert_eq!(group_in(&status, "down")["total"], 0, "{status:#}");
}
