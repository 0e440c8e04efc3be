//! A real master started in-process, for tests that need no separate
//! process (nothing to kill) and the SDK's and tmctl's tests: the master,
//! started in-process on 127.0.0.1 port 0 with its own data dir; a real
//! in-process worker when units must really run; and [`HandWorker`], which
//! leases and commits units through the master's worker RPCs by hand, for
//! tests that need exact control over when units finish and how they fail.
//!
//! Everything started here stops when its handle is dropped, so a failing
//! test leaves nothing running; `stop()` stops it in order and checks that
//! it stopped cleanly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_client::Client;
use taskmaster_master::in_process::InProcessMaster;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    CommitItem, CommitRequest, GroupSpec, Lease, LeaseRef, LeaseRequest, OutputFile, Outputs,
    PipelineSpec, commit_item,
};
use taskmaster_worker::{WorkerConfig, WorkerError, WorkerStats, run_worker, stock_registry};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
// The channel every client uses: it sends the caller's token (issue 24).
use taskmaster_proto::credentials::MasterChannel as Channel;

/// Longest any one wait in these tests may take before the test fails:
/// generous, because the tests share two cores with builds.
pub const WAIT: Duration = Duration::from_secs(60);

/// Lease time of the test master. Long, so a lease held by hand never
/// expires mid-test on a loaded machine (the worker renews its own).
const LEASE_MS: u64 = 60_000;

/// The command every test pipeline runs: one output file per unit.
pub const SCRIPT_OK: &str = r#"echo hi > "$TM_OUTPUT_DIR/out""#;

/// A real master served on 127.0.0.1, port chosen by the OS, with its data
/// dir in a fresh temporary directory; optionally with a real worker.
pub struct TestMaster {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Stopped before the master, so it never polls a stopped master (and
    /// dropped before it: fields drop in order).
    worker: Option<TestWorker>,
    served: InProcessMaster,
    /// Holds the data dir (journal, store) until the master is gone.
    _data: tempfile::TempDir,
}

impl TestMaster {
    /// Opens a master on a new data dir and serves it.
    pub async fn start() -> TestMaster {
        let data = tempfile::tempdir().expect("temporary data dir");
        let config = MasterConfig {
            lease_ms: LEASE_MS,
            ..MasterConfig::new(data.path().join("data"))
        };
        let served = InProcessMaster::start(&config)
            .await
            .expect("the master starts");
        TestMaster {
            url: served.url().to_string(),
            worker: None,
            served,
            _data: data,
        }
    }

    /// A master with a real worker (the stock `exec` task) leasing from it.
    pub async fn with_worker() -> TestMaster {
        let mut master = TestMaster::start().await;
        master.worker = Some(TestWorker::start(&master.url));
        master
    }

    /// The master itself.
    pub fn master(&self) -> &Arc<Master> {
        self.served.master()
    }

    /// A new SDK client connected to this master.
    pub async fn client(&self) -> Client {
        Client::connect(&self.url).await.expect("client connects")
    }

    /// Stops the worker (if any), then the server, then closes the journal;
    /// fails the test if either did not stop cleanly and in time.
    pub async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop().await;
        }
        let TestMaster { served, _data, .. } = self;
        served
            .stop(WAIT)
            .await
            .expect("the master stops cleanly and in time");
    }
}

/// A real worker running in this process, with the stock tasks.
pub struct TestWorker {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<WorkerStats, WorkerError>>>,
}

impl TestWorker {
    pub fn start(master_url: &str) -> TestWorker {
        let mut config = WorkerConfig::new(master_url);
        config.slots = 2;
        config.worker_id = "client-tests".into();
        // Short long-polls and grace, so stopping it is quick.
        config.lease_wait_ms = 1_000;
        config.grace_ms = 5_000;
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_worker(config, stock_registry(), async {
            let _ = stopped.await;
        }));
        TestWorker {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Asks the worker to stop and waits until it has.
    pub async fn stop(mut self) -> WorkerStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("the worker is running");
        tokio::time::timeout(WAIT, handle)
            .await
            .expect("the worker stops in time")
            .expect("the worker task did not panic")
            .expect("the worker configuration is valid")
    }
}

impl Drop for TestWorker {
    /// Stops the worker at once. A unit already running keeps running until
    /// its command ends (dropping `run_worker` does not cancel units on the
    /// blocking pool), so test commands must be quick.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Does a worker's part by hand through the raw gRPC client: lease units,
/// write their outputs under the attempt's prefix, commit or fail them.
pub struct HandWorker {
    raw: TaskMasterClient<Channel>,
}

impl HandWorker {
    pub fn new(client: &Client) -> HandWorker {
        HandWorker { raw: client.raw() }
    }

