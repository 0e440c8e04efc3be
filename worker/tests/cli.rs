//! The `taskmaster-worker` binary's command line. (This file also makes
//! `cargo test --workspace` build the binary, which the end-to-end tests in
//! `tests/` run.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taskmaster-worker");

/// The binary with `args`, without any TASKMASTER_* variables from the
/// environment of whoever runs the tests.
fn worker(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("TASKMASTER_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

fn run(args: &[&str]) -> Output {
    worker(args).output().expect("run taskmaster-worker")
}

#[test]
fn help_explains_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "--master",
        "--slots",
        "--worker-id",
        "--lease-wait-ms",
        "--grace-ms",
        "--calls",
        "stream",
        "unary",
        "TASKMASTER_ADDR",
        "http://127.0.0.1:7070",
        "SIGTERM",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn help_names_every_variable_an_exec_task_gets() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // The exec module's table (worker/src/exec.rs) is the full list.
    for variable in [
        "TM_INPUTS ",
        "TM_INPUTS_FILE",
        "TM_OUTPUT_DIR",
        "TM_PARTITIONS",
        "TM_PIPELINE",
        "TM_GROUP",
        "TM_UNIT",
        "TM_ATTEMPT",
        "TM_PARAM_<NAME>",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
}

#[test]
fn zero_slots_is_refused_clearly() {
    let out = run(&["--slots", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("slots must be between 1 and 1024, got 0"),
        "{stderr}"
    );
}

#[test]
fn zero_slots_from_the_environment_is_refused_too() {
    let out = worker(&[])
        .env("TASKMASTER_WORKER_SLOTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("slots must be")
    );
}

#[test]
fn malformed_flags_are_refused() {
    for (args, expected) in [
        (&["--slots", "many"][..], "--slots"),
        (&["--master", "localhost"][..], "names no host and port"),
        (
            &["--master", "https://localhost:7070"][..],
            "https:// needs the master's CA (--tls-ca)",
        ),
        (
            &["--tls-cert", "c.pem", "--tls-key", "k.pem"][..],
            "--tls-ca",
        ),
        (
            &["--lease-wait-ms", "600000"][..],
            "lease wait must be at most",
        ),
        (&["--calls", "grpc"][..], "[possible values: stream, unary]"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn sigterm_stops_a_worker_whose_master_is_down() {
    // A port nobody listens on: the worker keeps retrying its lease call.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let master = format!("http://127.0.0.1:{port}");
    let mut child = worker(&[
        "--master",
        &master,
        "--slots",
        "2",
        "--worker-id",
        "cli-test",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // The worker logs "worker started" after its signal handlers are set.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("worker started") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited early:\n{log}"
        );
        log.push_str(&line);
    }
    assert!(log.contains("cli-test"), "{log}");

    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled_at = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(signalled_at.elapsed() < Duration::from_secs(10));
}
