//! End to end with the real binaries on 127.0.0.1: a two-group exec
//! pipeline, the commit checks seen from a worker's side, a commit that
//! leases the next units, a repeated commit after a lost reply, a worker
//! killed mid-command, and a master killed with SIGKILL mid-run.

use std::path::Path;
use std::time::Duration;

use taskmaster_client::Client;
use taskmaster_proto::v1::*;
use taskmaster_tests::*;
use tonic::Code;

const MINUTE: Duration = Duration::from_secs(60);

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

/// A pipeline folder: `inputs` data files, a script run by relative path,
/// and a second group that reads the first one's outputs.
fn word_pipeline(dir: &Path, inputs: &[&str]) -> std::path::PathBuf {
    for (i, text) in inputs.iter().enumerate() {
        write(&dir.join(format!("data/{i}.txt")), text);
    }
    write(
        &dir.join("count.sh"),
        "for f in $TM_INPUTS; do wc -w < \"$f\" | tr -d ' ' > \"$TM_OUTPUT_DIR/words\"; done\n",
    );
    let pipeline = dir.join("pipeline.toml");
    write(
        &pipeline,
        r#"
name = "words"
[params]
ds = "2026-11-21"
[[groups]]
name = "count"
command = ["sh", "count.sh"]
inputs = ["data/*.txt"]
unit_bytes = 0   # one unit per file
[[groups]]
name = "label"
command = ["sh", "-c", "echo \"$TM_PARAM_DS unit=$TM_UNIT words=$(cat $TM_INPUTS)\" > \"$TM_OUTPUT_DIR/label\""]
after = ["count"]
"#,
    );
    pipeline
}

fn submit(url: &str, pipeline: &Path, extra: &[&str]) -> String {
    let mut args = vec!["submit", pipeline.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = tmctl_ok(url, &args);
    out.lines().last().expect("an id line").trim().to_string()
}

fn outputs(url: &str, id: &str, group: &str) -> Vec<String> {
    tmctl_ok(url, &["outputs", id, "--group", group])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn t10_two_exec_groups_finish_with_the_right_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = word_pipeline(&tmp.path().join("job"), &["a b c", "d e", "f"]);
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 5_000);
    let _worker = WorkerProcess::start(&master.url(), 2, tmp.path());
    let id = submit(&master.url(), &pipeline, &["--wait"]);

    let status = status_json(&master.url(), &id);
    assert_eq!(status["state"], "succeeded", "{status}");
    let mut labels: Vec<String> = outputs(&master.url(), &id, "label")
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap().trim().to_string())
        .collect();
    labels.sort_by_key(|l| l.split("words=").nth(1).unwrap().to_string());
    let words: Vec<&str> = labels
        .iter()
        .map(|l| l.split("words=").nth(1).unwrap())
        .collect();
    assert_eq!(words, vec!["1", "2", "3"]);
    assert!(
        labels.iter().all(|l| l.starts_with("2026-11-21 unit=")),
        "{labels:?}"
    );
    assert_eq!(outputs(&master.url(), &id, "count").len(), 3);
}

