//! The real master (`taskmaster_master`), started in-process on 127.0.0.1
//! port 0 for the worker's tests, behind a thin fault-injecting layer.
//!
//! The layer implements the gRPC service by forwarding every call, as it
//! came, to the master's own handlers (`taskmaster_master::service::Service`);
//! every answer is the master's. A worker call made on the `Work` stream
//! goes through the same faults as its unary form (the layer serves the
//! stream itself, each request by its unary handler), so the worker's
//! tests hold for both of the worker's ways of calling. It records each worker call (lease, renew,
//! commit, release) with the master's answer, so tests wait on events
//! instead of sleeping, and on a test's say-so it injects faults of the
//! network around the master: it loses commit replies after the master
//! handled the commit, holds renewals back (a partition), or sends the
//! worker's calls on to another real master (a worker talking to the wrong
//! store). The test's own calls (submit, status, outputs) always reach the
//! master it started.

use std::collections::VecDeque;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::Stream;
use parking_lot::Mutex;
use taskmaster_master::clock::MonotonicClock;
use taskmaster_master::runtime::{Master, MasterConfig};
use taskmaster_master::service::Service;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::task_master_server::{TaskMaster, TaskMasterServer};
use taskmaster_proto::v1::*;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// How long a test waits for anything it expects before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a condition on the master's state is polled.
const POLL_INTERVAL_MS: u64 = 10;
/// Calls shown when a wait for calls times out.
const CALLS_SHOWN_MAX: usize = 20;

/// Opens a real master on a new store in `data_dir`, on the real clock.
pub fn open_master(data_dir: &Path, lease_ms: u64) -> Arc<Master> {
    let config = MasterConfig {
        lease_ms,
        ..MasterConfig::new(data_dir.to_path_buf())
    };
    let master = Master::open(&config, Arc::new(MonotonicClock::default()))
        .expect("open a master on a new data dir");
    Arc::new(master)
}

/// The master as its users see it: the generated gRPC client, for
/// submitting pipelines and reading their state.
#[derive(Clone)]
pub struct Admin {
    client: TaskMasterClient<Channel>,
}

impl Admin {
    /// A client for `url`; it connects on first use.
    pub fn connect(url: &str) -> Admin {
        let channel = Endpoint::from_shared(url.to_string())
            .expect("a valid URL")
            .connect_lazy();
        Admin {
            client: TaskMasterClient::new(channel),
        }
    }

    pub async fn submit(&self, spec: PipelineSpec) -> String {
        let request = SubmitRequest { spec: Some(spec) };
        let reply = self.client.clone().submit(request).await;
        reply.expect("submit a pipeline").into_inner().pipeline_id
    }

    pub async fn status(&self, pipeline_id: &str) -> PipelineStatus {
        let request = GetStatusRequest {
            pipeline_id: pipeline_id.to_string(),
        };
        let reply = self.client.clone().get_status(request).await;
        reply.expect("get a pipeline's status").into_inner()
    }

    pub async fn pipelines(&self) -> Vec<PipelineStatus> {
        let reply = self
            .client
            .clone()
            .list_pipelines(ListPipelinesRequest::default())
            .await;
        reply.expect("list pipelines").into_inner().pipelines
    }

    /// The committed outputs of one group, in unit order.
    pub async fn outputs(&self, pipeline_id: &str, group: &str) -> Vec<UnitOutputs> {
        // These tests' groups fit in one page.
        let request = ListOutputsRequest {
            pipeline_id: pipeline_id.to_string(),
            group: group.to_string(),
            ..ListOutputsRequest::default()
        };
        let reply = self.client.clone().list_outputs(request).await;
        reply.expect("list outputs").into_inner().units
    }

