//! Identities and roles (issue 24) with the real binaries: a master
//! started with `--auth`, tokens made and revoked with `tmctl token`, each
//! refusal (no token, a wrong, an expired and a revoked token, a viewer
//! submitting, a worker calling rollback, a worker acting on another
//! worker's lease, a certificate from another CA), a pipeline run by a
//! worker with a token and by one known by its certificate, and the audit
//! trail `tmctl status` shows.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use taskmaster_client::Client;
use taskmaster_proto::credentials::Credentials;
use taskmaster_proto::v1::{CommitItem, CommitRequest, LeaseRequest, Role, commit_item};
use taskmaster_tests::certs::TestCa;
use taskmaster_tests::*;
use tonic::Code;

/// Environment pairs as `tmctl_env` takes them.
fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A master with `--auth` and the path of its first admin token.
fn auth_master(dir: &Path, extra: &[&str]) -> (MasterProcess, PathBuf) {
    let mut args = vec!["--auth"];
    args.extend_from_slice(extra);
    let master = MasterProcess::start_with(&dir.join("data"), "127.0.0.1:0", 30_000, &args);
    let admin = master.data_dir.join("admin.token");
    (master, admin)
}

/// tmctl with the token in `token_file`.
fn tmctl_as(url: &str, token_file: &Path, args: &[&str]) -> Output {
    tmctl_env(url, args, &[("TASKMASTER_TOKEN_FILE", s(token_file))])
}

fn stdout_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "tmctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stderr of a refused call, which must name `code`.
fn refused(out: Output, code: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "let in: {stderr}");
    assert!(stderr.contains(code), "wanted {code}: {stderr}");
    stderr
}

/// `tmctl token create`; the token (the last line of stdout) is written to
/// `<dir>/<name>.token`, whose path is returned.
fn make_token(
    url: &str,
    admin: &Path,
    dir: &Path,
    role: &str,
    name: &str,
    extra: &[&str],
) -> PathBuf {
    let mut args = vec!["token", "create", "--role", role, "--name", name];
    args.extend_from_slice(extra);
    let out = stdout_ok(tmctl_as(url, admin, &args));
    let token = out.lines().last().unwrap();
    assert!(token.starts_with("tm_") && token.len() == 67, "{out}");
    let path = dir.join(format!("{name}.token"));
    write_file(&path, format!("{token}\n"));
    path
}

fn pipeline_file(dir: &Path, name: &str, command: &str) -> PathBuf {
    write_file(&dir.join("data/in.txt"), "auth\n");
    let path = dir.join(format!("{name}.toml"));
    write_file(
        &path,
        format!(
            "name = \"{name}\"\n[[groups]]\nname = \"only\"\nmax_attempts = 1\n\
             command = [\"sh\", \"-c\", \"{command}\"]\ninputs = [\"data/*.txt\"]\n"
        ),
    );
    path
}

