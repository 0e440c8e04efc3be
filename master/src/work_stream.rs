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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use taskmaster_proto::v1::{CallError, WorkReply, WorkRequest, work_reply, work_request};
use tonic::{Status, Streaming};

use crate::runtime::Master;
use crate::service::{commit_call, lease_call, release_call, renew_call};

/// Requests of one stream served at once.
pub const IN_FLIGHT_PER_STREAM: usize = 256;

/// The reply stream handed to tonic.
pub type Replies = Pin<Box<dyn Stream<Item = Result<WorkReply, Status>> + Send>>;

type Answer = Pin<Box<dyn Future<Output = WorkReply> + Send>>;

/// Serves `requests` until the client closes its side or the stream
/// breaks; replies go out as they are ready.
/// `worker`: the worker name the caller's identity binds its calls to
/// (see `auth::worker_calls`), if any.
pub fn serve(
    master: Arc<Master>,
    requests: Streaming<WorkRequest>,
    worker: Option<Arc<str>>,
) -> Replies {
    let stopping = Arc::clone(&master);
    Box::pin(Serving {
        master,
        worker,
        requests: Some(requests),
        in_flight: FuturesUnordered::new(),
        shutdown: Box::pin(async move { stopping.shutting_down().await }),
    })
}

/// One stream being served: its requests, and the answers in flight.
struct Serving {
    master: Arc<Master>,
    worker: Option<Arc<str>>,
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
                    self.in_flight.push(Box::pin(async move {
                        answer(&master, request, worker.as_deref()).await
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

/// One request's reply: the unary call's response, or its status.
async fn answer(master: &Master, request: WorkRequest, worker: Option<&str>) -> WorkReply {
    use work_reply::Result as Reply;
    use work_request::Call;
    let result = match request.call {
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
