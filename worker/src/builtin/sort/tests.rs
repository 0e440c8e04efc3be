use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::builtin::fnv1a_64;
use crate::builtin::test_support::{Fixture, lines_of, outputs, random_slices};

/// A parsed line for the reference: key, numeric value (0 if none), line.
type Parsed = (Vec<u8>, i64, Vec<u8>);

fn parse(line: &[u8]) -> Parsed {
    let (key, value) = match line.iter().position(|&b| b == b'\t') {
        Some(tab) => (&line[..tab], &line[tab + 1..]),
        None => (line, &b""[..]),
    };
    let number = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (key.to_vec(), number, line.to_vec())
}

/// Reference: std's stable sort of the non-empty lines of `texts`.
fn reference(texts: &[Vec<u8>], by_value: bool, desc: bool) -> Vec<Parsed> {
    let mut records: Vec<Parsed> = texts
        .iter()
        .flat_map(|text| lines_of(text))
        .filter(|line| !line.is_empty())
        .map(|line| parse(&line))
        .collect();
    records.sort_by(|a, b| {
        let field = if by_value {
            a.1.cmp(&b.1)
        } else {
            a.0.cmp(&b.0)
        };
        let field = if desc { field.reverse() } else { field };
        if by_value {
            field.then_with(|| a.0.cmp(&b.0))
        } else {
            field
        }
    });
    records
}

/// Random records with repeated keys and values (so ties and stability
/// matter); `keys_only` adds lines without a tab.
fn random_records(rng: &mut StdRng, lines: usize, keys_only: bool) -> Vec<u8> {
    const KEYS: [&[u8]; 7] = [b"b", b"a", b"caf\xe9", b"\xff\xfe", b"ab", b"zz top", b""];
    let mut text = Vec::new();
    for _ in 0..lines {
        text.extend_from_slice(KEYS[rng.random_range(0..KEYS.len())]);
        if !(keys_only && rng.random_bool(0.2)) {
            text.extend_from_slice(format!("\t{}", rng.random_range(-20..80)).as_bytes());
        }
        text.push(b'\n');
    }
    text.pop();
    text
}

/// Awkward inputs; returns the unit and the texts it reads, in order.
fn inputs(
    fx: &mut Fixture,
    rng: &mut StdRng,
    keys_only: bool,
    config: &[(&str, &str)],
) -> (UnitContext, Vec<Vec<u8>>) {
    let big = [&vec![b'm'; 3_000][..], b"\t5"].concat();
    let mut texts = vec![
        Vec::new(),
        b"q\t3\n\nq\t1\nq\t3".to_vec(),
        [&big[..], b"\n", &big, b"\nb\t5\n"].concat(),
    ];
    texts.extend((0..30).map(|i| format!("t{}\t{}\n", i % 3, i % 5).into_bytes()));
    texts.extend((0..3).map(|_| random_records(rng, 150, keys_only)));
    let files = texts.iter().map(|text| fx.file(text)).collect();
    let sliced = random_records(rng, 200, keys_only);
    let sliced_path = fx.file(&sliced);
    let mut unit = fx.unit(files, 0, config);
    unit.input_slices = random_slices(rng, &sliced_path, sliced.len() as u64, 5);
    texts.push(sliced);
    (unit, texts)
}

fn lines(records: &[Parsed]) -> Vec<Vec<u8>> {
    records.iter().map(|(.., line)| line.clone()).collect()
}

/// Sorts with every combination of settings, in memory and spilling, and
/// compares with the reference.
#[test]
fn output_equals_a_stable_std_sort_in_memory_and_external() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(9);
    for by in ["key", "value"] {
        for order in ["asc", "desc"] {
            for small in [false, true] {
                let mut config = vec![("sort_by", by), ("order", order)];
                if small {
                    config.extend([("sort_memory_bytes", "1KiB"), ("merge_fan_in", "2")]);
                }
                let (unit, texts) = inputs(&mut fx, &mut rng, by == "key", &config);
                let spilled = sort_unit(&unit).unwrap();
                assert_eq!(spilled > 10, small, "{config:?}: {spilled} runs");
                let out = outputs(&unit.output_dir);
                assert_eq!(out.keys().collect::<Vec<_>>(), ["part-00000"], "{config:?}");
                let expected = lines(&reference(&texts, by == "value", order == "desc"));
                assert_eq!(lines_of(&out["part-00000"]), expected, "{config:?}");
            }
        }
    }
}

#[test]
fn hash_partitions_are_each_sorted_and_hold_their_keys() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(10);
    let config = [
        ("sort_by", "value"),
        ("order", "desc"),
        ("sort_memory_bytes", "2KiB"),
    ];
    let (mut unit, texts) = inputs(&mut fx, &mut rng, false, &config);
    unit.partitions = 3;
    sort_unit(&unit).unwrap();
    let out = outputs(&unit.output_dir);
    let sorted = reference(&texts, true, true);
    for partition in 0..3u64 {
        let expected: Vec<Vec<u8>> = sorted
            .iter()
            .filter(|(key, ..)| fnv1a_64(key) % 3 == partition)
            .map(|(.., line)| line.clone())
            .collect();
        let name = format!("part-{partition:05}");
        assert_eq!(lines_of(&out[&name]), expected, "{name}");
    }
}

