use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::builtin::fnv1a_64;
use crate::builtin::test_support::{
    Fixture, lines_of, naive_counts, outputs, random_slices, random_text,
};

/// The records of every output file: (file, word, count).
fn records(dir: &std::path::Path) -> Vec<(String, String, u64)> {
    let mut records = Vec::new();
    for (name, content) in outputs(dir) {
        for line in lines_of(&content) {
            let line = String::from_utf8(line).unwrap();
            let (word, count) = line.split_once('\t').unwrap();
            records.push((name.clone(), word.to_string(), count.parse().unwrap()));
        }
    }
    records
}

fn summed(records: &[(String, String, u64)]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for (_, word, count) in records {
        *counts.entry(word.clone()).or_insert(0) += count;
    }
    counts
}

/// Awkward inputs and their whole texts, for the reference.
fn inputs(fx: &mut Fixture, rng: &mut StdRng) -> (UnitContext, Vec<Vec<u8>>) {
    let mut texts = vec![
        Vec::new(),
        b"no trailing NEWLINE newline".to_vec(),
        b"caf\xe9 ok \xff\xfeOK\n\n".to_vec(),
        [&b"long "[..], &b"word ".repeat(2_000), b"end"].concat(),
    ];
    texts.extend((0..30).map(|i| format!("tiny {} Tiny\n", i % 4).into_bytes()));
    texts.extend((0..3).map(|_| random_text(rng, 50)));
    let files = texts.iter().map(|text| fx.file(text)).collect();
    let sliced = random_text(rng, 80);
    let sliced_path = fx.file(&sliced);
    let mut unit = fx.unit(files, 0, &[]);
    unit.input_slices = random_slices(rng, &sliced_path, sliced.len() as u64, 4);
    texts.push(sliced);
    (unit, texts)
}

#[test]
fn counts_match_a_naive_tokenizer() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(3);
    let (unit, texts) = inputs(&mut fx, &mut rng);
    assert_eq!(count_words(&unit).unwrap(), 1);
    let records = records(&unit.output_dir);
    assert!(records.iter().all(|(name, ..)| name == "part-00000"));
    let words: Vec<&String> = records.iter().map(|(_, word, _)| word).collect();
    assert!(words.is_sorted(), "one write-out, sorted by word");
    assert_eq!(words.len(), summed(&records).len(), "each word once");
    assert_eq!(summed(&records), naive_counts(&texts));
}

#[test]
fn a_small_table_writes_out_often_and_partial_counts_add_up() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(4);
    let (mut unit, texts) = inputs(&mut fx, &mut rng);
    unit.config.insert("map_entries_max".into(), "3".into());
    unit.partitions = 3;
    let write_outs = count_words(&unit).unwrap();
    assert!(write_outs > 10, "{write_outs}");

    let records = records(&unit.output_dir);
    assert_eq!(summed(&records), naive_counts(&texts));
    let repeated = records.len() - summed(&records).len();
    assert!(repeated > 0, "some words were written out more than once");
    for (name, word, _) in &records {
        let partition = fnv1a_64(word.as_bytes()) % 3;
        assert_eq!(name, &format!("part-{partition:05}"), "{word}");
    }
}

#[test]
fn the_memory_bound_also_writes_out() {
    let mut fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(5);
    let (mut unit, texts) = inputs(&mut fx, &mut rng);
    unit.config.insert("map_memory_bytes".into(), "200".into());
    assert!(count_words(&unit).unwrap() > 10);
    assert_eq!(summed(&records(&unit.output_dir)), naive_counts(&texts));
}

#[test]
fn unicode_words_are_lowercased_and_bad_bytes_separate() {
    let mut fx = Fixture::new();
    let input = fx.file(b"Stra\xc3\x9fe \xc3\x89COLE na\xc3\xafve \xe6\x9d\xb1\xe4\xba\xac x_y 3.14 caf\xe9 A\xffB \xc4\xb0");
    let unit = fx.unit(vec![input], 0, &[]);
    WordCountMap.run(&unit).unwrap();
    let got: BTreeMap<String, u64> = summed(&records(&unit.output_dir)).into_iter().collect();
    let expected: BTreeMap<String, u64> = [
        "straße", "école", "naïve", "東京", "x", "y", "3", "14", "caf", "a", "b", "i\u{307}",
    ]
    .into_iter()
    .map(|word| (word.to_string(), 1))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn no_words_no_outputs() {
    let mut fx = Fixture::new();
    let inputs = vec![fx.file(""), fx.file(" ,. \n\n--")];
    let unit = fx.unit(inputs, 2, &[]);
    WordCountMap.run(&unit).unwrap();
    assert!(outputs(&unit.output_dir).is_empty());
}

#[test]
fn bad_settings_are_named() {
    let mut fx = Fixture::new();
    let input = fx.file("a\n");
    for (config, expected) in [
        (
            ("map_entries_max", "0"),
            "wordcount.map: config map_entries_max = \"0\": must be a whole number from 1",
        ),
        (
            ("map_memory_bytes", "-5"),
            "wordcount.map: config map_memory_bytes = \"-5\": not a size",
        ),
        (
            ("chunk_bytes", "1"),
            "wordcount.map: unknown config key \"chunk_bytes\"",
        ),
    ] {
        let unit = fx.unit(vec![input.clone()], 0, &[config]);
        let err = WordCountMap.run(&unit).unwrap_err();
        assert!(err.message().starts_with(expected), "{err}");
    }
}