#[test]
fn t41_tokens_and_roles_refuse_what_each_identity_may_not_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (master, admin) = auth_master(tmp.path(), &[]);
    let url = master.url();

    // The first admin token: written 0600, its path logged, never itself.
    let mode = std::fs::metadata(&admin).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let admin_token = std::fs::read_to_string(&admin).unwrap();
    let log = master.log_text();
    assert!(log.contains("admin.token"), "{log}");
    assert!(!log.contains(admin_token.trim()), "the token is in the log");

    refused(tmctl(&url, &["status"]), "UNAUTHENTICATED");
    let wrong = tmctl_env(&url, &["status"], &[("TASKMASTER_TOKEN", "tm_0123")]);
    assert!(refused(wrong, "UNAUTHENTICATED").contains("not one this master knows"));

    let viewer = make_token(&url, &admin, tmp.path(), "viewer", "vera", &[]);
    let operator = make_token(&url, &admin, tmp.path(), "operator", "otto", &[]);
    let worker = make_token(&url, &admin, tmp.path(), "worker", "w1", &[]);
    let short = make_token(
        &url,
        &admin,
        tmp.path(),
        "operator",
        "brief",
        &["--expires", "1s"],
    );

    // A viewer reads but does not submit; a worker neither reads nor rolls back.
    let job = pipeline_file(tmp.path(), "ok", "cat $TM_INPUTS > $TM_OUTPUT_DIR/out");
    stdout_ok(tmctl_as(&url, &viewer, &["status"]));
    let denied = refused(
        tmctl_as(&url, &viewer, &["submit", s(&job)]),
        "PERMISSION_DENIED",
    );
    assert!(
        denied.contains("vera (viewer) may not call Submit"),
        "{denied}"
    );
    refused(tmctl_as(&url, &worker, &["status"]), "PERMISSION_DENIED");
    let rollback = refused(
        tmctl_as(&url, &worker, &["rollback", "snap-1"]),
        "PERMISSION_DENIED",
    );
    assert!(rollback.contains("needs the role admin"), "{rollback}");
    refused(
        tmctl_as(&url, &operator, &["rollback", "snap-1"]),
        "PERMISSION_DENIED",
    );
    refused(
        tmctl_as(&url, &operator, &["token", "list"]),
        "PERMISSION_DENIED",
    );

    // A worker with a token runs the operator's pipeline.
    let _worker = WorkerProcess::start_env(
        &url,
        2,
        tmp.path(),
        &[
            ("TASKMASTER_TOKEN_FILE", s(&worker)),
            ("TASKMASTER_WORKER_ID", "w1"),
        ],
    );
    let submitted = stdout_ok(tmctl_as(
        &url,
        &operator,
        &["submit", s(&job), "--wait", "--poll-ms", "50"],
    ));
    let ok_id = submitted.lines().last().unwrap().to_string();

    // The expired and the revoked are turned away.
    std::thread::sleep(Duration::from_millis(1_100));
    let expired = refused(tmctl_as(&url, &short, &["status"]), "UNAUTHENTICATED");
    assert!(expired.contains("expired"), "{expired}");
    let listed = stdout_ok(tmctl_as(&url, &admin, &["token", "list"]));
    for row in ["admin ", "vera ", "otto ", "w1 ", "brief "] {
        assert!(listed.contains(row), "{row}: {listed}");
    }
    let otto = listed.lines().find(|l| l.starts_with("otto ")).unwrap();
    assert!(
        otto.contains("operator") && otto.contains("never") && otto.contains('Z'),
        "{otto}"
    );
    assert!(!listed.contains(admin_token.trim()), "list shows a token");
    stdout_ok(tmctl_as(&url, &admin, &["token", "revoke", "vera"]));
    refused(tmctl_as(&url, &viewer, &["status"]), "UNAUTHENTICATED");
    refused(
        tmctl_as(&url, &admin, &["token", "revoke", "vera"]),
        "NOT_FOUND",
    );

    // Who did what: a failed pipeline retried with a reason, a rollback.
    let bad = pipeline_file(tmp.path(), "bad", "exit 3");
    let out = tmctl_as(
        &url,
        &operator,
        &["submit", s(&bad), "--wait", "--poll-ms", "50"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad_id = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    stdout_ok(tmctl_as(
        &url,
        &operator,
        &["retry", &bad_id, "--reason", "flaky disk on w1"],
    ));
    let snapshot = stdout_ok(tmctl_as(&url, &operator, &["snapshot", "--note", "t41"]));
    let snapshot_id = snapshot.split_whitespace().last().unwrap();
    stdout_ok(tmctl_as(
        &url,
        &admin,
        &["rollback", snapshot_id, "--yes", "--reason", "undo"],
    ));
    let status = stdout_ok(tmctl_as(&url, &operator, &["status", &bad_id]));
    assert!(status.contains("otto (operator)  submit"), "{status}");
    assert!(
        status.contains("otto (operator)  retry  reason: flaky disk on w1"),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "admin (admin)  rollback to {snapshot_id} [master]  reason: undo"
        )),
        "{status}"
    );
    let json = stdout_ok(tmctl_as(&url, &operator, &["status", &bad_id, "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let retried = &json["audit"][1];
    assert_eq!(retried["actor"], "otto (operator)", "{json}");
    assert_eq!(retried["reason"], "flaky disk on w1", "{json}");
    let ok_status = stdout_ok(tmctl_as(&url, &operator, &["status", &ok_id]));
    assert!(ok_status.contains("otto (operator)  submit"), "{ok_status}");
}

#[test]
fn t41_a_worker_acts_only_as_itself_on_its_own_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let (master, admin) = auth_master(tmp.path(), &[]);
    let url = master.url();
    let w1 = make_token(&url, &admin, tmp.path(), "worker", "w1", &[]);
    let w2 = make_token(&url, &admin, tmp.path(), "worker", "w2", &[]);
    let job = pipeline_file(tmp.path(), "held", "true");
    stdout_ok(tmctl_as(&url, &admin, &["submit", s(&job)]));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connect = |file: PathBuf| {
            let url = url.clone();
            async move {
                let creds = Credentials::from_sources(None, Some(&file)).unwrap();
                Client::connect_as(&url, None, creds).await.unwrap().raw()
            }
        };
        let (mut one, mut two) = (connect(w1).await, connect(w2).await);
        let ask = |worker_id: &str| LeaseRequest {
            worker_id: worker_id.into(),
            max_units: 1,
            wait_ms: 5_000,
            ..Default::default()
        };
        let pretend = two.lease(ask("w1")).await.unwrap_err();
        assert_eq!(pretend.code(), Code::PermissionDenied, "{pretend:?}");
        let lease = one
            .lease(ask("w1"))
            .await
            .unwrap()
            .into_inner()
            .leases
            .remove(0);
        let fail = |lease: &taskmaster_proto::v1::Lease| CommitRequest {
            server_token: lease.server_token.clone(),
            items: vec![CommitItem {
                lease: Some(lease.to_ref()),
                result: Some(commit_item::Result::Error("given up".into())),
            }],
            lease_next: None,
        };
        let stolen = two.commit(fail(&lease)).await.unwrap_err();
        assert_eq!(stolen.code(), Code::PermissionDenied, "{stolen:?}");
        assert!(stolen.message().contains("held by w1"), "{stolen:?}");
        let renew = taskmaster_proto::v1::RenewRequest {
            server_token: lease.server_token.clone(),
            leases: vec![lease.to_ref()],
        };
        assert_eq!(
            two.renew(renew).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        // The same on the Work stream: each call is checked as its unary form.
        let stream = taskmaster_worker::work_stream::WorkStream::open(two.clone())
            .await
            .unwrap();
        let streamed = stream.commit(fail(&lease)).await.unwrap_err();
        assert_eq!(streamed.code(), Code::PermissionDenied, "{streamed:?}");
        let as_other = stream.lease(ask("w1")).await.unwrap_err();
        assert_eq!(as_other.code(), Code::PermissionDenied, "{as_other:?}");
        stream.close();
        let own = one.commit(fail(&lease)).await.unwrap().into_inner();
        assert_eq!(own.results[0].code, Code::Ok as i32, "{own:?}");
    });
}

