use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::builtin::fnv1a_64;
use crate::builtin::test_support::{Fixture, lines_of, outputs, random_slices};

/// Random `key\tvalue` text: few distinct keys (so they repeat), some
/// non-UTF-8, negative values, blank lines.
fn random_records(rng: &mut StdRng, lines: usize) -> Vec<u8> {
    const KEYS: [&[u8]; 8] = [
        b"a", b"b", b"apple", b"Apple", b"caf\xe9", b"\xff", b"k 1", b"z",
    ];
    let mut text = Vec::new();
    for _ in 0..lines {
        if rng.random_bool(0.05) {
            text.push(b'\n');
            continue;
        }
        text.extend_from_slice(KEYS[rng.random_range(0..KEYS.len())]);
        text.extend_from_slice(format!("\t{}\n", rng.random_range(-5..100)).as_bytes());
    }
    text
}

/// Reference: the sum of every key, parsed the plain way.
fn reference(texts: &[Vec<u8>]) -> BTreeMap<Vec<u8>, i64> {
    let mut sums = BTreeMap::new();
    for text in texts {
        for line in lines_of(text).into_iter().filter(|line| !line.is_empty()) {
            let tab = line.iter().position(|&b| b == b'\t').unwrap();
            let value: i64 = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            *sums.entry(line[..tab].to_vec()).or_insert(0) += value;
        }
    }
    sums
}

/// Every output record by key, checking each file is sorted by key, keys
/// are unique, and each key is in its hash partition.
fn output_sums(dir: &Path, partitions: u32) -> BTreeMap<Vec<u8>, i64> {
    let mut sums = BTreeMap::new();
    for (name, content) in outputs(dir) {
        let mut previous: Option<Vec<u8>> = None;
        for line in lines_of(&content) {
            let tab = line.iter().position(|&b| b == b'\t').unwrap();
            let key = line[..tab].to_vec();
            let sum = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                previous.as_ref().is_none_or(|p| *p < key),
                "{name} sorted by key"
            );
            let partition = fnv1a_64(&key) % u64::from(partitions.max(1));
            assert_eq!(name, format!("part-{partition:05}"));
            assert!(sums.insert(key.clone(), sum).is_none(), "key written twice");
            previous = Some(key);
        }
    }
    sums
}

fn inputs(fx: &mut Fixture, rng: &mut StdRng) -> (UnitContext, Vec<Vec<u8>>) {
    let long_key = vec![b'K'; 5_000];
    let mut texts = vec![
        Vec::new(),
        b"a\t1\na\t2\nb\t-3\na\t4".to_vec(),
        [&long_key[..], b"\t7\n", &long_key, b"\t8\n"].concat(),
        b"\n\n".to_vec(),
    ];
    texts.extend((0..25).map(|i| format!("tiny\t{i}\n").into_bytes()));
    texts.extend((0..3).map(|_| random_records(rng, 200)));
    let files = texts.iter().map(|text| fx.file(text)).collect();
    let sliced = random_records(rng, 300);
    let sliced_path = fx.file(&sliced);
    let mut unit = fx.unit(files, 0, &[]);
    unit.input_slices = random_slices(rng, &sliced_path, sliced.len() as u64, 6);
    texts.push(sliced);
    (unit, texts)
}

#[test]
fn sums_match_the_reference_in_memory() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(6);
    let (unit, texts) = inputs(&mut fx, &mut rng);
    assert_eq!(sum_unit(&unit).unwrap(), 0);
    assert_eq!(
        outputs(&unit.output_dir).keys().collect::<Vec<_>>(),
        ["part-00000"]
    );
    assert_eq!(output_sums(&unit.output_dir, 0), reference(&texts));
}

#[test]
fn sums_match_the_reference_through_spilled_runs_and_merge_passes() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut unit, texts) = inputs(&mut fx, &mut rng);
    unit.config.insert("reduce_entries_max".into(), "2".into());
    unit.config.insert("merge_fan_in".into(), "2".into());
    unit.partitions = 3;
    let spilled = sum_unit(&unit).unwrap();
    assert!(spilled > 20, "{spilled}");
    assert_eq!(output_sums(&unit.output_dir, 3), reference(&texts));
}

#[test]
fn the_memory_bound_also_spills() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(8);
    let (mut unit, texts) = inputs(&mut fx, &mut rng);
    unit.config
        .insert("reduce_memory_bytes".into(), "1KiB".into());
    assert!(sum_unit(&unit).unwrap() > 1);
    assert_eq!(output_sums(&unit.output_dir, 0), reference(&texts));
}

#[test]
fn bad_records_name_the_line() {
    let mut fx = Fixture::new();
    for (text, expected) in [
        (&b"a\t1\nno tab here\n"[..], "the line at byte 4 of"),
        (
            b"a\t1\nb\tmany\n",
            "the value \"many\" of key \"b\" is not a decimal",
        ),
    ] {
        let input = fx.file(text);
        let unit = fx.unit(vec![input], 0, &[]);
        let err = SumReduce.run(&unit).unwrap_err();
        assert!(err.message().contains(expected), "{err}");
    }
}

#[test]
fn overflow_fails_in_memory_and_when_merging() {
    let mut fx = Fixture::new();
    let big = format!("k\t{}\n", i64::MAX);
    // With one entry held, `k` is spilled with `j` and the overflow
    // happens while merging the runs.
    for config in [&[][..], &[("reduce_entries_max", "1")]] {
        let inputs = vec![fx.file(&big), fx.file("j\t1\n"), fx.file("k\t1\n")];
        let unit = fx.unit(inputs, 0, config);
        let err = SumReduce.run(&unit).unwrap_err();
        assert!(
            err.message().contains("the sum for key \"k\" overflows"),
            "{err}"
        );
    }
}

#[test]
fn bad_settings_are_named() {
    let mut fx = Fixture::new();
    let input = fx.file("a\t1\n");
    for (config, expected) in [
        (
            ("reduce_entries_max", "x"),
            "sum.reduce: config reduce_entries_max = \"x\"",
        ),
        (
            ("merge_fan_in", "1"),
            "sum.reduce: config merge_fan_in = \"1\": must be a whole number from 2 to 1024",
        ),
        (
            ("sort_by", "key"),
            "sum.reduce: unknown config key \"sort_by\"",
        ),
    ] {
        let unit = fx.unit(vec![input.clone()], 0, &[config]);
        let err = SumReduce.run(&unit).unwrap_err();
        assert!(err.message().starts_with(expected), "{err}");
    }
}