    /// Polls the pipeline's status until `done` holds, and returns it.
    pub async fn wait_for_status(
        &self,
        pipeline_id: &str,
        what: &str,
        done: impl Fn(&PipelineStatus) -> bool,
    ) -> PipelineStatus {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let status = self.status(pipeline_id).await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the master says {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }
}

/// The unit counts of `group` in a status.
pub fn counts(status: &PipelineStatus, group: &str) -> UnitCounts {
    let found = status.groups.iter().find(|g| g.name == group);
    let group = found.unwrap_or_else(|| panic!("no group {group:?} in {status:#?}"));
    group.counts.unwrap_or_default()
}

/// True once the pipeline is in `state`.
pub fn is(state: PipelineState) -> impl Fn(&PipelineStatus) -> bool {
    move |status| status.state == state as i32
}

/// A worker call that reached the layer, with the real master's answer.
#[derive(Clone, Debug)]
pub enum Call {
    Lease {
        request: LeaseRequest,
        answer: Result<LeaseResponse, Status>,
    },
    Renew {
        request: RenewRequest,
        answer: Result<RenewResponse, Status>,
    },
    Commit {
        request: CommitRequest,
        answer: Result<CommitResponse, Status>,
        /// The master answered, but the worker got an error instead.
        reply_lost: bool,
    },
    Release {
        request: ReleaseRequest,
        answer: Result<ReleaseResponse, Status>,
    },
}

/// What the layer does to calls, set by the test, and what it saw.
pub struct Faults {
    /// The master this layer fronts; the test's own calls go here.
    home: Arc<Service>,
    /// The same master, whose shutdown ends the layer's `Work` streams.
    home_master: Arc<Master>,
    /// The master the worker's calls are forwarded to; tests may switch it.
    target: Mutex<Arc<Service>>,
    /// Errors the worker gets instead of the next commit replies, in order.
    /// The master handles those commits; only their replies are lost.
    lost_commit_replies: Mutex<VecDeque<Status>>,
    /// While true, renew calls wait before reaching the master (bounded
    /// by [`EVENT_TIMEOUT`]), as if the network dropped them for a while.
    renewals_held: watch::Sender<bool>,
    /// While true, `Work` streams are refused as UNIMPLEMENTED, as by a
    /// master built before the stream existed.
    streams_refused: AtomicBool,
    /// `Work` streams the worker asked to open (refused or not).
    streams_asked: AtomicU64,
    /// Every worker call so far, in the order the master answered them.
    calls: Mutex<Vec<Call>>,
    /// Bumped after each recorded call, to wake tests waiting on calls.
    recorded: watch::Sender<u64>,
}

impl Faults {
    fn new(master: &Arc<Master>) -> Faults {
        let home = Arc::new(Service::new(Arc::clone(master)));
        Faults {
            target: Mutex::new(Arc::clone(&home)),
            home,
            home_master: Arc::clone(master),
            lost_commit_replies: Mutex::new(VecDeque::new()),
            renewals_held: watch::channel(false).0,
            streams_refused: AtomicBool::new(false),
            streams_asked: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
            recorded: watch::channel(0).0,
        }
    }

    /// Loses the replies of the next commits: the worker gets these errors
    /// after the master handled each commit.
    pub fn lose_commit_replies(&self, errors: impl IntoIterator<Item = Status>) {
        self.lost_commit_replies.lock().extend(errors);
    }

    /// Holds renew calls back until [`Faults::pass_renewals`].
    pub fn hold_renewals(&self) {
        self.renewals_held.send_replace(true);
    }

    /// Lets held and later renew calls through.
    pub fn pass_renewals(&self) {
        self.renewals_held.send_replace(false);
    }

    /// From now on, forwards the worker's calls to `other` instead (same
    /// address, another master and store: another server token).
    pub fn redirect_to(&self, other: &TestMaster) {
        *self.target.lock() = Arc::new(Service::new(Arc::clone(&other.master)));
    }

    /// From now on, refuses `Work` streams as a master without them would.
    pub fn refuse_streams(&self) {
        self.streams_refused.store(true, Ordering::Relaxed);
    }

    /// How many `Work` streams the worker asked to open.
    pub fn streams_asked(&self) -> u64 {
        self.streams_asked.load(Ordering::Relaxed)
    }

    /// Every worker call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// Waits until `pick` finds what it looks for in the calls so far.
    pub async fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&[Call]) -> Option<T>) -> T {
        let mut recorded = self.recorded.subscribe();
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            recorded.borrow_and_update();
            if let Some(found) = pick(&self.calls.lock()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, recorded.changed())
                .await
                .is_err()
            {
                let calls = self.calls();
                let last = &calls[calls.len().saturating_sub(CALLS_SHOWN_MAX)..];
                panic!("timed out waiting for {what}; the last calls: {last:#?}");
            }
        }
    }

    fn target(&self) -> Arc<Service> {
        Arc::clone(&self.target.lock())
    }

    fn record(&self, call: Call) {
        self.calls.lock().push(call);
        self.recorded.send_modify(|n| *n += 1);
    }

    async fn renewal_may_pass(&self) {
        let mut held = self.renewals_held.subscribe();
        let _ = tokio::time::timeout(EVENT_TIMEOUT, held.wait_for(|held| !held)).await;
    }
}

/// The master's answer as recorded: the message, or the error.
fn answer_of<T: Clone>(reply: &Result<Response<T>, Status>) -> Result<T, Status> {
    reply
        .as_ref()
        .map(|r| r.get_ref().clone())
        .map_err(Clone::clone)
}

