//! Reading task logs for `ReadLogs` and the HTTP unit page: the core says
//! which pipeline, group and attempts exist and whether an attempt is
//! over; [`crate::logs`] reads the store.

use std::collections::BTreeSet;

use taskmaster_proto::log_names::LogKind;

use super::Master;
use crate::logs::{
    LOG_READ_BYTES_MAX, LogChunk, LogError, LogRequest, OUTCOME_BYTES_MAX, UnitDir, is_finished,
    list_unit_logs, no_logs, pick_attempt, read_range,
};

impl Master {
    /// Reads a part of one attempt's log; see [`crate::logs`].
    pub async fn read_log(&self, request: &LogRequest) -> Result<LogChunk, LogError> {
        let status = self.status(&request.pipeline_id).await?;
        let Some(group) = status.groups.iter().find(|g| g.name == request.group) else {
            return Err(LogError::NotFound(format!(
                "pipeline {} has no group {:?}",
                request.pipeline_id, request.group
            )));
        };
        let store = self.data_store();
        let unit_dir = UnitDir {
            pipeline_id: &request.pipeline_id,
            group: &request.group,
            unit: request.unit,
        };
        let logs = list_unit_logs(&store, &unit_dir).await?;
        if logs.is_empty() {
            return Err(no_logs(request, group));
        }
        let attempts: Vec<u32> = logs
            .keys()
            .map(|a| a.attempt)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let chosen = pick_attempt(&logs, request, &attempts)?;
        let ended = logs[&chosen].contains(&LogKind::End);
        let finished = ended
            || is_finished(status.state())
            || !self
                .attempt_may_matter(
                    &request.pipeline_id,
                    &request.group,
                    request.unit,
                    chosen.lease_id,
                    chosen.incarnation,
                )
                .await?;
        let max_bytes = match request.max_bytes {
            0 => LOG_READ_BYTES_MAX,
            n => n.min(LOG_READ_BYTES_MAX),
        };
        let path = unit_dir.file(&chosen, request.stream.kind());
        let (data, size) = read_range(&store, &path, request.offset, u64::from(max_bytes)).await?;
        let outcome = if ended {
            let end = unit_dir.file(&chosen, LogKind::End);
            let (bytes, _) = read_range(&store, &end, 0, OUTCOME_BYTES_MAX).await?;
            String::from_utf8_lossy(&bytes).trim_end().to_string()
        } else {
            String::new()
        };
        Ok(LogChunk {
            next_offset: request.offset + data.len() as u64,
            data,
            size,
            finished,
            attempt: chosen,
            attempts,
            outcome,
        })
    }
}
