//! The `Work` stream: lease, renew, commit and release over one long-lived
//! bidirectional stream. A unary call costs an HTTP/2 stream (headers both
//! ways, a request future through tonic's stack); on the stream, a call is
//! one small message each way, which is what lets a worker making one
//! call per unit go fast.
//!
//! A stream's requests are served concurrently (a long-polling lease does
//! not hold up a commit sent after it); replies carry the request's id and
//! may come in another order. The reply stream itself does the serving:
//! when tonic polls it for the next reply it reads the requests that have
//! come, starts each, and polls those in flight, all in the task that
//! sends the replies. So a call costs no task of its own and no hand-off
//! between tasks beyond the journal's wake-up. At most
//! [`IN_FLIGHT_PER_STREAM`] requests of one stream are served at once:
//! past that the stream is not read, and HTTP/2 flow control pushes back
//! on the client.
//!
//! Each stream tells the master's count of open streams per worker
//! ([`crate::open_streams`]) which workers it carries, and when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use taskmaster_proto::v1::{CallError, WorkReply, WorkRequest, work_reply, work_request};
use tonic::{Status, Streaming};

use crate::auth::LongPollGate;
use crate::runtime::Master;
use crate::worker_rpc::{commit_call, lease_call, release_call, renew_call};

/// Requests of one stream served at once.
pub const IN_FLIGHT_PER_STREAM: usize = 256;

/// Worker ids one stream is known to carry, at most (a worker's stream
/// carries its own; a client may name others).
const WORKERS_PER_STREAM_MAX: usize = 8;

/// The workers one stream carries. Dropped when the stream and every
/// answer of it are gone: each worker it was the last stream of then has
/// its leases hastened.
struct StreamWorkers {
    master: Arc<Master>,
    workers: parking_lot::Mutex<Vec<Arc<str>>>,
}

impl StreamWorkers {
    /// Whether the stream is known to carry a worker's calls yet.
    fn knows_any(&self) -> bool {
        !self.workers.lock().is_empty()
    }

    /// The stream carries `worker_id`'s calls (noted once per stream).
    fn note(&self, worker_id: &str) {
        if worker_id.is_empty() {
            return;
        }
        let worker: Arc<str> = {
            let mut workers = self.workers.lock();
            if workers.len() >= WORKERS_PER_STREAM_MAX || workers.iter().any(|w| &**w == worker_id)
            {
                return;
            }
            let worker: Arc<str> = worker_id.into();
            workers.push(Arc::clone(&worker));
            worker
        };
        if self.master.open_streams().opened(&worker) {
            let master = Arc::clone(&self.master);
            tokio::spawn(async move { master.worker_back(&worker).await });
        }
    }
}

impl Drop for StreamWorkers {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for worker in self.workers.get_mut().drain(..) {
            if self.master.open_streams().closed(&worker) {
                let master = Arc::clone(&self.master);
                runtime.spawn(async move { master.worker_gone(&worker).await });
            }
        }
    }
}

/// The reply stream handed to tonic.
pub type Replies = Pin<Box<dyn Stream<Item = Result<WorkReply, Status>> + Send>>;

type Answer = Pin<Box<dyn Future<Output = WorkReply> + Send>>;

/// Serves `requests` until the client closes its side or the stream
/// breaks; replies go out as they are ready.
/// `worker`: the worker name the caller's identity binds its calls to
/// (see `auth::worker_calls`), if any.
/// `gate`: the long-poll places a lease call that may wait takes, as a
/// unary one does at the edge.
pub fn serve(
    master: Arc<Master>,
    requests: Streaming<WorkRequest>,
    worker: Option<Arc<str>>,
    gate: LongPollGate,
) -> Replies {
    let stopping = Arc::clone(&master);
    let workers = Arc::new(StreamWorkers {
        master: Arc::clone(&master),
        workers: Default::default(),
    });
    if let Some(worker) = &worker {
        workers.note(worker);
    }
    Box::pin(Serving {
        master,
        worker,
        gate,
        workers,
        requests: Some(requests),
        in_flight: FuturesUnordered::new(),
        shutdown: Box::pin(async move { stopping.shutting_down().await }),
    })
}

