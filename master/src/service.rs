//! The gRPC handlers: thin. Each validates what the core does not see,
//! calls the runtime, and maps typed errors to a status in one place.

use std::sync::Arc;

use taskmaster_proto::v1::task_master_server::TaskMaster;
use taskmaster_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{self, worker_calls};
use crate::grpc_status::{refusal_code, status};
use crate::runtime::Master;
use crate::work_stream;
use crate::worker_rpc::{commit_call, lease_call, release_call, renew_call};

pub struct Service {
    master: Arc<Master>,
    /// Access settings and tokens' last use (issue 24).
    access: Arc<auth::Access>,
}

impl Service {
    /// The service of a master without `--auth`.
    pub fn new(master: Arc<Master>) -> Service {
        Service::with_access(master, Arc::new(auth::Access::default()))
    }

    pub fn with_access(master: Arc<Master>, access: Arc<auth::Access>) -> Service {
        Service { master, access }
    }
}

#[tonic::async_trait]
impl TaskMaster for Service {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("no pipeline spec"))?;
        let pipeline_id = self.master.submit(spec).await.map_err(status)?;
        tracing::info!(pipeline_id, "pipeline submitted");
        Ok(Response::new(SubmitResponse { pipeline_id }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<PipelineStatus>, Status> {
        let id = request.into_inner().pipeline_id;
        Ok(Response::new(
            self.master.status(&id).await.map_err(status)?,
        ))
    }

    async fn list_pipelines(
        &self,
        request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        let req = request.into_inner();
        let (pipelines, next_page_token) = self
            .master
            .list_page(&req.page_token, req.page_size)
            .await
            .map_err(status)?;
        Ok(Response::new(ListPipelinesResponse {
            pipelines,
            next_page_token,
        }))
    }

    async fn list_outputs(
        &self,
        request: Request<ListOutputsRequest>,
    ) -> Result<Response<ListOutputsResponse>, Status> {
        let req = request.into_inner();
        let (units, next_page_token) = self
            .master
            .outputs_page(&req.pipeline_id, &req.group, &req.page_token, req.page_size)
            .await
            .map_err(status)?;
        Ok(Response::new(ListOutputsResponse {
            units,
            next_page_token,
        }))
    }

    async fn read_logs(
        &self,
        request: Request<ReadLogsRequest>,
    ) -> Result<Response<ReadLogsResponse>, Status> {
        let req = request.into_inner();
        let stream = match LogStream::try_from(req.stream) {
            Ok(LogStream::Stdout) => crate::logs::LogStream::Stdout,
            Ok(LogStream::Stderr) => crate::logs::LogStream::Stderr,
            Err(_) => return Err(Status::invalid_argument("unknown log stream")),
        };
        let read = crate::logs::LogRequest {
            pipeline_id: req.pipeline_id,
            group: req.group,
            unit: req.unit,
            attempt: req.attempt,
            stream,
            offset: req.offset,
            max_bytes: req.max_bytes,
        };
        let chunk = match self.master.read_log(&read).await {
            Ok(chunk) => chunk,
            Err(crate::logs::LogError::Master(e)) => return Err(status(e)),
            Err(e) => return Err(e.to_status()),
        };
        Ok(Response::new(ReadLogsResponse {
            data: chunk.data,
            next_offset: chunk.next_offset,
            size: chunk.size,
            finished: chunk.finished,
            attempt: chunk.attempt.attempt,
            lease_id: chunk.attempt.lease_id,
            incarnation: chunk.attempt.incarnation,
            attempts: chunk.attempts,
            outcome: chunk.outcome,
        }))
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let worker = auth::bound_worker(request.extensions());
        lease_call(&self.master, request.into_inner(), worker.as_deref())
            .await
            .map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let worker = auth::bound_worker(request.extensions());
        renew_call(&self.master, request.into_inner(), worker.as_deref())
            .await
            .map(Response::new)
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let worker = auth::bound_worker(request.extensions());
        commit_call(&self.master, request.into_inner(), worker.as_deref())
            .await
            .map(Response::new)
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let worker = auth::bound_worker(request.extensions());
        release_call(&self.master, request.into_inner(), worker.as_deref())
            .await
            .map(Response::new)
    }

    async fn list_inputs(
        &self,
        request: Request<ListInputsRequest>,
    ) -> Result<Response<ListInputsResponse>, Status> {
        let worker = auth::bound_worker(request.extensions());
        let req = request.into_inner();
        let lease = req
            .lease
            .ok_or_else(|| Status::invalid_argument("no lease named"))?;
        worker_calls::check_leases(&self.master, worker.as_deref(), [Some(&lease)])?;
        match self
            .master
            .list_inputs(&req.server_token, &lease, req.cursor, req.limit)
            .await
            .map_err(status)?
        {
            Ok(page) => Ok(Response::new(page)),
            Err(refusal) => Err(Status::new(refusal_code(&refusal), refusal.to_string())),
        }
    }

    type WorkStream = work_stream::Replies;

    async fn work(
        &self,
        request: Request<tonic::Streaming<WorkRequest>>,
    ) -> Result<Response<Self::WorkStream>, Status> {
        let worker = auth::bound_worker(request.extensions());
        // Held for the stream's life: the replies own it (issue 24).
        let held = self.access.counters.work_stream(&self.access.limits)?;
        let gate = auth::LongPollGate {
            access: Arc::clone(&self.access),
            who: auth::caller_name(request.extensions()),
        };
        let replies =
            work_stream::serve(Arc::clone(&self.master), request.into_inner(), worker, gate);
        Ok(Response::new(Box::pin(futures_util::StreamExt::map(
            replies,
            move |reply| {
                let _ = &held;
                reply
            },
        ))))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let id = request.into_inner().pipeline_id;
        self.master.cancel(&id).await.map_err(status)?;
        tracing::info!(pipeline_id = id, "pipeline cancelled");
        Ok(Response::new(CancelResponse {}))
    }

    async fn delete_pipelines(
        &self,
        request: Request<DeletePipelinesRequest>,
    ) -> Result<Response<DeletePipelinesResponse>, Status> {
        let ids = request.into_inner().pipeline_ids;
        let swept = self
            .master
            .delete_pipelines(ids.clone())
            .await
            .map_err(status)?;
        tracing::info!(pipelines = ?ids, swept = swept.attempts_deleted, "pipelines deleted");
        Ok(Response::new(DeletePipelinesResponse {
            attempts_swept: swept.attempts_deleted,
        }))
    }

    async fn block(
        &self,
        request: Request<BlockRequest>,
    ) -> Result<Response<BlockResponse>, Status> {
        let req = request.into_inner();
        self.master
            .block(&req.pipeline_id, req.blocked)
            .await
            .map_err(status)?;
        tracing::info!(
            pipeline_id = req.pipeline_id,
            blocked = req.blocked,
            "leasing block changed"
        );
        Ok(Response::new(BlockResponse {}))
    }

    async fn retry(
        &self,
        request: Request<RetryRequest>,
    ) -> Result<Response<RetryResponse>, Status> {
        let req = request.into_inner();
        let group = Some(req.group.as_str()).filter(|g| !g.is_empty());
        let changed = self
            .master
            .retry(&req.pipeline_id, group, req.unit)
            .await
            .map_err(status)?;
        Ok(Response::new(RetryResponse {
            units_retried: changed.units_reset,
        }))
    }

    async fn rerun(
        &self,
        request: Request<RerunRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let req = request.into_inner();
        let id = req.pipeline_id;
        let pipeline_id = self
            .master
            .rerun_with_params(&id, &req.params)
            .await
            .map_err(status)?;
        tracing::info!(pipeline_id, rerun_of = id, "pipeline re-run");
        Ok(Response::new(SubmitResponse { pipeline_id }))
    }

    async fn clear(
        &self,
        request: Request<ClearRequest>,
    ) -> Result<Response<ClearResponse>, Status> {
        let req = request.into_inner();
        let changed = self
            .master
            .clear(&req.pipeline_id, &req.group, req.downstream)
            .await
            .map_err(status)?;
        Ok(Response::new(ClearResponse {
            units_reset: changed.units_reset,
            units_dropped: changed.units_dropped,
        }))
    }

    async fn change_config(
        &self,
        request: Request<ChangeConfigRequest>,
    ) -> Result<Response<ChangeConfigResponse>, Status> {
        let req = request.into_inner();
        let change = req
            .change
            .ok_or_else(|| Status::invalid_argument("no config change"))?;
        let (changed, config_version) = self
            .master
            .change_config(&req.pipeline_id, &req.group, change)
            .await
            .map_err(status)?;
        tracing::info!(
            pipeline_id = req.pipeline_id,
            group = req.group,
            config_version,
            "config changed"
        );
        Ok(Response::new(ChangeConfigResponse {
            config_version,
            units_requeued: changed.units_reset,
        }))
    }

    async fn scale(
        &self,
        request: Request<ScaleRequest>,
    ) -> Result<Response<ScaleResponse>, Status> {
        let req = request.into_inner();
        let changed = self
            .master
            .scale(&req.pipeline_id, &req.group, req.split)
            .await
            .map_err(status)?;
        Ok(Response::new(ScaleResponse {
            units_split: changed.units_dropped,
            units_added: changed.units_added,
        }))
    }

    async fn list_workers(
        &self,
        request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        let req = request.into_inner();
        let (workers, next_page_token) = self
            .master
            .workers_page(&req.page_token, req.page_size)
            .await
            .map_err(status)?;
        Ok(Response::new(ListWorkersResponse {
            workers,
            next_page_token,
        }))
    }

    async fn get_master_status(
        &self,
        _request: Request<GetMasterStatusRequest>,
    ) -> Result<Response<MasterStatus>, Status> {
        Ok(Response::new(
            self.master.master_status().await.map_err(status)?,
        ))
    }

    async fn take_snapshot(
        &self,
        request: Request<TakeSnapshotRequest>,
    ) -> Result<Response<SnapshotInfo>, Status> {
        let note = request.into_inner().note;
        if note.len() > crate::core::limits::TEXT_BYTES_MAX {
            return Err(Status::invalid_argument("snapshot note is too long"));
        }
        let info = self.master.take_snapshot(&note).await.map_err(status)?;
        tracing::info!(
            snapshot_id = info.snapshot_id,
            position = info.journal_position,
            "snapshot taken"
        );
        Ok(Response::new(info))
    }

    async fn list_snapshots(
        &self,
        _request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let snapshots = self.master.snapshots().await.map_err(status)?;
        Ok(Response::new(ListSnapshotsResponse { snapshots }))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        let request = request.into_inner();
        let id = request.snapshot_id;
        if request.preview {
            // Changes nothing: not journaled, not audited.
            let undone = self.master.rollback_preview(&id).await.map_err(status)?;
            return Ok(Response::new(RollbackResponse {
                leases_invalidated: undone.leases_invalidated,
                undone: Some(undone),
            }));
        }
        let undone = self.master.rollback_undoing(&id).await.map_err(status)?;
        let leases_invalidated = undone.leases_invalidated;
        tracing::warn!(
            snapshot_id = id,
            leases_invalidated,
            pipelines_dropped = undone.pipelines_dropped,
            units_to_run_again = undone.units_to_run_again,
            "state rolled back"
        );
        // The rollback is done: a failure to journal who did it must not
        // make the caller think it was not (and try again).
        if let Some(actor) = crate::runtime::actor::current(Clone::clone)
            && let Err(e) = self.master.audit_rollback(&id, &actor).await
        {
            tracing::error!(snapshot_id = id, error = %e, "the rollback was done but its audit record was not journaled");
        }
        Ok(Response::new(RollbackResponse {
            leases_invalidated,
            undone: Some(undone),
        }))
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let req = request.into_inner();
        let (token, made) = auth::tokens::make(&req, self.master.unix_ms())?;
        self.master
            .create_token(made.clone())
            .await
            .map_err(status)?;
        // The token itself is never logged: only who it is for.
        tracing::info!(name = made.name, role = ?made.role, "token created");
        Ok(Response::new(CreateTokenResponse {
            token,
            info: Some(made.info(0)),
        }))
    }

    async fn list_tokens(
        &self,
        _request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let tokens = self.master.tokens().await.map_err(status)?;
        let tokens = tokens
            .iter()
            .map(|t| t.info(self.access.last_used(&t.name)))
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let name = request.into_inner().name;
        self.master.revoke_token(&name).await.map_err(status)?;
        self.access.forget(&name);
        tracing::info!(name, "token revoked");
        Ok(Response::new(RevokeTokenResponse {}))
    }
}
