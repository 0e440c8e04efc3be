//! Schedules end to end with the real binaries: a schedule firing every
//! 2 s while the master is SIGKILLed (some times with a fail point between
//! deciding to fire and journaling it, or after journaling and before
//! anything is reported) runs every logical time exactly once; a backfill
//! with `--max-active 2` never runs more than 2 at once; bad input is
//! refused with a clear message.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use taskmaster_tests::*;

/// A schedule file: one unit, whose task appends its run's `ts` and its
/// start and end times to `log` and writes `ts` as its output.
fn schedule_file(
    dir: &Path,
    name: &str,
    cron: &str,
    extra: &str,
    log: &Path,
) -> std::path::PathBuf {
    write_file(&dir.join("in.txt"), "x");
    let path = dir.join(format!("{name}.toml"));
    write_file(
        &path,
        format!(
            r#"
name = "{name}"
[schedule]
cron = "{cron}"
{extra}
[[groups]]
name = "run"
command = ["sh", "-c", "echo \"start $TM_PARAM_TS $(date +%s%N)\" >> {log}; sleep 0.3; echo \"$TM_PARAM_TS\" > \"$TM_OUTPUT_DIR/ts\"; echo \"end $TM_PARAM_TS $(date +%s%N)\" >> {log}"]
inputs = ["in.txt"]
"#,
            log = log.display()
        ),
    );
    path
}

fn runs_json(url: &str, name: &str) -> Vec<serde_json::Value> {
    let text = tmctl_ok(url, &["runs", name, "--json", "--limit", "0"]);
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn seconds_of(rfc3339: &str) -> i64 {
    let instant: jiff::Timestamp = rfc3339.parse().unwrap();
    instant.as_second()
}

#[test]
fn t80_every_logical_time_runs_exactly_once_across_master_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("tasks.log");
    let file = schedule_file(
        tmp.path(),
        "tick",
        "*/2 * * * * *",
        "catchup = \"all\"\noverlap = \"allow\"",
        &log,
    );
    let mut master = MasterProcess::start(&data, &listen, 2_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 4, tmp.path());
    let added = tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    assert_eq!(added.lines().last(), Some("tick"), "{added}");

    // Kill the master five times: plain SIGKILLs, and fail points that
    // abort it once it decided to fire (before the journal has it) and
    // once the journal has it (before anything is reported).
    let failpoints = [
        None,
        Some("schedule-decided=return"),
        None,
        Some("schedule-fired=return"),
        None,
    ];
    let mut aborted = 0;
    for armed in failpoints {
        std::thread::sleep(Duration::from_millis(2_500));
        master.kill();
        std::thread::sleep(Duration::from_millis(1_500)); // logical times missed meanwhile
        let env: Vec<(&str, &str)> = armed.iter().map(|fp| ("FAILPOINTS", *fp)).collect();
        master = MasterProcess::start_env(&data, &listen, 2_000, &[], &env);
        if armed.is_some() {
            // It aborts at its first firing; then it starts clean.
            wait_until("the armed master aborts", Duration::from_secs(20), || {
                master.exited().then_some(())
            });
            aborted += 1;
            master = MasterProcess::start(&data, &listen, 2_000);
        }
    }
    assert_eq!(aborted, 2);
    std::thread::sleep(Duration::from_millis(2_500));
    tmctl_ok(&url, &["schedule", "pause", "tick"]);

    // Every 2 s from the first logical time to the last, each once.
    let runs = runs_json(&url, "tick");
    let mut by_time: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for run in &runs {
        assert_eq!(run["trigger"], "schedule", "{run}");
        assert!(
            run["pipeline_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{run}"
        );
        by_time
            .entry(seconds_of(run["logical"].as_str().unwrap()))
            .or_default()
            .push(run["pipeline_id"].as_str().unwrap().to_string());
    }
    let (first, last) = (
        *by_time.keys().next().unwrap(),
        *by_time.keys().last().unwrap(),
    );
    let expected: Vec<i64> = (first..=last).step_by(2).collect();
    assert_eq!(by_time.keys().copied().collect::<Vec<_>>(), expected);
    assert!(by_time.values().all(|ids| ids.len() == 1), "{by_time:?}");
    assert!(expected.len() >= 8, "only {} runs", expected.len());

    // And each ran to success once: one committed output per logical time.
    wait_until("every run finished", Duration::from_secs(60), || {
        let runs = runs_json(&url, "tick");
        runs.iter().all(|r| r["state"] == "succeeded").then_some(())
    });
    for ids in by_time.values() {
        let outputs = committed_outputs(&url, &ids[0], "run");
        assert_eq!(outputs.len(), 1);
    }
}

/// The most tasks that ran at once, from the start and end lines of `log`.
fn most_at_once(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut events: Vec<(u128, i32)> = Vec::new();
    let mut starts = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let at: u128 = fields[2].parse().unwrap();
        if fields[0] == "start" {
            starts += 1;
            events.push((at, 1));
        } else {
            events.push((at, -1));
        }
    }
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    (most as usize, starts)
}

