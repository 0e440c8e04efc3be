//! The gRPC handlers: thin. Each validates what the core does not see,
//! calls the runtime, and maps typed errors to a status in one place.

use std::sync::Arc;
use std::time::Duration;

use taskmaster_proto::v1::task_master_server::TaskMaster;
use taskmaster_proto::v1::*;
use tonic::{Code, Request, Response, Status};

use crate::core::limits::{BATCH_ITEMS_MAX, LEASE_WAIT_MS_MAX};
use crate::core::ops::ItemResults;
use crate::core::{CoreError, Refusal};
use crate::runtime::{Master, MasterError};

pub struct Service {
    master: Arc<Master>,
}

impl Service {
    pub fn new(master: Arc<Master>) -> Service {
        Service { master }
    }
}

/// The one place typed errors become gRPC statuses.
fn status(error: MasterError) -> Status {
    let message = error.to_string();
    match error {
        MasterError::Core(e) => match e {
            CoreError::Invalid(_) => Status::invalid_argument(message),
            CoreError::NotFound(_) => Status::not_found(message),
            CoreError::WrongMaster { .. } => Status::permission_denied(message),
            CoreError::AlreadyExists(_) => Status::already_exists(message),
            CoreError::Corrupt(_) => Status::internal(message),
        },
        MasterError::Journal(_) | MasterError::ShuttingDown => Status::unavailable(message),
        MasterError::DataDir { .. } => Status::internal(message),
    }
}

/// Per-item refusals of batch calls, as gRPC codes.
fn item_status(result: Result<(), Refusal>) -> ItemStatus {
    let code = match &result {
        Ok(()) => Code::Ok,
        Err(Refusal::UnknownUnit(_)) => Code::NotFound,
        Err(Refusal::StaleConfig { .. }) => Code::FailedPrecondition,
        Err(Refusal::LeaseLost(_)) => Code::Aborted,
        Err(Refusal::Invalid(_)) => Code::InvalidArgument,
    };
    ItemStatus {
        code: code as i32,
        message: result.err().map(|e| e.to_string()).unwrap_or_default(),
    }
}

fn item_statuses(results: ItemResults) -> Vec<ItemStatus> {
    results.into_iter().map(item_status).collect()
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
        _request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        let pipelines = self.master.list().await.map_err(status)?;
        Ok(Response::new(ListPipelinesResponse { pipelines }))
    }

    async fn list_outputs(
        &self,
        request: Request<ListOutputsRequest>,
    ) -> Result<Response<ListOutputsResponse>, Status> {
        let req = request.into_inner();
        let units = self
            .master
            .outputs(&req.pipeline_id, &req.group)
            .await
            .map_err(status)?;
        Ok(Response::new(ListOutputsResponse { units }))
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let req = request.into_inner();
        if req.max_units == 0 || req.max_units as usize > BATCH_ITEMS_MAX {
            return Err(Status::invalid_argument(format!(
                "max_units must be 1 to {BATCH_ITEMS_MAX}"
            )));
        }
        if req.wait_ms > LEASE_WAIT_MS_MAX {
            return Err(Status::invalid_argument(format!(
                "wait_ms must be at most {LEASE_WAIT_MS_MAX}"
            )));
        }
        let wait = Duration::from_millis(req.wait_ms.into());
        let leases = self
            .master
            .lease(&req.worker_id, req.max_units as usize, wait)
            .await
            .map_err(status)?;
        Ok(Response::new(LeaseResponse { leases }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let req = request.into_inner();
        let results = self
            .master
            .renew(&req.server_token, &req.leases)
            .await
            .map_err(status)?;
        let lease_ms = self.master.lease_ms();
        Ok(Response::new(RenewResponse {
            results: item_statuses(results),
            lease_ms,
        }))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let req = request.into_inner();
        let results = self
            .master
            .commit(&req.server_token, &req.items)
            .await
            .map_err(status)?;
        Ok(Response::new(CommitResponse {
            results: item_statuses(results),
        }))
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let req = request.into_inner();
        let results = self
            .master
            .release(&req.server_token, &req.leases)
            .await
            .map_err(status)?;
        Ok(Response::new(ReleaseResponse {
            results: item_statuses(results),
        }))
    }
}
