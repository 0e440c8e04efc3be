//! `/api/...`: the JSON API. Reads go through the runtime's read paths
//! (bounded views of the core); actions through the same runtime
//! operations as the gRPC handlers, and answer once their change is
//! durable. A refused action answers the master's reason.

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use taskmaster_proto::v1::{
    AuditEntry, FailedUnit, PipelineState, PipelineStatus, SnapshotInfo, WorkerInfo,
};

use super::error::HttpError;
use super::query::{PAGE_ROWS_DEFAULT, Params};
use super::{Http, pages};
use crate::core::ui_view::{
    AttemptErrorView, GroupShape, PIPELINE_STATES, PipelineFilter, PipelinePage, RollbackEffect,
    UI_PAGE_ROWS_MAX, UNIT_STATES, UnitDetail, UnitsPage,
};
use crate::runtime::Master;

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/api/pipelines", get(list_pipelines))
        .route("/api/pipelines/{id}", get(get_pipeline))
        .route("/api/pipelines/{id}/groups/{group}/units", get(list_units))
        .route(
            "/api/pipelines/{id}/groups/{group}/units/{unit}",
            get(get_unit),
        )
        .route(
            "/api/pipelines/{id}/groups/{group}/units/{unit}/logs",
            get(super::logs::api_logs),
        )
        .route("/api/pipelines/{id}/retry", post(retry))
        .route("/api/pipelines/{id}/clear", post(clear))
        .route("/api/pipelines/{id}/cancel", post(cancel))
        .route("/api/pipelines/{id}/block", post(block))
        .route("/api/pipelines/{id}/rerun", post(rerun))
        .route("/api/workers", get(list_workers))
        .route("/api/snapshots", get(list_snapshots).post(take_snapshot))
        .route("/api/snapshots/{id}", get(get_snapshot))
        .route("/api/snapshots/{id}/rollback", post(rollback))
}

// ----- reads shared with the pages -----

/// The pipelines list's query: state, name, sort, offset, limit.
pub fn pipeline_query(params: Params) -> Result<(PipelineFilter, u64, usize), HttpError> {
    let params = params.only(&["state", "name", "sort", "offset", "limit"])?;
    let filter = PipelineFilter {
        state: params.one_of("state", &PIPELINE_STATES)?,
        name: params.text("name").unwrap_or_default().to_string(),
        newest_first: params.one_of("sort", &["newest", "oldest"])? != Some("oldest"),
    };
    let offset = params.number("offset", 0u64, u64::MAX)?;
    let limit = params.number("limit", PAGE_ROWS_DEFAULT, UI_PAGE_ROWS_MAX)?;
    Ok((filter, offset, limit))
}

pub async fn pipeline_page(
    master: &Master,
    filter: PipelineFilter,
    offset: u64,
    limit: usize,
) -> Result<PipelinePage, HttpError> {
    Ok(master
        .view(move |core, _| core.pipeline_rows(&filter, offset, limit))
        .await?)
}

/// A pipeline's status and the shape of its DAG.
pub struct PipelineView {
    pub status: PipelineStatus,
    pub shapes: Vec<GroupShape>,
    pub submitted_unix_ms: u64,
}

pub async fn pipeline_view(master: &Master, id: &str) -> Result<PipelineView, HttpError> {
    let (status, shape) = master
        .view(|core, _| {
            Ok::<_, crate::core::CoreError>((core.status(id)?, core.pipeline_shape(id)?))
        })
        .await?
        .map_err(crate::runtime::MasterError::from)?;
    let (shapes, submitted_unix_ms) = shape;
    Ok(PipelineView {
        status,
        shapes,
        submitted_unix_ms,
    })
}

pub async fn unit_view(
    master: &Master,
    id: &str,
    group: &str,
    unit: &str,
) -> Result<UnitDetail, HttpError> {
    let unit: u32 = unit.parse().map_err(|_| {
        HttpError::bad_request(format!("the unit must be a unit number, not {unit:?}"))
    })?;
    Ok(master
        .view(|core, _| core.unit_detail(id, group, unit))
        .await?
        .map_err(crate::runtime::MasterError::from)?)
}

pub fn units_query(params: Params) -> Result<(Option<&'static str>, u64, usize), HttpError> {
    let params = params.only(&["state", "offset", "limit"])?;
    Ok((
        params.one_of("state", &UNIT_STATES)?,
        params.number("offset", 0u64, u64::MAX)?,
        params.number("limit", PAGE_ROWS_DEFAULT, UI_PAGE_ROWS_MAX)?,
    ))
}