/// The gRPC service the worker talks to: the real master's handlers, with
/// faults around them.
struct FaultLayer(Arc<Faults>);

#[tonic::async_trait]
impl TaskMaster for FaultLayer {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        self.0.home.submit(request).await
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<PipelineStatus>, Status> {
        self.0.home.get_status(request).await
    }

    async fn list_pipelines(
        &self,
        request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        self.0.home.list_pipelines(request).await
    }

    async fn list_outputs(
        &self,
        request: Request<ListOutputsRequest>,
    ) -> Result<Response<ListOutputsResponse>, Status> {
        self.0.home.list_outputs(request).await
    }

    async fn read_logs(
        &self,
        request: Request<ReadLogsRequest>,
    ) -> Result<Response<ReadLogsResponse>, Status> {
        self.0.home.read_logs(request).await
    }

    async fn list_inputs(
        &self,
        request: Request<ListInputsRequest>,
    ) -> Result<Response<ListInputsResponse>, Status> {
        self.0.target().list_inputs(request).await
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let sent = request.get_ref().clone();
        let reply = self.0.target().lease(request).await;
        self.0.record(Call::Lease {
            request: sent,
            answer: answer_of(&reply),
        });
        reply
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        self.0.renewal_may_pass().await;
        let sent = request.get_ref().clone();
        let reply = self.0.target().renew(request).await;
        self.0.record(Call::Renew {
            request: sent,
            answer: answer_of(&reply),
        });
        reply
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let sent = request.get_ref().clone();
        let reply = self.0.target().commit(request).await;
        let lost = self.0.lost_commit_replies.lock().pop_front();
        self.0.record(Call::Commit {
            request: sent,
            answer: answer_of(&reply),
            reply_lost: lost.is_some(),
        });
        match lost {
            Some(error) => Err(error),
            None => reply,
        }
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let sent = request.get_ref().clone();
        let reply = self.0.target().release(request).await;
        self.0.record(Call::Release {
            request: sent,
            answer: answer_of(&reply),
        });
        reply
    }