/// Reference range partition: how many bounds the field is at or past.
fn range_partition<T: Ord>(field: &T, bounds: &[T], desc: bool) -> usize {
    bounds
        .iter()
        .filter(|bound| if desc { field <= bound } else { field >= bound })
        .count()
}

#[test]
fn range_partitions_split_the_sorted_order() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(11);
    let cases: [(&str, &str, &str); 4] = [
        ("value", "asc", "10,50"),
        ("value", "desc", "50,10"),
        ("key", "asc", "ab,b"),
        ("key", "desc", "zz,b"),
    ];
    for (by, order, bounds) in cases {
        let config = [
            ("sort_by", by),
            ("order", order),
            ("partition_by", "range"),
            ("range_bounds", bounds),
            ("sort_memory_bytes", "1KiB"),
        ];
        let (mut unit, texts) = inputs(&mut fx, &mut rng, by == "key", &config);
        unit.partitions = 3;
        sort_unit(&unit).unwrap();
        let out = outputs(&unit.output_dir);
        let desc = order == "desc";
        let sorted = reference(&texts, by == "value", desc);
        let mut joined = Vec::new();
        for partition in 0..3 {
            let name = format!("part-{partition:05}");
            let got = out.get(&name).map(|c| lines_of(c)).unwrap_or_default();
            let expected: Vec<Vec<u8>> = sorted
                .iter()
                .filter(|(key, value, _)| {
                    let index = if by == "value" {
                        let bounds: Vec<i64> =
                            bounds.split(',').map(|b| b.parse().unwrap()).collect();
                        range_partition(value, &bounds, desc)
                    } else {
                        let bounds: Vec<Vec<u8>> =
                            bounds.split(',').map(|b| b.as_bytes().to_vec()).collect();
                        range_partition(key, &bounds, desc)
                    };
                    index == partition
                })
                .map(|(.., line)| line.clone())
                .collect();
            assert!(
                !expected.is_empty(),
                "{by} {order}: partition {partition} has data"
            );
            assert_eq!(got, expected, "{by} {order} {name}");
            joined.extend(got);
        }
        assert_eq!(
            joined,
            lines(&sorted),
            "{by} {order}: parts in order are the sort"
        );
    }
}

#[test]
fn bad_range_bounds_and_records_are_named() {
    let mut fx = Fixture::new();
    let input = fx.file("a\t1\nb\t2\n");
    // (config, partitions, expected error text)
    type Case<'a> = (&'a [(&'a str, &'a str)], u32, &'a str);
    let cases: [Case; 6] = [
        (
            &[("partition_by", "range"), ("range_bounds", "5")],
            3,
            "range_bounds = \"5\": 1 bounds for 3 partitions",
        ),
        (
            &[("partition_by", "range")],
            2,
            "range_bounds = \"\": 0 bounds for 2 partitions",
        ),
        (
            &[("partition_by", "range"), ("range_bounds", "b,a")],
            3,
            "strictly in sort order (sort_by=key order=asc)",
        ),
        (
            &[
                ("sort_by", "value"),
                ("partition_by", "range"),
                ("range_bounds", "1,x"),
            ],
            3,
            "every bound must be a 64-bit integer",
        ),
        (
            &[("order", "up")],
            0,
            "sort: config order = \"up\": must be one of: asc, desc",
        ),
        (
            &[("partition_by", "random")],
            2,
            "partition_by = \"random\": must be one of: hash, range",
        ),
    ];
    for (config, partitions, expected) in cases {
        let mut unit = fx.unit(vec![input.clone()], 0, config);
        unit.partitions = partitions;
        let err = Sort.run(&unit).unwrap_err();
        assert!(err.message().contains(expected), "{config:?}: {err}");
    }
    let input = fx.file("a\t1\nb\tlots\n");
    let unit = fx.unit(vec![input], 0, &[("sort_by", "value")]);
    let err = Sort.run(&unit).unwrap_err();
    assert!(err.message().contains("the line at byte 4 of"), "{err}");
    assert!(
        err.message()
            .contains("\"lots\" of key \"b\" is not a decimal"),
        "{err}"
    );
}

#[test]
fn range_settings_are_ignored_without_partitions() {
    let mut fx = Fixture::new();
    let input = fx.file("b\t1\na\t2\n");
    let unit = fx.unit(
        vec![input],
        0,
        &[("partition_by", "range"), ("range_bounds", "x")],
    );
    Sort.run(&unit).unwrap();
    assert_eq!(outputs(&unit.output_dir)["part-00000"], b"a\t2\nb\t1\n");
}
