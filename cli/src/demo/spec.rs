//! The word count pipeline the demo submits, built in code:
//! `split` → `map` → `reduce` (a shuffle into R partitions) → `sort` →
//! `merge` (a gather into one file, every word by count, descending).

use std::path::Path;

use taskmaster_proto::v1::{GroupSpec, PipelineSpec};

use super::input::Inputs;

/// The pipeline's name on the master.
pub const PIPELINE_NAME: &str = "wordcount-demo";

/// The stages, in pipeline order; the summary lists units in this order.
pub const STAGES: [&str; 5] = ["split", "map", "reduce", "sort", "merge"];

/// The stage whose one unit's output is the answer.
pub const FINAL_STAGE: &str = "merge";

/// Chunks each split unit's input is cut into (about): enough to show
/// `split` doing its job, few enough that the chunk files stay large.
pub const CHUNKS_PER_SPLIT_UNIT: u64 = 4;

/// Smallest chunk `split` is asked for, so a tiny `--unit-bytes` does not
/// turn into thousands of tiny files.
pub const CHUNK_BYTES_MIN: u64 = 4096;

/// Delay before a failed unit's next attempt. The master's default (two
/// minutes) suits a flaky production dependency, not a demo someone is
/// watching.
pub const RETRY_DELAY_MS: u64 = 1_000;

/// The word count pipeline over `inputs`, cut into units of about
/// `unit_bytes`, shuffled into `partitions` reduce units. Every group runs
/// in `workdir` (the demo's data dir).
pub fn wordcount_spec(
    inputs: &Inputs,
    workdir: &Path,
    unit_bytes: u64,
    partitions: u32,
) -> PipelineSpec {
    let workdir = workdir.to_string_lossy().into_owned();
    let chunk_bytes = (unit_bytes / CHUNKS_PER_SPLIT_UNIT).max(CHUNK_BYTES_MIN);
    // Count descending; the tasks break ties by word, ascending.
    let by_count = [("sort_by", "value"), ("order", "desc")];
    let group = |name: &str, task: &str, after: Option<&str>, config: &[(&str, &str)]| GroupSpec {
        name: name.to_string(),
        task: task.to_string(),
        workdir: workdir.clone(),
        after: after.map(str::to_string).into_iter().collect(),
        config: config
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        retry_delay_ms: Some(RETRY_DELAY_MS),
        ..Default::default()
    };
    let split = GroupSpec {
        input_units: inputs.units(unit_bytes),
        ..group(
            "split",
            "split",
            None,
            &[("chunk_bytes", &chunk_bytes.to_string())],
        )
    };
    let reduce = GroupSpec {
        partitions,
        ..group("reduce", "sum.reduce", Some("map"), &[])
    };
    let merge = GroupSpec {
        gather: true,
        ..group("merge", "merge", Some("sort"), &by_count)
    };
    PipelineSpec {
        name: PIPELINE_NAME.to_string(),
        params: Default::default(),
        groups: vec![
            split,
            group("map", "wordcount.map", Some("split"), &[]),
            reduce,
            group("sort", "sort", Some("reduce"), &by_count),
            merge,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_stages_wired_as_a_word_count() {
        let inputs = Inputs {
            files: vec![("/in/a".into(), 300), ("/in/b".into(), 300)],
        };
        let spec = wordcount_spec(&inputs, Path::new("/data"), 400, 3);
        let names: Vec<&str> = spec.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, STAGES);
        let [split, map, reduce, sort, merge] = &spec.groups[..] else {
            panic!("five groups");
        };
        assert_eq!(split.input_units.len(), 2);
        assert_eq!(split.config["chunk_bytes"], "4096");
        assert_eq!(
            (map.task.as_str(), map.after.as_slice()),
            ("wordcount.map", &["split".to_string()][..])
        );
        assert_eq!((reduce.task.as_str(), reduce.partitions), ("sum.reduce", 3));
        assert_eq!(sort.config["sort_by"], "value");
        assert_eq!(sort.config["order"], "desc");
        assert!(merge.gather);
        assert_eq!(merge.config, sort.config);
        assert!(spec.groups.iter().all(|g| g.workdir == "/data"));
    }
}
