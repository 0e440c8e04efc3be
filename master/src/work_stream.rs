//! The `Work` stream: lease, renew, commit and release over one long-lived
//! bidirectional stream. A unary call costs an HTTP/2 stream (headers both
//! ways, a request future through tonic's stack); on the stream, a call is
//! one small message each way, which is what lets a worker making one
//! call per unit go fast.
//!
//! Each request is served on its own task, so a long-polling lease does not
//! hold up a commit sent after it; replies carry the request's id and may
//! come in another order. At most [`IN_FLIGHT_PER_STREAM`] requests of one
//! stream are served at once: past that the stream is not read, and HTTP/2
//! flow control pushes back on the client.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use taskmaster_proto::v1::{CallError, WorkReply, WorkRequest, work_reply, work_request};
use tokio::sync::{Semaphore, mpsc};
use tonic::{Status, Streaming};

use crate::runtime::Master;
use crate::service::{commit_call, lease_call, release_call, renew_call};

/// Requests of one stream served at once.
pub const IN_FLIGHT_PER_STREAM: usize = 256;

/// The reply stream handed to tonic.
pub type Replies = Pin<Box<dyn Stream<Item = Result<WorkReply, Status>> + Send>>;

/// Serves `requests` until the client closes its side or the stream
/// breaks; replies go out as they are ready.
pub fn serve(master: Arc<Master>, mut requests: Streaming<WorkRequest>) -> Replies {
    let (replies, outgoing) = mpsc::channel::<Result<WorkReply, Status>>(IN_FLIGHT_PER_STREAM);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT_PER_STREAM));
        let stopping = Arc::clone(&master);
        let shutdown = async move { stopping.shutting_down().await };
        tokio::pin!(shutdown);
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let next = tokio::select! {
                next = requests.message() => next,
                // A graceful shutdown waits for open streams to end, so the
                // master ends them: in-flight calls still answer, then the
                // reply stream closes and the worker reconnects elsewhere.
                () = &mut shutdown => return,
            };
            let request = match next {
                Ok(Some(request)) => request,
                // The client closed its side, or the stream broke: what is
                // in flight still answers (a broken stream drops it).
                Ok(None) | Err(_) => return,
            };
            let master = Arc::clone(&master);
            let replies = replies.clone();
            tokio::spawn(async move {
                let reply = answer(&master, request).await;
                // A closed reply stream means the client is gone; the call
                // took effect (or not) exactly as a unary call whose reply
                // was lost.
                let _ = replies.send(Ok(reply)).await;
                drop(slot);
            });
        }
    });
    Box::pin(futures_util::stream::unfold(
        outgoing,
        |mut outgoing| async move { outgoing.recv().await.map(|reply| (reply, outgoing)) },
    ))
}

/// One request's reply: the unary call's response, or its status.
async fn answer(master: &Master, request: WorkRequest) -> WorkReply {
    use work_reply::Result as Reply;
    use work_request::Call;
    let result = match request.call {
        Some(Call::Lease(req)) => lease_call(master, req).await.map(Reply::Lease),
        Some(Call::Renew(req)) => renew_call(master, req).await.map(Reply::Renew),
        Some(Call::Commit(req)) => commit_call(master, req).await.map(Reply::Commit),
        Some(Call::Release(req)) => release_call(master, req).await.map(Reply::Release),
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
