//! `tmctl watch ID` with the real binaries (issue 26): per-group progress
//! until the pipeline ends, then its final state; exit 0 only if it
//! succeeded. On a terminal (a pseudo-terminal from util-linux `script`)
//! the bars are redrawn in place, and `tmctl submit --wait` shows the same.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use taskmaster_tests::*;

const PIPELINE_WAIT: Duration = Duration::from_secs(60);
const LEASE_MS: u64 = 10_000;
/// A full bar of the demo's progress (30 characters).
const FULL_BAR: &str = "[##############################]";

/// Writes a two-group pipeline (`first` then `second`) whose second group
/// runs `second_command` (a shell line).
fn pipeline(dir: &Path, second_command: &str) -> PathBuf {
    let file = dir.join("pipeline.toml");
    write_file(
        &file,
        format!(
            "name = \"watched\"\n\
             [[groups]]\nname = \"first\"\ncommand = [\"sh\", \"-c\", \"sleep 0.2\"]\n\
             [[groups]]\nname = \"second\"\ncommand = [\"sh\", \"-c\", {second_command:?}]\n\
             after = [\"first\"]\nmax_attempts = 1\n"
        ),
    );
    file
}

fn submit(url: &str, file: &Path) -> String {
    let out = tmctl_ok(url, &["submit", file.to_str().unwrap()]);
    out.lines().last().unwrap().trim().to_string()
}

#[test]
fn watch_shows_each_group_and_exits_by_how_the_pipeline_ended() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&dir.path().join("master"), "127.0.0.1:0", LEASE_MS);
    let _worker = WorkerProcess::start(&master.url(), 2, dir.path());
    let url = master.url();

    let ok = submit(&url, &pipeline(&dir.path().join("ok"), "sleep 0.2"));
    let out = tmctl_within(&url, &["watch", &ok, "--poll-ms", "50"], PIPELINE_WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty());
    // Not a terminal: a line per group whose counts changed.
    assert!(stderr.contains("first   1/1"), "{stderr}");
    assert!(stderr.contains("second  1/1"), "{stderr}");
    assert!(
        stderr.ends_with(&format!("pipeline {ok} succeeded\n")),
        "{stderr}"
    );

    let failing = submit(&url, &pipeline(&dir.path().join("bad"), "exit 3"));
    let out = tmctl_within(&url, &["watch", &failing, "--poll-ms", "50"], PIPELINE_WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pipeline {failing} failed\n")),
        "{stderr}"
    );
    assert!(stderr.contains("exit status: 3"), "{stderr}");

    let err = tmctl_err(&url, &["watch", "p-nope"]);
    assert!(err.contains("NOT_FOUND"), "{err}");
}

/// Runs `tmctl --master URL ARGS` on a pseudo-terminal; None when util-linux
/// `script` is not installed.
fn on_a_terminal(url: &str, args: &str) -> Option<(Option<i32>, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("util-linux `script` is not installed: skipping the terminal checks");
        return None;
    }
    let command = format!("{} --master {url} {args}", bin("tmctl").display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script");
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn on_a_terminal_watch_and_submit_wait_redraw_bars() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&dir.path().join("master"), "127.0.0.1:0", LEASE_MS);
    let _worker = WorkerProcess::start(&master.url(), 2, dir.path());
    let url = master.url();

    let file = pipeline(dir.path(), "sleep 0.5");
    let id = submit(&url, &file);
    let Some((code, screen)) = on_a_terminal(&url, &format!("watch {id} --poll-ms 50")) else {
        return;
    };
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("\x1b[2K"),
        "bars are redrawn in place: {screen:?}"
    );
    assert!(
        screen.contains(&format!("first   {FULL_BAR}  1/1")),
        "{screen:?}"
    );
    assert!(
        screen.contains(&format!("second  {FULL_BAR}  1/1")),
        "{screen:?}"
    );
    assert!(
        screen.contains(&format!("pipeline {id} succeeded")),
        "{screen:?}"
    );

    let (code, screen) = on_a_terminal(
        &url,
        &format!("submit {} --wait --poll-ms 50", file.display()),
    )
    .unwrap();
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("\x1b[2K"), "{screen:?}");
    assert!(
        screen.contains(&format!("second  {FULL_BAR}  1/1")),
        "{screen:?}"
    );
}