#[test]
fn t41_a_worker_is_known_by_its_certificate_and_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new(tmp.path(), "ca");
    let server = ca.server("master");
    let worker_cert = ca.client("cert-worker");
    let (master, admin) = auth_master(
        tmp.path(),
        &[
            "--tls-cert",
            s(&server.cert),
            "--tls-key",
            s(&server.key),
            "--client-ca",
            s(&ca.cert),
        ],
    );
    let url = format!("https://{}", master.addr);
    let tls = |cert: &taskmaster_tests::certs::CertFiles| {
        vec![
            ("TASKMASTER_TLS_CA", s(&ca.cert).to_string()),
            ("TASKMASTER_TLS_CERT", s(&cert.cert).to_string()),
            ("TASKMASTER_TLS_KEY", s(&cert.key).to_string()),
        ]
    };
    let operator_cert = ca.client("ops-box");
    let mut operator = tls(&operator_cert);
    operator.push(("TASKMASTER_TOKEN_FILE", s(&admin).to_string()));

    // The certificate names a worker: it runs units without a token...
    let mut worker_env = tls(&worker_cert);
    worker_env.push(("TASKMASTER_WORKER_ID", "cert-worker".into()));
    let _worker = WorkerProcess::start_env(&url, 2, tmp.path(), &pairs(&worker_env));
    let job = pipeline_file(tmp.path(), "certs", "cat $TM_INPUTS > $TM_OUTPUT_DIR/out");
    let out = tmctl_env(
        &url,
        &["submit", s(&job), "--wait", "--poll-ms", "50"],
        &pairs(&operator),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...but is a worker's identity only, and another CA's is no identity.
    refused(
        tmctl_env(&url, &["status"], &pairs(&tls(&worker_cert))),
        "PERMISSION_DENIED",
    );
    let rogue = TestCa::new(tmp.path(), "rogue");
    let mallory = rogue.client("cert-worker");
    let out = tmctl_env(
        &url,
        &["status"],
        &[
            ("TASKMASTER_TLS_CA", s(&ca.cert)),
            ("TASKMASTER_TLS_CERT", s(&mallory.cert)),
            ("TASKMASTER_TLS_KEY", s(&mallory.key)),
            ("TASKMASTER_TOKEN_FILE", s(&admin)),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "another CA's certificate was let in"
    );
}

#[test]
fn t41_the_sdk_sends_its_token_and_gets_the_same_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (master, admin) = auth_master(tmp.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let creds = Credentials::from_sources(None, Some(&admin)).unwrap();
        let client = Client::connect_as(&master.url(), None, creds)
            .await
            .unwrap();
        let made = client
            .create_token("sdk-viewer", Role::Viewer, 0)
            .await
            .unwrap();
        let viewer = Client::connect_as(
            &master.url(),
            None,
            Credentials::token(&made.token).unwrap(),
        )
        .await
        .unwrap();
        assert!(viewer.list().await.unwrap().is_empty());
        let err = viewer.snapshot("no").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
        let none = Client::connect(&master.url()).await.unwrap();
        assert_eq!(
            none.list().await.unwrap_err().code(),
            Some(Code::Unauthenticated)
        );
    });
}