#[test]
fn t80_a_backfill_of_ten_days_runs_two_at_a_time_and_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("tasks.log");
    let file = schedule_file(
        tmp.path(),
        "daily",
        "0 3 * * *",
        "timezone = \"Europe/Berlin\"",
        &log,
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    // More slots than the backfill may use: only its throttle holds it.
    let _worker = WorkerProcess::start(&url, 6, tmp.path());
    tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    let dry = tmctl_ok(
        &url,
        &[
            "backfill",
            "daily",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-10",
            "--dry-run",
        ],
    );
    assert!(dry.contains("2026-11-01T03:00:00+01:00"), "{dry}");
    assert!(dry.contains("10 run(s) would run"), "{dry}");
    assert!(
        runs_json(&url, "daily").is_empty(),
        "a dry run starts nothing"
    );

    let out = tmctl_within(
        &url,
        &[
            "backfill",
            "daily",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-10",
            "--max-active",
            "2",
            "--wait",
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.lines().last().unwrap().to_string();
    assert_eq!(id, "daily-backfill-1");

    let runs = runs_json(&url, "daily");
    assert_eq!(runs.len(), 10);
    assert!(
        runs.iter()
            .all(|r| r["state"] == "succeeded" && r["trigger"] == "backfill")
    );
    let (most, starts) = most_at_once(&log);
    assert_eq!(starts, 10);
    assert!(most <= 2, "{most} runs at once");
    assert_eq!(most, 2, "the backfill ran two at a time");
    // In order, oldest first.
    let mut logicals: Vec<String> = runs
        .iter()
        .map(|r| r["logical"].as_str().unwrap().to_string())
        .collect();
    logicals.reverse();
    let mut sorted = logicals.clone();
    sorted.sort();
    assert_eq!(logicals, sorted);

    // Again: everything succeeded, so nothing runs.
    let again = tmctl_ok(
        &url,
        &[
            "backfill",
            "daily",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-10",
        ],
    );
    assert!(again.contains("nothing to run"), "{again}");
}

#[test]
fn t80_bad_schedules_and_backfills_are_refused_with_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("tasks.log");
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    let bad = schedule_file(tmp.path(), "bad", "0 25 * * *", "", &log);
    let err = tmctl_err(&url, &["schedule", "add", bad.to_str().unwrap()]);
    assert!(
        err.contains("line 4") && err.contains("cron expression"),
        "{err}"
    );
    let zone = schedule_file(
        tmp.path(),
        "zone",
        "0 2 * * *",
        "timezone = \"Mars/Olympus\"",
        &log,
    );
    let err = tmctl_err(&url, &["schedule", "add", zone.to_str().unwrap()]);
    assert!(err.contains("line 5") && err.contains("IANA"), "{err}");
    assert!(
        tmctl_ok(&url, &["schedule", "list"]).lines().count() == 1,
        "nothing registered"
    );

    let good = schedule_file(tmp.path(), "good", "0 2 * * *", "", &log);
    tmctl_ok(&url, &["schedule", "add", good.to_str().unwrap()]);
    let err = tmctl_err(&url, &["schedule", "add", good.to_str().unwrap()]);
    assert!(err.contains("exists"), "{err}");
    let err = tmctl_err(&url, &["schedule", "pause", "nope"]);
    assert!(err.contains("no schedule \"nope\""), "{err}");
    let err = tmctl_err(
        &url,
        &[
            "backfill",
            "good",
            "--from",
            "2026-11-10",
            "--to",
            "2026-11-01",
        ],
    );
    assert!(err.contains("after"), "{err}");
    let err = tmctl_err(
        &url,
        &[
            "backfill",
            "good",
            "--from",
            "1990-01-01",
            "--to",
            "2026-11-01",
        ],
    );
    assert!(err.contains("more than 10000 runs"), "{err}");
    let list = tmctl_ok(&url, &["backfill", "list"]);
    assert!(list.is_empty(), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&tmctl_ok(&url, &["schedule", "list", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "good");
    assert_eq!(json[0]["catchup"], "all");
    assert_eq!(json[0]["timezone"], "UTC");
}

/// A one-route HTTP server on loopback: each POST's body, as received.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if sent
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (url, received)
}

#[test]
fn t80_a_failed_run_is_posted_to_the_schedules_webhook() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook, received) = webhook_receiver();
    write_file(&tmp.path().join("in.txt"), "x");
    let file = tmp.path().join("failing.toml");
    write_file(
        &file,
        format!(
            r#"
name = "failing"
[schedule]
cron = "0 3 * * *"
webhook = "{hook}"
[[groups]]
name = "load"
command = ["sh", "-c", "echo 'the warehouse is closed' >&2; exit 3"]
inputs = ["in.txt"]
max_attempts = 1
"#
        ),
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 1, tmp.path());
    tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    let out = tmctl_ok(
        &url,
        &["schedule", "trigger", "failing", "--at", "2026-12-01"],
    );
    let pipeline = out.lines().last().unwrap().to_string();
    assert_eq!(pipeline, "failing-20261201T030000", "{out}");
    let body = received
        .recv_timeout(Duration::from_secs(30))
        .expect("a notice within 30 s");
    let notice: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(notice["event"], "failed", "{notice}");
    assert_eq!(notice["schedule"], "failing");
    assert_eq!(notice["pipeline_id"], pipeline.as_str());
    assert_eq!(notice["logical"], "2026-12-01T03:00:00+00:00");
    let units = notice["failed_units"].as_array().unwrap();
    assert!(
        units[0]
            .as_str()
            .unwrap()
            .contains("the warehouse is closed"),
        "{notice}"
    );
    // Told once.
    assert!(received.recv_timeout(Duration::from_secs(3)).is_err());
}

