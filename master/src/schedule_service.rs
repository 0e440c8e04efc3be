//! The gRPC handlers of the `Schedules` service: thin, like `service`'s.
//! Errors become statuses through the same mapping.

use std::sync::Arc;

use taskmaster_proto::v1::schedules_server::Schedules;
use taskmaster_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::grpc_status::status;
use crate::runtime::Master;

pub struct ScheduleService {
    master: Arc<Master>,
}

impl ScheduleService {
    pub fn new(master: Arc<Master>) -> ScheduleService {
        ScheduleService { master }
    }
}

#[tonic::async_trait]
impl Schedules for ScheduleService {
    async fn add_schedule(
        &self,
        request: Request<AddScheduleRequest>,
    ) -> Result<Response<ScheduleInfo>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("the request has no schedule"))?;
        let info = self.master.add_schedule(spec).await.map_err(status)?;
        Ok(Response::new(info))
    }

    async fn list_schedules(
        &self,
        _request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let schedules = self.master.schedules().await.map_err(status)?;
        Ok(Response::new(ListSchedulesResponse { schedules }))
    }

    async fn change_schedule(
        &self,
        request: Request<ChangeScheduleRequest>,
    ) -> Result<Response<ScheduleInfo>, Status> {
        let req = request.into_inner();
        let action = ScheduleAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument(format!("unknown action {}", req.action)))?;
        let info = self
            .master
            .change_schedule(&req.name, action)
            .await
            .map_err(status)?;
        Ok(Response::new(info.unwrap_or_default()))
    }

    async fn trigger_schedule(
        &self,
        request: Request<TriggerScheduleRequest>,
    ) -> Result<Response<ScheduleRun>, Status> {
        let req = request.into_inner();
        let run = self
            .master
            .trigger_schedule(&req.name, &req.at)
            .await
            .map_err(status)?;
        Ok(Response::new(run))
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let req = request.into_inner();
        let runs = self
            .master
            .schedule_runs(&req.schedule, req.limit as usize)
            .await
            .map_err(status)?;
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn backfill(
        &self,
        request: Request<BackfillRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let reply = self
            .master
            .backfill(&request.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(reply))
    }

    async fn list_backfills(
        &self,
        _request: Request<ListBackfillsRequest>,
    ) -> Result<Response<ListBackfillsResponse>, Status> {
        let backfills = self.master.backfills().await.map_err(status)?;
        Ok(Response::new(ListBackfillsResponse { backfills }))
    }

    async fn change_backfill(
        &self,
        request: Request<ChangeBackfillRequest>,
    ) -> Result<Response<BackfillInfo>, Status> {
        let req = request.into_inner();
        let action = BackfillAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument(format!("unknown action {}", req.action)))?;
        let info = self
            .master
            .change_backfill(&req.id, action, req.max_active)
            .await
            .map_err(status)?;
        Ok(Response::new(info))
    }

    async fn list_published(
        &self,
        request: Request<ListPublishedRequest>,
    ) -> Result<Response<ListPublishedResponse>, Status> {
        let req = request.into_inner();
        let ds = (!req.at.is_empty()).then_some(req.at.as_str());
        let partitions = self
            .master
            .published(&req.schedule, ds)
            .await
            .map_err(status)?;
        Ok(Response::new(ListPublishedResponse { partitions }))
    }
}