    /// Leases exactly `count` units, which must be ready now; sorted by unit.
    pub async fn lease(&self, count: u32) -> Vec<Lease> {
        let request = LeaseRequest {
            worker_id: "hand".into(),
            max_units: count,
            wait_ms: 0,
            // As the stock worker asks: the tests then check the expansion.
            compact: true,
            worker_slots: 0,
        };
        let reply = self
            .raw
            .clone()
            .lease(request)
            .await
            .expect("lease call")
            .into_inner();
        let mut leases = taskmaster_proto::compact::expand(reply.leases, &reply.lease_groups)
            .expect("a well-formed compact reply");
        assert_eq!(leases.len(), count as usize, "leases granted: {leases:?}");
        leases.sort_by_key(unit_of);
        leases
    }

    /// Writes one file per name under the attempt's output prefix and
    /// commits them, in that order; returns their full paths.
    pub async fn succeed(&self, lease: &Lease, names: &[&str]) -> Vec<String> {
        let dir = Path::new(&lease.store_root).join(&lease.output_prefix);
        std::fs::create_dir_all(&dir).expect("output dir");
        let mut files = Vec::new();
        let mut paths = Vec::new();
        for name in names {
            let path = dir.join(name);
            std::fs::write(&path, "payload").expect("output file");
            files.push(OutputFile {
                name: name.to_string(),
                size_bytes: 7,
            });
            paths.push(path.to_string_lossy().into_owned());
        }
        let result = commit_item::Result::Outputs(Outputs { files });
        self.commit(lease, result).await;
        paths
    }

    /// Reports a failed attempt with this error text.
    pub async fn fail(&self, lease: &Lease, error: &str) {
        self.commit(lease, commit_item::Result::Error(error.into()))
            .await;
    }

    async fn commit(&self, lease: &Lease, result: commit_item::Result) {
        let request = CommitRequest {
            server_token: lease.server_token.clone(),
            items: vec![CommitItem {
                lease: Some(LeaseRef {
                    unit: lease.unit.clone(),
                    lease_id: lease.lease_id,
                    config_version: lease.config_version,
                    incarnation: lease.incarnation,
                }),
                result: Some(result),
            }],
            lease_next: None,
        };
        let results = self
            .raw
            .clone()
            .commit(request)
            .await
            .expect("commit call")
            .into_inner()
            .results;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].code, Code::Ok as i32, "{results:?}");
    }
}

/// The unit index a lease is for.
pub fn unit_of(lease: &Lease) -> u32 {
    lease.unit.as_ref().expect("lease names its unit").unit
}

/// True if `id` is `<name>-<8 lower-case hex digits>`, the master's form.
pub fn is_pipeline_id(id: &str, name: &str) -> bool {
    id.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 8
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

/// A pipeline `name` with parameter `ds=2026-11-21` and one exec group
/// `extract` running [`SCRIPT_OK`], one unit per input file (created as
/// `in-N.txt` in `dir`). `max_attempts` 0 means the master's default.
pub fn spec(dir: &Path, name: &str, units: usize, max_attempts: u32) -> PipelineSpec {
    let inputs = (0..units)
        .map(|i| {
            let path = dir.join(format!("{name}-in-{i}.txt"));
            std::fs::write(&path, format!("input {i}\n")).expect("input file");
            path.to_string_lossy().into_owned()
        })
        .collect();
    PipelineSpec {
        name: name.into(),
        params: [("ds".to_string(), "2026-11-21".to_string())].into(),
        groups: vec![GroupSpec {
            name: "extract".into(),
            task: "exec".into(),
            command: vec!["sh".into(), "-c".into(), SCRIPT_OK.into()],
            workdir: dir.to_string_lossy().into_owned(),
            inputs,
            max_attempts,
            retry_delay_ms: Some(0), // failed attempts run again at once in tests
            ..Default::default()
        }],
    }
}

/// Submits pipeline `good` (group `extract`, two units) and commits both by
/// hand: unit 1 first with files `b` and `a`, then unit 0 with `a`.
/// Returns its id and its output paths in unit order.
pub async fn finish_good(client: &Client, dir: &Path) -> (String, Vec<String>) {
    let id = client
        .submit(spec(dir, "good", 2, 0))
        .await
        .expect("submit");
    let hand = HandWorker::new(client);
    let leases = hand.lease(2).await;
    let unit_1 = hand.succeed(&leases[1], &["b", "a"]).await;
    let unit_0 = hand.succeed(&leases[0], &["a"]).await;
    (id, [unit_0, unit_1].concat())
}

/// Submits pipeline `failing` (group `extract`, two units, three attempts
/// each): unit 0 commits, unit 1 fails all three attempts with `exit
/// status 1`, `exit status 2` and `exit status 7`. Returns its id.
pub async fn finish_failing(client: &Client, dir: &Path) -> String {
    let id = client
        .submit(spec(dir, "failing", 2, 3))
        .await
        .expect("submit");
    let hand = HandWorker::new(client);
    let leases = hand.lease(2).await;
    hand.succeed(&leases[0], &["out"]).await;
    hand.fail(&leases[1], "exit status 1").await;
    for error in ["exit status 2", "exit status 7"] {
        let retry = hand.lease(1).await;
        assert_eq!(unit_of(&retry[0]), 1);
        hand.fail(&retry[0], error).await;
    }
    id
}
