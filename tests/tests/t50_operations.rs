//! Operator actions end to end with the real binaries: retry, rerun,
//! clear, cancel, delete and retention, block, config changes, snapshots and rollback, scaling,
//! in-flight limits and the workers list. Each test shows the state before
//! and after the action through `tmctl`, and that the commit checks still
//! hold across it: a lease granted before the action commits only when the
//! action leaves it valid, and only committed output is ever listed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskmaster_client::Client;
use taskmaster_proto::v1::*;
use taskmaster_tests::*;
use tonic::Code;

/// Bound of every wait for a pipeline to get somewhere.
const WAIT: Duration = Duration::from_secs(30);
/// Lease time when hand-held leases must not expire during a test.
const LEASE_MS_LONG: u64 = 60_000;
/// Lease time with a real worker (it renews).
const LEASE_MS: u64 = 5_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes `pipeline.toml` (and `data/<name>` input files) under `dir`.
fn pipeline(dir: &Path, toml: &str, inputs: &[(&str, &str)]) -> PathBuf {
    for (name, text) in inputs {
        write(&dir.join("data").join(name), text);
    }
    let path = dir.join("pipeline.toml");
    write(&path, toml);
    path
}

/// An exec command that copies the unit's inputs to its output `out`.
const COPY: &str = r#"["sh", "-c", "cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]"#;

fn submit(url: &str, pipeline: &Path) -> String {
    let out = tmctl_ok(url, &["submit", pipeline.to_str().unwrap()]);
    out.lines().last().expect("an id line").trim().to_string()
}

fn outputs(url: &str, id: &str, group: &str) -> Vec<String> {
    tmctl_ok(url, &["outputs", id, "--group", group])
        .lines()
        .map(str::to_string)
        .collect()
}

fn contents(paths: &[String]) -> Vec<String> {
    let mut texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
        .collect();
    texts.sort();
    texts
}

fn wait_state(url: &str, id: &str, state: &str) -> Value {
    wait_until(&format!("{id} to be {state}"), WAIT, || {
        let status = status_json(url, id);
        (status["state"] == state).then_some(status)
    })
}

/// Pending, leased, committed, failed, total of one group.
fn counts(status: &Value, group: usize) -> [u64; 5] {
    let g = &status["groups"][group];
    ["pending", "leased", "committed", "failed", "total"].map(|k| g[k].as_u64().unwrap())
}

/// Leases up to `max_units` units by hand, as a worker would.
async fn lease(client: &Client, max_units: u32, wait_ms: u32) -> Vec<Lease> {
    let request = LeaseRequest {
        worker_id: "hand".into(),
        max_units,
        wait_ms,
        compact: false,
        worker_slots: 0,
    };
    let mut leases = client
        .raw()
        .lease(request)
        .await
        .unwrap()
        .into_inner()
        .leases;
    leases.sort_by_key(|l| {
        let unit = l.unit.clone().unwrap();
        (unit.group, unit.unit)
    });
    leases
}

fn unit_of(lease: &Lease) -> (String, u32) {
    let unit = lease.unit.as_ref().unwrap();
    (unit.group.clone(), unit.unit)
}

/// Writes `out` with `text` under the attempt's prefix and commits it;
/// returns the master's answer for the item.
async fn commit(client: &Client, lease: &Lease, text: &str) -> ItemStatus {
    let path = Path::new(&lease.store_root)
        .join(&lease.output_prefix)
        .join("out");
    write(&path, text);
    let item = CommitItem {
        lease: Some(LeaseRef {
            unit: lease.unit.clone(),
            lease_id: lease.lease_id,
            config_version: lease.config_version,
            incarnation: lease.incarnation,
        }),
        result: Some(commit_item::Result::Outputs(Outputs {
            files: vec![OutputFile {
                name: "out".into(),
                size_bytes: text.len() as u64,
            }],
        })),
    };
    let request = CommitRequest {
        server_token: lease.server_token.clone(),
        items: vec![item],
        lease_next: None,
    };
    let mut results = client
        .raw()
        .commit(request)
        .await
        .unwrap()
        .into_inner()
        .results;
    results.remove(0)
}

fn assert_ok(result: &ItemStatus) {
    assert_eq!(result.code, Code::Ok as i32, "{result:?}");
}

fn assert_refused(result: &ItemStatus, code: Code, text: &str) {
    assert_eq!(result.code, code as i32, "{result:?}");
    assert!(result.message.contains(text), "{result:?}");
}

fn assert_refusal(stderr: &str, code: &str, text: &str) {
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&format!("({code})")), "{stderr}");
    assert!(stderr.contains(text), "{stderr}");
}

