//! The connection to the master and what every RPC shares: timeouts, which
//! failures are worth retrying, and warnings that do not flood the log.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use taskmaster_proto::credentials::{Credentials, MasterChannel, authorized};
use taskmaster_proto::endpoint::{ClientTls, endpoint};
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    CommitRequest, CommitResponse, ItemStatus, LeaseRequest, LeaseResponse, ListInputsRequest,
    ListInputsResponse, ReleaseRequest, ReleaseResponse, RenewRequest, RenewResponse,
};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::config::{Calls, ConfigError, MESSAGE_BYTES_MAX};
use crate::work_stream::WorkStream;

/// The generated client over one (lazily connected) channel. Clones share
/// the connection.
type Client = TaskMasterClient<MasterChannel>;

/// The worker's four calls to the master, over one `Work` stream or as
/// unary calls ([`Calls`]). Each call has a deadline and fails like its
/// unary form: a broken or stuck stream gives `UNAVAILABLE` or
/// `DEADLINE_EXCEEDED` (both retried by the callers, as a lost reply), and
/// the next call opens a new stream.
pub(crate) struct MasterConnection {
    client: Client,
    calls: Calls,
    /// The master answered UNIMPLEMENTED to opening a stream (a build from
    /// before the `Work` stream): calls are unary from then on.
    no_stream: AtomicBool,
    /// The stream calls go over, once opened; replaced when it ends.
    stream: Mutex<Option<Arc<WorkStream>>>,
    /// Held while a stream is being opened, so the many tasks that find
    /// the stream gone at once open one, not one each.
    opening: tokio::sync::Mutex<()>,
}

impl MasterConnection {
    /// A connection to `url` (over TLS when `tls` is given) that makes its
    /// calls as `calls` says. Connects on first use (and reconnects after a
    /// failure), so a worker can start before its master.
    pub fn new(
        url: &str,
        tls: Option<&ClientTls>,
        credentials: &Credentials,
        calls: Calls,
    ) -> Result<MasterConnection, ConfigError> {
        Ok(MasterConnection {
            client: connect(url, tls, credentials)?,
            calls,
            no_stream: AtomicBool::new(false),
            stream: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    pub async fn lease(
        &self,
        request: LeaseRequest,
        timeout: Duration,
    ) -> Result<LeaseResponse, Status> {
        let deadline = Instant::now() + timeout;
        match self.stream(deadline, timeout).await? {
            Some(stream) => on_stream(&stream, deadline, timeout, stream.lease(request)).await,
            None => {
                let mut client = self.client.clone();
                call(request, timeout, |req| client.lease(req)).await
            }
        }
    }

    pub async fn renew(
        &self,
        request: RenewRequest,
        timeout: Duration,
    ) -> Result<RenewResponse, Status> {
        let deadline = Instant::now() + timeout;
        match self.stream(deadline, timeout).await? {
            Some(stream) => on_stream(&stream, deadline, timeout, stream.renew(request)).await,
            None => {
                let mut client = self.client.clone();
                call(request, timeout, |req| client.renew(req)).await
            }
        }
    }

    pub async fn commit(
        &self,
        request: CommitRequest,
        timeout: Duration,
    ) -> Result<CommitResponse, Status> {
        let deadline = Instant::now() + timeout;
        match self.stream(deadline, timeout).await? {
            Some(stream) => on_stream(&stream, deadline, timeout, stream.commit(request)).await,
            None => {
                let mut client = self.client.clone();
                call(request, timeout, |req| client.commit(req)).await
            }
        }
    }

    pub async fn release(
        &self,
        request: ReleaseRequest,
        timeout: Duration,
    ) -> Result<ReleaseResponse, Status> {
        let deadline = Instant::now() + timeout;
        match self.stream(deadline, timeout).await? {
            Some(stream) => on_stream(&stream, deadline, timeout, stream.release(request)).await,
            None => {
                let mut client = self.client.clone();
                call(request, timeout, |req| client.release(req)).await
            }
        }
    }

    /// A page of a lease's inputs (`ListInputs`): always unary, as it is
    /// rare (only leases with `inputs_paged`) and its replies are large.
    pub async fn list_inputs(
        &self,
        request: ListInputsRequest,
        timeout: Duration,
    ) -> Result<ListInputsResponse, Status> {
        let mut client = self.client.clone();
        call(request, timeout, |req| client.list_inputs(req)).await
    }

    /// The stream to make a call on: the open one, or a new one if there
    /// is none (or it ended); `None` when calls are to be unary.
    async fn stream(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Arc<WorkStream>>, Status> {
        if self.calls == Calls::Unary || self.no_stream.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(stream) = self.open_now() {
            return Ok(Some(stream));
        }
        let opening = tokio::time::timeout_at(deadline, async {
            let _opening = self.opening.lock().await;
            // Another task may have opened one while this one waited.
            if let Some(stream) = self.open_now() {
                return Ok(Some(stream));
            }
            if self.no_stream.load(Ordering::Relaxed) {
                return Ok(None);
            }
            match WorkStream::open(self.client.clone()).await {
                Ok(stream) => {
                    let stream = Arc::new(stream);
                    tracing::debug!("opened a Work stream to the master");
                    *self.stream.lock() = Some(Arc::clone(&stream));
                    Ok(Some(stream))
                }
                Err(status) if status.code() == Code::Unimplemented && !is_transient(&status) => {
                    tracing::warn!(
                        "the master has no Work stream (an older build?); making unary calls"
                    );
                    self.no_stream.store(true, Ordering::Relaxed);
                    Ok(None)
                }
                Err(status) => Err(status),
            }
        });
        opening
            .await
            .unwrap_or_else(|_| Err(no_reply_within(timeout)))
    }

    fn open_now(&self) -> Option<Arc<WorkStream>> {
        self.stream
            .lock()
            .as_ref()
            .filter(|stream| stream.is_open())
            .cloned()
    }
}

/// A call on `stream`, by `deadline`. A call that got no reply in time may
/// be on a stuck connection: the stream is closed, so the next call opens
/// a new one (as a unary call would get a new HTTP/2 stream).
async fn on_stream<R>(
    stream: &WorkStream,
    deadline: Instant,
    timeout: Duration,
    call: impl Future<Output = Result<R, Status>>,
) -> Result<R, Status> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(reply) => reply,
        Err(_) => {
            stream.close();
            Err(no_reply_within(timeout))
        }
    }
}

fn no_reply_within(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("no reply within {} ms", timeout.as_millis()))
}

/// Bound on establishing a TCP connection to the master.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Bound on renew, commit and release calls.
pub(crate) const RPC_TIMEOUT_MS: u64 = 10_000;
/// Extra time a lease call gets beyond its long-poll bound.
pub(crate) const LEASE_RPC_SLACK_MS: u64 = 10_000;
/// A failure that keeps repeating is warned about at most this often.
const REPEAT_WARN_MS: u64 = 30_000;

/// A client for `url` (with TLS when `tls` is given). Connects on first
/// use (and reconnects after a failure), so a worker can start before its
/// master.
fn connect(
    url: &str,
    tls: Option<&ClientTls>,
    credentials: &Credentials,
) -> Result<Client, ConfigError> {
    let endpoint = endpoint(url, tls).map_err(|err| ConfigError::MasterUrl {
        url: url.to_string(),
        reason: err.to_string(),
    })?;
    let channel = endpoint
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        // Keepalive pings notice a dead master during a long poll.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy();
    Ok(
        TaskMasterClient::new(authorized(channel, credentials.clone()))
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX),
    )
}

