//! Fencing across starts of a master, with the real binary and two
//! workers (hand-driven gRPC clients, so each step happens exactly when the
//! test says): a master started on an old copy of its data dir, a rollback
//! across a restart, and a plain restart, whose leases stay valid.
//!
//! The argument these test is in ARCHITECTURE.md ("Fencing"): every start
//! journals a random incarnation; a lease is (lease id, incarnation); the
//! attempt's directory names both, and a master accepts a renewal or
//! commit only of a lease its own journal granted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use taskmaster_client::Client;
use taskmaster_proto::v1::*;
use taskmaster_tests::*;
use tonic::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A one-unit pipeline (its command never runs: the workers are the test).
fn one_unit_pipeline(dir: &Path) -> PathBuf {
    write_file(&dir.join("data/in.txt"), "x");
    let path = dir.join("pipeline.toml");
    write_file(
        &path,
        "name = \"fenced\"\n[[groups]]\nname = \"g\"\ncommand = [\"true\"]\ninputs = [\"data/*.txt\"]\n",
    );
    path
}

fn submit(url: &str, pipeline: &Path) -> String {
    let out = tmctl_ok(url, &["submit", pipeline.to_str().unwrap()]);
    out.lines().last().expect("an id line").trim().to_string()
}

/// A worker: a client of one master at a time and its own id.
struct HandWorker {
    id: &'static str,
}

impl HandWorker {
    fn lease(&self, url: &str) -> Lease {
        runtime().block_on(async {
            let client = Client::connect(url).await.unwrap();
            let request = LeaseRequest {
                worker_id: self.id.into(),
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
            assert_eq!(leases.len(), 1, "{} got no lease", self.id);
            leases.remove(0)
        })
    }

    /// Writes the attempt's output file with `text`, as a task would.
    fn write(&self, lease: &Lease, text: &str) -> PathBuf {
        let path = Path::new(&lease.store_root)
            .join(&lease.output_prefix)
            .join("out.txt");
        write_file(&path, text);
        path
    }

    fn commit(&self, url: &str, lease: &Lease, text_len: u64) -> ItemStatus {
        let request = CommitRequest {
            server_token: lease.server_token.clone(),
            items: vec![CommitItem {
                lease: Some(lease.to_ref()),
                result: Some(commit_item::Result::Outputs(Outputs {
                    files: vec![OutputFile {
                        name: "out.txt".into(),
                        size_bytes: text_len,
                    }],
                })),
            }],
            lease_next: None,
        };
        self.call(url, |client| async move {
            client
                .raw()
                .commit(request)
                .await
                .map(|r| r.into_inner().results)
        })
    }

    fn renew(&self, url: &str, lease: &Lease) -> ItemStatus {
        let request = RenewRequest {
            server_token: lease.server_token.clone(),
            leases: vec![lease.to_ref()],
        };
        self.call(url, |client| async move {
            client
                .raw()
                .renew(request)
                .await
                .map(|r| r.into_inner().results)
        })
    }

    fn call<F>(&self, url: &str, call: impl FnOnce(Client) -> F) -> ItemStatus
    where
        F: std::future::Future<Output = Result<Vec<ItemStatus>, tonic::Status>>,
    {
        runtime().block_on(async {
            let client = Client::connect(url).await.unwrap();
            let mut results = call(client).await.unwrap();
            assert_eq!(results.len(), 1);
            results.remove(0)
        })
    }
}

const W1: HandWorker = HandWorker { id: "worker-1" };
const W2: HandWorker = HandWorker { id: "worker-2" };

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn assert_refused_as_not_granted(status: &ItemStatus) {
    assert_eq!(status.code, Code::Aborted as i32, "{status:?}");
    assert!(
        status.message.contains("was not granted by this master")
            || status.message.contains("went back to the queue"),
        "{status:?}"
    );
}

/// Stop a master, keep a copy of its data dir, restart it and let worker 1
/// lease; kill it and start a master on the copy (same store): worker 2
/// gets the same lease id but another incarnation, so another directory,
/// and worker 1's commit and renewal are refused there.
#[test]
fn t20_a_master_on_an_old_copy_of_its_data_dir_is_fenced() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = one_unit_pipeline(&tmp.path().join("job"));
    let data = tmp.path().join("data");
    let store = tmp.path().join("store");
    let store_arg = ["--store", store.to_str().unwrap()];
    let mut master = MasterProcess::start_with(&data, "127.0.0.1:0", 60_000, &store_arg);
    let id = submit(&master.url(), &pipeline);
    master.kill();
    let copy = tmp.path().join("data-copy");
    copy_dir(&data, &copy);

