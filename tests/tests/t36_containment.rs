//! Containment of `exec` tasks, end to end with the real binaries (issue
//! 22, item 4: "tasks are not contained"):
//!
//! - a process a task detached into a session of its own (`setsid`) is
//!   gone when the task's attempt has committed, and when the worker is
//!   SIGKILLed;
//! - committed outputs are read-only: a later task writing into one
//!   through `../` fails with "permission denied", and the data and its
//!   pipeline stay as they were;
//! - a group's `timeout` stops a task, and what it detached, and fails the
//!   attempt saying after how long.
//!
//! The workers run as a worker should, held by file permissions (see
//! `WorkerProcess::start_unprivileged`), also when the tests run as root.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use taskmaster_tests::*;

/// Bound on one pipeline run.
const PIPELINE_WAIT: Duration = Duration::from_secs(60);
/// Bound on waiting for an event outside a pipeline run.
const EVENT_WAIT: Duration = Duration::from_secs(30);
/// Long enough that no lease expires in these runs.
const LEASE_MS: u64 = 30_000;

/// A master and one unprivileged worker, killed on drop.
struct Cluster {
    master: MasterProcess,
    worker: WorkerProcess,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let master = MasterProcess::start(&dir.join("data"), "127.0.0.1:0", LEASE_MS);
        let worker = WorkerProcess::start_unprivileged(&master.url(), 2, dir);
        Cluster { master, worker }
    }

    fn url(&self) -> String {
        self.master.url()
    }

    /// Submits `file` with `--wait`; returns its id and status, after
    /// checking it ended in `state`.
    fn run(&self, file: &Path, state: &str) -> (String, Value) {
        let (id, _) = submit_wait(&self.url(), file, PIPELINE_WAIT);
        let status = status_json(&self.url(), &id);
        assert_eq!(
            status["state"],
            state,
            "{status:#}\nworker log:\n{}",
            self.worker.log_text()
        );
        (id, status)
    }
}

/// The errors of the pipeline's one failed unit.
fn failed_unit_errors(status: &Value) -> Vec<String> {
    let failed = status["failed_units"].as_array().expect("failed_units");
    assert_eq!(failed.len(), 1, "{status:#}");
    failed[0]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().expect("error text").to_string())
        .collect()
}

/// A shell script that starts `sh -c 'sleep 30; touch <side>/marker'` in
/// a session of its own, waits until it has written its pid to
/// `<side>/detached`, then runs `then`.
fn detaching_script(side: &Path, then: &str) -> String {
    let side = side.display();
    format!(
        r#"setsid sh -c 'echo $$ > "{side}/detached.tmp"; mv "{side}/detached.tmp" "{side}/detached"; sleep 30; touch "{side}/marker"' &
while [ ! -e "{side}/detached" ]; do sleep 0.01; done
{then}"#
    )
}

/// A pipeline file with one group running `sh -c script`, plus `extra`
/// lines of the group's table.
fn one_group(path: &Path, name: &str, script: &str, extra: &str) {
    let command = serde_json::to_string(&["sh", "-c", script]).expect("JSON");
    write_file(
        path,
        format!("name = \"{name}\"\n[[groups]]\nname = \"{name}\"\ncommand = {command}\n{extra}\n"),
    );
}

/// The detached process's pid.
fn detached_pid(side: &Path) -> u32 {
    let text = std::fs::read_to_string(side.join("detached")).expect("the detached pid");
    text.trim().parse().expect("a pid")
}

/// True while `pid` runs (a zombie no longer counts).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn t10_a_detached_process_is_gone_when_its_attempt_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    std::fs::create_dir_all(&side).unwrap();
    let cluster = Cluster::start(tmp.path());
    let file = tmp.path().join("job/detach.toml");
    let script = detaching_script(&side, r#"echo done > "$TM_OUTPUT_DIR/out""#);
    one_group(&file, "detach", &script, "");
    cluster.run(&file, "succeeded");

    // Not a moment later: gone before the outputs were committed.
    let pid = detached_pid(&side);
    assert!(
        !running(pid),
        "the detached process {pid} outlived its attempt"
    );
    assert!(!side.join("marker").exists());
}

