//! The examples in `examples/` run as the README says, with the real
//! binaries: they must stay runnable, and right.

use std::path::PathBuf;
use std::time::Duration;

use taskmaster_tests::*;

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
        .canonicalize()
        .unwrap()
}

#[test]
fn t15_the_sales_example_adds_up_every_region_once() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 3, tmp.path());
    let (id, code) = submit_wait(
        &url,
        &example("sales/pipeline.toml"),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{}", status_json(&url, &id));
    let total = committed_outputs(&url, &id, "total");
    assert_eq!(total.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&total[0]).unwrap(),
        "east,55.25,EUR\nnorth,150.00,EUR\nsouth,280.00,EUR\nwest,42.00,EUR\n"
    );
    // The dropped row is said in the day's log (the task's stderr goes to
    // tmctl's).
    let logs = tmctl(
        &url,
        &[
            "logs",
            &id,
            "--group",
            "by_region",
            "--unit",
            "1",
            "--stderr",
        ],
    );
    let text = String::from_utf8_lossy(&logs.stderr);
    assert!(
        logs.status.success() && text.contains("dropped 1 row(s)"),
        "{text}"
    );
}

#[test]
fn t15_the_nightly_example_backfills_and_publishes_each_day() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 3, tmp.path());
    let file = example("nightly/nightly.toml");
    let added = tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    assert_eq!(added.lines().last(), Some("nightly-sales"));
    let out = tmctl_within(
        &url,
        &[
            "backfill",
            "nightly-sales",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
            "--wait",
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published = wait_until("three days published", Duration::from_secs(30), || {
        let text = tmctl_ok(&url, &["published", "nightly-sales", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        (rows.len() == 3).then_some(rows)
    });
    let day2 = &published[1];
    assert_eq!(day2["ds"], "2026-11-02");
    let reports: Vec<String> = day2["outputs"]["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p.as_str().unwrap()).unwrap())
        .collect();
    assert!(
        reports.contains(&"2026-11-02,2,255.25\n".to_string()),
        "{reports:?}"
    );
}