fn published_json(url: &str, name: &str) -> Vec<serde_json::Value> {
    let text = tmctl_ok(url, &["published", name, "--json"]);
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn wait_state(url: &str, pipeline: &str, state: &str) {
    wait_until(
        &format!("{pipeline} {state}"),
        Duration::from_secs(60),
        || (status_json(url, pipeline)["state"] == state).then_some(()),
    );
}

#[test]
fn t80_a_rerun_replaces_its_logical_times_published_partition_and_a_failure_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(&tmp.path().join("in.txt"), "x");
    let file = tmp.path().join("daily.toml");
    write_file(
        &file,
        r#"
name = "daily"
[schedule]
cron = "0 3 * * *"
overlap = "allow"
publish = ["report"]
[[groups]]
name = "report"
command = ["sh", "-c", "if [ -e fail ]; then exit 1; fi; echo \"$TM_PARAM_DS\" > \"$TM_OUTPUT_DIR/report.txt\""]
inputs = ["in.txt"]
max_attempts = 1
"#,
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    tmctl_ok(&url, &["schedule", "add", file.to_str().unwrap()]);
    let trigger = || {
        let out = tmctl_ok(
            &url,
            &["schedule", "trigger", "daily", "--at", "2026-12-01"],
        );
        out.lines().last().unwrap().to_string()
    };
    let first = trigger();
    wait_state(&url, &first, "succeeded");
    let published = wait_until("the first run published", Duration::from_secs(30), || {
        let p = published_json(&url, "daily");
        (p.len() == 1).then_some(p)
    });
    assert_eq!(published[0]["pipeline_id"], first.as_str());
    assert_eq!(published[0]["ds"], "2026-12-01");
    let paths = published[0]["outputs"]["report"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(paths.len(), 1);
    assert_eq!(
        std::fs::read_to_string(paths[0].as_str().unwrap())
            .unwrap()
            .trim(),
        "2026-12-01"
    );

    // A re-run of the same day replaces the partition: still one, the new run's.
    let second = trigger();
    assert_ne!(second, first);
    wait_state(&url, &second, "succeeded");
    wait_until("the re-run published", Duration::from_secs(30), || {
        let p = published_json(&url, "daily");
        (p.len() == 1 && p[0]["pipeline_id"] == second.as_str()).then_some(())
    });
    let manifest = published_json(&url, "daily")[0]["manifest"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk["pipeline_id"], second.as_str(), "{text}");

    // A failed run publishes nothing: the partition stays the second run's.
    write_file(&tmp.path().join("fail"), "");
    let third = trigger();
    wait_state(&url, &third, "failed");
    std::thread::sleep(Duration::from_millis(2_500));
    let p = published_json(&url, "daily");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["pipeline_id"], second.as_str());
    let none = tmctl_ok(
        &url,
        &["published", "daily", "--at", "2026-12-02", "--json"],
    );
    assert_eq!(none.trim(), "[]");
}
