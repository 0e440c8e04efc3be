//! Who is calling the HTTP side, with the same tokens and roles as gRPC
//! (`--auth`, issue 24): a request presents a token as
//! `Authorization: Bearer ...` (scripts, Prometheus) or in the cookie the
//! login page sets (browsers). Reads need a role that may read; each
//! action needs the role of the RPC it is the same operation as (retry
//! needs what `Retry` needs), from the one table in `auth::roles`. An
//! action missing from [`ACTIONS`] is refused to everyone.
//!
//! Every action runs as its caller's, so the audit trail names who
//! clicked (or "anonymous" without `--auth`, as on gRPC).
//!
//! A cookie is sent by the browser on its own, so an action carried by one
//! must come from a page of this master: its `Origin` must be this host
//! (and the cookie is `SameSite=Strict` besides). A bearer header cannot
//! be attached by another site's page, so it needs no such check.

use axum::Form;
use axum::Router;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use tonic::Code;

use super::Http;
use super::error::HttpError;
use super::pages::layout;
use super::query::percent_encode;
use crate::auth::Identity;
use crate::auth::credentials::{self, Presented};
use crate::auth::limits;
use crate::auth::roles::{self, Needs};
use crate::core::audit::Actor;

/// The cookie the login page sets: the token itself, sent back only to
/// this master (`HttpOnly`: no script reads it; `SameSite=Strict`: no
/// other site's page sends it). Checked like a bearer token on every
/// request, so a revoked or expired token logs the browser out.
pub const COOKIE: &str = "taskmaster_token";

/// The RPC whose roles every read needs (pages, JSON reads, live updates,
/// `/metrics`, logs): the table gives every read the same roles.
const READ_RPC: &str = "/taskmaster.v1.TaskMaster/GetStatus";

/// Each action (a POST route, by its axum route template) and the RPC it
/// is the same operation as, whose roles it needs.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "/api/pipelines/{id}/retry",
        "/taskmaster.v1.TaskMaster/Retry",
    ),
    (
        "/api/pipelines/{id}/clear",
        "/taskmaster.v1.TaskMaster/Clear",
    ),
    (
        "/api/pipelines/{id}/cancel",
        "/taskmaster.v1.TaskMaster/Cancel",
    ),
    (
        "/api/pipelines/{id}/block",
        "/taskmaster.v1.TaskMaster/Block",
    ),
    (
        "/api/pipelines/{id}/rerun",
        "/taskmaster.v1.TaskMaster/Rerun",
    ),
    ("/api/snapshots", "/taskmaster.v1.TaskMaster/TakeSnapshot"),
    (
        "/api/snapshots/{id}/rollback",
        "/taskmaster.v1.TaskMaster/Rollback",
    ),
    (
        "/api/schedules/{name}/pause",
        "/taskmaster.v1.Schedules/ChangeSchedule",
    ),
    (
        "/api/schedules/{name}/resume",
        "/taskmaster.v1.Schedules/ChangeSchedule",
    ),
    (
        "/api/schedules/{name}/trigger",
        "/taskmaster.v1.Schedules/TriggerSchedule",
    ),
];

/// The login page and logout, open to anyone.
pub fn routes() -> Router<Http> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// The RPC whose roles a request needs, None for the open routes (login),
/// and `Unknown` for an action missing from [`ACTIONS`].
fn rpc_of(method: &Method, route: Option<&str>) -> Option<Needs> {
    if matches!(route, Some("/login" | "/logout")) {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(roles::needs(READ_RPC));
    }
    let action = route.and_then(|r| ACTIONS.iter().find(|(template, _)| *template == r));
    Some(action.map_or(Needs::Unknown, |(_, rpc)| roles::needs(rpc)))
}