/// Runs one RPC with a deadline: sent to the master as `grpc-timeout` and
/// enforced here too, so a stuck connection cannot hang the worker.
async fn call<T, R, F>(
    message: T,
    timeout: Duration,
    rpc: impl FnOnce(tonic::Request<T>) -> F,
) -> Result<R, Status>
where
    F: Future<Output = Result<tonic::Response<R>, Status>>,
{
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, rpc(request)).await {
        Ok(reply) => reply.map(tonic::Response::into_inner),
        Err(_) => Err(no_reply_within(timeout)),
    }
}

/// True when the call may not have reached the master, or its reply was
/// lost: the transport failed (such statuses carry a source error; ones the
/// master sent do not), or the code says so.
pub(crate) fn is_transient(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        || matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
        )
}

/// True when the master itself answered PERMISSION_DENIED: this is not the
/// master (or store) the lease came from.
pub(crate) fn is_wrong_master(status: &Status) -> bool {
    status.code() == Code::PermissionDenied && !is_transient(status)
}

/// A status as one readable line for logs: `Code: message`, plus the
/// innermost transport error (e.g. "Connection refused") when there is one.
pub(crate) struct Show<'a>(pub &'a Status);

impl Display for Show<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.0;
        write!(f, "{:?}: {}", status.code(), status.message())?;
        let mut innermost = std::error::Error::source(status);
        while let Some(next) = innermost.and_then(std::error::Error::source) {
            innermost = Some(next);
        }
        match innermost {
            Some(cause) => write!(f, " ({cause})"),
            None => Ok(()),
        }
    }
}

/// `CODE: message` of a per-item result, for logs.
pub(crate) fn describe_item(item: &ItemStatus) -> String {
    format!("{:?}: {}", Code::from(item.code), item.message)
}

/// True when a per-item result is OK.
pub(crate) fn item_ok(item: &ItemStatus) -> bool {
    item.code == Code::Ok as i32
}

/// Logs a repeating failure (e.g. the master is down) at warn level on the
/// first occurrence and then at most every 30 s, at debug in between, and
/// says when it recovers.
#[derive(Debug)]
pub(crate) struct FailureLog {
    /// What failed, e.g. "lease call".
    what: &'static str,
    /// Consecutive failures so far.
    failures: u64,
    /// When the last warning was logged.
    warned_at: Option<Instant>,
}

