//! The demo's answer and its report: the words read back from the merge
//! unit's committed output, and the summary printed on stdout.

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::Path;

use unicode_width::UnicodeWidthStr as _;

use super::{DemoError, DemoOutcome};

/// What the word count found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WordTotals {
    /// The most frequent words with their counts, most frequent first
    /// (equal counts by word), as the merge stage ordered them.
    pub top: Vec<(String, u64)>,
    /// Different words seen.
    pub distinct: u64,
    /// Words seen, counting repeats.
    pub total: u64,
}

/// Reads `word\tcount` records, sorted by count descending, from `paths`
/// in order (the merge unit's output); keeps the first `top` of them and
/// adds up all of them.
pub fn read_word_totals(paths: &[impl AsRef<Path>], top: usize) -> Result<WordTotals, DemoError> {
    let mut totals = WordTotals::default();
    let mut line = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| DemoError::io("cannot read", path, e))?;
        let mut reader = std::io::BufReader::new(file);
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| DemoError::io("cannot read", path, e))?;
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n');
            if text.is_empty() {
                continue;
            }
            let (word, count) = parse_record(text).ok_or_else(|| {
                DemoError::Input(format!(
                    "{}: not a `word<TAB>count` line: {text:?}",
                    path.display()
                ))
            })?;
            totals.distinct += 1;
            totals.total += count;
            if totals.top.len() < top {
                totals.top.push((word.to_string(), count));
            }
        }
    }
    Ok(totals)
}

fn parse_record(line: &str) -> Option<(&str, u64)> {
    let (word, count) = line.split_once('\t')?;
    Some((word, count.parse().ok()?))
}

/// The summary of a finished run: top words, units per stage, and the
/// run's numbers. The top words table is `RANK WORD COUNT` rows, one word
/// per row, so scripts can read it.
pub fn summary_text(outcome: &DemoOutcome) -> String {
    let mut out = String::new();
    let words = outcome.words.clone().unwrap_or_default();
    let _ = writeln!(out, "top {} words:", words.top.len());
    let mut rows = vec![["RANK".to_string(), "WORD".into(), "COUNT".into()]];
    for (rank, (word, count)) in words.top.iter().enumerate() {
        rows.push([(rank + 1).to_string(), word.clone(), count.to_string()]);
    }
    out.push_str(&table(&rows, [true, false, true]));
    out.push_str("\nunits per stage:\n");
    let mut rows = vec![["STAGE".to_string(), "UNITS".into(), "FAILED".into()]];
    for group in &outcome.pipeline.groups {
        rows.push([
            group.name.clone(),
            group.total.to_string(),
            group.failed.to_string(),
        ]);
    }
    out.push_str(&table(&rows, [false, true, true]));
    out.push('\n');
    let seconds = outcome.wall.as_secs_f64();
    let megabytes = outcome.input_bytes as f64 / 1e6;
    let facts = [
        (
            "pipeline",
            format!("{} ({})", outcome.pipeline.id, outcome.pipeline.state),
        ),
        (
            "words",
            format!("{} in total, {} distinct", words.total, words.distinct),
        ),
        (
            "input",
            format!(
                "{megabytes:.2} MB in {}",
                plural(outcome.input_files, "file")
            ),
        ),
        ("wall time", format!("{seconds:.2} s")),
        (
            "throughput",
            format!("{:.2} MB/s", megabytes / seconds.max(1e-3)),
        ),
        ("retries", outcome.pipeline.retries.to_string()),
    ];
    for (name, value) in facts {
        let _ = writeln!(out, "{name:<12}{value}");
    }
    if let Some(dir) = &outcome.kept_data_dir {
        let _ = writeln!(out, "{:<12}{} (kept)", "data dir", dir.display());
    }
    out
}

/// `1 file`, `2 files`: a count and a noun that takes an `s`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Three columns, two spaces apart, indented by two; `right[i]` aligns
/// column i to the right (numbers). Cells are padded by the width a
/// terminal gives them (a CJK character takes two cells, a combining mark
/// none), not by their count of chars as `format!` pads. Trailing spaces
/// are trimmed.
fn table(rows: &[[String; 3]], right: [bool; 3]) -> String {
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|row| row[c].width()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(" ");
        for c in 0..3 {
            let cell = &row[c];
            let pad = " ".repeat(widths[c] - cell.width());
            if right[c] {
                let _ = write!(line, " {pad}{cell} ");
            } else {
                let _ = write!(line, " {cell}{pad} ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_record_and_keep_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let merged = dir.path().join("merged");
        std::fs::write(&merged, "the\t5\nand\t3\n\nof\t3\nwhale\t1\n").unwrap();
        let totals = read_word_totals(&[&merged], 2).unwrap();
        assert_eq!(
            totals.top,
            vec![("the".to_string(), 5), ("and".to_string(), 3)]
        );
        assert_eq!((totals.distinct, totals.total), (4, 12));
        std::fs::write(&merged, "the 5\n").unwrap();
        assert!(read_word_totals(&[&merged], 2).is_err());
    }

    #[test]
    fn tables_align_numbers_right() {
        let rows = [
            ["RANK".to_string(), "WORD".into(), "COUNT".into()],
            ["1".into(), "the".into(), "12".into()],
        ];
        assert_eq!(
            table(&rows, [true, false, true]),
            "  RANK  WORD  COUNT\n     1  the      12\n"
        );
    }

    #[test]
    fn wide_words_are_padded_by_display_width() {
        let rows = [
            ["RANK".to_string(), "WORD".into(), "COUNT".into()],
            ["1".into(), "東京".into(), "7".into()],
            ["2".into(), "the".into(), "5".into()],
            ["3".into(), "café".into(), "3".into()],
            ["4".into(), "cafe\u{301}".into(), "1".into()],
        ];
        let text = table(&rows, [true, false, true]);
        assert_eq!(
            text,
            "  RANK  WORD  COUNT\n     \
             1  東京      7\n     \
             2  the       5\n     \
             3  café      3\n     \
             4  cafe\u{301}      1\n"
        );
        // Every COUNT ends in the same terminal column.
        for line in text.lines() {
            assert_eq!(line.width(), "  RANK  WORD  COUNT".width(), "{line:?}");
        }
    }
}
