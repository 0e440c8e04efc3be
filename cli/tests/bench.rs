//! Runs the real `tmctl bench`: it starts the real `taskmaster` binary
//! (built next to tmctl by `cargo test --workspace`) and drives it over
//! gRPC. When only this crate was built, the taskmaster binary may be
//! missing; those tests then say so and pass without running.

use taskmaster_tests::in_process;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a small bench may take, even on a loaded debug build.
const WAIT: Duration = Duration::from_secs(120);

/// The keys `tmctl bench --json` promises.
const KEYS: [&str; 13] = [
    "units_per_s",
    "commit_p50_us",
    "commit_p99_us",
    "commit_max_us",
    "lease_p50_us",
    "lease_p99_us",
    "master_rss_bytes",
    "master_cpu_s",
    "journal_syncs",
    "units",
    "batch",
    "clients",
    "wall_s",
];

fn taskmaster_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tmctl")).with_file_name("taskmaster")
}

/// False (with a note on stderr) when there is no master binary to start.
fn master_built() -> bool {
    let path = taskmaster_binary();
    if path.is_file() {
        return true;
    }
    eprintln!(
        "skipping: no taskmaster binary at {} (run `cargo test --workspace`, \
         or `cargo build --bin taskmaster` first)",
        path.display()
    );
    false
}

/// Runs tmctl with `args` (ignoring the caller's TASKMASTER_ADDR and
/// RUST_LOG), killing it if it runs longer than [`WAIT`].
fn tmctl(args: &[&str]) -> Output {
    tmctl_with_addr(args, None)
}

