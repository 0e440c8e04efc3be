//! Task logs end to end with the real binaries (issue 26): workers keep
//! each attempt's stdout and stderr in the store beside its outputs,
//! capped; `tmctl logs` reads them through the master's `ReadLogs`.
//!
//! - a task printing 10 MB (330,000 lines): its log is capped, says how much was dropped
//!   where, keeps the first and the last lines, and the attempt commits;
//! - a failed attempt's log is still there after the sweep removed its
//!   outputs and another attempt succeeded, by attempt number; unknown
//!   pipelines, groups, units and attempts are NOT_FOUND, named;
//! - `tmctl delete` removes the pipeline's logs from the store;
//! - `tmctl logs --follow` prints a running task's lines before it ends,
//!   and returns once it has; on a unit not started yet, it waits;
//! - on an S3 store (moto; skipped without it) the same: logs of both
//!   attempts read back, a capped stream, deleted with the pipeline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use taskmaster_tests::*;

/// Bound on one pipeline run.
const PIPELINE_WAIT: Duration = Duration::from_secs(60);
/// Short, so the sweep (every lease length) runs often; the tasks here
/// take well under it.
const LEASE_MS: u64 = 3_000;
/// The worker's default cap per stream.
const CAP_BYTES: usize = 1024 * 1024;

struct Cluster {
    master: MasterProcess,
    _worker: WorkerProcess,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let master = MasterProcess::start(&dir.join("master"), "127.0.0.1:0", LEASE_MS);
        let worker = WorkerProcess::start(&master.url(), 2, dir);
        Cluster {
            master,
            _worker: worker,
        }
    }

    fn url(&self) -> String {
        self.master.url()
    }

    /// The unit's `logs` directory in the local store.
    fn logs_dir(&self, id: &str, group: &str, unit: u32) -> PathBuf {
        self.master
            .data_dir
            .join("store")
            .join(id)
            .join(group)
            .join(unit.to_string())
            .join("logs")
    }
}

/// Writes `pipeline.toml` with one exec group `g` running `sh task.sh`.
fn pipeline(dir: &Path, script: &str, group_extra: &str) -> PathBuf {
    write_file(&dir.join("task.sh"), script);
    let file = dir.join("pipeline.toml");
    write_file(
        &file,
        format!(
            "name = \"logs\"\n[[groups]]\nname = \"g\"\ncommand = [\"sh\", \"task.sh\"]\n{group_extra}"
        ),
    );
    file
}