#[test]
fn t50_retry_after_fixing_the_cause_makes_the_pipeline_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let file = pipeline(
        &job,
        &format!(
            r#"
name = "retries"
[[groups]]
name = "flaky"
command = ["sh", "-c", "if [ ! -f fixed ]; then echo \"no fix yet, attempt $TM_ATTEMPT\" >&2; exit 3; fi; cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/flaky.txt"]
unit_bytes = 0
max_attempts = 2
retry_delay = "0"
[[groups]]
name = "after_flaky"
command = {COPY}
after = ["flaky"]
[[groups]]
name = "steady"
command = {COPY}
inputs = ["data/steady.txt"]
unit_bytes = 0
"#
        ),
        &[("flaky.txt", "flaky input"), ("steady.txt", "steady input")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    let id = submit(&url, &file);

    let failed = wait_state(&url, &id, "failed");
    let units = failed["failed_units"].as_array().unwrap();
    assert_eq!(units.len(), 1, "{failed}");
    assert_eq!(units[0]["group"], "flaky");
    assert_eq!(units[0]["attempts"], 2);
    let errors: Vec<&str> = units[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("no fix yet, attempt 1"), "{errors:?}");
    assert!(errors[1].contains("no fix yet, attempt 2"), "{errors:?}");
    assert_eq!(failed["retries"], 1);
    assert_eq!(counts(&failed, 0), [0, 0, 0, 1, 1]);
    assert_eq!(counts(&failed, 1), [0, 0, 0, 0, 0], "nothing derived");
    assert_eq!(failed["groups"][2]["complete"], true, "independent branch");
    let steady = outputs(&url, &id, "steady");
    assert_eq!(contents(&steady), ["steady input"]);
    assert!(outputs(&url, &id, "flaky").is_empty());

    // Wrong group: refused, nothing changes.
    let stderr = tmctl_err(&url, &["retry", &id, "--group", "nope"]);
    assert_refusal(&stderr, "NOT_FOUND", "nope");
    assert_eq!(status_json(&url, &id)["state"], "failed");

    write(&job.join("fixed"), "");
    let out = tmctl_ok(&url, &["retry", &id]);
    assert!(out.contains("retried 1 failed unit of"), "{out}");
    let done = wait_state(&url, &id, "succeeded");
    assert!(done["failed_units"].as_array().unwrap().is_empty());
    assert_eq!(counts(&done, 0), [0, 0, 1, 0, 1]);
    let flaky = outputs(&url, &id, "flaky");
    assert_eq!(
        contents(&flaky),
        ["flaky input"],
        "one output, the fixed run's"
    );
    assert_eq!(
        contents(&outputs(&url, &id, "after_flaky")),
        ["flaky input"]
    );
    assert_eq!(
        outputs(&url, &id, "steady"),
        steady,
        "untouched by the retry"
    );

    let stderr = tmctl_err(&url, &["retry", &id]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "no failed unit");
}

#[test]
fn t51_rerun_starts_a_new_run_with_the_same_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"again\"\n[params]\nds = \"2026-11-21\"\n[[groups]]\nname = \"copy\"\n\
             command = {COPY}\ninputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    let id = submit(&url, &file);

    let stderr = tmctl_err(&url, &["rerun", &id]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "still running");
    assert_eq!(
        tmctl_ok(&url, &["status", "--json"])
            .matches("\"id\"")
            .count(),
        1
    );

    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    let first = wait_state(&url, &id, "succeeded");
    assert_eq!(first["rerun_of"], Value::Null);
    let old = outputs(&url, &id, "copy");

    let out = tmctl_ok(&url, &["rerun", &id]);
    let new_id = out.lines().last().unwrap().to_string();
    assert!(
        !new_id.is_empty() && new_id != id && !new_id.contains(' '),
        "{out:?}"
    );
    let second = wait_state(&url, &new_id, "succeeded");
    assert_eq!(second["rerun_of"], id.as_str());
    assert_eq!(second["params"], first["params"]);
    assert_eq!(counts(&second, 0), counts(&first, 0));
    let detail = tmctl_ok(&url, &["status", &new_id]);
    assert!(detail.contains(&format!("rerun of  {id}\n")), "{detail}");

    // A re-run with a parameter changed; a name the pipeline lacks is
    // refused, naming the ones it has.
    let out = tmctl_ok(&url, &["rerun", &id, "--param", "ds=2026-11-22", "--wait"]);
    let third = out.lines().last().unwrap().to_string();
    let third = wait_state(&url, &third, "succeeded");
    assert_eq!(third["params"]["ds"], "2026-11-22");
    let stderr = tmctl_err(&url, &["rerun", &id, "--param", "dss=x"]);
    assert!(stderr.contains("ds"), "{stderr}");

    let new = outputs(&url, &new_id, "copy");
    assert_eq!(contents(&new), ["alpha", "beta"]);
    assert!(
        new.iter().all(|p| p.contains(&format!("/{new_id}/copy/"))),
        "{new:?}"
    );
    assert_eq!(
        outputs(&url, &id, "copy"),
        old,
        "the first run keeps its outputs"
    );
}

