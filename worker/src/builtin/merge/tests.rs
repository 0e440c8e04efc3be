use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::builtin::test_support::{Fixture, lines_of, outputs, random_slices};

/// Sort key of a line for the reference: (key, value), value 0 if none.
fn fields(line: &[u8]) -> (Vec<u8>, i64) {
    match line.iter().position(|&b| b == b'\t') {
        Some(tab) => {
            let value = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            (line[..tab].to_vec(), value)
        }
        None => (line.to_vec(), 0),
    }
}

/// Reference: std's stable sort by the given order.
fn std_sort(lines: &mut [Vec<u8>], by_value: bool, desc: bool) {
    lines.sort_by(|a, b| {
        let (a, b) = (fields(a), fields(b));
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
}

/// Random lines, sorted by the order, as file text (randomly without the
/// final '\n').
fn sorted_text(rng: &mut StdRng, lines: usize, by_value: bool, desc: bool) -> Vec<u8> {
    const KEYS: [&[u8]; 6] = [b"a", b"b", b"ab", b"caf\xe9", b"\xff", b"z z"];
    let mut records: Vec<Vec<u8>> = (0..lines)
        .map(|_| {
            let key = KEYS[rng.random_range(0..KEYS.len())];
            [key, format!("\t{}", rng.random_range(-3..10)).as_bytes()].concat()
        })
        .collect();
    std_sort(&mut records, by_value, desc);
    let mut text = records.join(&b'\n');
    if !records.is_empty() && rng.random_bool(0.5) {
        text.push(b'\n');
    }
    text
}

#[test]
fn merged_equals_a_stable_sort_of_all_inputs() {
    let mut rng = StdRng::seed_from_u64(12);
    for by in ["key", "value"] {
        for order in ["asc", "desc"] {
            for fan_in in ["2", "64"] {
                let (by_value, desc) = (by == "value", order == "desc");
                let mut fx = Fixture::new();
                let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
                texts.extend((0..12).map(|_| sorted_text(&mut rng, 30, by_value, desc)));
                texts.extend((0..20).map(|_| sorted_text(&mut rng, 1, by_value, desc)));
                let files = texts.iter().map(|text| fx.file(text)).collect();
                let sliced = sorted_text(&mut rng, 100, by_value, desc);
                let sliced_path = fx.file(&sliced);
                let config = [("sort_by", by), ("order", order), ("merge_fan_in", fan_in)];
                let mut unit = fx.unit(files, 0, &config);
                // Every slice of a sorted file is sorted.
                unit.input_slices = random_slices(&mut rng, &sliced_path, sliced.len() as u64, 4);
                texts.push(sliced);
                Merge.run(&unit).unwrap();

                let mut expected: Vec<Vec<u8>> = texts.iter().flat_map(|t| lines_of(t)).collect();
                std_sort(&mut expected, by_value, desc);
                let out = outputs(&unit.output_dir);
                assert_eq!(out.keys().collect::<Vec<_>>(), ["merged"]);
                assert_eq!(lines_of(&out["merged"]), expected, "{config:?}");
            }
        }
    }
}

#[test]
fn equal_records_keep_input_order() {
    let mut fx = Fixture::new();
    let inputs = vec![
        fx.file("a\tfirst\nb\tfirst\n"),
        fx.file("a\tsecond\nb\tsecond"),
        fx.file("a\tthird\n"),
    ];
    let unit = fx.unit(inputs, 0, &[("merge_fan_in", "2")]);
    Merge.run(&unit).unwrap();
    assert_eq!(
        outputs(&unit.output_dir)["merged"],
        b"a\tfirst\na\tsecond\na\tthird\nb\tfirst\nb\tsecond\n"
    );
}

#[test]
fn an_unsorted_input_is_an_error() {
    let mut fx = Fixture::new();
    let inputs = vec![fx.file("a\t1\nc\t1\n"), fx.file("b\t9\nb\t1\n")];
    let unit = fx.unit(
        inputs.clone(),
        0,
        &[("sort_by", "value"), ("order", "desc")],
    );
    Merge.run(&unit).unwrap();
    let unit = fx.unit(inputs, 0, &[("sort_by", "value")]);
    let err = Merge.run(&unit).unwrap_err();
    let text = err.message();
    assert!(text.contains("the line at byte 4 of"), "{text}");
    assert!(
        text.contains("must be sorted by sort_by=value order=asc"),
        "{text}"
    );
}

#[test]
fn no_inputs_still_write_merged_and_partitions_are_refused() {
    let mut fx = Fixture::new();
    let unit = fx.unit(vec![], 0, &[]);
    Merge.run(&unit).unwrap();
    assert_eq!(outputs(&unit.output_dir)["merged"], b"");

    let mut unit = fx.unit(vec![], 0, &[]);
    unit.partitions = 2;
    let err = Merge.run(&unit).unwrap_err();
    assert!(
        err.message()
            .contains("cannot feed a shuffle (partitions = 2)"),
        "{err}"
    );
}