/// `tmctl logs ID -g g -u 0 ARGS...`: (stdout, stderr) of a call that
/// must succeed.
fn logs(url: &str, id: &str, args: &[&str]) -> (Vec<u8>, String) {
    let mut all = vec!["logs", id, "--group", "g", "--unit", "0"];
    all.extend_from_slice(args);
    let out = tmctl_within(url, &all, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "tmctl {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_task_printing_10_mb_is_capped_says_so_and_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let file = pipeline(
        dir.path(),
        "echo 'the first line'\n\
         yes 'a line in the middle of it all' | head -n 330000\n\
         echo 'the last line'\n\
         echo 'a word on stderr' >&2\n\
         echo done > \"$TM_OUTPUT_DIR/out\"\n",
        "",
    );
    let (id, code) = submit_wait(&cluster.url(), &file, PIPELINE_WAIT);
    assert_eq!(code, Some(0), "the attempt must commit");
    assert_eq!(committed_outputs(&cluster.url(), &id, "g").len(), 1);

    let (stdout, stderr) = logs(&cluster.url(), &id, &["--stdout"]);
    assert!(stderr.is_empty(), "{stderr}");
    let text = String::from_utf8(stdout).unwrap();
    assert!(
        text.starts_with("the first line\na line in the middle"),
        "{}",
        &text[..100]
    );
    assert!(text.ends_with("a line in the middle of it all\nthe last line\n"));
    // Half the cap from the head, half from the tail, and the line
    // between them that says what went.
    let total = "the first line\n".len() + 330_000 * 31 + "the last line\n".len();
    let dropped = total - CAP_BYTES;
    let marker = format!(
        "[taskmaster: {dropped} bytes of stdout dropped here; an attempt's log keeps the first \
         524288 and the last 524288 bytes of each stream (taskmaster-worker --log-bytes-max 1048576)]\n"
    );
    assert!(text.contains(&marker), "no marker {marker:?}");
    assert!(
        text.len() <= CAP_BYTES + marker.len() + 1,
        "{} bytes",
        text.len()
    );

    let (stdout, _) = logs(&cluster.url(), &id, &["--stderr"]);
    assert_eq!(stdout, b"", "--stderr writes to tmctl's stderr only");
    let out = tmctl(
        &cluster.url(),
        &["logs", &id, "-g", "g", "-u", "0", "--stderr"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "a word on stderr\n");
}

#[test]
fn a_failed_attempts_log_outlives_its_outputs_and_goes_with_its_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let url = cluster.url();
    let file = pipeline(
        dir.path(),
        "echo \"out of attempt $TM_ATTEMPT\"\n\
         echo \"err of attempt $TM_ATTEMPT\" >&2\n\
         echo partial > \"$TM_OUTPUT_DIR/partial\"\n\
         [ \"$TM_ATTEMPT\" -ge 2 ] || exit 3\n",
        "max_attempts = 2\nretry_delay = \"1s\"\n",
    );
    let (id, code) = submit_wait(&url, &file, PIPELINE_WAIT);
    assert_eq!(code, Some(0));

    // The sweep deletes the failed attempt's outputs; its logs stay.
    let unit_dir = cluster
        .logs_dir(&id, "g", 0)
        .parent()
        .unwrap()
        .to_path_buf();
    wait_until(
        "the failed attempt's outputs are swept",
        PIPELINE_WAIT,
        || {
            let attempts = std::fs::read_dir(&unit_dir)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != "logs")
                .count();
            (attempts == 1).then_some(())
        },
    );
    let (stdout, _) = logs(&url, &id, &["--attempt", "1", "--stdout"]);
    assert_eq!(stdout, b"out of attempt 1\n");
    let out = tmctl(
        &url,
        &["logs", &id, "-g", "g", "-u", "0", "-a", "1", "--stderr"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err of attempt 1\n");
    let (latest, _) = logs(&url, &id, &["--stdout"]);
    assert_eq!(latest, b"out of attempt 2\n");

    // What is not there is named.
    let err = tmctl_err(&url, &["logs", &id, "-g", "g", "-u", "0", "-a", "3"]);
    assert!(
        err.contains("has no logs of attempt 3; attempts with logs: 1, 2 (NOT_FOUND)"),
        "{err}"
    );
    let err = tmctl_err(&url, &["logs", &id, "-g", "nope", "-u", "0"]);
    assert!(err.contains("has no group \"nope\" (NOT_FOUND)"), "{err}");
    let err = tmctl_err(&url, &["logs", &id, "-g", "g", "-u", "7"]);
    assert!(err.contains("has no unit 7 (it has 1)"), "{err}");
    let err = tmctl_err(&url, &["logs", "p-nope", "-g", "g", "-u", "0"]);
    assert!(
        err.contains("no pipeline") && err.contains("NOT_FOUND"),
        "{err}"
    );

    // Deleting the pipeline deletes its logs; committed outputs stay.
    let logs_dir = cluster.logs_dir(&id, "g", 0);
    assert_eq!(std::fs::read_dir(&logs_dir).unwrap().count(), 6);
    tmctl_ok(&url, &["delete", &id]);
    assert!(!logs_dir.exists(), "{} is left", logs_dir.display());
    assert_eq!(std::fs::read_dir(&unit_dir).unwrap().count(), 1);
    let err = tmctl_err(&url, &["logs", &id, "-g", "g", "-u", "0"]);
    assert!(err.contains("NOT_FOUND"), "{err}");
}

#[test]
fn follow_prints_a_running_tasks_lines_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let url = cluster.url();
    let release = dir.path().join("release");
    let file = pipeline(
        dir.path(),
        &format!(
            "echo 'started'\n\
             while [ ! -e '{}' ]; do sleep 0.05; done\n\
             echo 'finished'\n",
            release.display()
        ),
        "",
    );
    let submitted = tmctl_ok(&url, &["submit", file.to_str().unwrap()]);
    let id = submitted.lines().last().unwrap().trim().to_string();
    // The attempt has started once its log has.
    wait_until("the attempt's log", PIPELINE_WAIT, || {
        let out = tmctl(&url, &["logs", &id, "-g", "g", "-u", "0", "--stdout"]);
        (out.status.success() && out.stdout == b"started\n").then_some(())
    });

    let (mut follow, rx) = spawn_follow(&url, &id);
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("a line");
    assert_eq!(first, b"started\n");
    assert!(!release.exists(), "the task still runs");
    assert!(follow.try_wait().unwrap().is_none(), "--follow ended early");

    std::fs::write(&release, "").unwrap();
    let mut rest = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(30)) {
        rest.extend(bytes);
    }
    assert_eq!(rest, b"finished\n");
    let status = wait_until("--follow to end", Duration::from_secs(30), || {
        follow.try_wait().unwrap()
    });
    assert!(status.success());
}

