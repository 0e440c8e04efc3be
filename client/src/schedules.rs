//! The SDK's calls of the master's `Schedules` service: schedules, their
//! runs and backfills (see `schedules.proto`).

use taskmaster_proto::v1::*;

use crate::client::{Client, ClientError, with_timeout};

impl Client {
    /// Registers a schedule; its state as the master took it.
    pub async fn add_schedule(&self, spec: ScheduleSpec) -> Result<ScheduleInfo, ClientError> {
        let request = with_timeout(AddScheduleRequest { spec: Some(spec) });
        let reply = self.schedules.clone().add_schedule(request).await;
        self.answer(reply)
    }

    pub async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>, ClientError> {
        let request = with_timeout(ListSchedulesRequest {});
        let reply = self.schedules.clone().list_schedules(request).await;
        Ok(self.answer(reply)?.schedules)
    }

    /// Pauses, resumes or removes schedule `name`.
    pub async fn change_schedule(
        &self,
        name: &str,
        action: ScheduleAction,
    ) -> Result<ScheduleInfo, ClientError> {
        let request = with_timeout(ChangeScheduleRequest {
            name: name.to_string(),
            action: action as i32,
        });
        let reply = self.schedules.clone().change_schedule(request).await;
        self.answer(reply)
    }

    /// A manual run of `name` for logical time `at` (empty: the latest due).
    pub async fn trigger_schedule(&self, name: &str, at: &str) -> Result<ScheduleRun, ClientError> {
        let request = with_timeout(TriggerScheduleRequest {
            name: name.to_string(),
            at: at.to_string(),
        });
        let reply = self.schedules.clone().trigger_schedule(request).await;
        self.answer(reply)
    }

    /// Runs of schedule `name`, newest first (`limit` 0: up to 10,000).
    pub async fn schedule_runs(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>, ClientError> {
        let request = with_timeout(ListRunsRequest {
            schedule: name.to_string(),
            limit,
        });
        let reply = self.schedules.clone().list_runs(request).await;
        Ok(self.answer(reply)?.runs)
    }

    pub async fn backfill(
        &self,
        request: BackfillRequest,
    ) -> Result<BackfillResponse, ClientError> {
        let reply = self.schedules.clone().backfill(with_timeout(request)).await;
        self.answer(reply)
    }

    /// What schedule `name` published, per logical time (on date `ds`,
    /// YYYY-MM-DD, if given).
    pub async fn published(
        &self,
        name: &str,
        ds: Option<&str>,
    ) -> Result<Vec<Publication>, ClientError> {
        let request = with_timeout(ListPublishedRequest {
            schedule: name.to_string(),
            at: ds.unwrap_or_default().to_string(),
        });
        let reply = self.schedules.clone().list_published(request).await;
        Ok(self.answer(reply)?.partitions)
    }

    pub async fn list_backfills(&self) -> Result<Vec<BackfillInfo>, ClientError> {
        let request = with_timeout(ListBackfillsRequest {});
        let reply = self.schedules.clone().list_backfills(request).await;
        Ok(self.answer(reply)?.backfills)
    }

    /// Throttles (`Set` with `max_active`), pauses, resumes or cancels a
    /// backfill.
    pub async fn change_backfill(
        &self,
        id: &str,
        action: BackfillAction,
        max_active: u32,
    ) -> Result<BackfillInfo, ClientError> {
        let request = with_timeout(ChangeBackfillRequest {
            id: id.to_string(),
            action: action as i32,
            max_active,
        });
        let reply = self.schedules.clone().change_backfill(request).await;
        self.answer(reply)
    }
}
