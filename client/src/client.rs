//! [`Client`]: the async SDK over the master's gRPC `TaskMaster` service:
//! submitting and watching pipelines, reading their outputs, and the
//! operator calls (cancel, block, retry, rerun, clear, config changes,
//! scaling, workers, master status, snapshots and rollback).

use std::time::{Duration, Instant};

use taskmaster_proto::credentials::{Credentials, MasterChannel, authorized};
pub use taskmaster_proto::endpoint::ClientTls;
use taskmaster_proto::endpoint::endpoint;
use taskmaster_proto::v1::schedules_client::SchedulesClient;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{
    BlockRequest, CancelRequest, ChangeConfigRequest, ChangeConfigResponse, ClearRequest,
    ClearResponse, DeletePipelinesRequest, GetMasterStatusRequest, GetStatusRequest,
    GroupConfigChange, ListOutputsRequest, ListPipelinesRequest, ListPipelinesResponse,
    ListSnapshotsRequest, ListWorkersRequest, MasterStatus, PipelineSpec, PipelineState,
    PipelineStatus, RerunRequest, RetryRequest, RollbackRequest, ScaleRequest, ScaleResponse,
    SnapshotInfo, SubmitRequest, TakeSnapshotRequest, UnitOutputs, WorkerInfo,
};
use tonic::Code;
use tonic::transport::Channel;

/// gRPC message size limit, both directions (the master's).
pub use taskmaster_proto::limits::MESSAGE_BYTES_MAX;

/// How long connecting to the master may take before it counts as
/// unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline of each SDK call. Generous, since a submit waits for the
/// journal; calls made through [`Client::raw`] (long-polls) have none.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest interval [`Client::wait`] polls at, so a zero interval does not
/// turn into a busy loop against the master.
pub const POLL_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// How long [`Client::wait`] keeps polling through an unreachable master
/// (e.g. one restarting) before it gives up.
pub const WAIT_UNAVAILABLE_MAX: Duration = Duration::from_secs(60);

/// Why a call to the master failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master address is not a valid URL.
    #[error("invalid master address `{url}`: {message}")]
    InvalidUrl { url: String, message: String },
    /// No connection to the master at `url` could be made (or kept).
    #[error("cannot reach the master at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The master answered with a gRPC error: its message and code, e.g.
    /// "pipeline p-9 not found (NOT_FOUND)".
    #[error("{message} ({})", code_name(*.code))]
    Rpc { code: Code, message: String },
}

impl ClientError {
    /// The gRPC code of the failure; `Unavailable` for an unreachable
    /// master, `None` for a bad address (no call was made).
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::InvalidUrl { .. } => None,
            ClientError::Unreachable { .. } => Some(Code::Unavailable),
            ClientError::Rpc { code, .. } => Some(*code),
        }
    }
}

/// The canonical upper-case name of a gRPC code, as other gRPC tools print
/// it (tonic's `Display` gives a sentence instead).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// True for the states a pipeline never leaves.
pub fn is_finished(state: PipelineState) -> bool {
    matches!(
        state,
        PipelineState::Succeeded | PipelineState::Failed | PipelineState::Cancelled
    )
}

/// A connection to one master. Cheap to clone: clones share the channel.
#[derive(Debug, Clone)]
pub struct Client {
    /// The address as given, for error messages.
    url: String,
    /// The generated client, with the message size limits set.
    inner: TaskMasterClient<MasterChannel>,
    /// The `Schedules` service on the same channel (see `schedules`).
    pub(crate) schedules: SchedulesClient<MasterChannel>,
    /// The connection, and the token and reason every call carries, to
    /// make a client with another reason ([`Client::with_reason`]).
    channel: Channel,
    credentials: Credentials,
}

