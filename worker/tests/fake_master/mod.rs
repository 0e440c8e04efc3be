//! A scripted stand-in for the master, served over real gRPC on port 0: it
//! hands out the leases a test queues, answers renew and commit calls as the
//! test says, and reports every worker call on a channel so tests wait on
//! events instead of sleeping.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use taskmaster_proto::v1::task_master_server::{TaskMaster, TaskMasterServer};
use taskmaster_proto::v1::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// How long a test waits for an expected call before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A call the worker made.
#[derive(Clone, Debug)]
pub enum Call {
    Lease(LeaseRequest),
    Renew(RenewRequest),
    Commit(CommitRequest),
    Release(ReleaseRequest),
}

type Answer<Req, Resp> = Box<dyn FnMut(&Req) -> Result<Resp, Status> + Send>;

/// The fake's state, shared by its gRPC handlers and the test.
pub struct Script {
    /// Leases handed out, in order, to lease calls.
    queue: Mutex<VecDeque<Lease>>,
    /// Bumped when a lease is queued, to wake long-polling lease calls.
    queued: watch::Sender<u64>,
    calls: mpsc::UnboundedSender<Call>,
    renew: Mutex<Answer<RenewRequest, RenewResponse>>,
    commit: Mutex<Answer<CommitRequest, CommitResponse>>,
}

impl Script {
    /// Queues a lease for the next lease call.
    pub fn grant(&self, lease: Lease) {
        self.queue.lock().push_back(lease);
        self.queued.send_modify(|n| *n += 1);
    }

    /// Replaces how renew calls are answered.
    pub fn on_renew(
        &self,
        answer: impl FnMut(&RenewRequest) -> Result<RenewResponse, Status> + Send + 'static,
    ) {
        *self.renew.lock() = Box::new(answer);
    }

    /// Replaces how commit calls are answered.
    pub fn on_commit(
        &self,
        answer: impl FnMut(&CommitRequest) -> Result<CommitResponse, Status> + Send + 'static,
    ) {
        *self.commit.lock() = Box::new(answer);
    }
}

/// Per-item OK for every item.
pub fn all_ok(items: usize) -> Vec<ItemStatus> {
    vec![ItemStatus::default(); items]
}

/// A per-item status with this gRPC code.
pub fn item(code: tonic::Code, message: &str) -> ItemStatus {
    ItemStatus {
        code: code as i32,
        message: message.to_string(),
    }
}

/// The running fake and the receiving end of its call log.
pub struct FakeMaster {
    pub url: String,
    pub script: Arc<Script>,
    calls: mpsc::UnboundedReceiver<Call>,
}

impl FakeMaster {
    /// Serves a fake master on a new port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// Serves a fake master on `listener`.
    pub fn serve(listener: TcpListener) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let script = Arc::new(Script {
            queue: Mutex::new(VecDeque::new()),
            queued: watch::channel(0).0,
            calls: calls_tx,
            renew: Mutex::new(Box::new(|req: &RenewRequest| {
                Ok(RenewResponse {
                    results: all_ok(req.leases.len()),
                    lease_ms: 0,
                })
            })),
            commit: Mutex::new(Box::new(|req: &CommitRequest| {
                Ok(CommitResponse {
                    results: all_ok(req.items.len()),
                })
            })),
        });
        let service = TaskMasterServer::new(Handlers(script.clone()));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Self { url, script, calls }
    }

    /// The next call the worker makes (of any kind).
    pub async fn next_call(&mut self) -> Call {
        tokio::time::timeout(EVENT_TIMEOUT, self.calls.recv())
            .await
            .expect("timed out waiting for a call from the worker")
            .expect("fake master gone")
    }

    /// Skips calls until one `pick` accepts, and returns what it picked.
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(Call) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let call = tokio::time::timeout_at(deadline, self.calls.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("fake master gone");
            if let Some(picked) = pick(call) {
                return picked;
            }
        }
    }

    /// Every call received so far, without waiting.
    pub fn calls_so_far(&mut self) -> Vec<Call> {
        let mut calls = Vec::new();
        while let Ok(call) = self.calls.try_recv() {
            calls.push(call);
        }
        calls
    }
}

struct Handlers(Arc<Script>);

#[tonic::async_trait]
impl TaskMaster for Handlers {
    async fn submit(&self, _: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<PipelineStatus>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_pipelines(
        &self,
        _: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_outputs(
        &self,
        _: Request<ListOutputsRequest>,
    ) -> Result<Response<ListOutputsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    /// Hands out queued leases, long-polling up to `wait_ms` for some.
    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let request = request.into_inner();
        let _ = self.0.calls.send(Call::Lease(request.clone()));
        let mut queued = self.0.queued.subscribe();
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut queue = self.0.queue.lock();
                if !queue.is_empty() {
                    let n = queue.len().min(request.max_units as usize);
                    let leases = queue.drain(..n).collect();
                    return Ok(Response::new(LeaseResponse { leases }));
                }
            }
            if tokio::time::timeout_at(deadline, queued.changed())
                .await
                .is_err()
            {
                return Ok(Response::new(LeaseResponse::default()));
            }
        }
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let request = request.into_inner();
        let _ = self.0.calls.send(Call::Renew(request.clone()));
        (self.0.renew.lock())(&request).map(Response::new)
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let request = request.into_inner();
        let _ = self.0.calls.send(Call::Commit(request.clone()));
        (self.0.commit.lock())(&request).map(Response::new)
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let request = request.into_inner();
        let _ = self.0.calls.send(Call::Release(request.clone()));
        Ok(Response::new(ReleaseResponse {
            results: all_ok(request.leases.len()),
        }))
    }
}
