//! Leases too large to send inline, end to end with the real binaries: a
//! gather over 20,000 upstream outputs with long names (about 6 MB of
//! paths, over the 4 MiB a lease carries inline) gets a lease that says
//! `inputs_paged`; the stock worker lists them with `ListInputs` and the
//! exec task sees every one in `TM_INPUTS_FILE`, each line ending in a
//! newline (so `wc -l` counts them all).

use std::time::Duration;

use taskmaster_tests::*;

#[test]
fn t32_a_gather_over_too_many_inputs_for_one_lease_reads_them_all() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    write_file(&job.join("data/a.txt"), "a");
    write_file(&job.join("data/b.txt"), "b");
    let pipeline = job.join("pipeline.toml");
    write_file(
        &pipeline,
        r#"
name = "wide"
[[groups]]
name = "many"
command = ["sh", "-c", "cd \"$TM_OUTPUT_DIR\" && seq -f \"$TM_UNIT-%0200.0f\" 1 10000 | xargs touch"]
inputs = ["data/*.txt"]
unit_bytes = 0
[[groups]]
name = "count"
command = ["sh", "-c", "wc -l < \"$TM_INPUTS_FILE\" | tr -d ' ' > \"$TM_OUTPUT_DIR/count\"; sort -u \"$TM_INPUTS_FILE\" | wc -l | tr -d ' ' > \"$TM_OUTPUT_DIR/distinct\""]
after = ["many"]
gather = true
"#,
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let worker = WorkerProcess::start(&url, 2, tmp.path());
    let (id, code) = submit_wait(&url, &pipeline, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{}", status_json(&url, &id));

    let outputs = committed_outputs(&url, &id, "count");
    let dir = std::path::Path::new(&outputs[0]).parent().unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("count").trim(), "20000");
    assert_eq!(read("distinct").trim(), "20000");
    assert!(
        worker.log_text().contains("listed the unit's inputs"),
        "the gather's inputs were sent inline, not paged: make the names longer"
    );
}