/// The middleware: identifies the caller (with `--auth`), checks its role
/// for the route, counts it against its rate, and runs the handler as its
/// caller for the audit trail.
pub async fn authorize(State(http): State<Http>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let Some(needs) = rpc_of(request.method(), route.as_deref()) else {
        return next.run(request).await;
    };
    let presented = match credentials::presented(request.headers()) {
        Ok(presented) => presented,
        Err(e) => return HttpError::bad_request(e.to_string()).into_response(),
    };
    if !http.access.enabled {
        let actor = Actor {
            name: "anonymous".into(),
            reason: presented.reason,
        };
        return crate::runtime::actor::with_actor(actor, next.run(request)).await;
    }
    match admit(&http, &request, &presented, needs) {
        Ok(identity) => {
            let actor = Actor {
                name: identity.shown(),
                reason: presented.reason,
            };
            crate::runtime::actor::with_actor(actor, next.run(request)).await
        }
        Err(refusal) if refusal.code() == Code::Unauthenticated && is_page(&request) => {
            // A browser without a login: to the login page, and back after.
            let back = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            Redirect::to(&format!("/login?next={}", percent_encode(&back, b"/"))).into_response()
        }
        Err(refusal) if refusal.code() == Code::ResourceExhausted => {
            // Over its rate: answered after a pause, as on gRPC
            // (`limits::RATE_REFUSAL_PAUSE`), so a script that asks again
            // at once waits about a second instead of spinning. The pause
            // is taken by `paced`, outside the bound on requests in
            // flight, so paused refusals hold no slot other users need.
            let mut response = refused(&refusal);
            let pause = limits::jittered(limits::RATE_REFUSAL_PAUSE);
            response.extensions_mut().insert(PauseBeforeAnswer(pause));
            response
        }
        Err(refusal) => refused(&refusal),
    }
}

/// How long a response waits before it is sent (see [`paced`]).
#[derive(Debug, Clone, Copy)]
pub struct PauseBeforeAnswer(pub std::time::Duration);

/// The outermost middleware: holds back a response marked with
/// [`PauseBeforeAnswer`] for that long, after every inner layer (and the
/// request's slot) is done with it.
pub async fn paced(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(&PauseBeforeAnswer(pause)) = response.extensions().get() {
        tokio::time::sleep(pause).await;
    }
    response
}

/// The caller's identity if it may make this request, or why not.
fn admit(
    http: &Http,
    request: &Request,
    presented: &Presented,
    needs: Needs,
) -> Result<Identity, tonic::Status> {
    let from_header = presented.bearer.as_deref();
    let from_cookie = cookie(request.headers(), COOKIE);
    let Some(token) = from_header.or(from_cookie.as_deref()) else {
        return Err(tonic::Status::unauthenticated(
            "this master requires a login: open /login with a token (tmctl token create), \
             or send it as \"Authorization: Bearer <token>\"",
        ));
    };
    let identity = http.access.identify_token(&http.master, token)?;
    let roles = match needs {
        Needs::OneOf(roles) => Some(roles),
        Needs::Nothing | Needs::Unknown => None,
    };
    let path = request.uri().path();
    roles::allow(&identity, path, roles).map_err(|e| {
        // The table names RPCs; the refusal names the page's action.
        tonic::Status::permission_denied(e.message().replacen(
            roles::method(path),
            &format!("{} {path}", request.method()),
            1,
        ))
    })?;
    if from_header.is_none() && !is_safe(request.method()) {
        same_origin(request.headers(), request.uri())?;
    }
    http.access
        .counters
        .rate(&http.access.limits, &identity.name, http.master.now_ms())?;
    Ok(identity)
}

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// A browser's page load (not the API, live updates or `/metrics`).
fn is_page(request: &Request) -> bool {
    let path = request.uri().path();
    is_safe(request.method())
        && !path.starts_with("/api/")
        && !path.starts_with("/events/")
        && path != "/metrics"
}

/// A request carried by a cookie comes from a page of this master: its
/// `Origin` (or, failing that, `Referer`) names this host (`Host`, or the
/// URI's authority over HTTP/2).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), tonic::Status> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|o| o.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if host.is_empty() || origin_host != host {
        return Err(tonic::Status::permission_denied(
            "an action carried by a login cookie must come from this master's own pages \
             (its Origin is another site's, or missing)",
        ));
    }
    Ok(())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// A refusal as an HTTP answer: 401 (who are you), 403 (you may not),
/// 429 (too fast), 400 (malformed credentials).
fn refused(refusal: &tonic::Status) -> Response {
    let status = match refusal.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = HttpError::new(status, refusal.message()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"taskmaster\""),
        );
    }
    response
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a path of this master, nothing else (an
/// open redirect would send a fresh login anywhere).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/pipelines",
    }
}

async fn login_page(State(http): State<Http>, Query(query): Query<LoginQuery>) -> Html<String> {
    Html(login_form(&http, local_path(query.next.as_deref()), None))
}

