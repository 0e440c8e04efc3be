//! An attempt's logs over HTTP: `/api/.../units/{unit}/logs` (a byte range
//! of stdout or stderr, as `ReadLogs` reads it, through
//! [`crate::logs::read_log`]), and the tails the unit page shows.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::Http;
use super::error::HttpError;
use super::query::Params;
use crate::logs::{LOG_READ_BYTES_MAX, LogChunk, LogError, LogRequest, LogStream};
use crate::runtime::Master;

/// Bytes of each log's end the unit page shows.
pub const PAGE_TAIL_BYTES: u64 = 64 * 1024;

impl From<LogError> for HttpError {
    fn from(error: LogError) -> HttpError {
        match error {
            LogError::Master(e) => e.into(),
            LogError::NotFound(why) => HttpError::not_found(why),
            LogError::Invalid(why) => HttpError::bad_request(why),
            LogError::Store(_) => HttpError::unavailable(error.to_string()),
        }
    }
}

fn unit_number(unit: &str) -> Result<u32, HttpError> {
    unit.parse().map_err(|_| {
        HttpError::bad_request(format!("the unit must be a unit number, not {unit:?}"))
    })
}

/// `GET /api/pipelines/{id}/groups/{group}/units/{unit}/logs`: `stream`
/// (stdout or stderr, default stderr), `attempt` (0 or absent: the
/// latest), `offset`, `max_bytes`.
pub async fn api_logs(
    State(http): State<Http>,
    Path((id, group, unit)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let params = Params(params).only(&["stream", "attempt", "offset", "max_bytes"])?;
    let stream = match params.one_of("stream", &["stdout", "stderr"])? {
        Some("stdout") => LogStream::Stdout,
        _ => LogStream::Stderr,
    };
    let request = LogRequest {
        pipeline_id: id,
        group,
        unit: unit_number(&unit)?,
        attempt: params.number("attempt", 0u32, u32::MAX)?,
        stream,
        offset: params.number("offset", 0u64, u64::MAX)?,
        max_bytes: params.number("max_bytes", LOG_READ_BYTES_MAX, LOG_READ_BYTES_MAX)?,
    };
    let chunk = http.master.read_log(&request).await?;
    Ok(Json(json!({
        "attempt": chunk.attempt.attempt, "attempts": chunk.attempts,
        "data": String::from_utf8_lossy(&chunk.data), "next_offset": chunk.next_offset,
        "size": chunk.size, "finished": chunk.finished, "outcome": chunk.outcome,
    })))
}

/// The last [`PAGE_TAIL_BYTES`] of both logs of one attempt of a unit.
pub struct LogTails {
    pub attempt: u32,
    pub attempts: Vec<u32>,
    pub outcome: String,
    pub finished: bool,
    /// (stream name, bytes left out before the tail, the tail as text).
    pub streams: Vec<(&'static str, u64, String)>,
}

/// The tails of `attempt` (0: the latest) of a unit, or why there are
/// none (no attempt has started, or its worker keeps no logs).
pub async fn tails(
    master: &Master,
    id: &str,
    group: &str,
    unit: u32,
    attempt: u32,
) -> Result<LogTails, LogError> {
    let mut out = None::<LogTails>;
    for (name, stream) in [("stderr", LogStream::Stderr), ("stdout", LogStream::Stdout)] {
        let mut request = LogRequest {
            pipeline_id: id.to_string(),
            group: group.to_string(),
            unit,
            attempt: out.as_ref().map_or(attempt, |t| t.attempt),
            stream,
            offset: 0,
            max_bytes: PAGE_TAIL_BYTES as u32,
        };
        let mut chunk: LogChunk = master.read_log(&request).await?;
        if chunk.size > PAGE_TAIL_BYTES {
            request.offset = chunk.size - PAGE_TAIL_BYTES;
            request.attempt = chunk.attempt.attempt;
            chunk = master.read_log(&request).await?;
        }
        let skipped = chunk.next_offset.saturating_sub(chunk.data.len() as u64);
        let tails = out.get_or_insert_with(|| LogTails {
            attempt: chunk.attempt.attempt,
            attempts: chunk.attempts.clone(),
            outcome: chunk.outcome.clone(),
            finished: chunk.finished,
            streams: Vec::new(),
        });
        let text = String::from_utf8_lossy(&chunk.data).into_owned();
        tails.streams.push((name, skipped, text));
    }
    Ok(out.expect("two streams read"))
}