#[test]
fn t52_clear_downstream_runs_both_groups_again_under_new_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"clear\"\n[[groups]]\nname = \"first\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n\
             [[groups]]\nname = \"second\"\ncommand = {COPY}\nafter = [\"first\"]\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    let id = submit(&url, &file);
    wait_state(&url, &id, "succeeded");
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let lease_ids = |group: &str| -> Vec<u64> {
        let units = rt.block_on(client.outputs(&id, group)).unwrap();
        units.iter().map(|u| u.lease_id).collect()
    };
    let old_leases: Vec<u64> = [lease_ids("first"), lease_ids("second")].concat();
    assert_eq!(old_leases.len(), 4);

    let stderr = tmctl_err(&url, &["clear", &id, "--group", "first"]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "downstream");
    assert_eq!(
        status_json(&url, &id)["state"],
        "succeeded",
        "refused: no change"
    );

    // Blocked, so the reset state can be seen before the worker reruns it.
    tmctl_ok(&url, &["block", "--pipeline", &id]);
    let out = tmctl_ok(&url, &["clear", &id, "--group", "first", "--downstream"]);
    assert!(
        out.contains("2 units reset to run again, 2 units dropped downstream"),
        "{out}"
    );
    let cleared = status_json(&url, &id);
    assert_eq!(cleared["state"], "running");
    assert_eq!(counts(&cleared, 0), [2, 0, 0, 0, 2]);
    assert_eq!(counts(&cleared, 1), [0, 0, 0, 0, 0]);
    assert!(outputs(&url, &id, "first").is_empty());
    assert!(outputs(&url, &id, "second").is_empty());

    tmctl_ok(&url, &["unblock", "--pipeline", &id]);
    let done = wait_state(&url, &id, "succeeded");
    assert_eq!(counts(&done, 0), [0, 0, 2, 0, 2]);
    assert_eq!(
        counts(&done, 1),
        [0, 0, 2, 0, 2],
        "re-derived once, not doubled"
    );
    let new_leases: Vec<u64> = [lease_ids("first"), lease_ids("second")].concat();
    assert_eq!(new_leases.len(), 4);
    assert!(
        new_leases.iter().all(|l| !old_leases.contains(l)),
        "old {old_leases:?}, new {new_leases:?}"
    );
    for group in ["first", "second"] {
        let paths = outputs(&url, &id, group);
        assert_eq!(contents(&paths), ["alpha", "beta"], "{group}");
        for (path, lease_id) in paths.iter().zip(lease_ids(group)) {
            assert!(path.contains(&format!("/{lease_id}-")), "{path}");
        }
    }
}

#[test]
fn t53_cancel_refuses_commits_of_leases_already_out() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"cancel\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let held = rt.block_on(lease(&client, 1, 0));
    assert_eq!(held.len(), 1);
    let before = status_json(&url, &id);
    assert_eq!(before["state"], "running");
    assert_eq!(counts(&before, 0), [1, 1, 0, 0, 2]);

    let out = tmctl_ok(&url, &["cancel", &id]);
    assert_eq!(out, format!("cancelled {id}\n"));
    let after = status_json(&url, &id);
    assert_eq!(after["state"], "cancelled");
    assert_eq!(counts(&after, 0)[1], 0, "no lease left out");

    let late = rt.block_on(commit(&client, &held[0], "too late"));
    assert_refused(&late, Code::Aborted, "lease lost");
    assert!(late.message.contains("cancelled"), "{late:?}");
    assert!(
        outputs(&url, &id, "g").is_empty(),
        "its output never appears"
    );
    assert!(
        rt.block_on(lease(&client, 2, 100)).is_empty(),
        "nothing leased"
    );

    let stderr = tmctl_err(&url, &["cancel", &id]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "nothing to cancel");
    let stderr = tmctl_err(&url, &["cancel", "no-such-pipeline"]);
    assert_refusal(&stderr, "NOT_FOUND", "no-such-pipeline");
    assert_eq!(status_json(&url, &id)["state"], "cancelled");
}

