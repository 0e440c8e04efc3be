//! The word count pipeline run in-process, units wired by hand the way the
//! master wires them: split → wordcount.map (3 partitions) → sum.reduce
//! per partition → sort by count descending → merge (gather).

use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::test_support::{
    Fixture, lines_of, naive_counts, output_paths, outputs, random_slices, random_text,
};
use super::{Merge, Sort, Split, SumReduce, WordCountMap, part_file_name};
use crate::task::Task;

const PARTITIONS: u32 = 3;

#[test]
fn word_count_chain_equals_the_reference_ordered_by_count_then_word() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(2026);
    let texts: Vec<Vec<u8>> = (0..6).map(|_| random_text(&mut rng, 60)).collect();
    let files: Vec<PathBuf> = texts.iter().map(|text| fx.file(text)).collect();

    // Split: two units, the second also reads the last file in slices.
    let first = fx.unit(files[..3].to_vec(), 0, &[("chunk_bytes", "300")]);
    let mut second = fx.unit(files[3..5].to_vec(), 0, &[("chunk_bytes", "300")]);
    second.input_slices = random_slices(&mut rng, &files[5], texts[5].len() as u64, 3);
    let mut chunks = Vec::new();
    for unit in [&first, &second] {
        Split.run(unit).unwrap();
        chunks.extend(output_paths(&unit.output_dir));
    }
    assert!(chunks.len() > 10, "{} chunks", chunks.len());

    // Map: one unit per chunk, shuffled into 3 partitions.
    let mut map_outputs = Vec::new();
    for chunk in chunks {
        let unit = fx.unit(vec![chunk], PARTITIONS, &[("map_entries_max", "3")]);
        WordCountMap.run(&unit).unwrap();
        map_outputs.push(unit.output_dir);
    }

    // Reduce: unit r reads part-r of every map unit that wrote one.
    let mut reduce_outputs = Vec::new();
    for r in 0..PARTITIONS {
        let inputs: Vec<PathBuf> = map_outputs
            .iter()
            .map(|dir| dir.join(part_file_name(r)))
            .filter(|path| path.exists())
            .collect();
        let config = [("reduce_entries_max", "4"), ("merge_fan_in", "2")];
        let unit = fx.unit(inputs, 0, &config);
        SumReduce.run(&unit).unwrap();
        reduce_outputs.push(unit.output_dir);
    }

    // Sort each reduce output by count, descending; merge them all.
    let order = [("sort_by", "value"), ("order", "desc")];
    let mut sorted = Vec::new();
    for dir in &reduce_outputs {
        let config = [order[0], order[1], ("sort_memory_bytes", "1KiB")];
        let unit = fx.unit(output_paths(dir), 0, &config);
        Sort.run(&unit).unwrap();
        sorted.extend(output_paths(&unit.output_dir));
    }
    let gather = fx.unit(sorted, 0, &order);
    Merge.run(&gather).unwrap();

    let mut expected: Vec<(String, u64)> = naive_counts(&texts).into_iter().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let expected: Vec<Vec<u8>> = expected
        .iter()
        .map(|(word, count)| format!("{word}\t{count}").into_bytes())
        .collect();
    let merged = lines_of(&outputs(&gather.output_dir)["merged"]);
    assert_eq!(merged, expected);
    assert!(expected.len() > 10, "a real vocabulary: {}", expected.len());
}