/// Leases one unit by hand, as a worker would.
async fn lease_one(client: &Client, worker: &str) -> Lease {
    let request = LeaseRequest {
        worker_id: worker.into(),
        max_units: 1,
        wait_ms: 10_000,
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
    assert_eq!(leases.len(), 1);
    leases.remove(0)
}

fn lease_ref(lease: &Lease) -> LeaseRef {
    LeaseRef {
        unit: lease.unit.clone(),
        lease_id: lease.lease_id,
        config_version: lease.config_version,
        incarnation: lease.incarnation,
    }
}

/// Writes `name` under the attempt's unique prefix and builds its commit.
fn write_output(lease: &Lease, name: &str) -> CommitItem {
    let path = Path::new(&lease.store_root)
        .join(&lease.output_prefix)
        .join(name);
    write(&path, "payload");
    let files = vec![OutputFile {
        name: name.into(),
        size_bytes: 7,
    }];
    CommitItem {
        lease: Some(lease_ref(lease)),
        result: Some(commit_item::Result::Outputs(Outputs { files })),
    }
}

async fn commit(
    client: &Client,
    token: &str,
    item: CommitItem,
) -> Result<ItemStatus, tonic::Status> {
    let request = CommitRequest {
        server_token: token.into(),
        items: vec![item],
        lease_next: None,
    };
    Ok(client
        .raw()
        .commit(request)
        .await?
        .into_inner()
        .results
        .remove(0))
}

#[test]
fn t20_refused_commits_never_show_their_output() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = word_pipeline(&tmp.path().join("job"), &["one two"]);
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 400);
    let url = master.url();
    let id = submit(&url, &pipeline, &[]);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let lease = rt.block_on(lease_one(&client, "hand"));
    let item = write_output(&lease, "words");

    let wrong = rt
        .block_on(commit(&client, "another-store", item.clone()))
        .unwrap_err();
    assert_eq!(wrong.code(), Code::PermissionDenied, "{wrong:?}");
    assert!(wrong.message().contains("wrong master"), "{wrong:?}");

    let mut stale = item.clone();
    stale.lease.as_mut().unwrap().config_version += 1;
    let refused = rt
        .block_on(commit(&client, &lease.server_token, stale))
        .unwrap();
    assert_eq!(refused.code, Code::FailedPrecondition as i32, "{refused:?}");
    assert!(
        refused.message.contains("stale config version"),
        "{refused:?}"
    );

    // Stop renewing: the reaper returns the unit, and the late commit is refused.
    wait_until("the lease to expire", MINUTE, || {
        let status = status_json(&url, &id);
        (status["groups"][0]["leased"] == 0 && status["groups"][0]["pending"] == 1).then_some(())
    });
    let late = rt
        .block_on(commit(&client, &lease.server_token, item))
        .unwrap();
    assert_eq!(late.code, Code::Aborted as i32, "{late:?}");
    assert!(late.message.contains("lease lost"), "{late:?}");
    assert!(outputs(&url, &id, "count").is_empty());

    // A fresh lease commits; only its own attempt's file is visible.
    let retry = rt.block_on(lease_one(&client, "hand"));
    assert_eq!(retry.attempt, 2);
    let ok = rt
        .block_on(commit(
            &client,
            &retry.server_token,
            write_output(&retry, "words"),
        ))
        .unwrap();
    assert_eq!(ok.code, 0, "{ok:?}");
    let listed = outputs(&url, &id, "count");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].ends_with(&format!("/{}words", retry.output_prefix)),
        "{listed:?}"
    );
}

async fn commit_and_lease(
    client: &Client,
    token: &str,
    item: CommitItem,
    max_units: u32,
) -> Result<CommitResponse, tonic::Status> {
    let request = CommitRequest {
        server_token: token.into(),
        items: vec![item],
        lease_next: Some(LeaseNext {
            worker_id: "hand".into(),
            max_units,
            compact: false,
        }),
    };
    Ok(client.raw().commit(request).await?.into_inner())
}

#[test]
fn t25_a_commit_leases_the_next_units_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = word_pipeline(&tmp.path().join("job"), &["one", "two two"]);
    let data_dir = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut master = MasterProcess::start(&data_dir, &listen, 30_000);
    let url = master.url();
    let id = submit(&url, &pipeline, &[]);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let first = rt.block_on(lease_one(&client, "hand"));
    let item = write_output(&first, "words");

    let bad = rt
        .block_on(commit_and_lease(
            &client,
            &first.server_token,
            item.clone(),
            0,
        ))
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("max_units"), "{bad:?}");
    assert_eq!(
        status_json(&url, &id)["groups"][0]["committed"],
        0,
        "a bad lease request commits nothing"
    );

    let reply = rt
        .block_on(commit_and_lease(&client, &first.server_token, item, 10))
        .unwrap();
    assert_eq!(reply.results.len(), 1);
    assert_eq!(reply.results[0].code, 0, "{:?}", reply.results[0]);
    // The other `count` unit, and the `label` unit the commit just made.
    let mut leased: Vec<_> = reply
        .leases
        .iter()
        .map(|l| l.unit.as_ref().unwrap().group.clone())
        .collect();
    leased.sort();
    assert_eq!(leased, ["count", "label"]);

    // The leases were journaled before the reply: after SIGKILL they are
    // still held and still commit.
    master.kill();
    let _master = MasterProcess::start(&data_dir, &listen, 30_000);
    let status = status_json(&url, &id);
    assert_eq!(status["groups"][0]["leased"], 1, "{status}");
    assert_eq!(status["groups"][1]["leased"], 1, "{status}");
    let second = reply
        .leases
        .iter()
        .find(|l| l.unit.as_ref().unwrap().group == "count")
        .unwrap();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let done = rt
        .block_on(commit(
            &client,
            &second.server_token,
            write_output(second, "words"),
        ))
        .unwrap();
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(outputs(&url, &id, "count").len(), 2);
}

