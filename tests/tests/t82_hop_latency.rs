//! The hop of a small task: from an upstream command's end (its output
//! committed, the downstream unit made and leased) to the downstream
//! command's start, on a chain of one-unit exec stages. Ignored (it only
//! prints): `cargo test --release -p taskmaster-tests --test t82_hop_latency
//! -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::time::Duration;

use taskmaster_tests::*;

const STAGES: usize = 20;
const PIPELINES: usize = 5;

#[test]
#[ignore = "a benchmark: prints figures"]
fn hop_from_upstream_end_to_downstream_start() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("hops.log");
    write_file(&tmp.path().join("in.txt"), "x");
    let mut toml = String::from("name = \"chain\"\n");
    for stage in 0..STAGES {
        let command = format!(
            "echo \"$TM_PIPELINE {stage} start $(date +%s%N)\" >> {log}; echo x > \"$TM_OUTPUT_DIR/o\"; echo \"$TM_PIPELINE {stage} end $(date +%s%N)\" >> {log}",
            log = log.display()
        );
        toml.push_str(&format!(
            "[[groups]]\nname = \"s{stage}\"\ncommand = [\"sh\", \"-c\", {command:?}]\n"
        ));
        if stage == 0 {
            toml.push_str("inputs = [\"in.txt\"]\n");
        } else {
            toml.push_str(&format!("after = [\"s{}\"]\n", stage - 1));
        }
    }
    let file = tmp.path().join("chain.toml");
    write_file(&file, toml);
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    for _ in 0..PIPELINES {
        let (id, code) = submit_wait(&url, &file, Duration::from_secs(120));
        assert_eq!(code, Some(0), "{id}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut at: BTreeMap<(String, usize, String), i128> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        at.insert(
            (f[0].into(), f[1].parse().unwrap(), f[2].into()),
            f[3].parse().unwrap(),
        );
    }
    let mut hops_ms: Vec<f64> = Vec::new();
    for ((pipeline, stage, what), start) in &at {
        if what != "start" || *stage == 0 {
            continue;
        }
        let end = at[&(pipeline.clone(), stage - 1, "end".to_string())];
        hops_ms.push((start - end) as f64 / 1e6);
    }
    hops_ms.sort_by(f64::total_cmp);
    let q = |q: f64| hops_ms[((hops_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "hop, upstream command end -> downstream command start, over {} hops: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        hops_ms.len(),
        q(0.5),
        q(0.99),
        hops_ms.last().unwrap()
    );
}
