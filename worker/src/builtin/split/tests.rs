use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::builtin::fnv1a_64;
use crate::builtin::test_support::{Fixture, lines_of, outputs, random_slices, random_text};
use crate::task::CancelReason;

/// Inputs covering the awkward cases, and the lines they hold in order.
fn awkward_inputs(fx: &mut Fixture, rng: &mut StdRng) -> (UnitContext, Vec<Vec<u8>>) {
    let long_line = vec![b'L'; 300];
    let mut files = vec![
        fx.file(""),
        fx.file("no\ttrailing\nnewline"),
        fx.file(b"caf\xe9\n\xff\xfe\n\n"),
        fx.file([&long_line[..], b"\nafter long\n"].concat()),
    ];
    files.extend((0..40).map(|i| fx.file(format!("tiny {i}\n"))));
    let sliced_text = random_text(rng, 30);
    let sliced = fx.file(&sliced_text);
    let mut expected: Vec<Vec<u8>> = files
        .iter()
        .flat_map(|file| lines_of(&std::fs::read(file).unwrap()))
        .collect();
    expected.extend(lines_of(&sliced_text));
    let mut unit = fx.unit(files, 0, &[("chunk_bytes", "64")]);
    unit.input_slices = random_slices(rng, &sliced, sliced_text.len() as u64, 5);
    (unit, expected)
}

#[test]
fn chunks_hold_all_lines_in_order_each_within_the_size_bound() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(1);
    let (unit, expected) = awkward_inputs(&mut fx, &mut rng);
    Split.run(&unit).unwrap();

    let chunks = outputs(&unit.output_dir);
    let names: Vec<String> = (0..chunks.len()).map(|i| format!("chunk-{i:05}")).collect();
    assert_eq!(chunks.keys().cloned().collect::<Vec<_>>(), names);
    let mut joined = Vec::new();
    let contents: Vec<&Vec<u8>> = chunks.values().collect();
    for (i, chunk) in contents.iter().enumerate() {
        assert_eq!(chunk.last(), Some(&b'\n'), "chunk {i} ends a line");
        let lines = lines_of(chunk);
        assert!(
            chunk.len() <= 64 || lines.len() == 1,
            "chunk {i} is {} bytes with {} lines",
            chunk.len(),
            lines.len()
        );
        // Filled greedily: the next chunk's first line did not fit.
        if let Some(next) = contents.get(i + 1) {
            let next_line = next.iter().position(|&b| b == b'\n').unwrap() + 1;
            assert!(chunk.len() + next_line > 64, "chunk {i} could hold more");
        }
        joined.extend(lines);
    }
    assert_eq!(joined, expected);
    assert!(
        chunks.values().any(|chunk| chunk.len() > 300),
        "the long line has its own chunk"
    );
}

#[test]
fn with_partitions_each_line_goes_to_its_hash_partition() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(2);
    let (mut unit, expected) = awkward_inputs(&mut fx, &mut rng);
    unit.partitions = 4;
    Split.run(&unit).unwrap();

    let parts = outputs(&unit.output_dir);
    let mut reference: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    for line in &expected {
        reference[(fnv1a_64(line) % 4) as usize].push(line.clone());
    }
    for (partition, lines) in reference.iter().enumerate() {
        let name = format!("part-{partition:05}");
        let got = parts
            .get(&name)
            .map(|content| lines_of(content))
            .unwrap_or_default();
        assert_eq!(&got, lines, "{name}");
    }
    assert!(
        parts.keys().all(|name| name.starts_with("part-0000")),
        "{:?}",
        parts.keys()
    );
}

#[test]
fn no_lines_no_outputs() {
    let mut fx = Fixture::new();
    let inputs = vec![fx.file(""), fx.file("")];
    let unit = fx.unit(inputs, 0, &[]);
    Split.run(&unit).unwrap();
    assert!(outputs(&unit.output_dir).is_empty());
}

#[test]
fn bad_settings_are_named() {
    let mut fx = Fixture::new();
    let input = fx.file("a\n");
    for (config, expected) in [
        (
            ("chunk_bytes", "0"),
            "split: config chunk_bytes = \"0\": must be from 1",
        ),
        (
            ("chunk_bytes", "lots"),
            "split: config chunk_bytes = \"lots\": not a size",
        ),
        (
            ("chunk_size", "1"),
            "split: unknown config key \"chunk_size\"",
        ),
        (
            ("line_bytes_max", "2GiB"),
            "split: config line_bytes_max = \"2GiB\"",
        ),
    ] {
        let unit = fx.unit(vec![input.clone()], 0, &[config]);
        let err = Split.run(&unit).unwrap_err();
        assert!(err.message().starts_with(expected), "{err}");
    }
}

#[test]
fn a_cancelled_unit_stops() {
    let mut fx = Fixture::new();
    let input = fx.file("a\nb\n");
    let unit = fx.unit(vec![input], 0, &[]);
    unit.cancel.cancel(CancelReason::Shutdown);
    let err = Split.run(&unit).unwrap_err();
    assert_eq!(err.message(), "cancelled: the worker is shutting down");
}
