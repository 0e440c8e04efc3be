use std::fs;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Writes `content` to a fresh file; the directory lives as long as the
/// returned guard.
fn file_with(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    fs::write(&path, content).unwrap();
    (dir, path)
}

fn slice(path: &Path, start: u64, end: u64) -> InputSlice {
    InputSlice {
        path: path.to_path_buf(),
        start,
        end,
    }
}

/// The lines the reader returns for `[start, end)` of `path`.
fn read_slice(path: &Path, start: u64, end: u64) -> Vec<Vec<u8>> {
    let source = InputSource::Slice(slice(path, start, end));
    UnitLines::new(vec![source], LINE_BYTES_MAX_DEFAULT)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Reference: every line of `content` with the offset of its first byte,
/// found by a plain scan (no seeking, no skipping).
fn lines_with_offsets(content: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut lines = Vec::new();
    let mut line_start = 0;
    for (at, &byte) in content.iter().enumerate() {
        if byte == b'\n' {
            lines.push((line_start as u64, content[line_start..at].to_vec()));
            line_start = at + 1;
        }
    }
    if line_start < content.len() {
        lines.push((line_start as u64, content[line_start..].to_vec()));
    }
    lines
}

/// Reference: the lines whose first byte lies in `[start, end)`.
fn owned_by(content: &[u8], start: u64, end: u64) -> Vec<Vec<u8>> {
    lines_with_offsets(content)
        .into_iter()
        .filter(|(offset, _)| (start..end).contains(offset))
        .map(|(_, line)| line)
        .collect()
}

fn strs(lines: &[&str]) -> Vec<Vec<u8>> {
    lines.iter().map(|line| line.as_bytes().to_vec()).collect()
}

const TEXT: &[u8] = b"alpha\nbeta\ngamma\n";

#[test]
fn whole_slice_reads_every_line() {
    let (_dir, path) = file_with(TEXT);
    assert_eq!(read_slice(&path, 0, 17), strs(&["alpha", "beta", "gamma"]));
}

#[test]
fn slice_cut_mid_line_skips_the_partial_first_line_and_finishes_the_last() {
    let (_dir, path) = file_with(TEXT);
    // "alpha\n" is 0..6, "beta\n" 6..11, "gamma\n" 11..17.
    assert_eq!(read_slice(&path, 2, 8), strs(&["beta"]));
    assert_eq!(read_slice(&path, 0, 2), strs(&["alpha"]));
    assert_eq!(read_slice(&path, 7, 12), strs(&["gamma"]));
    assert_eq!(read_slice(&path, 12, 17), Vec::<Vec<u8>>::new());
}

#[test]
fn slice_boundaries_exactly_at_line_starts() {
    let (_dir, path) = file_with(TEXT);
    // Starting at a line start owns that line; ending at one does not.
    assert_eq!(read_slice(&path, 6, 11), strs(&["beta"]));
    assert_eq!(read_slice(&path, 0, 6), strs(&["alpha"]));
    assert_eq!(read_slice(&path, 11, 17), strs(&["gamma"]));
    // Ending just past a line start owns the whole of that line.
    assert_eq!(read_slice(&path, 6, 12), strs(&["beta", "gamma"]));
    // A cut right after a '\n' (start - 1 is '\n').
    assert_eq!(read_slice(&path, 5, 6), strs(&[]));
    assert_eq!(read_slice(&path, 5, 7), strs(&["beta"]));
}

#[test]
fn slices_at_and_past_the_end_of_the_file() {
    let (_dir, path) = file_with(TEXT);
    assert_eq!(read_slice(&path, 17, 17), strs(&[]));
    assert_eq!(read_slice(&path, 17, 100), strs(&[]));
    assert_eq!(read_slice(&path, 50, 100), strs(&[]));
    assert_eq!(read_slice(&path, 11, 1_000), strs(&["gamma"]));
    assert_eq!(read_slice(&path, 3, 3), strs(&[]));
}

#[test]
fn final_line_without_newline_counts() {
    let (_dir, path) = file_with(b"one\ntwo");
    assert_eq!(read_slice(&path, 0, 7), strs(&["one", "two"]));
    assert_eq!(read_slice(&path, 4, 5), strs(&["two"]));
    assert_eq!(read_slice(&path, 5, 7), strs(&[]));
    assert_eq!(read_slice(&path, 1, 4), strs(&[]));
    assert_eq!(read_slice(&path, 1, 5), strs(&["two"]));
}

#[test]
fn line_longer_than_the_slice_belongs_to_the_slice_it_starts_in() {
    let long = "x".repeat(10_000);
    let content = format!("a\n{long}\nb\n");
    let (_dir, path) = file_with(content.as_bytes());
    // The long line starts at byte 2.
    assert_eq!(read_slice(&path, 1, 3), strs(&[&long]));
    assert_eq!(read_slice(&path, 2, 3), strs(&[&long]));
    // Slices wholly inside the long line own nothing.
    for start in [3, 100, 5_000, 9_900] {
        assert_eq!(read_slice(&path, start, start + 100), strs(&[]), "{start}");
    }
    assert_eq!(read_slice(&path, 3, 10_003), strs(&[]));
    assert_eq!(read_slice(&path, 3, 10_004), strs(&["b"]));
    assert_eq!(read_slice(&path, 9_999, 10_099), strs(&["b"]));
}

#[test]
fn empty_file_and_empty_lines() {
    let (_dir, path) = file_with(b"");
    assert_eq!(read_slice(&path, 0, 0), strs(&[]));
    assert_eq!(read_slice(&path, 0, 10), strs(&[]));
    let (_dir, path) = file_with(b"\n\nx\n\n");
    assert_eq!(read_slice(&path, 0, 5), strs(&["", "", "x", ""]));
    assert_eq!(read_slice(&path, 1, 2), strs(&[""]));
}

#[test]
fn non_utf8_bytes_survive() {
    let content = b"caf\xe9\n\xff\xfe\x00\nok";
    let (_dir, path) = file_with(content);
    assert_eq!(
        read_slice(&path, 0, 100),
        vec![
            b"caf\xe9".to_vec(),
            b"\xff\xfe\x00".to_vec(),
            b"ok".to_vec()
        ]
    );
}

#[test]
fn start_after_end_is_an_error_naming_the_slice() {
    let (_dir, path) = file_with(TEXT);
    let source = InputSource::Slice(slice(&path, 9, 4));
    let err = LineReader::open(&source, 100).err().unwrap();
    assert!(err.message().contains("bytes [9, 4)"), "{err}");
    assert!(err.message().contains("starts after its end"), "{err}");
}

#[test]
fn missing_input_is_named() {
    let source = InputSource::File("/no/such/input".into());
    let err = LineReader::open(&source, 100).err().unwrap();
    assert!(
        err.message().contains("cannot read input /no/such/input"),
        "{err}"
    );
}

#[test]
fn lines_over_the_limit_are_an_error_and_lines_at_it_are_not() {
    let (_dir, path) = file_with(b"12345\n123456\n");
    let mut lines = UnitLines::new(vec![InputSource::File(path.clone())], 5);
    assert_eq!(lines.next().unwrap().unwrap(), b"12345");
    let err = lines.next().unwrap().unwrap_err();
    assert!(
        err.message().contains("the line at byte 6 of")
            && err.message().contains("longer than 5 bytes"),
        "{err}"
    );
    // The limit counts the line without its '\n', also at the end of a file.
    let (_dir, path) = file_with(b"12345");
    let lines: Vec<_> = UnitLines::new(vec![InputSource::File(path)], 5)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines, strs(&["12345"]));
}