#[test]
fn t54_block_and_unblock_the_master_and_one_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = |name: &str| {
        format!(
            "name = \"{name}\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        )
    };
    let inputs = [("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")];
    let file = pipeline(&tmp.path().join("job"), &toml("blocks"), &inputs);
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let first = rt.block_on(lease(&client, 1, 0));
    assert_eq!(first.len(), 1);
    assert!(tmctl_ok(&url, &["status"]).contains("master: not blocked, 1 lease in flight"));

    // The whole master.
    assert_eq!(
        tmctl_ok(&url, &["block"]),
        "blocked leasing for the whole master\n"
    );
    let table = tmctl_ok(&url, &["status"]);
    assert!(table.contains("master: BLOCKED"), "{table}");
    let detail = tmctl_ok(&url, &["status", &id]);
    assert!(detail.contains("master    BLOCKED"), "{detail}");
    assert!(rt.block_on(client.master_status()).unwrap().blocked);
    assert!(rt.block_on(lease(&client, 2, 200)).is_empty(), "blocked");
    assert_ok(&rt.block_on(commit(&client, &first[0], "alpha")));
    let stderr = tmctl_err(&url, &["block"]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "already blocked");

    // A long-poll waiting while blocked gets a unit as soon as it unblocks.
    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            let client = rt.block_on(Client::connect(&url)).unwrap();
            let request = LeaseRequest {
                worker_id: "long-poll".into(),
                max_units: 1,
                wait_ms: 20_000,
                compact: false,
                worker_slots: 0,
            };
            let started = Instant::now();
            let leases = rt
                .block_on(client.raw().lease(request))
                .unwrap()
                .into_inner()
                .leases;
            (leases, started.elapsed())
        })
    };
    wait_until("the long-poll to reach the master", WAIT, || {
        tmctl_ok(&url, &["workers"])
            .contains("long-poll")
            .then_some(())
    });
    assert_eq!(
        tmctl_ok(&url, &["unblock"]),
        "unblocked leasing for the whole master\n"
    );
    let (second, waited) = waiting.join().unwrap();
    assert_eq!(second.len(), 1, "leases flow again");
    assert!(
        waited < Duration::from_secs(15),
        "woken, not timed out: {waited:?}"
    );
    let stderr = tmctl_err(&url, &["unblock"]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "not blocked");
    assert!(tmctl_ok(&url, &["status"]).contains("master: not blocked"));

    // One pipeline: the others still get leases.
    assert_eq!(status_json(&url, &id)["blocked"], false);
    tmctl_ok(&url, &["block", "--pipeline", &id]);
    let blocked = status_json(&url, &id);
    assert_eq!(blocked["blocked"], true);
    assert!(tmctl_ok(&url, &["status"]).contains("running (blocked)"));
    assert!(tmctl_ok(&url, &["status", &id]).contains("blocked   yes"));
    assert!(
        rt.block_on(lease(&client, 1, 200)).is_empty(),
        "pipeline blocked"
    );
    let other_file = pipeline(&tmp.path().join("other"), &toml("other"), &inputs[..1]);
    let other = submit(&url, &other_file);
    let other_lease = rt.block_on(lease(&client, 2, 0));
    assert_eq!(other_lease.len(), 1);
    assert_eq!(other_lease[0].unit.as_ref().unwrap().pipeline_id, other);
    assert_ok(&rt.block_on(commit(&client, &second[0], "beta")));
    assert_eq!(counts(&status_json(&url, &id), 0), [1, 0, 2, 0, 3]);

    tmctl_ok(&url, &["unblock", "--pipeline", &id]);
    assert_eq!(status_json(&url, &id)["blocked"], false);
    let third = rt.block_on(lease(&client, 1, 0));
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].unit.as_ref().unwrap().pipeline_id, id);
    let stderr = tmctl_err(&url, &["unblock", "--pipeline", &id]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "not blocked");
    let stderr = tmctl_err(&url, &["block", "--pipeline", "no-such-pipeline"]);
    assert_refusal(&stderr, "NOT_FOUND", "no-such-pipeline");

    assert_ok(&rt.block_on(commit(&client, &third[0], "gamma")));
    assert_eq!(status_json(&url, &id)["state"], "succeeded");
    assert_eq!(
        contents(&outputs(&url, &id, "g")),
        ["alpha", "beta", "gamma"]
    );
}

#[test]
fn t55_config_change_refuses_old_leases_and_runs_the_new_command() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        r#"
name = "config"
[[groups]]
name = "g"
command = ["sh", "-c", "echo old > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/a.txt"]
unit_bytes = 0
"#,
        &[("a.txt", "alpha")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let old = rt.block_on(lease(&client, 1, 0));
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].config_version, 1);
    assert_eq!(status_json(&url, &id)["groups"][0]["config_version"], 1);

    let stderr = tmctl_err(&url, &["config", &id, "--group", "g", "timeout=5s"]);
    assert!(
        stderr.contains(
            "unknown config key `timeout`; valid keys: command, env.NAME, config.KEY, max_attempts, \
             retry_delay, max_in_flight"
        ),
        "{stderr}"
    );
    let command = r#"command=["sh", "-c", "echo \"$GREETING\" > \"$TM_OUTPUT_DIR/out\""]"#;
    let out = tmctl_ok(
        &url,
        &["config", &id, "--group", "g", command, "env.GREETING=new"],
    );
    assert!(out.contains("is at config version 2;"), "{out}");
    assert!(out.contains("1 unit leased under the old config"), "{out}");
    let changed = status_json(&url, &id);
    assert_eq!(changed["groups"][0]["config_version"], 2);
    assert_eq!(counts(&changed, 0), [1, 0, 0, 0, 1], "the unit runs again");

    let stale = rt.block_on(commit(&client, &old[0], "old"));
    assert_refused(&stale, Code::FailedPrecondition, "stale config version");
    assert!(outputs(&url, &id, "g").is_empty());

    let _worker = WorkerProcess::start(&url, 1, tmp.path());
    wait_state(&url, &id, "succeeded");
    let units = rt.block_on(client.outputs(&id, "g")).unwrap();
    assert_eq!(units.len(), 1);
    assert_ne!(units[0].lease_id, old[0].lease_id);
    assert_eq!(contents(&units[0].paths), ["new"], "ran the new command");
}