impl FailureLog {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            failures: 0,
            warned_at: None,
        }
    }

    /// Records one failure, which will be retried after `retry_in`.
    pub fn failed(&mut self, err: &dyn Display, retry_in: Duration) {
        self.failures += 1;
        let now = Instant::now();
        let warn_due = self
            .warned_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_millis(REPEAT_WARN_MS));
        let what = self.what;
        let failures = self.failures;
        let retry_in_ms = retry_in.as_millis() as u64;
        if warn_due {
            self.warned_at = Some(now);
            tracing::warn!(failures, retry_in_ms, "{what} failed: {err}");
        } else {
            tracing::debug!(failures, retry_in_ms, "{what} failed: {err}");
        }
    }

    /// Records a success, ending any run of failures.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            let what = self.what;
            tracing::info!(failures = self.failures, "{what} works again");
        }
        self.failures = 0;
        self.warned_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_the_master_are_classified_by_code() {
        assert!(is_transient(&Status::unavailable("down")));
        assert!(is_transient(&Status::deadline_exceeded("slow")));
        assert!(is_transient(&Status::unknown("lost reply")));
        assert!(!is_transient(&Status::aborted("lease lost")));
        assert!(!is_transient(&Status::permission_denied("wrong token")));
        assert!(is_wrong_master(&Status::permission_denied("wrong token")));
        assert!(!is_wrong_master(&Status::invalid_argument("bad")));
    }

    #[test]
    fn transport_errors_are_transient_whatever_their_code() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "socket says no");
        let mut status = Status::from(io);
        status.set_source(std::sync::Arc::new(std::io::Error::other("socket says no")));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(is_transient(&status));
        assert!(!is_wrong_master(&status));
        assert_eq!(
            Show(&status).to_string(),
            "PermissionDenied: socket says no (socket says no)"
        );
        assert_eq!(Show(&Status::aborted("gone")).to_string(), "Aborted: gone");
    }

    /// A real master on `data_dir`, served on `listener` (bound first, so
    /// the test knows the address a restarted master comes back on).
    fn serve_master(
        listener: tokio::net::TcpListener,
        data_dir: &std::path::Path,
    ) -> taskmaster_master::in_process::InProcessMaster {
        use taskmaster_master::clock::MonotonicClock;
        use taskmaster_master::in_process::InProcessMaster;
        use taskmaster_master::runtime::{Master, MasterConfig};
        let config = MasterConfig::new(data_dir.to_path_buf());
        let master = Master::open(&config, Arc::new(MonotonicClock::default())).unwrap();
        InProcessMaster::serve(listener, Arc::new(master)).unwrap()
    }

    fn lease_request(wait_ms: u32) -> LeaseRequest {
        LeaseRequest {
            worker_id: "rpc-test".into(),
            max_units: 1,
            wait_ms,
            compact: true,
            worker_slots: 0,
        }
    }

    fn current(connection: &MasterConnection) -> Arc<WorkStream> {
        connection
            .stream
            .lock()
            .clone()
            .expect("a stream was opened")
    }

    #[tokio::test]
    async fn stream_calls_reopen_the_stream_after_a_timeout_and_after_a_restart() {
        let dir = tempfile::TempDir::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let master = serve_master(listener, &dir.path().join("data"));
        let connection = MasterConnection::new(
            &format!("http://{address}"),
            None,
            &Credentials::default(),
            Calls::Stream,
        )
        .unwrap();
        let quick = Duration::from_secs(5);

        // Nothing to lease: the master answers an empty lease at once.
        let reply = connection.lease(lease_request(0), quick).await.unwrap();
        assert!(reply.leases.is_empty());
        let first = current(&connection);
        assert!(first.is_open());
        // Calls share the open stream.
        connection.lease(lease_request(0), quick).await.unwrap();
        assert!(Arc::ptr_eq(&first, &current(&connection)));

        // A long poll outlasting the caller's deadline: the call fails as a
        // lost reply would, and the stream it was on is given up.
        let status = connection
            .lease(lease_request(5_000), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(is_transient(&status));
        assert!(!first.is_open());
        connection.lease(lease_request(0), quick).await.unwrap();
        let second = current(&connection);
        assert!(!Arc::ptr_eq(&first, &second) && second.is_open());

        // The master goes away: a call in flight and the calls after it
        // fail as transient, until a master listens there again.
        let in_flight = connection.lease(lease_request(10_000), quick);
        let stopping = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            master.stop(Duration::from_secs(60)).await.unwrap();
        };
        let (status, ()) = tokio::join!(in_flight, stopping);
        assert!(is_transient(&status.unwrap_err()));
        let status = connection.lease(lease_request(0), quick).await.unwrap_err();
        assert!(is_transient(&status), "{status:?}");

        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let master = serve_master(listener, &dir.path().join("data"));
        connection.lease(lease_request(0), quick).await.unwrap();
        assert!(current(&connection).is_open());
        master.stop(Duration::from_secs(60)).await.unwrap();
    }
}