#[test]
fn unit_lines_read_files_then_slices_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let big = dir.path().join("big");
    fs::write(&a, "a1\na2").unwrap();
    fs::write(&b, "").unwrap();
    fs::write(&big, "b1\nb2\nb3\n").unwrap();
    let unit = UnitContext {
        inputs: vec![a, b],
        input_slices: vec![slice(&big, 4, 9), slice(&big, 0, 4)],
        ..UnitContext::default()
    };
    let lines: Vec<_> = UnitLines::for_unit(&unit, 100)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines, strs(&["a1", "a2", "b3", "b1", "b2"]));
}

#[test]
fn open_slice_yields_exactly_the_owned_bytes() {
    let (_dir, path) = file_with(b"ab\ncd\nef");
    let owned = |start, end| {
        let (mut reader, range) = open_slice(&slice(&path, start, end)).unwrap();
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        (String::from_utf8(bytes).unwrap(), range)
    };
    assert_eq!(owned(0, 1), ("ab\n".to_string(), 0..3));
    assert_eq!(owned(1, 4), ("cd\n".to_string(), 3..6));
    assert_eq!(owned(4, 8), ("ef".to_string(), 6..8));
    assert_eq!(owned(7, 8), (String::new(), 8..8));
}

/// Random cut points into `pieces` adjacent slices covering `0..len`.
fn random_cuts(rng: &mut StdRng, len: u64, pieces: usize) -> Vec<u64> {
    let mut cuts: Vec<u64> = (1..pieces).map(|_| rng.random_range(0..=len)).collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}

/// Random content: short and long lines, empty lines, non-UTF-8 bytes,
/// with or without a final '\n'.
fn random_content(rng: &mut StdRng) -> Vec<u8> {
    let mut content = Vec::new();
    for _ in 0..rng.random_range(0..40) {
        let len = match rng.random_range(0..10) {
            0 => 0,
            1 => rng.random_range(100..3_000),
            _ => rng.random_range(1..12),
        };
        content.extend((0..len).map(|_| rng.random_range(b'\t'..=b'\xff')));
        content.push(b'\n');
    }
    if rng.random_bool(0.5) {
        content.pop();
    }
    content
}

#[test]
fn property_adjacent_slices_read_every_line_exactly_once() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for case in 0..300 {
        let content = random_content(&mut rng);
        let (_dir, path) = file_with(&content);
        let len = content.len() as u64;
        let pieces = rng.random_range(1..8);
        let cuts = random_cuts(&mut rng, len, pieces);
        let mut joined = Vec::new();
        for window in cuts.windows(2) {
            let (start, end) = (window[0], window[1]);
            let lines = read_slice(&path, start, end);
            assert_eq!(
                lines,
                owned_by(&content, start, end),
                "case {case}: slice [{start}, {end})"
            );
            joined.extend(lines);
        }
        let whole: Vec<_> = lines_with_offsets(&content)
            .into_iter()
            .map(|(_, line)| line)
            .collect();
        assert_eq!(joined, whole, "case {case}: cuts {cuts:?}");
    }
}

#[test]
fn property_materialized_slices_concatenate_to_the_file() {
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..200 {
        let content = random_content(&mut rng);
        let (_dir, path) = file_with(&content);
        let pieces = rng.random_range(1..6);
        let cuts = random_cuts(&mut rng, content.len() as u64, pieces);
        let mut joined = Vec::new();
        for window in cuts.windows(2) {
            let (mut reader, _) = open_slice(&slice(&path, window[0], window[1])).unwrap();
            reader.read_to_end(&mut joined).unwrap();
        }
        assert_eq!(joined, content, "case {case}: cuts {cuts:?}");
    }
}