/// The health service's answer for the whole server ("").
async fn health(url: &str) -> Result<i32, tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(reply.into_inner().status)
}

#[test]
fn t41_health_says_not_serving_while_the_disk_is_full_and_serving_again_after() {
    use taskmaster_tests::faults::procs::{MasterSpec, TmpfsNamespace};
    use tonic_health::pb::health_check_response::ServingStatus;
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let Some(ns) = TmpfsNamespace::new(&tmp.path().join("tmpfs"), "4m", &logs) else {
        eprintln!("skipped: this machine does not allow `unshare -m` and a tmpfs mount");
        return;
    };
    let spec = MasterSpec {
        data_dir: ns.dir.join("data"),
        listen: format!("127.0.0.1:{}", free_port()),
        lease_ms: 60_000,
        store: Some(tmp.path().join("store")),
        wrapper: ns.wrapper(),
        log_dir: logs,
        extra_args: Vec::new(),
        tls: false,
    };
    let master = spec.start(None, 0).unwrap_or_else(|e| panic!("{e}"));
    let url = master.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let serving = ServingStatus::Serving as i32;
    assert_eq!(rt.block_on(health(&url)).unwrap(), serving);

    let filler = ns.outside(&ns.dir.join("filler"));
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&filler).unwrap();
        for chunk in [64 * 1024, 4096, 512, 1] {
            let zeros = vec![0u8; chunk];
            while file.write_all(&zeros).is_ok() {}
        }
    }
    let client = rt.block_on(Client::connect(&url)).unwrap();
    let job = pipeline_file(tmp.path(), "fill", "true");
    let spec_of = |i: usize| {
        let mut spec = taskmaster_client::pipeline_file::load_pipeline(&job, &[]).unwrap();
        spec.name = format!("fill{i}");
        spec
    };
    let refused = (0..500)
        .find_map(|i| rt.block_on(client.submit(spec_of(i))).err())
        .expect("a change is refused once the disk is full");
    assert_eq!(refused.code(), Some(Code::ResourceExhausted), "{refused}");
    let not_serving = ServingStatus::NotServing as i32;
    wait_until("health to say NOT_SERVING", Duration::from_secs(10), || {
        (rt.block_on(health(&url)).ok() == Some(not_serving)).then_some(())
    });

    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "health to say SERVING again",
        Duration::from_secs(30),
        || (rt.block_on(health(&url)).ok() == Some(serving)).then_some(()),
    );
    rt.block_on(client.submit(spec_of(999))).unwrap();
}

