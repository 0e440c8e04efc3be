//! Schedules in the web UI: the list (with pause, resume and a manual run)
//! and a schedule's page, its recent runs as a grid of groups like
//! Airflow's grid view, with the runs' table below. The same reads and
//! actions are JSON under `/api/schedules`. Actions go through the same
//! runtime calls as `tmctl schedule`.

use axum::extract::{Form, Path, Query, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::{Markup, html};
use serde_json::{Value, json};
use taskmaster_proto::v1::{ScheduleAction, ScheduleInfo, ScheduleRun};

use super::Http;
use super::error::HttpError;
use super::pages::{layout, time};
use super::query::Params;

/// Runs a schedule's page shows, newest first.
const GRID_RUNS: usize = 30;

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/schedules", get(list_page))
        .route("/schedules/{name}", get(schedule_page))
        .route("/api/schedules", get(list_api))
        .route("/api/schedules/{name}/runs", get(runs_api))
        .route("/api/schedules/{name}/pause", post(pause))
        .route("/api/schedules/{name}/resume", post(resume))
        .route("/api/schedules/{name}/trigger", post(trigger))
}

/// A schedule as JSON: the shape of `GET /api/schedules` and of `tmctl
/// schedule list --json` (one function, so the two never drift apart).
/// Settings left empty in the spec are shown with the values they mean.
pub fn info_json(info: &ScheduleInfo) -> Value {
    let spec = info.spec.clone().unwrap_or_default();
    let or = |text: String, default: &str| match text.is_empty() {
        true => default.to_string(),
        false => text,
    };
    json!({
        "name": spec.name,
        "cron": spec.cron,
        "timezone": or(spec.timezone, "UTC"),
        "catchup": or(spec.catchup, "all"),
        "overlap": or(spec.overlap, "skip"),
        "max_active": spec.max_active.max(1),
        "jitter_ms": spec.jitter_ms,
        "paused": info.paused,
        "active_runs": info.active_runs,
        "waiting": info.waiting,
        "last_logical": info.last_logical,
        "next_logical": info.next_logical,
        "next_fire_unix_ms": info.next_fire_unix_ms,
        "created_unix_ms": info.created_unix_ms,
    })
}

/// A schedule's run as JSON: the shape of `GET
/// /api/schedules/{name}/runs` and of `tmctl schedule runs --json`.
pub fn run_json(run: &ScheduleRun) -> Value {
    json!({
        "schedule": run.schedule,
        "logical": run.logical,
        "trigger": run.trigger,
        "pipeline_id": run.pipeline_id,
        "state": run.state,
        "start_unix_ms": run.fired_unix_ms,
        "end_unix_ms": run.finished_unix_ms,
        "backfill_id": run.backfill_id,
        "note": run.note,
    })
}

async fn list_api(State(http): State<Http>) -> Result<Json<Value>, HttpError> {
    let schedules = http.master.schedules().await?;
    Ok(Json(json!({
        "schedules": schedules.iter().map(info_json).collect::<Vec<_>>(),
    })))
}

async fn runs_api(
    State(http): State<Http>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let limit = Params(query)
        .only(&["limit"])?
        .number("limit", 100u32, 100_000)?;
    let runs = http.master.schedule_runs(&name, limit as usize).await?;
    Ok(Json(
        json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() }),
    ))
}

async fn change(http: &Http, name: &str, action: ScheduleAction) -> Result<Json<Value>, HttpError> {
    http.master.change_schedule(name, action).await?;
    let what = if action == ScheduleAction::Pause {
        "paused"
    } else {
        "resumed"
    };
    Ok(Json(
        json!({ "ok": true, "message": format!("schedule {name} {what}") }),
    ))
}

async fn pause(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    change(&http, &name, ScheduleAction::Pause).await
}

async fn resume(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    change(&http, &name, ScheduleAction::Resume).await
}

