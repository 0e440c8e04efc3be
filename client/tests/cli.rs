//! Runs the real `tmctl` binary: help, input errors, an unreachable master,
//! and every command against a fake master with canned answers.

mod fake_master;

use std::path::Path;
use std::process::Output;

use fake_master::FakeMaster;

/// Runs tmctl with `args`, ignoring any TASKMASTER_ADDR of the caller.
async fn tmctl(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tmctl"))
        .args(args)
        .env_remove("TASKMASTER_ADDR")
        .output()
        .await
        .expect("tmctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A folder with a valid pipeline file (named `name`) and one input file.
fn pipeline_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "hello").unwrap();
    let toml = format!(
        "name = \"{name}\"\n[params]\nds = \"2026-11-21\"\n[[groups]]\nname = \"extract\"\ncommand = [\"cat\"]\ninputs = [\"*.txt\"]\n"
    );
    std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
    dir
}

fn file_arg(dir: &Path) -> String {
    dir.join("pipeline.toml").to_string_lossy().into_owned()
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
    let dir = pipeline_dir("good");
    let output = tmctl(&["submit", &file_arg(dir.path()), "--param", "oops"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("KEY=VALUE"), "{}", stderr(&output));
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

#[tokio::test]
async fn submit_prints_id_last_and_sends_overridden_params() {
    let master = FakeMaster::start().await;
    let dir = pipeline_dir("good");
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
    assert_eq!(stdout(&output).lines().last(), Some("p-ok"));

    let submitted = master.seen.submitted.lock().unwrap();
    let spec = &submitted[0];
    assert_eq!(spec.params["ds"], "2027-01-01");
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(spec.groups[0].workdir, root.to_str().unwrap());
    assert_eq!(
        spec.groups[0].inputs,
        [root.join("in.txt").to_str().unwrap()]
    );
}

#[tokio::test]
async fn submit_wait_reports_progress_and_exits_zero_on_success() {
    let master = FakeMaster::start().await;
    let dir = pipeline_dir("good");
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
    assert_eq!(stdout(&output).lines().last(), Some("p-ok"));
    let progress = stderr(&output);
    assert!(progress.contains("running  extract 1/1"), "{progress}");
    assert!(progress.contains("succeeded  extract 2/2"), "{progress}");
}

#[tokio::test]
async fn submit_wait_exits_one_and_lists_failed_units() {
    let master = FakeMaster::start().await;
    let dir = pipeline_dir("failing");
    let file = file_arg(dir.path());
    let output = tmctl(&["--master", &master.url, "submit", &file, "--wait"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output).lines().last(), Some("p-bad"));
    let text = stderr(&output);
    assert!(text.contains("pipeline p-bad failed"), "{text}");
    assert!(
        text.contains("extract/1: 3 attempts, last error: exit status 7"),
        "{text}"
    );
}

#[tokio::test]
async fn refused_submit_shows_server_message_and_code() {
    let master = FakeMaster::start().await;
    let dir = pipeline_dir("refused");
    let output = tmctl(&["--master", &master.url, "submit", &file_arg(dir.path())]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output).trim_end(),
        "error: group `g`: unknown `after` group `nope` (INVALID_ARGUMENT)"
    );
}

#[tokio::test]
async fn status_json_of_one_pipeline() {
    let master = FakeMaster::start().await;
    let output = tmctl(&["--master", &master.url, "status", "p-bad", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["id"], "p-bad");
    assert_eq!(json["state"], "failed");
    assert_eq!(json["params"]["ds"], "2026-11-21");
    assert_eq!(json["groups"][0]["total"], 2);
    assert_eq!(json["groups"][0]["failed"], 1);
    assert_eq!(json["failed_units"][0]["attempts"], 3);
    assert_eq!(json["retries"], 2);
}

#[tokio::test]
async fn status_of_all_pipelines_as_json_and_table() {
    let master = FakeMaster::start().await;
    let output = tmctl(&["--master", &master.url, "status", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let states: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "failed"]);

    let output = tmctl(&["--master", &master.url, "status"]).await;
    let text = stdout(&output);
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains("p-bad  failing  failed     1/2"), "{text}");
}

#[tokio::test]
async fn status_text_of_one_pipeline_shows_failed_units() {
    let master = FakeMaster::start().await;
    let output = tmctl(&["--master", &master.url, "status", "p-bad"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("state     failed"), "{text}");
    assert!(text.contains("extract/1: 3 attempts"), "{text}");
}

#[tokio::test]
async fn unknown_pipeline_is_not_found() {
    let master = FakeMaster::start().await;
    let output = tmctl(&["--master", &master.url, "status", "p-nope"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("(NOT_FOUND)"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn outputs_prints_paths_in_unit_order_and_master_comes_from_env() {
    let master = FakeMaster::start().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tmctl"))
        .args(["outputs", "p-ok", "--group", "extract"])
        .env("TASKMASTER_ADDR", &master.url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "/store/0/a\n/store/1/b\n/store/1/a\n");

    let output = tmctl(&["--master", &master.url, "outputs", "p-ok", "-g", "nope"]).await;
    assert_eq!(output.status.code(), Some(2));
}