    // Operator calls are not faulted: they go straight to the home master.
    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        self.0.home.cancel(request).await
    }
    async fn delete_pipelines(
        &self,
        request: Request<DeletePipelinesRequest>,
    ) -> Result<Response<DeletePipelinesResponse>, Status> {
        self.0.home.delete_pipelines(request).await
    }
    async fn block(
        &self,
        request: Request<BlockRequest>,
    ) -> Result<Response<BlockResponse>, Status> {
        self.0.home.block(request).await
    }
    async fn retry(
        &self,
        request: Request<RetryRequest>,
    ) -> Result<Response<RetryResponse>, Status> {
        self.0.home.retry(request).await
    }
    async fn rerun(
        &self,
        request: Request<RerunRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        self.0.home.rerun(request).await
    }
    async fn clear(
        &self,
        request: Request<ClearRequest>,
    ) -> Result<Response<ClearResponse>, Status> {
        self.0.home.clear(request).await
    }
    async fn change_config(
        &self,
        request: Request<ChangeConfigRequest>,
    ) -> Result<Response<ChangeConfigResponse>, Status> {
        self.0.home.change_config(request).await
    }
    async fn scale(
        &self,
        request: Request<ScaleRequest>,
    ) -> Result<Response<ScaleResponse>, Status> {
        self.0.home.scale(request).await
    }
    async fn list_workers(
        &self,
        request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        self.0.home.list_workers(request).await
    }
    async fn get_master_status(
        &self,
        request: Request<GetMasterStatusRequest>,
    ) -> Result<Response<MasterStatus>, Status> {
        self.0.home.get_master_status(request).await
    }
    async fn take_snapshot(
        &self,
        request: Request<TakeSnapshotRequest>,
    ) -> Result<Response<SnapshotInfo>, Status> {
        self.0.home.take_snapshot(request).await
    }
    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        self.0.home.list_snapshots(request).await
    }
    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        self.0.home.rollback(request).await
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.0.home.create_token(request).await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.0.home.list_tokens(request).await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.0.home.revoke_token(request).await
    }
    type WorkStream = Pin<Box<dyn Stream<Item = Result<WorkReply, Status>> + Send>>;
    /// Serves each request by the layer's unary handler above, so stream
    /// calls meet the same faults and are recorded the same way. Like the
    /// master's own, it ends its streams when the master shuts down.
    async fn work(
        &self,
        request: Request<tonic::Streaming<WorkRequest>>,
    ) -> Result<Response<Self::WorkStream>, Status> {
        self.0.streams_asked.fetch_add(1, Ordering::Relaxed);
        if self.0.streams_refused.load(Ordering::Relaxed) {
            return Err(Status::unimplemented("unknown method Work"));
        }
        let mut requests = request.into_inner();
        let (replies, outgoing) = mpsc::channel(64);
        let faults = Arc::clone(&self.0);
        tokio::spawn(async move {
            let stopping = Arc::clone(&faults.home_master);
            loop {
                let next = tokio::select! {
                    next = requests.message() => next,
                    () = stopping.shutting_down() => return,
                };
                let Ok(Some(request)) = next else { return };
                let layer = FaultLayer(Arc::clone(&faults));
                let replies = replies.clone();
                tokio::spawn(async move {
                    let _ = replies.send(Ok(layer.answer(request).await)).await;
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

impl FaultLayer {
    /// One `Work` request's reply, from the layer's unary handler.
    async fn answer(&self, request: WorkRequest) -> WorkReply {
        use work_reply::Result as Reply;
        use work_request::Call;
        let result = match request.call {
            Some(Call::Lease(req)) => self
                .lease(Request::new(req))
                .await
                .map(|r| Reply::Lease(r.into_inner())),
            Some(Call::Renew(req)) => self
                .renew(Request::new(req))
                .await
                .map(|r| Reply::Renew(r.into_inner())),
            Some(Call::Commit(req)) => self
                .commit(Request::new(req))
                .await
                .map(|r| Reply::Commit(r.into_inner())),
            Some(Call::Release(req)) => self
                .release(Request::new(req))
                .await
                .map(|r| Reply::Release(r.into_inner())),
            None => Err(Status::invalid_argument("a Work request names no call")),
        };
        let result = result.unwrap_or_else(|status| {
            Reply::Error(CallError {
                code: status.code() as i32,
                message: status.message().to_string(),
            })
        });
        WorkReply {
            id: request.id,
            result: Some(result),
        }
    }
}

/// A real master on its own store, served (behind the fault layer) on
/// 127.0.0.1 with its lease reaper running, until [`TestMaster::stop`].
pub struct TestMaster {
    /// Where the worker finds it.
    pub url: String,
    pub master: Arc<Master>,
    pub faults: Arc<Faults>,
    /// A client for the test's own calls (submit, status, outputs).
    pub admin: Admin,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    reaper: Option<JoinHandle<()>>,
    /// The data dir (journal and output store); removed on drop.
    _dir: TempDir,
}

impl TestMaster {
    /// Starts a master with leases of `lease_ms` on a new port.
    pub async fn start(lease_ms: u64) -> TestMaster {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, lease_ms)
    }

    /// Starts a master with leases of `lease_ms` on `listener`.
    pub fn serve(listener: TcpListener, lease_ms: u64) -> TestMaster {
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let dir = TempDir::new().expect("a temp dir");
        let master = open_master(&dir.path().join("data"), lease_ms);
        let faults = Arc::new(Faults::new(&master));
        let reaper = tokio::spawn(Arc::clone(&master).run_reaper());
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TaskMasterServer::new(FaultLayer(Arc::clone(&faults))))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = shutdown_rx.await;
            });
        TestMaster {
            admin: Admin::connect(&url),
            url,
            master,
            faults,
            shutdown: Some(shutdown),
            server: Some(tokio::spawn(server)),
            reaper: Some(reaper),
            _dir: dir,
        }
    }

    /// This master's server token (its store's identity).
    pub fn token(&self) -> String {
        self.master.server_token()
    }

    /// Submits a pipeline and returns its id.
    pub async fn submit(&self, spec: PipelineSpec) -> String {
        self.admin.submit(spec).await
    }

    /// Stops serving, ends the reaper and closes the journal, waiting (a
    /// bounded time) for each.
    pub async fn stop(mut self) {
        self.faults.pass_renewals();
        self.master.begin_shutdown();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(EVENT_TIMEOUT, server)
                .await
                .expect("the master's server did not stop in time")
                .expect("the server task")
                .expect("the server ran without error");
        }
        if let Some(reaper) = self.reaper.take() {
            tokio::time::timeout(EVENT_TIMEOUT, reaper)
                .await
                .expect("the lease reaper did not stop in time")
                .expect("the reaper task");
        }
        self.master.close();
    }
}

impl Drop for TestMaster {
    /// A test that failed before `stop` still stops what it started.
    fn drop(&mut self) {
        self.faults.pass_renewals();
        self.master.begin_shutdown();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.abort();
        }
        self.master.close();
        // Committed outputs are read-only: TempDir could not remove them
        // when the tests run as a user.
        taskmaster_worker::outputs::make_dirs_writable(self._dir.path());
    }
}
