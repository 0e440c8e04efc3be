//! The HTML pages, rendered by the server from maud templates compiled
//! into the binary. A page's changing part sits in `#live`, which the
//! page's event stream ([`super::sse`]) replaces as the state changes.
//! Buttons post to the JSON API after a confirmation, and show the
//! master's answer (or its refusal) without leaving the page.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, Redirect};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use taskmaster_proto::v1::{AuditEntry, WorkerInfo};

use super::Http;
use super::api::{self, PipelineView, state_name};
use super::dag;
use super::error::HttpError;
use super::logs::{self, LogTails};
use super::query::Params;
use crate::core::ui_view::{
    AttemptErrorView, PIPELINE_STATES, PipelineFilter, PipelinePage, UNIT_STATES, UnitDetail,
    UnitsPage,
};
use crate::logs::LogError;

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/pipelines") }))
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{id}", get(pipeline))
        .route("/pipelines/{id}/groups/{group}/units", get(units))
        .route("/pipelines/{id}/groups/{group}/units/{unit}", get(unit))
        .route("/workers", get(workers))
        .route("/snapshots", get(snapshots))
}

type PageResult = Result<Html<String>, HttpError>;

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{background:#23303f;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none;font-weight:600}
nav form.whoami{float:right;color:#cfd6de;margin:0}
main{padding:1em 1.5em}table{border-collapse:collapse;background:#fff;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f0f0f0}
.badge{display:inline-block;padding:.1em .5em;border-radius:.8em;color:#fff;font-size:.85em;font-weight:600}
.st-pending{background:#8a8f98}.st-running,.st-leased{background:#2f6fd0}.st-succeeded,.st-committed{background:#2e9b4a}
.st-failed{background:#c8302c}.st-cancelled,.st-dropped{background:#c77c12}
.dag .node rect{fill:#fff;stroke:#8a8f98;stroke-width:2}.dag .node.st-running rect{stroke:#2f6fd0}
.dag .node.st-succeeded rect{stroke:#2e9b4a}.dag .node.st-failed rect{stroke:#c8302c}
.dag .node rect.bar{fill:#e6e6e6;stroke:none}.dag .node rect.fill{fill:#2e9b4a;stroke:none}
.dag text{font-size:13px;font-weight:600}.dag text.small{font-size:11px;font-weight:400}
.dag .edge{fill:none;stroke:#999;stroke-width:1.5}
pre.error{white-space:pre-wrap;background:#fff4f4;border-left:3px solid #c8302c;padding:.4em;margin:.2em 0;max-width:70em}
form.inline{display:inline;margin-right:.3em}button{cursor:pointer}
.flash{padding:.5em 1em;margin:.5em 0;border-radius:.3em}.flash.ok{background:#e5f5e9}.flash.refused{background:#fde8e8}
.muted{color:#777}pre.log{background:#1e1e1e;color:#eee;padding:.5em;max-height:30em;overflow:auto;white-space:pre-wrap}
"#;

/// Confirmed actions post to the API and say what the master answered;
/// `#live` follows the page's event stream.
const SCRIPT: &str = r#"
function flash(text, ok) {
  const f = document.getElementById('flash');
  f.textContent = text; f.className = ok ? 'flash ok' : 'flash refused'; f.hidden = false;
}
document.addEventListener('submit', async (e) => {
  const form = e.target;
  if (!form.dataset.confirm) return;
  e.preventDefault();
  if (!confirm(form.dataset.confirm)) return;
  let answer, body;
  try {
    answer = await fetch(form.action, {method: 'POST', body: new URLSearchParams(new FormData(form))});
    body = await answer.json();
  } catch (err) { flash('The request failed: ' + err, false); return; }
  if (answer.ok) {
    flash(body.message, true);
    if (body.location) window.location.href = body.location;
  } else {
    flash('Refused: ' + body.error, false);
  }
});
const live = document.getElementById('live');
if (live && live.dataset.events) {
  const events = new EventSource(live.dataset.events);
  events.onmessage = (m) => { live.innerHTML = m.data; };
}
"#;

pub fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · taskmaster" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav {
                    a href="/pipelines" { "Pipelines" }
                    a href="/schedules" { "Schedules" }
                    a href="/workers" { "Workers" }
                    a href="/snapshots" { "Snapshots" }
                    a href="/metrics" { "Metrics" }
                    @if let Some(who) = logged_in() {
                        form.whoami method="post" action="/logout" {
                            span #whoami { (who) } " "
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    div #flash hidden {}
                    (body)
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

/// Who the page is shown to, on a master with `--auth` (the caller the
/// access layer runs the request as); None without it.
fn logged_in() -> Option<String> {
    crate::runtime::actor::current(|actor| actor.name.clone()).filter(|name| name != "anonymous")
}

/// The page an error is shown on: what was not found, which parameter
/// was wrong.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> String {
    layout(
        title,
        html! {
            h1 { (title) }
            p .flash.refused #error { (message) }
            p .muted { "HTTP " (status.as_u16()) }
            p { a href="/pipelines" { "Back to the pipelines" } }
        },
    )
}

fn badge(state: &str) -> Markup {
    html! { span class=(format!("badge st-{state}")) { (state) } }
}

/// A wall-clock time as UTC, or "-" for 0.
pub fn time(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".into();
    }
    match jiff::Timestamp::from_millisecond(unix_ms as i64) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => "-".into(),
    }
}

/// A form that posts `fields` to `action` after `confirm` is accepted.
fn action(action: &str, label: &str, confirm: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(confirm) {
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" data-action=(label) { (label) }
        }
    }
}

/// How long an attempt ran (`850 ms`, `2.3 s`, `4 min 5 s`, `2 h 3 min`),
/// or `unknown`.
pub(super) fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "unknown".into(),
        Some(ms @ 0..1_000) => format!("{ms} ms"),
        Some(ms @ 1_000..60_000) => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms @ 60_000..3_600_000) => format!("{} min {} s", ms / 60_000, ms / 1000 % 60),
        Some(ms) => format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// The page of unit `unit` of `group` in pipeline `id`, at its attempt
/// `attempt`'s logs (the latest's for 0: not known).
pub(super) fn unit_href(id: &str, group: &str, unit: u32, attempt: u32) -> String {
    let page = format!(
        "/pipelines/{}/groups/{}/units/{unit}",
        encode(id),
        encode(group)
    );
    match attempt {
        0 => page,
        n => format!("{page}?attempt={n}#logs"),
    }
}

/// Failed attempts as a table: number, worker, duration, error text, and
/// a link to the attempt's logs on its unit's page.
fn attempts_table(id: &str, group: &str, unit: u32, attempts: &[AttemptErrorView]) -> Markup {
    html! {
        table .attempts {
            tr { th {} th { "worker" } th { "duration" } th { "error" } th {} }
            @for a in attempts {
                tr data-attempt=(a.attempt) {
                    td { "attempt " @if a.attempt > 0 { (a.attempt) } @else { "?" } }
                    td .worker { @if let Some(w) = &a.worker_id { code { (w) } } @else { span .muted { "unknown" } } }
                    td .duration { (duration(a.duration_ms)) }
                    td { pre.error { (a.error) } }
                    td { @if a.attempt > 0 { a .logs href=(unit_href(id, group, unit, a.attempt)) { "logs" } } }
                }
            }
        }
    }
}

/// `text` as one path segment.
pub(super) fn encode(text: &str) -> String {
    super::query::percent_encode(text, b"")
}

// ----- pipelines -----

fn filter_query(filter: &PipelineFilter, offset: u64, limit: usize) -> String {
    let mut q = format!("offset={offset}&limit={limit}");
    if let Some(state) = filter.state {
        q.push_str(&format!("&state={state}"));
    }
    if !filter.name.is_empty() {
        q.push_str(&format!("&name={}", encode(&filter.name)));
    }
    if !filter.newest_first {
        q.push_str("&sort=oldest");
    }
    q
}

/// The changing part of the pipelines list.
pub fn pipelines_live(page: &PipelinePage, filter: &PipelineFilter, limit: usize) -> Markup {
    let end = page.offset + page.rows.len() as u64;
    html! {
        p .muted {
            @if page.rows.is_empty() { "No pipelines match." }
            @else { "Pipelines " (page.offset + 1) "–" (end) " of " (page.matching) }
        }
        table #pipelines {
            tr { th { "pipeline" } th { "name" } th { "state" } th { "units committed" } th { "failed" } th { "submitted" } th { "finished" } }
            @for row in &page.rows {
                tr data-pipeline=(row.pipeline_id) data-state=(row.state) {
                    td { a href=(format!("/pipelines/{}", encode(&row.pipeline_id))) { (row.pipeline_id) } }
                    td { (row.name) }
                    td { (badge(row.state)) @if row.blocked { " " span .muted { "blocked" } } }
                    td { (row.units_committed) " / " (row.units_total) }
                    td { (row.units_failed) }
                    td { (time(row.submitted_unix_ms)) }
                    td { (time(row.finished_unix_ms)) }
                }
            }
        }
        p {
            @if page.offset > 0 {
                a #prev href=(format!("/pipelines?{}", filter_query(filter, page.offset.saturating_sub(limit as u64), limit))) { "← newer page" }
                " "
            }
            @if end < page.matching {
                a #next href=(format!("/pipelines?{}", filter_query(filter, end, limit))) { "next page →" }
            }
        }
    }
}

async fn pipelines(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> PageResult {
    let (filter, offset, limit) = api::pipeline_query(Params(params)).map_err(HttpError::page)?;
    let page = api::pipeline_page(&http.master, filter.clone(), offset, limit)
        .await
        .map_err(HttpError::page)?;
    let events = format!("/events/pipelines?{}", filter_query(&filter, offset, limit));
    Ok(Html(layout(
        "Pipelines",
        html! {
            h1 { "Pipelines" }
            form method="get" action="/pipelines" {
                label { "state " select name="state" {
                    option value="" { "any" }
                    @for s in PIPELINE_STATES {
                        option value=(s) selected[filter.state == Some(s)] { (s) }
                    }
                } }
                " "
                label { "name " input type="text" name="name" value=(filter.name); }
                " "
                label { "sort " select name="sort" {
                    option value="newest" selected[filter.newest_first] { "newest first" }
                    option value="oldest" selected[!filter.newest_first] { "oldest first" }
                } }
                input type="hidden" name="limit" value=(limit);
                " " button type="submit" { "Filter" }
            }
            div #live data-events=(events) { (pipelines_live(&page, &filter, limit)) }
        },
    )))
}

// ----- one pipeline -----

/// The changing part of a pipeline's page: state, graph, groups, failed units.
pub fn pipeline_live(view: &PipelineView) -> Markup {
    let s = &view.status;
    let id = encode(&s.pipeline_id);
    let state = state_name(s.state);
    html! {
        p {
            "State: " span #state data-state=(state) { (badge(state)) }
            @if s.blocked { " " span .badge.st-cancelled #blocked { "blocked" } }
            " · submitted " (time(view.submitted_unix_ms))
            @if s.finished_unix_ms > 0 { " · finished " (time(s.finished_unix_ms)) }
            " · retries " (s.retries)
        }
        p #actions {
            (action(&format!("/api/pipelines/{id}/retry"), "Retry failed",
                "Retry every failed unit of this pipeline?", &[]))
            (action(&format!("/api/pipelines/{id}/cancel"), "Cancel",
                "Cancel this pipeline? Its leases are refused from now on.", &[]))
            @if s.blocked {
                (action(&format!("/api/pipelines/{id}/block"), "Unblock",
                    "Let workers lease this pipeline's units again?", &[("blocked", "false")]))
            } @else {
                (action(&format!("/api/pipelines/{id}/block"), "Block",
                    "Stop leasing this pipeline's units? Commits of leases out now are refused.", &[("blocked", "true")]))
            }
            (action(&format!("/api/pipelines/{id}/rerun"), "Rerun",
                "Start a new run of this pipeline with the same parameters?", &[]))
        }
        (dag::svg(&view.shapes, &s.groups))
        h2 { "Groups" }
        table #groups {
            tr { th { "group" } th { "task" } th { "config version" } th { "pending" } th { "leased" } th { "committed" } th { "failed" } th { "state" } th { "clear" } }
            @for (g, shape) in s.groups.iter().zip(&view.shapes) {
                @let c = g.counts.unwrap_or_default();
                @let units = format!("/pipelines/{id}/groups/{}/units", encode(&g.name));
                tr data-group=(g.name) {
                    td { a href=(units) { (g.name) } }
                    td { (shape.task) }
                    td { (g.config_version) }
                    td { (c.pending) } td { (c.leased) } td { (c.committed) }
                    td { @if c.failed > 0 { a href=(format!("{units}?state=failed")) { (c.failed) } } @else { "0" } }
                    td { (badge(dag::group_state(g))) }
                    td {
                        (action(&format!("/api/pipelines/{id}/clear"), "Clear",
                            &format!("Clear group {}: run all its units again (downstream groups keep their outputs)?", g.name),
                            &[("group", &g.name)]))
                        (action(&format!("/api/pipelines/{id}/clear"), "Clear + downstream",
                            &format!("Clear group {} and every group downstream of it: their outputs are dropped and run again?", g.name),
                            &[("group", &g.name), ("downstream", "true")]))
                    }
                }
            }
        }
        h2 { "Failed units" }
        @if s.failed_units.is_empty() {
            p .muted #no-failed { "None." }
        } @else {
            table #failed {
                tr { th { "unit" } th { "attempts" } th { "failed attempts: worker, duration, error, logs" } th {} }
                @for f in &s.failed_units {
                    tr data-group=(f.group) data-unit=(f.unit) {
                        td { a href=(format!("/pipelines/{id}/groups/{}/units/{}", encode(&f.group), f.unit)) { (f.group) " #" (f.unit) } }
                        td { (f.attempts) }
                        td { (attempts_table(&s.pipeline_id, &f.group, f.unit, &api::failed_attempts(f))) }
                        td { (action(&format!("/api/pipelines/{id}/retry"), "Retry unit",
                            &format!("Retry unit {} of group {}?", f.unit, f.group),
                            &[("group", &f.group), ("unit", &f.unit.to_string())])) }
                    }
                }
            }
        }
    }
}

async fn pipeline(State(http): State<Http>, Path(id): Path<String>) -> PageResult {
    let view = api::pipeline_view(&http.master, &id)
        .await
        .map_err(HttpError::page)?;
    let s = &view.status;
    Ok(Html(layout(
        &s.pipeline_id,
        html! {
            h1 { "Pipeline " (s.pipeline_id) }
            p .muted {
                "name " (s.name)
                @for (k, v) in &s.params { " · " (k) "=" (v) }
                @if !s.rerun_of.is_empty() {
                    " · re-runs " a href=(format!("/pipelines/{}", encode(&s.rerun_of))) { (s.rerun_of) }
                }
            }
            div #live data-events=(format!("/events/pipelines/{}", encode(&id))) { (pipeline_live(&view)) }
            (audit_table(&s.audit))
        },
    )))
}

/// Who did what to the pipeline (and to the whole master since it was
/// submitted), newest first, as `tmctl status` lists it.
fn audit_table(audit: &[AuditEntry]) -> Markup {
    html! {
        h2 { "History" }
        @if audit.is_empty() {
            p .muted { "No operator actions." }
        } @else {
            table #audit {
                tr { th { "when" } th { "who" } th { "what" } th { "reason" } }
                @for e in audit.iter().rev() {
                    tr {
                        td { (time(e.unix_ms)) }
                        td { (e.actor) }
                        td {
                            (e.action)
                            @if e.pipeline_id.is_empty() { " " span .muted { "[whole master]" } }
                        }
                        td { (e.reason) }
                    }
                }
            }
        }
    }
}

// ----- units -----

async fn units(
    State(http): State<Http>,
    Path((id, group)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> PageResult {
    let (state, offset, limit) = api::units_query(Params(params)).map_err(HttpError::page)?;
    let page = api::units_page(&http.master, &id, &group, state, offset, limit)
        .await
        .map_err(HttpError::page)?;
    let base = format!("/pipelines/{}/groups/{}/units", encode(&id), encode(&group));
    let state_q = state.map(|s| format!("&state={s}")).unwrap_or_default();
    Ok(Html(layout(
        &format!("{id} / {group}"),
        html! {
            h1 { "Units of " a href=(format!("/pipelines/{}", encode(&id))) { (id) } " / " (group) }
            p {
                a href=(base) { "all" }
                @for s in UNIT_STATES { " · " a href=(format!("{base}?state={s}")) { (s) } }
            }
            (units_table(&page, &base))
            p {
                @if page.offset > 0 {
                    a href=(format!("{base}?offset={}&limit={limit}{state_q}", page.offset.saturating_sub(limit as u64))) { "← previous" } " "
                }
                @if (page.rows.len() as u64) == limit as u64 {
                    a href=(format!("{base}?offset={}&limit={limit}{state_q}", page.offset + limit as u64)) { "next →" }
                }
            }
        },
    )))
}

fn units_table(page: &UnitsPage, base: &str) -> Markup {
    html! {
        p .muted { (page.matching) " unit(s)" }
        table #units {
            tr { th { "unit" } th { "state" } th { "attempts" } th { "last error" } }
            @for row in &page.rows {
                tr {
                    td { a href=(format!("{base}/{}", row.unit)) { (row.unit) } }
                    td { (badge(row.state)) }
                    td { (row.attempts) }
                    td { @if let Some(e) = &row.last_error { pre.error { (e) } } }
                }
            }
        }
    }
}

async fn unit(
    State(http): State<Http>,
    Path((id, group, unit)): Path<(String, String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> PageResult {
    let params = Params(params).only(&["attempt"]).map_err(HttpError::page)?;
    let attempt = params
        .number("attempt", 0u32, u32::MAX)
        .map_err(HttpError::page)?;
    let detail = api::unit_view(&http.master, &id, &group, &unit)
        .await
        .map_err(HttpError::page)?;
    let logs = match logs::tails(&http.master, &id, &group, detail.unit, attempt).await {
        Ok(tails) => Ok(tails),
        Err(LogError::NotFound(why)) => Err(why),
        Err(e) => return Err(HttpError::from(e).page()),
    };
    Ok(Html(layout(
        &format!("{id} / {group} #{unit}"),
        html! { (unit_body(&detail)) (logs_section(&detail, &logs)) },
    )))
}

fn logs_section(u: &UnitDetail, logs: &Result<LogTails, String>) -> Markup {
    let base = format!(
        "/pipelines/{}/groups/{}/units/{}",
        encode(&u.pipeline_id),
        encode(&u.group),
        u.unit
    );
    html! {
        h2 #logs { "Logs" }
        @match logs {
            Err(why) => p .muted #no-logs { (why) },
            Ok(tails) => {
                p {
                    "Attempt " (tails.attempt)
                    @if !tails.outcome.is_empty() { " · " (tails.outcome) }
                    @else if !tails.finished { " · running" }
                    @if tails.attempts.len() > 1 {
                        " · attempts:"
                        @for a in &tails.attempts {
                            " " a href=(format!("{base}?attempt={a}")) { (a) }
                        }
                    }
                }
                @for (name, skipped, text) in &tails.streams {
                    h3 { (name) }
                    @if *skipped > 0 { p .muted { "(the first " (skipped) " bytes are not shown)" } }
                    pre .log id=(format!("log-{name}")) { (text) }
                }
            }
        }
    }
}

fn unit_body(u: &UnitDetail) -> Markup {
    let pipeline = format!("/pipelines/{}", encode(&u.pipeline_id));
    html! {
        h1 { "Unit " (u.unit) " of " a href=(pipeline) { (u.pipeline_id) } " / " (u.group) }
        p { "State: " span #state { (badge(u.state)) }
            " · attempt " (u.attempts) " (at most " (u.max_attempts) ", " (u.failures) " failed)"
            " · config version " (u.config_version) }
        @if let (Some(lease), Some(worker)) = (u.lease_id, &u.worker_id) {
            p #lease { "Leased: lease " (lease) " to worker " code { (worker) }
                @if let Some(granted) = u.leased_unix_ms { " since " (time(granted)) } }
        }
        @if let Some(lease) = u.committed_lease_id { p { "Committed by lease " (lease) } }
        h2 { "Failed attempts" }
        @if u.errors.is_empty() { p .muted { "None." } }
        div #errors { (attempts_table(&u.pipeline_id, &u.group, u.unit, &u.errors)) }
        h2 { "Outputs" }
        @if u.outputs.is_empty() { p .muted { "None committed." } }
        table #outputs {
            @for o in &u.outputs { tr { td { code { (o.path) } } td { (o.size_bytes) " bytes" } } }
        }
    }
}

// ----- workers and snapshots -----

async fn workers(
    State(http): State<Http>,
    Query(params): Query<Vec<(String, String)>>,
) -> PageResult {
    let params = Params(params)
        .only(&["page_token"])
        .map_err(HttpError::page)?;
    let token = params.text("page_token").unwrap_or_default().to_string();
    let (workers, next) = http
        .master
        .workers_page(&token, 100)
        .await
        .map_err(|e| HttpError::from(e).page())?;
    let events = format!("/events/workers?page_token={}", encode(&token));
    Ok(Html(layout(
        "Workers",
        html! {
            h1 { "Workers" }
            div #live data-events=(events) { (workers_live(&workers, &next)) }
        },
    )))
}

/// The changing part of the workers page.
pub fn workers_live(workers: &[WorkerInfo], next: &str) -> Markup {
    html! {
        @if workers.is_empty() { p .muted { "No worker has called lately." } }
        table #workers {
            tr { th { "worker" } th { "alive" } th { "slots" } th { "free slots" } th { "leases held" } th { "last seen" } }
            @for w in workers {
                tr {
                    td { (w.worker_id) }
                    td { @if w.alive { (badge("running")) } @else { (badge("failed")) } }
                    td { (w.worker_slots) } td { (w.slots) } td { (w.leases_held) }
                    td { (w.last_seen_ms_ago / 1000) " s ago" }
                }
            }
        }
        @if !next.is_empty() { a href=(format!("/workers?page_token={}", encode(next))) { "next page →" } }
    }
}

async fn snapshots(State(http): State<Http>) -> PageResult {
    let snapshots = api::snapshots_view(&http.master)
        .await
        .map_err(HttpError::page)?;
    Ok(Html(layout(
        "Snapshots",
        html! {
            h1 { "Snapshots" }
            form method="post" action="/api/snapshots" data-confirm="Take a snapshot of the whole state now?" {
                label { "note " input type="text" name="note"; }
                " " button type="submit" data-action="Take snapshot" { "Take snapshot" }
            }
            table #snapshots {
                tr { th { "snapshot" } th { "taken" } th { "note" } th { "journal position" } th { "size" } th { "rolling back undoes" } th {} }
                @for (info, effect) in &snapshots {
                    @let undone = if effect.submitted_after == 0 {
                        "no pipeline submitted since; later progress of the others is undone".to_string()
                    } else {
                        format!("{} pipeline(s) submitted since: {}{}", effect.submitted_after,
                            effect.submitted_after_shown.join(", "),
                            if effect.submitted_after as usize > effect.submitted_after_shown.len() { ", ..." } else { "" })
                    };
                    tr data-snapshot=(info.snapshot_id) {
                        td { (info.snapshot_id) }
                        td { (time(info.taken_unix_ms)) }
                        td { (info.note) }
                        td { (info.journal_position) }
                        td { (info.size_bytes) " bytes" }
                        td { (undone) }
                        td { (action(&format!("/api/snapshots/{}/rollback", encode(&info.snapshot_id)), "Roll back",
                            &format!("Roll the whole master back to snapshot {} taken {}? This undoes every change since: {}. The {} lease(s) out now will be refused.",
                                info.snapshot_id, time(info.taken_unix_ms), undone, effect.leases_in_flight), &[])) }
                    }
                }
            }
        },
    )))
}
