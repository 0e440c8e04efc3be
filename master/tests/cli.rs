//! The `taskmaster` binary as a user meets it: help, bad flags, and a data
//! dir that another master already holds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_taskmaster");

#[test]
fn help_names_the_flags() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in [
        "--data-dir",
        "--listen",
        "--lease-ms",
        "--store",
        "--auto-snapshot-records",
        "--auto-snapshot-mib",
        "--snapshot-write-mib",
    ] {
        assert!(text.contains(flag), "help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--lease-ms", "5", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lease-ms"));
}

#[test]
fn a_second_master_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("taskmaster listening on"), "{line}");
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another master is using it"), "{stderr}");
}
