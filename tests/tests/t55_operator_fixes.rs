//! Issue 27's operator traps, end to end with the real binaries: a
//! rollback says what it will undo and asks first, and the outputs of the
//! pipelines it drops are listed, not lost silently; a killed worker's
//! lease does not hold a barrier for a whole lease time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use taskmaster_tests::*;

/// Bound of every wait for a pipeline to get somewhere.
const WAIT: Duration = Duration::from_secs(60);
/// Lease time with a real worker (it renews).
const LEASE_MS: u64 = 5_000;

/// An exec command that copies the unit's inputs to its output `out`.
const COPY: &str = r#"["sh", "-c", "cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]"#;

/// Writes `<dir>/pipeline.toml` for a one-group pipeline `name` that
/// copies two input files, one unit each.
fn copy_pipeline(dir: &Path, name: &str) -> PathBuf {
    for input in ["a.txt", "b.txt"] {
        write_file(&dir.join("data").join(input), input);
    }
    let path = dir.join("pipeline.toml");
    write_file(
        &path,
        format!(
            "name = \"{name}\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n"
        ),
    );
    path
}

fn submit(url: &str, pipeline: &Path) -> String {
    let out = tmctl_ok(url, &["submit", pipeline.to_str().unwrap()]);
    out.lines().last().expect("an id line").trim().to_string()
}

fn state(url: &str, id: &str) -> String {
    status_json(url, id)["state"].as_str().unwrap().to_string()
}

fn wait_state(url: &str, id: &str, wanted: &str) {
    wait_until(&format!("{id} to be {wanted}"), WAIT, || {
        (state(url, id) == wanted).then_some(())
    });
}