#[test]
fn t41_each_limit_refuses_naming_its_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (master, admin) = auth_master(
        tmp.path(),
        &[
            "--rate-per-identity",
            "5",
            "--max-long-polls",
            "1",
            "--max-work-streams",
            "1",
            "--max-pipelines",
            "1",
            "--max-groups-per-pipeline",
            "1",
            "--max-units-per-pipeline",
            "1",
        ],
    );
    let url = master.url();
    let chatty = make_token(&url, &admin, tmp.path(), "viewer", "chatty", &[]);
    let w1 = make_token(&url, &admin, tmp.path(), "worker", "w1", &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |file: &Path| {
        let creds = Credentials::from_sources(None, Some(file)).unwrap();
        rt.block_on(Client::connect_as(&url, None, creds)).unwrap()
    };

    // Pipelines held, groups and units per pipeline.
    write_file(&tmp.path().join("data/a.txt"), "a\n");
    write_file(&tmp.path().join("data/b.txt"), "b\n");
    let two_units = tmp.path().join("two-units.toml");
    write_file(
        &two_units,
        "name = \"wide\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"data/*.txt\"]\n",
    );
    let two_groups = tmp.path().join("two-groups.toml");
    write_file(
        &two_groups,
        "name = \"deep\"\n[[groups]]\nname = \"a\"\ncommand = [\"true\"]\n\
         [[groups]]\nname = \"b\"\ncommand = [\"true\"]\nafter = [\"a\"]\n",
    );
    let one = tmp.path().join("one.toml");
    write_file(
        &one,
        "name = \"one\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\n",
    );
    let units = refused(
        tmctl_as(&url, &admin, &["submit", s(&two_units)]),
        "INVALID_ARGUMENT",
    );
    assert!(units.contains("--max-units-per-pipeline"), "{units}");
    let groups = refused(
        tmctl_as(&url, &admin, &["submit", s(&two_groups)]),
        "INVALID_ARGUMENT",
    );
    assert!(groups.contains("--max-groups-per-pipeline"), "{groups}");
    stdout_ok(tmctl_as(&url, &admin, &["submit", s(&one)]));
    let held = refused(
        tmctl_as(&url, &admin, &["submit", s(&one)]),
        "RESOURCE_EXHAUSTED",
    );
    assert!(held.contains("--max-pipelines 1"), "{held}");

    // The rate of one identity, which does not slow another.
    let viewer = connect(&chatty);
    let over = (0..50)
        .find_map(|_| rt.block_on(viewer.list()).err())
        .expect("a flood is refused");
    assert_eq!(over.code(), Some(Code::ResourceExhausted), "{over}");
    assert!(over.to_string().contains("--rate-per-identity"), "{over}");
    stdout_ok(tmctl_as(&url, &admin, &["token", "list"]));

    // Lease long-polls and Work streams.
    let worker = connect(&w1);
    rt.block_on(async {
        let ask = LeaseRequest {
            worker_id: "w1".into(),
            max_units: 1,
            wait_ms: 3_000,
            ..Default::default()
        };
        // The one unit first, so the next lease call waits.
        let got = worker.raw().lease(ask.clone()).await.unwrap().into_inner();
        assert_eq!(got.leases.len(), 1);
        let mut waiting = worker.raw();
        let polling = tokio::spawn({
            let ask = ask.clone();
            async move { waiting.lease(ask).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = worker.raw().lease(ask.clone()).await.unwrap_err();
        assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
        assert!(second.message().contains("--max-long-polls"), "{second:?}");
        assert!(
            polling
                .await
                .unwrap()
                .unwrap()
                .into_inner()
                .leases
                .is_empty()
        );

        let (_keep, requests) = tokio::sync::mpsc::channel(1);
        let stream = tokio_stream_of(requests);
        let _open = worker.raw().work(stream).await.unwrap();
        let (_keep2, requests2) = tokio::sync::mpsc::channel(1);
        let refused = worker
            .raw()
            .work(tokio_stream_of(requests2))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("--max-work-streams"),
            "{refused:?}"
        );
    });
}

#[test]
fn t41_one_identity_holds_at_most_its_share_of_waiting_lease_calls() {
    use taskmaster_proto::v1::{WorkRequest, work_reply, work_request};
    let tmp = tempfile::tempdir().unwrap();
    let (master, admin) = auth_master(tmp.path(), &["--max-long-polls-per-identity", "1"]);
    let url = master.url();
    let w1 = make_token(&url, &admin, tmp.path(), "worker", "w1", &[]);
    let w2 = make_token(&url, &admin, tmp.path(), "worker", "w2", &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |file: &Path| {
        let creds = Credentials::from_sources(None, Some(file)).unwrap();
        rt.block_on(Client::connect_as(&url, None, creds)).unwrap()
    };
    let (one, two) = (connect(&w1), connect(&w2));
    let ask = |worker: &str, wait_ms: u32| LeaseRequest {
        worker_id: worker.into(),
        max_units: 1,
        wait_ms,
        ..Default::default()
    };
    rt.block_on(async {
        // No work: w1's first call waits, its second is refused, w2's waits.
        // The first waits as long as a lease call may: each refusal below
        // is answered 5 to 15 s after its call (LONG_POLL_REFUSAL_PAUSE).
        let mut waiting = one.raw();
        let first = tokio::spawn({
            let ask = ask("w1", 60_000);
            async move { waiting.lease(ask).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = one.raw().lease(ask("w1", 1_000)).await.unwrap_err();
        assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
        assert!(
            second.message().contains("--max-long-polls-per-identity"),
            "{second:?}"
        );
        two.raw().lease(ask("w2", 100)).await.unwrap();

        // On a Work stream too: its second waiting lease call is refused
        // while the unary one still waits.
        let (send, requests) = tokio::sync::mpsc::channel(4);
        let mut replies = one
            .raw()
            .work(tokio_stream_of(requests))
            .await
            .unwrap()
            .into_inner();
        send.send(WorkRequest {
            id: 7,
            call: Some(work_request::Call::Lease(ask("w1", 1_000))),
        })
        .await
        .unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.id, 7);
        match reply.result {
            Some(work_reply::Result::Error(e)) => {
                assert_eq!(e.code, Code::ResourceExhausted as i32, "{e:?}");
                assert!(e.message.contains("--max-long-polls-per-identity"), "{e:?}");
            }
            other => panic!("a second waiting lease call went through: {other:?}"),
        }
        assert!(!first.is_finished(), "the first call still waits");
        first.abort();
    });
}

/// A request stream for `Work` fed from `rx`.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<taskmaster_proto::v1::WorkRequest>,
) -> impl futures_util::Stream<Item = taskmaster_proto::v1::WorkRequest> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[test]
fn t41_a_connection_over_the_limit_is_closed_and_the_next_gets_in_once_one_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        30_000,
        &["--max-connections", "2"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = master.url();
    let a = rt.block_on(Client::connect(&url)).unwrap();
    let b = rt.block_on(Client::connect(&url)).unwrap();
    rt.block_on(a.list()).unwrap();
    rt.block_on(b.list()).unwrap();
    let third = rt.block_on(async {
        match Client::connect(&url).await {
            Ok(c) => c.list().await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    assert!(third.is_err(), "a third connection was served");
    assert!(master.log_text().contains("--max-connections"));
    drop(a);
    wait_until("a connection to be let in", Duration::from_secs(10), || {
        rt.block_on(async { Client::connect(&url).await.ok()?.list().await.ok() })
    });
    rt.block_on(b.list()).unwrap();
}

/// The fuzz target's function (fuzz/fuzz_targets/auth_metadata.rs) on
/// random bytes and on mutations of its seed, as a quick stand-in for a
/// fuzzing run.
#[test]
fn t41_auth_metadata_parsing_never_panics_on_random_bytes() {
    use rand::Rng as _;
    let seeds = taskmaster_tests::fuzzing::seeds();
    let (_, seed) = seeds
        .iter()
        .find(|(name, _)| *name == "auth_metadata")
        .unwrap();
    let mut rng = rand::rng();
    for round in 0..20_000 {
        let mut data = if round % 2 == 0 {
            seed.clone()
        } else {
            let len = rng.random_range(0..300);
            (0..len).map(|_| rng.random()).collect()
        };
        for _ in 0..rng.random_range(0..4) {
            if !data.is_empty() {
                let at = rng.random_range(0..data.len());
                data[at] = rng.random();
            }
        }
        taskmaster_tests::fuzzing::auth_metadata(&data);
    }
}
