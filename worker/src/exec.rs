//! The `exec` task: runs the group's command as a child process.
//!
//! `command[0]` is the program (looked up on `PATH` unless it contains a
//! `/`), `command[1..]` its arguments. The child runs in `workdir` when one
//! is set (see [Working directory](#working-directory)), with stdin from
//! `/dev/null`. It sees the worker's environment, then `TMPDIR` set to the
//! attempt's scratch directory, then the group's `env` (which may set
//! `TMPDIR` otherwise), then these variables, which win over all:
//!
//! | variable | value |
//! | --- | --- |
//! | `TM_INPUTS` | the unit's absolute input paths, one per line: its whole files, then one file per input slice (see below); no newline after the last, so `"$TM_INPUTS"` is a path when there is one input; empty when the list is over 100 KiB |
//! | `TM_INPUTS_FILE` | a file holding the same list, every line ending in a newline (always set; use it when a unit may have thousands of inputs: `while IFS= read -r f; do ...; done < "$TM_INPUTS_FILE"`) |
//! | `TM_PARTITIONS` | when above 0, write outputs only as `part-00000` ... `part-<TM_PARTITIONS-1>` (a downstream shuffle reads them); `0` otherwise |
//! | `TM_OUTPUT_DIR` | the empty directory this attempt writes its outputs to |
//! | `TM_SCRATCH_DIR` | an empty directory of this attempt's own for temporary files (also `TMPDIR`), removed when the attempt ends |
//! | `TM_PIPELINE` | the pipeline id |
//! | `TM_GROUP` | the task group name |
//! | `TM_UNIT` | the unit index within the group |
//! | `TM_ATTEMPT` | the attempt number, 1 for the first |
//! | `TM_PARAM_<NAME>` | each pipeline parameter; see [`param_env_name`] |
//!
//! An exec program only gets whole files, so each of the unit's input
//! slices is first copied to a file of exactly the lines it owns (see
//! [`crate::lines`]) in a scratch directory outside the output directory
//! ([`crate::scratch`]); it is removed when the command has ended.
//!
//! Inputs in a remote store (`s3://...`) arrive here already downloaded,
//! and with a remote store `TM_OUTPUT_DIR` is a local directory uploaded
//! after the command succeeds ([`crate::store`]): the program only ever
//! sees local files.
//!
//! Exit status 0 is success. Any other exit, or death by a signal, fails the
//! attempt with the status and the last lines of stderr (at most 20 lines,
//! 4 KiB). stdout and stderr are logged at debug level, and kept in the
//! attempt's log in the store, capped (see [`crate::logs`]).
//!
//! # Working directory
//!
//! The command runs in the group's `workdir`: for a pipeline file, the
//! file's folder, so `command = ["python3", "extract.py"]` finds its script
//! and the script finds the files beside it by relative paths. That folder
//! is shared by every attempt of the group, concurrent ones too, so it is
//! for reading: an attempt writes its outputs to `TM_OUTPUT_DIR` and its
//! temporary files to `TM_SCRATCH_DIR` (or `TMPDIR`), which no other
//! attempt uses. A fresh working directory per attempt was weighed and
//! not taken: it would break the relative paths existing commands rely
//! on, and it would contain nothing, since a command can name any
//! absolute path or climb out with `../`. What keeps one attempt from
//! changing another's committed data is that committed outputs are
//! read-only (below).
//!
//! # When an attempt ends
//!
//! The command runs under a supervisor process ([`crate::supervisor`]), a
//! child subreaper that every process the command starts stays under,
//! even one that calls `setsid` or double-forks. When the command exits,
//! everything it left running is killed (SIGKILL) before its outputs are
//! listed, so nothing may write to the output directory after the commit.
//! When the unit is cancelled (lease lost, worker shutting down, timeout)
//! every process of the attempt is killed within about 50 ms of the
//! cancellation being noticed, which is checked every 50 ms. If the worker
//! itself is SIGKILLed, the kernel tells the supervisor (SIGTERM through
//! `PR_SET_PDEATHSIG`), which kills the same way.
//!
//! A group's `timeout` (`timeout = "30m"` in a pipeline file) bounds how
//! long the task may run, from its start (copying input slices included;
//! downloading remote inputs and uploading outputs not). Past it the worker
//! cancels the unit, and the attempt fails with an error text such as
//! "timed out after 30m (the group's timeout); killed `python3` and every
//! process it started". It counts as a failed attempt like any other: the
//! unit is retried up to the group's `retries`.
//!
//! # Isolation: what the stock worker gives, and what it does not
//!
//! - **Processes:** contained as above, with no privileges: no cgroup and
//!   no namespace is used. Not contained: a process started on the
//!   command's behalf by something outside it (a daemon asked over a
//!   socket, `systemd-run --user`, `at`), a descendant that makes itself a
//!   subreaper, and a command that kills its supervisor first.
//! - **Committed outputs** in a local store are made read-only (write
//!   bits removed from every file and directory of the attempt) before
//!   the commit ([`crate::outputs::seal_outputs`]), so a later task that
//!   writes into one, through `../` say, fails with "permission denied"
//!   instead of changing committed data. That stops mistakes, not a task
//!   that means harm: tasks run as the worker's user, who owns the files
//!   and may `chmod` them back, and a worker running as root ignores
//!   permissions altogether, so run workers as an unprivileged user. The
//!   unit, group and pipeline directories above an attempt's stay
//!   writable (later attempts create theirs there). With a remote store
//!   the outputs are uploaded and the bucket's own permissions apply.
//! - **Everything else is shared with the worker:** the user and groups,
//!   the file system (a task may read any input or output the worker can,
//!   and write wherever its user can), the network, the process table,
//!   and the worker's environment (credentials such as `AWS_*` included).
//!   There is no limit on CPU, memory, disk or process count per task
//!   beyond the timeout. For more, run each worker in a container or a
//!   systemd unit with limits (`MemoryMax=`, `TasksMax=`), or embed the
//!   worker with a [`crate::Task`] of your own that wraps the command in a
//!   sandbox.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::child::{Drains, SupervisedChild};
use crate::lines::open_slice;
use crate::scratch::Scratch;
use crate::task::{CancelReason, InputSlice, Task, TaskError, UnitContext};