/// [`tmctl`] with TASKMASTER_ADDR set to `addr` when given.
fn tmctl_with_addr(args: &[&str], addr: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tmctl"));
    match addr {
        Some(addr) => command.env("TASKMASTER_ADDR", addr),
        None => command.env_remove("TASKMASTER_ADDR"),
    };
    let mut child = command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tmctl runs");
    // Drain both pipes while waiting, so a chatty run cannot block.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let err_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = err.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tmctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tmctl {args:?} ran longer than {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// The stdout of a run that must have succeeded.
fn text_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "tmctl bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: &Output) -> serde_json::Value {
    let text = text_of(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}

#[test]
fn t10_bench_json_reports_every_key_for_all_units() {
    if !master_built() {
        return;
    }
    let output = tmctl(&[
        "bench",
        "--units",
        "2000",
        "--batch",
        "10",
        "--clients",
        "4",
        "--json",
    ]);
    let report = json_of(&output);
    for key in KEYS {
        assert!(report.get(key).is_some(), "no {key} in {report}");
    }
    assert_eq!(report["units"], 2000);
    assert_eq!(report["batch"], 10);
    assert_eq!(report["clients"], 4);
    assert!(report["units_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["journal_syncs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["master_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    let p50 = report["commit_p50_us"].as_u64().unwrap();
    let p99 = report["commit_p99_us"].as_u64().unwrap();
    let max = report["commit_max_us"].as_u64().unwrap();
    assert!(p50 <= p99 && p99 <= max, "{report}");
}

#[test]
fn t20_bench_renews_at_a_paced_rate_and_prints_a_report() {
    if !master_built() {
        return;
    }
    let output = tmctl(&[
        "bench",
        "--units",
        "300",
        "--batch",
        "3",
        "--clients",
        "2",
        "--renew",
        "--rate",
        "3000",
    ]);
    let text = text_of(&output);
    for line in [
        "units/s committed",
        "commit",
        "lease",
        "renew",
        "peak RSS",
        "journal",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("300 units in 1 pipeline, each committed exactly once"),
        "{text}"
    );
}

#[test]
fn t30_bench_against_an_unreachable_master_fails_clearly() {
    let output = tmctl(&["bench", "--master", "http://127.0.0.1:1", "--units", "10"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the master"), "{stderr}");
}

#[test]
fn t31_bench_refuses_a_batch_above_the_limit() {
    let output = tmctl(&["bench", "--batch", "1001"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn t40_streamed_and_chained_runs_commit_every_unit_once() {
    if !master_built() {
        return;
    }
    let variants: [&[&str]; 3] = [
        &["--stream"],
        &["--lease-on-commit"],
        &["--stream", "--lease-on-commit"],
    ];
    for variant in variants {
        let mut args = vec![
            "bench",
            "--units",
            "1000",
            "--batch",
            "1",
            "--clients",
            "8",
            "--json",
        ];
        args.extend_from_slice(variant);
        let report = json_of(&tmctl(&args));
        let chained = variant.contains(&"--lease-on-commit");
        assert_eq!(
            report["stream"],
            variant.contains(&"--stream"),
            "{variant:?}"
        );
        assert_eq!(report["lease_on_commit"], chained, "{variant:?}");
        assert_eq!(report["units"], 1000, "{report}");
        assert_eq!(report["commit_calls"], 1000, "{report}");
        // Chained, a client leases once; every later unit comes with a commit.
        let lease_calls = if chained { 8 } else { 1000 };
        assert_eq!(report["lease_calls"], lease_calls, "{report}");
    }
}

#[test]
fn t50_pending_only_reports_memory_per_unit_and_restart_recovers_them() {
    if !master_built() {
        return;
    }
    let output = tmctl(&[
        "bench",
        "--units",
        "20000",
        "--pending-only",
        "--restart",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(report["units"], 0, "nothing is committed: {report}");
    assert_eq!(report["units_submitted"], 20000);
    let per_unit = report["bytes_per_pending_unit"].as_f64().unwrap();
    assert!(per_unit > 0.0, "{report}");
    let recovery = &report["recovery"];
    assert!(recovery["recovery_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(recovery["data_dir_bytes"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn t51_restart_after_a_run_verifies_the_recovered_commits() {
    if !master_built() {
        return;
    }
    let output = tmctl(&[
        "bench",
        "--units",
        "2000",
        "--batch",
        "50",
        "--clients",
        "2",
        "--restart",
    ]);
    let text = text_of(&output);
    assert!(text.contains("recovery"), "{text}");
    assert!(
        text.contains("each committed exactly once, before and after the restart"),
        "{text}"
    );
}

#[test]
fn t52_restart_needs_a_master_the_bench_started() {
    let output = tmctl(&["bench", "--master", "http://127.0.0.1:1", "--restart"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn t53_restart_ignores_a_master_address_from_the_environment() {
    if !master_built() {
        return;
    }
    // Operators often export TASKMASTER_ADDR; the bench never loads that
    // master, so --restart (which needs its own master) must still run.
    let output = tmctl_with_addr(
        &[
            "bench",
            "--units",
            "500",
            "--batch",
            "50",
            "--clients",
            "2",
            "--restart",
        ],
        Some("http://127.0.0.1:9"),
    );
    let text = text_of(&output);
    assert!(text.contains("before and after the restart"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_bench_gives_back_leases_of_other_pipelines_and_leaves_them_pending() {
    if !master_built() {
        return;
    }
    let master = in_process::TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    // Submitted first, so the bench's first leases are of this pipeline.
    let other = client
        .submit(in_process::spec(dir.path(), "other", 30, 0))
        .await
        .unwrap();
    let url = master.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        tmctl(&[
            "bench",
            "--master",
            &url,
            "--units",
            "300",
            "--batch",
            "20",
            "--clients",
            "2",
            "--json",
        ])
    })
    .await
    .unwrap();
    let json = json_of(&output);
    assert_eq!(json["units"], 300, "{json}");
    assert!(json["foreign_released"].as_u64() >= Some(30), "{json}");
    let status = client.status(&other).await.unwrap();
    let counts = status.groups[0].counts.unwrap_or_default();
    assert_eq!(
        (counts.pending, counts.leased, counts.committed),
        (30, 0, 0),
        "{status:?}"
    );
    master.stop().await;
}