/// One stream being served: its requests, and the answers in flight.
struct Serving {
    master: Arc<Master>,
    worker: Option<Arc<str>>,
    gate: LongPollGate,
    /// The workers whose calls this stream carries, learnt from its calls.
    workers: Arc<StreamWorkers>,
    /// `None` once no more requests will be read: the client closed its
    /// side, the stream broke, or the master is shutting down.
    requests: Option<Streaming<WorkRequest>>,
    in_flight: FuturesUnordered<Answer>,
    /// A graceful shutdown waits for open streams to end, so the master
    /// ends them: in-flight calls still answer, then the reply stream
    /// closes and the worker reconnects elsewhere.
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Serving {
    /// Starts every request that has come, while there is room.
    fn read_requests(&mut self, cx: &mut Context<'_>) {
        while self.in_flight.len() < IN_FLIGHT_PER_STREAM {
            let Some(requests) = self.requests.as_mut() else {
                return;
            };
            if self.shutdown.as_mut().poll(cx).is_ready() {
                self.requests = None;
                return;
            }
            match requests.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(request))) => {
                    let master = Arc::clone(&self.master);
                    let worker = self.worker.clone();
                    let workers = Arc::clone(&self.workers);
                    let gate = self.gate.clone();
                    self.in_flight.push(Box::pin(async move {
                        note_worker(&master, &workers, &request);
                        answer(&master, request, worker.as_deref(), &gate).await
                    }));
                }
                // The client closed its side, or the stream broke: what is
                // in flight still answers (a broken stream drops it). The
                // call took effect (or not) exactly as a unary call whose
                // reply was lost.
                Poll::Ready(Some(Err(_)) | None) => self.requests = None,
                Poll::Pending => return,
            }
        }
    }
}

impl Stream for Serving {
    type Item = Result<WorkReply, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.read_requests(cx);
        match self.in_flight.poll_next_unpin(cx) {
            Poll::Ready(Some(reply)) => Poll::Ready(Some(Ok(reply))),
            // Nothing in flight: done once nothing more will be read, else
            // the requests' waker is registered above.
            Poll::Ready(None) if self.requests.is_none() => Poll::Ready(None),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Learns which worker the stream carries from a call: a lease call names
/// it, a commit asking for more too, a renewal by the holder of its first
/// lease (looked up while the stream knows no worker yet).
fn note_worker(master: &Master, workers: &StreamWorkers, request: &WorkRequest) {
    use work_request::Call;
    match &request.call {
        Some(Call::Lease(req)) => workers.note(&req.worker_id),
        Some(Call::Commit(req)) => {
            if let Some(next) = &req.lease_next {
                workers.note(&next.worker_id);
            }
        }
        Some(Call::Renew(req)) if !workers.knows_any() => {
            let holder = req
                .leases
                .first()
                .and_then(|l| master.lease_holder(l.lease_id));
            if let Some(worker_id) = holder {
                workers.note(&worker_id);
            }
        }
        _ => {}
    }
}

/// One request's reply: the unary call's response, or its status.
async fn answer(
    master: &Master,
    request: WorkRequest,
    worker: Option<&str>,
    gate: &LongPollGate,
) -> WorkReply {
    use work_reply::Result as Reply;
    use work_request::Call;
    let result = match request.call {
        // A lease call that may wait holds a long-poll place while it does.
        Some(Call::Lease(req)) if req.wait_ms > 0 => match gate.take() {
            Ok(_held) => lease_call(master, req, worker).await.map(Reply::Lease),
            Err(refused) => {
                let pause = crate::auth::limits::LONG_POLL_REFUSAL_PAUSE;
                tokio::time::sleep(crate::auth::limits::jittered(pause)).await;
                Err(refused)
            }
        },
        Some(Call::Lease(req)) => lease_call(master, req, worker).await.map(Reply::Lease),
        Some(Call::Renew(req)) => renew_call(master, req, worker).await.map(Reply::Renew),
        Some(Call::Commit(req)) => commit_call(master, req, worker).await.map(Reply::Commit),
        Some(Call::Release(req)) => release_call(master, req, worker).await.map(Reply::Release),
        None => Err(Status::invalid_argument(
            "a Work request names no call (lease, renew, commit or release)",
        )),
    };
    WorkReply {
        id: request.id,
        result: Some(result.unwrap_or_else(|status| {
            Reply::Error(CallError {
                code: status.code() as i32,
                message: status.message().to_string(),
            })
        })),
    }
}