/// How often the unit is checked for cancellation while its command runs;
/// bounds how long a cancelled command keeps running. The command's exit
/// itself is an event (a pidfd), noticed at once.
pub const EXEC_POLL_MS: u64 = 50;
/// How long to wait for the output pipes to close after the command ended.
pub const EXEC_DRAIN_WAIT_MS: u64 = 2_000;

/// Runs the group's command; see the module docs for its environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecTask;

impl Task for ExecTask {
    fn run(&self, unit: &UnitContext) -> Result<(), TaskError> {
        // Dropped when `run` returns, after the command has been reaped.
        let mut scratch = Scratch::new(unit);
        let slice_files = materialize_slices(unit, &mut scratch)?;
        let inputs_file = write_inputs_list(unit, &slice_files, &mut scratch)?;
        let scratch_dir = scratch.next_dir("tmp")?;
        let mut command = build_command(unit, &slice_files, &scratch_dir)?;
        command.env("TM_INPUTS_FILE", &inputs_file);
        let program = unit.command[0].as_str();
        let mut child =
            SupervisedChild::spawn(&mut command).map_err(|err| spawn_error(program, err))?;
        let drains = Drains::start(&mut child, &unit.log).map_err(|err| {
            TaskError::new(format!("cannot read the output of `{program}`: {err}"))
        })?;
        let outcome = wait_or_cancel(&child, unit);
        // The attempt is over either way: nothing it started may keep
        // running, or write to the output directory after the commit. On
        // a normal exit the supervisor has already killed what was left.
        child.stop();
        let status = child
            .reap()
            .map_err(|err| TaskError::new(format!("cannot wait for `{program}`: {err}")))?;
        let stderr_tail = drains.finish(Duration::from_millis(EXEC_DRAIN_WAIT_MS));
        match outcome? {
            Some(CancelReason::TimedOut) => Err(TaskError::new(format!(
                "{}; killed `{program}` and every process it started",
                unit.timed_out_text()
            ))),
            Some(reason) => Err(TaskError::new(format!(
                "cancelled: {reason}; killed `{program}`"
            ))),
            None if status.success() => Ok(()),
            None => Err(failure_error(program, status, &stderr_tail)),
        }
    }
}

/// The environment variable a pipeline parameter is passed in:
/// `TM_PARAM_` followed by the name uppercased, with every character that is
/// not an ASCII letter or digit replaced by `_` (`ds` → `TM_PARAM_DS`,
/// `input-path.v2` → `TM_PARAM_INPUT_PATH_V2`). Distinct names can map to
/// the same variable (`a-b`, `a.b`); then one of them wins.
pub fn param_env_name(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TM_PARAM_{suffix}")
}