pub async fn units_page(
    master: &Master,
    id: &str,
    group: &str,
    state: Option<&str>,
    offset: u64,
    limit: usize,
) -> Result<UnitsPage, HttpError> {
    Ok(master
        .view(|core, _| core.group_units(id, group, state, offset, limit))
        .await?
        .map_err(crate::runtime::MasterError::from)?)
}

/// The snapshots, newest first, each with what rolling back to it undoes.
pub async fn snapshots_view(
    master: &Master,
) -> Result<Vec<(SnapshotInfo, RollbackEffect)>, HttpError> {
    let mut snapshots = master.snapshots().await?;
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.taken_unix_ms));
    let taken: Vec<u64> = snapshots.iter().map(|s| s.taken_unix_ms).collect();
    let effects = master
        .view(move |core, _| {
            taken
                .iter()
                .map(|&t| core.rollback_effect(t))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(snapshots.into_iter().zip(effects).collect())
}

pub fn state_name(state: i32) -> &'static str {
    match PipelineState::try_from(state).unwrap_or(PipelineState::Unspecified) {
        PipelineState::Pending => "pending",
        PipelineState::Running => "running",
        PipelineState::Succeeded => "succeeded",
        PipelineState::Failed => "failed",
        PipelineState::Cancelled => "cancelled",
        PipelineState::Unspecified => "unknown",
    }
}

// ----- JSON shapes -----

fn pipeline_json(view: &PipelineView) -> Value {
    let s = &view.status;
    let groups: Vec<Value> = s
        .groups
        .iter()
        .zip(&view.shapes)
        .map(|(g, shape)| {
            let c = g.counts.unwrap_or_default();
            let after: Vec<&str> = shape
                .upstream
                .iter()
                .filter_map(|&u| view.shapes.get(u as usize).map(|s| s.name.as_str()))
                .collect();
            json!({
                "name": g.name, "task": shape.task, "after": after,
                "config_version": g.config_version, "complete": g.complete,
                "max_attempts": shape.max_attempts,
                "pending": c.pending, "leased": c.leased,
                "committed": c.committed, "failed": c.failed,
            })
        })
        .collect();
    let failed: Vec<Value> = s
        .failed_units
        .iter()
        .map(|f| {
            let attempts: Vec<Value> = failed_attempts(f)
                .iter()
                .map(|a| attempt_json(&s.pipeline_id, &f.group, f.unit, a))
                .collect();
            json!({ "group": f.group, "unit": f.unit, "attempts": f.attempts, "errors": attempts })
        })
        .collect();
    json!({
        "pipeline_id": s.pipeline_id, "name": s.name, "state": state_name(s.state),
        "params": s.params, "blocked": s.blocked, "rerun_of": s.rerun_of,
        "retries": s.retries, "submitted_unix_ms": view.submitted_unix_ms,
        "finished_unix_ms": s.finished_unix_ms, "groups": groups, "failed_units": failed,
        "audit": audit_json(&s.audit),
    })
}

/// Who did what to a pipeline (and to the whole master since it was
/// submitted), oldest first.
fn audit_json(audit: &[AuditEntry]) -> Vec<Value> {
    audit
        .iter()
        .map(|e| {
            json!({
                "actor": e.actor, "action": e.action, "reason": e.reason,
                "unix_ms": e.unix_ms, "whole_master": e.pipeline_id.is_empty(),
            })
        })
        .collect()
}

/// A failed unit's kept errors, each with its attempt's number, worker and
/// duration (not known for what an older master kept).
pub fn failed_attempts(f: &FailedUnit) -> Vec<AttemptErrorView> {
    f.errors
        .iter()
        .enumerate()
        .map(|(i, error)| {
            let run = f.error_runs.get(i);
            AttemptErrorView {
                attempt: f.error_attempts.get(i).copied().unwrap_or(0),
                worker_id: run.map(|r| r.worker_id.clone()).filter(|w| !w.is_empty()),
                duration_ms: run.and_then(|r| r.duration_ms),
                error: error.clone(),
            }
        })
        .collect()
}

