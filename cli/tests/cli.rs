//! Runs the real `tmctl` binary: help, input errors, an unreachable master,
//! and every command against the real master, started in-process; units
//! are run by a real worker or leased and committed by hand.

use std::path::Path;
use std::process::{Output, Stdio};

use taskmaster_tests::in_process::{
    HandWorker, SCRIPT_OK, TestMaster, WAIT, finish_failing, finish_good, is_pipeline_id,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

/// tmctl with `args`, ignoring the caller's TASKMASTER_ADDR and RUST_LOG,
/// killed if the test drops it.
fn tmctl_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tmctl"));
    command
        .args(args)
        .env_remove("TASKMASTER_ADDR")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    command
}

/// Runs `command` to completion (bounded by [`WAIT`]).
async fn run(mut command: Command) -> Output {
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("tmctl finishes in time")
        .expect("tmctl runs")
}

async fn tmctl(args: &[&str]) -> Output {
    run(tmctl_command(args)).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The pipeline id `tmctl submit` printed: the last line of stdout.
fn printed_id(output: &Output) -> String {
    let text = stdout(output);
    text.lines().last().expect("an id on stdout").to_string()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// A folder with `inputs` input files (`in-0.txt`, ...) and a pipeline
/// file `name` whose one group `extract` runs `sh -c script` once per
/// file; `extra` is appended to the group's table.
fn pipeline_dir(name: &str, inputs: usize, script: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..inputs {
        std::fs::write(dir.path().join(format!("in-{i}.txt")), "hello").unwrap();
    }
    let command = toml::Value::Array(vec!["sh".into(), "-c".into(), script.into()]);
    let toml = format!(
        "name = \"{name}\"\n[params]\nds = \"2026-11-21\"\n[[groups]]\nname = \"extract\"\ncommand = {command}\ninputs = [\"*.txt\"]\nunit_bytes = 0\n{extra}"
    );
    std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
    dir
}

fn file_arg(dir: &Path) -> String {
    dir.join("pipeline.toml").to_string_lossy().into_owned()
}

/// tmctl's stderr, read line by line while it runs.
struct Stderr {
    lines: Lines<BufReader<ChildStderr>>,
    /// Every line read so far, for assertions and failure messages.
    seen: Vec<String>,
}

impl Stderr {
    fn new(stderr: ChildStderr) -> Stderr {
        Stderr {
            lines: BufReader::new(stderr).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `text`; fails the test if stderr
    /// ends or [`WAIT`] passes first.
    async fn until(&mut self, text: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.next_line().await.expect("read stderr") {
                let hit = line.contains(text);
                self.seen.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "tmctl did not print {text:?}; its stderr so far: {:#?}",
            self.seen
        );
    }

    /// Reads what is left, once tmctl has exited.
    async fn rest(&mut self) {
        while let Some(line) = self.lines.next_line().await.expect("read stderr") {
            self.seen.push(line);
        }
    }
}

#[tokio::test]
async fn help_describes_commands_and_master_flag() {
    let output = tmctl(&["--help"]).await;
    assert!(output.status.success());
    let text = stdout(&output);
    for word in ["submit", "status", "outputs", "--master", "TASKMASTER_ADDR"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    let output = tmctl(&["submit", "--help"]).await;
    assert!(output.status.success());
    assert!(stdout(&output).contains("--param <KEY=VALUE>"));
}

#[tokio::test]
async fn malformed_file_fails_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.toml"),
        "name = \"p\"\ngroups = [[\n",
    )
    .unwrap();
    // The file is checked before any connection, so no master is needed.
    let output = tmctl(&[
        "--master",
        "http://127.0.0.1:1",
        "submit",
        &file_arg(dir.path()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains("pipeline.toml"), "{text}");
    assert!(text.contains("line 2, column"), "{text}");
    assert!(stdout(&output).is_empty());
}

#[tokio::test]
async fn bad_param_is_a_usage_error() {
    let dir = pipeline_dir("good", 1, SCRIPT_OK, "");
    let output = tmctl(&["submit", &file_arg(dir.path()), "--param", "oops"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("KEY=VALUE"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_param_the_file_does_not_declare_is_refused_with_the_declared_names() {
    let dir = pipeline_dir("good", 1, SCRIPT_OK, "");
    // No master: the file is checked before connecting.
    let output = tmctl(&["submit", &file_arg(dir.path()), "--param", "dss=2027-01-01"]).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: --param dss: not a parameter of ")
            && text.contains("pipeline.toml (declares ds); add it under [params]"),
        "{text}"
    );
    assert!(stdout(&output).is_empty());
}

#[tokio::test]
async fn a_missing_pipeline_file_is_reported_once() {
    let output = tmctl(&["submit", "/nonexistent/pipeline.toml"]).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(
        text,
        "error: cannot read pipeline file /nonexistent/pipeline.toml: \
         No such file or directory (os error 2)\n"
    );
}

#[tokio::test]
async fn unreachable_master_is_named_in_the_error() {
    let output = tmctl(&["--master", "http://127.0.0.1:1", "status"]).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("cannot reach the master at http://127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_prints_id_last_and_sends_overridden_params() {
    let master = TestMaster::start().await;
    let dir = pipeline_dir("good", 1, SCRIPT_OK, "");
    let file = file_arg(dir.path());
    let args = [
        "--master",
        &master.url,
        "submit",
        &file,
        "--param",
        "ds=2027-01-01",
    ];
    let output = tmctl(&args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let id = printed_id(&output);
    assert!(is_pipeline_id(&id, "good"), "{id}");

    // What the master accepted, as a worker is handed it.
    let client = master.client().await;
    let lease = HandWorker::new(&client).lease(1).await.remove(0);
    assert_eq!(lease.unit.as_ref().unwrap().pipeline_id, id);
    assert_eq!(lease.params["ds"], "2027-01-01");
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(lease.workdir, root.to_str().unwrap());
    assert_eq!(lease.inputs, [root.join("in-0.txt").to_str().unwrap()]);
    assert_eq!(lease.command, ["sh", "-c", SCRIPT_OK]);
    assert_eq!(lease.task, "exec");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_says_how_many_units_and_packs_small_files_only_past_64() {
    let master = TestMaster::start().await;
    // 200 small files and no `unit_bytes`: once one unit, now 67.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        std::fs::write(dir.path().join(format!("{i:03}.csv")), "a,b\n").unwrap();
    }
    let toml = "name = \"csv\"\n[[groups]]\nname = \"extract\"\ncommand = [\"true\"]\n\
        inputs = [\"*.csv\"]\n[[groups]]\nname = \"load\"\ncommand = [\"true\"]\nafter = [\"extract\"]\n";
    std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
    let output = tmctl(&["--master", &master.url, "submit", &file_arg(dir.path())]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "2 groups, 67 units in extract\n");
    let id = printed_id(&output);
    assert_eq!(stdout(&output), format!("{id}\n"), "the id alone on stdout");
    let status = json(&tmctl(&["--master", &master.url, "status", &id, "--json"]).await);
    assert_eq!(status["groups"][0]["total"], 67);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_with_the_pipelines_outcome() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = finish_good(&client, dir.path()).await;
    let failing = finish_failing(&client, dir.path()).await;

    let output = tmctl(&["--master", &master.url, "wait", &good]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).ends_with(&format!("pipeline {good} succeeded\n")));
    assert!(stdout(&output).is_empty());

    let output = tmctl(&["--master", &master.url, "wait", &failing]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "pipeline {failing} failed\nfailed units:\n  extract/1: "
        )),
        "{text}"
    );

    let output = tmctl(&["--master", &master.url, "wait", "nope-00000000"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("(NOT_FOUND)"),
        "{}",
        stderr(&output)
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_rerun_with_wait_follow_the_pipeline_to_its_end() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let hand = HandWorker::new(&client);
    let dir = tempfile::tempdir().unwrap();
    let failing = finish_failing(&client, dir.path()).await;

    let args = [
        "--master",
        &master.url,
        "retry",
        &failing,
        "--wait",
        "--poll-ms",
        "10",
    ];
    let mut child = tmctl_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tmctl starts");
    let mut progress = Stderr::new(child.stderr.take().unwrap());
    progress.until("running  extract 1/2").await;
    let retry = hand.lease(1).await;
    hand.succeed(&retry[0], &["out"]).await;
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("tmctl exits in time")
        .unwrap();
    progress.rest().await;
    assert_eq!(output.status.code(), Some(0), "{:#?}", progress.seen);
    assert_eq!(
        stdout(&output),
        format!("retried 1 failed unit of {failing} (same inputs and parameters)\n")
    );
    let last = format!("pipeline {failing} succeeded");
    assert_eq!(progress.seen.last(), Some(&last), "{:#?}", progress.seen);

    // A re-run: the new id alone on stdout, then followed to its end.
    let args = [
        "--master",
        &master.url,
        "rerun",
        &failing,
        "--wait",
        "--poll-ms",
        "10",
    ];
    let mut child = tmctl_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tmctl starts");
    let mut progress = Stderr::new(child.stderr.take().unwrap());
    progress.until("pending  extract 0/2").await;
    for lease in hand.lease(2).await {
        hand.fail(&lease, "exit status 9").await;
    }
    // Three attempts a unit: two more each.
    for _ in 0..4 {
        let lease = hand.lease(1).await.remove(0);
        hand.fail(&lease, "exit status 9").await;
    }
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("tmctl exits in time")
        .unwrap();
    progress.rest().await;
    assert_eq!(output.status.code(), Some(1), "{:#?}", progress.seen);
    let new_id = printed_id(&output);
    assert!(is_pipeline_id(&new_id, "failing"), "{new_id}");
    assert_ne!(new_id, failing);
    assert!(
        progress.seen.contains(&format!("pipeline {new_id} failed")),
        "{:#?}",
        progress.seen
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_reports_progress_and_exits_zero_on_success() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let hand = HandWorker::new(&client);
    let dir = pipeline_dir("good", 2, SCRIPT_OK, "");
    let file = file_arg(dir.path());
    let args = [
        "--master",
        &master.url,
        "submit",
        &file,
        "--wait",
        "--poll-ms",
        "10",
    ];
    let mut child = tmctl_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tmctl starts");
    let mut progress = Stderr::new(child.stderr.take().unwrap());

    // Each step waits until tmctl has reported the one before.
    progress.until("pending  extract 0/2").await;
    let leases = hand.lease(2).await;
    let id = leases[0].unit.as_ref().unwrap().pipeline_id.clone();
    progress.until("running  extract 0/2").await;
    hand.succeed(&leases[0], &["out"]).await;
    progress.until("running  extract 1/2").await;
    hand.succeed(&leases[1], &["out"]).await;
    progress.until("succeeded  extract 2/2").await;

    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("tmctl exits in time")
        .unwrap();
    progress.rest().await;
    assert_eq!(output.status.code(), Some(0), "{:#?}", progress.seen);
    assert_eq!(printed_id(&output), id);
    // Progress lines are `[  Ns] <line>`, printed only when they change.
    let lines: Vec<&str> = progress
        .seen
        .iter()
        .map(|line| {
            line.split_once("] ")
                .map_or(line.as_str(), |(_, rest)| rest)
        })
        .collect();
    let last = format!("pipeline {id} succeeded");
    assert_eq!(
        lines,
        [
            "1 group, 2 units in extract",
            "pending  extract 0/2",
            "running  extract 0/2",
            "running  extract 1/2",
            "succeeded  extract 2/2",
            &last,
        ]
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_with_a_worker_succeeds_and_outputs_are_listed() {
    let master = TestMaster::with_worker().await;
    let dir = pipeline_dir("good", 2, SCRIPT_OK, "");
    let file = file_arg(dir.path());
    let args = [
        "--master",
        &master.url,
        "submit",
        &file,
        "--wait",
        "--poll-ms",
        "10",
    ];
    let output = tmctl(&args).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let id = printed_id(&output);
    assert!(is_pipeline_id(&id, "good"), "{id}");
    let text = stderr(&output);
    assert!(text.contains("succeeded  extract 2/2"), "{text}");
    assert!(text.contains(&format!("pipeline {id} succeeded")), "{text}");

    let output = tmctl(&["--master", &master.url, "outputs", &id, "-g", "extract"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let paths = stdout(&output);
    let paths: Vec<&str> = paths.lines().collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    for path in paths {
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hi\n", "{path}");
    }

    let status = json(&tmctl(&["--master", &master.url, "status", &id, "--json"]).await);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["groups"][0]["committed"], 2);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_exits_one_and_lists_failed_units() {
    let master = TestMaster::with_worker().await;
    // Unit 1 fails; with one attempt per unit it fails at once.
    let script =
        r#"if [ "$TM_UNIT" = 1 ]; then echo boom >&2; exit 3; fi; echo hi > "$TM_OUTPUT_DIR/out""#;
    let dir = pipeline_dir("failing", 2, script, "max_attempts = 1\n");
    let file = file_arg(dir.path());
    let output = tmctl(&["--master", &master.url, "submit", &file, "--wait"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let id = printed_id(&output);
    assert!(is_pipeline_id(&id, "failing"), "{id}");
    let text = stderr(&output);
    assert!(text.contains(&format!("pipeline {id} failed")), "{text}");
    assert!(
        text.contains("failed units:\n  extract/1: failed after 1 attempt\n    inputs: "),
        "{text}"
    );
    // The attempt names the real worker that ran it and how long it ran.
    assert!(
        text.contains("in-1.txt\n    attempt 1 (worker client-tests, "),
        "{text}"
    );
    assert!(!text.contains("duration unknown"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("boom"), "{text}");
    assert!(
        text.contains(&format!(
            "    logs: tmctl logs {id} --group extract --unit 1 --attempt 1\n"
        )),
        "{text}"
    );
    assert!(!text.contains("extract/0"), "{text}");

    let status = json(&tmctl(&["--master", &master.url, "status", &id, "--json"]).await);
    assert_eq!(status["state"], "failed");
    assert_eq!(status["groups"][0]["committed"], 1);
    assert_eq!(status["groups"][0]["failed"], 1);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_submit_shows_server_message_and_code() {
    let master = TestMaster::start().await;
    let unknown_after = "[[groups]]\nname = \"extract\"\ncommand = [\"true\"]\ninputs = [\"*.txt\"]\n\
        [[groups]]\nname = \"aggregate\"\ncommand = [\"true\"]\nafter = [\"missing-stage\"]\n";
    let slash = "[[groups]]\nname = \"ext/ract\"\ncommand = [\"true\"]\ninputs = [\"*.txt\"]\n";
    for (groups, names) in [
        (unknown_after, &["aggregate", "missing-stage"][..]),
        (slash, &["ext/ract"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "hello").unwrap();
        let toml = format!("name = \"refused\"\n{groups}");
        std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
        let output = tmctl(&["--master", &master.url, "submit", &file_arg(dir.path())]).await;
        assert_eq!(output.status.code(), Some(2));
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
        let text = stderr(&output);
        let line = text.trim_end();
        assert!(!line.contains('\n'), "one line: {text}");
        assert!(line.starts_with("error: "), "{text}");
        assert!(line.ends_with(" (INVALID_ARGUMENT)"), "{text}");
        for name in names {
            assert!(line.contains(name), "{text} does not name {name}");
        }
    }
    // A refused pipeline leaves nothing behind.
    let all = json(&tmctl(&["--master", &master.url, "status", "--json"]).await);
    assert_eq!(all, serde_json::json!([]));
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_of_one_pipeline() {
    let master = TestMaster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let failing = finish_failing(&master.client().await, dir.path()).await;
    let output = tmctl(&["--master", &master.url, "status", &failing, "--json"]).await;
    let json = json(&output);
    assert_eq!(json["id"], failing.as_str());
    assert_eq!(json["name"], "failing");
    assert_eq!(json["state"], "failed");
    assert_eq!(json["params"]["ds"], "2026-11-21");
    assert_eq!(json["groups"][0]["name"], "extract");
    assert_eq!(json["groups"][0]["total"], 2);
    assert_eq!(json["groups"][0]["committed"], 1);
    assert_eq!(json["groups"][0]["failed"], 1);
    assert_eq!(json["failed_units"][0]["unit"], 1);
    assert_eq!(json["failed_units"][0]["attempts"], 3);
    assert_eq!(
        json["failed_units"][0]["errors"],
        serde_json::json!(["exit status 1", "exit status 2", "exit status 7"])
    );
    assert_eq!(
        json["failed_units"][0]["error_attempts"],
        serde_json::json!([1, 2, 3])
    );
    // Each attempt's worker, and how long it ran (grant to failure: the
    // hand worker fails at once, so well under the test's bound).
    assert_eq!(
        json["failed_units"][0]["error_workers"],
        serde_json::json!(["hand", "hand", "hand"])
    );
    let durations = json["failed_units"][0]["error_durations_ms"]
        .as_array()
        .unwrap();
    assert_eq!(durations.len(), 3, "{json}");
    assert!(
        durations
            .iter()
            .all(|d| d.as_u64().is_some_and(|ms| ms < 60_000)),
        "{json}"
    );
    let text = stdout(&tmctl(&["--master", &master.url, "status", &failing]).await);
    assert!(
        text.contains("    attempt 3 (worker hand, ") && text.contains("): exit status 7\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "    logs: tmctl logs {failing} --group extract --unit 1 --attempt 3\n"
        )),
        "{text}"
    );
    let input = json["failed_units"][0]["inputs"][0].as_str().unwrap();
    assert!(input.ends_with("/failing-in-1.txt"), "{input}");
    assert_eq!(json["failed_units"][0]["inputs_total"], 1);
    // Retries count failed attempts that were tried again: not the last one.
    assert_eq!(json["retries"], 2);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_all_pipelines_as_json_and_table() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = finish_good(&client, dir.path()).await;
    let failing = finish_failing(&client, dir.path()).await;

    let json = json(&tmctl(&["--master", &master.url, "status", "--json"]).await);
    let rows: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [(good.as_str(), "succeeded"), (failing.as_str(), "failed")]
    );

    let output = tmctl(&["--master", &master.url, "status"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("ID "), "{text}");
    // `good-xxxxxxxx` is three characters shorter than `failing-xxxxxxxx`.
    let good_row = format!("{good}     good     succeeded  2/2\n");
    let failing_row = format!("{failing}  failing  failed     1/2\n");
    assert!(text.contains(&good_row), "{text}");
    assert!(text.contains(&failing_row), "{text}");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_text_of_one_pipeline_shows_failed_units() {
    let master = TestMaster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let failing = finish_failing(&master.client().await, dir.path()).await;
    let output = tmctl(&["--master", &master.url, "status", &failing]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(&format!("pipeline  {failing}")), "{text}");
    assert!(text.contains("state     failed"), "{text}");
    assert!(
        text.contains(
            "extract/1: failed after 3 attempts\n    inputs: \
             ",
        ),
        "{text}"
    );
    // Each attempt with its worker and duration (the hand worker fails
    // each at once: some milliseconds), then where its logs are.
    let attempts: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.ends_with("failing-in-1.txt"))
        .skip(1)
        .take(4)
        .collect();
    assert_eq!(attempts.len(), 4, "{text}");
    for (i, line) in attempts[..3].iter().enumerate() {
        let prefix = format!("    attempt {} (worker hand, ", i + 1);
        let took = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(" ms): exit status "))
            .and_then(|(ms, _)| ms.parse::<u64>().ok());
        assert!(took.is_some_and(|ms| ms < 1_000), "{line}");
    }
    assert_eq!(
        attempts[3],
        format!("    logs: tmctl logs {failing} --group extract --unit 1 --attempt 3")
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pipeline_is_not_found() {
    let master = TestMaster::start().await;
    let output = tmctl(&["--master", &master.url, "status", "nope-00000000"]).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains("nope-00000000"), "{text}");
    assert!(text.contains("(NOT_FOUND)"), "{text}");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_prints_paths_in_unit_order_and_master_comes_from_env() {
    let master = TestMaster::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Unit 1 is committed before unit 0, with files `b` then `a`.
    let (good, paths) = finish_good(&master.client().await, dir.path()).await;
    let mut command = tmctl_command(&["outputs", &good, "--group", "extract"]);
    command.env("TASKMASTER_ADDR", &master.url);
    let output = run(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), paths.join("\n") + "\n");
    let names: Vec<&str> = paths
        .iter()
        .map(|p| p.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "a"]);

    for (id, group) in [(good.as_str(), "nope"), ("nope-00000000", "extract")] {
        let output = tmctl(&["--master", &master.url, "outputs", id, "-g", group]).await;
        assert_eq!(output.status.code(), Some(2));
        assert!(
            stderr(&output).contains("(NOT_FOUND)"),
            "{}",
            stderr(&output)
        );
    }
    master.stop().await;
}