/// Longest `TM_INPUTS` passed in the environment: Linux refuses a single
/// environment string over 128 KiB, so a gather over thousands of inputs
/// could not start. Past this, `TM_INPUTS` is empty and programs read
/// `TM_INPUTS_FILE` (always set: the same list, one path per line).
pub const TM_INPUTS_BYTES_MAX: usize = 100 * 1024;

/// Writes the input list to a scratch file for `TM_INPUTS_FILE`.
fn write_inputs_list(
    unit: &UnitContext,
    slice_files: &[PathBuf],
    scratch: &mut Scratch,
) -> Result<PathBuf, TaskError> {
    let path = scratch.next_file("inputs")?;
    let list = input_lines(unit, slice_files);
    std::fs::write(&path, list.as_encoded_bytes()).map_err(|err| {
        TaskError::new(format!(
            "cannot write the input list {}: {err}",
            path.display()
        ))
    })?;
    Ok(path)
}

/// The unit's input paths, one per line: whole files, then slice copies.
/// The unit's input paths for `TM_INPUTS`: one per line, whole files then
/// slice copies, with no newline after the last, so that `"$TM_INPUTS"`
/// is itself a usable path when a unit has one input (and `$(...)` would
/// strip a final newline anyway).
fn input_list(unit: &UnitContext, slice_files: &[PathBuf]) -> OsString {
    let mut inputs = OsString::new();
    for (i, input) in unit.inputs.iter().chain(slice_files).enumerate() {
        if i > 0 {
            inputs.push("\n");
        }
        inputs.push(input);
    }
    inputs
}

/// The same list for `TM_INPUTS_FILE`, where every line ends with a
/// newline, the last one too: `while IFS= read -r f; do ...; done <
/// "$TM_INPUTS_FILE"` and `wc -l` see every input.
fn input_lines(unit: &UnitContext, slice_files: &[PathBuf]) -> OsString {
    let mut inputs = input_list(unit, slice_files);
    if !inputs.is_empty() {
        inputs.push("\n");
    }
    inputs
}

/// Copies each input slice's lines to its own scratch file; returns the
/// files in slice order.
fn materialize_slices(
    unit: &UnitContext,
    scratch: &mut Scratch,
) -> Result<Vec<PathBuf>, TaskError> {
    let mut files = Vec::with_capacity(unit.input_slices.len());
    for slice in &unit.input_slices {
        let path = scratch.next_file("slice")?;
        copy_slice(slice, &path, unit)?;
        files.push(path);
    }
    Ok(files)
}

/// Writes the bytes of the lines `slice` owns to `dest`, checking for
/// cancellation between buffers (a slice can be gigabytes).
fn copy_slice(slice: &InputSlice, dest: &Path, unit: &UnitContext) -> Result<(), TaskError> {
    let source = crate::lines::InputSource::Slice(slice.clone());
    let read_error = |err: io::Error| TaskError::new(format!("cannot read input {source}: {err}"));
    let write_error = |err: io::Error| {
        TaskError::new(format!(
            "cannot copy input {source} to {}: {err}",
            dest.display()
        ))
    };
    let (mut reader, _) = open_slice(slice).map_err(read_error)?;
    let mut out = BufWriter::new(File::create(dest).map_err(write_error)?);
    loop {
        unit.check_cancelled()?;
        let buf = reader.fill_buf().map_err(read_error)?;
        if buf.is_empty() {
            break;
        }
        out.write_all(buf).map_err(write_error)?;
        let copied = buf.len();
        reader.consume(copied);
    }
    out.flush().map_err(write_error)
}