/// A failed attempt with the links to its logs: the API's (stderr; add
/// `stream=stdout` for the other) and the unit page's. None for an
/// attempt whose number is not known.
fn attempt_json(pipeline_id: &str, group: &str, unit: u32, a: &AttemptErrorView) -> Value {
    let (logs, page) = match a.attempt {
        0 => (None, None),
        n => {
            let unit_path = format!(
                "/pipelines/{}/groups/{}/units/{unit}",
                pages::encode(pipeline_id),
                pages::encode(group)
            );
            (
                Some(format!("/api{unit_path}/logs?attempt={n}")),
                Some(pages::unit_href(pipeline_id, group, unit, n)),
            )
        }
    };
    json!({
        "attempt": a.attempt, "worker_id": a.worker_id, "duration_ms": a.duration_ms,
        "error": a.error, "logs": logs, "page": page,
    })
}

fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "worker_id": w.worker_id, "alive": w.alive, "worker_slots": w.worker_slots,
        "free_slots": w.slots, "leases_held": w.leases_held,
        "last_seen_ms_ago": w.last_seen_ms_ago,
    })
}

fn snapshot_json(info: &SnapshotInfo, effect: &RollbackEffect) -> Value {
    json!({
        "snapshot_id": info.snapshot_id, "note": info.note,
        "taken_unix_ms": info.taken_unix_ms, "journal_position": info.journal_position,
        "size_bytes": info.size_bytes, "rollback_undoes": effect,
    })
}

/// What a successful action answers.
fn done(message: String) -> Json<Value> {
    Json(json!({ "ok": true, "message": message }))
}

// ----- handlers -----