/// A manual run: `at` (a logical time or a date) or the latest due.
async fn trigger(
    State(http): State<Http>,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Json<Value>, HttpError> {
    let params = Params(form);
    let at = params.text("at").unwrap_or_default().to_string();
    let run = http.master.trigger_schedule(&name, &at).await?;
    Ok(Json(json!({
        "ok": true,
        "message": format!("a run of {name} for {} started as {}", run.logical, run.pipeline_id),
        "pipeline_id": run.pipeline_id,
        "location": format!("/pipelines/{}", run.pipeline_id),
    })))
}

fn badge(state: &str) -> Markup {
    html! { span class=(format!("badge st-{state}")) { (state) } }
}

fn actions(info: &ScheduleInfo, name: &str) -> Markup {
    html! {
        @if info.paused {
            form.inline method="post" action=(format!("/api/schedules/{name}/resume"))
                data-confirm=(format!("Resume schedule {name}? Logical times missed while it was paused run as its catchup says.")) {
                button { "Resume" }
            }
        } @else {
            form.inline method="post" action=(format!("/api/schedules/{name}/pause"))
                data-confirm=(format!("Pause schedule {name}? It fires nothing until resumed.")) {
                button { "Pause" }
            }
        }
        form.inline method="post" action=(format!("/api/schedules/{name}/trigger"))
            data-confirm=(format!("Start a manual run of {name} for its latest logical time?")) {
            button { "Trigger" }
        }
    }
}

async fn list_page(State(http): State<Http>) -> Result<Html<String>, HttpError> {
    let schedules = http
        .master
        .schedules()
        .await
        .map_err(|e| HttpError::from(e).page())?;
    let body = html! {
        h1 { "Schedules" }
        @if schedules.is_empty() {
            p.muted { "No schedules. Add one with " code { "tmctl schedule add FILE" } "." }
        } @else {
            table {
                tr { th { "Name" } th { "Cron" } th { "Zone" } th { "State" } th { "Active runs" }
                     th { "Last logical time" } th { "Next" } th { "" } }
                @for info in &schedules {
                    @let spec = info.spec.clone().unwrap_or_default();
                    tr {
                        td { a href=(format!("/schedules/{}", spec.name)) { (spec.name) } }
                        td { code { (spec.cron) } }
                        td { (if spec.timezone.is_empty() { "UTC" } else { &spec.timezone }) }
                        td { (badge(if info.paused { "cancelled" } else { "running" })) " " (if info.paused { "paused" } else { "active" }) }
                        td { (info.active_runs) }
                        td { (if info.last_logical.is_empty() { "-" } else { &info.last_logical }) }
                        td { (if info.next_logical.is_empty() { "-" } else { &info.next_logical }) }
                        td { (actions(info, &spec.name)) }
                    }
                }
            }
        }
    };
    Ok(Html(layout("Schedules", body)))
}

async fn schedule_page(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Html<String>, HttpError> {
    let page = |e: crate::runtime::MasterError| HttpError::from(e).page();
    let info = http
        .master
        .schedules()
        .await
        .map_err(page)?
        .into_iter()
        .find(|s| s.spec.as_ref().is_some_and(|s| s.name == name))
        .ok_or_else(|| HttpError::not_found(format!("no schedule {name:?}")).page())?;
    let grid = http
        .master
        .schedule_grid(&name, GRID_RUNS)
        .await
        .map_err(page)?;
    let spec = info.spec.clone().unwrap_or_default();
    let body = html! {
        h1 { "Schedule " (name) }
        p {
            code { (spec.cron) } " in " (if spec.timezone.is_empty() { "UTC" } else { &spec.timezone })
            " · next: " (if info.next_logical.is_empty() { "-" } else { &info.next_logical })
            " · " (if info.paused { "paused" } else { "active" }) " "
            (actions(&info, &name))
        }
        h2 { "Runs by group (newest first)" }
        @if grid.runs.is_empty() {
            p.muted { "No runs yet." }
        } @else {
            table.grid {
                tr {
                    th { "group" }
                    @for (run, _) in &grid.runs {
                        th title=(run.logical) {
                            @if run.pipeline_id.is_empty() { (short(&run.logical)) }
                            @else { a href=(format!("/pipelines/{}", run.pipeline_id)) { (short(&run.logical)) } }
                        }
                    }
                }
                tr {
                    td { em { "run" } }
                    @for (run, _) in &grid.runs { td { (badge(&run.state)) } }
                }
                @for (g, group) in grid.groups.iter().enumerate() {
                    tr {
                        td { (group) }
                        @for (_, states) in &grid.runs {
                            td { @if let Some(state) = states.get(g) { (badge(state)) } @else { span.muted { "·" } } }
                        }
                    }
                }
            }
        }
        h2 { "Runs" }
        table {
            tr { th { "Logical time" } th { "Trigger" } th { "State" } th { "Started" } th { "Ended" } th { "Pipeline / note" } }
            @for (run, _) in &grid.runs {
                tr {
                    td { (run.logical) }
                    td { (run.trigger) }
                    td { (badge(&run.state)) }
                    td { (time(run.fired_unix_ms)) }
                    td { (time(run.finished_unix_ms)) }
                    td {
                        @if run.pipeline_id.is_empty() { span.muted { (run.note) } }
                        @else { a href=(format!("/pipelines/{}", run.pipeline_id)) { (run.pipeline_id) } }
                    }
                }
            }
        }
    };
    Ok(Html(layout(&format!("Schedule {name}"), body)))
}

/// A logical time's column heading: its date and time, without the offset.
fn short(logical: &str) -> String {
    logical.get(..16).unwrap_or(logical).replace('T', " ")
}
