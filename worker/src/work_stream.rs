//! [`WorkStream`]: a worker's lease, renew, commit and release calls over
//! one `Work` stream instead of one unary call each. Calls may be made
//! concurrently from many tasks; each waits for its own reply (matched by
//! id). The calls mean exactly what their unary forms mean, with the same
//! statuses, so a worker can switch between the two.
//!
//! When the stream breaks (the master restarts, the connection drops),
//! every call in flight and every later call fails with `UNAVAILABLE`; a
//! call in flight may or may not have taken effect, as with a unary call
//! whose reply was lost. Open a new stream to go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    CommitRequest, CommitResponse, LeaseRequest, LeaseResponse, ReleaseRequest, ReleaseResponse,
    RenewRequest, RenewResponse, WorkReply, WorkRequest, work_reply, work_request,
};
use tokio::sync::{mpsc, oneshot};
// The channel every client uses: it sends the caller's token (issue 24).
use taskmaster_proto::credentials::MasterChannel as Channel;
use tonic::{Code, Status};

/// Requests queued for sending before a caller waits for room.
const SEND_QUEUE: usize = 256;

type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<work_reply::Result>>>>>;

/// One open `Work` stream. Dropping it closes the stream.
pub struct WorkStream {
    requests: mpsc::Sender<WorkRequest>,
    /// Callers waiting for a reply, by request id; `None` once the stream
    /// has ended, so no one waits for a reply that cannot come.
    waiters: Waiters,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl WorkStream {
    /// Opens a stream on `client`'s channel.
    pub async fn open(mut client: TaskMasterClient<Channel>) -> Result<WorkStream, Status> {
        let (requests, outgoing) = mpsc::channel::<WorkRequest>(SEND_QUEUE);
        let outgoing = futures_util::stream::unfold(outgoing, |mut outgoing| async move {
            outgoing.recv().await.map(|request| (request, outgoing))
        });
        let mut replies = client.work(outgoing).await?.into_inner();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader_waiters = Arc::clone(&waiters);
        let reader = tokio::spawn(async move {
            while let Ok(Some(reply)) = replies.message().await {
                deliver(&reader_waiters, reply);
            }
            // Dropping the senders fails every waiting call.
            reader_waiters.lock().take();
        });
        Ok(WorkStream {
            requests,
            waiters,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseResponse, Status> {
        match self.call(work_request::Call::Lease(request)).await? {
            work_reply::Result::Lease(response) => Ok(response),
            other => Err(mismatched("lease", &other)),
        }
    }

    pub async fn renew(&self, request: RenewRequest) -> Result<RenewResponse, Status> {
        match self.call(work_request::Call::Renew(request)).await? {
            work_reply::Result::Renew(response) => Ok(response),
            other => Err(mismatched("renew", &other)),
        }
    }

    pub async fn commit(&self, request: CommitRequest) -> Result<CommitResponse, Status> {
        match self.call(work_request::Call::Commit(request)).await? {
            work_reply::Result::Commit(response) => Ok(response),
            other => Err(mismatched("commit", &other)),
        }
    }

    pub async fn release(&self, request: ReleaseRequest) -> Result<ReleaseResponse, Status> {
        match self.call(work_request::Call::Release(request)).await? {
            work_reply::Result::Release(response) => Ok(response),
            other => Err(mismatched("release", &other)),
        }
    }

    /// False once the stream has ended (or [`WorkStream::close`] was
    /// called): every call fails with `UNAVAILABLE`.
    pub fn is_open(&self) -> bool {
        self.waiters.lock().is_some() && !self.requests.is_closed()
    }

    /// Ends the stream from this side, e.g. after a call got no reply in
    /// time on a connection that may be stuck: calls in flight fail at once
    /// with `UNAVAILABLE` instead of each waiting out its own deadline.
    pub fn close(&self) {
        self.reader.abort();
        // Dropping the senders fails every waiting call.
        self.waiters.lock().take();
    }

    /// Sends one request and waits for its reply; a reply that is an error
    /// becomes the `Status` the unary call would have returned.
    async fn call(&self, call: work_request::Call) -> Result<work_reply::Result, Status> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().as_mut() {
            Some(waiters) => waiters.insert(id, tx),
            None => return Err(broken()),
        };
        // A caller that gives up (its deadline passed, its task ended) must
        // not leave its entry behind for a reply that may never come.
        let mut waiting = Waiting {
            id,
            stream: self,
            entry_left: true,
        };
        let request = WorkRequest {
            id,
            call: Some(call),
        };
        if self.requests.send(request).await.is_err() {
            return Err(broken());
        }
        let reply = rx.await;
        // Delivered, or the stream ended: either way the entry is gone.
        waiting.entry_left = false;
        match reply {
            Ok(work_reply::Result::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
            Ok(result) => Ok(result),
            Err(_) => Err(broken()),
        }
    }
}

/// Removes a call's waiter entry if the call ends before its reply came
/// (a delivered reply has removed it already, without this lock).
struct Waiting<'a> {
    id: u64,
    stream: &'a WorkStream,
    entry_left: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.entry_left {
            return;
        }
        if let Some(waiters) = self.stream.waiters.lock().as_mut() {
            waiters.remove(&self.id);
        }
    }
}

impl Drop for WorkStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Hands a reply to the caller waiting for it. A reply nobody waits for
/// (a master bug, or a caller that gave up) is dropped.
fn deliver(waiters: &Waiters, reply: WorkReply) {
    let waiter = waiters.lock().as_mut().and_then(|w| w.remove(&reply.id));
    if let (Some(waiter), Some(result)) = (waiter, reply.result) {
        let _ = waiter.send(result);
    }
}

fn broken() -> Status {
    Status::unavailable("the Work stream to the master ended")
}

fn mismatched(call: &str, got: &work_reply::Result) -> Status {
    let got = match got {
        work_reply::Result::Lease(_) => "lease",
        work_reply::Result::Renew(_) => "renew",
        work_reply::Result::Commit(_) => "commit",
        work_reply::Result::Release(_) => "release",
        work_reply::Result::Error(_) => "error",
    };
    Status::internal(format!(
        "the master answered a {call} call with a {got} reply"
    ))
}