#[test]
fn t20_committed_outputs_are_read_only_to_later_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(tmp.path());
    let victim = tmp.path().join("job/victim.toml");
    one_group(
        &victim,
        "make",
        r#"mkdir "$TM_OUTPUT_DIR/sub" && printf original > "$TM_OUTPUT_DIR/sub/data""#,
        "",
    );
    let (victim_id, _) = cluster.run(&victim, "succeeded");
    let committed = committed_outputs(&cluster.url(), &victim_id, "make");
    assert_eq!(committed.len(), 1, "{committed:?}");
    let data = Path::new(&committed[0]);
    // <store>/<pipeline>/<group>/<unit>/<attempt>/sub/data, reached from
    // another attempt's output directory, four levels below the store.
    let parts: Vec<_> = data.iter().rev().take(6).collect();
    let relative: std::path::PathBuf = parts.into_iter().rev().collect();
    let through_dot_dot = format!("$TM_OUTPUT_DIR/../../../../{}", relative.display());
    let attempt_dir = data.parent().unwrap().parent().unwrap();

    for (name, script) in [
        ("append", format!(r#"printf evil >> "{through_dot_dot}""#)),
        ("replace", format!(r#"rm -f "{through_dot_dot}""#)),
        (
            "add",
            format!(r#"touch "$(dirname "{through_dot_dot}")/../extra""#),
        ),
    ] {
        let vandal = tmp.path().join(format!("job/{name}.toml"));
        one_group(&vandal, name, &script, "max_attempts = 1");
        let (_, status) = cluster.run(&vandal, "failed");
        let errors = failed_unit_errors(&status);
        assert!(
            errors[0].contains("Permission denied"),
            "{name}: {errors:?}"
        );
    }
    assert_eq!(std::fs::read_to_string(data).unwrap(), "original");
    assert!(!attempt_dir.join("extra").exists());
    assert_eq!(
        status_json(&cluster.url(), &victim_id)["state"],
        "succeeded"
    );
}

#[test]
fn t30_a_timeout_stops_the_task_and_what_it_detached() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    std::fs::create_dir_all(&side).unwrap();
    let cluster = Cluster::start(tmp.path());
    let file = tmp.path().join("job/slow.toml");
    one_group(
        &file,
        "slow",
        &detaching_script(&side, "sleep 30"),
        "timeout = \"1s\"\nmax_attempts = 1",
    );
    let started = Instant::now();
    let (_, status) = cluster.run(&file, "failed");
    let took = started.elapsed();
    assert_eq!(
        failed_unit_errors(&status),
        ["timed out after 1s (the group's timeout); killed `sh` and every process it started"]
    );
    // One second of timeout, plus a submit and a lease: nowhere near 30.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let pid = detached_pid(&side);
    assert!(
        !running(pid),
        "the detached process {pid} outlived its attempt"
    );
}

#[test]
fn t40_a_killed_worker_takes_what_its_task_detached_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    std::fs::create_dir_all(&side).unwrap();
    let cluster = Cluster::start(tmp.path());
    let file = tmp.path().join("job/spin.toml");
    one_group(&file, "spin", &detaching_script(&side, "sleep 30"), "");
    let out = tmctl(&cluster.url(), &["submit", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let pid = wait_until("the detached process to start", EVENT_WAIT, || {
        side.join("detached").exists().then(|| detached_pid(&side))
    });
    assert!(running(pid));
    cluster.worker.signal("KILL");
    wait_until(
        "the detached process to die with the worker",
        EVENT_WAIT,
        || (!running(pid)).then_some(()),
    );
    assert!(!side.join("marker").exists());
}