/// The child's command line, working directory, stdio and environment;
/// `slice_files` are the copies of the input slices, `scratch_dir` the
/// attempt's own directory for temporary files.
fn build_command(
    unit: &UnitContext,
    slice_files: &[PathBuf],
    scratch_dir: &Path,
) -> Result<Command, TaskError> {
    let Some((program, args)) = unit.command.split_first() else {
        return Err(TaskError::new(
            "the group has no command: exec needs a program and its arguments",
        ));
    };
    if program.is_empty() {
        return Err(TaskError::new(
            "the group's command has an empty program name",
        ));
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !unit.workdir.as_os_str().is_empty() {
        // Checked here because spawn reports a missing cwd as a missing
        // program, which would be misleading.
        if !unit.workdir.is_dir() {
            return Err(TaskError::new(format!(
                "the working directory {} is not a directory",
                unit.workdir.display()
            )));
        }
        command.current_dir(&unit.workdir);
    }
    command.env("TMPDIR", scratch_dir);
    command.envs(&unit.env);
    command.envs(tm_env(unit, slice_files));
    command.env("TM_SCRATCH_DIR", scratch_dir);
    Ok(command)
}

/// The `TM_*` variables (see the module docs).
fn tm_env(unit: &UnitContext, slice_files: &[PathBuf]) -> Vec<(String, OsString)> {
    let mut inputs = input_list(unit, slice_files);
    if inputs.len() > TM_INPUTS_BYTES_MAX {
        inputs = OsString::new(); // too long for the environment: see TM_INPUTS_FILE
    }
    let mut vars = vec![
        ("TM_INPUTS".to_string(), inputs),
        (
            "TM_OUTPUT_DIR".to_string(),
            unit.output_dir.clone().into_os_string(),
        ),
        ("TM_PIPELINE".to_string(), unit.pipeline_id.clone().into()),
        ("TM_GROUP".to_string(), unit.group.clone().into()),
        ("TM_UNIT".to_string(), unit.unit.to_string().into()),
        ("TM_ATTEMPT".to_string(), unit.attempt.to_string().into()),
        (
            "TM_PARTITIONS".to_string(),
            unit.partitions.to_string().into(),
        ),
    ];
    for (name, value) in &unit.params {
        vars.push((param_env_name(name), value.into()));
    }
    vars
}

fn spawn_error(program: &str, err: io::Error) -> TaskError {
    if err.kind() == io::ErrorKind::NotFound {
        TaskError::new(format!(
            "program not found: `{program}` (not on PATH, or no such file)"
        ))
    } else {
        TaskError::new(format!("cannot start `{program}`: {err}"))
    }
}

/// Waits for the command (and everything it started) to end, or for the
/// unit to be cancelled; returns the cancel reason in the second case.
fn wait_or_cancel(
    child: &SupervisedChild,
    unit: &UnitContext,
) -> Result<Option<CancelReason>, TaskError> {
    loop {
        let exited = child
            .has_exited()
            .map_err(|err| TaskError::new(format!("cannot check on the command: {err}")))?;
        if exited {
            return Ok(None);
        }
        if let Some(reason) = unit.cancel.reason() {
            return Ok(Some(reason));
        }
        // Wakes as soon as the command ends; the timeout only paces the
        // cancellation check.
        child
            .wait_exited(Duration::from_millis(EXEC_POLL_MS))
            .map_err(|err| TaskError::new(format!("cannot wait for the command: {err}")))?;
    }
}

fn failure_error(program: &str, status: ExitStatus, stderr_tail: &str) -> TaskError {
    // ExitStatus displays as "exit status: N" or "signal: N (SIGNAME)".
    if stderr_tail.is_empty() {
        TaskError::new(format!(
            "`{program}` failed with {status}; stderr was empty"
        ))
    } else {
        TaskError::new(format!(
            "`{program}` failed with {status}; stderr tail:\n{stderr_tail}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::*;
    use crate::task::CancelToken;

    fn sh(script: &str, output_dir: &Path) -> UnitContext {
        UnitContext {
            pipeline_id: "p-1".into(),
            group: "map".into(),
            unit: 3,
            lease_id: 42,
            attempt: 2,
            inputs: vec![PathBuf::from("/data/in-a"), PathBuf::from("/data/in b")],
            output_dir: output_dir.to_path_buf(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..UnitContext::default()
        }
    }

    #[test]
    fn thousands_of_inputs_go_through_a_file_not_the_environment() {
        let out = tempfile::tempdir().unwrap();
        let mut unit = sh(
            r#"printf '%s' "$TM_INPUTS" > "$TM_OUTPUT_DIR/env"; wc -l < "$TM_INPUTS_FILE" | tr -d ' ' > "$TM_OUTPUT_DIR/count""#,
            out.path(),
        );
        unit.inputs = (0..3000)
            .map(|i| PathBuf::from(format!("/store/p-1/gen/{i}/{i}/part-00000-long-name")))
            .collect();
        ExecTask.run(&unit).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("env")).unwrap(), "");
        // 3000 paths, each line ending in a newline: wc counts them all.
        assert_eq!(
            std::fs::read_to_string(out.path().join("count"))
                .unwrap()
                .trim(),
            "3000"
        );
    }

    #[test]
    fn outputs_appear_in_the_output_dir() {
        let out = tempfile::tempdir().unwrap();
        let unit = sh(
            r#"mkdir -p "$TM_OUTPUT_DIR/sub" && echo hi > "$TM_OUTPUT_DIR/sub/part-0""#,
            out.path(),
        );
        ExecTask.run(&unit).unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("sub/part-0")).unwrap(),
            "hi\n"
        );
    }

    #[test]
    fn sets_the_tm_variables_params_and_group_env() {
        let out = tempfile::tempdir().unwrap();
        let script = r#"env | grep -E '^(TM_|GROUP_VAR=)' | sort > "$TM_OUTPUT_DIR/env"; printf '%s' "$TM_INPUTS" > "$TM_OUTPUT_DIR/inputs""#;
        let mut unit = sh(script, out.path());
        unit.params = BTreeMap::from([
            ("ds".into(), "2026-11-21".into()),
            ("in-path.v2".into(), "x".into()),
        ]);
        unit.env = BTreeMap::from([
            ("GROUP_VAR".into(), "from group".into()),
            // The worker's own variables win over the group's.
            ("TM_UNIT".into(), "spoofed".into()),
        ]);
        ExecTask.run(&unit).unwrap();

        let env = fs::read_to_string(out.path().join("env")).unwrap();
        let env: Vec<&str> = env.lines().collect();
        let output_dir = format!("TM_OUTPUT_DIR={}", out.path().display());
        for expected in [
            "GROUP_VAR=from group",
            "TM_ATTEMPT=2",
            "TM_GROUP=map",
            output_dir.as_str(),
            "TM_PARAM_DS=2026-11-21",
            "TM_PARAM_IN_PATH_V2=x",
            "TM_PIPELINE=p-1",
            "TM_UNIT=3",
        ] {
            assert!(env.contains(&expected), "{expected} missing from {env:?}");
        }
        let inputs = fs::read_to_string(out.path().join("inputs")).unwrap();
        assert_eq!(inputs, "/data/in-a\n/data/in b");
    }

    #[test]
    fn tm_partitions_is_the_count_or_zero() {
        let out = tempfile::tempdir().unwrap();
        let mut unit = sh(
            r#"printf '%s' "$TM_PARTITIONS" > "$TM_OUTPUT_DIR/p""#,
            out.path(),
        );
        ExecTask.run(&unit).unwrap();
        assert_eq!(fs::read_to_string(out.path().join("p")).unwrap(), "0");
        unit.partitions = 7;
        ExecTask.run(&unit).unwrap();
        assert_eq!(fs::read_to_string(out.path().join("p")).unwrap(), "7");
    }

    #[test]
    fn input_slices_arrive_as_files_of_their_lines_after_the_whole_files() {
        let data = tempfile::tempdir().unwrap();
        let whole = data.path().join("whole");
        let big = data.path().join("big");
        fs::write(&whole, "w1\nw2\n").unwrap();
        fs::write(&big, "line one\nline two\nline three").unwrap();
        let out = tempfile::tempdir().unwrap();
        // Copies every input, in TM_INPUTS order, to copy-1, copy-2, ...
        let script = r#"printf '%s' "$TM_INPUTS" > "$TM_OUTPUT_DIR/inputs"
            n=0; printf '%s\n' "$TM_INPUTS" | while IFS= read -r f; do
              n=$((n+1)); cp "$f" "$TM_OUTPUT_DIR/copy-$n"; done"#;
        let mut unit = sh(script, out.path());
        unit.inputs = vec![whole.clone()];
        let slice = |start, end| InputSlice {
            path: big.clone(),
            start,
            end,
        };
        // "line one\n" is 0..9, "line two\n" 9..18, "line three" 18..28.
        unit.input_slices = vec![slice(3, 12), slice(12, 28), slice(0, 3)];
        ExecTask.run(&unit).unwrap();

        let copy = |n: usize| fs::read_to_string(out.path().join(format!("copy-{n}"))).unwrap();
        assert_eq!(copy(1), "w1\nw2\n");
        assert_eq!(copy(2), "line two\n");
        assert_eq!(copy(3), "line three");
        assert_eq!(copy(4), "line one\n");
        let inputs = fs::read_to_string(out.path().join("inputs")).unwrap();
        let inputs: Vec<&str> = inputs.lines().collect();
        assert_eq!(inputs.len(), 4, "{inputs:?}");
        assert_eq!(inputs[0], whole.to_str().unwrap());
        for slice_file in &inputs[1..] {
            let slice_file = Path::new(slice_file);
            assert!(!slice_file.starts_with(out.path()), "{slice_file:?}");
            assert!(
                !slice_file.exists(),
                "scratch copy left behind: {slice_file:?}"
            );
        }
    }

    #[test]
    fn a_bad_slice_fails_before_the_command_runs() {
        let out = tempfile::tempdir().unwrap();
        let mut unit = sh(r#"touch "$TM_OUTPUT_DIR/ran""#, out.path());
        unit.input_slices = vec![InputSlice {
            path: "/no/such/file".into(),
            start: 0,
            end: 10,
        }];
        let err = ExecTask.run(&unit).unwrap_err();
        assert!(
            err.message().contains("/no/such/file bytes [0, 10)"),
            "{err}"
        );
        assert!(!out.path().join("ran").exists());
    }

    #[test]
    fn runs_in_the_workdir() {
        let out = tempfile::tempdir().unwrap();
        let workdir = tempfile::tempdir().unwrap();
        let mut unit = sh(r#"pwd > "$TM_OUTPUT_DIR/pwd""#, out.path());
        unit.workdir = workdir.path().to_path_buf();
        ExecTask.run(&unit).unwrap();
        let pwd = fs::read_to_string(out.path().join("pwd")).unwrap();
        assert_eq!(
            Path::new(pwd.trim()).canonicalize().unwrap(),
            workdir.path().canonicalize().unwrap()
        );

        unit.workdir = workdir.path().join("missing");
        let err = ExecTask.run(&unit).unwrap_err();
        assert!(err.message().contains("is not a directory"), "{err}");
    }

    #[test]
    fn non_zero_exit_reports_status_and_stderr_tail() {
        let out = tempfile::tempdir().unwrap();
        let script =
            "for i in $(seq 1 30); do echo \"err line $i\" >&2; done; echo to-stdout; exit 3";
        let err = ExecTask.run(&sh(script, out.path())).unwrap_err();
        let text = err.message();
        assert!(text.contains("`sh` failed with exit status: 3"), "{text}");
        assert!(text.contains("err line 30"), "{text}");
        assert!(text.contains("err line 11\n"), "{text}");
        assert!(
            !text.contains("err line 10\n"),
            "only the last 20 lines: {text}"
        );
        assert!(!text.contains("to-stdout"), "{text}");
    }

    #[test]
    fn death_by_signal_is_a_failure() {
        let out = tempfile::tempdir().unwrap();
        let err = ExecTask.run(&sh("kill -TERM $$", out.path())).unwrap_err();
        assert!(err.message().contains("signal: 15"), "{err}");
    }

    #[test]
    fn chatty_child_does_not_block_on_full_pipes() {
        let out = tempfile::tempdir().unwrap();
        // Several MiB on both pipes, far more than a pipe buffer holds.
        let script = "head -c 3000000 /dev/zero | tr '\\0' 'a'; head -c 3000000 /dev/zero | tr '\\0' 'b' >&2";
        ExecTask.run(&sh(script, out.path())).unwrap();
    }

    /// Polls `check` until it holds; panics after 10 s.
    fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when `pid` is gone or a zombie (killed, not yet reaped by init).
    fn is_dead(pid: &str) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        }
    }

    #[test]
    fn cancellation_kills_the_whole_command_quickly() {
        let out = tempfile::tempdir().unwrap();
        // A background process too: the whole process group must die.
        let unit = sh(
            r#"sleep 30 & echo $! > "$TM_OUTPUT_DIR/bg.tmp"; mv "$TM_OUTPUT_DIR/bg.tmp" "$TM_OUTPUT_DIR/bg"; sleep 30"#,
            out.path(),
        );
        let cancel = unit.cancel.clone();
        let runner = std::thread::spawn(move || ExecTask.run(&unit));
        let bg_file = out.path().join("bg");
        wait_until("the command started", || bg_file.exists());
        let background_pid = fs::read_to_string(&bg_file).unwrap().trim().to_string();

        let cancelled_at = Instant::now();
        cancel.cancel(CancelReason::LeaseLost);
        let err = runner.join().unwrap().unwrap_err();
        let took = cancelled_at.elapsed();
        assert!(
            err.message().starts_with("cancelled: the lease was lost"),
            "{err}"
        );
        // Well under the 2 s drain wait: the background sleep's hold on the
        // pipes ended because it was killed too.
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        wait_until("the background process died", || is_dead(&background_pid));
    }

    /// A script that starts `sh -c 'sleep 30; touch marker'` in a session
    /// of its own (through `setsid`, and with `double_fork` also from a
    /// subshell that exits at once, so it is orphaned while the command
    /// still runs), waits until it has written its pid to `detached`, and
    /// then runs `then`.
    fn detaching_script(out: &Path, double_fork: bool, then: &str) -> String {
        let detached = format!(
            r#"setsid sh -c 'echo $$ > "{dir}/detached.tmp"; mv "{dir}/detached.tmp" "{dir}/detached"; sleep 30; touch "{dir}/marker"' &"#,
            dir = out.display()
        );
        let start = if double_fork {
            format!("( {detached} )")
        } else {
            detached
        };
        format!(
            r#"{start}
            while [ ! -e "{dir}/detached" ]; do sleep 0.01; done
            {then}"#,
            dir = out.display()
        )
    }

    /// The detached process's pid, and whether it was in a session of its own.
    fn detached_pid(dir: &Path) -> String {
        fs::read_to_string(dir.join("detached"))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn nothing_a_finished_command_detached_outlives_it() {
        for double_fork in [false, true] {
            let out = tempfile::tempdir().unwrap();
            let side = tempfile::tempdir().unwrap();
            let script = detaching_script(side.path(), double_fork, "exit 0");
            let started = Instant::now();
            ExecTask.run(&sh(&script, out.path())).unwrap();
            // Gone by the time run returns, not 30 s later: the commit
            // cannot race a process still writing.
            let pid = detached_pid(side.path());
            assert!(is_dead(&pid), "double fork {double_fork}: {pid} still runs");
            assert!(started.elapsed() < Duration::from_secs(10));
            assert!(!side.path().join("marker").exists());
        }
    }

    #[test]
    fn cancellation_kills_detached_processes_too() {
        let out = tempfile::tempdir().unwrap();
        let side = tempfile::tempdir().unwrap();
        let unit = sh(&detaching_script(side.path(), true, "sleep 30"), out.path());
        let cancel = unit.cancel.clone();
        let runner = std::thread::spawn(move || ExecTask.run(&unit));
        wait_until("the detached process started", || {
            side.path().join("detached").exists()
        });
        let pid = detached_pid(side.path());
        assert!(!is_dead(&pid));
        let cancelled_at = Instant::now();
        cancel.cancel(CancelReason::Shutdown);
        let err = runner.join().unwrap().unwrap_err();
        assert!(
            err.message()
                .starts_with("cancelled: the worker is shutting down"),
            "{err}"
        );
        assert!(is_dead(&pid), "{pid} outlived the cancelled attempt");
        let took = cancelled_at.elapsed();
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }

    #[test]
    fn a_timed_out_attempt_says_after_how_long() {
        let out = tempfile::tempdir().unwrap();
        let side = tempfile::tempdir().unwrap();
        let unit = UnitContext {
            timeout: Some(Duration::from_secs(1)),
            ..sh(
                &detaching_script(side.path(), false, "sleep 30"),
                out.path(),
            )
        };
        let cancel = unit.cancel.clone();
        let runner = std::thread::spawn(move || ExecTask.run(&unit));
        wait_until("the command started", || {
            side.path().join("detached").exists()
        });
        // What the runner does once the timeout has passed.
        cancel.cancel(CancelReason::TimedOut);
        let err = runner.join().unwrap().unwrap_err();
        assert_eq!(
            err.message(),
            "timed out after 1s (the group's timeout); killed `sh` and every process it started"
        );
        assert!(is_dead(&detached_pid(side.path())));
    }

    #[test]
    fn the_command_keeps_its_exit_code_and_signal_under_the_supervisor() {
        let out = tempfile::tempdir().unwrap();
        for (script, expected) in [
            ("exit 7", "exit status: 7"),
            ("kill -KILL $$", "signal: 9 (SIGKILL)"),
            ("kill -SEGV $$", "signal: 11 (SIGSEGV)"),
        ] {
            let err = ExecTask.run(&sh(script, out.path())).unwrap_err();
            assert!(err.message().contains(expected), "{script}: {err}");
        }
    }

    #[test]
    fn a_scratch_directory_of_its_own_is_tmpdir_and_goes_away() {
        let out = tempfile::tempdir().unwrap();
        let script = r#"[ "$TMPDIR" = "$TM_SCRATCH_DIR" ] && [ -d "$TMPDIR" ] && [ -z "$(ls -A "$TMPDIR")" ] || exit 3
            echo x > "$TMPDIR/tmp-file"; chmod 0500 "$TMPDIR"
            printf '%s' "$TM_SCRATCH_DIR" > "$TM_OUTPUT_DIR/scratch""#;
        ExecTask.run(&sh(script, out.path())).unwrap();
        let scratch = fs::read_to_string(out.path().join("scratch")).unwrap();
        assert!(
            !scratch.is_empty() && !Path::new(&scratch).exists(),
            "{scratch}"
        );

        // The group's env may point TMPDIR elsewhere.
        let mut unit = sh(
            r#"printf '%s' "$TMPDIR" > "$TM_OUTPUT_DIR/tmpdir""#,
            out.path(),
        );
        unit.env = BTreeMap::from([("TMPDIR".into(), "/var/tmp".into())]);
        ExecTask.run(&unit).unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("tmpdir")).unwrap(),
            "/var/tmp"
        );
    }

    #[test]
    fn a_task_cannot_change_committed_outputs_through_dot_dot() {
        crate::test_support::as_unprivileged(|| {
            let store = tempfile::tempdir().unwrap();
            let committed = store.path().join("p-0/g/0/7");
            fs::create_dir_all(committed.join("sub")).unwrap();
            fs::write(committed.join("data"), "original\n").unwrap();
            fs::write(committed.join("sub/more"), "kept\n").unwrap();
            crate::outputs::seal_outputs(&committed).unwrap();

            let output_dir = store.path().join("p-1/g/0/9");
            fs::create_dir_all(&output_dir).unwrap();
            for script in [
                r#"echo evil >> "$TM_OUTPUT_DIR/../../../../p-0/g/0/7/data""#,
                r#"echo evil > "$TM_OUTPUT_DIR/../../../../p-0/g/0/7/sub/more""#,
                r#"touch "$TM_OUTPUT_DIR/../../../../p-0/g/0/7/new""#,
                r#"rm -f "$TM_OUTPUT_DIR/../../../../p-0/g/0/7/data""#,
                r#"rm -rf "$TM_OUTPUT_DIR/../../../../p-0/g/0/7/sub""#,
            ] {
                let err = ExecTask.run(&sh(script, &output_dir)).unwrap_err();
                assert!(
                    err.message().contains("Permission denied"),
                    "{script}: {err}"
                );
            }
            assert_eq!(
                fs::read_to_string(committed.join("data")).unwrap(),
                "original\n"
            );
            assert_eq!(
                fs::read_to_string(committed.join("sub/more")).unwrap(),
                "kept\n"
            );
            assert!(!committed.join("new").exists());
            crate::outputs::remove_tree(store.path()).unwrap();
        });
    }

    #[test]
    fn already_cancelled_unit_does_not_run_long() {
        let out = tempfile::tempdir().unwrap();
        let unit = UnitContext {
            cancel: CancelToken::new(),
            ..sh("sleep 30", out.path())
        };
        unit.cancel.cancel(CancelReason::Shutdown);
        let started = Instant::now();
        let err = ExecTask.run(&unit).unwrap_err();
        assert!(err.message().contains("shutting down"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program_is_named() {
        let out = tempfile::tempdir().unwrap();
        let mut unit = sh("", out.path());
        unit.command = vec!["no-such-program-tm".into(), "arg".into()];
        let err = ExecTask.run(&unit).unwrap_err();
        assert!(
            err.message()
                .contains("program not found: `no-such-program-tm`"),
            "{err}"
        );
    }

    #[test]
    fn empty_command_is_an_error() {
        let out = tempfile::tempdir().unwrap();
        let mut unit = sh("", out.path());
        unit.command = vec![];
        let err = ExecTask.run(&unit).unwrap_err();
        assert!(err.message().contains("no command"), "{err}");
    }

    #[test]
    fn param_names_become_env_names() {
        assert_eq!(param_env_name("ds"), "TM_PARAM_DS");
        assert_eq!(param_env_name("input-path.v2"), "TM_PARAM_INPUT_PATH_V2");
        assert_eq!(param_env_name("café"), "TM_PARAM_CAF_");
    }
}
