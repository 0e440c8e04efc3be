//! Scheduling figures for BENCHMARKS.md, with the real binaries. Ignored
//! (they take a minute and only print): run with
//! `cargo test --release -p taskmaster-tests --test t81_schedule_bench -- --ignored --nocapture`.
//!
//! - 10,000 schedules registered, all due at one instant: the time from
//!   that instant until every run is submitted, the master's CPU time over
//!   that span, and its resident memory per schedule.
//! - Tick to first lease: a schedule firing every second, run by a
//!   worker; from each logical time to the moment its task started
//!   (leased, sent, spawned), p50 and p99.

use std::time::{Duration, Instant};

use taskmaster_client::Client;
use taskmaster_proto::v1::{GroupSpec, PipelineSpec, ScheduleSpec};
use taskmaster_tests::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spec(name: &str, cron: &str, input: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        overlap: "allow".into(),
        pipeline: Some(PipelineSpec {
            name: "bench".into(),
            groups: vec![GroupSpec {
                name: "g".into(),
                task: "exec".into(),
                command: vec!["true".into()],
                inputs: vec![input.into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
#[ignore = "a benchmark: prints figures"]
fn ten_thousand_schedules_due_at_one_instant() {
    const SCHEDULES: usize = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    write_file(&input, "x");
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let rt = runtime();
    rt.block_on(async {
        let client = Client::connect(&url).await.unwrap();
        let before = client.master_status().await.unwrap();
        // Every schedule fires at the next whole minute at least 40 s away
        // (registering takes a while): "0 M * * * *"-style, seconds first.
        let now = jiff::Timestamp::now();
        let due = (now.as_second() / 60 + 2) * 60;
        let due_at = jiff::Timestamp::from_second(due).unwrap();
        let civil = due_at.to_zoned(jiff::tz::TimeZone::UTC);
        let cron = format!("0 {} {} * * *", civil.minute(), civil.hour());
        let started = Instant::now();
        let mut adds = tokio::task::JoinSet::new();
        for chunk in 0..32 {
            let client = client.clone();
            let (cron, input) = (cron.clone(), input.display().to_string());
            adds.spawn(async move {
                for i in (chunk..SCHEDULES).step_by(32) {
                    client
                        .add_schedule(spec(&format!("s{i}"), &cron, &input))
                        .await
                        .unwrap();
                }
            });
        }
        adds.join_all().await;
        let registered = started.elapsed();
        let after = client.master_status().await.unwrap();
        let per_schedule = after.rss_bytes.saturating_sub(before.rss_bytes) / SCHEDULES as u64;
        println!(
            "registered {SCHEDULES} schedules in {:.1} s; master RSS {} -> {} MB: {per_schedule} B per schedule",
            registered.as_secs_f64(),
            before.rss_bytes >> 20,
            after.rss_bytes >> 20
        );
        let wait = Duration::from_millis((due * 1000 - jiff::Timestamp::now().as_millisecond()).max(0) as u64);
        assert!(wait > Duration::ZERO, "registering took past the due instant");
        tokio::time::sleep(wait).await;
        let cpu_before = client.master_status().await.unwrap().cpu_seconds;
        // The master logs each tick's runs ("schedules fired runs=N"):
        // read its log, not the state, so the polling costs it nothing.
        let fired = |log: &str| -> (usize, String) {
            let mut total = 0;
            let mut last = String::new();
            for line in log.lines().filter(|l| l.contains("schedules fired")) {
                if let Some(n) = line.split("runs=").nth(1) {
                    total += n.trim().parse::<usize>().unwrap_or(0);
                    last = line.split_whitespace().next().unwrap_or_default().to_string();
                }
            }
            (total, last)
        };
        let last_line = loop {
            let (total, last) = fired(&master.log_text());
            if total >= SCHEDULES {
                break last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let cpu = client.master_status().await.unwrap().cpu_seconds - cpu_before;
        let last_at: jiff::Timestamp = last_line.parse().unwrap();
        let span_ms = last_at.as_millisecond() - due * 1000;
        println!(
            "all {SCHEDULES} due at one instant: the last run submitted {:.2} s after it (by design at most 200 runs a tick, a tick every 200 ms: 10 s at best); master CPU {:.2} s over that span",
            span_ms as f64 / 1000.0,
            cpu
        );
    });
}

#[test]
#[ignore = "a benchmark: prints figures"]
fn tick_to_first_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("starts.log");
    write_file(&tmp.path().join("in.txt"), "x");
    let file = tmp.path().join("every.toml");
    write_file(
        &file,
        format!(
            r#"
name = "every"
[schedule]
cron = "* * * * * *"
overlap = "allow"
[[groups]]
name = "g"
command = ["sh", "-c", "echo \"$TM_PARAM_TS $(date +%s%N)\" >> {}"]
inputs = ["in.txt"]
"#,
            log.display()
        ),
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 4, tmp.path());
    tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(62));
    tmctl_ok(&url, &["schedule", "pause", "every"]);
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut latencies_ms: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let (ts, started) = line.split_once(' ')?;
            let logical: jiff::Timestamp = ts.parse().ok()?;
            let started: i128 = started.parse().ok()?;
            Some((started - logical.as_nanosecond()) as f64 / 1e6)
        })
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "tick to task start over {} runs (logical time -> task running on a worker): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies_ms.len(),
        at(0.5),
        at(0.99),
        latencies_ms.last().unwrap()
    );
}