fn login_form(http: &Http, next: &str, refusal: Option<&str>) -> String {
    layout(
        "Log in",
        html! {
            h1 { "Log in" }
            @if !http.access.enabled {
                p .muted { "This master runs without --auth: no login is needed." }
            }
            @if let Some(refusal) = refusal {
                p .flash.refused #error { (refusal) }
            }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Token " input #token type="password" name="token" size="70" autocomplete="off"; }
                " "
                button #login type="submit" { "Log in" }
            }
            p .muted {
                "A token is made with " code { "tmctl token create --role viewer --name NAME" }
                "; the first admin token is in the master's data dir, admin.token."
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Checks the token and, if the master knows it, sets the cookie and goes
/// on to the page asked for.
async fn login(
    State(http): State<Http>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(form.next.as_deref()).to_string();
    let token = form.token.trim();
    let checked = same_origin(&headers, &uri)
        .and_then(|()| {
            credentials::bearer(format!("Bearer {token}").as_bytes())
                .map(str::to_string)
                .map_err(|e| tonic::Status::unauthenticated(e.to_string()))
        })
        .and_then(|token| http.access.identify_token(&http.master, &token));
    match checked {
        Ok(identity) => {
            tracing::info!(who = %identity.shown(), "logged in to the web UI");
            let secure = if http.tls { "; Secure" } else { "" };
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(refusal) => (
            StatusCode::UNAUTHORIZED,
            Html(login_form(&http, &next, Some(refusal.message()))),
        )
            .into_response(),
    }
}

/// Forgets the cookie.
async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("taskmaster_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_route_is_in_the_table() {
        // The POST routes as the HTTP modules declare them: an action
        // added without an entry would be refused to everyone.
        let sources = [include_str!("api.rs"), include_str!("schedules.rs")];
        let mut declared = Vec::new();
        for source in sources {
            for (at, _) in source.match_indices(".route(") {
                // The call's text, to its closing parenthesis.
                let rest = &source[at + ".route".len()..];
                let mut depth = 0;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let call = &rest[..end];
                if call.contains("post(") {
                    let template = call.split('"').nth(1).unwrap_or_default();
                    declared.push(template.to_string());
                }
            }
        }
        assert!(declared.len() >= 8, "found the routes: {declared:?}");
        for template in &declared {
            assert!(
                ACTIONS.iter().any(|(t, _)| t == template),
                "{template} is a POST route missing from ACTIONS"
            );
        }
        for (_, rpc) in ACTIONS {
            assert!(
                matches!(roles::needs(rpc), Needs::OneOf(_)),
                "{rpc} is not in the role table"
            );
        }
    }

    #[test]
    fn reads_need_a_reader_and_unknown_actions_nobody() {
        use taskmaster_proto::v1::Role;
        let read = rpc_of(&Method::GET, Some("/pipelines/{id}")).unwrap();
        assert!(matches!(read, Needs::OneOf(r) if r.contains(&Role::Viewer)));
        let retry = rpc_of(&Method::POST, Some("/api/pipelines/{id}/retry")).unwrap();
        assert!(matches!(retry, Needs::OneOf(r) if !r.contains(&Role::Viewer)));
        let rollback = rpc_of(&Method::POST, Some("/api/snapshots/{id}/rollback")).unwrap();
        assert!(matches!(rollback, Needs::OneOf(r) if r == [Role::Admin]));
        assert_eq!(
            rpc_of(&Method::POST, Some("/api/new")),
            Some(Needs::Unknown)
        );
        assert_eq!(rpc_of(&Method::POST, None), Some(Needs::Unknown));
        assert_eq!(rpc_of(&Method::POST, Some("/login")), None);
    }

    #[test]
    fn cookies_and_origins_are_read_strictly() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            "a=1; taskmaster_token=tm_x".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("tm_x"));
        assert_eq!(cookie(&headers, "b"), None);
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        let uri = Uri::from_static("/api/snapshots");
        assert!(same_origin(&headers, &uri).is_err(), "no Origin");
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&headers, &uri).is_err());
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers, &uri).is_ok());
        // HTTP/2 carries the host in the URI.
        headers.remove(header::HOST);
        let h2 = Uri::from_static("https://127.0.0.1:8080/api/snapshots");
        headers.insert(header::ORIGIN, "https://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers, &h2).is_ok());
    }

    #[test]
    fn logins_only_go_on_to_this_masters_pages() {
        assert_eq!(local_path(Some("/pipelines/7?x=1")), "/pipelines/7?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/pipelines");
        assert_eq!(local_path(Some("https://evil.example/")), "/pipelines");
        assert_eq!(local_path(Some("/\\evil.example")), "/pipelines");
        assert_eq!(local_path(None), "/pipelines");
        assert_eq!(percent_encode("/a b?c=d&e", b"/"), "/a%20b%3Fc%3Dd%26e");
    }
}