/// The keys under `prefix` in `bucket`'s store.
fn keys_under(
    rt: &tokio::runtime::Runtime,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Vec<String> {
    use futures_util::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let mut keys: Vec<String> = rt
        .block_on(store.list(Some(&prefix)).try_collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect();
    keys.sort();
    keys
}

#[test]
fn on_an_s3_store_logs_are_objects_read_capped_and_deleted_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let moto = match taskmaster_tests::moto::Moto::start(dir.path()) {
        Ok(moto) => moto,
        Err(why) => {
            println!("skipped: no S3 server to test against: {why}");
            return;
        }
    };
    moto.create_bucket("bkt");
    let env = moto.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let master = MasterProcess::start_env(
        &dir.path().join("master"),
        "127.0.0.1:0",
        LEASE_MS,
        &["--store", "s3://bkt/pfx"],
        &env,
    );
    let url = master.url();
    env.push(("TASKMASTER_WORKER_LOG_BYTES_MAX", "1000"));
    let _worker = WorkerProcess::start_env(&url, 2, dir.path(), &env);
    let file = pipeline(
        dir.path(),
        "echo \"out of attempt $TM_ATTEMPT\"\n\
         head -c 5000 /dev/zero | tr '\\0' x >&2\n\
         echo > \"$TM_OUTPUT_DIR/out\"\n\
         [ \"$TM_ATTEMPT\" -ge 2 ] || exit 3\n",
        "max_attempts = 2\nretry_delay = \"1s\"\n",
    );
    let (id, code) = submit_wait(&url, &file, PIPELINE_WAIT);
    assert_eq!(code, Some(0));

    let (first, _) = logs(&url, &id, &["--attempt", "1", "--stdout"]);
    assert_eq!(first, b"out of attempt 1\n");
    let (latest, _) = logs(&url, &id, &["--stdout"]);
    assert_eq!(latest, b"out of attempt 2\n");
    let out = tmctl(&url, &["logs", &id, "-g", "g", "-u", "0", "--stderr"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}\n[taskmaster: 4000 bytes of stderr dropped here",
            "x".repeat(500)
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!("]\n{}", "x".repeat(500))),
        "{stderr}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s3 = moto.bucket("bkt");
    let logs_prefix = format!("pfx/{id}/g/0/logs");
    assert_eq!(keys_under(&rt, &s3, &logs_prefix).len(), 6);
    tmctl_ok(&url, &["delete", &id]);
    assert_eq!(keys_under(&rt, &s3, &logs_prefix), Vec::<String>::new());
    // The committed output stays.
    let unit_keys = keys_under(&rt, &s3, &format!("pfx/{id}/g/0"));
    assert_eq!(unit_keys.len(), 1, "{unit_keys:?}");
    assert!(unit_keys[0].ends_with("/out"), "{unit_keys:?}");
}

/// `tmctl logs ID -g g -u 0 --stdout --follow`, started, and a channel of
/// what it prints as it prints it.
fn spawn_follow(url: &str, id: &str) -> (std::process::Child, mpsc::Receiver<Vec<u8>>) {
    let mut follow = Command::new(bin("tmctl"))
        .args(["--master", url, "logs", id, "-g", "g", "-u", "0"])
        .args(["--stdout", "--follow", "--poll-ms", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (follow, rx)
}

#[test]
fn follow_waits_for_a_unit_that_has_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let url = cluster.url();
    // Nothing is leased until unblocked: the unit stays pending.
    tmctl_ok(&url, &["block"]);
    let file = pipeline(dir.path(), "echo 'at last'\n", "");
    let submitted = tmctl_ok(&url, &["submit", file.to_str().unwrap()]);
    let id = submitted.lines().last().unwrap().trim().to_string();
    let err = tmctl_err(&url, &["logs", &id, "-g", "g", "-u", "0"]);
    assert!(err.contains("no attempt of it has started yet"), "{err}");

    let (mut follow, rx) = spawn_follow(&url, &id);
    std::thread::sleep(Duration::from_millis(500));
    assert!(follow.try_wait().unwrap().is_none(), "--follow gave up");
    tmctl_ok(&url, &["unblock"]);
    let mut printed = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(30)) {
        printed.extend(bytes);
    }
    assert_eq!(printed, b"at last\n");
    let status = wait_until("--follow to end", Duration::from_secs(30), || {
        follow.try_wait().unwrap()
    });
    assert!(status.success());
}