#[test]
fn t56_rollback_restores_a_snapshot_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"rollback\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n\
             [[groups]]\nname = \"d\"\ncommand = {COPY}\nafter = [\"g\"]\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")],
    );
    let data_dir = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut master = MasterProcess::start(&data_dir, &listen, LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();

    let a = rt.block_on(lease(&client, 1, 0));
    assert_eq!(unit_of(&a[0]), ("g".to_string(), 0));
    assert_ok(&rt.block_on(commit(&client, &a[0], "alpha")));
    let kept = outputs(&url, &id, "g");
    assert!(tmctl_ok(&url, &["status"]).contains(", 0 snapshots (0 B)"));

    let out = tmctl_ok(&url, &["snapshot", "--note", "x"]);
    let snapshot = out.split_whitespace().last().unwrap().to_string();
    assert!(snapshot.starts_with("snap-"), "{out}");
    assert!(tmctl_ok(&url, &["status"]).contains(", 1 snapshot ("));
    let at_snapshot = status_json(&url, &id);
    assert_eq!(counts(&at_snapshot, 0), [2, 0, 1, 0, 3]);

    let b = rt.block_on(lease(&client, 1, 0));
    assert_eq!(unit_of(&b[0]), ("g".to_string(), 1));
    assert_ok(&rt.block_on(commit(&client, &b[0], "beta")));
    let c = rt.block_on(lease(&client, 1, 0));
    assert_eq!(unit_of(&c[0]), ("g".to_string(), 2));
    let before = status_json(&url, &id);
    assert_eq!(counts(&before, 0), [0, 1, 2, 0, 3]);
    assert_eq!(counts(&before, 1)[4], 2, "two derived units");

    let out = tmctl_ok(&url, &["rollback", &snapshot, "--yes"]);
    assert!(
        out.contains(&format!("rolled back to {snapshot}; 1 lease out")),
        "{out}"
    );
    let after = status_json(&url, &id);
    assert_eq!(counts(&after, 0), [2, 0, 1, 0, 3], "b is pending again");
    assert_eq!(
        counts(&after, 1),
        [1, 0, 0, 0, 1],
        "the unit derived from b is gone"
    );
    assert_eq!(outputs(&url, &id, "g"), kept);
    let late = rt.block_on(commit(&client, &c[0], "gamma"));
    assert_refused(&late, Code::FailedPrecondition, "stale config version");
    let repeat = rt.block_on(commit(&client, &b[0], "beta"));
    assert_ne!(
        repeat.code,
        Code::Ok as i32,
        "b's commit was rolled back: {repeat:?}"
    );
    assert_eq!(outputs(&url, &id, "g"), kept, "refused commits never show");

    let listed = tmctl_ok(&url, &["snapshots"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&snapshot))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.ends_with("  x"), "{row}");
    assert!(listed.lines().next().unwrap().starts_with("ID"), "{listed}");
    let stderr = tmctl_err(&url, &["rollback", "snap-999999", "--yes"]);
    assert_refusal(&stderr, "NOT_FOUND", "snap-999999");
    assert_eq!(status_json(&url, &id), after, "refused: no change");

    master.kill();
    let master = MasterProcess::start(&data_dir, &listen, LEASE_MS_LONG);
    assert_eq!(status_json(&url, &id), after, "same state after a restart");
    assert_eq!(outputs(&url, &id, "g"), kept);
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let late = rt.block_on(commit(&client, &c[0], "gamma"));
    assert_ne!(late.code, Code::Ok as i32, "still refused: {late:?}");

    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    let done = wait_until("the pipeline to finish", WAIT, || {
        let status = status_json(&url, &id);
        (status["state"] == "succeeded").then_some(status)
    });
    assert_eq!(counts(&done, 0), [0, 0, 3, 0, 3]);
    let finished = outputs(&url, &id, "g");
    assert_eq!(finished[0], kept[0], "a's commit survived everything");
    assert_eq!(
        contents(&finished),
        ["alpha", "beta", "gamma"],
        "{}",
        master.log_text()
    );
}