/// `tmctl rollback SNAPSHOT` run on a real terminal (a pty, through
/// `script`) that answers `answer`: its output, as the terminal shows it.
fn rollback_on_a_terminal(url: &str, snapshot: &str, answer: &str) -> String {
    let command = format!(
        "{} --master {url} rollback {snapshot}",
        bin("tmctl").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) runs tmctl on a pty");
    use std::io::Write;
    // Typed once the question is up: the pty echoes and passes it on.
    std::thread::sleep(Duration::from_millis(500));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn t55_rollback_shows_what_it_undoes_asks_first_and_lists_dropped_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", LEASE_MS);
    let url = master.url();
    // Pending at the snapshot (no worker yet), succeeded after it.
    let kept = submit(&url, &copy_pipeline(&tmp.path().join("kept"), "kept"));
    let out = tmctl_ok(&url, &["snapshot", "--note", "before"]);
    let snapshot = out.split_whitespace().last().unwrap().to_string();
    let worker = WorkerProcess::start(&url, 2, tmp.path());
    let dropped = submit(&url, &copy_pipeline(&tmp.path().join("late"), "late"));
    wait_state(&url, &kept, "succeeded");
    wait_state(&url, &dropped, "succeeded");
    drop(worker);
    let dropped_outputs = committed_outputs(&url, &dropped, "g");
    assert_eq!(dropped_outputs.len(), 2, "{dropped_outputs:?}");

    // Not a terminal and no --yes: what it would undo, then a refusal.
    let out = tmctl(&url, &["rollback", &snapshot]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("not rolled back") && stderr.contains("pass --yes"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("rollback to {snapshot} (taken ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 pipeline submitted since the snapshot disappear:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{dropped} (late): succeeded now; its 2 committed units (2 files) stay in the store under {dropped}/"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 pipeline go back:"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{kept} (kept): succeeded -> pending, 2 committed units run again"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 committed units in all run again or disappear"),
        "{stdout}"
    );
    assert_eq!(state(&url, &dropped), "succeeded", "refused: no change");
    assert_eq!(state(&url, &kept), "succeeded", "refused: no change");

    // On a terminal it asks; anything but yes changes nothing.
    let shown = rollback_on_a_terminal(&url, &snapshot, "n\n");
    assert!(
        shown.contains(&format!("roll back the whole master to {snapshot}? [y/N]")),
        "{shown}"
    );
    assert!(
        shown.contains("not rolled back; nothing changed"),
        "{shown}"
    );
    assert_eq!(state(&url, &dropped), "succeeded", "declined: no change");

    // --yes: done, and the dropped pipeline's outputs are named, and kept.
    let out = tmctl_ok(&url, &["rollback", &snapshot, "--yes"]);
    assert!(
        out.contains(&format!(
            "rolled back to {snapshot}; 0 leases out can no longer commit"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "dropped {dropped}: 2 committed output files left in the store under {dropped}/"
        )),
        "{out}"
    );
    let gone = tmctl_err(&url, &["status", &dropped]);
    assert!(gone.contains("NOT_FOUND"), "{gone}");
    assert_eq!(
        state(&url, &kept),
        "pending",
        "back to the snapshot's state"
    );
    for path in &dropped_outputs {
        assert!(Path::new(path).exists(), "{path} was kept");
    }
    let after = tmctl_ok(&url, &["rollback", &snapshot, "--yes"]);
    assert!(after.contains("  no pipeline changes\n"), "{after}");
}

/// A lease time no test waits out.
const LEASE_MS_LONG: u64 = 30_000;

#[test]
fn t55_a_killed_workers_unit_runs_again_within_seconds_not_a_lease_time() {
    let tmp = tempfile::tempdir().unwrap();
    // The default grace at this lease time is 12 s (a third of it, and 2 s,
    // so a worker that only lost its connection renews in time); 5 s here.
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        LEASE_MS_LONG,
        &["--lost-worker-grace-ms", "5000"],
    );
    let url = master.url();
    // The first attempt marks that it started and hangs; the next copies.
    let dir = tmp.path().join("job");
    write_file(&dir.join("data/a.txt"), "alpha");
    let pipeline = dir.join("pipeline.toml");
    write_file(
        &pipeline,
        r#"name = "barrier"
[[groups]]
name = "g"
command = ["sh", "-c", "if [ ! -e started ]; then touch started; sleep 600; fi; cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]
inputs = ["data/a.txt"]
[[groups]]
name = "after"
command = ["sh", "-c", "cat $TM_INPUTS > \"$TM_OUTPUT_DIR/out\""]
after = ["g"]
"#,
    );
    let mut doomed = WorkerProcess::start(&url, 1, tmp.path());
    let id = submit(&url, &pipeline);
    wait_until("the first attempt to start", WAIT, || {
        dir.join("started").exists().then_some(())
    });
    let _second = WorkerProcess::start(&url, 1, tmp.path());
    doomed.signal("KILL");
    let killed = Instant::now();
    assert!(doomed.wait_exit(WAIT).is_none(), "killed by a signal");
    wait_state(&url, &id, "succeeded");
    let took = killed.elapsed();
    // The grace (5 s) and a reaper tick (1 s at this lease
    // time), then a lease and two short units; without the grace, 30 s.
    assert!(
        took < Duration::from_secs(15),
        "the barrier waited {took:?} behind the killed worker's lease"
    );
    let status = status_json(&url, &id);
    assert_eq!(
        status["retries"], 1,
        "one attempt lost with the worker: {status}"
    );
    assert!(
        master
            .log_text()
            .contains("a worker's last stream closed: its leases expire after the grace"),
        "{}",
        master.log_text()
    );
}

/// The attempt directories under `<store>/<id>/<group>/`, as
/// `unit/attempt` names, sorted (not the units' `logs`).
fn attempt_dirs(store: &Path, id: &str, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let group_dir = store.join(id).join(group);
    for unit in std::fs::read_dir(&group_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        for attempt in std::fs::read_dir(unit.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = attempt.file_name().to_string_lossy().into_owned();
            if attempt.path().is_dir() && name != "logs" {
                out.push(format!("{}/{name}", unit.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// The unit number in a committed output path `.../<group>/<unit>/<attempt>/out`.
fn unit_of(path: &str) -> String {
    let parts: Vec<&str> = path.rsplit('/').collect();
    parts[2].to_string()
}

#[test]
fn t55_clear_keeps_unit_numbers_and_sweeps_the_superseded_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 2 s leases: the sweep runs every 2 s.
    let master = MasterProcess::start(&data, "127.0.0.1:0", 2_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 2, tmp.path());
    let dir = tmp.path().join("job");
    for input in ["a.txt", "b.txt"] {
        write_file(&dir.join("data").join(input), input);
    }
    let pipeline = dir.join("pipeline.toml");
    write_file(
        &pipeline,
        format!(
            "name = \"clear\"\n[[groups]]\nname = \"g\"\ncommand = {COPY}\n\
             inputs = [\"data/*.txt\"]\nunit_bytes = 0\n\
             [[groups]]\nname = \"each\"\ncommand = {COPY}\nafter = [\"g\"]\n\
             [[groups]]\nname = \"all\"\ncommand = {COPY}\nafter = [\"each\"]\ngather = true\n"
        ),
    );
    let id = submit(&url, &pipeline);
    wait_state(&url, &id, "succeeded");
    let old = [
        committed_outputs(&url, &id, "g"),
        committed_outputs(&url, &id, "each"),
        committed_outputs(&url, &id, "all"),
    ]
    .concat();
    // What each unit of the per-unit group wrote, by unit number.
    let read_each = || {
        let mut by_unit: Vec<(String, String)> = committed_outputs(&url, &id, "each")
            .iter()
            .map(|p| (unit_of(p), std::fs::read_to_string(p).unwrap()))
            .collect();
        by_unit.sort();
        by_unit
    };
    let each_before = read_each();
    let out = tmctl_ok(&url, &["clear", &id, "--group", "g", "--downstream"]);
    assert!(
        out.contains("2 units reset to run again, 3 units dropped downstream"),
        "{out}"
    );
    wait_state(&url, &id, "succeeded");
    let gathered = committed_outputs(&url, &id, "all");
    assert_eq!(gathered.len(), 1);
    assert_eq!(
        unit_of(&gathered[0]),
        "0",
        "the gather is unit 0 again: {gathered:?}"
    );
    // Each unit of the per-unit group reads the same unit of g as before,
    // under its old number, whatever order g committed in this time.
    assert_eq!(read_each(), each_before);
    let new = [
        committed_outputs(&url, &id, "g"),
        committed_outputs(&url, &id, "each"),
        gathered,
    ]
    .concat();
    let units = |paths: &[String]| paths.iter().map(|p| unit_of(p)).collect::<Vec<_>>();
    assert_eq!(units(&new), units(&old), "same unit numbers");
    assert!(new.iter().all(|p| !old.contains(p)), "new attempts");
    let store = data.join("store");
    wait_until("the superseded attempts to be swept", WAIT, || {
        old.iter().all(|p| !Path::new(p).exists()).then_some(())
    });
    assert!(new.iter().all(|p| Path::new(p).exists()), "{new:?}");
    // A glob over the store sees each unit once.
    assert_eq!(attempt_dirs(&store, &id, "g").len(), 2);
    assert_eq!(attempt_dirs(&store, &id, "each").len(), 2);
    assert_eq!(attempt_dirs(&store, &id, "all").len(), 1);
}