impl Client {
    /// Connects to the master at `url` (`host:port`, `http://host:port`;
    /// see `taskmaster_proto::endpoint`). Fails at once, naming the
    /// address, if the master cannot be reached.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, None).await
    }

    /// [`Client::connect`], over TLS when `tls` is given (then a bare
    /// `host:port` means `https://`).
    pub async fn connect_with(url: &str, tls: Option<&ClientTls>) -> Result<Client, ClientError> {
        Client::connect_as(url, tls, Credentials::default()).await
    }

    /// [`Client::connect_with`], sending `credentials` (a bearer token,
    /// for a master started with `--auth`) on every call.
    pub async fn connect_as(
        url: &str,
        tls: Option<&ClientTls>,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let endpoint = endpoint(url, tls).map_err(|e| ClientError::InvalidUrl {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        Ok(Client::on_channel(url.to_string(), channel, credentials))
    }

    fn on_channel(url: String, channel: Channel, credentials: Credentials) -> Client {
        let authorized = authorized(channel.clone(), credentials.clone());
        let schedules = SchedulesClient::new(authorized.clone())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let inner = TaskMasterClient::new(authorized)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        Client {
            url,
            inner,
            schedules,
            channel,
            credentials,
        }
    }

    /// This client on the same connection, telling the master `reason`
    /// for each change it makes (journaled in the pipeline's audit trail).
    pub fn with_reason(&self, reason: &str) -> Client {
        let credentials = self.credentials.clone().with_reason(reason);
        Client::on_channel(self.url.clone(), self.channel.clone(), credentials)
    }

    /// The master address this client was created with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated gRPC client on the same channel, for calls the SDK
    /// does not wrap (the worker calls: lease, renew, commit, release).
    pub fn raw(&self) -> TaskMasterClient<MasterChannel> {
        self.inner.clone()
    }

    /// Submits a pipeline; returns its id once the master has made the
    /// submission durable.
    pub async fn submit(&self, spec: PipelineSpec) -> Result<String, ClientError> {
        let request = with_timeout(SubmitRequest { spec: Some(spec) });
        let reply = self.inner.clone().submit(request).await;
        Ok(self.answer(reply)?.pipeline_id)
    }

    /// One pipeline's state, per-group counts and failed units.
    pub async fn status(&self, pipeline_id: &str) -> Result<PipelineStatus, ClientError> {
        let request = with_timeout(GetStatusRequest {
            pipeline_id: pipeline_id.to_string(),
        });
        let reply = self.inner.clone().get_status(request).await;
        self.answer(reply)
    }

    /// Every pipeline the master knows, oldest first (every page of
    /// [`Client::list_page`]).
    pub async fn list(&self) -> Result<Vec<PipelineStatus>, ClientError> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_page(&token, 0).await?;
            all.extend(page.pipelines);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// One page of pipelines, oldest first: `page_token` empty for the
    /// first, then the reply's `next_page_token` (empty after the last);
    /// `page_size` 0 for the most a page holds.
    pub async fn list_page(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<ListPipelinesResponse, ClientError> {
        let request = with_timeout(ListPipelinesRequest {
            page_token: page_token.to_string(),
            page_size,
        });
        let reply = self.inner.clone().list_pipelines(request).await;
        self.answer(reply)
    }

    /// The committed outputs of one group, one entry per committed unit,
    /// in unit order (every page of the listing, a unit's paths joined).
    pub async fn outputs(
        &self,
        pipeline_id: &str,
        group: &str,
    ) -> Result<Vec<UnitOutputs>, ClientError> {
        let mut units: Vec<UnitOutputs> = Vec::new();
        let mut token = String::new();
        loop {
            let request = with_timeout(ListOutputsRequest {
                pipeline_id: pipeline_id.to_string(),
                group: group.to_string(),
                page_token: token,
                page_size: 0,
            });
            let reply = self.inner.clone().list_outputs(request).await;
            let page = self.answer(reply)?;
            for unit in page.units {
                match units.last_mut() {
                    Some(last) if last.unit == unit.unit => last.paths.extend(unit.paths),
                    _ => units.push(unit),
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        units.sort_by_key(|unit| unit.unit);
        Ok(units)
    }

    /// The committed output file paths of one group, in unit order (the
    /// files of one unit in the order the worker reported them).
    pub async fn output_paths(
        &self,
        pipeline_id: &str,
        group: &str,
    ) -> Result<Vec<String>, ClientError> {
        let units = self.outputs(pipeline_id, group).await?;
        Ok(units.into_iter().flat_map(|unit| unit.paths).collect())
    }

    /// Polls every `poll` until the pipeline has succeeded, failed or been
    /// cancelled, and returns that final status.
    pub async fn wait(
        &self,
        pipeline_id: &str,
        poll: Duration,
    ) -> Result<PipelineStatus, ClientError> {
        self.wait_with(pipeline_id, poll, |_| {}).await
    }

    /// [`Client::wait`], calling `on_status` with every status polled (for
    /// progress reports). A master that is unreachable for a while (e.g.
    /// restarting) is polled through for up to [`WAIT_UNAVAILABLE_MAX`].
    pub async fn wait_with(
        &self,
        pipeline_id: &str,
        poll: Duration,
        mut on_status: impl FnMut(&PipelineStatus),
    ) -> Result<PipelineStatus, ClientError> {
        let poll = poll.max(POLL_INTERVAL_MIN);
        let mut unavailable_since: Option<Instant> = None;
        loop {
            match self.status(pipeline_id).await {
                Ok(status) => {
                    unavailable_since = None;
                    on_status(&status);
                    if is_finished(status.state()) {
                        return Ok(status);
                    }
                }
                Err(e) if e.code() == Some(Code::Unavailable) => {
                    let since = *unavailable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= WAIT_UNAVAILABLE_MAX {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Stops a pipeline for good: no more leases, and commits of leases
    /// already out are refused. Refused (FAILED_PRECONDITION) once the
    /// pipeline has finished.
    pub async fn cancel(&self, pipeline_id: &str) -> Result<(), ClientError> {
        let request = with_timeout(CancelRequest {
            pipeline_id: pipeline_id.to_string(),
        });
        let reply = self.inner.clone().cancel(request).await;
        self.answer(reply).map(drop)
    }

    /// Makes the master forget finished pipelines (all or none): their
    /// status, outputs list and place in memory and snapshots. Their
    /// committed outputs stay in the store; outputs of attempts that never
    /// committed are deleted first. Returns how many such attempts were
    /// swept. Refused (FAILED_PRECONDITION) while one has not finished.
    pub async fn delete_pipelines(&self, pipeline_ids: &[String]) -> Result<u64, ClientError> {
        let request = with_timeout(DeletePipelinesRequest {
            pipeline_ids: pipeline_ids.to_vec(),
        });
        let reply = self.inner.clone().delete_pipelines(request).await;
        self.answer(reply).map(|r| r.attempts_swept)
    }

    /// Stops (`blocked`) or resumes handing out leases, for one pipeline or
    /// (`None`) the whole master. Leases already out may still commit.
    /// Refused (FAILED_PRECONDITION) when it is already in that state.
    pub async fn block(&self, pipeline_id: Option<&str>, blocked: bool) -> Result<(), ClientError> {
        let request = with_timeout(BlockRequest {
            pipeline_id: pipeline_id.unwrap_or_default().to_string(),
            blocked,
        });
        let reply = self.inner.clone().block(request).await;
        self.answer(reply).map(drop)
    }

    /// Gives failed units fresh attempts with exactly the same inputs and
    /// parameters: every failed unit of the pipeline, of one `group`, or
    /// one `unit` of a group. Returns how many units were retried; refused
    /// (FAILED_PRECONDITION) when none of them has failed.
    pub async fn retry(
        &self,
        pipeline_id: &str,
        group: Option<&str>,
        unit: Option<u32>,
    ) -> Result<u64, ClientError> {
        let request = with_timeout(RetryRequest {
            pipeline_id: pipeline_id.to_string(),
            group: group.unwrap_or_default().to_string(),
            unit,
        });
        let reply = self.inner.clone().retry(request).await;
        Ok(self.answer(reply)?.units_retried)
    }

    /// Starts a new run of a finished (or failed, or cancelled) pipeline
    /// with the same spec and parameters; returns the new pipeline's id.
    pub async fn rerun(&self, pipeline_id: &str) -> Result<String, ClientError> {
        self.rerun_with_params(pipeline_id, &[]).await
    }

    /// [`Client::rerun`] with `params` (name, value) changed for the new
    /// run. Each must be a parameter the pipeline has: another name is
    /// refused (INVALID_ARGUMENT), naming the ones it has.
    pub async fn rerun_with_params(
        &self,
        pipeline_id: &str,
        params: &[(String, String)],
    ) -> Result<String, ClientError> {
        let request = with_timeout(RerunRequest {
            pipeline_id: pipeline_id.to_string(),
            params: params.iter().cloned().collect(),
        });
        let reply = self.inner.clone().rerun(request).await;
        Ok(self.answer(reply)?.pipeline_id)
    }

    /// Resets a group's units to run again; with `downstream`, also drops
    /// the units derived from them in every group that depends on it.
    /// Without it, refused (FAILED_PRECONDITION) when the group already
    /// feeds downstream units.
    pub async fn clear(
        &self,
        pipeline_id: &str,
        group: &str,
        downstream: bool,
    ) -> Result<ClearResponse, ClientError> {
        let request = with_timeout(ClearRequest {
            pipeline_id: pipeline_id.to_string(),
            group: group.to_string(),
            downstream,
        });
        let reply = self.inner.clone().clear(request).await;
        self.answer(reply)
    }

    /// Changes a group's config and bumps its config version: leases
    /// granted under the old version can no longer commit, and their units
    /// run again under the new config.
    pub async fn change_config(
        &self,
        pipeline_id: &str,
        group: &str,
        change: GroupConfigChange,
    ) -> Result<ChangeConfigResponse, ClientError> {
        let request = with_timeout(ChangeConfigRequest {
            pipeline_id: pipeline_id.to_string(),
            group: group.to_string(),
            change: Some(change),
        });
        let reply = self.inner.clone().change_config(request).await;
        self.answer(reply)
    }

    /// Splits each pending unit of a first group into up to `split` smaller
    /// units (its files spread over them, or a byte range cut).
    pub async fn scale(
        &self,
        pipeline_id: &str,
        group: &str,
        split: u32,
    ) -> Result<ScaleResponse, ClientError> {
        let request = with_timeout(ScaleRequest {
            pipeline_id: pipeline_id.to_string(),
            group: group.to_string(),
            split,
        });
        let reply = self.inner.clone().scale(request).await;
        self.answer(reply)
    }

    /// The workers the master has seen recently, with their slots and the
    /// leases they hold, ordered by worker id.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let request = with_timeout(ListWorkersRequest {
                page_token: token,
                page_size: 0,
            });
            let reply = self.inner.clone().list_workers(request).await;
            let page = self.answer(reply)?;
            all.extend(page.workers);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// The master's own state: blocked, leases in flight, journal and
    /// snapshot sizes.
    pub async fn master_status(&self) -> Result<MasterStatus, ClientError> {
        let request = with_timeout(GetMasterStatusRequest {});
        let reply = self.inner.clone().get_master_status(request).await;
        self.answer(reply)
    }

    /// Records a consistent copy of the whole state (and compacts the
    /// journal); returns its id and size.
    pub async fn snapshot(&self, note: &str) -> Result<SnapshotInfo, ClientError> {
        let request = with_timeout(TakeSnapshotRequest {
            note: note.to_string(),
        });
        let reply = self.inner.clone().take_snapshot(request).await;
        self.answer(reply)
    }

    /// The snapshots on disk, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, ClientError> {
        let request = with_timeout(ListSnapshotsRequest {});
        let reply = self.inner.clone().list_snapshots(request).await;
        Ok(self.answer(reply)?.snapshots)
    }

    /// Restores a snapshot's state: units committed since run again, and
    /// every lease out now can no longer commit. Returns how many leases
    /// were invalidated; NOT_FOUND for an unknown snapshot.
    pub async fn rollback(&self, snapshot_id: &str) -> Result<u64, ClientError> {
        let request = with_timeout(RollbackRequest {
            snapshot_id: snapshot_id.to_string(),
            ..Default::default()
        });
        let reply = self.inner.clone().rollback(request).await;
        Ok(self.answer(reply)?.leases_invalidated)
    }

    /// What a rollback to `snapshot_id` undoes: with `preview`, nothing
    /// changes and the reply says what a rollback would undo now (to ask
    /// for a confirmation); without, it rolls back as [`Client::rollback`]
    /// and says what it undid. NOT_FOUND for an unknown snapshot.
    pub async fn rollback_undoing(
        &self,
        snapshot_id: &str,
        preview: bool,
    ) -> Result<taskmaster_proto::v1::RollbackPreview, ClientError> {
        let request = with_timeout(RollbackRequest {
            snapshot_id: snapshot_id.to_string(),
            preview,
        });
        let reply = self.inner.clone().rollback(request).await;
        Ok(self.answer(reply)?.undone.unwrap_or_default())
    }

    /// Makes a bearer token for `name` with `role` (admin only), lasting
    /// `expires_in_ms` (0: forever). The reply holds the token: the only
    /// time anyone sees it.
    pub async fn create_token(
        &self,
        name: &str,
        role: taskmaster_proto::v1::Role,
        expires_in_ms: u64,
    ) -> Result<taskmaster_proto::v1::CreateTokenResponse, ClientError> {
        let request = with_timeout(taskmaster_proto::v1::CreateTokenRequest {
            name: name.to_string(),
            role: role as i32,
            expires_in_ms,
        });
        let reply = self.inner.clone().create_token(request).await;
        self.answer(reply)
    }

    /// Every token's name, role, expiry and last use (admin only).
    pub async fn list_tokens(&self) -> Result<Vec<taskmaster_proto::v1::TokenInfo>, ClientError> {
        let request = with_timeout(taskmaster_proto::v1::ListTokensRequest {});
        let reply = self.inner.clone().list_tokens(request).await;
        Ok(self.answer(reply)?.tokens)
    }

    /// Revokes the token named `name` (admin only).
    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let request = with_timeout(taskmaster_proto::v1::RevokeTokenRequest {
            name: name.to_string(),
        });
        let reply = self.inner.clone().revoke_token(request).await;
        self.answer(reply).map(|_| ())
    }

    /// A part of one attempt's stdout or stderr log, as its worker keeps
    /// it in the store (`tmctl logs`): the bytes from `request.offset`,
    /// where the next read starts, the log's size and whether the attempt
    /// is over. To follow a running attempt, read again from
    /// `next_offset` until `finished` is set and `next_offset == size`.
    /// NOT_FOUND names the pipeline, group, unit or attempt without logs.
    pub async fn read_logs(
        &self,
        request: taskmaster_proto::v1::ReadLogsRequest,
    ) -> Result<taskmaster_proto::v1::ReadLogsResponse, ClientError> {
        let reply = self.inner.clone().read_logs(with_timeout(request)).await;
        self.answer(reply)
    }

    /// Unwraps a reply, turning a gRPC error into a [`ClientError`]; an
    /// unavailable master is reported with its address.
    pub(crate) fn answer<T>(
        &self,
        reply: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, ClientError> {
        reply.map(tonic::Response::into_inner).map_err(|status| {
            let message = if status.message().is_empty() {
                status.code().description().to_string()
            } else {
                status.message().to_string()
            };
            match status.code() {
                Code::Unavailable => ClientError::Unreachable {
                    url: self.url.clone(),
                    message,
                },
                code => ClientError::Rpc { code, message },
            }
        })
    }
}

/// Wraps a message in a request with the SDK's deadline.
pub(crate) fn with_timeout<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(RPC_TIMEOUT);
    request
}

/// An error and its sources joined with ": " (tonic's transport error says
/// only "transport error"; the cause, e.g. "Connection refused", is below).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // hyper repeats its own message one level down; say it once.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