#[test]
fn t57_scale_splits_a_packed_unit_and_every_file_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        r#"
name = "scale"
[[groups]]
name = "packed"
command = ["sh", "-c", "for f in $TM_INPUTS; do basename \"$f\"; done > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/*.txt"]
unit_bytes = 1000000
"#,
        &[("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    tmctl_ok(&url, &["block"]);
    let _worker = WorkerProcess::start(&url, 3, tmp.path());
    let id = submit(&url, &file);
    assert_eq!(
        counts(&status_json(&url, &id), 0),
        [1, 0, 0, 0, 1],
        "one packed unit"
    );

    let out = tmctl_ok(&url, &["scale", &id, "--group", "packed", "--split", "3"]);
    assert_eq!(out, "split 1 unit of group packed into 3 units\n");
    assert_eq!(counts(&status_json(&url, &id), 0), [3, 0, 0, 0, 3]);
    let stderr = tmctl_err(&url, &["scale", &id, "--group", "packed", "--split", "3"]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "no pending unit");

    tmctl_ok(&url, &["unblock"]);
    let done = wait_state(&url, &id, "succeeded");
    assert_eq!(counts(&done, 0), [0, 0, 3, 0, 3]);
    let paths = outputs(&url, &id, "packed");
    assert_eq!(paths.len(), 3);
    let mut names: Vec<String> = paths
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt", "c.txt"], "each file once");
}

#[test]
fn t58_in_flight_limits_of_a_group_and_of_the_master() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"limited\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\nmax_in_flight = 1\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let one = rt.block_on(lease(&client, 3, 0));
    assert_eq!(one.len(), 1, "max_in_flight = 1");
    assert!(rt.block_on(lease(&client, 3, 100)).is_empty());
    assert_ok(&rt.block_on(commit(&client, &one[0], "alpha")));
    let next = rt.block_on(lease(&client, 3, 0));
    assert_eq!(next.len(), 1, "the next unit once the first committed");
    assert_eq!(counts(&status_json(&url, &id), 0), [1, 1, 1, 0, 3]);
    drop(master);

    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"wide\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")],
    );
    let data_dir = tmp.path().join("data");
    let master = MasterProcess::start_with(
        &data_dir,
        "127.0.0.1:0",
        LEASE_MS_LONG,
        &["--max-in-flight", "2"],
    );
    let url = master.url();
    let id = submit(&url, &file);
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let two = rt.block_on(lease(&client, 3, 0));
    assert_eq!(two.len(), 2, "--max-in-flight 2");
    assert!(tmctl_ok(&url, &["status"]).contains("master: not blocked, 2/2 leases in flight"));
    assert_ok(&rt.block_on(commit(&client, &two[0], "x")));
    assert_eq!(rt.block_on(lease(&client, 3, 0)).len(), 1);
    assert_eq!(counts(&status_json(&url, &id), 0), [0, 2, 1, 0, 3]);
}

/// The cells of a `tmctl workers` row: WORKER, ALIVE, SLOTS, BUSY, then
/// SEEN (two words: `20ms ago`) and LEASES.
fn worker_cells(row: &str) -> Vec<&str> {
    row.split_whitespace().collect()
}

#[test]
fn t59_workers_lists_a_live_worker_its_slots_and_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        // Holds its lease until the test creates `release` (30 s at most).
        r#"
name = "hold"
[[groups]]
name = "hold"
command = ["sh", "-c", "i=0; while [ ! -f release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo done > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/a.txt"]
unit_bytes = 0
"#,
        &[("a.txt", "alpha")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    assert_eq!(
        tmctl_ok(&url, &["workers"]),
        "WORKER  ALIVE  SLOTS  BUSY  SEEN  LEASES\n"
    );
    let worker = WorkerProcess::start(&url, 3, tmp.path());
    let tag = format!("-{}-", worker.pid());
    let row = wait_until("the worker to show", WAIT, || {
        let table = tmctl_ok(&url, &["workers"]);
        table.lines().find(|l| l.contains(&tag)).map(str::to_string)
    });
    let cells = worker_cells(&row);
    assert_eq!(cells[1], "yes", "alive: {row}");
    // Its slots as it says them (`?` from a master that does not yet pass
    // `LeaseRequest.worker_slots` on to its core); never what it last
    // asked for.
    assert_eq!(cells[2], "3", "slots: {row}");
    assert_eq!(cells[3], "0", "busy: {row}");
    assert_eq!(cells.last(), Some(&"-"), "no lease yet: {row}");

    let id = submit(&url, &file);
    let row = wait_until("the worker's lease to show", WAIT, || {
        let table = tmctl_ok(&url, &["workers"]);
        table
            .lines()
            .find(|l| l.contains(&tag) && l.contains(&format!("{id}/hold/0#")))
            .map(str::to_string)
    });
    let cells = worker_cells(&row);
    assert_eq!((cells[1], cells[3]), ("yes", "1"), "alive, one unit: {row}");
    // Asking for its 2 free slots did not make them its slots.
    assert_eq!(cells[2], "3", "slots: {row}");
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let workers = rt.block_on(client.workers()).unwrap();
    let lease_id = workers[0].leases[0].lease_id;
    assert!(row.ends_with(&format!("{id}/hold/0#{lease_id}")), "{row}");
    assert!(tmctl_ok(&url, &["status"]).contains("1 lease in flight"));

    write(&tmp.path().join("job/release"), "");
    wait_state(&url, &id, "succeeded");
    let units = rt.block_on(client.outputs(&id, "hold")).unwrap();
    assert_eq!(
        units[0].lease_id, lease_id,
        "committed under the listed lease"
    );
}

#[test]
fn t59_a_killed_worker_is_listed_as_not_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        r#"
name = "hold"
[[groups]]
name = "hold"
command = ["sh", "-c", "i=0; while [ ! -f release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo done > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/a.txt"]
unit_bytes = 0
"#,
        &[("a.txt", "alpha")],
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    // One slot, busy: it calls only to renew, three times a lease time.
    let worker = WorkerProcess::start(&url, 1, tmp.path());
    let tag = format!("-{}-", worker.pid());
    let id = submit(&url, &file);
    wait_until("the worker's lease to show", WAIT, || {
        let table = tmctl_ok(&url, &["workers"]);
        table
            .lines()
            .find(|l| l.contains(&tag) && l.contains(&format!("{id}/hold/0#")))
            .map(str::to_string)
    });
    worker.signal("KILL");
    let killed = Instant::now();
    // Dead once silent for a lease time (5 s) and 5 s; still listed.
    let row = wait_until("the killed worker to show as not alive", WAIT, || {
        let table = tmctl_ok(&url, &["workers"]);
        table
            .lines()
            .find(|l| l.contains(&tag) && worker_cells(l)[1] == "no")
            .map(str::to_string)
    });
    assert!(
        killed.elapsed() >= Duration::from_millis(LEASE_MS),
        "not before a lease time: {row}"
    );
    write(&tmp.path().join("job/release"), "");
}

