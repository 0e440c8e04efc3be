//! TLS with the real binaries: a pipeline run over mutual TLS, the
//! refusals (plaintext to a TLS port, no client certificate, a client
//! certificate from another CA), a certificate rotated without a restart
//! or a failed call, and a master that will not listen beyond loopback
//! without TLS and client certificates.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use taskmaster_client::{Client, ClientTls};
use taskmaster_tests::certs::{CertFiles, TestCa};
use taskmaster_tests::*;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tls_args<'a>(server: &'a CertFiles, client_ca: Option<&'a Path>) -> Vec<&'a str> {
    let mut args = vec!["--tls-cert", s(&server.cert), "--tls-key", s(&server.key)];
    if let Some(ca) = client_ca {
        args.extend(["--client-ca", s(ca)]);
    }
    args
}

fn client_env<'a>(ca: &'a Path, client: Option<&'a CertFiles>) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("TASKMASTER_TLS_CA", s(ca))];
    if let Some(client) = client {
        env.extend([
            ("TASKMASTER_TLS_CERT", s(&client.cert)),
            ("TASKMASTER_TLS_KEY", s(&client.key)),
        ]);
    }
    env
}

fn one_group_pipeline(dir: &Path) -> std::path::PathBuf {
    write_file(&dir.join("data/in.txt"), "over TLS\n");
    let path = dir.join("pipeline.toml");
    write_file(
        &path,
        "name = \"tls\"\n[[groups]]\nname = \"copy\"\ncommand = [\"sh\", \"-c\", \"cat $TM_INPUTS > $TM_OUTPUT_DIR/out\"]\ninputs = [\"data/*.txt\"]\n",
    );
    path
}

#[test]
fn t40_a_pipeline_runs_over_mutual_tls_and_the_unauthenticated_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path(), "ca");
    let server = ca.server("master");
    let worker_cert = ca.client("worker-1");
    let operator = ca.client("operator");
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        30_000,
        &tls_args(&server, Some(&ca.cert)),
    );
    let url = format!("https://{}", master.addr);
    let _worker = WorkerProcess::start_env(
        &url,
        2,
        tmp.path(),
        &client_env(&ca.cert, Some(&worker_cert)),
    );
    let pipeline = one_group_pipeline(&tmp.path().join("job"));
    let submitted = tmctl_env(
        &url,
        &["submit", s(&pipeline), "--wait", "--poll-ms", "50"],
        &client_env(&ca.cert, Some(&operator)),
    );
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    // A bare host:port means https:// once TLS is configured.
    let bare = tmctl_env(
        &master.addr,
        &["status"],
        &client_env(&ca.cert, Some(&operator)),
    );
    assert_eq!(bare.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bare.stdout).contains("succeeded"));

    let refused = |out: std::process::Output, what: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{what} was let in");
        assert!(stderr.contains("error"), "{what}: {stderr}");
    };
    refused(
        tmctl(&format!("http://{}", master.addr), &["status"]),
        "plaintext",
    );
    refused(
        tmctl_env(&url, &["status"], &client_env(&ca.cert, None)),
        "no client certificate",
    );
    let rogue = TestCa::new(tmp.path(), "rogue");
    let mallory = rogue.client("mallory");
    refused(
        tmctl_env(&url, &["status"], &client_env(&ca.cert, Some(&mallory))),
        "a certificate from another CA",
    );
    refused(
        tmctl_env(&url, &["status"], &client_env(&rogue.cert, Some(&operator))),
        "a client that does not trust the master's CA",
    );
    let clear_text = tmctl_env(
        &format!("http://{}", master.addr),
        &["status"],
        &client_env(&ca.cert, Some(&operator)),
    );
    let stderr = String::from_utf8_lossy(&clear_text.stderr);
    assert!(stderr.contains("clear text"), "{stderr}");
}

/// Replaces a certificate and key by renames, as a certificate manager
/// does, so the master never reads half a file.
fn install(from: &CertFiles, to: &CertFiles) {
    for (src, dst) in [(&from.cert, &to.cert), (&from.key, &to.key)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

#[test]
fn t41_a_rotated_certificate_is_taken_up_without_a_restart_or_a_failed_call() {
    let tmp = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(tmp.path(), "old-ca");
    let new_ca = TestCa::new(tmp.path(), "new-ca");
    let live = CertFiles {
        cert: tmp.path().join("live.crt"),
        key: tmp.path().join("live.key"),
    };
    install(&old_ca.server("old"), &live);
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        30_000,
        &tls_args(&live, None),
    );
    let url = format!("https://{}", master.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let old_trust = ClientTls::from_files(&old_ca.cert, None, None).unwrap();
    let new_trust = ClientTls::from_files(&new_ca.cert, None, None).unwrap();
    let before = rt
        .block_on(Client::connect_with(&url, Some(&old_trust)))
        .unwrap();
    rt.block_on(before.list()).unwrap();
    assert!(
        rt.block_on(Client::connect_with(&url, Some(&new_trust)))
            .is_err(),
        "the new CA is not trusted before the rotation"
    );

    install(&new_ca.server("new"), &live);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut calls = 0;
    loop {
        // The connection made before the rotation keeps working throughout.
        rt.block_on(before.list())
            .expect("a call failed during the rotation");
        calls += 1;
        if rt
            .block_on(Client::connect_with(&url, Some(&new_trust)))
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(calls > 0);
    let after = rt
        .block_on(Client::connect_with(&url, Some(&new_trust)))
        .unwrap();
    rt.block_on(after.list()).unwrap();
    rt.block_on(before.list()).unwrap();
    assert!(
        master
            .log_text()
            .contains("reloaded the TLS certificate files")
    );
}

#[test]
fn t42_beyond_loopback_needs_tls_and_client_certificates_or_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let refused = Command::new(bin("taskmaster"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", s(&data)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without TLS")
            && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused start touches nothing");

    let ca = TestCa::new(tmp.path(), "ca");
    let server = ca.server("master");
    let mut args = vec!["serve", "--listen", "0.0.0.0:0", "--data-dir", s(&data)];
    args.extend(tls_args(&server, None));
    let tls_only = Command::new(bin("taskmaster"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&tls_only.stderr);
    assert!(
        stderr.contains("without identities (--auth for tokens, or client certificates"),
        "{stderr}"
    );
}