#[test]
fn t30_a_commit_repeated_after_a_lost_reply_succeeds_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = word_pipeline(&tmp.path().join("job"), &["x"]);
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    let url = master.url();
    let id = submit(&url, &pipeline, &[]);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let lease = rt.block_on(lease_one(&client, "hand"));
    let item = write_output(&lease, "words");
    for _ in 0..3 {
        let result = rt
            .block_on(commit(&client, &lease.server_token, item.clone()))
            .unwrap();
        assert_eq!(result.code, 0, "{result:?}");
    }
    let status = status_json(&url, &id);
    assert_eq!(status["groups"][0]["committed"], 1);
    assert_eq!(
        status["groups"][1]["total"], 1,
        "one downstream unit, not three"
    );
    assert_eq!(outputs(&url, &id, "count").len(), 1);
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
fn t35_a_killed_worker_leaves_no_command_running() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("command.pid");
    let pipeline = tmp.path().join("job/pipeline.toml");
    write(
        &pipeline,
        &format!(
            r#"
name = "spin"
[[groups]]
name = "spin"
command = ["sh", "-c", "echo $$ > {}; while true; do sleep 0.05; done"]
"#,
            pid_file.display()
        ),
    );
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 30_000);
    submit(&master.url(), &pipeline, &[]);
    let worker = WorkerProcess::start(&master.url(), 1, tmp.path());
    let pid: u32 = wait_until("the command to start", MINUTE, || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    assert!(running(pid));
    worker.signal("KILL");
    wait_until("the command to die with its worker", MINUTE, || {
        (!running(pid)).then_some(())
    });
}

#[test]
fn t40_master_killed_mid_run_loses_nothing_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..24).map(|i| "w ".repeat(i + 1)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pipeline = word_pipeline(&tmp.path().join("job"), &refs);
    let data_dir = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut master = MasterProcess::start(&data_dir, &listen, 2_000);
    let url = master.url();
    let id = submit(&url, &pipeline, &[]);
    let _worker = WorkerProcess::start(&url, 3, tmp.path());

    let before = wait_until("some units to commit", MINUTE, || {
        let done = outputs(&url, &id, "count");
        (done.len() >= 4).then_some(done)
    });
    master.kill();
    let master = MasterProcess::start(&data_dir, &listen, 2_000);
    let after_restart = outputs(&url, &id, "count");
    for path in &before {
        assert!(
            after_restart.contains(path),
            "acknowledged output {path} lost after SIGKILL"
        );
    }
    wait_until("the pipeline to finish", 3 * MINUTE, || {
        (status_json(&url, &id)["state"] == "succeeded").then_some(())
    });
    let counts = outputs(&url, &id, "count");
    assert_eq!(counts.len(), 24, "one output per unit");
    for path in &before {
        assert!(counts.contains(path), "{path} replaced after restart");
    }
    let mut words: Vec<u32> = counts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().trim().parse().unwrap())
        .collect();
    words.sort();
    assert_eq!(
        words,
        (1..=24).collect::<Vec<u32>>(),
        "master log:\n{}",
        master.log_text()
    );
}