/// The ids `tmctl status --json` lists.
fn listed_ids(url: &str) -> Vec<String> {
    let all: Value = serde_json::from_str(&tmctl_ok(url, &["status", "--json"])).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn t60_delete_forgets_a_finished_pipeline_and_keeps_its_committed_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = pipeline(
        &tmp.path().join("job"),
        &format!(
            "name = \"del\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        ),
        &[("a.txt", "alpha"), ("b.txt", "beta")],
    );
    let data = tmp.path().join("data");
    let mut master = MasterProcess::start(&data, "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    let id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let held = rt.block_on(lease(&client, 2, 0));
    assert_ok(&rt.block_on(commit(&client, &held[0], "alpha")));
    // An attempt that wrote its output, then gave its unit back.
    let given_back = Path::new(&held[1].store_root).join(&held[1].output_prefix);
    write(&given_back.join("out"), "half done");
    let release = ReleaseRequest {
        server_token: held[1].server_token.clone(),
        leases: vec![LeaseRef {
            unit: held[1].unit.clone(),
            lease_id: held[1].lease_id,
            config_version: held[1].config_version,
            incarnation: held[1].incarnation,
        }],
    };
    rt.block_on(client.raw().release(release)).unwrap();
    let stderr = tmctl_err(&url, &["delete", &id]);
    assert_refusal(&stderr, "FAILED_PRECONDITION", "has not finished");
    assert_eq!(
        tmctl_ok(&url, &["delete", "--all-finished"]),
        "no finished pipeline to delete\n"
    );
    assert_eq!(status_json(&url, &id)["state"], "running");

    let again = rt.block_on(lease(&client, 1, 0));
    assert_ok(&rt.block_on(commit(&client, &again[0], "beta")));
    wait_state(&url, &id, "succeeded");
    let committed = outputs(&url, &id, "g");
    assert_eq!(contents(&committed), ["alpha", "beta"]);
    assert_eq!(listed_ids(&url), std::slice::from_ref(&id));

    let out = tmctl_ok(&url, &["delete", &id]);
    assert_eq!(
        out,
        format!(
            "deleted {id}; swept 1 output dir of attempts that never committed; \
             committed outputs stay in the store\n"
        )
    );
    assert!(
        !given_back.exists(),
        "the given-back attempt's output is swept"
    );
    assert_eq!(contents(&committed), ["alpha", "beta"], "outputs stay");
    assert_refusal(&tmctl_err(&url, &["status", &id]), "NOT_FOUND", &id);
    assert_refusal(
        &tmctl_err(&url, &["outputs", &id, "--group", "g"]),
        "NOT_FOUND",
        &id,
    );
    assert!(listed_ids(&url).is_empty());
    assert_refusal(&tmctl_err(&url, &["delete", &id]), "NOT_FOUND", &id);

    // Journaled: a restart does not bring it back.
    master.kill();
    let master = MasterProcess::start(&data, "127.0.0.1:0", LEASE_MS_LONG);
    let url = master.url();
    assert_refusal(&tmctl_err(&url, &["status", &id]), "NOT_FOUND", &id);
    assert!(listed_ids(&url).is_empty());

    // --all-finished: whatever has finished, here a cancelled pipeline.
    let cancelled = submit(&url, &file);
    let running = submit(&url, &file);
    tmctl_ok(&url, &["cancel", &cancelled]);
    let out = tmctl_ok(&url, &["delete", "--all-finished"]);
    assert!(out.starts_with(&format!("deleted {cancelled}; ")), "{out}");
    assert_eq!(listed_ids(&url), [running]);
}

#[test]
fn t61_retain_finished_deletes_pipelines_once_finished_that_long() {
    const RETAIN: Duration = Duration::from_secs(5);
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "name = \"kept\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
         inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
    );
    let file = pipeline(&tmp.path().join("job"), &toml, &[("a.txt", "alpha")]);
    let data = tmp.path().join("data");
    let args = ["--retain-finished", "5s"];
    let mut master = MasterProcess::start_with(&data, "127.0.0.1:0", LEASE_MS_LONG, &args);
    let url = master.url();
    let done_id = submit(&url, &file);
    let running_id = submit(&url, &file);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let held = rt.block_on(lease(&client, 2, 0));
    assert_eq!(held.len(), 2);
    let finishing = held
        .iter()
        .find(|l| l.unit.as_ref().unwrap().pipeline_id == done_id)
        .unwrap();
    // Before the commit: the master cannot see it finished any earlier.
    let committed_at = Instant::now();
    assert_ok(&rt.block_on(commit(&client, finishing, "alpha")));
    let finished_ms = wait_until("the finish time to be recorded", WAIT, || {
        status_json(&url, &done_id)["finished_unix_ms"].as_u64()
    });
    assert!(status_json(&url, &running_id)["finished_unix_ms"].is_null());
    assert!(
        tmctl_ok(&url, &["status", &done_id]).contains("state     succeeded (finished 20"),
        "the detail shows when"
    );

    // The finish time is journaled: a master that was down when the
    // retention ran out deletes at its first pass, not a retention later.
    master.kill();
    std::thread::sleep(RETAIN.saturating_sub(committed_at.elapsed()) + Duration::from_millis(500));
    let master = MasterProcess::start_with(&data, "127.0.0.1:0", LEASE_MS_LONG, &args);
    let url = master.url();
    let restarted_at = Instant::now();
    wait_until("the finished pipeline to be deleted", WAIT, || {
        (listed_ids(&url) == [running_id.clone()]).then_some(())
    });
    assert!(
        restarted_at.elapsed() < Duration::from_secs(4),
        "deleted {:?} after the restart: the retention started again",
        restarted_at.elapsed()
    );
    assert!(
        committed_at.elapsed() >= RETAIN,
        "deleted before the retention ran out"
    );
    assert!(finished_ms > 0);
    assert!(
        master
            .log_text()
            .contains("deleted pipelines finished longer than the retention"),
        "{}",
        master.log_text()
    );
    assert_eq!(status_json(&url, &running_id)["state"], "running");

    let bad = std::process::Command::new(bin("taskmaster"))
        .args(["serve", "--retain-finished", "7w", "--data-dir"])
        .arg(tmp.path().join("other"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not a duration like 90s"), "{stderr}");
}

/// Seventy pipelines with large parameters (all within limits) are more
/// than one 16 MiB reply: the lists are paged, so `tmctl status` (and
/// `--json`) still list every one, and `delete --all-finished` deletes
/// them all.
#[test]
fn t62_lists_are_paged_so_many_large_pipelines_can_be_listed_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..70 {
        let spec = PipelineSpec {
            name: "wide".into(),
            params: (0..64)
                .map(|i| (format!("p{i}"), "v".repeat(4000)))
                .collect(),
            groups: vec![GroupSpec {
                name: "g".into(),
                task: "exec".into(),
                command: vec!["true".into()],
                ..Default::default()
            }],
        };
        let id = rt.block_on(client.submit(spec)).unwrap();
        rt.block_on(client.cancel(&id)).unwrap();
        ids.push(id);
    }
    let listed = tmctl_ok(&url, &["status"]);
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{id} not listed");
    }
    let json: Value = serde_json::from_str(&tmctl_ok(&url, &["status", "--json"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(70));
    let out = tmctl_ok(&url, &["delete", "--all-finished"]);
    for id in &ids {
        assert!(out.contains(id.as_str()), "{id} not deleted: {out}");
    }
    assert!(rt.block_on(client.list()).unwrap().is_empty());
}

/// A pipeline of `inputs` units whose submit record alone is about 70
/// bytes an input.
fn wide_spec(name: &str, inputs: usize) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        groups: vec![GroupSpec {
            name: "g".into(),
            task: "exec".into(),
            command: vec!["true".into()],
            inputs: (0..inputs)
                .map(|i| format!("/nowhere/a-fairly-long-directory-name/input-{i:08}.txt"))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `--auto-snapshot-records` and `--auto-snapshot-mib` decide when the
/// journal is compacted: a master told 1 MiB snapshots once its journal
/// passes it, where the default (16 MiB) would not.
#[test]
fn t56_automatic_snapshots_follow_their_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let automatic = |master: &MasterProcess| {
        let client = rt.block_on(Client::connect(&master.url())).unwrap();
        let listed = rt.block_on(client.snapshots()).unwrap();
        listed.iter().filter(|s| s.note == "automatic").count()
    };
    let submit_wide = |master: &MasterProcess| {
        let client = rt.block_on(Client::connect(&master.url())).unwrap();
        // Three submits of 10,000 inputs: about 2 MiB of journal.
        for i in 0..3 {
            rt.block_on(client.submit(wide_spec(&format!("wide{i}"), 10_000)))
                .unwrap();
        }
    };
    let small = MasterProcess::start_with(
        &tmp.path().join("small"),
        "127.0.0.1:0",
        30_000,
        &["--auto-snapshot-records", "2", "--auto-snapshot-mib", "1"],
    );
    submit_wide(&small);
    wait_until("an automatic snapshot", Duration::from_secs(30), || {
        (automatic(&small) > 0).then_some(())
    });
    let default = MasterProcess::start(&tmp.path().join("default"), "127.0.0.1:0", 30_000);
    submit_wide(&default);
    // The compactor looks every 100 ms: give it ten looks.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(automatic(&default), 0, "2 MiB is under the default 16 MiB");

    let refused = std::process::Command::new(bin("taskmaster"))
        .args(["serve", "--auto-snapshot-mib", "0", "--data-dir"])
        .arg(tmp.path().join("refused"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--auto-snapshot-mib"), "{stderr}");
}