    let mut master = MasterProcess::start_with(&data, "127.0.0.1:0", 60_000, &store_arg);
    let first = W1.lease(&master.url());
    let first_file = W1.write(&first, "worker 1, half done");
    master.kill();

    let restored = MasterProcess::start_with(&copy, "127.0.0.1:0", 60_000, &store_arg);
    let url = restored.url();
    let second = W2.lease(&url);
    assert_eq!(
        (second.lease_id, &second.server_token),
        (first.lease_id, &first.server_token),
        "the copy hands out the same lease id under the same token: only the incarnation tells them apart"
    );
    assert_ne!(second.incarnation, first.incarnation);
    assert_ne!(second.output_prefix, first.output_prefix);
    let second_file = W2.write(&second, "worker 2");
    assert_eq!(
        std::fs::read_to_string(&first_file).unwrap(),
        "worker 1, half done",
        "worker 2's attempt must not touch worker 1's directory"
    );

    assert_refused_as_not_granted(&W1.renew(&url, &first));
    assert_refused_as_not_granted(&W1.commit(&url, &first, 19));
    let ok = W2.commit(&url, &second, 8);
    assert_eq!(ok.code, 0, "{ok:?}");
    // A repeat of worker 1's commit is no "repeat after a lost reply".
    assert_refused_as_not_granted(&W1.commit(&url, &first, 19));

    let listed = committed_outputs(&url, &id, "g");
    assert_eq!(listed, [second_file.display().to_string()]);
    assert_eq!(std::fs::read_to_string(&listed[0]).unwrap(), "worker 2");
}

/// A snapshot, a lease to worker 1, a restart, a rollback: worker 2's
/// lease of the unit has a new id and incarnation, worker 1's is refused.
#[test]
fn t21_a_rollback_across_a_restart_is_fenced() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = one_unit_pipeline(&tmp.path().join("job"));
    let data = tmp.path().join("data");
    let mut master = MasterProcess::start(&data, "127.0.0.1:0", 60_000);
    let id = submit(&master.url(), &pipeline);
    let out = tmctl_ok(&master.url(), &["snapshot", "--note", "before"]);
    let snapshot = out.split_whitespace().last().unwrap().to_string();
    let first = W1.lease(&master.url());
    W1.write(&first, "worker 1");
    master.kill();

    let master = MasterProcess::start(&data, "127.0.0.1:0", 60_000);
    let url = master.url();
    tmctl_ok(&url, &["rollback", &snapshot, "--yes"]);
    let second = W2.lease(&url);
    assert_ne!(second.output_prefix, first.output_prefix);
    assert_ne!(second.incarnation, first.incarnation);
    let refused = W1.commit(&url, &first, 8);
    assert_ne!(refused.code, 0, "{refused:?}");
    let second_file = W2.write(&second, "worker 2");
    assert_eq!(W2.commit(&url, &second, 8).code, 0);
    assert_eq!(
        committed_outputs(&url, &id, "g"),
        [second_file.display().to_string()]
    );
}

/// A restart of the same journal keeps the leases it granted: worker 1
/// renews and commits across it.
#[test]
fn t22_leases_granted_before_a_restart_of_the_same_journal_stay_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = one_unit_pipeline(&tmp.path().join("job"));
    let data = tmp.path().join("data");
    let mut master = MasterProcess::start(&data, "127.0.0.1:0", 60_000);
    let id = submit(&master.url(), &pipeline);
    let lease = W1.lease(&master.url());
    let file = W1.write(&lease, "worker 1");
    master.kill();

    let master = MasterProcess::start(&data, "127.0.0.1:0", 60_000);
    let url = master.url();
    assert_eq!(W1.renew(&url, &lease).code, 0);
    let mut stale = lease.clone();
    stale.incarnation ^= 1;
    assert_refused_as_not_granted(&W2.commit(&url, &stale, 8));
    assert_eq!(W1.commit(&url, &lease, 8).code, 0);
    assert_eq!(
        committed_outputs(&url, &id, "g"),
        [file.display().to_string()]
    );
    wait_until(
        "the status to say succeeded",
        Duration::from_secs(10),
        || (status_json(&url, &id)["state"] == "succeeded").then_some(()),
    );
}
