//! The master's HTTP side (`taskmaster serve --http ADDR`): a JSON API,
//! server-rendered pages, server-sent events and `/metrics`, all thin over
//! the same runtime operations as the gRPC service.
//!
//! - [`auth`]: who is calling (`--auth`: tokens and roles, a login page
//!   for browsers) and the audit trail's name for them
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
pub mod auth;
pub mod dag;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod query;
pub mod schedules;
pub mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::auth::Access;
use crate::runtime::Master;
use crate::tls::TlsFiles;
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
    /// Tokens, roles and rates: the gRPC side's, so both count alike.
    pub access: Arc<Access>,
    /// Served over TLS (so the login cookie is `Secure`).
    pub tls: bool,
    /// Slots for requests in flight.
    requests: Arc<Semaphore>,
    /// Slots for live-update streams.
    streams: Arc<Semaphore>,
    /// Time a request has to produce its answer.
    request_time: Duration,
}

impl Http {
    fn new(
        master: Arc<Master>,
        access: Arc<Access>,
        tls: bool,
        requests_max: usize,
        request_time: Duration,
    ) -> Http {
        Http {
            master,
            access,
            tls,
            requests: Arc::new(Semaphore::new(requests_max)),
            streams: Arc::new(Semaphore::new(sse::STREAMS_MAX)),
            request_time,
        }
    }
}

/// The router of every HTTP endpoint over `master`, checking callers
/// against `access` (see [`auth`]).
pub fn router(master: Arc<Master>, access: Arc<Access>, tls: bool) -> Router {
    let http = Http::new(
        master,
        access,
        tls,
        REQUESTS_IN_FLIGHT_MAX,
        REQUEST_TIME_MAX,
    );
    Router::new()
        .merge(auth::routes())
        .merge(api::routes())
        .merge(pages::routes())
        .merge(schedules::routes())
        .merge(sse::routes())
        .merge(metrics::routes())
        // Inside the bound, so identifying a caller counts against its time.
        .layer(middleware::from_fn_with_state(
            http.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn_with_state(http.clone(), bounded))
        // Outside the bound: a refusal's pause holds no request slot.
        .layer(middleware::from_fn(auth::paced))
        .with_state(http)
}

/// Serves the HTTP side on `listener` until `shutdown` resolves, over
/// TLS when `tls` is given (the gRPC side's certificate files, reloaded
/// when they change, and client certificates when they say so); live
/// streams end when the master begins to shut down.
pub async fn serve(
    listener: TcpListener,
    master: Arc<Master>,
    access: Arc<Access>,
    tls: Option<(TlsFiles, Arc<ServerConfig>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(master, access, tls.is_some());
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some((files, first)) => {
            let listener = TlsListener {
                local: listener.local_addr()?,
                incoming: Box::pin(crate::tls::incoming(listener, files, first)),
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The TLS listener's connections (handshaken on tasks of their own, see
/// `crate::tls`) as an axum listener. Its certificate's ALPN is `h2`, so
/// browsers speak HTTP/2 to it.
struct TlsListener {
    local: SocketAddr,
    incoming: Pin<Box<dyn Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (stream, peer);
                }
                Some(Err(e)) => tracing::info!(error = %e, "an HTTPS connection failed"),
                // The accept loop ended (it does not while the listener
                // lives): nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
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
    match tokio::time::timeout(http.request_time, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => HttpError::unavailable(format!(
            "the request took longer than {} ms; try again",
            http.request_time.as_millis()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::Service as _;

    use super::*;
    use crate::clock::ManualClock;
    use crate::runtime::MasterConfig;

    /// A router of one `/slow` route that answers after `answer_after`,
    /// behind the limits: `requests_max` at once, `request_time` each.
    fn slow_app(
        dir: &std::path::Path,
        requests_max: usize,
        request_time: Duration,
        answer_after: Duration,
    ) -> (Router, Arc<Master>) {
        let config = MasterConfig::new(dir.join("data"));
        let master = Arc::new(Master::open(&config, Arc::new(ManualClock::default())).unwrap());
        let http = Http::new(
            Arc::clone(&master),
            Arc::default(),
            false,
            requests_max,
            request_time,
        );
        let app = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(answer_after).await;
                    "done"
                }),
            )
            .layer(middleware::from_fn_with_state(http.clone(), bounded))
            .with_state(http);
        (app, master)
    }

    async fn status_of(app: &mut Router) -> StatusCode {
        let request = Request::get("/slow").body(Body::empty()).unwrap();
        app.call(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_request_past_its_time_is_refused_with_503() {
        let dir = tempfile::tempdir().unwrap();
        let (mut app, master) = slow_app(
            dir.path(),
            4,
            Duration::from_millis(50),
            Duration::from_secs(600),
        );
        assert_eq!(status_of(&mut app).await, StatusCode::SERVICE_UNAVAILABLE);
        master.close();
    }

    #[tokio::test]
    async fn requests_past_the_limit_wait_for_a_slot_within_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let (app, master) = slow_app(
            dir.path(),
            1,
            Duration::from_millis(300),
            Duration::from_millis(200),
        );
        // Two at once through one slot: the first answers in 200 ms, the
        // second would need 400 ms of its 300 and is refused.
        let (mut first, mut second) = (app.clone(), app);
        let (a, b) = tokio::join!(status_of(&mut first), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            status_of(&mut second).await
        });
        assert_eq!((a, b), (StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE));
        master.close();
    }
}
