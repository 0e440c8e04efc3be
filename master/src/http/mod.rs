//! The master's HTTP side (`taskmaster serve --http ADDR`): a JSON API,
//! server-rendered pages, server-sent events and `/metrics`, all thin over
//! the same runtime operations as the gRPC service.
//!
//! - [`api`]: `/api/...`: JSON reads and the operator actions
//! - [`pages`]: the HTML pages (maud templates compiled into the binary)
//! - [`dag`]: a pipeline's groups drawn as an SVG graph
//! - [`sse`]: `/events/...`: live updates of a page's changing part
//! - [`logs`]: an attempt's stdout and stderr (`crate::logs`), for the
//!   API and the unit page
//! - [`metrics`]: `/metrics`, and the layer that times gRPC calls
//! - [`query`]: query strings and forms parsed with errors that name the
//!   parameter
//! - [`error`]: the one place errors become HTTP statuses
//!
//! It runs in the master's process and runtime beside gRPC, and cannot
//! starve it: at most [`REQUESTS_IN_FLIGHT_MAX`] requests are served at
//! once (more wait up to the request time, then get 503), each has
//! [`REQUEST_TIME_MAX`] to produce its answer, and live-update streams are
//! bounded apart ([`sse::STREAMS_MAX`]). Reads take the state lock only for
//! bounded views (`core::ui_view`).

pub mod api;
pub mod dag;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod query;
pub mod sse;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::runtime::Master;
use error::HttpError;

/// HTTP requests served at once, at most (SSE streams are counted apart).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// Time one request has to produce its answer (headers), waiting for a
/// slot included. Actions answer once their change is durable, and a
/// rollback rewrites the state: seconds, not minutes.
pub const REQUEST_TIME_MAX: Duration = Duration::from_secs(30);

/// What every handler gets.
#[derive(Clone)]
pub struct Http {
    pub master: Arc<Master>,
    /// Slots for requests in flight.
    requests: Arc<Semaphore>,
    /// Slots for live-update streams.
    streams: Arc<Semaphore>,
}

/// The router of every HTTP endpoint over `master`.
pub fn router(master: Arc<Master>) -> Router {
    let http = Http {
        master,
        requests: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
        streams: Arc::new(Semaphore::new(sse::STREAMS_MAX)),
    };
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .merge(sse::routes())
        .merge(metrics::routes())
        .layer(middleware::from_fn_with_state(http.clone(), bounded))
        .with_state(http)
}

/// Serves the HTTP side on `listener` until `shutdown` resolves; live
/// streams end when the master begins to shut down.
pub async fn serve(
    listener: TcpListener,
    master: Arc<Master>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(master))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Bounded concurrency and time per request: a request waits for a slot
/// and its answer within [`REQUEST_TIME_MAX`], else 503.
async fn bounded(State(http): State<Http>, request: Request, next: Next) -> Response {
    let work = async {
        let _slot = http
            .requests
            .acquire()
            .await
            .map_err(|_| HttpError::unavailable("the master is shutting down"))?;
        Ok::<_, HttpError>(next.run(request).await)
    };
    match tokio::time::timeout(REQUEST_TIME_MAX, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => HttpError::unavailable(format!(
            "the request took longer than {} s; try again",
            REQUEST_TIME_MAX.as_secs()
        ))
        .into_response(),
    }
}