async fn list_pipelines(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<PipelinePage>, HttpError> {
    let (filter, offset, limit) = pipeline_query(Params(params))?;
    Ok(Json(
        pipeline_page(&http.master, filter, offset, limit).await?,
    ))
}

async fn get_pipeline(
    State(http): State<Http>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    Ok(Json(pipeline_json(
        &pipeline_view(&http.master, &id).await?,
    )))
}

async fn list_units(
    State(http): State<Http>,
    Path((id, group)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<UnitsPage>, HttpError> {
    let (state, offset, limit) = units_query(Params(params))?;
    Ok(Json(
        units_page(&http.master, &id, &group, state, offset, limit).await?,
    ))
}

/// One unit in detail; each failed attempt with the links to its logs,
/// as the pipeline's failed units have them.
async fn get_unit(
    State(http): State<Http>,
    Path((id, group, unit)): Path<(String, String, String)>,
) -> Result<Json<Value>, HttpError> {
    let detail = unit_view(&http.master, &id, &group, &unit).await?;
    let errors: Vec<Value> = detail
        .errors
        .iter()
        .map(|a| attempt_json(&detail.pipeline_id, &detail.group, detail.unit, a))
        .collect();
    let mut json = json!(detail);
    json["errors"] = Value::Array(errors);
    Ok(Json(json))
}

async fn list_workers(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let params = Params(params).only(&["page_token", "limit"])?;
    let token = params.text("page_token").unwrap_or_default();
    let limit = params.number("limit", PAGE_ROWS_DEFAULT as u32, UI_PAGE_ROWS_MAX as u32)?;
    let (workers, next) = http.master.workers_page(token, limit).await?;
    let workers: Vec<Value> = workers.iter().map(worker_json).collect();
    Ok(Json(json!({ "workers": workers, "next_page_token": next })))
}

async fn list_snapshots(State(http): State<Http>) -> Result<Json<Value>, HttpError> {
    let snapshots: Vec<Value> = snapshots_view(&http.master)
        .await?
        .iter()
        .map(|(info, effect)| snapshot_json(info, effect))
        .collect();
    Ok(Json(json!({ "snapshots": snapshots })))
}

async fn get_snapshot(
    State(http): State<Http>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    snapshots_view(&http.master)
        .await?
        .iter()
        .find(|(info, _)| info.snapshot_id == id)
        .map(|(info, effect)| Json(snapshot_json(info, effect)))
        .ok_or_else(|| HttpError::not_found(format!("no snapshot {id:?}")))
}

// ----- actions: the gRPC handlers' runtime operations -----

/// Retries a pipeline's failed units: all, one group's (`group`), or one
/// unit (`group` and `unit`).
pub async fn do_retry(master: &Master, id: &str, form: Params) -> Result<String, HttpError> {
    let form = form.only(&["group", "unit"])?;
    let group = form.text("group");
    let unit = match form.text("unit") {
        None => None,
        Some(_) => Some(form.number("unit", 0u32, u32::MAX)?),
    };
    if unit.is_some() && group.is_none() {
        return Err(HttpError::bad_request("parameter \"unit\" needs \"group\""));
    }
    let changed = master.retry(id, group, unit).await?;
    tracing::info!(
        pipeline_id = id,
        units = changed.units_reset,
        "retried from the web UI"
    );
    Ok(format!(
        "{} failed unit(s) queued again",
        changed.units_reset
    ))
}

pub async fn do_clear(master: &Master, id: &str, form: Params) -> Result<String, HttpError> {
    let form = form.only(&["group", "downstream"])?;
    let group = form.required("group")?;
    let downstream = form.flag("downstream")?;
    let changed = master.clear(id, group, downstream).await?;
    tracing::info!(
        pipeline_id = id,
        group,
        downstream,
        "group cleared from the web UI"
    );
    Ok(format!(
        "{} unit(s) reset, {} dropped",
        changed.units_reset, changed.units_dropped
    ))
}

pub async fn do_cancel(master: &Master, id: &str, form: Params) -> Result<String, HttpError> {
    form.only(&[])?;
    master.cancel(id).await?;
    tracing::info!(pipeline_id = id, "pipeline cancelled from the web UI");
    Ok("cancelled".into())
}

pub async fn do_block(master: &Master, id: &str, form: Params) -> Result<String, HttpError> {
    let form = form.only(&["blocked"])?;
    let blocked = match form.text("blocked") {
        None => return Err(HttpError::bad_request("parameter \"blocked\" is required")),
        Some(_) => form.flag("blocked")?,
    };
    master.block(id, blocked).await?;
    tracing::info!(
        pipeline_id = id,
        blocked,
        "leasing block changed from the web UI"
    );
    Ok(if blocked { "blocked" } else { "unblocked" }.into())
}

/// Re-runs a pipeline; the message names the new run.
pub async fn do_rerun(master: &Master, id: &str, form: Params) -> Result<String, HttpError> {
    form.only(&[])?;
    let new_id = master.rerun_with_params(id, &HashMap::new()).await?;
    tracing::info!(
        pipeline_id = new_id,
        rerun_of = id,
        "pipeline re-run from the web UI"
    );
    Ok(new_id)
}

pub async fn do_take_snapshot(master: &Master, form: Params) -> Result<String, HttpError> {
    let form = form.only(&["note"])?;
    let note = form.text("note").unwrap_or_default();
    if note.len() > crate::core::limits::TEXT_BYTES_MAX {
        return Err(HttpError::bad_request("parameter \"note\" is too long"));
    }
    let info = master.take_snapshot(note).await?;
    tracing::info!(
        snapshot_id = info.snapshot_id,
        "snapshot taken from the web UI"
    );
    Ok(info.snapshot_id)
}

pub async fn do_rollback(
    master: &std::sync::Arc<Master>,
    id: &str,
    form: Params,
) -> Result<String, HttpError> {
    form.only(&[])?;
    let invalidated = master.rollback(id).await?;
    tracing::warn!(
        snapshot_id = id,
        invalidated,
        "state rolled back from the web UI"
    );
    Ok(format!(
        "rolled back to snapshot {id}; {invalidated} lease(s) invalidated"
    ))
}

async fn retry(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    Ok(done(do_retry(&http.master, &id, Params(form)).await?))
}

async fn clear(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    Ok(done(do_clear(&http.master, &id, Params(form)).await?))
}

async fn cancel(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    Ok(done(do_cancel(&http.master, &id, Params(form)).await?))
}

async fn block(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    Ok(done(do_block(&http.master, &id, Params(form)).await?))
}

async fn rerun(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let new_id = do_rerun(&http.master, &id, Params(form)).await?;
    Ok(Json(json!({
        "ok": true, "message": format!("re-run as {new_id}"), "pipeline_id": new_id,
        "location": format!("/pipelines/{new_id}"),
    })))
}

async fn take_snapshot(
    State(http): State<Http>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let id = do_take_snapshot(&http.master, Params(form)).await?;
    Ok(Json(json!({
        "ok": true, "message": format!("snapshot {id} taken"), "snapshot_id": id,
    })))
}

async fn rollback(
    State(http): State<Http>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    Ok(done(do_rollback(&http.master, &id, Params(form)).await?))
}
